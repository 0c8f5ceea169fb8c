import CKShim
import Foundation
import Glibc

/// What /proc and the kernel show of a frozen container, read without any of ckcont's own
/// capture code and normalised so that two snapshots of the same container compare equal:
/// tasks are named by their pid in the container's pid namespace, identities that change
/// with every run (inode numbers, page frames, mount and peer group ids) become relations
/// among the container's own tasks, descriptors and mounts, and what is not state at all
/// (times, host pids) is left out as ``IgnoredState`` lists.
///
/// Each fact is one entry, `subject: field` -> value, e.g. `task 1 fd 4: flags` ->
/// `02004002`; ``diff(_:_:)`` prints one line per entry that differs.
public struct StateSnapshot: Sendable {
  /// `subject: field` -> value.
  public private(set) var entries: [String: String] = [:]
  /// `task N map A-B: contents` -> each page's hash, to tell which pages differ.
  var pageDigests: [String: [UInt64]] = [:]
  /// `task N map A-B: contents` -> the bytes of small private writable mappings (stacks,
  /// data, TLS), to show where a page differs.
  var mappingBytes: [String: [UInt8]] = [:]

  mutating func record(_ subject: String, _ field: String, _ value: String) {
    entries["\(subject): \(field)"] = value
  }

  /// Freezes the cgroup subtree, reads every task in it (and every descendant of theirs,
  /// zombies included), and thaws it again unless `leaveFrozen` (for a dump of exactly this
  /// state: a thawed task runs on, and one whose sleep the freeze interrupted resumes it as
  /// restart_syscall, which a dump cannot carry; see KnownDifferences).
  public static func take(cgroup: ScratchCgroup, leaveFrozen: Bool = false) throws -> StateSnapshot {
    // ptrace reaches a task frozen by cgroup v2 (its stop counts as frozen and it goes back
    // to the freezer without leaving the kernel), never one frozen by v1.
    let early = cgroup.version == .v1 ? RseqAreas.read(cgroup.allPids()) : [:]
    try cgroup.freeze()
    defer { if !leaveFrozen { cgroup.thaw() } }
    let rseq = cgroup.version == .v1 ? early : RseqAreas.read(cgroup.allPids())
    return try take(pids: cgroup.allPids(), rseq: rseq)
  }

  /// Reads the tasks `pids` (thread-group leaders of a frozen container) and their
  /// descendants; `rseq`: ``RseqAreas`` of the tasks, whose rewritten words are not hashed.
  public static func take(pids: [Int32], rseq: [Int32: [UInt64]] = [:]) throws -> StateSnapshot {
    let tasks = try SnapshotTasks(pids)
    var snapshot = StateSnapshot()
    snapshot.readTasks(tasks)
    snapshot.readMemory(tasks, rseq: rseq)
    snapshot.readFiles(tasks)
    snapshot.readNamespaces(tasks)
    return snapshot
  }

  /// One line per entry that differs: `task 1 fd 4: flags 02004002 -> 02000002`.
  public static func diff(_ before: StateSnapshot, _ after: StateSnapshot) -> [String] {
    let keys = Set(before.entries.keys).union(after.entries.keys).sorted(by: naturalOrder)
    return keys.compactMap { key in
      let old = before.entries[key]
      let new = after.entries[key]
      guard old != new else { return nil }
      var line = "\(key) \(old ?? "(none)") -> \(new ?? "(none)")"
      if let pages = before.pageDigests[key], let other = after.pageDigests[key], pages.count == other.count {
        let differing = pages.indices.filter { pages[$0] != other[$0] }
        line +=
          " (\(differing.count) pages differ: "
          + differing.prefix(8).map { "+" + hex(UInt64($0) * pageSize) }.joined(separator: " ")
          + (differing.count > 8 ? " ..." : "") + ")"
        if let old = before.mappingBytes[key], let new = after.mappingBytes[key], old.count == new.count {
          line += wordsDiffering(old, new)
        }
      }
      return line
    }
  }

  /// The first 8-byte words that differ between two copies of a mapping.
  static func wordsDiffering(_ old: [UInt8], _ new: [UInt8]) -> String {
    let words = stride(from: 0, to: old.count, by: 8).filter { old[$0..<$0 + 8] != new[$0..<$0 + 8] }
    func word(_ bytes: [UInt8], _ at: Int) -> String { bytes[at..<at + 8].map { String(format: "%02x", $0) }.joined() }
    return " words: "
      + words.prefix(6).map { "+\(hex(UInt64($0))) \(word(old, $0))->\(word(new, $0))" }.joined(separator: " ")
      + (words.count > 6 ? " and \(words.count - 6) more" : "")
  }

  /// The entries as text, one `key value` a line in order: what
  /// `CKCONT_TEST_SNAPSHOTS=DIR` writes for each round trip, to look at by hand.
  public var text: String {
    entries.keys.sorted(by: Self.naturalOrder).map { "\($0) \(entries[$0]!)" }.joined(separator: "\n") + "\n"
  }

  /// Orders `task 2` before `task 10`: digits compare as numbers.
  static func naturalOrder(_ a: String, _ b: String) -> Bool {
    a.compare(b, options: .numeric) == .orderedAscending
  }
}

/// A task of the snapshot: its pid here and in the container, and its threads.
struct SnapshotTask {
  var hostPid: Int32
  /// The pid in the container's pid namespace.
  var pid: Int32
  /// (tid here, tid in the container), the leader first.
  var threads: [(host: Int32, tid: Int32)]
  var isZombie: Bool
  var name: String { "task \(pid)" }
}

