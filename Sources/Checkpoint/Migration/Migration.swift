import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// What a migration did, as the source saw it.
public struct MigrationReport: Sendable, Codable {
  public var processes: Int
  public var threads: Int
  public var pageBytes: UInt64
  public var bytesSent: Int
  /// The container's root pid on the receiving host.
  public var receiverRootPid: Int32
  /// From the freeze to the receiver's word that the container runs there: the downtime
  /// (a little more: the word's way back).
  public var frozenSeconds: Double
  public var totalSeconds: Double
  /// The pre-copy rounds, in order (empty: stop and copy).
  public var rounds: [Round]
  /// With `--lazy`: the memory sent after the container ran there, and how long that took
  /// from its word that it runs.
  public var lazyBytes: Int?
  public var lazySeconds: Double?

  /// One pre-copy round, the container running.
  public struct Round: Sendable, Codable {
    public var pages: Int
    public var seconds: Double
  }
}

/// `ckcont migrate`: the dump streamed to a receiver (``Receive``) while the container
/// stays frozen here, its network locked; killed here only once the receiver says it runs
/// there, thawed (and its network unlocked) on a refusal, a lost connection or any failure.
public struct Migrate {
  /// The dump to run: its output and aftermath are the migration's.
  public var dump: Dump
  /// The receiver, HOST:PORT.
  public var destination: String
  /// How long to wait for the receiver's word once the bundle is sent (a large container
  /// takes a while to restore); a receiver that dies is noticed at once, a host that goes
  /// away within keepalive's 15 s.
  public var replyTimeout: Double = 600
  /// Copy the pages while the container runs first (nil: when it holds more than
  /// ``preCopyThreshold`` of private memory).
  public var preCopy: Bool?
  /// Post-copy (`--lazy`): send the state with little memory, let the receiver run the
  /// container at once and fetch the rest from here (``LazySource``), frozen until the last
  /// page is there. Once it runs there, a broken connection loses it there; it stays frozen
  /// here as it was at the freeze.
  public var lazy = false
  /// The longest the container may stand still: pre-copy rounds go on until what is left
  /// to send would take about this long at the rate seen, or stops shrinking.
  public var maximumDowntime: Double = 0.1
  public static let preCopyThreshold: UInt64 = 8 << 20
  public static let maximumRounds = 8
  /// Called after each pre-copy round.
  public var roundDone: (Round) -> Void = { _ in }
  public typealias Round = MigrationReport.Round

  public init(dump: Dump, destination: String) {
    self.dump = dump
    self.destination = destination
  }

  /// The receiver's word, from the hand-off (which runs in the dump) to the report.
  private final class Verdict: @unchecked Sendable {
    var rootPid: Int32?
    var refusal: String?
    /// Why the pages of a lazy migration stopped coming once the container ran there.
    var lost: String?
    var lazySeconds: Double?
    /// When the word came (CLOCK_MONOTONIC seconds).
    var runningAt: Double?
  }

