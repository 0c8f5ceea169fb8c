import Bundle
import Cgroup
import Glibc
import Linux

/// Captures an address space: every VMA, which of its pages hold data, and the mm fields.
/// Page contents are read later, while the bundle is written (see `PageReader`).
struct MemoryCapture {
  let pid: Int32
  /// /proc/<pid>/stat, for the mm fields.
  let procStat: ProcStatExtended
  /// Whether some memory is locked (status VmLck): then smaps tells which mappings.
  var hasLockedMemory = false

  /// The image, with `fields.brk` left 0: /proc does not show it, only the process itself
  /// can tell (a remote brk(0), see ``TaskCapture``).
  func image(log: (String) -> Void) throws -> MemoryImage {
    let started = monotonicNow()
    let vmas = try ProcMaps.read(pid: pid)
    var scanner = try PageScanner(pid: pid)
    var images: [VMAImage] = []
    var offset: UInt64 = 0
    for vma in vmas {
      let kind: VMAImage.Kind
      switch vma.kind {
      case .anonymous, .anonymousNamed, .sharedAnonymous: kind = .anonymous
      case .file: kind = .file
      case .memfd:
        guard vma.permissions.contains(.shared) else {
          throw CKError(
            .failed, "task \(pid): private mapping \(hex(vma.start))-\(hex(vma.end)) of \(vma.path) cannot be checkpointed yet")
        }
        kind = .memfd
      case .sysvShm: kind = .sysvShm
      case .heap: kind = .heap
      case .stack: kind = .stack
      case .vdso: kind = .vdso
      case .vvar: kind = .vvar
      case .vvarVclock: kind = .vvarVclock
      case .vsyscall: kind = .vsyscall
      case .otherPseudo(let name):
        throw CKError(.failed, "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) [\(name)] cannot be checkpointed")
      }
      let shared = vma.permissions.contains(.shared)
      if kind == .file && vma.isDeleted {
        throw CKError(
          .failed,
          "task \(pid): mapping \(hex(vma.start))-\(hex(vma.end)) of deleted file \(vma.path) cannot be checkpointed yet")
      }
      let special = kind == .vdso || kind == .vvar || kind == .vvarVclock || kind == .vsyscall
      var runs: [AddressRange] = []
      // Shared file mappings live in the file, SysV segments in the IPC image; kernel
      // mappings are recreated by the kernel. PROT_NONE areas are scanned too: they may
      // hold data written before an mprotect.
      if !special && !(shared && kind == .file) && kind != .sysvShm {
        runs = try scanner.dataRuns(start: vma.start, end: vma.end, anonymousOnly: kind == .file)
      }
      let pages = runs.map { PageRun(start: $0.start, end: $0.end) }
      var objectSize: UInt64?
      if kind == .memfd {
        var st = stat()
        let file = "/proc/\(pid)/map_files/\(hex(vma.start))-\(hex(vma.end))"
        guard stat(file, &st) == 0 else {
          throw CKError(.failed, "task \(pid): cannot stat \(file): \(String(cString: strerror(errno)))")
        }
        objectSize = UInt64(st.st_size)
      }
      images.append(
        VMAImage(
          start: vma.start, end: vma.end, protection: protection(vma.permissions), shared: shared, kind: kind,
          path: vma.path, offset: vma.offset, growsDown: kind == .stack, pages: pages, pagesOffset: offset,
          sharedObject: vma.kind == .sharedAnonymous || kind == .memfd || kind == .sysvShm ? vma.inode : nil, objectSize: objectSize))
      offset += pages.reduce(0) { $0 + $1.size }
    }
    if hasLockedMemory {
      // smaps is slow to produce: read only when VmLck says something is locked.
      var locks: [UInt64: VMAImage.Lock] = [:]
      for entry in try ProcSmaps.read(pid: pid) where entry.flags.contains(.locked) {
        locks[entry.vma.start] = entry.flags.contains(.lockOnFault) ? .onFault : .always
      }
      for index in images.indices { images[index].lock = locks[images[index].start] }
    }
    let fields = MMFields(
      startCode: procStat.startCode, endCode: procStat.endCode, startData: procStat.startData, endData: procStat.endData,
      startBrk: procStat.startBrk, brk: 0, startStack: procStat.startStack, argStart: procStat.argStart, argEnd: procStat.argEnd,
      envStart: procStat.envStart, envEnd: procStat.envEnd)
    // AuxVector leaves out the terminating AT_NULL pair, which PR_SET_MM_MAP wants.
    let auxv: [UInt64] = try AuxVector.read(pid: pid).flatMap { [$0.type, $0.value] } + [0, 0]
    let image = MemoryImage(
      vmas: images, fields: fields, auxv: auxv, exe: try readLink("/proc/\(pid)/exe"), pagesSize: offset)
    log(
      "task \(pid): \(images.count) VMAs, \(offset >> 10) KiB of pages to save, scanned in "
        + "\(Int((monotonicNow() - started) * 1000)) ms")
    return image
  }

  func protection(_ permissions: VMAPermissions) -> Int32 {
    (permissions.contains(.read) ? PROT_READ : 0) | (permissions.contains(.write) ? PROT_WRITE : 0)
      | (permissions.contains(.execute) ? PROT_EXEC : 0)
  }
}

func hex(_ value: UInt64) -> String { String(value, radix: 16) }
