import Bundle
import CKShim
import Cgroup
import Glibc
import Linux

/// Captures an address space: every VMA, which of its pages hold data, and the mm fields.
/// Page contents are read later, while the bundle is written (see `PageReader`).
struct MemoryCapture {
  let pid: Int32
  /// /proc/<pid>/stat, for the mm fields.
  let procStat: ProcStatExtended

  /// The image, with `fields.brk` left 0: /proc does not show it, only the process itself
  /// can tell (a remote brk(0), see ``TaskCapture``).
  func image(log: (String) -> Void) throws -> MemoryImage {
    let started = monotonicNow()
    let vmas = try ProcMaps.read(pid: pid)
    // The kernel's flags of each mapping (locks, advice, seals) are only in smaps, which walks
    // every page table to print (~40 ms for 1 GiB or 10000 mappings here): for a big address
    // space it is read on another thread while this one scans the pages.
    let aside = vmas.count >= Self.smapsAside.mappings || procStat.rssPages >= Self.smapsAside.pages
    let pendingFlags = aside ? Pending(named: "ckcont-smaps") { [pid] in try ProcSmaps.readFlags(pid: pid) } : nil
    var images: [VMAImage] = []
    /// How each mapping's pages are found, by index: in the shared object it maps, or in its
    /// page tables (for a private file mapping, only the copied-on-write pages).
    enum PageSource: Equatable {
      case none, object
      case pageTables(anonymousOnly: Bool)
    }
    var sources: [PageSource] = []
    for vma in vmas {
      let kind: VMAImage.Kind
      switch vma.kind {
      case .anonymous, .anonymousNamed, .sharedAnonymous: kind = .anonymous
      case .file: kind = vma.isDeleted ? .deletedFile : .file
      case .memfd: kind = .memfd
      case .sysvShm: kind = .sysvShm
      case .heap: kind = .heap
      case .stack: kind = .stack
      case .vdso: kind = .vdso
      case .vvar: kind = .vvar
      case .vvarVclock: kind = .vvarVclock
      case .vsyscall: kind = .vsyscall
      case .otherPseudo(let name):
        throw CKError(
          .failed, "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) [\(name)] cannot be checkpointed")
      }
      let shared = vma.permissions.contains(.shared)
      var deletedFile: stat?
      if kind == .deletedFile {
        deletedFile = try deletedFileFacts(vma)
      }
      let special = kind == .vdso || kind == .vvar || kind == .vvarVclock || kind == .vsyscall
      // Shared file mappings live in the file, SysV segments in the IPC image; kernel
      // mappings are recreated by the kernel. PROT_NONE areas are scanned too: they may
      // hold data written before an mprotect.
      if shared && (vma.kind == .sharedAnonymous || kind == .memfd || kind == .deletedFile) {
        sources.append(.object)
      } else if !special && !(shared && kind == .file) && kind != .sysvShm {
        // A private mapping of a file keeps only its copied-on-write pages; the file's own
        // (for a memfd or a deleted file, saved apart: see ``privateObjectContents``) show
        // through the rest.
        sources.append(.pageTables(anonymousOnly: kind == .file || kind == .deletedFile || (kind == .memfd && !shared)))
      } else {
        sources.append(.none)
      }
      var objectSize: UInt64?
      if kind == .memfd {
        var st = stat()
        let file = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
        guard stat(file, &st) == 0 else {
          throw CKError(.failed, "task \(pid): cannot stat \(file): \(String(cString: strerror(errno)))")
        }
        objectSize = UInt64(st.st_size)
      }
      var image = VMAImage(
        start: vma.start, end: vma.end, protection: protection(vma.permissions), shared: shared, kind: kind,
        path: vma.path, offset: vma.offset, growsDown: kind == .stack, pages: [], pagesOffset: 0,
        sharedObject: vma.kind == .sharedAnonymous || kind == .memfd || kind == .sysvShm ? vma.inode : nil,
        objectSize: objectSize)
      if let deletedFile {
        image.sharedObject = UInt64(deletedFile.st_ino)
        image.objectDevice = UInt64(deletedFile.st_dev)
        image.objectSize = UInt64(deletedFile.st_size)
        image.objectMode = UInt32(deletedFile.st_mode) & 0o7777
      }
      images.append(image)
    }
    // Neighbours scanned alike are scanned at once.
    var scanner = try PageScanner(pid: pid)
    var index = 0
    while index < images.count {
      switch sources[index] {
      case .none:
        index += 1
      case .object:
        images[index].pages = try objectDataRuns(vmas[index]).map { PageRun(start: $0.start, end: $0.end) }
        index += 1
      case .pageTables(let anonymousOnly):
        var end = index + 1
        while end < images.count && sources[end] == sources[index] { end += 1 }
        let runs = try scanner.dataRuns(
          of: images[index..<end].map { AddressRange(start: $0.start, end: $0.end) }, anonymousOnly: anonymousOnly)
        for (area, areaRuns) in zip(index..<end, runs) {
          images[area].pages = areaRuns.map { PageRun(start: $0.start, end: $0.end) }
        }
        index = end
      }
    }
    let flags = try pendingFlags?.wait() ?? ProcSmaps.readFlags(pid: pid)
    for index in images.indices where !images[index].isSpecial {
      guard let vmFlags = flags[images[index].start] else {
        throw CKError(
          .failed, "task \(pid): mapping \(hex(images[index].start)) changed while it was read (smaps does not show it)"
        )
      }
      apply(vmFlags, to: &images[index])
      if vmFlags.contains(.guardRegions) {
        let guards = try scanner.guardRuns(start: images[index].start, end: images[index].end)
        images[index].guards = guards.map { PageRun(start: $0.start, end: $0.end) }
        // A guard page is a marker PAGEMAP_SCAN counts as swapped: it holds no data.
        images[index].pages = images[index].pages.flatMap { run in
          guards.reduce([run]) { pieces, guardRun in
            pieces.flatMap { piece -> [PageRun] in
              guard guardRun.start < piece.end, piece.start < guardRun.end else { return [piece] }
              return [PageRun(start: piece.start, end: guardRun.start), PageRun(start: guardRun.end, end: piece.end)]
                .filter { $0.start < $0.end }
            }
          }
        }
      }
    }
    var offset: UInt64 = 0
    for index in images.indices {
      images[index].pagesOffset = offset
      offset += images[index].pages.reduce(0) { $0 + $1.size }
    }
    // PR_SET_MM_MAP refuses (EPERM) the file made again for a deleted executable: its
    // mappings would come back, the process would not.
    let exe = try readLink("/proc/\(pid)/exe")
    if exe.hasSuffix(" (deleted)") {
      throw CKError(
        .failed,
        "task \(pid): its executable \(exe.dropLast(" (deleted)".count)) was deleted since it started, which ckcont cannot checkpoint yet",
        hint: "restart the process from the executable's new version")
    }
    let fields = MMFields(
      startCode: procStat.startCode, endCode: procStat.endCode, startData: procStat.startData,
      endData: procStat.endData,
      startBrk: procStat.startBrk, brk: 0, startStack: procStat.startStack, argStart: procStat.argStart,
      argEnd: procStat.argEnd,
      envStart: procStat.envStart, envEnd: procStat.envEnd)
    // AuxVector leaves out the terminating AT_NULL pair, which PR_SET_MM_MAP wants.
    let auxv: [UInt64] = try AuxVector.read(pid: pid).flatMap { [$0.type, $0.value] } + [0, 0]
    let image = MemoryImage(
      vmas: images, fields: fields, auxv: auxv, exe: exe, pagesSize: offset)
    log(
      "task \(pid): \(images.count) VMAs, \(offset >> 10) KiB of pages to save, scanned in "
        + "\(Int((monotonicNow() - started) * 1000)) ms")
    return image
  }

