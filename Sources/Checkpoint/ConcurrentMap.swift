import Foundation

extension Array {
  /// `transform` of every element, spread over the cores (DispatchQueue.concurrentPerform),
  /// each result or error in the element's place: callers report errors in order, as a
  /// loop would have met them.
  func concurrentMap<T, E: Error>(_ transform: (Element) throws(E) -> T) -> [Result<T, E>] {
    // Into memory of fixed place, each iteration writing only its own slot: threads
    // assigning to elements of one Array race on its copy-on-write check.
    nonisolated(unsafe) let slots = UnsafeMutableBufferPointer<Result<T, E>?>.allocate(capacity: count)
    slots.initialize(repeating: nil)
    defer {
      _ = slots.deinitialize()
      slots.deallocate()
    }
    nonisolated(unsafe) let elements = self
    withoutActuallyEscaping(transform) { transform in
      nonisolated(unsafe) let transform = transform
      DispatchQueue.concurrentPerform(iterations: elements.count) { index in
        slots[index] = Result { () throws(E) in try transform(elements[index]) }
      }
    }
    return slots.map { slot in
      guard let slot else { preconditionFailure("concurrentPerform ran every iteration") }
      return slot
    }
  }
}
