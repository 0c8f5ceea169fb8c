// ckcont-fuzz: the bundle reader against mutated bundles (Scripts/fuzz-bundles).
//
//   ckcont-fuzz SECONDS SEED BUNDLE...   mutate the bundles for SECONDS, from SEED
//   ckcont-fuzz --replay SEED N BUNDLE... write input N of that run to standard output
//
// Each input is one of the bundles mutated, then checked as a restore checks it before it
// makes anything (BundleCheck: read and verify, decode, validate, plan). Most mutations
// change members and write the bundle again with valid checksums (UncheckedBundle), so that
// they reach the decoders and the validation, not just the checksums; some change the
// manifest, some the raw tar bytes. Input N depends only on SEED and N: the number of the
// input being checked is kept in /dev/shm/ckcont-fuzz-<pid>.current, so a crash or a hang is
// replayed with --replay. Every answer must be an acceptance or a one-line refusal.
// Exit: 0 all held, 1 a refusal of more than one line, 64 bad usage.
import Bundle
import Checkpoint
import Foundation
import Glibc

/// SplitMix64: input N's mutations from (SEED, N) alone.
struct Generator: RandomNumberGenerator {
  var state: UInt64
  mutating func next() -> UInt64 {
    state &+= 0x9E37_79B9_7F4A_7C15
    var z = state
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
  }
}

/// Bytes a bundle's JSON or a reader's parser finds interesting.
let tokens: [String] = [
  "-1", "0", "1", "4294967295", "4294967296", "18446744073709551615", "18446744073709551616",
  "99999999999999999999999999", "-9223372036854775808", "1e308", "-0", "0.5", "null", "true", "false", "\"\"",
  "\"../../../etc/passwd\"", "\"/proc/self/root/etc\"", "\"..\"", "\"/\"", "\"\\u0000\"", "[]", "{}", "[[[[", "\"a\":",
  ",", "\"", "\\", "}", "]",
]
let numbers: [String] = [
  "0", "-1", "1", "2", "7", "4095", "4096", "65536", "2147483647", "2147483648", "4294967295", "4294967296",
  "9223372036854775807", "18446744073709551615", "1099511627776", "140737488355328",
]

struct Seed {
  let manifest: Manifest
  let manifestBytes: [UInt8]
  let members: [(name: String, bytes: [UInt8])]
  let whole: [UInt8]
}

func mutate(_ bytes: inout [UInt8], _ rng: inout Generator, splice: [UInt8]) {
  func position() -> Int { bytes.isEmpty ? 0 : Int.random(in: 0...bytes.count, using: &rng) }
  switch Int.random(in: 0..<9, using: &rng) {
  case 0 where !bytes.isEmpty:
    bytes[Int.random(in: 0..<bytes.count, using: &rng)] ^= UInt8(1 << Int.random(in: 0..<8, using: &rng))
  case 1 where !bytes.isEmpty:
    let interesting: [UInt8] = Array("\0\u{7f}\"\\{}[],:-09./e ".utf8) + [0xff, 0x80]
    bytes[Int.random(in: 0..<bytes.count, using: &rng)] = interesting.randomElement(using: &rng) ?? 0
  case 2 where !bytes.isEmpty:
    let start = Int.random(in: 0..<bytes.count, using: &rng)
    bytes.removeSubrange(start..<min(bytes.count, start + Int.random(in: 1...32, using: &rng)))
  case 3 where !bytes.isEmpty:
    let start = Int.random(in: 0..<bytes.count, using: &rng)
    let piece = bytes[start..<min(bytes.count, start + Int.random(in: 1...64, using: &rng))]
    bytes.insert(contentsOf: piece, at: position())
  case 4:
    bytes.insert(contentsOf: Array((tokens.randomElement(using: &rng) ?? "").utf8), at: position())
  case 5:
    // A number replaced by one at a boundary.
    let digits = bytes.indices.filter { bytes[$0] >= 0x30 && bytes[$0] <= 0x39 }
    guard let at = digits.randomElement(using: &rng) else { return }
    var end = at
    while end < bytes.count && bytes[end] >= 0x30 && bytes[end] <= 0x39 { end += 1 }
    var start = at
    while start > 0 && bytes[start - 1] >= 0x30 && bytes[start - 1] <= 0x39 { start -= 1 }
    bytes.replaceSubrange(start..<end, with: Array((numbers.randomElement(using: &rng) ?? "0").utf8))
  case 6:
    // A string's contents replaced by a path trick or an oddity.
    let quotes = bytes.indices.filter { bytes[$0] == 0x22 }
    guard quotes.count >= 2 else { return }
    let first = Int.random(in: 0..<(quotes.count - 1), using: &rng)
    let odd = ["../../..", "/", "", "/proc/1/root", "a/../../b", String(repeating: "x", count: 5000), "\\u0000", "é"]
    bytes.replaceSubrange(
      (quotes[first] + 1)..<quotes[first + 1], with: Array((odd.randomElement(using: &rng) ?? "").utf8))
  case 7 where !bytes.isEmpty:
    bytes.removeLast(Int.random(in: 1...bytes.count, using: &rng))
  case 8 where !splice.isEmpty:
    let start = Int.random(in: 0..<splice.count, using: &rng)
    let piece = splice[start..<min(splice.count, start + Int.random(in: 1...256, using: &rng))]
    bytes.insert(contentsOf: piece, at: position())
  default:
    break
  }
}

