import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging
import Synchronization

// Sockets of every family share one descriptor kind (``SocketImage``): asked what they are
// through a copy of the descriptor, and made again with socket(2), their options, bound,
// listening or connected as they were. What is particular to a family lives in
// UnixSockets.swift, InetSockets.swift and NetlinkSockets.swift.

/// Sockets of every family.
enum Sockets: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard descriptor.socket?.isValid == true else { throw bad("fd \(descriptor.fd) is a bad socket") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareSocket(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    descriptor.socket?.description ?? "socket"
  }
}

extension FileCapture {
  /// What a socket is, asked through a copy of the descriptor (pidfd_getfd), then handed to
  /// its family's capture (unix, netlink, inet); any other family, or a raw socket, stops the
  /// dump rather than be lost.
  func captureSocket(fd: Int32, target: String, inode: UInt64, log: Logger) throws -> SocketImage {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: pid)
    var facts = ck_socket_facts()
    try negErrnoChecked("getsockopt", "task \(pid) fd \(fd)") { ck_socket_facts(ours.raw, &facts) }
    func refuse(_ what: String, _ hint: String = "close it before the checkpoint, or wait for support of this kind")
      -> CKError
    {
      CKError(.failed, "task \(pid): fd \(fd) is \(what) (\(target)), which ckcont cannot checkpoint yet", hint: hint)
    }
    if facts.family == AF_UNIX { return try captureUnixSocket(ours.raw, facts: facts, inode: inode, refuse: refuse) }
    if facts.family == AF_NETLINK { return captureNetlinkSocket(ours.raw, facts: facts, fd: fd, log: log) }
    if facts.family == AF_PACKET {
      return try capturePacketSocket(ours.raw, facts: facts, fd: fd, inode: inode, log: log, refuse: refuse)
    }
    guard facts.family == AF_INET || facts.family == AF_INET6 else {
      throw refuse("a socket of address family \(facts.family)")
    }
    guard [SOCK_STREAM, SOCK_DGRAM, SOCK_RAW].map({ Int32($0.rawValue) }).contains(facts.type) else {
      throw refuse("an internet socket of type \(facts.type)")
    }
    return try captureInetSocket(ours, facts: facts, fd: fd, inode: inode, target: target, refuse: refuse)
  }

  /// What waits in socket `ours`, peeked in order without taking it (ck_peek_messages): each
  /// datagram or seqpacket record apart (a stream in pieces ending where descriptors are
  /// attached), with its sender's address (struct sockaddr bytes; just the family for an
  /// unnamed unix sender) and, with `descriptors`, the descriptors passed with it as copies
  /// of ckcont's own (see ``Dump/resolvePassed``). `what` names the socket in refusals.
  static let peeks = Mutex(())

  func peekWaiting(_ ours: Int32, descriptors: Bool, what: String, refuse: (String, String) -> CKError) throws
    -> [(bytes: Data, sender: Data, passed: [Int32])]
  {
    let capacity = 16 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: capacity, alignment: 16)
    defer { buffer.deallocate() }
    let maxMessages = 4096
    let senderSize = 110  // sizeof(struct sockaddr_un), room for any address
    var senders = [UInt8](repeating: 0, count: maxMessages * senderSize)
    var senderLengths = [UInt32](repeating: 0, count: maxMessages)
    var lengths = [UInt32](repeating: 0, count: maxMessages)
    var passed = [Int32](repeating: -1, count: descriptors ? 4096 : 0)
    var passedCounts = [UInt32](repeating: 0, count: maxMessages)
    var count: Int32 = 0
    // SO_PEEK_OFF walks the queue: a socket two processes hold, captured by both at once,
    // would have its walks mixed. One peek at a time.
    let result = Self.peeks.withLock { _ in
      ck_peek_messages(
        ours, buffer.baseAddress, capacity, &lengths, Int32(maxMessages), &count, &senders, &senderLengths,
        &passed, Int32(passed.count), &passedCounts)
    }
    guard result == 0 else {
      for fd in passed where fd >= 0 { close(fd) }
      throw refuse(
        result == -EBADMSG
          ? "\(what) with control data waiting (credentials, IP_PKTINFO and the like) or a message cut short"
          : result == -E2BIG
            ? "\(what) with more messages or descriptors waiting than ckcont keeps (4096 each)"
            : "\(what) whose waiting messages could not be read (\(String(cString: strerror(-result))))",
        "checkpoint once they have been read")
    }
    var offset = 0
    var passedAt = 0
    return (0..<Int(count)).map { index in
      let length = Int(lengths[index])
      defer { offset += length }
      let sender = Data(senders[index * senderSize..<index * senderSize + min(Int(senderLengths[index]), senderSize)])
      let own = descriptors ? Array(passed[passedAt..<passedAt + Int(passedCounts[index])]) : []
      passedAt += own.count
      return (Data(UnsafeRawBufferPointer(rebasing: buffer[offset..<offset + length])), sender, own)
    }
  }
}

