/// Caps on what a ``TarReader`` accepts, so that a hostile stream cannot make it allocate or
/// wait without bound.
public struct TarLimits: Sendable {
  /// The largest member size accepted.
  public var maxMemberSize: Int
  /// The longest member name accepted, in UTF-8 bytes.
  public var maxNameLength: Int
  /// The largest pax extended header accepted.
  public var maxPaxHeaderSize: Int

  /// Limits; the defaults fit any bundle the writer produces (1 TiB members, 1 KiB names).
  public init(
    maxMemberSize: Int = 1 << 40, maxNameLength: Int = TarWriter.maxNameLength,
    maxPaxHeaderSize: Int = 64 << 10
  ) {
    self.maxMemberSize = maxMemberSize
    self.maxNameLength = maxNameLength
    self.maxPaxHeaderSize = maxPaxHeaderSize
  }
}

/// Reads a tar stream member by member, in one pass, checking everything as untrusted input:
/// header checksums and field syntax, pax records, sizes against ``TarLimits``, names (relative,
/// no `.` or `..` component, no control character, bounded length), member types (files and
/// directories only), zero padding, the end-of-archive blocks, and truncation anywhere. Every
/// error names the byte offset, and the member when it is known.
public final class TarReader {
  private let source: any ByteSource
  private let limits: TarLimits
  private let buffer: UnsafeMutableRawBufferPointer
  private var start = 0
  private var end = 0
  /// The stream offset of `buffer[start]`: everything before it has been consumed.
  private var offset = 0
  private var current: TarMemberHeader?
  private var remaining = 0
  private var atEnd = false

  /// A reader over `source` that pulls up to `bufferSize` bytes per read.
  public init(source: any ByteSource, limits: TarLimits = TarLimits(), bufferSize: Int = 1 << 20) {
    self.source = source
    self.limits = limits
    // A pax header and its padding are read into the buffer in one piece, so it must fit.
    buffer = .allocate(
      byteCount: max(bufferSize, limits.maxPaxHeaderSize + 2 * TarHeader.blockSize), alignment: 4096
    )
  }

  deinit { buffer.deallocate() }

  /// The number of bytes consumed from the stream so far.
  public var bytesRead: Int { offset }

  /// Skips what is left of the current member and returns the next member's header, or nil
  /// after the two end-of-archive blocks.
  public func nextMember() throws -> TarMemberHeader? {
    try skipRest()
    guard !atEnd else { return nil }
    let headerOffset = offset
    guard let first = try readBlock(what: "a member header or the end-of-archive blocks") else {
      atEnd = true
      guard try readBlock(what: "the second end-of-archive block") == nil else {
        throw BundleError(
          "byte \(offset - TarHeader.blockSize): expected the second all-zero end-of-archive block")
      }
      return nil
    }
    var block = first
    var pax: (path: [UInt8]?, size: Int?) = (nil, nil)
    if block.typeflag == TarHeader.typePax {
      guard block.size <= limits.maxPaxHeaderSize else {
        throw BundleError(
          "pax header at byte \(headerOffset): \(block.size) bytes, the limit is \(limits.maxPaxHeaderSize)"
        )
      }
      let records = try readBytes(
        block.size + TarHeader.padding(block.size), what: "a pax extended header")
      guard records[block.size...].allSatisfy({ $0 == 0 }) else {
        throw BundleError("pax header at byte \(headerOffset): non-zero padding")
      }
      pax = try TarHeader.parsePaxRecords(
        Array(records[..<block.size]), at: headerOffset, maxSize: limits.maxMemberSize)
      let memberOffset = offset
      guard let next = try readBlock(what: "the header that follows a pax header"),
        next.typeflag != TarHeader.typePax
      else {
        throw BundleError(
          "pax header at byte \(headerOffset) is not followed by a member header at byte \(memberOffset)"
        )
      }
      block = next
    }
    let header = try member(from: block, pax: pax, at: headerOffset)
    current = header
    remaining = header.size
    return header
  }

  /// Passes the rest of the current member's data to `body` in chunks, straight from the
  /// read buffer; each chunk is valid only during the call.
  public func forEachChunk(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
    try forEachChunk { chunk, _ in try body(chunk) }
  }

  /// The largest chunk taken in place from a ``MappedByteSource``.
  static let borrowedChunkSize = 8 << 20

