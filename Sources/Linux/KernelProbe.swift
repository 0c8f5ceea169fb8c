import CKShim
import Glibc
import SystemPackage

/// The outcome of probing one kernel feature.
public struct Probe: Codable, Sendable, Equatable {
  public var name: String
  /// Without an essential feature ckcont cannot dump or restore at all.
  public var essential: Bool
  public var available: Bool
  public var detail: String

  public init(_ name: String, essential: Bool, available: Bool, detail: String) {
    self.name = name
    self.essential = essential
    self.available = available
    self.detail = detail
  }

  static func run(_ name: String, essential: Bool, _ body: () throws -> String) -> Probe {
    do {
      return Probe(name, essential: essential, available: true, detail: try body())
    } catch {
      return Probe(name, essential: essential, available: false, detail: "\(error)")
    }
  }
}

/// Probes of the kernel features ckcont's engine stands on, each tried for real on a
/// child of our own (like `criu check`).
public enum KernelProbe {
  /// Root, or at least the capabilities checkpoint/restore needs.
  public static func privileges() -> Probe {
    let caps = Capabilities.ofSelf()
    if geteuid() == 0 && Capabilities.selfHasEffective(Capabilities.sysAdmin) {
      return Probe("root or CAP_CHECKPOINT_RESTORE", essential: true, available: true, detail: "root (\(caps))")
    }
    let ok =
      Capabilities.selfHasEffective(Capabilities.checkpointRestore)
      && Capabilities.selfHasEffective(Capabilities.sysPtrace)
      && Capabilities.selfHasEffective(Capabilities.sysAdmin)
    return Probe(
      "root or CAP_CHECKPOINT_RESTORE", essential: true, available: ok,
      detail: ok ? "capabilities \(caps)" : "not root; capabilities '\(caps)': run as root")
  }

  /// PTRACE_SEIZE + PTRACE_INTERRUPT on an idle child, which must report PTRACE_EVENT_STOP.
  public static func ptraceSeize() -> Probe {
    Probe.run("ptrace seize/interrupt", essential: true) {
      try withIdleChild { pid in
        try Ptrace.seize(pid)
        try Ptrace.interrupt(pid)
        let status = try Ptrace.wait(pid)
        guard status.isEventStop else {
          throw CKError(.failed, "expected PTRACE_EVENT_STOP, got \(status)")
        }
        try Ptrace.detach(pid)
        return "PTRACE_EVENT_STOP seen"
      }
    }
  }

  /// process_vm_readv(2) from an idle child: reads a page of its stack.
  public static func processVMReadv() -> Probe {
    Probe.run("process_vm_readv", essential: true) {
      // The child is a fork of us: this variable sits at the same address in its copy.
      var marker: UInt64 = 0x636b_636f_6e74
      return try withIdleChild { pid in
        var copy: UInt64 = 0
        let n = try withUnsafeMutableBytes(of: &marker) { remote in
          try withUnsafeMutableBytes(of: &copy) { local in
            var localIov = iovec(iov_base: local.baseAddress, iov_len: 8)
            var remoteIov = iovec(iov_base: remote.baseAddress, iov_len: 8)
            return try syscallChecked("process_vm_readv", "\(pid)") {
              ck_process_vm_readv(pid, &localIov, 1, &remoteIov, 1)
            }
          }
        }
        guard n == 8, copy == marker else { throw CKError(.failed, "read back wrong data") }
        return "read \(n) bytes from a child"
      }
    }
  }

  /// pidfd_open(2) and pidfd_getfd(2): duplicate one of our own descriptors through a pidfd.
  public static func pidfd() -> Probe {
    Probe.run("pidfd_open/pidfd_getfd", essential: true) {
      let pidfd = try OwnedDescriptor("pidfd_open", "\(getpid())") { ck_pidfd_open(getpid(), 0) }
      _ = try OwnedDescriptor("pidfd_getfd", "\(pidfd.raw)") { ck_pidfd_getfd(pidfd.raw, pidfd.raw, 0) }
      return "ok"
    }
  }

