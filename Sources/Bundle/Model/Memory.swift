import Foundation

/// `tasks/<pid>/mm.json`: the address space of one process (CRIU's mm + pagemap).
public struct MemoryImage: Codable, Sendable, Equatable {
  public var vmas: [VMAImage]
  public var fields: MMFields
  /// /proc/<pid>/auxv as 64-bit words.
  public var auxv: [UInt64]
  /// The executable (/proc/<pid>/exe).
  public var exe: String
  /// Total bytes of page data in the pages member.
  public var pagesSize: UInt64

  public init(vmas: [VMAImage], fields: MMFields, auxv: [UInt64], exe: String, pagesSize: UInt64) {
    self.vmas = vmas
    self.fields = fields
    self.auxv = auxv
    self.exe = exe
    self.pagesSize = pagesSize
  }
}

extension MemoryImage {
  /// Sets each mapping's ``VMAImage/pagesOffset`` and ``pagesSize`` from the page runs, once
  /// runs were taken out.
  public mutating func renumberPages() {
    var offset: UInt64 = 0
    for index in vmas.indices {
      vmas[index].pagesOffset = offset
      offset += vmas[index].pages.reduce(0) { $0 + $1.size }
    }
    pagesSize = offset
  }
}

/// One mapping and which of its pages are in the pages member.
public struct VMAImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    case anonymous, file, heap, stack, vdso, vvar, vvarVclock, vsyscall
    /// A mapping of a memfd_create(2) file; `path` is `/memfd:<name>`. A private one keeps
    /// only its copied-on-write pages; the file's contents are the member
    /// ``VMAImage/contentsMember``.
    case memfd
    /// A SysV shared memory segment attached with shmat(2); `sharedObject` is its id, its
    /// bytes are in ipc.json's segment, not in the pages member.
    case sysvShm
    /// A mapping of a file deleted since (a POSIX semaphore after sem_unlink, a scratch file
    /// unlinked once mapped, a library replaced by an upgrade); `path` is where it was. A
    /// shared one's pages are the file's data; a private one keeps its copied-on-write pages,
    /// and the file's contents are the member ``VMAImage/contentsMember``. The restore makes
    /// the file again there (or beside it) and unlinks it.
    case deletedFile
  }
  public var start: UInt64
  public var end: UInt64
  /// PROT_* bits.
  public var protection: Int32
  public var shared: Bool
  public var kind: Kind
  /// The file of a file mapping, or the name as /proc shows it.
  public var path: String
  public var offset: UInt64
  public var growsDown: Bool
  /// Page runs saved for this VMA, in address order; their bytes follow each other in the
  /// pages member starting at `pagesOffset`.
  public var pages: [PageRun]
  public var pagesOffset: UInt64
  /// For shared anonymous memory and memfd mappings: the kernel object's inode. Mappings of
  /// the same object in several processes (inherited across fork) are restored as one object.
  public var sharedObject: UInt64?
  /// mlock(2)ed: its pages stay in memory (all of them, or as they are touched).
  public var lock: Lock?
  public enum Lock: String, Codable, Sendable {
    case always, onFault
  }
  /// Advice given with madvise(2) that the kernel keeps on the mapping (smaps VmFlags),
  /// given again by the restore; nil for none.
  public var advice: [Advice]?
  public enum Advice: String, Codable, Sendable, CaseIterable {
    case dontFork, wipeOnFork, dontDump, hugePage, noHugePage, mergeable, sequential, random
  }
  /// Mapped with MAP_NORESERVE (smaps `nr`): no swap space is reserved for it, so it does
  /// not count against a strict overcommit limit (glibc's 64 MiB thread arenas). Mapped so
  /// again; nil when not.
  public var noReserve: Bool?
  /// Mapped with MAP_DROPPABLE (smaps `dp`; anonymous, wiped on fork, its pages the kernel's
  /// to drop under memory pressure). Mapped so again; nil when not.
  public var droppable: Bool?
  /// A private mapping not writable now that was (smaps `ac`, VM_ACCOUNT): its memory stays
  /// charged against the overcommit limit. Mapped writable and made read-only again; nil
  /// when not.
  public var accounted: Bool?
  /// mseal(2)ed: sealed again once the restore has set it up.
  public var sealed: Bool?
  /// Guard regions installed in it (MADV_GUARD_INSTALL): runs of pages that fault on touch.
  public var guards: [PageRun]?
  /// For a memfd mapping and a deleted file: the size of the file.
  public var objectSize: UInt64?
  /// For a deleted file: the device it was on (st_dev; inodes are unique only per device) and
  /// its permission bits.
  public var objectDevice: UInt64?
  public var objectMode: UInt32?
  /// Nil for a mapping the restore makes anew. Otherwise a private mapping the process got
  /// from its parent through fork(), kept so by the restore (it forks the process once the
  /// parent's pages are in): these runs of its pages are the parent's own at the same
  /// addresses, one physical page shared copy-on-write since the fork, and are not saved
  /// here; its other saved pages are its own, and a page the parent holds that it holds
  /// neither way is dropped (MADV_DONTNEED).
  public var parentPages: [PageRun]?
  /// Pages where the process held another page than its final one when it forked its
  /// children (who share that page still), and has written (a saved page of its own) or
  /// dropped since: the restore does either only once its children are forked.
  public var laterPages: [LaterRun]?
  /// Runs of its pages the receiver of a migration holds already (sent while the container
  /// ran, ``Migrate``) and not in this bundle: the receiver puts them in beside the saved
  /// ones. Only in private anonymous memory, never over ``pages``.
  public var precopiedPages: [PageRun]?
  /// Runs of its pages the receiver of a lazy migration (post-copy, ``Migrate``) fetches
  /// from the frozen source at their first touch, or as they stream in after the container
  /// runs; not in this bundle. Only in writable private anonymous memory whose first page
  /// is saved, never over ``pages``.
  public var lazyPages: [PageRun]?
  /// Private anonymous memory in huge pages (MAP_HUGETLB, shown as `/anon_hugepage`): their
  /// size. Mapped again in huge pages of that size.
  public var hugePageSize: UInt64?
  /// A private mapping of a file: the file's size and last modification (ns since the epoch)
  /// at the dump. Its pages not written show the file: the restore refuses a file that is
  /// not so any more (a library upgraded since, another host's).
  public var fileSize: UInt64?
  public var fileModified: Int64?

  public init(
    start: UInt64, end: UInt64, protection: Int32, shared: Bool, kind: Kind, path: String, offset: UInt64,
    growsDown: Bool, pages: [PageRun], pagesOffset: UInt64, sharedObject: UInt64? = nil, objectSize: UInt64? = nil
  ) {
    self.start = start
    self.end = end
    self.protection = protection
    self.shared = shared
    self.kind = kind
    self.path = path
    self.offset = offset
    self.growsDown = growsDown
    self.pages = pages
    self.pagesOffset = pagesOffset
    self.sharedObject = sharedObject
    self.objectSize = objectSize
  }

  public var size: UInt64 { end - start }
  /// Private memory of the process's own (anonymous, heap, stack): what pre-copy tracks,
  /// what a parent bundle and a migration's rounds may hold for it.
  public var isPrivateAnonymous: Bool { !shared && (kind == .anonymous || kind == .heap || kind == .stack) }
  /// The object a shared mapping shares with others, restored once for all of them: shared
  /// anonymous memory, a memfd or a deleted file. Nil for other mappings (and SysV segments,
  /// which the IPC namespace holds).
  public var objectKey: ObjectKey? {
    guard let sharedObject, kind == .anonymous || kind == .memfd || kind == .deletedFile else { return nil }
    return ObjectKey(device: objectDevice ?? 0, inode: sharedObject)
  }
  /// Kernel-provided mappings that restore moves into place rather than creates.
  /// For a private mapping of a memfd or a deleted file: the member holding the file's
  /// contents, which show where the mapping was not written to.
  public var contentsMember: String? {
    guard !shared, let inode = sharedObject else { return nil }
    switch kind {
    case .memfd: return "memfd/\(inode).img"
    case .deletedFile: return "deleted/\(objectDevice ?? 0)-\(inode).img"
    default: return nil
    }
  }

  public var isSpecial: Bool { kind == .vdso || kind == .vvar || kind == .vvarVclock || kind == .vsyscall }
}

