import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// Sockets whose restore is more than a socket(2) call: unix connections made again as
/// socketpairs with what waited in them, and what TCP_REPAIR needs written into an
/// established connection's queues.
extension FileRestore {
  /// This end of a connected unix socket: one socketpair(2) is made for it and its peer the
  /// first time either is needed (its other end held for whoever needs the peer), fetched
  /// from the process holding it afterwards. Bytes that waited in it are written into its
  /// peer end, so that they wait in it again.
  func socketPairEnd(_ socket: SocketImage, prepared: inout Prepared) throws -> Int64 {
    guard let inode = socket.inode, let peerInode = socket.peerInode else { throw CKError(.failed, "a unix socket without its inodes") }
    var end: Int64
    if let holder = shared.socketEnds[inode] {
      end = holder.pid == pid ? holder.fd : try fetch(holder.fd, from: holder.pid, to: prepared.takeHigh())
    } else {
      injector.resetData()
      let pair = try injector.reserve(8)
      try injector.call(
        "socketpair for socket:[\(inode)]", SyscallNumber.socketpair, UInt64(AF_UNIX),
        UInt64(socket.type | Int32(SOCK_CLOEXEC.rawValue)), 0, pair)
      let fds = try injector.read(8, at: pair).withUnsafeBytes {
        ($0.load(as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self))
      }
      end = try move(Int64(fds.0), to: prepared.takeHigh())
      let peer = try move(Int64(fds.1), to: prepared.takeHigh())
      shared.socketEnds[peerInode] = (pid, injector.pid, peer)
      if socket.peerOutside == true {
        // The peer outside: it writes what waited, then goes (closed with the high fds).
        try fill(socket, inode: inode, through: (injector.pid, peer))
        shared.socketEnds[peerInode] = nil
        return end
      }
    }
    shared.socketEnds[inode] = (pid, injector.pid, end)
    if let peer = shared.socketEnds[peerInode] { try fill(socket, inode: inode, through: (peer.hostPid, peer.fd)) }
    return end
  }

  /// Writes what waited in socket `inode` into it, once, through its peer (`fd` of the task
  /// with host pid `hostPid`).
  private func fill(_ socket: SocketImage, inode: UInt64, through peer: (hostPid: Int32, fd: Int64)) throws {
    let waiting = (socket.queued.map { [$0] } ?? []) + (socket.messages ?? [])
    if !waiting.isEmpty, shared.filledSockets.insert(inode).inserted {
      try withOurCopy(of: Int32(peer.fd), in: peer.hostPid) { ours in
        // A stream's bytes may go in several sends; a message must go in one.
        for message in waiting {
          try message.withUnsafeBytes { bytes in
            var done = 0
            repeat {
              done += try syscallChecked("send", "what waited in socket:[\(inode)]") {
                send(ours, bytes.baseAddress.map { $0 + done }, bytes.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
              }
            } while done < bytes.count
          }
        }
      }
    }
  }

  /// The queues of a connection in repair mode, then its window: in repair mode a write to
  /// the send queue queues without sending, one to the receive queue is taken as received.
  /// The receive queue goes in pieces the kernel takes whole (a write there may be short).
  func fillQueues(_ socket: Int32, _ tcp: TCPConnectionImage) throws {
    func set(_ name: Int32, _ bytes: [UInt8], _ what: String) throws {
      try syscallChecked("setsockopt", "\(what) of a TCP connection") {
        bytes.withUnsafeBytes { setsockopt(socket, 6 /* IPPROTO_TCP */, name, $0.baseAddress, socklen_t($0.count)) }
      }
    }
    func int(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    for (queue, bytes, what) in [(UInt32(2), tcp.sendQueue, "send queue"), (1, tcp.receiveQueue, "receive queue")] where !bytes.isEmpty {
      try set(TCPRepair.queue, int(queue), "TCP_REPAIR_QUEUE")
      try bytes.withUnsafeBytes { all in
        var done = 0
        while done < all.count {
          let piece = min(all.count - done, 64 << 10)
          let n = try syscallChecked("write", "the \(what) of a TCP connection (\(done) of \(all.count) bytes in)") {
            Glibc.write(socket, all.baseAddress! + done, piece)
          }
          guard n > 0 else { throw CKError(.failed, "the \(what) of a TCP connection took no more bytes after \(done) of \(all.count)") }
          done += n
        }
      }
    }
    try set(TCPRepair.window, tcp.window.flatMap(int), "TCP_REPAIR_WINDOW")
  }
}

/// The TCP_REPAIR socket options (linux/tcp.h), at level IPPROTO_TCP.
enum TCPRepair {
  static let mode: Int32 = 19
  static let queue: Int32 = 20
  static let queueSequence: Int32 = 21
  static let options: Int32 = 22
  static let timestamp: Int32 = 24
  static let window: Int32 = 29
}
