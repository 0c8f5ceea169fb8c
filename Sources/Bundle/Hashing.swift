import CXXHash
import Foundation

/// XXH3-128 of each member in turn, computed on a second thread so that hashing overlaps with
/// whatever the calling thread does next (reading pages, writing the sink).
///
/// ``update(_:)`` copies the bytes into one of a few fixed buffers and returns; the hashing
/// thread takes full buffers in order from a bounded queue and hands them back when hashed.
/// When all buffers are queued the caller waits: the queue is the back-pressure. Member
/// boundaries travel with the buffers (offsets where a member ends), so digests come out in
/// member order and many small members share one buffer: handing over a buffer per member
/// made a bundle of 2000 small members wait on the thread 2000 times. The copy
/// costs the caller less than hashing inline would, even with a hash as fast as XXH3 (see
/// ``BundleFormat`` for the numbers), and is what lets the caller reuse its own buffer as soon
/// as the call returns.
final class MemberHasher: @unchecked Sendable {
  /// A buffer's first `count` bytes, with the members that end in it (at `ends` offsets).
  private struct Job {
    var buffer: UnsafeMutableRawBufferPointer
    var count: Int
    var ends: [(offset: Int, name: String)]
    /// Bytes in the caller's memory (``update(inPlace:)``), not one of ours to hand back.
    var inPlace = false
  }

  // Shared with the hashing thread, guarded by `condition`: a condition variable, not a
  // Mutex, as the thread sleeps until a buffer comes and the caller until one is free.
  private let condition = NSCondition()
  private var freeBuffers: [UnsafeMutableRawBufferPointer]
  private var queue: [Job] = []
  private var busy = false
  private var stopped = false
  private var finished: [(name: String, digest: String)] = []

  // Caller thread only.
  private var filling: UnsafeMutableRawBufferPointer?
  private var fillCount = 0
  private var fillEnds: [(offset: Int, name: String)] = []
  private let allBuffers: [UnsafeMutableRawBufferPointer]

  // Hashing thread only, after `init`. Allocated by libxxhash because the state must be
  // 64-byte aligned, which a Swift stored property cannot promise; freed in `deinit`.
  private let state: OpaquePointer

  /// A hasher with `bufferCount` buffers of `bufferSize` bytes, and its thread.
  init(bufferSize: Int = 1 << 20, bufferCount: Int = 4) {
    guard let state = XXH3_createState() else { fatalError("XXH3_createState: out of memory") }
    XXH3_128bits_reset(state)
    self.state = state
    allBuffers = (0..<bufferCount).map { _ in .allocate(byteCount: bufferSize, alignment: 64) }
    freeBuffers = allBuffers
    let thread = Thread { [self] in run() }
    thread.name = "ckcont-xxh3"
    thread.start()
  }

  deinit {
    for buffer in allBuffers { buffer.deallocate() }
    XXH3_freeState(state)
  }

  /// Adds bytes to the current member's digest.
  func update(_ bytes: UnsafeRawBufferPointer) {
    var rest = bytes[...]
    while !rest.isEmpty {
      let buffer = filling ?? takeFreeBuffer()
      let count = min(rest.count, buffer.count - fillCount)
      UnsafeMutableRawBufferPointer(rebasing: buffer[fillCount..<fillCount + count])
        .copyMemory(from: UnsafeRawBufferPointer(rebasing: rest.prefix(count)))
      rest = rest.dropFirst(count)
      fillCount += count
      filling = buffer
      if fillCount == buffer.count { flush() }
    }
  }

  /// Adds bytes to the current member's digest without copying them: the caller promises
  /// they stay valid and unchanged until ``digests()`` returns (a mapped file).
  func update(inPlace bytes: UnsafeRawBufferPointer) {
    guard let base = bytes.baseAddress, !bytes.isEmpty else { return }
    flush()
    enqueue(
      Job(
        buffer: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: base), count: bytes.count),
        count: bytes.count, ends: [], inPlace: true))
  }

  /// Ends the current member; its digest will be listed under `name`.
  func finishMember(name: String) {
    if filling == nil { filling = takeFreeBuffer() }
    fillEnds.append((fillCount, name))
  }

  /// Waits for the hashing thread to catch up and returns every finished member's digest.
  func digests() -> [(name: String, digest: String)] {
    flush()
    condition.lock()
    defer { condition.unlock() }
    while !queue.isEmpty || busy { condition.wait() }
    return finished
  }

  /// Ends the hashing thread, dropping what is queued, once the job it is on is done: bytes
  /// hashed in place may be unmapped as soon as this returns. Must be called once by the
  /// owner, or the thread (which holds this object) lives on.
  func stop() {
    condition.lock()
    stopped = true
    condition.broadcast()
    while busy { condition.wait() }
    condition.unlock()
  }

  private func flush() {
    guard let buffer = filling else { return }
    enqueue(Job(buffer: buffer, count: fillCount, ends: fillEnds))
    filling = nil
    fillCount = 0
    fillEnds = []
  }

  private func takeFreeBuffer() -> UnsafeMutableRawBufferPointer {
    condition.lock()
    defer { condition.unlock() }
    while freeBuffers.isEmpty { condition.wait() }
    return freeBuffers.removeLast()
  }

  private func enqueue(_ job: Job) {
    condition.lock()
    queue.append(job)
    condition.broadcast()
    condition.unlock()
  }

  /// The hashing thread: takes jobs in order until stopped.
  private func run() {
    condition.lock()
    while true {
      while queue.isEmpty && !stopped { condition.wait() }
      if stopped { break }
      let job = queue.removeFirst()
      busy = true
      condition.unlock()
      var digests: [(name: String, digest: String)] = []
      var start = 0
      for end in job.ends {
        XXH3_128bits_update(state, job.buffer.baseAddress.map { $0 + start }, end.offset - start)
        var canonical = XXH128_canonical_t()
        XXH128_canonicalFromHash(&canonical, XXH3_128bits_digest(state))
        // The canonical form is big-endian, the byte order `xxhsum -H2` prints.
        digests.append((end.name, withUnsafeBytes(of: canonical.digest) { hex($0) }))
        XXH3_128bits_reset(state)
        start = end.offset
      }
      XXH3_128bits_update(state, job.buffer.baseAddress.map { $0 + start }, job.count - start)
      condition.lock()
      if !job.inPlace { freeBuffers.append(job.buffer) }
      finished += digests
      busy = false
      condition.broadcast()
    }
    condition.unlock()
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
