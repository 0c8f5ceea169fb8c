import Crypto
import Foundation

/// Reads a bundle as a stream, checking it as it goes: the manifest first (magic, major
/// version, every field), then that the members arrive exactly as the manifest lists them,
/// then `checksums.json` against the XXH3-128 of every member computed while reading, then the
/// end of the tar. Pages handed out before the end are therefore not yet verified: a restore
/// that must not act on a corrupt bundle runs ``verify(source:)`` over it first.
public final class BundleReader {
  /// The validated manifest.
  public let manifest: Manifest
  private let tar: TarReader
  private let hasher: MemberHasher
  private var nextIndex = 0
  private var current: Manifest.Member?
  private var done = false
  /// SHA-256 of every member, for a bundle whose manifest requires "signature".
  private var sha256: MemberSHA256?
  /// Who signed the bundle, once its signature has been checked (the end of the stream).
  public private(set) var signer: BundlePublicKey?
  /// The bundle's identity once read whole: the SHA-256 of its `checksums.json`, which holds
  /// the digest of every member (``Manifest/Parent``).
  public private(set) var identity: String?

  /// Reads and validates `manifest.json` from the start of `source`.
  public init(source: any ByteSource) throws {
    tar = TarReader(source: source, limits: TarLimits(maxMemberSize: BundleFormat.maxMemberSize))
    guard let header = try tar.nextMember() else {
      throw BundleError("not a ckcont bundle: the tar stream is empty")
    }
    guard header.name == BundleFormat.manifestName, header.kind == .file else {
      throw BundleError(
        "not a ckcont bundle: the first member is '\(header.name)', not \(BundleFormat.manifestName)"
      )
    }
    let bytes = try tar.readAll(maxSize: BundleFormat.maxJSONMemberSize)
    manifest = try Manifest.decode(bytes)
    if manifest.requires?.contains(BundleFormat.Requirement.signature.rawValue) == true {
      var first = MemberSHA256()
      bytes.withUnsafeBytes { first.update($0) }
      first.finishMember(name: BundleFormat.manifestName)
      sha256 = first
    }
    // Created last: a throwing init runs no deinit, which would leave the thread running.
    hasher = MemberHasher()
    bytes.withUnsafeBytes { hasher.update($0) }
    hasher.finishMember(name: BundleFormat.manifestName)
  }

  deinit { hasher.stop() }

  /// The byte offset in the stream where the current member's data starts; valid right
  /// after ``nextMember()`` returned it and before any of its data is read. A restore reading
  /// a bundle file uses it to let the restored task read its pages straight from the file.
  public var dataOffset: Int { tar.bytesRead }

  /// Reads a whole bundle, keeping nothing, and returns its manifest if every check passes.
  public static func verify(source: any ByteSource) throws -> Manifest {
    let reader = try BundleReader(source: source)
    while try reader.nextMember() != nil {}
    return reader.manifest
  }

  /// Reads a whole bundle, keeping nothing, and returns who signed it (nil: unsigned) if
  /// every check passes.
  public static func signer(source: any ByteSource) throws -> BundlePublicKey? {
    let reader = try BundleReader(source: source)
    while try reader.nextMember() != nil {}
    return reader.signer
  }

  /// Skips what is left of the current member and returns the next one as listed in the
  /// manifest, or nil once `checksums.json` has been verified and the stream has ended.
  public func nextMember() throws -> Manifest.Member? {
    guard !done else { return nil }
    if let member = current {
      try forEachChunk { _ in }
      hasher.finishMember(name: member.name)
      sha256?.finishMember(name: member.name)
      current = nil
    }
    let position = tar.bytesRead
    guard let header = try tar.nextMember() else {
      throw BundleError("byte \(position): the bundle ends without \(BundleFormat.checksumsName)")
    }
    guard header.kind == .file else {
      throw BundleError.member(
        header.name, at: header.offset, "a directory, but bundles hold only files")
    }
    guard nextIndex < manifest.members.count else {
      try verifyChecksums(header)
      done = true
      return nil
    }
    let expected = manifest.members[nextIndex]
    guard header.name == expected.name else {
      let listed = manifest.members.contains { $0.name == header.name }
      throw BundleError.member(
        header.name, at: header.offset,
        "\(listed ? "out of order" : "not listed in the manifest"): the manifest lists '\(expected.name)' next"
      )
    }
    guard header.size == expected.size else {
      throw BundleError.member(
        header.name, at: header.offset,
        "\(header.size) bytes, but the manifest lists \(expected.size)")
    }
    nextIndex += 1
    current = expected
    return expected
  }

