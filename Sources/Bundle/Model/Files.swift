import Foundation

/// `tasks/<pid>/files.json`: the open file descriptors of one process (CRIU's fdinfo).
public struct FileTableImage: Codable, Sendable, Equatable {
  public var descriptors: [DescriptorImage]
  /// Pipes this process holds, with the data buffered in them.
  public var pipes: [PipeImage]

  public init(descriptors: [DescriptorImage], pipes: [PipeImage]) {
    self.descriptors = descriptors
    self.pipes = pipes
  }
}

/// One descriptor and the open file description behind it.
public struct DescriptorImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    /// A regular file or device node opened by path (including /dev/null).
    case path
    /// One end of a pipe; `pipe` names the PipeImage.
    case pipe
    /// A FIFO opened by `path`; `pipe` names the PipeImage with the data buffered in it.
    case fifo
    /// eventfd, signalfd or timerfd: `anon` holds its state.
    case eventfd, signalfd, timerfd
    /// An epoll instance: `epollTargets` are the descriptors it watches.
    case epoll
    /// A memfd_create(2) file: `memfd` holds its name, size, seals and contents.
    case memfd
    /// A pidfd of the process `pidfdTarget` (its pid inside the container).
    case pidfd
    /// A regular file deleted while open: `path` is where it was, `ghost` its contents.
    case deleted
    /// An inotify instance: `inotifyWatches` are its watches.
    case inotify
    /// A fanotify group: `fanotify` holds its flags and marks.
    case fanotify
    /// An internet socket not connected to a peer (TCP listening or not yet used, UDP):
    /// `socket` holds its family, type, address and options.
    case socket
    /// A POSIX message queue (mq_open): `mqueue` holds its name, attributes and messages.
    case mqueue
    /// One side of a pseudo-terminal whose master the container holds: `pty` says which.
    case pty
    /// /dev/net/tun, attached to a tun/tap device of the container's network namespace or
    /// not: `tun` says which, with its settings.
    case tun
  }
  public var fd: Int32
  public var kind: Kind
  /// open(2) flags from fdinfo (O_ACCMODE, O_APPEND, O_NONBLOCK...), without O_CLOEXEC.
  public var flags: Int32
  public var closeOnExec: Bool
  /// kind == .path: the path, the file position and the file's mode.
  public var path: String?
  public var position: Int64?
  public var mode: UInt32?
  /// kind == .pipe or .fifo: the pipe's inode (a FIFO's: the inode of its file).
  public var pipe: UInt64?
  /// A lower fd of the same process with the same open file description (from dup()):
  /// restored as a duplicate of it, sharing offset and flags.
  public var sharesWith: Int32?
  /// kind == .eventfd / .signalfd / .timerfd: what it holds.
  public var anon: AnonFileState?
  /// kind == .epoll: what it watches, by this process's descriptor numbers.
  public var epollTargets: [EpollTarget]?
  /// kind == .memfd: the file (position in `position`).
  public var memfd: MemfdImage?
  /// kind == .inotify: the watches, by watch descriptor.
  public var inotifyWatches: [InotifyWatch]?
  /// kind == .fanotify: the group's flags and marks.
  public var fanotify: FanotifyImage?
  /// kind == .deleted: the file's contents.
  public var ghost: GhostFileImage?
  /// kind == .fifo: the FIFO was deleted while open (`path` is where it was), made again
  /// there for a moment with `fifoAttributes` (owner, mode, times).
  public var fifoDeleted: Bool?
  public var fifoAttributes: FileAttributes?
  /// kind == .pidfd: the process it refers to (the host's pid while capturing, the
  /// container's in the image).
  public var pidfdTarget: Int32?
  /// kind == .socket: what the socket is.
  public var socket: SocketImage?
  /// A container-wide id of an open file description several processes hold (inherited
  /// across fork): restored once and handed to the others, so they share offset and flags.
  public var sharedDescription: UInt64?
  /// kind == .path / .deleted: the advisory locks held through this descriptor.
  public var locks: [FileLockImage]?
  /// kind == .mqueue: the queue.
  public var mqueue: MessageQueueImage?
  /// Signal-driven I/O (O_ASYNC, F_SETOWN, F_SETSIG): who gets the signal and which.
  public var asyncOwner: AsyncOwnerImage?
  /// kind == .path: the file lies outside the container's root filesystem (opened before
  /// its runtime pivoted into the root, like the stdio a runtime hands in); `path` is what
  /// ckcont saw, and the restore reopens it from there, not inside the container.
  public var outsideRoot: Bool?
  /// kind == .pty: the terminal and its state.
  public var pty: PtyImage?
  /// kind == .tun: the device it is a queue of, and its settings.
  public var tun: TunDescriptorImage?

  public init(
    fd: Int32, kind: Kind, flags: Int32, closeOnExec: Bool, path: String? = nil, position: Int64? = nil,
    mode: UInt32? = nil, pipe: UInt64? = nil, sharesWith: Int32? = nil, anon: AnonFileState? = nil,
    epollTargets: [EpollTarget]? = nil, memfd: MemfdImage? = nil
  ) {
    self.fd = fd
    self.kind = kind
    self.flags = flags
    self.closeOnExec = closeOnExec
    self.path = path
    self.position = position
    self.mode = mode
    self.pipe = pipe
    self.sharesWith = sharesWith
    self.anon = anon
    self.epollTargets = epollTargets
    self.memfd = memfd
  }
}

