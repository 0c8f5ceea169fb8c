import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// Where a dump goes.
public enum DumpOutput: Sendable {
  case file(String)
  case standardOutput
  /// A descriptor of the caller's (a migration's connection), left open; the bundle in
  /// frames (``FileDescriptorSink``), the stream going on after it.
  case descriptor(Int32, name: String)
}

/// How a dump ends for the container.
public enum DumpAftermath: Sendable {
  /// Kill the container once the bundle is written, synced and verified (the default).
  case kill
  /// Let it run on, as if nothing happened.
  case leaveRunning
  /// Leave it frozen (for a caller that will kill or thaw it).
  case leaveFrozen
  /// Ask `decide` (`ckcont migrate`: has the receiver restored it?), the container still
  /// frozen and its network locked: kill it when handed off, let it run on when not or on a
  /// throw, or leave it frozen.
  case handOff(@Sendable () throws -> HandOff)

  /// What became of a container handed off (``DumpAftermath/handOff(_:)``).
  public enum HandOff: Sendable {
    /// It runs elsewhere: killed here.
    case handedOff
    /// It runs nowhere else: it runs on here.
    case runOn
    /// It ran elsewhere, but that copy is lost (a lazy migration whose pages stopped
    /// coming): left frozen here as it was at the freeze, for the user to thaw or kill.
    case keepFrozen
  }
}

/// What a dump did.
public struct DumpReport: Sendable, Codable {
  public var processes: Int
  public var threads: Int
  public var pageBytes: UInt64
  public var bundleBytes: Int
  /// From the freeze to the release of the container.
  public var frozenSeconds: Double
  /// CLOCK_MONOTONIC seconds at the freeze (with a restore's `resumedAt` on the same boot,
  /// how long the container stood still).
  public var frozenAt: Double
  public var totalSeconds: Double
  /// With ``DumpAftermath/handOff(_:)``: whether the container was handed off (and killed
  /// here) or runs on here.
  public var handedOff: Bool?
}

/// `ckcont dump`: seize the container, capture every process, stream the bundle, and only
/// then let the container go (killed, running or frozen). On any failure the container is
/// released unharmed and no partial bundle is left behind.
public struct Dump {
  public var cgroup: Cgroup
  public var output: DumpOutput
  public var aftermath: DumpAftermath
  public var freezeTimeout: Double
  public var toolVersion: String
  /// `--shell-job`: the container is a job of a shell outside it, whose session and terminal
  /// it shares (CRIU's --shell-job).
  public var shellJob = false
  /// `--external-console`: a controlling terminal of a session of the container whose master
  /// its runtime holds is the container's console (``ProcessTree/console``).
  public var externalConsole = false
  /// `--external-net`: the container's network namespace is its runtime's, which makes it
  /// again for the restore (``NamespaceSet/netExternal``): its devices are not refused.
  public var externalNetwork = false
  /// `--drop-inotify-events`: inotify events not read yet are dropped (as CRIU does) instead
  /// of refusing the dump.
  public var dropInotifyEvents = false
  /// Signs the bundle (`--sign`): `signature.json` ends it (``BundleSigningKey``).
  public var signingKey: BundleSigningKey?
  /// `--action-script`: run before the capture and once the bundle is in place.
  public var actionScript: ActionScript?
  /// Called with (bytes of pages written, total page bytes) while pages stream.
  public var progress: (UInt64, UInt64) -> Void = { _, _ in }
  /// Where the dump tells what it does, at debug level (what `-v` shows).
  public var log = Logger.discarding
  /// Lock the network namespaces of the container's own from the freeze on
  /// (``NetworkLock``); `--network-lock skip` turns it off.
  public var lockNetwork = true
  /// Compress page members with zstd at this level (`--compress zstd[:LEVEL]`).
  public var compressionLevel: Int32?
  /// `--parent P`: the bundle this one is dumped against (``ParentBundle``).
  public var parent: String?
  /// The parent's pages, loaded before the freeze.
  var parentPages: (store: PreCopyStore, identity: String, recorded: String)?
  /// A pre-copy migration's tracking (``PreCopy``): pages the receiver holds as they still
  /// are are named in the bundle, not saved in it.
  var precopy: PreCopy?
  /// A lazy migration's source: private memory is named (``VMAImage/lazyPages``), not
  /// saved, and served from here once the receiver runs the container.
  var lazy: LazySource?

