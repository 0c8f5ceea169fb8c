import Foundation
import Glibc
import TestSupport
import Testing

/// A container in a network namespace its runtime made (as podman's netavark or CNI make
/// one: devices and addresses of its own), which ckcont does not save (`dump --external-net`)
/// and the restore joins again (`restore --join-net PATH`). The namespace here is made with
/// `ip netns add`, given a veth pair with an address, and the fixture started in it with
/// `nsenter --net` (as a runtime joins a namespace path).
@Suite(.serialized)
struct ExternalNetworkTests {
  /// A named network namespace with loopback up and a veth pair, ck0 at 10.199.0.1/24 and
  /// ck1 (this kernel has no dummy devices), removed after.
  final class NamedNetwork {
    let name = "ckcont-test-\(UInt32.random(in: 0...UInt32.max))"
    var path: String { "/run/netns/" + name }
    init() throws {
      HostMounts.note(path)
      for command in [
        ["netns", "add", name], ["-n", name, "link", "set", "lo", "up"],
        ["-n", name, "link", "add", "ck0", "type", "veth", "peer", "name", "ck1"],
        ["-n", name, "addr", "add", "10.199.0.1/24", "dev", "ck0"], ["-n", name, "link", "set", "ck0", "up"],
        ["-n", name, "link", "set", "ck1", "up"],
      ] {
        let result = run(["/sbin/ip"] + command)
        guard result.status == 0 else { throw TestFailure("ip \(command.joined(separator: " ")): \(result.output)") }
      }
    }
    deinit { _ = run(["/sbin/ip", "netns", "del", name]) }
  }

  @Test func aNetworkNamespaceOfItsRuntimeIsJoinedAgain() throws {
    let network = try NamedNetwork()
    let container = try FixtureContainer(
      "sockets", ["tcp-connection"], wrapper: ["/usr/bin/nsenter", "--net=\(network.path)"])
    defer { container.destroy() }
    try container.waitReady()
    let dumped = container.dump(["--external-net"])
    try #require(dumped.status == 0, "\(dumped.output)")
    try container.waitEmpty()
    // The bundle says where the namespace must come from; a restore not given one refuses.
    let notJoined = try container.restore()
    #expect(notJoined.status == 2)
    #expect(notJoined.stderr.contains("restore it with --join-net PATH"), "\(notJoined.stderr)")
    #expect(container.cgroup.allPids().isEmpty)

    let restored = try container.restore(["--join-net", network.path])
    try #require(restored.status == 0, "\(restored.output)")
    var joined = stat()
    var its = stat()
    try #require(stat(network.path, &joined) == 0 && stat("/proc/\(container.restoredPid)/ns/net", &its) == 0)
    #expect(joined.st_ino == its.st_ino, "the restored container is not in \(network.path)")
    let status = try container.terminateRestored()
    #expect(status == 0, "sockets exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS sockets"), "log: \(container.log)")
  }

  /// `--join-net` for a bundle whose namespace was not its runtime's is refused.
  @Test func joiningANetworkTheBundleDidNotAskForIsRefused() throws {
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.dumpAndWaitGone()
    let refused = try container.restore(["--join-net", "/proc/self/ns/net"])
    #expect(refused.status == 2)
    #expect(refused.stderr.contains("was not its runtime's"), "\(refused.stderr)")
    #expect(container.cgroup.allPids().isEmpty)
  }
}
