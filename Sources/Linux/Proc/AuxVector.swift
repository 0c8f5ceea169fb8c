/// One entry of the ELF auxiliary vector: an `AT_*` type and its value.
public struct AuxEntry: Codable, Hashable, Sendable {
  /// The `AT_*` type (AT_PHDR 3, AT_PAGESZ 6, AT_ENTRY 9, AT_RANDOM 25, AT_SYSINFO_EHDR 33...).
  public var type: UInt64
  public var value: UInt64

  /// Creates an entry.
  public init(type: UInt64, value: UInt64) {
    self.type = type
    self.value = value
  }
}

/// Parser for `/proc/<pid>/auxv`: the binary auxiliary vector the kernel gave the program at
/// exec, which `PR_SET_MM_MAP` must hand back at restore (x86_64: pairs of native 64-bit words).
public enum AuxVector {
  /// Parses the pairs up to AT_NULL (type 0), which must be present and is not returned.
  public static func parse(_ bytes: [UInt8]) throws(CKError) -> [AuxEntry] {
    guard bytes.count % 16 == 0 else {
      throw procParseError("auxv", "\(bytes.count) bytes, not a whole number of 16-byte pairs")
    }
    var entries: [AuxEntry] = []
    for offset in stride(from: 0, to: bytes.count, by: 16) {
      let type = word(bytes, at: offset)
      if type == 0 { return entries }
      entries.append(AuxEntry(type: type, value: word(bytes, at: offset + 8)))
    }
    throw procParseError("auxv", "no AT_NULL terminator after \(entries.count) entries")
  }

  /// Reads and parses the auxiliary vector of `pid` (needs ptrace access to the task).
  public static func read(pid: Int32) throws -> [AuxEntry] {
    try parse(PseudoFile.readBytes("/proc/\(pid)/auxv"))
  }

  /// A little-endian 64-bit word (the layout of x86_64, the one architecture ckcont supports).
  private static func word(_ bytes: [UInt8], at offset: Int) -> UInt64 {
    var value: UInt64 = 0
    for i in (0..<8).reversed() { value = value << 8 | UInt64(bytes[offset + i]) }
    return value
  }
}
