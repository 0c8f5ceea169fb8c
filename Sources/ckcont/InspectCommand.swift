import ArgumentParser
import Checkpoint
import Linux

/// `ckcont inspect BUNDLE`.
struct InspectCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "inspect",
    abstract: "Show what a bundle holds: tree, threads, mappings, files, totals.",
    discussion: "Verifies the bundle's checksums as it reads. Needs no root and restores nothing.")

  @Argument(help: "The bundle, or - for standard input.")
  var bundle: String
  @OptionGroup var global: GlobalOptions

  func run() throws {
    let inspection = try BundleInspection.read(path: bundle)
    if global.json {
      try printJSON(inspection)
    } else {
      Terminal.out(inspection.render())
    }
  }
}