  /// Moves the container: the protocol's steps in order (hello, rounds, final dump, the
  /// receiver's words, the source's end), each a few lines sharing the connection and the
  /// report; kept whole so that the protocol reads top to bottom.
  public func run() throws -> MigrationReport {
    let started = monotonicNow()
    let channel = try MigrationChannel.connect(to: destination)
    try channel.send(MigrationChannel.hello)
    var dump = self.dump
    var rounds: [Round] = []
    // A lazy migration's pages go over a connection of their own: the restore may fault on
    // them while it still reads its bundle from the first.
    let pages = lazy ? try MigrationChannel.connect(to: destination) : nil
    if let pages {
      try channel.send("lazy")
      try pages.send(LazySource.hello)
      dump.lazy = LazySource()
    } else if try preCopy ?? (privateMemory() >= Self.preCopyThreshold) {
      let precopy = try PreCopy.start(cgroup: dump.cgroup, freezeTimeout: dump.freezeTimeout, log: dump.log)
      rounds = try sendRounds(precopy, over: channel)
      dump.precopy = precopy
    }
    try channel.send("bundle")
    let verdict = Verdict()
    let timeout = replyTimeout
    dump.output = .descriptor(channel.fd, name: "the receiver at \(destination)")
    let source = dump.lazy
    dump.aftermath = .handOff {
      // The receiver's restore may touch pages to fetch before it runs the container.
      let server = source.flatMap { source in
        pages.map { pages in BackgroundJob(named: "ckcont-page-server") { try source.serve(over: pages) } }
      }
      do {
        var line = try channel.readLine(timeout: timeout)
        // Resumed there, its memory sent ahead still going in: the downtime ends here.
        if line == "resumed" {
          verdict.runningAt = monotonicNow()
          line = try channel.readLine(timeout: timeout)
        }
        if let line, line.hasPrefix("running "), let pid = Int32(line.dropFirst("running ".count)) {
          verdict.rootPid = pid
          verdict.runningAt = verdict.runningAt ?? monotonicNow()
          return Self.awaitLazyPages(server, verdict: verdict)
        }
        verdict.refusal =
          line.map { $0.hasPrefix("refused ") ? String($0.dropFirst("refused ".count)) : "it said \($0.prefix(120))" }
          ?? "it closed the connection"
      } catch {
        verdict.refusal = "\(error)"
      }
      if let pages { shutdown(pages.fd, Int32(SHUT_RDWR)) }
      _ = try? server?.wait()
      return .runOn
    }
    let report: DumpReport
    do {
      report = try dump.run()
    } catch {
      // The receiver may have said why it stopped reading.
      let line = try? channel.readLine(timeout: 1)
      if let line, line.hasPrefix("refused ") {
        throw CKError(
          .failed, "the receiver refused the container: \(line.dropFirst("refused ".count)); it runs on here")
      }
      throw error
    }
    if let lost = verdict.lost {
      throw CKError(
        .failed,
        "the container ran at \(destination), but its memory stopped coming there (\(lost)): it is lost there; here it stays frozen as it was at the freeze",
        hint:
          "run `ckcont thaw \(dump.cgroup.path)` to run it on from there, its peers may see resets; or `ckcont kill` to end it"
      )
    }
    guard report.handedOff == true, let rootPid = verdict.rootPid else {
      throw CKError(
        .failed, "the receiver did not restore the container: \(verdict.refusal ?? "no word"); it runs on here")
    }
    // Killed here: the receiver keeps its copy running once it hears this.
    try? channel.send("done")
    let ahead = rounds.reduce(0) { $0 + $1.pages } * Int(PreCopy.pageSize)
    return MigrationReport(
      processes: report.processes, threads: report.threads, pageBytes: report.pageBytes + UInt64(ahead),
      bytesSent: report.bundleBytes + ahead, receiverRootPid: rootPid,
      frozenSeconds: (verdict.runningAt ?? monotonicNow()) - report.frozenAt,
      totalSeconds: monotonicNow() - started, rounds: rounds,
      lazyBytes: dump.lazy.map { $0.pageCount * Int(LazySource.pageSize) }, lazySeconds: verdict.lazySeconds)
  }

  /// Once the receiver runs the container: with lazy pages, waits until the last is there
  /// (handed off) or the connection breaks (the copy there is lost: this one stays frozen).
  private static func awaitLazyPages(_ server: BackgroundJob<Bool>?, verdict: Verdict) -> DumpAftermath.HandOff {
    guard let server else { return .handedOff }
    let started = monotonicNow()
    do {
      guard try server.wait() else {
        verdict.lost = "the receiver closed the page connection"
        return .keepFrozen
      }
    } catch {
      verdict.lost = "\(error)"
      return .keepFrozen
    }
    verdict.lazySeconds = monotonicNow() - started
    return .handedOff
  }

