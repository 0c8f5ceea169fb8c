// `ckcont-bench freeze`: freeze and thaw latency of 1, 100 and 1000 idle tasks, v2 and v1.
import Cgroup
import Foundation
import Glibc
import Linux

/// A population of `tasks` idle tasks (the swarm fixture, kind `pause`) in a fresh cgroup.
final class Population {
  let cgroup: Cgroup
  let swarm: Child
  let log: String

  init(swarm: String, hierarchy: CgroupHierarchy, tasks: Int) throws {
    let path = "\(hierarchy.mountPoint)/ckcont-bench-\(getpid())-\(tasks)"
    guard mkdir(path, 0o755) == 0 else { throw CKError(.failed, "mkdir \(path): \(String(cString: strerror(errno)))") }
    cgroup = Cgroup(hierarchy: hierarchy, path: path)
    log = NSTemporaryDirectory() + "ckcont-bench-swarm-\(getpid())-\(tasks).log"
    self.swarm = try Child([swarm, "-", path] + (tasks > 1 ? ["\(path):pause:\(tasks - 1)"] : []), stdout: log)
    try waitForLine("ready", in: log, of: self.swarm.pid, timeout: 60)
  }

  func destroy() {
    try? Freezer.thaw(cgroup)
    for _ in 0..<1000 {
      if cgroup.version == .v2 {
        try? PseudoFile.write(cgroup.file("cgroup.kill"), "1")
      } else {
        for pid in (try? cgroup.processIDs()) ?? [] { kill(pid, SIGKILL) }
      }
      if rmdir(cgroup.path) == 0 { break }
      usleep(5000)
    }
    _ = try? swarm.wait(timeout: 10)
    unlink(log)
  }
}

func median(_ values: [Double]) -> Double {
  let sorted = values.sorted()
  return sorted.count % 2 == 1
    ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
}

func benchFreeze(swarm: String, runs: Int) throws {
  let mounts = try CgroupMounts.current()
  let hierarchies = [mounts.unified, mounts.v1("freezer")].compactMap { $0 }
  print(
    "freeze latency (median of \(runs) runs; idle tasks in pause(2); freeze = write until the kernel reports frozen)")
  print("tasks  cgroup   freeze ms   thaw ms")
  for tasks in [1, 100, 1000] {
    for hierarchy in hierarchies {
      let population = try Population(swarm: swarm, hierarchy: hierarchy, tasks: tasks)
      defer { population.destroy() }
      var freezes: [Double] = []
      var thaws: [Double] = []
      for _ in 0..<runs {
        let report = try Freezer.freeze(population.cgroup, timeout: 30)
        freezes.append(report.seconds * 1000)
        let start = monotonicNow()
        try Freezer.thaw(population.cgroup)
        thaws.append((monotonicNow() - start) * 1000)
      }
      let label = hierarchy.version == .v2 ? "v2" : "v1"
      print(
        String(tasks).padding(toLength: 7, withPad: " ", startingAt: 0)
          + label.padding(toLength: 9, withPad: " ", startingAt: 0)
          + String(format: "%9.3f  %8.3f", median(freezes), median(thaws)))
    }
  }
}
