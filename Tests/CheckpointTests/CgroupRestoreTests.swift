import Foundation
import Glibc
import TestSupport
import Testing

/// The cgroup side of a container: nested placement, the limits of the subtree (v2 and the
/// v1 memory/pids/cpu hierarchies), restoring under another root, refusing a busy target.
@Suite(.serialized)
struct CgroupRestoreTests {
  /// A container in the host's pid namespace spread over nested cgroups: every process comes
  /// back with its pid, in the same relative cgroup.
  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func nestedCgroupsAndHostPidsComeBack(version: ScratchCgroup.Version) throws {
    let container = try FixtureContainer(
      "swarm", ["-", "{cgroup}", "{cgroup}:pause:2", "{cgroup}/a:pause:2", "{cgroup}/a/b:pause:3"], version: version,
      ownNamespaces: false, children: ["a/b"])
    defer { container.destroy() }
    try container.waitReady()
    let placement = container.cgroup.placement()
    #expect(placement.count == 8)
    let dump = container.dump()
    try #require(dump.status == 0, "\(dump.output)")
    try container.waitEmpty()
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    #expect(container.cgroup.placement() == placement)
    #expect(container.restoredPid == container.dumpedPids.min())
  }

  /// A container killed the way runtimes and systemd kill one (v2: cgroup.kill; v1: SIGKILL
  /// to every task) comes back into the same, still existing cgroup. On v2 the kernel kills
  /// at birth every child cloned into a cgroup once killed (CLONE_INTO_CGROUP), however long
  /// ago: the restore must get its tasks there another way.
  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func aKilledContainerComesBackIntoItsCgroup(version: ScratchCgroup.Version) throws {
    let container = try FixtureContainer("regs", ["read-pipe"], version: version)
    defer { container.destroy() }
    try container.waitReady()
    let dump = container.dump(["--leave-running"])
    try #require(dump.status == 0, "\(dump.output)")
    if version == .v2 {
      try container.cgroup.set("cgroup.kill", "1")
    } else {
      for pid in container.cgroup.allPids() { kill(pid, SIGKILL) }
    }
    try container.waitEmpty()
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    #expect(container.cgroup.allPids() == [container.restoredPid])
    #expect(try container.terminateRestored() == 0, "\(container.log)")
    #expect(container.log.contains("PASS regs"), "\(container.log)")
  }

  /// v2: the subtree is made again with its controllers enabled and its limits (hugetlb is
  /// the one controller this machine's v2 tree offers), every process in its place.
  @Test func v2SubtreeComesBackWithItsLimits() throws {
    let hugetlb = try RootController("hugetlb")
    defer { hugetlb.restore() }
    let container = try FixtureContainer(
      "swarm", ["-", "{cgroup}/init", "{cgroup}/a/b:pause:2", "{cgroup}/a/c:pause:1"], ownNamespaces: false,
      children: ["init", "a/b", "a/c"])
    defer { container.destroy() }
    try container.waitReady()
    let scratch = container.cgroup
    // Every process sits in a leaf now, so the inner cgroups may enable controllers.
    try scratch.set("cgroup.subtree_control", "+hugetlb")
    try scratch.set("cgroup.subtree_control", "+hugetlb", in: "a")
    try scratch.set("hugetlb.2MB.max", "8388608", in: "a")
    try scratch.set("hugetlb.2MB.max", "2097152", in: "a/b")
    let placement = scratch.placement()
    let dump = container.dump()
    try #require(dump.status == 0, "\(dump.output)")
    try container.waitEmpty()
    scratch.destroy()
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    #expect(scratch.placement() == placement)
    #expect(scratch.read("cgroup.subtree_control") == "hugetlb\n")
    #expect(scratch.read("cgroup.subtree_control", in: "a") == "hugetlb\n")
    #expect(scratch.read("hugetlb.2MB.max", in: "a") == "8388608\n")
    #expect(scratch.read("hugetlb.2MB.max", in: "a/b") == "2097152\n")
    #expect(scratch.read("hugetlb.2MB.max", in: "a/c") == scratch.read("hugetlb.2MB.max", in: "init"), "no limit")
  }

