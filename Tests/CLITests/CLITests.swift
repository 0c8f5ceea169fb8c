import Foundation
import Glibc
import TestSupport
import Testing

/// The ckcont command line, run as a subprocess exactly as users run it.
@Suite(.serialized)
struct CLITests {
  let ckcont = TestPaths.ckcont

  @Test func checkPrintsEveryProbeAsJSON() throws {
    let result = run([ckcont, "check", "--json"])
    #expect(result.status == 0, "\(result.output)")
    let json = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    #expect(json["ok"] as? Bool == true)
    let probes = try #require(json["probes"] as? [[String: Any]])
    let names = Set(probes.compactMap { $0["name"] as? String })
    for expected in [
      "ptrace seize/interrupt", "process_vm_readv", "clone3 set_tid + CLONE_INTO_CGROUP", "pidfd_open/pidfd_getfd",
      "PAGEMAP_SCAN ioctl", "userfaultfd WP_ASYNC", "time namespace", "cgroup v2 freeze", "cgroup v1 freezer",
      "root or CAP_CHECKPOINT_RESTORE", "user namespaces", "openat2 RESOLVE_IN_ROOT",
    ] {
      #expect(names.contains(expected), "missing probe \(expected)")
    }
    for probe in probes {
      #expect(probe["available"] is Bool && probe["essential"] is Bool && probe["detail"] is String)
    }
  }

  /// The shared options work before the subcommand as well as after it.
  @Test func sharedOptionsMayComeFirst() throws {
    let result = run([ckcont, "--json", "check"])
    #expect(result.status == 0, "\(result.output)")
    #expect(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) is [String: Any])
    let verbose = run([ckcont, "-v", "ps", "/sys/fs/cgroup/unified/no-such-cgroup-here"])
    #expect(verbose.status == 2, "\(verbose.output)")
    #expect(verbose.stderr.hasPrefix("ckcont: error: no such cgroup"), "\(verbose.stderr)")
  }

  @Test func checkTextHasOneLinePerProbe() {
    let result = run([ckcont, "check"])
    #expect(result.status == 0)
    let lines = result.stdout.split(separator: "\n")
    #expect(lines.filter { $0.hasPrefix("ok ") }.count >= 10)
    #expect(lines.last == "Looks good.")
  }

