import Bundle
import Glibc
import Linux

/// Streams the saved pages of one process into the bundle. Into a file, they are copied
/// straight from the process into a mapping of the file, window by window, on two CPUs (see
/// ``PageCopier``); into a pipe, through a buffer of a few MiB with process_vm_readv (many
/// ranges per call) and one write. Areas the process cannot read itself (PROT_NONE,
/// write-only) are read through /proc/<pid>/mem, which may (FOLL_FORCE).
struct PageReader {
  let pid: Int32
  let image: MemoryImage
  /// `chunkSize` bytes, reused from process to process (a fresh buffer each time costs an
  /// mmap, page faults and a munmap, more than a small process's pages).
  let buffer: UnsafeMutableRawBufferPointer
  let copier: PageCopier
  /// Saved pages other mappings map too, sorted: read through /proc/<pid>/mem, which does
  /// not pin them (see ``ForkInheritance/Marked/unpinned``).
  var unpinned: [AddressRange] = []
  static let chunkSize = 8 << 20
  /// The part of a member copied in place before it is handed to the hashing thread, which
  /// then hashes it while the next one is copied.
  static let windowSize = 32 << 20
  /// Below this, a stretch goes through the buffer: mapping a region of the file costs
  /// several system calls, more than a write of a small process's pages.
  static let inPlaceMinimum = 1 << 20

