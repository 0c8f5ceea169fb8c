import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

// A unix connection carries who made it (SO_PEERCRED): the process that made a socketpair,
// for both ends; for a connection a listener accepted, the client's process for the
// accepted end and the listener's (as it was when it listened) for the client's. So the
// restore makes each connection before any descriptor is placed, in those processes, with
// the effective ids they had then, and ckcont holds the ends until their holders take them
// (``FileBatch/prepareSocketPairs()``). A maker outside the container (pid 0) is ckcont;
// without credentials in the bundle, the first process holding an end makes it.

/// The container's connected unix sockets, made by their makers and held by ckcont.
final class UnixConnections {
  /// Socket inode -> ckcont's descriptor of that end, until its holder takes it.
  private var ends: [UInt64: Int32] = [:]
  private let injectors: [Int32: Injector]
  /// The ids of the container's user namespace, which the makers' ids are set in.
  private let userMaps: UserNamespaceMaps?
  private let log: Logger
  /// Every unix socket the processes hold, by inode, and the first process holding each.
  private let sockets: [UInt64: SocketImage]
  private let holders: [UInt64: Int32]
  /// The sockets in the order the processes hold them.
  private let order: [UInt64]

  init(tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector], userMaps: UserNamespaceMaps?, log: Logger) {
    var sockets: [UInt64: SocketImage] = [:]
    var holders: [UInt64: Int32] = [:]
    var order: [UInt64] = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let socket = descriptor.socket, socket.family == AF_UNIX, let inode = socket.inode,
          holders[inode] == nil
        else { continue }
        sockets[inode] = socket
        holders[inode] = task.entry.pid
        order.append(inode)
      }
    }
    (self.sockets, self.holders, self.order) = (sockets, holders, order)
    self.injectors = injectors
    self.userMaps = userMaps
    self.log = log
  }

  deinit { for fd in ends.values { close(fd) } }

  /// Makes every connection, each once, and writes what waited in each end into its peer.
  func makeAll() throws {
    for inode in order {
      guard ends[inode] == nil, let socket = sockets[inode], let peerInode = socket.peerInode else { continue }
      let peer = sockets[peerInode]
      let made = try make(socket, inode: inode, peer: peer)
      ends[inode] = made.end
      ends[peerInode] = made.peer
      try Self.fill(socket, inode: inode, through: made.peer)
      if let peer { try Self.fill(peer, inode: peerInode, through: made.end) }
      if socket.peerOutside == true {
        // The peer outside: it wrote what waited, then goes.
        close(made.peer)
        ends[peerInode] = nil
      }
    }
  }

  /// ckcont's descriptor of socket `inode`, handed to the caller (once).
  func take(_ inode: UInt64) -> OwnedDescriptor? {
    ends.removeValue(forKey: inode).map { OwnedDescriptor(adopting: $0) }
  }

  /// Who makes (part of) a connection: a restored process, with the ids to take for it, or
  /// ckcont.
  private enum Maker {
    case process(Injector, ids: MakerIDs?)
    case ckcont
  }

  private func maker(_ credentials: PeerCredentials?, holder inode: UInt64) -> Maker {
    guard let credentials else {
      return holders[inode].flatMap { injectors[$0] }.map { .process($0, ids: nil) } ?? .ckcont
    }
    guard credentials.pid != 0, let injector = injectors[credentials.pid] else { return .ckcont }
    return .process(injector, ids: ids(credentials))
  }

  /// The process of `maker`, or the first holder of socket `inode` when ckcont would be it.
  private func process(_ maker: Maker, orHolder inode: UInt64) -> (Injector, MakerIDs?)? {
    if case .process(let injector, let ids) = maker { return (injector, ids) }
    return holders[inode].flatMap { injectors[$0] }.map { ($0, nil) }
  }

  /// The ids a maker takes for the while, as its user namespace names them.
  struct MakerIDs {
    var uid: UInt32
    var gid: UInt32
    /// Its supplementary groups (SO_PEERGROUPS); nil: as they are.
    var groups: [UInt32]?
  }

  /// The maker's ids as its user namespace names them; nil for root's without groups kept
  /// (what the restored processes have until their own credentials are set) or ids the
  /// namespace cannot name. Groups it cannot name, or may not set, stay as they are (a -v
  /// line says so).
  private func ids(_ credentials: PeerCredentials) -> MakerIDs? {
    var ids = MakerIDs(uid: credentials.uid, gid: credentials.gid, groups: credentials.groups)
    if let userMaps {
      guard let inside = UserNamespaceMaps.inside(ids.uid, in: userMaps.uids),
        let insideGroup = UserNamespaceMaps.inside(ids.gid, in: userMaps.gids)
      else { return nil }
      (ids.uid, ids.gid) = (inside, insideGroup)
      let groups = ids.groups?.compactMap { UserNamespaceMaps.inside($0, in: userMaps.gids) }
      if groups?.count != ids.groups?.count || !userMaps.setgroupsAllowed && ids.groups != nil {
        log.debug(
          "a connection of process \(credentials.pid): its groups \(ids.groups ?? []) cannot be set in its user namespace"
        )
        ids.groups = nil
      } else {
        ids.groups = groups
      }
    }
    return ids.uid == 0 && ids.gid == 0 && ids.groups == nil ? nil : ids
  }

  /// The two ends of the connection of `socket` with its peer. One a listener accepted is
  /// made through a listener bound to the listener's name for the moment, so that the
  /// accepted end has that name (getsockname) and the client sees it as its peer's
  /// (getpeername); any other is a socketpair, whose ends have no names, as they had.
  private func make(_ socket: SocketImage, inode: UInt64, peer: SocketImage?) throws -> (end: Int32, peer: Int32) {
    let type = socket.type | Int32(SOCK_CLOEXEC.rawValue)
    if let peer, let accepted = Self.acceptedEnd(socket, peer), let name = accepted.address,
      let acceptedInode = accepted.inode
    {
      let client = accepted.inode == socket.inode ? peer : socket
      // A maker outside or gone: the holder of that end plays it, so that the names stay.
      if let server = process(maker(client.peerCredentials, holder: acceptedInode), orHolder: acceptedInode),
        let caller = process(
          maker(accepted.peerCredentials, holder: client.inode ?? acceptedInode),
          orHolder: client.inode ?? acceptedInode),
        let made = try connectThroughListener(
          named: name, type: type, listener: server, client: caller,
          what: "the connection of socket:[\(inode)] through \(accepted.description)")
      {
        return accepted.inode == socket.inode ? (made.server, made.client) : (made.client, made.server)
      }
    }
    let what = "socketpair for socket:[\(inode)]"
    switch maker(socket.peerCredentials ?? peer?.peerCredentials, holder: inode) {
    case .ckcont:
      var fds: [Int32] = [-1, -1]
      try syscallChecked("socketpair", what) { Glibc.socketpair(AF_UNIX, type, 0, &fds) }
      return (fds[0], fds[1])
    case .process(let injector, let ids):
      return try asMaker(injector, ids: ids) {
        injector.resetData()
        let pair = try injector.reserve(8)
        try injector.call(.socketpair(family: AF_UNIX, type: type, into: pair), what)
        let fds = try injector.read(8, at: pair).withUnsafeBytes {
          (Int64($0.load(as: Int32.self)), Int64($0.load(fromByteOffset: 4, as: Int32.self)))
        }
        return (try pull(fds.0, from: injector), try pull(fds.1, from: injector))
      }
    }
  }

  /// A connection accepted by a listener bound to `name` for the moment: the listener's
  /// process binds and listens, the client's connects (its own process, where it can reach
  /// the name; else the listener's), the listener's accepts. A path is taken for that moment
  /// (whatever is there moved aside); an abstract name something else holds cannot be: nil,
  /// and the caller makes a socketpair (the names are lost, as a -v line says).
  private func connectThroughListener(
    named name: Data, type: Int32, listener server: (Injector, MakerIDs?),
    client caller: (Injector, MakerIDs?), what: String
  ) throws -> (client: Int32, server: Int32)? {
    let (injector, ids) = server
    let sockaddr = Data([UInt8(AF_UNIX), 0]) + name
    let isPath = name.first == UInt8(ascii: "/")
    injector.resetData()
    let address = try sockaddr.withUnsafeBytes { try injector.put($0) }
    let path = isPath ? try injector.put(string: String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)) : 0
    let putBack = isPath ? try Self.moveAside(name, seenBy: injector.pid, tag: -1) : nil
    let listener = try injector.call(.socket(family: AF_UNIX, type: type), "socket: listener for \(what)")
    var made: (client: Int32, server: Int32)?
    var failure: (any Error)?
    do {
      do {
        try asMaker(injector, ids: ids) {
          try injector.call(.bind(listener, address, length: sockaddr.count), "bind: listener for \(what)")
          try injector.call(.listen(listener, backlog: 1), "listen: \(what)")
        }
      } catch  where !isPath {
        try injector.call(.close(listener), "close: listener for \(what)")
        log.debug("\(what): its abstract name is taken; made as a socketpair, without names")
        return nil
      }
      do {
        let client = try connect(to: sockaddr, type: type, as: caller, orFrom: injector, what: what)
        let accepted = try injector.call(
          .accept4(listener, flags: Int32(SOCK_CLOEXEC.rawValue)), "accept4: \(what)")
        made = (client, try pull(accepted, from: injector))
      } catch { failure = error }
      if isPath { try injector.call(.unlink(path), "unlink: listener for \(what)") }
    } catch { failure = failure ?? error }
    try injector.call(.close(listener), "close: listener for \(what)")
    try putBack?()
    guard let made else { throw failure ?? CKError(.failed, "\(what): not made") }
    return made
  }

  /// ckcont's descriptor of a new socket connected to `sockaddr`, by the client's process
  /// with its ids; by `fallback` (the listener's process) when the client's cannot reach
  /// the name (another mount or network namespace): then SO_PEERCRED names that one.
  private func connect(
    to sockaddr: Data, type: Int32, as caller: (Injector, MakerIDs?), orFrom fallback: Injector,
    what: String
  ) throws -> Int32 {
    let (injector, ids) = caller
    if injector.pid != fallback.pid {
      do {
        return try connect(to: sockaddr, type: type, in: injector, ids: ids, what: what)
      } catch {
        log.debug("\(what): process \(injector.pid) cannot reach the name (\(error)); connected from the listener's")
      }
    }
    return try connect(
      to: sockaddr, type: type, in: fallback, ids: injector.pid == fallback.pid ? ids : nil, what: what)
  }

  private func connect(
    to sockaddr: Data, type: Int32, in injector: Injector, ids: MakerIDs?, what: String
  ) throws -> Int32 {
    let address = try sockaddr.withUnsafeBytes { try injector.put($0) }
    let client = try injector.call(.socket(family: AF_UNIX, type: type), "socket: client of \(what)")
    do {
      try asMaker(injector, ids: ids) {
        try injector.call(.connect(client, address, length: sockaddr.count), "connect: \(what)")
      }
    } catch {
      try injector.call(.close(client), "close: client of \(what)")
      throw error
    }
    return try pull(client, from: injector)
  }

  /// Runs `body` in a process whose effective ids are `ids` for the while (nil: as they
  /// are), with its capabilities kept (SECBIT_NO_SETUID_FIXUP) so that it may change them
  /// back: the kernel records the effective ids of who connects, listens or makes a pair.
  @discardableResult
  private func asMaker<T>(_ injector: Injector, ids: MakerIDs?, _ body: () throws -> T) throws -> T {
    guard let ids else { return try body() }
    let unchanged = UInt32.max
    let bits = UInt32(truncatingIfNeeded: try injector.call(.prctl(.getSecurebits)))
    try injector.call(.prctl(.setSecurebits(bits | UInt32(CK_SECBIT_NO_SETUID_FIXUP))))
    let ownGroups = try ids.groups.map { try setGroups($0, of: injector) }
    try injector.call(
      .setresgid(unchanged, ids.gid, unchanged), "setresgid(-1, \(ids.gid), -1) of a connection's maker")
    try injector.call(
      .setresuid(unchanged, ids.uid, unchanged), "setresuid(-1, \(ids.uid), -1) of a connection's maker")
    let result = Result { try body() }
    try injector.call(.setresuid(unchanged, 0, unchanged), "setresuid back")
    try injector.call(.setresgid(unchanged, 0, unchanged), "setresgid back")
    if let ownGroups { _ = try setGroups(ownGroups, of: injector) }
    try injector.call(.prctl(.setSecurebits(bits)))
    // A change of effective ids made it undumpable: others could not take its descriptors.
    try injector.call(.prctl(.setDumpable(1)))
    return try result.get()
  }

  /// Sets the supplementary groups of the process behind `injector`; returns those it had.
  /// Uses the data area beyond what the caller put there.
  private func setGroups(_ groups: [UInt32], of injector: Injector) throws -> [UInt32] {
    let count = Int(try injector.call(.getgroups(0, 0), "getgroups of a connection's maker"))
    let room = try injector.reserve(max(count, 1) * MemoryLayout<UInt32>.size)
    _ = try injector.call(.getgroups(count, room), "getgroups of a connection's maker")
    let had = try injector.read(count * MemoryLayout<UInt32>.size, at: room).withUnsafeBytes {
      Array($0.bindMemory(to: UInt32.self))
    }
    let list = try groups.withUnsafeBytes { try injector.put($0) }
    try injector.call(.setgroups(groups.count, list), "setgroups \(groups) of a connection's maker")
    return had
  }

  /// ckcont's copy of the process's `fd`, closed in the process.
  private func pull(_ fd: Int64, from injector: Injector) throws -> Int32 {
    let ours = try OwnedDescriptor(copying: Int32(fd), ofProcess: injector.pid)
    try injector.call(.close(fd))
    return ours.take()
  }

  /// Writes what waited in socket `inode` into it through its peer's end (ckcont's `peer`).
  /// What came with descriptors in flight waits for them: see ``PassedInFlight``.
  private static func fill(_ socket: SocketImage, inode: UInt64, through peer: Int32) throws {
    let waiting = (socket.queued.map { [$0] } ?? []) + (socket.messages ?? [])
    guard socket.passed == nil else { return }
    // A stream's bytes may go in several sends; a message must go in one.
    for message in waiting {
      try message.withUnsafeBytes { bytes in
        var done = 0
        repeat {
          done += try syscallChecked("send", "what waited in socket:[\(inode)]") {
            send(peer, bytes.baseAddress.map { $0 + done }, bytes.count - done, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
          }
        } while done < bytes.count
      }
    }
  }

  /// Of a connected stream or seqpacket pair, the end a listener accepted: the one with a
  /// name when its peer has none (a client that bound a name of its own leaves both named,
  /// and which is which is not known: nil, a socketpair).
  static func acceptedEnd(_ socket: SocketImage, _ peer: SocketImage) -> SocketImage? {
    guard socket.type != Int32(SOCK_DGRAM.rawValue), socket.type == peer.type,
      (socket.address == nil) != (peer.address == nil)
    else { return nil }
    let named = socket.address == nil ? peer : socket
    guard named.nameUnlinked != true else { return nil }
    return named
  }

  /// Moves whatever is at the path `name` names, as process `hostPid` sees it, aside for a
  /// bind there; returns what puts it back, nil when the path is free. `tag` keeps the
  /// names of several moves apart.
  static func moveAside(_ name: Data, seenBy hostPid: Int32, tag: Int32) throws -> (() throws -> Void)? {
    let path = String(decoding: name.prefix { $0 != 0 }, as: UTF8.self)
    let root = try RootedDirectory("/proc/\(hostPid)/root", name: "the root of task \(hostPid)")
    // The directory stays open: putting back goes where the file went, whatever happens
    // to the path in between.
    let directory = try root.open(
      "/" + path.split(separator: "/").dropLast().joined(separator: "/"), flags: OpenFlags.path | O_DIRECTORY)
    guard let entry = path.split(separator: "/").last.map(String.init), entry != "..", entry != "." else { return nil }
    var st = stat()
    guard fstatat(directory.raw, entry, &st, AT_SYMLINK_NOFOLLOW) == 0 else { return nil }
    let aside = entry + ".ckcont-aside-\(getpid())-\(tag)"
    try syscallChecked("rename", "\(path) aside for a bind") { renameat(directory.raw, entry, directory.raw, aside) }
    let held = directory.take()
    return {
      defer { close(held) }
      try syscallChecked("rename", "\(aside) back to \(path)") { renameat(held, aside, held, entry) }
    }
  }
}

extension FileBatch {
  /// Connected unix sockets: each end made before (``UnixConnections``), taken from ckcont.
  func prepareSocketPairs() throws {
    for descriptor in image.descriptors where descriptor.sharesWith == nil && descriptor.kind == .socket {
      guard heldElsewhere(descriptor) == nil, let socket = descriptor.socket, socket.peerInode != nil,
        let inode = socket.inode
      else { continue }
      guard let ours = shared.connections?.take(inode) else {
        throw CKError(.failed, "task \(injector.pid): socket:[\(inode)] of fd \(descriptor.fd) was not made")
      }
      let end = try move(try injector.receive(ours.raw, what: "socket:[\(inode)]"), to: prepared.takeHigh())
      try injector.call(.fcntl(end, .setFlags(descriptor.flags & ~O_ASYNC)), "F_SETFL fd \(descriptor.fd)")
      prepared.descriptions[descriptor.fd] = end
    }
  }
}
