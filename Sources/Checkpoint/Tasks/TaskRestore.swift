import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// Restores what a process is beyond its memory and files, by remote syscalls inside it:
/// signal actions, rseq, altstack, clear_child_tid, name, prctl state, timers, umask,
/// personality, limits, cwd, queued signals and credentials; then, last, its registers.
struct TaskRestore {
  let entry: TaskEntryImage
  let core: TaskCore
  let injector: Injector
  /// What every fresh task inherited from ckcont through the root: the root's status, read
  /// once, as its signal actions and credentials are the same in every task until this
  /// restore changes them.
  let inherited: ProcStatus
  /// The maps of the container's own user namespace, whose ids the task names its own by.
  let userMaps: UserNamespaceMaps?
  /// A descriptor number the task has free (above its own), for a channel to ckcont.
  let freeDescriptor: Int64
  let log: Logger

  /// Undoes what the fresh task inherited from ckcont: rseq registration (its area is about
  /// to be unmapped, which would kill the task on the next preemption) and every descriptor.
  static func resetInherited(_ injector: Injector) throws {
    let rseq = try injector.tracee.rseqConfiguration()
    if rseq.rseq_abi_pointer != 0 {
      try injector.call(
        .rseq(rseq.rseq_abi_pointer, length: rseq.rseq_abi_size, signature: rseq.signature, unregister: true),
        "unregister the inherited rseq")
    }
    try injector.call(.closeRange(0, UInt32.max))
  }

  /// Everything of the process, its threads included: process-wide state from the main
  /// thread, then each further thread created with its tid and given its own state, queued
  /// signals, credentials (per thread in Linux), and the final registers of the threads.
  /// The main thread's final registers come with ``finish()``. Returns every thread.
  /// `first` queues calls of another part of the restore that must run before (the
  /// mappings' own protections, see ``MemoryRestore/queueProtections(into:)``).
  func restoreState(first: (inout Injector.Batch) throws -> Void) throws -> [Tracee] {
    guard let main = core.threads.first else { return [injector.tracee] }
    try step("process state") { try restoreProcessState(main, first: first) }
    // Each thread has a login uid of its own, which a thread cloned from this one inherits.
    try step("login uid") { try restoreLoginUID() }
    var threads: [(core: ThreadCore, injector: Injector)] = [(main, injector)]
    threads += try step("threads") { try createThreads() }
    try step("POSIX timers") { try restorePosixTimers() }
    try step("signals") { try queueSignals() }
    try step("OOM score") { try restoreOOMScoreAdjust() }
    try step("seccomp") { try installSeccompFilters(threads) }
    try step("credentials") { for (_, own) in threads { try restoreCredentials(in: own) } }
    try step("last controls") { try restoreLastControls() }
    for (thread, own) in threads.dropFirst() {
      try setFinalState(thread, of: own.tracee)
    }
    if threads.count > 1 { log.debug("task \(entry.pid): \(threads.count - 1) more threads restored") }
    return threads.map(\.injector.tracee)
  }

