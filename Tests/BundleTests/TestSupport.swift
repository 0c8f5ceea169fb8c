import Foundation
import Testing

@testable import Bundle

/// SplitMix64: a tiny deterministic generator so that property tests repeat exactly.
struct SeededGenerator: RandomNumberGenerator {
  var state: UInt64
  init(seed: UInt64) { state = seed }
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// `count` pseudo-random bytes.
func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
  var generator = SeededGenerator(seed: seed)
  var bytes = [UInt8](repeating: 0, count: count)
  var index = 0
  while index < count {
    var word = generator.next()
    for _ in 0..<8 where index < count {
      bytes[index] = UInt8(truncatingIfNeeded: word)
      word >>= 8
      index += 1
    }
  }
  return bytes
}

let fixedDate = Date(timeIntervalSince1970: 1_735_689_600)  // 2025-01-01T00:00:00Z

/// A manifest listing `members`.
func makeManifest(_ members: [(name: String, data: [UInt8])]) -> Manifest {
  Manifest(
    toolVersion: "0.1.0", kernelRelease: "6.8.0-test",
    cpu: .init(xsaveFeatures: 0x2E7, xsaveSize: 2696),
    sourceCgroup: "/sys/fs/cgroup/test", created: fixedDate,
    members: members.map { Manifest.Member(name: $0.name, size: $0.data.count) })
}

/// A complete bundle of `members`, written in chunks of at most `chunk` bytes.
func writeBundle(
  _ members: [(name: String, data: [UInt8])], manifest: Manifest? = nil, chunk: Int = 1 << 20
) throws -> [UInt8] {
  let sink = MemorySink()
  let writer = try BundleWriter(sink: sink, manifest: manifest ?? makeManifest(members))
  for member in members {
    try writer.beginMember(name: member.name, size: member.data.count)
    try member.data.withUnsafeBytes { all in
      var offset = 0
      repeat {
        let end = min(all.count, offset + chunk)
        try writer.write(UnsafeRawBufferPointer(rebasing: all[offset..<end]))
        offset = end
      } while offset < all.count
    }
    try writer.endMember()
  }
  try writer.finish()
  #expect(writer.bytesWritten == sink.bytes.count)
  return sink.bytes
}

/// Every member of a bundle with its bytes, read through `forEachChunk`.
func readBundle(_ bytes: [UInt8], maxReadSize: Int = .max) throws -> (
  Manifest, [(name: String, data: [UInt8])]
) {
  let reader = try BundleReader(source: MemorySource(bytes, maxReadSize: maxReadSize))
  var members: [(name: String, data: [UInt8])] = []
  while let member = try reader.nextMember() {
    var data: [UInt8] = []
    try reader.forEachChunk { data.append(contentsOf: $0) }
    members.append((member.name, data))
  }
  return (reader.manifest, members)
}

/// The message of the BundleError that verifying `bytes` throws, or nil if it verifies.
/// Read both as a stream and in place (as a mapped file is), which must agree.
func verificationError(_ bytes: [UInt8], maxReadSize: Int = .max) -> String? {
  func verify(_ source: any ByteSource) -> String? {
    do {
      _ = try BundleReader.verify(source: source)
      return nil
    } catch let error as BundleError {
      return error.message
    } catch {
      Issue.record("not a BundleError: \(error)")
      return "\(error)"
    }
  }
  let streamed = verify(MemorySource(bytes, maxReadSize: maxReadSize))
  let inPlace = verify(MemoryMappedSource(bytes))
  #expect(streamed == inPlace, "read as a stream and in place, the bundle gives different verdicts")
  return streamed
}

/// A bundle assembled by hand with the tar writer, bypassing the bundle writer's checks:
/// the manifest, `members` as given, and a trailer with the right digests unless `checksums`
/// is given, naming `algorithm`.
func handMadeBundle(
  manifest: Manifest, members: [(name: String, data: [UInt8])],
  checksums: [(name: String, digest: String)]? = nil,
  algorithm: String = Checksums.currentAlgorithm
) throws -> [UInt8] {
  let sink = MemorySink()
  let tar = TarWriter(sink: sink, mtime: 0)
  let manifestBytes = try manifest.encoded()
  var digests: [(name: String, digest: String)] = []
  for member in [(BundleFormat.manifestName, manifestBytes)] + members {
    try tar.beginMember(name: member.0, size: member.1.count)
    try member.1.withUnsafeBytes { try tar.write($0) }
    try tar.endMember()
    digests.append((member.0, digest(member.1)))
  }
  let trailer = Checksums(
    algorithm: algorithm,
    members: (checksums ?? digests).map { .init(name: $0.name, digest: $0.digest) })
  let trailerBytes = try Array(BundleFormat.jsonEncoder.encode(trailer))
  try tar.beginMember(name: BundleFormat.checksumsName, size: trailerBytes.count)
  try trailerBytes.withUnsafeBytes { try tar.write($0) }
  try tar.endMember()
  try tar.finish()
  return sink.bytes
}

/// The digest `checksums.json` lists for a member holding `bytes`, as the bundle's own hasher
/// computes it (pinned to independent values by `BundleTests.digestsMatchXxhsum`).
func digest(_ bytes: [UInt8]) -> String {
  let hasher = MemberHasher()
  defer { hasher.stop() }
  bytes.withUnsafeBytes { hasher.update($0) }
  hasher.finishMember(name: "")
  return hasher.digests()[0].digest
}

/// The bytes of a tar built from raw header blocks and data, for headers no writer would make.
func rawTar(_ entries: [(header: [UInt8], data: [UInt8])], endBlocks: Bool = true) -> [UInt8] {
  var out: [UInt8] = []
  for entry in entries {
    out +=
      entry.header + entry.data + [UInt8](repeating: 0, count: TarHeader.padding(entry.data.count))
  }
  if endBlocks { out += [UInt8](repeating: 0, count: 1024) }
  return out
}

/// Reads every member of a tar, returning names and data, or throws the reader's error.
func readTar(_ bytes: [UInt8], limits: TarLimits = TarLimits()) throws -> [(
  TarMemberHeader, [UInt8]
)] {
  let reader = TarReader(source: MemorySource(bytes), limits: limits)
  var members: [(TarMemberHeader, [UInt8])] = []
  while let header = try reader.nextMember() {
    members.append((header, try reader.readAll(maxSize: .max)))
  }
  try reader.expectEndOfStream()
  return members
}

/// The message of the BundleError thrown by `body`, or nil.
func errorMessage(_ body: () throws -> Void) -> String? {
  do {
    try body()
    return nil
  } catch let error as BundleError {
    return error.message
  } catch {
    return "not a BundleError: \(error)"
  }
}
