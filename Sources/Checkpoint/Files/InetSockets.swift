import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

// Internet sockets (TCP, UDP, UDP-Lite; IPv4 and IPv6): made anew when not connected;
// established TCP connections read and taken up again in repair mode (TCP_REPAIR, as
// CRIU's sk-tcp.c); datagrams waiting in UDP sockets sent again from their senders.

extension FileCapture {
  /// An internet socket: one without a connection is recreated, an established TCP
  /// connection is read in repair mode (and kept there: its copy goes to ``TakenState``).
  func captureInetSocket(
    _ ours: consuming OwnedDescriptor, facts: ck_socket_facts, fd: Int32, inode: UInt64, target: String,
    refuse: (String, String) -> CKError
  ) throws -> SocketImage {
    // The number stays valid once an established connection's copy went to `taken`.
    let raw = ours.raw
    func data<T>(_ tuple: T, _ length: UInt32) -> Data {
      withUnsafeBytes(of: tuple) { Data($0.prefix(Int(length))) }
    }
    let address = data(facts.address, facts.address_length)
    // sin_port and sin6_port both follow the 2-byte family: port 0 was never bound.
    let bound = address.count >= 4 && (address[2] != 0 || address[3] != 0)
    var peer: Data?
    var acceptQueue: Int?
    if facts.type == Int32(SOCK_STREAM.rawValue) {
      if facts.listening != 0 {
        // Their clients, if the container's, connect again: see ``Dump/markPendingTCP``.
        if facts.waiting > 0 { acceptQueue = Int(facts.waiting) }
      } else if facts.tcp_state == TCP_ESTABLISHED || TCPConnectionImage.closingStates[facts.tcp_state] != nil {
        return try captureConnection(ours, facts: facts, fd: fd, address: address, refuse: refuse)
      } else if facts.tcp_state == TCP_CLOSE && ck_tcp_segments_out(raw) > 0 {
        // Closed, but once connected (reset, or ended): reads say so (0 or ECONNRESET), which
        // a new socket would not (ENOTCONN).
        throw refuse(
          "a TCP connection that has ended (\(SocketImage.text(address) ?? "unbound"))",
          "close it before the checkpoint")
      } else if facts.tcp_state != TCP_CLOSE {
        // Never connected (closed ones that were are above).
        let states = [
          1: "established", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 6: "TIME-WAIT",
          8: "CLOSE-WAIT", 9: "LAST-ACK", 11: "CLOSING",
        ]
        let ends = [address, data(facts.peer, facts.peer_length)].compactMap(SocketImage.text).joined(separator: " to ")
        throw refuse(
          "a TCP connection (\(states[Int(facts.tcp_state)] ?? "state \(facts.tcp_state)"), \(ends))",
          "checkpoint when no connection is open")
      }
    } else {
      if facts.peer_length > 0 { peer = data(facts.peer, facts.peer_length) }
      if facts.type == Int32(SOCK_RAW.rawValue) {
        if facts.waiting > 0 {
          // Packets came from the network, which would not send them again.
          throw refuse("a raw socket with packets waiting", "checkpoint once the program has read them")
        }
        peer = try rawPeer(family: facts.family, inode: inode)
      }
      if SocketImage.pingProtocols.contains(facts.protocol), facts.waiting > 0 {
        // Replies come from whom the program pinged: none would send them again.
        throw refuse("a ping socket with replies waiting", "checkpoint once the program has read them")
      }
    }
    let options = try SocketOptions.capture(raw, facts, refuse: refuse)
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: facts.protocol, address: bound ? address : nil,
      peer: peer,
      backlog: facts.listening != 0 ? facts.backlog : nil, options: options)
    image.acceptQueue = acceptQueue
    if facts.type == Int32(SOCK_DGRAM.rawValue), facts.waiting > 0 {
      // Datagrams waiting: peeked with their senders' addresses, sent to it again from them.
      let waiting = try peekWaiting(raw, descriptors: false, what: "a UDP socket", refuse: refuse)
      image.messages = waiting.map(\.bytes)
      image.senders = waiting.map(\.sender)
    }
    return image
  }

  /// The address a raw socket is connected to, nil when it is not: getpeername refuses a raw
  /// socket (no port: ENOTCONN), /proc/<pid>/net/raw shows it (state 01 and rem_address,
  /// the __be32 words printed as host-order hex).
  private func rawPeer(family: Int32, inode: UInt64) throws -> Data? {
    let table = "/proc/\(pid)/net/" + (family == AF_INET ? "raw" : "raw6")
    let lines = try PseudoFile.read(table).split(separator: "\n").dropFirst()
    guard
      let words = lines.map({ $0.split(separator: " ") }).first(where: { $0.count > 9 && UInt64($0[9]) == inode })
    else {
      throw CKError(.failed, "task \(pid): its raw socket (inode \(inode)) is not in \(table)")
    }
    guard words[3] == "01", let colon = words[2].firstIndex(of: ":") else { return nil }
    let hex = words[2][..<colon]
    var address: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
      let next = hex.index(index, offsetBy: 8, limitedBy: hex.endIndex) ?? hex.endIndex
      guard let word = UInt32(hex[index..<next], radix: 16) else { return nil }
      withUnsafeBytes(of: word.littleEndian) { address += $0 }
      index = next
    }
    var sockaddr: [UInt8] = withUnsafeBytes(of: UInt16(family).littleEndian) { Array($0) } + [0, 0]
    if family == AF_INET {
      guard address.count == 4 else { return nil }
      sockaddr += address + [UInt8](repeating: 0, count: 8)
    } else {
      guard address.count == 16 else { return nil }
      sockaddr += [0, 0, 0, 0] + address + [0, 0, 0, 0]
    }
    return Data(sockaddr)
  }

  /// An established (or closing) TCP connection, read in repair mode and kept there: its
  /// copy goes to ``TakenState``, which lets it go once the dump is over.
  private func captureConnection(
    _ ours: consuming OwnedDescriptor, facts: ck_socket_facts, fd: Int32, address: Data,
    refuse: (String, String) -> CKError
  ) throws -> SocketImage {
    let raw = ours.raw
    let options = try SocketOptions.capture(raw, facts, tunedByKernel: true, refuse: refuse)
    try taken.addRepaired(ours, pid: pid, target: fd, reuseAddress: options.reusesAddress)
    let limit = TCPConnectionImage.queueLimit
    // Most queues are short: a small buffer first, the largest one if that is too small.
    var capacity = 64 << 10
    var sendQueue = [UInt8](repeating: 0, count: capacity)
    var receiveQueue = [UInt8](repeating: 0, count: capacity)
    var state = ck_tcp_state()
    var result = ck_tcp_repair_dump(raw, &state, &sendQueue, &receiveQueue, capacity)
    FaultInjection.point("dump:repair")
    if result == -E2BIG {
      capacity = limit
      sendQueue = [UInt8](repeating: 0, count: capacity)
      receiveQueue = [UInt8](repeating: 0, count: capacity)
      result = ck_tcp_repair_dump(raw, &state, &sendQueue, &receiveQueue, capacity)
    }
    guard result == 0 else {
      throw refuse(
        result == -E2BIG
          ? "a TCP connection with more than \(limit >> 10) KiB waiting in a queue"
          : "a TCP connection that TCP_REPAIR cannot read (\(String(cString: strerror(-result))))",
        "checkpoint when less data is in flight")
    }
    var tcp = TCPConnectionImage(
      sendSequence: state.send_seq, receiveSequence: state.receive_seq,
      sendQueue: Data(sendQueue.prefix(Int(state.send_length))),
      receiveQueue: Data(receiveQueue.prefix(Int(state.receive_length))),
      options: state.options, sendWindowScale: state.send_wscale, receiveWindowScale: state.receive_wscale,
      mss: state.mss,
      timestamp: state.timestamp,
      window: withUnsafeBytes(of: state.window) { Array($0.bindMemory(to: UInt32.self)) })
    // Read in repair mode, so as it was when the socket stopped (not facts' earlier look).
    if state.state != TCP_ESTABLISHED {
      guard TCPConnectionImage.closingStates[state.state] != nil else {
        throw refuse("a TCP connection in state \(state.state) (closing)", "checkpoint when no connection is open")
      }
      tcp.state = state.state
    }
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: facts.protocol, address: address,
      peer: withUnsafeBytes(of: facts.peer) { Data($0.prefix(Int(facts.peer_length))) }, backlog: nil, options: options)
    image.tcp = tcp
    // Sent nothing its peer took: if that peer waits unaccepted, a new connection is as good.
    // (The kernel counts the SYN as the first byte acknowledged.)
    if ck_tcp_bytes_acked(raw) <= 1 && tcp.sendQueue.isEmpty && tcp.receiveQueue.isEmpty && tcp.state == nil {
      image.awaitsAccept = false
    }
    return image
  }
}

