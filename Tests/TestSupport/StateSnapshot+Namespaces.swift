import Foundation
import Glibc

extension StateSnapshot {
  static let namespaceKinds = [
    "cgroup", "ipc", "mnt", "net", "pid", "pid_for_children", "time", "time_for_children", "user", "uts",
  ]

  /// Which tasks share which namespaces (each named `host` or by the first task in it), the
  /// host and domain names of each UTS namespace, and the mounts of each mount namespace.
  mutating func readNamespaces(_ tasks: SnapshotTasks) {
    let live = tasks.tasks.filter { !$0.isZombie }
    // Namespace link -> its name: the host's own first, then the first task holding it.
    var names: [String: String] = [:]
    for kind in Self.namespaceKinds { names[ProcFile.link("/proc/self/ns/\(kind)")] = "host" }
    for task in live {
      for kind in Self.namespaceKinds where !kind.hasSuffix("_for_children") {
        let link = ProcFile.link("/proc/\(task.hostPid)/ns/\(kind)")
        if names[link] == nil { names[link] = "of \(task.name)" }
      }
    }
    var uts: [String: SnapshotTask] = [:]
    var ipc: [String: SnapshotTask] = [:]
    var mounts: [String: SnapshotTask] = [:]
    var networks: [String: SnapshotTask] = [:]
    for task in live {
      for kind in Self.namespaceKinds {
        let link = ProcFile.link("/proc/\(task.hostPid)/ns/\(kind)")
        record(task.name, "ns \(kind)", names[link] ?? (link.hasPrefix("(") ? link : "new"))
        if kind == "uts", names[link] != "host", uts[link] == nil { uts[link] = task }
        if kind == "ipc", names[link] != "host", ipc[link] == nil { ipc[link] = task }
        if kind == "mnt", mounts[link] == nil { mounts[link] = task }
        if kind == "net", names[link] != "host", networks[link] == nil { networks[link] = task }
      }
    }
    for task in uts.values {
      let output = run([
        "/usr/bin/nsenter", "-t", "\(task.hostPid)", "-u", "cat", "/proc/sys/kernel/hostname",
        "/proc/sys/kernel/domainname",
      ])
      record("uts ns of \(task.name)", "names", output.stdout.split(separator: "\n").joined(separator: " "))
    }
    for task in ipc.values { readSysV(task) }
    for task in networks.values { readNetwork(task) }
    readMounts(mounts.values.sorted { $0.pid < $1.pid })
  }

