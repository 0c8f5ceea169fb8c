import Foundation
import Glibc
import TestSupport
import Testing

/// Every fixture can fail: run without a checkpoint and with its first check turned around
/// (`CKCONT_FIXTURE_SELFTEST_CORRUPT=1`, see fix.h), it must report FAIL. A fixture whose
/// checks cannot fail would pass every round trip and prove nothing.
struct FixtureSelfTests {
  @Test(arguments: RoundTripTests.fixtures + [("pid-nested", []), ("pid-nested", ["mount-proc"]), ("random", ["7"])])
  func eachFixtureFailsWhenACheckIsTurnedAround(fixture: String, arguments: [String]) throws {
    var environment = ProcessInfo.processInfo.environment
    environment["CKCONT_FIXTURE_SELFTEST_CORRUPT"] = "1"
    let container = try FixtureContainer(fixture, arguments, environment: environment)
    defer { container.destroy() }
    try container.waitReady()
    // As a dump would find it: asleep where it waits (a SIGTERM before that may be taken
    // by a fixture that then sleeps to an absolute deadline).
    container.waitUntilAsleep(timeout: 2)
    // The container's init: the one process whose parent is not in the cgroup.
    let pids = container.cgroup.allPids()
    let root = try #require(pids.first { pid in !pids.contains(parentOf(pid)) }, "no root among \(pids)")
    kill(root, SIGTERM)
    let verdict = try container.launcher.waitForLine(startingWith: "FAIL \(fixture)", timeout: 20)
    #expect(!verdict.isEmpty)
    #expect(!container.log.contains("SELFTEST"), "\(container.log)")
  }

  private func parentOf(_ pid: Int32) -> Int32 {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { return 0 }
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    return fields.count > 1 ? Int32(fields[1]) ?? 0 : 0
  }
}
