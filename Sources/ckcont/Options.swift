import ArgumentParser
import Bundle
import Foundation
import Glibc
import Linux
import Logging

/// Options every command shares: logging and output format.
struct GlobalOptions: ParsableArguments {
  @Flag(name: .shortAndLong, help: "Log each phase with timings to stderr.")
  var verbose = false

  @Flag(help: "Print machine-readable JSON on stdout.")
  var json = false

  /// A logger writing to stderr, at debug level with -v.
  func logger(_ label: String) -> Logger {
    LoggingBootstrap.once
    var logger = Logger(label: label)
    logger.logLevel = verbose ? .debug : .notice
    return logger
  }
}

enum LoggingBootstrap {
  static let once: Void = {
    LoggingSystem.bootstrap { LogLines(label: $0) }
  }()
}

/// Writing to the terminal streams.
enum Terminal {
  static func error(_ line: String) {
    var text = line
    if !text.hasSuffix("\n") { text += "\n" }
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
  }

  static func errorRaw(_ text: String) {
    var bytes = Array(text.utf8)
    _ = bytes.withUnsafeMutableBytes { Glibc.write(2, $0.baseAddress, $0.count) }
  }

  static func out(_ line: String) {
    print(line)
  }
}

/// Commands that change the system refuse to start without root, in one clear line.
func requireRoot(_ command: String) throws(CKError) {
  guard geteuid() == 0 else {
    throw CKError(.permission, "ckcont \(command) must run as root", hint: "run it with sudo")
  }
}

/// Prints `value` as pretty JSON with sorted keys on stdout.
func printJSON<T: Encodable>(_ value: T, toStandardError: Bool = false) throws {
  let encoder = JSONEncoder()
  encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
  let text = String(decoding: try encoder.encode(value), as: UTF8.self)
  if toStandardError { Terminal.error(text) } else { Terminal.out(text) }
}

/// An --action-script must be a program this user may run.
func validateActionScript(_ path: String?) throws {
  guard let path else { return }
  guard access(path, X_OK) == 0 else {
    throw ValidationError("--action-script \(path) is not an executable program")
  }
}

/// `--compress zstd[:LEVEL]`: the zstd level (3 when not given).
func compressionLevel(_ spec: String?) throws -> Int32? {
  guard let spec else { return nil }
  let parts = spec.split(separator: ":", maxSplits: 1)
  guard parts.first == "zstd" else { throw ValidationError("--compress \(spec): give zstd or zstd:LEVEL") }
  guard parts.count == 2 else { return 3 }
  guard let level = Int32(parts[1]), Compression.levels.contains(Int(level)) else {
    throw ValidationError(
      "--compress \(spec): the level is one of \(Compression.levels.lowerBound)...\(Compression.levels.upperBound)")
  }
  return level
}
