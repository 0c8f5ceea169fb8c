import CLibnftables
import Linux

/// nftables through libnftables, in the network namespace of the calling thread: a context
/// opens its netlink socket when made, so make one on the thread that joined the namespace.
/// Text in, text out: nft's own syntax is what it reads back exactly (counters, set
/// elements with their timeouts, maps), which its JSON does not promise for every object.
public final class Nftables {
  private let context: OpaquePointer

  /// A context printing what `nft list` prints (`stateless` leaves out counters and quotas).
  public init(stateless: Bool = false) throws {
    guard let context = nft_ctx_new(UInt32(NFT_CTX_DEFAULT)) else {
      throw CKError(.failed, "libnftables: cannot make a context (no netlink socket?)")
    }
    self.context = context
    nft_ctx_buffer_output(context)
    nft_ctx_buffer_error(context)
    if stateless { nft_ctx_output_set_flags(context, UInt32(NFT_CTX_OUTPUT_STATELESS)) }
  }

  deinit { nft_ctx_free(context) }

  /// Runs `commands` (nft's syntax, several lines) and returns what it printed; a refusal
  /// throws nft's own message. `dryRun` has the kernel check the batch and drop it.
  @discardableResult
  public func run(_ commands: String, dryRun: Bool = false) throws -> String {
    nft_ctx_set_dry_run(context, dryRun)
    let status = nft_run_cmd_from_buffer(context, commands)
    let output = nft_ctx_get_output_buffer(context).map { String(cString: $0) } ?? ""
    guard status == 0 else {
      let message = nft_ctx_get_error_buffer(context).map { String(cString: $0) } ?? ""
      throw CKError(.failed, "nft: " + Self.firstLine(message))
    }
    return output
  }

  /// The tables of the namespace, in nft's order.
  public func tables() throws -> [Table] {
    try run("list tables").split(separator: "\n").compactMap { line in
      let words = line.split(separator: " ")
      guard words.count == 3, words[0] == "table" else { return nil }
      return Table(family: String(words[1]), name: String(words[2]))
    }
  }

  /// The chains of `table`, by name.
  public func chains(of table: Table) throws -> [String] {
    try run("list table \(table.family) \(table.name)").split(separator: "\n").compactMap { line in
      let words = line.split(separator: " ")
      guard words.count == 3, words[0] == "\tchain", words[2] == "{" else { return nil }
      return String(words[1])
    }
  }

  /// A table: its family (ip, ip6, inet, arp, bridge, netdev) and name.
  public struct Table: Sendable, Equatable {
    public var family: String
    public var name: String
    public init(family: String, name: String) { (self.family, self.name) = (family, name) }
  }

  /// nft's messages run over several lines (the command, a caret): the first that says
  /// what is wrong.
  private static func firstLine(_ message: String) -> String {
    let lines = message.split(separator: "\n").map(String.init)
    return lines.first { $0.contains("Error") } ?? lines.first ?? "failed"
  }
}
