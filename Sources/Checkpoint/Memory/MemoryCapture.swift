import Bundle
import CKShim
import Cgroup
import Glibc
import Linux
import Logging

/// Captures an address space: every VMA, which of its pages hold data, and the mm fields.
/// Page contents are read later, while the bundle is written (see `PageReader`).
struct MemoryCapture {
  let pid: Int32
  /// /proc/<pid>/stat, for the mm fields.
  let procStat: ProcStatExtended
  /// Its VMA flags being read since the freeze (``SeizedContainer/vmaFlags``), if they are.
  var readingFlags: BackgroundJob<[UInt64: VMFlags]>? = nil

  /// How a mapping's pages are found: in the shared object it maps, or in its page tables
  /// (for a private file mapping, only the copied-on-write pages).
  private enum PageSource: Equatable {
    case none, object
    case pageTables(anonymousOnly: Bool)
  }

  /// The image, with `fields.brk` left 0: /proc does not show it, only the process itself
  /// can tell (a remote brk(0), see ``TaskCapture``).
  func image(log: Logger) throws -> MemoryImage {
    let started = monotonicNow()
    let vmas = try ProcMaps.read(pid: pid)
    // The kernel's flags of each mapping (locks, advice, seals) are only in smaps, which walks
    // every page table to print (~40 ms for 1 GiB or 10000 mappings here): for a big address
    // space it is read on another thread while this one scans the pages.
    let aside = vmas.count >= Self.smapsAside.mappings || procStat.rssPages >= Self.smapsAside.pages
    let pendingFlags =
      readingFlags
      ?? (aside ? BackgroundJob(named: "ckcont-smaps") { [pid] in try ProcSmaps.readFlags(pid: pid) } : nil)
    let described = try vmas.map(describe)
    var images = described.map(\.image)
    try MappedFiles.identify(&images, pid: pid)
    var scanner = try PageScanner(pid: pid)
    try scanPages(&images, sources: described.map(\.source), vmas: vmas, scanner: &scanner)
    try applyFlags(try pendingFlags?.wait() ?? ProcSmaps.readFlags(pid: pid), to: &images, scanner: &scanner)
    var offset: UInt64 = 0
    for index in images.indices {
      images[index].pagesOffset = offset
      offset += images[index].pages.reduce(0) { $0 + $1.size }
    }
    let image = MemoryImage(
      vmas: images, fields: fields, auxv: try auxVector(), exe: try executable(), pagesSize: offset)
    log.debug(
      "task \(pid): \(images.count) VMAs, \(offset >> 10) KiB of pages to save, scanned in \(Int((monotonicNow() - started) * 1000)) ms"
    )
    return image
  }

