import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging
import Synchronization

/// The receiver's side of a lazy migration (post-copy; the source's is ``LazySource``).
/// Each restored process with pages to fetch (``VMAImage/lazyPages``) hands its userfaultfd
/// over as soon as its mappings are registered (``adopt(_:pid:lazy:restoring:)``); from
/// then on a thread of its own serves every fault: a page still at the source is asked for
/// and put in when it comes (UFFDIO_COPY wakes the process), a page that never held data
/// becomes a zero page, a page the restore is still copying is left to the copy. The pages
/// the source pushes in order are put in as they come, so the fetch ends by itself.
///
/// What a process does with memory not yet filled reaches this thread before it takes
/// effect (the non-cooperative events): a fork gives the child's userfaultfd, whose
/// missing pages are the same source pages as the parent's; mremap moves them; madvise
/// (DONTNEED, REMOVE) and munmap drop them (a later touch reads zeros, as it would have).
/// Every page that came is kept until the end: a child forked after its parent got a page
/// may still miss it.
///
/// If the receiver dies before the end, the processes must not run on: closing the last
/// descriptor of a userfaultfd unregisters it, and a missing page would then read as zeros.
/// A guard process (``ck_spawn_lazy_guard``) holds a copy of every userfaultfd, so that the
/// processes wait, and kills the container's cgroup when the receiver's end of its socket
/// closes before the receiver said it is done.
public final class LazyPages: @unchecked Sendable {
  /// What the fetch did, for the report.
  public struct Summary: Sendable, Codable {
    public var pages: Int
    /// Pages a process waited for (asked for ahead of the push).
    public var requested: Int
    public var zeroPages: Int
    public var seconds: Double
  }

  /// One address space being filled: a restored process, or one forked from it since.
  private final class Space: @unchecked Sendable {
    let fd: OwnedDescriptor
    /// The restored process it comes from (pid in the container), for messages.
    let pid: Int32
    /// The source page each missing page of this space is.
    var entries: [UInt64: PageKey]
    var addressOf: [PageKey: UInt64]
    /// Pages the restore copies in itself (until it is done): a fault there waits for it.
    var restoring: [AddressRange]
    var deferred: [UInt64] = []
    /// The runs to fetch not listed yet page by page into ``entries`` (sorted): listed a
    /// chunk at a time between faults (a gigabyte is 262,144 pages, ~0.2 s to list); a
    /// fault there meanwhile is the same page of the source (``pendingKey(_:)``).
    var runs: ArraySlice<PageRun> = []
    /// Pages held already (came before the process was adopted, or sent ahead by pre-copy
    /// rounds), sorted by address: put in a chunk at a time between faults.
    var toFill: ArraySlice<(address: UInt64, data: UnsafeRawPointer)> = []
    /// Zero pages refused while the address space changed, put in once its events are read.
    var toZero: [UInt64] = []
    var filling: Bool { !toFill.isEmpty || !toZero.isEmpty }

    /// The source page of `page` when it lies in a run not listed yet.
    func pendingKey(_ page: UInt64) -> PageKey? {
      var low = runs.startIndex
      var high = runs.endIndex
      while low < high {
        let middle = (low + high) / 2
        if runs[middle].end <= page {
          low = middle + 1
        } else {
          high = middle
        }
      }
      guard low < runs.endIndex, runs[low].start <= page else { return nil }
      return PageKey(pid: pid, address: page)
    }

    init(fd: consuming OwnedDescriptor, pid: Int32, entries: [UInt64: PageKey], restoring: [AddressRange]) {
      self.fd = fd
      self.pid = pid
      self.entries = entries
      self.addressOf = Dictionary(uniqueKeysWithValues: entries.map { ($1, $0) })
      self.restoring = restoring
    }
  }

  /// What the restore's thread hands to the serving thread.
  private struct Inbox {
    var spaces: [Space] = []
    var sealed = false
    var stopped = false
    var filling = false
  }

