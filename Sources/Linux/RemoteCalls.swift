import CKShim
import Glibc

// The typed remote calls on descriptors, files and sockets: one method per system call,
// each making a ``RemoteCall`` with its label from its arguments. Paths, structs and buffers
// are addresses in the task (what an injector's data area handed out).

extension RemoteCall {
  /// close(2).
  public static func close(_ fd: some RemoteArgument) -> RemoteCall {
    RemoteCall(SyscallNumber.close, [fd], label: "close \(fd.argument)")
  }

  /// close_range(2) of `first`...`last`, no flags.
  public static func closeRange(_ first: UInt32, _ last: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.closeRange, [first, last, 0], label: "close_range \(first)-\(last)")
  }

  /// dup3(2) of `fd` to `newFD`, which it returns.
  public static func dup3(_ fd: some RemoteArgument, _ newFD: Int64, closeOnExec: Bool) -> RemoteCall {
    RemoteCall(
      SyscallNumber.dup3, [fd, newFD, closeOnExec ? O_CLOEXEC : 0], label: "dup3 \(fd.argument) to \(newFD)",
      expecting: newFD)
  }

  /// open(2) of the path at `path`.
  public static func open(_ path: UInt64, _ flags: Int32, mode: UInt32 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.open, [path, UInt32(bitPattern: flags), mode], label: "open \(hex(path))")
  }

  /// lseek(2) to `offset` from the start (SEEK_SET), which it returns.
  public static func lseek(_ fd: some RemoteArgument, to offset: Int64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.lseek, [fd, offset, SEEK_SET], label: "lseek \(fd.argument) to \(offset)", expecting: offset)
  }

  /// ftruncate(2).
  public static func ftruncate(_ fd: some RemoteArgument, _ length: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.ftruncate, [fd, length], label: "ftruncate \(fd.argument) to \(length)")
  }

  /// write(2) of `count` bytes at `buffer`, all of which it must write.
  public static func write(_ fd: some RemoteArgument, _ buffer: UInt64, count: Int) -> RemoteCall {
    RemoteCall(
      SyscallNumber.write, [fd, buffer, count], label: "write \(count) bytes to \(fd.argument)",
      expecting: Int64(count))
  }

  /// unlink(2).
  public static func unlink(_ path: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.unlink, [path], label: "unlink \(hex(path))")
  }

  /// mknod(2).
  public static func mknod(_ path: UInt64, mode: UInt32, device: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.mknod, [path, mode, device], label: "mknod \(hex(path))")
  }

  /// fchmod(2).
  public static func fchmod(_ fd: some RemoteArgument, _ mode: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.fchmod, [fd, mode], label: "fchmod \(fd.argument) to \(String(mode, radix: 8))")
  }

  /// fchown(2).
  public static func fchown(_ fd: some RemoteArgument, uid: UInt32, gid: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.fchown, [fd, uid, gid], label: "fchown \(fd.argument) to \(uid):\(gid)")
  }

  /// fcntl(2).
  public static func fcntl(_ fd: some RemoteArgument, _ command: FcntlCommand) -> RemoteCall {
    RemoteCall(SyscallNumber.fcntl, [fd, command.command, command.argument], label: "\(command.name) \(fd.argument)")
  }

  /// flock(2) with `operation` (LOCK_SH, LOCK_EX, LOCK_NB...).
  public static func flock(_ fd: some RemoteArgument, _ operation: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.flock, [fd, operation], label: "flock \(fd.argument)")
  }

  /// pipe2(2), the two descriptors into `fds` (two 32-bit words).
  public static func pipe2(_ fds: UInt64, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.pipe2, [fds, flags], label: "pipe2")
  }

  /// memfd_create(2) named by the string at `name`.
  public static func memfdCreate(_ name: UInt64, _ flags: MemfdFlags) -> RemoteCall {
    RemoteCall(SyscallNumber.memfdCreate, [name, flags.rawValue], label: "memfd_create")
  }

  /// mq_open(2) of the queue named at `name`; `attributes`: a struct mq_attr when it creates one.
  public static func mqOpen(_ name: UInt64, _ flags: Int32, mode: UInt32 = 0, attributes: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.mqOpen, [name, flags, mode, attributes], label: "mq_open")
  }

  /// mq_unlink(2).
  public static func mqUnlink(_ name: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.mqUnlink, [name], label: "mq_unlink")
  }

  /// eventfd2(2) with counter `initial`.
  public static func eventfd2(_ initial: UInt32, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.eventfd2, [initial, flags], label: "eventfd2")
  }

  /// signalfd4(2) of a new signalfd (fd -1) for the sigset_t at `mask`.
  public static func signalfd4(mask: UInt64, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.signalfd4, [Int32(-1), mask, 8, flags], label: "signalfd4")
  }

  /// timerfd_create(2).
  public static func timerfdCreate(_ clock: Int32, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.timerfdCreate, [clock, flags], label: "timerfd_create(\(clock))")
  }

  /// timerfd_settime(2) of the struct itimerspec at `value`, relative, the old value not read.
  public static func timerfdSettime(_ fd: some RemoteArgument, _ value: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.timerfdSettime, [fd, 0, value, 0], label: "timerfd_settime \(fd.argument)")
  }

  /// epoll_create1(2).
  public static func epollCreate1(_ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.epollCreate1, [flags], label: "epoll_create1")
  }

  /// epoll_ctl(2) EPOLL_CTL_ADD of `fd` with the struct epoll_event at `event`.
  public static func epollAdd(_ epoll: some RemoteArgument, _ fd: some RemoteArgument, event: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.epollCtl, [epoll, Int32(CK_EPOLL_CTL_ADD), fd, event],
      label: "epoll_ctl(\(epoll.argument), ADD, \(fd.argument))")
  }

  /// inotify_init1(2).
  public static func inotifyInit1(_ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.inotifyInit1, [flags], label: "inotify_init1")
  }

  /// fanotify_init(2).
  public static func fanotifyInit(_ flags: UInt32, eventFlags: UInt32) -> RemoteCall {
    RemoteCall(SyscallNumber.fanotifyInit, [flags, eventFlags], label: "fanotify_init 0x\(String(flags, radix: 16))")
  }

  /// fanotify_mark(2) of the path at `path` (from the working directory when relative).
  public static func fanotifyMark(_ fd: some RemoteArgument, flags: UInt32, mask: UInt64, path: UInt64) -> RemoteCall {
    RemoteCall(
      SyscallNumber.fanotifyMark, [fd, flags, mask, AT_FDCWD, path],
      label: "fanotify_mark \(fd.argument) 0x\(String(flags, radix: 16))", expecting: 0)
  }

  /// inotify_add_watch(2) of the path at `path`, which must return watch descriptor `wd`.
  public static func inotifyAddWatch(_ fd: some RemoteArgument, _ path: UInt64, mask: UInt32, as wd: Int32)
    -> RemoteCall
  {
    RemoteCall(
      SyscallNumber.inotifyAddWatch, [fd, path, mask], label: "inotify_add_watch \(fd.argument) as \(wd)",
      expecting: Int64(wd))
  }

  /// inotify_rm_watch(2).
  public static func inotifyRmWatch(_ fd: some RemoteArgument, _ wd: some RemoteArgument) -> RemoteCall {
    RemoteCall(SyscallNumber.inotifyRmWatch, [fd, wd], label: "inotify_rm_watch \(fd.argument) \(wd.argument)")
  }

  /// ioctl(2).
  public static func ioctl(_ fd: some RemoteArgument, _ request: IoctlRequest, _ argument: UInt64 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.ioctl, [fd, request.rawValue, argument], label: "\(request.name) \(fd.argument)")
  }

  /// pidfd_open(2) of `pid` as the task sees it.
  public static func pidfdOpen(_ pid: Int32, _ flags: Int32 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.pidfdOpen, [pid, flags], label: "pidfd_open(\(pid))")
  }

  /// pidfd_getfd(2): a copy of descriptor `fd` of the process behind `pidfd`.
  public static func pidfdGetfd(_ pidfd: some RemoteArgument, _ fd: Int64) -> RemoteCall {
    RemoteCall(SyscallNumber.pidfdGetfd, [pidfd, fd, 0], label: "pidfd_getfd(\(pidfd.argument), \(fd))")
  }

  /// socket(2).
  public static func socket(family: Int32, type: Int32, protocol: Int32 = 0) -> RemoteCall {
    RemoteCall(SyscallNumber.socket, [family, type, `protocol`], label: "socket(\(family), \(type))")
  }

  /// socketpair(2), the two descriptors into `fds` (two 32-bit words).
  public static func socketpair(family: Int32, type: Int32, protocol: Int32 = 0, into fds: UInt64) -> RemoteCall {
    RemoteCall(SyscallNumber.socketpair, [family, type, `protocol`, fds], label: "socketpair(\(family), \(type))")
  }

  /// bind(2) to the address of `length` bytes at `address`.
  public static func bind(_ fd: some RemoteArgument, _ address: UInt64, length: Int) -> RemoteCall {
    RemoteCall(SyscallNumber.bind, [fd, address, length], label: "bind \(fd.argument)")
  }

  /// connect(2) to the address of `length` bytes at `address`.
  public static func connect(_ fd: some RemoteArgument, _ address: UInt64, length: Int) -> RemoteCall {
    RemoteCall(SyscallNumber.connect, [fd, address, length], label: "connect \(fd.argument)")
  }

  /// accept4(2), not asking for the peer's address.
  public static func accept4(_ fd: some RemoteArgument, flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.accept4, [fd, 0, 0, flags], label: "accept4 \(fd.argument)")
  }

  /// listen(2).
  public static func listen(_ fd: some RemoteArgument, backlog: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.listen, [fd, backlog], label: "listen \(fd.argument)")
  }

  /// setsockopt(2) with the `length` bytes at `value`.
  public static func setsockopt(_ fd: some RemoteArgument, level: Int32, name: Int32, _ value: UInt64, length: Int)
    -> RemoteCall
  {
    RemoteCall(
      SyscallNumber.setsockopt, [fd, level, name, value, length], label: "setsockopt(\(level), \(name)) \(fd.argument)")
  }

  /// recvmsg(2) into the struct msghdr at `header`.
  public static func recvmsg(_ fd: some RemoteArgument, _ header: UInt64, _ flags: Int32) -> RemoteCall {
    RemoteCall(SyscallNumber.recvmsg, [fd, header, flags], label: "recvmsg \(fd.argument)")
  }
}

