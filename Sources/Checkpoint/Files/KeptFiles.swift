import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// Files ckcont makes again with their bytes (deleted files, memfds): their data extents only
// (a sparse file comes back sparse, SEEK_HOLE finds its holes again), then the owner, mode
// and times the program gave them, which making them as root under ckcont's umask lost.

/// What `readKept` found in a file.
struct KeptContents {
  var contents: Data
  var size: Int64?
  var extents: [FileExtent]?
  var attributes: FileAttributes
}

extension FileCapture {
  /// The data of the file open at `fd` in the task (SEEK_DATA/SEEK_HOLE), its size, owner,
  /// mode and times; up to 64 MiB of data, holes not counted.
  func readKept(fd: Int32, what: String) throws -> KeptContents {
    let path = "/proc/\(pid)/fd/\(fd)"
    // O_NOATIME: reading must not change the access time it saves (relatime would).
    let ours = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC | OpenFlags.noAccessTime)
    var status = stat()
    try syscallChecked("fstat", path) { fstat(ours.raw, &status) }
    let size = UInt64(status.st_size)
    let ranges = try FileData.ranges(fd: ours.raw, from: 0, to: size, name: what)
    let total = ranges.reduce(0) { $0 + Int($1.end - $1.start) }
    guard total <= 64 << 20 else {
      throw CKError(
        .failed, "task \(pid): fd \(fd) is \(what) holding \(total >> 20) MiB; ckcont saves such files up to 64 MiB",
        hint: "checkpoint it when the file holds less")
    }
    var contents = Data(count: total)
    var done = 0
    try contents.withUnsafeMutableBytes { buffer in
      for range in ranges {
        var offset = range.start
        while offset < range.end, let base = buffer.baseAddress {
          let n = try syscallChecked("pread", path) {
            pread(ours.raw, base + done, Int(range.end - offset), off_t(offset))
          }
          if n == 0 { break }
          done += n
          offset += UInt64(n)
        }
      }
    }
    let whole = ranges.count == 1 && ranges[0].start == 0 && ranges[0].end == size
    let attributes = FileAttributes(
      uid: status.st_uid, gid: status.st_gid, mode: status.st_mode & 0o7777,
      accessed: FileTime(seconds: Int64(status.st_atim.tv_sec), nanoseconds: Int64(status.st_atim.tv_nsec)),
      modified: FileTime(seconds: Int64(status.st_mtim.tv_sec), nanoseconds: Int64(status.st_mtim.tv_nsec)))
    return KeptContents(
      contents: contents.prefix(done), size: whole || size == 0 ? nil : Int64(size),
      extents: whole || ranges.isEmpty
        ? nil : ranges.map { FileExtent(offset: Int64($0.start), length: Int64($0.end - $0.start)) },
      attributes: attributes)
  }
}

extension FileBatch {
  /// Writes `kept` into `ours`, ckcont's copy of the new file: its size, then each extent
  /// where it was, holes left as holes.
  func fill(_ ours: Int32, with kept: some KeptFileContents, what: String) throws {
    try syscallChecked("ftruncate", what) { ftruncate(ours, off_t(kept.fileSize)) }
    guard let extents = kept.extents else {
      try write(kept.contents, to: ours, what: what)
      return
    }
    try kept.contents.withUnsafeBytes { bytes in
      var from = 0
      for extent in extents {
        var done = 0
        while done < Int(extent.length), let base = bytes.baseAddress {
          done += try syscallChecked("pwrite", what) {
            pwrite(ours, base + from + done, Int(extent.length) - done, off_t(extent.offset) + off_t(done))
          }
        }
        from += Int(extent.length)
      }
    }
  }

  /// Owner, mode and times of a file made again, through ckcont's copy `ours` (host ids):
  /// the mode after the owner (chown clears set-id bits), the times last (the rest changes
  /// only the inode's change time, which no call sets).
  func apply(_ attributes: FileAttributes, to ours: Int32, what: String) throws {
    try syscallChecked("fchown", what) { fchown(ours, attributes.uid, attributes.gid) }
    try syscallChecked("fchmod", what) { fchmod(ours, mode_t(attributes.mode)) }
    let times = [attributes.accessed, attributes.modified].map {
      timespec(tv_sec: Int($0.seconds), tv_nsec: Int($0.nanoseconds))
    }
    try syscallChecked("futimens", what) { futimens(ours, times) }
  }
}

extension FileBatch {
  /// Sets `attributes` on the file behind the task's `fd` once the batch ran and the file is
  /// filled; once per file (`key`), however many descriptors and processes hold it.
  func keepAttributes(_ attributes: FileAttributes, of key: String, at fd: Int64) {
    guard shared.attributed.insert(key).inserted else { return }
    after.attributes.append((fd, attributes, key))
  }
}