  /// One mapping's image without its pages, and where its pages are to be found.
  private func describe(_ vma: VMA) throws -> (image: VMAImage, source: PageSource) {
    let shared = vma.permissions.contains(.shared)
    if Self.isPrivateHugeTLB(vma) {
      // Private memory in huge pages: its pages are in its page tables like any private
      // anonymous memory's; its page size comes from smaps (``applyFlags``).
      let image = VMAImage(
        start: vma.start, end: vma.end, protection: protection(vma.permissions), shared: false, kind: .anonymous,
        path: "", offset: 0, growsDown: false, pages: [], pagesOffset: 0)
      return (image, .pageTables(anonymousOnly: false))
    }
    let kind = try kind(of: vma)
    let special = kind == .vdso || kind == .vvar || kind == .vvarVclock || kind == .vsyscall
    // Shared file mappings live in the file, SysV segments in the IPC image; kernel
    // mappings are recreated by the kernel. PROT_NONE areas are scanned too: they may
    // hold data written before an mprotect.
    let source: PageSource
    if shared && (vma.kind == .sharedAnonymous || kind == .memfd || kind == .deletedFile) {
      source = .object
    } else if !special && !(shared && kind == .file) && kind != .sysvShm {
      // A private mapping of a file keeps only its copied-on-write pages; the file's own
      // (for a memfd or a deleted file, saved apart: see ``privateObjectContents``) show
      // through the rest.
      source = .pageTables(anonymousOnly: kind == .file || kind == .deletedFile || (kind == .memfd && !shared))
    } else {
      source = .none
    }
    var image = VMAImage(
      start: vma.start, end: vma.end, protection: protection(vma.permissions), shared: shared, kind: kind,
      path: vma.path, offset: vma.offset, growsDown: kind == .stack, pages: [], pagesOffset: 0,
      sharedObject: vma.kind == .sharedAnonymous || kind == .memfd || kind == .sysvShm ? vma.inode : nil)
    if kind == .memfd {
      var st = stat()
      let file = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
      guard stat(file, &st) == 0 else {
        throw CKError(.failed, "task \(pid): cannot stat \(file): \(String(cString: strerror(errno)))")
      }
      image.objectSize = UInt64(st.st_size)
    }
    if kind == .deletedFile {
      let deletedFile = try deletedFileFacts(vma)
      image.sharedObject = UInt64(deletedFile.st_ino)
      image.objectDevice = UInt64(deletedFile.st_dev)
      image.objectSize = UInt64(deletedFile.st_size)
      image.objectMode = UInt32(deletedFile.st_mode) & 0o7777
    }
    return (image, source)
  }

  /// MAP_PRIVATE|MAP_ANONYMOUS|MAP_HUGETLB (maps shows `/anon_hugepage (deleted)`).
  static func isPrivateHugeTLB(_ vma: VMA) -> Bool {
    vma.path == "/anon_hugepage" && vma.isDeleted && !vma.permissions.contains(.shared)
  }

  /// The image's kind of a mapping /proc/<pid>/maps lists; unknown kernel mappings fail.
  private func kind(of vma: VMA) throws -> VMAImage.Kind {
    switch vma.kind {
    case .anonymous, .anonymousNamed, .sharedAnonymous: return .anonymous
    case .file: return vma.isDeleted ? .deletedFile : .file
    case .memfd: return .memfd
    case .sysvShm: return .sysvShm
    case .heap: return .heap
    case .stack: return .stack
    case .vdso: return .vdso
    case .vvar: return .vvar
    case .vvarVclock: return .vvarVclock
    case .vsyscall: return .vsyscall
    case .otherPseudo(let name):
      throw CKError(.failed, "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) [\(name)] cannot be checkpointed")
    }
  }

  /// Finds the pages that hold data; neighbours scanned alike are scanned at once.
  private func scanPages(
    _ images: inout [VMAImage], sources: [PageSource], vmas: [VMA], scanner: inout PageScanner
  ) throws {
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
  }

