#include "loom_optimizers.h"

#include <math.h>

/* One version per instruction set, picked by the loader (as in loom_cells.c). */
#define LOOM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* Each buffer is read and written at element i only, so the loop is safe to vectorize. No
 * contraction into fused multiply-adds: the Swift oracle rounds every product. */
LOOM_CLONES void loom_adam(float *p, const float *g, float *m, float *v, long count, float b1, float b2, float eps,
                           float step_size, float inverse_root2, float decay, float shrink, int decoupled) {
#pragma clang fp contract(off)
    const float c1 = 1 - b1, c2 = 1 - b2;
    if (decoupled) {
#pragma clang loop vectorize(assume_safety)
        for (long i = 0; i < count; i++) {
            const float gi = g[i];
            p[i] *= shrink;
            m[i] = b1 * m[i] + c1 * gi;
            v[i] = b2 * v[i] + c2 * gi * gi;
            p[i] -= step_size * m[i] / (__builtin_elementwise_sqrt(v[i]) * inverse_root2 + eps);
        }
    } else {
#pragma clang loop vectorize(assume_safety)
        for (long i = 0; i < count; i++) {
            const float gi = g[i] + decay * p[i];
            m[i] = b1 * m[i] + c1 * gi;
            v[i] = b2 * v[i] + c2 * gi * gi;
            p[i] -= step_size * m[i] / (__builtin_elementwise_sqrt(v[i]) * inverse_root2 + eps);
        }
    }
}
