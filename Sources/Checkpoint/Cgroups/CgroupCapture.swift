import Bundle
import Cgroup
import Glibc
import Linux

/// Saves the container's cgroup subtrees and their settings: the dumped subtree, and every
/// other mounted hierarchy (v2 beside a dumped v1 one, each v1 controller beside either,
/// named ones such as name=systemd) in which the container's root process has a cgroup of
/// its own, as runc makes one in each, with each process's place in it, the empty cgroups
/// below it, and the settings ckcont knows (memory, pids, cpu, cpuset; devices, blkio,
/// cpuacct, named hierarchies: the place only).
struct CgroupCapture {
  /// The dumped cgroup.
  let cgroup: Cgroup
  /// The container's processes: pid on the host and pid inside, the root process first.
  let processes: [(host: Int32, inner: Int32)]

  func image() throws -> CgroupTreeImage {
    var hierarchies = [try subtree(cgroup.hierarchy, top: cgroup, placement: nil)]
    guard let root = processes.first else { return CgroupTreeImage(hierarchies: hierarchies) }
    let mounts = try CgroupMounts.current()
    for hierarchy in mounts.hierarchies where hierarchy.mountPoint != cgroup.hierarchy.mountPoint {
      // A container without a cgroup of its own there shares ckcont's (or the root's), whose
      // settings are not the container's to carry.
      guard let top = try mounts.cgroup(of: root.host, in: hierarchy), !top.isRoot,
        top != (try mounts.cgroup(of: getpid(), in: hierarchy))
      else { continue }
      var placement: [String: [Int32]] = [:]
      for process in processes {
        guard let own = try mounts.cgroup(of: process.host, in: hierarchy),
          own == top || own.path.hasPrefix(top.path + "/")
        else {
          throw CKError(
            .failed, "process \(process.host) is outside the container's \(hierarchy.label) cgroup \(top.path)",
            hint: "move it into \(top.path) or below")
        }
        placement[own.relative(to: top.path), default: []].append(process.inner)
      }
      hierarchies.append(try subtree(hierarchy, top: top, placement: placement))
    }
    return CgroupTreeImage(hierarchies: hierarchies)
  }

  /// Every cgroup under `top` with its settings (and processes, outside the dumped hierarchy).
  func subtree(_ hierarchy: CgroupHierarchy, top: Cgroup, placement: [String: [Int32]]?) throws -> CgroupHierarchyImage
  {
    let groups = try top.subtree().map { group in
      let relative = group.relative(to: top.path)
      return CgroupGroupImage(
        path: relative,
        settings: try group.settings().map { CgroupGroupImage.Setting(name: $0.name, value: $0.value) },
        processes: placement?[relative] ?? [])
    }
    return CgroupHierarchyImage(
      version: hierarchy.version.rawValue, controllers: hierarchy.version == .v1 ? hierarchy.controllers : [],
      root: "/" + (top.isRoot ? "" : top.relativePath), groups: groups)
  }
}
