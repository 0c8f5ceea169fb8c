import CKShim
import CSnapshotShim
import Foundation
import Glibc

extension StateSnapshot {
  /// Socket options compared: (level, name, option).
  static let socketOptions: [(level: Int32, option: Int32, name: String)] = [
    (SOL_SOCKET, 3, "SO_TYPE"), (SOL_SOCKET, 38, "SO_PROTOCOL"), (SOL_SOCKET, 39, "SO_DOMAIN"),
    (SOL_SOCKET, 2, "SO_REUSEADDR"),
    (SOL_SOCKET, 15, "SO_REUSEPORT"), (SOL_SOCKET, 9, "SO_KEEPALIVE"), (SOL_SOCKET, 6, "SO_BROADCAST"),
    (SOL_SOCKET, 12, "SO_PRIORITY"), (SOL_SOCKET, 36, "SO_MARK"), (SOL_SOCKET, 16, "SO_PASSCRED"),
    (SOL_SOCKET, 30, "SO_ACCEPTCONN"), (SOL_SOCKET, 10, "SO_OOBINLINE"), (SOL_SOCKET, 18, "SO_RCVLOWAT"),
    (SOL_SOCKET, 1, "SO_DEBUG"), (SOL_SOCKET, 5, "SO_DONTROUTE"), (SOL_SOCKET, 11, "SO_NO_CHECK"),
    (SOL_SOCKET, 29, "SO_TIMESTAMP"), (SOL_SOCKET, 35, "SO_TIMESTAMPNS"), (SOL_SOCKET, 37, "SO_TIMESTAMPING"),
    (SOL_SOCKET, 40, "SO_RXQ_OVFL"), (SOL_SOCKET, 42, "SO_PEEK_OFF"), (SOL_SOCKET, 44, "SO_LOCK_FILTER"),
    (SOL_SOCKET, 34, "SO_PASSSEC"), (SOL_SOCKET, 60, "SO_ZEROCOPY"),
  ]

  /// Options of internet sockets, by level (TCP's only for stream sockets; the multicast
  /// ones only for datagram sockets, as the kernel sets them on an accepted connection).
  static let ipOptions: [(level: Int32, option: Int32, name: String)] = [
    (0, 1, "IP_TOS"), (0, 2, "IP_TTL"), (0, 8, "IP_PKTINFO"), (0, 10, "IP_MTU_DISCOVER"), (0, 11, "IP_RECVERR"),
    (0, 12, "IP_RECVTTL"), (0, 13, "IP_RECVTOS"), (0, 15, "IP_FREEBIND"), (0, 19, "IP_TRANSPARENT"),
    (0, 24, "IP_BIND_ADDRESS_NO_PORT"),
  ]
  static let ipv6Options: [(level: Int32, option: Int32, name: String)] = [
    (41, 26, "IPV6_V6ONLY"), (41, 16, "IPV6_UNICAST_HOPS"), (41, 49, "IPV6_RECVPKTINFO"), (41, 66, "IPV6_RECVTCLASS"),
    (41, 67, "IPV6_TCLASS"), (41, 75, "IPV6_TRANSPARENT"), (41, 78, "IPV6_FREEBIND"), (41, 23, "IPV6_MTU_DISCOVER"),
  ]
  static let multicastOptions: [(level: Int32, option: Int32, name: String)] = [
    (0, 33, "IP_MULTICAST_TTL"), (0, 34, "IP_MULTICAST_LOOP"),
  ]
  static let multicastV6Options: [(level: Int32, option: Int32, name: String)] = [
    (41, 18, "IPV6_MULTICAST_HOPS"), (41, 19, "IPV6_MULTICAST_LOOP"),
  ]
  static let tcpOptions: [(level: Int32, option: Int32, name: String)] = [
    (6, 1, "TCP_NODELAY"), (6, 3, "TCP_CORK"), (6, 4, "TCP_KEEPIDLE"), (6, 5, "TCP_KEEPINTVL"), (6, 6, "TCP_KEEPCNT"),
    (6, 7, "TCP_SYNCNT"), (6, 8, "TCP_LINGER2"), (6, 9, "TCP_DEFER_ACCEPT"), (6, 16, "TCP_THIN_LINEAR_TIMEOUTS"),
    (6, 18, "TCP_USER_TIMEOUT"), (6, 25, "TCP_NOTSENT_LOWAT"),
  ]

