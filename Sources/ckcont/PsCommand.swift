import ArgumentParser
import Cgroup
import Linux

/// `ckcont ps <cgroup>`.
struct Ps: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "ps",
    abstract: "List the tasks of a cgroup subtree as a process tree.",
    discussion:
      "Columns: pid, parent pid, thread count, state (as in ps), the cgroup relative to <cgroup>, and the command.")

  @OptionGroup var target: CgroupArgument
  @OptionGroup var global: GlobalOptions

  func run() throws {
    let cgroup = try target.resolve()
    let tasks = try TaskTree.read(cgroup)
    if global.json {
      struct Output: Encodable {
        var cgroup: String
        var version: String
        var tasks: [TaskEntry]
      }
      try printJSON(Output(cgroup: cgroup.path, version: cgroup.version.rawValue, tasks: tasks))
      return
    }
    Terminal.out(Self.render(tasks))
  }

  /// The table, with the command indented by tree depth.
  static func render(_ tasks: [TaskEntry]) -> String {
    let cgroupWidth = max(6, tasks.map(\.cgroup.count).max() ?? 0)
    var lines = [
      "\(pad("PID", 7)) \(pad("PPID", 7)) \(pad("THR", 4)) S \(pad("CGROUP", cgroupWidth)) COMMAND"
    ]
    for task in tasks {
      let indent = String(repeating: "  ", count: task.depth) + (task.depth > 0 ? "\\_ " : "")
      let command = task.command.isEmpty ? "[\(task.comm)]" : task.command
      lines.append(
        "\(pad(String(task.pid), 7)) \(pad(String(task.ppid), 7)) \(pad(String(task.threads.count), 4)) "
          + "\(task.state) \(pad(task.cgroup, cgroupWidth)) \(indent)\(command)")
    }
    return lines.joined(separator: "\n")
  }

  static func pad(_ text: String, _ width: Int) -> String {
    text.count >= width ? text : text + String(repeating: " ", count: width - text.count)
  }
}
