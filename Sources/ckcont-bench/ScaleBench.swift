// `ckcont-bench scale`: dump and restore time of containers that are big in one dimension
// (tasks, threads, mappings, descriptors: the scale fixture), with the bundle on a tmpfs.
import Cgroup
import Foundation
import Glibc
import Linux

/// One case: `scale <mode> <count>`, and how its time per unit is shown.
struct ScaleCase {
  let mode: String  // tree, threads, mappings or fds
  let count: Int
  var unit: String {
    switch mode {
    case "tree": return "ms/task"
    case "threads": return "ms/thread"
    case "mappings": return "µs/mapping"
    default: return "µs/fd"
    }
  }
  /// Seconds to the unit's ms or µs.
  var scale: Double { mode == "tree" || mode == "threads" ? 1e3 : 1e6 }
  var label: String { "\(mode) \(count)" }

  static let all: [ScaleCase] =
    [1, 10, 100, 500, 1000].map { ScaleCase(mode: "tree", count: $0) }
    + [1, 16, 128].map { ScaleCase(mode: "threads", count: $0) }
    + [1000, 10000].map { ScaleCase(mode: "mappings", count: $0) }
    + [ScaleCase(mode: "fds", count: 1000)]

  /// `MODE:COUNT`, e.g. `tree:500`.
  init?(_ text: String) {
    let parts = text.split(separator: ":")
    guard parts.count == 2, ["tree", "threads", "mappings", "fds"].contains(String(parts[0])),
      let count = Int(parts[1]),
      count > 0
    else { return nil }
    self.init(mode: String(parts[0]), count: count)
  }

  init(mode: String, count: Int) {
    self.mode = mode
    self.count = count
  }
}

