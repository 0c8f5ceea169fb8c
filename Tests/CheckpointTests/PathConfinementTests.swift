import Bundle
import Foundation
import Glibc
import TestSupport
import Testing

/// Paths a bundle names are resolved inside the container's root, never through a symlink
/// out of it (issue 20: "paths from bundles never escape"). A bundle of the `rootfs` fixture
/// (a root of its own) gets mounts whose paths go through symlinks of a tmpfs the bundle
/// itself fills: one to an absolute host directory, one climbing with "..". Before this was
/// fixed, ckcont made the mount point and wrote the tmpfs's file in the host's directory,
/// and bound the host's `/` into the container.
@Suite(.serialized)
struct PathConfinementTests {
  @Test func mountsOfABundleStayInTheContainersRoot() throws {
    let scratch = try RootFilesystemTests.Scratch()
    let host = scratch.path + "/host"
    try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: false)
    let container = try FixtureContainer("rootfs", [scratch.path])
    defer { container.destroy() }
    try container.dumpAndWaitGone()

    let original = Array(try Data(contentsOf: URL(fileURLWithPath: container.bundlePath)))
    let trap = "/ckcont-trap"
    let edited = try rewriteBundle(original, replacing: "mounts.json") { bytes in
      var image = try JSONDecoder().decode(MountsImage.self, from: Data(bytes))
      image.mounts += [
        MountImage(
          kind: .filesystem, mountPoint: trap, fsType: "tmpfs", source: "tmpfs", flags: 0, options: "",
          files: [
            MountFileImage(kind: .symlink, path: "out", mode: 0o777, uid: 0, gid: 0, target: host),
            MountFileImage(kind: .symlink, path: "up", mode: 0o777, uid: 0, gid: 0, target: "../../../../../../.."),
          ]),
        // Its mount point and its file through the absolute symlink.
        MountImage(
          kind: .filesystem, mountPoint: trap + "/out/inner", fsType: "tmpfs", source: "tmpfs", flags: 0, options: "",
          files: [MountFileImage(kind: .file, path: "pwned", mode: 0o644, uid: 0, gid: 0, contents: Data("x".utf8))]),
        // A bind from the container whose source climbs out with "..".
        MountImage(
          kind: .bind, mountPoint: "/ckcont-bound", fsType: "tmpfs", source: trap + "/up", sourceInContainer: true,
          flags: 0, options: ""),
      ]
      return Array(try JSONEncoder().encode(image))
    }
    try Data(edited).write(to: URL(fileURLWithPath: container.bundlePath))

    let restore = try container.restore()
    try #require(restore.status == 0, "restore failed: \(restore.output)")
    let inside = "/proc/\(container.restoredPid)/root"
    // Nothing was made in the host's directory; the container has it all in its own root.
    #expect(try FileManager.default.contentsOfDirectory(atPath: host) == [])
    #expect(FileManager.default.fileExists(atPath: inside + host + "/inner/pwned"))
    #expect(FileManager.default.fileExists(atPath: scratch.path + "/root" + host + "/inner"))
    // The bind of ".." above the root is the container's root, not the host's.
    var bound = stat()
    var containerRoot = stat()
    try #require(stat(inside + "/ckcont-bound", &bound) == 0)
    try #require(stat(scratch.path + "/root", &containerRoot) == 0)
    #expect(bound.st_dev == containerRoot.st_dev && bound.st_ino == containerRoot.st_ino)
  }
}
