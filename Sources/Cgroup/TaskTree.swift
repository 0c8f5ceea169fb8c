import Linux

/// One process of a cgroup subtree as `ckcont ps` shows it.
public struct TaskEntry: Codable, Equatable, Sendable {
  public var pid: Int32
  public var ppid: Int32
  public var pgid: Int32
  public var sid: Int32
  public var state: String
  public var threads: [Int32]
  /// The cgroup relative to the one asked about (`.` for itself).
  public var cgroup: String
  public var comm: String
  public var command: String
  /// Depth in the process tree of the subtree: 0 for a task whose parent is outside it.
  public var depth: Int
}

/// The processes of a cgroup subtree arranged as a process tree.
public enum TaskTree {
  /// Reads every process of the subtree from /proc; tasks that vanish meanwhile are skipped.
  public static func read(_ cgroup: Cgroup) throws -> [TaskEntry] {
    let entries: [TaskEntry] = try cgroup.processes().compactMap { process in
      guard let stat = ProcStat.read(pid: process.pid) else { return nil }
      return TaskEntry(
        pid: process.pid, ppid: stat.ppid, pgid: stat.pgrp, sid: stat.session, state: String(stat.state),
        threads: process.threads, cgroup: process.cgroup.relative(to: cgroup.path), comm: stat.comm,
        command: ProcInfo.commandLine(pid: process.pid), depth: 0)
    }
    return arrange(entries)
  }

  /// Orders entries depth-first (children after their parent, by pid) and sets `depth`.
  /// Roots are the entries whose parent is not among them.
  public static func arrange(_ entries: [TaskEntry]) -> [TaskEntry] {
    let pids = Set(entries.map(\.pid))
    var children: [Int32: [TaskEntry]] = [:]
    for entry in entries { children[entry.ppid, default: []].append(entry) }
    var result: [TaskEntry] = []
    result.reserveCapacity(entries.count)
    var stack: [(TaskEntry, Int)] = entries.filter { !pids.contains($0.ppid) || $0.ppid == $0.pid }
      .sorted { $0.pid > $1.pid }.map { ($0, 0) }
    while let (entry, depth) = stack.popLast() {
      var placed = entry
      placed.depth = depth
      result.append(placed)
      let kids = (children[entry.pid] ?? []).filter { $0.pid != entry.pid }.sorted { $0.pid > $1.pid }
      stack.append(contentsOf: kids.map { ($0, depth + 1) })
    }
    return result
  }
}
