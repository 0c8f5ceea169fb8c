/// Differences between a container before its dump and after its restore that are known and
/// not fixed yet: the one list a round trip's snapshot diff is checked against. A line of the
/// diff that no entry matches fails the test. Each entry names its fixture (`name args`, or
/// `*` for every one), a regular expression a diff line must match, why it differs, and the
/// issue that tracks it.
public enum KnownDifferences {
  /// A known difference.
  public struct Entry: Sendable {
    public var fixture: String
    public var pattern: String
    public var reason: String
    public var issue: String
  }

  /// Fixtures that keep running after `ready` (counting, printing, firing timers): they run
  /// between the first snapshot and the dump's freeze and after the restore, so their
  /// counters, stacks and output differ by design.
  static let running = "by design: the fixture runs on after `ready`"

  /// A sleeping fixture's `rem`, rewritten at the snapshot's freeze.
  static func sleepRem(_ fixture: String) -> Entry {
    Entry(
      fixture: fixture,
      pattern: #"^task 1 map .*: contents .* words: \+0x[0-9a-f]+ [0-9a-f]{16}->[0-9a-f]{16}$"#,
      reason:
        "the kernel writes the time left into nanosleep's rem at every interruption (the snapshot's freeze): time, not state",
      issue: "by design: time left")
  }

  /// An i386 fixture's restored mm lists [vsyscall].
  static func i386VSyscall(_ fixture: String) -> Entry {
    Entry(
      fixture: fixture,
      pattern: #"^task \d+ map 0xffffffffff600000-0xffffffffff601000: (VmFlags|mapping) \(none\) -> "#,
      reason:
        "the kernel lists [vsyscall] for every mm but one exec() set up for i386 code (MM_CONTEXT_HAS_VSYSCALL, which only exec clears); above 4 GiB, i386 code cannot reach it",
      issue: "by design: the kernel offers no way to drop it (CRIU alike)")
  }

  public static let entries: [Entry] =
    [
      Entry(
        fixture: "sched", pattern: #"^task 1: sessionid \d+ -> \d+$"#,
        reason:
          "the audit session id is the kernel's to hand out: setting the login uid again (the restore must) opens a new session",
        issue: "by design: the kernel allows no other way (CRIU alike)"),
      Entry(
        fixture: "counter", pattern: #"^task 1 (fd [12]: (pos|file) |map .*: contents )"#,
        reason: "counts and prints every 100 ms", issue: running),
    ] + ["regs nanosleep", "regs libc-nanosleep", "regs32 nanosleep"].map(sleepRem)
    + ["compat32", "regs32"].map(i386VSyscall) + [
      Entry(
        fixture: "compat32 sleep",
        pattern: #"^task \d+ map .*: contents .* words:( \+0x[0-9a-f]+ [0-9a-f]{16}->[0-9a-f]{16}){1,2}$"#,
        reason:
          "the kernel writes the time left into nanosleep's rem (glibc's, on the sleeping thread's stack) at every interruption (the snapshot's freeze): time, not state",
        issue: "by design: time left"),
      Entry(
        fixture: "pipeline", pattern: #"^task \d+ (fd 3: (pos|file) |map .*: contents )"#,
        reason: "its processes keep writing to a shared file", issue: running),
      Entry(
        fixture: "threads", pattern: #"^task 1 map .*: contents "#, reason: "odd threads count every millisecond",
        issue: running),
      Entry(
        fixture: "signals", pattern: #"^task 1 map .*: contents "#,
        reason: "an ITIMER_REAL handler counts ticks every 10 ms", issue: running),
      Entry(
        fixture: "signals", pattern: #"^task 1: ShdPnd 000000040000[02]000 -> 000000040000[02]000$"#,
        reason: "the 10 ms ITIMER_REAL fires (SIGALRM pending or not) while a snapshot holds the container frozen",
        issue: running),
      Entry(
        fixture: "signals", pattern: #"^task 1 thread 1: SigBlk 000000040000[02]800 -> 000000040000[02]800$"#,
        reason:
          "a snapshot's freeze may land inside the 10 ms ITIMER_REAL's handler, which runs with SIGALRM blocked (CI saw it once, the machine loaded)",
        issue: running),
      Entry(
        fixture: "timers", pattern: #"^task 1 map .*: contents "#,
        reason: "POSIX timers keep firing; their handler counts", issue: running),
      Entry(
        fixture: "timers", pattern: #"^task 1: ShdPnd "#,
        reason: "a timer fires while the snapshot holds the container frozen", issue: running),
      Entry(
        fixture: "timens init",
        pattern: #"^task 1 fd [12]: file mode 100644 uid 0 gid 0 size \d+ -> mode 100644 uid 0 gid 0 size \d+$"#,
        reason: "the init prints the clocks it sees as soon as it runs again, before the second snapshot",
        issue: running),
      Entry(
        fixture: "sockets unix-outside",
        pattern: #"^task 1 fd 3: (peer name unix .* -> unix unnamed|unix peer not held by the container -> none)$"#,
        reason:
          "the client outside the container is not restored: the connection comes back with its bytes and its peer gone, as the kill left it (docs/CAPABILITIES.md)",
        issue: "by design"),
      Entry(
        fixture: "stopped", pattern: #"^task \d+: exit_code 0 -> (19|20)$"#,
        reason:
          "the stop comes back unreported to the parent (docs/CAPABILITIES.md, Stopped jobs: the parent may see the new stop reported)",
        issue: "documented"),
    ]

  /// The lines of `diff` no entry for `fixture` explains.
  public static func unexplained(_ diff: [String], fixture: String) -> [String] {
    let applicable = entries.filter {
      $0.fixture == "*" || $0.fixture == fixture || fixture.hasPrefix($0.fixture + " ")
    }
    let patterns = applicable.compactMap { try? Regex($0.pattern) }
    return diff.filter { line in !patterns.contains { line.contains($0) } }
  }
}
