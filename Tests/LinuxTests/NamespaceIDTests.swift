import Foundation
import Linux
import Testing

@Suite struct NamespaceIDTests {
  @Test func parsesLinkText() throws {
    let id = try NamespaceID.parse("pid:[4026531836]")
    #expect(id == NamespaceID(kind: .pid, inode: 4_026_531_836))
    #expect(id.description == "pid:[4026531836]")
    #expect(try NamespaceID.parse("cgroup:[4026531835]").kind == .cgroup)
  }

  @Test(arguments: ["pid", "pid:4026531836", "pid:[]", "pid:[12x]", "bogus:[1]", "pid:[4026531836"])
  func malformed(link: String) {
    #expect(
      ckError { try NamespaceID.parse(link) }?.message.hasPrefix("ns link line 1 is malformed")
        == true)
  }

  @Test func readsThisProcess() throws {
    let all = try NamespaceID.readAll(pid: getpid())
    #expect(all["pid"]?.kind == .pid)
    #expect(all["pid_for_children"]?.kind == .pid)
    #expect(all["mnt"]?.kind == .mnt)
    #expect(all["net"] == (try NamespaceID.read(pid: getpid(), name: "net")))
    // Our namespaces are those of /proc/self.
    var info = stat()
    #expect(stat("/proc/self/ns/uts", &info) == 0)
    #expect(all["uts"]?.inode == UInt64(info.st_ino))
    #expect(throws: SyscallError.self) { try NamespaceID.read(pid: getpid(), name: "nope") }
  }
}
