import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

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
  /// Each process's descriptors (pid inside) -> the number in that process holding the
  /// description now: a high one once prepared, its own once installed.
  var placed: [Int32: [Int32: Int64]] = [:]
  /// Deleted FIFO's inode -> the task (host pid) and high fd of a read-write keeper of the
  /// FIFO made again for it.
  var deletedFifos: [UInt64: (hostPid: Int32, fd: Int64)] = [:]
  /// The container's connected unix sockets, made before any descriptor is prepared.
  var connections: UnixConnections?
  /// The bytes of files made again that the bundle keeps in members of their own, by member
  /// name (``KeptFiles``).
  var keptData: [String: UnsafeRawBufferPointer] = [:]
  /// memfd inode -> the task (host pid) and high fd holding the one recreated for it.
  var memfds: [UInt64: (hostPid: Int32, fd: Int64)] = [:]
  /// Deleted file's inode -> the task (host pid) and high fd holding its recreated ghost.
  var ghosts: [UInt64: (hostPid: Int32, fd: Int64)] = [:]
  /// Files made again whose owner, mode and times are set (``FileBatch/keepAttributes``).
  var attributed: Set<String> = []
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
  let log: Logger

  /// What ``prepare()`` left at high fds: numbers above every target, handed out in order,
  /// so that calls naming them can be queued before they exist.
  struct Prepared {
    var descriptions: [Int32: Int64] = [:]  // target fd -> high fd holding its description
    var highFds: [Int64] = []
    var fifoKeepers: [UInt64: Int64] = [:]  // FIFO inode -> a read-write fd of it
    var epollWatches: [(epoll: Int32, targets: [EpollTarget])] = []  // epolls made here, by target number
    var nextHigh: Int64
    /// The first of the high numbers: a descriptor received or fetched at or above it may
    /// sit where a queued move goes.
    let firstHigh: Int64

    init(nextHigh: Int64) {
      self.nextHigh = nextHigh
      firstHigh = nextHigh
    }

    mutating func takeHigh() -> Int64 {
      defer { nextHigh += 1 }
      highFds.append(nextHigh)
      return nextHigh
    }
  }

  /// Pipes first, one call at a time (pipe2 returns its ends in memory); then everything
  /// else in one batch: copies of descriptions other processes hold, files and FIFOs.
  func prepare() throws -> Prepared {
    let prepared = try FileBatch(self).run()
    shared.placed[pid] = prepared.descriptions
    return prepared
  }

  /// dup3 of every description to its number, then the high numbers closed, in batches;
  /// around them what needs the descriptors in place, in the order the kernel needs.
  func install(_ prepared: Prepared) throws {
    var batch = Injector.Batch()
    try queuePlacing(prepared, into: &batch)
    injector.resetData()
    try queueRepairOff(into: &batch)
    try queueWatches(prepared, into: &batch)
    try queueClosingHighFds(prepared, into: &batch)
    try queueAsyncOwners(into: &batch)
    try queueLocks(into: &batch)
    try injector.run(batch)
    shared.placed[pid] = Dictionary(image.descriptors.map { ($0.fd, Int64($0.fd)) }) { first, _ in first }
    log.debug("task \(injector.pid): \(image.descriptors.count) fds, \(image.pipes.count) pipes restored")
  }

  /// Runs `batch` and starts another when it is full (or, `needingData`, when the data area
  /// is nearly full too: then that starts again).
  private func runIfFull(_ batch: inout Injector.Batch, needingData: Bool = false) throws {
    guard batch.isFull || needingData && injector.dataRoom < 64 else { return }
    try injector.run(batch)
    batch = Injector.Batch()
    if needingData { injector.resetData() }
  }

  /// dup3 of every description to the descriptor's own number, with its close-on-exec.
  private func queuePlacing(_ prepared: Prepared, into batch: inout Injector.Batch) throws {
    for descriptor in image.descriptors {
      guard let source = prepared.descriptions[descriptor.sharesWith ?? descriptor.fd] else { continue }
      batch.add(
        .dup3(source, Int64(descriptor.fd), closeOnExec: descriptor.closeOnExec), "dup3 fd \(descriptor.fd)")
      try runIfFull(&batch)
    }
  }

  /// TCP connections out of repair mode, with SO_REUSEADDR back where they had it.
  private func queueRepairOff(into batch: inout Injector.Batch) throws {
    let off = try injector.put(words: [0])
    let on = try injector.put(words: [1])
    func setOption(_ what: String, fd: Int32, _ level: Int32, _ name: Int32, _ value: UInt64) throws {
      try runIfFull(&batch)
      batch.add(.setsockopt(fd, level: level, name: name, value, length: 4), "\(what) fd \(fd)")
    }
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      guard let socket = descriptor.socket, socket.tcp != nil else { continue }
      try setOption("TCP_REPAIR off", fd: descriptor.fd, Int32(IPPROTO_TCP), TCP_REPAIR, off)
      // Leaving repair mode clears SO_REUSEADDR: a connection without it that lingers after
      // its process closed it (FIN_WAIT, LAST_ACK) would keep a new listener off the port.
      if socket.options.reusesAddress {
        try setOption("SO_REUSEADDR", fd: descriptor.fd, SOL_SOCKET, SO_REUSEADDR, on)
      }
    }
  }

  /// The high numbers and the channel to ckcont closed.
  private func queueClosingHighFds(_ prepared: Prepared, into batch: inout Injector.Batch) throws {
    for fd in prepared.highFds + [injector.channel] where fd >= 0 {
      batch.add(.close(fd))
      try runIfFull(&batch)
    }
  }

  /// Signal-driven I/O: the owner and signal first, then O_ASYNC, which open(2) and the
  /// calls that made the descriptor ignore (F_SETFL is what turns it on).
  private func queueAsyncOwners(into batch: inout Injector.Batch) throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      guard let owner = descriptor.asyncOwner else { continue }
      try runIfFull(&batch, needingData: true)
      let fd = descriptor.fd
      if owner.id != 0 {
        let at = try injector.put(words: [
          UInt64(UInt32(bitPattern: owner.type)) | UInt64(UInt32(bitPattern: owner.id)) << 32
        ])
        batch.add(.fcntl(fd, .setOwner(at)), "F_SETOWN_EX fd \(fd)")
      }
      if owner.signal != 0 {
        batch.add(.fcntl(fd, .setSignal(owner.signal)), "F_SETSIG fd \(fd)")
      }
      batch.add(.fcntl(fd, .setFlags(descriptor.flags)), "F_SETFL O_ASYNC fd \(fd)")
    }
  }

  /// Locks last: closing any descriptor of a file drops the process's POSIX locks on it (the
  /// high ones above). Without waiting: a lock someone else holds now is a failure to say,
  /// not a hang.
  private func queueLocks(into batch: inout Injector.Batch) throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      for lock in descriptor.locks ?? [] {
        try runIfFull(&batch, needingData: true)
        let what = "\(lock.write ? "write" : "read") \(lock.kind.rawValue) lock on fd \(descriptor.fd)"
        switch lock.kind {
        case .flock:
          batch.add(.flock(descriptor.fd, (lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB), what)
        case .lease:
          batch.add(.fcntl(descriptor.fd, .setLease(write: lock.write)), what)
        default:
          // struct flock: l_type, l_whence (shorts), then l_start, l_len (64 bits), l_pid.
          let type = UInt64(lock.write ? F_WRLCK : F_RDLCK)
          let at = try injector.put(words: [type, UInt64(bitPattern: lock.start), UInt64(bitPattern: lock.length), 0])
          batch.add(.fcntl(descriptor.fd, .setLock(at, openFileDescription: lock.kind != .posix)), what)
        }
      }
    }
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
  /// Whether the queued calls make descriptors (``queueMoveHigh(_:what:)``).
  var creationsQueued = false
  var after = AfterBatch()
  let pipesByInode: [UInt64: PipeImage]
  let log: Logger

  init(_ files: FileRestore) {
    log = files.log
    image = files.image
    injector = files.injector
    pid = files.pid
    shared = files.shared
    sharedObjects = files.sharedObjects
    // Above the channel to ckcont too, which the task holds above every target until install.
    prepared = FileRestore.Prepared(
      nextHigh: max(Int64((image.descriptors.map(\.fd).max() ?? 0) + 1), injector.channel + 1))
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
      if let id = descriptor.sharedDescription, shared.holders[id] == nil,
        let high = prepared.descriptions[descriptor.fd]
      {
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

  /// Queues open(path) of a path in the container and moves the result to a high number.
  func queueOpen(_ path: String, flags: Int32, fd: Int32) throws -> (opened: Int, high: Int64) {
    // Never creating or truncating; close-on-exec until installed.
    let address = try injector.put(string: path)
    let openFlags = reopening(flags)
    let opened = batch.add(.open(address, openFlags), "open fd \(fd) \(path)")
    return (opened, queueMoveHigh(opened, what: "fd \(fd)"))
  }
  /// Runs the calls queued so far (then what they made is there to hand over).
  func runQueued() throws {
    try finish(batch, after)
    batch = Injector.Batch()
    after = AfterBatch()
    creationsQueued = false
  }
  /// Queues a file ckcont opens and hands over (see ``Injector/channel``), moved to a high
  /// number: `path` in ckcont's view is a file of its own (`/proc/self/fd/<n>`), one
  /// outside the container's root, or what another restored task holds (`/proc/<pid>/fd/
  /// <n>`, `map_files`). Opened with the descriptor's flags: a description of its own. A
  /// /proc entry is a magic symlink, which O_NOFOLLOW (sem_open's, say) would refuse: such a
  /// description is opened again by its file handle, with O_NOFOLLOW.
  func queueHandedOver(_ path: String, flags: Int32, fd: Int32, inContainer: Bool = false) throws -> Int64 {
    // A file a path names is opened with the descriptor's flags, O_NOFOLLOW too (the path,
    // read from /proc, ends in no symlink); through a /proc magic link, without it.
    let magicLink = !inContainer && path.hasPrefix("/proc/")
    let openFlags = magicLink ? reopening(flags) & ~O_NOFOLLOW : reopening(flags)
    let ours: OwnedDescriptor
    if inContainer {
      // The container's file as its root sees it, without leaving that root.
      let root = try OwnedDescriptor("open", "the root of task \(injector.pid)") {
        open("/proc/\(injector.pid)/root", OpenFlags.path | O_DIRECTORY | O_CLOEXEC)
      }
      ours = OwnedDescriptor(
        adopting: try negErrnoChecked("openat2", "\(path) in the container for fd \(fd)") {
          ck_open_in_root(root.raw, path, openFlags)
        })
    } else {
      ours = try OwnedDescriptor("open", "\(path) for fd \(fd)") { open(path, openFlags) }
    }
    if magicLink && flags & O_NOFOLLOW != 0 {
      guard let exact = Self.reopenedByHandle(ours.raw, flags: reopening(flags)) else {
        throw CKError(
          .failed,
          "task \(injector.pid): fd \(fd) is \(path), opened O_NOFOLLOW, which this filesystem gives no file handle to open again with that flag",
          hint: "restore onto a filesystem with file handles (an overlay needs nfs_export=on)")
      }
      return try queueReceived(exact.raw, what: "fd \(fd) (\(path), O_NOFOLLOW)", fd: fd)
    }
    return try queueReceived(ours.raw, what: "fd \(fd) (\(path))", fd: fd)
  }
  /// The file `fd` is open on, opened again with `flags` by its file handle (no path walk,
  /// so O_NOFOLLOW stays in its flags); nil on a filesystem without file handles (an
  /// overlay without nfs_export), which the dump refuses for such a descriptor.
  static func reopenedByHandle(_ fd: Int32, flags: Int32) -> OwnedDescriptor? {
    let opened = ck_reopen_by_handle(fd, flags | O_CLOEXEC)
    return opened >= 0 ? OwnedDescriptor(adopting: opened) : nil
  }
  /// Hands `ours`, a descriptor of ckcont's, to the task: the same description, moved to a
  /// high number.
  func queueReceived(_ ours: Int32, what: String, fd: Int32) throws -> Int64 {
    // A descriptor received now takes the lowest number free now, until its queued move:
    // descriptors the queued calls make would then land higher, on a number a queued move
    // goes to (even their own). So those calls run first.
    if creationsQueued { try runQueued() }
    let received = try injector.receive(ours, what: what)
    let high = prepared.takeHigh()
    if received >= prepared.firstHigh {
      // It landed among the high numbers (the low ones hold descriptors received before,
      // whose moves are still queued), perhaps where a queued move goes: moved now.
      return try move(received, to: high)
    }
    batch.add(.dup3(received, high, closeOnExec: true), "dup3 fd \(fd) to \(high)")
    batch.add(.close(received), "close \(received) (fd \(fd), received)")
    return high
  }
  /// lseek of the description at `high` to the descriptor's file position, if it had one.
  func queueSeek(_ high: Int64, to descriptor: DescriptorImage) {
    guard let position = descriptor.position, position > 0 else { return }
    batch.add(.lseek(high, to: position), "lseek fd \(descriptor.fd) to \(position)")
  }
  func queueMoveHigh(_ call: Int, what: String) -> Int64 {
    creationsQueued = true
    let high = prepared.takeHigh()
    batch.add(.dup3(.result(call), high, closeOnExec: true), "dup3 \(what) to \(high)")
    batch.add(.close(.result(call)), "close \(what) (made)")
    return high
  }
  /// Everything else, queued in batches run whenever the data area or the batch fills up.
  func prepareInBatches() throws {
    for descriptor in image.descriptors
    where descriptor.sharesWith == nil && prepared.descriptions[descriptor.fd] == nil {
      // A TCP connection with short queues puts both in the data area.
      let queued = descriptor.socket?.tcp.map { $0.sendQueue.count + $0.receiveQueue.count } ?? 0
      let room = 8192 + (queued <= 2 * TCPConnectionImage.inBatchLimit ? queued : 0)
      if injector.dataRoom < UInt64(room) || batch.isFull {
        try runQueued()
      }
      if let ours = inheritedFD(descriptor) {
        // What the caller handed in (the outside end of a pipe to the runtime, a log file):
        // reopened through ckcont's own descriptor.
        prepared.descriptions[descriptor.fd] = try queueHandedOver(
          "/proc/self/fd/\(ours)", flags: descriptor.flags, fd: descriptor.fd)
        continue
      }
      if let holder = heldElsewhere(descriptor), let seen = shared.layout.pid(of: holder.pid, seenBy: pid) {
        // The same open file description: from inside, pidfd_open + pidfd_getfd.
        let pidfd = batch.add(.pidfdOpen(seen), "pidfd_open(\(holder.pid))")
        let copy = batch.add(.pidfdGetfd(.result(pidfd), holder.fd), "pidfd_getfd(\(holder.pid), \(holder.fd))")
        batch.add(.close(.result(pidfd)), "close the pidfd of \(holder.pid)")
        prepared.descriptions[descriptor.fd] = queueMoveHigh(copy, what: "fd \(descriptor.fd)")
        continue
      }
      if let holder = heldElsewhere(descriptor), let hostPid = shared.hostPids[holder.pid] {
        // A holder its pid namespace does not see (one above it): through ckcont.
        let ours = try OwnedDescriptor(copying: Int32(holder.fd), ofProcess: hostPid)
        prepared.descriptions[descriptor.fd] = try queueReceived(
          ours.raw, what: "fd \(descriptor.fd) of \(holder.pid)", fd: descriptor.fd)
        continue
      }
      try DescriptorKinds.handler(for: descriptor.kind).prepare(descriptor, in: self)
    }
  }

  /// What ckcont writes through its own copies of descriptors a batch made, once it ran.
  struct AfterBatch {
    var pipes: [(keeper: Int64, pipe: PipeImage)] = []
    var memfds: [(fd: Int64, memfd: MemfdImage)] = []
    var ghosts: [(fd: Int64, ghost: GhostFileImage)] = []
    /// Owner, mode and times of files made again, set once they are filled.
    var attributes: [(fd: Int64, attributes: FileAttributes, what: String)] = []
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
      try withOurCopy(of: Int32(fd)) { ours in try putMessagesBack(queue, into: ours) }
    }
    for (fd, ghost) in after.ghosts {
      try withOurCopy(of: Int32(fd)) { ours in try fill(ours, with: ghost, what: "a deleted file's ghost") }
    }
    for (fd, memfd) in after.memfds {
      try withOurCopy(of: Int32(fd)) { ours in try fill(ours, with: memfd, what: "memfd \(memfd.name)") }
    }
    for (fd, attributes, what) in after.attributes {
      try withOurCopy(of: Int32(fd)) { ours in try apply(attributes, to: ours, what: what) }
    }
    for (fd, memfd) in after.memfds {
      try withOurCopy(of: Int32(fd)) { ours in try seal(ours, as: memfd) }
    }
    injector.resetData()
  }

  /// pwrite of the whole of `contents` from offset 0.
  func write(_ contents: Data, to fd: Int32, what: String) throws {
    try contents.withUnsafeBytes { bytes in try writeAll(fd, bytes, atOffset: 0, what) }
  }

  /// Runs `body` with a descriptor of ckcont's own for the task's `fd` (pidfd_getfd): the same
  /// open file description, so what it writes is the task's.
  func withOurCopy(of fd: Int32, in hostPid: Int32? = nil, _ body: (Int32) throws -> Void) throws {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: hostPid ?? injector.pid)
    try body(ours.raw)
  }

  /// A copy of another restored process's fd, taken from inside with pidfd_open +
  /// pidfd_getfd: the same open file description, so offset and flags stay shared.
  func fetch(_ fd: Int64, from owner: Int32, to high: Int64) throws -> Int64 {
    guard let seen = shared.layout.pid(of: owner, seenBy: pid) else {
      // An owner this process's pid namespace does not see (one above it): through ckcont.
      guard let hostPid = shared.hostPids[owner] else { throw CKError(.failed, "process \(owner) was not restored") }
      let ours = try OwnedDescriptor(copying: Int32(fd), ofProcess: hostPid)
      return try move(try injector.receive(ours.raw, what: "fd \(fd) of \(owner)"), to: high)
    }
    let pidfd = try injector.call(.pidfdOpen(seen), "pidfd_open(\(owner))")
    defer { _ = try? injector.raw(.close(pidfd)) }
    let copy = try injector.call(.pidfdGetfd(pidfd, fd), "pidfd_getfd(\(owner), \(fd))")
    return try move(copy, to: high)
  }

  /// dup3 to a high number handed out by ``FileRestore/Prepared``, then close the original.
  func move(_ fd: Int64, to high: Int64) throws -> Int64 {
    // Already there: it was the lowest number free.
    if fd == high { return high }
    try injector.call(.dup3(fd, high, closeOnExec: true))
    try injector.call(.close(fd))
    return high
  }

}