extension FileBatch {
  /// A socket of any family (see the families' own files).
  func prepareSocket(_ descriptor: DescriptorImage) throws {
    guard let socket = descriptor.socket else { return }
    prepared.descriptions[descriptor.fd] = try queueSocket(socket, flags: descriptor.flags, fd: descriptor.fd)
  }

  /// A new socket with its options for bind (the rest: ``SocketOptions/restore``), bound, listening or connected as it was, at a high
  /// number.
  func queueSocket(_ socket: SocketImage, flags: Int32, fd: Int32) throws -> Int64 {
    if let tcp = socket.tcp { return try queueConnection(socket, tcp, flags: flags, fd: fd) }
    // A packet socket's ethertype goes to socket(2) in network order.
    let protocolNumber =
      socket.family == AF_PACKET
      ? Int32(UInt16(truncatingIfNeeded: socket.protocolNumber).bigEndian) : socket.protocolNumber
    let made = batch.add(
      .socket(
        family: socket.family, type: socket.type | Int32(SOCK_CLOEXEC.rawValue) | flags & O_NONBLOCK,
        protocol: protocolNumber),
      "socket fd \(fd)")
    try queueOptionsBeforeBind(socket, made: made, fd: fd)
    if socket.family == AF_PACKET { return try queuePacketSocket(made, socket, fd: fd) }
    if socket.family == AF_NETLINK, let address = socket.address {
      return try queueNetlinkBind(made, to: address, socket, fd: fd)
    }
    var putBack: (() throws -> Void)?
    if let address = socket.address {
      // A unix name is sun_path: after the two bytes of sun_family.
      let sockaddr = socket.family == AF_UNIX ? Data([UInt8(AF_UNIX), 0]) + address : address
      if socket.nameUnlinked == true {
        putBack = try moveAsideForUnlinkedName(address, fd: fd)
      } else if socket.family == AF_UNIX {
        try removeStaleSocketFile(address)
      }
      let at = try sockaddr.withUnsafeBytes { try injector.put($0) }
      batch.add(.bind(.result(made), at, length: sockaddr.count), "bind fd \(fd) to \(socket.description)")
      if socket.nameUnlinked == true {
        let path = try injector.put(string: String(decoding: address.prefix { $0 != 0 }, as: UTF8.self))
        batch.add(.unlink(path), "unlink the file of fd \(fd)'s name")
      }
    }
    if let backlog = socket.backlog {
      batch.add(.listen(.result(made), backlog: backlog), "listen fd \(fd)")
    }
    // A unix datagram socket connects to its peer's name once every name is bound
    // (``DatagramConnections``); a UDP socket's peer is only a default address.
    // A TCP client that waited in a queue connects once its listener listens
    // (``TCPPendingConnections``).
    if let peer = socket.peer, socket.family != AF_UNIX, socket.awaitsAccept != true {
      let at = try peer.withUnsafeBytes { try injector.put($0) }
      batch.add(.connect(.result(made), at, length: peer.count), "connect fd \(fd)")
    }
    let high = queueMoveHigh(made, what: "fd \(fd)")
    if let putBack {
      try runQueued()
      try putBack()
    }
    return high
  }
}

/// Datagrams that waited in unix datagram sockets no peer was connected to (a server bound to
/// a name, its clients sending to it), and in UDP sockets: sent to it again, in order, each
/// from a socket of the name (address) that sent it, so that a reply finds its way. A sender
/// the container still holds sends its own; a sender gone since is played by a socket of
/// ckcont's bound to its name (an unnamed one for an unnamed sender).
enum WaitingDatagrams {
  static func deliver(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: Logger)
    throws
  {
    try deliverUnix(tasks, injectors: injectors, log: log)
    try deliverUDP(tasks, injectors: injectors, log: log)
  }
}
