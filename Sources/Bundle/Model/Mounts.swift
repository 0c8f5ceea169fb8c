import Foundation

/// `mounts.json`: what a container's own mount namespace holds beyond the namespace it was
/// made from (the host's, as ckcont sees it): the mounts it added, parents first (CRIU's
/// mountpoints image, for the mounts a container typically makes). A container with a root
/// filesystem of its own (pivot_root, as runc and crun make them) has every mount of its
/// namespace here, the root first (mount point `/`).
public struct MountsImage: Codable, Sendable, Equatable {
  public var mounts: [MountImage]

  public init(mounts: [MountImage]) { self.mounts = mounts }

  /// Whether the container has a root filesystem of its own: its first mount is at `/`.
  public var hasOwnRoot: Bool { mounts.first?.mountPoint == "/" }
}

/// One mount the container made.
public struct MountImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    /// A new filesystem of `fsType` (tmpfs, proc, sysfs, mqueue) made with `options`.
    case filesystem
    /// A bind mount of `source`, a path as the restored namespace sees it before this mount.
    case bind
  }
  public var kind: Kind
  /// Absolute, in the container.
  public var mountPoint: String
  public var fsType: String
  /// The filesystem's source name, or the bind mount's source path.
  public var source: String
  /// A bind mount's source is a path in the container's own tree (what an earlier mount of
  /// it shows), not one of ckcont's: under a root of its own the restore makes it under the
  /// new root. nil or false: a path ckcont sees.
  public var sourceInContainer: Bool?
  /// MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC, MS_NOATIME, MS_NODIRATIME, MS_RELATIME,
  /// MS_STRICTATIME as the mount had them.
  public var flags: UInt64
  /// The filesystem's own options (tmpfs: size, nr_inodes, mode, uid, gid).
  public var options: String
  /// A tmpfs's files, parents first.
  public var files: [MountFileImage]?
  /// Propagation among the container's own mounts (mountinfo's optional fields, for peer
  /// groups no mount of ckcont's namespace is in): the peer group it shares mounts with
  /// (`shared:N`), the one it receives them from (`master:N`), and `unbindable`.
  public var sharedGroup: Int?
  public var masterGroup: Int?
  public var unbindable: Bool?
  /// A proc of a nested mount namespace that shows a pid namespace below the container's
  /// (`unshare -pf --mount-proc`): the pid in the container of that namespace's init, which
  /// mounts it again once it exists (a proc shows the pid namespace of who mounts it).
  public var pidNamespaceInit: Int32?

  public init(
    kind: Kind, mountPoint: String, fsType: String, source: String, sourceInContainer: Bool? = nil, flags: UInt64,
    options: String, files: [MountFileImage]? = nil
  ) {
    self.kind = kind
    self.mountPoint = mountPoint
    self.fsType = fsType
    self.source = source
    self.sourceInContainer = sourceInContainer
    self.flags = flags
    self.options = options
    self.files = files
  }
}

/// A file of a tmpfs the container mounted.
public struct MountFileImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    case directory, file, symlink, fifo
    /// A character or block device node (a container's /dev): `device` is its number.
    case characterDevice, blockDevice
    /// Another name of an earlier file: `target` is that file's path.
    case hardLink
  }
  public var kind: Kind
  /// Relative to the mount point; never empty, no `.` or `..` component.
  public var path: String
  /// Permission bits (with setuid, setgid, sticky).
  public var mode: UInt32
  public var uid: UInt32
  public var gid: UInt32
  public var contents: Data?
  public var target: String?
  /// A device node's number (st_rdev).
  public var device: UInt64?

  public init(
    kind: Kind, path: String, mode: UInt32, uid: UInt32, gid: UInt32, contents: Data? = nil, target: String? = nil,
    device: UInt64? = nil
  ) {
    self.kind = kind
    self.path = path
    self.mode = mode
    self.uid = uid
    self.gid = gid
    self.contents = contents
    self.target = target
    self.device = device
  }
}
