import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// Files and devices opened by path (inside the container's root, or outside it and handed
// over), with their position and locks; and files deleted while open (CRIU's ghost files),
// their contents kept and made again before they are opened.

/// Files and devices opened by path.
enum RegularFiles: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let path = descriptor.path, path.hasPrefix("/"), path.utf8.count < 4096, !path.contains("\0"),
      (descriptor.position ?? 0) >= 0
    else { throw bad("fd \(descriptor.fd) has a bad path or position") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareFileByPath(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "\(descriptor.path ?? "?") at \(descriptor.position ?? 0)"
      + (descriptor.outsideRoot == true
        ? " (outside the container's root: reopened from ckcont's, or --inherit-fd)" : "")
  }
}

/// Files deleted while open.
enum DeletedFiles: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let path = descriptor.path, path.hasPrefix("/"), path.utf8.count < 4000, !path.contains("\0"),
      let ghost = descriptor.ghost, ghost.contentsAreValid, (descriptor.position ?? 0) >= 0
    else { throw bad("fd \(descriptor.fd) is a bad deleted file") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareDeletedFile(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "\(descriptor.path ?? "?") (deleted, \(descriptor.ghost?.storedLength ?? 0) bytes kept\(descriptor.ghost?.dataMember.map { " in \($0)" } ?? "")) at \(descriptor.position ?? 0)"
  }
}

extension FileCapture {
  /// One fdinfo lock line: `1: FLOCK  ADVISORY  WRITE 4711 fe:00:1234 0 EOF`.
  func lock(from line: String, fd: Int32) throws -> FileLockImage {
    let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
    func bad() -> CKError { CKError(.failed, "task \(pid): fd \(fd): cannot read the lock '\(line)'") }
    if words.count >= 4, words[1] == "LEASE" {
      // A lease being broken is in the middle of a conversation with another process.
      guard words[2] == "ACTIVE" else {
        throw CKError(
          .failed, "task \(pid): fd \(fd) holds a lease being broken (\(words[2])), which ckcont cannot checkpoint",
          hint: "checkpoint once it is released")
      }
      return FileLockImage(kind: .lease, write: words[3] == "WRITE", start: 0, length: 0)
    }
    guard words.count >= 8, words[2] == "ADVISORY", let start = Int64(words[6]) else { throw bad() }
    let kinds: [Substring: FileLockImage.Kind] = ["FLOCK": .flock, "POSIX": .posix, "OFDLCK": .openFileDescription]
    guard let kind = kinds[words[1]] else {
      throw CKError(.failed, "task \(pid): fd \(fd) holds a \(words[1]) lock, which ckcont cannot checkpoint yet")
    }
    let length: Int64
    if words[7] == "EOF" {
      length = 0
    } else {
      guard let end = Int64(words[7]), end >= start else { throw bad() }
      length = end - start + 1
    }
    return FileLockImage(kind: kind, write: words[3] == "WRITE", start: start, length: length)
  }
}

extension FileBatch {
  /// A file or device opened by path: in the container, or handed over by ckcont.
  func prepareFileByPath(_ descriptor: DescriptorImage) throws {
    guard let path = descriptor.path else { return }
    let high: Int64
    if let terminal = shared.shellJobTerminal, path == terminal.dumped {
      high = try queueHandedOver(terminal.now, flags: descriptor.flags | O_NOCTTY, fd: descriptor.fd)
    } else if descriptor.outsideRoot == true {
      do { high = try queueHandedOver(path, flags: descriptor.flags, fd: descriptor.fd) } catch {
        throw CKError(
          .failed,
          "task \(injector.pid): fd \(descriptor.fd) is \(path), outside the container's root, which ckcont cannot open: \(error)",
          hint: "hand in a descriptor for it with --inherit-fd fd[N]:\(path)")
      }
    } else if shared.inUserNamespace && path != "/dev/tty" {
      // A task of a user namespace may not open what the container's processes had open
      // before they entered it (a runtime's log file, say): ckcont opens it for it, as
      // CRIU's usernsd does.
      high = try queueHandedOver(path, flags: descriptor.flags, fd: descriptor.fd, inContainer: true)
    } else {
      high = try queueOpen(path, flags: descriptor.flags, fd: descriptor.fd).high
    }
    if (descriptor.mode ?? 0) & UInt32(S_IFMT) == UInt32(S_IFREG) { queueSeek(high, to: descriptor) }
    prepared.descriptions[descriptor.fd] = high
  }

  /// A file deleted while open: its ghost made again (once per container), then opened.
  func prepareDeletedFile(_ descriptor: DescriptorImage) throws {
    guard let ghost = descriptor.ghost, let path = descriptor.path else { return }
    let source: String
    // Made by a call of this task still queued: it runs first.
    var madeHere = false
    if let held = shared.ghosts[ghost.inode] {
      source = "/proc/\(held.hostPid)/fd/\(held.fd)"
      madeHere = held.hostPid == injector.pid
    } else if let mapped = sharedObjects.deletedFiles[
      SharedMemoryObjects.deletedFileName(inode: ghost.inode, path: path)]
    {
      // Mapped too: the file a mapping made again, which already has the contents.
      source = "/proc/\(mapped.hostPid)/map_files/\(hex(mapped.start))-\(hex(mapped.end))"
    } else if descriptor.flags & OpenFlags.temporaryFile != 0 {
      // Made with O_TMPFILE (unnamed from the start), as the program made it: the descriptor
      // is the one open(2) gives, which alone shows O_TMPFILE in its flags.
      let directory = "/" + path.split(separator: "/").dropLast().joined(separator: "/")
      let at = try injector.put(string: directory)
      let made = batch.add(
        .open(at, descriptor.flags | O_CLOEXEC, mode: (descriptor.mode ?? 0o600) & 0o7777),
        "O_TMPFILE in \(directory) for \(path)")
      let high = queueMoveHigh(made, what: "fd \(descriptor.fd)")
      after.ghosts.append((high, ghost))
      shared.ghosts[ghost.inode] = (injector.pid, high)
      if let attributes = ghost.attributes { keepAttributes(attributes, of: "deleted \(ghost.inode)", at: high) }
      queueSeek(high, to: descriptor)
      prepared.descriptions[descriptor.fd] = high
      return
    } else {
      // Made again next to where it was and unlinked at once; ckcont fills it after the
      // batch, through the keeper descriptor.
      let ghostPath = ghostFilePath(for: path, inode: ghost.inode, taskPid: injector.pid)
      let at = try injector.put(string: ghostPath)
      let made = batch.add(
        .open(at, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: (descriptor.mode ?? 0o600) & 0o7777),
        "create \(ghostPath) for the deleted \(path)")
      batch.add(.unlink(at), "unlink \(ghostPath)")
      let keeper = queueMoveHigh(made, what: "the ghost of \(path)")
      after.ghosts.append((keeper, ghost))
      shared.ghosts[ghost.inode] = (injector.pid, keeper)
      source = "/proc/\(injector.pid)/fd/\(keeper)"
      madeHere = true
    }
    if madeHere { try runQueued() }
    let high = try queueHandedOver(source, flags: descriptor.flags, fd: descriptor.fd)
    if let attributes = ghost.attributes { keepAttributes(attributes, of: "deleted \(ghost.inode)", at: high) }
    queueSeek(high, to: descriptor)
    prepared.descriptions[descriptor.fd] = high
  }
}
