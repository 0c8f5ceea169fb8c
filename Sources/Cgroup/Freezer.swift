import Glibc
import Linux

/// What a freeze did.
public struct FreezeReport: Sendable {
  /// Threads in the subtree once frozen.
  public var threads: Int
  public var processes: Int
  /// Seconds from the request to the whole subtree reported frozen (the count of tasks
  /// is taken afterwards and not included).
  public var seconds: Double
  /// The group was frozen already; nothing was written.
  public var wasFrozen: Bool
}

/// A thread that did not freeze in time, for the error message.
public struct UnfrozenTask: Sendable, CustomStringConvertible {
  public var tid: Int32
  public var comm: String
  public var state: Character
  public var waitChannel: String?
  public var cgroup: String

  public var description: String {
    "\(tid) (\(comm), state \(state)\(waitChannel.map { ", in \($0)" } ?? ""), cgroup \(cgroup))"
  }
}

/// Freezes and thaws a cgroup subtree: v2 through `cgroup.freeze` and `cgroup.events`, v1
/// through the freezer controller's `freezer.state`. Both freeze descendants and tasks
/// forked while freezing (the kernel propagates the state), so one write at the top is
/// race-free against forks.
public enum Freezer {
  /// Freezes `cgroup` and its subtree, waiting until the kernel reports it frozen. When that
  /// does not happen within `timeout` seconds, thaws it back and throws an error naming the
  /// threads that did not freeze.
  public static func freeze(_ cgroup: Cgroup, timeout: Double) throws -> FreezeReport {
    try checkFreezable(cgroup)
    let start = monotonicNow()
    let wasFrozen = try isFrozen(cgroup)
    if !wasFrozen {
      try PseudoFile.write(controlFile(cgroup), cgroup.version == .v2 ? "1" : "FROZEN")
      if try !waitUntilSettled(cgroup, deadline: start + timeout) {
        let stuck = (try? unfrozenTasks(cgroup)) ?? []
        try? thaw(cgroup)
        let list = stuck.prefix(10).map(\.description).joined(separator: "; ")
        let more = stuck.count > 10 ? " and \(stuck.count - 10) more" : ""
        throw CKError(
          .failed,
          "\(cgroup.path) did not freeze within \(formatSeconds(timeout)); thawed it again. "
            + (stuck.isEmpty ? "No single task was found stuck" : "Not frozen: \(list)\(more)"),
          hint: "tasks in uninterruptible sleep (state D) cannot freeze; retry later or raise --timeout")
      }
    }
    let seconds = monotonicNow() - start
    let processes = try cgroup.processes()
    return FreezeReport(
      threads: processes.reduce(0) { $0 + $1.threads.count }, processes: processes.count,
      seconds: seconds, wasFrozen: wasFrozen)
  }

  /// Waits until one walk over `cgroup` and its subtree finds every member frozen without
  /// waiting. A fork that was in flight when the top reported frozen adds a task that freezes
  /// a moment later; its cgroup and every ancestor read unfrozen until it has, so a walk that
  /// had to wait anywhere starts over from the top.
  static func waitUntilSettled(_ cgroup: Cgroup, deadline: Double) throws -> Bool {
    while true {
      var waited = false
      for member in try cgroup.subtree() {
        if try isFrozen(member) { continue }
        waited = true
        guard try waitUntil(frozen: true, member, deadline: deadline) else { return false }
      }
      if !waited { return true }
    }
  }

  /// Thaws `cgroup` and every descendant that was frozen on its own.
  public static func thaw(_ cgroup: Cgroup) throws {
    try checkFreezable(cgroup)
    for member in try cgroup.subtree() where try selfFrozen(member) {
      try PseudoFile.write(controlFile(member), member.version == .v2 ? "0" : "THAWED")
    }
    _ = try waitUntil(frozen: false, cgroup, deadline: monotonicNow() + 5)
  }

  /// True when the kernel reports the whole subtree of `cgroup` frozen.
  public static func isFrozen(_ cgroup: Cgroup) throws -> Bool {
    switch cgroup.version {
    case .v2: return try events(cgroup)["frozen"] == "1"
    case .v1: return try PseudoFile.read(cgroup.file("freezer.state")).hasPrefix("FROZEN")
    }
  }

  /// Refuses what cannot be frozen: a v1 hierarchy without freezer, a root cgroup.
  public static func checkFreezable(_ cgroup: Cgroup) throws(CKError) {
    if cgroup.version == .v1 && !cgroup.hierarchy.canFreeze {
      let freezerMount = (try? CgroupMounts.current())?.v1("freezer")?.mountPoint
      throw CKError(
        .badInput,
        "\(cgroup.path) is in a cgroup v1 hierarchy without the freezer controller (\(cgroup.hierarchy.label))",
        hint: freezerMount.map { "use the freezer hierarchy, e.g. \($0)/\(cgroup.relativePath)" }
          ?? "mount the freezer controller or use cgroup v2")
    }
    if cgroup.isRoot {
      throw CKError(
        .badInput, "\(cgroup.path) is the root cgroup of its hierarchy, which the kernel cannot freeze",
        hint: "put the container in a child cgroup")
    }
  }

