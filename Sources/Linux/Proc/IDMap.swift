import Glibc

/// `/proc/<pid>/uid_map` and `gid_map`: how the ids of a process's user namespace map to the
/// reader's, one range per line.
public enum ProcIDMap {
  /// One line: `count` ids from `inside` (the namespace's) are `outside` on (the reader's).
  public struct Range: Equatable, Sendable {
    public var inside: UInt32
    public var outside: UInt32
    public var count: UInt32

    public init(inside: UInt32, outside: UInt32, count: UInt32) {
      self.inside = inside
      self.outside = outside
      self.count = count
    }
  }

  /// Reads `/proc/<pid>/<file>` (`uid_map` or `gid_map`).
  public static func read(pid: Int32, _ file: String) throws -> [Range] {
    let path = "/proc/\(pid)/\(file)"
    let text = try PseudoFile.read(path)
    guard let ranges = parse(text) else {
      throw procParseError(path, "not three numbers per line: \(text.prefix(200))")
    }
    return ranges
  }

  /// The ranges of a map's text, nil when a line is not three numbers.
  public static func parse(_ text: String) -> [Range]? {
    var ranges: [Range] = []
    for line in text.split(separator: "\n") {
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard fields.count == 3, let inside = UInt32(fields[0]), let outside = UInt32(fields[1]),
        let count = UInt32(fields[2])
      else { return nil }
      ranges.append(Range(inside: inside, outside: outside, count: count))
    }
    return ranges
  }

  /// Whether `setgroups(2)` is allowed in the process's user namespace (`/proc/<pid>/setgroups`).
  public static func setgroupsAllowed(pid: Int32) throws(SyscallError) -> Bool {
    try PseudoFile.read("/proc/\(pid)/setgroups").hasPrefix("allow")
  }
}
