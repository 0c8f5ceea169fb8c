import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// memfd files: contents and seals kept, made once per container (by inode) and shared by
// every descriptor and mapping of them.

/// memfd files.
enum Memfds: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let memfd = descriptor.memfd, memfd.name.utf8.count < 250, !memfd.name.contains("\0"),
      memfd.contentsAreValid, (descriptor.position ?? 0) >= 0
    else { throw bad("fd \(descriptor.fd) is a bad memfd") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareMemfd(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "memfd \(descriptor.memfd?.name ?? "?") of \(descriptor.memfd?.storedLength ?? 0) bytes\(descriptor.memfd?.dataMember.map { " (in \($0))" } ?? "") at \(descriptor.position ?? 0)"
  }
}

extension FileCapture {
  /// A memfd's contents and seals, read through a descriptor of our own.
  func captureMemfd(fd: Int32, target: String, inode: UInt64, size: Int) throws -> MemfdImage {
    let path = "/proc/\(pid)/fd/\(fd)"
    let ours = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
    let seals = fcntl(ours.raw, Int32(CK_F_GET_SEALS))
    let name = String(target.dropFirst("/memfd:".count).dropLast(" (deleted)".count))
    let kept = try readKept(fd: fd, what: target)
    var memfd = MemfdImage(name: name, inode: inode, seals: max(seals, 0), contents: kept.contents)
    (memfd.size, memfd.extents, memfd.attributes, memfd.dataMember) = (
      kept.size, kept.extents, kept.attributes, kept.dataMember
    )
    return memfd
  }
}

extension FileBatch {
  /// A memfd: made once per container (by inode), or opened through what already holds it.
  func prepareMemfd(_ descriptor: DescriptorImage) throws {
    guard let memfd = descriptor.memfd else { return }
    let existing: String?
    if let mapping = sharedObjects.created[ObjectKey(device: 0, inode: memfd.inode)] {
      existing = "/proc/\(mapping.hostPid)/map_files/\(hex(mapping.start))-\(hex(mapping.end))"
    } else if let held = shared.memfds[memfd.inode] {
      existing = "/proc/\(held.hostPid)/fd/\(held.fd)"
      if held.hostPid == injector.pid { try runQueued() }
    } else {
      existing = nil
    }
    let high: Int64
    if let existing {
      // The same file another descriptor or a mapping already brought back.
      high = try queueHandedOver(existing, flags: descriptor.flags, fd: descriptor.fd)
    } else {
      let name = try injector.put(string: memfd.name)
      // F_SEAL_SEAL alone is what a memfd made without MFD_ALLOW_SEALING shows (and means
      // the same as a sealable one sealed only against more seals).
      let sealable = memfd.seals != Int32(CK_F_SEAL_SEAL)
      let made = batch.add(
        .memfdCreate(name, sealable ? [.closeOnExec, .allowSealing] : .closeOnExec), "memfd_create \(memfd.name)")
      batch.add(.ftruncate(.result(made), UInt64(memfd.fileSize)), "ftruncate \(memfd.name)")
      high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
      after.memfds.append((high, memfd))
      shared.memfds[memfd.inode] = (injector.pid, high)
    }
    if let attributes = memfd.attributes { keepAttributes(attributes, of: "memfd \(memfd.inode)", at: high) }
    queueSeek(high, to: descriptor)
    prepared.descriptions[descriptor.fd] = high
  }
}

extension FileBatch {
  /// Seals a memfd as it was through ckcont's copy `ours`, once filled and given its
  /// attributes (see ``finish``).
  func seal(_ ours: Int32, as memfd: MemfdImage) throws {
    if memfd.seals != Int32(CK_F_SEAL_SEAL) && memfd.seals != 0 {
      try syscallChecked("fcntl", "F_ADD_SEALS memfd \(memfd.name)") {
        fcntl(ours, Int32(CK_F_ADD_SEALS), memfd.seals)
      }
    }
  }
}
