import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

// Packet sockets (AF_PACKET: a DHCP client's, a capture tool's, an LLDP or VRRP daemon's):
// their type, ethertype and options (PACKET_* through getsockopt, a classic BPF filter with
// the other sockets'), the link they are bound to and their memberships (promiscuous mode,
// multicast lists), which only packet_diag tells. Links go by name: a restored network
// namespace numbers them anew. Packets waiting are copies of traffic, not kept (as the
// netlink sockets' notices; a busy link drops such copies too); a ring mapped into the
// program's memory is refused.

extension FileCapture {
  /// A packet socket, asked through packet_diag in its namespace.
  func capturePacketSocket(
    _ ours: Int32, facts: ck_socket_facts, fd: Int32, inode: UInt64, log: Logger, refuse: (String, String) -> CKError
  ) throws -> SocketImage {
    let namespace = OwnedDescriptor(adoptingValid: open("/proc/\(pid)/ns/net", O_RDONLY | O_CLOEXEC))
    // A socket of its own: packet_diag answers in a dump of several messages.
    let diag = OwnedDescriptor(adoptingValid: ck_sock_diag_socket(namespace.rawOrMinusOne))
    var found = ck_packet_diag()
    let result = ck_packet_diag(diag.rawOrMinusOne, UInt32(truncatingIfNeeded: inode), &found)
    guard result == 0 else {
      throw refuse(
        "a packet socket packet_diag does not describe (\(String(cString: strerror(-result))))",
        "close it before the checkpoint")
    }
    guard found.rings == 0 else {
      throw refuse("a packet socket with a ring mapped into memory (PACKET_RX_RING, PACKET_TX_RING)", "close it first")
    }
    guard found.memberships >= 0 else {
      throw refuse("a packet socket with more than \(CK_PACKET_MEMBERSHIPS) memberships", "close it first")
    }
    if facts.waiting > 0 { log.debug("task \(pid): fd \(fd): packets waiting in a packet socket are not kept") }
    let memberships = withUnsafeBytes(of: found.membership) { raw in
      Array(raw.bindMemory(to: ck_packet_membership.self).prefix(Int(found.memberships)))
    }
    let indexes = Set([found.index] + memberships.map(\.index)).filter { $0 != 0 }
    let names = try linkNames(Array(indexes))
    func name(_ index: Int32) throws -> String {
      guard let name = names[index] else { throw refuse("a packet socket on link \(index), which has no name", "") }
      return name
    }
    var image = SocketImage(
      family: facts.family, type: facts.type, protocolNumber: Int32(found.protocol), address: nil, peer: nil,
      backlog: nil, options: try SocketOptions.capture(ours, facts, refuse: refuse))
    image.packet = PacketSocketImage(
      link: found.index == 0 ? nil : try name(found.index),
      memberships: try memberships.map { membership in
        PacketMembershipImage(
          link: try name(membership.index), type: membership.type,
          address: withUnsafeBytes(of: membership.address) { Data($0.prefix(min(Int(membership.length), 8))) },
          count: membership.count)
      })
    return image
  }

  /// The names of the links `indexes` in the process's network namespace.
  private func linkNames(_ indexes: [Int32]) throws -> [Int32: String] {
    guard !indexes.isEmpty else { return [:] }
    return try NamespaceThread.run(in: "net", of: pid) {
      var names: [Int32: String] = [:]
      for index in indexes {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE) + 1)
        if if_indextoname(UInt32(index), &buffer) != nil { names[index] = String(nulTerminated: buffer) }
      }
      return names
    }
  }
}

extension FileBatch {
  /// A packet socket, made with its ethertype: bound to its link (found by name in the
  /// task's namespace), its memberships added again, as often as they were.
  func queuePacketSocket(_ made: Int, _ socket: SocketImage, fd: Int32) throws -> Int64 {
    guard let packet = socket.packet else { throw CKError(.badInput, "fd \(fd): a packet socket without its links") }
    let links = Set([packet.link].compactMap { $0 } + packet.memberships.map(\.link))
    let indexes = try NamespaceThread.run(in: "net", of: injector.pid) {
      Dictionary(uniqueKeysWithValues: links.map { ($0, Int32(bitPattern: if_nametoindex($0))) })
    }
    func index(_ link: String) throws -> Int32 {
      guard let index = indexes[link], index > 0 else {
        throw CKError(
          .failed, "fd \(fd): no link \(link) for its packet socket", hint: "restore where that link exists")
      }
      return index
    }
    if let link = packet.link {
      // struct sockaddr_ll: family, ethertype (network order), ifindex, then zeros.
      var address = withUnsafeBytes(of: UInt16(AF_PACKET).littleEndian) { Array($0) }
      address += withUnsafeBytes(of: UInt16(truncatingIfNeeded: socket.protocolNumber).bigEndian) { Array($0) }
      address += withUnsafeBytes(of: try index(link).littleEndian) { Array($0) }
      address += [UInt8](repeating: 0, count: 12)
      let at = try injector.put(address)
      batch.add(.bind(.result(made), at, length: address.count), "bind fd \(fd) to \(link)")
    }
    for membership in packet.memberships {
      // struct packet_mreq: ifindex, type, address length, address[8].
      var request = withUnsafeBytes(of: try index(membership.link).littleEndian) { Array($0) }
      request += withUnsafeBytes(of: membership.type.littleEndian) { Array($0) }
      request += withUnsafeBytes(of: UInt16(membership.address.count).littleEndian) { Array($0) }
      request += Array(membership.address) + [UInt8](repeating: 0, count: 8 - membership.address.count)
      let at = try injector.put(request)
      for _ in 0..<membership.count {
        batch.add(
          .setsockopt(.result(made), level: SocketOptionKind.packet, name: 1, at, length: request.count),
          "PACKET_ADD_MEMBERSHIP fd \(fd) on \(membership.link)")
      }
    }
    return queueMoveHigh(made, what: "fd \(fd)")
  }
}
