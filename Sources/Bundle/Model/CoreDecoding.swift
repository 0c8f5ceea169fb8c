import Foundation

// core.json read by hand, as mm.json is (see MemoryImage.decodeJSON): JSONDecoder's generic
// machinery took most of a 500-process restore's decoding time. The keys are those the
// synthesized Codable conformances write; ModelEncodingTests holds both to the same result.

extension TaskCore {
  /// TaskCore from core.json. Long by nature: one local per field and one `case` per key,
  /// as JSONScanner decodes in one pass; splitting it would only scatter the key list.
  public static func decodeJSON(_ bytes: [UInt8], member: String, strict: Bool = true) throws(BundleError) -> TaskCore {
    try JSONScanner.scan(bytes, member: member, strict: strict) { scanner throws(BundleError) in
      var threads: [ThreadCore]?
      var signalActions: [SignalAction]?
      var sharedPendingSignals: [Data]?
      var itimers: [IntervalTimer]?
      var posixTimers: [PosixTimerImage]?
      var personality: UInt64?
      var resourceLimits: [ResourceLimitImage]?
      var umask: UInt32?
      var cwd: String?
      var root: String?
      var comm: String?
      var credentials: Credentials?
      var parentDeathSignal: Int32?
      var dumpable: Int32?
      var childSubreaper: Bool?
      var scheduling: SchedulingImage?
      var seccompFilters: [SeccompFilterImage]?
      var controls: ProcessControls?
      var oomScoreAdjust: Int32?
      var loginUID: UInt32?
      var abi: TaskABI?
      try scanner.object { key, scanner throws(BundleError) in
        switch key {
        case "controls":
          if !scanner.null() {
            let fields = try scanner.integerFields(
              ["thpDisabled", "timerSlack", "memoryDenyWriteExecute", "memoryMerge"], in: "the process controls")
            controls = ProcessControls(
              thpDisabled: try fields.take("thpDisabled"), timerSlack: try fields.take("timerSlack"),
              memoryDenyWriteExecute: try fields.take("memoryDenyWriteExecute"))
            controls?.memoryMerge = try fields.optional("memoryMerge")
          }
        case "seccompFilters":
          if !scanner.null() { seccompFilters = try SeccompFilterImage.list(scanning: &scanner) }
        case "scheduling": scheduling = scanner.null() ? nil : try SchedulingImage(scanning: &scanner)
        case "threads": threads = try scanner.list { scanner throws(BundleError) in try ThreadCore(scanning: &scanner) }
        case "signalActions":
          signalActions = try scanner.list { scanner throws(BundleError) in
            let fields = try scanner.integerFields(
              ["signal", "handler", "flags", "restorer", "mask"], in: "a signal action")
            return SignalAction(
              signal: try fields.take("signal"), handler: try fields.take("handler"), flags: try fields.take("flags"),
              restorer: try fields.take("restorer"), mask: try fields.take("mask"))
          }
        case "sharedPendingSignals":
          sharedPendingSignals = try scanner.list { scanner throws(BundleError) in try scanner.base64() }
        case "itimers":
          itimers = try scanner.list { scanner throws(BundleError) in
            let fields = try scanner.integerFields(
              ["which", "intervalMicroseconds", "valueMicroseconds"], in: "an interval timer")
            return IntervalTimer(
              which: try fields.take("which"), intervalMicroseconds: try fields.take("intervalMicroseconds"),
              valueMicroseconds: try fields.take("valueMicroseconds"))
          }
        case "posixTimers":
          posixTimers =
            scanner.null()
            ? nil
            : try scanner.list { scanner throws(BundleError) in
              let fields = try scanner.integerFields(
                [
                  "id", "clockID", "notify", "signal", "sigevValue", "targetThread", "intervalNanoseconds",
                  "valueNanoseconds",
                ], in: "a POSIX timer")
              return PosixTimerImage(
                id: try fields.take("id"), clockID: try fields.take("clockID"), notify: try fields.take("notify"),
                signal: try fields.take("signal"), sigevValue: try fields.take("sigevValue"),
                targetThread: try fields.optional("targetThread"),
                intervalNanoseconds: try fields.take("intervalNanoseconds"),
                valueNanoseconds: try fields.take("valueNanoseconds"))
            }
        case "personality": personality = try scanner.integer()
        case "resourceLimits":
          resourceLimits = try scanner.list { scanner throws(BundleError) in
            let fields = try scanner.integerFields(["resource", "soft", "hard"], in: "a resource limit")
            return ResourceLimitImage(
              resource: try fields.take("resource"), soft: try fields.take("soft"), hard: try fields.take("hard"))
          }
        case "umask": umask = try scanner.integer()
        case "cwd": cwd = try scanner.string()
        case "root": root = try scanner.string()
        case "comm": comm = try scanner.string()
        case "credentials": credentials = try Credentials(scanning: &scanner)
        case "parentDeathSignal": parentDeathSignal = try scanner.integer()
        case "dumpable": dumpable = try scanner.integer()
        case "childSubreaper": childSubreaper = try scanner.bool()
        case "oomScoreAdjust": oomScoreAdjust = scanner.null() ? nil : try scanner.integer()
        case "loginUID": loginUID = scanner.null() ? nil : try scanner.integer()
        case "abi":
          if !scanner.null() {
            let name = try scanner.string()
            guard let value = TaskABI(rawValue: name) else {
              throw scanner.invalid("an unknown abi \(name) in the core")
            }
            abi = value
          }
        default: try scanner.unknown(key, in: "the core")
        }
      }
      func missing(_ name: String) -> BundleError { scanner.missing(name, in: "the core") }
      guard let threads else { throw missing("threads") }
      guard let signalActions else { throw missing("signalActions") }
      guard let sharedPendingSignals else { throw missing("sharedPendingSignals") }
      guard let itimers else { throw missing("itimers") }
      guard let personality else { throw missing("personality") }
      guard let resourceLimits else { throw missing("resourceLimits") }
      guard let umask else { throw missing("umask") }
      guard let cwd else { throw missing("cwd") }
      guard let root else { throw missing("root") }
      guard let comm else { throw missing("comm") }
      guard let credentials else { throw missing("credentials") }
      guard let parentDeathSignal else { throw missing("parentDeathSignal") }
      guard let dumpable else { throw missing("dumpable") }
      guard let childSubreaper else { throw missing("childSubreaper") }
      var core = TaskCore(
        threads: threads, signalActions: signalActions, sharedPendingSignals: sharedPendingSignals, itimers: itimers,
        posixTimers: posixTimers, personality: personality, resourceLimits: resourceLimits, umask: umask, cwd: cwd,
        root: root, comm: comm, credentials: credentials, parentDeathSignal: parentDeathSignal, dumpable: dumpable,
        childSubreaper: childSubreaper)
      core.scheduling = scheduling
      core.seccompFilters = seccompFilters
      core.controls = controls
      core.oomScoreAdjust = oomScoreAdjust
      core.loginUID = loginUID
      core.abi = abi
      return core
    }
  }
}

