import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// Every thread of a cgroup subtree stopped under ptrace, with the registers and signal mask
/// each had, so that any failure can put the container back exactly as it was.
///
/// Sequence (DESIGN.md 3, "Freeze and seize"): freeze the subtree, PTRACE_SEIZE and
/// PTRACE_INTERRUPT every thread while frozen, thaw, then wait for each PTRACE_EVENT_STOP. No
/// user code runs between the freeze and the stop. All ptrace calls come from the thread that
/// created this object.
public final class SeizedContainer {
  public let cgroup: Cgroup
  public private(set) var processes: [CgroupProcess] = []
  /// CLOCK_MONOTONIC seconds when the container was frozen: its tasks stopped running then.
  public private(set) var frozenAt: Double = 0
  /// The VMA flags of each large process (smaps), read on a thread from the freeze on, so
  /// that smaps's walk of every page table (~40 ms per GiB here) overlaps the seize and the
  /// network lock (a dump's, `readingVMAFlags`). Frozen, a process's mappings no longer
  /// change (parking maps nothing).
  private(set) var vmaFlags: [Int32: BackgroundJob<[UInt64: VMFlags]>] = [:]
  /// Every seized thread with the state to put back on release.
  private(set) var original: [Int32: (registers: Registers, mask: UInt64)] = [:]
  private var seized: [Int32] = []
  /// Whether the cgroup was frozen before the dump: then it is left frozen at release.
  private let wasFrozen: Bool
  /// Processes that were stopped jobs: their stop signal.
  private var stopped: [Int32: Int32] = [:]
  private var released = false
  /// The CPUs of each thread and of ckcont's own, while they share one (``keepOnOneCPU()``).
  private var originalCPUs: [Int32: CPUSet] = [:]

  /// The CPUs thread `tid` may run on, as it had them before ``keepOnOneCPU()``.
  func cpus(of tid: Int32) -> CPUSet? { originalCPUs[tid] ?? (try? CPUSet.of(tid)) }
  private var tracerCPUs: CPUSet?

  /// The write-ahead journal of what the dump changes, for ``DumpRecovery`` if ckcont dies.
  let journal: DumpJournal

  /// Freezes `cgroup`, seizes every thread of its subtree, waits for all of them to stop and
  /// parks them (``park()``). On failure everything seized is released and the cgroup thawed
  /// (unless it was frozen before) before the error is thrown.
  ///
  /// Seized without PTRACE_O_EXITKILL: should ckcont die, its tracees are detached, not
  /// killed. Each change is journaled before it is made, and between remote calls every
  /// thread is parked where a dead tracer leaves it harmless.
  public init(cgroup: Cgroup, freezeTimeout: Double, log: Logger, readingVMAFlags: Bool = false) throws {
    self.cgroup = cgroup
    wasFrozen = try Freezer.isFrozen(cgroup)
    journal = try DumpJournal(cgroup: cgroup, wasFrozen: wasFrozen)
    let started = monotonicNow()
    do {
      _ = try Freezer.freeze(cgroup, timeout: freezeTimeout)
    } catch {
      journal.remove()
      throw error
    }
    frozenAt = monotonicNow()
    FaultInjection.point("dump:frozen")
    var found: [CgroupProcess] = []
    do {
      found = try cgroup.processes()
      guard !found.isEmpty else {
        throw CKError(.badInput, "\(cgroup.path) holds no tasks", hint: "nothing to checkpoint")
      }
      for process in found
      where readingVMAFlags
        && ((try? ProcStatExtended.read(pid: process.pid))?.rssPages ?? 0) >= MemoryCapture.smapsAside.pages
      {
        vmaFlags[process.pid] = BackgroundJob(named: "ckcont-smaps") { [pid = process.pid] in
          try ProcSmaps.readFlags(pid: pid)
        }
      }
      try journal.update { record in
        record.processes = found.map { .init(pid: $0.pid, startTime: ProcStat.read(pid: $0.pid)?.startTime ?? 0) }
      }
      for process in found {
        for tid in process.threads {
          do {
            try Ptrace.seize(tid)
          } catch {
            throw CKError(
              .failed, "cannot seize task \(process.pid) thread \(tid): \(error)",
              hint: error.errno == .notPermitted ? "is it traced by another program (a debugger)?" : nil)
          }
          seized.append(tid)
          try Ptrace.interrupt(tid)
        }
      }
      // Thawed even when it was frozen before (`ckcont freeze`, a paused container): a frozen
      // task resumed for a remote call enters the freezer instead of running it, and under v1
      // does not even report its stop. Seized, nothing runs; release freezes it again.
      try Freezer.thaw(cgroup)
      for tid in seized {
        let status = try Ptrace.wait(tid)
        guard status.isEventStop else {
          throw CKError(.failed, "thread \(tid) did not stop for ptrace: \(status)")
        }
        // A group-stop (SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU: a job stopped with Ctrl-Z) shows
        // as an event stop with the stop signal.
        if case .stopped(let signal, _) = status, [SIGSTOP, SIGTSTP, SIGTTIN, SIGTTOU].contains(signal),
          let pid = found.first(where: { $0.threads.contains(tid) })?.pid
        {
          stopped[pid] = signal
        }
      }
      FaultInjection.point("dump:seized")
      try journal.update { [stopped] record in
        for index in record.processes.indices {
          record.processes[index].stopSignal = stopped[record.processes[index].pid]
        }
      }
      // Such a task re-enters its stop whenever ptrace resumes it, so no remote call could run
      // in it: it is continued (the SIGCONT itself is never delivered) and stopped again at
      // release (``release(leaveFrozen:)``) or at restore.
      for (pid, _) in stopped {
        Glibc.kill(pid, SIGCONT)
        for tid in found.first(where: { $0.pid == pid })?.threads ?? [] { try Self.settleAfterContinue(tid) }
      }
      for tid in seized {
        let tracee = Tracee(tid: tid)
        original[tid] = (try tracee.registers(), try tracee.signalMask())
      }
      processes = found
      let parking = monotonicNow()
      try park()
      FaultInjection.point("dump:parked")
      log.debug(
        "seized \(seized.count) threads of \(found.count) processes in \(milliseconds(since: started)) (freeze \(milliseconds(since: started, until: frozenAt)), park \(milliseconds(since: parking)))"
      )
    } catch {
      processes = found
      release(leaveFrozen: false)
      throw error
    }
  }

