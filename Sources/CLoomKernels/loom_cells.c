#include "loom_cells.h"
#include "loom_gemm.h"
#include "loom_vectorize.h"

#include <stdint.h>
#include <string.h>

static inline float from_bits(int32_t b) { float f; memcpy(&f, &b, sizeof f); return f; }
static inline int32_t to_bits(float f) { int32_t b; memcpy(&b, &f, sizeof b); return b; }

/* exp(x) = 2^n exp(r), n = round(x / ln 2), r = x - n ln 2 in [-ln2/2, ln2/2]. ln 2 is split
 * (Cody and Waite) into a high part with 9 significant bits, so n * LN2_HIGH is exact for
 * |n| <= 2^15, and the rest. On |r| <= ln2/2 the degree-7 Taylor polynomial's remainder is below
 * 0.347^8 / 8! = 5.2e-9, a tenth of an ULP at 1. 2^n is applied in two halves so that neither
 * leaves the normal exponent range at n = 128 or -126. */
#define LN2_HIGH 0.693359375f
#define LN2_LOW (-2.1219444005e-4f)
#define LOG2E 1.4426950409f
#define EXP_MAX 88.722839f   /* beyond: overflow to +inf */
#define EXP_MIN (-87.336544f) /* below: under the smallest normal float */
#define ROUNDING_SHIFT 12582912.0f /* 1.5 * 2^23: adding it rounds to an integer in the low mantissa bits */

/* Taylor coefficients 1/k! of exp(r), k = 2..7 (k = 0 and 1 are 1). */
#define EXP_C2 0.5f
#define EXP_C3 (1.0f / 6)
#define EXP_C4 (1.0f / 24)
#define EXP_C5 (1.0f / 120)
#define EXP_C6 (1.0f / 720)
#define EXP_C7 (1.0f / 5040)

static inline float exp_lane(float x) {
    float clamped = x > EXP_MAX ? EXP_MAX : (x >= EXP_MIN ? x : EXP_MIN);
    float shifted = clamped * LOG2E + ROUNDING_SHIFT;
    float n = shifted - ROUNDING_SHIFT;
    float r = (clamped - n * LN2_HIGH) - n * LN2_LOW;
    float p = EXP_C7;
    p = p * r + EXP_C6;
    p = p * r + EXP_C5;
    p = p * r + EXP_C4;
    p = p * r + EXP_C3;
    p = p * r + EXP_C2;
    p = p * r + 1;
    p = p * r + 1;
    int32_t ni = to_bits(shifted) - 0x4B400000;
    int32_t half = ni >> 1;
    float result = p * from_bits((half + 127) << 23) * from_bits((ni - half + 127) << 23);
    result = x > EXP_MAX ? __builtin_inff() : result;
    result = x < EXP_MIN ? 0.0f : result;
    return x != x ? x : result;
}

/* 1 / (1 + exp(-x)): exp's error plus one rounding each for the sum and the quotient. */
static inline float sigmoid_lane(float x) { return 1.0f / (1.0f + exp_lane(-x)); }

/* Taylor coefficients of tanh(x) = x + C3 x^3 + ... + C15 x^15. */
#define TANH_C3 (-1.0f / 3)
#define TANH_C5 (2.0f / 15)
#define TANH_C7 (-17.0f / 315)
#define TANH_C9 (62.0f / 2835)
#define TANH_C11 (-1382.0f / 155925)
#define TANH_C13 (21844.0f / 6081075)
#define TANH_C15 ((float)(-929569.0 / 638512875))

/* For |x| >= 0.5: 1 - 2 / (exp(2|x|) + 1) with the sign restored (the cancellation costs at most
 * a factor 1.2 there). For |x| < 0.5: the odd Taylor series through x^15, whose next term is
 * below 5e-9, a tenth of an ULP of tanh(0.5). */
static inline float tanh_lane(float x) {
    float ax = x < 0 ? -x : x;
    float large = 1.0f - 2.0f / (exp_lane(2.0f * ax) + 1.0f);
    large = x < 0 ? -large : large;
    float x2 = x * x;
    float p = TANH_C15;
    p = p * x2 + TANH_C13;
    p = p * x2 + TANH_C11;
    p = p * x2 + TANH_C9;
    p = p * x2 + TANH_C7;
    p = p * x2 + TANH_C5;
    p = p * x2 + TANH_C3;
    float small = x + x * x2 * p;
    float result = ax < 0.5f ? small : large;
    return x != x ? x : result;
}

