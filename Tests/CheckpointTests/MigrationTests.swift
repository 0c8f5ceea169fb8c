import Foundation
import Glibc
import TestSupport
import Testing

/// Two hosts on one machine (issue 18's test): a LAN (a bridge in a namespace of its own),
/// host namespaces A and B, each with a bridge br0 uplinked to the LAN and an address on
/// it, and a client namespace on the LAN. A container with its own network namespace (a
/// veth whose outer end is on A's br0, 10.78.0.2 on the LAN) runs the key-value server; the
/// client keeps one connection and asks every 20 ms. `ckcont receive` runs in B, `ckcont
/// migrate` in A.
@Suite(.serialized)
struct MigrationTests {
  final class TwoHosts {
    let id = UInt16.random(in: 0...9999)
    var lan: String { "ckl\(id)" }
    var a: String { "cka\(id)" }
    var b: String { "ckb\(id)" }
    var client: String { "ckc\(id)" }
    static let subnet = "10.78.0"

    init() throws {
      for name in [lan, a, b, client] {
        HostMounts.note(path(name))
        try Self.ip(["netns", "add", name])
        try Self.ip(["-n", name, "link", "set", "lo", "up"])
      }
      try Self.ip(["-n", lan, "link", "add", "lan0", "type", "bridge"])
      try Self.ip(["-n", lan, "link", "set", "lan0", "up"])
      for (host, number) in [(a, 11), (b, 12)] {
        // A bridge's MAC is its lowest port's unless set, as host networking sets it: a
        // port joining would change it under the other host's ARP cache.
        try Self.ip(["-n", host, "link", "add", "br0", "address", "02:00:00:00:00:\(number)", "type", "bridge"])
        try Self.ip(["-n", host, "link", "add", "up0", "type", "veth", "peer", "name", "to-\(host)", "netns", lan])
        try Self.ip(["-n", host, "link", "set", "up0", "master", "br0", "up"])
        try Self.ip(["-n", host, "addr", "add", "\(Self.subnet).\(number)/24", "dev", "br0"])
        try Self.ip(["-n", host, "link", "set", "br0", "up"])
        try Self.ip(["-n", lan, "link", "set", "to-\(host)", "master", "lan0", "up"])
      }
      try Self.ip(["-n", client, "link", "add", "eth0", "type", "veth", "peer", "name", "to-client", "netns", lan])
      try Self.ip(["-n", lan, "link", "set", "to-client", "master", "lan0", "up"])
      try Self.ip(["-n", client, "addr", "add", "\(Self.subnet).100/24", "dev", "eth0"])
      try Self.ip(["-n", client, "link", "set", "eth0", "up"])
    }

    deinit {
      for name in [client, a, b, lan] { _ = run(["/sbin/ip", "netns", "del", name]) }
    }

    func path(_ name: String) -> String { "/run/netns/" + name }

