import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// Where a restore reads its bundle.
public enum RestoreInput: Sendable {
  case file(String)
  case standardInput
}

/// What a restore did.
public struct RestoreReport: Sendable, Codable {
  /// The restored root process, as this (the host's) pid namespace sees it.
  public var rootPid: Int32
  public var processes: Int
  public var cgroup: String
  public var seconds: Double
  /// CLOCK_MONOTONIC seconds at the thaw that let the restored container run.
  public var resumedAt: Double
}

/// `ckcont restore`: verify the whole bundle, then recreate the container in fresh
/// namespaces with the same pids, in its cgroup, and let it continue. On any failure
/// everything created is removed (tasks killed, cgroup removed) and the bundle is untouched.
public struct Restore {
  public var input: RestoreInput
  /// The container's top cgroup, as a path inside the hierarchies (`/web`), used in every
  /// hierarchy it had cgroups in; nil for the dumped paths.
  public var cgroupRoot: String?
  /// `--inherit-fd`: `pipe:[inode]` or a file path -> a descriptor of this process that the
  /// restored tasks reopen instead (CRIU's --inherit-fd).
  public var inheritedDescriptors: [String: Int32] = [:]
  /// `--shell-job`: the bundle may be a shell job, which joins this process's session and
  /// terminal (CRIU's --shell-job).
  public var shellJob = false
  /// `--root`: the directory to use as the root filesystem of a container that had one of its
  /// own (as CRIU's --root), instead of the one it was dumped with.
  public var rootFilesystem: String?
  public var log: (String) -> Void = { _ in }

  public init(input: RestoreInput, cgroupRoot: String?) {
    self.input = input
    self.cgroupRoot = cgroupRoot
  }

  /// Parses `fd[N]:RESOURCE` (CRIU's --inherit-fd syntax): RESOURCE is `pipe:[inode]` or a
  /// file's path as the dump saw it; N must be open here.
  public static func inheritedDescriptor(_ spec: String) throws -> (resource: String, fd: Int32) {
    guard spec.hasPrefix("fd["), let close = spec.firstIndex(of: "]"),
      let fd = Int32(spec[spec.index(spec.startIndex, offsetBy: 3)..<close]), fd >= 0,
      spec[spec.index(after: close)...].hasPrefix(":")
    else {
      throw CKError(.badInput, "--inherit-fd \(spec): expected fd[N]:pipe:[INODE] or fd[N]:/path")
    }
    let resource = String(spec[spec.index(close, offsetBy: 2)...])
    guard !resource.isEmpty else { throw CKError(.badInput, "--inherit-fd \(spec): no resource after fd[\(fd)]:") }
    guard fcntl(fd, F_GETFD) >= 0 else {
      throw CKError(.badInput, "--inherit-fd \(spec): ckcont has no descriptor \(fd)", hint: "open it for ckcont, e.g. 3>&1 in a shell")
    }
    return (resource, fd)
  }

  /// The path inside its hierarchy of a cgroup given as a cgroupfs path
  /// (`/sys/fs/cgroup/freezer/web`) or a name (`web`): what ``cgroupRoot`` takes.
  public static func cgroupRoot(fromCgroup spec: String) throws -> String {
    guard !spec.split(separator: "/").contains(".."), !spec.isEmpty else {
      throw CKError(.badInput, "\(spec) is not a usable cgroup path")
    }
    guard spec.hasPrefix("/") else { return "/" + spec.split(separator: "/").joined(separator: "/") }
    guard let hierarchy = try CgroupMounts.current().hierarchy(containing: spec), hierarchy.canFreeze else {
      throw CKError(.badInput, "\(spec) is not a path under a v2 or v1 freezer cgroup mount", hint: "or give --cgroup-root")
    }
    let inside = spec.dropFirst(hierarchy.mountPoint.count).split(separator: "/").joined(separator: "/")
    return "/" + inside
  }

