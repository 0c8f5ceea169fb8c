import CZstd

/// zstd for page members (`dump --compress zstd`): a member `NAME.zst` holds one zstd frame
/// whose content is what `NAME` would hold, its size in the frame's header.
public enum Compression {
  /// The suffix of a compressed member's name.
  public static let suffix = ".zst"
  /// Levels zstd takes (negative ones are its fast modes).
  public static let levels = -7...19

  /// Compresses bytes handed in pieces, `total` bytes in all, into one frame in memory.
  public final class Compressor {
    private let context: OpaquePointer
    public private(set) var output: [UInt8] = []
    private var chunk = [UInt8](repeating: 0, count: Int(ZSTD_CStreamOutSize()))

    public init(level: Int32, total: UInt64, threads: Int32) throws(BundleError) {
      guard let context = ZSTD_createCCtx() else { throw BundleError("zstd: cannot make a context") }
      self.context = context
      ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
      // Threads help only when zstd was built with them; an error here just means one.
      _ = ZSTD_CCtx_setParameter(context, ZSTD_c_nbWorkers, threads)
      ZSTD_CCtx_setPledgedSrcSize(context, total)
    }

    deinit { ZSTD_freeCCtx(context) }

    public func add(_ bytes: UnsafeRawBufferPointer) throws(BundleError) {
      try run(bytes, ZSTD_e_continue)
    }

    /// Ends the frame; ``output`` is whole then.
    public func finish() throws(BundleError) {
      try run(UnsafeRawBufferPointer(start: nil, count: 0), ZSTD_e_end)
    }

    private func run(_ bytes: UnsafeRawBufferPointer, _ mode: ZSTD_EndDirective) throws(BundleError) {
      var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
      while true {
        let (left, produced) = chunk.withUnsafeMutableBytes { buffer in
          var out = ZSTD_outBuffer(dst: buffer.baseAddress, size: buffer.count, pos: 0)
          let left = ZSTD_compressStream2(context, &out, &input, mode)
          return (left, out.pos)
        }
        guard ZSTD_isError(left) == 0 else {
          throw BundleError("zstd: \(String(cString: ZSTD_getErrorName(left)))")
        }
        output += chunk[0..<produced]
        if mode == ZSTD_e_end ? left == 0 : input.pos == input.size { return }
      }
    }
  }

  /// The content size a frame's header (its first bytes) announces; nil when it is not a
  /// zstd frame with its size.
  public static func contentSize(ofFrameStartingWith bytes: UnsafeRawBufferPointer) -> UInt64? {
    let size = ZSTD_getFrameContentSize(bytes.baseAddress, bytes.count)
    // ZSTD_CONTENTSIZE_UNKNOWN and _ERROR are the two largest values.
    return size >= UInt64.max - 1 ? nil : size
  }

  /// Decompresses one frame handed in pieces into `destination`, which must be filled
  /// exactly.
  public final class Decompressor {
    private let context: OpaquePointer
    private let destination: UnsafeMutableRawBufferPointer
    public private(set) var written = 0

    public init(into destination: UnsafeMutableRawBufferPointer) throws(BundleError) {
      guard let context = ZSTD_createDCtx() else { throw BundleError("zstd: cannot make a context") }
      self.context = context
      self.destination = destination
    }

    deinit { ZSTD_freeDCtx(context) }

    public func add(_ bytes: UnsafeRawBufferPointer) throws(BundleError) {
      var input = ZSTD_inBuffer(src: bytes.baseAddress, size: bytes.count, pos: 0)
      while input.pos < input.size {
        var out = ZSTD_outBuffer(dst: destination.baseAddress, size: destination.count, pos: written)
        let consumed = input.pos
        let result = ZSTD_decompressStream(context, &out, &input)
        guard ZSTD_isError(result) == 0 else {
          throw BundleError("zstd: \(String(cString: ZSTD_getErrorName(result)))")
        }
        // No progress either way: the output is full and the frame wants to go on.
        guard out.pos > written || input.pos > consumed || result == 0 else {
          throw BundleError("a compressed member holds more than it announces")
        }
        written = out.pos
        if result == 0 && input.pos < input.size { throw BundleError("a compressed member goes on past its frame") }
      }
    }

    /// Checks that the frame ended and filled the destination.
    public func finish() throws(BundleError) {
      guard written == destination.count else {
        throw BundleError("a compressed member holds \(written) bytes, not the \(destination.count) it announces")
      }
    }
  }
}
