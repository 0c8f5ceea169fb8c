import Bundle
import Foundation
import Glibc
import TestSupport
import Testing

/// Damaged, foreign and future bundles are refused with one clear line, exit status 2, before
/// anything is created: no cgroup, no task, and the bundle file unchanged.
@Suite(.serialized)
struct BadBundleTests {
  /// One real bundle, made once, from which the bad ones are derived.
  static let original: Result<[UInt8], TestFailure> = {
    do {
      let container = try FixtureContainer("counter")
      defer { container.destroy() }
      try container.waitReady()
      let dump = container.dump(["--leave-running"])
      guard dump.status == 0 else { return .failure(TestFailure("dump failed: \(dump.output)")) }
      return .success(Array(try Data(contentsOf: URL(fileURLWithPath: container.bundlePath))))
    } catch {
      return .failure(TestFailure("\(error)"))
    }
  }()

  @Test func truncatedAnywhereIsRefused() throws {
    let bytes = try Self.original.get()
    let cuts = [0, 1, 511, 512, 1000, 1536, bytes.count / 3, bytes.count / 2, bytes.count - 1025, bytes.count - 1]
    for cut in cuts {
      try expectRefused(Array(bytes.prefix(cut)), containing: cut == 0 ? "" : "", label: "truncated at \(cut)")
    }
  }

  @Test func aFlippedByteIsRefused() throws {
    let bytes = try Self.original.get()
    for offset in [100, 700, 2048, bytes.count / 2, bytes.count - 2000] {
      var damaged = bytes
      damaged[offset] ^= 0x40
      try expectRefused(damaged, containing: "", label: "byte \(offset) flipped")
    }
  }

  @Test func aNewerMajorVersionIsRefused() throws {
    let rewritten = try rewrite { $0.formatVersion.major = 2 }
    try expectRefused(rewritten, containing: "newer than this ckcont", label: "format 2")
  }

  /// A bundle that requires something this ckcont does not know (written by a newer one) is
  /// refused, not restored without it.
  @Test func anUnknownRequirementIsRefused() throws {
    let rewritten = try rewrite { $0.requires = ["seccomp-filters", "teleportation"] }
    try expectRefused(
      rewritten, containing: "the bundle needs \"teleportation\", which this ckcont does not know", label: "requires")
  }

  @Test func cpuFeaturesTheHostLacksAreRefused() throws {
    // Bits 5-7 are the AVX-512 state components, bit 17+18 AMX: claim them all.
    let rewritten = try rewrite { $0.cpu.xsaveFeatures |= 0x60000 | 0xe0 }
    try expectRefused(rewritten, containing: "this CPU does not offer", label: "cpu features")
  }

  @Test func somethingThatIsNotABundleIsRefused() throws {
    try expectRefused(Array("hello, world\n".utf8), containing: "", label: "text")
  }

  /// ipc.json is checked like every other member: a segment whose bytes do not match its
  /// size, or an id listed twice, is refused before anything is created.
  @Test func inconsistentSysVObjectsAreRefused() throws {
    func segment(_ id: Int32, size: UInt64) -> SysVSegmentImage {
      SysVSegmentImage(owner: SysVOwnership(id: id, key: 0, uid: 0, gid: 0, mode: 0o600), size: size, removed: false)
    }
    let cases: [(String, SysVIPCImage, [(String, [UInt8])])] = [
      (
        "short segment", SysVIPCImage(sharedMemory: [segment(5, size: 8192)], semaphoreSets: [], messageQueues: []),
        [("ipc/shm-5.img", [UInt8](repeating: 1, count: 4096))]
      ),
      (
        "repeated id",
        SysVIPCImage(
          sharedMemory: [segment(5, size: 4096), segment(5, size: 4096)], semaphoreSets: [], messageQueues: []),
        [("ipc/shm-5.img", [UInt8](repeating: 1, count: 4096))]
      ),
      (
        "empty semaphore set",
        SysVIPCImage(
          sharedMemory: [], semaphoreSets: [SysVSemaphoreSetImage(owner: segment(1, size: 1).owner, values: [])],
          messageQueues: []), []
      ),
    ]
    for (label, image, extra) in cases {
      let rewritten = try rewrite(adding: [("ipc.json", Array(try JSONEncoder().encode(image)))] + extra)
      try expectRefused(rewritten, containing: "ipc.json", label: label)
    }
  }

