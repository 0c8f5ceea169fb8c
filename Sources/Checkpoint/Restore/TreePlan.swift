import Bundle
import Linux

/// How the process tree is recreated so that every pid, parent, session and process group
/// comes back: a pure function of the dumped tree (tested without root).
///
/// A process can only be created inside the session of the process that forks it, and a
/// group can only be joined from within its session. So:
/// - a session leader forks the children that stayed in its old session *before* its
///   setsid(), the others after;
/// - a process whose session its parent cannot give it (an orphan, now a child of the
///   namespace's init or of the outside, whose real parent has exited) is forked by a
///   *helper* inside that session (forked by the live session leader, or, when the leader
///   has exited too, a helper with the leader's pid that calls setsid()); the helper exits
///   once everything is created and the orphan falls to the init, as it once did;
/// - a group whose leader has exited gets a helper with the leader's pid that creates the
///   group (setpgid(0, 0)) for the members to join, then exits.
/// Helpers are reaped by the process that forked them before any state is restored.
///
/// Zombies are planned like the living: created in their session and group (they may lead
/// one whose members live on, or be an orphan's session), and made to die only once every
/// join is done and every helper has ended (see ``Restore/makeZombie``).
struct TreePlan {
  enum Step: Equatable {
    /// Fork `pid` (a dumped process or a helper) from the already created `parent`; a root
    /// process (`parent` 0) is created by ckcont itself.
    case fork(pid: Int32, parent: Int32)
    /// setsid() in `pid`.
    case setsid(Int32)
  }

  /// A process that exists only during the restore.
  struct Helper: Equatable {
    var pid: Int32
    var parent: Int32
    /// It creates the group of its pid (setpgid(0, 0)) for members whose leader exited.
    var leadsGroup: Bool
  }

  /// Creation in order: forks and setsids.
  var steps: [Step] = []
  var helpers: [Helper] = []
  /// setpgid(0, group) in `pid`, group leaders (and helpers leading groups) first.
  var joins: [(pid: Int32, group: Int32)] = []

  /// The dumped processes (living and zombies), each with its parent's pid inside the
  /// container (0 when outside). `ownPidNamespace`: ids are the namespace's own (0 = outside
  /// it); otherwise only ids of dumped processes are known to be the container's. `isFree`
  /// tells whether a pid may be given to a helper.
  init(tasks: [TaskEntryImage], ownPidNamespace: Bool, isFree: (Int32) -> Bool) throws(CKError) {
    var builder = try Builder(tasks: tasks, ownPidNamespace: ownPidNamespace)
    for root in builder.roots {
      // A root in a session of the container (its leader still lives inside) waits for it.
      if root.sid != root.pid && builder.isInside(root.sid) {
        builder.deferred.append(root)
      } else {
        builder.fork(root, from: 0)
      }
    }
    try builder.placeOrphans(isFree: isFree)
    guard
      builder.plan.steps.filter({ if case .fork = $0 { true } else { false } }).count
        == tasks.count + builder.plan.helpers.count
    else {
      throw CKError(.badInput, "the bundle's process tree is broken: some processes are unreachable")
    }
    try builder.planGroups(isFree: isFree)
    self = builder.plan
  }

  private init() {}

  /// The plan as it is made, with what making it needs to know.
  private struct Builder {
    var plan = TreePlan()
    let byPid: [Int32: TaskEntryImage]
    let ownPidNamespace: Bool
    /// The processes without a parent in the container, by pid.
    let roots: [TaskEntryImage]
    /// Each process's children, by pid.
    var children: [Int32: [TaskEntryImage]] = [:]
    /// The session each created process is in now.
    var session: [Int32: Int32] = [:]
    /// Processes their parent cannot give their session: forked later by a helper.
    var deferred: [TaskEntryImage] = []
    var taken: Set<Int32>

    /// Checks the tree's shape: unique pids, parents that exist and live, one init in a pid
    /// namespace of its own.
    init(tasks: [TaskEntryImage], ownPidNamespace: Bool) throws(CKError) {
      byPid = Dictionary(tasks.map { ($0.pid, $0) }, uniquingKeysWith: { first, _ in first })
      self.ownPidNamespace = ownPidNamespace
      taken = Set(tasks.map(\.pid))
      guard byPid.count == tasks.count else { throw CKError(.badInput, "the bundle's process tree repeats a pid") }
      if let zombie = tasks.first(where: { $0.zombieStatus != nil && $0.ppid == 0 }) {
        throw CKError(.badInput, "the bundle's zombie \(zombie.pid) has no parent to reap it")
      }
      roots = tasks.filter { $0.ppid == 0 }.sorted { $0.pid < $1.pid }
      if ownPidNamespace {
        guard roots.count == 1, let root = roots.first, root.pid == 1 else {
          throw CKError(
            .badInput, "the bundle's pid namespace has \(roots.count) processes without a parent and no init",
            hint: "dump the cgroup that holds the namespace's init")
        }
      }
      guard !roots.isEmpty else { throw CKError(.badInput, "the bundle's process tree has no root") }
      for task in tasks where task.ppid != 0 {
        guard let parent = byPid[task.ppid] else {
          throw CKError(.badInput, "process \(task.pid) has no parent \(task.ppid) in the bundle")
        }
        guard parent.zombieStatus == nil else {
          throw CKError(.badInput, "process \(task.pid) has the zombie \(task.ppid) as its parent")
        }
        children[task.ppid, default: []].append(task)
      }
      for key in children.keys { children[key]?.sort { $0.pid < $1.pid } }
    }

