import Bundle
import CKShim
import Cgroup
import Foundation
import Glibc
import Linux
import Logging
import Netlink

/// The devices, addresses and routes of the container's own network namespace (issue 18's
/// first part): veth pairs, with the peer inside or outside (in the namespace ckcont runs
/// in: a host's end, often on a bridge), macvlans on a link inside or outside, their
/// addresses, the routes not made by the kernel for an address, policy rules (the kernel's
/// own messages, ``PolicyRules``) and permanent neighbour entries. Read and made through libnl-route, from threads that join the
/// namespace (``NamespaceThread``). What ckcont does not make (another kind of device, a
/// multipath route, a veth whose peer is in a third namespace) is refused at dump.
public enum NetworkDevices {
  static let rtTableLocal: UInt32 = 255
  static let rtProtocolKernel: UInt8 = 2
  static let ifaFlagTentative: UInt32 = 0x40
  static let ifaFlagNoDAD: UInt32 = 0x02
  static let ifaFlagPermanent: UInt32 = 0x80
  static let scopeLink: Int32 = 253
  static let addressGenerationNone: UInt8 = 1  // IN6_ADDR_GEN_MODE_NONE

  // MARK: Capture

  /// What a network namespace's own threads read of it (``read(pid:)``).
  private struct Reading {
    var config: NetworkConfig
    var rules: [[UInt8]]
    /// A new namespace's rules, which it is made with.
    var freshRules: [[UInt8]]
    var tuns: [String: TunDevices.Settings]
    /// Each tun's IPv6 stable secret, where set.
    var secrets: [String: String]
    var bridges: Bridges.Settings
    var entries: [Bridges.Entry]?
    /// Link index -> name.
    var names: [Int32: String] { Dictionary(config.links.map { ($0.index, $0.name) }, uniquingKeysWith: { a, _ in a }) }
  }

  /// What the network namespace of process `pid` holds beyond loopback and its own
  /// addresses; nil when nothing.
  static func capture(pid: Int32) throws -> NetworkImage? {
    var reading = try read(pid: pid)
    if !reading.bridges.bridges.isEmpty { reading.bridges = try changedBridgeSettings(reading.bridges) }
    let names = reading.names
    let links = try captureLinks(reading)
    let inside = reading.config
    let keepingLinkLocals = Set(
      inside.links.filter { $0.kind == "bridge" || $0.addressGeneration == addressGenerationNone }.map(\.index))
    let addresses = try inside.addresses.filter { !isMadeByTheKernel($0, names, keeping: keepingLinkLocals) }.map {
      address in
      guard let link = names[address.linkIndex] else { throw refuse("an address on a link that is gone", nil) }
      return NetworkAddressImage(
        link: link, family: address.family, local: Data(address.local), prefixLength: address.prefixLength,
        flags: address.flags & ~ifaFlagTentative, scope: address.scope, broadcast: address.broadcast.map { Data($0) },
        peer: address.peer.map { Data($0) }, label: address.label)
    }
    let routes = try inside.routes.filter { $0.table != rtTableLocal && $0.protocolNumber != rtProtocolKernel }.map {
      route in
      guard route.extraHops == 0 else { throw refuse("a route with several next hops", nil) }
      return NetworkRouteImage(
        table: route.table, family: route.family, destination: route.destination.map { Data($0) },
        prefixLength: route.prefixLength, gateway: route.gateway.map { Data($0) },
        link: route.linkIndex.flatMap { names[$0] }, priority: route.priority, protocolNumber: route.protocolNumber,
        scope: route.scope, type: route.type)
    }
    let neighbours = try inside.neighbours.map { neighbour in
      guard let link = names[neighbour.linkIndex] else { throw refuse("a neighbour entry on a link that is gone", nil) }
      return NetworkNeighbourImage(
        link: link, family: neighbour.family, destination: Data(neighbour.destination),
        linkAddress: neighbour.linkAddress.map { Data($0) }, flags: neighbour.flags)
    }
    var image = NetworkImage(
      links: links, addresses: addresses, routes: routes, netfilter: try Netfilter.capture(pid: pid))
    // A new namespace's rules are made with it: kept only when they differ.
    image.rules = reading.rules == reading.freshRules ? nil : reading.rules.map { Data($0) }
    image.neighbours = neighbours.isEmpty ? nil : neighbours
    image.bridgeEntries = try bridgeEntries(reading.entries, names: names)
    guard image != NetworkImage(links: [], addresses: [], routes: []) else { return nil }
    return image
  }

