import Glibc
import Linux
import Testing

@testable import Cgroup

/// Hierarchy discovery and name resolution on mount tables captured from real hosts.
struct DiscoveryTests {
  /// This kind of machine: v1 controllers under /sys/fs/cgroup/<ctrl>, v2 at .../unified.
  static let hybrid = """
    31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
    32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
    34 31 0:31 / /sys/fs/cgroup/cpuset rw,relatime - cgroup cgroup rw,cpuset
    35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
    37 31 0:34 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
    40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
    41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
    """

  /// A pure cgroup v2 host (systemd's default), with the hierarchy bind-mounted a second time.
  static let unified = """
    25 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
    30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
    90 25 0:26 /system.slice /mnt/cg rw,relatime shared:9 - cgroup2 cgroup2 rw
    """

  @Test func hybridHostHasV2AndV1Controllers() throws {
    let mounts = CgroupMounts(mountInfo: try MountInfo.parse(Self.hybrid))
    #expect(mounts.hierarchies.count == 6)
    #expect(mounts.unified?.mountPoint == "/sys/fs/cgroup/unified")
    #expect(mounts.v1("freezer")?.mountPoint == "/sys/fs/cgroup/freezer")
    #expect(mounts.v1("freezer")?.canFreeze == true)
    #expect(mounts.v1("memory")?.canFreeze == false)
    #expect(mounts.v1("name=systemd")?.controllers == ["name=systemd"])
    #expect(mounts.hierarchy(containing: "/sys/fs/cgroup/freezer/web/db")?.controllers == ["freezer"])
    #expect(mounts.hierarchy(containing: "/sys/fs/cgroup/freezerx") == nil)
    #expect(mounts.searchOrder.map(\.mountPoint).prefix(2) == ["/sys/fs/cgroup/unified", "/sys/fs/cgroup/freezer"])
  }

  @Test func unifiedHostListsTheHierarchyOnce() throws {
    let mounts = CgroupMounts(mountInfo: try MountInfo.parse(Self.unified))
    #expect(mounts.hierarchies.count == 1)
    #expect(mounts.unified?.mountPoint == "/sys/fs/cgroup")
    #expect(mounts.v1("freezer") == nil)
    #expect(mounts.hierarchy(containing: "/sys/fs/cgroup/web")?.version == .v2)
  }

  @Test func relativePaths() {
    let hierarchy = CgroupHierarchy(version: .v2, mountPoint: "/sys/fs/cgroup", controllers: [], mountedRoot: "/")
    let cgroup = Cgroup(hierarchy: hierarchy, path: "/sys/fs/cgroup/web/db")
    #expect(cgroup.relativePath == "web/db")
    #expect(cgroup.relative(to: "/sys/fs/cgroup/web") == "db")
    #expect(Cgroup(hierarchy: hierarchy, path: "/sys/fs/cgroup").relativePath == ".")
    #expect(Cgroup.normalize("/sys//fs/./cgroup/web/") == "/sys/fs/cgroup/web")
  }

  @Test func resolvesOnThisHost() throws {
    let mounts = try CgroupMounts.current()
    let scratch = try ScratchCgroupV2.make()
    defer { scratch.remove() }
    let byPath = try Cgroup.resolve(scratch.path, in: mounts)
    #expect(byPath.version == .v2)
    let byName = try Cgroup.resolve(scratch.name, in: mounts)
    #expect(byName.path == scratch.path)
  }

  @Test func resolvingANameInSeveralHierarchiesPrefersV2AndSaysSo() throws {
    let mounts = try CgroupMounts.current()
    let v2 = try ScratchCgroupV2.make()
    defer { v2.remove() }
    let v1 = "/sys/fs/cgroup/freezer/\(v2.name)"
    #expect(mkdir(v1, 0o755) == 0)
    defer { rmdir(v1) }
    var notices: [String] = []
    let chosen = try Cgroup.resolve(v2.name, in: mounts) { notices.append($0) }
    #expect(chosen.path == v2.path)
    #expect(notices.count == 1)
    #expect(notices.first?.contains(v1) == true)
  }

  @Test(arguments: [
    ("/sys/fs/cgroup/unified/ckcont-no-such-cgroup", "no such cgroup"),
    ("ckcont-no-such-cgroup", "no cgroup named ckcont-no-such-cgroup"),
    ("/sys/fs/cgroup/unified/cgroup.procs", "not a cgroup directory"),
    ("/tmp", "not under a cgroup mount"),
    ("/sys/fs/cgroup/unified/../freezer", "must not contain '..'"),
    ("", "empty cgroup name"),
  ])
  func badCgroupsAreRefusedClearly(spec: String, message: String) throws {
    let mounts = try CgroupMounts.current()
    let error = #expect(throws: CKError.self) { try Cgroup.resolve(spec, in: mounts) }
    #expect(error?.kind == .badInput)
    #expect(error?.message.contains(message) == true, "\(String(describing: error))")
  }

  @Test func processTreeIsArrangedDepthFirst() {
    func entry(_ pid: Int32, _ ppid: Int32) -> TaskEntry {
      TaskEntry(
        pid: pid, ppid: ppid, pgid: pid, sid: pid, state: "S", threads: [pid], cgroup: ".", comm: "x", command: "",
        depth: 9)
    }
    let arranged = TaskTree.arrange([entry(30, 10), entry(20, 1), entry(10, 1), entry(40, 30), entry(11, 10)])
    #expect(arranged.map(\.pid) == [10, 11, 30, 40, 20])
    #expect(arranged.map(\.depth) == [0, 1, 1, 2, 0])
  }
}

/// A bare scratch cgroup for resolution tests (no tasks).
struct ScratchCgroupV2 {
  let name: String
  var path: String { "/sys/fs/cgroup/unified/\(name)" }

  static func make() throws -> ScratchCgroupV2 {
    let scratch = ScratchCgroupV2(name: "ckcont-test-resolve-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
    guard mkdir(scratch.path, 0o755) == 0 else { throw CKError(.failed, "mkdir \(scratch.path)") }
    return scratch
  }

  func remove() { rmdir(path) }
}
