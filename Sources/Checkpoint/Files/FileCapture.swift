import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

/// Captures the open file descriptors of a process: each is recognised here and captured by
/// its kind's file (see ``DescriptorKinds``). Anything else fails the dump, naming task, fd
/// and kind: a checkpoint never silently drops a descriptor.
struct FileCapture {
  let pid: Int32
  /// A NETLINK_SOCK_DIAG socket in the container's network namespace, for unix sockets.
  let sockDiag: Int32
  /// Where established TCP connections go once in repair mode.
  let taken: TakenState
  /// The mounts of a container with a root filesystem of its own (nil: it has none): a file
  /// on none of them lies outside its root.
  var rootMounts: Set<Int>? = nil
  /// `--drop-inotify-events`: inotify events not read yet are left behind instead of
  /// refusing the dump.
  var dropInotifyEvents = false

  /// What the capture of one table gathers as it goes through the descriptors in order.
  private struct Gathered {
    var descriptors: [DescriptorImage] = []
    var pipes: [UInt64: PipeImage] = [:]
    /// The descriptors seen so far by inode, to find dup()ed ones among them.
    var byInode: [UInt64: [Int32]] = [:]
    var inodes: [Int32: UInt64] = [:]
    /// Each epoll watch with the inode fdinfo gave for its target.
    var epollInodes: [(epoll: Int32, target: Int32, inode: UInt64, index: Int)] = []
    var lockLines: [Int32: [String]] = [:]
  }

  /// One descriptor as /proc shows it: its link, fdinfo and flags.
  private struct Opened {
    let fd: Int32
    let target: String
    let info: FdInfo
    let closeOnExec: Bool
    /// The status flags without O_CLOEXEC (a property of the descriptor, not the file).
    let flags: Int32

    init(pid: Int32, fd: Int32) throws {
      self.fd = fd
      target = try readLink("/proc/\(pid)/fd/\(fd)")
      info = try FdInfo.read(pid: pid, fd: fd)
      let flags = Int32(bitPattern: info.flags)
      closeOnExec = flags & O_CLOEXEC != 0
      self.flags = flags & ~O_CLOEXEC
    }

    func image(_ kind: DescriptorImage.Kind) -> DescriptorImage {
      DescriptorImage(fd: fd, kind: kind, flags: flags, closeOnExec: closeOnExec)
    }
  }

  /// The process's descriptor table, each descriptor captured by its kind, then the locks,
  /// stale epoll watches and owners of signal-driven I/O, which need the whole table.
  func image(log: Logger) throws -> FileTableImage {
    let numbers = try PseudoFile.list("/proc/\(pid)/fd").compactMap { Int32($0) }.sorted()
    var gathered = Gathered()
    for fd in numbers {
      let opened = try Opened(pid: pid, fd: fd)
      // Locks held, not those waited for (`->` lines).
      let locks = opened.info.extra.filter { $0.key == "lock" && !$0.value.contains("->") }.map(\.value)
      if !locks.isEmpty { gathered.lockLines[fd] = locks }
      gathered.inodes[fd] = opened.info.inode
      if let copy = duplicate(opened, of: gathered) {
        gathered.descriptors.append(copy)
        continue
      }
      gathered.byInode[opened.info.inode, default: []].append(fd)
      let descriptor =
        try anonymousDescriptor(opened, into: &gathered, log: log)
        ?? inodeDescriptor(opened, into: &gathered, log: log)
      gathered.descriptors.append(descriptor)
    }
    try attachLocks(&gathered)
    // An epoll watch is keyed by a descriptor number, which a watch whose descriptor was
    // closed keeps though it means nothing now: found after the capture (``Dump/findStaleWatches``).
    for (epoll, target, inode, slot) in gathered.epollInodes where gathered.inodes[target] != inode {
      guard let index = gathered.descriptors.firstIndex(where: { $0.fd == epoll }) else { continue }
      gathered.descriptors[index].epollTargets?[slot].source = Epoll.unresolved
    }
    log.debug("task \(pid): \(gathered.descriptors.count) fds, \(gathered.pipes.count) pipes")
    // Signal-driven I/O: the owner and signal belong to the open file description, read
    // through a copy of it (pidfd_getfd).
    for index in gathered.descriptors.indices
    where gathered.descriptors[index].sharesWith == nil && gathered.descriptors[index].flags & O_ASYNC != 0 {
      gathered.descriptors[index].asyncOwner = try asyncOwner(fd: gathered.descriptors[index].fd)
    }
    return FileTableImage(
      descriptors: gathered.descriptors, pipes: gathered.pipes.values.sorted { $0.inode < $1.inode })
  }

