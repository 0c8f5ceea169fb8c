import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// The capture phase of a dump: what /proc shows of every process (on all CPUs), what each
/// tells by remote calls (on the tracing thread), what links processes to each other, and
/// what belongs to the container rather than to any process.
extension Dump {
  /// What /proc shows of one process (everything but what only it can tell).
  struct ProcessFacts: Sendable {
    var task: TaskCapture
    /// Its cgroup, relative to the container's.
    var cgroup: String
    var memory: MemoryImage
    var files: FileTableImage
    /// /proc/<pid>/ns: the namespaces it is in and those its children get.
    var namespaceIDs: [String: NamespaceID]
    var scheduling: SchedulingImage
    /// /proc/<pid>/stat tty_nr: the controlling terminal's device number, 0 for none.
    var controllingTerminal: Int32

    init(
      _ process: CgroupProcess, container: String, sockDiag: Int32, taken: TakenState, rootMounts: Set<Int>?,
      dropInotifyEvents: Bool, readingFlags: BackgroundJob<[UInt64: VMFlags]>?, log: Logger
    ) throws {
      let stat = try ProcStatExtended.read(pid: process.pid)
      controllingTerminal = stat.ttyNr
      task = try TaskCapture(pid: process.pid, threads: process.threads)
      cgroup = process.cgroup.relative(to: container)
      memory = try MemoryCapture(pid: process.pid, procStat: stat, readingFlags: readingFlags).image(log: log)
      files = try FileCapture(
        pid: process.pid, sockDiag: sockDiag, taken: taken, rootMounts: rootMounts,
        dropInotifyEvents: dropInotifyEvents
      ).image(log: log)
      namespaceIDs = try NamespaceID.readAll(
        pid: process.pid,
        names: ["pid", "pid_for_children", "mnt", "uts", "ipc", "net", "cgroup", "user", "time", "time_for_children"])
      guard stat.policy != 6 else {
        throw CKError(.failed, "process \(process.pid) runs under SCHED_DEADLINE, which ckcont cannot checkpoint yet")
      }
      scheduling = SchedulingImage(
        nice: Int32(truncatingIfNeeded: stat.nice), policy: stat.policy, realtimePriority: stat.rtPriority)
    }
  }

  /// Everything but the page contents.
  struct CapturedTask {
    var entry: TaskEntryImage
    var core: TaskCore
    var memory: MemoryImage
    var files: FileTableImage
    var hostPid: Int32
    var namespaces: NamespaceFacts
    var namespaceIDs: [String: NamespaceID]
    /// The controlling terminal's device number (tty_nr), 0 for none.
    var controllingTerminal: Int32
  }

  struct Captured {
    var tree: ProcessTree
    var cgroups: CgroupTreeImage
    var tasks: [CapturedTask]
    var cpu: Manifest.CPU
    /// core.json and mm.json of each task, encoded while the capture went on.
    var encoded: [(core: Data, mm: Data)]
    /// The SysV objects of the container's own IPC namespace, when it holds any.
    var ipc: SysVIPC.Captured?
    /// The mounts the container added to its own mount namespace, when it added any.
    var mounts: MountsImage?
    /// The contents of memfds and deleted files mapped privately, by member name.
    var privateObjects: [String: [UInt8]] = [:]
    /// By host pid: saved pages to read without pinning (``ForkInheritance/Marked/unpinned``).
    var unpinned: [Int32: [AddressRange]] = [:]
  }

