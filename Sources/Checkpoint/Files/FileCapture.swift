import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Synchronization

/// Captures the open file descriptors of a process: files and devices opened by path, and
/// pipes and FIFOs with the data buffered in them. Anything else fails the dump, naming task, fd and
/// kind: a checkpoint never silently drops a descriptor.
struct FileCapture {
  let pid: Int32
  /// A NETLINK_SOCK_DIAG socket in the container's network namespace, for unix sockets.
  let sockDiag: Int32
  /// Where established TCP connections go once in repair mode.
  let repaired: RepairedSockets
  /// The mounts of a container with a root filesystem of its own (nil: it has none): a file
  /// on none of them lies outside its root.
  var rootMounts: Set<Int>? = nil

  func image(log: (String) -> Void) throws -> FileTableImage {
    let fdDir = "/proc/\(pid)/fd"
    let numbers = try PseudoFile.list(fdDir).compactMap { Int32($0) }.sorted()
    var descriptors: [DescriptorImage] = []
    var pipes: [UInt64: PipeImage] = [:]
    var byInode: [UInt64: [Int32]] = [:]
    var inodes: [Int32: UInt64] = [:]
    var epollInodes: [(epoll: Int32, target: Int32, inode: UInt64)] = []
    var lockLines: [Int32: [String]] = [:]
    for fd in numbers {
      let target = try readLink("\(fdDir)/\(fd)")
      let info = try FdInfo.read(pid: pid, fd: fd)
      // Locks held, not those waited for (`->` lines).
      let locks = info.extra.filter { $0.key == "lock" && !$0.value.contains("->") }.map(\.value)
      if !locks.isEmpty { lockLines[fd] = locks }
      let flags = Int32(bitPattern: info.flags)
      let cloexec = flags & O_CLOEXEC != 0
      let openFlags = flags & ~O_CLOEXEC
      inodes[fd] = info.inode
      // dup()ed descriptors share one open file description (offset, status flags).
      if let twin = byInode[info.inode, default: []].first(where: { ck_kcmp_file(pid, pid, $0, fd) == 0 }),
        let original = descriptors.first(where: { $0.fd == twin })
      {
        var copy = original
        copy.fd = fd
        copy.closeOnExec = cloexec
        copy.sharesWith = twin
        descriptors.append(copy)
        continue
      }
      byInode[info.inode, default: []].append(fd)
      if target.hasPrefix("pipe:[") {
        let inode = info.inode
        if pipes[inode] == nil { pipes[inode] = try capturePipe(fd: fd, inode: inode) }
        descriptors.append(DescriptorImage(fd: fd, kind: .pipe, flags: openFlags, closeOnExec: cloexec, pipe: inode))
        continue
      }
      if target.hasPrefix("socket:[") {
        var descriptor = DescriptorImage(fd: fd, kind: .socket, flags: openFlags, closeOnExec: cloexec)
        descriptor.socket = try captureSocket(fd: fd, target: target, inode: info.inode, log: log)
        descriptors.append(descriptor)
        continue
      }
      if target == "anon_inode:inotify" {
        var descriptor = DescriptorImage(fd: fd, kind: .inotify, flags: openFlags, closeOnExec: cloexec)
        descriptor.inotifyWatches = try info.extra.filter { $0.key == "inotify" }.map { try inotifyWatch($0, fd: fd) }
        // Events waiting to be read are not kept (as in CRIU): say how many bytes.
        if let waiting = try? waitingBytes(fd: fd), waiting > 0 {
          log("task \(pid): fd \(fd): \(waiting) bytes of inotify events waiting to be read are not kept")
        }
        descriptors.append(descriptor)
        continue
      }
      if target == "anon_inode:[pidfd]" || target.hasPrefix("pidfd:") {
        guard let host = info.value(for: "Pid").flatMap({ Int32($0) }), host > 0 else {
          throw CKError(.failed, "task \(pid): fd \(fd) is a pidfd of a process that has exited, which ckcont cannot checkpoint")
        }
        var descriptor = DescriptorImage(fd: fd, kind: .pidfd, flags: openFlags, closeOnExec: cloexec)
        descriptor.pidfdTarget = host
        descriptors.append(descriptor)
        continue
      }
      if target == "anon_inode:[eventpoll]" {
        var watched: [EpollTarget] = []
        for field in info.extra where field.key == "tfd" {
          let pairs = Dictionary(field.recordFields ?? [], uniquingKeysWith: { first, _ in first })
          guard let tfd = pairs["tfd"].flatMap({ Int32($0) }), let events = pairs["events"].flatMap({ UInt32($0, radix: 16) }),
            let data = pairs["data"].flatMap({ UInt64($0, radix: 16) }), let inode = pairs["ino"].flatMap({ UInt64($0, radix: 16) })
          else { throw CKError(.failed, "task \(pid): fd \(fd): cannot read an epoll target from fdinfo: \(field.value)") }
          watched.append(EpollTarget(fd: tfd, events: events, data: data))
          epollInodes.append((fd, tfd, inode))
        }
        descriptors.append(
          DescriptorImage(fd: fd, kind: .epoll, flags: openFlags, closeOnExec: cloexec, epollTargets: watched))
        continue
      }
      if let kind = Self.anonKinds[target] {
        descriptors.append(
          DescriptorImage(fd: fd, kind: kind, flags: openFlags, closeOnExec: cloexec, anon: try anonState(kind, info, fd: fd)))
        continue
      }
      var st = stat()
      guard stat("\(fdDir)/\(fd)", &st) == 0 else {
        throw CKError(.failed, "task \(pid): fd \(fd) (\(target)): cannot stat it: \(String(cString: strerror(errno)))")
      }
      let type = st.st_mode & S_IFMT
      if type == S_IFREG, ck_fs_magic("\(fdDir)/\(fd)") == 0x1980_0202 /* MQUEUE_MAGIC */ {
        var descriptor = DescriptorImage(fd: fd, kind: .mqueue, flags: openFlags, closeOnExec: cloexec, mode: UInt32(st.st_mode))
        descriptor.mqueue = try captureMessageQueue(fd: fd, target: target, st: st)
        descriptors.append(descriptor)
        continue
      }
      if type == S_IFREG, target.hasPrefix("/memfd:"), target.hasSuffix(" (deleted)") {
        descriptors.append(
          DescriptorImage(
            fd: fd, kind: .memfd, flags: openFlags, closeOnExec: cloexec, path: target, position: info.pos,
            mode: UInt32(st.st_mode), memfd: try captureMemfd(fd: fd, target: target, inode: UInt64(st.st_ino), size: Int(st.st_size))))
        continue
      }
      if type == S_IFIFO, target.hasPrefix("/"), !target.hasSuffix(" (deleted)") {
        let inode = UInt64(st.st_ino)
        if pipes[inode] == nil { pipes[inode] = try capturePipe(fd: fd, inode: inode) }
        descriptors.append(
          DescriptorImage(fd: fd, kind: .fifo, flags: openFlags, closeOnExec: cloexec, path: target, pipe: inode))
        continue
      }
      if type == S_IFCHR, target.hasPrefix("/"), let side = Terminals.side(device: UInt64(st.st_rdev)) {
        var descriptor = DescriptorImage(fd: fd, kind: .pty, flags: openFlags, closeOnExec: cloexec, path: target)
        descriptor.pty = try Terminals.capture(pid: pid, fd: fd, isMaster: side.isMaster, index: side.index, log: log)
        descriptors.append(descriptor)
        continue
      }
      guard target.hasPrefix("/"), type == S_IFREG || type == S_IFCHR || type == S_IFDIR else {
        throw CKError(
          .failed, "task \(pid): fd \(fd) is \(describe(target)), which ckcont cannot checkpoint yet",
          hint: "close it before the checkpoint, or wait for support of this kind")
      }
      if target.hasSuffix(" (deleted)") {
        guard type == S_IFREG, st.st_nlink == 0 else {
          throw CKError(
            .failed, "task \(pid): fd \(fd) refers to \(target), deleted but still linked elsewhere or not a regular file, which ckcont cannot checkpoint yet")
        }
        var descriptor = DescriptorImage(
          fd: fd, kind: .deleted, flags: openFlags, closeOnExec: cloexec, path: String(target.dropLast(" (deleted)".count)),
          position: info.pos, mode: UInt32(st.st_mode))
        descriptor.ghost = GhostFileImage(
          inode: UInt64(st.st_ino), contents: try readWhole(fd: fd, size: Int(st.st_size), what: "the deleted file \(target)"))
        descriptors.append(descriptor)
        continue
      }
      var descriptor = DescriptorImage(
        fd: fd, kind: .path, flags: openFlags, closeOnExec: cloexec, path: target, position: info.pos, mode: UInt32(st.st_mode))
      if let rootMounts, !rootMounts.contains(Int(info.mountID)) { descriptor.outsideRoot = true }
      descriptors.append(descriptor)
    }
    for index in descriptors.indices {
      let descriptor = descriptors[index]
      guard let lines = lockLines[descriptor.fd], descriptor.sharesWith == nil else { continue }
      guard descriptor.kind == .path || descriptor.kind == .deleted else {
        throw CKError(
          .failed, "task \(pid): fd \(descriptor.fd) holds a lock on a \(descriptor.kind.rawValue), which ckcont cannot checkpoint yet")
      }
      descriptors[index].locks = try lines.map { try lock(from: $0, fd: descriptor.fd) }
    }
    // An epoll watch is keyed by a descriptor number: it must still name the same file here
    // (a watch whose descriptor was closed lives on with a number that means nothing now).
    for (epoll, target, inode) in epollInodes where inodes[target] != inode {
      throw CKError(
        .failed, "task \(pid): epoll fd \(epoll) watches fd \(target), which is closed or another file now; ckcont cannot checkpoint that",
        hint: "close the epoll descriptor's stale watches (EPOLL_CTL_DEL) before the checkpoint")
    }
    log("task \(pid): \(descriptors.count) fds, \(pipes.count) pipes")
    // Signal-driven I/O: the owner and signal belong to the open file description, read
    // through a copy of it (pidfd_getfd).
    for index in descriptors.indices where descriptors[index].sharesWith == nil && descriptors[index].flags & O_ASYNC != 0 {
      descriptors[index].asyncOwner = try asyncOwner(fd: descriptors[index].fd)
    }
    return FileTableImage(descriptors: descriptors, pipes: pipes.values.sorted { $0.inode < $1.inode })
  }

