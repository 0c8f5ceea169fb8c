import Bundle
import Glibc
import Linux

/// Private memory a process got from its parent through fork() (DESIGN.md 3, "Copy-on-write
/// sharing"). After a fork, parent and child map the same physical pages until one writes:
/// the sharing is only made by a fork, so the restore makes it the same way, as CRIU does:
/// the parent's pages are put in before it forks the child, the child keeps the mappings
/// it had from the parent (``VMAImage/parentPages``), writes only the pages it has of its
/// own and drops the parent's it no longer has.
///
/// - Dump (``mark(_:forkedBy:)``): for each process the restore forks from its dumped parent,
///   a private mapping lying within a like mapping of the parent is kept from it when the
///   parent holds data in it (it then has an anon_vma the child's copy is linked to: the
///   kernel never merges such a copy with a neighbour, which a mapping made anew would be);
///   its pages on the parent's physical page (pagemap, as root) become ``parentPages`` and
///   are not saved twice. Pages other mappings map too are read without pinning (see
///   ``Marked/unpinned``).
/// - Restore: ``validate(_:)`` and ``checkPlan(_:tasks:)``, then ``RestoreRun`` and
///   ``MemoryRestore`` keep the mappings.
enum ForkInheritance {
  /// Kinds of mapping a child keeps from its parent.
  static func inheritable(_ vma: VMAImage) -> Bool {
    guard !vma.shared else { return false }
    switch vma.kind {
    case .anonymous, .heap, .stack, .file, .memfd, .deletedFile: return true
    default: return false
    }
  }

  /// The parent's mapping (of `parent`, sorted by address) `vma` can be the kept part of:
  /// like it and around it.
  static func parentMapping(of vma: VMAImage, in parent: [VMAImage]) -> VMAImage? {
    var low = 0
    var high = parent.count
    while low < high {
      let middle = (low + high) / 2
      if parent[middle].end <= vma.start { low = middle + 1 } else { high = middle }
    }
    guard low < parent.count else { return nil }
    let candidate = parent[low]
    guard inheritable(vma), inheritable(candidate), candidate.kind == vma.kind, candidate.path == vma.path,
      candidate.growsDown == vma.growsDown, candidate.start <= vma.start, vma.end <= candidate.end,
      candidate.sharedObject == vma.sharedObject, candidate.objectDevice == vma.objectDevice,
      !hasFile(vma) || vma.offset == candidate.offset + (vma.start - candidate.start)
    else { return nil }
    return candidate
  }

  static func hasFile(_ vma: VMAImage) -> Bool { vma.kind == .file || vma.kind == .memfd || vma.kind == .deletedFile }

  /// The process whose memory each forked process starts with: the one that forks it, or,
  /// when that is a restore helper or a zombie-to-be (``TreePlan``), which keep the memory
  /// they were forked with, the living process above it.
  static func memorySources(_ plan: TreePlan, living: Set<Int32>) -> [Int32: Int32] {
    var forker: [Int32: Int32] = [:]
    for case .fork(let pid, let parent) in plan.steps { forker[pid] = parent }
    var sources: [Int32: Int32] = [:]
    for (pid, parent) in forker {
      var source = parent
      var hops = 0
      while !living.contains(source), let next = forker[source], hops < forker.count {
        source = next
        hops += 1
      }
      if living.contains(source) { sources[pid] = source }
    }
    return sources
  }

  /// The mapping of `parent` a mapping of its child is kept from, when it can be: a like
  /// mapping around it in which the parent holds data (so it has an anon_vma), not one
  /// fork() leaves out.
  static func keptFrom(_ vma: VMAImage, parent: MemoryImage) -> VMAImage? {
    guard let parentVMA = parentMapping(of: vma, in: parent.vmas), !held(parentVMA).isEmpty,
      !(parentVMA.advice ?? []).contains(.dontFork)
    else { return nil }
    return parentVMA
  }

  /// The pages a parent's mapping holds at restore: its own and those it kept in turn.
  static func held(_ vma: VMAImage) -> [Range<UInt64>] {
    SharedObjectPages.union(vma.pages.map { $0.start..<$0.end }, (vma.parentPages ?? []).map { $0.start..<$0.end })
  }

  // MARK: Dump

  struct Marked {
    /// Indices of the tasks whose memory image changed.
    var changed: Set<Int> = []
    /// By host pid: saved pages some other mapping maps too. Read through /proc/<pid>/mem,
    /// which does not pin them: process_vm_readv pins, and the kernel gives a pinned
    /// anonymous page shared since a fork a copy of its own first, which would break the
    /// sharing in a container that runs on after its dump.
    var unpinned: [Int32: [AddressRange]] = [:]
  }