  /// Children the cgroup does not list: zombies (the kernel drops them from cgroup.procs),
  /// returned to be saved with their exit status, and processes moved to another cgroup,
  /// which stop the dump with their names rather than leave a parent's wait() without them.
  func zombieChildren(_ processes: [CgroupProcess]) throws -> [(parent: Int32, zombie: Int32)] {
    let members = Set(processes.map(\.pid))
    var zombies: [(parent: Int32, zombie: Int32)] = []
    for process in processes {
      for tid in process.threads {
        let text = (try? PseudoFile.read("/proc/\(process.pid)/task/\(tid)/children")) ?? ""
        for child in text.split(separator: " ").compactMap({ Int32($0) }) where !members.contains(child) {
          let stat = ProcStat.read(pid: child)
          if stat?.state == "Z" {
            zombies.append((process.pid, child))
            continue
          }
          throw CKError(
            .failed, "process \(process.pid) has a child \(child) outside \(cgroup.path)",
            hint: "move the child into the container's cgroup, or dump the cgroup that holds both")
        }
      }
    }
    return zombies
  }

  /// ``ProcessFacts`` of every process, read on all CPUs at once, in the order given.
  func readProc(
    of processes: [CgroupProcess], taken: TakenState, vmaFlags: [Int32: BackgroundJob<[UInt64: VMFlags]>]
  ) throws -> [Result<ProcessFacts, any Error>] {
    let log = self.log
    let container = cgroup.path
    // Unix sockets are asked about through sock_diag, in the container's network namespace.
    // Without it (a negative fd) only a container that holds unix sockets fails, naming them.
    let netns = OwnedDescriptor(adoptingValid: open("/proc/\(processes[0].pid)/ns/net", O_RDONLY | O_CLOEXEC))
    let diagSocket = OwnedDescriptor(adoptingValid: ck_sock_diag_socket(netns.rawOrMinusOne))
    // The number, for the workers: `diagSocket` stays open until they are done.
    let sockDiag = diagSocket.rawOrMinusOne
    let rootMounts = try ContainerMounts.ownRootMounts(pid: processes[0].pid)
    let dropInotifyEvents = self.dropInotifyEvents
    return processes.concurrentMap { (process: CgroupProcess) throws(any Error) in
      try ProcessFacts(
        process, container: container, sockDiag: sockDiag, taken: taken, rootMounts: rootMounts,
        dropInotifyEvents: dropInotifyEvents, readingFlags: vmaFlags[process.pid], log: log)
    }
  }