  /// Passes the rest of the current member's bytes to `body` in chunks, each valid only
  /// during the call: the restore copies pages straight from there into place.
  public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    try tar.forEachChunk { chunk, inPlace in
      // Data in place stays valid: the hashing thread reads it there, without a copy.
      if inPlace { hasher.update(inPlace: chunk) } else { hasher.update(chunk) }
      sha256?.update(chunk)
      try body(chunk)
    }
  }

  /// The rest of the current member in memory, refused (before reading) above `maxSize` bytes.
  public func readAll(maxSize: Int = BundleFormat.maxJSONMemberSize) throws -> [UInt8] {
    let bytes = try tar.readAll(maxSize: maxSize)
    bytes.withUnsafeBytes {
      hasher.update($0)
      sha256?.update($0)
    }
    return bytes
  }

  /// Checks the trailer against the digests computed while reading, then the end of the tar.
  private func verifyChecksums(_ header: TarMemberHeader) throws {
    guard header.name == BundleFormat.checksumsName else {
      throw BundleError.member(
        header.name, at: header.offset,
        "not listed in the manifest (all \(manifest.members.count) listed members were read; \(BundleFormat.checksumsName) should follow)"
      )
    }
    let trailerBytes = try tar.readAll(maxSize: BundleFormat.maxJSONMemberSize)
    let trailer = try Checksums.decode(trailerBytes)
    identity = SHA256.hash(data: trailerBytes).map { String(format: "%02x", $0) }.joined()
    let computed = hasher.digests()
    guard trailer.members.count == computed.count else {
      throw BundleError(
        "\(BundleFormat.checksumsName) lists \(trailer.members.count) members, the bundle has \(computed.count)"
      )
    }
    for (entry, actual) in zip(trailer.members, computed) {
      guard entry.name == actual.name else {
        throw BundleError(
          "\(BundleFormat.checksumsName) lists '\(entry.name.prefix(200))' where the bundle has '\(actual.name)'"
        )
      }
      guard entry.digest == actual.digest else {
        throw BundleError(
          "checksum mismatch for member '\(actual.name)': \(BundleFormat.checksumsName) says \(entry.digest.prefix(64)), its content hashes to \(actual.digest): the bundle is corrupt"
        )
      }
    }
    if var sha256 {
      trailerBytes.withUnsafeBytes { sha256.update($0) }
      sha256.finishMember(name: BundleFormat.checksumsName)
      signer = try verifySignature(computed: sha256.entries)
    }
    guard try tar.nextMember() == nil else {
      throw BundleError(
        "a member follows \(sha256 == nil ? BundleFormat.checksumsName : BundleSignature.memberName), which must be last"
      )
    }
    try tar.expectEndOfStream()
  }

  /// Checks `signature.json`, which must follow the checksums of a signed bundle: the
  /// SHA-256 it lists for every member are those computed while reading, and its Ed25519
  /// signature over them is valid for the public key it names. Returns that key; whether it
  /// is one the reader trusts is the caller's to decide.
  private func verifySignature(computed: [BundleSignature.Entry]) throws -> BundlePublicKey {
    guard let header = try tar.nextMember(), header.name == BundleSignature.memberName, header.kind == .file else {
      throw BundleError(
        "the manifest requires a signature, but \(BundleSignature.memberName) does not follow the checksums")
    }
    let signed = try BundleSignature.decode(try tar.readAll(maxSize: BundleFormat.maxJSONMemberSize))
    guard signed.algorithm == BundleSignature.algorithmName else {
      throw BundleError("\(BundleSignature.memberName): unknown algorithm '\(signed.algorithm.prefix(40))'")
    }
    guard signed.members == computed else {
      let first = zip(signed.members, computed).first { $0 != $1 }?.1.name ?? "the list of members"
      throw BundleError("the signature does not cover this bundle: \(first.prefix(200)) differs from what was signed")
    }
    let key = try BundlePublicKey(fileText: signed.publicKey)
    guard let signature = Data(base64Encoded: signed.signature),
      key.isValidSignature(signature, for: BundleSignature.message(computed))
    else {
      throw BundleError("the signature of \(key) is not valid for this bundle")
    }
    return key
  }
}
