import CLibnl
import Glibc
import Linux

/// What a network namespace holds of its own, as rtnetlink lists it through libnl-route:
/// its links, their addresses and its routes. Read and changed in the calling thread's
/// network namespace.
public struct NetworkConfig: Sendable, Equatable {
  public var links: [Link]
  public var addresses: [Address]
  public var routes: [Route]
  /// Neighbour entries set by hand (NUD_PERMANENT): learned ones come back by themselves.
  public var neighbours: [Neighbour]

  /// One link (`ip link`).
  public struct Link: Sendable, Equatable {
    public var index: Int32
    public var name: String
    /// rtnetlink's kind (`veth`, `bridge`, ...); `loopback` for lo, nil for a device of no kind.
    public var kind: String?
    public var mac: [UInt8]?
    public var mtu: UInt32
    public var up: Bool
    public var txQueueLength: UInt32
    public var alias: String?
    /// IFLA_LINK: a veth's peer, by its index in its own namespace.
    public var peerIndex: Int32?
    /// IFLA_LINK_NETNSID: set when the peer is in another namespace.
    public var peerNamespaceID: Int32?
    /// The bridge (or bond) it is enslaved to, by index.
    public var masterIndex: Int32?
    /// A macvlan's mode (MACVLAN_MODE_*).
    public var macvlanMode: UInt32?
    /// How the kernel makes its IPv6 link-local address (IN6_ADDR_GEN_MODE_*: 0 EUI-64 from
    /// the MAC, 1 none, 2 stable privacy, 3 random); nil when not known.
    public var addressGeneration: UInt8?

    public init(
      index: Int32, name: String, kind: String?, mac: [UInt8]?, mtu: UInt32, up: Bool, txQueueLength: UInt32,
      alias: String?, peerIndex: Int32? = nil, peerNamespaceID: Int32? = nil, masterIndex: Int32? = nil
    ) {
      (self.index, self.name, self.kind, self.mac, self.mtu, self.up) = (index, name, kind, mac, mtu, up)
      (self.txQueueLength, self.alias, self.peerIndex) = (txQueueLength, alias, peerIndex)
      (self.peerNamespaceID, self.masterIndex) = (peerNamespaceID, masterIndex)
    }
  }

  /// One permanent neighbour entry (`ip neigh show nud permanent`).
  public struct Neighbour: Sendable, Equatable {
    public var linkIndex: Int32
    public var family: Int32
    public var destination: [UInt8]
    public var linkAddress: [UInt8]?
    public var flags: UInt32

    public init(linkIndex: Int32, family: Int32, destination: [UInt8], linkAddress: [UInt8]?, flags: UInt32) {
      (self.linkIndex, self.family, self.destination, self.linkAddress, self.flags) =
        (linkIndex, family, destination, linkAddress, flags)
    }
  }

  /// One address (`ip addr`).
  public struct Address: Sendable, Equatable {
    public var linkIndex: Int32
    public var family: Int32
    public var local: [UInt8]
    public var prefixLength: Int32
    public var flags: UInt32
    public var scope: Int32
    public var broadcast: [UInt8]?
    public var peer: [UInt8]?
    public var label: String?

    public init(
      linkIndex: Int32, family: Int32, local: [UInt8], prefixLength: Int32, flags: UInt32, scope: Int32,
      broadcast: [UInt8]?, peer: [UInt8]?, label: String?
    ) {
      (self.linkIndex, self.family, self.local, self.prefixLength) = (linkIndex, family, local, prefixLength)
      (self.flags, self.scope, self.broadcast, self.peer, self.label) = (flags, scope, broadcast, peer, label)
    }
  }

  /// One route with one next hop (`ip route show table all`).
  public struct Route: Sendable, Equatable {
    public var table: UInt32
    public var family: Int32
    public var destination: [UInt8]?
    public var prefixLength: Int32
    public var gateway: [UInt8]?
    public var linkIndex: Int32?
    public var priority: UInt32
    public var protocolNumber: UInt8
    public var scope: UInt8
    public var type: UInt8
    /// Next hops beyond one (multipath), which ckcont does not make.
    public var extraHops: Int

    public init(
      table: UInt32, family: Int32, destination: [UInt8]?, prefixLength: Int32, gateway: [UInt8]?, linkIndex: Int32?,
      priority: UInt32, protocolNumber: UInt8, scope: UInt8, type: UInt8, extraHops: Int = 0
    ) {
      (self.table, self.family, self.destination, self.prefixLength) = (table, family, destination, prefixLength)
      (self.gateway, self.linkIndex, self.priority) = (gateway, linkIndex, priority)
      (self.protocolNumber, self.scope, self.type, self.extraHops) = (protocolNumber, scope, type, extraHops)
    }
  }