/// An fcntl(2) command with its argument.
public enum FcntlCommand: Sendable {
  /// F_SETFL: the file status flags (O_NONBLOCK, O_ASYNC...).
  case setFlags(Int32)
  /// F_SETOWN_EX of the struct f_owner_ex at an address in the task.
  case setOwner(UInt64)
  /// F_SETSIG: the signal of signal-driven I/O.
  case setSignal(Int32)
  /// F_SETLEASE, a read or write lease.
  case setLease(write: Bool)
  /// F_SETLK (a POSIX lock) or F_OFD_SETLK (an open file description's) of the struct flock
  /// at an address in the task, without waiting.
  case setLock(UInt64, openFileDescription: Bool)
  /// F_SETPIPE_SZ.
  case setPipeSize(Int32)

  var command: Int32 {
    switch self {
    case .setFlags: F_SETFL
    case .setOwner: Int32(CK_F_SETOWN_EX)
    case .setSignal: Int32(CK_F_SETSIG)
    case .setLease: Int32(CK_F_SETLEASE)
    case .setLock(_, let ofd): ofd ? Int32(CK_F_OFD_SETLK) : F_SETLK
    case .setPipeSize: Int32(CK_F_SETPIPE_SZ)
    }
  }

  var argument: any RemoteArgument {
    switch self {
    case .setFlags(let flags): flags
    case .setOwner(let address): address
    case .setSignal(let signal): signal
    case .setLease(let write): Int32(write ? F_WRLCK : F_RDLCK)
    case .setLock(let address, _): address
    case .setPipeSize(let size): size
    }
  }

