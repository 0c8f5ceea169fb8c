import Foundation
import Testing

@testable import TestSupport

/// What a process is beyond its memory, files and scheduling that a restore must give back
/// whatever the ckcont restoring it is: the audit login uid.
@Suite(.serialized) struct ProcessAttributeTests {
  /// Restored tasks start with the login uid of the ckcont that made them: one restoring
  /// from a login session (here 77) gives back a login uid of 1234 (`sched` sets it) and an
  /// unset one (`tree` inherits the test runner's) alike, each thread's too.
  @Test(arguments: [("sched", "1234"), ("tree", "4294967295")])
  func loginUIDComesBackWhateverCkcontsOwnIs(fixture: String, expected: String) throws {
    let container = try FixtureContainer(fixture)
    defer { container.destroy() }
    container.restoreSetup = "echo 77 > /proc/self/loginuid"
    let differences = try container.unexplainedDifferences(fixture)
    #expect(differences.isEmpty, "\(differences)")
    let now = try String(contentsOfFile: "/proc/\(container.restoredPid)/loginuid", encoding: .utf8)
    #expect(now == expected)
    #expect(try container.terminateRestored() == 0, "\(container.log)")
    #expect(container.log.contains("PASS \(fixture)"), "\(container.log)")
  }
}
