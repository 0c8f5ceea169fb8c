import Foundation
import Testing

@testable import Bundle

/// Signed bundles: what signing adds, and the forgeries a signature must catch that the
/// checksums cannot (whoever edits a member can write checksums.json again).
struct SignatureTests {
  static let members: [(name: String, data: [UInt8])] = [
    ("tasks/1/core.json", Array(#"{"a":1}"#.utf8)), ("tasks/1/pages.img", randomBytes(3 << 20, seed: 5)),
  ]

  func signedManifest(_ members: [(name: String, data: [UInt8])]) -> Manifest {
    var manifest = makeManifest(members)
    manifest.requires = [BundleFormat.Requirement.signature.rawValue]
    return manifest
  }

  func signedBundle(_ key: BundleSigningKey, _ members: [(name: String, data: [UInt8])] = members) throws -> [UInt8] {
    let sink = MemorySink()
    let writer = try BundleWriter(sink: sink, manifest: signedManifest(members), signingKey: key)
    for member in members { try writer.add(name: member.name, data: member.data) }
    try writer.finish()
    return sink.bytes
  }

  /// The members of a tar, `edit`ed, written again as a tar (no checks: a forger's tool).
  func retar(_ bytes: [UInt8], _ edit: (inout [(name: String, data: [UInt8])]) throws -> Void) throws -> [UInt8] {
    var members = try readTar(bytes).map { (name: $0.0.name, data: $0.1) }
    try edit(&members)
    let sink = MemorySink()
    let tar = TarWriter(sink: sink, mtime: 0)
    for member in members {
      try tar.beginMember(name: member.name, size: member.data.count)
      try member.data.withUnsafeBytes { try tar.write($0) }
      try tar.endMember()
    }
    try tar.finish()
    return sink.bytes
  }

  @Test func aSignedBundleNamesItsSignerAndEndsWithTheSignature() throws {
    let key = BundleSigningKey()
    let bytes = try signedBundle(key)
    #expect(try readTar(bytes).map(\.0.name).suffix(2) == ["checksums.json", "signature.json"])
    #expect(try BundleReader.signer(source: MemorySource(bytes)) == key.publicKey)
    #expect(try BundleReader.signer(source: MemorySource(try writeBundle(Self.members))) == nil)
    // Keys survive their files.
    #expect(try BundleSigningKey(fileText: key.fileText).publicKey == key.publicKey)
    #expect(try BundlePublicKey(fileText: key.publicKey.fileText) == key.publicKey)
    #expect(try BundlePublicKey(fileText: key.publicKey.base64) == key.publicKey)
    #expect(throws: BundleError.self) { try BundleSigningKey(fileText: key.publicKey.fileText) }
  }

  @Test func aMemberChangedWithItsChecksumsWrittenAgainIsRefused() throws {
    let bytes = try signedBundle(BundleSigningKey())
    let forged = try retar(bytes) { members in
      members[2].data[100] ^= 1
      let checksums = try Checksums.decode(members[3].data)
      var entries = checksums.members
      entries[2].digest = digestOfBytes(members[2].data)
      members[3].data = Array(try BundleFormat.jsonEncoder.encode(Checksums(members: entries)))
    }
    let error = try #require(throws: BundleError.self) { try BundleReader.verify(source: MemorySource(forged)) }
    #expect(error.message.contains("the signature does not cover this bundle"), "\(error)")
  }

  @Test func aSignatureByAnotherKeyOrForAnotherBundleIsRefused() throws {
    let bytes = try signedBundle(BundleSigningKey())
    // The digests kept, the key swapped: the signature no longer checks.
    let otherKey = try retar(bytes) { members in
      var signature = try BundleSignature.decode(members[4].data)
      signature.publicKey = BundleSigningKey().publicKey.base64
      members[4].data = Array(try BundleFormat.jsonEncoder.encode(signature))
    }
    let error = try #require(throws: BundleError.self) { try BundleReader.verify(source: MemorySource(otherKey)) }
    #expect(error.message.contains("is not valid for this bundle"), "\(error)")
    // Signed whole by someone else: valid, and named, so that the caller's trust decides.
    let resigned = try signedBundle(BundleSigningKey())
    #expect(try BundleReader.signer(source: MemorySource(resigned)) != nil)
    // The signature left out of a bundle whose manifest requires one.
    let stripped = try retar(bytes) { $0.removeLast() }
    let missing = try #require(throws: BundleError.self) { try BundleReader.verify(source: MemorySource(stripped)) }
    #expect(missing.message.contains("does not follow the checksums"), "\(missing)")
  }

  @Test func theWriterSignsOnlyWhatItsManifestDeclares() throws {
    #expect(throws: BundleError.self) {
      try BundleWriter(sink: MemorySink(), manifest: makeManifest(Self.members), signingKey: BundleSigningKey())
    }
    #expect(throws: BundleError.self) { try BundleWriter(sink: MemorySink(), manifest: signedManifest(Self.members)) }
  }
}

/// The XXH3-128 checksums.json would list for `bytes`.
func digestOfBytes(_ bytes: [UInt8]) -> String {
  let hasher = MemberHasher()
  defer { hasher.stop() }
  bytes.withUnsafeBytes { hasher.update($0) }
  hasher.finishMember(name: "x")
  return hasher.digests().first?.digest ?? ""
}
