import Bundle
import Foundation
import CKShim
import Glibc
import Linux

/// Open file descriptions several restored processes share: the first to restore one holds
/// it at a high fd until every process has taken its copy (pidfd_getfd from inside).
final class SharedDescriptions {
  /// Resources the caller hands in (`--inherit-fd`): `pipe:[inode]` or a file's path -> a
  /// descriptor of ckcont's, reopened by the task instead of making the resource anew.
  let inherited: [String: Int32]

  /// Whether the container had an IPC namespace of its own: then its POSIX message queues
  /// are made anew in the new one; in the host's they outlived the container.
  let ownIPCNamespace: Bool

  /// Whether the container has a user namespace of its own (see ``FileRestore``'s paths).
  let inUserNamespace: Bool
  /// The container's pseudo-terminals, made again by ckcont.
  var terminals: Terminals?
  /// A shell job's terminal (``ProcessTree/shellJobTerminal``) and ckcont's, which
  /// descriptors of it become (the job is in ckcont's session).
  var shellJobTerminal: (dumped: String, now: String)?

  init(inherited: [String: Int32] = [:], ownIPCNamespace: Bool = true, inUserNamespace: Bool = false) {
    self.inherited = inherited
    self.ownIPCNamespace = ownIPCNamespace
    self.inUserNamespace = inUserNamespace
  }

  /// POSIX message queues made again (by name), so that each is made and filled once.
  var messageQueues: Set<String> = []

  /// sharedDescription id -> the process (pid inside the container) and fd holding it.
  var holders: [UInt64: (pid: Int32, fd: Int64)] = [:]
  /// pipe inode -> the process holding both ends of the one pipe made for it.
  var pipes: [UInt64: (pid: Int32, read: Int64, write: Int64)] = [:]
  /// Where the processes are among pid namespaces: a process below the container's names
  /// another by its own pid for it, or, when it cannot see it, gets copies through ckcont.
  var layout = PidNamespaces.Layout([])
  /// Each process's pid inside the container -> its host pid.
  var hostPids: [Int32: Int32] = [:]
  /// FIFOs whose buffered data has been written back.
  var filledFifos: Set<UInt64> = []
  /// Unix socket inode -> the process (pid inside, host pid) and fd holding that end of the
  /// socketpair made for it and its peer.
  var socketEnds: [UInt64: (pid: Int32, hostPid: Int32, fd: Int64)] = [:]
  /// Unix sockets whose waiting bytes have been written back (through their peer).
  var filledSockets: Set<UInt64> = []
  /// memfd inode -> the task (host pid) and high fd holding the one recreated for it.
  var memfds: [UInt64: (hostPid: Int32, fd: Int64)] = [:]
  /// Deleted file's inode -> the task (host pid) and high fd holding its recreated ghost.
  var ghosts: [UInt64: (hostPid: Int32, fd: Int64)] = [:]
}

/// Reopens a process's descriptors inside the restored task at their exact numbers, with
/// their flags, positions, and the data that was buffered in its pipes.
///
/// Two passes over all processes, so no descriptor clobbers another and shared ones exist
/// before anyone takes a copy: ``prepare()`` creates (or fetches) every open file description
/// at a number above all targets; ``install(_:)`` dup3s each into place and closes the high ones.
struct FileRestore {
  let image: FileTableImage
  let injector: Injector
  /// The process's pid inside the container (what other processes' pidfd_open needs).
  let pid: Int32
  let shared: SharedDescriptions
  /// Memory objects already recreated: a memfd that is also mapped is opened through them.
  let sharedObjects: SharedMemoryObjects
  let log: (String) -> Void

  /// What ``prepare()`` left at high fds: numbers above every target, handed out in order,
  /// so that calls naming them can be queued before they exist.
  struct Prepared {
    var descriptions: [Int32: Int64] = [:]  // target fd -> high fd holding its description
    var highFds: [Int64] = []
    var fifoKeepers: [UInt64: Int64] = [:]  // FIFO inode -> a read-write fd of it
    var epollWatches: [(epoll: Int32, targets: [EpollTarget])] = []  // epolls made here, by target number
    var nextHigh: Int64

    mutating func takeHigh() -> Int64 {
      defer { nextHigh += 1 }
      highFds.append(nextHigh)
      return nextHigh
    }
  }

  /// Pipes first, one call at a time (pipe2 returns its ends in memory); then everything
  /// else in one batch: copies of descriptions other processes hold, files and FIFOs.
  func prepare() throws -> Prepared {
    try FileBatch(self).run()
  }

