import Foundation

/// `tasks/<pid>/core.json`: the CPU and kernel state of one process and its threads.
public struct TaskCore: Codable, Sendable, Equatable {
  public var threads: [ThreadCore]
  /// Every signal with a non-default action, 1...64.
  public var signalActions: [SignalAction]
  /// Signals queued for the whole process, as 128-byte siginfo records in queue order.
  public var sharedPendingSignals: [Data]
  public var itimers: [IntervalTimer]
  /// timer_create(2) timers, recreated with their ids.
  public var posixTimers: [PosixTimerImage]?
  public var personality: UInt64
  public var resourceLimits: [ResourceLimitImage]
  public var umask: UInt32
  public var cwd: String
  public var root: String
  public var comm: String
  /// How the scheduler treats it: nice value, policy (SCHED_OTHER, BATCH, IDLE, FIFO, RR)
  /// and real-time priority, as its main thread has them.
  public var scheduling: SchedulingImage?
  /// seccomp filters, oldest first, which every thread of the process has (nil: none); a
  /// thread's own come after them (``ThreadCore/seccompFilters``).
  public var seccompFilters: [SeccompFilterImage]?
  /// prctl settings (nil in bundles from before they were kept).
  public var controls: ProcessControls?
  public var credentials: Credentials
  /// prctl state: PR_SET_PDEATHSIG signal, PR_SET_DUMPABLE, PR_SET_CHILD_SUBREAPER.
  public var parentDeathSignal: Int32
  public var dumpable: Int32
  public var childSubreaper: Bool

  /// Whether a thread of it has a seccomp filter.
  public var hasSeccompFilters: Bool { seccompFilters != nil || threads.contains { $0.seccompFilters != nil } }
  /// /proc/<pid>/oom_score_adj, -1000...1000 (nil in bundles from before it was kept).
  public var oomScoreAdjust: Int32?
  /// /proc/<pid>/loginuid, the audit login uid (4294967295: unset); nil without audit.
  /// Its audit session id cannot be kept: the kernel hands out a new one whenever the login
  /// uid is set.
  public var loginUID: UInt32?
  /// The instruction set its code runs in: nil for x86_64, `.i386` for a 32-bit program on
  /// the 64-bit kernel (IA32 emulation), whose remote calls, signal actions, robust lists,
  /// TLS and vDSO the restore makes the compat way.
  public var abi: TaskABI?

  public init(
    threads: [ThreadCore], signalActions: [SignalAction], sharedPendingSignals: [Data], itimers: [IntervalTimer],
    posixTimers: [PosixTimerImage]? = nil, personality: UInt64, resourceLimits: [ResourceLimitImage], umask: UInt32,
    cwd: String, root: String, comm: String,
    credentials: Credentials, parentDeathSignal: Int32, dumpable: Int32, childSubreaper: Bool
  ) {
    self.threads = threads
    self.signalActions = signalActions
    self.sharedPendingSignals = sharedPendingSignals
    self.itimers = itimers
    self.posixTimers = posixTimers
    self.personality = personality
    self.resourceLimits = resourceLimits
    self.umask = umask
    self.cwd = cwd
    self.root = root
    self.comm = comm
    self.credentials = credentials
    self.parentDeathSignal = parentDeathSignal
    self.dumpable = dumpable
    self.childSubreaper = childSubreaper
  }
}

