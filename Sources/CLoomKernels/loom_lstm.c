#include "loom_cells.h"
#include "loom_lanes.h"

/* The LSTM cell's rows (gates i f g o): the forward row in portable, AVX-512 and AVX2 versions
 * with its dispatch, and the backward row. */

/* The row functions below take buffers that do not overlap (but for the LSTM forward row's act,
 * which may be gx or hs): the backward rows and the GRU's forward row say so with restrict,
 * which spares the vectorized loop its run-time overlap checks between every pair of pointers.
 * They have optional inputs (NULL for none). Each is compiled twice, with
 * the pointer known to be NULL and known not to be: in a vectorized loop, `p ? p[j] : 1` becomes
 * a masked load from p + j, which for p == NULL is a load near address 0 with every lane masked
 * off, architecturally harmless but each one taking a slow fault-suppression assist. */

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

#if defined(__x86_64__)
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

#else
#define lstm_forward_row_avx512 lstm_forward_row_generic
void loom_lstm_forward_row_split_avx2(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                      float *tc, float *out, const float *update, long h) {
    lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
}
#endif

void loom_lstm_forward_row_portable(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                                    const float *update, long h) {
    lstm_forward_row_generic(gate, NULL, gate, bias, cp, c, tc, out, update, h);
}

void loom_lstm_forward_row_split_portable(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                          float *tc, float *out, const float *update, long h) {
    lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
}

void loom_lstm_forward_row(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                           const float *update, long h) {
    loom_lstm_forward_row_split(gate, NULL, gate, bias, cp, c, tc, out, update, h);
}

void loom_lstm_forward_row_split(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c, float *tc,
                                 float *out, const float *update, long h) {
    if (loom_has_avx512()) lstm_forward_row_avx512(gx, hs, act, bias, cp, c, tc, out, update, h);
    else if (loom_has_avx2()) loom_lstm_forward_row_split_avx2(gx, hs, act, bias, cp, c, tc, out, update, h);
    else lstm_forward_row_generic(gx, hs, act, bias, cp, c, tc, out, update, h);
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