  /// dup3 of every description to its number, then the high numbers closed: one batch.
  func install(_ prepared: Prepared) throws {
    var batch = Injector.Batch()
    for descriptor in image.descriptors {
      guard let source = prepared.descriptions[descriptor.sharesWith ?? descriptor.fd] else { continue }
      batch.add(
        "dup3 fd \(descriptor.fd)", SyscallNumber.dup3, .value(UInt64(source)), .value(UInt64(descriptor.fd)),
        .value(descriptor.closeOnExec ? UInt64(O_CLOEXEC) : 0), expecting: Int64(descriptor.fd))
      if batch.isFull {
        try injector.run(batch)
        batch = Injector.Batch()
      }
    }
    injector.resetData()
    let off = try injector.put(words: [0])
    let on = try injector.put(words: [1])
    func setOption(_ what: String, fd: Int32, _ level: Int32, _ name: Int32, _ value: UInt64) throws {
      if batch.isFull {
        try injector.run(batch)
        batch = Injector.Batch()
      }
      batch.add(
        "\(what) fd \(fd)", SyscallNumber.setsockopt, .value(UInt64(fd)), .value(UInt64(level)), .value(UInt64(name)), .value(value),
        .value(4))
    }
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      guard let socket = descriptor.socket, socket.tcp != nil else { continue }
      try setOption("TCP_REPAIR off", fd: descriptor.fd, 6, TCPRepair.mode, off)
      // Leaving repair mode clears SO_REUSEADDR: a connection without it that lingers after
      // its process closed it (FIN_WAIT, LAST_ACK) would keep a new listener off the port.
      if socket.options.reusesAddress {
        try setOption("SO_REUSEADDR", fd: descriptor.fd, SOL_SOCKET, SO_REUSEADDR, on)
      }
    }
    for (epoll, targets) in prepared.epollWatches {
      for target in targets {
        if batch.isFull || injector.dataRoom < 64 {
          try injector.run(batch)
          batch = Injector.Batch()
          injector.resetData()
        }
        // struct epoll_event is packed on x86_64: events (32 bits), then data (64 bits).
        var event = [UInt8](repeating: 0, count: 16)
        withUnsafeBytes(of: target.events.littleEndian) { event.replaceSubrange(0..<4, with: $0) }
        withUnsafeBytes(of: target.data.littleEndian) { event.replaceSubrange(4..<12, with: $0) }
        let at = try injector.put(event)
        batch.add(
          "epoll_ctl(\(epoll), ADD, \(target.fd))", SyscallNumber.epollCtl, .value(UInt64(epoll)), .value(1),
          .value(UInt64(target.fd)), .value(at))
      }
    }
    for fd in prepared.highFds + [injector.channel] where fd >= 0 {
      batch.add("close \(fd)", SyscallNumber.close, .value(UInt64(fd)))
      if batch.isFull {
        try injector.run(batch)
        batch = Injector.Batch()
      }
    }
    // Signal-driven I/O: the owner and signal first, then O_ASYNC, which open(2) and the
    // calls that made the descriptor ignore (F_SETFL is what turns it on).
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      guard let owner = descriptor.asyncOwner else { continue }
      if batch.isFull || injector.dataRoom < 64 {
        try injector.run(batch)
        batch = Injector.Batch()
        injector.resetData()
      }
      let fd = UInt64(descriptor.fd)
      if owner.id != 0 {
        let at = try injector.put(words: [UInt64(UInt32(bitPattern: owner.type)) | UInt64(UInt32(bitPattern: owner.id)) << 32])
        batch.add("F_SETOWN_EX fd \(descriptor.fd)", SyscallNumber.fcntl, .value(fd), .value(15 /* F_SETOWN_EX */), .value(at))
      }
      if owner.signal != 0 {
        batch.add("F_SETSIG fd \(descriptor.fd)", SyscallNumber.fcntl, .value(fd), .value(10 /* F_SETSIG */), .value(UInt64(owner.signal)))
      }
      batch.add("F_SETFL O_ASYNC fd \(descriptor.fd)", SyscallNumber.fcntl, .value(fd), .value(UInt64(F_SETFL)), .value(UInt64(descriptor.flags)))
    }
    // Locks last: closing any descriptor of a file drops the process's POSIX locks on it
    // (the high ones above). Without waiting: a lock someone else holds now is a failure to
    // say, not a hang.
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      for lock in descriptor.locks ?? [] {
        if batch.isFull || injector.dataRoom < 64 {
          try injector.run(batch)
          batch = Injector.Batch()
          injector.resetData()
        }
        let what = "\(lock.write ? "write" : "read") \(lock.kind.rawValue) lock on fd \(descriptor.fd)"
        if lock.kind == .flock {
          batch.add(what, SyscallNumber.flock, .value(UInt64(descriptor.fd)), .value(UInt64((lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB)))
          continue
        }
        if lock.kind == .lease {
          // F_SETLEASE with F_RDLCK or F_WRLCK.
          batch.add(what, SyscallNumber.fcntl, .value(UInt64(descriptor.fd)), .value(1024 /* F_SETLEASE */), .value(lock.write ? 1 : 0))
          continue
        }
        // struct flock: l_type, l_whence (shorts), then l_start, l_len (64 bits), l_pid.
        let type: UInt64 = lock.write ? 1 /* F_WRLCK */ : 0 /* F_RDLCK */
        let at = try injector.put(words: [type, UInt64(bitPattern: lock.start), UInt64(bitPattern: lock.length), 0])
        let command: UInt64 = lock.kind == .posix ? 6 /* F_SETLK */ : 37 /* F_OFD_SETLK */
        batch.add(what, SyscallNumber.fcntl, .value(UInt64(descriptor.fd)), .value(command), .value(at))
      }
    }
    try injector.run(batch)
    log("task \(injector.pid): \(image.descriptors.count) fds, \(image.pipes.count) pipes restored")
  }
}

/// One process's descriptors on their way to high numbers (``FileRestore/prepare()``): the
/// calls queued for the task (`batch`), what ckcont writes through them once they ran
/// (`after`), and what is made so far (`prepared`), shared by the steps below.
final class FileBatch {
  let image: FileTableImage
  let injector: Injector
  /// The process's pid inside the container.
  let pid: Int32
  let shared: SharedDescriptions
  /// Memory objects already recreated: a memfd that is also mapped is opened through them.
  let sharedObjects: SharedMemoryObjects
  var prepared: FileRestore.Prepared
  var batch = Injector.Batch()
  var after = AfterBatch()
  let pipesByInode: [UInt64: PipeImage]

  init(_ files: FileRestore) {
    image = files.image
    injector = files.injector
    pid = files.pid
    shared = files.shared
    sharedObjects = files.sharedObjects
    // Above the channel to ckcont too, which the task holds above every target until install.
    prepared = FileRestore.Prepared(nextHigh: max(Int64((image.descriptors.map(\.fd).max() ?? 0) + 1), injector.channel + 1))
    pipesByInode = Dictionary(image.pipes.map { ($0.inode, $0) }) { first, _ in first }
  }

