/// The checkpoint model: what a bundle says about a container. Plain Codable values, stored
/// as JSON members; page contents are raw members. CRIU's vocabulary: pstree, core, mm,
/// fdinfo, pages.

/// `tree.json`: every task of the container and how they relate (CRIU's pstree).
public struct ProcessTree: Codable, Sendable, Equatable {
  public var tasks: [TaskEntryImage]
  /// The namespaces the container's tasks live in, beyond those of the host.
  public var namespaces: NamespaceSet
  /// The cgroup the container was dumped from, and its hierarchy version ("v1"/"v2").
  public var cgroup: String
  public var cgroupVersion: String
  /// The time namespaces the container made (unshare(CLONE_NEWTIME)), which tasks name by
  /// index, and the host's clocks when the dump read them.
  public var timeNamespaces: [TimeNamespaceImage]?
  public var clocksAtDump: ClockReadings?
  /// UTS, IPC, network and mount namespaces some processes have besides the init's: each made again
  /// by the first process in it and joined by the others (``TaskEntryImage/nestedNamespaces``).
  public var nestedNamespaces: [NestedNamespaceImage]?
  /// A shell job (`dump --shell-job`): its session and controlling terminal were outside the
  /// container, this terminal (`/dev/pts/3`); the restore (`--shell-job`) gives the job its own
  /// terminal and session instead, as CRIU's --shell-job.
  public var shellJobTerminal: String?
  /// The container's console (`dump --external-console`): a pseudo-terminal whose master its
  /// runtime held (podman -t, runc with a terminal), the controlling terminal of a session of
  /// the container's; its descriptors are slaves of this terminal. The restore makes a new one
  /// in the container's devpts and hands its master to the runtime (`--console-socket`).
  public var console: PtyImage?

  public init(tasks: [TaskEntryImage], namespaces: NamespaceSet, cgroup: String, cgroupVersion: String) {
    self.tasks = tasks
    self.namespaces = namespaces
    self.cgroup = cgroup
    self.cgroupVersion = cgroupVersion
  }
}

/// A time namespace's clock offsets (/proc/<pid>/timens_offsets), in nanoseconds.
public struct TimeNamespaceImage: Codable, Sendable, Equatable {
  public var monotonicOffset: Int64
  public var boottimeOffset: Int64

  public init(monotonicOffset: Int64, boottimeOffset: Int64) {
    self.monotonicOffset = monotonicOffset
    self.boottimeOffset = boottimeOffset
  }
}

/// CLOCK_REALTIME, CLOCK_MONOTONIC and CLOCK_BOOTTIME of the host at one moment, in
/// nanoseconds: a restore elsewhere keeps the container's clocks going from where they were.
public struct ClockReadings: Codable, Sendable, Equatable {
  public var realtime: Int64
  public var monotonic: Int64
  public var boottime: Int64

  public init(realtime: Int64, monotonic: Int64, boottime: Int64) {
    self.realtime = realtime
    self.monotonic = monotonic
    self.boottime = boottime
  }
}

