#ifndef LOOM_LANES_H
#define LOOM_LANES_H

/* What the cell and activation kernels share: the one-lane exp, sigmoid and tanh, their 16- and
 * 8-lane versions for AVX-512 and AVX2 + FMA, and the run-time choice between them. Private to
 * CLoomKernels; every function is static inline, so each kernel file gets its own inlined copy. */

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


/* The backward rows write the gate gradients dxg over the gates they read (the backward pass
 * does, see RecurrentPasses.backward): at each j, every gate value is read before a gradient is
 * written to the same place, and no other j touches those places, so the loop vectorizes as
 * if they were apart (with `restrict`, writing through one and reading through the other would
 * be undefined). */
#define LOOM_IN_PLACE_GATES LOOM_ELEMENTWISE

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

/* The same check as the packed product's (AVX-512F), made once there. */
static inline int loom_has_avx512(void) { return loom_gemm_kernel() == 2; }
static inline int loom_has_avx2(void) { return loom_gemm_kernel() >= 1; }
#else
static inline int loom_has_avx512(void) { return 0; }
static inline int loom_has_avx2(void) { return 0; }
#endif

#endif