LOOM_CLONES void loom_exp(const float *x, float *out, long count) {
    LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = exp_lane(x[i]);
}

LOOM_CLONES static void sigmoid_generic(const float *x, float *out, long count) {
    LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = sigmoid_lane(x[i]);
}

LOOM_CLONES static void tanh_generic(const float *x, float *out, long count) {
    LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = tanh_lane(x[i]);
}

LOOM_CLONES void loom_rnn_forward_row(float *gate, const float *bias, float *out, const float *update, long h) {
    if (update) {
        for (long j = 0; j < h; j++) { gate[j] = tanh_lane(gate[j] + bias[j]); out[j] = gate[j] * update[j]; }
    } else {
        for (long j = 0; j < h; j++) { gate[j] = tanh_lane(gate[j] + bias[j]); out[j] = gate[j]; }
    }
}

/* The row functions below take buffers that do not overlap (but for the LSTM forward row's act,
 * which may be gx or hs): the backward rows and the GRU's forward row say so with restrict,
 * which spares the vectorized loop its run-time overlap checks between every pair of pointers
 * (measured: the LSTM backward row over 64 rows of 128, 22 -> 15 us).
 * They have optional inputs (NULL for none). Each is compiled twice, with
 * the pointer known to be NULL and known not to be: in a vectorized loop, `p ? p[j] : 1` becomes
 * a masked load from p + j, which for p == NULL is a load near address 0 with every lane masked
 * off, architecturally harmless but each one taking a fault-suppression assist (measured: 62% of
 * the LSTM backward row's time, 25 us per 64 rows of 128 instead of ~10). */

/* act = activations of gx + hs + bias (hs may be NULL); act may be gx or hs itself: iteration j
 * reads and writes positions j, h + j, 2h + j, 3h + j only, reads first. */
static inline __attribute__((always_inline)) void lstm_forward_row_body(const float *gx, const float *hs, float *act, const float *bias, const float *cp,
                                                    float *c, float *tc, float *out, const float *update, long h) {
    LOOM_ELEMENTWISE
    for (long j = 0; j < h; j++) {
        float si = hs ? hs[j] : 0.0f, sf = hs ? hs[h + j] : 0.0f, sg = hs ? hs[2 * h + j] : 0.0f, so = hs ? hs[3 * h + j] : 0.0f;
        /* (x side + h side) + bias: the order of the in-place path, where the product added the h side. */
        float i = sigmoid_lane((gx[j] + si) + bias[j]), f = sigmoid_lane((gx[h + j] + sf) + bias[h + j]);
        float g = tanh_lane((gx[2 * h + j] + sg) + bias[2 * h + j]), o = sigmoid_lane((gx[3 * h + j] + so) + bias[3 * h + j]);
        act[j] = i; act[h + j] = f; act[2 * h + j] = g; act[3 * h + j] = o;
        float m = update ? update[j] : 1.0f;
        float cj = f * cp[j] + i * g * m;
        float t = tanh_lane(cj);
        c[j] = cj;
        tc[j] = t;
        out[j] = o * t;
    }
}

LOOM_CLONES static void lstm_forward_row_generic(const float *gx, const float *hs, float *act, const float *bias, const float *cp,
                                                 float *c, float *tc, float *out, const float *update, long h) {
    if (hs && update) lstm_forward_row_body(gx, hs, act, bias, cp, c, tc, out, update, h);
    else if (hs) lstm_forward_row_body(gx, hs, act, bias, cp, c, tc, out, NULL, h);
    else if (update) lstm_forward_row_body(gx, NULL, act, bias, cp, c, tc, out, update, h);
    else lstm_forward_row_body(gx, NULL, act, bias, cp, c, tc, out, NULL, h);
}

