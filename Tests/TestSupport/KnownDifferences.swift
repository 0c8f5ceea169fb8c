/// Differences between a container before its dump and after its restore that are known and
/// not fixed yet: the one list a round trip's snapshot diff is checked against. A line of the
/// diff that no entry matches fails the test. Each entry names its fixture (`name args`, or
/// `*` for every one), a regular expression a diff line must match, why it differs, and the
/// issue that tracks it.
public enum KnownDifferences {
  /// A known difference.
  public struct Entry: Sendable {
    public var fixture: String
    public var pattern: String
    public var reason: String
    public var issue: String
  }

  public static let entries: [Entry] = [
  ]

  /// The lines of `diff` no entry for `fixture` explains.
  public static func unexplained(_ diff: [String], fixture: String) -> [String] {
    let applicable = entries.filter { $0.fixture == "*" || $0.fixture == fixture || fixture.hasPrefix($0.fixture + " ") }
    let patterns = applicable.compactMap { try? Regex($0.pattern) }
    return diff.filter { line in !patterns.contains { line.contains($0) } }
  }
}
