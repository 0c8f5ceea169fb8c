import Glibc
import Linux

/// Kernel probes that need a cgroup: freezing v2 and v1, and clone3 into a v2 cgroup.
/// Each works in a scratch cgroup that it removes again.
public enum CgroupProbe {
  /// Every cgroup-related probe, given the mounted hierarchies.
  public static func all(_ mounts: CgroupMounts) -> [Probe] {
    let v2 = mounts.unified
    let v1 = mounts.v1("freezer")
    return [
      v2.map { freezeProbe($0) }
        ?? Probe("cgroup v2 freeze", essential: false, available: false, detail: "no cgroup2 mount"),
      v1.map { freezeProbe($0) }
        ?? Probe("cgroup v1 freezer", essential: false, available: false, detail: "freezer controller not mounted"),
      v2.map { hierarchy in
        withScratchCgroup(hierarchy) { KernelProbe.clone3IntoCgroup(cgroupDirectory: $0.path) }
          ?? Probe(
            "clone3 set_tid + CLONE_INTO_CGROUP", essential: true, available: false,
            detail: "cannot create a scratch cgroup under \(hierarchy.mountPoint)")
      } ?? Probe("clone3 set_tid + CLONE_INTO_CGROUP", essential: true, available: false, detail: "no cgroup2 mount"),
      librarysView(),
    ]
  }

  /// libcgroup's own view of the mounted controllers, a cross-check of our discovery.
  static func librarysView() -> Probe {
    do {
      let controllers = try Libcgroup.mountedControllers().map(\.controller)
      return Probe(
        "libcgroup controllers", essential: false, available: true,
        detail: controllers.isEmpty ? "none mounted" : controllers.joined(separator: ", "))
    } catch {
      return Probe("libcgroup controllers", essential: false, available: false, detail: "\(error)")
    }
  }

  static func freezeProbe(_ hierarchy: CgroupHierarchy) -> Probe {
    let name = hierarchy.version == .v2 ? "cgroup v2 freeze" : "cgroup v1 freezer"
    let result = withScratchCgroup(hierarchy) { cgroup -> Probe in
      do {
        let report = try Freezer.freeze(cgroup, timeout: 2)
        try Freezer.thaw(cgroup)
        return Probe(
          name, essential: false, available: true,
          detail: "\(hierarchy.mountPoint): froze an empty cgroup in \(String(format3(report.seconds * 1000))) ms")
      } catch {
        return Probe(name, essential: false, available: false, detail: "\(error)")
      }
    }
    return result
      ?? Probe(
        name, essential: false, available: false, detail: "cannot create a scratch cgroup under \(hierarchy.mountPoint)"
      )
  }

  /// Runs `body` on a fresh cgroup `ckcont-probe-<pid>` under the hierarchy's root.
  static func withScratchCgroup<T>(_ hierarchy: CgroupHierarchy, _ body: (Cgroup) -> T) -> T? {
    let path = "\(hierarchy.mountPoint)/ckcont-probe-\(getpid())"
    guard mkdir(path, 0o755) == 0 || errno == EEXIST else { return nil }
    defer { rmdir(path) }
    return body(Cgroup(hierarchy: hierarchy, path: path))
  }

  static func format3(_ value: Double) -> String {
    let scaled = (value * 1000).rounded() / 1000
    return "\(scaled)"
  }
}
