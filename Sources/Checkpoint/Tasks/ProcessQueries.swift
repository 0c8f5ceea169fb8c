import Bundle
import Foundation
import Glibc
import Linux

// What ``TaskCapture/core(session:vmas:log:)`` asks of a process in its one batch of remote
// calls, in groups: each adds its calls (out-parameters in slots of the scratch area) and
// then reads their results, as ``ThreadQueries`` does for a thread.

/// The scratch area of a batch, handed out in slots for out-parameters.
struct ScratchSlots {
  private var next: UInt64

  init(at base: UInt64) { next = base }

  mutating func take(_ bytes: UInt64) -> UInt64 {
    defer { next += bytes }
    return next
  }
}

extension RemoteSession.BatchResult {
  /// The result of `call`, an error naming `what` and the task if it failed.
  func checked(_ call: Int, _ what: String, task pid: Int32) throws -> Int64 {
    let value = results[call]
    guard value >= 0 || value < -4095 else {
      throw CKError(.failed, "task \(pid): \(what): \(String(cString: strerror(Int32(-value))))")
    }
    return value
  }
}

/// The actions of the signals a process catches or ignores (a default action with flags of
/// its own is not worth a remote call per signal).
struct SignalActionQueries {
  private var calls: [(signal: Int32, call: Int, at: UInt64)] = []

  init(handled: UInt64, adding batch: inout SyscallBatch, slots: inout ScratchSlots) {
    for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP && handled & (1 << UInt64(signal - 1)) != 0 {
      // rt_sigaction(sig, NULL, &old, sizeof(sigset_t)) fills struct kernel_sigaction.
      let at = slots.take(32)
      calls.append((Int32(signal), batch.add(.rtSigaction(Int32(signal), action: 0, old: at)), at))
    }
  }

  func read(_ ran: RemoteSession.BatchResult) -> [SignalAction] {
    calls.compactMap { signal, call, at in
      guard ran.results[call] == 0 else { return nil }
      let words = ran.words(at: at, count: 4)
      guard words[0] != 0 || words[1] != 0 || words[3] != 0 else { return nil }
      return SignalAction(signal: signal, handler: words[0], flags: words[1], restorer: words[2], mask: words[3])
    }
  }
}

/// The interval timers (getitimer) and the POSIX timers /proc lists (timer_gettime).
struct TimerQueries {
  private let intervalCalls: [(which: Int32, call: Int, at: UInt64)]
  private let posixCalls: [(timer: PosixTimerInfo, call: Int, at: UInt64)]

  init(posix timers: [PosixTimerInfo], adding batch: inout SyscallBatch, slots: inout ScratchSlots) {
    intervalCalls = (0...2).map { which in
      let at = slots.take(32)
      return (Int32(which), batch.add(.getitimer(Int32(which), into: at)), at)
    }
    posixCalls = timers.map { timer in
      let at = slots.take(32)
      return (timer, batch.add(.timerGettime(timer.id, into: at)), at)
    }
  }

  func intervalTimers(_ ran: RemoteSession.BatchResult, task pid: Int32) throws -> [IntervalTimer] {
    var timers: [IntervalTimer] = []
    for (which, call, at) in intervalCalls {
      _ = try ran.checked(call, "getitimer(\(which))", task: pid)
      let words = ran.words(at: at, count: 4)
      let interval = Int64(bitPattern: words[0]) * 1_000_000 + Int64(bitPattern: words[1])
      let value = Int64(bitPattern: words[2]) * 1_000_000 + Int64(bitPattern: words[3])
      if interval != 0 || value != 0 {
        timers.append(IntervalTimer(which: which, intervalMicroseconds: interval, valueMicroseconds: value))
      }
    }
    return timers
  }

  /// `innerTids`: host tid -> tid in the container (/proc names a SIGEV_THREAD_ID target by
  /// its host tid; the image keeps the inner one).
  func posixTimers(_ ran: RemoteSession.BatchResult, task pid: Int32, innerTids: [Int32: Int32]) throws
    -> [PosixTimerImage]
  {
    try posixCalls.map { timer, call, at in
      _ = try ran.checked(call, "timer_gettime(\(timer.id))", task: pid)
      let words = ran.words(at: at, count: 4).map { Int64(bitPattern: $0) }
      let notify: Int32 =
        switch timer.notify {
        case .none: 1
        case .signal: timer.targetIsThread ? 4 : 0
        case .thread: 2
        }
      guard notify != 2 else {
        throw CKError(
          .failed, "task \(pid): POSIX timer \(timer.id) notifies by SIGEV_THREAD, which ckcont cannot checkpoint yet")
      }
      return PosixTimerImage(
        id: timer.id, clockID: timer.clockID, notify: notify, signal: timer.signal, sigevValue: timer.sigevValue,
        targetThread: timer.targetIsThread ? innerTids[timer.target] ?? timer.target : nil,
        intervalNanoseconds: words[0] * 1_000_000_000 + words[1], valueNanoseconds: words[2] * 1_000_000_000 + words[3])
    }
  }
}

