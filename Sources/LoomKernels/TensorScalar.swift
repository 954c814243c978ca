import CBLAS
import CLoomKernels
import Foundation

/// The element types Loom computes in: `Float` for training and inference, `Double` for the
/// finite-difference gradient checks that hold every differentiable op to account.
///
/// Each requirement is a loop over raw buffers. The two conformances instantiate one generic
/// template each (so the loop body is written once and specialized twice); `Float` routes the
/// activations through the SIMD approximations of `Activations.swift`, `Double` through libm,
/// because `Double` is the checking precision, never a hot path.
public protocol TensorScalar: BinaryFloatingPoint, SIMDScalar, Sendable, Codable
where Self.RawSignificand: FixedWidthInteger {
    /// `c = alpha * op(a) * op(b) + beta * c`, row-major, through OpenBLAS.
    /// Shapes: op(a) [m, k], op(b) [k, n], c [m, n]; `lda`, `ldb`, `ldc` are row strides.
    static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Self, a: UnsafePointer<Self>, lda: Int,
        b: UnsafePointer<Self>, ldb: Int,
        beta: Self, c: UnsafeMutablePointer<Self>, ldc: Int)

    /// `out[i] = f(x[i])` for `i < count`; `out` may alias `x`.
    static func map(_ function: UnaryFunction, _ x: UnsafePointer<Self>, _ out: UnsafeMutablePointer<Self>, count: Int)

    /// `out[i] = a[i * strideA] (op) b[i * strideB]` for `i < count`; a stride of 0 broadcasts.
    static func combine(
        _ op: BinaryOperation, _ a: UnsafePointer<Self>, strideA: Int,
        _ b: UnsafePointer<Self>, strideB: Int, _ out: UnsafeMutablePointer<Self>, count: Int)

    /// `out[i] += a[i]`.
    static func accumulate(_ a: UnsafePointer<Self>, into out: UnsafeMutablePointer<Self>, count: Int)

    /// Applies one optimizer update in place (see `OptimizerKernels`); a requirement so that
    /// each element type runs a specialized loop.
    static func optimizerStep(_ update: OptimizerUpdate<Self>, parameter: UnsafeMutablePointer<Self>,
                              gradient: UnsafePointer<Self>, state: [UnsafeMutablePointer<Self>], count: Int)

    /// The scalar functions, for the few places that take one value at a time (a loss, a norm).
    static func elementaryExp(_ x: Self) -> Self
    static func elementaryLog(_ x: Self) -> Self
    static func elementarySqrt(_ x: Self) -> Self
}

/// Elementwise functions of one argument.
public enum UnaryFunction: Sendable {
    case exp, log, tanh, sigmoid, relu, negate, square, sqrt, abs, reciprocal
}

/// Elementwise operations of two arguments.
public enum BinaryOperation: Sendable {
    case add, subtract, multiply, divide, maximum, minimum
}

/// Which update `optimizerStep` applies, with its hyperparameters.
public enum OptimizerUpdate<S: TensorScalar> {
    /// state: [velocity]
    case sgd(learningRate: Double, momentum: Double, weightDecay: Double, nesterov: Bool)
    /// state: [first moment, second moment]
    case adam(learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, step: Int, weightDecay: Double, decoupled: Bool)
    /// state: [mean square, velocity]
    case rmsprop(learningRate: Double, alpha: Double, epsilon: Double, momentum: Double, weightDecay: Double)
    /// state: []. The weights' moving average: `parameter` is the average, `gradient` the
    /// current weights; average = decay average + (1 - decay) weights.
    case average(decay: Double)
}

@inline(__always)
private func optimizerTemplate<S: TensorScalar>(
    _ update: OptimizerUpdate<S>, _ p: UnsafeMutablePointer<S>, _ g: UnsafePointer<S>, _ state: [UnsafeMutablePointer<S>], _ n: Int
) {
    switch update {
    case let .sgd(lr, momentum, decay, nesterov):
        OptimizerKernels.sgd(parameter: p, gradient: g, velocity: state[0], count: n, learningRate: lr,
                             momentum: momentum, weightDecay: decay, nesterov: nesterov)
    case let .adam(lr, b1, b2, eps, t, decay, decoupled):
        OptimizerKernels.adam(parameter: p, gradient: g, firstMoment: state[0], secondMoment: state[1], count: n,
                              learningRate: lr, beta1: b1, beta2: b2, epsilon: eps, step: t,
                              weightDecay: decay, decoupledDecay: decoupled)
    case let .rmsprop(lr, alpha, eps, momentum, decay):
        OptimizerKernels.rmsprop(parameter: p, gradient: g, meanSquare: state[0], velocity: state[1], count: n,
                                 learningRate: lr, alpha: alpha, epsilon: eps, momentum: momentum, weightDecay: decay)
    case let .average(decay):
        OptimizerKernels.movingAverage(p, toward: g, count: n, decay: decay)
    }
}

