import Foundation
import Testing

@testable import Bundle

/// The model's hand-written JSON (the VMA list of mm.json) reads back exactly through
/// JSONDecoder, whatever the mapping paths hold; the hand-written decoder reads what either
/// encoder writes, and refuses what is not a valid image with the member and the byte.
struct ModelEncodingTests {
  static func sampleImage() -> MemoryImage {
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
    return MemoryImage(
      vmas: vmas,
      fields: MMFields(
        startCode: 1, endCode: 2, startData: 3, endData: 4, startBrk: 5, brk: 6, startStack: 7, argStart: 8, argEnd: 9,
        envStart: 10, envEnd: 11), auxv: [6, 4096, 0, 0], exe: "/bin/true", pagesSize: offset)
  }

  @Test func memoryImageRoundTripsThroughItsFastEncoding() throws {
    let image = Self.sampleImage()
    let data = try image.encodedJSON()
    #expect(try JSONDecoder().decode(MemoryImage.self, from: data) == image)
    let empty = MemoryImage(vmas: [], fields: image.fields, auxv: [], exe: "/x", pagesSize: 0)
    #expect(try JSONDecoder().decode(MemoryImage.self, from: try empty.encodedJSON()) == empty)
  }
}

extension ModelEncodingTests {
  @Test func fastDecoderReadsWhatBothEncodersWrite() throws {
    let image = Self.sampleImage()
    #expect(try MemoryImage.decodeJSON(Array(try image.encodedJSON()), member: "mm.json") == image)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
    #expect(try MemoryImage.decodeJSON(Array(try encoder.encode(image)), member: "mm.json") == image)
    // Escapes JSONEncoder does not write but JSON allows: \u, a surrogate pair.
    let text = String(decoding: try image.encodedJSON(), as: UTF8.self)
    #expect(text.contains(#""exe":"\/bin\/true""#))
    let escaped = text.replacingOccurrences(of: #"\/bin\/true"#, with: #"\/bin\/tr\u0075e \ud83d\ude00"#)
    #expect(try MemoryImage.decodeJSON(Array(escaped.utf8), member: "mm.json").exe == "/bin/true 😀")
    #expect(throws: BundleError.self) { try MemoryImage.decodeJSON(Array((text + " x").utf8), member: "mm.json") }
  }

  @Test(arguments: [
    ("", "expected {"),
    ("{\"vmas\":[]}", "lacks \"fields\""),
    ("[1]", "expected {"),
    ("{\"vmas\":[{\"start\":1.5}]}", "an integer"),
    ("{\"vmas\":[{\"start\":-1}]}", "an integer that fits UInt64"),
    ("{\"vmas\":[{\"start\":99999999999999999999}]}", "at most 64 bits"),
    ("{\"exe\":\"\\x\"}", "a valid escape"),
    ("{\"exe\":\"abc", "the end of a string"),
    ("{\"exe\":\"a\nb\"}", "no control character"),
    ("{\"vmas\":[{\"kind\":\"weird\"}]}", "unknown kind"),
  ])
  func fastDecoderRefusesMalformedImages(text: String, complaint: String) {
    do {
      _ = try MemoryImage.decodeJSON(Array(text.utf8), member: "tasks/7/mm.json")
      Issue.record("decoded \(text)")
    } catch {
      #expect(error.message.contains(complaint), "\(error.message)")
    }
  }

  @Test func fastDecoderRefusesDeepNesting() {
    let text = "{\"x\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
    #expect { try MemoryImage.decodeJSON(Array(text.utf8), member: "mm.json") } throws: { error in
      (error as? BundleError)?.message.contains("levels of nesting") == true
    }
  }

  @Test func fastDecoderRefusesInvalidUTF8() {
    var bytes = Array("{\"exe\":\"ab\"}".utf8)
    bytes[9] = 0xff
    #expect(throws: BundleError.self) { try MemoryImage.decodeJSON(bytes, member: "mm.json") }
  }
}
