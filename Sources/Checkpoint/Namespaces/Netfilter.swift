import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Netlink

/// The packet filter rules of the container's own network namespace (issues 16 and 18):
/// nftables' tables through libnftables, and iptables' through the `*-save`/`*-restore`
/// tools of each flavour, run in the namespace (a child spawned from a thread that joined
/// it lives in it). The tables of iptables-nft (and ip6tables, ebtables, arptables) are
/// nftables tables too, but nft prints them without their comments and cannot read back
/// the matches it shows as `xt match`: they are saved by their tool, which reads its own
/// text back exactly. Legacy x_tables are
/// not nftables at all. Every text is read back by the kernel at dump (nft's dry run), so
/// that what cannot be made again is refused while the container runs.
enum Netfilter {
  /// Bounds a bundle's texts (a large ruleset is a few MiB).
  static let maximumText = 64 << 20

  // MARK: Capture

  /// The rules of the network namespace of process `pid`; nil when it has none.
  static func capture(pid: Int32) throws -> NetfilterImage? {
    if !(names(pid, "arp_tables_names").isEmpty) {
      throw refuse("legacy arptables rules", "move them to nftables (arptables-nft) before the checkpoint")
    }
    let legacy: [(IptablesSave.Tool, String)] = [
      (.iptablesLegacy, "ip_tables_names"), (.ip6tablesLegacy, "ip6_tables_names"),
    ]
    let image = try NamespaceThread.run(in: "net", of: pid) { () throws -> NetfilterImage in
      let nft = try Nftables()
      let tables = try nft.tables()
      var saves: [IptablesSave] = []
      for tool in IptablesSave.Tool.allCases {
        guard let made = tool.nftTables else { continue }
        let its = tables.filter { $0.family == made.family && made.names.contains($0.name) }
        guard !its.isEmpty else { continue }
        let text = try runTool(tool, "save", tool.keepsCounters ? ["-c"] : [])
        let chains = try its.flatMap { table in try nft.chains(of: table).map { "\(table.family) \(table.name) \($0)" }
        }
        saves.append(IptablesSave(tool: tool, text: text, chains: chains))
      }
      for (tool, file) in legacy where !names(pid, file).isEmpty {
        saves.append(IptablesSave(tool: tool, text: try runTool(tool, "save", ["-c"])))
      }
      // The network lock's table is the dump's, not the container's.
      let own = tables.filter { $0.name != NetworkLock.table }.filter { table in
        !IptablesSave.Tool.allCases.contains {
          $0.nftTables.map { $0.family == table.family && $0.names.contains(table.name) } ?? false
        }
      }
      var text = ""
      for table in own {
        let listed = try nft.run("list table \(table.family) \(table.name)")
        if listed.contains("\n\tflags owner") || listed.contains(" owner\n") {
          throw refuse(
            "the nftables table \(table.family) \(table.name), owned by a process's netlink socket (flags owner)",
            "it goes with that socket; let its owner make it again after the restore")
        }
        text += listed
      }
      if !text.isEmpty {
        do {
          try nft.run(text, dryRun: true)
        } catch {
          throw refuse(
            "nftables rules nft cannot read back (\(error))", "iptables-nft's tables are kept; others must be nft's own"
          )
        }
      }
      return NetfilterImage(nftables: text.isEmpty ? nil : text, iptables: saves)
    }
    return image.nftables == nil && image.iptables.isEmpty ? nil : image
  }

  /// The x_tables of a legacy flavour the namespace of `pid` has instantiated
  /// (`/proc/<pid>/net/ip_tables_names`: shown for the process's namespace).
  private static func names(_ pid: Int32, _ file: String) -> [Substring] {
    (try? PseudoFile.read("/proc/\(pid)/net/\(file)"))?.split(separator: "\n") ?? []
  }

  private static func refuse(_ what: String, _ hint: String) -> CKError {
    CKError(
      .failed, "the container's network namespace has \(what), which ckcont cannot checkpoint", hint: hint)
  }

  // MARK: Restore