/// The tasks of a frozen container, and the translation of this host's pids into the
/// container's: the level of NSpid that belongs to the container's pid namespace (the
/// innermost of its root task's; the levels outside it change with every restore).
struct SnapshotTasks {
  var tasks: [SnapshotTask] = []
  /// NSpid index of the container's pid namespace.
  var level = 0
  /// Host pid or tid -> its pid in the container.
  var containerPid: [Int32: Int32] = [:]

  init(_ pids: [Int32]) throws {
    // The cgroup lists no zombies: add every descendant through the children lists.
    var all = Set(pids)
    var queue = pids
    while let pid = queue.popLast() {
      for tid in Self.threadIDs(pid) {
        let children = ProcFile.read("/proc/\(pid)/task/\(tid)/children") ?? ""
        for child in children.split(separator: " ").compactMap({ Int32($0) }) where all.insert(child).inserted {
          queue.append(child)
        }
      }
    }
    let parents = Dictionary(uniqueKeysWithValues: all.map { ($0, ProcStat.read("/proc/\($0)/stat")?.ppid ?? 0) })
    let roots = all.filter { !all.contains(parents[$0] ?? 0) }
    guard let root = roots.min(by: { Self.nsPids($0).count < Self.nsPids($1).count }) else {
      throw TestFailure("snapshot: no task in \(pids)")
    }
    level = max(Self.nsPids(root).count - 1, 0)
    for pid in all.sorted() {
      let status = ProcFile.status("/proc/\(pid)/status")
      let levels = Self.nsPids(pid)
      guard levels.count > level else { continue }
      let threads = Self.threadIDs(pid).map { tid in
        let ids = ProcFile.status("/proc/\(pid)/task/\(tid)/status")["NSpid"].map(Self.numbers) ?? []
        return (host: tid, tid: ids.count > level ? ids[level] : -1)
      }
      let task = SnapshotTask(
        hostPid: pid, pid: levels[level], threads: threads.sorted { $0.tid < $1.tid },
        isZombie: status["State"]?.hasPrefix("Z") ?? false)
      tasks.append(task)
      for thread in threads { containerPid[thread.host] = thread.tid }
    }
    tasks.sort { $0.pid < $1.pid }
  }

  /// `task N` for a host pid of the container, `outside` for any other (0: `none`).
  func name(hostPid: Int32) -> String {
    if hostPid == 0 { return "none" }
    return containerPid[hostPid].map { "task \($0)" } ?? "outside"
  }

  /// The container-level pids of an NSpid-like status line, from the container's level in:
  /// the host's levels above it change with every restore.
  func innerLevels(_ line: String?) -> String {
    let ids = line.map(Self.numbers) ?? []
    return ids.count > level ? ids[level...].map(String.init).joined(separator: " ") : "(outside)"
  }

  static func threadIDs(_ pid: Int32) -> [Int32] {
    ((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []).compactMap { Int32($0) }
      .sorted()
  }

  static func nsPids(_ pid: Int32) -> [Int32] {
    ProcFile.status("/proc/\(pid)/status")["NSpid"].map(numbers) ?? []
  }

  static func numbers(_ text: String) -> [Int32] {
    text.split(whereSeparator: { $0 == " " || $0 == "\t" }).compactMap { Int32($0) }
  }
}

/// Small readers of /proc files, independent of ckcont's parsers.
enum ProcFile {
  /// The whole file, or nil when it cannot be read.
  static func read(_ path: String) -> String? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let n = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
      if n < 0 && errno == EINTR { continue }
      if n < 0 { return nil }
      if n == 0 { break }
      bytes += buffer[0..<n]
    }
    return String(decoding: bytes, as: UTF8.self)
  }

  /// `Key:\tvalue` lines (status) as a dictionary.
  static func status(_ path: String) -> [String: String] {
    var result: [String: String] = [:]
    for line in (read(path) ?? "").split(separator: "\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      result[String(line[..<colon])] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return result
  }

  /// readlink(2), or `(unreadable: <errno>)`.
  static func link(_ path: String) -> String {
    var buffer = [CChar](repeating: 0, count: 4097)
    let n = readlink(path, &buffer, 4096)
    guard n >= 0 else { return "(unreadable: \(String(cString: strerror(errno))))" }
    return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }
}

/// The fields of /proc/<pid>/stat after the command name, numbered as in proc(5).
struct ProcStat {
  var fields: [String]
  var comm: String

  static func read(_ path: String) -> ProcStat? {
    guard let text = ProcFile.read(path)?.trimmingCharacters(in: .newlines), let open = text.firstIndex(of: "("),
      let close = text.lastIndex(of: ")")
    else { return nil }
    let rest = text[text.index(after: close)...].split(separator: " ").map(String.init)
    return ProcStat(fields: rest, comm: String(text[text.index(after: open)..<close]))
  }

  /// Field `number` of proc(5) (3 is the state).
  subscript(number: Int) -> String { number - 3 < fields.count ? fields[number - 3] : "" }
  var ppid: Int32 { Int32(self[4]) ?? 0 }
}

/// Equivalence classes of things (descriptors, pages, mounts) by an identity that changes
/// from run to run: each member is recorded with the other members of its class, so that
/// two snapshots compare the relation, not the identities.
struct Relation<Identity: Hashable> {
  private var classes: [Identity: [String]] = [:]

  mutating func add(_ member: String, _ identity: Identity) { classes[identity, default: []].append(member) }

  /// Each member of a class with more than one member -> the others, sorted.
  var sharing: [(member: String, others: String)] {
    classes.values.filter { $0.count > 1 }.flatMap { members in
      members.map { member in
        (member, members.filter { $0 != member }.sorted(by: StateSnapshot.naturalOrder).joined(separator: ", "))
      }
    }
  }
}