  /// Pipes first, one call at a time (pipe2 returns its ends in memory); then everything
  /// else in one batch: copies of descriptions other processes hold, files and FIFOs.
  func run() throws -> FileRestore.Prepared {
    try prepareSocketPairs()
    try preparePipes()
    injector.resetData()
    try prepareInBatches()
    try finish(batch, after)
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      if let id = descriptor.sharedDescription, shared.holders[id] == nil, let high = prepared.descriptions[descriptor.fd] {
        shared.holders[id] = (pid, high)
      }
    }
    return prepared
  }

  func heldElsewhere(_ descriptor: DescriptorImage) -> (pid: Int32, fd: Int64)? {
    guard let id = descriptor.sharedDescription, let holder = shared.holders[id], holder.pid != pid else { return nil }
    return holder
  }
  func inheritedFD(_ descriptor: DescriptorImage) -> Int32? {
    let key = descriptor.kind == .pipe ? "pipe:[\(descriptor.pipe ?? 0)]" : descriptor.path ?? ""
    return shared.inherited[key]
  }

  /// Connected unix sockets: one end of a socketpair each (see ``socketPairEnd(_:)``).
  func prepareSocketPairs() throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil && descriptor.kind == .socket {
      guard heldElsewhere(descriptor) == nil, let socket = descriptor.socket, socket.peerInode != nil else { continue }
      let end = try socketPairEnd(socket)
      try injector.call(
        "F_SETFL fd \(descriptor.fd)", SyscallNumber.fcntl, UInt64(end), UInt64(F_SETFL), UInt64(descriptor.flags & ~O_ASYNC))
      prepared.descriptions[descriptor.fd] = end
    }
  }

  /// Pipes: both ends made (or fetched) at once, with their buffered data.
  func preparePipes() throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil && descriptor.kind == .pipe {
      guard heldElsewhere(descriptor) == nil, inheritedFD(descriptor) == nil, let inode = descriptor.pipe,
        let image = pipesByInode[inode]
      else { continue }
      let ends = try pipeEnds(image)
      let created = descriptor.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
      // Status flags (O_NONBLOCK...) belong to the description: set on the end itself. O_ASYNC
      // waits for the descriptor's own number: the kernel names that in its signals (si_fd).
      try injector.call(
        "F_SETFL fd \(descriptor.fd)", SyscallNumber.fcntl, UInt64(created), UInt64(F_SETFL), UInt64(descriptor.flags & ~O_ASYNC))
      prepared.descriptions[descriptor.fd] = created
    }
  }

  /// Queues open(path) of a path in the container and moves the result to a high number.
  func queueOpen(_ path: String, flags: Int32, fd: Int32) throws -> (opened: Int, high: Int64) {
    // Never creating or truncating; close-on-exec until installed.
    let address = try injector.put(string: path)
    let openFlags = reopening(flags)
    let opened = batch.add(
      "open fd \(fd) \(path)", SyscallNumber.open, .value(address), .value(UInt64(UInt32(bitPattern: openFlags))), .value(0))
    return (opened, queueMoveHigh(opened, what: "fd \(fd)"))
  }
  /// Runs the calls queued so far (then what they made is there to hand over).
  func runQueued() throws {
    try finish(batch, after)
    batch = Injector.Batch()
    after = AfterBatch()
  }
  /// Queues a file ckcont opens and hands over (see ``Injector/channel``), moved to a high
  /// number: `path` in ckcont's view is a file of its own (`/proc/self/fd/<n>`), one
  /// outside the container's root, or what another restored task holds (`/proc/<pid>/fd/
  /// <n>`, `map_files`). Opened with the descriptor's flags: a description of its own. A
  /// /proc entry is a magic symlink, which O_NOFOLLOW (sem_open's, say) would refuse.
  func queueHandedOver(_ path: String, flags: Int32, fd: Int32, inContainer: Bool = false) throws -> Int64 {
    let openFlags = reopening(flags) & ~O_NOFOLLOW
    let ours: Int32
    if inContainer {
      // The container's file as its root sees it, without leaving that root.
      let root = try syscallChecked("open", "the root of task \(injector.pid)") {
        open("/proc/\(injector.pid)/root", 0o10000000 /* O_PATH */ | O_DIRECTORY | O_CLOEXEC)
      }
      defer { close(root) }
      ours = try negErrnoChecked("openat2", "\(path) in the container for fd \(fd)") { ck_open_in_root(root, path, openFlags) }
    } else {
      ours = try syscallChecked("open", "\(path) for fd \(fd)") { open(path, openFlags) }
    }
    defer { close(ours) }
    return try queueReceived(ours, what: "fd \(fd) (\(path))", fd: fd)
  }
  /// Hands `ours`, a descriptor of ckcont's, to the task: the same description, moved to a
  /// high number.
  func queueReceived(_ ours: Int32, what: String, fd: Int32) throws -> Int64 {
    let received = try injector.receive(ours, what: what)
    let high = prepared.takeHigh()
    batch.add(
      "dup3 fd \(fd) to \(high)", SyscallNumber.dup3, .value(UInt64(received)), .value(UInt64(high)), .value(UInt64(O_CLOEXEC)),
      expecting: high)
    batch.add("close", SyscallNumber.close, .value(UInt64(received)))
    return high
  }
  /// lseek of the description at `high` to the descriptor's file position, if it had one.
  func queueSeek(_ high: Int64, to descriptor: DescriptorImage) {
    guard let position = descriptor.position, position > 0 else { return }
    batch.add(
      "lseek fd \(descriptor.fd) to \(position)", SyscallNumber.lseek, .value(UInt64(high)), .value(UInt64(position)),
      .value(0), expecting: position)
  }
  func queueMoveHigh(_ call: Int, what: String) -> Int64 {
    let high = prepared.takeHigh()
    batch.add(
      "dup3 \(what) to \(high)", SyscallNumber.dup3, .result(call), .value(UInt64(high)), .value(UInt64(O_CLOEXEC)),
      expecting: high)
    batch.add("close", SyscallNumber.close, .result(call))
    return high
  }
  /// A new socket with its options, bound, listening or connected as it was, at a high
  /// number.
  func queueSocket(_ socket: SocketImage, flags: Int32, fd: Int32) throws -> Int64 {
    if let tcp = socket.tcp { return try queueConnection(socket, tcp, flags: flags, fd: fd) }
    let made = batch.add(
      "socket fd \(fd)", SyscallNumber.socket, .value(UInt64(socket.family)),
      .value(UInt64(socket.type | Int32(SOCK_CLOEXEC.rawValue) | flags & O_NONBLOCK)), .value(UInt64(socket.protocolNumber)))
    for option in socket.options {
      let value = try injector.put(words: [UInt64(UInt32(bitPattern: option.value))])
      batch.add(
        "setsockopt(\(option.level), \(option.name)) fd \(fd)", SyscallNumber.setsockopt, .result(made),
        .value(UInt64(option.level)), .value(UInt64(option.name)), .value(value), .value(4))
    }
    if socket.family == 16, let address = socket.address {
      // Netlink: its port id again where it is free (in a new network namespace it is),
      // else one the kernel picks; its groups either way.
      let at = try address.withUnsafeBytes { try injector.put($0) }
      var anyPort = address
      anyPort.replaceSubrange(4..<8, with: [0, 0, 0, 0])
      let any = try anyPort.withUnsafeBytes { try injector.put($0) }
      batch.add("bind fd \(fd) to \(socket.description)", SyscallNumber.bind, .result(made), .value(at), .value(12), mayFail: true)
      batch.add("bind fd \(fd) to any port", SyscallNumber.bind, .result(made), .value(any), .value(12), mayFail: true)
      return queueMoveHigh(made, what: "fd \(fd)")
    }
    if let address = socket.address {
      // A unix name is sun_path: after the two bytes of sun_family.
      let sockaddr = socket.family == AF_UNIX ? Data([UInt8(AF_UNIX), 0]) + address : address
      if socket.family == AF_UNIX { try removeStaleSocketFile(address) }
      let at = try sockaddr.withUnsafeBytes { try injector.put($0) }
      batch.add("bind fd \(fd) to \(socket.description)", SyscallNumber.bind, .result(made), .value(at), .value(UInt64(sockaddr.count)))
    }
    if let backlog = socket.backlog {
      batch.add("listen fd \(fd)", SyscallNumber.listen, .result(made), .value(UInt64(backlog)))
    }
    if let peer = socket.peer {
      let at = try peer.withUnsafeBytes { try injector.put($0) }
      batch.add("connect fd \(fd)", SyscallNumber.connect, .result(made), .value(at), .value(UInt64(peer.count)))
    }
    return queueMoveHigh(made, what: "fd \(fd)")
  }
  /// An established TCP connection, taken up where it was (TCP_REPAIR, as CRIU does): a
  /// socket in repair mode gets both sequence numbers, is bound and "connected" without a
  /// packet sent, has its options, timestamp, queued bytes and window set, and leaves
  /// repair mode (the kernel then probes the peer's window).
  func queueConnection(_ socket: SocketImage, _ tcp: TCPConnectionImage, flags: Int32, fd: Int32) throws -> Int64 {
    guard let local = socket.address, let peer = socket.peer else { throw CKError(.badInput, "fd \(fd): a TCP connection without its addresses") }
    let made = batch.add(
      "socket fd \(fd)", SyscallNumber.socket, .value(UInt64(socket.family)),
      .value(UInt64(socket.type | Int32(SOCK_CLOEXEC.rawValue) | flags & O_NONBLOCK)), .value(UInt64(socket.protocolNumber)))
    func set(_ what: String, _ level: Int32, _ name: Int32, _ bytes: [UInt8]) throws {
      let at = try injector.put(bytes)
      batch.add(
        "\(what) fd \(fd)", SyscallNumber.setsockopt, .result(made), .value(UInt64(level)), .value(UInt64(name)), .value(at),
        .value(UInt64(bytes.count)))
    }
    func int(_ value: UInt32) -> [UInt8] { withUnsafeBytes(of: value.littleEndian) { Array($0) } }
    // Options first: SO_REUSEADDR would undo the forced reuse repair mode sets, which lets
    // the connection bind the port its listener holds.
    for option in socket.options {
      try set("setsockopt(\(option.level), \(option.name))", option.level, option.name, int(UInt32(bitPattern: option.value)))
    }
    let long = max(tcp.sendQueue.count, tcp.receiveQueue.count) > TCPConnectionImage.inBatchLimit
    if long {
      // Room for what was queued, which the default buffers of a new socket may not have
      // (the kernel doubles the size asked; forcing needs CAP_NET_ADMIN, which the task
      // still has).
      try set("SO_SNDBUFFORCE", SOL_SOCKET, 32, int(UInt32(max(tcp.sendQueue.count, 64 << 10))))
      try set("SO_RCVBUFFORCE", SOL_SOCKET, 33, int(UInt32(max(tcp.receiveQueue.count, 64 << 10))))
    }
    try set("TCP_REPAIR", 6, TCPRepair.mode, int(1))
    // The dumped sequence numbers are past the queued bytes; writing them back into the
    // queues below advances them again.
    try set("TCP_REPAIR_QUEUE send", 6, TCPRepair.queue, int(2))
    try set("TCP_QUEUE_SEQ send", 6, TCPRepair.queueSequence, int(tcp.sendSequence &- UInt32(tcp.sendQueue.count)))
    try set("TCP_REPAIR_QUEUE receive", 6, TCPRepair.queue, int(1))
    try set("TCP_QUEUE_SEQ receive", 6, TCPRepair.queueSequence, int(tcp.receiveSequence &- UInt32(tcp.receiveQueue.count)))
    let localAt = try local.withUnsafeBytes { try injector.put($0) }
    batch.add("bind fd \(fd) to \(socket.description)", SyscallNumber.bind, .result(made), .value(localAt), .value(UInt64(local.count)))
    let peerAt = try peer.withUnsafeBytes { try injector.put($0) }
    batch.add("connect fd \(fd) (repair)", SyscallNumber.connect, .result(made), .value(peerAt), .value(UInt64(peer.count)))
    // struct tcp_repair_opt {code, value}: MSS always, then what both ends agreed on.
    var options = int(2) + int(tcp.mss)
    if tcp.options & 4 != 0 { options += int(3) + int(tcp.sendWindowScale | tcp.receiveWindowScale << 16) }
    if tcp.options & 2 != 0 { options += int(4) + int(0) }
    if tcp.options & 1 != 0 { options += int(8) + int(0) }
    try set("TCP_REPAIR_OPTIONS", 6, TCPRepair.options, options)
    if tcp.options & 1 != 0 { try set("TCP_TIMESTAMP", 6, TCPRepair.timestamp, int(tcp.timestamp)) }
    if long {
      // The queues and the window from ckcont once the batch ran (``fillQueues``).
      let high = queueMoveHigh(made, what: "fd \(fd)")
      after.connections.append((high, tcp))
      return high
    }
    for (queue, bytes, what) in [(UInt32(2), tcp.sendQueue, "send"), (1, tcp.receiveQueue, "receive")] where !bytes.isEmpty {
      try set("TCP_REPAIR_QUEUE \(what)", 6, TCPRepair.queue, int(queue))
      let at = try bytes.withUnsafeBytes { try injector.put($0) }
      batch.add(
        "write the \(what) queue of fd \(fd)", SyscallNumber.write, .result(made), .value(at), .value(UInt64(bytes.count)),
        expecting: Int64(bytes.count))
    }
    try set("TCP_REPAIR_WINDOW", 6, TCPRepair.window, tcp.window.flatMap(int))
    // Repair mode ends at install, once every process has its sockets: a peer not made
    // yet would answer the window probe with a reset (its listener would).
    return queueMoveHigh(made, what: "fd \(fd)")
  }
  /// The socket file a unix name left behind when its process died: bind would find it
  /// taken. Only a socket file at an absolute path is removed, found in the task's view.
  func removeStaleSocketFile(_ name: Data) throws {
    guard name.first == UInt8(ascii: "/") else { return }
    let path = "/proc/\(injector.pid)/root" + String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    var st = stat()
    guard lstat(path, &st) == 0, st.st_mode & S_IFMT == S_IFSOCK else { return }
    try syscallChecked("unlink", "the stale socket file \(path)") { unlink(path) }
  }
  /// A new eventfd (its counter), signalfd (its mask) or timerfd (armed with what was left,
  /// and its unread expirations), at a high number.
  func queueAnon(_ descriptor: DescriptorImage, _ state: AnonFileState) throws -> Int64 {
    // EFD_/SFD_/TFD_NONBLOCK are O_NONBLOCK; CLOEXEC until installed.
    let flags = UInt64(descriptor.flags & O_NONBLOCK | O_CLOEXEC)
    let fd = descriptor.fd
    switch descriptor.kind {
    case .eventfd:
      let count = state.count ?? 0
      let made = batch.add(
        "eventfd fd \(fd)", SyscallNumber.eventfd2, .value(min(count, UInt64(UInt32.max))),
        .value(flags | (state.semaphore == true ? 1 : 0)))
      if count > UInt64(UInt32.max) {
        // eventfd2 takes a 32-bit start: the rest is added by a write.
        let rest = try injector.put(words: [count - UInt64(UInt32.max)])
        batch.add("write eventfd fd \(fd)", SyscallNumber.write, .result(made), .value(rest), .value(8), expecting: 8)
      }
      return queueMoveHigh(made, what: "fd \(fd)")
    case .signalfd:
      let mask = try injector.put(words: [state.signalMask ?? 0])
      let made = batch.add("signalfd fd \(fd)", SyscallNumber.signalfd4, .value(UInt64.max), .value(mask), .value(8), .value(flags))
      return queueMoveHigh(made, what: "fd \(fd)")
    default:
      let made = batch.add(
        "timerfd_create fd \(fd)", SyscallNumber.timerfdCreate, .value(UInt64(UInt32(bitPattern: state.clockID ?? 1))),
        .value(flags))
      let interval = state.intervalNanoseconds ?? 0
      // A periodic timer read at its expiry shows 0 left: it fires now, as it was about to.
      let value = (state.valueNanoseconds ?? 0) == 0 && interval > 0 ? 1 : state.valueNanoseconds ?? 0
      if value > 0 {
        let spec = try injector.put(words: [
          UInt64(interval / 1_000_000_000), UInt64(interval % 1_000_000_000), UInt64(value / 1_000_000_000),
          UInt64(value % 1_000_000_000),
        ])
        batch.add("timerfd_settime fd \(fd)", SyscallNumber.timerfdSettime, .result(made), .value(0), .value(spec), .value(0))
      }
      if let ticks = state.ticks, ticks > 0 {
        let count = try injector.put(words: [ticks])
        batch.add(
          "TFD_IOC_SET_TICKS fd \(fd)", SyscallNumber.ioctl, .result(made), .value(0x4008_5400), .value(count))
      }
      return queueMoveHigh(made, what: "fd \(fd)")
    }
  }

  /// Everything else, queued in batches run whenever the data area or the batch fills up.
  func prepareInBatches() throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil && prepared.descriptions[descriptor.fd] == nil {
      // A TCP connection with short queues puts both in the data area.
      let queued = descriptor.socket?.tcp.map { $0.sendQueue.count + $0.receiveQueue.count } ?? 0
      let room = 8192 + (queued <= 2 * TCPConnectionImage.inBatchLimit ? queued : 0)
      if injector.dataRoom < UInt64(room) || batch.isFull {
        try runQueued()
      }
      if let ours = inheritedFD(descriptor) {
        // What the caller handed in (the outside end of a pipe to the runtime, a log file):
        // reopened through ckcont's own descriptor.
        prepared.descriptions[descriptor.fd] = try queueHandedOver("/proc/self/fd/\(ours)", flags: descriptor.flags, fd: descriptor.fd)
        continue
      }
      if let holder = heldElsewhere(descriptor), let seen = shared.layout.pid(of: holder.pid, seenBy: pid) {
        // The same open file description: from inside, pidfd_open + pidfd_getfd.
        let pidfd = batch.add("pidfd_open(\(holder.pid))", SyscallNumber.pidfdOpen, .value(UInt64(seen)), .value(0))
        let copy = batch.add(
          "pidfd_getfd(\(holder.pid), \(holder.fd))", SyscallNumber.pidfdGetfd, .result(pidfd), .value(UInt64(holder.fd)),
          .value(0))
        batch.add("close the pidfd", SyscallNumber.close, .result(pidfd))
        prepared.descriptions[descriptor.fd] = queueMoveHigh(copy, what: "fd \(descriptor.fd)")
        continue
      }
      if let holder = heldElsewhere(descriptor), let hostPid = shared.hostPids[holder.pid] {
        // A holder its pid namespace does not see (one above it): through ckcont.
        let ours = try copyOfDescriptor(Int32(holder.fd), of: hostPid)
        defer { close(ours) }
        prepared.descriptions[descriptor.fd] = try queueReceived(ours, what: "fd \(descriptor.fd) of \(holder.pid)", fd: descriptor.fd)
        continue
      }
      switch descriptor.kind {
      case .pipe:
        continue
      case .socket:
        guard let socket = descriptor.socket else { continue }
        prepared.descriptions[descriptor.fd] = try queueSocket(socket, flags: descriptor.flags, fd: descriptor.fd)
      case .fifo:
        guard let path = descriptor.path, let inode = descriptor.pipe else { continue }
        // Opening one end of a FIFO waits for (or, O_NONBLOCK, fails without) the other end:
        // a read-write keeper opened first is both, and holds the buffered data until every
        // process has opened its ends (it is closed with the other high fds at install).
        if prepared.fifoKeepers[inode] == nil {
          let keeper = try queueOpen(path, flags: O_RDWR | O_NONBLOCK, fd: descriptor.fd).high
          prepared.fifoKeepers[inode] = keeper
          if let image = pipesByInode[inode], shared.filledFifos.insert(inode).inserted {
            batch.add(
              "F_SETPIPE_SZ \(path)", SyscallNumber.fcntl, .value(UInt64(keeper)), .value(UInt64(CK_F_SETPIPE_SZ)),
              .value(UInt64(image.capacity)))
            after.pipes.append((keeper, image))
          }
        }
        prepared.descriptions[descriptor.fd] = try queueOpen(path, flags: descriptor.flags, fd: descriptor.fd).high
      case .inotify:
        // inotify_init1 (at its high number at once, so that batches may be run between the
        // watches), then each watch with its own descriptor number: numbers are handed out one
        // after another from 1, so a gap is filled by a watch added and removed again.
        let made = batch.add(
          "inotify_init1 fd \(descriptor.fd)", SyscallNumber.inotifyInit1, .value(UInt64(descriptor.flags & O_NONBLOCK | O_CLOEXEC)))
        let high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
        prepared.descriptions[descriptor.fd] = high
        let watches = (descriptor.inotifyWatches ?? []).sorted { $0.wd < $1.wd }
        let spare = watches.contains { $0.path == "/" } ? "/proc" : "/"
        var next: Int32 = 1
        for watch in watches {
          while next <= watch.wd {
            if batch.isFull || injector.dataRoom < 8192 {
              try runQueued()
            }
            if next < watch.wd {
              let spareAt = try injector.put(string: spare)
              let added = batch.add(
                "inotify spare watch \(next)", SyscallNumber.inotifyAddWatch, .value(UInt64(high)), .value(spareAt), .value(1),
                expecting: Int64(next))
              batch.add("inotify_rm_watch \(next)", SyscallNumber.inotifyRmWatch, .value(UInt64(high)), .result(added))
            } else {
              let path = try injector.put(string: watch.path)
              batch.add(
                "inotify_add_watch \(watch.path) as \(watch.wd)", SyscallNumber.inotifyAddWatch, .value(UInt64(high)), .value(path),
                .value(UInt64(watch.mask)), expecting: Int64(watch.wd))
            }
            next += 1
          }
        }
      case .deleted:
        guard let ghost = descriptor.ghost, let path = descriptor.path else { continue }
        let source: String
        // Made by a call of this task still queued: it runs first.
        var madeHere = false
        if let held = shared.ghosts[ghost.inode] {
          source = "/proc/\(held.hostPid)/fd/\(held.fd)"
          madeHere = held.hostPid == injector.pid
        } else if let mapped = sharedObjects.deletedFiles[SharedMemoryObjects.deletedFileName(inode: ghost.inode, path: path)] {
          // Mapped too: the file a mapping made again, which already has the contents.
          source = "/proc/\(mapped.hostPid)/map_files/\(hex(mapped.start))-\(hex(mapped.end))"
        } else {
          // Made again next to where it was and unlinked at once; ckcont fills it after the
          // batch, through the keeper descriptor.
          let ghostPath = ghostFilePath(for: path, inode: ghost.inode, taskPid: injector.pid)
          let at = try injector.put(string: ghostPath)
          let made = batch.add(
            "create \(ghostPath) for the deleted \(path)", SyscallNumber.open, .value(at),
            .value(UInt64(O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC)), .value(UInt64((descriptor.mode ?? 0o600) & 0o7777)))
          batch.add("unlink \(ghostPath)", SyscallNumber.unlink, .value(at))
          let keeper = queueMoveHigh(made, what: "the ghost of \(path)")
          after.ghosts.append((keeper, ghost.contents))
          shared.ghosts[ghost.inode] = (injector.pid, keeper)
          source = "/proc/\(injector.pid)/fd/\(keeper)"
          madeHere = true
        }
        if madeHere { try runQueued() }
        let high = try queueHandedOver(source, flags: descriptor.flags, fd: descriptor.fd)
        queueSeek(high, to: descriptor)
        prepared.descriptions[descriptor.fd] = high
      case .pidfd:
        guard let target = descriptor.pidfdTarget else { continue }
        let made = batch.add(
          "pidfd_open(\(target)) fd \(descriptor.fd)", SyscallNumber.pidfdOpen, .value(UInt64(target)),
          .value(UInt64(descriptor.flags & O_NONBLOCK)))
        prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
      case .memfd:
        guard let memfd = descriptor.memfd else { continue }
        let existing: String?
        if let mapping = sharedObjects.created[ObjectKey(device: 0, inode: memfd.inode)] {
          existing = "/proc/\(mapping.hostPid)/map_files/\(hex(mapping.start))-\(hex(mapping.end))"
        } else if let held = shared.memfds[memfd.inode] {
          existing = "/proc/\(held.hostPid)/fd/\(held.fd)"
          if held.hostPid == injector.pid { try runQueued() }
        } else {
          existing = nil
        }
        let high: Int64
        if let existing {
          // The same file another descriptor or a mapping already brought back.
          high = try queueHandedOver(existing, flags: descriptor.flags, fd: descriptor.fd)
        } else {
          let name = try injector.put(string: memfd.name)
          // F_SEAL_SEAL alone is what a memfd made without MFD_ALLOW_SEALING shows (and means
          // the same as a sealable one sealed only against more seals).
          let sealable = memfd.seals != 1 /* F_SEAL_SEAL */
          let made = batch.add(
            "memfd_create \(memfd.name)", SyscallNumber.memfdCreate, .value(name), .value(sealable ? 3 : 1 /* MFD_CLOEXEC, ALLOW_SEALING */))
          batch.add("ftruncate \(memfd.name)", SyscallNumber.ftruncate, .result(made), .value(UInt64(memfd.contents.count)))
          high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
          after.memfds.append((high, memfd))
          shared.memfds[memfd.inode] = (injector.pid, high)
        }
        queueSeek(high, to: descriptor)
        prepared.descriptions[descriptor.fd] = high
      case .mqueue:
        guard let queue = descriptor.mqueue else { continue }
        // In its own IPC namespace the container's queues are made again, once each, with
        // what waited in them (mq_open by name, without the slash); in the host's a queue
        // outlived the container (the dump put its messages back) unless it was unlinked.
        let make = (shared.ownIPCNamespace || queue.unlinked) && shared.messageQueues.insert(queue.name).inserted
        let name = try injector.put(string: queue.name)
        if make {
          // struct mq_attr: flags, maxmsg, msgsize, curmsgs.
          let attributes = try injector.put(words: [0, UInt64(queue.maxMessages), UInt64(queue.messageSize), 0])
          let made = batch.add(
            "mq_open /\(queue.name) (making it)", SyscallNumber.mqOpen, .value(name), .value(UInt64(O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC)),
            .value(UInt64(queue.mode)), .value(attributes))
          batch.add("fchown /\(queue.name)", SyscallNumber.fchown, .result(made), .value(UInt64(queue.uid)), .value(UInt64(queue.gid)))
          // The task's umask (ckcont's still) has taken bits off the mode.
          batch.add("fchmod /\(queue.name)", SyscallNumber.fchmod, .result(made), .value(UInt64(queue.mode)))
          after.messageQueues.append((queueMoveHigh(made, what: "the message queue /\(queue.name)"), queue))
        }
        let opened = batch.add(
          "mq_open /\(queue.name) for fd \(descriptor.fd)", SyscallNumber.mqOpen, .value(name),
          .value(UInt64(descriptor.flags & (O_ACCMODE | O_NONBLOCK) | O_CLOEXEC)), .value(0), .value(0))
        prepared.descriptions[descriptor.fd] = queueMoveHigh(opened, what: "fd \(descriptor.fd)")
        if make && queue.unlinked { batch.add("mq_unlink /\(queue.name)", SyscallNumber.mqUnlink, .value(name)) }
      case .epoll:
        let made = batch.add("epoll_create1 fd \(descriptor.fd)", SyscallNumber.epollCreate1, .value(UInt64(O_CLOEXEC)))
        prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
        // Watches are added once every descriptor has its number (they are keyed by it).
        prepared.epollWatches.append((descriptor.fd, descriptor.epollTargets ?? []))
      case .eventfd, .signalfd, .timerfd:
        guard let state = descriptor.anon else { continue }
        prepared.descriptions[descriptor.fd] = try queueAnon(descriptor, state)
      case .pty:
        guard let pty = descriptor.pty, let path = descriptor.path, let terminals = shared.terminals else {
          throw CKError(.badInput, "task \(pid): fd \(descriptor.fd) is a terminal the bundle does not describe")
        }
        let high: Int64
        if pty.isMaster {
          // The one master ckcont made: the same description for every holder.
          high = try queueReceived(try terminals.master(pty.index), what: "terminal \(pty.index)", fd: descriptor.fd)
          batch.add(
            "F_SETFL fd \(descriptor.fd)", SyscallNumber.fcntl, .value(UInt64(high)), .value(UInt64(F_SETFL)),
            .value(UInt64(descriptor.flags & ~O_ASYNC)))
        } else {
          let slave = try terminals.openSlave(pty.index, path: path, flags: descriptor.flags & ~O_ASYNC)
          defer { close(slave) }
          high = try queueReceived(slave, what: "terminal \(pty.index)", fd: descriptor.fd)
        }
        prepared.descriptions[descriptor.fd] = high
      case .path:
        guard let path = descriptor.path else { continue }
        let high: Int64
        if let terminal = shared.shellJobTerminal, path == terminal.dumped {
          high = try queueHandedOver(terminal.now, flags: descriptor.flags | O_NOCTTY, fd: descriptor.fd)
        } else if descriptor.outsideRoot == true {
          do { high = try queueHandedOver(path, flags: descriptor.flags, fd: descriptor.fd) } catch {
            throw CKError(
              .failed, "task \(injector.pid): fd \(descriptor.fd) is \(path), outside the container's root, which ckcont cannot open: \(error)",
              hint: "hand in a descriptor for it with --inherit-fd fd[N]:\(path)")
          }
        } else if shared.inUserNamespace && path != "/dev/tty" {
          // A task of a user namespace may not open what the container's processes had open
          // before they entered it (a runtime's log file, say): ckcont opens it for it, as
          // CRIU's usernsd does.
          high = try queueHandedOver(path, flags: descriptor.flags, fd: descriptor.fd, inContainer: true)
        } else {
          high = try queueOpen(path, flags: descriptor.flags, fd: descriptor.fd).high
        }
        if (descriptor.mode ?? 0) & UInt32(S_IFMT) == UInt32(S_IFREG) { queueSeek(high, to: descriptor) }
        prepared.descriptions[descriptor.fd] = high
      }
    }
  }

  /// What ckcont writes through its own copies of descriptors a batch made, once it ran.
  struct AfterBatch {
    var pipes: [(keeper: Int64, pipe: PipeImage)] = []
    var memfds: [(fd: Int64, memfd: MemfdImage)] = []
    var ghosts: [(fd: Int64, contents: Data)] = []
    /// TCP connections whose queues are too long for the data area: still in repair mode.
    var connections: [(fd: Int64, tcp: TCPConnectionImage)] = []
    /// POSIX message queues just made, and the messages to put back in them.
    var messageQueues: [(fd: Int64, queue: MessageQueueImage)] = []
  }

  /// Runs a batch of ``prepare()``, then writes the buffered data of the FIFOs and the
  /// contents of the memfds it made, and seals those memfds as they were.
  private func finish(_ batch: Injector.Batch, _ after: AfterBatch) throws {
    try injector.run(batch)
    for (keeper, pipe) in after.pipes { try fill(writeEnd: Int32(keeper), with: pipe) }
    for (fd, tcp) in after.connections {
      try withOurCopy(of: Int32(fd)) { ours in try fillQueues(ours, tcp) }
    }
    for (fd, queue) in after.messageQueues where !queue.messages.isEmpty {
      try withOurCopy(of: Int32(fd)) { ours in
        let bytes = queue.messages.reduce(into: [UInt8]()) { $0 += $1.data }
        let result = ck_mq_fill(ours, bytes, queue.messages.map { UInt32($0.data.count) }, queue.messages.map(\.priority), Int32(queue.messages.count))
        guard result == 0 else {
          throw CKError(.failed, "cannot put the messages back in /\(queue.name): \(String(cString: strerror(-result)))")
        }
      }
    }
    let ghosts = after.ghosts, memfds = after.memfds
    for (fd, contents) in ghosts {
      try withOurCopy(of: Int32(fd)) { ours in try write(contents, to: ours, what: "a deleted file's ghost") }
    }
    for (fd, memfd) in memfds {
      try withOurCopy(of: Int32(fd)) { ours in
        try write(memfd.contents, to: ours, what: "memfd \(memfd.name)")
        if memfd.seals != 1 && memfd.seals != 0 {
          try syscallChecked("fcntl", "F_ADD_SEALS memfd \(memfd.name)") { fcntl(ours, 1033 /* F_ADD_SEALS */, memfd.seals) }
        }
      }
    }
    injector.resetData()
  }

  /// pwrite of the whole of `contents` from offset 0.
  private func write(_ contents: Data, to fd: Int32, what: String) throws {
    try contents.withUnsafeBytes { bytes in
      var done = 0
      while done < bytes.count {
        done += try syscallChecked("pwrite", what) { pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(done)) }
      }
    }
  }

  /// Runs `body` with a descriptor of ckcont's own for the task's `fd` (pidfd_getfd): the same
  /// open file description, so what it writes is the task's.
  func withOurCopy(of fd: Int32, in hostPid: Int32? = nil, _ body: (Int32) throws -> Void) throws {
    let ours = try copyOfDescriptor(fd, of: hostPid ?? injector.pid)
    defer { close(ours) }
    try body(ours)
  }

  /// Both ends of the pipe: made here (filled with its buffered data) the first time any
  /// process needs it, fetched from that process afterwards.
  private func pipeEnds(_ pipe: PipeImage) throws -> (read: Int64, write: Int64) {
    if let holder = shared.pipes[pipe.inode] {
      if holder.pid == pid { return (holder.read, holder.write) }
      let read = try fetch(holder.read, from: holder.pid, to: prepared.takeHigh())
      let write = try fetch(holder.write, from: holder.pid, to: prepared.takeHigh())
      shared.pipes[pipe.inode] = (pid, read, write)
      return (read, write)
    }
    injector.resetData()
    let pair = try injector.reserve(8)
    try injector.call("pipe2", SyscallNumber.pipe2, pair, UInt64(O_CLOEXEC))
    let fds = try injector.read(8, at: pair).withUnsafeBytes {
      ($0.load(as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self))
    }
    try injector.call("F_SETPIPE_SZ", SyscallNumber.fcntl, UInt64(fds.1), UInt64(CK_F_SETPIPE_SZ), UInt64(pipe.capacity))
    try fill(writeEnd: fds.1, with: pipe)
    let read = try move(Int64(fds.0), to: prepared.takeHigh())
    let write = try move(Int64(fds.1), to: prepared.takeHigh())
    shared.pipes[pipe.inode] = (pid, read, write)
    return (read, write)
  }

  /// A copy of another restored process's fd, taken from inside with pidfd_open +
  /// pidfd_getfd: the same open file description, so offset and flags stay shared.
  func fetch(_ fd: Int64, from owner: Int32, to high: Int64) throws -> Int64 {
    guard let seen = shared.layout.pid(of: owner, seenBy: pid) else {
      // An owner this process's pid namespace does not see (one above it): through ckcont.
      guard let hostPid = shared.hostPids[owner] else { throw CKError(.failed, "process \(owner) was not restored") }
      let ours = try copyOfDescriptor(Int32(fd), of: hostPid)
      defer { close(ours) }
      return try move(try injector.receive(ours, what: "fd \(fd) of \(owner)"), to: high)
    }
    let pidfd = try injector.call("pidfd_open(\(owner))", SyscallNumber.pidfdOpen, UInt64(seen), 0)
    defer { _ = try? injector.raw(SyscallNumber.close, UInt64(pidfd)) }
    let copy = try injector.call("pidfd_getfd(\(owner), \(fd))", SyscallNumber.pidfdGetfd, UInt64(pidfd), UInt64(fd), 0)
    return try move(copy, to: high)
  }

  /// dup3 to a high number handed out by ``FileRestore/Prepared``, then close the original.
  func move(_ fd: Int64, to high: Int64) throws -> Int64 {
    try injector.call("dup3 to \(high)", SyscallNumber.dup3, UInt64(fd), UInt64(high), UInt64(O_CLOEXEC))
    try injector.call("close", SyscallNumber.close, UInt64(fd))
    return high
  }

  /// Writes the pipe's buffered data through a copy of its write end taken with
  /// pidfd_getfd: the data may be larger than the injection region.
  private func fill(writeEnd: Int32, with pipe: PipeImage) throws {
    guard !pipe.buffered.isEmpty else { return }
    try withOurCopy(of: writeEnd) { ours in
      try pipe.buffered.withUnsafeBytes { bytes in
        var done = 0
        while done < bytes.count {
          done += try syscallChecked("write", "pipe:[\(pipe.inode)] refill") {
            Glibc.write(ours, bytes.baseAddress! + done, bytes.count - done)
          }
        }
      }
    }
  }
}

