import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// Pipes and FIFOs (CRIU's pipes.c and fifo.c): captured with the data buffered in them
// (tee, without consuming it); made again once per container, filled, and handed to every
// process that holds an end.

/// Pipe ends: both made at once, before the batches (``FileBatch/preparePipes()``).
enum Pipes: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let inode = descriptor.pipe, pipes.contains(inode) else {
      throw bad("fd \(descriptor.fd) names an unknown pipe")
    }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    // Both ends made with their data before the batches: ``FileBatch/preparePipes()``.
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "pipe:[\(descriptor.pipe ?? 0)] \(descriptor.flags & O_ACCMODE == O_RDONLY ? "read" : "write") end"
  }

  /// The pipes of a task's image: a capacity the kernel allows, holding no more than it.
  static func validate(_ pipes: [PipeImage], bad: (String) -> CKError) throws(CKError) {
    for pipe in pipes {
      guard pipe.capacity >= 4096, pipe.capacity <= 1 << 30, pipe.buffered.count <= Int(pipe.capacity) else {
        throw bad("pipe \(pipe.inode) has a bad size")
      }
    }
  }
}

/// FIFOs opened by path, their data kept with the pipes'.
enum Fifos: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let path = descriptor.path, path.hasPrefix("/"), path.utf8.count < 4096, !path.contains("\0"),
      let inode = descriptor.pipe, pipes.contains(inode)
    else { throw bad("fd \(descriptor.fd) names a bad FIFO") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareFifo(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "FIFO \(descriptor.path ?? "?") \(descriptor.flags & O_ACCMODE == O_RDONLY ? "read" : "write") end"
  }
}

extension FileCapture {
  /// The pipe's buffered bytes, copied without consuming them: a new read end opened through
  /// /proc, then tee(2) into a pipe of ours, which duplicates the data and leaves it in place.
  func capturePipe(fd: Int32, inode: UInt64) throws -> PipeImage {
    let path = "/proc/\(pid)/fd/\(fd)"
    let reader = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_NONBLOCK | O_CLOEXEC)
    let capacity = try syscallChecked("fcntl", "F_GETPIPE_SZ \(path)") { fcntl(reader.raw, Int32(CK_F_GETPIPE_SZ)) }
    var ends: [Int32] = [0, 0]
    try syscallChecked("pipe2", "copy of pipe:[\(inode)]") { ck_pipe2(&ends, O_CLOEXEC | O_NONBLOCK) }
    let readEnd = OwnedDescriptor(adopting: ends[0])
    let writeEnd = OwnedDescriptor(adopting: ends[1])
    try syscallChecked("fcntl", "F_SETPIPE_SZ") { fcntl(writeEnd.raw, Int32(CK_F_SETPIPE_SZ), capacity) }
    let copied = ck_tee(reader.raw, writeEnd.raw, Int(capacity), UInt32(CK_SPLICE_F_NONBLOCK))
    if copied < 0 && errno != EAGAIN {
      throw SyscallError("tee", "pipe:[\(inode)] of task \(pid)", .init(rawValue: errno))
    }
    var data = [UInt8](repeating: 0, count: max(copied, 0))
    var done = 0
    while done < data.count {
      let n = try syscallChecked("read", "copy of pipe:[\(inode)]") {
        data.withUnsafeMutableBytes { read(readEnd.raw, $0.baseAddress.map { $0 + done }, $0.count - done) }
      }
      if n == 0 { break }
      done += n
    }
    return PipeImage(inode: inode, buffered: Data(data.prefix(done)), capacity: Int32(capacity))
  }
}

extension FileBatch {
  /// Pipes: both ends made (or fetched) at once, with their buffered data.
  func preparePipes() throws {
    let descriptors = image.descriptors.filter { descriptor in
      descriptor.sharesWith == nil && descriptor.kind == .pipe && heldElsewhere(descriptor) == nil
        && inheritedFD(descriptor) == nil && descriptor.pipe.flatMap { pipesByInode[$0] } != nil
    }
    // The pipes no process made yet, each once, in the order their descriptors come.
    var seen: Set<UInt64> = []
    let new = descriptors.compactMap { $0.pipe.flatMap { pipesByInode[$0] } }.filter {
      shared.pipes[$0.inode] == nil && seen.insert($0.inode).inserted
    }
    try makePipes(new)
    // Status flags (O_NONBLOCK...) belong to the description: set on the end itself, once
    // its data is in. O_ASYNC waits for the descriptor's own number: the kernel names that
    // in its signals (si_fd).
    var flags = Injector.Batch()
    for descriptor in descriptors {
      guard let inode = descriptor.pipe, let image = pipesByInode[inode] else { continue }
      let ends = try pipeEnds(image)
      let created = descriptor.flags & O_ACCMODE == O_RDONLY ? ends.read : ends.write
      flags.add(.fcntl(created, .setFlags(descriptor.flags & ~O_ASYNC)), "F_SETFL fd \(descriptor.fd)")
      if flags.isFull {
        try injector.run(flags)
        flags = Injector.Batch()
      }
      prepared.descriptions[descriptor.fd] = created
    }
    try injector.run(flags)
  }

