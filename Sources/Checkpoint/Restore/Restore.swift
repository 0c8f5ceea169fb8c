import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// Where a restore reads its bundle.
public enum RestoreInput: Sendable {
  case file(String)
  case standardInput
  /// A descriptor of the caller's (a migration's connection), read once, left open: the
  /// bundle in frames (``FileDescriptorSource``), the stream going on after it.
  case descriptor(Int32, name: String)
}

/// What a restore did.
public struct RestoreReport: Sendable, Codable {
  /// The restored root process, as this (the host's) pid namespace sees it.
  public var rootPid: Int32
  public var processes: Int
  public var cgroup: String
  public var seconds: Double
  /// CLOCK_MONOTONIC seconds at the thaw that let the restored container run.
  public var resumedAt: Double
  /// A lazy migration's fetch of the memory, once done (``Receive``).
  public var lazyPages: LazyPages.Summary?
}

/// `ckcont restore`: verify the whole bundle, then recreate the container in fresh
/// namespaces with the same pids, in its cgroup, and let it continue. On any failure
/// everything created is removed (tasks killed, cgroup removed) and the bundle is untouched.
public struct Restore {
  public var input: RestoreInput
  /// The pages a migration sent ahead of its bundle (``Receive``).
  public var precopied: PreCopyStore?
  /// A lazy migration's page server (``Receive``): pages the bundle names lazily
  /// (``VMAImage/lazyPages``) are fetched through it once the container runs.
  var lazy: LazyPages?
  /// `--parent P`: where the parent bundle lies (else where the bundle records it, beside it).
  public var parentPath: String?
  /// The container's top cgroup, as a path inside the hierarchies (`/web`), used in every
  /// hierarchy it had cgroups in; nil for the dumped paths.
  public var cgroupRoot: String?
  /// `--inherit-fd`: `pipe:[inode]` or a file path -> a descriptor of this process that the
  /// restored tasks reopen instead (CRIU's --inherit-fd).
  public var inheritedDescriptors: [String: Int32] = [:]
  /// `--shell-job`: the bundle may be a shell job, which joins this process's session and
  /// terminal (CRIU's --shell-job).
  public var shellJob = false
  /// `--root`: the directory to use as the root filesystem of a container that had one of its
  /// own (as CRIU's --root), instead of the one it was dumped with.
  public var rootFilesystem: String?
  /// `--mount-source`: a bind mount from the host at this mount point of the container binds
  /// this source instead (CRIU's --ext-mount-map).
  public var mountSources: [String: String] = [:]
  /// `--console-socket`: the unix socket the runtime takes the new console's master from
  /// (runc's console socket), for a bundle with a console (``ProcessTree/console``).
  public var consoleSocket: String?
  /// `--join-net`: the network namespace a runtime made for a container whose namespace was
  /// its runtime's (``NamespaceSet/netExternal``), which the restored container joins.
  public var joinNetwork: String?
  /// `--veth NAME=NEWNAME`, `--bridge NAME`: where the outer ends of the container's veth
  /// pairs go (``NetworkDevices``).
  public var outerEnds = NetworkDevices.OuterEnds()
  /// `--trusted-key`: the keys one of which must have signed the bundle (none: any bundle).
  public var trust = SignatureTrust()
  /// `--action-script`: run before anything is made, around the namespaces' setup, before
  /// and after the container resumes.
  public var actionScript: ActionScript?
  /// Where the restore tells what it does, at debug level (what `-v` shows).
  public var log = Logger.discarding
  /// Called once the container runs, its network open and announced, before the restore
  /// tidies up (the lock's tables, sockets to close): a migration's receiver says so then.
  public var resumed: (() -> Void)?

  public init(input: RestoreInput, cgroupRoot: String?) {
    self.input = input
    self.cgroupRoot = cgroupRoot
  }

  /// Parses `POINT=SOURCE` (`--mount-source`): both absolute, the source there.
  public static func mountSource(_ spec: String) throws -> (point: String, source: String) {
    guard let equals = spec.firstIndex(of: "="), spec.hasPrefix("/"),
      spec[spec.index(after: equals)...].hasPrefix("/")
    else {
      throw CKError(.badInput, "--mount-source \(spec): expected POINT=SOURCE, both absolute paths")
    }
    let source = String(spec[spec.index(after: equals)...])
    guard access(source, F_OK) == 0 else {
      throw CKError(.badInput, "--mount-source \(spec): \(source) does not exist")
    }
    return (String(spec[..<equals]), source)
  }

