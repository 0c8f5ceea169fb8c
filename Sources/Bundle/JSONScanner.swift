import Foundation

/// A forward-only reader of JSON text for the model members that are decoded thousands of
/// times per restore (the VMA lists of mm.json). Foundation's JSONDecoder spends most of its
/// time in Codable's generic machinery there; this reads values in place, as a hand-written
/// decoder asks for them, without building a tree.
///
/// It accepts the JSON that JSONEncoder writes: integers only (no fractions or exponents),
/// strings in valid UTF-8 with the standard escapes, and nesting up to 64 levels. Every
/// error names the member, the byte offset and what was expected, as bundles are untrusted.
public struct JSONScanner {
  private let bytes: UnsafeBufferPointer<UInt8>
  private var position = 0
  private let member: String
  private static let maximumDepth = 64

  /// Scans `bytes`, which stay valid while `body` runs; throws unless `body` consumes one
  /// whole value followed by nothing but blanks.
  /// `strict`: refuse fields this version does not know (see ``unknown(_:in:)``).
  public static func scan<T>(
    _ bytes: [UInt8], member: String, strict: Bool = true, _ body: (inout JSONScanner) throws(BundleError) -> T
  ) throws(BundleError) -> T {
    let result = bytes.withUnsafeBufferPointer { buffer in
      Result { () throws(BundleError) -> T in
        var scanner = JSONScanner(bytes: buffer, member: member)
        scanner.strict = strict
        let value = try body(&scanner)
        scanner.skipBlanks()
        guard scanner.position == buffer.count else { throw scanner.error("nothing after the value") }
        return value
      }
    }
    return try result.get()
  }

  /// Whether a field this version does not know is an error: in a bundle of this format
  /// version or an older one it is (a writer and a reader out of step would lose state
  /// silently); a newer minor version may add fields, which are skipped.
  private var strict = true

  /// A field none of the object's names matched: refused when strict, else skipped.
  public mutating func unknown(_ key: Key, in object: String) throws(BundleError) {
    guard !strict else {
      throw invalid(
        "\(object) has a field \"\(String(decoding: key.bytes.prefix(40), as: UTF8.self))\" this ckcont does not know")
    }
    try skip()
  }

  private init(bytes: UnsafeBufferPointer<UInt8>, member: String) {
    self.bytes = bytes
    self.member = member
  }

  /// A key of the object being read, compared with the names of the fields.
  /// Valid only inside the `object` callback that receives it.
  public struct Key {
    let bytes: UnsafeBufferPointer<UInt8>

    init(_ bytes: UnsafeBufferPointer<UInt8>) { self.bytes = bytes }

    /// memcmp: a VMA's keys are compared ~25 times each, and Sequence.elementsEqual took a
    /// tenth of decoding 10,000 VMAs (perf).
    public static func ~= (name: StaticString, key: Key) -> Bool {
      guard name.utf8CodeUnitCount == key.bytes.count, let base = key.bytes.baseAddress else {
        return name.utf8CodeUnitCount == key.bytes.count
      }
      return memcmp(name.utf8Start, base, key.bytes.count) == 0
    }
  }

  func error(_ expected: String) -> BundleError {
    BundleError("\(member) is malformed at byte \(position): expected \(expected)")
  }

  /// The error for a value that is well-formed JSON but not a valid one here.
  public func invalid(_ what: String) -> BundleError {
    BundleError("\(member) is malformed before byte \(position): \(what)")
  }

  /// The error for a field an object lacks.
  public func missing(_ field: String, in object: String) -> BundleError {
    BundleError("\(member) is malformed: \(object) before byte \(position) lacks \"\(field)\"")
  }

  private mutating func skipBlanks() {
    while position < bytes.count {
      switch bytes[position] {
      case 0x20, 0x09, 0x0a, 0x0d: position += 1
      default: return
      }
    }
  }

  /// Consumes `byte` after blanks if it is next.
  private mutating func take(_ byte: UInt8) -> Bool {
    skipBlanks()
    guard position < bytes.count, bytes[position] == byte else { return false }
    position += 1
    return true
  }

  private mutating func expect(_ byte: UInt8, _ what: String) throws(BundleError) {
    guard take(byte) else { throw error(what) }
  }

  /// Reads an object, calling `field` with each key; `field` must read (or `skip`) its value.
  public mutating func object(_ field: (Key, inout JSONScanner) throws(BundleError) -> Void) throws(BundleError) {
    try expect(UInt8(ascii: "{"), "{")
    if take(UInt8(ascii: "}")) { return }
    repeat {
      skipBlanks()
      let key = try rawString()
      try expect(UInt8(ascii: ":"), ":")
      try field(Key(key), &self)
    } while take(UInt8(ascii: ","))
    try expect(UInt8(ascii: "}"), ", or }")
  }

  /// Reads an array, calling `element` once per element, which must read it.
  public mutating func array(_ element: (inout JSONScanner) throws(BundleError) -> Void) throws(BundleError) {
    try expect(UInt8(ascii: "["), "[")
    if take(UInt8(ascii: "]")) { return }
    repeat { try element(&self) } while take(UInt8(ascii: ","))
    try expect(UInt8(ascii: "]"), ", or ]")
  }

