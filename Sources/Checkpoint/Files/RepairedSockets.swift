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
  private var fds: [Int32] = []

  /// Takes over `fd`, a socket in repair mode.
  func add(_ fd: Int32) {
    lock.withLock { fds.append(fd) }
  }

  /// The container runs on: repair mode off (the kernel probes the window, which resyncs the
  /// peer), descriptors closed.
  func release() {
    for fd in take() {
      _ = ck_tcp_repair_off(fd)
      close(fd)
    }
  }

  /// The container is dead: the connections end silently.
  func dropSilently() {
    for fd in take() { close(fd) }
  }

  private func take() -> [Int32] {
    lock.withLock {
      defer { fds = [] }
      return fds
    }
  }

  deinit { release() }
}
