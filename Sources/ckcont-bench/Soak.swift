// `ckcont-bench soak`: one mixed container through N dumps with the real ckcont binary, odd
// cycles `dump --leave-running`, even ones a full dump (which kills it) and a restore, with
// ckcont's own resources, the container's and the host's measured after cycle 2 (the first
// row with every command run once) and every hundred cycles. Whatever grows from that first
// row to the last is a leak (issue 20). Scripts/soak runs it.
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// The three commands a soak runs, each measured apart.
enum SoakStep: String, CaseIterable {
  case leaveRunning = "dump --leave-running"
  case dump = "dump"
  case restore = "restore"
}

/// What one ckcont command used: its peak resident memory (wait4's `ru_maxrss`, its own and
/// that of children it reaped) and the descriptors still open at its exit
/// (CKCONT_RESOURCE_REPORT).
struct StepUsage {
  var peakKiB = 0
  var descriptors = 0
}

/// The container's size: what a dump or restore that leaves something in it would change.
struct ContainerCounts: Equatable {
  var processes = 0
  var threads = 0
  var descriptors = 0
  var mappings = 0
  var residentKiB = 0
}

/// What the host holds that a leaking ckcont would add to: cgroups under the soak's parent;
/// the mounts and the paths below /run, /tmp and /dev/shm of the soak's mount namespace
/// (``isolateMounts()``); processes outside the container (pid and name), and among them the
/// soak's own: every process ckcont leaves behind (a helper, an unreaped child) is one, as the
/// soak is the subreaper of all it runs.
struct HostSample {
  var cgroups: [String] = []
  var mounts: [String] = []
  var files: [String: Set<String>] = [:]
  var processes: [Int32: String] = [:]
  var soakProcesses: [Int32: String] = [:]

  static let directories = ["/run", "/tmp", "/dev/shm"]
}

/// One row of the soak's table.
struct SoakRow {
  var cycle: Int
  var secondsPerCycle: Double
  var usage: [SoakStep: StepUsage]
  var container: ContainerCounts
  var host: HostSample
}

/// The soak: its container (the random fixture, seed 44, as pid 1: usually four processes
/// and five threads, as the forks race; pipes, unix socket pairs, TCP listeners and UDP
/// sockets, files, epoll, memory shared after fork, timers; and bigmem holding 256 MiB as
/// its child) in the cgroup `container` below a parent cgroup v2 of the soak's own, its
/// bundles and files on a tmpfs.
struct Soak {
  static let seed = 44
  static let memoryMiB = 256
  /// How much a ckcont command's peak memory, or the container's, may grow from the
  /// baseline. A leak inside one ckcont process cannot pile up (each command is a new
  /// process): growth means that what it reads grew (journals, the container); a run's peak
  /// varies by under 1% here (malloc arenas, the page copier's two threads).
  static let memoryTolerance = 0.10

  let bench: ContainerBench
  let random: String
  let bigmem: String
  let parent: String
  let cgroup: String
  var work: String { bench.directory }
  var bundle: String { work + "/container.ckpt" }
  var report: String { work + "/resources" }

  /// The container's pid 1 on the host, and the launcher whose child it is until the first
  /// full dump (after that each restored pid 1 is this process's, as subreaper).
  var root: pid_t = 0
  var launcher: Child?
  var initial = ContainerCounts()
  var usage: [SoakStep: StepUsage] = [:]
  var baseline: SoakRow?
  /// Runs whose descriptors at exit differ from the baseline's, as they happen.
  var descriptorChanges: [String] = []

  init(fixtures: String, ckcont: String, directory: String) throws {
    random = fixtures + "/random"
    bigmem = fixtures + "/bigmem"
    let name = "ckcont-soak-\(getpid())"
    let work = directory + "/" + name
    bench = try ContainerBench(fixtures: fixtures, ckcont: ckcont, directory: work, programs: [random, bigmem])
    parent = bench.cgroupRoot + "/" + name
    cgroup = parent + "/container"
    var made: [String] = []
    for path in [work, parent, cgroup] {
      guard mkdir(path, 0o700) == 0 else {
        let error = CKError(.failed, "mkdir \(path): \(String(cString: strerror(errno)))")
        for path in made.reversed() { rmdir(path) }
        throw error
      }
      made.append(path)
    }
  }