/// A memory object several mappings share: its device (0 for the kernel's own shared memory
/// and memfds) and inode.
public struct ObjectKey: Hashable, Sendable {
  public var device: UInt64
  public var inode: UInt64
  public init(device: UInt64, inode: UInt64) {
    self.device = device
    self.inode = inode
  }
}

/// A run of ``VMAImage/laterPages``: what the process holds there while it forks is the
/// page it kept from its parent (`from` nil), or, when no process above has it any more, the
/// saved page of its descendant `from` at the same address, which that one's siblings or
/// cousins share. It
/// writes or drops its own once it has forked its child `until` (nil: all its children),
/// so that children forked after share its own page.
public struct LaterRun: Codable, Sendable, Equatable {
  public var start: UInt64
  public var end: UInt64
  public var from: Int32?
  public var until: Int32?
  public init(start: UInt64, end: UInt64, from: Int32? = nil, until: Int32? = nil) {
    self.start = start
    self.end = end
    self.from = from
    self.until = until
  }
}

extension LaterRun {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    var start: UInt64?
    var end: UInt64?
    var from: Int32?
    var until: Int32?
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "start": start = try scanner.integer()
      case "end": end = try scanner.integer()
      case "from": from = scanner.null() ? nil : try scanner.integer()
      case "until": until = scanner.null() ? nil : try scanner.integer()
      default: try scanner.unknown(key, in: "a run of later pages")
      }
    }
    guard let start else { throw scanner.missing("start", in: "a run of later pages") }
    guard let end else { throw scanner.missing("end", in: "a run of later pages") }
    self.init(start: start, end: end, from: from, until: until)
  }
}

