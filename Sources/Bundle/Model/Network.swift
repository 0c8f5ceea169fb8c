import Foundation

/// The devices, addresses and routes of the container's own network namespace, beyond a
/// fresh namespace's loopback: what the restore makes again in the new one. Links are named
/// (names are unique in a namespace; indexes are not kept).
public struct NetworkImage: Codable, Sendable, Equatable {
  public var links: [NetworkLinkImage]
  public var addresses: [NetworkAddressImage]
  public var routes: [NetworkRouteImage]
  /// Its packet filter rules, when it has any.
  public var netfilter: NetfilterImage?
  /// Its policy routing rules (`ip rule`), each the kernel's RTM_NEWRULE message after the
  /// netlink header; nil when they are a new namespace's.
  public var rules: [Data]?
  /// Its permanent neighbour entries (`ip neigh ... nud permanent`).
  public var neighbours: [NetworkNeighbourImage]?
  /// The forwarding entries set by hand on its bridges' ports.
  public var bridgeEntries: [BridgeEntryImage]?

  public init(
    links: [NetworkLinkImage], addresses: [NetworkAddressImage], routes: [NetworkRouteImage],
    netfilter: NetfilterImage? = nil
  ) {
    (self.links, self.addresses, self.routes, self.netfilter) = (links, addresses, routes, netfilter)
  }
}

/// The packet filter of the namespace, as the tools that made it print it and read it back:
/// nft's text of the tables nftables itself holds (counters, sets and their elements, maps
/// included), and the `*-save` text of each iptables flavour in use (iptables-nft's tables
/// keep comments and matches nft cannot print; the legacy x_tables are not nftables at all).
public struct NetfilterImage: Codable, Sendable, Equatable {
  /// `nft list table` of every table not iptables-nft's, in order; nil when none.
  public var nftables: String?
  /// `iptables-save -c` of each flavour that has tables, by tool.
  public var iptables: [IptablesSave]

  public init(nftables: String?, iptables: [IptablesSave]) {
    (self.nftables, self.iptables) = (nftables, iptables)
  }
}

/// What one iptables flavour printed (`<tool>-save`), restored with `<tool>-restore` (with
/// `-c` where the tool keeps counters).
public struct IptablesSave: Codable, Sendable, Equatable {
  /// The flavour: a fixed list, never a program a bundle names.
  public enum Tool: String, Codable, Sendable, CaseIterable {
    case iptablesNft = "iptables-nft"
    case ip6tablesNft = "ip6tables-nft"
    case ebtablesNft = "ebtables-nft"
    case arptablesNft = "arptables-nft"
    case iptablesLegacy = "iptables-legacy"
    case ip6tablesLegacy = "ip6tables-legacy"

    /// The nftables family and table names an nft flavour makes (nil: a legacy flavour).
    public var nftTables: (family: String, names: Set<String>)? {
      switch self {
      case .iptablesNft: ("ip", ["filter", "nat", "mangle", "raw", "security"])
      case .ip6tablesNft: ("ip6", ["filter", "nat", "mangle", "raw", "security"])
      case .ebtablesNft: ("bridge", ["filter", "nat", "broute"])
      case .arptablesNft: ("arp", ["filter"])
      case .iptablesLegacy, .ip6tablesLegacy: nil
      }
    }

    /// Whether its save and restore keep counters (`-c`): ebtables' and arptables' do not.
    public var keepsCounters: Bool { self != .ebtablesNft && self != .arptablesNft }
  }

  public var tool: Tool
  public var text: String
  /// An nft flavour's chains as nftables held them ("family table chain"): the tool makes
  /// its built-in chains only once a rule uses them, but its restore makes them all, so
  /// the others are deleted again.
  public var chains: [String]?

  public init(tool: Tool, text: String, chains: [String]? = nil) {
    (self.tool, self.text, self.chains) = (tool, text, chains)
  }
}

/// A permanent neighbour entry of a link.
public struct NetworkNeighbourImage: Codable, Sendable, Equatable {
  public var link: String
  public var family: Int32
  public var destination: Data
  public var linkAddress: Data?
  public var flags: UInt32

  public init(link: String, family: Int32, destination: Data, linkAddress: Data?, flags: UInt32) {
    (self.link, self.family, self.destination, self.linkAddress, self.flags) =
      (link, family, destination, linkAddress, flags)
  }
}

/// A link of the namespace: a veth end, or a macvlan.
public struct NetworkLinkImage: Codable, Sendable, Equatable {
  public var name: String
  /// rtnetlink's kind: `veth`.
  public var kind: String
  public var mac: Data?
  public var mtu: UInt32
  public var up: Bool
  public var txQueueLength: UInt32
  public var alias: String?
  /// A veth whose peer is in the container too: the peer's name.
  public var peer: String?
  /// A veth whose peer is outside: in the network namespace the dump ran in (a host's end,
  /// often enslaved to a bridge), made again where the restore runs.
  public var outsidePeer: OutsideVethPeer?
  /// A macvlan's lower link, in the container.
  public var lower: String?
  /// A macvlan's lower link outside: in the namespace the dump ran in (a host's NIC), by
  /// name; the restore puts the macvlan on the link of that name where it runs.
  public var outsideLower: String?
  /// A macvlan's mode (MACVLAN_MODE_*: 1 private, 2 vepa, 4 bridge, 8 passthru, 16 source).
  public var macvlanMode: UInt32?
  /// A tun/tap device's settings.
  public var tun: TunDeviceImage?
  /// How the kernel makes its IPv6 link-local address (IN6_ADDR_GEN_MODE_*), when not from
  /// its MAC (EUI-64): a tun's random one, one set to none.
  public var addressGeneration: UInt8?
  /// A bridge's settings (IFLA_BR_*, as the kernel gave them, less what it sets itself).
  public var bridge: [NetlinkAttributeImage]?
  /// The bridge in the container it is enslaved to, and its settings as a port
  /// (IFLA_BRPORT_*, likewise).
  public var master: String?
  public var portSettings: [NetlinkAttributeImage]?

