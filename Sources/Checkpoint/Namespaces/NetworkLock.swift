import Glibc
import Linux
import Logging
import Netlink

/// Drops every packet of the container's own network namespace, but loopback's, from the
/// freeze of a dump until the container is killed or runs on, and in the new namespace of
/// a restore until it runs (issue 18's network lock, what CRIU's --network-lock does): a
/// frozen kernel stack still answers, so a peer's bytes would be acknowledged into queues
/// the dump has already read, and a restored namespace whose sockets are not all made yet
/// would answer with resets. Peers see silence instead and retransmit: their connections
/// come back as if delayed. An nftables table of its own (inet for IP, arp for ARP) at a
/// priority before conntrack; deleting it undoes it exactly. It holds the namespace (its
/// descriptor) only while locked. Deleting the tables waits out an RCU grace period (15-30
/// ms here, each commit that unregisters hooks): ``open()`` first lets traffic through
/// with an accept rule ahead of each chain's policy (a commit of ~2 ms), and ``remove()``
/// can follow off the critical path.
final class NetworkLock {
  /// The table's name, which a dump of the namespace's rules leaves out.
  static let table = "ckcont-lock"
  private static let rules = """
    table inet \(table) {
      chain input { type filter hook input priority -500; policy drop; iif "lo" accept; }
      chain output { type filter hook output priority -500; policy drop; oif "lo" accept; }
      chain forward { type filter hook forward priority -500; policy drop; }
    }
    table arp \(table) {
      chain input { type filter hook input priority -500; policy drop; }
      chain output { type filter hook output priority -500; policy drop; }
    }
    """

  private var namespace: OwnedDescriptor?
  private let log: Logger

  /// Locks the network namespace of process `pid`.
  init(namespaceOf pid: Int32, log: Logger) throws {
    let namespace = try OwnedDescriptor(opening: "/proc/\(pid)/ns/net", flags: O_RDONLY | O_CLOEXEC)
    _ = try NamespaceThread.run(inNamespace: namespace.raw, kind: "net", named: "\(pid)") {
      try Nftables().run(Self.rules)
    }
    self.namespace = consume namespace
    self.log = log
    log.debug("network of \(pid) locked")
  }

  private static let openRules = """
    insert rule inet \(table) input accept
    insert rule inet \(table) output accept
    insert rule inet \(table) forward accept
    insert rule arp \(table) input accept
    insert rule arp \(table) output accept
    """
  private var opened = false

  /// Unlocks the namespace (a failure is logged: it is the container's, which runs on
  /// either way) and lets it go.
  func unlock() {
    open()
    remove()
  }

  /// Lets every packet through at once; the tables stay until ``remove()``.
  func open() {
    guard let raw = namespace?.raw, !opened else { return }
    opened = true
    do {
      _ = try NamespaceThread.run(inNamespace: raw, kind: "net", named: "the locked one") {
        try Nftables().run(Self.openRules)
      }
      log.debug("network unlocked")
    } catch {
      log.error("cannot unlock the container's network: \(error)")
    }
  }

  /// Deletes the lock's tables (the namespace is as it was before) and lets it go.
  func remove() {
    guard let namespace = namespace.take() else { return }
    do {
      _ = try NamespaceThread.run(inNamespace: namespace.raw, kind: "net", named: "the locked one") {
        try Nftables().run("delete table inet \(Self.table)\ndelete table arp \(Self.table)")
      }
    } catch {
      log.error("cannot remove the network lock's tables (\(Self.table)) from the container: \(error)")
    }
  }

  /// Lets the namespace go locked: the container is killed, its namespace ends with it.
  func release() {
    namespace = nil
  }

  /// Whether process `pid` has a network namespace of its own (not ckcont's).
  static func hasOwnNamespace(_ pid: Int32) -> Bool {
    var own = stat()
    var theirs = stat()
    return stat("/proc/self/ns/net", &own) == 0 && stat("/proc/\(pid)/ns/net", &theirs) == 0
      && own.st_ino != theirs.st_ino
  }
}