  public func run() throws -> RestoreReport {
    let started = monotonicNow()
    try Interruption.check()
    raiseDescriptorLimit()
    let bundle = try load()
    try checkCPU(bundle.manifest)
    let ownPidNamespace = bundle.tree.namespaces.pid
    let (plan, order) = try Self.plan(bundle) { ownPidNamespace || (kill($0, 0) != 0 && errno == ESRCH) }
    let byPid = Dictionary(uniqueKeysWithValues: bundle.tasks.map { ($0.entry.pid, $0) })
    let zombies = Dictionary(uniqueKeysWithValues: bundle.zombies.map { ($0.pid, $0) })
    let layout = PidNamespaces.Layout(bundle.tree.tasks)
    try Interruption.check()
    if let cgroupRoot {
      guard cgroupRoot.hasPrefix("/"), !cgroupRoot.split(separator: "/").contains(".."), !cgroupRoot.contains("\0") else {
        throw CKError(.badInput, "--cgroup-root \(cgroupRoot) must be an absolute path inside the cgroup hierarchies, like /web")
      }
    }
    if let terminal = bundle.tree.shellJobTerminal {
      guard shellJob else {
        throw CKError(.badInput, "the bundle is a shell job (its terminal was \(terminal)): restore it with --shell-job, from a terminal")
      }
      guard ownTerminal() != nil else {
        throw CKError(.badInput, "--shell-job: ckcont has no terminal to give the job", hint: "run the restore from a terminal")
      }
    }
    if let rootFilesystem {
      guard bundle.mounts?.hasOwnRoot == true, bundle.tree.namespaces.mount else {
        throw CKError(.badInput, "--root \(rootFilesystem): the container had no root filesystem of its own")
      }
      var st = stat()
      guard stat(rootFilesystem, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
        throw CKError(.badInput, "--root \(rootFilesystem) is not a directory")
      }
    }
    let target = try TargetCgroups(image: bundle.cgroups, root: cgroupRoot)
    let journal = try RestoreJournal()
    defer { journal.remove() }
    target.journal = journal
    var created: [Int32] = []
    var phases = PhaseTimes()
    // Every remote call is a round trip between ckcont and a task; on one CPU it is a plain
    // context switch, across CPUs two wake-up interrupts, several times slower in a VM. So
    // ckcont and, by inheritance, every task it creates stay on ckcont's CPU until release
    // gives the tasks back the CPUs they would have had.
    let ownCPUs = try CPUSet.of(0)
    let tracerCPU = CPUSet.current()
    try? CPUSet(only: tracerCPU).apply(to: 0)
    defer { try? ownCPUs.apply(to: 0) }
    do {
      try phases.time("cgroups") { try target.prepare(log: log) }
      FaultInjection.point("restore:cgroups")
      // Every process is forked, with its pid, from its parent (or a helper, see TreePlan)
      // while all of them are still blank copies.
      var injectors: [Int32: Injector] = [:]
      var rootPid: Int32 = 0
      var channelPeer: Int32 = -1
      defer { if channelPeer >= 0 { close(channelPeer) } }
      var inherited: ProcStatus?
      // The time namespaces' offsets, continuing the dumped clocks from now on.
      let timeOffsets = (bundle.tree.timeNamespaces ?? []).map { TimeNamespaces.offsets($0, dumpedAt: bundle.tree.clocksAtDump) }
      var rootTimeNamespace: Int?
      var placement = NestedNamespaces.Placement()
      /// A process whose children got a time namespace of their own makes one before it forks.
      func makeChildTimeNamespace(_ entry: TaskEntryImage, _ injector: Injector, hostPid: Int32) throws {
        guard let child = entry.childTimeNamespace, child != entry.timeNamespace else { return }
        try injector.call("unshare(CLONE_NEWTIME) for process \(entry.pid)", SyscallNumber.unshare, UInt64(CK_CLONE_NEWTIME))
        try TimeNamespaces.write(timeOffsets[child], to: "/proc/\(hostPid)/timens_offsets")
      }
      for step in plan.steps {
        switch step {
        case .fork(let pid, 0):
          guard let task = byPid[pid] else { throw CKError(.failed, "restore helper \(pid) has no parent") }
          let rootStarted = monotonicNow()
          defer { phases.record("the root", since: rootStarted) }
          if let time = task.entry.timeNamespace, time != rootTimeNamespace {
            // Cloned from this thread, the root enters the namespace this thread's children get.
            guard rootTimeNamespace == nil else {
              throw CKError(.badInput, "the bundle's processes without a parent are in different time namespaces")
            }
            try TimeNamespaces.enterForChildren(timeOffsets[time])
            rootTimeNamespace = time
          }
          let hostPid = try createTask(
            task, namespaces: bundle.tree.namespaces, suspendSeccomp: bundle.tasks.contains { $0.core.seccompFilters != nil })
          created.append(hostPid)
          try target.place(hostPid, entry: task.entry)
          if rootPid == 0 {
            rootPid = hostPid
            inherited = try ProcStatus.read(pid: hostPid)
            // The network namespace's settings before anything uses them (socket buffers).
            if bundle.tree.namespaces.net, let settings = bundle.tree.namespaces.netSysctls {
              try NamespaceSysctls.restore(settings, kind: "net", of: hostPid)
            }
            // SysV objects first: processes attach segments by id as their memory is rebuilt.
            if let ipc = bundle.ipc, bundle.tree.namespaces.ipc {
              try phases.time("SysV IPC") { try SysVIPC.restore(ipc, contents: bundle.segments, namespaceOf: hostPid) }
            }
          }
          let tracee = Tracee(tid: hostPid)
          try tracee.setSignalMask(~0)
          let injector = try Injector(tracee: tracee)
          try TaskRestore.resetInherited(injector)
          if bundle.tree.namespaces.cgroup {
            // Made where the task now is, so that its root is the container's cgroup in every
            // hierarchy (as a runtime makes it), not ckcont's, where the task was born.
            try injector.call("unshare(CLONE_NEWCGROUP) for process \(pid)", SyscallNumber.unshare, UInt64(CK_CLONE_NEWCGROUP))
          }
          if bundle.tree.namespaces.user {
            try becomeNamespaceRoot(injector, maps: bundle.tree.namespaces.userMaps)
            inherited = try ProcStatus.read(pid: hostPid)
          }
          if bundle.tree.namespaces.ipc, let settings = bundle.tree.namespaces.ipcSysctls {
            try NamespaceSysctls.restore(settings, through: injector)
          }
          try injector.mapRegion(avoiding: bundle.tasks.flatMap(\.memory.vmas))
          try MemoryRestore.unmapInherited(injector)
          channelPeer = try injector.openChannel(at: channelDescriptor(bundle))
          try makeChildTimeNamespace(task.entry, injector, hostPid: hostPid)
          // Mounts before anything opens or maps a file that may live on them.
          if let mounts = bundle.mounts, bundle.tree.namespaces.mount {
            try phases.time("mounts") {
              try ContainerMounts.restore(
                mounts, injector: injector, pid: hostPid, rootSource: rootFilesystem,
                userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, cgroupMoves: target.moves)
            }
          }
          if bundle.tree.namespaces.uts {
            try NestedNamespaces.setNames(
              hostname: bundle.tree.namespaces.hostname, domainname: bundle.tree.namespaces.domainname, in: injector)
          }
          if bundle.tree.namespaces.net && bundle.tree.namespaces.loopbackUp == true { try NestedNamespaces.bringLoopbackUp(in: injector) }
          placement.rootPid = pid
          placement.current[pid] = [:]
          injectors[pid] = injector
        case .fork(let pid, let parentPid):
          guard let parent = injectors[parentPid] else { throw CKError(.failed, "process \(pid): parent \(parentPid) not created") }
          // A process that shared its parent's descriptor table or fs information is cloned
          // sharing them, by that parent and no other.
          let entry = byPid[pid]?.entry ?? zombies[pid]
          let sharing = UInt64(entry?.sharesFilesWithParent == true ? 0x400 : 0) | UInt64(entry?.sharesFSWithParent == true ? 0x200 : 0)
          if sharing != 0, entry?.ppid != parentPid {
            throw CKError(
              .badInput, "process \(pid) shares its parent's descriptor table or fs information, but must be recreated by another process")
          }
          // In its pid namespace with all its ids; a helper has one, in its parent's.
          let (ids, newNamespace) = entry.map(PidNamespaces.Layout.setTid) ?? ([pid], false)
          guard entry != nil || byPid[parentPid]?.entry.pidDepth ?? 0 == 0 else {
            throw CKError(.badInput, "restore helper \(pid) would be forked in a pid namespace below the container's")
          }
          let child = try phases.time("forks") { try parent.forkChild(ids: ids, sharing: sharing, newPidNamespace: newNamespace) }
          created.append(child.tid)
          // A helper stays where its parent is; a process moves only where it differs.
          if let task = byPid[pid] {
            try phases.time("cgroup places") { try target.place(child.tid, entry: task.entry, parent: byPid[parentPid]?.entry) }
          }
          injectors[pid] = try phases.time("injectors") { try Injector(thread: child, sharingRegionOf: parent) }
          if let injector = injectors[pid] {
            try NestedNamespaces.enter(
              pid: pid, parent: parentPid, wanted: entry?.nestedNamespaces, images: bundle.tree.nestedNamespaces ?? [], injector: injector,
              userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, layout: layout, placement: &placement)
          }
          if let entry, let injector = injectors[pid] {
            if entry.nestedPids?.last == 1 {
              try NestedNamespaces.mountProcs(
                ofInit: pid, rootMounts: bundle.tree.namespaces.mount ? bundle.mounts : nil, images: bundle.tree.nestedNamespaces ?? [],
                injector: injector, userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, placement: placement)
            }
            try makeChildTimeNamespace(entry, injector, hostPid: child.tid)
          }
        case .setsid(let pid):
          try injectors[pid]?.call("setsid for process \(pid)", SyscallNumber.setsid)
        }
      }
      let root = rootPid
      FaultInjection.point("restore:tree")
      for (pid, group) in plan.joins {
        let join = try PidNamespaces.groupJoin(pid: pid, group: group, layout: layout)
        try injectors[join.caller]?.call(
          "setpgid(\(group)) for process \(pid)", SyscallNumber.setpgid, UInt64(join.pid), UInt64(join.group))
      }
      for helper in plan.helpers {
        guard let own = injectors.removeValue(forKey: helper.pid), let parent = injectors[helper.parent] else { continue }
        try endHelper(own.tracee, pid: helper.pid, parent: parent)
      }
      // Zombies die once their sessions and groups have every member and the helpers have
      // ended: a zombie-to-be an orphan helper forked has fallen to its parent, the init.
      for zombie in bundle.zombies {
        guard let own = injectors.removeValue(forKey: zombie.pid), let parent = injectors[zombie.ppid], let status = zombie.zombieStatus
        else { throw CKError(.failed, "zombie \(zombie.pid) or its parent \(zombie.ppid) was not created") }
        try makeZombie(own, status: status, parent: parent, name: zombie.comm)
      }
      // Once every child is made: who gave its children a pid namespace gives it again.
      for task in order where task.entry.childPidNamespaceInit != nil {
        guard let injector = injectors[task.entry.pid] else { continue }
        try PidNamespaces.enterChildNamespace(task.entry, injector: injector, layout: layout)
      }
      try Interruption.check()
      // Memory of all, then descriptors in two passes over all (shared ones must exist
      // before anyone takes a copy), then the rest and the final registers of each.
      phases.record("up to the process tree", since: started)
      let sharedObjects = SharedMemoryObjects()
      sharedObjects.privateObjectContents = bundle.privateObjects
      // Rebuilding memory is mostly the tasks' own work (mappings) and the page copies: each
      // task runs its mapping batch on another CPU while ckcont prepares the next one's, and
      // comes back to ckcont's CPU for the round trips that follow; the pages are copied
      // into it on both CPUs meanwhile.
      let otherCPUs = ownCPUs.removing(tracerCPU)
      let copier = PageCopier(helperCPUs: otherCPUs)
      defer { copier.stop() }
      var memories: [Int32: MemoryRestore] = [:]
      var running: (memory: MemoryRestore, pid: Int32)?
      func finishRunning() throws {
        guard let (memory, pid) = running else { return }
        running = nil
        try memory.finish()
        if otherCPUs != nil { try? CPUSet(only: tracerCPU).apply(to: pid) }
      }
      let memoryStarted = monotonicNow()
      for task in order {
        guard let injector = injectors[task.entry.pid] else { continue }
        let memory = MemoryRestore(
          image: task.memory, pages: task.pages ?? UnsafeRawBufferPointer(start: nil, count: 0), injector: injector,
          sharedObjects: sharedObjects, copier: copier, log: log)
        memories[task.entry.pid] = memory
        // A shared object is mapped from the task that created it, once that one has mapped it;
        // a task sharing its parent's descriptor table (CLONE_FILES) would open and close the
        // executable's descriptor in the same table as the task before it, which may be the
        // parent or a sibling sharing it too.
        if memory.mapsSharedObjects || task.entry.sharesFilesWithParent == true { try finishRunning() }
        try? otherCPUs?.apply(to: injector.pid)
        try memory.start()
        try finishRunning()
        running = (memory, injector.pid)
        try Interruption.check()
      }
      try finishRunning()
      try copier.waitAll()
      for memory in memories.values { memory.releaseUserfault() }
      if let ipc = bundle.ipc, bundle.tree.namespaces.ipc { try SysVIPC.removeDetached(ipc, namespaceOf: root) }
      phases.record("memory", since: memoryStarted)
      let shared = SharedDescriptions(
        inherited: inheritedDescriptors, ownIPCNamespace: bundle.tree.namespaces.ipc, inUserNamespace: bundle.tree.namespaces.user)
      if let dumped = bundle.tree.shellJobTerminal, let now = ownTerminal() { shared.shellJobTerminal = (dumped, now) }
      shared.layout = layout
      shared.hostPids = injectors.mapValues(\.pid)
      // Terminals before descriptors: a descriptor of /dev/tty needs its session's terminal.
      shared.terminals = try phases.time("terminals") { try Terminals.make(for: order, rootPid: root, log: log) }
      try shared.terminals?.controlSessions(order) { injectors[$0] }
      var prepared: [(FileRestore, FileRestore.Prepared)] = []
      // A table shared with the parent is the parent's to fill.
      for task in order where task.entry.sharesFilesWithParent != true {
        guard let injector = injectors[task.entry.pid] else { continue }
        let files = FileRestore(
          image: task.files, injector: injector, pid: task.entry.pid, shared: shared, sharedObjects: sharedObjects, log: log)
        prepared.append((files, try phases.time("files") { try files.prepare() }))
      }
      for (files, state) in prepared { try phases.time("files") { try files.install(state) } }
      // Once every socket is in place: a datagram's sender may be any process's.
      try phases.time("files") {
        try WaitingDatagrams.deliver(order, injectors: injectors, log: log)
        try PassedInFlight.deliver(order, injectors: injectors)
      }
      try shared.terminals?.relock(order)
      var threads: [Tracee] = []
      var restores: [TaskRestore] = []
      /// Each thread's own CPUs, by host tid.
      var affinity: [Int32: CPUSet] = [:]
      for task in order {
        guard let injector = injectors[task.entry.pid] else { continue }
        guard let inherited else { throw CKError(.failed, "no process was created") }
        let restore = TaskRestore(
          entry: task.entry, core: task.core, injector: injector, inherited: inherited,
          userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, log: log)
        let own = try phases.time("threads, signals, creds") {
          try restore.restoreState { batch in try memories[task.entry.pid]?.queueProtections(into: &batch) }
        }
        threads += own
        // The main thread first, then the others in their dumped order.
        for (thread, tracee) in zip(task.core.threads, own) {
          if let set = thread.cpus.flatMap(CPUSet.init(cpus:)) { affinity[tracee.tid] = set }
          try TaskRestore.restoreOwnSettings(of: thread, tid: tracee.tid)
        }
        restores.append(restore)
        try Interruption.check()
      }
      // The last steps of each task are single stops with nothing to prepare in between: all
      // are set going on another CPU before ckcont waits for the first, so the stops overlap.
      FaultInjection.point("restore:state")
      let finalStarted = monotonicNow()
      for restore in restores {
        try? otherCPUs?.apply(to: restore.injector.pid)
        try restore.launchFinish()
      }
      var finalStates: [(TaskRestore, TaskRestore.FinalState?)] = []
      for restore in restores { finalStates.append((restore, try restore.completeFinish())) }
      for (restore, state) in finalStates {
        try restore.finishSteps(state)
        log("task \(restore.injector.pid): restored with \(restore.injector.remote.count + 1) remote syscalls")
      }
      phases.record("final registers", since: finalStarted)
      let stops = order.compactMap { task in
        task.entry.stopSignal.flatMap { signal in injectors[task.entry.pid].map { (pid: $0.pid, signal: signal) } }
      }
      try phases.time("release") { try release(threads, cgroup: target.main, cpus: ownCPUs, affinity: affinity, stops: stops) }
      let resumedAt = monotonicNow()
      FaultInjection.point("restore:released")
      log("restored \(order.count) processes: \(phases)")
      return RestoreReport(
        rootPid: root, processes: order.count, cgroup: target.main.path, seconds: monotonicNow() - started,
        resumedAt: resumedAt)
    } catch {
      for pid in created.reversed() { kill(pid, SIGKILL) }
      // Reap them, children first: a dying pid-namespace init waits until every other task
      // of the namespace is reaped, and those we trace are reaped only by us.
      for pid in created.reversed() {
        var status: Int32 = 0
        while waitpid(pid, &status, Int32(CK_WALL)) < 0 && errno == EINTR {}
      }
      target.removeCreated()
      log("restore failed; removed what it created")
      throw error
    }
  }

