import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

/// Captures what a process is — threads, registers, signal state, credentials, limits — from
/// /proc, ptrace, and remote system calls run inside the (stopped) process itself.
///
/// Creating one reads only /proc and may happen on any thread, for many processes at once;
/// ``core(session:log:)`` then asks the process itself, on the thread that seized it.
struct TaskCapture: Sendable {
  let pid: Int32
  /// The thread ids, the main thread (tid == pid) first: restore creates the others from it.
  let threads: [Int32]
  /// /proc/<pid>/status, and each other thread's, read once (parsing them is not free).
  let status: ProcStatus
  let threadStatus: [Int32: ProcStatus]
  let timers: [PosixTimerInfo]
  let cwd: String
  let root: String
  let capabilitiesText: String

  init(pid: Int32, threads: [Int32]) throws {
    self.pid = pid
    self.threads = [pid] + threads.filter { $0 != pid }
    status = try ProcStatus.read(pid: pid)
    var others: [Int32: ProcStatus] = [:]
    for tid in threads where tid != pid {
      others[tid] = try ProcStatus.parse(PseudoFile.read("/proc/\(pid)/task/\(tid)/status"))
    }
    threadStatus = others
    timers = try ProcTimers.read(pid: pid)
    guard timers.count <= 64 else {
      throw CKError(.failed, "task \(pid) has \(timers.count) POSIX timers; ckcont checkpoints up to 64")
    }
    cwd = try readLink("/proc/\(pid)/cwd")
    root = try readLink("/proc/\(pid)/root")
    capabilitiesText = Capabilities.of(pid: pid) ?? ""
  }

  /// The process's place in the tree, with ids as the container's pid namespace sees them:
  /// the `level`-th of each chain (the container root's count of pid namespaces); deeper
  /// ones are kept whole (``TaskEntryImage/nestedPids``, see ``PidNamespaces``).
  func entry(cgroup: String, level: Int) throws -> TaskEntryImage {
    let chains = threads.map { tid in (tid == pid ? status : threadStatus[tid])?.nsPid ?? [tid] }
    let own = status.nsPid
    guard level >= 1, own.count >= level, chains.allSatisfy({ $0.count == own.count }) else {
      throw CKError(.failed, "process \(pid) is in \(own.count) pid namespaces, fewer than the container's \(level)")
    }
    func at(_ ids: [Int32]) -> Int32 { ids.count >= level ? ids[level - 1] : 0 }
    var entry = TaskEntryImage(
      pid: own[level - 1], namespacePids: own, ppid: status.ppid, pgid: at(status.nsPgid), sid: at(status.nsSid),
      threads: chains.map { $0[level - 1] }, cgroup: cgroup, comm: status.name)
    if own.count > level {
      entry.nestedPids = Array(own[level...])
      entry.nestedThreads = chains.map { Array($0[level...]) }
    }
    return entry
  }

