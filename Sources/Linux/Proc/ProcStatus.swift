/// A task's scheduling state, the letter of `/proc/<pid>/stat` field 3 and `State:` in status.
public enum TaskState: String, Codable, Hashable, Sendable {
  case running = "R"
  case sleeping = "S"
  /// Uninterruptible sleep.
  case diskSleep = "D"
  case stopped = "T"
  /// Stopped by a tracer (ptrace stop).
  case tracingStop = "t"
  case zombie = "Z"
  case dead = "X"
  /// An idle kernel thread.
  case idle = "I"
  /// A parked kernel thread (old kernels print `P`).
  case parked = "P"
  /// Old kernels: `K` wakekill, `W` waking.
  case wakeKill = "K"
  case waking = "W"
}

/// Real, effective, saved and filesystem ids: the four columns of `Uid:` and `Gid:`.
public struct TaskIDs: Codable, Hashable, Sendable {
  public var real: UInt32
  public var effective: UInt32
  public var saved: UInt32
  public var filesystem: UInt32

  /// Creates the set from its four ids.
  public init(real: UInt32, effective: UInt32, saved: UInt32, filesystem: UInt32) {
    self.real = real
    self.effective = effective
    self.saved = saved
    self.filesystem = filesystem
  }
}

/// What `/proc/<pid>/status` says about a task's identity, signals and credentials (proc(5)).
public struct ProcStatus: Codable, Hashable, Sendable {
  /// The command name (`comm`), with the kernel's `\n` and `\\` escapes decoded.
  public var name: String
  /// The file mode creation mask.
  public var umask: UInt32
  public var state: TaskState
  /// Thread group id (the process id).
  public var tgid: Int32
  /// The task (thread) id.
  public var pid: Int32
  public var ppid: Int32
  /// The pid of the tracer, 0 when not traced.
  public var tracerPid: Int32
  public var uid: TaskIDs
  public var gid: TaskIDs
  /// Supplementary groups.
  public var groups: [UInt32]
  /// The thread group id in each pid namespace the task is in, outermost (as seen by this
  /// /proc) first, innermost last.
  public var nsTgid: [Int32]
  /// The task id in each pid namespace, outermost first.
  public var nsPid: [Int32]
  /// The process group id in each pid namespace, outermost first (0 where it is not visible).
  public var nsPgid: [Int32]
  /// The session id in each pid namespace, outermost first (0 where it is not visible).
  public var nsSid: [Int32]
  /// True for kernel threads (`Kthread: 1`, kernels 6.3+); nil when the line is absent.
  public var isKernelThread: Bool?
  public var threads: Int
  /// Signals queued to the real uid of the task, and the limit (`SigQ: 2/96365`).
  public var queuedSignals: UInt64
  public var queuedSignalsLimit: UInt64
  /// Signals pending for the thread (bit n-1 is signal n).
  public var sigPnd: UInt64
  /// Signals pending for the whole process.
  public var shdPnd: UInt64
  /// Blocked signals.
  public var sigBlk: UInt64
  /// Ignored signals.
  public var sigIgn: UInt64
  /// Caught signals (with a handler).
  public var sigCgt: UInt64
  public var capInh: UInt64
  public var capPrm: UInt64
  public var capEff: UInt64
  public var capBnd: UInt64
  public var capAmb: UInt64
  public var noNewPrivs: Bool
  /// Seccomp mode: 0 disabled, 1 strict, 2 filter.
  public var seccomp: Int
  /// Number of seccomp filters attached (kernels 5.9+); nil when the line is absent.
  public var seccompFilters: Int?
  /// CPUs the task may run on, as ranges (`0-1,4` is [0...1, 4...4]).
  public var cpusAllowed: [ClosedRange<Int>]
}