/// One thread: registers, extended state, signal mask, pending signals, rseq, altstack.
public struct ThreadCore: Codable, Sendable, Equatable {
  public var tid: Int32
  public var registers: GeneralRegisters
  /// The whole XSAVE area (NT_X86_XSTATE), base64 in JSON.
  public var xstate: Data
  /// XSTATE_BV of the area: which state components are in use (bit n = component n).
  public var xstateFeatures: UInt64
  public var blockedSignals: UInt64
  /// Signals queued for this thread, as 128-byte siginfo records in queue order.
  public var pendingSignals: [Data]
  public var rseq: RseqRegistration?
  public var altStack: AltStack?
  public var clearChildTid: UInt64
  /// A thread's own name (pthread_setname_np); nil for the main thread, whose name is the
  /// process's `comm`.
  public var name: String?
  /// The CPUs it may run on (sched_setaffinity); nil in bundles from before it was kept.
  public var cpus: [Int]?
  /// The head of its robust futex list (set_robust_list: glibc's, for robust mutexes whose
  /// owner dies), 0 for none; nil in bundles from before it was kept.
  public var robustList: UInt64?
  /// The thread's own nice value, policy and realtime priority where they differ from the
  /// process's (``TaskCore/scheduling``, the main thread's).
  public var scheduling: SchedulingImage?
  /// Its I/O priority (ioprio_get: class << 13 | level) when one was set.
  public var ioPriority: UInt32?
  /// Its timer slack in nanoseconds where it differs from the main thread's
  /// (``ProcessControls/timerSlack``).
  public var timerSlack: UInt64?
  /// The seccomp filters it added on its own (without TSYNC), oldest first, after those of
  /// every thread (``TaskCore/seccompFilters``); nil for none.
  public var seccompFilters: [SeccompFilterImage]?
  /// An i386 thread's TLS: the GDT entries set_thread_area installed (12-14; glibc uses 12),
  /// those in use only; nil for an x86_64 thread.
  public var tlsEntries: [TLSEntry]?

  public init(
    tid: Int32, registers: GeneralRegisters, xstate: Data, xstateFeatures: UInt64, blockedSignals: UInt64,
    pendingSignals: [Data], rseq: RseqRegistration?, altStack: AltStack?, clearChildTid: UInt64
  ) {
    self.tid = tid
    self.registers = registers
    self.xstate = xstate
    self.xstateFeatures = xstateFeatures
    self.blockedSignals = blockedSignals
    self.pendingSignals = pendingSignals
    self.rseq = rseq
    self.altStack = altStack
    self.clearChildTid = clearChildTid
  }
}

/// The instruction set of a task's code.
public enum TaskABI: String, Codable, Sendable {
  /// 32-bit x86 code under IA32 emulation (code segment 0x23).
  case i386
}

/// One GDT TLS entry of an i386 thread: `struct user_desc` (asm/ldt.h) with its bit fields
/// in one word as the kernel packs them (seg_32bit, contents, read_exec_only, limit_in_pages,
/// seg_not_present, useable).
public struct TLSEntry: Codable, Sendable, Equatable {
  public var entry: UInt32
  public var base: UInt32
  public var limit: UInt32
  public var flags: UInt32

  public init(entry: UInt32, base: UInt32, limit: UInt32, flags: UInt32) {
    self.entry = entry
    self.base = base
    self.limit = limit
    self.flags = flags
  }

  /// The GDT entries an i386 thread may set (GDT_ENTRY_TLS_MIN...MAX).
  public static let entries: ClosedRange<UInt32> = 12...14
}

/// x86_64 `user_regs_struct`, by name.
public struct GeneralRegisters: Codable, Sendable, Equatable {
  public var r15, r14, r13, r12, rbp, rbx, r11, r10, r9, r8, rax, rcx, rdx, rsi, rdi, origRax: UInt64
  public var rip, cs, eflags, rsp, ss, fsBase, gsBase, ds, es, fs, gs: UInt64