  /// The core image, and brk (asked of the task, as /proc does not show it). Remote syscalls
  /// run in the main thread; its registers and signal mask are put back before returning.
  /// Also what the process sees of its namespaces (``NamespaceFacts``).
  /// `vmas` are its mappings (its mm image has them), for a free place for the scratch area.
  func core(session: SeizedContainer, vmas: [VMAImage], log: Logger) throws -> (
    core: TaskCore, brk: UInt64, namespaces: NamespaceFacts
  ) {
    var ownFilters: [Int32: [SeccompFilterImage]] = [:]
    let seccompFilters = try captureSeccomp(suffixes: &ownFilters)
    let inject = try RemoteSession(
      tracee: Tracee(tid: pid), session: session, vmas: vmas, ending: batchEnding(tid: pid))
    defer { inject.finish() }
    // One batch of remote calls; out-parameters go to their own slots of the scratch area.
    var batch = SyscallBatch()
    var slots = ScratchSlots(at: inject.scratch)
    let actionQueries = SignalActionQueries(handled: status.sigCgt | status.sigIgn, adding: &batch, slots: &slots)
    let controlQueries = ProcessControlQueries(adding: &batch, slots: &slots)
    let timerQueries = TimerQueries(posix: timers, adding: &batch, slots: &slots)
    let namespaceQueries = try NamespaceQueries(task: pid, adding: &batch, slots: &slots)
    let limitQueries = LimitQueries(adding: &batch, slots: &slots)
    let mainThread = ThreadQueries(adding: &batch, at: slots.take(32))
    let ran = try inject.run(batch)

    let actions = actionQueries.read(ran)
    let answers = try controlQueries.read(ran, task: pid)
    let itimers = try timerQueries.intervalTimers(ran, task: pid)
    let innerTids = Dictionary(
      uniqueKeysWithValues: threads.map { tid in
        (tid, (tid == pid ? status : threadStatus[tid])?.nsPid.last ?? tid)
      })
    let posixTimers = try timerQueries.posixTimers(ran, task: pid, innerTids: innerTids)
    let namespaces = try namespaceQueries.read(ran, task: pid)
    let mainThreadState = try mainThread.read(ran, task: pid)
    let mainStat = try ProcStatExtended.read(pid: pid)
    let processScheduling = SchedulingImage(
      nice: Int32(truncatingIfNeeded: mainStat.nice), policy: mainStat.policy, realtimePriority: mainStat.rtPriority)
    let threadCores = try threads.map { tid in
      var thread = try threadCore(
        tid: tid, session: session, inject: inject, mainThread: mainThreadState,
        process: (processScheduling, answers.controls.timerSlack))
      thread.seccompFilters = ownFilters[tid]
      return thread
    }
    let credentials = Credentials(
      uids: [status.uid.real, status.uid.effective, status.uid.saved, status.uid.filesystem],
      gids: [status.gid.real, status.gid.effective, status.gid.saved, status.gid.filesystem],
      groups: status.groups, capInheritable: status.capInh, capPermitted: status.capPrm, capEffective: status.capEff,
      capBounding: status.capBnd, capAmbient: status.capAmb, capabilitiesText: capabilitiesText,
      noNewPrivileges: status.noNewPrivs, securebits: answers.securebits)
    var core = TaskCore(
      threads: threadCores, signalActions: actions,
      sharedPendingSignals: try Tracee(tid: pid).queuedSignals(shared: true).map { Data($0) }, itimers: itimers,
      posixTimers: posixTimers.isEmpty ? nil : posixTimers, personality: answers.personality,
      resourceLimits: try limitQueries.read(ran, task: pid), umask: status.umask, cwd: cwd, root: root,
      comm: status.name,
      credentials: credentials, parentDeathSignal: answers.parentDeathSignal, dumpable: answers.dumpable,
      childSubreaper: answers.childSubreaper)
    core.seccompFilters = seccompFilters
    core.controls = answers.controls
    core.abi = try session.abi(ofPid: pid)
    core.oomScoreAdjust = Int32(try PseudoFile.readValue("/proc/\(pid)/oom_score_adj"))
    // Without audit in the kernel there is no loginuid.
    core.loginUID = try PseudoFile.readIfExists("/proc/\(pid)/loginuid").flatMap(UInt32.init)
    // Each thread has its own, which the restore sets once, before the threads are cloned.
    for tid in threads where tid != pid {
      let own = try PseudoFile.readIfExists("/proc/\(pid)/task/\(tid)/loginuid").flatMap(UInt32.init)
      guard own == core.loginUID else {
        throw CKError(
          .failed,
          "task \(pid): thread \(tid) has audit login uid \(own.map(String.init) ?? "none"), the process \(core.loginUID.map(String.init) ?? "none"): ckcont keeps one per process",
          hint: "checkpoint it before a thread sets its own login uid")
      }
    }
    log.debug(
      "task \(pid): \(actions.count) signal actions, \(itimers.count) itimers, \(inject.remote.count) remote syscalls")
    return (core, answers.brk, namespaces)
  }