  var name: String {
    switch self {
    case .setFlags: "F_SETFL"
    case .setOwner: "F_SETOWN_EX"
    case .setSignal: "F_SETSIG"
    case .setLease: "F_SETLEASE"
    case .setLock(_, let ofd): ofd ? "F_OFD_SETLK" : "F_SETLK"
    case .setPipeSize: "F_SETPIPE_SZ"
    }
  }
}

/// memfd_create(2) flags.
public struct MemfdFlags: OptionSet, Sendable {
  public let rawValue: UInt32
  public init(rawValue: UInt32) { self.rawValue = rawValue }

  public static let closeOnExec = Self(rawValue: UInt32(CK_MFD_CLOEXEC))
  /// Seals may be added (F_ADD_SEALS); without it the file is sealed with F_SEAL_SEAL.
  public static let allowSealing = Self(rawValue: UInt32(CK_MFD_ALLOW_SEALING))
}

/// An ioctl(2) request ckcont makes in a task, with its name for labels.
public struct IoctlRequest: Sendable {
  public let rawValue: UInt64
  public let name: String

  /// TIOCSCTTY: make the terminal the caller's controlling terminal.
  public static let setControllingTerminal = Self(rawValue: UInt64(TIOCSCTTY), name: "TIOCSCTTY")
  /// TIOCSPGRP: the terminal's foreground process group (a pid_t at the argument).
  public static let setForegroundGroup = Self(rawValue: UInt64(TIOCSPGRP), name: "TIOCSPGRP")
  /// TFD_IOC_SET_TICKS: a timerfd's unread expirations (a u64 at the argument).
  public static let setTimerTicks = Self(rawValue: UInt64(CK_TFD_IOC_SET_TICKS), name: "TFD_IOC_SET_TICKS")
  /// SIOCGIFFLAGS and SIOCSIFFLAGS: a network interface's flags (a struct ifreq).
  public static let getInterfaceFlags = Self(rawValue: UInt64(SIOCGIFFLAGS), name: "SIOCGIFFLAGS")
  public static let setInterfaceFlags = Self(rawValue: UInt64(SIOCSIFFLAGS), name: "SIOCSIFFLAGS")
}
