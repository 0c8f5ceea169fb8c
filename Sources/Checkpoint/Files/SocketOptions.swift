import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Synchronization

// Socket options (SocketOptionKind.all): the dump reads each through ckcont's copy of the
// socket and keeps those that differ from a new socket's of the same family, type and
// protocol; the restore sets those that decide an address before bind (in the task, as it
// makes the socket) and every other one at the end, through a copy of ckcont's, once queues
// are filled and TCP connections are out of repair mode.
enum SocketOptions {
  /// The options of socket `fd` worth keeping. Buffer sizes are kept when a program set them
  /// (SO_BUF_LOCK tells) or, `tunedByKernel`, when the kernel sized them to the traffic of an
  /// established TCP connection; a filter loaded as eBPF cannot be read back and is refused.
  static func capture(
    _ fd: Int32, _ facts: ck_socket_facts, tunedByKernel: Bool = false, refuse: (String, String) -> CKError
  ) throws -> [SocketOption] {
    let fresh = defaults(facts)
    // A socket two processes hold may be peeked at by the other's capture right now, which
    // moves SO_PEEK_OFF for the while (see ``FileCapture/peekWaiting``): not meanwhile.
    return try FileCapture.peeks.withLock { _ in
      try read(fd, facts, fresh: fresh, tunedByKernel: tunedByKernel, refuse: refuse)
    }
  }

  private static func read(
    _ fd: Int32, _ facts: ck_socket_facts, fresh: [[Int32]: Data], tunedByKernel: Bool,
    refuse: (String, String) -> CKError
  ) throws -> [SocketOption] {
    let buffers = [SocketOptionKind.sendBuffer, SocketOptionKind.receiveBuffer, SocketOptionKind.bufferLock]
    let lock = SocketOptionKind.byLevelAndName[[SOL_SOCKET, SocketOptionKind.bufferLock]]
    let keepBuffers = tunedByKernel || read(fd, lock).map(value) ?? 0 != 0
    var options: [SocketOption] = []
    for kind in SocketOptionKind.all where applies(kind, to: facts) {
      if kind.shape == .filter {
        if let filter = try filter(fd, refuse: refuse) { options.append(filter) }
        continue
      }
      guard let bytes = read(fd, kind) else { continue }
      if kind.level == SOL_SOCKET && buffers.contains(kind.name) {
        guard keepBuffers else { continue }
      } else if bytes == fresh[[kind.level, kind.name]]
        && !(kind.name == SocketOptionKind.priority
          && kind.level == SOL_SOCKET
          && options.contains { $0.level == SocketOptionKind.ip && $0.name == SocketOptionKind.tos })
      {
        // (Setting IP_TOS changes the priority: a priority kept apart from it is set again.)
        continue
      }
      options.append(
        kind.shape == .int
          ? SocketOption(level: kind.level, name: kind.name, value: value(bytes))
          : SocketOption(level: kind.level, name: kind.name, value: 0, bytes: bytes))
    }
    return options
  }

  /// Multicast options, which a stream socket answers but refuses to set (an accepted TCP
  /// connection even has IP_MULTICAST_TTL set by the kernel, to the TTL of the peer's SYN).
  private static let multicast: Set<[Int32]> = [[0, 33], [0, 34], [0, 49], [41, 18], [41, 19]]

  /// Whether `kind` belongs to the socket's family and protocol (unix sockets: socket level
  /// only; IP options apply to IPv6 sockets too, as dual-stack ones take them).
  private static func applies(_ kind: SocketOptionKind, to facts: ck_socket_facts) -> Bool {
    if facts.type == Int32(SOCK_STREAM.rawValue) && multicast.contains([kind.level, kind.name]) { return false }
    switch kind.level {
    case SOL_SOCKET: return true
    case SocketOptionKind.packet: return facts.family == AF_PACKET
    case SocketOptionKind.raw:
      return facts.type == Int32(SOCK_RAW.rawValue) && facts.family == AF_INET && facts.protocol == IPPROTO_ICMP
    case Int32(IPPROTO_IP): return facts.family == AF_INET || facts.family == AF_INET6
    case Int32(IPPROTO_IPV6): return facts.family == AF_INET6
    default: return facts.family != AF_UNIX && kind.level == facts.protocol
    }
  }

  /// What a new socket answers, per family, type and protocol: asked once per run.
  private static let known = Mutex<[[Int32]: [[Int32]: Data]]>([:])

  private static func defaults(_ facts: ck_socket_facts) -> [[Int32]: Data] {
    let key = [facts.family, facts.type, facts.protocol]
    if let found = known.withLock({ $0[key] }) { return found }
    let fd = socket(facts.family, facts.type | Int32(SOCK_CLOEXEC.rawValue), facts.protocol)
    guard fd >= 0 else { return [:] }
    let fresh = OwnedDescriptor(adopting: fd)
    var values: [[Int32]: Data] = [:]
    for kind in SocketOptionKind.all where applies(kind, to: facts) {
      values[[kind.level, kind.name]] = read(fresh.raw, kind)
    }
    known.withLock { $0[key] = values }
    return values
  }