  /// Reads the namespace of process `pid` from a thread inside it.
  private static func read(pid: Int32) throws -> Reading {
    try NamespaceThread.run(in: "net", of: pid) {
      let tuns = try TunDevices.read()
      // /proc/sys/net is the reading thread's namespace's; unset, the secret reads EIO.
      let secrets = Dictionary(
        tuns.keys.compactMap { name in
          (try? PseudoFile.read("/proc/sys/net/ipv6/conf/\(name)/stable_secret")).map {
            (name, $0.trimmingCharacters(in: .whitespacesAndNewlines))
          }
        }, uniquingKeysWith: { first, _ in first })
      let config = try NetworkConfig.read()
      let macs = Dictionary(
        config.links.compactMap { link in link.mac.map { (link.index, $0) } }, uniquingKeysWith: { first, _ in first })
      return Reading(
        config: config, rules: try PolicyRules.read(),
        freshRules: try NamespaceThread.runInFresh("net") { try PolicyRules.read() }, tuns: tuns, secrets: secrets,
        bridges: try Bridges.read(), entries: try Bridges.entries(macs: macs))
    }
  }

  /// The links but loopback, each of a kind ckcont makes again.
  private static func captureLinks(_ reading: Reading) throws -> [NetworkLinkImage] {
    let (inside, names) = (reading.config, reading.names)
    var outside: NetworkConfig?
    func here() throws -> NetworkConfig {
      let config = try outside ?? NetworkConfig.read()
      outside = config
      return config
    }
    return try inside.links.filter { $0.kind != "loopback" }.map { link in
      guard link.kind == "veth" || link.kind == "macvlan" || link.kind == "tun" || link.kind == "bridge" else {
        throw refuse(
          "network device \(link.name) of kind \(link.kind ?? "none")",
          "ckcont makes veth pairs, macvlans, bridges and tun/tap devices again; move the device out before the checkpoint"
        )
      }
      var image = NetworkLinkImage(
        name: link.name, kind: link.kind ?? "", mac: link.mac.map { Data($0) }, mtu: link.mtu, up: link.up,
        txQueueLength: link.txQueueLength, alias: link.alias)
      image.addressGeneration = link.addressGeneration == 0 ? nil : link.addressGeneration
      if let master = link.masterIndex {
        (image.master, image.portSettings) = try port(link, of: master, in: inside, bridges: reading.bridges)
      }
      switch link.kind {
      case "bridge":
        (image.bridge, image.mac) = try bridge(link, in: inside, bridges: reading.bridges)
      case "tun":
        guard let settings = reading.tuns[link.name] else {
          throw refuse("the tun device \(link.name), whose settings rtnetlink does not show", nil)
        }
        image.tun = TunDeviceImage(
          tap: settings.tap, packetInfo: settings.packetInfo, vnetHeader: settings.vnetHeader,
          multiQueue: settings.multiQueue, persistent: settings.persistent, owner: settings.owner,
          group: settings.group)
        image.tun?.stableSecret = reading.secrets[link.name]
      case "macvlan":
        image.macvlanMode = link.macvlanMode
        if link.peerNamespaceID == nil {
          image.lower = link.peerIndex.flatMap { names[$0] }
        } else {
          guard let lower = try here().links.first(where: { $0.index == link.peerIndex }) else {
            throw refuse(
              "the macvlan \(link.name), whose lower link is in a network namespace ckcont does not run in",
              "run the dump in the namespace of its lower link (nsenter --net)")
          }
          image.outsideLower = lower.name
        }
      default:
        if link.peerNamespaceID == nil {
          image.peer = link.peerIndex.flatMap { names[$0] }
        } else {
          image.outsidePeer = try outerEnd(of: link, in: try here())
        }
      }
      return image
    }
  }

  /// The forwarding entries set by hand, by port name; nil when none.
  private static func bridgeEntries(_ entries: [Bridges.Entry]?, names: [Int32: String]) throws
    -> [BridgeEntryImage]?
  {
    guard let entries else {
      throw refuse("forwarding entries of a VLAN on a bridge", "ckcont keeps bridges without VLAN filtering")
    }
    let kept = try entries.map { entry in
      guard let link = names[entry.linkIndex] else { throw refuse("a forwarding entry on a link that is gone", nil) }
      return BridgeEntryImage(link: link, mac: Data(entry.mac), permanent: entry.state == Bridges.statePermanent)
    }
    return kept.isEmpty ? nil : kept
  }

  /// The settings of each bridge and port that differ from a new one's (``Bridges/defaults()``).
  private static func changedBridgeSettings(_ settings: Bridges.Settings) throws -> Bridges.Settings {
    let (bridge, port) = try NamespaceThread.runInFresh("net") { try Bridges.defaults() }
    var changed = settings
    changed.bridges = settings.bridges.mapValues { $0.filter { !bridge.contains($0) } }
    changed.ports = settings.ports.mapValues { $0.filter { !port.contains($0) } }
    return changed
  }