/* ---- AVX-512 versions of sigmoid, tanh and the LSTM forward row ----
 * The same formulas as the lanes above, 16 at a time, with one change: each quotient 1 / d is
 * the 14-bit estimate vrcp14ps refined by one Newton step, r (2 - d r), whose relative error is
 * the square of the estimate's (2^-28) plus the step's own rounding, about one ULP. A zmm
 * division takes 10-16 cycles on one port, and the LSTM row has five per 16 elements: measured
 * on one row pass (hot data), 5.2 ns per element with divisions. The exp inside is clamped to
 * exp(88) (see SQUASH_EXP_MAX) instead of being followed by special cases for overflow, underflow
 * and NaN, and the quotient by one for +inf: the end results are the same, but for sigmoids below
 * 6e-39, now 0 (7 fewer operations per sigmoid, 8 per tanh). */

#if defined(__x86_64__)
#include <immintrin.h>

/* exp's and tanh's polynomials by Horner's scheme in fused multiply-adds, for the 16- and 8-lane
 * versions alike: FMA and SET1 name the width's intrinsics (fmadd and set1). */
#define EXP_HORNER(FMA, SET1, r)                                                                  \
    FMA(FMA(FMA(FMA(FMA(FMA(FMA(SET1(EXP_C7), r, SET1(EXP_C6)), r, SET1(EXP_C5)), r, SET1(EXP_C4)), \
                    r, SET1(EXP_C3)), r, SET1(EXP_C2)), r, SET1(1.0f)), r, SET1(1.0f))
#define TANH_HORNER(FMA, SET1, x2)                                                                    \
    FMA(FMA(FMA(FMA(FMA(FMA(SET1(TANH_C15), x2, SET1(TANH_C13)), x2, SET1(TANH_C11)), x2, SET1(TANH_C9)), \
                x2, SET1(TANH_C7)), x2, SET1(TANH_C5)), x2, SET1(TANH_C3))

#define LOOM_AVX512 __attribute__((target("avx512f"), always_inline)) static inline

/* exp_lane's arithmetic, 16 lanes, for x already within [EXP_MIN, EXP_MAX]: no handling of the
 * range's ends or of NaN (the callers take care of theirs). */
LOOM_AVX512 __m512 exp16_core(__m512 clamped) {
    __m512 shifted = _mm512_fmadd_ps(clamped, _mm512_set1_ps(LOG2E), _mm512_set1_ps(ROUNDING_SHIFT));
    __m512 n = _mm512_sub_ps(shifted, _mm512_set1_ps(ROUNDING_SHIFT));
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HIGH), clamped);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LOW), r);
    __m512 p = EXP_HORNER(_mm512_fmadd_ps, _mm512_set1_ps, r);
    /* p 2^n; vscalefps saturates to +inf at n = 128 as the two-halves product above does. */
    return _mm512_scalef_ps(p, n);
}

/* The sigmoid and tanh take exp of at most this (exp(88) = 1.65e38): the sum 1 + exp stays
 * finite, so their quotients need no special case for +inf. Beyond it the sigmoid's result is 0
 * (exactly below 6e-39, a subnormal the default mode flushes anyway) and the tanh's is +-1 (the
 * quotient is then below half an ULP of 1, as it already is from exp(18) on). */
#define SQUASH_EXP_MAX 88.0f

/* 1 / d for finite d >= 1. */
LOOM_AVX512 __m512 reciprocal16(__m512 d) {
    __m512 r = _mm512_rcp14_ps(d);
    return _mm512_mul_ps(r, _mm512_fnmadd_ps(d, r, _mm512_set1_ps(2.0f)));
}

LOOM_AVX512 __m512 sigmoid16(__m512 x) {
    __m512 s = _mm512_min_ps(_mm512_max_ps(_mm512_sub_ps(_mm512_setzero_ps(), x), _mm512_set1_ps(EXP_MIN)),
                             _mm512_set1_ps(SQUASH_EXP_MAX));
    __m512 q = reciprocal16(_mm512_add_ps(_mm512_set1_ps(1.0f), exp16_core(s)));
    /* x < -88: 0; NaN: itself (max returns its second operand when one is NaN). */
    __mmask16 outside = _mm512_cmp_ps_mask(x, _mm512_set1_ps(-SQUASH_EXP_MAX), _CMP_NGE_UQ);
    return _mm512_mask_blend_ps(outside, q, _mm512_max_ps(_mm512_setzero_ps(), x));
}

