import Glibc

/// One page as /proc/<pid>/pagemap shows it (Documentation/admin-guide/mm/pagemap.rst): as
/// root, the physical frame of a present page or the swap slot of a swapped one, and
/// whether this process alone maps it.
public struct PageMapEntry: Equatable, Sendable {
  public let raw: UInt64

  static let present: UInt64 = 1 << 63
  static let swapped: UInt64 = 1 << 62
  static let fileOrShared: UInt64 = 1 << 61
  static let exclusive: UInt64 = 1 << 56
  static let frameMask: UInt64 = (1 << 55) - 1

  public init(raw: UInt64) { self.raw = raw }

  /// The physical page (or swap slot) of a private anonymous page, nil when the page is
  /// neither, or when frames are hidden (only root sees them): two processes with the same
  /// identity at a page share it copy-on-write.
  public var anonymousIdentity: UInt64? {
    guard raw & Self.fileOrShared == 0, raw & (Self.present | Self.swapped) != 0, raw & Self.frameMask != 0 else {
      return nil
    }
    return raw & (Self.frameMask | Self.swapped)
  }

  /// A present page some other mapping maps too (the kernel's PM_MMAP_EXCLUSIVE is clear).
  public var isMappedElsewhere: Bool { raw & Self.present != 0 && raw & Self.exclusive == 0 }
}

/// /proc/<pid>/pagemap, open for reading entries of address ranges.
public struct PageMap: ~Copyable {
  public let pid: Int32
  let fd: Int32

  public init(pid: Int32) throws(SyscallError) {
    self.pid = pid
    fd = try syscallChecked("open", "/proc/\(pid)/pagemap") { open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC) }
  }

  deinit { close(fd) }

  static let pageSize: UInt64 = 4096

  /// The entries of the pages of [start, end), page-aligned.
  public func entries(start: UInt64, end: UInt64) throws(SyscallError) -> [PageMapEntry] {
    let count = Int((end - start) / Self.pageSize)
    var raw = [UInt64](repeating: 0, count: count)
    var done = 0
    while done < count {
      let n = try syscallChecked("pread", "/proc/\(pid)/pagemap") {
        raw.withUnsafeMutableBytes { buffer in
          pread(
            fd, buffer.baseAddress.map { $0 + done * 8 }, (count - done) * 8,
            off_t((start / Self.pageSize + UInt64(done)) * 8))
        }
      }
      guard n > 0, n % 8 == 0 else { throw SyscallError("pread", "/proc/\(pid)/pagemap", .ioError) }
      done += n / 8
    }
    return raw.map(PageMapEntry.init(raw:))
  }
}
