import Foundation
import Testing

@testable import Bundle

/// The model's hand-written JSON (the VMA list of mm.json) reads back exactly through
/// JSONDecoder, whatever the mapping paths hold; the hand-written decoder reads what either
/// encoder writes, and refuses what is not a valid image with the member and the byte.
struct ModelEncodingTests {
  static func sampleImage() -> MemoryImage {
    let paths = [
      "", "/usr/lib/x86_64-linux-gnu/libc.so.6", "[heap]", "/tmp/with \"quotes\" and \\ backslash",
      "/tmp/new\nline\ttab\u{1}ctl", "/tmp/ünïcödé ☃", "/memfd:name (deleted)",
    ]
    var vmas: [VMAImage] = []
    var offset: UInt64 = 0
    for (index, path) in paths.enumerated() {
      let start = UInt64(0x1000_0000 + index * 0x10_0000)
      let pages =
        index % 2 == 0
        ? [PageRun(start: start, end: start + 0x2000), PageRun(start: start + 0x5000, end: start + 0x6000)] : []
      vmas.append(
        VMAImage(
          start: start, end: start + 0x8000, protection: Int32(index % 8), shared: index % 3 == 0,
          kind: index == 6 ? .memfd : .file, path: path, offset: UInt64(index) << 12, growsDown: index == 2,
          pages: pages,
          pagesOffset: offset, sharedObject: index == 6 ? 77 : nil, objectSize: index == 6 ? 1 << 20 : nil))
      vmas[vmas.count - 1].lock = index == 0 ? .always : index == 2 ? .onFault : nil
      vmas[vmas.count - 1].advice = index == 1 ? [.dontFork, .wipeOnFork] : index == 4 ? VMAImage.Advice.allCases : nil
      vmas[vmas.count - 1].sealed = index == 3 ? true : nil
      vmas[vmas.count - 1].noReserve = index == 5 ? true : nil
      vmas[vmas.count - 1].droppable = index == 4 ? true : nil
      vmas[vmas.count - 1].accounted = index == 3 ? true : nil
      vmas[vmas.count - 1].guards = index == 5 ? [PageRun(start: start + 0x3000, end: start + 0x4000)] : nil
      vmas[vmas.count - 1].parentPages =
        index == 4
        ? [PageRun(start: start + 0x2000, end: start + 0x3000), PageRun(start: start + 0x6000, end: start + 0x7000)]
        : index == 7 ? [] : nil
      vmas[vmas.count - 1].laterPages =
        index == 4
        ? [
          LaterRun(start: start + 0x6000, end: start + 0x7000),
          LaterRun(start: start + 0x7000, end: start + 0x8000, from: 9, until: 11),
        ]
        : nil
      vmas[vmas.count - 1].hugePageSize = index == 1 ? 2 << 20 : nil
      vmas[vmas.count - 1].precopiedPages = index == 5 ? [PageRun(start: start + 0x5000, end: start + 0x6000)] : nil
      vmas[vmas.count - 1].lazyPages = index == 3 ? [PageRun(start: start + 0x4000, end: start + 0x6000)] : nil
      vmas[vmas.count - 1].objectDevice = index == 6 ? 0x1_0000_0021 : nil
      vmas[vmas.count - 1].objectMode = index == 6 ? 0o4755 : nil
      vmas[vmas.count - 1].fileSize = index == 2 ? 2_093_256 : nil
      vmas[vmas.count - 1].fileModified = index == 2 ? -1_700_000_000_123_456_789 : nil
      offset += pages.reduce(0) { $0 + $1.size }
    }
    return MemoryImage(
      vmas: vmas,
      fields: MMFields(
        startCode: 1, endCode: 2, startData: 3, endData: 4, startBrk: 5, brk: 6, startStack: 7, argStart: 8, argEnd: 9,
        envStart: 10, envEnd: 11), auxv: [6, 4096, 0, 0], exe: "/bin/true", pagesSize: offset)
  }

