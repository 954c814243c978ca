import ArgumentParser
import Foundation
import Loom

/// The addition corpus (corpora/addition/README.md): unique pairs "a+b" with a, b drawn
/// uniformly from 0 ..< 10^digits (each number's digit count uniform, as in the Keras example),
/// deterministic for a seed.
public enum AdditionCorpus {
    /// One question ("535+61"), its answer ("596") and the two numbers.
    public struct Pair: Sendable, Equatable {
        public var question: String
        public var answer: String
        public var a: Int, b: Int
    }

    public static func generate(digits: Int, pairs: Int, seed: UInt64) throws -> [Pair] {
        guard digits >= 1, digits <= 9 else { throw ValidationError("--digits must be 1...9") }
        let limit = Int(pow(10.0, Double(digits)))
        let possible = limit * limit
        guard pairs >= 1, pairs <= possible / 2 else { throw ValidationError("at most \(possible / 2) unique pairs of \(digits)-digit numbers") }
        var g = SeededGenerator(seed: seed)
        var seen = Set<Int>()
        var out: [Pair] = []
        func number() -> Int {
            // A digit count uniform in 1...digits, then digits uniform (as Keras's example).
            let length = Int(g.next() % UInt64(digits)) + 1
            var n = 0
            for _ in 0..<length { n = n * 10 + Int(g.next() % 10) }
            return n
        }
        while out.count < pairs {
            let (a, b) = (number(), number())
            guard seen.insert(a * limit + b).inserted else { continue }
            out.append(Pair(question: "\(a)+\(b)", answer: "\(a + b)", a: a, b: b))
        }
        return out
    }
}
