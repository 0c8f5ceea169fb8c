/// `cgroups.json`: the container's cgroup subtrees with their settings, one per hierarchy
/// it used: the v2 tree, or on v1 the freezer hierarchy it was dumped from and each other
/// hierarchy (memory, pids, cpu, cpuset) where it had a cgroup of its own.
public struct CgroupTreeImage: Codable, Sendable, Equatable {
  /// The hierarchy the container was dumped from comes first.
  public var hierarchies: [CgroupHierarchyImage]

  public init(hierarchies: [CgroupHierarchyImage]) {
    self.hierarchies = hierarchies
  }
}

/// The container's subtree in one hierarchy.
public struct CgroupHierarchyImage: Codable, Sendable, Equatable {
  /// "v2", or "v1" with `controllers`.
  public var version: String
  /// The v1 controllers of the hierarchy (e.g. ["memory"]); empty for v2.
  public var controllers: [String]
  /// The container's top cgroup inside the hierarchy, e.g. `/web` (no mount point).
  public var root: String
  /// Every cgroup of the subtree, parents first, `.` being the top.
  public var groups: [CgroupGroupImage]

  public init(version: String, controllers: [String], root: String, groups: [CgroupGroupImage]) {
    self.version = version
    self.controllers = controllers
    self.root = root
    self.groups = groups
  }

  /// The key tasks use for their placement in this hierarchy: `v2` or the controllers.
  public var key: String { version == "v2" ? "v2" : controllers.joined(separator: ",") }
}

/// One cgroup of a subtree and the values of its control files, in writing order.
public struct CgroupGroupImage: Codable, Sendable, Equatable {
  /// Relative to the subtree's top (`.` for the top itself).
  public var path: String
  public var settings: [Setting]
  /// The processes (pids inside the container) in this cgroup, for hierarchies other than
  /// the dumped one; there each task's own `cgroup` says where it lives.
  public var processes: [Int32]

  public struct Setting: Codable, Sendable, Equatable {
    public var name: String
    public var value: String

    public init(name: String, value: String) {
      self.name = name
      self.value = value
    }
  }

  public init(path: String, settings: [Setting], processes: [Int32] = []) {
    self.path = path
    self.settings = settings
    self.processes = processes
  }
}
