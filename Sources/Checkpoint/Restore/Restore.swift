import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux

/// Where a restore reads its bundle.
public enum RestoreInput: Sendable {
  case file(String)
  case standardInput
}

/// What a restore did.
public struct RestoreReport: Sendable, Codable {
  /// The restored root process, as this (the host's) pid namespace sees it.
  public var rootPid: Int32
  public var processes: Int
  public var cgroup: String
  public var seconds: Double
}

/// `ckcont restore`: verify the whole bundle, then recreate the container in fresh
/// namespaces with the same pids, in its cgroup, and let it continue. On any failure
/// everything created is removed (tasks killed, cgroup removed) and the bundle is untouched.
public struct Restore {
  public var input: RestoreInput
  /// The container's top cgroup, as a path inside the hierarchies (`/web`), used in every
  /// hierarchy it had cgroups in; nil for the dumped paths.
  public var cgroupRoot: String?
  public var log: (String) -> Void = { _ in }

  public init(input: RestoreInput, cgroupRoot: String?) {
    self.input = input
    self.cgroupRoot = cgroupRoot
  }

  /// The path inside its hierarchy of a cgroup given as a cgroupfs path
  /// (`/sys/fs/cgroup/freezer/web`) or a name (`web`): what ``cgroupRoot`` takes.
  public static func cgroupRoot(fromCgroup spec: String) throws -> String {
    guard !spec.split(separator: "/").contains(".."), !spec.isEmpty else {
      throw CKError(.badInput, "\(spec) is not a usable cgroup path")
    }
    guard spec.hasPrefix("/") else { return "/" + spec.split(separator: "/").joined(separator: "/") }
    guard let hierarchy = try CgroupMounts.current().hierarchy(containing: spec), hierarchy.canFreeze else {
      throw CKError(.badInput, "\(spec) is not a path under a v2 or v1 freezer cgroup mount", hint: "or give --cgroup-root")
    }
    let inside = spec.dropFirst(hierarchy.mountPoint.count).split(separator: "/").joined(separator: "/")
    return "/" + inside
  }

  public func run() throws -> RestoreReport {
    let started = monotonicNowSeconds()
    try Interruption.check()
    let bundle = try load()
    try checkCPU(bundle.manifest)
    let order = try creationOrder(bundle)
    guard !bundle.tree.namespaces.user else {
      throw CKError(.badInput, "the container has its own user namespace, which this ckcont cannot restore yet")
    }
    if let bad = order.first(where: { $0.entry.cgroup.hasPrefix("/") || $0.entry.cgroup.split(separator: "/").contains("..") }) {
      throw CKError(.badInput, "the bundle places process \(bad.entry.pid) in the cgroup \(bad.entry.cgroup), outside the container")
    }
    try Interruption.check()
    if let cgroupRoot {
      guard cgroupRoot.hasPrefix("/"), !cgroupRoot.split(separator: "/").contains(".."), !cgroupRoot.contains("\0") else {
        throw CKError(.badInput, "--cgroup-root \(cgroupRoot) must be an absolute path inside the cgroup hierarchies, like /web")
      }
    }
    let target = try TargetCgroups(image: bundle.cgroups, root: cgroupRoot)
    var created: [Int32] = []
    do {
      try target.prepare(log: log)
      let root = try createTask(order[0], namespaces: bundle.tree.namespaces, cgroup: target)
      created.append(root)
      try target.place(root, entry: order[0].entry)
      let rootTracee = Tracee(tid: root)
      try rootTracee.setSignalMask(~0)
      let rootInjector = try Injector(tracee: rootTracee)
      try TaskRestore.resetInherited(rootInjector)
      try rootInjector.mapRegion(avoiding: bundle.tasks.flatMap(\.memory.vmas))
      // Every process is forked, with its pid, from its parent while all of them are still
      // blank copies: a process that led a session starts it before it forks its children.
      var injectors: [Int32: Injector] = [order[0].entry.pid: rootInjector]
      try startSession(order[0], rootInjector)
      for task in order.dropFirst() {
        guard let parent = injectors[task.entry.ppid] else {
          throw CKError(.badInput, "process \(task.entry.pid) has no parent \(task.entry.ppid) in the bundle")
        }
        let child = try parent.forkChild(pid: task.entry.pid)
        created.append(child.tid)
        try target.place(child.tid, entry: task.entry)
        let injector = try Injector(thread: child, sharingRegionOf: parent)
        injectors[task.entry.pid] = injector
        try startSession(task, injector)
      }
      for zombie in bundle.zombies {
        guard let parent = injectors[zombie.ppid], let status = zombie.zombieStatus else { continue }
        let child = try parent.forkChild(pid: zombie.pid)
        created.append(child.tid)
        try makeZombie(child, status: status, parent: parent, name: zombie.comm)
      }
      try joinProcessGroups(order, injectors)
      try Interruption.check()
      // Memory of all, then descriptors in two passes over all (shared ones must exist
      // before anyone takes a copy), then the rest and the final registers of each.
      let sharedObjects = SharedMemoryObjects()
      for task in order {
        guard let injector = injectors[task.entry.pid] else { continue }
        try MemoryRestore(
          image: task.memory, pages: try pageSource(task), injector: injector, sharedObjects: sharedObjects, log: log
        ).run()
        try Interruption.check()
      }
      let shared = SharedDescriptions()
      var prepared: [(FileRestore, FileRestore.Prepared)] = []
      for task in order {
        guard let injector = injectors[task.entry.pid] else { continue }
        let files = FileRestore(image: task.files, injector: injector, pid: task.entry.pid, shared: shared, log: log)
        prepared.append((files, try files.prepare()))
      }
      for (files, state) in prepared { try files.install(state) }
      var threads: [Tracee] = []
      for task in order {
        guard let injector = injectors[task.entry.pid] else { continue }
        let restore = TaskRestore(entry: task.entry, core: task.core, injector: injector, log: log)
        threads += try restore.restoreState()
        try restore.finish()
        log("task \(injector.pid): restored with \(injector.remote.count + 1) remote syscalls")
        try Interruption.check()
      }
      try release(threads, cgroup: target.main)
      return RestoreReport(
        rootPid: root, processes: order.count, cgroup: target.main.path, seconds: monotonicNowSeconds() - started)
    } catch {
      for pid in created.reversed() { kill(pid, SIGKILL) }
      if let root = created.first {
        var status: Int32 = 0
        waitpid(root, &status, Int32(CK_WALL))
      }
      target.removeCreated()
      log("restore failed; removed what it created")
      throw error
    }
  }