  /// Loads `image` in the network namespace of process `pid` (new, its links made): nft's
  /// tables, then each iptables flavour's with its counters.
  static func restore(_ image: NetfilterImage, pid: Int32) throws {
    try NamespaceThread.run(in: "net", of: pid) {
      if let text = image.nftables {
        do {
          try Nftables().run(text)
        } catch {
          throw CKError(.failed, "cannot load the container's nftables rules: \(error)")
        }
      }
      for save in image.iptables {
        let input = try OwnedDescriptor("memfd_create", "\(save.tool.rawValue) rules") {
          ck_memfd_create("ckcont-rules", 0)
        }
        try Array(save.text.utf8).withUnsafeBytes { try writeAll(input.raw, $0, "the \(save.tool.rawValue) rules") }
        // The tool reads its standard input (ebtables' and arptables' take no file), which
        // shares this offset.
        lseek(input.raw, 0, SEEK_SET)
        _ = try runTool(save.tool, "restore", save.tool.keepsCounters ? ["-c"] : [], input: input.raw)
        if let chains = save.chains { try deleteChainsNotIn(Set(chains), madeBy: save.tool) }
      }
    }
  }

  /// Deletes the chains `tool`'s restore made that nftables did not hold (empty built-in
  /// ones: the tool makes them all, while the container's had only those its rules used).
  private static func deleteChainsNotIn(_ kept: Set<String>, madeBy tool: IptablesSave.Tool) throws {
    guard let made = tool.nftTables else { return }
    let nft = try Nftables()
    for table in try nft.tables() where table.family == made.family && made.names.contains(table.name) {
      for chain in try nft.chains(of: table) where !kept.contains("\(table.family) \(table.name) \(chain)") {
        try nft.run("delete chain \(table.family) \(table.name) \(chain)")
      }
    }
  }

  /// Runs `<tool>-<action> arguments...` here, its output returned; a failure throws with
  /// the tool's first line of complaint.
  private static func runTool(
    _ tool: IptablesSave.Tool, _ action: String, _ arguments: [String], input: Int32 = -1
  ) throws -> String {
    let name = "\(tool.rawValue)-\(action)"
    let candidates = ["/usr/sbin", "/sbin", "/usr/bin"].map { directory -> String in directory + "/" + name }
    guard let path = candidates.first(where: { access($0, X_OK) == 0 }) else {
      throw CKError(
        .failed, "the container has \(tool.rawValue) rules, but \(name) is not here", hint: "install iptables")
    }
    let output = try OwnedDescriptor("memfd_create", name) { ck_memfd_create("ckcont-out", 0) }
    let errors = try OwnedDescriptor("memfd_create", name) { ck_memfd_create("ckcont-err", 0) }
    let status = try ActionScript.spawnAndWait(
      [path] + arguments, environment: ["PATH": "/usr/sbin:/usr/bin:/sbin:/bin"], input: input, output: output.raw,
      errors: errors.raw)
    // Through /proc: a new open file description, read from the start.
    let text = try PseudoFile.read("/proc/self/fd/\(output.raw)")
    guard status == .exited(0) else {
      let complaint = try PseudoFile.read("/proc/self/fd/\(errors.raw)").split(separator: "\n").first
      throw CKError(.failed, "\(name) failed (\(status)): \(complaint ?? "no message")")
    }
    guard text.utf8.count <= maximumText else { throw CKError(.failed, "\(name) printed more than 64 MiB of rules") }
    return text
  }

  // MARK: Validation

  /// Texts of a bounded size without NULs (nft and iptables read them as C strings).
  static func validate(_ image: NetfilterImage) throws(CKError) {
    let texts = (image.nftables.map { [$0] } ?? []) + image.iptables.map(\.text)
    guard image.iptables.count <= IptablesSave.Tool.allCases.count,
      Set(image.iptables.map(\.tool)).count == image.iptables.count,
      texts.allSatisfy({ $0.utf8.count <= maximumText && !$0.contains("\0") }),
      // Only compared with what nft lists, never run.
      image.iptables.allSatisfy({ ($0.chains?.count ?? 0) <= 4096 })
    else { throw CKError(.badInput, "the bundle is inconsistent: network: its netfilter rules are malformed") }
  }

  /// For `inspect`: what kinds of rules there are.
  static func describe(_ image: NetfilterImage) -> String {
    let tables = image.nftables.map { text in
      text.split(separator: "\n").filter { $0.hasPrefix("table ") }.count
    }
    return
      ([tables.map { "\($0) nftables table(s)" }].compactMap { $0 } + image.iptables.map { "\($0.tool.rawValue) rules" })
      .joined(separator: ", ")
  }
}
