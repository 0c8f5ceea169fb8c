import Foundation
import Glibc
import Linux
import TestSupport
import Testing

@testable import Cgroup

/// Freezing real task populations on both cgroup versions. Serialized: each test runs ~50
/// tasks and must observe quiet counters.
@Suite(.serialized)
struct FreezerTests {
  /// Three levels of nesting, 49 tasks: sleepers everywhere, a four-thread task, a task that
  /// forks continuously and a busy spinner.
  static let population = [
    ".:sleep:10", "a:sleep:10", "a:threads:1", "a/b:sleep:10", "a/b:forker:1", "a/b/c:sleep:15", "a/b/c:spin:1",
  ]

  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func freezesANestedSubtreeAndThawsIt(version: ScratchCgroup.Version) throws {
    let scratch = try ScratchCgroup(version)
    defer { scratch.destroy() }
    try scratch.makeChildren("a/b/c")
    let counters = Counters()
    defer { counters.remove() }
    let specs = Self.population.map { spec -> String in
      let (dir, rest) = spec.split(separator: ":", maxSplits: 1).map(String.init).pair
      return (dir == "." ? scratch.path : scratch.path + "/" + dir) + ":" + rest
    }
    let swarm = try BackgroundProcess([try FixturePrograms.path("swarm"), counters.path, scratch.path] + specs)
    defer { swarm.stop() }
    let ready = try swarm.waitForLine(startingWith: "ready")
    #expect(ready == "ready 49")

    let cgroup = try Cgroup.resolve(scratch.path, in: .current())
    let report = try Freezer.freeze(cgroup, timeout: 5)
    #expect(!report.wasFrozen)
    #expect(report.processes >= 49)
    #expect(report.threads >= 53)

    // The kernel reports every descendant frozen, and every thread sits in the freezer.
    for dir in scratch.subtree() {
      let relative = dir == scratch.path ? "." : String(dir.dropFirst(scratch.path.count + 1))
      if version == .v2 {
        #expect(scratch.read("cgroup.events", in: relative).contains("frozen 1"), "\(relative)")
      } else {
        #expect(scratch.read("freezer.state", in: relative).hasPrefix("FROZEN"), "\(relative)")
      }
    }
    #expect(try Freezer.unfrozenTasks(cgroup).isEmpty)

    // Nothing runs for 300 ms.
    let frozen = counters.read(slots: 49)
    usleep(300_000)
    #expect(counters.read(slots: 49) == frozen)

    // Freezing again is a no-op that succeeds.
    #expect(try Freezer.freeze(cgroup, timeout: 1).wasFrozen)

    try Freezer.thaw(cgroup)
    usleep(300_000)
    let thawed = counters.read(slots: 49)
    for slot in 0..<49 {
      #expect(thawed[slot] > frozen[slot], "slot \(slot) did not move after thaw")
    }
    #expect(try !Freezer.isFrozen(cgroup))
  }

  @Test(arguments: [ScratchCgroup.Version.v2, .v1])
  func aTaskThatCannotFreezeTimesOutAndThawsTheGroup(version: ScratchCgroup.Version) throws {
    let scratch = try ScratchCgroup(version)
    defer { scratch.destroy() }
    let mountDir = NSTemporaryDirectory() + "ckcont-fuse-\(UUID().uuidString)"
    try FileManager.default.createDirectory(atPath: mountDir, withIntermediateDirectories: false)
    // The daemon mounts in a mount namespace of its own: the mount goes with it.
    defer { rmdir(mountDir) }
    let daemon = try BackgroundProcess([try FixturePrograms.path("fuse-hang"), mountDir, scratch.path])
    defer { daemon.stop() }
    let ready = try daemon.waitForLine(startingWith: "ready ")
    let victim = ready.split(separator: " ").last.map(String.init) ?? "?"

    let cgroup = try Cgroup.resolve(scratch.path, in: .current())
    let start = monotonicNow()
    let error = #expect(throws: CKError.self) { try Freezer.freeze(cgroup, timeout: 0.5) }
    #expect(monotonicNow() - start < 3)
    let message = error?.description ?? ""
    #expect(message.contains("did not freeze within 500 ms"), "\(message)")
    #expect(message.contains("\(victim) (fuse-hang, state D"), "\(message)")
    #expect(message.contains("thawed it again"))
    #expect(try !Freezer.isFrozen(cgroup))
    if version == .v2 {
      #expect(scratch.read("cgroup.freeze").hasPrefix("0"))
    } else {
      #expect(scratch.read("freezer.state").hasPrefix("THAWED"))
    }
  }

  @Test func refusesHierarchiesThatCannotFreeze() throws {
    let mounts = try CgroupMounts.current()
    let memory = try ScratchCgroup(.v1, controller: "memory")
    defer { memory.destroy() }
    let noFreezer = try Cgroup.resolve(memory.path, in: mounts)
    let error = #expect(throws: CKError.self) { try Freezer.freeze(noFreezer, timeout: 1) }
    #expect(error?.message.contains("without the freezer controller") == true)
    #expect(error?.hint?.contains("/sys/fs/cgroup/freezer/") == true)

    let root = try Cgroup.resolve("/sys/fs/cgroup/unified", in: mounts)
    let rootError = #expect(throws: CKError.self) { try Freezer.freeze(root, timeout: 1) }
    #expect(rootError?.message.contains("root cgroup") == true)
  }
}

/// The swarm's shared counter file.
struct Counters {
  let path = NSTemporaryDirectory() + "ckcont-counters-\(UUID().uuidString)"

  func read(slots: Int) -> [UInt64] {
    guard let data = FileManager.default.contents(atPath: path), data.count >= slots * 8 else { return [] }
    return data.withUnsafeBytes { raw in (0..<slots).map { raw.load(fromByteOffset: $0 * 8, as: UInt64.self) } }
  }

  func remove() { try? FileManager.default.removeItem(atPath: path) }
}

extension Array {
  var pair: (Element, Element) { (self[0], self[1]) }
}
