#include "loom_gemm.h"
#include "loom_vectorize.h"

#include <immintrin.h>
#include <string.h>

int loom_gemm_kernel(void) {
    static int known = -1; /* racing first calls store the same value */
    if (known < 0) {
        __builtin_cpu_init();
        known = __builtin_cpu_supports("avx512f") ? 2 : (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) ? 1 : 0;
    }
    return known;
}

size_t loom_packed_size(int n, int k) {
    size_t panels = (size_t)(n + LOOM_PANEL - 1) / LOOM_PANEL;
    return panels * LOOM_PANEL * (size_t)k;
}

void loom_pack(int transposed, int n, int k, const float *w, int ldw, float *packed) {
    loom_pack_panels(transposed, n, k, w, ldw, packed, 0, (n + LOOM_PANEL - 1) / LOOM_PANEL);
}

void loom_pack_panels(int transposed, int n, int k, const float *w, int ldw, float *packed, int first, int end) {
    for (int p = first; p < end; p++) {
        float *panel = packed + (size_t)p * LOOM_PANEL * k;
        for (int i = 0; i < k; i++) {
            for (int j = 0; j < LOOM_PANEL; j++) {
                int col = p * LOOM_PANEL + j;
                float v = 0;
                if (col < n) v = transposed ? w[(size_t)col * ldw + i] : w[(size_t)i * ldw + col];
                panel[(size_t)i * LOOM_PANEL + j] = v;
            }
        }
    }
}

void loom_gemm_reference(int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta,
                         float *c, int ldc) {
    for (int r = 0; r < m; r++) {
        for (int col = n0; col < n1; col++) {
            const float *panel = packed + (size_t)(col / LOOM_PANEL) * LOOM_PANEL * k;
            double sum = 0;
            for (int i = 0; i < k; i++) sum += (double)a[(size_t)r * lda + i] * panel[(size_t)i * LOOM_PANEL + col % LOOM_PANEL];
            float *out = c + (size_t)r * ldc + col;
            *out = (beta != 0 ? *out : 0) + (float)sum;
        }
    }
}

/* One tile: MR rows by two panels (32 columns), accumulated over all k in registers.
 * MR is a compile-time constant at every call site, so the loops unroll fully and the
 * 2 * MR accumulators live in zmm registers (16 of the 32 at MR = 8). */
