import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// Remote syscalls in a task being dumped: single-stepping a `syscall` instruction of its
/// own [vdso], so nothing is written into its text, to map a scratch area; then batches of
/// calls (``SyscallBatch``) run from code written into that area, their results and
/// out-parameters in its data part. All signals stay blocked meanwhile.
final class RemoteSession {
  let tracee: Tracee
  var remote: RemoteSyscall
  /// Where batch code goes: the start of the scratch area.
  let code: UInt64
  /// Where out-parameters go (`dataSize`), followed by the results of a batch (4 KiB).
  let scratch: UInt64
  let originalMask: UInt64
  /// How its batches end: stopping themselves, so that a tracer gone meanwhile leaves the
  /// process stopped, not killed by a breakpoint's SIGTRAP.
  let ending: SyscallBatch.Ending
  /// The main thread's session owns (and unmaps) the area; other threads borrow it.
  private let ownsArea: Bool
  /// The code part is not writable (a task under memory-deny-write-execute).
  private let codeReadOnly: Bool
  private var finished = false
  static let areaSize: UInt64 = 32 << 10
  static let dataOffset: UInt64 = 12 << 10
  static let dataSize: UInt64 = 16 << 10

  /// Maps the scratch area in `tracee` (a process's main thread, parked by `session`) at a
  /// free place of its address space (`vmas`), journaled before it is mapped.
  init(tracee: Tracee, session: SeizedContainer, vmas: [VMAImage], ending: SyscallBatch.Ending) throws {
    self.tracee = tracee
    self.ending = ending
    originalMask = try tracee.signalMask()
    guard let gadget = session.park(of: tracee.tid) else {
      throw CKError(.failed, "task \(tracee.tid) was not parked for remote calls")
    }
    let i386 = try session.abi(ofPid: tracee.tid) == .i386
    guard let address = session.scratchAreas[tracee.tid] ?? Self.freeArea(avoiding: vmas, i386: i386) else {
      throw CKError(.failed, "task \(tracee.tid) has no free \(Self.areaSize >> 10) KiB for ckcont's scratch area")
    }
    if session.scratchAreas[tracee.tid] == nil { try session.reserveScratchAreas([tracee.tid: address]) }
    try tracee.setSignalMask(~0)
    remote = try RemoteSyscall(tracee: tracee, gadget: .singleStep(address: gadget), i386: i386)
    // MAP_FIXED_NOREPLACE: the area goes exactly where the journal says, or nowhere.
    let flags: MapFlags = [.private, .anonymous, .fixedNoReplace]
    var area = try? remote.call(
      .mmap(at: address, length: Self.areaSize, protection: PROT_READ | PROT_WRITE | PROT_EXEC, flags: flags))
    var codeReadOnly = false
    if area == -Int64(EACCES) {
      // Memory-deny-write-execute (PR_SET_MDWE) refuses a writable and executable mapping:
      // the code part is mapped read and execute only (ckcont writes it through
      // /proc/<pid>/mem), the data part read and write.
      area = try? remote.call(
        .mmap(at: address, length: Self.areaSize, protection: PROT_READ | PROT_EXEC, flags: flags))
      if let mapped = area, mapped > 0 {
        let data = UInt64(mapped) + Self.dataOffset
        let changed = try? remote.call(.mprotect(data, length: Self.areaSize - Self.dataOffset, PROT_READ | PROT_WRITE))
        if changed != 0 { _ = try? remote.call(.munmap(UInt64(mapped), length: Self.areaSize)) }
        area = changed == 0 ? mapped : changed
        codeReadOnly = true
      }
    }
    guard let area, area > 0, UInt64(area) == address else {
      if let area, area > 0 { _ = try? remote.call(.munmap(UInt64(area), length: Self.areaSize)) }
      try? remote.restoreRegisters()
      try? tracee.setSignalMask(originalMask)
      throw CKError(
        .failed, "task \(tracee.tid): remote mmap of a scratch area failed (\(area.map(String.init) ?? "stopped"))")
    }
    FaultInjection.point("dump:scratch")
    code = UInt64(area)
    scratch = code + Self.dataOffset
    ownsArea = true
    self.codeReadOnly = codeReadOnly
  }

  /// The lowest address from 1 GiB up with room for the area and a page either side, and
  /// 2 MiB clear of a stack that grows down (its guard gap); below 4 GiB for an i386 task,
  /// whose address space ends there (and whose code reaches no further).
  static func freeArea(avoiding vmas: [VMAImage], i386: Bool = false) -> UInt64? {
    let page: UInt64 = 4096
    let stackGap: UInt64 = 2 << 20
    var candidate: UInt64 = 1 << 30
    for vma in vmas.sorted(by: { $0.start < $1.start }) {
      let below = vma.growsDown ? stackGap : page
      if vma.start >= candidate + areaSize + below { break }
      candidate = max(candidate, vma.end + page)
    }
    return candidate + areaSize < (i386 ? 0xffff_0000 : 0x7fff_0000_0000) ? candidate : nil
  }

