import CKShim
import Glibc

/// The CPUs a thread may run on (sched_setaffinity(2)), as a bit mask of up to 1024 CPUs.
public struct CPUSet: Equatable, Sendable {
  public var words: [UInt64]
  static let wordCount = 16

  /// Just `cpu`.
  public init(only cpu: Int) {
    words = [UInt64](repeating: 0, count: Self.wordCount)
    words[cpu / 64] = 1 << UInt64(cpu % 64)
  }

  init(words: [UInt64]) { self.words = words }

  /// This set without `cpu`; nil when nothing is left.
  public func removing(_ cpu: Int) -> CPUSet? {
    var words = words
    words[cpu / 64] &= ~(1 << UInt64(cpu % 64))
    return words.allSatisfy({ $0 == 0 }) ? nil : CPUSet(words: words)
  }

  /// sched_getaffinity(2) of thread `tid` (0: the calling thread).
  public static func of(_ tid: Int32) throws(SyscallError) -> CPUSet {
    var words = [UInt64](repeating: 0, count: wordCount)
    try syscallChecked("sched_getaffinity", "\(tid)") { ck_sched_getaffinity(tid, &words, wordCount) }
    return CPUSet(words: words)
  }

  /// sched_setaffinity(2) of thread `tid` (0: the calling thread).
  public func apply(to tid: Int32) throws(SyscallError) {
    try syscallChecked("sched_setaffinity", "\(tid)") { ck_sched_setaffinity(tid, words, Self.wordCount) }
  }

  /// The CPUs in the set, in order.
  public var cpus: [Int] {
    (0..<Self.wordCount * 64).filter { words[$0 / 64] & (1 << UInt64($0 % 64)) != 0 }
  }

  /// The set of `cpus` (those beyond 1023 left out); nil when none is left.
  public init?(cpus: [Int]) {
    var words = [UInt64](repeating: 0, count: Self.wordCount)
    for cpu in cpus where (0..<Self.wordCount * 64).contains(cpu) { words[cpu / 64] |= 1 << UInt64(cpu % 64) }
    guard words.contains(where: { $0 != 0 }) else { return nil }
    self.words = words
  }

  /// The CPUs in both sets; nil when none is.
  public func intersection(_ other: CPUSet) -> CPUSet? {
    let words = zip(words, other.words).map { $0 & $1 }
    return words.allSatisfy({ $0 == 0 }) ? nil : CPUSet(words: words)
  }

  /// The CPU the calling thread runs on now (sched_getcpu(3)).
  public static func current() -> Int { Int(max(0, ck_sched_getcpu())) }
}
