import Bundle
import Linux
import Testing

@testable import Checkpoint

/// The order in which restore recreates a process tree, pinned without root: sessions,
/// groups, orphans and helpers for leaders that exited.
struct TreePlanTests {
  /// (pid, ppid, pgid, sid) of a dumped process.
  func task(_ pid: Int32, _ ppid: Int32, _ pgid: Int32, _ sid: Int32) -> TaskEntryImage {
    TaskEntryImage(
      pid: pid, namespacePids: [pid + 1000, pid], ppid: ppid, pgid: pgid, sid: sid, threads: [pid], cgroup: ".",
      comm: "t")
  }

  @Test func parentsBeforeChildrenAndSessionLeadersStartTheirSessionFirst() throws {
    // 1 (outside session 0) -> 2 (leads session 2) -> 3 (session 2); 1 -> 4 (own group).
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), task(2, 1, 2, 2), task(3, 2, 2, 2), task(4, 1, 4, 0)], ownPidNamespace: true,
      isFree: { _ in true })
    #expect(
      plan.steps == [
        .fork(pid: 1, parent: 0), .fork(pid: 2, parent: 1), .setsid(2), .fork(pid: 3, parent: 2),
        .fork(pid: 4, parent: 1),
      ])
    #expect(plan.helpers.isEmpty)
    #expect(plan.joins.map { [$0.pid, $0.group] } == [[4, 0], [3, 2]])
  }

  @Test func aChildThatStayedInTheOldSessionIsForkedBeforeSetsid() throws {
    // 2 forked 3, then called setsid(): 3 is still in 1's session (0).
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), task(2, 1, 2, 2), task(3, 2, 0, 0)], ownPidNamespace: true, isFree: { _ in true })
    #expect(plan.steps == [.fork(pid: 1, parent: 0), .fork(pid: 2, parent: 1), .fork(pid: 3, parent: 2), .setsid(2)])
  }

  @Test func anOrphanInALiveLeadersSessionComesThroughAHelper() throws {
    // 5 was forked by a child of session leader 2 (in group 4, whose leader exited), then
    // orphaned to 1.
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), task(2, 1, 2, 2), task(5, 1, 4, 2)], ownPidNamespace: true, isFree: { _ in true })
    #expect(
      plan.steps == [
        .fork(pid: 1, parent: 0), .fork(pid: 2, parent: 1), .setsid(2),
        .fork(pid: 6, parent: 2), .fork(pid: 5, parent: 6),  // helper 6 in session 2 forks the orphan
        .fork(pid: 4, parent: 5),  // helper 4 re-creates the group
      ])
    #expect(
      plan.helpers == [
        .init(pid: 6, parent: 2, leadsGroup: false), .init(pid: 4, parent: 5, leadsGroup: true),
      ])
    #expect(plan.joins.map { [$0.pid, $0.group] } == [[4, 0], [5, 4]])
  }

  /// A zombie of the bundle: dead with exit status 0.
  func zombie(_ pid: Int32, _ ppid: Int32, _ pgid: Int32, _ sid: Int32) -> TaskEntryImage {
    var entry = task(pid, ppid, pgid, sid)
    entry.threads = []
    entry.zombieStatus = 0
    return entry
  }

  @Test func aHelperNeverTakesTheZombiesPid() throws {
    // The orphan 5 needs a helper in session 2; pid 6 is a zombie, created with the others.
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), task(2, 1, 2, 2), task(5, 1, 2, 2), zombie(6, 1, 0, 0)], ownPidNamespace: true,
      isFree: { _ in true })
    #expect(plan.helpers == [.init(pid: 7, parent: 2, leadsGroup: false)])
  }

  @Test func aZombieLeadsTheSessionAndGroupOfItsLiveMembers() throws {
    // Zombie 2 made session 2 and forked 3, which fell to 1; zombie 4 leads group 4 with 5.
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), zombie(2, 1, 2, 2), task(3, 1, 2, 2), zombie(4, 1, 4, 0), task(5, 1, 4, 0)],
      ownPidNamespace: true, isFree: { _ in true })
    #expect(
      plan.steps == [
        .fork(pid: 1, parent: 0), .fork(pid: 2, parent: 1), .setsid(2), .fork(pid: 4, parent: 1),
        .fork(pid: 5, parent: 1),
        .fork(pid: 6, parent: 2), .fork(pid: 3, parent: 6),  // helper 6 in the zombie's session forks 3
      ])
    #expect(plan.helpers == [.init(pid: 6, parent: 2, leadsGroup: false)])
    #expect(plan.joins.map { [$0.pid, $0.group] } == [[4, 0], [5, 4], [3, 2]])
  }

  @Test func orphansOfAnExitedSessionLeaderGetAHelperWithItsPid() throws {
    // Session 7 (leader exited) holds orphans 8 and 9 (group 7) and 8's child 10.
    let plan = try TreePlan(
      tasks: [task(1, 0, 0, 0), task(8, 1, 7, 7), task(9, 1, 7, 7), task(10, 8, 7, 7)], ownPidNamespace: true,
      isFree: { _ in true })
    #expect(
      plan.steps == [
        .fork(pid: 1, parent: 0), .fork(pid: 7, parent: 1), .setsid(7), .fork(pid: 8, parent: 7),
        .fork(pid: 10, parent: 8), .fork(pid: 9, parent: 7),
      ])
    #expect(plan.helpers == [.init(pid: 7, parent: 1, leadsGroup: true)])
    #expect(plan.joins.map { [$0.pid, $0.group] } == [[8, 7], [10, 7], [9, 7]])
  }

  @Test func aTreeThatCannotBeRecreatedIsRefused() {
    // An orphan in another session below a process that is not the init.
    #expect(throws: CKError.self) {
      try TreePlan(
        tasks: [task(1, 0, 0, 0), task(2, 1, 2, 2), task(3, 1, 3, 3), task(4, 3, 2, 2)], ownPidNamespace: true,
        isFree: { _ in true })
    }
    // A pid namespace without its init.
    #expect(throws: CKError.self) {
      try TreePlan(tasks: [task(2, 0, 2, 2)], ownPidNamespace: true, isFree: { _ in true })
    }
    // A child of a zombie, a zombie without a parent.
    #expect(throws: CKError.self) {
      try TreePlan(
        tasks: [task(1, 0, 0, 0), zombie(2, 1, 0, 0), task(3, 2, 0, 0)], ownPidNamespace: true, isFree: { _ in true })
    }
    #expect(throws: CKError.self) {
      try TreePlan(tasks: [task(1, 0, 0, 0), zombie(2, 0, 0, 0)], ownPidNamespace: false, isFree: { _ in true })
    }
    // A parent that is not in the bundle.
    #expect(throws: CKError.self) {
      try TreePlan(tasks: [task(1, 0, 0, 0), task(3, 2, 0, 0)], ownPidNamespace: true, isFree: { _ in true })
    }
  }

  @Test func onTheHostSeveralRootsAreCreatedByCkcont() throws {
    let plan = try TreePlan(
      tasks: [task(300, 0, 300, 300), task(200, 0, 50, 50), task(301, 300, 300, 300)], ownPidNamespace: false,
      isFree: { _ in true })
    #expect(
      plan.steps == [
        .fork(pid: 200, parent: 0), .fork(pid: 300, parent: 0), .setsid(300), .fork(pid: 301, parent: 300),
      ])
    // Group 50 is led from outside the container: left alone.
    #expect(plan.joins.map { [$0.pid, $0.group] } == [[301, 300]])
  }
}
