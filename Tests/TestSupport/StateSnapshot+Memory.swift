import CKShim
import CXXHash
import Foundation
import Glibc

/// A mapping as /proc/<pid>/smaps shows it.
struct SnapshotMapping {
  var start: UInt64
  var end: UInt64
  var perms: String
  var offset: String
  var path: String
  var flags = ""

  var pages: Int { Int((end - start) / pageSize) }
  var isReadable: Bool { perms.hasPrefix("r") }
  var isPrivate: Bool { perms.hasSuffix("p") }
  /// Private anonymous memory: a page not present reads as zeros.
  var isAnonymousPrivate: Bool {
    isPrivate && (path.isEmpty || path == "[heap]" || path == "[stack]" || path.hasPrefix("[anon:"))
  }
  var range: String { "\(hex(start))-\(hex(end))" }
}

let pageSize = UInt64(sysconf(Int32(_SC_PAGESIZE)))

func hex(_ value: UInt64) -> String { "0x" + String(value, radix: 16) }

extension StateSnapshot {
  /// pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
  private static let present: UInt64 = 1 << 63
  private static let swapped: UInt64 = 1 << 62
  private static let fileOrShared: UInt64 = 1 << 61
  private static let frameMask: UInt64 = (1 << 55) - 1

  mutating func readMemory(_ tasks: SnapshotTasks, rseq: [Int32: [UInt64]]) {
    // Frame -> the (task, address) pairs mapping it privately, over all tasks.
    var frames: [UInt64: [(pid: Int32, address: UInt64)]] = [:]
    var buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 256 * Int(pageSize), alignment: Int(pageSize))
    defer { buffer.deallocate() }
    let zeroDigest = [UInt8](repeating: 0, count: Int(pageSize)).withUnsafeBytes {
      XXH3_64bits($0.baseAddress, $0.count)
    }
    for task in tasks.tasks where !task.isZombie {
      let mappings = Self.mappings(task.hostPid)
      let pagemap = open("/proc/\(task.hostPid)/pagemap", O_RDONLY | O_CLOEXEC)
      let memory = open("/proc/\(task.hostPid)/mem", O_RDONLY | O_CLOEXEC)
      defer {
        if pagemap >= 0 { close(pagemap) }
        if memory >= 0 { close(memory) }
      }
      for mapping in mappings {
        let subject = "\(task.name) map \(mapping.range)"
        record(subject, "mapping", "\(mapping.perms) \(mapping.offset) \(mapping.path)")
        record(subject, "VmFlags", mapping.flags)
        guard mapping.isReadable, !IgnoredState.unhashedMappings.contains(mapping.path) else { continue }
        var entries = [UInt64](repeating: 0, count: mapping.pages)
        let wanted = entries.count * 8
        let got = entries.withUnsafeMutableBytes {
          pread(pagemap, $0.baseAddress, wanted, off_t(mapping.start / pageSize * 8))
        }
        if got != wanted { record(subject, "pagemap", "(unreadable)") }
        if mapping.isPrivate {
          for (index, entry) in entries.enumerated()
          where entry & Self.present != 0 && entry & Self.fileOrShared == 0 && entry & Self.frameMask != 0 {
            frames[entry & Self.frameMask, default: []].append((task.pid, mapping.start + UInt64(index) * pageSize))
          }
        }
        let (value, digests) = Self.contents(
          of: mapping, memory: memory, pagemap: entries, rseq: rseq[task.hostPid] ?? [], buffer: &buffer,
          zeroDigest: zeroDigest)
        record(subject, "contents", value)
        pageDigests["\(subject): contents"] = digests
        if mapping.isPrivate, mapping.perms.hasPrefix("rw"), mapping.end - mapping.start <= 1 << 20 {
          mappingBytes["\(subject): contents"] = Self.bytes(of: mapping, memory: memory, rseq: rseq[task.hostPid] ?? [])
        }
      }
    }
    recordSharedFrames(frames)
  }

  /// The mappings of `pid` with their VmFlags.
  static func mappings(_ pid: Int32) -> [SnapshotMapping] {
    var result: [SnapshotMapping] = []
    for line in (ProcFile.read("/proc/\(pid)/smaps") ?? "").split(separator: "\n") {
      if line.hasPrefix("VmFlags:") {
        result[result.count - 1].flags = line.dropFirst(8).trimmingCharacters(in: .whitespaces)
        continue
      }
      let fields = line.split(separator: " ", maxSplits: 5, omittingEmptySubsequences: true)
      guard fields.count >= 5, let dash = fields[0].firstIndex(of: "-"),
        let start = UInt64(fields[0][..<dash], radix: 16),
        let end = UInt64(fields[0][fields[0].index(after: dash)...], radix: 16)
      else { continue }
      let path = fields.count > 5 ? fields[5].trimmingCharacters(in: .whitespaces) : ""
      result.append(
        SnapshotMapping(start: start, end: end, perms: String(fields[1]), offset: String(fields[2]), path: path))
    }
    return result
  }

  /// XXH3 of the pages' XXH3s, read from /proc/<pid>/mem in runs of up to 256 pages: a
  /// private anonymous page that is neither present nor swapped is zeros without reading it
  /// (a thread's untouched 8 MiB stack costs nothing), a page that cannot be read (beyond a
  /// file's end, a guard region) counts as unreadable. Not process_vm_readv: it pins the
  /// pages it reads (FOLL_PIN), and the kernel gives a pinned anonymous page shared since a
  /// fork a copy of its own first, so reading would break the very copy-on-write sharing
  /// the snapshot compares; /proc/<pid>/mem reads without pinning.
  static func contents(
    of mapping: SnapshotMapping, memory: Int32, pagemap: [UInt64], rseq: [UInt64],
    buffer: inout UnsafeMutableRawBufferPointer,
    zeroDigest: UInt64
  ) -> (String, [UInt64]) {
    let unreadableDigest: UInt64 = 1
    var digests = [UInt64](repeating: zeroDigest, count: mapping.pages)
    var unreadable: [Int] = []
    let chunkPages = buffer.count / Int(pageSize)
    var page = 0
    while page < mapping.pages {
      if mapping.isAnonymousPrivate && page < pagemap.count && pagemap[page] & (present | swapped) == 0 {
        page += 1
        continue
      }
      var count = 1
      while count < chunkPages && page + count < mapping.pages
        && !(mapping.isAnonymousPrivate && page + count < pagemap.count
          && pagemap[page + count] & (present | swapped) == 0)
      {
        count += 1
      }
      let read = pread(
        memory, buffer.baseAddress, count * Int(pageSize), off_t(mapping.start + UInt64(page) * pageSize))
      let readPages = read > 0 ? read / Int(pageSize) : 0
      let chunkStart = mapping.start + UInt64(page) * pageSize
      for area in rseq where area >= chunkStart && area + 32 <= chunkStart + UInt64(readPages) * pageSize {
        for word in RseqAreas.rewrittenWords {
          buffer.storeBytes(of: UInt32(0), toByteOffset: Int(area - chunkStart) + word, as: UInt32.self)
        }
      }
      for index in 0..<readPages {
        digests[page + index] = XXH3_64bits(buffer.baseAddress! + index * Int(pageSize), Int(pageSize))
      }
      page += readPages
      if readPages < count {
        digests[page] = unreadableDigest
        unreadable.append(page)
        page += 1
      }
    }
    let digest = digests.withUnsafeBytes { XXH3_64bits($0.baseAddress, $0.count) }
    var value = String(digest, radix: 16)
    if !unreadable.isEmpty {
      value += ", \(unreadable.count) pages unreadable from +\(hex(UInt64(unreadable[0]) * pageSize))"
    }
    return (value, digests)
  }

  /// The bytes of a small mapping (unreadable pages as zeros), rseq words cleared.
  static func bytes(of mapping: SnapshotMapping, memory: Int32, rseq: [UInt64]) -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: Int(mapping.end - mapping.start))
    for page in 0..<mapping.pages {
      bytes.withUnsafeMutableBytes { buffer in
        _ = pread(
          memory, buffer.baseAddress! + page * Int(pageSize), Int(pageSize),
          off_t(mapping.start + UInt64(page) * pageSize))
      }
    }
    for area in rseq where area >= mapping.start && area + 32 <= mapping.end {
      for word in RseqAreas.rewrittenWords { for byte in 0..<4 { bytes[Int(area - mapping.start) + word + byte] = 0 } }
    }
    return bytes
  }

  /// Records which private anonymous pages share a frame with which others (copy on write
  /// after fork), as runs of consecutive pages that share with consecutive pages, named by
  /// their first member.
  mutating func recordSharedFrames(_ frames: [UInt64: [(pid: Int32, address: UInt64)]]) {
    let kpageflags = open("/proc/kpageflags", O_RDONLY | O_CLOEXEC)
    defer { if kpageflags >= 0 { close(kpageflags) } }
    let zeroPage: UInt64 = 1 << 24
    let ksm: UInt64 = 1 << 21
    var groups: [[(pid: Int32, address: UInt64)]] = []
    for (frame, members) in frames where members.count > 1 {
      var flags: UInt64 = 0
      _ = pread(kpageflags, &flags, 8, off_t(frame * 8))
      guard flags & (zeroPage | ksm) == 0 else { continue }
      groups.append(members.sorted { ($0.pid, $0.address) < ($1.pid, $1.address) })
    }
    groups.sort { ($0[0].pid, $0[0].address) < ($1[0].pid, $1[0].address) }
    // Runs: a group whose members are each one page after the previous group's.
    var runs: [(first: [(pid: Int32, address: UInt64)], pages: Int)] = []
    for group in groups {
      if let last = runs.last, last.first.count == group.count,
        zip(last.first, group).allSatisfy({
          $0.pid == $1.pid && $0.address + UInt64(last.pages) * pageSize == $1.address
        })
      {
        runs[runs.count - 1].pages += 1
      } else {
        runs.append((group, 1))
      }
    }
    for run in runs {
      let head = run.first[0]
      let others = run.first.dropFirst().map { "task \($0.pid) \(hex($0.address))" }.joined(separator: ", ")
      record("task \(head.pid) memory \(hex(head.address)) (\(run.pages) pages)", "shares frames with", others)
    }
  }
}
