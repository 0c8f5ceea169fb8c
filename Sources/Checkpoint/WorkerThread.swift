import Foundation
import Linux

/// One thread that runs submitted work in order, on the CPUs it is given, while the caller
/// goes on: a dump encodes each process's model while its tracing thread, held on one CPU
/// with the tasks, asks the next process for its state.
final class WorkerThread: @unchecked Sendable {
  // Guarded by `condition`: a condition variable, not a Mutex, as the thread sleeps until
  // work comes and the caller until the queue drains.
  private let condition = NSCondition()
  private var queue: [@Sendable () -> Void] = []
  private var busy = false
  private var stopped = false

  /// Starts the thread; it moves itself onto `cpus` first (threads inherit the CPUs of the
  /// one that creates them, which may be held on one).
  init(cpus: CPUSet?) {
    let thread = Thread { [self] in
      try? cpus?.apply(to: 0)
      run()
    }
    thread.name = "ckcont-worker"
    thread.start()
  }

  func submit(_ work: @escaping @Sendable () -> Void) {
    condition.lock()
    queue.append(work)
    condition.broadcast()
    condition.unlock()
  }

  /// Waits until everything submitted has run, and ends the thread.
  func finish() {
    condition.lock()
    while !queue.isEmpty || busy { condition.wait() }
    stopped = true
    condition.broadcast()
    condition.unlock()
  }

  private func run() {
    condition.lock()
    while true {
      while queue.isEmpty && !stopped { condition.wait() }
      if queue.isEmpty { break }
      let work = queue.removeFirst()
      busy = true
      condition.unlock()
      work()
      condition.lock()
      busy = false
      condition.broadcast()
    }
    condition.unlock()
  }
}

/// Work started on a thread of its own now and waited for later, while the caller does
/// something else.
final class Pending<Value>: @unchecked Sendable {
  private var outcome: Result<Value, any Error>?
  private let done = DispatchSemaphore(value: 0)

  init(named name: String, _ work: @escaping () throws -> Value) {
    nonisolated(unsafe) let work = work
    let thread = Thread { [self] in
      outcome = Result { try work() }
      done.signal()
    }
    thread.name = name
    thread.start()
  }

  /// The work's value, once it is done; may be asked again.
  func wait() throws -> Value {
    done.wait()
    done.signal()
    guard let outcome else { throw CKError(.failed, "a thread of ckcont's ended without its result") }
    return try outcome.get()
  }
}
