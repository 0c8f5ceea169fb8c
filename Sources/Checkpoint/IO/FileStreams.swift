import Bundle
import CKShim
import Glibc
import Linux

/// A bundle written to a file descriptor (a file, stdout, a pipe), in large writes; into a
/// file ckcont created, page data can also be appended in place (``appendInPlace(count:)``).
public final class FileDescriptorSink: InPlaceByteSink {
  public let fd: Int32
  let name: String
  public private(set) var bytesWritten = 0
  /// Whether `fd` is a file of ckcont's own, opened for reading and writing at offset 0, on
  /// which in-place regions may be tried.
  private var inPlace: Bool
  /// Mappings of the regions appended in place, unmapped by ``close()``.
  private var mappings: [UnsafeMutableRawBufferPointer] = []
  private var closed = false

  /// Small writes gather here and go out together: a bundle of many processes is thousands
  /// of small members (three JSON documents each, tar headers, padding).
  private let pending = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
  private var pendingCount = 0

  /// Each write goes out as a frame (its length, 4 bytes little-endian, then its bytes), and
  /// ``endFrames()`` ends them with a frame of length 0: a migration's bundle in a stream
  /// that goes on after it (``FileDescriptorSource``'s `framed`).
  private let framed: Bool

  public init(fd: Int32, name: String, inPlace: Bool = false, framed: Bool = false) {
    self.fd = fd
    self.name = name
    self.inPlace = inPlace && !framed
    self.framed = framed
  }

  /// Writes out what is gathered and the empty frame that ends a framed stream.
  public func endFrames() throws {
    guard framed else { return }
    try flush()
    try writeRaw(UnsafeRawBufferPointer(start: nil, count: 0), framing: true)
  }

  deinit { pending.deallocate() }

  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    let large = bytes.count >= pending.count / 4
    if large || pendingCount + bytes.count > pending.count { try flush() }
    if large {
      try writeOut(bytes)
    } else if let base = bytes.baseAddress {
      UnsafeMutableRawBufferPointer(rebasing: pending[pendingCount...]).copyMemory(
        from: UnsafeRawBufferPointer(start: base, count: bytes.count))
      pendingCount += bytes.count
    }
    bytesWritten += bytes.count
  }

  /// Writes out what is gathered.
  public func flush() throws {
    guard pendingCount > 0 else { return }
    let count = pendingCount
    pendingCount = 0
    try writeOut(UnsafeRawBufferPointer(start: pending.baseAddress, count: count))
  }

  private func writeOut(_ bytes: UnsafeRawBufferPointer) throws {
    guard !bytes.isEmpty else { return }
    try writeRaw(bytes, framing: framed)
  }

  private func writeRaw(_ bytes: UnsafeRawBufferPointer, framing: Bool) throws {
    if framing {
      var length = UInt32(bytes.count).littleEndian
      // MSG_MORE: the 4 bytes go out with the frame's first segment, not in a segment of
      // their own (the stream is a migration's TCP connection, without Nagle). Not for the
      // empty frame that ends the stream: nothing follows to push it, it would wait ~200 ms.
      let more = bytes.isEmpty ? 0 : Int32(MSG_MORE)
      let sent = withUnsafeBytes(of: &length) { Glibc.send(fd, $0.baseAddress, $0.count, more) }
      if sent != MemoryLayout<UInt32>.size {
        guard sent < 0, errno == ENOTSOCK else {
          throw SyscallError("send", "a frame's length to \(name)", .init(rawValue: sent < 0 ? errno : EIO))
        }
        try withUnsafeBytes(of: &length) { try writeRaw($0, framing: false) }
      }
    }
    var done = 0
    while done < bytes.count {
      let n = Glibc.write(fd, bytes.baseAddress.map { $0 + done }, bytes.count - done)
      guard n >= 0 else {
        let code = errno
        if code == EINTR { continue }
        if code == ENOSPC || code == EDQUOT { throw Self.noRoom(name, written: bytesWritten - pendingCount) }
        throw SyscallError("write", name, .init(rawValue: code))
      }
      done += n
    }
  }

  /// The error for a bundle that does not fit where it is written.
  static func noRoom(_ name: String, written: Int) -> CKError {
    CKError(
      .failed,
      "no room for the bundle at \(name) (\(written) bytes written): the file system is full or over its size limit; free some space or dump elsewhere"
    )
  }

  /// Extends the file by `count` bytes, maps them, and moves the write position past them.
  /// Blocks are allocated by the region's `reserve` (fallocate), piece by piece on whichever
  /// thread copies: a write into a mapped hole of a full file system would be a SIGBUS.
  /// Returns nil where the file system cannot allocate ahead (then nothing changed).
  public func appendInPlace(count: Int) throws -> InPlaceRegion? {
    guard inPlace, count > 0 else { return nil }
    try flush()
    let offset = bytesWritten
    let fd = fd
    let name = name
    guard ck_fallocate(fd, 0, Int64(offset), Int64(min(count, 4096))) == 0 else {
      if errno == EOPNOTSUPP || errno == ENOTSUP || errno == ENODEV || errno == ESPIPE {
        inPlace = false
        return nil
      }
      throw SyscallError("fallocate", name, .init(rawValue: errno))
    }
    try syscallChecked("ftruncate", name) { ftruncate(fd, off_t(offset + count)) }
    let pageStart = offset & ~4095
    guard let mapped = mmap(nil, offset + count - pageStart, PROT_READ | PROT_WRITE, MAP_SHARED, fd, off_t(pageStart)),
      mapped != MAP_FAILED
    else {
      // A file system that cannot map shared and writable: back to plain writes.
      try syscallChecked("ftruncate", name) { ftruncate(fd, off_t(offset)) }
      inPlace = false
      return nil
    }
    mappings.append(UnsafeMutableRawBufferPointer(start: mapped, count: offset + count - pageStart))
    try syscallChecked("lseek", name) { lseek(fd, off_t(offset + count), SEEK_SET) }
    bytesWritten += count
    let region = UnsafeMutableRawBufferPointer(start: mapped + (offset - pageStart), count: count)
    let base = Int(bitPattern: mapped + (offset - pageStart))
    return InPlaceRegion(bytes: region) { at, length in
      guard ck_fallocate(fd, 0, Int64(offset + at), Int64(length)) == 0 else {
        let code = errno
        if code == ENOSPC || code == EDQUOT { throw FileDescriptorSink.noRoom(name, written: offset + at) }
        throw SyscallError("fallocate", "\(name) at \(offset + at)", .init(rawValue: code))
      }
      // The pages in one call rather than a fault each as the copy reaches them; whole pages
      // only (the first may hold the member's header). Failure only means faults later.
      let start = (base + at + 4095) & ~4095
      let end = (base + at + length) & ~4095
      if end > start {
        _ = madvise(UnsafeMutableRawPointer(bitPattern: start), end - start, MADV_POPULATE_WRITE)
      }
    }
  }

  /// Unmaps the in-place regions (their data stays in the file) and closes the descriptor,
  /// once: a second call does nothing (the number may belong to another file by then).
  public func close() {
    guard !closed else { return }
    closed = true
    for mapping in mappings { munmap(mapping.baseAddress, mapping.count) }
    mappings = []
    Glibc.close(fd)
  }
}