  /// Runs `cycles` (at least 2) cycles, prints the table as it goes and the verdict: true
  /// when every cycle succeeded, the container passed its own check at the end and nothing
  /// grew.
  mutating func run(cycles: Int) throws -> Bool {
    defer { cleanUp() }
    ck_install_interrupt_handlers()
    try start()
    setenv("CKCONT_RESOURCE_REPORT", report, 1)
    printLegend(cycles: cycles)
    var rows: [SoakRow] = []
    var since = monotonicNow()
    var sinceCycle = 0
    for number in 1...cycles {
      if ck_interrupting_signal() != 0 { throw CKError(.failed, "interrupted after cycle \(number - 1)") }
      try cycle(number)
      guard number == 2 || number % 100 == 0 || number == cycles else { continue }
      let perCycle = (monotonicNow() - since) / Double(number - sinceCycle)
      let row = try measure(cycle: number, secondsPerCycle: perCycle)
      (since, sinceCycle) = (monotonicNow(), number)
      if baseline == nil { baseline = row }
      rows.append(row)
      print(format(row))
      fflush(nil)  // a row at a time through a pipe (Scripts/soak tees it)
    }
    guard let baseline, var last = rows.last else { return false }
    var growth = grown(from: baseline, to: last)
    // What is still on its way out (a process exiting) gets a few seconds; a leak stays.
    let remeasured = !growth.host.isEmpty
    if remeasured {
      sleep(5)
      last.host = try sampleHost()
      growth = grown(from: baseline, to: last)
    }
    let verdict = try finish()
    let problems = growth.own + growth.host + descriptorChanges.prefix(10) + (verdict.map { [$0] } ?? [])
    print("")
    if remeasured { print("# cycle \(last.cycle) measured again 5 s later") }
    for note in growth.others { print("note: \(note)") }
    if problems.isEmpty {
      print(
        "PASS: \(cycles) cycles; from cycle \(baseline.cycle) to \(last.cycle) nothing grew; the container checked itself"
      )
    } else {
      print("FAIL after \(cycles) cycles:")
      for problem in problems { print("  \(problem)") }
    }
    return problems.isEmpty
  }

  // MARK: The container

  /// Starts the container and waits until both fixtures are ready.
  private mutating func start() throws {
    let shell = "\(bigmem) \(Self.memoryMiB) >\(work)/bigmem.log & exec \(random) \(Self.seed) \(work)"
    let child = try Child([bench.launch, cgroup, "/bin/sh", "-c", shell], stdout: work + "/random.log")
    launcher = child
    try waitForLine("ready", in: work + "/random.log", of: child.pid, timeout: 120)
    try waitForLine("ready", in: work + "/bigmem.log", of: child.pid, timeout: 120)
    let children = try PseudoFile.read("/proc/\(child.pid)/task/\(child.pid)/children")
    guard let pid = pid_t(children.trimmingCharacters(in: .whitespaces)) else {
      throw CKError(.failed, "the launcher \(child.pid) has no single child: \(children)")
    }
    root = pid
    initial = try containerCounts()
  }

  /// One cycle: a dump that leaves the container running (odd), or one that kills it and
  /// the restore that brings it back (even). Throws what failed.
  private mutating func cycle(_ number: Int) throws {
    let leaveRunning = number % 2 == 1
    try ckcont(leaveRunning ? .leaveRunning : .dump, cycle: number, ["dump", cgroup, "-o", bundle])
    if !leaveRunning {
      try awaitGone(cycle: number)
      let restore = try ckcont(.restore, cycle: number, ["restore", bundle])
      guard let pid = pid_t(restore.out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
        throw CKError(.failed, "cycle \(number): ckcont restore printed no pid: \(restore.out)")
      }
      root = pid
    }
    unlink(bundle)
    let events = try PseudoFile.read(cgroup + "/cgroup.events")
    guard events.contains("populated 1"), events.contains("frozen 0") else {
      throw CKError(.failed, "cycle \(number): the container is not running unfrozen: \(events)")
    }
    let now = try containerCounts()
    guard now.processes == initial.processes, now.threads == initial.threads else {
      throw CKError(
        .failed,
        "cycle \(number): the container has \(now.processes) processes and \(now.threads) threads; it had "
          + "\(initial.processes) and \(initial.threads)")
    }
  }

