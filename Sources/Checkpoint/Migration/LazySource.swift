import Bundle
import Cgroup
import Foundation
import Glibc
import Linux

/// The source's side of a lazy migration (post-copy, `ckcont migrate --lazy`): the bundle
/// names most private memory (``VMAImage/lazyPages``) instead of holding it, and the
/// source, frozen, serves those pages over a connection of their own while the receiver
/// runs the container: the pages its processes touch first (requests), and all the others
/// in order meanwhile (the push). The receiver's side is ``LazyPages``.
///
/// Protocol of the page connection, after its hello line (``hello``): records of 16 bytes,
/// (pid: Int32, count: UInt32, address: UInt64), little-endian as both hosts are x86_64.
/// The receiver sends requests (count 1) and, once every page is in, (0, 0, 0). The source
/// sends a record followed by `count` pages, and (0, 0, 0) once it has pushed them all.
final class LazySource: @unchecked Sendable {
  static let hello = "ckcont-pages 1"
  static let pageSize: UInt64 = 4096
  /// Pages pushed per record: small enough that a request waits little behind one.
  static let pushPages: UInt64 = 64
  /// Pages sent for a request: the one asked for and those after it not sent yet.
  static let readAhead: UInt64 = 16

  /// The pages a process's image names lazily, and where it is on this host.
  struct Process {
    var hostPid: Int32
    var runs: [PageRun]
  }
  /// By pid in the container, as the bundle names them; filled by ``mark(_:entries:tree:)``.
  private(set) var processes: [Int32: Process] = [:]
  var pageCount: Int { processes.values.reduce(0) { $0 + $1.runs.reduce(0) { $0 + Int($1.size / Self.pageSize) } } }

  /// Whether a mapping's pages can be fetched at first touch: writable private anonymous
  /// memory in small pages, the process's own (not kept through a fork, no pages held for
  /// children), unlocked (mlock would touch every page while the restore runs), not wiped,
  /// dropped or guarded by the kernel on its own, and with enough pages to be worth it. Its
  /// first saved page stays in the bundle: the mapping is then one with pages for every
  /// decision of the restore (it gets its anon_vma from that page).
  static func eligible(_ vma: VMAImage) -> Bool {
    fillableAfterResume(vma) && vma.precopiedPages == nil
      && vma.pages.reduce(0) { $0 + $1.size } >= MemoryRestore.userfaultMinimumMapping
  }

  /// Whether pages of a mapping can be put in after its process resumed (see above).
  static func fillableAfterResume(_ vma: VMAImage) -> Bool {
    vma.isPrivateAnonymous && vma.protection & PROT_WRITE != 0 && vma.hugePageSize == nil
      && vma.parentPages == nil && vma.laterPages == nil && vma.lock == nil && vma.sealed == nil
      && vma.droppable != true && vma.guards == nil && !(vma.advice ?? []).contains(.wipeOnFork)
  }

  /// The processes whose memory must be whole at the restore (nil when the tree cannot be
  /// planned): those whose children keep their mappings (the restore fills their memory
  /// before it forks them), and those in a user namespace other than ckcont's, which
  /// cannot get a userfaultfd that catches the kernel's faults too (userfaultfd(2) without
  /// UFFD_USER_MODE_ONLY wants CAP_SYS_PTRACE in the first namespace).
  static func keptWhole(_ tasks: [Dump.CapturedTask], entries: [TaskEntryImage], tree: ProcessTree) -> Set<Int32>? {
    guard let plan = try? TreePlan(tasks: entries, ownPidNamespace: tree.namespaces.pid, isFree: { _ in true }),
      let ownUser = try? NamespaceID.read(pid: getpid(), name: "user")
    else { return nil }
    let sources = ForkInheritance.memorySources(plan, living: Set(tasks.map(\.entry.pid)))
    return Set(tasks.filter { !ForkInheritance.keptRanges($0.memory).isEmpty }.compactMap { sources[$0.entry.pid] })
      .union(tasks.filter { $0.memory.vmas.contains { $0.laterPages != nil } }.map(\.entry.pid))
      .union(tasks.filter { $0.namespaceIDs["user"] != ownUser }.map(\.entry.pid))
  }