  /// The kernel's flags from smaps on each mapping, and its guard regions, whose pages
  /// hold no data.
  private func applyFlags(_ flags: [UInt64: VMFlags], to images: inout [VMAImage], scanner: inout PageScanner)
    throws
  {
    // The size of huge pages is only in the full smaps: read when there are some.
    let hugePageSizes: [UInt64: UInt64] =
      flags.values.contains { $0.contains(.hugeTLB) }
      ? Dictionary(
        try ProcSmaps.read(pid: pid).map { ($0.vma.start, $0.kernelPageSize) }, uniquingKeysWith: { first, _ in first })
      : [:]
    for index in images.indices where !images[index].isSpecial {
      guard let vmFlags = flags[images[index].start] else {
        throw CKError(
          .failed, "task \(pid): mapping \(hex(images[index].start)) changed while it was read (smaps does not show it)"
        )
      }
      apply(vmFlags, to: &images[index])
      if vmFlags.contains(.hugeTLB) {
        guard images[index].kind == .anonymous, !images[index].shared,
          let size = hugePageSizes[images[index].start], size > 4096
        else {
          throw CKError(
            .failed,
            "task \(pid): mapping \(hex(images[index].start)) is shared memory or a file in huge pages (hugetlbfs), which ckcont cannot checkpoint yet",
            hint: "private anonymous huge pages (MAP_PRIVATE|MAP_HUGETLB) are kept")
        }
        images[index].hugePageSize = size
      }
      guard vmFlags.contains(.guardRegions) else { continue }
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

  /// The executable's path. PR_SET_MM_MAP refuses (EPERM) the file made again for a deleted
  /// executable: its mappings would come back, the process would not.
  private func executable() throws -> String {
    let exe = try readLink("/proc/\(pid)/exe")
    if exe.hasSuffix(" (deleted)") {
      throw CKError(
        .failed,
        "task \(pid): its executable \(exe.dropLast(" (deleted)".count)) was deleted since it started, which ckcont cannot checkpoint yet",
        hint: "restart the process from the executable's new version")
    }
    return exe
  }

  /// The mm fields /proc/<pid>/stat shows (brk aside).
  private var fields: MMFields {
    MMFields(
      startCode: procStat.startCode, endCode: procStat.endCode, startData: procStat.startData,
      endData: procStat.endData, startBrk: procStat.startBrk, brk: 0, startStack: procStat.startStack,
      argStart: procStat.argStart, argEnd: procStat.argEnd, envStart: procStat.envStart, envEnd: procStat.envEnd)
  }

  /// The auxiliary vector as PR_SET_MM_MAP wants it: AuxVector leaves out the terminating
  /// AT_NULL pair. An i386 program's (its executable is ELF32) is of 32-bit words, kept one
  /// word per element; the restore packs them back (``TaskCore/abi``).
  private func auxVector() throws -> [UInt64] {
    guard try Self.isELF32(pid: pid) else {
      return try AuxVector.read(pid: pid).flatMap { [$0.type, $0.value] } + [0, 0]
    }
    let bytes = try PseudoFile.readBytes("/proc/\(pid)/auxv")
    let words = stride(from: 0, to: bytes.count - 3, by: 4).map { offset in
      bytes[offset..<offset + 4].reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
    var pairs: [UInt64] = []
    for index in stride(from: 0, to: words.count - 1, by: 2) {
      guard words[index] != 0 else { break }  // AT_NULL
      pairs += [words[index], words[index + 1]]
    }
    return pairs + [0, 0]
  }

  /// Whether the process's executable is a 32-bit ELF file (EI_CLASS 1).
  static func isELF32(pid: Int32) throws -> Bool {
    let executable = try OwnedDescriptor(opening: "/proc/\(pid)/exe", flags: O_RDONLY | O_CLOEXEC)
    var header = [UInt8](repeating: 0, count: 5)
    let count = read(executable.raw, &header, 5)
    return count == 5 && header[0...3] == [0x7f, 0x45, 0x4c, 0x46] && header[4] == 1
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
    // The ring of a kernel AIO context (io_setup) shows as the deleted file /[aio] of the
    // kernel's aio filesystem: not a file to make again, and its requests may be in flight.
    guard vma.path != "/[aio]" else {
      throw CKError(
        .failed,
        "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) is the ring of an AIO context (io_setup), which ckcont cannot checkpoint yet",
        hint: "let the program io_destroy its AIO contexts before the checkpoint")
    }
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
    let object = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
    let objectEnd = vma.offset + (vma.end - vma.start)
    return try FileData.ranges(fd: object.raw, from: vma.offset, to: objectEnd, name: path).map { range in
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
      let file = try OwnedDescriptor(opening: path, flags: O_RDONLY | O_CLOEXEC)
      var bytes = [UInt8](repeating: 0, count: size)
      var done = 0
      while done < size {
        let n = try syscallChecked("pread", path) {
          bytes.withUnsafeMutableBytes { pread(file.raw, $0.baseAddress.map { $0 + done }, size - done, off_t(done)) }
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
