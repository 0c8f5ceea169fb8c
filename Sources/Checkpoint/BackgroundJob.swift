import Foundation
import Linux

/// One piece of work on a thread of its own, started now and awaited later: work that
/// blocks in the kernel (a cgroup move waiting out an RCU grace period) overlaps ckcont's.
/// The job never outlives its owner: dropped unawaited (an error thrown past it), it waits
/// for the thread first, so nothing the job does happens after the caller has moved on.
final class BackgroundJob<T> {
  /// What the thread and the owner share: the result, written before `done` is signalled.
  private final class Outcome: @unchecked Sendable {
    var result: Result<T, any Error>?
    let done = DispatchSemaphore(value: 0)
  }
  private let outcome = Outcome()
  private var awaited = false

  /// Starts `body` on a new thread called `name`.
  init(named name: String, _ body: @escaping () throws -> T) {
    nonisolated(unsafe) let work = body
    let outcome = outcome
    let thread = Thread {
      defer { outcome.done.signal() }
      outcome.result = Result { try work() }
    }
    thread.name = name
    thread.start()
  }

  /// Waits for the job (at once if it is done) and returns its result or throws its error;
  /// may be called again.
  func wait() throws -> T {
    if !awaited {
      outcome.done.wait()
      awaited = true
    }
    guard let result = outcome.result else { throw CKError(.failed, "a background job did not run") }
    return try result.get()
  }

  deinit {
    if !awaited { outcome.done.wait() }
  }
}
