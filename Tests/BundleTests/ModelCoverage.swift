import Foundation

/// Which optional fields of a model value are never set anywhere in it, found by reflection:
/// a sample meant to hold every field must leave none nil, so that a field added to the
/// model without being added to the sample (and to the hand-written JSON) fails a test.
enum ModelCoverage {
  /// "Type.field" of every optional that is nil everywhere in `value`.
  static func neverSet(in value: Any) -> Set<String> {
    var seenNil: Set<String> = []
    var seenSet: Set<String> = []
    walk(value, seenNil: &seenNil, seenSet: &seenSet)
    return seenNil.subtracting(seenSet)
  }

  private static func walk(_ value: Any, seenNil: inout Set<String>, seenSet: inout Set<String>) {
    // Leaves: their mirrors show storage, not fields of the model.
    if value is String || value is Data || value is any Numeric || value is Bool { return }
    let mirror = Mirror(reflecting: value)
    let owner = String(describing: mirror.subjectType)
    for child in mirror.children {
      let inner = Mirror(reflecting: child.value)
      if inner.displayStyle == .optional {
        let name = "\(owner).\(child.label ?? "?")"
        if let wrapped = inner.children.first?.value {
          seenSet.insert(name)
          walk(wrapped, seenNil: &seenNil, seenSet: &seenSet)
        } else {
          seenNil.insert(name)
        }
      } else {
        walk(child.value, seenNil: &seenNil, seenSet: &seenSet)
      }
    }
  }
}
