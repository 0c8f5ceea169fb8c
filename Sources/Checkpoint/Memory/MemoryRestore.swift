import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging

/// Rebuilds a dumped address space inside a fresh task (DESIGN.md 3, "Restore a task"):
/// unmap what it inherited from ckcont, move [vdso]/[vvar] to their dumped addresses, map
/// every VMA at its exact address, write the saved pages, then PR_SET_MM_MAP.
/// Shared anonymous memory objects already recreated: the first process to map one creates
/// it, the others map the same object through /proc/<pid>/map_files of that process.
final class SharedMemoryObjects {
  /// The object at dump -> the creating task (pid as ckcont sees it) and its mapping.
  var created: [ObjectKey: (hostPid: Int32, start: UInt64, end: UInt64)] = [:]
  /// Deleted files made again for mappings, by ``deletedFileName(inode:path:)``: a descriptor
  /// of the same file opens that one rather than a ghost of its own.
  var deletedFiles: [String: (hostPid: Int32, start: UInt64, end: UInt64)] = [:]
  /// Files of private mappings found as the dump saw them (``MappedFiles/check``).
  var checkedFiles: Set<String> = []

  static func deletedFileName(inode: UInt64, path: String) -> String { "\(inode) \(path)" }
  /// Where every new task has [vdso] and [vvar]: where ckcont has them, as each was cloned
  /// from ckcont or forked from such a task before its own were moved. Read from the first.
  var inheritedKernelMappings: [VMA]?
  /// The contents of each memfd and deleted file mapped privately (by member name), written
  /// into the file made for it.
  var privateObjectContents: [String: UnsafeRawBufferPointer] = [:]
}

final class MemoryRestore {
  let image: MemoryImage
  /// The saved pages, in image order (in the mapped bundle file or in memory).
  let pages: UnsafeRawBufferPointer
  let injector: Injector
  let sharedObjects: SharedMemoryObjects
  let copier: PageCopier
  let log: Logger
  /// The calls queued to run in one stop, and the VMAs mapped whose pages this task writes.
  private var batch = Injector.Batch()
  private var mapped: [VMAImage] = []
  /// VMAs mapped writable only so that their pages can be written (see ``queueProtections``).
  private var madeWritable: [VMAImage] = []
  /// The protection each mapping (by start) has while the task forks, where known: what its
  /// children keep has it too.
  private(set) var protectionsAtForks: [UInt64: Int32] = [:]
  /// Those of the parent's mappings (``parent``).
  let parentProtections: [UInt64: Int32]
  /// Pages written only to give their mapping an anon_vma (``mapApart``), dropped again;
  /// those ckcont writes through /proc/<pid>/mem (the others the task writes itself).
  private var forcedPages: [UInt64] = []
  private var forced: Set<UInt64> = []
  private var forcedByCkcont: [UInt64] = []
  /// Neighbours mapped alike that the kernel merges as they are mapped, not yet queued: one
  /// mmap makes them (``mapMerging(_:protection:after:)``).
  private var openRun: MergedRun?
  /// The end and protection of the last mapping made apart (``mapApart``).
  private var lastApart: (end: UInt64, protection: Int32, advice: MemoryAdvice) = (0, 0, .normal)
  /// Mappings made apart, and kept ones, given their read-ahead advice back (MADV_NORMAL) in
  /// the state batch.
  private var mappedApart: [VMAImage] = []
  /// Pages copied only once the task's children are forked (``finishLater``), with the
  /// offsets of their bytes.
  private var deferredCopies: [(range: AddressRange, offset: UInt64, until: Int32?)] = []
  /// The later runs whose drops are not done yet.
  private lazy var pendingLater: [LaterRun] = image.vmas.flatMap { $0.laterPages ?? [] }
  /// Private mappings of memfds and deleted files this task made: their files get their
  /// contents in ``finish()``.
  private var privateObjects: [VMAImage] = []
  /// Shared objects (memfds, deleted files) the queued batch creates.
  private var objectsInBatch: Set<ObjectKey> = []
  /// Files the batch has opened to map ("r:" or "w:" and the path) -> the open call.
  private var openFiles: [String: Int] = [:]
  private var started = 0.0
  /// The task's mount namespace, naming the files it maps (``MappedFiles/check``).
  private lazy var mountNamespace = (try? readLink("/proc/\(injector.pid)/ns/mnt")) ?? "\(injector.pid)"
  /// The call of the last batch that makes a userfaultfd in the task, and ckcont's copy of
  /// it once taken (see ``usesUserfault``).
  private var userfaultCall: Int?
  /// Raw: the page copier's threads use it; ``releaseUserfault()`` closes it.
  private var userfault: Int32?
  /// A lazy migration's page server: the mappings with pages to fetch
  /// (``VMAImage/lazyPages``) are registered and handed to it, the task's pid in the
  /// container (`containerPid`) naming them at the source.
  var lazy: LazyPages?
  var containerPid: Int32 = 0
  private var fetchesLazily: Bool { lazy != nil && image.vmas.contains { $0.lazyPages != nil } }
  /// A task with at least this much private anonymous memory to fill gets it through a
  /// userfaultfd: it costs two more system calls and a stop, and saves clearing every page.
  static let userfaultMinimum: UInt64 = 4 << 20
  /// A known descriptor for the executable while the table holds nothing else: above the
  /// few files a batch opens to map (an open returns the lowest free number), below any
  /// RLIMIT_NOFILE a host sets.
  static let exeFD: Int64 = 901

  /// The parent's image, for a task forked from its restored parent whose mappings it keeps
  /// (``VMAImage/parentPages``).
  let parent: MemoryImage?
  /// The task's ABI: an i386 task gets the 32-bit vDSO and a vector of 32-bit words.
  var abi: TaskABI?
  /// Where the kernel mappings are now, for a task forked from a restored one (see
  /// ``RestoreRun``): not where ckcont has them.
  let kernelMappings: [VMA]?
  /// The executable of a task forked from a restored one, which it has already: the kernel
  /// refuses to replace an executable still mapped (EBUSY), and it need not be.
  let inheritedExe: String?
  /// Where a mapping starts that a child keeps as one with the mapping before it (the task
  /// cut it after the fork): the two are mapped as one until the state batch.
  let joinedAt: Set<UInt64>
  /// Whether a process forked from the task keeps mappings of it: they keep the anon_vmas
  /// they were forked with, so each mapping the dump saw apart is made apart.
  let forksKeepMappings: Bool
  /// The image and pages of a child of the task, for pages it holds while it forks that the
  /// child saves (``LaterRun/from``).
  let childPages: (Int32) -> (MemoryImage, UnsafeRawBufferPointer)?

