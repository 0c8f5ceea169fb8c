import ArgumentParser
import Checkpoint
import Foundation
import Glibc
import Linux

/// `ckcont restore BUNDLE`.
struct RestoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract: "Recreate a checkpointed container and let it continue.",
    discussion: """
      Reads and verifies the whole bundle (checksums, format version, CPU features) before \
      creating anything, then recreates the container in fresh namespaces with the same \
      pids, in its cgroup (the dumped path, or --cgroup), and resumes it. Prints the restored \
      root process's pid as this host sees it. On failure or Ctrl-C everything created is \
      removed; the bundle is never modified.
      """)

  @Argument(help: "The bundle to restore, or - for standard input.")
  var bundle: String
  @Option(help: "The cgroup to restore into (default: the one it was dumped from). It must not hold tasks.")
  var cgroup: String?
  @Option(help: "Write the restored root pid to this file.")
  var pidfile: String?
  @OptionGroup var global: GlobalOptions

  func run() throws {
    try requireRoot("restore")
    Interruption.install()
    let log = global.logger("restore")
    var restore = Restore(input: bundle == "-" ? .standardInput : .file(bundle), cgroupPath: cgroup)
    restore.log = { log.debug("\($0)") }
    let report = try restore.run()
    if let pidfile {
      try "\(report.rootPid)\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
    }
    if global.json {
      try printJSON(report)
    } else {
      Terminal.out("\(report.rootPid)")
    }
  }
}
