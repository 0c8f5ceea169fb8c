import Glibc

/// Several system calls made inside a stopped tracee in one stop: straight-line x86-64 code
/// that loads each call's number and arguments, executes `syscall`, stores rax in a result
/// slot, and ends (``Ending``) in `int3` or by stopping itself. Each remote call costs a round trip through the scheduler (the
/// tracee must wake, run and trap); a batch of independent calls pays it once.
public struct SyscallBatch {
  /// An argument: a value, or the result of an earlier call of the batch (an fd it opened),
  /// written `.result(index)` (see ``RemoteArgument``).
  public enum Argument: Sendable {
    case value(UInt64)
    case earlierResult(Int)
  }

  /// How the code hands the task back to its tracer.
  public enum Ending: Sendable, Equatable {
    /// `int3`: a SIGTRAP stop. Without a tracer the SIGTRAP kills the task (used to restore,
    /// where a dead tracer's half-made tasks die anyway).
    case breakpoint
    /// `tgkill(tgid, tid, SIGSTOP)`, then pause() in a loop with every signal still blocked:
    /// traced, a signal-delivery stop (the tracer discards the SIGSTOP by resuming with no
    /// signal); should the tracer be gone, the process stops, and once continued sleeps in
    /// the loop (used to dump: the container outlives ckcont).
    case stopSignal(tgid: Int32, tid: Int32)

    /// The signal of the stop the code ends in.
    public var signal: Int32 {
      switch self {
      case .breakpoint: return SIGTRAP
      case .stopSignal: return SIGSTOP
      }
    }
  }

  public private(set) var calls: [(number: Int, arguments: [Argument])] = []
  /// The calls (by index) made through `int $0x80`: i386 calls, from 64-bit code as well.
  private var i386Calls: Set<Int> = []

  public init() {}

  /// Adds a call by its number (the raw layer under ``add(_:)``), whose arguments may be
  /// results of earlier calls; returns its index.
  @discardableResult
  public mutating func add(_ number: Int, arguments: [Argument]) -> Int {
    precondition(arguments.count <= 6, "a system call takes at most six arguments")
    for case .earlierResult(let index) in arguments { precondition(index < calls.count, "a result of a later call") }
    calls.append((number, arguments))
    return calls.count - 1
  }

  /// Adds an i386 call (an ``I386SyscallNumber``, made through `int $0x80`, whose arguments go
  /// in ebx, ecx, edx, esi, edi, ebp): what decides the compat way some state is kept, e.g.
  /// an rt_sigaction whose handler gets ia32 signal frames. Returns its index.
  @discardableResult
  public mutating func addI386(_ number: Int, arguments: [Argument]) -> Int {
    let index = add(number, arguments: arguments)
    i386Calls.insert(index)
    return index
  }

  /// The encodings of loading each argument register (movabs), zeroing it (xor) and
  /// copying rax into it, for the two ways into the kernel.
  private struct ArgumentRegisters {
    let load: [[UInt8]]
    let zero: [[UInt8]]
    let fromRax: [[UInt8]]
    /// `syscall`, or `int $0x80`.
    let entry: [UInt8]

    /// rdi, rsi, rdx, r10, r8, r9.
    static let native = ArgumentRegisters(
      load: [[0x48, 0xbf], [0x48, 0xbe], [0x48, 0xba], [0x49, 0xba], [0x49, 0xb8], [0x49, 0xb9]],
      zero: [
        [0x31, 0xff], [0x31, 0xf6], [0x31, 0xd2], [0x45, 0x31, 0xd2], [0x45, 0x31, 0xc0], [0x45, 0x31, 0xc9],
      ],
      fromRax: [
        [0x48, 0x89, 0xc7], [0x48, 0x89, 0xc6], [0x48, 0x89, 0xc2], [0x49, 0x89, 0xc2], [0x49, 0x89, 0xc0],
        [0x49, 0x89, 0xc1],
      ],
      entry: [0x0f, 0x05])
    /// ebx, ecx, edx, esi, edi, ebp (loaded whole; the ia32 entry reads the low halves).
    static let i386 = ArgumentRegisters(
      load: [[0x48, 0xbb], [0x48, 0xb9], [0x48, 0xba], [0x48, 0xbe], [0x48, 0xbf], [0x48, 0xbd]],
      zero: [[0x31, 0xdb], [0x31, 0xc9], [0x31, 0xd2], [0x31, 0xf6], [0x31, 0xff], [0x31, 0xed]],
      fromRax: [
        [0x48, 0x89, 0xc3], [0x48, 0x89, 0xc1], [0x48, 0x89, 0xc2], [0x48, 0x89, 0xc6], [0x48, 0x89, 0xc7],
        [0x48, 0x89, 0xc5],
      ],
      entry: [0xcd, 0x80])
  }