  /// Runs one ckcont command (with -v: its log of phases is printed if it fails); its usage
  /// goes to `usage`, a failure is thrown with ckcont's own error (its last line of stderr).
  @discardableResult
  private mutating func ckcont(_ step: SoakStep, cycle number: Int, _ arguments: [String]) throws
    -> FinishedCommand
  {
    let argv = [bench.ckcont] + arguments + ["-v"] + (step == .leaveRunning ? ["--leave-running"] : [])
    unlink(report)
    let result = try runTimed(argv, scratch: work + "/ckcont")
    guard result.status == 0 else {
      if ck_interrupting_signal() != 0 { throw CKError(.failed, "interrupted during cycle \(number)") }
      print(result.err.split(separator: "\n").map { "# ckcont \(step.rawValue): \($0)" }.joined(separator: "\n"))
      let error = result.err.split(separator: "\n").last.map(String.init) ?? ""
      throw CKError(.failed, "cycle \(number): ckcont \(step.rawValue) exited \(result.status): \(error)")
    }
    // `<command> fds N vmhwm_kib M`, one line (Sources/ckcont/ResourceReport.swift).
    let words = ((try? PseudoFile.read(report)) ?? "").split(separator: " ")
    guard words.count >= 3, let descriptors = Int(words[2]) else {
      throw CKError(.failed, "cycle \(number): ckcont \(step.rawValue) wrote no resource report to \(report)")
    }
    usage[step] = StepUsage(peakKiB: result.peakKiB, descriptors: descriptors)
    if let before = baseline?.usage[step]?.descriptors, before != descriptors, descriptorChanges.count < 10 {
      descriptorChanges.append(
        "cycle \(number): ckcont \(step.rawValue) exited with \(descriptors) descriptors open (baseline \(before))")
    }
    return result
  }

  /// After a full dump: reaps the killed pid 1 (or its launcher) and waits until the cgroup
  /// is empty.
  private mutating func awaitGone(cycle number: Int) throws {
    if let child = launcher {
      try child.wait(timeout: 60)
      launcher = nil
    } else {
      _ = try reap(root, timeout: 60, what: "the container's pid 1")
    }
    root = 0
    let deadline = monotonicNow() + 60
    while try PseudoFile.read(cgroup + "/cgroup.events").contains("populated 1") {
      guard monotonicNow() < deadline else {
        throw CKError(.failed, "cycle \(number): the dumped container still runs after 60 s")
      }
      usleep(1000)
    }
  }

  /// Stops the container (bigmem first, whose parent never waits for it, then pid 1) and
  /// returns what failed: nil when both checked their state and passed.
  private mutating func finish() throws -> String? {
    let processes = try Cgroup(hierarchy: bench.cgroupHierarchy, path: cgroup).processIDs()
    guard let holder = processes.first(where: { (try? PseudoFile.readValue("/proc/\($0)/comm")) == "bigmem" })
    else { return "the container has no bigmem process" }
    kill(holder, SIGTERM)
    let memoryVerdict = awaitVerdict(in: work + "/bigmem.log", of: holder)
    kill(root, SIGTERM)
    let status = try launcher?.wait(timeout: 120) ?? reap(root, timeout: 120, what: "the container's pid 1")
    (launcher, root) = (nil, 0)
    // Each process of the tree prints its own FAIL; pid 1 prints PASS or FAIL for all.
    let treeVerdicts = Self.verdicts(in: work + "/random.log")
    var failures: [String] = []
    if !memoryVerdict.hasPrefix("PASS") { failures.append("bigmem: \(memoryVerdict)") }
    if status != 0 || !treeVerdicts.contains("PASS random") || treeVerdicts.contains(where: { $0.hasPrefix("FAIL") }) {
      failures.append("pid 1 exited \(status): \(treeVerdicts.joined(separator: "; "))")
    }
    return failures.isEmpty ? nil : "the container's own check: " + failures.joined(separator: "; ")
  }

  /// The PASS or FAIL line a fixture prints after SIGTERM, once `pid` has exited (a zombie,
  /// as its parent does not wait for it), or what else its log ends with.
  private func awaitVerdict(in log: String, of pid: pid_t) -> String {
    let deadline = monotonicNow() + 120
    while monotonicNow() < deadline {
      let stat = (try? PseudoFile.read("/proc/\(pid)/stat")).flatMap(ProcStat.parse)
      if stat == nil || stat?.state == "Z" { break }
      usleep(2000)
    }
    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    let last = text.split(separator: "\n").last.map(String.init) ?? "nothing"
    return Self.verdicts(in: log).first ?? "no verdict in \(log), which ends with: \(last)"
  }