  public init(cgroup: Cgroup, output: DumpOutput, aftermath: DumpAftermath, freezeTimeout: Double, toolVersion: String)
  {
    self.cgroup = cgroup
    self.output = output
    self.aftermath = aftermath
    self.freezeTimeout = freezeTimeout
    self.toolVersion = toolVersion
  }

  public func run() throws -> DumpReport {
    let started = monotonicNow()
    try Interruption.check()
    var dump = self
    if let parent {
      // Loaded while the container still runs: only the comparison waits for the freeze.
      let loaded = try ParentBundle.load(parent, identity: nil, trust: SignatureTrust(), log: log)
      let recorded: String
      if case .file(let output) = output {
        recorded = ParentBundle.recordedPath(parent, forOutput: output)
      } else {
        recorded = URL(fileURLWithPath: parent).standardizedFileURL.path
      }
      dump.parentPages = (loaded.store, loaded.identity, recorded)
    }
    return try dump.runLoaded(started: started)
  }

  private func runLoaded(started: Double) throws -> DumpReport {
    let session = try SeizedContainer(cgroup: cgroup, freezeTimeout: freezeTimeout, log: log, readingVMAFlags: true)
    var destination: Destination?
    let taken = TakenState(journal: session.journal)
    let pids = session.processes.map(\.pid)
    var locks: [NetworkLock] = []
    defer { for lock in locks { lock.unlock() } }
    do {
      locks = try lockNetworks(of: session.processes)
      try actionScript?.run(.preDump, cgroup: cgroup.path, pids: pids, log: log)
      let captured = try capture(session, taken: taken)
      session.endRemoteCalls()
      FaultInjection.point("dump:captured")
      try Interruption.check()
      let opened = try Destination(output, journal: session.journal)
      destination = opened
      let bundleBytes = try write(captured, to: opened)
      try opened.commit(log: log)
      FaultInjection.point("dump:committed")
      do {
        try actionScript?.run(.postDump, cgroup: cgroup.path, pids: pids, log: log)
      } catch {
        opened.withdraw()
        throw error
      }
      // Unmapping the pages written in place costs ~0.1 s per GiB here: after the release,
      // so that the container does not wait for it.
      let committed = opened
      defer { committed.close() }
      destination = nil
      let frozenSeconds = monotonicNow() - started
      let releasing = monotonicNow()
      var handOff = DumpAftermath.HandOff.runOn
      if case .handOff(let decide) = aftermath {
        handOff = (try? decide()) ?? .runOn
      }
      let handedOff = handOff == .handedOff
      switch aftermath {
      case .kill:
        try session.kill()
        taken.dropSilently()
        for lock in locks { lock.release() }
        NetworkDevices.awaitOuterEndsGone(captured.tree.namespaces.network, log: log)
      case .handOff where handedOff:
        try session.kill()
        taken.dropSilently()
        for lock in locks { lock.release() }
      case .handOff where handOff == .keepFrozen, .leaveFrozen:
        for lock in locks { lock.unlock() }
        taken.release()
        session.release(leaveFrozen: true)
      case .leaveRunning, .handOff:
        for lock in locks { lock.unlock() }
        taken.release()
        session.release(leaveFrozen: false)
      }
      log.debug("released the container in \(Int((monotonicNow() - releasing) * 1000)) ms")
      return DumpReport(
        processes: captured.tasks.count, threads: captured.tasks.reduce(0) { $0 + $1.entry.threads.count },
        pageBytes: captured.tasks.reduce(0) { $0 + $1.memory.pagesSize }, bundleBytes: bundleBytes,
        frozenSeconds: frozenSeconds, frozenAt: session.frozenAt, totalSeconds: monotonicNow() - started,
        handedOff: { if case .handOff = aftermath { handedOff } else { nil } }())
    } catch {
      destination?.abandon()
      for lock in locks { lock.unlock() }
      taken.release()
      session.release(leaveFrozen: false)
      log.debug("dump failed; the container was released and runs on")
      throw error
    }
  }

