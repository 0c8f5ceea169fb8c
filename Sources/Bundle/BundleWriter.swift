import Foundation

/// Writes a bundle as a stream: `manifest.json` first, then the members exactly as the
/// manifest lists them (same order, same sizes), then `checksums.json` and the end of the tar.
/// Every member's XXH3-128 is computed on the way through (see ``MemberHasher``).
public final class BundleWriter {
  /// The manifest written first.
  public let manifest: Manifest
  private let tar: TarWriter
  private let hasher: MemberHasher
  private var nextIndex = 0
  private var open: String?
  private let signingKey: BundleSigningKey?
  private var sha256: MemberSHA256?

  /// Validates `manifest` and writes it as the first member to `sink`. Every member's mtime is
  /// the manifest's creation time. With `signingKey`, every member is hashed with SHA-256 too
  /// and `signature.json` ends the bundle; the manifest must then require "signature".
  public init(sink: any ByteSink, manifest: Manifest, signingKey: BundleSigningKey? = nil) throws {
    try manifest.validate()
    let signed = manifest.requires?.contains(BundleFormat.Requirement.signature.rawValue) == true
    guard signed == (signingKey != nil) else {
      throw BundleError("bundle writer: a signed bundle's manifest requires \"signature\", an unsigned one's does not")
    }
    self.manifest = manifest
    self.signingKey = signingKey
    let created = manifest.creationDate.map { Int($0.timeIntervalSince1970) } ?? 0
    tar = TarWriter(sink: sink, mtime: created)
    let bytes = try manifest.encoded()
    try Self.writeWhole(tar, name: BundleFormat.manifestName, bytes: bytes)
    if signingKey != nil {
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

  /// The number of bytes written to the sink so far.
  public var bytesWritten: Int { tar.bytesWritten }

  /// Writes a whole small member (a JSON document, an index).
  public func add(name: String, data: some ContiguousBytes) throws {
    try beginMember(name: name, size: data.withUnsafeBytes { $0.count })
    try data.withUnsafeBytes { try write($0) }
    try endMember()
  }

  /// Starts the next member listed in the manifest; `name` and `size` must match the listing.
  public func beginMember(name: String, size: Int) throws {
    guard nextIndex < manifest.members.count else {
      throw BundleError(
        "bundle writer: '\(name)' is not listed in the manifest (all its members are written)")
    }
    let expected = manifest.members[nextIndex]
    guard name == expected.name else {
      let listed = manifest.members.contains { $0.name == name }
      throw BundleError(
        "bundle writer: '\(name)' \(listed ? "is out of order" : "is not listed in the manifest"): the manifest lists '\(expected.name)' next"
      )
    }
    guard size == expected.size else {
      throw BundleError(
        "bundle writer: '\(name)' has \(size) bytes, but the manifest lists \(expected.size)")
    }
    try tar.beginMember(name: name, size: size)
    nextIndex += 1
    open = name
  }

  /// Appends data to the open member. `bytes` may be reused as soon as this returns.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    try tar.write(bytes)
    hasher.update(bytes)
    sha256?.update(bytes)
  }

  /// Appends `count` bytes to the open member and lets `fill` write them in place; returns
  /// false (appending nothing) when the sink cannot, and the caller writes them instead.
  /// The bytes are hashed where they lie, after `fill` returns.
  public func writeInPlace(count: Int, _ fill: (InPlaceRegion) throws -> Void) throws -> Bool {
    guard let region = try tar.appendInPlace(count: count) else { return false }
    try fill(region)
    hasher.update(inPlace: UnsafeRawBufferPointer(region.bytes))
    sha256?.update(UnsafeRawBufferPointer(region.bytes))
    return true
  }

  /// Ends the open member; throws if fewer bytes were written than its size.
  public func endMember() throws {
    try tar.endMember()
    if let open {
      hasher.finishMember(name: open)
      sha256?.finishMember(name: open)
    }
    open = nil
  }

  /// Writes `checksums.json` and the end-of-archive blocks; throws if a listed member is missing.
  public func finish() throws {
    guard nextIndex == manifest.members.count else {
      throw BundleError(
        "bundle writer: the manifest lists '\(manifest.members[nextIndex].name)', which was not written"
      )
    }
    let checksums = Checksums(
      members: hasher.digests().map { Checksums.Entry(name: $0.name, digest: $0.digest) })
    let trailer = Array(try BundleFormat.jsonEncoder.encode(checksums))
    try Self.writeWhole(tar, name: BundleFormat.checksumsName, bytes: trailer)
    if let signingKey, var sha256 {
      trailer.withUnsafeBytes { sha256.update($0) }
      sha256.finishMember(name: BundleFormat.checksumsName)
      let message = BundleSignature.message(sha256.entries)
      let signature = BundleSignature(
        algorithm: BundleSignature.algorithmName, publicKey: signingKey.publicKey.base64, members: sha256.entries,
        signature: try signingKey.sign(message).base64EncodedString())
      try Self.writeWhole(
        tar, name: BundleSignature.memberName, bytes: Array(try BundleFormat.jsonEncoder.encode(signature)))
    }
    try tar.finish()
  }

  /// Writes a member that the manifest does not list (the manifest and the trailer), unhashed.
  private static func writeWhole(_ tar: TarWriter, name: String, bytes: [UInt8]) throws {
    try tar.beginMember(name: name, size: bytes.count)
    try bytes.withUnsafeBytes { try tar.write($0) }
    try tar.endMember()
  }
}