@inline(__always)
private func blasTranspose(_ t: Bool) -> CBLAS_TRANSPOSE { t ? CblasTrans : CblasNoTrans }

extension Float: TensorScalar {
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        if m == 1 && n > 1 {
            // A row vector times a matrix is a matrix-vector product: sgemv, which OpenBLAS runs
            // several times faster than its small-gemm path (measured in seq2seq-decode).
            // c[n] = alpha op(b)^T a + beta c, with op(b) [k, n]: b stored [n, k] (transB) is used as is.
            // At beta = 0, c is cleared first: a gemm never reads c then (whatever it holds, NaN
            // included), and callers rely on that; gemv scales it by 0 in some OpenBLAS versions.
            if beta == 0 { memset(c, 0, n * MemoryLayout<Float>.stride) }
            cblas_sgemv(CblasRowMajor, transB ? CblasNoTrans : CblasTrans, blasint(transB ? n : k), blasint(transB ? k : n), alpha,
                        b, blasint(ldb), a, blasint(transA ? lda : 1), beta, c, 1)
            return
        }
        BLAS.split(m: m, n: n, k: k) { rows, columns in
            guard !rows.isEmpty, !columns.isEmpty else { return }
            // Rows of op(a) and c, columns of op(b) and c.
            let a = transA ? a + rows.lowerBound : a + rows.lowerBound * lda
            let b = transB ? b + columns.lowerBound * ldb : b + columns.lowerBound
            cblas_sgemm(
                CblasRowMajor, blasTranspose(transA), blasTranspose(transB),
                blasint(rows.count), blasint(columns.count), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta,
                c + rows.lowerBound * ldc + columns.lowerBound, blasint(ldc))
        }
    }

    public static func map(_ function: UnaryFunction, _ x: UnsafePointer<Float>, _ out: UnsafeMutablePointer<Float>, count: Int) {
        WorkerTeam.forEachPart(count) { r in
            let (x, out, count) = (x + r.lowerBound, out + r.lowerBound, r.count)
            switch function {
            case .exp: Activations.exp(x, out, count: count)
            case .tanh: Activations.tanh(x, out, count: count)
            case .sigmoid: Activations.sigmoid(x, out, count: count)
            default: mapTemplate(function, x, out, count: count)
            }
        }
    }

    public static func combine(
        _ op: BinaryOperation, _ a: UnsafePointer<Float>, strideA: Int,
        _ b: UnsafePointer<Float>, strideB: Int, _ out: UnsafeMutablePointer<Float>, count: Int
    ) {
        combineTemplate(op, a, strideA, b, strideB, out, count)
    }

    public static func accumulate(_ a: UnsafePointer<Float>, into out: UnsafeMutablePointer<Float>, count: Int) {
        accumulateTemplate(a, out, count)
    }

    public static func optimizerStep(_ update: OptimizerUpdate<Float>, parameter: UnsafeMutablePointer<Float>,
                                     gradient: UnsafePointer<Float>, state: [UnsafeMutablePointer<Float>], count: Int) {
        guard case let .adam(lr, beta1, beta2, epsilon, t, decay, decoupled) = update else {
            optimizerTemplate(update, parameter, gradient, state, count)
            return
        }
        // Adam in C, vectorized (the Swift loop stays scalar: 3.5 ns per element), and split
        // across the worker team for large parameters (a hand-over costs about a microsecond).
        let factors = OptimizerKernels.adamFactors(learningRate: lr, beta1: beta1, beta2: beta2, step: t, weightDecay: decay)
        let (m, v) = (state[0], state[1])
        func part(_ range: Range<Int>) {
            let i = range.lowerBound
            loom_adam(parameter + i, gradient + i, m + i, v + i, range.count, Float(beta1), Float(beta2), Float(epsilon),
                      Float(factors.stepSize), Float(factors.inverseRoot2), Float(decay), Float(factors.shrink), decoupled ? 1 : 0)
        }
        WorkerTeam.forEachPart(count, part)
    }

    public static func elementaryExp(_ x: Float) -> Float { Foundation.exp(x) }
    public static func elementaryLog(_ x: Float) -> Float { Foundation.log(x) }
    public static func elementarySqrt(_ x: Float) -> Float { x.squareRoot() }
}