  /// mounts.json is checked before anything is mounted: a tmpfs file under a symlink (which
  /// could lead the restore's writes out of the tmpfs), a relative mount point, or a
  /// filesystem ckcont does not make are refused.
  @Test func unsafeMountsAreRefused() throws {
    func tmpfs(_ files: [MountFileImage], at point: String = "/tmp/ckcont-bad") -> MountsImage {
      MountsImage(mounts: [
        MountImage(
          kind: .filesystem, mountPoint: point, fsType: "tmpfs", source: "tmpfs", flags: 0, options: "", files: files)
      ])
    }
    let cases: [(String, MountsImage)] = [
      (
        "file under a symlink",
        tmpfs([
          MountFileImage(kind: .symlink, path: "etc", mode: 0o777, uid: 0, gid: 0, target: "/etc"),
          MountFileImage(kind: .file, path: "etc/passwd", mode: 0o644, uid: 0, gid: 0, contents: Data("x".utf8)),
        ])
      ),
      (
        "dot-dot path",
        tmpfs([MountFileImage(kind: .file, path: "../escape", mode: 0o644, uid: 0, gid: 0, contents: Data())])
      ),
      ("relative mount point", tmpfs([], at: "tmp/x")),
      ("dot-dot mount point", tmpfs([], at: "/tmp/../../etc")),
      (
        "dot-dot bind source",
        MountsImage(mounts: [
          MountImage(
            kind: .bind, mountPoint: "/mnt", fsType: "tmpfs", source: "/a/../../..", sourceInContainer: true, flags: 0,
            options: "")
        ])
      ),
      (
        "unknown filesystem",
        MountsImage(mounts: [
          MountImage(kind: .filesystem, mountPoint: "/mnt", fsType: "ext4", source: "/dev/vda", flags: 0, options: "")
        ])
      ),
    ]
    for (label, image) in cases {
      let rewritten = try rewrite(adding: [("mounts.json", Array(try JSONEncoder().encode(image)))])
      try expectRefused(rewritten, containing: "mounts.json", label: label)
    }
  }

  /// A mapping of a deleted file names where the restore creates a file: a path with `..`, a
  /// relative one, one without its device, or a private one without the file's contents is
  /// refused before anything is made.
  @Test func malformedDeletedFileMappingsAreRefused() throws {
    let reader = try BundleReader(source: MemorySource(try Self.original.get()))
    let member = try #require(reader.manifest.members.first { $0.name.hasSuffix("/mm.json") }).name
    func deleted(path: String, shared: Bool = true, device: UInt64? = 64) -> VMAImage {
      var vma = VMAImage(
        start: 0x10000, end: 0x11000, protection: 3, shared: shared, kind: .deletedFile, path: path, offset: 0,
        growsDown: false,
        pages: [], pagesOffset: 0, sharedObject: 12, objectSize: 4096)
      vma.objectDevice = device
      vma.objectMode = 0o600
      return vma
    }
    let malformed = "malformed mapping of a deleted file"
    for (label, vma, message) in [
      ("dot-dot path", deleted(path: "/dev/shm/../../etc/cron.d/x"), malformed),
      ("relative path", deleted(path: "tmp/x"), malformed),
      ("no device", deleted(path: "/tmp/x", device: nil), malformed),
      (
        "private without contents", deleted(path: "/tmp/x", shared: false),
        "maps /tmp/x privately at 10000 without its contents"
      ),
    ] {
      let rewritten = try rewrite(
        replacing: member,
        with: { bytes in
          var image = try MemoryImage.decodeJSON(bytes, member: member)
          image.vmas.insert(vma, at: 0)
          return Array(try image.encodedJSON())
        })
      try expectRefused(rewritten, containing: message, label: label)
    }
  }

  /// A user namespace whose id maps are missing, empty or past the 32-bit ids, or one without
  /// a pid namespace of the container's own, is refused before anything is made.
  @Test func implausibleUserNamespacesAreRefused() throws {
    let range = UserNamespaceMaps.Range(inside: 0, outside: 100_000, count: 65536)
    for (label, maps, pid) in [
      ("no maps", nil, true),
      ("empty uid map", UserNamespaceMaps(uids: [], gids: [range], setgroupsAllowed: true), true),
      (
        "gid map past 2^32",
        UserNamespaceMaps(
          uids: [range], gids: [.init(inside: 0, outside: 4_294_967_295, count: 2)], setgroupsAllowed: true), true
      ),
      ("host pid namespace", UserNamespaceMaps(uids: [range], gids: [range], setgroupsAllowed: true), false),
    ] {
      let rewritten = try rewrite(
        replacing: "tree.json",
        with: { bytes in
          var tree = try JSONDecoder().decode(ProcessTree.self, from: Data(bytes))
          tree.namespaces.user = true
          tree.namespaces.pid = pid
          tree.namespaces.userMaps = maps
          return Array(try JSONEncoder().encode(tree))
        })
      try expectRefused(
        rewritten, containing: "a user namespace without plausible id maps or a pid namespace", label: label)
    }
  }