  /// Options of each socket, through a copy taken with pidfd_getfd; its names, queues and,
  /// for unix sockets, the peer as a relation between descriptors.
  mutating func readSockets(_ sockets: [SnapshotDescriptor], _ tasks: SnapshotTasks) {
    let peers = Self.unixPeers(sockets)
    var holders: [String: [String]] = [:]
    for socket in sockets { holders[socket.link, default: []].append(socket.name) }
    var pidfds: [Int32: Int32] = [:]
    defer { for fd in pidfds.values { close(fd) } }
    for socket in sockets {
      let subject = socket.name
      if pidfds[socket.task.hostPid] == nil { pidfds[socket.task.hostPid] = ck_pidfd_open(socket.task.hostPid, 0) }
      let copy = ck_pidfd_getfd(pidfds[socket.task.hostPid] ?? -1, socket.fd, 0)
      guard copy >= 0 else {
        record(subject, "socket", "(pidfd_getfd: \(String(cString: strerror(errno))))")
        continue
      }
      defer { close(copy) }
      var values: [String] = []
      for entry in Self.socketOptions {
        values.append("\(entry.name) \(Self.intOption(copy, entry.level, entry.option))")
      }
      let domain = Self.intOption(copy, SOL_SOCKET, 39)
      let type = Self.intOption(copy, SOL_SOCKET, 3)
      if domain == "\(AF_INET)" || domain == "\(AF_INET6)" {
        let stream = type == "\(SOCK_STREAM.rawValue)"
        var table = Self.ipOptions + (stream ? Self.tcpOptions : Self.multicastOptions)
        if domain == "\(AF_INET6)" { table += Self.ipv6Options + (stream ? [] : Self.multicastV6Options) }
        for entry in table {
          values.append("\(entry.name) \(Self.intOption(copy, entry.level, entry.option))")
        }
        if stream {
          values.append("TCP_CONGESTION \(Self.textOption(copy, 6, 13))")
          var info = [UInt8](repeating: 0, count: 256)
          var length = socklen_t(info.count)
          if getsockopt(copy, Int32(IPPROTO_TCP), TCP_INFO, &info, &length) == 0 {
            values.append("tcp state \(info[0])")
          }
        }
      }
      values.append("SO_BINDTODEVICE \(Self.textOption(copy, SOL_SOCKET, 25))")
      for (option, name) in [(Int32(20), "SO_RCVTIMEO"), (21, "SO_SNDTIMEO")] {
        var time = (Int64(0), Int64(0))
        var timeLength = socklen_t(16)
        if getsockopt(copy, SOL_SOCKET, option, &time, &timeLength) == 0 {
          values.append("\(name) \(time.0),\(time.1)")
        }
      }
      // SO_GET_FILTER with length 0 tells the number of instructions.
      var filterLength = socklen_t(0)
      values.append(
        "filter \(getsockopt(copy, SOL_SOCKET, 26, nil, &filterLength) == 0 ? String(filterLength) : "(\(errno))")")
      var linger = (Int32(0), Int32(0))
      var lingerLength = socklen_t(8)
      if getsockopt(copy, SOL_SOCKET, SO_LINGER, &linger, &lingerLength) == 0 {
        values.append("SO_LINGER \(linger.0),\(linger.1)")
      }
      record(subject, "options", values.joined(separator: " "))
      // Apart: the kernel tunes a TCP connection's buffers to its traffic, unless locked.
      record(
        subject, "buffers",
        "SO_RCVBUF \(Self.intOption(copy, SOL_SOCKET, 8)) SO_SNDBUF \(Self.intOption(copy, SOL_SOCKET, 7)) "
          + "SO_BUF_LOCK \(Self.intOption(copy, SOL_SOCKET, 72))")
      if domain == "\(AF_UNIX)" { record(subject, "peer credentials", Self.peerCredentials(copy, tasks)) }
      record(subject, "name", Self.address(copy, getsockname))
      record(subject, "peer name", Self.address(copy, getpeername))
      var inq: Int32 = 0
      var outq: Int32 = 0
      ckt_socket_queues(copy, &inq, &outq)
      record(subject, "queues", "in \(inq) out \(outq)")
      if let peer = peers[socket.link] {
        let value =
          peer == "socket:[0]"
          ? "none"
          : holders[peer].map { $0.sorted(by: Self.naturalOrder).joined(separator: ", ") }
            ?? "not held by the container"
        record(subject, "unix peer", value)
      }
    }
  }

