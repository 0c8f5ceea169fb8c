import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// One restore under way (``Restore/run()``): the state its phases share, and the phases in
/// CRIU's order: ``createTree()`` (every process forked with its pids, sessions, groups and
/// namespaces, while all are blank copies), ``restoreMemory()``, ``restoreFiles()``,
/// ``restoreTaskState()`` (threads, signals, credentials), ``finishRegisters()`` and
/// ``release()``. When one fails, ``killCreated()`` removes every process it made.
final class RestoreRun {
  let options: Restore
  let bundle: LoadedBundle
  let plan: TreePlan
  /// The dumped living processes in the order the plan forks them.
  let order: [LoadedBundle.LoadedTask]
  let byPid: [Int32: LoadedBundle.LoadedTask]
  let zombies: [Int32: TaskEntryImage]
  let layout: PidNamespaces.Layout
  let target: TargetCgroups
  var phases = PhaseTimes()
  /// Host pids of every process made, in creation order.
  private(set) var created: [Int32] = []
  /// The injector of each process (and helper) by its pid in the container.
  private var injectors: [Int32: Injector] = [:]
  /// The root's host pid.
  private(set) var rootPid: Int32 = 0
  /// The new network namespace's lock (``NetworkLock``), until the container runs.
  private(set) var networkLock: NetworkLock?
  /// ckcont's end of the channel the tasks receive descriptors through.
  private var channelPeer: OwnedDescriptor?
  /// Binds of terminals the container's devpts gets only with the terminals (its console).
  private var laterBinds: [MountImage] = []
  /// The blank copy's status (ids, capabilities) the state restore starts from.
  private var inherited: ProcStatus?
  /// The time namespaces' offsets, continuing the dumped clocks from now on.
  private let timeOffsets: [TimeNamespaceImage]
  private var rootTimeNamespace: Int?
  private var placement = NestedNamespaces.Placement()
  /// ckcont's own CPUs, the one it traces from, and the others (tasks run batches there).
  private let ownCPUs: CPUSet
  private let tracerCPU: Int
  private let otherCPUs: CPUSet?
  private var memories: [Int32: MemoryRestore] = [:]
  /// Processes whose address space holds restored mappings (their memory was restored before
  /// they forked, see ``restoreMemoryFirst(of:)``), and those forked from them; where the
  /// kernel mappings of the latter are.
  private var carriers: Set<Int32> = []
  /// The parents of processes that keep mappings of theirs.
  private lazy var keptFrom = Set(
    bundle.tasks.filter { !ForkInheritance.keptRanges($0.memory).isEmpty }.compactMap { memorySources[$0.entry.pid] }
  )
  .union(bundle.tasks.filter { $0.memory.vmas.contains { $0.laterPages != nil } }.map(\.entry.pid))
  /// The process whose memory each one is forked with (``ForkInheritance/memorySources``).
  private lazy var memorySources = ForkInheritance.memorySources(plan, living: Set(byPid.keys))
  /// The processes that keep mappings, by the process they keep them from.
  private lazy var keepersBySource = Dictionary(
    grouping: bundle.tasks.filter { task in task.memory.vmas.contains { $0.parentPages != nil } },
    by: { memorySources[$0.entry.pid] ?? 0 })
  /// Copies pages for the restores done while the tree is made (``restoreMemoryFirst(of:)``).
  private var treeCopier: PageCopier?
  private var kernelMappings: [Int32: [VMA]] = [:]
  /// The executable each carrier's mm has now, and where its kernel mappings are.
  private var carriedExe: [Int32: String] = [:]
  private var carriedKernel: [Int32: [VMA]] = [:]
  private let sharedObjects = SharedMemoryObjects()
  private var threads: [Tracee] = []
  private var restores: [TaskRestore] = []
  /// Each thread's own CPUs, by host tid.
  private var affinity: [Int32: CPUSet] = [:]

  var log: Logger { options.log }

