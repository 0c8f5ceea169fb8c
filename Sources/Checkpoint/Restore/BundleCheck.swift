import Bundle
import Linux

/// Everything a restore does with a bundle's bytes before it makes anything: read and
/// verify, decode every member, validate the model, plan the tree (every pid taken as free).
/// For the bundle fuzzer (`ckcont-fuzz`): whatever the bytes, the answer is an acceptance or
/// a refusal, never a crash or a hang.
public enum BundleCheck {
  /// nil when a restore would go on to make the container; else its one-line refusal.
  public static func refusal(of bytes: [UInt8]) -> String? {
    do {
      let bundle = try LoadedBundle(source: MemorySource(bytes), pages: .copy, log: .discarding)
      _ = try Restore.plan(bundle) { _ in true }
      return nil
    } catch let error as CKError {
      return error.description
    } catch {
      return "\(error)"
    }
  }
}
