/// Parser for `/proc/<pid>/personality`: the execution domain flags of personality(2)
/// (e.g. ADDR_NO_RANDOMIZE 0x0040000), printed as eight hex digits.
public enum ProcPersonality {
  /// Parses the single hexadecimal value.
  public static func parse(_ text: String) throws(CKError) -> UInt32 {
    var value = Substring(text)
    if value.last == "\n" { value = value.dropLast() }
    guard !value.isEmpty, value.count <= 8, let persona = UInt32(value, radix: 16) else {
      throw procParseError("personality", line: 1, value, "not a hexadecimal 32-bit value")
    }
    return persona
  }

  /// Reads and parses the personality of `pid` (needs ptrace access to the task).
  public static func read(pid: Int32) throws -> UInt32 {
    try parse(PseudoFile.read("/proc/\(pid)/personality"))
  }
}
