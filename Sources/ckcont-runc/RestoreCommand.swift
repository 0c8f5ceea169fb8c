import CKShim
import Foundation
import Glibc

/// `restore [flags] <id>`: the container of a ckcont checkpoint made again by ckcont, with
/// the bundle's rootfs as its root, the runtime's standard descriptors where it had its
/// runtime's pipes (as runc maps them), in the cgroup the bundle's config names; then runc's
/// state of it written again, so that `runc state`, `kill`, `delete` and podman know it.
struct RestoreCommand {
  static let checkpointName = "ckcont.ckpt"
  /// What podman looks for before it restores (CRIU's first image); ours says what it is.
  static let inventory = "inventory.img"

  static let help = """
    Usage: ckcont-runc restore [flags] <container-id>

    Restores a container checkpointed by `ckcont-runc checkpoint` from --image-path (default
    ./checkpoint), with the rootfs of --bundle (default .), and exits once it runs (--detach)
    or when it exits.

      --image-path DIR       the checkpoint
      --bundle, -b DIR       the OCI bundle: its config.json names the rootfs and cgroup
      --detach, -d           exit once the container runs (its init goes to the nearest
                             subreaper: conmon's); else wait for it and exit with its status
      --pid-file FILE        write the restored init's pid there
      --work-path DIR, --tcp-established, --file-locks, --ext-unix-sk, --no-pivot,
      --no-subreaper, --manage-cgroups-mode, --auto-dedup, --lsm-profile
                             accepted; ckcont keeps connections and locks always and has no
                             LSM profile to set (a note says so)
      --console-socket PATH  a container with a terminal: its new console's master goes there
      --lazy-pages, --empty-ns
                             refused: not done by ckcont-runc yet
    """

  let arguments: RuncArguments

  init(_ arguments: RuncArguments) { self.arguments = arguments }

  static let refused = ["lazy-pages", "empty-ns"]

  func run() throws -> Int32 {
    if arguments.has("help") || arguments.has("h") {
      print(Self.help)
      return 0
    }
    if let flag = Self.refused.first(where: arguments.has) {
      throw FrontError("restore --\(flag): not done by ckcont-runc yet", status: 64)
    }
    arguments.noteIgnored([
      "lsm-profile": "ckcont sets no LSM profile", "lsm-mount-context": "ckcont sets no LSM mount context",
      "manage-cgroups-mode": "ckcont makes the cgroups the bundle's config names, with the limits dumped",
      "no-pivot": "ckcont pivots into the rootfs as the container had", "auto-dedup": "ckcont reads one bundle",
      "no-subreaper": "this process is a subreaper only without --detach",
    ])
    guard let id = arguments.operands.first else { throw FrontError("restore: give the container id", status: 64) }
    let images = arguments.value("image-path") ?? FileManager.default.currentDirectoryPath + "/checkpoint"
    let bundle = arguments.value("bundle", "b") ?? FileManager.default.currentDirectoryPath
    let checkpoint = try Self.checkpoint(in: images)
    let config = try JSONFile.read(bundle + "/config.json")
    let rootfs = Self.rootfs(config, bundle: bundle)
    let detach = arguments.has("detach") || arguments.has("d")
    // Not detached: the init, orphaned when ckcont exits, becomes this process's child.
    if !detach { _ = prctlSubreaper() }
    let pid = try restore(checkpoint, images: images, rootfs: rootfs, config: config)
    try RuncState.writeRestored(
      kept: images + "/" + RuncState.keptName, id: id, pid: pid, bundle: bundle, rootfs: rootfs,
      root: arguments.root)
    if let pidFile = arguments.value("pid-file") {
      try Data("\(pid)".utf8).write(to: URL(fileURLWithPath: pidFile))
    }
    return detach ? 0 : Self.waitForExit(of: pid)
  }