  /// The processes, each after its parent (breadth first from the one root).
  func creationOrder(_ bundle: LoadedBundle) throws -> [LoadedBundle.LoadedTask] {
    let roots = bundle.tasks.filter { $0.entry.ppid == 0 }
    guard roots.count == 1, let root = roots.first else {
      throw CKError(
        .badInput,
        "the bundle holds \(roots.count) processes whose parent was outside the container; this ckcont restores one",
        hint: "dump the cgroup that holds the container's init")
    }
    var children: [Int32: [LoadedBundle.LoadedTask]] = [:]
    for task in bundle.tasks where task.entry.ppid != 0 { children[task.entry.ppid, default: []].append(task) }
    var order = [root]
    var index = 0
    while index < order.count {
      order += (children[order[index].entry.pid] ?? []).sorted { $0.entry.pid < $1.entry.pid }
      index += 1
    }
    guard order.count == bundle.tasks.count else {
      throw CKError(.badInput, "the bundle's process tree is broken: \(bundle.tasks.count - order.count) processes are unreachable")
    }
    return order
  }

  /// Lets a freshly forked child die the way the dumped zombie did (exit code or signal), so
  /// that its parent finds it unreaped with that status; then takes back the SIGCHLD the
  /// parent got for it (the original parent had it long before the dump).
  func makeZombie(_ child: Tracee, status: Int32, parent: Injector, name: String) throws {
    let signal = status & 0x7f
    let own = try Injector(thread: child, sharingRegionOf: parent)
    own.resetData()
    let comm = try own.put(string: String(name.prefix(15)))
    try own.call("PR_SET_NAME", SyscallNumber.prctl, 15, comm)
    if signal == 0 {
      var regs = try child.registers()
      regs.rax = UInt64(SyscallNumber.exitGroup)
      regs.orig_rax = UInt64.max
      regs.rdi = UInt64((status >> 8) & 0xff)
      regs.rip = parent.region
      try child.setRegisters(regs)
      try child.detach()
    } else {
      // The blank child carries ckcont's signal handlers: the default action must apply.
      own.resetData()
      let action = try own.put(words: [0, 0, 0, 0])
      try own.call("rt_sigaction(\(signal))", SyscallNumber.rtSigaction, UInt64(signal), action, 0, 8)
      try child.setSignalMask(0)
      try child.detach(signal: signal)
    }
    let deadline = monotonicNowSeconds() + 5
    while ProcStat.read(pid: child.tid)?.state != "Z" {
      guard monotonicNowSeconds() < deadline else {
        throw CKError(.failed, "the recreated zombie \(child.tid) did not die")
      }
      usleep(500)
    }
    parent.resetData()
    let set = try parent.put(words: [1 << UInt64(SIGCHLD - 1)])
    let zero = try parent.put(words: [0, 0])
    _ = try parent.raw(SyscallNumber.rtSigtimedwait, set, 0, zero, 8)
    log("zombie \(child.tid) recreated with status 0x\(String(status, radix: 16))")
  }

