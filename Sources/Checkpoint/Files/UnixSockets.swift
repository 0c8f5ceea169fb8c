import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging
import Synchronization

// Unix sockets: a name, a peer found through sock_diag, and what waits in them (bytes,
// datagrams, descriptors in flight). A connected one comes back as one end of a socketpair
// with its peer; datagrams sent to a name come back from their senders' names.

extension FileCapture {
  /// A unix socket: its name, its peer (sock_diag: a descriptor does not tell), and for a
  /// connected stream socket the bytes waiting in it, peeked without consuming them.
  private static let diagQuestions = Mutex(())

  /// Whether the file bind(2) made for `name` (inode `fileInode`) is no longer at its path,
  /// as the task sees it; nil for a name without a file or one relative to a directory
  /// long left.
  private func nameUnlinked(_ name: Data, fileInode: UInt32) -> Bool? {
    guard name.first == UInt8(ascii: "/"), fileInode != 0 else { return nil }
    var st = stat()
    let path = "/proc/\(pid)/root" + String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    let there =
      lstat(path, &st) == 0 && st.st_mode & S_IFMT == S_IFSOCK
      && UInt32(truncatingIfNeeded: st.st_ino) == fileInode
    return there ? nil : true
  }

  /// The clients whose connections wait in listener `diag`'s queue, in the order accept(2)
  /// takes them. Each comes back by connecting to the listener's name again, which keeps
  /// neither bytes it sent (they wait in an embryo socket no descriptor reaches) nor a client
  /// gone since: both refused, as a listener that lost its name.
  private func pendingConnections(of diag: ck_unix_diag, unlinked: Bool, refuse: (String, String) -> CKError) throws
    -> [UInt64]
  {
    let hint = "checkpoint once the server has accepted them"
    let waiting = "a listening unix socket with \(diag.receive_queue) connection(s) not yet accepted"
    guard diag.name_length > 0, !unlinked else { throw refuse("\(waiting), its name no longer reachable", hint) }
    guard diag.icon_count <= UInt32(CK_UNIX_ICONS) else { throw refuse("\(waiting), more than \(CK_UNIX_ICONS)", hint) }
    let clients = withUnsafeBytes(of: diag.icons) { Array($0.bindMemory(to: UInt32.self).prefix(Int(diag.icon_count))) }
    for client in clients {
      guard client != 0 else { throw refuse("\(waiting), one from a client that has closed its end", hint) }
      var seen = ck_unix_diag()
      let found = Self.diagQuestions.withLock { _ in ck_unix_diag(sockDiag, client, &seen) }
      guard found == 0 else { throw refuse("\(waiting): its client socket:[\(client)] is gone", hint) }
      guard seen.send_queue == 0 else {
        throw refuse("\(waiting), one holding \(seen.send_queue) bytes its client sent", hint)
      }
    }
    return clients.map { UInt64($0) }
  }