  /// The PAGEMAP_SCAN ioctl (Linux 6.7) on our own pagemap: finds a page we just touched.
  public static func pagemapScan() -> Probe {
    Probe.run("PAGEMAP_SCAN ioctl", essential: false) {
      let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
      guard let area = mmap(nil, 4 * pageSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
        area != MAP_FAILED
      else { throw SyscallError("mmap", "probe area", Errno(rawValue: errno)) }
      defer { munmap(area, 4 * pageSize) }
      area.storeBytes(of: 1, toByteOffset: pageSize, as: UInt8.self)
      let pagemap = try OwnedDescriptor(opening: "/proc/self/pagemap", flags: O_RDONLY)
      var regions = [ck_page_region](repeating: ck_page_region(), count: 4)
      let start = UInt64(UInt(bitPattern: area))
      let count = try regions.withUnsafeMutableBufferPointer { buffer in
        var arg = ck_pm_scan_arg()
        arg.size = UInt64(MemoryLayout<ck_pm_scan_arg>.size)
        arg.start = start
        arg.end = start + UInt64(4 * pageSize)
        arg.vec = UInt64(UInt(bitPattern: buffer.baseAddress))
        arg.vec_len = UInt64(buffer.count)
        arg.category_mask = UInt64(CK_PAGE_IS_PRESENT)
        arg.return_mask = UInt64(CK_PAGE_IS_PRESENT)
        return try syscallChecked("ioctl", "PAGEMAP_SCAN") { ck_pagemap_scan(pagemap.raw, &arg) }
      }
      guard count == 1, regions[0].start == start + UInt64(pageSize) else {
        throw CKError(.failed, "PAGEMAP_SCAN returned \(count) unexpected regions")
      }
      return "found the one present page"
    }
  }

  /// userfaultfd with WP_ASYNC and WP_UNPOPULATED: dirty tracking for incremental dumps.
  public static func userfaultfdWriteProtect() -> Probe {
    Probe.run("userfaultfd WP_ASYNC", essential: false) {
      let wanted = UInt64(CK_UFFD_FEATURE_WP_ASYNC | CK_UFFD_FEATURE_WP_UNPOPULATED)
      var granted: UInt64 = 0
      _ = OwnedDescriptor(
        adopting: try negErrnoChecked("userfaultfd", "UFFD_USER_MODE_ONLY") {
          ck_userfaultfd_api(O_CLOEXEC | O_NONBLOCK | Int32(CK_UFFD_USER_MODE_ONLY), wanted, &granted)
        })
      guard granted & wanted == wanted else { throw CKError(.failed, "features not granted") }
      return "WP_ASYNC and WP_UNPOPULATED granted"
    }
  }

  /// Time namespaces (Linux 5.6).
  public static func timeNamespace() -> Probe {
    Probe.run("time namespace", essential: false) {
      guard PseudoFile.exists("/proc/self/ns/time") else {
        throw CKError(.failed, "/proc/self/ns/time missing (CONFIG_TIME_NS)")
      }
      return "/proc/self/ns/time present"
    }
  }

  /// User namespaces can be made (containers of rootless runtimes are restored in one).
  public static func userNamespaces() -> Probe {
    Probe.run("user namespaces", essential: false) {
      let limit = String(
        (try? PseudoFile.read("/proc/sys/user/max_user_namespaces"))?.split(separator: "\n").first ?? "0")
      guard PseudoFile.exists("/proc/self/ns/user"), limit != "0" else {
        throw CKError(.failed, "user namespaces are off (user.max_user_namespaces = \(limit))")
      }
      return "up to \(limit)"
    }
  }

  /// openat2 with RESOLVE_IN_ROOT (Linux 5.6): how the restore opens files inside a
  /// container's root for tasks in a user namespace.
  public static func openat2() -> Probe {
    Probe.run("openat2 RESOLVE_IN_ROOT", essential: false) {
      let root = try OwnedDescriptor(opening: "/", flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      let fd = ck_open_in_root(root.raw, "/proc/self/..", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      guard fd >= 0 else { throw CKError(.failed, "openat2: \(String(cString: strerror(-fd)))") }
      _ = OwnedDescriptor(adopting: fd)
      return "works"
    }
  }

  /// PR_TIMER_CREATE_RESTORE_IDS (Linux 6.15): POSIX timers come back with their ids. Asked
  /// with PR_TIMER_CREATE_RESTORE_IDS_GET, which changes nothing.
  public static func timerRestoreIDs() -> Probe {
    Probe.run("POSIX timer ids (PR_TIMER_CREATE_RESTORE_IDS)", essential: false) {
      guard ck_prctl(77, 2, 0, 0, 0) >= 0 else {
        throw CKError(
          .failed, "prctl(PR_TIMER_CREATE_RESTORE_IDS): \(String(cString: strerror(errno))) (Linux 6.15 or newer)")
      }
      return "timer_create can take the id to restore"
    }
  }

  /// Runs `body` with an idle child of ours, then kills and reaps it.
  static func withIdleChild<T>(_ body: (Int32) throws -> T) throws -> T {
    let pid = ck_spawn_idle_child()
    guard pid > 0 else { throw SyscallError("fork", "probe child", Errno(rawValue: errno)) }
    defer {
      kill(pid, SIGKILL)
      var status: Int32 = 0
      while waitpid(pid, &status, Int32(CK_WALL)) < 0 && errno == EINTR {}
    }
    return try body(pid)
  }
}

extension KernelProbe {
  /// clone3(2) with CLONE_NEWPID, `set_tid` = {1} and CLONE_INTO_CGROUP into the cgroup v2
  /// directory `cgroupDirectory`: a container's init with its pid, in a cgroup (a restore
  /// clones it in its own cgroup and moves it: see `Restore.createTask`).
  public static func clone3IntoCgroup(cgroupDirectory: String) -> Probe {
    Probe.run("clone3 set_tid + CLONE_INTO_CGROUP", essential: true) {
      let directory = try OwnedDescriptor(opening: cgroupDirectory, flags: O_RDONLY | O_DIRECTORY | O_CLOEXEC)
      var tids: [pid_t] = [1]
      let pid = try negErrnoChecked("clone3", "NEWPID, set_tid {1}, into \(cgroupDirectory)") {
        ck_clone3_exit_child(UInt64(CK_CLONE_NEWPID), directory.raw, &tids, 1)
      }
      let status = try Ptrace.wait(Int32(pid))
      guard status == .exited(0) else { throw CKError(.failed, "probe child \(status)") }
      return "pid 1 in a new pid namespace, placed in the cgroup"
    }
  }
}
