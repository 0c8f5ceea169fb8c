import Foundation
import Linux

/// Captured /proc text under `Fixtures/proc`, found relative to this source file so tests
/// run from any working directory.
enum ProcFixture {
  static let directory = URL(fileURLWithPath: #filePath)
    .deletingLastPathComponent()  // LinuxTests
    .deletingLastPathComponent()  // Tests
    .deletingLastPathComponent()  // package root
    .appendingPathComponent("Fixtures/proc")

  /// The text of the fixture file `name`.
  static func text(_ name: String) throws -> String {
    try PseudoFile.read(directory.appendingPathComponent(name).path)
  }

  /// The bytes of a fixture stored as a hex dump (`xxd -p`), for binary files such as auxv.
  static func hexBytes(_ name: String) throws -> [UInt8] {
    let hex = try text(name).filter(\.isHexDigit)
    var bytes: [UInt8] = []
    var index = hex.startIndex
    while index < hex.endIndex {
      let next = hex.index(index, offsetBy: 2)
      bytes.append(UInt8(hex[index..<next], radix: 16)!)
      index = next
    }
    return bytes
  }
}

/// Runs `body` and returns the CKError it throws, or nil when it does not throw one.
func ckError<T>(_ body: () throws -> T) -> CKError? {
  do {
    _ = try body()
    return nil
  } catch let error as CKError {
    return error
  } catch {
    return nil
  }
}
