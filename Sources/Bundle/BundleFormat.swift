import Foundation

/// The bundle format: a POSIX tar stream holding the checkpoint model. No system calls here,
/// so `inspect` and its tests run anywhere: everything works over ``ByteSink`` and
/// ``ByteSource``, which the engine implements over file descriptors and pipes.
///
/// Layout, in stream order (GNU `tar tvf` lists it, `tar xf` extracts it):
/// 1. `manifest.json` (``Manifest``): magic, format version, tool, kernel, CPU xfeatures,
///    cgroup, creation time, and every member that follows with its exact size.
/// 2. The members, exactly as the manifest lists them: JSON model members, then page members.
/// 3. `checksums.json`: the SHA-256 of every member before it, `manifest.json` included.
/// 4. The two zero blocks that end a tar. Nothing may follow.
///
/// Why the digests are in a trailer and not in the manifest (as DESIGN.md §4 first had it):
/// the bundle is written as a stream (`-o -`, pipes; no seeking back), the manifest must come
/// first so that a reader can refuse a bundle before reading gigabytes, and a digest is only
/// known after the last byte of its member has gone out. Sizes, on the other hand, are known
/// up front (the engine captures the page ranges before it reads the pages), so the manifest
/// lists sizes and the trailer lists digests. A reader therefore verifies at the end: a
/// restore that must not act on a corrupt bundle runs ``BundleReader/verify(source:)`` first.
///
/// Hashing throughput, measured on the 2-core AMD EPYC VM (SHA-NI) with 1 MiB chunks, debug
/// build, while other builds were running: swift-crypto's SHA-256 hashes 1.2-1.5 GB/s on one
/// core (`openssl speed -evp sha256`: 1.53 GB/s), memcpy runs at 9-10 GB/s. So SHA-256 of every
/// byte cannot reach the 2.3 GB/s dump target on one thread: hashing inline would bound the
/// dump by 1 / (1/1.4 + 1/engine) GB/s. ``MemberHasher`` therefore hashes on a second thread
/// behind a bounded queue of 4 × 1 MiB buffers (one copy at ~10 GB/s on the writer thread), so
/// that the hash overlaps page reads and sink writes and the bound becomes min(1.4, engine).
/// Measured through ``BundleWriter`` with a null sink and the writer thread doing three 1 MiB
/// copies per chunk (standing in for page reads and sink writes): 0.99 GB/s hashing inline,
/// 1.26 GB/s pipelined, 1.33 GB/s pipelined with no writer-side work (= the hash alone). With
/// the other core busy (other builds ran during most runs) pipelined and inline come out alike.
/// Reaching 2.3 GB/s on 2 cores needs a cheaper digest for page members (for instance CRC32C
/// or BLAKE3, which swift-crypto does not offer): the budget is ~0.43 ns per byte on 2 cores,
/// and SHA-256 alone takes ~0.7 ns per byte of one core.
public enum BundleFormat {
  /// The magic string written into every manifest.
  public static let magic = "ckcont-bundle"
  /// The current major version; readers refuse bundles with another major version.
  public static let majorVersion = 1
  /// The current minor version; readers accept any minor version of their major version.
  public static let minorVersion = 0

  /// The first member.
  public static let manifestName = "manifest.json"
  /// The last member, the SHA-256 of every member before it.
  public static let checksumsName = "checksums.json"
  /// The largest JSON member (manifest, model, checksums) a reader loads into memory.
  public static let maxJSONMemberSize = 64 << 20
  /// The largest member of any kind (1 TiB).
  public static let maxMemberSize = 1 << 40
  /// The most members a manifest may list.
  public static let maxMemberCount = 1_000_000
  /// The longest string field of the manifest, in UTF-8 bytes.
  static let maxStringLength = 4096
  /// The largest XSAVE area accepted (today's CPUs need about 11 KiB with AMX).
  static let maxXsaveSize = 1 << 20

  /// The encoder for every JSON member: stable key order, readable after `tar xf`.
  static var jsonEncoder: JSONEncoder {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    return encoder
  }

  /// Decodes a JSON member, turning decoding errors into a ``BundleError`` naming the member
  /// and the path of the offending field.
  static func decodeJSON<T: Decodable>(_ type: T.Type, from bytes: [UInt8], member: String) throws
    -> T
  {
    do {
      return try JSONDecoder().decode(type, from: Data(bytes))
    } catch let error as DecodingError {
      let context: DecodingError.Context
      switch error {
      case .typeMismatch(_, let c), .valueNotFound(_, let c), .keyNotFound(_, let c),
        .dataCorrupted(let c):
        context = c
      @unknown default: throw BundleError("\(member): not valid JSON for this format")
      }
      let path = context.codingPath.map { $0.intValue.map { "[\($0)]" } ?? ".\($0.stringValue)" }
        .joined()
      throw BundleError(
        "\(member): invalid at '\(path.isEmpty ? "." : path)': \(context.debugDescription)")
    }
  }
}
