import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// Captures what a process is — threads, registers, signal state, credentials, limits — from
/// /proc, ptrace, and remote system calls run inside the (stopped) process itself.
struct TaskCapture {
  let pid: Int32
  /// The thread ids, the main thread (tid == pid) first: restore creates the others from it.
  let threads: [Int32]

  init(pid: Int32, threads: [Int32]) {
    self.pid = pid
    self.threads = [pid] + threads.filter { $0 != pid }
  }

  /// The process's place in the tree, with ids as its own pid namespace sees them.
  func entry(cgroup: String) throws -> TaskEntryImage {
    let status = try ProcStatus.read(pid: pid)
    let innerThreads = try threads.map { tid -> Int32 in
      let threadStatus = try ProcStatus.parse(PseudoFile.read("/proc/\(pid)/task/\(tid)/status"))
      return threadStatus.nsPid.last ?? tid
    }
    return TaskEntryImage(
      pid: status.nsPid.last ?? pid, namespacePids: status.nsPid, ppid: status.ppid,
      pgid: status.nsPgid.last ?? 0, sid: status.nsSid.last ?? 0, threads: innerThreads, cgroup: cgroup,
      comm: status.name)
  }

  /// The core image, and brk (asked of the task, as /proc does not show it). Remote syscalls
  /// run in the main thread; its registers and signal mask are put back before returning.
  func core(session: SeizedContainer, log: (String) -> Void) throws -> (core: TaskCore, brk: UInt64) {
    let status = try ProcStatus.read(pid: pid)
    let inject = try RemoteSession(tracee: Tracee(tid: pid))
    defer { inject.finish() }
    let scratch = inject.scratch

    var actions: [SignalAction] = []
    // Only caught or ignored signals have an action to save (a default action with flags of
    // its own is not worth 60 remote calls per process).
    let handled = status.sigCgt | status.sigIgn
    for signal in 1...64 where signal != SIGKILL && signal != SIGSTOP && handled & (1 << UInt64(signal - 1)) != 0 {
      // rt_sigaction(sig, NULL, &old, sizeof(sigset_t)) fills struct kernel_sigaction.
      guard try inject.remote.call(SyscallNumber.rtSigaction, UInt64(signal), 0, scratch, 8) == 0 else { continue }
      let words = try inject.readWords(4)
      if words[0] != 0 || words[1] != 0 || words[3] != 0 {
        actions.append(
          SignalAction(signal: Int32(signal), handler: words[0], flags: words[1], restorer: words[2], mask: words[3]))
      }
    }
    let brk = UInt64(bitPattern: try inject.remote.checked("brk(0)", SyscallNumber.brk, 0))
    var itimers: [IntervalTimer] = []
    for which in 0...2 {
      try inject.remote.checked("getitimer(\(which))", SyscallNumber.getitimer, UInt64(which), scratch)
      let words = try inject.readWords(4)
      let interval = Int64(bitPattern: words[0]) * 1_000_000 + Int64(bitPattern: words[1])
      let value = Int64(bitPattern: words[2]) * 1_000_000 + Int64(bitPattern: words[3])
      if interval != 0 || value != 0 {
        itimers.append(IntervalTimer(which: Int32(which), intervalMicroseconds: interval, valueMicroseconds: value))
      }
    }
    let personality = try inject.remote.checked("personality", SyscallNumber.personality, 0xffff_ffff)
    try inject.remote.checked("PR_GET_PDEATHSIG", SyscallNumber.prctl, 2, scratch)
    let pdeathsig = Int32(truncatingIfNeeded: try inject.readWords(1)[0])
    let dumpable = try inject.remote.checked("PR_GET_DUMPABLE", SyscallNumber.prctl, 3)
    try inject.remote.checked("PR_GET_CHILD_SUBREAPER", SyscallNumber.prctl, 37, scratch)
    let subreaper = Int32(truncatingIfNeeded: try inject.readWords(1)[0]) != 0
    let securebits = try inject.remote.checked("PR_GET_SECUREBITS", SyscallNumber.prctl, 27)

    var threadCores: [ThreadCore] = []
    for tid in threads {
      threadCores.append(try threadCore(tid: tid, session: session, inject: inject))
    }
    let credentials = Credentials(
      uids: [status.uid.real, status.uid.effective, status.uid.saved, status.uid.filesystem],
      gids: [status.gid.real, status.gid.effective, status.gid.saved, status.gid.filesystem],
      groups: status.groups, capInheritable: status.capInh, capPermitted: status.capPrm, capEffective: status.capEff,
      capBounding: status.capBnd, capAmbient: status.capAmb, capabilitiesText: Capabilities.of(pid: pid) ?? "",
      noNewPrivileges: status.noNewPrivs, securebits: UInt32(truncatingIfNeeded: securebits))
    let limits = try ProcLimits.read(pid: pid).map {
      ResourceLimitImage(resource: $0.resource.rawValue, soft: $0.soft, hard: $0.hard)
    }
    let core = TaskCore(
      threads: threadCores, signalActions: actions, sharedPendingSignals: try Tracee(tid: pid).queuedSignals(shared: true).map { Data($0) }, itimers: itimers,
      personality: UInt64(personality), resourceLimits: limits, umask: status.umask,
      cwd: try readLink("/proc/\(pid)/cwd"), root: try readLink("/proc/\(pid)/root"), comm: status.name,
      credentials: credentials, parentDeathSignal: pdeathsig, dumpable: Int32(dumpable), childSubreaper: subreaper)
    log("task \(pid): \(actions.count) signal actions, \(itimers.count) itimers, \(inject.remote.count) remote syscalls")
    return (core, brk)
  }

