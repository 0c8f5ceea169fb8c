/// The kernel's VMA flags as printed on the `VmFlags:` line of `/proc/<pid>/smaps` (proc(5)).
/// Bit positions are ckcont's own, not the kernel's VM_* values.
public struct VMFlags: OptionSet, Codable, Hashable, Sendable {
  public let rawValue: UInt64
  /// Creates the set from its raw bits.
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  /// `rd` readable.
  public static let readable = VMFlags(rawValue: 1 << 0)
  /// `wr` writable.
  public static let writable = VMFlags(rawValue: 1 << 1)
  /// `ex` executable.
  public static let executable = VMFlags(rawValue: 1 << 2)
  /// `sh` shared (VM_SHARED: writes reach the file or the shared object).
  public static let shared = VMFlags(rawValue: 1 << 3)
  /// `mr` may read.
  public static let mayRead = VMFlags(rawValue: 1 << 4)
  /// `mw` may write.
  public static let mayWrite = VMFlags(rawValue: 1 << 5)
  /// `me` may execute.
  public static let mayExecute = VMFlags(rawValue: 1 << 6)
  /// `ms` may share.
  public static let mayShare = VMFlags(rawValue: 1 << 7)
  /// `gd` grows down (MAP_GROWSDOWN, the main stack).
  public static let growsDown = VMFlags(rawValue: 1 << 8)
  /// `pf` pure PFN range (device memory).
  public static let pfnMap = VMFlags(rawValue: 1 << 9)
  /// `dw` writes to the mapped file are denied (old kernels).
  public static let denyWrite = VMFlags(rawValue: 1 << 10)
  /// `lo` locked in memory (mlock).
  public static let locked = VMFlags(rawValue: 1 << 11)
  /// `io` memory-mapped I/O.
  public static let io = VMFlags(rawValue: 1 << 12)
  /// `sr` sequential read advised.
  public static let sequentialRead = VMFlags(rawValue: 1 << 13)
  /// `rr` random read advised.
  public static let randomRead = VMFlags(rawValue: 1 << 14)
  /// `dc` not copied on fork (MADV_DONTFORK).
  public static let dontCopy = VMFlags(rawValue: 1 << 15)
  /// `de` cannot be expanded by mremap.
  public static let dontExpand = VMFlags(rawValue: 1 << 16)
  /// `lf` locked on fault (mlock2 MLOCK_ONFAULT).
  public static let lockOnFault = VMFlags(rawValue: 1 << 17)
  /// `ac` accounted (counts against overcommit).
  public static let accountable = VMFlags(rawValue: 1 << 18)
  /// `nr` no swap space reserved (MAP_NORESERVE).
  public static let noReserve = VMFlags(rawValue: 1 << 19)
  /// `ht` hugetlb mapping.
  public static let hugeTLB = VMFlags(rawValue: 1 << 20)
  /// `sf` synchronous page faults (MAP_SYNC).
  public static let synchronous = VMFlags(rawValue: 1 << 21)
  /// `ar` architecture-specific flag.
  public static let architecture = VMFlags(rawValue: 1 << 22)
  /// `wf` wiped on fork (MADV_WIPEONFORK).
  public static let wipeOnFork = VMFlags(rawValue: 1 << 23)
  /// `dd` excluded from core dumps (MADV_DONTDUMP).
  public static let dontDump = VMFlags(rawValue: 1 << 24)
  /// `sd` soft-dirty.
  public static let softDirty = VMFlags(rawValue: 1 << 25)
  /// `mm` mixed map.
  public static let mixedMap = VMFlags(rawValue: 1 << 26)
  /// `hg` huge pages advised (MADV_HUGEPAGE).
  public static let hugePage = VMFlags(rawValue: 1 << 27)
  /// `nh` no huge pages advised (MADV_NOHUGEPAGE).
  public static let noHugePage = VMFlags(rawValue: 1 << 28)
  /// `mg` mergeable by KSM (MADV_MERGEABLE).
  public static let mergeable = VMFlags(rawValue: 1 << 29)
  /// `bt` arm64 BTI guarded.
  public static let bti = VMFlags(rawValue: 1 << 30)
  /// `mt` arm64 MTE tags allowed.
  public static let mte = VMFlags(rawValue: 1 << 31)
  /// `um` userfaultfd missing-page tracking.
  public static let uffdMissing = VMFlags(rawValue: 1 << 32)
  /// `uw` userfaultfd write-protect tracking.
  public static let uffdWriteProtect = VMFlags(rawValue: 1 << 33)
  /// `ui` userfaultfd minor-fault tracking.
  public static let uffdMinor = VMFlags(rawValue: 1 << 34)
  /// `ss` shadow stack.
  public static let shadowStack = VMFlags(rawValue: 1 << 35)
  /// `sl` sealed (mseal).
  public static let sealed = VMFlags(rawValue: 1 << 36)
  /// `mp` MPX bounds tables (old kernels).
  public static let mpx = VMFlags(rawValue: 1 << 37)
  /// `gu` guard regions installed (MADV_GUARD_INSTALL).
  public static let guardRegions = VMFlags(rawValue: 1 << 38)
  /// `dp` droppable (MAP_DROPPABLE, Linux 6.11+): the kernel may empty it under pressure.
  public static let droppable = VMFlags(rawValue: 1 << 39)

