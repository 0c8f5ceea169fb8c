import Foundation
import Testing

@testable import Bundle

/// Bundles written and read back, and the writer's and reader's contracts.
struct BundleTests {
  @Test func roundTripsSmallAndLargeMembers() throws {
    let members: [(name: String, data: [UInt8])] = [
      ("inventory.json", Array("{}".utf8)),
      ("empty", []),
      (
        "tasks/1/" + String(repeating: "long-", count: 40) + "core.json",
        randomBytes(3000, seed: 20)
      ),
      ("pages/1.img", randomBytes(6 << 20 + 4096, seed: 21)),
    ]
    let bytes = try writeBundle(members, chunk: 4096)
    let (manifest, read) = try readBundle(bytes)
    #expect(manifest == makeManifest(members))
    #expect(read.map(\.name) == members.map(\.name))
    #expect(read.map(\.data) == members.map(\.data))
    #expect(try BundleReader.verify(source: MemorySource(bytes)) == manifest)
  }

  @Test func roundTripsABundleWithNoMembers() throws {
    let bytes = try writeBundle([])
    let (manifest, read) = try readBundle(bytes)
    #expect(manifest.members.isEmpty)
    #expect(read.isEmpty)
  }

  @Test func manifestIsFirstAndChecksumsLast() throws {
    let members: [(name: String, data: [UInt8])] = [("a", [1]), ("b", [2, 3])]
    let names = try readTar(try writeBundle(members)).map(\.0.name)
    #expect(names == ["manifest.json", "a", "b", "checksums.json"])
  }

