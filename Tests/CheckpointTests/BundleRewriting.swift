import Bundle

/// `bundle` with its manifest edited, the member `replaced` rewritten and
/// `extra` members added at the end, re-checksummed (as a tool could).
func rewriteBundle(
  _ bundle: [UInt8],
  adding extra: [(String, [UInt8])] = [], _ edit: (inout Manifest) -> Void = { _ in },
  replacing replaced: String? = nil,
  with replace: ([UInt8]) throws -> [UInt8] = { $0 }
) throws -> [UInt8] {
  let reader = try BundleReader(source: MemorySource(bundle))
  var contents: [String: [UInt8]] = [:]
  var manifest = reader.manifest
  edit(&manifest)
  manifest.members += extra.map { Manifest.Member(name: $0.0, size: $0.1.count) }
  var members: [(String, [UInt8])] = []
  while let member = try reader.nextMember() {
    var bytes: [UInt8] = []
    try reader.forEachChunk { bytes += $0 }
    if member.name == replaced { bytes = try replace(bytes) }
    contents[member.name] = bytes
    members.append((member.name, bytes))
  }
  for index in manifest.members.indices {
    if let bytes = contents[manifest.members[index].name] { manifest.members[index].size = bytes.count }
  }
  let sink = MemorySink()
  let writer = try BundleWriter(sink: sink, manifest: manifest)
  for (name, bytes) in members { try writer.add(name: name, data: bytes) }
  for (name, bytes) in extra { try writer.add(name: name, data: bytes) }
  try writer.finish()
  return sink.bytes
}
