import Bundle
import Testing

@testable import Checkpoint

/// How interrupted system calls resume: a pure function of the dumped registers.
struct SyscallRestartTests {
  func registers(
    rax: Int64, origRax: Int64, rip: UInt64 = 0x1002, rdi: UInt64 = 0, rsi: UInt64 = 0, rdx: UInt64 = 0, r10: UInt64 = 0
  )
    -> GeneralRegisters
  {
    GeneralRegisters(
      r15: 15, r14: 14, r13: 13, r12: 12, rbp: 0xbb, rbx: 0xb, r11: 0, r10: r10, r9: 0, r8: 0,
      rax: UInt64(bitPattern: rax),
      rcx: 0, rdx: rdx, rsi: rsi, rdi: rdi, origRax: UInt64(bitPattern: origRax), rip: rip, cs: 0x33, eflags: 0x246,
      rsp: 0x7ffe_0000, ss: 0x2b, fsBase: 0, gsBase: 0, ds: 0, es: 0, fs: 0, gs: 0)
  }

  @Test(arguments: [-512, -513, -514])
  func restartableCallsRunAgain(code: Int64) {
    let read: Int64 = 0
    let dumped = registers(rax: code, origRax: read, rdi: 3)
    let resumed = SyscallRestart.resumeRegisters(dumped)
    #expect(resumed.rax == 0 && resumed.rip == 0x1000 && resumed.origRax == UInt64.max)
    #expect(resumed.rdi == 3 && resumed.rbx == 0xb && resumed.r15 == 15)
    #expect(SyscallRestart.reissues(dumped))
  }

  @Test func nanosleepRebuildsItsRestartBlockWithTheRemainingTime() throws {
    let dumped = registers(rax: -516, origRax: 35, rdi: 0x100, rsi: 0x200)
    let sleep = try #require(SyscallRestart.sleepRebuildingRestartBlock(dumped))
    #expect(sleep.rax == 35 && sleep.rip == 0x1000 && sleep.rdi == 0x200 && sleep.rsi == 0x200)
    #expect(sleep.origRax == UInt64.max && sleep.rbx == 0xb && sleep.r15 == 15)
  }

  @Test func relativeClockNanosleepRebuildsItsRestartBlock() {
    let dumped = registers(rax: -516, origRax: 230, rdi: 1, rsi: 0, rdx: 0x100, r10: 0x200)
    #expect(SyscallRestart.sleepRebuildingRestartBlock(dumped)?.rdx == 0x200)
    let timerAbsolute: UInt64 = 1  // TIMER_ABSTIME
    let absolute = registers(rax: -516, origRax: 230, rdi: 0, rsi: timerAbsolute, rdx: 0x100, r10: 0x200)
    #expect(SyscallRestart.sleepRebuildingRestartBlock(absolute) == nil)
  }

  @Test func sleepsWithoutRemAndOtherBlockedCallsAreReissuedAsIs() {
    for dumped in [registers(rax: -516, origRax: 35, rdi: 0x100, rsi: 0), registers(rax: -516, origRax: 7, rdi: 0x100)]
    {
      #expect(SyscallRestart.sleepRebuildingRestartBlock(dumped) == nil)
      let resumed = SyscallRestart.resumeRegisters(dumped)
      #expect(resumed.rax == dumped.origRax && resumed.rdi == 0x100 && resumed.rip == 0x1000)
      #expect(resumed.origRax == UInt64.max && SyscallRestart.reissues(dumped))
    }
  }

  @Test func finishedCallsAndUserCodeResumeUnchanged() {
    let finished = registers(rax: 5, origRax: 0)
    #expect(SyscallRestart.resumeRegisters(finished).rax == 5)
    #expect(SyscallRestart.resumeRegisters(finished).rip == 0x1002)
    #expect(!SyscallRestart.reissues(finished))
    let eintr = registers(rax: -4, origRax: 7)
    #expect(SyscallRestart.resumeRegisters(eintr).rax == UInt64(bitPattern: -4))
    let user = registers(rax: 42, origRax: -1)
    #expect(SyscallRestart.resumeRegisters(user).rip == 0x1002 && !SyscallRestart.reissues(user))
  }

  @Test func i386SleepsRebuildTheirRestartBlocks() {
    // clock_nanosleep (267): ebx clock, ecx flags, edx req, esi rem.
    var dumped = registers(rax: -516, origRax: 267, rsi: 0x200, rdx: 0x100)
    dumped.rcx = 0
    let sleep = SyscallRestart.sleepRebuildingRestartBlock(dumped, abi: .i386)
    #expect(sleep?.rax == 267 && sleep?.rip == 0x1000 && sleep?.rdx == 0x200 && sleep?.origRax == UInt64.max)
    dumped.rcx = 1  // TIMER_ABSTIME
    #expect(SyscallRestart.sleepRebuildingRestartBlock(dumped, abi: .i386) == nil)
    // nanosleep (162): ebx req, ecx rem.
    var old = registers(rax: -516, origRax: 162)
    (old.rbx, old.rcx) = (0x300, 0x400)
    #expect(SyscallRestart.sleepRebuildingRestartBlock(old, abi: .i386)?.rbx == 0x400)
    // The same numbers mean other calls to an x86_64 task: no sleep there.
    #expect(SyscallRestart.sleepRebuildingRestartBlock(old) == nil)
  }

  @Test func anI386RestartedSleepIsRefused() throws {
    let dumped = registers(rax: -516, origRax: 0)
    #expect(throws: (any Error).self) { try SyscallRestart.recoverRestartedCall(dumped, code: [], abi: .i386) }
    let read = registers(rax: -512, origRax: 3)
    #expect(try SyscallRestart.recoverRestartedCall(read, code: [], abi: .i386) == read)
  }
}
