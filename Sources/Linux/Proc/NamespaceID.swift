import Glibc

/// The kind of a Linux namespace, as named in the target of a `/proc/<pid>/ns/*` link.
public enum NamespaceKind: String, Codable, Hashable, Sendable, CaseIterable {
  case cgroup, ipc, mnt, net, pid, time, user, uts
}

/// The identity of a namespace: its kind and the inode of its nsfs file. Two tasks are in
/// the same namespace exactly when these are equal.
public struct NamespaceID: Codable, Hashable, Sendable, CustomStringConvertible {
  public var kind: NamespaceKind
  public var inode: UInt64

  /// Creates an identity.
  public init(kind: NamespaceKind, inode: UInt64) {
    self.kind = kind
    self.inode = inode
  }

  /// The link text, e.g. `pid:[4026531836]`.
  public var description: String { "\(kind.rawValue):[\(inode)]" }

  /// Parses a link target such as `pid:[4026531836]`.
  public static func parse(_ link: String) throws(CKError) -> NamespaceID {
    guard let colon = link.firstIndex(of: ":"),
      let kind = NamespaceKind(rawValue: String(link[..<colon]))
    else { throw procParseError("ns link", line: 1, link, "unknown namespace kind") }
    let bracketed = link[link.index(after: colon)...]
    guard bracketed.hasPrefix("["), bracketed.hasSuffix("]"),
      let inode = UInt64(bracketed.dropFirst().dropLast())
    else { throw procParseError("ns link", line: 1, link, "bad inode") }
    return NamespaceID(kind: kind, inode: inode)
  }

  /// Reads the link `/proc/<pid>/ns/<name>` (readlink(2)); `name` is a file of that directory
  /// (`pid`, `pid_for_children`, `mnt`, `time_for_children`...).
  public static func read(pid: Int32, name: String) throws -> NamespaceID {
    let path = "/proc/\(pid)/ns/\(name)"
    // Link targets are short ("cgroup:[4026531835]"); 64 bytes leave room for any inode.
    var buffer = [CChar](repeating: 0, count: 64)
    let length = try syscallChecked("readlink", path) {
      buffer.withUnsafeMutableBufferPointer { buffer in
        // A non-empty array always has storage; report EFAULT rather than trap otherwise.
        guard let base = buffer.baseAddress else {
          errno = EFAULT
          return -1
        }
        return readlink(path, base, buffer.count)
      }
    }
    let link = String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return try parse(link)
  }

  /// Every namespace of `pid`, keyed by the file name in `/proc/<pid>/ns`; or only `names`
  /// (those this kernel lacks are left out), which spares listing the directory.
  public static func readAll(pid: Int32, names: [String]? = nil) throws -> [String: NamespaceID] {
    var result: [String: NamespaceID] = [:]
    for name in try names ?? PseudoFile.list("/proc/\(pid)/ns") {
      do {
        result[name] = try read(pid: pid, name: name)
      } catch let error as SyscallError where names != nil && error.errno == .noSuchFileOrDirectory {
        continue
      }
    }
    return result
  }
}
