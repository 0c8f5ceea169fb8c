import Foundation
import Glibc
import TestSupport
import Testing

/// Fixture programs round-trip through dump → kill → restore → SIGTERM: each verifies its
/// own state after restore and exits 0 only when all of it survived.
@Suite(.serialized)
struct RoundTripTests {
  static let fixtures: [(String, [String])] = [
    ("counter", []),
    ("regs", ["read-pipe"]), ("regs", ["nanosleep"]), ("regs", ["clock-nanosleep-abs"]), ("regs", ["pause"]),
    ("regs", ["futex"]), ("regs", ["poll"]), ("regs", ["wait4"]), ("regs", ["libc-nanosleep"]),
    ("compat32", []), ("compat32", ["threads"]), ("compat32", ["sleep"]), ("compat32", ["fork"]),
    ("regs32", ["read-pipe"]), ("regs32", ["futex"]), ("regs32", ["poll"]), ("regs32", ["pause"]),
    ("regs32", ["nanosleep"]), ("regs32", ["clock-nanosleep-abs"]), ("regs32", ["wait4"]),
    ("fpu", []), ("tls", []), ("heap", []), ("stack", []), ("mappings", []), ("bigmem", ["256"]), ("sysv-ipc", []),
    ("mounts", []), ("timens", []), ("locks", []), ("mqueue", []), ("mlock", []), ("memfd-private", []), ("sched", []),
    ("seccomp", []), ("seccomp", ["apart"]), ("sigio", []), ("stopped", []), ("pty", []), ("pty", ["output"]),
    ("nested-ns", []),
    ("chroot", []),
    ("propagation", []), ("robust", []), ("madvise", []), ("madvise", ["fork"]), ("cow", []), ("cow", ["many"]),
    ("signals", []), ("files", []), ("pipe-self", []), ("pipe-self", ["fifo"]), ("threads", ["64"]),
    ("threads", ["128"]), ("tree", []), ("pipeline", []), ("shm", []), ("shm", ["memfd"]), ("memfd-beyond", []),
    ("zombie", []), ("zombie", ["session-leader"]), ("clone-share", []), ("timers", []), ("uts", []), ("sockets", []),
    ("sockets", ["netns"]), ("sockets", ["unix"]), ("sockets", ["unix-dgram"]), ("sockets", ["scm"]),
    ("sockets", ["udp-waiting"]), ("sockets", ["udplite"]), ("sockets", ["options"]), ("sockets", ["icmp"]),
    ("sockets", ["raw"]), ("sockets", ["packet"]),
    ("sockets", ["unix-unlinked"]), ("sockets", ["reuseport"]), ("sockets", ["unix-pending"]),
    ("sockets", ["unix-peercred"]), ("sockets", ["tcp-closing"]), ("sockets", ["tcp-pending"]),
    ("sockets", ["tcp-connection"]),
    ("sockets", ["tcp-connection", "big"]), ("anon-fds", []), ("anon-fds", ["stale-epoll"]), ("deleted-file", []),
    ("deleted-file", ["sparse"]),
    ("deleted-file", ["fifo"]), ("deleted-file", ["big"]),
    ("deleted-mapping", []),
    ("inotify", []), ("fanotify", []),
    // One-page mappings whose protections alternate, a third with a page: charged read-only
    // ones without pages get their anon_vma from a fault the task makes itself.
    ("scale", ["mappings", "300"]),
  ]

  @Test(arguments: fixtures)
  func roundTrip(fixture: String, arguments: [String]) throws {
    let container = try FixtureContainer(fixture, arguments)
    defer { container.destroy() }
    try roundTrip(container, name: fixture, arguments: arguments)
  }