  /// dup()ed descriptors share one open file description (offset, status flags): a copy of
  /// the first one's image that names it.
  private func duplicate(_ opened: Opened, of gathered: Gathered) -> DescriptorImage? {
    guard
      let twin = gathered.byInode[opened.info.inode, default: []].first(where: {
        ck_kcmp_file(pid, pid, $0, opened.fd) == 0
      }),
      let original = gathered.descriptors.first(where: { $0.fd == twin })
    else { return nil }
    var copy = original
    copy.fd = opened.fd
    copy.closeOnExec = opened.closeOnExec
    copy.sharesWith = twin
    return copy
  }

  /// A descriptor known by its link alone: pipes, sockets, inotify, pidfds, epoll and the
  /// other anonymous inodes; nil for one that needs a stat.
  private func anonymousDescriptor(_ opened: Opened, into gathered: inout Gathered, log: Logger) throws
    -> DescriptorImage?
  {
    let (fd, target, info) = (opened.fd, opened.target, opened.info)
    if target.hasPrefix("pipe:[") {
      if gathered.pipes[info.inode] == nil { gathered.pipes[info.inode] = try capturePipe(fd: fd, inode: info.inode) }
      var descriptor = opened.image(.pipe)
      descriptor.pipe = info.inode
      return descriptor
    }
    if target.hasPrefix("socket:[") {
      var descriptor = opened.image(.socket)
      descriptor.socket = try captureSocket(fd: fd, target: target, inode: info.inode, log: log)
      return descriptor
    }
    if target == "anon_inode:inotify" {
      var descriptor = opened.image(.inotify)
      descriptor.inotifyWatches = try info.extra.filter { $0.key == "inotify" }.map { try inotifyWatch($0, fd: fd) }
      // Events waiting to be read cannot be queued again: the kernel alone makes them, from
      // what happens to the watched files. A program waiting for one would wait forever, so
      // they are refused unless the user lets them go (what CRIU does silently).
      if let waiting = try? waitingBytes(fd: fd), waiting > 0 {
        guard dropInotifyEvents else {
          throw CKError(
            .failed,
            "task \(pid): inotify fd \(fd) has \(waiting) bytes of events not read yet, which ckcont cannot queue again",
            hint: "checkpoint again once the program has read them, or pass --drop-inotify-events to lose them")
        }
        log.debug("task \(pid): fd \(fd): \(waiting) bytes of inotify events waiting to be read are dropped")
      }
      return descriptor
    }
    if target == "anon_inode:[fanotify]" {
      var descriptor = opened.image(.fanotify)
      descriptor.fanotify = try fanotifyGroup(info, fd: fd)
      return descriptor
    }
    if target == "anon_inode:[pidfd]" || target.hasPrefix("pidfd:") {
      guard let host = info.value(for: "Pid").flatMap({ Int32($0) }), host > 0 else {
        throw CKError(
          .failed, "task \(pid): fd \(fd) is a pidfd of a process that has exited, which ckcont cannot checkpoint")
      }
      var descriptor = opened.image(.pidfd)
      descriptor.pidfdTarget = host
      return descriptor
    }
    if target == "anon_inode:[eventpoll]" {
      var descriptor = opened.image(.epoll)
      descriptor.epollTargets = try epollTargets(opened, into: &gathered)
      return descriptor
    }
    if let kind = Self.anonKinds[target] {
      var descriptor = opened.image(kind)
      descriptor.anon = try anonState(kind, info, fd: fd)
      return descriptor
    }
    return nil
  }

