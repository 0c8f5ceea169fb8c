import Foundation

/// The bundle format: a POSIX tar stream holding the checkpoint model. No system calls here,
/// so `inspect` and its tests run anywhere: everything works over ``ByteSink`` and
/// ``ByteSource``, which the engine implements over file descriptors and pipes.
///
/// Layout, in stream order (GNU `tar tvf` lists it, `tar xf` extracts it):
/// 1. `manifest.json` (``Manifest``): magic, format version, tool, kernel, CPU xfeatures,
///    cgroup, creation time, what a reader must understand (`requires`, format 1.1), and
///    every member that follows with its exact size.
/// 2. The members, exactly as the manifest lists them: JSON model members, then page members.
/// 3. `checksums.json`: the XXH3-128 of every member before it, `manifest.json` included.
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
/// Why XXH3-128 and not SHA-256: the checksums protect against corruption and truncation (a
/// bad disk, a cut pipe, a partial copy). An unkeyed digest of any strength cannot stop
/// deliberate tampering by someone who rewrites `checksums.json` too; that needs signatures
/// (future work, which will sign with a cryptographic digest). XXH3-128 runs at memory speed,
/// so checksumming costs the dump almost nothing, where SHA-256 could not keep up with it.
///
/// Throughput, measured on the 2-core AMD EPYC VM, `-O`, 1 MiB chunks read from a 512 MiB
/// buffer (the ranges come from other builds sharing the VM): swift-crypto's SHA-256 hashed
/// ~1.35 GB/s on one core (`openssl speed -evp sha256`: 1.53-1.57 GB/s), too slow for the
/// 2.3 GB/s dump target (a budget of ~0.43 ns per byte on 2 cores, of which SHA-256 alone
/// takes ~0.7 ns of one core). Debian's libxxhash 0.8.1 hashes XXH3-128 at 8.7-12.3 GB/s;
/// memcpy runs at 13-16 GB/s.
///
/// Even at that speed, hashing inline is not free next to a writer that itself runs at memory
/// speed. Through ``BundleWriter``, with a sink that copies each chunk and the caller copying
/// each chunk in first (standing in for page reads and sink writes), the other core idle: 10-11.5
/// GB/s without hashing, 5.4-6.7 GB/s hashing inline, 7.1-8.7 GB/s with ``MemberHasher``'s
/// second thread, whose cost to the writer is one copy (~0.07 ns per byte) instead of the hash
/// (~0.09 ns per byte). With the other core busy the thread gains nothing (both 3.8-5.5 GB/s),
/// and with four more copies per chunk on the writer (a writer at 2.4-2.9 GB/s without hashing,
/// near the target) both lose 15-30%, pipelined or not. Inline hashing costing far more than
/// the 10% threshold set for dropping the thread, the hash stays on the second thread.
public enum BundleFormat {
  /// The magic string written into every manifest.
  public static let magic = "ckcont-bundle"
  /// The current major version; readers refuse bundles with another major version.
  public static let majorVersion = 1
  /// The current minor version; readers accept any minor version of their major version,
  /// unless the manifest `requires` something they do not know. 1.1 added `requires`.
  public static let minorVersion = 1
  /// What a manifest may require (``Manifest/requires``): state beyond format 1.0 that a
  /// reader must restore or refuse, never drop.
  public enum Requirement: String, CaseIterable, Sendable {
    case seccompFilters = "seccomp-filters"
    case stoppedJobs = "stopped-jobs"
    case deletedFileMappings = "deleted-file-mappings"
    case asyncIOOwners = "async-io-owners"
    /// The container pivoted into a root filesystem of its own (mounts.json starts with "/").
    case rootFilesystem = "root-filesystem"
    /// Pseudo-terminals (descriptors of kind pty, controlling terminals).
    case terminals
    /// A shell job: the restore must be asked for one (``ProcessTree/shellJobTerminal``).
    case shellJob = "shell-job"
    /// Processes in UTS, IPC or network namespaces of their own (``ProcessTree/nestedNamespaces``).
    case nestedNamespaces = "nested-namespaces"
    /// Processes in pid namespaces below the container's (``TaskEntryImage/nestedPids``).
    case nestedPidNamespaces = "nested-pid-namespaces"
    /// Mappings with madvise(2) advice, guard regions, or sealed with mseal(2)
    /// (``VMAImage/advice``, ``VMAImage/guards``, ``VMAImage/sealed``).
    case memoryAdvice = "memory-advice"
    /// Descriptors in flight in unix sockets (``SocketImage/passed``).
    case passedDescriptors = "passed-descriptors"
    /// Datagrams waiting with their senders' names or addresses, in a unix socket no peer is
    /// connected to or a UDP socket (``SocketImage/senders``).
    case datagramSenders = "datagram-senders"
    /// Unix sockets shut down in a direction (``SocketImage/shutdown``).
    case socketShutdown = "socket-shutdown"
    /// Mappings kept from the parent through fork(), with pages shared copy-on-write and
    /// not saved in the child (``VMAImage/parentPages``).
    case parentPages = "parent-pages"
    /// i386 programs (``TaskCore/abi``), restored the compat way.
    case i386Tasks = "i386-tasks"
    /// Bytes of deleted files or memfds in members of their own (``KeptFiles``).
    case keptFileMembers = "kept-file-members"
    /// Signed: `signature.json` follows `checksums.json` (``BundlePublicKey``).
    case signature
    /// Connections waiting in unix listeners' queues (``SocketImage/pending``, ``SocketImage/pendingOn``).
    case pendingConnections = "pending-connections"
    /// Unix connections made again by the processes that made them (``SocketImage/peerCredentials``),
    /// and datagram sockets connected again by their peer's name (``SocketImage/peer``).
    case unixConnectionMakers = "unix-connection-makers"
    /// TCP connections closing (``TCPConnectionImage/state``), their FINs left out of their
    /// sequence numbers.
    case tcpClosing = "tcp-closing"
    /// A console whose master the runtime held (``ProcessTree/console``).
    case console
    /// TCP connections waiting in a listener's queue (``SocketImage/awaitsAccept``).
    case tcpPending = "tcp-pending"
    /// A network namespace its runtime made, joined again at restore (``NamespaceSet/netExternal``).
    case externalNetwork = "external-network"
    /// Network devices, addresses and routes of the container's namespace (``NamespaceSet/network``).
    case networkDevices = "network-devices"
    /// Packet filter rules of the container's namespace (``NetworkImage/netfilter``).
    case netfilter
    /// Pages a migration sent ahead (``VMAImage/precopiedPages``): only its receiver has them.
    case precopiedPages = "precopied-pages"
    /// Pages a lazy migration's receiver fetches from the source once the container runs
    /// (``VMAImage/lazyPages``): only that receiver, connected to the source, can restore it.
    case lazyPages = "lazy-pages"
    /// Page members compressed with zstd (`NAME.zst`, ``Compression``).
    case compressedPages = "compressed-pages"
    /// Dumped against a parent bundle (``Manifest/parent``), whose pages it needs.
    case parentBundle = "parent-bundle"
    /// Bridges in the container's network namespace and links enslaved to them
    /// (``NetworkLinkImage/bridge``, ``NetworkLinkImage/master``).
    case bridges
  }
  /// The requirements this ckcont understands.
  public static let knownRequirements = Set(Requirement.allCases.map(\.rawValue))

  /// The first member.
  public static let manifestName = "manifest.json"
  /// The last member, the XXH3-128 of every member before it.
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
