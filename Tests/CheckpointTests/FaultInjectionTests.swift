import Foundation
import Glibc
import Linux
import TestSupport
import Testing

/// ckcont dying at any phase of a dump never costs the container: a test build SIGKILLs
/// itself at a named point (CKCONT_FAULT_KILL_AT), and `ckcont thaw` then puts the container
/// back from the dump's journal. One container lives through every phase in turn, with what
/// each phase may change checked against the state before (maps, signal masks, CPUs, no
/// tracer, not stopped), and must pass its own checks at the end. The last phase kills it
/// after a complete bundle: recovery finishes the kill and the bundle restores.
@Suite(.serialized)
struct FaultInjectionTests {
  static let dumpPhases = [
    "dump:frozen", "dump:seized", "dump:parked", "dump:scratch", "dump:batch", "dump:captured", "dump:writing",
    "dump:committed", "dump:releasing",
  ]

  @Test(arguments: [
    (fixture: "bigmem", arguments: ["1024"], extra: [String]()),
    (fixture: "pipeline", arguments: [String](), extra: []),
    (fixture: "sockets", arguments: ["tcp-connection"], extra: ["dump:repair"]),
    // Terminal output the dump reads out of a master goes back from the journal.
    (fixture: "pty", arguments: ["output"], extra: []),
  ])
  func containerOutlivesADumpKilledAtEveryPhase(fixture: String, arguments: [String], extra: [String]) throws {
    try outlive(fixture, arguments, phases: Self.dumpPhases + extra, version: .v2)
  }

  @Test func containerOutlivesADumpKilledAtEveryPhaseOnCgroupV1() throws {
    try outlive("pipeline", [], phases: Self.dumpPhases, version: .v1)
  }

  /// A reader that goes away (SIGPIPE for a tool that does not ignore it) fails the dump
  /// with a message; the container runs on.
  @Test func readerGoneFailsTheDumpNotTheContainer() throws {
    let container = try FixtureContainer("bigmem", ["64"])
    defer { container.destroy() }
    defer { Self.removeRunDirectory() }
    try container.waitReady()
    let before = try settledSnapshot(container)
    let result = run(
      [
        "/bin/bash", "-c",
        "set -o pipefail; '\(TestPaths.ckcont)' dump '\(container.cgroup.path)' -o - | head -c 100000 >/dev/null",
      ], environment: isolated)
    #expect(result.status == 1, "\(result.output)")
    #expect(result.stderr.contains("ckcont: error:") && result.stderr.contains("Broken pipe"), "\(result.output)")
    let name = container.cgroup.path.split(separator: "/").last.map(String.init) ?? "?"
    let journal = ((try? FileManager.default.contentsOfDirectory(atPath: Self.runDirectory)) ?? []).filter {
      $0.contains(name)
    }
    #expect(journal.isEmpty, "a journal was left: \(journal)")
    #expect(try snapshot(container) == before)
    let pid = try #require(container.cgroup.allPids().first)
    kill(pid, SIGTERM)
    #expect(container.launcher.waitUntilExit() == 0, "\(container.log)")
    #expect(container.log.contains("PASS bigmem"))
  }

