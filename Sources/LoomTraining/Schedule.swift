import Foundation

/// A learning rate as a function of the update step (0-based).
public protocol LearningRateSchedule: Sendable {
    func learningRate(atStep step: Int) -> Double
}

/// The same rate at every step.
public struct ConstantSchedule: LearningRateSchedule {
    public var rate: Double
    public init(_ rate: Double) { self.rate = rate }
    public func learningRate(atStep step: Int) -> Double { rate }
}

/// rate * factor^(floor(step / every)) (PyTorch's StepLR).
public struct StepSchedule: LearningRateSchedule {
    public var rate: Double, factor: Double, every: Int
    public init(rate: Double, factor: Double = 0.1, every: Int) {
        self.rate = rate
        self.factor = factor
        self.every = max(every, 1)
    }
    public func learningRate(atStep step: Int) -> Double { rate * pow(factor, Double(step / every)) }
}

/// Cosine annealing from `rate` down to `minimum` over `totalSteps`, then `minimum`:
/// minimum + (rate - minimum) (1 + cos(pi t / T)) / 2.
public struct CosineSchedule: LearningRateSchedule {
    public var rate: Double, minimum: Double, totalSteps: Int
    public init(rate: Double, totalSteps: Int, minimum: Double = 0) {
        self.rate = rate
        self.minimum = minimum
        self.totalSteps = max(totalSteps, 1)
    }
    public func learningRate(atStep step: Int) -> Double {
        let t = Double(min(step, totalSteps)) / Double(totalSteps)
        return minimum + (rate - minimum) * (1 + cos(Double.pi * t)) / 2
    }
}

/// A linear warm-up from 0 over `steps`, then `schedule` (counted from the end of the warm-up).
public struct WarmupSchedule<Base: LearningRateSchedule>: LearningRateSchedule {
    public var steps: Int
    public var schedule: Base
    public init(steps: Int, then schedule: Base) {
        self.steps = max(steps, 0)
        self.schedule = schedule
    }
    public func learningRate(atStep step: Int) -> Double {
        if step < steps { return schedule.learningRate(atStep: 0) * Double(step + 1) / Double(steps) }
        return schedule.learningRate(atStep: step - steps)
    }
}
