import CKShim
import Glibc

/// Runs system calls inside a stopped tracee: set its registers so that it executes a
/// `syscall` instruction, let it run to the next stop, read rax, and put the registers back
/// when done. Both dump and restore are sequences of these (DESIGN.md, "Remote syscalls").
public struct RemoteSyscall {
  /// How the tracee gets back to us after the `syscall` instruction.
  public enum Gadget: Sendable {
    /// `syscall` (0f 05) found in the tracee's own text, e.g. in [vdso]: single-step over it
    /// (the trap comes once the call has returned: one stop per call, where PTRACE_SYSCALL
    /// needs two). Writes nothing into the task (used to dump).
    case singleStep(address: UInt64)
    /// `syscall; int3`: run with PTRACE_CONT to the breakpoint (used to restore).
    case breakpoint(address: UInt64)
  }

  public let tracee: Tracee
  public var gadget: Gadget
  /// The registers the task had when we took it over; every call starts from a copy.
  public let saved: Registers
  /// How many calls ran (for -v logs and benchmarks).
  public internal(set) var count = 0

  /// The tracee runs i386 code: its single-step gadget is an `int $0x80` and calls made
  /// through it take i386 numbers and registers (``I386SyscallNumber/forNative(_:)``);
  /// batch code runs with the 64-bit code segment for the time it takes.
  public let i386: Bool

  public init(tracee: Tracee, gadget: Gadget, i386: Bool = false) throws(SyscallError) {
    self.tracee = tracee
    self.gadget = gadget
    self.i386 = i386
    self.saved = try tracee.registers()
  }

  /// The 64-bit user code segment (__USER_CS): batch code is x86-64 code, which an i386
  /// task runs when its cs says so (IA32 emulation keeps both segments in the GDT).
  public static let codeSegment64: UInt64 = 0x33

  /// Runs syscall `number` with up to six arguments (the raw layer under ``call(_:)``, which
  /// takes a typed ``RemoteCall``); returns the raw result (-errno on failure).
  @discardableResult
  public mutating func call(
    _ number: Int, _ a1: UInt64 = 0, _ a2: UInt64 = 0, _ a3: UInt64 = 0, _ a4: UInt64 = 0, _ a5: UInt64 = 0,
    _ a6: UInt64 = 0
  ) throws -> Int64 {
    var regs = saved
    regs.rax = UInt64(number)
    // -1: no syscall-restart processing when the tracee resumes from its current stop.
    regs.orig_rax = UInt64.max
    if i386 {
      guard let compat = I386SyscallNumber.forNative(number) else {
        throw CKError(.failed, "task \(tracee.tid): no i386 remote call for system call \(number)")
      }
      // mmap2 counts its offset in pages.
      let offsetArgument = compat == I386SyscallNumber.mmap2 ? a6 >> 12 : a6
      (regs.rax, regs.rbx, regs.rcx, regs.rdx, regs.rsi, regs.rdi, regs.rbp) =
        (UInt64(compat), a1, a2, a3, a4, a5, offsetArgument)
    } else {
      (regs.rdi, regs.rsi, regs.rdx, regs.r10, regs.r8, regs.r9) = (a1, a2, a3, a4, a5, a6)
    }
    switch gadget {
    case .singleStep(let address):
      regs.rip = address
      try tracee.setRegisters(regs)
      try tracee.singleStep()
      let status = try tracee.wait()
      guard case .stopped(let signal, _) = status, signal == SIGTRAP else {
        throw CKError(.failed, "task \(tracee.tid): remote syscall \(number) stopped unexpectedly: \(status)")
      }
    case .breakpoint(let address):
      regs.rip = address
      try tracee.setRegisters(regs)
      try tracee.resume()
      let status = try tracee.wait()
      guard case .stopped(let signal, _) = status, signal == SIGTRAP else {
        throw CKError(.failed, "task \(tracee.tid): remote syscall \(number) stopped unexpectedly: \(status)")
      }
    }
    count += 1
    var result = Int64(bitPattern: try tracee.registers().rax)
    // An i386 call returns 32 bits: an address above 2 GiB is no error.
    if i386 && !(-4095..<0).contains(result) { result &= 0xffff_ffff }
    if case .singleStep = gadget {
      // Back to the registers it had, out of the SIGTRAP stop: a tracer that dies now leaves
      // the task where they put it (a dump's park), not after a [vdso] `syscall`, and does
      // not hand it the SIGTRAP.
      try tracee.setRegisters(saved)
      try tracee.settleToEventStop()
    }
    return result
  }

  /// Puts back the registers the task had before the first call.
  public func restoreRegisters() throws(SyscallError) {
    try tracee.setRegisters(saved)
  }
}

/// x86_64 system call numbers ckcont injects.
public enum SyscallNumber {
  public static let write = 1, open = 2, close = 3, lseek = 8, mmap = 9, mprotect = 10, munmap = 11, brk = 12,
    madvise = 28, pause = 34
  public static let rtSigaction = 13, ioctl = 16, pread64 = 17, mremap = 25, shmat = 30, shmctl = 31, nanosleep = 35,
    getitimer = 36, setitimer = 38
  public static let socket = 41, connect = 42, recvmsg = 47, bind = 49, listen = 50, socketpair = 53, setsockopt = 54
  public static let wait4 = 61, uname = 63, semctl = 66, msgctl = 71, fcntl = 72, flock = 73, ftruncate = 77,
    chdir = 80, rmdir = 84, unlink = 87, umask = 95, fchmod = 91, fchown = 93, mknod = 133, setpgid = 109, setsid = 112,
    getgroups = 115, setgroups = 116
  public static let setresuid = 117, setresgid = 119, setfsuid = 122, setfsgid = 123, capset = 126
  public static let rtSigtimedwait = 128, rtSigqueueinfo = 129, sigaltstack = 131, personality = 135, setpriority = 141,
    schedSetscheduler = 144, prctl = 157, pivotRoot = 155, chroot = 161, mount = 165, umount2 = 166, sethostname = 170,
    setdomainname = 171
  public static let setTidAddress = 218, setRobustList = 273, mqOpen = 240, mqUnlink = 241, unshare = 272,
    epollCtl = 233, timerCreate = 222, inotifyAddWatch = 254, inotifyRmWatch = 255, openat = 257, timerSettime = 223,
    timerGettime = 224, clockGettime = 228, clockNanosleep = 230, exitGroup = 231, tgkill = 234, timerfdCreate = 283,
    timerfdSettime = 286,
    signalfd4 = 289, eventfd2 = 290, dup3 = 292, pipe2 = 293, accept4 = 288
  public static let preadv = 295, rtTgsigqueueinfo = 297, prlimit64 = 302, setns = 308, epollCreate1 = 291,
    inotifyInit1 = 294, seccomp = 317, memfdCreate = 319, userfaultfd = 323, mlock2 = 325, rseq = 334, pidfdOpen = 434,
    fanotifyInit = 300, fanotifyMark = 301
  public static let clone3 = 435, closeRange = 436, pidfdGetfd = 438, mseal = 462
  /// Not injected: the calls the kernel resumes through restart_syscall.
  public static let poll = 7, futex = 202, restartSyscall = 219
  /// arch_prctl: an i386 task's vDSO (ARCH_MAP_VDSO_32).
  public static let archPrctl = 158
}
