import Foundation
import Glibc

/// A failure of the front: one line for people (and for runc's --log), and an exit status.
struct FrontError: Error {
  let message: String
  let status: Int32

  init(_ message: String, status: Int32 = 1) {
    self.message = message
    self.status = status
  }
}

/// runc's command line: global options, the command, its flags and the container id.
/// urfave/cli takes `-flag` and `--flag`, `--flag value` and `--flag=value` alike.
struct RuncArguments {
  /// Everything as given, for the real runtime.
  let all: [String]
  /// The global options before the command (`--root`, `--log`, ...), for runc again.
  let global: [String]
  let command: String?
  /// The command's flags by name (without dashes): the values given, "" for a switch.
  let flags: [String: [String]]
  /// What is not a flag after the command: the container id first.
  let operands: [String]

  /// Global options of runc that take a value.
  static let globalValues: Set<String> = ["root", "log", "log-format", "criu", "rootless"]
  /// Flags of checkpoint and restore that take a value.
  static let commandValues: Set<String> = [
    "image-path", "work-path", "parent-path", "page-server", "status-fd", "manage-cgroups-mode", "empty-ns",
    "bundle", "b", "pid-file", "console-socket", "lsm-profile", "lsm-mount-context",
  ]

  init(_ all: [String]) {
    self.all = all
    var index = 0
    var global: [String] = []
    while index < all.count, all[index].hasPrefix("-") {
      let (name, inline) = Self.split(all[index])
      global.append(all[index])
      if inline == nil, Self.globalValues.contains(name), index + 1 < all.count {
        index += 1
        global.append(all[index])
      }
      index += 1
    }
    self.global = global
    command = index < all.count ? all[index] : nil
    var flags: [String: [String]] = [:]
    var operands: [String] = []
    index += 1
    while index < all.count {
      let word = all[index]
      index += 1
      guard word.hasPrefix("-"), word != "-" else {
        operands.append(word)
        continue
      }
      let (name, inline) = Self.split(word)
      if let inline {
        flags[name, default: []].append(inline)
      } else if Self.commandValues.contains(name), index < all.count {
        flags[name, default: []].append(all[index])
        index += 1
      } else {
        flags[name, default: []].append("")
      }
    }
    self.flags = flags
    self.operands = operands
  }

  /// `--name=value` -> ("name", "value"); `-name` -> ("name", nil).
  private static func split(_ word: String) -> (String, String?) {
    let bare = word.drop { $0 == "-" }
    guard let equals = bare.firstIndex(of: "=") else { return (String(bare), nil) }
    return (String(bare[..<equals]), String(bare[bare.index(after: equals)...]))
  }

  func has(_ name: String) -> Bool { flags[name] != nil }
  func value(_ names: String...) -> String? { names.lazy.compactMap { flags[$0]?.last }.first }

  /// A global option's value (`--root`, `--log`, `--log-format`).
  func globalValue(_ name: String) -> String? {
    var index = 0
    while index < global.count {
      let (option, inline) = Self.split(global[index])
      if option == name { return inline ?? (index + 1 < global.count ? global[index + 1] : nil) }
      index += 1
    }
    return nil
  }

  /// Says on standard error that each of `flags` given is ignored, and why.
  func noteIgnored(_ flags: [String: String]) {
    for (flag, why) in flags.sorted(by: { $0.key < $1.key }) where has(flag) {
      FileHandle.standardError.write(Data("ckcont-runc: note: --\(flag) ignored: \(why)\n".utf8))
    }
  }

  /// runc's state directory for containers (`--root`, default /run/runc).
  var root: String { globalValue("root") ?? "/run/runc" }

  /// Prints `error` on standard error and, as runc does, into `--log` (JSON with
  /// `--log-format json`, which conmon shows podman's users).
  func report(_ error: FrontError) {
    FileHandle.standardError.write(Data("ckcont-runc: error: \(error.message)\n".utf8))
    guard let log = globalValue("log"), let handle = FileHandle(forWritingAtPath: log) ?? create(log) else { return }
    defer { try? handle.close() }
    handle.seekToEndOfFile()
    let time = ISO8601DateFormatter().string(from: Date())
    let line: String
    if globalValue("log-format") == "json" {
      let object = ["level": "error", "msg": error.message, "time": time]
      let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
      line = String(decoding: data, as: UTF8.self)
    } else {
      line = "time=\"\(time)\" level=error msg=\"\(error.message)\""
    }
    handle.write(Data((line + "\n").utf8))
  }

  private func create(_ path: String) -> FileHandle? {
    _ = FileManager.default.createFile(atPath: path, contents: nil)
    return FileHandle(forWritingAtPath: path)
  }
}