  /// The plan that recreates the tree, and the processes in the order it forks them; refuses
  /// a process placed outside the container's cgroup. `isFree` says whether a pid of the
  /// host's namespace can be taken (for a container without a pid namespace of its own).
  static func plan(_ bundle: LoadedBundle, isFree: (Int32) -> Bool) throws -> (TreePlan, [LoadedBundle.LoadedTask]) {
    let plan = try TreePlan(
      tasks: bundle.tasks.map(\.entry) + bundle.zombies, ownPidNamespace: bundle.tree.namespaces.pid,
      isFree: isFree)
    let byPid = Dictionary(uniqueKeysWithValues: bundle.tasks.map { ($0.entry.pid, $0) })
    let order = plan.steps.compactMap { step -> LoadedBundle.LoadedTask? in
      if case .fork(let pid, _) = step { return byPid[pid] } else { return nil }
    }
    if let bad = order.first(where: { $0.entry.cgroup.hasPrefix("/") || $0.entry.cgroup.split(separator: "/").contains("..") }) {
      throw CKError(.badInput, "the bundle places process \(bad.entry.pid) in the cgroup \(bad.entry.cgroup), outside the container")
    }
    return (plan, order)
  }

  /// The path of ckcont's controlling terminal, nil for none: a pseudo-terminal by its name
  /// (descriptors of /dev/tty would show /dev/tty, not the terminal), else /dev/tty.
  func ownTerminal() -> String? {
    let tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard tty >= 0 else { return nil }
    close(tty)
    let device = (try? ProcStatExtended.read(pid: getpid())).map { UInt64(UInt32(bitPattern: $0.ttyNr)) } ?? 0
    if let side = Terminals.side(device: device), !side.isMaster { return "/dev/pts/\(side.index)" }
    return "/dev/tty"
  }