  /// Where each process's threads are parked: a `syscall` instruction of its [vdso].
  private var parks: [Int32: UInt64] = [:]

  /// The `syscall` instruction where process `pid`'s threads are parked.
  func park(of pid: Int32) -> UInt64? { parks[pid] }

  /// The scratch areas of the processes' remote calls (``RemoteSession``), chosen from their
  /// mappings and journaled in one write before any is mapped: one write per process
  /// rewrote the whole journal each time (a 1000-process dump spent 17 s in it).
  private(set) var scratchAreas: [Int32: UInt64] = [:]

  func reserveScratchAreas(_ areas: [Int32: UInt64]) throws {
    try journal.update { record in
      for index in record.processes.indices {
        if let area = areas[record.processes[index].pid] { record.processes[index].scratch = area }
      }
    }
    scratchAreas.merge(areas) { _, new in new }
  }

  /// Parks every thread: signals all blocked, and registers that make it call pause() at a
  /// `syscall` instruction of its [vdso]. Should ckcont die, a parked thread sleeps there for
  /// good (a stop and continue restarts the pause) instead of running with what the dump
  /// changed, until ``DumpRecovery`` puts it back. Remote calls start from these registers
  /// and come back to them (``RemoteSession``). The originals, each thread's CPUs and the
  /// park addresses are journaled first.
  private func park() throws {
    for process in processes {
      if try abi(of: process) == .i386 {
        guard let gadget = try RemoteSession.vdsoInt80(pid: process.pid) else {
          throw CKError(.failed, "i386 task \(process.pid) has no [vdso] with an int $0x80 to run remote calls")
        }
        parks[process.pid] = gadget
        continue
      }
      let base = try AuxVector.read(pid: process.pid).first { $0.type == UInt64(AT_SYSINFO_EHDR) }?.value
      guard let gadget = try RemoteSession.vdsoSyscall(pid: process.pid, base: base) else {
        throw CKError(.failed, "task \(process.pid) has no [vdso] with a syscall instruction to run remote calls")
      }
      parks[process.pid] = gadget
    }
    try journal.update { record in
      for index in record.processes.indices {
        let pid = record.processes[index].pid
        guard let process = processes.first(where: { $0.pid == pid }) else { continue }
        record.processes[index].park = parks[pid]
        record.processes[index].threads = process.threads.compactMap { tid in
          original[tid].map {
            .init(
              tid: tid, registers: GeneralRegisters($0.registers), signalMask: $0.mask, cpus: try? CPUSet.of(tid).cpus)
          }
        }
      }
    }
    for process in processes {
      guard let gadget = parks[process.pid] else { continue }
      for tid in process.threads {
        guard var registers = original[tid]?.registers else { continue }
        // Raw: the park is set in the registers, run whenever the task is next let go.
        registers.rip = gadget
        registers.rax = UInt64(try abi(of: process) == .i386 ? I386SyscallNumber.pause : SyscallNumber.pause)
        // -1: no syscall restart when it resumes from this stop.
        registers.orig_rax = UInt64.max
        let tracee = Tracee(tid: tid)
        try tracee.setSignalMask(~0)
        try tracee.setRegisters(registers)
      }
    }
  }

