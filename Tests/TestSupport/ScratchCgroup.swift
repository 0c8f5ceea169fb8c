import Foundation
import Glibc

/// A uniquely named cgroup subtree for one test, removed with everything in it afterwards.
public final class ScratchCgroup: @unchecked Sendable {
  public enum Version: String, Sendable { case v1, v2 }

  public let version: Version
  /// The absolute path of the top cgroup.
  public let path: String
  public let mountPoint: String

  /// Creates `<mount>/ckcont-test-<pid>-<random>` under the v2 mount or the v1 freezer mount.
  public init(_ version: Version, controller: String = "freezer") throws {
    self.version = version
    mountPoint = version == .v2 ? "/sys/fs/cgroup/unified" : "/sys/fs/cgroup/\(controller)"
    guard FileManager.default.fileExists(atPath: mountPoint) else {
      throw TestFailure("\(mountPoint) is not mounted")
    }
    path = "\(mountPoint)/ckcont-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    guard mkdir(path, 0o755) == 0 else { throw TestFailure("mkdir \(path): \(String(cString: strerror(errno)))") }
  }

  /// Takes charge of a cgroup someone else made (a restore under another root): destroyed
  /// like one of ours. `path` must be a test's own, uniquely named cgroup.
  public init(existing path: String) throws {
    guard let marker = path.range(of: "/ckcont-test-"), path.hasPrefix("/sys/fs/cgroup/") else {
      throw TestFailure("\(path) is not a test cgroup")
    }
    mountPoint = String(path[..<marker.lowerBound])
    version = mountPoint.hasSuffix("/unified") ? .v2 : .v1
    self.path = path
  }

  /// Where each process of the subtree is: pid -> directory relative to the top (`""` for it).
  public func placement() -> [Int32: String] {
    var result: [Int32: String] = [:]
    for dir in subtree() {
      for pid in ((try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8)) ?? "").split(separator: "\n") {
        if let pid = Int32(pid) { result[pid] = String(dir.dropFirst(path.count)) }
      }
    }
    return result
  }

  /// Creates nested child cgroups, e.g. `makeChildren("a/b/c")`; returns the deepest path.
  @discardableResult
  public func makeChildren(_ relative: String) throws -> String {
    var current = path
    for part in relative.split(separator: "/") {
      current += "/\(part)"
      if mkdir(current, 0o755) != 0 && errno != EEXIST {
        throw TestFailure("mkdir \(current): \(String(cString: strerror(errno)))")
      }
    }
    return current
  }

  /// Every cgroup directory of the subtree, parents first (none once destroyed).
  public func subtree() -> [String] {
    var result = [path]
    var index = 0
    while index < result.count {
      let dir = result[index]
      index += 1
      let names = (try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []
      for name in names.sorted() {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: dir + "/" + name, isDirectory: &isDir), isDir.boolValue {
          result.append(dir + "/" + name)
        }
      }
    }
    return result
  }

  /// Reads a control file of the cgroup at `relative` (`.` for the top).
  public func read(_ file: String, in relative: String = ".") -> String {
    let dir = relative == "." ? path : path + "/" + relative
    return (try? String(contentsOfFile: dir + "/" + file, encoding: .utf8)) ?? ""
  }

  /// The pids in the whole subtree.
  public func allPids() -> [Int32] {
    subtree().flatMap { dir in
      ((try? String(contentsOfFile: dir + "/cgroup.procs", encoding: .utf8)) ?? "")
        .split(separator: "\n").compactMap { Int32($0) }
    }
  }

  /// The container's first process: the one whose parent is not in the cgroup (pid 1 of
  /// its namespace). Not the lowest pid: host pids wrap (pid_max is 32768 here), and a
  /// child may then have a lower one than its parent.
  public func rootPid() -> Int32? {
    let pids = allPids()
    let members = Set(pids)
    return pids.first { pid in
      let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
      let parent = status.split(separator: "\n").first { $0.hasPrefix("PPid:") }.flatMap {
        Int32($0.dropFirst(5).trimmingCharacters(in: .whitespaces))
      }
      return parent.map { !members.contains($0) } ?? false
    }
  }

  /// Kills every task of the subtree (only ours: the cgroup is ours), thaws, and removes the
  /// directories bottom-up, waiting for the tasks to be gone.
  public func destroy() {
    let dirs = subtree()
    for dir in dirs {
      if version == .v2 {
        write(dir + "/cgroup.freeze", "0")
      } else {
        write(dir + "/freezer.state", "THAWED")
      }
    }
    let deadline = Date().addingTimeInterval(10)
    repeat {
      if version == .v2 {
        write(path + "/cgroup.kill", "1")
      } else {
        for pid in allPids() { kill(pid, SIGKILL) }
      }
      var remaining = false
      for dir in dirs.reversed() where rmdir(dir) != 0 && errno != ENOENT {
        remaining = true
      }
      if !remaining { return }
      usleep(5000)
    } while Date() < deadline
  }

  deinit { destroy() }

  /// Freezes the subtree (`cgroup.freeze` on v2, `freezer.state` on v1) and waits until the
  /// kernel reports it frozen.
  public func freeze(timeout: Double = 5) throws {
    let deadline = Date().addingTimeInterval(timeout)
    if version == .v2 {
      write(path + "/cgroup.freeze", "1")
      while !read("cgroup.events").split(separator: "\n").contains("frozen 1") {
        guard Date() < deadline else { throw TestFailure("\(path) did not freeze: \(read("cgroup.events"))") }
        usleep(1000)
      }
    } else {
      write(path + "/freezer.state", "FROZEN")
      while read("freezer.state").trimmingCharacters(in: .whitespacesAndNewlines) != "FROZEN" {
        guard Date() < deadline else { throw TestFailure("\(path) did not freeze: \(read("freezer.state"))") }
        usleep(1000)
      }
    }
  }

  /// Thaws the subtree frozen by ``freeze(timeout:)``.
  public func thaw() {
    if version == .v2 {
      write(path + "/cgroup.freeze", "0")
    } else {
      write(path + "/freezer.state", "THAWED")
    }
  }

  /// Writes a control file of the cgroup at `relative` (`.` for the top).
  public func set(_ file: String, _ value: String, in relative: String = ".") throws {
    let target = (relative == "." ? path : path + "/" + relative) + "/" + file
    guard (try? value.write(toFile: target, atomically: false, encoding: .utf8)) != nil else {
      throw TestFailure("cannot write \(value) to \(target)")
    }
  }

  private func write(_ file: String, _ value: String) {
    let fd = open(file, O_WRONLY)
    guard fd >= 0 else { return }
    _ = value.withCString { Glibc.write(fd, $0, strlen($0)) }
    close(fd)
  }
}
