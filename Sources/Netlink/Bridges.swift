import CKShim
import CLibnl
import Glibc
import Linux

/// The bridges of the calling thread's network namespace and their ports, as rtnetlink
/// describes them (a bridge's IFLA_INFO_DATA: IFLA_BR_*; a port's IFLA_PROTINFO in the
/// AF_BRIDGE view: IFLA_BRPORT_*), which libnl does not parse. Their settings are kept as
/// the kernel gave them and sent back whole, less what only the kernel sets (timers, ids,
/// counters, a port's STP state).
public enum Bridges {
  /// One netlink attribute: its type (the nested flag taken off) and its bytes.
  public struct Attribute: Sendable, Equatable {
    public var type: UInt16
    public var value: [UInt8]
    public init(type: UInt16, value: [UInt8]) { (self.type, self.value) = (type, value) }
  }

  /// What the namespace holds: each bridge's settings and each port's, by link name.
  public struct Settings: Sendable, Equatable {
    public var bridges: [String: [Attribute]] = [:]
    public var ports: [String: [Attribute]] = [:]
  }

  static let newLink = TunDevices.newLink
  static let getLink = TunDevices.getLink
  static let setLink: UInt16 = 19  // RTM_SETLINK
  static let familyBridge: UInt8 = 7  // AF_BRIDGE
  static let protocolInfo: UInt16 = 12  // IFLA_PROTINFO
  static let nested: UInt16 = 0x8000  // NLA_F_NESTED
  static let create: UInt16 = 0x400  // NLM_F_CREATE
  static let exclusive: UInt16 = 0x200  // NLM_F_EXCL
  static let acknowledge: UInt16 = 4  // NLM_F_ACK

  /// IFLA_BR_VLAN_FILTERING: with it on, each port's VLANs (`bridge vlan`) are state too.
  public static let vlanFiltering: UInt16 = 7
  /// IFLA_BR_* the kernel reports but sets itself: ROOT_ID .. GC_TIMER (10-19), FDB_FLUSH
  /// (an action), MCAST_HASH_ELASTICITY (ignored since 4.20), PAD, MCAST_QUERIER_STATE,
  /// FDB_N_LEARNED.
  static let bridgeReadOnly: Set<UInt16> = Set(10...19).union([21, 26, 40, 47, 48])
  /// IFLA_BRPORT_* the kernel reports but sets itself: STATE (the STP state, which the kernel
  /// moves to forwarding as the port comes up), LEARNING_SYNC (switchdev), ROOT_ID ..
  /// FLUSH (13-24), PAD, MRP_RING_OPEN, MRP_IN_OPEN, MCAST_EHT_HOSTS_CNT, MCAST_N_GROUPS.
  static let portReadOnly: Set<UInt16> = Set(13...24).union([1, 11, 26, 35, 36, 38, 41])
  /// IFLA_BRPORT_BACKUP_PORT (a link by index) and IFLA_BRPORT_BACKUP_NHID: redirections
  /// ckcont does not make again.
  public static let portBackup: Set<UInt16> = [34, 44]

  /// Every bridge's settings and every port's.
  public static func read() throws -> Settings {
    var settings = Settings()
    let socket = try RawRouteSocket()
    try socket.send(
      type: getLink, flags: PolicyRules.request | PolicyRules.dump,
      payload: [UInt8](repeating: 0, count: TunDevices.ifinfomsgSize))
    try socket.receive { type, payload in
      guard type == newLink, payload.count > TunDevices.ifinfomsgSize else { return }
      let attributes = TunDevices.attributes(payload[TunDevices.ifinfomsgSize...])
      guard let name = attributes[TunDevices.interfaceName].map(TunDevices.string),
        let info = attributes[TunDevices.linkInfo]
      else { return }
      let kind = TunDevices.attributes(info[...])
      guard kind[TunDevices.infoKind].map(TunDevices.string) == "bridge", let data = kind[TunDevices.infoData] else {
        return
      }
      settings.bridges[name] = ordered(data).filter { !bridgeReadOnly.contains($0.type) }
    }
    // The AF_BRIDGE view lists the ports, each with its IFLA_PROTINFO.
    var request = [UInt8](repeating: 0, count: TunDevices.ifinfomsgSize)
    request[0] = familyBridge
    try socket.send(type: getLink, flags: PolicyRules.request | PolicyRules.dump, payload: request)
    try socket.receive { type, payload in
      guard type == newLink, payload.count > TunDevices.ifinfomsgSize else { return }
      let attributes = TunDevices.attributes(payload[TunDevices.ifinfomsgSize...])
      guard let name = attributes[TunDevices.interfaceName].map(TunDevices.string),
        let port = attributes[protocolInfo]
      else { return }
      settings.ports[name] = ordered(port).filter { !portReadOnly.contains($0.type) }
    }
    return settings
  }

