/// The protection and sharing of a mapping: the `rwxp`/`rwxs` column of `/proc/<pid>/maps`.
public struct VMAPermissions: OptionSet, Codable, Hashable, Sendable, CustomStringConvertible {
  public let rawValue: UInt8
  /// Creates the set from its raw bits.
  public init(rawValue: UInt8) { self.rawValue = rawValue }

  /// `r`: PROT_READ.
  public static let read = VMAPermissions(rawValue: 1 << 0)
  /// `w`: PROT_WRITE.
  public static let write = VMAPermissions(rawValue: 1 << 1)
  /// `x`: PROT_EXEC.
  public static let execute = VMAPermissions(rawValue: 1 << 2)
  /// `s`: a shared mapping (VM_MAYSHARE); absent means private (`p`, copy-on-write).
  public static let shared = VMAPermissions(rawValue: 1 << 3)

  /// The four letters as the kernel prints them, e.g. `r-xp`.
  public var description: String {
    (contains(.read) ? "r" : "-") + (contains(.write) ? "w" : "-")
      + (contains(.execute) ? "x" : "-") + (contains(.shared) ? "s" : "p")
  }
}

/// One virtual memory area: a line of `/proc/<pid>/maps` (proc(5)).
public struct VMA: Codable, Hashable, Sendable {
  /// First address of the area.
  public var start: UInt64
  /// One past the last address of the area.
  public var end: UInt64
  public var permissions: VMAPermissions
  /// Offset into the mapped file, in bytes (for anonymous areas: the page offset the kernel
  /// keeps, usually 0 or the address / page size).
  public var offset: UInt64
  /// Device of the mapped file (0:0 for anonymous memory).
  public var major: UInt32
  public var minor: UInt32
  /// Inode of the mapped file (0 for anonymous memory).
  public var inode: UInt64
  /// The path or pseudo name as printed, without the ` (deleted)` suffix; empty when the area
  /// is anonymous and unnamed. A newline in a file name (printed as `\012`) is decoded.
  public var path: String
  /// The mapped file was unlinked (the kernel appended ` (deleted)`). A file whose name really
  /// ends in " (deleted)" is indistinguishable from this in the text.
  public var isDeleted: Bool

  /// Creates an area from its fields.
  public init(
    start: UInt64, end: UInt64, permissions: VMAPermissions, offset: UInt64 = 0,
    major: UInt32 = 0, minor: UInt32 = 0, inode: UInt64 = 0, path: String = "",
    isDeleted: Bool = false
  ) {
    self.start = start
    self.end = end
    self.permissions = permissions
    self.offset = offset
    self.major = major
    self.minor = minor
    self.inode = inode
    self.path = path
    self.isDeleted = isDeleted
  }

  /// Length of the area in bytes.
  public var size: UInt64 { end - start }

  /// What backs the area, derived from its name and device.
  public var kind: VMAKind {
    if path.isEmpty { return .anonymous }
    if path.hasPrefix("["), path.hasSuffix("]") {
      let inner = path.dropFirst().dropLast()
      switch inner {
      case "heap": return .heap
      case "stack": return .stack
      case "vdso": return .vdso
      case "vvar": return .vvar
      case "vvar_vclock": return .vvarVclock
      case "vsyscall": return .vsyscall
      default:
        if inner.hasPrefix("anon:") { return .anonymousNamed(String(inner.dropFirst(5))) }
        if inner.hasPrefix("anon_shmem:") { return .anonymousNamed(String(inner.dropFirst(11))) }
        return .otherPseudo(String(inner))
      }
    }
    // Shared anonymous memory lives on the kernel's internal shmem mount (device 0:1) and is
    // named after /dev/zero; a real mapping of /dev/zero has the devtmpfs device instead.
    if major == 0, minor == 1, path == "/dev/zero", isDeleted { return .sharedAnonymous }
    // memfd_create(2) files live on the same internal mount, named "memfd:<name>".
    if major == 0, minor == 1, path.hasPrefix("/memfd:"), isDeleted { return .memfd(String(path.dropFirst(7))) }
    // SysV segments too, named after their key; the inode number is the segment's id.
    if major == 0, minor == 1, path.hasPrefix("/SYSV"), isDeleted, let id = Int32(exactly: inode) {
      return .sysvShm(id)
    }
    return .file
  }
}

/// What backs a ``VMA``: the cases the dump treats differently.
public enum VMAKind: Codable, Hashable, Sendable {
  /// Private or shared memory with no name.
  case anonymous
  /// `MAP_SHARED|MAP_ANONYMOUS` memory (shmem, printed as `/dev/zero (deleted)`).
  case sharedAnonymous
  /// A file made by memfd_create(2) with this name (printed as `/memfd:<name> (deleted)`).
  case memfd(String)
  /// Anonymous memory named with `PR_SET_VMA_ANON_NAME` (`[anon:name]`, `[anon_shmem:name]`).
  case anonymousNamed(String)
  /// A SysV shared memory segment attached with shmat(2) (`/SYSV<key> (deleted)`), by id.
  case sysvShm(Int32)
  /// A mapped file (see ``VMA/path`` and ``VMA/isDeleted``).
  case file
  case heap
  /// The main thread's stack.
  case stack
  case vdso
  case vvar
  case vvarVclock
  case vsyscall
  /// Another bracketed kernel name, e.g. `uprobes`.
  case otherPseudo(String)
}

