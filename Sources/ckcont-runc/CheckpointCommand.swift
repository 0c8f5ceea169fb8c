import Foundation
import Glibc

/// `checkpoint [flags] <id>`: the container dumped by ckcont into the image directory as
/// `ckcont.ckpt`, with what its restore needs beside it: runc's state of the container
/// (``RuncState``), the targets of its init's standard descriptors (`descriptors.json`, as
/// runc writes it: the runtime's pipes become the restoring runtime's), and `inventory.img`,
/// which podman looks for before it asks for a restore.
struct CheckpointCommand {
  static let help = """
    Usage: ckcont-runc checkpoint [flags] <container-id>

    Checkpoints a running container with ckcont into --image-path (default ./checkpoint) as
    ckcont.ckpt. The container is killed once the bundle is complete and checked, unless
    --leave-running; a failure leaves it running.

      --image-path DIR       where the checkpoint goes
      --work-path DIR        accepted; ckcont keeps no logs there
      --leave-running        leave the container running
      --shell-job            the container is a job of a shell outside it
      --tcp-established, --file-locks, --ext-unix-sk
                             accepted: ckcont always keeps established connections, locks
                             and sockets connected outside (restored with that peer gone)
      --manage-cgroups-mode, --auto-dedup
                             accepted and ignored
      --pre-dump             a whole bundle, the container running on (ckcont dump --pre-dump)
      --parent-path DIR      against the checkpoint in DIR (relative to --image-path, as
                             runc's): only the pages that changed since (ckcont dump --parent)
      --lazy-pages, --page-server, --empty-ns, --status-fd
                             refused: ckcont has no lazy pages or page server here
    """

  let arguments: RuncArguments

  init(_ arguments: RuncArguments) { self.arguments = arguments }

  /// Flags that change what a checkpoint is, which ckcont does not do: refused rather than
  /// ignored.
  static let refused = ["lazy-pages", "page-server", "empty-ns", "status-fd"]

  func run() throws -> Int32 {
    if arguments.has("help") || arguments.has("h") {
      print(Self.help)
      return 0
    }
    if let flag = Self.refused.first(where: arguments.has) {
      throw FrontError("checkpoint --\(flag): ckcont cannot do this; checkpoint without it", status: 64)
    }
    guard let id = arguments.operands.first else {
      throw FrontError("checkpoint: give the container id", status: 64)
    }
    arguments.noteIgnored([
      "manage-cgroups-mode": "ckcont keeps the container's cgroups and their limits",
      "auto-dedup": "ckcont writes one bundle, no image to deduplicate",
    ])
    let images = arguments.value("image-path") ?? FileManager.default.currentDirectoryPath + "/checkpoint"
    try FileManager.default.createDirectory(
      atPath: images, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
    let state = try Runtime.state(of: id, global: arguments.global)
    guard let pid = state["pid"] as? Int, pid > 0, ["running", "paused"].contains(state["status"] as? String) else {
      throw FrontError("container \(id) is not running (\(state["status"] as? String ?? "no status"))")
    }
    try keepRuncState(of: id, in: images)
    try JSONFile.write(Self.standardDescriptors(of: pid), to: images + "/descriptors.json")
    try dump(state, into: images)
    try Data("ckcont checkpoint: ckcont.ckpt holds the container, not a CRIU image\n".utf8).write(
      to: URL(fileURLWithPath: images + "/" + RestoreCommand.inventory))
    return 0
  }

  /// runc's own record of the container, which it removes with the container: the restore
  /// writes it again for the restored one.
  private func keepRuncState(of id: String, in images: String) throws {
    let kept = images + "/" + RuncState.keptName
    try? FileManager.default.removeItem(atPath: kept)
    do {
      try FileManager.default.copyItem(atPath: "\(arguments.root)/\(id)/state.json", toPath: kept)
    } catch {
      throw FrontError("cannot keep runc's state of \(id) from \(arguments.root): \(error.localizedDescription)")
    }
  }

  /// What fds 0, 1 and 2 of the init are (`pipe:[N]`, a path), as runc's descriptors.json.
  static func standardDescriptors(of pid: Int) -> [String] {
    (0...2).map { fd in
      (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)")) ?? "/dev/null"
    }
  }

  /// `ckcont dump --oci-state` of the container into `images/ckcont.ckpt`.
  private func dump(_ state: [String: Any], into images: String) throws {
    let bundle = images + "/" + RestoreCommand.checkpointName
    try? FileManager.default.removeItem(atPath: bundle)
    let stateFile = images + "/.oci-state.json"
    try JSONFile.write(state, to: stateFile)
    defer { try? FileManager.default.removeItem(atPath: stateFile) }
    // A container with a terminal (podman -t): its console's master is the runtime's.
    var dump = ["dump", "--oci-state", stateFile, "-o", bundle, "--external-console"]
    if arguments.has("leave-running") { dump.append("--leave-running") }
    if arguments.has("pre-dump") { dump.append("--pre-dump") }
    // runc takes the parent's directory relative to the image directory (CRIU's rule).
    if let parent = arguments.value("parent-path") {
      let directory = parent.hasPrefix("/") ? parent : images + "/" + parent
      dump += ["--parent", directory + "/" + RestoreCommand.checkpointName]
    }
    if arguments.has("shell-job") { dump.append("--shell-job") }
    // A network namespace its caller made (podman's netavark): it makes it again for the
    // restore, which joins it (CRIU's external net namespace, as runc asks for it).
    if RuncState.joinedNetwork(inStateAt: images + "/" + RuncState.keptName) != nil { dump.append("--external-net") }
    let result = try Runtime.run(Runtime.ckcont, dump)
    guard result.status == 0 else {
      throw FrontError(
        Runtime.lastLine(result.errors) ?? "ckcont dump failed (exit \(result.status))", status: result.status)
    }
    FileHandle.standardError.write(Data(result.errors.utf8))
  }
}