  /// A container in a user namespace of its own (ids shifted by 100000, as a rootless
  /// runtime makes them): maps, ids of a root and a non-root process, proc mounted inside.
  /// Private anonymous memory in huge pages (MAP_HUGETLB), in a parent and a child that wrote
  /// its own copy of one huge page: mapped again in huge pages, every byte back. Eight huge
  /// pages are reserved for the test (vm.nr_hugepages) and given back.
  @Test func hugePagesComeBackInHugePages() throws {
    let setting = "/proc/sys/vm/nr_hugepages"
    let before =
      Int((try String(contentsOfFile: setting, encoding: .utf8)).trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
    try "\(before + 8)".write(toFile: setting, atomically: false, encoding: .utf8)
    defer { try? "\(before)".write(toFile: setting, atomically: false, encoding: .utf8) }
    let container = try FixtureContainer("hugetlb")
    defer { container.destroy() }
    let differences = try container.unexplainedDifferences("hugetlb")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let status = try container.terminateRestored()
    #expect(status == 0, "hugetlb exited with \(status); log: \(container.log)")
  }

  /// `dump --compress zstd`: each process's pages one zstd member (`tar` lists them), read
  /// back by `inspect` and the restore; a threaded tree with anonymous, heap and file pages.
  @Test func aCompressedBundleRoundTrips() throws {
    let container = try FixtureContainer("random", ["44"])
    defer { container.destroy() }
    let differences = try container.unexplainedDifferences(
      "random 44", dumpArguments: ["--compress", "zstd:1"], settle: 5)
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let listed = run(["/bin/tar", "tvf", container.bundlePath]).stdout
    #expect(listed.contains("pages.img.zst") && !listed.contains("pages.img\n"), "\(listed)")
    let inspected = run([TestPaths.ckcont, "inspect", container.bundlePath])
    #expect(inspected.status == 0, "\(inspected.output)")
    let status = try container.terminateRestored()
    #expect(status == 0, "random exited with \(status); log: \(container.log)")
  }

  @Test func roundTripInAUserNamespace() throws {
    let container = try FixtureContainer("userns", userNamespace: true)
    defer { container.destroy() }
    try roundTrip(container, name: "userns")
    let inspect = run([TestPaths.ckcont, "inspect", container.bundlePath])
    #expect(
      inspect.stdout.contains("user namespace: uids 0->100000 (65536); gids 0->100000 (65536); setgroups allowed"),
      "\(inspect.stdout)")
  }

