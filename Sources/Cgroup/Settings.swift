import Glibc
import Linux

/// One control file's value, e.g. `memory.max` = `268435456`.
public struct CgroupSetting: Equatable, Sendable {
  public var name: String
  public var value: String

  public init(name: String, value: String) {
    self.name = name
    self.value = value
  }
}

/// The limits and weights of a cgroup that a checkpoint carries: for each controller the
/// control files a container runtime sets, in the order they must be written (cpuset's cpus
/// and mems before anything can join a v1 cpuset; a v1 memsw limit after the memory limit).
extension Cgroup {
  static let v2Files: [String: [String]] = [
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "cpu": ["cpu.weight", "cpu.max"],
    "memory": ["memory.min", "memory.low", "memory.high", "memory.max", "memory.swap.max"],
    "pids": ["pids.max"],
  ]
  static let v1Files: [String: [String]] = [
    "cpuset": ["cpuset.cpus", "cpuset.mems"],
    "cpu": ["cpu.shares", "cpu.cfs_period_us", "cpu.cfs_quota_us"],
    "memory": ["memory.limit_in_bytes", "memory.soft_limit_in_bytes", "memory.memsw.limit_in_bytes"],
    "pids": ["pids.max"],
  ]
  /// Controllers whose settings ckcont saves, in the order they are written.
  static let controllerOrder = ["cpuset", "cpu", "memory", "pids", "hugetlb"]

  /// True for the control files ``settings()`` saves: what a bundle may ask to write.
  public static func isSavedSetting(_ name: String) -> Bool {
    if name == "cgroup.subtree_control" { return true }
    if name.hasPrefix("hugetlb."), name.hasSuffix(".max"), !name.contains("/") { return true }
    return v2Files.values.contains { $0.contains(name) } || v1Files.values.contains { $0.contains(name) }
  }

  /// The saved settings of this cgroup. v2: the files of the controllers its parent enabled
  /// for it (its `cgroup.controllers`), then `cgroup.subtree_control`; v1: the files of the
  /// hierarchy's controllers. The root cgroup has none: it is not the container's.
  public func settings() throws(SyscallError) -> [CgroupSetting] {
    guard !isRoot else { return [] }
    var names: [String] = []
    if version == .v2 {
      let enabled = Set(
        try PseudoFile.read(file("cgroup.controllers")).split(whereSeparator: \.isWhitespace).map(String.init))
      for controller in Self.controllerOrder where enabled.contains(controller) {
        if controller == "hugetlb" {
          names += try PseudoFile.list(path).filter { $0.hasPrefix("hugetlb.") && $0.hasSuffix(".max") }.sorted()
        } else {
          names += Self.v2Files[controller] ?? []
        }
      }
    } else {
      for controller in Self.controllerOrder where hierarchy.controllers.contains(controller) {
        names += Self.v1Files[controller] ?? []
      }
    }
    var result: [CgroupSetting] = []
    for name in names where PseudoFile.exists(file(name)) {
      let value = try PseudoFile.readValue(file(name))
      result.append(CgroupSetting(name: name, value: value))
    }
    if version == .v2 {
      let control = try PseudoFile.read(file("cgroup.subtree_control")).split(whereSeparator: \.isWhitespace)
      if !control.isEmpty {
        result.append(
          CgroupSetting(name: "cgroup.subtree_control", value: control.map { "+" + $0 }.joined(separator: " ")))
      }
    }
    return result
  }

  /// Writes saved settings in order, skipping those that already hold the value (a fresh
  /// cgroup's defaults), so that only real limits are written.
  public func apply(_ settings: [CgroupSetting]) throws(CKError) {
    for setting in settings {
      guard Self.isSavedSetting(setting.name), setting.value.utf8.count < 4096, !setting.value.contains("\n") else {
        throw CKError(.badInput, "the bundle asks to write \(setting.name) of a cgroup, which ckcont never saves")
      }
      let path = file(setting.name)
      if setting.name != "cgroup.subtree_control",
        let current = try? PseudoFile.readValue(path), current == setting.value
      {
        continue
      }
      do {
        try PseudoFile.write(path, setting.value)
      } catch {
        throw CKError(
          .failed, "cannot set \(setting.name) of \(self.path) to \(setting.value): \(error)",
          hint: "the host must offer the controllers and limits the container had")
      }
    }
  }
}
