import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// Sockets whose restore is more than a socket(2) call: unix connections made again as
/// socketpairs with what waited in them, and what TCP_REPAIR needs written into an
/// established connection's queues.
extension FileBatch {
  /// This end of a connected unix socket: one socketpair(2) is made for it and its peer the
  /// first time either is needed (its other end held for whoever needs the peer), fetched
  /// from the process holding it afterwards. Bytes that waited in it are written into its
  /// peer end, so that they wait in it again.
  func socketPairEnd(_ socket: SocketImage) throws -> Int64 {
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
    // With descriptors in flight, once every process has its descriptors: see PassedInFlight.
    if !waiting.isEmpty, socket.passed == nil, shared.filledSockets.insert(inode).inserted {
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

/// Datagrams that waited in unix datagram sockets no peer was connected to (a server bound to
/// a name, its clients sending to it), and in UDP sockets: sent to it again, in order, each
/// from a socket of the name (address) that sent it, so that a reply finds its way. A sender
/// the container still holds sends its own; a sender gone since is played by a socket of
/// ckcont's bound to its name (an unnamed one for an unnamed sender).
enum WaitingDatagrams {
  static func deliver(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: @escaping (String) -> Void) throws {
    try deliverUnix(tasks, injectors: injectors, log: log)
    try deliverUDP(tasks, injectors: injectors, log: log)
  }

  private static func deliverUnix(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: @escaping (String) -> Void) throws {
    var holders: [Data: (hostPid: Int32, fd: Int32)] = [:]
    var receivers: [(socket: SocketImage, hostPid: Int32, fd: Int32)] = []
    var seen: Set<UInt64> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.family == AF_UNIX, socket.type == Int32(SOCK_DGRAM.rawValue) else { continue }
        if let name = socket.address, holders[name] == nil { holders[name] = (injector.pid, descriptor.fd) }
        if socket.peerInode == nil, socket.messages != nil, let inode = socket.inode, seen.insert(inode).inserted {
          receivers.append((socket, injector.pid, descriptor.fd))
        }
      }
    }
    for receiver in receivers {
      guard let name = receiver.socket.address, let messages = receiver.socket.messages, let senders = receiver.socket.senders else { continue }
      let destination = sockaddrUnix(name)
      // Names are resolved as the container sees them: abstract ones in its network
      // namespace, paths under its root (a thread of its own, chrooted there).
      let root = "/proc/\(receiver.hostPid)/root"
      try NamespaceThread.run(in: "net", of: receiver.hostPid) {
        guard ck_unshare(Int32(CK_CLONE_FS)) == 0 else { throw SyscallError("unshare", "CLONE_FS", .init(rawValue: errno)) }
        try syscallChecked("chroot", root) { chroot(root) }
        try syscallChecked("chdir", "/ under \(root)") { chdir("/") }
        for (message, sender) in zip(messages, senders) {
          let fd = try senderSocket(sender, holders: holders, log: log)
          defer { close(fd) }
          try message.withUnsafeBytes { bytes in
            _ = try destination.withUnsafeBytes { address in
              try syscallChecked("sendto", "a datagram that waited in socket:[\(receiver.socket.inode ?? 0)]") {
                sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL), address.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
              }
            }
          }
        }
      }
    }
  }

