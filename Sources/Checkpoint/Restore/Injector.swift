import Bundle
import CKShim
import Glibc
import Linux

/// Remote syscalls inside a task being restored, from the first call (through the
/// `syscall; int3` gadget it inherited from ckcont's text) to the last (unmapping its own
/// injection region at a syscall-exit stop, where its final registers are set).
final class Injector {
  let tracee: Tracee
  var remote: RemoteSyscall
  /// The injection region: code at its start, argument data after it.
  private(set) var region: UInt64 = 0
  static let regionSize: UInt64 = 64 << 10
  /// Argument data (paths, structs, iovecs) from here up to `dataEnd`; then the results of a
  /// batch (512 slots) and its code.
  static let dataStart: UInt64 = 4096
  static let dataEnd: UInt64 = 36 << 10
  static let resultsStart: UInt64 = 36 << 10
  static let codeStart: UInt64 = 40 << 10
  private var dataCursor: UInt64 = dataStart
  /// The data area as the task will find it: arguments are copied here and written into the
  /// task in one go before it next runs (a write to /proc/<pid>/mem per argument cost more
  /// than the calls themselves). `dirty` is the part not yet written.
  private var staged = [UInt8](repeating: 0, count: Int(dataEnd - dataStart))
  private var dirty: Range<Int>?
  /// The batch the task is running, between ``launch(_:)`` and ``complete()``.
  private var launched: Batch?
  /// The task's descriptor of ckcont's /proc (-1: none yet), through which it opens what
  /// ckcont or another restored task holds, by host pid (`<pid>/fd/<n>`,
  /// `<pid>/map_files/<range>`): by then the task's own /proc may be the container's (a root
  /// of its own, a proc mounted over /proc). The root opens it before its mounts are made;
  /// every task forked from it inherits it; ``FileRestore`` closes it with its high fds.
  private(set) var hostProc: Int64 = -1

  init(tracee: Tracee) throws {
    self.tracee = tracee
    remote = try RemoteSyscall(tracee: tracee, gadget: .breakpoint(address: UInt64(ck_syscall_gadget())))
  }

  /// An injector for another thread of the same process: it shares the injection region.
  init(thread: Tracee, sharingRegionOf main: Injector) throws {
    tracee = thread
    region = main.region
    hostProc = main.hostProc
    remote = try RemoteSyscall(tracee: thread, gadget: .breakpoint(address: main.region))
  }

  var pid: Int32 { tracee.tid }

  /// Opens ckcont's /proc in the task at descriptor `fd` (see ``hostProc``), while the
  /// task's mount namespace is still a copy of ckcont's.
  func openHostProc(at fd: Int64) throws {
    resetData()
    let path = try put(string: "/proc")
    let opened = try call("open ckcont's /proc", SyscallNumber.open, path, UInt64(0o10000000 /* O_PATH */ | O_DIRECTORY | O_CLOEXEC))
    if opened != fd {
      try call("dup3 ckcont's /proc to \(fd)", SyscallNumber.dup3, UInt64(opened), UInt64(fd), UInt64(O_CLOEXEC))
      try call("close \(opened)", SyscallNumber.close, UInt64(opened))
    }
    hostProc = fd
  }

  /// Queues an open of `entry` of ckcont's /proc (`<host pid>/fd/<n>`, `<host pid>/map_files/
  /// <start>-<end>`): a file ckcont or another restored task holds. `flags` must not hold
  /// O_NOFOLLOW: the entries are magic links.
  func queueOpenInHostProc(_ entry: String, flags: Int32, into batch: inout Batch) throws -> Int {
    precondition(hostProc >= 0, "task \(pid): ckcont's /proc is not open")
    let at = try put(string: entry)
    return batch.add(
      "open /proc/\(entry) (ckcont's)", SyscallNumber.openat, .value(UInt64(hostProc)), .value(at),
      .value(UInt64(UInt32(bitPattern: flags))), .value(0))
  }

  /// Creates a thread of this process with tid `tid` in its pid namespace (clone3 with
  /// set_tid, from inside). It starts traced and stopped (PTRACE_O_TRACECLONE), registers
  /// still those of this thread; returns it as this pid namespace sees it.
  func cloneThread(tid: Int32) throws -> Tracee {
    // CLONE_VM|FS|FILES|SIGHAND|THREAD|SYSVSEM; exit_signal 0; the stack is set with the
    // thread's registers later.
    try spawn(id: tid, flags: 0x50f00, exitSignal: 0, event: Int32(CK_PTRACE_EVENT_CLONE), what: "thread")
  }