  /// Captures the whole container in named phases: the processes one by one, then what
  /// relates them, the container's namespaces and objects, the tree, the sharing made by
  /// forks and the cgroups.
  func capture(_ session: SeizedContainer, taken: TakenState) throws -> Captured {
    var phases = PhaseTimes()
    let zombies = try phases.time("zombie search") { try zombieChildren(session.processes) }
    let settings = try NamespaceSettingsReading(of: session.processes[0].pid)
    // Which pages sent ahead the receiver holds as they still are: the pagemap of every
    // tracked page, read on a thread of its own while the rest is captured (~11 ms per
    // GiB here, of the container's downtime).
    let heldAhead = precopy.map { precopy in
      BackgroundJob(named: "ckcont-held-ahead") {
        try Dictionary(
          uniqueKeysWithValues: precopy.tracked.map { ($0.hostPid, try precopy.trustedRuns(hostPid: $0.hostPid)) })
      }
    }
    MappedFiles.forgetPaths()
    let facts = try phases.time("/proc on all CPUs") {
      try readProc(of: session.processes, taken: taken, vmaFlags: session.vmaFlags)
    }
    // The container's pid namespace is its root's: the one of the fewest levels (processes
    // deeper are in namespaces below it, see PidNamespaces).
    let level = facts.compactMap { try? $0.get().task.status.nsPid.count }.min() ?? 1
    // Each process's core and mm are final once captured: they are encoded on the CPUs the
    // tracing thread leaves free, while it asks the next process.
    let encoder = ModelEncoder(cpus: try? CPUSet.of(0).removing(CPUSet.current()))
    defer { encoder.finish() }
    var tasks = try captureProcesses(session, facts: facts, level: level, encoder: encoder, phases: &phases)
    let innerPid = Dictionary(uniqueKeysWithValues: tasks.map { ($0.hostPid, $0.entry.pid) })
    try nameRelativesInside(&tasks, innerPid: innerPid, level: level)
    let terminals = try settleTerminals(&tasks, innerPid: innerPid)
    guard let root = tasks.first(where: { $0.entry.ppid == 0 }) else {
      throw CKError(.failed, "the processes of \(cgroup.path) form no tree (every one has its parent inside)")
    }
    let relations = try relate(&tasks, root: root, phases: &phases)
    let namespaces = try containerNamespaces(of: root, settings: settings, phases: &phases)
    try NetworkDevices.checkTunQueues(tasks, network: namespaces.network)
    let ipc = try sysVObjects(of: root, namespaces: namespaces, phases: &phases)
    try checkSysVAttachments(tasks, ipc: ipc?.image)
    let privateObjects = try Self.privateObjects(of: tasks)
    let mounts = try containerMounts(of: root, namespaces: namespaces, tasks: tasks, phases: &phases)
    let entries = try tasks.map(\.entry) + zombieEntries(zombies, innerPid: innerPid, level: level)
    try PidNamespaces.checkPlan(entries, ownPidNamespace: namespaces.pid)
    var tree = ProcessTree(
      tasks: entries, namespaces: namespaces, cgroup: cgroup.path, cgroupVersion: cgroup.version.rawValue)
    tree.shellJobTerminal = terminals.shellJob
    tree.console = terminals.console
    tree.nestedNamespaces = relations.nested.isEmpty ? nil : relations.nested
    if !relations.time.isEmpty {
      tree.timeNamespaces = relations.time
      tree.clocksAtDump = TimeNamespaces.now()
    }
    let inheritance = try phases.time("fork sharing") { try Self.markForkSharing(&tasks, entries: entries, tree: tree) }
    let members =
      [(root.hostPid, root.entry.pid)] + tasks.filter { $0.hostPid != root.hostPid }.map { ($0.hostPid, $0.entry.pid) }
    let cgroups = try phases.time("cgroups") { try CgroupCapture(cgroup: cgroup, processes: members).image() }
    let encodingWait = monotonicNow()
    var models = try encoder.models(of: tasks.map(\.hostPid))
    phases.record("waiting for the encoder", since: encodingWait)
    var changed = inheritance.changed
    if let heldAhead {
      changed.formUnion(
        try phases.time("pages sent ahead") {
          let held = try heldAhead.wait()
          return try Self.markPrecopied(&tasks) { task in held[task.hostPid] ?? [] }
        })
      changed.formUnion(LazySource.markHeldAhead(&tasks, entries: entries, tree: tree))
    }
    if let lazy {
      changed.formUnion(phases.time("pages to fetch lazily") { lazy.mark(&tasks, entries: entries, tree: tree) })
    }
    if let parentPages {
      changed.formUnion(
        try phases.time("pages as in the parent") {
          try Self.markPrecopied(&tasks) { task in
            try ParentBundle.unchangedRuns(
              parentPages.store, hostPid: task.hostPid, innerPid: task.entry.pid, image: task.memory)
          }
        })
    }
    try phases.time("memory models") {
      for index in changed { models[index].mm = try tasks[index].memory.encodedJSON() }
    }
    log.debug("captured \(tasks.count) processes: \(phases)")
    let threads = tasks.flatMap(\.core.threads)
    let cpu = Manifest.CPU(
      xsaveFeatures: threads.reduce(UInt64(0)) { $0 | $1.xstateFeatures },
      xsaveSize: threads.map(\.xstate.count).max() ?? 0)
    return Captured(
      tree: tree, cgroups: cgroups, tasks: tasks, cpu: cpu, encoded: models, ipc: ipc, mounts: mounts,
      privateObjects: privateObjects, unpinned: inheritance.unpinned)
  }

  /// The settings of the container's own network and IPC namespaces, read on threads of
  /// their own: reading takes tens of milliseconds, which the rest of the capture hides.
  struct NamespaceSettingsReading {
    var pending: [String: BackgroundJob<[String: String]?>] = [:]