extension ThreadCore {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    var tid: Int32?
    var registers: GeneralRegisters?
    var xstate: Data?
    var xstateFeatures: UInt64?
    var blockedSignals: UInt64?
    var clearChildTid: UInt64?
    var pendingSignals: [Data]?
    var rseq: RseqRegistration?
    var altStack: AltStack?
    var name: String?
    var cpus: [Int]?
    var robustList: UInt64?
    var scheduling: SchedulingImage?
    var ioPriority: UInt32?
    var timerSlack: UInt64?
    var seccompFilters: [SeccompFilterImage]?
    var tlsEntries: [TLSEntry]?
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "tid": tid = try scanner.integer()
      case "scheduling": scheduling = scanner.null() ? nil : try SchedulingImage(scanning: &scanner)
      case "ioPriority": ioPriority = scanner.null() ? nil : try scanner.integer()
      case "timerSlack": timerSlack = scanner.null() ? nil : try scanner.integer()
      case "name": name = scanner.null() ? nil : try scanner.string()
      case "cpus":
        cpus = scanner.null() ? nil : try scanner.list { scanner throws(BundleError) in try scanner.integer() }
      case "robustList": robustList = scanner.null() ? nil : try scanner.integer()
      case "registers": registers = try GeneralRegisters(scanning: &scanner)
      case "xstate": xstate = try scanner.base64()
      case "xstateFeatures": xstateFeatures = try scanner.integer()
      case "blockedSignals": blockedSignals = try scanner.integer()
      case "pendingSignals": pendingSignals = try scanner.list { scanner throws(BundleError) in try scanner.base64() }
      case "rseq":
        if !scanner.null() {
          let fields = try scanner.integerFields(["address", "size", "signature"], in: "an rseq registration")
          rseq = RseqRegistration(
            address: try fields.take("address"), size: try fields.take("size"), signature: try fields.take("signature"))
        }
      case "altStack":
        if !scanner.null() {
          let fields = try scanner.integerFields(["base", "flags", "size"], in: "an alternate signal stack")
          altStack = AltStack(
            base: try fields.take("base"), flags: try fields.take("flags"), size: try fields.take("size"))
        }
      case "clearChildTid": clearChildTid = try scanner.integer()
      case "seccompFilters": seccompFilters = scanner.null() ? nil : try SeccompFilterImage.list(scanning: &scanner)
      case "tlsEntries":
        tlsEntries =
          scanner.null()
          ? nil
          : try scanner.list { scanner throws(BundleError) in
            let fields = try scanner.integerFields(["entry", "base", "limit", "flags"], in: "a TLS entry")
            return TLSEntry(
              entry: try fields.take("entry"), base: try fields.take("base"), limit: try fields.take("limit"),
              flags: try fields.take("flags"))
          }
      default: try scanner.unknown(key, in: "a thread")
      }
    }
    func missing(_ name: String) -> BundleError { scanner.missing(name, in: "a thread") }
    guard let tid else { throw missing("tid") }
    guard let registers else { throw missing("registers") }
    guard let xstate else { throw missing("xstate") }
    guard let xstateFeatures else { throw missing("xstateFeatures") }
    guard let blockedSignals else { throw missing("blockedSignals") }
    guard let pendingSignals else { throw missing("pendingSignals") }
    guard let clearChildTid else { throw missing("clearChildTid") }
    self.init(
      tid: tid, registers: registers, xstate: xstate, xstateFeatures: xstateFeatures, blockedSignals: blockedSignals,
      pendingSignals: pendingSignals, rseq: rseq, altStack: altStack, clearChildTid: clearChildTid)
    self.name = name
    self.cpus = cpus
    self.robustList = robustList
    self.scheduling = scheduling
    self.ioPriority = ioPriority
    self.timerSlack = timerSlack
    self.seccompFilters = seccompFilters
    self.tlsEntries = tlsEntries
  }
}

