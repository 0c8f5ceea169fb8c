import Glibc
import Linux

/// The tun/tap devices of the calling thread's network namespace, as rtnetlink describes
/// them (IFLA_INFO_DATA of kind `tun`: IFLA_TUN_*), which libnl does not parse.
public enum TunDevices {
  /// One device's settings.
  public struct Settings: Sendable, Equatable {
    public var tap: Bool
    public var packetInfo: Bool
    public var vnetHeader: Bool
    public var multiQueue: Bool
    public var persistent: Bool
    public var owner: UInt32?
    public var group: UInt32?
  }

  static let newLink: UInt16 = 16  // RTM_NEWLINK
  static let getLink: UInt16 = 18  // RTM_GETLINK
  static let interfaceName: UInt16 = 3  // IFLA_IFNAME
  static let linkInfo: UInt16 = 18  // IFLA_LINKINFO
  static let infoKind: UInt16 = 1  // IFLA_INFO_KIND
  static let infoData: UInt16 = 2  // IFLA_INFO_DATA
  static let ifinfomsgSize = 16

  /// Every tun/tap device, by name.
  public static func read() throws -> [String: Settings] {
    let socket = try RawRouteSocket()
    try socket.send(
      type: getLink, flags: PolicyRules.request | PolicyRules.dump, payload: [UInt8](repeating: 0, count: ifinfomsgSize)
    )
    var devices: [String: Settings] = [:]
    try socket.receive { type, payload in
      guard type == newLink, payload.count > ifinfomsgSize else { return }
      let attributes = Self.attributes(payload[ifinfomsgSize...])
      guard let name = attributes[interfaceName].map(Self.string), let info = attributes[linkInfo] else { return }
      let nested = Self.attributes(info[...])
      guard nested[infoKind].map(Self.string) == "tun", let data = nested[infoData] else { return }
      let tun = Self.attributes(data[...])
      func byte(_ type: UInt16) -> Bool { (tun[type]?.first ?? 0) != 0 }
      func word(_ type: UInt16) -> UInt32? {
        guard let value = tun[type], value.count >= 4 else { return nil }
        return UInt32(value[0]) | UInt32(value[1]) << 8 | UInt32(value[2]) << 16 | UInt32(value[3]) << 24
      }
      // IFLA_TUN_TYPE: IFF_TUN 1, IFF_TAP 2.
      devices[name] = Settings(
        tap: tun[3]?.first == 2, packetInfo: byte(4), vnetHeader: byte(5), multiQueue: byte(7), persistent: byte(6),
        owner: word(1), group: word(2))
    }
    return devices
  }

  /// The attributes of a message part, by type (the nested flag taken off).
  static func attributes(_ bytes: ArraySlice<UInt8>) -> [UInt16: [UInt8]] {
    Dictionary(Bridges.ordered(Array(bytes)).map { ($0.type, $0.value) }, uniquingKeysWith: { _, last in last })
  }

  static func string(_ bytes: [UInt8]) -> String {
    String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
  }
}
