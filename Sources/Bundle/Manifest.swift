import Foundation
import Glibc

/// The first member of every bundle, `manifest.json`: what the bundle is, where and when it was
/// taken, and the list of members that follow with their sizes. Decoded from untrusted bytes
/// by ``decode(_:)``, which checks every field.
public struct Manifest: Codable, Sendable, Equatable {
  /// A format version: readers refuse another major version and accept any minor one.
  public struct Version: Codable, Sendable, Equatable {
    /// Incremented when older readers could misread the bundle.
    public var major: Int
    /// Incremented for additions that older readers can ignore.
    public var minor: Int

    /// A version value.
    public init(major: Int, minor: Int) {
      self.major = major
      self.minor = minor
    }
  }

  /// The CPU state format of the source machine; a restore needs a CPU that can load it.
  public struct CPU: Codable, Sendable, Equatable {
    /// XCR0: the mask of XSAVE features in use, in the saved register state.
    public var xsaveFeatures: UInt64
    /// The size in bytes of one XSAVE area for those features.
    public var xsaveSize: Int

    /// A CPU description.
    public init(xsaveFeatures: UInt64, xsaveSize: Int) {
      self.xsaveFeatures = xsaveFeatures
      self.xsaveSize = xsaveSize
    }
  }

  /// One member that follows the manifest, with its exact size.
  public struct Member: Codable, Sendable, Equatable {
    /// The member's path in the tar.
    public var name: String
    /// Its size in bytes.
    public var size: Int

    /// A member entry.
    public init(name: String, size: Int) {
      self.name = name
      self.size = size
    }
  }

  /// Always ``BundleFormat/magic``.
  public var magic: String
  /// The format version the bundle was written in.
  public var formatVersion: Version
  /// The version of the ckcont that wrote the bundle.
  public var toolVersion: String
  /// `uname -r` of the source machine.
  public var kernelRelease: String
  /// The source machine's CPU state format.
  public var cpu: CPU
  /// The cgroup that was checkpointed.
  public var sourceCgroup: String
  /// When the checkpoint was taken, ISO-8601 in UTC without fractions (`2025-01-31T12:00:00Z`).
  public var created: String
  /// Every member after the manifest, in stream order, except the `checksums.json` trailer.
  public var members: [Member]
  /// What a reader must understand to restore the bundle faithfully, beyond format 1.0 (see
  /// ``BundleFormat/knownRequirements``): a reader that does not know one refuses the bundle
  /// rather than drop what it does not know (a seccomp sandbox, say). Nil: nothing.
  public var requires: [String]?
  /// The bundle this one was dumped against (`dump --parent`): its pages that did not change
  /// are named in this one (``VMAImage/precopiedPages``), not saved.
  public var parent: Parent?

  /// A parent bundle: where it was (as given to the dump) and its identity
  /// (``BundleReader/identity``), which the restore checks.
  public struct Parent: Codable, Sendable, Equatable {
    public var path: String
    public var identity: String
    public init(path: String, identity: String) { (self.path, self.identity) = (path, identity) }
  }

  /// A manifest in the current format version.
  public init(
    toolVersion: String, kernelRelease: String, cpu: CPU, sourceCgroup: String, created: Date,
    members: [Member]
  ) {
    magic = BundleFormat.magic
    formatVersion = Version(major: BundleFormat.majorVersion, minor: BundleFormat.minorVersion)
    self.toolVersion = toolVersion
    self.kernelRelease = kernelRelease
    self.cpu = cpu
    self.sourceCgroup = sourceCgroup
    self.created = created.formatted(.iso8601)
    self.members = members
  }

