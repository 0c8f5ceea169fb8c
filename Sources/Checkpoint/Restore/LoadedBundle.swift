import Bundle
import Cgroup
import Foundation
import Glibc
import Linux

/// A bundle read completely and verified, with its model decoded and checked for
/// consistency, before restore creates anything. Page contents sit in anonymous memory.
final class LoadedBundle {
  let manifest: Manifest
  let tree: ProcessTree
  /// The cgroup subtrees and their settings (for a bundle without cgroups.json, the dumped
  /// subtree without settings, as the tasks' places describe it).
  let cgroups: CgroupTreeImage
  let tasks: [LoadedTask]
  /// Dead children waiting for their parent's wait(): recreated and made to exit again.
  let zombies: [TaskEntryImage]
  /// The SysV objects of the container's IPC namespace, and each segment's bytes by id
  /// (empty when loaded without page data).
  let ipc: SysVIPCImage?
  let segments: [Int32: UnsafeRawBufferPointer]
  /// The mounts the container added to its own mount namespace.
  let mounts: MountsImage?
  /// The contents of each memfd and deleted file mapped privately, by member name.
  let privateObjects: [String: UnsafeRawBufferPointer]

  struct LoadedTask {
    var entry: TaskEntryImage
    var core: TaskCore
    var memory: MemoryImage
    var files: FileTableImage
    /// The page data (nil when loaded without pages), valid as long as the bundle.
    var pages: UnsafeRawBufferPointer?
    /// The size of the pages member, also when its data was not kept.
    var pagesSize: Int
  }

  /// What to do with page data once its checksum is verified.
  enum PageHandling {
    /// Drop it: inspect needs none.
    case drop
    /// Keep a copy in anonymous memory: a stream (a pipe) can be read only once.
    case copy
    /// Point into the source, a mapped file: no copy at all.
    case inPlace
  }

  /// Whatever holds the page data: anonymous buffers or the file's mapping.
  private var pageStorage: [AnyObject] = []

  /// A bundle's members as read: the JSON ones whole, the raw ones by size (and data where
  /// it is kept).
  struct Members {
    var manifest: Manifest
    var json: [String: [UInt8]]
    var pages: [String: (data: UnsafeRawBufferPointer?, size: Int)]
    /// Whatever holds the page data.
    var storage: [AnyObject] = []
  }

  /// Reads `source` to its end (checksums are verified there) and validates the model.
  convenience init(source: any ByteSource, pages handling: PageHandling = .copy, log: (String) -> Void) throws {
    try self.init(Self.read(source, pages: handling, log: log), log: log)
  }

  /// Reads every member of `source`, verifying checksums.
  static func read(_ source: any ByteSource, pages handling: PageHandling, log: (String) -> Void) throws -> Members {
    let started = monotonicNow()
    let reader: BundleReader
    do {
      reader = try BundleReader(source: source)
    } catch {
      throw CKError(.badInput, "not a usable bundle: \(error)")
    }
    var json: [String: [UInt8]] = [:]
    var pages: [String: (data: UnsafeRawBufferPointer?, size: Int)] = [:]
    var offsets: [String: Int] = [:]
    var storage: [AnyObject] = []
    do {
      while let member = try reader.nextMember() {
        if member.name.hasSuffix(".json") {
          json[member.name] = try reader.readAll()
        } else if Self.isRawMember(member.name), case .copy = handling {
          let buffer = try PageBuffer(size: member.size)
          storage.append(buffer)
          var offset = 0
          try reader.forEachChunk { chunk in
            guard offset + chunk.count <= buffer.size else {
              throw BundleError("member \(member.name) is longer than listed")
            }
            buffer.pointer.advanced(by: offset).copyMemory(from: chunk.baseAddress!, byteCount: chunk.count)
            offset += chunk.count
          }
          pages[member.name] = (UnsafeRawBufferPointer(start: buffer.pointer, count: buffer.size), member.size)
        } else if Self.isRawMember(member.name) {
          offsets[member.name] = reader.dataOffset
          pages[member.name] = (nil, member.size)
        } else {
          throw BundleError("unknown member \(member.name)")
        }
      }
    } catch let error as BundleError {
      throw CKError(.badInput, "the bundle is damaged: \(error)", hint: "nothing was restored; use an intact copy")
    }
    if case .inPlace = handling, let mapped = source as? any MappedByteSource {
      storage.append(mapped)
      for (name, offset) in offsets {
        guard let size = pages[name]?.size, offset + size <= mapped.bytes.count else { continue }
        pages[name]?.data = UnsafeRawBufferPointer(rebasing: mapped.bytes[offset..<offset + size])
      }
    }
    log("read and verified the bundle in \(Int((monotonicNow() - started) * 1000)) ms")
    return Members(manifest: reader.manifest, json: json, pages: pages, storage: storage)
  }

