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

/// The host's kernel release (uname -r).
func kernelRelease() -> String {
  var names = utsname()
  uname(&names)
  return withUnsafeBytes(of: names.release) { String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self) }
}
