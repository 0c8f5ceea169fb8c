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
  /// VmLck: KiB of memory locked (mlock); absent for a task without memory.
  public var lockedMemoryKiB: UInt64?
}

extension ProcStatus {
  /// Parses the whole text; a malformed or missing field is reported by name and line.
  /// Read straight from the bytes: a dump parses one status per thread.
  public static func parse(_ text: String) throws(CKError) -> ProcStatus {
    try withProcBytes(text) { bytes throws(CKError) in
      var fields: [String: ProcLine] = [:]
      try forEachProcLine(bytes) { line throws(CKError) in
        guard line.start < line.end else { return }
        var cursor = line
        guard let colon = cursor.restBytes.firstIndex(of: UInt8(ascii: ":")) else {
          throw procParseError("status", line: line.number, line.text, "no colon")
        }
        // Keys are short: small strings, no allocation.
        let key = String(decoding: UnsafeBufferPointer(rebasing: cursor.restBytes[..<colon]), as: UTF8.self)
        cursor.position += colon + 1
        if key == "Name" {
          // The name is printed verbatim after one tab: keep its own leading or trailing blanks.
          _ = cursor.skip(UInt8(ascii: "\t"))
        } else {
          cursor.skipBlanks()
        }
        fields[key] = cursor
      }
      let reader = StatusReader(fields: fields)
      let sigQ = try reader.require("SigQ") { value -> (UInt64, UInt64)? in
        guard let queued = value.decimal(), value.skip(UInt8(ascii: "/")), let limit = value.decimal() else {
          return nil
        }
        return (queued, limit)
      }
      return ProcStatus(
        name: try reader.require("Name") { unescapeName(Substring($0.restText)) },
        umask: try reader.require("Umask") { UInt32($0.restText, radix: 8) },
        state: try reader.require("State") { value in
          value.atEnd ? nil : TaskState(rawValue: String(UnicodeScalar(value.bytes[value.position])))
        },
        tgid: try reader.require("Tgid") { $0.int32() },
        pid: try reader.require("Pid") { $0.int32() },
        ppid: try reader.require("PPid") { $0.int32() },
        tracerPid: try reader.require("TracerPid") { $0.int32() },
        uid: try reader.require("Uid", parseIDs),
        gid: try reader.require("Gid", parseIDs),
        groups: try reader.require("Groups") { $0.decimals().map { $0.compactMap { UInt32(exactly: $0) } } },
        nsTgid: try reader.require("NStgid") { $0.int32s() },
        nsPid: try reader.require("NSpid") { $0.int32s() },
        nsPgid: try reader.require("NSpgid") { $0.int32s() },
        nsSid: try reader.require("NSsid") { $0.int32s() },
        isKernelThread: try reader.optional("Kthread") { $0.flag() },
        threads: try reader.require("Threads") { $0.whole().flatMap { Int(exactly: $0) } },
        queuedSignals: sigQ.0,
        queuedSignalsLimit: sigQ.1,
        sigPnd: try reader.require("SigPnd") { $0.mask() },
        shdPnd: try reader.require("ShdPnd") { $0.mask() },
        sigBlk: try reader.require("SigBlk") { $0.mask() },
        sigIgn: try reader.require("SigIgn") { $0.mask() },
        sigCgt: try reader.require("SigCgt") { $0.mask() },
        capInh: try reader.require("CapInh") { $0.mask() },
        capPrm: try reader.require("CapPrm") { $0.mask() },
        capEff: try reader.require("CapEff") { $0.mask() },
        capBnd: try reader.require("CapBnd") { $0.mask() },
        capAmb: try reader.require("CapAmb") { $0.mask() },
        noNewPrivs: try reader.require("NoNewPrivs") { $0.flag() },
        seccomp: try reader.require("Seccomp") { $0.whole().flatMap { $0 <= 2 ? Int($0) : nil } },
        seccompFilters: try reader.optional("Seccomp_filters") { $0.whole().flatMap { Int(exactly: $0) } },
        cpusAllowed: try reader.require("Cpus_allowed_list") { parseCPUList(Substring($0.restText)) },
        lockedMemoryKiB: try reader.optional("VmLck") { $0.decimal() })
    }
  }

  /// Reads and parses the status of `pid` (a process or, via `/proc/<pid>/task/<tid>`, a thread
  /// — pass the thread id: /proc accepts thread ids at the top level too).
  public static func read(pid: Int32) throws -> ProcStatus {
    try parse(PseudoFile.read("/proc/\(pid)/status"))
  }

  /// `Uid:	0	0	0	0`: real, effective, saved, filesystem.
  static func parseIDs(_ value: inout ProcLine) -> TaskIDs? {
    guard let ids = value.decimals(), ids.count == 4, ids.allSatisfy({ $0 <= UInt32.max }) else { return nil }
    return TaskIDs(
      real: UInt32(ids[0]), effective: UInt32(ids[1]), saved: UInt32(ids[2]), filesystem: UInt32(ids[3]))
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

/// Looks up the fields of a status file by name and converts them from their bytes,
/// reporting the key and its line when a field is missing or does not convert.
private struct StatusReader {
  let fields: [String: ProcLine]

  /// The converted value of `key`; throws when it is absent or `convert` returns nil.
  func require<T>(_ key: String, _ convert: (inout ProcLine) -> T?) throws(CKError) -> T {
    guard var value = fields[key] else { throw procParseError("status", "no \(key) field") }
    let line = value
    guard let converted = convert(&value) else {
      throw procParseError("status", line: line.number, line.text, "bad \(key)")
    }
    return converted
  }

  /// The converted value of `key`, or nil when it is absent; throws when it does not convert.
  func optional<T>(_ key: String, _ convert: (inout ProcLine) -> T?) throws(CKError) -> T? {
    guard fields[key] != nil else { return nil }
    return try require(key, convert)
  }
}

extension ProcLine {
  /// The rest of the line as text.
  var restText: String { String(decoding: restBytes, as: UTF8.self) }

  /// A decimal number that is the whole rest of the line (trailing blanks allowed).
  mutating func whole() -> UInt64? {
    guard let value = decimal() else { return nil }
    skipBlanks()
    return atEnd ? value : nil
  }

  mutating func int32() -> Int32? { whole().flatMap { Int32(exactly: $0) } }

  /// Blank-separated decimal numbers to the end of the line; none is an empty list
  /// (`Groups:` of a task without supplementary groups is a tab and a space).
  mutating func decimals() -> [UInt64]? {
    var result: [UInt64] = []
    skipBlanks()
    while !atEnd {
      guard let value = decimal() else { return nil }
      result.append(value)
      guard skipBlanks() || atEnd else { return nil }
    }
    return result
  }

  mutating func int32s() -> [Int32]? {
    guard let values = decimals() else { return nil }
    let narrowed = values.compactMap { Int32(exactly: $0) }
    return narrowed.count == values.count ? narrowed : nil
  }

  /// A signal or capability mask: exactly 16 hex digits.
  mutating func mask() -> UInt64? {
    let before = position
    guard let value = hex(), position - before == 16 else { return nil }
    skipBlanks()
    return atEnd ? value : nil
  }

  /// `0` or `1`.
  mutating func flag() -> Bool? {
    switch whole() {
    case 0: false
    case 1: true
    default: nil
    }
  }
}
