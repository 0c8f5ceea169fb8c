import Bundle
import CKShim
import Glibc
import Linux

/// Pid namespaces below the container's: a process of the container that is the init of a
/// namespace of its own (`unshare -pf prog`, a sandbox, a build tool), or a container whose
/// cgroup holds `unshare -fp` itself, whose child is pid 1 of a new namespace.
///
/// Dump: the container's level is the fewest pid namespaces any of its processes is in (its
/// root's); every process keeps its pid there and, deeper, its whole chain
/// (``TaskEntryImage/nestedPids``, ``TaskEntryImage/nestedThreads``): futex words, robust
/// lists and the processes themselves hold the inner ids, so every level comes back.
/// Restore: the init of a nested namespace is forked by its parent with CLONE_NEWPID and
/// set_tid {1, its pid in each namespace above, up to the container's}; its descendants and
/// threads with set_tid holding their whole chain, innermost first. A process whose children
/// were born in the nested namespace (unshare(CLONE_NEWPID) before its fork, as `unshare -pf`
/// does) joins it again for its children with setns once the tree is made.
enum PidNamespaces {
  // MARK: Dump

  /// Checks that the restore can make every nested pid namespace again, and records which
  /// processes give their children one (``TaskEntryImage/childPidNamespaceInit``).
  /// `root`: the container's root, whose pid namespace is the container's.
  static func check(_ tasks: inout [Dump.CapturedTask], root: Dump.CapturedTask) throws {
    let byPid = Dictionary(tasks.map { ($0.entry.pid, $0) }, uniquingKeysWith: { first, _ in first })
    let containerNamespace = root.namespaceIDs["pid"]
    for task in tasks {
      let entry = task.entry
      let own = task.namespaceIDs["pid"]
      func refuse(_ why: String, hint: String? = nil) -> CKError {
        CKError(.failed, "process \(task.hostPid) (\(entry.comm)) \(why), which ckcont cannot restore", hint: hint)
      }
      guard entry.pidDepth > 0 else {
        guard own == containerNamespace else {
          throw refuse(
            "is in a pid namespace of its own that is not below the container's (not that of its init \(root.hostPid))")
        }
        continue
      }
      // Restored from inside the process by ids the container's namespace gives.
      guard !task.files.descriptors.contains(where: { $0.kind == .pidfd || ($0.asyncOwner?.id ?? 0) != 0 }) else {
        throw refuse(
          "holds a pidfd or signal-driven I/O naming a process while in a pid namespace below the container's")
      }
      guard let parent = byPid[entry.ppid], entry.ppid != 0 else {
        throw refuse("is in a pid namespace below the container's, but its parent is outside the container")
      }
      if entry.nestedPids?.last == 1 {
        // The init of its namespace: its parent made it (or adopted it) one level up.
        guard parent.entry.pidDepth == entry.pidDepth - 1, own != parent.namespaceIDs["pid"] else {
          throw refuse("is the init of a pid namespace its parent \(parent.hostPid) is not just above")
        }
      } else {
        // Anyone else was forked inside its namespace; one whose parent joined it by setns
        // could not be forked there again.
        guard parent.entry.pidDepth == entry.pidDepth, own == parent.namespaceIDs["pid"] else {
          throw refuse(
            "is in a pid namespace below the container's that its parent \(parent.hostPid) is not in (it joined it by setns)"
          )
        }
      }
    }
    for index in tasks.indices {
      let task = tasks[index]
      guard let forChildren = task.namespaceIDs["pid_for_children"], forChildren != task.namespaceIDs["pid"] else {
        continue
      }
      // unshare(CLONE_NEWPID): the namespace is its children's; its first child is the init.
      guard
        let initTask = tasks.first(where: {
          $0.entry.ppid == task.entry.pid && $0.entry.nestedPids?.last == 1 && $0.namespaceIDs["pid"] == forChildren
        })
      else {
        throw CKError(
          .failed,
          "process \(task.hostPid) (\(task.entry.comm)) made a pid namespace for its children that has no init among them, which ckcont cannot restore",
          hint: "checkpoint after its first child is forked, or while that child still runs")
      }
      tasks[index].entry.childPidNamespaceInit = initTask.entry.pid
    }
  }

