import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// epoll instances: their watches, by descriptor number, added again once every descriptor
// has its number.

extension FileBatch {
  /// An epoll instance; its watches are added at install.
  func prepareEpoll(_ descriptor: DescriptorImage) throws {
    let made = batch.add("epoll_create1 fd \(descriptor.fd)", SyscallNumber.epollCreate1, .value(UInt64(O_CLOEXEC)))
    prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
    // Watches are added once every descriptor has its number (they are keyed by it).
    prepared.epollWatches.append((descriptor.fd, descriptor.epollTargets ?? []))
  }
}
