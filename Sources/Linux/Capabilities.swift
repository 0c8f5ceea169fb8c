import CLibcap
import Glibc

/// Capability sets as text (cap_to_text(3)), through libcap.
public enum Capabilities {
  /// The capabilities of this process in libcap's text form, e.g. `=ep` for full root.
  public static func ofSelf() -> String {
    guard let caps = cap_get_proc() else { return "" }
    defer { cap_free(UnsafeMutableRawPointer(caps)) }
    return text(caps)
  }

  /// The capabilities of `pid` in libcap's text form; nil when the task is gone.
  public static func of(pid: Int32) -> String? {
    guard let caps = cap_get_pid(pid) else { return nil }
    defer { cap_free(UnsafeMutableRawPointer(caps)) }
    return text(caps)
  }

  /// True when this process has `capability` (a CAP_* number) in its effective set.
  public static func selfHasEffective(_ capability: Int32) -> Bool {
    guard let caps = cap_get_proc() else { return false }
    defer { cap_free(UnsafeMutableRawPointer(caps)) }
    var value = CAP_CLEAR
    guard cap_get_flag(caps, cap_value_t(capability), CAP_EFFECTIVE, &value) == 0 else { return false }
    return value == CAP_SET
  }

  /// CAP_SYS_ADMIN, CAP_SYS_PTRACE and CAP_CHECKPOINT_RESTORE (40), the ones ckcont needs.
  public static let sysAdmin: Int32 = 21
  public static let sysPtrace: Int32 = 19
  public static let checkpointRestore: Int32 = 40

  private static func text(_ caps: cap_t) -> String {
    var length: Int = 0
    guard let raw = cap_to_text(caps, &length) else { return "" }
    defer { cap_free(raw) }
    return String(cString: raw)
  }
}