  public init(
    name: String, kind: String, mac: Data?, mtu: UInt32, up: Bool, txQueueLength: UInt32, alias: String?,
    peer: String? = nil, outsidePeer: OutsideVethPeer? = nil
  ) {
    (self.name, self.kind, self.mac, self.mtu, self.up) = (name, kind, mac, mtu, up)
    (self.txQueueLength, self.alias, self.peer, self.outsidePeer) = (txQueueLength, alias, peer, outsidePeer)
  }
}

/// The outer end of a veth pair.
public struct OutsideVethPeer: Codable, Sendable, Equatable {
  public var name: String
  /// The bridge it was enslaved to, by name: it joins the bridge of that name where the
  /// restore runs, when there is one.
  public var master: String?
  public var mac: Data?
  public var mtu: UInt32
  public var up: Bool

  public init(name: String, master: String?, mac: Data?, mtu: UInt32, up: Bool) {
    (self.name, self.master, self.mac, self.mtu, self.up) = (name, master, mac, mtu, up)
  }
}

/// An address of a link (`ip addr`).
public struct NetworkAddressImage: Codable, Sendable, Equatable {
  public var link: String
  public var family: Int32
  public var local: Data
  public var prefixLength: Int32
  /// IFA_F_* flags (secondary, noprefixroute, ...).
  public var flags: UInt32
  public var scope: Int32
  public var broadcast: Data?
  public var peer: Data?
  public var label: String?

  public init(
    link: String, family: Int32, local: Data, prefixLength: Int32, flags: UInt32, scope: Int32, broadcast: Data?,
    peer: Data?, label: String?
  ) {
    (self.link, self.family, self.local, self.prefixLength, self.flags) = (link, family, local, prefixLength, flags)
    (self.scope, self.broadcast, self.peer, self.label) = (scope, broadcast, peer, label)
  }
}

/// A route the kernel did not make itself for an address (`ip route show table all`, less
/// the local table and `proto kernel`), with one next hop.
public struct NetworkRouteImage: Codable, Sendable, Equatable {
  public var table: UInt32
  public var family: Int32
  /// nil: the default route.
  public var destination: Data?
  public var prefixLength: Int32
  public var gateway: Data?
  public var link: String?
  public var priority: UInt32
  public var protocolNumber: UInt8
  public var scope: UInt8
  public var type: UInt8

  public init(
    table: UInt32, family: Int32, destination: Data?, prefixLength: Int32, gateway: Data?, link: String?,
    priority: UInt32, protocolNumber: UInt8, scope: UInt8, type: UInt8
  ) {
    (self.table, self.family, self.destination, self.prefixLength) = (table, family, destination, prefixLength)
    (self.gateway, self.link, self.priority, self.protocolNumber) = (gateway, link, priority, protocolNumber)
    (self.scope, self.type) = (scope, type)
  }
}

/// A tun or tap device (rtnetlink's IFLA_TUN_* of kind `tun`).
public struct TunDeviceImage: Codable, Sendable, Equatable {
  /// A tap (Ethernet frames) rather than a tun (IP packets).
  public var tap: Bool
  /// Frames carry the packet information header (no IFF_NO_PI).
  public var packetInfo: Bool
  public var vnetHeader: Bool
  public var multiQueue: Bool
  /// It outlives its descriptors (TUNSETPERSIST); else the container's descriptors hold it.
  public var persistent: Bool
  /// TUNSETOWNER, TUNSETGROUP: who may attach to it.
  public var owner: UInt32?
  public var group: UInt32?
  /// Its IPv6 stable_secret (a device without a hardware address derives its link-local
  /// address from it, random per device): given back, the address comes back.
  public var stableSecret: String?

  public init(
    tap: Bool, packetInfo: Bool, vnetHeader: Bool, multiQueue: Bool, persistent: Bool, owner: UInt32?, group: UInt32?
  ) {
    (self.tap, self.packetInfo, self.vnetHeader, self.multiQueue) = (tap, packetInfo, vnetHeader, multiQueue)
    (self.persistent, self.owner, self.group) = (persistent, owner, group)
  }
}

/// One rtnetlink attribute, kept as the kernel gave it and sent back whole.
public struct NetlinkAttributeImage: Codable, Sendable, Equatable {
  public var type: UInt16
  public var value: Data

  public init(type: UInt16, value: Data) { (self.type, self.value) = (type, value) }
}

/// A bridge's forwarding entry set by hand (`bridge fdb add MAC dev PORT master static`).
public struct BridgeEntryImage: Codable, Sendable, Equatable {
  /// The port.
  public var link: String
  public var mac: Data
  /// `permanent` (a local address of the bridge), else `static`.
  public var permanent: Bool

  public init(link: String, mac: Data, permanent: Bool) {
    (self.link, self.mac, self.permanent) = (link, mac, permanent)
  }
}
