import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// The mounts a container added to its own mount namespace, dumped and made again in the new
/// one (which starts as a copy of ckcont's, as the container's started as a copy of the
/// host's).
///
/// Dump: every mount in the container's mountinfo that ckcont's own does not hold (same
/// mount point, device, root and type) is one of three things. A view of something ckcont
/// sees too (a bind mount of a host path, or of an earlier mount of the container) is saved
/// as a bind mount of that path. A new tmpfs or ramfs is saved with its options and files,
/// read through /proc/<pid>/root (which resolves paths in the container's namespace). A new
/// virtual filesystem (proc, sysfs, mqueue, devpts, cgroup...) is saved with its options.
/// Anything else is refused, naming the mount.
/// A container with a root filesystem of its own (pivot_root, as runc and crun make them)
/// sees none of the host's mounts: then every mount it has is saved, the root first, and
/// bind sources inside the container are paths under its root.
/// Restore, in the root task by remote calls before any other process exists: the namespace
/// is made private (no mount may propagate to the host), then each mount is made, parents
/// first, and a tmpfs gets its files from ckcont through /proc/<pid>/root. A root of its own
/// is mounted on a directory ckcont makes for the purpose, the rest under it, and then the
/// task pivots into it and detaches the old root, as runc does.
enum ContainerMounts {
  /// Filesystems with no backing store: made anew, empty, with their options.
  static let virtualFileSystems: Set<String> = [
    "proc", "sysfs", "mqueue", "devpts", "cgroup", "cgroup2", "bpf", "tracefs", "debugfs", "securityfs", "hugetlbfs",
    "configfs", "fusectl", "binfmt_misc", "pstore",
  ]
  /// Filesystems whose files live only in memory: saved with their files.
  static let memoryFileSystems: Set<String> = ["tmpfs", "ramfs"]
  /// The most bytes of files saved per tmpfs.
  static let maxFileBytes = 64 << 20
  static let maxFiles = 100_000

  // MARK: Dump

  /// The mount ids of the container's mount namespace when it has a root filesystem of its
  /// own, nil when it shares the host's: a file on no mount of these lies outside its root
  /// (see ``DescriptorImage/outsideRoot``).
  static func ownRootMounts(pid: Int32) throws -> Set<Int>? {
    let container = try MountInfo.read(pid: "\(pid)")
    guard try hasOwnRoot(container, host: MountInfo.read()) else { return nil }
    return Set(container.map(\.mountID))
  }

  /// Whether the container's root is a mount the host's namespace does not have.
  private static func hasOwnRoot(_ container: [MountInfoEntry], host: [MountInfoEntry]) -> Bool {
    let hostKeys = Set(host.map(key))
    return container.contains { $0.mountPoint == "/" && !hostKeys.contains(key($0)) }
  }

  /// The mounts of `pid`'s namespace beyond the host's; with `base` (the container's init),
  /// those of a nested mount namespace beyond the container's (``NestedNamespaces``), whose
  /// bind sources are the container's paths.
  static func capture(pid: Int32, base: Int32? = nil) throws -> MountsImage {
    let ckconts = try MountInfo.read()
    var container = try MountInfo.read(pid: "\(pid)")
    let reference = try base.map { try MountInfo.read(pid: "\($0)") } ?? ckconts
    // What a nested namespace binds from ckcont's view must be visible in the container's.
    let hostVisible = base == nil || !hasOwnRoot(reference, host: ckconts)
    let ownRoot = hasOwnRoot(container, host: reference)
    if ownRoot, let base {
      throw CKError(
        .failed,
        "process \(pid) is in a mount namespace of its own with a root of its own (not that of the container's init \(base)), which ckcont cannot checkpoint yet"
      )
    }
    // Under a root of its own every mount is the container's: none of the host's is there.
    // The root comes first (a pivot_root leaves the old root's mounts listed before it).
    let hostKeys = ownRoot ? [] : Set(reference.map(key))
    if ownRoot {
      let roots = container.filter { $0.mountPoint == "/" }
      guard roots.count == 1 else {
        throw CKError(.failed, "the container has mounts stacked on its root, which ckcont cannot checkpoint yet")
      }
      container = roots + container.filter { $0.mountPoint != "/" }
    }
    let capture = MountCapture(
      pid: pid, owner: base == nil ? "the container's" : "process \(pid)'s", host: hostVisible ? ckconts : [],
      // Peer groups of ckcont's namespace are the host's business: the container's mounts
      // come back private from them.
      hostGroups: Set(ckconts.flatMap { peerGroups(of: $0) }),
      byID: Dictionary(container.map { ($0.mountID, $0) }) { first, _ in first })
    // A nested namespace's bind sources: first what the container's namespace shows.
    var added: [MountInfoEntry] = base == nil ? [] : reference
    var images: [MountImage] = []
    var kept: [MountInfoEntry] = []
    for mount in container where !hostKeys.contains(key(mount)) {
      if !capture.isPropagatedCopy(mount, of: kept) {
        kept.append(mount)
        images.append(try capture.image(of: mount, added: added))
      }
      added.append(mount)
    }
    return MountsImage(mounts: images)
  }

