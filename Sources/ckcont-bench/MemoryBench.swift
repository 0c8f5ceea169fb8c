// `ckcont-bench memory`: dump and restore throughput of the bigmem fixture as a container,
// with the bundle on a tmpfs, against the machine's own bandwidths.
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// One dump → restore → SIGTERM → PASS cycle of `bigmem <mib>`.
struct MemoryRun {
  var mib: Int
  var label: String
  var dumpSeconds = 0.0  // the whole `ckcont dump` command
  var restoreSeconds = 0.0  // the whole `ckcont restore` command
  var pageBytes = 0.0
  var bundleBytes = 0.0
  var engineSeconds = 0.0  // the dump's own totalSeconds
  var frozenSeconds = 0.0

  var dumpGBps: Double { pageBytes / dumpSeconds / 1e9 }
  var restoreGBps: Double { pageBytes / restoreSeconds / 1e9 }
}

/// What the memory benchmark runs and where.
struct MemoryBench {
  let ckcont: String
  let launch: String
  let bigmem: String
  let cgroupRoot: String  // the cgroup v2 mount
  let directory: String  // a tmpfs for the bundles

  init(fixtures: String, ckcont: String, directory: String) throws {
    self.ckcont = ckcont
    launch = fixtures + "/launch"
    bigmem = fixtures + "/bigmem"
    self.directory = directory
    for program in [ckcont, launch, bigmem] where access(program, X_OK) != 0 {
      throw CKError(.badInput, "\(program) is not an executable (build it first)")
    }
    guard let unified = try CgroupMounts.current().unified else { throw CKError(.failed, "no cgroup v2 hierarchy is mounted") }
    cgroupRoot = unified.mountPoint
    // The mount holding `directory` is the one with the longest matching mount point.
    let mount = try MountInfo.read().filter { directory == $0.mountPoint || directory.hasPrefix($0.mountPoint + "/") }
      .max { $0.mountPoint.count < $1.mountPoint.count }
    guard mount?.fsType == "tmpfs" else { throw CKError(.badInput, "\(directory) is not on a tmpfs") }
    // Restored containers are orphaned when ckcont exits: adopt them to reap them.
    _ = ck_prctl(Int32(CK_PR_SET_CHILD_SUBREAPER), 1, 0, 0, 0)
  }

  func run(mib: Int, label: String) throws -> MemoryRun {
    var fs = statvfs()
    let free = statvfs(directory, &fs) == 0 ? UInt64(fs.f_bavail) * UInt64(fs.f_bsize) : 0
    if free < UInt64(mib + 64) << 20 {
      throw CKError(.failed, "\(directory) has no room for a \(mib) MiB bundle")
    }
    let name = "ckcont-bench-\(getpid())-\(mib)-\(label)"
    let cgroup = "\(cgroupRoot)/\(name)"
    let bundle = "\(directory)/\(name).ckpt"
    let log = "/tmp/\(name).log"
    guard mkdir(cgroup, 0o755) == 0 else { throw CKError(.failed, "mkdir \(cgroup): \(String(cString: strerror(errno)))") }
    var launcher: Child?
    var restored: pid_t = 0
    defer {
      if let launcher, kill(launcher.pid, SIGKILL) == 0 { _ = try? launcher.wait(timeout: 30) }
      if restored > 0 {
        kill(restored, SIGKILL)
        _ = try? reap(restored, timeout: 30, what: "the restored bigmem")
      }
      removeCgroup(cgroup)
      unlink(bundle)
      unlink(log)
    }
    func failure(_ what: String) -> CKError {
      let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
      return CKError(.failed, "bigmem \(mib) MiB (\(label)): \(what); container output: \(output)")
    }

    let container = try Child([launch, cgroup, bigmem, "\(mib)"], stdout: log)
    launcher = container
    try waitForLine("ready", in: log, of: container.pid, timeout: 300)
    var result = MemoryRun(mib: mib, label: label)

    let dump = try runTimed([ckcont, "dump", cgroup, "-o", bundle, "--json"], scratch: "/tmp/\(name)-dump")
    guard dump.status == 0 else { throw failure("ckcont dump exited \(dump.status): \(dump.err)") }
    result.dumpSeconds = dump.seconds
    guard let report = try? JSONSerialization.jsonObject(with: Data(dump.out.utf8)) as? [String: Any],
      let pageBytes = report["pageBytes"] as? Double, let bundleBytes = report["bundleBytes"] as? Double,
      let frozen = report["frozenSeconds"] as? Double, let total = report["totalSeconds"] as? Double
    else { throw failure("ckcont dump --json printed no report: \(dump.out)") }
    guard pageBytes >= Double(mib << 20) else { throw failure("the dump saved only \(Int(pageBytes)) bytes of pages") }
    (result.pageBytes, result.bundleBytes, result.frozenSeconds, result.engineSeconds) = (pageBytes, bundleBytes, frozen, total)
    // The dump kills the container; its launcher then exits.
    try container.wait(timeout: 30)
    launcher = nil

    let restore = try runTimed([ckcont, "restore", bundle], scratch: "/tmp/\(name)-restore")
    guard restore.status == 0 else { throw failure("ckcont restore exited \(restore.status): \(restore.err)") }
    result.restoreSeconds = restore.seconds
    guard let pid = pid_t(restore.out.trimmingCharacters(in: .whitespacesAndNewlines)) else {
      throw failure("ckcont restore printed no pid: \(restore.out)")
    }
    restored = pid

    // A restore of garbage is worth nothing: bigmem verifies its checksum on SIGTERM.
    kill(pid, SIGTERM)
    let status = try reap(pid, timeout: 120, what: "the restored bigmem")
    restored = 0
    let output = (try? String(contentsOfFile: log, encoding: .utf8)) ?? ""
    guard status == 0, output.contains("PASS bigmem") else { throw failure("the restored bigmem exited \(status)") }
    return result
  }

