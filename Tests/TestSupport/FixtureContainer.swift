import CKShim
import Foundation
import Glibc

/// A fixture program running as a one-process container: in a scratch cgroup and, by
/// default, as pid 1 of fresh pid, mount, UTS and IPC namespaces, with its output in a log
/// file. It drives the dump → kill → restore → SIGTERM → verify cycle through the real
/// ckcont binary.
public final class FixtureContainer: @unchecked Sendable {
  public let cgroup: ScratchCgroup
  public let launcher: BackgroundProcess
  public let bundlePath: String
  public private(set) var restoredPid: Int32 = 0
  /// A command `ckcont restore` runs under (as `sh -c 'SETUP; exec "$@"' sh ckcont ...`):
  /// a restore by a ckcont in another situation (another login uid...).
  public var restoreSetup: String?

  /// Makes this test process a child subreaper, so restored containers (whose parent,
  /// ckcont, exits) become its children and their exit status can be collected.
  static let subreaper: Void = { _ = ck_prctl(Int32(CK_PR_SET_CHILD_SUBREAPER), 1, 0, 0, 0) }()

  /// `fixture` names a program under Fixtures/, or is an absolute path of any program.
  /// `{cgroup}` in `arguments` stands for the scratch cgroup's path; `children` are nested
  /// cgroups made before the program starts. `userNamespace` puts its namespaces in a user
  /// namespace of their own (`launch --userns`: ids 0-65535 are the host's 100000-165535).
  /// `terminal`: a terminal the launcher gets as stdin and controlling terminal, in a session
  /// of its own outside the container (a shell job's). `wrapper`: a command the launcher runs
  /// under, as a runtime starts a container's init (`unshare -T ... --fork`); with
  /// `ownNamespaces: false` the launcher joins the cgroup inside the namespaces it made.
  public init(
    _ fixture: String, _ arguments: [String] = [], version: ScratchCgroup.Version = .v2, ownNamespaces: Bool = true,
    userNamespace: Bool = false, environment: [String: String]? = nil, children: [String] = [], terminal: String? = nil,
    wrapper: [String] = []
  ) throws {
    FixtureContainer.subreaper
    let scratch = try ScratchCgroup(version)
    cgroup = scratch
    for child in children { try scratch.makeChildren(child) }
    let arguments = arguments.map { $0.replacingOccurrences(of: "{cgroup}", with: scratch.path) }
    bundlePath = NSTemporaryDirectory() + "ckcont-test-\(UUID().uuidString).ckpt"
    let program = fixture.hasPrefix("/") ? fixture : try FixturePrograms.path(fixture)
    let launch = try FixturePrograms.path("launch")
    let mode = !ownNamespaces ? ["--host"] : userNamespace ? ["--userns"] : []
    let argv = wrapper + [launch, cgroup.path] + mode + [program] + arguments
    launcher = try BackgroundProcess(argv, environment: environment, terminal: terminal)
  }

  public var log: String { launcher.log }

  /// Waits for the fixture's `ready`.
  public func waitReady(timeout: Double = 20) throws {
    try launcher.waitForLine(startingWith: "ready", timeout: timeout)
  }

  /// The container's pids when it was last dumped.
  public private(set) var dumpedPids: [Int32] = []

  /// What ckcont runs under for dumps and restores (`nsenter --net=...`: in the namespace
  /// of a veth's outer end).
  public var ckcontPrefix: [String] = []

  /// `ckcont dump <cgroup> -o <bundle> [arguments]`.
  @discardableResult
  public func dump(_ arguments: [String] = []) -> CommandResult {
    dumpedPids = cgroup.allPids()
    return run(ckcontPrefix + [TestPaths.ckcont, "dump", cgroup.path, "-o", bundlePath] + arguments)
  }

