import CLibnl
import Linux

/// A NETLINK_ROUTE socket of libnl in the calling thread's network namespace (a netlink
/// socket stays in the namespace it was made in), freed when it ends.
final class RouteSocket {
  let raw: OpaquePointer

  init() throws(CKError) {
    guard let socket = nl_socket_alloc() else { throw CKError(.failed, "libnl: cannot allocate a socket") }
    let status = nl_connect(socket, NETLINK_ROUTE)
    guard status == 0 else {
      nl_socket_free(socket)
      throw CKError(.failed, "libnl: connect: \(Self.message(status))")
    }
    raw = socket
  }

  deinit { nl_socket_free(raw) }

  /// libnl's text for a negative status.
  static func message(_ status: Int32) -> String { String(cString: nl_geterror(status)) }

  /// Calls `fill` with a new cache, then frees it; `allocate` is one of libnl's
  /// rtnl_*_alloc_cache calls.
  func withCache<T>(
    _ what: String, _ allocate: (OpaquePointer, UnsafeMutablePointer<OpaquePointer?>) -> Int32,
    _ body: (OpaquePointer) throws -> T
  ) throws -> T {
    var cache: OpaquePointer?
    let status = allocate(raw, &cache)
    guard status == 0, let cache else { throw CKError(.failed, "libnl: \(what): \(Self.message(status))") }
    defer { nl_cache_free(cache) }
    return try body(cache)
  }

  /// Every object of `cache`.
  static func objects(of cache: OpaquePointer) -> [OpaquePointer] {
    var objects: [OpaquePointer] = []
    var object = nl_cache_get_first(cache)
    while let current = object {
      objects.append(current)
      object = nl_cache_get_next(current)
    }
    return objects
  }

  /// Throws unless a libnl call that changes something returned 0.
  static func check(_ status: Int32, _ what: @autoclosure () -> String) throws(CKError) {
    guard status >= 0 else { throw CKError(.failed, "\(what()): \(message(status))") }
  }
}

/// The bytes of a libnl address (nil for none).
func bytes(of address: OpaquePointer?) -> [UInt8]? {
  guard let address, let data = nl_addr_get_binary_addr(address) else { return nil }
  let length = Int(nl_addr_get_len(address))
  return length == 0 ? nil : Array(UnsafeRawBufferPointer(start: data, count: length))
}

/// A libnl address of `family` with `bytes` and `prefixLength`, released by the caller
/// (nl_addr_put).
func makeAddress(family: Int32, _ bytes: [UInt8], prefixLength: Int32? = nil) -> OpaquePointer? {
  let address = bytes.withUnsafeBytes { nl_addr_build(family, $0.baseAddress, $0.count) }
  if let address, let prefixLength { nl_addr_set_prefixlen(address, prefixLength) }
  return address
}