  /// The PASS and FAIL lines in a fixture's log.
  private static func verdicts(in log: String) -> [String] {
    let text = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    return text.split(separator: "\n").filter { $0.hasPrefix("PASS") || $0.hasPrefix("FAIL") }.map(String.init)
  }

  /// Kills what is left, reaps it, removes the cgroups and the working directory.
  private mutating func cleanUp() {
    bench.removeCgroup(cgroup)
    if let launcher { _ = try? launcher.wait(timeout: 30) }
    if root > 0 { _ = try? reap(root, timeout: 30, what: "the container's pid 1") }
    rmdir(parent)
    try? FileManager.default.removeItem(atPath: work)
  }

  // MARK: Measuring

  private func containerCounts() throws -> ContainerCounts {
    var counts = ContainerCounts()
    for process in try Cgroup(hierarchy: bench.cgroupHierarchy, path: cgroup).processes() {
      counts.processes += 1
      counts.threads += process.threads.count
      counts.descriptors += ((try? PseudoFile.list("/proc/\(process.pid)/fd")) ?? []).count
      counts.mappings += ((try? PseudoFile.read("/proc/\(process.pid)/maps")) ?? "").split(separator: "\n").count
      let status = (try? PseudoFile.read("/proc/\(process.pid)/status")) ?? ""
      let resident = status.split(separator: "\n").first { $0.hasPrefix("VmRSS:") }
      counts.residentKiB += resident.flatMap { Int($0.split(separator: " ").dropFirst().first ?? "") } ?? 0
    }
    return counts
  }

  private func sampleHost() throws -> HostSample {
    var sample = HostSample()
    let top = Cgroup(hierarchy: bench.cgroupHierarchy, path: parent)
    sample.cgroups = try top.subtree().dropFirst().map { $0.relative(to: parent) }
    sample.mounts = try MountInfo.read().map { "\($0.mountPoint) (\($0.fsType))" }
    for directory in HostSample.directories { sample.files[directory] = Self.entries(under: directory) }
    let inside = Set(try Cgroup(hierarchy: bench.cgroupHierarchy, path: cgroup).processIDs())
    var parents: [Int32: Int32] = [:]
    for name in try PseudoFile.list("/proc") {
      guard let pid = Int32(name), !inside.contains(pid),
        let stat = (try? PseudoFile.read("/proc/\(pid)/stat")).flatMap(ProcStat.parse)
      else { continue }
      sample.processes[pid] = stat.comm
      parents[pid] = stat.ppid
    }
    let soak = getpid()
    for (pid, name) in sample.processes where pid != soak {
      var ancestor = parents[pid]
      while let current = ancestor, current > 1, current != soak { ancestor = parents[current] }
      if ancestor == soak { sample.soakProcesses[pid] = name }
    }
    return sample
  }

  private func measure(cycle: Int, secondsPerCycle: Double) throws -> SoakRow {
    SoakRow(
      cycle: cycle, secondsPerCycle: secondsPerCycle, usage: usage, container: try containerCounts(),
      host: try sampleHost())
  }

  /// Every path below `directory` (symbolic links not followed); what vanishes meanwhile is
  /// left out.
  static func entries(under directory: String) -> Set<String> {
    var result: Set<String> = []
    var pending = [directory]
    while let current = pending.popLast() {
      for name in (try? PseudoFile.list(current)) ?? [] {
        let path = current + "/" + name
        result.insert(path)
        var st = stat()
        if lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR { pending.append(path) }
      }
    }
    return result
  }

