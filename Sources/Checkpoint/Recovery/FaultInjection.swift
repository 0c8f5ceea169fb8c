import Foundation
import Glibc

/// Named points where a test build of ckcont kills itself with SIGKILL, so that tests can
/// show the container survives ckcont dying at each phase of a dump or restore
/// (`CKCONT_FAULT_KILL_AT=dump:parked`). Release builds ignore the variable.
public enum FaultInjection {
  #if DEBUG
    static let killAt: String? = ProcessInfo.processInfo.environment["CKCONT_FAULT_KILL_AT"]
  #endif

  /// Where a test build keeps its journals instead of /run/ckcont (`CKCONT_FAULT_RUN_DIR`):
  /// the fault tests leave journals of killed runs on purpose, which any other ckcont would
  /// otherwise find and sweep while other tests run. Nil in release builds.
  static var runDirectory: String? {
    #if DEBUG
      ProcessInfo.processInfo.environment["CKCONT_FAULT_RUN_DIR"].flatMap { $0.isEmpty ? nil : $0 }
    #else
      nil
    #endif
  }

  /// How long a test build waits at this point (`CKCONT_FAULT_DELAY_AT` names it,
  /// `CKCONT_FAULT_DELAY_MS` says how long): a lazy migration's push held back, so that the
  /// restored container touches pages that are not there yet. Zero in release builds.
  static func delay(_ name: String) -> Double {
    #if DEBUG
      let environment = ProcessInfo.processInfo.environment
      guard environment["CKCONT_FAULT_DELAY_AT"] == name else { return 0 }
      return (environment["CKCONT_FAULT_DELAY_MS"].flatMap(Double.init) ?? 0) / 1000
    #else
      0
    #endif
  }

  /// Dies here when the test asked for this point.
  public static func point(_ name: String) {
    #if DEBUG
      if killAt == name {
        FileHandle.standardError.write(Data("ckcont: fault injection: SIGKILL at \(name)\n".utf8))
        raise(SIGKILL)
      }
    #endif
  }
}