  /// A memfd's contents and seals, read through a descriptor of our own.
  private func captureMemfd(fd: Int32, target: String, inode: UInt64, size: Int) throws -> MemfdImage {
    let path = "/proc/\(pid)/fd/\(fd)"
    let ours = try syscallChecked("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(ours) }
    let seals = fcntl(ours, 1034 /* F_GET_SEALS */)
    let name = String(target.dropFirst("/memfd:".count).dropLast(" (deleted)".count))
    return MemfdImage(name: name, inode: inode, seals: max(seals, 0), contents: try readWhole(fd: fd, size: size, what: target))
  }

  /// The whole contents of a file the task holds open (up to 64 MiB: they go into the model),
  /// read through a descriptor of our own.
  private func readWhole(fd: Int32, size: Int, what: String) throws -> Data {
    guard size <= 64 << 20 else {
      throw CKError(.failed, "task \(pid): fd \(fd) is \(what) of \(size >> 20) MiB; ckcont saves such files up to 64 MiB")
    }
    let path = "/proc/\(pid)/fd/\(fd)"
    let ours = try syscallChecked("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(ours) }
    var contents = Data(count: size)
    var done = 0
    try contents.withUnsafeMutableBytes { buffer in
      while done < size {
        let n = try syscallChecked("pread", path) { pread(ours, buffer.baseAddress! + done, size - done, off_t(done)) }
        if n == 0 { break }
        done += n
      }
    }
    return contents.prefix(done)
  }

  /// FIONREAD of the description behind `fd`, through a copy of it.
  private func waitingBytes(fd: Int32) throws -> Int32 {
    let pidfd = try syscallChecked("pidfd_open", "\(pid)") { ck_pidfd_open(pid, 0) }
    defer { close(pidfd) }
    let ours = try syscallChecked("pidfd_getfd", "\(pid) fd \(fd)") { ck_pidfd_getfd(pidfd, fd, 0) }
    defer { close(ours) }
    var waiting: Int32 = 0
    _ = try syscallChecked("ioctl", "FIONREAD of task \(pid) fd \(fd)") { ioctl(ours, UInt(FIONREAD), &waiting) }
    return waiting
  }

  /// F_GETOWN_EX and F_GETSIG of the description behind `fd` (the owner as the host sees it).
  private func asyncOwner(fd: Int32) throws -> AsyncOwnerImage {
    let pidfd = try syscallChecked("pidfd_open", "\(pid)") { ck_pidfd_open(pid, 0) }
    defer { close(pidfd) }
    let ours = try syscallChecked("pidfd_getfd", "\(pid) fd \(fd)") { ck_pidfd_getfd(pidfd, fd, 0) }
    defer { close(ours) }
    var owner: (Int32, Int32) = (0, 0)  // struct f_owner_ex { int type; pid_t pid; }
    _ = try syscallChecked("fcntl", "F_GETOWN_EX of task \(pid) fd \(fd)") { withUnsafeMutableBytes(of: &owner) { fcntl(ours, 16 /* F_GETOWN_EX */, $0.baseAddress!) } }
    let signal = try syscallChecked("fcntl", "F_GETSIG of task \(pid) fd \(fd)") { fcntl(ours, 11 /* F_GETSIG */) }
    return AsyncOwnerImage(type: owner.0, id: owner.1, signal: signal)
  }

  /// What an internet socket is, asked through a copy of the descriptor (pidfd_getfd): one
  /// without a connection is recreated; a connection (or data waiting in a socket) cannot be
  /// yet, and stops the dump rather than be lost.
  private func captureSocket(fd: Int32, target: String, inode: UInt64, log: (String) -> Void) throws -> SocketImage {
    let pidfd = try syscallChecked("pidfd_open", "\(pid)") { ck_pidfd_open(pid, 0) }
    defer { close(pidfd) }
    let ours = try syscallChecked("pidfd_getfd", "\(pid) fd \(fd)") { ck_pidfd_getfd(pidfd, fd, 0) }
    var keep = false
    defer { if !keep { close(ours) } }
    var facts = ck_socket_facts()
    try negErrnoChecked("getsockopt", "task \(pid) fd \(fd)") { ck_socket_facts(ours, &facts) }
    func refuse(_ what: String, _ hint: String = "close it before the checkpoint, or wait for support of this kind") -> CKError {
      CKError(.failed, "task \(pid): fd \(fd) is \(what) (\(target)), which ckcont cannot checkpoint yet", hint: hint)
    }
    if facts.family == AF_UNIX { return try captureUnixSocket(ours, facts: facts, inode: inode, refuse: refuse) }
    if facts.family == 16 /* AF_NETLINK */ {
      // Bound to its port id and multicast groups again; messages waiting in it (notices
      // the process had not read yet) are not kept, as in CRIU.
      var waiting: Int32 = 0
      if ioctl(ours, UInt(FIONREAD), &waiting) == 0, waiting > 0 {
        log("task \(pid): fd \(fd): \(waiting) bytes waiting in a netlink socket are not kept")
      }
      let address = withUnsafeBytes(of: facts.address) { Data($0.prefix(Int(facts.address_length))) }
      return SocketImage(
        family: facts.family, type: facts.type, protocolNumber: facts.protocol, address: address.count == 12 ? address : nil, peer: nil,
        backlog: nil, options: [])
    }
    guard facts.family == AF_INET || facts.family == AF_INET6 else {
      throw refuse("a socket of address family \(facts.family)")
    }
    guard facts.type == Int32(SOCK_STREAM.rawValue) || facts.type == Int32(SOCK_DGRAM.rawValue) else {
      throw refuse("a raw socket")
    }
    func data<T>(_ tuple: T, _ length: UInt32) -> Data {
      withUnsafeBytes(of: tuple) { Data($0.prefix(Int(length))) }
    }
    let address = data(facts.address, facts.address_length)
    // sin_port and sin6_port both follow the 2-byte family: port 0 was never bound.
    let bound = address.count >= 4 && (address[2] != 0 || address[3] != 0)
    var peer: Data?
    if facts.type == Int32(SOCK_STREAM.rawValue) {
      if facts.listening != 0 {
        guard facts.waiting == 0 else {
          throw refuse(
            "a listening socket with \(facts.waiting) connection(s) not yet accepted",
            "checkpoint once the server has accepted them")
        }
      } else if facts.tcp_state == 1 /* TCP_ESTABLISHED */ {
        try repaired.add(ours, pid: pid, target: fd, reuseAddress: socketOptions(facts).reusesAddress)
        keep = true
        let limit = TCPConnectionImage.queueLimit
        // Most queues are short: a small buffer first, the largest one if that is too small.
        var capacity = 64 << 10
        var sendQueue = [UInt8](repeating: 0, count: capacity), receiveQueue = [UInt8](repeating: 0, count: capacity)
        var state = ck_tcp_state()
        var result = ck_tcp_repair_dump(ours, &state, &sendQueue, &receiveQueue, capacity)
        FaultInjection.point("dump:repair")
        if result == -E2BIG {
          capacity = limit
          sendQueue = [UInt8](repeating: 0, count: capacity)
          receiveQueue = [UInt8](repeating: 0, count: capacity)
          result = ck_tcp_repair_dump(ours, &state, &sendQueue, &receiveQueue, capacity)
        }
        guard result == 0 else {
          throw refuse(
            result == -E2BIG
              ? "a TCP connection with more than \(limit >> 10) KiB waiting in a queue"
              : "a TCP connection that TCP_REPAIR cannot read (\(String(cString: strerror(-result))))",
            "checkpoint when less data is in flight")
        }
        let tcp = TCPConnectionImage(
          sendSequence: state.send_seq, receiveSequence: state.receive_seq,
          sendQueue: Data(sendQueue.prefix(Int(state.send_length))), receiveQueue: Data(receiveQueue.prefix(Int(state.receive_length))),
          options: state.options, sendWindowScale: state.send_wscale, receiveWindowScale: state.receive_wscale, mss: state.mss,
          timestamp: state.timestamp, window: withUnsafeBytes(of: state.window) { Array($0.bindMemory(to: UInt32.self)) })
        var image = SocketImage(
          family: facts.family, type: facts.type, protocolNumber: facts.protocol, address: address,
          peer: data(facts.peer, facts.peer_length), backlog: nil, options: socketOptions(facts))
        image.tcp = tcp
        return image
      } else if facts.tcp_state != 7 /* TCP_CLOSE: never connected */ {
        let states = [1: "established", 2: "SYN-SENT", 3: "SYN-RECV", 4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 6: "TIME-WAIT", 8: "CLOSE-WAIT", 9: "LAST-ACK", 11: "CLOSING"]
        let ends = [address, data(facts.peer, facts.peer_length)].compactMap(SocketImage.text).joined(separator: " to ")
        throw refuse(
          "a TCP connection (\(states[Int(facts.tcp_state)] ?? "state \(facts.tcp_state)"), \(ends))",
          "checkpoint when no connection is open")
      }
    } else {
      if facts.peer_length > 0 { peer = data(facts.peer, facts.peer_length) }
    }
    let options = socketOptions(facts)
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: facts.protocol, address: bound ? address : nil, peer: peer,
      backlog: facts.listening != 0 ? facts.backlog : nil, options: options)
    if facts.type == Int32(SOCK_DGRAM.rawValue), facts.waiting > 0 {
      // Datagrams waiting: peeked with their senders' addresses, sent to it again from them.
      let waiting = try peekWaiting(ours, descriptors: false, what: "a UDP socket", refuse: refuse)
      image.messages = waiting.map(\.bytes)
      image.senders = waiting.map(\.sender)
    }
    return image
  }

  /// What waits in socket `ours`, peeked in order without taking it (ck_peek_messages): each
  /// datagram or seqpacket record apart (a stream in pieces ending where descriptors are
  /// attached), with its sender's address (struct sockaddr bytes; just the family for an
  /// unnamed unix sender) and, with `descriptors`, the descriptors passed with it as copies
  /// of ckcont's own (see ``Dump/resolvePassed``). `what` names the socket in refusals.
  private func peekWaiting(_ ours: Int32, descriptors: Bool, what: String, refuse: (String, String) -> CKError) throws
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
    let result = ck_peek_messages(
      ours, buffer.baseAddress, capacity, &lengths, Int32(maxMessages), &count, &senders, &senderLengths,
      &passed, Int32(passed.count), &passedCounts)
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

  /// A unix socket: its name, its peer (sock_diag: a descriptor does not tell), and for a
  /// connected stream socket the bytes waiting in it, peeked without consuming them.
  private func captureUnixSocket(
    _ ours: Int32, facts: ck_socket_facts, inode: UInt64, refuse: (String, String) -> CKError
  ) throws -> SocketImage {
    let hint = "close it before the checkpoint, or wait for support of this kind"
    var diag = ck_unix_diag()
    // A negative sockDiag is the error making it; ck_unix_diag on it would say EBADF.
    let found = sockDiag < 0 ? sockDiag : ck_unix_diag(sockDiag, UInt32(truncatingIfNeeded: inode), &diag)
    guard found == 0 else {
      throw refuse("a unix socket sock_diag does not know (\(String(cString: strerror(-found))))", hint)
    }
    let name = withUnsafeBytes(of: diag.name) { Data($0.prefix(Int(diag.name_length))) }
    let options = socketOptions(facts)
    if facts.listening != 0 {
      guard diag.receive_queue == 0 else {
        throw refuse("a listening unix socket with \(diag.receive_queue) connection(s) not yet accepted", "checkpoint once the server has accepted them")
      }
      return SocketImage(
        family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil,
        backlog: Int32(clamping: diag.send_queue), options: options, inode: inode)
    }
    /// What waits, with each sender's name as sock_diag gives names (sun_path bytes after the
    /// 2-byte family; empty for an unnamed sender).
    func peekWaiting() throws -> [(bytes: Data, sender: Data, passed: [Int32])] {
      try self.peekWaiting(ours, descriptors: true, what: "a unix socket", refuse: refuse).map { ($0.bytes, $0.sender.dropFirst(2), $0.passed) }
    }
    /// Descriptors in flight, as placeholders: ckcont's copy in `fd`, no pid yet.
    func placeholders(_ fds: [Int32], at: Int, length: Int? = nil) -> PassedDescriptors? {
      fds.isEmpty ? nil : PassedDescriptors(at: at, length: length, descriptors: fds.map { DescriptorReference(pid: 0, fd: $0) })
    }
    guard diag.peer != 0 else {
      guard facts.waiting == 0 || facts.type == Int32(SOCK_DGRAM.rawValue) && !name.isEmpty else {
        throw refuse("an unconnected unix socket with a message waiting to be read", hint)
      }
      var image = SocketImage(
        family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil, backlog: nil,
        options: options, inode: inode)
      if facts.waiting > 0 {
        // Datagrams sent to its name: they are sent again from the same names at restore.
        let waiting = try peekWaiting()
        let inFlight = waiting.flatMap(\.passed)
        guard inFlight.isEmpty else {
          for fd in inFlight { close(fd) }
          throw refuse("a unix datagram socket no peer is connected to, with descriptors in flight (SCM_RIGHTS)", "checkpoint once they have been received")
        }
        image.messages = waiting.map(\.bytes)
        image.senders = waiting.map(\.sender)
      }
      return image
    }
    var queued = Data()
    var messages: [Data]?
    var passed: [PassedDescriptors] = []
    if facts.waiting > 0 && facts.type != Int32(SOCK_STREAM.rawValue) {
      let waiting = try peekWaiting()
      messages = waiting.map(\.bytes)
      passed = waiting.enumerated().compactMap { placeholders($0.element.passed, at: $0.offset) }
    } else if facts.waiting > 0 {
      guard facts.waiting <= 16 << 20 else { throw refuse("a unix socket with \(facts.waiting) bytes waiting to be read", hint) }
      for piece in try peekWaiting() {
        if let attached = placeholders(piece.passed, at: queued.count, length: piece.bytes.count) { passed.append(attached) }
        queued += piece.bytes
      }
    }
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil, backlog: nil,
      options: options, inode: inode, peerInode: UInt64(diag.peer), queued: queued.isEmpty ? nil : queued)
    image.messages = messages
    image.passed = passed.isEmpty ? nil : passed
    if diag.shutdown & 3 != 0 { image.shutdown = Int32(diag.shutdown & 3) }
    return image
  }

