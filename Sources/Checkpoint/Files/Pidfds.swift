import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// pidfds of the container's own processes, opened again by their pid inside.

extension FileBatch {
  /// A pidfd of a process of the container (by its pid inside).
  func preparePidfd(_ descriptor: DescriptorImage) throws {
    guard let target = descriptor.pidfdTarget else { return }
    let made = batch.add(
      "pidfd_open(\(target)) fd \(descriptor.fd)", SyscallNumber.pidfdOpen, .value(UInt64(target)),
      .value(UInt64(descriptor.flags & O_NONBLOCK)))
    prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
  }
}
