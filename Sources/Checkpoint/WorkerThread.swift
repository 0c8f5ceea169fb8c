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