/// The flags to open a file again with those it was opened with: never creating or
/// truncating, close-on-exec until installed, and without O_TMPFILE (a file made unnamed in
/// a directory comes back as a deleted file; its flags would ask for a directory).
func reopening(_ flags: Int32) -> Int32 {
  let temporary: Int32 = 0o20000000  // __O_TMPFILE
  let withoutTemporary = flags & temporary != 0 ? flags & ~(temporary | O_DIRECTORY) : flags
  return withoutTemporary & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
}

/// Where a deleted file (held open or mapped) is made again before it is unlinked: at its own
/// path when that is free, so that /proc shows the same name, else beside it under a name of
/// ckcont's. Looked up in the view of the task with host pid `pid` (through /proc/<pid>/root,
/// its root and mount namespace).
func ghostFilePath(for path: String, inode: UInt64, taskPid pid: Int32) -> String {
  if access("/proc/\(pid)/root" + path, F_OK) != 0 && errno == ENOENT { return path }
  let directory = path.split(separator: "/").dropLast().joined(separator: "/")
  return "/\(directory)/.ckcont-ghost-\(inode)-\(UInt32.random(in: 0...UInt32.max))"
}

/// A descriptor of ckcont's own for descriptor `fd` of the process with host pid `hostPid`
/// (pidfd_getfd): the same open file description. The caller closes it.
func copyOfDescriptor(_ fd: Int32, of hostPid: Int32) throws -> Int32 {
  let pidfd = try syscallChecked("pidfd_open", "\(hostPid)") { ck_pidfd_open(hostPid, 0) }
  defer { close(pidfd) }
  return try syscallChecked("pidfd_getfd", "\(hostPid) fd \(fd)") { ck_pidfd_getfd(pidfd, fd, 0) }
}
