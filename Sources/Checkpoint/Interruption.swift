import CKShim
import Linux

/// SIGINT and SIGTERM during a dump or restore: the handler only records the signal; the
/// engine checks between steps and unwinds through its normal cleanup (release the
/// container, remove what restore created), then the CLI exits non-zero.
public enum Interruption {
  /// Installs the handlers for SIGINT, SIGTERM and SIGHUP.
  public static func install() { ck_install_interrupt_handlers() }

  /// Throws when a signal arrived.
  public static func check() throws(CKError) {
    let signal = ck_interrupting_signal()
    if signal != 0 {
      throw CKError(.failed, "interrupted by signal \(signal); everything was cleaned up")
    }
  }
}