  /// One thread's registers, xstate, mask, pending signals, rseq, altstack, clear_child_tid.
  private func threadCore(tid: Int32, session: SeizedContainer, inject: RemoteSession) throws -> ThreadCore {
    let tracee = Tracee(tid: tid)
    guard let regs = session.registers(of: tid), let mask = session.signalMask(of: tid) else {
      throw CKError(.failed, "thread \(tid) was not seized")
    }
    let xstate = try tracee.extendedState()
    let status = try ProcStatus.parse(PseudoFile.read("/proc/\(pid)/task/\(tid)/status"))
    let rseqConfig = try tracee.rseqConfiguration()
    var altStack: AltStack?
    var clearTid: UInt64 = 0
    do {
      // sigaltstack and the clear_child_tid address are per thread and only reachable from
      // inside the thread itself.
      let own = tid == pid ? inject : try RemoteSession(tracee: tracee)
      defer { if tid != pid { own.finish() } }
      try own.remote.checked("sigaltstack", SyscallNumber.sigaltstack, 0, own.scratch)
      let words = try own.readWords(3)
      altStack = AltStack(base: words[0], flags: Int32(truncatingIfNeeded: words[1]), size: words[2])
      try own.remote.checked("PR_GET_TID_ADDRESS", SyscallNumber.prctl, 40, own.scratch)
      clearTid = try own.readWords(1)[0]
    }
    return ThreadCore(
      tid: status.nsPid.last ?? tid, registers: GeneralRegisters(regs), xstate: Data(xstate),
      xstateFeatures: XSave.features(of: xstate), blockedSignals: mask,
      pendingSignals: try tracee.queuedSignals(shared: false).map { Data($0) },
      rseq: rseqConfig.rseq_abi_pointer == 0
        ? nil
        : RseqRegistration(
          address: rseqConfig.rseq_abi_pointer, size: rseqConfig.rseq_abi_size, signature: rseqConfig.signature),
      altStack: altStack, clearChildTid: clearTid)
  }
}