  /// The seccomp filters every thread of the process has, oldest first (nil: none), and
  /// what each thread added on its own after them (by tid; `suffixes`). Their threads'
  /// filters are suspended for ckcont's remote calls (PTRACE_O_SUSPEND_SECCOMP, until the
  /// detach), which the filters could otherwise deny or answer by killing. Strict mode is
  /// refused.
  private func captureSeccomp(suffixes: inout [Int32: [SeccompFilterImage]]) throws -> [SeccompFilterImage]? {
    let modes = threads.map { tid in (tid, (tid == pid ? status : threadStatus[tid])?.seccomp ?? 0) }
    guard modes.contains(where: { $0.1 != 0 }) else { return nil }
    if let strict = modes.first(where: { $0.1 == 1 }) {
      throw CKError(
        .failed,
        "process \(pid)\(strict.0 == pid ? "" : " (thread \(strict.0))") runs under seccomp strict mode, which ckcont cannot checkpoint yet",
        hint: "checkpoint it before it enters strict mode")
    }
    var chains: [[SeccompFilterImage]] = []
    for (tid, mode) in modes {
      // A thread without filters (made before any was installed without TSYNC): the kernel
      // answers PTRACE_SECCOMP_GET_FILTER with EINVAL for it.
      guard mode != 0 else {
        chains.append([])
        continue
      }
      let tracee = Tracee(tid: tid)
      try tracee.setOptions(Int32(Ptrace.defaultOptions) | Int32(CK_PTRACE_O_SUSPEND_SECCOMP))
      chains.append(try tracee.seccompFilters().map { SeccompFilterImage(flags: $0.flags, program: Data($0.program)) })
    }
    // Refused here rather than at restore, after the container is gone.
    for chain in chains {
      let sizes = chain.map { $0.program.count / 8 }
      guard sizes.count <= SeccompFilterImage.maxRestorableFilters,
        sizes.allSatisfy({ $0 <= SeccompFilterImage.maxRestorableInstructions })
      else {
        throw CKError(
          .failed,
          "process \(pid) has \(sizes.count) seccomp filter(s) of up to \((sizes.max() ?? 0)) instructions, more than ckcont restores (\(SeccompFilterImage.maxRestorableFilters) of \(SeccompFilterImage.maxRestorableInstructions))"
        )
      }
    }
    // What every thread has, oldest first; a thread's own come after (each installs them
    // itself at restore, without TSYNC).
    var shared = chains[0]
    for chain in chains.dropFirst() {
      shared = Array(zip(shared, chain).prefix { $0.0 == $0.1 }.map(\.0))
    }
    for (tid, chain) in zip(threads, chains) where chain.count > shared.count {
      suffixes[tid] = Array(chain.dropFirst(shared.count))
    }
    return shared.isEmpty ? nil : shared
  }

  /// How batches end in thread `tid`: stopping themselves (``SyscallBatch/Ending``), unless
  /// a SIGCONT is pending, which sending SIGSTOP would discard; then with a breakpoint, which
  /// kills the process should ckcont die during the batch (microseconds).
  private func batchEnding(tid: Int32) -> SyscallBatch.Ending {
    let continueBit: UInt64 = 1 << UInt64(SIGCONT - 1)
    let thread = tid == pid ? status : threadStatus[tid]
    guard (status.shdPnd | (thread?.sigPnd ?? 0)) & continueBit == 0 else { return .breakpoint }
    // tgkill runs in the task: the ids its own pid namespace gives it.
    return .stopSignal(tgid: status.nsPid.last ?? pid, tid: thread?.nsPid.last ?? tid)
  }

