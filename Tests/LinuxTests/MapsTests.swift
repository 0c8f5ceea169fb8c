import Glibc
import Linux
import Testing

@Suite struct MapsTests {
  @Test func capturedMultiThreadProcess() throws {
    let vmas = try ProcMaps.parse(ProcFixture.text("multi-thread.maps"))
    #expect(vmas.count == 40)
    let first = try #require(vmas.first)
    #expect(first.start == 0x556c_a84a_7000)
    #expect(first.end == 0x556c_a84a_8000)
    #expect(first.permissions == [.read])
    #expect(first.permissions.description == "r--p")
    #expect(first.major == 0xfe && first.minor == 0)
    #expect(first.inode == 16_220_720)
    #expect(first.path == "/tmp/procfix/fix")
    #expect(first.kind == .file)
    #expect(vmas[1].permissions == [.read, .execute])
    #expect(vmas[1].offset == 0x1000)

    // Addresses ascend and areas never overlap.
    for (a, b) in zip(vmas, vmas.dropFirst()) { #expect(a.end <= b.start) }

    let byPath = Dictionary(grouping: vmas, by: \.path)
    #expect(byPath["[heap]"]?.first?.kind == .heap)
    #expect(byPath["[stack]"]?.first?.kind == .stack)
    #expect(byPath["[vdso]"]?.first?.kind == .vdso)
    #expect(byPath["[vvar]"]?.first?.kind == .vvar)
    #expect(byPath["[vvar_vclock]"]?.first?.kind == .vvarVclock)
    let vsyscall = try #require(byPath["[vsyscall]"]?.first)
    #expect(vsyscall.kind == .vsyscall)
    #expect(vsyscall.start == 0xffff_ffff_ff60_0000)
    #expect(vsyscall.permissions == [.execute])

    // A shared file mapping whose name has a space, and an unlinked private one.
    let dataFile = try #require(byPath["/tmp/procfix/data file.bin"]?.first)
    #expect(dataFile.permissions == [.read, .write, .shared])
    #expect(!dataFile.isDeleted)
    let gone = try #require(byPath["/tmp/procfix/gone.bin"]?.first)
    #expect(gone.isDeleted)
    #expect(gone.offset == 0x1000)
    #expect(gone.kind == .file)

    // MAP_SHARED|MAP_ANONYMOUS shows as /dev/zero (deleted) on the internal shmem mount.
    let shmem = try #require(byPath["/dev/zero"]?.first)
    #expect(shmem.isDeleted && shmem.major == 0 && shmem.minor == 1)
    #expect(shmem.kind == .sharedAnonymous)

    let anonymous = vmas.filter { $0.kind == .anonymous }
    #expect(anonymous.count == 16)
    #expect(anonymous.allSatisfy { $0.inode == 0 && $0.major == 0 && $0.minor == 0 })
    #expect(anonymous.contains { $0.permissions.isEmpty })  // PROT_NONE guard pages
  }

  @Test func trickyNames() throws {
    let vmas = try ProcMaps.parse(ProcFixture.text("tricky.maps"))
    #expect(vmas.count == 20)
    #expect(vmas[0].start == 0x40_0000 && vmas[0].major == 8 && vmas[0].minor == 2)
    #expect(vmas[3].kind == .anonymousNamed("ckcont test"))
    #expect(vmas[4].kind == .anonymousNamed("ring buffer"))
    #expect(vmas[4].permissions.contains(.shared))
    #expect(vmas[5].kind == .sharedAnonymous)
    // A real mapping of the /dev/zero device is a file mapping.
    #expect(vmas[6].kind == .file && vmas[6].path == "/dev/zero" && !vmas[6].isDeleted)
    // A SysV segment, by id (its inode number).
    #expect(vmas[7].path == "/SYSV0000162e" && vmas[7].isDeleted && vmas[7].kind == .sysvShm(32769))
    #expect(vmas[8].path == "/memfd:jit code" && vmas[8].isDeleted)
    #expect(vmas[9].path == "/tmp/a dir/with  two spaces.bin")
    #expect(vmas[10].path == "/tmp/line\nbreak" && vmas[10].isDeleted)
    #expect(vmas[11].path == "/tmp/not deleted (deleted) really" && !vmas[11].isDeleted)
    #expect(vmas[12].path == "" && vmas[12].kind == .anonymous && vmas[12].permissions.isEmpty)
    #expect(vmas[13].path == "anon_inode:i915.gem" && vmas[13].kind == .file)
    #expect(vmas[14].kind == .otherPseudo("uprobes"))
    #expect(vmas[17].kind == .vvarVclock)
  }

  @Test func largeRealAddressSpace() throws {
    let vmas = try ProcMaps.parse(ProcFixture.text("swift-build.maps"))
    #expect(vmas.count == 419)
    #expect(vmas.filter { $0.kind == .file }.count > 300)
    for (a, b) in zip(vmas, vmas.dropFirst()) { #expect(a.end <= b.start) }
  }

  @Test(arguments: [
    ("00400000 r-xp 00000000 08:02 1 /bin/x", "bad address range"),
    ("00400000-00300000 r-xp 00000000 08:02 1 /bin/x", "range is empty or reversed"),
    ("00400000-00500000 rwzp 00000000 08:02 1 /bin/x", "bad permissions"),
    ("00400000-00500000 r-xq 00000000 08:02 1 /bin/x", "bad permissions"),
    ("00400000-00500000 r-xpp 00000000 08:02 1 /bin/x", "bad permissions"),
    ("00400000-00500000 r-xp 0000g000 08:02 1 /bin/x", "bad offset"),
    ("00400000-00500000 r-xp 00000000 0802 1 /bin/x", "bad device"),
    ("00400000-00500000 r-xp 00000000 08:02 x /bin/x", "bad inode"),
    ("00400000-00500000 r-xp 00000000 08:02 12x /bin/x", "junk after inode"),
    ("10000000000000000-10000000000000001 r-xp 00000000 08:02 1 /bin/x", "bad address range"),
    ("", "bad address range"),
  ])
  func malformedLines(line: String, reason: String) throws {
    let text = "00e03000-00e24000 rw-p 00000000 00:00 0  [heap]\n\(line)\n"
    let error = try #require(ckError { try ProcMaps.parse(text) })
    #expect(error.message.hasPrefix("maps line 2 is malformed (\(reason))"), "\(error)")
  }

  @Test func emptyTextHasNoAreas() throws {
    #expect(try ProcMaps.parse("").isEmpty)
  }

  @Test func lastLineWithoutNewline() throws {
    let vmas = try ProcMaps.parse(
      "1000-2000 rw-p 00000000 00:00 0 \n3000-4000 r--s 00000010 00:01 7 /x")
    #expect(vmas.count == 2)
    #expect(vmas[1].path == "/x" && vmas[1].offset == 0x10 && vmas[1].size == 0x1000)
  }

  @Test func readsThisProcess() throws {
    let vmas = try ProcMaps.read(pid: getpid())
    #expect(vmas.contains { $0.kind == .stack })
    #expect(vmas.contains { $0.kind == .vdso })
  }

  /// Parses a synthetic 10000-area map and prints how long it took (informational only:
  /// timing is asserted nowhere; Scripts/bench is where performance is measured).
  @Test func tenThousandAreas() throws {
    let text = Self.syntheticMaps(count: 10_000)
    var best = Duration.seconds(1000)
    var vmas: [VMA] = []
    for _ in 0..<5 {
      let elapsed = try ContinuousClock().measure { vmas = try ProcMaps.parse(text) }
      best = min(best, elapsed)
    }
    #expect(vmas.count == 10_000)
    #expect(vmas[9_999].path.hasPrefix("/usr/lib/x86_64-linux-gnu/lib"))
    print("ProcMaps.parse: 10000 VMAs (\(text.utf8.count) bytes) in \(best)")
  }

  /// Lines shaped like a real big process: libraries, anonymous areas and guard pages.
  static func syntheticMaps(count: Int) -> String {
    var text = ""
    var address: UInt64 = 0x7f00_0000_0000
    for i in 0..<count {
      let start = String(address, radix: 16)
      address += 0x1000 * UInt64(1 + i % 7)
      let end = String(address, radix: 16)
      switch i % 4 {
      case 0: text += "\(start)-\(end) ---p 00000000 00:00 0 \n"
      case 1: text += "\(start)-\(end) rw-p 00000000 00:00 0 \n"
      default:
        let padding = String(repeating: " ", count: 73 - 25 - start.count - end.count)
        text += "\(start)-\(end) r-xp 0001c000 fe:00 \(333_151 + i)\(padding)"
        text += "/usr/lib/x86_64-linux-gnu/lib\(i % 97)-plugin.so.6\n"
      }
    }
    return text
  }
}
