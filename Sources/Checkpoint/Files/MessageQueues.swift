import Bundle
import CKShim
import Foundation
import Glibc
import Linux
import Synchronization

// POSIX message queues: attributes and messages, made again in the container's own IPC
// namespace (or kept in the host's).

/// POSIX message queues.
enum MessageQueues: DescriptorKindHandler {
  static func validate(_ descriptor: DescriptorImage, pipes: Set<UInt64>, bad: (String) -> CKError) throws(CKError) {
    guard let queue = descriptor.mqueue, !queue.name.isEmpty, queue.name.utf8.count < 256, !queue.name.contains("/"),
      !queue.name.contains("\0"), queue.name != ".", queue.name != "..", queue.mode <= 0o777,
      (1...65536).contains(queue.maxMessages), (1...(16 << 20)).contains(queue.messageSize),
      queue.messages.count <= queue.maxMessages,
      queue.messages.allSatisfy({ $0.data.count <= queue.messageSize && $0.priority < 32768 })
    else { throw bad("fd \(descriptor.fd) is a bad message queue") }
  }

  static func prepare(_ descriptor: DescriptorImage, in files: FileBatch) throws {
    try files.prepareMessageQueue(descriptor)
  }

  static func describe(_ descriptor: DescriptorImage) -> String {
    "message queue /\(descriptor.mqueue?.name ?? "?"), \(descriptor.mqueue?.messages.count ?? 0) message(s) waiting"
  }
}

extension FileCapture {
  /// Two holders of one queue, captured at once, would each see the other's reads.
  private static let messageQueueReads = Mutex(())

  /// A POSIX message queue: its attributes and messages, taken and put back through a
  /// read-write description of ckcont's own (the container is frozen, and the reads take
  /// turns: nobody else takes them meanwhile).
  func captureMessageQueue(fd: Int32, target: String, st: stat) throws -> MessageQueueImage {
    let unlinked = target.hasSuffix(" (deleted)")
    let name = String((unlinked ? target.dropLast(" (deleted)".count) : target[...]).dropFirst())
    let capacity = 1 << 20
    let maxMessages = 4096
    var buffer = [UInt8](repeating: 0, count: capacity)
    var lengths = [UInt32](repeating: 0, count: maxMessages)
    var priorities = [UInt32](repeating: 0, count: maxMessages)
    var attr = ck_mq_attr()
    var count: Int32 = 0
    let result = Self.messageQueueReads.withLock { _ in
      ck_mq_capture(pid, fd, &attr, &buffer, capacity, &lengths, &priorities, Int32(maxMessages), &count)
    }
    guard result == 0 else {
      throw CKError(
        .failed,
        result == -E2BIG
          ? "task \(pid): fd \(fd) is the message queue /\(name) holding more than \(capacity >> 10) KiB, which ckcont cannot checkpoint yet"
          : "task \(pid): fd \(fd): cannot read the message queue /\(name): \(String(cString: strerror(-result)))")
    }
    var messages: [MessageQueueImage.QueuedMessage] = []
    var offset = 0
    for index in 0..<Int(count) {
      let length = Int(lengths[index])
      messages.append(.init(priority: priorities[index], data: Data(buffer[offset..<offset + length])))
      offset += length
    }
    return MessageQueueImage(
      name: name, mode: UInt32(st.st_mode & 0o777), uid: st.st_uid, gid: st.st_gid, maxMessages: attr.max_messages,
      messageSize: attr.message_size, unlinked: unlinked || st.st_nlink == 0, messages: messages)
  }
}

extension FileBatch {
  /// A POSIX message queue, opened by name (made again first where it must be).
  func prepareMessageQueue(_ descriptor: DescriptorImage) throws {
    guard let queue = descriptor.mqueue else { return }
    // In its own IPC namespace the container's queues are made again, once each, with
    // what waited in them (mq_open by name, without the slash); in the host's a queue
    // outlived the container (the dump put its messages back) unless it was unlinked.
    let make = (shared.ownIPCNamespace || queue.unlinked) && shared.messageQueues.insert(queue.name).inserted
    let name = try injector.put(string: queue.name)
    if make {
      // struct mq_attr: flags, maxmsg, msgsize, curmsgs.
      let attributes = try injector.put(words: [0, UInt64(queue.maxMessages), UInt64(queue.messageSize), 0])
      let made = batch.add(
        .mqOpen(name, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: queue.mode, attributes: attributes),
        "mq_open /\(queue.name) (making it)")
      batch.add(.fchown(.result(made), uid: queue.uid, gid: queue.gid), "fchown /\(queue.name)")
      // The task's umask (ckcont's still) has taken bits off the mode.
      batch.add(.fchmod(.result(made), queue.mode), "fchmod /\(queue.name)")
      after.messageQueues.append((queueMoveHigh(made, what: "the message queue /\(queue.name)"), queue))
    }
    // Without O_CLOEXEC: unlike open(2), mq_open keeps it in the description's flags, which
    // the program's fdinfo shows whatever FD_CLOEXEC the descriptor gets.
    let opened = batch.add(
      .mqOpen(name, descriptor.flags & (O_ACCMODE | O_NONBLOCK)), "mq_open /\(queue.name) for fd \(descriptor.fd)")
    prepared.descriptions[descriptor.fd] = queueMoveHigh(opened, what: "fd \(descriptor.fd)")
    if make && queue.unlinked { batch.add(.mqUnlink(name), "mq_unlink /\(queue.name)") }
  }
}

extension FileBatch {
  /// Puts the messages that waited in a queue just made back into it, in order, with their
  /// priorities, through ckcont's copy `ours` (after the batch that made it, see ``finish``).
  func putMessagesBack(_ queue: MessageQueueImage, into ours: Int32) throws {
    let bytes = queue.messages.reduce(into: [UInt8]()) { $0 += $1.data }
    let result = ck_mq_fill(
      ours, bytes, queue.messages.map { UInt32($0.data.count) }, queue.messages.map(\.priority),
      Int32(queue.messages.count))
    guard result == 0 else {
      throw CKError(.failed, "cannot put the messages back in /\(queue.name): \(String(cString: strerror(-result)))")
    }
  }
}
