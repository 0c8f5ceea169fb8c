import Cgroup
import Foundation
import Glibc
import Linux

/// The TCP connection of a migration: the source (`ckcont migrate`) connects, says hello,
/// sends its pre-copy rounds (`round N`, then `pages PID START COUNT` lines each followed by
/// COUNT pages, then `end`, which the receiver answers `stored` once it holds them all), then
/// `bundle` and the bundle in frames that end with an empty one; the receiver (`ckcont
/// receive`) restores from the stream and answers `resumed` the moment the container runs
/// (the downtime ends there), then `running PID` once it keeps it (its memory all in), or
/// `refused MESSAGE`; the source answers `done` once it has killed its copy. Lines are
/// short, peeked at and read to their newline only, so that nothing of the bundle after
/// the hello is read by anyone but the restore. Without Nagle (``configure(_:)``).
public final class MigrationChannel: @unchecked Sendable {
  /// The first line: the protocol and its version.
  static let hello = "ckcont-migrate 3"
  /// Lines longer than this are not the protocol's.
  static let maximumLine = 4096

  public let fd: Int32
  /// The peer, for messages.
  public let peer: String

  private init(fd: Int32, peer: String) {
    self.fd = fd
    self.peer = peer
  }

  deinit { close(fd) }

  /// Connects to `address` (HOST:PORT, [IPv6]:PORT). Keepalive probes find a receiver whose
  /// host is gone within about 15 s.
  public static func connect(to address: String) throws -> MigrationChannel {
    let (host, port) = try split(address, what: "--to")
    var lastError = "no address"
    for candidate in try resolve(host, port, passive: false) {
      let fd = socket(candidate.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { continue }
      let connected = candidate.address.withUnsafeBytes {
        Glibc.connect(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
      }
      if connected == 0 {
        configure(fd)
        return MigrationChannel(fd: fd, peer: address)
      }
      lastError = String(cString: strerror(errno))
      close(fd)
    }
    throw CKError(
      .failed, "cannot connect to the receiver at \(address): \(lastError)",
      hint: "start `ckcont receive --listen PORT` there first")
  }

  /// A listening socket on `address` ([ADDR:]PORT; all addresses by default).
  public final class Listener {
    public let fd: Int32
    /// Where it listens, as ADDR:PORT (the port chosen when 0 was asked).
    public let address: String

    init(fd: Int32, address: String) {
      self.fd = fd
      self.address = address
    }

    deinit { close(fd) }

    /// Waits for one source and returns its channel. Ctrl-C (or SIGTERM) ends the wait: a
    /// blocking accept would be restarted after the signal's handler.
    public func accept() throws -> MigrationChannel {
      var polled = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      while poll(&polled, 1, Self.interruptionCheck) <= 0 { try Interruption.check() }
      var peer = sockaddr_storage()
      var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
      let fd = try syscallChecked("accept", "a migration on \(address)") {
        withUnsafeMutablePointer(to: &peer) {
          $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(self.fd, $0, &length) }
        }
      }
      _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
      configure(fd)
      return MigrationChannel(fd: fd, peer: describe(peer))
    }

    /// Milliseconds between two looks at an interrupting signal while nothing comes.
    static let interruptionCheck: Int32 = 200
  }

  /// Listens on `address`.
  public static func listen(on address: String) throws -> Listener {
    let (host, port) = address.contains(":") ? try split(address, what: "--listen") : ("", address)
    guard UInt16(port) != nil else { throw CKError(.badInput, "--listen \(address): the port is not a number") }
    for candidate in try resolve(host.isEmpty ? nil : host, port, passive: true) {
      let fd = socket(candidate.family, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
      guard fd >= 0 else { continue }
      var one: Int32 = 1
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
      let bound = candidate.address.withUnsafeBytes {
        bind(fd, $0.baseAddress?.assumingMemoryBound(to: sockaddr.self), socklen_t($0.count))
      }
      guard bound == 0, Glibc.listen(fd, 1) == 0 else {
        let error = String(cString: strerror(errno))
        close(fd)
        throw CKError(.failed, "cannot listen on \(address): \(error)")
      }
      var local = sockaddr_storage()
      var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
      _ = withUnsafeMutablePointer(to: &local) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
      }
      return Listener(fd: fd, address: describe(local))
    }
    throw CKError(.failed, "cannot listen on \(address): no address")
  }

  // MARK: Lines

  /// Sends `line` and its newline; with `more`, held back to go with what is sent next
  /// (MSG_MORE: a line announcing pages shares their first segment).
  public func send(_ line: String, more: Bool = false) throws {
    let bytes = Array((line + "\n").utf8)
    try bytes.withUnsafeBytes { try send(bytes: $0, more: more) }
  }

  /// The next line (without its newline); nil at the end of the stream. Waits at most
  /// `timeout` seconds for it. What follows the line stays in the stream: the line is
  /// peeked at, then only its bytes are read.
  public func readLine(timeout: Double) throws -> String? {
    var bytes: [UInt8] = []
    var peeked = [UInt8](repeating: 0, count: Self.maximumLine)
    let deadline = monotonicNow() + timeout
    while bytes.count < Self.maximumLine {
      var polled = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
      let left = Int32(max(0, (deadline - monotonicNow()) * 1000))
      let ready = poll(&polled, 1, min(left, Listener.interruptionCheck))
      if ready < 0 && errno == EINTR || ready == 0 && monotonicNow() < deadline {
        try Interruption.check()
        continue
      }
      guard ready > 0 else { throw CKError(.failed, "\(peer) said nothing for \(Int(timeout)) s") }
      let wanted = Self.maximumLine - bytes.count
      let count = recv(fd, &peeked, wanted, Int32(MSG_PEEK))
      if count < 0 && errno == EINTR { continue }
      guard count >= 0 else { throw SyscallError("recv", "the connection to \(peer)", .init(rawValue: errno)) }
      if count == 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
      let newline = peeked[..<count].firstIndex(of: UInt8(ascii: "\n"))
      let taken = newline.map { $0 + 1 } ?? count
      // Only what was peeked, which is there: this read returns it whole.
      guard Glibc.read(fd, &peeked, taken) == taken else {
        throw SyscallError("read", "the connection to \(peer)", .init(rawValue: errno))
      }
      bytes += peeked[..<(newline ?? count)]
      if newline != nil { return String(decoding: bytes, as: UTF8.self) }
    }
    throw CKError(.badInput, "\(peer) sent a line longer than \(Self.maximumLine) bytes: not a ckcont migration")
  }

  /// Sends `bytes` whole; with `more`, held back to go with what is sent next (MSG_MORE).
  public func send(bytes: UnsafeRawBufferPointer, more: Bool = false) throws {
    var done = 0
    while done < bytes.count {
      let count = Glibc.send(fd, bytes.baseAddress.map { $0 + done }, bytes.count - done, more ? Int32(MSG_MORE) : 0)
      if count < 0 && errno == EINTR { continue }
      guard count >= 0 else { throw SyscallError("send", "\(bytes.count) bytes to \(peer)", .init(rawValue: errno)) }
      done += count
    }
  }

  /// Fills `buffer` from the stream; the end of the stream before is an error.
  public func receive(into buffer: UnsafeMutableRawBufferPointer) throws {
    var done = 0
    while done < buffer.count {
      let count = Glibc.read(fd, buffer.baseAddress.map { $0 + done }, buffer.count - done)
      if count < 0 && errno == EINTR { continue }
      guard count >= 0 else { throw SyscallError("read", "the connection to \(peer)", .init(rawValue: errno)) }
      guard count > 0 else { throw CKError(.failed, "\(peer) closed the connection in the middle of pages") }
      done += count
    }
  }

  // MARK: Addresses

  private static func split(_ address: String, what: String) throws -> (String, String) {
    guard let colon = address.lastIndex(of: ":") else {
      throw CKError(.badInput, "\(what) \(address): give HOST:PORT")
    }
    var host = String(address[..<colon])
    let port = String(address[address.index(after: colon)...])
    if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
    guard UInt16(port) != nil else { throw CKError(.badInput, "\(what) \(address): the port is not a number") }
    return (host, port)
  }

  private struct Candidate {
    var family: Int32
    var address: [UInt8]
  }

  private static func resolve(_ host: String?, _ port: String, passive: Bool) throws -> [Candidate] {
    var hints = addrinfo()
    hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
    hints.ai_flags = passive ? AI_PASSIVE : 0
    var list: UnsafeMutablePointer<addrinfo>?
    let status = getaddrinfo(host, port, &hints, &list)
    guard status == 0 else {
      throw CKError(.badInput, "cannot resolve \(host ?? "*"):\(port): \(String(cString: gai_strerror(status)))")
    }
    defer { freeaddrinfo(list) }
    var candidates: [Candidate] = []
    var entry = list
    while let current = entry {
      if let address = current.pointee.ai_addr {
        let bytes = UnsafeRawBufferPointer(start: address, count: Int(current.pointee.ai_addrlen))
        candidates.append(Candidate(family: current.pointee.ai_family, address: Array(bytes)))
      }
      entry = current.pointee.ai_next
    }
    // IPv4 first for a passive "any": a dual-stack listener of IPv6 is the other choice.
    return candidates.sorted { $0.family == AF_INET && $1.family != AF_INET }
  }

  /// Keepalive probes, and no Nagle: the protocol's short lines and the ends of frames
  /// would otherwise wait for the peer's delayed acknowledgement (up to 40 ms each).
  private static func configure(_ fd: Int32) {
    var one: Int32 = 1
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    var idle: Int32 = 5
    var interval: Int32 = 2
    var count: Int32 = 5
    let size = socklen_t(MemoryLayout<Int32>.size)
    setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, size)
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPIDLE, &idle, size)
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPINTVL, &interval, size)
    setsockopt(fd, Int32(IPPROTO_TCP), TCP_KEEPCNT, &count, size)
  }

  private static func describe(_ storage: sockaddr_storage) -> String {
    var storage = storage
    var host = [CChar](repeating: 0, count: Int(NI_MAXHOST))
    var service = [CChar](repeating: 0, count: Int(NI_MAXSERV))
    let status = withUnsafePointer(to: &storage) {
      $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
        getnameinfo(
          $0, socklen_t(MemoryLayout<sockaddr_storage>.size), &host, socklen_t(host.count), &service,
          socklen_t(service.count), NI_NUMERICHOST | NI_NUMERICSERV)
      }
    }
    guard status == 0 else { return "?" }
    let name = String(nulTerminated: host)
    return (name.contains(":") ? "[\(name)]" : name) + ":" + String(nulTerminated: service)
  }
}
