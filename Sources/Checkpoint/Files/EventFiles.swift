import Bundle
import CKShim
import Foundation
import Glibc
import Linux

// eventfd, signalfd and timerfd (CRIU's eventfd.c, signalfd.c, timerfd.c): their state read
// from fdinfo, made again with it.

/// eventfd, signalfd and timerfd.
enum EventFiles: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    switch descriptor.kind {
    case .eventfd:
      guard descriptor.anon?.count.map({ $0 < UInt64.max }) == true else {
        throw bad("fd \(descriptor.fd) is a bad eventfd")
      }
    case .signalfd:
      guard descriptor.anon?.signalMask != nil else { throw bad("fd \(descriptor.fd) is a bad signalfd") }
    case .timerfd:
      guard let state = descriptor.anon, state.clockID != nil, (state.intervalNanoseconds ?? -1) >= 0,
        (state.valueNanoseconds ?? -1) >= 0, state.ticks != nil
      else { throw bad("fd \(descriptor.fd) is a bad timerfd") }
    default:
      return
    }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareEventFile(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    switch descriptor.kind {
    case .eventfd: "eventfd, count \(descriptor.anon?.count ?? 0)"
    case .signalfd: "signalfd for mask 0x\(String(descriptor.anon?.signalMask ?? 0, radix: 16))"
    case .timerfd:
      "timerfd on clock \(descriptor.anon?.clockID ?? 0), \(descriptor.anon?.valueNanoseconds ?? 0) ns left"
    default: ""
    }
  }
}

extension FileCapture {
  static let anonKinds: [String: DescriptorImage.Kind] = [
    "anon_inode:[eventfd]": .eventfd, "anon_inode:[signalfd]": .signalfd, "anon_inode:[timerfd]": .timerfd,
  ]

  /// The state fdinfo shows for an eventfd (`eventfd-count` in hex, `eventfd-semaphore`), a
  /// signalfd (`sigmask`) or a timerfd (`clockid`, `ticks`, `it_value: (s, ns)` left,
  /// `it_interval: (s, ns)`).
  func anonState(_ kind: DescriptorImage.Kind, _ info: FdInfo, fd: Int32) throws -> AnonFileState {
    func bad(_ what: String) -> CKError {
      CKError(.failed, "task \(pid): fd \(fd): cannot read its \(what) from fdinfo")
    }
    switch kind {
    case .eventfd:
      guard let count = info.eventfdCount else { throw bad("eventfd-count") }
      return AnonFileState(count: count, semaphore: info.value(for: "eventfd-semaphore") == "1")
    case .signalfd:
      guard let mask = info.signalfdMask else { throw bad("sigmask") }
      return AnonFileState(signalMask: mask)
    default:
      guard let clock = info.timerfdClockID, let ticks = info.timerfdTicks,
        let interval = info.timerfdNanoseconds("it_interval"), let value = info.timerfdNanoseconds("it_value")
      else { throw bad("timer") }
      return AnonFileState(clockID: clock, intervalNanoseconds: interval, valueNanoseconds: value, ticks: ticks)
    }
  }
}

extension FileBatch {
  /// An eventfd, signalfd or timerfd with its state.
  func prepareEventFile(_ descriptor: DescriptorImage) throws {
    guard let state = descriptor.anon else { return }
    prepared.descriptions[descriptor.fd] = try queueAnon(descriptor, state)
  }

  /// A new eventfd (its counter), signalfd (its mask) or timerfd (armed with what was left,
  /// and its unread expirations), at a high number.
  func queueAnon(_ descriptor: DescriptorImage, _ state: AnonFileState) throws -> Int64 {
    // EFD_/SFD_/TFD_NONBLOCK are O_NONBLOCK; CLOEXEC until installed.
    let flags = descriptor.flags & O_NONBLOCK | O_CLOEXEC
    let fd = descriptor.fd
    switch descriptor.kind {
    case .eventfd:
      let count = state.count ?? 0
      let made = batch.add(
        .eventfd2(
          UInt32(min(count, UInt64(UInt32.max))), flags | (state.semaphore == true ? Int32(CK_EFD_SEMAPHORE) : 0)),
        "eventfd fd \(fd)")
      if count > UInt64(UInt32.max) {
        // eventfd2 takes a 32-bit start: the rest is added by a write.
        let rest = try injector.put(words: [count - UInt64(UInt32.max)])
        batch.add(.write(.result(made), rest, count: 8), "write eventfd fd \(fd)")
      }
      return queueMoveHigh(made, what: "fd \(fd)")
    case .signalfd:
      let mask = try injector.put(words: [state.signalMask ?? 0])
      let made = batch.add(.signalfd4(mask: mask, flags), "signalfd fd \(fd)")
      return queueMoveHigh(made, what: "fd \(fd)")
    default:
      let made = batch.add(.timerfdCreate(state.clockID ?? CLOCK_MONOTONIC, flags), "timerfd_create fd \(fd)")
      let interval = state.intervalNanoseconds ?? 0
      // A periodic timer read at its expiry shows 0 left: it fires now, as it was about to.
      let value = (state.valueNanoseconds ?? 0) == 0 && interval > 0 ? 1 : state.valueNanoseconds ?? 0
      if value > 0 {
        let spec = try injector.put(words: [
          UInt64(interval / 1_000_000_000), UInt64(interval % 1_000_000_000), UInt64(value / 1_000_000_000),
          UInt64(value % 1_000_000_000),
        ])
        batch.add(.timerfdSettime(.result(made), spec), "timerfd_settime fd \(fd)")
      }
      if let ticks = state.ticks, ticks > 0 {
        let count = try injector.put(words: [ticks])
        batch.add(.ioctl(.result(made), .setTimerTicks, count), "TFD_IOC_SET_TICKS fd \(fd)")
      }
      return queueMoveHigh(made, what: "fd \(fd)")
    }
  }
}