    /// Wires the container's namespace (of process `pid`) into host A: veth `outer` on br0,
    /// eth0 inside at .2 with a default route through host A.
    func wire(_ pid: Int32, outer: String) throws {
      try Self.ip(["-n", a, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", "\(pid)"])
      try Self.ip(["-n", a, "link", "set", outer, "master", "br0", "up"])
      for command in [
        ["link", "set", "lo", "up"], ["addr", "add", "\(Self.subnet).2/24", "dev", "eth0"],
        ["link", "set", "eth0", "up"], ["route", "add", "default", "via", "\(Self.subnet).11"],
      ] {
        let result = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/sbin/ip"] + command)
        guard result.status == 0 else { throw TestFailure("ip \(command.joined(separator: " ")): \(result.output)") }
      }
    }

    static func ip(_ arguments: [String]) throws {
      let result = run(["/sbin/ip"] + arguments)
      guard result.status == 0 else { throw TestFailure("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }
  }

  /// A running container: the server in its namespace on host A, a client asking.
  struct Scene {
    let hosts: TwoHosts
    let container: FixtureContainer
    let outer = "ckv\(UInt16.random(in: 0...9999))"
    let client: BackgroundProcess
    let destination: ScratchCgroup

    /// The fixture's key-value server holding `memory` MiB, or redis (`redis`).
    init(requests: Int = 250, memory: Int = 0, redis: Bool = false) throws {
      hosts = try TwoHosts()
      if redis {
        // Nothing saved to disk: its state is its memory.
        container = try FixtureContainer(
          "/usr/bin/redis-server",
          ["--port", "7000", "--bind", "0.0.0.0", "--protected-mode", "no", "--save", "", "--appendonly", "no"],
          wrapper: ["/usr/bin/unshare", "-n"])
        try hosts.wire(container.launcher.pid, outer: outer)
        try Self.waitForRedis(in: container.launcher.pid)
      } else {
        container = try FixtureContainer(
          "kvserver", ["serve", "7000"] + (memory > 0 ? ["\(memory)"] : []), wrapper: ["/usr/bin/unshare", "-n"])
        try container.waitReady()
        try hosts.wire(container.launcher.pid, outer: outer)
      }
      client = try BackgroundProcess([
        "/usr/bin/nsenter", "--net=\(hosts.path(hosts.client))", try FixturePrograms.path("kvserver"), "client",
        "\(TwoHosts.subnet).2", "7000", "\(requests)",
      ])
      destination = try ScratchCgroup(.v2)
      // Some replies before the move.
      usleep(500_000)
    }

    /// Waits until redis answers in the network namespace of process `pid`.
    static func waitForRedis(in pid: Int32) throws {
      let deadline = Date().addingTimeInterval(15)
      while Date() < deadline {
        let ping = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/usr/bin/redis-cli", "-p", "7000", "ping"])
        if ping.stdout.contains("PONG") { return }
        usleep(50_000)
      }
      throw TestFailure("redis did not answer in 15 s")
    }

    /// `ckcont receive` in host B, listening on a free port: the process and its port.
    func receiver(_ arguments: [String] = [], environment: [String: String]? = nil) throws -> (
      BackgroundProcess, String
    ) {
      let receiver = try BackgroundProcess(
        [
          "/usr/bin/nsenter", "--net=\(hosts.path(hosts.b))", TestPaths.ckcont, "receive", "--listen", "0", "--cgroup",
          destination.path,
        ] + arguments, environment: environment)
      let line = try receiver.waitForLine(startingWith: "listening on ")
      guard let port = line.split(separator: ":").last else { throw TestFailure("no port in \(line)") }
      return (receiver, String(port))
    }

    func migrate(port: String, _ arguments: [String] = []) -> CommandResult {
      run(
        [
          "/usr/bin/nsenter", "--net=\(hosts.path(hosts.a))", TestPaths.ckcont, "migrate", container.cgroup.path,
          "--to",
          "\(TwoHosts.subnet).12:\(port)",
        ] + arguments)
    }

    /// The client's verdict: every reply in order, none lost or repeated, no reset.
    func clientSucceeded() -> (Bool, String) {
      let status = client.waitUntilExit()
      return (status == 0 && client.log.contains("client: "), client.log)
    }

    func destroy() {
      client.stop()
      destination.destroy()
      container.destroy()
    }
  }

  /// Stop and copy; pre-copy (with compression); lazy (post-copy).
  @Test(arguments: ["stop-and-copy", "pre-copy", "lazy"])
  func aContainerMovesToAnotherHostWithItsConnection(mode: String) throws {
    // With pre-copy and lazy: 64 MiB of which it writes 20 MiB a second in random pages,
    // each page with its generation kept apart, which the server checks at the end: a page
    // that came back older than it was (or zero) fails it.
    let scene = try Scene(memory: mode == "stop-and-copy" ? 0 : 64)
    defer { scene.destroy() }
    let (receiver, port) = try scene.receiver()
    // The pre-copy case compresses its final pages too.
    let arguments = ["stop-and-copy": ["--no-pre-copy"], "pre-copy": ["--pre-copy", "--compress", "zstd"]][mode]
    let moved = scene.migrate(port: port, arguments ?? ["--lazy"])
    try #require(moved.status == 0, "migrate: \(moved.output)\nreceiver: \(receiver.log)")
    #expect(moved.stdout.contains("moved"), "\(moved.output)")
    if mode == "pre-copy" {
      #expect(moved.stderr.contains("pre-copy round"), "\(moved.output)")
      #expect(!moved.stdout.contains(" 0 pre-copy rounds"), "\(moved.output)")
    }
    if mode == "lazy" {
      // Most of the 64 MiB went after the container ran there.
      #expect(
        moved.stdout.contains("MiB sent lazily") && !moved.stdout.contains(" 0 MiB sent lazily"), "\(moved.output)")
    }
    #expect(receiver.waitUntilExit() == 0, "\(receiver.log)")
    // The source told it that its copy is gone.
    #expect(!receiver.log.contains("did not confirm"), "\(receiver.log)")
    let pid = try #require(
      receiver.log.split(separator: "\n").compactMap { Int32($0.trimmingCharacters(in: .whitespaces)) }.last,
      "no pid: \(receiver.log)")
    let (succeeded, log) = scene.clientSucceeded()
    #expect(succeeded, "the client: \(log)")
    // The container's veth end is on B's bridge now, and nothing of it is left in A.
    let there = run(["/sbin/ip", "-n", scene.hosts.b, "-o", "link", "show", scene.outer]).stdout
    #expect(there.contains("master br0") && there.contains("state UP"), "in B: \(there)")
    #expect(run(["/sbin/ip", "-n", scene.hosts.a, "link", "show", scene.outer]).status != 0, "the veth is left in A")
    #expect(scene.container.cgroup.allPids().isEmpty, "the source runs on in A")
    // The network lock is gone without a trace (its tables go after the container runs).
    let tables = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/usr/sbin/nft", "list", "tables"]).stdout
    #expect(!tables.contains("ckcont-lock"), "the lock is left there: \(tables)")
    // The server's state is whole: it checks its table at SIGTERM.
    kill(pid, SIGTERM)
    let status = try scene.container.reap(pid, timeout: 20)
    #expect(status == 0, "kvserver exited with \(status); log: \(scene.container.log)")
    #expect(scene.container.log.contains("PASS kvserver"), "\(scene.container.log)")
  }

  /// Redis, a real server with threads of its own, moved with pre-copy while the client
  /// increments a key every 20 ms on one connection: no reply lost, repeated or reset, and
  /// the key holds the client's count there.
  @Test func redisMovesWithItsConnection() throws {
    let scene = try Scene(redis: true)
    defer { scene.destroy() }
    let (receiver, port) = try scene.receiver()
    let moved = scene.migrate(port: port, ["--pre-copy"])
    try #require(moved.status == 0, "migrate: \(moved.output)\nreceiver: \(receiver.log)")
    #expect(receiver.waitUntilExit() == 0, "\(receiver.log)")
    let (succeeded, log) = scene.clientSucceeded()
    #expect(succeeded, "the client: \(log)")
    #expect(scene.container.cgroup.allPids().isEmpty, "the source runs on in A")
    let first = log.split(separator: ",").first { $0.contains("first") }.flatMap {
      Int($0.split(separator: " ").last ?? "")
    }
    let value = run([
      "/usr/bin/nsenter", "--net=\(scene.hosts.path(scene.hosts.client))", "/usr/bin/redis-cli", "-h",
      "\(TwoHosts.subnet).2", "-p", "7000", "GET", "n",
    ])
    #expect(
      value.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == first.map { "\($0 + 249)" },
      "\(value.output); client: \(log)")
  }

  /// Ctrl-C ends a receiver that waits for a container (its accept was restarted after the
  /// signal's handler: it waited on for ever), with a line that says so and nothing left.
  @Test func aWaitingReceiverStopsOnCtrlC() throws {
    let destination = try ScratchCgroup(.v2)
    defer { destination.destroy() }
    let receiver = try BackgroundProcess([
      TestPaths.ckcont, "receive", "--listen", "127.0.0.1:0", "--cgroup", destination.path,
    ])
    defer { receiver.stop() }
    try receiver.waitForLine(startingWith: "listening on ")
    kill(receiver.pid, SIGINT)
    var waited = 0
    while receiver.isRunning && waited < 100 {
      usleep(50_000)
      waited += 1
    }
    try #require(!receiver.isRunning, "the receiver still waits 5 s after SIGINT")
    #expect(receiver.waitUntilExit() != 0)
    #expect(receiver.log.contains("interrupted"), "\(receiver.log)")
    #expect(destination.allPids().isEmpty)
  }

  /// A receiver that refuses (here: a root filesystem that is not there): the source is
  /// thawed and runs on, its client's connection unharmed.
  @Test func aRefusingReceiverLeavesTheSourceRunning() throws {
    let scene = try Scene(requests: 150)
    defer { scene.destroy() }
    let (receiver, port) = try scene.receiver(["--root", "/nonexistent-ckcont-root"])
    let refused = scene.migrate(port: port)
    #expect(refused.status == 1, "\(refused.output)")
    #expect(refused.stderr.contains("runs on here"), "\(refused.stderr)")
    #expect(receiver.waitUntilExit() != 0)
    #expect(!scene.container.cgroup.allPids().isEmpty, "the source is gone")
    #expect(scene.destination.allPids().isEmpty, "the receiver left processes")
    let (succeeded, log) = scene.clientSucceeded()
    #expect(succeeded, "the client: \(log)")
    #expect(run(["/sbin/ip", "-n", scene.hosts.b, "link", "show", scene.outer]).status != 0, "a veth is left in B")
  }

  /// A receiver killed midway through the restore: the source runs on.
  @Test func aReceiverKilledMidwayLeavesTheSourceRunning() throws {
    let scene = try Scene(requests: 150)
    defer { scene.destroy() }
    let runDirectory = NSTemporaryDirectory() + "ckcont-migrate-run-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: runDirectory, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: runDirectory) }
    let (receiver, port) = try scene.receiver(
      environment: ["CKCONT_FAULT_KILL_AT": "restore:tree", "CKCONT_FAULT_RUN_DIR": runDirectory])
    let failed = scene.migrate(port: port)
    #expect(failed.status == 1, "\(failed.output)")
    #expect(failed.stderr.contains("runs on here"), "\(failed.stderr)")
    #expect(receiver.waitUntilExit() != 0)
    #expect(!scene.container.cgroup.allPids().isEmpty, "the source is gone")
    let (succeeded, log) = scene.clientSucceeded()
    #expect(succeeded, "the client: \(log)")
  }
}

/// Lazy migrations (post-copy) over loopback, the push of pages held back (a test build's
/// `CKCONT_FAULT_DELAY_AT=lazy:push`) so that the restored container touches pages that are
/// still at the source.
@Suite(.serialized)
struct LazyMigrationTests {
  /// A container being moved, and the receiver waiting for it.
  struct Move {
    let container: FixtureContainer
    let destination: ScratchCgroup
    let receiver: BackgroundProcess
    let port: String

