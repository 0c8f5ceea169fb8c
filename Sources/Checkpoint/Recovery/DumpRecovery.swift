import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging
import SystemPackage

/// Puts back a container that a dump left when ckcont died in the middle of it, from the
/// dump's journal (``DumpJournal``). Every ckcont command that works on a cgroup (freeze,
/// thaw, dump, kill) runs it first.
///
/// What a dead dump can leave, and what recovery does about it:
/// - threads parked in pause() at their [vdso] (``SeizedContainer``), or stopped at the end of
///   a batch of remote calls (``SyscallBatch/Ending``): seized again, given back their
///   registers, signal mask and CPUs; a process stopped by the batch is continued;
/// - a scratch area still mapped: unmapped (from the park, by a remote munmap);
/// - TCP connections in repair mode: taken out of it, SO_REUSEADDR as it was;
/// - stopped jobs the dump continued: stopped again;
/// - a partial bundle file: removed;
/// - the cgroup frozen: thawed, unless it was frozen before the dump;
/// - a complete bundle whose container was being killed: the kill is finished.
/// Threads that are not parked ran on untouched (ckcont died before it changed them) and are
/// left as they are; a process whose pid now names another (start time) is not touched.
public enum DumpRecovery {
  /// Recovers `cgroup` if a dead dump left a journal for it; returns what was done, nil when
  /// there was nothing to do. Throws when a live ckcont is dumping it.
  public static func settle(_ cgroup: Cgroup, log: Logger) throws -> String? {
    removeOrphanJournals()
    let path = DumpJournal.path(for: cgroup.path)
    guard access(path, F_OK) == 0 else { return nil }
    let record: DumpRecord
    do {
      record = try DumpJournal.read(path)
    } catch {
      throw CKError(
        .failed, "the dump journal \(path) cannot be read: \(error)",
        hint: "a dump of \(cgroup.path) died; check its tasks (ckcont ps), then remove the file")
    }
    guard !record.isOwnerAlive else {
      throw CKError(
        .failed, "ckcont \(record.ckcontPid) is dumping \(cgroup.path) now",
        hint: "wait for it to finish, or stop it; the next ckcont command puts the container back")
    }
    let what: String
    if record.killing {
      finishKill(record, cgroup: cgroup)
      what = "finished killing the container of a complete bundle"
    } else {
      let restored = try putBack(record, cgroup: cgroup, log: log)
      what = "put back \(restored) parked threads"
    }
    if let partial = record.partialBundle { unlink(partial) }
    unlink(path)
    return "\(what) that ckcont \(record.ckcontPid) left when it died while dumping \(cgroup.path)"
  }

