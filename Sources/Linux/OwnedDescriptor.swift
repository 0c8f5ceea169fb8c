import CKShim
import Glibc
import SystemPackage

/// A descriptor ckcont opened: exactly one owner, which closes it when it ends, or hands it
/// on with ``take()``. Noncopyable, as swift-subprocess's descriptor owner, so that no copy
/// can close it twice or use it after the close. A traced task's descriptors are numbers in
/// another process and stay plain `Int32`s.
public struct OwnedDescriptor: ~Copyable {
  /// The number, for a borrowed use while the owner lives.
  public let raw: Int32

  /// Takes ownership of `raw`, a descriptor of ours just opened.
  public init(adopting raw: Int32) {
    self.raw = raw
  }

  /// Takes ownership of `raw` if it is a descriptor; nil for a failed call's negative result.
  public init?(adoptingValid raw: Int32) {
    guard raw >= 0 else { return nil }
    self.raw = raw
  }

  /// open(2) of `path` with `flags` (and `mode` when creating); an error names the call and
  /// the path, as ``syscallChecked(_:_:_:)`` does.
  public init(opening path: String, flags: Int32, mode: mode_t = 0) throws(SyscallError) {
    raw = try syscallChecked("open", path) { open(path, flags, mode) }
  }

  /// The descriptor a raw call returns (-1 and errno on failure, EINTR retried); an error names
  /// `call` and `subject`.
  public init(
    _ call: @autoclosure () -> String, _ subject: @autoclosure () -> String, _ body: () -> Int32
  ) throws(SyscallError) {
    raw = try syscallChecked(call(), subject(), body)
  }

  /// A descriptor of ours for descriptor `fd` of the process with host pid `pid`
  /// (pidfd_open(2), then pidfd_getfd(2)): the same open file description, so its offset,
  /// flags and contents are the process's.
  public init(copying fd: Int32, ofProcess pid: Int32) throws(SyscallError) {
    let pidfd = try OwnedDescriptor("pidfd_open", "\(pid)") { ck_pidfd_open(pid, 0) }
    raw = try syscallChecked("pidfd_getfd", "\(pid) fd \(fd)") { ck_pidfd_getfd(pidfd.raw, fd, 0) }
  }

  /// Hands the descriptor over without closing it: the caller owns the number from now on.
  public consuming func take() -> Int32 {
    let raw = self.raw
    discard self
    return raw
  }

  deinit {
    close(raw)
  }
}

extension Optional where Wrapped == OwnedDescriptor {
  /// The number, or -1 (what C calls take for "no descriptor") when there is none.
  public var rawOrMinusOne: Int32 {
    switch self {
    case .some(let descriptor): descriptor.raw
    case .none: -1
    }
  }
}
