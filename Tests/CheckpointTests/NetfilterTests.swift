import Foundation
import Glibc
import TestSupport
import Testing

/// The packet filter of a container's own network namespace, made the ways real programs
/// make it: nft (a table with a named counter, a set whose elements time out, rules naming
/// links), iptables-nft (conntrack, multiport, a comment and a `recent` match nft cannot
/// print back), ebtables-nft (an ARP match, likewise), and legacy ip6tables (x_tables, not
/// nftables). The snapshot compares every view (nft and each `*-save`); the counters the
/// rules had are kept too.
@Suite(.serialized)
struct NetfilterTests {
  static let ruleset = """
    table inet ckf {
      counter hits { packets 0 bytes 0 }
      set blocked { type ipv4_addr; flags timeout; elements = { 10.1.1.1 timeout 1h, 10.2.2.2 } }
      chain input {
        type filter hook input priority 0; policy accept;
        ip saddr @blocked drop
        iifname "lo" counter name "hits"
        tcp dport 22 counter accept
      }
    }
    """

  func inside(_ pid: Int32, _ arguments: [String]) throws -> String {
    let result = run(["/usr/bin/nsenter", "-t", "\(pid)", "-n"] + arguments)
    guard result.status == 0 else { throw TestFailure("\(arguments.joined(separator: " ")): \(result.output)") }
    return result.stdout
  }

  @Test func rulesOfEveryFlavourComeBackWithTheirCounters() throws {
    let container = try FixtureContainer("counter", wrapper: ["/usr/bin/unshare", "-n"])
    defer { container.destroy() }
    try container.waitReady()
    let pid = container.launcher.pid
    _ = try inside(pid, ["/sbin/ip", "link", "set", "lo", "up"])
    let file = FileManager.default.temporaryDirectory.appendingPathComponent("ckcont-rules-\(pid).nft").path
    try Self.ruleset.write(toFile: file, atomically: true, encoding: .utf8)
    defer { unlink(file) }
    _ = try inside(pid, ["/usr/sbin/nft", "-f", file])
    for rule in [
      ["/usr/sbin/iptables-nft", "-A", "INPUT", "-m", "conntrack", "--ctstate", "ESTABLISHED", "-j", "ACCEPT"],
      [
        "/usr/sbin/iptables-nft", "-A", "INPUT", "-p", "tcp", "-m", "multiport", "--dports", "80,443", "-m", "comment",
        "--comment", "web", "-j", "ACCEPT",
      ],
      ["/usr/sbin/iptables-nft", "-A", "INPUT", "-m", "recent", "--name", "seen", "--set"],
      ["/usr/sbin/ebtables-nft", "-A", "FORWARD", "-p", "ARP", "--arp-op", "Request", "-j", "ACCEPT"],
      [
        "/usr/sbin/ip6tables-legacy", "-A", "OUTPUT", "-o", "lo", "-m", "comment", "--comment", "legacy", "-j",
        "ACCEPT",
      ],
    ] { _ = try inside(pid, rule) }
    // Traffic through the rules: the counters are not zero.
    _ = try inside(pid, ["/bin/busybox", "ping", "-c", "2", "-W", "1", "127.0.0.1"])
    let counters = try self.counters(pid)
    #expect(counters.hits.contains("packets 4"), "\(counters.hits)")

    let differences = try container.unexplainedDifferences("counter")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let restored = try self.counters(container.restoredPid)
    #expect(restored.hits == counters.hits)
    #expect(restored.iptables == counters.iptables)
    #expect(restored.legacy == counters.legacy)
    let status = try container.terminateRestored()
    #expect(status == 0, "counter exited with \(status); log: \(container.log)")
  }

  /// The named counter, and iptables' counters of each rule (both flavours), as printed.
  func counters(_ pid: Int32) throws -> (hits: String, iptables: [String], legacy: [String]) {
    let hits = try inside(pid, ["/usr/sbin/nft", "list", "counter", "inet", "ckf", "hits"])
      .split(separator: "\n").filter { $0.contains("packets") }.joined()
    func rules(_ tool: String) throws -> [String] {
      try inside(pid, [tool, "-c"]).split(separator: "\n").filter { $0.hasPrefix("[") }.map(String.init)
    }
    return (hits, try rules("/usr/sbin/iptables-nft-save"), try rules("/usr/sbin/ip6tables-legacy-save"))
  }
}