extension FileBatch {
  /// An established TCP connection, taken up where it was (TCP_REPAIR, as CRIU does): a
  /// socket in repair mode gets both sequence numbers, is bound and "connected" without a
  /// packet sent, has its options, timestamp, queued bytes and window set, and leaves
  /// repair mode (the kernel then probes the peer's window).
  func queueConnection(_ socket: SocketImage, _ tcp: TCPConnectionImage, flags: Int32, fd: Int32) throws -> Int64 {
    guard let local = socket.address, let peer = socket.peer else {
      throw CKError(.badInput, "fd \(fd): a TCP connection without its addresses")
    }
    let made = batch.add(
      .socket(
        family: socket.family, type: socket.type | Int32(SOCK_CLOEXEC.rawValue) | flags & O_NONBLOCK,
        protocol: socket.protocolNumber),
      "socket fd \(fd)")
    func set(_ what: String, _ level: Int32, _ name: Int32, _ bytes: [UInt8]) throws {
      let at = try injector.put(bytes)
      batch.add(.setsockopt(.result(made), level: level, name: name, at, length: bytes.count), "\(what) fd \(fd)")
    }
    let tcpLevel = Int32(IPPROTO_TCP)
    func int(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    // Options for bind first: SO_REUSEADDR would undo the forced reuse repair mode sets,
    // which lets the connection bind the port its listener holds. The rest come last
    // (``SocketOptions/restore``), with the buffer sizes the connection had.
    try queueOptionsBeforeBind(socket, made: made, fd: fd)
    let long = max(tcp.sendQueue.count, tcp.receiveQueue.count) > TCPConnectionImage.inBatchLimit
    if long {
      // Room for what was queued, which the default buffers of a new socket may not have
      // (the kernel doubles the size asked; forcing needs CAP_NET_ADMIN, which the task
      // still has).
      try set("SO_SNDBUFFORCE", SOL_SOCKET, SO_SNDBUFFORCE, int(UInt32(max(tcp.sendQueue.count, 64 << 10))))
      try set("SO_RCVBUFFORCE", SOL_SOCKET, SO_RCVBUFFORCE, int(UInt32(max(tcp.receiveQueue.count, 64 << 10))))
    }
    try set("TCP_REPAIR", tcpLevel, TCP_REPAIR, int(1))
    // The dumped sequence numbers are past the queued bytes; writing them back into the
    // queues below advances them again.
    try set("TCP_REPAIR_QUEUE send", tcpLevel, TCP_REPAIR_QUEUE, int(UInt32(TCP_SEND_QUEUE)))
    try set("TCP_QUEUE_SEQ send", tcpLevel, TCP_QUEUE_SEQ, int(tcp.sendSequence &- UInt32(tcp.sendQueue.count)))
    try set("TCP_REPAIR_QUEUE receive", tcpLevel, TCP_REPAIR_QUEUE, int(UInt32(TCP_RECV_QUEUE)))
    try set(
      "TCP_QUEUE_SEQ receive", tcpLevel, TCP_QUEUE_SEQ, int(tcp.receiveSequence &- UInt32(tcp.receiveQueue.count)))
    let localAt = try local.withUnsafeBytes { try injector.put($0) }
    batch.add(.bind(.result(made), localAt, length: local.count), "bind fd \(fd) to \(socket.description)")
    let peerAt = try peer.withUnsafeBytes { try injector.put($0) }
    batch.add(.connect(.result(made), peerAt, length: peer.count), "connect fd \(fd) (repair)")
    // struct tcp_repair_opt {code, value}: MSS always, then what both ends agreed on.
    let agreed = tcp.options
    var options = int(UInt32(TCPOPT_MAXSEG)) + int(tcp.mss)
    if agreed & UInt32(TCPI_OPT_WSCALE) != 0 {
      options += int(UInt32(TCPOPT_WINDOW)) + int(tcp.sendWindowScale | tcp.receiveWindowScale << 16)
    }
    if agreed & UInt32(TCPI_OPT_SACK) != 0 { options += int(UInt32(TCPOPT_SACK_PERMITTED)) + int(0) }
    if agreed & UInt32(TCPI_OPT_TIMESTAMPS) != 0 { options += int(UInt32(TCPOPT_TIMESTAMP)) + int(0) }
    try set("TCP_REPAIR_OPTIONS", tcpLevel, TCP_REPAIR_OPTIONS, options)
    if agreed & UInt32(TCPI_OPT_TIMESTAMPS) != 0 {
      try set("TCP_TIMESTAMP", tcpLevel, TCP_TIMESTAMP, int(tcp.timestamp))
    }
    if long {
      // The queues and the window from ckcont once the batch ran (``fillQueues``).
      let high = queueMoveHigh(made, what: "fd \(fd)")
      after.connections.append((high, tcp))
      return high
    }
    for (queue, bytes, what) in [
      (UInt32(TCP_SEND_QUEUE), tcp.sendQueue, "send"), (UInt32(TCP_RECV_QUEUE), tcp.receiveQueue, "receive"),
    ] where !bytes.isEmpty {
      try set("TCP_REPAIR_QUEUE \(what)", tcpLevel, TCP_REPAIR_QUEUE, int(queue))
      let at = try bytes.withUnsafeBytes { try injector.put($0) }
      batch.add(.write(.result(made), at, count: bytes.count), "write the \(what) queue of fd \(fd)")
    }
    try set("TCP_REPAIR_WINDOW", tcpLevel, TCP_REPAIR_WINDOW, tcp.window.flatMap(int))
    // Repair mode ends at install, once every process has its sockets: a peer not made
    // yet would answer the window probe with a reset (its listener would).
    return queueMoveHigh(made, what: "fd \(fd)")
  }

  /// The queues of a connection in repair mode, then its window: in repair mode a write to
  /// the send queue queues without sending, one to the receive queue is taken as received.
  /// The receive queue goes in pieces the kernel takes whole (a write there may be short).
  func fillQueues(_ socket: Int32, _ tcp: TCPConnectionImage) throws {
    func set(_ name: Int32, _ bytes: [UInt8], _ what: String) throws {
      try syscallChecked("setsockopt", "\(what) of a TCP connection") {
        bytes.withUnsafeBytes { setsockopt(socket, Int32(IPPROTO_TCP), name, $0.baseAddress, socklen_t($0.count)) }
      }
    }
    func int(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    for (queue, bytes, what) in [
      (UInt32(TCP_SEND_QUEUE), tcp.sendQueue, "send queue"),
      (UInt32(TCP_RECV_QUEUE), tcp.receiveQueue, "receive queue"),
    ] where !bytes.isEmpty {
      try set(TCP_REPAIR_QUEUE, int(queue), "TCP_REPAIR_QUEUE")
      try bytes.withUnsafeBytes { all in
        var done = 0
        while done < all.count {
          let piece = min(all.count - done, 64 << 10)
          let n = try syscallChecked("write", "the \(what) of a TCP connection (\(done) of \(all.count) bytes in)") {
            Glibc.write(socket, all.baseAddress.map { $0 + done }, piece)
          }
          guard n > 0 else {
            throw CKError(.failed, "the \(what) of a TCP connection took no more bytes after \(done) of \(all.count)")
          }
          done += n
        }
      }
    }
    try set(TCP_REPAIR_WINDOW, tcp.window.flatMap(int), "TCP_REPAIR_WINDOW")
  }
}

extension WaitingDatagrams {
  /// Datagrams that waited in UDP sockets: sent to each again in order, from a thread in the
  /// container's network namespace, each from its sender's address: the container's socket
  /// bound there, else a socket of ckcont's bound there (IP_FREEBIND: the address need not be
  /// local), else an unbound one. A socket bound to any address gets them on loopback.
  static func deliverUDP(
    _ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: Logger
  ) throws {
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
        if socket.messages != nil, !receivers.contains(where: { $0.socket == socket }) {
          receivers.append((socket, injector.pid))
        }
      }
    }
    for receiver in receivers {
      guard var destination = receiver.socket.address, let messages = receiver.socket.messages,
        let senders = receiver.socket.senders
      else { continue }
      let family = receiver.socket.family
      // Bound to any address: loopback reaches it.
      if family == AF_INET, destination[destination.startIndex + 4..<destination.startIndex + 8].allSatisfy({ $0 == 0 })
      {
        destination.replaceSubrange(destination.startIndex + 4..<destination.startIndex + 8, with: [127, 0, 0, 1])
      } else if family == AF_INET6,
        destination[destination.startIndex + 8..<destination.startIndex + 24].allSatisfy({ $0 == 0 })
      {
        destination[destination.startIndex + 23] = 1
      }
      let target = destination
      try NamespaceThread.run(in: "net", of: receiver.hostPid) {
        for (message, sender) in zip(messages, senders) {
          let fd = try udpSender(
            UDPEnd(protocolNumber: receiver.socket.protocolNumber, address: sender), family: family, holders: holders,
            log: log)
          try message.withUnsafeBytes { bytes in
            _ = try target.withUnsafeBytes { address in
              try syscallChecked("sendto", "a datagram that waited for \(SocketImage.text(target) ?? "?")") {
                sendto(
                  fd.raw, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL),
                  address.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
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
  private static func udpSender(
    _ end: UDPEnd, family: Int32, holders: [UDPEnd: (hostPid: Int32, fd: Int32)], log: Logger
  ) throws -> OwnedDescriptor {
    if let holder = holders[end] { return try OwnedDescriptor(copying: holder.fd, ofProcess: holder.hostPid) }
    let sender = end.address
    let fd = try OwnedDescriptor("socket", "a UDP socket") {
      socket(family, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), end.protocolNumber)
    }
    var one: Int32 = 1
    // IP_FREEBIND / IPV6_FREEBIND: bind to an address this namespace does not have.
    _ =
      family == AF_INET
      ? setsockopt(fd.raw, Int32(IPPROTO_IP), 15, &one, socklen_t(MemoryLayout<Int32>.size))
      : setsockopt(fd.raw, Int32(IPPROTO_IPV6), 78, &one, socklen_t(MemoryLayout<Int32>.size))
    let bound = sender.withUnsafeBytes {
      bind(fd.raw, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
    }
    if bound != 0 {
      log.debug(
        "a datagram's sender \(SocketImage.text(sender) ?? "?") could not be bound again (\(String(cString: strerror(errno)))): it comes from another port"
      )
    }
    return fd
  }
}

extension Dump {
  /// A TCP connection whose peer's FIN had arrived (CLOSE-WAIT, LAST-ACK) needs that FIN
  /// again at restore: its peer must be a socket of the container that sent it, which the
  /// restore has shut down again. One whose peer is outside is refused.
  func checkClosingPeers(_ tasks: [CapturedTask]) throws {
    var ends: [Data: TCPConnectionImage] = [:]
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let tcp = socket.tcp, let local = socket.address, let peer = socket.peer
        else { continue }
        ends[local + peer] = tcp
      }
    }
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let tcp = socket.tcp, tcp.finReceived, let local = socket.address,
          let peer = socket.peer, ends[peer + local]?.finSent != true
        else { continue }
        throw CKError(
          .failed,
          "task \(task.hostPid): fd \(descriptor.fd) is a TCP connection in \(tcp.state.flatMap { TCPConnectionImage.closingStates[$0] } ?? "?") (\(socket.description)) whose peer, outside the container, closed it, which ckcont cannot checkpoint yet: nothing would send that FIN again",
          hint: "checkpoint once the program has closed it")
      }
    }
  }
}

/// Closing TCP connections (``TCPConnectionImage/state``) came back established, without
/// their FINs: each end that had sent one shuts down its sending again once every
/// connection is out of repair mode, those whose peer's FIN came first (LAST-ACK) after
/// the others, and every end is then checked to be in its dumped state.
enum TCPClosings {
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    // ckcont's copies, closed on the way out.
    var ends: [(socket: Int32, tcp: TCPConnectionImage, what: String)] = []
    defer { for end in ends { close(end.socket) } }
    var seen: Set<Data> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let tcp = socket.tcp, tcp.state != nil, let local = socket.address,
          let peer = socket.peer, seen.insert(local + peer).inserted
        else { continue }
        let what = "fd \(descriptor.fd) of process \(task.entry.pid) (\(socket.description))"
        ends.append((try OwnedDescriptor(copying: descriptor.fd, ofProcess: injector.pid).take(), tcp, what))
      }
    }
    for lastAck in [false, true] {
      for end in ends where end.tcp.finSent && end.tcp.finReceived == lastAck {
        try syscallChecked("shutdown", "the sending side of \(end.what)") { shutdown(end.socket, Int32(SHUT_WR)) }
      }
    }
    for end in ends { try waitForState(end.socket, end.tcp.state ?? 0, what: end.what) }
  }