  /// A unix socket: its name, peer, queue (with descriptors in flight), shutdown state and
  /// options. Long by nature: one fact after another from one sock_diag answer, each
  /// refusal naming what ckcont cannot keep.
  func captureUnixSocket(
    _ ours: Int32, facts: ck_socket_facts, inode: UInt64, refuse: (String, String) -> CKError
  ) throws -> SocketImage {
    let hint = "close it before the checkpoint, or wait for support of this kind"
    var diag = ck_unix_diag()
    // A negative sockDiag is the error making it; ck_unix_diag on it would say EBADF. The
    // one netlink socket serves the processes captured at once: a question and its answer
    // must not interleave with another's (each would read the other's socket).
    let found =
      sockDiag < 0
      ? sockDiag : Self.diagQuestions.withLock { _ in ck_unix_diag(sockDiag, UInt32(truncatingIfNeeded: inode), &diag) }
    guard found == 0 else {
      throw refuse("a unix socket sock_diag does not know (\(String(cString: strerror(-found))))", hint)
    }
    let name = withUnsafeBytes(of: diag.name) { Data($0.prefix(Int(diag.name_length))) }
    let unlinked = nameUnlinked(name, fileInode: diag.file_inode)
    let options = try SocketOptions.capture(ours, facts, refuse: refuse)
    if facts.listening != 0 {
      var image = SocketImage(
        family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil,
        backlog: Int32(clamping: diag.send_queue), options: options, inode: inode)
      image.nameUnlinked = unlinked
      if diag.receive_queue > 0 {
        image.pending = try pendingConnections(of: diag, unlinked: unlinked == true, refuse: refuse)
      }
      return image
    }
    /// What waits, with each sender's name as sock_diag gives names (sun_path bytes after the
    /// 2-byte family; empty for an unnamed sender).
    func peekWaiting() throws -> [(bytes: Data, sender: Data, passed: [Int32])] {
      try self.peekWaiting(ours, descriptors: true, what: "a unix socket", refuse: refuse).map {
        ($0.bytes, $0.sender.dropFirst(2), $0.passed)
      }
    }
    /// Descriptors in flight, as placeholders: ckcont's copy in `fd`, no pid yet.
    func placeholders(_ fds: [Int32], at: Int, length: Int? = nil) -> PassedDescriptors? {
      fds.isEmpty
        ? nil : PassedDescriptors(at: at, length: length, descriptors: fds.map { DescriptorReference(pid: 0, fd: $0) })
    }
    let credentials =
      facts.peer_pid != 0 || facts.peer_uid != UInt32.max
      ? PeerCredentials(
        pid: facts.peer_pid, uid: facts.peer_uid, gid: facts.peer_gid, groups: try Self.peerGroups(ours, inode: inode))
      : nil
    let connectedByName = try datagramPeerName(facts, diag: diag, credentials: credentials, refuse: refuse)
    guard diag.peer != 0, connectedByName == nil else {
      guard facts.waiting == 0 || facts.type == Int32(SOCK_DGRAM.rawValue) && !name.isEmpty else {
        throw refuse("an unconnected unix socket with a message waiting to be read", hint)
      }
      var image = SocketImage(
        family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil,
        backlog: nil,
        options: options, inode: inode)
      image.nameUnlinked = unlinked
      image.peer = connectedByName
      if facts.waiting > 0 {
        // Datagrams sent to its name: they are sent again from the same names at restore.
        let waiting = try peekWaiting()
        let inFlight = waiting.flatMap(\.passed)
        guard inFlight.isEmpty else {
          for fd in inFlight { close(fd) }
          throw refuse(
            "a unix datagram socket no peer is connected to, with descriptors in flight (SCM_RIGHTS)",
            "checkpoint once they have been received")
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
      guard facts.waiting <= 16 << 20 else {
        throw refuse("a unix socket with \(facts.waiting) bytes waiting to be read", hint)
      }
      for piece in try peekWaiting() {
        if let attached = placeholders(piece.passed, at: queued.count, length: piece.bytes.count) {
          passed.append(attached)
        }
        queued += piece.bytes
      }
    }
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: 0, address: name.isEmpty ? nil : name, peer: nil,
      backlog: nil,
      options: options, inode: inode, peerInode: UInt64(diag.peer), queued: queued.isEmpty ? nil : queued)
    image.messages = messages
    image.passed = passed.isEmpty ? nil : passed
    if diag.shutdown & 3 != 0 { image.shutdown = Int32(diag.shutdown & 3) }
    image.peerCredentials = credentials
    return image
  }

  /// The name of the socket a unix datagram socket connect(2)ed to: such a connection goes one
  /// way and carries no credentials (a socketpair's ends carry their maker's), and comes back
  /// by connecting to that name again. nil for any other socket. One whose peer's file was
  /// unlinked cannot be connected again: refused.
  private func datagramPeerName(
    _ facts: ck_socket_facts, diag: ck_unix_diag, credentials: PeerCredentials?, refuse: (String, String) -> CKError
  ) throws -> Data? {
    guard diag.peer != 0, facts.type == Int32(SOCK_DGRAM.rawValue), credentials == nil, facts.peer_length > 2 else {
      return nil
    }
    let name = withUnsafeBytes(of: facts.peer) { Data($0[2..<Int(min(facts.peer_length, 128))]) }
    var peer = ck_unix_diag()
    let found = Self.diagQuestions.withLock { _ in ck_unix_diag(sockDiag, diag.peer, &peer) }
    if found == 0, nameUnlinked(name, fileInode: peer.file_inode) == true {
      throw refuse(
        "a unix datagram socket connected to socket:[\(diag.peer)], whose file \(String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)) was unlinked since, so that nothing can connect to it again",
        "checkpoint after it has connected to the socket now at that path")
    }
    return name
  }
}

extension FileCapture {
  /// SO_PEERGROUPS: the supplementary groups of whoever made the connection, as the host
  /// names them (dbus-daemon decides by them).
  static func peerGroups(_ fd: Int32, inode: UInt64) throws -> [UInt32]? {
    var groups = [UInt32](repeating: 0, count: 64)
    var length = socklen_t(groups.count * MemoryLayout<UInt32>.size)
    if getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, &groups, &length) != 0 {
      // ENODATA: no credentials (a datagram connection); ERANGE gives the length it needs.
      if errno == ENODATA { return nil }
      if errno == ERANGE { groups = [UInt32](repeating: 0, count: Int(length) / MemoryLayout<UInt32>.size) }
    }
    try syscallChecked("getsockopt(SO_PEERGROUPS)", "socket:[\(inode)]") {
      getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, &groups, &length)
    }
    return Array(groups.prefix(Int(length) / MemoryLayout<UInt32>.size))
  }
}

