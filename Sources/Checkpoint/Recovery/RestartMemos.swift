import Bundle
import Foundation
import Glibc
import Linux

/// What ckcont remembers of the sleeps it interrupted in tasks it let run on (a dump with
/// --leave-running or --leave-frozen, a failed dump, a recovery): the kernel resumes such a
/// sleep as restart_syscall, whose restart block says which call it was but shows it to no
/// one, and an i386 task (or code that keeps the number in a register) does not say it
/// either. A later dump of the same task finds the call here: one small file per thread under
/// the journal directory, matched by the thread's start time and the registers the call left.
enum RestartMemos {
  /// ERESTART_RESTARTBLOCK: the result of a call the kernel resumes through its restart block.
  static let restartBlock: Int64 = -516

  struct Memo: Codable, Equatable {
    var tid: Int32
    var startTime: UInt64
    /// The interrupted call's number (orig_rax).
    var number: UInt64
    /// Where it returns to, and its argument registers of either ABI.
    var rip: UInt64
    var arguments: [UInt64]
  }

  static var directory: String { DumpJournal.directory + "/restarts" }

  /// Remembers thread `tid`'s call if the registers it is let go with leave it to the
  /// kernel's restart block. Best effort: without the memo a later dump refuses by name.
  static func record(tid: Int32, registers: Registers) {
    guard Int64(bitPattern: registers.rax) == restartBlock, Int64(bitPattern: registers.orig_rax) >= 0,
      let startTime = ProcStat.read(pid: tid)?.startTime,
      let data = try? JSONEncoder().encode(
        Memo(
          tid: tid, startTime: startTime, number: registers.orig_rax, rip: registers.rip,
          arguments: arguments(of: GeneralRegisters(registers))))
    else { return }
    guard (try? DumpJournal.makeDirectory()) != nil, mkdir(directory, 0o700) == 0 || errno == EEXIST else { return }
    try? data.write(to: URL(fileURLWithPath: "\(directory)/\(tid).json"))
  }

  /// The call thread `tid`, now in restart_syscall with `registers`, was in when ckcont let
  /// it go; nil when ckcont did not (or another task has the tid now).
  static func recall(tid: Int32, registers: GeneralRegisters) -> UInt64? {
    guard let bytes = try? PseudoFile.readBytes("\(directory)/\(tid).json"),
      let memo = try? JSONDecoder().decode(Memo.self, from: Data(bytes)),
      memo.tid == tid, memo.startTime == ProcStat.read(pid: tid)?.startTime, memo.rip == registers.rip,
      memo.arguments == arguments(of: registers)
    else { return nil }
    return memo.number
  }

  /// Drops the memos of threads that have exited (or whose tid another task has now).
  static func prune() {
    guard let names = try? PseudoFile.list(directory) else { return }
    for name in names where name.hasSuffix(".json") {
      let path = "\(directory)/\(name)"
      guard let tid = Int32(name.dropLast(5)),
        let bytes = try? PseudoFile.readBytes(path),
        let memo = try? JSONDecoder().decode(Memo.self, from: Data(bytes)),
        memo.startTime == ProcStat.read(pid: tid)?.startTime
      else {
        unlink(path)
        continue
      }
    }
  }

  /// The registers a call takes its arguments in: rdi, rsi, rdx, r10 (x86_64) and rbx, rcx
  /// (with rdx and rsi: i386).
  private static func arguments(of registers: GeneralRegisters) -> [UInt64] {
    [registers.rdi, registers.rsi, registers.rdx, registers.r10, registers.rbx, registers.rcx]
  }
}
