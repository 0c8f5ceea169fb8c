import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// epoll instances: their watches, by descriptor number, added again once every descriptor
// has its number.

/// epoll instances.
enum Epoll: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let targets = descriptor.epollTargets, targets.count <= 1 << 16,
      targets.allSatisfy({ $0.fd >= 0 && $0.fd < 1 << 20 })
    else { throw bad("fd \(descriptor.fd) is a bad epoll") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareEpoll(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "epoll watching fds \((descriptor.epollTargets ?? []).map { String($0.fd) }.joined(separator: ","))"
  }

  /// Every epoll instance watches only descriptors the process has (`fds`, all its numbers).
  static func validateTargets(_ descriptors: [DescriptorImage], fds: Set<Int32>, bad: (String) -> CKError)
    throws(CKError)
  {
    for descriptor in descriptors where descriptor.kind == .epoll {
      guard (descriptor.epollTargets ?? []).allSatisfy({ fds.contains($0.fd) }) else {
        throw bad("epoll fd \(descriptor.fd) watches a descriptor the process does not have")
      }
    }
  }
}

extension FileBatch {
  /// An epoll instance; its watches are added at install.
  func prepareEpoll(_ descriptor: DescriptorImage) throws {
    let made = batch.add("epoll_create1 fd \(descriptor.fd)", SyscallNumber.epollCreate1, .value(UInt64(O_CLOEXEC)))
    prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
    // Watches are added once every descriptor has its number (they are keyed by it).
    prepared.epollWatches.append((descriptor.fd, descriptor.epollTargets ?? []))
  }
}