  /// The samples set every optional field somewhere: a field added to the model must be
  /// added to them, and so to what the round trips below check.
  @Test func theSamplesSetEveryField() {
    #expect(
      ModelCoverage.neverSet(in: Self.sampleImage()).isEmpty,
      "\(ModelCoverage.neverSet(in: Self.sampleImage()).sorted())")
    #expect(
      ModelCoverage.neverSet(in: Self.sampleCore()).isEmpty, "\(ModelCoverage.neverSet(in: Self.sampleCore()).sorted())"
    )
    var unsealed = Self.sampleImage()
    for index in unsealed.vmas.indices { unsealed.vmas[index].sealed = nil }
    #expect(ModelCoverage.neverSet(in: unsealed) == ["VMAImage.sealed"])
  }

  @Test func memoryImageRoundTripsThroughItsFastEncoding() throws {
    let image = Self.sampleImage()
    let data = try image.encodedJSON()
    #expect(try JSONDecoder().decode(MemoryImage.self, from: data) == image)
    let empty = MemoryImage(vmas: [], fields: image.fields, auxv: [], exe: "/x", pagesSize: 0)
    #expect(try JSONDecoder().decode(MemoryImage.self, from: try empty.encodedJSON()) == empty)
  }
}

extension ModelEncodingTests {
  @Test func fastDecoderReadsWhatBothEncodersWrite() throws {
    let image = Self.sampleImage()
    #expect(try MemoryImage.decodeJSON(Array(try image.encodedJSON()), member: "mm.json") == image)
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .withoutEscapingSlashes]
    #expect(try MemoryImage.decodeJSON(Array(try encoder.encode(image)), member: "mm.json") == image)
    // Escapes JSONEncoder does not write but JSON allows: \u, a surrogate pair.
    let text = String(decoding: try image.encodedJSON(), as: UTF8.self)
    #expect(text.contains(#""exe":"\/bin\/true""#))
    let escaped = text.replacingOccurrences(of: #"\/bin\/true"#, with: #"\/bin\/tr\u0075e \ud83d\ude00"#)
    #expect(try MemoryImage.decodeJSON(Array(escaped.utf8), member: "mm.json").exe == "/bin/true 😀")
    #expect(throws: BundleError.self) { try MemoryImage.decodeJSON(Array((text + " x").utf8), member: "mm.json") }
  }

  @Test(arguments: [
    ("", "expected {"),
    ("{\"vmas\":[]}", "lacks \"fields\""),
    ("[1]", "expected {"),
    ("{\"vmas\":[{\"start\":1.5}]}", "an integer"),
    ("{\"vmas\":[{\"start\":-1}]}", "an integer that fits UInt64"),
    ("{\"vmas\":[{\"start\":99999999999999999999}]}", "at most 64 bits"),
    ("{\"exe\":\"\\x\"}", "a valid escape"),
    ("{\"exe\":\"abc", "the end of a string"),
    ("{\"exe\":\"a\nb\"}", "no control character"),
    ("{\"vmas\":[{\"kind\":\"weird\"}]}", "unknown kind"),
    ("{\"vmas\":[{\"advice\":[\"dontFork\",\"fly\"]}]}", "unknown advice \"fly\""),
    ("{\"vmas\":[{\"start\":1,\"colour\":2}]}", "a VMA has a field \"colour\" this ckcont does not know"),
    ("{\"fields\":{\"brk\":1,\"heap\":2}}", "has a field \"heap\""),
  ])
  func fastDecoderRefusesMalformedImages(text: String, complaint: String) {
    do {
      _ = try MemoryImage.decodeJSON(Array(text.utf8), member: "tasks/7/mm.json")
      Issue.record("decoded \(text)")
    } catch {
      #expect(error.message.contains(complaint), "\(error.message)")
    }
  }

