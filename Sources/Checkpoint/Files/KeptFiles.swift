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
  /// Beyond ``KeptFiles/inlineLimit``: the member the dump streams the bytes into, from the
  /// file itself once the model is written (``KeptFileData``); `contents` is empty.
  var dataMember: String?
}

extension FileCapture {
  /// The data of the file open at `fd` in the task (SEEK_DATA/SEEK_HOLE), its size, owner,
  /// mode and times; more than ``KeptFiles/inlineLimit`` bytes go into a member of their
  /// own instead, read when the bundle is written.
  func readKept(fd: Int32, what: String) throws -> KeptContents {
    let path = "/proc/\(pid)/fd/\(fd)"
    // O_NOATIME: reading must not change the access time it saves (relatime would).
    let ours = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC | OpenFlags.noAccessTime)
    var status = stat()
    try syscallChecked("fstat", path) { fstat(ours.raw, &status) }
    let size = UInt64(status.st_size)
    let ranges = try FileData.ranges(fd: ours.raw, from: 0, to: size, name: what)
    let total = ranges.reduce(0) { $0 + Int($1.end - $1.start) }
    let whole = ranges.count == 1 && ranges[0].start == 0 && ranges[0].end == size
    let attributes = FileAttributes(
      uid: status.st_uid, gid: status.st_gid, mode: status.st_mode & 0o7777,
      accessed: FileTime(seconds: Int64(status.st_atim.tv_sec), nanoseconds: Int64(status.st_atim.tv_nsec)),
      modified: FileTime(seconds: Int64(status.st_mtim.tv_sec), nanoseconds: Int64(status.st_mtim.tv_nsec)))
    let extents =
      whole || ranges.isEmpty
      ? nil : ranges.map { FileExtent(offset: Int64($0.start), length: Int64($0.end - $0.start)) }
    if total > KeptFiles.inlineLimit {
      guard Int64(total) <= KeptFiles.memberLimit else {
        throw CKError(
          .failed, "task \(pid): fd \(fd) is \(what) holding \(total >> 30) GiB; ckcont saves such files up to 1 TiB",
          hint: "checkpoint it when the file holds less")
      }
      return KeptContents(
        contents: Data(), size: Int64(size), extents: extents, attributes: attributes,
        dataMember: KeptFiles.dataMember(device: UInt64(status.st_dev), inode: UInt64(status.st_ino)))
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
    return KeptContents(
      contents: contents.prefix(done), size: whole || size == 0 ? nil : Int64(size), extents: extents,
      attributes: attributes)
  }
}

extension FileBatch {
  /// Writes `kept` into `ours`, ckcont's copy of the new file: its size, then each extent
  /// where it was, holes left as holes.
  func fill(_ ours: Int32, with kept: some KeptFileContents, what: String) throws {
    try syscallChecked("ftruncate", what) { ftruncate(ours, off_t(kept.fileSize)) }
    let extents = kept.extents ?? [FileExtent(offset: 0, length: kept.storedLength)]
    guard let member = kept.dataMember else {
      try kept.contents.withUnsafeBytes { try Self.write($0, into: ours, at: extents, what: what) }
      return
    }
    // Checked with the bundle (LoadedBundle.keptData): there, of the length the model says.
    guard let bytes = shared.keptData[member], bytes.count == Int(kept.storedLength) else {
      throw CKError(.badInput, "the bundle lacks \(member), the bytes of \(what)")
    }
    try Self.write(bytes, into: ours, at: extents, what: what)
  }

  /// Writes `bytes`, each extent's one after the other, where each extent lies in `ours`.
  private static func write(_ bytes: UnsafeRawBufferPointer, into ours: Int32, at extents: [FileExtent], what: String)
    throws
  {
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

/// The bytes of a file kept in a member of its own (``KeptFiles``), streamed into the bundle
/// from the file itself, which the frozen container still holds open, after the model.
struct KeptFileData {
  let name: String
  let file: any KeptFileContents
  let hostPid: Int32
  let fd: Int32

  /// One per member, from the first descriptor naming it.
  static func members(of tasks: [Dump.CapturedTask]) -> [KeptFileData] {
    var seen: Set<String> = []
    var found: [KeptFileData] = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        let files: [(any KeptFileContents)?] = [descriptor.ghost, descriptor.memfd]
        for case let file? in files {
          guard let name = file.dataMember, seen.insert(name).inserted else { continue }
          found.append(KeptFileData(name: name, file: file, hostPid: task.hostPid, fd: descriptor.fd))
        }
      }
    }
    return found
  }

  /// Writes the member: each extent's bytes (or the whole file's) in order, read through a
  /// descriptor of ckcont's, 1 MiB at a time.
  func write(to writer: BundleWriter) throws {
    let path = "/proc/\(hostPid)/fd/\(fd)"
    let ours = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC | OpenFlags.noAccessTime)
    let extents = file.extents ?? [FileExtent(offset: 0, length: file.storedLength)]
    let chunk = 1 << 20
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 4096)
    defer { buffer.deallocate() }
    try writer.beginMember(name: name, size: Int(file.storedLength))
    for extent in extents {
      var offset = extent.offset
      while offset < extent.offset + extent.length {
        let want = Int(min(Int64(chunk), extent.offset + extent.length - offset))
        let n = try syscallChecked("pread", "\(path) for \(name)") {
          pread(ours.raw, buffer.baseAddress, want, off_t(offset))
        }
        guard n > 0 else {
          throw CKError(
            .failed, "\(path) ended at \(offset) while ckcont saved it into \(name): it shrank during the dump")
        }
        try writer.write(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        offset += Int64(n)
      }
    }
    try writer.endMember()
  }
}