  /// Parses `NAME=NEWNAME` (`--veth`): the outer end of a veth pair made under a new name.
  public static func vethRename(_ spec: String) throws -> (name: String, newName: String) {
    let parts = spec.split(separator: "=", omittingEmptySubsequences: false).map(String.init)
    guard parts.count == 2, parts.allSatisfy({ !$0.isEmpty && $0.utf8.count < 16 && !$0.contains("/") }) else {
      throw CKError(.badInput, "--veth \(spec): expected NAME=NEWNAME, link names of at most 15 bytes")
    }
    return (parts[0], parts[1])
  }

  /// Parses `fd[N]:RESOURCE` (CRIU's --inherit-fd syntax): RESOURCE is `pipe:[inode]` or a
  /// file's path as the dump saw it; N must be open here.
  public static func inheritedDescriptor(_ spec: String) throws -> (resource: String, fd: Int32) {
    guard spec.hasPrefix("fd["), let close = spec.firstIndex(of: "]"),
      let fd = Int32(spec[spec.index(spec.startIndex, offsetBy: 3)..<close]), fd >= 0,
      spec[spec.index(after: close)...].hasPrefix(":")
    else {
      throw CKError(.badInput, "--inherit-fd \(spec): expected fd[N]:pipe:[INODE] or fd[N]:/path")
    }
    let resource = String(spec[spec.index(close, offsetBy: 2)...])
    guard !resource.isEmpty else { throw CKError(.badInput, "--inherit-fd \(spec): no resource after fd[\(fd)]:") }
    guard fcntl(fd, F_GETFD) >= 0 else {
      throw CKError(
        .badInput, "--inherit-fd \(spec): ckcont has no descriptor \(fd)",
        hint: "open it for ckcont, e.g. 3>&1 in a shell")
    }
    return (resource, fd)
  }

  /// The path inside its hierarchy of a cgroup given as a cgroupfs path
  /// (`/sys/fs/cgroup/freezer/web`) or a name (`web`): what ``cgroupRoot`` takes.
  public static func cgroupRoot(fromCgroup spec: String) throws -> String {
    guard !spec.split(separator: "/").contains(".."), !spec.isEmpty else {
      throw CKError(.badInput, "\(spec) is not a usable cgroup path")
    }
    guard spec.hasPrefix("/") else { return "/" + spec.split(separator: "/").joined(separator: "/") }
    guard let hierarchy = try CgroupMounts.current().hierarchy(containing: spec), hierarchy.canFreeze else {
      throw CKError(
        .badInput, "\(spec) is not a path under a v2 or v1 freezer cgroup mount", hint: "or give --cgroup-root")
    }
    let inside = spec.dropFirst(hierarchy.mountPoint.count).split(separator: "/").joined(separator: "/")
    return "/" + inside
  }

