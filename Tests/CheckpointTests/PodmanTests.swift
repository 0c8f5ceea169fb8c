import Foundation
import Glibc
import TestSupport
import Testing

/// Debian's podman with ckcont-runc as its runtime: `podman container checkpoint` and
/// `restore` go through the front to ckcont (podman asks `criu swrk` for a version first:
/// Debian's criu answers, though it cannot dump on this kernel). The containers run a
/// busybox shell from a local image that counts lines on its standard output, which conmon
/// keeps: the log shows where it went on after a restore.
@Suite(.serialized)
struct PodmanTests {
  /// A local image of busybox-static (no registry is reachable), made once.
  static let image: String = {
    let name = "localhost/ckcont-test-busybox:latest"
    let root = NSTemporaryDirectory() + "ckcont-podman-image-\(UUID().uuidString)"
    defer { try? FileManager.default.removeItem(atPath: root) }
    let files = FileManager.default
    for directory in ["bin", "tmp", "etc", "proc", "sys", "dev", "run"] {
      try? files.createDirectory(atPath: root + "/rootfs/" + directory, withIntermediateDirectories: true)
    }
    try? files.copyItem(atPath: "/bin/busybox", toPath: root + "/rootfs/bin/busybox")
    for applet in ["sh", "sleep", "echo"] {
      try? files.createSymbolicLink(atPath: root + "/rootfs/bin/" + applet, withDestinationPath: "busybox")
    }
    _ = run(["/bin/tar", "-C", root + "/rootfs", "-cf", root + "/image.tar", "."])
    _ = run(["/usr/bin/podman", "import", root + "/image.tar", name])
    return name
  }()

  /// podman with the front as runtime and the limits this host allows (root lacks
  /// CAP_SYS_RESOURCE: podman's default nofile limit is above the hard limit here).
  static func podman(_ arguments: [String]) -> CommandResult {
    run(["/usr/bin/podman"] + arguments)
  }

  /// A counting container, detached, through the front.
  final class Container {
    let name = "ckcont-test-\(UInt32.random(in: 0...UInt32.max))"
    var names: [String]

    /// `terminal`: with a terminal (`-t`), conmon holding its master. `deletedExecutable`: a
    /// sleep in the background whose executable (a copy of busybox) was deleted since it
    /// started (which ckcont refuses).
    /// `echoPort`: in the host's network namespace, with busybox's nc echoing on that port.
    /// `bridged`: on podman's default network (netavark's bridge: a veth pair whose end in
    /// the container is eth0 with an address of its own), its lines going out and back
    /// through a TCP connection to its own address (`script` replaces the counting loop).
    init(terminal: Bool = false, deletedExecutable: Bool = false, echoPort: UInt16? = nil, bridged: Bool = false)
      throws
    {
      names = [name]
      let deleted =
        deletedExecutable
        ? "busybox cp /bin/busybox /tmp/sleep && (/tmp/sleep 1000 &) && sleep 0.2 && busybox rm /tmp/sleep; " : ""
      let echo = echoPort.map { "nc -ll -p \($0) -e cat & " } ?? ""
      let count = "i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done"
      let script =
        bridged
        ? "busybox nc -ll -p 7000 -e cat & sleep 0.5; a=$(busybox hostname -i); \(count) | busybox nc $a 7000"
        : deleted + echo + count
      let network = bridged ? [] : ["--network", echoPort == nil ? "none" : "host"]
      let started = PodmanTests.podman(
        ["run", "-d", "--name", name] + network + ["--runtime", TestPaths.ckcontRunc]
          + ["--ulimit", "nofile=20000:20000", "--ulimit", "nproc=32768:32768"] + (terminal ? ["-t"] : [])

          + [PodmanTests.image, "sh", "-c", script])
      guard started.status == 0 else { throw TestFailure("podman run: \(started.output)") }
    }

    /// The last line the container wrote (0 before the first).
    func line(_ name: String? = nil) -> Int {
      let logs = PodmanTests.podman(["logs", "--tail", "1", name ?? self.name])
      return Int(logs.stdout.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? 0
    }

    func waitForLine(above value: Int, name: String? = nil, timeout: Double = 10) throws {
      let deadline = Date().addingTimeInterval(timeout)
      while line(name) <= value {
        guard Date() < deadline else { throw TestFailure("the log stays at line \(line(name)), not above \(value)") }
        usleep(50_000)
      }
    }

    /// `podman ps` says it runs.
    func isRunning(_ name: String? = nil) -> Bool {
      PodmanTests.podman(["ps", "--filter", "name=^\(name ?? self.name)$", "--format", "{{.Status}}"]).stdout
        .hasPrefix("Up")
    }

    func destroy() {
      for name in names { _ = PodmanTests.podman(["rm", "-f", "-t", "0", name]) }
    }
  }

