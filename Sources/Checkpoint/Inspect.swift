import Bundle
import Foundation
import Glibc
import Linux

/// `ckcont inspect`: what a bundle holds, verified, without root and without restoring.
public struct BundleInspection: Codable, Sendable {
  public struct Task: Codable, Sendable {
    public var pid: Int32
    public var namespacePids: [Int32]
    /// Its pids in the pid namespaces below the container's, outermost first (nil: none).
    public var nestedPids: [Int32]?
    public var ppid: Int32
    public var pgid: Int32
    public var sid: Int32
    public var comm: String
    public var cgroup: String
    public var exe: String
    /// The instruction set of its code: "x86_64" or "i386".
    public var abi: String
    public var threads: [Thread]
    public var vmas: [Mapping]
    public var fds: [Descriptor]
    public var pageBytes: UInt64
    public var signalActions: Int
    public var credentials: String
    /// Its seccomp filters: how many instructions each has, oldest first (none: empty).
    public var seccompFilters: [Int]
    /// A stopped job: the signal that stopped it.
    public var stopSignal: Int32?
  }
  public struct Thread: Codable, Sendable {
    public var tid: Int32
    public var rip: String
    public var rsp: String
    /// Where it stood: "running" or the system call it was in, and how it resumes.
    public var state: String
    public var xstateBytes: Int
  }
  public struct Mapping: Codable, Sendable {
    public var range: String
    public var size: UInt64
    public var protection: String
    public var kind: String
    public var path: String
    public var savedBytes: UInt64
    /// What the kernel keeps on the mapping besides: mlock, madvise advice, mseal.
    public var attributes: [String]?
  }
  public struct Descriptor: Codable, Sendable {
    public var fd: Int32
    public var description: String
  }
  /// A dead child waiting for its parent's wait().
  public struct Zombie: Codable, Sendable {
    public var pid: Int32
    public var ppid: Int32
    public var pgid: Int32
    public var sid: Int32
    public var comm: String
    /// "exited 7" or "killed by signal 10".
    public var status: String
  }

  public var formatVersion: String
  public var toolVersion: String
  public var kernelRelease: String
  public var created: String
  public var sourceCgroup: String
  public var namespaces: [String]
  public var xsaveFeatures: String
  public var members: Int
  public var tasks: [Task]
  public var zombies: [Zombie]
  /// One line per cgroup hierarchy: where the container's subtree was and what it held.
  public var cgroups: [String]
  public var totalPageBytes: UInt64
  /// One line per SysV object of the container's IPC namespace.
  public var sysvObjects: [String]
  /// One line per mount the container added to its own mount namespace.
  public var mounts: [String]
  /// One line per namespace detail: user id maps, settings of the container's network and IPC
  /// namespaces, nested namespaces, a shell job's terminal.
  public var namespaceDetails: [String] = []
  /// Who signed the bundle (its signature checked): `ckcont-ed25519 <base64>`; nil: unsigned.
  public var signedBy: String?