  /// Journals of dead dumps whose cgroup is gone (removed with its container): nothing is
  /// left to put back.
  private static func removeOrphanJournals() {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: DumpJournal.directory)) ?? []
    for name in names where name.hasPrefix("dump-") && name.hasSuffix(".json") {
      let path = DumpJournal.directory + "/" + name
      guard let record = try? DumpJournal.read(path), !record.isOwnerAlive, access(record.cgroup, F_OK) != 0 else {
        continue
      }
      if let partial = record.partialBundle { unlink(partial) }
      unlink(path)
    }
  }

  /// The dump had its bundle and was killing the container: the survivors are killed too.
  private static func finishKill(_ record: DumpRecord, cgroup: Cgroup) {
    for process in record.processes where record.isSame(process) { kill(process.pid, SIGKILL) }
    try? Freezer.thaw(cgroup)
  }

  /// One thread seized again, with what it holds now.
  private struct Seized {
    let tid: Int32
    let registers: Registers
  }

  /// Seizes every recorded thread still there, puts back those the dump had parked, and lets
  /// the container go as it was before the dump (frozen or not). Returns how many it put back.
  private static func putBack(_ record: DumpRecord, cgroup: Cgroup, log: Logger) throws -> Int {
    let processes = record.processes.filter { record.isSame($0) }
    // Stopped by the SIGSTOP at the end of a batch, not as a job of its own.
    let stoppedByBatch = Set(
      processes.filter { $0.stopSignal == nil && ProcStat.read(pid: $0.pid)?.state == "T" }.map(\.pid))
    var seized: [Int32] = []
    defer {
      for tid in seized { try? Ptrace.detach(tid) }
    }
    for process in processes {
      for thread in process.threads where (try? Ptrace.seize(thread.tid)) != nil {
        seized.append(thread.tid)
        try? Ptrace.interrupt(thread.tid)
      }
    }
    // A frozen task reports its stop only once thawed (v1); none runs before it has stopped.
    try Freezer.thaw(cgroup)
    var stopped = Set<Int32>()
    for tid in seized {
      guard let status = try? Ptrace.wait(tid), case .stopped = status else { continue }
      stopped.insert(tid)
    }
    // A process the batch's SIGSTOP stopped ends its group stop first: a group-stopped
    // tracee re-enters the stop whenever resumed, and the scratch area's munmap must run.
    // The SIGCONT stays pending while every signal is blocked; once a tracee is resumed, the
    // kernel traps it again to report the continue, before any of its code runs.
    for process in processes where stoppedByBatch.contains(process.pid) {
      kill(process.pid, SIGCONT)
      for thread in process.threads where stopped.contains(thread.tid) {
        try Tracee(tid: thread.tid).resume()
        try waitForStop(thread.tid)
      }
    }
    var stoppedThreads: [Int32: Seized] = [:]
    for tid in stopped {
      stoppedThreads[tid] = Seized(tid: tid, registers: try Tracee(tid: tid).registers())
    }
    var restored = 0
    for process in processes {
      restored += try putBack(
        process, stoppedThreads, socketsOf: record.repairedSockets.filter { $0.pid == process.pid }, log: log)
      for output in record.terminalOutputs ?? [] where output.pid == process.pid { putBack(output, log: log) }
    }
    // Everything resumes at once: frozen while detached, thawed (unless it was frozen).
    try? _ = Freezer.freeze(cgroup, timeout: 5)
    for tid in seized { try? Ptrace.detach(tid) }
    seized = []
    for process in processes {
      if let signal = process.stopSignal { kill(process.pid, signal) }
    }
    if !record.wasFrozen { try Freezer.thaw(cgroup) }
    return restored
  }

  /// Waits up to a second for a resumed tracee to trap again; interrupts it if it has not
  /// (it then sits in the park's pause()).
  private static func waitForStop(_ tid: Int32) throws {
    var status: Int32 = 0
    for attempt in 0..<1000 {
      let result = waitpid(tid, &status, Int32(CK_WALL) | WNOHANG)
      if result == tid { return }
      guard result == 0 else { throw SyscallError("waitpid", "\(tid)", Errno(rawValue: errno)) }
      if attempt == 999 {
        try Ptrace.interrupt(tid)
        _ = try Ptrace.wait(tid)
        return
      }
      usleep(1000)
    }
  }

  /// Puts back one process: its scratch area unmapped, its parked threads' registers, masks
  /// and CPUs, its connections out of repair mode.
  private static func putBack(
    _ process: DumpRecord.Process, _ stopped: [Int32: Seized], socketsOf sockets: [DumpRecord.RepairedSocket],
    log: Logger
  ) throws -> Int {
    // An i386 process was parked at an int $0x80 calling the i386 pause.
    let i386 = process.threads.first?.registers.cs == UInt64(CK_I386_CODE_SEGMENT)
    let pause = UInt64(i386 ? I386SyscallNumber.pause : SyscallNumber.pause)
    func isParked(_ registers: Registers) -> Bool {
      if let park = process.park, registers.rip == park || (registers.rip == park + 2 && registers.orig_rax == pause) {
        return true
      }
      if let scratch = process.scratch, registers.rip >= scratch && registers.rip < scratch + RemoteSession.areaSize {
        return true
      }
      return false
    }
    let parked = process.threads.filter { stopped[$0.tid].map { isParked($0.registers) } ?? false }
    if let scratch = process.scratch, let park = process.park, let first = parked.first {
      try unmapScratch(at: scratch, pid: process.pid, from: first.tid, park: park, i386: i386, log: log)
    }
    for thread in parked {
      let tracee = Tracee(tid: thread.tid)
      RestartMemos.record(tid: thread.tid, registers: thread.registers.raw)
      try tracee.setRegisters(thread.registers.raw)
      try tracee.setSignalMask(thread.signalMask)
      if let cpus = thread.cpus.flatMap(CPUSet.init(cpus:)) { try? cpus.apply(to: thread.tid) }
      log.debug("task \(process.pid) thread \(thread.tid): registers, signal mask and CPUs put back")
    }
    for socket in sockets {
      takeOutOfRepair(socket, log: log)
    }
    return parked.count
  }

  /// munmap of the scratch area, when the process's maps still show it, run by thread `tid`
  /// at the park's `syscall` instruction.
  private static func unmapScratch(
    at address: UInt64, pid: Int32, from tid: Int32, park: UInt64, i386: Bool, log: Logger
  ) throws {
    guard
      try ProcMaps.read(pid: pid).contains(where: { $0.start == address && $0.end == address + RemoteSession.areaSize })
    else {
      return
    }
    let tracee = Tracee(tid: tid)
    try tracee.setSignalMask(~0)
    var remote = try RemoteSyscall(tracee: tracee, gadget: .singleStep(address: park), i386: i386)
    try remote.checked(.munmap(address, length: RemoteSession.areaSize), "munmap of ckcont's scratch area")
    log.debug("task \(pid): unmapped ckcont's scratch area at \(hex(address))")
  }

  /// TCP_REPAIR off through a copy of the process's descriptor, if it still is a TCP socket.
  /// Writes a terminal's output back so that it waits in the master again, unless the dump
  /// did already (it read out all there was, and nothing ran since but its own put-back).
  private static func putBack(_ output: DumpRecord.TerminalOutput, log: Logger) {
    guard let ours = try? OwnedDescriptor(copying: output.fd, ofProcess: output.pid) else { return }
    guard ck_pty_readable(ours.raw) == 0 else { return }
    if output.bytes.withUnsafeBytes({ ck_pty_put_output(ours.raw, $0.baseAddress, $0.count) }) == 0 {
      log.debug("task \(output.pid) fd \(output.fd): \(output.bytes.count) bytes of terminal output put back")
    }
  }

  private static func takeOutOfRepair(_ socket: DumpRecord.RepairedSocket, log: Logger) {
    guard let ours = try? OwnedDescriptor(copying: socket.fd, ofProcess: socket.pid) else { return }
    var proto: Int32 = 0
    var size = socklen_t(MemoryLayout<Int32>.size)
    guard getsockopt(ours.raw, SOL_SOCKET, SO_PROTOCOL, &proto, &size) == 0, proto == Int32(IPPROTO_TCP) else {
      return
    }
    if ck_tcp_repair_off(ours.raw, socket.reuseAddress ? 1 : 0) == 0 {
      log.debug("task \(socket.pid) fd \(socket.fd): TCP connection out of repair mode")
    }
  }
}