  deinit { release(leaveFrozen: false) }

  /// Takes a thread of a process just sent SIGCONT from its group-stop report to a plain
  /// ptrace stop with nothing pending, without running any of its code. The kernel has a
  /// notification trap and the SIGCONT itself to hand over: while SIGCONT is pending the thread
  /// is resumed bare (it stops for one or the other before user space); the SIGCONT's delivery
  /// stop is passed with no signal and a pending interrupt, as is a thread with nothing
  /// pending, so that each traps again before it could run.
  private static func settleAfterContinue(_ tid: Int32) throws {
    let tracee = Tracee(tid: tid)
    var status = WaitStatus.stopped(signal: SIGSTOP, event: Int32(CK_PTRACE_EVENT_STOP))
    for _ in 0..<8 {
      let procStatus = try ProcStatus.read(pid: tid)
      let continuePending = (procStatus.sigPnd | procStatus.shdPnd) & (1 << UInt64(SIGCONT - 1)) != 0
      guard case .stopped(let signal, _) = status else { break }
      if status.isEventStop && continuePending {
        try tracee.resume()
      } else if status.isEventStop && signal == SIGTRAP {
        return
      } else {
        try Ptrace.interrupt(tid)
        try tracee.resume()
      }
      status = try tracee.wait()
    }
    throw CKError(.failed, "thread \(tid) of a stopped job did not settle for ptrace after SIGCONT (\(status))")
  }

  /// The stop signal of each process that was a stopped job when seized.
  public var stopSignals: [Int32: Int32] { stopped }

  /// Moves every seized thread onto ckcont's CPU, and ckcont onto it. Each remote call is a
  /// round trip between ckcont and a task: on one CPU a plain context switch, across CPUs two
  /// wake-up interrupts, several times slower in a VM. Where a thread cannot move (a cpuset
  /// without that CPU) it stays where it is, only slower. Threads ckcont starts from here on
  /// inherit the one CPU: start worker threads before, or after ``endRemoteCalls()``.
  public func keepOnOneCPU() {
    guard let own = try? CPUSet.of(0) else { return }
    let cpu = CPUSet(only: CPUSet.current())
    guard (try? cpu.apply(to: 0)) != nil else { return }
    tracerCPUs = own
    for tid in seized {
      guard let cpus = try? CPUSet.of(tid), (try? cpu.apply(to: tid)) != nil else { continue }
      originalCPUs[tid] = cpus
    }
  }

  /// Gives ckcont its own CPUs back once no more remote calls are to come (the tasks keep
  /// theirs until release), so that work after the capture can use every CPU.
  public func endRemoteCalls() {
    if let tracerCPUs { try? tracerCPUs.apply(to: 0) }
    tracerCPUs = nil
  }

  /// Puts every thread's registers and signal mask back and detaches; the container runs on
  /// (or stays frozen with `leaveFrozen`, or when it was frozen before the dump). Safe to call
  /// more than once. The journal goes last: ckcont dying meanwhile leaves the rest to
  /// ``DumpRecovery``.
  public func release(leaveFrozen: Bool) {
    guard !released else { return }
    released = true
    // Freezing first makes every task resume at once on thaw, not one by one as detached.
    try? _ = Freezer.freeze(cgroup, timeout: 5)
    RestartMemos.prune()
    for (index, tid) in seized.enumerated() {
      let tracee = Tracee(tid: tid)
      if let state = original[tid] {
        // A sleep it resumes through the kernel's restart block: a later dump asks here.
        RestartMemos.record(tid: tid, registers: state.registers)
        try? tracee.setRegisters(state.registers)
        try? tracee.setSignalMask(state.mask)
      }
      try? originalCPUs[tid]?.apply(to: tid)
      try? tracee.detach()
      if index == 0 { FaultInjection.point("dump:releasing") }
    }
    // Stopped jobs stop again before they can run (the signal acts on thaw).
    for (pid, signal) in stopped { Glibc.kill(pid, signal) }
    if !leaveFrozen && !wasFrozen { try? Freezer.thaw(cgroup) }
    endRemoteCalls()
    journal.remove()
  }