  init(
    options: Restore, bundle: LoadedBundle, plan: TreePlan, order: [LoadedBundle.LoadedTask], target: TargetCgroups,
    ownCPUs: CPUSet,
    tracerCPU: Int
  ) {
    self.options = options
    self.bundle = bundle
    self.plan = plan
    self.order = order
    self.target = target
    self.ownCPUs = ownCPUs
    self.tracerCPU = tracerCPU
    otherCPUs = ownCPUs.removing(tracerCPU)
    byPid = Dictionary(uniqueKeysWithValues: bundle.tasks.map { ($0.entry.pid, $0) })
    zombies = Dictionary(uniqueKeysWithValues: bundle.zombies.map { ($0.pid, $0) })
    layout = PidNamespaces.Layout(bundle.tree.tasks)
    timeOffsets = (bundle.tree.timeNamespaces ?? []).map {
      TimeNamespaces.offsets($0, dumpedAt: bundle.tree.clocksAtDump)
    }
    sharedObjects.privateObjectContents = bundle.privateObjects
  }

  deinit {
    treeCopier?.stop()
  }

  // MARK: The tree

  /// Every process forked, with its pid, from its parent (or a helper, see ``TreePlan``)
  /// while all of them are still blank copies; then groups joined, helpers ended, zombies
  /// made, and pid namespaces entered for the children made later.
  func createTree() throws {
    for step in plan.steps {
      switch step {
      case .fork(let pid, 0): try createRoot(pid)
      case .fork(let pid, let parent):
        // Before anything forks from it: a helper it forks carries its memory on.
        if memories[parent] == nil, keptFrom.contains(parent) { try restoreMemoryFirst(of: parent) }
        try forkChild(pid, from: parent)
        // Its source writes the pages it held only for it and those forked before.
        if let source = memorySources[pid], let memory = memories[source], memory.holdsUntil(pid) {
          try memory.finishLater(after: pid, copier: makeTreeCopier())
          try treeCopier?.waitAll()
        }
      case .setsid(let pid): try injectors[pid]?.call(.setsid(), "setsid for process \(pid)")
      }
    }
    treeCopier?.stop()
    treeCopier = nil
    FaultInjection.point("restore:tree")
    for (pid, group) in plan.joins {
      let join = try PidNamespaces.groupJoin(pid: pid, group: group, layout: layout)
      try injectors[join.caller]?.call(.setpgid(join.pid, join.group), "setpgid(\(group)) for process \(pid)")
    }
    for helper in plan.helpers {
      guard let own = injectors.removeValue(forKey: helper.pid), let parent = injectors[helper.parent] else { continue }
      try options.endHelper(own.tracee, pid: helper.pid, parent: parent)
    }
    // Zombies die once their sessions and groups have every member and the helpers have
    // ended: a zombie-to-be an orphan helper forked has fallen to its parent, the init.
    for zombie in bundle.zombies {
      guard let own = injectors.removeValue(forKey: zombie.pid), let parent = injectors[zombie.ppid],
        let status = zombie.zombieStatus
      else { throw CKError(.failed, "zombie \(zombie.pid) or its parent \(zombie.ppid) was not created") }
      try options.makeZombie(own, status: status, parent: parent, name: zombie.comm)
    }
    // Once every child is made: who gave its children a pid namespace gives it again.
    for task in order where task.entry.childPidNamespaceInit != nil {
      guard let injector = injectors[task.entry.pid] else { continue }
      try PidNamespaces.enterChildNamespace(task.entry, injector: injector, layout: layout)
    }
  }

