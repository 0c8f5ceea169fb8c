import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// fanotify groups: fanotify_init's flags and each mark (on a file, a mount or a whole
// filesystem) kept by a path to what it marks, made again with fanotify_mark. Refused:
// events waiting to be read (the kernel makes them, nothing can queue them again) and the
// permission classes (a process may be waiting in the kernel for the group's answer).

/// fanotify groups.
enum Fanotify: DescriptorKindHandler {
  /// The flags fanotify_init takes (linux/fanotify.h, FANOTIFY_INIT_FLAGS of 6.18).
  static let knownFlags: UInt32 = 0x1fff
  static let knownMarkFlags = UInt32(CK_FAN_MARK_IGNORED_SURV_MODIFY | CK_FAN_MARK_EVICTABLE | CK_FAN_MARK_IGNORE)

  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let group = descriptor.fanotify, group.flags & ~knownFlags == 0, group.marks.count <= 1 << 16,
      group.flags & UInt32(CK_FAN_CLASS_CONTENT | CK_FAN_CLASS_PRE_CONTENT) == 0,
      group.marks.allSatisfy({
        $0.path.hasPrefix("/") && $0.path.utf8.count < 4096 && !$0.path.utf8.contains(0)
          && $0.flags & ~knownMarkFlags == 0 && ($0.mask | $0.ignoredMask) != 0
      })
    else { throw bad("fd \(descriptor.fd) is a bad fanotify group") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareFanotify(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    let group = descriptor.fanotify
    let marks = (group?.marks ?? []).map { "\($0.kind.rawValue):\($0.path)" }.joined(separator: ", ")
    return "fanotify 0x\(String(group?.flags ?? 0, radix: 16)) marking \(marks)"
  }
}

extension FileCapture {
  /// A fanotify group from its fdinfo: the first record line holds the group's flags, each
  /// other one a mark (`ino:` and a file handle, `mnt_id:`, or `sdev:` alone for a
  /// filesystem). A mount or filesystem is kept by a mount point the task sees.
  func fanotifyGroup(_ info: FdInfo, fd: Int32) throws -> FanotifyImage {
    func bad(_ why: String) -> CKError {
      CKError(.failed, "task \(pid): fanotify fd \(fd): \(why)", hint: "close the group before the checkpoint")
    }
    let records = info.extra.filter { $0.key == "fanotify" }.map {
      Dictionary($0.recordFields ?? [], uniquingKeysWith: { first, _ in first })
    }
    guard let header = records.first, let flags = header["flags"].flatMap({ UInt32($0, radix: 16) }),
      let eventFlags = header["event-flags"].flatMap({ UInt32($0, radix: 16) })
    else { throw bad("cannot read the group's flags") }
    guard flags & UInt32(CK_FAN_CLASS_CONTENT | CK_FAN_CLASS_PRE_CONTENT) == 0 else {
      throw bad(
        "a group of a permission class, whose answers processes may be waiting for, which ckcont cannot checkpoint")
    }
    if let waiting = try? waitingBytes(fd: fd), waiting > 0 {
      throw CKError(
        .failed, "task \(pid): fanotify fd \(fd) has \(waiting) bytes of events not read yet, which ckcont cannot keep",
        hint: "checkpoint again once the program has read them")
    }
    let mounts = try MountInfo.read(pid: "\(pid)")
    let marks = try records.dropFirst().map { pairs in
      guard let mask = pairs["mask"].flatMap({ UInt64($0, radix: 16) }),
        let ignored = pairs["ignored_mask"].flatMap({ UInt64($0, radix: 16) }),
        let markFlags = pairs["mflags"].flatMap({ UInt32($0, radix: 16) })
      else { throw bad("cannot read a mark") }
      if pairs["ino"] != nil {
        return FanotifyMark(
          kind: .inode, path: try watchedPath(pairs, bad: bad), mask: mask, ignoredMask: ignored, flags: markFlags)
      }
      if let id = pairs["mnt_id"].flatMap({ Int($0, radix: 16) }) {
        guard let mount = mounts.first(where: { $0.mountID == id }) else {
          throw bad("a mark on mount \(id), which the task does not see")
        }
        return FanotifyMark(kind: .mount, path: mount.mountPoint, mask: mask, ignoredMask: ignored, flags: markFlags)
      }
      guard let device = pairs["sdev"].flatMap({ UInt64($0, radix: 16) }),
        let mount = mounts.first(where: { UInt64($0.major) == device >> 20 && UInt64($0.minor) == device & 0xfffff })
      else { throw bad("a filesystem mark on a device the task has no mount of") }
      return FanotifyMark(kind: .filesystem, path: mount.mountPoint, mask: mask, ignoredMask: ignored, flags: markFlags)
    }
    let ownFlags = UInt32(CK_FAN_CLOEXEC | CK_FAN_NONBLOCK)
    // fdinfo lists the newest mark first: kept (and made again) oldest first, so that the
    // restored group lists them as the dumped one did.
    return FanotifyImage(flags: flags & ~ownFlags, eventFlags: eventFlags, marks: marks.reversed())
  }
}

extension FileBatch {
  /// A fanotify group with its marks: each mark's mask, then its ignored mask (a second
  /// call, as fanotify_mark takes one mask at a time).
  func prepareFanotify(_ descriptor: DescriptorImage) throws {
    guard let group = descriptor.fanotify else { return }
    let nonblocking = descriptor.flags & O_NONBLOCK != 0 ? UInt32(CK_FAN_NONBLOCK) : 0
    let made = batch.add(
      .fanotifyInit(group.flags | nonblocking | UInt32(CK_FAN_CLOEXEC), eventFlags: group.eventFlags),
      "fanotify_init fd \(descriptor.fd)")
    let high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
    prepared.descriptions[descriptor.fd] = high
    for mark in group.marks {
      if batch.isFull || injector.dataRoom < 8192 { try runQueued() }
      let path = try injector.put(string: mark.path)
      let kind: UInt32 =
        switch mark.kind {
        case .inode: 0
        case .mount: UInt32(CK_FAN_MARK_MOUNT)
        case .filesystem: UInt32(CK_FAN_MARK_FILESYSTEM)
        }
      let adding = UInt32(CK_FAN_MARK_ADD) | kind | mark.flags & UInt32(CK_FAN_MARK_EVICTABLE)
      let markPath = mark.path
      if mark.mask != 0 {
        batch.add(.fanotifyMark(high, flags: adding, mask: mark.mask, path: path), "fanotify_mark \(markPath)")
      }
      if mark.ignoredMask != 0 {
        // The new ignore (FAN_MARK_IGNORE) where the mark had it, else the old ignored mask.
        let ignoring =
          mark.flags & UInt32(CK_FAN_MARK_IGNORE) != 0 ? UInt32(CK_FAN_MARK_IGNORE) : UInt32(CK_FAN_MARK_IGNORED_MASK)
        batch.add(
          .fanotifyMark(
            high, flags: adding | ignoring | mark.flags & UInt32(CK_FAN_MARK_IGNORED_SURV_MODIFY),
            mask: mark.ignoredMask, path: path),
          "fanotify_mark \(markPath) (ignored)")
      }
    }
  }
}