  /// Every known two-letter mnemonic and its flag.
  public static let mnemonics: [(String, VMFlags)] = [
    ("rd", .readable), ("wr", .writable), ("ex", .executable), ("sh", .shared),
    ("mr", .mayRead), ("mw", .mayWrite), ("me", .mayExecute), ("ms", .mayShare),
    ("gd", .growsDown), ("pf", .pfnMap), ("dw", .denyWrite), ("lo", .locked), ("io", .io),
    ("sr", .sequentialRead), ("rr", .randomRead), ("dc", .dontCopy), ("de", .dontExpand),
    ("lf", .lockOnFault), ("ac", .accountable), ("nr", .noReserve), ("ht", .hugeTLB),
    ("sf", .synchronous), ("ar", .architecture), ("wf", .wipeOnFork), ("dd", .dontDump),
    ("sd", .softDirty), ("mm", .mixedMap), ("hg", .hugePage), ("nh", .noHugePage),
    ("mg", .mergeable), ("bt", .bti), ("mt", .mte), ("um", .uffdMissing),
    ("uw", .uffdWriteProtect), ("ui", .uffdMinor), ("ss", .shadowStack), ("sl", .sealed),
    ("mp", .mpx), ("gu", .guardRegions), ("dp", .droppable),
  ]

  /// The flag for a two-letter mnemonic, packed as `first << 8 | second`.
  static let byMnemonic: [UInt16: VMFlags] = Dictionary(
    uniqueKeysWithValues: mnemonics.map { name, flag in
      let utf8 = Array(name.utf8)
      return (UInt16(utf8[0]) << 8 | UInt16(utf8[1]), flag)
    })
}

/// One area of `/proc/<pid>/smaps`: the maps line plus what the dump needs from its details.
public struct SmapsEntry: Codable, Hashable, Sendable {
  /// The header line, as in `/proc/<pid>/maps`.
  public var vma: VMA
  public var flags: VMFlags
  /// Mnemonics on the `VmFlags:` line that this parser does not know (a newer kernel);
  /// kept so that the dump can refuse or ignore them knowingly.
  public var unknownFlags: [String]
  /// Resident bytes (`Rss`).
  public var rss: UInt64
  /// Bytes of resident pages written by this process only (`Private_Dirty`).
  public var privateDirty: UInt64
  /// Bytes of anonymous pages, including copies-on-write of file pages (`Anonymous`).
  public var anonymous: UInt64
  /// Bytes swapped out (`Swap`).
  public var swap: UInt64
  /// The page size backing the area (`KernelPageSize`): 4096, or the hugetlb page size.
  public var kernelPageSize: UInt64