  /// A proc mounted for a pid namespace below the container's (`unshare -pf --mount-proc`)
  /// shows the pid namespace of the process that mounts it: the restore leaves it to that
  /// namespace's init (``NestedNamespaces/mountProcs``), which must be in the mount
  /// namespace it is mounted in, with nothing mounted on it later. Marks each such mount of
  /// `image` (the mounts of `viewer`'s mount namespace) with its init; refuses the rest.
  static func markProcMounts(
    _ image: inout MountsImage, viewer: Dump.CapturedTask, tasks: [Dump.CapturedTask], root: Dump.CapturedTask
  ) throws {
    for index in image.mounts.indices
    where image.mounts[index].kind == .filesystem && image.mounts[index].fsType == "proc" {
      let point = image.mounts[index].mountPoint
      // Its pid 1 is the init of the namespace it shows.
      let path = "/proc/\(viewer.hostPid)/root" + (point == "/" ? "" : point) + "/1/ns/pid"
      guard let shows = try? NamespaceID.parse(readLink(path)), shows != root.namespaceIDs["pid"] else { continue }
      func refuse(_ why: String) -> CKError {
        CKError(
          .failed,
          "process \(viewer.hostPid) (\(viewer.entry.comm)) sees a proc on \(point) mounted for a pid namespace \(why), which ckcont cannot restore yet",
          hint: "mount that proc from the namespace's init, in its mount namespace")
      }
      guard let initTask = tasks.first(where: { $0.entry.nestedPids?.last == 1 && $0.namespaceIDs["pid"] == shows })
      else {
        throw refuse("that is not below the container's")
      }
      guard initTask.namespaceIDs["mnt"] == viewer.namespaceIDs["mnt"] else {
        throw refuse("whose init \(initTask.hostPid) is in another mount namespace")
      }
      let under = point == "/" ? "/" : point + "/"
      guard !image.mounts[(index + 1)...].contains(where: { $0.mountPoint == point || $0.mountPoint.hasPrefix(under) })
      else {
        throw refuse("with mounts made on it since")
      }
      image.mounts[index].pidNamespaceInit = initTask.entry.pid
    }
  }

  /// Runs the restore's plan of the tree (``TreePlan``) on the dumped one: whatever it could
  /// not do across pid namespaces (a helper or a group below the container's) is refused now.
  static func checkPlan(_ entries: [TaskEntryImage], ownPidNamespace: Bool) throws {
    guard entries.contains(where: { $0.nestedPids != nil }) else { return }
    let layout = Layout(entries)
    let plan = try TreePlan(
      tasks: entries, ownPidNamespace: ownPidNamespace, isFree: { _ in true })
    if let helper = plan.helpers.first(where: { layout.byPid[$0.parent]?.pidDepth ?? 0 > 0 }) {
      throw CKError(
        .failed,
        "the restore would need a helper process in the pid namespace of process \(helper.parent), below the container's (an orphan or a group whose leader exited), which ckcont cannot restore yet"
      )
    }
    for (pid, group) in plan.joins { _ = try groupJoin(pid: pid, group: group, layout: layout) }
  }

  // MARK: Restore

  /// Where each process of a bundle lives among the pid namespaces: which ids it has in each,
  /// and which of them another process can name. A pure function of the tree.
  struct Layout {
    let byPid: [Int32: TaskEntryImage]

