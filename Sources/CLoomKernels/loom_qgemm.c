#include "loom_qgemm.h"
#include "loom_vectorize.h"

#include <immintrin.h>
#include <math.h>
#include <string.h>

int loom_qgemm_kernel(void) {
    static int known = -1; /* racing first calls store the same value */
    if (known < 0) {
        __builtin_cpu_init();
        if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")
            && __builtin_cpu_supports("avx512vnni")) known = 2;
        else known = __builtin_cpu_supports("avx2") ? 1 : 0;
    }
    return known;
}

int loom_qdepth(int kernel, int k) {
    return kernel == 2 ? (k + 3) / 4 * 4 : kernel == 1 ? (k + 1) / 2 * 2 : k;
}

size_t loom_qrow_bytes(int kernel, int k) {
    return (size_t)loom_qdepth(kernel, k) * (kernel == 1 ? 2 : 1);
}

static size_t panels(int n) { return (size_t)(n + LOOM_QPANEL - 1) / LOOM_QPANEL; }

size_t loom_qpacked_bytes(int kernel, int n, int k) {
    if (kernel == 0) return (size_t)n * k;
    return panels(n) * LOOM_QPANEL * loom_qrow_bytes(kernel, k);
}

void loom_qpack(int kernel, int n, int k, const int8_t *w, void *packed, int32_t *sums) {
    for (int o = 0; o < n; o++) {
        int32_t s = 0;
        for (int i = 0; i < k; i++) s += w[(size_t)o * k + i];
        sums[o] = s;
    }
    if (kernel == 0) {
        memcpy(packed, w, (size_t)n * k);
        return;
    }
    /* group: 4 (VNNI) or 2 (AVX2) consecutive k of one output, side by side for 16 outputs. */
    const int group = kernel == 2 ? 4 : 2, depth = loom_qdepth(kernel, k);
    for (size_t p = 0; p < panels(n); p++) {
        for (int g = 0; g < depth / group; g++) {
            for (int j = 0; j < LOOM_QPANEL; j++) {
                for (int e = 0; e < group; e++) {
                    size_t o = p * LOOM_QPANEL + j;
                    int i = g * group + e;
                    int8_t v = (o < (size_t)n && i < k) ? w[o * k + i] : 0;
                    size_t at = ((p * (depth / group) + g) * LOOM_QPANEL + j) * group + e;
                    if (kernel == 2) ((int8_t *)packed)[at] = v;
                    else ((int16_t *)packed)[at] = v;
                }
            }
        }
    }
}

/* The largest |a| of a row, from the bits: for floats that are not NaN, the absolute values'
 * bit patterns order as the values do, and every NaN or infinity lies at or above 0x7f800000. An
 * integer maximum vectorizes where a float one (NaN rules) does not. */
static inline uint32_t largest_bits(const float *row, int k) {
    uint32_t largest = 0;
    for (int i = 0; i < k; i++) {
        uint32_t bits;
        memcpy(&bits, row + i, sizeof bits);
        bits &= 0x7fffffffu;
        largest = bits > largest ? bits : largest;
    }
    return largest;
}

LOOM_CLONES void loom_qquantize_rows(int kernel, int m, int k, const float *a, int lda, void *q, float *scales) {
    const int depth = loom_qdepth(kernel, k);
    const size_t bytes = loom_qrow_bytes(kernel, k);
    for (int r = 0; r < m; r++) {
        const float *row = a + (size_t)r * lda;
        uint32_t bits = largest_bits(row, k);
        float largest;
        memcpy(&largest, &bits, sizeof largest);
        int finite = bits < 0x7f800000u;
        float scale = finite ? largest / 127.0f : NAN, inverse = (finite && largest > 0) ? 127.0f / largest : 0.0f;
        scales[r] = scale;
        char *out = (char *)q + (size_t)r * bytes;
        /* round(a * 127 / max) lies in -127 ... 127 up to the rounding of the product: clamped. */
        if (kernel == 2) {
            uint8_t *o = (uint8_t *)out;
            for (int i = 0; i < k; i++) o[i] = (uint8_t)(fminf(fmaxf(nearbyintf(row[i] * inverse), -127.0f), 127.0f) + 128.0f);
            for (int i = k; i < depth; i++) o[i] = 128;
        } else if (kernel == 1) {
            int16_t *o = (int16_t *)out;
            for (int i = 0; i < k; i++) o[i] = (int16_t)fminf(fmaxf(nearbyintf(row[i] * inverse), -127.0f), 127.0f);
            for (int i = k; i < depth; i++) o[i] = 0;
        } else {
            int8_t *o = (int8_t *)out;
            for (int i = 0; i < k; i++) o[i] = (int8_t)fminf(fmaxf(nearbyintf(row[i] * inverse), -127.0f), 127.0f);
        }
    }
}