  /// Waits (up to a second: loopback delivers at once) for `socket` to reach `state`.
  private static func waitForState(_ socket: Int32, _ state: Int32, what: String) throws {
    var now = Int32(-1)
    for _ in 0..<200 {
      now = ck_tcp_state_of(socket)
      if now == state { return }
      usleep(5000)
    }
    let name = { (state: Int32) in TCPConnectionImage.closingStates[state] ?? "state \(state)" }
    throw CKError(.failed, "\(what) came back in \(name(now)), not \(name(state)) as dumped")
  }
}

extension Dump {
  /// A TCP listener with connections not yet accepted (``SocketImage/acceptQueue``): each
  /// waiting connection's client must be a socket of the container (no accepted end holds
  /// its peer) that sent nothing (what it sent would wait in the embryo no descriptor
  /// reaches): it is marked to connect again (``SocketImage/awaitsAccept``) and loses its
  /// repair image. Otherwise the dump is refused, naming the listener.
  func markPendingTCP(_ tasks: inout [CapturedTask]) throws {
    var held: Set<Data> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        if let socket = descriptor.socket, socket.tcp != nil, let local = socket.address, let peer = socket.peer {
          held.insert(local + peer)
        }
      }
    }
    var clients: Set<Data> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let listener = descriptor.socket, let waiting = listener.acceptQueue, let address = listener.address
        else { continue }
        let found = Set(
          tasks.flatMap(\.files.descriptors).compactMap(\.socket).filter { client in
            guard client.tcp != nil, let local = client.address, let peer = client.peer else { return false }
            return Self.reaches(peer, listener: address) && !held.contains(peer + local)
          }.compactMap { client in client.address.flatMap { local in client.peer.map { local + $0 } } })
        let eligible = found.filter { key in
          tasks.flatMap(\.files.descriptors).contains {
            $0.socket.flatMap { s in s.address.flatMap { l in s.peer.map { l + $0 } } } == key
              && $0.socket?.awaitsAccept == false
          }
        }
        guard found.count == waiting, eligible.count == waiting else {
          let why =
            found.count < waiting ? "from clients outside the container" : "one of whose clients already sent bytes"
          throw CKError(
            .failed,
            "task \(task.hostPid): fd \(descriptor.fd) is a listening socket (\(listener.description)) with \(waiting) connection(s) not yet accepted, \(why), which ckcont cannot checkpoint yet",
            hint: "checkpoint once the server has accepted them")
        }
        clients.formUnion(found)
      }
    }
    for index in tasks.indices {
      for slot in tasks[index].files.descriptors.indices {
        guard var socket = tasks[index].files.descriptors[slot].socket, socket.awaitsAccept != nil else { continue }
        let key = socket.address.flatMap { local in socket.peer.map { local + $0 } }
        if let key, clients.contains(key) {
          socket.awaitsAccept = true
          socket.tcp = nil
        } else {
          socket.awaitsAccept = nil
        }
        tasks[index].files.descriptors[slot].socket = socket
      }
    }
  }

  /// Whether a connection to `peer` reaches a listener bound to `listener` (its address, or
  /// any address of the family, on the same port).
  static func reaches(_ peer: Data, listener: Data) -> Bool {
    guard peer.count == listener.count, peer.count >= 8 else { return false }
    let (p, l) = (Array(peer), Array(listener))
    guard p[0..<4] == l[0..<4] else { return false }  // family and port
    let address = p.count == 16 ? 4..<8 : 8..<24
    return l[address].allSatisfy { $0 == 0 } || p[address] == l[address]
  }
}

