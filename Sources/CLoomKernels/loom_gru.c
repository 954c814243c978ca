#include "loom_cells.h"
#include "loom_lanes.h"

/* The GRU cell's rows (gates r z n, PyTorch's formulas): forward and backward. */

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
