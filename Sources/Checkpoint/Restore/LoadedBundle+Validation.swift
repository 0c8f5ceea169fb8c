import Bundle
import CKShim
import Cgroup
import Glibc
import Linux

/// The checks a bundle's model passes before a restore uses any of it: every count, size,
/// address, path and reference, so that nothing read from an untrusted bundle reaches a
/// system call unchecked.
extension LoadedBundle {
  /// Checks the tree's namespaces: UTS names, user id maps, nested namespaces and their
  /// settings and mounts, time namespaces, and the number of tasks.
  static func validate(_ tree: ProcessTree) throws(CKError) {
    for name in [tree.namespaces.hostname, tree.namespaces.domainname].compactMap({ $0 })
    where name.utf8.count > 64 || name.contains("\0") {
      throw CKError(.badInput, "the bundle is inconsistent: UTS name of \(name.utf8.count) bytes")
    }
    if tree.namespaces.user {
      guard let maps = tree.namespaces.userMaps, tree.namespaces.pid, UserNamespaceMaps.isPlausible(maps.uids),
        UserNamespaceMaps.isPlausible(maps.gids)
      else {
        throw CKError(
          .badInput, "the bundle is inconsistent: a user namespace without plausible id maps or a pid namespace")
      }
    }
    try validateNestedNamespaces(tree)
    try validateTimeNamespaces(tree)
    if let network = tree.namespaces.network {
      guard tree.namespaces.net, tree.namespaces.netExternal != true else {
        throw CKError(.badInput, "the bundle is inconsistent: network devices without a network namespace of its own")
      }
      try NetworkDevices.validate(network)
    }
    guard !tree.tasks.isEmpty, tree.tasks.count <= 32768 else {
      throw CKError(.badInput, "the bundle's tree holds \(tree.tasks.count) tasks")
    }
    if let console = tree.console {
      guard console.isMaster, (0..<(1 << 20)).contains(console.index), console.termios.count == Terminals.termiosSize,
        console.windowSize.count == 4, console.output == nil,
        let session = console.session, tree.tasks.contains(where: { $0.pid == session }),
        (console.foregroundGroup ?? 1) > 0
      else { throw CKError(.badInput, "the bundle is inconsistent: a bad console") }
    }
  }

  /// Nested namespaces: bounded, named plausibly, each task in at most one of each kind, the
  /// sysctls ckcont writes, mounts only in mount namespaces without a root of their own.
  private static func validateNestedNamespaces(_ tree: ProcessTree) throws(CKError) {
    let nested = tree.nestedNamespaces ?? []
    guard nested.count <= 1024,
      nested.allSatisfy({
        [$0.hostname, $0.domainname].allSatisfy { $0.map { $0.utf8.count <= 64 && !$0.contains("\0") } ?? true }
      }),
      tree.tasks.allSatisfy({ task in
        let indices = task.nestedNamespaces ?? []
        return indices.allSatisfy { nested.indices.contains($0) }
          && Set(indices.map { nested[$0].kind }).count == indices.count
      })
    else {
      throw CKError(.badInput, "the bundle is inconsistent: its nested namespaces")
    }
    let settings =
      [("net", tree.namespaces.netSysctls), ("ipc", tree.namespaces.ipcSysctls)]
      + nested.map { ($0.kind.rawValue, $0.sysctls) }
    for (kind, values) in settings {
      guard values.map({ NamespaceSysctls.isValid($0, kind: kind) }) ?? true else {
        throw CKError(.badInput, "the bundle is inconsistent: the settings of a \(kind) namespace")
      }
    }
    for image in nested {
      if let mounts = image.mounts {
        guard image.kind == .mnt, !mounts.hasOwnRoot else {
          throw CKError(.badInput, "the bundle is inconsistent: its nested namespaces")
        }
        try ContainerMounts.validate(mounts)
      }
    }
  }

