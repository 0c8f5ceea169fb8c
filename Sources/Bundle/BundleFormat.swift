/// The bundle format: a POSIX tar stream holding the checkpoint model. No system calls here,
/// so `inspect` and its tests run anywhere. The members and the model arrive with the engine.
public enum BundleFormat {
  /// The magic string written into every manifest.
  public static let magic = "ckcont-bundle"
  /// The current major version; readers refuse bundles with another major version.
  public static let majorVersion = 1
}
