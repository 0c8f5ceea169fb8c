import CSnapshotShim
import Foundation
import Glibc
import TestSupport
import Testing

/// A container in a network namespace of its own with a veth pair, as a script or CNI's
/// bridge plugin wires one: eth0 inside with an address and a default route, the outer end
/// on a bridge in a "LAN" namespace of its own (made here with `ip netns add`), where ckcont
/// runs (`nsenter --net`). The dump keeps the pair, addresses and routes; the restore makes
/// the pair again with the outer end on the bridge of the same name, and announces the
/// container's addresses there once it runs.
@Suite(.serialized)
struct NetworkDevicesTests {
  /// A "LAN" namespace with bridge br0 at 10.77.0.1/24, removed afterwards.
  final class LAN {
    let name = "ckcont-lan-\(UInt32.random(in: 0...UInt32.max))"
    var path: String { "/run/netns/" + name }
    init() throws {
      HostMounts.note(path)
      try Self.ip(["netns", "add", name])
      for command in [
        ["link", "set", "lo", "up"], ["link", "add", "br0", "type", "bridge"],
        ["addr", "add", "10.77.0.1/24", "dev", "br0"], ["link", "set", "br0", "up"],
      ] { try Self.ip(["-n", name] + command) }
    }
    deinit { _ = run(["/sbin/ip", "netns", "del", name]) }

    static func ip(_ arguments: [String]) throws {
      let result = run(["/sbin/ip"] + arguments)
      guard result.status == 0 else { throw TestFailure("ip \(arguments.joined(separator: " ")): \(result.output)") }
    }
  }

  /// A counter container in a network namespace of its own, wired to a LAN of its own
  /// (``wire(_:to:outer:)``): where every test here starts. The caller destroys
  /// `container`; a failure on the way destroys it here.
  struct WiredContainer {
    let lan: LAN
    let outer = "ckv\(UInt16.random(in: 0...9999))"
    let container: FixtureContainer
    var pid: Int32 { container.launcher.pid }

    /// `ckcontInLAN`: ckcont runs in the LAN's namespace, where the outer end is.
    init(ckcontInLAN: Bool = true) throws {
      lan = try LAN()
      container = try FixtureContainer("counter", wrapper: ["/usr/bin/unshare", "-n"])
      if ckcontInLAN { container.ckcontPrefix = ["/usr/bin/nsenter", "--net=\(lan.path)"] }
      do {
        try container.waitReady()
        try NetworkDevicesTests.wire(container.launcher.pid, to: lan, outer: outer)
      } catch {
        container.destroy()
        throw error
      }
    }
  }

  /// Wires the container's namespace (that of process `pid`) to `lan`: veth `outer` on br0,
  /// eth0 inside at 10.77.0.2/24 with a default route through the bridge.
  static func wire(_ pid: Int32, to lan: LAN, outer: String) throws {
    try LAN.ip(["-n", lan.name, "link", "add", outer, "type", "veth", "peer", "name", "eth0", "netns", "\(pid)"])
    try LAN.ip(["-n", lan.name, "link", "set", outer, "master", "br0", "up"])
    for command in [
      ["link", "set", "lo", "up"], ["addr", "add", "10.77.0.2/24", "dev", "eth0"], ["link", "set", "eth0", "up"],
      ["route", "add", "default", "via", "10.77.0.1"],
      ["route", "add", "10.88.0.0/16", "via", "10.77.0.1", "metric", "7"],
    ] {
      let result = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/sbin/ip"] + command)
      guard result.status == 0 else { throw TestFailure("ip \(command.joined(separator: " ")): \(result.output)") }
    }
  }