  /// What grew from `baseline` to `last`: ckcont's and the container's own, the host's, and
  /// the changes of the rest of the machine (not counted).
  private func grown(from baseline: SoakRow, to last: SoakRow) -> (own: [String], host: [String], others: [String]) {
    var own: [String] = []
    for step in SoakStep.allCases {
      guard let before = baseline.usage[step], let after = last.usage[step] else { continue }
      if after.descriptors != before.descriptors {
        own.append("ckcont \(step.rawValue): \(before.descriptors) → \(after.descriptors) descriptors open at exit")
      }
      if Double(after.peakKiB) > Double(before.peakKiB) * (1 + Self.memoryTolerance) {
        own.append("ckcont \(step.rawValue): peak memory \(before.peakKiB) → \(after.peakKiB) KiB")
      }
    }
    let (a, b) = (baseline.container, last.container)
    if (a.processes, a.threads, a.descriptors, a.mappings) != (b.processes, b.threads, b.descriptors, b.mappings) {
      own.append(
        "the container: \(a.processes)/\(a.threads)/\(a.descriptors)/\(a.mappings) → "
          + "\(b.processes)/\(b.threads)/\(b.descriptors)/\(b.mappings) processes/threads/descriptors/mappings")
    }
    if Double(b.residentKiB) > Double(a.residentKiB) * (1 + Self.memoryTolerance) {
      own.append("the container: resident memory \(a.residentKiB) → \(b.residentKiB) KiB")
    }
    var host: [String] = []
    var others: [String] = []
    let (h0, h1) = (baseline.host, last.host)
    if h0.cgroups != h1.cgroups { host.append("cgroups under \(parent): \(h0.cgroups) → \(h1.cgroups)") }
    if h0.mounts.count != h1.mounts.count {
      host.append("mounts: \(h0.mounts.count) → \(h1.mounts.count)" + Self.changes(h0.mounts, h1.mounts))
    }
    for directory in HostSample.directories {
      let (before, after) = (h0.files[directory] ?? [], h1.files[directory] ?? [])
      if before.count != after.count {
        host.append("files in \(directory): \(before.count) → \(after.count)" + Self.changes(before, after))
      }
    }
    if h0.soakProcesses.count != h1.soakProcesses.count {
      host.append(
        "the soak's processes outside the container: \(h0.soakProcesses.count) → \(h1.soakProcesses.count)"
          + Self.changes(h0.soakProcesses, h1.soakProcesses))
    }
    // Everyone's processes: a difference with none of the soak's among them is the rest of
    // the machine at work, which the report shows but does not count.
    if h0.processes.count != h1.processes.count && h0.soakProcesses.count == h1.soakProcesses.count {
      others.append(
        "processes outside the container: \(h0.processes.count) → \(h1.processes.count), none of them the soak's"
          + Self.changes(h0.processes, h1.processes))
    }
    return (own, host, others)
  }

  /// `; new: a, b; gone: c` — the first few of each, to name what leaked.
  static func changes<S: Sequence<String>>(_ before: S, _ after: S) -> String {
    var counts: [String: Int] = [:]
    for item in before { counts[item, default: 0] -= 1 }
    for item in after { counts[item, default: 0] += 1 }
    return describe(
      new: counts.filter { $0.value > 0 }.keys.sorted(), gone: counts.filter { $0.value < 0 }.keys.sorted())
  }

  /// The same for processes, known by pid and named (a kernel thread's name changes with its
  /// work).
  static func changes(_ before: [Int32: String], _ after: [Int32: String]) -> String {
    describe(
      new: after.keys.filter { before[$0] == nil }.sorted().map { "\($0) \(after[$0] ?? "")" },
      gone: before.keys.filter { after[$0] == nil }.sorted().map { "\($0) \(before[$0] ?? "")" })
  }

  private static func describe(new: [String], gone: [String]) -> String {
    func few(_ items: [String]) -> String {
      items.prefix(5).joined(separator: ", ") + (items.count > 5 ? " and \(items.count - 5) more" : "")
    }
    return (new.isEmpty ? "" : "; new: \(few(new))") + (gone.isEmpty ? "" : "; gone: \(few(gone))")
  }

  // MARK: The table

  /// The table's columns in groups: each column's title and width.
  private static let table: [(group: String, columns: [(title: String, width: Int)])] = [
    ("", [("cycle", 5), ("s/cyc", 5)]),
    ("peak MiB", [("lr", 4), ("d", 4), ("r", 4)]),
    ("fds", [("lr", 3), ("d", 3), ("r", 3)]),
    ("container", [("proc", 4), ("thr", 4), ("fds", 4), ("maps", 5), ("MiB", 5)]),
    ("host", [("cgroups", 7), ("mounts", 6), ("/run", 5), ("/tmp", 6), ("shm", 4), ("pids", 5), ("soak", 4)]),
  ]

