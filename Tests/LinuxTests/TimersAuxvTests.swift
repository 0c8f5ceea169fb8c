import Foundation
import Linux
import Testing

@Suite struct TimersTests {
  @Test func capturedTimers() throws {
    let timers = try ProcTimers.parse(ProcFixture.text("multi-thread.timers"))
    #expect(
      timers == [
        PosixTimerInfo(
          id: 1, signal: 12, sigevValue: 5, notify: .none, target: 8193, targetIsThread: false,
          clockID: 1),
        PosixTimerInfo(
          id: 0, signal: 12, sigevValue: 5, notify: .signal, target: 8193, targetIsThread: false,
          clockID: 0),
      ])
  }

  @Test func threadTargetedTimerAndEmptyFile() throws {
    let text = "ID: 7\nsignal: 34/00007ffc12345678\nnotify: signal/tid.4712\nClockID: 7\n"
    let timer = try #require(try ProcTimers.parse(text).first)
    #expect(timer.targetIsThread && timer.target == 4712 && timer.signal == 34)
    #expect(timer.sigevValue == 0x7ffc_1234_5678 && timer.clockID == 7)
    #expect(try ProcTimers.parse("").isEmpty)
  }

  @Test(arguments: [
    (
      "ID: 1\nsignal: 12/0\nnotify: none/pid.1\n",
      "timers is malformed: 3 lines, not four per timer"
    ),
    (
      "ID: 1\nsignal: 12/0\nClockID: 1\nnotify: none/pid.1\n",
      "timers line 3 is malformed (expected notify:)"
    ),
    (
      "ID: x\nsignal: 12/0\nnotify: none/pid.1\nClockID: 1\n", "timers line 1 is malformed (bad ID)"
    ),
    (
      "ID: 1\nsignal: 12\nnotify: none/pid.1\nClockID: 1\n",
      "timers line 2 is malformed (bad signal)"
    ),
    (
      "ID: 1\nsignal: 12/0\nnotify: later/pid.1\nClockID: 1\n",
      "timers line 3 is malformed (bad notify)"
    ),
    (
      "ID: 1\nsignal: 12/0\nnotify: none/pgid.1\nClockID: 1\n",
      "timers line 3 is malformed (bad notify target)"
    ),
  ])
  func malformed(text: String, message: String) throws {
    let error = try #require(ckError { try ProcTimers.parse(text) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func readsThisProcess() throws {
    #expect(
      try ProcTimers.read(pid: getpid()).allSatisfy { $0.target == getpid() || $0.targetIsThread })
  }
}

@Suite struct PersonalityTests {
  @Test func capturedAndHandWritten() throws {
    #expect(try ProcPersonality.parse(ProcFixture.text("multi-thread.personality")) == 0)
    #expect(try ProcPersonality.parse("00400000\n") == 0x40_0000)  // READ_IMPLIES_EXEC
    #expect(ckError { try ProcPersonality.parse("") } != nil)
    #expect(ckError { try ProcPersonality.parse("100000000\n") } != nil)
    #expect(
      ckError { try ProcPersonality.parse("linux\n") }?.message.hasPrefix("personality line 1")
        == true)
    #expect(try ProcPersonality.read(pid: getpid()) & 0xff == 0)  // PER_LINUX
  }
}

@Suite struct AuxVectorTests {
  @Test func capturedVectorMatchesTheAddressSpace() throws {
    let auxv = try AuxVector.parse(ProcFixture.hexBytes("multi-thread.auxv.hex"))
    #expect(auxv.count == 22)
    func value(_ type: UInt64) -> UInt64? { auxv.first { $0.type == type }?.value }
    #expect(value(6) == 4096)  // AT_PAGESZ
    #expect(value(17) == 100)  // AT_CLKTCK
    #expect(value(23) == 0)  // AT_SECURE
    let maps = try ProcMaps.parse(ProcFixture.text("multi-thread.maps"))
    let vdso = try #require(maps.first { $0.kind == .vdso })
    #expect(value(33) == vdso.start)  // AT_SYSINFO_EHDR
    let entry = try #require(value(9))  // AT_ENTRY lies in the program's text
    #expect(
      maps.contains {
        $0.path == "/tmp/procfix/fix" && $0.permissions.contains(.execute) && $0.start <= entry
          && entry < $0.end
      })
    let random = try #require(value(25))  // AT_RANDOM points into the stack
    #expect(maps.contains { $0.kind == .stack && $0.start <= random && random < $0.end })
  }

  @Test func malformed() throws {
    #expect(
      ckError { try AuxVector.parse([UInt8](repeating: 0, count: 15)) }?.message.contains("16-byte")
        == true)
    // Two entries without AT_NULL.
    let unterminated: [UInt8] =
      [6, 0, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0] + [UInt8](repeating: 1, count: 16)
    #expect(
      ckError { try AuxVector.parse(unterminated) }?.message.contains(
        "no AT_NULL terminator after 2 entries") == true)
    #expect(try AuxVector.parse([UInt8](repeating: 0, count: 16)).isEmpty)
  }

  @Test func readsThisProcess() throws {
    let auxv = try AuxVector.read(pid: getpid())
    #expect(auxv.first { $0.type == 6 }?.value == UInt64(sysconf(Int32(_SC_PAGESIZE))))
    let vdso = try #require(try ProcMaps.read(pid: getpid()).first { $0.kind == .vdso })
    #expect(auxv.first { $0.type == 33 }?.value == vdso.start)  // AT_SYSINFO_EHDR
  }
}