  public init(
    r15: UInt64, r14: UInt64, r13: UInt64, r12: UInt64, rbp: UInt64, rbx: UInt64, r11: UInt64, r10: UInt64,
    r9: UInt64, r8: UInt64, rax: UInt64, rcx: UInt64, rdx: UInt64, rsi: UInt64, rdi: UInt64, origRax: UInt64,
    rip: UInt64, cs: UInt64, eflags: UInt64, rsp: UInt64, ss: UInt64, fsBase: UInt64, gsBase: UInt64, ds: UInt64,
    es: UInt64, fs: UInt64, gs: UInt64
  ) {
    (self.r15, self.r14, self.r13, self.r12, self.rbp, self.rbx) = (r15, r14, r13, r12, rbp, rbx)
    (self.r11, self.r10, self.r9, self.r8, self.rax, self.rcx) = (r11, r10, r9, r8, rax, rcx)
    (self.rdx, self.rsi, self.rdi, self.origRax, self.rip, self.cs) = (rdx, rsi, rdi, origRax, rip, cs)
    (self.eflags, self.rsp, self.ss, self.fsBase, self.gsBase) = (eflags, rsp, ss, fsBase, gsBase)
    (self.ds, self.es, self.fs, self.gs) = (ds, es, fs, gs)
  }
}

/// A registered rseq area (rseq(2)).
public struct RseqRegistration: Codable, Sendable, Equatable {
  public var address: UInt64
  public var size: UInt32
  public var signature: UInt32
  public init(address: UInt64, size: UInt32, signature: UInt32) {
    self.address = address
    self.size = size
    self.signature = signature
  }
}

/// sigaltstack(2) state.
public struct AltStack: Codable, Sendable, Equatable {
  public var base: UInt64
  public var flags: Int32
  public var size: UInt64
  public init(base: UInt64, flags: Int32, size: UInt64) {
    self.base = base
    self.flags = flags
    self.size = size
  }
}

/// The kernel's `struct sigaction` for one signal.
public struct SignalAction: Codable, Sendable, Equatable {
  public var signal: Int32
  public var handler: UInt64
  public var flags: UInt64
  public var restorer: UInt64
  public var mask: UInt64
  public init(signal: Int32, handler: UInt64, flags: UInt64, restorer: UInt64, mask: UInt64) {
    self.signal = signal
    self.handler = handler
    self.flags = flags
    self.restorer = restorer
    self.mask = mask
  }
}

/// getitimer(2) of ITIMER_REAL (0), ITIMER_VIRTUAL (1) or ITIMER_PROF (2), in microseconds.
/// One POSIX timer: how it notifies, on which clock, and when it fires next.
public struct PosixTimerImage: Codable, Sendable, Equatable {
  /// The id the process knows it by (timer_t).
  public var id: Int32
  public var clockID: Int32
  /// sigev_notify: SIGEV_SIGNAL 0, SIGEV_NONE 1, SIGEV_THREAD_ID 4.
  public var notify: Int32
  public var signal: Int32
  public var sigevValue: UInt64
  /// For SIGEV_THREAD_ID: the thread, as the container's pid namespace numbers it.
  public var targetThread: Int32?
  public var intervalNanoseconds: Int64
  /// Time left until the next expiry; 0 when disarmed.
  public var valueNanoseconds: Int64

  public init(
    id: Int32, clockID: Int32, notify: Int32, signal: Int32, sigevValue: UInt64, targetThread: Int32?,
    intervalNanoseconds: Int64, valueNanoseconds: Int64
  ) {
    self.id = id
    self.clockID = clockID
    self.notify = notify
    self.signal = signal
    self.sigevValue = sigevValue
    self.targetThread = targetThread
    self.intervalNanoseconds = intervalNanoseconds
    self.valueNanoseconds = valueNanoseconds
  }
}

public struct IntervalTimer: Codable, Sendable, Equatable {
  public var which: Int32
  public var intervalMicroseconds: Int64
  public var valueMicroseconds: Int64
  public init(which: Int32, intervalMicroseconds: Int64, valueMicroseconds: Int64) {
    self.which = which
    self.intervalMicroseconds = intervalMicroseconds
    self.valueMicroseconds = valueMicroseconds
  }
}