/// Input `n` of the run from `seed`.
func input(_ n: UInt64, seed: UInt64, seeds: [Seed]) throws -> [UInt8] {
  var rng = Generator(state: seed &* 0x100_0000_01B3 ^ n)
  let base = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
  let other = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
  let splice = other.members.randomElement(using: &rng)?.bytes ?? []
  let rounds = Int.random(in: 1...4, using: &rng)
  switch Int.random(in: 0..<20, using: &rng) {
  case 0..<2:
    // The tar itself.
    var bytes = base.whole
    for _ in 0..<rounds { mutate(&bytes, &rng, splice: splice) }
    return bytes
  case 2..<4:
    // The manifest, with valid checksums.
    var manifest = base.manifestBytes
    for _ in 0..<rounds { mutate(&manifest, &rng, splice: splice) }
    return try UncheckedBundle.write(manifest: manifest, members: base.members)
  default:
    // Members (JSON ones mostly), the manifest listing their new sizes.
    var members = base.members
    let json = members.indices.filter { members[$0].name.hasSuffix(".json") }
    for _ in 0..<rounds {
      let pool = Int.random(in: 0..<10, using: &rng) < 8 && !json.isEmpty ? json : Array(members.indices)
      guard let index = pool.randomElement(using: &rng) else { break }
      mutate(&members[index].bytes, &rng, splice: splice)
    }
    if Int.random(in: 0..<20, using: &rng) == 0, members.count > 1 {
      members.swapAt(Int.random(in: 0..<members.count, using: &rng), Int.random(in: 0..<members.count, using: &rng))
    }
    var manifest = base.manifest
    manifest.members = members.map { Manifest.Member(name: $0.name, size: $0.bytes.count) }
    return try UncheckedBundle.write(manifest: try manifest.encoded(), members: members)
  }
}

func loadSeeds(_ paths: [String]) throws -> [Seed] {
  try paths.map { path in
    guard let data = FileManager.default.contents(atPath: path) else { throw BundleError("cannot read \(path)") }
    let whole = [UInt8](data)
    let parts = try UncheckedBundle.parts(of: whole)
    return Seed(
      manifest: parts.manifest, manifestBytes: try parts.manifest.encoded(), members: parts.members, whole: whole)
  }
}

func usage() -> Never {
  FileHandle.standardError.write(Data("usage: ckcont-fuzz SECONDS SEED BUNDLE... | --replay SEED N BUNDLE...\n".utf8))
  exit(64)
}

let arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--replay" {
  guard arguments.count >= 4, let seed = UInt64(arguments[1]), let n = UInt64(arguments[2]) else { usage() }
  let bytes = try input(n, seed: seed, seeds: try loadSeeds(Array(arguments.dropFirst(3))))
  FileHandle.standardOutput.write(Data(bytes))
  exit(0)
}
guard arguments.count >= 3, let seconds = Double(arguments[0]), let seed = UInt64(arguments[1]) else { usage() }
let seeds = try loadSeeds(Array(arguments.dropFirst(2)))
// The input being checked, for --replay after a crash or a hang.
let marker = "/dev/shm/ckcont-fuzz-\(getpid()).current"
let markerFD = open(marker, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
let started = Date()
var n: UInt64 = 0
var accepted = 0
var refusals: [String: Int] = [:]
var slowest = 0.0
while Date().timeIntervalSince(started) < seconds {
  n += 1
  var text = "\(seed) \(n)\n"
  _ = text.withUTF8 { pwrite(markerFD, $0.baseAddress, $0.count, 0) }
  let bytes = try input(n, seed: seed, seeds: seeds)
  let before = Date()
  let refusal = BundleCheck.refusal(of: bytes)
  slowest = max(slowest, Date().timeIntervalSince(before))
  guard let refusal else {
    accepted += 1
    continue
  }
  guard !refusal.contains("\n") else {
    print("input \(n) of seed \(seed): a refusal of more than one line:\n\(refusal)")
    exit(1)
  }
  // Counted by their first words: what kind of refusal.
  let kind = refusal.split(separator: " ").prefix(6).joined(separator: " ")
  refusals[kind, default: 0] += 1
}
close(markerFD)
unlink(marker)
let elapsed = Date().timeIntervalSince(started)
print(
  String(
    format: "%llu inputs in %.0f s (%.0f/s) from seed %llu: %d accepted, %d refused; slowest %.1f ms", n, elapsed,
    Double(n) / elapsed, seed, accepted, Int(n) - accepted, slowest * 1000))
for (kind, count) in refusals.sorted(by: { $0.value > $1.value }).prefix(8) { print("  \(count)  \(kind)...") }
