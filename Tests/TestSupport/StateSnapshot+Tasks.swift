import CKShim
import Foundation
import Glibc

/// The per-task and per-thread facts of /proc/<pid>/status, stat and friends.
enum TaskFields {
  /// status lines of the process (shared by its threads or the leader's own).
  static let processStatus = [
    "Umask", "Uid", "Gid", "Groups", "NoNewPrivs", "Seccomp", "Seccomp_filters", "SigIgn", "SigCgt", "ShdPnd",
    "Threads", "VmLck", "Mems_allowed_list",
  ]
  /// status lines of each thread.
  static let threadStatus = [
    "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb", "SigBlk", "SigPnd", "Cpus_allowed_list",
    "Speculation_Store_Bypass", "SpeculationIndirectBranch",
  ]
  /// A thread's state as far as it is state: stopped, traced, zombie, or neither (R, S and
  /// D tell only where a thread froze, ``IgnoredState/status``).
  static func runState(_ line: String?) -> String {
    switch line?.first {
    case "T": "stopped"
    case "t": "traced"
    case "Z": "zombie"
    case "X": "dead"
    case nil: "(none)"
    default: "running or sleeping"
    }
  }

  /// Small per-process files read as they are.
  static let processFiles = [
    "oom_score_adj", "loginuid", "sessionid", "personality", "timens_offsets", "cgroup", "timerslack_ns",
  ]
}

extension StateSnapshot {
  mutating func readTasks(_ tasks: SnapshotTasks) {
    for task in tasks.tasks {
      let base = "/proc/\(task.hostPid)"
      let subject = task.name
      let status = ProcFile.status(base + "/status")
      for field in ["NSpid", "NStgid", "NSpgid", "NSsid"] { record(subject, field, tasks.innerLevels(status[field])) }
      if let stat = ProcStat.read(base + "/stat") {
        record(subject, "ppid", tasks.name(hostPid: stat.ppid))
        record(subject, "exit_signal", stat[38])
        record(subject, "exit_code", stat[52])
      }
      // A zombie is its pid, parent, group, session and exit status: nothing else of it is
      // ever seen again (``IgnoredState/zombies``).
      if task.isZombie {
        record(subject, "State", status["State"] ?? "(none)")
        continue
      }
      for field in TaskFields.processStatus { record(subject, field, status[field] ?? "(none)") }
      if let stat = ProcStat.read(base + "/stat") {
        record(subject, "tty_nr", stat[7])
        record(subject, "tpgid", Int32(stat[8]).map { $0 <= 0 ? "none" : tasks.name(hostPid: $0) } ?? stat[8])
      }
      for file in TaskFields.processFiles {
        record(
          subject, file,
          (ProcFile.read("\(base)/\(file)") ?? "(unreadable)").trimmingCharacters(in: .whitespacesAndNewlines))
      }
      record(subject, "limits", ProcFile.read(base + "/limits") ?? "(unreadable)")
      record(subject, "cwd", ProcFile.link(base + "/cwd"))
      record(subject, "root", ProcFile.link(base + "/root"))
      record(subject, "exe", ProcFile.link(base + "/exe"))
      record(subject, "cmdline", (ProcFile.read(base + "/cmdline") ?? "").replacingOccurrences(of: "\0", with: " "))
      for thread in task.threads {
        let threadBase = "\(base)/task/\(thread.host)"
        let threadSubject = "\(subject) thread \(thread.tid)"
        let threadStatus = ProcFile.status(threadBase + "/status")
        for field in TaskFields.threadStatus { record(threadSubject, field, threadStatus[field] ?? "(none)") }
        record(threadSubject, "State", TaskFields.runState(threadStatus["State"]))
        record(threadSubject, "comm", (ProcFile.read(threadBase + "/comm") ?? "").trimmingCharacters(in: .newlines))
        if let stat = ProcStat.read(threadBase + "/stat") {
          record(threadSubject, "nice", stat[19])
          record(threadSubject, "rt_priority", stat[40])
          record(threadSubject, "policy", stat[41])
        }
        record(threadSubject, "ioprio", String(ck_ioprio_get(thread.host)))
        // Audit's login uid is each thread's own (a thread inherits it when cloned).
        record(
          threadSubject, "loginuid",
          (ProcFile.read(threadBase + "/loginuid") ?? "(unreadable)").trimmingCharacters(in: .whitespacesAndNewlines))
      }
    }
    // Resources shared between processes (CLONE_VM, CLONE_FILES, CLONE_FS, CLONE_SIGHAND).
    for (index, kind) in ["vm", "files", "fs", "sighand"].enumerated() {
      var relation = Relation<Int>()
      var representatives: [SnapshotTask] = []
      for task in tasks.tasks where !task.isZombie {
        let same = representatives.firstIndex { ck_kcmp($0.hostPid, task.hostPid, Int32(index + 1)) == 0 }
        if same == nil { representatives.append(task) }
        relation.add(task.name, same ?? representatives.count - 1)
      }
      for (member, others) in relation.sharing { record(member, "shares \(kind) with", others) }
    }
  }
}
