// The dump → restore → SIGTERM → verify cycle of one fixture container, driven through the
// real ckcont binary, as the memory and scale benchmarks time it.
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// Where container benchmarks run: the ckcont binary, the launch fixture, the cgroup v2 mount
/// and a tmpfs for the bundles.
struct ContainerBench {
  let ckcont: String
  let launch: String
  let cgroupHierarchy: CgroupHierarchy
  let directory: String
  var cgroupRoot: String { cgroupHierarchy.mountPoint }

  /// Checks that `programs` (besides ckcont and launch) are built and `directory` is a tmpfs,
  /// and makes this process a child subreaper.
  init(fixtures: String, ckcont: String, directory: String, programs: [String]) throws {
    self.ckcont = ckcont
    launch = fixtures + "/launch"
    self.directory = directory
    for program in [ckcont, launch] + programs where access(program, X_OK) != 0 {
      throw CKError(.badInput, "\(program) is not an executable (build it first)")
    }
    guard let unified = try CgroupMounts.current().unified else {
      throw CKError(.failed, "no cgroup v2 hierarchy is mounted")
    }
    cgroupHierarchy = unified
    // The mount holding `directory` is the one with the longest matching mount point.
    let mount = try MountInfo.read().filter { directory == $0.mountPoint || directory.hasPrefix($0.mountPoint + "/") }
      .max { $0.mountPoint.count < $1.mountPoint.count }
    guard mount?.fsType == "tmpfs" else { throw CKError(.badInput, "\(directory) is not on a tmpfs") }
    // Restored containers are orphaned when ckcont exits: adopt them to reap them.
    _ = ck_prctl(Int32(CK_PR_SET_CHILD_SUBREAPER), 1, 0, 0, 0)
  }

  /// What one cycle measured. A cycle that failed keeps the times it got and says what failed.
  struct Cycle {
    var dumpSeconds: Double?  // the whole `ckcont dump` command
    var restoreSeconds: Double?  // the whole `ckcont restore` command
    var dumpOutput = ""  // the dump's stdout
    var failure: String?  // nil: the restored fixture printed PASS and exited 0
  }

  /// Runs `program` as pid 1 of fresh namespaces in the new cgroup `<mount>/<name>`, waits for
  /// its "ready", dumps it to `<directory>/<name>.ckpt` (killing it), waits until it is gone,
  /// restores it, sends SIGTERM and expects `pass` in its output and exit status 0. Everything
  /// it made (cgroup, processes, bundle, log) is gone when it returns, also after a failure.
  /// With `logs`, ckcont runs with -v and its stderr is kept in `<logs>/<name>-dump.log` and
  /// `-restore.log`. One sequence with one cleanup, kept whole so that nothing escapes it.
  func cycle(name: String, program: [String], pass: String, dumpArguments: [String] = [], logs: String? = nil)
    throws -> Cycle
  {
    let cgroup = "\(cgroupRoot)/\(name)"
    let bundle = "\(directory)/\(name).ckpt"
    let log = "/tmp/\(name).log"
    guard mkdir(cgroup, 0o755) == 0 else {
      throw CKError(.failed, "mkdir \(cgroup): \(String(cString: strerror(errno)))")
    }
    var launcher: Child?
    var restored: pid_t = 0
    defer {
      if let launcher, kill(launcher.pid, SIGKILL) == 0 { _ = try? launcher.wait(timeout: 30) }
      if restored > 0 {
        kill(restored, SIGKILL)
        _ = try? reap(restored, timeout: 30, what: "the restored \(program[0])")
      }
      removeCgroup(cgroup)
      unlink(bundle)
      unlink(log)
    }
    func output() -> String { (try? String(contentsOfFile: log, encoding: .utf8)) ?? "" }
    func ckcont(_ command: String, _ arguments: [String]) throws -> FinishedCommand {
      let argv = [self.ckcont, command] + (logs == nil ? [] : ["-v"]) + arguments
      let result = try runTimed(argv, scratch: "/tmp/\(name)-\(command)")
      if let logs { try result.err.write(toFile: "\(logs)/\(name)-\(command).log", atomically: false, encoding: .utf8) }
      return result
    }
    // ckcont's own error is its last line of stderr (before it, -v logs).
    func lastLine(_ text: String) -> String {
      text.split(separator: "\n").last.map(String.init) ?? ""
    }

    var result = Cycle()
    let container = try Child([launch, cgroup] + program, stdout: log)
    launcher = container
    do {
      try waitForLine("ready", in: log, of: container.pid, timeout: 300)
    } catch {
      result.failure = "the fixture did not start: \(output())"
      return result
    }

    let dump = try ckcont("dump", [cgroup, "-o", bundle] + dumpArguments)
    guard dump.status == 0 else {
      result.failure = "ckcont dump exited \(dump.status): \(lastLine(dump.err))"
      return result
    }
    result.dumpSeconds = dump.seconds
    result.dumpOutput = dump.out
    // The dump kills the container; its launcher then exits and the cgroup empties.
    try container.wait(timeout: 60)
    launcher = nil
    let deadline = monotonicNow() + 60
    while (try? PseudoFile.read(cgroup + "/cgroup.events"))?.contains("populated 1") ?? false {
      guard monotonicNow() < deadline else {
        result.failure = "the dumped container still runs after 60 s"
        return result
      }
      usleep(1000)
    }

    let restore = try ckcont("restore", [bundle])
    guard restore.status == 0 else {
      result.failure = "ckcont restore exited \(restore.status): \(lastLine(restore.err))"
      return result
    }
    result.restoreSeconds = restore.seconds
    guard let pid = pid_t(restore.out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      result.failure = "ckcont restore printed no pid: \(restore.out)"
      return result
    }
    restored = pid

    // A restore of garbage is worth nothing: the fixture checks its state on SIGTERM.
    kill(pid, SIGTERM)
    let status = try reap(pid, timeout: 120, what: "the restored \(program[0])")
    restored = 0
    if status != 0 || !output().contains(pass) {
      result.failure = "the restored container exited \(status): \(lastLine(output()))"
    }
    return result
  }

  /// Kills what is left in the cgroup and removes it.
  func removeCgroup(_ path: String) {
    for _ in 0..<1000 {
      let fd = open(path + "/cgroup.kill", O_WRONLY)
      if fd >= 0 {
        _ = write(fd, "1", 1)
        close(fd)
      }
      if rmdir(path) == 0 || errno == ENOENT { return }
      usleep(5000)
    }
  }
}