  /// One thread's registers, xstate, mask, pending signals, rseq, altstack, clear_child_tid,
  /// and what it set for itself alone.
  private func threadCore(
    tid: Int32, session: SeizedContainer, inject: RemoteSession, mainThread: (altStack: AltStack, clearTid: UInt64),
    process: (scheduling: SchedulingImage, timerSlack: UInt64)
  ) throws -> ThreadCore {
    let tracee = Tracee(tid: tid)
    guard let regs = session.registers(of: tid), let mask = session.signalMask(of: tid) else {
      throw CKError(.failed, "thread \(tid) was not seized")
    }
    let xstate = try tracee.extendedState()
    let innerTid = (tid == pid ? status : threadStatus[tid])?.nsPid.last ?? tid
    let rseqConfig = try tracee.rseqConfiguration()
    // sigaltstack and the clear_child_tid address are per thread and only reachable from
    // inside the thread itself: other threads run their own batch in the same scratch page.
    var (altStack, clearTid) = mainThread
    if tid != pid {
      let own = try RemoteSession(thread: tracee, sharing: inject, ending: batchEnding(tid: tid))
      defer { own.finish() }
      var batch = SyscallBatch()
      let queries = ThreadQueries(adding: &batch, at: own.scratch)
      (altStack, clearTid) = try queries.read(try own.run(batch), task: pid)
    }
    var registers = GeneralRegisters(regs)
    let abi = try session.abi(ofPid: pid)
    // A number in the registers (the call the thread is in), not a call to make.
    let restarted = abi == .i386 ? I386SyscallNumber.restartSyscall : SyscallNumber.restartSyscall
    if Int64(bitPattern: registers.origRax) == Int64(restarted),
      Int64(bitPattern: registers.rax) == RestartMemos.restartBlock,
      let number = RestartMemos.recall(tid: tid, registers: registers)
    {
      // A sleep an earlier ckcont let the kernel restart: it noted the call.
      registers.origRax = number
    } else if Int64(bitPattern: registers.origRax) == Int64(restarted) {
      let code = (try? MemFile(pid: tid, readOnly: true).read(7, at: registers.rip &- 7)) ?? []
      do {
        registers = try SyscallRestart.recoverRestartedCall(registers, code: code, abi: abi)
      } catch let error as CKError {
        throw CKError(.failed, "thread \(tid): \(error.message)", hint: error.hint)
      }
    }
    var core = ThreadCore(
      tid: innerTid, registers: registers, xstate: Data(xstate),
      xstateFeatures: XSave.features(of: xstate), blockedSignals: mask,
      pendingSignals: try tracee.queuedSignals(shared: false).map { Data($0) },
      rseq: rseqConfig.rseq_abi_pointer == 0
        ? nil
        : RseqRegistration(
          address: rseqConfig.rseq_abi_pointer, size: rseqConfig.rseq_abi_size, signature: rseqConfig.signature),
      altStack: altStack, clearChildTid: clearTid)
    if tid != pid { core.name = threadStatus[tid]?.name }
    core.cpus = session.cpus(of: tid)?.cpus
    if abi == .i386 {
      // An i386 thread's robust list has a slot of its own, which only the compat call reads.
      var head: UInt32 = 0
      var length: UInt32 = 0
      try negErrnoChecked("compat get_robust_list", "thread \(tid)") { ck_get_compat_robust_list(tid, &head, &length) }
      core.robustList = UInt64(head)
      core.tlsEntries = try TLSEntry.entries.map { entry in
        let desc = try tracee.threadArea(entry)
        return TLSEntry(entry: entry, base: desc.base_addr, limit: desc.limit, flags: desc.flags)
      }
    } else {
      var head: UInt = 0
      var length: UInt = 0
      try negErrnoChecked("get_robust_list", "thread \(tid)") { ck_get_robust_list(tid, &head, &length) }
      core.robustList = UInt64(head)
    }
    // I/O priority, and for other threads their own scheduling and timer slack: what a thread
    // set for itself alone (setpriority, sched_setscheduler, ioprio_set, prctl on its tid).
    let ioPriority = ck_ioprio_get(tid)
    guard ioPriority >= 0 else { throw SyscallError("ioprio_get", "thread \(tid)", .init(rawValue: -ioPriority)) }
    if ioPriority != 0 { core.ioPriority = UInt32(ioPriority) }
    if tid != pid {
      let stat = try ProcStatExtended.read(pid: tid)
      let own = SchedulingImage(
        nice: Int32(truncatingIfNeeded: stat.nice), policy: stat.policy, realtimePriority: stat.rtPriority)
      if own != process.scheduling { core.scheduling = own }
      let slack = try PseudoFile.read("/proc/\(tid)/timerslack_ns").trimmingCharacters(in: .whitespacesAndNewlines)
      if let slack = UInt64(slack), slack != process.timerSlack { core.timerSlack = slack }
    }
    return core
  }
}

/// What a process sees of its namespaces, for the container's: the UTS names (uname), how
/// many SysV objects its IPC namespace holds (shm segments, semaphore sets, message queues),
/// and whether loopback is up in its network namespace (nil when it could not tell).
struct NamespaceFacts {
  var uts: (hostname: String, domainname: String)
  var sysvObjects: (shm: Int, sem: Int, msg: Int)
  var loopbackUp: Bool?
}

/// readlink(2) of a /proc link.
func readLink(_ path: String) throws -> String {
  var buffer = [CChar](repeating: 0, count: 4097)
  let n = try syscallChecked("readlink", path) { readlink(path, &buffer, 4096) }
  return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Facts about an XSAVE area.
enum XSave {
  /// XSTATE_BV: the state components present in the area (its header is at offset 512).
  static func features(of area: [UInt8]) -> UInt64 {
    guard area.count >= 520 else { return 0 }
    return area[512..<520].reversed().reduce(0) { $0 << 8 | UInt64($1) }
  }
}

extension GeneralRegisters {
  init(_ r: Registers) {
    self.init(
      r15: r.r15, r14: r.r14, r13: r.r13, r12: r.r12, rbp: r.rbp, rbx: r.rbx, r11: r.r11, r10: r.r10, r9: r.r9,
      r8: r.r8, rax: r.rax, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, origRax: r.orig_rax, rip: r.rip, cs: r.cs,
      eflags: r.eflags, rsp: r.rsp, ss: r.ss, fsBase: r.fs_base, gsBase: r.gs_base, ds: r.ds, es: r.es, fs: r.fs,
      gs: r.gs)
  }

  var raw: Registers {
    Registers(
      r15: r15, r14: r14, r13: r13, r12: r12, rbp: rbp, rbx: rbx, r11: r11, r10: r10, r9: r9, r8: r8, rax: rax,
      rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, orig_rax: origRax, rip: rip, cs: cs, eflags: eflags, rsp: rsp, ss: ss,
      fs_base: fsBase, gs_base: gsBase, ds: ds, es: es, fs: fs, gs: gs)
  }
}