extension SchedulingImage {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    let fields = try scanner.integerFields(["nice", "policy", "realtimePriority"], in: "the scheduling")
    self.init(
      nice: try fields.take("nice"), policy: try fields.take("policy"),
      realtimePriority: try fields.take("realtimePriority"))
  }
}

extension GeneralRegisters {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    let r = try scanner.integerFields(
      [
        "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi", "rdi",
        "origRax",
        "rip", "cs", "eflags", "rsp", "ss", "fsBase", "gsBase", "ds", "es", "fs", "gs",
      ], in: "the registers")
    self.init(
      r15: try r.take("r15"), r14: try r.take("r14"), r13: try r.take("r13"), r12: try r.take("r12"),
      rbp: try r.take("rbp"), rbx: try r.take("rbx"), r11: try r.take("r11"), r10: try r.take("r10"),
      r9: try r.take("r9"), r8: try r.take("r8"), rax: try r.take("rax"), rcx: try r.take("rcx"),
      rdx: try r.take("rdx"), rsi: try r.take("rsi"), rdi: try r.take("rdi"), origRax: try r.take("origRax"),
      rip: try r.take("rip"), cs: try r.take("cs"), eflags: try r.take("eflags"), rsp: try r.take("rsp"),
      ss: try r.take("ss"), fsBase: try r.take("fsBase"), gsBase: try r.take("gsBase"), ds: try r.take("ds"),
      es: try r.take("es"), fs: try r.take("fs"), gs: try r.take("gs"))
  }
}