  /// getsockopt(2) of `kind` (nil when the socket does not answer it); a name without its
  /// trailing NULs.
  private static func read(_ fd: Int32, _ kind: SocketOptionKind?) -> Data? {
    guard let kind else { return nil }
    let size =
      switch kind.shape {
      case .int: 4
      case .bytes(let size): size
      case .text(let longest): longest
      case .filter: 0
      }
    var buffer = [UInt8](repeating: 0, count: size)
    var length = socklen_t(size)
    guard getsockopt(fd, kind.level, kind.name, &buffer, &length) == 0 else { return nil }
    var bytes = buffer.prefix(Int(length))
    if case .text = kind.shape {
      while bytes.last == 0 { bytes.removeLast() }
      if bytes.isEmpty { return nil }
    }
    return Data(bytes)
  }

  private static func value(_ bytes: Data) -> Int32 {
    bytes.count >= 4 ? bytes.withUnsafeBytes { $0.loadUnaligned(as: Int32.self) } : 0
  }

  /// The classic BPF filter attached (SO_GET_FILTER), nil for none.
  private static func filter(_ fd: Int32, refuse: (String, String) -> CKError) throws -> SocketOption? {
    var instructions = [UInt8](repeating: 0, count: 4096 * 8)
    var count: UInt32 = 0
    let result = ck_socket_filter(fd, &instructions, 4096, &count)
    guard result == 0 else {
      throw refuse(
        result == -EACCES
          ? "a socket with an eBPF filter (SO_ATTACH_BPF), which the kernel cannot give back"
          : "a socket whose filter could not be read (\(String(cString: strerror(-result))))",
        "detach the filter before the checkpoint")
    }
    guard count > 0 else { return nil }
    return SocketOption(
      level: SOL_SOCKET, name: SocketOptionKind.attachFilter, value: 0,
      bytes: Data(instructions.prefix(Int(count) * 8)))
  }

  /// Sets `option` on `fd`, a copy of ckcont's: buffer sizes forced, a filter attached.
  static func set(_ option: SocketOption, on fd: Int32, what: String) throws {
    let label = option.kind?.label ?? "option \(option.level).\(option.name)"
    try syscallChecked("setsockopt", "\(label) of \(what)") {
      if option.level == SOL_SOCKET, let forced = forcedName(option.name) {
        // getsockopt gave twice what was asked, and the kernel doubles what it is given.
        var half = Int32(clamping: (Int64(option.value) + 1) / 2)
        return setsockopt(fd, SOL_SOCKET, forced, &half, 4)
      }
      if option.level == SOL_SOCKET, option.name == SocketOptionKind.attachFilter, let bytes = option.bytes {
        let result = bytes.withUnsafeBytes { ck_attach_socket_filter(fd, $0.baseAddress, UInt32($0.count / 8)) }
        if result < 0 { errno = -result }
        return result
      }
      if let bytes = option.bytes {
        return bytes.withUnsafeBytes { setsockopt(fd, option.level, option.name, $0.baseAddress, socklen_t($0.count)) }
      }
      var value = option.value
      return setsockopt(fd, option.level, option.name, &value, 4)
    }
  }

  private static func forcedName(_ name: Int32) -> Int32? {
    switch name {
    case SocketOptionKind.sendBuffer: SocketOptionKind.sendBufferForce
    case SocketOptionKind.receiveBuffer: SocketOptionKind.receiveBufferForce
    default: nil
    }
  }

  /// Options a socket gets last, once every queue is filled and every TCP connection out of
  /// repair mode: each socket once, however many processes and descriptors hold it. A
  /// connected unix socket, made by socketpair(2), gets its before-bind options here too.
  static func restore(_ tasks: [LoadedBundle.LoadedTask], injectors: [Int32: Injector]) throws {
    var done: Set<[UInt64]> = []
    for task in tasks {
      guard let injector = injectors[task.entry.pid] else { continue }
      for descriptor in task.files.descriptors where descriptor.sharesWith == nil {
        guard let socket = descriptor.socket else { continue }
        let madeAsPair = socket.family == AF_UNIX && socket.peerInode != nil
        let last = socket.options.filter { madeAsPair || $0.kind?.beforeBind == false }
        guard !last.isEmpty else { continue }
        let ours = try OwnedDescriptor(copying: descriptor.fd, ofProcess: injector.pid)
        var status = stat()
        try syscallChecked("fstat", "fd \(descriptor.fd) of process \(task.entry.pid)") { fstat(ours.raw, &status) }
        guard done.insert([UInt64(status.st_dev), UInt64(status.st_ino)]).inserted else { continue }
        for option in last {
          try set(option, on: ours.raw, what: "fd \(descriptor.fd) of process \(task.entry.pid)")
        }
      }
    }
  }
}

extension FileBatch {
  /// The options socket `made` needs before it is bound or connected, set in the task.
  func queueOptionsBeforeBind(_ socket: SocketImage, made: Int, fd: Int32) throws {
    for option in socket.options where option.kind?.beforeBind == true {
      let bytes = option.bytes ?? withUnsafeBytes(of: option.value.littleEndian) { Data($0) }
      let at = try bytes.withUnsafeBytes { try injector.put($0) }
      batch.add(
        .setsockopt(.result(made), level: option.level, name: option.name, at, length: bytes.count),
        "setsockopt \(option.kind?.label ?? "") fd \(fd)")
    }
  }
}
