import Bundle
import Foundation
import Linux
import Synchronization

/// Encodes each process's core.json and mm.json on a thread of its own, on the CPUs the
/// tracing thread leaves free, while the capture asks the next process.
final class ModelEncoder: Sendable {
  private let worker: WorkerThread
  private let results = Mutex<[Int: Result<(core: Data, mm: Data), any Error>]>([:])

  /// Starts the encoding thread on `cpus`.
  init(cpus: CPUSet?) { worker = WorkerThread(cpus: cpus) }

  /// Queues the models of the process at `index` of the capture.
  func submit(_ index: Int, core: TaskCore, memory: MemoryImage) {
    worker.submit { [self] in
      let json = JSONEncoder()
      json.outputFormatting = [.sortedKeys]
      let result = Result { (core: try json.encode(core), mm: try memory.encodedJSON()) }
      results.withLock { $0[index] = result }
    }
  }

  /// Waits for everything queued and ends the thread (also on a failed capture's way out).
  func finish() { worker.finish() }

  /// The models of the processes `hostPids` names, in that order, once all are encoded.
  func models(of hostPids: [Int32]) throws -> [(core: Data, mm: Data)] {
    finish()
    let results = results.withLock { $0 }
    return try hostPids.indices.map { index in
      guard let result = results[index] else {
        throw CKError(.failed, "task \(hostPids[index]): its model was not encoded")
      }
      return try result.get()
    }
  }
}
