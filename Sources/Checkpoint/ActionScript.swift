import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// `--action-script PATH` (as CRIU's): a program ckcont runs at named points of a dump or a
/// restore, for what scripts must do around them (lock a network, set up links in the
/// container's new network namespace, ship the bundle). It gets the stage and the
/// container's pids in its environment, its output goes to ckcont's standard error, and one
/// that fails (exits non-zero or is killed) fails the dump, which releases the container and
/// leaves no bundle, or the restore, which removes everything it made.
public struct ActionScript: Sendable {
  /// When it runs, named as CRIU names them (CRTOOLS_SCRIPT_ACTION).
  public enum Stage: String, Sendable {
    /// The container frozen and seized, before anything is captured.
    case preDump = "pre-dump"
    /// The bundle written, synced, verified and in place, before the container is killed
    /// (or let go with --leave-running / --leave-frozen).
    case postDump = "post-dump"
    /// The bundle read and verified, before anything is made.
    case preRestore = "pre-restore"
    /// The container's init made in its new namespaces (CRTOOLS_INIT_PID), before ckcont
    /// sets them up: the time to give its network namespace links.
    case setupNamespaces = "setup-namespaces"
    /// The namespaces set up (settings, mounts, names), before the rest of the tree is made.
    case postSetupNamespaces = "post-setup-namespaces"
    /// Everything restored, before the container resumes.
    case postRestore = "post-restore"
    /// The container running again. A failure here is reported, but the container runs on.
    case postResume = "post-resume"
  }

  public let path: String

  public init(path: String) { self.path = path }

  /// Runs the script for `stage` and waits for it; throws when it fails.
  func run(_ stage: Stage, cgroup: String, pids: [Int32], initPid: Int32? = nil, log: Logger) throws {
    var environment = ProcessInfo.processInfo.environment
    environment["CRTOOLS_SCRIPT_ACTION"] = stage.rawValue
    environment["CKCONT_ACTION"] = stage.rawValue
    environment["CKCONT_CGROUP"] = cgroup
    environment["CKCONT_PIDS"] = pids.map(String.init).joined(separator: " ")
    if let initPid { environment["CRTOOLS_INIT_PID"] = String(initPid) }
    let started = monotonicNow()
    let status = try Self.spawnAndWait([path], environment: environment)
    log.debug("action script \(path) at \(stage.rawValue): \(status) in \(Int((monotonicNow() - started) * 1000)) ms")
    guard status == .exited(0) else {
      throw CKError(
        .failed, "the action script \(path) failed at \(stage.rawValue): \(status)",
        hint: "its own output above says why")
    }
  }

  /// posix_spawn with /dev/null as its input and ckcont's standard error as its output (or
  /// `input`, `output` and `errors`), waited for.
  static func spawnAndWait(
    _ argv: [String], environment: [String: String], input: Int32 = -1, output: Int32 = 2, errors: Int32 = 2
  ) throws -> WaitStatus {
    let arguments = argv.map { strdup($0) } + [nil]
    let variables = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
    defer {
      for pointer in arguments + variables { free(pointer) }
    }
    let pid = ck_spawn(arguments, variables, input, output, errors, nil)
    guard pid > 0 else {
      throw CKError(
        .badInput, "cannot run \(argv[0]): \(String(cString: strerror(-pid)))",
        hint: "give the path of an executable")
    }
    var raw: Int32 = 0
    while waitpid(pid, &raw, 0) < 0 {
      guard errno == EINTR else {
        throw SyscallError("waitpid", "the action script \(argv[0])", .init(rawValue: errno))
      }
    }
    return WaitStatus(raw: raw)
  }
}