  /// Pre-copy rounds until what is left would go within ``maximumDowntime`` at the rate of
  /// the rounds, stops shrinking, or ``maximumRounds``.
  private func sendRounds(_ precopy: PreCopy, over channel: MigrationChannel) throws -> [Round] {
    var rounds: [Round] = []
    while rounds.count < Self.maximumRounds {
      try Interruption.check()
      let started = monotonicNow()
      try channel.send("round \(rounds.count)")
      let bytes = try precopy.round(first: rounds.isEmpty) { pid, start, data in
        try channel.send("pages \(pid) \(start) \(data.count / Int(PreCopy.pageSize))", more: true)
        try channel.send(bytes: data)
      }
      try channel.send("end")
      // The freeze waits until the receiver holds the round: pages still on their way then
      // would be downtime (the receiver stores ~300 MB/s here, where fresh memory is slow).
      try awaitStored(over: channel)
      let round = Round(pages: bytes / Int(PreCopy.pageSize), seconds: monotonicNow() - started)
      rounds.append(round)
      roundDone(round)
      dump.log.debug("pre-copy round \(rounds.count): \(bytes >> 10) KiB in \(Int(round.seconds * 1000)) ms")
      let rate = Double(rounds[0].pages) / max(rounds[0].seconds, 0.001)
      let shrinking = rounds.count < 2 || round.pages * 10 < rounds[rounds.count - 2].pages * 9
      if rounds.count >= 2 && (Double(round.pages) / rate <= maximumDowntime || !shrinking) { break }
    }
    return rounds
  }

  /// Reads the receiver's `stored` after a round.
  private func awaitStored(over channel: MigrationChannel) throws {
    let line = try channel.readLine(timeout: replyTimeout)
    guard line == "stored" else {
      let said =
        line.map { $0.hasPrefix("refused ") ? String($0.dropFirst("refused ".count)) : "it said \($0.prefix(120))" }
        ?? "it closed the connection"
      throw CKError(.failed, "the receiver stopped taking pages sent ahead (\(said)); the container runs on here")
    }
  }

  /// The private memory the container's processes hold (resident anonymous pages).
  private func privateMemory() throws -> UInt64 {
    try dump.cgroup.processes().reduce(0) { sum, process in
      let fields = (try? PseudoFile.read("/proc/\(process.pid)/statm"))?.split(separator: " ") ?? []
      let resident =
        fields.count > 2 ? (UInt64(fields[1]) ?? 0) - min(UInt64(fields[1]) ?? 0, UInt64(fields[2]) ?? 0) : 0
      return sum + resident * PreCopy.pageSize
    }
  }
}

/// `ckcont receive`: waits for one `ckcont migrate`, restores the container it streams,
/// and tells the source, which then kills its copy.
public struct Receive {
  /// The restore to run: its input is the migration's stream.
  public var restore: Restore
  /// [ADDR:]PORT.
  public var listenAddress: String
  /// Called with the address listened on (the port chosen when 0 was asked).
  public var listening: (String) -> Void = { _ in }
  public var log = Logger.discarding

  public init(restore: Restore, listenAddress: String) {
    self.restore = restore
    self.listenAddress = listenAddress
  }

