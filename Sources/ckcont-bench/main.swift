// ckcont-bench: benchmarks that Scripts/bench runs and prints as tables. Never used by tests.
//
//   ckcont-bench freeze SWARM [runs]                  freeze latency of 1, 100 and 1000 tasks, v2 and v1
//   ckcont-bench memory FIXTURES CKCONT [MiB...]      dump/restore throughput of bigmem (default 64 256 1024 4096)
//                                                     on the tmpfs $CKCONT_BENCH_TMPFS (default /dev/shm)
import Foundation
import Glibc

let arguments = CommandLine.arguments
do {
  switch arguments.count >= 3 ? arguments[1] : "" {
  case "freeze": try benchFreeze(swarm: arguments[2], runs: arguments.count > 3 ? Int(arguments[3]) ?? 7 : 7)
  case "memory" where arguments.count >= 4:
    let sizes = arguments.dropFirst(4).compactMap { Int($0) }
    try benchMemory(fixtures: arguments[2], ckcont: arguments[3], sizes: sizes.isEmpty ? [64, 256, 1024, 4096] : sizes)
  default:
    print("usage: ckcont-bench freeze SWARM [runs] | memory FIXTURES CKCONT [MiB...]")
    exit(64)
  }
} catch {
  print("ckcont-bench: \(error)")
  exit(1)
}