  public func run() throws -> RestoreReport {
    let started = monotonicNow()
    try Interruption.check()
    let primer = TargetCgroups.startPrimingMoves()
    defer { primer.stop() }
    raiseDescriptorLimit()
    let bundle = try load()
    try checkCPU(bundle.manifest)
    let ownPidNamespace = bundle.tree.namespaces.pid
    let (plan, order) = try Self.plan(bundle) { ownPidNamespace || (kill($0, 0) != 0 && errno == ESRCH) }
    try Interruption.check()
    try checkOptions(bundle)
    let target = try TargetCgroups(image: bundle.cgroups, root: cgroupRoot)
    let journal = try RestoreJournal()
    defer { journal.remove() }
    target.journal = journal
    // Every remote call is a round trip between ckcont and a task; on one CPU it is a plain
    // context switch, across CPUs two wake-up interrupts, several times slower in a VM. So
    // ckcont and, by inheritance, every task it creates stay on ckcont's CPU until release
    // gives the tasks back the CPUs they would have had.
    let ownCPUs = try CPUSet.of(0)
    let tracerCPU = CPUSet.current()
    try? CPUSet(only: tracerCPU).apply(to: 0)
    defer { try? ownCPUs.apply(to: 0) }
    let run = RestoreRun(
      options: self, bundle: bundle, plan: plan, order: order, target: target, ownCPUs: ownCPUs, tracerCPU: tracerCPU)
    let pids = order.map(\.entry.pid)
    defer { TunDescriptors.dropMadeQueues() }
    do {
      try actionScript?.run(.preRestore, cgroup: target.main.path, pids: pids, log: log)
      try run.phases.time("cgroups") { try target.prepare(log: log) }
      FaultInjection.point("restore:cgroups")
      try run.createTree()
      primer.stop()
      FaultInjection.point("restore:tree")
      try Interruption.check()
      run.phases.record("up to the process tree", since: started)
      try run.restoreMemory()
      lazy?.seal()
      try run.restoreFiles()
      try run.restoreTaskState()
      FaultInjection.point("restore:state")
      try run.finishRegisters()
      try run.drainInotifyEvents()
      try actionScript?.run(.postRestore, cgroup: target.main.path, pids: run.created, initPid: run.rootPid, log: log)
      let resumedAt = try run.release()
      lazy?.startFilling()
      FaultInjection.point("restore:released")
      run.phases.time("network unlock") { run.networkLock?.open() }
      // The slow halves (RCU grace periods) run while the container does; awaited below.
      let lock = run.networkLock
      let removal = lock.map { lock in BackgroundJob(named: "ckcont-unlock") { lock.remove() } }
      let announced = bundle.tree.namespaces.network.flatMap { network in
        run.phases.time("announce") { NetworkDevices.announce(network, pid: run.rootPid, log: log) }
      }
      log.debug("restored \(order.count) processes: \(run.phases)")
      resumed?()
      defer {
        _ = try? removal?.wait()
        _ = try? announced?.wait()
      }
      // Running now: a failure here is the script's to report, not a reason to undo.
      do {
        try actionScript?.run(.postResume, cgroup: target.main.path, pids: run.created, initPid: run.rootPid, log: log)
      } catch {
        log.error("\(error); the container runs on")
      }
      return RestoreReport(
        rootPid: run.rootPid, processes: order.count, cgroup: target.main.path, seconds: monotonicNow() - started,
        resumedAt: resumedAt)
    } catch {
      run.killCreated()
      target.removeCreated()
      log.debug("restore failed; removed what it created")
      throw error
    }
  }

  /// What the options ask of the bundle: a cgroup root inside the hierarchies, a terminal
  /// for a shell job, a root filesystem for a container that had one.
  func checkOptions(_ bundle: LoadedBundle) throws {
    if let cgroupRoot {
      guard cgroupRoot.hasPrefix("/"), !cgroupRoot.split(separator: "/").contains(".."), !cgroupRoot.contains("\0")
      else {
        throw CKError(
          .badInput, "--cgroup-root \(cgroupRoot) must be an absolute path inside the cgroup hierarchies, like /web")
      }
    }
    if lazy == nil, bundle.tasks.contains(where: { $0.memory.vmas.contains { $0.lazyPages != nil } }) {
      throw CKError(
        .badInput, "the bundle names pages a lazy migration fetches from its source, which it does not hold",
        hint: "only the `ckcont receive` it was sent to can restore it")
    }
    if bundle.tree.namespaces.netExternal == true, joinNetwork == nil {
      throw CKError(
        .badInput,
        "the container's network namespace was its runtime's (dumped with --external-net): restore it with --join-net PATH, the network namespace made for it",
        hint: "a runtime's restore passes the one it made (runc: config.json's network namespace path)")
    }
    if let joinNetwork, bundle.tree.namespaces.netExternal != true {
      throw CKError(
        .badInput,
        "--join-net \(joinNetwork): the container's network namespace was not its runtime's (dump it with --external-net)"
      )
    }
    try NetworkDevices.check(outerEnds, against: bundle.tree.namespaces.network)
    if bundle.tree.console != nil, consoleSocket == nil {
      throw CKError(
        .badInput,
        "the container's console was a terminal its runtime held: restore it with --console-socket, which gets the new one's master",
        hint: "a runtime's restore passes its console socket (runc restore --console-socket)")
    }
    if let terminal = bundle.tree.shellJobTerminal {
      guard shellJob else {
        throw CKError(
          .badInput,
          "the bundle is a shell job (its terminal was \(terminal)): restore it with --shell-job, from a terminal")
      }
      guard ownTerminal() != nil else {
        throw CKError(
          .badInput, "--shell-job: ckcont has no terminal to give the job", hint: "run the restore from a terminal")
      }
    }
    if let rootFilesystem {
      guard bundle.mounts?.hasOwnRoot == true, bundle.tree.namespaces.mount else {
        throw CKError(.badInput, "--root \(rootFilesystem): the container had no root filesystem of its own")
      }
      var st = stat()
      guard stat(rootFilesystem, &st) == 0, st.st_mode & S_IFMT == S_IFDIR else {
        throw CKError(.badInput, "--root \(rootFilesystem) is not a directory")
      }
    }
  }

