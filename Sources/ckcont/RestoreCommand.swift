import ArgumentParser
import Checkpoint
import Foundation
import Glibc
import Linux
import Logging

/// `ckcont restore BUNDLE`.
struct RestoreCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "restore",
    abstract: "Recreate a checkpointed container and let it continue.",
    discussion: """
      Reads and verifies the whole bundle (checksums, format version, CPU features) before \
      creating anything, then recreates the container in fresh namespaces with the same \
      pids, in its cgroups (the dumped paths, or under --cgroup / --cgroup-root, with the \
      limits it had: memory, pids, cpu, cpuset, hugetlb), and resumes it. Prints the restored \
      root process's pid as this host sees it. On failure or Ctrl-C everything created is \
      removed; the bundle is never modified.
      """)

  @Argument(help: "The bundle to restore, or - for standard input.")
  var bundle: String
  @OptionGroup var options: RestoreOptions
  @OptionGroup var global: GlobalOptions

  func run() throws {
    try requireRoot("restore")
    Interruption.install()
    let log = global.logger("restore")
    Recovery.sweepRestores(log)
    let restore = try options.restore(input: bundle == "-" ? .standardInput : .file(bundle), log: log)
    let report = try restore.run()
    try options.report(report, global: global)
  }
}

/// What every restore takes (`restore` and `receive`): where and how to make the container.
struct RestoreOptions: ParsableArguments {
  @Option(
    help:
      "The cgroup to restore into, as a cgroupfs path or a name (default: the one it was dumped from). It must not hold tasks."
  )
  var cgroup: String?
  @Option(
    help: ArgumentHelp(
      "Restore under this root in every cgroup hierarchy the container used, e.g. /restored/web.",
      discussion:
        "A path inside the hierarchies, as in CRIU's --cgroup-root: on v1 it applies to the freezer, memory, pids, cpu and cpuset trees alike."
    ))
  var cgroupRoot: String?
  @Option(
    name: .customLong("inherit-fd"),
    help: ArgumentHelp(
      "fd[N]:RESOURCE - give the restored tasks ckcont's descriptor N wherever they held RESOURCE (repeatable).",
      discussion:
        "RESOURCE is pipe:[INODE] (the outside end of a pipe, e.g. to a container runtime; `ckcont inspect` shows the inodes) or a file path as dumped, as in CRIU's --inherit-fd."
    ))
  var inheritFd: [String] = []
  @Option(
    name: .customLong("root"),
    help: ArgumentHelp(
      "Use DIR as the root filesystem of a container that pivoted into one of its own (runc, crun, podman).",
      discussion:
        "By default the directory it was dumped with (`ckcont inspect` shows it). As in CRIU's --root: a runtime mounts the container's rootfs again and names it here.",
      valueName: "DIR"))
  var rootFilesystem: String?
  @Option(
    name: .customLong("mount-source"),
    help: ArgumentHelp(
      "POINT=SOURCE - bind-mount SOURCE at the container's mount point POINT instead of what was bound there (repeatable).",
      discussion:
        "For bind mounts from the host, as CRIU's --ext-mount-map: a runtime that restores a container under a new id names the files it made for it (hostname, resolv.conf, ...).",
      valueName: "POINT=SOURCE"))
  var mountSource: [String] = []
  @Option(
    help: ArgumentHelp(
      "Send the master of the container's new console over the unix socket at PATH.",
      discussion:
        "For a container dumped with --external-console: its console is made again in its devpts and the master goes to PATH, as runc's --console-socket.",
      valueName: "PATH"))
  var consoleSocket: String?
  @Option(
    help: ArgumentHelp(
      "Join the network namespace at PATH (/run/netns/NAME, /proc/PID/ns/net).",
      discussion:
        "For a container dumped with --external-net: the namespace its runtime made again for it, with the same addresses.",
      valueName: "PATH"))
  var joinNet: String?
  @Option(
    help: ArgumentHelp(
      "Make the outer end of the container's veth NAME under NEWNAME (repeatable).",
      discussion:
        "The outer end of a veth pair is made where ckcont runs, under the name it had, on the bridge of its master's name when there is one.",
      valueName: "NAME=NEWNAME"))
  var veth: [String] = []
  @Option(help: ArgumentHelp("Enslave the outer ends of the container's veth pairs to BRIDGE.", valueName: "BRIDGE"))
  var bridge: String?
  @Flag(
    help: ArgumentHelp(
      "Restore a shell job (dumped with --shell-job) into ckcont's own session and terminal.",
      discussion:
        "Its descriptors of the terminal it had become ckcont's terminal (/dev/tty), as with CRIU's --shell-job."))
  var shellJob = false
  @Option(help: "Write the restored root pid to this file.")
  var pidfile: String?
  @Option(
    help: ArgumentHelp(
      "The parent bundle of a bundle dumped with --parent (default: where it records it, beside it).",
      discussion: "Its identity must be the one the bundle records.", valueName: "P"))
  var parent: String?
  @Option(
    help: ArgumentHelp(
      "Restore only a bundle signed by the key in KEY.pub (repeatable: any of them).",
      discussion:
        "The signature (`dump --sign`) is checked with the whole bundle, before anything is made; a bundle that is unsigned or signed by another key is refused.",
      valueName: "KEY.pub"))
  var trustedKey: [String] = []
  @Flag(help: "Refuse a bundle without a valid signature by a --trusted-key.")
  var requireSignature = false
  @Option(
    help: ArgumentHelp(
      "Run PROGRAM at each stage of the restore, as CRIU's --action-script.",
      discussion:
        "Stages (CRTOOLS_SCRIPT_ACTION and CKCONT_ACTION): pre-restore, setup-namespaces, post-setup-namespaces, post-restore, post-resume. It gets CKCONT_CGROUP, CKCONT_PIDS and CRTOOLS_INIT_PID (the container's init on this host) too; a script that fails before the resume fails the restore, which removes what it made.",
      valueName: "PROGRAM"))
  var actionScript: String?
  func validate() throws {
    if cgroup != nil && cgroupRoot != nil {
      throw ValidationError("give --cgroup or --cgroup-root, not both")
    }
    if requireSignature && trustedKey.isEmpty {
      throw ValidationError("--require-signature needs the keys you trust: give them with --trusted-key")
    }
    try validateActionScript(actionScript)
  }