  /// A process placed in a nested namespace the bundle does not hold, or in two of one kind,
  /// is refused before anything is made.
  @Test func inconsistentNestedNamespacesAreRefused() throws {
    for (label, images, indices) in [
      ("index out of range", [NestedNamespaceImage(kind: .uts, hostname: "x")], [3]),
      ("two of one kind", [NestedNamespaceImage(kind: .net), NestedNamespaceImage(kind: .net)], [0, 1]),
      ("long hostname", [NestedNamespaceImage(kind: .uts, hostname: String(repeating: "h", count: 65))], [0]),
    ] {
      let rewritten = try rewrite(
        replacing: "tree.json",
        with: { bytes in
          var tree = try JSONDecoder().decode(ProcessTree.self, from: Data(bytes))
          tree.nestedNamespaces = images
          tree.tasks[0].nestedNamespaces = indices
          return Array(try JSONEncoder().encode(tree))
        })
      try expectRefused(rewritten, containing: "the bundle is inconsistent: its nested namespaces", label: label)
    }
  }

  /// A thread's own scheduling or I/O priority the kernel would not take is refused before
  /// anything is made.
  @Test func implausibleThreadSettingsAreRefused() throws {
    let reader = try BundleReader(source: MemorySource(try Self.original.get()))
    let member = try #require(reader.manifest.members.first { $0.name.hasSuffix("/core.json") }).name
    let cases: [(String, (inout ThreadCore) -> Void, String)] = [
      (
        "nice 40", { $0.scheduling = SchedulingImage(nice: 40, policy: 0, realtimePriority: 0) },
        "bad scheduling of a thread"
      ),
      (
        "realtime without priority", { $0.scheduling = SchedulingImage(nice: 0, policy: 1, realtimePriority: 0) },
        "bad scheduling of a thread"
      ),
      ("I/O class 5", { $0.ioPriority = 5 << 13 }, "bad I/O priority of a thread"),
    ]
    for (label, edit, message) in cases {
      let rewritten = try rewrite(
        replacing: member,
        with: { bytes in
          var core = try TaskCore.decodeJSON(bytes, member: member)
          edit(&core.threads[0])
          return Array(try JSONEncoder().encode(core))
        })
      try expectRefused(rewritten, containing: message, label: label)
    }
  }