  /// Runs one step of ``restoreState(first:)``; one that takes long says so with -v.
  private func step<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
    let started = monotonicNow()
    defer {
      let spent = monotonicNow() - started
      if spent > 0.02 { log.debug("task \(entry.pid): \(name) took \(Int(spent * 1000)) ms") }
    }
    return try body()
  }

  /// The process-wide state and the main thread's own, in one batch of calls after those
  /// `first` queues.
  private func restoreProcessState(_ main: ThreadCore, first: (inout Injector.Batch) throws -> Void) throws {
    injector.resetData()
    var batch = Injector.Batch()
    try first(&batch)
    try restoreSignalActions(into: &batch)
    try queueControls(into: &batch)
    try queueIntervalTimers(into: &batch)
    try queueScheduling(into: &batch)
    batch.add(.umask(core.umask))
    batch.add(.personality(core.personality))
    let limitCalls = try queueLimits(into: &batch)
    try queueDirectories(into: &batch)
    try restoreThreadState(main, in: injector, batch: &batch)
    let results = try injector.run(batch)
    try finishLimits(limitCalls, results: results)
  }

  /// Every thread but the main one, created with its tid and given its own state.
  private func createThreads() throws -> [(core: ThreadCore, injector: Injector)] {
    var threads: [(core: ThreadCore, injector: Injector)] = []
    for (index, thread) in core.threads.enumerated().dropFirst() {
      let tracee = try injector.cloneThread(ids: PidNamespaces.Layout.setTid(thread: index, of: entry))
      let own = try Injector(thread: tracee, sharingRegionOf: injector)
      own.resetData()
      var batch = Injector.Batch()
      try restoreThreadState(thread, in: own, batch: &batch)
      try own.run(batch)
      threads.append((thread, own))
    }
    return threads
  }

  /// The process's name and prctl settings (parent-death signal, subreaper, THP, timer
  /// slack, KSM merging).
  private func queueControls(into batch: inout Injector.Batch) throws {
    let name = try injector.put(string: String(core.comm.prefix(15)))
    batch.add(.prctl(.setName(name)))
    // A parent-death signal refers to the parent: for a task whose parent was outside the
    // container, that parent is gone, and the restored task's parent (ckcont) exits at once.
    if entry.ppid != 0 {
      batch.add(.prctl(.setParentDeathSignal(core.parentDeathSignal)))
    } else if core.parentDeathSignal != 0 {
      log.debug(
        "task \(entry.pid): parent-death signal \(core.parentDeathSignal) dropped: its parent was outside the container"
      )
    }
    batch.add(.prctl(.setChildSubreaper(core.childSubreaper)))
    if let controls = core.controls {
      batch.add(.prctl(.setTHPDisable(controls.thpDisabled)))
      batch.add(.prctl(.setTimerSlack(controls.timerSlack)))
      if let merge = controls.memoryMerge { batch.add(.prctl(.setMemoryMerge(merge))) }
    }
  }

  /// The interval timers (setitimer) with what was left of them.
  private func queueIntervalTimers(into batch: inout Injector.Batch) throws {
    for timer in core.itimers {
      // A periodic timer read at the instant it expired shows value 0 before it re-arms;
      // set as is, 0 would disarm it: it fires now instead, as it was about to.
      let remaining = timer.valueMicroseconds == 0 && timer.intervalMicroseconds > 0 ? 1 : timer.valueMicroseconds
      let value = try injector.put(words: [
        UInt64(timer.intervalMicroseconds / 1_000_000), UInt64(timer.intervalMicroseconds % 1_000_000),
        UInt64(remaining / 1_000_000), UInt64(remaining % 1_000_000),
      ])
      batch.add(.setitimer(timer.which, value))
    }
  }

  /// The scheduling policy, then the nice value (which SCHED_OTHER, BATCH and IDLE use);
  /// threads cloned after this batch inherit both. The task is still root: it may raise its
  /// priority.
  private func queueScheduling(into batch: inout Injector.Batch) throws {
    guard let scheduling = core.scheduling else { return }
    let parameter = try injector.put(words: [UInt64(scheduling.realtimePriority)])
    batch.add(.schedSetscheduler(scheduling.policy, parameter: parameter))
    batch.add(.setpriority(scheduling.nice))
  }

  /// The working directory and root, unless the process shares its parent's fs information
  /// (CLONE_FS): then it has them from the parent.
  private func queueDirectories(into batch: inout Injector.Batch) throws {
    guard entry.sharesFSWithParent != true else { return }
    let (cwdPath, rootPath) = (core.cwd, core.root)
    let cwd = try injector.put(string: cwdPath)
    batch.add(.chdir(cwd), "chdir \(cwdPath)")
    // A process that chroot()ed: its working directory (a path from the container's root)
    // first, then its root, which the working directory may lie outside of.
    if core.root != "/" {
      let root = try injector.put(string: core.root)
      batch.add(.chroot(root), "chroot \(rootPath)")
    }
  }

  /// What comes after the credentials: dumpable (a change of ids makes the process
  /// undumpable, suid_dumpable), and memory-deny-write-execute last (it cannot be undone,
  /// and the restore maps what it denies).
  private func restoreLastControls() throws {
    try injector.call(.prctl(.setDumpable(core.dumpable)))
    if let flags = core.controls?.memoryDenyWriteExecute, flags != 0 {
      try injector.call(.prctl(.setMDWE(flags)))
    }
  }

  /// oom_score_adj, which ckcont writes itself. Lower than the task's minimum (ckcont's, which
  /// it inherited) takes CAP_SYS_RESOURCE.
  private func restoreOOMScoreAdjust() throws {
    guard let adjust = core.oomScoreAdjust else { return }
    let path = "/proc/\(injector.pid)/oom_score_adj"
    guard try PseudoFile.readValue(path) != String(adjust) else { return }
    do { try PseudoFile.write(path, String(adjust)) } catch {
      throw CKError(
        .permission, "task \(entry.pid): its oom_score_adj \(adjust) could not be set (\(error))",
        hint: "lowering it takes CAP_SYS_RESOURCE: restore with it, or from a process whose oom_score_adj is \(adjust)")
    }
  }

  /// The audit login uid, before the credentials change. Only the task itself may write its
  /// loginuid, and the file reads the value through the user namespace of whoever opened it:
  /// ckcont opens it (host ids, as the dump read them) and hands it over, the task writes.
  /// A task starts with ckcont's login uid; another one takes CAP_AUDIT_CONTROL (in the
  /// host's user namespace) unless ckcont's is unset.
  private func restoreLoginUID() throws {
    let path = "/proc/\(injector.pid)/loginuid"
    guard let login = core.loginUID, let now = try PseudoFile.readIfExists(path).flatMap(UInt32.init), now != login
    else { return }
    let file = try OwnedDescriptor(opening: path, flags: O_WRONLY | O_CLOEXEC)
    let channel = try injector.openChannel(at: freeDescriptor)
    let received = try injector.receive(file.raw, what: "its loginuid file")
    let text = Array(String(login).utf8)
    let at = try injector.put(text)
    var batch = Injector.Batch()
    batch.add(.write(received, at, count: text.count), "write loginuid \(login)")
    batch.add(.close(received))
    batch.add(.close(freeDescriptor))
    do { try injector.run(batch) } catch let error as CKError {
      throw CKError(
        .permission, "task \(entry.pid): its audit login uid \(login) could not be set (\(error.message))",
        hint: "ckcont's own is \(now); restore from a process whose loginuid is unset (a service) or \(login)")
    }
    _ = consume channel  // ckcont's end of the channel: closed once the task has written
  }

  /// What each thread has of its own: rseq, alternate signal stack, clear_child_tid.
  private func restoreThreadState(_ thread: ThreadCore, in own: Injector, batch: inout Injector.Batch) throws {
    if let rseq = thread.rseq {
      batch.add(.rseq(rseq.address, length: rseq.size, signature: rseq.signature))
    }
    if let stack = thread.altStack, stack.flags & Int32(SS_DISABLE) == 0 {
      // SS_ONSTACK is a state, not a flag one may set: only SS_AUTODISARM carries over.
      let flags = UInt64(UInt32(bitPattern: stack.flags) & CK_SS_AUTODISARM)
      let address = try own.put(words: [stack.base, flags, stack.size])
      batch.add(.sigaltstack(address))
    }
    batch.add(.setTidAddress(thread.clearChildTid))
    if let head = thread.robustList, head != 0, core.abi == .i386 {
      // The compat slot, set only through the compat call; struct robust_list_head: 12 bytes.
      batch.add(.i386SetRobustList(head))
    } else if let head = thread.robustList, head != 0 {
      // struct robust_list_head: 24 bytes on x86_64.
      batch.add(.setRobustList(head, length: 24))
    }
    if let name = thread.name {
      // PR_SET_NAME names the calling thread: this batch runs in the thread itself.
      let at = try own.put(string: String(name.prefix(15)))
      batch.add(.prctl(.setName(at)), "PR_SET_NAME thread \(thread.tid)")
    }
  }

  /// Every signal gets its dumped action, or the default: the task inherited ckcont's.
  private func restoreSignalActions(into batch: inout Injector.Batch) throws {
    let actions = Dictionary(uniqueKeysWithValues: core.signalActions.map { ($0.signal, $0) })
    // Only signals the dump names or the fresh task handles or ignores need a call.
    let inherited = inherited.sigCgt | inherited.sigIgn
    for signal in Int32(1)...64 where signal != SIGKILL && signal != SIGSTOP {
      guard actions[signal] != nil || inherited & (1 << UInt64(signal - 1)) != 0 else { continue }
      let action = actions[signal]
      // Signals 32 and 33 belong to the C library and may refuse; only a dumped action must stick.
      if core.abi == .i386 {
        // Through the compat call, which marks the handler for ia32 signal frames (SA_IA32_ABI,
        // which no query shows): struct compat_sigaction { u32 handler, flags, restorer;
        // u32 mask[2] }.
        let words = [action?.handler ?? 0, action?.flags ?? 0, action?.restorer ?? 0, action?.mask ?? 0]
        let compat =
          words.prefix(3).map { UInt32(truncatingIfNeeded: $0) }
          + [UInt32(truncatingIfNeeded: words[3]), UInt32(truncatingIfNeeded: words[3] >> 32)]
        let address = try compat.withUnsafeBytes { try injector.put($0) }
        batch.add(.i386RtSigaction(signal, action: address), mayFail: action == nil)
        continue
      }
      let address = try injector.put(words: [
        action?.handler ?? 0, action?.flags ?? 0, action?.restorer ?? 0, action?.mask ?? 0,
      ])
      batch.add(.rtSigaction(signal, action: address), mayFail: action == nil)
    }
  }

  /// prlimit64 from inside, for the limits that differ from what the task inherited from
  /// ckcont; returns the calls, for ``finishLimits``.
  private func queueLimits(into batch: inout Injector.Batch) throws -> [(call: Int, limit: ResourceLimitImage)] {
    var calls: [(call: Int, limit: ResourceLimitImage)] = []
    for limit in core.resourceLimits {
      var own = rlimit()
      if getrlimit(__rlimit_resource_t(UInt32(limit.resource)), &own) == 0, own.rlim_cur == limit.soft,
        own.rlim_max == limit.hard
      {
        continue
      }
      let value = try injector.put(words: [limit.soft, limit.hard])
      let call = batch.add(.prlimit64(limit.resource, new: value), mayFail: true)
      calls.append((call, limit))
    }
    return calls
  }

  /// ckcont's root lacks CAP_SYS_RESOURCE on some hosts, so a hard limit above the inherited
  /// one may be refused: then the soft limit is still set, under the hard one there is.
  private func finishLimits(_ calls: [(call: Int, limit: ResourceLimitImage)], results: [Int64]) throws {
    for (call, limit) in calls where results[call] < 0 {
      guard results[call] == -Int64(EPERM) else {
        throw CKError(
          .failed,
          "task \(entry.pid): prlimit64(\(limit.resource)) failed: \(String(cString: strerror(Int32(-results[call]))))")
      }
      injector.resetData()
      let current = try injector.reserve(16)
      try injector.call(.prlimit64(limit.resource, new: 0, old: current), "prlimit64 get")
      let hard = try injector.read(16, at: current).withUnsafeBytes { $0.load(fromByteOffset: 8, as: UInt64.self) }
      let lowered = try injector.put(words: [min(limit.soft, hard), hard])
      try injector.call(.prlimit64(limit.resource, new: lowered))
      log.debug("task \(entry.pid): rlimit \(limit.resource) hard \(limit.hard) could not be raised beyond \(hard)")
    }
  }

  /// timer_create with each timer's own id (PR_TIMER_CREATE_RESTORE_IDS, Linux 6.15: the id
  /// comes from *timerid), then timer_settime with what was left of it; after the threads
  /// exist, as a timer may signal one of them.
  private func restorePosixTimers() throws {
    guard let timers = core.posixTimers, !timers.isEmpty else { return }
    injector.resetData()
    var batch = Injector.Batch()
    batch.add(
      .prctl(.timerCreateRestoreIDs(true)), "PR_TIMER_CREATE_RESTORE_IDS (timers keep their ids; Linux 6.15 or newer)")
    var ids: [(timer: PosixTimerImage, at: UInt64)] = []
    for timer in timers {
      // struct sigevent: sigev_value, sigev_signo, sigev_notify, then the union (_tid first).
      var event = [UInt8](repeating: 0, count: 64)
      withUnsafeBytes(of: timer.sigevValue.littleEndian) { event.replaceSubrange(0..<8, with: $0) }
      withUnsafeBytes(of: timer.signal.littleEndian) { event.replaceSubrange(8..<12, with: $0) }
      withUnsafeBytes(of: timer.notify.littleEndian) { event.replaceSubrange(12..<16, with: $0) }
      withUnsafeBytes(of: (timer.targetThread ?? 0).littleEndian) { event.replaceSubrange(16..<20, with: $0) }
      let eventAt = try injector.put(event)
      let idAt = try injector.put(words: [UInt64(UInt32(bitPattern: timer.id))])
      ids.append((timer, idAt))
      batch.add(.timerCreate(timer.clockID, event: eventAt, id: idAt), "timer_create(\(timer.id))")
      // A periodic timer read at its expiry shows 0 left: it fires now instead, as it was about to.
      let value = timer.valueNanoseconds == 0 && timer.intervalNanoseconds > 0 ? 1 : timer.valueNanoseconds
      guard value > 0 else { continue }
      let spec = try injector.put(words: [
        UInt64(timer.intervalNanoseconds / 1_000_000_000), UInt64(timer.intervalNanoseconds % 1_000_000_000),
        UInt64(value / 1_000_000_000), UInt64(value % 1_000_000_000),
      ])
      batch.add(.timerSettime(timer.id, spec))
    }
    batch.add(.prctl(.timerCreateRestoreIDs(false)))
    try injector.run(batch)
    for (timer, at) in ids {
      let created = try injector.read(4, at: at).withUnsafeBytes { $0.load(as: Int32.self) }
      guard created == timer.id else {
        throw CKError(.failed, "task \(entry.pid): POSIX timer \(timer.id) came back as \(created)")
      }
    }
  }

  /// Queued signals go back with their siginfo, in order, sent by the task to itself (which
  /// may carry any si_code). All signals are blocked until the final mask is set.
  private func queueSignals() throws {
    // Ids as the task sees them: the kernel lets a task queue a kill()ed or tkill()ed signal
    // (si_code SI_USER, SI_TKILL) only to itself, by the pid its own namespace gives it.
    let ownPid = entry.nestedPids?.last ?? entry.pid
    for info in core.sharedPendingSignals {
      injector.resetData()
      let signal = info.withUnsafeBytes { $0.load(as: Int32.self) }
      let address = try info.withUnsafeBytes { try injector.put($0) }
      try injector.call(.rtSigqueueinfo(ownPid, signal, info: address))
    }
    for (index, thread) in core.threads.enumerated() {
      for info in thread.pendingSignals {
        injector.resetData()
        let signal = info.withUnsafeBytes { $0.load(as: Int32.self) }
        let address = try info.withUnsafeBytes { try injector.put($0) }
        try injector.call(.rtTgsigqueueinfo(ownPid, entry.ownThreads[index], signal, info: address))
      }
    }
  }

  /// Groups, ids, capabilities, securebits, no_new_privs — last, since they may take away
  /// the privileges the steps before needed. Root with every capability needs nothing.
  private func restoreCredentials(in injector: Injector) throws {
    let creds = core.credentials
    let status = inherited
    let inheritedUids = [status.uid.real, status.uid.effective, status.uid.saved, status.uid.filesystem]
    let inheritedGids = [status.gid.real, status.gid.effective, status.gid.saved, status.gid.filesystem]
    let uids = try ownIDs(creds.uids, userMaps?.uids, inherited: inheritedUids, "uids")
    let gids = try ownIDs(creds.gids, userMaps?.gids, inherited: inheritedGids, "gids")
    if let groups = try ownIDs(creds.groups, userMaps?.gids, inherited: status.groups, "groups") {
      try setGroups(groups, in: injector)
    }
    try setIDs(uids: uids, gids: gids, in: injector)
    try restoreCapabilities(in: injector)
    if creds.securebits != 0 {
      try injector.call(.prctl(.setSecurebits(creds.securebits)))
    }
    if creds.noNewPrivileges {
      try injector.call(.prctl(.setNoNewPrivileges))
    }
  }

  /// The ids as the task names them: in a user namespace of its own, through its map. nil
  /// when they are what it inherited (which need not be mapped: a process that never set its
  /// ids keeps the host's).
  private func ownIDs(_ ids: [UInt32], _ map: [UserNamespaceMaps.Range]?, inherited: [UInt32], _ what: String) throws
    -> [UInt32]?
  {
    if ids == inherited { return nil }
    guard let map else { return ids }
    let mapped = ids.compactMap { UserNamespaceMaps.inside($0, in: map) }
    guard mapped.count == ids.count else {
      throw CKError(
        .badInput,
        "task \(entry.pid): its \(what) \(ids.map(String.init).joined(separator: ", ")) are not all in its user namespace's map"
      )
    }
    return mapped
  }

  /// The supplementary groups, unless the task's user namespace denies setgroups.
  private func setGroups(_ groups: [UInt32], in injector: Injector) throws {
    if userMaps?.setgroupsAllowed == false {
      log.debug(
        "task \(entry.pid): supplementary groups \(core.credentials.groups) not set: its user namespace denies setgroups"
      )
      return
    }
    injector.resetData()
    let list = try groups.withUnsafeBytes { try injector.put($0) }
    try injector.call(.setgroups(groups.count, list))
  }

  /// Real, effective, saved and filesystem gids, then uids (keeping the capabilities
  /// through the change of uid).
  private func setIDs(uids: [UInt32]?, gids: [UInt32]?, in injector: Injector) throws {
    if let gids {
      try injector.call(.setresgid(gids[0], gids[1], gids[2]))
      try injector.call(.setfsgid(gids[3]))
    }
    if let uids {
      // Keeps the capabilities through the change of uid; they are set right after. The flag
      // itself goes back to what the process had (SECBIT_KEEP_CAPS), or it would keep its
      // capabilities through a setuid of its own later.
      try injector.call(.prctl(.setKeepCapabilities(true)))
      try injector.call(.setresuid(uids[0], uids[1], uids[2]))
      try injector.call(.setfsuid(uids[3]))
      let keeps = core.credentials.securebits & UInt32(CK_SECBIT_KEEP_CAPS) != 0
      try injector.call(.prctl(.setKeepCapabilities(keeps)))
    }
  }

  /// The bounding set (capabilities dropped), the effective, permitted and inheritable sets
  /// (capset), and the ambient ones raised.
  private func restoreCapabilities(in injector: Injector) throws {
    let creds = core.credentials
    let status = inherited
    if creds.capBounding != status.capBnd {
      for capability in 0..<64
      where status.capBnd & (1 << UInt64(capability)) != 0 && creds.capBounding & (1 << UInt64(capability)) == 0 {
        try injector.call(.prctl(.dropBoundingCapability(capability)))
      }
    }
    if creds.capEffective != status.capEff || creds.capPermitted != status.capPrm
      || creds.capInheritable != status.capInh
    {
      injector.resetData()
      // _LINUX_CAPABILITY_VERSION_3: header {version, pid}, then two {effective, permitted, inheritable}.
      let header = try injector.put(words: [UInt64(CK_LINUX_CAPABILITY_VERSION_3)])
      func low(_ value: UInt64) -> UInt64 { value & 0xffff_ffff }
      func high(_ value: UInt64) -> UInt64 { value >> 32 }
      let data = try injector.put(words: [
        low(creds.capEffective) | low(creds.capPermitted) << 32,
        low(creds.capInheritable) | high(creds.capEffective) << 32,
        high(creds.capPermitted) | high(creds.capInheritable) << 32,
      ])
      try injector.call(.capset(header: header, data: data))
    }
    for capability in 0..<64 where creds.capAmbient & (1 << UInt64(capability)) != 0 {
      try injector.call(.prctl(.raiseAmbientCapability(capability)))
    }
  }

  /// The process's seccomp filters, oldest first, for every thread at once (TSYNC): after
  /// everything else the task does for the restore but its credentials, while it still has
  /// CAP_SYS_ADMIN (the filters need it, or no_new_privs, which comes with the credentials).
  /// The calls that follow are not filtered: the restore's tracees have their seccomp
  /// suspended (PTRACE_O_SUSPEND_SECCOMP) until they are released.
  /// Then each thread's own, which it installs itself (without TSYNC).
  private func installSeccompFilters(_ threads: [(core: ThreadCore, injector: Injector)]) throws {
    func install(_ filters: [SeccompFilterImage], in own: Injector, synchronized: Bool, what: String) throws {
      for (index, filter) in filters.enumerated() {
        own.resetData()
        let program = try own.put(Array(filter.program))
        // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
        let fprog = try own.put(words: [UInt64(filter.program.count / 8), program])
        let flags = filter.flags | (synchronized ? UInt64(CK_SECCOMP_FILTER_FLAG_TSYNC) : 0)
        try own.call(
          .seccompSetFilter(fprog, flags: flags), "\(what) seccomp filter \(index + 1) of \(filters.count)")
      }
    }
    try install(core.seccompFilters ?? [], in: injector, synchronized: threads.count > 1, what: "the process's")
    for (thread, own) in threads where thread.seccompFilters != nil {
      try install(thread.seccompFilters ?? [], in: own, synchronized: false, what: "thread \(thread.tid)'s own")
    }
  }

  /// The last remote call unmaps the injection region, single-stepped: at the trap right
  /// after the call (before the next instruction, which is gone, is fetched) the main thread
  /// gets its own registers, xstate and signal mask, and resumes at its own rip. This sets
  /// the call going and returns at once: the caller may start other tasks' before it waits
  /// with ``completeFinish()``.
  func launchFinish() throws {
    guard !core.threads.isEmpty else { return }
    // Raw: single-stepped by hand, to stop at the trap right after the call.
    var regs = injector.remote.saved
    regs.rax = UInt64(SyscallNumber.munmap)
    regs.orig_rax = UInt64.max
    regs.rdi = injector.region
    regs.rsi = Injector.regionSize
    regs.rip = injector.region
    try injector.tracee.setRegisters(regs)
    try injector.tracee.singleStep()
  }

  /// Waits for the unmap, then gives the main thread its final state; if it must re-enter a
  /// system call, that is launched too, and ``finishSteps(_:)`` waits for it.
  func completeFinish() throws -> FinalState? {
    guard let main = core.threads.first else { return nil }
    let tracee = injector.tracee
    let status = try tracee.wait()
    guard case .stopped(let signal, _) = status, signal == SIGTRAP, try tracee.registers().rax == 0 else {
      throw CKError(.failed, "task \(entry.pid): unmapping the injection region stopped at \(status)")
    }
    return try startFinalState(main, of: tracee)
  }

  /// A thread given its registers and xstate, to get its signal mask (``finishSteps(_:)``)
  /// once any reissued system call has been entered.
  struct FinalState {
    let thread: ThreadCore
    let tracee: Tracee
    let reissued: UInt64?
  }

  func finishSteps(_ state: FinalState?) throws {
    guard let state else { return }
    if let number = state.reissued {
      let status = try state.tracee.wait()
      guard case .stopped(let signal, _) = status, signal == SIGTRAP | 0x80,
        try state.tracee.registers().orig_rax == number
      else {
        throw CKError(
          .failed, "thread \(state.thread.tid) of \(entry.pid): reissuing system call \(number) stopped at \(status)")
      }
    }
    try state.tracee.setSignalMask(state.thread.blockedSignals)
  }

  /// Registers, xstate and signal mask of a stopped thread, which then resumes where it was.
  private func setFinalState(_ thread: ThreadCore, of tracee: Tracee) throws {
    try finishSteps(startFinalState(thread, of: tracee))
  }

  /// Registers and xstate of a stopped thread, and, for a system call it must re-enter, the
  /// run to that call's entry (launched, not waited for).
  private func startFinalState(_ thread: ThreadCore, of tracee: Tracee) throws -> FinalState {
    // An i386 thread's TLS entries first: loading its %gs selector reads one.
    for entry in thread.tlsEntries ?? [] {
      try tracee.setThreadArea(
        ck_user_desc(entry_number: entry.entry, base_addr: entry.base, limit: entry.limit, flags: entry.flags))
    }
    if let sleep = SyscallRestart.sleepRebuildingRestartBlock(thread.registers, abi: core.abi) {
      var final = thread.registers
      if try !rebuildRestartBlock(sleep, thread: thread, of: tracee) {
        // The time left ran out before the interruption: the sleep returned 0.
        final.rax = 0
        final.origRax = UInt64.max
      }
      try tracee.setRegisters(final.raw)
      try tracee.setExtendedState(Array(thread.xstate))
      return FinalState(thread: thread, tracee: tracee, reissued: nil)
    }
    let resume = SyscallRestart.resumeRegisters(thread.registers)
    try tracee.setRegisters(resume.raw)
    try tracee.setExtendedState(Array(thread.xstate))
    guard SyscallRestart.reissues(thread.registers) else {
      return FinalState(thread: thread, tracee: tracee, reissued: nil)
    }
    // Enter the reissued call before any signal can arrive: a signal handled first would
    // run its handler and then block in the call (a pause() that never returns), where the
    // kernel's own restart would have returned EINTR. Signals stay blocked up to the
    // syscall-entry stop; the thread's own mask applies from there.
    try tracee.resumeToSyscall()
    return FinalState(thread: thread, tracee: tracee, reissued: resume.rax)
  }

  /// Runs `sleep` (``SyscallRestart/sleepRebuildingRestartBlock(_:abi:)``) in the thread and
  /// wakes it once entered with a signal the thread alone has unblocked: the kernel leaves
  /// the sleep's expiry and `rem` in the thread's restart block, as the dump found it, and
  /// stops to deliver the signal, which the tracer takes away (the thread is resumed with no
  /// signal). PTRACE_INTERRUPT would be simpler but needs PTRACE_SEIZE, and restored tasks
  /// are traced from their birth. False when the time left ran out first.
  private func rebuildRestartBlock(_ sleep: GeneralRegisters, thread: ThreadCore, of tracee: Tracee) throws -> Bool {
    let what = "thread \(thread.tid) of \(entry.pid): rebuilding the restart block of system call \(sleep.rax)"
    let signal = try Self.wakingSignal(tid: tracee.tid)
    try tracee.setSignalMask(~(UInt64(1) << (signal - 1)))
    try tracee.setRegisters(sleep.raw)
    try tracee.resumeToSyscall()
    let entered = try tracee.wait()
    guard case .stopped(let trap, _) = entered, trap == SIGTRAP | 0x80,
      try tracee.registers().orig_rax == sleep.rax
    else { throw CKError(.failed, "\(what): the call's entry stopped at \(entered)") }
    try tracee.resume()
    // The main thread's host tid is the process's host id.
    try syscallChecked("tgkill", what) { ck_tgkill(injector.tracee.tid, tracee.tid, signal) }
    let woken = try tracee.wait()
    guard woken == .stopped(signal: signal, event: 0) else {
      throw CKError(.failed, "\(what): the wake-up stopped at \(woken)")
    }
    let result = Int64(bitPattern: try tracee.registers().rax)
    guard result == 0 || result == SyscallRestart.eRestartRestartBlock else {
      throw CKError(.failed, "\(what): the call returned \(result)")
    }
    return result != 0
  }

  /// The signal that wakes a rebuilt sleep: the highest real-time signal pending nowhere in
  /// the thread or its process, so that taking it away takes nothing the program was sent.
  static func wakingSignal(tid: Int32) throws -> Int32 {
    var pending: UInt64 = 0
    for line in try PseudoFile.read("/proc/\(tid)/status").split(separator: "\n")
    where line.hasPrefix("SigPnd:") || line.hasPrefix("ShdPnd:") {
      pending |= line.split(separator: "\t").last.flatMap { UInt64($0, radix: 16) } ?? 0
    }
    let realTime: ClosedRange<Int32> = 34...64
    guard let signal = realTime.reversed().first(where: { pending & (UInt64(1) << ($0 - 1)) == 0 }) else {
      throw CKError(.failed, "thread \(tid): every real-time signal is pending; none is left to wake its sleep")
    }
    return signal
  }

}

extension TaskRestore {
  /// What a thread set for itself alone: its own scheduling, I/O priority and timer slack.
  /// Set from ckcont on its host tid (each call takes another task's), once the thread exists
  /// and its process has its own settings, which new threads inherit.
  static func restoreOwnSettings(of thread: ThreadCore, tid: Int32) throws {
    if let scheduling = thread.scheduling {
      var parameter = sched_param(sched_priority: Int32(scheduling.realtimePriority))
      try syscallChecked("sched_setscheduler", "thread \(tid)") {
        sched_setscheduler(tid, Int32(scheduling.policy), &parameter)
      }
      try syscallChecked("setpriority", "thread \(tid)") {
        setpriority(__priority_which_t(PRIO_PROCESS.rawValue), id_t(tid), scheduling.nice)
      }
    }
    if let ioPriority = thread.ioPriority {
      let result = ck_ioprio_set(tid, Int32(ioPriority))
      guard result == 0 else { throw SyscallError("ioprio_set", "thread \(tid)", .init(rawValue: -result)) }
    }
    if let slack = thread.timerSlack { try PseudoFile.write("/proc/\(tid)/timerslack_ns", "\(slack)") }
  }
}
