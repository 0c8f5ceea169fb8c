/// Why a bundle could not be written or read: what is wrong and where (member, byte offset).
/// The one error type of this module; every message is meant to be shown to a user as is.
public struct BundleError: Error, CustomStringConvertible, Sendable, Equatable {
  /// The full explanation, e.g. `member 'mm-1.json' at byte 1536: size 99 exceeds the cap of 64`.
  public let message: String

  /// An error with the given message.
  public init(_ message: String) {
    self.message = message
  }

  /// An error about one member, located by its header's byte offset in the stream.
  static func member(_ name: String, at offset: Int, _ problem: String) -> BundleError {
    BundleError("member '\(name)' at byte \(offset): \(problem)")
  }

  /// The message.
  public var description: String { message }
}
