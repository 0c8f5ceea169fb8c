import Foundation
import Glibc
import Linux

/// The sysctls that belong to a network or IPC namespace (net.*, kernel.shm*/msg*/sem,
/// fs.mqueue.*), which a container may set in its own: dumped as what differs from a fresh
/// namespace of the kind, written again in the new one before any process uses it.
///
/// Both sides run on a thread that joins the namespace (``NamespaceThread``): /proc/sys shows
/// the reading thread's namespaces, whichever procfs it is read through.
enum NamespaceSysctls {
  /// The files of each kind, relative to /proc/sys: directories are walked.
  static let roots: [String: [String]] = [
    "net": ["net"],
    // The *_next_id files are the SysV restore's own tool, not state.
    "ipc": [
      "kernel/shmmax", "kernel/shmall", "kernel/shmmni", "kernel/shm_rmid_forced", "kernel/msgmax", "kernel/msgmnb",
      "kernel/msgmni", "kernel/sem", "fs/mqueue",
    ],
  ]
  /// The most settings kept per namespace, and the longest value.
  static let maxCount = 4096
  static let maxValue = 4096

  // MARK: Dump

  /// The settings of the `kind` (`net`, `ipc`) namespace of process `pid` that differ from
  /// those of a fresh namespace; nil when none does.
  static func capture(_ kind: String, of pid: Int32) throws -> [String: String]? {
    // Both at once: a network namespace has hundreds of settings, each a procfs read.
    let reads = [true, false].concurrentMap { (own: Bool) throws(any Error) in
      own
        ? try NamespaceThread.run(in: kind, of: pid) { try readAll(kind) }
        : try NamespaceThread.runInFresh(kind) { try readAll(kind) }
    }
    let own = try reads[0].get()
    let fresh = try reads[1].get()
    let changed = own.filter { fresh[$0.key] != $0.value && fresh[$0.key] != nil }
    return changed.isEmpty ? nil : changed
  }

  /// Every readable and writable setting under the kind's roots, as the calling thread sees
  /// it.
  private static func readAll(_ kind: String) throws -> [String: String] {
    var values: [String: String] = [:]
    func visit(_ relative: String) {
      let path = "/proc/sys/" + relative
      var st = stat()
      guard lstat(path, &st) == 0 else { return }
      if st.st_mode & S_IFMT == S_IFDIR {
        for name in (try? PseudoFile.list(path)) ?? [] { visit(relative + "/" + name) }
      } else if st.st_mode & 0o600 == 0o600, values.count < maxCount,
        let text = try? PseudoFile.read(path), text.utf8.count < maxValue
      {
        values[relative] = text.hasSuffix("\n") ? String(text.dropLast()) : text
      }
    }
    for root in roots[kind] ?? [] { visit(root) }
    return values
  }

  // MARK: Restore

  /// Writes network namespace `settings` in the namespace of process `pid` (host pid), in
  /// name order, from a thread of ckcont's that joins it (CAP_NET_ADMIN is enough, in any
  /// user namespace).
  static func restore(_ settings: [String: String], kind: String, of pid: Int32) throws {
    try NamespaceThread.run(in: kind, of: pid) {
      for (name, value) in settings.sorted(by: { $0.key < $1.key }) {
        do { try PseudoFile.write("/proc/sys/" + name, value) } catch {
          throw CKError(
            .failed,
            "cannot set \(name.replacingOccurrences(of: "/", with: ".")) = \(value) in the new \(kind) namespace: \(error)"
          )
        }
      }
    }
  }

  /// Writes IPC namespace `settings` from inside the task behind `injector` (root of its
  /// namespaces, maybe of a user namespace of its own): changing them needs CAP_SYS_RESOURCE
  /// in the namespace's user namespace, which ckcont itself may lack. Its /proc/sys shows its
  /// own IPC namespace, whichever procfs is at /proc.
  static func restore(_ settings: [String: String], through injector: Injector) throws {
    for (name, value) in settings.sorted(by: { $0.key < $1.key }) {
      injector.resetData()
      let path = try injector.put(string: "/proc/sys/" + name)
      let bytes = Array(value.utf8)
      let text = try injector.put(bytes)
      var batch = Injector.Batch()
      let fd = batch.add(.open(path, O_WRONLY | O_CLOEXEC), "open /proc/sys/\(name)")
      batch.add(
        .write(.result(fd), text, count: bytes.count), "set \(name.replacingOccurrences(of: "/", with: ".")) = \(value)"
      )
      batch.add(.close(.result(fd)), "close /proc/sys/\(name)")
      try injector.run(batch)
    }
  }

  /// Whether `settings` only name files under the kind's roots, without `..`, with values
  /// of plausible size.
  static func isValid(_ settings: [String: String], kind: String) -> Bool {
    guard settings.count <= maxCount, let allowed = roots[kind] else { return false }
    return settings.allSatisfy { name, value in
      let parts = name.split(separator: "/", omittingEmptySubsequences: false)
      return !parts.contains { $0.isEmpty || $0 == "." || $0 == ".." } && !name.contains("\0")
        && allowed.contains { name == $0 || name.hasPrefix($0 + "/") } && value.utf8.count < maxValue
        && !value.contains("\0")
    }
  }
}