  /// An array of values read by `element`.
  public mutating func list<T>(_ element: (inout JSONScanner) throws(BundleError) -> T) throws(BundleError) -> [T] {
    var result: [T] = []
    try array { scanner throws(BundleError) in result.append(try element(&scanner)) }
    return result
  }

  /// True (and consumed) when the next value is `null`.
  public mutating func null() -> Bool { literal("null") }

  private mutating func literal(_ word: StaticString) -> Bool {
    skipBlanks()
    let count = word.utf8CodeUnitCount
    guard let base = bytes.baseAddress, bytes.count - position >= count,
      memcmp(word.utf8Start, base + position, count) == 0
    else { return false }
    position += count
    return true
  }

  public mutating func bool() throws(BundleError) -> Bool {
    if literal("true") { return true }
    if literal("false") { return false }
    throw error("true or false")
  }

  /// An integer that fits `T`.
  public mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) throws(BundleError) -> T {
    skipBlanks()
    let start = position
    let negative = position < bytes.count && bytes[position] == UInt8(ascii: "-")
    if negative { position += 1 }
    var magnitude: UInt64 = 0
    let digits = position
    while position < bytes.count, bytes[position] >= UInt8(ascii: "0"), bytes[position] <= UInt8(ascii: "9") {
      let (times10, o1) = magnitude.multipliedReportingOverflow(by: 10)
      let (sum, o2) = times10.addingReportingOverflow(UInt64(bytes[position] - UInt8(ascii: "0")))
      guard !o1, !o2 else {
        position = start
        throw error("an integer of at most 64 bits")
      }
      magnitude = sum
      position += 1
    }
    let value: T?
    if position == digits {
      value = nil
    } else if negative {
      value =
        magnitude <= UInt64(Int64.max) + 1
        ? T(exactly: magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(magnitude)) : nil
    } else {
      value = T(exactly: magnitude)
    }
    let next = position < bytes.count ? bytes[position] : 0
    guard let value, next != UInt8(ascii: "."), next != UInt8(ascii: "e"), next != UInt8(ascii: "E") else {
      position = start
      throw error("an integer that fits \(T.self)")
    }
    return value
  }

  /// An object of integer fields (and nulls): each key in `names` is read into its place
  /// in the result, other keys are skipped. Take the values out with
  /// ``IntegerFields/take(_:)`` or ``IntegerFields/optional(_:)``.
  public mutating func integerFields(_ names: [StaticString], in object: String) throws(BundleError) -> IntegerFields {
    var values = [(negative: Bool, magnitude: UInt64)?](repeating: nil, count: names.count)
    try self.object { key, scanner throws(BundleError) in
      guard let index = names.firstIndex(where: { name in name ~= key }) else {
        return try scanner.unknown(key, in: object)
      }
      if scanner.null() { return }
      values[index] = try scanner.rawInteger()
    }
    return IntegerFields(names: names, values: values, object: object, scanner: self)
  }

  /// The fields ``integerFields(_:in:)`` read.
  public struct IntegerFields {
    let names: [StaticString]
    let values: [(negative: Bool, magnitude: UInt64)?]
    let object: String
    let scanner: JSONScanner

    /// The value of `name`, which must be present and fit `T`.
    public func take<T: FixedWidthInteger>(_ name: StaticString) throws(BundleError) -> T {
      guard let value: T = try optional(name) else { throw scanner.missing("\(name)", in: object) }
      return value
    }

    /// The value of `name`, nil when absent or null; it must fit `T`.
    public func optional<T: FixedWidthInteger>(_ name: StaticString) throws(BundleError) -> T? {
      guard
        let index = names.firstIndex(where: {
          $0.utf8CodeUnitCount == name.utf8CodeUnitCount
            && memcmp($0.utf8Start, name.utf8Start, $0.utf8CodeUnitCount) == 0
        })
      else {
        preconditionFailure("\(name) is not one of the fields read")
      }
      guard let raw = values[index] else { return nil }
      let value: T? =
        raw.negative
        ? (raw.magnitude <= UInt64(Int64.max) + 1
          ? T(exactly: raw.magnitude == UInt64(Int64.max) + 1 ? Int64.min : -Int64(raw.magnitude)) : nil)
        : T(exactly: raw.magnitude)
      guard let value else { throw scanner.invalid("\(object): \(name) does not fit \(T.self)") }
      return value
    }
  }

  /// An integer's sign and magnitude, to be fitted to its type by the caller.
  private mutating func rawInteger() throws(BundleError) -> (negative: Bool, magnitude: UInt64) {
    skipBlanks()
    let negative = position < bytes.count && bytes[position] == UInt8(ascii: "-")
    if negative {
      let value: Int64 = try integer()
      return (true, value.magnitude)
    }
    return (false, try integer(UInt64.self))
  }

  /// Bytes written as base64, as JSONEncoder writes `Data`.
  public mutating func base64() throws(BundleError) -> Data {
    let start = position
    guard let data = Data(base64Encoded: try string()) else {
      position = start
      throw error("base64 data")
    }
    return data
  }

  public mutating func string() throws(BundleError) -> String {
    skipBlanks()
    let start = position
    let raw = try rawString()
    guard raw.contains(UInt8(ascii: "\\")) else {
      guard let text = String(validating: raw, as: UTF8.self) else {
        position = start
        throw error("a string of valid UTF-8")
      }
      return text
    }
    var decoded: [UInt8] = []
    decoded.reserveCapacity(raw.count)
    var index = 0
    func hex4(_ at: Int) -> UInt32? {
      guard at + 4 <= raw.count else { return nil }
      var value: UInt32 = 0
      for byte in raw[at..<at + 4] {
        let digit: UInt8
        switch byte {
        case UInt8(ascii: "0")...UInt8(ascii: "9"): digit = byte - UInt8(ascii: "0")
        case UInt8(ascii: "a")...UInt8(ascii: "f"): digit = byte - UInt8(ascii: "a") + 10
        case UInt8(ascii: "A")...UInt8(ascii: "F"): digit = byte - UInt8(ascii: "A") + 10
        default: return nil
        }
        value = value << 4 | UInt32(digit)
      }
      return value
    }
    while index < raw.count {
      let byte = raw[index]
      guard byte == UInt8(ascii: "\\"), index + 1 < raw.count else {
        decoded.append(byte)
        index += 1
        continue
      }
      let escaped = raw[index + 1]
      index += 2
      switch escaped {
      case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): decoded.append(escaped)
      case UInt8(ascii: "b"): decoded.append(0x08)
      case UInt8(ascii: "f"): decoded.append(0x0c)
      case UInt8(ascii: "n"): decoded.append(0x0a)
      case UInt8(ascii: "r"): decoded.append(0x0d)
      case UInt8(ascii: "t"): decoded.append(0x09)
      case UInt8(ascii: "u"):
        guard var scalar = hex4(index) else {
          position = start
          throw error("four hex digits after \\u")
        }
        index += 4
        if (0xd800..<0xdc00).contains(scalar), index + 6 <= raw.count, raw[index] == UInt8(ascii: "\\"),
          raw[index + 1] == UInt8(ascii: "u"), let low = hex4(index + 2), (0xdc00..<0xe000).contains(low)
        {
          scalar = 0x10000 + (scalar - 0xd800) << 10 + (low - 0xdc00)
          index += 6
        }
        guard let unicode = Unicode.Scalar(scalar) else {
          position = start
          throw error("a valid \\u escape")
        }
        decoded.append(contentsOf: Array(String(Character(unicode)).utf8))
      default:
        position = start
        throw error("a valid escape")
      }
    }
    guard let text = String(validating: decoded, as: UTF8.self) else {
      position = start
      throw error("a string of valid UTF-8")
    }
    return text
  }

  /// The bytes between the quotes of a string, escapes left as they are.
  private mutating func rawString() throws(BundleError) -> UnsafeBufferPointer<UInt8> {
    guard position < bytes.count, bytes[position] == UInt8(ascii: "\"") else { throw error("a string") }
    let start = position + 1
    var index = start
    while index < bytes.count {
      switch bytes[index] {
      case UInt8(ascii: "\""):
        position = index + 1
        return UnsafeBufferPointer(rebasing: bytes[start..<index])
      case UInt8(ascii: "\\"): index += 2
      case 0..<0x20: throw error("no control character inside a string")
      default: index += 1
      }
    }
    throw error("the end of a string")
  }

  /// Skips one value of any kind.
  public mutating func skip() throws(BundleError) { try skip(depth: 0) }

  /// One value of any kind, checked as ``skip()`` checks it, decoded by JSONDecoder as `T`:
  /// for the rarer nested parts of a member decoded by hand.
  public mutating func decoded<T: Decodable>(_: T.Type, with decoder: JSONDecoder) throws(BundleError) -> T {
    skipBlanks()
    let start = position
    try skip()
    let value = Data(UnsafeBufferPointer(rebasing: bytes[start..<position]))
    do {
      return try decoder.decode(T.self, from: value)
    } catch {
      throw invalid("\(T.self) that does not decode: \(error)")
    }
  }

  private mutating func skip(depth: Int) throws(BundleError) {
    guard depth < Self.maximumDepth else { throw error("at most \(Self.maximumDepth) levels of nesting") }
    skipBlanks()
    guard position < bytes.count else { throw error("a value") }
    switch bytes[position] {
    case UInt8(ascii: "{"): try object { _, scanner throws(BundleError) in try scanner.skip(depth: depth + 1) }
    case UInt8(ascii: "["): try array { scanner throws(BundleError) in try scanner.skip(depth: depth + 1) }
    case UInt8(ascii: "\""): _ = try string()
    case UInt8(ascii: "t"), UInt8(ascii: "f"): _ = try bool()
    case UInt8(ascii: "n"): guard null() else { throw error("null") }
    default: _ = try integer(Int64.self) as Int64
    }
  }
}
