import CKShim
import Glibc
import SystemPackage

/// The x86_64 general registers of a thread (`struct user_regs_struct`).
public typealias Registers = ck_user_regs

/// One thread under ptrace, stopped. ptrace belongs to the tracing *thread*: every call on a
/// tracee must come from the thread that attached it, so engine code using it is synchronous.
public struct Tracee: Sendable, Hashable {
  public let tid: Int32

  public init(tid: Int32) { self.tid = tid }

  /// PTRACE_GETREGS.
  public func registers() throws(SyscallError) -> Registers {
    var regs = Registers()
    try syscallChecked("ptrace", "PTRACE_GETREGS, \(tid)") {
      withUnsafeMutablePointer(to: &regs) { ck_ptrace(Int32(CK_PTRACE_GETREGS), tid, 0, UInt(bitPattern: $0)) }
    }
    return regs
  }

  /// PTRACE_SETREGS.
  public func setRegisters(_ regs: Registers) throws(SyscallError) {
    var copy = regs
    try syscallChecked("ptrace", "PTRACE_SETREGS, \(tid)") {
      withUnsafeMutablePointer(to: &copy) { ck_ptrace(Int32(CK_PTRACE_SETREGS), tid, 0, UInt(bitPattern: $0)) }
    }
  }

  /// The whole XSAVE area (PTRACE_GETREGSET NT_X86_XSTATE): x87, SSE, AVX, AVX-512 state.
  public func extendedState() throws(SyscallError) -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: 16384)
    var length = buffer.count
    try syscallChecked("ptrace", "PTRACE_GETREGSET NT_X86_XSTATE, \(tid)") {
      buffer.withUnsafeMutableBytes {
        ck_ptrace_regset(Int32(CK_PTRACE_GETREGSET), tid, Int32(CK_NT_X86_XSTATE), $0.baseAddress, &length)
      }
    }
    return Array(buffer.prefix(length))
  }

  /// PTRACE_SETREGSET NT_X86_XSTATE.
  public func setExtendedState(_ state: [UInt8]) throws(SyscallError) {
    var copy = state
    var length = copy.count
    try syscallChecked("ptrace", "PTRACE_SETREGSET NT_X86_XSTATE, \(tid)") {
      copy.withUnsafeMutableBytes {
        ck_ptrace_regset(Int32(CK_PTRACE_SETREGSET), tid, Int32(CK_NT_X86_XSTATE), $0.baseAddress, &length)
      }
    }
  }

  /// PTRACE_GET_THREAD_AREA: an i386 thread's GDT TLS entry `entry` (12-14).
  public func threadArea(_ entry: UInt32) throws(SyscallError) -> ck_user_desc {
    var desc = ck_user_desc(entry_number: entry, base_addr: 0, limit: 0, flags: 0)
    try syscallChecked("ptrace", "PTRACE_GET_THREAD_AREA \(entry), \(tid)") {
      withUnsafeMutablePointer(to: &desc) {
        ck_ptrace(Int32(CK_PTRACE_GET_THREAD_AREA), tid, UInt(entry), UInt(bitPattern: $0))
      }
    }
    return desc
  }

  /// PTRACE_SET_THREAD_AREA: sets GDT TLS entry `desc.entry_number` of the thread (which
  /// may still run 64-bit code).
  public func setThreadArea(_ desc: ck_user_desc) throws(SyscallError) {
    var copy = desc
    try syscallChecked("ptrace", "PTRACE_SET_THREAD_AREA \(desc.entry_number), \(tid)") {
      withUnsafeMutablePointer(to: &copy) {
        ck_ptrace(Int32(CK_PTRACE_SET_THREAD_AREA), tid, UInt(desc.entry_number), UInt(bitPattern: $0))
      }
    }
  }

  /// PTRACE_GETSIGMASK: the blocked-signal mask (bit n-1 for signal n).
  public func signalMask() throws(SyscallError) -> UInt64 {
    var mask: UInt64 = 0
    try syscallChecked("ptrace", "PTRACE_GETSIGMASK, \(tid)") {
      withUnsafeMutablePointer(to: &mask) { ck_ptrace(Int32(CK_PTRACE_GETSIGMASK), tid, 8, UInt(bitPattern: $0)) }
    }
    return mask
  }

  /// PTRACE_SETSIGMASK.
  public func setSignalMask(_ mask: UInt64) throws(SyscallError) {
    var copy = mask
    try syscallChecked("ptrace", "PTRACE_SETSIGMASK, \(tid)") {
      withUnsafeMutablePointer(to: &copy) { ck_ptrace(Int32(CK_PTRACE_SETSIGMASK), tid, 8, UInt(bitPattern: $0)) }
    }
  }

  /// PTRACE_GET_RSEQ_CONFIGURATION: where the thread's rseq area is registered (0 if none).
  public func rseqConfiguration() throws(SyscallError) -> ck_rseq_configuration {
    var config = ck_rseq_configuration()
    try syscallChecked("ptrace", "PTRACE_GET_RSEQ_CONFIGURATION, \(tid)") {
      withUnsafeMutablePointer(to: &config) {
        ck_ptrace(
          Int32(CK_PTRACE_GET_RSEQ_CONFIGURATION), tid, UInt(MemoryLayout<ck_rseq_configuration>.size),
          UInt(bitPattern: $0))
      }
    }
    return config
  }

  /// PTRACE_PEEKSIGINFO: the queued signals of this thread (or, with `shared`, of its
  /// process) as 128-byte siginfo records, without dequeuing them.
  public func queuedSignals(shared: Bool) throws(SyscallError) -> [[UInt8]] {
    var result: [[UInt8]] = []
    var buffer = [UInt8](repeating: 0, count: 128 * 32)
    while true {
      var args = (offset: UInt64(result.count), flags: UInt32(shared ? 1 : 0), count: Int32(32))
      let n = try syscallChecked("ptrace", "PTRACE_PEEKSIGINFO, \(tid)") {
        withUnsafeMutablePointer(to: &args) { argsPointer in
          buffer.withUnsafeMutableBytes {
            ck_ptrace(0x4209, tid, UInt(bitPattern: argsPointer), UInt(bitPattern: $0.baseAddress))
          }
        }
      }
      for index in 0..<n { result.append(Array(buffer[(index * 128)..<((index + 1) * 128)])) }
      if n < 32 { return result }
    }
  }

  /// PTRACE_SETOPTIONS.
  public func setOptions(_ options: Int32) throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_SETOPTIONS, \(tid)") {
      ck_ptrace(Int32(CK_PTRACE_SETOPTIONS), tid, 0, UInt(options))
    }
  }

  /// PTRACE_SECCOMP_GET_FILTER and PTRACE_SECCOMP_GET_METADATA: the thread's seccomp
  /// filters, oldest first, each as its classic BPF program (struct sock_filter, 8 bytes an
  /// instruction) and its flags (SECCOMP_FILTER_FLAG_LOG is the one the kernel reports).
  public func seccompFilters() throws(SyscallError) -> [(flags: UInt64, program: [UInt8])] {
    var filters: [(flags: UInt64, program: [UInt8])] = []
    // Index 0 is the filter installed last.
    for index in 0..<UInt(4096) {
      let count = ck_ptrace(Int32(CK_PTRACE_SECCOMP_GET_FILTER), tid, index, 0)
      if count < 0 {
        if errno == ENOENT { break }
        throw SyscallError("ptrace", "PTRACE_SECCOMP_GET_FILTER, \(tid), \(index)", Errno(rawValue: errno))
      }
      var program = [UInt8](repeating: 0, count: count * 8)
      let got = program.withUnsafeMutableBytes {
        ck_ptrace(Int32(CK_PTRACE_SECCOMP_GET_FILTER), tid, index, UInt(bitPattern: $0.baseAddress))
      }
      guard got == count else {
        throw SyscallError(
          "ptrace", "PTRACE_SECCOMP_GET_FILTER, \(tid), \(index)", Errno(rawValue: got < 0 ? errno : EIO))
      }
      // struct seccomp_metadata { __u64 filter_off; __u64 flags; }
      var metadata: (UInt64, UInt64) = (UInt64(index), 0)
      let size = UInt(MemoryLayout.size(ofValue: metadata))
      try syscallChecked("ptrace", "PTRACE_SECCOMP_GET_METADATA, \(tid), \(index)") {
        withUnsafeMutableBytes(of: &metadata) {
          ck_ptrace(Int32(CK_PTRACE_SECCOMP_GET_METADATA), tid, size, UInt(bitPattern: $0.baseAddress))
        }
      }
      filters.append((metadata.1, program))
    }
    return filters.reversed()
  }

  /// PTRACE_GETEVENTMSG: e.g. the new task's pid after a PTRACE_EVENT_FORK stop.
  public func eventMessage() throws(SyscallError) -> UInt {
    var message: UInt = 0
    try syscallChecked("ptrace", "PTRACE_GETEVENTMSG, \(tid)") {
      withUnsafeMutablePointer(to: &message) { ck_ptrace(Int32(CK_PTRACE_GETEVENTMSG), tid, 0, UInt(bitPattern: $0)) }
    }
    return message
  }

  /// PTRACE_CONT with `signal` (0 for none).
  public func resume(signal: Int32 = 0) throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_CONT, \(tid)") { ck_ptrace(Int32(CK_PTRACE_CONT), tid, 0, UInt(signal)) }
  }

  /// PTRACE_SYSCALL: run to the next syscall entry or exit stop.
  public func resumeToSyscall() throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_SYSCALL, \(tid)") { ck_ptrace(Int32(CK_PTRACE_SYSCALL), tid, 0, 0) }
  }

  /// PTRACE_SINGLESTEP: run one instruction (a `syscall` runs whole) and stop with SIGTRAP.
  public func singleStep() throws(SyscallError) {
    try syscallChecked("ptrace", "PTRACE_SINGLESTEP, \(tid)") { ck_ptrace(Int32(CK_PTRACE_SINGLESTEP), tid, 0, 0) }
  }

  /// Turns a signal-delivery stop (the SIGTRAP of a single step, the SIGSTOP a batch ends
  /// with) into a PTRACE_EVENT_STOP without running user code: interrupt, resume with no
  /// signal (the pending trap stops it before user space), wait. A tracer that dies leaves a
  /// task in a signal-delivery stop to take that signal (SIGTRAP kills it); from an event
  /// stop it simply resumes with the registers it holds.
  public func settleToEventStop() throws {
    try Ptrace.interrupt(tid)
    try resume()
    let status = try wait()
    guard status.isEventStop else {
      throw CKError(.failed, "thread \(tid) did not stop for ptrace after a remote call: \(status)")
    }
  }

  /// waitpid(tid, __WALL).
  public func wait() throws(SyscallError) -> WaitStatus { try Ptrace.wait(tid) }

  /// PTRACE_DETACH.
  public func detach(signal: Int32 = 0) throws(SyscallError) { try Ptrace.detach(tid, signal: signal) }
}

extension Registers: @retroactive @unchecked Sendable {}
