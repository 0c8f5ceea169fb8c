import Foundation
import Glibc
import TestSupport
import Testing

/// `--action-script`: a program run at each stage of a dump and a restore with the stage and
/// the container's pids in its environment; one that fails fails the dump (the container
/// runs on, no bundle) or the restore (nothing left of it).
@Suite(.serialized)
struct ActionScriptTests {
  /// A script in a directory of its own that logs each stage and, at `failAt`, exits 3.
  final class Script {
    let directory = NSTemporaryDirectory() + "ckcont-action-\(UUID().uuidString)"
    var path: String { directory + "/action" }
    var logPath: String { directory + "/log" }

    init(failAt: String = "none") throws {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
      let text = """
        #!/bin/sh
        line="$CKCONT_ACTION $CRTOOLS_SCRIPT_ACTION pids=[$CKCONT_PIDS] init=[$CRTOOLS_INIT_PID] cgroup=$CKCONT_CGROUP"
        case "$CKCONT_ACTION" in
          post-dump) [ -s "$BUNDLE" ] && line="$line bundle-in-place" ;;
          setup-namespaces) [ "$(readlink /proc/$CRTOOLS_INIT_PID/ns/pid)" != "$(readlink /proc/self/ns/pid)" ] && line="$line own-pid-namespace" ;;
        esac
        echo "$line" >> '\(logPath)'
        [ "$CKCONT_ACTION" = '\(failAt)' ] && { echo "action script: refusing $CKCONT_ACTION" >&2; exit 3; }
        exit 0

        """
      try text.write(toFile: path, atomically: true, encoding: .utf8)
      chmod(path, 0o755)
    }

    var lines: [String] {
      ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
  }

  @Test func everyStageRunsInOrderWithTheContainersPids() throws {
    let script = try Script()
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    let pids = container.cgroup.allPids()
    let dumped = run(
      [TestPaths.ckcont, "dump", container.cgroup.path, "-o", container.bundlePath, "--action-script", script.path],
      environment: ["BUNDLE": container.bundlePath])
    #expect(dumped.status == 0, "\(dumped.output)")
    try container.waitEmpty()
    let restored = try container.restore(["--action-script", script.path])
    #expect(restored.status == 0, "\(restored.output)")
    let stages = script.lines.map { $0.split(separator: " ").first.map(String.init) ?? "" }
    #expect(
      stages == [
        "pre-dump", "post-dump", "pre-restore", "setup-namespaces", "post-setup-namespaces", "post-restore",
        "post-resume",
      ], "\(script.lines)")
    let lines = script.lines
    #expect(lines.allSatisfy { $0.split(separator: " ")[0] == $0.split(separator: " ")[1] }, "CRTOOLS_SCRIPT_ACTION")
    #expect(lines.first?.contains("pids=[\(pids.map(String.init).joined(separator: " "))]") == true, "\(lines)")
    #expect(lines.first?.contains("cgroup=\(container.cgroup.path)") == true, "\(lines)")
    #expect(lines.dropFirst().first?.hasSuffix("bundle-in-place") == true, "\(lines)")
    #expect(lines.dropFirst(3).first?.contains("init=[\(container.restoredPid)]") == true, "\(lines)")
    #expect(lines.dropFirst(3).first?.hasSuffix("own-pid-namespace") == true, "\(lines)")
    #expect(try container.terminateRestored() == 0, "\(container.log)")
  }

  @Test func aScriptThatFailsAfterTheBundleIsWrittenLeavesTheContainerRunningAndNoBundle() throws {
    let script = try Script(failAt: "post-dump")
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    let pids = container.cgroup.allPids()
    let dumped = container.dump(["--action-script", script.path])
    #expect(dumped.status == 1, "\(dumped.output)")
    #expect(dumped.stderr.contains("the action script \(script.path) failed at post-dump: exited with status 3"))
    #expect(dumped.stderr.contains("action script: refusing post-dump"))
    #expect(!FileManager.default.fileExists(atPath: container.bundlePath))
    #expect(container.cgroup.allPids() == pids)
    #expect(container.cgroup.read("cgroup.events").contains("frozen 0"))
  }

  @Test func aScriptThatFailsBeforeTheResumeUndoesTheRestore() throws {
    let script = try Script(failAt: "post-restore")
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.dumpAndWaitGone()
    let bundle = try Data(contentsOf: URL(fileURLWithPath: container.bundlePath))
    let restored = try container.restore(["--action-script", script.path])
    #expect(restored.status == 1, "\(restored.output)")
    #expect(restored.stderr.contains("failed at post-restore"), "\(restored.stderr)")
    #expect(container.cgroup.allPids().isEmpty)
    #expect(try Data(contentsOf: URL(fileURLWithPath: container.bundlePath)) == bundle)
    let missing = run([TestPaths.ckcont, "restore", container.bundlePath, "--action-script", "/nonexistent"])
    #expect(missing.status == 64 && missing.stderr.contains("is not an executable program"), "\(missing.output)")
  }
}
