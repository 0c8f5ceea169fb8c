import Foundation
import Glibc
import TestSupport
import Testing

/// `ckcont keygen`, `dump --sign`, `restore --trusted-key`, `inspect`: a signed bundle is
/// restored only by whoever trusts its signer, and refused before anything is made otherwise.
@Suite(.serialized)
struct SignedBundleTests {
  /// A key pair in a directory of its own, removed afterwards.
  final class Keys {
    let directory = NSTemporaryDirectory() + "ckcont-keys-\(UUID().uuidString)"
    var key: String { directory + "/key" }
    var publicKey: String { directory + "/key.pub" }

    init() throws {
      try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: false)
      let made = run([TestPaths.ckcont, "keygen", "-o", key])
      guard made.status == 0 else { throw TestFailure("keygen: \(made.output)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }
  }

  @Test func keygenWritesAPrivateKeyOnlyItsOwnerReads() throws {
    let keys = try Keys()
    var status = stat()
    #expect(stat(keys.key, &status) == 0 && status.st_mode & 0o777 == 0o600)
    let printed = run([TestPaths.ckcont, "keygen", "-o", keys.key])
    #expect(printed.status == 2 && printed.stderr.contains("cannot create"), "\(printed.output)")
    let publicText = try String(contentsOfFile: keys.publicKey, encoding: .utf8)
    #expect(publicText.hasPrefix("ckcont-ed25519 "))
    #expect(!(try String(contentsOfFile: keys.key, encoding: .utf8)).contains(publicText.dropFirst(15).prefix(20)))
  }

  @Test func aSignedBundleRestoresForWhoeverTrustsItsKeyOnly() throws {
    let keys = try Keys()
    let other = try Keys()
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    let dumped = container.dump(["--sign", keys.key])
    #expect(dumped.status == 0, "\(dumped.output)")
    try container.waitEmpty()
    let names = run(["/bin/tar", "tf", container.bundlePath]).stdout.split(separator: "\n")
    #expect(names.suffix(2) == ["checksums.json", "signature.json"])
    let inspected = run([TestPaths.ckcont, "inspect", container.bundlePath])
    let publicKey = try String(contentsOfFile: keys.publicKey, encoding: .utf8).trimmingCharacters(in: .newlines)
    #expect(inspected.stdout.contains("signed by \(publicKey) (signature valid)"), "\(inspected.output)")

    // Another key's holder, or one who demands a signature without naming a key: refused,
    // in one line, nothing made.
    for (arguments, message, code) in [
      (["--trusted-key", other.publicKey], "which is not one of the trusted keys", Int32(2)),
      (["--require-signature"], "--require-signature needs the keys you trust", Int32(64)),
    ] {
      let refused = try container.restore(arguments)
      #expect(refused.status == code, "\(arguments): \(refused.output)")
      #expect(refused.stderr.contains(message) && refused.stderr.split(separator: "\n").count == 1, "\(refused.stderr)")
      #expect(container.cgroup.allPids().isEmpty)
    }
    let restored = try container.restore(["--trusted-key", other.publicKey, "--trusted-key", keys.publicKey])
    #expect(restored.status == 0, "\(restored.output)")
    #expect(try container.terminateRestored() == 0, "\(container.log)")
  }

  @Test func anUnsignedBundleOrAnOpenPrivateKeyIsRefused() throws {
    let keys = try Keys()
    let container = try FixtureContainer("counter")
    defer { container.destroy() }
    try container.waitReady()
    chmod(keys.key, 0o644)
    let open = container.dump(["--sign", keys.key])
    #expect(open.status == 2 && open.stderr.contains("may be read by others"), "\(open.output)")
    #expect(!FileManager.default.fileExists(atPath: container.bundlePath))
    #expect(!container.cgroup.allPids().isEmpty, "the container must run on")
    try container.dumpAndWaitGone()
    let refused = try container.restore(["--trusted-key", keys.publicKey, "--require-signature"])
    #expect(refused.status == 2 && refused.stderr.contains("the bundle is not signed"), "\(refused.output)")
    #expect(container.cgroup.allPids().isEmpty)
  }
}
