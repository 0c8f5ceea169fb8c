import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

/// Pseudo-terminals whose master the container holds (a `script`, a terminal multiplexer, an
/// ssh server, an interactive shell under one), and the sessions they control.
///
/// Dump: a descriptor of /dev/ptmx (or devpts's ptmx) is a master, one of a unix98 slave
/// device a slave; the terminal's state (termios2, window size, lock, packet mode, session
/// and foreground group) is asked through a copy of the descriptor. A slave whose master is
/// not in the container (a terminal of the host) stays a file opened by path; a controlling
/// terminal whose master is not in the container is refused.
/// Restore: ckcont opens a new master for each terminal, in the container's root (so in its
/// devpts), in the order of their indexes, so that a fresh devpts gives each its index back
/// (opening and closing placeholders); elsewhere a terminal may get another index and its
/// slaves follow it. ckcont sets the state, makes each terminal the controlling terminal of
/// its session and sets the foreground group (in the session's leader), and hands the
/// masters and new slave descriptions to the tasks.
final class Terminals {
  /// Dumped index -> ckcont's master and the index it got.
  /// Raw numbers: the table owns them and closes them in `deinit`.
  private var masters: [Int32: (fd: Int32, index: Int32)] = [:]
  /// The container's root, where devpts paths resolve.
  private let root: OwnedDescriptor
  /// sizeof(struct termios2), which the C shim asserts.
  static let termiosSize = 44

  // MARK: Dump

  /// Whether a character device is a pty master (5:2) or slave (unix98, majors 136-143), and
  /// a slave's index; nil for any other device.
  static func side(device: UInt64) -> (isMaster: Bool, index: Int32)? {
    let (major, minor) = (DeviceNumber(device).major, DeviceNumber(device).minor)
    if major == 5 && minor == 2 { return (true, -1) }
    if (136...143).contains(major) { return (false, Int32((major - 136) * 256 + minor)) }
    return nil
  }

