// Child processes for the benchmarks, started with posix_spawn and reaped with waitpid, so a
// command's time is exactly spawn to exit (Foundation's Process polls a run loop).
import Cgroup
import Foundation
import Glibc
import Linux

/// A child with stdin from /dev/null and stdout and stderr in files.
struct Child {
  let pid: pid_t
  let argv: [String]

  /// Starts `argv`; stdout goes to `stdout`, stderr to `stderr` (nil: the same file).
  init(_ argv: [String], stdout: String, stderr: String? = nil) throws {
    self.argv = argv
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    posix_spawn_file_actions_addopen(&actions, 1, stdout, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    if let stderr {
      posix_spawn_file_actions_addopen(&actions, 2, stderr, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
    } else {
      posix_spawn_file_actions_adddup2(&actions, 1, 2)
    }
    var cArgs = argv.map { strdup($0) } + [nil]
    defer { for arg in cArgs { free(arg) } }
    var pid: pid_t = 0
    let status = posix_spawn(&pid, argv[0], &actions, nil, &cArgs, environ)
    guard status == 0 else { throw CKError(.failed, "cannot run \(argv[0]): \(String(cString: strerror(status)))") }
    self.pid = pid
  }

  /// Waits for the exit; the exit code, or 128+signal. Kills the child after `timeout` seconds.
  @discardableResult
  func wait(timeout: Double) throws -> Int32 { try reap(pid, timeout: timeout, what: argv[0]) }
}

/// Waits for a child (or an orphan adopted as subreaper) to exit: its exit code, or 128+signal.
func reap(_ pid: pid_t, timeout: Double, what: String) throws -> Int32 {
  try reapWithUsage(pid, timeout: timeout, what: what).status
}

/// ``reap``, with the child's resource usage as wait4(2) reports it (`ru_maxrss`: its peak
/// resident memory in KiB).
func reapWithUsage(_ pid: pid_t, timeout: Double, what: String) throws -> (status: Int32, usage: rusage) {
  let deadline = monotonicNow() + timeout
  var status: Int32 = 0
  var usage = rusage()
  while true {
    let result = wait4(pid, &status, WNOHANG, &usage)
    if result == pid { break }
    guard result == 0 else { throw CKError(.failed, "wait4(\(pid)): \(String(cString: strerror(errno)))") }
    guard monotonicNow() < deadline else {
      kill(pid, SIGKILL)
      _ = wait4(pid, &status, 0, &usage)
      throw CKError(.failed, "\(what) (pid \(pid)) did not finish in \(Int(timeout)) s")
    }
    usleep(500)
  }
  return (status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + status & 0x7f, usage)
}

/// What a command run to completion by ``runTimed`` did.
struct FinishedCommand {
  let status: Int32  // the exit code, or 128+signal
  let out: String
  let err: String
  let seconds: Double  // wall clock, spawn to exit
  let peakKiB: Int  // peak resident memory (wait4's ru_maxrss)
}

/// Runs `argv` to completion, its stdout and stderr in `scratch`.out and .err meanwhile.
func runTimed(_ argv: [String], scratch: String, timeout: Double = 300) throws -> FinishedCommand {
  let outPath = scratch + ".out"
  let errPath = scratch + ".err"
  defer {
    unlink(outPath)
    unlink(errPath)
  }
  let start = monotonicNow()
  let child = try Child(argv, stdout: outPath, stderr: errPath)
  let (status, usage) = try reapWithUsage(child.pid, timeout: timeout, what: argv[0])
  let seconds = monotonicNow() - start
  let out = (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? ""
  let err = (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? ""
  return FinishedCommand(status: status, out: out, err: err, seconds: seconds, peakKiB: usage.ru_maxrss)
}

/// Waits until the file at `path` holds a line starting with `prefix`, while `pid` runs.
func waitForLine(_ prefix: String, in path: String, of pid: pid_t, timeout: Double) throws {
  let deadline = monotonicNow() + timeout
  while monotonicNow() < deadline {
    let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
    if text.split(separator: "\n").contains(where: { $0.hasPrefix(prefix) }) { return }
    var status: Int32 = 0
    if waitpid(pid, &status, WNOHANG) == pid { throw CKError(.failed, "pid \(pid) exited before '\(prefix)': \(text)") }
    usleep(2000)
  }
  throw CKError(.failed, "timed out after \(Int(timeout)) s waiting for '\(prefix)' in \(path)")
}