  init(
    image: MemoryImage, pages: UnsafeRawBufferPointer, injector: Injector, sharedObjects: SharedMemoryObjects,
    copier: PageCopier, parent: MemoryImage? = nil, kernelMappings: [VMA]? = nil, inheritedExe: String? = nil,
    childPages: @escaping (Int32) -> (MemoryImage, UnsafeRawBufferPointer)? = { _ in nil }, joinedAt: Set<UInt64> = [],
    forksKeepMappings: Bool = false, parentProtections: [UInt64: Int32] = [:],
    log: Logger
  ) {
    self.forksKeepMappings = forksKeepMappings
    self.parentProtections = parentProtections
    self.joinedAt = joinedAt
    self.childPages = childPages
    self.parent = parent
    self.inheritedExe = inheritedExe
    self.kernelMappings = kernelMappings
    self.image = image
    self.pages = pages
    self.injector = injector
    self.sharedObjects = sharedObjects
    self.copier = copier
    self.log = log
  }

  /// Queues and runs the mappings and the mm fields, the last batch only launched: the task
  /// runs it while ckcont goes on with other tasks, until ``finish()``.
  func start() throws {
    started = monotonicNow()
    // Everything goes in batches of calls (one stop each); a batch runs when the data area
    // cannot hold the next arguments.
    injector.resetData()
    try queueKernelMappingMoves()
    try queueMappings()
    if injector.dataRoom < 8192 || batch.isFull { try flush() }
    try queueMMFields()
    queueUserfaultfd()
    try flush(waiting: false)
  }

  /// A mapping queued, and the protection it was mapped with (nil: not mapped anew here).
  private typealias Queued = (vma: VMAImage, protection: Int32?)

  /// Queues every VMA but the kernel's, in order, running the batch whenever it fills.
  private func queueMappings() throws {
    var previous: Queued?
    for (index, vma) in image.vmas.enumerated() where !vma.isSpecial {
      let next = index + 1 < image.vmas.count ? image.vmas[index + 1] : nil
      // Room for the calls of a run ended here as well as this mapping's.
      if injector.dataRoom < 4096 || !batch.hasRoom(for: 8) { try flush() }
      let protection = try queueMapping(vma, after: previous, before: next)
      previous = (vma, protection)
      if let protection { protectionsAtForks[vma.start] = protection }
    }
    endRun()
  }

  /// Queues one VMA: a SysV segment attached, a mapping kept from the parent, a shared object
  /// another mapping made, or a mapping made anew; returns the protection it is mapped with
  /// (nil: not mapped anew here).
  private func queueMapping(_ vma: VMAImage, after previous: Queued?, before next: VMAImage?) throws -> Int32? {
    if vma.kind == .sysvShm {
      attachSegment(vma)
      return nil
    }
    if vma.parentPages != nil {
      protectionsAtForks[vma.start] = try keep(vma)
      return nil
    }
    if let object = vma.objectKey, let first = sharedObjects.created[object] {
      // Another process (or an earlier mapping of this one) made this object and wrote its
      // pages: map the same one. Made by this batch, it must have run first: ckcont opens
      // the object through that mapping.
      if objectsInBatch.contains(object) { try flush() }
      try mapShared(vma, from: first)
      return nil
    }
    let protection = try mapAnew(vma, after: previous, before: next)
    noteMappedAnew(vma)
    return protection
  }

  /// Maps `vma` anew: as one with the mapping before when a child keeps both as one, apart
  /// from neighbours the kernel would merge it with, else with the protection it needs while
  /// its pages go in. Returns that protection.
  private func mapAnew(_ vma: VMAImage, after previous: Queued?, before next: VMAImage?) throws -> Int32 {
    // Pages go in through the mapping (process_vm_writev writes only writable ones): it is
    // writable until the task's last batch gives it its own protection.
    // So must one that was writable once (its memory stays charged, see VMAImage.accounted).
    let needsWrite = Self.writtenInto(vma) && vma.protection & PROT_WRITE == 0
    let planned = vma.protection | (needsWrite ? PROT_READ | PROT_WRITE : 0)
    if let previous, let previousProtection = previous.protection, joinedAt.contains(vma.start),
      Self.wouldMerge(previous.vma, mappedWith: nil, vma, mappedWith: nil),
      previousProtection & PROT_WRITE != 0 || !needsWrite
    {
      // A child keeps one mapping over both: mapped alike, they are one while it forks.
      madeWritable.append(vma)
      try map(vma, protection: previousProtection)
      if lastApart.end == vma.start {
        // Joined to one made apart: the same advice makes them one.
        batch.add(
          .madvise(vma.start, length: vma.size, lastApart.advice), "madvise joined \(hex(vma.start))")
        lastApart.end = vma.end
        mappedApart.append(vma)
      }
      return previousProtection
    }
    // Neighbours whose own protections differ come apart when the state batch gives them
    // those (mprotect splits what a while merged, as the program's mprotect did): only
    // those alike but for their anon_vma need making apart, unless a child keeps them
    // (with one anon_vma, its mappings alike would merge).
    if let previous, Self.wouldMerge(previous.vma, mappedWith: previous.protection, vma, mappedWith: planned),
      forksKeepMappings || !Self.protectionsSplit(previous.vma, vma)
    {
      return try mapApart(vma, from: previous)
    }
    if let next, next.parentPages != nil, Self.wouldMerge(vma, mappedWith: planned, next, mappedWith: nil) {
      return try mapApart(vma, from: nil)
    }
    try mapMerging(vma, protection: planned, after: previous)
    if needsWrite || planned != vma.protection { madeWritable.append(vma) }
    // Read-only once its pages are in, it stays charged only with an anon_vma (mprotect
    // uncharges an anonymous mapping that has none). One page gives a whole run its anon_vma.
    if vma.accounted == true && vma.pages.isEmpty && Self.anonymousKinds.contains(vma.kind) {
      if openRun != nil {
        if openRun?.forceAt == nil { openRun?.forceAt = vma.start }
      } else {
        force(vma.start, writableNow: true)
      }
    }
    return planned
  }