  /// The page connection to the source; nil when every page is held here already (the
  /// pages a pre-copy migration sent ahead, put in after the container resumes).
  private let channel: MigrationChannel?
  private let log: Logger
  private let guardPid: pid_t
  private let guardControl: OwnedDescriptor
  private let inbox = Mutex(Inbox())
  /// A pipe whose reading end the serving thread polls.
  private let wakeup: OwnedDescriptor
  private let wakeupWriter: OwnedDescriptor
  private var job: BackgroundJob<Summary>?

  // Owned by the serving thread.
  private var spaces: [Space] = []
  private var holders: [PageKey: [Space]] = [:]
  private let store: PreCopyStore
  private var asked: Set<PageKey> = []
  private var arrived = 0
  private var zeroPages = 0
  private var sourceDone = false
  private var sealed = false
  /// When the pages held go in (``startFilling()``): not while the restore runs, which
  /// needs the CPUs (its own faults are served meanwhile).
  private var fillFrom = Double.infinity
  private var fillDelay = 0.0
  /// Whether the last look at the faults served one.
  private var faulted = false
  /// Faults served from pages held, and the longest that took (for -v).
  private var faults = 0
  private var longestFault = 0.0
  private let buffer: UnsafeMutableRawBufferPointer

  /// Serves the pages coming over `channel` (the page connection, its hello read), or
  /// (nil) those `store` holds already.
  init(channel: MigrationChannel?, store: PreCopyStore? = nil, log: Logger) throws {
    self.channel = channel
    self.log = log
    self.store = try store ?? PreCopyStore()
    sourceDone = channel == nil
    var ends: [Int32] = [-1, -1]
    guard ck_pipe2(&ends, O_CLOEXEC | O_NONBLOCK) == 0 else {
      throw SyscallError("pipe2", "the lazy pages' wake-up", .init(rawValue: errno))
    }
    wakeup = OwnedDescriptor(adopting: ends[0])
    wakeupWriter = OwnedDescriptor(adopting: ends[1])
    var control: Int32 = -1
    let spawned = ck_spawn_lazy_guard(&control)
    guard spawned > 0 else {
      throw SyscallError("fork", "the lazy migration's guard", .init(rawValue: -spawned))
    }
    guardPid = spawned
    guardControl = OwnedDescriptor(adopting: control)
    buffer = UnsafeMutableRawBufferPointer.allocate(
      byteCount: Int(LazySource.pushPages * LazySource.pageSize), alignment: Int(LazySource.pageSize))
  }

  deinit {
    stop()
    _ = try? job?.wait()
    buffer.deallocate()
  }

  /// Starts serving.
  func start() {
    let started = monotonicNow()
    // A test build may hold the fills back: the container then works on memory not put in.
    fillDelay = FaultInjection.delay("lazy:fill")
    job = BackgroundJob(named: "ckcont-lazy-pages") { [self] in
      // Closing the userfaultfds unregisters what is left: nothing is missing any more.
      defer {
        holders.removeAll()
        spaces.removeAll()
      }
      try serve()
      return Summary(
        pages: arrived, requested: asked.count, zeroPages: zeroPages, seconds: monotonicNow() - started)
    }
  }

  /// Takes over a restored process's userfaultfd, its mappings registered for missing
  /// pages: `lazy` are the pages to fetch (the process's pid in the container, `pid`, names
  /// them at the source), `restoring` those the restore copies in itself.
  /// Its pages are listed on the serving thread: a gigabyte is 262,144 of them, and the
  /// restore goes on meanwhile.
  func adopt(_ userfault: consuming OwnedDescriptor, pid: Int32, lazy: [PageRun], restoring: [AddressRange]) throws {
    let held = ck_send_fd(guardControl.raw, userfault.raw)
    guard held == 0 else {
      throw SyscallError("sendmsg", "a userfaultfd to the lazy migration's guard", .init(rawValue: -held))
    }
    let space = Space(fd: userfault, pid: pid, entries: [:], restoring: restoring)
    space.runs = lazy.sorted { $0.start < $1.start }[...]
    inbox.withLock { $0.spaces.append(space) }
    wake()
  }