  /// Like ``forEachChunk(_:)``, telling for each chunk whether it lies in a
  /// ``MappedByteSource`` (`inPlace`, valid as long as the source) or in the read buffer.
  func forEachChunk(_ body: (UnsafeRawBufferPointer, _ inPlace: Bool) throws -> Void) throws {
    guard let member = current else { return }
    let mapped = source as? any MappedByteSource
    while remaining > 0 {
      if start == end, let mapped {
        let chunk = try mapped.borrow(upTo: min(remaining, Self.borrowedChunkSize))
        guard chunk.count > 0 else {
          throw BundleError.member(
            member.name, at: member.offset,
            "the stream ends at byte \(offset), after \(member.size - remaining) of its \(member.size) bytes"
          )
        }
        try body(chunk, true)
        offset += chunk.count
        remaining -= chunk.count
        continue
      }
      if start == end {
        start = 0
        end = try source.read(
          into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<min(buffer.count, remaining)]))
        guard end > 0 else {
          throw BundleError.member(
            member.name, at: member.offset,
            "the stream ends at byte \(offset), after \(member.size - remaining) of its \(member.size) bytes"
          )
        }
      }
      let count = min(end - start, remaining)
      try body(UnsafeRawBufferPointer(rebasing: buffer[start..<start + count]), false)
      consume(count)
      remaining -= count
    }
  }

  /// The rest of the current member's data in one array; throws without reading if the
  /// member is larger than `maxSize`.
  public func readAll(maxSize: Int) throws -> [UInt8] {
    guard let member = current else { return [] }
    guard member.size <= maxSize else {
      throw BundleError.member(
        member.name, at: member.offset,
        "\(member.size) bytes, the limit for this member is \(maxSize)")
    }
    var bytes: [UInt8] = []
    bytes.reserveCapacity(remaining)
    try forEachChunk { bytes.append(contentsOf: $0) }
    return bytes
  }

  /// Checks that nothing follows the end-of-archive blocks (call after ``nextMember()``
  /// returned nil).
  public func expectEndOfStream() throws {
    guard atEnd else {
      throw BundleError("tar reader: the end of the archive has not been reached")
    }
    if start == end {
      start = 0
      end = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<1]))
    }
    guard start == end else {
      throw BundleError("byte \(offset): unexpected data after the end-of-archive blocks")
    }
  }

  /// Skips the unread data of the current member and checks its padding.
  private func skipRest() throws {
    guard let member = current else { return }
    try forEachChunk { _ in }
    let pad = TarHeader.padding(member.size)
    let padding = try readBytes(pad, what: "the padding of member '\(member.name)'")
    guard padding.allSatisfy({ $0 == 0 }) else {
      throw BundleError.member(member.name, at: member.offset, "non-zero padding after its data")
    }
    current = nil
  }

  /// The validated header of a member, from its ustar block and pax records.
  private func member(
    from block: TarHeader.Block, pax: (path: [UInt8]?, size: Int?), at headerOffset: Int
  ) throws -> TarMemberHeader {
    guard var name = String(validating: pax.path ?? block.nameBytes, as: UTF8.self) else {
      throw BundleError("tar header at byte \(headerOffset): the member name is not valid UTF-8")
    }
    let kind: TarMemberKind = block.typeflag == TarHeader.typeDirectory ? .directory : .file
    if kind == .directory, name.hasSuffix("/") { name.removeLast() }
    if let problem = TarHeader.nameProblem(name, maxLength: limits.maxNameLength) {
      throw BundleError("tar header at byte \(headerOffset): \(problem)")
    }
    let size = pax.size ?? block.size
    guard size <= limits.maxMemberSize else {
      throw BundleError.member(
        name, at: headerOffset, "size \(size) exceeds the limit of \(limits.maxMemberSize) bytes")
    }
    guard kind == .file || size == 0 else {
      throw BundleError.member(name, at: headerOffset, "a directory with size \(size)")
    }
    return TarMemberHeader(name: name, size: size, kind: kind, offset: headerOffset)
  }

  /// The next 512-byte block decoded, or nil if it is all zero. `what` names the expected
  /// block in the error if the stream ends.
  private func readBlock(what: String) throws -> TarHeader.Block? {
    let blockOffset = offset
    try fill(TarHeader.blockSize, what: what)
    let block = UnsafeRawBufferPointer(rebasing: buffer[start..<start + TarHeader.blockSize])
    defer { consume(TarHeader.blockSize) }
    if TarHeader.isZero(block) { return nil }
    return try TarHeader.decode(block, at: blockOffset)
  }

  /// The next `count` bytes as an array (for pax headers and padding, both small).
  private func readBytes(_ count: Int, what: String) throws -> [UInt8] {
    try fill(count, what: what)
    defer { consume(count) }
    return Array(buffer[start..<start + count])
  }

  /// Makes at least `count` bytes available in the buffer, or throws a truncation error.
  private func fill(_ count: Int, what: String) throws {
    if start + count > buffer.count {
      // Moves the unread bytes to the front (copyMemory is a memmove, overlap is fine).
      UnsafeMutableRawBufferPointer(rebasing: buffer[0..<end - start])
        .copyMemory(from: UnsafeRawBufferPointer(rebasing: buffer[start..<end]))
      end -= start
      start = 0
    }
    while end - start < count {
      let got = try source.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[end...]))
      guard got > 0 else {
        throw BundleError(
          "truncated stream: it ends at byte \(offset + end - start) while reading \(what) at byte \(offset)"
        )
      }
      end += got
    }
  }

  private func consume(_ count: Int) {
    start += count
    offset += count
  }
}