  /// `images/ckcont.ckpt`; a directory with a CRIU image instead is refused clearly.
  static func checkpoint(in images: String) throws -> String {
    let checkpoint = images + "/" + checkpointName
    guard FileManager.default.fileExists(atPath: checkpoint) else {
      let inventory = (try? String(contentsOfFile: images + "/" + inventory, encoding: .utf8)) ?? ""
      if FileManager.default.fileExists(atPath: images + "/" + Self.inventory), !inventory.hasPrefix("ckcont") {
        throw FrontError("\(images) holds a CRIU image, not a ckcont checkpoint: restore it with runc and CRIU")
      }
      throw FrontError("\(images) holds no ckcont checkpoint (\(checkpointName))")
    }
    return checkpoint
  }

  /// The bundle's root.path, relative to the bundle unless absolute.
  static func rootfs(_ config: [String: Any], bundle: String) -> String {
    let path = (config["root"] as? [String: Any])?["path"] as? String ?? "rootfs"
    return path.hasPrefix("/") ? path : bundle + "/" + path
  }

  /// ckcont restore; the restored init's pid. The dumped runtime pipes on fds 0-2 become
  /// this process's fds 0-2 (passed to ckcont as 3-5, whose own output stays apart).
  private func restore(_ checkpoint: String, images: String, rootfs: String, config: [String: Any]) throws -> Int32 {
    var restore = ["restore", checkpoint, "--root", rootfs]
    let dumped =
      (try? JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: images + "/descriptors.json"))))
      as? [String] ?? []
    for (fd, target) in dumped.prefix(3).enumerated() where target.hasPrefix("pipe:") {
      restore += ["--inherit-fd", "fd[\(3 + fd)]:\(target)"]
    }
    if let cgroup = ((config["linux"] as? [String: Any])?["cgroupsPath"] as? String), cgroup.hasPrefix("/") {
      restore += ["--cgroup-root", cgroup]
    }
    restore += Self.bindSources(config).flatMap { ["--mount-source", $0] }
    if let socket = arguments.value("console-socket") { restore += ["--console-socket", socket] }
    if let network = Self.networkNamespace(config) { restore += ["--join-net", network] }
    let result = try Runtime.run(Runtime.ckcont, restore, descriptors: [0, 1, 2])
    guard result.status == 0, let pid = Int32(result.output.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      throw FrontError(Runtime.lastLine(result.errors) ?? "ckcont restore failed (exit \(result.status))", status: 1)
    }
    return pid
  }

  /// The network namespace the bundle's config.json names (one its caller made for the
  /// container), which the restored container joins.
  static func networkNamespace(_ config: [String: Any]) -> String? {
    let namespaces = (config["linux"] as? [String: Any])?["namespaces"] as? [[String: Any]] ?? []
    let path = namespaces.first { $0["type"] as? String == "network" }?["path"] as? String
    return path?.isEmpty == false ? path : nil
  }

  /// `POINT=SOURCE` of each bind mount the bundle's config.json makes: a runtime restoring a
  /// container under a new id (podman's import) made those files anew for it.
  static func bindSources(_ config: [String: Any]) -> [String] {
    (config["mounts"] as? [[String: Any]] ?? []).compactMap { mount in
      let options = mount["options"] as? [String] ?? []
      guard mount["type"] as? String == "bind" || options.contains("bind") || options.contains("rbind"),
        let point = mount["destination"] as? String, let source = mount["source"] as? String,
        point.hasPrefix("/"), source.hasPrefix("/")
      else { return nil }
      return "\(point)=\(source)"
    }
  }

  private func prctlSubreaper() -> Int32 {
    ck_prctl(Int32(CK_PR_SET_CHILD_SUBREAPER), 1, 0, 0, 0)
  }

  /// Waits for the restored init (this process's child, as a subreaper) and returns its exit
  /// status as a shell reports it.
  static func waitForExit(of pid: Int32) -> Int32 {
    var status: Int32 = 0
    while true {
      let reaped = waitpid(-1, &status, 0)
      if reaped == pid { break }
      if reaped < 0 && errno != EINTR { return 0 }
    }
    return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
  }
}