  /// Kills every task of the container (after a complete dump): journaled first, so that a
  /// ckcont dying meanwhile has the kill finished by ``DumpRecovery``; then frozen, detached
  /// (still stopped: frozen, they run no code of theirs), SIGKILLed, thawed so that the
  /// kills take effect. A tracee killed first could not be detached (it was dying) and stayed
  /// a zombie of ckcont's until ckcont waited for it or exited: its parent could not reap it,
  /// nor a pid namespace's init finish, meanwhile.
  public func kill() throws {
    guard !released else { return }
    try journal.update { record in
      record.killing = true
      record.partialBundle = nil
    }
    FaultInjection.point("dump:killing")
    released = true
    try? _ = Freezer.freeze(cgroup, timeout: 5)
    let stuck = seized.filter { (try? Tracee(tid: $0).detach()) == nil }
    for process in processes { Glibc.kill(process.pid, SIGKILL) }
    try? Freezer.thaw(cgroup)
    // Any that could not be detached: their exits are taken here.
    Ptrace.reapKilled(stuck, timeout: 1)
    // Gone when the dump returns (a restore into the same cgroup right after finds it
    // empty); a task in uninterruptible sleep may take longer, which the caller can see.
    let deadline = monotonicNow() + 5
    while !cgroup.isEmpty() && monotonicNow() < deadline { usleep(1000) }
    endRemoteCalls()
    journal.remove()
  }

  /// The registers thread `tid` had when seized.
  public func registers(of tid: Int32) -> Registers? { original[tid]?.registers }

  /// The ABI of a process's code, from its threads' code segments as seized: nil for
  /// x86_64, `.i386` when every thread runs i386 code; a process whose threads differ is
  /// refused.
  func abi(of process: CgroupProcess) throws -> TaskABI? {
    for tid in process.threads {
      guard let regs = original[tid]?.registers else { continue }
      // A selector with the table-indicator bit names an LDT entry (modify_ldt: Wine,
      // DOSEMU, old threading libraries), which ckcont does not save.
      let localDescriptorTable: UInt64 = 0x4
      let selectors = [regs.cs, regs.ss, regs.ds, regs.es, regs.fs, regs.gs]
      let known = [UInt64(CK_I386_CODE_SEGMENT), RemoteSyscall.codeSegment64]
      guard known.contains(regs.cs), selectors.allSatisfy({ $0 & localDescriptorTable == 0 }) else {
        throw CKError(
          .failed,
          "thread \(tid) of process \(process.pid) runs with segment selectors ckcont cannot restore (cs 0x\(String(regs.cs, radix: 16)), LDT or 16-bit code)",
          hint: "programs that use modify_ldt (Wine, DOSEMU) or vm86 cannot be checkpointed")
      }
    }
    let i386 = process.threads.compactMap { original[$0]?.registers.cs }.map { $0 == UInt64(CK_I386_CODE_SEGMENT) }
    guard i386.contains(true) else { return nil }
    guard !i386.contains(false) else {
      throw CKError(
        .failed, "process \(process.pid) has threads in i386 and in x86_64 code at once, which ckcont cannot checkpoint"
      )
    }
    return .i386
  }

  /// The ABI of the process `pid` (see ``abi(of:)``).
  func abi(ofPid pid: Int32) throws -> TaskABI? {
    guard let process = processes.first(where: { $0.pid == pid }) else { return nil }
    return try abi(of: process)
  }

  /// The signal mask thread `tid` had when seized.
  public func signalMask(of tid: Int32) -> UInt64? { original[tid]?.mask }
}

func milliseconds(since start: Double, until end: Double = monotonicNow()) -> String {
  String(format: "%.1f ms", (end - start) * 1000)
}
