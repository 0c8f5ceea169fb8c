import Foundation
import Testing

@testable import Bundle

/// The model's hand-written JSON (the VMA list of mm.json) reads back exactly through
/// JSONDecoder, whatever the mapping paths hold.
struct ModelEncodingTests {
  @Test func memoryImageRoundTripsThroughItsFastEncoding() throws {
    let paths = [
      "", "/usr/lib/x86_64-linux-gnu/libc.so.6", "[heap]", "/tmp/with \"quotes\" and \\ backslash",
      "/tmp/new\nline\ttab\u{1}ctl", "/tmp/ünïcödé ☃", "/memfd:name (deleted)",
    ]
    var vmas: [VMAImage] = []
    var offset: UInt64 = 0
    for (index, path) in paths.enumerated() {
      let start = UInt64(0x1000_0000 + index * 0x10_0000)
      let pages = index % 2 == 0 ? [PageRun(start: start, end: start + 0x2000), PageRun(start: start + 0x5000, end: start + 0x6000)] : []
      vmas.append(
        VMAImage(
          start: start, end: start + 0x8000, protection: Int32(index % 8), shared: index % 3 == 0,
          kind: index == 6 ? .memfd : .file, path: path, offset: UInt64(index) << 12, growsDown: index == 2, pages: pages,
          pagesOffset: offset, sharedObject: index == 6 ? 77 : nil, objectSize: index == 6 ? 1 << 20 : nil))
      offset += pages.reduce(0) { $0 + $1.size }
    }
    let image = MemoryImage(
      vmas: vmas,
      fields: MMFields(
        startCode: 1, endCode: 2, startData: 3, endData: 4, startBrk: 5, brk: 6, startStack: 7, argStart: 8, argEnd: 9,
        envStart: 10, envEnd: 11), auxv: [6, 4096, 0, 0], exe: "/bin/true", pagesSize: offset)
    let data = try image.encodedJSON()
    #expect(try JSONDecoder().decode(MemoryImage.self, from: data) == image)
    let empty = MemoryImage(vmas: [], fields: image.fields, auxv: [], exe: "/x", pagesSize: 0)
    #expect(try JSONDecoder().decode(MemoryImage.self, from: try empty.encodedJSON()) == empty)
  }
}
