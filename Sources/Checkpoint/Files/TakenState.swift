import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Synchronization

/// What the dump takes from the running container and must give back if it runs on: TCP
/// connections put into repair mode, and terminal output read out of masters, each held by a
/// descriptor of ckcont's own (pidfd_getfd). Repair mode is what lets the dump read a
/// connection, and what lets it end without a word to the peer: once the container is
/// killed, closing these descriptors drops the connections silently (no FIN, no RST), for the
/// restore to take them up again. A container that runs on gets them back out of repair
/// mode, and its terminal output back into the masters.
final class TakenState: Sendable {
  /// What the dump took, added to by the threads that read /proc.
  private struct Taken {
    /// Raw numbers: this table owns them until ``release()`` or ``dropSilently()``.
    var fds: [(fd: Int32, reuseAddress: Bool)] = []
    var outputs: [(master: Int32, bytes: Data)] = []
    /// Terminals whose output was read out (devpts device, index): once, whoever holds them.
    var terminals: Set<[UInt64]> = []
  }
  private let taken = Mutex(Taken())
  /// Where each connection is journaled before it enters repair mode (nil in tests).
  private let journal: DumpJournal?

  init(journal: DumpJournal?) {
    self.journal = journal
  }

  /// Takes over `fd`, a copy of process `pid`'s descriptor `target`, about to enter repair
  /// mode, which had SO_REUSEADDR set if `reuseAddress`: journaled first, so that
  /// ``DumpRecovery`` takes it out of repair mode should ckcont die.
  func addRepaired(_ fd: consuming OwnedDescriptor, pid: Int32, target: Int32, reuseAddress: Bool) throws {
    try journal?.update { $0.repairedSockets.append(.init(pid: pid, fd: target, reuseAddress: reuseAddress)) }
    let kept = fd.take()
    taken.withLock { $0.fds.append((kept, reuseAddress)) }
  }

  /// Reads out what waits in terminal `terminal` (devpts device, index) through `master`, a
  /// copy of process `pid`'s descriptor `target`, once per terminal (nil the other times):
  /// kept, with a copy of `master`, and journaled, so that the output is written back if the
  /// container runs on, by ``DumpRecovery`` should ckcont die.
  func takeOutput(of terminal: [UInt64], through master: Int32, pid: Int32, target: Int32) throws -> Data? {
    guard taken.withLock({ $0.terminals.insert(terminal).inserted }) else { return nil }
    var buffer = [UInt8](repeating: 0, count: PtyImage.outputLimit)
    var error: Int32 = 0
    let count = ck_pty_take_output(master, &buffer, buffer.count, &error)
    let bytes = Data(buffer.prefix(count))
    let kept = OwnedDescriptor(adoptingValid: dup(master))
    if !bytes.isEmpty {
      try journal?.update {
        $0.terminalOutputs = ($0.terminalOutputs ?? []) + [.init(pid: pid, fd: target, bytes: bytes)]
      }
      if let kept {
        let master = kept.take()
        taken.withLock { $0.outputs.append((master, bytes)) }
      }
    }
    guard error == 0 else {
      throw CKError(
        .failed,
        error == -E2BIG
          ? "task \(pid): fd \(target): terminal \(terminal[1]) has more output waiting than ckcont keeps (\(PtyImage.outputLimit >> 10) KiB)"
          : "task \(pid): fd \(target): the output waiting in terminal \(terminal[1]) could not be read (\(String(cString: strerror(-error))))",
        hint: "checkpoint once the output was read")
    }
    return bytes
  }

  /// The container runs on: repair mode off (the kernel probes the window, which resyncs the
  /// peer) and SO_REUSEADDR as it was, terminal output back in place, descriptors closed.
  func release() {
    for (fd, reuseAddress) in take() {
      _ = ck_tcp_repair_off(fd, reuseAddress ? 1 : 0)
      close(fd)
    }
    for (master, bytes) in takeOutputs() {
      _ = bytes.withUnsafeBytes { ck_pty_put_output(master, $0.baseAddress, $0.count) }
      close(master)
    }
  }

  /// The container is dead: the connections end silently, the output goes with the bundle.
  func dropSilently() {
    for (fd, _) in take() { close(fd) }
    for (master, _) in takeOutputs() { close(master) }
  }

  private func takeOutputs() -> [(master: Int32, bytes: Data)] {
    taken.withLock { taken in
      defer { taken.outputs = [] }
      return taken.outputs
    }
  }

  private func take() -> [(fd: Int32, reuseAddress: Bool)] {
    taken.withLock { taken in
      defer { taken.fds = [] }
      return taken.fds
    }
  }

  deinit { release() }
}