LOOM_AVX512 __m512 tanh16(__m512 x) {
    __m512 sign = _mm512_castsi512_ps(_mm512_and_si512(_mm512_castps_si512(x), _mm512_set1_epi32((int)0x80000000u)));
    __m512 ax = _mm512_castsi512_ps(_mm512_andnot_si512(_mm512_set1_epi32((int)0x80000000u), _mm512_castps_si512(x)));
    /* 2|x| >= 0: only the upper end needs clamping (NaN becomes 88 here, and NaN again below). */
    __m512 e = exp16_core(_mm512_min_ps(_mm512_add_ps(ax, ax), _mm512_set1_ps(SQUASH_EXP_MAX)));
    __m512 q = reciprocal16(_mm512_add_ps(e, _mm512_set1_ps(1.0f)));
    __m512 large = _mm512_fnmadd_ps(_mm512_set1_ps(2.0f), q, _mm512_set1_ps(1.0f));
    large = _mm512_castsi512_ps(_mm512_or_si512(_mm512_castps_si512(large), _mm512_castps_si512(sign)));
    __m512 x2 = _mm512_mul_ps(x, x);
    __m512 p = TANH_HORNER(_mm512_fmadd_ps, _mm512_set1_ps, x2);
    __m512 small = _mm512_fmadd_ps(_mm512_mul_ps(x, x2), p, x);
    __m512 result = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(ax, _mm512_set1_ps(0.5f), _CMP_LT_OQ), large, small);
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q), result, x);
}

static inline __mmask16 tail_mask(long remaining) {
    return remaining >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << remaining) - 1u);
}

__attribute__((target("avx512f"))) static void sigmoid_avx512(const float *x, float *out, long count) {
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = tail_mask(count - i);
        _mm512_mask_storeu_ps(out + i, m, sigmoid16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

__attribute__((target("avx512f"))) static void tanh_avx512(const float *x, float *out, long count) {
    for (long i = 0; i < count; i += 16) {
        __mmask16 m = tail_mask(count - i);
        _mm512_mask_storeu_ps(out + i, m, tanh16(_mm512_maskz_loadu_ps(m, x + i)));
    }
}

/* One gate block's pre-activation: (x side + h side) + bias, the order of the in-place path,
 * where the product already added the h side. */
__attribute__((target("avx512f"), always_inline)) static inline __m512 preactivation(const float *gx, const float *hs, const float *bias,
                                                                                     long at, __mmask16 m) {
    __m512 v = _mm512_maskz_loadu_ps(m, gx + at);
    if (hs) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, hs + at));
    return _mm512_add_ps(v, _mm512_maskz_loadu_ps(m, bias + at));
}

__attribute__((target("avx512f"))) static void lstm_forward_row_avx512(const float *gx, const float *hs, float *act, const float *bias,
                                                                      const float *cp, float *c, float *tc, float *out,
                                                                      const float *update, long h) {
    for (long j = 0; j < h; j += 16) {
        __mmask16 m = tail_mask(h - j);
        __m512 i = sigmoid16(preactivation(gx, hs, bias, j, m));
        __m512 f = sigmoid16(preactivation(gx, hs, bias, h + j, m));
        __m512 g = tanh16(preactivation(gx, hs, bias, 2 * h + j, m));
        __m512 o = sigmoid16(preactivation(gx, hs, bias, 3 * h + j, m));
        _mm512_mask_storeu_ps(act + j, m, i);
        _mm512_mask_storeu_ps(act + h + j, m, f);
        _mm512_mask_storeu_ps(act + 2 * h + j, m, g);
        _mm512_mask_storeu_ps(act + 3 * h + j, m, o);
        __m512 ig = _mm512_mul_ps(i, g);
        if (update) ig = _mm512_mul_ps(ig, _mm512_maskz_loadu_ps(m, update + j));
        __m512 cj = _mm512_fmadd_ps(f, _mm512_maskz_loadu_ps(m, cp + j), ig);
        __m512 t = tanh16(cj);
        _mm512_mask_storeu_ps(c + j, m, cj);
        _mm512_mask_storeu_ps(tc + j, m, t);
        _mm512_mask_storeu_ps(out + j, m, _mm512_mul_ps(o, t));
    }
}

/* ---- AVX2 + FMA versions (CPUs without AVX-512) ----
 * The AVX-512 formulas 8 lanes at a time, with exact division: without AVX-512 there is no
 * 14-bit reciprocal estimate (the 12-bit one plus a Newton step leaves ~2 ULP, too much for the
 * 4-ULP bound the activations keep), and on the CPUs that run this the divider is not what limits
 * the row: measured on AMD Zen 3, the lane-by-lane version spent its time on the range checks
 * for overflow, underflow and NaN that the clamps below replace. */