  /// Runs a dump of `fixture` killed at each of `phases`, recovers with `ckcont thaw`, checks
  /// nothing changed and nothing is left; then a dump killed after its bundle is complete,
  /// which recovery finishes, and the bundle must restore a container that passes.
  private func outlive(_ fixture: String, _ arguments: [String], phases: [String], version: ScratchCgroup.Version)
    throws
  {
    let container = try FixtureContainer(fixture, arguments, version: version)
    defer { container.destroy() }
    defer { Self.removeRunDirectory() }
    try container.waitReady(timeout: 60)
    let before = try settledSnapshot(container)
    for phase in phases {
      // A dump killed after its commit leaves a complete bundle, which a dump does not replace.
      try? FileManager.default.removeItem(atPath: container.bundlePath)
      let dump = run(
        [TestPaths.ckcont, "dump", container.cgroup.path, "-o", container.bundlePath, "--leave-running"],
        environment: environment(killAt: phase))
      #expect(dump.status == 128 + SIGKILL, "\(phase): the dump did not die there: \(dump.output)")
      #expect(dump.stderr.contains("fault injection: SIGKILL at \(phase)"), "\(phase): \(dump.output)")
      let thaw = run([TestPaths.ckcont, "thaw", container.cgroup.path], environment: isolated)
      try #require(thaw.status == 0, "\(phase): thaw failed: \(thaw.output)")
      #expect(
        thaw.stderr.contains("left when it died while dumping"), "\(phase): nothing was recovered: \(thaw.output)")
      try expectNothingLeft(container, phase)
      // Settled as the first: the recovered tasks resume their interrupted calls (a parent
      // back into sigsuspend, a SIGCHLD of its continued child still to be discarded).
      let after = try settledSnapshot(container)
      #expect(
        after == before,
        "\(phase): the container changed: \(after.filter { !before.contains($0) }) was \(before.filter { !after.contains($0) })"
      )
    }
    // Dumped completely, killed while ckcont kills it: recovery finishes the kill.
    try? FileManager.default.removeItem(atPath: container.bundlePath)
    let dump = run(
      [TestPaths.ckcont, "dump", container.cgroup.path, "-o", container.bundlePath],
      environment: environment(killAt: "dump:killing"))
    #expect(dump.status == 128 + SIGKILL, "\(dump.output)")
    let thaw = run([TestPaths.ckcont, "thaw", container.cgroup.path], environment: isolated)
    try #require(thaw.status == 0, "\(thaw.output)")
    #expect(thaw.stderr.contains("finished killing"), "\(thaw.output)")
    try expectNothingLeft(container, "dump:killing")
    try container.waitEmpty(timeout: 10)
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    #expect(try container.terminateRestored(timeout: 60) == 0, "\(container.log)")
    #expect(container.log.contains("PASS"), "\(container.log)")
  }

  /// A restore killed at each phase leaves nothing running (its tasks die with it) and the
  /// cgroups it made are removed by the next ckcont command; the bundle then restores.
  @Test func aRestoreKilledAtEveryPhaseLeavesNothingBehind() throws {
    let container = try FixtureContainer("pipeline")
    defer { container.destroy() }
    defer { Self.removeRunDirectory() }
    try container.dumpAndWaitGone()
    let root = "/ckcont-fault-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let made = "/sys/fs/cgroup/unified" + root
    defer { rmdir(made) }
    for phase in ["restore:cgroups", "restore:tree", "restore:state"] {
      let restore = run(
        [TestPaths.ckcont, "restore", container.bundlePath, "--cgroup-root", root],
        environment: environment(killAt: phase))
      #expect(restore.status == 128 + SIGKILL, "\(phase): the restore did not die there: \(restore.output)")
      #expect(access(made, F_OK) == 0, "\(phase): the restore made no cgroup")
      // Any later command that needs root sweeps: the tasks died with ckcont, the cgroup goes.
      let thaw = run([TestPaths.ckcont, "thaw", container.cgroup.path], environment: isolated)
      #expect(thaw.stderr.contains("removed what the restore of ckcont"), "\(phase): \(thaw.output)")
      #expect(access(made, F_OK) != 0, "\(phase): the cgroup \(made) is left")
      let journals = ((try? FileManager.default.contentsOfDirectory(atPath: Self.runDirectory)) ?? []).filter {
        $0.hasPrefix("restore-")
      }
      #expect(journals.isEmpty, "\(phase): journal left: \(journals)")
    }
    let restore = try container.restore(["--cgroup-root", root])
    try #require(restore.status == 0, "\(restore.output)")
    #expect(try container.terminateRestored() == 0, "\(container.log)")
    #expect(container.log.contains("PASS pipeline"))
  }

  /// The journals of this suite's ckcont runs: apart from /run/ckcont, so that no other
  /// test's ckcont sweeps what these leave on purpose, and these sweep nothing of theirs.
  static let runDirectory = "/run/ckcont-faults-\(getpid())"

  /// Removes the journal directory once empty (a test still running keeps it; ckcont makes
  /// it again when it needs it).
  static func removeRunDirectory() { rmdir(runDirectory) }

  private var isolated: [String: String] {
    ProcessInfo.processInfo.environment.merging(["CKCONT_FAULT_RUN_DIR": Self.runDirectory]) { _, new in new }
  }

  private func environment(killAt phase: String) -> [String: String] {
    isolated.merging(["CKCONT_FAULT_KILL_AT": phase]) { _, new in new }
  }

  /// No journal, no partial bundle, no tracer, nothing frozen or stopped.
  private func expectNothingLeft(_ container: FixtureContainer, _ phase: String) throws {
    let journals = ((try? FileManager.default.contentsOfDirectory(atPath: Self.runDirectory)) ?? []).filter {
      $0.contains(container.cgroup.path.split(separator: "/").last.map(String.init) ?? "?")
    }
    #expect(journals.isEmpty, "\(phase): journal left: \(journals)")
    let directory = URL(fileURLWithPath: container.bundlePath).deletingLastPathComponent().path
    let name = URL(fileURLWithPath: container.bundlePath).lastPathComponent
    let partials = try FileManager.default.contentsOfDirectory(atPath: directory).filter {
      $0.hasPrefix(name + ".partial")
    }
    #expect(partials.isEmpty, "\(phase): partial bundle left: \(partials)")
    let frozen =
      container.cgroup.version == .v2
      ? container.cgroup.read("cgroup.events").contains("frozen 1")
      : container.cgroup.read("freezer.state").hasPrefix("FROZEN")
    #expect(!frozen, "\(phase): the cgroup is still frozen")
  }

  /// ``snapshot(_:)`` once two taken 100 ms apart agree: a fixture may still be on its way
  /// into its wait after "ready" (its signal mask changes as it enters sigsuspend).
  private func settledSnapshot(_ container: FixtureContainer) throws -> [String] {
    var last = try snapshot(container)
    for _ in 0..<20 {
      usleep(100_000)
      let now = try snapshot(container)
      if now == last { return now }
      last = now
    }
    return last
  }

  /// What a dump may touch and must give back, per thread of the container: maps, signal
  /// mask, CPUs, tracer, run state (a sleeping or running task; never stopped or traced).
  private func snapshot(_ container: FixtureContainer) throws -> [String] {
    var lines: [String] = []
    for pid in container.cgroup.allPids().sorted() {
      lines.append("\(pid) maps " + ((try? String(contentsOfFile: "/proc/\(pid)/maps", encoding: .utf8)) ?? "gone"))
      let tids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
      for tid in tids.sorted() {
        let status = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/status", encoding: .utf8)) ?? ""
        for line in status.split(separator: "\n") {
          let key = line.split(separator: ":").first.map(String.init) ?? ""
          if ["SigBlk", "TracerPid", "Cpus_allowed_list", "SigPnd", "ShdPnd"].contains(key) {
            lines.append("\(pid)/\(tid) \(line)")
          }
          if key == "State" {
            lines.append("\(pid)/\(tid) stopped: \(line.contains("(stopped)") || line.contains("tracing stop"))")
          }
        }
      }
    }
    return lines
  }
}
