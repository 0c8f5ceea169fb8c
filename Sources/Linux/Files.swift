import CKShim
import Glibc
import SystemPackage

/// Small file helpers for the pseudo-filesystems (/proc, cgroupfs), whose files report
/// size 0 and must be read to EOF.
public enum PseudoFile {
  /// Reads the whole file at `path` as text.
  public static func read(_ path: String) throws(SyscallError) -> String {
    let bytes = try readBytes(path)
    return String(decoding: bytes, as: UTF8.self)
  }

  /// Reads a one-value file (a cgroup control file, a sysctl) without its trailing newline.
  public static func readValue(_ path: String) throws(SyscallError) -> String {
    var text = Substring(try read(path))
    while text.last == "\n" { text = text.dropLast() }
    return String(text)
  }

  /// Reads the whole file at `path`; nil when it does not exist.
  public static func readIfExists(_ path: String) throws(SyscallError) -> String? {
    do {
      return try read(path)
    } catch  where error.errno == .noSuchFileOrDirectory || error.errno == .noSuchProcess {
      return nil
    }
  }

  /// Reads the whole file at `path` as bytes.
  public static func readBytes(_ path: String) throws(SyscallError) -> [UInt8] {
    let file = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
    var result: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 16384)
    while true {
      let n = try syscallChecked("read", path) {
        chunk.withUnsafeMutableBytes { Glibc.read(file.raw, $0.baseAddress, $0.count) }
      }
      if n == 0 { break }
      result.append(contentsOf: chunk[0..<n])
    }
    return result
  }

  /// Writes `text` to `path` in one write(2), as cgroupfs and /proc control files expect.
  public static func write(_ path: String, _ text: String) throws(SyscallError) {
    let file = try OwnedDescriptor(opening: path, flags: O_WRONLY | O_CLOEXEC)
    var bytes = Array(text.utf8)
    try syscallChecked("write", "\(path) <- \(text.trimmingSuffixNewline)") {
      bytes.withUnsafeMutableBytes { Glibc.write(file.raw, $0.baseAddress, $0.count) }
    }
  }

  /// True when `path` exists (any file type).
  public static func exists(_ path: String) -> Bool {
    access(path, F_OK) == 0
  }

  /// True when `path` is a directory.
  public static func isDirectory(_ path: String) -> Bool {
    var st = stat()
    return stat(path, &st) == 0 && (st.st_mode & S_IFMT) == S_IFDIR
  }

  /// The names in a directory, without "." and "..".
  public static func list(_ path: String) throws(SyscallError) -> [String] {
    guard let dir = opendir(path) else {
      throw SyscallError("opendir", path, Errno(rawValue: errno))
    }
    defer { closedir(dir) }
    var names: [String] = []
    while let entry = readdir(dir) {
      let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
        String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
      }
      if name != "." && name != ".." { names.append(name) }
    }
    return names
  }
}

extension String {
  /// The text of a C buffer up to its first NUL (all of it when it has none), as UTF-8.
  public init(nulTerminated buffer: [CChar]) {
    self.init(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
  }

  var trimmingSuffixNewline: Substring {
    var s = self[...]
    while s.last == "\n" { s = s.dropLast() }
    return s
  }
}

/// Where a file holds data: lseek(2) with SEEK_DATA and SEEK_HOLE. On tmpfs (shared
/// anonymous memory and memfds are tmpfs files) that is every page allocated, in memory or
/// in swap, whoever wrote it.
public enum FileData {
  /// The ranges of [from, to) of the file open at `fd` that hold data, in order.
  public static func ranges(fd: Int32, from: UInt64, to: UInt64, name: String) throws(SyscallError) -> [AddressRange] {
    let seekData = Int32(CK_SEEK_DATA)
    let seekHole = Int32(CK_SEEK_HOLE)
    var ranges: [AddressRange] = []
    var cursor = from
    while cursor < to {
      let data = lseek(fd, off_t(cursor), seekData)
      if data < 0 {
        // ENXIO: no data from `cursor` to the end of the file.
        if errno == ENXIO { break }
        throw SyscallError("lseek(SEEK_DATA)", "\(name) at \(cursor)", Errno(rawValue: errno))
      }
      guard UInt64(data) < to else { break }
      let hole = lseek(fd, data, seekHole)
      guard hole >= 0 else { throw SyscallError("lseek(SEEK_HOLE)", "\(name) at \(data)", Errno(rawValue: errno)) }
      let end = min(UInt64(hole), to)
      ranges.append(AddressRange(start: UInt64(data), end: end))
      cursor = end
    }
    return ranges
  }
}

/// open(2) flags that Glibc's Swift overlay does not export (asm-generic/fcntl.h; checked
/// against it in CKShim's process.c).
public enum OpenFlags {
  /// O_PATH: a descriptor that only names a file.
  public static let path: Int32 = 0o10000000
  /// O_NOATIME: reads leave the access time alone.
  public static let noAccessTime: Int32 = 0o1000000
  /// __O_TMPFILE without O_DIRECTORY: what F_GETFL shows of O_TMPFILE.
  public static let temporaryFile: Int32 = 0o20000000
}

/// Writes every byte of `bytes` to `fd` (retrying short writes and EINTR, as swift-system's
/// `writeAll` does); an error names `call`, `subject` and how far it got.
public func writeAll(
  _ fd: Int32, _ bytes: UnsafeRawBufferPointer, call: String = "write", _ subject: @autoclosure () -> String
) throws(SyscallError) {
  do {
    _ = try FileDescriptor(rawValue: fd).writeAll(bytes)
  } catch let error as Errno {
    throw SyscallError(call, "\(subject()) (\(bytes.count) bytes)", error)
  } catch {
    throw SyscallError(call, subject(), .ioError)
  }
}

/// Writes every byte of `bytes` to `fd` at `offset` (pwrite, retried as ``writeAll(_:_:call:_:)``).
public func writeAll(
  _ fd: Int32, _ bytes: UnsafeRawBufferPointer, atOffset offset: Int64, _ subject: @autoclosure () -> String
) throws(SyscallError) {
  do {
    _ = try FileDescriptor(rawValue: fd).writeAll(toAbsoluteOffset: offset, bytes)
  } catch let error as Errno {
    throw SyscallError("pwrite", "\(subject()) at 0x\(String(UInt64(bitPattern: offset), radix: 16))", error)
  } catch {
    throw SyscallError("pwrite", subject(), .ioError)
  }
}