extension ProcStatus {
  /// Parses the whole text; a malformed or missing field is reported by name and line.
  public static func parse(_ text: String) throws(CKError) -> ProcStatus {
    var fields: [Substring: (value: Substring, line: Int)] = [:]
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
    where !line.isEmpty {
      guard let field = splitProcField(line) else {
        throw procParseError("status", line: index + 1, line, "no colon")
      }
      let key = field.key
      var value = field.value
      if key == "Name" {
        // The name is printed verbatim after one tab: keep its own leading or trailing blanks.
        value = line.dropFirst("Name:".count)
        if value.first == "\t" { value = value.dropFirst() }
      }
      fields[key] = (value, index + 1)
    }
    let reader = FieldReader(file: "status", fields: fields)
    let state = try reader.require("State") { value in
      value.first.flatMap { TaskState(rawValue: String($0)) }
    }
    let sigQ = try reader.require("SigQ") { value -> (UInt64, UInt64)? in
      let parts = value.split(separator: "/")
      guard parts.count == 2, let queued = UInt64(parts[0]), let limit = UInt64(parts[1]) else {
        return nil
      }
      return (queued, limit)
    }
    return ProcStatus(
      name: try reader.require("Name") { unescapeName($0) },
      umask: try reader.require("Umask") { UInt32($0, radix: 8) },
      state: state,
      tgid: try reader.require("Tgid") { Int32($0) },
      pid: try reader.require("Pid") { Int32($0) },
      ppid: try reader.require("PPid") { Int32($0) },
      tracerPid: try reader.require("TracerPid") { Int32($0) },
      uid: try reader.require("Uid", parseIDs),
      gid: try reader.require("Gid", parseIDs),
      groups: try reader.require("Groups") { numbers($0, as: UInt32.self) },
      nsTgid: try reader.require("NStgid") { numbers($0, as: Int32.self) },
      nsPid: try reader.require("NSpid") { numbers($0, as: Int32.self) },
      nsPgid: try reader.require("NSpgid") { numbers($0, as: Int32.self) },
      nsSid: try reader.require("NSsid") { numbers($0, as: Int32.self) },
      isKernelThread: try reader.optional("Kthread") { flag($0) },
      threads: try reader.require("Threads") { Int($0) },
      queuedSignals: sigQ.0,
      queuedSignalsLimit: sigQ.1,
      sigPnd: try reader.require("SigPnd", hexMask),
      shdPnd: try reader.require("ShdPnd", hexMask),
      sigBlk: try reader.require("SigBlk", hexMask),
      sigIgn: try reader.require("SigIgn", hexMask),
      sigCgt: try reader.require("SigCgt", hexMask),
      capInh: try reader.require("CapInh", hexMask),
      capPrm: try reader.require("CapPrm", hexMask),
      capEff: try reader.require("CapEff", hexMask),
      capBnd: try reader.require("CapBnd", hexMask),
      capAmb: try reader.require("CapAmb", hexMask),
      noNewPrivs: try reader.require("NoNewPrivs") { flag($0) },
      seccomp: try reader.require("Seccomp") { Int($0).flatMap { (0...2).contains($0) ? $0 : nil } },
      seccompFilters: try reader.optional("Seccomp_filters") { Int($0) },
      cpusAllowed: try reader.require("Cpus_allowed_list", parseCPUList))
  }

  /// Reads and parses the status of `pid` (a process or, via `/proc/<pid>/task/<tid>`, a thread
  /// — pass the thread id: /proc accepts thread ids at the top level too).
  public static func read(pid: Int32) throws -> ProcStatus {
    try parse(PseudoFile.read("/proc/\(pid)/status"))
  }

  /// `Uid:	0	0	0	0`: real, effective, saved, filesystem.
  static func parseIDs(_ value: Substring) -> TaskIDs? {
    let ids = numbers(value, as: UInt32.self)
    guard let ids, ids.count == 4 else { return nil }
    return TaskIDs(real: ids[0], effective: ids[1], saved: ids[2], filesystem: ids[3])
  }

  /// A signal or capability mask: 16 hex digits.
  static func hexMask(_ value: Substring) -> UInt64? {
    guard value.count == 16 else { return nil }
    return UInt64(value, radix: 16)
  }

  /// `0` or `1`.
  static func flag(_ value: Substring) -> Bool? {
    switch value {
    case "0": false
    case "1": true
    default: nil
    }
  }

  /// Blank-separated decimal numbers; an empty value is an empty list (`Groups:` of a task
  /// without supplementary groups is a tab and a space).
  static func numbers<T: FixedWidthInteger>(_ value: Substring, as: T.Type) -> [T]? {
    var result: [T] = []
    for field in blankSeparatedFields(value) {
      guard let number = T(field) else { return nil }
      result.append(number)
    }
    return result
  }

  /// A CPU list such as `0-3,8,10-11`.
  static func parseCPUList(_ value: Substring) -> [ClosedRange<Int>]? {
    if value.isEmpty { return [] }
    var ranges: [ClosedRange<Int>] = []
    for part in value.split(separator: ",", omittingEmptySubsequences: false) {
      let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
      guard bounds.count == 1 || bounds.count == 2, let low = Int(bounds[0]),
        let high = Int(bounds[bounds.count - 1]), low >= 0, low <= high
      else { return nil }
      ranges.append(low...high)
    }
    return ranges
  }

  /// The kernel escapes only newline (`\n`) and backslash (`\\`) in `Name:`.
  static func unescapeName(_ value: Substring) -> String? {
    guard value.contains("\\") else { return String(value) }
    var result = ""
    var iterator = value.makeIterator()
    while let character = iterator.next() {
      guard character == "\\" else {
        result.append(character)
        continue
      }
      switch iterator.next() {
      case "n": result.append("\n")
      case "\\": result.append("\\")
      case "t": result.append("\t")
      default: return nil
      }
    }
    return result
  }
}

/// Looks up `Key: value` fields by name and converts them, reporting the file, the key and
/// its line when a field is missing or does not convert.
struct FieldReader {
  let file: String
  let fields: [Substring: (value: Substring, line: Int)]

  /// The converted value of `key`; throws when it is absent or `convert` returns nil.
  func require<T>(_ key: Substring, _ convert: (Substring) -> T?) throws(CKError) -> T {
    guard let field = fields[key] else { throw procParseError(file, "no \(key) field") }
    guard let value = convert(field.value) else {
      throw procParseError(file, line: field.line, "\(key):\t\(field.value)", "bad \(key)")
    }
    return value
  }

  /// The converted value of `key`, or nil when it is absent; throws when it does not convert.
  func optional<T>(_ key: Substring, _ convert: (Substring) -> T?) throws(CKError) -> T? {
    guard fields[key] != nil else { return nil }
    return try require(key, convert)
  }
}
