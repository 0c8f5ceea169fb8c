/// prctl(2) options ckcont passes to remote calls. Values are the kernel's (linux/prctl.h);
/// those the build's headers define are checked against them in CKShim's prctl.c, the
/// newer ones (PR_GET_MDWE, the memory merge, timer ids) are not in Debian 12's headers.
public struct PrctlOption: RawRepresentable, Sendable, Equatable {
  public let rawValue: UInt64
  public init(rawValue: UInt64) { self.rawValue = rawValue }

  public static let setParentDeathSignal = Self(rawValue: 1)
  public static let getParentDeathSignal = Self(rawValue: 2)
  public static let getDumpable = Self(rawValue: 3)
  public static let setDumpable = Self(rawValue: 4)
  public static let setKeepCapabilities = Self(rawValue: 8)
  public static let setName = Self(rawValue: 15)
  public static let dropBoundingCapability = Self(rawValue: 24)
  public static let getSecurebits = Self(rawValue: 27)
  public static let setSecurebits = Self(rawValue: 28)
  public static let setTimerSlack = Self(rawValue: 29)
  public static let getTimerSlack = Self(rawValue: 30)
  public static let setMM = Self(rawValue: 35)
  public static let setChildSubreaper = Self(rawValue: 36)
  public static let getChildSubreaper = Self(rawValue: 37)
  public static let setNoNewPrivileges = Self(rawValue: 38)
  public static let getTidAddress = Self(rawValue: 40)
  public static let setTHPDisable = Self(rawValue: 41)
  public static let getTHPDisable = Self(rawValue: 42)
  public static let ambientCapability = Self(rawValue: 47)
  /// Memory-deny-write-execute (Linux 6.3).
  public static let setMDWE = Self(rawValue: 65)
  public static let getMDWE = Self(rawValue: 66)
  /// KSM merging of the whole process (Linux 6.4).
  public static let setMemoryMerge = Self(rawValue: 67)
  public static let getMemoryMerge = Self(rawValue: 68)
  /// timer_create takes the id to restore (Linux 6.15).
  public static let timerCreateRestoreIDs = Self(rawValue: 77)
}