  /// Time namespaces: bounded offsets, tasks naming ones that exist, the clocks at the dump.
  private static func validateTimeNamespaces(_ tree: ProcessTree) throws(CKError) {
    let count = tree.timeNamespaces?.count ?? 0
    guard count <= 64,
      (tree.timeNamespaces ?? []).allSatisfy({ abs($0.monotonicOffset) < 1 << 61 && abs($0.boottimeOffset) < 1 << 61 }),
      tree.tasks.allSatisfy({
        [$0.timeNamespace, $0.childTimeNamespace].allSatisfy { $0.map { (0..<count).contains($0) } ?? true }
      }),
      count == 0 || tree.clocksAtDump != nil
    else {
      throw CKError(.badInput, "the bundle is inconsistent: its time namespaces")
    }
  }

  /// Checks ipc.json: bounded counts and sizes, unique ids, a contents member of the right
  /// size for every segment.
  static func validate(_ image: SysVIPCImage, members: [String: Int]) throws(CKError) {
    func bad(_ what: String) -> CKError { CKError(.badInput, "the bundle is inconsistent: ipc.json: \(what)") }
    let owners = image.sharedMemory.map(\.owner) + image.semaphoreSets.map(\.owner) + image.messageQueues.map(\.owner)
    guard image.sharedMemory.count <= 32768, image.semaphoreSets.count <= 32768, image.messageQueues.count <= 32768,
      owners.allSatisfy({ $0.id >= 0 && $0.mode <= 0o1777 })
    else { throw bad("too many objects, or a bad id or mode") }
    for ids in [
      image.sharedMemory.map(\.owner.id), image.semaphoreSets.map(\.owner.id), image.messageQueues.map(\.owner.id),
    ]
    where Set(ids).count != ids.count {
      throw bad("an id is repeated")
    }
    for segment in image.sharedMemory {
      let member = SysVIPCImage.contentsMember(ofSegment: segment.owner.id)
      guard segment.size > 0, segment.size <= SysVIPC.maxSegmentSize, members[member] == Int(segment.size) else {
        throw bad("segment \(segment.owner.id) has a bad size or no \(member) of that size")
      }
    }
    guard image.semaphoreSets.allSatisfy({ !$0.values.isEmpty && $0.values.count <= SysVIPC.maxSemaphores }) else {
      throw bad("a semaphore set has a bad size")
    }
    for queue in image.messageQueues {
      guard queue.maxBytes <= 1 << 31, queue.messages.count <= 1 << 16,
        queue.messages.allSatisfy({ $0.type > 0 && $0.text.count <= SysVIPC.maxMessageSize })
      else { throw bad("message queue \(queue.owner.id) is malformed") }
    }
  }

