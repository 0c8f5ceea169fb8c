import Glibc

/// `/proc/<pid>/net/dev`: the network devices of the process's network namespace.
public enum ProcNetDev {
  /// The device names, in the order the kernel lists them.
  public static func names(pid: Int32) throws(SyscallError) -> [String] {
    parse(try PseudoFile.read("/proc/\(pid)/net/dev"))
  }

  /// The names in the text of a net/dev file: two header lines, then `name: counters`.
  public static func parse(_ text: String) -> [String] {
    text.split(separator: "\n").dropFirst(2).compactMap { line in
      guard let colon = line.firstIndex(of: ":") else { return nil }
      let name = line[..<colon].drop(while: { $0 == " " })
      return name.isEmpty ? nil : String(name)
    }
  }
}

/// The addresses local to a process's network namespace: IPv4 from `/proc/<pid>/net/fib_trie`
/// (the `/32 host LOCAL` entries), IPv6 from `/proc/<pid>/net/if_inet6`.
public enum ProcNetAddresses {
  /// Every local address, IPv4 first, as text (`10.9.9.9`, `fd00::9`).
  public static func read(pid: Int32) throws(SyscallError) -> [String] {
    let ipv4 = parseFibTrie(try PseudoFile.read("/proc/\(pid)/net/fib_trie"))
    let ipv6 = (try PseudoFile.readIfExists("/proc/\(pid)/net/if_inet6")).map(parseInet6) ?? []
    return ipv4 + ipv6
  }

  /// The addresses of the `|-- address` lines followed by `/32 host LOCAL`, each once.
  public static func parseFibTrie(_ text: String) -> [String] {
    var found: [String] = []
    var last: Substring?
    for line in text.split(separator: "\n") {
      let trimmed = line.drop(while: { $0 == " " || $0 == "|" || $0 == "+" || $0 == "-" })
      if line.contains("|-- ") {
        last = trimmed.split(separator: " ").first
      } else if trimmed.hasPrefix("/32 host LOCAL"), let address = last, !found.contains(String(address)) {
        found.append(String(address))
      }
    }
    return found
  }

  /// The first field of each if_inet6 line (32 hex digits), in the usual text form.
  public static func parseInet6(_ text: String) -> [String] {
    text.split(separator: "\n").compactMap { line in
      guard let hex = line.split(separator: " ").first, hex.count == 32 else { return nil }
      var bytes = [UInt8]()
      var index = hex.startIndex
      while index < hex.endIndex {
        let next = hex.index(index, offsetBy: 2)
        guard let byte = UInt8(hex[index..<next], radix: 16) else { return nil }
        bytes.append(byte)
        index = next
      }
      var address = in6_addr()
      withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes) }
      var text = [CChar](repeating: 0, count: Int(INET6_ADDRSTRLEN))
      guard inet_ntop(AF_INET6, &address, &text, socklen_t(text.count)) != nil else { return nil }
      return String(nulTerminated: text)
    }
  }
}
