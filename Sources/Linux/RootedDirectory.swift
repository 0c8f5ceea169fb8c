import CKShim
import Glibc
import SystemPackage

/// A directory that paths are resolved in as if it were `/`: "..", absolute paths and
/// symlinks, absolute or not, never lead out of it (openat2 with RESOLVE_IN_ROOT, as runc's
/// securejoin and apple/containerization resolve a container's paths). Paths a bundle names
/// (mount points, a tmpfs's files, socket names) go through one of these, never through a
/// host path like `/proc/<pid>/root/<path>`, whose absolute symlinks would be followed from
/// ckcont's own root, the host's.
public struct RootedDirectory: ~Copyable {
  /// The root, open O_PATH.
  public let descriptor: OwnedDescriptor
  /// What the root is, for errors.
  public let name: String

  /// The directory at `path`, as ckcont sees it (`/proc/<pid>/root`, say).
  public init(_ path: String, name: String) throws(SyscallError) {
    descriptor = try OwnedDescriptor("open", "\(path) (\(name))") {
      Glibc.open(path, OpenFlags.path | O_DIRECTORY | O_CLOEXEC)
    }
    self.name = name
  }

  /// The directory `path` names in this one, as a root of its own (a mount's top).
  public func directory(_ path: String, name: String) throws(SyscallError) -> RootedDirectory {
    RootedDirectory(adopting: try open(path, flags: OpenFlags.path | O_DIRECTORY), name: name)
  }

  private init(adopting descriptor: consuming OwnedDescriptor, name: String) {
    self.descriptor = descriptor
    self.name = name
  }

  /// open(2) of `path` resolved in the root (and through no /proc magic link).
  public func open(_ path: String, flags: Int32) throws(SyscallError) -> OwnedDescriptor {
    OwnedDescriptor(
      adopting: try negErrnoChecked("openat2", "\(path) in \(name)") {
        ck_open_in_root(descriptor.raw, path, flags | O_CLOEXEC)
      })
  }

  /// The type bits of the file `path` names in the root (S_IFDIR, S_IFREG...), nil when it
  /// names nothing.
  public func fileType(_ path: String) -> mode_t? {
    let fd = ck_open_in_root(descriptor.raw, path, OpenFlags.path | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var st = stat()
    guard fstat(fd, &st) == 0 else { return nil }
    return st.st_mode & S_IFMT
  }

  /// Runs `body` with the directory holding the last component of `path` (resolved in the
  /// root, open O_PATH) and that component, for the `*at` calls that make, remove or rename
  /// it without following it. A path whose last component is empty, "." or ".." names no
  /// entry of its own and is refused.
  public func withParent<T>(of path: String, _ body: (_ directory: Int32, _ entry: String) throws -> T) throws -> T {
    let components = path.split(separator: "/")
    guard let last = components.last, last != ".", last != ".." else {
      throw SyscallError("openat2", "\(path) in \(name): no name of its own", .invalidArgument)
    }
    let parent = try open("/" + components.dropLast().joined(separator: "/"), flags: OpenFlags.path | O_DIRECTORY)
    return try body(parent.raw, String(last))
  }

  /// Makes the directory `path` and those above it that are missing, each with `mode`, as
  /// `mkdir -p` would inside the root (also where a symlink points that leads nowhere yet).
  public func makeDirectories(_ path: String, mode: mode_t = 0o755) throws {
    var prefix = ""
    // Through the symlinks first: a dangling one is followed to where it points, in the root.
    for component in try canonical(path).split(separator: "/") {
      prefix += "/" + component
      let existing = ck_open_in_root(descriptor.raw, prefix, OpenFlags.path | O_DIRECTORY | O_CLOEXEC)
      if existing >= 0 {
        close(existing)
        continue
      }
      try withParent(of: prefix) { directory, entry in
        guard mkdirat(directory, entry, mode) == 0 || errno == EEXIST else {
          throw SyscallError("mkdirat", "\(prefix) in \(name)", Errno(rawValue: errno))
        }
      }
    }
  }

  /// `path` without symlinks, "." or "..", resolved in the root as the kernel would resolve
  /// it there (at most 40 symlinks, as the kernel allows): a path that names the same file
  /// when resolved from the root with no care, as a task whose root this is not yet does
  /// (mount(2) in a task before pivot_root). Components past the first missing one are
  /// kept as they are (nothing of theirs can be a symlink yet).
  public func canonical(_ path: String) throws -> String {
    var resolved: [String] = []
    var pending = path.split(separator: "/").map(String.init).reversed() as [String]
    var links = 0
    // Once a component is missing, nothing below it exists to be a symlink.
    var missing = false
    while let component = pending.popLast() {
      if component == "." { continue }
      if component == ".." {
        _ = resolved.popLast()
        continue
      }
      guard !missing else {
        resolved.append(component)
        continue
      }
      let target = try withParent(of: "/" + (resolved + [component]).joined(separator: "/")) {
        directory, entry -> String? in
        var st = stat()
        guard fstatat(directory, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
          missing = true
          return nil
        }
        guard st.st_mode & S_IFMT == S_IFLNK else { return nil }
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let count = readlinkat(directory, entry, &buffer, buffer.count - 1)
        guard count >= 0 else { throw SyscallError("readlinkat", "\(entry) in \(name)", Errno(rawValue: errno)) }
        return String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
      }
      guard let target else {
        resolved.append(component)
        continue
      }
      links += 1
      guard links <= 40 else { throw SyscallError("resolve", "\(path) in \(name)", .tooManySymbolicLinkLevels) }
      if target.hasPrefix("/") { resolved = [] }
      pending += target.split(separator: "/").map(String.init).reversed()
    }
    return "/" + resolved.joined(separator: "/")
  }
}