  /// Locks each network namespace of the container's own (``NetworkLock``) that has a link
  /// besides loopback: not one a runtime keeps (`--external-net`), nor ckcont's.
  private func lockNetworks(of processes: [CgroupProcess]) throws -> [NetworkLock] {
    guard lockNetwork, !externalNetwork else { return [] }
    var seen: Set<String> = []
    var locks: [NetworkLock] = []
    for process in processes where NetworkLock.hasOwnNamespace(process.pid) {
      guard let namespace = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(process.pid)/ns/net"),
        seen.insert(namespace).inserted
      else { continue }
      // Loopback alone: no peer can reach it, nothing to lock (nor a need for nftables).
      guard (try? ProcNetDev.names(pid: process.pid))?.allSatisfy({ $0 == "lo" }) == false else { continue }
      do {
        locks.append(try NetworkLock(namespaceOf: process.pid, log: log))
      } catch {
        for lock in locks { lock.unlock() }
        throw CKError(
          .failed, "cannot lock the network of process \(process.pid) for the dump: \(error)",
          hint: "`--network-lock skip` dumps without (peers may see resets meanwhile)")
      }
    }
    return locks
  }

  /// Microseconds to wait before capturing each process: a fault-injection knob for tests
  /// that need something to happen to the container mid-dump (CKCONT_FAULT_CAPTURE_DELAY_MS).
  /// Read once: ProcessInfo builds the whole environment anew on every call.
  static let captureDelay: UInt32 =
    UInt32(ProcessInfo.processInfo.environment["CKCONT_FAULT_CAPTURE_DELAY_MS"].flatMap { UInt32($0) } ?? 0) * 1000

  /// Runs `body`; if it fails because process `pid` died meanwhile (a traced, stopped task
  /// dies only by SIGKILL from outside), says that instead of the failing call.
  func explainingVanished(_ pid: Int32, _ body: () throws -> Void) throws {
    do {
      try body()
    } catch {
      let state = ProcStat.read(pid: pid)?.state
      guard state == nil || state == "Z" || state == "X" else { throw error }
      throw CKError(
        .failed, "process \(pid) was killed during the dump, which is left incomplete",
        hint: "the rest of the container runs on; dump it again")
    }
  }

  /// Every process must be in the pid, cgroup and user namespaces of the container's init
  /// (time, UTS, IPC, network and mount namespaces aside, see ``TimeNamespaces`` and
  /// ``NestedNamespaces``): the restore makes one of each.
  func checkNamespaces(_ tasks: [CapturedTask], root: CapturedTask) throws {
    for task in tasks {
      // UTS, IPC, network and mount namespaces of their own are NestedNamespaces'.
      // Pid namespaces below the container's are PidNamespaces'.
      for kind in ["cgroup", "user"] where task.namespaceIDs[kind] != root.namespaceIDs[kind] {
        throw CKError(
          .failed,
          "process \(task.hostPid) is in a \(kind) namespace of its own (not that of the container's init \(root.hostPid)), which ckcont cannot restore yet"
        )
      }
    }
  }

  /// A SysV segment a process attached is restored by attaching it again: it must be one of
  /// the container's own namespace, attached whole.
  func checkSysVAttachments(_ tasks: [CapturedTask], ipc: SysVIPCImage?) throws {
    for task in tasks {
      for vma in task.memory.vmas where vma.kind == .sysvShm {
        let name = "task \(task.hostPid): SysV segment \(vma.sharedObject ?? 0) attached at \(hex(vma.start))"
        guard let segment = ipc?.sharedMemory.first(where: { UInt64($0.owner.id) == vma.sharedObject }) else {
          throw CKError(
            .failed, "\(name) belongs to the host's IPC namespace, which ckcont does not checkpoint",
            hint: "run the container in its own IPC namespace")
        }
        guard vma.offset == 0, vma.size == (segment.size + 4095) & ~4095 else {
          throw CKError(.failed, "\(name) is attached only in part, which ckcont cannot restore yet")
        }
      }
    }
  }