extension FileBatch {
  /// The socket file a unix name left behind when its process died: bind would find it
  /// taken. Only a socket file at an absolute path is removed, found in the task's view.
  func removeStaleSocketFile(_ name: Data) throws {
    guard name.first == UInt8(ascii: "/") else { return }
    let path = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    let root = try RootedDirectory("/proc/\(injector.pid)/root", name: "the root of task \(injector.pid)")
    try root.withParent(of: path) { directory, entry in
      var st = stat()
      guard fstatat(directory, entry, &st, AT_SYMLINK_NOFOLLOW) == 0, st.st_mode & S_IFMT == S_IFSOCK else { return }
      try syscallChecked("unlink", "the stale socket file \(path)") { unlinkat(directory, entry, 0) }
    }
  }

  /// A socket whose name's file was unlinked or replaced (``SocketImage/nameUnlinked``)
  /// binds its name and unlinks the file at once, in the task. Whatever is at the path now
  /// (the replacement, or its stale socket file) is moved aside for the bind and put back
  /// by `putBack`, once the batch ran; nil when the path is free.
  func moveAsideForUnlinkedName(_ name: Data, fd: Int32) throws -> (() throws -> Void)? {
    try UnixConnections.moveAside(name, seenBy: injector.pid, tag: fd)
  }
}

