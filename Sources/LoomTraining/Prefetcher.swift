import Foundation
import LoomTensor

/// Collates the next batch on a background queue while the current step runs.
final class Prefetcher<Example, Batch>: @unchecked Sendable {
    let collate: ([Example]) throws -> Batch
    let enabled: Bool
    let queue = DispatchQueue(label: "loom.prefetch")
    var pending: DispatchWorkItem?
    var result: Result<Batch, Error>?
    var examples: [Example]?

    init(collate: @escaping ([Example]) throws -> Batch, enabled: Bool) {
        self.collate = collate
        self.enabled = enabled
    }

    /// An empty share (a distributed rank with nothing in a small last batch) collates to nil.
    func start(_ examples: [Example]) {
        guard enabled, !examples.isEmpty else { self.examples = examples; return }
        let item = DispatchWorkItem { [self] in result = Result { try collate(examples) } }
        pending = item
        queue.async(execute: item)
    }

    func take() throws -> Batch? {
        if let examples {
            self.examples = nil
            return examples.isEmpty ? nil : try collate(examples)
        }
        pending?.wait()
        pending = nil
        defer { result = nil }
        guard let result else { throw TrainingError.io("prefetch produced no batch") }
        return try result.get()
    }

    func cancel() {
        pending?.wait()
        pending = nil
        result = nil
    }
}
