import Bundle
import Foundation
import Glibc
import Linux

/// The receiver's copy of the pages a migration sent ahead while the container ran (its
/// pre-copy rounds), by process (its pid in the container) and address, a later round's
/// page replacing an earlier one. The final bundle names the runs still valid
/// (``VMAImage/precopiedPages``); ``merge(into:)`` puts them beside the saved pages, so
/// that the rest of the restore sees an ordinary bundle.
public final class PreCopyStore {
  static let pageSize = 4096
  /// Room reserved for pages (address space only, filled as they come): a sender cannot
  /// make the receiver hold more.
  static let capacity = 64 << 30

  private let base: UnsafeMutableRawPointer
  private var slots = 0
  private var index: [Int32: [UInt64: Int]] = [:]
  /// Pages of a parent bundle (``ParentBundle``), where they lie in it, and what holds them.
  private var borrowed: [Int32: [UInt64: UnsafeRawPointer]] = [:]
  private var holders: [AnyObject] = []

  public init() throws {
    guard
      let mapped = mmap(
        nil, Self.capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0),
      mapped != MAP_FAILED
    else { throw CKError(.failed, "cannot reserve room for the pages sent ahead") }
    // Not copied into the tasks ckcont clones nor its lazy-pages guard (see PageBuffer).
    madvise(mapped, Self.capacity, MADV_DONTFORK)
    base = mapped
  }

  deinit { munmap(base, Self.capacity) }

  /// Bytes held.
  public var bytes: Int { slots * Self.pageSize }

  /// Stores `count` pages of process `pid` from `start` on, their bytes in `data`.
  func store(pid: Int32, start: UInt64, count: Int, data: UnsafeRawBufferPointer) throws {
    guard data.count == count * Self.pageSize, let source = data.baseAddress else {
      throw CKError(.badInput, "a batch of pages sent ahead is not whole")
    }
    for page in 0..<count {
      let address = start + UInt64(page * Self.pageSize)
      let slot: Int
      // Changed in place: a copy of the process's index per batch would cost its size.
      if let existing = index[pid, default: [:]][address] {
        slot = existing
      } else {
        guard (slots + 1) * Self.pageSize <= Self.capacity else {
          throw CKError(.badInput, "the migration sent more than \(Self.capacity >> 30) GiB of pages ahead")
        }
        slot = slots
        slots += 1
        index[pid, default: [:]][address] = slot
      }
      (base + slot * Self.pageSize).copyMemory(from: source + page * Self.pageSize, byteCount: Self.pageSize)
    }
  }

  /// Takes every saved page of `bundle` (loaded whole, its own parents merged) where it lies,
  /// by process and address: `bundle` is kept as long as this store.
  func borrow(_ bundle: LoadedBundle) {
    holders.append(bundle)
    for task in bundle.tasks {
      guard let data = task.pages?.baseAddress else { continue }
      var pages: [UInt64: UnsafeRawPointer] = [:]
      for vma in task.memory.vmas {
        var offset = Int(vma.pagesOffset)
        for run in vma.pages {
          for address in stride(from: run.start, to: run.end, by: Self.pageSize) {
            pages[address] = data + offset
            offset += Self.pageSize
          }
        }
      }
      borrowed[task.entry.pid] = pages
    }
  }

  /// The page of process `pid` at `address`, when held.
  func page(pid: Int32, at address: UInt64) -> UnsafeRawPointer? {
    if let slot = index[pid]?[address] { return UnsafeRawPointer(base + slot * Self.pageSize) }
    return borrowed[pid]?[address]
  }

  /// Puts the pages sent ahead that `task`'s final image names beside its saved ones: its
  /// mappings' runs become one sorted list, their bytes one new buffer (returned: it holds
  /// the data as long as the bundle). A page named that was never sent fails: the source
  /// promised it.
  func merge(into task: inout LoadedBundle.LoadedTask) throws -> AnyObject {
    let pid = task.entry.pid
    let extra = task.memory.vmas.reduce(UInt64(0)) { sum, vma in
      sum + (vma.precopiedPages ?? []).reduce(0) { $0 + $1.size }
    }
    let buffer = try PageBuffer(size: task.pagesSize + Int(extra))
    guard let saved = task.pages ?? (task.pagesSize == 0 ? UnsafeRawBufferPointer(start: nil, count: 0) : nil) else {
      throw CKError(.failed, "task \(pid): the bundle's pages were not kept")
    }
    var written = 0
    for at in task.memory.vmas.indices {
      let vma = task.memory.vmas[at]
      guard let ahead = vma.precopiedPages else {
        let size = Int(vma.pages.reduce(0) { $0 + $1.size })
        if size > 0, let from = saved.baseAddress {
          (buffer.pointer + written).copyMemory(from: from + Int(vma.pagesOffset), byteCount: size)
        }
        written += size
        continue
      }
      // Both lists are sorted and disjoint (validated): walk them in address order.
      var runs: [(range: PageRun, savedAt: Int?)] = []
      var offset = Int(vma.pagesOffset)
      for run in vma.pages {
        runs.append((run, offset))
        offset += Int(run.size)
      }
      runs += ahead.map { ($0, nil) }
      runs.sort { $0.range.start < $1.range.start }
      var merged: [PageRun] = []
      for (run, savedAt) in runs {
        if let savedAt, let from = saved.baseAddress {
          (buffer.pointer + written).copyMemory(from: from + savedAt, byteCount: Int(run.size))
        } else {
          for address in stride(from: run.start, to: run.end, by: Self.pageSize) {
            guard let page = page(pid: pid, at: address) else {
              throw CKError(
                .badInput,
                "task \(pid): page \(hex(address)) was to come from a migration's rounds or a parent bundle, which lack it"
              )
            }
            (buffer.pointer + written + Int(address - run.start)).copyMemory(from: page, byteCount: Self.pageSize)
          }
        }
        written += Int(run.size)
        if let last = merged.last, last.end == run.start {
          merged[merged.count - 1].end = run.end
        } else {
          merged.append(run)
        }
      }
      task.memory.vmas[at].pages = merged
      task.memory.vmas[at].precopiedPages = nil
    }
    task.memory.renumberPages()
    task.pages = UnsafeRawBufferPointer(start: buffer.pointer, count: buffer.size)
    task.pagesSize = buffer.size
    return buffer
  }
}
