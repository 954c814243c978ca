#include "loom_cells.h"
#include "loom_lanes.h"

/* The RNN cell's rows: h = tanh(x W_ih^T + h W_hh^T + b), forward and backward. */

LOOM_CLONES void loom_rnn_forward_row(float *gate, const float *bias, float *out, const float *update, long h) {
    if (update) {
        for (long j = 0; j < h; j++) { gate[j] = tanh_lane(gate[j] + bias[j]); out[j] = gate[j] * update[j]; }
    } else {
        for (long j = 0; j < h; j++) { gate[j] = tanh_lane(gate[j] + bias[j]); out[j] = gate[j]; }
    }
}

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