  /// The plan that recreates the tree, and the processes in the order it forks them; refuses
  /// a process placed outside the container's cgroup. `isFree` says whether a pid of the
  /// host's namespace can be taken (for a container without a pid namespace of its own).
  static func plan(_ bundle: LoadedBundle, isFree: (Int32) -> Bool) throws -> (TreePlan, [LoadedBundle.LoadedTask]) {
    let plan = try TreePlan(
      tasks: bundle.tasks.map(\.entry) + bundle.zombies, ownPidNamespace: bundle.tree.namespaces.pid,
      isFree: isFree)
    try ForkInheritance.validate(plan, tasks: bundle.tasks)
    let byPid = Dictionary(uniqueKeysWithValues: bundle.tasks.map { ($0.entry.pid, $0) })
    let order = plan.steps.compactMap { step -> LoadedBundle.LoadedTask? in
      if case .fork(let pid, _) = step { return byPid[pid] } else { return nil }
    }
    if let bad = order.first(where: {
      $0.entry.cgroup.hasPrefix("/") || $0.entry.cgroup.split(separator: "/").contains("..")
    }) {
      throw CKError(
        .badInput, "the bundle places process \(bad.entry.pid) in the cgroup \(bad.entry.cgroup), outside the container"
      )
    }
    return (plan, order)
  }