/// The flags to open a file again with those it was opened with: never creating or
/// truncating, close-on-exec until installed, and without O_TMPFILE (a file made unnamed in
/// a directory comes back as a deleted file; its flags would ask for a directory).
func reopening(_ flags: Int32) -> Int32 {
  let temporary = OpenFlags.temporaryFile
  let withoutTemporary = flags & temporary != 0 ? flags & ~(temporary | O_DIRECTORY) : flags
  return withoutTemporary & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
}

/// Where a deleted file (held open or mapped) is made again before it is unlinked: at its own
/// path when that is free, so that /proc shows the same name, else beside it under a name of
/// ckcont's. Looked up in the view of the task with host pid `pid` (through /proc/<pid>/root,
/// its root and mount namespace).
func ghostFilePath(for path: String, inode: UInt64, taskPid pid: Int32) -> String {
  // Looked up in the task's root, not from ckcont's (see RootedDirectory).
  let taken = try? RootedDirectory("/proc/\(pid)/root", name: "the root of task \(pid)").withParent(of: path) {
    directory, entry in
    var st = stat()
    return fstatat(directory, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 || errno != ENOENT
  }
  if taken == false { return path }
  let directory = path.split(separator: "/").dropLast().joined(separator: "/")
  return "/\(directory)/.ckcont-ghost-\(inode)-\(UInt32.random(in: 0...UInt32.max))"
}
