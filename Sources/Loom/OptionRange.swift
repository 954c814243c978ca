/// A command-line value outside its range: the message names the option, the range and the value.
public struct OptionRangeError: Error, CustomStringConvertible, Equatable {
    public var description: String
}

/// One validation rule for every numeric option of `loom` and the recipes, so that an
/// impossible value is refused with the same words everywhere instead of trapping later.
public enum OptionRange {
    /// Throws unless `value` lies in `range` ("--beam must be in 1...256, got -5").
    public static func check<T: Comparable>(_ option: String, _ value: T, in range: ClosedRange<T>) throws {
        guard range.contains(value) else { throw OptionRangeError(description: "\(option) must be in \(range.lowerBound)...\(range.upperBound), got \(value)") }
    }

    /// Throws unless `value` is finite and in `range` (NaN fails every comparison, so it is named).
    public static func check(_ option: String, _ value: Double, in range: ClosedRange<Double>) throws {
        guard value.isFinite, range.contains(value) else {
            throw OptionRangeError(description: "\(option) must be a number in \(range.lowerBound)...\(range.upperBound), got \(value)")
        }
    }

    /// Throws for an empty path.
    public static func path(_ option: String, _ value: String) throws {
        guard !value.isEmpty else { throw OptionRangeError(description: "\(option) needs a path, got an empty string") }
    }
}
