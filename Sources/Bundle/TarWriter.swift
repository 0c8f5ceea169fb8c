/// Writes a POSIX tar stream (ustar, with pax records for long names and sizes >= 8 GiB) to a
/// ``ByteSink`` without seeking: each member's size is declared up front, its data is passed
/// through to the sink as it comes, and the writer checks that exactly that many bytes arrive.
public final class TarWriter {
  private let sink: any ByteSink
  private let mtime: Int
  private var open: (name: String, size: Int, written: Int)?
  private var finished = false
  /// The number of bytes handed to the sink so far.
  public private(set) var bytesWritten = 0

  /// The longest member name accepted, in UTF-8 bytes.
  public static let maxNameLength = 1024

  /// A writer whose members all carry the modification time `mtime` (seconds since 1970).
  public init(sink: any ByteSink, mtime: Int) {
    self.sink = sink
    self.mtime = mtime
  }

  /// Starts a regular file of exactly `size` bytes, to be passed to ``write(_:)``.
  public func beginMember(name: String, size: Int) throws {
    try writeHeader(name: name, size: size, kind: .file)
    open = (name, size, 0)
  }

  /// Appends data to the open member; throws if it would exceed the declared size.
  public func write(_ bytes: UnsafeRawBufferPointer) throws {
    guard var member = open else { throw BundleError("tar writer: data written outside a member") }
    guard bytes.count <= member.size - member.written else {
      throw BundleError(
        "member '\(member.name)': \(member.written + bytes.count) bytes written, but its header says \(member.size)"
      )
    }
    try emit(bytes)
    member.written += bytes.count
    open = member
  }

  /// Appends `count` bytes of the open member for the caller to fill in place, or returns
  /// nil (appending nothing) when the sink cannot.
  public func appendInPlace(count: Int) throws -> InPlaceRegion? {
    guard var member = open else { throw BundleError("tar writer: data written outside a member") }
    guard count <= member.size - member.written else {
      throw BundleError(
        "member '\(member.name)': \(member.written + count) bytes written, but its header says \(member.size)"
      )
    }
    guard let sink = sink as? any InPlaceByteSink, let region = try sink.appendInPlace(count: count) else { return nil }
    member.written += count
    open = member
    bytesWritten += count
    return region
  }

  /// Closes the open member after checking its size, and pads it to a whole block.
  public func endMember() throws {
    guard let member = open else { throw BundleError("tar writer: endMember without beginMember") }
    guard member.written == member.size else {
      throw BundleError(
        "member '\(member.name)': \(member.written) bytes written, but its header says \(member.size)"
      )
    }
    try emitZeros(TarHeader.padding(member.size))
    open = nil
  }

  /// Writes a directory member.
  public func addDirectory(name: String) throws {
    try writeHeader(name: name, size: 0, kind: .directory)
  }

  /// Ends the archive with its two zero blocks.
  public func finish() throws {
    try checkIdle()
    try emitZeros(2 * TarHeader.blockSize)
    finished = true
  }

  private func writeHeader(name: String, size: Int, kind: TarMemberKind) throws {
    try checkIdle()
    if let problem = TarHeader.nameProblem(name, maxLength: Self.maxNameLength) {
      throw BundleError("tar writer: \(problem)")
    }
    guard size >= 0 else { throw BundleError("member '\(name)': negative size \(size)") }
    try TarHeader.encode(name: name, size: size, kind: kind, mtime: mtime).withUnsafeBytes {
      try emit($0)
    }
  }

  private func checkIdle() throws {
    if let member = open { throw BundleError("tar writer: member '\(member.name)' is still open") }
    if finished { throw BundleError("tar writer: the archive is already finished") }
  }

  private func emit(_ bytes: UnsafeRawBufferPointer) throws {
    try sink.write(bytes)
    bytesWritten += bytes.count
  }

  private static let zeros = [UInt8](repeating: 0, count: 2 * TarHeader.blockSize)

  private func emitZeros(_ count: Int) throws {
    guard count > 0 else { return }
    try Self.zeros.withUnsafeBytes { try emit(UnsafeRawBufferPointer(rebasing: $0.prefix(count))) }
  }
}
