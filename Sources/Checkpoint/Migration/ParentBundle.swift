import Bundle
import Foundation
import Glibc
import Linux
import Logging

/// Chains of bundles (`dump --pre-dump`, `dump --parent P`, what runc's `--pre-dump` and
/// `--parent-path` ask): a dump against a parent names the private anonymous pages that are
/// as they were in the parent (``VMAImage/precopiedPages``) instead of saving them, and its
/// manifest names the parent with its identity (``Manifest/parent``). Which pages are as
/// they were is found by comparing them with the parent's, the container frozen: no dirty
/// tracking has to live on between the two commands. The restore loads the parents first
/// (each in place, a chain of at most ``maximumDepth``) and merges their pages.
enum ParentBundle {
  static let maximumDepth = 16

  /// The pages of the bundle at `path`, its own parents merged, as a store; `identity`, when
  /// given, must be the bundle's.
  static func load(
    _ path: String, identity: String?, trust: SignatureTrust, depth: Int = 0, log: Logger
  ) throws -> (store: PreCopyStore, identity: String) {
    guard depth < maximumDepth else {
      throw CKError(.badInput, "the chain of parent bundles is longer than \(maximumDepth)")
    }
    guard let file = OwnedDescriptor(adoptingValid: open(path, O_RDONLY | O_CLOEXEC)) else {
      throw CKError(
        .badInput, "cannot open the parent bundle \(path): \(String(cString: strerror(errno)))",
        hint: "give its place with --parent")
    }
    let source = try MappedFileSource(fd: file.raw, name: path)
    let bundle = try LoadedBundle(
      source: source, pages: .inPlace, trust: trust,
      parents: { parent in
        try load(
          resolve(parent.path, besides: path), identity: parent.identity, trust: trust, depth: depth + 1, log: log
        )
        .store
      }, log: log)
    guard let found = bundle.identity, identity == nil || found == identity else {
      throw CKError(
        .badInput, "\(path) is not the parent bundle this one was dumped against (another identity)",
        hint: "give the right one with --parent")
    }
    let store = try PreCopyStore()
    store.borrow(bundle)
    log.debug("parent bundle \(path): \(bundle.tasks.count) processes")
    return (store, found)
  }

  /// Where a parent recorded as `recorded` lies: beside the bundle that names it when the
  /// path is relative.
  static func resolve(_ recorded: String, besides bundle: String) -> String {
    guard !recorded.hasPrefix("/") else { return recorded }
    return URL(fileURLWithPath: bundle).deletingLastPathComponent().appendingPathComponent(recorded).path
  }

  /// What a bundle written to `output` records of its parent at `path`: its name when both
  /// lie in one directory, else its absolute path.
  static func recordedPath(_ path: String, forOutput output: String) -> String {
    let parent = URL(fileURLWithPath: path).standardizedFileURL
    let child = URL(fileURLWithPath: output).standardizedFileURL
    return parent.deletingLastPathComponent() == child.deletingLastPathComponent()
      ? parent.lastPathComponent : parent.path
  }

  /// The runs of process `hostPid`'s saved private anonymous pages (it is frozen) that are
  /// byte for byte the parent's at the same place (`innerPid` in the parent).
  static func unchangedRuns(
    _ store: PreCopyStore, hostPid: Int32, innerPid: Int32, image: MemoryImage
  ) throws -> [AddressRange] {
    let pageSize = UInt64(PreCopyStore.pageSize)
    let chunkPages: UInt64 = 256
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Int(chunkPages * pageSize), alignment: 4096)
    defer { buffer.deallocate() }
    guard let base = buffer.baseAddress else { return [] }
    var runs: [AddressRange] = []
    for vma in image.vmas where vma.isPrivateAnonymous {
      for run in vma.pages {
        var start = run.start
        while start < run.end {
          let end = min(run.end, start + chunkPages * pageSize)
          let bytes = UnsafeMutableRawBufferPointer(rebasing: buffer[0..<Int(end - start)])
          guard
            (try? ProcessMemory.read(pid: hostPid, ranges: [AddressRange(start: start, end: end)], into: bytes))
              != nil
          else {
            start = end
            continue
          }
          for address in stride(from: start, to: end, by: Int(pageSize)) {
            guard let theirs = store.page(pid: innerPid, at: address),
              memcmp(base + Int(address - start), theirs, Int(pageSize)) == 0
            else { continue }
            if let last = runs.last, last.end == address {
              runs[runs.count - 1].end = address + pageSize
            } else {
              runs.append(AddressRange(start: address, end: address + pageSize))
            }
          }
          start = end
        }
      }
    }
    return runs
  }
}