  /// `created` as a date, or nil if it is not the `YYYY-MM-DDTHH:MM:SSZ` a dump writes.
  /// Read by hand: Foundation's ISO-8601 parser first sets up a calendar, ~4 ms of every
  /// restore (perf, release build), for one timestamp.
  public var creationDate: Date? {
    let digits = Array(created.utf8)
    guard digits.count == 20, digits[4] == UInt8(ascii: "-"), digits[7] == UInt8(ascii: "-"),
      digits[10] == UInt8(ascii: "T"), digits[13] == UInt8(ascii: ":"), digits[16] == UInt8(ascii: ":"),
      digits[19] == UInt8(ascii: "Z")
    else { return nil }
    func number(_ from: Int, _ count: Int) -> Int32? {
      var value: Int32 = 0
      for digit in digits[from..<from + count] {
        guard (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(digit) else { return nil }
        value = value * 10 + Int32(digit - UInt8(ascii: "0"))
      }
      return value
    }
    guard let year = number(0, 4), let month = number(5, 2), let day = number(8, 2), let hour = number(11, 2),
      let minute = number(14, 2), let second = number(17, 2), (1...12).contains(month), (1...31).contains(day),
      hour < 24, minute < 60, second < 61
    else { return nil }
    var fields = tm()
    fields.tm_year = year - 1900
    fields.tm_mon = month - 1
    fields.tm_mday = day
    fields.tm_hour = hour
    fields.tm_min = minute
    fields.tm_sec = second
    // timegm normalises a day past the month's end: such a date is not one.
    let seconds = timegm(&fields)
    guard fields.tm_mday == day, fields.tm_mon == month - 1 else { return nil }
    return Date(timeIntervalSince1970: TimeInterval(seconds))
  }

  /// The JSON text of the manifest, pretty-printed so that `tar xf` leaves a readable file.
  public func encoded() throws -> [UInt8] {
    try Array(BundleFormat.jsonEncoder.encode(self))
  }

  /// Decodes and validates a manifest. The version is checked before the rest is decoded, so
  /// that a bundle from a newer major version gets "upgrade ckcont", not a decoding error.
  public static func decode(_ bytes: [UInt8]) throws -> Manifest {
    struct Probe: Decodable {
      var magic: String
      var formatVersion: Version
    }
    let probe = try BundleFormat.decodeJSON(
      Probe.self, from: bytes, member: BundleFormat.manifestName)
    guard probe.magic == BundleFormat.magic else {
      throw BundleError(
        "not a ckcont bundle: manifest magic is \(String(probe.magic.prefix(64)).debugDescription)")
    }
    let current = BundleFormat.majorVersion
    let major = probe.formatVersion.major
    guard major == current else {
      throw BundleError(
        major > current
          ? "bundle format \(major).x is newer than this ckcont (\(current).x): upgrade ckcont"
          : "bundle format \(major).x is older than any format this ckcont (\(current).x) reads")
    }
    let manifest = try BundleFormat.decodeJSON(
      Manifest.self, from: bytes, member: BundleFormat.manifestName)
    try manifest.validate()
    // Only readers refuse what they do not know: a writer may be a newer ckcont.
    let unknown = (manifest.requires ?? []).filter { !BundleFormat.knownRequirements.contains($0) }
    guard unknown.isEmpty else {
      let names = unknown.prefix(8).map { String($0.prefix(64)).debugDescription }.joined(separator: ", ")
      throw BundleError(
        "the bundle needs \(names), which this ckcont does not know: restore it with the ckcont that wrote it (\(String(manifest.toolVersion.prefix(64)))) or a newer one"
      )
    }
    return manifest
  }

  /// Checks every field of a decoded manifest; the writer checks its own manifest the same way.
  func validate() throws {
    func fail(_ problem: String) -> BundleError {
      BundleError("\(BundleFormat.manifestName): \(problem)")
    }
    guard formatVersion.minor >= 0 else {
      throw fail("negative minor version \(formatVersion.minor)")
    }

    for (field, value) in [
      ("toolVersion", toolVersion), ("kernelRelease", kernelRelease),
      ("sourceCgroup", sourceCgroup), ("created", created),
    ] {
      guard value.utf8.count <= BundleFormat.maxStringLength else {
        throw fail(
          "\(field) is \(value.utf8.count) bytes long, the limit is \(BundleFormat.maxStringLength)"
        )
      }
    }
    guard creationDate != nil else {
      throw fail("created \(created.debugDescription) is not an ISO-8601 time")
    }
    guard (0...BundleFormat.maxXsaveSize).contains(cpu.xsaveSize) else {
      throw fail("cpu.xsaveSize \(cpu.xsaveSize) is outside 0...\(BundleFormat.maxXsaveSize)")
    }
    guard members.count <= BundleFormat.maxMemberCount else {
      throw fail("\(members.count) members, the limit is \(BundleFormat.maxMemberCount)")
    }
    var seen = Set<String>()
    for member in members {
      if let problem = TarHeader.nameProblem(member.name, maxLength: TarWriter.maxNameLength) {
        throw fail("member list: \(problem)")
      }
      guard member.name != BundleFormat.manifestName, member.name != BundleFormat.checksumsName
      else {
        throw fail("member list: '\(member.name)' is reserved")
      }
      guard seen.insert(member.name).inserted else {
        throw fail("member list: '\(member.name)' appears twice")
      }
      guard (0...BundleFormat.maxMemberSize).contains(member.size) else {
        throw fail(
          "member list: '\(member.name)' has size \(member.size), outside 0...\(BundleFormat.maxMemberSize)"
        )
      }
    }
  }
}

/// The `checksums.json` trailer: the XXH3-128 of every member before it, in stream order.
struct Checksums: Codable, Equatable {
  struct Entry: Codable, Equatable {
    var name: String
    /// 32 lower-case hex digits: the canonical (big-endian) digest, as `xxhsum -H2` prints it.
    var digest: String
  }
  /// The one algorithm this version writes and reads.
  static let currentAlgorithm = "xxh3-128"
  /// Always ``currentAlgorithm``; names the algorithm so that a later version can change it.
  var algorithm = Checksums.currentAlgorithm
  var members: [Entry]

  /// Decodes a trailer. The algorithm is checked before the rest is decoded, so that a trailer
  /// written with another algorithm gets a message naming it, not a decoding error.
  static func decode(_ bytes: [UInt8]) throws -> Checksums {
    struct Probe: Decodable {
      var algorithm: String
    }
    let probe = try BundleFormat.decodeJSON(
      Probe.self, from: bytes, member: BundleFormat.checksumsName)
    guard probe.algorithm == currentAlgorithm else {
      throw BundleError(
        "\(BundleFormat.checksumsName): unknown algorithm '\(probe.algorithm.prefix(40))': this ckcont verifies only \(currentAlgorithm)"
      )
    }
    return try BundleFormat.decodeJSON(
      Checksums.self, from: bytes, member: BundleFormat.checksumsName)
  }
}