    init(of pid: Int32) throws {
      let ours = try NamespaceID.readAll(pid: getpid())
      let theirs = try NamespaceID.readAll(pid: pid)
      for kind in ["net", "ipc"] where theirs[kind] != nil && theirs[kind] != ours[kind] {
        pending[kind] = BackgroundJob(named: "ckcont-sysctls-\(kind)") { try NamespaceSysctls.capture(kind, of: pid) }
      }
    }

    func wait(_ kind: String) throws -> [String: String]? { try pending[kind]?.wait() ?? nil }
  }

  /// Asks each process, on the tracing thread, what only it can tell (``TaskCapture/core``),
  /// and hands its finished core and mm to `encoder`.
  private func captureProcesses(
    _ session: SeizedContainer, facts: [Result<ProcessFacts, any Error>], level: Int, encoder: ModelEncoder,
    phases: inout PhaseTimes
  ) throws -> [CapturedTask] {
    let log = self.log
    session.keepOnOneCPU()
    // Every scratch area journaled at once, before the first is mapped.
    var areas: [Int32: UInt64] = [:]
    for (process, result) in zip(session.processes, facts) {
      if let vmas = try? result.get().memory.vmas,
        let area = RemoteSession.freeArea(avoiding: vmas, i386: try session.abi(of: process) == .i386)
      {
        areas[process.pid] = area
      }
    }
    try session.reserveScratchAreas(areas)
    var tasks: [CapturedTask] = []
    var sharedObjectPages = SharedObjectPages()
    for (process, result) in zip(session.processes, facts) {
      try Interruption.check()
      if Self.captureDelay > 0 { usleep(Self.captureDelay) }
      try explainingVanished(process.pid) {
        let facts = try result.get()
        let (asked, brk, namespaces) = try phases.time("remote calls") {
          try facts.task.core(session: session, vmas: facts.memory.vmas, log: log)
        }
        var core = asked
        core.scheduling = facts.scheduling
        var memory = sharedObjectPages.keepFirst(facts.memory)
        memory.fields.brk = brk
        encoder.submit(tasks.count, core: core, memory: memory)
        var entry = try facts.task.entry(cgroup: facts.cgroup, level: level)
        entry.stopSignal = session.stopSignals[process.pid]
        tasks.append(
          CapturedTask(
            entry: entry, core: core, memory: memory, files: facts.files, hostPid: process.pid,
            namespaces: namespaces, namespaceIDs: facts.namespaceIDs, controllingTerminal: facts.controllingTerminal))
      }
    }
    return tasks
  }

  /// Parents, pidfd targets, owners of signal-driven I/O and makers of unix connections as
  /// the container sees them:
  /// captured by host pid, kept by the pid inside (a parent outside the container, of the
  /// root or of a task whose parent was not dumped, becomes 0).
  private func nameRelativesInside(_ tasks: inout [CapturedTask], innerPid: [Int32: Int32], level: Int) throws {
    for index in tasks.indices {
      tasks[index].entry.ppid = innerPid[tasks[index].entry.ppid] ?? 0
      try Pidfds.nameTargetsInside(&tasks[index], innerPid: innerPid)
      Dump.namePeerCredentialsInside(&tasks[index], innerPid: innerPid)
      try nameAsyncOwnersInside(&tasks[index], innerPid: innerPid, level: level)
    }
  }

  /// What ties processes together: sockets with outside peers, namespaces they share or
  /// hold of their own, shared descriptor tables and open file descriptions, descriptors
  /// in flight, stale epoll watches.
  private func relate(_ tasks: inout [CapturedTask], root: CapturedTask, phases: inout PhaseTimes) throws -> (
    time: [TimeNamespaceImage], nested: [NestedNamespaceImage]
  ) {
    try markPendingConnections(&tasks)
    markOutsideSocketPeers(&tasks)
    try checkClosingPeers(tasks)
    try markPendingTCP(&tasks)
    try checkNamespaces(tasks, root: root)
    try PidNamespaces.check(&tasks, root: root)
    let time = try TimeNamespaces.assign(&tasks, hostTime: try NamespaceID.readAll(pid: getpid())["time"])
    let nested = try NestedNamespaces.assign(&tasks, root: root)
    try markSharedTables(&tasks)
    phases.time("shared files") { markSharedDescriptions(&tasks) }
    try phases.time("shared files") {
      try resolvePassed(&tasks)
      try findStaleWatches(&tasks)
    }
    return (time, nested)
  }