  @Test func aVethPairToABridgeComesBack() throws {
    let wired = try WiredContainer()
    let (lan, outer, container) = (wired.lan, wired.outer, wired.container)
    defer { container.destroy() }
    // nodad: usable at once, as the restore makes IPv6 addresses (a tentative one would show
    // its local route only once duplicate detection ends).
    let added = run([
      "/usr/bin/nsenter", "-t", "\(container.launcher.pid)", "-n", "/sbin/ip", "addr", "add", "fd77::2/64", "dev",
      "eth0", "nodad",
    ])
    try #require(added.status == 0, "\(added.output)")
    // Watching the bridge: the restored container announces its addresses there.
    let watch = ckt_packet_socket(lan.path, "br0")
    try #require(watch >= 0, "packet socket: \(watch)")
    defer { close(watch) }
    // The snapshot compares links, addresses and routes inside.
    let differences = try container.unexplainedDifferences("counter")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let link = run(["/sbin/ip", "-n", lan.name, "-o", "link", "show", outer]).stdout
    #expect(link.contains("master br0") && link.contains("state UP"), "\(outer): \(link)")
    // Packets cross the bridge to the restored container (ping, answered by its kernel).
    let ping = run(["/usr/bin/nsenter", "--net=\(lan.path)", "/bin/busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2"])
    #expect(ping.status == 0, "\(ping.output)")
    let ipv4: [UInt8] = [10, 77, 0, 2]
    let ipv6: [UInt8] = [0xfd, 0x77] + [UInt8](repeating: 0, count: 13) + [2]
    #expect(ckt_saw_announcement(watch, AF_INET, ipv4, 2000) == 1, "no gratuitous ARP for 10.77.0.2")
    #expect(ckt_saw_announcement(watch, AF_INET6, ipv6, 2000) == 1, "no neighbour advertisement for fd77::2")
    let status = try container.terminateRestored()
    #expect(status == 0, "counter exited with \(status); log: \(container.log)")
  }

  /// Macvlans (one on a link of the host, as docker's macvlan network makes them, one on the
  /// container's own eth0), policy rules (a source rule, a WireGuard-style fwmark rule with
  /// suppress_prefixlength, a default rule deleted) and a permanent neighbour entry.
  @Test func macvlansRulesAndNeighboursComeBack() throws {
    let wired = try WiredContainer()
    let (lan, container, pid) = (wired.lan, wired.container, wired.pid)
    defer { container.destroy() }
    // The host's link under the macvlan: a veth whose other end is on the bridge.
    try LAN.ip(["-n", lan.name, "link", "add", "low0", "type", "veth", "peer", "name", "low1"])
    try LAN.ip(["-n", lan.name, "link", "set", "low1", "master", "br0", "up"])
    try LAN.ip(["-n", lan.name, "link", "set", "low0", "up"])
    try LAN.ip(["-n", lan.name, "addr", "add", "10.77.1.1/24", "dev", "br0"])
    try LAN.ip(["-n", lan.name, "link", "add", "mv0", "link", "low0", "type", "macvlan", "mode", "bridge"])
    try LAN.ip(["-n", lan.name, "link", "set", "mv0", "netns", "\(pid)"])
    for command in [
      ["addr", "add", "10.77.1.2/24", "dev", "mv0"], ["link", "set", "mv0", "up"],
      ["link", "add", "mvi0", "link", "eth0", "type", "macvlan", "mode", "private"],
      ["rule", "add", "from", "10.77.0.0/24", "table", "100", "priority", "100"],
      ["route", "add", "default", "via", "10.77.0.1", "table", "100"],
      ["rule", "add", "fwmark", "0x7", "lookup", "200", "suppress_prefixlength", "0", "priority", "200"],
      ["rule", "del", "priority", "32767"],
      ["neigh", "add", "10.77.0.9", "lladdr", "02:00:00:00:00:09", "dev", "eth0", "nud", "permanent"],
    ] {
      let result = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/sbin/ip"] + command)
      try #require(result.status == 0, "ip \(command.joined(separator: " ")): \(result.output)")
    }
    // The snapshot compares links, addresses, routes, rules and neighbours inside.
    let differences = try container.unexplainedDifferences("counter")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let ping = run(["/usr/bin/nsenter", "--net=\(lan.path)", "/bin/busybox", "ping", "-c", "1", "-W", "2", "10.77.1.2"])
    #expect(ping.status == 0, "the macvlan does not answer: \(ping.output)")
    let status = try container.terminateRestored()
    #expect(status == 0, "counter exited with \(status); log: \(container.log)")
  }

