import Foundation
import Glibc

/// Where the package lives and where its fixture programs are built.
public enum TestPaths {
  /// The package root, found from this file's location.
  public static let packageRoot: String = {
    var url = URL(fileURLWithPath: #filePath)
    for _ in 0..<3 { url.deleteLastPathComponent() }
    return url.path
  }()

  /// The directory holding the built products (ckcont, the test runner).
  public static let products: String = {
    URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath().deletingLastPathComponent().path
  }()

  /// The ckcont executable under test.
  public static var ckcont: String { products + "/ckcont" }

  /// Captured text under Fixtures/ (e.g. `proc/mountinfo-hybrid.txt`).
  public static func fixtureFile(_ relative: String) -> String { packageRoot + "/Fixtures/" + relative }
}

/// The fixture programs, each built on first use by Scripts/build-fixtures.
public enum FixturePrograms {
  static let lock = NSLock()
  nonisolated(unsafe) static var built: [String: Result<String, TestFailure>] = [:]

  /// The path of the built fixture `name`, building it first if needed.
  public static func path(_ name: String) throws -> String {
    lock.lock()
    defer { lock.unlock() }
    if let result = built[name] { return try result.get() }
    let out = TestPaths.packageRoot + "/.build/fixtures"
    let result = run([TestPaths.packageRoot + "/Scripts/build-fixtures", out, name])
    let outcome: Result<String, TestFailure> =
      result.status == 0 ? .success(out + "/" + name) : .failure(TestFailure("building fixture \(name) failed: \(result.output)"))
    built[name] = outcome
    return try outcome.get()
  }
}

/// An error a test helper throws to fail the test with a message.
public struct TestFailure: Error, CustomStringConvertible {
  public var description: String
  public init(_ description: String) { self.description = description }
}

/// The outcome of a finished command.
public struct CommandResult: Sendable {
  public var status: Int32
  public var stdout: String
  public var stderr: String
  public var output: String { stdout + stderr }
}

/// Runs a command to completion, capturing stdout and stderr.
@discardableResult
public func run(_ argv: [String], environment: [String: String]? = nil) -> CommandResult {
  let process = Process()
  process.executableURL = URL(fileURLWithPath: argv[0])
  process.arguments = Array(argv.dropFirst())
  if let environment { process.environment = environment }
  let out = Pipe()
  let err = Pipe()
  process.standardOutput = out
  process.standardError = err
  process.standardInput = FileHandle.nullDevice
  do {
    try process.run()
  } catch {
    return CommandResult(status: -1, stdout: "", stderr: "cannot run \(argv[0]): \(error)")
  }
  // Read both pipes to the end before waiting, so a chatty command cannot block on a full pipe.
  let group = DispatchGroup()
  nonisolated(unsafe) var errData = Data()
  DispatchQueue.global().async(group: group) { errData = err.fileHandleForReading.readDataToEndOfFile() }
  let outData = out.fileHandleForReading.readDataToEndOfFile()
  group.wait()
  process.waitUntilExit()
  return CommandResult(
    status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
    stderr: String(decoding: errData, as: UTF8.self))
}

/// A program started in the background with its output going to a log file.
public final class BackgroundProcess: @unchecked Sendable {
  public let process = Process()
  public let logPath: String

  /// Starts `argv` with stdout and stderr appended to a fresh log file.
  public init(_ argv: [String], environment: [String: String]? = nil) throws {
    logPath = NSTemporaryDirectory() + "ckcont-test-\(UUID().uuidString).log"
    FileManager.default.createFile(atPath: logPath, contents: nil)
    let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
    process.executableURL = URL(fileURLWithPath: argv[0])
    process.arguments = Array(argv.dropFirst())
    process.standardOutput = log
    process.standardError = log
    process.standardInput = FileHandle.nullDevice
    if let environment {
      process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
    }
    try process.run()
    try log.close()
  }

  public var pid: Int32 { process.processIdentifier }

  /// The log so far.
  public var log: String {
    (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
  }

  /// Waits until the log holds a line starting with `prefix`; returns that line.
  @discardableResult
  public func waitForLine(startingWith prefix: String, timeout: Double = 10) throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      if let line = log.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) { return String(line) }
      if !process.isRunning {
        throw TestFailure("\(process.executableURL?.lastPathComponent ?? "?") exited before '\(prefix)': \(log)")
      }
      usleep(2000)
    }
    throw TestFailure("timed out waiting for '\(prefix)'; log: \(log)")
  }

  /// Kills the process (SIGKILL) and reaps it; removes the log.
  public func stop() {
    if process.isRunning { kill(pid, SIGKILL) }
    process.waitUntilExit()
    try? FileManager.default.removeItem(atPath: logPath)
  }

  deinit { if process.isRunning { kill(pid, SIGKILL) } }
}