  @Test func checkFailsWithoutRoot() {
    let result = run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ckcont, "check"])
    #expect(result.status == 1)
    #expect(result.stdout.contains("MISSING  root or CAP_CHECKPOINT_RESTORE"))
  }

  @Test func psShowsAKnownTree() throws {
    let scratch = try ScratchCgroup(.v2)
    defer { scratch.destroy() }
    try scratch.makeChildren("inner")
    let swarm = try BackgroundProcess([
      try FixturePrograms.path("swarm"), "-", scratch.path, "\(scratch.path):pause:2",
      "\(scratch.path)/inner:threads:1",
    ])
    defer { swarm.stop() }
    try swarm.waitForLine(startingWith: "ready")

    let text = run([ckcont, "ps", scratch.path])
    #expect(text.status == 0, "\(text.output)")
    let lines = text.stdout.split(separator: "\n").map(String.init)
    #expect(lines.count == 5)
    #expect(lines[0].hasPrefix("PID"))
    #expect(lines[1].hasPrefix("\(swarm.pid) "))
    #expect(lines[1].contains(" . ") && lines[1].contains("swarm - "))
    #expect(lines.dropFirst(2).allSatisfy { $0.contains("\\_ ") })
    #expect(lines.contains { $0.contains(" inner ") && $0.contains(" 5    ") }, "\(lines)")

    let json = run([ckcont, "ps", "--json", scratch.path])
    #expect(json.status == 0)
    let object = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
    #expect(object["version"] as? String == "v2")
    let tasks = try #require(object["tasks"] as? [[String: Any]])
    #expect(tasks.count == 4)
    #expect(tasks[0]["pid"] as? Int == Int(swarm.pid))
    #expect(tasks[0]["ppid"] as? Int == Int(getpid()))
    #expect(tasks[0]["depth"] as? Int == 0)
    #expect(tasks.dropFirst().allSatisfy { $0["ppid"] as? Int == Int(swarm.pid) && $0["depth"] as? Int == 1 })
    #expect(tasks.filter { $0["cgroup"] as? String == "inner" }.count == 1)
    #expect(tasks.contains { ($0["threads"] as? [Int])?.count == 5 })
  }

  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func freezeAndThawFromTheCommandLine(version: ScratchCgroup.Version) throws {
    let scratch = try ScratchCgroup(version)
    defer { scratch.destroy() }
    let swarm = try BackgroundProcess([try FixturePrograms.path("swarm"), "-", scratch.path, "\(scratch.path):sleep:3"])
    defer { swarm.stop() }
    try swarm.waitForLine(startingWith: "ready")

    let frozen = run([ckcont, "freeze", "--json", scratch.path])
    #expect(frozen.status == 0, "\(frozen.output)")
    let state = try #require(try JSONSerialization.jsonObject(with: Data(frozen.stdout.utf8)) as? [String: Any])
    #expect(state["frozen"] as? Bool == true)
    #expect(state["processes"] as? Int == 4)
    #expect(
      version == .v2
        ? scratch.read("cgroup.events").contains("frozen 1") : scratch.read("freezer.state").hasPrefix("FROZEN"))

    let again = run([ckcont, "freeze", scratch.path])
    #expect(again.status == 0)
    #expect(again.stdout.contains("already frozen"))

    let thawed = run([ckcont, "thaw", scratch.path])
    #expect(thawed.status == 0, "\(thawed.output)")
    #expect(thawed.stdout.hasPrefix("thawed \(scratch.path)"))
    #expect(
      version == .v2
        ? scratch.read("cgroup.events").contains("frozen 0") : scratch.read("freezer.state").hasPrefix("THAWED"))
  }

  @Test(arguments: [
    (
      ["freeze", "/sys/fs/cgroup/unified/ckcont-no-such-cgroup"], Int32(2),
      "ckcont: error: no such cgroup: /sys/fs/cgroup/unified/ckcont-no-such-cgroup"
    ),
    (["thaw", "ckcont-no-such-cgroup"], 2, "ckcont: error: no cgroup named ckcont-no-such-cgroup"),
    (["ps", "/tmp"], 2, "ckcont: error: /tmp is not under a cgroup mount"),
    (["freeze", "/sys/fs/cgroup/unified/cgroup.procs"], 2, "is not a cgroup directory"),
    (["freeze", "/sys/fs/cgroup/unified"], 2, "is the root cgroup"),
    (["freeze", "/sys/fs/cgroup/memory"], 2, "without the freezer controller"),
    (["freeze"], 64, "Missing expected argument '<cgroup>'"),
    (["freeze", "--timeout", "0", "x"], 64, "--timeout must be positive"),
    (["frobnicate"], 64, "Unexpected argument 'frobnicate'"),
  ])
  func badInputGivesOneClearLine(arguments: [String], status: Int32, message: String) {
    let result = run([ckcont] + arguments)
    #expect(result.status == status, "\(result.output)")
    #expect(result.stderr.contains(message), "\(result.stderr)")
    #expect(result.stdout.isEmpty)
    #expect(result.stderr.split(separator: "\n").count == 1, "\(result.stderr)")
    #expect(result.stderr.hasPrefix("ckcont: error: "), "\(result.stderr)")
  }

  /// `ckcont kill` ends every task of a subtree, forkers and nested cgroups included, and
  /// returns once it is empty.
  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func killEmptiesTheSubtree(version: ScratchCgroup.Version) throws {
    let scratch = try ScratchCgroup(version)
    defer { scratch.destroy() }
    let inner = try scratch.makeChildren("inner")
    let swarm = try BackgroundProcess([
      try FixturePrograms.path("swarm"), "-", scratch.path, "\(scratch.path):sleep:2", "\(inner):forker:2",
    ])
    defer { swarm.stop() }
    try swarm.waitForLine(startingWith: "ready")
    try #require(scratch.allPids().count >= 5)
    let killed = run([ckcont, "kill", "--json", scratch.path])
    #expect(killed.status == 0, "\(killed.output)")
    let state = try #require(try JSONSerialization.jsonObject(with: Data(killed.stdout.utf8)) as? [String: Any])
    #expect((state["killed"] as? Int ?? 0) >= 5, "forkers add a short-lived child now and then")
    #expect(scratch.allPids().isEmpty)
  }

  @Test func freezeWithoutRootSaysSo() {
    let result = run(["/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", ckcont, "freeze", "x"])
    #expect(result.status == 77)
    #expect(result.stderr == "ckcont: error: ckcont freeze must run as root (run it with sudo)\n")
  }
}