/* exp16_core's arithmetic; for clamped in [EXP_MIN, SQUASH_EXP_MAX] n is in [-126, 127], so 2^n
 * is the normal float with exponent field n + 127. */
LOOM_AVX2 __m256 exp8_core(__m256 clamped) {
    __m256 shifted = _mm256_fmadd_ps(clamped, _mm256_set1_ps(LOG2E), _mm256_set1_ps(ROUNDING_SHIFT));
    __m256 n = _mm256_sub_ps(shifted, _mm256_set1_ps(ROUNDING_SHIFT));
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_HIGH), clamped);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(LN2_LOW), r);
    __m256 p = EXP_HORNER(_mm256_fmadd_ps, _mm256_set1_ps, r);
    __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(shifted), _mm256_set1_epi32(0x4B400000));
    return _mm256_mul_ps(p, _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(ni, _mm256_set1_epi32(127)), 23)));
}

LOOM_AVX2 __m256 sigmoid8(__m256 x) {
    __m256 s = _mm256_min_ps(_mm256_max_ps(_mm256_sub_ps(_mm256_setzero_ps(), x), _mm256_set1_ps(EXP_MIN)),
                             _mm256_set1_ps(SQUASH_EXP_MAX));
    __m256 q = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(_mm256_set1_ps(1.0f), exp8_core(s)));
    /* x < -88: 0; NaN: itself (max returns its second operand when one is NaN). */
    __m256 outside = _mm256_cmp_ps(x, _mm256_set1_ps(-SQUASH_EXP_MAX), _CMP_NGE_UQ);
    return _mm256_blendv_ps(q, _mm256_max_ps(_mm256_setzero_ps(), x), outside);
}

LOOM_AVX2 __m256 tanh8(__m256 x) {
    __m256 signbit = _mm256_castsi256_ps(_mm256_set1_epi32((int)0x80000000u));
    __m256 sign = _mm256_and_ps(x, signbit), ax = _mm256_andnot_ps(signbit, x);
    /* 2|x| >= 0: only the upper end needs clamping (NaN becomes 88 here, and NaN again below). */
    __m256 e = exp8_core(_mm256_min_ps(_mm256_add_ps(ax, ax), _mm256_set1_ps(SQUASH_EXP_MAX)));
    __m256 q = _mm256_div_ps(_mm256_set1_ps(1.0f), _mm256_add_ps(e, _mm256_set1_ps(1.0f)));
    __m256 large = _mm256_or_ps(_mm256_fnmadd_ps(_mm256_set1_ps(2.0f), q, _mm256_set1_ps(1.0f)), sign);
    __m256 x2 = _mm256_mul_ps(x, x);
    __m256 p = TANH_HORNER(_mm256_fmadd_ps, _mm256_set1_ps, x2);
    __m256 small = _mm256_fmadd_ps(_mm256_mul_ps(x, x2), p, x);
    __m256 result = _mm256_blendv_ps(large, small, _mm256_cmp_ps(ax, _mm256_set1_ps(0.5f), _CMP_LT_OQ));
    return _mm256_blendv_ps(result, x, _mm256_cmp_ps(x, x, _CMP_UNORD_Q));
}

/* full: all 8 lanes (plain loads and stores); else the lanes of m. */
LOOM_AVX2 __m256 load8(const float *p, const int full, __m256i m) { return full ? _mm256_loadu_ps(p) : _mm256_maskload_ps(p, m); }
LOOM_AVX2 void store8(float *p, __m256 v, const int full, __m256i m) {
    if (full) _mm256_storeu_ps(p, v);
    else _mm256_maskstore_ps(p, m, v);
}

LOOM_AVX2 void sigmoid8_at(const float *x, float *out, long i, const int full, __m256i m) { store8(out + i, sigmoid8(load8(x + i, full, m)), full, m); }
LOOM_AVX2 void tanh8_at(const float *x, float *out, long i, const int full, __m256i m) { store8(out + i, tanh8(load8(x + i, full, m)), full, m); }

