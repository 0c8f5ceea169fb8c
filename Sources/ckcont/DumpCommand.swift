import ArgumentParser
import Checkpoint
import Foundation
import Glibc
import Linux

/// `ckcont dump <cgroup> -o FILE`.
struct DumpCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "dump",
    abstract: "Checkpoint every task of a cgroup subtree into a bundle.",
    discussion: """
      Freezes the subtree, seizes every thread with ptrace, captures registers, memory, files \
      and signal state, and streams a tar bundle (`tar tvf` lists it). The container is killed \
      only after the bundle is completely written, synced and verified; with --leave-running \
      it continues unharmed, with --leave-frozen it stays frozen. On any failure, or on \
      Ctrl-C, the container is released and runs on, and no partial bundle is left.
      """)

  @OptionGroup var target: CgroupArgument
  @Option(name: .shortAndLong, help: "The bundle to write, or - for standard output.")
  var output: String
  @Flag(help: "Let the container run on after the dump.")
  var leaveRunning = false
  @Flag(help: "Leave the container frozen after the dump.")
  var leaveFrozen = false
  @Flag(
    help: ArgumentHelp(
      "A first bundle of a chain (runc's --pre-dump): the container runs on; dump it again later with --parent.",
      discussion: "A whole bundle, restorable on its own; its pages are what a later --parent dump leaves out."))
  var preDump = false
  @Option(
    help: ArgumentHelp(
      "Dump against the bundle P (a --pre-dump, or any earlier dump of the container): its unchanged pages are named, not saved.",
      discussion:
        "Pages of private memory that are byte for byte as in P are left out; the manifest names P (beside the new bundle, or its absolute path) with its identity, and the restore loads it too (or the one given with restore --parent). P is loaded before the freeze; the comparison runs frozen.",
      valueName: "P"))
  var parent: String?
  @Flag(
    help: ArgumentHelp(
      "Allow a job of a shell outside the container: its session and terminal are outside (CRIU's --shell-job).",
      discussion: "Restore it with --shell-job from a terminal: the job gets that terminal and session."))
  var shellJob = false
  @Flag(
    help: ArgumentHelp(
      "Allow a console whose master the runtime holds (podman -t, runc with a terminal).",
      discussion:
        "The controlling terminal of the container's session, a pseudo-terminal of its devpts: restore it with --console-socket, which gets the new terminal's master, as runc's console socket does."
    ))
  var externalConsole = false
  @OptionGroup var capture: CaptureOptions
  @Option(
    help: ArgumentHelp(
      "Sign the bundle with the private key in KEY (`ckcont keygen`).",
      discussion: "signature.json ends the bundle: the SHA-256 of every member and an Ed25519 signature over them.",
      valueName: "KEY"))
  var sign: String?
  @Option(
    help: ArgumentHelp(
      "Run PROGRAM at each stage of the dump, as CRIU's --action-script.",
      discussion:
        "Stages (CRTOOLS_SCRIPT_ACTION and CKCONT_ACTION): pre-dump, post-dump. It gets CKCONT_CGROUP and CKCONT_PIDS too; a script that fails fails the dump, which lets the container run on and leaves no bundle.",
      valueName: "PROGRAM"))
  var actionScript: String?
  @OptionGroup var global: GlobalOptions

  func validate() throws {
    guard !(leaveRunning && leaveFrozen), !(preDump && leaveFrozen) else {
      throw ValidationError("--leave-running (or --pre-dump) and --leave-frozen exclude each other")
    }
    if let parent, !FileManager.default.fileExists(atPath: parent) {
      throw ValidationError("--parent \(parent): no such bundle")
    }
    try validateActionScript(actionScript)
    if output != "-" && FileManager.default.fileExists(atPath: output) {
      throw ValidationError("\(output) exists; remove it or choose another name")
    }
  }

  func run() throws {
    try requireRoot("dump")
    Interruption.install()
    let log = global.logger("dump")
    let cgroup = try target.resolveSettled(log)
    var dump = Dump(
      cgroup: cgroup, output: output == "-" ? .standardOutput : .file(output),
      aftermath: leaveRunning || preDump ? .leaveRunning : leaveFrozen ? .leaveFrozen : .kill,
      freezeTimeout: capture.timeout,
      toolVersion: ToolVersion.string)
    dump.shellJob = shellJob
    dump.externalConsole = externalConsole
    try capture.apply(to: &dump)
    dump.parent = parent
    dump.signingKey = try sign.map(KeyFiles.signingKey)
    dump.actionScript = actionScript.map(ActionScript.init(path:))
    dump.log = log
    let meter = ProgressMeter(enabled: isatty(2) == 1 && !global.verbose)
    dump.progress = { meter.update(done: $0, total: $1) }
    let report = try dump.run()
    meter.finish()
    if global.json {
      // The bundle may be on stdout: the report goes to stderr then.
      try printJSON(report, toStandardError: output == "-")
    } else {
      let destination = output == "-" ? "standard output" : output
      let line =
        "dumped \(cgroup.path): \(report.processes) processes, \(report.threads) threads, "
        + "\(report.pageBytes >> 20) MiB of memory, bundle \(report.bundleBytes >> 20) MiB to \(destination) "
        + String(format: "in %.2f s (frozen %.2f s)", report.totalSeconds, report.frozenSeconds)
      // The bundle may be on stdout: the summary goes to stderr then.
      if output == "-" { Terminal.error(line) } else { Terminal.out(line) }
    }
  }
}