  /// Reads and verifies the bundle at `path` (or standard input for "-").
  public static func read(path: String) throws -> BundleInspection {
    // Standard input is borrowed, a file is ours.
    let file = path == "-" ? nil : OwnedDescriptor(adoptingValid: open(path, O_RDONLY | O_CLOEXEC))
    let fd = path == "-" ? 0 : file.rawOrMinusOne
    guard fd >= 0 else {
      throw CKError(.badInput, "cannot open the bundle \(path): \(String(cString: strerror(errno)))")
    }
    let bundle = try LoadedBundle(
      source: FileDescriptorSource(fd: fd, name: path), pages: .drop, allowingPrecopied: true, log: .discarding)
    let ns = bundle.tree.namespaces
    let names = [
      ("pid", ns.pid), ("mnt", ns.mount), ("uts", ns.uts), ("ipc", ns.ipc),
      (
        ns.netExternal == true
          ? "net (its runtime's: restore with --join-net)"
          : ns.network.map { "net (\(NetworkDevices.describe($0)))" } ?? "net", ns.net
      ), ("user", ns.user),
      ("cgroup", ns.cgroup), ("time", ns.time),
    ].filter(\.1).map(\.0)
    // Pipes of which the container holds one end only: the other end was closed, or is outside
    // (a runtime reading the output) and wants --inherit-fd at restore.
    var ends: [UInt64: Set<Bool>] = [:]  // pipe inode -> held ends (true: read)
    for task in bundle.tasks {
      for descriptor in task.files.descriptors where descriptor.kind == .pipe {
        ends[descriptor.pipe ?? 0, default: []].insert(descriptor.flags & O_ACCMODE == O_RDONLY)
      }
    }
    func describeInContainer(_ descriptor: DescriptorImage) -> String {
      let text = describe(descriptor)
      guard descriptor.kind == .pipe, let inode = descriptor.pipe, ends[inode]?.count == 1 else { return text }
      return text
        + " (the container holds only this end; if the other is outside, restore with --inherit-fd 'fd[N]:pipe:[\(inode)]')"
    }
    let tasks = bundle.tasks.map { task -> Task in
      Task(
        pid: task.entry.pid, namespacePids: task.entry.namespacePids, nestedPids: task.entry.nestedPids,
        ppid: task.entry.ppid,
        pgid: task.entry.pgid,
        sid: task.entry.sid, comm: task.entry.comm, cgroup: task.entry.cgroup, exe: task.memory.exe,
        abi: task.core.abi?.rawValue ?? "x86_64",
        threads: task.core.threads.map { thread in
          Thread(
            tid: thread.tid, rip: "0x" + hex(thread.registers.rip), rsp: "0x" + hex(thread.registers.rsp),
            state: syscallState(thread.registers, abi: task.core.abi), xstateBytes: thread.xstate.count)
        },
        vmas: task.memory.vmas.map { vma in
          Mapping(
            range: "\(hex(vma.start))-\(hex(vma.end))", size: vma.size, protection: protection(vma),
            kind: vma.kind.rawValue,
            path: vma.kind == .deletedFile ? vma.path + " (deleted)" : vma.path,
            savedBytes: vma.pages.reduce(0) { $0 + $1.size },
            attributes: attributes(vma))
        },
        fds: task.files.descriptors.map { Descriptor(fd: $0.fd, description: describeInContainer($0)) },
        pageBytes: task.memory.pagesSize, signalActions: task.core.signalActions.count,
        credentials: "uid \(task.core.credentials.uids.map(String.init).joined(separator: "/")) "
          + "gid \(task.core.credentials.gids.map(String.init).joined(separator: "/")) caps \(task.core.credentials.capabilitiesText)",
        seccompFilters: (task.core.seccompFilters ?? []).map { $0.program.count / 8 }, stopSignal: task.entry.stopSignal
      )
    }
    let zombies = bundle.zombies.map { entry in
      let status = entry.zombieStatus ?? 0
      return Zombie(
        pid: entry.pid, ppid: entry.ppid, pgid: entry.pgid, sid: entry.sid, comm: entry.comm,
        status: status & 0x7f == 0 ? "exited \(status >> 8 & 0xff)" : "killed by signal \(status & 0x7f)")
    }
    let cgroups = bundle.cgroups.hierarchies.map { hierarchy in
      let name = hierarchy.version == "v2" ? "v2" : "v1 " + hierarchy.controllers.joined(separator: ",")
      let settings = hierarchy.groups.flatMap(\.settings).map { "\($0.name)=\($0.value)" }
      return "\(name) \(hierarchy.root): \(hierarchy.groups.count) cgroup(s)"
        + (settings.isEmpty ? "" : "; " + settings.joined(separator: " "))
    }
    let manifest = bundle.manifest
    return BundleInspection(
      formatVersion: "\(manifest.formatVersion.major).\(manifest.formatVersion.minor)",
      toolVersion: manifest.toolVersion,
      kernelRelease: manifest.kernelRelease, created: manifest.created, sourceCgroup: manifest.sourceCgroup,
      namespaces: names, xsaveFeatures: "0x" + hex(manifest.cpu.xsaveFeatures),
      members: manifest.members.count + (bundle.signer == nil ? 2 : 3),
      tasks: tasks, zombies: zombies, cgroups: cgroups, totalPageBytes: tasks.reduce(0) { $0 + $1.pageBytes },
      sysvObjects: sysvLines(bundle.ipc), mounts: (bundle.mounts?.mounts ?? []).map(mountLine),
      namespaceDetails: details(bundle.tree), signedBy: bundle.signer?.description)
  }