  /// What capturing the mounts of one namespace needs to know besides the mount at hand.
  private struct MountCapture {
    let pid: Int32
    /// Whose mounts, for errors: the container's or a process's.
    let owner: String
    /// The host's mounts the container can see, for bind sources.
    let host: [MountInfoEntry]
    let hostGroups: Set<Int>
    let byID: [Int: MountInfoEntry]

    /// The container's own peer groups a mount shares mounts with (`shared:`) or receives
    /// them from (`master:`).
    func groups(_ mount: MountInfoEntry?, _ kinds: [String]) -> Set<Int> {
      Set(
        (mount?.optionalFields ?? []).compactMap { field -> Int? in
          let parts = field.split(separator: ":")
          guard parts.count == 2, kinds.contains(String(parts[0])), let group = Int(parts[1]),
            !hostGroups.contains(group)
          else { return nil }
          return group
        })
    }

    /// Where a mount sits below its parent's mount point.
    func below(_ mount: MountInfoEntry) -> String {
      let parent = byID[mount.parentID]?.mountPoint ?? "/"
      return parent == "/" ? mount.mountPoint : String(mount.mountPoint.dropFirst(parent.count))
    }

    /// A copy that propagation made under a peer of an earlier mount's parent comes back by
    /// propagation when that mount is made: made again, it would be there twice. (Under a
    /// peer of the parent, or under a slave of the parent's group.)
    func isPropagatedCopy(_ mount: MountInfoEntry, of kept: [MountInfoEntry]) -> Bool {
      let receives = groups(byID[mount.parentID], ["shared", "master"])
      return !receives.isEmpty
        && kept.contains(where: { other in
          other.parentID != mount.parentID && !groups(byID[other.parentID], ["shared"]).isDisjoint(with: receives)
            && below(other) == below(mount) && other.major == mount.major && other.minor == mount.minor
            && other.root == mount.root
        })
    }

    /// How `mount` is made again: a bind of a path the container or ckcont sees, or a new
    /// filesystem (with its files, for one in memory); with its peer groups.
    func image(of mount: MountInfoEntry, added: [MountInfoEntry]) throws -> MountImage {
      let flags = ContainerMounts.mountFlags(mount.mountOptions)
      let name =
        mount.mountPoint == "/"
        ? "root filesystem (\(mount.fsType) from \(mount.source))"
        : "mount \(mount.mountPoint) (\(mount.fsType) from \(mount.source))"
      var image: MountImage
      if let source = ContainerMounts.bindSource(of: mount, in: added) {
        image = MountImage(
          kind: .bind, mountPoint: mount.mountPoint, fsType: mount.fsType, source: source, sourceInContainer: true,
          flags: flags, options: "")
      } else if let source = ContainerMounts.bindSource(of: mount, in: host) {
        image = MountImage(
          kind: .bind, mountPoint: mount.mountPoint, fsType: mount.fsType, source: source, flags: flags, options: "")
      } else if ContainerMounts.memoryFileSystems.contains(mount.fsType)
        || ContainerMounts.virtualFileSystems.contains(mount.fsType)
      {
        let files =
          ContainerMounts.memoryFileSystems.contains(mount.fsType)
          ? try ContainerMounts.readFiles(of: mount, pid: pid, name: "\(owner) \(name)") : nil
        image = MountImage(
          kind: .filesystem, mountPoint: mount.mountPoint, fsType: mount.fsType, source: mount.source, flags: flags,
          options: mount.superOptions.filter { $0 != "rw" && $0 != "ro" }.joined(separator: ","), files: files)
      } else {
        throw CKError(
          .failed,
          "\(owner) \(name) cannot be checkpointed yet: it is no view of a path ckcont sees, nor a filesystem ckcont can make again",
          hint: mount.mountPoint == "/"
            ? "mount the root filesystem on the host too (as podman mounts an overlay), then run the container on that"
            : "bind-mount it from the host instead")
      }
      let groups = Dictionary(
        uniqueKeysWithValues: mount.optionalFields.compactMap { field -> (String, Int)? in
          let parts = field.split(separator: ":")
          guard parts.count == 2, let group = Int(parts[1]), !hostGroups.contains(group) else { return nil }
          return (String(parts[0]), group)
        })
      image.sharedGroup = groups["shared"]
      image.masterGroup = groups["master"]
      image.unbindable = mount.optionalFields.contains("unbindable") ? true : nil
      return image
    }
  }