extension Double: TensorScalar {
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Double, a: UnsafePointer<Double>, lda: Int,
        b: UnsafePointer<Double>, ldb: Int,
        beta: Double, c: UnsafeMutablePointer<Double>, ldc: Int
    ) {
        cblas_dgemm(
            CblasRowMajor, blasTranspose(transA), blasTranspose(transB),
            blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    public static func map(_ function: UnaryFunction, _ x: UnsafePointer<Double>, _ out: UnsafeMutablePointer<Double>, count: Int) {
        WorkerTeam.forEachPart(count) { r in mapTemplate(function, x + r.lowerBound, out + r.lowerBound, count: r.count) }
    }

    public static func combine(
        _ op: BinaryOperation, _ a: UnsafePointer<Double>, strideA: Int,
        _ b: UnsafePointer<Double>, strideB: Int, _ out: UnsafeMutablePointer<Double>, count: Int
    ) {
        combineTemplate(op, a, strideA, b, strideB, out, count)
    }

    public static func accumulate(_ a: UnsafePointer<Double>, into out: UnsafeMutablePointer<Double>, count: Int) {
        accumulateTemplate(a, out, count)
    }

    public static func optimizerStep(_ update: OptimizerUpdate<Double>, parameter: UnsafeMutablePointer<Double>,
                                     gradient: UnsafePointer<Double>, state: [UnsafeMutablePointer<Double>], count: Int) {
        optimizerTemplate(update, parameter, gradient, state, count)
    }

    public static func elementaryExp(_ x: Double) -> Double { Foundation.exp(x) }
    public static func elementaryLog(_ x: Double) -> Double { Foundation.log(x) }
    public static func elementarySqrt(_ x: Double) -> Double { x.squareRoot() }
}

/// The scalar loop of `map`, written once; libm for the transcendental functions.
@inline(__always)
private func mapTemplate<S: TensorScalar>(_ function: UnaryFunction, _ x: UnsafePointer<S>, _ out: UnsafeMutablePointer<S>, count: Int) {
    switch function {
    case .exp: for i in 0..<count { out[i] = S.elementaryExp(x[i]) }
    case .log: for i in 0..<count { out[i] = S.elementaryLog(x[i]) }
    case .tanh: for i in 0..<count { out[i] = S(Foundation.tanh(Double(x[i]))) }
    case .sigmoid: for i in 0..<count { out[i] = 1 / (1 + S.elementaryExp(-x[i])) }
    case .relu: for i in 0..<count { out[i] = x[i] > 0 ? x[i] : 0 }
    case .negate: for i in 0..<count { out[i] = -x[i] }
    case .square: for i in 0..<count { out[i] = x[i] * x[i] }
    case .sqrt: for i in 0..<count { out[i] = x[i].squareRoot() }
    case .abs: for i in 0..<count { out[i] = Swift.abs(x[i]) }
    case .reciprocal: for i in 0..<count { out[i] = 1 / x[i] }
    }
}

/// `combine` and `accumulate`, written once: large passes in parts on the worker team.
@inline(__always)
private func combineTemplate<S: TensorScalar>(
    _ op: BinaryOperation, _ a: UnsafePointer<S>, _ sa: Int, _ b: UnsafePointer<S>, _ sb: Int,
    _ out: UnsafeMutablePointer<S>, _ n: Int
) {
    WorkerTeam.forEachPart(n) { r in
        let i = r.lowerBound
        combineLoop(op, a + i * sa, sa, b + i * sb, sb, out + i, r.count)
    }
}

@inline(__always)
private func accumulateTemplate<S: TensorScalar>(_ a: UnsafePointer<S>, _ out: UnsafeMutablePointer<S>, _ n: Int) {
    WorkerTeam.forEachPart(n) { r in
        for i in r { out[i] += a[i] }
    }
}

/// The strided loop of `combine`, with the unit-stride cases split out so the compiler
/// vectorizes them.
@inline(__always)
private func combineLoop<S: TensorScalar>(
    _ op: BinaryOperation, _ a: UnsafePointer<S>, _ sa: Int, _ b: UnsafePointer<S>, _ sb: Int,
    _ out: UnsafeMutablePointer<S>, _ n: Int
) {
    @inline(__always) func loop(_ f: (S, S) -> S) {
        if sa == 1 && sb == 1 {
            for i in 0..<n { out[i] = f(a[i], b[i]) }
        } else if sa == 1 && sb == 0 {
            let y = b[0]
            for i in 0..<n { out[i] = f(a[i], y) }
        } else if sa == 0 && sb == 1 {
            let x = a[0]
            for i in 0..<n { out[i] = f(x, b[i]) }
        } else {
            for i in 0..<n { out[i] = f(a[i * sa], b[i * sb]) }
        }
    }
    switch op {
    case .add: loop { $0 + $1 }
    case .subtract: loop { $0 - $1 }
    case .multiply: loop { $0 * $1 }
    case .divide: loop { $0 / $1 }
    // NaN in either argument propagates, as in PyTorch's maximum/minimum.
    case .maximum: loop { $0.isNaN || $0 >= $1 ? $0 : $1 }
    case .minimum: loop { $0.isNaN || $0 <= $1 ? $0 : $1 }
    }
}