  /// Kills what is left in the cgroup and removes it.
  func removeCgroup(_ path: String) {
    for _ in 0..<1000 {
      let fd = open(path + "/cgroup.kill", O_WRONLY)
      if fd >= 0 {
        _ = write(fd, "1", 1)
        close(fd)
      }
      if rmdir(path) == 0 || errno == ENOENT { return }
      usleep(5000)
    }
  }
}

func benchMemory(fixtures: String, ckcont: String, sizes: [Int]) throws {
  let directory = ProcessInfo.processInfo.environment["CKCONT_BENCH_TMPFS"] ?? "/dev/shm"
  let bench = try MemoryBench(fixtures: fixtures, ckcont: ckcont, directory: directory)
  let machine = try MachineBandwidth.measure(bigmem: bench.bigmem, directory: directory)
  machine.print()
  print("")
  print("memory: bigmem N MiB as a container (cgroup v2, own pid/mnt/uts/ipc namespaces), bundle on tmpfs \(directory)")
  print("  dump and restore s: the whole ckcont command; engine s: the dump's own totalSeconds; GB/s: page bytes (1e9) per s;")
  print("  cold: first run of the size; warm: same size right after (recycled pages); ratios to the warm machine bandwidths;")
  print("  every restore is verified (SIGTERM, bigmem checks its checksum, PASS)")
  print("size       run    dump s  engine s  frozen s  dump GB/s  restore s  restore GB/s  dump/readv  dump/write  restore/memcpy")
  var runs: [MemoryRun] = []
  for mib in sizes {
    for label in ["cold", "warm"] {
      let run = try bench.run(mib: mib, label: label)
      runs.append(run)
      let size = mib >= 1024 ? "\(mib >> 10) GiB" : "\(mib) MiB"
      print(
        size.padding(toLength: 11, withPad: " ", startingAt: 0) + label
          + String(
            format: "  %7.3f  %8.3f  %8.3f  %9.2f  %9.3f  %12.2f  %10.2f  %10.2f  %14.2f", run.dumpSeconds, run.engineSeconds,
            run.frozenSeconds, run.dumpGBps, run.restoreSeconds, run.restoreGBps, run.dumpGBps / machine.readv,
            run.dumpGBps / machine.writeWarm, run.restoreGBps / machine.memcpy))
      fflush(nil)
    }
  }
  print("")
  print("targets at 1 GiB: dump >= 2.3 GB/s, restore >= 2.3 GB/s (CRIU 4.2 on this machine: dump 1.55 GB/s, restore 1.57 GB/s)")
  for run in runs where run.mib == 1024 {
    print(
      String(
        format: "  1 GiB %@: dump %.2f GB/s (%@), restore %.2f GB/s (%@)", run.label, run.dumpGBps,
        run.dumpGBps >= 2.3 ? "met" : "missed", run.restoreGBps, run.restoreGBps >= 2.3 ? "met" : "missed"))
  }
}
