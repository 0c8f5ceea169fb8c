import ArgumentParser
import Bundle
import Foundation
import Glibc
import Linux

/// `ckcont keygen -o KEY`.
struct KeygenCommand: ParsableCommand {
  static let configuration = CommandConfiguration(
    commandName: "keygen",
    abstract: "Make an Ed25519 key pair to sign bundles with.",
    discussion: """
      Writes the private key to KEY (mode 0600, never overwritten) and the public key to \
      KEY.pub, and prints the public key. `ckcont dump --sign KEY` signs a bundle with it; \
      `ckcont restore --trusted-key KEY.pub` restores only bundles it signed.
      """)

  @Option(name: .shortAndLong, help: "The private key file to write (the public key goes to FILE.pub).")
  var output: String
  @OptionGroup var global: GlobalOptions

  struct Report: Encodable {
    var publicKey: String
    var privateKeyFile: String
    var publicKeyFile: String
  }

  func run() throws {
    let key = BundleSigningKey()
    let publicFile = output + ".pub"
    try Self.create(output, text: key.fileText, mode: 0o600)
    do {
      try Self.create(publicFile, text: key.publicKey.fileText, mode: 0o644)
    } catch {
      unlink(output)
      throw error
    }
    if global.json {
      try printJSON(Report(publicKey: key.publicKey.base64, privateKeyFile: output, publicKeyFile: publicFile))
    } else {
      Terminal.out(key.publicKey.description)
    }
  }

  /// Writes `text` into a new file `path` with `mode`; an existing file is left alone.
  static func create(_ path: String, text: String, mode: mode_t) throws(CKError) {
    let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
    guard fd >= 0 else {
      let reason = String(cString: strerror(errno))
      throw CKError(.badInput, "cannot create \(path): \(reason)", hint: "choose a name that does not exist yet")
    }
    defer { close(fd) }
    let bytes = Array(text.utf8)
    guard write(fd, bytes, bytes.count) == bytes.count, fchmod(fd, mode) == 0 else {
      let reason = String(cString: strerror(errno))
      unlink(path)
      throw CKError(.failed, "cannot write \(path): \(reason)")
    }
  }
}

/// Key files given to dump and restore.
enum KeyFiles {
  /// The signing key in `path`, which no one but its owner may read (as ssh insists).
  static func signingKey(_ path: String) throws -> BundleSigningKey {
    var status = stat()
    guard stat(path, &status) == 0 else {
      throw CKError(.badInput, "cannot read the key \(path): \(String(cString: strerror(errno)))")
    }
    guard status.st_mode & 0o077 == 0 else {
      throw CKError(
        .badInput, "the private key \(path) may be read by others (mode \(String(status.st_mode & 0o777, radix: 8)))",
        hint: "chmod 600 \(path)")
    }
    do {
      return try BundleSigningKey(fileText: try String(contentsOfFile: path, encoding: .utf8))
    } catch let error as BundleError {
      throw CKError(.badInput, "\(path): \(error.message)")
    }
  }

  /// The public key in `path` (a KEY.pub file, or the line `ckcont keygen` printed).
  static func publicKey(_ path: String) throws -> BundlePublicKey {
    do {
      return try BundlePublicKey(fileText: try String(contentsOfFile: path, encoding: .utf8))
    } catch let error as BundleError {
      throw CKError(.badInput, "\(path): \(error.message)")
    } catch {
      throw CKError(.badInput, "cannot read the key \(path): \(error.localizedDescription)")
    }
  }
}