  static func allocateBuffer() -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
  }

  /// One stretch of the member: page runs of readable areas, page runs to read without
  /// pinning them, or one unreadable area.
  private enum Stretch {
    case readable([AddressRange], bytes: Int)
    case unpinned([AddressRange], bytes: Int)
    case unreadable(VMAImage, bytes: Int)
  }

  /// The member in stretches of at most `limit` bytes, in image order.
  private func stretches(limit: Int) -> [Stretch] {
    var result: [Stretch] = []
    var pending: [AddressRange] = []
    var pendingBytes = 0
    var pendingUnpinned = false
    func close() {
      if pendingBytes > 0 {
        result.append(
          pendingUnpinned ? .unpinned(pending, bytes: pendingBytes) : .readable(pending, bytes: pendingBytes))
      }
      pending = []
      pendingBytes = 0
    }
    func add(_ range: AddressRange, unpinned: Bool) {
      if unpinned != pendingUnpinned { close() }
      pendingUnpinned = unpinned
      var start = range.start
      while start < range.end {
        let take = min(range.end - start, UInt64(limit - pendingBytes))
        pending.append(AddressRange(start: start, end: start + take))
        pendingBytes += Int(take)
        start += take
        if pendingBytes == limit { close() }
      }
    }
    var next = 0
    for vma in image.vmas where !vma.pages.isEmpty {
      guard vma.protection & PROT_READ != 0 else {
        close()
        result.append(.unreadable(vma, bytes: Int(vma.pages.reduce(0) { $0 + $1.size })))
        continue
      }
      for run in vma.pages {
        var start = run.start
        while next < unpinned.count && unpinned[next].end <= start { next += 1 }
        var index = next
        while start < run.end {
          guard index < unpinned.count, unpinned[index].start < run.end else {
            add(AddressRange(start: start, end: run.end), unpinned: false)
            break
          }
          if unpinned[index].start > start {
            add(AddressRange(start: start, end: unpinned[index].start), unpinned: false)
            start = unpinned[index].start
          }
          let end = min(unpinned[index].end, run.end)
          add(AddressRange(start: start, end: end), unpinned: true)
          start = end
          index += 1
        }
      }
    }
    close()
    return result
  }

  /// Writes every page run in image order; calls `progress` with bytes done.
  func write(to writer: some PageSink, progress: (Int) -> Void) throws {
    precondition(buffer.count == Self.chunkSize)
    var done = 0
    var inPlace = true
    for stretch in stretches(limit: Self.windowSize) {
      try Interruption.check()
      switch stretch {
      case .readable(let ranges, let bytes):
        var copied = false
        if inPlace && bytes >= Self.inPlaceMinimum {
          copied = try writer.writeInPlace(count: bytes) { region in
            guard let base = region.bytes.baseAddress else { return }
            copier.submit(pid: pid, ranges: ranges, local: base, intoTask: false, prepare: region.reserve)
            do {
              try copier.waitAll()
            } catch let error as CKError {
              throw error
            } catch {
              throw CKError(.failed, "task \(pid): reading pages failed: \(error)")
            }
          }
        }
        // A sink that cannot once (a pipe, a file system without fallocate) never will.
        if !copied {
          inPlace = inPlace && bytes < Self.inPlaceMinimum
          try writeBuffered(ranges, to: writer)
        }
        done += bytes
      case .unpinned(let ranges, let bytes):
        try writeForced(ranges, to: writer)
        done += bytes
      case .unreadable(let vma, let bytes):
        try writeForced(vma.pages.map { AddressRange(start: $0.start, end: $0.end) }, to: writer)
        done += bytes
      }
      progress(done)
    }
  }

  /// Page runs through the buffer, a chunk per process_vm_readv and write.
  private func writeBuffered(_ ranges: [AddressRange], to writer: some PageSink) throws {
    var pending: [AddressRange] = []
    var pendingBytes = 0
    func flush() throws {
      guard pendingBytes > 0 else { return }
      let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<pendingBytes])
      do {
        try ProcessMemory.read(pid: pid, ranges: pending, into: slice)
      } catch {
        throw CKError(.failed, "task \(pid): reading \(pending.count) page runs failed: \(error)")
      }
      try writer.write(UnsafeRawBufferPointer(slice))
      pending.removeAll(keepingCapacity: true)
      pendingBytes = 0
    }
    for range in ranges {
      var start = range.start
      while start < range.end {
        let take = min(range.end - start, UInt64(Self.chunkSize - pendingBytes))
        pending.append(AddressRange(start: start, end: start + take))
        pendingBytes += Int(take)
        start += take
        if pendingBytes == Self.chunkSize { try flush() }
      }
    }
    try flush()
  }

  /// Pages through /proc/<pid>/mem: of an area without PROT_READ (which it reads with
  /// FOLL_FORCE), or not to be pinned.
  private func writeForced(_ ranges: [AddressRange], to writer: some PageSink) throws {
    let mem = try MemFile(pid: pid, readOnly: true)
    for run in ranges {
      var address = run.start
      while address < run.end {
        let count = Int(min(run.end - address, UInt64(Self.chunkSize)))
        let bytes = try mem.read(count, at: address)
        guard bytes.count == count else {
          throw CKError(.failed, "task \(pid): short read of /proc/\(pid)/mem at 0x\(hex(address))")
        }
        try bytes.withUnsafeBytes { try writer.write($0) }
        address += UInt64(count)
      }
    }
  }
}

/// Where ``PageReader`` puts pages: the bundle's writer, or a compressor.
protocol PageSink: AnyObject {
  func write(_ bytes: UnsafeRawBufferPointer) throws
  /// Lets `fill` write `count` bytes in place; false when this sink cannot.
  func writeInPlace(count: Int, _ fill: (InPlaceRegion) throws -> Void) throws -> Bool
}

extension BundleWriter: PageSink {}

/// Pages compressed into one zstd frame in memory (`dump --compress zstd`).
final class CompressingPageSink: PageSink {
  let compressor: Compression.Compressor

  init(level: Int32, total: UInt64) throws {
    compressor = try Compression.Compressor(level: level, total: total, threads: 2)
  }

  func write(_ bytes: UnsafeRawBufferPointer) throws { try compressor.add(bytes) }

  func writeInPlace(count: Int, _ fill: (InPlaceRegion) throws -> Void) throws -> Bool { false }

  /// The frame, whole.
  func finish() throws -> [UInt8] {
    try compressor.finish()
    return compressor.output
  }
}
