import CKShim
import Glibc
import SystemPackage

/// A decoded waitpid(2) status.
public enum WaitStatus: Equatable, Sendable, CustomStringConvertible {
  case exited(Int32)
  case signaled(Int32)
  /// Stopped by `signal`; `event` is the PTRACE_EVENT_* in bits 16–23 (0 for none).
  case stopped(signal: Int32, event: Int32)

  public init(raw: Int32) {
    if ck_wifexited(raw) != 0 {
      self = .exited(ck_wexitstatus(raw))
    } else if ck_wifsignaled(raw) != 0 {
      self = .signaled(ck_wtermsig(raw))
    } else {
      self = .stopped(signal: ck_wstopsig(raw), event: (raw >> 16) & 0xff)
    }
  }

  /// PTRACE_EVENT_STOP: the group-stop or interrupt stop of a seized task.
  public var isEventStop: Bool {
    if case .stopped(_, let event) = self { return event == CK_PTRACE_EVENT_STOP }
    return false
  }

  public var description: String {
    switch self {
    case .exited(let code): return "exited with status \(code)"
    case .signaled(let signal): return "killed by signal \(signal)"
    case .stopped(let signal, let event):
      return event == 0 ? "stopped by signal \(signal)" : "stopped by signal \(signal), ptrace event \(event)"
    }
  }
}

/// ptrace(2) requests on one thread. ptrace belongs to the tracing *thread*: every call
/// for a tracee must come from the thread that seized it.
public enum Ptrace {
  /// Without PTRACE_O_EXITKILL: a tracer that dies must not take its tracees with it (a dump
  /// leaves them parked, see SeizedContainer). The restore adds it for the tasks it makes.
  public static let defaultOptions = UInt(CK_PTRACE_O_TRACESYSGOOD)

  /// PTRACE_SEIZE: attach without stopping the thread.
  public static func seize(_ tid: Int32, options: UInt = defaultOptions) throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_SEIZE, \(tid)") {
      ck_ptrace(Int32(CK_PTRACE_SEIZE), tid, 0, options)
    }
  }

  /// PTRACE_INTERRUPT: ask a seized thread to enter a PTRACE_EVENT_STOP.
  public static func interrupt(_ tid: Int32) throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_INTERRUPT, \(tid)") {
      ck_ptrace(Int32(CK_PTRACE_INTERRUPT), tid, 0, 0)
    }
  }

  /// PTRACE_DETACH, resuming the thread with `signal` (0 for none).
  public static func detach(_ tid: Int32, signal: Int32 = 0) throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_DETACH, \(tid)") {
      ck_ptrace(Int32(CK_PTRACE_DETACH), tid, 0, UInt(signal))
    }
  }

  /// Takes the exits of killed tracees that could not be detached (they were dying): until
  /// their tracer has waited for them, their parents cannot reap them, and what such a
  /// parent holds (a network namespace it was started in) stays. Waits at most `timeout`
  /// seconds for all (waitpid(tid, __WALL | WNOHANG) every millisecond).
  public static func reapKilled(_ tids: [Int32], timeout: Double) {
    var left = Set(tids)
    var waited = 0.0
    while !left.isEmpty && waited < timeout {
      for tid in left {
        var status: Int32 = 0
        let result = waitpid(tid, &status, Int32(CK_WALL) | WNOHANG)
        // ECHILD: detached after all, or already taken.
        if result == tid || result < 0 { left.remove(tid) }
      }
      guard !left.isEmpty else { return }
      usleep(1000)
      waited += 0.001
    }
  }

  /// waitpid(tid, __WALL): the next state change of one thread.
  public static func wait(_ tid: Int32) throws(SyscallError) -> WaitStatus {
    var status: Int32 = 0
    try syscallChecked("waitpid", "\(tid)") { waitpid(tid, &status, Int32(CK_WALL)) }
    return WaitStatus(raw: status)
  }
}