  /// v1: the container has cgroups of its own in the memory, pids and cpu hierarchies, laid
  /// out differently from its freezer cgroups. The restore makes them again with their limits
  /// and every process in its place: first at the dumped paths, then under --cgroup-root.
  @Test func v1HierarchiesComeBackWithTheirLimitsAndUnderAnotherRoot() throws {
    let memory = try ScratchCgroup(.v1, controller: "memory")
    let pids = try ScratchCgroup(.v1, controller: "pids")
    let cpu = try ScratchCgroup(.v1, controller: "cpu")
    defer { for scratch in [memory, pids, cpu] { scratch.destroy() } }
    try memory.makeChildren("m1/m2")
    try pids.makeChildren("p1")
    try memory.set("memory.limit_in_bytes", "268435456")
    try memory.set("memory.limit_in_bytes", "134217728", in: "m1")
    try memory.set("memory.limit_in_bytes", "67108864", in: "m1/m2")
    try pids.set("pids.max", "50")
    try pids.set("pids.max", "20", in: "p1")
    try cpu.set("cpu.shares", "512")
    let rootDirs = "{cgroup},\(memory.path),\(pids.path),\(cpu.path)"
    let container = try FixtureContainer(
      "swarm",
      [
        "-", rootDirs, "{cgroup}/a,\(memory.path)/m1,\(pids.path)/p1:pause:2",
        "{cgroup}/a/b,\(memory.path)/m1/m2,\(pids.path)/p1:pause:1",
      ], version: .v1, ownNamespaces: false, children: ["a/b"])
    defer { container.destroy() }
    try container.waitReady()
    let scratches = [container.cgroup, memory, pids, cpu]
    let placements = scratches.map { $0.placement() }
    #expect(placements.map(\.count) == [4, 4, 4, 4])
    let dump = container.dump()
    try #require(dump.status == 0, "\(dump.output)")
    try container.waitEmpty()
    for scratch in scratches { scratch.destroy() }

    // At the dumped paths, made again.
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    #expect(scratches.map { $0.placement() } == placements)
    try expectLimits(memory: memory, pids: pids, cpu: cpu)
    kill(container.restoredPid, SIGKILL)
    _ = try container.reap(container.restoredPid, timeout: 5)
    try container.waitEmpty()
    for scratch in scratches { scratch.destroy() }

    // Under another root, the same in every hierarchy.
    let newRoot = "/ckcont-test-\(getpid())-root-\(UInt32.random(in: 0...UInt32.max))"
    let moved = try ["freezer", "memory", "pids", "cpu"].map {
      try ScratchCgroup(existing: "/sys/fs/cgroup/\($0)\(newRoot)")
    }
    defer { for scratch in moved { scratch.destroy() } }
    let again = try container.restore(["--cgroup-root", newRoot])
    try #require(again.status == 0, "\(again.output)")
    #expect(moved.map { $0.placement() } == placements)
    try expectLimits(memory: moved[1], pids: moved[2], cpu: moved[3])
  }

  func expectLimits(memory: ScratchCgroup, pids: ScratchCgroup, cpu: ScratchCgroup) throws {
    #expect(memory.read("memory.limit_in_bytes") == "268435456\n")
    #expect(memory.read("memory.limit_in_bytes", in: "m1") == "134217728\n")
    #expect(memory.read("memory.limit_in_bytes", in: "m1/m2") == "67108864\n")
    #expect(pids.read("pids.max") == "50\n")
    #expect(pids.read("pids.max", in: "p1") == "20\n")
    #expect(cpu.read("cpu.shares") == "512\n")
  }

  /// A target cgroup that already runs tasks is refused, and nothing is created.
  @Test func busyTargetIsRefused() throws {
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    let dump = container.dump(["--leave-running"])
    try #require(dump.status == 0, "\(dump.output)")
    let restore = try container.restore()
    #expect(restore.status == 2)
    #expect(restore.stderr.contains("already holds 1 processes"), "\(restore.stderr)")
    #expect(restore.stderr.split(separator: "\n").count <= 2)
    #expect(container.cgroup.allPids().count == 1)
  }
}

/// Held by a test that changes the v2 root's controllers (``RootController``) and by one
/// whose container takes whatever the root enables (runc's): one at a time, or a
/// container made while a controller was on loses it before its restore.
let v2RootControllers = NSLock()

/// Enables a controller in the v2 root's subtree_control for a test and disables it again
/// afterwards if it was off (the machine's other cgroups are not touched); holds
/// ``v2RootControllers`` until then.
struct RootController {
  let name: String
  let wasEnabled: Bool
  static let control = "/sys/fs/cgroup/unified/cgroup.subtree_control"

  init(_ name: String) throws {
    self.name = name
    v2RootControllers.lock()
    let current = (try? String(contentsOfFile: Self.control, encoding: .utf8)) ?? ""
    wasEnabled = current.split(whereSeparator: \.isWhitespace).contains { $0 == name }
    if !wasEnabled {
      guard (try? "+\(name)".write(toFile: Self.control, atomically: false, encoding: .utf8)) != nil else {
        v2RootControllers.unlock()
        throw TestFailure("cannot enable \(name) in the v2 root")
      }
    }
  }

  func restore() {
    if !wasEnabled { try? "-\(name)".write(toFile: Self.control, atomically: false, encoding: .utf8) }
    v2RootControllers.unlock()
  }
}
