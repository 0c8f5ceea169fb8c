import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// inotify instances: each watch kept by the watched file's path (found from its file
// handle) and made again with its own watch descriptor. Events waiting are not kept.

/// inotify instances.
enum Inotify: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    let watches = descriptor.inotifyWatches ?? []
    guard watches.count <= 1 << 16, Set(watches.map(\.wd)).count == watches.count,
      watches.allSatisfy({
        $0.wd > 0 && $0.wd <= 1 << 16 && $0.path.hasPrefix("/") && $0.path.utf8.count < 4096 && !$0.path.contains("\0")
      })
    else { throw bad("fd \(descriptor.fd) is a bad inotify instance") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareInotify(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "inotify watching \((descriptor.inotifyWatches ?? []).map { "\($0.wd):\($0.path)" }.joined(separator: ", "))"
  }
}

extension FileCapture {
  /// An inotify watch from its fdinfo line: the watched file is found from its file handle
  /// (open_by_handle_at on the mount of its device) and kept by path.
  func inotifyWatch(_ field: FdInfoField, fd: Int32) throws -> InotifyWatch {
    let pairs = Dictionary(field.recordFields ?? [], uniquingKeysWith: { first, _ in first })
    func bad(_ why: String) -> CKError {
      CKError(
        .failed, "task \(pid): inotify fd \(fd): \(why) (\(field.value))",
        hint: "remove the watch before the checkpoint")
    }
    guard let wd = pairs["wd"].flatMap({ Int32($0) }), let mask = pairs["mask"].flatMap({ UInt32($0, radix: 16) })
    else { throw bad("cannot read a watch") }
    return InotifyWatch(wd: wd, mask: mask, path: try watchedPath(pairs, bad: bad))
  }

  /// The path of the file an inotify watch or a fanotify inode mark is on, from the record's
  /// device and file handle (open_by_handle_at on a mount of that device).
  func watchedPath(_ pairs: [String: String], bad: (String) -> CKError) throws -> String {
    guard let device = pairs["sdev"].flatMap({ UInt64($0, radix: 16) }),
      let type = pairs["fhandle-type"].flatMap({ Int32($0, radix: 16) }),
      let hex = pairs["f_handle"], hex.count % 2 == 0
    else { throw bad("cannot read the watched file's handle") }
    let handle = stride(from: 0, to: hex.count, by: 2).compactMap {
      UInt8(hex[hex.index(hex.startIndex, offsetBy: $0)..<hex.index(hex.startIndex, offsetBy: $0 + 2)], radix: 16)
    }
    // The kernel's dev_t: major in the bits above 20.
    let (major, minor) = (device >> 20, device & 0xfffff)
    guard let mount = try MountInfo.read().first(where: { UInt64($0.major) == major && UInt64($0.minor) == minor })
    else {
      throw bad("no mount of device \(major):\(minor) to find the watched file on")
    }
    // open_by_handle_at refuses an O_PATH descriptor for the mount (EBADF).
    let mountFD = open(mount.mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
    guard mountFD >= 0 else { throw bad("cannot open \(mount.mountPoint)") }
    let mountPoint = OwnedDescriptor(adopting: mountFD)
    let handleFD = ck_open_by_handle(mountPoint.raw, type, handle, UInt32(handle.count), OpenFlags.path | O_CLOEXEC)
    guard handleFD >= 0 else { throw bad("the watched file is gone: \(String(cString: strerror(errno)))") }
    let watched = OwnedDescriptor(adopting: handleFD)
    let path = try readLink("/proc/self/fd/\(watched.raw)")
    guard path.hasPrefix("/"), !path.hasSuffix(" (deleted)") else { throw bad("the watched file \(path) has no path") }
    return path
  }

  /// FIONREAD of the description behind `fd`, through a copy of it.
  func waitingBytes(fd: Int32) throws -> Int32 {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: pid)
    var waiting: Int32 = 0
    _ = try syscallChecked("ioctl", "FIONREAD of task \(pid) fd \(fd)") { ioctl(ours.raw, UInt(FIONREAD), &waiting) }
    return waiting
  }
}

extension Inotify {
  /// Empties the queues of the inotify instances of the restored process `hostPid` (as in
  /// `files`): the dump saw them empty (events waiting are refused, or dropped with
  /// --drop-inotify-events), but the restore itself makes events where the container
  /// watches (a socket bound to a path, a deleted file made again and unlinked). Read
  /// through a copy of each descriptor, as many bytes as FIONREAD says (a blocking
  /// descriptor never waits). Returns the bytes dropped.
  static func drainRestored(_ files: FileTableImage, hostPid: Int32) throws -> Int {
    var dropped = 0
    for descriptor in files.descriptors where descriptor.kind == .inotify && descriptor.sharesWith == nil {
      let copy = try OwnedDescriptor(copying: descriptor.fd, ofProcess: hostPid)
      var waiting: Int32 = 0
      guard ioctl(copy.raw, UInt(FIONREAD), &waiting) == 0, waiting > 0 else { continue }
      var events = [UInt8](repeating: 0, count: Int(waiting))
      let count = read(copy.raw, &events, events.count)
      dropped += max(0, count)
    }
    return dropped
  }
}

extension FileBatch {
  /// An inotify instance with its watches.
  func prepareInotify(_ descriptor: DescriptorImage) throws {
    // inotify_init1 (at its high number at once, so that batches may be run between the
    // watches), then each watch with its own descriptor number: numbers are handed out one
    // after another from 1, so a gap is filled by a watch added and removed again.
    let made = batch.add(.inotifyInit1(descriptor.flags & O_NONBLOCK | O_CLOEXEC), "inotify_init1 fd \(descriptor.fd)")
    let high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
    prepared.descriptions[descriptor.fd] = high
    let watches = (descriptor.inotifyWatches ?? []).sorted { $0.wd < $1.wd }
    let spare = watches.contains { $0.path == "/" } ? "/proc" : "/"
    var next: Int32 = 1
    for watch in watches {
      while next <= watch.wd {
        if batch.isFull || injector.dataRoom < 8192 {
          try runQueued()
        }
        if next < watch.wd {
          let spareAt = try injector.put(string: spare)
          let wd = next
          let added = batch.add(
            .inotifyAddWatch(high, spareAt, mask: UInt32(IN_ACCESS), as: wd), "inotify spare watch \(wd)")
          batch.add(.inotifyRmWatch(high, .result(added)), "inotify_rm_watch \(wd)")
        } else {
          let path = try injector.put(string: watch.path)
          batch.add(
            .inotifyAddWatch(high, path, mask: watch.mask, as: watch.wd),
            "inotify_add_watch \(watch.path) as \(watch.wd)")
        }
        next += 1
      }
    }
  }
}