  /// SO_PEERCRED: the process that made the connection, by its pid in the container (one
  /// outside it, or gone, alike: a restore cannot make a dead pid again), and its ids; and
  /// SO_PEERGROUPS, its supplementary groups.
  static func peerCredentials(_ fd: Int32, _ tasks: SnapshotTasks) -> String {
    var cred = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))
    var length = socklen_t(MemoryLayout.size(ofValue: cred))
    guard getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &length) == 0 else { return "(\(errno))" }
    let maker = tasks.containerPid[cred.pid].map { "process \($0)" } ?? "none, outside or gone"
    // SO_PEERGROUPS: its supplementary groups then.
    var groups = [UInt32](repeating: 0, count: 64)
    var groupsLength = socklen_t(groups.count * 4)
    let groupList =
      getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, &groups, &groupsLength) == 0
      ? groups.prefix(Int(groupsLength) / 4).map(String.init).joined(separator: ",") : "(\(errno))"
    return "\(maker) uid \(Int32(bitPattern: cred.uid)) gid \(Int32(bitPattern: cred.gid)) groups \(groupList)"
  }

  /// A name option (a device, a congestion control), or its errno.
  static func textOption(_ fd: Int32, _ level: Int32, _ option: Int32) -> String {
    var name = [UInt8](repeating: 0, count: 32)
    var length = socklen_t(name.count)
    guard getsockopt(fd, level, option, &name, &length) == 0 else { return "(\(errno))" }
    return String(decoding: name.prefix(Int(length)).prefix { $0 != 0 }, as: UTF8.self)
  }

  static func intOption(_ fd: Int32, _ level: Int32, _ option: Int32) -> String {
    var value: Int32 = 0
    var length = socklen_t(4)
    return getsockopt(fd, level, option, &value, &length) == 0 ? String(value) : "(\(errno))"
  }

  /// getsockname or getpeername: a unix name (`@` for abstract), an address and port, a
  /// netlink port id, or `none`.
  static func address(
    _ fd: Int32, _ call: (Int32, UnsafeMutablePointer<sockaddr>, UnsafeMutablePointer<socklen_t>) -> Int32
  )
    -> String
  {
    var bytes = [UInt8](repeating: 0, count: 128)
    var length = socklen_t(bytes.count)
    let result = bytes.withUnsafeMutableBytes {
      call(fd, $0.baseAddress!.assumingMemoryBound(to: sockaddr.self), &length)
    }
    guard result == 0 else { return "none" }
    let family = Int32(bytes[0]) | Int32(bytes[1]) << 8
    let port = Int(bytes[2]) << 8 | Int(bytes[3])
    switch family {
    case AF_UNIX:
      guard length > 2 else { return "unix unnamed" }
      let path = bytes[2..<Int(length)]
      if path.first == 0 { return "unix @" + String(decoding: path.dropFirst(), as: UTF8.self) }
      return "unix " + String(decoding: path.prefix { $0 != 0 }, as: UTF8.self)
    case AF_INET:
      return "inet \(bytes[4...7].map(String.init).joined(separator: ".")):\(port)"
    case AF_INET6:
      let words = stride(from: 8, to: 24, by: 2).map { String(Int(bytes[$0]) << 8 | Int(bytes[$0 + 1]), radix: 16) }
      return "inet6 [\(words.joined(separator: ":"))]:\(port)"
    case AF_NETLINK:
      let portID = bytes[4...7].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
      let groups = bytes[8...11].reversed().reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
      return "netlink port \(portID) groups \(groups)"
    default:
      return "family \(family)"
    }
  }

  /// Unix socket -> its peer (`socket:[N]` links, `socket:[0]` for none), from ss(8) run in
  /// each network namespace the sockets' tasks are in: /proc/net/unix does not show peers.
  static func unixPeers(_ sockets: [SnapshotDescriptor]) -> [String: String] {
    var result: [String: String] = [:]
    var seen: Set<String> = []
    for socket in sockets where seen.insert(ProcFile.link("/proc/\(socket.task.hostPid)/ns/net")).inserted {
      let output = run(["/usr/bin/nsenter", "-t", "\(socket.task.hostPid)", "-n", "/usr/bin/ss", "-xaHn"]).stdout
      for line in output.split(separator: "\n") {
        let words = line.split(separator: " ")
        guard words.count >= 8, let local = UInt64(words[words.count - 3]), let peer = UInt64(words[words.count - 1])
        else { continue }
        result["socket:[\(local)]"] = "socket:[\(peer)]"
      }
    }
    return result
  }
}