/* Rows per block of a large product: about 96 KiB of activations (at least 8 rows, a multiple
 * of 8), so that they stay in L2 while every panel of W passes over them; without blocks a
 * product of thousands of rows (an input projection) read them all from memory once per panel. */
static int row_block(size_t row_bytes) {
    size_t rows = (96u << 10) / (row_bytes ? row_bytes : 1);
    rows = rows < 8 ? 8 : rows / 8 * 8;
    return rows > (1 << 20) ? (1 << 20) : (int)rows;
}

/* One output: the exact sum scaled, then added to C when beta is 1; three statements, so that
 * no compiler contracts them into a fused multiply-add the vector kernels do not do. */
static inline void put(int32_t sum, float ascale, float wscale, float beta, float *out) {
    float v = (float)sum * ascale;
    v = v * wscale;
    if (beta != 0) v = *out + v;
    *out = v;
}

static void qgemm_reference(int m, int n0, int n1, int k, const int8_t *a, const float *ascales, const int8_t *w,
                            const float *wscales, float beta, float *c, int ldc) {
    for (int r = 0; r < m; r++) {
        for (int o = n0; o < n1; o++) {
            int32_t sum = 0;
            for (int i = 0; i < k; i++) sum += (int32_t)a[(size_t)r * k + i] * w[(size_t)o * k + i];
            put(sum, ascales[r], wscales[o], beta, c + (size_t)r * ldc + o);
        }
    }
}

/* AVX2 without FMA: the scaling below must not be contracted into a fused multiply-add. */
#define LOOM_AVX2_INT __attribute__((target("avx2"), always_inline)) static inline

/* Scales a tile's exact sums and stores them: 16 outputs of one row, `count` of them real. */
LOOM_AVX2_INT void store_avx2(__m256i s0, __m256i s1, float ascale, const float *wscales, int count, float beta, float *out) {
    if (count == LOOM_QPANEL) {
        __m256 a = _mm256_set1_ps(ascale);
        __m256 v0 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s0), a), _mm256_loadu_ps(wscales));
        __m256 v1 = _mm256_mul_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(s1), a), _mm256_loadu_ps(wscales + 8));
        if (beta != 0) {
            v0 = _mm256_add_ps(_mm256_loadu_ps(out), v0);
            v1 = _mm256_add_ps(_mm256_loadu_ps(out + 8), v1);
        }
        _mm256_storeu_ps(out, v0);
        _mm256_storeu_ps(out + 8, v1);
        return;
    }
    int32_t sums[LOOM_QPANEL];
    _mm256_storeu_si256((__m256i *)sums, s0);
    _mm256_storeu_si256((__m256i *)(sums + 8), s1);
    for (int j = 0; j < count; j++) put(sums[j], ascale, wscales[j], beta, out + j);
}

/* ---- AVX2: MR <= 4 rows by one panel, 2 MR int32 accumulators (with 6 rows, the products'
 * temporaries no longer fit the 16 registers and the accumulators spill to the stack); one
 * vpmaddwd per 8 outputs and pair of k: 16 multiply-adds, exact (|a|, |w| <= 127). */
