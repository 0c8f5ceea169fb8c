/// The fields of `/proc/<pid>/stat` that ckcont uses (proc(5)).
public struct ProcStat: Equatable, Sendable {
  public var pid: Int32
  /// The command name (`comm`), which may itself contain spaces and parentheses.
  public var comm: String
  /// One letter: R running, S sleeping, D disk sleep, T stopped, t traced, Z zombie...
  public var state: Character
  public var ppid: Int32
  public var pgrp: Int32
  public var session: Int32
  public var ttyNr: Int32
  /// The foreground process group of its controlling terminal (tpgid; -1 for none).
  public var foregroundGroup: Int32 = -1
  public var threads: Int
  public var startTime: UInt64

  /// Parses one stat line. `comm` is everything between the first "(" and the last ")".
  public static func parse(_ text: String) -> ProcStat? {
    guard let open = text.firstIndex(of: "("), let close = text.lastIndex(of: ")"), open < close,
      let pid = Int32(text[..<open].trimmingCharacters(in: " "))
    else { return nil }
    let comm = String(text[text.index(after: open)..<close])
    let rest = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
    // rest[0] is field 3 (state); field N is rest[N - 3].
    guard rest.count >= 20, let state = rest[0].first,
      let ppid = Int32(rest[1]), let pgrp = Int32(rest[2]), let session = Int32(rest[3]),
      let tty = Int32(rest[4]), let threads = Int(rest[17]),
      let start = UInt64(rest[19])
    else { return nil }
    var stat = ProcStat(
      pid: pid, comm: comm, state: state, ppid: ppid, pgrp: pgrp, session: session,
      ttyNr: tty, threads: threads, startTime: start)
    stat.foregroundGroup = Int32(rest[5]) ?? -1
    return stat
  }

  /// Reads `/proc/<pid>/stat`; nil when the task is gone.
  public static func read(pid: Int32) -> ProcStat? {
    guard let text = try? PseudoFile.read("/proc/\(pid)/stat") else { return nil }
    return parse(text)
  }
}

extension Substring {
  func trimmingCharacters(in set: Character) -> Substring {
    var s = self
    while s.first == set { s = s.dropFirst() }
    while s.last == set { s = s.dropLast() }
    return s
  }
}

/// What /proc says about one process beyond its stat line.
public enum ProcInfo {
  /// The thread ids of `pid` from `/proc/<pid>/task`.
  public static func threadIDs(pid: Int32) throws(SyscallError) -> [Int32] {
    try PseudoFile.list("/proc/\(pid)/task").compactMap { Int32($0) }.sorted()
  }

  /// The command line, arguments joined by spaces; empty for kernel threads and zombies.
  public static func commandLine(pid: Int32) -> String {
    guard let bytes = try? PseudoFile.readBytes("/proc/\(pid)/cmdline") else { return "" }
    return bytes.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }.joined(separator: " ")
  }

  /// The kernel function the task sleeps in (`/proc/<pid>/wchan`), or nil when unknown.
  public static func waitChannel(tid: Int32) -> String? {
    guard let text = try? PseudoFile.read("/proc/\(tid)/wchan"), !text.isEmpty, text != "0" else {
      return nil
    }
    return text
  }
}