/// readlink(2) of a /proc link.
func readLink(_ path: String) throws -> String {
  var buffer = [CChar](repeating: 0, count: 4097)
  let n = try syscallChecked("readlink", path) {
    buffer.withUnsafeMutableBufferPointer { readlink(path, $0.baseAddress!, 4096) }
  }
  return String(decoding: buffer[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Remote syscalls in a task being dumped: single-stepping a `syscall` instruction of its
/// own [vdso], so nothing is written into its text, and with a scratch page it maps for
/// results and unmaps again. All signals stay blocked meanwhile.
final class RemoteSession {
  let tracee: Tracee
  var remote: RemoteSyscall
  let scratch: UInt64
  let originalMask: UInt64
  private var finished = false

  init(tracee: Tracee) throws {
    self.tracee = tracee
    originalMask = try tracee.signalMask()
    guard let gadget = try Self.vdsoSyscall(pid: tracee.tid) else {
      throw CKError(.failed, "task \(tracee.tid) has no [vdso] with a syscall instruction to run remote calls")
    }
    try tracee.setSignalMask(~0)
    remote = try RemoteSyscall(tracee: tracee, gadget: .singleStep(address: gadget))
    let page = try? remote.call(
      SyscallNumber.mmap, 0, 4096, UInt64(PROT_READ | PROT_WRITE), UInt64(MAP_PRIVATE | MAP_ANONYMOUS), UInt64.max, 0)
    guard let page, page > 0 else {
      try? remote.restoreRegisters()
      try? tracee.setSignalMask(originalMask)
      throw CKError(.failed, "task \(tracee.tid): remote mmap of a scratch page failed (\(page.map(String.init) ?? "stopped"))")
    }
    scratch = UInt64(page)
  }

  /// Reads `count` 64-bit words from the scratch page.
  func readWords(_ count: Int) throws -> [UInt64] {
    var words = [UInt64](repeating: 0, count: count)
    try words.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(
        pid: tracee.tid, ranges: [AddressRange(start: scratch, end: scratch + UInt64(count * 8))], into: buffer)
    }
    return words
  }

  /// Unmaps the scratch page and puts registers and signal mask back.
  func finish() {
    guard !finished else { return }
    finished = true
    _ = try? remote.call(SyscallNumber.munmap, scratch, 4096)
    try? remote.restoreRegisters()
    try? tracee.setSignalMask(originalMask)
  }

  /// The address of a `syscall` instruction (0f 05) in the task's [vdso].
  static func vdsoSyscall(pid: Int32) throws -> UInt64? {
    guard let vdso = try ProcMaps.read(pid: pid).first(where: { $0.kind == .vdso }) else { return nil }
    var bytes = [UInt8](repeating: 0, count: Int(vdso.size))
    try bytes.withUnsafeMutableBytes { buffer in
      try ProcessMemory.read(pid: pid, ranges: [AddressRange(start: vdso.start, end: vdso.end)], into: buffer)
    }
    for index in 0..<(bytes.count - 1) where bytes[index] == 0x0f && bytes[index + 1] == 0x05 {
      return vdso.start + UInt64(index)
    }
    return nil
  }
}

/// Facts about an XSAVE area.
enum XSave {
  /// XSTATE_BV: the state components present in the area (its header is at offset 512).
  static func features(of area: [UInt8]) -> UInt64 {
    guard area.count >= 520 else { return 0 }
    return area[512..<520].reversed().reduce(0) { $0 << 8 | UInt64($1) }
  }
}

extension GeneralRegisters {
  init(_ r: Registers) {
    self.init(
      r15: r.r15, r14: r.r14, r13: r.r13, r12: r.r12, rbp: r.rbp, rbx: r.rbx, r11: r.r11, r10: r.r10, r9: r.r9,
      r8: r.r8, rax: r.rax, rcx: r.rcx, rdx: r.rdx, rsi: r.rsi, rdi: r.rdi, origRax: r.orig_rax, rip: r.rip, cs: r.cs,
      eflags: r.eflags, rsp: r.rsp, ss: r.ss, fsBase: r.fs_base, gsBase: r.gs_base, ds: r.ds, es: r.es, fs: r.fs,
      gs: r.gs)
  }

  var raw: Registers {
    Registers(
      r15: r15, r14: r14, r13: r13, r12: r12, rbp: rbp, rbx: rbx, r11: r11, r10: r10, r9: r9, r8: r8, rax: rax,
      rcx: rcx, rdx: rdx, rsi: rsi, rdi: rdi, orig_rax: origRax, rip: rip, cs: cs, eflags: eflags, rsp: rsp, ss: ss,
      fs_base: fsBase, gs_base: gsBase, ds: ds, es: es, fs: fs, gs: gs)
  }
}