  /// Marks the mappings each process kept from its parent and the pages it shares with it.
  /// `sources`: the process whose memory each one starts with at restore
  /// (``memorySources(_:living:)``, dumped pids inside).
  ///
  /// A child's page may be its parent's, or an older one: that of a process further up whose
  /// page each process between still held when it forked the next (it wrote its own since).
  /// Those between get the page as ``VMAImage/laterPages``: at restore they hold the older
  /// page until their children are forked. A child sharing such a process's newer page
  /// cannot then get it by the fork and saves it as its own.
  static func mark(_ tasks: inout [Dump.CapturedTask], sources: [Int32: Int32]) throws -> Marked {
    var marked = Marked()
    let index = Dictionary(uniqueKeysWithValues: tasks.indices.map { (tasks[$0].entry.pid, $0) })
    var source: [Int: Int] = [:]
    for child in tasks.indices {
      if let pid = sources[tasks[child].entry.pid], let parent = index[pid], parent != child { source[child] = parent }
    }
    guard !source.isEmpty else { return marked }
    // Decisions read the images as captured: a parent may be changed before its child.
    let captured = tasks.map(\.memory)
    var frames: [Int: Frames] = [:]
    for task in Set(source.keys).union(source.values).sorted() {
      frames[task] = try Frames(pid: tasks[task].hostPid, image: captured[task])
      let unpinned = frames[task]?.mappedElsewhere ?? []
      if !unpinned.isEmpty { marked.unpinned[tasks[task].hostPid] = unpinned }
    }
    func identity(_ task: Int, _ address: UInt64) -> UInt64? {
      frames[task]?.entry(at: address, in: captured[task])?.anonymousIdentity
    }
    /// The mapping of `task` around `address` when it is kept from its source.
    func keptMapping(_ task: Int, at address: UInt64) -> Int? {
      guard let parent = source[task], let at = mappingIndex(captured[task].vmas, at: address),
        keptFrom(captured[task].vmas[at], parent: captured[parent]) != nil
      else { return nil }
      return at
    }
    // By task, by mapping index: pages shared with the source, older pages, later pages.
    var direct: [Int: [Int: [UInt64]]] = [:]
    var older: [Int: [Int: [UInt64]]] = [:]
    var later: [Int: [Int: Set<UInt64>]] = [:]
    var kept: [Int: Set<Int>] = [:]
    for (child, parent) in source.sorted(by: { $0.key < $1.key }) {
      for (at, vma) in captured[child].vmas.enumerated() where keptFrom(vma, parent: captured[parent]) != nil {
        kept[child, default: []].insert(at)
        for run in vma.pages {
          for address in stride(from: run.start, to: run.end, by: 4096) {
            guard let mine = identity(child, address) else { continue }
            if mine == identity(parent, address) {
              direct[child, default: [:]][at, default: []].append(address)
              continue
            }
            // Up the chain while each keeps the mapping from the one above.
            var between: [(task: Int, mapping: Int)] = []
            var current = parent
            while let above = source[current], let mapping = keptMapping(current, at: address),
              between.count < tasks.count
            {
              between.append((current, mapping))
              if mine == identity(above, address) {
                older[child, default: [:]][at, default: []].append(address)
                for (task, mapping) in between { later[task, default: [:]][mapping, default: []].insert(address) }
                break
              }
              current = above
            }
          }
        }
      }
    }
    for (child, mappings) in kept {
      var image = captured[child]
      let parent = source[child] ?? child
      for at in mappings {
        // A page the source holds only after its forks is not the source's at the fork.
        let shared = (direct[child]?[at] ?? []).filter {
          later[parent]?[mappingIndex(captured[parent].vmas, at: $0) ?? -1]?.contains($0) != true
        }
        let pages = (shared + (older[child]?[at] ?? [])).sorted()
        let runs = coalesce(pages)
        image.vmas[at].parentPages = runs.map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
        image.vmas[at].pages = SharedObjectPages.subtract(runs, from: image.vmas[at].pages.map { $0.start..<$0.end })
          .map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
        if let pending = later[child]?[at], !pending.isEmpty {
          image.vmas[at].laterPages = coalesce(pending.sorted()).map {
            PageRun(start: $0.lowerBound, end: $0.upperBound)
          }
        }
      }
      image.renumberPages()
      tasks[child].memory = image
      marked.changed.insert(child)
    }
    return marked
  }

  /// Sorted page addresses as runs.
  static func coalesce(_ addresses: [UInt64]) -> [Range<UInt64>] {
    var runs: [Range<UInt64>] = []
    for address in addresses {
      if let last = runs.last, last.upperBound == address {
        runs[runs.count - 1] = last.lowerBound..<address + 4096
      } else {
        runs.append(address..<address + 4096)
      }
    }
    return runs
  }

  /// The index of the mapping of `vmas` (sorted) around `address`.
  static func mappingIndex(_ vmas: [VMAImage], at address: UInt64) -> Int? {
    var low = 0
    var high = vmas.count
    while low < high {
      let middle = (low + high) / 2
      if vmas[middle].end <= address { low = middle + 1 } else { high = middle }
    }
    return low < vmas.count && vmas[low].start <= address ? low : nil
  }

  /// The pagemap entries of a process's saved private pages, by mapping and run.
  struct Frames {
    /// By mapping index, by run of its pages: one entry per page.
    var entries: [Int: [[PageMapEntry]]] = [:]
    /// Saved pages some other mapping maps too, coalesced.
    var mappedElsewhere: [AddressRange] = []