/// One side of a pseudo-terminal (CRIU's tty image). The pair is its index in the
/// container's devpts; the restore makes a new pair, with the same index where it is free.
/// Bytes waiting in the terminal's queues are not kept (as in CRIU).
public struct PtyImage: Codable, Sendable, Equatable {
  public var index: Int32
  public var isMaster: Bool
  /// The terminal's state, which both sides read: struct termios2 (TCGETS2), and the window
  /// size: rows, columns, x and y pixels.
  public var termios: Data
  public var windowSize: [UInt16]
  /// A master's lock (TIOCGPTLCK) and packet mode (TIOCGPKT).
  public var locked: Bool
  public var packetMode: Bool
  /// The session whose controlling terminal it is (its leader's pid) and that session's
  /// foreground process group, as the container sees them (ckcont's pids while captured).
  public var session: Int32?
  public var foregroundGroup: Int32?
  /// A master's: what the programs wrote to the terminal that waits to be read from the
  /// master (at most ``PtyImage/outputLimit`` bytes).
  public var output: Data?

  /// The most output a terminal keeps: what its buffers hold.
  public static let outputLimit = 1 << 20

  public init(
    index: Int32, isMaster: Bool, termios: Data, windowSize: [UInt16], locked: Bool, packetMode: Bool, session: Int32?,
    foregroundGroup: Int32?
  ) {
    self.index = index
    self.isMaster = isMaster
    self.termios = termios
    self.windowSize = windowSize
    self.locked = locked
    self.packetMode = packetMode
    self.session = session
    self.foregroundGroup = foregroundGroup
  }
}

/// One inotify watch: its descriptor, what it watches for, and the watched file's path.
public struct InotifyWatch: Codable, Sendable, Equatable {
  public var wd: Int32
  public var mask: UInt32
  public var path: String

  public init(wd: Int32, mask: UInt32, path: String) {
    self.wd = wd
    self.mask = mask
    self.path = path
  }
}

/// A fanotify group (fanotify_init): its flags and the marks it holds.
public struct FanotifyImage: Codable, Sendable, Equatable {
  /// fanotify_init's flags (class, reporting), without FAN_CLOEXEC and FAN_NONBLOCK, which
  /// the descriptor's own flags say.
  public var flags: UInt32
  /// fanotify_init's event_f_flags: how the files of events are opened.
  public var eventFlags: UInt32
  /// In the order they were made (the oldest first).
  public var marks: [FanotifyMark]

  public init(flags: UInt32, eventFlags: UInt32, marks: [FanotifyMark]) {
    self.flags = flags
    self.eventFlags = eventFlags
    self.marks = marks
  }
}

/// One fanotify mark: on a file or directory, on a mount, or on a whole filesystem, by a
/// path to it.
public struct FanotifyMark: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    case inode, mount, filesystem
  }
  public var kind: Kind
  /// The path marked: the file, the mount's mount point, a directory of the filesystem.
  public var path: String
  /// What it reports, and what it ignores (FAN_MARK_IGNORED_MASK).
  public var mask: UInt64
  public var ignoredMask: UInt64
  /// fanotify_mark's flags the kernel keeps (FAN_MARK_IGNORED_SURV_MODIFY, FAN_MARK_EVICTABLE,
  /// FAN_MARK_IGNORE).
  public var flags: UInt32

  public init(kind: Kind, path: String, mask: UInt64, ignoredMask: UInt64, flags: UInt32) {
    self.kind = kind
    self.path = path
    self.mask = mask
    self.ignoredMask = ignoredMask
    self.flags = flags
  }
}

/// A deleted file still open (CRIU's "ghost file"): recreated once per container (by inode)
/// next to where it was, filled, opened and unlinked again.
public struct GhostFileImage: Codable, Sendable, Equatable {
  public var inode: UInt64
  /// What the file holds, base64 in JSON: the whole file, or, with `extents`, the bytes of
  /// each extent one after the other.
  public var contents: Data
  /// The file's size, holes at its end included (nil: `contents.count`).
  public var size: Int64?
  /// Where the file holds data (SEEK_DATA, SEEK_HOLE); nil: all of it, from 0.
  public var extents: [FileExtent]?
  /// Owner, mode and times (nil in bundles from before they were kept).
  public var attributes: FileAttributes?
  /// The bundle member holding the bytes instead of `contents` (which is then empty), for
  /// more than ``KeptFiles/inlineLimit`` of them (``KeptFiles/dataMember(device:inode:)``).
  public var dataMember: String?

  public init(inode: UInt64, contents: Data) {
    self.inode = inode
    self.contents = contents
  }
}

/// A range of a file that holds data.
public struct FileExtent: Codable, Sendable, Equatable {
  public var offset: Int64
  public var length: Int64

  public init(offset: Int64, length: Int64) {
    self.offset = offset
    self.length = length
  }
}

/// What a file ckcont makes again had of its own besides its bytes: owner and group (host
/// ids), permission bits (07777) and the times of its last access and change of contents.
public struct FileAttributes: Codable, Sendable, Equatable {
  public var uid: UInt32
  public var gid: UInt32
  public var mode: UInt32
  public var accessed: FileTime
  public var modified: FileTime

  public init(uid: UInt32, gid: UInt32, mode: UInt32, accessed: FileTime, modified: FileTime) {
    self.uid = uid
    self.gid = gid
    self.mode = mode
    self.accessed = accessed
    self.modified = modified
  }
}

