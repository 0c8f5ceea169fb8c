import CKShim
import Foundation
import Glibc

/// Where each thread's rseq area is: the kernel writes the CPU a thread runs on (and its
/// NUMA node and concurrency id) there at every return to user space, so those words of the
/// area differ between any two snapshots and are left out of the memory hashes
/// (``IgnoredState/mappingContents``). Only ptrace tells where the area is
/// (PTRACE_GET_RSEQ_CONFIGURATION): each thread is seized, interrupted, asked and detached.
/// A thread frozen by cgroup v2 stops for ptrace and goes back into the freezer without
/// leaving the kernel; one frozen by v1 never reaches the stop, so there it is asked before
/// the freeze, and the interruption makes a sleep it waits in resume as restart_syscall.
enum RseqAreas {
  /// Host pid -> the rseq areas of its threads.
  static func read(_ pids: [Int32]) -> [Int32: [UInt64]] {
    var result: [Int32: [UInt64]] = [:]
    for pid in pids {
      for tid in SnapshotTasks.threadIDs(pid) {
        if let address = area(tid) { result[pid, default: []].append(address) }
      }
    }
    return result
  }

  /// The offsets in `struct rseq` of the words the kernel rewrites: cpu_id_start, cpu_id,
  /// node_id, mm_cid (4 bytes each); rseq_cs and flags are the program's.
  static let rewrittenWords = [0, 4, 20, 24]

  private static func area(_ tid: Int32) -> UInt64? {
    guard ck_ptrace(Int32(CK_PTRACE_SEIZE), tid, 0, 0) == 0 else { return nil }
    defer { _ = ck_ptrace(Int32(CK_PTRACE_DETACH), tid, 0, 0) }
    guard ck_ptrace(Int32(CK_PTRACE_INTERRUPT), tid, 0, 0) == 0 else { return nil }
    let deadline = Date().addingTimeInterval(2)
    var status: Int32 = 0
    while waitpid(tid, &status, Int32(CK_WALL) | WNOHANG) == 0 {
      guard Date() < deadline else { return nil }
      usleep(200)
    }
    var config = ck_rseq_configuration()
    let size = UInt(MemoryLayout<ck_rseq_configuration>.size)
    let result = withUnsafeMutablePointer(to: &config) {
      ck_ptrace(Int32(CK_PTRACE_GET_RSEQ_CONFIGURATION), tid, UInt(size), UInt(bitPattern: $0))
    }
    return result >= 0 && config.rseq_abi_pointer != 0 ? config.rseq_abi_pointer : nil
  }
}