  /// A bridge's settings, and its MAC unless it is its lowest port's: a bridge takes that
  /// one until a MAC is set (which would stay when ports come and go).
  private static func bridge(_ link: NetworkConfig.Link, in inside: NetworkConfig, bridges: Bridges.Settings) throws
    -> ([NetlinkAttributeImage], Data?)
  {
    guard let settings = bridges.bridges[link.name] else {
      throw refuse("the bridge \(link.name), whose settings rtnetlink does not show", nil)
    }
    if let filtering = settings.first(where: { $0.type == Bridges.vlanFiltering }), filtering.value.first != 0 {
      throw refuse(
        "the bridge \(link.name) filtering VLANs (vlan_filtering 1)", "ckcont keeps bridges without VLAN filtering")
    }
    let portMACs = inside.links.filter { $0.masterIndex == link.index }.compactMap(\.mac)
    let lowest = portMACs.min { $0.lexicographicallyPrecedes($1) }
    return (
      settings.map { NetlinkAttributeImage(type: $0.type, value: Data($0.value)) },
      link.mac == lowest ? nil : link.mac.map { Data($0) }
    )
  }

  /// The bridge a link is enslaved to (by the index `master`) and its settings as a port.
  private static func port(
    _ link: NetworkConfig.Link, of master: Int32, in inside: NetworkConfig, bridges: Bridges.Settings
  ) throws -> (String, [NetlinkAttributeImage]) {
    guard let bridge = inside.links.first(where: { $0.index == master }), bridge.kind == "bridge",
      let settings = bridges.ports[link.name]
    else {
      let name = inside.links.first { $0.index == master }?.name ?? "a link"
      throw refuse("network device \(link.name) enslaved to \(name), which is not a bridge", nil)
    }
    guard !settings.contains(where: { Bridges.portBackup.contains($0.type) }) else {
      throw refuse("the bridge port \(link.name) with a backup port or next hop", nil)
    }
    return (bridge.name, settings.map { NetlinkAttributeImage(type: $0.type, value: Data($0.value)) })
  }

  /// Loopback's own addresses and IPv6 link-local ones, which the kernel makes when a link
  /// comes up (from its MAC, which is kept, or a tun's stable secret). Not those of the links
  /// in `keeping`: a bridge's has the MAC of its lowest port when it first had a carrier,
  /// which later ports may have changed since; a link told to make none since it came up
  /// kept the one it had. The restore puts those back as they were.
  private static func isMadeByTheKernel(
    _ address: NetworkConfig.Address, _ names: [Int32: String], keeping: Set<Int32>
  ) -> Bool {
    if names[address.linkIndex] == "lo" {
      return address.local == [127, 0, 0, 1] && address.prefixLength == 8
        || address.local == [UInt8](repeating: 0, count: 15) + [1] && address.prefixLength == 128
    }
    return isLinkLocal(address.family, address.local) && !keeping.contains(address.linkIndex)
  }

  private static func isLinkLocal(_ family: Int32, _ local: [UInt8]) -> Bool {
    family == AF_INET6 && local.starts(with: [0xfe, 0x80])
  }

  /// The outer end of the veth `link`: the link of the namespace ckcont runs in whose
  /// peer it is.
  private static func outerEnd(of link: NetworkConfig.Link, in outside: NetworkConfig) throws -> OutsideVethPeer {
    guard
      let peer = outside.links.first(where: {
        $0.index == link.peerIndex && $0.kind == "veth" && $0.peerIndex == link.index && $0.peerNamespaceID != nil
      })
    else {
      throw refuse(
        "network device \(link.name), whose veth peer is in a network namespace ckcont does not run in",
        "run the dump in the namespace of the peer (nsenter --net)")
    }
    let master = peer.masterIndex.flatMap { index in outside.links.first { $0.index == index }?.name }
    return OutsideVethPeer(name: peer.name, master: master, mac: peer.mac.map { Data($0) }, mtu: peer.mtu, up: peer.up)
  }

  private static func refuse(_ what: String, _ hint: String?) -> CKError {
    CKError(
      .failed, "the container's network namespace has \(what), which ckcont cannot checkpoint yet",
      hint: hint ?? "ckcont makes veth pairs, their addresses and routes again")
  }