  /// Private anonymous neighbours mapped alike, which the kernel merges into one mapping as
  /// each is mapped (``wouldMerge(_:mappedWith:_:mappedWith:)``), until their own protections
  /// split them in the state batch.
  private struct MergedRun {
    var start: UInt64
    var end: UInt64
    let protection: Int32
    let noReserve: Bool
    var count = 1
    /// Where a page is written for the anon_vma of the whole run (``force(_:writableNow:)``).
    var forceAt: UInt64?
  }

  /// Maps `vma` with `protection`: a private anonymous mapping the kernel would merge into
  /// the one before joins the open run, queued as one mmap (10,000 one-page mappings of
  /// alternating protection: one mmap for them all, where each took ~1.5 µs of the task's).
  private func mapMerging(_ vma: VMAImage, protection: Int32, after previous: Queued?) throws {
    if let run = openRun, let previous, run.end == vma.start, run.protection == protection,
      Self.wouldMerge(previous.vma, mappedWith: previous.protection, vma, mappedWith: protection)
    {
      openRun?.end = vma.end
      openRun?.count += 1
      return
    }
    endRun()
    guard Self.anonymousKinds.contains(vma.kind), !vma.shared, !vma.growsDown, vma.droppable != true,
      vma.hugePageSize == nil
    else { return try map(vma, protection: protection) }
    openRun = MergedRun(start: vma.start, end: vma.end, protection: protection, noReserve: vma.noReserve == true)
  }

  /// Queues the mmap of the open run, and the page for its anon_vma: before any other call,
  /// which may concern the run's mappings.
  private func endRun() {
    guard let run = openRun else { return }
    openRun = nil
    var flags: MapFlags = [.private, .anonymous, .fixedNoReplace]
    if run.noReserve { flags.insert(.noReserve) }
    batch.add(
      .mmap(at: run.start, length: run.end - run.start, protection: run.protection, flags: flags),
      "mmap \(hex(run.start))-\(hex(run.end)) (\(run.count) mappings the kernel merges)")
    if let address = run.forceAt { force(address, writableNow: true) }
  }

  /// Notes what a mapping made anew brings: its object's contents and pages to write, the
  /// shared object or deleted file it made for other mappings to map.
  private func noteMappedAnew(_ vma: VMAImage) {
    if vma.contentsMember != nil { privateObjects.append(vma) }
    if !vma.pages.isEmpty { mapped.append(vma) }
    if let object = vma.objectKey {
      sharedObjects.created[object] = (injector.pid, vma.start, vma.end)
      objectsInBatch.insert(object)
    }
    if vma.kind == .deletedFile, let inode = vma.sharedObject {
      sharedObjects.deletedFiles[SharedMemoryObjects.deletedFileName(inode: inode, path: vma.path)] = (
        injector.pid, vma.start, vma.end
      )
    }
  }

  /// Queues a userfaultfd for the task when it has enough private anonymous memory to fill.
  private func queueUserfaultfd() {
    let anonymous = mapped.filter(Self.fillsThroughUserfault).reduce(UInt64(0)) {
      $0 + $1.pages.reduce(0) { $0 + $1.size }
    }
    if anonymous >= Self.userfaultMinimum || fetchesLazily {
      userfaultCall = batch.add(.userfaultfd(O_CLOEXEC | O_NONBLOCK), mayFail: true)
    }
  }

  /// Whether the kernel would merge `vma`, mapped anew, into `previous`, its neighbour: both
  /// private anonymous memory alike. The dump saw them apart: in a process that never forked
  /// they had different anon_vmas (each had pages once), which the kernel never merges, but
  /// a new mapping has none yet and merges with any neighbour alike (unless that one was kept
  /// through a fork).
  /// `mappedWith`: the protection each has at the time (nil when not known: a mapping kept
  /// through a fork has its parent's until the state batch).
  static func wouldMerge(
    _ previous: VMAImage, mappedWith previousProtection: Int32?, _ vma: VMAImage, mappedWith protection: Int32?
  ) -> Bool {
    let alike = previousProtection == nil || protection == nil || previousProtection == protection
    return previous.end == vma.start && !previous.shared && !vma.shared && anonymousKinds.contains(previous.kind)
      && anonymousKinds.contains(vma.kind) && alike && previous.noReserve == vma.noReserve
      && previous.droppable == vma.droppable && previous.hugePageSize == vma.hugePageSize
      && previous.sharedObject == nil && vma.sharedObject == nil
  }

  static let anonymousKinds: Set<VMAImage.Kind> = [.anonymous, .heap]

  /// Whether neighbours `previous` and `vma`, mapped alike for a while, come apart again when
  /// each gets its own protection: so they are when those differ (and neither is kept
  /// through a fork, whose protection is set elsewhere).
  static func protectionsSplit(_ previous: VMAImage, _ vma: VMAImage) -> Bool {
    previous.protection != vma.protection && previous.parentPages == nil && vma.parentPages == nil
  }

  /// Maps `vma` apart from its neighbours alike (``wouldMerge(_:mappedWith:_:mappedWith:)``): with another
  /// protection (writable, for its pages), both given an anon_vma (a page each, written
  /// through /proc/<pid>/mem and dropped again where none was saved) before the state
  /// batch gives it its own protection, which then merges nothing.
  @discardableResult
  private func mapApart(_ vma: VMAImage, from previous: Queued?) throws -> Int32 {
    // Like no mapping a program makes, and unlike the last one mapped so (a row of them):
    // write-only or write-execute where pages go in (or it was writable once: it is
    // charged), execute-only or read-execute elsewhere (it stays uncharged; the anon_vma's
    // page is written with FOLL_FORCE).
    let writable = Self.writtenInto(vma) || vma.protection & PROT_WRITE != 0
    let choices =
      writable
      ? [PROT_WRITE, PROT_WRITE | PROT_EXEC, PROT_READ | PROT_WRITE | PROT_EXEC] : [PROT_EXEC, PROT_READ | PROT_EXEC]
    let afterLast = lastApart.end == vma.start
    let protection =
      choices.first { $0 != vma.protection && !(afterLast && $0 == lastApart.protection) } ?? choices[0]
    try map(vma, protection: protection)
    // Read-ahead advice unlike its neighbours' until the state batch: the kernel gives a
    // mapping the anon_vma of a neighbour alike but for its protection (anon_vma_prepare),
    // and two mappings sharing one merge again.
    let advice: MemoryAdvice = afterLast && lastApart.advice == .random ? .sequential : .random
    batch.add(.madvise(vma.start, length: vma.size, advice), "madvise apart \(hex(vma.start))")
    lastApart = (vma.end, protection, advice)
    mappedApart.append(vma)
    madeWritable.append(vma)
    if vma.pages.isEmpty { force(vma.start, writableNow: protection & PROT_WRITE != 0) }
    if let previous, previous.vma.pages.isEmpty && previous.vma.parentPages == nil {
      force(previous.vma.start, writableNow: previous.protection.map { $0 & PROT_WRITE != 0 } ?? false)
    }
    return protection
  }