/// A run of saved pages [start, end).
public struct PageRun: Codable, Sendable, Equatable {
  public var start: UInt64
  public var end: UInt64
  public init(start: UInt64, end: UInt64) {
    self.start = start
    self.end = end
  }
  public var size: UInt64 { end - start }
}

/// The mm_struct fields that PR_SET_MM_MAP sets (see prctl(2)).
public struct MMFields: Codable, Sendable, Equatable {
  public var startCode, endCode, startData, endData, startBrk, brk, startStack: UInt64
  public var argStart, argEnd, envStart, envEnd: UInt64

  public init(
    startCode: UInt64, endCode: UInt64, startData: UInt64, endData: UInt64, startBrk: UInt64, brk: UInt64,
    startStack: UInt64, argStart: UInt64, argEnd: UInt64, envStart: UInt64, envEnd: UInt64
  ) {
    (self.startCode, self.endCode, self.startData, self.endData) = (startCode, endCode, startData, endData)
    (self.startBrk, self.brk, self.startStack) = (startBrk, brk, startStack)
    (self.argStart, self.argEnd, self.envStart, self.envEnd) = (argStart, argEnd, envStart, envEnd)
  }
}

extension MemoryImage {
  /// The `mm.json` member: what JSONEncoder (sorted keys) writes, except that the VMA list,
  /// thousands of entries in a big process, is written directly (Foundation's encoder does
  /// some 25 MB/s here; it held a 10000-mapping dump up by 80 ms). JSONDecoder reads both.
  public func encodedJSON() throws -> Data {
    var rest = self
    rest.vmas = []
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var head = try encoder.encode(rest)
    let emptyList = Data("\"vmas\":[]}".utf8)
    guard head.count >= emptyList.count, head.suffix(emptyList.count) == emptyList else {
      throw BundleError("mm.json: the encoder did not put the VMA list last")
    }
    head.removeLast(2)  // "]}"
    var text = ""
    text.reserveCapacity(vmas.count * 200)
    for (index, vma) in vmas.enumerated() {
      if index > 0 { text += "," }
      vma.appendJSON(to: &text)
    }
    head.append(contentsOf: Array(text.utf8))
    head.append(contentsOf: Array("]}".utf8))
    return head
  }
}

