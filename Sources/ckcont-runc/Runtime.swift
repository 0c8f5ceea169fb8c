import CKShim
import Foundation
import Glibc

/// The programs the front stands between: the real runtime and ckcont.
enum Runtime {
  /// The real runtime: `$CKCONT_RUNC_RUNTIME`, else the first `runc` on PATH that is not
  /// this program, else /usr/sbin/runc.
  static var runc: String {
    if let named = ProcessInfo.processInfo.environment["CKCONT_RUNC_RUNTIME"], !named.isEmpty { return named }
    let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin"
    for directory in path.split(separator: ":") {
      let candidate = "\(directory)/runc"
      if access(candidate, X_OK) == 0, realPath(candidate) != realPath(ownPath) { return candidate }
    }
    return "/usr/sbin/runc"
  }

  /// ckcont beside this program (`$CKCONT` overrides).
  static var ckcont: String {
    if let named = ProcessInfo.processInfo.environment["CKCONT"], !named.isEmpty { return named }
    return (ownPath as NSString).deletingLastPathComponent + "/ckcont"
  }

  static var ownPath: String { realPath("/proc/self/exe") ?? CommandLine.arguments[0] }

  static func realPath(_ path: String) -> String? {
    guard let resolved = realpath(path, nil) else { return nil }
    defer { free(resolved) }
    return String(cString: resolved)
  }

  /// Becomes the real runtime with `arguments`: every command the front does not take.
  static func execRunc(_ arguments: [String]) throws -> Never {
    let program = runc
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    execv(program, argv)
    throw FrontError("cannot run \(program): \(String(cString: strerror(errno)))", status: 127)
  }

  /// Runs `program` with `arguments`, standard input from /dev/null; its exit status, its
  /// standard output and its standard error. `descriptors`: this process's descriptors the
  /// program gets as 3, 4, 5... (the rest are not passed).
  static func run(_ program: String, _ arguments: [String], descriptors: [Int32] = []) throws -> (
    status: Int32, output: String, errors: String
  ) {
    var output: [Int32] = [0, 0]
    var errors: [Int32] = [0, 0]
    guard ck_pipe2(&output, O_CLOEXEC) == 0, ck_pipe2(&errors, O_CLOEXEC) == 0 else {
      throw FrontError("pipe2: \(String(cString: strerror(errno)))")
    }
    // Every source far above the numbers the child gets them at (0-2 and 3, 4, 5...), so
    // that no dup2 of the file actions overwrites one a later dup2 reads.
    let sources = try ([output[1], errors[1]] + descriptors).map(Self.farAbove)
    close(output[1])
    close(errors[1])
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    defer { posix_spawn_file_actions_destroy(&actions) }
    for (index, fd) in sources.dropFirst(2).enumerated() {
      posix_spawn_file_actions_adddup2(&actions, fd, Int32(3 + index))
    }
    posix_spawn_file_actions_adddup2(&actions, sources[0], 1)
    posix_spawn_file_actions_adddup2(&actions, sources[1], 2)
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
    let argv = ([program] + arguments).map { strdup($0) } + [nil]
    defer { for word in argv { free(word) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, program, &actions, nil, argv, environ)
    // The child has its copies: reading to the end needs ours of the write ends closed.
    for fd in sources { close(fd) }
    defer {
      close(output[0])
      close(errors[0])
    }
    guard spawned == 0 else {
      throw FrontError("cannot run \(program): \(String(cString: strerror(spawned)))", status: 127)
    }
    // Standard error first: the programs run here write little to either.
    let errorText = readAll(errors[0])
    let outputText = readAll(output[0])
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    let exited = status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    return (exited, outputText, errorText)
  }

  /// A close-on-exec copy of `fd` numbered 100 or above.
  private static func farAbove(_ fd: Int32) throws -> Int32 {
    let copy = fcntl(fd, F_DUPFD_CLOEXEC, 100)
    guard copy >= 0 else { throw FrontError("fcntl(F_DUPFD_CLOEXEC) of fd \(fd): \(String(cString: strerror(errno)))") }
    return copy
  }

  private static func readAll(_ fd: Int32) -> String {
    var data = Data()
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
      let count = read(fd, &buffer, buffer.count)
      if count > 0 {
        data.append(contentsOf: buffer[0..<count])
      } else if count == 0 || errno != EINTR {
        break
      }
    }
    return String(decoding: data, as: UTF8.self)
  }

  /// The last line of a program's standard error: ckcont's error line.
  static func lastLine(_ text: String) -> String? {
    text.split(separator: "\n").last.map { String($0).replacingOccurrences(of: "ckcont: error: ", with: "ckcont: ") }
  }

  /// The real runtime's `state` of container `id`, as JSON.
  static func state(of id: String, global: [String]) throws -> [String: Any] {
    let answer = try run(runc, global + ["state", id])
    guard answer.status == 0,
      let state = try? JSONSerialization.jsonObject(with: Data(answer.output.utf8)) as? [String: Any]
    else { throw FrontError("\(runc) knows no container \(id)") }
    return state
  }
}

/// Reads and writes small JSON files of the front and of runc.
enum JSONFile {
  static func read(_ path: String) throws -> [String: Any] {
    guard let data = FileManager.default.contents(atPath: path),
      let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
    else { throw FrontError("cannot read \(path) as JSON") }
    return object
  }

  static func write(_ object: Any, to path: String, mode: Int = 0o600) throws {
    let data = try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
    guard FileManager.default.createFile(atPath: path, contents: data, attributes: [.posixPermissions: mode]) else {
      throw FrontError("cannot write \(path): \(String(cString: strerror(errno)))")
    }
  }
}
