import Bundle
import Cgroup
import Foundation
import Glibc
import Linux
import Synchronization
import SystemPackage

/// What a dump is about to change in a container, written and synced before each change
/// (a write-ahead journal), so that whatever ckcont dies of — SIGKILL, the OOM killer, a
/// crash — the next ckcont command on that cgroup can put everything back
/// (``DumpRecovery``). One file per cgroup under ``directory``; removed once the container
/// has been released or killed.
struct DumpRecord: Codable, Sendable {
  /// One thread of the container as the dump found it.
  struct Thread: Codable, Sendable {
    var tid: Int32
    var registers: GeneralRegisters
    var signalMask: UInt64
    var cpus: [Int]?
  }

  /// One process, with what the dump did to it.
  struct Process: Codable, Sendable {
    var pid: Int32
    /// /proc/<pid>/stat starttime: a pid reused since is not the same process.
    var startTime: UInt64
    var threads: [Thread] = []
    /// The signal of a stopped job, which the dump continued and must stop again.
    var stopSignal: Int32?
    /// The `syscall` instruction (in its [vdso]) where its threads are parked: they sit in
    /// pause() there with every signal blocked whenever ckcont is not running a call in them.
    var park: UInt64?
    /// The scratch area the dump maps for its remote calls (``RemoteSession``), chosen
    /// before it is mapped.
    var scratch: UInt64?
  }

  /// A TCP connection put into repair mode, through the descriptor its process holds.
  struct RepairedSocket: Codable, Sendable {
    var pid: Int32
    var fd: Int32
    var reuseAddress: Bool
  }

  /// What the programs wrote to a terminal that waited in its master, which the dump read
  /// out (a terminal has no way to peek) through the descriptor its process holds.
  struct TerminalOutput: Codable, Sendable {
    var pid: Int32
    var fd: Int32
    var bytes: Data
  }

  var cgroup: String
  var ckcontPid: Int32
  var ckcontStartTime: UInt64
  /// The cgroup was frozen before the dump: recovery leaves it frozen.
  var wasFrozen: Bool
  var processes: [Process] = []
  var repairedSockets: [RepairedSocket] = []
  var terminalOutputs: [TerminalOutput]? = nil
  /// The bundle file being written (removed by recovery).
  var partialBundle: String?
  /// The bundle is complete and verified, and the dump was to kill the container: recovery
  /// finishes the kill instead of releasing it.
  var killing = false
}

/// The journal file of one running dump. Every change is written (to a temporary file,
/// renamed over the journal) before the caller makes it.
final class DumpJournal: Sendable {
  static let directory = FaultInjection.runDirectory ?? "/run/ckcont"
  let path: String
  private let record: Mutex<DumpRecord>

  /// The journal file for `cgroup`: its path with `%` and `/` escaped.
  static func path(for cgroup: String) -> String {
    let name = cgroup.replacingOccurrences(of: "%", with: "%25").replacingOccurrences(of: "/", with: "%2F")
    return "\(directory)/dump-\(name).json"
  }

  /// Starts the journal of a dump of `cgroup`. A journal left by a ckcont that died must
  /// have been recovered first (``DumpRecovery/settle(_:log:)``); one of a live ckcont
  /// means another dump of the cgroup runs.
  init(cgroup: Cgroup, wasFrozen: Bool) throws {
    path = Self.path(for: cgroup.path)
    let own = ProcStat.read(pid: getpid())?.startTime ?? 0
    let record = DumpRecord(cgroup: cgroup.path, ckcontPid: getpid(), ckcontStartTime: own, wasFrozen: wasFrozen)
    self.record = Mutex(record)
    try Self.makeDirectory()
    if let existing = try? Self.read(path), existing.isOwnerAlive {
      throw CKError(
        .failed, "ckcont \(existing.ckcontPid) is dumping \(cgroup.path) now",
        hint: "wait for it to finish, or stop it; a later ckcont command puts the container back")
    }
    try write(record)
  }

  /// Records a change before the caller makes it.
  func update(_ change: (inout DumpRecord) -> Void) throws {
    try record.withLock { record in
      change(&record)
      try write(record)
    }
  }

  /// The dump is over and the container released or killed: nothing is left to put back.
  func remove() {
    unlink(path)
  }

  private func write(_ record: DumpRecord) throws {
    let data = try JSONEncoder().encode(record)
    try Self.writeAtomically(data, to: path)
  }

  static func makeDirectory() throws {
    guard mkdir(directory, 0o700) == 0 || errno == EEXIST else {
      throw SyscallError("mkdir", directory, Errno(rawValue: errno))
    }
  }

  /// Writes `data` to a temporary file and renames it to `path`: a reader sees the old
  /// contents or the new, never a part. Not fsync'ed: the journal outlives ckcont's death,
  /// which leaves the page cache whole; a machine that goes down takes the container with
  /// it, and a journal left from before is stale (its processes' start times differ). An
  /// fsync was up to milliseconds of the container's freeze where /run is a disk.
  static func writeAtomically(_ data: Data, to path: String) throws {
    let temporary = path + ".new"
    let file = try OwnedDescriptor(opening: temporary, flags: O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
    try data.withUnsafeBytes { bytes in try writeAll(file.raw, bytes, temporary) }
    try syscallChecked("rename", "\(temporary) -> \(path)") { rename(temporary, path) }
  }

  static func read(_ path: String) throws -> DumpRecord {
    try JSONDecoder().decode(DumpRecord.self, from: Data(PseudoFile.readBytes(path)))
  }
}

extension DumpRecord {
  /// Whether the ckcont that wrote this record still runs (same pid, same start time).
  var isOwnerAlive: Bool {
    ProcStat.read(pid: ckcontPid)?.startTime == ckcontStartTime
  }

  /// Whether `pid` is still the process this record saw.
  func isSame(_ process: Process) -> Bool {
    ProcStat.read(pid: process.pid)?.startTime == process.startTime
  }
}