/// Connections that waited in TCP listeners' queues (``SocketImage/awaitsAccept``): each
/// client connects to its listener again, from its own address, once every listener
/// listens, in the order the processes hold them (the queue's own order is not known), from
/// its own process (blocking or not: it waits until the connection is made).
enum TCPPendingConnections {
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var done: Set<Data> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.awaitsAccept == true, let local = socket.address,
          let peer = socket.peer, done.insert(local + peer).inserted
        else { continue }
        let what = "fd \(descriptor.fd) of process \(task.entry.pid) (\(socket.description)) to its listener again"
        injector.resetData()
        let at = try peer.withUnsafeBytes { try injector.put($0) }
        let result = try injector.raw(.connect(Int64(descriptor.fd), at, length: peer.count))
        guard result == 0 || result == -Int64(EINPROGRESS) else {
          throw CKError(.failed, "connect \(what): \(String(cString: strerror(Int32(-result))))")
        }
        let ours = try OwnedDescriptor(copying: descriptor.fd, ofProcess: injector.pid)
        var state: Int32 = 0
        for _ in 0..<200 {
          state = ck_tcp_state_of(ours.raw)
          if state == TCP_ESTABLISHED { break }
          usleep(5000)
        }
        guard state == TCP_ESTABLISHED else { throw CKError(.failed, "connect \(what): not made (state \(state))") }
      }
    }
  }
}