  /// The restored container's cgroup (its directory), which the guard kills if this
  /// process dies before every page is in.
  func guardCgroup(_ directory: String) {
    let message = Array(("c" + directory).utf8)
    _ = message.withUnsafeBytes { send(guardControl.raw, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
  }

  /// The restore is done: every page it copies is in.
  func seal() {
    inbox.withLock { $0.sealed = true }
    wake()
  }

  /// The container runs: the pages held go in from now on.
  func startFilling() {
    inbox.withLock { $0.filling = true }
    wake()
  }

  /// Stops serving (a failed restore): the processes are being killed.
  func stop() {
    inbox.withLock { $0.stopped = true }
    wake()
  }

  /// Waits until every page has come and is in (or was dropped by its process).
  func wait() throws -> Summary {
    guard let job else { throw CKError(.failed, "the lazy pages were never served") }
    return try job.wait()
  }

  private func wake() {
    var one: UInt8 = 1
    _ = write(wakeupWriter.raw, &one, 1)
  }

  // MARK: The serving thread

  private func serve() throws {
    while true {
      var polled = [pollfd(fd: wakeup.raw, events: Int16(POLLIN), revents: 0)]
      polled.append(pollfd(fd: sourceDone ? -1 : channel?.fd ?? -1, events: Int16(POLLIN), revents: 0))
      polled += spaces.map { pollfd(fd: $0.fd.raw, events: Int16(POLLIN), revents: 0) }
      // Faults and events first; pages held already go in between them. A process whose
      // fault was just served mostly faults again within microseconds (a server catching
      // up on its frozen time writes thousands of pages in a row): the fill waits that long
      // for it, or each such fault would wait for a chunk to go in first.
      // Runs not listed yet go first, between faults likewise.
      let listing = spaces.first { !$0.runs.isEmpty }
      let filling = spaces.contains { $0.filling }
      let holdBack = max(listing != nil ? 0 : fillFrom - monotonicNow(), faulted ? Self.faultPause : 0)
      faulted = false
      let ready = Self.poll(
        &polled, waiting: listing != nil || (filling && fillFrom.isFinite) ? max(0, holdBack) : nil)
      if ready < 0 && errno == EINTR { continue }
      guard ready >= 0 else { throw SyscallError("ppoll", "the lazy pages", .init(rawValue: errno)) }
      if polled[0].revents != 0, try takeInbox() { return }
      for (space, entry) in zip(spaces, polled.dropFirst(2)) where entry.revents != 0 {
        try handleEvents(of: space)
      }
      if polled[1].revents != 0 { try receivePages() }
      if ready == 0, let listing {
        try list(listing, budget: Self.listChunk)
      } else if ready == 0 && monotonicNow() >= fillFrom {
        fillChunk()
      }
      if sealed && sourceDone && !spaces.contains(where: { $0.filling || !$0.runs.isEmpty }) {
        // Every page is in: the guard lets go of its copies (and the processes' memory is
        // ordinary again once this thread's are closed too).
        _ = send(guardControl.raw, "d", 1, Int32(MSG_NOSIGNAL))
        var status: Int32 = 0
        while waitpid(guardPid, &status, 0) < 0 && errno == EINTR {}
        try channel?.send(record: PageRecord(pid: 0, count: 0, address: 0))
        log.debug(
          "lazy pages: all \(arrived) in, \(asked.count) asked for, \(zeroPages) zero pages, \(faults) faults served from pages held (longest \(Int(longestFault * 1_000_000)) µs from the event on)"
        )
        return
      }
    }
  }

  /// Polls for up to `seconds` (nil: until something is ready), to the microsecond.
  private static func poll(_ polled: inout [pollfd], waiting seconds: Double?) -> Int32 {
    ck_poll_for(&polled, UInt(polled.count), seconds.map { Int64($0 * 1e9) } ?? -1)
  }

  /// How long the fill waits for a process's next fault after serving one: a few times
  /// what a fault costs the process here (wake-ups across CPUs in a VM, the fault, the
  /// event read), so that a burst of faults is served back to back.
  static let faultPause = 0.000_5

  /// Takes what the restore handed over; true when told to stop.
  private func takeInbox() throws -> Bool {
    var drained = [UInt8](repeating: 0, count: 64)
    while read(wakeup.raw, &drained, drained.count) > 0 {}
    let taken = inbox.withLock { inbox in
      defer { inbox.spaces.removeAll() }
      return inbox
    }
    if taken.stopped { return true }
    if taken.filling && !fillFrom.isFinite { fillFrom = monotonicNow() + fillDelay }
    for space in taken.spaces {
      spaces.append(space)
      // Faults of the restore itself (a kernel write into a page to fetch) wait for it.
      try handleEvents(of: space)
    }
    if taken.sealed && !sealed {
      sealed = true
      for space in spaces {
        for page in space.deferred { zeroPage(space, page) }
        space.deferred.removeAll()
        space.restoring.removeAll()
      }
    }
    return false
  }

  /// Lists up to `budget` pages of `space`'s runs not listed yet: the source pushes from the
  /// moment it has sent the bundle, so what came before goes in with the fills, the rest as
  /// it comes. Without a source every page must be here (sent ahead): a page missing would
  /// be waited for for ever.
  private func list(_ space: Space, budget: Int = .max) throws {
    var left = budget
    var present: [(address: UInt64, data: UnsafeRawPointer)] = []
    while left > 0, var run = space.runs.first {
      let count = Int(min(UInt64(left), run.size / LazySource.pageSize))
      for address in stride(
        from: run.start, to: run.start + UInt64(count) * LazySource.pageSize, by: Int(LazySource.pageSize))
      {
        let key = PageKey(pid: space.pid, address: address)
        space.entries[address] = key
        if channel != nil { space.addressOf[key] = address }
        if let data = store.page(pid: key.pid, at: key.address) {
          present.append((address, data))
        } else if channel == nil {
          throw CKError(
            .badInput, "task \(space.pid): page \(hex(address)) was to come from a migration's rounds, which lack it")
        } else {
          holders[key, default: []].append(space)
        }
      }
      left -= count
      run.start += UInt64(count) * LazySource.pageSize
      if run.start == run.end {
        space.runs.removeFirst()
      } else {
        space.runs[space.runs.startIndex] = run
      }
    }
    space.toFill += present
  }

  /// Reads every event waiting on `space`'s userfaultfd.
  private func handleEvents(of space: Space) throws {
    var event = ck_uffd_event()
    while true {
      let result = ck_uffd_read_event(space.fd.raw, &event)
      if result == 0 { return }
      guard result > 0 else {
        // Its process is gone: nothing more to fill there.
        log.debug("lazy pages: process \(space.pid)'s address space: \(String(cString: strerror(-result)))")
        forget(space)
        return
      }
      switch Int32(event.kind) {
      case Int32(CK_UFFD_EVENT_PAGEFAULT):
        try fault(space, at: event.address & ~(LazySource.pageSize - 1))
      case Int32(CK_UFFD_EVENT_FORK):
        fork(space, child: event.ufd)
      case Int32(CK_UFFD_EVENT_REMAP):
        try remap(space, from: event.from, to: event.to, length: event.length)
      case Int32(CK_UFFD_EVENT_REMOVE), Int32(CK_UFFD_EVENT_UNMAP):
        try drop(space, from: event.start, to: event.end)
      default:
        continue
      }
    }
  }

  private func fault(_ space: Space, at page: UInt64) throws {
    faulted = true
    let pending = space.entries[page] == nil ? space.pendingKey(page) : nil
    if let key = space.entries[page] ?? pending {
      if let data = store.page(pid: key.pid, at: key.address) {
        let started = monotonicNow()
        copy(space, page, from: data, count: 1)
        faults += 1
        longestFault = max(longestFault, monotonicNow() - started)
        return
      }
      // Not listed yet: the page goes in when it comes (listed later, it is there already).
      if pending != nil {
        space.addressOf[key] = page
        holders[key, default: []].append(space)
      }
      if asked.insert(key).inserted {
        try channel?.send(record: PageRecord(pid: key.pid, count: 1, address: key.address))
      }
      return
    }
    if !sealed && space.restoring.contains(where: { $0.start <= page && page < $0.end }) {
      space.deferred.append(page)
      return
    }
    zeroPage(space, page)
  }

  /// A fork of a process being filled: the child misses what its parent missed, the same
  /// source pages.
  private func fork(_ parent: Space, child fd: Int32) {
    guard let owned = OwnedDescriptor(adoptingValid: fd) else { return }
    // The guard holds it too (see above).
    _ = ck_send_fd(guardControl.raw, owned.raw)
    let child = Space(fd: owned, pid: parent.pid, entries: parent.entries, restoring: parent.restoring)
    child.addressOf = parent.addressOf
    // What the parent has not had put in yet the child misses too: once the fills are done
    // the userfaultfds close, and a page still missing would then read as zeros.
    child.toFill = parent.toFill
    child.runs = parent.runs
    for key in child.entries.values where holders[key] != nil { holders[key]?.append(child) }
    spaces.append(child)
  }

  private func remap(_ space: Space, from: UInt64, to: UInt64, length: UInt64) throws {
    // Moved pages are no longer where their source pages lie: listed first.
    try list(space)
    var moved: [(UInt64, PageKey)] = []
    for (address, key) in space.entries where address >= from && address < from + length {
      moved.append((address, key))
    }
    for (address, _) in moved { space.entries.removeValue(forKey: address) }
    for (address, key) in moved {
      space.entries[to + (address - from)] = key
      space.addressOf[key] = to + (address - from)
    }
    if space.filling {
      space.toFill =
        space.toFill.map { page in
          page.address >= from && page.address < from + length ? (to + (page.address - from), page.data) : page
        }[...]
      space.toZero = space.toZero.map { $0 >= from && $0 < from + length ? to + ($0 - from) : $0 }
    }
  }

  private func drop(_ space: Space, from start: UInt64, to end: UInt64) throws {
    try list(space)
    if space.filling {
      space.toFill = space.toFill.filter { $0.address < start || $0.address >= end }[...]
      space.toZero.removeAll { $0 >= start && $0 < end }
    }
    let pages = (end - start) / LazySource.pageSize
    if pages < UInt64(space.entries.count) {
      for address in stride(from: start, to: end, by: Int(LazySource.pageSize)) {
        if let key = space.entries.removeValue(forKey: address) { space.addressOf.removeValue(forKey: key) }
      }
    } else {
      for (address, key) in space.entries where address >= start && address < end {
        space.entries.removeValue(forKey: address)
        space.addressOf.removeValue(forKey: key)
      }
    }
  }

  private func forget(_ space: Space) {
    spaces.removeAll { $0 === space }
  }

  /// One record of pages from the source: kept, and put into every space missing them.
  private func receivePages() throws {
    guard let channel, let record = try channel.receiveRecord() else {
      throw CKError(.failed, "the source closed the page connection before it sent every page")
    }
    if record.pid == 0 && record.count == 0 {
      sourceDone = true
      return
    }
    let count = Int(record.count)
    guard count > 0, UInt64(count) <= LazySource.pushPages, record.address % LazySource.pageSize == 0 else {
      throw CKError(.badInput, "the source sent a malformed page record")
    }
    let data = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<count * Int(LazySource.pageSize)])
    try channel.receive(into: data)
    try store.store(pid: record.pid, start: record.address, count: count, data: UnsafeRawBufferPointer(data))
    arrived += count
    // Runs of pages bound for the same space at consecutive addresses go in one copy.
    var run: (space: Space, address: UInt64, first: Int, count: Int)?
    for index in 0..<count {
      let key = PageKey(pid: record.pid, address: record.address + UInt64(index) * LazySource.pageSize)
      for space in holders.removeValue(forKey: key) ?? [] {
        guard let address = space.addressOf[key] else { continue }
        if let current = run, current.space === space,
          current.address + UInt64(current.count) * LazySource.pageSize == address,
          current.first + current.count == index
        {
          run?.count += 1
          continue
        }
        if let current = run { copyRun(current, from: data) }
        run = (space, address, index, 1)
      }
    }
    if let current = run { copyRun(current, from: data) }
  }