  /// The namespaces the container has of its own, with what the restore needs of each:
  /// user id maps, UTS names, loopback state and network and IPC settings.
  private func containerNamespaces(
    of root: CapturedTask, settings: NamespaceSettingsReading, phases: inout PhaseTimes
  ) throws -> NamespaceSet {
    var namespaces = try namespaceSet(of: root.hostPid)
    if namespaces.user {
      // Its processes are made with set_tid, which a user namespace may do in a pid namespace
      // it owns only.
      guard namespaces.pid else {
        throw CKError(
          .failed,
          "the container has a user namespace of its own but shares the host's pid namespace, which ckcont cannot restore",
          hint: "give the container a pid namespace of its own too")
      }
      func ranges(_ file: String) throws -> [UserNamespaceMaps.Range] {
        try ProcIDMap.read(pid: root.hostPid, file).map {
          .init(inside: $0.inside, outside: $0.outside, count: $0.count)
        }
      }
      namespaces.userMaps = UserNamespaceMaps(
        uids: try ranges("uid_map"), gids: try ranges("gid_map"),
        setgroupsAllowed: try ProcIDMap.setgroupsAllowed(pid: root.hostPid))
    }
    if namespaces.uts {
      (namespaces.hostname, namespaces.domainname) = root.namespaces.uts
    }
    if namespaces.net && externalNetwork {
      namespaces.netExternal = true
    } else if namespaces.net {
      namespaces.loopbackUp = root.namespaces.loopbackUp
      namespaces.network = try phases.time("network devices") { try NetworkDevices.capture(pid: root.hostPid) }
      namespaces.netSysctls = try phases.time("namespace settings") { try settings.wait("net") }
    }
    if namespaces.ipc {
      namespaces.ipcSysctls = try phases.time("namespace settings") { try settings.wait("ipc") }
    }
    return namespaces
  }

  /// SysV objects live in the IPC namespace, not in any process: saved with the namespace.
  private func sysVObjects(of root: CapturedTask, namespaces: NamespaceSet, phases: inout PhaseTimes) throws
    -> SysVIPC.Captured?
  {
    let sysv = root.namespaces.sysvObjects
    guard namespaces.ipc && sysv.shm + sysv.sem + sysv.msg > 0 else { return nil }
    return try phases.time("SysV IPC") { try SysVIPC.capture(namespaceOf: root.hostPid) }
  }

  /// The contents of memfds and deleted files mapped privately, by member name, each once.
  private static func privateObjects(of tasks: [CapturedTask]) throws -> [String: [UInt8]] {
    var objects: [String: [UInt8]] = [:]
    for task in tasks where task.memory.vmas.contains(where: { $0.contentsMember != nil }) {
      let contents = try MemoryCapture.privateObjectContents(
        pid: task.hostPid, of: task.memory, known: Set(objects.keys))
      objects.merge(contents) { first, _ in first }
    }
    return objects
  }

  /// The mounts the container added to its own mount namespace, when it added any.
  private func containerMounts(
    of root: CapturedTask, namespaces: NamespaceSet, tasks: [CapturedTask], phases: inout PhaseTimes
  ) throws -> MountsImage? {
    guard namespaces.mount else { return nil }
    var image = try phases.time("mounts") { try ContainerMounts.capture(pid: root.hostPid) }
    try PidNamespaces.markProcMounts(&image, viewer: root, tasks: tasks, root: root)
    return image.mounts.isEmpty ? nil : image
  }