  /// The restore these options describe, reading `input`.
  func restore(input: RestoreInput, log: Logger) throws -> Restore {
    let root = try cgroupRoot ?? cgroup.map(Restore.cgroupRoot(fromCgroup:))
    var restore = Restore(input: input, cgroupRoot: root)
    for spec in inheritFd {
      let (resource, fd) = try Restore.inheritedDescriptor(spec)
      restore.inheritedDescriptors[resource] = fd
    }
    if let rootFilesystem {
      restore.rootFilesystem =
        rootFilesystem.hasPrefix("/") ? rootFilesystem : FileManager.default.currentDirectoryPath + "/" + rootFilesystem
    }
    for spec in mountSource {
      let (point, source) = try Restore.mountSource(spec)
      restore.mountSources[point] = source
    }
    restore.shellJob = shellJob
    restore.consoleSocket = consoleSocket
    restore.joinNetwork = joinNet
    for spec in veth {
      let (name, newName) = try Restore.vethRename(spec)
      restore.outerEnds.names[name] = newName
    }
    restore.outerEnds.bridge = bridge
    restore.parentPath = parent
    restore.trust = SignatureTrust(trustedKeys: try trustedKey.map(KeyFiles.publicKey))
    restore.actionScript = actionScript.map(ActionScript.init(path:))
    restore.log = log
    return restore
  }

  /// Writes the pid file and prints the root pid (or the report with --json).
  func report(_ report: RestoreReport, global: GlobalOptions) throws {
    if let pidfile {
      try "\(report.rootPid)\n".write(toFile: pidfile, atomically: true, encoding: .utf8)
    }
    if global.json {
      try printJSON(report)
    } else {
      Terminal.out("\(report.rootPid)")
    }
  }
}
