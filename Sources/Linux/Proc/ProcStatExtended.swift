/// Every `/proc/<pid>/stat` field the dump needs, notably the memory layout that
/// `PR_SET_MM_MAP` restores (proc(5); field numbers below are proc(5)'s, 1-based).
/// The address fields read 0 unless the reader may ptrace the task (PTRACE_MODE_READ).
public struct ProcStatExtended: Codable, Hashable, Sendable {
  /// (1) The task id.
  public var pid: Int32
  /// (2) The command name, which may itself contain spaces and parentheses.
  public var comm: String
  /// (3)
  public var state: TaskState
  /// (4)
  public var ppid: Int32
  /// (5) Process group.
  public var pgrp: Int32
  /// (6)
  public var session: Int32
  /// (7) Controlling terminal (device number), 0 for none.
  public var ttyNr: Int32
  /// (9) The kernel's PF_* task flags.
  public var flags: UInt32
  /// (18) Scheduling priority as the kernel shows it.
  public var priority: Int64
  /// (19) Nice value, -20...19.
  public var nice: Int64
  /// (20)
  public var numThreads: Int64
  /// (22) Start time after boot, in clock ticks.
  public var startTime: UInt64
  /// (23) Virtual memory size in bytes.
  public var vsize: UInt64
  /// (24) Resident set size in pages (the kernel's approximate counters).
  public var rssPages: UInt64
  /// (25) Soft RSS limit in bytes.
  public var rsslim: UInt64
  /// (26) Address above which program text can run.
  public var startCode: UInt64
  /// (27) Address below which program text can run.
  public var endCode: UInt64
  /// (28) Bottom (start) of the main stack.
  public var startStack: UInt64
  /// (38) Signal sent to the parent when the task dies.
  public var exitSignal: Int32
  /// (39) CPU the task last ran on.
  public var processor: Int32
  /// (40) Real-time priority, 0 for normal tasks.
  public var rtPriority: UInt32
  /// (41) Scheduling policy (SCHED_*).
  public var policy: UInt32
  /// (45) Start of initialized and uninitialized data (bss).
  public var startData: UInt64
  /// (46) End of data.
  public var endData: UInt64
  /// (47) Start of the heap (`brk` area).
  public var startBrk: UInt64
  /// (48) Start of the command-line arguments.
  public var argStart: UInt64
  /// (49) End of the command-line arguments.
  public var argEnd: UInt64
  /// (50) Start of the environment.
  public var envStart: UInt64
  /// (51) End of the environment.
  public var envEnd: UInt64
  /// (52) Exit status in waitpid(2) form.
  public var exitCode: Int32
}

extension ProcStatExtended {
  /// Parses one stat line. `comm` is everything between the first "(" and the last ")".
  public static func parse(_ text: String) throws(CKError) -> ProcStatExtended {
    var line = Substring(text)
    if line.last == "\n" { line = line.dropLast() }
    guard let open = line.firstIndex(of: "("), let close = line.lastIndex(of: ")"), open < close
    else { throw procParseError("stat", line: 1, line, "no (comm)") }
    guard let pid = Int32(trimBlanks(line[..<open])) else {
      throw procParseError("stat", line: 1, line, "bad pid")
    }
    let comm = String(line[line.index(after: open)..<close])
    // rest[0] is field 3 (state); field N is rest[N - 3].
    let rest = line[line.index(after: close)...].split(separator: " ")
    guard rest.count >= 50 else {
      throw procParseError("stat", line: 1, line, "\(rest.count + 2) fields, expected 52")
    }
    func field<T: FixedWidthInteger>(_ number: Int, _: T.Type = T.self) throws(CKError) -> T {
      guard let value = T(rest[number - 3]) else {
        throw procParseError("stat", line: 1, line, "bad field \(number): \(rest[number - 3])")
      }
      return value
    }
    guard let state = TaskState(rawValue: String(rest[0])) else {
      throw procParseError("stat", line: 1, line, "bad state \(rest[0])")
    }
    return ProcStatExtended(
      pid: pid, comm: comm, state: state,
      ppid: try field(4), pgrp: try field(5), session: try field(6), ttyNr: try field(7),
      flags: try field(9), priority: try field(18), nice: try field(19),
      numThreads: try field(20), startTime: try field(22), vsize: try field(23), rssPages: try field(24),
      rsslim: try field(25), startCode: try field(26), endCode: try field(27),
      startStack: try field(28), exitSignal: try field(38), processor: try field(39),
      rtPriority: try field(40), policy: try field(41), startData: try field(45),
      endData: try field(46), startBrk: try field(47), argStart: try field(48),
      argEnd: try field(49), envStart: try field(50), envEnd: try field(51),
      exitCode: try field(52))
  }

  /// Reads and parses `/proc/<pid>/stat`.
  public static func read(pid: Int32) throws -> ProcStatExtended {
    try parse(PseudoFile.read("/proc/\(pid)/stat"))
  }
}