/// A struct timespec.
public struct FileTime: Codable, Sendable, Equatable {
  public var seconds: Int64
  public var nanoseconds: Int64

  public init(seconds: Int64, nanoseconds: Int64) {
    self.seconds = seconds
    self.nanoseconds = nanoseconds
  }
}

/// Where a bundle keeps the bytes of files ckcont makes again (deleted files, memfds): in
/// the model up to ``inlineLimit``, in a member of their own beyond, which the dump streams
/// from the file and the restore writes from the bundle, never through JSON.
public enum KeptFiles {
  /// The most bytes kept in the model itself (base64 in JSON).
  public static let inlineLimit = 1 << 20
  /// The most bytes a file kept in a member may hold.
  public static let memberLimit: Int64 = 1 << 40
  /// The member for the file with `inode` on device `device`: one per file, whichever
  /// descriptors or processes hold it.
  public static func dataMember(device: UInt64, inode: UInt64) -> String { "kept/\(device)-\(inode).img" }
}

/// A file's bytes as a bundle keeps them: all of them, or the extents that hold data.
public protocol KeptFileContents {
  var contents: Data { get }
  var size: Int64? { get }
  var extents: [FileExtent]? { get }
  var attributes: FileAttributes? { get }
  var dataMember: String? { get }
}

extension KeptFileContents {
  /// Its size, holes included.
  public var fileSize: Int64 { size ?? storedLength }

  /// The bytes kept: `contents`, or those of `dataMember` (every extent's, or the whole file).
  public var storedLength: Int64 {
    guard dataMember != nil else { return Int64(contents.count) }
    return extents.map { $0.reduce(Int64(0)) { $0 + $1.length } } ?? (size ?? 0)
  }

  /// Whether it can be made again: at most ``KeptFiles/inlineLimit`` bytes in the model, or
  /// up to ``KeptFiles/memberLimit`` in a member named as ``KeptFiles/dataMember(device:inode:)``
  /// names them, within a size of at most 1 TiB, in extents that follow each other, hold every
  /// byte kept, and end within the file; times and mode plausible.
  public var contentsAreValid: Bool {
    if let dataMember {
      guard contents.isEmpty, dataMember.hasPrefix("kept/"), dataMember.hasSuffix(".img"), !dataMember.contains(".."),
        dataMember.count <= 100, (0...KeptFiles.memberLimit).contains(storedLength)
      else { return false }
    }
    // Bundles from before members kept files up to 64 MiB in the model.
    guard contents.count <= 64 << 20, (0...(1 << 40)).contains(fileSize) else { return false }
    if let attributes {
      guard attributes.mode <= 0o7777,
        [attributes.accessed, attributes.modified].allSatisfy({ (0..<1_000_000_000).contains($0.nanoseconds) })
      else { return false }
    }
    guard let extents else { return size == nil || fileSize >= storedLength }
    guard extents.count <= 1 << 16, extents.allSatisfy({ $0.offset >= 0 && $0.length > 0 }),
      zip(extents, extents.dropFirst()).allSatisfy({ $0.offset + $0.length <= $1.offset }),
      extents.reduce(Int64(0), { $0 + $1.length }) == storedLength
    else { return false }
    return extents.last.map { $0.offset + $0.length <= fileSize } ?? true
  }
}

extension GhostFileImage: KeptFileContents {}
extension MemfdImage: KeptFileContents {}

/// A memfd file: restored once per container (by inode), shared by every descriptor and
/// mapping of it.
public struct MemfdImage: Codable, Sendable, Equatable {
  public var name: String
  public var inode: UInt64
  /// F_GET_SEALS (F_SEAL_SEAL alone: created without MFD_ALLOW_SEALING).
  public var seals: Int32
  /// As ``GhostFileImage/contents``, `size`, `extents` and `attributes` are.
  public var contents: Data
  public var size: Int64?
  public var extents: [FileExtent]?
  public var attributes: FileAttributes?
  public var dataMember: String?

  public init(name: String, inode: UInt64, seals: Int32, contents: Data) {
    self.name = name
    self.inode = inode
    self.seals = seals
    self.contents = contents
  }
}

/// One descriptor an epoll instance watches, with the events and data it was added with.
public struct EpollTarget: Codable, Sendable, Equatable {
  public var fd: Int32
  public var events: UInt32
  public var data: UInt64
  /// A watch whose descriptor `fd` was closed since (the watch lives on with the file): a
  /// descriptor of the container that holds that file, which the restore puts at number
  /// `fd` for the moment of adding the watch.
  public var source: DescriptorReference?

  public init(fd: Int32, events: UInt32, data: UInt64) {
    self.fd = fd
    self.events = events
    self.data = data
  }
}

/// The state of an eventfd, signalfd or timerfd, from its fdinfo.
public struct AnonFileState: Codable, Sendable, Equatable {
  /// eventfd: the counter, and whether it counts as a semaphore.
  public var count: UInt64?
  public var semaphore: Bool?
  /// signalfd: the signals it reads.
  public var signalMask: UInt64?
  /// timerfd: clock, interval, time left (0: disarmed) and expirations not yet read.
  public var clockID: Int32?
  public var intervalNanoseconds: Int64?
  public var valueNanoseconds: Int64?
  public var ticks: UInt64?

