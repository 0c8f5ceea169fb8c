import Bundle
import Glibc
import Linux

/// A bundle written to a file descriptor (a file, stdout, a pipe), in large writes.
public final class FileDescriptorSink: ByteSink {
  public let fd: Int32
  let name: String
  public private(set) var bytesWritten = 0

  public init(fd: Int32, name: String) {
    self.fd = fd
    self.name = name
  }

  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    var done = 0
    while done < bytes.count {
      let n = try syscallChecked("write", name) { Glibc.write(fd, bytes.baseAddress! + done, bytes.count - done) }
      done += n
    }
    bytesWritten += bytes.count
  }
}

/// A bundle read from a file descriptor.
public final class FileDescriptorSource: ByteSource {
  public let fd: Int32
  let name: String

  public init(fd: Int32, name: String) {
    self.fd = fd
    self.name = name
  }

  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
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
      _ = madvise(UnsafeMutableRawPointer(mutating: base + first), position - first, 22 /* MADV_POPULATE_READ */)
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