  /// Checkpoint (podman then shows it exited), restore: it goes on from where it was, podman
  /// shows it running, runc knows it, and `podman stop` ends it. With a terminal (`-t`): the
  /// restore makes a new console in the container's devpts, hands its master to conmon
  /// (the log goes on through it) and makes it the session's controlling terminal again.
  @Test(arguments: [false, true])
  func podmanCheckpointsAndRestoresThroughCkcont(terminal: Bool) throws {
    let container = try Container(terminal: terminal)
    defer { container.destroy() }
    try container.waitForLine(above: 5)
    let checkpoint = Self.podman(["container", "checkpoint", container.name])
    try #require(checkpoint.status == 0, "\(checkpoint.output)")
    #expect(!container.isRunning())
    let dumped = container.line()
    usleep(300_000)
    #expect(container.line() == dumped, "the container wrote on after its checkpoint")
    let restore = Self.podman(["container", "restore", container.name])
    try #require(restore.status == 0, "\(restore.output)")
    #expect(container.isRunning())
    try container.waitForLine(above: dumped + 3)
    #expect(container.line() < dumped + 100, "it started over or ran on: line \(container.line()) after \(dumped)")
    let id = Self.podman(["inspect", "--format", "{{.Id}}", container.name]).stdout.trimmingCharacters(
      in: .whitespacesAndNewlines)
    #expect(run(["/usr/sbin/runc", "state", id]).stdout.contains("\"running\""))
    let pid = Self.podman(["inspect", "--format", "{{.State.Pid}}", container.name]).stdout.trimmingCharacters(
      in: .whitespacesAndNewlines)
    if terminal {
      // tty_nr (field 7) is 136:0, the container's /dev/pts/0, whose /dev/console it is.
      let stat = (try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8)) ?? ""
      let fields = stat.split(separator: ")").last?.split(separator: " ") ?? []
      #expect(fields.count > 4 && fields[4] == "34816", "the init's controlling terminal: \(stat)")
      let mounts = (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? ""
      #expect(mounts.contains(" /0 /dev/console "), "\(mounts)")
    }
    let exec = Self.podman(["exec", container.name, "echo", "inside"])
    #expect(exec.status == 0 && exec.stdout.contains("inside"), "\(exec.output)")
    let stopped = Self.podman(["stop", "-t", "1", container.name])
    #expect(stopped.status == 0, "\(stopped.output)")
    #expect(!container.isRunning())
  }

