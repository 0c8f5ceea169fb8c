import Bundle
import CKShim
import Foundation
import Glibc
import Linux

/// The SysV objects of a container's own IPC namespace, dumped and restored from a ckcont
/// thread that joined the namespace (setns changes only the calling thread's IPC namespace;
/// /proc/sysvipc and the *_next_id sysctls then show that namespace's).
///
/// Dump: the objects listed in /proc/sysvipc, each with IPC_STAT; a segment's bytes through a
/// read-only shmat into ckcont; semaphore values with GETALL; messages copied in queue order
/// with msgrcv(MSG_COPY), which leaves them queued.
/// Restore, into the new namespace before any process: each object created with the id it
/// had (writing the id to shm_next_id, sem_next_id or msg_next_id first), then filled, then
/// given its owner and mode. What cannot be restored: creator ids (the creator is ckcont),
/// times and last pids, and semaphore undo adjustments.
enum SysVIPC {
  /// The largest segment, semaphore set and message accepted from a bundle.
  static let maxSegmentSize: UInt64 = 1 << 40
  static let maxSemaphores = 32000
  static let maxMessageSize = 1 << 20

  /// What was dumped: the image and each segment's bytes by id.
  struct Captured {
    var image: SysVIPCImage
    var contents: [Int32: [UInt8]]
  }

  // MARK: Dump

  static func capture(namespaceOf pid: Int32) throws -> Captured {
    try NamespaceThread.run(in: "ipc", of: pid) {
      var captured = Captured(
        image: SysVIPCImage(sharedMemory: [], semaphoreSets: [], messageQueues: []), contents: [:])
      for id in try listedIDs("shm") {
        let perm = try stat(CK_IPC_SHM, id)
        let size = Int(perm.size)
        guard let address = ck_shm_attach(id, 0) else { throw error("shmat", "SysV segment \(id)") }
        defer { ck_shm_detach(address) }
        captured.contents[id] = Array(UnsafeRawBufferPointer(start: address, count: size))
        captured.image.sharedMemory.append(
          SysVSegmentImage(owner: owner(id, perm), size: perm.size, removed: perm.mode & UInt32(SHM_DEST) != 0))
      }
      for id in try listedIDs("sem") {
        let perm = try stat(CK_IPC_SEM, id)
        var values = [UInt16](repeating: 0, count: Int(perm.size))
        guard ck_sem_getall(id, &values) == 0 else { throw error("semctl GETALL", "SysV semaphore set \(id)") }
        captured.image.semaphoreSets.append(SysVSemaphoreSetImage(owner: owner(id, perm), values: values))
      }
      let capacity = max(
        Int(
          (try? PseudoFile.read("/proc/sys/kernel/msgmax")).flatMap {
            Int($0.trimmingCharacters(in: .whitespacesAndNewlines))
          } ?? 8192), 8192)
      var text = [UInt8](repeating: 0, count: capacity)
      for id in try listedIDs("msg") {
        let perm = try stat(CK_IPC_MSG, id)
        var messages: [SysVMessageImage] = []
        for index in 0..<Int(perm.count) {
          var type = 0
          let n = ck_msg_copy(id, index, &type, &text, capacity)
          guard n >= 0 else { throw error("msgrcv MSG_COPY", "message \(index) of SysV queue \(id)") }
          messages.append(SysVMessageImage(type: Int64(type), text: Data(text[0..<n])))
        }
        captured.image.messageQueues.append(
          SysVMessageQueueImage(owner: owner(id, perm), maxBytes: perm.size, messages: messages))
      }
      return captured
    }
  }

  /// The ids in /proc/sysvipc/<kind> (second column), in the order listed.
  private static func listedIDs(_ kind: String) throws -> [Int32] {
    let text = try PseudoFile.read("/proc/sysvipc/\(kind)")
    return try text.split(separator: "\n").dropFirst().map { line in
      let columns = line.split(separator: " ", omittingEmptySubsequences: true)
      guard columns.count > 2, let id = Int32(columns[1]) else {
        throw CKError(.failed, "cannot read /proc/sysvipc/\(kind): unexpected line '\(line)'")
      }
      return id
    }
  }

  private static func stat(_ kind: Int, _ id: Int32) throws -> ck_ipc_perm {
    var perm = ck_ipc_perm()
    guard ck_ipc_stat(Int32(kind), id, &perm) == 0 else { throw error("IPC_STAT", "SysV object \(id)") }
    return perm
  }

