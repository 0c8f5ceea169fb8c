import Bundle

/// Keeps the pages of each shared memory object (shared anonymous memory, a memfd or a
/// deleted file mapped shared) in one place in the bundle. Every process mapping the object finds the same pages
/// in it (``MemoryCapture`` reads them from the object, not from its page tables): the first
/// mapping, in bundle order, of each part of the object keeps them, and later mappings of
/// that part drop theirs. At restore each mapping that has pages writes them through its own
/// view of the one object, whichever process made it.
struct SharedObjectPages {
  /// Per object, the ranges of it (offsets in the object) whose pages are kept,
  /// sorted and coalesced.
  private var kept: [ObjectKey: [Range<UInt64>]] = [:]

  /// `image` without the pages of object ranges kept by an earlier mapping, offsets and size
  /// recomputed; what is left is kept from now on.
  mutating func keepFirst(_ image: MemoryImage) -> MemoryImage {
    var image = image
    var changed = false
    for index in image.vmas.indices {
      let vma = image.vmas[index]
      guard vma.shared, let object = vma.objectKey, !vma.pages.isEmpty else {
        continue
      }
      let wanted = vma.pages.map { vma.offset + ($0.start - vma.start)..<vma.offset + ($0.end - vma.start) }
      let before = kept[object, default: []]
      let left = Self.subtract(before, from: wanted)
      if !left.isEmpty { kept[object] = Self.union(before, left) }
      if left != wanted {
        image.vmas[index].pages = left.map {
          PageRun(start: vma.start + ($0.lowerBound - vma.offset), end: vma.start + ($0.upperBound - vma.offset))
        }
        changed = true
      }
    }
    if changed { image.renumberPages() }
    return image
  }

  /// The parts of `ranges` (sorted, disjoint) that `cuts` (sorted, disjoint) does not cover,
  /// in order: one pass over both.
  static func subtract(_ cuts: [Range<UInt64>], from ranges: [Range<UInt64>]) -> [Range<UInt64>] {
    var left: [Range<UInt64>] = []
    var next = 0
    for range in ranges {
      var start = range.lowerBound
      while next < cuts.count && cuts[next].upperBound <= start { next += 1 }
      var index = next
      while start < range.upperBound {
        guard index < cuts.count, cuts[index].lowerBound < range.upperBound else {
          left.append(start..<range.upperBound)
          break
        }
        if cuts[index].lowerBound > start { left.append(start..<cuts[index].lowerBound) }
        start = max(start, cuts[index].upperBound)
        index += 1
      }
    }
    return left
  }

  /// `a` and `b` (each sorted and disjoint) merged, sorted and coalesced.
  static func union(_ a: [Range<UInt64>], _ b: [Range<UInt64>]) -> [Range<UInt64>] {
    var merged: [Range<UInt64>] = []
    for range in (a + b).sorted(by: { $0.lowerBound < $1.lowerBound }) {
      if let last = merged.last, range.lowerBound <= last.upperBound {
        merged[merged.count - 1] = last.lowerBound..<max(last.upperBound, range.upperBound)
      } else {
        merged.append(range)
      }
    }
    return merged
  }
}
