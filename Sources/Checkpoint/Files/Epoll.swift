import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Logging

// epoll instances: their watches, by descriptor number, added again once every descriptor
// has its number. A watch outlives the closing of its descriptor while another holds the
// file (a dup, a forked process): the dump finds that holder (kcmp KCMP_EPOLL_TFD), the
// restore puts the file at the watch's number for the moment of adding it.

/// epoll instances.
enum Epoll: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let targets = descriptor.epollTargets, targets.count <= 1 << 16,
      targets.allSatisfy({
        $0.fd >= 0 && $0.fd < 1 << 20
          && ($0.source.map { $0.pid > 0 && $0.fd >= 0 && $0.fd < 1 << 20 && $0.path == nil } ?? true)
      })
    else { throw bad("fd \(descriptor.fd) is a bad epoll") }
  }

  /// The mark the capture leaves on a watch whose descriptor was closed, until
  /// ``Dump/findStaleWatches(_:)`` finds who holds its file.
  static let unresolved = DescriptorReference(pid: 0, fd: -1)

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareEpoll(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "epoll watching fds \((descriptor.epollTargets ?? []).map { String($0.fd) }.joined(separator: ","))"
  }

  /// Every epoll instance watches only descriptors the process has (`fds`, all its numbers).
  static func validateTargets(_ descriptors: [DescriptorImage], fds: Set<Int32>, bad: (String) -> CKError)
    throws(CKError)
  {
    for descriptor in descriptors where descriptor.kind == .epoll {
      guard (descriptor.epollTargets ?? []).allSatisfy({ $0.source != nil || fds.contains($0.fd) }) else {
        throw bad("epoll fd \(descriptor.fd) watches a descriptor the process does not have")
      }
    }
  }
}

extension FileBatch {
  /// An epoll instance; its watches are added at install.
  func prepareEpoll(_ descriptor: DescriptorImage) throws {
    let made = batch.add(.epollCreate1(O_CLOEXEC), "epoll_create1 fd \(descriptor.fd)")
    prepared.descriptions[descriptor.fd] = queueMoveHigh(made, what: "fd \(descriptor.fd)")
    // Watches are added once every descriptor has its number (they are keyed by it).
    prepared.epollWatches.append((descriptor.fd, descriptor.epollTargets ?? []))
  }
}

extension Dump {
  /// Each watch whose descriptor was closed (``Epoll/unresolved``) gets the descriptor of a
  /// process of the container that holds its file, its own process first; one whose file
  /// only the epoll knows of stops the dump.
  func findStaleWatches(_ tasks: inout [CapturedTask]) throws {
    let holders = tasks.flatMap { task in
      task.files.descriptors.map { (hostPid: task.hostPid, pid: task.entry.pid, fd: $0.fd) }
    }
    for taskIndex in tasks.indices {
      let task = tasks[taskIndex]
      for index in task.files.descriptors.indices {
        guard let epoll = task.files.descriptors[index].epollTargets?.enumerated() else { continue }
        for (slot, target) in epoll where target.source == Epoll.unresolved {
          let epollFd = task.files.descriptors[index].fd
          // Which of the watches of that number (fdinfo and kcmp list them alike).
          let offset = Int32(epoll.prefix(slot).filter { $0.element.fd == target.fd }.count)
          let own = holders.filter { $0.hostPid == task.hostPid } + holders.filter { $0.hostPid != task.hostPid }
          guard
            let holder = own.first(where: {
              ck_kcmp_epoll_target($0.hostPid, task.hostPid, $0.fd, epollFd, target.fd, offset) == 0
            })
          else {
            throw CKError(
              .failed,
              "task \(task.hostPid): epoll fd \(epollFd) watches fd \(target.fd), closed since, whose file no process of the container holds; ckcont cannot checkpoint that",
              hint: "remove the stale watch (EPOLL_CTL_DEL) before the checkpoint")
          }
          tasks[taskIndex].files.descriptors[index].epollTargets?[slot].source = DescriptorReference(
            pid: holder.pid, fd: holder.fd)
          log.debug(
            "task \(task.hostPid): epoll fd \(epollFd) watches closed fd \(target.fd): the file of \(holder.pid)'s fd \(holder.fd)"
          )
        }
      }
    }
  }
}

extension FileRestore {
  /// The watches of the epolls made here, once every descriptor has its number: a stale
  /// watch's file (``EpollTarget/source``) is put at its number for the moment of the add,
  /// and whatever holds that number is put back after.
  func queueWatches(_ prepared: Prepared, into batch: inout Injector.Batch) throws {
    let watches = prepared.epollWatches.flatMap { epoll in epoll.targets.map { (epoll: epoll.epoll, target: $0) } }
    // What follows copies the descriptor table: not for a process without watches.
    guard !watches.isEmpty else { return }
    // Files of other processes first, each received at a number of its own (one call each).
    var received: [DescriptorReference: Int64] = [:]
    for (_, target) in watches {
      guard let source = target.source, source.pid != pid, received[source] == nil else { continue }
      try injector.run(batch)
      batch = Injector.Batch()
      injector.resetData()
      guard let number = shared.placed[source.pid]?[source.fd], let host = shared.hostPids[source.pid] else {
        throw CKError(
          .badInput, "task \(pid): an epoll watch names fd \(source.fd) of \(source.pid), which the bundle lacks")
      }
      let ours = try OwnedDescriptor(copying: Int32(number), ofProcess: host)
      received[source] = try injector.receive(ours.raw, what: "the file of a stale epoll watch")
    }
    let spare = Int64(
      max(image.descriptors.map(\.fd).max() ?? 0, Int32(prepared.nextHigh), Int32(injector.channel)) + 1)
    let inUse = Dictionary(image.descriptors.map { ($0.fd, $0) }) { first, _ in first }
    for (epoll, target) in watches {
      // A stale watch takes five calls.
      if !batch.hasRoom(for: 5) || injector.dataRoom < 64 {
        try injector.run(batch)
        batch = Injector.Batch()
        injector.resetData()
      }
      // struct epoll_event is packed on x86_64: events (32 bits), then data (64 bits).
      var event = [UInt8](repeating: 0, count: 16)
      withUnsafeBytes(of: target.events.littleEndian) { event.replaceSubrange(0..<4, with: $0) }
      withUnsafeBytes(of: target.data.littleEndian) { event.replaceSubrange(4..<12, with: $0) }
      let at = try injector.put(event)
      let number = Int64(target.fd)
      func add() { batch.add(.epollAdd(epoll, number, event: at)) }
      guard let source = target.source else {
        add()
        continue
      }
      let file = source.pid == pid ? Int64(source.fd) : received[source] ?? -1
      if file == Int64(target.fd) {
        // Received at that very number (the lowest free one): closed with the others after.
        add()
        continue
      }
      let holder = inUse[target.fd]
      if holder != nil {
        batch.add(.dup3(number, spare, closeOnExec: false), "dup3 fd \(target.fd) aside")
      }
      batch.add(.dup3(file, number, closeOnExec: false), "dup3 a stale watch's file to \(target.fd)")
      add()
      if let holder {
        batch.add(.dup3(spare, number, closeOnExec: holder.closeOnExec), "dup3 fd \(target.fd) back")
        batch.add(.close(spare))
      } else {
        batch.add(.close(number))
      }
    }
    for number in received.values {
      batch.add(.close(number))
    }
  }
}
