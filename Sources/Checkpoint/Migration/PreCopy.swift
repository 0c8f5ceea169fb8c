import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// The source side of a pre-copy migration: dirty tracking of the running container
/// without soft-dirty (DESIGN.md 3, "Dirty tracking without soft-dirty"), page rounds, and
/// at the final dump the pages the receiver holds as they still are.
///
/// - ``start(cgroup:freezeTimeout:log:)`` freezes the container a moment: in each process a
///   remote `userfaultfd`, taken into ckcont (pidfd_getfd) and closed there; through it the
///   private anonymous mappings are registered for asynchronous write-protection and
///   write-protected. The container runs on, unaware: a write only clears the page's
///   write-protect bit.
/// - ``round(first:send:)``, the container running: the first sends every page holding
///   data; later ones only the pages written since the one before (PAGEMAP_SCAN finds them
///   and protects them again in one call). Each sent page's pagemap entry (its frame) is
///   noted before its bytes are read.
/// - ``trustedRuns(hostPid:)``, the container frozen for the final dump: a sent page is
///   still valid when it is still write-protected (not written since it was read) and on
///   the same frame (not moved by mremap, dropped and faulted anew, or copied). Everything
///   else goes in the final bundle. Mappings made after the start are not tracked: they go
///   whole in the final bundle.
final class PreCopy {
  /// One process tracked.
  struct Tracked {
    let hostPid: Int32
    /// Its pid in the container (what the bundle and the receiver know it by).
    let innerPid: Int32
    /// /proc stat's start time: the same process at the end, not one that got its pid.
    let startTime: UInt64
    let uffd: Int32
    /// The registered mappings.
    let areas: [AddressRange]
    /// Each sent page's pagemap entry when it was read (present or swapped bits and the
    /// frame), by area and page index; 0 for a page not sent. Arrays, not a dictionary by
    /// address: the final dump compares every page of the container while it is frozen
    /// (1 GiB: 262,144 pages, ~2 ms this way, ~40 ms through a dictionary).
    var sent: [[UInt64]]

    init(hostPid: Int32, innerPid: Int32, startTime: UInt64, uffd: Int32, areas: [AddressRange]) {
      self.hostPid = hostPid
      self.innerPid = innerPid
      self.startTime = startTime
      self.uffd = uffd
      self.areas = areas
      sent = areas.map { [UInt64](repeating: 0, count: Int(($0.end - $0.start) / PreCopy.pageSize)) }
    }
  }

  private(set) var tracked: [Tracked] = []
  let log: Logger
  static let pageSize: UInt64 = 4096
  /// pagemap bits (Documentation/admin-guide/mm/pagemap.rst).
  static let pagemapPresent: UInt64 = 1 << 63
  static let pagemapSwapped: UInt64 = 1 << 62
  static let pagemapWriteProtected: UInt64 = 1 << 57
  static let pagemapFrame: UInt64 = (1 << 55) - 1
  /// What must match between the entry at send time and at the end.
  static let pagemapIdentity: UInt64 = pagemapPresent | pagemapSwapped | pagemapFrame

  private init(log: Logger) { self.log = log }

  deinit { stop() }

  /// Closes the userfaultfds: the mappings are unregistered, the processes untouched.
  func stop() {
    for process in tracked { close(process.uffd) }
    tracked = []
  }

  /// Sets up tracking in every process of `cgroup`'s subtree (a short freeze).
  static func start(cgroup: Cgroup, freezeTimeout: Double, log: Logger) throws -> PreCopy {
    let precopy = PreCopy(log: log)
    let session = try SeizedContainer(cgroup: cgroup, freezeTimeout: freezeTimeout, log: log)
    defer { session.release(leaveFrozen: false) }
    let statuses = try session.processes.map { try ProcStatus.read(pid: $0.pid) }
    let level = statuses.map(\.nsPid.count).min() ?? 1
    for (process, status) in zip(session.processes, statuses) {
      guard try session.abi(ofPid: process.pid) != .i386, let gadget = session.park(of: process.pid),
        let startTime = ProcStat.read(pid: process.pid)?.startTime, status.nsPid.count >= level
      else { continue }
      guard let uffd = try precopy.injectUserfaultfd(process.pid, gadget: gadget) else { continue }
      var areas: [AddressRange] = []
      for vma in try ProcMaps.read(pid: process.pid) where Self.isTracked(vma) {
        let length = vma.end - vma.start
        guard ck_uffd_register_wp(uffd, vma.start, length) == 0, ck_uffd_writeprotect(uffd, vma.start, length) == 0
        else { continue }
        areas.append(AddressRange(start: vma.start, end: vma.end))
      }
      precopy.tracked.append(
        Tracked(
          hostPid: process.pid, innerPid: status.nsPid[level - 1], startTime: startTime, uffd: uffd, areas: areas))
    }
    log.debug("pre-copy: tracking \(precopy.tracked.count) processes")
    return precopy
  }

  /// Private anonymous memory: what a program writes; files and shared memory go whole.
  private static func isTracked(_ vma: VMA) -> Bool {
    guard !vma.permissions.contains(.shared), !MemoryCapture.isPrivateHugeTLB(vma) else { return false }
    switch vma.kind {
    case .anonymous, .anonymousNamed, .heap, .stack: return true
    default: return false
    }
  }

