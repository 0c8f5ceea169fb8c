import Foundation
import Glibc
import Linux
import Testing

/// Paths resolved in a directory as their root: "..", absolute paths and symlinks (to an
/// absolute path, climbing with "..", looping) stay inside it, for every call a restore
/// makes on a bundle's path.
@Suite struct RootedDirectoryTests {
  /// base/root (the root: a directory `dir`, symlinks `abs` -> /, `climb` -> ../../..,
  /// `host` -> base/outside, `loop` -> loop) and base/outside, which must stay empty.
  final class Tree {
    let base = NSTemporaryDirectory() + "ckcont-rooted-\(UUID().uuidString)"
    var root: String { base + "/root" }
    var outside: String { base + "/outside" }
    init() throws {
      let files = FileManager.default
      try files.createDirectory(atPath: root + "/dir", withIntermediateDirectories: true)
      try files.createDirectory(atPath: outside, withIntermediateDirectories: false)
      for (name, target) in [("abs", "/"), ("climb", "../../.."), ("host", outside), ("loop", "loop")] {
        try files.createSymbolicLink(atPath: root + "/" + name, withDestinationPath: target)
      }
    }
    deinit { try? FileManager.default.removeItem(atPath: base) }
  }

  @Test func canonicalPathsNameTheSameFileInsideTheRoot() throws {
    let tree = try Tree()
    let root = try RootedDirectory(tree.root, name: "test root")
    #expect(try root.canonical("/abs/dir") == "/dir")
    #expect(try root.canonical("/climb/dir/new") == "/dir/new")
    #expect(try root.canonical("../../../dir/./x") == "/dir/x")
    #expect(try root.canonical("/host/x") == tree.outside + "/x")
    #expect(throws: SyscallError.self) { try root.canonical("/loop/x") }
  }

  @Test func directoriesAndFilesAreMadeInsideTheRoot() throws {
    let tree = try Tree()
    let root = try RootedDirectory(tree.root, name: "test root")
    try root.makeDirectories("/host/made/deep")
    try root.makeDirectories("/climb/../other")
    #expect(try FileManager.default.contentsOfDirectory(atPath: tree.outside) == [])
    #expect(root.fileType("/host/made/deep") == S_IFDIR)
    #expect(FileManager.default.fileExists(atPath: tree.root + tree.outside + "/made/deep"))
    #expect(FileManager.default.fileExists(atPath: tree.root + "/other"))
    // The parent of a path through a symlink is resolved in the root too.
    try root.withParent(of: "/host/made/file") { directory, entry in
      #expect(entry == "file")
      let fd = openat(directory, entry, O_WRONLY | O_CREAT | O_EXCL, 0o600)
      #expect(fd >= 0)
      close(fd)
    }
    #expect(FileManager.default.fileExists(atPath: tree.root + tree.outside + "/made/file"))
    #expect(try FileManager.default.contentsOfDirectory(atPath: tree.outside) == [])
    // A name of its own is needed for an entry.
    #expect(throws: SyscallError.self) { try root.withParent(of: "/dir/..") { _, _ in } }
    #expect(throws: SyscallError.self) { try root.withParent(of: "/") { _, _ in } }
    // open through ".." above the root stays in it.
    #expect(throws: SyscallError.self) { _ = try root.open("/climb/etc/passwd", flags: O_RDONLY) }
  }
}