  /// Waits (at most two seconds) until the outer ends of the killed container's veth pairs
  /// are gone: the kernel takes its network namespace down in a worker once nothing holds
  /// it (a parent outside the container that it was started in, as `unshare -n` makes it,
  /// holds it until it has reaped the container's init), and a restore right after the dump
  /// makes those ends again under their names. Something else may hold it for longer (a
  /// runtime's bind mount): the restore then says that the name is taken.
  static func awaitOuterEndsGone(_ image: NetworkImage?, log: Logger) {
    let outer = image?.links.compactMap { $0.outsidePeer?.name } ?? []
    guard !outer.isEmpty else { return }
    let deadline = monotonicNow() + 2
    while monotonicNow() < deadline {
      guard outer.contains(where: { (try? NetworkChanges.index(ofLink: $0)) != nil }) else { return }
      usleep(5000)
    }
    log.info("the outer ends of the container's veth pairs (\(outer.joined(separator: ", "))) are still here")
  }

  // MARK: Restore

  /// Where the outer ends go: a new name for some (`--veth NAME=NEWNAME`), and the bridge
  /// they join (`--bridge NAME`; else the bridge of their master's name, when there is one).
  public struct OuterEnds: Sendable {
    public var names: [String: String] = [:]
    public var bridge: String?
    public init() {}
  }

  /// Makes `image` again in the network namespace of process `pid` (new, with loopback):
  /// each veth pair (an outer end here, where ckcont runs, joining the bridge of its master's
  /// name when there is one), their attributes, addresses, then routes.
  /// What `--veth` and `--bridge` ask of the bundle and of this namespace, before anything
  /// is made: a veth end the bundle has, a bridge that exists here.
  static func check(_ outerEnds: OuterEnds, against image: NetworkImage?) throws {
    let outer = Set(image?.links.compactMap { $0.outsidePeer?.name } ?? [])
    if let name = outerEnds.names.keys.sorted().first(where: { !outer.contains($0) }) {
      throw CKError(
        .badInput,
        "--veth \(name)=...: the container had no veth whose outer end was \(name)"
          + (outer.isEmpty ? "" : " (it had \(outer.sorted().joined(separator: ", ")))"))
    }
    if let bridge = outerEnds.bridge, try NetworkChanges.index(ofLink: bridge) == nil {
      throw CKError(.badInput, "--bridge \(bridge): no link of that name here")
    }
  }

  static func restore(_ image: NetworkImage, pid: Int32, outerEnds: OuterEnds, log: Logger) throws {
    try makeOutsideLinks(image, pid: pid, outerEnds: outerEnds, log: log)
    try NamespaceThread.run(in: "net", of: pid) {
      let keepingLinkLocals = Set(image.addresses.filter { isLinkLocal($0.family, Array($0.local)) }.map(\.link))
      try makeInsideLinks(image, pid: pid, keepingLinkLocals: keepingLinkLocals)
      try addAddresses(image, keepingLinkLocals: keepingLinkLocals)
      try addRoutesAndEntries(image)
    }
    // Rules name links (iif, oif) that must exist by then.
    if let netfilter = image.netfilter { try Netfilter.restore(netfilter, pid: pid) }
  }

  /// Makes, where ckcont runs, what the container has on links outside: macvlans on a link
  /// of that name here, and the outer ends of its veth pairs (on their bridges).
  private static func makeOutsideLinks(_ image: NetworkImage, pid: Int32, outerEnds: OuterEnds, log: Logger) throws {
    for link in image.links {
      guard let lower = link.outsideLower, let mode = link.macvlanMode else { continue }
      guard let index = try NetworkChanges.index(ofLink: lower) else {
        throw CKError(
          .failed, "cannot make the macvlan \(link.name): no link \(lower) here for it to sit on",
          hint: "restore where that link exists, or make it first")
      }
      try NetworkChanges.addMacvlan(name: link.name, lower: index, mode: mode, inNamespaceOf: pid)
    }
    for link in image.links {
      guard var outer = link.outsidePeer else { continue }
      outer.name = outerEnds.names[outer.name] ?? outer.name
      outer.master = outerEnds.bridge ?? outer.master
      guard try NetworkChanges.index(ofLink: outer.name) == nil else {
        throw CKError(
          .failed, "cannot make the veth end \(outer.name) here: a link of that name exists",
          hint: "remove it, or restore in another network namespace (nsenter --net)")
      }
      try NetworkChanges.addVethPair(name: outer.name, peerName: link.name, peerNamespaceOf: pid)
      var master: Int32?
      if let bridge = outer.master {
        master = try NetworkChanges.index(ofLink: bridge)
        if master == nil { log.info("veth \(outer.name): no bridge \(bridge) here; left on its own") }
      }
      try NetworkChanges.configure(link: outer.name, as: attributes(outer), master: master)
    }
  }

