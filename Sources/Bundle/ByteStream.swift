/// Where bundle bytes go. The engine implements it over a file descriptor; tests use
/// ``MemorySink``. Chunks arrive in stream order and are only valid during the call.
public protocol ByteSink: AnyObject {
  /// Consumes all of `bytes` or throws.
  func write(_ bytes: UnsafeRawBufferPointer) throws
}

/// Bytes appended to a sink and filled where they lie (a mapping of the output file), so
/// that page contents are copied once, from the process straight into the file.
public struct InPlaceRegion: @unchecked Sendable {
  /// The appended bytes, valid until the sink is closed.
  public let bytes: UnsafeMutableRawBufferPointer
  /// Must be called for every part of `bytes` before it is written (from any thread): it
  /// allocates the file's blocks, so that a full disk is an error instead of a SIGBUS.
  public let reserve: @Sendable (_ offset: Int, _ count: Int) throws -> Void

  public init(
    bytes: UnsafeMutableRawBufferPointer, reserve: @escaping @Sendable (_ offset: Int, _ count: Int) throws -> Void
  ) {
    self.bytes = bytes
    self.reserve = reserve
  }
}

/// A sink that can append bytes for the caller to fill in place.
public protocol InPlaceByteSink: ByteSink {
  /// Appends `count` bytes to be filled in place, or returns nil (appending nothing) when
  /// this sink cannot.
  func appendInPlace(count: Int) throws -> InPlaceRegion?
}

/// Where bundle bytes come from. The engine implements it over a file descriptor or a pipe;
/// tests use ``MemorySource``.
public protocol ByteSource: AnyObject {
  /// Fills a prefix of `buffer` and returns its length; returns 0 only at the end of the stream.
  func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

/// A source whose whole content already lies in memory that stays valid and unchanged while
/// the source lives (a mapped file): readers take member data in place instead of copying it,
/// and a restore points into it for its pages.
public protocol MappedByteSource: ByteSource {
  /// Everything the source serves, from its start.
  var bytes: UnsafeRawBufferPointer { get }
  /// Consumes and returns the next bytes in place, at most `count`; empty only at the end.
  func borrow(upTo count: Int) throws -> UnsafeRawBufferPointer
}

/// A sink that appends everything to an array.
public final class MemorySink: ByteSink {
  /// Everything written so far.
  public private(set) var bytes: [UInt8] = []

  /// An empty sink.
  public init() {}

  /// Appends `bytes`.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    self.bytes.append(contentsOf: bytes)
  }
}

/// A source that serves an array, at most `maxReadSize` bytes per read so that tests can
/// exercise the short reads that pipes produce.
public final class MemorySource: ByteSource {
  private let bytes: [UInt8]
  private let maxReadSize: Int
  private var position = 0

  /// A source serving `bytes`, in reads of at most `maxReadSize` bytes.
  public init(_ bytes: [UInt8], maxReadSize: Int = .max) {
    self.bytes = bytes
    self.maxReadSize = max(1, maxReadSize)
  }

  /// Copies the next bytes into `buffer`.
  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let count = min(buffer.count, maxReadSize, bytes.count - position)
    guard count > 0 else { return 0 }
    bytes.withUnsafeBytes { all in
      buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: all[position..<position + count]))
    }
    position += count
    return count
  }
}

/// A mapped source over an array, for tests of the in-place paths.
public final class MemoryMappedSource: MappedByteSource {
  private let storage: UnsafeMutableRawBufferPointer
  private let count: Int
  private var position = 0

  /// A source serving a copy of `bytes`.
  public init(_ bytes: [UInt8]) {
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 4096)
    bytes.withUnsafeBytes { storage.copyMemory(from: $0) }
    self.storage = storage
    count = bytes.count
  }

  deinit { storage.deallocate() }

  public var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: storage[0..<count]) }

  public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
    let chunk = try borrow(upTo: buffer.count)
    buffer.copyMemory(from: chunk)
    return chunk.count
  }

  public func borrow(upTo limit: Int) throws -> UnsafeRawBufferPointer {
    let take = min(limit, count - position)
    defer { position += take }
    return UnsafeRawBufferPointer(rebasing: bytes[position..<position + take])
  }
}