    init(pid: Int32, image: MemoryImage) throws {
      let pagemap = try PageMap(pid: pid)
      for (index, vma) in image.vmas.enumerated() where ForkInheritance.inheritable(vma) && !vma.pages.isEmpty {
        var runs: [[PageMapEntry]] = []
        for run in vma.pages {
          let got = try pagemap.entries(start: run.start, end: run.end)
          for (page, entry) in got.enumerated() where entry.isMappedElsewhere {
            let address = run.start + UInt64(page) * 4096
            if let last = mappedElsewhere.last, last.end == address {
              mappedElsewhere[mappedElsewhere.count - 1].end = address + 4096
            } else {
              mappedElsewhere.append(AddressRange(start: address, end: address + 4096))
            }
          }
          runs.append(got)
        }
        entries[index] = runs
      }
    }

    /// The entry of the saved page at `address`, nil when none is saved there.
    func entry(at address: UInt64, in image: MemoryImage) -> PageMapEntry? {
      guard let at = ForkInheritance.mappingIndex(image.vmas, at: address), let runs = entries[at] else { return nil }
      for (run, pages) in zip(image.vmas[at].pages, runs) where run.start <= address && address < run.end {
        return pages[Int((address - run.start) / 4096)]
      }
      return nil
    }
  }

  // MARK: Restore

  /// Every kept mapping lies in a like mapping of the process the plan forks it from
  /// (through helpers), its kept pages among what that mapping holds at the fork, apart from
  /// its own saved pages; later pages only in kept mappings, among what they hold then.
  static func validate(_ plan: TreePlan, tasks: [LoadedBundle.LoadedTask]) throws(CKError) {
    let sources = memorySources(plan, living: Set(tasks.map(\.entry.pid)))
    let byPid = Dictionary(tasks.map { ($0.entry.pid, $0) }, uniquingKeysWith: { first, _ in first })
    for task in tasks where task.memory.vmas.contains(where: { $0.parentPages != nil || $0.laterPages != nil }) {
      func bad(_ what: String) -> CKError {
        CKError(.badInput, "the bundle is inconsistent: task \(task.entry.pid): \(what)")
      }
      guard let source = sources[task.entry.pid].flatMap({ byPid[$0] }) else {
        throw bad("it keeps mappings of a parent but is created by none")
      }
      for vma in task.memory.vmas where vma.parentPages != nil || vma.laterPages != nil {
        let name = "mapping \(hex(vma.start))-\(hex(vma.end))"
        guard let kept = vma.parentPages, let parentVMA = keptFrom(vma, parent: source.memory) else {
          throw bad("\(name) is kept from process \(source.entry.pid), which has no like mapping around it")
        }
        for runs in [kept, vma.laterPages ?? []] {
          var end = vma.start
          for run in runs {
            guard run.start % 4096 == 0, run.end % 4096 == 0, run.start < run.end, run.start >= end,
              run.end <= vma.end
            else { throw bad("\(name) has a kept page run outside it") }
            end = run.end
          }
        }
        let keptRanges = kept.map { $0.start..<$0.end }
        let laterRanges = (vma.laterPages ?? []).map { $0.start..<$0.end }
        let there = heldAtForks(parentVMA)
        guard SharedObjectPages.subtract(vma.pages.map { $0.start..<$0.end }, from: keptRanges) == keptRanges,
          SharedObjectPages.subtract(there, from: keptRanges).isEmpty,
          SharedObjectPages.subtract(there, from: laterRanges).isEmpty
        else { throw bad("\(name) keeps pages it saved too or that process \(source.entry.pid) does not hold") }
      }
    }
  }

  /// What a mapping holds while its process forks: its saved and kept pages, and the older
  /// pages it replaces or drops only later.
  static func heldAtForks(_ vma: VMAImage) -> [Range<UInt64>] {
    SharedObjectPages.union(held(vma), (vma.laterPages ?? []).map { $0.start..<$0.end })
  }

  /// The kept mappings of `image`: what a process forked from its restored parent keeps.
  static func keptRanges(_ image: MemoryImage) -> [AddressRange] {
    image.vmas.filter { $0.parentPages != nil }.map { AddressRange(start: $0.start, end: $0.end) }
  }

  /// The parent's pages in a kept mapping that the child holds neither as its own nor kept,
  /// nor until its forks: dropped in the child (MADV_DONTNEED gives zeros, or the file's
  /// page for a file mapping).
  static func dropped(_ vma: VMAImage, parent: MemoryImage) -> [Range<UInt64>] {
    guard let parentVMA = parentMapping(of: vma, in: parent.vmas) else { return [] }
    let inside = heldAtForks(parentVMA).compactMap { range -> Range<UInt64>? in
      let clipped = max(range.lowerBound, vma.start)..<min(range.upperBound, vma.end)
      return clipped.isEmpty ? nil : clipped
    }
    return SharedObjectPages.subtract(heldAtForks(vma), from: inside)
  }

  /// The later pages a mapping drops once its process has forked: those it holds no page of.
  static func droppedLater(_ vma: VMAImage) -> [Range<UInt64>] {
    SharedObjectPages.subtract(held(vma), from: (vma.laterPages ?? []).map { $0.start..<$0.end })
  }
}