  /// Waits until the cgroup holds no task (the dumped container was killed), and reaps the
  /// dumped processes this runner adopted as subreaper (a container in the host's pid
  /// namespace): their pids must be free again for the restore.
  public func waitEmpty(timeout: Double = 5) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while !cgroup.allPids().isEmpty {
      guard Date() < deadline else { throw TestFailure("the container still runs: \(cgroup.allPids())") }
      usleep(2000)
    }
    launcher.waitUntilExit()
    for pid in dumpedPids where pid != launcher.pid {
      var status: Int32 = 0
      while waitpid(pid, &status, WNOHANG) == 0 {
        guard Date() < deadline else { throw TestFailure("dumped process \(pid) did not go away") }
        usleep(1000)
      }
    }
  }

  /// `ckcont restore <bundle> [arguments]`; remembers the restored pid.
  @discardableResult
  public func restore(_ arguments: [String] = []) throws -> CommandResult {
    let prefix = restoreSetup.map { ["/bin/sh", "-c", "\($0); exec \"$@\"", "sh"] } ?? []
    let result = run(prefix + ckcontPrefix + [TestPaths.ckcont, "restore", bundlePath] + arguments)
    if result.status == 0 {
      // The pid alone, or with --json the report holding it.
      let json = try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
      guard
        let pid = Int32(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
          ?? (json?["rootPid"] as? Int).map(Int32.init)
      else {
        throw TestFailure("restore printed no pid: \(result.output)")
      }
      restoredPid = pid
    }
    return result
  }

  /// Waits for `ready`, dumps (which kills it) and waits until it is gone; a failed dump
  /// throws with ckcont's output.
  public func dumpAndWaitGone() throws {
    try waitReady()
    let dumped = dump()
    guard dumped.status == 0 else { throw TestFailure("dump failed: \(dumped.output)") }
    try waitEmpty()
  }

  /// ``dumpAndWaitGone()``, then a restore with `arguments`, which must succeed.
  public func dumpAndRestore(_ arguments: [String] = []) throws {
    try dumpAndWaitGone()
    let restored = try restore(arguments)
    guard restored.status == 0 else { throw TestFailure("restore failed: \(restored.output)") }
  }

  /// ``dumpAndRestore(_:)`` checked by state snapshots: once `ready`, the container is frozen,
  /// read (``StateSnapshot``) and dumped as it is, still frozen, so that the dump saves the
  /// very state that was read; once restored, it is frozen, read and thawed again. The
  /// differences, one line each (empty when the restore gave back everything the snapshot
  /// sees).
  /// `settle`: how long to wait for every thread to sleep before each snapshot (a fixture
  /// that never settles costs it twice); a loaded machine needs long for a process that
  /// said ready to reach its wait, and one still on its way writes its stack after the
  /// restore (copy-on-write sharing the first snapshot saw is then gone).
  public func verifiedDumpAndRestore(
    _ arguments: [String] = [], dumpArguments: [String] = [], settle: Double = 0.5
  ) throws -> [String] {
    try waitReady()
    waitUntilAsleep(timeout: settle)
    let before = try StateSnapshot.take(cgroup: cgroup, leaveFrozen: true)
    let dumped = dump(dumpArguments)
    guard dumped.status == 0 else { throw TestFailure("dump failed: \(dumped.output)") }
    try waitEmpty()
    let restored = try restore(arguments)
    guard restored.status == 0 else { throw TestFailure("restore failed: \(restored.output)") }
    waitUntilAsleep(timeout: settle)
    let after = try StateSnapshot.take(cgroup: cgroup)
    if let directory = ProcessInfo.processInfo.environment["CKCONT_TEST_SNAPSHOTS"] {
      let name = (cgroup.path as NSString).lastPathComponent
      try? before.text.write(toFile: "\(directory)/\(name).before", atomically: false, encoding: .utf8)
      try? after.text.write(toFile: "\(directory)/\(name).after", atomically: false, encoding: .utf8)
    }
    return StateSnapshot.diff(before, after)
  }

  /// ``verifiedDumpAndRestore(_:settle:)``, less what ``KnownDifferences`` lists for
  /// `fixture` (`name args`): the differences that must fail a test.
  public func unexplainedDifferences(
    _ fixture: String, _ arguments: [String] = [], dumpArguments: [String] = [], settle: Double = 0.5
  ) throws -> [String] {
    KnownDifferences.unexplained(
      try verifiedDumpAndRestore(arguments, dumpArguments: dumpArguments, settle: settle), fixture: fixture)
  }

  /// Waits (up to `timeout` seconds) until no thread of the container runs, twice in a row:
  /// `ready` says a fixture is set up, but a child it forked may still be on its way into
  /// its wait (binding a symbol, setting its signal mask), and a restored task may still be
  /// resuming. A fixture that keeps running never settles; it is read after the timeout.
  public func waitUntilAsleep(timeout: Double = 0.5) {
    let deadline = Date().addingTimeInterval(timeout)
    var quiet = 0
    while quiet < 2 && Date() < deadline {
      let running = cgroup.allPids().contains { pid in
        SnapshotTasks.threadIDs(pid).contains { ProcStat.read("/proc/\(pid)/task/\($0)/stat")?[3] == "R" }
      }
      quiet = running ? 0 : quiet + 1
      usleep(2000)
    }
  }

  /// Sends SIGTERM to the restored container and collects its exit status.
  public func terminateRestored(timeout: Double = 20) throws -> Int32 {
    guard restoredPid > 0 else { throw TestFailure("nothing was restored") }
    kill(restoredPid, SIGTERM)
    return try reap(restoredPid, timeout: timeout)
  }

  /// Waits for a child (or adopted orphan) to exit; its exit code, or 128+signal.
  public func reap(_ pid: Int32, timeout: Double) throws -> Int32 {
    let deadline = Date().addingTimeInterval(timeout)
    var status: Int32 = 0
    while true {
      let result = waitpid(pid, &status, WNOHANG)
      if result == pid { break }
      if result < 0 { throw TestFailure("waitpid(\(pid)): \(String(cString: strerror(errno)))") }
      guard Date() < deadline else {
        kill(pid, SIGKILL)
        throw TestFailure("\(pid) did not exit in \(timeout) s; log: \(log)")
      }
      usleep(2000)
    }
    let code = (status >> 8) & 0xff
    let signal = status & 0x7f
    restoredPid = 0
    return signal == 0 ? code : 128 + signal
  }

  /// Kills whatever is left, removes the cgroup and the bundle.
  public func destroy() {
    if restoredPid > 0 {
      kill(restoredPid, SIGKILL)
      var status: Int32 = 0
      waitpid(restoredPid, &status, 0)
    }
    cgroup.destroy()
    launcher.stop()
    try? FileManager.default.removeItem(atPath: bundlePath)
  }

  deinit { destroy() }
}
