import Foundation
import Linux
import Testing

@Suite struct LimitsTests {
  @Test func capturedLimits() throws {
    let limits = try ProcLimits.parse(ProcFixture.text("multi-thread.limits"))
    #expect(limits.map(\.resource) == ResourceLimitKind.allCases)
    #expect(limits.map(\.resource.rawValue) == Array(0...15))
    func limit(_ kind: ResourceLimitKind) -> ResourceLimit? { limits.first { $0.resource == kind } }
    #expect(limit(.openFiles) == ResourceLimit(resource: .openFiles, soft: 1000, hard: 2000))
    #expect(
      limit(.stack) == ResourceLimit(resource: .stack, soft: 8 << 20, hard: ResourceLimit.unlimited)
    )
    #expect(limit(.core) == ResourceLimit(resource: .core, soft: 0, hard: .max))
    #expect(limit(.cpu)?.soft == UInt64.max)
    #expect(limit(.lockedMemory)?.hard == 8_388_608)
    #expect(limit(.processes)?.soft == 96365)
    #expect(limit(.nice) == ResourceLimit(resource: .nice, soft: 0, hard: 0))  // no unit column
    #expect(limit(.realtimeTimeout)?.hard == .max)
    #expect(ResourceLimitKind.openFiles.rawValue == Int32(RLIMIT_NOFILE.rawValue))
    #expect(ResourceLimitKind.stack.rawValue == Int32(RLIMIT_STACK.rawValue))
  }

  @Test(arguments: [
    (
      "Max open files            1000                 2000                 files     ",
      "Max open files            lots                 2000                 files     ",
      "limits line 9 is malformed (bad soft or hard value)"
    ),
    (
      "Max open files            1000                 2000                 files     ",
      "Max open fds              1000                 2000                 files     ",
      "limits line 9 is malformed (unknown resource)"
    ),
    (
      "Max open files            1000                 2000                 files     \n", "",
      "limits is malformed: missing Max open files"
    ),
    (
      "Max nice priority         0                    0                    \n",
      "Max nice priority         0                    0                    \nMax nice priority 1 1\n",
      "limits line 16 is malformed (resource listed twice)"
    ),
    ("Limit     ", "Resource  ", "limits line 1 is malformed (no header)"),
  ])
  func malformed(original: String, replacement: String, message: String) throws {
    let text = try ProcFixture.text("multi-thread.limits")
    #expect(text.contains(original))
    let error = try #require(
      ckError { try ProcLimits.parse(text.replacingOccurrences(of: original, with: replacement)) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func readsThisProcess() throws {
    let limits = try ProcLimits.read(pid: getpid())
    var own = rlimit()
    getrlimit(__rlimit_resource_t(RLIMIT_NOFILE.rawValue), &own)
    let files = try #require(limits.first { $0.resource == .openFiles })
    #expect(files.soft == UInt64(own.rlim_cur) && files.hard == UInt64(own.rlim_max))
  }
}
