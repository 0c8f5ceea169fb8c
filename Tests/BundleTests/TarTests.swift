import Foundation
import Testing

@testable import Bundle

/// The tar layer on its own: headers, round trips, and the reader's checks.
struct TarTests {
  /// Writes `members` (nil data = directory) with the tar writer.
  func writeTar(_ members: [(name: String, data: [UInt8]?)]) throws -> [UInt8] {
    let sink = MemorySink()
    let tar = TarWriter(sink: sink, mtime: 1_700_000_000)
    for member in members {
      if let data = member.data {
        try tar.beginMember(name: member.name, size: data.count)
        try data.withUnsafeBytes { try tar.write($0) }
        try tar.endMember()
      } else {
        try tar.addDirectory(name: member.name)
      }
    }
    try tar.finish()
    return sink.bytes
  }

  @Test func roundTripsFilesDirectoriesLongNamesAndEmptyMembers() throws {
    let longName = "tasks/" + String(repeating: "long-component-", count: 20) + "core.json"
    let members: [(name: String, data: [UInt8]?)] = [
      ("tasks", nil),
      ("empty", []),
      ("one", [42]),
      ("block", randomBytes(512, seed: 1)),
      ("block-and-one", randomBytes(513, seed: 2)),
      (longName, randomBytes(1000, seed: 3)),
      ("pages/big", randomBytes(3 << 20 + 17, seed: 4)),
      (String(repeating: "d", count: 150), nil),
      (String(repeating: "x", count: 100), [1, 2]),  // exactly the ustar limit: no pax
      ("ünïcödé/名前", [7]),
    ]
    let bytes = try writeTar(members)
    #expect(bytes.count % 512 == 0)
    let read = try readTar(bytes)
    #expect(read.map(\.0.name) == members.map(\.name))
    for ((header, data), member) in zip(read, members) {
      #expect(header.kind == (member.data == nil ? .directory : .file))
      #expect(data == (member.data ?? []))
      #expect(header.size == data.count)
    }
  }

  @Test func headerOffsetsPointAtEachMember() throws {
    let bytes = try writeTar([("a", [1]), (String(repeating: "b", count: 200), [2]), ("c", [])])
    let offsets = try readTar(bytes).map(\.0.offset)
    #expect(offsets == [0, 1024, 1024 + 512 + 512 + 512 + 512])
  }

