/// The kinds of tar member this module writes and accepts; links, devices and the rest are
/// refused on read because a bundle never contains them.
public enum TarMemberKind: Sendable, Equatable {
  /// A regular file (typeflag `0`).
  case file
  /// A directory (typeflag `5`), always of size 0.
  case directory
}

/// One member as described by its header(s).
public struct TarMemberHeader: Sendable, Equatable {
  /// The path inside the archive, validated (relative, no `.`/`..` components); no trailing `/`.
  public var name: String
  /// The number of data bytes that follow the header.
  public var size: Int
  /// File or directory.
  public var kind: TarMemberKind
  /// Byte offset in the stream of the member's first header block (its pax header, if any).
  public var offset: Int

  /// A header value.
  public init(name: String, size: Int, kind: TarMemberKind, offset: Int) {
    self.name = name
    self.size = size
    self.kind = kind
    self.offset = offset
  }
}

/// The ustar header block (POSIX.1-1988) and the pax extended records (POSIX.1-2001) that carry
/// what ustar cannot: names longer than 100 bytes and sizes of 8 GiB and more. Both directions
/// live here so that the layout is written down once.
enum TarHeader {
  static let blockSize = 512
  /// The ustar `name` field holds 100 bytes; longer names go into a pax `path` record.
  static let ustarNameLength = 100
  /// The ustar `size` field holds 11 octal digits: sizes from 8^11 = 8 GiB up go into pax `size`.
  static let ustarSizeLimit = 1 << 33

  /// Field offsets and lengths of the ustar header block.
  enum Field {
    static let name = 0..<100
    static let mode = 100..<108
    static let uid = 108..<116
    static let gid = 116..<124
    static let size = 124..<136
    static let mtime = 136..<148
    static let checksum = 148..<156
    static let typeflag = 156
    static let linkname = 157..<257
    static let magic = 257..<263
    static let version = 263..<265
    static let prefix = 345..<500
  }

  static let magic: [UInt8] = Array("ustar\0".utf8)
  static let version: [UInt8] = Array("00".utf8)
  static let typeFile = UInt8(ascii: "0")
  static let typeFileOld: UInt8 = 0
  static let typeDirectory = UInt8(ascii: "5")
  static let typePax = UInt8(ascii: "x")

  // MARK: Writing

  /// The header blocks for one member: a pax `x` header with its padded records when the name
  /// or the size does not fit ustar, then the ustar block. Mode 0644 for files and 0755 for
  /// directories (a 0644 directory cannot be entered after `tar xf`), uid/gid 0.
  static func encode(name: String, size: Int, kind: TarMemberKind, mtime: Int) -> [UInt8] {
    let storedName = kind == .directory ? name + "/" : name
    var records: [UInt8] = []
    if storedName.utf8.count > ustarNameLength {
      records += paxRecord(key: "path", value: storedName)
    }
    if size >= ustarSizeLimit {
      records += paxRecord(key: "size", value: String(size))
    }
    var out: [UInt8] = []
    if !records.isEmpty {
      out += block(
        name: "PaxHeaders/ckcont", size: records.count, typeflag: typePax, mode: 0o644, mtime: mtime
      )
      out += records + [UInt8](repeating: 0, count: padding(records.count))
    }
    out += block(
      name: truncated(storedName, toUTF8Count: ustarNameLength),
      size: size < ustarSizeLimit ? size : 0,
      typeflag: kind == .directory ? typeDirectory : typeFile,
      mode: kind == .directory ? 0o755 : 0o644, mtime: mtime)
    return out
  }

  /// One ustar block with its checksum filled in.
  static func block(name: String, size: Int, typeflag: UInt8, mode: Int, mtime: Int) -> [UInt8] {
    var block = [UInt8](repeating: 0, count: blockSize)
    func put(_ bytes: some Collection<UInt8>, at start: Int) {
      block.replaceSubrange(start..<start + bytes.count, with: bytes)
    }
    put(name.utf8, at: Field.name.lowerBound)
    put(octal(mode, width: Field.mode.count), at: Field.mode.lowerBound)
    put(octal(0, width: Field.uid.count), at: Field.uid.lowerBound)
    put(octal(0, width: Field.gid.count), at: Field.gid.lowerBound)
    put(octal(size, width: Field.size.count), at: Field.size.lowerBound)
    put(
      octal(min(max(mtime, 0), ustarSizeLimit - 1), width: Field.mtime.count),
      at: Field.mtime.lowerBound)
    block[Field.typeflag] = typeflag
    put(magic, at: Field.magic.lowerBound)
    put(version, at: Field.version.lowerBound)
    // The checksum is computed with its own field read as eight spaces, then stored as six
    // digits, NUL, space (the layout GNU tar writes).
    put(
      [UInt8](repeating: UInt8(ascii: " "), count: Field.checksum.count),
      at: Field.checksum.lowerBound)
    let sum = block.reduce(0) { $0 + Int($1) }
    put(octal(sum, width: 7) + [UInt8(ascii: " ")], at: Field.checksum.lowerBound)
    return block
  }

