import ArgumentParser
import Checkpoint
import Foundation
import Linux

/// `ckcont check`: can this kernel do checkpoint/restore?
struct Check: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "check",
    abstract: "Probe the kernel features ckcont needs, one line each.",
    discussion: """
      Each feature is tried for real on a child process or a scratch cgroup, as `criu check` \
      does. Exits 1 when an essential feature is missing (freezing needs cgroup v2 freeze or \
      the v1 freezer; either is enough).
      """)

  @OptionGroup var global: GlobalOptions

  func run() throws {
    let probes = FeatureCheck.run()
    let missing = FeatureCheck.essentialMissing(probes)
    if global.json {
      struct Output: Encodable {
        var ok: Bool
        var probes: [Probe]
      }
      try printJSON(Output(ok: missing.isEmpty, probes: probes))
    } else {
      let width = probes.map(\.name.count).max() ?? 0
      for probe in probes {
        let mark = probe.available ? "ok     " : (probe.essential ? "MISSING" : "absent ")
        let padded = probe.name.padding(toLength: width, withPad: " ", startingAt: 0)
        Terminal.out("\(mark)  \(padded)  \(probe.detail)")
      }
      Terminal.out(
        missing.isEmpty ? "Looks good." : "Essential features missing: \(missing.map(\.name).joined(separator: ", ")).")
    }
    if !missing.isEmpty { throw ExitCode(1) }
  }
}