/// One process of the tree.
public struct TaskEntryImage: Codable, Sendable, Equatable {
  /// The pid inside the container's pid namespace (the one the task sees as getpid()).
  public var pid: Int32
  /// Its pid in each pid namespace, outermost (host) first, as in /proc/<pid>/status NSpid.
  public var namespacePids: [Int32]
  /// The parent's pid inside the container, 0 when the parent is outside it.
  public var ppid: Int32
  public var pgid: Int32
  public var sid: Int32
  /// Thread ids inside the container's pid namespace, the main thread first.
  public var threads: [Int32]
  /// Its cgroup relative to the dumped cgroup (`.` for the top).
  public var cgroup: String
  public var comm: String
  /// For a zombie (dead, not yet reaped by its parent): its wait status, as waitpid reports
  /// it. A zombie has no images, only this entry.
  public var zombieStatus: Int32?
  /// A stopped job (group-stop by SIGSTOP, SIGTSTP, SIGTTIN or SIGTTOU): the signal, which the
  /// restore sends again before the container resumes.
  public var stopSignal: Int32?
  /// Shares its parent's descriptor table (clone with CLONE_FILES): one table for both.
  public var sharesFilesWithParent: Bool?
  /// Shares its parent's fs information (CLONE_FS): root, cwd and umask changes show in both.
  public var sharesFSWithParent: Bool?
  /// Its time namespace and the one its children get (indices into
  /// ``ProcessTree/timeNamespaces``), when not the host's.
  public var timeNamespace: Int?
  public var childTimeNamespace: Int?
  /// The UTS, IPC, network and mount namespaces it has of its own, not the init's (indices into
  /// ``ProcessTree/nestedNamespaces``): a process that unshared one, or forked from one that
  /// did.
  public var nestedNamespaces: [Int]?
  /// In a pid namespace below the container's (`unshare -pf` run inside it): its pid in each
  /// namespace below the container's, outermost first; the last is what getpid() returns, 1
  /// for the init of a namespace. nil in the container's own.
  public var nestedPids: [Int32]?
  /// With ``nestedPids``: each thread's ids in those namespaces, in the order of ``threads``.
  public var nestedThreads: [[Int32]]?
  /// Its children are born in a pid namespace below its own (it called
  /// unshare(CLONE_NEWPID) and forked, as `unshare -pf` does): that namespace's init, one of
  /// its children, by its pid in the container.
  public var childPidNamespaceInit: Int32?

  public init(
    pid: Int32, namespacePids: [Int32], ppid: Int32, pgid: Int32, sid: Int32, threads: [Int32], cgroup: String,
    comm: String, zombieStatus: Int32? = nil
  ) {
    self.pid = pid
    self.namespacePids = namespacePids
    self.ppid = ppid
    self.pgid = pgid
    self.sid = sid
    self.threads = threads
    self.cgroup = cgroup
    self.comm = comm
    self.zombieStatus = zombieStatus
  }

  /// Its pid in each pid namespace from the container's down to its own.
  public var pidChain: [Int32] { [pid] + (nestedPids ?? []) }
  /// How many pid namespaces below the container's it lives (0: in the container's).
  public var pidDepth: Int { nestedPids?.count ?? 0 }
  /// Thread ids as the process itself sees them (in its own pid namespace).
  public var ownThreads: [Int32] {
    guard let nestedThreads else { return threads }
    return zip(threads, nestedThreads).map { $1.last ?? $0 }
  }

  /// The member names of this task's images.
  public var coreMember: String { "tasks/\(pid)/core.json" }
  public var mmMember: String { "tasks/\(pid)/mm.json" }
  public var filesMember: String { "tasks/\(pid)/files.json" }
  public var pagesMember: String { "tasks/\(pid)/pages.img" }
}

/// Which namespaces the container has of its own (new ones are created at restore).
public struct NamespaceSet: Codable, Sendable, Equatable {
  public var pid: Bool
  public var mount: Bool
  public var uts: Bool
  public var ipc: Bool
  public var net: Bool
  public var user: Bool
  public var cgroup: Bool
  public var time: Bool
  /// The UTS names, restored into a new UTS namespace.
  public var hostname: String?
  public var domainname: String?
  /// Whether loopback was up in the container's own network namespace: a new one is made
  /// with it down.
  public var loopbackUp: Bool?
  /// The container's network namespace was its runtime's (`dump --external-net`, as a
  /// podman container's, whose devices netavark made): nothing of it is saved, and the
  /// restore joins the one its caller names (`--join-net`).
  public var netExternal: Bool?
  /// The devices, addresses and routes of the container's own network namespace beyond
  /// loopback (veth pairs, with a peer outside or inside).
  public var network: NetworkImage?
  /// The id maps of the container's own user namespace (`user`), written again for the new
  /// one.
  public var userMaps: UserNamespaceMaps?
  /// The settings of the container's own network and IPC namespaces that differ from a fresh
  /// one's (paths under /proc/sys -> values: `net/core/somaxconn`, `kernel/msgmnb`).
  public var netSysctls: [String: String]?
  public var ipcSysctls: [String: String]?

