#ifndef LOOM_VECTORIZE_H
#define LOOM_VECTORIZE_H

/* One version per instruction set; the dynamic loader picks one through an ifunc. */
#define LOOM_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))

/* For loops that read and write element i only: safe to vectorize even when an output buffer is
 * an input buffer (in-place use); without this clang's runtime overlap check sends in-place
 * calls down the scalar path (measured: 14x slower log). */
#define LOOM_ELEMENTWISE _Pragma("clang loop vectorize(assume_safety)")

#if defined(__x86_64__)
#include <immintrin.h>

/* Helpers of the AVX2 + FMA kernels (inlined into functions compiled for those extensions). */
#define LOOM_AVX2 __attribute__((target("avx2,fma"), always_inline)) static inline

/* The lanes j < remaining of 8 set (all of them from 8 on, none at 0 or below), for AVX2's
 * masked loads and stores of a tail. */
LOOM_AVX2 __m256i loom_lanes_below(long remaining) {
    int n = remaining >= 8 ? 8 : (remaining <= 0 ? 0 : (int)remaining);
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
#endif

#endif