extension WaitingDatagrams {
  static func deliverUnix(
    _ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: Logger
  ) throws {
    var holders: [Data: (hostPid: Int32, fd: Int32)] = [:]
    var receivers: [(socket: SocketImage, hostPid: Int32, fd: Int32)] = []
    var seen: Set<UInt64> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.family == AF_UNIX, socket.type == Int32(SOCK_DGRAM.rawValue) else {
          continue
        }
        if let name = socket.address, holders[name] == nil { holders[name] = (injector.pid, descriptor.fd) }
        if socket.peerInode == nil, socket.messages != nil, let inode = socket.inode, seen.insert(inode).inserted {
          receivers.append((socket, injector.pid, descriptor.fd))
        }
      }
    }
    for receiver in receivers {
      guard let name = receiver.socket.address, let messages = receiver.socket.messages,
        let senders = receiver.socket.senders
      else { continue }
      let destination = sockaddrUnix(name)
      // Names are resolved as the container sees them: abstract ones in its network
      // namespace, paths under its root (a thread of its own, chrooted there).
      let root = "/proc/\(receiver.hostPid)/root"
      try NamespaceThread.run(in: "net", of: receiver.hostPid) {
        guard ck_unshare(Int32(CK_CLONE_FS)) == 0 else {
          throw SyscallError("unshare", "CLONE_FS", .init(rawValue: errno))
        }
        try syscallChecked("chroot", root) { chroot(root) }
        try syscallChecked("chdir", "/ under \(root)") { chdir("/") }
        for (message, sender) in zip(messages, senders) {
          let sending = try senderSocket(sender, holders: holders, log: log)
          try message.withUnsafeBytes { bytes in
            _ = try destination.withUnsafeBytes { address in
              try syscallChecked("sendto", "a datagram that waited in socket:[\(receiver.socket.inode ?? 0)]") {
                sendto(
                  sending.raw, bytes.baseAddress, bytes.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL),
                  address.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t(address.count))
              }
            }
          }
        }
      }
    }
  }

  /// A descriptor of ckcont's to send from as `sender`: the container's socket of that name,
  /// else a new one bound to it, else (unnamed, or the name taken) an unnamed one.
  private static func senderSocket(_ sender: Data, holders: [Data: (hostPid: Int32, fd: Int32)], log: Logger)
    throws -> OwnedDescriptor
  {
    if !sender.isEmpty, let holder = holders[sender] {
      return try OwnedDescriptor(copying: holder.fd, ofProcess: holder.hostPid)
    }
    let fd = try OwnedDescriptor("socket", "a unix datagram socket") {
      socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue | SOCK_CLOEXEC.rawValue), 0)
    }
    if !sender.isEmpty {
      let address = sockaddrUnix(sender)
      let bound = address.withUnsafeBytes {
        bind(fd.raw, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
      }
      if bound != 0 {
        log.debug(
          "a datagram's sender \(SocketImage.text(sender) ?? "?") could not be named again (\(String(cString: strerror(errno)))): it comes unnamed"
        )
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
  /// Where a socket's peer lives now, by the peer's inode: a restored process and its fd.
  private typealias Holders = [UInt64: (hostPid: Int32, fd: Int32)]

  /// Refills every socket with descriptors in flight, through its peer.
  static func deliver(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var holders: Holders = [:]
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        if let inode = descriptor.socket?.inode, holders[inode] == nil {
          holders[inode] = (injector.pid, descriptor.fd)
        }
      }
    }
    var done: Set<UInt64> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.passed != nil, let inode = socket.inode,
          let peerInode = socket.peerInode, done.insert(inode).inserted
        else { continue }
        try refill(socket, inode: inode, peerInode: peerInode, holders: holders, injectors: injectors)
      }
    }
  }

  /// Sends what waited in `socket`, piece by piece with the descriptors attached, through
  /// a copy of its peer.
  private static func refill(
    _ socket: SocketImage, inode: UInt64, peerInode: UInt64, holders: Holders, injectors: [Int32: Injector]
  ) throws {
    guard let peer = holders[peerInode] else {
      throw CKError(
        .failed, "socket:[\(inode)] has descriptors in flight but no process holds its peer socket:[\(peerInode)]")
    }
    let ours = try OwnedDescriptor(copying: peer.fd, ofProcess: peer.hostPid)
    for piece in pieces(of: socket) {
      // Raw numbers: an array cannot hold noncopyable owners, and ck_send_with_fds takes one.
      var fds: [Int32] = []
      defer { for fd in fds { close(fd) } }
      for reference in piece.passed {
        fds.append(try open(reference, inode: inode, injectors: injectors).take())
      }
      try send(piece.bytes, with: fds, through: ours.raw, inode: inode)
    }
  }

  /// Each message, or the stream cut where descriptors are attached: a read ends after the
  /// piece descriptors came with, so it is sent alone again.
  private static func pieces(of socket: SocketImage) -> [(bytes: Data, passed: [DescriptorReference])] {
    let passed = socket.passed ?? []
    guard socket.type == Int32(SOCK_STREAM.rawValue) else {
      return (socket.messages ?? []).enumerated().map { index, message in
        (message, passed.first { $0.at == index }?.descriptors ?? [])
      }
    }
    let queued = socket.queued ?? Data()
    let cuts = Set([0, queued.count] + passed.flatMap { [$0.at, $0.at + ($0.length ?? 0)] }).sorted()
    return zip(cuts, cuts.dropFirst()).filter { $0.1 > $0.0 }.map { start, end in
      let attached = passed.first { $0.at == start }?.descriptors ?? []
      return (queued.subdata(in: queued.startIndex + start..<queued.startIndex + end), attached)
    }
  }

  /// A descriptor of ckcont's for one passed in flight: a copy of a process's, or, for one
  /// only the message held, the file or pipe end opened again.
  private static func open(_ reference: DescriptorReference, inode: UInt64, injectors: [Int32: Injector]) throws
    -> OwnedDescriptor
  {
    if let throughPid = reference.throughPid, let throughFd = reference.throughFd, let flags = reference.flags {
      // A pipe end only the message held: a new end of the same pipe, opened through
      // the one a process holds; without waiting for the other side, as it was made.
      guard let holder = injectors[throughPid] else {
        throw CKError(
          .failed,
          "socket:[\(inode)]: a pipe in flight goes through process \(throughPid), which the bundle does not hold")
      }
      let path = "/proc/\(holder.pid)/fd/\(throughFd)"
      let fd = try OwnedDescriptor("open", "\(path), a pipe end in flight in socket:[\(inode)]") {
        Glibc.open(path, flags | O_NONBLOCK | O_CLOEXEC)
      }
      if flags & O_NONBLOCK == 0 { _ = fcntl(fd.raw, F_SETFL, flags & ~O_NONBLOCK) }
      return fd
    }
    if let path = reference.path, let flags = reference.flags {
      // A file only the message held: opened again (new, so nothing shares it), never
      // created or truncated.
      let fd = try OwnedDescriptor("open", "\(path), in flight in socket:[\(inode)]") {
        Glibc.open(path, reopening(flags))
      }
      if let position = reference.position, position > 0 {
        try syscallChecked("lseek", path) { lseek(fd.raw, off_t(position), SEEK_SET) }
      }
      return fd
    }
    guard let holder = injectors[reference.pid] else {
      throw CKError(
        .failed,
        "socket:[\(inode)]: a descriptor in flight belongs to process \(reference.pid), which the bundle does not hold")
    }
    return try OwnedDescriptor(copying: reference.fd, ofProcess: holder.pid)
  }

  /// Sends `bytes` through `socket`, the descriptors with the first bytes, as they came.
  private static func send(_ bytes: Data, with fds: [Int32], through socket: Int32, inode: UInt64) throws {
    try bytes.withUnsafeBytes { bytes in
      var sent = 0
      repeat {
        let result: Int
        if sent == 0 && !fds.isEmpty {
          result = ck_send_with_fds(socket, bytes.baseAddress, bytes.count, fds, Int32(fds.count))
        } else {
          let n = Glibc.send(
            socket, bytes.baseAddress.map { $0 + sent }, bytes.count - sent, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
          result = n < 0 ? -Int(errno) : n
        }
        guard result > 0 || (result == 0 && bytes.isEmpty) else {
          throw SyscallError(
            "sendmsg",
            "what waited in socket:[\(inode)] with descriptors in flight (\(sent) of \(bytes.count) bytes in)",
            .init(rawValue: result < 0 ? Int32(-result) : EAGAIN))
        }
        sent += result
      } while sent < bytes.count
    }
  }
}

