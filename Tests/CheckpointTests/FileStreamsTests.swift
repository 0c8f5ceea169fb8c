import Bundle
import Checkpoint
import Foundation
import Glibc
import Testing

/// The bundle file sink gathers small writes, writes large ones at once and appends mapped
/// regions in place: whatever the mix, the file holds the bytes in the order given.
struct FileStreamsTests {
  @Test func writesOfEverySizeAndInPlaceRegionsLandInOrder() throws {
    let path = NSTemporaryDirectory() + "ckcont-sink-\(UUID().uuidString)"
    defer { unlink(path) }
    let fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
    try #require(fd >= 0)
    let sink = FileDescriptorSink(fd: fd, name: path, inPlace: true)
    var expected: [UInt8] = []
    // A cheap pattern that never repeats at the same offset: a misplaced chunk shows.
    var state: UInt64 = 0x9E37_79B9_7F4A_7C15
    func bytes(_ count: Int) -> [UInt8] {
      (0..<count).map { _ in
        state ^= state << 13
        state ^= state >> 7
        state ^= state << 17
        return UInt8(truncatingIfNeeded: state)
      }
    }
    // Small, large (written straight out), small again, a region in place, more small ones
    // than the gathering buffer holds, and a region at an offset that is not page-aligned.
    for step in [512, 700_000, 3, -5000, 4096, 300, -(3 << 20), 1, 2_000_000, 17] {
      if step > 0 {
        let chunk = bytes(step)
        try chunk.withUnsafeBytes { try sink.write($0) }
        expected += chunk
      } else {
        let chunk = bytes(-step)
        let region = try #require(try sink.appendInPlace(count: chunk.count))
        try region.reserve(0, chunk.count)
        chunk.withUnsafeBytes { region.bytes.copyMemory(from: $0) }
        expected += chunk
      }
    }
    for _ in 0..<3000 {
      let chunk = bytes(511)
      try chunk.withUnsafeBytes { try sink.write($0) }
      expected += chunk
    }
    try sink.flush()
    #expect(sink.bytesWritten == expected.count)
    sink.close()
    let written = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
    #expect(written.count == expected.count)
    #expect(written == expected)
  }
}
