import Crypto
import Foundation

// Signed bundles. The checksums (XXH3-128) catch corruption, not forgery: anyone who edits a
// member can write checksums.json again. A signed bundle also carries, after checksums.json,
// `signature.json`: the SHA-256 of every member before it (manifest, members, checksums) and
// an Ed25519 signature over them by the key of whoever dumped it. The manifest requires
// "signature", so a reader knows before the first member that it must hash with SHA-256
// too, and a reader that cannot check signatures refuses the bundle instead of ignoring it.
// It works streamed: nothing is known before the last member has gone out, and the
// signature is the last member.

/// The Ed25519 key a dump signs with, read from the file `ckcont keygen` writes.
public struct BundleSigningKey: Sendable {
  /// The raw 32 bytes (Crypto's key type is not Sendable).
  private let raw: Data
  private var key: Curve25519.Signing.PrivateKey {
    // Checked when made: 32 bytes a key accepts.
    (try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)) ?? Curve25519.Signing.PrivateKey()
  }

  /// A new random key.
  public init() { raw = Curve25519.Signing.PrivateKey().rawRepresentation }

  /// The key of a private key file's text (``fileText``).
  public init(fileText: String) throws {
    guard let raw = KeyFile.decode(fileText, kind: KeyFile.privateKind),
      (try? Curve25519.Signing.PrivateKey(rawRepresentation: raw)) != nil
    else {
      throw BundleError("not a ckcont private key: expected one line '\(KeyFile.privateKind) <base64 of 32 bytes>'")
    }
    self.raw = raw
  }

  /// The private key file's text: one line, the kind and the base64 of the raw key.
  public var fileText: String { KeyFile.encode(raw, kind: KeyFile.privateKind) }

  /// The public key that checks its signatures.
  public var publicKey: BundlePublicKey { BundlePublicKey(raw: key.publicKey.rawRepresentation) }

  func sign(_ message: Data) throws -> Data { try key.signature(for: message) }
}

/// The Ed25519 key that checks a bundle's signature, as `ckcont keygen` prints it.
public struct BundlePublicKey: Sendable, Equatable, CustomStringConvertible {
  /// The raw 32 bytes (Crypto's key type is not Sendable).
  private let raw: Data

  init(raw: Data) { self.raw = raw }

  /// The key of a public key file's text or of its base64 alone.
  public init(fileText: String) throws {
    let text = fileText.trimmingCharacters(in: .whitespacesAndNewlines)
    guard let raw = KeyFile.decode(text, kind: KeyFile.publicKind) ?? Data(base64Encoded: text), raw.count == 32,
      (try? Curve25519.Signing.PublicKey(rawRepresentation: raw)) != nil
    else {
      throw BundleError("not a ckcont public key: expected one line '\(KeyFile.publicKind) <base64 of 32 bytes>'")
    }
    self.raw = raw
  }

  /// The base64 of the raw key: what `inspect` shows and a signature names.
  public var base64: String { raw.base64EncodedString() }
  /// The public key file's text.
  public var fileText: String { KeyFile.encode(raw, kind: KeyFile.publicKind) }
  public var description: String { "\(KeyFile.publicKind) \(base64)" }

  func isValidSignature(_ signature: Data, for message: Data) -> Bool {
    guard let key = try? Curve25519.Signing.PublicKey(rawRepresentation: raw) else { return false }
    return key.isValidSignature(signature, for: message)
  }
}

/// Key files: one line, a kind word and the base64 of the raw 32-byte key.
enum KeyFile {
  static let privateKind = "ckcont-ed25519-private"
  static let publicKind = "ckcont-ed25519"

  static func encode(_ raw: Data, kind: String) -> String { "\(kind) \(raw.base64EncodedString())\n" }

  static func decode(_ text: String, kind: String) -> Data? {
    let words = text.split(whereSeparator: \.isWhitespace)
    guard words.count == 2, words[0] == kind, let raw = Data(base64Encoded: String(words[1])), raw.count == 32 else {
      return nil
    }
    return raw
  }
}

/// `signature.json`: who signed, the SHA-256 of every member before it, and the signature.
struct BundleSignature: Codable, Sendable, Equatable {
  struct Entry: Codable, Sendable, Equatable {
    var name: String
    var sha256: String
  }
  var algorithm: String
  var publicKey: String
  var members: [Entry]
  var signature: String

  static let memberName = "signature.json"
  static let algorithmName = "ed25519"

  /// What the signature covers: a versioned text of each member's name and SHA-256, in
  /// bundle order, so that neither JSON layout nor key order can change its meaning.
  static func message(_ members: [Entry]) -> Data {
    Data(("ckcont-bundle-signature 1\n" + members.map { "\($0.sha256) \($0.name)\n" }.joined()).utf8)
  }

  static func decode(_ bytes: [UInt8]) throws -> BundleSignature {
    try BundleFormat.decodeJSON(BundleSignature.self, from: bytes, member: memberName)
  }
}

/// SHA-256 of each member in turn, for signed bundles (beside the XXH3 of ``MemberHasher``).
struct MemberSHA256 {
  private var running = SHA256()
  private(set) var entries: [BundleSignature.Entry] = []

  mutating func update(_ bytes: UnsafeRawBufferPointer) { running.update(bufferPointer: bytes) }

  mutating func finishMember(name: String) {
    let digest = running.finalize().map { String(format: "%02x", $0) }.joined()
    entries.append(BundleSignature.Entry(name: name, sha256: digest))
    running = SHA256()
  }
}