    init(
      _ fixture: String, _ arguments: [String], userNamespace: Bool = false,
      receiverEnvironment: [String: String]? = nil
    ) throws {
      container = try FixtureContainer(fixture, arguments, userNamespace: userNamespace)
      try container.waitReady()
      destination = try ScratchCgroup(.v2)
      receiver = try BackgroundProcess(
        [TestPaths.ckcont, "receive", "--listen", "127.0.0.1:0", "--cgroup", destination.path, "-v"],
        environment: receiverEnvironment)
      let line = try receiver.waitForLine(startingWith: "listening on ")
      port = String(line.split(separator: ":").last ?? "")
    }

    /// `ckcont migrate --lazy`, its push held back for `delay` ms.
    func migrate(delay: Int, _ mode: String = "--lazy") throws -> BackgroundProcess {
      try BackgroundProcess(
        [TestPaths.ckcont, "migrate", container.cgroup.path, "--to", "127.0.0.1:\(port)", mode],
        environment: ["CKCONT_FAULT_DELAY_AT": "lazy:push", "CKCONT_FAULT_DELAY_MS": "\(delay)"])
    }

    /// The restored root, once the destination runs it.
    func restoredPid(timeout: Double = 10) throws -> Int32 {
      let deadline = Date().addingTimeInterval(timeout)
      while Date() < deadline {
        if let pid = destination.allPids().first, destination.read("cgroup.events").contains("frozen 0") { return pid }
        usleep(2000)
      }
      throw TestFailure("nothing runs in \(destination.path); receiver: \(receiver.log)")
    }