  /// A userfaultfd of process `pid`'s address space, with asynchronous write-protection of
  /// unpopulated pages too; nil when the kernel refuses it here (the process goes whole).
  private func injectUserfaultfd(_ pid: Int32, gadget: UInt64) throws -> Int32? {
    let tracee = Tracee(tid: pid)
    let mask = try tracee.signalMask()
    try tracee.setSignalMask(~0)
    defer { try? tracee.setSignalMask(mask) }
    var remote = try RemoteSyscall(tracee: tracee, gadget: .singleStep(address: gadget))
    defer { try? remote.restoreRegisters() }
    let flags = O_CLOEXEC | O_NONBLOCK | Int32(CK_UFFD_USER_MODE_ONLY)
    let remoteFd = try remote.call(.userfaultfd(flags))
    guard remoteFd >= 0 else {
      log.debug("pre-copy: task \(pid): userfaultfd: \(String(cString: strerror(Int32(-remoteFd))))")
      return nil
    }
    let ours = try? OwnedDescriptor(copying: Int32(remoteFd), ofProcess: pid)
    _ = try remote.call(.close(Int32(remoteFd)))
    guard let ours else { return nil }
    let features = UInt64(CK_UFFD_FEATURE_WP_ASYNC | CK_UFFD_FEATURE_WP_UNPOPULATED)
    guard ck_uffd_api_features(ours.raw, features) == 0 else { return nil }
    return ours.take()
  }

  // MARK: Rounds

  /// Largest batch of consecutive pages read and sent at once.
  static let batchPages: UInt64 = 256

  /// One round, the container running: its pages (all at the first round, those written
  /// since at later ones) handed to `send` in batches of consecutive pages (the process's
  /// pid inside, the first address, the bytes). Returns the bytes sent.
  func round(first: Bool, send: (Int32, UInt64, UnsafeRawBufferPointer) throws -> Void) throws -> Int {
    var total = 0
    let buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: Int(Self.batchPages * Self.pageSize), alignment: Int(Self.pageSize))
    defer { buffer.deallocate() }
    for index in tracked.indices {
      let pid = tracked[index].hostPid
      guard ProcStat.read(pid: pid)?.startTime == tracked[index].startTime else { continue }
      var scanner = try PageScanner(pid: pid)
      let pagemap = try OwnedDescriptor(opening: "/proc/\(pid)/pagemap", flags: O_RDONLY | O_CLOEXEC)
      for (areaIndex, area) in tracked[index].areas.enumerated() {
        // Written pages that hold no data (dropped since) are not read: reading would
        // fault them in.
        let data = try scanner.dataRuns(start: area.start, end: area.end, anonymousOnly: false)
        let runs = first ? data : Self.intersect(try scanner.writtenRuns(start: area.start, end: area.end), data)
        for run in runs {
          var start = run.start
          while start < run.end {
            let end = min(run.end, start + Self.batchPages * Self.pageSize)
            let count = Int((end - start) / Self.pageSize)
            let entries = try Self.pagemapEntries(pagemap.raw, start: start, count: count, pid: pid)
            let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * Int(Self.pageSize)])
            do {
              try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: start, end: end)], into: bytes)
            } catch {
              // Unmapped meanwhile: the final bundle has what is there then.
              start = end
              continue
            }
            let first = Int((start - area.start) / Self.pageSize)
            tracked[index].sent[areaIndex].withUnsafeMutableBufferPointer { sent in
              for page in 0..<count { sent[first + page] = entries[page] & Self.pagemapIdentity }
            }
            try send(tracked[index].innerPid, start, UnsafeRawBufferPointer(bytes))
            total += bytes.count
            start = end
          }
        }
      }
    }
    return total
  }

  /// The runs of process `hostPid`'s pages (frozen) the receiver holds as they are now:
  /// sent, not written since, on the same frame.
  func trustedRuns(hostPid: Int32) throws -> [AddressRange] {
    guard let process = tracked.first(where: { $0.hostPid == hostPid }),
      ProcStat.read(pid: hostPid)?.startTime == process.startTime
    else { return [] }
    let pagemap = try OwnedDescriptor(opening: "/proc/\(hostPid)/pagemap", flags: O_RDONLY | O_CLOEXEC)
    var runs: [AddressRange] = []
    for (area, sent) in zip(process.areas, process.sent) {
      let entries = try Self.pagemapEntries(pagemap.raw, start: area.start, count: sent.count, pid: hostPid)
      for page in 0..<sent.count {
        let address = area.start + UInt64(page) * Self.pageSize
        let entry = entries[page]
        let noted = sent[page]
        guard entry & Self.pagemapWriteProtected != 0, entry & Self.pagemapIdentity == noted,
          noted & (Self.pagemapPresent | Self.pagemapSwapped) != 0
        else { continue }
        if let last = runs.last, last.end == address {
          runs[runs.count - 1].end = address + Self.pageSize
        } else {
          runs.append(AddressRange(start: address, end: address + Self.pageSize))
        }
      }
    }
    return runs
  }

  /// `count` pagemap entries from `start` on.
  private static func pagemapEntries(_ fd: Int32, start: UInt64, count: Int, pid: Int32) throws -> [UInt64] {
    var entries = [UInt64](repeating: 0, count: count)
    let offset = off_t(start / pageSize * 8)
    let read = entries.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
    guard read >= 0 else { throw SyscallError("pread", "/proc/\(pid)/pagemap", .init(rawValue: errno)) }
    return entries
  }

  /// The parts of `a` that lie in `b` (both sorted, disjoint).
  static func intersect(_ a: [AddressRange], _ b: [AddressRange]) -> [AddressRange] {
    var result: [AddressRange] = []
    var j = 0
    for range in a {
      while j < b.count && b[j].end <= range.start { j += 1 }
      var k = j
      while k < b.count && b[k].start < range.end {
        let start = max(range.start, b[k].start)
        let end = min(range.end, b[k].end)
        if start < end { result.append(AddressRange(start: start, end: end)) }
        k += 1
      }
    }
    return result
  }
}