  /// Decodes and validates the model of `members`: everything a restore checks before it
  /// makes anything (the dump runs it too, on what it is about to write).
  init(_ members: Members, log: (String) -> Void) throws {
    manifest = members.manifest
    pageStorage = members.storage
    let json = members.json
    let pages = members.pages
    let decoder = JSONDecoder()
    func decode<T: Decodable>(_ type: T.Type, _ name: String) throws -> T {
      guard let bytes = json[name] else { throw CKError(.badInput, "the bundle lacks \(name)") }
      do {
        return try decoder.decode(type, from: Data(bytes))
      } catch {
        throw CKError(.badInput, "the bundle's \(name) is malformed: \(error)")
      }
    }
    tree = try decode(ProcessTree.self, "tree.json")
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
    let timeNamespaceCount = tree.timeNamespaces?.count ?? 0
    guard timeNamespaceCount <= 64,
      (tree.timeNamespaces ?? []).allSatisfy({ abs($0.monotonicOffset) < 1 << 61 && abs($0.boottimeOffset) < 1 << 61 }),
      tree.tasks.allSatisfy({
        [$0.timeNamespace, $0.childTimeNamespace].allSatisfy {
          $0.map { (0..<timeNamespaceCount).contains($0) } ?? true
        }
      }),
      timeNamespaceCount == 0 || tree.clocksAtDump != nil
    else {
      throw CKError(.badInput, "the bundle is inconsistent: its time namespaces")
    }
    guard !tree.tasks.isEmpty, tree.tasks.count <= 32768 else {
      throw CKError(.badInput, "the bundle's tree holds \(tree.tasks.count) tasks")
    }
    if json["cgroups.json"] != nil {
      cgroups = try decode(CgroupTreeImage.self, "cgroups.json")
    } else {
      cgroups = CgroupTreeImage(hierarchies: [
        CgroupHierarchyImage(
          version: tree.cgroupVersion, controllers: [], root: Self.hierarchyPath(of: tree.cgroup),
          groups: [CgroupGroupImage(path: ".", settings: [])])
      ])
    }
    try Self.validate(cgroups, tree: tree)
    if json["mounts.json"] != nil {
      let image = try decode(MountsImage.self, "mounts.json")
      guard tree.namespaces.mount else {
        throw CKError(.badInput, "the bundle is inconsistent: mounts without a mount namespace of the container's own")
      }
      try ContainerMounts.validate(image)
      mounts = image
    } else {
      mounts = nil
    }
    try Self.validateProcInits(mounts, nested: tree.nestedNamespaces ?? [], tasks: tree.tasks)
    if json["ipc.json"] != nil {
      let image = try decode(SysVIPCImage.self, "ipc.json")
      guard tree.namespaces.ipc else {
        throw CKError(
          .badInput, "the bundle is inconsistent: SysV objects without an IPC namespace of the container's own")
      }
      try Self.validate(image, members: pages.mapValues(\.size))
      ipc = image
      var contents: [Int32: UnsafeRawBufferPointer] = [:]
      for segment in image.sharedMemory {
        contents[segment.owner.id] = pages[SysVIPCImage.contentsMember(ofSegment: segment.owner.id)]?.data
      }
      segments = contents
    } else {
      ipc = nil
      segments = [:]
    }
    var loaded: [LoadedTask] = []
    let livePids = Set(tree.tasks.filter { $0.zombieStatus == nil }.map(\.pid))
    zombies = try tree.tasks.filter { $0.zombieStatus != nil }.map { entry throws(CKError) in
      guard entry.pid > 1, entry.pid <= 4_194_304, livePids.contains(entry.ppid), entry.threads.isEmpty,
        let status = entry.zombieStatus, (0...0xffff).contains(status)
      else { throw CKError(.badInput, "the bundle is inconsistent: zombie \(entry.pid)") }
      return entry
    }
    try PidNamespaces.Layout(tree.tasks).validate()
    // Decoding is CPU work independent per task: spread over the cores (each iteration
    // writes only its own slot), then checked in order.
    let decoding = monotonicNow()
    let entries = tree.tasks.filter { $0.zombieStatus == nil }
    let members = json
    // A newer minor version may add fields; in this version's own bundles none is unknown.
    let strict = manifest.formatVersion.minor <= BundleFormat.minorVersion
    let decoded = entries.concurrentMap { entry throws(CKError) in
      func decode<T: Decodable>(_ type: T.Type, _ name: String) throws(CKError) -> T {
        guard let bytes = members[name] else { throw CKError(.badInput, "the bundle lacks \(name)") }
        do {
          return try JSONDecoder().decode(type, from: Data(bytes))
        } catch {
          throw CKError(.badInput, "the bundle's \(name) is malformed: \(error)")
        }
      }
      // The two big members by hand (see MemoryImage.decodeJSON), the rest by JSONDecoder.
      func decodeByHand<T>(_ name: String, _ decode: ([UInt8], String) throws(BundleError) -> T) throws(CKError) -> T {
        guard let bytes = members[name] else { throw CKError(.badInput, "the bundle lacks \(name)") }
        do {
          return try decode(bytes, name)
        } catch {
          throw CKError(.badInput, "the bundle's \(error)")
        }
      }
      return (
        try decodeByHand(entry.coreMember) { bytes, name throws(BundleError) in
          try TaskCore.decodeJSON(bytes, member: name, strict: strict)
        },
        try decodeByHand(entry.mmMember) { bytes, name throws(BundleError) in
          try MemoryImage.decodeJSON(bytes, member: name, strict: strict)
        },
        try decode(FileTableImage.self, entry.filesMember)
      )
    }
    for (entry, result) in zip(entries, decoded) {
      guard let member = pages[entry.pagesMember] else {
        throw CKError(.badInput, "the bundle lacks \(entry.pagesMember)")
      }
      let (core, memory, files) = try result.get()
      let task = LoadedTask(
        entry: entry, core: core, memory: memory, files: files, pages: member.data, pagesSize: member.size)
      try Self.validate(task)
      loaded.append(task)
    }
    var objects: [String: UnsafeRawBufferPointer] = [:]
    for task in loaded {
      for vma in task.memory.vmas {
        guard let name = vma.contentsMember else { continue }
        guard let member = pages[name], UInt64(member.size) == vma.objectSize,
          member.size <= MemoryCapture.maxPrivateObjectSize
        else {
          throw CKError(
            .badInput,
            "the bundle is inconsistent: task \(task.entry.pid) maps \(vma.path) privately at \(hex(vma.start)) without its contents"
          )
        }
        objects[name] = member.data ?? UnsafeRawBufferPointer(start: nil, count: 0)
      }
      for vma in task.memory.vmas where vma.kind == .sysvShm {
        guard let segment = ipc?.sharedMemory.first(where: { UInt64($0.owner.id) == vma.sharedObject }),
          vma.size == (segment.size + 4095) & ~4095
        else {
          throw CKError(
            .badInput,
            "the bundle is inconsistent: task \(task.entry.pid) attaches SysV segment \(vma.sharedObject ?? 0), which ipc.json does not hold at that size"
          )
        }
      }
    }
    // Descriptors in flight name descriptors of the container's processes: they must exist.
    let held = Set(
      loaded.flatMap { task in task.files.descriptors.map { DescriptorReference(pid: task.entry.pid, fd: $0.fd) } })
    for task in loaded {
      for descriptor in task.files.descriptors {
        for passed in (descriptor.socket?.passed ?? []).flatMap(\.descriptors) {
          let reference =
            passed.pid != 0 ? passed : DescriptorReference(pid: passed.throughPid ?? 0, fd: passed.throughFd ?? 0)
          guard reference.pid != 0, !held.contains(reference) else { continue }
          throw CKError(
            .badInput,
            "the bundle is inconsistent: task \(task.entry.pid) fd \(descriptor.fd) holds in flight fd \(reference.fd) of process \(reference.pid), which the bundle does not hold"
          )
        }
      }
    }
    tasks = loaded
    privateObjects = objects
    log("decoded the model of \(loaded.count) processes in \(Int((monotonicNow() - decoding) * 1000)) ms")
  }