  /// Processes that share their parent's descriptor table or fs information (clone with
  /// CLONE_FILES or CLONE_FS but not CLONE_THREAD) are marked, to be forked the same way. One
  /// that shares its address space (CLONE_VM: a vfork child before its exec) is refused.
  func markSharedTables(_ tasks: inout [CapturedTask]) throws {
    let hostPids = Dictionary(uniqueKeysWithValues: tasks.map { ($0.entry.pid, $0.hostPid) })
    for index in tasks.indices where tasks[index].entry.ppid != 0 {
      let task = tasks[index]
      guard let parent = hostPids[task.entry.ppid] else { continue }
      if ck_kcmp(task.hostPid, parent, Int32(CK_KCMP_VM)) == 0 {
        throw CKError(
          .failed,
          "process \(task.hostPid) shares one address space (CLONE_VM) with its parent \(parent), which ckcont cannot checkpoint yet",
          hint: "only threads may share it (a vfork child must exec first); the container runs on")
      }
      if ck_kcmp(task.hostPid, parent, Int32(CK_KCMP_FILES)) == 0 { tasks[index].entry.sharesFilesWithParent = true }
      if ck_kcmp(task.hostPid, parent, Int32(CK_KCMP_FS)) == 0 { tasks[index].entry.sharesFSWithParent = true }
    }
  }

  /// What a reader must understand to restore these tasks (``Manifest/requires``).
  static func requirements(of tasks: [CapturedTask], mounts: MountsImage?, tree: ProcessTree) -> [String]? {
    let needed = BundleFormat.Requirement.allCases.filter { requirement in
      if requirement == .rootFilesystem { return mounts?.hasOwnRoot == true }
      if requirement == .shellJob { return tree.shellJobTerminal != nil }
      if requirement == .console { return tree.console != nil }
      if requirement == .externalNetwork { return tree.namespaces.netExternal == true }
      if requirement == .networkDevices { return tree.namespaces.network != nil }
      if requirement == .netfilter { return tree.namespaces.network?.netfilter != nil }
      if requirement == .bridges { return tree.namespaces.network?.links.contains { $0.bridge != nil } == true }
      if requirement == .nestedNamespaces { return tree.nestedNamespaces != nil }
      if requirement == .nestedPidNamespaces { return tree.tasks.contains { $0.nestedPids != nil } }
      return tasks.contains { task in
        switch requirement {
        case .seccompFilters: task.core.hasSeccompFilters
        case .stoppedJobs: task.entry.stopSignal != nil
        case .deletedFileMappings: task.memory.vmas.contains { $0.kind == .deletedFile }
        case .asyncIOOwners: task.files.descriptors.contains { $0.asyncOwner != nil }
        case .rootFilesystem: false
        case .terminals: task.files.descriptors.contains { $0.kind == .pty }
        case .memoryAdvice:
          task.memory.vmas.contains { $0.advice != nil || $0.sealed != nil || $0.guards != nil || $0.accounted != nil }
        case .passedDescriptors: task.files.descriptors.contains { $0.socket?.passed != nil }
        case .datagramSenders: task.files.descriptors.contains { $0.socket?.senders != nil }
        case .socketShutdown: task.files.descriptors.contains { $0.socket?.shutdown != nil }
        case .parentPages: task.memory.vmas.contains { $0.parentPages != nil || $0.laterPages != nil }
        case .precopiedPages: task.memory.vmas.contains { $0.precopiedPages != nil }
        case .lazyPages: task.memory.vmas.contains { $0.lazyPages != nil }
        case .i386Tasks: task.core.abi != nil
        case .signature: false
        case .keptFileMembers:
          task.files.descriptors.contains { $0.ghost?.dataMember != nil || $0.memfd?.dataMember != nil }
        case .pendingConnections:
          task.files.descriptors.contains { $0.socket?.pending != nil || $0.socket?.pendingOn != nil }
        case .unixConnectionMakers:
          task.files.descriptors.contains {
            $0.socket?.peerCredentials != nil || $0.socket?.family == AF_UNIX && $0.socket?.peer != nil
          }
        case .tcpClosing: task.files.descriptors.contains { $0.socket?.tcp?.state != nil }
        case .tcpPending: task.files.descriptors.contains { $0.socket?.acceptQueue != nil }
        case .shellJob, .nestedNamespaces, .nestedPidNamespaces, .console, .externalNetwork, .networkDevices,
          .netfilter, .compressedPages, .parentBundle, .bridges:
          false
        }
      }
    }
    return needed.isEmpty ? nil : needed.map(\.rawValue)
  }