  /// The path of ckcont's controlling terminal, nil for none: a pseudo-terminal by its name
  /// (descriptors of /dev/tty would show /dev/tty, not the terminal), else /dev/tty.
  func ownTerminal() -> String? {
    let tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)
    guard tty >= 0 else { return nil }
    close(tty)
    let device = (try? ProcStatExtended.read(pid: getpid())).map { UInt64(UInt32(bitPattern: $0.ttyNr)) } ?? 0
    if let side = Terminals.side(device: device), !side.isMaster { return "/dev/pts/\(side.index)" }
    return "/dev/tty"
  }

  /// The soft RLIMIT_NOFILE up to the hard one, as CRIU does: the tasks inherit it, and
  /// while their descriptors are made they hold them above the highest number any process of
  /// the bundle restores (``Injector/channel``); each gets its own limits back afterwards.
  func raiseDescriptorLimit() {
    var limit = rlimit()
    guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < limit.rlim_max else { return }
    limit.rlim_cur = limit.rlim_max
    if setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) != 0 {
      log.debug("could not raise RLIMIT_NOFILE: \(String(cString: strerror(errno)))")
    }
  }

  /// Where every task holds its end of the channel to ckcont (``Injector/channel``) until
  /// its descriptors are installed: above every descriptor number the bundle restores, and
  /// not the number the executable's descriptor takes meanwhile.
  func channelDescriptor(_ bundle: LoadedBundle) -> Int64 {
    let above = Int64((bundle.tasks.flatMap { $0.files.descriptors.map(\.fd) }.max() ?? 2) + 1)
    return above == MemoryRestore.exeFD ? above + 1 : above
  }

  /// Lets a freshly forked child die the way the dumped zombie did (exit code or signal), so
  /// that its parent finds it unreaped with that status; then takes back the SIGCHLD the
  /// parent got for it (the original parent had it long before the dump).
  func makeZombie(_ own: Injector, status: Int32, parent: Injector, name: String) throws {
    let signal = status & 0x7f
    let child = own.tracee
    own.resetData()
    let comm = try own.put(string: String(name.prefix(15)))
    try own.call(.prctl(.setName(comm)))
    if signal == 0 {
      // Raw: the task leaves by it and is let go (detached) at once, never to stop again.
      var regs = try child.registers()
      regs.rax = UInt64(SyscallNumber.exitGroup)
      regs.orig_rax = UInt64.max
      regs.rdi = UInt64((status >> 8) & 0xff)
      regs.rip = own.region
      try child.setRegisters(regs)
      try child.detach()
    } else {
      // The blank child carries ckcont's signal handlers: the default action must apply.
      own.resetData()
      let action = try own.put(words: [0, 0, 0, 0])
      try own.call(.rtSigaction(signal, action: action))
      try child.setSignalMask(0)
      try child.detach(signal: signal)
    }
    let deadline = monotonicNow() + 5
    while ProcStat.read(pid: child.tid)?.state != "Z" {
      guard monotonicNow() < deadline else {
        throw CKError(.failed, "the recreated zombie \(child.tid) did not die")
      }
      usleep(500)
    }
    try takeBackSIGCHLD(parent)
    log.debug("zombie \(child.tid) recreated with status 0x\(String(status, radix: 16))")
  }

  /// Ends a restore helper (TreePlan): it is killed, its parent reaps it and forgets the
  /// SIGCHLD, and the orphans it forked fall to the init.
  func endHelper(_ helper: Tracee, pid: Int32, parent: Injector) throws {
    kill(helper.tid, SIGKILL)
    var status: Int32 = 0
    // The tracer collects the death first; only then does the real parent see a zombie.
    _ = waitpid(helper.tid, &status, Int32(CK_WALL))
    try parent.call(.wait4(pid, options: Int32(CK_WALL)), "wait4(helper \(pid))")
    try takeBackSIGCHLD(parent)
    log.debug("restore helper \(pid) (\(helper.tid)) ended")
  }

  /// Takes the SIGCHLD a restore step caused out of `parent`'s pending signals.
  func takeBackSIGCHLD(_ parent: Injector) throws {
    parent.resetData()
    let set = try parent.put(words: [1 << UInt64(SIGCHLD - 1)])
    let zero = try parent.put(words: [0, 0])
    _ = try parent.raw(.rtSigtimedwait(set, timeout: zero))
  }

  /// Loads the parent a bundle at `path` (nil: read from a stream, whose parents lie
  /// where they were recorded, from the current directory) was dumped against.
  private func parents(of path: String?) -> (Manifest.Parent) throws -> PreCopyStore {
    { [parentPath, trust, log] parent in
      let place = parentPath ?? path.map { ParentBundle.resolve(parent.path, besides: $0) } ?? parent.path
      return try ParentBundle.load(place, identity: parent.identity, trust: trust, log: log).store
    }
  }

  func load() throws -> LoadedBundle {
    switch input {
    case .standardInput:
      return try LoadedBundle(
        source: FileDescriptorSource(fd: 0, name: "standard input"), trust: trust, parents: parents(of: nil), log: log)
    case .descriptor(let fd, let name):
      return try LoadedBundle(
        source: FileDescriptorSource(fd: fd, name: name, framed: true), trust: trust, precopied: precopied, log: log)
    case .file(let path):
      guard let file = OwnedDescriptor(adoptingValid: open(path, O_RDONLY | O_CLOEXEC)) else {
        throw CKError(.badInput, "cannot open the bundle \(path): \(String(cString: strerror(errno)))")
      }
      let fd = file.raw
      var st = stat()
      // A regular file is verified in one pass and then mapped: its pages go to the tasks
      // from the page cache. Anything else (a FIFO, a device) can be read only once: its
      // pages are kept in memory.
      guard fstat(fd, &st) == 0, st.st_mode & S_IFMT == S_IFREG else {
        return try LoadedBundle(
          source: FileDescriptorSource(fd: fd, name: path), pages: .copy, trust: trust, parents: parents(of: path),
          log: log)
      }
      let source: MappedFileSource
      do {
        source = try MappedFileSource(fd: fd, name: path)
      } catch {
        throw CKError(.badInput, "cannot map the bundle \(path): \(error)")
      }
      return try LoadedBundle(source: source, pages: .inPlace, trust: trust, parents: parents(of: path), log: log)
    }
  }

  /// Every XSAVE component the dumped threads used must be enabled on this CPU.
  func checkCPU(_ manifest: Manifest) throws {
    let host = ck_xgetbv0()
    let missing = manifest.cpu.xsaveFeatures & ~host
    guard missing == 0 else {
      throw CKError(
        .badInput,
        "the bundle's tasks use CPU state components 0x\(hex(missing)) (XSAVE features) that this CPU does not offer",
        hint: "restore on a CPU with the same features (e.g. AVX-512) as the one that dumped it")
    }
  }

  /// clone3 of the task in fresh namespaces with its pid; the child stops itself at once.
  /// With `suspendSeccomp`, the seccomp filters the restore installs in it and in the tasks it
  /// makes (which inherit the option) do not apply to the restore's own remote calls.
  /// Runs `body` (the root task's clone) with this thread in the network namespace at `path`,
  /// so that the task is born in it, then back in its own; `body` alone when `path` is nil.
  /// setns(CLONE_NEWNET) changes the calling thread only, which a threaded process may do.
  private func joinedNetwork<T>(_ path: String?, _ body: () throws -> T) throws -> T {
    guard let path else { return try body() }
    let own = try OwnedDescriptor("open", "this thread's network namespace") {
      open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)
    }
    let joined = try OwnedDescriptor("open", "--join-net \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
    do {
      try syscallChecked("setns", "--join-net \(path)") { ck_setns(joined.raw, Int32(CK_CLONE_NEWNET)) }
    } catch {
      throw CKError(.badInput, "--join-net \(path) is not a network namespace ckcont can join: \(error)")
    }
    defer { _ = ck_setns(own.raw, Int32(CK_CLONE_NEWNET)) }
    return try body()
  }

  func createTask(_ task: LoadedBundle.LoadedTask, namespaces: NamespaceSet, suspendSeccomp: Bool) throws -> Int32 {
    var flags: UInt64 = 0
    var pids: [pid_t]
    if namespaces.pid {
      guard task.entry.pid == 1 else {
        throw CKError(
          .badInput, "the dumped process was pid \(task.entry.pid) in a pid namespace whose init was not dumped",
          hint: "dump the cgroup that holds the namespace's init")
      }
      flags |= UInt64(CK_CLONE_NEWPID)
      pids = [1]
    } else {
      let hostPid = task.entry.namespacePids.first ?? task.entry.pid
      if kill(hostPid, 0) == 0 || errno != ESRCH {
        throw CKError(
          .failed, "pid \(hostPid) is taken on this host, and the process lived in the host's pid namespace",
          hint: "stop what runs as \(hostPid), or run the container in its own pid namespace")
      }
      pids = [hostPid]
    }
    if namespaces.mount { flags |= UInt64(CK_CLONE_NEWNS) }
    if namespaces.uts { flags |= UInt64(CK_CLONE_NEWUTS) }
    if namespaces.ipc { flags |= UInt64(CK_CLONE_NEWIPC) }
    // A namespace its runtime made is joined instead (see ``joinedNetwork(_:)``).
    if namespaces.net && namespaces.netExternal != true { flags |= UInt64(CK_CLONE_NEWNET) }
    // The new user namespace owns the others made with it (the cgroup namespace is made once
    // the task is in its cgroups, by the caller).
    if namespaces.user { flags |= UInt64(CK_CLONE_NEWUSER) }
    // Born in ckcont's own cgroups, not cloned into the container's (CLONE_INTO_CGROUP): once
    // `1` was written to a v2 cgroup's cgroup.kill, the kernel kills at birth every child
    // cloned into it, however long ago that was, and runtimes and systemd kill containers so.
    // The caller moves it in through cgroup.procs before anything of the container runs.
    let child = try joinedNetwork(namespaces.net && namespaces.netExternal == true ? joinNetwork : nil) {
      try negErrnoChecked("clone3", "pid \(pids), flags 0x\(hex(flags))") {
        ck_clone3_traced_child(flags, &pids, pids.count)
      }
    }
    let pid = Int32(child)
    let status = try Ptrace.wait(pid)
    guard case .stopped(let signal, _) = status, signal == SIGSTOP else {
      throw CKError(.failed, "the new task \(pid) did not stop as expected: \(status)")
    }
    if let maps = namespaces.userMaps, namespaces.user {
      do { try writeUserMaps(maps, pid: pid) } catch {
        kill(pid, SIGKILL)
        _ = try? Ptrace.wait(pid)
        throw error
      }
    }
    try Tracee(tid: pid).setOptions(
      Int32(CK_PTRACE_O_EXITKILL | CK_PTRACE_O_TRACESYSGOOD | CK_PTRACE_O_TRACECLONE | CK_PTRACE_O_TRACEFORK)
        | (suspendSeccomp ? Int32(CK_PTRACE_O_SUSPEND_SECCOMP) : 0))
    log.debug("created task \(pid) (pid \(pids[0]) in its namespace)")
    return pid
  }

  /// The root of a new user namespace starts with ckcont's ids (the host's root), which the
  /// namespace does not map: what it makes in a filesystem of the namespace (a tmpfs file, a
  /// socket's name) would be refused. Like any process a runtime starts in one, it becomes
  /// the namespace's root first (its capabilities there stay whole); the dumped ids come last.
  func becomeNamespaceRoot(_ injector: Injector, maps: UserNamespaceMaps?) throws {
    guard let maps, maps.uids.contains(where: { $0.inside == 0 }), maps.gids.contains(where: { $0.inside == 0 }) else {
      return
    }
    try injector.call(.setresgid(0, 0, 0), "setresgid(0) in the user namespace")
    try injector.call(.setresuid(0, 0, 0), "setresuid(0) in the user namespace")
    // The change of ids made it undumpable, and then the processes forked from it could not
    // take descriptors from each other (pidfd_getfd) until their own credentials are set.
    try injector.call(.prctl(.setDumpable(1)))
  }

  /// The id maps of the root's new user namespace, as dumped (setgroups first: the kernel
  /// takes "deny" only before a gid map).
  func writeUserMaps(_ maps: UserNamespaceMaps, pid: Int32) throws {
    for (file, text) in [
      ("setgroups", maps.setgroupsAllowed ? "allow" : "deny"), ("gid_map", UserNamespaceMaps.text(maps.gids)),
      ("uid_map", UserNamespaceMaps.text(maps.uids)),
    ] {
      let path = "/proc/\(pid)/\(file)"
      let map = try OwnedDescriptor(opening: path, flags: O_WRONLY | O_CLOEXEC)
      let written = text.withCString { write(map.raw, $0, strlen($0)) }
      guard written == text.utf8.count else {
        throw CKError(
          .failed,
          "cannot write the user namespace's \(file) (\(text.split(separator: "\n").joined(separator: ", "))): \(String(cString: strerror(errno)))"
        )
      }
    }
  }

  /// Freeze the target cgroup, detach, thaw: every task resumes at once, on `cpus`.
  /// `stops`: stopped jobs, which get their stop signal while still frozen, so that they stop
  /// again before they run.
  /// `affinity`: each thread's own CPUs (by host tid), of those of `cpus`.
  func release(
    _ threads: [Tracee], cgroup: Cgroup, cpus: CPUSet, affinity: [Int32: CPUSet], stops: [(pid: Int32, signal: Int32)]
  ) throws {
    _ = try Freezer.freeze(cgroup, timeout: 5)
    for thread in threads {
      // Refused only when the task's cpuset and `cpus` have no CPU in common; it keeps the
      // cpuset's CPUs then, which is what it would have had anyway.
      let own = affinity[thread.tid].flatMap { $0.intersection(cpus) } ?? cpus
      do { try own.apply(to: thread.tid) } catch { log.debug("thread \(thread.tid): \(error)") }
      try thread.detach()
    }
    for stop in stops { kill(stop.pid, stop.signal) }
    try Freezer.thaw(cgroup)
  }
}
