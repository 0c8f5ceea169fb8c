import Glibc
import SystemPackage

/// A failed system call: which call, on what, and the errno it returned.
/// Renders as `ptrace(PTRACE_SEIZE, 4711): Operation not permitted`.
public struct SyscallError: Error, CustomStringConvertible, Sendable {
  public let call: String
  public let subject: String
  public let errno: Errno

  public init(_ call: String, _ subject: String, _ errno: Errno) {
    self.call = call
    self.subject = subject
    self.errno = errno
  }

  public var description: String { "\(call)(\(subject)): \(errno.description)" }
}

/// An error a user can act on: what went wrong and, when known, what to do about it.
/// Every layer above the raw syscalls reports through this type.
public struct CKError: Error, CustomStringConvertible, Sendable {
  public enum Kind: Sendable {
    /// The user asked for something that does not exist or does not fit (bad path, bad bundle).
    case badInput
    /// The tool needs privileges it lacks.
    case permission
    /// The kernel or the system could not do what was asked.
    case failed
  }
  public let kind: Kind
  public let message: String
  public let hint: String?

  public init(_ kind: Kind = .failed, _ message: String, hint: String? = nil) {
    self.kind = kind
    self.message = message
    self.hint = hint
  }

  /// One line, whatever the message quotes (a bundle's strings are untrusted input): control
  /// characters are written as escapes.
  public var description: String {
    Self.oneLine(hint.map { "\(message) (\($0))" } ?? message)
  }

  static func oneLine(_ text: String) -> String {
    func isControl(_ scalar: Unicode.Scalar) -> Bool { scalar.value < 0x20 || scalar.value == 0x7f }
    guard text.unicodeScalars.contains(where: isControl) else { return text }
    return text.unicodeScalars.map { isControl($0) ? "\\u{\(String($0.value, radix: 16))}" : String($0) }.joined()
  }
}

/// Runs a raw call returning -1 and errno on failure; retries EINTR and throws a
/// ``SyscallError`` naming `call` and `subject` otherwise.
@discardableResult
@inline(__always)
public func syscallChecked<T: BinaryInteger>(
  _ call: @autoclosure () -> String, _ subject: @autoclosure () -> String, _ body: () -> T
) throws(SyscallError) -> T {
  while true {
    let result = body()
    if result >= 0 { return result }
    let err = Errno(rawValue: Glibc.errno)
    if err == .interrupted { continue }
    throw SyscallError(call(), subject(), err)
  }
}

/// The same for calls that return `-errno` instead of setting errno (our C shim's style).
@discardableResult
public func negErrnoChecked<T: SignedInteger>(
  _ call: @autoclosure () -> String, _ subject: @autoclosure () -> String, _ body: () -> T
) throws(SyscallError) -> T {
  while true {
    let result = body()
    if result >= 0 { return result }
    let err = Errno(rawValue: Int32(truncatingIfNeeded: 0 - result))
    if err == .interrupted { continue }
    throw SyscallError(call(), subject(), err)
  }
}
