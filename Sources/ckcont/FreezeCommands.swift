import ArgumentParser
import Cgroup
import Checkpoint
import Foundation
import Linux
import Logging

/// The cgroup argument shared by the commands that take one.
struct CgroupArgument: ParsableArguments {
  @Argument(help: "The cgroup: an absolute path under a cgroup mount, or a name.")
  var cgroup: String?
  @Option(
    help: ArgumentHelp(
      "Instead of <cgroup>: the OCI state of the container (JSON, as a runtime hands it to a hook), from FILE or - for standard input.",
      discussion:
        "Its `pid` names the container's init; its cgroup is the one that process is in (cgroup v2 first, then the v1 freezer hierarchy), as /proc/<pid>/cgroup says.",
      valueName: "FILE"))
  var ociState: String?

  func validate() throws {
    guard cgroup != nil || ociState != nil else {
      throw ValidationError("Missing expected argument '<cgroup>' (or the container's OCI state with --oci-state)")
    }
    guard cgroup == nil || ociState == nil else {
      throw ValidationError("give the cgroup or --oci-state, not both")
    }
  }

  func resolve() throws -> Cgroup {
    let mounts = try CgroupMounts.current()
    if let ociState { return try OCIState.read(ociState).cgroup(in: mounts) }
    return try Cgroup.resolve(cgroup ?? "", in: mounts) { Terminal.error($0) }
  }

  /// ``resolve()``, then puts back the container if a dump of it died midway
  /// (``DumpRecovery``): every command that acts on a cgroup's tasks starts here.
  func resolveSettled(_ log: Logger) throws -> Cgroup {
    let cgroup = try resolve()
    Recovery.sweepRestores(log)
    if let done = try DumpRecovery.settle(cgroup, log: log) {
      Terminal.error("ckcont: \(done)")
    }
    return cgroup
  }
}

/// What every command that needs root does first.
enum Recovery {
  /// Removes what restores that died left on the host (``RestoreJournal``).
  static func sweepRestores(_ log: Logger) {
    for line in RestoreJournal.sweep() { Terminal.error("ckcont: \(line)") }
  }
}

/// The JSON that `freeze --json` and `thaw --json` print.
struct FreezeState: Encodable {
  var cgroup: String
  var version: String
  var frozen: Bool
  var processes: Int?
  var threads: Int?
  var seconds: Double?
}

/// `ckcont freeze <cgroup>`.
struct Freeze: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "freeze",
    abstract: "Freeze every task of a cgroup subtree.",
    discussion: """
      v2 writes cgroup.freeze and waits for `frozen 1` in cgroup.events; v1 writes FROZEN to \
      freezer.state and waits for it to read FROZEN. Tasks forked while freezing end frozen \
      too. If the group does not freeze within --timeout, it is thawed again and the tasks \
      that did not freeze are named. Freezing a frozen group succeeds.
      """)

  @OptionGroup var target: CgroupArgument
  @Option(help: "Seconds to wait for the whole subtree to freeze.")
  var timeout: Double = 5
  @OptionGroup var global: GlobalOptions

  func validate() throws {
    guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
  }

  func run() throws {
    try requireRoot("freeze")
    let log = global.logger("freeze")
    let cgroup = try target.resolveSettled(log)
    log.debug("freezing \(cgroup.path) (\(cgroup.hierarchy.label))")
    let report = try Freezer.freeze(cgroup, timeout: timeout)
    let note = report.wasFrozen ? "already frozen" : String(format: "%.2f ms", report.seconds * 1000)
    if global.json {
      try printJSON(
        FreezeState(
          cgroup: cgroup.path, version: cgroup.version.rawValue, frozen: true, processes: report.processes,
          threads: report.threads, seconds: report.seconds))
    } else {
      Terminal.out(
        "frozen \(cgroup.path) (\(cgroup.hierarchy.label), \(report.processes) processes, \(report.threads) threads, \(note))"
      )
    }
  }
}

/// `ckcont thaw <cgroup>`.
struct Thaw: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "thaw",
    abstract: "Thaw a frozen cgroup subtree, including descendants frozen on their own.",
    discussion: """
      If a dump of the cgroup was killed midway (SIGKILL, the OOM killer, a crash), thaw first \
      puts the container back as it was from the dump's journal in /run/ckcont, removes the \
      partial bundle, and then thaws (unless it was frozen before the dump). freeze, dump \
      and kill do the same.
      """)

  @OptionGroup var target: CgroupArgument
  @OptionGroup var global: GlobalOptions

  func run() throws {
    try requireRoot("thaw")
    let cgroup = try target.resolveSettled(global.logger("thaw"))
    try Freezer.thaw(cgroup)
    if global.json {
      try printJSON(FreezeState(cgroup: cgroup.path, version: cgroup.version.rawValue, frozen: false))
    } else {
      Terminal.out("thawed \(cgroup.path) (\(cgroup.hierarchy.label))")
    }
  }
}