  /// The kernel's flags of a mapping that the restore must set again: locks, madvise advice,
  /// a seal, MAP_NORESERVE, MAP_DROPPABLE.
  private func apply(_ flags: VMFlags, to image: inout VMAImage) {
    if flags.contains(.locked) { image.lock = flags.contains(.lockOnFault) ? .onFault : .always }
    let advice: [(VMFlags, VMAImage.Advice)] = [
      (.dontCopy, .dontFork), (.wipeOnFork, .wipeOnFork), (.dontDump, .dontDump), (.hugePage, .hugePage),
      (.noHugePage, .noHugePage), (.mergeable, .mergeable), (.sequentialRead, .sequential), (.randomRead, .random),
    ]
    let given = advice.filter { flags.contains($0.0) }.map(\.1)
    image.advice = given.isEmpty ? nil : given
    if flags.contains(.sealed) { image.sealed = true }
    if flags.contains(.noReserve) { image.noReserve = true }
    if flags.contains(.droppable) { image.droppable = true }
    if flags.contains(.accountable) && !image.shared && image.protection & PROT_WRITE == 0 { image.accounted = true }
  }

  /// From how many mappings or resident pages (16 MiB) smaps is read on a thread of its own.
  static let smapsAside = (mappings: 256, pages: UInt64(4096))