__attribute__((target("avx2,fma"))) void loom_sigmoid_avx2(const float *x, float *out, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) sigmoid8_at(x, out, i, 1, loom_lanes_below(8));
    if (i < count) sigmoid8_at(x, out, i, 0, loom_lanes_below(count - i));
}

__attribute__((target("avx2,fma"))) void loom_tanh_avx2(const float *x, float *out, long count) {
    long i = 0;
    for (; i + 8 <= count; i += 8) tanh8_at(x, out, i, 1, loom_lanes_below(8));
    if (i < count) tanh8_at(x, out, i, 0, loom_lanes_below(count - i));
}

LOOM_AVX2 __m256 preactivation8(const float *gx, const float *hs, const float *bias, long at, const int full, __m256i m) {
    __m256 v = load8(gx + at, full, m);
    if (hs) v = _mm256_add_ps(v, load8(hs + at, full, m));
    return _mm256_add_ps(v, load8(bias + at, full, m));
}

/* Lanes j .. j + 7 of the LSTM row (act may be gx or hs: each lane's gates are read before written). */
LOOM_AVX2 void lstm_forward8(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                             float *tc, float *out, const float *update, long h, long j, const int full, __m256i m) {
    __m256 i = sigmoid8(preactivation8(gx, hs, bias, j, full, m));
    __m256 f = sigmoid8(preactivation8(gx, hs, bias, h + j, full, m));
    __m256 g = tanh8(preactivation8(gx, hs, bias, 2 * h + j, full, m));
    __m256 o = sigmoid8(preactivation8(gx, hs, bias, 3 * h + j, full, m));
    store8(act + j, i, full, m);
    store8(act + h + j, f, full, m);
    store8(act + 2 * h + j, g, full, m);
    store8(act + 3 * h + j, o, full, m);
    __m256 ig = _mm256_mul_ps(i, g);
    if (update) ig = _mm256_mul_ps(ig, load8(update + j, full, m));
    __m256 cj = _mm256_fmadd_ps(f, load8(cp + j, full, m), ig);
    __m256 t = tanh8(cj);
    store8(c + j, cj, full, m);
    store8(tc + j, t, full, m);
    store8(out + j, _mm256_mul_ps(o, t), full, m);
}

__attribute__((target("avx2,fma"))) void loom_lstm_forward_row_split_avx2(const float *gx, const float *hs, float *act, const float *bias,
                                                                         const float *cp, float *c, float *tc, float *out,
                                                                         const float *update, long h) {
    long j = 0;
    for (; j + 8 <= h; j += 8) lstm_forward8(gx, hs, act, bias, cp, c, tc, out, update, h, j, 1, loom_lanes_below(8));
    if (j < h) lstm_forward8(gx, hs, act, bias, cp, c, tc, out, update, h, j, 0, loom_lanes_below(h - j));
}

/* The same check as the packed product's (AVX-512F), made once there. */
static int has_avx512(void) { return loom_gemm_kernel() == 2; }
static int has_avx2(void) { return loom_gemm_kernel() >= 1; }
#else
static int has_avx512(void) { return 0; }
static int has_avx2(void) { return 0; }
#define sigmoid_avx512 sigmoid_generic
#define tanh_avx512 tanh_generic
#define lstm_forward_row_avx512 lstm_forward_row_generic
/* No AVX2 here (has_avx2() is 0, so callers never reach these): the portable loops. */
void loom_sigmoid_avx2(const float *x, float *out, long count) { sigmoid_generic(x, out, count); }
void loom_tanh_avx2(const float *x, float *out, long count) { tanh_generic(x, out, count); }
void loom_lstm_forward_row_split_avx2(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                      float *tc, float *out, const float *update, long h) {
    lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
}
#endif

void loom_sigmoid_portable(const float *x, float *out, long count) { sigmoid_generic(x, out, count); }
void loom_tanh_portable(const float *x, float *out, long count) { tanh_generic(x, out, count); }
void loom_lstm_forward_row_portable(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                                    const float *update, long h) {
    lstm_forward_row_generic(gate, NULL, gate, bias, cp, c, tc, out, update, h);
}

void loom_lstm_forward_row_split_portable(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                          float *tc, float *out, const float *update, long h) {
    lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
}

void loom_sigmoid(const float *x, float *out, long count) {
    if (has_avx512()) sigmoid_avx512(x, out, count);
    else if (has_avx2()) loom_sigmoid_avx2(x, out, count);
    else sigmoid_generic(x, out, count);
}