    func destroy() {
      receiver.stop()
      destination.destroy()
      container.destroy()
    }
  }

  /// The program runs on at once while its 64 MiB are still at the source: a child it forks
  /// sees the memory as it was, a quarter moved by mremap comes along, a quarter dropped
  /// reads as zeros, a quarter written keeps what was under the writes.
  @Test func aProgramThatForksMovesAndDropsMemoryBeforeItCameRunsOn() throws {
    let move = try Move("bigmem", ["64", "ops"])
    defer { move.destroy() }
    let migrate = try move.migrate(delay: 3000)
    let pid = try move.restoredPid()
    kill(pid, SIGTERM)
    #expect(migrate.waitUntilExit() == 0, "\(migrate.log)")
    #expect(migrate.log.contains("MiB sent lazily"), "\(migrate.log)")
    #expect(move.receiver.waitUntilExit() == 0, "\(move.receiver.log)")
    // Its parent gone, the restored root is this runner's (the subreaper's) to reap.
    #expect(try move.container.reap(pid, timeout: 30) == 0, "\(move.container.log)")
    #expect(move.container.log.contains("PASS bigmem"), "\(move.container.log)")
    // It asked for pages ahead of the push (the faults), and the dropped quarter became zero pages.
    let summary = move.receiver.log.split(separator: "\n").first { $0.contains("lazy pages: all") } ?? ""
    #expect(!summary.contains(" 0 asked for") && !summary.contains(" 0 zero pages"), "\(move.receiver.log)")
    #expect(move.container.cgroup.allPids().isEmpty, "the source runs on")
  }

