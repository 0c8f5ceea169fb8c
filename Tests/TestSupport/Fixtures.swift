import CKShim
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
  /// The OCI runtime front beside it.
  public static var ckcontRunc: String { products + "/ckcont-runc" }
  /// The bundle fuzzer (Sources/ckcont-fuzz).
  public static var fuzzer: String { products + "/ckcont-fuzz" }

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
      result.status == 0
      ? .success(out + "/" + name) : .failure(TestFailure("building fixture \(name) failed: \(result.output)"))
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
  var outPipe: [Int32] = [0, 0]
  var errPipe: [Int32] = [0, 0]
  guard ck_pipe2(&outPipe, O_CLOEXEC) == 0, ck_pipe2(&errPipe, O_CLOEXEC) == 0 else {
    return CommandResult(status: -1, stdout: "", stderr: "pipe2 failed")
  }
  let pid: Int32
  do {
    pid = try Spawn.start(argv, environment: environment, out: outPipe[1], err: errPipe[1])
  } catch {
    for fd in [outPipe[0], outPipe[1], errPipe[0], errPipe[1]] { close(fd) }
    return CommandResult(status: -1, stdout: "", stderr: "\(error)")
  }
  close(outPipe[1])
  close(errPipe[1])
  // Read both pipes to the end before waiting, so a chatty command cannot block on a full pipe.
  var out: [UInt8] = []
  var err: [UInt8] = []
  var open: [(fd: Int32, isOut: Bool)] = [(outPipe[0], true), (errPipe[0], false)]
  var buffer = [UInt8](repeating: 0, count: 65536)
  while !open.isEmpty {
    var fds = open.map { pollfd(fd: $0.fd, events: Int16(POLLIN), revents: 0) }
    if Glibc.poll(&fds, nfds_t(fds.count), -1) < 0 && errno != EINTR { break }
    for (index, entry) in open.enumerated().reversed() where fds[index].revents != 0 {
      let n = buffer.withUnsafeMutableBytes { Glibc.read(entry.fd, $0.baseAddress, $0.count) }
      if n > 0 {
        if entry.isOut { out += buffer[0..<n] } else { err += buffer[0..<n] }
      } else if n == 0 || errno != EINTR {
        close(entry.fd)
        open.remove(at: index)
      }
    }
  }
  return CommandResult(
    status: Spawn.wait(pid), stdout: String(decoding: out, as: UTF8.self), stderr: String(decoding: err, as: UTF8.self))
}

/// A program started in the background with its output going to a log file.
public final class BackgroundProcess: @unchecked Sendable {
  public let pid: Int32
  public let logPath: String
  private var exitStatus: Int32?

  /// Starts `argv` with stdout and stderr appended to a fresh log file (and `terminal` as
  /// its stdin and controlling terminal, see ``Spawn/start``).
  public init(_ argv: [String], environment: [String: String]? = nil, terminal: String? = nil) throws {
    logPath = NSTemporaryDirectory() + "ckcont-test-\(UUID().uuidString).log"
    let fd = open(logPath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
    guard fd >= 0 else { throw TestFailure("cannot create \(logPath)") }
    defer { close(fd) }
    pid = try Spawn.start(argv, environment: environment, out: fd, err: fd, terminal: terminal)
  }

  /// The log so far.
  public var log: String {
    (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
  }

  /// Whether it still runs (reaps it once it has exited).
  public var isRunning: Bool {
    if exitStatus != nil { return false }
    exitStatus = Spawn.poll(pid)
    return exitStatus == nil
  }

  /// Waits for it to exit; its status.
  @discardableResult
  public func waitUntilExit() -> Int32 {
    if let exitStatus { return exitStatus }
    let status = Spawn.wait(pid)
    exitStatus = status
    return status
  }

  /// Waits until the log holds a line starting with `prefix`; returns that line.
  @discardableResult
  public func waitForLine(startingWith prefix: String, timeout: Double = 10) throws -> String {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
      // Whether it still runs is read before the log: a program that writes its line and
      // exits between the two reads would otherwise be taken for one that never wrote it.
      let running = isRunning
      if let line = log.split(separator: "\n").first(where: { $0.hasPrefix(prefix) }) { return String(line) }
      if !running {
        throw TestFailure("\((logPath as NSString).lastPathComponent) program exited before '\(prefix)': \(log)")
      }
      usleep(2000)
    }
    throw TestFailure("timed out waiting for '\(prefix)'; log: \(log)")
  }

  /// Kills it (SIGKILL), reaps it, removes the log.
  public func stop() {
    if isRunning { kill(pid, SIGKILL) }
    waitUntilExit()
    try? FileManager.default.removeItem(atPath: logPath)
  }

  deinit { if exitStatus == nil { kill(pid, SIGKILL) } }
}

/// A new pseudo-terminal of this process's: its master (which the caller closes) and the
/// path of its slave, unlocked.
public func openPseudoTerminal() throws -> (master: Int32, slave: String) {
  let master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC)
  guard master >= 0 else { throw TestFailure("open /dev/ptmx: \(String(cString: strerror(errno)))") }
  var index: Int32 = -1
  guard ck_pty_open_master(master, &index) == 0 else {
    close(master)
    throw TestFailure("unlocking a pty failed")
  }
  return (master, "/dev/pts/\(index)")
}