  /// Puts in the next pages held already of the first space that has some: up to
  /// ``fillChunk`` pages, neighbours that lie back to back in the store in one copy each.
  private func fillChunk() {
    guard let space = spaces.first(where: { $0.filling }) else { return }
    let zeroes = space.toZero
    space.toZero.removeAll()
    for page in zeroes { zeroPage(space, page) }
    var budget = Self.fillChunk
    while budget > 0, let first = space.toFill.first {
      var count = 1
      let pages = space.toFill
      while count < min(budget, pages.count),
        pages[pages.startIndex + count].address == first.address + UInt64(count) * LazySource.pageSize,
        pages[pages.startIndex + count].data == first.data + count * Int(LazySource.pageSize)
      {
        count += 1
      }
      space.toFill.removeFirst(count)
      guard copy(space, first.address, from: first.data, count: count) else { return }
      budget -= count
    }
  }

  /// Pages listed between two looks at the faults (~1 ms).
  static let listChunk = 2048

  /// Pages put in between two looks at the faults: a fault waits at most for this many.
  /// Memory new to the VM goes in at ~200 MB/s here (the host backs each page on first
  /// touch): 8 pages ~160 µs; 64 made a server catching up on 700 faults wait 0.5 s.
  static let fillChunk = 8

  private func copyRun(
    _ run: (space: Space, address: UInt64, first: Int, count: Int), from data: UnsafeMutableRawBufferPointer
  ) {
    guard let base = data.baseAddress else { return }
    copy(run.space, run.address, from: base + run.first * Int(LazySource.pageSize), count: run.count)
  }

