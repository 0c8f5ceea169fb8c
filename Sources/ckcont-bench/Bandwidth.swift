// The machine's own bandwidths, the yardsticks of the memory benchmark: how fast this VM can
// read another process's memory, write and read the tmpfs, and copy memory, 1 GiB each.
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// GB/s (1e9 bytes per second) of each primitive a dump or restore is made of.
struct MachineBandwidth {
  /// process_vm_readv of a filled 1 GiB region of another process, 8 MiB per call, into one
  /// reused 8 MiB buffer (as the dump does).
  var readv = 0.0
  /// write(2) of a fresh 1 GiB file on the tmpfs, 8 MiB per call: the first time, then warm
  /// (best of 3, each on the pages the previous file freed).
  var writeFirst = 0.0
  var writeWarm = 0.0
  /// read(2) of that 1 GiB file back, 8 MiB per call (what a restore does with the bundle).
  var readFile = 0.0
  /// memcpy between two touched 1 GiB buffers.
  var memcpy = 0.0

  static let size = 1 << 30
  static let chunk = 8 << 20

  static func measure(bigmem: String, directory: String) throws -> MachineBandwidth {
    var result = MachineBandwidth()
    result.readv = try measureReadv(bigmem: bigmem, directory: directory)
    (result.writeFirst, result.writeWarm, result.readFile) = try measureTmpfs(directory: directory)
    result.memcpy = measureMemcpy()
    return result
  }

  func print() {
    Swift.print("machine bandwidths (GB/s, 1 GiB each, 8 MiB per call):")
    Swift.print(String(format: "  process_vm_readv from another process   %6.2f", readv))
    Swift.print(String(format: "  tmpfs write(2), first / warm             %6.2f / %.2f", writeFirst, writeWarm))
    Swift.print(String(format: "  tmpfs read(2)                            %6.2f", readFile))
    Swift.print(String(format: "  memcpy                                   %6.2f", memcpy))
  }

  static func gbps(_ seconds: Double) -> Double { Double(size) / seconds / 1e9 }

  /// Best of `runs` timings of `body`.
  static func best(_ runs: Int, _ body: () throws -> Void) rethrows -> Double {
    var best = Double.infinity
    for _ in 0..<runs {
      let start = monotonicNow()
      try body()
      best = min(best, monotonicNow() - start)
    }
    return best
  }

  /// An 8 MiB buffer, touched and filled with non-zero bytes.
  static func chunkBuffer() -> UnsafeMutableRawPointer {
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: chunk, alignment: 4096)
    memset(buffer, 0x5a, chunk)
    return buffer
  }

  static func measureReadv(bigmem: String, directory: String) throws -> Double {
    let log = "/tmp/ckcont-bench-\(getpid())-readv.log"
    defer { unlink(log) }
    let child = try Child([bigmem, "\(size >> 20)"], stdout: log)
    defer {
      kill(child.pid, SIGKILL)
      _ = try? child.wait(timeout: 30)
    }
    try waitForLine("ready", in: log, of: child.pid, timeout: 120)
    // bigmem's region is the one mapping of at least 1 GiB.
    guard let region = try ProcMaps.read(pid: child.pid).first(where: { $0.size >= UInt64(size) }) else {
      throw CKError(.failed, "bigmem has no 1 GiB mapping")
    }
    let buffer = chunkBuffer()
    defer { buffer.deallocate() }
    let seconds = try best(3) {
      var offset = 0
      while offset < size {
        var local = iovec(iov_base: buffer, iov_len: chunk)
        var remote = iovec(
          iov_base: UnsafeMutableRawPointer(bitPattern: UInt(region.start) + UInt(offset)), iov_len: chunk)
        let n = ck_process_vm_readv(child.pid, &local, 1, &remote, 1)
        guard n == chunk else { throw CKError(.failed, "process_vm_readv(\(child.pid)) returned \(n), errno \(errno)") }
        offset += chunk
      }
    }
    return gbps(seconds)
  }

  static func measureTmpfs(directory: String) throws -> (first: Double, warm: Double, read: Double) {
    let path = "\(directory)/ckcont-bench-\(getpid())-write"
    defer { unlink(path) }
    let buffer = chunkBuffer()
    defer { buffer.deallocate() }
    func writeFile() throws {
      unlink(path)
      guard let file = OwnedDescriptor(adoptingValid: open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o600)) else {
        throw CKError(.failed, "open \(path): \(String(cString: strerror(errno)))")
      }
      var done = 0
      while done < size {
        let n = write(file.raw, buffer, chunk)
        guard n == chunk else { throw CKError(.failed, "write \(path): \(String(cString: strerror(errno)))") }
        done += n
      }
    }
    let first = try best(1, writeFile)
    let warm = try best(3, writeFile)
    let read = try best(3) {
      guard let file = OwnedDescriptor(adoptingValid: open(path, O_RDONLY)) else {
        throw CKError(.failed, "open \(path): \(String(cString: strerror(errno)))")
      }
      var done = 0
      while done < size {
        let n = Glibc.read(file.raw, buffer, chunk)
        guard n == chunk else { throw CKError(.failed, "read \(path): \(String(cString: strerror(errno)))") }
        done += n
      }
    }
    return (gbps(first), gbps(warm), gbps(read))
  }

  static func measureMemcpy() -> Double {
    let source = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    let destination = UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 4096)
    defer {
      source.deallocate()
      destination.deallocate()
    }
    memset(source, 0x5a, size)
    memset(destination, 0, size)
    return gbps(best(3) { Glibc.memcpy(destination, source, size) })
  }
}