  /// The root: made by ckcont in the container's namespaces, which it sets up from inside
  /// (cgroup namespace, user ids, sysctls, mounts, names, loopback) before anything else.
  /// Long by nature: each step a few lines, in the one order the kernel allows (ids before
  /// the mounts they own, mounts before the names resolved in them).
  private func createRoot(_ pid: Int32) throws {
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
    let hostPid = try phases.time("clone") {
      try options.createTask(
        task, namespaces: bundle.tree.namespaces, suspendSeccomp: bundle.tasks.contains(where: \.core.hasSeccompFilters)
      )
    }
    created.append(hostPid)
    // The move runs while ckcont sets up the root; awaited before the cgroup namespace is
    // made (its root is where the task is) and before anything is charged to the cgroup.
    let placing = try target.startPlacing(hostPid, entry: task.entry)
    if rootPid == 0 {
      rootPid = hostPid
      if let script = options.actionScript {
        try placing.wait()
        try script.run(.setupNamespaces, cgroup: target.main.path, pids: created, initPid: hostPid, log: options.log)
      }
      inherited = try ProcStatus.read(pid: hostPid)
      // The network namespace's settings before anything uses them (socket buffers).
      if bundle.tree.namespaces.net, let network = bundle.tree.namespaces.network {
        // Links that carry traffic before the sockets are all made: peers would get resets.
        networkLock = try phases.time("network lock") { try NetworkLock(namespaceOf: hostPid, log: options.log) }
        try phases.time("network devices") {
          try NetworkDevices.restore(network, pid: hostPid, outerEnds: options.outerEnds, log: options.log)
        }
      }
      if bundle.tree.namespaces.net, bundle.tree.namespaces.netExternal != true,
        let settings = bundle.tree.namespaces.netSysctls
      {
        try phases.time("network settings") { try NamespaceSysctls.restore(settings, kind: "net", of: hostPid) }
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
    // Ranges, not VMAImages: copying 10,000 of those cost ~4 ms.
    try injector.mapRegion(
      avoiding: bundle.tasks.flatMap { $0.memory.vmas.map { AddressRange(start: $0.start, end: $0.end) } },
      below4GiB: bundle.tasks.contains { $0.core.abi == .i386 })
    try MemoryRestore.unmapInherited(injector)
    try phases.time("cgroup move") { try placing.wait() }
    if bundle.tree.namespaces.cgroup {
      // Made where the task now is, so that its root is the container's cgroup in every
      // hierarchy (as a runtime makes it), not ckcont's, where the task was born.
      try injector.call(.unshare(Int32(CK_CLONE_NEWCGROUP)), "unshare(CLONE_NEWCGROUP) for process \(pid)")
    }
    if bundle.tree.namespaces.user {
      try options.becomeNamespaceRoot(injector, maps: bundle.tree.namespaces.userMaps)
      inherited = try ProcStatus.read(pid: hostPid)
    }
    if bundle.tree.namespaces.ipc, let settings = bundle.tree.namespaces.ipcSysctls {
      try NamespaceSysctls.restore(settings, through: injector)
    }
    channelPeer = try injector.openChannel(at: options.channelDescriptor(bundle))
    try makeChildTimeNamespace(task.entry, injector, hostPid: hostPid)
    // Mounts before anything opens or maps a file that may live on them.
    if let mounts = bundle.mounts, bundle.tree.namespaces.mount {
      try phases.time("mounts") {
        laterBinds = try ContainerMounts.restore(
          mounts, injector: injector, pid: hostPid, rootSource: options.rootFilesystem,
          userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, cgroupMoves: target.moves,
          sources: options.mountSources)
      }
    }
    if bundle.tree.namespaces.uts {
      try NestedNamespaces.setNames(
        hostname: bundle.tree.namespaces.hostname, domainname: bundle.tree.namespaces.domainname, in: injector)
    }
    if bundle.tree.namespaces.net && bundle.tree.namespaces.loopbackUp == true {
      try NestedNamespaces.bringLoopbackUp(in: injector)
    }
    if rootPid == hostPid {
      try options.actionScript?.run(
        .postSetupNamespaces, cgroup: target.main.path, pids: created, initPid: hostPid, log: options.log)
    }
    placement.rootPid = pid
    placement.current[pid] = [:]
    injectors[pid] = injector
  }

  /// A process (or helper) forked by its parent, moved to its cgroup and namespaces.
  private func forkChild(_ pid: Int32, from parentPid: Int32) throws {
    guard let parent = injectors[parentPid] else {
      throw CKError(.failed, "process \(pid): parent \(parentPid) not created")
    }
    // A process that shared its parent's descriptor table or fs information is cloned
    // sharing them, by that parent and no other.
    let entry = byPid[pid]?.entry ?? zombies[pid]
    let sharing =
      UInt64(entry?.sharesFilesWithParent == true ? CK_CLONE_FILES : 0)
      | UInt64(entry?.sharesFSWithParent == true ? CK_CLONE_FS : 0)
    if sharing != 0, entry?.ppid != parentPid {
      throw CKError(
        .badInput,
        "process \(pid) shares its parent's descriptor table or fs information, but must be recreated by another process"
      )
    }
    // In its pid namespace with all its ids; a helper has one, in its parent's.
    let (ids, newNamespace) = entry.map(PidNamespaces.Layout.setTid) ?? ([pid], false)
    guard entry != nil || byPid[parentPid]?.entry.pidDepth ?? 0 == 0 else {
      throw CKError(.badInput, "restore helper \(pid) would be forked in a pid namespace below the container's")
    }
    let child = try phases.time("forks") {
      try parent.forkChild(ids: ids, sharing: sharing, newPidNamespace: newNamespace)
    }
    created.append(child.tid)
    // A helper stays where its parent is; a process moves only where it differs.
    if let task = byPid[pid] {
      try phases.time("cgroup places") {
        try target.place(child.tid, entry: task.entry, parent: byPid[parentPid]?.entry)
      }
    }
    injectors[pid] = try phases.time("injectors") { try Injector(thread: child, sharingRegionOf: parent) }
    // A helper keeps all its parent's memory for the processes it forks.
    if carriers.contains(parentPid), byPid[pid] == nil {
      carriers.insert(pid)
      carriedExe[pid] = carriedExe[parentPid]
      carriedKernel[pid] = carriedKernel[parentPid]
    } else if carriers.contains(parentPid), let injector = injectors[pid] {
      // Forked with its parent's restored memory: it keeps what it had from the parent.
      carriers.insert(pid)
      carriedExe[pid] = carriedExe[parentPid]
      carriedKernel[pid] = carriedKernel[parentPid]
      kernelMappings[pid] = try MemoryRestore.unmapInherited(
        injector, keeping: byPid[pid].map { ForkInheritance.keptRanges($0.memory) } ?? [],
        knownKernel: carriedKernel[parentPid])
    }
    if let injector = injectors[pid] {
      try NestedNamespaces.enter(
        pid: pid, parent: parentPid, wanted: entry?.nestedNamespaces, images: bundle.tree.nestedNamespaces ?? [],
        injector: injector,
        userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil, layout: layout,
        placement: &placement)
    }
    if let entry, let injector = injectors[pid] {
      if entry.nestedPids?.last == 1 {
        try NestedNamespaces.mountProcs(
          ofInit: pid, rootMounts: bundle.tree.namespaces.mount ? bundle.mounts : nil,
          images: bundle.tree.nestedNamespaces ?? [],
          injector: injector, userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil,
          placement: placement)
      }
      try makeChildTimeNamespace(entry, injector, hostPid: child.tid)
    }
  }

  /// A process whose children got a time namespace of their own makes one before it forks.
  func makeChildTimeNamespace(_ entry: TaskEntryImage, _ injector: Injector, hostPid: Int32) throws {
    guard let child = entry.childTimeNamespace, child != entry.timeNamespace else { return }
    try injector.call(.unshare(Int32(CK_CLONE_NEWTIME)), "unshare(CLONE_NEWTIME) for process \(entry.pid)")
    try TimeNamespaces.write(timeOffsets[child], to: "/proc/\(hostPid)/timens_offsets")
  }

  // MARK: Memory, files, state

  /// Memory of all, then descriptors in two passes over all (shared ones must exist before
  /// anyone takes a copy), then the rest and the final registers of each.
  func restoreMemory() throws {
    // Rebuilding memory is mostly the tasks' own work (mappings) and the page copies: each
    // task runs its mapping batch on another CPU while ckcont prepares the next one's, and
    // comes back to ckcont's CPU for the round trips that follow; the pages are copied
    // into it on both CPUs meanwhile.
    let copier = PageCopier(helperCPUs: otherCPUs)
    defer { copier.stop() }
    var running: (memory: MemoryRestore, pid: Int32)?
    func finishRunning() throws {
      guard let (memory, pid) = running else { return }
      running = nil
      try memory.finish()
      if otherCPUs != nil { try? CPUSet(only: tracerCPU).apply(to: pid) }
    }
    let memoryStarted = monotonicNow()
    for task in order where memories[task.entry.pid] == nil {
      guard let injector = injectors[task.entry.pid] else { continue }
      let memory = makeMemoryRestore(task, injector: injector, copier: copier)
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
    for memory in memories.values { try memory.finishLater(after: nil, copier: copier) }
    try copier.waitAll()
    for memory in memories.values { memory.releaseUserfault() }
    if let ipc = bundle.ipc, bundle.tree.namespaces.ipc { try SysVIPC.removeDetached(ipc, namespaceOf: rootPid) }
    phases.record("memory", since: memoryStarted)
  }

  private func makeMemoryRestore(_ task: LoadedBundle.LoadedTask, injector: Injector, copier: PageCopier)
    -> MemoryRestore
  {
    let keeps = !ForkInheritance.keptRanges(task.memory).isEmpty
    let memory = MemoryRestore(
      image: task.memory, pages: task.pages ?? UnsafeRawBufferPointer(start: nil, count: 0), injector: injector,
      sharedObjects: sharedObjects, copier: copier,
      parent: keeps ? memorySources[task.entry.pid].flatMap { byPid[$0]?.memory } : nil,
      kernelMappings: kernelMappings[task.entry.pid], inheritedExe: carriedExe[task.entry.pid],
      childPages: { [byPid] pid in
        byPid[pid].map { ($0.memory, $0.pages ?? UnsafeRawBufferPointer(start: nil, count: 0)) }
      }, joinedAt: joinedAt(task), forksKeepMappings: !(keepersBySource[task.entry.pid] ?? []).isEmpty,
      parentProtections: memorySources[task.entry.pid].flatMap { memories[$0]?.protectionsAtForks } ?? [:], log: log)
    memory.abi = task.core.abi
    memory.lazy = options.lazy
    memory.containerPid = task.entry.pid
    return memory
  }

  /// The starts of the mappings of `task` that a process forked from it keeps as one with
  /// the mapping before (``ForkInheritance/parentMapping(of:in:)``).
  private func joinedAt(_ task: LoadedBundle.LoadedTask) -> Set<UInt64> {
    let starts = Set(task.memory.vmas.map(\.start))
    var joined: Set<UInt64> = []
    for child in keepersBySource[task.entry.pid] ?? [] {
      for vma in child.memory.vmas where vma.parentPages != nil {
        for start in starts where vma.start < start && start < vma.end { joined.insert(start) }
      }
    }
    return joined
  }

  private func makeTreeCopier() -> PageCopier {
    if let treeCopier { return treeCopier }
    let copier = PageCopier(helperCPUs: otherCPUs)
    treeCopier = copier
    return copier
  }

  /// The whole memory of a process whose children keep its mappings, before it forks them:
  /// they share its pages copy-on-write as they did (``ForkInheritance``).
  private func restoreMemoryFirst(of pid: Int32) throws {
    guard let task = byPid[pid], let injector = injectors[pid] else {
      throw CKError(.failed, "process \(pid) must restore its memory before it forks, but was not created")
    }
    let started = monotonicNow()
    let copier = makeTreeCopier()
    let memory = makeMemoryRestore(task, injector: injector, copier: copier)
    try memory.start()
    try memory.finish()
    try copier.waitAll()
    memory.releaseUserfault()
    memories[pid] = memory
    carriers.insert(pid)
    carriedExe[pid] = task.memory.exe
    // Moved where its image has them (MemoryRestore moves [vvar], [vvar_vclock], [vdso]).
    carriedKernel[pid] = task.memory.vmas.filter { $0.kind == .vdso || $0.kind == .vvar || $0.kind == .vvarVclock }
      .map { VMA(start: $0.start, end: $0.end, permissions: [], path: $0.path) }
    phases.record("memory before forks", since: started)
  }

  func restoreFiles() throws {
    let shared = SharedDescriptions(
      inherited: options.inheritedDescriptors, ownIPCNamespace: bundle.tree.namespaces.ipc,
      inUserNamespace: bundle.tree.namespaces.user)
    if let dumped = bundle.tree.shellJobTerminal, let now = options.ownTerminal() {
      shared.shellJobTerminal = (dumped, now)
    }
    shared.layout = layout
    shared.hostPids = injectors.mapValues(\.pid)
    shared.keptData = bundle.keptData
    let connections = UnixConnections(
      tasks: order, injectors: injectors, userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil,
      log: log)
    try phases.time("files") { try connections.makeAll() }
    shared.connections = connections
    // Terminals before descriptors: a descriptor of /dev/tty needs its session's terminal.
    shared.terminals = try phases.time("terminals") {
      try Terminals.make(for: order, console: bundle.tree.console, rootPid: rootPid, log: log)
    }
    try shared.terminals?.controlSessions(order, console: bundle.tree.console) { injectors[$0] }
    if let root = order.first.flatMap({ injectors[$0.entry.pid] }), !laterBinds.isEmpty {
      try ContainerMounts.bindLater(laterBinds, injector: root, pid: rootPid)
    }
    if let console = bundle.tree.console, let socket = options.consoleSocket {
      try shared.terminals?.handOver(console.index, to: socket)
    }
    var prepared: [(FileRestore, FileRestore.Prepared)] = []
    // A table shared with the parent is the parent's to fill.
    for task in order where task.entry.sharesFilesWithParent != true {
      guard let injector = injectors[task.entry.pid] else { continue }
      let files = FileRestore(
        image: task.files, injector: injector, pid: task.entry.pid, shared: shared, sharedObjects: sharedObjects,
        log: log)
      prepared.append((files, try phases.time("files") { try files.prepare() }))
    }
    for (files, state) in prepared { try phases.time("files") { try files.install(state) } }
    // Once every socket is in place: a datagram's sender may be any process's.
    try phases.time("files") {
      try PendingConnections.restore(order, injectors: injectors)
      try WaitingDatagrams.deliver(order, injectors: injectors, log: log)
      try DatagramConnections.restore(order, injectors: injectors, log: log)
      try PassedInFlight.deliver(order, injectors: injectors)
      try SocketShutdowns.restore(order, injectors: injectors)
      try TCPClosings.restore(order, injectors: injectors)
      try TCPPendingConnections.restore(order, injectors: injectors)
      try SocketOptions.restore(order, injectors: injectors)
    }
    try shared.terminals?.relock(order)
  }

  func restoreTaskState() throws {
    for task in order {
      guard let injector = injectors[task.entry.pid] else { continue }
      guard let inherited else { throw CKError(.failed, "no process was created") }
      let restore = TaskRestore(
        entry: task.entry, core: task.core, injector: injector, inherited: inherited,
        userMaps: bundle.tree.namespaces.user ? bundle.tree.namespaces.userMaps : nil,
        freeDescriptor: Int64((task.files.descriptors.map(\.fd).max() ?? 2) + 1), log: log)
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
  }

  /// The last steps of each task are single stops with nothing to prepare in between: all
  /// are set going on another CPU before ckcont waits for the first, so the stops overlap.
  func finishRegisters() throws {
    let finalStarted = monotonicNow()
    for restore in restores {
      try? otherCPUs?.apply(to: restore.injector.pid)
      try restore.launchFinish()
    }
    var finalStates: [(TaskRestore, TaskRestore.FinalState?)] = []
    for restore in restores { finalStates.append((restore, try restore.completeFinish())) }
    for (restore, state) in finalStates {
      try restore.finishSteps(state)
      log.debug("task \(restore.injector.pid): restored with \(restore.injector.remote.count + 1) remote syscalls")
    }
    phases.record("final registers", since: finalStarted)
  }

  /// Drops the inotify events the restore's own work made (``Inotify/drainRestored``):
  /// the last step before the container runs, once every file is there.
  func drainInotifyEvents() throws {
    for task in order {
      guard let hostPid = injectors[task.entry.pid]?.pid,
        task.files.descriptors.contains(where: { $0.kind == .inotify })
      else { continue }
      let dropped = try Inotify.drainRestored(task.files, hostPid: hostPid)
      if dropped > 0 { log.debug("task \(hostPid): dropped \(dropped) bytes of inotify events the restore made") }
    }
  }

  /// Lets the whole container run; returns when (CLOCK_MONOTONIC).
  func release() throws -> Double {
    let stops = order.compactMap { task in
      task.entry.stopSignal.flatMap { signal in injectors[task.entry.pid].map { (pid: $0.pid, signal: signal) } }
    }
    try phases.time("release") {
      try options.release(threads, cgroup: target.main, cpus: ownCPUs, affinity: affinity, stops: stops)
    }
    return monotonicNow()
  }

  /// Kills every process made, and reaps them, children first: a dying pid-namespace init
  /// waits until every other task of the namespace is reaped, and those we trace are reaped
  /// only by us. Threads first: a traced thread's zombie waits for us too, and its leader is
  /// not reported before it is gone (a wait for the leader alone would never return).
  func killCreated() {
    let tasks = created.reversed().map { pid in
      (pid, ((try? PseudoFile.list("/proc/\(pid)/task")) ?? []).compactMap { Int32($0) }.filter { $0 != pid })
    }
    for pid in created.reversed() { kill(pid, SIGKILL) }
    for (pid, threads) in tasks {
      for tid in threads + [pid] {
        var status: Int32 = 0
        while waitpid(tid, &status, Int32(CK_WALL)) < 0 && errno == EINTR {}
      }
    }
  }
}