LOOM_AVX2_INT void qtile_avx2(const int MR, int pairs, const int16_t *a, size_t lda, const int16_t *p, const float *ascales,
                          const float *wscales, int count, float beta, float *c, int ldc) {
    __m256i acc0[4], acc1[4];
    const int16_t *ar[4];
    for (int r = 0; r < MR; r++) {
        ar[r] = a + (size_t)r * lda;
        __asm__("" : "+r"(ar[r]));
        acc0[r] = _mm256_setzero_si256();
        acc1[r] = _mm256_setzero_si256();
    }
    for (int g = 0; g < pairs; g++) {
        __m256i b0 = _mm256_loadu_si256((const __m256i *)(p + (size_t)g * 2 * LOOM_QPANEL));
        __m256i b1 = _mm256_loadu_si256((const __m256i *)(p + (size_t)g * 2 * LOOM_QPANEL + LOOM_QPANEL));
        for (int r = 0; r < MR; r++) {
            int32_t pair;
            memcpy(&pair, ar[r] + 2 * g, sizeof pair);
            __m256i x = _mm256_set1_epi32(pair);
            acc0[r] = _mm256_add_epi32(acc0[r], _mm256_madd_epi16(x, b0));
            acc1[r] = _mm256_add_epi32(acc1[r], _mm256_madd_epi16(x, b1));
        }
    }
    for (int r = 0; r < MR; r++) store_avx2(acc0[r], acc1[r], ascales[r], wscales, count, beta, c + (size_t)r * ldc);
}

__attribute__((target("avx2"))) static void qgemm_avx2(int m, int n0, int n1, int k, const int16_t *a, const float *ascales,
                                                      const int16_t *packed, const float *wscales, float beta, float *c, int ldc) {
    const int depth = loom_qdepth(1, k), pairs = depth / 2;
    const size_t panel_size = (size_t)LOOM_QPANEL * depth;
    for (int col = n0; col < n1; col += LOOM_QPANEL) {
        const int16_t *p = packed + (size_t)(col / LOOM_QPANEL) * panel_size;
        int count = n1 - col < LOOM_QPANEL ? n1 - col : LOOM_QPANEL;
        /* Tiles of at most 4 rows, as even as they go. */
        int tiles = (m + 3) / 4, base = tiles ? m / tiles : 0, extra = tiles ? m % tiles : 0, r = 0;
        for (int t = 0; t < tiles; t++) {
            int size = base + (t < extra);
            const int16_t *ar = a + (size_t)r * depth;
            const float *as = ascales + r;
            float *cr = c + (size_t)r * ldc + col;
            switch (size) {
            case 4: qtile_avx2(4, pairs, ar, depth, p, as, wscales + col, count, beta, cr, ldc); break;
            case 3: qtile_avx2(3, pairs, ar, depth, p, as, wscales + col, count, beta, cr, ldc); break;
            case 2: qtile_avx2(2, pairs, ar, depth, p, as, wscales + col, count, beta, cr, ldc); break;
            default: qtile_avx2(1, pairs, ar, depth, p, as, wscales + col, count, beta, cr, ldc); break;
            }
            r += size;
        }
    }
}

/* ---- AVX-512 VNNI: MR <= 8 rows by one panel (one zmm of 16 outputs); one vpdpbusd per group
 * of 4 k: 64 multiply-adds of unsigned q + 128 by signed w, exact in int32; 128 * sum(w) is taken
 * off at the end. */
#define LOOM_VNNI __attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"), always_inline)) static inline