  /// The peer groups a mount is in or receives from (`shared:N`, `master:N`).
  private static func peerGroups(of mount: MountInfoEntry) -> [Int] {
    mount.optionalFields.compactMap { field in
      let parts = field.split(separator: ":")
      return parts.count == 2 && (parts[0] == "shared" || parts[0] == "master") ? Int(parts[1]) : nil
    }
  }

  /// What makes a mount the same as one of ckcont's. The root of a cgroup mount is left out:
  /// in a cgroup namespace it shows relative to the namespace's own root.
  private static func key(_ mount: MountInfoEntry) -> String {
    let root = mount.fsType.hasPrefix("cgroup") ? "" : mount.root
    return "\(mount.mountPoint)\u{0}\(mount.major):\(mount.minor)\u{0}\(root)\u{0}\(mount.fsType)"
  }

  /// A path showing what `mount` shows: a mount of the same device whose root holds this one's.
  private static func bindSource(of mount: MountInfoEntry, in mounts: [MountInfoEntry]) -> String? {
    let candidates = mounts.filter { other in
      other.major == mount.major && other.minor == mount.minor && other.fsType == mount.fsType
        && (other.root == "/" || mount.root == other.root || mount.root.hasPrefix(other.root + "/"))
    }
    guard let best = candidates.max(by: { $0.root.count < $1.root.count }) else { return nil }
    let rest = best.root == "/" ? String(mount.root.dropFirst()) : String(mount.root.dropFirst(best.root.count + 1))
    if rest.isEmpty { return best.mountPoint }
    return (best.mountPoint == "/" ? "" : best.mountPoint) + "/" + rest
  }

  /// The mount flags a mount image may carry: those of ``mountFlags(_:)``.
  static let knownFlags: UInt64 = 0x0120_0c0f

  static func mountFlags(_ options: [String]) -> UInt64 {
    let known: [String: UInt64] = [
      "ro": 1, "nosuid": 2, "nodev": 4, "noexec": 8, "noatime": 1024, "nodiratime": 2048, "relatime": 1 << 21,
      "strictatime": 1 << 24,
    ]
    return options.reduce(0) { $0 | (known[$1] ?? 0) }
  }