  /// Bridges inside the container (as a node that bridges its own workloads makes them): its
  /// eth0 enslaved to br0, which carries its address, with settings of its own (no STP, an
  /// ageing time, no multicast snooping, a group forward mask); a veth pair inside with one
  /// end on br0 (hairpin, a cost), a tap on br0 that does not learn or flood, a macvlan on
  /// br0, a static and a permanent forwarding entry, and br1 without ports, with STP, its
  /// own MAC and MTU; the other end of the pair told to make no link-local address once it
  /// had one. The snapshot compares every link's details (`ip -d link`) and the
  /// forwarding entries; packets cross br0 to the restored container.
  @Test func bridgesInsideComeBack() throws {
    let wired = try WiredContainer()
    let (lan, container, pid) = (wired.lan, wired.container, wired.pid)
    defer { container.destroy() }
    for command in [
      ["ip", "addr", "del", "10.77.0.2/24", "dev", "eth0"],
      [
        "ip", "link", "add", "br0", "type", "bridge", "stp_state", "0", "ageing_time", "12345", "mcast_snooping", "0",
        "group_fwd_mask", "8",
      ],
      ["ip", "link", "set", "eth0", "master", "br0"], ["ip", "addr", "add", "10.77.0.2/24", "dev", "br0"],
      ["ip", "link", "set", "br0", "up"], ["ip", "route", "add", "default", "via", "10.77.0.1"],
      ["ip", "link", "add", "c0", "type", "veth", "peer", "name", "c1"], ["ip", "link", "set", "c0", "master", "br0"],
      ["bridge", "link", "set", "dev", "c0", "hairpin", "on", "cost", "7"],
      ["ip", "link", "set", "c0", "up"], ["ip", "link", "set", "c1", "up"],
      // Its link-local address stays; the kernel makes none when it next comes up.
      ["ip", "link", "set", "c1", "addrgenmode", "none"],
      ["ip", "tuntap", "add", "dev", "tap0", "mode", "tap"], ["ip", "link", "set", "tap0", "master", "br0"],
      ["bridge", "link", "set", "dev", "tap0", "learning", "off", "flood", "off"],
      ["ip", "link", "add", "mv0", "link", "br0", "type", "macvlan", "mode", "bridge"],
      ["bridge", "fdb", "add", "02:00:00:00:00:99", "dev", "c0", "master", "static"],
      ["bridge", "fdb", "add", "02:00:00:00:00:98", "dev", "c0", "master", "permanent"],
      ["ip", "link", "add", "br1", "type", "bridge", "stp_state", "1", "priority", "4096"],
      ["ip", "link", "set", "br1", "address", "02:11:22:33:44:55", "mtu", "1400"],
    ] {
      let result = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/sbin/" + command[0]] + command.dropFirst())
      try #require(result.status == 0, "\(command.joined(separator: " ")): \(result.output)")
    }
    let differences = try container.unexplainedDifferences("counter")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let ping = run(["/usr/bin/nsenter", "--net=\(lan.path)", "/bin/busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2"])
    #expect(ping.status == 0, "br0 does not answer: \(ping.output)")
    let status = try container.terminateRestored()
    #expect(status == 0, "counter exited with \(status); log: \(container.log)")
  }