  /// The soft RLIMIT_NOFILE up to the hard one, as CRIU does: the tasks inherit it, and
  /// while their descriptors are made they hold them above the highest number any process of
  /// the bundle restores (``Injector/channel``); each gets its own limits back afterwards.
  func raiseDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 { log("could not raise RLIMIT_NOFILE: \(String(cString: strerror(errno)))") }
  }

  /// Where every task holds its end of the channel to ckcont (``Injector/channel``) until
  /// its descriptors are installed: above every descriptor number the bundle restores, and
  /// not the number the executable's descriptor takes meanwhile.
  func channelDescriptor(_ bundle: LoadedBundle) -> Int64 {
    let above = Int64((bundle.tasks.flatMap { $0.files.descriptors.map(\.fd) }.max() ?? 2) + 1)
    return above == MemoryRestore.exeFD ? above + 1 : above
  }

  /// Lets a freshly forked child die the way the dumped zombie did (exit code or signal), so
  /// that its parent finds it unreaped with that status; then takes back the SIGCHLD the
  /// parent got for it (the original parent had it long before the dump).
  func makeZombie(_ own: Injector, status: Int32, parent: Injector, name: String) throws {
    let signal = status & 0x7f
    let child = own.tracee
    own.resetData()
    let comm = try own.put(string: String(name.prefix(15)))
    try own.call("PR_SET_NAME", SyscallNumber.prctl, 15, comm)
    if signal == 0 {
      var regs = try child.registers()
      regs.rax = UInt64(SyscallNumber.exitGroup)
      regs.orig_rax = UInt64.max
      regs.rdi = UInt64((status >> 8) & 0xff)
      regs.rip = own.region
      try child.setRegisters(regs)
      try child.detach()
    } else {
      // The blank child carries ckcont's signal handlers: the default action must apply.
      own.resetData()
      let action = try own.put(words: [0, 0, 0, 0])
      try own.call("rt_sigaction(\(signal))", SyscallNumber.rtSigaction, UInt64(signal), action, 0, 8)
      try child.setSignalMask(0)
      try child.detach(signal: signal)
    }
    let deadline = monotonicNow() + 5
    while ProcStat.read(pid: child.tid)?.state != "Z" {
      guard monotonicNow() < deadline else {
        throw CKError(.failed, "the recreated zombie \(child.tid) did not die")
      }
      usleep(500)
    }
    try takeBackSIGCHLD(parent)
    log("zombie \(child.tid) recreated with status 0x\(String(status, radix: 16))")
  }

  /// Ends a restore helper (TreePlan): it is killed, its parent reaps it and forgets the
  /// SIGCHLD, and the orphans it forked fall to the init.
  func endHelper(_ helper: Tracee, pid: Int32, parent: Injector) throws {
    kill(helper.tid, SIGKILL)
    var status: Int32 = 0
    // The tracer collects the death first; only then does the real parent see a zombie.
    _ = waitpid(helper.tid, &status, Int32(CK_WALL))
    try parent.call("wait4(helper \(pid))", SyscallNumber.wait4, UInt64(pid), 0, UInt64(CK_WALL), 0)
    try takeBackSIGCHLD(parent)
    log("restore helper \(pid) (\(helper.tid)) ended")
  }

  /// Takes the SIGCHLD a restore step caused out of `parent`'s pending signals.
  func takeBackSIGCHLD(_ parent: Injector) throws {
    parent.resetData()
    let set = try parent.put(words: [1 << UInt64(SIGCHLD - 1)])
    let zero = try parent.put(words: [0, 0])
    _ = try parent.raw(SyscallNumber.rtSigtimedwait, set, 0, zero, 8)
  }

  func load() throws -> LoadedBundle {
    switch input {
    case .standardInput:
      return try LoadedBundle(source: FileDescriptorSource(fd: 0, name: "standard input"), log: log)
    case .file(let path):
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw CKError(.badInput, "cannot open the bundle \(path): \(String(cString: strerror(errno)))")
      }
      defer { close(fd) }
      var st = stat()
      // A regular file is verified in one pass and then mapped: its pages go to the tasks
      // from the page cache. Anything else (a FIFO, a device) can be read only once: its
      // pages are kept in memory.
      guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
        return try LoadedBundle(source: FileDescriptorSource(fd: fd, name: path), pages: .copy, log: log)
      }
      let source: MappedFileSource
      do {
        source = try MappedFileSource(fd: fd, name: path)
      } catch {
        throw CKError(.badInput, "cannot map the bundle \(path): \(error)")
      }
      return try LoadedBundle(source: source, pages: .inPlace, log: log)
    }
  }

  /// Every XSAVE component the dumped threads used must be enabled on this CPU.
  func checkCPU(_ manifest: Manifest) throws {
    let host = ck_xgetbv0()
    let missing = manifest.cpu.xsaveFeatures & ~host
    guard missing == 0 else {
      throw CKError(
        .badInput,
        "the bundle's tasks use CPU state components 0x\(hex(missing)) (XSAVE features) that this CPU does not offer",
        hint: "restore on a CPU with the same features (e.g. AVX-512) as the one that dumped it")
    }
  }

  /// clone3 of the task in fresh namespaces with its pid; the child stops itself at once.
  /// With `suspendSeccomp`, the seccomp filters the restore installs in it and in the tasks it
  /// makes (which inherit the option) do not apply to the restore's own remote calls.
  func createTask(_ task: LoadedBundle.LoadedTask, namespaces: NamespaceSet, suspendSeccomp: Bool) throws -> Int32 {
    var flags: UInt64 = 0
    var pids: [pid_t]
    if namespaces.pid {
      guard task.entry.pid == 1 else {
        throw CKError(
          .badInput, "the dumped process was pid \(task.entry.pid) in a pid namespace whose init was not dumped",
          hint: "dump the cgroup that holds the namespace's init")
      }
      flags |= UInt64(CK_CLONE_NEWPID)
      pids = [1]
    } else {
      let hostPid = task.entry.namespacePids.first ?? task.entry.pid
      if kill(hostPid, 0) == 0 || errno != ESRCH {
        throw CKError(
          .failed, "pid \(hostPid) is taken on this host, and the process lived in the host's pid namespace",
          hint: "stop what runs as \(hostPid), or run the container in its own pid namespace")
      }
      pids = [hostPid]
    }
    if namespaces.mount { flags |= UInt64(CK_CLONE_NEWNS) }
    if namespaces.uts { flags |= UInt64(CK_CLONE_NEWUTS) }
    if namespaces.ipc { flags |= UInt64(CK_CLONE_NEWIPC) }
    if namespaces.net { flags |= UInt64(CK_CLONE_NEWNET) }
    // The new user namespace owns the others made with it (the cgroup namespace is made once
    // the task is in its cgroups, by the caller).
    if namespaces.user { flags |= UInt64(CK_CLONE_NEWUSER) }
    // Born in ckcont's own cgroups, not cloned into the container's (CLONE_INTO_CGROUP): once
    // `1` was written to a v2 cgroup's cgroup.kill, the kernel kills at birth every child
    // cloned into it, however long ago that was, and runtimes and systemd kill containers so.
    // The caller moves it in through cgroup.procs before anything of the container runs.
    let child = try negErrnoChecked("clone3", "pid \(pids), flags 0x\(hex(flags))") {
      ck_clone3_traced_child(flags, &pids, pids.count)
    }
    let pid = Int32(child)
    let status = try Ptrace.wait(pid)
    guard case .stopped(let signal, _) = status, signal == SIGSTOP else {
      throw CKError(.failed, "the new task \(pid) did not stop as expected: \(status)")
    }
    if let maps = namespaces.userMaps, namespaces.user {
      do { try writeUserMaps(maps, pid: pid) } catch {
        kill(pid, SIGKILL)
        _ = try? Ptrace.wait(pid)
        throw error
      }
    }
    try Tracee(tid: pid).setOptions(
      Int32(CK_PTRACE_O_EXITKILL | CK_PTRACE_O_TRACESYSGOOD | CK_PTRACE_O_TRACECLONE | CK_PTRACE_O_TRACEFORK)
        | (suspendSeccomp ? Int32(CK_PTRACE_O_SUSPEND_SECCOMP) : 0))
    log("created task \(pid) (pid \(pids[0]) in its namespace)")
    return pid
  }

  /// The root of a new user namespace starts with ckcont's ids (the host's root), which the
  /// namespace does not map: what it makes in a filesystem of the namespace (a tmpfs file, a
  /// socket's name) would be refused. Like any process a runtime starts in one, it becomes
  /// the namespace's root first (its capabilities there stay whole); the dumped ids come last.
  func becomeNamespaceRoot(_ injector: Injector, maps: UserNamespaceMaps?) throws {
    guard let maps, maps.uids.contains(where: { $0.inside == 0 }), maps.gids.contains(where: { $0.inside == 0 }) else { return }
    try injector.call("setresgid(0) in the user namespace", SyscallNumber.setresgid, 0, 0, 0)
    try injector.call("setresuid(0) in the user namespace", SyscallNumber.setresuid, 0, 0, 0)
    // The change of ids made it undumpable, and then the processes forked from it could not
    // take descriptors from each other (pidfd_getfd) until their own credentials are set.
    try injector.call("PR_SET_DUMPABLE", SyscallNumber.prctl, 4, 1)
  }

  /// The id maps of the root's new user namespace, as dumped (setgroups first: the kernel
  /// takes "deny" only before a gid map).
  func writeUserMaps(_ maps: UserNamespaceMaps, pid: Int32) throws {
    for (file, text) in [
      ("setgroups", maps.setgroupsAllowed ? "allow" : "deny"), ("gid_map", UserNamespaceMaps.text(maps.gids)),
      ("uid_map", UserNamespaceMaps.text(maps.uids)),
    ] {
      let path = "/proc/\(pid)/\(file)"
      let fd = try syscallChecked("open", path) { open(path, O_WRONLY | O_CLOEXEC) }
      defer { close(fd) }
      let written = text.withCString { write(fd, $0, strlen($0)) }
      guard written == text.utf8.count else {
        throw CKError(.failed, "cannot write the user namespace's \(file) (\(text.split(separator: "\n").joined(separator: ", "))): \(String(cString: strerror(errno)))")
      }
    }
  }

  /// Freeze the target cgroup, detach, thaw: every task resumes at once, on `cpus`.
  /// `stops`: stopped jobs, which get their stop signal while still frozen, so that they stop
  /// again before they run.
  /// `affinity`: each thread's own CPUs (by host tid), of those of `cpus`.
  func release(
    _ threads: [Tracee], cgroup: Cgroup, cpus: CPUSet, affinity: [Int32: CPUSet], stops: [(pid: Int32, signal: Int32)]
  ) throws {
    _ = try Freezer.freeze(cgroup, timeout: 5)
    for thread in threads {
      // Refused only when the task's cpuset and `cpus` have no CPU in common; it keeps the
      // cpuset's CPUs then, which is what it would have had anyway.
      let own = affinity[thread.tid].flatMap { $0.intersection(cpus) } ?? cpus
      do { try own.apply(to: thread.tid) } catch { log("thread \(thread.tid): \(error)") }
      try thread.detach()
    }
    for stop in stops { kill(stop.pid, stop.signal) }
    try Freezer.thaw(cgroup)
  }
}