  private func socketOptions(_ facts: ck_socket_facts) -> [SocketOption] {
    withUnsafeBytes(of: facts.options) { raw in
      (0..<Int(facts.option_count)).map { index in
        SocketOption(
          level: raw.load(fromByteOffset: index * 12, as: Int32.self), name: raw.load(fromByteOffset: index * 12 + 4, as: Int32.self),
          value: raw.load(fromByteOffset: index * 12 + 8, as: Int32.self))
      }
    }
  }

  /// The pipe's buffered bytes, copied without consuming them: a new read end opened through
  /// /proc, then tee(2) into a pipe of ours, which duplicates the data and leaves it in place.
  private func capturePipe(fd: Int32, inode: UInt64) throws -> PipeImage {
    let path = "/proc/\(pid)/fd/\(fd)"
    let reader = try syscallChecked("open", path) { open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC) }
    defer { close(reader) }
    let capacity = try syscallChecked("fcntl", "F_GETPIPE_SZ \(path)") { fcntl(reader, Int32(CK_F_GETPIPE_SZ)) }
    var ours: [Int32] = [0, 0]
    try syscallChecked("pipe2", "copy of pipe:[\(inode)]") { ck_pipe2(&ours, O_CLOEXEC | O_NONBLOCK) }
    defer {
      close(ours[0])
      close(ours[1])
    }
    try syscallChecked("fcntl", "F_SETPIPE_SZ") { fcntl(ours[1], Int32(CK_F_SETPIPE_SZ), capacity) }
    let copied = ck_tee(reader, ours[1], Int(capacity), UInt32(CK_SPLICE_F_NONBLOCK))
    if copied < 0 && errno != EAGAIN {
      throw SyscallError("tee", "pipe:[\(inode)] of task \(pid)", .init(rawValue: errno))
    }
    var data = [UInt8](repeating: 0, count: max(copied, 0))
    var done = 0
    while done < data.count {
      let n = try syscallChecked("read", "copy of pipe:[\(inode)]") {
        data.withUnsafeMutableBytes { read(ours[0], $0.baseAddress! + done, $0.count - done) }
      }
      if n == 0 { break }
      done += n
    }
    return PipeImage(inode: inode, buffered: Data(data.prefix(done)), capacity: Int32(capacity))
  }

  /// An inotify watch from its fdinfo line: the watched file is found from its file handle
  /// (open_by_handle_at on the mount of its device) and kept by path.
  /// A POSIX message queue: its attributes and messages, taken and put back through a
  /// read-write description of ckcont's own (the container is frozen: nobody else takes
  /// them meanwhile).
  private static let messageQueueReads = Mutex(())

  private func captureMessageQueue(fd: Int32, target: String, st: stat) throws -> MessageQueueImage {
    let unlinked = target.hasSuffix(" (deleted)")
    let name = String((unlinked ? target.dropLast(" (deleted)".count) : target[...]).dropFirst())
    let capacity = 1 << 20, maxMessages = 4096
    var buffer = [UInt8](repeating: 0, count: capacity)
    var lengths = [UInt32](repeating: 0, count: maxMessages), priorities = [UInt32](repeating: 0, count: maxMessages)
    var attr = ck_mq_attr()
    var count: Int32 = 0
    // Read by taking the messages out and putting them back: two holders of one queue,
    // captured at once, would each see the other's reads.
    let result = Self.messageQueueReads.withLock { _ in
      ck_mq_capture(pid, fd, &attr, &buffer, capacity, &lengths, &priorities, Int32(maxMessages), &count)
    }
    guard result == 0 else {
      throw CKError(
        .failed,
        result == -E2BIG
          ? "task \(pid): fd \(fd) is the message queue /\(name) holding more than \(capacity >> 10) KiB, which ckcont cannot checkpoint yet"
          : "task \(pid): fd \(fd): cannot read the message queue /\(name): \(String(cString: strerror(-result)))")
    }
    var messages: [MessageQueueImage.QueuedMessage] = []
    var offset = 0
    for index in 0..<Int(count) {
      let length = Int(lengths[index])
      messages.append(.init(priority: priorities[index], data: Data(buffer[offset..<offset + length])))
      offset += length
    }
    return MessageQueueImage(
      name: name, mode: UInt32(st.st_mode & 0o777), uid: st.st_uid, gid: st.st_gid, maxMessages: attr.max_messages,
      messageSize: attr.message_size, unlinked: unlinked || st.st_nlink == 0, messages: messages)
  }

  /// One fdinfo lock line: `1: FLOCK  ADVISORY  WRITE 4711 fe:00:1234 0 EOF`.
  private func lock(from line: String, fd: Int32) throws -> FileLockImage {
    let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    func bad() -> CKError { CKError(.failed, "task \(pid): fd \(fd): cannot read the lock '\(line)'") }
    if words.count >= 4, words[1] == "LEASE" {
      // A lease being broken is in the middle of a conversation with another process.
      guard words[2] == "ACTIVE" else {
        throw CKError(.failed, "task \(pid): fd \(fd) holds a lease being broken (\(words[2])), which ckcont cannot checkpoint", hint: "checkpoint once it is released")
      }
      return FileLockImage(kind: .lease, write: words[3] == "WRITE", start: 0, length: 0)
    }
    guard words.count >= 8, words[2] == "ADVISORY", let start = Int64(words[6]) else { throw bad() }
    let kinds: [Substring: FileLockImage.Kind] = ["FLOCK": .flock, "POSIX": .posix, "OFDLCK": .openFileDescription]
    guard let kind = kinds[words[1]] else {
      throw CKError(.failed, "task \(pid): fd \(fd) holds a \(words[1]) lock, which ckcont cannot checkpoint yet")
    }
    let length: Int64
    if words[7] == "EOF" {
      length = 0
    } else {
      guard let end = Int64(words[7]), end >= start else { throw bad() }
      length = end - start + 1
    }
    return FileLockImage(kind: kind, write: words[3] == "WRITE", start: start, length: length)
  }

  private func inotifyWatch(_ field: FdInfoField, fd: Int32) throws -> InotifyWatch {
    let pairs = Dictionary(field.recordFields ?? [], uniquingKeysWith: { first, _ in first })
    func bad(_ why: String) -> CKError {
      CKError(.failed, "task \(pid): inotify fd \(fd): \(why) (\(field.value))", hint: "remove the watch before the checkpoint")
    }
    guard let wd = pairs["wd"].flatMap({ Int32($0) }), let mask = pairs["mask"].flatMap({ UInt32($0, radix: 16) }),
      let device = pairs["sdev"].flatMap({ UInt64($0, radix: 16) }), let type = pairs["fhandle-type"].flatMap({ Int32($0, radix: 16) }),
      let hex = pairs["f_handle"], hex.count % 2 == 0
    else { throw bad("cannot read a watch") }
    let handle = stride(from: 0, to: hex.count, by: 2).compactMap {
      UInt8(hex[hex.index(hex.startIndex, offsetBy: $0)..<hex.index(hex.startIndex, offsetBy: $0 + 2)], radix: 16)
    }
    // The kernel's dev_t: major in the bits above 20.
    let (major, minor) = (device >> 20, device & 0xfffff)
    guard let mount = try MountInfo.read().first(where: { UInt64($0.major) == major && UInt64($0.minor) == minor }) else {
      throw bad("no mount of device \(major):\(minor) to find the watched file on")
    }
    // open_by_handle_at refuses an O_PATH descriptor for the mount (EBADF).
    let mountFD = open(mount.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard mountFD >= 0 else { throw bad("cannot open \(mount.mountPoint)") }
    defer { close(mountFD) }
    let watched = ck_open_by_handle(mountFD, type, handle, UInt32(handle.count), 0o10000000 /* O_PATH */ | O_CLOEXEC)
    guard watched >= 0 else { throw bad("the watched file is gone: \(String(cString: strerror(errno)))") }
    defer { close(watched) }
    let path = try readLink("/proc/self/fd/\(watched)")
    guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { throw bad("the watched file \(path) has no path") }
    return InotifyWatch(wd: wd, mask: mask, path: path)
  }

  static let anonKinds: [String: DescriptorImage.Kind] = [
    "anon_inode:[eventfd]": .eventfd, "anon_inode:[signalfd]": .signalfd, "anon_inode:[timerfd]": .timerfd,
  ]

  /// The state fdinfo shows for an eventfd (`eventfd-count` in hex, `eventfd-semaphore`), a
  /// signalfd (`sigmask`) or a timerfd (`clockid`, `ticks`, `it_value: (s, ns)` left,
  /// `it_interval: (s, ns)`).
  private func anonState(_ kind: DescriptorImage.Kind, _ info: FdInfo, fd: Int32) throws -> AnonFileState {
    func bad(_ what: String) -> CKError {
      CKError(.failed, "task \(pid): fd \(fd): cannot read its \(what) from fdinfo")
    }
    switch kind {
    case .eventfd:
      guard let count = info.eventfdCount else { throw bad("eventfd-count") }
      return AnonFileState(count: count, semaphore: info.value(for: "eventfd-semaphore") == "1")
    case .signalfd:
      guard let mask = info.signalfdMask else { throw bad("sigmask") }
      return AnonFileState(signalMask: mask)
    default:
      guard let clock = info.timerfdClockID, let ticks = info.timerfdTicks,
        let interval = info.timerfdNanoseconds("it_interval"), let value = info.timerfdNanoseconds("it_value")
      else { throw bad("timer") }
      return AnonFileState(clockID: clock, intervalNanoseconds: interval, valueNanoseconds: value, ticks: ticks)
    }
  }

  private func describe(_ target: String) -> String {
    if target.hasPrefix("socket:") { return "a socket (\(target))" }
    if target.hasPrefix("anon_inode:") { return "an \(target.dropFirst(11)) descriptor" }
    return target
  }
}