  /// The file behind a mapping of a deleted file, which must be one the restore can make
  /// again: a regular file, linked nowhere else.
  private func deletedFileFacts(_ vma: VMA) throws -> stat {
    let name = "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) of deleted file \(vma.path)"
    let file = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
    var st = stat()
    guard stat(file, &st) == 0 else {
      throw CKError(.failed, "\(name): cannot stat \(file): \(String(cString: strerror(errno)))")
    }
    guard st.st_mode & S_IFMT == S_IFREG, st.st_nlink == 0 else {
      throw CKError(
        .failed, "\(name) is not a regular file or is still linked elsewhere, which ckcont cannot checkpoint yet")
    }
    // Huge pages (MAP_HUGETLB shows as /anon_hugepage, deleted) are no file to make again.
    guard ck_fs_magic(file) != Int(CK_HUGETLBFS_MAGIC) else {
      throw CKError(.failed, "\(name) is in huge pages (hugetlbfs), which ckcont cannot checkpoint yet")
    }
    return st
  }

  /// The pages of a shared memory object (shared anonymous memory, a memfd) that `vma` maps
  /// and that hold data, as addresses in `vma`. Taken from the object (SEEK_DATA), not from
  /// this process's page tables: pages other processes wrote, some of them gone since, are
  /// in the object without being mapped here (PostgreSQL's postmaster never touches most of
  /// the shared buffers its backends fill). Every process sharing the object finds the same
  /// pages: ``SharedObjectPages`` keeps them in one.
  private func objectDataRuns(_ vma: VMA) throws -> [AddressRange] {
    let path = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
    let fd = try syscallChecked("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
    defer { close(fd) }
    let objectEnd = vma.offset + (vma.end - vma.start)
    return try FileData.ranges(fd: fd, from: vma.offset, to: objectEnd, name: path).map { range in
      // The last page may end past the end of the file: it is mapped whole.
      AddressRange(
        start: vma.start + (range.start - vma.offset),
        end: min(vma.start + ((range.end - vma.offset + 4095) & ~4095), vma.end))
    }
  }

  /// The largest file kept for a private mapping of a memfd or a deleted file.
  static let maxPrivateObjectSize = 64 << 20

  /// The contents of each memfd or deleted file this process maps privately and `known`
  /// does not hold yet, by member (``VMAImage/contentsMember``), read through
  /// /proc/<pid>/map_files: a private mapping shows the file only where it was not written to.
  static func privateObjectContents(pid: Int32, of image: MemoryImage, known: Set<String>) throws -> [String: [UInt8]] {
    var contents: [String: [UInt8]] = [:]
    for vma in image.vmas {
      guard let member = vma.contentsMember, !known.contains(member), contents[member] == nil else { continue }
      let size = Int(vma.objectSize ?? 0)
      guard size <= Self.maxPrivateObjectSize else {
        throw CKError(
          .failed,
          "task \(pid): the file \(vma.path) mapped privately at \(hex(vma.start)) holds \(size >> 20) MiB, more than ckcont keeps of such a file (\(Self.maxPrivateObjectSize >> 20) MiB)"
        )
      }
      let path = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
      let fd = try syscallChecked("open", path) { open(path, O_RDONLY | O_CLOEXEC) }
      defer { close(fd) }
      var bytes = [UInt8](repeating: 0, count: size)
      var done = 0
      while done < size {
        let n = try syscallChecked("pread", path) {
          bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress! + done, size - done, off_t(done)) }
        }
        guard n > 0 else {
          throw CKError(.failed, "task \(pid): the file \(vma.path) ended at \(done) of \(size) bytes")
        }
        done += n
      }
      contents[member] = bytes
    }
    return contents
  }

  func protection(_ permissions: VMAPermissions) -> Int32 {
    (permissions.contains(.read) ? PROT_READ : 0) | (permissions.contains(.write) ? PROT_WRITE : 0)
      | (permissions.contains(.execute) ? PROT_EXEC : 0)
  }
}

func hex(_ value: UInt64) -> String { String(value, radix: 16) }