/// Bytes and MB/s on stderr, redrawn in place, when stderr is a terminal.
final class ProgressMeter {
  let enabled: Bool
  let started = Date()
  var lastDraw = Date.distantPast
  var drawn = false

  init(enabled: Bool) { self.enabled = enabled }

  func update(done: UInt64, total: UInt64) {
    guard enabled, Date().timeIntervalSince(lastDraw) > 0.1 || done == total else { return }
    lastDraw = Date()
    let seconds = max(Date().timeIntervalSince(started), 0.001)
    let percent = total > 0 ? Double(done) * 100 / Double(total) : 100
    Terminal.errorRaw(
      String(
        format: "\r  pages %6.1f%%  %6d / %d MiB  %7.1f MB/s", percent, done >> 20, total >> 20,
        Double(done) / seconds / 1e6))
    drawn = true
  }

  func finish() {
    if drawn { Terminal.errorRaw("\r\u{1b}[K") }
  }
}

/// What every capture takes (`dump` and `migrate`): how long to wait for the freeze, the
/// network's treatment, compression.
struct CaptureOptions: ParsableArguments {
  @Flag(
    help: ArgumentHelp(
      "The container's network namespace is its runtime's: save nothing of it, restore with --join-net.",
      discussion:
        "As CRIU's --external net[...]: a runtime (podman's netavark, CNI) made its devices, addresses and routes and makes them again for the restore; the container's sockets are kept."
    ))
  var externalNet = false
  @Option(
    help: ArgumentHelp(
      "How to lock the container's own network while it is held: nftables (default) or skip.",
      discussion:
        "From the freeze on, an nftables table in each network namespace of the container's own drops every packet but loopback's, so that peers see silence, not resets, until the container runs on (or is restored: the restore locks the new namespace until it runs). As CRIU's --network-lock.",
      valueName: "nftables|skip"))
  var networkLock = "nftables"
  @Option(
    help: ArgumentHelp(
      "Compress the pages with zstd (LEVEL: -7 to 19, default 3).",
      discussion:
        "Each process's pages become one member tasks/PID/pages.img.zst; the bundle stays a tar that tar lists and inspect reads. The pages are read and compressed before the bundle is written, so the container stays frozen for that time.",
      valueName: "zstd[:LEVEL]"))
  var compress: String?
  @Flag(
    help: ArgumentHelp(
      "Drop inotify events not read yet instead of refusing the dump (CRIU drops them).",
      discussion:
        "Only the kernel makes inotify events, so those waiting in a queue cannot be queued again; by default the dump refuses them while the container runs on. With this flag the watches come back and the waiting events are lost."
    ))
  var dropInotifyEvents = false
  @Option(help: "Seconds to wait for the subtree to freeze.")
  var timeout: Double = 5

  func validate() throws {
    guard timeout > 0 else { throw ValidationError("--timeout must be positive") }
    _ = try compressionLevel(compress)
    guard ["nftables", "skip"].contains(networkLock) else {
      throw ValidationError("--network-lock \(networkLock): give nftables or skip")
    }
  }

  func apply(to dump: inout Dump) throws {
    dump.externalNetwork = externalNet
    dump.dropInotifyEvents = dropInotifyEvents
    dump.lockNetwork = networkLock == "nftables"
    dump.compressionLevel = try compressionLevel(compress)
  }
}