  public init(
    pid: Bool, mount: Bool, uts: Bool, ipc: Bool, net: Bool, user: Bool, cgroup: Bool, time: Bool,
    hostname: String? = nil, domainname: String? = nil
  ) {
    self.pid = pid
    self.mount = mount
    self.uts = uts
    self.ipc = ipc
    self.net = net
    self.user = user
    self.cgroup = cgroup
    self.time = time
    self.hostname = hostname
    self.domainname = domainname
  }
}

/// The id maps of a user namespace as ckcont saw them (`/proc/<pid>/uid_map`, `gid_map`) and
/// whether it allowed setgroups(2). Ids elsewhere in the bundle (credentials, file and IPC
/// owners) are ckcont's, the host's; the restore writes the same maps, so they stay right.
public struct UserNamespaceMaps: Codable, Sendable, Equatable {
  /// `count` ids from `inside` (the namespace's) are `outside` (the host's).
  public struct Range: Codable, Sendable, Equatable {
    public var inside: UInt32
    public var outside: UInt32
    public var count: UInt32

    public init(inside: UInt32, outside: UInt32, count: UInt32) {
      self.inside = inside
      self.outside = outside
      self.count = count
    }
  }
  public var uids: [Range]
  public var gids: [Range]
  public var setgroupsAllowed: Bool

  public init(uids: [Range], gids: [Range], setgroupsAllowed: Bool) {
    self.uids = uids
    self.gids = gids
    self.setgroupsAllowed = setgroupsAllowed
  }

  /// The namespace's id for host id `id` in `map`, nil when it maps none.
  public static func inside(_ id: UInt32, in map: [Range]) -> UInt32? {
    for range in map where id >= range.outside && UInt64(id) < UInt64(range.outside) + UInt64(range.count) {
      return range.inside + (id - range.outside)
    }
    return nil
  }

  /// The text the kernel takes for a map file: one `inside outside count` line per range.
  public static func text(_ map: [Range]) -> String {
    map.map { "\($0.inside) \($0.outside) \($0.count)\n" }.joined()
  }

  /// Whether a map is one the kernel could have shown: 1 to 340 ranges, none empty, none
  /// past the 32-bit ids.
  public static func isPlausible(_ map: [Range]) -> Bool {
    (1...340).contains(map.count)
      && map.allSatisfy {
        $0.count > 0 && UInt64($0.inside) + UInt64($0.count) <= 1 << 32
          && UInt64($0.outside) + UInt64($0.count) <= 1 << 32
      }
  }
}

/// A UTS, IPC, network or mount namespace of some of the container's processes, not the
/// init's.
public struct NestedNamespaceImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable, CaseIterable {
    case uts, ipc, net, mnt
  }
  public var kind: Kind
  /// uts: the names.
  public var hostname: String?
  public var domainname: String?
  /// net: whether loopback was up (the only device a restored one has).
  public var loopbackUp: Bool?
  /// mnt: the mounts it has beyond the container's namespace (bind sources are the
  /// container's paths).
  public var mounts: MountsImage?
  /// net, ipc: its settings that differ from a fresh namespace's (paths under /proc/sys).
  public var sysctls: [String: String]?

  public init(
    kind: Kind, hostname: String? = nil, domainname: String? = nil, loopbackUp: Bool? = nil, mounts: MountsImage? = nil
  ) {
    self.kind = kind
    self.hostname = hostname
    self.domainname = domainname
    self.loopbackUp = loopbackUp
    self.mounts = mounts
  }
}
