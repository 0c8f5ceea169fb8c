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
