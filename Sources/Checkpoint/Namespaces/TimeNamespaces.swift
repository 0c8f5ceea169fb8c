import Bundle
import CKShim
import Glibc
import Linux

/// Time namespaces a container made, dumped and made again (CLONE_NEWTIME).
///
/// A process enters a time namespace only by being forked after its parent unshared one
/// (the offsets can be written only until then), so the dump records, per process, its time
/// namespace and the one its children get, and the offsets of each. The restore makes the
/// same shape: the root is cloned from a ckcont thread that unshared a namespace first; a
/// process whose children got another namespace unshares one (by a remote call) right after
/// it is created, before it forks them; ckcont writes the offsets in between.
///
/// The offsets keep each clock going from where it was counting the time that passed in
/// between (by CLOCK_REALTIME), so a container moved to a host with another uptime keeps its
/// clocks; on the host that dumped it they come out as they were.
enum TimeNamespaces {
  /// Gives every task's entry its time namespaces, and returns their offsets: none when all
  /// are the host's. A task whose namespace is not what its parent gives its children is
  /// refused: the restore could not make it so.
  static func assign(_ tasks: inout [Dump.CapturedTask], hostTime: NamespaceID?) throws -> [TimeNamespaceImage] {
    var indices: [NamespaceID: Int] = [:]
    var images: [TimeNamespaceImage] = []
    func index(_ id: NamespaceID?, readFrom pid: Int32) throws -> Int? {
      guard let id, id != hostTime else { return nil }
      if let known = indices[id] { return known }
      images.append(try readOffsets(pid: pid))
      indices[id] = images.count - 1
      return images.count - 1
    }
    // The offsets of a namespace are read where it is the one children get.
    let byPid = Dictionary(uniqueKeysWithValues: tasks.map { ($0.entry.pid, $0) })
    for task in tasks where task.namespaceIDs["time_for_children"] != nil {
      _ = try index(task.namespaceIDs["time_for_children"], readFrom: task.hostPid)
    }
    for position in tasks.indices {
      let task = tasks[position]
      let own = task.namespaceIDs["time"]
      guard own == hostTime || own.map({ indices[$0] != nil }) == true else {
        throw CKError(.failed, "process \(task.hostPid) is in a time namespace ckcont cannot read the offsets of")
      }
      if let parent = byPid[task.entry.ppid], task.entry.ppid != 0, parent.namespaceIDs["time_for_children"] != own {
        throw CKError(
          .failed,
          "process \(task.hostPid) is in another time namespace than its parent \(parent.hostPid) gives its children, which ckcont cannot recreate"
        )
      }
      tasks[position].entry.timeNamespace = own.flatMap { indices[$0] }
      tasks[position].entry.childTimeNamespace = task.namespaceIDs["time_for_children"].flatMap { indices[$0] }
    }
    return images
  }

  /// /proc/<pid>/timens_offsets: the offsets of the namespace the task's children get.
  static func readOffsets(pid: Int32) throws -> TimeNamespaceImage {
    var offsets: [String: Int64] = [:]
    for line in try PseudoFile.read("/proc/\(pid)/timens_offsets").split(separator: "\n") {
      let fields = line.split(separator: " ", omittingEmptySubsequences: true)
      guard fields.count == 3, let seconds = Int64(fields[1]), let nanoseconds = Int64(fields[2]) else { continue }
      offsets[String(fields[0])] = seconds * 1_000_000_000 + nanoseconds
    }
    guard let monotonic = offsets["monotonic"], let boottime = offsets["boottime"] else {
      throw CKError(.failed, "cannot read the time namespace offsets of process \(pid)")
    }
    return TimeNamespaceImage(monotonicOffset: monotonic, boottimeOffset: boottime)
  }

  /// The host's clocks now.
  static func now() -> ClockReadings {
    func read(_ clock: clockid_t) -> Int64 {
      var time = timespec()
      clock_gettime(clock, &time)
      return Int64(time.tv_sec) * 1_000_000_000 + Int64(time.tv_nsec)
    }
    return ClockReadings(
      realtime: read(CLOCK_REALTIME), monotonic: read(CLOCK_MONOTONIC), boottime: read(CLOCK_BOOTTIME))
  }

  /// The offsets that continue the dumped clocks now: the old ones plus how much the host's
  /// clock fell behind or ran ahead of the time that passed. Drift under 10 ms (the same
  /// host) leaves them exactly as they were.
  static func offsets(_ image: TimeNamespaceImage, dumpedAt: ClockReadings?) -> TimeNamespaceImage {
    guard let dumped = dumpedAt else { return image }
    let current = now()
    let passed = current.realtime - dumped.realtime
    func adjusted(_ offset: Int64, _ then: Int64, _ now: Int64) -> Int64 {
      let drift = passed - (now - then)
      return abs(drift) < 10_000_000 ? offset : offset + drift
    }
    return TimeNamespaceImage(
      monotonicOffset: adjusted(image.monotonicOffset, dumped.monotonic, current.monotonic),
      boottimeOffset: adjusted(image.boottimeOffset, dumped.boottime, current.boottime))
  }

  /// Writes offsets to a timens_offsets file (of a task whose children's namespace no task
  /// has entered yet).
  static func write(_ image: TimeNamespaceImage, to path: String) throws {
    func text(_ name: String, _ offset: Int64) -> String {
      // Seconds may be negative; nanoseconds must lie in 0..<1e9.
      var seconds = offset / 1_000_000_000
      var nanoseconds = offset % 1_000_000_000
      if nanoseconds < 0 {
        seconds -= 1
        nanoseconds += 1_000_000_000
      }
      return "\(name) \(seconds) \(nanoseconds)\n"
    }
    let offsets = try OwnedDescriptor(opening: path, flags: O_WRONLY | O_CLOEXEC)
    for line in [text("monotonic", image.monotonicOffset), text("boottime", image.boottimeOffset)] {
      let bytes = Array(line.utf8)
      _ = try syscallChecked("write", "\(path): \(line.dropLast())") { Glibc.write(offsets.raw, bytes, bytes.count) }
    }
  }

  /// Makes the calling thread's future children enter a new time namespace with `image`'s
  /// offsets (the root task, cloned from this thread next).
  static func enterForChildren(_ image: TimeNamespaceImage) throws {
    try syscallChecked("unshare", "CLONE_NEWTIME") { ck_unshare(Int32(CK_CLONE_NEWTIME)) }
    // The kernel has timens_offsets only at /proc/<pid>/, not under /proc/thread-self/ nor
    // /proc/<pid>/task/<tid>/; /proc/<tid>/ (the tid as if it were a pid) is this thread's.
    try write(image, to: "/proc/\(ck_gettid())/timens_offsets")
  }
}