  /// Forks a child process with pid `pid` in its pid namespace, from inside this task. It
  /// starts traced and stopped (PTRACE_O_TRACEFORK) as a copy of this task, injection
  /// region included.
  /// `sharing` adds CLONE_FILES / CLONE_FS: the child shares this task's descriptor table or
  /// fs information (the kernel reports such a clone as a fork: no CLONE_VM).
  func forkChild(pid: Int32, sharing: UInt64 = 0) throws -> Tracee {
    try spawn(id: pid, flags: sharing, exitSignal: UInt64(SIGCHLD), event: Int32(CK_PTRACE_EVENT_FORK), what: "process")
  }

  private func spawn(id: Int32, flags: UInt64, exitSignal: UInt64, event expected: Int32, what: String) throws -> Tracee {
    resetData()
    let setTid = try put(words: [UInt64(UInt32(bitPattern: id))])
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let args = try put(words: [flags, 0, 0, 0, exitSignal, 0, 0, 0, setTid, 1, 0])
    var regs = remote.saved
    regs.rax = UInt64(SyscallNumber.clone3)
    regs.orig_rax = UInt64.max
    regs.rdi = args
    regs.rsi = 88
    regs.rip = region
    try writeStaged()
    try tracee.setRegisters(regs)
    try tracee.resume()
    let event = try tracee.wait()
    guard case .stopped(_, let kind) = event, kind == expected else {
      // No fork event: clone3 failed and the task ran on to the int3; say why.
      let result = Int64(bitPattern: (try? tracee.registers().rax) ?? 0)
      let reason = result < 0 && result > -4096 ? String(cString: strerror(Int32(-result))) : "stopped at \(event)"
      throw CKError(.failed, "task \(pid): creating \(what) \(id) failed: \(reason)")
    }
    let created = Tracee(tid: Int32(try tracee.eventMessage()))
    let first = try created.wait()
    guard case .stopped = first else { throw CKError(.failed, "new \(what) \(created.tid) of \(pid): \(first)") }
    try tracee.resume()
    let done = try tracee.wait()
    guard case .stopped(let signal, _) = done, signal == SIGTRAP else {
      throw CKError(.failed, "task \(pid): clone3 of \(what) \(id) did not return: \(done)")
    }
    let result = Int64(bitPattern: try tracee.registers().rax)
    guard result == Int64(id) else {
      throw CKError(
        .failed,
        "task \(pid): could not create \(what) \(id): \(result < 0 ? String(cString: strerror(Int32(-result))) : "got \(result)")",
        hint: result == -Int64(EEXIST) ? "the id is taken" : nil)
    }
    return created
  }

  /// Runs a syscall; a negative result becomes an error naming `what`.
  @discardableResult
  func call(
    _ what: @autoclosure () -> String, _ number: Int, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0,
    _ a4: UInt64 = 0, _ a5: UInt64 = 0, _ a6: UInt64 = 0
  ) throws -> Int64 {
    try writeStaged()
    return try remote.checked("restore: \(what())", number, a1, a2, a3, a4, a5, a6)
  }

  /// Runs a syscall and returns its raw result (negative errno included).
  func raw(_ number: Int, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0, _ a4: UInt64 = 0) throws -> Int64 {
    try writeStaged()
    return try remote.call(number, a1, a2, a3, a4)
  }

  /// Maps the injection region at an address free in both the current and the target
  /// layout, writes `syscall; int3` there, and makes it the gadget.
  func mapRegion(avoiding target: [VMAImage]) throws {
    var candidate: UInt64 = 0x1000_0000_0000
    while candidate < 0x7f00_0000_0000 {
      let end = candidate + Self.regionSize
      if !target.contains(where: { $0.start < end && candidate < $0.end }) {
        let result = try remote.call(
          SyscallNumber.mmap, candidate, Self.regionSize, UInt64(PROT_READ | PROT_WRITE | PROT_EXEC),
          UInt64(MAP_PRIVATE | MAP_ANONYMOUS | 0x100000 /* MAP_FIXED_NOREPLACE */), UInt64.max, 0)
        if result == Int64(candidate) {
          region = candidate
          try [UInt8]([0x0f, 0x05, 0xcc]).withUnsafeBytes { try write($0, at: region) }
          remote.gadget = .breakpoint(address: region)
          return
        }
      }
      candidate += 0x1000_0000
    }
    throw CKError(.failed, "task \(pid): found no free place for the injection region")
  }

  /// Copies `bytes` into the data area (the task sees them when it next runs) and returns
  /// their address in the task. The area is reused after `resetData()`.
  func put(_ bytes: UnsafeRawBufferPointer) throws -> UInt64 {
    let size = (UInt64(bytes.count) + 15) & ~15
    guard dataCursor + size <= Self.dataEnd else {
      throw CKError(.failed, "task \(pid): restore argument of \(bytes.count) bytes does not fit the injection region")
    }
    let address = region + dataCursor
    guard let source = bytes.baseAddress, bytes.count > 0 else { return address }
    let offset = Int(dataCursor - Self.dataStart)
    staged.withUnsafeMutableBytes { staged in
      staged.baseAddress!.advanced(by: offset).copyMemory(from: source, byteCount: bytes.count)
    }
    let written = offset..<offset + bytes.count
    dirty = dirty.map { min($0.lowerBound, written.lowerBound)..<max($0.upperBound, written.upperBound) } ?? written
    dataCursor += size
    return address
  }