  /// Makes the links inside (in the calling thread's namespace, the container's) and gives
  /// them their attributes: bridges first (ports join them as they are configured, a macvlan
  /// may sit on one), tun/tap devices, veth pairs inside, macvlans on links inside last.
  private static func makeInsideLinks(_ image: NetworkImage, pid: Int32, keepingLinkLocals: Set<String>) throws {
    for link in image.links {
      guard let settings = link.bridge else { continue }
      try Bridges.add(name: link.name, settings: settings.map { .init(type: $0.type, value: Array($0.value)) })
      // The kernel would make a link-local address from the MAC the bridge has when it
      // first has a carrier; the bundle says which one it had.
      if keepingLinkLocals.contains(link.name) {
        try NetworkChanges.setAddressGeneration(link: link.name, addressGenerationNone)
      }
    }
    for link in image.links { if let tun = link.tun { try makeTun(link.name, tun) } }
    var made: Set<String> = []
    for link in image.links where link.outsidePeer == nil && !made.contains(link.name) {
      guard let peer = link.peer else { continue }
      try NetworkChanges.addVethPair(name: link.name, peerName: peer, peerNamespaceOf: pid)
      made.formUnion([link.name, peer])
    }
    // Macvlans on links inside once those are configured (ports in their bridges): a
    // macvlan takes limits such as its lower link's largest TSO size as they are then.
    let onInner = Set(image.links.filter { $0.lower != nil }.map(\.name))
    try configureLinks(image.links.filter { !onInner.contains($0.name) }, keepingLinkLocals: keepingLinkLocals)
    for link in image.links {
      guard let lower = link.lower, let mode = link.macvlanMode else { continue }
      let index = try linkIndex(lower, for: "the macvlan \(link.name)")
      try NetworkChanges.addMacvlan(name: link.name, lower: index, mode: mode, inNamespaceOf: pid)
    }
    try configureLinks(image.links.filter { onInner.contains($0.name) }, keepingLinkLocals: keepingLinkLocals)
  }

  /// Adds the addresses (the link-local ones of `keepingLinkLocals`, which the kernel would
  /// make otherwise, with the way each link makes them afterwards).
  private static func addAddresses(_ image: NetworkImage, keepingLinkLocals: Set<String>) throws {
    for address in image.addresses {
      let index = try linkIndex(address.link, for: "its address")
      var wanted = NetworkConfig.Address(
        linkIndex: index, family: address.family, local: Array(address.local), prefixLength: address.prefixLength,
        flags: address.flags, scope: address.scope, broadcast: address.broadcast.map(Array.init),
        peer: address.peer.map(Array.init), label: address.label)
      // An IPv6 address would be tentative for a second of duplicate detection, in which
      // nothing can bind it: the container had it usable. Not a link-local one: the kernel
      // made it, and makes its own again each time a link comes up, tentative.
      if address.family == AF_INET6 && !isLinkLocal(address.family, Array(address.local)) {
        wanted.flags |= ifaFlagNoDAD
      }
      try NetworkChanges.add(wanted, toLink: index, named: address.link)
    }
    // As the kernel had it: it makes one again from the MAC if the bridge goes down and up.
    for link in image.links where keepingLinkLocals.contains(link.name) && link.bridge != nil {
      try NetworkChanges.setAddressGeneration(link: link.name, link.addressGeneration ?? 0)
    }
  }

  /// Adds the routes, the bridges' forwarding entries, the permanent neighbour entries and
  /// the policy rules.
  private static func addRoutesAndEntries(_ image: NetworkImage) throws {
    for route in image.routes {
      let index = try route.link.map { try linkIndex($0, for: "its route") }
      try NetworkChanges.add(
        NetworkConfig.Route(
          table: route.table, family: route.family, destination: route.destination.map(Array.init),
          prefixLength: route.prefixLength, gateway: route.gateway.map(Array.init), linkIndex: index,
          priority: route.priority, protocolNumber: route.protocolNumber, scope: route.scope, type: route.type),
        throughLink: index)
    }
    for entry in image.bridgeEntries ?? [] {
      let index = try linkIndex(entry.link, for: "its forwarding entry")
      let state = entry.permanent ? Bridges.statePermanent : Bridges.stateStatic
      try Bridges.add(Bridges.Entry(linkIndex: index, mac: Array(entry.mac), state: state), named: entry.link)
    }
    for neighbour in image.neighbours ?? [] {
      let index = try linkIndex(neighbour.link, for: "its neighbour entry")
      try NetworkChanges.add(
        NetworkConfig.Neighbour(
          linkIndex: index, family: neighbour.family, destination: Array(neighbour.destination),
          linkAddress: neighbour.linkAddress.map(Array.init), flags: neighbour.flags),
        toLink: index)
    }
    if let rules = image.rules { try PolicyRules.replace(with: rules.map(Array.init)) }
  }

