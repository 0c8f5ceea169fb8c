import Bundle
import CKShim
import Glibc
import Linux

/// Open file descriptions several restored processes share: the first to restore one holds
/// it at a high fd until every process has taken its copy (pidfd_getfd from inside).
final class SharedDescriptions {
  /// sharedDescription id -> the process (pid inside the container) and fd holding it.
  var holders: [UInt64: (pid: Int32, fd: Int64)] = [:]
  /// pipe inode -> the process holding both ends of the one pipe made for it.
  var pipes: [UInt64: (pid: Int32, read: Int64, write: Int64)] = [:]
  /// FIFOs whose buffered data has been written back.
  var filledFifos: Set<UInt64> = []
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
  let log: (String) -> Void

  /// What ``prepare()`` left at high fds.
  struct Prepared {
    var descriptions: [Int32: Int64] = [:]  // target fd -> high fd holding its description
    var highFds: [Int64] = []
    var fifoKeepers: [UInt64: Int64] = [:]  // FIFO inode -> a read-write fd of it
  }

  func prepare() throws -> Prepared {
    let high = UInt64((image.descriptors.map(\.fd).max() ?? 0) + 1)
    var prepared = Prepared()
    let pipesByInode = Dictionary(image.pipes.map { ($0.inode, $0) }) { first, _ in first }
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      if let id = descriptor.sharedDescription, let holder = shared.holders[id], holder.pid != pid {
        let copy = try fetch(holder.fd, from: holder.pid, above: high)
        prepared.descriptions[descriptor.fd] = copy
        prepared.highFds.append(copy)
        continue
      }
      let created: Int64
      switch descriptor.kind {
      case .pipe:
        guard let inode = descriptor.pipe, let image = pipesByInode[inode] else { continue }
        let ends = try pipeEnds(image, above: high, prepared: &prepared)
        created = descriptor.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
        // Status flags (O_NONBLOCK...) belong to the description: set on the end itself.
        try injector.call(
          "F_SETFL fd \(descriptor.fd)", SyscallNumber.fcntl, UInt64(created), UInt64(F_SETFL), UInt64(descriptor.flags))
      case .fifo:
        guard let path = descriptor.path, let inode = descriptor.pipe else { continue }
        // Opening one end of a FIFO waits for (or, O_NONBLOCK, fails without) the other end:
        // a read-write keeper opened first is both, and holds the buffered data until every
        // process has opened its ends (it is closed with the other high fds at install).
        if prepared.fifoKeepers[inode] == nil {
          let keeper = try moveHigh(try open(path, flags: O_RDWR | O_NONBLOCK, fd: descriptor.fd), above: high)
          prepared.fifoKeepers[inode] = keeper
          prepared.highFds.append(keeper)
          if let image = pipesByInode[inode], shared.filledFifos.insert(inode).inserted {
            try injector.call(
              "F_SETPIPE_SZ \(path)", SyscallNumber.fcntl, UInt64(keeper), UInt64(CK_F_SETPIPE_SZ), UInt64(image.capacity))
            try fill(writeEnd: Int32(keeper), with: image)
          }
        }
        created = try moveHigh(try open(path, flags: descriptor.flags, fd: descriptor.fd), above: high)
        prepared.highFds.append(created)
      case .path:
        guard let path = descriptor.path else { continue }
        let opened = try open(path, flags: descriptor.flags, fd: descriptor.fd)
        if let position = descriptor.position, position > 0, (descriptor.mode ?? 0) & UInt32(S_IFMT) == UInt32(S_IFREG) {
          try injector.call("lseek fd \(descriptor.fd) to \(position)", SyscallNumber.lseek, UInt64(opened), UInt64(position), 0)
        }
        created = try moveHigh(opened, above: high)
        prepared.highFds.append(created)
      }
      prepared.descriptions[descriptor.fd] = created
      if let id = descriptor.sharedDescription { shared.holders[id] = (pid, created) }
    }
    return prepared
  }

  /// open(2) inside the task, never creating or truncating, close-on-exec until installed.
  private func open(_ path: String, flags: Int32, fd: Int32) throws -> Int64 {
    injector.resetData()
    let address = try injector.put(string: path)
    let flags = flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
    return try injector.call("open fd \(fd) \(path)", SyscallNumber.open, address, UInt64(UInt32(bitPattern: flags)), 0)
  }

  func install(_ prepared: Prepared) throws {
    for descriptor in image.descriptors {
      guard let source = prepared.descriptions[descriptor.sharesWith ?? descriptor.fd] else { continue }
      try injector.call(
        "dup3 fd \(descriptor.fd)", SyscallNumber.dup3, UInt64(source), UInt64(descriptor.fd),
        descriptor.closeOnExec ? UInt64(O_CLOEXEC) : 0)
    }
    for fd in prepared.highFds { try injector.call("close \(fd)", SyscallNumber.close, UInt64(fd)) }
    log("task \(injector.pid): \(image.descriptors.count) fds, \(image.pipes.count) pipes restored")
  }

  /// Both ends of the pipe: made here (filled with its buffered data) the first time any
  /// process needs it, fetched from that process afterwards.
  private func pipeEnds(_ pipe: PipeImage, above high: UInt64, prepared: inout Prepared) throws -> (read: Int64, write: Int64) {
    if let holder = shared.pipes[pipe.inode] {
      if holder.pid == pid { return (holder.read, holder.write) }
      let read = try fetch(holder.read, from: holder.pid, above: high)
      let write = try fetch(holder.write, from: holder.pid, above: high)
      prepared.highFds += [read, write]
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
    let read = try moveHigh(Int64(fds.0), above: high)
    let write = try moveHigh(Int64(fds.1), above: high)
    prepared.highFds += [read, write]
    shared.pipes[pipe.inode] = (pid, read, write)
    return (read, write)
  }

  /// A copy of another restored process's fd, taken from inside with pidfd_open +
  /// pidfd_getfd: the same open file description, so offset and flags stay shared.
  private func fetch(_ fd: Int64, from owner: Int32, above high: UInt64) throws -> Int64 {
    let pidfd = try injector.call("pidfd_open(\(owner))", SyscallNumber.pidfdOpen, UInt64(owner), 0)
    defer { _ = try? injector.raw(SyscallNumber.close, UInt64(pidfd)) }
    let copy = try injector.call("pidfd_getfd(\(owner), \(fd))", SyscallNumber.pidfdGetfd, UInt64(pidfd), UInt64(fd), 0)
    return try moveHigh(copy, above: high)
  }

  /// fcntl(F_DUPFD_CLOEXEC) above every target number, then close the original.
  private func moveHigh(_ fd: Int64, above high: UInt64) throws -> Int64 {
    let moved = try injector.call("F_DUPFD", SyscallNumber.fcntl, UInt64(fd), UInt64(F_DUPFD_CLOEXEC), high)
    try injector.call("close", SyscallNumber.close, UInt64(fd))
    return moved
  }

  /// Writes the pipe's buffered data through a copy of its write end taken with
  /// pidfd_getfd: the data may be larger than the injection region.
  private func fill(writeEnd: Int32, with pipe: PipeImage) throws {
    guard !pipe.buffered.isEmpty else { return }
    let pidfd = try syscallChecked("pidfd_open", "\(injector.pid)") { ck_pidfd_open(injector.pid, 0) }
    defer { close(pidfd) }
    let ours = try syscallChecked("pidfd_getfd", "\(injector.pid) fd \(writeEnd)") { ck_pidfd_getfd(pidfd, writeEnd, 0) }
    defer { close(ours) }
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
