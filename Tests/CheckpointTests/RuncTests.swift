import Foundation
import Glibc
import TestSupport
import Testing

/// A container made by runc itself (Debian's runc, a busybox rootfs): its rootfs bind, pivot
/// and masked paths, /dev with devpts, mqueue and shm, read-only sysfs with the cgroup
/// mounts, a shell with a child, stdio on a file outside the root.
@Suite(.serialized)
struct RuncTests {
  /// A runc bundle whose shell counts into /tmp/count of its rootfs ten times a second.
  final class RuncContainer {
    let id = "ckcont-test-\(UInt32.random(in: 0...UInt32.max))"
    let bundle = NSTemporaryDirectory() + "ckcont-runc-\(UUID().uuidString)"
    var rootfs: String { bundle + "/rootfs" }
    var restoredPid: Int32 = 0
    /// The process whose /tmp (a tmpfs of the container's) holds the count.
    var counting: Int32 = 0

    /// `userNamespace`: in a user namespace of its own, ids 0-65535 on the host's 100000-165535
    /// (a rootless runtime's mapping).
    init(userNamespace: Bool) throws {
      // Until destroy(): runc's cgroups take the controllers the v2 root enables.
      v2RootControllers.lock()
      do {
        try make(userNamespace: userNamespace)
      } catch {
        v2RootControllers.unlock()
        throw error
      }
    }