  @Test func sizesOf8GiBAndMoreGoIntoAPaxRecord() throws {
    let size = 9 << 30
    let header = TarHeader.encode(name: "pages/0.img", size: size, kind: .file, mtime: 0)
    #expect(header.count == 3 * 512)  // pax header, its records, the ustar block
    let records = String(decoding: header[512..<1024].prefix { $0 != 0 }, as: UTF8.self)
    #expect(records == "19 size=9663676416\n")
    // The ustar size field of the real header holds 0 instead.
    #expect(Array(header[(1024 + 124)..<(1024 + 136)]) == Array("00000000000\0".utf8))

    let reader = TarReader(source: MemorySource(header))
    let member = try reader.nextMember()
    #expect(member == TarMemberHeader(name: "pages/0.img", size: size, kind: .file, offset: 0))
    let message = errorMessage { try reader.forEachChunk { _ in } }
    #expect(
      message
        == "member 'pages/0.img' at byte 0: the stream ends at byte 1536, after 0 of its 9663676416 bytes"
    )
  }

  @Test func sizesJustBelow8GiBStayInUstar() throws {
    let size = (1 << 33) - 1
    let header = TarHeader.encode(name: "p", size: size, kind: .file, mtime: 0)
    #expect(header.count == 512)
    let member = try TarReader(source: MemorySource(header)).nextMember()
    #expect(member?.size == size)
  }

  @Test func paxRecordLengthsCountTheirOwnDigits() {
    for valueLength in 0...1200 {
      let record = TarHeader.paxRecord(
        key: "path", value: String(repeating: "a", count: valueLength))
      let declared = Int(String(decoding: record.prefix { $0 != UInt8(ascii: " ") }, as: UTF8.self))
      #expect(declared == record.count, "value length \(valueLength)")
    }
  }

  @Test func writerRefusesWrongSizesAndBadNames() throws {
    let tar = TarWriter(sink: MemorySink(), mtime: 0)
    try tar.beginMember(name: "a", size: 2)
    #expect(
      errorMessage { try ([1, 2, 3] as [UInt8]).withUnsafeBytes { try tar.write($0) } }
        == "member 'a': 3 bytes written, but its header says 2")
    try ([1] as [UInt8]).withUnsafeBytes { try tar.write($0) }
    #expect(
      errorMessage { try tar.endMember() } == "member 'a': 1 bytes written, but its header says 2")
    #expect(errorMessage { try tar.finish() } == "tar writer: member 'a' is still open")

    for name in [
      "../x", "/etc/passwd", "a/../b", "a//b", "./a", "", "a\0b", "a\nb",
      String(repeating: "n", count: 1025),
    ] {
      let writer = TarWriter(sink: MemorySink(), mtime: 0)
      #expect(
        errorMessage { try writer.beginMember(name: name, size: 0) } != nil,
        "\(name.debugDescription)")
    }
  }

  @Test(arguments: [
    ("../x", "has a '..' component"),
    ("/etc/passwd", "absolute name"),
    ("a/../../b", "has a '..' component"),
    ("./a", "has a '.' component"),
    ("a//b", "empty path component"),
    ("a\u{1b}[2Jb", "control character"),
  ])
  func readerRefusesUnsafeNames(name: String, problem: String) throws {
    let ustar = rawTar([
      (
        TarHeader.block(name: name, size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0),
        [1]
      )
    ])
    let ustarError = errorMessage { _ = try readTar(ustar) }
    #expect(ustarError?.contains("tar header at byte 0") == true)
    #expect(ustarError?.contains(problem) == true, "\(ustarError ?? "no error")")

    // The same name smuggled in a pax path record.
    let records = TarHeader.paxRecord(key: "path", value: name)
    let pax = rawTar([
      (
        TarHeader.block(
          name: "PaxHeaders/x", size: records.count, typeflag: TarHeader.typePax, mode: 0o644,
          mtime: 0), records
      ),
      (
        TarHeader.block(
          name: "harmless", size: 1, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0), [1]
      ),
    ])
    let paxError = errorMessage { _ = try readTar(pax) }
    #expect(paxError?.contains(problem) == true, "\(paxError ?? "no error")")
  }

  @Test func readerRefusesUnsupportedMemberTypes() {
    for (flag, what) in [
      ("2", "symlink"), ("1", "hard link"), ("3", "char device"), ("g", "global pax"),
      ("L", "GNU long name"),
    ] {
      let bytes = rawTar([
        (TarHeader.block(name: "x", size: 0, typeflag: flag.utf8.first!, mode: 0o644, mtime: 0), [])
      ])
      let message = errorMessage { _ = try readTar(bytes) }
      #expect(
        message
          == "tar header at byte 0: member type '\(flag)' is not allowed in a bundle (only files and directories)",
        "\(what)")
    }
  }

  @Test func readerChecksHeaderFields() {
    func corrupted(_ edit: (inout [UInt8]) -> Void, fixChecksum: Bool = true) -> String? {
      var block = TarHeader.block(
        name: "member", size: 3, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0)
      edit(&block)
      if fixChecksum {
        block.replaceSubrange(148..<156, with: [UInt8](repeating: UInt8(ascii: " "), count: 8))
        let sum = block.reduce(0) { $0 + Int($1) }
        block.replaceSubrange(148..<156, with: TarHeader.octal(sum, width: 7) + [UInt8(ascii: " ")])
      }
      return errorMessage { _ = try readTar(rawTar([(block, [1, 2, 3])])) }
    }
    #expect(
      corrupted({ $0[0] = UInt8(ascii: "M") }, fixChecksum: false)?.contains("checksum mismatch")
        == true)
    #expect(
      corrupted { $0.replaceSubrange(124..<136, with: Array("0000000009x\0".utf8)) }?.contains(
        "size field") == true)
    #expect(
      corrupted { $0.replaceSubrange(124..<136, with: [UInt8](repeating: 0, count: 12)) }?.contains(
        "size field") == true)
    #expect(corrupted { $0[124] = 0x80 }?.contains("size field") == true)  // GNU base-256
    #expect(
      corrupted { $0.replaceSubrange(100..<108, with: Array("-000644\0".utf8)) }?.contains(
        "mode field") == true)
    #expect(
      corrupted { $0.replaceSubrange(257..<265, with: Array("ustar  \0".utf8)) }?.contains(
        "not a POSIX ustar header") == true)
    #expect(corrupted { $0[157] = UInt8(ascii: "t") }?.contains("link target") == true)
    #expect(
      corrupted { $0[20] = UInt8(ascii: "z") }?.contains("garbage after the end of a name field")
        == true)
    #expect(
      corrupted(
        { $0.replaceSubrange(148..<156, with: Array("zzzzzz\0 ".utf8)) }, fixChecksum: false)?
        .contains("checksum field") == true)
    #expect(corrupted { _ in } == nil)
  }

  @Test func readerChecksPaxRecords() {
    func paxError(_ records: String, memberSize: Int = 0) -> String? {
      let data = Array(records.utf8)
      return errorMessage {
        _ = try readTar(
          rawTar([
            (
              TarHeader.block(
                name: "PaxHeaders/x", size: data.count, typeflag: TarHeader.typePax, mode: 0o644,
                mtime: 0), data
            ),
            (
              TarHeader.block(
                name: "m", size: memberSize, typeflag: TarHeader.typeFile, mode: 0o644, mtime: 0),
              []
            ),
          ]))
      }
    }
    // Valid, but the 1000 data bytes are missing.
    #expect(paxError("13 size=1000\n")?.contains("truncated stream") == true)
    #expect(paxError("12 size=-10\n")?.contains("is not a number") == true)
    #expect(paxError("15 size=1e9999\n")?.contains("is not a number") == true)
    // Wrong length.
    #expect(paxError("11 size=100\n")?.contains("not of the form") == true)
    #expect(paxError("99 path=a\n")?.contains("runs past the end") == true)
    #expect(paxError("011 path=ab\n")?.contains("does not start with its length") == true)
    #expect(paxError("13 mtime=1.5\n")?.contains("unexpected record 'mtime'") == true)
    #expect(paxError("10 path=a\n10 path=b\n")?.contains("appears twice") == true)
    #expect(paxError("9 path=ab\n")?.contains("not of the form") == true)
    #expect(paxError("3 a\n")?.contains("too short") == true)
    // Above the size cap.
    #expect(paxError("23 size=99999999999999\n")?.contains("is not a number up to") == true)
    #expect(paxError("10 path=a\n") == nil)
  }

  @Test func readerRefusesAPaxHeaderNotFollowedByAMember() {
    let records = TarHeader.paxRecord(key: "path", value: "a")
    let pax = TarHeader.block(
      name: "PaxHeaders/x", size: records.count, typeflag: TarHeader.typePax, mode: 0o644, mtime: 0)
    #expect(
      errorMessage { _ = try readTar(rawTar([(pax, records)])) }
        == "pax header at byte 0 is not followed by a member header at byte 1024")
    #expect(
      errorMessage { _ = try readTar(rawTar([(pax, records), (pax, records)])) }?.contains(
        "not followed by a member") == true)
  }

  @Test func readerEnforcesSizeLimitsBeforeReading() throws {
    let bytes = try writeTar([("big", randomBytes(5000, seed: 5))])
    let limited = errorMessage { _ = try readTar(bytes, limits: TarLimits(maxMemberSize: 4096)) }
    #expect(limited == "member 'big' at byte 0: size 5000 exceeds the limit of 4096 bytes")
    let reader = TarReader(source: MemorySource(bytes))
    _ = try reader.nextMember()
    #expect(
      errorMessage { _ = try reader.readAll(maxSize: 4999) }
        == "member 'big' at byte 0: 5000 bytes, the limit for this member is 4999")
  }

  @Test func readerChecksPaddingEndBlocksAndTrailingData() throws {
    var bytes = try writeTar([("a", [1, 2, 3])])
    bytes[512 + 3] = 9
    #expect(
      errorMessage { _ = try readTar(bytes) }
        == "member 'a' at byte 0: non-zero padding after its data")

    let clean = try writeTar([("a", [1, 2, 3])])
    #expect(
      errorMessage { _ = try readTar(clean + [0]) }
        == "byte 2048: unexpected data after the end-of-archive blocks")
    let oneEndBlock = Array(clean.dropLast(512))
    #expect(
      errorMessage { _ = try readTar(oneEndBlock) }?.contains(
        "while reading the second end-of-archive block") == true)
    let noEndBlocks = Array(clean.dropLast(1024))
    #expect(
      errorMessage { _ = try readTar(noEndBlocks) }
        == "truncated stream: it ends at byte 1024 while reading a member header or the end-of-archive blocks at byte 1024"
    )
  }

  @Test func truncatingATarAnywhereIsAnError() throws {
    let bytes = try writeTar([
      ("a", randomBytes(700, seed: 6)),
      (String(repeating: "L", count: 300), randomBytes(1500, seed: 7)), ("dir", nil),
    ])
    for length in 0..<bytes.count {
      let message = errorMessage { _ = try readTar(Array(bytes.prefix(length))) }
      #expect(message != nil, "truncated to \(length) bytes")
    }
  }

  @Test func shortReadsAreHandled() throws {
    let members: [(name: String, data: [UInt8]?)] = [
      ("a", randomBytes(10_000, seed: 8)), (String(repeating: "p", count: 180), [1]),
    ]
    let bytes = try writeTar(members)
    for maxReadSize in [1, 7, 511, 513, 4096] {
      let reader = TarReader(
        source: MemorySource(bytes, maxReadSize: maxReadSize), bufferSize: 1024)
      var names: [String] = []
      var data: [[UInt8]] = []
      while let header = try reader.nextMember() {
        names.append(header.name)
        data.append(try reader.readAll(maxSize: .max))
      }
      try reader.expectEndOfStream()
      #expect(names == members.map(\.name))
      #expect(data == members.map { $0.data ?? [] })
    }
  }
}