  /// Which namespaces the container's root process does not share with ckcont.
  func namespaceSet(of pid: Int32) throws -> NamespaceSet {
    let theirs = try NamespaceID.readAll(pid: pid)
    let ours = try NamespaceID.readAll(pid: getpid())
    func own(_ name: String) -> Bool { theirs[name] != nil && theirs[name] != ours[name] }
    return NamespaceSet(
      pid: own("pid"), mount: own("mnt"), uts: own("uts"), ipc: own("ipc"), net: own("net"), user: own("user"),
      cgroup: own("cgroup"), time: own("time"))
  }

  /// Streams the bundle; returns its size. Long by nature: the members in the order the
  /// format fixes (small models, per-process models, the manifest that lists them all, then
  /// pages and objects), each a few lines that share the encoders and sizes.
  func write(_ captured: Captured, to destination: Destination) throws -> Int {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    var small: [(String, Data)] = [
      ("tree.json", try encoder.encode(captured.tree)), ("cgroups.json", try encoder.encode(captured.cgroups)),
    ]
    if let ipc = captured.ipc { small.append(("ipc.json", try encoder.encode(ipc.image))) }
    if let mounts = captured.mounts { small.append(("mounts.json", try encoder.encode(mounts))) }
    let encoding = monotonicNow()
    // Encoding is CPU work independent per task: spread it over the cores.
    let tasks = captured.tasks
    let encoded = tasks.concurrentMap { (task: CapturedTask) throws(any Error) in
      let encoder = JSONEncoder()
      encoder.outputFormatting = [.sortedKeys]
      return try encoder.encode(task.files)
    }
    for (index, (task, result)) in zip(tasks, encoded).enumerated() {
      let files = try result.get()
      let model = captured.encoded[index]
      small += [(task.entry.coreMember, model.core), (task.entry.mmMember, model.mm), (task.entry.filesMember, files)]
    }
    log.debug(
      "encoded the model (\(small.reduce(0) { $0 + $1.1.count } >> 10) KiB of JSON) in \(Int((monotonicNow() - encoding) * 1000)) ms"
    )
    var members = small.map { Manifest.Member(name: $0.0, size: $0.1.count) }
    // Compressed pages are read and compressed first: the manifest lists their sizes.
    let compressed = try compressionLevel.map { try compressPages(captured, level: $0) }
    members += captured.tasks.indices.map { index in
      let task = captured.tasks[index]
      if let compressed {
        return Manifest.Member(name: task.entry.pagesMember + Compression.suffix, size: compressed[index].count)
      }
      return Manifest.Member(name: task.entry.pagesMember, size: Int(task.memory.pagesSize))
    }
    let segments = (captured.ipc?.image.sharedMemory ?? []).map { segment in
      (
        name: SysVIPCImage.contentsMember(ofSegment: segment.owner.id),
        bytes: captured.ipc?.contents[segment.owner.id] ?? []
      )
    }
    members += segments.map { Manifest.Member(name: $0.name, size: $0.bytes.count) }
    let memfds = captured.privateObjects.sorted { $0.key < $1.key }.map { (name: $0.key, bytes: $0.value) }
    members += memfds.map { Manifest.Member(name: $0.name, size: $0.bytes.count) }
    let kept = KeptFileData.members(of: captured.tasks)
    members += kept.map { Manifest.Member(name: $0.name, size: Int($0.file.storedLength)) }
    var manifest = Manifest(
      toolVersion: toolVersion, kernelRelease: kernelRelease(), cpu: captured.cpu, sourceCgroup: cgroup.path,
      created: Date(), members: members)
    manifest.requires = Self.requirements(of: captured.tasks, mounts: captured.mounts, tree: captured.tree)
    if signingKey != nil {
      manifest.requires = (manifest.requires ?? []) + [BundleFormat.Requirement.signature.rawValue]
    }
    if compressed != nil {
      manifest.requires = (manifest.requires ?? []) + [BundleFormat.Requirement.compressedPages.rawValue]
    }
    if let parentPages {
      manifest.parent = Manifest.Parent(path: parentPages.recorded, identity: parentPages.identity)
      manifest.requires = (manifest.requires ?? []) + [BundleFormat.Requirement.parentBundle.rawValue]
    }
    try checkRestorable(
      manifest, json: small, tree: captured.tree,
      plainSizes: compressed == nil
        ? [:]
        : Dictionary(
          captured.tasks.map { ($0.entry.pagesMember, Int($0.memory.pagesSize)) },
          uniquingKeysWith: { first, _ in first }))
    let writer = try BundleWriter(sink: destination.sink, manifest: manifest, signingKey: signingKey)
    for (name, data) in small { try writer.add(name: name, data: data) }
    let totalPages = captured.tasks.reduce(UInt64(0)) { $0 + $1.memory.pagesSize }
    var before: UInt64 = 0
    let started = monotonicNow()
    let buffer = PageReader.allocateBuffer()
    defer { buffer.deallocate() }
    let copier = PageCopier(helperCPUs: nil)
    defer { copier.stop() }
    for (index, task) in captured.tasks.enumerated() {
      try Interruption.check()
      if let compressed {
        try writer.add(name: task.entry.pagesMember + Compression.suffix, data: compressed[index])
        continue
      }
      try writer.beginMember(name: task.entry.pagesMember, size: Int(task.memory.pagesSize))
      try explainingVanished(task.hostPid) {
        try PageReader(
          pid: task.hostPid, image: task.memory, buffer: buffer, copier: copier,
          unpinned: captured.unpinned[task.hostPid] ?? []
        ).write(to: writer) {
          done in
          progress(before + UInt64(done), totalPages)
        }
      }
      try writer.endMember()
      FaultInjection.point("dump:writing")
      before += task.memory.pagesSize
    }
    for member in segments + memfds { try writer.add(name: member.name, data: member.bytes) }
    for member in kept { try member.write(to: writer) }
    try writer.finish()
    try destination.sink.flush()
    let seconds = monotonicNow() - started
    let rate = seconds > 0 ? String(format: " (%.2f GB/s)", Double(totalPages) / seconds / 1e9) : ""
    log.debug("wrote \(totalPages >> 20) MiB of pages in \(Int(seconds * 1000)) ms\(rate)")
    return writer.bytesWritten
  }
}