    init(_ tasks: [TaskEntryImage]) {
      byPid = Dictionary(tasks.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
    }

    /// The init of the namespace `pid` is in (its own pid when it is one), 0 for the
    /// container's namespace.
    func namespace(of pid: Int32) -> Int32 {
      var current = pid
      var steps = 0
      while let entry = byPid[current], entry.pidDepth > 0, steps <= byPid.count {
        if entry.nestedPids?.last == 1 { return current }
        current = entry.ppid
        steps += 1
      }
      return 0
    }

    /// `target`'s pid as process `viewer` names it (pidfd_open, setpgid inside it); nil
    /// when `viewer`'s pid namespace does not see `target`.
    func pid(of target: Int32, seenBy viewer: Int32) -> Int32? {
      guard let viewerEntry = byPid[viewer] else { return target }
      // Not in the bundle (a restore helper): in the container's namespace.
      guard let targetEntry = byPid[target] else { return viewerEntry.pidDepth == 0 ? target : nil }
      let depth = viewerEntry.pidDepth
      guard targetEntry.pidDepth >= depth else { return nil }
      let wanted = namespace(of: viewer)
      // Up from the target's namespace to the viewer's depth: it must be the viewer's.
      var space = namespace(of: target)
      while let entry = byPid[space], entry.pidDepth > depth { space = namespace(of: entry.ppid) }
      guard space == wanted else { return nil }
      return targetEntry.pidChain[depth]
    }

    /// The set_tid array of clone3 for `entry` (innermost first), and whether it is the init
    /// of a new namespace (CLONE_NEWPID).
    static func setTid(_ entry: TaskEntryImage) -> (ids: [Int32], newNamespace: Bool) {
      (entry.pidChain.reversed(), entry.nestedPids?.last == 1)
    }

    /// The set_tid array of thread `index` of `entry`, innermost first.
    static func setTid(thread index: Int, of entry: TaskEntryImage) -> [Int32] {
      ([entry.threads[index]] + (entry.nestedThreads?[index] ?? [])).reversed()
    }

    /// Checks the nested pids of a bundle (untrusted): chains as long as the threads' and
    /// each other's, an init's parent one namespace up, everyone else's in its namespace,
    /// roots in the container's, no pid twice in one namespace.
    func validate() throws(CKError) {
      func bad(_ pid: Int32, _ what: String) -> CKError {
        CKError(.badInput, "the bundle is inconsistent: task \(pid): \(what)")
      }
      var used: Set<[Int32]> = []
      for entry in byPid.values.sorted(by: { $0.pid < $1.pid }) {
        let depth = entry.pidDepth
        if let nested = entry.nestedPids {
          guard (1...30).contains(nested.count), nested.allSatisfy({ (1...4_194_304).contains($0) }) else {
            throw bad(entry.pid, "bad nested pids")
          }
        }
        if let threads = entry.nestedThreads {
          guard entry.nestedPids != nil, threads.count == entry.threads.count, threads.first == entry.nestedPids,
            threads.allSatisfy({ $0.count == depth && $0.allSatisfy { (1...4_194_304).contains($0) } })
          else { throw bad(entry.pid, "nested thread ids do not match its pids") }
        } else if depth > 0 && entry.zombieStatus == nil {
          throw bad(entry.pid, "nested pids without nested thread ids")
        }
        if depth > 0 {
          guard entry.ppid != 0, let parent = byPid[entry.ppid] else {
            throw bad(entry.pid, "a nested pid namespace without a parent")
          }
          let isInit = entry.nestedPids?.last == 1
          guard parent.pidDepth == depth - (isInit ? 1 : 0) else {
            throw bad(entry.pid, "its nested pids do not fit its parent's")
          }
        }
        if let initPid = entry.childPidNamespaceInit {
          guard let child = byPid[initPid], child.ppid == entry.pid, child.nestedPids?.last == 1 else {
            throw bad(entry.pid, "its children's pid namespace has no init among them")
          }
        }
        // The namespace (by its init) and the pid in it: unique.
        guard used.insert([namespace(of: entry.pid), entry.pidChain.last ?? 0]).inserted || entry.pidDepth == 0 else {
          throw bad(entry.pid, "its pid repeats in its pid namespace")
        }
      }
    }
  }

  /// Who calls setpgid for process `pid` joining `group` (0: a group of its own), and the
  /// ids as that caller names them: the process itself when its pid namespace sees the
  /// group, else its parent, which may move a child that has not exec'd.
  static func groupJoin(pid: Int32, group: Int32, layout: Layout) throws(CKError) -> (
    caller: Int32, pid: Int32, group: Int32
  ) {
    if group == 0 { return (pid, 0, 0) }
    if let seen = layout.pid(of: group, seenBy: pid) { return (pid, 0, seen) }
    if let parent = layout.byPid[pid]?.ppid, parent != 0, let child = layout.pid(of: pid, seenBy: parent),
      let seen = layout.pid(of: group, seenBy: parent)
    {
      return (parent, child, seen)
    }
    throw CKError(
      .failed, "process \(pid) is in process group \(group), which neither its pid namespace nor its parent's sees",
      hint: "ckcont restores groups across pid namespaces only one level deep")
  }

  /// Makes process `entry` (forked already) bring its children into the namespace of its
  /// child init again, as unshare(CLONE_NEWPID) had (setns on a pidfd of that init).
  static func enterChildNamespace(_ entry: TaskEntryImage, injector: Injector, layout: Layout) throws {
    guard let initPid = entry.childPidNamespaceInit, let seen = layout.pid(of: initPid, seenBy: entry.pid) else {
      return
    }
    injector.resetData()
    var batch = Injector.Batch()
    let pidfd = batch.add(.pidfdOpen(seen))
    batch.add(
      .setns(.result(pidfd), Int32(CK_CLONE_NEWPID)),
      "setns(pid of \(initPid)) for the children of process \(entry.pid)")
    batch.add(.close(.result(pidfd)), "close the pidfd of \(seen)")
    try injector.run(batch)
  }
}