  // MARK: - Internals

  static func controlFile(_ cgroup: Cgroup) -> String {
    cgroup.file(cgroup.version == .v2 ? "cgroup.freeze" : "freezer.state")
  }

  /// Whether this cgroup itself was asked to freeze (not merely an ancestor).
  static func selfFrozen(_ cgroup: Cgroup) throws -> Bool {
    switch cgroup.version {
    case .v2: return try PseudoFile.read(cgroup.file("cgroup.freeze")).hasPrefix("1")
    case .v1:
      return try PseudoFile.readIfExists(cgroup.file("freezer.self_freezing"))?.hasPrefix("1") ?? false
    }
  }

  /// `cgroup.events` as key → value.
  static func events(_ cgroup: Cgroup) throws -> [String: String] {
    parseKeyValues(try PseudoFile.read(cgroup.file("cgroup.events")))
  }

  static func parseKeyValues(_ text: String) -> [String: String] {
    var result: [String: String] = [:]
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: " ", maxSplits: 1)
      if parts.count == 2 { result[String(parts[0])] = String(parts[1]) }
    }
    return result
  }

  /// Waits until the subtree is (un)frozen or the deadline passes. v2 sleeps in poll(2) on
  /// `cgroup.events`, which the kernel notifies on every change of `frozen`; v1 has no such
  /// notification, so it re-reads `freezer.state` with a backoff from 0.1 ms to 10 ms.
  static func waitUntil(frozen: Bool, _ cgroup: Cgroup, deadline: Double) throws -> Bool {
    switch cgroup.version {
    case .v2:
      let path = cgroup.file("cgroup.events")
      let events = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
      var buffer = [UInt8](repeating: 0, count: 512)
      while true {
        let n = try syscallChecked("pread", path) {
          buffer.withUnsafeMutableBytes { pread(events.raw, $0.baseAddress, $0.count, 0) }
        }
        let state = parseKeyValues(String(decoding: buffer[0..<n], as: UTF8.self))["frozen"]
        if state == (frozen ? "1" : "0") { return true }
        let remaining = deadline - monotonicNow()
        if remaining <= 0 { return false }
        // The kernel notifies a change of cgroup.events at most once per 20 ms
        // (CGROUP_FILE_NOTIFY_MIN_INTV): the notice of a thaw right after a freeze came
        // 13-16 ms after the file said so (measured). A freeze or thaw that follows another
        // closely would be heard that late: the file is read again every millisecond.
        var pfd = pollfd(fd: events.raw, events: Int16(POLLPRI), revents: 0)
        _ = poll(&pfd, 1, Int32(min(remaining * 1000 + 1, 1)))
      }
    case .v1:
      let path = cgroup.file("freezer.state")
      var pause = 0.0001
      while true {
        let state = try PseudoFile.read(path)
        if frozen ? state.hasPrefix("FROZEN") : state.hasPrefix("THAWED") { return true }
        let remaining = deadline - monotonicNow()
        if remaining <= 0 { return false }
        sleepSeconds(min(pause, remaining))
        pause = min(pause * 2, 0.01)
      }
    }
  }

  /// The threads of the subtree that may have kept it from freezing.
  static func unfrozenTasks(_ cgroup: Cgroup) throws -> [UnfrozenTask] {
    var result: [UnfrozenTask] = []
    for member in try cgroup.subtree() {
      // A cgroup the kernel reports frozen holds no culprit. v1 freezes sleeping tasks in
      // place (their wait channel stays where they slept), so in a cgroup that is still
      // FREEZING only the tasks parked in __refrigerator are known to be frozen.
      if try isFrozen(member) { continue }
      for tid in try member.threadIDs() {
        let channel = ProcInfo.waitChannel(tid: tid)
        if let channel, frozenWaitChannels.contains(channel) { continue }
        guard let stat = ProcStat.read(pid: tid) else { continue }
        result.append(
          UnfrozenTask(
            tid: tid, comm: stat.comm, state: stat.state, waitChannel: channel, cgroup: member.relativePath))
      }
    }
    // Tasks in uninterruptible sleep are the likely culprits: list them first.
    return result.sorted { ($0.state == "D" ? 0 : 1, $0.tid) < ($1.state == "D" ? 0 : 1, $1.tid) }
  }

  /// Where the kernel parks frozen tasks: v2 in do_freezer_trap, v1 in __refrigerator.
  static let frozenWaitChannels: Set<String> = ["do_freezer_trap", "__refrigerator"]
}

/// CLOCK_MONOTONIC in seconds.
public func monotonicNow() -> Double {
  var ts = timespec()
  clock_gettime(CLOCK_MONOTONIC, &ts)
  return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

func sleepSeconds(_ seconds: Double) {
  var ts = timespec(tv_sec: Int(seconds), tv_nsec: Int((seconds - Double(Int(seconds))) * 1e9))
  var remaining = timespec()
  while nanosleep(&ts, &remaining) < 0 && errno == EINTR { ts = remaining }
}

func formatSeconds(_ seconds: Double) -> String {
  seconds < 1 ? "\(Int(seconds * 1000)) ms" : "\(seconds) s"
}