    private func make(userNamespace: Bool) throws {
      let files = FileManager.default
      // Root's directories: the container's root (host uid 100000) could not make them.
      for directory in ["bin", "proc", "sys/fs/cgroup", "dev", "tmp", "etc"] {
        try files.createDirectory(atPath: rootfs + "/" + directory, withIntermediateDirectories: true)
      }
      try files.copyItem(atPath: "/bin/busybox", toPath: rootfs + "/bin/busybox")
      for applet in ["sh", "sleep"] {
        try files.createSymbolicLink(atPath: rootfs + "/bin/" + applet, withDestinationPath: "busybox")
      }
      let spec = run(["/usr/sbin/runc", "spec", "--bundle", bundle])
      guard spec.status == 0 else { throw TestFailure("runc spec: \(spec.output)") }
      let configPath = bundle + "/config.json"
      guard
        var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: configPath)))
          as? [String: Any],
        var process = config["process"] as? [String: Any]
      else { throw TestFailure("runc spec wrote no process") }
      process["terminal"] = false
      process["args"] = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done"]
      config["process"] = process
      if userNamespace, var linux = config["linux"] as? [String: Any] {
        linux["namespaces"] = (linux["namespaces"] as? [[String: Any]] ?? []) + [["type": "user"]]
        linux["uidMappings"] = [["containerID": 0, "hostID": 100_000, "size": 65536]]
        linux["gidMappings"] = [["containerID": 0, "hostID": 100_000, "size": 65536]]
        config["linux"] = linux
      }
      // runc spec makes the root read-only: the count goes to a tmpfs of the container's.
      var mounts = config["mounts"] as? [[String: Any]] ?? []
      mounts.append([
        "destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "mode=1777", "size=1m"],
      ])
      config["mounts"] = mounts
      try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: configPath))
      let started = run([
        "/bin/sh", "-c",
        "exec /usr/sbin/runc run --bundle '\(bundle)' --detach \(id) >'\(bundle)/out.log' 2>&1 </dev/null",
      ])
      guard started.status == 0 else { throw TestFailure("runc run: \(started.output) \(log)") }
    }

    var log: String { (try? String(contentsOfFile: bundle + "/out.log", encoding: .utf8)) ?? "" }

    /// The count the shell last wrote (0 before the first).
    var count: Int {
      let text = (try? String(contentsOfFile: "/proc/\(counting)/root/tmp/count", encoding: .utf8)) ?? ""
      return Int(text.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    }

    func waitForCount(above value: Int, timeout: Double = 5) throws {
      let deadline = Date().addingTimeInterval(timeout)
      while count <= value {
        guard Date() < deadline else {
          throw TestFailure("the count stays at \(count), not above \(value); runc: \(log)")
        }
        usleep(20_000)
      }
    }

    /// The container's init, as runc reports it.
    func initPid() throws -> Int32 {
      let state = run(["/usr/sbin/runc", "state", id])
      guard let json = try JSONSerialization.jsonObject(with: Data(state.stdout.utf8)) as? [String: Any],
        let pid = json["pid"] as? Int
      else { throw TestFailure("runc state: \(state.output)") }
      return Int32(pid)
    }

    /// The container's cgroup in the freezer hierarchy (v1) or the unified one.
    func cgroupPath(of pid: Int32) throws -> String {
      let lines = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8).split(separator: "\n")
      if let freezer = lines.first(where: { $0.split(separator: ":")[1] == "freezer" }) {
        return "/sys/fs/cgroup/freezer" + freezer.split(separator: ":", maxSplits: 2)[2]
      }
      guard let unified = lines.first(where: { $0.hasPrefix("0::") }) else { throw TestFailure("no cgroup of \(pid)") }
      let mount =
        FileManager.default.fileExists(atPath: "/sys/fs/cgroup/unified") ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup"
      return mount + unified.dropFirst(3)
    }

    func destroy() {
      if restoredPid > 0 {
        kill(restoredPid, SIGKILL)
        var status: Int32 = 0
        waitpid(restoredPid, &status, 0)
        // Not a child when another process reaps orphans: wait until it is gone.
        for _ in 0..<500 where kill(restoredPid, 0) == 0 { usleep(10_000) }
      }
      run(["/usr/sbin/runc", "delete", "--force", id])
      // runc deletes the cgroups of the container it ran; those the restore made again in
      // the v2 hierarchy of a hybrid host it does not know (empty by now): removed here.
      for hierarchy in (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? [] {
        rmdir("/sys/fs/cgroup/\(hierarchy)/\(id)")
      }
      try? FileManager.default.removeItem(atPath: bundle)
      if !released {
        released = true
        v2RootControllers.unlock()
      }
    }
    private var released = false
  }

  @Test(arguments: [false, true])
  func aRuncContainerComesBack(userNamespace: Bool) throws {
    let container = try RuncContainer(userNamespace: userNamespace)
    defer { container.destroy() }
    try dumpAndRestore(container)
    let mounts = try String(contentsOfFile: "/proc/\(container.restoredPid)/mountinfo", encoding: .utf8)
    for point in [" / ", " /proc ", " /dev/pts ", " /dev/mqueue ", " /sys ", " /proc/keys ", " /tmp "] {
      #expect(mounts.contains(point), "no mount at\(point)in \(mounts)")
    }
    #expect(try readLink("/proc/\(container.restoredPid)/fd/1") == container.bundle + "/out.log")
    let map = try String(contentsOfFile: "/proc/\(container.restoredPid)/uid_map", encoding: .utf8)
    let expected = userNamespace ? ["0", "100000", "65536"] : ["0", "0", "4294967295"]
    #expect(map.split(whereSeparator: \.isWhitespace).map(String.init) == expected, "uid_map: \(map)")
  }

  /// Restored under another cgroup root, the container is in a cgroup of that root in every
  /// hierarchy runc gave it one (devices, blkio, named ones too), and runc's bind mounts of
  /// its cgroups show the new ones.
  @Test func aRuncContainerMovesToAnotherCgroup() throws {
    let container = try RuncContainer(userNamespace: false)
    let root = "/ckcont-test-moved-\(UInt32.random(in: 0...UInt32.max))"
    defer {
      container.destroy()
      let hierarchies = (try? FileManager.default.contentsOfDirectory(atPath: "/sys/fs/cgroup")) ?? []
      for name in hierarchies { rmdir("/sys/fs/cgroup/\(name)\(root)") }
    }
    try dumpAndRestore(container, arguments: ["--cgroup-root", root])
    let cgroups = try String(contentsOfFile: "/proc/\(container.restoredPid)/cgroup", encoding: .utf8).split(
      separator: "\n")
    for controller in ["freezer", "devices", "memory", "name=systemd"] {
      let line = cgroups.first { $0.split(separator: ":")[1] == controller } ?? "none"
      #expect(line.hasSuffix(":" + root), "\(controller): \(line)")
    }
    let mounts = try String(contentsOfFile: "/proc/\(container.restoredPid)/mountinfo", encoding: .utf8).split(
      separator: "\n")
    for point in ["/sys/fs/cgroup/freezer", "/sys/fs/cgroup/devices"] {
      let line = mounts.first { $0.split(separator: " ")[4] == point } ?? "none"
      #expect(line.split(separator: " ").dropFirst(3).first == root[...], "\(point): \(line)")
    }
  }

  /// Dumped by its name (ckcont picks the v2 cgroup), deleted by runc (which removes its
  /// cgroups in every hierarchy), restored: the container is back in the same cgroups of
  /// every hierarchy, v2, each v1 controller and name=systemd, and counts on.
  @Test func aRuncContainerComesBackInEveryHierarchyAfterRuncDelete() throws {
    let container = try RuncContainer(userNamespace: false)
    defer { container.destroy() }
    let pid = try container.initPid()
    container.counting = pid
    try container.waitForCount(above: 5)
    func cgroups(of pid: Int32) -> [String] {
      ((try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? "").split(separator: "\n").map(
        String.init
      ).sorted()
    }
    let before = cgroups(of: pid)
    try #require(before.filter { $0.hasSuffix(container.id) }.count >= 5, "runc made no cgroups of its own: \(before)")
    let bundlePath = container.bundle + "/checkpoint.ckpt"
    let dump = run([TestPaths.ckcont, "dump", container.id, "-o", bundlePath])
    try #require(dump.status == 0, "dump failed: \(dump.output)")
    for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
    let deleted = run(["/usr/sbin/runc", "delete", "--force", container.id])
    #expect(deleted.status == 0, "\(deleted.output)")
    #expect(access("/sys/fs/cgroup/freezer/\(container.id)", F_OK) != 0, "runc delete left the freezer cgroup")
    let dumped = container.count
    let restore = run([TestPaths.ckcont, "restore", bundlePath])
    try #require(restore.status == 0, "restore failed: \(restore.output)")
    container.restoredPid = Int32(restore.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    container.counting = container.restoredPid
    #expect(cgroups(of: container.restoredPid) == before)
    try container.waitForCount(above: dumped + 3)
    // runc no longer knows it: its cgroups are ckcont's to remove after the kill.
    kill(container.restoredPid, SIGKILL)
    for _ in 0..<250 where kill(container.restoredPid, 0) == 0 { usleep(20_000) }
    container.restoredPid = 0
    for line in before {
      let parts = line.split(separator: ":", maxSplits: 2)
      guard parts.count == 3, parts[2].hasSuffix(container.id) else { continue }
      let name = parts[1].isEmpty ? "unified" : parts[1].replacingOccurrences(of: "name=", with: "")
      rmdir("/sys/fs/cgroup/\(name)\(parts[2])")
    }
  }

  /// What a hook has: the container's OCI state (`runc state` prints the same JSON a hook gets
  /// on standard input). freeze, thaw and dump take it with --oci-state and find the
  /// container's cgroup from its init; a state whose process is gone is refused in one line.
  @Test func aHookDrivesCkcontWithTheContainersOCIState() throws {
    let container = try RuncContainer(userNamespace: false)
    defer { container.destroy() }
    let pid = try container.initPid()
    container.counting = pid
    try container.waitForCount(above: 3)
    let state = container.bundle + "/state.json"
    let written = run(["/bin/sh", "-c", "/usr/sbin/runc state \(container.id) > '\(state)'"])
    try #require(written.status == 0, "\(written.output)")
    func ckcont(_ arguments: String) -> CommandResult {
      run(["/bin/sh", "-c", "\(TestPaths.ckcont) \(arguments) --oci-state - < '\(state)'"])
    }
    let frozen = ckcont("freeze --json")
    #expect(frozen.status == 0, "\(frozen.output)")
    let cgroup =
      (try? JSONSerialization.jsonObject(with: Data(frozen.stdout.utf8)) as? [String: Any])?["cgroup"] as? String
    let own = try String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)
    #expect(
      cgroup.map { own.contains("::" + $0.replacingOccurrences(of: "/sys/fs/cgroup/unified", with: "")) } == true,
      "froze \(cgroup ?? "nothing"); the init is in \(own)")
    let still = container.count
    usleep(300_000)
    #expect(container.count == still, "the container counts on while frozen")
    let thawed = run([TestPaths.ckcont, "thaw", "--oci-state", state])
    #expect(thawed.status == 0, "\(thawed.output)")
    try container.waitForCount(above: still)
    let bundlePath = container.bundle + "/hook.ckpt"
    let dumped = ckcont("dump --leave-running -o '\(bundlePath)'")
    #expect(dumped.status == 0, "\(dumped.output)")
    #expect(FileManager.default.fileExists(atPath: bundlePath))
    try container.waitForCount(above: container.count)
    // Both, or neither, or a state whose process is gone: refused, one line, nothing done.
    let both = run([TestPaths.ckcont, "freeze", "web", "--oci-state", state])
    #expect(both.status == 64 && both.stderr.contains("give the cgroup or --oci-state"), "\(both.output)")
    try #"{"ociVersion":"1.0.2","id":"gone","status":"stopped","pid":999999999,"bundle":"/x"}"#.write(
      toFile: state, atomically: true, encoding: .utf8)
    let gone = ckcont("freeze")
    #expect(gone.status == 2 && gone.stderr.contains("names no running process"), "\(gone.output)")
    #expect(gone.stderr.split(separator: "\n").count == 1)
  }

  /// Through the runtime front, as podman drives it: `ckcont-runc checkpoint` (runc then
  /// says stopped, and `runc delete` removes it, as podman runs it), `ckcont-runc restore
  /// --detach --pid-file`: the container counts on, runc knows it again (state running with
  /// the restored pid, list), and runc's kill and delete end it and remove its cgroups.
  /// Other commands reach runc itself; what ckcont cannot do is refused in one line.
  @Test func runcKnowsAContainerRestoredThroughTheFront() throws {
    let container = try RuncContainer(userNamespace: false)
    defer { container.destroy() }
    let front = TestPaths.ckcontRunc
    let listed = run([front, "list"])
    #expect(listed.status == 0 && listed.stdout.contains(container.id), "\(listed.output)")
    #expect(run([front, "checkpoint", "--help"]).status == 0)
    let images = container.bundle + "/checkpoint"
    let lazy = run([front, "checkpoint", "--lazy-pages", "--image-path", images, container.id])
    #expect(lazy.status == 64 && lazy.stderr.contains("--lazy-pages"), "\(lazy.output)")
    let pid = try container.initPid()
    container.counting = pid
    try container.waitForCount(above: 5)
    // runc's chain: a pre-dump (the container counts on), then the checkpoint against it.
    let preDump = run([front, "checkpoint", "--pre-dump", "--image-path", container.bundle + "/pre", container.id])
    try #require(preDump.status == 0, "\(preDump.output)")
    #expect(kill(pid, 0) == 0, "the pre-dump stopped the container")
    let checkpoint = run([
      front, "checkpoint", "--image-path", images, "--work-path", images, "--parent-path", "../pre", container.id,
    ])
    try #require(checkpoint.status == 0, "\(checkpoint.output)")
    for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
    #expect(run(["/usr/sbin/runc", "state", container.id]).stdout.contains("\"stopped\""))
    let deleted = run(["/usr/sbin/runc", "delete", "--force", container.id])
    #expect(deleted.status == 0, "\(deleted.output)")
    let dumped = container.count
    let pidFile = container.bundle + "/restored.pid"
    let restore = run([
      front, "restore", "--image-path", images, "--work-path", images, "--bundle", container.bundle, "--detach",
      "--pid-file", pidFile, container.id,
    ])
    try #require(restore.status == 0, "\(restore.output)")
    let restored = Int32((try? String(contentsOfFile: pidFile, encoding: .utf8)) ?? "") ?? 0
    try #require(restored > 0)
    container.restoredPid = restored
    container.counting = restored
    try container.waitForCount(above: dumped + 3)
    #expect(try container.initPid() == restored)
    #expect(run(["/usr/sbin/runc", "state", container.id]).stdout.contains("\"running\""))
    #expect(run(["/usr/sbin/runc", "list"]).stdout.contains(container.id))
    #expect(run(["/usr/sbin/runc", "kill", container.id, "KILL"]).status == 0)
    // Gone, or a zombie of whoever reaps orphans here (the test runner may).
    func ended() -> Bool {
      var status: Int32 = 0
      _ = waitpid(restored, &status, WNOHANG)
      let stat = (try? String(contentsOfFile: "/proc/\(restored)/stat", encoding: .utf8)) ?? ""
      return stat.isEmpty || stat.split(separator: ")").last?.split(separator: " ").first == "Z"
    }
    for _ in 0..<250 where !ended() { usleep(20_000) }
    #expect(ended(), "runc kill left the restored init running")
    container.restoredPid = 0
    let removed = run(["/usr/sbin/runc", "delete", container.id])
    #expect(removed.status == 0, "\(removed.output)")
    #expect(access("/sys/fs/cgroup/freezer/\(container.id)", F_OK) != 0, "runc delete left the freezer cgroup")
    // A directory with a CRIU image is not ours.
    let criu = container.bundle + "/criu-image"
    try FileManager.default.createDirectory(atPath: criu, withIntermediateDirectories: true)
    _ = FileManager.default.createFile(atPath: criu + "/inventory.img", contents: Data([0x54, 0x58]))
    let refused = run([front, "restore", "--image-path", criu, "--bundle", container.bundle, "-d", container.id])
    #expect(refused.status == 1 && refused.stderr.contains("holds a CRIU image"), "\(refused.output)")
    #expect(refused.stderr.split(separator: "\n").count == 1)
  }

  /// `ckcont-runc restore` without --detach stays in the foreground, the restored init its
  /// child (it is a subreaper), and exits with the container's status once it ends.
  @Test func aForegroundRestoreExitsWithTheContainer() throws {
    let container = try RuncContainer(userNamespace: false)
    defer { container.destroy() }
    let front = TestPaths.ckcontRunc
    let pid = try container.initPid()
    container.counting = pid
    try container.waitForCount(above: 3)
    let images = container.bundle + "/checkpoint"
    let checkpoint = run([front, "checkpoint", "--image-path", images, container.id])
    try #require(checkpoint.status == 0, "\(checkpoint.output)")
    for _ in 0..<250 where kill(pid, 0) == 0 { usleep(20_000) }
    #expect(run(["/usr/sbin/runc", "delete", "--force", container.id]).status == 0)
    let dumped = container.count
    let restore = try BackgroundProcess([
      front, "restore", "--image-path", images, "--bundle", container.bundle, container.id,
    ])
    defer { restore.stop() }
    var restored: Int32 = 0
    for _ in 0..<250 where restored == 0 {
      restored = (try? container.initPid()) ?? 0
      if restored == 0 { usleep(20_000) }
    }
    try #require(restored > 0, "runc knows no restored init; front: \(restore.log)")
    container.counting = restored
    try container.waitForCount(above: dumped + 2)
    #expect(restore.isRunning, "the front left before the container ended: \(restore.log)")
    #expect(run(["/usr/sbin/runc", "kill", container.id, "KILL"]).status == 0)
    #expect(restore.waitUntilExit() == 128 + SIGKILL, "\(restore.log)")
  }

  /// Dumps the counting container (killing it) and restores it with `arguments`: it counts
  /// on from where it was (its tmpfs came back), not from 1 again.
  func dumpAndRestore(_ container: RuncContainer, arguments: [String] = []) throws {
    let pid = try container.initPid()
    container.counting = pid
    try container.waitForCount(above: 10)
    let cgroup = try container.cgroupPath(of: pid)
    let bundlePath = container.bundle + "/checkpoint.ckpt"
    let dumped = container.count
    let dump = run([TestPaths.ckcont, "dump", cgroup, "-o", bundlePath])
    try #require(dump.status == 0, "dump failed: \(dump.output)")
    // Killed once the bundle is verified: gone from its cgroup soon after.
    var left = "?"
    for _ in 0..<250 where !left.isEmpty {
      left = (try? String(contentsOfFile: cgroup + "/cgroup.procs", encoding: .utf8)) ?? ""
      usleep(20_000)
    }
    #expect(left.isEmpty, "the dumped container still runs: \(left)")
    let restore = run([TestPaths.ckcont, "restore", bundlePath] + arguments)
    try #require(restore.status == 0, "restore failed: \(restore.output)")
    container.restoredPid = Int32(restore.stdout.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    container.counting = container.restoredPid
    #expect(container.count >= dumped)
    try container.waitForCount(above: dumped + 3)
    #expect(container.count < dumped + 60)
  }

  func readLink(_ path: String) throws -> String {
    var buffer = [CChar](repeating: 0, count: 4096)
    let count = readlink(path, &buffer, buffer.count - 1)
    guard count >= 0 else { throw TestFailure("readlink \(path): \(String(cString: strerror(errno)))") }
    return String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}