extension Dump {
  /// Each task's pages as one zstd frame, in task order.
  func compressPages(_ captured: Captured, level: Int32) throws -> [[UInt8]] {
    let buffer = PageReader.allocateBuffer()
    defer { buffer.deallocate() }
    let copier = PageCopier(helperCPUs: nil)
    defer { copier.stop() }
    let total = captured.tasks.reduce(UInt64(0)) { $0 + $1.memory.pagesSize }
    var before: UInt64 = 0
    let started = monotonicNow()
    var frames: [[UInt8]] = []
    for task in captured.tasks {
      try Interruption.check()
      let sink = try CompressingPageSink(level: level, total: task.memory.pagesSize)
      try explainingVanished(task.hostPid) {
        try PageReader(
          pid: task.hostPid, image: task.memory, buffer: buffer, copier: copier,
          unpinned: captured.unpinned[task.hostPid] ?? []
        ).write(to: sink) { done in progress(before + UInt64(done), total) }
      }
      frames.append(try sink.finish())
      before += task.memory.pagesSize
    }
    let size = frames.reduce(0) { $0 + $1.count }
    log.debug(
      "compressed \(total >> 20) MiB of pages to \(size >> 20) MiB in \(Int((monotonicNow() - started) * 1000)) ms")
    return frames
  }

