import CKShim
import Glibc

// The typed remote calls on a task itself: prctl, signals, timers, scheduling, limits,
// credentials, sessions, namespaces and mounts (see RemoteCalls.swift).

extension RemoteCall {
  /// prctl(2).
  public static func prctl(_ request: PrctlRequest) -> RemoteCall {
    let (option, arguments, name) = request.parts
    return RemoteCall(SyscallNumber.prctl, [option.rawValue] + arguments, label: name)
  }

  /// rt_sigaction(2) of `signal`: the struct kernel_sigaction at `action` (0: none), the old one
  /// into `old` (0: not read).
  public static func rtSigaction(_ signal: Int32, action: UInt64, old: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.rtSigaction, [signal, action, old, 8], label: "rt_sigaction(\(signal))")
  }

  /// sigaltstack(2): the stack_t at `stack` (0: none), the old one into `old` (0: not read).
  public static func sigaltstack(_ stack: UInt64, old: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.sigaltstack, [stack, old], label: "sigaltstack")
  }

  /// rt_sigqueueinfo(2) of the siginfo at `info`.
  public static func rtSigqueueinfo(_ pid: Int32, _ signal: Int32, info: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.rtSigqueueinfo, [pid, signal, info], label: "rt_sigqueueinfo(\(signal))")
  }

  /// rt_tgsigqueueinfo(2) of the siginfo at `info`.
  public static func rtTgsigqueueinfo(_ pid: Int32, _ tid: Int32, _ signal: Int32, info: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.rtTgsigqueueinfo, [pid, tid, signal, info], label: "rt_tgsigqueueinfo(\(signal))")
  }

  /// rt_sigtimedwait(2) for the sigset_t at `set`, the struct timespec at `timeout`.
  public static func rtSigtimedwait(_ set: UInt64, info: UInt64 = 0, timeout: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.rtSigtimedwait, [set, info, timeout, 8], label: "rt_sigtimedwait")
  }

  /// set_tid_address(2).
  public static func setTidAddress(_ address: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.setTidAddress, [address], label: "set_tid_address")
  }

  /// set_robust_list(2) of the struct robust_list_head (`length` bytes) at `head`.
  public static func setRobustList(_ head: UInt64, length: Int) -> RemoteCall {
    RemoteCall(SyscallNumber.setRobustList, [head, length], label: "set_robust_list")
  }

  /// rseq(2): registers the struct rseq at `address`, or with `unregister` takes it back.
  public static func rseq(_ address: UInt64, length: UInt32, signature: UInt32, unregister: Bool = false)
    -> RemoteCall
  {
    RemoteCall(
      SyscallNumber.rseq, [address, length, unregister ? Int32(CK_RSEQ_FLAG_UNREGISTER) : 0, signature],
      label: unregister ? "rseq unregister" : "rseq register")
  }

  /// setitimer(2) of the struct itimerval at `value`, the old one not read.
  public static func setitimer(_ which: Int32, _ value: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.setitimer, [which, value, 0], label: "setitimer(\(which))")
  }

  /// getitimer(2) into the struct itimerval at `value`.
  public static func getitimer(_ which: Int32, into value: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.getitimer, [which, value], label: "getitimer(\(which))")
  }

  /// timer_create(2): the struct sigevent at `event`, the id into (and, with
  /// PR_TIMER_CREATE_RESTORE_IDS, from) `id`.
  public static func timerCreate(_ clock: Int32, event: UInt64, id: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.timerCreate, [clock, event, id], label: "timer_create")
  }

  /// timer_settime(2) of the struct itimerspec at `value`, relative, the old one not read.
  public static func timerSettime(_ id: Int32, _ value: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.timerSettime, [id, 0, value, 0], label: "timer_settime(\(id))")
  }

  /// timer_gettime(2) into the struct itimerspec at `value`.
  public static func timerGettime(_ id: Int32, into value: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.timerGettime, [id, value], label: "timer_gettime(\(id))")
  }

  /// sched_setscheduler(2) of the caller with the struct sched_param at `parameter`.
  public static func schedSetscheduler(_ policy: UInt32, parameter: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.schedSetscheduler, [0, policy, parameter], label: "sched_setscheduler \(policy)")
  }

  /// setpriority(2) of the calling process (PRIO_PROCESS 0): its nice value.
  public static func setpriority(_ nice: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.setpriority, [Int32(PRIO_PROCESS.rawValue), 0, nice], label: "setpriority \(nice)")
  }

  /// umask(2).
  public static func umask(_ mask: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.umask, [mask], label: "umask")
  }

  /// personality(2); 0xffffffff reads it.
  public static func personality(_ persona: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.personality, [persona], label: "personality")
  }

  /// prlimit64(2) of the caller: the struct rlimit64 at `new` (0: none), the old one into
  /// `old` (0: not read).
  public static func prlimit64(_ resource: Int32, new: UInt64, old: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.prlimit64, [0, resource, new, old], label: "prlimit64(\(resource))")
  }

  /// chdir(2).
  public static func chdir(_ path: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.chdir, [path], label: "chdir")
  }

  /// chroot(2).
  public static func chroot(_ path: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.chroot, [path], label: "chroot")
  }

  /// getgroups(2) into the room for `count` gid_t at `list` (0, 0: how many there are).
  public static func getgroups(_ count: Int, _ list: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.getgroups, [count, list], label: "getgroups")
  }

  /// setgroups(2) of the `count` gid_t at `list`.
  public static func setgroups(_ count: Int, _ list: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.setgroups, [count, list], label: "setgroups")
  }

  /// setresuid(2).
  public static func setresuid(_ real: UInt32, _ effective: UInt32, _ saved: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.setresuid, [real, effective, saved], label: "setresuid")
  }

  /// setresgid(2).
  public static func setresgid(_ real: UInt32, _ effective: UInt32, _ saved: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.setresgid, [real, effective, saved], label: "setresgid")
  }

  /// setfsuid(2).
  public static func setfsuid(_ uid: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.setfsuid, [uid], label: "setfsuid")
  }

  /// setfsgid(2).
  public static func setfsgid(_ gid: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.setfsgid, [gid], label: "setfsgid")
  }

  /// capset(2) with the header and data at those addresses.
  public static func capset(header: UInt64, data: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.capset, [header, data], label: "capset")
  }

  /// seccomp(2) SECCOMP_SET_MODE_FILTER of the struct sock_fprog at `program`.
  public static func seccompSetFilter(_ program: UInt64, flags: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.seccomp, [Int32(CK_SECCOMP_SET_MODE_FILTER), flags, program], label: "seccomp filter")
  }

  /// setsid(2).
  public static func setsid() -> RemoteCall {
    RemoteCall(SyscallNumber.setsid, [], label: "setsid")
  }

  /// setpgid(2).
  public static func setpgid(_ pid: Int32, _ group: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.setpgid, [pid, group], label: "setpgid(\(pid), \(group))")
  }

  /// wait4(2) for `pid`, neither status nor usage read.
  public static func wait4(_ pid: Int32, options: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.wait4, [pid, 0, options, 0], label: "wait4(\(pid))")
  }

  /// unshare(2) of the namespaces (and other state) in `flags` (CLONE_*).
  public static func unshare(_ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.unshare, [flags], label: "unshare")
  }

  /// setns(2) into the namespace(s) `type` (CLONE_NEW*) of the pidfd or namespace file `fd`.
  public static func setns(_ fd: some RemoteArgument, _ type: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.setns, [fd, type], label: "setns \(fd.argument)")
  }

  /// mount(2); strings at the addresses (0: none).
  public static func mount(source: UInt64, target: UInt64, type: UInt64 = 0, flags: UInt64, data: UInt64 = 0)
    -> RemoteCall
  {
    RemoteCall(SyscallNumber.mount, [source, target, type, flags, data], label: "mount")
  }

  /// umount2(2).
  public static func umount2(_ target: UInt64, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.umount2, [target, flags], label: "umount2")
  }

  /// pivot_root(2).
  public static func pivotRoot(_ newRoot: UInt64, putOld: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.pivotRoot, [newRoot, putOld], label: "pivot_root")
  }

  /// sethostname(2) of the `length` bytes at `name`.
  public static func sethostname(_ name: UInt64, length: Int) -> RemoteCall {
    RemoteCall(SyscallNumber.sethostname, [name, length], label: "sethostname")
  }

  /// setdomainname(2) of the `length` bytes at `name`.
  public static func setdomainname(_ name: UInt64, length: Int) -> RemoteCall {
    RemoteCall(SyscallNumber.setdomainname, [name, length], label: "setdomainname")
  }

  /// uname(2) into the struct utsname at `buffer`.
  public static func uname(into buffer: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.uname, [buffer], label: "uname")
  }

  /// shmctl(2) `command` (IPC_INFO, SHM_INFO...) of segment `id`, into `buffer`.
  public static func shmctl(_ id: Int32, _ command: Int32, _ buffer: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.shmctl, [id, command, buffer], label: "shmctl")
  }

  /// semctl(2) `command` of semaphore `number` of set `id`, with `argument`.
  public static func semctl(_ id: Int32, _ number: Int32, _ command: Int32, _ argument: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.semctl, [id, number, command, argument], label: "semctl")
  }

  /// msgctl(2) `command` of queue `id`, into `buffer`.
  public static func msgctl(_ id: Int32, _ command: Int32, _ buffer: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.msgctl, [id, command, buffer], label: "msgctl")
  }
}