  static func details(_ tree: ProcessTree) -> [String] {
    func settings(_ values: [String: String]) -> String {
      values.sorted { $0.key < $1.key }.map { "\($0.key.replacingOccurrences(of: "/", with: "."))=\($0.value)" }.joined(
        separator: ", ")
    }
    func ranges(_ map: [UserNamespaceMaps.Range]) -> String {
      map.map { "\($0.inside)->\($0.outside) (\($0.count))" }.joined(separator: ", ")
    }
    var lines: [String] = []
    if let maps = tree.namespaces.userMaps {
      lines.append(
        "user namespace: uids \(ranges(maps.uids)); gids \(ranges(maps.gids)); setgroups \(maps.setgroupsAllowed ? "allowed" : "denied")"
      )
    }
    if let values = tree.namespaces.netSysctls { lines.append("network namespace settings: \(settings(values))") }
    if let values = tree.namespaces.ipcSysctls { lines.append("IPC namespace settings: \(settings(values))") }
    for (index, nested) in (tree.nestedNamespaces ?? []).enumerated() {
      let members = tree.tasks.filter { $0.nestedNamespaces?.contains(index) == true }.map { String($0.pid) }.joined(
        separator: ", ")
      var what = "nested \(nested.kind.rawValue) namespace of process(es) \(members)"
      if let host = nested.hostname { what += ": hostname \(host)" }
      if let up = nested.loopbackUp { what += ": loopback \(up ? "up" : "down")" }
      if let mounts = nested.mounts { what += ": \(mounts.mounts.count) mount(s) of its own" }
      if let values = nested.sysctls { what += "; settings \(settings(values))" }
      lines.append(what)
    }
    if let terminal = tree.shellJobTerminal {
      lines.append("shell job on terminal \(terminal) (restore with --shell-job)")
    }
    return lines
  }

  static func mountLine(_ mount: MountImage) -> String {
    let what =
      mount.kind == .bind
      ? "bind of \(mount.source)\(mount.sourceInContainer == true ? " (in the container)" : "")"
      : "\(mount.fsType)\(mount.options.isEmpty ? "" : " (\(mount.options))")"
        + (mount.files.map { files in
          ", \(files.count) file(s), \(files.reduce(0) { $0 + ($1.contents?.count ?? 0) }) bytes"
        } ?? "")
    return "\(mount.mountPoint): \(what)\(mount.flags & 1 != 0 ? ", read-only" : "")"
  }

  static func sysvLines(_ ipc: SysVIPCImage?) -> [String] {
    guard let ipc else { return [] }
    func owner(_ o: SysVOwnership) -> String {
      "id \(o.id) key 0x\(String(UInt32(bitPattern: o.key), radix: 16)) uid \(o.uid) gid \(o.gid) mode \(String(o.mode, radix: 8))"
    }
    return ipc.sharedMemory.map {
      "shared memory \(owner($0.owner)): \($0.size) bytes\($0.removed ? ", removed while attached" : "")"
    }
      + ipc.semaphoreSets.map {
        "semaphore set \(owner($0.owner)): values \($0.values.map(String.init).joined(separator: " "))"
      }
      + ipc.messageQueues.map {
        "message queue \(owner($0.owner)): \($0.messages.count) message(s), \($0.messages.reduce(0) { $0 + $1.text.count }) bytes"
      }
  }

  static func syscallState(_ regs: GeneralRegisters, abi: TaskABI? = nil) -> String {
    let call = Int64(bitPattern: regs.origRax)
    guard call >= 0 else { return "running in user space" }
    let result = Int64(bitPattern: regs.rax)
    let how: String
    switch result {
    case -512, -513, -514: how = "restarts on resume"
    case -516 where SyscallRestart.sleepRebuildingRestartBlock(regs, abi: abi) != nil:
      how = "sleeps on for the time left"
    case -516: how = "re-issued with its arguments"
    default: how = "returned \(result)"
    }
    return "in system call \(call) (\(how))"
  }

  /// mlock, madvise advice and mseal of a mapping, or nil for none.
  static func attributes(_ vma: VMAImage) -> [String]? {
    var names: [String] = []
    if let lock = vma.lock { names.append(lock == .always ? "locked" : "locked on fault") }
    names += (vma.advice ?? []).map(\.rawValue)
    if let guards = vma.guards { names.append("\(guards.reduce(0) { $0 + $1.size } >> 12) guard pages") }
    if vma.sealed == true { names.append("sealed") }
    return names.isEmpty ? nil : names
  }

  static func protection(_ vma: VMAImage) -> String {
    (vma.protection & PROT_READ != 0 ? "r" : "-") + (vma.protection & PROT_WRITE != 0 ? "w" : "-")
      + (vma.protection & PROT_EXEC != 0 ? "x" : "-") + (vma.shared ? "s" : "p")
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    var text = DescriptorKinds.handler(for: descriptor.kind).describe(descriptor)
    if let twin = descriptor.sharesWith { text += " (same file as fd \(twin))" }
    var flags: [String] = []
    if descriptor.flags & O_APPEND != 0 { flags.append("append") }
    if descriptor.flags & O_NONBLOCK != 0 { flags.append("nonblock") }
    if descriptor.closeOnExec { flags.append("cloexec") }
    return flags.isEmpty ? text : text + " [" + flags.joined(separator: ",") + "]"
  }