  /// The members of raw bytes: each process's pages and each SysV segment's contents.
  static func isRawMember(_ name: String) -> Bool {
    name.hasSuffix("/pages.img") || (name.hasPrefix("ipc/shm-") && name.hasSuffix(".img"))
      || ((name.hasPrefix("memfd/") || name.hasPrefix("deleted/")) && name.hasSuffix(".img"))
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

  /// `/web` for `/sys/fs/cgroup/unified/web` (a bundle from before cgroups.json).
  static func hierarchyPath(of path: String) -> String {
    guard let hierarchy = try? CgroupMounts.current().hierarchy(containing: path), path != hierarchy.mountPoint else {
      return "/"
    }
    return String(path.dropFirst(hierarchy.mountPoint.count))
  }

  /// Checks the cgroup subtrees: known hierarchies, paths that stay below their top, parents
  /// before children, settings ckcont would have saved, processes of the tree.
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
    for thread in task.core.threads {
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
    guard task.core.sharedPendingSignals.count <= 1 << 16,
      task.core.sharedPendingSignals.allSatisfy({ $0.count == 128 })
    else {
      throw bad("malformed pending signals")
    }
    guard task.core.signalActions.allSatisfy({ (1...64).contains($0.signal) }) else {
      throw bad("signal number out of range")
    }
    guard task.core.scheduling.map(Self.plausible) ?? true else { throw bad("bad scheduling") }
    guard (task.core.oomScoreAdjust ?? 0).magnitude <= 1000 else { throw bad("oom_score_adj out of range") }
    guard task.core.resourceLimits.allSatisfy({ (0...15).contains($0.resource) }) else { throw bad("unknown rlimit") }
    guard task.core.itimers.allSatisfy({ (0...2).contains($0.which) }) else { throw bad("unknown itimer") }
    // A timer names its thread as the process itself sees it.
    let threadIDs = Set(task.entry.ownThreads)
    guard (task.core.posixTimers ?? []).count <= 64,
      (task.core.posixTimers ?? []).allSatisfy({
        $0.id >= 0 && [0, 1, 4].contains($0.notify) && (0...64).contains($0.signal) && $0.intervalNanoseconds >= 0
          && $0.valueNanoseconds >= 0 && ($0.notify != 4 || $0.targetThread.map(threadIDs.contains) == true)
      })
    else { throw bad("malformed POSIX timers") }
    let page: UInt64 = 4096
    var previousEnd: UInt64 = 0
    var expectedOffset: UInt64 = 0
    for vma in task.memory.vmas {
      let name = "mapping \(hex(vma.start))-\(hex(vma.end))"
      guard vma.start % page == 0, vma.end % page == 0, vma.start < vma.end, vma.start >= previousEnd else {
        throw bad("\(name) is misaligned, empty or overlaps the previous one")
      }
      guard vma.kind == .vsyscall || vma.end <= 0x7fff_ffff_f000 else { throw bad("\(name) is outside user space") }
      guard vma.path.utf8.count < 4096, !vma.path.contains("\0") else { throw bad("\(name) has a bad path") }
      guard vma.kind != .file || vma.path.hasPrefix("/") else { throw bad("\(name) has a relative file path") }
      guard vma.pagesOffset == expectedOffset else { throw bad("\(name) has its pages at the wrong offset") }
      var runEnd = vma.start
      for run in vma.pages {
        guard run.start % page == 0, run.end % page == 0, run.start < run.end, run.start >= runEnd, run.end <= vma.end
        else {
          throw bad("\(name) has a page run outside it")
        }
        runEnd = run.end
        expectedOffset += run.size
      }
      guard !(vma.isSpecial && !vma.pages.isEmpty) else { throw bad("\(name) is a kernel mapping with pages") }
      guard vma.droppable != true || !vma.shared && vma.kind == .anonymous else {
        throw bad("\(name) is droppable but not private anonymous memory")
      }
      var guardEnd = vma.start
      for run in vma.guards ?? [] {
        // Guard pages hold nothing: no saved page lies in them.
        guard run.start % page == 0, run.end % page == 0, run.start < run.end, run.start >= guardEnd,
          run.end <= vma.end,
          !vma.pages.contains(where: { $0.start < run.end && run.start < $0.end })
        else { throw bad("\(name) has a guard region outside it or over saved pages") }
        guardEnd = run.end
      }
      guard (vma.parentPages == nil && vma.laterPages == nil) || ForkInheritance.inheritable(vma) else {
        throw bad("\(name) is kept from the parent but is not a private mapping of memory or a file")
      }
      if vma.kind == .sysvShm {
        guard vma.shared, vma.offset == 0, vma.pages.isEmpty, let id = vma.sharedObject, id < 1 << 31 else {
          throw bad("\(name) is a malformed SysV attachment")
        }
      }
      if vma.kind == .memfd {
        // A mapping may reach past the file's end (it grows later, or shrank since): the
        // pages beyond raise SIGBUS as they did, the object is made at its own size.
        guard vma.sharedObject != nil, let size = vma.objectSize, size <= 1 << 46, vma.offset < 1 << 46,
          vma.offset % page == 0, vma.path.hasPrefix("/memfd:")
        else { throw bad("\(name) is a malformed memfd mapping") }
      }
      if vma.kind == .deletedFile {
        guard vma.sharedObject != nil, vma.objectDevice != nil, let size = vma.objectSize, size <= 1 << 46,
          vma.offset % page == 0, vma.path.hasPrefix("/"), !vma.path.split(separator: "/").contains(".."),
          (vma.objectMode ?? 0) <= 0o7777
        else { throw bad("\(name) is a malformed mapping of a deleted file") }
      }
      previousEnd = vma.end
    }
    guard expectedOffset == task.memory.pagesSize, UInt64(task.pagesSize) == task.memory.pagesSize else {
      throw bad("the page runs (\(expectedOffset) bytes) do not match the pages member (\(task.pagesSize) bytes)")
    }
    // Each thread's chain: the process's filters, then its own.
    for thread in task.core.threads {
      let filters = (task.core.seccompFilters ?? []) + (thread.seccompFilters ?? [])
      // The restore puts each program into the task's 32 KiB data area, beside its header.
      guard filters.count <= SeccompFilterImage.maxRestorableFilters,
        filters.allSatisfy({
          !$0.program.isEmpty && $0.program.count % 8 == 0
            && $0.program.count / 8 <= SeccompFilterImage.maxRestorableInstructions
            && $0.flags & ~SeccompFilterImage.knownFlags == 0
        })
      else { throw bad("malformed or oversized seccomp filters") }
    }
    guard task.memory.auxv.count <= 512, task.memory.auxv.count % 2 == 0, task.memory.exe.hasPrefix("/") else {
      throw bad("bad auxv or executable")
    }
    var fds = Set<Int32>()
    let pipes = Set(task.files.pipes.map(\.inode))
    for descriptor in task.files.descriptors {
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
    try Pipes.validate(task.files.pipes, bad: bad)
    try Epoll.validateTargets(task.files.descriptors, fds: fds, bad: bad)
    guard task.core.cwd.hasPrefix("/"), task.core.cwd.utf8.count < 4096 else { throw bad("bad working directory") }
    guard task.core.root.hasPrefix("/"), task.core.root.utf8.count < 4096, !task.core.root.contains("\0") else {
      throw bad("bad root")
    }
  }
}

/// Page data in anonymous memory, unmapped when released.
final class PageBuffer {
  let pointer: UnsafeMutableRawPointer
  let size: Int

  init(size: Int) throws {
    self.size = size
    guard size > 0 else {
      pointer = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
      return
    }
    guard let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
      mapped != MAP_FAILED
    else { throw CKError(.failed, "cannot allocate \(size >> 20) MiB for the bundle's pages") }
    pointer = mapped
  }

  deinit {
    if size > 0 { munmap(pointer, size) } else { pointer.deallocate() }
  }
}

extension LoadedBundle {
  /// A nice value, policy (not SCHED_DEADLINE) and realtime priority the kernel would take.
  static func plausible(_ scheduling: SchedulingImage) -> Bool {
    (-20...19).contains(scheduling.nice) && [0, 1, 2, 3, 5].contains(scheduling.policy)
      && scheduling.realtimePriority <= 99
      && (scheduling.policy == 1 || scheduling.policy == 2) == (scheduling.realtimePriority > 0)
  }
}