  /// A newer minor version may add fields: not strict, they are skipped.
  @Test func unknownFieldsAreSkippedOnlyWhenNotStrict() throws {
    let text = String(decoding: try Self.sampleImage().encodedJSON(), as: UTF8.self)
    let added = text.replacingOccurrences(of: #""growsDown":"#, with: #""colour":[1,{"a":2}],"growsDown":"#)
    #expect(added != text)
    #expect(try MemoryImage.decodeJSON(Array(added.utf8), member: "mm.json", strict: false) == Self.sampleImage())
    #expect(throws: BundleError.self) { try MemoryImage.decodeJSON(Array(added.utf8), member: "mm.json") }
  }

  @Test func fastDecoderRefusesDeepNesting() {
    let text = "{\"x\":" + String(repeating: "[", count: 100) + String(repeating: "]", count: 100) + "}"
    #expect { try MemoryImage.decodeJSON(Array(text.utf8), member: "mm.json", strict: false) } throws: { error in
      (error as? BundleError)?.message.contains("levels of nesting") == true
    }
  }

  @Test func fastDecoderRefusesInvalidUTF8() {
    var bytes = Array("{\"exe\":\"ab\"}".utf8)
    bytes[9] = 0xff
    #expect(throws: BundleError.self) { try MemoryImage.decodeJSON(bytes, member: "mm.json") }
  }
}

extension ModelEncodingTests {
  static func sampleCore() -> TaskCore {
    let registers = GeneralRegisters(
      r15: 15, r14: 14, r13: 13, r12: 12, rbp: 0x7fff_0000, rbx: .max, r11: 11, r10: 10, r9: 9, r8: 8,
      rax: UInt64(bitPattern: -516), rcx: 1, rdx: 2, rsi: 3, rdi: 4, origRax: 35, rip: 0x40_1000, cs: 0x33,
      eflags: 0x246,
      rsp: 0x7fff_1000, ss: 0x2b, fsBase: 0x7f00_0000, gsBase: 0, ds: 0, es: 0, fs: 0, gs: 0)
    let main = ThreadCore(
      tid: 1, registers: registers, xstate: Data((0..<2432).map { UInt8($0 % 251) }), xstateFeatures: 0xe7,
      blockedSignals: 1 << 9, pendingSignals: [Data([1, 2, 3]), Data()],
      rseq: RseqRegistration(address: 0x7f00_1000, size: 32, signature: 0x5305_3053),
      altStack: AltStack(base: 0x7f00_2000, flags: Int32.min, size: 8192), clearChildTid: 0x7f00_3000)
    var second = main
    second.tid = 2
    second.rseq = nil
    second.altStack = nil
    second.pendingSignals = []
    second.name = "worker \"ü\""
    second.cpus = [0, 3]
    second.robustList = 0x7f00_4000
    second.scheduling = SchedulingImage(nice: 12, policy: 5, realtimePriority: 0)
    second.ioPriority = 3 << 13
    second.timerSlack = 777_777
    second.seccompFilters = [SeccompFilterImage(flags: 0, program: Data(repeating: 6, count: 8))]
    second.tlsEntries = [TLSEntry(entry: 12, base: 0xf7f9_1580, limit: 0xfffff, flags: 0x51)]
    var core = TaskCore(
      threads: [main, second],
      signalActions: [SignalAction(signal: 10, handler: 0x40_2000, flags: 0x0400_0004, restorer: 0x40_3000, mask: 0)],
      sharedPendingSignals: [Data([9, 9])],
      itimers: [IntervalTimer(which: 0, intervalMicroseconds: 10_000, valueMicroseconds: 3_000)],
      posixTimers: [
        PosixTimerImage(
          id: 0, clockID: 1, notify: 4, signal: 34, sigevValue: 7, targetThread: 2, intervalNanoseconds: 0,
          valueNanoseconds: 5_000_000),
        PosixTimerImage(
          id: 1, clockID: -6, notify: 1, signal: 0, sigevValue: 0, targetThread: nil, intervalNanoseconds: 1,
          valueNanoseconds: 0),
      ],
      personality: 0, resourceLimits: [ResourceLimitImage(resource: 7, soft: 1024, hard: .max)], umask: 0o022,
      cwd: "/tmp/ü \"x\"",
      root: "/", comm: "scale\n",
      credentials: Credentials(
        uids: [0, 0, 0, 0], gids: [1, 2, 3, 4], groups: [], capInheritable: 0, capPermitted: 0x1ff_ffff_ffff,
        capEffective: 0x1ff_ffff_ffff, capBounding: 0x1ff_ffff_ffff, capAmbient: 0, capabilitiesText: "=ep",
        noNewPrivileges: true, securebits: 0),
      parentDeathSignal: 9, dumpable: 1, childSubreaper: false)
    core.scheduling = SchedulingImage(nice: -3, policy: 3, realtimePriority: 0)
    core.controls = ProcessControls(thpDisabled: 1, timerSlack: 50_000, memoryDenyWriteExecute: 1)
    core.controls?.memoryMerge = 1
    core.oomScoreAdjust = -17
    core.loginUID = 1000
    core.abi = .i386
    core.seccompFilters = [
      SeccompFilterImage(flags: 0, program: Data([0x20, 0, 0, 0, 4, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0xff, 0x7f])),
      SeccompFilterImage(flags: 2, program: Data([6, 0, 0, 0, 0, 0, 0xff, 0x7f])),
    ]
    return core
  }

