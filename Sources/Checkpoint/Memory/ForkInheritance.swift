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
  /// when that is a restore helper (``TreePlan``), the process that forked the helper.
  static func memorySources(_ plan: TreePlan) -> [Int32: Int32] {
    var forker: [Int32: Int32] = [:]
    for case .fork(let pid, let parent) in plan.steps { forker[pid] = parent }
    let helpers = Set(plan.helpers.map(\.pid))
    var sources: [Int32: Int32] = [:]
    for (pid, parent) in forker {
      var source = parent
      var hops = 0
      while helpers.contains(source), let next = forker[source], hops < forker.count {
        source = next
        hops += 1
      }
      sources[pid] = source
    }
    return sources
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
  /// `forkedBy`: the process whose memory each one starts with at restore
  /// (``memorySources(_:)``, dumped pids inside).
  static func mark(_ tasks: inout [Dump.CapturedTask], forkedBy: [Int32: Int32]) throws -> Marked {
    var marked = Marked()
    let index = Dictionary(uniqueKeysWithValues: tasks.indices.map { (tasks[$0].entry.pid, $0) })
    let children = tasks.indices.filter { child in
      let ppid = tasks[child].entry.ppid
      return ppid != 0 && forkedBy[tasks[child].entry.pid] == ppid && index[ppid] != nil
    }
    guard !children.isEmpty else { return marked }
    var involved = Set(children)
    for child in children { if let parent = index[tasks[child].entry.ppid] { involved.insert(parent) } }
    // Decisions read the images as captured: a parent may be changed before its child.
    let captured = tasks.map(\.memory)
    var frames: [Int: Frames] = [:]
    for task in involved.sorted() {
      frames[task] = try Frames(pid: tasks[task].hostPid, image: tasks[task].memory)
      let unpinned = frames[task]?.mappedElsewhere ?? []
      if !unpinned.isEmpty { marked.unpinned[tasks[task].hostPid] = unpinned }
    }
    // Parents before their children: a child's kept pages lie in its parent's image.
    for child in children {
      guard let parent = index[tasks[child].entry.ppid], let childFrames = frames[child],
        let parentFrames = frames[parent]
      else { continue }
      let parentImage = captured[parent]
      var image = captured[child]
      var changed = false
      for (vmaIndex, vma) in image.vmas.enumerated() {
        guard let parentVMA = parentMapping(of: vma, in: parentImage.vmas), !parentVMA.pages.isEmpty,
          !(parentVMA.advice ?? []).contains(.dontFork)
        else { continue }
        var shared: [Range<UInt64>] = []
        for run in vma.pages {
          var address = run.start
          while address < run.end {
            if let mine = childFrames.entry(at: address, in: captured[child])?.anonymousIdentity,
              mine == parentFrames.entry(at: address, in: parentImage)?.anonymousIdentity
            {
              if let last = shared.last, last.upperBound == address {
                shared[shared.count - 1] = last.lowerBound..<address + 4096
              } else {
                shared.append(address..<address + 4096)
              }
            }
            address += 4096
          }
        }
        image.vmas[vmaIndex].parentPages = shared.map { PageRun(start: $0.lowerBound, end: $0.upperBound) }
        image.vmas[vmaIndex].pages = SharedObjectPages.subtract(shared, from: vma.pages.map { $0.start..<$0.end }).map {
          PageRun(start: $0.lowerBound, end: $0.upperBound)
        }
        changed = true
      }
      guard changed else { continue }
      image.renumberPages()
      tasks[child].memory = image
      marked.changed.insert(child)
    }
    return marked
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
      let vmas = image.vmas
      var low = 0
      var high = vmas.count
      while low < high {
        let middle = (low + high) / 2
        if vmas[middle].end <= address { low = middle + 1 } else { high = middle }
      }
      guard low < vmas.count, vmas[low].start <= address, let runs = entries[low] else { return nil }
      for (run, pages) in zip(vmas[low].pages, runs) where run.start <= address && address < run.end {
        return pages[Int((address - run.start) / 4096)]
      }
      return nil
    }
  }

  // MARK: Restore

  /// Every kept mapping lies in a like mapping of the living parent, its kept pages among
  /// what that mapping holds, apart from its own saved pages.
  static func validate(_ tasks: [LoadedBundle.LoadedTask]) throws(CKError) {
    let byPid = Dictionary(tasks.map { ($0.entry.pid, $0) }, uniquingKeysWith: { first, _ in first })
    for task in tasks where task.memory.vmas.contains(where: { $0.parentPages != nil }) {
      func bad(_ what: String) -> CKError {
        CKError(.badInput, "the bundle is inconsistent: task \(task.entry.pid): \(what)")
      }
      guard let parent = byPid[task.entry.ppid] else {
        throw bad("it keeps mappings of a parent \(task.entry.ppid) the bundle does not hold")
      }
      for vma in task.memory.vmas {
        guard let kept = vma.parentPages else { continue }
        let name = "mapping \(hex(vma.start))-\(hex(vma.end))"
        guard let parentVMA = parentMapping(of: vma, in: parent.memory.vmas) else {
          throw bad("\(name) is kept from the parent, which has no like mapping around it")
        }
        let keptRanges = kept.map { $0.start..<$0.end }
        var end = vma.start
        for run in kept {
          guard run.start % 4096 == 0, run.end % 4096 == 0, run.start < run.end, run.start >= end, run.end <= vma.end
          else { throw bad("\(name) has a kept page run outside it") }
          end = run.end
        }
        guard SharedObjectPages.subtract(vma.pages.map { $0.start..<$0.end }, from: keptRanges) == keptRanges,
          SharedObjectPages.subtract(held(parentVMA), from: keptRanges).isEmpty
        else { throw bad("\(name) keeps pages it saved too or that its parent does not hold") }
      }
    }
  }

  /// A process that keeps its parent's mappings must be forked by that parent (or by a
  /// helper it forked).
  static func checkPlan(_ plan: TreePlan, tasks: [LoadedBundle.LoadedTask]) throws(CKError) {
    let sources = memorySources(plan)
    for task in tasks where task.memory.vmas.contains(where: { $0.parentPages != nil }) {
      guard sources[task.entry.pid] == task.entry.ppid else {
        throw CKError(
          .badInput,
          "the bundle is inconsistent: task \(task.entry.pid) keeps mappings of its parent \(task.entry.ppid) but is not created by it"
        )
      }
    }
  }

  /// The kept mappings of `image`: what a process forked from its restored parent keeps.
  static func keptRanges(_ image: MemoryImage) -> [AddressRange] {
    image.vmas.filter { $0.parentPages != nil }.map { AddressRange(start: $0.start, end: $0.end) }
  }

  /// The parent's pages in a kept mapping that the child holds neither as its own nor kept:
  /// dropped in the child (MADV_DONTNEED gives zeros, or the file's page for a file mapping).
  static func dropped(_ vma: VMAImage, parent: MemoryImage) -> [Range<UInt64>] {
    guard let parentVMA = parentMapping(of: vma, in: parent.vmas) else { return [] }
    let inside = held(parentVMA).compactMap { range -> Range<UInt64>? in
      let clipped = max(range.lowerBound, vma.start)..<min(range.upperBound, vma.end)
      return clipped.isEmpty ? nil : clipped
    }
    return SharedObjectPages.subtract(held(vma), from: inside)
  }
}
