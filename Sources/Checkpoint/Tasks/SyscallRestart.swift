import Bundle
import Linux

/// How a task that was stopped inside a system call resumes it after restore (DESIGN.md 3,
/// "Syscall restart"). A pure function of the dumped registers.
public enum SyscallRestart {
  static let eRestartSys: Int64 = -512
  static let eRestartNoIntr: Int64 = -513
  static let eRestartNoHand: Int64 = -514
  static let eRestartRestartBlock: Int64 = -516
  static let timerAbstime: UInt64 = 1

  /// The calls that leave a restart block for restart_syscall (ERESTART_RESTARTBLOCK).
  /// (SyscallNumber here and below: numbers read in dumped registers, not calls made.)
  static let restartedThroughBlock: Set<Int> = [
    SyscallNumber.nanosleep, SyscallNumber.clockNanosleep, SyscallNumber.poll, SyscallNumber.futex,
  ]

  /// A thread caught in restart_syscall (orig_rax 219): the kernel restarted its sleep after
  /// an earlier stop (a freeze and thaw, SIGSTOP and SIGCONT, an earlier dump that let it
  /// run), and its restart block, which a restored task cannot have, says what it was. The
  /// registers still hold the original call's arguments and rip follows its `syscall`; the
  /// call is the one the instruction before loads into eax (`mov $nr, %eax; syscall`, as
  /// glibc's and Go's wrappers do), read through `code` (7 bytes ending at rip). Returns the
  /// registers as if the original call had been interrupted (the restore then rebuilds its
  /// restart block from the time left that the kernel writes into `rem` at each
  /// interruption), or throws a refusal when the call cannot be known.
  public static func recoverRestartedCall(_ dumped: GeneralRegisters, code: [UInt8], abi: TaskABI? = nil) throws
    -> GeneralRegisters
  {
    if abi == .i386 {
      // An i386 task enters the kernel through __kernel_vsyscall of its vDSO, with the call
      // number loaded by its caller: nothing at rip tells which call was restarted.
      guard Int64(bitPattern: dumped.origRax) == Int64(I386SyscallNumber.restartSyscall),
        Int64(bitPattern: dumped.rax) == eRestartRestartBlock
      else { return dumped }
      throw CKError(
        .failed,
        "is an i386 task that sleeps in a system call the kernel restarted after an earlier stop (restart_syscall), which ckcont cannot resume",
        hint: "dump again once the call has returned, or do not stop the container between its sleep and the dump")
    }
    guard Int64(bitPattern: dumped.origRax) == Int64(SyscallNumber.restartSyscall),
      Int64(bitPattern: dumped.rax) == eRestartRestartBlock
    else { return dumped }
    let movEax: UInt8 = 0xb8
    let syscallInstruction: [UInt8] = [0x0f, 0x05]
    guard code.count == 7, code[0] == movEax, Array(code[5...]) == syscallInstruction else {
      throw CKError(
        .failed,
        "sleeps in a system call the kernel restarted after an earlier stop (restart_syscall), loaded by code ckcont cannot read the call from",
        hint: "dump again once the call has returned, or do not stop the container between its sleep and the dump")
    }
    let number = code[1...4].reversed().reduce(0) { $0 << 8 | Int($1) }
    guard restartedThroughBlock.contains(number) else {
      throw CKError(
        .failed,
        "sleeps in system call \(number), restarted by the kernel after an earlier stop, which ckcont cannot resume",
        hint: "dump again once the call has returned")
    }
    var regs = dumped
    regs.origRax = UInt64(number)
    return regs
  }

  /// Whether the task resumes by issuing its interrupted system call again.
  public static func reissues(_ dumped: GeneralRegisters) -> Bool {
    let result = Int64(bitPattern: dumped.rax)
    return Int64(bitPattern: dumped.origRax) >= 0
      && [eRestartSys, eRestartNoIntr, eRestartNoHand, eRestartRestartBlock].contains(result)
  }

  /// The call that gives a restored thread the restart block its relative sleep had:
  /// nanosleep or relative clock_nanosleep interrupted with ERESTART_RESTARTBLOCK, whose
  /// time left the kernel wrote into `rem`. The restore runs it (rip back over the 2-byte
  /// `syscall` or `int $0x80`, `req` = `rem`) and interrupts it, so that the kernel records
  /// the expiry and `rem` in the thread's restart block exactly as at the dump; the thread
  /// then gets its dumped registers unchanged and the kernel itself turns the call into
  /// restart_syscall. The program's registers (its `req`) never change and the total sleep
  /// stays exact. Nil for every other state.
  public static func sleepRebuildingRestartBlock(_ dumped: GeneralRegisters, abi: TaskABI? = nil)
    -> GeneralRegisters?
  {
    guard Int64(bitPattern: dumped.rax) == eRestartRestartBlock else { return nil }
    let call = Int64(bitPattern: dumped.origRax)
    var regs = dumped
    regs.rax = dumped.origRax
    regs.rip = dumped.rip &- 2
    regs.origRax = UInt64.max
    if abi == .i386 {
      // i386 arguments: nanosleep ebx req, ecx rem; clock_nanosleep ebx clock, ecx flags,
      // edx req, esi rem.
      if call == Int64(I386SyscallNumber.nanosleep) && dumped.rcx != 0 {
        regs.rbx = dumped.rcx
      } else if call == Int64(I386SyscallNumber.clockNanosleep)
        || call == Int64(I386SyscallNumber.clockNanosleepTime64),
        dumped.rcx & timerAbstime == 0 && dumped.rsi != 0
      {
        regs.rdx = dumped.rsi
      } else {
        return nil
      }
    } else if call == Int64(SyscallNumber.nanosleep) && dumped.rsi != 0 {
      regs.rdi = dumped.rsi
    } else if call == Int64(SyscallNumber.clockNanosleep) && dumped.rsi & timerAbstime == 0 && dumped.r10 != 0 {
      regs.rdx = dumped.r10
    } else {
      return nil
    }
    return regs
  }

  /// The registers to resume with when no restart block is rebuilt. Restartable calls run
  /// again (rip back over the 2-byte `syscall` or `int $0x80`, rax = the call number).
  /// ERESTART_RESTARTBLOCK cannot use restart_syscall in a restored task without a restart
  /// block, so the original call is issued again with its original arguments (a poll or
  /// futex with a timeout, or a sleep without `rem`, may oversleep, which POSIX allows) —
  /// never an EINTR the program would not have seen. orig_rax = -1 keeps the kernel from
  /// restarting anything itself.
  public static func resumeRegisters(_ dumped: GeneralRegisters) -> GeneralRegisters {
    var regs = dumped
    if reissues(dumped) {
      regs.rax = dumped.origRax
      regs.rip = dumped.rip &- 2
    }
    regs.origRax = UInt64.max
    return regs
  }
}
