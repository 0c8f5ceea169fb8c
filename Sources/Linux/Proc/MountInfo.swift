/// One line of `/proc/<pid>/mountinfo` (proc(5)).
public struct MountInfoEntry: Equatable, Sendable {
  public var mountID: Int
  public var parentID: Int
  public var major: Int
  public var minor: Int
  /// The path inside the filesystem that is mounted (for cgroup mounts: the cgroup).
  public var root: String
  public var mountPoint: String
  public var mountOptions: [String]
  public var optionalFields: [String]
  public var fsType: String
  public var source: String
  public var superOptions: [String]
}

/// Parser for `/proc/<pid>/mountinfo`.
public enum MountInfo {
  /// Parses the whole text; malformed lines are reported with their number.
  public static func parse(_ text: String) throws(CKError) -> [MountInfoEntry] {
    var entries: [MountInfoEntry] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: true).enumerated() {
      guard let entry = parseLine(line) else {
        throw CKError(.failed, "mountinfo line \(index + 1) is malformed: \(line)")
      }
      entries.append(entry)
    }
    return entries
  }

  /// Reads and parses the mount table of `pid` (default: this process).
  public static func read(pid: String = "self") throws -> [MountInfoEntry] {
    try parse(PseudoFile.read("/proc/\(pid)/mountinfo"))
  }

  static func parseLine(_ line: Substring) -> MountInfoEntry? {
    let fields = line.split(separator: " ", omittingEmptySubsequences: true)
    guard let separator = fields.firstIndex(of: "-"), separator >= 6, fields.count >= separator + 3
    else { return nil }
    guard let mountID = Int(fields[0]), let parentID = Int(fields[1]) else { return nil }
    let device = fields[2].split(separator: ":")
    guard device.count == 2, let major = Int(device[0]), let minor = Int(device[1]) else { return nil }
    return MountInfoEntry(
      mountID: mountID, parentID: parentID, major: major, minor: minor,
      root: unescape(fields[3]), mountPoint: unescape(fields[4]),
      mountOptions: fields[5].split(separator: ",").map(String.init),
      optionalFields: fields[6..<separator].map(String.init),
      fsType: String(fields[separator + 1]),
      source: unescape(fields[separator + 2]),
      superOptions: fields.count > separator + 3
        ? fields[separator + 3].split(separator: ",").map(String.init) : [])
  }

  /// The kernel escapes space, tab, newline and backslash as `\ooo` octal.
  static func unescape(_ field: Substring) -> String {
    guard field.contains("\\") else { return String(field) }
    var bytes: [UInt8] = []
    let utf8 = Array(field.utf8)
    var i = 0
    while i < utf8.count {
      if utf8[i] == UInt8(ascii: "\\"), i + 3 < utf8.count,
        let value = UInt8(String(decoding: utf8[(i + 1)...(i + 3)], as: UTF8.self), radix: 8)
      {
        bytes.append(value)
        i += 4
      } else {
        bytes.append(utf8[i])
        i += 1
      }
    }
    return String(decoding: bytes, as: UTF8.self)
  }
}