  /// The state of the terminal behind descriptor `fd` of task `pid`, read through a copy.
  /// Through a master: the output waiting in it, read out once per terminal (`taken` gives
  /// it back if the container runs on; CRIU drops it); input typed into it that its programs
  /// have not read is refused (taking it out and back would lose where its lines end).
  static func capture(
    pid: Int32, fd: Int32, isMaster: Bool, index: Int32, taken: TakenState, log: Logger
  ) throws -> PtyImage {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: pid)
    var facts = ck_pty_facts()
    let result = ck_pty_facts(ours.raw, isMaster ? 1 : 0, &facts)
    if result == -EIO {
      // A hung-up terminal answers every ioctl with EIO.
      throw CKError(
        .failed,
        "task \(pid): fd \(fd) is a terminal that was hung up (its master closed, or vhangup), which ckcont cannot checkpoint yet",
        hint: "close it before the checkpoint")
    }
    try negErrnoChecked("the terminal ioctls", "task \(pid) fd \(fd)") { result }
    var output: Data?
    if isMaster {
      var devpts: UInt64 = 0
      let typed = ck_pty_typed_ahead(ours.raw, &devpts)
      guard typed == 0 else {
        throw CKError(
          .failed,
          "task \(pid): fd \(fd) is the master of terminal \(facts.index), into which \(typed) bytes were typed that its programs have not read, which ckcont cannot checkpoint yet",
          hint: "checkpoint once they have been read")
      }
      if facts.readable > 0 && facts.packet != 0 {
        throw CKError(
          .failed,
          "task \(pid): fd \(fd) is the master of terminal \(facts.index) in packet mode with output waiting, which ckcont cannot checkpoint yet",
          hint: "checkpoint once the output was read")
      }
      if facts.readable > 0 {
        output = try taken.takeOutput(of: [devpts, UInt64(facts.index)], through: ours.raw, pid: pid, target: fd)
        if let output, !output.isEmpty {
          log.debug("task \(pid): fd \(fd): \(output.count) bytes of output waiting in terminal \(facts.index) kept")
        }
      }
    }
    let termios = withUnsafeBytes(of: facts.termios) { Data($0) }
    let window = withUnsafeBytes(of: facts.window) { Array($0.bindMemory(to: UInt16.self)) }
    var image = PtyImage(
      index: isMaster ? facts.index : index, isMaster: isMaster, termios: termios, windowSize: window,
      locked: facts.locked != 0,
      packetMode: facts.packet != 0, session: facts.session > 0 ? facts.session : nil,
      foregroundGroup: facts.foreground > 0 ? facts.foreground : nil)
    image.output = output?.isEmpty == false ? output : nil
    return image
  }

  // MARK: Restore

  /// Makes a master for every terminal of `tasks` in the container whose root task has host
  /// pid `rootPid`; nil when there is none.
  static func make(for tasks: [LoadedBundle.LoadedTask], console: PtyImage?, rootPid: Int32, log: Logger) throws
    -> Terminals?
  {
    var images: [Int32: (path: String, pty: PtyImage)] = [:]
    // The console's master was its runtime's: made through the container's /dev/ptmx.
    if let console { images[console.index] = ("/dev/ptmx", console) }
    for task in tasks {
      for descriptor in task.files.descriptors where descriptor.kind == .pty {
        guard let pty = descriptor.pty, pty.isMaster, let path = descriptor.path else { continue }
        images[pty.index] = images[pty.index] ?? (path, pty)
        // The output went with whichever master the dump read it through.
        if let output = pty.output { images[pty.index]?.pty.output = output }
      }
    }
    guard !images.isEmpty else { return nil }
    let terminals = Terminals(
      root: try OwnedDescriptor("open", "the root of task \(rootPid)") {
        open("/proc/\(rootPid)/root", OpenFlags.path | O_DIRECTORY | O_CLOEXEC)
      })
    // Raw numbers: an array cannot hold noncopyable owners.
    var placeholders: [Int32] = []
    defer { for fd in placeholders { close(fd) } }
    for (wanted, image) in images.sorted(by: { $0.key < $1.key }) {
      while true {
        let opened = OwnedDescriptor(
          adopting: try negErrnoChecked("open", "\(image.path) in the container for terminal \(wanted)") {
            ck_open_in_root(terminals.root.raw, image.path, O_RDWR | O_NOCTTY | O_CLOEXEC)
          })
        var index: Int32 = -1
        try negErrnoChecked("TIOCSPTLCK", image.path) { ck_pty_open_master(opened.raw, &index) }
        // A lower index than wanted is taken out of the way until every master is made.
        if index < wanted && placeholders.count < 256 {
          placeholders.append(opened.take())
          continue
        }
        let master = opened.take()
        terminals.masters[wanted] = (master, index)
        if index != wanted {
          log.debug("terminal \(wanted) is \(index) now: the container's devpts had \(index) free first")
        }
        var facts = ck_pty_facts()
        facts.packet = image.pty.packetMode ? 1 : 0
        withUnsafeMutableBytes(of: &facts.termios) { _ = image.pty.termios.copyBytes(to: $0) }
        withUnsafeMutableBytes(of: &facts.window) { bytes in
          for (slot, value) in image.pty.windowSize.prefix(4).enumerated() {
            bytes.storeBytes(of: value, toByteOffset: slot * 2, as: UInt16.self)
          }
        }
        if let output = image.pty.output {
          // Written with a fresh terminal's settings, output processing off, before its own.
          try negErrnoChecked("write", "the output waiting in terminal \(wanted)") {
            output.withUnsafeBytes { ck_pty_put_output(master, $0.baseAddress, $0.count) }
          }
        }
        try negErrnoChecked("TCSETS2/TIOCSWINSZ/TIOCPKT", "terminal \(wanted)") { ck_pty_apply(master, &facts) }
        break
      }
    }
    return terminals
  }

  private init(root: consuming OwnedDescriptor) { self.root = root }

  deinit {
    for master in masters.values { close(master.fd) }
  }

  /// ckcont's descriptor of the master of dumped terminal `index`.
  func master(_ index: Int32) throws -> Int32 {
    guard let master = masters[index] else {
      throw CKError(.badInput, "the bundle holds a slave of terminal \(index), whose master it lacks")
    }
    return master.fd
  }

  /// A new description of the slave of dumped terminal `index` (`path` as dumped,
  /// `/dev/pts/<index>`), opened by ckcont in the container's root with `flags`, never
  /// becoming ckcont's controlling terminal.
  func openSlave(_ index: Int32, path: String, flags: Int32) throws -> OwnedDescriptor {
    guard let master = masters[index] else {
      throw CKError(.badInput, "the bundle holds a slave of terminal \(index), whose master it lacks")
    }
    let directory = path.split(separator: "/").dropLast().joined(separator: "/")
    let now = "/\(directory)/\(master.index)"
    return OwnedDescriptor(
      adopting: try negErrnoChecked("open", "\(now) in the container for terminal \(index)") {
        ck_open_in_root(root.raw, now, flags & ~(O_CREAT | O_TRUNC | O_EXCL) | O_NOCTTY | O_CLOEXEC)
      })
  }

  /// Makes each terminal with a session the controlling terminal of that session (TIOCSCTTY
  /// in its leader, through a slave handed to it) and sets its foreground group; `leaders`
  /// finds the injector of a process by its pid in the container.
  func controlSessions(
    _ tasks: [LoadedBundle.LoadedTask], console: PtyImage?, leaders: (Int32) -> Injector?
  ) throws {
    var done: Set<Int32> = []
    let masters = tasks.flatMap { $0.files.descriptors.filter { $0.kind == .pty }.compactMap(\.pty) }
    for pty in (console.map { [$0] } ?? []) + masters {
      guard pty.isMaster, let session = pty.session, done.insert(pty.index).inserted else {
        continue
      }
      guard let leader = leaders(session) else {
        throw CKError(.badInput, "terminal \(pty.index) controls session \(session), which the bundle does not hold")
      }
      let slave = try openSlave(pty.index, path: "/dev/pts/\(pty.index)", flags: O_RDWR)
      leader.resetData()
      let received = try leader.receive(slave.raw, what: "terminal \(pty.index)")
      var batch = Injector.Batch()
      batch.add(.ioctl(received, .setControllingTerminal), "TIOCSCTTY terminal \(pty.index)")
      if let group = pty.foregroundGroup {
        let at = try leader.put(words: [UInt64(UInt32(bitPattern: group))])
        batch.add(.ioctl(received, .setForegroundGroup, at), "TIOCSPGRP \(group) on terminal \(pty.index)")
      }
      batch.add(.close(received), "close terminal \(pty.index)")
      try leader.run(batch)
    }
  }

  /// Sends the master of terminal `index` over the unix socket at `path` (SCM_RIGHTS), as
  /// runc hands a container's console to its runtime (conmon).
  func handOver(_ index: Int32, to path: String) throws {
    guard let master = masters[index] else { throw CKError(.failed, "the console \(index) was not made") }
    let socket = try OwnedDescriptor("socket", "the console socket") {
      Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
    }
    var address = sockaddr_un()
    address.sun_family = sa_family_t(AF_UNIX)
    guard path.utf8.count < MemoryLayout.size(ofValue: address.sun_path) else {
      throw CKError(.badInput, "--console-socket \(path): too long for a unix socket's name")
    }
    withUnsafeMutableBytes(of: &address.sun_path) { bytes in
      path.utf8CString.withUnsafeBytes {
        bytes.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0.prefix(bytes.count)))
      }
    }
    try syscallChecked("connect", "the console socket \(path)") {
      withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
          connect(socket.raw, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
        }
      }
    }
    try negErrnoChecked("sendmsg", "the console's master to \(path)") { ck_send_fd(socket.raw, master.fd) }
  }

  /// Locks again the masters that were locked (no slave could be opened then).
  func relock(_ tasks: [LoadedBundle.LoadedTask]) throws {
    for task in tasks {
      for descriptor in task.files.descriptors
      where descriptor.kind == .pty && descriptor.pty?.isMaster == true && descriptor.pty?.locked == true {
        guard let index = descriptor.pty?.index, let master = masters[index] else { continue }
        try negErrnoChecked("TIOCSPTLCK", "terminal \(index)") { ck_pty_lock(master.fd, 1) }
      }
    }
  }
}

