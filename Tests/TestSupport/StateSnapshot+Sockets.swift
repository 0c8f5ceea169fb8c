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
        values.append("IP_TOS \(Self.intOption(copy, Int32(IPPROTO_IP), 1))")
        if domain == "\(AF_INET6)" { values.append("IPV6_V6ONLY \(Self.intOption(copy, Int32(IPPROTO_IPV6), 26))") }
        if type == "\(SOCK_STREAM.rawValue)" {
          values.append("TCP_NODELAY \(Self.intOption(copy, Int32(IPPROTO_TCP), 1))")
          var info = [UInt8](repeating: 0, count: 256)
          var length = socklen_t(info.count)
          if getsockopt(copy, Int32(IPPROTO_TCP), 11 /* TCP_INFO */, &info, &length) == 0 {
            values.append("tcp state \(info[0])")
          }
        }
      }
      var linger = (Int32(0), Int32(0))
      var lingerLength = socklen_t(8)
      if getsockopt(copy, SOL_SOCKET, 13 /* SO_LINGER */, &linger, &lingerLength) == 0 {
        values.append("SO_LINGER \(linger.0),\(linger.1)")
      }
      record(subject, "options", values.joined(separator: " "))
      // Apart: the kernel tunes a TCP connection's buffers to its traffic.
      record(
        subject, "buffers",
        "SO_RCVBUF \(Self.intOption(copy, SOL_SOCKET, 8)) SO_SNDBUF \(Self.intOption(copy, SOL_SOCKET, 7))")
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