/// brk, personality and the prctl state of a process.
struct ProcessControlQueries {
  struct Answers {
    var brk: UInt64
    var personality: UInt64
    var parentDeathSignal: Int32
    var dumpable: Int32
    var childSubreaper: Bool
    var securebits: UInt32
    var controls: ProcessControls
  }

  private let brk, personality, parentDeathSignal, dumpable, childSubreaper, securebits: Int
  private let thpDisabled, timerSlack, memoryDenyWriteExecute, memoryMerge: Int
  private let parentDeathSignalAt, childSubreaperAt: UInt64

  init(adding batch: inout SyscallBatch, slots: inout ScratchSlots) {
    brk = batch.add(.brk(0))
    personality = batch.add(.personality(0xffff_ffff))
    parentDeathSignalAt = slots.take(8)
    parentDeathSignal = batch.add(.prctl(.getParentDeathSignal(into: parentDeathSignalAt)))
    dumpable = batch.add(.prctl(.getDumpable))
    childSubreaperAt = slots.take(8)
    childSubreaper = batch.add(.prctl(.getChildSubreaper(into: childSubreaperAt)))
    securebits = batch.add(.prctl(.getSecurebits))
    thpDisabled = batch.add(.prctl(.getTHPDisable))
    timerSlack = batch.add(.prctl(.getTimerSlack))
    memoryDenyWriteExecute = batch.add(.prctl(.getMDWE))  // EINVAL before Linux 6.3
    memoryMerge = batch.add(.prctl(.getMemoryMerge))  // EINVAL without KSM
  }

  func read(_ ran: RemoteSession.BatchResult, task pid: Int32) throws -> Answers {
    func checked(_ call: Int, _ what: String) throws -> Int64 { try ran.checked(call, what, task: pid) }
    _ = try checked(parentDeathSignal, "PR_GET_PDEATHSIG")
    _ = try checked(childSubreaper, "PR_GET_CHILD_SUBREAPER")
    var controls = ProcessControls(
      thpDisabled: UInt64(try checked(thpDisabled, "PR_GET_THP_DISABLE")),
      timerSlack: UInt64(try checked(timerSlack, "PR_GET_TIMERSLACK")),
      memoryDenyWriteExecute: UInt64(max(0, ran.results[memoryDenyWriteExecute])))
    if ran.results[memoryMerge] > 0 { controls.memoryMerge = UInt64(ran.results[memoryMerge]) }
    return Answers(
      brk: UInt64(bitPattern: try checked(brk, "brk(0)")), personality: UInt64(try checked(personality, "personality")),
      parentDeathSignal: Int32(truncatingIfNeeded: ran.words(at: parentDeathSignalAt, count: 1)[0]),
      dumpable: Int32(try checked(dumpable, "PR_GET_DUMPABLE")),
      childSubreaper: Int32(truncatingIfNeeded: ran.words(at: childSubreaperAt, count: 1)[0]) != 0,
      securebits: UInt32(truncatingIfNeeded: try checked(securebits, "PR_GET_SECUREBITS")), controls: controls)
  }
}

/// What a process sees of its namespaces: UTS names, how many SysV objects its IPC
/// namespace holds, whether loopback is up in its network namespace.
struct NamespaceQueries {
  private let uname, shm, sem, msg, loopback: Int
  private let unameAt, ipcAt, loopbackAt: UInt64

