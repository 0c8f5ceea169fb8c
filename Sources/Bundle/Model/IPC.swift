import Foundation

/// `ipc.json`: the SysV objects of the container's own IPC namespace (CRIU's ipc-var, ipcns-shm,
/// ipcns-sem, ipcns-msg). They belong to the namespace, not to a process, and are recreated
/// with the same ids before any process is restored, so that ids kept in the processes' memory
/// stay right and shmat() finds the segments.
public struct SysVIPCImage: Codable, Sendable, Equatable {
  public var sharedMemory: [SysVSegmentImage]
  public var semaphoreSets: [SysVSemaphoreSetImage]
  public var messageQueues: [SysVMessageQueueImage]

  public init(
    sharedMemory: [SysVSegmentImage], semaphoreSets: [SysVSemaphoreSetImage], messageQueues: [SysVMessageQueueImage]
  ) {
    self.sharedMemory = sharedMemory
    self.semaphoreSets = semaphoreSets
    self.messageQueues = messageQueues
  }

  /// The member holding a segment's bytes.
  public static func contentsMember(ofSegment id: Int32) -> String { "ipc/shm-\(id).img" }

  public var isEmpty: Bool { sharedMemory.isEmpty && semaphoreSets.isEmpty && messageQueues.isEmpty }
}

/// What every SysV object has: its id, key (0 for IPC_PRIVATE), owner and mode.
public struct SysVOwnership: Codable, Sendable, Equatable {
  public var id: Int32
  public var key: Int32
  public var uid: UInt32
  public var gid: UInt32
  /// The low 9 bits: permissions (and, for a segment, SHM_DEST when it was removed while
  /// still attached).
  public var mode: UInt32

  public init(id: Int32, key: Int32, uid: UInt32, gid: UInt32, mode: UInt32) {
    self.id = id
    self.key = key
    self.uid = uid
    self.gid = gid
    self.mode = mode
  }
}

/// A shared memory segment; its bytes are the member ``SysVIPCImage/contentsMember(ofSegment:)``.
public struct SysVSegmentImage: Codable, Sendable, Equatable {
  public var owner: SysVOwnership
  public var size: UInt64
  /// Removed (IPC_RMID) while still attached: it goes once its last process detaches.
  public var removed: Bool

  public init(owner: SysVOwnership, size: UInt64, removed: Bool) {
    self.owner = owner
    self.size = size
    self.removed = removed
  }
}

/// A semaphore set and the value of each semaphore. (Undo adjustments of processes are not
/// kept: see the README.)
public struct SysVSemaphoreSetImage: Codable, Sendable, Equatable {
  public var owner: SysVOwnership
  public var values: [UInt16]

  public init(owner: SysVOwnership, values: [UInt16]) {
    self.owner = owner
    self.values = values
  }
}

/// A message queue, its byte limit and its messages in queue order.
public struct SysVMessageQueueImage: Codable, Sendable, Equatable {
  public var owner: SysVOwnership
  public var maxBytes: UInt64
  public var messages: [SysVMessageImage]

  public init(owner: SysVOwnership, maxBytes: UInt64, messages: [SysVMessageImage]) {
    self.owner = owner
    self.maxBytes = maxBytes
    self.messages = messages
  }
}

public struct SysVMessageImage: Codable, Sendable, Equatable {
  public var type: Int64
  public var text: Data

  public init(type: Int64, text: Data) {
    self.type = type
    self.text = text
  }
}
