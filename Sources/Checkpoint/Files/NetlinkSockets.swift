import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

// Netlink sockets: bound again to their port id (where it is free) and groups.

extension FileCapture {
  /// A netlink socket: bound to its port id and multicast groups again; messages waiting in
  /// it (notices the process had not read yet) are not kept, as in CRIU.
  func captureNetlinkSocket(_ ours: Int32, facts: ck_socket_facts, fd: Int32, log: Logger) -> SocketImage {
    var waiting: Int32 = 0
    if ioctl(ours, UInt(FIONREAD), &waiting) == 0, waiting > 0 {
      log.debug("task \(pid): fd \(fd): \(waiting) bytes waiting in a netlink socket are not kept")
    }
    let address = withUnsafeBytes(of: facts.address) { Data($0.prefix(Int(facts.address_length))) }
    return SocketImage(
      family: facts.family, type: facts.type, protocolNumber: facts.protocol,
      address: address.count == 12 ? address : nil, peer: nil,
      backlog: nil, options: [])
  }
}

extension FileBatch {
  /// Netlink: its port id again where it is free (in a new network namespace it is),
  /// else one the kernel picks; its groups either way.
  func queueNetlinkBind(_ made: Int, to address: Data, _ socket: SocketImage, fd: Int32) throws -> Int64 {
    let at = try address.withUnsafeBytes { try injector.put($0) }
    var anyPort = address
    anyPort.replaceSubrange(4..<8, with: [0, 0, 0, 0])
    let any = try anyPort.withUnsafeBytes { try injector.put($0) }
    batch.add(.bind(.result(made), at, length: 12), "bind fd \(fd) to \(socket.description)", mayFail: true)
    batch.add(.bind(.result(made), any, length: 12), "bind fd \(fd) to any port", mayFail: true)
    return queueMoveHigh(made, what: "fd \(fd)")
  }
}