LOOM_VNNI void qtile_vnni(const int MR, int groups, const uint8_t *a, size_t lda, const int8_t *p, __m512i offset,
                          const float *ascales, const float *wscales, int count, float beta, float *c, int ldc) {
    __m512i acc[8];
    const uint8_t *ar[8];
    for (int r = 0; r < MR; r++) {
        ar[r] = a + (size_t)r * lda;
        __asm__("" : "+r"(ar[r]));
        acc[r] = _mm512_setzero_si512();
    }
#pragma clang loop unroll_count(4)
    for (int g = 0; g < groups; g++) {
        __m512i b = _mm512_loadu_si512((const void *)(p + (size_t)g * 4 * LOOM_QPANEL));
        for (int r = 0; r < MR; r++) {
            int32_t quad;
            memcpy(&quad, ar[r] + 4 * g, sizeof quad);
            acc[r] = _mm512_dpbusd_epi32(acc[r], _mm512_set1_epi32(quad), b);
        }
    }
    __mmask16 mask = count >= LOOM_QPANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
    __m512 w = _mm512_maskz_loadu_ps(mask, wscales);
    for (int r = 0; r < MR; r++) {
        __m512i sum = _mm512_sub_epi32(acc[r], offset);
        __m512 v = _mm512_mul_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(sum), _mm512_set1_ps(ascales[r])), w);
        float *out = c + (size_t)r * ldc;
        if (beta != 0) v = _mm512_add_ps(_mm512_maskz_loadu_ps(mask, out), v);
        _mm512_mask_storeu_ps(out, mask, v);
    }
}

__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) static void qgemm_vnni(
    int m, int n0, int n1, int k, const uint8_t *a, const float *ascales, const int8_t *packed, const int32_t *sums,
    const float *wscales, float beta, float *c, int ldc) {
    const int depth = loom_qdepth(2, k), groups = depth / 4;
    const size_t panel_size = (size_t)LOOM_QPANEL * depth;
    for (int col = n0; col < n1; col += LOOM_QPANEL) {
        const int8_t *p = packed + (size_t)(col / LOOM_QPANEL) * panel_size;
        int count = n1 - col < LOOM_QPANEL ? n1 - col : LOOM_QPANEL;
        __mmask16 mask = count >= LOOM_QPANEL ? (__mmask16)0xFFFF : (__mmask16)((1u << count) - 1u);
        __m512i offset = _mm512_slli_epi32(_mm512_maskz_loadu_epi32(mask, sums + col), 7);
        int tiles = (m + 7) / 8, base = tiles ? m / tiles : 0, extra = tiles ? m % tiles : 0, r = 0;
        for (int t = 0; t < tiles; t++) {
            int size = base + (t < extra);
            const uint8_t *ar = a + (size_t)r * depth;
            const float *as = ascales + r;
            float *cr = c + (size_t)r * ldc + col;
            switch (size) {
            case 8: qtile_vnni(8, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 7: qtile_vnni(7, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 6: qtile_vnni(6, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 5: qtile_vnni(5, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 4: qtile_vnni(4, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 3: qtile_vnni(3, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            case 2: qtile_vnni(2, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            default: qtile_vnni(1, groups, ar, depth, p, offset, as, wscales + col, count, beta, cr, ldc); break;
            }
            r += size;
        }
    }
}

void loom_qgemm(int kernel, int m, int n0, int n1, int k, const void *qa, const float *ascales, const void *packed,
                const int32_t *sums, const float *wscales, float beta, float *c, int ldc) {
    if (m <= 0 || n1 <= n0) return;
    /* Blocks of rows whose activations stay in cache while every panel passes over them. */
    const size_t row_bytes = loom_qrow_bytes(kernel, k);
    const int block = kernel == 0 ? m : row_block(row_bytes);
    for (int r = 0; r < m; r += block) {
        int rows = m - r < block ? m - r : block;
        const char *a = (const char *)qa + (size_t)r * row_bytes;
        float *cr = c + (size_t)r * ldc;
        if (kernel == 2) qgemm_vnni(rows, n0, n1, k, (const uint8_t *)a, ascales + r, packed, sums, wscales, beta, cr, ldc);
        else if (kernel == 1) qgemm_avx2(rows, n0, n1, k, (const int16_t *)a, ascales + r, packed, wscales, beta, cr, ldc);
        else qgemm_reference(rows, n0, n1, k, (const int8_t *)a, ascales + r, packed, wscales, beta, cr, ldc);
    }
}