void loom_tanh(const float *x, float *out, long count) {
    if (has_avx512()) tanh_avx512(x, out, count);
    else if (has_avx2()) loom_tanh_avx2(x, out, count);
    else tanh_generic(x, out, count);
}

void loom_lstm_forward_row(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                           const float *update, long h) {
    loom_lstm_forward_row_split(gate, NULL, gate, bias, cp, c, tc, out, update, h);
}

void loom_lstm_forward_row_split(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c, float *tc,
                                 float *out, const float *update, long h) {
    if (has_avx512()) lstm_forward_row_avx512(gx, hs, act, bias, cp, c, tc, out, update, h);
    else if (has_avx2()) loom_lstm_forward_row_split_avx2(gx, hs, act, bias, cp, c, tc, out, update, h);
    else lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
}

static inline __attribute__((always_inline)) void gru_forward_row_body(float *restrict gate, const float *restrict bias, const float *restrict hs,
                                                   float *restrict saved_n, const float *restrict hp,
                                                   float *restrict out, const float *restrict update, long h) {
    float *gr = gate, *gz = gate + h, *gn = gate + 2 * h;
    for (long j = 0; j < h; j++) {
        float r = sigmoid_lane(gr[j] + bias[j] + hs[j]), z = sigmoid_lane(gz[j] + bias[h + j] + hs[h + j]);
        float hn = hs[2 * h + j];
        float n = tanh_lane(gn[j] + bias[2 * h + j] + r * hn);
        gr[j] = r; gz[j] = z; gn[j] = n;
        saved_n[j] = hn;
        float m = update ? update[j] : 1.0f;
        out[j] = (1 - z) * (n * m) + z * hp[j];
    }
}

LOOM_CLONES void loom_gru_forward_row(float *gate, const float *bias, const float *hs, float *saved_n, const float *hp, float *out,
                                      const float *update, long h) {
    if (update) gru_forward_row_body(gate, bias, hs, saved_n, hp, out, update, h);
    else gru_forward_row_body(gate, bias, hs, saved_n, hp, out, NULL, h);
}

/* The backward rows write the gate gradients dxg over the gates they read (the backward pass
 * does, see RecurrentPasses.backward): at each j, every gate value is read before a gradient is
 * written to the same place, and no other j touches those places, so the loop vectorizes as
 * if they were apart (with `restrict`, writing through one and reading through the other would
 * be undefined). */
#define LOOM_IN_PLACE_GATES LOOM_ELEMENTWISE

static inline __attribute__((always_inline)) void rnn_backward_row_body(const float *gate, const float *restrict d_out, float *restrict dh,
                                                    float *dxg, const float *restrict update, long h) {
    LOOM_IN_PLACE_GATES
    for (long j = 0; j < h; j++) {
        float a = gate[j], m = update ? update[j] : 1.0f;
        dxg[j] = (d_out[j] + dh[j]) * m * (1 - a * a);
        dh[j] = 0;
    }
}

LOOM_CLONES void loom_rnn_backward_row(const float *gate, const float *d_out, float *dh, float *dxg, const float *update, long h) {
    if (update) rnn_backward_row_body(gate, d_out, dh, dxg, update, h);
    else rnn_backward_row_body(gate, d_out, dh, dxg, NULL, h);
}

static inline __attribute__((always_inline)) void lstm_backward_row_body(const float *gate, const float *restrict tc, const float *restrict cp,
                                                     const float *restrict d_out, float *restrict dh, float *restrict dc,
                                                     float *dxg, const float *restrict update, long h) {
    LOOM_IN_PLACE_GATES
    for (long j = 0; j < h; j++) {
        float i = gate[j], f = gate[h + j], g = gate[2 * h + j], o = gate[3 * h + j];
        float m = update ? update[j] : 1.0f;
        float dhj = d_out[j] + dh[j];
        float dcj = dc[j] + dhj * o * (1 - tc[j] * tc[j]);
        dxg[j] = dcj * g * m * i * (1 - i);
        dxg[h + j] = dcj * cp[j] * f * (1 - f);
        dxg[2 * h + j] = dcj * i * m * (1 - g * g);
        dxg[3 * h + j] = dhj * tc[j] * o * (1 - o);
        dc[j] = dcj * f;
        dh[j] = 0;
    }
}