extension VMAImage {
  func appendJSON(to text: inout String) {
    text += "{"
    if let advice { text += "\"advice\":[" + advice.map { "\"\($0.rawValue)\"" }.joined(separator: ",") + "]," }
    text += "\"end\":\(end),"
    if let fileModified { text += "\"fileModified\":\(fileModified)," }
    if let fileSize { text += "\"fileSize\":\(fileSize)," }
    text += "\"growsDown\":\(growsDown),"
    if let guards {
      text += "\"guards\":[" + guards.map { "{\"end\":\($0.end),\"start\":\($0.start)}" }.joined(separator: ",") + "],"
    }
    if let hugePageSize { text += "\"hugePageSize\":\(hugePageSize)," }
    text += "\"kind\":\"\(kind.rawValue)\","
    if let laterPages {
      text +=
        "\"laterPages\":["
        + laterPages.map { run in
          "{\"end\":\(run.end)," + (run.from.map { "\"from\":\($0)," } ?? "") + "\"start\":\(run.start)"
            + (run.until.map { ",\"until\":\($0)" } ?? "") + "}"
        }.joined(separator: ",") + "],"
    }
    if let lazyPages {
      text +=
        "\"lazyPages\":[" + lazyPages.map { "{\"end\":\($0.end),\"start\":\($0.start)}" }.joined(separator: ",") + "],"
    }
    if let lock { text += "\"lock\":\"\(lock.rawValue)\"," }
    if let noReserve { text += "\"noReserve\":\(noReserve)," }
    if let droppable { text += "\"droppable\":\(droppable)," }
    if let accounted { text += "\"accounted\":\(accounted)," }
    if let objectDevice { text += "\"objectDevice\":\(objectDevice)," }
    if let objectMode { text += "\"objectMode\":\(objectMode)," }
    if let objectSize { text += "\"objectSize\":\(objectSize)," }
    text += "\"offset\":\(offset),"
    if let parentPages {
      text +=
        "\"parentPages\":[" + parentPages.map { "{\"end\":\($0.end),\"start\":\($0.start)}" }.joined(separator: ",")
        + "],"
    }
    text += "\"pages\":["
    for (index, run) in pages.enumerated() {
      text += index > 0 ? ",{\"end\":\(run.end),\"start\":\(run.start)}" : "{\"end\":\(run.end),\"start\":\(run.start)}"
    }
    text += "],\"pagesOffset\":\(pagesOffset),\"path\":"
    appendJSONString(path, to: &text)
    if let precopiedPages {
      text +=
        ",\"precopiedPages\":["
        + precopiedPages.map { "{\"end\":\($0.end),\"start\":\($0.start)}" }.joined(separator: ",") + "]"
    }
    text += ",\"protection\":\(protection),"
    if let sealed { text += "\"sealed\":\(sealed)," }
    text += "\"shared\":\(shared),"
    if let sharedObject { text += "\"sharedObject\":\(sharedObject)," }
    text += "\"start\":\(start)}"
  }
}

/// A JSON string literal: quotes, backslashes and control characters escaped.
func appendJSONString(_ value: String, to text: inout String) {
  text += "\""
  for scalar in value.unicodeScalars {
    switch scalar {
    case "\"": text += "\\\""
    case "\\": text += "\\\\"
    case "\n": text += "\\n"
    case "\t": text += "\\t"
    case "\r": text += "\\r"
    case _ where scalar.value < 0x20:
      let hex = String(scalar.value, radix: 16)
      text += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
    default: text.unicodeScalars.append(scalar)
    }
  }
  text += "\""
}