extension Dump {
  /// A client whose connection waits in a listener's queue is connected to an embryo socket
  /// no process holds: it is marked to connect to that listener again
  /// (``SocketImage/pendingOn``). A client no process of the container holds stops the dump.
  func markPendingConnections(_ tasks: inout [CapturedTask]) throws {
    var listeners: [UInt64: UInt64] = [:]
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let listener = socket.inode else { continue }
        for client in socket.pending ?? [] { listeners[client] = listener }
      }
    }
    guard !listeners.isEmpty else { return }
    var found: Set<UInt64> = []
    for index in tasks.indices {
      for slot in tasks[index].files.descriptors.indices {
        guard let inode = tasks[index].files.descriptors[slot].socket?.inode, let listener = listeners[inode] else {
          continue
        }
        tasks[index].files.descriptors[slot].socket?.pendingOn = listener
        tasks[index].files.descriptors[slot].socket?.peerInode = nil
        found.insert(inode)
      }
    }
    if let outside = listeners.keys.first(where: { !found.contains($0) }), let listener = listeners[outside] {
      throw CKError(
        .failed,
        "unix listener socket:[\(listener)] has a connection waiting to be accepted from socket:[\(outside)], a client outside the container, which ckcont cannot checkpoint",
        hint: "checkpoint once the server has accepted it")
    }
  }

  /// A connected unix socket is restored as one end of a pair. One whose peer no process
  /// of the container holds is connected to the outside: marked, to come back with that peer
  /// gone (``SocketImage/peerOutside``).
  func markOutsideSocketPeers(_ tasks: inout [CapturedTask]) {
    let sockets = Set(tasks.flatMap { $0.files.descriptors.compactMap { $0.socket?.inode } })
    for index in tasks.indices {
      for slot in tasks[index].files.descriptors.indices {
        guard let peer = tasks[index].files.descriptors[slot].socket?.peerInode, !sockets.contains(peer) else {
          continue
        }
        tasks[index].files.descriptors[slot].socket?.peerOutside = true
        log.debug(
          "task \(tasks[index].hostPid): fd \(tasks[index].files.descriptors[slot].fd) is connected to socket:[\(peer)] outside the container: restored with that peer gone"
        )
      }
    }
  }

  /// Who made each unix connection of `task` was captured by its pid on the host: it
  /// becomes the pid inside, 0 for a process outside the container or gone.
  static func namePeerCredentialsInside(_ task: inout CapturedTask, innerPid: [Int32: Int32]) {
    for slot in task.files.descriptors.indices {
      guard let maker = task.files.descriptors[slot].socket?.peerCredentials?.pid else { continue }
      task.files.descriptors[slot].socket?.peerCredentials?.pid = innerPid[maker] ?? 0
    }
  }

  /// Descriptors in flight in unix sockets (SCM_RIGHTS) were captured as ckcont's own copies
  /// (``PassedDescriptors`` with pid 0): each becomes the descriptor of a process of the
  /// container that holds the same open file description (kcmp), and ckcont's copy is closed.
  /// One that no process holds (sent, then closed by its sender) stops the dump.
  func resolvePassed(_ tasks: inout [CapturedTask]) throws {
    // Raw numbers: the capture kept them in the model (``PassedDescriptors``), closed here.
    var copies: [Int32] = []
    defer { for fd in copies { close(fd) } }
    for task in tasks {
      for descriptor in task.files.descriptors {
        copies += (descriptor.socket?.passed ?? []).flatMap { $0.descriptors.map(\.fd) }
      }
    }
    let holders = tasks.flatMap { task in
      task.files.descriptors.map { (hostPid: task.hostPid, pid: task.entry.pid, fd: $0.fd) }
    }
    let me = getpid()
    for taskIndex in tasks.indices {
      for index in tasks[taskIndex].files.descriptors.indices {
        guard var passed = tasks[taskIndex].files.descriptors[index].socket?.passed else { continue }
        for group in passed.indices {
          for slot in passed[group].descriptors.indices {
            let ours = passed[group].descriptors[slot].fd
            if let holder = holders.first(where: { ck_kcmp_file(me, $0.hostPid, ours, $0.fd) == 0 }) {
              passed[group].descriptors[slot] = DescriptorReference(pid: holder.pid, fd: holder.fd)
            } else if let file = Self.fileOnlyInFlight(ours) {
              passed[group].descriptors[slot] = file
            } else if let end = Self.pipeEndOnlyInFlight(ours, holders: holders) {
              passed[group].descriptors[slot] = end
            } else {
              let what = (try? readLink("/proc/self/fd/\(ours)")) ?? "?"
              throw CKError(
                .failed,
                "task \(tasks[taskIndex].hostPid): fd \(tasks[taskIndex].files.descriptors[index].fd) (a unix socket) holds a descriptor in flight (\(what)) that no process of the container holds and that is no file to open again, which ckcont cannot checkpoint yet",
                hint: "checkpoint once it has been received")
            }
          }
        }
        tasks[taskIndex].files.descriptors[index].socket?.passed = passed
      }
    }
  }

  /// A descriptor in flight that only the message holds, when it is one to open again: a
  /// regular file or a device (not a terminal) at a path ckcont sees, with its flags and
  /// offset. Nil for anything else (a pipe, a socket, a deleted file...).
  static func fileOnlyInFlight(_ fd: Int32) -> DescriptorReference? {
    var st = stat()
    guard fstat(fd, &st) == 0, let path = try? readLink("/proc/self/fd/\(fd)"), path.hasPrefix("/"),
      !path.hasSuffix(" (deleted)")
    else { return nil }
    let type = st.st_mode & S_IFMT
    guard type == S_IFREG || type == S_IFCHR && Terminals.side(device: UInt64(st.st_rdev)) == nil else { return nil }
    let flags = fcntl(fd, F_GETFL)
    guard flags >= 0 else { return nil }
    let position = type == S_IFREG ? lseek(fd, 0, SEEK_CUR) : 0
    // O_LARGEFILE shows in F_GETFL on 64-bit kernels; opening with it changes nothing.
    return DescriptorReference(path: path, flags: flags & ~Int32(0o100000), position: max(0, Int64(position)))
  }

  /// A pipe's end in flight that only the message holds, when a process of the container
  /// holds the same pipe (either end): the restore opens a new end through that one
  /// (/proc/<pid>/fd/<fd>, as a FIFO opens).
  static func pipeEndOnlyInFlight(_ fd: Int32, holders: [(hostPid: Int32, pid: Int32, fd: Int32)])
    -> DescriptorReference?
  {
    guard let target = try? readLink("/proc/self/fd/\(fd)"), target.hasPrefix("pipe:[") else { return nil }
    let flags = fcntl(fd, F_GETFL)
    guard flags >= 0 else { return nil }
    guard let holder = holders.first(where: { (try? readLink("/proc/\($0.hostPid)/fd/\($0.fd)")) == target }) else {
      return nil
    }
    return DescriptorReference(
      pipeThrough: holder.pid, fd: holder.fd, flags: flags & (3 | Int32(O_NONBLOCK) | Int32(O_APPEND)))
  }
}

