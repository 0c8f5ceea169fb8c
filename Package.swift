// swift-tools-version:6.0
// ckcont: checkpoint and restore whole Linux containers (cgroup subtrees).
// Modules, bottom to top: CKShim (C) → Linux → Cgroup / Netlink / Bundle → Checkpoint → ckcont.
import PackageDescription

let package = Package(
  name: "ckcont",
  platforms: [.macOS(.v13)],
  products: [
    .executable(name: "ckcont", targets: ["ckcont"]),
    // An OCI runtime for podman and CRI-O: runc, with checkpoint and restore by ckcont.
    .executable(name: "ckcont-runc", targets: ["ckcont-runc"]),
  ],
  dependencies: [
    .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
    .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
    .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
    .package(url: "https://github.com/apple/swift-crypto", from: "3.12.3"),
  ],
  targets: [
    // What Swift cannot call: variadic syscalls (ptrace, prctl, ioctl), clone3, and every
    // child that runs between fork/clone and its stop or exec.
    .target(name: "CKShim", cSettings: [.define("_GNU_SOURCE")]),
    // System libraries, each imported by exactly one Swift module.
    .systemLibrary(name: "CLibcgroup", pkgConfig: "libcgroup", providers: [.apt(["libcgroup-dev"])]),
    .systemLibrary(name: "CLibnl", pkgConfig: "libnl-route-3.0", providers: [.apt(["libnl-route-3-dev"])]),
    .systemLibrary(name: "CLibnftables", pkgConfig: "libnftables", providers: [.apt(["libnftables-dev"])]),
    .systemLibrary(name: "CLibcap", pkgConfig: "libcap", providers: [.apt(["libcap-dev"])]),
    .systemLibrary(name: "CXXHash", pkgConfig: "libxxhash", providers: [.apt(["libxxhash-dev"])]),
    .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),

    // Typed syscall wrappers, /proc parsers, ptrace, kernel probes. Imports CLibcap.
    .target(
      name: "Linux",
      dependencies: [
        "CKShim", "CLibcap",
        .product(name: "SystemPackage", package: "swift-system"),
      ]),
    // cgroup v1/v2 discovery, subtree walk, freezer, settings. Imports CLibcgroup.
    .target(name: "Cgroup", dependencies: ["Linux", "CLibcgroup"]),
    // Network namespaces through netlink. Imports CLibnl and CLibnftables.
    .target(name: "Netlink", dependencies: ["Linux", "CLibnl", "CLibnftables"]),
    // Bundle format and the state model: no syscalls. Imports CXXHash and CZstd; signs with Crypto.
    .target(name: "Bundle", dependencies: ["CXXHash", "CZstd", .product(name: "Crypto", package: "swift-crypto")]),
    // The checkpoint engine: dump and restore, one folder per resource.
    .target(
      name: "Checkpoint",
      dependencies: [
        "Linux", "Cgroup", "Netlink", "Bundle",
        .product(name: "Logging", package: "swift-log"),
      ]),
    .executableTarget(
      name: "ckcont",
      dependencies: [
        "Checkpoint", "Cgroup", "Linux", "Netlink", "Bundle",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ]),
    // The runtime front: hands runc every command but checkpoint and restore, which it does
    // with the ckcont beside it (no engine code of its own; CKShim for pipe2 and prctl).
    .executableTarget(name: "ckcont-runc", dependencies: ["CKShim"]),
    // The bundle fuzzer driven by Scripts/fuzz-bundles (and a short run in the tests).
    .executableTarget(name: "ckcont-fuzz", dependencies: ["Checkpoint", "Bundle"]),
    // Benchmarks driven by Scripts/bench (never timed in tests).
    .executableTarget(name: "ckcont-bench", dependencies: ["Cgroup", "Linux"]),

    .testTarget(name: "LinuxTests", dependencies: ["Linux"]),
    .testTarget(name: "BundleTests", dependencies: ["Bundle", "TestSupport"]),
    // Helpers the test targets share: fixture programs, scratch cgroups, subprocesses.
    // The state snapshot every round trip compares, independent of the engine: its own C
    // (ioctls) and the XXH3 of libxxhash to hash memory fast.
    .target(name: "CSnapshotShim", path: "Tests/CSnapshotShim", cSettings: [.define("_GNU_SOURCE")]),
    .target(name: "TestSupport", dependencies: ["CKShim", "CSnapshotShim", "CXXHash"], path: "Tests/TestSupport"),
    .testTarget(name: "CgroupTests", dependencies: ["Cgroup", "Linux", "TestSupport"]),
    .testTarget(name: "CLITests", dependencies: ["ckcont", "TestSupport"]),
    .testTarget(name: "CheckpointTests", dependencies: ["ckcont", "Checkpoint", "Linux", "Bundle", "TestSupport"]),
  ]
)