  /// The files of a tmpfs, parents first, through the container's root; submounts are
  /// left out (they are mounts of their own).
  private static func readFiles(of mount: MountInfoEntry, pid: Int32, name: String) throws -> [MountFileImage] {
    let top = "/proc/\(pid)/root" + (mount.mountPoint == "/" ? "" : mount.mountPoint)
    var topStat = stat()
    guard lstat(top, &topStat) == 0 else {
      throw CKError(.failed, "\(name) cannot be read: \(String(cString: strerror(errno)))")
    }
    var files: [MountFileImage] = []
    var bytes = 0
    /// Files with more than one name: inode -> the first name seen.
    var linked: [UInt64: String] = [:]
    func walk(_ relative: String) throws {
      let directory = relative.isEmpty ? top : top + "/" + relative
      guard let stream = opendir(directory) else {
        throw CKError(
          .failed, "\(name): cannot list \(relative.isEmpty ? "/" : relative): \(String(cString: strerror(errno)))")
      }
      var names: [String] = []
      while let entry = readdir(stream) {
        let entryName = withUnsafeBytes(of: entry.pointee.d_name) {
          String(decoding: $0.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        if entryName != "." && entryName != ".." { names.append(entryName) }
      }
      closedir(stream)
      for entryName in names.sorted() {
        let path = relative.isEmpty ? entryName : relative + "/" + entryName
        let full = top + "/" + path
        var st = stat()
        guard lstat(full, &st) == 0 else { continue }
        guard st.st_dev == topStat.st_dev else { continue }
        guard files.count < maxFiles else { throw CKError(.failed, "\(name) holds more than \(maxFiles) files") }
        let (mode, uid, gid) = (UInt32(st.st_mode & 0o7777), st.st_uid, st.st_gid)
        switch st.st_mode & S_IFMT {
        case S_IFDIR:
          files.append(MountFileImage(kind: .directory, path: path, mode: mode, uid: uid, gid: gid))
          try walk(path)
        case S_IFREG where st.st_nlink > 1 && linked[UInt64(st.st_ino)] != nil:
          files.append(
            MountFileImage(
              kind: .hardLink, path: path, mode: mode, uid: uid, gid: gid, target: linked[UInt64(st.st_ino)]))
        case S_IFIFO:
          files.append(MountFileImage(kind: .fifo, path: path, mode: mode, uid: uid, gid: gid))
        case S_IFREG:
          if st.st_nlink > 1 { linked[UInt64(st.st_ino)] = path }
          bytes += Int(st.st_size)
          guard bytes <= maxFileBytes else {
            throw CKError(
              .failed, "\(name) holds more than \(maxFileBytes >> 20) MiB of files, which ckcont does not save yet")
          }
          guard let contents = FileManager.default.contents(atPath: full) else {
            throw CKError(.failed, "\(name): cannot read \(path)")
          }
          files.append(MountFileImage(kind: .file, path: path, mode: mode, uid: uid, gid: gid, contents: contents))
        case S_IFLNK:
          let target = try readLink(full)
          files.append(MountFileImage(kind: .symlink, path: path, mode: mode, uid: uid, gid: gid, target: target))
        case S_IFCHR, S_IFBLK:
          files.append(
            MountFileImage(
              kind: st.st_mode & S_IFMT == S_IFCHR ? .characterDevice : .blockDevice, path: path, mode: mode, uid: uid,
              gid: gid,
              device: UInt64(st.st_rdev)))
        case S_IFSOCK:
          // A listener's socket file: made again when the socket is bound.
          continue
        default:
          throw CKError(.failed, "\(name) holds \(path), of a kind of file ckcont cannot save")
        }
      }
    }
    try walk("")
    return files
  }

  // MARK: Restore

  /// Makes the mounts in the new mount namespace of the root task behind `injector`, whose
  /// host pid is `pid`. A root of its own is a bind of `rootSource` when given (`--root`).
  /// `userMaps`: those of the container's own user namespace, whose ids (`uid=`, `gid=`
  /// options) the mounts are made with. `cgroupMoves`: the container's cgroups that moved
  /// (``TargetCgroups/moves``): a bind of one of them binds where it went. `sources`: what
  /// binds from the host at a mount point bind instead (`--mount-source`). Returns the binds
  /// of terminals not made yet (``bindLater(_:injector:pid:)``); a nested namespace has none
  /// to bind later (its console is its container's). Long by nature: the tree is made in
  /// one pass in mount order, each kind of mount a few lines sharing the made mounts' table.
  @discardableResult
  static func restore(
    _ image: MountsImage, injector: Injector, pid: Int32, rootSource: String?, userMaps: UserNamespaceMaps?,
    cgroupMoves: [(from: String, to: String)] = [], sources: [String: String] = [:]
  ) throws -> [MountImage] {
    guard !image.mounts.isEmpty else { return [] }
    var later: [MountImage] = []
    injector.resetData()
    let slash = try injector.put(string: "/")
    // MS_REC | MS_PRIVATE: nothing mounted from here on may reach the host's namespace.
    try injector.call(
      .mount(source: 0, target: slash, flags: UInt64(MS_REC | MS_PRIVATE)), "make the mount namespace private")
    // The new root's mount point: a directory of ckcont's, mounted on only in the task's
    // private namespace, and gone once the task has pivoted.
    var staging: String?
    if image.hasOwnRoot {
      var template = Array((NSTemporaryDirectory() + "ckcont-root.XXXXXX").utf8CString)
      guard let made = mkdtemp(&template) else {
        throw CKError(.failed, "cannot make a directory for the container's root: \(String(cString: strerror(errno)))")
      }
      staging = String(cString: made)
    }
    defer { if let staging { rmdir(staging) } }
    let top = staging ?? ""
    // What ckcont makes in a filesystem of a user namespace (mount points, a tmpfs's files)
    // must be owned by an id the namespace maps: made as its root (see ck_set_fs_ids).
    if let maps = userMaps {
      let uid = maps.uids.first { $0.inside == 0 }?.outside ?? maps.uids[0].outside
      let gid = maps.gids.first { $0.inside == 0 }?.outside ?? maps.gids[0].outside
      try negErrnoChecked("setfsuid/setfsgid", "\(uid)/\(gid)") { ck_set_fs_ids(uid, gid) }
    }
    defer { if userMaps != nil { _ = ck_set_fs_ids(0, 0) } }
    // A proc of a nested pid namespace is its init's to mount, once it exists.
    var mounts = image.mounts.filter { $0.pidNamespaceInit == nil }[...]
    let view = "/proc/\(pid)/root"
    var rootFiles: [MountFileImage]?
    if let staging, let first = mounts.first, first.mountPoint == "/" {
      // The root itself, on ckcont's own directory: no path of the bundle's to resolve.
      mounts = mounts.dropFirst()
      injector.resetData()
      let target = try injector.put(string: staging)
      switch first.kind {
      case .bind:
        try bind(sources["/"] ?? rootSource ?? first.source, at: target, flags: first.flags, point: "/", injector)
      case .filesystem:
        try mountFilesystem(first, at: staging, injector: injector, userMaps: userMaps)
        rootFiles = first.files
      }
    }
    // Every other path is the bundle's: resolved in the container's root (the task's own
    // when it has none), never through a symlink out of it (see ``RootedDirectory``).
    let root = try RootedDirectory(view + top, name: "the container's root")
    if let rootFiles { try writeFiles(rootFiles, in: root, mountPoint: "/") }
    for mount in mounts {
      if mount.kind == .bind, mount.sourceInContainer == true, mount.source.hasPrefix("/dev/pts/"),
        root.fileType(mount.source) == nil
      {
        // A terminal of the container's devpts (its /dev/console): bound once made.
        later.append(mount)
        continue
      }
      let source =
        mount.kind == .bind
        ? try bindSource(of: mount, in: root, top: top, cgroupMoves: cgroupMoves, sources: sources) : nil
      try makeMountPoint(for: mount, in: root, bindingFrom: source.map { view + $0 })
      let point = top + (try root.canonical(mount.mountPoint))
      injector.resetData()
      let target = try injector.put(string: point)
      switch mount.kind {
      case .bind:
        try bind(source ?? mount.source, at: target, flags: mount.flags, point: mount.mountPoint, injector)
      case .filesystem:
        try mountFilesystem(mount, at: point, injector: injector, userMaps: userMaps)
        if let files = mount.files {
          let made = try root.directory(mount.mountPoint, name: mount.mountPoint)
          try writeFiles(files, in: made, mountPoint: mount.mountPoint)
        }
        continue
      }
      try propagate(mount, at: target, injector: injector)
    }
    if let staging { try pivot(injector, into: staging) }
    return later
  }

  /// Binds `source` at `target` (a path put in the injector's data area) from the task, then
  /// gives the new mount `flags`: MS_REMOUNT | MS_BIND sets a bind mount's flags on the
  /// mount itself.
  private static func bind(_ source: String, at target: UInt64, flags: UInt64, point: String, _ injector: Injector)
    throws
  {
    let from = try injector.put(string: source)
    try injector.call(.mount(source: from, target: target, flags: UInt64(MS_BIND)), "bind-mount \(source) at \(point)")
    if flags != 0 {
      try injector.call(
        .mount(source: 0, target: target, flags: UInt64(MS_REMOUNT | MS_BIND) | flags),
        "remount \(point) with its flags")
    }
  }

  /// Where a bind of `mount` binds from, as the task names it before it pivots: a path of
  /// the container's (resolved in its root), what `--mount-source` gave, a cgroup that
  /// moved, or the host's path.
  private static func bindSource(
    of mount: MountImage, in root: borrowing RootedDirectory, top: String, cgroupMoves: [(from: String, to: String)],
    sources: [String: String]
  ) throws -> String {
    if mount.sourceInContainer == true { return top + (try root.canonical(mount.source)) }
    if let given = sources[mount.mountPoint] { return given }
    if mount.fsType.hasPrefix("cgroup"),
      let move = cgroupMoves.first(where: { mount.source == $0.from || mount.source.hasPrefix($0.from + "/") })
    {
      return move.to + mount.source.dropFirst(move.from.count)
    }
    return mount.source
  }

  /// Makes `mount`'s mount point when the root lacks it (a runtime's new rootfs may lack the
  /// /run it made for it; the container usually made it on a filesystem both see): a file
  /// when a file is bound there (`source`, as ckcont sees it), with its directories, else a
  /// directory.
  private static func makeMountPoint(
    for mount: MountImage, in root: borrowing RootedDirectory, bindingFrom source: String?
  )
    throws
  {
    guard root.fileType(mount.mountPoint) == nil else { return }
    var st = stat()
    guard let source, stat(source, &st) == 0, st.st_mode & S_IFMT != S_IFDIR else {
      try root.makeDirectories(mount.mountPoint)
      return
    }
    try root.makeDirectories(String(mount.mountPoint.split(separator: "/").dropLast().joined(separator: "/")))
    try root.withParent(of: mount.mountPoint) { directory, entry in
      let made = try OwnedDescriptor("openat", "\(mount.mountPoint) in \(root.name)") {
        openat(directory, entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
      }
      _ = made
    }
  }

  /// Mounts a new filesystem of `mount`'s type and options at `point`, from the task behind
  /// `injector`, and gives it its propagation.
  /// The binds ``restore(_:injector:pid:rootSource:userMaps:cgroupMoves:sources:)`` left for
  /// later (terminals of the container's devpts, once ``Terminals`` made them), in the
  /// container's root (the task has pivoted): its paths as the container names them.
  static func bindLater(_ mounts: [MountImage], injector: Injector, pid: Int32) throws {
    let root = try RootedDirectory("/proc/\(pid)/root", name: "the container's root")
    for mount in mounts where root.fileType(mount.mountPoint) == nil {
      try root.withParent(of: mount.mountPoint) { directory, entry in
        let made = openat(directory, entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o644)
        if made >= 0 { close(made) }
      }
    }
    for mount in mounts {
      injector.resetData()
      let target = try injector.put(string: mount.mountPoint)
      try bind(mount.source, at: target, flags: mount.flags, point: mount.mountPoint, injector)
      try propagate(mount, at: target, injector: injector)
    }
  }

  static func mountFilesystem(_ mount: MountImage, at point: String, injector: Injector, userMaps: UserNamespaceMaps?)
    throws
  {
    injector.resetData()
    let target = try injector.put(string: point)
    let from = try injector.put(string: mount.source)
    let type = try injector.put(string: mount.fsType)
    let text =
      try userMaps.map { try ownIDs(in: mount.options, maps: $0, mountPoint: mount.mountPoint) } ?? mount.options
    let options = text.isEmpty ? 0 : try injector.put(string: text)
    try injector.call(
      .mount(source: from, target: target, type: type, flags: mount.flags, data: options),
      "mount \(mount.fsType) at \(mount.mountPoint)")
    try propagate(mount, at: target, injector: injector)
  }

  /// Makes the mount just made at `target` propagate as it did: a slave of its master's peer
  /// group (it is a peer of it when it was bound from one of its members, made shared
  /// before), then shared (its group's first member makes the group; a bind from a shared
  /// member joins it), or unbindable.
  private static func propagate(_ mount: MountImage, at target: UInt64, injector: Injector) throws {
    // A root of its own is pivoted into, which a shared mount cannot be.
    guard mount.mountPoint != "/" else { return }
    var changes: [(flag: UInt64, what: String)] = []
    if mount.masterGroup != nil { changes.append((UInt64(MS_SLAVE), "slave")) }
    if mount.sharedGroup != nil { changes.append((UInt64(MS_SHARED), "shared")) }
    if mount.unbindable == true { changes.append((UInt64(MS_UNBINDABLE), "unbindable")) }
    for (flag, what) in changes {
      try injector.call(.mount(source: 0, target: target, flags: flag), "make \(mount.mountPoint) \(what)")
    }
  }

  /// Mount options with the host's ids (`uid=100000`, as ckcont read them) in a user
  /// namespace's own (`uid=0`), as the task inside mounts them.
  static func ownIDs(in options: String, maps: UserNamespaceMaps, mountPoint: String) throws -> String {
    try options.split(separator: ",").map { option -> String in
      for (key, map) in [("uid=", maps.uids), ("gid=", maps.gids)] where option.hasPrefix(key) {
        guard let id = UInt32(option.dropFirst(key.count)), let inside = UserNamespaceMaps.inside(id, in: map) else {
          throw CKError(.badInput, "mount \(mountPoint): \(option) is not in the user namespace's map")
        }
        return key + String(inside)
      }
      return String(option)
    }.joined(separator: ",")
  }

  /// Makes `directory` the task's root, as runc does: pivot_root(".", ".") stacks the old
  /// root on the new one, and detaching it leaves no path of the host in the namespace.
  private static func pivot(_ injector: Injector, into directory: String) throws {
    injector.resetData()
    let path = try injector.put(string: directory)
    let dot = try injector.put(string: ".")
    let slash = try injector.put(string: "/")
    var batch = Injector.Batch()
    batch.add(.chdir(path), "chdir to the new root \(directory)")
    batch.add(.pivotRoot(dot, putOld: dot), "pivot_root into \(directory)")
    batch.add(.umount2(dot, Int32(MNT_DETACH)), "detach the old root")
    batch.add(.chdir(slash), "chdir /")
    try injector.run(batch)
  }

  /// A tmpfs's files, written from ckcont into `top`, the new tmpfs: each made by the `*at`
  /// call of its kind in its directory resolved in `top`, never through a symlink.
  private static func writeFiles(_ files: [MountFileImage], in top: borrowing RootedDirectory, mountPoint: String)
    throws
  {
    for file in files {
      func fail(_ what: String) -> CKError {
        CKError(.failed, "cannot restore \(mountPoint)/\(file.path): \(what): \(String(cString: strerror(errno)))")
      }
      try top.withParent(of: file.path) { directory, entry in
        switch file.kind {
        case .directory:
          guard mkdirat(directory, entry, mode_t(file.mode)) == 0 || errno == EEXIST else { throw fail("mkdir") }
          // Owner and mode through the directory itself: a name listed twice may be a symlink.
          guard
            let made = OwnedDescriptor(adoptingValid: openat(directory, entry, O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC))
          else { throw fail("open") }
          try restoreOwner(of: made.raw, file, fail)
        case .symlink:
          guard symlinkat(file.target ?? "", directory, entry) == 0 else { throw fail("symlink") }
          guard fchownat(directory, entry, file.uid, file.gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw fail("lchown") }
        case .fifo, .characterDevice, .blockDevice:
          let type = file.kind == .fifo ? S_IFIFO : file.kind == .characterDevice ? S_IFCHR : S_IFBLK
          guard mknodat(directory, entry, type | mode_t(file.mode), dev_t(file.device ?? 0)) == 0 else {
            throw fail("mknod")
          }
          guard
            let made = OwnedDescriptor(adoptingValid: openat(directory, entry, OpenFlags.path | O_NOFOLLOW | O_CLOEXEC))
          else { throw fail("open") }
          // fchown/fchmod refuse O_PATH descriptors; the node just made through its fd's link.
          let path = "/proc/self/fd/\(made.raw)"
          guard chown(path, file.uid, file.gid) == 0, chmod(path, mode_t(file.mode)) == 0 else {
            throw fail("chown/chmod")
          }
        case .hardLink:
          try top.withParent(of: file.target ?? "") { targetDirectory, targetEntry in
            guard linkat(targetDirectory, targetEntry, directory, entry, 0) == 0 else { throw fail("link") }
          }
        case .file:
          guard
            let made = OwnedDescriptor(
              adoptingValid: openat(
                directory, entry, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode_t(file.mode)))
          else { throw fail("create") }
          let contents = file.contents ?? Data()
          let written = contents.withUnsafeBytes { write(made.raw, $0.baseAddress, $0.count) }
          guard written == contents.count else { throw fail("write") }
          try restoreOwner(of: made.raw, file, fail)
        }
      }
    }
  }

  /// Gives the file open at `fd` `file`'s owner and mode.
  private static func restoreOwner(of fd: Int32, _ file: MountFileImage, _ fail: (String) -> CKError) throws {
    guard fchown(fd, file.uid, file.gid) == 0, fchmod(fd, mode_t(file.mode)) == 0 else { throw fail("chown/chmod") }
  }

  /// Checks mounts.json: absolute mount points and sources, safe relative file paths,
  /// bounded counts and sizes.
  static func validate(_ image: MountsImage) throws(CKError) {
    func bad(_ what: String) -> CKError { CKError(.badInput, "the bundle is inconsistent: mounts.json: \(what)") }
    func isAbsolute(_ path: String) -> Bool {
      path.hasPrefix("/") && path.utf8.count < 4096 && !path.contains("\0")
        && !path.split(separator: "/").contains { $0 == ".." || $0 == "." }
    }
    guard image.mounts.count <= 4096 else { throw bad("too many mounts") }
    for (index, mount) in image.mounts.enumerated() {
      guard mount.mountPoint != "/" || index == 0 else { throw bad("a second mount at /") }
      guard isAbsolute(mount.mountPoint), mount.kind != .bind || isAbsolute(mount.source) else {
        throw bad("mount \(mount.mountPoint.prefix(200)) has a bad path")
      }
      guard mount.kind == .bind || virtualFileSystems.contains(mount.fsType) || memoryFileSystems.contains(mount.fsType)
      else {
        throw bad("mount \(mount.mountPoint) has a filesystem ckcont does not make: \(mount.fsType.prefix(64))")
      }
      guard mount.options.utf8.count < 4096, !mount.options.contains("\0"), mount.source.utf8.count < 4096,
        !mount.source.contains("\0"),
        mount.flags & ~knownFlags == 0
      else { throw bad("mount \(mount.mountPoint) has bad options") }
      let files = mount.files ?? []
      guard files.count <= maxFiles, files.reduce(0, { $0 + ($1.contents?.count ?? 0) }) <= maxFileBytes,
        files.allSatisfy({ file in
          !file.path.isEmpty && isAbsolute("/" + file.path) && file.mode <= 0o7777
            && (file.kind != .symlink
              || (file.target.map { !$0.isEmpty && $0.utf8.count < 4096 && !$0.contains("\0") } ?? false))
            && (file.kind != .characterDevice && file.kind != .blockDevice || file.device != nil)
        })
      else { throw bad("mount \(mount.mountPoint) has bad files") }
      // Files are written through the paths themselves: a parent must be a directory made
      // before, never a symlink (which could lead the writes out of the new tmpfs).
      var directories: Set<Substring> = []
      var regular: Set<String> = []
      for file in files {
        if let slash = file.path.lastIndex(of: "/"), !directories.contains(file.path[..<slash]) {
          throw bad("mount \(mount.mountPoint): \(file.path.prefix(200)) comes before its directory")
        }
        if file.kind == .directory { directories.insert(file.path[...]) }
        if file.kind == .file { regular.insert(file.path) }
        // A second name for a file written before (through no symlink: its path is one of
        // the regular files above).
        if file.kind == .hardLink, !regular.contains(file.target ?? "") {
          throw bad("mount \(mount.mountPoint): \(file.path.prefix(200)) links to no file before it")
        }
      }
    }
  }
}