  /// An epoll instance's watches as fdinfo lists them, each noted with its target's inode.
  private func epollTargets(_ opened: Opened, into gathered: inout Gathered) throws -> [EpollTarget] {
    var watched: [EpollTarget] = []
    for field in opened.info.extra where field.key == "tfd" {
      let pairs = Dictionary(field.recordFields ?? [], uniquingKeysWith: { first, _ in first })
      guard let tfd = pairs["tfd"].flatMap({ Int32($0) }),
        let events = pairs["events"].flatMap({ UInt32($0, radix: 16) }),
        let data = pairs["data"].flatMap({ UInt64($0, radix: 16) }),
        let inode = pairs["ino"].flatMap({ UInt64($0, radix: 16) })
      else {
        throw CKError(
          .failed, "task \(pid): fd \(opened.fd): cannot read an epoll target from fdinfo: \(field.value)")
      }
      watched.append(EpollTarget(fd: tfd, events: events, data: data))
      gathered.epollInodes.append((opened.fd, tfd, inode, watched.count - 1))
    }
    return watched
  }

  /// A descriptor of an inode with a file type: message queues, memfds, FIFOs, terminals,
  /// deleted files and files by path. Anything else fails the dump by name.
  private func inodeDescriptor(_ opened: Opened, into gathered: inout Gathered, log: Logger) throws
    -> DescriptorImage
  {
    let (fd, target, info) = (opened.fd, opened.target, opened.info)
    let path = "/proc/\(pid)/fd/\(fd)"
    var st = stat()
    guard stat(path, &st) == 0 else {
      throw CKError(.failed, "task \(pid): fd \(fd) (\(target)): cannot stat it: \(String(cString: strerror(errno)))")
    }
    let type = st.st_mode & S_IFMT
    let deleted = target.hasSuffix(" (deleted)")
    let livePath = deleted ? String(target.dropLast(" (deleted)".count)) : target
    if type == S_IFREG, ck_fs_magic(path) == CK_MQUEUE_MAGIC {
      var descriptor = opened.image(.mqueue)
      descriptor.mode = UInt32(st.st_mode)
      descriptor.mqueue = try captureMessageQueue(fd: fd, target: target, st: st)
      return descriptor
    }
    if type == S_IFREG, target.hasPrefix("/memfd:"), deleted {
      var descriptor = opened.image(.memfd)
      (descriptor.path, descriptor.position, descriptor.mode) = (target, info.pos, UInt32(st.st_mode))
      descriptor.memfd = try captureMemfd(fd: fd, target: target, inode: UInt64(st.st_ino), size: Int(st.st_size))
      return descriptor
    }
    if type == S_IFIFO, target.hasPrefix("/") {
      let inode = UInt64(st.st_ino)
      if gathered.pipes[inode] == nil { gathered.pipes[inode] = try capturePipe(fd: fd, inode: inode) }
      var descriptor = opened.image(.fifo)
      (descriptor.path, descriptor.pipe) = (livePath, inode)
      if deleted {
        descriptor.fifoDeleted = true
        descriptor.fifoAttributes = FileAttributes(
          uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777,
          accessed: FileTime(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int64(st.st_atim.tv_nsec)),
          modified: FileTime(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec)))
      }
      return descriptor
    }
    if type == S_IFCHR, target.hasPrefix("/"), let side = Terminals.side(device: UInt64(st.st_rdev)) {
      var descriptor = opened.image(.pty)
      descriptor.path = target
      descriptor.pty = try Terminals.capture(
        pid: pid, fd: fd, isMaster: side.isMaster, index: side.index, taken: taken, log: log)
      return descriptor
    }
    guard target.hasPrefix("/"), type == S_IFREG || type == S_IFCHR || type == S_IFDIR else {
      throw CKError(
        .failed, "task \(pid): fd \(fd) is \(describe(target)), which ckcont cannot checkpoint yet",
        hint: "close it before the checkpoint, or wait for support of this kind")
    }
    if type == S_IFCHR, TunDescriptors.isTun(DeviceNumber(UInt64(st.st_rdev))) {
      var descriptor = opened.image(.tun)
      descriptor.path = target
      descriptor.tun = try captureTun(fd: fd)
      return descriptor
    }
    if type == S_IFCHR, !Self.reopensAsItWas(device: UInt64(st.st_rdev)) {
      // A tun/tap device's queue, a FUSE connection, an input device: opened again, it
      // would be a fresh one, attached to nothing.
      let number = DeviceNumber(UInt64(st.st_rdev))
      throw CKError(
        .failed,
        "task \(pid): fd \(fd) is the character device \(target) (\(number.major):\(number.minor)), whose open state ckcont cannot checkpoint yet",
        hint: "opened again it would be a fresh one; close it before the checkpoint")
    }
    if deleted {
      return try deletedFile(opened, st: st)
    }
    var descriptor = opened.image(.path)
    (descriptor.path, descriptor.position, descriptor.mode) = (target, info.pos, UInt32(st.st_mode))
    if let rootMounts, !rootMounts.contains(Int(info.mountID)) { descriptor.outsideRoot = true }
    return descriptor
  }

  /// Character devices with no state of their own per open file: opened again, they are
  /// what they were (/dev/null, zero, full, random, urandom; /dev/tty, /dev/console).
  static func reopensAsItWas(device: UInt64) -> Bool {
    let number = DeviceNumber(device)
    return switch (number.major, number.minor) {
    case (1, 3), (1, 5), (1, 7), (1, 8), (1, 9), (5, 0), (5, 1): true
    default: false
    }
  }

  /// A regular file deleted while open, its contents kept (a ghost file, in CRIU's words).
  private func deletedFile(_ opened: Opened, st: stat) throws -> DescriptorImage {
    guard st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 0 else {
      throw CKError(
        .failed,
        "task \(pid): fd \(opened.fd) refers to \(opened.target), deleted but still linked elsewhere or not a regular file, which ckcont cannot checkpoint yet"
      )
    }
    var descriptor = opened.image(.deleted)
    if descriptor.flags & O_NOFOLLOW != 0 {
      // Reopened by its file handle at restore (a /proc link would refuse O_NOFOLLOW).
      let ours = try OwnedDescriptor(opening: "/proc/\(pid)/fd/\(opened.fd)", flags: O_RDONLY | O_CLOEXEC)
      guard ck_has_file_handle(ours.raw) == 0 else {
        throw CKError(
          .failed,
          "task \(pid): fd \(opened.fd) is \(opened.target), deleted and opened O_NOFOLLOW on a filesystem without file handles (an overlay without nfs_export), which ckcont cannot checkpoint yet",
          hint: "mount an overlay with nfs_export=on, or checkpoint once the file is closed")
      }
    }
    descriptor.path = String(opened.target.dropLast(" (deleted)".count))
    (descriptor.position, descriptor.mode) = (opened.info.pos, UInt32(st.st_mode))
    let kept = try readKept(fd: opened.fd, what: "the deleted file \(opened.target)")
    var ghost = GhostFileImage(inode: UInt64(st.st_ino), contents: kept.contents)
    (ghost.size, ghost.extents, ghost.attributes, ghost.dataMember) = (
      kept.size, kept.extents, kept.attributes, kept.dataMember
    )
    descriptor.ghost = ghost
    return descriptor
  }

  /// The locks each descriptor holds; only on files by path and deleted files.
  private func attachLocks(_ gathered: inout Gathered) throws {
    for index in gathered.descriptors.indices {
      let descriptor = gathered.descriptors[index]
      guard let lines = gathered.lockLines[descriptor.fd], descriptor.sharesWith == nil else { continue }
      guard descriptor.kind == .path || descriptor.kind == .deleted else {
        throw CKError(
          .failed,
          "task \(pid): fd \(descriptor.fd) holds a lock on a \(descriptor.kind.rawValue), which ckcont cannot checkpoint yet"
        )
      }
      gathered.descriptors[index].locks = try lines.map { try lock(from: $0, fd: descriptor.fd) }
    }
  }

  /// F_GETOWN_EX and F_GETSIG of the description behind `fd` (the owner as the host sees it).
  private func asyncOwner(fd: Int32) throws -> AsyncOwnerImage {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: pid)
    var owner: (Int32, Int32) = (0, 0)  // struct f_owner_ex { int type; pid_t pid; }
    _ = try syscallChecked("fcntl", "F_GETOWN_EX of task \(pid) fd \(fd)") {
      withUnsafeMutableBytes(of: &owner) { bytes in
        bytes.baseAddress.map { fcntl(ours.raw, Int32(CK_F_GETOWN_EX), $0) } ?? -1
      }
    }
    let signal = try syscallChecked("fcntl", "F_GETSIG of task \(pid) fd \(fd)") { fcntl(ours.raw, Int32(CK_F_GETSIG)) }
    return AsyncOwnerImage(type: owner.0, id: owner.1, signal: signal)
  }

  private func describe(_ target: String) -> String {
    if target.hasPrefix("socket:") { return "a socket (\(target))" }
    if target.hasPrefix("anon_inode:") { return "an \(target.dropFirst(11)) descriptor" }
    return target
  }
}

