import CKShim
import Foundation
import Glibc
import Linux

/// Runs work inside another namespace of a kind a thread may join alone (IPC, network, UTS):
/// on a new thread that joins it (setns), or one that makes a fresh one (unshare), so that
/// ckcont's own threads stay where they are.
enum NamespaceThread {
  /// Runs `body` on a new thread in the `kind` namespace (`ipc`, `net`) of process `pid`.
  static func run<T>(in kind: String, of pid: Int32, _ body: @escaping () throws -> T) throws -> T {
    let path = "/proc/\(pid)/ns/\(kind)"
    let namespace = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
    // `namespace` stays open until the thread has joined and returned.
    return try run(inNamespace: namespace.raw, kind: kind, named: "of \(pid)", body)
  }

  /// Runs `body` on a new thread in the `kind` namespace open as `fd` (which outlives the
  /// call); `name` says whose it is in an error.
  static func run<T>(inNamespace fd: Int32, kind: String, named name: String, _ body: @escaping () throws -> T) throws
    -> T
  {
    try onThread(named: "ckcont-\(kind)") {
      guard ck_setns(fd, flag(kind)) == 0 else {
        throw SyscallError("setns", "the \(kind) namespace \(name)", .init(rawValue: errno))
      }
      return try body()
    }
  }

  /// Runs `body` on a new thread in a fresh `kind` namespace, which goes with the thread.
  static func runInFresh<T>(_ kind: String, _ body: @escaping () throws -> T) throws -> T {
    try onThread(named: "ckcont-fresh-\(kind)") {
      guard ck_unshare(flag(kind)) == 0 else {
        throw SyscallError("unshare", "a fresh \(kind) namespace", .init(rawValue: errno))
      }
      return try body()
    }
  }

  private static func flag(_ kind: String) -> Int32 {
    switch kind {
    case "ipc": Int32(CK_CLONE_NEWIPC)
    case "net": Int32(CK_CLONE_NEWNET)
    default: Int32(CK_CLONE_NEWUTS)
    }
  }

  private static func onThread<T>(named name: String, _ body: @escaping () throws -> T) throws -> T {
    try BackgroundJob(named: name, body).wait()
  }

}
