import Bundle
import CKShim
import Glibc
import Linux

/// UTS, IPC, network and mount namespaces some of the container's processes have besides
/// the init's (a worker that unshared its own hostname, IPC, network or a private /tmp),
/// dumped and made again.
///
/// Dump: each process's namespaces are compared with the init's; one it has of its own is
/// kept once (``NestedNamespaceImage``: UTS names, loopback's state, the mounts it has beyond
/// the container's). A nested IPC namespace holding SysV objects, a nested network namespace
/// with devices or addresses beyond loopback's, or a nested mount namespace with a root of its
/// own, is refused.
/// Restore: a process is forked with the namespaces of the process that forks it; right
/// after, before it forks children of its own, it moves to the ones it had: it joins one
/// another process made already (setns on a pidfd of that process), or makes it (unshare,
/// then the names, loopback or mounts).
enum NestedNamespaces {
  static let kinds: [(kind: NestedNamespaceImage.Kind, name: String, flag: Int32)] = [
    (.uts, "uts", Int32(CK_CLONE_NEWUTS)), (.ipc, "ipc", Int32(CK_CLONE_NEWIPC)),
    (.net, "net", Int32(CK_CLONE_NEWNET)),
    // Last: a sysfs mounted in it belongs to the network namespace of the moment.
    (.mnt, "mnt", Int32(CK_CLONE_NEWNS)),
  ]

  // MARK: Dump

  /// Gives every task's entry its nested namespaces and returns them (none: empty).
  static func assign(_ tasks: inout [Dump.CapturedTask], root: Dump.CapturedTask) throws -> [NestedNamespaceImage] {
    var indices: [NamespaceID: Int] = [:]
    var images: [NestedNamespaceImage] = []
    for position in tasks.indices {
      let task = tasks[position]
      var own: [Int] = []
      for (kind, name, _) in kinds {
        guard let id = task.namespaceIDs[name], id != root.namespaceIDs[name] else { continue }
        if let index = indices[id] {
          own.append(index)
        } else {
          images.append(try image(kind, of: task, tasks: tasks, root: root))
          indices[id] = images.count - 1
          own.append(images.count - 1)
        }
      }
      tasks[position].entry.nestedNamespaces = own.isEmpty ? nil : own
    }
    return images
  }

  /// `root`: the container's init.
  private static func image(
    _ kind: NestedNamespaceImage.Kind, of task: Dump.CapturedTask, tasks: [Dump.CapturedTask], root: Dump.CapturedTask
  ) throws -> NestedNamespaceImage {
    switch kind {
    case .uts:
      return NestedNamespaceImage(
        kind: .uts, hostname: task.namespaces.uts.hostname, domainname: task.namespaces.uts.domainname)
    case .ipc:
      let sysv = task.namespaces.sysvObjects
      guard sysv.shm + sysv.sem + sysv.msg == 0 else {
        throw CKError(
          .failed,
          "process \(task.hostPid) is in an IPC namespace of its own holding SysV objects, which ckcont cannot checkpoint yet"
        )
      }
      var image = NestedNamespaceImage(kind: .ipc)
      image.sysctls = try NamespaceSysctls.capture("ipc", of: task.hostPid)
      return image
    case .net:
      try checkOnlyLoopback(pid: task.hostPid, what: "process \(task.hostPid)'s network namespace")
      var image = NestedNamespaceImage(kind: .net, loopbackUp: task.namespaces.loopbackUp)
      image.sysctls = try NamespaceSysctls.capture("net", of: task.hostPid)
      return image
    case .mnt:
      var mounts = try ContainerMounts.capture(pid: task.hostPid, base: root.hostPid)
      try PidNamespaces.markProcMounts(&mounts, viewer: task, tasks: tasks, root: root)
      return NestedNamespaceImage(kind: .mnt, mounts: mounts.mounts.isEmpty ? nil : mounts)
    }
  }

  /// A network namespace is made again with loopback alone: any other device, or an address
  /// beyond 127.0.0.1 and ::1, would be gone after the restore and is refused.
  static func checkOnlyLoopback(pid: Int32, what: String) throws {
    let devices = try ProcNetDev.names(pid: pid).filter { $0 != "lo" }
    guard devices.isEmpty else {
      throw CKError(
        .failed,
        "\(what) has network devices of its own (\(devices.joined(separator: ", "))), which ckcont cannot checkpoint yet",
        hint:
          "ckcont makes only loopback again; move the devices out before the checkpoint, or run the container in the host's network namespace"
      )
    }
    let addresses = try ProcNetAddresses.read(pid: pid).filter { $0 != "127.0.0.1" && $0 != "::1" }
    guard addresses.isEmpty else {
      throw CKError(
        .failed,
        "\(what) has addresses of its own (\(addresses.joined(separator: ", "))), which ckcont cannot checkpoint yet",
        hint: "ckcont makes only loopback's 127.0.0.1 and ::1 again")
    }
  }

  // MARK: Restore

