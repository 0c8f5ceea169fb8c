/// A device number (`st_rdev`) split as glibc's major(3) and minor(3) do, which Swift's Glibc
/// overlay does not bring.
public struct DeviceNumber: Equatable, Sendable {
  public let major: UInt64
  public let minor: UInt64

  public init(_ raw: UInt64) {
    major = (raw >> 8) & 0xfff | (raw >> 32) & ~0xfff
    minor = raw & 0xff | (raw >> 12) & ~0xff
  }
}