LOOM_CLONES void loom_lstm_backward_row(const float *gate, const float *tc, const float *cp, const float *d_out, float *dh, float *dc,
                                        float *dxg, const float *update, long h) {
    if (update) lstm_backward_row_body(gate, tc, cp, d_out, dh, dc, dxg, update, h);
    else lstm_backward_row_body(gate, tc, cp, d_out, dh, dc, dxg, NULL, h);
}

static inline __attribute__((always_inline)) void gru_backward_row_body(const float *gate, const float *restrict saved_n,
                                                    const float *restrict hp, const float *restrict d_out, float *restrict dh,
                                                    float *dxg, float *restrict dhg, const float *restrict update, long h) {
    LOOM_IN_PLACE_GATES
    for (long j = 0; j < h; j++) {
        float r = gate[j], z = gate[h + j], n = gate[2 * h + j];
        float m = update ? update[j] : 1.0f;
        float dhj = d_out[j] + dh[j];
        float dn = dhj * (1 - z) * m * (1 - n * n);
        float dz = dhj * (hp[j] - n * m) * z * (1 - z);
        float dr = dn * saved_n[j] * r * (1 - r);
        dxg[j] = dr; dhg[j] = dr;
        dxg[h + j] = dz; dhg[h + j] = dz;
        dxg[2 * h + j] = dn;
        dhg[2 * h + j] = dn * r;
        dh[j] = dhj * z;
    }
}

LOOM_CLONES void loom_gru_backward_row(const float *gate, const float *saved_n, const float *hp, const float *d_out, float *dh,
                                       float *dxg, float *dhg, const float *update, long h) {
    if (update) gru_backward_row_body(gate, saved_n, hp, d_out, dh, dxg, dhg, update, h);
    else gru_backward_row_body(gate, saved_n, hp, d_out, dh, dxg, dhg, NULL, h);
}

/* log(x) = e ln 2 + log(m), x = m 2^e with m in [sqrt(1/2), sqrt(2)); log(m) = 2 atanh(s),
 * s = (m - 1) / (m + 1) in [-0.1716, 0.1716], by the odd series 2 (s + s^3/3 + ... + s^13/13),
 * whose next term is below 0.1716^15 * 2/15 = 4e-13 relative: the error is rounding only (the
 * quotient s carries half an ULP into the result, so up to about 2.2 ULP where log(x) is small).
 * Subnormal inputs are scaled by 2^23 first. */
static inline float log_lane(float x) {
    int sub = x < 1.17549435e-38f;
    float xs = sub ? x * 8388608.0f : x;
    int32_t bits = to_bits(xs);
    int32_t e = ((bits >> 23) & 0xFF) - 127;
    float m = from_bits((bits & 0x007FFFFF) | 0x3F800000); /* [1, 2) */
    int big = m > 1.41421356f;
    m = big ? m * 0.5f : m;
    e = big ? e + 1 : e;
    float s = (m - 1.0f) / (m + 1.0f), s2 = s * s;
    float p = 2.0f / 13;
    p = p * s2 + 2.0f / 11;
    p = p * s2 + 2.0f / 9;
    p = p * s2 + 2.0f / 7;
    p = p * s2 + 2.0f / 5;
    p = p * s2 + 2.0f / 3;
    p = p * s2 + 2.0f;
    float fe = (float)e - (sub ? 23.0f : 0.0f);
    float result = fe * 0.693359375f + (s * p + fe * -2.12194440e-4f);
    result = x == 0 ? -__builtin_inff() : result;
    result = x < 0 ? __builtin_nanf("") : result;
    result = x == __builtin_inff() ? x : result;
    return x != x ? x : result;
}

LOOM_CLONES void loom_log_offset(const float *x, float *out, long count, float offset) {
    LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = log_lane(x[i] + offset);
}

LOOM_CLONES void loom_complex_power(const float *z, float *out, long count, int power) {
    if (power == 2) {
        LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = z[2 * i] * z[2 * i] + z[2 * i + 1] * z[2 * i + 1];
    } else {
        LOOM_ELEMENTWISE
    for (long i = 0; i < count; i++) out[i] = __builtin_sqrtf(z[2 * i] * z[2 * i] + z[2 * i + 1] * z[2 * i + 1]);
    }
}
