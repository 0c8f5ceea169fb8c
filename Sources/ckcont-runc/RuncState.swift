import Foundation
import Glibc

/// runc's record of a container (`<root>/<id>/state.json`), kept by the checkpoint and
/// written again for the restored container as runc writes it: its init's pid and start time
/// (runc takes a container whose init's start time differs for stopped), its cgroups and
/// namespaces as /proc names them now, its id, bundle and rootfs.
enum RuncState {
  /// The copy beside the checkpoint.
  static let keptName = "runc-state.json"

  /// The network namespace runc joined for the container (its config's NEWNET entry with a
  /// path: one its caller made, as podman's netavark does), from runc's state at `path`;
  /// nil when runc made a new one or kept the host's.
  static func joinedNetwork(inStateAt path: String) -> String? {
    guard let data = FileManager.default.contents(atPath: path),
      let state = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
      let namespaces = (state["config"] as? [String: Any])?["namespaces"] as? [[String: Any]]
    else { return nil }
    let network = namespaces.first { $0["type"] as? String == "NEWNET" }?["path"] as? String
    return network?.isEmpty == false ? network : nil
  }

  static func writeRestored(
    kept: String, id: String, pid: Int32, bundle: String, rootfs: String, root: String
  ) throws {
    var state = try JSONFile.read(kept)
    let oldPid = state["init_process_pid"] as? Int ?? 0
    state["id"] = id
    state["init_process_pid"] = Int(pid)
    state["init_process_start"] = try startTime(of: pid)
    state["created"] = ISO8601DateFormatter.runc.string(from: Date())
    if let paths = state["cgroup_paths"] as? [String: String] {
      state["cgroup_paths"] = try cgroupPaths(of: pid, keys: Array(paths.keys))
    }
    if let paths = state["namespace_paths"] as? [String: String] {
      state["namespace_paths"] = paths.mapValues {
        $0.replacingOccurrences(of: "/proc/\(oldPid)/", with: "/proc/\(pid)/")
      }
    }
    if var config = state["config"] as? [String: Any] {
      config["rootfs"] = rootfs
      let labels = (config["labels"] as? [String] ?? []).filter { !$0.hasPrefix("bundle=") }
      config["labels"] = labels + ["bundle=\(bundle)"]
      state["config"] = config
    }
    let directory = "\(root)/\(id)"
    try FileManager.default.createDirectory(
      atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o711])
    try JSONFile.write(state, to: directory + "/state.json")
  }

  /// Field 22 of /proc/<pid>/stat: the start time runc compares.
  static func startTime(of pid: Int32) throws -> UInt64 {
    guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
      let close = stat.lastIndex(of: ")")
    else { throw FrontError("the restored container's init \(pid) is gone") }
    // After the command: field 3 onward; the start time is field 22.
    let fields = stat[stat.index(after: close)...].split(separator: " ")
    guard fields.count > 19, let start = UInt64(fields[19]) else { throw FrontError("cannot read /proc/\(pid)/stat") }
    return start
  }

  /// The cgroup directory of `pid` for each of runc's keys (a v1 controller, `name=...`
  /// hierarchies by their name, "" for the v2 hierarchy), under this host's mounts.
  static func cgroupPaths(of pid: Int32, keys: [String]) throws -> [String: String] {
    let lines = (try? String(contentsOfFile: "/proc/\(pid)/cgroup", encoding: .utf8))?.split(separator: "\n") ?? []
    let mounts = cgroupMounts()
    var paths: [String: String] = [:]
    for key in keys {
      for line in lines {
        let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3 else { continue }
        let controllers = parts[1].split(separator: ",").map {
          $0.hasPrefix("name=") ? String($0.dropFirst(5)) : String($0)
        }
        let matches = key.isEmpty ? parts[1].isEmpty : controllers.contains(key)
        guard matches, let mount = mounts[String(parts[1])] else { continue }
        paths[key] = mount + (parts[2] == "/" ? "" : String(parts[2]))
      }
    }
    return paths
  }

  /// The cgroup mounts of this host by their /proc/<pid>/cgroup name ("" for v2;
  /// "cpu,cpuacct", "name=systemd" for v1).
  static func cgroupMounts() -> [String: String] {
    let text = (try? String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)) ?? ""
    var mounts: [String: String] = [:]
    for line in text.split(separator: "\n") {
      let halves = line.components(separatedBy: " - ")
      guard halves.count == 2 else { continue }
      let fields = halves[0].split(separator: " ")
      let tail = halves[1].split(separator: " ")
      guard fields.count > 4, tail.count > 2 else { continue }
      if tail[0] == "cgroup2" {
        mounts[""] = mounts[""] ?? String(fields[4])
      } else if tail[0] == "cgroup" {
        let known: Set<String> = ["rw", "ro", "nosuid", "nodev", "noexec", "relatime", "xattr", "clone_children"]
        let names = tail[2].split(separator: ",").filter {
          !known.contains(String($0)) && !$0.hasPrefix("release_agent")
        }
        mounts[names.joined(separator: ",")] = mounts[names.joined(separator: ",")] ?? String(fields[4])
      }
    }
    return mounts
  }
}

extension ISO8601DateFormatter {
  /// RFC 3339 with nanoseconds, as Go writes time.Time.
  static var runc: ISO8601DateFormatter {
    let formatter = ISO8601DateFormatter()
    formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
    return formatter
  }
}
