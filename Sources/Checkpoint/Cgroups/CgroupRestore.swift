import Bundle
import Cgroup
import Glibc
import Linux
import Logging
import Synchronization

/// Where a restore puts the container: in each hierarchy of the bundle, its top cgroup (the
/// dumped path, or the root asked for) and the subtree below it. The subtree is made before
/// any task exists, because v2 enables controllers only in cgroups without processes. Like
/// CRIU's default ("soft") mode, limits are written only into cgroups the restore creates;
/// an existing top must be empty. Everything created is removed again if the restore fails.
/// The no-op moves of ``TargetCgroups/startPrimingMoves()``, until stopped.
final class CgroupPrimer {
  let stopped = Atomic<Bool>(false)
  fileprivate var job: BackgroundJob<Void>?

  /// Ends the moves and waits for the last.
  func stop() {
    stopped.store(true, ordering: .relaxed)
    _ = try? job?.wait()
  }
}

final class TargetCgroups {
  /// The top in the hierarchy the container was dumped from, which freezes and thaws it.
  let main: Cgroup
  private let tops: [(image: CgroupHierarchyImage, top: Cgroup)]
  /// Directories this restore made, parents first.
  private var created: [String] = []
  /// Where each is journaled before it is made, for a restore that dies midway.
  var journal: RestoreJournal?

  /// `root` is a path inside the hierarchies (`/web`) used for every hierarchy; nil keeps
  /// each hierarchy's dumped path.
  init(image: CgroupTreeImage, root: String?) throws {
    let mounts = try CgroupMounts.current()
    var tops: [(CgroupHierarchyImage, Cgroup)] = []
    for (index, hierarchyImage) in image.hierarchies.enumerated() {
      let hierarchy: CgroupHierarchy?
      if hierarchyImage.version == "v2" {
        hierarchy = mounts.unified
      } else if index == 0 {
        hierarchy = mounts.v1("freezer")
      } else {
        hierarchy = mounts.hierarchies.first {
          $0.version == .v1 && Set($0.controllers) == Set(hierarchyImage.controllers)
        }
      }
      let name = index == 0 && hierarchyImage.version == "v1" ? "freezer" : hierarchyImage.key
      guard let hierarchy else {
        throw CKError(
          .failed,
          "this host mounts no cgroup \(hierarchyImage.version) hierarchy for \(name), which the container used",
          hint: "mount the cgroup hierarchies the source host had")
      }
      let path = root ?? hierarchyImage.root
      let top = Cgroup(hierarchy: hierarchy, path: path == "/" ? hierarchy.mountPoint : hierarchy.mountPoint + path)
      if PseudoFile.isDirectory(top.path) {
        let busy = try top.processes()
        guard busy.isEmpty else {
          throw CKError(
            .badInput, "the cgroup \(top.path) already holds \(busy.count) processes",
            hint: "restore under another root with --cgroup-root, or stop what runs there")
        }
      }
      tops.append((hierarchyImage, top))
    }
    guard let first = tops.first else { throw CKError(.badInput, "the bundle names no cgroup") }
    main = first.1
    self.tops = tops
    try Freezer.checkFreezable(main)
  }

  /// Creates the subtrees and writes the settings of the cgroups it creates (and the
  /// controllers enabled below an existing one), parents first.
  func prepare(log: Logger) throws {
    for (image, top) in tops {
      for group in image.groups {
        let directory = group.path == "." ? top : top.child(group.path)
        let fresh = try makeDirectories(upTo: directory.path, from: top.hierarchy.mountPoint)
        let settings = group.settings.map { CgroupSetting(name: $0.name, value: $0.value) }
        try directory.apply(fresh ? settings : settings.filter { $0.name == "cgroup.subtree_control" })
        if fresh && !settings.isEmpty { log.debug("cgroup \(directory.path): \(settings.count) settings") }
      }
    }
  }

  /// The container's top cgroups where they move (under `--cgroup-root`): the dumped
  /// directory and the new one, for each hierarchy. Bind mounts of the old (runc's cgroup
  /// mounts) follow.
  var moves: [(from: String, to: String)] {
    tops.compactMap { image, top in
      let dumped = top.hierarchy.mountPoint + (image.root == "/" ? "" : image.root)
      return dumped == top.path ? nil : (dumped, top.path)
    }
  }

  /// The directory of `entry`'s cgroup in the main hierarchy (created by ``prepare``).
  func mainDirectory(of entry: TaskEntryImage) -> String {
    entry.cgroup == "." ? main.path : main.path + "/" + entry.cgroup
  }

