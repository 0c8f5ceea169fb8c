import Glibc
import Linux

/// `CKCONT_RESOURCE_REPORT=PATH`: at exit, ckcont appends one line to PATH,
/// `<command> fds <open descriptors, 0-2 included> vmhwm_kib <peak resident memory>`, so that
/// `Scripts/soak` can show that neither grows over a thousand dumps and restores (a descriptor
/// still open at exit is one that nothing closed). Nothing happens without the variable.
enum ResourceReport {
  /// Registers the report to run at exit (after `run()` returns and after `fail`), if asked.
  static func installIfAsked() {
    guard getenv("CKCONT_RESOURCE_REPORT") != nil else { return }
    atexit { ResourceReport.write() }
  }

  private static func write() {
    guard let path = getenv("CKCONT_RESOURCE_REPORT").map({ String(cString: $0) }) else { return }
    // The listing's own descriptor of /proc/self/fd is among the names it lists.
    let descriptors = ((try? PseudoFile.list("/proc/self/fd"))?.count ?? 1) - 1
    let status = (try? PseudoFile.read("/proc/self/status")) ?? ""
    let peak = status.split(separator: "\n").first { $0.hasPrefix("VmHWM:") }?.split(separator: " ").dropFirst().first
    let command = CommandLine.arguments.dropFirst().first { !$0.hasPrefix("-") } ?? "-"
    let line = "\(command) fds \(descriptors) vmhwm_kib \(peak ?? "?")\n"
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else { return }
    _ = line.utf8CString.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count - 1) }
    close(fd)
  }
}
