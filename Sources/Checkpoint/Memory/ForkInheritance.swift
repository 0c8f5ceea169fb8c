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
  /// like it and around it. The parent may have cut it in pieces since the fork (an mprotect
  /// of a part): adjacent like pieces covering `vma` count as one, their pages, advice and
  /// charge together.
  static func parentMapping(of vma: VMAImage, in parent: [VMAImage]) -> VMAImage? {
    var low = 0
    var high = parent.count
    while low < high {
      let middle = (low + high) / 2
      if parent[middle].end <= vma.start { low = middle + 1 } else { high = middle }
    }
    guard low < parent.count, inheritable(vma), parent[low].start <= vma.start else { return nil }
    var merged = parent[low]
    var next = low + 1
    while merged.end < vma.end, next < parent.count, parent[next].start == merged.end {
      let piece = parent[next]
      guard piece.kind == merged.kind, piece.path == merged.path, piece.growsDown == merged.growsDown,
        piece.hugePageSize == merged.hugePageSize,
        piece.sharedObject == merged.sharedObject, piece.objectDevice == merged.objectDevice,
        !hasFile(piece) || piece.offset == merged.offset + (piece.start - merged.start)
      else { return nil }
      merged.end = piece.end
      merged.protection |= piece.protection
      merged.accounted = merged.accounted == true || piece.accounted == true ? true : nil
      merged.pages += piece.pages
      merged.precopiedPages = merged.precopiedPages.map { $0 + (piece.precopiedPages ?? []) } ?? piece.precopiedPages
      merged.parentPages = merged.parentPages.map { $0 + (piece.parentPages ?? []) } ?? piece.parentPages
      merged.laterPages = merged.laterPages.map { $0 + (piece.laterPages ?? []) } ?? piece.laterPages
      merged.advice = Array(Set((merged.advice ?? []) + (piece.advice ?? []))).sorted { $0.rawValue < $1.rawValue }
      next += 1
    }
    let candidate = merged
    guard inheritable(candidate), candidate.kind == vma.kind, candidate.path == vma.path,
      candidate.hugePageSize == vma.hugePageSize,
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

  /// Each process's place in the plan's forks.
  static func forkOrder(_ plan: TreePlan) -> [Int32: Int] {
    var order: [Int32: Int] = [:]
    for case .fork(let pid, _) in plan.steps { order[pid] = order.count }
    return order
  }

  /// The mapping of `parent` a mapping of its child is kept from, when it can be: a like
  /// mapping around it in which the parent holds data (so it has an anon_vma), or any like
  /// file mapping (one without copied pages is the same kept or made anew, and keeping it
  /// saves the child opening and mapping a library again), not one fork() leaves out.
  static func keptFrom(_ vma: VMAImage, parent: MemoryImage) -> VMAImage? {
    guard let parentVMA = parentMapping(of: vma, in: parent.vmas), !held(parentVMA).isEmpty || vma.kind == .file,
      !(parentVMA.advice ?? []).contains(.dontFork), !(charged(parentVMA) && !charged(vma))
    else { return nil }
    return parentVMA
  }

  /// Whether a private mapping is charged to the overcommit limit (VM_ACCOUNT): fork copies
  /// the flag and no mprotect takes it away, so a child's uncharged mapping is never kept
  /// from a charged one (its parent made it writable after the fork).
  static func charged(_ vma: VMAImage) -> Bool { vma.protection & PROT_WRITE != 0 || vma.accounted == true }

  /// The pages a parent's mapping holds at restore: its own (saved, or merged in from a
  /// migration's rounds or a parent bundle) and those it kept in turn.
  static func held(_ vma: VMAImage) -> [Range<UInt64>] {
    let own = SharedObjectPages.union(
      vma.pages.map { $0.start..<$0.end }, (vma.precopiedPages ?? []).map { $0.start..<$0.end })
    return SharedObjectPages.union(own, (vma.parentPages ?? []).map { $0.start..<$0.end })
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
  /// `forkOrder`: each one's place in the plan's forks.
  static func mark(_ tasks: inout [Dump.CapturedTask], sources: [Int32: Int32], forkOrder: [Int32: Int]) throws
    -> Marked
  {
    var marked = Marked()
    let index = Dictionary(uniqueKeysWithValues: tasks.indices.map { (tasks[$0].entry.pid, $0) })
    var source: [Int: Int] = [:]
    for child in tasks.indices {
      if let pid = sources[tasks[child].entry.pid], let parent = index[pid], parent != child { source[child] = parent }
    }
    guard !source.isEmpty else { return marked }
    var frames: [Int: Frames] = [:]
    for task in Set(source.keys).union(source.values).sorted() {
      frames[task] = try Frames(pid: tasks[task].hostPid, image: tasks[task].memory)
      let unpinned = frames[task]?.mappedElsewhere ?? []
      if !unpinned.isEmpty { marked.unpinned[tasks[task].hostPid] = unpinned }
    }
    let order = Dictionary(uniqueKeysWithValues: forkOrder.compactMap { pid, place in index[pid].map { ($0, place) } })
    var marking = Marking(
      images: tasks.map(\.memory), pids: tasks.map(\.entry.pid), source: source, frames: frames, forkOrder: order)
    marking.classify()
    marking.groupRelatives()
    for (task, image) in marking.assemble() {
      tasks[task].memory = image
      marked.changed.insert(task)
    }
    return marked
  }

  /// Which saved page of which process the restore gets by a fork (``mark(_:sources:)``).
  ///
  /// A child's page may be its parent's; or an older one, that of a process further up whose
  /// page each process between still held when it forked the next (it wrote its own since);
  /// or one its siblings share that no process above has any more (their parent wrote its
  /// own after the forks). Those between, or the parent, get the page as
  /// ``VMAImage/laterPages``: at restore they hold the older page (kept, or copied from one
  /// child that saves it) until their children are forked. A child sharing such a process's
  /// newer page cannot then get it by the fork and saves it as its own.
  struct Marking {
    /// The images as captured: decisions read them, not the changed ones.
    let images: [MemoryImage]
    let pids: [Int32]
    /// Each child's source, by task index.
    let source: [Int: Int]
    let frames: [Int: Frames]
    /// Each task's place in the restore's forks.
    let forkOrder: [Int: Int]
    /// By task, by mapping index: pages it gets by the fork; later pages (the child that
    /// saves the page held until the forks, nil when kept from the source).
    var kept: [Int: [Int: [UInt64]]] = [:]
    var later: [Int: [Int: [UInt64: Later]]] = [:]

    /// Who provides a later page (nil: kept from the source) and the last child, by task
    /// index, that needs it.
    struct Later {
      var from: Int32?
      var until: Int
    }
    /// Pages shared with the source's final page (dropped where the source holds another
    /// page at its forks), and pages no process above has, by address and frame.
    var direct: [Int: [Int: [UInt64]]] = [:]
    var orphans: [Pair: [(task: Int, mapping: Int)]] = [:]
    /// Kept pages a child saves too, for a process above to hold while it forks.
    var provided: [Int: [Int: Set<UInt64>]] = [:]

    init(images: [MemoryImage], pids: [Int32], source: [Int: Int], frames: [Int: Frames], forkOrder: [Int: Int]) {
      self.forkOrder = forkOrder
      self.images = images
      self.pids = pids
      self.source = source
      self.frames = frames
    }

    func identity(_ task: Int, _ address: UInt64) -> UInt64? {
      frames[task]?.entry(at: address, in: images[task])?.anonymousIdentity
    }

    /// The mapping of `task` around `address` when it is kept from its source.
    func keptMapping(_ task: Int, at address: UInt64) -> Int? {
      guard let parent = source[task], let at = mappingIndex(images[task].vmas, at: address),
        keptFrom(images[task].vmas[at], parent: images[parent]) != nil
      else { return nil }
      return at
    }

    mutating func classify() {
      for (child, parent) in source.sorted(by: { $0.key < $1.key }) {
        for (at, vma) in images[child].vmas.enumerated() {
          guard let parentVMA = keptFrom(vma, parent: images[parent]) else { continue }
          // Over several mappings of the parent, only when a page shows the fork: the child
          // may have mapped it anew over what the parent mapped after the fork.
          if !images[parent].vmas.contains(where: { $0.start == parentVMA.start && $0.end == parentVMA.end }),
            !vma.pages.contains(where: { run in
              stride(from: run.start, to: run.end, by: 4096).contains { address in
                identity(child, address).map { $0 == identity(parent, address) } ?? false
              }
            })
          {
            continue
          }
          kept[child, default: [:]][at] = kept[child]?[at] ?? []
          for run in vma.pages {
            for address in stride(from: run.start, to: run.end, by: 4096) {
              guard let mine = identity(child, address) else { continue }
              if mine == identity(parent, address) {
                direct[child, default: [:]][at, default: []].append(address)
              } else if !older(child, at: address, identity: mine) {
                orphans[Pair(address: address, identity: mine), default: []].append((child, at))
              }
            }
          }
        }
      }
    }

    /// Up the chain while each keeps the mapping from the one above: a process whose page
    /// the child still shares.
    mutating func older(_ child: Int, at address: UInt64, identity mine: UInt64) -> Bool {
      var between: [(task: Int, mapping: Int)] = []
      var current = source[child] ?? child
      while let above = source[current], let mapping = keptMapping(current, at: address), between.count < pids.count {
        between.append((current, mapping))
        if mine == identity(above, address) {
          guard let at = mappingIndex(images[child].vmas, at: address) else { return false }
          kept[child, default: [:]][at, default: []].append(address)
          for (step, (task, mapping)) in between.enumerated() {
            hold(task, mapping, address, from: nil, until: step == 0 ? child : between[step - 1].task)
          }
          return true
        }
        current = above
      }
      return false
    }

    /// `task` holds the older page at `address` at least until it has forked `child`.
    mutating func hold(_ task: Int, _ mapping: Int, _ address: UInt64, from: Int32?, until child: Int) {
      let known = later[task]?[mapping]?[address]
      let until = known.map { (forkOrder[$0.until] ?? 0) >= (forkOrder[child] ?? 0) ? $0.until : child } ?? child
      later[task, default: [:]][mapping, default: [:]][address] = Later(from: known.map(\.from) ?? from, until: until)
    }

    /// Relatives sharing a page no process above them has any more (each wrote its own
    /// since): siblings, or cousins whose parents wrote theirs. The nearest process above
    /// all of them held it when it forked them: at restore it holds a copy of the page the
    /// first of them saves, the processes between hold it kept until they have forked the
    /// next, and every one of them keeps it. Not where one of those must hold another page
    /// then, or keeps its own from above.
    mutating func groupRelatives() {
      for (key, members) in orphans.sorted(by: { $0.key.address < $1.key.address }) where members.count > 1 {
        let members = members.sorted { $0.task < $1.task }
        let chains = members.map { chain(above: $0.task, at: key.address) }
        guard let top = chains[0].first(where: { holder in chains.allSatisfy { $0.contains(holder) } }),
          let topMapping = mappingIndex(images[top].vmas, at: key.address),
          ForkInheritance.inheritable(images[top].vmas[topMapping]), free(top, topMapping, key.address)
        else { continue }
        // Each one's path up to the top: those between hold the page kept until the next.
        var holds: [(task: Int, mapping: Int, until: Int, from: Int32?)] = []
        var possible = true
        for (member, chain) in zip(members, chains) {
          var below = member.task
          for holder in chain {
            if holder == top {
              holds.append((top, topMapping, below, pids[members[0].task]))
              break
            }
            guard let mapping = keptMapping(holder, at: key.address), free(holder, mapping, key.address) else {
              possible = false
              break
            }
            holds.append((holder, mapping, below, nil))
            below = holder
          }
        }
        guard possible else { continue }
        for held in holds { hold(held.task, held.mapping, key.address, from: held.from, until: held.until) }
        provided[members[0].task, default: [:]][members[0].mapping, default: []].insert(key.address)
        for member in members { kept[member.task, default: [:]][member.mapping, default: []].append(key.address) }
      }
    }

    struct Pair: Hashable {
      var address: UInt64
      var identity: UInt64
    }

    /// The processes above `task`, nearest first, as far as each but the last keeps its
    /// mapping at `address` from the next.
    func chain(above task: Int, at address: UInt64) -> [Int] {
      var result: [Int] = []
      var current = task
      while let up = source[current], result.count < pids.count {
        result.append(up)
        guard keptMapping(up, at: address) != nil else { break }
        current = up
      }
      return result
    }

    /// Whether `task` may hold another page at `address` while it forks: it holds none it
    /// keeps from above there, and no other older page.
    func free(_ task: Int, _ mapping: Int, _ address: UInt64) -> Bool {
      !(kept[task]?[mapping]?.contains(address) ?? false) && !(direct[task]?[mapping]?.contains(address) ?? false)
        && later[task]?[mapping]?[address] == nil
    }

    /// The changed images, by task index.
    func assemble() -> [Int: MemoryImage] {
      var result: [Int: MemoryImage] = [:]
      for task in Set(kept.keys).union(later.keys) {
        var image = images[task]
        for at in Set((kept[task] ?? [:]).keys).union((later[task] ?? [:]).keys) {
          if let mine = kept[task]?[at] {
            // A page the source holds only after its forks is not the source's at the fork.
            let parent = source[task] ?? task
            let shared = (direct[task]?[at] ?? []).filter { address in
              guard let held = later[parent]?[mappingIndex(images[parent].vmas, at: address) ?? -1]?[address] else {
                return true
              }
              return (forkOrder[task] ?? 0) > (forkOrder[held.until] ?? 0)
            }
            let runs = coalesce((shared + mine).sorted())
            image.vmas[at].parentPages = runs.map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
            // What it provides stays saved too: the bytes its source holds while it forks.
            let notSaved = coalesce((shared + mine).filter { provided[task]?[at]?.contains($0) != true }.sorted())
            image.vmas[at].pages = SharedObjectPages.subtract(
              notSaved, from: image.vmas[at].pages.map { $0.start..<$0.end }
            ).map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
          }
          if let pending = later[task]?[at], !pending.isEmpty {
            var runs: [LaterRun] = []
            for (address, held) in pending.sorted(by: { $0.key < $1.key }) {
              let until = pids[held.until]
              if let last = runs.last, last.end == address, last.from == held.from, last.until == until {
                runs[runs.count - 1].end = address + 4096
              } else {
                runs.append(LaterRun(start: address, end: address + 4096, from: held.from, until: until))
              }
            }
            image.vmas[at].laterPages = runs
          }
        }
        image.renumberPages()
        result[task] = image
      }
      return result
    }
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
    // The pages each process saves for a process above it to hold while it forks.
    var providedBy: [Int32: [Range<UInt64>]] = [:]
    for task in tasks {
      for run in task.memory.vmas.flatMap({ $0.laterPages ?? [] }) {
        if let from = run.from { providedBy[from, default: []].append(run.start..<run.end) }
      }
    }
    for task in tasks {
      func bad(_ what: String) -> CKError {
        CKError(.badInput, "the bundle is inconsistent: task \(task.entry.pid): \(what)")
      }
      let source = sources[task.entry.pid].flatMap { byPid[$0] }
      for vma in task.memory.vmas where vma.parentPages != nil || vma.laterPages != nil {
        let name = "mapping \(hex(vma.start))-\(hex(vma.end))"
        let later = vma.laterPages ?? []
        for runs in [vma.parentPages ?? [], later.map { PageRun(start: $0.start, end: $0.end) }] {
          var end = vma.start
          for run in runs {
            guard run.start % 4096 == 0, run.end % 4096 == 0, run.start < run.end, run.start >= end,
              run.end <= vma.end
            else { throw bad("\(name) has a kept or later page run outside it") }
            end = run.end
          }
        }
        var fromAbove = later.filter { $0.from == nil }.map { $0.start..<$0.end }
        if let kept = vma.parentPages {
          guard let source, let parentVMA = keptFrom(vma, parent: source.memory) else {
            throw bad("\(name) is kept from a process that has no like mapping around it")
          }
          let keptRanges = kept.map { $0.start..<$0.end }
          let there = heldAtForks(parentVMA)
          // Kept pages it saves too are those a process above holds while it forks.
          let savedToo = SharedObjectPages.subtract(
            SharedObjectPages.subtract(vma.pages.map { $0.start..<$0.end }, from: keptRanges), from: keptRanges)
          let provided = SharedObjectPages.union(providedBy[task.entry.pid] ?? [], [])
          guard SharedObjectPages.subtract(provided, from: savedToo).isEmpty,
            SharedObjectPages.subtract(there, from: keptRanges).isEmpty,
            SharedObjectPages.subtract(there, from: fromAbove).isEmpty
          else { throw bad("\(name) keeps pages it saved too or that process \(source.entry.pid) does not hold") }
          fromAbove = []
        }
        guard fromAbove.isEmpty else { throw bad("\(name) holds pages from above but is not kept") }
        for run in later {
          if let until = run.until, sources[until] != task.entry.pid {
            throw bad("\(name) holds pages until it forks \(until), which it does not")
          }
          guard let from = run.from else { continue }
          guard let child = byPid[from],
            let at = mappingIndex(child.memory.vmas, at: run.start),
            SharedObjectPages.subtract(
              child.memory.vmas[at].pages.map { $0.start..<$0.end }, from: [run.start..<run.end]
            ).isEmpty
          else { throw bad("\(name) holds pages of process \(from), which that process does not save") }
        }
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
      let start = max(range.lowerBound, vma.start)
      let end = min(range.upperBound, vma.end)
      return start < end ? start..<end : nil
    }
    return SharedObjectPages.subtract(heldAtForks(vma), from: inside)
  }

  /// The saved pages of `child` over `run`, each piece with the offset of its bytes in the
  /// child's pages (validated to cover it whole).
  static func savedPieces(of run: LaterRun, in child: MemoryImage) -> [(AddressRange, UInt64)] {
    guard let at = mappingIndex(child.vmas, at: run.start) else { return [] }
    var offset = child.vmas[at].pagesOffset
    var pieces: [(AddressRange, UInt64)] = []
    for saved in child.vmas[at].pages {
      let start = max(saved.start, run.start)
      let end = min(saved.end, run.end)
      if start < end { pieces.append((AddressRange(start: start, end: end), offset + (start - saved.start))) }
      offset += saved.size
    }
    return pieces
  }

}
