import Foundation
import Glibc
import TestSupport
import Testing

/// Chains of bundles: `dump --pre-dump` while the container runs, then `dump --parent`
/// writes only the pages that changed; the restore loads the parent beside it. The
/// container is the key-value server writing 20 MiB a second over 64 MiB, each page with
/// its generation kept apart (a page restored from the parent that changed since fails its
/// check at the end); a quiet one is compared by the snapshot.
@Suite(.serialized)
struct BundleChainTests {
  @Test func aBundleDumpedAgainstItsParentHoldsOnlyWhatChanged() throws {
    let container = try FixtureContainer("kvserver", ["serve", "7000", "64"], wrapper: ["/usr/bin/unshare", "-n"])
    defer { container.destroy() }
    try container.waitReady()
    let parent = container.bundlePath + ".parent"
    defer { unlink(parent) }
    let preDump = run([TestPaths.ckcont, "dump", container.cgroup.path, "--pre-dump", "-o", parent])
    try #require(preDump.status == 0, "\(preDump.output)")
    #expect(!container.cgroup.allPids().isEmpty, "the pre-dump stopped the container")
    usleep(300_000)
    // It never stops writing: no snapshot can compare it; its own check at the end does.
    let dumped = container.dump(["--parent", parent])
    try #require(dumped.status == 0, "\(dumped.output)")
    try container.waitEmpty()
    let restored = try container.restore()
    try #require(restored.status == 0, "\(restored.output)")
    let parentSize = try FileManager.default.attributesOfItem(atPath: parent)[.size] as? Int ?? 0
    let childSize = try FileManager.default.attributesOfItem(atPath: container.bundlePath)[.size] as? Int ?? 0
    #expect(parentSize > 64 << 20 && childSize < parentSize / 2, "parent \(parentSize) bytes, child \(childSize)")
    let status = try container.terminateRestored()
    #expect(status == 0 && container.log.contains("PASS kvserver"), "status \(status); log: \(container.log)")
  }

  /// A container that does not write: the restore from a child bundle and its parent gives
  /// back every byte the snapshot reads.
  @Test func aChainRestoresWhatTheSnapshotSaw() throws {
    let container = try FixtureContainer("random", ["44"])
    defer { container.destroy() }
    try container.waitReady()
    let parent = container.bundlePath + ".parent"
    defer { unlink(parent) }
    let preDump = run([TestPaths.ckcont, "dump", container.cgroup.path, "--pre-dump", "-o", parent])
    try #require(preDump.status == 0, "\(preDump.output)")
    let differences = try container.unexplainedDifferences("random 44", dumpArguments: ["--parent", parent], settle: 5)
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let status = try container.terminateRestored()
    #expect(status == 0, "random exited with \(status); log: \(container.log)")
  }

  /// Without its parent, or with another bundle as its parent, a bundle is refused before
  /// anything is made.
  @Test func aMissingOrWrongParentIsRefused() throws {
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    let parent = container.bundlePath + ".parent"
    let other = container.bundlePath + ".other"
    defer {
      unlink(parent)
      unlink(other)
    }
    for path in [parent, other] {
      let preDump = run([TestPaths.ckcont, "dump", container.cgroup.path, "--pre-dump", "-o", path])
      try #require(preDump.status == 0, "\(preDump.output)")
      // The counter moves on every 100 ms: two dumps within one tick (and one second, the
      // manifest's creation time) are the same bundle, and either is then the parent.
      usleep(250_000)
    }
    let dumped = container.dump(["--parent", parent])
    try #require(dumped.status == 0, "\(dumped.output)")
    try container.waitEmpty()
    let wrong = try container.restore(["--parent", other])
    #expect(wrong.status == 2 && wrong.stderr.contains("is not the parent bundle"), "\(wrong.output)")
    unlink(parent)
    let missing = try container.restore()
    #expect(missing.status == 2 && missing.stderr.contains("cannot open the parent bundle"), "\(missing.output)")
    #expect(container.cgroup.allPids().isEmpty)
  }
}