  /// The links (with every detail: a bridge's and a port's settings), addresses and routes
  /// of a network namespace of the container's own, as `ip` shows them inside, and the
  /// bridges' forwarding entries set by hand; indexes (which a new namespace gives anew to a
  /// peer outside), lifetimes, timers and duplicate detection's passing `tentative` left
  /// out.
  mutating func readNetwork(_ task: SnapshotTask) {
    let views = [
      ("links", ["-d", "-o", "link"]), ("addresses", ["-o", "addr"]), ("routes", ["route", "show", "table", "all"]),
      ("rules", ["rule", "show"]), ("IPv6 rules", ["-6", "rule", "show"]),
      ("neighbours", ["neigh", "show", "nud", "permanent"]),
    ]
    for (what, arguments) in views {
      let output = run(["/usr/bin/nsenter", "-t", "\(task.hostPid)", "-n", "/sbin/ip"] + arguments)
      let lines = output.stdout.split(separator: "\n").map { line in
        line.replacing(#/^\d+: /#, with: "").replacing(#/@(if\d+|NONE)/#, with: "")
          .replacing(#/ link-netnsid \d+/#, with: "").replacing(#/\\? +valid_lft \S+ preferred_lft \S+/#, with: "")
          .replacing(" tentative", with: "").replacing(#/[a-z_]+_timer +[0-9.]+/#, with: "")
          .replacing(#/ +/#, with: " ")
      }
      record("net ns of \(task.name)", what, lines.sorted().joined(separator: " | "))
    }
    let entries = run(["/usr/bin/nsenter", "-t", "\(task.hostPid)", "-n", "/sbin/bridge", "fdb", "show"]).stdout
      .split(separator: "\n").filter {
        $0.contains(" master ") && ($0.hasSuffix("static") || $0.hasSuffix("permanent"))
      }
    record("net ns of \(task.name)", "forwarding entries", entries.sorted().joined(separator: " | "))
    readNetfilter(task)
  }

  /// The packet filter rules inside, in order: nft's view of every table (stateless:
  /// counters move with traffic) and each iptables flavour's (`*-save`, which shows
  /// iptables-nft's comments and matches nft cannot print), less the dated comment lines
  /// and counters.
  mutating func readNetfilter(_ task: SnapshotTask) {
    let views = [
      ("nftables", ["/usr/sbin/nft", "-s", "list", "ruleset"]), ("iptables-nft", ["/usr/sbin/iptables-nft-save"]),
      ("ip6tables-nft", ["/usr/sbin/ip6tables-nft-save"]), ("ebtables-nft", ["/usr/sbin/ebtables-nft-save"]),
      ("arptables-nft", ["/usr/sbin/arptables-nft-save"]), ("iptables-legacy", ["/usr/sbin/iptables-legacy-save"]),
      ("ip6tables-legacy", ["/usr/sbin/ip6tables-legacy-save"]),
    ]
    for (what, arguments) in views {
      let output = run(["/usr/bin/nsenter", "-t", "\(task.hostPid)", "-n"] + arguments)
      let lines = output.stdout.split(separator: "\n").filter { !$0.hasPrefix("#") }.map {
        $0.replacing(#/ \[\d+:\d+\]/#, with: "").replacing(#/ expires [0-9a-z]+/#, with: "")
          .trimmingCharacters(in: .whitespaces)
      }
      record("net ns of \(task.name)", what, output.status == 0 ? lines.joined(separator: " | ") : "fails")
    }
  }

  /// The SysV objects of an IPC namespace of the container's own, from /proc/sysvipc read
  /// inside it: ids, keys, modes, owners, sizes, attach counts, queued messages and bytes,
  /// and each semaphore's value (`ipcs -s -i`). Times and pids are left out (time, and pids
  /// of the reader's pid namespace).
  mutating func readSysV(_ task: SnapshotTask) {
    let kept: [String: [String]] = [
      "shm": ["key", "shmid", "perms", "size", "nattch", "uid", "gid", "cuid", "cgid"],
      "sem": ["key", "semid", "perms", "nsems", "uid", "gid", "cuid", "cgid"],
      "msg": ["key", "msqid", "perms", "cbytes", "qnum", "uid", "gid", "cuid", "cgid"],
    ]
    for (kind, columns) in kept {
      let output = run(["/usr/bin/nsenter", "-t", "\(task.hostPid)", "-i", "cat", "/proc/sysvipc/\(kind)"])
      let lines = output.stdout.split(separator: "\n").map { $0.split(separator: " ").map(String.init) }
      guard let header = lines.first else { continue }
      for row in lines.dropFirst() {
        let fields = Dictionary(zip(header, row), uniquingKeysWith: { first, _ in first })
        let id = fields[kind == "shm" ? "shmid" : kind == "sem" ? "semid" : "msqid"] ?? "?"
        let subject = "ipc ns of \(task.name) \(kind) \(id)"
        record(subject, "object", columns.map { "\($0) \(fields[$0] ?? "?")" }.joined(separator: " "))
        if kind == "sem" {
          let values = run(["/usr/bin/nsenter", "-t", "\(task.hostPid)", "-i", "ipcs", "-s", "-i", id]).stdout
          // "semnum value ncount zcount pid": the value of each.
          let rows = values.split(separator: "\n").map { $0.split(separator: " ") }.filter {
            $0.count >= 5 && Int($0[0]) != nil
          }
          record(subject, "values", rows.map { String($0[1]) }.joined(separator: " "))
        }
      }
    }
  }

  /// Each mount of each mount namespace, by mount point (relative to the task's root), with
  /// its parent's mount point, file system, source, root and options, and its propagation
  /// as relations between the container's own mounts: the host's mounts and peer groups
  /// are left out (``IgnoredState/mounts``).
  mutating func readMounts(_ tasks: [SnapshotTask]) {
    var hostGroups: Set<String> = []
    // The host's mounts as copied into a namespace (same mount point, device and root): the
    // host's state, not the container's (``IgnoredState/mounts``).
    var hostMounts: Set<String> = []
    for line in (ProcFile.read("/proc/self/mountinfo") ?? "").split(separator: "\n") {
      let words = line.split(separator: " ")
      for word in words where word.hasPrefix("shared:") { hostGroups.insert(String(word.dropFirst(7))) }
      if words.count > 4 { hostMounts.insert("\(words[4]) \(words[2]) \(words[3])") }
    }
    func isHosts(_ words: [String]) -> Bool {
      hostMounts.contains("\(words[4]) \(words[2]) \(words[3])") || HostMounts.isTests(words[4])
    }
    // A peer group is named by its first member (in namespace and file order).
    var groupNames: [String: String] = [:]
    for task in tasks {
      var seen: [String: Int] = [:]
      for line in (ProcFile.read("/proc/\(task.hostPid)/mountinfo") ?? "").split(separator: "\n") {
        let words = line.split(separator: " ").map(String.init)
        guard words.count >= 10, let dash = words.firstIndex(of: "-"), !isHosts(words) else { continue }
        seen[words[4], default: 0] += 1
        for field in words[6..<dash] where field.hasPrefix("shared:") && groupNames[String(field.dropFirst(7))] == nil {
          groupNames[String(field.dropFirst(7))] =
            "mounts of \(task.name) \(words[4])" + (seen[words[4]]! > 1 ? " #\(seen[words[4]]!)" : "")
        }
      }
    }
    for task in tasks {
      let namespace = "mounts of \(task.name)"
      var pointOf: [String: String] = [:]
      var seen: [String: Int] = [:]
      let lines = (ProcFile.read("/proc/\(task.hostPid)/mountinfo") ?? "").split(separator: "\n")
      for line in lines {
        let words = line.split(separator: " ").map(String.init)
        guard words.count >= 10, let dash = words.firstIndex(of: "-") else { continue }
        pointOf[words[0]] = words[4]
        if isHosts(words) { continue }
        let point = words[4]
        seen[point, default: 0] += 1
        let subject = "\(namespace) \(point)" + (seen[point]! > 1 ? " #\(seen[point]!)" : "")
        var propagation: [String] = []
        for field in words[6..<dash] {
          let parts = field.split(separator: ":").map(String.init)
          if parts.count == 2, hostGroups.contains(parts[1]) { continue }
          switch parts[0] {
          case "shared":
            propagation.append("peer group of \(groupNames[parts[1]] ?? "?")")
          case "master":
            propagation.append("slave of \(groupNames[parts[1]] ?? "a group not seen")")
          default:
            propagation.append(field)
          }
        }
        record(
          subject, "mount",
          "parent \(pointOf[words[1]] ?? "(outside)") root \(words[3]) options \(words[5]) type \(words[dash + 1]) "
            + "source \(words[dash + 2]) super \(words.count > dash + 3 ? words[dash + 3] : "")")
        record(subject, "propagation", propagation.isEmpty ? "private" : propagation.joined(separator: " "))
      }
    }
  }
}
