// ckcont-bench: benchmarks that Scripts/bench runs and prints as tables. Never used by tests.
//
//   ckcont-bench freeze SWARM [runs]                  freeze latency of 1, 100 and 1000 tasks, v2 and v1
//   ckcont-bench memory FIXTURES CKCONT [MiB...]      dump/restore throughput of bigmem (default 64 256 1024 4096)
//                                                     on the tmpfs $CKCONT_BENCH_TMPFS (default /dev/shm)
//   ckcont-bench scale FIXTURES CKCONT [MODE:N...]    dump/restore time of the scale fixture: trees of 1-1000 tasks,
//                                                     1-128 threads, 1000/10000 mappings, 1000 fds (MODE:N picks
//                                                     cases, e.g. tree:500); bundles on $CKCONT_BENCH_TMPFS; with
//                                                     $CKCONT_BENCH_LOGS=DIR, ckcont runs with -v, logs in DIR
//   ckcont-bench soak FIXTURES CKCONT N               N cycles of one mixed container, odd ones dump --leave-running,
//                                                     even ones dump + restore; ckcont's, the container's and the
//                                                     host's resources every 100 cycles must not grow (Soak.swift);
//                                                     bundles on $CKCONT_BENCH_TMPFS; exit status 1 if anything grew
import Foundation
import Glibc

let arguments = CommandLine.arguments
do {
  switch arguments.count >= 3 ? arguments[1] : "" {
  case "freeze": try benchFreeze(swarm: arguments[2], runs: arguments.count > 3 ? Int(arguments[3]) ?? 7 : 7)
  case "memory" where arguments.count >= 4:
    let sizes = arguments.dropFirst(4).compactMap { Int($0) }
    try benchMemory(fixtures: arguments[2], ckcont: arguments[3], sizes: sizes.isEmpty ? [64, 256, 1024, 4096] : sizes)
  case "scale" where arguments.count >= 4:
    let cases = arguments.dropFirst(4).map { ($0, ScaleCase($0)) }
    if let bad = cases.first(where: { $0.1 == nil }) {
      print("ckcont-bench scale: bad case \(bad.0) (MODE:N, MODE one of tree, threads, mappings, fds)")
      exit(64)
    }
    try benchScale(
      fixtures: arguments[2], ckcont: arguments[3], cases: cases.isEmpty ? ScaleCase.all : cases.compactMap { $0.1 })
  case "soak" where arguments.count == 5:
    guard let cycles = Int(arguments[4]), cycles >= 2 else {
      print("ckcont-bench soak: N must be a number of cycles, at least 2 (one of each kind)")
      exit(64)
    }
    exit(try soak(fixtures: arguments[2], ckcont: arguments[3], cycles: cycles) ? 0 : 1)
  default:
    print(
      "usage: ckcont-bench freeze SWARM [runs] | memory FIXTURES CKCONT [MiB...] | scale FIXTURES CKCONT [MODE:N...]"
        + " | soak FIXTURES CKCONT N")
    exit(64)
  }
} catch {
  print("ckcont-bench: \(error)")
  exit(1)
}
