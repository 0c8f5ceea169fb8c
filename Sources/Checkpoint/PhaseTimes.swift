import Cgroup
import Foundation

/// Wall time spent per phase over many processes, for the -v log.
struct PhaseTimes: CustomStringConvertible {
  private var totals: [(name: String, seconds: Double)] = []

  mutating func time<T>(_ name: String, _ body: () throws -> T) rethrows -> T {
    let started = monotonicNow()
    defer { record(name, since: started) }
    return try body()
  }

  /// Adds the time from `started` until now to `name`.
  mutating func record(_ name: String, since started: Double) {
    let spent = monotonicNow() - started
    if let index = totals.firstIndex(where: { $0.name == name }) {
      totals[index].seconds += spent
    } else {
      totals.append((name, spent))
    }
  }

  var description: String {
    totals.map { String(format: "%@ %.1f ms", $0.name, $0.seconds * 1000) }.joined(separator: ", ")
  }
}