  /// The index of the link `name` made earlier in the restore (for `what` needs it).
  private static func linkIndex(_ name: String, for what: String) throws -> Int32 {
    guard let index = try NetworkChanges.index(ofLink: name) else {
      throw CKError(.failed, "link \(name) is missing for \(what)")
    }
    return index
  }

  /// Gives every link made its attributes: ports join their bridges and get their settings
  /// as ports, then the bridges theirs (an MTU a bridge would have from its ports is then
  /// no change: only one set by hand stays set).
  /// Each gets its way of making a link-local address first, before it comes up (a tun's
  /// after its stable secret, whose writing makes it stable privacy); a bridge whose
  /// link-local address is restored (`keepingLinkLocals`) gets it after that address.
  private static func configureLinks(_ links: [NetworkLinkImage], keepingLinkLocals: Set<String>) throws {
    for link in links {
      guard let mode = link.addressGeneration, link.bridge == nil || !keepingLinkLocals.contains(link.name) else {
        continue
      }
      try NetworkChanges.setAddressGeneration(link: link.name, mode)
    }
    for link in links where link.bridge == nil {
      let master = try link.master.map { try linkIndex($0, for: "its port \(link.name)") }
      try NetworkChanges.configure(link: link.name, as: attributes(link), master: master)
      if let settings = link.portSettings, let index = try NetworkChanges.index(ofLink: link.name) {
        try Bridges.configurePort(
          index: index, named: link.name, settings: settings.map { .init(type: $0.type, value: Array($0.value)) })
      }
    }
    for link in links where link.bridge != nil {
      try NetworkChanges.configure(link: link.name, as: attributes(link))
    }
  }

  /// Makes the tun/tap device `name` in the calling thread's namespace, through a queue
  /// that one of the container's descriptors becomes (``TunDescriptors``), as the program
  /// made it: attached before the link comes up (its operational state follows that
  /// order). A persistent device is made persistent and its queue closed.
  private static func makeTun(_ name: String, _ tun: TunDeviceImage) throws {
    let device = try OwnedDescriptor(opening: "/dev/net/tun", flags: O_RDWR | O_CLOEXEC)
    var flags = tun.tap ? CK_IFF_TAP : CK_IFF_TUN
    if !tun.packetInfo { flags |= CK_IFF_NO_PI }
    if tun.vnetHeader { flags |= CK_IFF_VNET_HDR }
    if tun.multiQueue { flags |= CK_IFF_MULTI_QUEUE }
    let made = ck_tun_attach(device.raw, name, Int32(flags))
    guard made == 0 else { throw SyscallError("ioctl(TUNSETIFF)", "tun device \(name)", .init(rawValue: -made)) }
    if let owner = tun.owner { _ = ck_tun_set(device.raw, Int32(CK_TUN_OWNER), UInt(owner)) }
    if let group = tun.group { _ = ck_tun_set(device.raw, Int32(CK_TUN_GROUP), UInt(group)) }
    if let secret = tun.stableSecret {
      try PseudoFile.write("/proc/sys/net/ipv6/conf/\(name)/stable_secret", secret)
    }
    guard tun.persistent else {
      let queue = device.take()
      TunDescriptors.madeQueues.withLock { $0[name] = queue }
      return
    }
    let persisted = ck_tun_set(device.raw, Int32(CK_TUN_PERSIST), 1)
    guard persisted == 0 else {
      throw SyscallError("ioctl(TUNSETPERSIST)", "tun device \(name)", .init(rawValue: -persisted))
    }
  }

  /// Every queue attached to a tun device must be the container's, of a device it makes,
  /// and every device that does not persist must have one (else a process outside holds
  /// it, which ckcont does not checkpoint).
  static func checkTunQueues(_ tasks: [Dump.CapturedTask], network: NetworkImage?) throws {
    let devices = Dictionary(
      (network?.links ?? []).compactMap { link in link.tun.map { (link.name, $0) } }, uniquingKeysWith: { a, _ in a })
    var held: Set<String> = []
    for task in tasks {
      for descriptor in task.files.descriptors {
        guard let device = descriptor.tun?.device else { continue }
        guard devices[device] != nil else {
          throw CKError(
            .failed,
            "task \(task.hostPid): fd \(descriptor.fd) is a queue of the tun device \(device), which is not in a network namespace of the container's own; ckcont cannot checkpoint it",
            hint: "give the container a network namespace of its own")
        }
        held.insert(device)
      }
    }
    if let name = devices.keys.sorted().first(where: { devices[$0]?.persistent == false && !held.contains($0) }) {
      throw refuse("the tun device \(name), held by a process outside the container", nil)
    }
  }