/// Unix sockets shut down in a direction (``SocketImage/shutdown``), shut down again once
/// every queue is filled (a socket shut for sending could not carry its peer's bytes): from
/// ckcont's copy of each, as shutdown(2) acts on the socket, not the descriptor. The kernel
/// marks a stream's peer as well, as it did when the program called it.
/// Connections that waited in unix listeners' queues: each client connects to its listener
/// again, by the listener's name, in the order accept(2) takes them, once every socket is in
/// place (a listener and its clients may be any processes'). The client's own process makes
/// the call: the path is looked up in its view, and the embryo records it as the peer.
enum PendingConnections {
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var holders: [UInt64: (pid: Int32, fd: Int32)] = [:]
    for task in tasks {
      for descriptor in task.files.descriptors {
        if let inode = descriptor.socket?.inode, holders[inode] == nil {
          holders[inode] = (task.entry.pid, descriptor.fd)
        }
      }
    }
    var done: Set<UInt64> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let listener = descriptor.socket, let inode = listener.inode, let pending = listener.pending,
          let name = listener.address, done.insert(inode).inserted
        else { continue }
        for client in pending {
          guard let holder = holders[client], let injector = injectors[holder.pid] else {
            throw CKError(.failed, "no process holds socket:[\(client)], waiting to be accepted by socket:[\(inode)]")
          }
          injector.resetData()
          let sockaddr = Data([UInt8(AF_UNIX), 0]) + name
          let address = try sockaddr.withUnsafeBytes { try injector.put($0) }
          try injector.call(
            .connect(Int64(holder.fd), address, length: sockaddr.count),
            "connect fd \(holder.fd) of process \(holder.pid) to \(listener.description), to wait in its queue")
        }
      }
    }
  }
}