  /// Known answers from `xxhsum -H2` 0.8.1 (Debian's xxhash package), which prints the
  /// canonical big-endian form: they pin the algorithm, the byte order and the streaming across
  /// chunk boundaries, independently of libxxhash as linked here.
  @Test func digestsMatchXxhsum() throws {
    let pattern = (0..<100_000).map { UInt8($0 % 251) }
    let members: [(name: String, data: [UInt8])] = [
      ("empty", []),
      ("abc", Array("abc".utf8)),
      ("fox", Array("The quick brown fox jumps over the lazy dog".utf8)),
      ("pattern", pattern),
    ]
    let trailer = try #require(try readTar(try writeBundle(members, chunk: 4093)).last?.1)
    let text = String(decoding: trailer, as: UTF8.self)
    #expect(text.contains(#""algorithm" : "xxh3-128""#), "\(text)")
    let checksums = try Checksums.decode(trailer)
    #expect(checksums.members.map(\.name) == ["manifest.json"] + members.map(\.name))
    #expect(
      checksums.members.dropFirst().map(\.digest) == [
        "99aa06d3014798d86001c324468d497f",
        "06b05ab6733a618578af5f94892f3950",
        "ddd650205ca3e7fa24a1cc2e3a8a7651",
        "54182c58bbb1337c42c23aeead96750d",
      ])
  }

  @Test func manifestRoundTripsThroughJSON() throws {
    let manifest = makeManifest([("a", [1, 2, 3])])
    #expect(manifest.created == "2025-01-01T00:00:00Z")
    #expect(manifest.creationDate == fixedDate)
    let decoded = try Manifest.decode(try manifest.encoded())
    #expect(decoded == manifest)
    #expect(decoded.cpu.xsaveFeatures == 0x2E7)
  }

  @Test func readAllLoadsSmallMembersWithinACap() throws {
    let members: [(name: String, data: [UInt8])] = [
      ("small.json", Array("[1,2,3]".utf8)), ("large.json", randomBytes(10_000, seed: 22)),
    ]
    let bytes = try writeBundle(members)
    let largeOffset = try #require(try readTar(bytes).first { $0.0.name == "large.json" }?.0.offset)
    let reader = try BundleReader(source: MemorySource(bytes))
    #expect(try reader.nextMember()?.name == "small.json")
    #expect(try reader.readAll() == Array("[1,2,3]".utf8))
    #expect(try reader.nextMember()?.name == "large.json")
    #expect(
      errorMessage { _ = try reader.readAll(maxSize: 9_999) }
        == "member 'large.json' at byte \(largeOffset): 10000 bytes, the limit for this member is 9999"
    )
  }

  @Test func membersMayBeSkippedOrReadInPartsAndAreStillVerified() throws {
    let members: [(name: String, data: [UInt8])] = [
      ("a", randomBytes(100_000, seed: 23)), ("b", randomBytes(5, seed: 24)),
    ]
    let bytes = try writeBundle(members)
    let reader = try BundleReader(source: MemorySource(bytes, maxReadSize: 3000))
    _ = try reader.nextMember()  // skip "a" entirely
    _ = try reader.nextMember()
    #expect(try reader.readAll() == members[1].data)
    #expect(try reader.nextMember() == nil)
    #expect(try reader.nextMember() == nil)

    // The same with a corrupt skipped member: the skip still hashes it.
    var corrupt = bytes
    let aOffset = try #require(try readTar(bytes).first { $0.0.name == "a" }?.0.offset)
    corrupt[aOffset + 512 + 50_000] ^= 0x40
    let skipping = try BundleReader(source: MemorySource(corrupt))
    _ = try skipping.nextMember()
    _ = try skipping.nextMember()
    #expect(
      errorMessage { _ = try skipping.nextMember() }?.hasPrefix("checksum mismatch for member 'a':")
        == true)
  }

  @Test func writerRefusesMembersTheManifestDoesNotList() throws {
    let manifest = makeManifest([("a", [1, 2]), ("b", [3])])
    func writer() throws -> BundleWriter {
      try BundleWriter(sink: MemorySink(), manifest: manifest)
    }
    #expect(
      errorMessage { try writer().beginMember(name: "c", size: 1) }
        == "bundle writer: 'c' is not listed in the manifest: the manifest lists 'a' next")
    #expect(
      errorMessage { try writer().beginMember(name: "b", size: 1) }
        == "bundle writer: 'b' is out of order: the manifest lists 'a' next")
    #expect(
      errorMessage { try writer().beginMember(name: "a", size: 3) }
        == "bundle writer: 'a' has 3 bytes, but the manifest lists 2")
    #expect(
      errorMessage { try writer().add(name: "a", data: [1, 2, 3]) }
        == "bundle writer: 'a' has 3 bytes, but the manifest lists 2")
    #expect(
      errorMessage { try writer().finish() }
        == "bundle writer: the manifest lists 'a', which was not written")

    let short = try writer()
    try short.beginMember(name: "a", size: 2)
    try ([1] as [UInt8]).withUnsafeBytes { try short.write($0) }
    #expect(
      errorMessage { try short.endMember() } == "member 'a': 1 bytes written, but its header says 2"
    )

    let full = try writer()
    try full.add(name: "a", data: [1, 2])
    try full.add(name: "b", data: Data([3]))
    #expect(
      errorMessage { try full.add(name: "c", data: [4]) }
        == "bundle writer: 'c' is not listed in the manifest (all its members are written)")
    try full.finish()
  }

  @Test func writerRefusesAnInvalidManifest() {
    var manifest = makeManifest([("a", [1]), ("a", [2])])
    #expect(
      errorMessage { _ = try BundleWriter(sink: MemorySink(), manifest: manifest) }
        == "manifest.json: member list: 'a' appears twice")
    manifest = makeManifest([("../a", [1])])
    #expect(
      errorMessage { _ = try BundleWriter(sink: MemorySink(), manifest: manifest) }
        == "manifest.json: member list: name \"../a\" has a '..' component")
    manifest = makeManifest([("checksums.json", [1])])
    #expect(
      errorMessage { _ = try BundleWriter(sink: MemorySink(), manifest: manifest) }
        == "manifest.json: member list: 'checksums.json' is reserved")
    manifest = makeManifest([])
    manifest.created = "yesterday"
    #expect(
      errorMessage { _ = try BundleWriter(sink: MemorySink(), manifest: manifest) }
        == "manifest.json: created \"yesterday\" is not an ISO-8601 time")
    for bad in ["2026-02-30T10:00:00Z", "2026-12-07T24:00:00Z", "2026-12-07 10:00:00Z", "2026-12-07T10:00:00"] {
      manifest.created = bad
      #expect(manifest.creationDate == nil, "\(bad)")
    }
    manifest.created = "2024-02-29T23:59:59Z"
    #expect(manifest.creationDate == Date(timeIntervalSince1970: 1_709_251_199))
  }

  @Test func sinkErrorsReachTheCaller() throws {
    final class FailingSink: ByteSink {
      var budget: Int
      init(budget: Int) { self.budget = budget }
      func write(_ bytes: UnsafeRawBufferPointer) throws {
        budget -= bytes.count
        if budget < 0 { throw BundleError("disk full") }
      }
    }
    let manifest = makeManifest([("a", randomBytes(10_000, seed: 25))])
    #expect(
      errorMessage { _ = try BundleWriter(sink: FailingSink(budget: 100), manifest: manifest) }
        == "disk full")
    let writer = try BundleWriter(sink: FailingSink(budget: 5000), manifest: manifest)
    #expect(
      errorMessage { try writer.add(name: "a", data: randomBytes(10_000, seed: 25)) } == "disk full"
    )
  }

  /// Random member sets, random write chunking, random read sizes: what goes in comes out.
  @Test(arguments: [1, 2, 3, 4, 5, 6] as [UInt64])
  func randomBundlesRoundTrip(seed: UInt64) throws {
    var generator = SeededGenerator(seed: seed)
    let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789._-")
    var members: [(name: String, data: [UInt8])] = []
    var names = Set<String>()
    for index in 0..<Int.random(in: 0...10, using: &generator) {
      let components = (0..<Int.random(in: 1...6, using: &generator)).map { _ in
        "c"
          + String(
            (0..<Int.random(in: 0...60, using: &generator)).map { _ in
              alphabet.randomElement(using: &generator)!
            })
      }
      let name = "\(index)/" + components.joined(separator: "/")
      guard names.insert(name).inserted else { continue }
      let size = [0, 1, 511, 512, 513, Int.random(in: 0...(3 << 20), using: &generator)]
        .randomElement(using: &generator)!
      members.append((name, randomBytes(size, seed: generator.next())))
    }
    let bytes = try writeBundle(members, chunk: Int.random(in: 1...(1 << 20), using: &generator))
    let (manifest, read) = try readBundle(
      bytes, maxReadSize: Int.random(in: 1...(2 << 20), using: &generator))
    #expect(manifest.members.map(\.name) == members.map(\.name))
    #expect(read.map(\.name) == members.map(\.name))
    #expect(read.map(\.data) == members.map(\.data))
  }
}