  /// With pre-copy: the pages the receiver holds already (``VMAImage/precopiedPages``) of
  /// mappings whose pages can be put in after the process resumed become
  /// ``VMAImage/lazyPages``, which the receiver puts in from its store then (a fault first
  /// takes its page at once), not inside the downtime. A mapping without a saved page gets
  /// its first one saved (see ``eligible(_:)``). Returns the tasks changed.
  static func markHeldAhead(_ tasks: inout [Dump.CapturedTask], entries: [TaskEntryImage], tree: ProcessTree)
    -> Set<Int>
  {
    guard let keptWhole = keptWhole(tasks, entries: entries, tree: tree) else { return [] }
    var changed = Set<Int>()
    for index in tasks.indices where !keptWhole.contains(tasks[index].entry.pid) {
      var image = tasks[index].memory
      for at in image.vmas.indices where fillableAfterResume(image.vmas[at]) {
        guard var ahead = image.vmas[at].precopiedPages, !ahead.isEmpty else { continue }
        if image.vmas[at].pages.isEmpty {
          let first = ahead[0].start
          image.vmas[at].pages = [PageRun(start: first, end: first + pageSize)]
          ahead[0].start += pageSize
          ahead.removeAll { $0.start == $0.end }
        }
        image.vmas[at].precopiedPages = nil
        image.vmas[at].lazyPages = ahead.isEmpty ? nil : ahead
      }
      guard image != tasks[index].memory else { continue }
      image.renumberPages()
      tasks[index].memory = image
      changed.insert(index)
    }
    return changed
  }

  /// Moves the saved pages of eligible mappings (all but each one's first) to
  /// ``VMAImage/lazyPages`` and notes them for serving; not in a process kept whole
  /// (``keptWhole(_:entries:tree:)``), whose memory goes in the bundle. Returns the tasks
  /// changed.
  func mark(_ tasks: inout [Dump.CapturedTask], entries: [TaskEntryImage], tree: ProcessTree) -> Set<Int> {
    guard let keptWhole = Self.keptWhole(tasks, entries: entries, tree: tree) else { return [] }
    var changed = Set<Int>()
    for index in tasks.indices where !keptWhole.contains(tasks[index].entry.pid) {
      var image = tasks[index].memory
      var runs: [PageRun] = []
      for at in image.vmas.indices where Self.eligible(image.vmas[at]) {
        let vma = image.vmas[at]
        let first = vma.pages[0].start
        let kept = PageRun(start: first, end: first + Self.pageSize)
        var lazy = vma.pages
        lazy[0].start += Self.pageSize
        lazy.removeAll { $0.start == $0.end }
        guard !lazy.isEmpty else { continue }
        image.vmas[at].pages = [kept]
        image.vmas[at].lazyPages = lazy
        runs += lazy
      }
      guard !runs.isEmpty else { continue }
      image.renumberPages()
      tasks[index].memory = image
      processes[tasks[index].entry.pid] = Process(hostPid: tasks[index].hostPid, runs: runs)
      changed.insert(index)
    }
    return changed
  }

  /// Serves the pages over `channel` until the receiver says it has them all (true), or
  /// the connection ends first (false). The processes stay frozen meanwhile. One loop over
  /// the connection's events (requests first, then the push), kept whole to read as one.
  func serve(over channel: MigrationChannel) throws -> Bool {
    // Raw: a dictionary cannot hold owned descriptors; closed on the way out.
    var memories: [Int32: Int32] = [:]
    defer { for fd in memories.values { close(fd) } }
    for (pid, process) in processes {
      let memory = open("/proc/\(process.hostPid)/mem", O_RDONLY | O_CLOEXEC)
      guard memory >= 0 else {
        throw CKError(.failed, "cannot read the memory of process \(process.hostPid) to serve its pages")
      }
      memories[pid] = memory
    }
    let buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: Int(Self.pushPages * Self.pageSize), alignment: Int(Self.pageSize))
    defer { buffer.deallocate() }
    var sent = Set<PageKey>()
    var queue = processes.sorted { $0.key < $1.key }.flatMap { pid, process in process.runs.map { (pid, $0) } }[...]

    func send(pid: Int32, address: UInt64, count: UInt64) throws {
      guard let memory = memories[pid] else {
        throw CKError(.badInput, "the receiver asked for a page of process \(pid), which has none to fetch")
      }
      let bytes = Int(count * Self.pageSize)
      let read = pread(memory, buffer.baseAddress, bytes, off_t(address))
      guard read == bytes else {
        throw SyscallError("pread", "pages \(hex(address)) of process \(pid)", .init(rawValue: read < 0 ? errno : EIO))
      }
      try channel.send(record: PageRecord(pid: pid, count: UInt32(count), address: address), more: true)
      try channel.send(bytes: UnsafeRawBufferPointer(rebasing: buffer[0..<bytes]))
    }

