/// Everything the state snapshot leaves out or rewrites, each with its reason: the one place
/// to look for what a round trip does *not* compare. The readers consult these lists; what
/// is rewritten rather than dropped is listed in ``normalised``.
public enum IgnoredState {
  /// A field left out, and why.
  public struct Field: Sendable {
    public var name: String
    public var reason: String
  }

  /// Rewritten everywhere rather than dropped.
  public static let normalised: [Field] = [
    Field(
      name: "host pids",
      reason:
        "tasks are named by their pid in the container's pid namespace; the host's levels of NSpid/NStgid/NSpgid/NSsid change with every restore and are cut off; a pid outside the container reads `outside`"
    ),
    Field(
      name: "inode numbers",
      reason:
        "pipes, sockets and namespaces get new inodes: their identity is kept as a relation (which descriptors or tasks share it); an O_TMPFILE file's name is its inode number (`/tmp/#123 (deleted)`), compared as `#inode`"
    ),
    Field(
      name: "open file descriptions",
      reason: "compared as the relation of descriptors sharing one (kcmp KCMP_FILE), not by address"),
    Field(
      name: "page frames",
      reason: "physical frames change: only which (task, address) pairs share an anonymous frame is kept"),
    Field(
      name: "mount ids and peer group ids",
      reason:
        "renumbered by every mount: a mount is named by its mount point, its parent by the parent's mount point, a peer group by its first member"
    ),
    Field(name: "device numbers of mounts and files", reason: "anonymous devices (tmpfs, proc) are numbered anew"),
  ]

  /// /proc/<pid>/status lines left out (all others listed in ``TaskFields`` are compared).
  public static let status: [Field] = [
    Field(
      name: "State R/S/D",
      reason:
        "whether a thread runs, sleeps or sits in the v1 freezer tells only where the freeze caught it (T, t and Z are compared)"
    ),
    Field(name: "SigQ", reason: "signals queued by the real uid across the whole host, and the limit"),
    Field(
      name: "Vm*/Rss*/voluntary_ctxt_switches",
      reason: "memory use and scheduling counters, not state (memory is compared mapping by mapping)"),
  ]

  /// /proc/<pid>/stat fields left out.
  public static let stat: [Field] = [
    Field(
      name: "utime/stime/cutime/cstime/starttime/delayacct", reason: "CPU times and start time are time, not state"),
    Field(
      name: "minflt/majflt/vsize/rss/startcode/kstkesp/kstkeip/wchan",
      reason: "counters and addresses the maps already cover"),
    Field(
      name: "flags", reason: "kernel-internal PF_* flags (PF_FREEZER_SKIP and the like change with the freeze itself)"),
  ]

  /// fdinfo keys left out.
  public static let fdinfo: [Field] = [
    Field(name: "mnt_id", reason: "mount ids are renumbered by every mount"),
    Field(name: "ino", reason: "inode numbers (identity is compared as a relation)"),
    Field(name: "it_value", reason: "a timerfd's time left is time, not state"),
    Field(name: "ticks", reason: "a timerfd's unread expirations depend on how long the dump and restore took"),
    Field(name: "eventfd-id", reason: "a number the kernel gives each eventfd"),
    Field(
      name: "NSpid",
      reason: "a pidfd's pid in every pid namespace: the host's levels change (Pid is compared, as a container pid)"),
    Field(name: "sdev/fhandle-bytes/fhandle-type/f_handle (inotify)", reason: "device and inode of a watched file"),
    Field(name: "pos/ino/sdev (epoll tfd)", reason: "the watched file's identity; tfd, events and data are compared"),
  ]

  /// Mappings whose contents are not hashed.
  public static let mappingContents: [Field] = [
    Field(
      name: "[vvar], [vvar_vclock], [vsyscall]",
      reason: "the kernel's time data pages change by themselves and cannot be read through /proc/<pid>/mem"),
    Field(
      name: "unreadable mappings (no r permission)",
      reason: "/proc/<pid>/mem does not read them; their range, permissions and flags are compared"),
    Field(
      name: "rseq cpu_id_start, cpu_id, node_id, mm_cid",
      reason: "the kernel writes the CPU a thread runs on into its rseq area at every return to user space (RseqAreas)"),
  ]

  /// Pages left out of the copy-on-write relation.
  public static let sharedFrames: [Field] = [
    Field(
      name: "file pages and shared memory",
      reason:
        "the page cache and shmem are shared by nature; only private anonymous (copied or not yet copied on write) frames are compared"
    ),
    Field(
      name: "the zero page and KSM pages",
      reason: "shared by the kernel's own choice (kpageflags ZERO_PAGE, KSM): KSM merges again in its own time"),
  ]

  /// What a zombie shows beyond its pid, parent, group, session, state and exit status.
  public static let zombies: [Field] = [
    Field(
      name: "everything else",
      reason:
        "a zombie never runs again: its signal state, affinity, credentials and the like are its last task's (a restore's helper's), seen by no one"
    )
  ]

  /// Mount facts left out.
  public static let mounts: [Field] = [
    Field(
      name: "the host's mounts",
      reason:
        "a mount namespace starts as a copy of the host's mounts as they are at that moment (another test may have mounted something since the launch): only mounts that differ from the host's by mount point, device or root are the container's"
    ),
    Field(
      name: "mounts other tests make on the host",
      reason:
        "a namespace made while another test's `ip netns add` mount exists copies it, and that test may remove it before the snapshot reads the host (``HostMounts``)"
    ),
    Field(
      name: "propagation with the host's peer groups",
      reason: "documented as not kept: the restore makes its mount namespace private (docs/CAPABILITIES.md, Mounts)"),
  ]

  /// The names of ``fdinfo`` that are plain keys.
  static let fdinfoKeys: Set<String> = ["mnt_id", "ino", "it_value", "ticks", "eventfd-id", "NSpid"]
  /// The mappings of ``mappingContents`` by name.
  static let unhashedMappings: Set<String> = ["[vvar]", "[vvar_vclock]", "[vsyscall]"]
}