  public func run() throws -> RestoreReport {
    let listener = try MigrationChannel.listen(on: listenAddress)
    listening(listener.address)
    let channel = try listener.accept()
    log.debug("migration from \(channel.peer)")
    let hello = try channel.readLine(timeout: 30)
    guard hello == MigrationChannel.hello else {
      try? channel.send("refused not a ckcont migration of this version (\(MigrationChannel.hello))")
      throw CKError(.badInput, "\(channel.peer) did not start a ckcont migration: refused")
    }
    let (store, lazyMigration) = try receiveRounds(over: channel)
    var restore = self.restore
    restore.input = .descriptor(channel.fd, name: "the migration from \(channel.peer)")
    restore.precopied = store
    var lazy: LazyPages?
    if let store {
      // The pages sent ahead that the bundle names lazily go in once the container resumed.
      lazy = try LazyPages(channel: nil, store: store, log: log)
      lazy?.start()
      restore.lazy = lazy
    } else if lazyMigration {
      let pages = try listener.accept()
      guard try pages.readLine(timeout: 30) == LazySource.hello else {
        try? channel.send("refused the page connection is not a ckcont migration's")
        throw CKError(.badInput, "\(pages.peer) did not open the page connection of a lazy migration: refused")
      }
      lazy = try LazyPages(channel: pages, log: log)
      lazy?.start()
      restore.lazy = lazy
    }
    // The downtime ends here: the source hears it before the restore has tidied up.
    restore.resumed = { try? channel.send("resumed") }
    var report: RestoreReport
    do {
      report = try restore.run()
    } catch {
      lazy?.stop()
      try? channel.send("refused \(error)")
      throw error
    }
    // Should this process die before the memory is all in, its guard kills the container.
    if let lazy, let cgroup = try? Cgroup.resolve(report.cgroup, in: CgroupMounts.current()) {
      lazy.guardCgroup(cgroup.path)
    }
    do {
      if let lazy, store != nil {
        // Running here, but not handed off before its memory is all in: until then the
        // source runs on if this receiver dies.
        report.lazyPages = try lazy.wait()
      }
      try channel.send("running \(report.rootPid)")
    } catch {
      // The source cannot have heard: it runs on there, so this copy must not.
      lazy?.stop()
      killRestored(report)
      throw CKError(
        .failed,
        "the source is gone before it heard that the container runs here (\(error)); killed here, it runs on there"
      )
    }
    FaultInjection.point("receive:running")
    if let lazy, store == nil {
      do {
        report.lazyPages = try lazy.wait()
      } catch {
        // Its processes would wait for those pages for ever.
        killRestored(report)
        throw CKError(
          .failed,
          "the container's memory stopped coming (\(error)): the container is lost here (killed); the source keeps its copy frozen as it was at the freeze"
        )
      }
    }
    // A source that heard kills its copy and says so; one that did not hear runs on, and
    // the container would run twice: say so plainly (it cannot be known from here).
    let word = try? channel.readLine(timeout: 60)
    if word != "done" {
      log.error(
        "the source did not confirm that it killed its copy: check that the container does not run there too")
    }
    return report
  }

  /// The pages sent ahead, up to the `bundle` line; whether the migration is lazy.
  private func receiveRounds(over channel: MigrationChannel) throws -> (PreCopyStore?, lazy: Bool) {
    var store: PreCopyStore?
    var lazy = false
    let started = monotonicNow()
    let buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: Int(PreCopy.batchPages * PreCopy.pageSize), alignment: Int(PreCopy.pageSize))
    defer { buffer.deallocate() }
    while true {
      // A round of a large container takes a while: minutes without a line are a dead source.
      guard let line = try channel.readLine(timeout: 600) else {
        throw CKError(.failed, "\(channel.peer) closed the connection before its container came")
      }
      let words = line.split(separator: " ")
      switch words.first {
      case "bundle":
        log.debug(
          "pages sent ahead: \((store?.bytes ?? 0) >> 20) MiB held, \(Int((monotonicNow() - started) * 1000)) ms since the hello"
        )
        return (store, lazy)
      case "lazy":
        lazy = true
      case "round":
        continue
      case "end":
        try channel.send("stored")
      case "pages":
        guard words.count == 4, let pid = Int32(words[1]), let start = UInt64(words[2]), let count = Int(words[3]),
          count > 0, count <= Int(PreCopy.batchPages), start % PreCopy.pageSize == 0
        else { throw CKError(.badInput, "\(channel.peer) sent a malformed line: \(line.prefix(80))") }
        let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * Int(PreCopy.pageSize)])
        try channel.receive(into: data)
        if store == nil { store = try PreCopyStore() }
        try store?.store(pid: pid, start: start, count: count, data: UnsafeRawBufferPointer(data))
      default:
        throw CKError(.badInput, "\(channel.peer) sent what a migration does not: \(line.prefix(80))")
      }
    }
  }

  private func killRestored(_ report: RestoreReport) {
    do {
      let cgroup = try Cgroup.resolve(report.cgroup, in: CgroupMounts.current())
      try CgroupKill.kill(cgroup, timeout: 10)
    } catch {
      log.error("cannot kill the restored container in \(report.cgroup): \(error)")
    }
  }
}
