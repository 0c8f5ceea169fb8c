import Bundle
import Foundation
import Glibc
import Linux

/// Rebuilds a dumped address space inside a fresh task (DESIGN.md 3, "Restore a task"):
/// unmap what it inherited from ckcont, move [vdso]/[vvar] to their dumped addresses, map
/// every VMA at its exact address, write the saved pages, then PR_SET_MM_MAP.
/// Shared anonymous memory objects already recreated: the first process to map one creates
/// it, the others map the same object through /proc/<pid>/map_files of that process.
final class SharedMemoryObjects {
  /// inode at dump -> the creating task (pid as ckcont sees it) and its mapping.
  var created: [UInt64: (hostPid: Int32, start: UInt64, end: UInt64)] = [:]
}

struct MemoryRestore {
  /// Where the page data comes from.
  enum PageSource {
    /// In ckcont's memory (a bundle read from a pipe): written through /proc/<pid>/mem.
    case buffer(PageBuffer)
    /// In the bundle file at this offset: the task reads them itself with preadv, one
    /// kernel copy straight into its own memory, several times faster than /proc/<pid>/mem.
    case file(path: String, offset: UInt64)
  }

  let image: MemoryImage
  let pages: PageSource
  let injector: Injector
  let sharedObjects: SharedMemoryObjects
  let log: (String) -> Void

  func run() throws {
    let started = monotonicNowSeconds()
    try moveKernelMappings()
    var bundleFD: Int64?
    if case .file(let path, _) = pages {
      injector.resetData()
      let address = try injector.put(string: path)
      bundleFD = try injector.call("open the bundle \(path)", SyscallNumber.open, address, UInt64(O_RDONLY | O_CLOEXEC))
    }
    defer { if let bundleFD { _ = try? injector.raw(SyscallNumber.close, UInt64(bundleFD)) } }
    var written: UInt64 = 0
    for vma in image.vmas where !vma.isSpecial {
      if let object = vma.sharedObject, let first = sharedObjects.created[object] {
        // Another process made this object and wrote its pages: map the same one.
        try mapShared(vma, from: first)
        continue
      }
      // Pages go in through the mapping itself: make it writable for as long as that takes.
      let needsWrite = !vma.pages.isEmpty && vma.protection & PROT_WRITE == 0 && bundleFD != nil
      try map(vma, extraProtection: needsWrite ? PROT_READ | PROT_WRITE : 0)
      switch pages {
      case .buffer(let buffer):
        var offset = vma.pagesOffset
        for run in vma.pages {
          try injector.mem.write(buffer.bytes(offset: offset, count: run.size), at: run.start)
          offset += run.size
        }
      case .file(_, let base):
        if let bundleFD { try readPages(of: vma, from: bundleFD, at: base + vma.pagesOffset) }
      }
      if needsWrite {
        try injector.call("mprotect \(hex(vma.start))", SyscallNumber.mprotect, vma.start, vma.size, UInt64(vma.protection))
      }
      if let object = vma.sharedObject { sharedObjects.created[object] = (injector.pid, vma.start, vma.end) }
      written += vma.pages.reduce(0) { $0 + $1.size }
    }
    try setMMFields()
    let seconds = monotonicNowSeconds() - started
    log(
      "task \(injector.pid): \(image.vmas.count) VMAs rebuilt, \(written >> 20) MiB of pages in \(Int(seconds * 1000)) ms"
        + (seconds > 0 ? String(format: " (%.2f GB/s)", Double(written) / seconds / 1e9) : ""))
  }

  /// Maps the shared object another restored process created, through its map_files entry
  /// (opening it needs CAP_SYS_ADMIN, which restore has).
  private func mapShared(_ vma: VMAImage, from first: (hostPid: Int32, start: UInt64, end: UInt64)) throws {
    injector.resetData()
    let path = "/proc/\(first.hostPid)/map_files/\(hex(first.start))-\(hex(first.end))"
    let address = try injector.put(string: path)
    let writable = vma.protection & PROT_WRITE != 0
    let fd = try injector.call("open \(path)", SyscallNumber.open, address, UInt64((writable ? O_RDWR : O_RDONLY) | O_CLOEXEC))
    defer { _ = try? injector.raw(SyscallNumber.close, UInt64(fd)) }
    let result = try injector.call(
      "mmap shared \(hex(vma.start))", SyscallNumber.mmap, vma.start, vma.size, UInt64(vma.protection),
      UInt64(MAP_SHARED) | 0x100000, UInt64(fd), vma.offset)
    guard UInt64(result) == vma.start else { throw CKError(.failed, "shared mapping at \(hex(vma.start)) landed elsewhere") }
  }

