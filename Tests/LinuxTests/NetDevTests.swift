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
}
