/// Bundles made from raw parts: valid checksums and nothing else checked, as a forger's tool
/// or a fuzzer makes them, to reach what a reader does past the checksums. ckcont itself
/// writes bundles only through ``BundleWriter``.
public enum UncheckedBundle {
  /// The manifest's bytes and every member as read from `bytes`, which must verify.
  public static func parts(of bytes: [UInt8]) throws -> (manifest: Manifest, members: [(name: String, bytes: [UInt8])])
  {
    let reader = try BundleReader(source: MemorySource(bytes))
    var members: [(name: String, bytes: [UInt8])] = []
    while let member = try reader.nextMember() {
      var data: [UInt8] = []
      try reader.forEachChunk { data.append(contentsOf: $0) }
      members.append((member.name, data))
    }
    return (reader.manifest, members)
  }

  /// A tar of `manifest` (raw bytes, unchecked), `members` in order, and checksums.json
  /// over them all.
  public static func write(manifest: [UInt8], members: [(name: String, bytes: [UInt8])]) throws -> [UInt8] {
    let sink = MemorySink()
    let tar = TarWriter(sink: sink, mtime: 0)
    let hasher = MemberHasher()
    defer { hasher.stop() }
    for (name, bytes) in [(BundleFormat.manifestName, manifest)] + members {
      try tar.beginMember(name: name, size: bytes.count)
      try bytes.withUnsafeBytes {
        try tar.write($0)
        hasher.update($0)
      }
      try tar.endMember()
      hasher.finishMember(name: name)
    }
    let checksums = Checksums(members: hasher.digests().map { Checksums.Entry(name: $0.name, digest: $0.digest) })
    let trailer = Array(try BundleFormat.jsonEncoder.encode(checksums))
    try tar.beginMember(name: BundleFormat.checksumsName, size: trailer.count)
    try trailer.withUnsafeBytes { try tar.write($0) }
    try tar.endMember()
    try tar.finish()
    return sink.bytes
  }
}