  /// preadv(bundle, runs of this VMA) inside the task, up to 1024 runs per call.
  private func readPages(of vma: VMAImage, from fd: Int64, at offset: UInt64) throws {
    var position = offset
    var index = 0
    while index < vma.pages.count {
      let batch = vma.pages[index..<min(index + 1024, vma.pages.count)]
      injector.resetData()
      let iovecs = try injector.put(words: batch.flatMap { [$0.start, $0.size] })
      let expected = batch.reduce(0) { $0 + $1.size }
      var done: UInt64 = 0
      while done < expected {
        // A short read (it should not happen on a regular file) continues where it stopped.
        let n = try injector.call(
          "preadv pages of \(hex(vma.start))", SyscallNumber.preadv, UInt64(fd), iovecs, UInt64(batch.count), position, 0)
        guard n > 0 else { throw CKError(.failed, "task \(injector.pid): the bundle ended while reading pages") }
        if UInt64(n) < expected { return try slowRead(batch, from: fd, at: position) }
        done += UInt64(n)
      }
      position += expected
      index += batch.count
    }
  }

  /// Run by run, for the odd short preadv.
  private func slowRead(_ runs: ArraySlice<PageRun>, from fd: Int64, at offset: UInt64) throws {
    var position = offset
    for run in runs {
      var done: UInt64 = 0
      while done < run.size {
        let n = try injector.call(
          "pread64 pages", SyscallNumber.pread64, UInt64(fd), run.start + done, run.size - done, position + done)
        guard n > 0 else { throw CKError(.failed, "task \(injector.pid): the bundle ended while reading pages") }
        done += UInt64(n)
      }
      position += run.size
    }
  }

  /// Everything but the injection region and the kernel's own mappings goes. Done in a root
  /// task before it forks the others, so they start from an empty address space (forking
  /// ckcont's whole layout, page tables and all, hundreds of times is what it would cost).
  static func unmapInherited(_ injector: Injector) throws {
    // munmap of a range with holes is fine: one call per stretch between the mappings that
    // stay, instead of one per inherited mapping (ckcont has hundreds).
    var kept: [(start: UInt64, end: UInt64)] = []
    for vma in try ProcMaps.read(pid: injector.pid) {
      switch vma.kind {
      case .vdso, .vvar, .vvarVclock, .vsyscall: kept.append((vma.start, vma.end))
      default: if vma.start == injector.region { kept.append((vma.start, vma.end)) }
      }
    }
    kept.sort { $0.start < $1.start }
    var cursor: UInt64 = 0x1000
    let top: UInt64 = 0x7fff_ffff_f000
    // [vsyscall] lies above user space and ends the walk.
    for mapping in kept + [(start: top, end: top)] where cursor < top {
      let end = min(mapping.start, top)
      if end > cursor {
        try injector.call("munmap \(hex(cursor))-\(hex(end))", SyscallNumber.munmap, cursor, end - cursor)
      }
      cursor = max(cursor, mapping.end)
    }
  }

