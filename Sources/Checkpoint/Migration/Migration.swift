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
  /// From the freeze to the receiver's word that the container runs there: the downtime.
  public var frozenSeconds: Double
  public var totalSeconds: Double
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

  public init(dump: Dump, destination: String) {
    self.dump = dump
    self.destination = destination
  }

  /// The receiver's word, from the hand-off (which runs in the dump) to the report.
  private final class Verdict: @unchecked Sendable {
    var rootPid: Int32?
    var refusal: String?
  }

  public func run() throws -> MigrationReport {
    let channel = try MigrationChannel.connect(to: destination)
    try channel.send(MigrationChannel.hello)
    let verdict = Verdict()
    let timeout = replyTimeout
    var dump = self.dump
    dump.output = .descriptor(channel.fd, name: "the receiver at \(destination)")
    dump.aftermath = .handOff {
      channel.finishSending()
      do {
        let line = try channel.readLine(timeout: timeout)
        if let line, line.hasPrefix("running "), let pid = Int32(line.dropFirst("running ".count)) {
          verdict.rootPid = pid
          return true
        }
        verdict.refusal =
          line.map { $0.hasPrefix("refused ") ? String($0.dropFirst("refused ".count)) : "it said \($0.prefix(120))" }
          ?? "it closed the connection"
      } catch {
        verdict.refusal = "\(error)"
      }
      return false
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
    guard report.handedOff == true, let rootPid = verdict.rootPid else {
      throw CKError(
        .failed, "the receiver did not restore the container: \(verdict.refusal ?? "no word"); it runs on here")
    }
    // Killed here: the receiver keeps its copy running once it hears this.
    try? channel.send("done")
    return MigrationReport(
      processes: report.processes, threads: report.threads, pageBytes: report.pageBytes,
      bytesSent: report.bundleBytes, receiverRootPid: rootPid, frozenSeconds: report.frozenSeconds,
      totalSeconds: report.totalSeconds)
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
    var restore = self.restore
    restore.input = .descriptor(channel.fd, name: "the migration from \(channel.peer)")
    let report: RestoreReport
    do {
      report = try restore.run()
    } catch {
      try? channel.send("refused \(error)")
      throw error
    }
    do {
      try channel.send("running \(report.rootPid)")
    } catch {
      // The source cannot have heard: it runs on there, so this copy must not.
      killRestored(report)
      throw CKError(
        .failed,
        "the source is gone before it heard that the container runs here (\(error)); killed here, it runs on there"
      )
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

  private func killRestored(_ report: RestoreReport) {
    do {
      let cgroup = try Cgroup.resolve(report.cgroup, in: CgroupMounts.current())
      try CgroupKill.kill(cgroup, timeout: 10)
    } catch {
      log.error("cannot kill the restored container in \(report.cgroup): \(error)")
    }
  }
}
