import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// pidfds of the container's own processes, opened again by their pid inside.

/// pidfds.
enum Pidfds: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let target = descriptor.pidfdTarget, target > 0, target <= 4_194_304 else {
      throw bad("fd \(descriptor.fd) is a bad pidfd")
    }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.preparePidfd(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "pidfd of process \(descriptor.pidfdTarget ?? 0)"
  }
}

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
