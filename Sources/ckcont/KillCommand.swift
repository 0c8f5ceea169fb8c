import ArgumentParser
import Cgroup
import Foundation
import Linux

/// `ckcont kill <cgroup>`.
struct Kill: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "kill",
    abstract: "Kill every task of a cgroup subtree and wait until it is empty.",
    discussion: """
      For scripts that dump with --leave-frozen, restore elsewhere, and then end the source: \
      `ckcont dump cg --leave-frozen -o - | ssh host ckcont restore - && ckcont kill cg || \
      ckcont thaw cg`. v2 writes cgroup.kill; v1 freezes, SIGKILLs every process and thaws \
      until none is left. A frozen subtree is killed too. If a dump of the cgroup died \
      midway, its journal is settled first (see thaw).
      """)

  @OptionGroup var target: CgroupArgument
  @Option(help: "Seconds to wait for the subtree to empty.")
  var timeout: Double = 10
  @OptionGroup var global: GlobalOptions

  func validate() throws {
    guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
  }

  func run() throws {
    try requireRoot("kill")
    let cgroup = try target.resolveSettled(global.logger("kill"))
    let processes = try CgroupKill.kill(cgroup, timeout: timeout)
    if global.json {
      try printJSON(KillState(cgroup: cgroup.path, version: cgroup.version.rawValue, killed: processes))
    } else {
      Terminal.out("killed \(cgroup.path) (\(cgroup.hierarchy.label), \(processes) processes)")
    }
  }
}

/// The JSON that `kill --json` prints.
struct KillState: Encodable {
  var cgroup: String
  var version: String
  var killed: Int
}