extension FileBatch {
  /// A side of a pseudo-terminal ckcont made again (see ``Terminals``).
  func prepareTerminal(_ descriptor: DescriptorImage) throws {
    guard let pty = descriptor.pty, let path = descriptor.path, let terminals = shared.terminals else {
      throw CKError(.badInput, "task \(pid): fd \(descriptor.fd) is a terminal the bundle does not describe")
    }
    let high: Int64
    if pty.isMaster {
      // The one master ckcont made: the same description for every holder.
      high = try queueReceived(try terminals.master(pty.index), what: "terminal \(pty.index)", fd: descriptor.fd)
      batch.add(.fcntl(high, .setFlags(descriptor.flags & ~O_ASYNC)), "F_SETFL fd \(descriptor.fd)")
    } else {
      let slave = try terminals.openSlave(pty.index, path: path, flags: descriptor.flags & ~O_ASYNC)
      high = try queueReceived(slave.raw, what: "terminal \(pty.index)", fd: descriptor.fd)
    }
    prepared.descriptions[descriptor.fd] = high
  }
}

/// Sides of the container's pseudo-terminals.
enum TerminalDescriptors: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let path = descriptor.path, path.hasPrefix("/"), path.utf8.count < 4096, !path.contains("\0"),
      let pty = descriptor.pty,
      (0..<(1 << 20)).contains(pty.index), pty.termios.count == Terminals.termiosSize, pty.windowSize.count == 4,
      (pty.session ?? 1) > 0, (pty.foregroundGroup ?? 1) > 0,
      pty.output.map({ pty.isMaster && !pty.packetMode && (1...PtyImage.outputLimit).contains($0.count) }) ?? true
    else { throw bad("fd \(descriptor.fd) is a bad terminal") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareTerminal(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    let pty = descriptor.pty
    return "\(pty?.isMaster == true ? "master" : "slave") of terminal \(pty?.index ?? -1) (\(descriptor.path ?? "?"))"
      + (pty?.session.map { ", controlling terminal of session \($0)" } ?? "")
      + (pty?.foregroundGroup.map { ", foreground group \($0)" } ?? "")
  }
}