  /// UFFDIO_COPY of `count` pages, which wakes whoever waits for them; where a page is
  /// there already (its process wrote it since: a zero page or a copy-on-write), it is only
  /// woken, page by page.
  /// While the address space changes (an event not read yet) the kernel refuses copies
  /// (EAGAIN) until the event is read, which only this thread does: what is left goes back
  /// to the space's fills, put in once its events are read.
  /// Returns false when the address space was changing.
  @discardableResult
  private func copy(_ space: Space, _ address: UInt64, from data: UnsafeRawPointer, count: Int) -> Bool {
    let size = Int(LazySource.pageSize)
    var page = 0
    var single = false
    while page < count {
      var done: UInt64 = 0
      let pages = single ? 1 : count - page
      let result = ck_uffd_copy_nowait(
        space.fd.raw, address + UInt64(page * size), data + page * size, UInt64(pages * size), &done)
      page += Int(done) / size
      switch result {
      case 0:
        if single { single = page < count }
      case -EEXIST:
        // That page is there already: woken, and the rest go one by one.
        _ = ck_uffd_wake(space.fd.raw, address + UInt64(page * size))
        page += 1
        single = true
      case -EAGAIN:
        let left = (page..<count).map { (address: address + UInt64($0 * size), data: data + $0 * size) }
        space.toFill = left[...] + space.toFill
        return false
      default:
        log.debug(
          "lazy pages: process \(space.pid): UFFDIO_COPY at \(hex(address + UInt64(page * size))): \(String(cString: strerror(-result)))"
        )
        return true
      }
    }
    return true
  }

  private func zeroPage(_ space: Space, _ page: UInt64) {
    switch ck_uffd_zeropage(space.fd.raw, page) {
    case 0: zeroPages += 1
    case -EAGAIN: space.toZero.append(page)
    default: break
    }
  }
}