  /// Which nested namespace each created process is in (nil: the init's), and which process
  /// made each one.
  struct Placement {
    var current: [Int32: [NestedNamespaceImage.Kind: Int]] = [:]
    var makers: [Int: Int32] = [:]
    /// The init's pid inside the container, whose namespaces are the container's own.
    var rootPid: Int32 = 0
  }

  /// Moves process `pid` (`injector`), just forked by `parent`, into the nested namespaces
  /// its entry names. `wanted`: the indices from its entry; `images`: the tree's.
  /// `userMaps`: those of the container's user namespace, for mounts (``ContainerMounts``).
  static func enter(
    pid: Int32, parent: Int32, wanted: [Int]?, images: [NestedNamespaceImage], injector: Injector,
    userMaps: UserNamespaceMaps?,
    layout: PidNamespaces.Layout, placement: inout Placement
  ) throws {
    let inherited = placement.current[parent] ?? [:]
    var now = inherited
    for (kind, _, flag) in kinds {
      let target = (wanted ?? []).first { images.indices.contains($0) && images[$0].kind == kind }
      guard target != inherited[kind] else { continue }
      if let target, placement.makers[target] == nil {
        try injector.call(.unshare(flag), "unshare(\(kind.rawValue)) for process \(pid)")
        let image = images[target]
        if let sysctls = image.sysctls {
          if kind == .ipc {
            try NamespaceSysctls.restore(sysctls, through: injector)
          } else {
            try NamespaceSysctls.restore(sysctls, kind: kind.rawValue, of: injector.pid)
          }
        }
        switch kind {
        case .uts: try setNames(hostname: image.hostname, domainname: image.domainname, in: injector)
        case .net: if image.loopbackUp == true { try bringLoopbackUp(in: injector) }
        case .mnt:
          if let mounts = image.mounts {
            try ContainerMounts.restore(
              mounts, injector: injector, pid: injector.pid, rootSource: nil, userMaps: userMaps)
          }
        case .ipc: break
        }
        placement.makers[target] = pid
      } else {
        let owner = target.flatMap { placement.makers[$0] } ?? placement.rootPid
        // Named as the process's pid namespace sees it (one below the container's may not).
        guard let seen = layout.pid(of: owner, seenBy: pid) else {
          throw CKError(
            .failed,
            "process \(pid) joins the \(kind.rawValue) namespace of process \(owner), which its pid namespace does not see; ckcont cannot restore that yet"
          )
        }
        injector.resetData()
        var batch = Injector.Batch()
        let pidfd = batch.add(.pidfdOpen(seen), "pidfd_open(\(owner))")
        batch.add(.setns(.result(pidfd), flag), "setns(\(kind.rawValue) of \(owner)) for process \(pid)")
        batch.add(.close(.result(pidfd)), "close the pidfd of \(owner)")
        try injector.run(batch)
      }
      now[kind] = target
    }
    placement.current[pid] = now
  }

  /// Mounts the procs that show the pid namespace of `pid`, its init just made (see
  /// ``PidNamespaces/markProcMounts``), in the mount namespace it is in: the container's
  /// (`rootMounts`) or a nested one.
  static func mountProcs(
    ofInit pid: Int32, rootMounts: MountsImage?, images: [NestedNamespaceImage], injector: Injector,
    userMaps: UserNamespaceMaps?,
    placement: Placement
  ) throws {
    let mounts = placement.current[pid]?[.mnt].map { images[$0].mounts } ?? rootMounts
    for mount in mounts?.mounts ?? [] where mount.pidNamespaceInit == pid {
      try ContainerMounts.mountFilesystem(mount, at: mount.mountPoint, injector: injector, userMaps: userMaps)
    }
  }

  /// The host and domain name of a new UTS namespace, set from inside it.
  static func setNames(hostname: String?, domainname: String?, in injector: Injector) throws {
    injector.resetData()
    var batch = Injector.Batch()
    for (name, call, what) in [
      (hostname, RemoteCall.sethostname, "sethostname"), (domainname, RemoteCall.setdomainname, "setdomainname"),
    ] {
      guard let name else { continue }
      let bytes = Array(name.utf8.prefix(64))
      let address = try injector.put(bytes + [0])
      batch.add(call(address, bytes.count), "\(what) \(name)")
    }
    try injector.run(batch)
  }

  /// Sets loopback up in a new network namespace, as it was in the dumped one (SIOCSIFFLAGS
  /// through a socket of the task's; sockets bound to 127.0.0.1 need it).
  static func bringLoopbackUp(in injector: Injector) throws {
    injector.resetData()
    var batch = Injector.Batch()
    var request = [UInt8](repeating: 0, count: 40)
    request.replaceSubrange(0..<2, with: Array("lo".utf8))
    request[16] = UInt8(IFF_UP | IFF_LOOPBACK)
    let at = try injector.put(request)
    let probe = batch.add(
      .socket(family: AF_INET, type: Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)), "socket for loopback")
    batch.add(.ioctl(.result(probe), .setInterfaceFlags, at), "set loopback up")
    batch.add(.close(.result(probe)), "close the socket for loopback")
    try injector.run(batch)
  }
}
