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
  /// The cgroup to restore into; nil for the dumped path.
  public var cgroupPath: String?
  public var log: (String) -> Void = { _ in }

  public init(input: RestoreInput, cgroupPath: String?) {
    self.input = input
    self.cgroupPath = cgroupPath
  }

  public func run() throws -> RestoreReport {
    let started = monotonicNowSeconds()
    try Interruption.check()
    let bundle = try load()
    try checkCPU(bundle.manifest)
    guard bundle.tasks.count == 1, let task = bundle.tasks.first else {
      throw CKError(
        .badInput, "the bundle holds \(bundle.tasks.count) processes; this ckcont restores single-process containers",
        hint: "process trees arrive with the process-tree work")
    }
    guard !bundle.tree.namespaces.user else {
      throw CKError(.badInput, "the container has its own user namespace, which this ckcont cannot restore yet")
    }
    try Interruption.check()
    let target = try TargetCgroup(path: cgroupPath ?? bundle.tree.cgroup, version: bundle.tree.cgroupVersion)
    var child: Int32 = 0
    do {
      child = try createTask(task, namespaces: bundle.tree.namespaces, cgroup: target)
      try Interruption.check()
      let threads = try reshape(child: child, task: task)
      try Interruption.check()
      try release(threads, cgroup: target.cgroup)
    } catch {
      if child > 0 {
        kill(child, SIGKILL)
        var status: Int32 = 0
        waitpid(child, &status, Int32(CK_WALL))
      }
      target.removeIfCreated()
      log("restore failed; removed what it created")
      throw error
    }
    return RestoreReport(rootPid: child, processes: 1, cgroup: target.cgroup.path, seconds: monotonicNowSeconds() - started)
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
  func createTask(_ task: LoadedBundle.LoadedTask, namespaces: NamespaceSet, cgroup: TargetCgroup) throws -> Int32 {
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
    let dirfd = cgroup.cgroup.version == .v2 ? open(cgroup.cgroup.path, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1
    defer { if dirfd >= 0 { close(dirfd) } }
    let child = try negErrnoChecked("clone3", "pid \(pids), flags 0x\(hex(flags))") {
      ck_clone3_traced_child(flags, dirfd, &pids, pids.count)
    }
    let pid = Int32(child)
    let status = try Ptrace.wait(pid)
    guard case .stopped(let signal, _) = status, signal == SIGSTOP else {
      throw CKError(.failed, "the new task \(pid) did not stop as expected: \(status)")
    }
    if cgroup.cgroup.version == .v1 {
      try PseudoFile.write(cgroup.cgroup.file("cgroup.procs"), "\(pid)")
    }
    try Tracee(tid: pid).setOptions(Int32(CK_PTRACE_O_EXITKILL | CK_PTRACE_O_TRACESYSGOOD | CK_PTRACE_O_TRACECLONE))
    log("created task \(pid) (pid \(pids[0]) in its namespace) in \(cgroup.cgroup.path)")
    return pid
  }

  /// Turns the fresh copy of ckcont into the dumped process.
  func reshape(child: Int32, task: LoadedBundle.LoadedTask) throws -> [Tracee] {
    let started = monotonicNowSeconds()
    let tracee = Tracee(tid: child)
    try tracee.setSignalMask(~0)
    let injector = try Injector(tracee: tracee)
    try TaskRestore.resetInherited(injector)
    try injector.mapRegion(avoiding: task.memory.vmas)
    let pages: MemoryRestore.PageSource
    if case .file(let path) = input, let offset = task.pagesFileOffset {
      pages = .file(path: try absolutePath(path), offset: UInt64(offset))
    } else {
      pages = .buffer(task.pages)
    }
    try MemoryRestore(image: task.memory, pages: pages, injector: injector, log: log).run()
    try FileRestore(image: task.files, injector: injector, log: log).run()
    let restore = TaskRestore(entry: task.entry, core: task.core, injector: injector, log: log)
    let threads = try restore.restoreState()
    try restore.finish()
    log(
      "task \(child): reshaped with \(injector.remote.count + 1) remote syscalls in "
        + "\(Int((monotonicNowSeconds() - started) * 1000)) ms")
    return threads
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

/// The cgroup a restore places the container in: existing and empty, or created (and then
/// removed again if the restore fails).
final class TargetCgroup {
  let cgroup: Cgroup
  private(set) var created = false

  init(path: String, version: String) throws {
    let mounts = try CgroupMounts.current()
    let absolute: String
    if path.hasPrefix("/") {
      absolute = path
    } else {
      let hierarchy = version == "v1" ? mounts.v1("freezer") : mounts.unified
      guard let hierarchy else { throw CKError(.badInput, "no cgroup \(version) hierarchy is mounted for \(path)") }
      absolute = hierarchy.mountPoint + "/" + path
    }
    guard !absolute.split(separator: "/").contains(".."), let hierarchy = mounts.hierarchy(containing: absolute) else {
      throw CKError(.badInput, "\(path) is not a cgroup path under a cgroup mount")
    }
    cgroup = Cgroup(hierarchy: hierarchy, path: absolute)
    try Freezer.checkFreezable(cgroup)
    if PseudoFile.isDirectory(absolute) {
      let busy = try cgroup.processes()
      guard busy.isEmpty else {
        throw CKError(
          .badInput, "the cgroup \(absolute) already holds \(busy.count) processes",
          hint: "restore into another cgroup with --cgroup, or stop what runs there")
      }
    } else {
      guard mkdir(absolute, 0o755) == 0 else {
        throw CKError(.failed, "cannot create the cgroup \(absolute): \(String(cString: strerror(errno)))")
      }
      created = true
    }
  }

  func removeIfCreated() {
    guard created else { return }
    for _ in 0..<200 {
      if rmdir(cgroup.path) == 0 || errno == ENOENT { return }
      usleep(5000)
    }
  }
}
