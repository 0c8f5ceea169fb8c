import Foundation

/// One socket option a bundle carries: setsockopt(fd, level, name, value). An integer option
/// has `value` and no `bytes`; any other (a struct linger or timeval, a device or congestion
/// control name, a classic BPF filter) has its bytes as getsockopt(2) gave them.
public struct SocketOption: Codable, Sendable, Equatable {
  public var level: Int32
  public var name: Int32
  public var value: Int32
  public var bytes: Data?

  public init(level: Int32, name: Int32, value: Int32, bytes: Data? = nil) {
    self.level = level
    self.name = name
    self.value = value
    self.bytes = bytes
  }

  /// Its entry in ``SocketOptionKind/all`` (nil for an option no ckcont saves).
  public var kind: SocketOptionKind? { SocketOptionKind.byLevelAndName[[level, name]] }

  /// Whether a restore can set it: a known option whose value has the shape it needs.
  public var isValid: Bool {
    guard let kind else { return false }
    switch kind.shape {
    case .int: return bytes == nil
    case .bytes(let size): return bytes?.count == size
    case .text(let longest): return (bytes?.count).map { (1...longest).contains($0) } ?? false
    case .filter:
      // struct sock_filter is 8 bytes; BPF_MAXINSNS instructions at most.
      return (bytes?.count).map { $0 > 0 && $0 % 8 == 0 && $0 / 8 <= 4096 } ?? false
    }
  }
}

/// The socket options ckcont saves and sets again, in the order the restore sets them, with
/// the shape of their values. The dump saves an option when it differs from a new socket's
/// of the same family, type and protocol (see the capture in
/// `Sources/Checkpoint/Files/SocketOptions.swift`).
public struct SocketOptionKind: Sendable {
  /// What setsockopt(2) takes.
  public enum Shape: Sendable, Equatable {
    /// An int.
    case int
    /// A struct of this many bytes (struct linger: 8, struct timeval: 16).
    case bytes(Int)
    /// A name of at most this many bytes (IFNAMSIZ, TCP_CA_NAME_MAX).
    case text(Int)
    /// A classic BPF program: struct sock_filter instructions (SO_GET_FILTER gives them
    /// back; SO_ATTACH_FILTER takes a struct sock_fprog pointing at them).
    case filter
  }

  public var level: Int32
  public var name: Int32
  /// The option's name in the kernel's headers, for messages and `inspect`.
  public var label: String
  public var shape: Shape
  /// Set on the new socket before it is bound or connected, as the address it binds may
  /// depend on it (SO_REUSEADDR, IP_FREEBIND, SO_BINDTODEVICE...). Every other option is set
  /// at the end, once queues are filled again: a filter or a small buffer set earlier would
  /// turn away the bytes the restore puts back, and SO_PASSCRED set before connect(2) would
  /// bind a unix socket to an address of the kernel's choosing.
  public var beforeBind: Bool

  init(_ level: Int32, _ name: Int32, _ label: String, _ shape: Shape = .int, beforeBind: Bool = false) {
    self.level = level
    self.name = name
    self.label = label
    self.shape = shape
    self.beforeBind = beforeBind
  }

  public static let socket: Int32 = 1  // SOL_SOCKET
  public static let ip: Int32 = 0  // IPPROTO_IP
  static let ipv6: Int32 = 41  // IPPROTO_IPV6
  static let tcp: Int32 = 6  // IPPROTO_TCP
  static let udp: Int32 = 17  // IPPROTO_UDP
  static let udpLite: Int32 = 136  // IPPROTO_UDPLITE
  public static let raw: Int32 = 255  // SOL_RAW
  public static let icmpv6: Int32 = 58  // IPPROTO_ICMPV6
  public static let packet: Int32 = 263  // SOL_PACKET

  /// SO_SNDBUF and SO_RCVBUF: saved as getsockopt gives them (twice what was asked), set
  /// again with SO_SNDBUFFORCE and SO_RCVBUFFORCE, then SO_BUF_LOCK as it was.
  public static let sendBuffer: Int32 = 7
  public static let receiveBuffer: Int32 = 8
  public static let sendBufferForce: Int32 = 32
  public static let receiveBufferForce: Int32 = 33
  public static let bufferLock: Int32 = 72
  public static let reuseAddress: Int32 = 2
  public static let priority: Int32 = 12
  public static let tos: Int32 = 1
  /// SO_GET_FILTER reads what SO_ATTACH_FILTER attached (the same number).
  public static let attachFilter: Int32 = 26