  /// The links, addresses and routes of the calling thread's network namespace.
  public static func read() throws -> NetworkConfig {
    let socket = try RouteSocket()
    let links = try socket.withCache("links", { rtnl_link_alloc_cache($0, AF_UNSPEC, $1) }) { cache in
      RouteSocket.objects(of: cache).map(Link.init(libnl:))
    }
    let addresses = try socket.withCache("addresses", { rtnl_addr_alloc_cache($0, $1) }) { cache in
      RouteSocket.objects(of: cache).compactMap(Address.init(libnl:))
    }
    let routes = try socket.withCache("routes", { rtnl_route_alloc_cache($0, AF_UNSPEC, 0, $1) }) { cache in
      RouteSocket.objects(of: cache).map(Route.init(libnl:))
    }
    let neighbours = try socket.withCache("neighbours", { sock, cache in rtnl_neigh_alloc_cache(sock, cache) }) {
      cache in
      RouteSocket.objects(of: cache).compactMap(Neighbour.init(libnl:))
    }
    return NetworkConfig(links: links, addresses: addresses, routes: routes, neighbours: neighbours)
  }
}

extension NetworkConfig.Link {
  init(libnl link: OpaquePointer) {
    // ARPHRD_LOOPBACK (if_arp.h, which Glibc's overlay does not bring).
    let loopback = rtnl_link_get_arptype(link) == 772
    let peer = rtnl_link_get_link(link)
    var namespaceID: Int32 = 0
    let master = rtnl_link_get_master(link)
    self.init(
      index: rtnl_link_get_ifindex(link), name: rtnl_link_get_name(link).map { String(cString: $0) } ?? "",
      kind: loopback ? "loopback" : rtnl_link_get_type(link).map { String(cString: $0) },
      mac: loopback ? nil : bytes(of: rtnl_link_get_addr(link)), mtu: rtnl_link_get_mtu(link),
      up: rtnl_link_get_flags(link) & UInt32(IFF_UP) != 0, txQueueLength: rtnl_link_get_txqlen(link),
      alias: rtnl_link_get_ifalias(link).map { String(cString: $0) }, peerIndex: peer > 0 ? peer : nil,
      peerNamespaceID: rtnl_link_get_link_netnsid(link, &namespaceID) == 0 ? namespaceID : nil,
      masterIndex: master > 0 ? master : nil)
    if kind == "macvlan" { macvlanMode = rtnl_link_macvlan_get_mode(link) }
    var mode: UInt8 = 0
    if rtnl_link_inet6_get_addr_gen_mode(link, &mode) == 0 { addressGeneration = mode }
  }
}

extension NetworkConfig.Neighbour {
  static let permanent: Int32 = 0x80  // NUD_PERMANENT

  init?(libnl neighbour: OpaquePointer) {
    guard rtnl_neigh_get_state(neighbour) & Self.permanent != 0,
      let destination = bytes(of: rtnl_neigh_get_dst(neighbour))
    else { return nil }
    self.init(
      linkIndex: rtnl_neigh_get_ifindex(neighbour), family: rtnl_neigh_get_family(neighbour), destination: destination,
      linkAddress: bytes(of: rtnl_neigh_get_lladdr(neighbour)), flags: rtnl_neigh_get_flags(neighbour))
  }
}

extension NetworkConfig.Address {
  init?(libnl address: OpaquePointer) {
    guard let local = bytes(of: rtnl_addr_get_local(address)) else { return nil }
    self.init(
      linkIndex: rtnl_addr_get_ifindex(address), family: rtnl_addr_get_family(address), local: local,
      prefixLength: rtnl_addr_get_prefixlen(address), flags: rtnl_addr_get_flags(address),
      scope: rtnl_addr_get_scope(address), broadcast: bytes(of: rtnl_addr_get_broadcast(address)),
      peer: bytes(of: rtnl_addr_get_peer(address)).flatMap { $0 == local ? nil : $0 },
      label: rtnl_addr_get_label(address).map { String(cString: $0) })
  }
}

extension NetworkConfig.Route {
  init(libnl route: OpaquePointer) {
    let destination = rtnl_route_get_dst(route)
    let hops = rtnl_route_get_nnexthops(route)
    let hop = hops > 0 ? rtnl_route_nexthop_n(route, 0) : nil
    self.init(
      table: rtnl_route_get_table(route), family: Int32(rtnl_route_get_family(route)),
      destination: bytes(of: destination), prefixLength: destination.map { Int32(nl_addr_get_prefixlen($0)) } ?? 0,
      gateway: hop.flatMap { bytes(of: rtnl_route_nh_get_gateway($0)) },
      linkIndex: hop.map { rtnl_route_nh_get_ifindex($0) }.flatMap { $0 > 0 ? $0 : nil },
      priority: rtnl_route_get_priority(route), protocolNumber: rtnl_route_get_protocol(route),
      scope: rtnl_route_get_scope(route), type: rtnl_route_get_type(route), extraHops: max(0, Int(hops) - 1))
  }
}

