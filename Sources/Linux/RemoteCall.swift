import Glibc

/// A system call for a traced task, as the typed layer makes it (the raw layer under it is a
/// number and six words: ``RemoteSyscall/call(_:_:_:_:_:_:_:)``, ``SyscallBatch/add(_:arguments:)``).
/// One static method per system call builds it (RemoteCalls*.swift); whatever runs remote
/// calls takes it: a restore's batch or single call, a dump's batch or single call.
///
/// Besides the number and arguments it carries what the call does in words, made from its
/// arguments (the runner adds the task: `task 4711: restore: dup3 5 to 1002: Bad file
/// descriptor`), which a caller that knows more replaces (`dup3 fd 5 to 1002`); and the
/// result the call must return when its arguments fix it (mmap at a fixed address, dup3 to a
/// number, a write of all its bytes), which a restore's runners check.
public struct RemoteCall: Sendable {
  public let number: Int
  public let arguments: [SyscallBatch.Argument]
  /// What the call does, for errors: put into words only when one is reported (formatting
  /// every call's label cost ~15 ms of a restore of 10,000 mappings).
  public var label: String {
    get { makeLabel() }
    set { makeLabel = { newValue } }
  }
  private var makeLabel: @Sendable () -> String
  /// The result it must return, where its arguments fix it; nil: anything but an error.
  public var expected: Int64?
  /// An i386 call (``I386SyscallNumber``), made through `int $0x80` (RemoteCallsI386.swift).
  public var i386 = false

  /// A call by its number (the raw layer): for a call the typed methods do not cover.
  public init(
    _ number: Int, _ arguments: [any RemoteArgument], label: @autoclosure @escaping @Sendable () -> String,
    expecting expected: Int64? = nil
  ) {
    precondition(arguments.count <= 6, "a system call takes at most six arguments")
    self.number = number
    self.arguments = arguments.map(\.argument)
    makeLabel = label
    self.expected = expected
  }

  /// Replaces the label with `label`, put into words only when an error is reported.
  public mutating func relabel(_ label: @escaping @Sendable () -> String) {
    makeLabel = label
  }
}

/// What a remote call takes in a register: a number (a descriptor, an address in the task, a
/// flag word), or, in a batch, the result of an earlier call of it (`.result(index)`: a
/// descriptor it opened). Signed numbers go sign-extended, as the kernel's `int` and `long`
/// arguments read them.
public protocol RemoteArgument: Sendable {
  /// The register's value, or the earlier result it is loaded from.
  var argument: SyscallBatch.Argument { get }
}

extension RemoteArgument where Self == SyscallBatch.Argument {
  /// The result of call `index` of the same batch (what ``SyscallBatch/add(_:)`` returned).
  public static func result(_ index: Int) -> SyscallBatch.Argument { .earlierResult(index) }
}

extension SyscallBatch.Argument: RemoteArgument {
  public var argument: SyscallBatch.Argument { self }
}

extension Int32: RemoteArgument {
  public var argument: SyscallBatch.Argument { .value(UInt64(bitPattern: Int64(self))) }
}

extension Int64: RemoteArgument {
  public var argument: SyscallBatch.Argument { .value(UInt64(bitPattern: self)) }
}

extension Int: RemoteArgument {
  public var argument: SyscallBatch.Argument { .value(UInt64(bitPattern: Int64(self))) }
}

extension UInt32: RemoteArgument {
  public var argument: SyscallBatch.Argument { .value(UInt64(self)) }
}

extension UInt64: RemoteArgument {
  public var argument: SyscallBatch.Argument { .value(self) }
}

extension SyscallBatch.Argument: CustomStringConvertible {
  /// A number as the task sees it (signed: a descriptor, -1), an earlier result by its call.
  public var description: String {
    switch self {
    case .value(let value): return String(Int64(bitPattern: value))
    case .earlierResult(let index): return "(result of call \(index))"
    }
  }
}

extension RemoteCall {
  /// An address in the task, as labels show addresses.
  static func hex(_ address: UInt64) -> String { String(address, radix: 16) }
}

extension SyscallBatch {
  /// Adds `call` (its label and expected result are not kept: the dump's readers check each
  /// result themselves); returns its index in the results.
  @discardableResult
  public mutating func add(_ call: RemoteCall) -> Int {
    call.i386 ? addI386(call.number, arguments: call.arguments) : add(call.number, arguments: call.arguments)
  }
}

extension RemoteSyscall {
  /// Runs `call` and returns its raw result (-errno on failure).
  @discardableResult
  public mutating func call(_ call: RemoteCall) throws -> Int64 {
    let words = call.arguments.map { argument -> UInt64 in
      guard case .value(let value) = argument else { preconditionFailure("an earlier result outside a batch") }
      return value
    }
    let padded = words + Array(repeating: 0, count: 6 - words.count)
    return try self.call(call.number, padded[0], padded[1], padded[2], padded[3], padded[4], padded[5])
  }

  /// Runs `call`; a failure, or a result other than the one it must have, becomes an error
  /// naming `label` (or the call's own).
  @discardableResult
  public mutating func checked(_ call: RemoteCall, _ label: String? = nil) throws -> Int64 {
    let result = try self.call(call)
    try call.check(result, label: label, task: tracee.tid)
    return result
  }
}

extension RemoteCall {
  /// Throws when `result` is an error or not the one the call must return: `task <tid>:
  /// <prefix><label>: <reason>`.
  public func check(_ result: Int64, label: String? = nil, task: Int32, prefix: String = "") throws {
    if result < 0 && result > -4096 {
      throw CKError(
        .failed, "task \(task): \(prefix)\(label ?? self.label): \(String(cString: strerror(Int32(-result))))")
    }
    if let expected, result != expected {
      throw CKError(.failed, "task \(task): \(prefix)\(label ?? self.label) returned 0x\(String(result, radix: 16))")
    }
  }
}
