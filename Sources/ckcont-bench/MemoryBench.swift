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
  let containers: ContainerBench
  let bigmem: String
  var directory: String { containers.directory }

  init(fixtures: String, ckcont: String, directory: String) throws {
    bigmem = fixtures + "/bigmem"
    containers = try ContainerBench(fixtures: fixtures, ckcont: ckcont, directory: directory, programs: [bigmem])
  }

  func run(mib: Int, label: String) throws -> MemoryRun {
    var fs = statvfs()
    let free = statvfs(directory, &fs) == 0 ? UInt64(fs.f_bavail) * UInt64(fs.f_bsize) : 0
    if free < UInt64(mib + 64) << 20 {
      throw CKError(.failed, "\(directory) has no room for a \(mib) MiB bundle")
    }
    let cycle = try containers.cycle(
      name: "ckcont-bench-\(getpid())-\(mib)-\(label)", program: [bigmem, "\(mib)"], pass: "PASS bigmem",
      dumpArguments: ["--json"])
    // A restore of garbage is worth nothing: bigmem verifies its checksum on SIGTERM.
    if let failure = cycle.failure { throw CKError(.failed, "bigmem \(mib) MiB (\(label)): \(failure)") }
    guard let dumpSeconds = cycle.dumpSeconds, let restoreSeconds = cycle.restoreSeconds,
      let report = try? JSONSerialization.jsonObject(with: Data(cycle.dumpOutput.utf8)) as? [String: Any],
      let pageBytes = report["pageBytes"] as? Double, let bundleBytes = report["bundleBytes"] as? Double,
      let frozen = report["frozenSeconds"] as? Double, let total = report["totalSeconds"] as? Double
    else {
      throw CKError(.failed, "bigmem \(mib) MiB (\(label)): ckcont dump --json printed no report: \(cycle.dumpOutput)")
    }
    guard pageBytes >= Double(mib << 20) else {
      throw CKError(.failed, "bigmem \(mib) MiB (\(label)): the dump saved only \(Int(pageBytes)) bytes of pages")
    }
    var result = MemoryRun(mib: mib, label: label)
    (result.dumpSeconds, result.restoreSeconds) = (dumpSeconds, restoreSeconds)
    (result.pageBytes, result.bundleBytes, result.frozenSeconds, result.engineSeconds) = (
      pageBytes, bundleBytes, frozen, total
    )
    return result
  }
}

func benchMemory(fixtures: String, ckcont: String, sizes: [Int]) throws {
  let directory = ProcessInfo.processInfo.environment["CKCONT_BENCH_TMPFS"] ?? "/dev/shm"
  let bench = try MemoryBench(fixtures: fixtures, ckcont: ckcont, directory: directory)
  let machine = try MachineBandwidth.measure(bigmem: bench.bigmem, directory: directory)
  machine.print()
  print("")
  print("memory: bigmem N MiB as a container (cgroup v2, own pid/mnt/uts/ipc namespaces), bundle on tmpfs \(directory)")
  print(
    "  dump and restore s: the whole ckcont command; engine s: the dump's own totalSeconds; GB/s: page bytes (1e9) per s;"
  )
  print(
    "  cold: first run of the size; warm: same size right after (recycled pages); ratios to the warm machine bandwidths;"
  )
  print("  every restore is verified (SIGTERM, bigmem checks its checksum, PASS)")
  print(
    "size       run    dump s  engine s  frozen s  dump GB/s  restore s  restore GB/s  dump/readv  dump/write  restore/memcpy"
  )
  var runs: [MemoryRun] = []
  for mib in sizes {
    for label in ["cold", "warm"] {
      let run = try bench.run(mib: mib, label: label)
      runs.append(run)
      let size = mib >= 1024 ? "\(mib >> 10) GiB" : "\(mib) MiB"
      print(
        size.padding(toLength: 11, withPad: " ", startingAt: 0) + label
          + String(
            format: "  %7.3f  %8.3f  %8.3f  %9.2f  %9.3f  %12.2f  %10.2f  %10.2f  %14.2f", run.dumpSeconds,
            run.engineSeconds,
            run.frozenSeconds, run.dumpGBps, run.restoreSeconds, run.restoreGBps, run.dumpGBps / machine.readv,
            run.dumpGBps / machine.writeWarm, run.restoreGBps / machine.memcpy))
      fflush(nil)
    }
  }
  print("")
  print(
    "targets at 1 GiB: dump >= 2.3 GB/s, restore >= 2.3 GB/s (CRIU 4.2 on this machine: dump 1.55 GB/s, restore 1.57 GB/s)"
  )
  for run in runs where run.mib == 1024 {
    print(
      String(
        format: "  1 GiB %@: dump %.2f GB/s (%@), restore %.2f GB/s (%@)", run.label, run.dumpGBps,
        run.dumpGBps >= 2.3 ? "met" : "missed", run.restoreGBps, run.restoreGBps >= 2.3 ? "met" : "missed"))
  }
}
