import Foundation
import Glibc
import TestSupport
import Testing

/// Containers made at random (Fixtures/random: a seed picks processes, threads and the state
/// each holds) through dump → kill → restore, after which each checks itself. A fixed list of
/// seeds runs with every test run; `Scripts/fuzz-containers` runs new ones through
/// ``newSeeds()``. A seed that found something stays here once it is fixed.
@Suite(.serialized)
struct RandomContainerTests {
  /// Seeds 1-50, among them those that found bugs: 25, 33, 35, 41, 47 (a unix socket's
  /// shutdown state lost), 28 (two holders of a message queue captured at once), 57 (two
  /// holders of a datagram socket peeked at once); and the copy-on-write sharing and mapping
  /// boundaries after fork: 9052 (a kept mapping beyond the parent's runs), 9279 (a parent
  /// cut a mapping after the fork), 9584, 10329, 10523, 10524, 11526, 12810 (neighbours merged or
  /// charged wrongly), 10075, 10107, 13122 (cousins sharing a page no parent has); 17069, 17456
  /// (a unix socket's SO_PEEK_OFF read while another holder's capture peeked at it).
  static let seeds =
    Array(1...50) + [57, 9052, 9279, 9584, 10075, 10107, 10329, 10523, 10524, 11526, 12810, 13122, 17069, 17456]

  @Test(arguments: seeds)
  func aRandomContainerComesBackAsItWas(seed: Int) throws {
    let failure = try roundTrip(seed: seed)
    #expect(failure == nil, "seed \(seed): \(failure ?? "")")
  }

  /// The seeds of CKCONT_RANDOM_SEEDS (`FIRST-LAST`), each kept on failure in
  /// CKCONT_RANDOM_FAILURES/<seed>.txt; nothing to do without it.
  @Test func newSeeds() throws {
    let range =
      ProcessInfo.processInfo.environment["CKCONT_RANDOM_SEEDS"]?.split(separator: "-").compactMap { Int($0) } ?? []
    guard range.count == 2, range[0] <= range[1] else { return }
    let directory = ProcessInfo.processInfo.environment["CKCONT_RANDOM_FAILURES"]
    var failed: [Int] = []
    for seed in range[0]...range[1] {
      let failure: String?
      do { failure = try roundTrip(seed: seed) } catch { failure = "\(error)" }
      guard let failure else { continue }
      failed.append(seed)
      if let directory { try? failure.write(toFile: "\(directory)/\(seed).txt", atomically: true, encoding: .utf8) }
    }
    #expect(failed.isEmpty, "seeds that failed: \(failed)")
  }

  /// Dump, restore, the snapshot diff (``StateSnapshot``) and the container's own verdict;
  /// nil when all held, else what differed.
  private func roundTrip(seed: Int) throws -> String? {
    let container = try FixtureContainer("random", [String(seed)])
    defer { container.destroy() }
    let differences: [String]
    do {
      // Random containers settle: waiting long for them costs only on a loaded machine.
      differences = try container.unexplainedDifferences("random \(seed)", settle: 5)
    } catch {
      return "\(error)"
    }
    let status = try container.terminateRestored(timeout: 30)
    var problems = differences.map { "state: \($0)" }
    if status != 0 || !container.log.contains("PASS random") { problems.append("exit \(status): \(container.log)") }
    return problems.isEmpty ? nil : problems.joined(separator: "\n")
  }
}
