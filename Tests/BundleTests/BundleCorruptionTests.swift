import Foundation
import Testing

@testable import Bundle

/// A bundle is untrusted input: every kind of damage must end in a BundleError that says
/// what is wrong and where, never in a crash or in silently accepted data.
struct BundleCorruptionTests {
  static let members: [(name: String, data: [UInt8])] = [
    ("inventory.json", Array("{\"tasks\":[1]}".utf8)),
    ("tasks/" + String(repeating: "n", count: 120) + ".json", randomBytes(600, seed: 30)),
    ("pages/1.img", randomBytes(2000, seed: 31)),
  ]

  @Test func truncationAnywhereIsAnError() throws {
    let bytes = try writeBundle(Self.members)
    for length in 0..<bytes.count {
      #expect(verificationError(Array(bytes.prefix(length))) != nil, "truncated to \(length) bytes")
    }
  }

  @Test func truncationOfALargeBundleIsAnErrorThatSaysWhere() throws {
    let members = Self.members + [("pages/2.img", randomBytes(3 << 20, seed: 32))]
    let bytes = try writeBundle(members)
    var generator = SeededGenerator(seed: 33)
    let lengths =
      Array(0..<4096) + (0..<150).map { _ in Int.random(in: 4096..<bytes.count, using: &generator) }
    for length in lengths {
      #expect(
        verificationError(Array(bytes.prefix(length)), maxReadSize: 65536) != nil,
        "truncated to \(length) bytes")
    }
    // Inside the big member: the message names it and says how far it got.
    let offsets = try readTar(bytes).map(\.0.offset)
    let cut = offsets[4] + 512 + 1_000_000
    #expect(
      verificationError(Array(bytes.prefix(cut)))
        == "member 'pages/2.img' at byte \(offsets[4]): the stream ends at byte \(cut), after 1000000 of its 3145728 bytes"
    )
    // Between members: the message says where and what was expected.
    #expect(
      verificationError(Array(bytes.prefix(offsets[2])))
        == "truncated stream: it ends at byte \(offsets[2]) while reading a member header or the end-of-archive blocks at byte \(offsets[2])"
    )
  }

  @Test func aFlippedByteAnywhereIsAnErrorNamingThePlace() throws {
    let bytes = try writeBundle(Self.members)
    let layout = try readTar(bytes).map(\.0)
    // The data start of each member: its header, plus a pax header and one records block if
    // the name needs one.
    func dataStart(_ header: TarMemberHeader) -> Int {
      header.offset + (header.name.utf8.count > TarHeader.ustarNameLength ? 3 * 512 : 512)
    }
    for offset in 0..<bytes.count {
      var corrupt = bytes
      corrupt[offset] ^= 0x5A
      guard let message = verificationError(corrupt) else {
        Issue.record("a flipped byte at \(offset) went unnoticed")
        continue
      }
      let member = layout.last { $0.offset <= offset }
      guard let member, offset < dataStart(member) + member.size + TarHeader.padding(member.size)
      else { continue }  // end blocks
      if offset < dataStart(member) {
        // Tar checksums cover header blocks, not pax records: damaged records are caught by
        // their syntax or, for a changed path, as a member the manifest does not list.
        let inPaxRecords =
          dataStart(member) - member.offset > 512 && offset >= member.offset + 512
          && offset < member.offset + 1024
        #expect(
          message.contains(inPaxRecords ? "at byte \(member.offset): " : "header at byte"),
          "\(offset): \(message)")
      } else if offset >= dataStart(member) + member.size {
        #expect(
          message
            == "member '\(member.name)' at byte \(member.offset): non-zero padding after its data",
          "\(offset)")
      } else if Self.members.contains(where: { $0.name == member.name }) {
        #expect(
          message.hasPrefix("checksum mismatch for member '\(member.name)': "),
          "\(offset): \(message)")
      }
    }
  }

  @Test func aCorruptChecksumsTrailerIsAnError() throws {
    let manifest = makeManifest(Self.members)
    let manifestDigest = digest(try manifest.encoded())
    let digests = Self.members.map { (name: $0.name, digest: digest($0.data)) }
    let right = [(name: BundleFormat.manifestName, digest: manifestDigest)] + digests
    #expect(
      verificationError(
        try handMadeBundle(manifest: manifest, members: Self.members, checksums: right)) == nil)

    var wrongDigest = right
    wrongDigest[2].digest = String(repeating: "0", count: 32)
    #expect(
      verificationError(
        try handMadeBundle(manifest: manifest, members: Self.members, checksums: wrongDigest))
        == "checksum mismatch for member '\(Self.members[1].name)': checksums.json says \(String(repeating: "0", count: 32)), its content hashes to \(digests[1].digest): the bundle is corrupt"
    )
    #expect(
      verificationError(
        try handMadeBundle(
          manifest: manifest, members: Self.members, checksums: Array(right.dropLast())))
        == "checksums.json lists 3 members, the bundle has 4")
    var renamed = right
    renamed[3].name = "other"
    #expect(
      verificationError(
        try handMadeBundle(manifest: manifest, members: Self.members, checksums: renamed))
        == "checksums.json lists 'other' where the bundle has 'pages/1.img'")
  }

  @Test func aTrailerWithAnotherAlgorithmIsRefused() throws {
    let manifest = makeManifest(Self.members)
    #expect(
      verificationError(
        try handMadeBundle(manifest: manifest, members: Self.members, algorithm: "sha256"))
        == "checksums.json: unknown algorithm 'sha256': this ckcont verifies only xxh3-128")
  }

  @Test func wrongMagicIsRefused() throws {
    var manifest = makeManifest([])
    manifest.magic = "tarball"
    #expect(
      verificationError(try writeBundle([], manifest: manifest))
        == "not a ckcont bundle: manifest magic is \"tarball\"")
    // A tar whose first member is not a manifest, and a stream that is not a tar at all.
    let tar = rawTar([
      (
        TarHeader.block(
          name: "hello.txt", size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0), [1]
      )
    ])
    #expect(
      verificationError(tar)
        == "not a ckcont bundle: the first member is 'hello.txt', not manifest.json")
    #expect(
      verificationError(Array(repeating: 0x41, count: 2000))?.hasPrefix("tar header at byte 0: ")
        == true)
    #expect(
      verificationError([])
        == "truncated stream: it ends at byte 0 while reading a member header or the end-of-archive blocks at byte 0"
    )
  }

  @Test func anotherMajorVersionIsRefusedAndANewerMinorAccepted() throws {
    var manifest = makeManifest(Self.members)
    manifest.formatVersion = .init(major: 2, minor: 0)
    #expect(
      verificationError(try writeBundle(Self.members, manifest: manifest))
        == "bundle format 2.x is newer than this ckcont (1.x): upgrade ckcont")
    manifest.formatVersion = .init(major: 0, minor: 9)
    #expect(
      verificationError(try writeBundle(Self.members, manifest: manifest))
        == "bundle format 0.x is older than any format this ckcont (1.x) reads")
    manifest.formatVersion = .init(major: 1, minor: 7)
    #expect(verificationError(try writeBundle(Self.members, manifest: manifest)) == nil)
  }

  @Test func aNewerMajorVersionIsRefusedEvenIfItsManifestLooksDifferent() throws {
    let json = #"{"magic":"ckcont-bundle","formatVersion":{"major":2,"minor":0},"layout":"new"}"#
    let bundle = rawTar([
      (
        TarHeader.block(
          name: "manifest.json", size: json.utf8.count, typeflag: TarHeader.typeFile, mode: 0o644,
          mtime: 0), Array(json.utf8)
      )
    ])
    #expect(
      verificationError(bundle)
        == "bundle format 2.x is newer than this ckcont (1.x): upgrade ckcont")
  }

  @Test func invalidManifestFieldsAreRefused() throws {
    func manifestError(_ json: String) -> String? {
      errorMessage { _ = try Manifest.decode(Array(json.utf8)) }
    }
    let valid = String(decoding: try makeManifest([("a", [1])]).encoded(), as: UTF8.self)
    #expect(manifestError(valid) == nil)
    #expect(manifestError("not json")?.hasPrefix("manifest.json: invalid at '.'") == true)
    #expect(
      manifestError(valid.replacingOccurrences(of: "\"size\" : 1", with: "\"size\" : -1"))
        == "manifest.json: member list: 'a' has size -1, outside 0...1099511627776")
    #expect(
      manifestError(valid.replacingOccurrences(of: "\"size\" : 1", with: "\"size\" : 1.5"))?
        .hasPrefix("manifest.json: invalid at '") == true)
    #expect(
      manifestError(valid.replacingOccurrences(of: "\"a\"", with: "\"/etc/passwd\""))
        == "manifest.json: member list: absolute name \"/etc/passwd\"")
    #expect(
      manifestError(valid.replacingOccurrences(of: "2696", with: "99999999"))
        == "manifest.json: cpu.xsaveSize 99999999 is outside 0...1048576")
    #expect(
      manifestError(valid.replacingOccurrences(of: "\"toolVersion\"", with: "\"tool\""))
        == "manifest.json: invalid at '.': No value associated with key CodingKeys(stringValue: \"toolVersion\", intValue: nil) (\"toolVersion\")."
    )
  }

  /// The header offset of the member called `name` in a well-formed tar.
  func offset(of name: String, in bytes: [UInt8]) throws -> Int {
    try #require(try readTar(bytes).first { $0.0.name == name }?.0.offset)
  }

  @Test func unlistedAndMisorderedMembersAreRefused() throws {
    let manifest = makeManifest(Self.members)
    let extra = try handMadeBundle(
      manifest: manifest, members: Self.members + [("extra.json", [1])])
    #expect(
      verificationError(extra)
        == "member 'extra.json' at byte \(try offset(of: "extra.json", in: extra)): not listed in the manifest (all 3 listed members were read; checksums.json should follow)"
    )
    let swapped = try handMadeBundle(
      manifest: manifest, members: [Self.members[0], Self.members[2], Self.members[1]])
    #expect(
      verificationError(swapped)
        == "member 'pages/1.img' at byte \(try offset(of: "pages/1.img", in: swapped)): out of order: the manifest lists '\(Self.members[1].name)' next"
    )
    let unknown = try handMadeBundle(
      manifest: manifest, members: [Self.members[0], ("mystery", [1])])
    #expect(
      verificationError(unknown)
        == "member 'mystery' at byte \(try offset(of: "mystery", in: unknown)): not listed in the manifest: the manifest lists '\(Self.members[1].name)' next"
    )
    let missing = try handMadeBundle(manifest: manifest, members: Array(Self.members.prefix(2)))
    #expect(
      verificationError(missing)
        == "member 'checksums.json' at byte \(try offset(of: "checksums.json", in: missing)): not listed in the manifest: the manifest lists 'pages/1.img' next"
    )
  }

  @Test func sizeMismatchIsRefused() throws {
    let manifest = makeManifest(Self.members)
    var members = Self.members
    members[2].data.append(0)
    let bundle = try handMadeBundle(manifest: manifest, members: members)
    #expect(
      verificationError(bundle)
        == "member 'pages/1.img' at byte \(try offset(of: "pages/1.img", in: bundle)): 2001 bytes, but the manifest lists 2000"
    )
  }

  @Test func pathTraversalNamesAreRefused() throws {
    for name in ["../x", "/etc/passwd", "tasks/../../x"] {
      let bundle = rawTar([
        (
          TarHeader.block(name: name, size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0),
          [1]
        )
      ])
      #expect(verificationError(bundle)?.hasPrefix("tar header at byte 0: ") == true, "\(name)")
      // After a valid manifest, as a member.
      let manifest = try makeManifest([("x", [1])]).encoded()
      let padded = manifest.count + TarHeader.padding(manifest.count)
      let later = rawTar([
        (
          TarHeader.block(
            name: "manifest.json", size: manifest.count, typeflag: TarHeader.typeFile, mode: 0o644,
            mtime: 0), manifest
        ),
        (
          TarHeader.block(name: name, size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0),
          [1]
        ),
      ])
      let message = verificationError(later)
      #expect(
        message?.hasPrefix("tar header at byte \(512 + padded): ") == true,
        "\(message ?? "accepted")")
    }
  }

  @Test func aMemberAfterTheChecksumsIsRefused() throws {
    let bytes = try writeBundle(Self.members)
    let extra = rawTar([
      (
        TarHeader.block(name: "late", size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0),
        [1]
      )
    ])
    #expect(
      verificationError(Array(bytes.dropLast(1024)) + extra)
        == "a member follows checksums.json, which must be last")
  }
}