  /// Private anonymous memory: what UFFDIO_COPY can fill (file mappings it cannot).
  /// Whether the restore writes into a mapping (its pages, pages held until its forks), or
  /// it was writable once (its memory stays charged, see VMAImage.accounted): it is mapped
  /// writable until the task's last batch gives it its own protection.
  static func writtenInto(_ vma: VMAImage) -> Bool {
    !vma.pages.isEmpty || vma.accounted == true || vma.laterPages != nil
  }

  /// Not a mapping kept from the parent: its pages are there already. Nor one with few pages:
  /// registering a mapping costs ~8 µs (perf: 10,000 one-page mappings, a third with a page,
  /// spent 26 ms in UFFDIO_REGISTER), where a copy saves clearing each page (~0.5 µs).
  static func fillsThroughUserfault(_ vma: VMAImage) -> Bool {
    vma.lazyPages != nil
      || vma.isPrivateAnonymous && vma.parentPages == nil && vma.laterPages == nil && vma.hugePageSize == nil
        && vma.pages.reduce(0) { $0 + $1.size } >= userfaultMinimumMapping
  }

  /// The pages a mapping needs to be filled through the userfaultfd (see above).
  static let userfaultMinimumMapping: UInt64 = 64 << 10

  /// A mapping kept from the parent through the fork: given its own protection (writable
  /// while its own pages go in, as a mapping made anew), the parent's pages it no longer
  /// holds dropped. Its own pages are then copied over the parent's, which gives it pages of
  /// its own there, as its writes once did.
  /// Returns the protection it has until the state batch, nil when not known.
  private func keep(_ vma: VMAImage) throws -> Int32? {
    endRun()
    guard let parent else {
      throw CKError(
        .failed, "task \(injector.pid): mapping \(hex(vma.start)) is kept from a parent whose memory is not restored")
    }
    // What the parent's mapping had when it forked: known when one mapping of the parent,
    // restored by ckcont, holds it all.
    let single = ForkInheritance.mappingIndex(parent.vmas, at: vma.start).map { parent.vmas[$0] }
    var now = single.flatMap { $0.end >= vma.end ? parentProtections[$0.start] : nil }
    // Its own protection only once every process is forked (``queueProtections``): a child
    // forked before this process cut the mapping (an mprotect of a part) has it whole.
    let readWrite = PROT_READ | PROT_WRITE
    if Self.writtenInto(vma) && now.map({ $0 & readWrite != readWrite }) ?? true {
      now = vma.protection | readWrite
      batch.add(
        .mprotect(vma.start, length: vma.size, vma.protection | readWrite),
        "mprotect kept \(hex(vma.start))-\(hex(vma.end))")
    }
    for range in ForkInheritance.dropped(vma, parent: parent) {
      if batch.isFull { try flush() }
      batch.add(.madvise(range.lowerBound, length: range.upperBound - range.lowerBound, .dontNeed))
    }
    if !vma.pages.isEmpty { mapped.append(vma) }
    if now != vma.protection { madeWritable.append(vma) }
    // An anonymous one may have the read-ahead advice its parent had only for the restore
    // (``mapApart``).
    if Self.anonymousKinds.contains(vma.kind) { mappedApart.append(vma) }
    return now
  }

  /// Takes the task's userfaultfd into ckcont (pidfd_getfd), closes the task's, and
  /// registers the mappings to fill; on any failure the pages go by process_vm_writev.
  /// With pages to fetch lazily, the userfaultfd also reports what the task does with its
  /// memory (forks, mremap, madvise, munmap) and a copy goes to ``lazy``; without one the
  /// restore fails.
  private func takeUserfault(_ remote: Int64) throws {
    let lazyFailure = CKError(
      .failed, "task \(injector.pid): cannot register its memory with a userfaultfd, which a lazy migration needs",
      hint: "migrate without --lazy")
    guard remote >= 0 else {
      if fetchesLazily { throw lazyFailure }
      return
    }
    let copied = try? OwnedDescriptor(copying: Int32(remote), ofProcess: injector.pid)
    try injector.call(.close(remote), "close the userfaultfd")
    guard let ours = copied else {
      if fetchesLazily { throw lazyFailure }
      return
    }
    let registered = mapped.filter(Self.fillsThroughUserfault)
    guard ck_uffd_api_features(ours.raw, fetchesLazily ? UInt64(CK_UFFD_FEATURES_NONCOOPERATIVE) : 0) == 0,
      registered.allSatisfy({ ck_uffd_register_missing(ours.raw, $0.start, $0.size) == 0 })
    else {
      if fetchesLazily { throw lazyFailure }
      return
    }
    if let lazy, fetchesLazily {
      guard let handed = OwnedDescriptor(adoptingValid: fcntl(ours.raw, F_DUPFD_CLOEXEC, 0)) else { throw lazyFailure }
      try lazy.adopt(
        handed, pid: containerPid, lazy: image.vmas.flatMap { $0.lazyPages ?? [] },
        restoring: registered.flatMap { $0.pages.map { AddressRange(start: $0.start, end: $0.end) } })
    }
    userfault = ours.take()
  }

  /// Closes ckcont's userfaultfd once every page is in: that unregisters the mappings.
  func releaseUserfault() {
    if let userfault { close(userfault) }
    userfault = nil
  }