  init(task pid: Int32, adding batch: inout SyscallBatch, slots: inout ScratchSlots) throws {
    unameAt = slots.take(392)
    uname = batch.add(.uname(into: unameAt))
    ipcAt = slots.take(128)
    shm = batch.add(.shmctl(0, SHM_INFO, ipcAt))
    sem = batch.add(.semctl(0, 0, SEM_INFO, ipcAt + 48))
    msg = batch.add(.msgctl(0, MSG_INFO, ipcAt + 96))
    // SIOCGIFFLAGS on "lo" through a socket of its own (struct ifreq: the name, then the
    // flags at byte 16).
    loopbackAt = slots.take(40)
    let probe = batch.add(.socket(family: AF_INET, type: Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)))
    loopback = batch.add(.ioctl(.result(probe), .getInterfaceFlags, loopbackAt))
    batch.add(.close(.result(probe)))
    try [UInt8]([0x6c, 0x6f, 0]).withUnsafeBytes { try ProcessMemory.write(pid: pid, bytes: $0, at: loopbackAt) }
  }

  func read(_ ran: RemoteSession.BatchResult, task pid: Int32) throws -> NamespaceFacts {
    _ = try ran.checked(uname, "uname", task: pid)
    // struct utsname: six fields of 65 bytes; nodename is the second, domainname the sixth.
    let utsBytes = ran.words(at: unameAt, count: 49).withUnsafeBytes { Array($0) }
    func utsField(_ index: Int) -> String {
      String(decoding: utsBytes[index * 65..<(index + 1) * 65].prefix { $0 != 0 }, as: UTF8.self)
    }
    let ipcWords = ran.words(at: ipcAt, count: 16)
    func int32(_ byteOffset: Int) -> Int32 {
      Int32(truncatingIfNeeded: ipcWords[byteOffset / 8] >> UInt64(byteOffset % 8 * 8))
    }
    // shm_info.used_ids, seminfo.semusz (sets in use), msginfo.msgpool (queues in use).
    let sysvObjects = (
      shm: ran.results[shm] >= 0 ? Int(int32(0)) : 0, sem: ran.results[sem] >= 0 ? Int(int32(48 + 28)) : 0,
      msg: ran.results[msg] >= 0 ? Int(int32(96)) : 0
    )
    let loopbackUp =
      ran.results[loopback] == 0 ? ran.words(at: loopbackAt + 16, count: 1)[0] & UInt64(IFF_UP) != 0 : nil
    return NamespaceFacts(
      uts: (hostname: utsField(1), domainname: utsField(5)), sysvObjects: sysvObjects, loopbackUp: loopbackUp)
  }
}

/// The resource limits, asked of the process itself: prlimit64 on a task of another uid
/// needs CAP_SYS_RESOURCE, and /proc/<pid>/limits is text to parse.
struct LimitQueries {
  private let calls: [(resource: Int32, call: Int, at: UInt64)]

  init(adding batch: inout SyscallBatch, slots: inout ScratchSlots) {
    calls = (0..<16).map { resource in
      let at = slots.take(16)
      return (Int32(resource), batch.add(.prlimit64(Int32(resource), new: 0, old: at)), at)
    }
  }

  func read(_ ran: RemoteSession.BatchResult, task pid: Int32) throws -> [ResourceLimitImage] {
    try calls.map { resource, call, at in
      _ = try ran.checked(call, "prlimit64(\(resource))", task: pid)
      let words = ran.words(at: at, count: 2)
      return ResourceLimitImage(resource: resource, soft: words[0], hard: words[1])
    }
  }
}

/// The per-thread state only a thread itself can ask for: sigaltstack and the
/// clear_child_tid address (PR_GET_TID_ADDRESS).
struct ThreadQueries {
  let at: UInt64
  let altStackCall: Int
  let tidAddressCall: Int

  /// Adds the calls to `batch`, with 32 bytes of out-parameters at `at`.
  init(adding batch: inout SyscallBatch, at: UInt64) {
    self.at = at
    altStackCall = batch.add(.sigaltstack(0, old: at))
    tidAddressCall = batch.add(.prctl(.getTidAddress(into: at + 24)))
  }

  func read(_ ran: RemoteSession.BatchResult, task: Int32) throws -> (altStack: AltStack, clearTid: UInt64) {
    for (call, what) in [(altStackCall, "sigaltstack"), (tidAddressCall, "PR_GET_TID_ADDRESS")]
    where ran.results[call] < 0 {
      throw CKError(.failed, "task \(task): \(what): \(String(cString: strerror(Int32(-ran.results[call]))))")
    }
    let words = ran.words(at: at, count: 4)
    return (AltStack(base: words[0], flags: Int32(truncatingIfNeeded: words[1]), size: words[2]), words[3])
  }
}