  /// A forwarding entry set by hand (`bridge fdb add MAC dev PORT master static|permanent`):
  /// learned ones come back by themselves, and each port's own address is the kernel's.
  public struct Entry: Sendable, Equatable {
    public var linkIndex: Int32
    public var mac: [UInt8]
    /// NUD_NOARP (static) or NUD_PERMANENT.
    public var state: UInt16
    public init(linkIndex: Int32, mac: [UInt8], state: UInt16) {
      (self.linkIndex, self.mac, self.state) = (linkIndex, mac, state)
    }
  }

  static let newNeighbour: UInt16 = 28  // RTM_NEWNEIGH
  static let getNeighbour: UInt16 = 30  // RTM_GETNEIGH
  static let ndmsgSize = 12
  static let linkLayerAddress: UInt16 = 2  // NDA_LLADDR
  static let neighbourMaster: UInt16 = 9  // NDA_MASTER
  static let neighbourVLAN: UInt16 = 5  // NDA_VLAN
  static let flagMaster: UInt8 = 0x04  // NTF_MASTER
  public static let stateStatic: UInt16 = 0x40  // NUD_NOARP
  public static let statePermanent: UInt16 = 0x80  // NUD_PERMANENT

  /// The forwarding entries set by hand on the bridges' ports: static and permanent ones of
  /// a bridge (NDA_MASTER), less each link's own address (`macs`: each link's by index).
  /// One with a VLAN refuses (see `vlan_filtering`): nil then.
  public static func entries(macs: [Int32: [UInt8]]) throws -> [Entry]? {
    var entries: [Entry] = []
    var vlans = false
    let socket = try RawRouteSocket()
    var request = [UInt8](repeating: 0, count: ndmsgSize)
    request[0] = familyBridge
    try socket.send(type: getNeighbour, flags: PolicyRules.request | PolicyRules.dump, payload: request)
    try socket.receive { type, payload in
      guard type == newNeighbour, payload.count >= ndmsgSize else { return }
      let index = payload[4..<8].withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(as: Int32.self)) }
      let state = UInt16(payload[8]) | UInt16(payload[9]) << 8
      let attributes = TunDevices.attributes(payload[ndmsgSize...])
      guard attributes[neighbourMaster] != nil, state & (stateStatic | statePermanent) != 0,
        let mac = attributes[linkLayerAddress], mac != macs[index]
      else { return }
      if attributes[neighbourVLAN] != nil { vlans = true }
      entries.append(Entry(linkIndex: index, mac: mac, state: state & (stateStatic | statePermanent)))
    }
    return vlans ? nil : entries
  }

  /// Adds the forwarding entry `entry` to the bridge of its port.
  public static func add(_ entry: Entry, named name: String) throws {
    var payload = [UInt8](repeating: 0, count: ndmsgSize)
    payload[0] = familyBridge
    withUnsafeBytes(of: entry.linkIndex.littleEndian) { payload.replaceSubrange(4..<8, with: $0) }
    withUnsafeBytes(of: entry.state.littleEndian) { payload.replaceSubrange(8..<10, with: $0) }
    payload[10] = flagMaster
    payload += attribute(linkLayerAddress, entry.mac)
    let socket = try RawRouteSocket()
    try socket.send(type: newNeighbour, flags: PolicyRules.request | create | exclusive | acknowledge, payload: payload)
    do {
      try socket.receive { _, _ in }
    } catch {
      throw CKError(.failed, "cannot add the forwarding entry of \(name): \(error)")
    }
  }

  /// What a new bridge and a new port of it have, read from a bridge made for the purpose:
  /// only settings that differ are kept, so that the restore asks the kernel for nothing a
  /// program did not change (a feature this kernel lacks refuses even its default value:
  /// MULTI_BOOLOPT's VLAN snooping bit without CONFIG_BRIDGE_VLAN_FILTERING).
  /// Call it in a fresh network namespace of the calling thread.
  public static func defaults() throws -> (bridge: [Attribute], port: [Attribute]) {
    let (bridge, port, peer) = ("ckdefault0", "ckdefault1", "ckdefault2")
    try add(name: bridge, settings: [])
    let socket = try RouteSocket()
    try RouteSocket.check(
      rtnl_link_veth_add(socket.raw, port, peer, ck_gettid()), "cannot make the veth pair \(port) and \(peer)")
    guard let master = try NetworkChanges.index(ofLink: bridge) else {
      throw CKError(.failed, "the bridge \(bridge) made to read its defaults is gone")
    }
    try NetworkChanges.enslave(link: port, to: master)
    let settings = try read()
    // Deleted here, not with the namespace: the kernel tears namespaces down one at a time,
    // and one that still held these took ~2 s, the container's own waiting behind it (the
    // outer ends of its veth pairs stayed, and a restore right after found their names taken).
    try NetworkChanges.delete(link: port)
    try NetworkChanges.delete(link: bridge)
    return (settings.bridges[bridge] ?? [], settings.ports[port] ?? [])
  }

  /// Makes the bridge `name` with `settings` (from ``read()``).
  public static func add(name: String, settings: [Attribute]) throws {
    let info =
      attribute(TunDevices.infoKind, Array("bridge".utf8) + [0])
      + attribute(TunDevices.infoData | nested, settings.flatMap { attribute($0.type, $0.value) })
    let payload =
      [UInt8](repeating: 0, count: TunDevices.ifinfomsgSize)
      + attribute(TunDevices.interfaceName, Array(name.utf8) + [0]) + attribute(TunDevices.linkInfo | nested, info)
    let socket = try RawRouteSocket()
    try socket.send(type: newLink, flags: PolicyRules.request | create | exclusive | acknowledge, payload: payload)
    do { try socket.receive { _, _ in } } catch { throw CKError(.failed, "cannot make the bridge \(name): \(error)") }
  }

  /// Gives the port of index `index` (enslaved already) `settings` (from ``read()``).
  public static func configurePort(index: Int32, named name: String, settings: [Attribute]) throws {
    var payload = [UInt8](repeating: 0, count: TunDevices.ifinfomsgSize)
    payload[0] = familyBridge
    withUnsafeBytes(of: index.littleEndian) { payload.replaceSubrange(4..<8, with: $0) }
    payload += attribute(protocolInfo | nested, settings.flatMap { attribute($0.type, $0.value) })
    let socket = try RawRouteSocket()
    try socket.send(type: setLink, flags: PolicyRules.request | acknowledge, payload: payload)
    do {
      try socket.receive { _, _ in }
    } catch {
      throw CKError(.failed, "cannot give the bridge port \(name) its settings: \(error)")
    }
  }

  /// The attributes of a message part in their order (the one parser: TunDevices keys them).
  static func ordered(_ bytes: [UInt8]) -> [Attribute] {
    var result: [Attribute] = []
    var offset = 0
    while offset + 4 <= bytes.count {
      let length = Int(bytes[offset]) | Int(bytes[offset + 1]) << 8
      let type = (UInt16(bytes[offset + 2]) | UInt16(bytes[offset + 3]) << 8) & 0x3fff
      guard length >= 4, offset + length <= bytes.count else { break }
      result.append(Attribute(type: type, value: Array(bytes[offset + 4..<offset + length])))
      offset += (length + 3) & ~3
    }
    return result
  }

  /// One attribute, padded to four bytes.
  static func attribute(_ type: UInt16, _ value: [UInt8]) -> [UInt8] {
    var bytes: [UInt8] = []
    withUnsafeBytes(of: UInt16(4 + value.count).littleEndian) { bytes += $0 }
    withUnsafeBytes(of: type.littleEndian) { bytes += $0 }
    bytes += value
    bytes += [UInt8](repeating: 0, count: (4 - value.count % 4) % 4)
    return bytes
  }
}
