import Glibc
import Linux

/// Kills every task of a cgroup subtree and waits until it is empty: what `ckcont kill`
/// does for scripts that dumped with `--leave-frozen` and restored elsewhere.
public enum CgroupKill {
  /// v2 with cgroup.kill: one write kills the whole subtree, forks in flight included. v1
  /// (or a kernel without cgroup.kill): frozen so that nothing forks meanwhile, every process
  /// SIGKILLed, thawed so that the kills take effect, again until nothing is left. Returns
  /// how many processes there were; throws when the subtree is not empty within `timeout`.
  @discardableResult
  public static func kill(_ cgroup: Cgroup, timeout: Double) throws -> Int {
    let deadline = monotonicNow() + timeout
    let before = try cgroup.processes().count
    let killFile = cgroup.file("cgroup.kill")
    if cgroup.version == .v2 && access(killFile, F_OK) == 0 {
      try PseudoFile.write(killFile, "1")
    } else {
      try Freezer.checkFreezable(cgroup)
      while case let processes = try cgroup.processes(), !processes.isEmpty, monotonicNow() < deadline {
        _ = try? Freezer.freeze(cgroup, timeout: max(0.1, deadline - monotonicNow()))
        for process in try cgroup.processes() { Glibc.kill(process.pid, SIGKILL) }
        try Freezer.thaw(cgroup)
        usleep(1000)
      }
    }
    while try !cgroup.processes().isEmpty {
      guard monotonicNow() < deadline else {
        throw CKError(
          .failed, "\(cgroup.path) still holds tasks after \(formatSeconds(timeout))",
          hint: "tasks in uninterruptible sleep (state D) die when their call ends; retry later")
      }
      usleep(1000)
    }
    return before
  }
}