  /// Creates an entry from its fields.
  public init(
    vma: VMA, flags: VMFlags = [], unknownFlags: [String] = [], rss: UInt64 = 0,
    privateDirty: UInt64 = 0, anonymous: UInt64 = 0, swap: UInt64 = 0,
    kernelPageSize: UInt64 = 4096
  ) {
    self.vma = vma
    self.flags = flags
    self.unknownFlags = unknownFlags
    self.rss = rss
    self.privateDirty = privateDirty
    self.anonymous = anonymous
    self.swap = swap
    self.kernelPageSize = kernelPageSize
  }
}

/// Parser for `/proc/<pid>/smaps`.
public enum ProcSmaps {
  /// Parses the whole text; a malformed line is reported with its number. Every area must
  /// end with its `VmFlags:` line, as on every kernel since 3.8.
  public static func parse(_ text: String) throws(CKError) -> [SmapsEntry] {
    try withProcBytes(text) { bytes throws(CKError) in try parse(bytes: bytes) }
  }

  /// Reads and parses the detailed mappings of `pid`.
  public static func read(pid: Int32) throws -> [SmapsEntry] {
    let bytes = try PseudoFile.readBytes("/proc/\(pid)/smaps")
    return try bytes.withUnsafeBufferPointer { buffer throws(CKError) in try parse(bytes: buffer) }
  }

  /// The flags of every area of `pid` by start address, with nothing else parsed: a dump
  /// needs only these, and 10000 mappings make a quarter million detail lines.
  public static func readFlags(pid: Int32) throws -> [UInt64: VMFlags] {
    let bytes = try PseudoFile.readBytes("/proc/\(pid)/smaps")
    return try bytes.withUnsafeBufferPointer { buffer throws(CKError) in try parseFlags(bytes: buffer) }
  }

  /// ``readFlags(pid:)`` of the whole text. Mnemonics this parser does not know (a newer
  /// kernel's) are left out, as ``SmapsEntry/unknownFlags`` would list them.
  public static func parseFlags(_ text: String) throws(CKError) -> [UInt64: VMFlags] {
    try withProcBytes(text) { bytes throws(CKError) in try parseFlags(bytes: bytes) }
  }

  static func parseFlags(bytes: UnsafeBufferPointer<UInt8>) throws(CKError) -> [UInt64: VMFlags] {
    var flags: [UInt64: VMFlags] = [:]
    flags.reserveCapacity(bytes.count / 1000 + 1)
    var start: UInt64?
    try forEachProcLine(bytes) { line throws(CKError) in
      var line = line
      guard let first = line.first else { throw procParseError("smaps", line: line.number, "", "empty line") }
      if isLowerHexDigit(first) {
        guard start == nil else {
          throw procParseError("smaps", line: line.number, line.text, "previous area has no VmFlags")
        }
        guard let address = line.hex(), line.skip(UInt8(ascii: "-")) else {
          throw procParseError("smaps", line: line.number, line.text, "no start address")
        }
        start = address
      } else if first == UInt8(ascii: "V"), line.hasPrefix("VmFlags:") {
        guard let area = start else {
          throw procParseError("smaps", line: line.number, line.text, "VmFlags before an area")
        }
        line.position += 8
        flags[area] = try parseFlags(&line).0
        start = nil
      }
    }
    guard start == nil else { throw procParseError("smaps", line: 0, "", "last area has no VmFlags") }
    return flags
  }

