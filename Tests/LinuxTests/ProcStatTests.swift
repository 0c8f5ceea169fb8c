import Foundation
import Linux
import Testing

@Suite struct ProcStatTests {
  @Test func existingParserHandlesParenthesesInComm() throws {
    let stat = try #require(ProcStat.parse(ProcFixture.text("multi-thread.stat")))
    #expect(stat.pid == 8193)
    #expect(stat.comm == "a b) (c")
    #expect(stat.state == "S")
    #expect(stat.ppid == 1 && stat.pgrp == 8193 && stat.session == 8193 && stat.ttyNr == 0)
    #expect(stat.threads == 4)
    #expect(stat.startTime == 69074)
  }

  @Test func existingParserRejectsGarbage() {
    #expect(ProcStat.parse("") == nil)
    #expect(ProcStat.parse("12 no parens S 1") == nil)
    #expect(ProcStat.parse("12 (x) S 1 2 3") == nil)
    #expect(ProcStat.parse(") 12 (x S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20") == nil)
  }

  @Test func extendedFieldsOfCapturedProcess() throws {
    let stat = try ProcStatExtended.parse(ProcFixture.text("multi-thread.stat"))
    #expect(stat.pid == 8193 && stat.comm == "a b) (c" && stat.state == .sleeping)
    #expect(stat.ppid == 1 && stat.pgrp == 8193 && stat.session == 8193 && stat.ttyNr == 0)
    #expect(stat.flags == 0x40_0000)  // PF_RANDOMIZE
    #expect(stat.priority == 20 && stat.nice == 0 && stat.numThreads == 4)
    #expect(stat.startTime == 69074 && stat.vsize == 28_049_408 && stat.rssPages == 429)
    #expect(stat.rsslim == UInt64.max)
    #expect(stat.startCode == 93_925_168_283_648 && stat.endCode == 93_925_168_285_905)
    #expect(stat.startStack == 140_730_826_368_928)
    #expect(stat.exitSignal == 17)  // SIGCHLD
    #expect(stat.processor == 0 && stat.rtPriority == 0 && stat.policy == 0)
    #expect(stat.startData == 93_925_168_295_376 && stat.endData == 93_925_168_296_216)
    #expect(stat.startBrk == 93_925_871_947_776)
    #expect(stat.argStart == 140_730_826_373_847 && stat.argEnd == 140_730_826_373_853)
    #expect(stat.envStart == 140_730_826_373_853 && stat.envEnd == 140_730_826_375_154)
    #expect(stat.exitCode == 0)
  }

  /// The layout fields agree with the mappings captured at the same time.
  @Test func layoutMatchesMaps() throws {
    let stat = try ProcStatExtended.parse(ProcFixture.text("multi-thread.stat"))
    let vmas = try ProcMaps.parse(ProcFixture.text("multi-thread.maps"))
    let heap = try #require(vmas.first { $0.kind == .heap })
    #expect(heap.start == stat.startBrk)
    let stack = try #require(vmas.first { $0.kind == .stack })
    #expect((stack.start..<stack.end).contains(stat.startStack))
    #expect((stack.start..<stack.end).contains(stat.argStart))
    #expect((stack.start...stack.end).contains(stat.envEnd))
    let text = try #require(vmas.first { $0.permissions.contains(.execute) })
    #expect(text.path == "/tmp/procfix/fix")
    #expect(stat.startCode <= text.start && stat.endCode <= text.end && stat.endCode > text.start)
  }

  @Test func threadStat() throws {
    let stat = try ProcStatExtended.parse(ProcFixture.text("multi-thread.thread.stat"))
    #expect(stat.pid == 8197 && stat.comm == "a b) (c")
    #expect(stat.exitSignal == -1)  // threads signal nobody
    #expect(stat.flags == 0x40_0040)  // PF_RANDOMIZE | PF_FORKNOEXEC
  }

  @Test func commWithOnlyParensAndSpaces() throws {
    var fields = (4...52).map { String($0) }
    fields[0] = "1"  // ppid
    let text = "77 (" + ") ) ( (()" + ") R " + fields.joined(separator: " ") + "\n"
    let stat = try ProcStatExtended.parse(text)
    #expect(stat.comm == ") ) ( (()")
    #expect(stat.state == .running)
    #expect(stat.ppid == 1 && stat.pgrp == 5 && stat.exitCode == 52)
    #expect(stat.startData == 45 && stat.envEnd == 51 && stat.policy == 41)
  }

  @Test(arguments: [
    ("8193 a b c S 1", "stat line 1 is malformed (no (comm))"),
    ("x (a) S 1", "stat line 1 is malformed (bad pid)"),
    ("1 (a) S 1 2 3", "stat line 1 is malformed (6 fields, expected 52)"),
  ])
  func malformed(text: String, message: String) throws {
    let error = try #require(ckError { try ProcStatExtended.parse(text) })
    #expect(error.message.hasPrefix(message), "\(error)")
  }

  @Test func badFieldIsNamedByNumber() throws {
    let good = try ProcFixture.text("multi-thread.stat")
    let broken = good.replacingOccurrences(of: " 93925168295376 ", with: " -5 ")
    let error = try #require(ckError { try ProcStatExtended.parse(broken) })
    #expect(error.message.contains("bad field 45: -5"), "\(error)")
    let badState = good.replacingOccurrences(of: "(c) S ", with: "(c) Q ")
    #expect(
      ckError { try ProcStatExtended.parse(badState) }?.message.contains("bad state Q") == true)
  }

  @Test func readsThisProcess() throws {
    let stat = try ProcStatExtended.read(pid: getpid())
    #expect(stat.pid == getpid())
    #expect(stat.numThreads >= 1)
    #expect(stat.startBrk > 0 && stat.argStart < stat.argEnd)
  }
}