extension Credentials {
  init(scanning scanner: inout JSONScanner) throws(BundleError) {
    var uids: [UInt32]?
    var gids: [UInt32]?
    var groups: [UInt32]?
    var capInheritable: UInt64?
    var capPermitted: UInt64?
    var capEffective: UInt64?
    var capBounding: UInt64?
    var capAmbient: UInt64?
    var capabilitiesText: String?
    var noNewPrivileges: Bool?
    var securebits: UInt32?
    try scanner.object { key, scanner throws(BundleError) in
      switch key {
      case "uids": uids = try scanner.list { scanner throws(BundleError) in try scanner.integer() }
      case "gids": gids = try scanner.list { scanner throws(BundleError) in try scanner.integer() }
      case "groups": groups = try scanner.list { scanner throws(BundleError) in try scanner.integer() }
      case "capInheritable": capInheritable = try scanner.integer()
      case "capPermitted": capPermitted = try scanner.integer()
      case "capEffective": capEffective = try scanner.integer()
      case "capBounding": capBounding = try scanner.integer()
      case "capAmbient": capAmbient = try scanner.integer()
      case "capabilitiesText": capabilitiesText = try scanner.string()
      case "noNewPrivileges": noNewPrivileges = try scanner.bool()
      case "securebits": securebits = try scanner.integer()
      default: try scanner.unknown(key, in: "the credentials")
      }
    }
    func missing(_ name: String) -> BundleError { scanner.missing(name, in: "the credentials") }
    guard let uids else { throw missing("uids") }
    guard let gids else { throw missing("gids") }
    guard let groups else { throw missing("groups") }
    guard let capInheritable else { throw missing("capInheritable") }
    guard let capPermitted else { throw missing("capPermitted") }
    guard let capEffective else { throw missing("capEffective") }
    guard let capBounding else { throw missing("capBounding") }
    guard let capAmbient else { throw missing("capAmbient") }
    guard let capabilitiesText else { throw missing("capabilitiesText") }
    guard let noNewPrivileges else { throw missing("noNewPrivileges") }
    guard let securebits else { throw missing("securebits") }
    self.init(
      uids: uids, gids: gids, groups: groups, capInheritable: capInheritable, capPermitted: capPermitted,
      capEffective: capEffective, capBounding: capBounding, capAmbient: capAmbient, capabilitiesText: capabilitiesText,
      noNewPrivileges: noNewPrivileges, securebits: securebits)
  }
}

extension SeccompFilterImage {
  /// A list of filters, oldest first.
  static func list(scanning scanner: inout JSONScanner) throws(BundleError) -> [SeccompFilterImage] {
    try scanner.list { scanner throws(BundleError) in
      var flags: UInt64?
      var program: Data?
      try scanner.object { key, scanner throws(BundleError) in
        switch key {
        case "flags": flags = try scanner.integer()
        case "program": program = try scanner.base64()
        default: try scanner.unknown(key, in: "a seccomp filter")
        }
      }
      guard let flags else { throw scanner.missing("flags", in: "a seccomp filter") }
      guard let program else { throw scanner.missing("program", in: "a seccomp filter") }
      return SeccompFilterImage(flags: flags, program: program)
    }
  }
}
