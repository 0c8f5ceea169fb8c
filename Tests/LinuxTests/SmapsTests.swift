import Glibc
import Linux
import Testing

@Suite struct SmapsTests {
  @Test func sameAreasAsMaps() throws {
    let maps = try ProcMaps.parse(ProcFixture.text("multi-thread.maps"))
    let smaps = try ProcSmaps.parse(ProcFixture.text("multi-thread.smaps"))
    #expect(smaps.map(\.vma) == maps)
    #expect(smaps.allSatisfy { $0.unknownFlags.isEmpty })
    #expect(smaps.allSatisfy { $0.kernelPageSize == 4096 })
  }

  /// The flags-only parse finds what the whole parse finds, area by area.
  @Test func flagsOnlyParseAgreesWithTheWholeParse() throws {
    for name in ["multi-thread.smaps"] {
      let text = try ProcFixture.text(name)
      let whole = try ProcSmaps.parse(text)
      let flags = try ProcSmaps.parseFlags(text)
      #expect(flags.count == whole.count)
      for entry in whole { #expect(flags[entry.vma.start] == entry.flags, "\(name) \(entry.vma.start)") }
    }
    let mine = try ProcSmaps.readFlags(pid: getpid())
    #expect(mine.values.contains { $0.contains(.growsDown) })
    #expect(throws: CKError.self) { try ProcSmaps.parseFlags("7f00-7f01 rw-p 00000000 00:00 0\nRss: 4 kB\n") }
    #expect(throws: CKError.self) { try ProcSmaps.parseFlags("VmFlags: rd\n") }
  }

  @Test func flagsAndSizes() throws {
    let smaps = try ProcSmaps.parse(ProcFixture.text("multi-thread.smaps"))
    func area(_ start: UInt64) throws -> SmapsEntry {
      try #require(smaps.first { $0.vma.start == start })
    }
    let text = try area(0x556c_a84a_8000)
    #expect(text.flags == [.readable, .executable, .mayRead, .mayWrite, .mayExecute])

    // mlock()ed page.
    let locked = try area(0x7f44_3a01_b000)
    #expect(locked.flags.contains(.locked))
    #expect(locked.rss == 4096 && locked.privateDirty == 4096 && locked.anonymous == 4096)

    // MADV_DONTDUMP and MADV_WIPEONFORK regions.
    #expect(try area(0x7f44_3a01_c000).flags.contains(.dontDump))
    #expect(try area(0x7f44_3862_1000).flags.contains(.wipeOnFork))

    // The 64 KiB region written in full.
    let filled = try area(0x7f44_3862_3000)
    #expect(filled.vma.size == 65536 && filled.anonymous == 65536 && filled.rss == 65536)

    // Shared mappings carry sh and ms; the private ones neither.
    let shared = smaps.filter { $0.vma.permissions.contains(.shared) }
    #expect(shared.count == 2)
    #expect(shared.allSatisfy { $0.flags.isSuperset(of: [.shared, .mayShare]) })
    #expect(!smaps.contains { !$0.vma.permissions.contains(.shared) && $0.flags.contains(.shared) })

    // The main stack and the MAP_GROWSDOWN region grow down; vvar is not dumped.
    let growsDown = smaps.filter { $0.flags.contains(.growsDown) }
    #expect(growsDown.count == 2)
    #expect(growsDown.contains { $0.vma.kind == .stack })
    let vvar = try #require(smaps.first { $0.vma.kind == .vvar })
    #expect(vvar.flags == [.readable, .mayRead, .pfnMap, .io, .dontExpand, .dontDump])
    let vdso = try #require(smaps.first { $0.vma.kind == .vdso })
    #expect(vdso.flags.contains(.dontExpand) && !vdso.flags.contains(.dontDump))

    // Thread stacks from glibc are MADV_NOHUGEPAGE.
    #expect(smaps.filter { $0.flags.contains(.noHugePage) }.count == 6)
  }

  @Test func unknownFlagsAreKeptHugePageSizeAndSwap() throws {
    let text = """
      7f0000000000-7f0000400000 rw-s 00000000 00:0f 1234                       /anon_hugepage (deleted)
      Size:               4096 kB
      KernelPageSize:     2048 kB
      Rss:                   0 kB
      Private_Dirty:         0 kB
      Anonymous:             0 kB
      Swap:                  0 kB
      ProtectionKey:         0
      VmFlags: rd wr sh mr mw me ms de ht zz 
      7f0000400000-7f0000401000 rw-p 00000000 00:00 0 
      Rss:                   0 kB
      Swap:                  4 kB
      THPeligible:    0
      VmFlags: rd wr mr mw me ac sd um uw ss sl mg hg 

      """
    let smaps = try ProcSmaps.parse(text)
    #expect(smaps.count == 2)
    #expect(smaps[0].flags.contains(.hugeTLB))
    #expect(smaps[0].unknownFlags == ["zz"])
    #expect(smaps[0].kernelPageSize == 2 << 20)
    #expect(smaps[1].swap == 4096)
    #expect(
      smaps[1].flags.isSuperset(of: [
        .softDirty, .uffdMissing, .uffdWriteProtect, .shadowStack, .sealed, .mergeable, .hugePage,
      ]))
  }

  @Test(arguments: [
    ("Rss: 4 kB\nVmFlags: rd\n", "smaps line 1 is malformed (detail before the first area)"),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nRss: 4 kB\n",
      "smaps line 2 is malformed (last area has no VmFlags)"
    ),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nRss: 4 kB\n2000-3000 rw-p 00000000 00:00 0 \nVmFlags: rd\n",
      "smaps line 3 is malformed (previous area has no VmFlags)"
    ),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nRss: four kB\nVmFlags: rd\n",
      "smaps line 2 is malformed (size is not `N kB`)"
    ),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nRss: 4 MB\nVmFlags: rd\n",
      "smaps line 2 is malformed (size is not `N kB`)"
    ),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nVmFlags: rdx\n",
      "smaps line 2 is malformed (VmFlags mnemonic is not two letters)"
    ),
    ("1000-2000 rw-p 00000000 00:00 0 \n\nVmFlags: rd\n", "smaps line 2 is malformed (empty line)"),
    (
      "1000-2000 rw-p 00000000 00:00 0 \nno colon here\nVmFlags: rd\n",
      "smaps line 2 is malformed (no key)"
    ),
    (
      "1000-zzzz rw-p 00000000 00:00 0 \nVmFlags: rd\n",
      "smaps line 1 is malformed (bad address range)"
    ),
  ])
  func malformed(text: String, message: String) throws {
    let error = try #require(ckError { try ProcSmaps.parse(text) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func readsThisProcess() throws {
    let smaps = try ProcSmaps.read(pid: getpid())
    let maps = try ProcMaps.read(pid: getpid())
    #expect(!smaps.isEmpty)
    #expect(smaps.contains { $0.vma.kind == .stack && $0.flags.contains(.growsDown) })
    // Both files list the same kind of areas; exact equality would race with our own allocator.
    #expect(abs(smaps.count - maps.count) < 20)
  }
}