/// Changes to the calling thread's network namespace, through libnl-route.
public enum NetworkChanges {
  /// A veth pair: `name` here, its peer `peerName` in the network namespace of process `pid`.
  public static func addVethPair(name: String, peerName: String, peerNamespaceOf pid: Int32) throws {
    let socket = try RouteSocket()
    try RouteSocket.check(
      rtnl_link_veth_add(socket.raw, name, peerName, pid), "cannot make the veth pair \(name) and \(peerName)")
  }

  /// A macvlan `name` on the link of index `lower` here, made in the network namespace of
  /// process `pid` (IFLA_NET_NS_PID: the lower link stays where it is).
  public static func addMacvlan(name: String, lower: Int32, mode: UInt32, inNamespaceOf pid: Int32) throws {
    let socket = try RouteSocket()
    guard let link = rtnl_link_macvlan_alloc() else { throw CKError(.failed, "libnl: cannot allocate a link") }
    defer { rtnl_link_put(link) }
    rtnl_link_set_name(link, name)
    rtnl_link_set_link(link, lower)
    try RouteSocket.check(rtnl_link_macvlan_set_mode(link, mode), "macvlan mode")
    rtnl_link_set_ns_pid(link, pid)
    try RouteSocket.check(rtnl_link_add(socket.raw, link, NLM_F_CREATE), "cannot make the macvlan \(name)")
  }

  /// Adds the permanent neighbour entry `neighbour` on the link of index `link`.
  public static func add(_ neighbour: NetworkConfig.Neighbour, toLink link: Int32) throws {
    let socket = try RouteSocket()
    guard let made = rtnl_neigh_alloc() else { throw CKError(.failed, "libnl: cannot allocate a neighbour") }
    defer { rtnl_neigh_put(made) }
    rtnl_neigh_set_ifindex(made, link)
    rtnl_neigh_set_family(made, neighbour.family)
    rtnl_neigh_set_state(made, NetworkConfig.Neighbour.permanent)
    rtnl_neigh_set_flags(made, neighbour.flags)
    let destination = makeAddress(family: neighbour.family, neighbour.destination)
    defer { if let destination { nl_addr_put(destination) } }
    try RouteSocket.check(rtnl_neigh_set_dst(made, destination), "neighbour address")
    let linkAddress = neighbour.linkAddress.flatMap { makeAddress(family: AF_LLC, $0) }
    defer { if let linkAddress { nl_addr_put(linkAddress) } }
    if let linkAddress { rtnl_neigh_set_lladdr(made, linkAddress) }
    try RouteSocket.check(rtnl_neigh_add(socket.raw, made, NLM_F_CREATE), "cannot add a neighbour entry")
  }

  /// The index of the link called `name`, nil when there is none.
  public static func index(ofLink name: String) throws -> Int32? {
    let socket = try RouteSocket()
    var link: OpaquePointer?
    guard rtnl_link_get_kernel(socket.raw, 0, name, &link) == 0, let link else { return nil }
    defer { rtnl_link_put(link) }
    return rtnl_link_get_ifindex(link)
  }

  /// Gives the link `name` the attributes of `wanted` (MAC, MTU, queue length, alias, up)
  /// and enslaves it to the link of index `master` when given.
  public static func configure(link name: String, as wanted: NetworkConfig.Link, master: Int32? = nil) throws {
    try change(link: name, "cannot set up link \(name)") { changes in
      if let mac = wanted.mac, let macAddress = makeAddress(family: AF_LLC, mac) {
        rtnl_link_set_addr(changes, macAddress)
        nl_addr_put(macAddress)
      }
      rtnl_link_set_mtu(changes, wanted.mtu)
      rtnl_link_set_txqlen(changes, wanted.txQueueLength)
      if let alias = wanted.alias { rtnl_link_set_ifalias(changes, alias) }
      if let master { rtnl_link_set_master(changes, master) }
      if wanted.up { rtnl_link_set_flags(changes, UInt32(IFF_UP)) }
    }
  }

  /// How the kernel makes an IPv6 link-local address for the link `name` as it comes up
  /// (IFLA_INET6_ADDR_GEN_MODE, see ``NetworkConfig/Link/addressGeneration``).
  public static func setAddressGeneration(link name: String, _ mode: UInt8) throws {
    try change(link: name, "cannot set the address generation of \(name)") { changes in
      try RouteSocket.check(rtnl_link_inet6_set_addr_gen_mode(changes, mode), "address generation of \(name)")
    }
  }

  /// Enslaves the link `name` to the link of index `master` (a bridge).
  public static func enslave(link name: String, to master: Int32) throws {
    try change(link: name, "cannot enslave link \(name)") { rtnl_link_set_master($0, master) }
  }

