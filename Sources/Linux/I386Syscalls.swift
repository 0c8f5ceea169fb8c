/// System call numbers of the i386 ABI (arch/x86/entry/syscalls/syscall_32.tbl), for remote
/// calls through `int $0x80` in a 32-bit task and for reading what a 32-bit task sleeps in.
public enum I386SyscallNumber {
  public static let restartSyscall = 0, pause = 29, munmap = 91, mprotect = 125, nanosleep = 162
  public static let rtSigaction = 174, mmap2 = 192, clockNanosleep = 267, setRobustList = 311
  public static let clockNanosleepTime64 = 407

  /// The i386 number of an x86_64 call ckcont makes through the single-step gadget of a
  /// 32-bit task (mapping and unmapping its scratch area, parking it); nil for one it does
  /// not make there.
  public static func forNative(_ number: Int) -> Int? {
    switch number {
    case SyscallNumber.mmap: mmap2
    case SyscallNumber.munmap: munmap
    case SyscallNumber.mprotect: mprotect
    case SyscallNumber.pause: pause
    default: nil
    }
  }
}
