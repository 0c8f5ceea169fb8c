import Foundation
import TestSupport
import Testing

@testable import Bundle

/// What we write must be what GNU tar lists and extracts: the bundle is meant to be
/// inspectable with standard tools.
struct GNUTarTests {
  static let tarPath = "/usr/bin/tar"

  /// Runs GNU tar with `arguments`; returns its exit status, stdout and stderr.
  func runTar(_ arguments: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
    let result = run([Self.tarPath] + arguments)
    return (result.status, result.stdout, result.stderr)
  }

  /// A fresh temporary directory, removed by the caller.
  func temporaryDirectory() throws -> URL {
    let url = FileManager.default.temporaryDirectory.appendingPathComponent(
      "ckcont-bundle-\(UUID().uuidString)")
    try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    return url
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: tarPath)))
  func gnuTarListsAndExtractsABundle() throws {
    let longName = "tasks/4711/" + String(repeating: "very-long-name-", count: 12) + "core.json"
    let members: [(name: String, data: [UInt8])] = [
      ("inventory.json", Array("{\"tasks\":[4711]}".utf8)),
      ("empty.json", []),
      (longName, randomBytes(777, seed: 10)),
      ("pages/4711-0.img", randomBytes(5 << 20 + 123, seed: 11)),
      ("ünicode-名前.json", [1, 2, 3]),
    ]
    let bundle = try writeBundle(members)
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let archive = directory.appendingPathComponent("bundle.tar")
    try Data(bundle).write(to: archive)

    let list = try runTar(["--list", "--verbose", "--numeric-owner", "--file", archive.path])
    #expect(list.status == 0)
    #expect(list.stderr == "")
    let lines = list.stdout.split(separator: "\n").map(String.init)
    let allNames = [BundleFormat.manifestName] + members.map(\.name) + [BundleFormat.checksumsName]
    #expect(lines.count == allNames.count)
    for (line, name) in zip(lines, allNames) {
      #expect(line.hasPrefix("-rw-r--r-- 0/0"), "\(line)")
      #expect(line.hasSuffix(" \(name)"), "\(line)")
      #expect(line.contains(" 2025-01-01 "), "\(line)")  // mtime = manifest creation time
    }
    #expect(lines[4].contains(" \(5 << 20 + 123) "))

    let output = directory.appendingPathComponent("out")
    try FileManager.default.createDirectory(at: output, withIntermediateDirectories: true)
    let extract = try runTar(["--extract", "--file", archive.path, "--directory", output.path])
    #expect(extract.status == 0)
    #expect(extract.stderr == "")
    for member in members {
      let data = try Data(contentsOf: output.appendingPathComponent(member.name))
      #expect(Array(data) == member.data, "\(member.name)")
    }
    let manifestData = try Data(
      contentsOf: output.appendingPathComponent(BundleFormat.manifestName))
    #expect(try Manifest.decode(Array(manifestData)) == makeManifest(members))
    // checksums.json lists the digest of each extracted file.
    let checksums = try JSONDecoder().decode(
      Checksums.self,
      from: Data(contentsOf: output.appendingPathComponent(BundleFormat.checksumsName)))
    #expect(checksums.members.map(\.name) == [BundleFormat.manifestName] + members.map(\.name))
    for entry in checksums.members {
      #expect(
        entry.digest
          == digest(Array(try Data(contentsOf: output.appendingPathComponent(entry.name)))))
    }
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: tarPath)))
  func gnuTarExtractsDirectoriesAndLongNamesFromTheTarWriter() throws {
    let sink = MemorySink()
    let tar = TarWriter(sink: sink, mtime: 1_700_000_000)
    let deepDirectory = (0..<12).map { "level-\($0)-directory" }.joined(separator: "/")
    try tar.addDirectory(name: "tasks")
    try tar.addDirectory(name: deepDirectory)
    let file = deepDirectory + "/file.bin"
    let data = randomBytes(1234, seed: 12)
    try tar.beginMember(name: file, size: data.count)
    try data.withUnsafeBytes { try tar.write($0) }
    try tar.endMember()
    try tar.finish()

    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let archive = directory.appendingPathComponent("t.tar")
    try Data(sink.bytes).write(to: archive)
    let list = try runTar(["--list", "--verbose", "--numeric-owner", "--file", archive.path])
    #expect(list.status == 0 && list.stderr == "")
    #expect(
      list.stdout.split(separator: "\n").map { $0.prefix(10) } == [
        "drwxr-xr-x", "drwxr-xr-x", "-rw-r--r--",
      ])
    #expect(list.stdout.contains(" \(file)\n"))
    let extract = try runTar(["--extract", "--file", archive.path, "--directory", directory.path])
    #expect(extract.status == 0 && extract.stderr == "")
    #expect(Array(try Data(contentsOf: directory.appendingPathComponent(file))) == data)
    var isDirectory: ObjCBool = false
    #expect(
      FileManager.default.fileExists(
        atPath: directory.appendingPathComponent("tasks").path, isDirectory: &isDirectory))
    #expect(isDirectory.boolValue)
  }

  @Test(.enabled(if: FileManager.default.isExecutableFile(atPath: tarPath)))
  func gnuTarReadsThePaxSizeOfAHugeMember() throws {
    // Only the header: GNU tar lists the member with its full size, then reports the missing data.
    let header = TarHeader.encode(name: "pages/huge.img", size: 9 << 30, kind: .file, mtime: 0)
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(at: directory) }
    let archive = directory.appendingPathComponent("huge.tar")
    try Data(header).write(to: archive)
    let list = try runTar(["--list", "--verbose", "--numeric-owner", "--file", archive.path])
    #expect(list.stdout.contains(" 9663676416 "), "\(list.stdout)")
    #expect(list.stdout.contains("pages/huge.img"))
  }
}
