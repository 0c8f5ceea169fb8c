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

  /// A pidfd names a process by its host pid while captured: the image keeps the pid inside.
  static func nameTargetsInside(_ task: inout Dump.CapturedTask, innerPid: [Int32: Int32]) throws {
    for (slot, descriptor) in task.files.descriptors.enumerated() where descriptor.kind == .pidfd {
      guard let host = descriptor.pidfdTarget, let inner = innerPid[host] else {
        throw CKError(
          .failed,
          "task \(task.hostPid): fd \(descriptor.fd) is a pidfd of process \(descriptor.pidfdTarget ?? 0), outside the container",
          hint: "ckcont recreates pidfds of the container's own processes only")
      }
      task.files.descriptors[slot].pidfdTarget = inner
    }
  }
}

extension FileBatch {
  /// A pidfd of a process of the container (by its pid inside).
  func preparePidfd(_ descriptor: DescriptorImage) throws {
    guard let target = descriptor.pidfdTarget else { return }
    let made = batch.add(
      .pidfdOpen(target, descriptor.flags & O_NONBLOCK), "pidfd_open(\(target)) fd \(descriptor.fd)")
    prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
  }
}
