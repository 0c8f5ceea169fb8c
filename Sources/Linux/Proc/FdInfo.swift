/// One line of an fdinfo file beyond the four common ones, kept as text: what it means depends
/// on the kind of file (eventfd, timerfd, signalfd, inotify, epoll, locks...).
public struct FdInfoField: Codable, Hashable, Sendable {
  /// The text before the first colon (`eventfd-count`, `clockid`, `sigmask`, `tfd`, `lock`),
  /// or the leading word for the record lines of inotify and fanotify (`inotify`,
  /// `fanotify`), whose own fields are `name:value` pairs.
  public var key: String
  /// The rest of the line, without surrounding blanks.
  public var value: String

  /// Creates a field.
  public init(key: String, value: String) {
    self.key = key
    self.value = value
  }

  /// The `name:value` pairs of a record line such as `tfd: 5 events: 19 data: 1234 pos:0 ...`
  /// or `inotify wd:1 ino:f78229 sdev:fe00000 mask:300 ...`; nil when a word is not of that shape.
  public var recordFields: [(name: String, value: String)]? {
    // epoll lines put blanks between a name and its value (`events:       19`); join them first.
    var pairs: [(String, String)] = []
    var words = blankSeparatedFields(Substring(key == "tfd" ? "tfd: " + value : value))[...]
    while let word = words.popFirst() {
      guard let colon = word.firstIndex(of: ":") else { return nil }
      var fieldValue = word[word.index(after: colon)...]
      if fieldValue.isEmpty {
        guard let next = words.popFirst() else { return nil }
        fieldValue = next
      }
      pairs.append((String(word[..<colon]), String(fieldValue)))
    }
    return pairs
  }
}

/// `/proc/<pid>/fdinfo/<fd>`: the position, open flags and identity of a descriptor, plus the
/// lines that special files add (proc(5)).
public struct FdInfo: Codable, Hashable, Sendable {
  /// The file offset.
  public var pos: Int64
  /// The open(2) flags (printed in octal), including O_CLOEXEC as the kernel reports it.
  public var flags: UInt32
  /// The id of the mount holding the file (matches `mountinfo`).
  public var mountID: Int32
  /// The inode number of the file.
  public var inode: UInt64
  /// Every further line, in order.
  public var extra: [FdInfoField]

  /// Creates an fdinfo value.
  public init(pos: Int64, flags: UInt32, mountID: Int32, inode: UInt64, extra: [FdInfoField] = []) {
    self.pos = pos
    self.flags = flags
    self.mountID = mountID
    self.inode = inode
    self.extra = extra
  }

  /// The value of the first extra line with `key`.
  public func value(for key: String) -> String? {
    extra.first { $0.key == key }?.value
  }

  /// The counter of an eventfd (`eventfd-count`, hexadecimal).
  public var eventfdCount: UInt64? { value(for: "eventfd-count").flatMap { UInt64($0, radix: 16) } }

  /// The signals a signalfd accepts (`sigmask`, hexadecimal; bit n-1 is signal n).
  public var signalfdMask: UInt64? { value(for: "sigmask").flatMap { UInt64($0, radix: 16) } }

  /// The clock of a timerfd (`clockid`).
  public var timerfdClockID: Int32? { value(for: "clockid").flatMap { Int32($0) } }

  /// Expirations of a timerfd not yet read (`ticks`).
  public var timerfdTicks: UInt64? { value(for: "ticks").flatMap { UInt64($0) } }

  /// A timerfd's `it_value` (time left) or `it_interval`, printed `(seconds, nanoseconds)`, in
  /// nanoseconds.
  public func timerfdNanoseconds(_ key: String) -> Int64? {
    let numbers = (value(for: key) ?? "").split { "(), ".contains($0) }.compactMap { Int64($0) }
    return numbers.count == 2 ? numbers[0] * 1_000_000_000 + numbers[1] : nil
  }
}

extension FdInfo {
  /// Parses one fdinfo file; `pos`, `flags`, `mnt_id` and `ino` are required.
  public static func parse(_ text: String) throws(CKError) -> FdInfo {
    var pos: Int64?
    var flags: UInt32?
    var mountID: Int32?
    var inode: UInt64?
    var extra: [FdInfoField] = []
    for (index, line) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated()
    where !line.isEmpty {
      func fail(_ reason: String) -> CKError {
        procParseError("fdinfo", line: index + 1, line, reason)
      }
      // Record lines of notification fds start with a word, then name:value pairs.
      if let word = ["inotify", "fanotify"].first(where: { line.hasPrefix($0 + " ") }) {
        extra.append(FdInfoField(key: word, value: String(trimBlanks(line.dropFirst(word.count)))))
        continue
      }
      guard let (key, value) = splitProcField(line), !key.isEmpty else { throw fail("no key") }
      switch key {
      case "pos":
        guard pos == nil, let number = Int64(value) else { throw fail("bad pos") }
        pos = number
      case "flags":
        guard flags == nil, let number = UInt32(value, radix: 8) else { throw fail("bad flags") }
        flags = number
      case "mnt_id":
        guard mountID == nil, let number = Int32(value) else { throw fail("bad mnt_id") }
        mountID = number
      case "ino":
        guard inode == nil, let number = UInt64(value) else { throw fail("bad ino") }
        inode = number
      default:
        extra.append(FdInfoField(key: String(key), value: String(value)))
      }
    }
    guard let pos else { throw procParseError("fdinfo", "no pos line") }
    guard let flags else { throw procParseError("fdinfo", "no flags line") }
    guard let mountID else { throw procParseError("fdinfo", "no mnt_id line") }
    guard let inode else { throw procParseError("fdinfo", "no ino line") }
    return FdInfo(pos: pos, flags: flags, mountID: mountID, inode: inode, extra: extra)
  }

  /// Reads and parses `/proc/<pid>/fdinfo/<fd>`.
  public static func read(pid: Int32, fd: Int32) throws -> FdInfo {
    try parse(PseudoFile.read("/proc/\(pid)/fdinfo/\(fd)"))
  }
}
