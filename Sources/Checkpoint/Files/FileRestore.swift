import Bundle
import CKShim
import Glibc
import Linux

/// Reopens a process's descriptors inside the restored task at their exact numbers, with
/// their flags, positions, and the data that was buffered in its pipes.
///
/// Three phases so no descriptor clobbers another: create every open file description at a
/// number above all targets, dup3 each into place, close the high ones.
struct FileRestore {
  let image: FileTableImage
  let injector: Injector
  let log: (String) -> Void

  func run() throws {
    let high = UInt64((image.descriptors.map(\.fd).max() ?? 0) + 1)
    var descriptions: [Int32: Int64] = [:]  // target fd -> high fd holding its description
    var pipeEnds: [UInt64: (read: Int64, write: Int64)] = [:]
    var highFds: [Int64] = []

    for pipe in image.pipes {
      injector.resetData()
      let pair = try injector.reserve(8)
      try injector.call("pipe2", SyscallNumber.pipe2, pair, UInt64(O_CLOEXEC))
      let fds = try injector.read(8, at: pair).withUnsafeBytes { ($0.load(as: Int32.self), $0.load(fromByteOffset: 4, as: Int32.self)) }
      try injector.call("F_SETPIPE_SZ", SyscallNumber.fcntl, UInt64(fds.1), UInt64(CK_F_SETPIPE_SZ), UInt64(pipe.capacity))
      try fill(writeEnd: fds.1, with: pipe)
      let read = try moveHigh(Int64(fds.0), above: high)
      let write = try moveHigh(Int64(fds.1), above: high)
      pipeEnds[pipe.inode] = (read, write)
      highFds += [read, write]
    }
    for descriptor in image.descriptors where descriptor.sharesWith == nil {
      switch descriptor.kind {
      case .pipe:
        guard let inode = descriptor.pipe, let ends = pipeEnds[inode] else { continue }
        let end = descriptor.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
        // Status flags (O_NONBLOCK...) belong to the description: set on the end itself.
        try injector.call("F_SETFL fd \(descriptor.fd)", SyscallNumber.fcntl, UInt64(end), UInt64(F_SETFL), UInt64(descriptor.flags))
        descriptions[descriptor.fd] = end
      case .path:
        guard let path = descriptor.path else { continue }
        injector.resetData()
        let address = try injector.put(string: path)
        let flags = descriptor.flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_CLOEXEC
        let opened = try injector.call(
          "open fd \(descriptor.fd) \(path)", SyscallNumber.open, address, UInt64(UInt32(bitPattern: flags)), 0)
        if let position = descriptor.position, position > 0, (descriptor.mode ?? 0) & UInt32(S_IFMT) == UInt32(S_IFREG) {
          try injector.call("lseek fd \(descriptor.fd) to \(position)", SyscallNumber.lseek, UInt64(opened), UInt64(position), 0)
        }
        let moved = try moveHigh(opened, above: high)
        descriptions[descriptor.fd] = moved
        highFds.append(moved)
      }
    }
    for descriptor in image.descriptors {
      guard let source = descriptions[descriptor.sharesWith ?? descriptor.fd] else { continue }
      try injector.call(
        "dup3 fd \(descriptor.fd)", SyscallNumber.dup3, UInt64(source), UInt64(descriptor.fd),
        descriptor.closeOnExec ? UInt64(O_CLOEXEC) : 0)
    }
    for fd in highFds { try injector.call("close \(fd)", SyscallNumber.close, UInt64(fd)) }
    log("task \(injector.pid): \(image.descriptors.count) fds, \(image.pipes.count) pipes restored")
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