  /// Deletes the link `name` (a veth's peer goes with it).
  public static func delete(link name: String) throws {
    let socket = try RouteSocket()
    guard let link = rtnl_link_alloc() else { throw CKError(.failed, "libnl: cannot allocate a link") }
    defer { rtnl_link_put(link) }
    rtnl_link_set_name(link, name)
    try RouteSocket.check(rtnl_link_delete(socket.raw, link), "cannot delete link \(name)")
  }

  /// Changes the link `name` as `edit` sets the attributes of a change (the libnl link
  /// holding only what changes), in one RTM_NEWLINK; `failure` names the change in errors.
  private static func change(link name: String, _ failure: String, _ edit: (OpaquePointer) throws -> Void) throws {
    let socket = try RouteSocket()
    var original: OpaquePointer?
    try RouteSocket.check(rtnl_link_get_kernel(socket.raw, 0, name, &original), "link \(name)")
    guard let original else { throw CKError(.failed, "link \(name) is gone") }
    defer { rtnl_link_put(original) }
    guard let changes = rtnl_link_alloc() else { throw CKError(.failed, "libnl: cannot allocate a link") }
    defer { rtnl_link_put(changes) }
    try edit(changes)
    try RouteSocket.check(rtnl_link_change(socket.raw, original, changes, 0), failure)
  }

  /// Adds `address` to the link of index `link`.
  public static func add(_ address: NetworkConfig.Address, toLink link: Int32, named name: String) throws {
    let socket = try RouteSocket()
    guard let made = rtnl_addr_alloc() else { throw CKError(.failed, "libnl: cannot allocate an address") }
    defer { rtnl_addr_put(made) }
    rtnl_addr_set_ifindex(made, link)
    var owned: [OpaquePointer] = []
    defer { for address in owned { nl_addr_put(address) } }
    if let local = makeAddress(family: address.family, address.local, prefixLength: address.prefixLength) {
      owned.append(local)
      try RouteSocket.check(rtnl_addr_set_local(made, local), "address on \(name)")
    }
    if let peer = address.peer,
      let made2 = makeAddress(family: address.family, peer, prefixLength: address.prefixLength)
    {
      owned.append(made2)
      try RouteSocket.check(rtnl_addr_set_peer(made, made2), "peer address on \(name)")
    }
    if let broadcast = address.broadcast, let made2 = makeAddress(family: address.family, broadcast) {
      owned.append(made2)
      try RouteSocket.check(rtnl_addr_set_broadcast(made, made2), "broadcast address on \(name)")
    }
    rtnl_addr_set_prefixlen(made, address.prefixLength)
    rtnl_addr_set_flags(made, address.flags)
    rtnl_addr_set_scope(made, address.scope)
    if let label = address.label { try RouteSocket.check(rtnl_addr_set_label(made, label), "label on \(name)") }
    try RouteSocket.check(rtnl_addr_add(socket.raw, made, 0), "cannot add an address to \(name)")
  }

  /// Adds `route`, through the link of index `link` when it names one.
  public static func add(_ route: NetworkConfig.Route, throughLink link: Int32?) throws {
    let socket = try RouteSocket()
    guard let made = rtnl_route_alloc() else { throw CKError(.failed, "libnl: cannot allocate a route") }
    defer { rtnl_route_put(made) }
    rtnl_route_set_table(made, route.table)
    try RouteSocket.check(rtnl_route_set_family(made, UInt8(route.family)), "route family")
    let length = route.family == AF_INET6 ? 16 : 4
    let destination = makeAddress(
      family: route.family, route.destination ?? [UInt8](repeating: 0, count: length), prefixLength: route.prefixLength)
    defer { if let destination { nl_addr_put(destination) } }
    try RouteSocket.check(rtnl_route_set_dst(made, destination), "route destination")
    rtnl_route_set_priority(made, route.priority)
    rtnl_route_set_protocol(made, route.protocolNumber)
    rtnl_route_set_scope(made, route.scope)
    try RouteSocket.check(rtnl_route_set_type(made, route.type), "route type")
    if link != nil || route.gateway != nil {
      guard let hop = rtnl_route_nh_alloc() else { throw CKError(.failed, "libnl: cannot allocate a next hop") }
      if let link { rtnl_route_nh_set_ifindex(hop, link) }
      let gateway = route.gateway.flatMap { makeAddress(family: route.family, $0) }
      defer { if let gateway { nl_addr_put(gateway) } }
      if let gateway { rtnl_route_nh_set_gateway(hop, gateway) }
      rtnl_route_add_nexthop(made, hop)
    }
    try RouteSocket.check(rtnl_route_add(socket.raw, made, 0), "cannot add a route")
  }
}
