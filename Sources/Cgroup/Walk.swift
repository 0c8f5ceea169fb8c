import Linux

/// A process found in a cgroup subtree, with its threads.
public struct CgroupProcess: Equatable, Sendable {
  public var pid: Int32
  public var threads: [Int32]
  /// The cgroup it belongs to.
  public var cgroup: Cgroup
}

extension Cgroup {
  /// This cgroup and every descendant, parents before children, siblings sorted by name.
  public func subtree() throws(SyscallError) -> [Cgroup] {
    var result: [Cgroup] = [self]
    var index = 0
    while index < result.count {
      let current = result[index]
      index += 1
      let children = try PseudoFile.list(current.path).sorted().filter {
        PseudoFile.isDirectory(current.path + "/" + $0)
      }
      result.append(contentsOf: children.map(current.child))
    }
    return result
  }

  /// The process ids in this cgroup alone (`cgroup.procs`).
  public func processIDs() throws(SyscallError) -> [Int32] {
    try Self.parseIDs(PseudoFile.read(file("cgroup.procs")))
  }

  /// Whether no task is left in the subtree: v2's `cgroup.events` says so in one read
  /// (`populated 0`); v1 has each cgroup's `cgroup.procs` read. Cheap enough to poll while
  /// hundreds of killed tasks exit (``processes()`` lists each one's threads).
  public func isEmpty() -> Bool {
    if version == .v2, let events = try? PseudoFile.read(file("cgroup.events")) {
      return events.split(separator: "\n").contains("populated 0")
    }
    return (try? subtree().allSatisfy { (try? $0.processIDs().isEmpty) ?? true }) ?? true
  }

  /// The thread ids in this cgroup alone (v2 `cgroup.threads`, v1 `tasks`).
  public func threadIDs() throws(SyscallError) -> [Int32] {
    try Self.parseIDs(PseudoFile.read(file(version == .v2 ? "cgroup.threads" : "tasks")))
  }

  /// Every process of the subtree with its threads in the cgroup where the kernel lists them.
  /// A task that exits during the walk is left out.
  public func processes() throws(SyscallError) -> [CgroupProcess] {
    var result: [CgroupProcess] = []
    for cgroup in try subtree() {
      let threads = Set(try cgroup.threadIDs())
      for pid in try cgroup.processIDs() {
        guard let all = try? ProcInfo.threadIDs(pid: pid) else { continue }
        // v2 threaded cgroups may place a process's threads elsewhere; keep the ones here.
        let here = all.filter { threads.contains($0) }
        result.append(CgroupProcess(pid: pid, threads: here.isEmpty ? all : here, cgroup: cgroup))
      }
    }
    return result
  }

  static func parseIDs(_ text: String) -> [Int32] {
    text.split(separator: "\n").compactMap { Int32($0) }
  }
}