/// A bundle read from a file descriptor; `framed`: in frames that end with an empty one
/// (``FileDescriptorSink``'s), the end of the bundle, not of the stream.
public final class FileDescriptorSource: ByteSource {
  public let fd: Int32
  let name: String
  private let framed: Bool
  /// Bytes left in the current frame; nil once the empty frame came.
  private var left: Int? = 0

  public init(fd: Int32, name: String, framed: Bool = false) {
    self.fd = fd
    self.name = name
    self.framed = framed
  }

  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    guard framed else { return try readRaw(into: buffer) }
    guard var frame = left else { return 0 }
    if frame == 0 {
      var header = [UInt8](repeating: 0, count: 4)
      var got = 0
      while got < 4 {
        let n = try header.withUnsafeMutableBytes {
          try readRaw(into: UnsafeMutableRawBufferPointer(rebasing: $0[got...]))
        }
        guard n > 0 else { throw CKError(.failed, "\(name) ended in the middle of the bundle") }
        got += n
      }
      frame = Int(UInt32(header[0]) | UInt32(header[1]) << 8 | UInt32(header[2]) << 16 | UInt32(header[3]) << 24)
      guard frame > 0 else {
        left = nil
        return 0
      }
    }
    let n = try readRaw(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, frame)]))
    guard n > 0 else { throw CKError(.failed, "\(name) ended in the middle of the bundle") }
    left = frame - n
    return n
  }

  private func readRaw(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    try syscallChecked("read", name) { Glibc.read(fd, buffer.baseAddress, buffer.count) }
  }
}

/// A bundle file mapped whole (read-only, shared): member data is hashed and used where it
/// lies in the page cache, with no copy. Each chunk taken is faulted in first, in one call
/// (MADV_POPULATE_READ), so that hashing it does not fault page by page.
public final class MappedFileSource: MappedByteSource {
  public let bytes: UnsafeRawBufferPointer
  let name: String
  private var position = 0

  /// Maps the file open at `fd` (which may be closed afterwards), as large as it is now.
  public init(fd: Int32, name: String) throws {
    self.name = name
    var st = stat()
    try syscallChecked("fstat", name) { fstat(fd, &st) }
    let size = Int(st.st_size)
    guard size > 0 else {
      bytes = UnsafeRawBufferPointer(start: nil, count: 0)
      return
    }
    guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
      throw SyscallError("mmap", name, .init(rawValue: errno))
    }
    bytes = UnsafeRawBufferPointer(start: mapped, count: size)
  }

  deinit {
    if let base = bytes.baseAddress { munmap(UnsafeMutableRawPointer(mutating: base), bytes.count) }
  }

  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let chunk = try borrow(upTo: buffer.count)
    if !chunk.isEmpty { buffer.copyMemory(from: chunk) }
    return chunk.count
  }

  public func borrow(upTo limit: Int) throws -> UnsafeRawBufferPointer {
    let take = min(limit, bytes.count - position)
    guard take > 0, let base = bytes.baseAddress else { return UnsafeRawBufferPointer(start: nil, count: 0) }
    let chunk = UnsafeRawBufferPointer(start: base + position, count: take)
    position += take
    if take >= 1 << 20 {
      // Page-aligned, as madvise wants; failure only means faults later.
      let first = (position - take) & ~4095
      _ = madvise(UnsafeMutableRawPointer(mutating: base + first), position - first, MADV_POPULATE_READ)
    }
    return chunk
  }
}

/// The host's kernel release (uname -r).
func kernelRelease() -> String {
  var names = utsname()
  uname(&names)
  return withUnsafeBytes(of: names.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}