    /// Sends the pages from `start` on, up to `end` and at most `limit` of them, that were
    /// not sent yet (stopping at the first that was); returns where it stopped.
    func sendUnsent(pid: Int32, from start: UInt64, to end: UInt64, limit: UInt64) throws -> UInt64 {
      var stop = start
      while stop < end && stop - start < limit * Self.pageSize && !sent.contains(PageKey(pid: pid, address: stop)) {
        stop += Self.pageSize
      }
      guard stop > start else { return stop }
      try send(pid: pid, address: start, count: (stop - start) / Self.pageSize)
      for address in stride(from: start, to: stop, by: Int(Self.pageSize)) {
        sent.insert(PageKey(pid: pid, address: address))
      }
      return stop
    }

    var pushed = false
    let pushFrom = monotonicNow() + FaultInjection.delay("lazy:push")
    while true {
      // Requests first: a process waits for each.
      let wait = pushed ? 600 : max(0, pushFrom - monotonicNow())
      if try channel.hasInput(timeout: wait) {
        guard let request = try channel.receiveRecord() else { return false }
        if request.count == 0 { return true }
        let key = PageKey(pid: request.pid, address: request.address)
        guard request.count == 1, request.address % Self.pageSize == 0 else {
          throw CKError(.badInput, "the receiver sent a malformed page request")
        }
        guard !sent.contains(key) else { continue }
        // The pages after it in its run come along: a program reads on.
        let run = processes[request.pid]?.runs.first { $0.start <= request.address && request.address < $0.end }
        _ = try sendUnsent(
          pid: request.pid, from: request.address, to: run?.end ?? request.address + Self.pageSize,
          limit: Self.readAhead)
        continue
      }
      if pushed { throw CKError(.failed, "the receiver said nothing for \(Int(wait)) s once it had every page") }
      guard monotonicNow() >= pushFrom else { continue }
      guard let (pid, run) = queue.first else {
        if !pushed {
          try channel.send(record: PageRecord(pid: 0, count: 0, address: 0))
          pushed = true
        }
        continue
      }
      // The next pages of the run not sent yet on request.
      var start = run.start
      while start < run.end && sent.contains(PageKey(pid: pid, address: start)) { start += Self.pageSize }
      let end = try sendUnsent(pid: pid, from: start, to: run.end, limit: Self.pushPages)
      if end >= run.end {
        queue.removeFirst()
      } else {
        queue[queue.startIndex].1.start = end
      }
    }
  }
}

/// A page of the source: its process (pid in the container) and address.
struct PageKey: Hashable {
  var pid: Int32
  var address: UInt64
}

/// One record of the page connection (``LazySource``).
struct PageRecord {
  var pid: Int32
  var count: UInt32
  var address: UInt64
  static let size = 16
}

extension MigrationChannel {
  /// Sends `record`.
  /// Sends `record`; with `more`, held back to go with its pages (MSG_MORE).
  func send(record: PageRecord, more: Bool = false) throws {
    var bytes = [UInt8](repeating: 0, count: PageRecord.size)
    withUnsafeBytes(of: record.pid.littleEndian) { bytes.replaceSubrange(0..<4, with: $0) }
    withUnsafeBytes(of: record.count.littleEndian) { bytes.replaceSubrange(4..<8, with: $0) }
    withUnsafeBytes(of: record.address.littleEndian) { bytes.replaceSubrange(8..<16, with: $0) }
    try bytes.withUnsafeBytes { try send(bytes: $0, more: more) }
  }

  /// The next record; nil when the stream ends before it.
  func receiveRecord() throws -> PageRecord? {
    var bytes = [UInt8](repeating: 0, count: PageRecord.size)
    var done = 0
    while done < PageRecord.size {
      let count = bytes.withUnsafeMutableBytes {
        Glibc.read(fd, $0.baseAddress.map { $0 + done }, PageRecord.size - done)
      }
      if count < 0 && errno == EINTR { continue }
      guard count >= 0 else { throw SyscallError("read", "the connection to \(peer)", .init(rawValue: errno)) }
      guard count > 0 else {
        if done == 0 { return nil }
        throw CKError(.failed, "\(peer) closed the connection in the middle of a record")
      }
      done += count
    }
    func word<T: FixedWidthInteger>(_ range: Range<Int>, _: T.Type) -> T {
      bytes[range].withUnsafeBytes { T(littleEndian: $0.loadUnaligned(as: T.self)) }
    }
    return PageRecord(pid: word(0..<4, Int32.self), count: word(4..<8, UInt32.self), address: word(8..<16, UInt64.self))
  }

  /// Whether something comes to be read within `timeout` seconds (0: now).
  func hasInput(timeout: Double) throws -> Bool {
    var polled = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
    while true {
      let ready = poll(&polled, 1, Int32(timeout * 1000))
      if ready < 0 && errno == EINTR { continue }
      guard ready >= 0 else { throw SyscallError("poll", "the connection to \(peer)", .init(rawValue: errno)) }
      return ready > 0
    }
  }
}
