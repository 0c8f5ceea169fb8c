import Bundle
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

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
  /// Who signed the bundle (its signature checked); nil: unsigned.
  let signer: BundlePublicKey?
  /// The contents of each memfd and deleted file mapped privately, by member name.
  let privateObjects: [String: UnsafeRawBufferPointer]
  /// The bytes of each file made again that the bundle keeps in a member (``KeptFiles``).
  let keptData: [String: UnsafeRawBufferPointer]

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
    /// Who signed the bundle (its signature checked), nil for an unsigned one.
    var signer: BundlePublicKey?
    /// ``BundleReader/identity``.
    var identity: String?
  }

  /// Reads `source` to its end (checksums and any signature are verified there), checks the
  /// signer against `trust` before anything of the model is decoded, and validates the model.
  /// `precopied`: the pages a migration sent ahead (``VMAImage/precopiedPages``), put in
  /// beside the saved ones; without, such a bundle is refused unless `allowingPrecopied`
  /// (what only looks at it).
  /// `parents`: finds and loads the parent a bundle was dumped against (``Manifest/parent``),
  /// as pages to merge (``ParentBundle``); nil refuses such a bundle.
  convenience init(
    source: any ByteSource, pages handling: PageHandling = .copy, trust: SignatureTrust = SignatureTrust(),
    precopied: PreCopyStore? = nil, allowingPrecopied: Bool = false,
    parents: ((Manifest.Parent) throws -> PreCopyStore)? = nil, log: Logger
  ) throws {
    let members = try Self.read(source, pages: handling, log: log)
    try trust.check(members.signer)
    var store = precopied
    if let parent = members.manifest.parent, !allowingPrecopied {
      guard let parents else {
        throw CKError(
          .badInput, "the bundle was dumped against a parent bundle (\(parent.path)), which this restore cannot take")
      }
      store = try parents(parent)
    }
    try self.init(members, precopied: store, allowingPrecopied: allowingPrecopied, log: log)
    identity = members.identity
  }

  /// ``BundleReader/identity`` of the bundle read.
  private(set) var identity: String?

  /// Reads every member of `source`, verifying checksums.
  static func read(_ source: any ByteSource, pages handling: PageHandling, log: Logger) throws -> Members {
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
        } else if member.name.hasSuffix(Compression.suffix),
          Self.isRawMember(String(member.name.dropLast(Compression.suffix.count)))
        {
          let name = String(member.name.dropLast(Compression.suffix.count))
          let (buffer, size) = try Self.decompress(member.name, from: reader, keeping: !Self.drops(handling))
          if let buffer { storage.append(buffer) }
          pages[name] = (buffer.map { UnsafeRawBufferPointer(start: $0.pointer, count: $0.size) }, size)
        } else if Self.isRawMember(member.name), case .copy = handling {
          let buffer = try PageBuffer(size: member.size)
          storage.append(buffer)
          var offset = 0
          try reader.forEachChunk { chunk in
            guard offset + chunk.count <= buffer.size else {
              throw BundleError("member \(member.name) is longer than listed")
            }
            if let source = chunk.baseAddress {
              buffer.pointer.advanced(by: offset).copyMemory(from: source, byteCount: chunk.count)
            }
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
    log.debug("read and verified the bundle in \(Int((monotonicNow() - started) * 1000)) ms")
    return Members(
      manifest: reader.manifest, json: json, pages: pages, storage: storage, signer: reader.signer,
      identity: reader.identity)
  }

  /// Decodes and validates the model of `members`: everything a restore checks before it
  /// makes anything (the dump runs it too, on what it is about to write). The order is the
  /// model's: the tree first, then what hangs off it, then each process, then what crosses
  /// processes.
  init(_ members: Members, precopied: PreCopyStore? = nil, allowingPrecopied: Bool = false, log: Logger) throws {
    manifest = members.manifest
    signer = members.signer
    var pageStorage = members.storage
    let model = ModelMembers(
      json: members.json, strict: manifest.formatVersion.minor <= BundleFormat.minorVersion)
    tree = try model.decode(ProcessTree.self, "tree.json")
    try Self.validate(tree)
    cgroups = try Self.cgroups(model, tree: tree)
    mounts = try Self.mounts(model, tree: tree)
    try Self.validateProcInits(mounts, nested: tree.nestedNamespaces ?? [], tasks: tree.tasks)
    let sysv = try Self.sysVObjects(model, tree: tree, pages: members.pages)
    ipc = sysv?.image
    segments = sysv?.segments ?? [:]
    zombies = try Self.zombies(of: tree)
    try PidNamespaces.Layout(tree.tasks).validate()
    let decoding = monotonicNow()
    var tasks = try Self.decodeTasks(of: tree, model, pages: members.pages)
    for index in tasks.indices where tasks[index].memory.vmas.contains(where: { $0.precopiedPages != nil }) {
      if let precopied {
        pageStorage.append(try precopied.merge(into: &tasks[index]))
        try Self.validate(tasks[index])
      } else if !allowingPrecopied {
        throw CKError(
          .badInput, "the bundle lacks pages a migration sent ahead of it",
          hint: "only the `ckcont receive` it was sent to can restore it")
      }
    }
    self.tasks = tasks
    self.pageStorage = pageStorage
    privateObjects = try Self.privateObjects(of: tasks, ipc: ipc, pages: members.pages)
    keptData = try Self.keptData(of: tasks, pages: members.pages)
    try Self.validateDescriptorsInFlight(tasks)
    log.debug("decoded the model of \(tasks.count) processes in \(Int((monotonicNow() - decoding) * 1000)) ms")
  }

  /// The JSON members of a bundle, decoded on demand into model types.
  struct ModelMembers: Sendable {
    let json: [String: [UInt8]]
    /// A newer minor version may add fields; in this version's own bundles none is unknown.
    let strict: Bool

    func has(_ name: String) -> Bool { json[name] != nil }

    /// Decodes a member with JSONDecoder (the small members).
    func decode<T: Decodable>(_ type: T.Type, _ name: String) throws(CKError) -> T {
      guard let bytes = json[name] else { throw CKError(.badInput, "the bundle lacks \(name)") }
      do {
        return try JSONDecoder().decode(type, from: Data(bytes))
      } catch {
        throw CKError(.badInput, "the bundle's \(name) is malformed: \(error)")
      }
    }

    /// Decodes one of the two big members by hand (see MemoryImage.decodeJSON).
    func decodeByHand<T>(_ name: String, _ decode: ([UInt8], String, Bool) throws(BundleError) -> T)
      throws(CKError) -> T
    {
      guard let bytes = json[name] else { throw CKError(.badInput, "the bundle lacks \(name)") }
      do {
        return try decode(bytes, name, strict)
      } catch {
        throw CKError(.badInput, "the bundle's \(error)")
      }
    }
  }

  /// The cgroup subtrees; for a bundle without cgroups.json, the dumped subtree without
  /// settings, as the tasks' places describe it.
  private static func cgroups(_ model: ModelMembers, tree: ProcessTree) throws -> CgroupTreeImage {
    let image =
      model.has("cgroups.json")
      ? try model.decode(CgroupTreeImage.self, "cgroups.json")
      : CgroupTreeImage(hierarchies: [
        CgroupHierarchyImage(
          version: tree.cgroupVersion, controllers: [], root: Self.hierarchyPath(of: tree.cgroup),
          groups: [CgroupGroupImage(path: ".", settings: [])])
      ])
    try Self.validate(image, tree: tree)
    return image
  }

  /// The mounts of the container's own mount namespace, if it has them.
  private static func mounts(_ model: ModelMembers, tree: ProcessTree) throws -> MountsImage? {
    guard model.has("mounts.json") else { return nil }
    let image = try model.decode(MountsImage.self, "mounts.json")
    guard tree.namespaces.mount else {
      throw CKError(.badInput, "the bundle is inconsistent: mounts without a mount namespace of the container's own")
    }
    try ContainerMounts.validate(image)
    return image
  }

  /// The SysV objects of the container's own IPC namespace and each segment's bytes by id.
  private static func sysVObjects(
    _ model: ModelMembers, tree: ProcessTree, pages: [String: (data: UnsafeRawBufferPointer?, size: Int)]
  ) throws -> (image: SysVIPCImage, segments: [Int32: UnsafeRawBufferPointer])? {
    guard model.has("ipc.json") else { return nil }
    let image = try model.decode(SysVIPCImage.self, "ipc.json")
    guard tree.namespaces.ipc else {
      throw CKError(
        .badInput, "the bundle is inconsistent: SysV objects without an IPC namespace of the container's own")
    }
    try Self.validate(image, members: pages.mapValues(\.size))
    var contents: [Int32: UnsafeRawBufferPointer] = [:]
    for segment in image.sharedMemory {
      contents[segment.owner.id] = pages[SysVIPCImage.contentsMember(ofSegment: segment.owner.id)]?.data
    }
    return (image, contents)
  }

  /// Dead children waiting for a live parent's wait().
  private static func zombies(of tree: ProcessTree) throws(CKError) -> [TaskEntryImage] {
    let livePids = Set(tree.tasks.filter { $0.zombieStatus == nil }.map(\.pid))
    return try tree.tasks.filter { $0.zombieStatus != nil }.map { entry throws(CKError) in
      guard entry.pid > 1, entry.pid <= 4_194_304, livePids.contains(entry.ppid), entry.threads.isEmpty,
        let status = entry.zombieStatus, (0...0xffff).contains(status)
      else { throw CKError(.badInput, "the bundle is inconsistent: zombie \(entry.pid)") }
      return entry
    }
  }

  /// Decodes each live process's core, mm and fds and checks them. Decoding is CPU work
  /// independent per task: spread over the cores, then checked in order.
  private static func decodeTasks(
    of tree: ProcessTree, _ model: ModelMembers, pages: [String: (data: UnsafeRawBufferPointer?, size: Int)]
  ) throws -> [LoadedTask] {
    let entries = tree.tasks.filter { $0.zombieStatus == nil }
    let decoded = entries.concurrentMap { entry throws(CKError) in
      (
        try model.decodeByHand(entry.coreMember) { bytes, name, strict throws(BundleError) in
          try TaskCore.decodeJSON(bytes, member: name, strict: strict)
        },
        try model.decodeByHand(entry.mmMember) { bytes, name, strict throws(BundleError) in
          try MemoryImage.decodeJSON(bytes, member: name, strict: strict)
        },
        try model.decodeByHand(entry.filesMember) { bytes, name, strict throws(BundleError) in
          try FileTableImage.decodeJSON(bytes, member: name, strict: strict)
        }
      )
    }
    var loaded: [LoadedTask] = []
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
    return loaded
  }

  /// The contents of each memfd and deleted file mapped privately, by member name; checks
  /// too that every SysV attachment names a segment of its size.
  private static func privateObjects(
    of tasks: [LoadedTask], ipc: SysVIPCImage?, pages: [String: (data: UnsafeRawBufferPointer?, size: Int)]
  ) throws(CKError) -> [String: UnsafeRawBufferPointer] {
    var objects: [String: UnsafeRawBufferPointer] = [:]
    for task in tasks {
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
    return objects
  }

  /// The bytes of each deleted file and memfd kept in a member, by member name: each member
  /// a descriptor names must be there, of the length its extents (or size) say.
  private static func keptData(of tasks: [LoadedTask], pages: [String: (data: UnsafeRawBufferPointer?, size: Int)])
    throws(CKError) -> [String: UnsafeRawBufferPointer]
  {
    var kept: [String: UnsafeRawBufferPointer] = [:]
    for task in tasks {
      for descriptor in task.files.descriptors {
        let files: [(any KeptFileContents)?] = [descriptor.ghost, descriptor.memfd]
        for case let file? in files {
          guard let name = file.dataMember else { continue }
          guard let member = pages[name], Int64(member.size) == file.storedLength else {
            throw CKError(
              .badInput,
              "the bundle is inconsistent: task \(task.entry.pid) fd \(descriptor.fd) keeps its file's bytes in \(name), which the bundle does not hold at that size"
            )
          }
          kept[name] = member.data ?? UnsafeRawBufferPointer(start: nil, count: 0)
        }
      }
    }
    return kept
  }

  /// Descriptors in flight name descriptors of the container's processes: they must exist.
  private static func validateDescriptorsInFlight(_ tasks: [LoadedTask]) throws(CKError) {
    let held = Set(
      tasks.flatMap { task in task.files.descriptors.map { DescriptorReference(pid: task.entry.pid, fd: $0.fd) } })
    for task in tasks {
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
  }

  /// The members of raw bytes: each process's pages and each SysV segment's contents.
  private static func drops(_ handling: PageHandling) -> Bool {
    if case .drop = handling { return true }
    return false
  }

  /// A compressed member's content (one zstd frame), decompressed into a buffer of the
  /// size its frame announces (at most 1 TiB); with `keeping` false only that size.
  private static func decompress(_ member: String, from reader: BundleReader, keeping: Bool) throws -> (
    PageBuffer?, Int
  ) {
    // The frame's header (18 bytes at most) may come in more than one chunk.
    var pending: [UInt8] = []
    var size: Int?
    var buffer: PageBuffer?
    var decompressor: Compression.Decompressor?
    try reader.forEachChunk { chunk in
      guard size == nil else {
        try decompressor?.add(chunk)
        return
      }
      pending += chunk
      guard let announced = pending.withUnsafeBytes({ Compression.contentSize(ofFrameStartingWith: $0) }) else {
        guard pending.count < 18 else { throw BundleError("compressed member \(member) does not announce its size") }
        return
      }
      guard announced <= 1 << 40 else { throw BundleError("compressed member \(member) announces \(announced) bytes") }
      size = Int(announced)
      if keeping {
        let made = try PageBuffer(size: Int(announced))
        buffer = made
        let decompressing = try Compression.Decompressor(
          into: UnsafeMutableRawBufferPointer(start: made.pointer, count: made.size))
        decompressor = decompressing
        try pending.withUnsafeBytes { try decompressing.add($0) }
      }
      pending = []
    }
    guard let size else { throw BundleError("compressed member \(member) is empty") }
    try decompressor?.finish()
    return (buffer, size)
  }

  static func isRawMember(_ name: String) -> Bool {
    name.hasSuffix("/pages.img") || (name.hasPrefix("ipc/shm-") && name.hasSuffix(".img"))
      || ((name.hasPrefix("memfd/") || name.hasPrefix("deleted/") || name.hasPrefix("kept/")) && name.hasSuffix(".img"))
  }

  /// `/web` for `/sys/fs/cgroup/unified/web` (a bundle from before cgroups.json).
  static func hierarchyPath(of path: String) -> String {
    guard let hierarchy = try? CgroupMounts.current().hierarchy(containing: path), path != hierarchy.mountPoint else {
      return "/"
    }
    return String(path.dropFirst(hierarchy.mountPoint.count))
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
    // Not copied into the tasks ckcont clones (they unmap everything at once): their page
    // tables would be copied at each clone (~17 ms per GiB here).
    madvise(mapped, size, MADV_DONTFORK)
    pointer = mapped
  }

  deinit {
    if size > 0 { munmap(pointer, size) } else { pointer.deallocate() }
  }
}

/// Which signatures a restore accepts: with trusted keys (`--trusted-key`), only a bundle one
/// of them signed; without, any bundle, signed or not (a signature is still checked).
public struct SignatureTrust: Sendable {
  public var trustedKeys: [BundlePublicKey]

  public init(trustedKeys: [BundlePublicKey] = []) { self.trustedKeys = trustedKeys }

  func check(_ signer: BundlePublicKey?) throws(CKError) {
    guard !trustedKeys.isEmpty else { return }
    guard let signer else {
      throw CKError(
        .badInput, "the bundle is not signed, and this restore accepts only bundles signed by a trusted key",
        hint: "dump it with --sign KEY, or restore without --trusted-key")
    }
    guard trustedKeys.contains(signer) else {
      throw CKError(
        .badInput, "the bundle is signed by \(signer), which is not one of the trusted keys",
        hint: "give its public key with --trusted-key if you trust who signed it")
    }
  }
}