extension MemoryImage {
  /// Decodes an `mm.json` member as JSONDecoder would, several times faster: a restore of
  /// hundreds of processes spent most of its decoding time in the VMA lists.
  public static func decodeJSON(_ bytes: [UInt8], member: String, strict: Bool = true) throws(BundleError)
    -> MemoryImage
  {
    try JSONScanner.scan(bytes, member: member, strict: strict) { scanner throws(BundleError) in
      var vmas: [VMAImage]?
      var fields: MMFields?
      var auxv: [UInt64]?
      var exe: String?
      var pagesSize: UInt64?
      try scanner.object { key, scanner throws(BundleError) in
        switch key {
        case "vmas": vmas = try scanner.list { scanner throws(BundleError) in try VMAImage(scanning: &scanner) }
        case "fields": fields = try MMFields(scanning: &scanner)
        case "auxv": auxv = try scanner.list { scanner throws(BundleError) in try scanner.integer() }
        case "exe": exe = try scanner.string()
        case "pagesSize": pagesSize = try scanner.integer()
        default: try scanner.unknown(key, in: "the image")
        }
      }
      guard let vmas else { throw scanner.missing("vmas", in: "the image") }
      guard let fields else { throw scanner.missing("fields", in: "the image") }
      guard let auxv else { throw scanner.missing("auxv", in: "the image") }
      guard let exe else { throw scanner.missing("exe", in: "the image") }
      guard let pagesSize else { throw scanner.missing("pagesSize", in: "the image") }
      return MemoryImage(vmas: vmas, fields: fields, auxv: auxv, exe: exe, pagesSize: pagesSize)
    }
  }
}

extension VMAImage {
  /// One mapping of mm.json. Long by nature: one local per field and one `case` per key, as
  /// JSONScanner decodes in one pass; splitting it would only scatter the key list.
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    var start: UInt64?
    var end: UInt64?
    var offset: UInt64?
    var pagesOffset: UInt64?
    var sharedObject: UInt64?
    var objectSize: UInt64?
    var objectDevice: UInt64?
    var objectMode: UInt32?
    var lock: Lock?
    var advice: [Advice]?
    var sealed: Bool?
    var noReserve: Bool?
    var droppable: Bool?
    var accounted: Bool?
    var guards: [PageRun]?
    var parentPages: [PageRun]?
    var laterPages: [LaterRun]?
    var precopiedPages: [PageRun]?
    var lazyPages: [PageRun]?
    var hugePageSize: UInt64?
    var fileSize: UInt64?
    var fileModified: Int64?
    var protection: Int32?
    var shared: Bool?
    var growsDown: Bool?
    var kind: Kind?
    var path: String?
    var pages: [PageRun]?
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "start": start = try scanner.integer()
      case "end": end = try scanner.integer()
      case "protection": protection = try scanner.integer()
      case "shared": shared = try scanner.bool()
      case "kind":
        let name = try scanner.string()
        guard let known = Kind(rawValue: name) else {
          throw scanner.invalid("a VMA has an unknown kind \"\(name.prefix(40))\"")
        }
        kind = known
      case "path": path = try scanner.string()
      case "offset": offset = try scanner.integer()
      case "growsDown": growsDown = try scanner.bool()
      case "pages": pages = try scanner.list { scanner throws(BundleError) in try PageRun(scanning: &scanner) }
      case "pagesOffset": pagesOffset = try scanner.integer()
      case "sharedObject": sharedObject = scanner.null() ? nil : try scanner.integer()
      case "objectSize": objectSize = scanner.null() ? nil : try scanner.integer()
      case "objectDevice": objectDevice = scanner.null() ? nil : try scanner.integer()
      case "objectMode": objectMode = scanner.null() ? nil : try scanner.integer()
      case "lock":
        if !scanner.null() {
          let name = try scanner.string()
          guard let known = Lock(rawValue: name) else {
            throw scanner.invalid("a VMA has an unknown lock \"\(name.prefix(40))\"")
          }
          lock = known
        }
      case "advice":
        if !scanner.null() {
          advice = try scanner.list { scanner throws(BundleError) in
            let name = try scanner.string()
            guard let known = Advice(rawValue: name) else {
              throw scanner.invalid("a VMA has an unknown advice \"\(name.prefix(40))\"")
            }
            return known
          }
        }
      case "sealed": sealed = scanner.null() ? nil : try scanner.bool()
      case "noReserve": noReserve = scanner.null() ? nil : try scanner.bool()
      case "droppable": droppable = scanner.null() ? nil : try scanner.bool()
      case "accounted": accounted = scanner.null() ? nil : try scanner.bool()
      case "guards":
        guards =
          scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try PageRun(scanning: &scanner) }
      case "laterPages":
        laterPages =
          scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try LaterRun(scanning: &scanner) }
      case "parentPages":
        parentPages =
          scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try PageRun(scanning: &scanner) }
      case "hugePageSize": hugePageSize = scanner.null() ? nil : try scanner.integer()
      case "fileSize": fileSize = scanner.null() ? nil : try scanner.integer()
      case "fileModified": fileModified = scanner.null() ? nil : try scanner.integer()
      case "precopiedPages":
        precopiedPages =
          scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try PageRun(scanning: &scanner) }
      case "lazyPages":
        lazyPages =
          scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try PageRun(scanning: &scanner) }
      default: try scanner.unknown(key, in: "a VMA")
      }
    }
    guard let start, let end, let protection, let shared, let kind, let path, let offset, let growsDown, let pages,
      let pagesOffset
    else {
      let names = [
        "start", "end", "protection", "shared", "kind", "path", "offset", "growsDown", "pages", "pagesOffset",
      ]
      let present = [
        start != nil, end != nil, protection != nil, shared != nil, kind != nil, path != nil, offset != nil,
        growsDown != nil, pages != nil, pagesOffset != nil,
      ]
      throw scanner.missing(names[present.firstIndex(of: false) ?? 0], in: "a VMA")
    }
    self.init(
      start: start, end: end, protection: protection, shared: shared, kind: kind, path: path, offset: offset,
      growsDown: growsDown, pages: pages, pagesOffset: pagesOffset, sharedObject: sharedObject, objectSize: objectSize)
    self.lock = lock
    self.advice = advice
    self.sealed = sealed
    self.noReserve = noReserve
    self.droppable = droppable
    self.accounted = accounted
    self.guards = guards
    self.parentPages = parentPages
    self.laterPages = laterPages
    self.precopiedPages = precopiedPages
    self.lazyPages = lazyPages
    self.hugePageSize = hugePageSize
    self.fileSize = fileSize
    self.fileModified = fileModified
    self.objectDevice = objectDevice
    self.objectMode = objectMode
  }
}