  /// After pre-copy the pages sent ahead go in once the container resumed (here held back
  /// 1.5 s): the program works on them at once (forks, mremap, madvise, writes) and the
  /// child, which misses what its parent had not had put in, gets it too.
  @Test func aProgramThatWorksOnMemorySentAheadBeforeItIsInRunsOn() throws {
    let move = try Move(
      "bigmem", ["64", "ops"],
      receiverEnvironment: ["CKCONT_FAULT_DELAY_AT": "lazy:fill", "CKCONT_FAULT_DELAY_MS": "1500"])
    defer { move.destroy() }
    let migrate = try move.migrate(delay: 0, "--pre-copy")
    let pid = try move.restoredPid()
    kill(pid, SIGTERM)
    #expect(migrate.waitUntilExit() == 0, "\(migrate.log)")
    #expect(migrate.log.contains("pre-copy rounds"), "\(migrate.log)")
    #expect(move.receiver.waitUntilExit() == 0, "\(move.receiver.log)")
    #expect(try move.container.reap(pid, timeout: 30) == 0, "\(move.container.log)")
    #expect(move.container.log.contains("PASS bigmem"), "\(move.container.log)")
    #expect(move.receiver.log.contains("lazy pages: all"), "the pages sent ahead went in before: \(move.receiver.log)")
  }

  /// A container in a user namespace of its own cannot have a userfaultfd that catches the
  /// kernel's faults: its memory goes whole (with pre-copy, merged before it runs), and
  /// it moves all the same (it was refused at the receiver, the source running on).
  @Test(arguments: ["--lazy", "--pre-copy"])
  func aContainerInAUserNamespaceMovesWithItsMemoryWhole(mode: String) throws {
    let move = try Move("bigmem", ["64"], userNamespace: true)
    defer { move.destroy() }
    let migrate = try move.migrate(delay: 0, mode)
    #expect(migrate.waitUntilExit() == 0, "\(migrate.log)")
    #expect(migrate.log.contains(mode == "--lazy" ? " 0 MiB sent lazily" : "pre-copy rounds"), "\(migrate.log)")
    #expect(move.receiver.waitUntilExit() == 0, "\(move.receiver.log)")
    let pid = try move.restoredPid()
    kill(pid, SIGTERM)
    #expect(try move.container.reap(pid, timeout: 30) == 0, "\(move.container.log)")
    #expect(move.container.log.contains("PASS bigmem"), "\(move.container.log)")
  }

  /// The receiver dies once the container runs there, before its memory has come: the copy
  /// there is killed (its guard), the source stays frozen as it was and says so, and runs on
  /// once thawed.
  @Test func aReceiverKilledBeforeTheMemoryCameLeavesTheSourceFrozen() throws {
    let move = try Move("bigmem", ["64"], receiverEnvironment: ["CKCONT_FAULT_KILL_AT": "receive:running"])
    defer { move.destroy() }
    let migrate = try move.migrate(delay: 3000)
    #expect(migrate.waitUntilExit() == 1, "\(migrate.log)")
    #expect(migrate.log.contains("it is lost there; here it stays frozen"), "\(migrate.log)")
    #expect(move.receiver.waitUntilExit() != 0)
    #expect(move.destination.allPids().isEmpty, "the copy without its memory runs on there")
    let pids = move.container.cgroup.allPids()
    #expect(!pids.isEmpty && move.container.cgroup.read("cgroup.events").contains("frozen 1"))
    let thawed = run([TestPaths.ckcont, "thaw", move.container.cgroup.path])
    try #require(thawed.status == 0, "\(thawed.output)")
    kill(pids[0], SIGTERM)
    #expect(move.container.launcher.waitUntilExit() == 0, "\(move.container.log)")
    #expect(move.container.log.contains("PASS bigmem"), "\(move.container.log)")
  }
}
