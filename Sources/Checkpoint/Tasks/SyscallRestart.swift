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

  /// Whether the task resumes by issuing its interrupted system call again.
  public static func reissues(_ dumped: GeneralRegisters) -> Bool {
    let result = Int64(bitPattern: dumped.rax)
    return Int64(bitPattern: dumped.origRax) >= 0
      && [eRestartSys, eRestartNoIntr, eRestartNoHand, eRestartRestartBlock].contains(result)
  }

  /// The registers to resume with. Restartable calls run again (rip back over the 2-byte
  /// `syscall`, rax = the call number). ERESTART_RESTARTBLOCK cannot use restart_syscall in
  /// a restored task (it has no restart block), so the original call is issued again —
  /// nanosleep and relative clock_nanosleep with the remaining time the kernel left in
  /// `rem`, so the total sleep stays exact; others with their original arguments (poll or
  /// futex with a timeout may oversleep, which POSIX allows) — never an EINTR the program
  /// would not have seen. orig_rax = -1 keeps the kernel from restarting anything itself.
  public static func resumeRegisters(_ dumped: GeneralRegisters) -> GeneralRegisters {
    var regs = dumped
    let result = Int64(bitPattern: dumped.rax)
    let call = Int64(bitPattern: dumped.origRax)
    if call >= 0 {
      switch result {
      case eRestartSys, eRestartNoIntr, eRestartNoHand:
        regs.rax = dumped.origRax
        regs.rip = dumped.rip &- 2
      case eRestartRestartBlock:
        regs.rax = dumped.origRax
        regs.rip = dumped.rip &- 2
        if call == Int64(SyscallNumber.nanosleep) && dumped.rsi != 0 {
          regs.rdi = dumped.rsi
        } else if call == Int64(SyscallNumber.clockNanosleep) && dumped.rsi & timerAbstime == 0 && dumped.r10 != 0 {
          regs.rdx = dumped.r10
        }
      default:
        break
      }
    }
    regs.origRax = UInt64.max
    return regs
  }
}
