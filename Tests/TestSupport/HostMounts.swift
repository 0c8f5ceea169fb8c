import Synchronization

/// Mount points other tests make on the host while containers run (`ip netns add`'s
/// /run/netns/NAME, a scratch tmpfs). A mount namespace made at one moment copies whichever
/// of them exist then, and the test may remove them before the next snapshot reads the
/// host: such a mount is another test's, never the container's (``IgnoredState/mounts``).
public enum HostMounts {
  private static let points = Mutex<Set<String>>([])

  /// Notes that this test process mounts at `path` on the host (call before mounting).
  public static func note(_ path: String) { points.withLock { _ = $0.insert(path) } }

  /// Whether `path` is a mount point a test made on the host.
  public static func isTests(_ path: String) -> Bool { points.withLock { $0.contains(path) } }
}