  /// `checkpoint --export`, `rm`, `restore --import --name`: the same container under a new
  /// name (a new id, its cgroups and files podman made for it), going on where it was.
  @Test func podmanExportsAndImportsUnderANewName() throws {
    let container = try Container()
    let archive = NSTemporaryDirectory() + "ckcont-podman-\(UUID().uuidString).tar.gz"
    let copy = container.name + "-imported"
    container.names.append(copy)
    defer {
      container.destroy()
      try? FileManager.default.removeItem(atPath: archive)
    }
    try container.waitForLine(above: 5)
    let exported = Self.podman(["container", "checkpoint", "--export=\(archive)", container.name])
    try #require(exported.status == 0, "\(exported.output)")
    let dumped = container.line()
    #expect(Self.podman(["rm", container.name]).status == 0)
    let imported = Self.podman([
      "container", "restore", "--runtime", TestPaths.ckcontRunc, "--import=\(archive)", "--name", copy,
    ])
    try #require(imported.status == 0, "\(imported.output)")
    #expect(container.isRunning(copy))
    try container.waitForLine(above: dumped + 3, name: copy)
    let id = Self.podman(["inspect", "--format", "{{.Id}}", copy]).stdout.trimmingCharacters(
      in: .whitespacesAndNewlines)
    let pid = Self.podman(["inspect", "--format", "{{.State.Pid}}", copy]).stdout.trimmingCharacters(
      in: .whitespacesAndNewlines)
    let cgroups = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8)) ?? ""
    #expect(cgroups.contains("freezer:/libpod_parent/libpod-\(id)"), "\(cgroups)")
  }

  /// `--tcp-established`: a client outside the container (this test) holds a connection to
  /// its server (in the host's network namespace) across the checkpoint and the restore, and
  /// the connection carries data after, as if it had only been slow.
  @Test func podmanKeepsAConnectionFromOutside() throws {
    let port = UInt16.random(in: 40000...47999)
    let container = try Container(echoPort: port)
    defer { container.destroy() }
    try container.waitForLine(above: 2)
    let client = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    try #require(client >= 0)
    defer { close(client) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_port = port.bigEndian
    address.sin_addr.s_addr = UInt32(0x7f00_0001).bigEndian
    var connected = false
    for _ in 0..<100 where !connected {
      connected =
        withUnsafePointer(to: &address) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(client, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
          }
        } == 0
      if !connected { usleep(50_000) }
    }
    try #require(connected, "nothing listens on port \(port)")
    var timeout = timeval(tv_sec: 5, tv_usec: 0)
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
    func echo(_ text: String) -> String {
      _ = text.withCString { send(client, $0, text.utf8.count, Int32(MSG_NOSIGNAL)) }
      var buffer = [UInt8](repeating: 0, count: 64)
      let count = recv(client, &buffer, buffer.count, 0)
      return count > 0 ? String(decoding: buffer[0..<count], as: UTF8.self) : "(\(String(cString: strerror(errno))))"
    }
    #expect(echo("before\n") == "before\n")
    let checkpoint = Self.podman(["container", "checkpoint", "--tcp-established", container.name])
    try #require(checkpoint.status == 0, "\(checkpoint.output)")
    let restore = Self.podman(["container", "restore", "--tcp-established", container.name])
    try #require(restore.status == 0, "\(restore.output)")
    #expect(echo("after\n") == "after\n")
    #expect(container.isRunning())
  }

  /// A container on podman's default network: its namespace is netavark's, which podman
  /// makes again (same address) before it asks for the restore; ckcont saves none of it
  /// (`--external-net`) and the restored container joins the new one (`--join-net`). Its
  /// lines go through a TCP connection to its own eth0 address, which goes on.
  @Test func podmanRestoresAContainerOnItsOwnNetwork() throws {
    let container = try Container(bridged: true)
    defer { container.destroy() }
    try container.waitForLine(above: 2)
    func address() -> String {
      let key = Self.podman(["inspect", "--format", "{{.NetworkSettings.SandboxKey}}", container.name]).stdout
        .trimmingCharacters(in: .whitespacesAndNewlines)
      return run(["/usr/bin/nsenter", "--net=\(key)", "/sbin/ip", "-4", "-o", "addr", "show", "eth0"]).stdout
        .split(separator: " ").first { $0.contains("/") }.map(String.init) ?? "none"
    }
    let before = address()
    #expect(before.hasPrefix("10."), "eth0: \(before)")
    let checkpoint = Self.podman(["container", "checkpoint", "--tcp-established", container.name])
    try #require(checkpoint.status == 0, "\(checkpoint.output)")
    let last = container.line()
    let restore = Self.podman(["container", "restore", "--tcp-established", container.name])
    try #require(restore.status == 0, "\(restore.output)")
    try container.waitForLine(above: last + 5)
    #expect(container.isRunning())
    #expect(address() == before)
  }

  /// `--leave-running`: the checkpoint is taken and the container writes on; a checkpoint
  /// that fails (a container running a program whose executable was deleted, which ckcont
  /// refuses) leaves it running
  /// and podman shows ckcont's line.
  @Test func podmanLeavesTheContainerRunningWhenAskedOrWhenTheCheckpointFails() throws {
    let container = try Container()
    defer { container.destroy() }
    try container.waitForLine(above: 3)
    let left = Self.podman(["container", "checkpoint", "--leave-running", container.name])
    try #require(left.status == 0, "\(left.output)")
    #expect(container.isRunning())
    try container.waitForLine(above: container.line())
    let pinging = try Container(deletedExecutable: true)
    defer { pinging.destroy() }
    try pinging.waitForLine(above: 2)
    let refused = Self.podman(["container", "checkpoint", pinging.name])
    #expect(refused.status != 0)
    #expect(refused.stderr.contains("ckcont-runc: error: ckcont: task"), "\(refused.output)")
    #expect(refused.stderr.contains("was deleted since it started"), "\(refused.output)")
    #expect(pinging.isRunning())
    try pinging.waitForLine(above: pinging.line())
  }
}
