import Foundation
import Glibc
import TestSupport
import Testing

/// A short run of the bundle fuzzer (Scripts/fuzz-bundles runs long ones): bundles of real
/// containers, mutated, must each be accepted or refused in one line, never crash the reader,
/// hang it, or make anything.
@Suite(.serialized)
struct BundleFuzzTests {
  /// Seeds: bundles of a process tree, of a process with files, and of one with eventfds,
  /// timerfds, signalfds, epolls and pidfds, dumped with --leave-running. (No fixture with
  /// names fixed across runs, such as `sockets unix`'s abstract one: suites run in parallel.)
  static func seedBundles(in directory: String) throws -> [String] {
    var paths: [String] = []
    for (fixture, arguments) in [("tree", [String]()), ("files", []), ("anon-fds", [])] {
      let container = try FixtureContainer(fixture, arguments)
      defer { container.destroy() }
      try container.waitReady()
      let path = directory + "/\(fixture).ckpt"
      let dumped = run([TestPaths.ckcont, "dump", container.cgroup.path, "-o", path, "--leave-running"])
      guard dumped.status == 0 else { throw TestFailure("dump of \(fixture): \(dumped.output)") }
      paths.append(path)
    }
    return paths
  }

  @Test func sixtySecondsOfMutatedBundlesNeitherCrashNorHangTheReader() throws {
    let directory = NSTemporaryDirectory() + "ckcont-fuzz-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
    defer { try? FileManager.default.removeItem(atPath: directory) }
    let seeds = try Self.seedBundles(in: directory)
    let seed = UInt64.random(in: 1...UInt64(UInt32.max))
    let fuzz = try BackgroundProcess([TestPaths.fuzzer, "60", String(seed)] + seeds)
    defer { fuzz.stop() }
    // A hang shows as a run that does not end well after its 60 s.
    let deadline = Date().addingTimeInterval(180)
    while fuzz.isRunning && Date() < deadline { usleep(100_000) }
    #expect(!fuzz.isRunning, "seed \(seed): an input hangs the reader: \(fuzz.log)")
    #expect(fuzz.waitUntilExit() == 0, "seed \(seed): \(fuzz.log)")
    #expect(fuzz.log.contains("inputs in"), "\(fuzz.log)")
    #expect(run(["/bin/sh", "-c", "ls /sys/fs/cgroup/unified | grep -c ckcont-fuzz"]).stdout.hasPrefix("0"))
  }
}