  public init(
    count: UInt64? = nil, semaphore: Bool? = nil, signalMask: UInt64? = nil, clockID: Int32? = nil,
    intervalNanoseconds: Int64? = nil, valueNanoseconds: Int64? = nil, ticks: UInt64? = nil
  ) {
    self.count = count
    self.semaphore = semaphore
    self.signalMask = signalMask
    self.clockID = clockID
    self.intervalNanoseconds = intervalNanoseconds
    self.valueNanoseconds = valueNanoseconds
    self.ticks = ticks
  }
}

/// A pipe or FIFO and its unread data (captured without consuming it).
public struct PipeImage: Codable, Sendable, Equatable {
  public var inode: UInt64
  /// The bytes waiting in the pipe, base64 in JSON (at most the pipe's capacity).
  public var buffered: Data
  /// F_GETPIPE_SZ.
  public var capacity: Int32

  public init(inode: UInt64, buffered: Data, capacity: Int32) {
    self.inode = inode
    self.buffered = buffered
    self.capacity = capacity
  }
}

/// A socket: an internet socket without a connection, made anew with socket(2), its options
/// set, bound to its address and, if it listened, listening again; or a unix socket, made
/// the same way, or, connected, as one end of a socketpair(2) with its peer.
public struct SocketImage: Codable, Sendable, Equatable {
  /// AF_INET, AF_INET6 or AF_UNIX.
  public var family: Int32
  /// SOCK_STREAM, SOCK_DGRAM (or, unix, SOCK_SEQPACKET).
  public var type: Int32
  public var protocolNumber: Int32
  /// The bound address: a struct sockaddr_in or sockaddr_in6 as getsockname(2) gives it, or
  /// a unix socket's sun_path bytes (a leading NUL: an abstract name); nil when unbound.
  public var address: Data?
  /// A UDP socket's connected peer (connect(2) on a datagram socket only sets a default),
  /// or the name (sun_path bytes) of the socket a unix datagram socket connect(2)ed to (as
  /// syslog(3) connects to /dev/log): it connects to that name again at restore.
  public var peer: Data?
  /// For a listening TCP socket: its backlog.
  public var backlog: Int32?
  /// Socket options that differ from a new socket's (``SocketOptionKind``).
  public var options: [SocketOption]
  /// A unix socket: its inode, and its connected peer's (both in the container).
  public var inode: UInt64?
  public var peerInode: UInt64?
  /// A unix socket bound to an absolute path whose socket file is no longer there (unlinked,
  /// or replaced by another file): it keeps its name, without a file to connect through.
  public var nameUnlinked: Bool?
  /// A connected unix socket whose peer no process of the container held (a client outside,
  /// such as a psql connected to a server inside): that peer lost the connection when the
  /// container was killed, so the socket comes back with its waiting data and a peer that is
  /// gone (reads end in EOF, writes fail with EPIPE), as if the client had left then.
  public var peerOutside: Bool?
  /// A unix listener: the clients whose connections waited to be accepted, by inode, in the
  /// order accept(2) takes them. Each connects to it again at restore, in that order.
  public var pending: [UInt64]?
  /// A unix socket whose connection waited in a listener's queue, not yet accepted (its
  /// peer an embryo socket no process holds): that listener's inode.
  public var pendingOn: UInt64?
  /// A connected unix stream socket: the bytes waiting to be read from it.
  public var queued: Data?
  /// A unix socket shut down: 1 for receiving, 2 for sending, 3 both (the kernel's
  /// sk_shutdown, which a shutdown(2) of the peer sets too); nil for neither.
  public var shutdown: Int32?
  /// A connected unix datagram or seqpacket socket, or a named datagram socket no peer is
  /// connected to: the messages waiting, in order.
  public var messages: [Data]?
  /// For a unix datagram socket no peer is connected to, or a UDP socket: who sent each of
  /// `messages` (the sender's name or address as `address` holds them; empty for an unnamed
  /// unix sender).
  public var senders: [Data]?
  /// An established TCP connection (`peer` is the other end): its state under TCP_REPAIR.
  public var tcp: TCPConnectionImage?
  /// Descriptors passed (SCM_RIGHTS) with what waits in a connected unix socket, not yet
  /// received: sent again with it by the restore.
  public var passed: [PassedDescriptors]?
  /// A TCP listener: how many connections waited in its queue, not yet accepted; their
  /// clients (``awaitsAccept``) connect again at restore.
  public var acceptQueue: Int?
  /// A TCP client whose connection waited in its listener's queue (a listener of the
  /// container, `peer`), having sent nothing: it connects to it again at restore, from its
  /// own address, once the listener listens.
  public var awaitsAccept: Bool?
  /// A connected unix stream or seqpacket socket, or an end of a socketpair: who made the
  /// connection, as SO_PEERCRED tells it.
  public var peerCredentials: PeerCredentials?
  /// A packet socket (AF_PACKET; `protocolNumber` is the ethertype it receives, in host
  /// order): the link it is bound to and its memberships, links named.
  public var packet: PacketSocketImage?

  public init(
    family: Int32, type: Int32, protocolNumber: Int32, address: Data?, peer: Data?, backlog: Int32?,
    options: [SocketOption], inode: UInt64? = nil, peerInode: UInt64? = nil, queued: Data? = nil
  ) {
    self.inode = inode
    self.peerInode = peerInode
    self.queued = queued
    self.family = family
    self.type = type
    self.protocolNumber = protocolNumber
    self.address = address
    self.peer = peer
    self.backlog = backlog
    self.options = options
  }
}

