import Cgroup
import Foundation
import Glibc
import Linux
import Synchronization

/// The directories a restore makes on the host (cgroups, the staging point of a root
/// filesystem), journaled before each is made. A restore that dies midway loses its tasks
/// (they are traced with PTRACE_O_EXITKILL), but its directories stay: the next ckcont
/// command that needs root removes them (``sweep()``).
struct RestoreRecord: Codable, Sendable {
  var ckcontPid: Int32
  var ckcontStartTime: UInt64
  /// In the order they were made (parents first).
  var directories: [String] = []
}

/// The journal file of one running restore.
public final class RestoreJournal: Sendable {
  let path: String
  private let record: Mutex<RestoreRecord>

  init() throws {
    path = "\(DumpJournal.directory)/restore-\(getpid()).json"
    let record = RestoreRecord(ckcontPid: getpid(), ckcontStartTime: ProcStat.read(pid: getpid())?.startTime ?? 0)
    try DumpJournal.makeDirectory()
    try DumpJournal.writeAtomically(try JSONEncoder().encode(record), to: path)
    self.record = Mutex(record)
  }

  /// Records `directory` before the caller makes it (only one that does not exist yet:
  /// recovery must never remove what the restore did not make).
  func willMake(_ directory: String) throws {
    try record.withLock { record in
      record.directories.append(directory)
      try DumpJournal.writeAtomically(try JSONEncoder().encode(record), to: path)
    }
  }

  /// The restore is over (done, or failed and cleaned up).
  func remove() { unlink(path) }

  /// Removes what restores that died left: their directories, children first (cgroups empty
  /// out as their killed tasks exit; one that still holds tasks is left), then the journal.
  /// Returns one line per restore swept, for the user (printed with or without -v).
  public static func sweep() -> [String] {
    var swept: [String] = []
    let names = (try? FileManager.default.contentsOfDirectory(atPath: DumpJournal.directory)) ?? []
    for name in names where name.hasPrefix("restore-") && name.hasSuffix(".json") {
      let path = DumpJournal.directory + "/" + name
      guard let data = try? PseudoFile.readBytes(path),
        let record = try? JSONDecoder().decode(RestoreRecord.self, from: Data(data)),
        ProcStat.read(pid: record.ckcontPid)?.startTime != record.ckcontStartTime
      else { continue }
      for directory in record.directories.reversed() {
        for _ in 0..<100 {
          if rmdir(directory) == 0 || errno == ENOENT || errno == ENOTDIR { break }
          usleep(10_000)
        }
      }
      unlink(path)
      swept.append(
        "removed what the restore of ckcont \(record.ckcontPid) made before it died: \(record.directories.joined(separator: ", "))"
      )
    }
    return swept
  }
}
