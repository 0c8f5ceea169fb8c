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
  /// 1 MiB: a batch of up to ``maximumBatch`` calls in one stop. Each stop costs a round trip
  /// through the scheduler (tens of µs); with 64 KiB (about 240 calls a batch) restoring
  /// 10,000 mappings took 150 stops, the state batch after them 120 more.
  static let regionSize: UInt64 = 1 << 20
  /// Argument data (paths, structs, iovecs) from here up to `dataEnd`; then the results of a
  /// batch (``maximumBatch`` slots) and its code.
  static let dataStart: UInt64 = 4096
  static let dataEnd: UInt64 = 256 << 10
  static let resultsStart: UInt64 = 256 << 10
  static let codeStart: UInt64 = resultsStart + 8 * UInt64(maximumBatch)
  /// The most calls a batch holds: one result slot each.
  static let maximumBatch = 8192
  private var dataCursor: UInt64 = dataStart
  /// The data area as the task will find it: arguments are copied here and written into the
  /// task in one go before it next runs (a write to /proc/<pid>/mem per argument cost more
  /// than the calls themselves). `dirty` is the part not yet written.
  private var staged = [UInt8](repeating: 0, count: Int(dataEnd - dataStart))
  private var dirty: Range<Int>?
  /// The batch the task is running, between ``launch(_:)`` and ``complete()``.
  private var launched: Batch?
  /// The task's end of the channel through which ckcont hands it files ckcont opened (-1:
  /// none yet): its own, files outside the container's root, and what another restored task
  /// holds (`/proc/<pid>/fd/<n>`, `map_files`). The task could not open those by itself: its
  /// /proc may be the container's by then (a root of its own, a proc mounted over /proc),
  /// and in a user namespace of its own it may not look into ckcont or open map_files. The
  /// root makes the channel before its mounts; every task forked from it inherits its end;
  /// ``FileRestore`` closes it with its high fds.
  private(set) var channel: Int64 = -1
  /// ckcont's end of the channel, owned by the restore: one socket for all tasks, each send
  /// followed by its receive.
  private(set) var channelPeer: Int32 = -1

  init(tracee: Tracee) throws {
    self.tracee = tracee
    remote = try RemoteSyscall(tracee: tracee, gadget: .breakpoint(address: UInt64(ck_syscall_gadget())))
  }

  /// An injector for another thread of the same process: it shares the injection region.
  init(thread: Tracee, sharingRegionOf main: Injector) throws {
    tracee = thread
    region = main.region
    channel = main.channel
    channelPeer = main.channelPeer
    remote = try RemoteSyscall(tracee: thread, gadget: .breakpoint(address: main.region))
  }

  var pid: Int32 { tracee.tid }

  /// Makes the channel (see ``channel``) with the task's end at descriptor `fd`; returns
  /// ckcont's end, which the caller owns (``channelPeer`` borrows its number).
  func openChannel(at fd: Int64) throws -> OwnedDescriptor {
    resetData()
    let pair = try reserve(8)
    try call(
      .socketpair(family: AF_UNIX, type: Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), into: pair),
      "socketpair for ckcont's channel")
    let ends = try read(8, at: pair).withUnsafeBytes {
      (Int32(littleEndian: $0.load(as: Int32.self)), Int32(littleEndian: $0.load(fromByteOffset: 4, as: Int32.self)))
    }
    let ours = try OwnedDescriptor(copying: ends.0, ofProcess: pid)
    var batch = Batch()
    batch.add(.close(ends.0))
    if Int64(ends.1) != fd {
      batch.add(.dup3(ends.1, fd, closeOnExec: true), "dup3 the channel to \(fd)")
      batch.add(.close(ends.1))
    }
    try run(batch)
    channel = fd
    channelPeer = ours.raw
    return ours
  }

  /// Hands `fd`, a descriptor of ckcont's, to the task (sendmsg with SCM_RIGHTS, then a
  /// remote recvmsg); returns its number there, the lowest that was free, close-on-exec.
  /// Uses the data area beyond what was put before.
  func receive(_ fd: Int32, what: @autoclosure () -> String) throws -> Int64 {
    precondition(channel >= 0 && channelPeer >= 0, "task \(pid): no channel to ckcont")
    try negErrnoChecked("sendmsg", "\(what()) to task \(pid)") { ck_send_fd(channelPeer, fd) }
    let byte = try reserve(8)
    let iov = try put(words: [byte, 1])
    let control = try reserve(24)
    // struct msghdr: name, namelen, iov, iovlen, control, controllen, flags.
    let header = try put(words: [0, 0, iov, 1, control, 24, 0])
    try call(.recvmsg(channel, header, Int32(MSG_CMSG_CLOEXEC)), "receive \(what()) from ckcont")
    // struct cmsghdr: len (8 bytes), level, type, then the descriptor.
    let (level, type, received) = try read(24, at: control).withUnsafeBytes {
      (
        $0.load(fromByteOffset: 8, as: Int32.self), $0.load(fromByteOffset: 12, as: Int32.self),
        $0.load(fromByteOffset: 16, as: Int32.self)
      )
    }
    guard level == SOL_SOCKET, type == SCM_RIGHTS else {
      throw CKError(.failed, "task \(pid): receiving \(what()) from ckcont brought no descriptor")
    }
    return Int64(received)
  }

  /// Creates a thread of this process with tid `ids` (clone3 with set_tid, from inside: its
  /// tid in its pid namespace first, then in each namespace above, as far as the bundle
  /// knows). It starts traced and stopped (PTRACE_O_TRACECLONE), registers still those of
  /// this thread; returns it as this pid namespace sees it.
  func cloneThread(ids: [Int32]) throws -> Tracee {
    // exit_signal 0; the stack is set with the thread's registers later.
    let flags = CK_CLONE_VM | CK_CLONE_FS | CK_CLONE_FILES | CK_CLONE_SIGHAND | CK_CLONE_THREAD | CK_CLONE_SYSVSEM
    return try spawn(
      ids: ids, flags: UInt64(flags), exitSignal: 0, event: Int32(CK_PTRACE_EVENT_CLONE), what: "thread")
  }

  /// Forks a child process with pid `ids` (innermost first, as ``cloneThread(ids:)``), from
  /// inside this task. It starts traced and stopped (PTRACE_O_TRACEFORK) as a copy of this
  /// task, injection region included.
  /// `sharing` adds CLONE_FILES / CLONE_FS: the child shares this task's descriptor table or
  /// fs information (the kernel reports such a clone as a fork: no CLONE_VM).
  /// `newPidNamespace`: the child is the init (`ids[0]` is 1) of a pid namespace of its own.
  func forkChild(ids: [Int32], sharing: UInt64 = 0, newPidNamespace: Bool = false) throws -> Tracee {
    let flags = sharing | (newPidNamespace ? UInt64(CK_CLONE_NEWPID) : 0)
    return try spawn(
      ids: ids, flags: flags, exitSignal: UInt64(SIGCHLD), event: Int32(CK_PTRACE_EVENT_FORK), what: "process")
  }

  /// ``forkChild(ids:sharing:newPidNamespace:)`` in this task's own pid namespace.
  func forkChild(pid: Int32, sharing: UInt64 = 0) throws -> Tracee {
    try forkChild(ids: [pid], sharing: sharing)
  }

  private func spawn(ids: [Int32], flags: UInt64, exitSignal: UInt64, event expected: Int32, what: String) throws
    -> Tracee
  {
    resetData()
    // clone3 returns the id this task's namespace gives the child: the next one out of a
    // namespace the child starts.
    let id = flags & UInt64(CK_CLONE_NEWPID) != 0 && ids.count > 1 ? ids[1] : ids[0]
    // pid_t set_tid[]: 4 bytes each.
    let setTid = try put(ids.flatMap { id in withUnsafeBytes(of: id.littleEndian) { Array($0) } })
    // struct clone_args: flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size,
    // tls, set_tid, set_tid_size, cgroup.
    let args = try put(words: [flags, 0, 0, 0, exitSignal, 0, 0, 0, setTid, UInt64(ids.count), 0])
    // Raw: run by hand to the fork event, which stops the task inside the call.
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

  /// Runs `call`; a failure, or a result other than the one it must have, becomes an error
  /// naming `label` (or the call's own).
  @discardableResult
  func call(_ call: RemoteCall, _ label: String? = nil) throws -> Int64 {
    let result = try raw(call)
    try call.check(result, label: label, task: pid, prefix: "restore: ")
    return result
  }

  /// Runs `call` and returns its raw result (negative errno included).
  func raw(_ call: RemoteCall) throws -> Int64 {
    try writeStaged()
    return try remote.call(call)
  }

  /// Maps the injection region at an address free in both the current and the target
  /// layout, writes `syscall; int3` there, and makes it the gadget. Below 4 GiB for a
  /// container with i386 tasks: their compat calls take 32-bit pointers into its data area.
  func mapRegion(avoiding target: [AddressRange], below4GiB: Bool = false) throws {
    var candidate: UInt64 = below4GiB ? 0x1000_0000 : 0x1000_0000_0000
    let (limit, step): (UInt64, UInt64) = below4GiB ? (0xf000_0000, 0x10_0000) : (0x7f00_0000_0000, 0x1000_0000)
    while candidate < limit {
      let end = candidate + Self.regionSize
      if !target.contains(where: { $0.start < end && candidate < $0.end }) {
        let result = try remote.call(
          .mmap(
            at: candidate, length: Self.regionSize, protection: PROT_READ | PROT_WRITE | PROT_EXEC,
            flags: [.private, .anonymous, .fixedNoReplace]))
        if result == Int64(candidate) {
          region = candidate
          try [UInt8]([0x0f, 0x05, 0xcc]).withUnsafeBytes { try write($0, at: region) }
          remote.gadget = .breakpoint(address: region)
          return
        }
      }
      candidate += step
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
      UnsafeMutableRawBufferPointer(rebasing: staged[offset..<offset + bytes.count]).copyMemory(
        from: UnsafeRawBufferPointer(start: source, count: bytes.count))
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
      try ProcessMemory.read(
        pid: pid, ranges: [AddressRange(start: address, end: address + UInt64(count))], into: buffer)
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
    var syscalls = SyscallBatch()
    /// The calls queued, labels and expected results as they are checked.
    private(set) var calls: [(call: RemoteCall, mayFail: Bool)] = []
    var isEmpty: Bool { calls.isEmpty }
    var count: Int { calls.count }
    /// Time to run it: one more call might not fit the code area of the region.
    var isFull: Bool { !hasRoom(for: 1) }

    /// Whether `count` more calls fit the code area of the region.
    func hasRoom(for count: Int) -> Bool {
      calls.count + count <= Injector.maximumBatch
        && SyscallBatch.maximumCodeSize(calls: calls.count + count) <= Int(Injector.regionSize - Injector.codeStart)
    }

    /// Queues `call`; `mayFail`: its result is not checked (the caller reads it). Returns its
    /// index in the results.
    @discardableResult
    mutating func add(_ call: RemoteCall, mayFail: Bool = false) -> Int {
      calls.append((call, mayFail))
      return syscalls.add(call)
    }

    /// Queues `call` with its label replaced by `label` (made only if it fails).
    @discardableResult
    mutating func add(
      _ call: RemoteCall, _ label: @autoclosure @escaping @Sendable () -> String, mayFail: Bool = false
    ) -> Int {
      var call = call
      call.relabel(label)
      return add(call, mayFail: mayFail)
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
    let code = batch.syscalls.code(results: region + Self.resultsStart)
    guard batch.count <= Self.maximumBatch, UInt64(code.count) <= Self.regionSize - Self.codeStart else {
      throw CKError(.failed, "task \(pid): a batch of \(batch.count) restore calls does not fit the injection region")
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
    try remote.finishCode(calls: batch.count)
    let raw = try read(batch.count * 8, at: region + Self.resultsStart)
    let results = raw.withUnsafeBytes { bytes in
      (0..<batch.count).map { Int64(littleEndian: bytes.load(fromByteOffset: $0 * 8, as: Int64.self)) }
    }
    for (result, queued) in zip(results, batch.calls) where !queued.mayFail {
      try queued.call.check(result, task: pid, prefix: "restore: ")
    }
    return results
  }
}