  /// Waits for the last batch, then hands the pages to the copier: they are written while
  /// ckcont goes on, and are all in place once ``PageCopier/waitAll()`` returns.
  func finish() throws {
    let results = try completeBatch()
    if let call = userfaultCall, call < results.count { try takeUserfault(results[call]) }
    writeForcedPages()
    try writePrivateObjectContents()
    guard let base = pages.baseAddress else {
      guard mapped.isEmpty else {
        throw CKError(.failed, "task \(injector.pid): the bundle holds no pages for its mappings")
      }
      return
    }
    try submitChildrensPages()
    let written = try submitPiecewise(from: base) + submitWhole(from: base)
    log.debug(
      "task \(injector.pid): \(image.vmas.count) VMAs mapped in \(Int((monotonicNow() - started) * 1000)) ms, \(written >> 10) KiB of pages queued"
    )
  }

  /// Has a page written at `start` to give its mapping an anon_vma, once: by the task, in
  /// the batch, where the mapping is writable now (after the mmap and madvise queued for it:
  /// with another mapping's advice it would share that one's anon_vma), else by ckcont.
  /// 10,000 one-page mappings made apart took 28 ms of ckcont's writes (perf).
  private func force(_ start: UInt64, writableNow: Bool) {
    endRun()
    guard forced.insert(start).inserted else { return }
    forcedPages.append(start)
    if writableNow {
      batch.add(.clockGettime(into: start), "clock_gettime into \(hex(start)) (a page for its anon_vma)")
    } else {
      forcedByCkcont.append(start)
    }
  }

  /// Has the copier write the page that gives each mapping in ``forcedPages`` its anon_vma
  /// (dropped again in ``queueProtections(into:)``, after the copier is done).
  private func writeForcedPages() {
    copier.submitForcedWrites(pid: injector.pid, at: forcedByCkcont)
  }

  /// Writes the file under each private mapping of a memfd or deleted file, before anything
  /// is copied into the mapping: pages not copied on write show it.
  private func writePrivateObjectContents() throws {
    for vma in privateObjects {
      guard let member = vma.contentsMember, let contents = sharedObjects.privateObjectContents[member],
        let base = contents.baseAddress
      else { continue }
      let path = "/proc/\(injector.pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
      let file = try OwnedDescriptor(opening: path, flags: O_RDWR | O_CLOEXEC)
      var done = 0
      while done < contents.count {
        done += try syscallChecked("pwrite", "the file \(vma.path)") {
          pwrite(file.raw, base + done, contents.count - done, off_t(done))
        }
      }
    }
  }

  /// Submits the pages the task holds while it forks that a child saves.
  private func submitChildrensPages() throws {
    for vma in image.vmas {
      for run in vma.laterPages ?? [] {
        guard let from = run.from, let (child, bytes) = childPages(from), let childBase = bytes.baseAddress else {
          continue
        }
        for (range, offset) in ForkInheritance.savedPieces(of: run, in: child) {
          guard offset + range.count <= UInt64(bytes.count) else {
            throw CKError(.failed, "task \(from): the bundle holds fewer pages than its mappings need")
          }
          copier.submit(
            pid: injector.pid, ranges: [range], local: UnsafeMutableRawPointer(mutating: childBase + Int(offset)),
            intoTask: true, uffd: nil)
        }
      }
    }
  }

  /// Submits the pages of mappings with kept or later pages, piece by piece: a kept page it
  /// saves too is its parent's to hold while it forks, not written here; pages the task
  /// replaces only once its children are forked go then (``finishLater``). Returns the bytes
  /// submitted.
  private func submitPiecewise(from base: UnsafeRawPointer) throws -> UInt64 {
    var written: UInt64 = 0
    for vma in mapped where vma.laterPages != nil || vma.parentPages != nil {
      for (range, offset) in try pieces(of: vma) {
        let later = (vma.laterPages ?? []).first { $0.start <= range.start && range.end <= $0.end }
        if (vma.parentPages ?? []).contains(where: { $0.start <= range.start && range.end <= $0.end }) {
          continue
        } else if let later {
          deferredCopies.append((range, offset, later.until))
        } else {
          copier.submit(
            pid: injector.pid, ranges: [range], local: UnsafeMutableRawPointer(mutating: base + Int(offset)),
            intoTask: true, uffd: nil)
          written += range.count
        }
      }
    }
    return written
  }

  /// Submits the pages of every other mapping: consecutive mappings whose pages lie back to
  /// back in the image, all filled the same way, go as one copy. Returns the bytes submitted.
  private func submitWhole(from base: UnsafeRawPointer) throws -> UInt64 {
    var written: UInt64 = 0
    let mapped = mapped.filter { $0.laterPages == nil && $0.parentPages == nil }
    var index = mapped.startIndex
    while index < mapped.endIndex {
      let first = mapped[index]
      let throughUserfault = userfault != nil && Self.fillsThroughUserfault(first)
      var ranges = first.pages.map { AddressRange(start: $0.start, end: $0.end) }
      var end = first.pagesOffset + first.pages.reduce(0) { $0 + $1.size }
      index += 1
      while index < mapped.endIndex && mapped[index].pagesOffset == end
        && (userfault != nil && Self.fillsThroughUserfault(mapped[index])) == throughUserfault
      {
        ranges += mapped[index].pages.map { AddressRange(start: $0.start, end: $0.end) }
        end += mapped[index].pages.reduce(0) { $0 + $1.size }
        index += 1
      }
      guard end <= UInt64(pages.count) else {
        throw CKError(.failed, "task \(injector.pid): the bundle holds fewer pages than its mappings need")
      }
      copier.submit(
        pid: injector.pid, ranges: ranges, local: UnsafeMutableRawPointer(mutating: base + Int(first.pagesOffset)),
        intoTask: true,
        uffd: throughUserfault ? userfault : nil)
      written += end - first.pagesOffset
    }
    return written
  }

  /// The saved pages of a mapping with later or kept pages, cut at their bounds, each with the
  /// offset of its bytes in the image.
  private func pieces(of vma: VMAImage) throws -> [(AddressRange, UInt64)] {
    let cuts = Set(
      (vma.laterPages ?? []).flatMap { [$0.start, $0.end] } + (vma.parentPages ?? []).flatMap { [$0.start, $0.end] }
    )
    .sorted()
    var result: [(AddressRange, UInt64)] = []
    var offset = vma.pagesOffset
    for run in vma.pages {
      let bounds = [run.start] + cuts.filter { $0 > run.start && $0 < run.end } + [run.end]
      for (start, end) in zip(bounds, bounds.dropFirst()) {
        result.append((AddressRange(start: start, end: end), offset + (start - run.start)))
      }
      offset += run.size
    }
    guard offset <= UInt64(pages.count) else {
      throw CKError(.failed, "task \(injector.pid): the bundle holds fewer pages than its mappings need")
    }
    return result
  }