  /// mremap [vvar], [vvar_vclock] and [vdso], each whole, to the dumped addresses (through a
  /// temporary place when the ranges collide). Moving [vdso] without [vvar] kills the task.
  private func moveKernelMappings() throws {
    let kinds: [(VMAImage.Kind, VMAKind)] = [(.vvar, .vvar), (.vvarVclock, .vvarVclock), (.vdso, .vdso)]
    // Where the kernel mappings are now: read once, then followed through our own mremaps.
    var current = try ProcMaps.read(pid: injector.pid).filter { $0.kind != .vsyscall }
    let targets = image.vmas.filter { $0.kind == .vvar || $0.kind == .vvarVclock || $0.kind == .vdso }
    let collide = targets.contains { target in
      current.contains { $0.start < target.end && target.start < $0.end }
    }
    for pass in (collide ? 0 : 1)...1 {
      for (imageKind, mapsKind) in kinds {
        let sourceIndex = current.firstIndex { $0.kind == mapsKind }
        let source = sourceIndex.map { current[$0] }
        let target = image.vmas.first { $0.kind == imageKind }
        switch (source, target) {
        case (nil, nil): continue
        case (let source?, let target?):
          guard source.size == target.size else {
            throw CKError(
              .failed, "the kernel's [\(target.path)] is \(source.size) bytes here but was \(target.size)",
              hint: "restore on a host running the same kernel as the dump")
          }
          let destination = pass == 0 ? 0x2000_0000_0000 + (target.start & 0xffff_ffff) : target.start
          if source.start == destination { continue }
          let moved = try injector.call(
            "mremap \(target.path)", SyscallNumber.mremap, source.start, source.size, source.size,
            3 /* MREMAP_MAYMOVE | MREMAP_FIXED */, destination)
          guard UInt64(moved) == destination, let sourceIndex else {
            throw CKError(.failed, "mremap of \(target.path) went astray")
          }
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

  private func map(_ vma: VMAImage, extraProtection: Int32) throws {
    let protection = UInt64(vma.protection | extraProtection)
    let fixed: UInt64 = 0x100000  // MAP_FIXED_NOREPLACE: never clobber what is already there
    let sharing = UInt64(vma.shared ? MAP_SHARED : MAP_PRIVATE)
    let name = "mmap \(hex(vma.start))-\(hex(vma.end)) \(vma.path)"
    injector.resetData()
    if vma.kind == .memfd {
      // A new memfd of the same name and size; other mappings of it come through map_files.
      let name = try injector.put(string: String(vma.path.dropFirst("/memfd:".count).prefix(249)))
      let fd = try injector.call("memfd_create \(vma.path)", SyscallNumber.memfdCreate, name, 1 /* MFD_CLOEXEC */)
      defer { _ = try? injector.raw(SyscallNumber.close, UInt64(fd)) }
      try injector.call("ftruncate \(vma.path)", SyscallNumber.ftruncate, UInt64(fd), vma.objectSize ?? vma.offset + vma.size)
      let result = try injector.call(
        "mmap \(hex(vma.start)) \(vma.path)", SyscallNumber.mmap, vma.start, vma.size, protection,
        sharing | fixed, UInt64(fd), vma.offset)
      guard UInt64(result) == vma.start else { throw CKError(.failed, "mmap of \(vma.path) landed elsewhere") }
    } else if vma.kind == .file {
      let writable = vma.shared && vma.protection & PROT_WRITE != 0
      let path = try injector.put(string: vma.path)
      let fd = try injector.call(
        "open \(vma.path) to map it", SyscallNumber.open, path, UInt64(writable ? O_RDWR : O_RDONLY) | UInt64(O_CLOEXEC))
      defer { _ = try? injector.raw(SyscallNumber.close, UInt64(fd)) }
      let result = try injector.call(
        name, SyscallNumber.mmap, vma.start, vma.size, protection, sharing | fixed, UInt64(fd), vma.offset)
      guard UInt64(result) == vma.start else { throw CKError(.failed, "\(name) landed elsewhere") }
    } else {
      let flags = sharing | UInt64(MAP_ANONYMOUS) | fixed | (vma.growsDown ? UInt64(MAP_GROWSDOWN) : 0)
      let result = try injector.call(name, SyscallNumber.mmap, vma.start, vma.size, protection, flags, UInt64.max, 0)
      guard UInt64(result) == vma.start else { throw CKError(.failed, "\(name) landed elsewhere") }
    }
  }

  /// PR_SET_MM_MAP: code/data/brk/stack/arg/env bounds, auxv and the exe link, so brk() and
  /// /proc/<pid>/cmdline keep working.
  private func setMMFields() throws {
    injector.resetData()
    let exePath = try injector.put(string: image.exe)
    let exe = try injector.call("open \(image.exe)", SyscallNumber.open, exePath, UInt64(O_RDONLY | O_CLOEXEC))
    defer { _ = try? injector.raw(SyscallNumber.close, UInt64(exe)) }
    let auxv = try injector.put(words: image.auxv)
    let f = image.fields
    var words: [UInt64] = [
      f.startCode, f.endCode, f.startData, f.endData, f.startBrk, f.brk, f.startStack, f.argStart, f.argEnd,
      f.envStart, f.envEnd, auxv,
    ]
    // struct prctl_mm_map ends with __u32 auxv_size and __u32 exe_fd.
    words.append(UInt64(image.auxv.count * 8) | UInt64(UInt32(truncatingIfNeeded: exe)) << 32)
    let map = try injector.put(words: words)
    try injector.call("PR_SET_MM_MAP", SyscallNumber.prctl, 35, 14, map, UInt64(words.count * 8))
  }
}