  /// The processes and zombies indented under their parents.
  func renderTree() -> [String] {
    var children: [Int32: [(pid: Int32, line: String)]] = [:]
    for task in tasks {
      let leader = task.sid == task.pid ? ", session leader" : (task.pgid == task.pid ? ", group leader" : "")
      let nested =
        task.nestedPids.map { " (in nested pid namespaces: \($0.map(String.init).joined(separator: "/")))" } ?? ""
      let line =
        "\(task.pid)\(nested) \(task.comm): pgid \(task.pgid) sid \(task.sid)\(leader), \(task.threads.count) thread(s)"
      children[task.ppid, default: []].append((task.pid, line))
    }
    for zombie in zombies {
      children[zombie.ppid, default: []].append((zombie.pid, "\(zombie.pid) \(zombie.comm): zombie, \(zombie.status)"))
    }
    var lines: [String] = []
    func walk(_ parent: Int32, depth: Int) {
      for child in (children[parent] ?? []).sorted(by: { $0.pid < $1.pid }) {
        lines.append(String(repeating: "  ", count: depth + 1) + child.line)
        if depth < 64 { walk(child.pid, depth: depth + 1) }
      }
    }
    walk(0, depth: 0)
    return lines
  }

  /// Human-readable text.
  public func render() -> String {
    var lines = [
      "bundle format \(formatVersion), written by ckcont \(toolVersion) on kernel \(kernelRelease) at \(created)",
      "source cgroup \(sourceCgroup); own namespaces: \(namespaces.isEmpty ? "none" : namespaces.joined(separator: ", ")); "
        + "xsave features \(xsaveFeatures); \(members) members",
      "\(tasks.count) process(es), \(zombies.count) zombie(s), \(totalPageBytes >> 10) KiB of memory saved",
      signedBy.map { "signed by \($0) (signature valid)" } ?? "unsigned",
    ]
    lines += cgroups.map { "cgroup \($0)" }
    lines += sysvObjects.map { "SysV \($0)" }
    lines += mounts.map { "mount \($0)" }
    lines += namespaceDetails
    lines += ["", "process tree (pid in the container: command, group, session, threads):"] + renderTree() + [""]
    for task in tasks {
      lines.append(
        "process \(task.pid) (\(task.comm)) host pids \(task.namespacePids.map(String.init).joined(separator: "/")) "
          + (task.nestedPids.map { "nested pids \($0.map(String.init).joined(separator: "/")) " } ?? "")
          + "ppid \(task.ppid) pgid \(task.pgid) sid \(task.sid) cgroup \(task.cgroup)")
      lines.append(
        "  exe \(task.exe) (\(task.abi)); \(task.credentials); \(task.signalActions) signal actions")
      if !task.seccompFilters.isEmpty {
        lines.append(
          "  seccomp: \(task.seccompFilters.count) filter(s) of \(task.seccompFilters.map(String.init).joined(separator: ", ")) instructions"
        )
      }
      if let signal = task.stopSignal { lines.append("  stopped job (signal \(signal)): stopped again at restore") }
      for thread in task.threads {
        lines.append(
          "  thread \(thread.tid): rip \(thread.rip) rsp \(thread.rsp), \(thread.state); xstate \(thread.xstateBytes) bytes"
        )
      }
      lines.append("  \(task.vmas.count) mappings, \(task.pageBytes >> 10) KiB saved:")
      for vma in task.vmas {
        let size = vma.size >= 1 << 20 ? "\(vma.size >> 20) MiB" : "\(vma.size >> 10) KiB"
        lines.append(
          "    \(vma.range) \(vma.protection) \(size.padding(toLength: 9, withPad: " ", startingAt: 0)) "
            + "saved \(String(vma.savedBytes >> 10).padding(toLength: 7, withPad: " ", startingAt: 0)) KiB  "
            + (vma.path.isEmpty ? "[\(vma.kind)]" : vma.path)
            + (vma.attributes.map { " (\($0.joined(separator: ", ")))" } ?? ""))
      }
      lines.append("  \(task.fds.count) fds:")
      for fd in task.fds { lines.append("    \(fd.fd): \(fd.description)") }
    }
    return lines.joined(separator: "\n")
  }
}
