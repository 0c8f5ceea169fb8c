import CKShim
import Glibc

/// The PAGEMAP_SCAN ioctl on `/proc/<pid>/pagemap` (Linux 6.7): finds the pages of a range
/// that match page categories, in one call for many pages instead of a read per page.
public struct PageScanner: ~Copyable {
  public let pid: Int32
  let fd: Int32
  var regions: [ck_page_region]

  public init(pid: Int32) throws(SyscallError) {
    self.pid = pid
    fd = try syscallChecked("open", "/proc/\(pid)/pagemap") { open("/proc/\(pid)/pagemap", O_RDONLY | O_CLOEXEC) }
    regions = [ck_page_region](repeating: ck_page_region(), count: 4096)
  }

  deinit { close(fd) }

  /// ``dataRuns(start:end:anonymousOnly:)`` of several areas in address order, each
  /// `anonymousOnly` alike, in one scan across them all (one ioctl for thousands of small
  /// mappings instead of one each): runs are split at the areas' bounds, and what lies
  /// between areas is left out.
  public mutating func dataRuns(of areas: [AddressRange], anonymousOnly: Bool) throws -> [[AddressRange]] {
    guard let first = areas.first, let last = areas.last else { return [] }
    let runs = try dataRuns(start: first.start, end: last.end, anonymousOnly: anonymousOnly)
    var result: [[AddressRange]] = Array(repeating: [], count: areas.count)
    var area = 0
    for run in runs {
      var start = run.start
      while start < run.end && area < areas.count {
        if areas[area].end <= start {
          area += 1
          continue
        }
        let end = min(run.end, areas[area].end)
        let clipped = max(start, areas[area].start)
        if clipped < end { result[area].append(AddressRange(start: clipped, end: end)) }
        start = end
      }
    }
    return result
  }

  /// Runs of guard pages (MADV_GUARD_INSTALL) in [start, end).
  public mutating func guardRuns(start: UInt64, end: UInt64) throws -> [AddressRange] {
    try runs(
      start: start, end: end, inverted: 0, mask: UInt64(CK_PAGE_IS_GUARD), anyOf: 0, returned: UInt64(CK_PAGE_IS_GUARD))
  }

  /// Runs of pages in [start, end) that hold data worth saving: present or swapped, not the
  /// shared zero page, and with `anonymousOnly` not the file's own page cache page (for
  /// private file mappings only the copied-on-write pages differ from the file).
  public mutating func dataRuns(start: UInt64, end: UInt64, anonymousOnly: Bool) throws -> [AddressRange] {
    let fileOrZero = UInt64(CK_PAGE_IS_PFNZERO | (anonymousOnly ? CK_PAGE_IS_FILE : 0))
    return try runs(
      start: start, end: end, inverted: fileOrZero, mask: fileOrZero,
      anyOf: UInt64(CK_PAGE_IS_PRESENT | CK_PAGE_IS_SWAPPED),
      returned: UInt64(CK_PAGE_IS_PRESENT | CK_PAGE_IS_SWAPPED))
  }

  /// Runs of pages in [start, end), a range a userfaultfd tracks in asynchronous
  /// write-protect mode, written since they were last write-protected; they are
  /// write-protected again by the same call (PM_SCAN_WP_MATCHING), so that each write is
  /// found once.
  public mutating func writtenRuns(start: UInt64, end: UInt64) throws -> [AddressRange] {
    try runs(
      start: start, end: end, inverted: 0, mask: UInt64(CK_PAGE_IS_WRITTEN), anyOf: 0,
      returned: UInt64(CK_PAGE_IS_WRITTEN), flags: UInt64(CK_PM_SCAN_WP_MATCHING | CK_PM_SCAN_CHECK_WPASYNC))
  }

  /// Runs of pages in [start, end) that PAGEMAP_SCAN's categories select.
  private mutating func runs(
    start: UInt64, end: UInt64, inverted: UInt64, mask: UInt64, anyOf: UInt64, returned: UInt64, flags: UInt64 = 0
  ) throws -> [AddressRange] {
    var runs: [AddressRange] = []
    var cursor = start
    while cursor < end {
      var arg = ck_pm_scan_arg()
      arg.size = UInt64(MemoryLayout<ck_pm_scan_arg>.size)
      arg.flags = flags
      arg.start = cursor
      arg.end = end
      arg.category_inverted = inverted
      arg.category_mask = mask
      arg.category_anyof_mask = anyOf
      arg.return_mask = returned
      let count = try regions.withUnsafeMutableBufferPointer { buffer in
        arg.vec = UInt64(UInt(bitPattern: buffer.baseAddress))
        arg.vec_len = UInt64(buffer.count)
        return try syscallChecked("ioctl", "PAGEMAP_SCAN of \(pid) at 0x\(String(cursor, radix: 16))") {
          ck_pagemap_scan(fd, &arg)
        }
      }
      for index in 0..<count {
        let region = regions[index]
        // Regions differing only in present/swapped come out separately: merge them.
        if let last = runs.last, last.end == region.start {
          runs[runs.count - 1].end = region.end
        } else {
          runs.append(AddressRange(start: region.start, end: region.end))
        }
      }
      // The kernel stops early when the vector is full (walk_end tells where); loop only
      // then, since walk_end may also stop short for other reasons.
      guard count == regions.count, arg.walk_end > cursor else { break }
      cursor = arg.walk_end
    }
    return runs
  }
}