  /// setsid() in a process that led its session, right after it was created.
  func startSession(_ task: LoadedBundle.LoadedTask, _ injector: Injector) throws {
    guard task.entry.sid == task.entry.pid else { return }
    try injector.call("setsid for process \(task.entry.pid)", SyscallNumber.setsid)
  }

  /// setpgid() for every process in a group led inside the container: leaders first.
  func joinProcessGroups(_ order: [LoadedBundle.LoadedTask], _ injectors: [Int32: Injector]) throws {
    let leadersFirst = order.filter { $0.entry.pgid == $0.entry.pid } + order.filter { $0.entry.pgid != $0.entry.pid }
    // A group led from outside the container (the shell that started it) cannot be joined:
    // such processes stay in the group they were created in.
    let inside = Set(order.map(\.entry.pid))
    for task in leadersFirst where inside.contains(task.entry.pgid) && task.entry.sid != task.entry.pid {
      guard let injector = injectors[task.entry.pid] else { continue }
      let group = task.entry.pgid == task.entry.pid ? 0 : UInt64(task.entry.pgid)
      try injector.call("setpgid(\(task.entry.pgid)) for process \(task.entry.pid)", SyscallNumber.setpgid, 0, group)
    }
  }

  func load() throws -> LoadedBundle {
    switch input {
    case .standardInput:
      return try LoadedBundle(source: FileDescriptorSource(fd: 0, name: "standard input"), log: log)
    case .file(let path):
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        throw CKError(.badInput, "cannot open the bundle \(path): \(String(cString: strerror(errno)))")
      }
      defer { close(fd) }
      var st = stat()
      // A regular file is verified in one pass and read again by the task itself; anything
      // else (a FIFO, a device) can be read only once: its pages are kept in memory.
      let regular = fstat(fd, &st) == 0 && st.st_mode & S_IFMT == S_IFREG
      return try LoadedBundle(source: FileDescriptorSource(fd: fd, name: path), keepPages: !regular, log: log)
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
  func createTask(_ task: LoadedBundle.LoadedTask, namespaces: NamespaceSet, cgroup: TargetCgroups) throws -> Int32 {
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
    if namespaces.net { flags |= UInt64(CK_CLONE_NEWNET) }
    if namespaces.cgroup { flags |= UInt64(CK_CLONE_NEWCGROUP) }
    // Straight into its own cgroup: the top may enable controllers, and then holds no process.
    let directory = cgroup.mainDirectory(of: task.entry)
    let dirfd = cgroup.main.version == .v2 ? open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
    defer { if dirfd >= 0 { close(dirfd) } }
    let child = try negErrnoChecked("clone3", "pid \(pids), flags 0x\(hex(flags))") {
      ck_clone3_traced_child(flags, dirfd, &pids, pids.count)
    }
    let pid = Int32(child)
    let status = try Ptrace.wait(pid)
    guard case .stopped(let signal, _) = status, signal == SIGSTOP else {
      throw CKError(.failed, "the new task \(pid) did not stop as expected: \(status)")
    }
    try Tracee(tid: pid).setOptions(
      Int32(CK_PTRACE_O_EXITKILL | CK_PTRACE_O_TRACESYSGOOD | CK_PTRACE_O_TRACECLONE | CK_PTRACE_O_TRACEFORK))
    log("created task \(pid) (pid \(pids[0]) in its namespace) in \(directory)")
    return pid
  }

  /// Where a task's pages come from: the bundle file (the task reads them itself) or memory.
  func pageSource(_ task: LoadedBundle.LoadedTask) throws -> MemoryRestore.PageSource {
    if case .file(let path) = input, let offset = task.pagesFileOffset {
      return .file(path: try absolutePath(path), offset: UInt64(offset))
    }
    return .buffer(task.pages)
  }

  /// The bundle's absolute path, as the new task (in a copy of our mount namespace) opens it.
  func absolutePath(_ path: String) throws -> String {
    guard let resolved = realpath(path, nil) else {
      throw CKError(.failed, "cannot resolve the bundle path \(path): \(String(cString: strerror(errno)))")
    }
    defer { free(resolved) }
    return String(cString: resolved)
  }

  /// Freeze the target cgroup, detach, thaw: every task resumes at once.
  func release(_ threads: [Tracee], cgroup: Cgroup) throws {
    _ = try Freezer.freeze(cgroup, timeout: 5)
    for thread in threads { try thread.detach() }
    try Freezer.thaw(cgroup)
  }
}