  /// Once the task's children are forked (they keep the older pages): its own pages where it
  /// wrote since, and the drops of pages it no longer holds.
  /// `child`: the child just forked (the work held until it is done); nil: all that is left.
  func finishLater(after child: Int32?, copier: PageCopier) throws {
    let due = { (until: Int32?) in child == nil || until == child }
    if let base = pages.baseAddress {
      for copy in deferredCopies where due(copy.until) {
        copier.submit(
          pid: injector.pid, ranges: [copy.range], local: UnsafeMutableRawPointer(mutating: base + Int(copy.offset)),
          intoTask: true, uffd: nil)
      }
    }
    deferredCopies.removeAll { due($0.until) }
    for run in pendingLater where due(run.until) {
      guard let vma = image.vmas.first(where: { $0.start <= run.start && run.end <= $0.end }) else { continue }
      let held = ForkInheritance.held(vma)
      for range in SharedObjectPages.subtract(held, from: [run.start..<run.end]) {
        try injector.call(
          .madvise(range.lowerBound, length: range.upperBound - range.lowerBound, .dontNeed),
          "MADV_DONTNEED \(hex(range.lowerBound)) after the forks")
      }
    }
    pendingLater.removeAll { due($0.until) }
  }

  /// Whether work waits for the fork of `child` (``finishLater(after:copier:)``).
  func holdsUntil(_ child: Int32) -> Bool {
    deferredCopies.contains { $0.until == child } || pendingLater.contains { $0.until == child }
  }

  /// Gives the mappings made writable for their pages their own protection back, at the
  /// start of a later batch of the task's, once the copier is done with them. Runs the batch
  /// early when it holds many: the calls queued after these must still fit.
  /// Advice and seals come back here too: advice given earlier would be lost where the
  /// mapping was made again in parts, and a seal refuses the mprotect before it.
  func queueProtections(into batch: inout Injector.Batch) throws {
    func makeRoom() throws {
      // Room left for the few hundred calls of the state batch queued after these.
      guard batch.count >= Injector.maximumBatch / 2 else { return }
      try injector.run(batch)
      batch = Injector.Batch()
    }
    for address in forcedPages {
      try makeRoom()
      batch.add(
        .madvise(address, length: 4096, .dontNeed), "MADV_DONTNEED \(hex(address)) (written for its anon_vma)")
    }
    for vma in mappedApart {
      try makeRoom()
      batch.add(.madvise(vma.start, length: vma.size, .normal))
    }
    // Guard regions once the pages are in (a copy into one would fault), before mlock (which
    // refuses none, where installing them in a locked mapping is refused).
    for vma in image.vmas {
      for run in vma.guards ?? [] {
        try makeRoom()
        batch.add(.madvise(run.start, length: run.size, .guardInstall))
      }
    }
    // mlock once the pages are in: it faults in what is missing, which a userfaultfd copy
    // would then find taken.
    for vma in image.vmas where vma.lock != nil {
      try makeRoom()
      batch.add(.mlock2(vma.start, length: vma.size, onFault: vma.lock == .onFault))
    }
    for vma in image.vmas {
      for advice in vma.advice ?? [] {
        try makeRoom()
        batch.add(
          .madvise(vma.start, length: vma.size, advice.memoryAdvice), "madvise \(hex(vma.start)) \(advice.rawValue)")
      }
    }
    for vma in madeWritable {
      try makeRoom()
      batch.add(.mprotect(vma.start, length: vma.size, vma.protection))
    }
    for vma in image.vmas where vma.sealed == true {
      try makeRoom()
      batch.add(.mseal(vma.start, length: vma.size))
    }
  }

  /// Whether this image maps a shared object: another task's batch may then have to be done
  /// before this one starts (it opens that task's mapping).
  var mapsSharedObjects: Bool { image.vmas.contains { $0.sharedObject != nil } }

  /// Launches the queued batch and, unless told not to wait, completes it.
  private func flush(waiting: Bool = true) throws {
    endRun()
    for (key, fd) in openFiles { batch.add(.close(.result(fd)), "close \(key.dropFirst(2))") }
    openFiles = [:]
    try injector.launch(batch)
    if waiting { try completeBatch() }
  }

  /// Waits for the launched batch; returns its results.
  @discardableResult
  private func completeBatch() throws -> [Int64] {
    let results = try injector.complete()
    batch = Injector.Batch()
    objectsInBatch = []
    injector.resetData()
    return results
  }

  /// Attaches a SysV segment, recreated in the IPC namespace already, at its address;
  /// mprotect gives it a protection shmat cannot (PROT_NONE, write without read).
  private func attachSegment(_ vma: VMAImage) {
    endRun()
    let writable = vma.protection & PROT_WRITE != 0
    let executable = vma.protection & PROT_EXEC != 0
    batch.add(.shmat(vma.sharedObject ?? 0, at: vma.start, writable: writable, executable: executable))
    let attached = PROT_READ | (writable ? PROT_WRITE : 0) | (executable ? PROT_EXEC : 0)
    if attached != vma.protection {
      batch.add(.mprotect(vma.start, length: vma.size, vma.protection))
    }
  }