  /// Makes `pipes` in this task, with their capacity, at high numbers, filled with their
  /// buffered data, in two stops for up to a thousand of them (one call at a time, a
  /// thousand descriptors with 125 pipes took a thousand stops, most of their restore):
  /// every pipe2 first, as each writes its two ends into the data area, which ckcont reads
  /// before it can name them in the calls that resize and move them.
  private func makePipes(_ pipes: [PipeImage]) throws {
    var rest = pipes[...]
    while !rest.isEmpty {
      injector.resetData()
      // Five calls a pipe in the second stop; 16 bytes of the data area each (two ints,
      // rounded up).
      let chunk = rest.prefix(min(Int(injector.dataRoom / 16), Injector.maximumBatch / 8))
      rest = rest.dropFirst(chunk.count)
      var making = Injector.Batch()
      var pairs: [UInt64] = []
      for _ in chunk {
        let pair = try injector.reserve(8)
        pairs.append(pair)
        making.add(.pipe2(pair, O_CLOEXEC))
      }
      try injector.run(making)
      guard let first = pairs.first, let last = pairs.last else { continue }
      let bytes = try injector.read(Int(last + 8 - first), at: first)
      var placing = Injector.Batch()
      var made: [(pipe: PipeImage, read: Int64, write: Int64)] = []
      for (pipe, pair) in zip(chunk, pairs) {
        let fds = bytes.withUnsafeBytes {
          (
            Int64($0.load(fromByteOffset: Int(pair - first), as: Int32.self)),
            Int64($0.load(fromByteOffset: Int(pair - first) + 4, as: Int32.self))
          )
        }
        placing.add(.fcntl(fds.1, .setPipeSize(pipe.capacity)))
        let read = prepared.takeHigh()
        let write = prepared.takeHigh()
        for (fd, high) in [(fds.0, read), (fds.1, write)] {
          placing.add(.dup3(fd, high, closeOnExec: true))
          placing.add(.close(fd))
        }
        made.append((pipe, read, write))
      }
      try injector.run(placing)
      for (pipe, read, write) in made {
        try fill(writeEnd: Int32(write), with: pipe)
        shared.pipes[pipe.inode] = (pid, read, write)
      }
    }
  }

  /// Both ends of the pipe: made by ``makePipes(_:)`` in the first process that needs it,
  /// fetched from that process afterwards.
  private func pipeEnds(_ pipe: PipeImage) throws -> (read: Int64, write: Int64) {
    guard let holder = shared.pipes[pipe.inode] else {
      throw CKError(.failed, "task \(injector.pid): pipe:[\(pipe.inode)] was not made")
    }
    if holder.pid == pid { return (holder.read, holder.write) }
    let read = try fetch(holder.read, from: holder.pid, to: prepared.takeHigh())
    let write = try fetch(holder.write, from: holder.pid, to: prepared.takeHigh())
    shared.pipes[pipe.inode] = (pid, read, write)
    return (read, write)
  }

  /// Writes the pipe's buffered data through a copy of its write end taken with
  /// pidfd_getfd: the data may be larger than the injection region.
  func fill(writeEnd: Int32, with pipe: PipeImage) throws {
    guard !pipe.buffered.isEmpty else { return }
    try withOurCopy(of: writeEnd) { ours in
      try pipe.buffered.withUnsafeBytes { bytes in try writeAll(ours, bytes, "pipe:[\(pipe.inode)] refill") }
    }
  }

  /// A FIFO: opened by its path again, its buffered data written back once.
  func prepareFifo(_ descriptor: DescriptorImage) throws {
    guard let path = descriptor.path, let inode = descriptor.pipe else { return }
    if descriptor.fifoDeleted == true { return try prepareDeletedFifo(descriptor, path: path, inode: inode) }
    // Opening one end of a FIFO waits for (or, O_NONBLOCK, fails without) the other end:
    // a read-write keeper opened first is both, and holds the buffered data until every
    // process has opened its ends (it is closed with the other high fds at install).
    if prepared.fifoKeepers[inode] == nil {
      let keeper = try queueOpen(path, flags: O_RDWR | O_NONBLOCK, fd: descriptor.fd).high
      prepared.fifoKeepers[inode] = keeper
      if let image = pipesByInode[inode], shared.filledFifos.insert(inode).inserted {
        batch.add(.fcntl(keeper, .setPipeSize(image.capacity)), "F_SETPIPE_SZ \(path)")
        after.pipes.append((keeper, image))
      }
    }
    prepared.descriptions[descriptor.fd] = try queueOpen(path, flags: descriptor.flags, fd: descriptor.fd).high
  }

  /// A FIFO deleted while open: made again where it was (or next to it, when the path is
  /// taken), a read-write keeper opened and the FIFO unlinked at once, once per container;
  /// every descriptor of it then opens the keeper's FIFO through /proc.
  private func prepareDeletedFifo(_ descriptor: DescriptorImage, path: String, inode: UInt64) throws {
    if shared.deletedFifos[inode] == nil {
      let made = ghostFilePath(for: path, inode: inode, taskPid: injector.pid)
      let at = try injector.put(string: made)
      batch.add(.mknod(at, mode: S_IFIFO | 0o600), "mknod the FIFO \(made) for the deleted \(path)")
      let opened = batch.add(.open(at, O_RDWR | O_NONBLOCK | O_CLOEXEC), "open \(made)")
      batch.add(.unlink(at), "unlink \(made)")
      let keeper = queueMoveHigh(opened, what: "the deleted FIFO \(path)")
      if let image = pipesByInode[inode], shared.filledFifos.insert(inode).inserted {
        batch.add(.fcntl(keeper, .setPipeSize(image.capacity)), "F_SETPIPE_SZ \(path)")
        after.pipes.append((keeper, image))
      }
      if let attributes = descriptor.fifoAttributes { keepAttributes(attributes, of: "fifo \(inode)", at: keeper) }
      shared.deletedFifos[inode] = (injector.pid, keeper)
      try runQueued()
    }
    guard let keeper = shared.deletedFifos[inode] else { return }
    prepared.descriptions[descriptor.fd] = try queueHandedOver(
      "/proc/\(keeper.hostPid)/fd/\(keeper.fd)", flags: descriptor.flags, fd: descriptor.fd)
  }
}
