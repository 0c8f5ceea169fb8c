import Glibc
import Logging

/// Log lines on stderr: the time to the millisecond (a migration's frozen phases last tens
/// of milliseconds, which swift-log's stream handler, to the second, hides), the level, the
/// command, any metadata, the message. One write per line, so that lines of threads and of
/// the two sides of a pipe (`dump -o - | restore -`) do not interleave within a line.
struct LogLines: LogHandler {
  let label: String
  var logLevel: Logger.Level = .info
  var metadata: Logger.Metadata = [:]
  var metadataProvider: Logger.MetadataProvider?

  subscript(metadataKey key: String) -> Logger.Metadata.Value? {
    get { metadata[key] }
    set { metadata[key] = newValue }
  }

  func log(event: LogEvent) {
    var all = metadata
    if let own = event.metadata { all.merge(own) { $1 } }
    let shown =
      all.isEmpty ? "" : " " + all.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
    var bytes = Array("\(Self.timestamp()) \(event.level) \(label):\(shown) \(event.message)\n".utf8)
    _ = bytes.withUnsafeMutableBytes { write(2, $0.baseAddress, $0.count) }
  }

  /// Local time as `2026-12-08T01:30:00.123+0000`.
  private static func timestamp() -> String {
    var now = timespec()
    clock_gettime(CLOCK_REALTIME, &now)
    var local = tm()
    localtime_r(&now.tv_sec, &local)
    func format(_ pattern: String) -> String {
      var text = [UInt8](repeating: 0, count: 32)
      let count = text.withUnsafeMutableBufferPointer { buffer in
        buffer.withMemoryRebound(to: CChar.self) { strftime($0.baseAddress, $0.count, pattern, &local) }
      }
      return String(decoding: text[..<count], as: UTF8.self)
    }
    return format("%Y-%m-%dT%H:%M:%S") + "." + String(now.tv_nsec / 1_000_000 + 1000).dropFirst() + format("%z")
  }
}