  /// Maps the shared object another restored process created, through its map_files entry
  /// (opening it needs CAP_SYS_ADMIN, which restore has).
  private func mapShared(_ vma: VMAImage, from first: (hostPid: Int32, start: UInt64, end: UInt64)) throws {
    endRun()
    let path = "/proc/\(first.hostPid)/map_files/\(hex(first.start))-\(hex(first.end))"
    // A private mapping of the object (a memfd) has pages of its own, written in like those
    // of any private mapping; it needs no write access to the file for that. A shared one
    // may hold pages of the object that no earlier mapping held (``SharedObjectPages``):
    // they go into the object through this mapping, writable until the state batch.
    let ownPages = !vma.pages.isEmpty
    let extra = ownPages && vma.protection & PROT_WRITE == 0 ? PROT_READ | PROT_WRITE : 0
    let writable = vma.shared && (vma.protection & PROT_WRITE != 0 || ownPages)
    // Opened by ckcont and handed over (see ``Injector/channel``).
    let ours = try OwnedDescriptor(opening: path, flags: (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC)
    let fd = try injector.receive(ours.raw, what: "the shared object of \(hex(vma.start))")
    batch.add(
      .mmap(
        at: vma.start, length: vma.size, protection: vma.protection | extra,
        flags: [vma.shared ? .shared : .private, .fixedNoReplace], fd: fd, offset: vma.offset),
      "mmap \(vma.shared ? "shared" : "private") \(hex(vma.start))")
    batch.add(.close(fd), "close the shared object of \(hex(vma.start))")
    if ownPages { mapped.append(vma) }
    if extra != 0 { madeWritable.append(vma) }
  }

  /// Everything but the injection region and the kernel's own mappings goes. Done in a root
  /// task before it forks the others, so they start from an empty address space (forking
  /// ckcont's whole layout, page tables and all, hundreds of times is what it would cost).
  /// A task forked from a restored one keeps `keeping` (``ForkInheritance/keptRanges(_:)``)
  /// too. Returns the kernel mappings, where they are.
  @discardableResult
  /// `knownKernel`: where the kernel mappings are when ckcont knows (a task forked from a
  /// restored one has them where that one's image put them): the task's maps are not read.
  static func unmapInherited(_ injector: Injector, keeping: [AddressRange] = [], knownKernel: [VMA]? = nil) throws
    -> [VMA]
  {
    // munmap of a range with holes is fine: one call per stretch between the mappings that
    // stay, instead of one per inherited mapping (ckcont has hundreds).
    var kept = keeping.map { (start: $0.start, end: $0.end) }
    var kernel: [VMA] = []
    if let knownKernel {
      kernel = knownKernel
      kept += knownKernel.map { ($0.start, $0.end) }
      kept.append((injector.region, injector.region + Injector.regionSize))
    } else {
      for vma in try ProcMaps.read(pid: injector.pid) {
        switch vma.kind {
        case .vdso, .vvar, .vvarVclock, .vsyscall:
          kept.append((vma.start, vma.end))
          kernel.append(vma)
        default: if vma.start == injector.region { kept.append((vma.start, vma.end)) }
        }
      }
    }
    kept.sort { $0.start < $1.start }
    var cursor: UInt64 = 0x1000
    let top: UInt64 = 0x7fff_ffff_f000
    // All in one stop.
    var batch = Injector.Batch()
    // [vsyscall] lies above user space and ends the walk.
    for mapping in kept + [(start: top, end: top)] where cursor < top {
      let end = min(mapping.start, top)
      if end > cursor {
        if batch.isFull {
          try injector.run(batch)
          batch = Injector.Batch()
        }
        batch.add(.munmap(cursor, length: end - cursor))
      }
      cursor = max(cursor, mapping.end)
    }
    if !batch.isEmpty { try injector.run(batch) }
    return kernel
  }

  /// mremap [vvar], [vvar_vclock] and [vdso], each whole, to the dumped addresses (through a
  /// temporary place when the ranges collide). Moving [vdso] without [vvar] kills the task.
  private func queueKernelMappingMoves() throws {
    if abi == .i386 { return try mapI386VDSO() }
    let kinds: [(VMAImage.Kind, VMAKind)] = [(.vvar, .vvar), (.vvarVclock, .vvarVclock), (.vdso, .vdso)]
    // Where the kernel mappings are now, then followed through the mremaps queued here.
    if kernelMappings == nil && sharedObjects.inheritedKernelMappings == nil {
      sharedObjects.inheritedKernelMappings = try ProcMaps.read(pid: injector.pid).filter {
        $0.kind == .vdso || $0.kind == .vvar || $0.kind == .vvarVclock
      }
    }
    var current = kernelMappings ?? sharedObjects.inheritedKernelMappings ?? []
    let targets = image.vmas.filter { $0.kind == .vvar || $0.kind == .vvarVclock || $0.kind == .vdso }
    let collide = targets.contains { target in
      current.contains { $0.start < target.end && target.start < $0.end }
    }
    for pass in (collide ? 0 : 1)...1 {
      for (imageKind, mapsKind) in kinds {
        let sourceIndex = current.firstIndex { $0.kind == mapsKind }
        let target = image.vmas.first { $0.kind == imageKind }
        switch (sourceIndex, target) {
        case (nil, nil): continue
        case (let sourceIndex?, let target?):
          let source = current[sourceIndex]
          guard source.size == target.size else {
            throw CKError(
              .failed, "the kernel's [\(target.path)] is \(source.size) bytes here but was \(target.size)",
              hint: "restore on a host running the same kernel as the dump")
          }
          let destination = pass == 0 ? 0x2000_0000_0000 + (target.start & 0xffff_ffff) : target.start
          if source.start == destination { continue }
          batch.add(.mremap(source.start, length: source.size, to: destination), "mremap \(target.path)")
          current[sourceIndex].start = destination
          current[sourceIndex].end = destination + source.size
        default:
          throw CKError(
            .failed, "the kernel mappings differ from the dump (\(imageKind.rawValue))",
            hint: "restore on a host running the same kernel as the dump")
        }
      }
    }
  }

  /// An i386 task's [vvar], [vvar_vclock] and [vdso]: the 32-bit image, mapped whole by
  /// arch_prctl(ARCH_MAP_VDSO_32) at the dumped [vvar] once the 64-bit ones are gone (it
  /// refuses with EEXIST while any is mapped). Copying it as data would not do: the kernel
  /// returns from an i386 signal handler through it (glibc sets no SA_RESTORER), by the
  /// place it recorded. A task forked from a restored one has it in place already.
  private func mapI386VDSO() throws {
    let current =
      try kernelMappings
      ?? ProcMaps.read(pid: injector.pid).filter {
        $0.kind == .vdso || $0.kind == .vvar || $0.kind == .vvarVclock
      }
    guard let vvar = image.vmas.first(where: { $0.kind == .vvar }),
      let vdso = image.vmas.first(where: { $0.kind == .vdso })
    else {
      throw CKError(.failed, "task \(injector.pid): the i386 image has no [vvar] and [vdso]")
    }
    if current.contains(where: { $0.kind == .vdso && $0.start == vdso.start && $0.size == vdso.size }) { return }
    for mapping in current {
      batch.add(.munmap(mapping.start, length: mapping.size), "munmap the 64-bit \(mapping.kind)")
    }
    batch.add(.mapI386VDSO(at: vvar.start))
    try flush()
    guard
      try ProcMaps.read(pid: injector.pid).contains(where: {
        $0.kind == .vdso && $0.start == vdso.start && $0.size == vdso.size
      })
    else {
      throw CKError(
        .failed, "task \(injector.pid): the 32-bit [vdso] did not land at \(hex(vdso.start)) as dumped",
        hint: "restore on a host running the same kernel as the dump")
    }
  }

  /// Queues the mmap of `vma` at its address with `protection`; a memfd or deleted file is
  /// made again first, a file opened (once per batch).
  private func map(_ vma: VMAImage, protection: Int32) throws {
    endRun()
    // MAP_FIXED_NOREPLACE: never clobber what is already there; MAP_NORESERVE as it was
    // mapped (no swap reserved: the mapping stays out of strict overcommit accounting).
    // MAP_DROPPABLE is a kind of mapping of its own, as MAP_SHARED and MAP_PRIVATE are.
    var flags: MapFlags = vma.droppable == true ? .droppable : vma.shared ? .shared : .private
    flags.insert(.fixedNoReplace)
    if vma.noReserve == true { flags.insert(.noReserve) }
    let (start, end, path) = (vma.start, vma.end, vma.path)
    let name: @Sendable () -> String = { "mmap \(hex(start))-\(hex(end)) \(path)" }
    if vma.kind == .memfd || vma.kind == .deletedFile {
      // The file made again, of its size; other mappings of it come through map_files.
      let fd = try queueObjectFile(vma)
      batch.add(
        .mmap(
          at: vma.start, length: vma.size, protection: protection, flags: flags, fd: .result(fd), offset: vma.offset),
        name())
      batch.add(.close(.result(fd)), "close \(vma.path)")
    } else if vma.kind == .file {
      try MappedFiles.check(
        vma, pid: injector.pid, namespace: mountNamespace, checked: &sharedObjects.checkedFiles)
      // A library maps several VMAs of one file: it is opened once per batch.
      let writable = vma.shared && vma.protection & PROT_WRITE != 0
      let key = "\(writable ? "w" : "r"):\(vma.path)"
      let fd: Int
      if let opened = openFiles[key] {
        fd = opened
      } else {
        let path = try injector.put(string: vma.path)
        fd = batch.add(.open(path, (writable ? O_RDWR : O_RDONLY) | O_CLOEXEC), "open \(vma.path) to map it")
        openFiles[key] = fd
      }
      batch.add(
        .mmap(
          at: vma.start, length: vma.size, protection: protection, flags: flags, fd: .result(fd), offset: vma.offset),
        name())
    } else {
      flags.insert(.anonymous)
      if vma.growsDown { flags.insert(.growsDown) }
      if let size = vma.hugePageSize { flags.formUnion(.hugePages(of: size)) }
      batch.add(.mmap(at: vma.start, length: vma.size, protection: protection, flags: flags), name())
    }
  }

  /// Queues the making of the file under a memfd or deleted-file mapping, of its size;
  /// returns the call whose result is its descriptor.
  private func queueObjectFile(_ vma: VMAImage) throws -> Int {
    let fd: Int
    if vma.kind == .memfd {
      // A new memfd of the same name.
      let label = try injector.put(string: String(vma.path.dropFirst("/memfd:".count).prefix(249)))
      fd = batch.add(.memfdCreate(label, .closeOnExec), "memfd_create \(vma.path)")
    } else {
      // A file unlinked at once, where the deleted one was.
      let ghostPath = ghostFilePath(for: vma.path, inode: vma.sharedObject ?? 0, taskPid: injector.pid)
      let path = try injector.put(string: ghostPath)
      fd = batch.add(
        .open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: vma.objectMode ?? 0o600),
        "create \(ghostPath) for the deleted \(vma.path)")
      batch.add(.unlink(path), "unlink \(ghostPath)")
    }
    batch.add(.ftruncate(.result(fd), vma.objectSize ?? vma.offset + vma.size), "ftruncate \(vma.path)")
    return fd
  }