  /// `value` as zero-padded octal digits followed by a NUL, `width` bytes in all.
  static func octal(_ value: Int, width: Int) -> [UInt8] {
    let digits = String(value, radix: 8)
    return Array(String(repeating: "0", count: max(0, width - 1 - digits.count)).utf8)
      + Array(digits.utf8) + [0]
  }

  /// One pax record, `"<length> <key>=<value>\n"`, where the length counts its own digits.
  static func paxRecord(key: String, value: String) -> [UInt8] {
    let body = " \(key)=\(value)\n".utf8.count
    var length = body + 1
    while String(length).count + body != length { length = String(length).count + body }
    return Array("\(length) \(key)=\(value)\n".utf8)
  }

  /// The zero bytes that bring `size` up to a whole number of blocks.
  static func padding(_ size: Int) -> Int {
    (blockSize - size % blockSize) % blockSize
  }

  /// The longest prefix of `string` of at most `count` UTF-8 bytes, cut between characters.
  static func truncated(_ string: String, toUTF8Count count: Int) -> String {
    var result = ""
    for character in string {
      if result.utf8.count + character.utf8.count > count { break }
      result.append(character)
    }
    return result
  }

  // MARK: Reading

  /// What one ustar block says, before pax records are applied and the name is validated.
  struct Block {
    var nameBytes: [UInt8]
    var size: Int
    var typeflag: UInt8
  }

  /// Whether `block` is one of the two all-zero blocks that end an archive.
  static func isZero(_ block: UnsafeRawBufferPointer) -> Bool {
    block.allSatisfy { $0 == 0 }
  }

  /// Decodes and checks one ustar block: checksum, magic, the syntax of every numeric field,
  /// and the member type. `offset` only serves the error messages.
  static func decode(_ block: UnsafeRawBufferPointer, at offset: Int) throws -> Block {
    func fail(_ problem: String) -> BundleError {
      BundleError("tar header at byte \(offset): \(problem)")
    }
    guard let stored = parseOctal(block[Field.checksum]) else {
      throw fail("the checksum field is not an octal number")
    }
    var sum = 0
    for (index, byte) in block.enumerated() {
      sum += Field.checksum.contains(index) ? Int(UInt8(ascii: " ")) : Int(byte)
    }
    guard sum == stored else {
      throw fail(
        "checksum mismatch (header says \(stored), the block sums to \(sum)): the header is corrupt"
      )
    }
    guard block[Field.magic].elementsEqual(magic), block[Field.version].elementsEqual(version)
    else {
      throw fail("not a POSIX ustar header (wrong magic or version)")
    }
    for (field, range) in [
      ("mode", Field.mode), ("uid", Field.uid), ("gid", Field.gid), ("mtime", Field.mtime),
    ] {
      guard parseOctal(block[range]) != nil else {
        throw fail("the \(field) field is not an octal number")
      }
    }
    guard let size = parseOctal(block[Field.size]) else {
      throw fail("the size field is not an octal number")
    }
    let typeflag = block[Field.typeflag]
    guard [typeFile, typeFileOld, typeDirectory, typePax].contains(typeflag) else {
      throw fail(
        "member type '\(Unicode.Scalar(typeflag).escaped(asASCII: true))' is not allowed in a bundle (only files and directories)"
      )
    }
    guard block[Field.linkname].allSatisfy({ $0 == 0 }) else {
      throw fail("a link target is set, but bundles hold no links")
    }
    let name = try cString(block[Field.name], fail: fail)
    let prefix = try cString(block[Field.prefix], fail: fail)
    return Block(
      nameBytes: prefix.isEmpty ? name : prefix + [UInt8(ascii: "/")] + name, size: size,
      typeflag: typeflag)
  }