/// A prctl(2) option with its arguments (``PrctlOption``'s values), named for labels.
public enum PrctlRequest: Sendable {
  case getParentDeathSignal(into: UInt64)
  case setParentDeathSignal(Int32)
  case getDumpable
  case setDumpable(Int32)
  case setKeepCapabilities(Bool)
  /// The name (16 bytes at most, NUL included) at an address in the task.
  case setName(UInt64)
  case dropBoundingCapability(Int)
  case getSecurebits
  case setSecurebits(UInt32)
  case getTimerSlack
  case setTimerSlack(UInt64)
  /// PR_SET_MM_MAP: the struct prctl_mm_map of `size` bytes at an address in the task.
  case setMMMap(UInt64, size: Int)
  case getChildSubreaper(into: UInt64)
  case setChildSubreaper(Bool)
  case setNoNewPrivileges
  case getTidAddress(into: UInt64)
  case getTHPDisable
  case setTHPDisable(UInt64)
  /// PR_CAP_AMBIENT_RAISE of a capability.
  case raiseAmbientCapability(Int)
  case getMDWE
  case setMDWE(UInt64)
  case getMemoryMerge
  case setMemoryMerge(UInt64)
  /// Whether timer_create takes the id to make from its argument (Linux 6.15).
  case timerCreateRestoreIDs(Bool)