  /// Announces the container's addresses where it now is, once it runs (a gratuitous ARP
  /// for each IPv4 address, an unsolicited neighbour advertisement for each IPv6 one), so
  /// that a switch or a peer that knew it elsewhere learns its new port. A failure is
  /// logged: the container runs already. The sockets it sent on are closed by the job it
  /// returns, off the critical path (closing a packet socket waits out an RCU grace period).
  static func announce(_ image: NetworkImage, pid: Int32, log: Logger) -> BackgroundJob<Void>? {
    let macs = Dictionary(image.links.compactMap { link in link.mac.map { (link.name, $0) } }) { first, _ in first }
    do {
      let sockets = try NamespaceThread.run(in: "net", of: pid) {
        var sockets: [Int32] = []
        for address in image.addresses {
          guard let mac = macs[address.link], mac.count == 6, let index = try NetworkChanges.index(ofLink: address.link)
          else { continue }
          let status = mac.withUnsafeBytes { mac in
            address.local.withUnsafeBytes { ip in
              let macBytes = mac.bindMemory(to: UInt8.self).baseAddress
              let ipBytes = ip.bindMemory(to: UInt8.self).baseAddress
              return address.family == AF_INET
                ? ck_announce_ipv4(index, macBytes, ipBytes) : ck_announce_ipv6(index, macBytes, ipBytes)
            }
          }
          if status < 0 {
            log.info("cannot announce \(address.link)'s address: \(String(cString: strerror(-status)))")
          } else {
            sockets.append(status)
          }
        }
        return sockets
      }
      return BackgroundJob(named: "ckcont-announced") { for socket in sockets { close(socket) } }
    } catch {
      log.info("cannot announce the container's addresses: \(error)")
      return nil
    }
  }

  private static func attributes(_ link: NetworkLinkImage) -> NetworkConfig.Link {
    NetworkConfig.Link(
      index: 0, name: link.name, kind: link.kind, mac: link.mac.map(Array.init), mtu: link.mtu, up: link.up,
      txQueueLength: link.txQueueLength, alias: link.alias)
  }

  private static func attributes(_ outer: OutsideVethPeer) -> NetworkConfig.Link {
    NetworkConfig.Link(
      index: 0, name: outer.name, kind: "veth", mac: outer.mac.map(Array.init), mtu: outer.mtu, up: outer.up,
      txQueueLength: 1000, alias: nil)
  }

  // MARK: Validation

  /// Names a kernel accepts (IFNAMSIZ), links that exist for every address and route,
  /// addresses of their family's length, bounded counts.
  /// A name the kernel gives a link (IFNAMSIZ, no slash, space or NUL).
  static func isName(_ name: String) -> Bool {
    !name.isEmpty && name.utf8.count < 16 && !name.contains("/") && !name.contains(" ") && !name.contains("\0")
      && name != "." && name != ".."
  }

