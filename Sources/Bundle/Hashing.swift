import CXXHash

/// XXH3-128 of each member in turn, computed inline as the bytes pass through the writer or
/// the reader. XXH3 hashes at about memory speed, so a second hashing thread (and the copy
/// into its buffers) would cost about as much as it saves; see ``BundleFormat`` for the numbers.
struct MemberHasher: ~Copyable {
  /// The name and lower-case hex digest of every finished member, in stream order.
  private(set) var digests: [(name: String, digest: String)] = []
  /// Owned: created here, freed in `deinit`. libxxhash allocates it because the state must be
  /// 64-byte aligned, which a Swift stored property cannot promise.
  private let state: OpaquePointer

  /// A hasher ready for the first member.
  init() {
    guard let state = XXH3_createState() else {
      fatalError("XXH3_createState: out of memory")
    }
    XXH3_128bits_reset(state)
    self.state = state
  }

  deinit { XXH3_freeState(state) }

  /// Adds bytes to the current member's digest.
  mutating func update(_ bytes: UnsafeRawBufferPointer) {
    XXH3_128bits_update(state, bytes.baseAddress, bytes.count)
  }

  /// Ends the current member; its digest is listed under `name`.
  mutating func finishMember(name: String) {
    var canonical = XXH128_canonical_t()
    XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state))
    // Canonical form is big-endian, the byte order `xxhsum -H2` prints.
    digests.append((name, withUnsafeBytes(of: canonical.digest) { hex($0) }))
    XXH3_128bits_reset(state)
  }
}

/// Lower-case hex of a digest.
func hex(_ digest: some Sequence<UInt8>) -> String {
  let digits = Array("0123456789abcdef".utf8)
  var out: [UInt8] = []
  for byte in digest {
    out.append(digits[Int(byte >> 4)])
    out.append(digits[Int(byte & 0xF)])
  }
  return String(decoding: out, as: UTF8.self)
}