  @Test func coreDecodesByHandAsJSONDecoderDoes() throws {
    let core = Self.sampleCore()
    for formatting: JSONEncoder.OutputFormatting in [[.sortedKeys], [.prettyPrinted]] {
      let encoder = JSONEncoder()
      encoder.outputFormatting = formatting
      let data = try encoder.encode(core)
      #expect(try JSONDecoder().decode(TaskCore.self, from: data) == core)
      #expect(try TaskCore.decodeJSON(Array(data), member: "core.json") == core)
    }
    var noTimers = core
    noTimers.posixTimers = nil
    #expect(try TaskCore.decodeJSON(Array(try JSONEncoder().encode(noTimers)), member: "core.json") == noTimers)
  }

  @Test(arguments: [
    (#""rax":18446744073709551100"#, #""rax":-1"#, "rax does not fit UInt64"),
    (#""tid":1"#, #""tid":4294967296"#, "an integer that fits Int32"),
    (#""umask":18"#, #""umsk":18"#, "the core has a field \"umsk\" this ckcont does not know"),
    (#""xstateFeatures":231"#, #""xstateFeatures":"x""#, "an integer"),
  ])
  func coreDecoderRefusesWhatDoesNotFit(original: String, replacement: String, complaint: String) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys]
    let text = String(decoding: try encoder.encode(Self.sampleCore()), as: UTF8.self)
    #expect(text.contains(original))
    let broken = text.replacingOccurrences(of: original, with: replacement)
    #expect { try TaskCore.decodeJSON(Array(broken.utf8), member: "tasks/1/core.json") } throws: { error in
      let message = (error as? BundleError)?.message ?? ""
      return message.contains(complaint) && message.contains("tasks/1/core.json")
    }
  }
}

extension ModelEncodingTests {
  /// Messages waiting in a unix socket come with what the restore needs to send them again:
  /// a connected socket has its peer; one no peer is connected to is a named datagram socket
  /// with a sender for each message.
  @Test func waitingUnixMessagesNeedAPeerOrTheirSenders() {
    func unix(type: Int32, name: String?, peer: UInt64?, messages: [String]?, senders: [String]?) -> SocketImage {
      var image = SocketImage(
        family: 1, type: type, protocolNumber: 0, address: name.map { Data($0.utf8) }, peer: nil, backlog: nil,
        options: [],
        inode: 7, peerInode: peer)
      image.messages = messages?.map { Data($0.utf8) }
      image.senders = senders?.map { Data($0.utf8) }
      return image
    }
    #expect(unix(type: 2, name: nil, peer: 8, messages: ["a"], senders: nil).isValid)
    #expect(unix(type: 2, name: "\0r", peer: nil, messages: ["a", "b"], senders: ["\0s", ""]).isValid)
    #expect(!unix(type: 2, name: "\0r", peer: nil, messages: ["a", "b"], senders: nil).isValid)
    #expect(!unix(type: 2, name: "\0r", peer: nil, messages: ["a", "b"], senders: ["\0s"]).isValid)
    #expect(!unix(type: 2, name: nil, peer: nil, messages: ["a"], senders: [""]).isValid)
    #expect(!unix(type: 5, name: "\0r", peer: nil, messages: ["a"], senders: [""]).isValid)
    #expect(
      !unix(type: 2, name: "\0r", peer: nil, messages: ["a"], senders: [String(repeating: "x", count: 109)]).isValid)
    #expect(!unix(type: 2, name: nil, peer: 8, messages: ["a"], senders: [""]).isValid)
    // UDP: datagrams need a bound receiver and a sender address of its family each.
    func udp(_ senders: [Data]?, bound: Bool = true) -> SocketImage {
      let address = Data([2, 0, 0x1f, 0x90, 127, 0, 0, 1] + [UInt8](repeating: 0, count: 8))
      var image = SocketImage(
        family: 2, type: 2, protocolNumber: 17, address: bound ? address : nil, peer: nil, backlog: nil, options: [])
      image.messages = [Data("a".utf8)]
      image.senders = senders
      return image
    }
    let sender = Data([2, 0, 0x30, 0x39, 127, 0, 0, 1] + [UInt8](repeating: 0, count: 8))
    #expect(udp([sender]).isValid)
    #expect(!udp(nil).isValid)
    #expect(!udp([sender], bound: false).isValid)
    #expect(!udp([Data([10, 0]) + sender.dropFirst(2)]).isValid)
  }
}

