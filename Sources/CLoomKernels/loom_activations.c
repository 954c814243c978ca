#include "loom_cells.h"
#include "loom_lanes.h"

/* exp, sigmoid and tanh over buffers (and log and complex power for the audio front end). */

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

#if defined(__x86_64__)
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

#else
#define sigmoid_avx512 sigmoid_generic
#define tanh_avx512 tanh_generic
/* No AVX2 here (loom_has_avx2() is 0, so callers never reach these): the portable loops. */
void loom_sigmoid_avx2(const float *x, float *out, long count) { sigmoid_generic(x, out, count); }
void loom_tanh_avx2(const float *x, float *out, long count) { tanh_generic(x, out, count); }
#endif

void loom_sigmoid_portable(const float *x, float *out, long count) { sigmoid_generic(x, out, count); }
void loom_tanh_portable(const float *x, float *out, long count) { tanh_generic(x, out, count); }

void loom_sigmoid(const float *x, float *out, long count) {
    if (loom_has_avx512()) sigmoid_avx512(x, out, count);
    else if (loom_has_avx2()) loom_sigmoid_avx2(x, out, count);
    else sigmoid_generic(x, out, count);
}

void loom_tanh(const float *x, float *out, long count) {
    if (loom_has_avx512()) tanh_avx512(x, out, count);
    else if (loom_has_avx2()) loom_tanh_avx2(x, out, count);
    else tanh_generic(x, out, count);
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
