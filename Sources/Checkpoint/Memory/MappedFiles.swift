import Bundle
import Glibc
import Linux
import Synchronization

/// The files behind private file mappings (a program's executable and libraries, data it
/// maps privately): the pages it never wrote show the file, so the restore must map the
/// very file the dump saw. The dump notes each file's size and modification time, and
/// refuses a path that names another file by then (one mounted over it); the restore
/// refuses a file that changed since (a library upgraded, another host's files).
enum MappedFiles {
  /// What each path names in each mount namespace and root ("NAMESPACE ROOT PATH" -> device
  /// and inode),
  /// found once per capture for every process mapping it (``forgetPaths()``).
  private static let named = Mutex<[String: (dev_t, ino_t)]>([:])

  /// Starts a capture: mounts may have changed since the last one (a migration's rounds).
  static func forgetPaths() { named.withLock { $0 = [:] } }

  /// Notes the size and modification time of the file behind each private file mapping of
  /// process `pid` (``VMAImage/fileSize``, ``VMAImage/fileModified``), checking that its
  /// path names that file in the process's root, as the restore will open it.
  static func identify(_ images: inout [VMAImage], pid: Int32) throws {
    let files = images.indices.filter { images[$0].kind == .file && !images[$0].shared }
    guard !files.isEmpty else { return }
    // Paths resolve by the mount namespace and the root (a chroot): both name the cache.
    var rootFacts = stat()
    let namespace =
      ((try? readLink("/proc/\(pid)/ns/mnt")) ?? "\(pid)")
      + (stat("/proc/\(pid)/root", &rootFacts) == 0 ? " \(rootFacts.st_dev):\(rootFacts.st_ino)" : " \(pid)")
    var root: RootedDirectory?
    var identities: [String: (size: UInt64, modified: Int64)] = [:]
    for index in files {
      let vma = images[index]
      if identities[vma.path] == nil {
        let mapped = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
        var facts = stat()
        guard stat(mapped, &facts) == 0 else {
          throw CKError(.failed, "task \(pid): cannot stat \(mapped): \(String(cString: strerror(errno)))")
        }
        let key = "\(namespace) \(vma.path)"
        var names = Self.named.withLock { $0[key] }
        if names == nil {
          if root == nil { root = try RootedDirectory("/proc/\(pid)/root", name: "the root of task \(pid)") }
          var found = stat()
          if let file = try? root?.open(vma.path, flags: OpenFlags.path), fstat(file.raw, &found) == 0 {
            names = (found.st_dev, found.st_ino)
            Self.named.withLock { $0[key] = names }
          }
        }
        if let names {
          if names.0 != facts.st_dev || names.1 != facts.st_ino {
            throw CKError(
              .failed,
              "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) is of a file whose path, \(vma.path), names another file now (one mounted over it): the restore would map that one",
              hint: "unmount what covers it before the checkpoint")
          }
        }
        identities[vma.path] = (UInt64(facts.st_size), modified(facts))
      }
      images[index].fileSize = identities[vma.path]?.size
      images[index].fileModified = identities[vma.path]?.modified
    }
  }

  /// Checks, before task `pid` maps `vma`, that the file its path names there is as the dump
  /// saw it; each path once per mount namespace (`checked`: "NAMESPACE PATH").
  static func check(_ vma: VMAImage, pid: Int32, namespace: String, checked: inout Set<String>) throws {
    guard let size = vma.fileSize, let modified = vma.fileModified,
      !checked.contains("\(namespace) \(vma.path)")
    else { return }
    let root = try RootedDirectory("/proc/\(pid)/root", name: "the root of task \(pid)")
    let file: OwnedDescriptor
    do {
      file = try root.open(vma.path, flags: OpenFlags.path)
    } catch {
      throw CKError(
        .failed, "task \(pid): cannot open \(vma.path) to map it: \(error.errno)",
        hint: "restore where the container's files are as they were at the dump")
    }
    var facts = stat()
    guard fstat(file.raw, &facts) == 0 else {
      throw SyscallError("fstat", vma.path, .init(rawValue: errno))
    }
    guard UInt64(facts.st_size) == size, Self.modified(facts) == modified else {
      throw CKError(
        .failed,
        "task \(pid): the file \(vma.path) it maps privately changed since the dump (\(size) bytes then, \(facts.st_size) now\(Self.modified(facts) == modified ? "" : ", modified since")): its pages would not be the ones the program had",
        hint: "restore where the container's files are as they were at the dump (the same image, not upgraded)")
    }
    checked.insert("\(namespace) \(vma.path)")
  }

  /// st_mtim in nanoseconds since the epoch.
  private static func modified(_ facts: stat) -> Int64 {
    Int64(facts.st_mtim.tv_sec) * 1_000_000_000 + Int64(facts.st_mtim.tv_nsec)
  }
}
