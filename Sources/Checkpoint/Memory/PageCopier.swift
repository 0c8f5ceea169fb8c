import CKShim
import Foundation
import Linux

/// Copies page contents between ckcont's memory and tasks' address spaces on two CPUs at
/// once: a helper thread takes pieces as they are submitted, and a thread that waits for
/// them takes pieces too instead of sleeping.
///
/// Why two: most of the time of a big copy is the kernel allocating and clearing the
/// destination's fresh pages, page fault by page fault (tmpfs pages of the bundle at a dump,
/// anonymous pages of the task at a restore). That work runs in parallel on two CPUs, where
/// one write(2) or one task's preadv would hold one CPU and, for a file, its inode lock.
/// Nothing here uses ptrace: any thread may copy (process_vm_readv/writev need only the
/// right to trace the task).
final class PageCopier: @unchecked Sendable {
  /// A contiguous local buffer and the remote ranges it mirrors, in order.
  struct Piece: @unchecked Sendable {
    var pid: Int32
    var local: UnsafeMutableRawPointer
    var ranges: ArraySlice<AddressRange>
    var intoTask: Bool
    /// Runs before the copy on the copying thread (a dump reserves the file's blocks here).
    var prepare: (@Sendable () throws -> Void)?
    /// Into a task: copy with UFFDIO_COPY through this userfaultfd of its address space (the
    /// ranges registered for missing pages) rather than with process_vm_writev. The kernel
    /// then fills fresh pages without clearing them first, and pins nothing.
    var uffd: Int32?
    /// Into a task: one byte from `local` at the start of each range, through
    /// /proc/<pid>/mem, which writes where the mapping is not writable too (see
    /// ``submitForcedWrites(pid:at:)``).
    var forced = false
  }

  /// The most bytes one piece copies: big enough that a call costs little per byte, small
  /// enough that two threads share a big area evenly.
  static let pieceSize = 4 << 20

  // Guarded by `condition`: a condition variable, not a Mutex, as the copying threads sleep
  // until pieces come and waitAll until the last one is copied.
  private let condition = NSCondition()
  private var queue: [Piece] = []
  private var head = 0
  private var running = 0
  private var failure: (any Error)?
  private var stopped = false

  /// Starts the helper thread on `cpus` (threads inherit the CPUs of their creator, which
  /// may be held on one).
  init(helperCPUs: CPUSet?) {
    let thread = Thread { [self] in
      try? helperCPUs?.apply(to: 0)
      helperLoop()
    }
    thread.name = "ckcont-pages"
    thread.start()
  }

  /// Queues the copy of `ranges` of `pid` to or from `local` (their total size), split into
  /// pieces of at most ``pieceSize`` bytes; returns at once.
  func submit(
    pid: Int32, ranges: [AddressRange], local: UnsafeMutableRawPointer, intoTask: Bool,
    prepare: (@Sendable (_ offset: Int, _ count: Int) throws -> Void)? = nil, uffd: Int32? = nil
  ) {
    // Ranges split at piece boundaries, then sliced into pieces (slicing as the array grows
    // would copy it at every piece).
    var split: [AddressRange] = []
    var bounds: [(first: Int, offset: Int, count: Int)] = []
    var offset = 0
    var pieceBytes = 0
    for range in ranges {
      var start = range.start
      while start < range.end {
        if pieceBytes == 0 { bounds.append((split.count, offset, 0)) }
        let take = min(range.end - start, UInt64(Self.pieceSize - pieceBytes))
        split.append(AddressRange(start: start, end: start + take))
        pieceBytes += Int(take)
        offset += Int(take)
        bounds[bounds.count - 1].count = pieceBytes
        start += take
        if pieceBytes == Self.pieceSize { pieceBytes = 0 }
      }
    }
    var pieces: [Piece] = []
    for index in bounds.indices {
      let (first, at, count) = bounds[index]
      let end = index + 1 < bounds.count ? bounds[index + 1].first : split.count
      var preparePiece: (@Sendable () throws -> Void)?
      if let prepare { preparePiece = { try prepare(at, count) } }
      pieces.append(
        Piece(
          pid: pid, local: local + at, ranges: split[first..<end], intoTask: intoTask, prepare: preparePiece, uffd: uffd
        ))
    }
    enqueue(pieces)
  }

