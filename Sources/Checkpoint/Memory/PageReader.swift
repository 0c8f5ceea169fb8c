import Bundle
import Glibc
import Linux

/// Streams the saved pages of one process into the bundle: process_vm_readv into a buffer
/// of a few MiB, many ranges per call, then one write. Areas the process cannot read itself
/// (PROT_NONE, write-only) are read through /proc/<pid>/mem, which may (FOLL_FORCE).
struct PageReader {
  let pid: Int32
  let image: MemoryImage
  /// `chunkSize` bytes, reused from process to process (a fresh buffer each time costs an
  /// mmap, page faults and a munmap, more than a small process's pages).
  let buffer: UnsafeMutableRawBufferPointer
  static let chunkSize = 8 << 20

  static func allocateBuffer() -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer.allocate(byteCount: chunkSize, alignment: 4096)
  }

  /// Writes every page run in image order; calls `progress` with bytes done.
  func write(to writer: BundleWriter, progress: (Int) -> Void) throws {
    precondition(buffer.count == Self.chunkSize)
    var pending: [AddressRange] = []
    var pendingBytes = 0
    var done = 0
    func flush() throws {
      guard pendingBytes > 0 else { return }
      try Interruption.check()
      let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<pendingBytes])
      do {
        try ProcessMemory.read(pid: pid, ranges: pending, into: slice)
      } catch {
        throw CKError(.failed, "task \(pid): reading \(pending.count) page runs failed: \(error)")
      }
      try writer.write(UnsafeRawBufferPointer(slice))
      done += pendingBytes
      progress(done)
      pending.removeAll(keepingCapacity: true)
      pendingBytes = 0
    }
    for vma in image.vmas where !vma.pages.isEmpty {
      let readable = vma.protection & PROT_READ != 0
      if !readable {
        try flush()
        try writeForced(vma: vma, to: writer)
        done += Int(vma.pages.reduce(0) { $0 + $1.size })
        progress(done)
        continue
      }
      for run in vma.pages {
        var start = run.start
        while start < run.end {
          let take = min(run.end - start, UInt64(Self.chunkSize - pendingBytes))
          pending.append(AddressRange(start: start, end: start + take))
          pendingBytes += Int(take)
          start += take
          if pendingBytes == Self.chunkSize { try flush() }
        }
      }
    }
    try flush()
  }

  /// Pages of an area without PROT_READ, through /proc/<pid>/mem.
  private func writeForced(vma: VMAImage, to writer: BundleWriter) throws {
    let mem = try MemFile(pid: pid, readOnly: true)
    for run in vma.pages {
      var address = run.start
      while address < run.end {
        let count = Int(min(run.end - address, UInt64(Self.chunkSize)))
        let bytes = try mem.read(count, at: address)
        guard bytes.count == count else {
          throw CKError(.failed, "task \(pid): short read of the unreadable area at 0x\(hex(address))")
        }
        try bytes.withUnsafeBytes { try writer.write($0) }
        address += UInt64(count)
      }
    }
  }
}
