import CKShim
import Glibc
import SystemPackage

/// A range of addresses in another process.
public struct AddressRange: Codable, Equatable, Hashable, Sendable {
  public var start: UInt64
  public var end: UInt64
  public init(start: UInt64, end: UInt64) {
    self.start = start
    self.end = end
  }
  public var count: UInt64 { end - start }
}

/// Reading and writing the memory of another process.
public enum ProcessMemory {
  /// Copies the bytes of `ranges` of `pid`, in order, into `buffer` (whose size must be their
  /// total) with process_vm_readv, up to 1024 remote iovecs per call.
  public static func read(pid: Int32, ranges: [AddressRange], into buffer: UnsafeMutableRawBufferPointer) throws {
    guard let local = buffer.baseAddress else { return }
    try transfer(pid: pid, ranges: ranges[...], local: local, write: false)
  }

  /// Copies `local` (the total size of `ranges`) into `ranges` of `pid`, in order, with
  /// process_vm_writev: the mappings must be writable.
  public static func write(pid: Int32, ranges: ArraySlice<AddressRange>, from local: UnsafeRawPointer) throws {
    try transfer(pid: pid, ranges: ranges, local: UnsafeMutableRawPointer(mutating: local), write: true)
  }

  /// process_vm_readv or process_vm_writev between one local buffer and many remote ranges,
  /// 1024 remote iovecs per call, resuming after partial transfers.
  public static func transfer(
    pid: Int32, ranges: ArraySlice<AddressRange>, local buffer: UnsafeMutableRawPointer, write: Bool
  ) throws {
    let name = write ? "process_vm_writev" : "process_vm_readv"
    var remote: [iovec] = []
    remote.reserveCapacity(min(ranges.count, 1024))
    var offset = 0
    var index = ranges.startIndex
    while index < ranges.endIndex {
      remote.removeAll(keepingCapacity: true)
      var batchBytes = 0
      while index < ranges.endIndex && remote.count < 1024 {
        let range = ranges[index]
        remote.append(
          iovec(iov_base: UnsafeMutableRawPointer(bitPattern: UInt(range.start)), iov_len: Int(range.count)))
        batchBytes += Int(range.count)
        index += 1
      }
      var done = 0
      var remoteIndex = 0
      while done < batchBytes {
        var local = iovec(iov_base: buffer + offset + done, iov_len: batchBytes - done)
        let n = try remote.withUnsafeBufferPointer { iovs in
          try syscallChecked(
            name,
            "\(pid), \(iovs.count - remoteIndex) ranges from 0x\(String(UInt(bitPattern: iovs[remoteIndex].iov_base), radix: 16))"
          ) {
            let rest = iovs.baseAddress.map { $0 + remoteIndex }
            return write
              ? ck_process_vm_writev(pid, &local, 1, rest, UInt(iovs.count - remoteIndex))
              : ck_process_vm_readv(pid, &local, 1, rest, UInt(iovs.count - remoteIndex))
          }
        }
        guard n > 0 else {
          let at = String(UInt(bitPattern: remote[remoteIndex].iov_base), radix: 16)
          throw CKError(.failed, "\(name)(\(pid)) copied nothing at 0x\(at)")
        }
        done += n
        // A partial copy stops at an iovec boundary or inside one: skip what was copied.
        var consumed = n
        while consumed > 0 && remoteIndex < remote.count {
          let length = remote[remoteIndex].iov_len
          if consumed >= length {
            consumed -= length
            remoteIndex += 1
          } else {
            remote[remoteIndex].iov_base = remote[remoteIndex].iov_base.map { $0 + consumed }
            remote[remoteIndex].iov_len -= consumed
            consumed = 0
          }
        }
      }
      offset += batchBytes
    }
  }
}

extension ProcessMemory {
  /// Copies `bytes` to `address` in `pid` with process_vm_writev (writable mappings only).
  public static func write(pid: Int32, bytes: UnsafeRawBufferPointer, at address: UInt64) throws {
    guard let base = bytes.baseAddress else { return }
    var done = 0
    while done < bytes.count {
      var local = iovec(iov_base: UnsafeMutableRawPointer(mutating: base + done), iov_len: bytes.count - done)
      var remote = iovec(
        iov_base: UnsafeMutableRawPointer(bitPattern: UInt(address + UInt64(done))), iov_len: bytes.count - done)
      let n = try syscallChecked("process_vm_writev", "\(pid) at 0x\(String(address + UInt64(done), radix: 16))") {
        ck_process_vm_writev(pid, &local, 1, &remote, 1)
      }
      guard n > 0 else { throw SyscallError("process_vm_writev", "\(pid)", .ioError) }
      done += n
    }
  }
}

/// `/proc/<pid>/mem` opened for writing: pwrite works on read-only mappings too (the kernel
/// writes with FOLL_FORCE), where process_vm_writev fails with EFAULT.
public struct MemFile: ~Copyable {
  public let pid: Int32
  let fd: Int32

  public init(pid: Int32, readOnly: Bool = false) throws(SyscallError) {
    self.pid = pid
    fd = try syscallChecked("open", "/proc/\(pid)/mem") {
      open("/proc/\(pid)/mem", (readOnly ? O_RDONLY : O_RDWR) | O_CLOEXEC)
    }
  }

  deinit { close(fd) }

  /// Writes `bytes` at `address` in the process.
  public func write(_ bytes: UnsafeRawBufferPointer, at address: UInt64) throws(SyscallError) {
    // /proc/<pid>/mem answers EIO, never 0, where nothing could be written.
    try writeAll(fd, bytes, atOffset: Int64(bitPattern: address), "/proc/\(pid)/mem")
  }

  /// Writes an array's bytes at `address`.
  public func write(_ bytes: [UInt8], at address: UInt64) throws {
    try bytes.withUnsafeBytes { try write($0, at: address) }
  }

  /// Reads `count` bytes at `address`.
  public func read(_ count: Int, at address: UInt64) throws(SyscallError) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    let n = try syscallChecked("pread", "/proc/\(pid)/mem at 0x\(String(address, radix: 16))") {
      bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, count, Int(bitPattern: UInt(address))) }
    }
    return Array(bytes.prefix(n))
  }
}
