import Logging

extension Logger {
  /// A logger that prints nothing: the engine's default when its caller gives none, and what
  /// a bundle read for itself (inspect, the dump's own verification) logs to.
  public static let discarding = Logger(label: "ckcont", factory: { _ in SwiftLogNoOpLogHandler() })
}
