import CLibcgroup
import Linux

/// What libcgroup reports about the mounted controllers. ckcont discovers hierarchies from
/// mountinfo itself (so it is testable on captured text); `check` cross-checks against
/// libcgroup's view.
public enum Libcgroup {
  /// Each mounted controller with its mount point, as libcgroup sees them; throws when
  /// libcgroup cannot initialise (no cgroup filesystem mounted).
  public static func mountedControllers() throws(CKError) -> [(controller: String, mountPoint: String)] {
    let initResult = cgroup_init()
    guard initResult == 0 else {
      throw CKError(.failed, "libcgroup: \(String(cString: cgroup_strerror(initResult)))")
    }
    var handle: UnsafeMutableRawPointer?
    var info = cgroup_mount_point()
    var result: [(String, String)] = []
    var status = cgroup_get_controller_begin(&handle, &info)
    defer { cgroup_get_controller_end(&handle) }
    while status == 0 {
      result.append((cString(info.name), cString(info.path)))
      status = cgroup_get_controller_next(&handle, &info)
    }
    return result
  }

  private static func cString<T>(_ tuple: T) -> String {
    withUnsafeBytes(of: tuple) { raw in
      String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
    }
  }
}