  /// The tree entries of zombie children, at the container's level as for the living
  /// (TaskCapture.entry).
  private func zombieEntries(_ zombies: [(parent: Int32, zombie: Int32)], innerPid: [Int32: Int32], level: Int) throws
    -> [TaskEntryImage]
  {
    try zombies.map { parent, zombie in
      // A zombie's status file is short (no Umask, no memory): read the few lines it has.
      var fields: [String: [String]] = [:]
      for line in try PseudoFile.read("/proc/\(zombie)/status").split(separator: "\n") {
        let parts = line.split(separator: ":", maxSplits: 1)
        if parts.count == 2 {
          fields[String(parts[0])] = parts[1].split(whereSeparator: \.isWhitespace).map(String.init)
        }
      }
      let ids = { (key: String) in (fields[key] ?? []).compactMap { Int32($0) } }
      let at = { (key: String) in ids(key).count >= level ? ids(key)[level - 1] : (key == "NSpid" ? zombie : 0) }
      let stat = try ProcStatExtended.read(pid: zombie)
      var entry = TaskEntryImage(
        pid: at("NSpid"), namespacePids: ids("NSpid"), ppid: innerPid[parent] ?? 0, pgid: at("NSpgid"),
        sid: at("NSsid"), threads: [], cgroup: ".", comm: fields["Name"]?.first ?? "?", zombieStatus: stat.exitCode)
      if ids("NSpid").count > level { entry.nestedPids = Array(ids("NSpid")[level...]) }
      return entry
    }
  }

  /// Moves the saved pages of private anonymous memory that the reader will have already
  /// as they are (`held`: what the receiver of a pre-copy migration holds as it still is,
  /// ``PreCopy/trustedRuns(hostPid:)``; or what the parent bundle holds,
  /// ``ParentBundle/unchangedRuns(_:hostPid:innerPid:image:)``) from ``VMAImage/pages`` to
  /// ``VMAImage/precopiedPages``; pages written back after the forks
  /// (``VMAImage/laterPages``) stay saved. Returns the tasks changed.
  private static func markPrecopied(
    _ tasks: inout [CapturedTask], held: (CapturedTask) throws -> [AddressRange]
  ) throws -> Set<Int> {
    var changed = Set<Int>()
    for index in tasks.indices {
      let trusted = try held(tasks[index])
      guard !trusted.isEmpty else { continue }
      var image = tasks[index].memory
      for at in image.vmas.indices {
        let vma = image.vmas[at]
        guard vma.isPrivateAnonymous, vma.hugePageSize == nil else { continue }
        let saved = vma.pages.map { AddressRange(start: $0.start, end: $0.end) }
        let later = (vma.laterPages ?? []).map { $0.start..<$0.end }
        let ahead = SharedObjectPages.subtract(
          later, from: PreCopy.intersect(saved, trusted).map { $0.start..<$0.end })
        guard !ahead.isEmpty else { continue }
        image.vmas[at].pages = SharedObjectPages.subtract(ahead, from: saved.map { $0.start..<$0.end }).map {
          PageRun(start: $0.lowerBound, end: $0.upperBound)
        }
        image.vmas[at].precopiedPages = ahead.map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
      }
      guard image != tasks[index].memory else { continue }
      image.renumberPages()
      tasks[index].memory = image
      changed.insert(index)
    }
    return changed
  }

  /// Copy-on-write sharing with parents, once the plan says who forks whom.
  private static func markForkSharing(_ tasks: inout [CapturedTask], entries: [TaskEntryImage], tree: ProcessTree)
    throws -> ForkInheritance.Marked
  {
    let plan = try? TreePlan(tasks: entries, ownPidNamespace: tree.namespaces.pid, isFree: { _ in true })
    let living = Set(tasks.map(\.entry.pid))
    return try ForkInheritance.mark(
      &tasks, sources: plan.map { ForkInheritance.memorySources($0, living: living) } ?? [:],
      forkOrder: plan.map(ForkInheritance.forkOrder) ?? [:])
  }

}