  /// Datagrams that waited in UDP sockets: sent to each again in order, from a thread in the
  /// container's network namespace, each from its sender's address: the container's socket
  /// bound there, else a socket of ckcont's bound there (IP_FREEBIND: the address need not be
  /// local), else an unbound one. A socket bound to any address gets them on loopback.
  private static func deliverUDP(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: @escaping (String) -> Void) throws {
    // UDP and UDP-Lite have ports of their own: a sender is found by protocol and address.
    var holders: [UDPEnd: (hostPid: Int32, fd: Int32)] = [:]
    var receivers: [(socket: SocketImage, hostPid: Int32)] = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.family == AF_INET || socket.family == AF_INET6,
          socket.type == Int32(SOCK_DGRAM.rawValue), let address = socket.address
        else { continue }
        let end = UDPEnd(protocolNumber: socket.protocolNumber, address: address)
        if holders[end] == nil { holders[end] = (injector.pid, descriptor.fd) }
        // The same socket held twice (inherited) was dumped twice alike: its datagrams go once.
        if socket.messages != nil, !receivers.contains(where: { $0.socket == socket }) { receivers.append((socket, injector.pid)) }
      }
    }
    for receiver in receivers {
      guard var destination = receiver.socket.address, let messages = receiver.socket.messages, let senders = receiver.socket.senders
      else { continue }
      let family = receiver.socket.family
      // Bound to any address: loopback reaches it.
      if family == AF_INET, destination[destination.startIndex + 4..<destination.startIndex + 8].allSatisfy({ $0 == 0 }) {
        destination.replaceSubrange(destination.startIndex + 4..<destination.startIndex + 8, with: [127, 0, 0, 1])
      } else if family == AF_INET6, destination[destination.startIndex + 8..<destination.startIndex + 24].allSatisfy({ $0 == 0 }) {
        destination[destination.startIndex + 23] = 1
      }
      let target = destination
      try NamespaceThread.run(in: "net", of: receiver.hostPid) {
        for (message, sender) in zip(messages, senders) {
          let fd = try udpSender(
            UDPEnd(protocolNumber: receiver.socket.protocolNumber, address: sender), family: family, holders: holders, log: log)
          defer { close(fd) }
          try message.withUnsafeBytes { bytes in
            _ = try target.withUnsafeBytes { address in
              try syscallChecked("sendto", "a datagram that waited for \(SocketImage.text(target) ?? "?")") {
                sendto(fd, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL), address.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
              }
            }
          }
        }
      }
    }
  }

  /// A UDP or UDP-Lite socket's protocol and address.
  private struct UDPEnd: Hashable {
    var protocolNumber: Int32
    var address: Data
  }

  /// A socket of ckcont's to send from as `end` (a UDP-Lite one covers the whole datagram
  /// with its checksum, which any coverage the receiver demands accepts).
  private static func udpSender(_ end: UDPEnd, family: Int32, holders: [UDPEnd: (hostPid: Int32, fd: Int32)], log: (String) -> Void) throws -> Int32 {
    if let holder = holders[end] { return try copyOfDescriptor(holder.fd, of: holder.hostPid) }
    let sender = end.address
    let fd = try syscallChecked("socket", "a UDP socket") {
      socket(family, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), end.protocolNumber)
    }
    var one: Int32 = 1
    // IP_FREEBIND / IPV6_FREEBIND: bind to an address this namespace does not have.
    _ = family == AF_INET
      ? setsockopt(fd, Int32(IPPROTO_IP), 15, &one, socklen_t(MemoryLayout<Int32>.size))
      : setsockopt(fd, Int32(IPPROTO_IPV6), 78, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = sender.withUnsafeBytes { bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
    if bound != 0 {
      log("a datagram's sender \(SocketImage.text(sender) ?? "?") could not be bound again (\(String(cString: strerror(errno)))): it comes from another port")
    }
    return fd
  }

  /// A descriptor of ckcont's to send from as `sender`: the container's socket of that name,
  /// else a new one bound to it, else (unnamed, or the name taken) an unnamed one.
  private static func senderSocket(_ sender: Data, holders: [Data: (hostPid: Int32, fd: Int32)], log: (String) -> Void) throws -> Int32 {
    if !sender.isEmpty, let holder = holders[sender] { return try copyOfDescriptor(holder.fd, of: holder.hostPid) }
    let fd = try syscallChecked("socket", "a unix datagram socket") { socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0) }
    if !sender.isEmpty {
      let address = sockaddrUnix(sender)
      let bound = address.withUnsafeBytes { bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count)) }
      if bound != 0 {
        log("a datagram's sender \(SocketImage.text(sender) ?? "?") could not be named again (\(String(cString: strerror(errno)))): it comes unnamed")
      }
    }
    return fd
  }

  /// struct sockaddr_un of a name as sock_diag gives it (sun_path bytes).
  private static func sockaddrUnix(_ name: Data) -> [UInt8] {
    withUnsafeBytes(of: UInt16(AF_UNIX)) { Array($0) } + Array(name)
  }
}