  /// Another thread of the same process, using `main`'s scratch area.
  init(thread: Tracee, sharing main: RemoteSession, ending: SyscallBatch.Ending) throws {
    tracee = thread
    self.ending = ending
    originalMask = try thread.signalMask()
    try thread.setSignalMask(~0)
    remote = try RemoteSyscall(tracee: thread, gadget: main.remote.gadget, i386: main.remote.i386)
    code = main.code
    scratch = main.scratch
    ownsArea = false
    codeReadOnly = main.codeReadOnly
  }

  /// What a batch left: each call's result, and the out-parameters.
  struct BatchResult {
    var results: [Int64]
    let data: [UInt64]
    let base: UInt64

    func words(at address: UInt64, count: Int) -> [UInt64] {
      let first = Int((address - base) / 8)
      return Array(data[first..<first + count])
    }
  }

  /// Writes the batch's code into the area, runs it to its int3, and reads back results and
  /// out-parameters in one go.
  func run(_ batch: SyscallBatch) throws -> BatchResult {
    let results = scratch + Self.dataSize
    let code = batch.code(results: results, ending: ending)
    guard batch.calls.count <= 512, code.count <= Int(Self.dataOffset) else {
      throw CKError(.failed, "task \(tracee.tid): a batch of \(batch.calls.count) remote calls does not fit")
    }
    if codeReadOnly {
      try code.withUnsafeBytes { bytes in try MemFile(pid: tracee.tid).write(bytes, at: self.code) }
    } else {
      try code.withUnsafeBytes { bytes in
        try ProcessMemory.write(pid: tracee.tid, bytes: bytes, at: self.code)
      }
    }
    try remote.startCode(at: self.code)
    FaultInjection.point("dump:batch")
    try remote.finishCode(calls: batch.calls.count, ending: ending)
    if case .stopSignal = ending {
      // Parked again, out of the SIGSTOP's delivery stop (``Tracee/settleToEventStop()``).
      try remote.restoreRegisters()
      try tracee.settleToEventStop()
    }
    let words = Int(Self.dataSize / 8)
    var data = [UInt64](repeating: 0, count: words + batch.calls.count)
    try data.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(
        pid: tracee.tid, ranges: [AddressRange(start: scratch, end: results + UInt64(batch.calls.count * 8))],
        into: buffer)
    }
    return BatchResult(
      results: (0..<batch.calls.count).map { Int64(bitPattern: data[words + $0]) }, data: data, base: scratch)
  }

  /// Unmaps the scratch area (if this session owns it) and puts registers and signal mask back.
  func finish() {
    guard !finished else { return }
    finished = true
    if ownsArea { _ = try? remote.call(.munmap(code, length: Self.areaSize)) }
    try? remote.restoreRegisters()
    try? tracee.setSignalMask(originalMask)
  }

  /// Where a `syscall` instruction sits in this kernel's [vdso], found once in ckcont's own:
  /// every process maps the same image.
  static let vdsoSyscallOffset: UInt64? = {
    guard let vdso = try? ProcMaps.read(pid: getpid()).first(where: { $0.kind == .vdso }),
      let base = UnsafePointer<UInt8>(bitPattern: UInt(vdso.start))
    else { return nil }
    let bytes = UnsafeBufferPointer(start: base, count: Int(vdso.size))
    return (0..<bytes.count - 1).first { bytes[$0] == 0x0f && bytes[$0 + 1] == 0x05 }.map(UInt64.init)
  }()

  /// The address of an `int $0x80` (cd 80) in an i386 task's [vdso] (__kernel_vsyscall and
  /// the sigreturn trampolines have one): jumped to from anywhere, those two bytes enter the
  /// kernel, whichever instruction they belong to.
  static func vdsoInt80(pid: Int32) throws -> UInt64? {
    guard let vdso = try ProcMaps.read(pid: pid).first(where: { $0.kind == .vdso }) else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(vdso.size))
    try bytes.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: vdso.start, end: vdso.end)], into: buffer)
    }
    for index in 0..<(bytes.count - 1) where bytes[index] == 0xcd && bytes[index + 1] == 0x80 {
      return vdso.start + UInt64(index)
    }
    return nil
  }

  /// The address of a `syscall` instruction (0f 05) in the task's [vdso]: at the known offset
  /// from the vdso base (AT_SYSINFO_EHDR) when the bytes there say so, else searched in the
  /// [vdso] its maps show.
  static func vdsoSyscall(pid: Int32, base: UInt64?) throws -> UInt64? {
    if let offset = vdsoSyscallOffset, let base {
      var found: [UInt8] = [0, 0]
      let read: ()? = try? found.withUnsafeMutableBytes { buffer in
        try ProcessMemory.read(
          pid: pid, ranges: [AddressRange(start: base + offset, end: base + offset + 2)], into: buffer)
      }
      if read != nil && found == [0x0f, 0x05] { return base + offset }
    }
    guard let vdso = try ProcMaps.read(pid: pid).first(where: { $0.kind == .vdso }) else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(vdso.size))
    try bytes.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: vdso.start, end: vdso.end)], into: buffer)
    }
    for index in 0..<(bytes.count - 1) where bytes[index] == 0x0f && bytes[index + 1] == 0x05 {
      return vdso.start + UInt64(index)
    }
    return nil
  }
}