  static func parse(bytes: UnsafeBufferPointer<UInt8>) throws(CKError) -> [SmapsEntry] {
    var entries: [SmapsEntry] = []
    entries.reserveCapacity(bytes.count / 1000 + 1)
    // The area being filled in; kept non-optional so detail lines update it in place.
    var current = SmapsEntry(vma: VMA(start: 0, end: 0, permissions: []))
    var inArea = false
    var sawFlags = false
    var lastLine = 0
    try forEachProcLine(bytes) { line throws(CKError) in
      var line = line
      lastLine = line.number
      guard let first = line.first else {
        throw procParseError("smaps", line: line.number, "", "empty line")
      }
      // Header lines start with the lowercase hex start address; detail keys are capitalized.
      if isLowerHexDigit(first) {
        if inArea {
          guard sawFlags else {
            throw procParseError(
              "smaps", line: line.number, line.text, "previous area has no VmFlags")
          }
          entries.append(current)
        }
        current = SmapsEntry(vma: try ProcMaps.parseHeader(&line, file: "smaps"))
        inArea = true
        sawFlags = false
        return
      }
      guard inArea else {
        throw procParseError("smaps", line: line.number, line.text, "detail before the first area")
      }
      if line.hasPrefix("VmFlags:") {
        line.position += 8
        (current.flags, current.unknownFlags) = try parseFlags(&line)
        sawFlags = true
        return
      }
      guard let (field, value) = try parseSize(&line) else { return }
      switch field {
      case .rss: current.rss = value
      case .swap: current.swap = value
      case .anonymous: current.anonymous = value
      case .privateDirty: current.privateDirty = value
      case .kernelPageSize: current.kernelPageSize = value
      }
    }
    if inArea {
      guard sawFlags else {
        throw procParseError("smaps", line: lastLine, "", "last area has no VmFlags")
      }
      entries.append(current)
    }
    return entries
  }

  private static func isLowerHexDigit(_ byte: UInt8) -> Bool {
    (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
      || (byte >= UInt8(ascii: "a") && byte <= UInt8(ascii: "f"))
  }

  /// `VmFlags: rd wr mr mw me ac` — two letters each, separated by single spaces.
  private static func parseFlags(_ line: inout ProcLine) throws(CKError) -> (VMFlags, [String]) {
    var flags: VMFlags = []
    var unknown: [String] = []
    while true {
      line.skipBlanks()
      guard let word = line.word() else { break }
      guard word.count == 2 else {
        throw procParseError(
          "smaps", line: line.number, line.text, "VmFlags mnemonic is not two letters")
      }
      if let flag = VMFlags.byMnemonic[UInt16(word[0]) << 8 | UInt16(word[1])] {
        flags.insert(flag)
      } else {
        unknown.append(String(decoding: word, as: UTF8.self))
      }
    }
    return (flags, unknown)
  }

  /// The detail sizes ckcont keeps.
  private enum SizeField {
    case rss, privateDirty, anonymous, swap, kernelPageSize
  }

  /// `Key:   1234 kB`. Only the sizes ckcont uses are decoded; other keys (present and future)
  /// are skipped unread.
  private static func parseSize(_ line: inout ProcLine) throws(CKError) -> (SizeField, UInt64)? {
    let keyStart = line.position
    while !line.atEnd, line.bytes[line.position] != UInt8(ascii: ":") { line.position += 1 }
    guard !line.atEnd, line.position > keyStart else {
      throw procParseError("smaps", line: line.number, line.text, "no key")
    }
    let key = UnsafeBufferPointer(rebasing: line.bytes[keyStart..<line.position])
    line.position += 1
    // Compare lengths first: most detail lines are keys ckcont does not keep.
    let field: SizeField
    switch key.count {
    case 3 where equal(key, "Rss"): field = .rss
    case 4 where equal(key, "Swap"): field = .swap
    case 9 where equal(key, "Anonymous"): field = .anonymous
    case 13 where equal(key, "Private_Dirty"): field = .privateDirty
    case 14 where equal(key, "KernelPageSize"): field = .kernelPageSize
    default: return nil
    }
    line.skipBlanks()
    guard let kilobytes = line.decimal(), line.skipBlanks(), line.skip(UInt8(ascii: "k")),
      line.skip(UInt8(ascii: "B")), line.atEnd
    else {
      throw procParseError("smaps", line: line.number, line.text, "size is not `N kB`")
    }
    let (bytes, overflow) = kilobytes.multipliedReportingOverflow(by: 1024)
    guard !overflow else {
      throw procParseError("smaps", line: line.number, line.text, "size overflows")
    }
    return (field, bytes)
  }

  private static func equal(_ bytes: UnsafeBufferPointer<UInt8>, _ text: StaticString) -> Bool {
    text.withUTF8Buffer { bytes.elementsEqual($0) }
  }
}
