import Foundation
import Glibc
import TestSupport
import Testing

/// Containers with a root filesystem of their own, set up as runc sets one up (fixture
/// `rootfs`: a bind-mounted rootfs, pivot_root, the old root detached, /proc, a /dev tmpfs
/// with device nodes, a masked /proc file, a file bound from the host, stdio from outside).
@Suite(.serialized)
struct RootFilesystemTests {
  /// A scratch directory for the container's root, removed afterwards.
  final class Scratch {
    let path = NSTemporaryDirectory() + "ckcont-rootfs-\(UUID().uuidString)"
    init() throws { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: false) }
    deinit { try? FileManager.default.removeItem(atPath: path) }
  }

  /// The directories restores leave behind for a root's mount point (none should stay).
  func stagingDirectories() throws -> Set<String> {
    Set(
      try FileManager.default.contentsOfDirectory(atPath: NSTemporaryDirectory()).filter {
        $0.hasPrefix("ckcont-root.")
      })
  }

  /// The root field of the first line of a process's mountinfo: what its root mount shows.
  func rootMountSource(of pid: Int32) throws -> String {
    let text = try String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)
    let first = text.split(separator: "\n").first { $0.split(separator: " ")[4] == "/" } ?? ""
    return String(first.split(separator: " ")[3])
  }

  @Test func aContainerWithARootOfItsOwnComesBack() throws {
    let scratch = try Scratch()
    let before = try stagingDirectories()
    let container = try FixtureContainer("rootfs", [scratch.path])
    defer { container.destroy() }
    let differences = try container.unexplainedDifferences("rootfs")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    #expect(try rootMountSource(of: container.restoredPid) == scratch.path + "/root")
    #expect(try stagingDirectories() == before)
    let status = try container.terminateRestored()
    #expect(status == 0, "rootfs exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS rootfs"), "log: \(container.log)")
  }

  /// `--root DIR` takes the root from elsewhere, as a runtime that mounted the rootfs again
  /// names it; the dumped one may be gone.
  @Test func restoreTakesTheRootFromRoot() throws {
    let scratch = try Scratch()
    let container = try FixtureContainer("rootfs", [scratch.path])
    defer { container.destroy() }
    try container.dumpAndWaitGone()
    let moved = scratch.path + "/moved"
    try FileManager.default.moveItem(atPath: scratch.path + "/root", toPath: moved)
    let restore = try container.restore(["--root", moved])
    try #require(restore.status == 0, "restore failed: \(restore.output)")
    #expect(try rootMountSource(of: container.restoredPid) == moved)
    let status = try container.terminateRestored()
    #expect(status == 0, "rootfs exited with \(status); log: \(container.log)")
  }

  /// A root that is gone, or `--root` that is no directory, fails the restore in one line
  /// before anything is made; `--root` for a container without a root of its own too.
  @Test func aMissingRootIsRefused() throws {
    let scratch = try Scratch()
    let before = try stagingDirectories()
    let container = try FixtureContainer("rootfs", [scratch.path])
    defer { container.destroy() }
    try container.dumpAndWaitGone()
    let notThere = scratch.path + "/not-there"
    let refused = try container.restore(["--root", notThere])
    #expect(refused.status == 2)
    #expect(refused.stderr == "ckcont: error: --root \(notThere) is not a directory\n", "\(refused.stderr)")
    #expect(container.cgroup.allPids().isEmpty)
    try FileManager.default.removeItem(atPath: scratch.path + "/root")
    let gone = try container.restore()
    #expect(gone.status == 1)
    #expect(gone.stderr.contains("bind-mount \(scratch.path)/root at /: No such file or directory"), "\(gone.stderr)")
    #expect(container.cgroup.allPids().isEmpty)
    #expect(try stagingDirectories() == before)

    let plain = try FixtureContainer("counter")
    defer { plain.destroy() }
    try plain.dumpAndWaitGone()
    let wrong = try plain.restore(["--root", scratch.path])
    #expect(wrong.status == 2)
    #expect(
      wrong.stderr == "ckcont: error: --root \(scratch.path): the container had no root filesystem of its own\n",
      "\(wrong.stderr)")
  }
}
