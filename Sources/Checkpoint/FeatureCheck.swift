/// The checkpoint engine: dump and restore of a cgroup subtree by ptrace and remote system
/// calls, one folder per resource. This session lays the ground (kernel checks); capture and
/// restore arrive with the engine issue.
import Cgroup
import Linux
import Netlink

/// `ckcont check`: every kernel feature the engine needs, probed for real.
public enum FeatureCheck {
  /// Runs every probe; cgroup probes need the mounted hierarchies.
  public static func run() -> [Probe] {
    var probes = [
      KernelProbe.privileges(),
      KernelProbe.ptraceSeize(),
      KernelProbe.processVMReadv(),
      KernelProbe.pidfd(),
      KernelProbe.pagemapScan(),
      KernelProbe.userfaultfdWriteProtect(),
      KernelProbe.timeNamespace(),
      KernelProbe.timerRestoreIDs(),
      KernelProbe.userNamespaces(),
      KernelProbe.openat2(),
    ]
    if let mounts = try? CgroupMounts.current() {
      probes += CgroupProbe.all(mounts)
    } else {
      probes.append(
        Probe("cgroup mounts", essential: true, available: false, detail: "cannot read /proc/self/mountinfo"))
    }
    probes.append(NetworkLinks.probe())
    return probes
  }

  /// Freezing needs one of v2 freeze or the v1 freezer: essential as a pair.
  public static func essentialMissing(_ probes: [Probe]) -> [Probe] {
    var missing = probes.filter { $0.essential && !$0.available }
    let freezers = probes.filter { $0.name.hasPrefix("cgroup v") }
    if !freezers.isEmpty && !freezers.contains(where: \.available) {
      missing += freezers
    }
    return missing
  }
}