/// The credentials a unix connection carries (SO_PEERCRED): those of the process that
/// connected, listened or made the socketpair, as they were at that moment. The restore makes
/// the connection in that process with those ids, so that the peer sees the same.
public struct PeerCredentials: Codable, Sendable, Equatable {
  /// That process, by its pid in the container; 0 for one outside it or gone.
  public var pid: Int32
  /// Its effective user and group ids then, as the host names them.
  public var uid: UInt32
  public var gid: UInt32
  /// Its supplementary groups then (SO_PEERGROUPS), as the host names them; nil in bundles
  /// made before ckcont kept them.
  public var groups: [UInt32]?

  public init(pid: Int32, uid: UInt32, gid: UInt32, groups: [UInt32]? = nil) {
    self.pid = pid
    self.uid = uid
    self.gid = gid
    self.groups = groups
  }
}

/// Descriptors in flight in a unix socket, each one a descriptor a process of the container
/// holds too (the same open file description).
public struct PassedDescriptors: Codable, Sendable, Equatable {
  /// Where they are attached: the index in ``SocketImage/messages``, or for a stream the
  /// byte offset in ``SocketImage/queued`` where the piece they came with starts.
  public var at: Int
  /// For a stream: the bytes of that piece (a read ends with them).
  public var length: Int?
  public var descriptors: [DescriptorReference]

  public init(at: Int, length: Int? = nil, descriptors: [DescriptorReference]) {
    self.at = at
    self.length = length
    self.descriptors = descriptors
  }
}

/// Descriptor `fd` of the process with pid `pid` in the container; or, with pid 0, a file
/// that only the message holds (its sender closed it since): opened again at `path` with
/// `flags`, at `position`; or an end of a pipe whose other end (or another of the same
/// kind) process `throughPid` holds as `throughFd`, opened again through it with `flags`.
public struct DescriptorReference: Codable, Sendable, Equatable, Hashable {
  public var pid: Int32
  public var fd: Int32
  public var path: String?
  public var flags: Int32?
  public var position: Int64?
  public var throughPid: Int32?
  public var throughFd: Int32?

  public init(pid: Int32, fd: Int32) {
    self.pid = pid
    self.fd = fd
  }

  /// A file only a message holds.
  public init(path: String, flags: Int32, position: Int64) {
    self.init(pid: 0, fd: -1)
    self.path = path
    self.flags = flags
    self.position = position
  }

  /// An end of a pipe only a message holds, opened again through a descriptor of the same
  /// pipe that process `pid` holds.
  public init(pipeThrough pid: Int32, fd: Int32, flags: Int32) {
    self.init(pid: 0, fd: -1)
    self.flags = flags
    throughPid = pid
    throughFd = fd
  }

  /// Either a process's descriptor, a file by an absolute path opened without creating or
  /// truncating anything, or a pipe end opened through another for reading or writing.
  public var isValid: Bool {
    guard pid == 0 else {
      return pid > 0 && fd >= 0 && path == nil && flags == nil && position == nil && throughPid == nil
        && throughFd == nil
    }
    if let throughPid, let throughFd, let flags {
      return throughPid > 0 && throughFd >= 0 && path == nil && position == nil && [0, 1].contains(flags & 3)
        && flags & ~Int32(3 | 0o4000 | 0o2000) == 0  // O_NONBLOCK, O_APPEND
    }
    guard throughPid == nil, throughFd == nil, let path, let flags, let position else { return false }
    let forbidden: Int32 = 0o100 | 0o200 | 0o1000 | 0o20000000  // O_CREAT, O_EXCL, O_TRUNC, __O_TMPFILE
    return path.hasPrefix("/") && !path.contains("\0") && path.utf8.count < 4096 && flags & forbidden == 0
      && position >= 0
  }
}

/// An established TCP connection as TCP_REPAIR reads and restores it (CRIU's tcp_stream):
/// the sequence numbers and bytes of both queues, the options both ends agreed on, the
/// timestamp clock and the window.
public struct TCPConnectionImage: Codable, Sendable, Equatable {
  public var sendSequence: UInt32
  public var receiveSequence: UInt32
  /// Sent but not acknowledged (or not sent yet): retransmitted after restore.
  public var sendQueue: Data
  /// Received and acknowledged, not read yet by the process.
  public var receiveQueue: Data
  /// tcpi_options: TCPI_OPT_TIMESTAMPS 1, TCPI_OPT_SACK 2, TCPI_OPT_WSCALE 4.
  public var options: UInt32
  public var sendWindowScale: UInt32
  public var receiveWindowScale: UInt32
  public var mss: UInt32
  public var timestamp: UInt32
  /// struct tcp_repair_window: snd_wl1, snd_wnd, max_window, rcv_wnd, rcv_wup.
  public var window: [UInt32]
  /// A connection closing (``closingStates``: tcpi_state), nil for an established one. Its
  /// FINs are not in the sequence numbers: the restore makes it established, then each end
  /// that had sent its FIN shuts down its sending again once both ends are out of repair.
  public var state: Int32?