  /// A proc left to a nested pid namespace's init names one that is in the mount namespace
  /// the proc is in: otherwise nobody would mount it.
  static func validateProcInits(_ mounts: MountsImage?, nested: [NestedNamespaceImage], tasks: [TaskEntryImage])
    throws(CKError)
  {
    let byPid = Dictionary(tasks.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
    let namespaces: [(mounts: MountsImage?, index: Int?)] =
      [(mounts, nil)] + nested.indices.map { (nested[$0].mounts, $0) }
    for (image, index) in namespaces {
      for mount in image?.mounts ?? [] {
        guard let pid = mount.pidNamespaceInit else { continue }
        let ownMount = byPid[pid]?.nestedNamespaces?.first { nested.indices.contains($0) && nested[$0].kind == .mnt }
        guard mount.kind == .filesystem, mount.fsType == "proc", let entry = byPid[pid], entry.zombieStatus == nil,
          entry.nestedPids?.last == 1, ownMount == index
        else {
          throw CKError(
            .badInput,
            "the bundle is inconsistent: the proc on \(mount.mountPoint.prefix(200)) names no init of its own")
        }
      }
    }
  }

  /// Checks the cgroup subtrees: known hierarchies, paths that stay below their top, parents
  /// before children, settings ckcont would have saved, processes of the tree.
  static func validate(_ image: CgroupTreeImage, tree: ProcessTree) throws(CKError) {
    func bad(_ what: String) -> CKError { CKError(.badInput, "the bundle is inconsistent: cgroups: \(what)") }
    func isSafe(_ path: String) -> Bool {
      path.utf8.count < 4096 && !path.contains("\0")
        && !path.split(separator: "/", omittingEmptySubsequences: false).contains { $0 == ".." || $0 == "." }
    }
    let pids = Set(tree.tasks.map(\.pid))
    guard let first = image.hierarchies.first, first.version == tree.cgroupVersion, image.hierarchies.count <= 16 else {
      throw bad("no hierarchy of version \(tree.cgroupVersion) first")
    }
    let keys = image.hierarchies.map { $0.version + ":" + $0.controllers.sorted().joined(separator: ",") }
    guard Set(keys).count == keys.count else { throw bad("a hierarchy listed twice") }
    for hierarchy in image.hierarchies {
      guard ["v1", "v2"].contains(hierarchy.version), hierarchy.controllers.count <= 16,
        hierarchy.controllers.allSatisfy({
          !$0.isEmpty && $0.allSatisfy { $0.isLetter || $0.isNumber || $0 == "_" || $0 == "=" }
        })
      else { throw bad("unknown hierarchy") }
      guard hierarchy.root.hasPrefix("/"), hierarchy.root == "/" || isSafe(String(hierarchy.root.dropFirst())) else {
        throw bad("bad root \(hierarchy.root)")
      }
      guard hierarchy.groups.count <= 65536, hierarchy.groups.first?.path == "." else { throw bad("bad subtree") }
      var seen: Set<String> = []
      for group in hierarchy.groups {
        let parent = group.path.split(separator: "/").dropLast().joined(separator: "/")
        guard
          group.path == "."
            || (!group.path.hasPrefix("/") && isSafe(group.path) && seen.contains(parent.isEmpty ? "." : parent)),
          seen.insert(group.path).inserted
        else { throw bad("bad cgroup path \(group.path)") }
        guard group.settings.count <= 64,
          group.settings.allSatisfy({
            Cgroup.isSavedSetting($0.name) && $0.value.utf8.count < 4096 && !$0.value.contains("\n")
          })
        else { throw bad("\(group.path) has settings ckcont does not write") }
        guard group.processes.allSatisfy(pids.contains) else { throw bad("\(group.path) lists unknown processes") }
      }
    }
  }

  /// Checks every count, size, address and reference of one task before it is used.
  static func validate(_ task: LoadedTask) throws(CKError) {
    let pid = task.entry.pid
    func bad(_ what: String) -> CKError { CKError(.badInput, "the bundle is inconsistent: task \(pid): \(what)") }
    guard pid > 0, pid <= 4_194_304 else { throw bad("pid out of range") }
    guard task.entry.namespacePids.count <= 32, task.entry.namespacePids.allSatisfy({ $0 > 0 }) else {
      throw bad("bad namespace pids")
    }
    guard !task.core.threads.isEmpty, task.core.threads.count == task.entry.threads.count,
      task.core.threads.count <= 65536
    else { throw bad("thread count does not match the tree") }
    for thread in task.core.threads { try validate(thread, abi: task.core.abi, bad: bad) }
    try validateProcessCore(task, bad: bad)
    try validateMemory(task, bad: bad)
    try validateSeccomp(task.core, bad: bad)
    try validateFiles(task.files, bad: bad)
    guard task.core.cwd.hasPrefix("/"), task.core.cwd.utf8.count < 4096 else { throw bad("bad working directory") }
    guard task.core.root.hasPrefix("/"), task.core.root.utf8.count < 4096, !task.core.root.contains("\0") else {
      throw bad("bad root")
    }
  }

  /// One thread's xstate, name, CPUs, scheduling, I/O priority and pending signals.
  private static func validate(_ thread: ThreadCore, abi: TaskABI?, bad: (String) -> CKError) throws(CKError) {
    // The code segment says which code a thread resumes in; only an i386 task has TLS entries.
    let codeSegment = abi == .i386 ? UInt64(CK_I386_CODE_SEGMENT) : RemoteSyscall.codeSegment64
    guard thread.registers.cs == codeSegment else { throw bad("a thread's code segment does not match its ABI") }
    guard (thread.tlsEntries == nil) == (abi == nil),
      (thread.tlsEntries ?? []).allSatisfy({ TLSEntry.entries.contains($0.entry) }),
      Set((thread.tlsEntries ?? []).map(\.entry)).count == (thread.tlsEntries ?? []).count
    else { throw bad("a thread's TLS entries are malformed") }
    guard thread.xstate.count >= 576, thread.xstate.count <= 1 << 16 else {
      throw bad("xstate of \(thread.xstate.count) bytes")
    }
    guard thread.name.map({ $0.utf8.count < 64 && !$0.contains("\0") }) ?? true else {
      throw bad("a thread name is malformed")
    }
    guard (thread.cpus ?? []).count <= 1024 else { throw bad("a thread's CPUs are too many") }
    guard thread.scheduling.map(Self.plausible) ?? true else { throw bad("bad scheduling of a thread") }
    guard (thread.ioPriority ?? 0) < 1 << 16, (thread.ioPriority ?? 0) >> 13 <= 3 else {
      throw bad("bad I/O priority of a thread")
    }
    guard thread.pendingSignals.count <= 1 << 16, thread.pendingSignals.allSatisfy({ $0.count == 128 }) else {
      throw bad("malformed pending signals")
    }
  }

  /// The process-wide part of the core: signals, scheduling, limits and timers.
  private static func validateProcessCore(_ task: LoadedTask, bad: (String) -> CKError) throws(CKError) {
    let core = task.core
    guard core.sharedPendingSignals.count <= 1 << 16, core.sharedPendingSignals.allSatisfy({ $0.count == 128 }) else {
      throw bad("malformed pending signals")
    }
    guard core.signalActions.allSatisfy({ (1...64).contains($0.signal) }) else {
      throw bad("signal number out of range")
    }
    guard core.scheduling.map(Self.plausible) ?? true else { throw bad("bad scheduling") }
    guard (core.oomScoreAdjust ?? 0).magnitude <= 1000 else { throw bad("oom_score_adj out of range") }
    guard core.resourceLimits.allSatisfy({ (0...15).contains($0.resource) }) else { throw bad("unknown rlimit") }
    guard core.itimers.allSatisfy({ (0...2).contains($0.which) }) else { throw bad("unknown itimer") }
    // A timer names its thread as the process itself sees it.
    let threadIDs = Set(task.entry.ownThreads)
    guard (core.posixTimers ?? []).count <= 64,
      (core.posixTimers ?? []).allSatisfy({
        $0.id >= 0 && [0, 1, 4].contains($0.notify) && (0...64).contains($0.signal) && $0.intervalNanoseconds >= 0
          && $0.valueNanoseconds >= 0 && ($0.notify != 4 || $0.targetThread.map(threadIDs.contains) == true)
      })
    else { throw bad("malformed POSIX timers") }
  }

  /// The mappings in order without overlaps, their page runs matching the pages member,
  /// auxv and executable.
  private static func validateMemory(_ task: LoadedTask, bad: (String) -> CKError) throws(CKError) {
    var previousEnd: UInt64 = 0
    var expectedOffset: UInt64 = 0
    for vma in task.memory.vmas {
      // Put into words only for an error: formatting it for each of 10,000 mappings cost
      // more than checking them.
      let name = { "mapping \(hex(vma.start))-\(hex(vma.end))" }
      guard vma.start % pageSize == 0, vma.end % pageSize == 0, vma.start < vma.end, vma.start >= previousEnd else {
        throw bad("\(name()) is misaligned, empty or overlaps the previous one")
      }
      guard vma.pagesOffset == expectedOffset else { throw bad("\(name()) has its pages at the wrong offset") }
      var runEnd = vma.start
      for run in vma.pages {
        guard run.start % pageSize == 0, run.end % pageSize == 0, run.start < run.end, run.start >= runEnd,
          run.end <= vma.end
        else {
          throw bad("\(name()) has a page run outside it")
        }
        runEnd = run.end
        expectedOffset += run.size
      }
      try validate(vma, name: name, bad: bad)
      previousEnd = vma.end
    }
    guard expectedOffset == task.memory.pagesSize, UInt64(task.pagesSize) == task.memory.pagesSize else {
      throw bad("the page runs (\(expectedOffset) bytes) do not match the pages member (\(task.pagesSize) bytes)")
    }
    guard task.memory.auxv.count <= 512, task.memory.auxv.count % 2 == 0, task.memory.exe.hasPrefix("/") else {
      throw bad("bad auxv or executable")
    }
  }

  private static let pageSize: UInt64 = 4096

  /// One mapping's place, path, guard regions and what its kind requires.
  private static func validate(_ vma: VMAImage, name: () -> String, bad: (String) -> CKError) throws(CKError) {
    guard vma.kind == .vsyscall || vma.end <= 0x7fff_ffff_f000 else { throw bad("\(name()) is outside user space") }
    guard vma.path.utf8.count < 4096, !vma.path.utf8.contains(0) else { throw bad("\(name()) has a bad path") }
    guard vma.kind != .file || vma.path.hasPrefix("/") else { throw bad("\(name()) has a relative file path") }
    guard !(vma.isSpecial && !vma.pages.isEmpty) else { throw bad("\(name()) is a kernel mapping with pages") }
    guard vma.droppable != true || !vma.shared && vma.kind == .anonymous else {
      throw bad("\(name()) is droppable but not private anonymous memory")
    }
    var guardEnd = vma.start
    for run in vma.guards ?? [] {
      // Guard pages hold nothing: no saved page lies in them.
      guard run.start % pageSize == 0, run.end % pageSize == 0, run.start < run.end, run.start >= guardEnd,
        run.end <= vma.end,
        !vma.pages.contains(where: { $0.start < run.end && run.start < $0.end })
      else { throw bad("\(name()) has a guard region outside it or over saved pages") }
      guardEnd = run.end
    }
    if let size = vma.hugePageSize {
      guard [UInt64(2 << 20), UInt64(1 << 30)].contains(size), vma.kind == .anonymous, !vma.shared,
        vma.start % size == 0, vma.end % size == 0, vma.precopiedPages == nil
      else { throw bad("\(name()) is in huge pages of a size or place the kernel does not make") }
    }
    var precopiedEnd = vma.start
    for run in vma.precopiedPages ?? [] {
      // Sent ahead into private anonymous memory only, none where a saved or a parent's
      // page lies.
      guard vma.isPrivateAnonymous, run.start % pageSize == 0,
        run.end % pageSize == 0, run.start < run.end, run.start >= precopiedEnd, run.end <= vma.end,
        !vma.pages.contains(where: { $0.start < run.end && run.start < $0.end }),
        !(vma.parentPages ?? []).contains(where: { $0.start < run.end && run.start < $0.end })
      else { throw bad("\(name()) has pages sent ahead outside it, over saved pages, or not in its memory") }
      precopiedEnd = run.end
    }
    var lazyEnd = vma.start
    for run in vma.lazyPages ?? [] {
      // Fetched at first touch (post-copy) into writable private anonymous memory whose
      // other pages are its own (saved, the first among them), none where another page lies.
      guard vma.isPrivateAnonymous, vma.protection & PROT_WRITE != 0, vma.hugePageSize == nil,
        vma.parentPages == nil, vma.laterPages == nil, vma.precopiedPages == nil, !vma.pages.isEmpty,
        run.start % pageSize == 0, run.end % pageSize == 0, run.start < run.end, run.start >= lazyEnd,
        run.end <= vma.end, !vma.pages.contains(where: { $0.start < run.end && run.start < $0.end })
      else { throw bad("\(name()) has pages to fetch lazily outside it, over saved pages, or not in its memory") }
      lazyEnd = run.end
    }
    guard (vma.parentPages == nil && vma.laterPages == nil) || ForkInheritance.inheritable(vma) else {
      throw bad("\(name()) is kept from the parent but is not a private mapping of memory or a file")
    }
    switch vma.kind {
    case .sysvShm:
      guard vma.shared, vma.offset == 0, vma.pages.isEmpty, let id = vma.sharedObject, id < 1 << 31 else {
        throw bad("\(name()) is a malformed SysV attachment")
      }
    case .memfd:
      // A mapping may reach past the file's end (it grows later, or shrank since): the
      // pages beyond raise SIGBUS as they did, the object is made at its own size.
      guard vma.sharedObject != nil, let size = vma.objectSize, size <= 1 << 46, vma.offset < 1 << 46,
        vma.offset % pageSize == 0, vma.path.hasPrefix("/memfd:")
      else { throw bad("\(name()) is a malformed memfd mapping") }
    case .deletedFile:
      guard vma.sharedObject != nil, vma.objectDevice != nil, let size = vma.objectSize, size <= 1 << 46,
        vma.offset % pageSize == 0, vma.path.hasPrefix("/"), !vma.path.split(separator: "/").contains(".."),
        (vma.objectMode ?? 0) <= 0o7777
      else { throw bad("\(name()) is a malformed mapping of a deleted file") }
    default:
      break
    }
  }

  /// Each thread's chain of seccomp filters: the process's, then its own.
  private static func validateSeccomp(_ core: TaskCore, bad: (String) -> CKError) throws(CKError) {
    for thread in core.threads {
      let filters = (core.seccompFilters ?? []) + (thread.seccompFilters ?? [])
      // The restore puts each program into the task's 32 KiB data area, beside its header.
      guard filters.count <= SeccompFilterImage.maxRestorableFilters,
        filters.allSatisfy({
          !$0.program.isEmpty && $0.program.count % 8 == 0
            && $0.program.count / 8 <= SeccompFilterImage.maxRestorableInstructions
            && $0.flags & ~SeccompFilterImage.knownFlags == 0
        })
      else { throw bad("malformed or oversized seccomp filters") }
    }
  }

  /// The descriptor table: unique fds in range, owners, locks, and each kind's own checks.
  private static func validateFiles(_ files: FileTableImage, bad: (String) -> CKError) throws(CKError) {
    var fds = Set<Int32>()
    let pipes = Set(files.pipes.map(\.inode))
    for descriptor in files.descriptors {
      guard descriptor.fd >= 0, descriptor.fd < 1 << 20, fds.insert(descriptor.fd).inserted else {
        throw bad("fd \(descriptor.fd) is out of range or repeated")
      }
      if let owner = descriptor.asyncOwner {
        guard (0...2).contains(owner.type), owner.id >= 0, (0...64).contains(owner.signal) else {
          throw bad("fd \(descriptor.fd) has a bad owner for signal-driven I/O")
        }
      }
      guard (descriptor.locks ?? []).count <= 1024,
        (descriptor.locks ?? []).allSatisfy({ $0.start >= 0 && $0.length >= 0 })
      else {
        throw bad("fd \(descriptor.fd) has bad locks")
      }
      if let twin = descriptor.sharesWith {
        guard fds.contains(twin), twin != descriptor.fd else {
          throw bad("fd \(descriptor.fd) duplicates an unknown fd")
        }
        continue
      }
      try DescriptorKinds.handler(for: descriptor.kind).validate(descriptor, pipes: pipes, bad: bad)
    }
    try Pipes.validate(files.pipes, bad: bad)
    try Epoll.validateTargets(files.descriptors, fds: fds, bad: bad)
  }

  /// A nice value, policy (not SCHED_DEADLINE) and realtime priority the kernel would take.
  static func plausible(_ scheduling: SchedulingImage) -> Bool {
    (-20...19).contains(scheduling.nice) && [0, 1, 2, 3, 5].contains(scheduling.policy)
      && scheduling.realtimePriority <= 99
      && (scheduling.policy == 1 || scheduling.policy == 2) == (scheduling.realtimePriority > 0)
  }
}
