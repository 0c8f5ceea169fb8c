import Cgroup
import Foundation
import Linux

/// The state of an OCI container as a runtime hands it to a hook on standard input (the
/// OCI runtime spec's state: ociVersion, id, status, pid, bundle, annotations): what a hook
/// has to name the container it runs for.
struct OCIState: Decodable {
  var id: String
  var status: String?
  var pid: Int32?
  var bundle: String?
  var annotations: [String: String]?

  /// The state in `path`, or on standard input for "-".
  static func read(_ path: String) throws -> OCIState {
    let data: Data
    if path == "-" {
      data = FileHandle.standardInput.readDataToEndOfFile()
    } else {
      guard let read = FileManager.default.contents(atPath: path) else {
        throw CKError(.badInput, "cannot read the OCI state \(path)")
      }
      data = read
    }
    guard data.count <= 1 << 20, let state = try? JSONDecoder().decode(OCIState.self, from: data) else {
      throw CKError(
        .badInput, "the OCI state is not the JSON a runtime gives hooks (an object with id and pid)",
        hint: "pass the state JSON on standard input, as runc, crun and podman do for hooks, or `runc state ID`")
    }
    return state
  }

  /// The cgroup of the container's init: v2 first, then the v1 freezer hierarchy (a root
  /// cgroup is never a container's).
  func cgroup(in mounts: CgroupMounts) throws -> Cgroup {
    guard let pid, pid > 0, kill(pid, 0) == 0 else {
      throw CKError(
        .badInput, "the OCI state of \(id) names no running process (pid \(pid.map(String.init) ?? "none"))",
        hint: "the container must be running (status \(status ?? "unknown"))")
    }
    let candidates = mounts.searchOrder.filter { $0.version == .v2 || $0.controllers.contains("freezer") }
    for hierarchy in candidates {
      if let cgroup = try mounts.cgroup(of: pid, in: hierarchy), cgroup.path != hierarchy.mountPoint {
        return cgroup
      }
    }
    throw CKError(
      .badInput, "process \(pid) of container \(id) is in no cgroup of its own (only root cgroups)",
      hint: "ckcont works on a container's cgroup; run the container with one")
  }
}
