import Foundation

/// In-place parameter updates on raw buffers, one pass over each parameter per step.
///
/// Shapes: every buffer has the parameter's element count n. `gradient` is read only;
/// the moment buffers are updated in place. Hyperparameters arrive in Double and are rounded
/// once per call.
public enum OptimizerKernels {
    /// SGD with momentum (PyTorch's formulation):
    /// g' = g + decay * p; buf = momentum * buf + g'; p -= lr * (nesterov ? g' + momentum * buf : buf).
    /// With momentum 0, `velocity` is not touched.
    @inline(__always)
    public static func sgd<S: TensorScalar>(
        parameter p: UnsafeMutablePointer<S>, gradient g: UnsafePointer<S>, velocity v: UnsafeMutablePointer<S>,
        count n: Int, learningRate: Double, momentum: Double, weightDecay: Double, nesterov: Bool
    ) {
        let lr = S(learningRate), mu = S(momentum), wd = S(weightDecay)
        if momentum == 0 {
            for i in 0..<n { p[i] -= lr * (g[i] + wd * p[i]) }
            return
        }
        for i in 0..<n {
            let gi = g[i] + wd * p[i]
            v[i] = mu * v[i] + gi
            p[i] -= lr * (nesterov ? gi + mu * v[i] : v[i])
        }
    }

    /// An exponential moving average of the weights: a = d a + (1 - d) p.
    @inline(__always)
    public static func movingAverage<S: TensorScalar>(_ a: UnsafeMutablePointer<S>, toward p: UnsafePointer<S>, count n: Int, decay: Double) {
        let d = S(decay), e = S(1 - decay)
        for i in 0..<n { a[i] = d * a[i] + e * p[i] }
    }

    /// Adam (Kingma and Ba) with bias correction, as PyTorch computes it:
    /// m = b1 m + (1 - b1) g; v = b2 v + (1 - b2) g^2;
    /// p -= lr * (m / (1 - b1^t)) / (sqrt(v / (1 - b2^t)) + eps).
    /// `decoupledDecay` (AdamW) multiplies p by (1 - lr * decay) first; otherwise decay is added to g.
    @inline(__always)
    public static func adam<S: TensorScalar>(
        parameter p: UnsafeMutablePointer<S>, gradient g: UnsafePointer<S>,
        firstMoment m: UnsafeMutablePointer<S>, secondMoment v: UnsafeMutablePointer<S>, count n: Int,
        learningRate: Double, beta1: Double, beta2: Double, epsilon: Double, step t: Int,
        weightDecay: Double, decoupledDecay: Bool
    ) {
        let b1 = S(beta1), b2 = S(beta2), eps = S(epsilon)
        let factors = adamFactors(learningRate: learningRate, beta1: beta1, beta2: beta2, step: t, weightDecay: weightDecay)
        let stepSize = S(factors.stepSize), inverseRoot2 = S(factors.inverseRoot2)
        let wd = S(weightDecay), shrink = S(factors.shrink)
        for i in 0..<n {
            var gi = g[i]
            if decoupledDecay { p[i] *= shrink } else { gi += wd * p[i] }
            m[i] = b1 * m[i] + (1 - b1) * gi
            v[i] = b2 * v[i] + (1 - b2) * gi * gi
            p[i] -= stepSize * m[i] / (S.elementarySqrt(v[i]) * inverseRoot2 + eps)
        }
    }

    /// Adam's per-step factors: the step size lr / (1 - b1^t), 1 / sqrt(1 - b2^t), and AdamW's
    /// shrink factor 1 - lr decay.
    public static func adamFactors(learningRate: Double, beta1: Double, beta2: Double, step t: Int, weightDecay: Double)
        -> (stepSize: Double, inverseRoot2: Double, shrink: Double) {
        let correction1 = 1 - pow(beta1, Double(t)), correction2 = 1 - pow(beta2, Double(t))
        return (learningRate / correction1, 1 / correction2.squareRoot(), 1 - learningRate * weightDecay)
    }

    /// RMSProp (PyTorch's formulation, uncentered):
    /// v = a v + (1 - a) g^2; buf = momentum * buf + g / (sqrt(v) + eps); p -= lr * buf.
    @inline(__always)
    public static func rmsprop<S: TensorScalar>(
        parameter p: UnsafeMutablePointer<S>, gradient g: UnsafePointer<S>, meanSquare v: UnsafeMutablePointer<S>,
        velocity buf: UnsafeMutablePointer<S>, count n: Int,
        learningRate: Double, alpha: Double, epsilon: Double, momentum: Double, weightDecay: Double
    ) {
        let lr = S(learningRate), a = S(alpha), eps = S(epsilon), mu = S(momentum), wd = S(weightDecay)
        for i in 0..<n {
            let gi = g[i] + wd * p[i]
            v[i] = a * v[i] + (1 - a) * gi * gi
            let update = gi / (S.elementarySqrt(v[i]) + eps)
            if momentum == 0 {
                p[i] -= lr * update
            } else {
                buf[i] = mu * buf[i] + update
                p[i] -= lr * buf[i]
            }
        }
    }
}