  /// The bytes of a NUL-padded string field; anything after the first NUL must be NUL too.
  static func cString(_ field: Slice<UnsafeRawBufferPointer>, fail: (String) -> BundleError) throws
    -> [UInt8]
  {
    let bytes = field.prefix { $0 != 0 }
    guard field.dropFirst(bytes.count).allSatisfy({ $0 == 0 }) else {
      throw fail("garbage after the end of a name field")
    }
    return Array(bytes)
  }

  /// An octal field: optional leading spaces, at least one digit 0-7, then only NUL or space.
  /// Returns nil for anything else, including GNU's base-256 encoding, which we never write.
  static func parseOctal(_ field: Slice<UnsafeRawBufferPointer>) -> Int? {
    var bytes = field.drop { $0 == UInt8(ascii: " ") }
    let digits = bytes.prefix { (UInt8(ascii: "0")...UInt8(ascii: "7")).contains($0) }
    bytes = bytes.dropFirst(digits.count)
    guard !digits.isEmpty, digits.count <= 12,
      bytes.allSatisfy({ $0 == 0 || $0 == UInt8(ascii: " ") })
    else {
      return nil
    }
    return digits.reduce(0) { $0 * 8 + Int($1 - UInt8(ascii: "0")) }
  }

  /// The `path` and `size` of a pax extended header's records. Each record must be
  /// well-formed, its length exact, its key one of those two, each at most once.
  static func parsePaxRecords(_ data: [UInt8], at offset: Int, maxSize: Int) throws -> (
    path: [UInt8]?, size: Int?
  ) {
    func fail(_ problem: String) -> BundleError {
      BundleError("pax header at byte \(offset): \(problem)")
    }
    var path: [UInt8]?
    var size: Int?
    var rest = data[...]
    while !rest.isEmpty {
      let lengthDigits = rest.prefix { (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }
      guard !lengthDigits.isEmpty, lengthDigits.count <= 6, lengthDigits.first != UInt8(ascii: "0")
      else {
        throw fail("a record does not start with its length")
      }
      let length = lengthDigits.reduce(0) { $0 * 10 + Int($1 - UInt8(ascii: "0")) }
      guard length <= rest.count else {
        throw fail("a record's length \(length) runs past the end of the header")
      }
      guard length > lengthDigits.count + 3 else {
        throw fail("a record's length \(length) is too short")
      }
      let record = rest.prefix(length)
      rest = rest.dropFirst(length)
      let body = record.dropFirst(lengthDigits.count)
      guard body.first == UInt8(ascii: " "), body.last == UInt8(ascii: "\n"),
        let equals = body.firstIndex(of: UInt8(ascii: "="))
      else {
        throw fail("a record is not of the form '<length> <key>=<value>\\n'")
      }
      let key = String(decoding: body[body.startIndex + 1..<equals], as: UTF8.self)
      let value = Array(body[(equals + 1)..<(body.endIndex - 1)])
      switch key {
      case "path" where path == nil:
        path = value
      case "size" where size == nil:
        guard !value.isEmpty, value.count <= 19,
          value.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) }),
          let number = Int(String(decoding: value, as: UTF8.self)), number <= maxSize
        else {
          throw fail(
            "size record '\(String(decoding: value.prefix(40), as: UTF8.self))' is not a number up to \(maxSize)"
          )
        }
        size = number
      case "path", "size":
        throw fail("record '\(key)' appears twice")
      default:
        throw fail("unexpected record '\(key.prefix(40))' (bundles only use 'path' and 'size')")
      }
    }
    return (path, size)
  }

  // MARK: Names

  /// Why `name` may not be a member name, or nil if it may: it must be non-empty UTF-8 of at
  /// most `maxLength` bytes, relative, without control characters, and made of components that
  /// are neither empty nor `.` nor `..` — so that extracting a bundle never writes outside the
  /// directory it is extracted into.
  static func nameProblem(_ name: String, maxLength: Int) -> String? {
    if name.isEmpty { return "the name is empty" }
    if name.utf8.count > maxLength {
      return "the name is \(name.utf8.count) bytes long, the limit is \(maxLength)"
    }
    if name.utf8.first == UInt8(ascii: "/") { return "absolute name \(name.debugDescription)" }
    if name.utf8.contains(where: { $0 < 0x20 || $0 == 0x7F }) {
      return "name \(name.debugDescription) contains a control character"
    }
    for component in name.split(separator: "/", omittingEmptySubsequences: false) {
      if component.isEmpty { return "name \(name.debugDescription) has an empty path component" }
      if component == "." || component == ".." {
        return "name \(name.debugDescription) has a '\(component)' component"
      }
    }
    return nil
  }
}
