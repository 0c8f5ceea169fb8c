import Bundle
import CKShim
import Glibc
import Linux
import Synchronization

/// Descriptors of /dev/net/tun: a queue of a tun/tap device of the container's network
/// namespace (a VPN's, a VM's), or attached to none yet. A device that does not persist was
/// made by ``NetworkDevices`` through the queue its first descriptor takes over
/// (``madeQueues``); other queues are opened again (by ckcont, from a thread in the task's
/// network namespace, where the device is) and attached to the device of the same name.
/// Reopening the path, as for other character devices, would give a queue attached to
/// nothing.
enum TunDescriptors: DescriptorKindHandler {
  /// Queues that made a device, by its name, until a descriptor takes each (or the
  /// restore ends: ``dropMadeQueues()``). One restore per ckcont.
  static let madeQueues = Mutex<[String: Int32]>([:])

  /// Closes the queues no descriptor took (a restore that failed).
  static func dropMadeQueues() {
    madeQueues.withLock { queues in
      for fd in queues.values { close(fd) }
      queues = [:]
    }
  }

  /// /dev/net/tun's device number.
  static let device = (major: UInt64(10), minor: UInt64(200))
  /// The TUNSETIFF flags a queue is attached with.
  static let attachFlags = UInt32(CK_IFF_TUN | CK_IFF_TAP | CK_IFF_NO_PI | CK_IFF_VNET_HDR | CK_IFF_MULTI_QUEUE)

  static func isTun(_ number: DeviceNumber) -> Bool {
    number.major == device.major && number.minor == device.minor
  }

  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let tun = descriptor.tun, tun.device.map(NetworkDevices.isName) ?? true,
      tun.device == nil || tun.flags & UInt32(CK_IFF_TUN | CK_IFF_TAP) != 0, tun.vnetHeaderSize >= 0,
      tun.vnetHeaderSize <= 4096
    else { throw bad("fd \(descriptor.fd) is a bad tun descriptor") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareTun(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    guard let tun = descriptor.tun, let device = tun.device else { return "/dev/net/tun, attached to no device" }
    return "/dev/net/tun, a queue of \(tun.flags & UInt32(CK_IFF_TAP) != 0 ? "tap" : "tun") device \(device)"
  }
}

extension FileCapture {
  /// The device a /dev/net/tun descriptor is a queue of, and its settings, read through a
  /// copy of it (the same open file).
  func captureTun(fd: Int32) throws -> TunDescriptorImage {
    let ours = try OwnedDescriptor(copying: fd, ofProcess: pid)
    var name = [CChar](repeating: 0, count: 16)
    var flags: Int32 = 0
    let attached = ck_tun_get(ours.raw, &name, &flags)
    var sendBuffer: Int32 = 0
    var vnetHeaderSize: Int32 = 0
    _ = ck_tun_get_int(ours.raw, Int32(CK_TUN_SNDBUF), &sendBuffer)
    _ = ck_tun_get_int(ours.raw, Int32(CK_TUN_VNETHDRSZ), &vnetHeaderSize)
    if attached == -EBADFD {
      return TunDescriptorImage(device: nil, flags: 0, sendBuffer: sendBuffer, vnetHeaderSize: vnetHeaderSize)
    }
    guard attached == 0 else {
      throw SyscallError("ioctl(TUNGETIFF)", "fd \(fd) of task \(pid)", .init(rawValue: -attached))
    }
    return TunDescriptorImage(
      device: String(nulTerminated: name), flags: UInt32(UInt16(truncatingIfNeeded: flags)), sendBuffer: sendBuffer,
      vnetHeaderSize: vnetHeaderSize)
  }
}

extension FileBatch {
  /// Opens /dev/net/tun in the task's network namespace, attaches it to its device and
  /// hands it over.
  func prepareTun(_ descriptor: DescriptorImage) throws {
    guard let tun = descriptor.tun else { return }
    let flags = descriptor.flags & (O_ACCMODE | O_NONBLOCK)
    let made = tun.device.flatMap { device in TunDescriptors.madeQueues.withLock { $0.removeValue(forKey: device) } }
    let raw = try NamespaceThread.run(in: "net", of: injector.pid) { () throws -> Int32 in
      if let made {
        // The queue that made the device: its status flags as the descriptor's.
        let opened = OwnedDescriptor(adopting: made)
        _ = fcntl(opened.raw, F_SETFL, flags & O_NONBLOCK)
        _ = ck_tun_set(opened.raw, Int32(CK_TUN_SNDBUF), UInt(UInt32(bitPattern: tun.sendBuffer)))
        _ = ck_tun_set(opened.raw, Int32(CK_TUN_VNETHDRSZ), UInt(UInt32(bitPattern: tun.vnetHeaderSize)))
        return opened.take()
      }
      let opened = try OwnedDescriptor(opening: "/dev/net/tun", flags: flags | O_CLOEXEC)
      if let device = tun.device {
        let attached = ck_tun_attach(opened.raw, device, Int32(tun.flags & TunDescriptors.attachFlags))
        guard attached == 0 else {
          throw SyscallError("ioctl(TUNSETIFF)", "tun device \(device)", .init(rawValue: -attached))
        }
      }
      _ = ck_tun_set(opened.raw, Int32(CK_TUN_SNDBUF), UInt(UInt32(bitPattern: tun.sendBuffer)))
      if tun.device != nil {
        _ = ck_tun_set(opened.raw, Int32(CK_TUN_VNETHDRSZ), UInt(UInt32(bitPattern: tun.vnetHeaderSize)))
      }
      return opened.take()
    }
    let ours = OwnedDescriptor(adopting: raw)
    prepared.descriptions[descriptor.fd] = try queueReceived(
      ours.raw, what: "fd \(descriptor.fd) (/dev/net/tun, \(tun.device ?? "no device"))", fd: descriptor.fd)
  }
}
