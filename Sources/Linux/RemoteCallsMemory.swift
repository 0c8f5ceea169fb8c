import CKShim
import Glibc

// The typed remote calls on a task's address space (see RemoteCalls.swift).

extension RemoteCall {
  /// mmap(2) of `length` bytes at `address`; at a fixed address (MAP_FIXED,
  /// MAP_FIXED_NOREPLACE) it must return that address. `fd` -1: anonymous memory.
  public static func mmap(
    at address: UInt64, length: UInt64, protection: Int32, flags: MapFlags, fd: some RemoteArgument = Int32(-1),
    offset: UInt64 = 0
  ) -> RemoteCall {
    let fixed = !flags.isDisjoint(with: [.fixed, .fixedNoReplace])
    return RemoteCall(
      SyscallNumber.mmap, [address, length, protection, flags.rawValue, fd, offset],
      label: "mmap \(hex(address))-\(hex(address + length))", expecting: fixed ? Int64(address) : nil)
  }

  /// munmap(2), which returns 0.
  public static func munmap(_ address: UInt64, length: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.munmap, [address, length], label: "munmap \(hex(address))-\(hex(address + length))", expecting: 0)
  }

  /// mprotect(2).
  public static func mprotect(_ address: UInt64, length: UInt64, _ protection: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.mprotect, [address, length, protection], label: "mprotect \(hex(address))")
  }

  /// clock_gettime(2) of CLOCK_MONOTONIC into the 16 bytes at `address`: the task writes its
  /// own memory there, as its first write would (a fault that gives the mapping its page and
  /// its anon_vma), in a batch, where a write through /proc/<pid>/mem costs ckcont a call.
  public static func clockGettime(into address: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.clockGettime, [Int32(CLOCK_MONOTONIC), address], label: "clock_gettime into \(hex(address))",
      expecting: 0)
  }

  /// madvise(2).
  public static func madvise(_ address: UInt64, length: UInt64, _ advice: MemoryAdvice) -> RemoteCall {
    RemoteCall(SyscallNumber.madvise, [address, length, advice.rawValue], label: "madvise \(hex(address)) \(advice)")
  }

  /// mremap(2) of the whole mapping at `address` to `destination` (MREMAP_MAYMOVE |
  /// MREMAP_FIXED), which it returns.
  public static func mremap(_ address: UInt64, length: UInt64, to destination: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.mremap, [address, length, length, Int32(CK_MREMAP_MAYMOVE | CK_MREMAP_FIXED), destination],
      label: "mremap \(hex(address)) to \(hex(destination))", expecting: Int64(destination))
  }

  /// mlock2(2); `onFault`: MLOCK_ONFAULT, pages locked as they fault in.
  public static func mlock2(_ address: UInt64, length: UInt64, onFault: Bool) -> RemoteCall {
    RemoteCall(
      SyscallNumber.mlock2, [address, length, onFault ? Int32(CK_MLOCK_ONFAULT) : 0], label: "mlock \(hex(address))")
  }

  /// mseal(2).
  public static func mseal(_ address: UInt64, length: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.mseal, [address, length, 0], label: "mseal \(hex(address))")
  }

  /// shmat(2) of SysV segment `id` at `address`, which it returns.
  public static func shmat(_ id: UInt64, at address: UInt64, writable: Bool, executable: Bool) -> RemoteCall {
    let flags = (writable ? 0 : SHM_RDONLY) | (executable ? SHM_EXEC : 0)
    return RemoteCall(
      SyscallNumber.shmat, [id, address, Int32(flags)], label: "shmat segment \(id) at \(hex(address))",
      expecting: Int64(address))
  }

  /// userfaultfd(2).
  public static func userfaultfd(_ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.userfaultfd, [flags], label: "userfaultfd")
  }

  /// brk(2): with 0, where the heap ends.
  public static func brk(_ address: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.brk, [address], label: "brk")
  }
}

/// mmap(2) flags.
public struct MapFlags: OptionSet, Sendable {
  public let rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  public static let shared = Self(rawValue: UInt32(MAP_SHARED))
  public static let `private` = Self(rawValue: UInt32(MAP_PRIVATE))
  /// MAP_DROPPABLE (Linux 6.11): a kind of mapping of its own, as shared and private are.
  public static let droppable = Self(rawValue: UInt32(CK_MAP_DROPPABLE))
  public static let anonymous = Self(rawValue: UInt32(MAP_ANONYMOUS))
  public static let fixed = Self(rawValue: UInt32(MAP_FIXED))
  /// At the address or not at all: never clobbers what is there (Linux 4.17).
  public static let fixedNoReplace = Self(rawValue: UInt32(MAP_FIXED_NOREPLACE))
  /// No swap reserved: the mapping stays out of strict overcommit accounting.
  public static let noReserve = Self(rawValue: UInt32(MAP_NORESERVE))
  public static let growsDown = Self(rawValue: UInt32(MAP_GROWSDOWN))
  /// MAP_HUGETLB.
  public static let hugeTLB = Self(rawValue: 0x40000)

  /// MAP_HUGETLB's page size bits: log2 of `size` from bit 26 (MAP_HUGE_SHIFT).
  public static func hugePages(of size: UInt64) -> Self {
    Self(rawValue: 0x40000 | UInt32(size.trailingZeroBitCount) << 26)
  }
}

/// madvise(2) advice, with its name for labels.
public struct MemoryAdvice: Sendable, Equatable, CustomStringConvertible {
  public let rawValue: Int32
  public let description: String

  public static let normal = Self(rawValue: MADV_NORMAL, description: "MADV_NORMAL")
  public static let random = Self(rawValue: MADV_RANDOM, description: "MADV_RANDOM")
  public static let sequential = Self(rawValue: MADV_SEQUENTIAL, description: "MADV_SEQUENTIAL")
  public static let dontNeed = Self(rawValue: MADV_DONTNEED, description: "MADV_DONTNEED")
  public static let dontFork = Self(rawValue: MADV_DONTFORK, description: "MADV_DONTFORK")
  public static let mergeable = Self(rawValue: MADV_MERGEABLE, description: "MADV_MERGEABLE")
  public static let hugePage = Self(rawValue: MADV_HUGEPAGE, description: "MADV_HUGEPAGE")
  public static let noHugePage = Self(rawValue: MADV_NOHUGEPAGE, description: "MADV_NOHUGEPAGE")
  public static let dontDump = Self(rawValue: MADV_DONTDUMP, description: "MADV_DONTDUMP")
  public static let wipeOnFork = Self(rawValue: MADV_WIPEONFORK, description: "MADV_WIPEONFORK")
  /// Guard regions (Linux 6.14): pages that fault on any access.
  public static let guardInstall = Self(rawValue: Int32(CK_MADV_GUARD_INSTALL), description: "MADV_GUARD_INSTALL")
}
