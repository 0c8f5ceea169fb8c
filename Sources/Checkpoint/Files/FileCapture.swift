import Bundle
import CKShim
import Foundation
import Glibc
import Linux

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

  func image(log: (String) -> Void) throws -> FileTableImage {
    let fdDir = "/proc/\(pid)/fd"
    let numbers = try PseudoFile.list(fdDir).compactMap { Int32($0) }.sorted()
    var descriptors: [DescriptorImage] = []
    var pipes: [UInt64: PipeImage] = [:]
    var byInode: [UInt64: [Int32]] = [:]
    var inodes: [Int32: UInt64] = [:]
    var epollInodes: [(epoll: Int32, target: Int32, inode: UInt64, index: Int)] = []
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
          throw CKError(
            .failed, "task \(pid): fd \(fd) is a pidfd of a process that has exited, which ckcont cannot checkpoint")
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
          guard let tfd = pairs["tfd"].flatMap({ Int32($0) }),
            let events = pairs["events"].flatMap({ UInt32($0, radix: 16) }),
            let data = pairs["data"].flatMap({ UInt64($0, radix: 16) }),
            let inode = pairs["ino"].flatMap({ UInt64($0, radix: 16) })
          else {
            throw CKError(.failed, "task \(pid): fd \(fd): cannot read an epoll target from fdinfo: \(field.value)")
          }
          watched.append(EpollTarget(fd: tfd, events: events, data: data))
          epollInodes.append((fd, tfd, inode, watched.count - 1))
        }
        descriptors.append(
          DescriptorImage(fd: fd, kind: .epoll, flags: openFlags, closeOnExec: cloexec, epollTargets: watched))
        continue
      }
      if let kind = Self.anonKinds[target] {
        descriptors.append(
          DescriptorImage(
            fd: fd, kind: kind, flags: openFlags, closeOnExec: cloexec, anon: try anonState(kind, info, fd: fd)))
        continue
      }
      var st = stat()
      guard stat("\(fdDir)/\(fd)", &st) == 0 else {
        throw CKError(.failed, "task \(pid): fd \(fd) (\(target)): cannot stat it: \(String(cString: strerror(errno)))")
      }
      let type = st.st_mode & S_IFMT
      if type == S_IFREG, ck_fs_magic("\(fdDir)/\(fd)") == CK_MQUEUE_MAGIC {
        var descriptor = DescriptorImage(
          fd: fd, kind: .mqueue, flags: openFlags, closeOnExec: cloexec, mode: UInt32(st.st_mode))
        descriptor.mqueue = try captureMessageQueue(fd: fd, target: target, st: st)
        descriptors.append(descriptor)
        continue
      }
      if type == S_IFREG, target.hasPrefix("/memfd:"), target.hasSuffix(" (deleted)") {
        descriptors.append(
          DescriptorImage(
            fd: fd, kind: .memfd, flags: openFlags, closeOnExec: cloexec, path: target, position: info.pos,
            mode: UInt32(st.st_mode),
            memfd: try captureMemfd(fd: fd, target: target, inode: UInt64(st.st_ino), size: Int(st.st_size))))
        continue
      }
      if type == S_IFIFO, target.hasPrefix("/") {
        let inode = UInt64(st.st_ino)
        if pipes[inode] == nil { pipes[inode] = try capturePipe(fd: fd, inode: inode) }
        let deleted = target.hasSuffix(" (deleted)")
        var descriptor = DescriptorImage(
          fd: fd, kind: .fifo, flags: openFlags, closeOnExec: cloexec,
          path: deleted ? String(target.dropLast(" (deleted)".count)) : target, pipe: inode)
        if deleted {
          descriptor.fifoDeleted = true
          descriptor.fifoAttributes = FileAttributes(
            uid: st.st_uid, gid: st.st_gid, mode: st.st_mode & 0o7777,
            accessed: FileTime(seconds: Int64(st.st_atim.tv_sec), nanoseconds: Int64(st.st_atim.tv_nsec)),
            modified: FileTime(seconds: Int64(st.st_mtim.tv_sec), nanoseconds: Int64(st.st_mtim.tv_nsec)))
        }
        descriptors.append(descriptor)
        continue
      }
      if type == S_IFCHR, target.hasPrefix("/"), let side = Terminals.side(device: UInt64(st.st_rdev)) {
        var descriptor = DescriptorImage(fd: fd, kind: .pty, flags: openFlags, closeOnExec: cloexec, path: target)
        descriptor.pty = try Terminals.capture(
          pid: pid, fd: fd, isMaster: side.isMaster, index: side.index, taken: taken, log: log)
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
            .failed,
            "task \(pid): fd \(fd) refers to \(target), deleted but still linked elsewhere or not a regular file, which ckcont cannot checkpoint yet"
          )
        }
        var descriptor = DescriptorImage(
          fd: fd, kind: .deleted, flags: openFlags, closeOnExec: cloexec,
          path: String(target.dropLast(" (deleted)".count)),
          position: info.pos, mode: UInt32(st.st_mode))
        let kept = try readKept(fd: fd, what: "the deleted file \(target)")
        var ghost = GhostFileImage(inode: UInt64(st.st_ino), contents: kept.contents)
        (ghost.size, ghost.extents, ghost.attributes) = (kept.size, kept.extents, kept.attributes)
        descriptor.ghost = ghost
        descriptors.append(descriptor)
        continue
      }
      var descriptor = DescriptorImage(
        fd: fd, kind: .path, flags: openFlags, closeOnExec: cloexec, path: target, position: info.pos,
        mode: UInt32(st.st_mode))
      if let rootMounts, !rootMounts.contains(Int(info.mountID)) { descriptor.outsideRoot = true }
      descriptors.append(descriptor)
    }
    for index in descriptors.indices {
      let descriptor = descriptors[index]
      guard let lines = lockLines[descriptor.fd], descriptor.sharesWith == nil else { continue }
      guard descriptor.kind == .path || descriptor.kind == .deleted else {
        throw CKError(
          .failed,
          "task \(pid): fd \(descriptor.fd) holds a lock on a \(descriptor.kind.rawValue), which ckcont cannot checkpoint yet"
        )
      }
      descriptors[index].locks = try lines.map { try lock(from: $0, fd: descriptor.fd) }
    }
    // An epoll watch is keyed by a descriptor number, which a watch whose descriptor was
    // closed keeps though it means nothing now: found after the capture (``Dump/findStaleWatches``).
    for (epoll, target, inode, slot) in epollInodes where inodes[target] != inode {
      guard let index = descriptors.firstIndex(where: { $0.fd == epoll }) else { continue }
      descriptors[index].epollTargets?[slot].source = Epoll.unresolved
    }
    log("task \(pid): \(descriptors.count) fds, \(pipes.count) pipes")
    // Signal-driven I/O: the owner and signal belong to the open file description, read
    // through a copy of it (pidfd_getfd).
    for index in descriptors.indices
    where descriptors[index].sharesWith == nil && descriptors[index].flags & O_ASYNC != 0 {
      descriptors[index].asyncOwner = try asyncOwner(fd: descriptors[index].fd)
    }
    return FileTableImage(descriptors: descriptors, pipes: pipes.values.sorted { $0.inode < $1.inode })
  }

  /// F_GETOWN_EX and F_GETSIG of the description behind `fd` (the owner as the host sees it).
  private func asyncOwner(fd: Int32) throws -> AsyncOwnerImage {
    let pidfd = try syscallChecked("pidfd_open", "\(pid)") { ck_pidfd_open(pid, 0) }
    defer { close(pidfd) }
    let ours = try syscallChecked("pidfd_getfd", "\(pid) fd \(fd)") { ck_pidfd_getfd(pidfd, fd, 0) }
    defer { close(ours) }
    var owner: (Int32, Int32) = (0, 0)  // struct f_owner_ex { int type; pid_t pid; }
    _ = try syscallChecked("fcntl", "F_GETOWN_EX of task \(pid) fd \(fd)") {
      withUnsafeMutableBytes(of: &owner) { fcntl(ours, Int32(CK_F_GETOWN_EX), $0.baseAddress!) }
    }
    let signal = try syscallChecked("fcntl", "F_GETSIG of task \(pid) fd \(fd)") { fcntl(ours, Int32(CK_F_GETSIG)) }
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