  /// A descriptor in flight must be one the bundle holds: a reference to a descriptor of a
  /// process that does not hold it is refused before anything is made.
  @Test func descriptorsInFlightThatNoProcessHoldsAreRefused() throws {
    let reader = try BundleReader(source: MemorySource(try Self.original.get()))
    let member = try #require(reader.manifest.members.first { $0.name.hasSuffix("/files.json") }).name
    let rewritten = try rewrite(
      replacing: member,
      with: { bytes in
        var table = try JSONDecoder().decode(FileTableImage.self, from: Data(bytes))
        let pid = try #require(
          reader.manifest.members.first { $0.name.hasSuffix("/files.json") }?.name.split(separator: "/").dropFirst()
            .first)
        func end(_ fd: Int32, inode: UInt64, peer: UInt64, passed: [PassedDescriptors]?) -> DescriptorImage {
          var socket = SocketImage(
            family: 1, type: 5, protocolNumber: 0, address: nil, peer: nil, backlog: nil, options: [], inode: inode,
            peerInode: peer)
          socket.messages = passed == nil ? nil : [Data("m".utf8)]
          socket.passed = passed
          var descriptor = DescriptorImage(fd: fd, kind: .socket, flags: 2, closeOnExec: false)
          descriptor.socket = socket
          return descriptor
        }
        let missing = DescriptorReference(pid: Int32(pid) ?? 1, fd: 900)
        table.descriptors += [
          end(90, inode: 1_000_001, peer: 1_000_002, passed: [PassedDescriptors(at: 0, descriptors: [missing])]),
          end(91, inode: 1_000_002, peer: 1_000_001, passed: nil),
        ]
        return Array(try JSONEncoder().encode(table))
      })
    try expectRefused(rewritten, containing: "holds in flight fd 900 of process", label: "missing in-flight descriptor")
  }

  /// A deleted file whose bytes the model says are in a member: that member missing, of
  /// another length, or named outside `kept/`, is refused before anything is made.
  @Test func deletedFileBytesMissingFromTheirMemberAreRefused() throws {
    let reader = try BundleReader(source: MemorySource(try Self.original.get()))
    let member = try #require(reader.manifest.members.first { $0.name.hasSuffix("/files.json") }).name
    func withGhost(_ name: String, length: Int64) throws -> ([UInt8]) throws -> [UInt8] {
      { bytes in
        var table = try JSONDecoder().decode(FileTableImage.self, from: Data(bytes))
        var ghost = GhostFileImage(inode: 4242, contents: Data())
        (ghost.size, ghost.dataMember) = (length, name)
        var descriptor = DescriptorImage(fd: 95, kind: .deleted, flags: 2, closeOnExec: false)
        (descriptor.path, descriptor.ghost) = ("/tmp/ckcont-bad-ghost", ghost)
        table.descriptors.append(descriptor)
        return Array(try JSONEncoder().encode(table))
      }
    }
    let name = KeptFiles.dataMember(device: 1, inode: 4242)
    let missing = try rewrite(replacing: member, with: withGhost(name, length: 3 << 20))
    try expectRefused(missing, containing: "which the bundle does not hold at that size", label: "missing member")
    let short = try rewrite(
      adding: [(name, [UInt8](repeating: 7, count: 1 << 20))], replacing: member, with: withGhost(name, length: 3 << 20)
    )
    try expectRefused(short, containing: "which the bundle does not hold at that size", label: "short member")
    let outside = try rewrite(replacing: member, with: withGhost("tasks/1/pages.img", length: 3 << 20))
    try expectRefused(outside, containing: "", label: "a member outside kept/")
  }

  /// A cgroup path that climbs out of the container's cgroup with ".." is refused before any
  /// cgroup is made.
  @Test func cgroupPathsOutOfTheContainersCgroupAreRefused() throws {
    for path in ["../../escape", "a/../../b", "."] {
      let rewritten = try rewrite(
        replacing: "cgroups.json",
        with: { bytes in
          var tree = try JSONDecoder().decode(CgroupTreeImage.self, from: Data(bytes))
          tree.hierarchies[0].groups.append(CgroupGroupImage(path: path, settings: []))
          return Array(try JSONEncoder().encode(tree))
        })
      try expectRefused(rewritten, containing: "cgroups", label: "cgroup path \(path)")
    }
  }

  /// Found by the bundle fuzzer: a refusal that quotes a bundle's string holding a newline
  /// (a cgroup root here) is still one line.
  @Test func aRefusalQuotingANewlineIsStillOneLine() throws {
    let rewritten = try rewrite(
      replacing: "cgroups.json",
      with: { bytes in
        var tree = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        var hierarchies = try #require(tree["hierarchies"] as? [[String: Any]])
        hierarchies[0]["root"] = "/ckcont-bad/../..\nckcont: forged second line"
        tree["hierarchies"] = hierarchies
        return Array(try JSONSerialization.data(withJSONObject: tree))
      })
    try expectRefused(rewritten, containing: "\\u{a}ckcont: forged second line", label: "a newline in a cgroup root")
  }

  /// Writes `bytes` to a file, restores it into a fresh cgroup path, and checks the refusal.
  func expectRefused(_ bytes: [UInt8], containing message: String, label: String) throws {
    let path = NSTemporaryDirectory() + "ckcont-bad-\(UUID().uuidString).ckpt"
    try Data(bytes).write(to: URL(fileURLWithPath: path))
    defer { try? FileManager.default.removeItem(atPath: path) }
    let cgroup = "/sys/fs/cgroup/unified/ckcont-test-bad-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
    let result = run([TestPaths.ckcont, "restore", path, "--cgroup", cgroup])
    #expect(result.status == 2, "\(label): \(result.output)")
    #expect(result.stderr.hasPrefix("ckcont: error: "), "\(label): \(result.stderr)")
    #expect(result.stderr.split(separator: "\n").count == 1, "\(label): \(result.stderr)")
    #expect(message.isEmpty || result.stderr.contains(message), "\(label): \(result.stderr)")
    #expect(result.stdout.isEmpty)
    #expect(!FileManager.default.fileExists(atPath: cgroup), "\(label): restore created \(cgroup)")
    #expect(Array(try Data(contentsOf: URL(fileURLWithPath: path))) == bytes, "\(label): the bundle changed")
  }

  /// The original bundle, edited (see ``rewriteBundle(_:adding:_:replacing:with:)``).
  func rewrite(
    adding extra: [(String, [UInt8])] = [], _ edit: (inout Manifest) -> Void = { _ in },
    replacing replaced: String? = nil,
    with replace: ([UInt8]) throws -> [UInt8] = { $0 }
  ) throws -> [UInt8] {
    try rewriteBundle(try Self.original.get(), adding: extra, edit, replacing: replaced, with: replace)
  }
}