  /// Writes the arguments put since the task last ran into it.
  private func writeStaged() throws {
    guard let range = dirty, !range.isEmpty else { return }
    dirty = nil
    try staged.withUnsafeBytes { staged in
      try write(UnsafeRawBufferPointer(rebasing: staged[range]), at: region + Self.dataStart + UInt64(range.lowerBound))
    }
  }

  func put(_ bytes: [UInt8]) throws -> UInt64 { try bytes.withUnsafeBytes { try put($0) } }

  /// A NUL-terminated string in the data area.
  func put(string: String) throws -> UInt64 { try put(Array(string.utf8) + [0]) }

  /// 64-bit words in the data area.
  func put(words: [UInt64]) throws -> UInt64 { try words.withUnsafeBytes { try put($0) } }

  /// Zeroed room for a result of `count` bytes.
  func reserve(_ count: Int) throws -> UInt64 { try put([UInt8](repeating: 0, count: count)) }

  /// Reads `count` bytes of the injection region (results, out-parameters).
  func read(_ count: Int, at address: UInt64) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    try bytes.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: address, end: address + UInt64(count))], into: buffer)
    }
    return bytes
  }

  /// Writes into the injection region, which is writable: process_vm_writev, no
  /// /proc/<pid>/mem to open per task.
  private func write(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws {
    try ProcessMemory.write(pid: pid, bytes: bytes, at: address)
  }

  func resetData() { dataCursor = Self.dataStart }

  /// Bytes still free in the data area.
  var dataRoom: UInt64 { Self.dataEnd - dataCursor }

  /// Calls to run in one stop (see ``SyscallBatch``), each with what it does for errors and,
  /// for those that must return a known value (mmap at a fixed address), that value.
  struct Batch {
    var calls = SyscallBatch()
    var labels: [(what: String, expected: Int64?, mayFail: Bool)] = []
    var isEmpty: Bool { labels.isEmpty }
    /// Time to run it: one more call might not fit the code area of the region.
    var isFull: Bool {
      SyscallBatch.maximumCodeSize(calls: labels.count + 1) > Int(Injector.regionSize - Injector.codeStart)
    }

    @discardableResult
    mutating func add(
      _ what: @autoclosure () -> String, _ number: Int, _ arguments: SyscallBatch.Argument..., expecting: Int64? = nil,
      mayFail: Bool = false
    ) -> Int {
      labels.append((what(), expecting, mayFail))
      return calls.add(number, arguments: arguments)
    }
  }

  /// Runs `batch` from code written into the region; the first call that failed (unless it
  /// may) or did not return what it had to becomes the error. Arguments it points to must still be in place.
  @discardableResult
  func run(_ batch: Batch) throws -> [Int64] {
    try launch(batch)
    return try complete()
  }

  /// Sets the task running `batch` and returns at once; ``complete()`` waits for it. Nothing
  /// else may be asked of this task (or its region) in between.
  func launch(_ batch: Batch) throws {
    precondition(launched == nil, "task \(pid): a batch is already running")
    guard !batch.isEmpty else { return }
    let code = batch.calls.code(results: region + Self.resultsStart)
    guard batch.labels.count <= 512, UInt64(code.count) <= Self.regionSize - Self.codeStart else {
      throw CKError(.failed, "task \(pid): a batch of \(batch.labels.count) restore calls does not fit the injection region")
    }
    try writeStaged()
    try code.withUnsafeBytes { try write($0, at: region + Self.codeStart) }
    try remote.startCode(at: region + Self.codeStart)
    launched = batch
  }

  /// Waits for the batch ``launch(_:)`` started; returns each call's result, and throws
  /// for the first that failed without leave.
  func complete() throws -> [Int64] {
    guard let batch = launched else { return [] }
    launched = nil
    try remote.finishCode(calls: batch.labels.count)
    let raw = try read(batch.labels.count * 8, at: region + Self.resultsStart)
    let results = raw.withUnsafeBytes { bytes in
      (0..<batch.labels.count).map { Int64(littleEndian: bytes.load(fromByteOffset: $0 * 8, as: Int64.self)) }
    }
    for (result, label) in zip(results, batch.labels) {
      if result < 0 && result > -4096 && !label.mayFail {
        throw CKError(.failed, "task \(pid): restore: \(label.what): \(String(cString: strerror(Int32(-result))))")
      }
      if let expected = label.expected, result != expected {
        throw CKError(.failed, "task \(pid): restore: \(label.what) returned 0x\(String(result, radix: 16))")
      }
    }
    return results
  }
}