extension Dump {
  /// Pseudo-terminals (see ``Terminals``): a slave whose master no process of the container
  /// holds is a terminal of the host's, opened by its path again; a terminal's session and
  /// foreground group become the container's pids; a controlling terminal must be one whose
  /// master the container holds.
  /// With ``shellJob``, a controlling terminal outside is allowed when the session is outside
  /// too (a job of a shell): its path is returned. With ``externalConsole``, one that controls
  /// a session of the container is its console, returned as a master's image.
  func settleTerminals(_ tasks: inout [CapturedTask], innerPid: [Int32: Int32]) throws -> (
    shellJob: String?, console: PtyImage?
  ) {
    var masters = Set(
      tasks.flatMap { $0.files.descriptors.compactMap { $0.pty.flatMap { $0.isMaster ? $0.index : nil } } })
    let consoleTerminal = externalConsole ? Self.console(tasks, masters: masters, innerPid: innerPid) : nil
    let consoleIndex = consoleTerminal?.index
    if let consoleIndex { masters.insert(consoleIndex) }
    /// A process group as the container names it: by a member's group (its leader may be gone).
    func innerGroup(_ group: Int32) -> Int32? {
      if let inner = innerPid[group] { return inner }
      return tasks.first { ProcStat.read(pid: $0.hostPid)?.pgrp == group }?.entry.pgid
    }
    for index in tasks.indices {
      for slot in tasks[index].files.descriptors.indices {
        guard var pty = tasks[index].files.descriptors[slot].pty else { continue }
        guard pty.isMaster || masters.contains(pty.index) else {
          tasks[index].files.descriptors[slot].kind = .path
          tasks[index].files.descriptors[slot].pty = nil
          continue
        }
        if let session = pty.session {
          guard let inner = innerPid[session] else {
            throw CKError(
              .failed,
              "task \(tasks[index].hostPid): terminal \(pty.index) (fd \(tasks[index].files.descriptors[slot].fd)) controls session \(session), outside the container, which ckcont cannot checkpoint yet"
            )
          }
          pty.session = inner
        }
        pty.foregroundGroup = pty.foregroundGroup.flatMap(innerGroup)
        tasks[index].files.descriptors[slot].pty = pty
      }
    }
    var external: String?
    for task in tasks where task.controllingTerminal != 0 {
      let device = UInt64(UInt32(bitPattern: task.controllingTerminal))
      if let side = Terminals.side(device: device), !side.isMaster, masters.contains(side.index) { continue }
      let number = DeviceNumber(device)
      let name = Terminals.side(device: device).map { "/dev/pts/\($0.index)" } ?? "tty \(number.major):\(number.minor)"
      guard shellJob else {
        throw CKError(
          .failed,
          "process \(task.hostPid) has a controlling terminal (\(name)) whose master is outside the container, which ckcont cannot checkpoint without --shell-job",
          hint:
            "a job of a shell: dump and restore with --shell-job; else start the container without a terminal (setsid, stdio on files or pipes)"
        )
      }
      let sessionOutside = task.entry.sid == 0 || !tasks.contains { $0.entry.pid == task.entry.sid }
      guard sessionOutside, external == nil || external == name, Terminals.side(device: device) != nil else {
        throw CKError(
          .failed,
          "process \(task.hostPid): --shell-job takes a job whose session and terminal (\(name)) are outside the container, each the same pseudo-terminal",
          hint: "the container leads a session of its own on a terminal outside it, which ckcont cannot restore")
      }
      external = name
    }
    // Its state as a slave of it reads it; its session and foreground group as /proc says.
    let console = consoleTerminal.flatMap { terminal in
      tasks.lazy.flatMap(\.files.descriptors).compactMap(\.pty).first { $0.index == terminal.index }.map { slave in
        var master = slave
        (master.isMaster, master.locked, master.packetMode, master.output) = (true, false, false, nil)
        master.session = innerPid[terminal.session]
        master.foregroundGroup = terminal.foreground > 0 ? innerGroup(terminal.foreground) : nil
        return master
      }
    }
    return (external, console)
  }

  /// The terminal whose master is outside (its runtime's) that is the controlling terminal
  /// of a session led in the container: its console; its session and foreground group by
  /// their host pids.
  private static func console(_ tasks: [CapturedTask], masters: Set<Int32>, innerPid: [Int32: Int32]) -> (
    index: Int32, session: Int32, foreground: Int32
  )? {
    for task in tasks where task.controllingTerminal != 0 {
      let device = UInt64(UInt32(bitPattern: task.controllingTerminal))
      guard let side = Terminals.side(device: device), !side.isMaster, !masters.contains(side.index),
        let stat = ProcStat.read(pid: task.hostPid), innerPid[stat.session] != nil
      else { continue }
      return (side.index, stat.session, stat.foregroundGroup)
    }
    return nil
  }
}