  /// PR_SET_MM_MAP: code/data/brk/stack/arg/env bounds, auxv and the exe link, so brk() and
  /// /proc/<pid>/cmdline keep working.
  private func queueMMFields() throws {
    let replacesExe = image.exe != inheritedExe
    let exe = image.exe
    if replacesExe {
      let exePath = try injector.put(string: exe)
      let opened = batch.add(.open(exePath, O_RDONLY | O_CLOEXEC), "open \(exe)")
      batch.add(.dup3(.result(opened), Self.exeFD, closeOnExec: true), "dup3 \(exe) to \(Self.exeFD)")
      batch.add(.close(.result(opened)), "close \(exe) (opened)")
    }
    // An i386 task's vector is of 32-bit words (kept one per element).
    let auxvBytes = abi == .i386 ? image.auxv.count * 4 : image.auxv.count * 8
    let auxv =
      abi == .i386
      ? try image.auxv.map { UInt32(truncatingIfNeeded: $0) }.withUnsafeBytes { try injector.put($0) }
      : try injector.put(words: image.auxv)
    let f = image.fields
    var words: [UInt64] = [
      f.startCode, f.endCode, f.startData, f.endData, f.startBrk, f.brk, f.startStack, f.argStart, f.argEnd,
      f.envStart, f.envEnd, auxv,
    ]
    // struct prctl_mm_map ends with __u32 auxv_size and __u32 exe_fd.
    // exe_fd -1 keeps the executable.
    let exeFD = replacesExe ? UInt32(truncatingIfNeeded: Self.exeFD) : UInt32.max
    words.append(UInt64(auxvBytes) | UInt64(exeFD) << 32)
    let map = try injector.put(words: words)
    batch.add(.prctl(.setMMMap(map, size: words.count * 8)))
    if replacesExe { batch.add(.close(Self.exeFD), "close \(exe)") }
  }
}

extension VMAImage.Advice {
  /// The madvise advice that gives this advice.
  var memoryAdvice: MemoryAdvice {
    switch self {
    case .random: .random
    case .sequential: .sequential
    case .dontFork: .dontFork
    case .mergeable: .mergeable
    case .hugePage: .hugePage
    case .noHugePage: .noHugePage
    case .dontDump: .dontDump
    case .wipeOnFork: .wipeOnFork
    }
  }
}