  /// FIN-WAIT-1, FIN-WAIT-2, CLOSE-WAIT, LAST-ACK (CLOSING, both FINs crossing, passes too
  /// fast to be met; TIME-WAIT and CLOSE have no connection left to restore).
  public static let closingStates: [Int32: String] = [4: "FIN-WAIT-1", 5: "FIN-WAIT-2", 8: "CLOSE-WAIT", 9: "LAST-ACK"]
  /// This end sent its FIN (it shut down sending, or closed).
  public var finSent: Bool { state.map { [4, 5, 9].contains($0) } ?? false }
  /// Its peer's FIN arrived (the peer shut down sending).
  public var finReceived: Bool { state.map { [8, 9].contains($0) } ?? false }

  /// The most each queue may hold (more than the kernel lets a queue grow to by default).
  public static let queueLimit = 8 << 20
  /// Queues up to this size are written by the task in its batch of remote calls; larger
  /// ones by ckcont through its own copy of the socket.
  public static let inBatchLimit = 8 << 10

  public init(
    sendSequence: UInt32, receiveSequence: UInt32, sendQueue: Data, receiveQueue: Data, options: UInt32,
    sendWindowScale: UInt32, receiveWindowScale: UInt32, mss: UInt32, timestamp: UInt32, window: [UInt32]
  ) {
    self.sendSequence = sendSequence
    self.receiveSequence = receiveSequence
    self.sendQueue = sendQueue
    self.receiveQueue = receiveQueue
    self.options = options
    self.sendWindowScale = sendWindowScale
    self.receiveWindowScale = receiveWindowScale
    self.mss = mss
    self.timestamp = timestamp
    self.window = window
  }

  public var isValid: Bool {
    sendQueue.count <= Self.queueLimit && receiveQueue.count <= Self.queueLimit && window.count == 5
      && sendWindowScale <= 14 && receiveWindowScale <= 14 && mss <= 65535
      && (state.map { Self.closingStates[$0] != nil } ?? true)
  }
}

extension SocketImage {
  /// Passed descriptors belong to a connected socket, in order, each at a message (or a
  /// byte of the stream) that waits, at most 253 at once (SCM_MAX_FD).
  var passedIsValid: Bool {
    guard let passed else { return true }
    guard peerInode != nil, passed.count <= 4096 else { return false }
    let stream = type == 1
    let limit = stream ? (queued?.count ?? 0) : (messages?.count ?? 0)
    let end = { (piece: PassedDescriptors) in stream ? piece.at + (piece.length ?? 0) : piece.at + 1 }
    return zip(passed, passed.dropFirst()).allSatisfy { end($0) <= $1.at }
      && passed.allSatisfy {
        (0..<limit).contains($0.at) && (stream ? ($0.length ?? 0) > 0 && end($0) <= limit : $0.length == nil)
          && (1...253).contains($0.descriptors.count) && $0.descriptors.allSatisfy(\.isValid)
      }
  }

  /// Whether the image is one restore can make: a known family, type, protocol, options,
  /// and addresses of the size their family has.
  public var isValid: Bool {
    if family == 17 {
      // Packet: raw or datagram, an ethertype, nothing of the other families'.
      return (type == 3 || type == 2) && (0...0xffff).contains(protocolNumber) && address == nil && peer == nil
        && backlog == nil && tcp == nil && queued == nil && messages == nil && passed == nil && options.isValid
        && packet?.isValid == true
    }
    if family == 16 {
      // Netlink: raw or datagram, a protocol, the address a sockaddr_nl (port id, groups).
      return (type == 3 || type == 2) && (0..<32).contains(protocolNumber) && (address?.count ?? 12) == 12
        && peer == nil
        && backlog == nil && tcp == nil && queued == nil && messages == nil && options.isEmpty
    }
    if family == 1 {
      return [1, 2, 5].contains(type) && protocolNumber == 0 && (address?.count ?? 1) <= 108
        && (address?.count ?? 1) > 0
        && (peer == nil || type == 2 && peerInode == nil && (1...108).contains(peer?.count ?? 0))
        && (backlog ?? 0) >= 0 && inode != nil && (queued?.count ?? 0) <= 16 << 20
        && (queued == nil || peerInode != nil)
        && (messages == nil || peerInode != nil && type != 1 && senders == nil
          || peerInode == nil && type == 2 && address != nil && senders?.count == messages?.count
            && (senders ?? []).allSatisfy { $0.count <= 108 })
        && (messages?.count ?? 0) <= 4096 && (messages ?? []).reduce(0, { $0 + $1.count }) <= 16 << 20
        && options.isValid
        && (shutdown.map { (1...3).contains($0) && peerInode != nil } ?? true) && passedIsValid
        && (nameUnlinked == nil || address?.first == UInt8(ascii: "/"))
        && (pending == nil
          || backlog != nil && address != nil && nameUnlinked == nil && type != 2
            && (pending?.count ?? 0) <= 256)
        && (pendingOn == nil || peerInode == nil && type != 2 && queued == nil && messages == nil && backlog == nil)
    }
    let size = family == 2 ? 16 : 28
    func fits(_ address: Data?) -> Bool {
      guard let address else { return true }
      return address.count == size
        && Int32(address[address.startIndex]) | Int32(address[address.startIndex + 1]) << 8 == family
    }
    // TCP, UDP, UDP-Lite (136, datagrams only), ping sockets (ICMP for IPv4, ICMPv6 for
    // IPv6; datagrams, nothing waiting).
    let ping = type == 2 && protocolNumber == (family == 2 ? 1 : 58) && messages == nil
    // Raw sockets (SOCK_RAW, any protocol but 0; nothing waiting, nothing listening).
    let raw = type == 3 && (1...255).contains(protocolNumber) && messages == nil && backlog == nil && tcp == nil
    return (family == 2 || family == 10) && (type == 1 || type == 2 || raw)
      && ([0, 6, 17].contains(protocolNumber) || protocolNumber == 136 && type == 2 || ping || raw)
      && fits(address) && fits(peer)
      && (peer == nil || type == 2 || raw || tcp?.isValid == true || awaitsAccept == true)
      && (awaitsAccept == nil || type == 1 && tcp == nil && peer != nil && address != nil && backlog == nil)
      && (acceptQueue.map { (1...4096).contains($0) && backlog != nil } ?? true)
      && (tcp == nil || peer != nil && address != nil)
      && (backlog ?? 0) >= 0 && options.isValid
      && queued == nil && passed == nil
      && (messages == nil
        || type == 2 && address != nil && senders?.count == messages?.count && (senders ?? []).allSatisfy { fits($0) }
          && (messages?.count ?? 0) <= 4096 && (messages ?? []).reduce(0, { $0 + $1.count }) <= 16 << 20)
  }