/// Parser for `/proc/<pid>/maps`.
public enum ProcMaps {
  /// Parses the whole text; a malformed line is reported with its number.
  public static func parse(_ text: String) throws(CKError) -> [VMA] {
    try withProcBytes(text) { bytes throws(CKError) in try parse(bytes: bytes) }
  }

  /// Reads and parses the mappings of `pid`.
  public static func read(pid: Int32) throws -> [VMA] {
    let bytes = try PseudoFile.readBytes("/proc/\(pid)/maps")
    return try bytes.withUnsafeBufferPointer { buffer throws(CKError) in try parse(bytes: buffer) }
  }

  static func parse(bytes: UnsafeBufferPointer<UInt8>) throws(CKError) -> [VMA] {
    var areas: [VMA] = []
    // Each line is at least 50 bytes; reserving avoids regrowing for big address spaces.
    areas.reserveCapacity(bytes.count / 64 + 1)
    try forEachProcLine(bytes) { line throws(CKError) in
      var line = line
      areas.append(try parseHeader(&line, file: "maps"))
    }
    return areas
  }

  /// The four fixed permission columns: the letter when set, the letter when not, the flag.
  private static let permissionColumns: [(UInt8, UInt8, VMAPermissions)] = [
    (UInt8(ascii: "r"), UInt8(ascii: "-"), .read), (UInt8(ascii: "w"), UInt8(ascii: "-"), .write),
    (UInt8(ascii: "x"), UInt8(ascii: "-"), .execute),
    (UInt8(ascii: "s"), UInt8(ascii: "p"), .shared),
  ]

  /// Parses one `start-end perms offset major:minor inode   path` line; shared with smaps.
  static func parseHeader(_ line: inout ProcLine, file: String) throws(CKError) -> VMA {
    func fail(_ reason: String) -> CKError {
      procParseError(file, line: line.number, line.text, reason)
    }
    guard let start = line.hex(), line.skip(UInt8(ascii: "-")), let end = line.hex() else {
      throw fail("bad address range")
    }
    guard start < end else { throw fail("range is empty or reversed") }
    guard line.skipBlanks() else { throw fail("no permissions") }
    var permissions: VMAPermissions = []
    for (set, unset, flag) in permissionColumns {
      if line.skip(set) {
        permissions.insert(flag)
      } else if !line.skip(unset) {
        throw fail("bad permissions")
      }
    }
    guard line.skipBlanks() else { throw fail("bad permissions") }
    guard let offset = line.hex(), line.skipBlanks() else { throw fail("bad offset") }
    guard let major = line.hex(), line.skip(UInt8(ascii: ":")), let minor = line.hex(),
      line.skipBlanks(), let major32 = UInt32(exactly: major), let minor32 = UInt32(exactly: minor)
    else { throw fail("bad device") }
    guard let inode = line.decimal() else { throw fail("bad inode") }
    guard line.atEnd || line.skipBlanks() else { throw fail("junk after inode") }
    var path = ""
    var deleted = false
    if !line.atEnd {
      (path, deleted) = decodePath(line.restBytes)
    }
    return VMA(
      start: start, end: end, permissions: permissions, offset: offset, major: major32,
      minor: minor32, inode: inode, path: path, isDeleted: deleted)
  }

  private static let deletedSuffix = Array(" (deleted)".utf8)

  /// The kernel prints the file path escaping only newline (as `\012`) and appends
  /// ` (deleted)` to unlinked files.
  static func decodePath(_ bytes: UnsafeBufferPointer<UInt8>) -> (String, Bool) {
    let suffix = deletedSuffix
    var count = bytes.count
    var deleted = false
    if count > suffix.count, bytes[bytes.count - suffix.count..<bytes.count].elementsEqual(suffix) {
      count -= suffix.count
      deleted = true
    }
    let body = UnsafeBufferPointer(rebasing: bytes[0..<count])
    guard body.contains(UInt8(ascii: "\\")) else {
      return (String(decoding: body, as: UTF8.self), deleted)
    }
    var decoded: [UInt8] = []
    decoded.reserveCapacity(count)
    var i = 0
    while i < count {
      if body[i] == UInt8(ascii: "\\"), i + 4 <= count,
        body[(i + 1)..<(i + 4)].elementsEqual("012".utf8)
      {
        decoded.append(UInt8(ascii: "\n"))
        i += 4
      } else {
        decoded.append(body[i])
        i += 1
      }
    }
    return (String(decoding: decoded, as: UTF8.self), deleted)
  }
}
