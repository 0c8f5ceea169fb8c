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

  /// The CPU the calling thread runs on now (sched_getcpu(3)).
  public static func current() -> Int { Int(max(0, ck_sched_getcpu())) }
}