  /// Moves `pid` into its cgroups: in the main hierarchy by its entry, elsewhere where the
  /// bundle lists it. A process forked by `parent` (the bundle pid) is already in the
  /// parent's cgroups: only those that differ are written (a migration is not free).
  func place(_ pid: Int32, entry: TaskEntryImage, parent: TaskEntryImage? = nil) throws {
    for file in try procsFiles(for: entry, parent: parent) { try PseudoFile.write(file, "\(pid)") }
  }

  /// ``place(_:entry:parent:)`` with the moves on a thread of their own, for the caller to
  /// await before the task's cgroups matter: the first cgroup move in a while waits out an
  /// RCU grace period (cgroup_threadgroup_rwsem's writer: 10-25 ms here, most of a small
  /// restore's time), which the caller's own work can overlap.
  func startPlacing(_ pid: Int32, entry: TaskEntryImage) throws -> BackgroundJob<Void> {
    let files = try procsFiles(for: entry, parent: nil)
    return BackgroundJob(named: "ckcont-cgroup-move") {
      for file in files { try PseudoFile.write(file, "\(pid)") }
    }
  }

  /// Keeps moving ckcont into the cgroup it is in already (a move that changes nothing)
  /// while a restore reads its bundle and makes its tree: the kernel waits out the grace
  /// period of the first move in a while (see ``startPlacing(_:entry:)``) in the first of
  /// these, and a real move within ~10 ms (measured) of one takes ~0.2 ms instead of 10-25.
  /// One every ``primingInterval`` until ``CgroupPrimer/stop()``, at most for
  /// ``primingLimit``. Best effort: errors are ignored, and a move simply pays the wait.
  static func startPrimingMoves() -> CgroupPrimer {
    let primer = CgroupPrimer()
    primer.job = BackgroundJob(named: "ckcont-cgroup-prime") { [primer] in
      guard let mounts = try? CgroupMounts.current(),
        let hierarchy = mounts.searchOrder.first,
        let own = try? mounts.cgroup(of: getpid(), in: hierarchy)
      else { return }
      let deadline = monotonicNow() + primingLimit
      while !primer.stopped.load(ordering: .relaxed) && monotonicNow() < deadline {
        try? PseudoFile.write(own.path + "/cgroup.procs", "\(getpid())")
        usleep(useconds_t(primingInterval * 1_000_000))
      }
    }
    return primer
  }

  /// A move every 5 ms keeps the kernel's rcu_sync "passed" (it lapses after ~10-20 ms);
  /// each takes the lock that forks take too, for ~0.2 ms.
  static let primingInterval = 0.005
  static let primingLimit = 2.0

  /// The cgroup.procs files that move a task of `entry` where it belongs, its main cgroup's
  /// directories made first.
  private func procsFiles(for entry: TaskEntryImage, parent: TaskEntryImage?) throws -> [String] {
    var files: [String] = []
    if entry.cgroup != parent?.cgroup {
      let directory = mainDirectory(of: entry)
      _ = try makeDirectories(upTo: directory, from: main.hierarchy.mountPoint)
      files.append(directory + "/cgroup.procs")
    }
    for (image, top) in tops.dropFirst() {
      guard let group = image.groups.first(where: { $0.processes.contains(entry.pid) }) else { continue }
      if let parent, group.processes.contains(parent.pid) { continue }
      files.append((group.path == "." ? top.path : top.path + "/" + group.path) + "/cgroup.procs")
    }
    return files
  }

  /// mkdir of every missing directory from below `mountPoint` down to `path`; true when
  /// `path` itself was made now.
  private func makeDirectories(upTo path: String, from mountPoint: String) throws -> Bool {
    var current = mountPoint
    var madeLast = false
    for part in path.dropFirst(mountPoint.count).split(separator: "/") {
      current += "/\(part)"
      if !PseudoFile.isDirectory(current) { try journal?.willMake(current) }
      if mkdir(current, 0o755) == 0 {
        created.append(current)
        madeLast = true
      } else if errno == EEXIST {
        madeLast = false
      } else {
        throw CKError(.failed, "cannot create the cgroup \(current): \(String(cString: strerror(errno)))")
      }
    }
    return madeLast
  }

  /// Removes the cgroups this restore made, children first, once their tasks are gone.
  func removeCreated() {
    for path in created.reversed() {
      for _ in 0..<200 {
        if rmdir(path) == 0 || errno == ENOENT { break }
        usleep(5000)
      }
    }
  }
}