  /// Every option saved, in the order set (numbers from asm-generic/socket.h, linux/in.h,
  /// linux/in6.h, linux/tcp.h, linux/udp.h; checked against them in CKShim).
  public static let all: [SocketOptionKind] = [
    // Before bind: what decides which address a socket may bind.
    .init(socket, reuseAddress, "SO_REUSEADDR", beforeBind: true),
    .init(socket, 15, "SO_REUSEPORT", beforeBind: true),
    .init(socket, 25, "SO_BINDTODEVICE", .text(16), beforeBind: true),
    .init(ip, 15, "IP_FREEBIND", beforeBind: true),
    .init(ip, 19, "IP_TRANSPARENT", beforeBind: true),
    .init(ip, 24, "IP_BIND_ADDRESS_NO_PORT", beforeBind: true),
    .init(ip, 51, "IP_LOCAL_PORT_RANGE", beforeBind: true),
    .init(ipv6, 26, "IPV6_V6ONLY", beforeBind: true),
    .init(ipv6, 75, "IPV6_TRANSPARENT", beforeBind: true),
    .init(ipv6, 78, "IPV6_FREEBIND", beforeBind: true),
    // IP_TOS sets SO_PRIORITY as well (rt_tos2priority): the priority comes after it.
    .init(ip, tos, "IP_TOS"),
    // Socket level.
    .init(socket, 1, "SO_DEBUG"), .init(socket, 5, "SO_DONTROUTE"), .init(socket, 6, "SO_BROADCAST"),
    .init(socket, 9, "SO_KEEPALIVE"), .init(socket, 10, "SO_OOBINLINE"), .init(socket, 11, "SO_NO_CHECK"),
    .init(socket, priority, "SO_PRIORITY"), .init(socket, 13, "SO_LINGER", .bytes(8)),
    .init(socket, 16, "SO_PASSCRED"), .init(socket, 18, "SO_RCVLOWAT"),
    .init(socket, 20, "SO_RCVTIMEO_OLD", .bytes(16)), .init(socket, 21, "SO_SNDTIMEO_OLD", .bytes(16)),
    .init(socket, 29, "SO_TIMESTAMP_OLD"), .init(socket, 34, "SO_PASSSEC"), .init(socket, 35, "SO_TIMESTAMPNS_OLD"),
    .init(socket, 36, "SO_MARK"), .init(socket, 37, "SO_TIMESTAMPING_OLD"), .init(socket, 40, "SO_RXQ_OVFL"),
    .init(socket, 41, "SO_WIFI_STATUS"), .init(socket, 42, "SO_PEEK_OFF"), .init(socket, 45, "SO_SELECT_ERR_QUEUE"),
    .init(socket, 46, "SO_BUSY_POLL"), .init(socket, 60, "SO_ZEROCOPY"), .init(socket, 63, "SO_TIMESTAMP_NEW"),
    .init(socket, 64, "SO_TIMESTAMPNS_NEW"), .init(socket, 65, "SO_TIMESTAMPING_NEW"),
    .init(socket, 69, "SO_PREFER_BUSY_POLL"), .init(socket, 70, "SO_BUSY_POLL_BUDGET"),
    .init(socket, 74, "SO_TXREHASH"), .init(socket, 75, "SO_RCVMARK"), .init(socket, 76, "SO_PASSPIDFD"),
    .init(socket, 82, "SO_RCVPRIORITY"),
    // Buffers, then their lock (forcing a size locks it).
    .init(socket, sendBuffer, "SO_SNDBUF"), .init(socket, receiveBuffer, "SO_RCVBUF"),
    .init(socket, bufferLock, "SO_BUF_LOCK"),
    // IPv4.
    .init(ip, 2, "IP_TTL"), .init(ip, 8, "IP_PKTINFO"), .init(ip, 10, "IP_MTU_DISCOVER"),
    .init(ip, 11, "IP_RECVERR"), .init(ip, 12, "IP_RECVTTL"), .init(ip, 13, "IP_RECVTOS"),
    .init(ip, 20, "IP_RECVORIGDSTADDR"), .init(ip, 22, "IP_NODEFRAG"), .init(ip, 33, "IP_MULTICAST_TTL"),
    .init(ip, 34, "IP_MULTICAST_LOOP"), .init(ip, 49, "IP_MULTICAST_ALL"),
    // IPv6.
    .init(ipv6, 16, "IPV6_UNICAST_HOPS"), .init(ipv6, 18, "IPV6_MULTICAST_HOPS"),
    .init(ipv6, 19, "IPV6_MULTICAST_LOOP"), .init(ipv6, 23, "IPV6_MTU_DISCOVER"), .init(ipv6, 25, "IPV6_RECVERR"),
    .init(ipv6, 49, "IPV6_RECVPKTINFO"), .init(ipv6, 51, "IPV6_RECVHOPLIMIT"), .init(ipv6, 62, "IPV6_DONTFRAG"),
    .init(ipv6, 66, "IPV6_RECVTCLASS"), .init(ipv6, 67, "IPV6_TCLASS"), .init(ipv6, 70, "IPV6_AUTOFLOWLABEL"),
    .init(ipv6, 74, "IPV6_RECVORIGDSTADDR"),
    // TCP.
    .init(tcp, 1, "TCP_NODELAY"), .init(tcp, 3, "TCP_CORK"), .init(tcp, 4, "TCP_KEEPIDLE"),
    .init(tcp, 5, "TCP_KEEPINTVL"), .init(tcp, 6, "TCP_KEEPCNT"), .init(tcp, 7, "TCP_SYNCNT"),
    .init(tcp, 8, "TCP_LINGER2"), .init(tcp, 9, "TCP_DEFER_ACCEPT"), .init(tcp, 13, "TCP_CONGESTION", .text(16)),
    .init(tcp, 16, "TCP_THIN_LINEAR_TIMEOUTS"), .init(tcp, 18, "TCP_USER_TIMEOUT"),
    .init(tcp, 25, "TCP_NOTSENT_LOWAT"), .init(tcp, 36, "TCP_INQ"), .init(tcp, 37, "TCP_TX_DELAY"),
    // UDP and UDP-Lite.
    .init(udp, 103, "UDP_SEGMENT"), .init(udp, 104, "UDP_GRO"),
    .init(udpLite, 10, "UDPLITE_SEND_CSCOV"), .init(udpLite, 11, "UDPLITE_RECV_CSCOV"),
    // Raw sockets: the IP header written by the program, the checksum the kernel computes,
    // the ICMP types let through.
    .init(ip, 3, "IP_HDRINCL"), .init(ipv6, 7, "IPV6_CHECKSUM"), .init(raw, 1, "ICMP_FILTER", .bytes(4)),
    .init(icmpv6, 1, "ICMP6_FILTER", .bytes(32)),
    // Packet sockets (rings are refused; PACKET_FANOUT joins a group once the socket runs).
    .init(packet, 10, "PACKET_VERSION"), .init(packet, 12, "PACKET_RESERVE"), .init(packet, 8, "PACKET_AUXDATA"),
    .init(packet, 9, "PACKET_ORIGDEV"), .init(packet, 15, "PACKET_VNET_HDR"), .init(packet, 14, "PACKET_LOSS"),
    .init(packet, 17, "PACKET_TIMESTAMP"), .init(packet, 20, "PACKET_QDISC_BYPASS"),
    .init(packet, 23, "PACKET_IGNORE_OUTGOING"), .init(packet, 18, "PACKET_FANOUT"),
    // Last: a filter sees no byte the restore puts back; locked once attached.
    .init(socket, attachFilter, "SO_ATTACH_FILTER", .filter), .init(socket, 44, "SO_LOCK_FILTER"),
  ]

  /// The kinds by [level, name].
  public static let byLevelAndName = Dictionary(uniqueKeysWithValues: all.map { ([$0.level, $0.name], $0) })
}

extension [SocketOption] {
  /// Whether SO_REUSEADDR is among them and set: leaving TCP repair mode clears it, so the
  /// dump and the restore put it back.
  public var reusesAddress: Bool {
    contains { $0.level == SocketOptionKind.socket && $0.name == SocketOptionKind.reuseAddress && $0.value != 0 }
  }

  /// Known options of the right shapes, each once.
  public var isValid: Bool {
    count <= SocketOptionKind.all.count && allSatisfy(\.isValid) && Set(map { [$0.level, $0.name] }).count == count
  }
}
