/// A resource limited by `setrlimit`/`prlimit64`; the raw value is the `RLIMIT_*` number.
public enum ResourceLimitKind: Int32, Codable, Hashable, Sendable, CaseIterable {
  case cpu = 0
  case fileSize = 1
  case data = 2
  case stack = 3
  case core = 4
  case residentSet = 5
  case processes = 6
  case openFiles = 7
  case lockedMemory = 8
  case addressSpace = 9
  case fileLocks = 10
  case pendingSignals = 11
  case messageQueue = 12
  case nice = 13
  case realtimePriority = 14
  case realtimeTimeout = 15

  /// The row name in `/proc/<pid>/limits`.
  public var procName: String {
    switch self {
    case .cpu: "Max cpu time"
    case .fileSize: "Max file size"
    case .data: "Max data size"
    case .stack: "Max stack size"
    case .core: "Max core file size"
    case .residentSet: "Max resident set"
    case .processes: "Max processes"
    case .openFiles: "Max open files"
    case .lockedMemory: "Max locked memory"
    case .addressSpace: "Max address space"
    case .fileLocks: "Max file locks"
    case .pendingSignals: "Max pending signals"
    case .messageQueue: "Max msgqueue size"
    case .nice: "Max nice priority"
    case .realtimePriority: "Max realtime priority"
    case .realtimeTimeout: "Max realtime timeout"
    }
  }
}

/// One row of `/proc/<pid>/limits`: a resource and its soft and hard limits.
public struct ResourceLimit: Codable, Hashable, Sendable {
  /// RLIM_INFINITY: the value of an `unlimited` limit.
  public static let unlimited = UInt64.max

  public var resource: ResourceLimitKind
  /// The soft (current) limit; ``unlimited`` for RLIM_INFINITY.
  public var soft: UInt64
  /// The hard (maximum) limit; ``unlimited`` for RLIM_INFINITY.
  public var hard: UInt64

  /// Creates a limit.
  public init(resource: ResourceLimitKind, soft: UInt64, hard: UInt64) {
    self.resource = resource
    self.soft = soft
    self.hard = hard
  }
}

/// Parser for `/proc/<pid>/limits`, the only way to learn another task's limits without
/// CAP_SYS_RESOURCE (see DESIGN.md: root here lacks it, so prlimit on other uids fails).
public enum ProcLimits {
  /// Parses the table; every one of the 16 resources must appear exactly once, in any order.
  public static func parse(_ text: String) throws(CKError) -> [ResourceLimit] {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
    guard let header = lines.first, header.hasPrefix("Limit") else {
      throw procParseError("limits", line: 1, lines.first ?? "", "no header")
    }
    var limits: [ResourceLimit] = []
    for (index, line) in lines.enumerated().dropFirst() where !line.isEmpty {
      // Names contain spaces and values are padded, so match the name, then split the rest:
      // soft, hard and an optional unit.
      guard let resource = ResourceLimitKind.allCases.first(where: { line.hasPrefix($0.procName + " ") })
      else { throw procParseError("limits", line: index + 1, line, "unknown resource") }
      let values = blankSeparatedFields(line.dropFirst(resource.procName.count))
      guard values.count == 2 || values.count == 3, let soft = limitValue(values[0]),
        let hard = limitValue(values[1])
      else { throw procParseError("limits", line: index + 1, line, "bad soft or hard value") }
      guard !limits.contains(where: { $0.resource == resource }) else {
        throw procParseError("limits", line: index + 1, line, "resource listed twice")
      }
      limits.append(ResourceLimit(resource: resource, soft: soft, hard: hard))
    }
    let missing = ResourceLimitKind.allCases.filter { kind in !limits.contains { $0.resource == kind } }
    guard missing.isEmpty else {
      throw procParseError("limits", "missing \(missing.map(\.procName).joined(separator: ", "))")
    }
    return limits.sorted { $0.resource.rawValue < $1.resource.rawValue }
  }

  /// Reads and parses the limits of `pid`, in RLIMIT_* order.
  public static func read(pid: Int32) throws -> [ResourceLimit] {
    try parse(PseudoFile.read("/proc/\(pid)/limits"))
  }

  private static func limitValue(_ text: Substring) -> UInt64? {
    text == "unlimited" ? ResourceLimit.unlimited : UInt64(text)
  }
}