extension Dump {
  /// Open file descriptions held by more than one process (inherited across fork) get one
  /// container-wide id, found by kcmp(KCMP_FILE) among descriptors of the same file or pipe.
  func markSharedDescriptions(_ tasks: inout [CapturedTask]) {
    var seen: [String: [(task: Int, index: Int)]] = [:]
    var nextID: UInt64 = 1
    for taskIndex in tasks.indices {
      for index in tasks[taskIndex].files.descriptors.indices {
        let descriptor = tasks[taskIndex].files.descriptors[index]
        guard descriptor.sharesWith == nil else { continue }
        let key = descriptor.kind == .pipe ? "pipe:\(descriptor.pipe ?? 0)" : "path:\(descriptor.path ?? "")"
        let earlier = seen[key, default: []].first { other in
          other.task != taskIndex
            && ck_kcmp_file(
              tasks[other.task].hostPid, tasks[taskIndex].hostPid,
              tasks[other.task].files.descriptors[other.index].fd, descriptor.fd) == 0
        }
        if let earlier {
          var id = tasks[earlier.task].files.descriptors[earlier.index].sharedDescription
          if id == nil {
            id = nextID
            nextID += 1
            tasks[earlier.task].files.descriptors[earlier.index].sharedDescription = id
          }
          tasks[taskIndex].files.descriptors[index].sharedDescription = id
        } else {
          seen[key, default: []].append((taskIndex, index))
        }
      }
    }
    // dup()s of a shared descriptor share its id too.
    for taskIndex in tasks.indices {
      let byFd = Dictionary(
        uniqueKeysWithValues: tasks[taskIndex].files.descriptors.map { ($0.fd, $0.sharedDescription) })
      for index in tasks[taskIndex].files.descriptors.indices {
        if let twin = tasks[taskIndex].files.descriptors[index].sharesWith, let id = byFd[twin] ?? nil {
          tasks[taskIndex].files.descriptors[index].sharedDescription = id
        }
      }
    }
  }

  /// The owner of signal-driven I/O names a thread, a process or a group's leader by its host
  /// pid while captured: the image keeps the pid inside (at the container's pid namespace
  /// `level`).
  func nameAsyncOwnersInside(_ task: inout CapturedTask, innerPid: [Int32: Int32], level: Int) throws {
    for (slot, descriptor) in task.files.descriptors.enumerated() {
      guard var owner = descriptor.asyncOwner, owner.id != 0 else { continue }
      func inner(_ host: Int32) -> Int32? {
        if let pid = innerPid[host] { return pid }
        // A thread of one of the container's processes.
        guard let status = try? ProcStatus.read(pid: host), innerPid[status.tgid] != nil else { return nil }
        return status.nsPid.count >= level ? status.nsPid[level - 1] : nil
      }
      guard let inner = inner(owner.id) else {
        throw CKError(
          .failed,
          "task \(task.hostPid): fd \(descriptor.fd) signals \(owner.type == 2 ? "process group" : owner.type == 0 ? "thread" : "process") \(owner.id) on I/O, outside the container",
          hint: "ckcont restores signal-driven I/O aimed at the container's own processes only")
      }
      owner.id = inner
      task.files.descriptors[slot].asyncOwner = owner
    }
  }
}