  /// IPPROTO_ICMP and IPPROTO_ICMPV6: ping sockets (SOCK_DGRAM).
  public static let pingProtocols: Set<Int32> = [1, 58]

  /// An internet address as people write it: `127.0.0.1:8080`, `[::1]:53`; nil when `address`
  /// is not a sockaddr_in or sockaddr_in6.
  public static func text(_ address: Data) -> String? {
    let bytes = Array(address)
    guard bytes.count >= 8 else { return nil }
    let port = Int(bytes[2]) << 8 | Int(bytes[3])
    let family = Int(bytes[0]) | Int(bytes[1]) << 8
    if family == 2 { return "\(bytes[4]).\(bytes[5]).\(bytes[6]).\(bytes[7]):\(port)" }
    guard family == 10, bytes.count >= 24 else { return nil }
    let groups = stride(from: 8, to: 24, by: 2).map { String(Int(bytes[$0]) << 8 | Int(bytes[$0 + 1]), radix: 16) }
    return "[\(groups.joined(separator: ":"))]:\(port)"
  }

  /// A unix socket's name for people: its path, or `@` and its abstract name.
  public static func describeUnixName(_ name: Data) -> String {
    name.first == 0
      ? "@" + String(decoding: name.dropFirst(), as: UTF8.self)
      : String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
  }

  /// `tcp 127.0.0.1:8080 listening`, `udp [::1]:53`, `unix stream /run/x.sock`: for people.
  public var description: String {
    if family == 17 {
      let kind = type == 3 ? "raw" : "datagram"
      let memberships = packet?.memberships.count ?? 0
      return "packet \(kind) ethertype 0x\(String(protocolNumber, radix: 16))"
        + (packet?.link.map { " on \($0)" } ?? " on every link")
        + (memberships > 0 ? ", \(memberships) membership\(memberships == 1 ? "" : "s")" : "")
    }
    if family == 16 {
      let words = address.flatMap { address -> (UInt32, UInt32)? in
        guard address.count == 12 else { return nil }
        return address.withUnsafeBytes {
          ($0.loadUnaligned(fromByteOffset: 4, as: UInt32.self), $0.loadUnaligned(fromByteOffset: 8, as: UInt32.self))
        }
      }
      return "netlink protocol \(protocolNumber)"
        + (words.map { " port \($0.0), groups 0x\(String($0.1, radix: 16))" } ?? " unbound")
    }
    if family == 1 {
      let kind = type == 1 ? "stream" : type == 2 ? "datagram" : "seqpacket"
      var words = ["unix", kind, address.map(Self.describeUnixName) ?? "unnamed"]
      if let peer { words.append("connected to \(Self.describeUnixName(peer))") }
      if let peerInode {
        words.append(
          "connected to socket:[\(peerInode)]\(peerOutside == true ? " outside the container (restored with that peer gone)" : "")"
        )
      }
      if let backlog { words.append("listening (backlog \(backlog))") }
      if let pending, !pending.isEmpty {
        words.append("with \(pending.count) connection\(pending.count == 1 ? "" : "s") waiting to be accepted")
      }
      if let pendingOn { words.append("connecting, waiting to be accepted by socket:[\(pendingOn)]") }
      if let queued, !queued.isEmpty { words.append("\(queued.count) bytes to read") }
      if let messages, !messages.isEmpty {
        words.append(
          "\(messages.count) message\(messages.count == 1 ? "" : "s") to read"
            + (senders != nil ? " from their senders' names" : ""))
      }
      if let passed, !passed.isEmpty {
        let count = passed.reduce(0) { $0 + $1.descriptors.count }
        words.append("with \(count) descriptor\(count == 1 ? "" : "s") in flight")
      }
      return words.joined(separator: " ")
    }
    let text = { (address: Data?) in address.flatMap(Self.text) }
    var words = [type == 1 ? "tcp" : "udp", family == 2 ? "IPv4" : "IPv6", text(address) ?? "unbound"]
    if let peer = text(peer) { words.append(tcp == nil ? "to \(peer)" : "connected to \(peer)") }
    if let tcp, tcp.sendQueue.count + tcp.receiveQueue.count > 0 {
      words.append("(\(tcp.receiveQueue.count) bytes to read, \(tcp.sendQueue.count) to send)")
    }
    if let backlog { words.append("listening (backlog \(backlog))") }
    return words.joined(separator: " ")
  }
}

