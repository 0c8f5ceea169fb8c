import Foundation
import Glibc
import TestSupport
import Testing

/// The state snapshot the round trips compare: two snapshots of an unchanged container are
/// equal, and a change shows as one line.
@Suite(.serialized)
struct StateSnapshotTests {
  @Test(arguments: [("tree", [String]()), ("sockets", ["unix"]), ("shm", []), ("bigmem", ["256"])])
  func anUnchangedContainerReadsTheSame(fixture: String, arguments: [String]) throws {
    let container = try FixtureContainer(fixture, arguments)
    defer { container.destroy() }
    try container.waitReady(timeout: 60)
    container.waitUntilAsleep()
    let started = Date()
    let first = try StateSnapshot.take(cgroup: container.cgroup)
    let seconds = Date().timeIntervalSince(started)
    container.waitUntilAsleep()
    let second = try StateSnapshot.take(cgroup: container.cgroup)
    let diff = StateSnapshot.diff(first, second)
    #expect(diff.isEmpty, "\(diff.joined(separator: "\n"))")
    #expect(first.entries.count > 50)
    // A few seconds over the whole suite at most (bigmem: 256 MiB hashed).
    #expect(seconds < 2, "a snapshot took \(seconds) s")
  }

  @Test func aChangeShowsAsOneLine() throws {
    let container = try FixtureContainer("tree")
    defer { container.destroy() }
    try container.waitReady()
    container.waitUntilAsleep()
    // Settled: a thread still on its way after `ready` (blocking its signals) would show.
    var before = try StateSnapshot.take(cgroup: container.cgroup)
    for _ in 0..<20 {
      let again = try StateSnapshot.take(cgroup: container.cgroup)
      if StateSnapshot.diff(before, again).isEmpty { break }
      before = again
      usleep(50_000)
    }
    let pid = try #require(container.cgroup.rootPid())
    try "500".write(toFile: "/proc/\(pid)/oom_score_adj", atomically: false, encoding: .utf8)
    let after = try StateSnapshot.take(cgroup: container.cgroup)
    #expect(StateSnapshot.diff(before, after) == ["task 1: oom_score_adj 0 -> 500"])
  }

  @Test func knownDifferencesExplainOnlyTheirFixturesLines() {
    let line = "task 2: exit_code 0 -> 19"
    #expect(KnownDifferences.unexplained([line], fixture: "stopped").isEmpty)
    #expect(KnownDifferences.unexplained([line], fixture: "files") == [line])
  }
}