  /// `--veth NAME=NEWNAME` and `--bridge NAME`: the outer end comes back under another name,
  /// on another bridge (a second one in the LAN, which takes over the addresses).
  @Test func theOuterEndCanBeRenamedAndMoved() throws {
    let wired = try WiredContainer()
    let (lan, outer, container) = (wired.lan, wired.outer, wired.container)
    defer { container.destroy() }
    let renamed = outer + "n"
    try container.dumpAndWaitGone()
    try LAN.ip(["-n", lan.name, "link", "add", "br1", "type", "bridge"])
    try LAN.ip(["-n", lan.name, "addr", "flush", "dev", "br0"])
    try LAN.ip(["-n", lan.name, "addr", "add", "10.77.0.1/24", "dev", "br1"])
    try LAN.ip(["-n", lan.name, "link", "set", "br1", "up"])
    // Asked of a bridge or a veth that are not there: refused before anything is made.
    let missing = try container.restore(["--bridge", "br7"])
    #expect(
      missing.status == 2 && missing.stderr.contains("--bridge br7: no link of that name here"), "\(missing.output)")
    let unknown = try container.restore(["--veth", "nosuch=x"])
    #expect(unknown.status == 2 && unknown.stderr.contains("no veth whose outer end was nosuch"), "\(unknown.output)")
    #expect(container.cgroup.allPids().isEmpty)
    let restored = try container.restore(["--veth", "\(outer)=\(renamed)", "--bridge", "br1"])
    try #require(restored.status == 0, "\(restored.output)")
    let link = run(["/sbin/ip", "-n", lan.name, "-o", "link", "show", renamed]).stdout
    #expect(link.contains("master br1"), "\(renamed): \(link)")
    let ping = run(["/usr/bin/nsenter", "--net=\(lan.path)", "/bin/busybox", "ping", "-c", "1", "-W", "2", "10.77.0.2"])
    #expect(ping.status == 0, "\(ping.output)")
    let status = try container.terminateRestored()
    #expect(status == 0, "counter exited with \(status); log: \(container.log)")
  }

  /// While a dump holds the container, its network is locked: a peer's packets are dropped
  /// (no answer, no reset) from the freeze on; once the container runs on, the lock is gone
  /// without a trace and packets pass again.
  @Test func theNetworkIsLockedWhileTheDumpHoldsTheContainer() throws {
    // Its dump is run by hand below, slowed, in the background.
    let wired = try WiredContainer(ckcontInLAN: false)
    let (lan, container, pid) = (wired.lan, wired.container, wired.pid)
    defer { container.destroy() }
    let ping = ["/usr/bin/nsenter", "--net=\(lan.path)", "/bin/busybox", "ping", "-c", "1", "-W", "1", "10.77.0.2"]
    let before = run(ping)
    try #require(before.status == 0, "\(before.output)")
    // Slowed down (the fault-injection knob), so that the test sees the dump at work.
    let dump = try BackgroundProcess(
      [
        "/usr/bin/nsenter", "--net=\(lan.path)", TestPaths.ckcont, "dump", container.cgroup.path, "-o",
        container.bundlePath, "--leave-running",
      ],
      environment: ["CKCONT_FAULT_CAPTURE_DELAY_MS": "2500"])
    var locked = false
    for _ in 0..<40 where !locked {
      usleep(50_000)
      locked = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/usr/sbin/nft", "list", "tables"]).stdout
        .contains("ckcont-lock")
    }
    #expect(locked, "no lock table while the dump ran")
    let during = run(ping)
    #expect(during.status != 0, "a ping was answered while the dump held the container: \(during.output)")
    #expect(dump.waitUntilExit() == 0, "\(dump.log)")
    let tables = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n", "/usr/sbin/nft", "list", "tables"]).stdout
    #expect(!tables.contains("ckcont-lock"), "the lock is left: \(tables)")
    let after = run(ping)
    #expect(after.status == 0, "\(after.output)")
  }

  /// A device ckcont does not make (a VXLAN inside) is refused at dump, and the container
  /// runs on.
  @Test func aDeviceCkcontDoesNotMakeIsRefused() throws {
    let container = try FixtureContainer("counter", wrapper: ["/usr/bin/unshare", "-n"])
    defer { container.destroy() }
    try container.waitReady()
    let add = run([
      "/usr/bin/nsenter", "-t", "\(container.launcher.pid)", "-n", "/sbin/ip", "link", "add", "vx9", "type", "vxlan",
      "id", "9", "dstport", "4789",
    ])
    try #require(add.status == 0, "\(add.output)")
    let refused = container.dump()
    #expect(refused.status == 1)
    #expect(
      refused.stderr.contains("network device vx9 of kind vxlan, which ckcont cannot checkpoint yet"),
      "\(refused.stderr)")
    #expect(!container.cgroup.allPids().isEmpty)
  }
}