  static func validate(_ image: NetworkImage) throws(CKError) {
    func bad(_ what: String) -> CKError { CKError(.badInput, "the bundle is inconsistent: network: \(what)") }
    func length(_ family: Int32) -> Int? { family == AF_INET ? 4 : family == AF_INET6 ? 16 : nil }
    guard image.links.count <= 256, image.addresses.count <= 4096, image.routes.count <= 4096 else {
      throw bad("too many links, addresses or routes")
    }
    var names = Set(["lo"])
    let macvlanModes: Set<UInt32> = [1, 2, 4, 8, 16]
    for link in image.links {
      let macvlan =
        link.kind == "macvlan" && link.macvlanMode.map(macvlanModes.contains) == true
        && (link.lower == nil) != (link.outsideLower == nil) && (link.lower ?? link.outsideLower).map(isName) == true
        && link.peer == nil && link.outsidePeer == nil
      let veth =
        link.kind == "veth" && link.lower == nil && link.outsideLower == nil && link.macvlanMode == nil
        && link.tun == nil
      let tun =
        link.kind == "tun" && link.tun != nil && link.peer == nil && link.outsidePeer == nil && link.lower == nil
        && link.outsideLower == nil
      let bridge =
        link.kind == "bridge" && link.bridge.map(isWellFormed) == true && link.peer == nil && link.outsidePeer == nil
        && link.lower == nil && link.outsideLower == nil && link.macvlanMode == nil && link.tun == nil
        && link.master == nil
      guard veth || macvlan || tun || bridge, link.kind == "bridge" || link.bridge == nil,
        link.addressGeneration.map({ $0 <= 3 }) ?? true,
        link.portSettings.map(isWellFormed) ?? true, link.portSettings == nil || link.master != nil, isName(link.name),
        link.mac.map({ $0.count == 6 }) ?? true, link.mtu >= 68,
        link.mtu <= 65536, link.alias.map({ $0.utf8.count < 256 && !$0.contains("\0") }) ?? true,
        link.peer.map(isName) ?? true,
        link.outsidePeer.map({ isName($0.name) && ($0.master.map(isName) ?? true) })
          ?? true, link.peer == nil || link.outsidePeer == nil
      else { throw bad("link \(link.name.prefix(20)) is not one ckcont makes") }
      guard names.insert(link.name).inserted else { throw bad("link \(link.name) listed twice") }
    }
    let bridges = Set(image.links.filter { $0.bridge != nil }.map(\.name))
    for link in image.links {
      guard link.master.map(bridges.contains) ?? true else {
        throw bad("link \(link.name.prefix(20)) is enslaved to a link that is not a bridge of the container")
      }
    }
    for address in image.addresses {
      guard names.contains(address.link), let size = length(address.family), address.local.count == size,
        address.prefixLength >= 0, address.prefixLength <= size * 8,
        address.broadcast.map({ $0.count == size }) ?? true,
        address.peer.map({ $0.count == size }) ?? true, address.label.map({ $0.utf8.count < 16 }) ?? true
      else { throw bad("an address of \(address.link.prefix(20)) is malformed") }
    }
    for route in image.routes {
      guard route.link.map(names.contains) ?? true, let size = length(route.family),
        route.destination.map({ $0.count == size }) ?? true, route.prefixLength >= 0,
        route.prefixLength <= size * 8, route.gateway.map({ $0.count == size }) ?? true
      else { throw bad("a route is malformed") }
    }
    for entry in image.bridgeEntries ?? [] {
      guard image.links.contains(where: { $0.name == entry.link && $0.master != nil }), entry.mac.count == 6 else {
        throw bad("a forwarding entry of \(entry.link.prefix(20)) is malformed")
      }
    }
    for neighbour in image.neighbours ?? [] {
      guard names.contains(neighbour.link), let size = length(neighbour.family), neighbour.destination.count == size,
        neighbour.linkAddress.map({ $0.count <= 32 }) ?? true
      else { throw bad("a neighbour entry of \(neighbour.link.prefix(20)) is malformed") }
    }
    guard (image.neighbours?.count ?? 0) <= 4096, (image.rules?.count ?? 0) <= 4096,
      (image.rules ?? []).allSatisfy({ PolicyRules.isWellFormed(Array($0)) })
    else { throw bad("too many neighbour entries or rules, or a malformed rule") }
    if let netfilter = image.netfilter { try Netfilter.validate(netfilter) }
  }

  /// A list of attributes the kernel could have given: a few dozen, each a few bytes.
  private static func isWellFormed(_ attributes: [NetlinkAttributeImage]) -> Bool {
    attributes.count <= 128 && attributes.allSatisfy { $0.type > 0 && $0.type < 0x4000 && $0.value.count <= 64 }
  }

  /// One line for `inspect`.
  static func describe(_ image: NetworkImage) -> String {
    let links = image.links.map { link in
      if let tun = link.tun {
        return link.name + " (\(tun.tap ? "tap" : "tun")\(tun.persistent ? ", persistent" : ""))"
          + (link.master.map { " on \($0)" } ?? "")
      }
      if link.kind == "macvlan" {
        return link.name + " (macvlan on \(link.lower ?? (link.outsideLower ?? "?") + " outside"))"
      }
      if link.bridge != nil { return link.name + " (bridge)" }
      return link.name
        + (link.outsidePeer.map { " (veth, peer \($0.name) outside\($0.master.map { " on \($0)" } ?? ""))" }
          ?? " (veth, peer \(link.peer ?? "?"))") + (link.master.map { " on \($0)" } ?? "")
    }
    return "\(links.joined(separator: ", ")); \(image.addresses.count) address(es), \(image.routes.count) route(s)"
      + (image.rules.map { "; \($0.count) rule(s)" } ?? "")
      + (image.neighbours.map { "; \($0.count) neighbour(s)" } ?? "")
      + (image.bridgeEntries.map { "; \($0.count) forwarding entr\($0.count == 1 ? "y" : "ies")" } ?? "")
      + (image.netfilter.map { "; " + Netfilter.describe($0) } ?? "")
  }
}