extension ModelEncodingTests {
  /// Descriptors in flight belong to a connected socket, each group at a message or a piece
  /// of the stream that waits, in order, without overlapping, 1 to 253 at once.
  @Test func passedDescriptorsMustLieInWhatWaits() {
    let one = [DescriptorReference(pid: 1, fd: 3)]
    func socket(type: Int32, peer: UInt64? = 8, _ passed: [PassedDescriptors]) -> SocketImage {
      var image = SocketImage(
        family: 1, type: type, protocolNumber: 0, address: nil, peer: nil, backlog: nil, options: [], inode: 7,
        peerInode: peer,
        queued: type == 1 ? Data("helloworld".utf8) : nil)
      if type != 1 { image.messages = [Data("a".utf8), Data("b".utf8)] }
      image.passed = passed
      return image
    }
    #expect(
      socket(
        type: 1,
        [PassedDescriptors(at: 0, length: 5, descriptors: one), PassedDescriptors(at: 5, length: 5, descriptors: one)]
      ).isValid)
    #expect(socket(type: 5, [PassedDescriptors(at: 1, descriptors: one)]).isValid)
    #expect(!socket(type: 1, [PassedDescriptors(at: 0, length: 11, descriptors: one)]).isValid)
    #expect(
      !socket(
        type: 1,
        [PassedDescriptors(at: 0, length: 6, descriptors: one), PassedDescriptors(at: 5, length: 5, descriptors: one)]
      ).isValid)
    #expect(!socket(type: 1, [PassedDescriptors(at: 0, descriptors: one)]).isValid)
    #expect(!socket(type: 5, [PassedDescriptors(at: 2, descriptors: one)]).isValid)
    #expect(!socket(type: 5, [PassedDescriptors(at: 0, descriptors: [])]).isValid)
    #expect(!socket(type: 5, peer: nil, [PassedDescriptors(at: 0, descriptors: one)]).isValid)
    #expect(
      !socket(type: 5, [PassedDescriptors(at: 1, descriptors: one), PassedDescriptors(at: 0, descriptors: one)]).isValid
    )
    // A file only the message holds: an absolute path, opened without creating or truncating.
    let file = DescriptorReference(path: "/tmp/x", flags: 2, position: 3)
    #expect(socket(type: 5, [PassedDescriptors(at: 0, descriptors: [file])]).isValid)
    // A pipe end only the message holds: opened for reading or writing through another.
    #expect(
      socket(
        type: 5, [PassedDescriptors(at: 0, descriptors: [DescriptorReference(pipeThrough: 1, fd: 3, flags: 0o4001)])]
      ).isValid)
    for bad in [
      DescriptorReference(pipeThrough: 1, fd: 3, flags: 2), DescriptorReference(pipeThrough: 0, fd: 3, flags: 0),
      DescriptorReference(pipeThrough: 1, fd: 3, flags: 0o100),
    ] {
      #expect(!socket(type: 5, [PassedDescriptors(at: 0, descriptors: [bad])]).isValid, "\(bad)")
    }
    for bad in [
      DescriptorReference(path: "tmp/x", flags: 2, position: 3),
      DescriptorReference(path: "/tmp/x", flags: 2 | 0o1000, position: 0),
      DescriptorReference(path: "/tmp/x", flags: 0o100, position: 0),
      DescriptorReference(path: "/tmp/x", flags: 0, position: -1),
      DescriptorReference(pid: 0, fd: 3), DescriptorReference(pid: -4, fd: 3),
    ] {
      #expect(!socket(type: 5, [PassedDescriptors(at: 0, descriptors: [bad])]).isValid, "\(bad)")
    }
  }
}

