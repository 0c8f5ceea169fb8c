import Linux

/// One cgroup: a directory in a mounted hierarchy.
public struct Cgroup: Equatable, Sendable, CustomStringConvertible {
  public var hierarchy: CgroupHierarchy
  /// The absolute path of its directory, e.g. `/sys/fs/cgroup/unified/web/db`.
  public var path: String

  public init(hierarchy: CgroupHierarchy, path: String) {
    self.hierarchy = hierarchy
    self.path = path
  }

  public var version: CgroupVersion { hierarchy.version }
  public var isRoot: Bool { path == hierarchy.mountPoint }

  /// The path relative to the hierarchy's mount point: `web/db`, or `.` for the root.
  public var relativePath: String { relative(to: hierarchy.mountPoint) }

  /// This cgroup's path relative to the directory `ancestor`, `.` when it is `ancestor`.
  public func relative(to ancestor: String) -> String {
    if path == ancestor { return "." }
    let prefix = ancestor.hasSuffix("/") ? ancestor : ancestor + "/"
    return path.hasPrefix(prefix) ? String(path.dropFirst(prefix.count)) : path
  }

  public var description: String { path }

  /// The cgroup at a child path.
  public func child(_ name: String) -> Cgroup {
    Cgroup(hierarchy: hierarchy, path: path + "/" + name)
  }

  /// The file of this cgroup called `name` (e.g. `cgroup.procs`).
  public func file(_ name: String) -> String { path + "/" + name }

  /// Resolves a user-given cgroup: an absolute path under a cgroup mount, or a name relative
  /// to the mounted hierarchies (v2 first, then the v1 freezer hierarchy, then other v1).
  /// `notice` receives a line when the name exists in more than one hierarchy.
  public static func resolve(
    _ spec: String, in mounts: CgroupMounts, notice: (String) -> Void = { _ in }
  ) throws(CKError) -> Cgroup {
    guard !spec.isEmpty else { throw CKError(.badInput, "empty cgroup name") }
    guard !spec.split(separator: "/").contains("..") else {
      throw CKError(.badInput, "cgroup path \(spec) must not contain '..'")
    }
    if spec.hasPrefix("/") {
      let path = normalize(spec)
      guard let hierarchy = mounts.hierarchy(containing: path) else {
        let known = mounts.hierarchies.map(\.mountPoint).joined(separator: ", ")
        throw CKError(
          .badInput, "\(spec) is not under a cgroup mount",
          hint: known.isEmpty ? "no cgroup filesystem is mounted" : "cgroup mounts: \(known)")
      }
      let cgroup = Cgroup(hierarchy: hierarchy, path: path)
      try cgroup.checkExists(as: spec)
      return cgroup
    }
    let relative = normalize("/" + spec).dropFirst()
    let candidates = mounts.searchOrder.map {
      Cgroup(hierarchy: $0, path: relative.isEmpty ? $0.mountPoint : $0.mountPoint + "/" + relative)
    }.filter { PseudoFile.isDirectory($0.path) }
    guard let chosen = candidates.first else {
      let looked = mounts.searchOrder.map(\.mountPoint).joined(separator: ", ")
      throw CKError(
        .badInput, "no cgroup named \(spec)",
        hint: looked.isEmpty ? "no cgroup filesystem is mounted" : "looked under \(looked); give an absolute path")
    }
    if candidates.count > 1 {
      let others = candidates.dropFirst().map { "\($0.path) (\($0.hierarchy.label))" }
      notice(
        "note: \(spec) exists in several hierarchies; using \(chosen.path) (\(chosen.hierarchy.label)), "
          + "not \(others.joined(separator: ", ")); pass an absolute path to choose")
    }
    return chosen
  }

  func checkExists(as spec: String) throws(CKError) {
    guard PseudoFile.exists(path) else {
      throw CKError(.badInput, "no such cgroup: \(spec)", hint: "create it with mkdir or check the path")
    }
    guard PseudoFile.isDirectory(path), PseudoFile.exists(file("cgroup.procs")) else {
      throw CKError(
        .badInput, "\(spec) is not a cgroup directory", hint: "give a directory under \(hierarchy.mountPoint)")
    }
  }

  /// Collapses `//`, `/./` and a trailing `/` (`..` was refused before).
  static func normalize(_ path: String) -> String {
    let parts = path.split(separator: "/").filter { $0 != "." }
    return "/" + parts.joined(separator: "/")
  }
}
