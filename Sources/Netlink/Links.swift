import CLibnl
import Linux

/// Network links of the current network namespace, read through libnl-route.
public enum NetworkLinks {
  /// The names of every link (`lo`, `eth0`, ...) in this process's network namespace.
  public static func names() throws(CKError) -> [String] {
    guard let socket = nl_socket_alloc() else { throw CKError(.failed, "libnl: cannot allocate a socket") }
    defer { nl_socket_free(socket) }
    var status = nl_connect(socket, NETLINK_ROUTE)
    guard status == 0 else { throw CKError(.failed, "libnl: connect: \(String(cString: nl_geterror(status)))") }
    var cache: OpaquePointer?
    status = rtnl_link_alloc_cache(socket, AF_UNSPEC, &cache)
    guard status == 0, let cache else {
      throw CKError(.failed, "libnl: link cache: \(String(cString: nl_geterror(status)))")
    }
    defer { nl_cache_free(cache) }
    var names: [String] = []
    var object = nl_cache_get_first(cache)
    while let current = object {
      if let name = rtnl_link_get_name(current) { names.append(String(cString: name)) }
      object = nl_cache_get_next(current)
    }
    return names
  }

  /// A probe for `ckcont check`: netlink route access works.
  public static func probe() -> Probe {
    do {
      let links = try names()
      return Probe(
        "netlink route (libnl)", essential: false, available: true, detail: "links: \(links.joined(separator: ", "))")
    } catch {
      return Probe("netlink route (libnl)", essential: false, available: false, detail: "\(error)")
    }
  }
}