/// What waited in connected unix sockets together with descriptors in flight (SCM_RIGHTS):
/// written into each through its peer once every process has its descriptors, the
/// descriptors passed with the same pieces as before, taken from the processes that hold
/// them (``Dump/resolvePassed``).
enum PassedInFlight {
  static func deliver(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var holders: [UInt64: (hostPid: Int32, fd: Int32)] = [:]
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        if let inode = descriptor.socket?.inode, holders[inode] == nil { holders[inode] = (injector.pid, descriptor.fd) }
      }
    }
    var done: Set<UInt64> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let passed = socket.passed, let inode = socket.inode, let peerInode = socket.peerInode,
          done.insert(inode).inserted
        else { continue }
        guard let peer = holders[peerInode] else {
          throw CKError(.failed, "socket:[\(inode)] has descriptors in flight but no process holds its peer socket:[\(peerInode)]")
        }
        let ours = try copyOfDescriptor(peer.fd, of: peer.hostPid)
        defer { close(ours) }
        // Pieces: each message, or the stream cut where descriptors are attached.
        var pieces: [(bytes: Data, passed: [DescriptorReference])] = []
        if socket.type == Int32(SOCK_STREAM.rawValue) {
          let queued = socket.queued ?? Data()
          // A read ends after the piece descriptors came with: it is sent alone again.
          let cuts = Set([0, queued.count] + passed.flatMap { [$0.at, $0.at + ($0.length ?? 0)] }).sorted()
          for (start, end) in zip(cuts, cuts.dropFirst()) where end > start {
            let attached = passed.first { $0.at == start }?.descriptors ?? []
            pieces.append((queued.subdata(in: queued.startIndex + start..<queued.startIndex + end), attached))
          }
        } else {
          for (index, message) in (socket.messages ?? []).enumerated() {
            pieces.append((message, passed.first { $0.at == index }?.descriptors ?? []))
          }
        }
        for piece in pieces {
          var fds: [Int32] = []
          defer { for fd in fds { close(fd) } }
          for reference in piece.passed {
            if let throughPid = reference.throughPid, let throughFd = reference.throughFd, let flags = reference.flags {
              // A pipe end only the message held: a new end of the same pipe, opened through
              // the one a process holds; without waiting for the other side, as it was made.
              guard let holder = injectors[throughPid] else {
                throw CKError(.failed, "socket:[\(inode)]: a pipe in flight goes through process \(throughPid), which the bundle does not hold")
              }
              let path = "/proc/\(holder.pid)/fd/\(throughFd)"
              let fd = try syscallChecked("open", "\(path), a pipe end in flight in socket:[\(inode)]") {
                open(path, flags | O_NONBLOCK | O_CLOEXEC)
              }
              fds.append(fd)
              if flags & O_NONBLOCK == 0 { _ = fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) }
              continue
            }
            if let path = reference.path, let flags = reference.flags {
              // A file only the message held: opened again (new, so nothing shares it).
              let fd = try syscallChecked("open", "\(path), in flight in socket:[\(inode)]") { open(path, flags | O_CLOEXEC) }
              fds.append(fd)
              if let position = reference.position, position > 0 {
                try syscallChecked("lseek", path) { lseek(fd, off_t(position), SEEK_SET) }
              }
              continue
            }
            guard let holder = injectors[reference.pid] else {
              throw CKError(.failed, "socket:[\(inode)]: a descriptor in flight belongs to process \(reference.pid), which the bundle does not hold")
            }
            fds.append(try copyOfDescriptor(reference.fd, of: holder.pid))
          }
          try piece.bytes.withUnsafeBytes { bytes in
            var sent = 0
            repeat {
              // The descriptors go with the first bytes of the piece, as they came.
              let result: Int
              if sent == 0 && !fds.isEmpty {
                result = ck_send_with_fds(ours, bytes.baseAddress, bytes.count, fds, Int32(fds.count))
              } else {
                let n = send(ours, bytes.baseAddress.map { $0 + sent }, bytes.count - sent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                result = n < 0 ? -Int(errno) : n
              }
              guard result > 0 || (result == 0 && bytes.isEmpty) else {
                throw SyscallError(
                  "sendmsg", "what waited in socket:[\(inode)] with descriptors in flight (\(sent) of \(bytes.count) bytes in)",
                  .init(rawValue: result < 0 ? Int32(-result) : EAGAIN))
              }
              sent += result
            } while sent < bytes.count
          }
        }
      }
    }
  }

}
