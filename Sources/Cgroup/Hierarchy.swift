import Linux

/// Which cgroup interface a hierarchy speaks.
public enum CgroupVersion: String, Codable, Sendable {
  case v1, v2
}

/// One mounted cgroup hierarchy: the v2 unified tree, or a v1 tree with its controllers.
public struct CgroupHierarchy: Equatable, Sendable {
  public var version: CgroupVersion
  public var mountPoint: String
  /// v1: the controllers bound to this hierarchy (from the mount's super options, including
  /// `name=` hierarchies such as `name=systemd`). v2: empty; read `cgroup.controllers`.
  public var controllers: [String]
  /// The cgroup that is mounted at `mountPoint` (`/` unless inside a cgroup namespace or a
  /// bind mount of a subtree).
  public var mountedRoot: String

  /// True for a v1 hierarchy that carries the freezer controller, and for every v2 tree.
  public var canFreeze: Bool { version == .v2 || controllers.contains("freezer") }

  /// A short label for messages: `cgroup v2` or `cgroup v1 (freezer)`.
  public var label: String {
    version == .v2 ? "cgroup v2" : "cgroup v1 (\(controllers.joined(separator: ",")))"
  }
}

/// The cgroup hierarchies mounted in this mount namespace, discovered from mountinfo.
public struct CgroupMounts: Sendable {
  public var hierarchies: [CgroupHierarchy]

  /// Cgroup options that are mount flags, not controllers.
  static let v1NonControllerOptions: Set<String> = [
    "rw", "ro", "noprefix", "clone_children", "xattr", "cpuset_v2_mode", "favordynmods",
  ]

  public init(hierarchies: [CgroupHierarchy]) {
    self.hierarchies = hierarchies
  }

  /// The hierarchies of a parsed mount table. A hierarchy mounted twice is listed once,
  /// at its first mount point.
  public init(mountInfo: [MountInfoEntry]) {
    var seen: Set<String> = []
    var found: [CgroupHierarchy] = []
    for entry in mountInfo where entry.fsType == "cgroup" || entry.fsType == "cgroup2" {
      let key = "\(entry.major):\(entry.minor)"
      guard seen.insert(key).inserted else { continue }
      if entry.fsType == "cgroup2" {
        found.append(
          CgroupHierarchy(version: .v2, mountPoint: entry.mountPoint, controllers: [], mountedRoot: entry.root))
      } else {
        let controllers = entry.superOptions.filter {
          !Self.v1NonControllerOptions.contains($0) && !$0.hasPrefix("release_agent=")
        }
        found.append(
          CgroupHierarchy(
            version: .v1, mountPoint: entry.mountPoint, controllers: controllers, mountedRoot: entry.root))
      }
    }
    hierarchies = found
  }

  /// The hierarchies of this process's mount namespace.
  public static func current() throws -> CgroupMounts {
    CgroupMounts(mountInfo: try MountInfo.read())
  }

  /// The unified (v2) hierarchy, if mounted.
  public var unified: CgroupHierarchy? { hierarchies.first { $0.version == .v2 } }

  /// The v1 hierarchy carrying `controller`, if mounted.
  public func v1(_ controller: String) -> CgroupHierarchy? {
    hierarchies.first { $0.version == .v1 && $0.controllers.contains(controller) }
  }

  /// The hierarchy whose mount point contains `path` (the longest such mount point).
  public func hierarchy(containing path: String) -> CgroupHierarchy? {
    hierarchies
      .filter { path == $0.mountPoint || path.hasPrefix($0.mountPoint == "/" ? "/" : $0.mountPoint + "/") }
      .max { $0.mountPoint.count < $1.mountPoint.count }
  }

  /// Where a relative cgroup name is looked for: v2 first, then the v1 freezer hierarchy,
  /// then the other v1 hierarchies.
  public var searchOrder: [CgroupHierarchy] {
    let v2 = hierarchies.filter { $0.version == .v2 }
    let freezer = hierarchies.filter { $0.version == .v1 && $0.controllers.contains("freezer") }
    let others = hierarchies.filter { $0.version == .v1 && !$0.controllers.contains("freezer") }
    return v2 + freezer + others
  }
}

extension CgroupMounts {
  /// The cgroup `pid` belongs to in `hierarchy`, from /proc/<pid>/cgroup; nil when the
  /// hierarchy is not listed there or is mounted from a subtree (paths would not match).
  public func cgroup(of pid: Int32, in hierarchy: CgroupHierarchy) throws(SyscallError) -> Cgroup? {
    guard hierarchy.mountedRoot == "/" else { return nil }
    let wanted = Set(hierarchy.controllers)
    for line in try PseudoFile.read("/proc/\(pid)/cgroup").split(separator: "\n") {
      let fields = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
      guard fields.count == 3 else { continue }
      let controllers = Set(fields[1].split(separator: ",").map(String.init))
      let matches = hierarchy.version == .v2 ? fields[0] == "0" && fields[1].isEmpty : controllers == wanted
      guard matches else { continue }
      let path = String(fields[2])
      return Cgroup(hierarchy: hierarchy, path: path == "/" ? hierarchy.mountPoint : hierarchy.mountPoint + path)
    }
    return nil
  }
}