extension PageRun {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    var start: UInt64?
    var end: UInt64?
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "start": start = try scanner.integer()
      case "end": end = try scanner.integer()
      default: try scanner.unknown(key, in: "a page run")
      }
    }
    guard let start else { throw scanner.missing("start", in: "a page run") }
    guard let end else { throw scanner.missing("end", in: "a page run") }
    self.init(start: start, end: end)
  }
}

extension MMFields {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    let names = [
      "startCode", "endCode", "startData", "endData", "startBrk", "brk", "startStack", "argStart", "argEnd", "envStart",
      "envEnd",
    ]
    var values = [UInt64?](repeating: nil, count: names.count)
    try scanner.object { key, scanner throws(BundleError) in
      let index: Int? =
        switch key {
        case "startCode": 0
        case "endCode": 1
        case "startData": 2
        case "endData": 3
        case "startBrk": 4
        case "brk": 5
        case "startStack": 6
        case "argStart": 7
        case "argEnd": 8
        case "envStart": 9
        case "envEnd": 10
        default: nil
        }
      if let index { values[index] = try scanner.integer() } else { try scanner.unknown(key, in: "the mm fields") }
    }
    if let absent = values.firstIndex(where: { $0 == nil }) {
      throw scanner.missing(names[absent], in: "the mm fields")
    }
    let v = values.map { $0 ?? 0 }
    self.init(
      startCode: v[0], endCode: v[1], startData: v[2], endData: v[3], startBrk: v[4], brk: v[5], startStack: v[6],
      argStart: v[7], argEnd: v[8], envStart: v[9], envEnd: v[10])
  }
}
