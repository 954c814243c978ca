#ifndef LOOM_OPTIMIZERS_H
#define LOOM_OPTIMIZERS_H

/* Float parameter updates, vectorized (the formulas of OptimizerKernels.swift, which stays the
 * version for Double and the oracle in the tests: same operations in the same order, no fused
 * multiply-adds, so the results are equal bit for bit).
 *
 * Adam over count elements, in place: with decoupled (AdamW) p *= shrink, else g' = g + decay p;
 * m = b1 m + (1 - b1) g'; v = b2 v + (1 - b2) g' g'; p -= step_size m / (sqrt(v) inverse_root2 + eps),
 * where step_size = lr / (1 - b1^t) and inverse_root2 = 1 / sqrt(1 - b2^t). */
void loom_adam(float *p, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
               float step_size, float inverse_root2, float decay, float shrink, int decoupled);

#endif