/// One RLIMIT_* resource.
public struct ResourceLimitImage: Codable, Sendable, Equatable {
  public var resource: Int32
  public var soft: UInt64
  public var hard: UInt64
  public init(resource: Int32, soft: UInt64, hard: UInt64) {
    self.resource = resource
    self.soft = soft
    self.hard = hard
  }
}

/// Who the process is: ids, groups, capabilities and securebits.
public struct Credentials: Codable, Sendable, Equatable {
  /// real, effective, saved, filesystem.
  public var uids: [UInt32]
  public var gids: [UInt32]
  public var groups: [UInt32]
  public var capInheritable: UInt64
  public var capPermitted: UInt64
  public var capEffective: UInt64
  public var capBounding: UInt64
  public var capAmbient: UInt64
  /// The capability sets in libcap's text form, for people reading the bundle.
  public var capabilitiesText: String
  public var noNewPrivileges: Bool
  public var securebits: UInt32

  public init(
    uids: [UInt32], gids: [UInt32], groups: [UInt32], capInheritable: UInt64, capPermitted: UInt64,
    capEffective: UInt64, capBounding: UInt64, capAmbient: UInt64, capabilitiesText: String, noNewPrivileges: Bool,
    securebits: UInt32
  ) {
    self.uids = uids
    self.gids = gids
    self.groups = groups
    self.capInheritable = capInheritable
    self.capPermitted = capPermitted
    self.capEffective = capEffective
    self.capBounding = capBounding
    self.capAmbient = capAmbient
    self.capabilitiesText = capabilitiesText
    self.noNewPrivileges = noNewPrivileges
    self.securebits = securebits
  }
}

/// One seccomp filter: a classic BPF program and how it was installed.
public struct SeccompFilterImage: Codable, Sendable, Equatable {
  /// SECCOMP_FILTER_FLAG_* the kernel reports for it (SECCOMP_FILTER_FLAG_LOG).
  public var flags: UInt64
  /// struct sock_filter instructions, 8 bytes each.
  public var program: Data

  /// The most instructions of one filter a restore installs: the program goes into the task's
  /// 32 KiB data area beside its header (the kernel takes up to BPF_MAXINSNS, 4096).
  public static let maxRestorableInstructions = 4000
  /// The most filters a restore installs for one process.
  public static let maxRestorableFilters = 64
  /// The flags a restore may install a filter with.
  public static let knownFlags: UInt64 = 2  // SECCOMP_FILTER_FLAG_LOG

  public init(flags: UInt64, program: Data) {
    self.flags = flags
    self.program = program
  }
}

/// A task's scheduling: nice value, policy and real-time priority (/proc/<pid>/stat).
/// prctl(2) settings of a process beyond the few TaskCore has its own fields for, each
/// restored with its PR_SET_ call: transparent huge pages off (PR_SET_THP_DISABLE), the timer
/// slack of its main thread in nanoseconds (PR_SET_TIMERSLACK), memory-deny-write-execute
/// (PR_SET_MDWE flags; 0 where the kernel has none), and KSM merging of all its memory
/// (PR_SET_MEMORY_MERGE; nil when off or where the kernel has no KSM).
public struct ProcessControls: Codable, Sendable, Equatable {
  public var thpDisabled: UInt64
  public var timerSlack: UInt64
  public var memoryDenyWriteExecute: UInt64
  public var memoryMerge: UInt64?

  public init(thpDisabled: UInt64, timerSlack: UInt64, memoryDenyWriteExecute: UInt64) {
    self.thpDisabled = thpDisabled
    self.timerSlack = timerSlack
    self.memoryDenyWriteExecute = memoryDenyWriteExecute
  }
}

public struct SchedulingImage: Codable, Sendable, Equatable {
  public var nice: Int32
  public var policy: UInt32
  public var realtimePriority: UInt32

  public init(nice: Int32, policy: UInt32, realtimePriority: UInt32) {
    self.nice = nice
    self.policy = policy
    self.realtimePriority = realtimePriority
  }
}