/// An advisory lock on a file, as /proc/<pid>/fdinfo lists it.
public struct FileLockImage: Codable, Sendable, Equatable {
  public enum Kind: String, Codable, Sendable {
    /// flock(2): held by the open file description, on the whole file.
    case flock
    /// fcntl(F_SETLK): held by the process, on a byte range.
    case posix
    /// fcntl(F_OFD_SETLK): held by the open file description, on a byte range.
    case openFileDescription
    /// fcntl(F_SETLEASE): a read or write lease held by the open file description.
    case lease
  }
  public var kind: Kind
  public var write: Bool
  public var start: Int64
  /// 0: to the end of the file, however long it grows.
  public var length: Int64

  public init(kind: Kind, write: Bool, start: Int64, length: Int64) {
    self.kind = kind
    self.write = write
    self.start = start
    self.length = length
  }
}

/// A POSIX message queue of the container's IPC namespace, with what waited in it.
public struct MessageQueueImage: Codable, Sendable, Equatable {
  /// Its name without the leading slash.
  public var name: String
  /// Permission bits, owner.
  public var mode: UInt32
  public var uid: UInt32
  public var gid: UInt32
  public var maxMessages: Int
  public var messageSize: Int
  /// Unlinked (mq_unlink) while still open: it is made again and unlinked again.
  public var unlinked: Bool
  /// In queue order.
  public var messages: [QueuedMessage]

  public struct QueuedMessage: Codable, Sendable, Equatable {
    public var priority: UInt32
    public var data: Data

    public init(priority: UInt32, data: Data) {
      self.priority = priority
      self.data = data
    }
  }

  public init(
    name: String, mode: UInt32, uid: UInt32, gid: UInt32, maxMessages: Int, messageSize: Int, unlinked: Bool,
    messages: [QueuedMessage]
  ) {
    self.name = name
    self.mode = mode
    self.uid = uid
    self.gid = gid
    self.maxMessages = maxMessages
    self.messageSize = messageSize
    self.unlinked = unlinked
    self.messages = messages
  }
}

/// Who an open file description signals when I/O is possible (fcntl F_SETOWN_EX, F_SETSIG).
public struct AsyncOwnerImage: Codable, Sendable, Equatable {
  /// F_OWNER_TID (0), F_OWNER_PID (1) or F_OWNER_PGRP (2).
  public var type: Int32
  /// The thread, process or process group: the host's id while capturing, the container's in
  /// the image; 0 when nobody is set.
  public var id: Int32
  /// The signal sent (0: SIGIO without siginfo details).
  public var signal: Int32

  public init(type: Int32, id: Int32, signal: Int32) {
    self.type = type
    self.id = id
    self.signal = signal
  }
}

/// A descriptor of /dev/net/tun (``DescriptorImage/Kind/tun``).
public struct TunDescriptorImage: Codable, Sendable, Equatable {
  /// The device it is attached to (a link of the container's network namespace); nil when
  /// it is attached to none.
  public var device: String?
  /// TUNGETIFF's flags: IFF_TUN or IFF_TAP, IFF_NO_PI, IFF_VNET_HDR, IFF_MULTI_QUEUE...
  public var flags: UInt32
  /// TUNGETSNDBUF.
  public var sendBuffer: Int32
  /// TUNGETVNETHDRSZ.
  public var vnetHeaderSize: Int32

  public init(device: String?, flags: UInt32, sendBuffer: Int32, vnetHeaderSize: Int32) {
    (self.device, self.flags, self.sendBuffer, self.vnetHeaderSize) = (device, flags, sendBuffer, vnetHeaderSize)
  }
}

/// What a packet socket (AF_PACKET) holds beyond its type, ethertype and options.
public struct PacketSocketImage: Codable, Sendable, Equatable {
  /// The link it is bound to (nil: every link).
  public var link: String?
  /// PACKET_ADD_MEMBERSHIP, each as often as it was added.
  public var memberships: [PacketMembershipImage]

  public init(link: String?, memberships: [PacketMembershipImage]) {
    (self.link, self.memberships) = (link, memberships)
  }

  var isValid: Bool {
    (link.map(PacketSocketImage.isLinkName) ?? true) && memberships.count <= 16
      && memberships.allSatisfy {
        Self.isLinkName($0.link) && $0.address.count <= 8 && (1...64).contains($0.count) && $0.type <= 3
      }
  }

  static func isLinkName(_ name: String) -> Bool { !name.isEmpty && name.utf8.count < 16 && !name.contains("/") }
}

/// One membership of a packet socket (struct packet_mreq): PACKET_MR_MULTICAST 0,
/// PACKET_MR_PROMISC 1, PACKET_MR_ALLMULTI 2, PACKET_MR_UNICAST 3.
public struct PacketMembershipImage: Codable, Sendable, Equatable {
  public var link: String
  public var type: UInt16
  public var address: Data
  /// How many times it was added (each counts in the link's promiscuity or lists).
  public var count: UInt32

  public init(link: String, type: UInt16, address: Data, count: UInt32) {
    (self.link, self.type, self.address, self.count) = (link, type, address, count)
  }
}