func benchScale(fixtures: String, ckcont: String, cases: [ScaleCase]) throws {
  let environment = ProcessInfo.processInfo.environment
  let directory = environment["CKCONT_BENCH_TMPFS"] ?? "/dev/shm"
  let logs = environment["CKCONT_BENCH_LOGS"].flatMap { $0.isEmpty ? nil : $0 }
  let scale = fixtures + "/scale"
  let bench = try ContainerBench(fixtures: fixtures, ckcont: ckcont, directory: directory, programs: [scale])
  print(
    "scale: the scale fixture as a container (cgroup v2, pid 1 of own pid/mnt/uts/ipc namespaces), bundle on tmpfs \(directory)"
  )
  print("  dump and restore s: the whole ckcont command, one run each; per unit: that time divided by the count;")
  print("  tree N: N tasks ten wide (1000: four levels), asleep in sigsuspend; threads N: one process, N-1 threads in")
  print("  FUTEX_WAIT; mappings N: N one-page VMAs of alternating protection, every third page touched; fds N: files")
  print(
    "  (some dup()ed), /dev/null and pipes holding data. Every restore is verified (SIGTERM, the fixture checks, PASS)")
  if let logs { print("  ckcont ran with -v: its logs are in \(logs) (the times include the logging)") }
  // This VM's speed drifts with its host by ±25%: a process round trip measured in the same
  // run tells a slow machine from a slow ckcont.
  let spawn = try medianSpawnSeconds(of: "/bin/true", runs: 101)
  print(String(format: "  machine, same run: /bin/true spawned and reaped in %.2f ms (median of 101)", spawn * 1000))
  print("case              dump s  restore s     dump/unit   restore/unit  unit        result")
  var results: [(ScaleCase, ContainerBench.Cycle)] = []
  for (index, item) in cases.enumerated() {
    var program = [scale, item.mode, "\(item.count)"]
    // The fds case opens files: they go in a directory of their own, removed afterwards.
    let files = "\(directory)/ckcont-bench-\(getpid())-\(index).files"
    if item.mode == "fds" {
      guard mkdir(files, 0o700) == 0 else {
        throw CKError(.failed, "mkdir \(files): \(String(cString: strerror(errno)))")
      }
      program.append(files)
    }
    defer { if item.mode == "fds" { try? FileManager.default.removeItem(atPath: files) } }
    let cycle: ContainerBench.Cycle
    let name = "ckcont-bench-\(getpid())-\(index)-\(item.mode)-\(item.count)"
    do {
      cycle = try bench.cycle(name: name, program: program, pass: "PASS scale", logs: logs)
    } catch {
      cycle = ContainerBench.Cycle(failure: "\(error)")
    }
    results.append((item, cycle))
    func seconds(_ value: Double?) -> String { value.map { String(format: "%.3f", $0) } ?? "-" }
    func perUnit(_ value: Double?) -> String {
      value.map { String(format: "%.2f", $0 * item.scale / Double(item.count)) } ?? "-"
    }
    let row = [
      item.label.padding(toLength: 15, withPad: " ", startingAt: 0),
      seconds(cycle.dumpSeconds).leftPadded(9), seconds(cycle.restoreSeconds).leftPadded(11),
      perUnit(cycle.dumpSeconds).leftPadded(14), perUnit(cycle.restoreSeconds).leftPadded(15),
      "  " + item.unit.padding(toLength: 10, withPad: " ", startingAt: 0),
      "  " + (cycle.failure.map { "FAIL: \($0)" } ?? "PASS"),
    ]
    print(row.joined())
    if let logs, cycle.failure == nil, let phases = restorePhases(inLog: "\(logs)/\(name)-restore.log") {
      // Where the restore's time went, per unit: the phases ckcont -v logs.
      let split = phases.filter { $0.ms >= 0.05 }.map {
        String(format: "%@ %.2f", $0.name, $0.ms / 1e3 * item.scale / Double(item.count))
      }
      print("  restore phases, \(item.unit): " + split.joined(separator: ", "))
    }
    fflush(nil)
  }
  print("")
  print(
    "targets: a 500-task tree dumps in < 0.5 s and restores in < 0.5 s (CRIU 4.2 on this machine: 1.43 s and 0.89 s);")
  print("         10000 mappings dump in < 0.15 s (CRIU: 0.24 s) and restore in < 0.08 s (CRIU: 0.119 s);")
  print("         1000 fds restore in < 0.05 s (CRIU: 0.077 s)")
  func verdict(_ value: Double?, _ limit: Double) -> String {
    guard let value else { return "failed" }
    return String(format: "%.3f s, %@", value, value < limit ? "met" : "missed")
  }
  for (item, cycle) in results where item.mode == "tree" && item.count == 500 {
    print("  tree 500: dump \(verdict(cycle.dumpSeconds, 0.5)), restore \(verdict(cycle.restoreSeconds, 0.5))")
  }
  for (item, cycle) in results where item.mode == "mappings" && item.count == 10000 {
    print(
      "  mappings 10000: dump \(verdict(cycle.dumpSeconds, 0.15)), restore \(verdict(cycle.restoreSeconds, 0.08))")
  }
  for (item, cycle) in results where item.mode == "fds" && item.count == 1000 {
    print("  fds 1000: restore \(verdict(cycle.restoreSeconds, 0.05))")
  }
}

/// The phases of a restore as its -v log sums them up (`restored 1 processes: cgroups 0.0
/// ms, the root 23.4 ms, ...`), in order; nil without that line.
func restorePhases(inLog path: String) -> [(name: String, ms: Double)]? {
  guard let log = try? String(contentsOfFile: path, encoding: .utf8),
    let line = log.split(separator: "\n").last(where: { $0.contains("] restored ") }),
    let colon = line.range(of: "processes: ")
  else { return nil }
  return line[colon.upperBound...].split(separator: ",").compactMap { part in
    let words = part.split(separator: " ")
    guard words.count >= 3, words.last == "ms", let ms = Double(words[words.count - 2]) else { return nil }
    return (words.dropLast(2).joined(separator: " "), ms)
  }
}

extension String {
  /// The string right-aligned in `width` characters.
  func leftPadded(_ width: Int) -> String {
    count >= width ? self : String(repeating: " ", count: width - count) + self
  }
}

/// The median time to posix_spawn `program` and reap it.
func medianSpawnSeconds(of program: String, runs: Int) throws -> Double {
  var times: [Double] = []
  for _ in 0..<runs {
    let started = monotonicNow()
    try Child([program], stdout: "/dev/null").wait(timeout: 10)
    times.append(monotonicNow() - started)
  }
  return times.sorted()[runs / 2]
}