  private static func owner(_ id: Int32, _ perm: ck_ipc_perm) -> SysVOwnership {
    SysVOwnership(id: id, key: perm.key, uid: perm.uid, gid: perm.gid, mode: perm.mode & 0o1777)
  }

  // MARK: Restore

  /// Recreates every object in the (new, empty) IPC namespace of `pid`; `contents` gives
  /// each segment's bytes. Segments that were removed while attached stay until
  /// ``removeDetached(_:namespaceOf:)``, once the processes have attached them again.
  static func restore(_ image: SysVIPCImage, contents: [Int32: UnsafeRawBufferPointer], namespaceOf pid: Int32) throws {
    try NamespaceThread.run(in: "ipc", of: pid) {
      for segment in image.sharedMemory.sorted(by: { $0.owner.id < $1.owner.id }) {
        let id = try create(CK_IPC_SHM, "shm", segment.owner, size: segment.size)
        guard let bytes = contents[id], bytes.count == Int(segment.size) else {
          throw CKError(.badInput, "the bundle lacks the bytes of SysV segment \(id)")
        }
        guard let address = ck_shm_attach(id, 1) else { throw error("shmat", "SysV segment \(id)") }
        if let base = bytes.baseAddress { address.copyMemory(from: base, byteCount: bytes.count) }
        ck_shm_detach(address)
        try setOwner(CK_IPC_SHM, segment.owner, maxBytes: 0)
      }
      for set in image.semaphoreSets.sorted(by: { $0.owner.id < $1.owner.id }) {
        let id = try create(CK_IPC_SEM, "sem", set.owner, size: UInt64(set.values.count))
        guard ck_sem_setall(id, set.values) == 0 else { throw error("semctl SETALL", "SysV semaphore set \(id)") }
        try setOwner(CK_IPC_SEM, set.owner, maxBytes: 0)
      }
      for queue in image.messageQueues.sorted(by: { $0.owner.id < $1.owner.id }) {
        let id = try create(CK_IPC_MSG, "msg", queue.owner, size: 0)
        // The limit first: the messages may hold more than the default.
        try setOwner(CK_IPC_MSG, queue.owner, maxBytes: queue.maxBytes)
        for message in queue.messages {
          let sent = message.text.withUnsafeBytes { ck_msg_send(id, Int(message.type), $0.baseAddress, $0.count) }
          guard sent == 0 else { throw error("msgsnd", "SysV queue \(id)") }
        }
      }
    }
  }

  /// Removes the segments that had been removed while attached: they live on while attached.
  static func removeDetached(_ image: SysVIPCImage, namespaceOf pid: Int32) throws {
    let removed = image.sharedMemory.filter(\.removed)
    guard !removed.isEmpty else { return }
    try NamespaceThread.run(in: "ipc", of: pid) {
      for segment in removed where ck_ipc_remove(Int32(CK_IPC_SHM), segment.owner.id) != 0 {
        throw error("shmctl IPC_RMID", "SysV segment \(segment.owner.id)")
      }
    }
  }

  /// Creates an object with the dumped id: the namespace's next id is set just before.
  private static func create(_ kind: Int, _ name: String, _ owner: SysVOwnership, size: UInt64) throws -> Int32 {
    let sysctl = "/proc/sys/kernel/\(name)_next_id"
    let nextID = try OwnedDescriptor(opening: sysctl, flags: O_WRONLY | O_CLOEXEC)
    let text = Array("\(owner.id)".utf8)
    _ = try syscallChecked("write", sysctl) { write(nextID.raw, text, text.count) }
    let id = ck_ipc_create(Int32(kind), owner.key, size, owner.mode & 0o777)
    guard id >= 0 else { throw error("\(name)get", "SysV object \(owner.id) (key \(owner.key))") }
    guard id == owner.id else {
      _ = ck_ipc_remove(Int32(kind), id)
      throw CKError(.failed, "SysV object \(owner.id) was created as \(id) in the new IPC namespace")
    }
    return id
  }

  private static func setOwner(_ kind: Int, _ owner: SysVOwnership, maxBytes: UInt64) throws {
    var perm = ck_ipc_perm(key: owner.key, uid: owner.uid, gid: owner.gid, mode: owner.mode, size: maxBytes, count: 0)
    guard ck_ipc_set(Int32(kind), owner.id, &perm) == 0 else { throw error("IPC_SET", "SysV object \(owner.id)") }
  }

  private static func error(_ call: String, _ subject: String) -> SyscallError {
    SyscallError(call, subject, .init(rawValue: errno))
  }
}
