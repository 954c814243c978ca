#ifndef LOOM_CELLS_H
#define LOOM_CELLS_H

/* Float elementwise kernels: exp, sigmoid and tanh over buffers, and the per-row elementwise
 * passes of the RNN, LSTM and GRU cells (forward and backward), the formulas of the cells'
 * Swift files (RNNCell.swift, LSTMCell.swift, GRUCell.swift in LoomKernels/Cells). Each is compiled three times (AVX-512, AVX2+FMA, baseline SSE2) and
 * the loader picks the version for the running CPU (clang's target_clones), so the loops run
 * 16 lanes wide where the CPU allows.
 *
 * On CPUs with AVX-512, sigmoid, tanh and the LSTM forward row run an explicit 16-lane version
 * whose quotients are a reciprocal estimate refined by one Newton step instead of a division.
 *
 * Accuracy (tested against libm in Double): exp within 3 ULP, sigmoid and tanh within 4 ULP
 * (measured with the AVX-512 versions: sigmoid 2.7, tanh 2.3).
 * Special values: exp(+inf) = +inf, exp(-inf) = 0, NaN propagates; tanh(+-inf) = +-1.
 * `out` may alias `x`. A NULL `update` mask means all ones. */

void loom_exp(const float *x, float *out, long count);
void loom_sigmoid(const float *x, float *out, long count);
void loom_tanh(const float *x, float *out, long count);

/* The forward passes take the products without biases in `gate` and add `bias` [G h] first (so
 * the input projection of all steps needs no bias pass of its own).
 * RNN: gate [h] pre-activation in, tanh out; out = tanh * update. */
void loom_rnn_forward_row(float *gate, const float *bias, float *out, const float *update, long h);
/* LSTM: gate [4h] (i f g o) pre-activations in, activations out; bias = b_ih + b_hh;
 * c = f cp + i g update; tc = tanh(c); out = o tc. */
void loom_lstm_forward_row(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                           const float *update, long h);
/* LSTM with the two sides of the product apart (inference: the recurrent product goes to a small
 * scratch that stays in cache, and the input projection is only read): act [4h] = activations of
 * gx + hs + bias; act may be hs (or gx). */
void loom_lstm_forward_row_split(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c, float *tc,
                                 float *out, const float *update, long h);
/* GRU: gate [3h] (r z n) x-side products in, activations out; bias = b_ih; hs [3h] the h-side
 * projection (with b_hh); saved_n = hs[2h:]; n = tanh(x_n + r hs_n); out = (1 - z) n update + z hp. */
void loom_gru_forward_row(float *gate, const float *bias, const float *hs, float *saved_n, const float *hp, float *out,
                          const float *update, long h);

/* The rows' buffers must not overlap, but where said (act in the split LSTM row; gate is read and
 * written in place; dxg may be gate in the backward rows).
 * Backward of one row: gradients of the pre-activations into dxg (and dhg for the GRU), given
 * the output gradient d_out and the running state gradient dh (which is then reset to the
 * direct part: 0, or dh z for the GRU); the LSTM's running cell gradient dc moves one step back. */
void loom_rnn_backward_row(const float *gate, const float *d_out, float *dh, float *dxg, const float *update, long h);
void loom_lstm_backward_row(const float *gate, const float *tc, const float *cp, const float *d_out, float *dh, float *dc,
                            float *dxg, const float *update, long h);
void loom_gru_backward_row(const float *gate, const float *saved_n, const float *hp, const float *d_out, float *dh,
                           float *dxg, float *dhg, const float *update, long h);

/* The portable versions of sigmoid, tanh and the LSTM forward row (what a CPU without AVX-512
 * runs), callable anywhere: the oracle the AVX-512 versions are tested against. */
void loom_sigmoid_portable(const float *x, float *out, long count);
void loom_tanh_portable(const float *x, float *out, long count);
void loom_lstm_forward_row_portable(float *gate, const float *bias, const float *cp, float *c, float *tc, float *out,
                                    const float *update, long h);
void loom_lstm_forward_row_split_portable(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                          float *tc, float *out, const float *update, long h);

/* The AVX2 + FMA versions (what a CPU with AVX2 but without AVX-512 runs), for tests on CPUs that
 * run a better one: call only when loom_gemm_kernel() >= 1. */
void loom_sigmoid_avx2(const float *x, float *out, long count);
void loom_tanh_avx2(const float *x, float *out, long count);
void loom_lstm_forward_row_split_avx2(const float *gx, const float *hs, float *act, const float *bias, const float *cp, float *c,
                                      float *tc, float *out, const float *update, long h);

/* Natural logarithm of x + offset, within 3 ULP of libm (measured worst 2.2, near x = 1.13); log(0) = -inf,
 * negative or NaN inputs give NaN. */
void loom_log_offset(const float *x, float *out, long count, float offset);

/* |z|^2 (power = 2) or |z| (power = 1) of `count` interleaved complex numbers. */
void loom_complex_power(const float *z, float *out, long count, int power);

#endif
