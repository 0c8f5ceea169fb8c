import CKShim
import CSnapshotShim
import Foundation
import Glibc

/// A descriptor of a task of the snapshot.
struct SnapshotDescriptor {
  var task: SnapshotTask
  var fd: Int32
  var link: String
  var name: String { "\(task.name) fd \(fd)" }
  /// The inode of `pipe:[N]` and `socket:[N]` links (anonymous inodes are one for all).
  var sharedInode: String? {
    guard link.hasPrefix("pipe:[") || link.hasPrefix("socket:[") else { return nil }
    return link
  }
}

extension StateSnapshot {
  /// An O_TMPFILE file is named by its inode number (`/tmp/#123 (deleted)`), which changes
  /// with the inode (``IgnoredState/normalised``).
  static func withoutTemporaryInode(_ link: String) -> String {
    link.replacing(#/\/#[0-9]+ \(deleted\)$/#, with: "/#inode (deleted)")
  }

  mutating func readFiles(_ tasks: SnapshotTasks) {
    var descriptors: [SnapshotDescriptor] = []
    for task in tasks.tasks where !task.isZombie {
      let base = "/proc/\(task.hostPid)"
      let fds = ((try? FileManager.default.contentsOfDirectory(atPath: base + "/fd")) ?? []).compactMap { Int32($0) }
        .sorted()
      for fd in fds {
        let descriptor = SnapshotDescriptor(task: task, fd: fd, link: ProcFile.link("\(base)/fd/\(fd)"))
        descriptors.append(descriptor)
        let subject = descriptor.name
        record(
          subject, "link",
          descriptor.sharedInode.map { String($0.prefix { $0 != ":" }) } ?? Self.withoutTemporaryInode(descriptor.link))
        for (field, value) in Self.fdinfo(ProcFile.read("\(base)/fdinfo/\(fd)") ?? "", tasks) {
          record(subject, field, value)
        }
        var info = stat()
        if descriptor.link.hasPrefix("/"), stat("\(base)/fd/\(fd)", &info) == 0, info.st_mode & S_IFMT == S_IFREG {
          record(
            subject, "file",
            "mode \(String(info.st_mode, radix: 8)) uid \(info.st_uid) gid \(info.st_gid) size \(info.st_size)")
        }
      }
    }
    // Open file descriptions shared (dup, fork, SCM_RIGHTS), compared with kcmp(KCMP_FILE);
    // only descriptors with the same link can share one.
    var descriptions = Relation<Int>()
    var representatives: [SnapshotDescriptor] = []
    for descriptor in descriptors {
      let same = representatives.firstIndex {
        $0.link == descriptor.link && ck_kcmp_file($0.task.hostPid, descriptor.task.hostPid, $0.fd, descriptor.fd) == 0
      }
      if same == nil { representatives.append(descriptor) }
      descriptions.add(descriptor.name, same ?? representatives.count - 1)
    }
    for (member, others) in descriptions.sharing { record(member, "same description as", others) }
    // Pipes and sockets by inode: both ends of a pipe, a socket dup()ed or opened twice.
    var inodes = Relation<String>()
    for descriptor in descriptors { if let inode = descriptor.sharedInode { inodes.add(descriptor.name, inode) } }
    for (member, others) in inodes.sharing { record(member, "same inode as", others) }
    readSockets(descriptors.filter { $0.link.hasPrefix("socket:[") }, tasks)
  }

  /// fdinfo as fields, without what ``IgnoredState/fdinfo`` lists: repeated lines (epoll
  /// targets, inotify watches, locks) are joined, sorted, into one field.
  static func fdinfo(_ text: String, _ tasks: SnapshotTasks) -> [(String, String)] {
    var fields: [(String, String)] = []
    var repeated: [String: [String]] = [:]
    for line in text.split(separator: "\n") {
      guard let colon = line.firstIndex(of: ":") else { continue }
      let key = String(line[..<colon])
      let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
      if IgnoredState.fdinfoKeys.contains(key) { continue }
      if key == "tfd" {
        // "tfd: 5 events: 19 data: 5 pos:0 ino:.. sdev:.."
        let words = value.split(separator: " ")
        repeated["epoll", default: []].append(words.prefix(5).joined(separator: " "))
      } else if line.hasPrefix("inotify ") {
        let kept = line.split(separator: " ").filter { word in
          ["wd:", "mask:", "ignored_mask:"].contains { word.hasPrefix($0) }
        }
        repeated["inotify", default: []].append(kept.joined(separator: " "))
      } else if key == "lock" {
        // "lock:\t1: POSIX  ADVISORY  WRITE 1234 00:2e:5678 0 EOF": no index, pid as the
        // container's, no device and inode.
        var words = value.split(separator: " ").dropFirst().map(String.init)
        if let device = words.firstIndex(where: { $0.split(separator: ":").count == 3 }) {
          words.remove(at: device)
          if device > 0, let pid = Int32(words[device - 1]) { words[device - 1] = tasks.name(hostPid: pid) }
        }
        repeated["locks", default: []].append(words.joined(separator: " "))
      } else if key == "Pid" {
        fields.append((key, Int32(value).map { $0 < 0 ? value : tasks.name(hostPid: $0) } ?? value))
      } else {
        fields.append((key, value))
      }
    }
    for (key, values) in repeated { fields.append((key, values.sorted().joined(separator: "; "))) }
    return fields
  }
}
