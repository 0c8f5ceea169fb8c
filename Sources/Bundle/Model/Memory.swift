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

/// One mapping and which of its pages are in the pages member.
public struct VMAImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    case anonymous, file, heap, stack, vdso, vvar, vvarVclock, vsyscall
    /// A shared mapping of a memfd_create(2) file; `path` is `/memfd:<name>`.
    case memfd
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
  /// For a memfd mapping: the size of the file.
  public var objectSize: UInt64?

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
  /// Kernel-provided mappings that restore moves into place rather than creates.
  public var isSpecial: Bool { kind == .vdso || kind == .vvar || kind == .vvarVclock || kind == .vsyscall }
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
    text += "{\"end\":\(end),\"growsDown\":\(growsDown),\"kind\":\"\(kind.rawValue)\","
    if let objectSize { text += "\"objectSize\":\(objectSize)," }
    text += "\"offset\":\(offset),\"pages\":["
    for (index, run) in pages.enumerated() {
      text += index > 0 ? ",{\"end\":\(run.end),\"start\":\(run.start)}" : "{\"end\":\(run.end),\"start\":\(run.start)}"
    }
    text += "],\"pagesOffset\":\(pagesOffset),\"path\":"
    appendJSONString(path, to: &text)
    text += ",\"protection\":\(protection),\"shared\":\(shared),"
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