enum SocketShutdowns {
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var done: Set<UInt64> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, let bits = socket.shutdown, let inode = socket.inode,
          done.insert(inode).inserted
        else { continue }
        let how = bits == 3 ? Int32(SHUT_RDWR) : bits == 2 ? Int32(SHUT_WR) : Int32(SHUT_RD)
        let ours = try OwnedDescriptor(copying: descriptor.fd, ofProcess: injector.pid)
        try syscallChecked("shutdown", "socket:[\(inode)] of process \(task.entry.pid)") { shutdown(ours.raw, how) }
      }
    }
  }
}

/// Datagram sockets connect(2)ed to a named one (``SocketImage/peer``) connect to that name
/// again, from their own process (a path and an abstract name are found in its namespaces),
/// once every socket is bound. A peer gone since leaves it unconnected, as a -v line says
/// (its next send fails either way).
enum DatagramConnections {
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], log: Logger) throws {
    var done: Set<UInt64> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.family == AF_UNIX, let name = socket.peer,
          let inode = socket.inode, done.insert(inode).inserted
        else { continue }
        let sockaddr = Data([UInt8(AF_UNIX), 0]) + name
        injector.resetData()
        let address = try sockaddr.withUnsafeBytes { try injector.put($0) }
        let what = "connect fd \(descriptor.fd) of process \(task.entry.pid) to \(SocketImage.describeUnixName(name))"
        do {
          try injector.call(.connect(Int64(descriptor.fd), address, length: sockaddr.count), what)
        } catch {
          log.debug("\(what): \(error); left unconnected, as its peer is gone")
        }
      }
    }
  }
}