extension ModelEncodingTests {
  /// A bundle's socket options are ones ckcont saves, each once, each value of its shape: an
  /// int, a struct of its size, a name that fits, whole BPF instructions.
  @Test func socketOptionsMustBeKnownAndShapedRight() {
    func valid(_ options: [SocketOption]) -> Bool {
      SocketImage(
        family: 2, type: 1, protocolNumber: 6, address: nil, peer: nil, backlog: nil, options: options
      ).isValid
    }
    let priority = SocketOption(level: 1, name: 12, value: 5)
    let linger = SocketOption(level: 1, name: 13, value: 0, bytes: Data(count: 8))
    let congestion = SocketOption(level: 6, name: 13, value: 0, bytes: Data("reno".utf8))
    let filter = SocketOption(level: 1, name: 26, value: 0, bytes: Data(count: 16))
    #expect(valid([priority, linger, congestion, filter]))
    #expect(!valid([priority, priority]))
    #expect(!valid([SocketOption(level: 1, name: 99, value: 1)]))
    #expect(!valid([SocketOption(level: 1, name: 12, value: 5, bytes: Data(count: 4))]))
    #expect(!valid([SocketOption(level: 1, name: 13, value: 0, bytes: Data(count: 7))]))
    #expect(!valid([SocketOption(level: 1, name: 13, value: 0)]))
    #expect(!valid([SocketOption(level: 6, name: 13, value: 0, bytes: Data(count: 17))]))
    #expect(!valid([SocketOption(level: 6, name: 13, value: 0, bytes: Data())]))
    #expect(!valid([SocketOption(level: 1, name: 26, value: 0, bytes: Data(count: 9))]))
    #expect(!valid([SocketOption(level: 1, name: 26, value: 0, bytes: Data(count: 8 * 4097))]))
  }
}

