#include "loom_optimizers.h"
#include "loom_vectorize.h"

/* Each buffer is read and written at element i only. No contraction into fused multiply-adds:
 * the Swift oracle rounds every product. */
LOOM_CLONES void loom_adam(float *p, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
                           float step_size, float inverse_root2, float decay, float shrink, int decoupled) {
#pragma clang fp contract(off)
    const float c1 = 1 - b1, c2 = 1 - b2;
    LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) {
        float gi = g[i];
        if (decoupled) p[i] *= shrink;
        else gi += decay * p[i];
        m[i] = b1 * m[i] + c1 * gi;
        v[i] = b2 * v[i] + c2 * gi * gi;
        p[i] -= step_size * m[i] / (__builtin_elementwise_sqrt(v[i]) * inverse_root2 + eps);
    }
}
