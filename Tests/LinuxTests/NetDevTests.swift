import Glibc
import Linux
import Testing

/// /proc/<pid>/net/dev names every device of the namespace, after two header lines.
struct NetDevTests {
  @Test func namesFollowTheHeaders() {
    let text = """
      Inter-|   Receive                                                |  Transmit
       face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
          lo:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
      cktun0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0
      veth-a.7: 12 1 0 0 0 0 0 0 0 0 0 0 0 0 0 0

      """
    #expect(ProcNetDev.parse(text) == ["lo", "cktun0", "veth-a.7"])
  }

  @Test func thisProcessHasLoopback() throws {
    #expect(try ProcNetDev.names(pid: getpid()).contains("lo"))
  }

  @Test func localAddressesFromFibTrieAndInet6() {
    let trie = """
      Main:
        +-- 0.0.0.0/0 3 0 4
           +-- 10.9.9.0/24 2 0 2
              |-- 10.9.9.0
                 /24 host LOCAL
              |-- 10.9.9.9
                 /32 host LOCAL
           +-- 127.0.0.0/8 2 0 2
              |-- 127.0.0.1
                 /32 host LOCAL
      Local:
              |-- 10.9.9.9
                 /32 host LOCAL
      """
    #expect(ProcNetAddresses.parseFibTrie(trie) == ["10.9.9.9", "127.0.0.1"])
    let inet6 = """
      fd000000000000000000000000000009 01 40 00 80       lo
      00000000000000000000000000000001 01 80 10 80       lo

      """
    #expect(ProcNetAddresses.parseInet6(inet6) == ["fd00::9", "::1"])
  }
}
