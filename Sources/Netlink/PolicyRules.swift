import CLibnl
import Glibc
import Linux

/// The policy routing rules of the calling thread's network namespace (`ip rule`), as the
/// kernel's own messages: saved whole and sent back whole, every attribute kept (libnl's
/// rule type knows only some: a WireGuard rule's suppress_prefixlength would be lost), as
/// CRIU keeps them with `ip rule save`. Rules name links by name, never by index.
public enum PolicyRules {
  static let newRule: UInt16 = 32  // RTM_NEWRULE
  static let deleteRule: UInt16 = 33  // RTM_DELRULE
  static let getRule: UInt16 = 34  // RTM_GETRULE
  static let request: UInt16 = 0x1
  static let acknowledge: UInt16 = 0x4
  static let dump: UInt16 = 0x300  // NLM_F_ROOT | NLM_F_MATCH
  static let exclusive: UInt16 = 0x200
  static let create: UInt16 = 0x400
  static let done: UInt16 = 3  // NLMSG_DONE
  static let error: UInt16 = 2  // NLMSG_ERROR
  static let headerSize = 16  // struct nlmsghdr
  static let ruleHeaderSize = 12  // struct fib_rule_hdr

  /// Each rule of the namespace: its RTM_NEWRULE message after the netlink header (the
  /// fib_rule_hdr and attributes).
  public static func read() throws -> [[UInt8]] {
    let socket = try RawRouteSocket()
    var rules: [[UInt8]] = []
    for family in [AF_INET, AF_INET6] {
      try socket.send(type: getRule, flags: request | dump, payload: [UInt8(family)] + [UInt8](repeating: 0, count: 11))
      try socket.receive { type, payload in
        if type == newRule { rules.append(payload) }
      }
    }
    return rules
  }

  /// Makes the namespace's rules `rules` exactly: the ones it has (a new namespace's
  /// defaults) are deleted, then each is added.
  public static func replace(with rules: [[UInt8]]) throws {
    let socket = try RawRouteSocket()
    for existing in try read() {
      try socket.send(type: deleteRule, flags: request | acknowledge, payload: existing)
      try socket.receive { _, _ in }
    }
    for rule in rules {
      try socket.send(type: newRule, flags: request | acknowledge | create | exclusive, payload: rule)
      try socket.receive { _, _ in }
    }
  }

  /// A rule's family (AF_INET, AF_INET6) and whether the message is whole: a fib_rule_hdr,
  /// then attributes that fit.
  public static func isWellFormed(_ rule: [UInt8]) -> Bool {
    guard rule.count >= ruleHeaderSize, rule.count <= 4096, [AF_INET, AF_INET6].contains(Int32(rule[0])) else {
      return false
    }
    var offset = ruleHeaderSize
    while offset < rule.count {
      guard offset + 4 <= rule.count else { return false }
      let length = Int(rule[offset]) | Int(rule[offset + 1]) << 8
      guard length >= 4, offset + length <= rule.count else { return false }
      offset += (length + 3) & ~3
    }
    return true
  }
}

/// A NETLINK_ROUTE socket speaking raw messages, one request at a time.
final class RawRouteSocket {
  let fd: Int32
  private var sequence: UInt32 = 1

  init() throws {
    fd = try syscallChecked("socket", "NETLINK_ROUTE") {
      socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)  // NETLINK_ROUTE = 0
    }
  }

  deinit { close(fd) }

  func send(type: UInt16, flags: UInt16, payload: [UInt8]) throws {
    sequence += 1
    var message = [UInt8]()
    let length = UInt32(PolicyRules.headerSize + payload.count)
    withUnsafeBytes(of: length.littleEndian) { message += $0 }
    withUnsafeBytes(of: type.littleEndian) { message += $0 }
    withUnsafeBytes(of: flags.littleEndian) { message += $0 }
    withUnsafeBytes(of: sequence.littleEndian) { message += $0 }
    withUnsafeBytes(of: UInt32(0)) { message += $0 }
    message += payload
    var kernel = sockaddr_nl()
    kernel.nl_family = sa_family_t(AF_NETLINK)
    let sent = message.withUnsafeBytes { bytes in
      withUnsafePointer(to: &kernel) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          sendto(fd, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
        }
      }
    }
    guard sent == message.count else { throw SyscallError("sendto", "a route netlink message", .init(rawValue: errno)) }
  }

  /// Reads the answer to the last request: each message's type and payload to `body`,
  /// until its end (NLMSG_DONE, or the acknowledgement); an error answer throws.
  func receive(_ body: (UInt16, [UInt8]) -> Void) throws {
    var buffer = [UInt8](repeating: 0, count: 1 << 16)
    while true {
      let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
      guard count >= 0 else { throw SyscallError("recv", "a route netlink answer", .init(rawValue: errno)) }
      var offset = 0
      while offset + PolicyRules.headerSize <= count {
        let length = Int(
          UInt32(buffer[offset]) | UInt32(buffer[offset + 1]) << 8 | UInt32(buffer[offset + 2]) << 16
            | UInt32(buffer[offset + 3]) << 24)
        let type = UInt16(buffer[offset + 4]) | UInt16(buffer[offset + 5]) << 8
        guard length >= PolicyRules.headerSize, offset + length <= count else { return }
        let payload = Array(buffer[offset + PolicyRules.headerSize..<offset + length])
        if type == PolicyRules.done { return }
        if type == PolicyRules.error {
          let code =
            payload.count >= 4
            ? Int32(
              bitPattern: UInt32(payload[0]) | UInt32(payload[1]) << 8 | UInt32(payload[2]) << 16
                | UInt32(payload[3]) << 24) : 0
          guard code == 0 else {
            throw CKError(.failed, "rtnetlink refused the request: \(String(cString: strerror(-code)))")
          }
          return
        }
        body(type, payload)
        offset += (length + 3) & ~3
      }
    }
  }
}