  private func printLegend(cycles: Int) {
    print(
      """
      # ckcont soak: \(cycles) cycles of one container (random \(Self.seed): processes, threads, pipes, \
      sockets, files; bigmem \(Self.memoryMiB) MiB); odd cycles `dump --leave-running`, even ones `dump` + \
      `restore`; bundles in \(work)
      # peak MiB, fds: ckcont's peak resident memory (wait4) and descriptors open at exit, for the last \
      dump --leave-running (lr), dump (d) and restore (r)
      # container: processes, threads, descriptors, mappings, resident MiB; host: cgroups under the soak's \
      parent; mounts and entries below /run, /tmp, /dev/shm in the soak's mount namespace (fresh tmpfs); \
      processes outside the container: on the host (pids), descended from the soak (soak)
      """)
    let groups = Self.table.map { group in
      let width = group.columns.map(\.width).reduce(group.columns.count - 1, +)
      return group.group + String(repeating: " ", count: max(0, width - group.group.count))
    }
    print(groups.joined(separator: " | "))
    print(line(Self.table.map { $0.columns.map(\.title) }))
  }

  private func format(_ row: SoakRow) -> String {
    let (c, h) = (row.container, row.host)
    return line([
      ["\(row.cycle)", String(format: "%.2f", row.secondsPerCycle)],
      SoakStep.allCases.map { row.usage[$0].map { "\($0.peakKiB >> 10)" } ?? "-" },
      SoakStep.allCases.map { row.usage[$0].map { "\($0.descriptors)" } ?? "-" },
      [c.processes, c.threads, c.descriptors, c.mappings, c.residentKiB >> 10].map(String.init),
      ([h.cgroups.count, h.mounts.count] + HostSample.directories.map { h.files[$0]?.count ?? 0 }
        + [h.processes.count, h.soakProcesses.count]).map(String.init),
    ])
  }

  /// One line of the table: each cell right-aligned in its column, groups apart.
  private func line(_ cells: [[String]]) -> String {
    zip(Self.table, cells).map { group, values in
      zip(group.columns, values).map { column, value in
        String(repeating: " ", count: max(0, column.width - value.count)) + value
      }.joined(separator: " ")
    }.joined(separator: " | ")
  }
}

/// `ckcont-bench soak FIXTURES CKCONT N`: exit status 0 when the soak passed.
func soak(fixtures: String, ckcont: String, cycles: Int) throws -> Bool {
  try isolateMounts()
  let directory = ProcessInfo.processInfo.environment["CKCONT_BENCH_TMPFS"] ?? "/dev/shm"
  var soak = try Soak(fixtures: fixtures, ckcont: ckcont, directory: directory)
  return try soak.run(cycles: cycles)
}

/// Moves the soak into a mount namespace of its own, private (nothing propagates in or out),
/// with fresh tmpfs on /run, /tmp and /dev/shm; ckcont and the container start in it. What
/// ckcont leaves in those directories and the mounts it leaves are then counted alone: on a
/// shared machine, other people's builds and tests add and remove hundreds of files there a
/// minute (swift's TemporaryDirectory.*, test journals) and mount things of their own. The
/// namespace goes away with the soak, and with it everything left in those directories.
/// The package itself (the working directory: builds, fixtures) may lie below one of them (a
/// clone in /tmp, as CI may make): it is bound back at its path on the fresh tmpfs.
func isolateMounts() throws {
  func fail(_ call: String, _ subject: String) -> CKError {
    CKError(.failed, "\(call)(\(subject)): \(String(cString: strerror(errno)))")
  }
  guard ck_unshare(Int32(CK_CLONE_NEWNS)) == 0 else { throw fail("unshare", "CLONE_NEWNS") }
  guard mount("none", "/", nil, UInt(MS_REC | MS_PRIVATE), nil) == 0 else { throw fail("mount", "/, MS_PRIVATE") }
  // Opened in the new namespace: a bind's source must be one of its mounts.
  let here = FileManager.default.currentDirectoryPath
  let package = try OwnedDescriptor("open", here) { open(here, OpenFlags.path | O_DIRECTORY | O_CLOEXEC) }
  for (directory, mode) in [("/run", "0755"), ("/tmp", "1777"), ("/dev/shm", "1777")] {
    guard mount("ckcont-soak", directory, "tmpfs", 0, "mode=\(mode)") == 0 else { throw fail("mount", directory) }
    guard here.hasPrefix(directory + "/") else { continue }
    try FileManager.default.createDirectory(atPath: here, withIntermediateDirectories: true)
    guard mount("/proc/self/fd/\(package.raw)", here, nil, UInt(MS_BIND | MS_REC), nil) == 0 else {
      throw fail("mount", "\(here) again, on the fresh \(directory)")
    }
  }
}