  /// The option, its further arguments, and its name.
  var parts: (PrctlOption, [any RemoteArgument], String) {
    switch self {
    case .getParentDeathSignal(let into): (.getParentDeathSignal, [into], "PR_GET_PDEATHSIG")
    case .setParentDeathSignal(let signal): (.setParentDeathSignal, [signal], "PR_SET_PDEATHSIG")
    case .getDumpable: (.getDumpable, [], "PR_GET_DUMPABLE")
    case .setDumpable(let value): (.setDumpable, [value], "PR_SET_DUMPABLE")
    case .setKeepCapabilities(let keep): (.setKeepCapabilities, [keep ? 1 : 0], "PR_SET_KEEPCAPS")
    case .setName(let name): (.setName, [name], "PR_SET_NAME")
    case .dropBoundingCapability(let capability):
      (.dropBoundingCapability, [capability], "PR_CAPBSET_DROP(\(capability))")
    case .getSecurebits: (.getSecurebits, [], "PR_GET_SECUREBITS")
    case .setSecurebits(let bits): (.setSecurebits, [bits], "PR_SET_SECUREBITS")
    case .getTimerSlack: (.getTimerSlack, [], "PR_GET_TIMERSLACK")
    case .setTimerSlack(let slack): (.setTimerSlack, [slack], "PR_SET_TIMERSLACK")
    case .setMMMap(let map, let size): (.setMM, [Int32(CK_PR_SET_MM_MAP), map, size], "PR_SET_MM_MAP")
    case .getChildSubreaper(let into): (.getChildSubreaper, [into], "PR_GET_CHILD_SUBREAPER")
    case .setChildSubreaper(let on): (.setChildSubreaper, [on ? 1 : 0], "PR_SET_CHILD_SUBREAPER")
    case .setNoNewPrivileges: (.setNoNewPrivileges, [1], "PR_SET_NO_NEW_PRIVS")
    case .getTidAddress(let into): (.getTidAddress, [into], "PR_GET_TID_ADDRESS")
    case .getTHPDisable: (.getTHPDisable, [], "PR_GET_THP_DISABLE")
    case .setTHPDisable(let value): (.setTHPDisable, [value], "PR_SET_THP_DISABLE")
    case .raiseAmbientCapability(let capability):
      (.ambientCapability, [Int32(CK_PR_CAP_AMBIENT_RAISE), capability], "PR_CAP_AMBIENT_RAISE(\(capability))")
    case .getMDWE: (.getMDWE, [], "PR_GET_MDWE")
    case .setMDWE(let flags): (.setMDWE, [flags], "PR_SET_MDWE")
    case .getMemoryMerge: (.getMemoryMerge, [], "PR_GET_MEMORY_MERGE")
    case .setMemoryMerge(let value): (.setMemoryMerge, [value], "PR_SET_MEMORY_MERGE")
    case .timerCreateRestoreIDs(let on):
      (.timerCreateRestoreIDs, [on ? 1 : 0], "PR_TIMER_CREATE_RESTORE_IDS \(on ? "on" : "off")")
    }
  }
}
