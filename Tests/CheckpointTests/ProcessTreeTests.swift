import Foundation
import Glibc
import TestSupport
import Testing

/// Whole process trees: what /proc says about every process (pid, parent, group, session,
/// state, a zombie's exit status) is the same before the dump and after the restore.
@Suite(.serialized)
struct ProcessTreeTests {
  @Test func fiftyProcessesWithSessionsGroupsOrphansAndAZombieComeBackAsTheyWere() throws {
    let container = try FixtureContainer("forest")
    defer { container.destroy() }
    try container.waitReady()
    let initPid = try #require(container.cgroup.allPids().first { ProcessView.innerPid($0) == 1 })
    let before = ProcessView.tree(from: initPid)
    #expect(before.count == 51, "50 live processes and a zombie: \(before)")
    #expect(before.values.filter { $0.hasSuffix("Z 7") }.count == 1, "\(before)")
    let dump = container.dump()
    try #require(dump.status == 0, "\(dump.output)")
    try container.waitEmpty()
    // inspect shows the tree readably: each process under its parent, the zombie included.
    let inspect = run([TestPaths.ckcont, "inspect", container.bundlePath])
    #expect(inspect.status == 0, "\(inspect.output)")
    let treeLines = inspect.stdout.split(separator: "\n").filter {
      $0.hasPrefix("  ") && $0.contains(" sid ") || $0.contains("zombie,")
    }
    #expect(treeLines.count == 51, "\(inspect.stdout)")
    #expect(inspect.stdout.contains("  1 forest: pgid 0 sid 0, 1 thread(s)"), "\(inspect.stdout)")
    #expect(inspect.stdout.contains("zombie, exited 7"))
    #expect(inspect.stdout.contains("session leader"))
    let restore = try container.restore()
    try #require(restore.status == 0, "\(restore.output)")
    let after = ProcessView.tree(from: container.restoredPid)
    #expect(after == before)
    #expect(try container.terminateRestored() == 0, "\(container.log)")
    #expect(container.log.contains("PASS forest"), "\(container.log)")
  }
}

/// /proc as a pid namespace's processes see it.
enum ProcessView {
  /// The fields of /proc/<pid>/status, by name.
  static func status(_ pid: Int32) -> [String: [String]] {
    let text = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
    var fields: [String: [String]] = [:]
    for line in text.split(separator: "\n") {
      let parts = line.split(separator: ":", maxSplits: 1)
      if parts.count == 2 { fields[String(parts[0])] = parts[1].split(whereSeparator: \.isWhitespace).map(String.init) }
    }
    return fields
  }

  static func innerPid(_ pid: Int32) -> Int32? { status(pid)["NSpid"]?.last.flatMap { Int32($0) } }

  /// Every process below `root` (host pid), found through /proc/<pid>/task/*/children, as
  /// "inner pid -> inner ppid, pgid, sid, state letter, exit code (zombies)".
  static func tree(from root: Int32) -> [Int32: String] {
    var hostToInner: [Int32: Int32] = [:]
    var rows: [(host: Int32, fields: [String: [String]])] = []
    var queue = [root]
    while let pid = queue.popLast() {
      let fields = status(pid)
      guard let inner = fields["NSpid"]?.last.flatMap({ Int32($0) }) else { continue }
      hostToInner[pid] = inner
      rows.append((pid, fields))
      let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/task")) ?? []
      for tid in tasks {
        let children = (try? String(contentsOfFile: "/proc/\(pid)/task/\(tid)/children", encoding: .utf8)) ?? ""
        queue += children.split(separator: " ").compactMap { Int32($0) }
      }
    }
    var view: [Int32: String] = [:]
    for (host, fields) in rows {
      let inner = hostToInner[host] ?? 0
      let ppid = host == root ? 0 : hostToInner[Int32(fields["PPid"]?.first ?? "") ?? 0] ?? -1
      let state = fields["State"]?.first ?? "?"
      let stat = (try? String(contentsOfFile: "/proc/\(host)/stat", encoding: .utf8)) ?? ""
      let exitCode = Int(stat.split(separator: " ").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "") ?? -1
      let exit = state == "Z" ? " \(exitCode >> 8 & 0xff)" : ""
      view[inner] =
        "ppid \(ppid) pgid \(fields["NSpgid"]?.last ?? "?") sid \(fields["NSsid"]?.last ?? "?") \(state == "Z" ? "Z" : "live")\(exit)"
    }
    return view
  }
}