    /// A session or group id is the container's own when a dumped process has it as pid,
    /// or, in its own pid namespace, when it is not 0 (the id of something outside it).
    func isInside(_ id: Int32) -> Bool { byPid[id] != nil || (ownPidNamespace && id != 0) }

    /// Forks `task` and, depth first, its children that can be forked from it.
    mutating func fork(_ task: TaskEntryImage, from parent: Int32) {
      plan.steps.append(.fork(pid: task.pid, parent: parent))
      session[task.pid] = parent == 0 ? 0 : session[parent] ?? 0
      let own = children[task.pid] ?? []
      if task.sid == task.pid {
        // Children that stayed in the old session are forked before setsid().
        let inherited = session[task.pid]
        for child in own where child.sid == inherited && child.sid != child.pid { fork(child, from: task.pid) }
        plan.steps.append(.setsid(task.pid))
        session[task.pid] = task.pid
      }
      for child in own where session[child.pid] == nil {
        if child.sid == child.pid || child.sid == session[task.pid] || !isInside(child.sid) {
          fork(child, from: task.pid)
        } else {
          deferred.append(child)
        }
      }
    }

    /// A pid above `start` that no process and no helper has.
    mutating func freePid(after start: Int32, isFree: (Int32) -> Bool) throws(CKError) -> Int32 {
      var candidate = start
      while candidate < 4_194_304 {
        candidate += 1
        if !taken.contains(candidate) && isFree(candidate) {
          taken.insert(candidate)
          return candidate
        }
      }
      throw CKError(.failed, "no free pid for a restore helper")
    }

    /// Orphans: forked by a helper inside their session, which then exits.
    mutating func placeOrphans(isFree: (Int32) -> Bool) throws(CKError) {
      var index = 0
      while index < deferred.count {
        let orphan = deferred[index]
        index += 1
        guard orphan.ppid == 0 || byPid[orphan.ppid]?.ppid == 0 else {
          throw CKError(
            .badInput,
            "process \(orphan.pid) is in session \(orphan.sid), which neither its parent \(orphan.ppid) nor an init above it is in",
            hint: "ckcont recreates such orphans only as children of the container's init")
        }
        // The orphan's own descendants follow it as usual; orphans among them are appended.
        fork(orphan, from: try sessionHelper(for: orphan, isFree: isFree))
      }
    }

    /// The helper that forks `orphan` inside its session, made if need be.
    private mutating func sessionHelper(for orphan: TaskEntryImage, isFree: (Int32) -> Bool) throws(CKError)
      -> Int32
    {
      if plan.helpers.contains(where: { $0.pid == orphan.sid }) {
        // The helper that took an exited leader's pid for an earlier orphan.
        return orphan.sid
      }
      if session[orphan.sid] == orphan.sid {
        // The leader lives: a helper with a free pid, forked by the leader.
        let pid = try freePid(after: taken.max() ?? 1, isFree: isFree)
        plan.steps.append(.fork(pid: pid, parent: orphan.sid))
        session[pid] = orphan.sid
        plan.helpers.append(Helper(pid: pid, parent: orphan.sid, leadsGroup: false))
        return pid
      }
      // The leader has exited: a helper takes its pid and starts the session again.
      guard byPid[orphan.sid] == nil, !taken.contains(orphan.sid), isFree(orphan.sid), let parent = roots.first?.pid
      else {
        throw CKError(
          .failed, "the session \(orphan.sid) of process \(orphan.pid) cannot be recreated: its id is taken")
      }
      taken.insert(orphan.sid)
      plan.steps.append(.fork(pid: orphan.sid, parent: ownPidNamespace ? parent : 0))
      plan.steps.append(.setsid(orphan.sid))
      session[orphan.sid] = orphan.sid
      plan.helpers.append(Helper(pid: orphan.sid, parent: ownPidNamespace ? parent : 0, leadsGroup: false))
      return orphan.sid
    }

    /// Groups: leaders first; a group whose leader exited gets a helper with its pid,
    /// forked by its first member (so it is in the members' session).
    mutating func planGroups(isFree: (Int32) -> Bool) throws(CKError) {
      let creationOrder = plan.steps.compactMap { step -> TaskEntryImage? in
        if case .fork(let pid, _) = step { return byPid[pid] } else { return nil }
      }
      var groupLeaders: Set<Int32> = []
      for task in creationOrder where task.pgid == task.pid && task.sid != task.pid {
        plan.joins.append((task.pid, 0))
        groupLeaders.insert(task.pid)
      }
      for task in creationOrder where task.pgid != task.pid && task.sid != task.pid && isInside(task.pgid) {
        let group = task.pgid
        if byPid[group] == nil && !groupLeaders.contains(group) {
          if let index = plan.helpers.firstIndex(where: { $0.pid == group }) {
            // A session helper with the same pid leads the group already, through setsid().
            plan.helpers[index].leadsGroup = true
          } else {
            guard isFree(group) && !taken.contains(group) else {
              throw CKError(
                .failed, "the process group \(group) of process \(task.pid) cannot be recreated: its id is taken")
            }
            taken.insert(group)
            plan.steps.append(.fork(pid: group, parent: task.pid))
            plan.helpers.append(Helper(pid: group, parent: task.pid, leadsGroup: true))
            plan.joins.insert((group, 0), at: 0)
          }
          groupLeaders.insert(group)
        }
        plan.joins.append((task.pid, group))
      }
    }
  }
}
