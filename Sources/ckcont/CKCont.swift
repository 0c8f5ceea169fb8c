import ArgumentParser
import Glibc
import Linux

/// The `ckcont` command line: thin adapters over the library modules.
@main
struct CKCont: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ckcont",
    abstract: "Checkpoint and restore whole Linux containers (cgroup subtrees).",
    discussion: """
      A container is a cgroup (v1 or v2) full of tasks. <cgroup> is an absolute path under a \
      cgroup mount (/sys/fs/cgroup/unified/web, /sys/fs/cgroup/freezer/web) or a name looked \
      up in the mounted hierarchies, cgroup v2 first.

      Exit status: 0 success, 1 the operation failed, 2 bad input (no such cgroup, not a \
      cgroup), 64 bad usage, 77 not enough privileges.
      """,
    version: ToolVersion.string,
    subcommands: [
      Check.self, Ps.self, Freeze.self, Thaw.self, Kill.self, DumpCommand.self, RestoreCommand.self,
      InspectCommand.self, KeygenCommand.self, MigrateCommand.self, ReceiveCommand.self,
    ])

  /// Parses, runs, and turns every error into one line on stderr with a documented exit code.
  static func main() {
    // A reader that goes away (`ckcont dump -o - | head`) is an ordinary write error (EPIPE):
    // the dump then releases the container and fails, instead of dying of SIGPIPE.
    signal(SIGPIPE, SIG_IGN)
    ResourceReport.installIfAsked()
    do {
      var command = try parseAsRoot(sharedOptionsAfterSubcommand(Array(CommandLine.arguments.dropFirst())))
      try command.run()
    } catch let error as CKError {
      fail(error.description, code: exitCode(error.kind))
    } catch let error as SyscallError {
      fail(error.description, code: 1)
    } catch {
      // Help and version requests print as the parser makes them; a usage error is one line
      // in the form of every other error.
      if let code = error as? ExitCode { Glibc.exit(code.rawValue) }
      guard exitCode(for: error) != .success else { exit(withError: error) }
      let message = self.message(for: error).split(separator: "\n").first.map(String.init) ?? "bad usage"
      let words = Array(CommandLine.arguments.dropFirst())
      let subcommand = configuration.subcommands.first { command in words.contains(command._commandName) }
      let help = subcommand.map { "ckcont \($0._commandName) --help" } ?? "ckcont --help"
      fail("\(message.replacingOccurrences(of: "Error: ", with: "")) (see \(help))", code: 64)
    }
  }

  /// `ckcont -v dump ...` means `ckcont dump -v ...`: the options every command shares may
  /// come before the subcommand too (they are declared on each subcommand).
  static func sharedOptionsAfterSubcommand(_ arguments: [String]) -> [String] {
    let shared: Set<String> = ["-v", "--verbose", "--json"]
    let leading = arguments.prefix { shared.contains($0) }
    let rest = arguments.dropFirst(leading.count)
    guard !leading.isEmpty, let subcommand = rest.first else { return arguments }
    return [subcommand] + leading + rest.dropFirst()
  }

  static func exitCode(_ kind: CKError.Kind) -> Int32 {
    switch kind {
    case .failed: return 1
    case .badInput: return 2
    case .permission: return 77
    }
  }

  static func fail(_ message: String, code: Int32) -> Never {
    Terminal.error("ckcont: error: \(message)")
    Glibc.exit(code)
  }
}

/// The tool's version, written into bundles and printed by `--version`.
enum ToolVersion {
  static let string = "0.1.0"
}
