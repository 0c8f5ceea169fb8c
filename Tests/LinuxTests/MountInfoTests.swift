import Linux
import Testing

@Suite struct MountInfoTests {
  /// This machine: cgroup v1 controllers under a tmpfs at /sys/fs/cgroup, v2 at .../unified.
  @Test func hybridCgroupHost() throws {
    let mounts = try MountInfo.parse(ProcFixture.text("hybrid.mountinfo"))
    #expect(mounts.count == 20)
    let root = try #require(mounts.first { $0.mountPoint == "/" })
    #expect(
      root.fsType == "ext4" && root.source == "/dev/vda" && root.major == 254 && root.minor == 0)
    #expect(root.superOptions.contains("discard"))
    let v1 = mounts.filter { $0.fsType == "cgroup" }
    #expect(v1.count == 9)
    let freezer = try #require(v1.first { $0.mountPoint == "/sys/fs/cgroup/freezer" })
    #expect(freezer.superOptions == ["rw", "freezer"])
    #expect(freezer.root == "/")
    let cgroupTmpfs = try #require(mounts.first { $0.mountPoint == "/sys/fs/cgroup" })
    #expect(cgroupTmpfs.fsType == "tmpfs" && freezer.parentID == cgroupTmpfs.mountID)
    let v2 = mounts.filter { $0.fsType == "cgroup2" }
    #expect(v2.map(\.mountPoint) == ["/sys/fs/cgroup/unified"])
    #expect(mounts.allSatisfy { $0.optionalFields.isEmpty })
    let devpts = mounts.filter { $0.mountPoint == "/dev/pts" }
    #expect(devpts.count == 2)  // stacked mounts at one point
  }

  @Test func pureCgroupV2HostWithEscapes() throws {
    let mounts = try MountInfo.parse(ProcFixture.text("pure-v2.mountinfo"))
    #expect(mounts.count == 11)
    let cgroup = try #require(mounts.first { $0.fsType == "cgroup2" })
    #expect(cgroup.mountPoint == "/sys/fs/cgroup")
    #expect(cgroup.superOptions == ["rw", "nsdelegate", "memory_recursiveprot"])
    #expect(cgroup.mountOptions == ["rw", "nosuid", "nodev", "noexec", "relatime"])
    #expect(cgroup.optionalFields == ["shared:9"])
    #expect(!mounts.contains { $0.fsType == "cgroup" })
    let data = try #require(mounts.first { $0.mountID == 45 })
    #expect(data.root == "/srv/My Data")
    #expect(data.mountPoint == "/mnt/my data")
    #expect(data.optionalFields == ["shared:25", "master:3"])
    let odd = try #require(mounts.first { $0.mountID == 46 })
    #expect(odd.mountPoint == "/mnt/tab\tand\\backslash")
    #expect(odd.source == "none here")
    #expect(odd.optionalFields.isEmpty)
    #expect(mounts.first { $0.mountPoint == "/" }?.major == 253)
  }

  @Test(arguments: [
    "22 28 0:21 / /sys rw,nosuid shared:7 sysfs sysfs rw",  // no separator
    "22 28 0-21 / /sys rw - sysfs sysfs rw",  // bad device
    "x 28 0:21 / /sys rw - sysfs sysfs rw",  // bad id
    "22 28 0:21 / - sysfs sysfs rw",  // too few fields before the separator
  ])
  func malformed(line: String) throws {
    let text = "23 28 0:22 / /proc rw - proc proc rw\n\(line)\n"
    let error = try #require(ckError { try MountInfo.parse(text) })
    #expect(error.message.hasPrefix("mountinfo line 2 is malformed"), "\(error)")
  }

  @Test func readsThisProcess() throws {
    #expect(try MountInfo.read().contains { $0.mountPoint == "/" })
  }
}
