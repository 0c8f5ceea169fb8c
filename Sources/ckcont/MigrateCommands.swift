import ArgumentParser
import Checkpoint
import Foundation
import Glibc
import Linux

/// `ckcont migrate <cgroup> --to HOST:PORT`.
struct MigrateCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "migrate",
    abstract: "Move a running container to another host, where `ckcont receive` waits.",
    discussion: """
      Freezes the container, locks its network (its peers see silence, not resets), and \
      streams its bundle to the receiver, which restores it. The container stays frozen here \
      until the receiver says it runs there; only then is it killed here. If anything fails \
      before that (the receiver refuses, the connection is lost, ckcont is interrupted), it is \
      thawed and runs on here. With --lazy the container runs there before its memory has \
      come, and stays frozen here until the last page is there. Prints what moved and the \
      downtime (from the freeze to the receiver's word that the container runs there).
      """)

  @OptionGroup var target: CgroupArgument
  @Option(help: ArgumentHelp("The receiver: HOST:PORT ([IPv6]:PORT).", valueName: "HOST:PORT"))
  var to: String
  @OptionGroup var capture: CaptureOptions
  @Option(help: "Seconds to wait for the receiver's word once the container is sent.")
  var replyTimeout: Double = 600
  @Flag(
    inversion: .prefixedNo,
    help: ArgumentHelp(
      "Copy the memory while the container runs, then only what it wrote since (default: when it holds more than 8 MiB).",
      discussion:
        "Dirty pages are tracked with userfaultfd write-protection (this kernel has no soft-dirty bits): rounds go on until the rest fits --max-downtime or stops shrinking; then the container is frozen and the rest goes with its state. --no-pre-copy: stop and copy."
    ))
  var preCopy: Bool?
  @Flag(
    help: ArgumentHelp(
      "Post-copy: run the container there at once and send its memory after (as it touches it, the rest in order).",
      discussion:
        "The state goes with the first page of each large mapping of private memory; the receiver runs the container and fetches every other page from here, where the container stays frozen until the last page is there, then is killed. The downtime does not grow with the memory. The risk: once it runs there, a broken connection loses the container there (its processes would wait for pages for ever, so the receiver kills them); here it stays frozen as it was at the freeze, for `ckcont thaw` or `ckcont kill`. Pre-copy has no such risk, which is why it is the default."
    ))
  var lazy = false
  @Option(help: ArgumentHelp("The downtime pre-copy aims at, in milliseconds.", valueName: "MS"))
  var maxDowntime: Double = 100
  @OptionGroup var global: GlobalOptions

  func validate() throws {
    guard replyTimeout > 0, maxDowntime > 0 else {
      throw ValidationError("--reply-timeout and --max-downtime must be positive")
    }
    guard !(lazy && preCopy == true) else { throw ValidationError("--lazy and --pre-copy exclude each other") }
  }

  func run() throws {
    try requireRoot("migrate")
    Interruption.install()
    let log = global.logger("migrate")
    let cgroup = try target.resolveSettled(log)
    var dump = Dump(
      cgroup: cgroup, output: .standardOutput, aftermath: .kill, freezeTimeout: capture.timeout,
      toolVersion: ToolVersion.string)
    try capture.apply(to: &dump)
    dump.log = log
    var migrate = Migrate(dump: dump, destination: to)
    migrate.replyTimeout = replyTimeout
    migrate.preCopy = preCopy
    migrate.lazy = lazy
    migrate.maximumDowntime = maxDowntime / 1000
    let json = global.json
    migrate.roundDone = { round in
      guard !json else { return }
      Terminal.error(
        "  pre-copy round: \(round.pages) pages (\(round.pages >> 8) MiB) "
          + String(format: "in %.3f s", round.seconds))
    }
    let report = try migrate.run()
    if global.json {
      try printJSON(report)
    } else {
      Terminal.out(
        "moved \(cgroup.path) to \(to): \(report.processes) processes, \(report.threads) threads, "
          + "\(report.pageBytes >> 20) MiB of memory, \(report.bytesSent >> 20) MiB sent, root pid there "
          + "\(report.receiverRootPid); "
          + (report.lazyBytes.map {
            "\($0 >> 20) MiB sent lazily" + String(format: " in %.3f s after it ran; ", report.lazySeconds ?? 0)
          } ?? "\(report.rounds.count) pre-copy rounds; ")
          + String(format: "downtime %.3f s, total %.3f s", report.frozenSeconds, report.totalSeconds))
    }
  }
}

/// `ckcont receive --listen [ADDR:]PORT`.
struct ReceiveCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "receive",
    abstract: "Wait for one container from `ckcont migrate`, restore it, and exit.",
    discussion: """
      Listens on [ADDR:]PORT (port 0: any free one; the address is printed on stderr as \
      "listening on ADDR:PORT"), restores the one container a `ckcont migrate` sends (every \
      restore option applies), tells the source that it runs (the source then kills its \
      copy), prints the restored root pid, and exits: after pre-copy or --lazy once the \
      container's memory is all in (it runs meanwhile; should this receiver die before, a \
      guard process it started kills the container here). A restore that fails is undone and \
      the source is told: its container runs on there.
      """)

  @Option(help: ArgumentHelp("Where to listen: [ADDR:]PORT.", valueName: "[ADDR:]PORT"))
  var listen: String
  @OptionGroup var options: RestoreOptions
  @OptionGroup var global: GlobalOptions

  func run() throws {
    try requireRoot("receive")
    Interruption.install()
    let log = global.logger("receive")
    Recovery.sweepRestores(log)
    let restore = try options.restore(input: .standardInput, log: log)
    var receive = Receive(restore: restore, listenAddress: listen)
    receive.listening = { Terminal.error("listening on \($0)") }
    receive.log = log
    let report = try receive.run()
    try options.report(report, global: global)
  }
}
