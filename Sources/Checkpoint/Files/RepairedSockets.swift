import CKShim
import Foundation
import Glibc

/// TCP connections the dump put into repair mode, each held by a descriptor of ckcont's own
/// (pidfd_getfd). Repair mode is what lets the dump read a connection, and what lets it end
/// without a word to the peer: once the container is killed, closing these descriptors drops
/// the connections silently (no FIN, no RST), for the restore to take them up again. A
/// container that runs on gets them back out of repair mode.
final class RepairedSockets: @unchecked Sendable {
  private let lock = NSLock()
  private var fds: [(fd: Int32, reuseAddress: Bool)] = []
  /// Where each connection is journaled before it enters repair mode (nil in tests).
  private let journal: DumpJournal?

  init(journal: DumpJournal?) {
    self.journal = journal
  }

  /// Takes over `fd`, a copy of process `pid`'s descriptor `target`, about to enter repair
  /// mode, which had SO_REUSEADDR set if `reuseAddress`: journaled first, so that
  /// ``DumpRecovery`` takes it out of repair mode should ckcont die.
  func add(_ fd: Int32, pid: Int32, target: Int32, reuseAddress: Bool) throws {
    try journal?.update { $0.repairedSockets.append(.init(pid: pid, fd: target, reuseAddress: reuseAddress)) }
    lock.withLock { fds.append((fd, reuseAddress)) }
  }

  /// The container runs on: repair mode off (the kernel probes the window, which resyncs the
  /// peer) and SO_REUSEADDR as it was, descriptors closed.
  func release() {
    for (fd, reuseAddress) in take() {
      _ = ck_tcp_repair_off(fd, reuseAddress ? 1 : 0)
      close(fd)
    }
  }

  /// The container is dead: the connections end silently.
  func dropSilently() {
    for (fd, _) in take() { close(fd) }
  }

  private func take() -> [(fd: Int32, reuseAddress: Bool)] {
    lock.withLock {
      defer { fds = [] }
      return fds
    }
  }

  deinit { release() }
}