__attribute__((target("avx512f"), always_inline)) static inline void tile(
    const int MR, int k, const float *a, int lda, const float *p0, const float *p1, int two,
    __mmask16 mask0, __mmask16 mask1, float beta, float *c, int ldc) {
    __m512 acc0[8], acc1[8];
    /* One pointer per row, indexed by i. Left to itself the compiler derives the rows from one
     * another, a chain of eight address adds per step, and the loop then issues more
     * instructions than its 16 multiply-adds need; the empty asm hides how the pointers relate. */
    const float *ar[8];
    for (int r = 0; r < MR; r++) {
        ar[r] = a + (size_t)r * lda;
        __asm__("" : "+r"(ar[r]));
    }
    for (int r = 0; r < MR; r++) { acc0[r] = _mm512_setzero_ps(); acc1[r] = _mm512_setzero_ps(); }
    /* The C rows the tile adds to are often cold (a recurrent step's rows of the input
     * projection, written long before): fetched now, they arrive during the k loop instead of
     * stalling the stores at its end (+9% on a medium LSTM step's product, paired runs). */
    if (beta != 0) {
        for (int r = 0; r < MR; r++) {
            _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
            if (two) _mm_prefetch((const char *)(c + (size_t)r * ldc + LOOM_PANEL), _MM_HINT_T0);
        }
    }
    /* Unrolled four times: the loop's counter and pointer updates then take fewer of the
     * issue slots the multiply-adds compete for (the same sums in the same order). */
#pragma clang loop unroll_count(4)
    for (int i = 0; i < k; i++) {
        __m512 b0 = _mm512_loadu_ps(p0 + (size_t)i * LOOM_PANEL);
        __m512 b1 = two ? _mm512_loadu_ps(p1 + (size_t)i * LOOM_PANEL) : _mm512_setzero_ps();
        for (int r = 0; r < MR; r++) {
            __m512 x = _mm512_set1_ps(ar[r][i]);
            acc0[r] = _mm512_fmadd_ps(x, b0, acc0[r]);
            if (two) acc1[r] = _mm512_fmadd_ps(x, b1, acc1[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        float *row = c + (size_t)r * ldc;
        if (beta != 0) {
            acc0[r] = _mm512_add_ps(acc0[r], _mm512_maskz_loadu_ps(mask0, row));
            if (two) acc1[r] = _mm512_add_ps(acc1[r], _mm512_maskz_loadu_ps(mask1, row + LOOM_PANEL));
        }
        _mm512_mask_storeu_ps(row, mask0, acc0[r]);
        if (two) _mm512_mask_storeu_ps(row + LOOM_PANEL, mask1, acc1[r]);
    }
}

/* All rows of one column block: tiles of 8 rows, then one tile for the remainder. */
__attribute__((target("avx512f"), always_inline)) static inline void rows(
    int m, int k, const float *a, int lda, const float *p0, const float *p1, const int two,
    __mmask16 mask0, __mmask16 mask1, float beta, float *c, int ldc) {
    int r = 0;
    for (; r + 8 <= m; r += 8) tile(8, k, a + (size_t)r * lda, lda, p0, p1, two, mask0, mask1, beta, c + (size_t)r * ldc, ldc);
    const float *ar = a + (size_t)r * lda;
    float *cr = c + (size_t)r * ldc;
    switch (m - r) {
    case 7: tile(7, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 6: tile(6, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 5: tile(5, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 4: tile(4, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 3: tile(3, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 2: tile(2, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    case 1: tile(1, k, ar, lda, p0, p1, two, mask0, mask1, beta, cr, ldc); break;
    default: break;
    }
}

static inline __mmask16 columns_mask(int remaining) {
    return remaining >= LOOM_PANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << (remaining > 0 ? remaining : 0)) - 1u);
}

__attribute__((target("avx512f"))) static void gemm_packed_avx512(int m, int n0, int n1, int k, const float *a, int lda,
                                                                 const float *packed, float beta, float *c, int ldc) {
    const size_t panel_size = (size_t)LOOM_PANEL * k;
    for (int col = n0; col < n1; col += 2 * LOOM_PANEL) {
        const float *p0 = packed + (size_t)(col / LOOM_PANEL) * panel_size;
        int two = col + LOOM_PANEL < n1;
        const float *p1 = two ? p0 + panel_size : p0;
        __mmask16 mask0 = columns_mask(n1 - col), mask1 = columns_mask(n1 - col - LOOM_PANEL);
        if (two) rows(m, k, a, lda, p0, p1, 1, mask0, mask1, beta, c + col, ldc);
        else rows(m, k, a, lda, p0, p1, 0, mask0, mask1, beta, c + col, ldc);
    }
}

/* ---- AVX2 + FMA (CPUs without AVX-512, e.g. AMD Zen 2/3) ----
 * 16 ymm registers: a tile is MR <= 6 rows by one panel (two ymm of 8 columns), 2 * MR
 * accumulators plus the panel's two vectors and one broadcast. Each output is the same chain of
 * fused multiply-adds over i = 0 ..< k as in the AVX-512 tile, so both kernels give the same bits. */

LOOM_AVX2 void tile_avx2(const int MR, int k, const float *a, int lda, const float *p, const int full, __m256i mask0,
                         __m256i mask1, float beta, float *c, int ldc) {
    __m256 acc0[6], acc1[6];
    const float *ar[6]; /* one pointer per row, hidden from the optimizer as in the AVX-512 tile */
    for (int r = 0; r < MR; r++) {
        ar[r] = a + (size_t)r * lda;
        __asm__("" : "+r"(ar[r]));
    }
    for (int r = 0; r < MR; r++) { acc0[r] = _mm256_setzero_ps(); acc1[r] = _mm256_setzero_ps(); }
    if (beta != 0) {
        for (int r = 0; r < MR; r++) _mm_prefetch((const char *)(c + (size_t)r * ldc), _MM_HINT_T0);
    }
#pragma clang loop unroll_count(4)
    for (int i = 0; i < k; i++) {
        __m256 b0 = _mm256_loadu_ps(p + (size_t)i * LOOM_PANEL), b1 = _mm256_loadu_ps(p + (size_t)i * LOOM_PANEL + 8);
        for (int r = 0; r < MR; r++) {
            __m256 x = _mm256_broadcast_ss(ar[r] + i);
            acc0[r] = _mm256_fmadd_ps(x, b0, acc0[r]);
            acc1[r] = _mm256_fmadd_ps(x, b1, acc1[r]);
        }
    }
    for (int r = 0; r < MR; r++) {
        float *row = c + (size_t)r * ldc;
        if (full) {
            if (beta != 0) {
                acc0[r] = _mm256_add_ps(acc0[r], _mm256_loadu_ps(row));
                acc1[r] = _mm256_add_ps(acc1[r], _mm256_loadu_ps(row + 8));
            }
            _mm256_storeu_ps(row, acc0[r]);
            _mm256_storeu_ps(row + 8, acc1[r]);
        } else {
            if (beta != 0) {
                acc0[r] = _mm256_add_ps(acc0[r], _mm256_maskload_ps(row, mask0));
                acc1[r] = _mm256_add_ps(acc1[r], _mm256_maskload_ps(row + 8, mask1));
            }
            _mm256_maskstore_ps(row, mask0, acc0[r]);
            _mm256_maskstore_ps(row + 8, mask1, acc1[r]);
        }
    }
}

/* All rows of one panel in tiles of at most 6 rows, as even as they go (32 rows: 6, 6, 5, 5, 5, 5):
 * a tile of fewer than 4 rows has fewer than 8 independent accumulators, too few to cover the
 * multiply-add latency. */
LOOM_AVX2 void rows_avx2(int m, int k, const float *a, int lda, const float *p, const int full, __m256i mask0,
                         __m256i mask1, float beta, float *c, int ldc) {
    int tiles = (m + 5) / 6, base = m / tiles, extra = m % tiles, r = 0;
    for (int t = 0; t < tiles; t++) {
        int size = base + (t < extra);
        const float *ar = a + (size_t)r * lda;
        float *cr = c + (size_t)r * ldc;
        switch (size) {
        case 6: tile_avx2(6, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        case 5: tile_avx2(5, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        case 4: tile_avx2(4, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        case 3: tile_avx2(3, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        case 2: tile_avx2(2, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        default: tile_avx2(1, k, ar, lda, p, full, mask0, mask1, beta, cr, ldc); break;
        }
        r += size;
    }
}

__attribute__((target("avx2,fma"))) static void gemm_packed_avx2(int m, int n0, int n1, int k, const float *a, int lda,
                                                                const float *packed, float beta, float *c, int ldc) {
    const size_t panel_size = (size_t)LOOM_PANEL * k;
    for (int col = n0; col < n1; col += LOOM_PANEL) {
        const float *p = packed + (size_t)(col / LOOM_PANEL) * panel_size;
        if (col + LOOM_PANEL <= n1) {
            __m256i all = _mm256_set1_epi32(-1);
            rows_avx2(m, k, a, lda, p, 1, all, all, beta, c + col, ldc);
        } else {
            rows_avx2(m, k, a, lda, p, 0, loom_lanes_below(n1 - col), loom_lanes_below(n1 - col - 8), beta, c + col, ldc);
        }
    }
}

void loom_gemm_packed_with(int kernel, int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta,
                           float *c, int ldc) {
    if (kernel == 2) gemm_packed_avx512(m, n0, n1, k, a, lda, packed, beta, c, ldc);
    else if (kernel == 1) gemm_packed_avx2(m, n0, n1, k, a, lda, packed, beta, c, ldc);
    else loom_gemm_reference(m, n0, n1, k, a, lda, packed, beta, c, ldc);
}

void loom_gemm_packed(int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta, float *c, int ldc) {
    loom_gemm_packed_with(loom_gemm_kernel(), m, n0, n1, k, a, lda, packed, beta, c, ldc);
}