  /// The machine code, storing call i's result (rax) at `results + 8 * i`.
  public func code(results: UInt64, ending: Ending = .breakpoint) -> [UInt8] {
    // Written through a buffer sized once: a batch of thousands of calls is built for every
    // stop of a restore, and appending small arrays cost ~3 ms a thousand descriptors (perf).
    let capacity = Self.maximumCodeSize(calls: calls.count)
    return [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
      var writer = CodeWriter(buffer: buffer)
      for (index, call) in calls.enumerated() {
        let registers = i386Calls.isEmpty || !i386Calls.contains(index) ? ArgumentRegisters.native : .i386
        for register in 0..<6 {
          let argument = register < call.arguments.count ? call.arguments[register] : .value(0)
          switch argument {
          case .value(0):
            // Every call sets all six registers, so no argument is left over from the call
            // before (prctl and others check unused ones).
            writer.append(registers.zero[register])
          case .value(let value):
            writer.append(registers.load[register])
            writer.append64(value)
          case .earlierResult(let earlier):
            writer.append(0x48, 0xa1)  // movabs rax, [results + 8 earlier]
            writer.append64(results + UInt64(earlier * 8))
            writer.append(registers.fromRax[register])
          }
        }
        writer.append(0x48, 0xb8)  // movabs rax, number
        writer.append64(UInt64(call.number))
        writer.append(registers.entry)
        writer.append(0x48, 0xa3)  // movabs [results + 8 index], rax
        writer.append64(results + UInt64(index * 8))
      }
      switch ending {
      case .breakpoint:
        writer.append(0xcc)  // int3
      case .stopSignal(let tgid, let tid):
        // Raw numbers: the ending's two calls are machine code of its own, not queued calls.
        writer.append(0xb8)  // mov eax, tgkill
        writer.append32(Int32(SyscallNumber.tgkill))
        writer.append(0xbf)  // mov edi, tgid
        writer.append32(tgid)
        writer.append(0xbe)  // mov esi, tid
        writer.append32(tid)
        writer.append(0xba)  // mov edx, SIGSTOP
        writer.append32(SIGSTOP)
        writer.append(0x0f, 0x05)  // syscall
        writer.append(0xb8)  // park: mov eax, pause
        writer.append32(Int32(SyscallNumber.pause))
        writer.append(0x0f, 0x05)  // syscall
        writer.append(0xeb, 0xf7)  // jmp park
      }
      count = writer.count
    }
  }

  /// Bytes written in order into a buffer ``maximumCodeSize(calls:)`` long (a bound the
  /// encodings above never exceed: checked, a batch too long is a bug).
  private struct CodeWriter {
    let buffer: UnsafeMutableBufferPointer<UInt8>
    var count = 0

    mutating func append(_ bytes: [UInt8]) {
      precondition(count + bytes.count <= buffer.count, "syscall batch code overflows its bound")
      for byte in bytes {
        buffer[count] = byte
        count += 1
      }
    }

    mutating func append(_ byte: UInt8) {
      precondition(count < buffer.count, "syscall batch code overflows its bound")
      buffer[count] = byte
      count += 1
    }

    mutating func append(_ first: UInt8, _ second: UInt8) {
      append(first)
      append(second)
    }

    mutating func append64(_ value: UInt64) {
      precondition(count + 8 <= buffer.count, "syscall batch code overflows its bound")
      UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped + count).storeBytes(
        of: value.littleEndian, as: UInt64.self)
      count += 8
    }

    mutating func append32(_ value: Int32) {
      precondition(count + 4 <= buffer.count, "syscall batch code overflows its bound")
      UnsafeMutableRawPointer(buffer.baseAddress.unsafelyUnwrapped + count).storeBytes(
        of: value.littleEndian, as: Int32.self)
      count += 4
    }
  }

  /// The most code bytes `count` calls can take.
  public static func maximumCodeSize(calls count: Int) -> Int { count * (10 + 6 * 13 + 2 + 10) + 32 }
}

extension RemoteSyscall {
  /// Runs code (a ``SyscallBatch``) the caller wrote at `address`, an executable page of the
  /// tracee, to its closing int3; signals must be blocked, as for single calls.
  public mutating func runCode(at address: UInt64, calls: Int, ending: SyscallBatch.Ending = .breakpoint) throws {
    try startCode(at: address)
    try finishCode(calls: calls, ending: ending)
  }

  /// Sets the tracee running the code at `address` and returns at once: the caller may do
  /// other work, other tracees' included, before ``finishCode(calls:)``.
  public func startCode(at address: UInt64) throws {
    var regs = saved
    regs.orig_rax = UInt64.max
    regs.rip = address
    if i386 { regs.cs = Self.codeSegment64 }
    try tracee.setRegisters(regs)
    try tracee.resume()
  }

  /// Waits for code started with ``startCode(at:)`` to reach its end.
  public mutating func finishCode(calls: Int, ending: SyscallBatch.Ending = .breakpoint) throws {
    let status = try tracee.wait()
    guard case .stopped(let signal, let event) = status, signal == ending.signal, event == 0 else {
      throw CKError(.failed, "task \(tracee.tid): a batch of \(calls) remote syscalls stopped unexpectedly: \(status)")
    }
    count += calls
  }
}