extension ModelEncodingTests {
  /// A file table whose descriptors set every field of DescriptorImage somewhere (the
  /// nested parts, which the hand decoder hands to JSONDecoder, with one value each).
  static func sampleFiles() -> FileTableImage {
    var plain = DescriptorImage(
      fd: 3, kind: .path, flags: 0o2, closeOnExec: true, path: "/tmp/a \"quoted\" ☃ path", position: 4096,
      mode: 0o100644)
    plain.sharedDescription = 7
    plain.outsideRoot = true
    plain.locks = [FileLockImage(kind: .posix, write: true, start: 0, length: 10)]
    plain.asyncOwner = AsyncOwnerImage(type: 0, id: 12, signal: 29)
    var fifo = DescriptorImage(
      fd: 4, kind: .fifo, flags: 0, closeOnExec: false, path: "/run/f", pipe: 99, sharesWith: 3)
    fifo.fifoDeleted = true
    fifo.fifoAttributes = FileAttributes(
      uid: 1, gid: 2, mode: 0o600, accessed: FileTime(seconds: 3, nanoseconds: 4),
      modified: FileTime(seconds: 5, nanoseconds: 6))
    let event = DescriptorImage(
      fd: 5, kind: .eventfd, flags: 0, closeOnExec: false, anon: AnonFileState(count: 3, semaphore: true),
      epollTargets: [EpollTarget(fd: 3, events: 1, data: 42)],
      memfd: MemfdImage(name: "m", inode: 8, seals: 1, contents: Data([1, 2])))
    var watch = DescriptorImage(fd: 6, kind: .inotify, flags: 0, closeOnExec: true)
    watch.inotifyWatches = [InotifyWatch(wd: 1, mask: 2, path: "/etc")]
    watch.fanotify = FanotifyImage(
      flags: 0x10, eventFlags: 0o100000,
      marks: [FanotifyMark(kind: .mount, path: "/tmp", mask: 0x20, ignoredMask: 0x2, flags: 0x40)])
    watch.ghost = GhostFileImage(inode: 9, contents: Data("gone".utf8))
    watch.pidfdTarget = 77
    watch.mqueue = MessageQueueImage(
      name: "q", mode: 0o600, uid: 0, gid: 0, maxMessages: 10, messageSize: 64, unlinked: false,
      messages: [.init(priority: 1, data: Data([7]))])
    var socket = DescriptorImage(fd: 7, kind: .socket, flags: 0o4002, closeOnExec: false)
    socket.socket = SocketImage(
      family: 1, type: 1, protocolNumber: 0, address: Data("/run/s".utf8), peer: nil, backlog: 5, options: [],
      inode: 11)
    socket.pty = PtyImage(
      index: 2, isMaster: true, termios: Data([1, 2, 3]), windowSize: [24, 80], locked: false, packetMode: false,
      session: 1, foregroundGroup: 1)
    socket.tun = TunDescriptorImage(device: "tun0", flags: 0x1001, sendBuffer: 1 << 20, vnetHeaderSize: 10)
    return FileTableImage(
      descriptors: [plain, fifo, event, watch, socket],
      pipes: [PipeImage(inode: 99, buffered: Data("in the pipe".utf8), capacity: 65536)])
  }

  @Test func filesDecodeByHandAsJSONDecoderDoes() throws {
    let files = Self.sampleFiles()
    let unset = ModelCoverage.neverSet(in: files).filter { $0.hasPrefix("DescriptorImage.") }
    #expect(unset.isEmpty, "\(unset.sorted())")
    for formatting: JSONEncoder.OutputFormatting in [[.sortedKeys], [.prettyPrinted]] {
      let encoder = JSONEncoder()
      encoder.outputFormatting = formatting
      let data = try encoder.encode(files)
      #expect(try JSONDecoder().decode(FileTableImage.self, from: data) == files)
      #expect(try FileTableImage.decodeJSON(Array(data), member: "files.json") == files)
    }
    // Sorted: "fd" is then never the last key, which the replacement below needs (unsorted,
    // it was now and then, and the test found no unknown key to refuse).
    let sorted = JSONEncoder()
    sorted.outputFormatting = .sortedKeys
    let text = String(decoding: try sorted.encode(files), as: UTF8.self)
    let added = text.replacingOccurrences(of: "\"fd\":3,", with: "\"fd\":3,\"later\":[1,{\"x\":2}],")
    #expect(try FileTableImage.decodeJSON(Array(added.utf8), member: "files.json", strict: false) == files)
    #expect(throws: BundleError.self) { try FileTableImage.decodeJSON(Array(added.utf8), member: "files.json") }
    let badKind = text.replacingOccurrences(of: "\"kind\":\"fifo\"", with: "\"kind\":\"teleporter\"")
    #expect(throws: BundleError.self) { try FileTableImage.decodeJSON(Array(badKind.utf8), member: "files.json") }
    let badSocket = text.replacingOccurrences(of: "\"family\":1", with: "\"family\":\"one\"")
    #expect(throws: BundleError.self) { try FileTableImage.decodeJSON(Array(badSocket.utf8), member: "files.json") }
  }
}
