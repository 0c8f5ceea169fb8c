import Bundle
import Testing

@testable import Checkpoint

/// The pages of a shared memory object are kept once: by the first mapping of each part of
/// it, in bundle order, whatever the mappings' addresses and offsets.
struct SharedObjectPagesTests {
  func image(_ vmas: [VMAImage]) -> MemoryImage {
    MemoryImage(
      vmas: vmas,
      fields: MMFields(
        startCode: 0, endCode: 0, startData: 0, endData: 0, startBrk: 0, brk: 0, startStack: 0, argStart: 0, argEnd: 0,
        envStart: 0, envEnd: 0),
      auxv: [0, 0], exe: "/x", pagesSize: vmas.flatMap(\.pages).reduce(0) { $0 + $1.size })
  }

  func vma(
    _ start: UInt64, _ end: UInt64, offset: UInt64 = 0, object: UInt64 = 7, shared: Bool = true,
    pages: [(UInt64, UInt64)]
  )
    -> VMAImage
  {
    VMAImage(
      start: start, end: end, protection: 3, shared: shared, kind: .anonymous, path: "", offset: offset,
      growsDown: false,
      pages: pages.map { PageRun(start: $0.0, end: $0.1) }, pagesOffset: 0, sharedObject: object)
  }

  @Test func laterMappingsKeepOnlyWhatNoEarlierOneKept() {
    var pages = SharedObjectPages()
    // The first process maps the object's first 16 KiB at 0x10000 and holds pages 0-1 and 3.
    let first = pages.keepFirst(image([vma(0x10000, 0x14000, pages: [(0x10000, 0x12000), (0x13000, 0x14000)])]))
    #expect(first.vmas[0].pages == [PageRun(start: 0x10000, end: 0x12000), PageRun(start: 0x13000, end: 0x14000)])
    // The second maps object offsets 0x1000-0x5000 at 0x50000 (plus a private mapping, whose
    // pages always stay): of object pages 1-4 only 2 and 4 are new.
    let second = pages.keepFirst(
      image([
        vma(0x40000, 0x41000, object: 9, shared: false, pages: [(0x40000, 0x41000)]),
        vma(0x50000, 0x54000, offset: 0x1000, pages: [(0x50000, 0x54000)]),
      ]))
    #expect(second.vmas[0].pages == [PageRun(start: 0x40000, end: 0x41000)])
    #expect(second.vmas[1].pages == [PageRun(start: 0x51000, end: 0x52000), PageRun(start: 0x53000, end: 0x54000)])
    #expect(second.vmas[1].pagesOffset == 0x1000)
    #expect(second.pagesSize == 0x3000)
    // A third mapping of the whole object has nothing left to keep; another object is apart.
    let third = pages.keepFirst(
      image([
        vma(0x60000, 0x66000, pages: [(0x60000, 0x66000)]),
        vma(0x70000, 0x71000, object: 8, pages: [(0x70000, 0x71000)]),
      ]))
    #expect(third.vmas[0].pages == [PageRun(start: 0x65000, end: 0x66000)])
    #expect(third.vmas[1].pages == [PageRun(start: 0x70000, end: 0x71000)])
    #expect(third.vmas[1].pagesOffset == 0x1000)
  }
}
