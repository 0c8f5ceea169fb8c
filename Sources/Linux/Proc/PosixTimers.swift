/// How a POSIX timer delivers its expiry (`sigev_notify`).
public enum TimerNotify: String, Codable, Hashable, Sendable {
  /// SIGEV_SIGNAL, or SIGEV_THREAD_ID when ``PosixTimerInfo/targetIsThread`` is true.
  case signal
  /// SIGEV_NONE: nothing is delivered; the timer is only polled.
  case none
  /// SIGEV_THREAD (glibc implements it with SIGEV_THREAD_ID, so it is rarely seen).
  case thread
}

/// One POSIX timer (timer_create(2)) of `/proc/<pid>/timers`.
public struct PosixTimerInfo: Codable, Hashable, Sendable {
  /// The timer id the process uses (`timer_t`); restore must recreate this exact id.
  public var id: Int32
  /// The signal number delivered on expiry.
  public var signal: Int32
  /// The `sigev_value` passed with the signal, as the pointer-sized value the kernel printed.
  public var sigevValue: UInt64
  public var notify: TimerNotify
  /// The pid (or, for SIGEV_THREAD_ID, the tid) the signal goes to, in the pid namespace of
  /// the /proc that was read.
  public var target: Int32
  /// True when the signal goes to one thread (SIGEV_THREAD_ID, printed `tid.N`).
  public var targetIsThread: Bool
  /// The clock (CLOCK_REALTIME 0, CLOCK_MONOTONIC 1, ...).
  public var clockID: Int32

  /// Creates a timer description.
  public init(
    id: Int32, signal: Int32, sigevValue: UInt64, notify: TimerNotify, target: Int32,
    targetIsThread: Bool, clockID: Int32
  ) {
    self.id = id
    self.signal = signal
    self.sigevValue = sigevValue
    self.notify = notify
    self.target = target
    self.targetIsThread = targetIsThread
    self.clockID = clockID
  }
}

/// Parser for `/proc/<pid>/timers`: four lines per timer (`ID`, `signal`, `notify`, `ClockID`).
/// The file does not show the expiry time or interval: those come from `timer_gettime`.
public enum ProcTimers {
  /// Parses the whole text; an empty file means the process has no POSIX timers.
  public static func parse(_ text: String) throws(CKError) -> [PosixTimerInfo] {
    let lines = text.split(separator: "\n", omittingEmptySubsequences: false)
      .enumerated().filter { !$0.element.isEmpty }
    guard lines.count % 4 == 0 else {
      throw procParseError("timers", "\(lines.count) lines, not four per timer")
    }
    var timers: [PosixTimerInfo] = []
    for first in stride(from: 0, to: lines.count, by: 4) {
      var values: [Substring] = []
      for (offset, key) in ["ID", "signal", "notify", "ClockID"].enumerated() {
        let (index, line) = lines[first + offset]
        guard let field = splitProcField(line), field.key == key else {
          throw procParseError("timers", line: index + 1, line, "expected \(key):")
        }
        values.append(field.value)
      }
      func fail(_ offset: Int, _ reason: String) -> CKError {
        procParseError("timers", line: lines[first + offset].offset + 1, lines[first + offset].element, reason)
      }
      guard let id = Int32(values[0]) else { throw fail(0, "bad ID") }
      // signal: 12/0000000000000005 (signo / sigev_value printed as a pointer)
      let signal = values[1].split(separator: "/")
      guard signal.count == 2, let signo = Int32(signal[0]), let value = UInt64(signal[1], radix: 16)
      else { throw fail(1, "bad signal") }
      // notify: signal/pid.8193, none/pid.8193, signal/tid.8194
      let notify = values[2].split(separator: "/")
      guard notify.count == 2, let kind = TimerNotify(rawValue: String(notify[0])) else {
        throw fail(2, "bad notify")
      }
      let target = notify[1].split(separator: ".")
      guard target.count == 2, target[0] == "pid" || target[0] == "tid", let targetID = Int32(target[1])
      else { throw fail(2, "bad notify target") }
      guard let clock = Int32(values[3]) else { throw fail(3, "bad ClockID") }
      timers.append(
        PosixTimerInfo(
          id: id, signal: signo, sigevValue: value, notify: kind, target: targetID,
          targetIsThread: target[0] == "tid", clockID: clock))
    }
    return timers
  }

  /// Reads and parses the POSIX timers of `pid`.
  public static func read(pid: Int32) throws -> [PosixTimerInfo] {
    try parse(PseudoFile.read("/proc/\(pid)/timers"))
  }
}
