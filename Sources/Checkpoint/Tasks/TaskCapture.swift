import Bundle
import CKShim
import Foundation
import Glibc
import Linux

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
  func core(session: SeizedContainer, vmas: [VMAImage], log: (String) -> Void) throws -> (
    core: TaskCore, brk: UInt64, namespaces: NamespaceFacts
  ) {
    let seccompFilters = try captureSeccomp()
    let inject = try RemoteSession(tracee: Tracee(tid: pid), session: session, vmas: vmas, ending: batchEnding(tid: pid))
    defer { inject.finish() }

    // One batch of remote calls; out-parameters go to their own slots of the data area.
    var batch = SyscallBatch()
    var out = inject.scratch
    func slot(_ bytes: UInt64) -> UInt64 {
      defer { out += bytes }
      return out
    }
    // Only caught or ignored signals have an action to save (a default action with flags of
    // its own is not worth a remote call per signal).
    let handled = status.sigCgt | status.sigIgn
    var actionCalls: [(signal: Int32, call: Int, at: UInt64)] = []
    for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP && handled & (1 << UInt64(signal - 1)) != 0 {
      // rt_sigaction(sig, NULL, &old, sizeof(sigset_t)) fills struct kernel_sigaction.
      let at = slot(32)
      actionCalls.append((Int32(signal), batch.add(SyscallNumber.rtSigaction, UInt64(signal), 0, at, 8), at))
    }
    let brkCall = batch.add(SyscallNumber.brk, 0)
    let timerCalls = (0...2).map { which in
      let at = slot(32)
      return (which: Int32(which), call: batch.add(SyscallNumber.getitimer, UInt64(which), at), at: at)
    }
    let personalityCall = batch.add(SyscallNumber.personality, 0xffff_ffff)
    let pdeathsigAt = slot(8)
    let pdeathsigCall = batch.add(SyscallNumber.prctl, 2, pdeathsigAt)
    let dumpableCall = batch.add(SyscallNumber.prctl, 3)
    let subreaperAt = slot(8)
    let subreaperCall = batch.add(SyscallNumber.prctl, 37, subreaperAt)
    let securebitsCall = batch.add(SyscallNumber.prctl, 27)
    let thpCall = batch.add(SyscallNumber.prctl, 42)  // PR_GET_THP_DISABLE
    let slackCall = batch.add(SyscallNumber.prctl, 30)  // PR_GET_TIMERSLACK
    let mdweCall = batch.add(SyscallNumber.prctl, 66)  // PR_GET_MDWE (EINVAL before 6.3)
    let mergeCall = batch.add(SyscallNumber.prctl, 68)  // PR_GET_MEMORY_MERGE (EINVAL without KSM)
    let posixTimerCalls = timers.map { timer in
      let at = slot(32)
      return (timer: timer, call: batch.add(SyscallNumber.timerGettime, UInt64(UInt32(bitPattern: timer.id)), at), at: at)
    }
    let unameAt = slot(392)
    let unameCall = batch.add(SyscallNumber.uname, unameAt)
    // How many SysV objects its IPC namespace holds: SHM_INFO, SEM_INFO, MSG_INFO.
    let ipcAt = slot(128)
    let shmCall = batch.add(SyscallNumber.shmctl, 0, 14, ipcAt)
    let semCall = batch.add(SyscallNumber.semctl, 0, 0, 19, ipcAt + 48)
    let msgCall = batch.add(SyscallNumber.msgctl, 0, 12, ipcAt + 96)
    // Its resource limits, asked of itself: prlimit64 on a task of another uid needs
    // CAP_SYS_RESOURCE, and /proc/<pid>/limits is text to parse.
    let limitCalls = (0..<16).map { resource in
      let at = slot(16)
      return (resource: Int32(resource), call: batch.add(SyscallNumber.prlimit64, 0, UInt64(resource), 0, at), at: at)
    }
    let mainThread = ThreadQueries(adding: &batch, at: slot(32))
    // Whether loopback is up in its network namespace: SIOCGIFFLAGS on "lo" through a socket
    // of its own (struct ifreq: the name, then the flags at byte 16).
    let loopbackAt = slot(40)
    let probe = batch.add(SyscallNumber.socket, UInt64(AF_INET), UInt64(Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)), 0)
    let loopbackCall = batch.add(
      SyscallNumber.ioctl, arguments: [.result(probe), .value(0x8913 /* SIOCGIFFLAGS */), .value(loopbackAt)])
    batch.add(SyscallNumber.close, arguments: [.result(probe)])
    try [UInt8]([0x6c, 0x6f, 0]).withUnsafeBytes { try ProcessMemory.write(pid: pid, bytes: $0, at: loopbackAt) }
    let ran = try inject.run(batch)
    func result(_ call: Int, _ what: String) throws -> Int64 {
      let value = ran.results[call]
      guard value >= 0 || value < -4095 else {
        throw CKError(.failed, "task \(pid): \(what): \(String(cString: strerror(Int32(-value))))")
      }
      return value
    }

    var actions: [SignalAction] = []
    for (signal, call, at) in actionCalls where ran.results[call] == 0 {
      let words = ran.words(at: at, count: 4)
      if words[0] != 0 || words[1] != 0 || words[3] != 0 {
        actions.append(SignalAction(signal: signal, handler: words[0], flags: words[1], restorer: words[2], mask: words[3]))
      }
    }
    let brk = UInt64(bitPattern: try result(brkCall, "brk(0)"))
    var itimers: [IntervalTimer] = []
    for (which, call, at) in timerCalls {
      _ = try result(call, "getitimer(\(which))")
      let words = ran.words(at: at, count: 4)
      let interval = Int64(bitPattern: words[0]) * 1_000_000 + Int64(bitPattern: words[1])
      let value = Int64(bitPattern: words[2]) * 1_000_000 + Int64(bitPattern: words[3])
      if interval != 0 || value != 0 {
        itimers.append(IntervalTimer(which: which, intervalMicroseconds: interval, valueMicroseconds: value))
      }
    }
    let personality = try result(personalityCall, "personality")
    _ = try result(pdeathsigCall, "PR_GET_PDEATHSIG")
    let pdeathsig = Int32(truncatingIfNeeded: ran.words(at: pdeathsigAt, count: 1)[0])
    let dumpable = try result(dumpableCall, "PR_GET_DUMPABLE")
    _ = try result(subreaperCall, "PR_GET_CHILD_SUBREAPER")
    let subreaper = Int32(truncatingIfNeeded: ran.words(at: subreaperAt, count: 1)[0]) != 0
    let securebits = try result(securebitsCall, "PR_GET_SECUREBITS")
    var controls = ProcessControls(
      thpDisabled: UInt64(try result(thpCall, "PR_GET_THP_DISABLE")), timerSlack: UInt64(try result(slackCall, "PR_GET_TIMERSLACK")),
      memoryDenyWriteExecute: UInt64(max(0, ran.results[mdweCall])))
    if ran.results[mergeCall] > 0 { controls.memoryMerge = UInt64(ran.results[mergeCall]) }
    let mainThreadState = try mainThread.read(ran, task: pid)
    _ = try result(unameCall, "uname")
    // struct utsname: six fields of 65 bytes; nodename is the second, domainname the sixth.
    let utsBytes = ran.words(at: unameAt, count: 49).withUnsafeBytes { Array($0) }
    func utsField(_ index: Int) -> String {
      String(decoding: utsBytes[index * 65..<(index + 1) * 65].prefix { $0 != 0 }, as: UTF8.self)
    }
    let uts = (hostname: utsField(1), domainname: utsField(5))
    let ipcWords = ran.words(at: ipcAt, count: 16)
    func int32(_ byteOffset: Int) -> Int32 { Int32(truncatingIfNeeded: ipcWords[byteOffset / 8] >> UInt64(byteOffset % 8 * 8)) }
    // shm_info.used_ids, seminfo.semusz (sets in use), msginfo.msgpool (queues in use).
    let sysvObjects = (
      shm: ran.results[shmCall] >= 0 ? Int(int32(0)) : 0, sem: ran.results[semCall] >= 0 ? Int(int32(48 + 28)) : 0,
      msg: ran.results[msgCall] >= 0 ? Int(int32(96)) : 0
    )
    let loopbackUp = ran.results[loopbackCall] == 0 ? ran.words(at: loopbackAt + 16, count: 1)[0] & 1 /* IFF_UP */ != 0 : nil
    // /proc names a SIGEV_THREAD_ID target by its host tid: the image keeps the inner one.
    let innerTids = Dictionary(uniqueKeysWithValues: threads.map { tid in
      (tid, (tid == pid ? status : threadStatus[tid])?.nsPid.last ?? tid)
    })
    var posixTimers: [PosixTimerImage] = []
    for (timer, call, at) in posixTimerCalls {
      _ = try result(call, "timer_gettime(\(timer.id))")
      let words = ran.words(at: at, count: 4).map { Int64(bitPattern: $0) }
      let notify: Int32 = switch timer.notify {
        case .none: 1
        case .signal: timer.targetIsThread ? 4 : 0
        case .thread: 2
      }
      guard notify != 2 else {
        throw CKError(.failed, "task \(pid): POSIX timer \(timer.id) notifies by SIGEV_THREAD, which ckcont cannot checkpoint yet")
      }
      posixTimers.append(
        PosixTimerImage(
          id: timer.id, clockID: timer.clockID, notify: notify, signal: timer.signal, sigevValue: timer.sigevValue,
          targetThread: timer.targetIsThread ? innerTids[timer.target] ?? timer.target : nil,
          intervalNanoseconds: words[0] * 1_000_000_000 + words[1], valueNanoseconds: words[2] * 1_000_000_000 + words[3]))
    }

    var threadCores: [ThreadCore] = []
    let mainStat = try ProcStatExtended.read(pid: pid)
    let processScheduling = SchedulingImage(
      nice: Int32(truncatingIfNeeded: mainStat.nice), policy: mainStat.policy, realtimePriority: mainStat.rtPriority)
    for tid in threads {
      threadCores.append(
        try threadCore(
          tid: tid, session: session, inject: inject, mainThread: mainThreadState,
          process: (processScheduling, controls.timerSlack)))
    }
    let credentials = Credentials(
      uids: [status.uid.real, status.uid.effective, status.uid.saved, status.uid.filesystem],
      gids: [status.gid.real, status.gid.effective, status.gid.saved, status.gid.filesystem],
      groups: status.groups, capInheritable: status.capInh, capPermitted: status.capPrm, capEffective: status.capEff,
      capBounding: status.capBnd, capAmbient: status.capAmb, capabilitiesText: capabilitiesText,
      noNewPrivileges: status.noNewPrivs, securebits: UInt32(truncatingIfNeeded: securebits))
    var limits: [ResourceLimitImage] = []
    for (resource, call, at) in limitCalls {
      _ = try result(call, "prlimit64(\(resource))")
      let words = ran.words(at: at, count: 2)
      limits.append(ResourceLimitImage(resource: resource, soft: words[0], hard: words[1]))
    }
    var core = TaskCore(
      threads: threadCores, signalActions: actions, sharedPendingSignals: try Tracee(tid: pid).queuedSignals(shared: true).map { Data($0) }, itimers: itimers,
      posixTimers: posixTimers.isEmpty ? nil : posixTimers,
      personality: UInt64(personality), resourceLimits: limits, umask: status.umask,
      cwd: cwd, root: root, comm: status.name,
      credentials: credentials, parentDeathSignal: pdeathsig, dumpable: Int32(dumpable), childSubreaper: subreaper)
    core.seccompFilters = seccompFilters
    core.controls = controls
    log("task \(pid): \(actions.count) signal actions, \(itimers.count) itimers, \(inject.remote.count) remote syscalls")
    return (core, brk, NamespaceFacts(uts: uts, sysvObjects: sysvObjects, loopbackUp: loopbackUp))
  }

  /// The seccomp filters every thread of the process has, oldest first (nil: none). Their
  /// threads' filters are suspended for ckcont's remote calls (PTRACE_O_SUSPEND_SECCOMP,
  /// until the detach), which the filters could otherwise deny or answer by killing. Refused:
  /// strict mode, and threads with filters that differ (each thread would need its own).
  private func captureSeccomp() throws -> [SeccompFilterImage]? {
    let modes = threads.map { tid in (tid, (tid == pid ? status : threadStatus[tid])?.seccomp ?? 0) }
    guard modes.contains(where: { $0.1 != 0 }) else { return nil }
    if let strict = modes.first(where: { $0.1 == 1 }) {
      throw CKError(
        .failed,
        "process \(pid)\(strict.0 == pid ? "" : " (thread \(strict.0))") runs under seccomp strict mode, which ckcont cannot checkpoint yet",
        hint: "checkpoint it before it enters strict mode")
    }
    var chains: [[SeccompFilterImage]] = []
    for tid in threads {
      let tracee = Tracee(tid: tid)
      try tracee.setOptions(Int32(Ptrace.defaultOptions) | Int32(CK_PTRACE_O_SUSPEND_SECCOMP))
      chains.append(try tracee.seccompFilters().map { SeccompFilterImage(flags: $0.flags, program: Data($0.program)) })
    }
    // Refused here rather than at restore, after the container is gone.
    let sizes = chains[0].map { $0.program.count / 8 }
    guard sizes.count <= SeccompFilterImage.maxRestorableFilters, sizes.allSatisfy({ $0 <= SeccompFilterImage.maxRestorableInstructions })
    else {
      throw CKError(
        .failed,
        "process \(pid) has \(sizes.count) seccomp filter(s) of up to \((sizes.max() ?? 0)) instructions, more than ckcont restores (\(SeccompFilterImage.maxRestorableFilters) of \(SeccompFilterImage.maxRestorableInstructions))")
    }
    guard chains.allSatisfy({ $0 == chains[0] }) else {
      throw CKError(
        .failed, "the threads of process \(pid) have different seccomp filters, which ckcont cannot checkpoint yet",
        hint: "install the filters before the threads are made, or with SECCOMP_FILTER_FLAG_TSYNC")
    }
    return chains[0]
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
    var core = ThreadCore(
      tid: innerTid, registers: GeneralRegisters(regs), xstate: Data(xstate),
      xstateFeatures: XSave.features(of: xstate), blockedSignals: mask,
      pendingSignals: try tracee.queuedSignals(shared: false).map { Data($0) },
      rseq: rseqConfig.rseq_abi_pointer == 0
        ? nil
        : RseqRegistration(
          address: rseqConfig.rseq_abi_pointer, size: rseqConfig.rseq_abi_size, signature: rseqConfig.signature),
      altStack: altStack, clearChildTid: clearTid)
    if tid != pid { core.name = threadStatus[tid]?.name }
    core.cpus = session.cpus(of: tid)?.cpus
    var head: UInt = 0, length: UInt = 0
    try negErrnoChecked("get_robust_list", "thread \(tid)") { ck_get_robust_list(tid, &head, &length) }
    core.robustList = UInt64(head)
    // I/O priority, and for other threads their own scheduling and timer slack: what a thread
    // set for itself alone (setpriority, sched_setscheduler, ioprio_set, prctl on its tid).
    let ioPriority = ck_ioprio_get(tid)
    guard ioPriority >= 0 else { throw SyscallError("ioprio_get", "thread \(tid)", .init(rawValue: -ioPriority)) }
    if ioPriority != 0 { core.ioPriority = UInt32(ioPriority) }
    if tid != pid {
      let stat = try ProcStatExtended.read(pid: tid)
      let own = SchedulingImage(nice: Int32(truncatingIfNeeded: stat.nice), policy: stat.policy, realtimePriority: stat.rtPriority)
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

/// The per-thread state only a thread itself can ask for: sigaltstack and the
/// clear_child_tid address (PR_GET_TID_ADDRESS).
struct ThreadQueries {
  let at: UInt64
  let altStackCall: Int
  let tidAddressCall: Int

  /// Adds the calls to `batch`, with 32 bytes of out-parameters at `at`.
  init(adding batch: inout SyscallBatch, at: UInt64) {
    self.at = at
    altStackCall = batch.add(SyscallNumber.sigaltstack, 0, at)
    tidAddressCall = batch.add(SyscallNumber.prctl, 40, at + 24)
  }

  func read(_ ran: RemoteSession.BatchResult, task: Int32) throws -> (altStack: AltStack, clearTid: UInt64) {
    for (call, what) in [(altStackCall, "sigaltstack"), (tidAddressCall, "PR_GET_TID_ADDRESS")] where ran.results[call] < 0 {
      throw CKError(.failed, "task \(task): \(what): \(String(cString: strerror(Int32(-ran.results[call]))))")
    }
    let words = ran.words(at: at, count: 4)
    return (AltStack(base: words[0], flags: Int32(truncatingIfNeeded: words[1]), size: words[2]), words[3])
  }
}

/// readlink(2) of a /proc link.
func readLink(_ path: String) throws -> String {
  var buffer = [CChar](repeating: 0, count: 4097)
  let n = try syscallChecked("readlink", path) {
    buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, 4096) }
  }
  return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

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
    guard let address = Self.freeArea(avoiding: vmas) else {
      throw CKError(.failed, "task \(tracee.tid) has no free \(Self.areaSize >> 10) KiB for ckcont's scratch area")
    }
    try session.journal.update { record in
      for index in record.processes.indices where record.processes[index].pid == tracee.tid {
        record.processes[index].scratch = address
      }
    }
    try tracee.setSignalMask(~0)
    remote = try RemoteSyscall(tracee: tracee, gadget: .singleStep(address: gadget))
    let flags = UInt64(MAP_PRIVATE | MAP_ANONYMOUS) | Self.mapFixedNoReplace
    var area = try? remote.call(
      SyscallNumber.mmap, address, Self.areaSize, UInt64(PROT_READ | PROT_WRITE | PROT_EXEC), flags, UInt64.max, 0)
    var codeReadOnly = false
    if area == -Int64(EACCES) {
      // Memory-deny-write-execute (PR_SET_MDWE) refuses a writable and executable mapping:
      // the code part is mapped read and execute only (ckcont writes it through
      // /proc/<pid>/mem), the data part read and write.
      area = try? remote.call(SyscallNumber.mmap, address, Self.areaSize, UInt64(PROT_READ | PROT_EXEC), flags, UInt64.max, 0)
      if let mapped = area, mapped > 0 {
        let data = UInt64(mapped) + Self.dataOffset
        let changed = try? remote.call(SyscallNumber.mprotect, data, Self.areaSize - Self.dataOffset, UInt64(PROT_READ | PROT_WRITE))
        if changed != 0 { _ = try? remote.call(SyscallNumber.munmap, UInt64(mapped), Self.areaSize) }
        area = changed == 0 ? mapped : changed
        codeReadOnly = true
      }
    }
    guard let area, area > 0, UInt64(area) == address else {
      if let area, area > 0 { _ = try? remote.call(SyscallNumber.munmap, UInt64(area), Self.areaSize) }
      try? remote.restoreRegisters()
      try? tracee.setSignalMask(originalMask)
      throw CKError(.failed, "task \(tracee.tid): remote mmap of a scratch area failed (\(area.map(String.init) ?? "stopped"))")
    }
    FaultInjection.point("dump:scratch")
    code = UInt64(area)
    scratch = code + Self.dataOffset
    ownsArea = true
    self.codeReadOnly = codeReadOnly
  }

  /// MAP_FIXED_NOREPLACE: the area goes exactly where the journal says, or nowhere.
  static let mapFixedNoReplace: UInt64 = 0x10_0000

  /// The lowest address from 1 GiB up with room for the area and a page either side, and
  /// 2 MiB clear of a stack that grows down (its guard gap).
  static func freeArea(avoiding vmas: [VMAImage]) -> UInt64? {
    let page: UInt64 = 4096, stackGap: UInt64 = 2 << 20
    var candidate: UInt64 = 1 << 30
    for vma in vmas.sorted(by: { $0.start < $1.start }) {
      let below = vma.growsDown ? stackGap : page
      if vma.start >= candidate + areaSize + below { break }
      candidate = max(candidate, vma.end + page)
    }
    return candidate + areaSize < 0x7fff_0000_0000 ? candidate : nil
  }

  /// Another thread of the same process, using `main`'s scratch area.
  init(thread: Tracee, sharing main: RemoteSession, ending: SyscallBatch.Ending) throws {
    tracee = thread
    self.ending = ending
    originalMask = try thread.signalMask()
    try thread.setSignalMask(~0)
    remote = try RemoteSyscall(tracee: thread, gadget: main.remote.gadget)
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
        pid: tracee.tid, ranges: [AddressRange(start: scratch, end: results + UInt64(batch.calls.count * 8))], into: buffer)
    }
    return BatchResult(results: (0..<batch.calls.count).map { Int64(bitPattern: data[words + $0]) }, data: data, base: scratch)
  }

  /// Unmaps the scratch area (if this session owns it) and puts registers and signal mask back.
  func finish() {
    guard !finished else { return }
    finished = true
    if ownsArea { _ = try? remote.call(SyscallNumber.munmap, code, Self.areaSize) }
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

  /// The address of a `syscall` instruction (0f 05) in the task's [vdso]: at the known offset
  /// from the vdso base (AT_SYSINFO_EHDR) when the bytes there say so, else searched in the
  /// [vdso] its maps show.
  static func vdsoSyscall(pid: Int32, base: UInt64?) throws -> UInt64? {
    if let offset = vdsoSyscallOffset, let base {
      var found: [UInt8] = [0, 0]
      let read: ()? = try? found.withUnsafeMutableBytes { buffer in
        try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: base + offset, end: base + offset + 2)], into: buffer)
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