  /// Runs the restore's whole validation and its plan (tree, sessions, groups, cgroup
  /// places) on the model about to be written, pages aside: whatever the restore would
  /// refuse, the dump refuses first, while the container still runs.
  func checkRestorable(
    _ manifest: Manifest, json: [(String, Data)], tree: ProcessTree, plainSizes: [String: Int] = [:]
  ) throws {
    var pages: [String: (data: UnsafeRawBufferPointer?, size: Int)] = [:]
    for member in manifest.members where LoadedBundle.isRawMember(member.name) {
      pages[member.name] = (nil, member.size)
    }
    // A compressed member is checked at the size it holds.
    for (name, size) in plainSizes { pages[name] = (nil, size) }
    let members = LoadedBundle.Members(
      manifest: manifest, json: Dictionary(json.map { ($0.0, [UInt8]($0.1)) }, uniquingKeysWith: { first, _ in first }),
      pages: pages)
    // The container's own pids are taken now, free once it is gone.
    let own = Set(tree.tasks.map(\.pid))
    let ownPidNamespace = tree.namespaces.pid
    do {
      let bundle = try LoadedBundle(members, allowingPrecopied: true, log: .discarding)
      _ = try Restore.plan(bundle) { ownPidNamespace || own.contains($0) || (kill($0, 0) != 0 && errno == ESRCH) }
    } catch let error as CKError {
      throw CKError(
        .failed, "ckcont could not restore what this dump would write: \(error.message)",
        hint: "the container runs on; report this with `ckcont dump -v`")
    }
  }
}

/// The output of a dump: a temporary file renamed into place once synced and verified, or
/// standard output.
final class Destination {
  let sink: FileDescriptorSink
  let finalPath: String?
  let temporaryPath: String?

  /// The partial file is journaled before it is made, for ``DumpRecovery`` to remove should
  /// ckcont die; partial files of earlier dumps to the same path whose ckcont is gone are
  /// removed.
  init(_ output: DumpOutput, journal: DumpJournal) throws {
    switch output {
    case .standardOutput:
      sink = FileDescriptorSink(fd: 1, name: "standard output")
      finalPath = nil
      temporaryPath = nil
    case .descriptor(let fd, let name):
      sink = FileDescriptorSink(fd: fd, name: name, framed: true)
      finalPath = nil
      temporaryPath = nil
    case .file(let path):
      Self.removeStalePartials(of: path)
      let temporary = path + Self.partialSuffix + "\(getpid())"
      try journal.update { $0.partialBundle = temporary }
      let fd = try syscallChecked("open", temporary) {
        open(temporary, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
      }
      sink = FileDescriptorSink(fd: fd, name: temporary, inPlace: true)
      finalPath = path
      temporaryPath = temporary
    }
  }

  static let partialSuffix = ".partial-"

  /// Removes `path.partial-<pid>` files whose ckcont no longer runs.
  static func removeStalePartials(of path: String) {
    let url = URL(fileURLWithPath: path)
    let directory = url.deletingLastPathComponent().path
    let prefix = url.lastPathComponent + partialSuffix
    for name in (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? [] where name.hasPrefix(prefix) {
      guard let pid = Int32(name.dropFirst(prefix.count)) else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH { unlink(directory + "/" + name) }
    }
  }

  /// Removes the bundle committed into place (a post-dump action script failed: the dump
  /// fails, and a failed dump leaves no bundle). Standard output cannot take it back.
  func withdraw() {
    if let finalPath { unlink(finalPath) }
  }

  /// fsync, verify by reading it back, rename into place. The sink stays open (its
  /// mappings too) until the owner closes it.
  func commit(log: Logger) throws {
    guard let finalPath, let temporaryPath else {
      // A pipe cannot be read back: what went out was checksummed as it went.
      try sink.endFrames()
      return
    }
    try syscallChecked("fsync", temporaryPath) { fsync(sink.fd) }
    let started = monotonicNow()
    let fd = try syscallChecked("open", temporaryPath) { open(temporaryPath, O_RDONLY | O_CLOEXEC) }
    defer { Glibc.close(fd) }
    do {
      _ = try BundleReader.verify(source: try MappedFileSource(fd: fd, name: temporaryPath))
    } catch {
      throw CKError(.failed, "the bundle written to \(temporaryPath) does not verify: \(error)")
    }
    log.debug("verified the bundle in \(Int((monotonicNow() - started) * 1000)) ms")
    try syscallChecked("rename", "\(temporaryPath) -> \(finalPath)") { rename(temporaryPath, finalPath) }
  }

  /// Closes the bundle file (standard output stays open: a report may follow).
  func close() {
    if temporaryPath != nil { sink.close() }
  }

  /// Removes the partial file.
  func abandon() {
    guard let temporaryPath else { return }
    sink.close()
    unlink(temporaryPath)
  }
}