  /// The container's init in a time namespace of its own, made by unshare(1) before the init
  /// entered it, as runc and crun make one for OCI timens: the restore makes it again around
  /// the init, with the same offsets.
  @Test func roundTripWithTheInitInATimeNamespaceOfItsOwn() throws {
    let container = try FixtureContainer(
      "timens", ["init", "5000", "7000"], ownNamespaces: false,
      wrapper: ["/usr/bin/unshare", "-pfmuiT", "--monotonic", "5000", "--boottime", "7000", "--fork", "--mount-proc"])
    defer { container.destroy() }
    let differences = try container.unexplainedDifferences("timens init")
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let offsets = try String(contentsOfFile: "/proc/\(container.restoredPid)/timens_offsets", encoding: .utf8)
    #expect(
      offsets.split(separator: "\n").map { $0.split(separator: " ") } == [
        ["monotonic", "5000", "0"], ["boottime", "7000", "0"],
      ],
      "\(offsets)")
    let status = try container.terminateRestored()
    #expect(status == 0, "timens exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS timens"), "log: \(container.log)")
  }

  /// Shape a: a process of the container unshares a pid namespace and forks its init, which
  /// has a thread and a child (`unshare -pf prog` run inside); pipes cross the levels. With
  /// `mount-proc`, a mount namespace too, where the init mounted a proc of its namespace.
  @Test(arguments: [[], ["mount-proc"]])
  func roundTripWithANestedPidNamespace(arguments: [String]) throws {
    let container = try FixtureContainer("pid-nested", arguments)
    defer { container.destroy() }
    try roundTrip(container, name: "pid-nested")
  }

  /// Shape b: the cgroup holds `unshare -fp` itself, in the container's pid namespace or the
  /// host's, and its child is pid 1 of a new one (the naive way to start a container); with
  /// `--mount-proc`, in a mount namespace of unshare's where that child mounted its proc.
  @Test(arguments: [(true, false), (false, false), (true, true), (false, true)])
  func roundTripWithUnshareAsTheRoot(ownNamespaces: Bool, mountProc: Bool) throws {
    let program = try FixturePrograms.path("pid-nested")
    let container = try FixtureContainer(
      "/usr/bin/unshare", mountProc ? ["-fp", "--mount-proc", program, "init", "proc"] : ["-fp", program, "init"],
      ownNamespaces: ownNamespaces)
    defer { container.destroy() }
    try roundTripUnderARoot(container, name: "pid-nested init", fixture: "pid-nested")
  }

  /// A mixed container (issue 17): a 64-bit root (unshare) whose child is an i386 program
  /// with threads, one asleep across the dump.
  @Test func roundTripOfA64BitRootWithAnI386Child() throws {
    let program = try FixturePrograms.path("compat32")
    let container = try FixtureContainer("/usr/bin/unshare", ["-fp", program, "sleep"], ownNamespaces: true)
    defer { container.destroy() }
    try roundTripUnderARoot(container, name: "compat32 sleep", fixture: "compat32")
  }

  /// The mixed tree of issue 17: a 64-bit init (a shell), its i386 child and grandchild
  /// sharing a pipe they talk through after the restore.
  @Test func roundTripOfA64BitInitWithI386ChildAndGrandchild() throws {
    let program = try FixturePrograms.path("compat32")
    // `; exit` keeps the shell from exec()ing the program: it stays the container's init.
    let container = try FixtureContainer("/bin/busybox", ["sh", "-c", "\(program) fork; exit $?"])
    defer { container.destroy() }
    try roundTripUnderARoot(container, name: "compat32 fork", fixture: "compat32")
  }

  /// Round trip of a container whose root (unshare, a shell) runs `fixture` as its child:
  /// the root ignores SIGTERM while it waits, so the child gets it, and the root exits with
  /// the child's status.
  func roundTripUnderARoot(_ container: FixtureContainer, name: String, fixture: String) throws {
    let differences = try container.unexplainedDifferences(name)
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let children = try String(
      contentsOfFile: "/proc/\(container.restoredPid)/task/\(container.restoredPid)/children", encoding: .utf8)
    let inner = try #require(children.split(separator: " ").first.flatMap { Int32($0) }, "the root has no child")
    kill(inner, SIGTERM)
    let status = try container.reap(container.restoredPid, timeout: 20)
    #expect(status == 0, "\(fixture) exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS \(fixture)"), "log: \(container.log)")
  }

  /// Found by the state snapshots: a sleep that a freeze (or a stop, or ptrace) interrupted
  /// before the dump resumes as restart_syscall, whose restart block the kernel keeps to
  /// itself; the restore issues restart_syscall again in a task without a restart block and
  /// the sleep returns EINTR. Any container frozen and thawed before its dump (`ckcont
  /// freeze`, `docker pause`, a `dump --leave-running`) hits it.
  /// A sleep the kernel restarted after an earlier stop (freeze and thaw here) sits in
  /// restart_syscall at the dump: the restore rebuilds its restart block with the time left,
  /// never an EINTR (issue 16). Also when the earlier stop was a dump that let it run.
  @Test(arguments: [("regs", "freeze"), ("regs", "dump"), ("compat32", "dump")])
  func sleepInterruptedBeforeTheDump(fixture: String, earlierStop: String) throws {
    // An i386 task's call number is nowhere in its code: only the memo the first dump left
    // (RestartMemos) says it.
    let arguments = fixture == "regs" ? ["libc-nanosleep"] : ["sleep"]
    let container = try FixtureContainer(fixture, arguments)
    defer { container.destroy() }
    try container.waitReady()
    if earlierStop == "freeze" {
      try container.cgroup.freeze()
      container.cgroup.thaw()
    } else {
      let first = container.dump(["--leave-running"])
      #expect(first.status == 0, "\(first.output)")
      unlink(container.bundlePath)
    }
    usleep(50_000)
    let name = ([fixture] + arguments).joined(separator: " ")
    let differences = try container.unexplainedDifferences(name)
    #expect(differences.isEmpty, "the restored state differs:\n\(differences.joined(separator: "\n"))")
    let status = try container.terminateRestored()
    #expect(status == 0, "\(fixture) exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS \(fixture)"), "log: \(container.log)")
  }

  /// A dump that lets the container run gives it back whole, and it passes its own checks:
  /// `cow many` still shares every page as before (the dump reads shared pages without
  /// pinning them; process_vm_readv would give the parent a copy of its own of each, which
  /// cow sees in its own frames); `pty output` has its terminal output back in the master
  /// (the dump read it out, as a terminal has no peek).
  @Test(arguments: [("cow", ["many"]), ("pty", ["output"])])
  func aDumpThatLetsTheContainerRunLeavesItWhole(fixture: String, arguments: [String]) throws {
    let container = try FixtureContainer(fixture, arguments)
    defer { container.destroy() }
    try container.waitReady()
    let dumped = container.dump(["--leave-running"])
    #expect(dumped.status == 0, "\(dumped.output)")
    // The root: the first of the container's processes, the others' parent.
    let root = try #require(container.cgroup.rootPid())
    kill(root, SIGTERM)
    #expect(container.launcher.waitUntilExit() == 0, "\(container.log)")
    #expect(container.log.contains("PASS \(fixture)"), "log: \(container.log)")
  }

  /// When the code around the restarted call does not say which call it was (a raw
  /// `syscall` with the number in a register, or any i386 call: they all enter through the
  /// vDSO), the dump refuses it clearly, and the container runs on unharmed.
  @Test(arguments: [("regs", ["nanosleep"]), ("compat32", ["sleep"])])
  func unknownRestartedCallIsRefusedAtDump(fixture: String, arguments: [String]) throws {
    let container = try FixtureContainer(fixture, arguments)
    defer { container.destroy() }
    try container.waitReady()
    try container.cgroup.freeze()
    container.cgroup.thaw()
    usleep(50_000)
    let dumped = container.dump()
    #expect(dumped.status != 0)
    #expect(dumped.stderr.contains("restart_syscall"), "\(dumped.output)")
    #expect(dumped.stderr.split(separator: "\n").filter { $0.hasPrefix("ckcont: error:") }.count == 1)
    let pid = try #require(container.cgroup.allPids().first)
    kill(pid, SIGTERM)
    #expect(container.launcher.waitUntilExit() == 0, "\(container.log)")
    #expect(container.log.contains("PASS \(fixture)"), "log: \(container.log)")
  }

  @Test func roundTripOnCgroupV1() throws {
    let container = try FixtureContainer("regs", ["read-pipe"], version: .v1)
    defer { container.destroy() }
    try roundTrip(container, name: "regs", arguments: ["read-pipe", "v1"])
  }

  /// Dump, restore, and compare the state before and after (differences not listed in
  /// ``KnownDifferences`` fail), then SIGTERM: the fixture checks itself.
  func roundTrip(_ container: FixtureContainer, name: String, arguments: [String] = []) throws {
    let label = ([name] + arguments).joined(separator: " ")
    let unexplained = try container.unexplainedDifferences(label)
    #expect(unexplained.isEmpty, "\(label): the restored state differs:\n\(unexplained.joined(separator: "\n"))")
    let status = try container.terminateRestored()
    #expect(status == 0, "\(name) exited with \(status); log: \(container.log)")
    #expect(container.log.contains("PASS \(name)"), "log: \(container.log)")
  }
}
