import CKShim
import Foundation
import Glibc

/// Children of the test process, spawned and reaped without Foundation's Process: its
/// SIGCHLD bookkeeping misses exits once the runner is a child subreaper that adopts
/// restored containers, and it leaks the runner's descriptors into children.
enum Spawn {
  /// Starts `argv` with stdout and stderr on the given descriptors; returns its pid.
  /// `terminal`: a terminal's path for its stdin and, in a session of its own, its
  /// controlling terminal (default: stdin on /dev/null, the runner's session).
  static func start(_ argv: [String], environment: [String: String]?, out: Int32, err: Int32, terminal: String? = nil)
    throws -> Int32
  {
    let env =
      (environment.map { ProcessInfo.processInfo.environment.merging($0) { $1 } } ?? ProcessInfo.processInfo.environment)
      .map { "\($0.key)=\($0.value)" }
    var cArgs = argv.map { strdup($0) } + [nil]
    var cEnv = env.map { strdup($0) } + [nil]
    defer {
      for argument in cArgs { free(argument) }
      for variable in cEnv { free(variable) }
    }
    let pid =
      terminal.map { path in path.withCString { ck_spawn(&cArgs, &cEnv, -1, out, err, $0) } }
      ?? ck_spawn(&cArgs, &cEnv, -1, out, err, nil)
    guard pid > 0 else { throw TestFailure("cannot run \(argv[0]): \(String(cString: strerror(-pid)))") }
    return pid
  }

  /// Blocks until `pid` exits; its exit code, or 128 + the signal that killed it.
  static func wait(_ pid: Int32) -> Int32 {
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 {
      if errno != EINTR { return -1 }
    }
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
  }

  /// Whether `pid` has exited (reaping it if so), and its status.
  static func poll(_ pid: Int32) -> Int32? {
    var status: Int32 = 0
    let result = waitpid(pid, &status, WNOHANG)
    guard result == pid else { return result < 0 ? -1 : nil }
    let signal = status & 0x7f
    return signal == 0 ? (status >> 8) & 0xff : 128 + signal
  }
}