  /// Queues a zero byte written at each of `addresses` of `pid` through /proc/<pid>/mem, in
  /// two pieces, one for each copying thread; returns at once. Each write faults in a page
  /// (and gives its mapping an anon_vma), ~4 µs in the kernel: written one after the other
  /// by the tracing thread, 6,700 took 28 ms. Only pages of mappings not writable while
  /// they are restored come here (the task writes the others itself, MemoryRestore.force).
  func submitForcedWrites(pid: Int32, at addresses: [UInt64]) {
    let ranges = addresses.map { AddressRange(start: $0, end: $0 + 1) }
    let half = (ranges.count + 1) / 2
    let pieces = stride(from: 0, to: ranges.count, by: max(half, 1)).map {
      Piece(
        pid: pid, local: Self.zeroByte, ranges: ranges[$0..<min($0 + half, ranges.count)], intoTask: true,
        prepare: nil, uffd: nil, forced: true)
    }
    enqueue(pieces)
  }

  private func enqueue(_ pieces: [Piece]) {
    guard !pieces.isEmpty else { return }
    condition.lock()
    queue += pieces
    condition.broadcast()
    condition.unlock()
  }

  /// The byte forced writes write: a zero, for the life of ckcont.
  nonisolated(unsafe) private static let zeroByte: UnsafeMutableRawPointer = {
    let byte = UnsafeMutableRawPointer.allocate(byteCount: 1, alignment: 1)
    byte.storeBytes(of: 0, as: UInt8.self)
    return byte
  }()

  /// Copies queued pieces alongside the helper until all are done; throws the first failure.
  func waitAll() throws {
    condition.lock()
    defer { condition.unlock() }
    while true {
      if head < queue.count {
        let piece = queue[head]
        head += 1
        run(piece)
        continue
      }
      if running == 0 { break }
      condition.wait()
    }
    queue.removeAll(keepingCapacity: true)
    head = 0
    if let failure {
      self.failure = nil
      throw failure
    }
  }

  /// Drops what is still queued, waits for the pieces being copied, and ends the helper
  /// thread. Must be called once by the owner before the memory the pieces point to goes.
  func stop() {
    condition.lock()
    queue.removeAll()
    head = 0
    stopped = true
    condition.broadcast()
    while running > 0 { condition.wait() }
    condition.unlock()
  }

  private func helperLoop() {
    condition.lock()
    defer { condition.unlock() }
    while true {
      while head == queue.count && !stopped { condition.wait() }
      if head == queue.count { return }
      let piece = queue[head]
      head += 1
      run(piece)
    }
  }

  /// Copies one piece with the lock released; after a failure the rest are skipped.
  private func run(_ piece: Piece) {
    guard failure == nil else { return }
    running += 1
    condition.unlock()
    var error: (any Error)?
    do {
      try piece.prepare?()
      if piece.forced {
        let memory = try MemFile(pid: piece.pid)
        for range in piece.ranges {
          try memory.write(UnsafeRawBufferPointer(start: piece.local, count: 1), at: range.start)
        }
      } else if let uffd = piece.uffd {
        var offset = 0
        for range in piece.ranges {
          let result = ck_uffd_copy(uffd, range.start, piece.local + offset, range.count)
          guard result == 0 else {
            throw SyscallError(
              "UFFDIO_COPY", "task \(piece.pid) at 0x\(String(range.start, radix: 16))", .init(rawValue: -result))
          }
          offset += Int(range.count)
        }
      } else {
        try ProcessMemory.transfer(pid: piece.pid, ranges: piece.ranges, local: piece.local, write: piece.intoTask)
      }
    } catch let caught {
      error = caught
    }
    condition.lock()
    running -= 1
    if let error, failure == nil { failure = error }
    condition.broadcast()
  }
}
