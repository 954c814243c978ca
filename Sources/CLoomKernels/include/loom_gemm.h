#ifndef LOOM_GEMM_H
#define LOOM_GEMM_H

/* Small-m matrix products against a weight matrix packed once and reused for many calls:
 * the per-step recurrent product of an RNN/GRU/LSTM, C[m, n] (+)= A[m, k] * op(W), with m the
 * batch (tens of rows) and op(W) [k, n] the same for every step of a sequence.
 *
 * OpenBLAS repacks op(W) on every call, which for m = 32, k = 256, n = 1024 costs more than the
 * product itself (measured: 37 GFLOP/s on one core). Packing once per sequence and running an
 * AVX-512 (or AVX2 + FMA) micro-kernel over the packed panels removes that cost.
 *
 * Packed layout: panels of LOOM_PANEL (16) columns; panel p holds, for each i < k, the 16 values
 * op(W)[i, 16p .. 16p + 15] contiguously (zero beyond n). Size: loom_packed_size(n, k) floats.
 */

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_PANEL 16

/* The micro-kernel loom_gemm_packed runs on this CPU, checked once: 2 AVX-512, 1 AVX2 + FMA, 0 none
 * (the caller uses BLAS). The AVX-512 activation and LSTM passes (loom_activations.c, loom_lstm.c) run when this is 2. */
int loom_gemm_kernel(void);

/* Floats needed by a packed op(W) [k, n]. */
size_t loom_packed_size(int n, int k);

/* Packs op(W) [k, n], where W is row-major with row stride ldw: op(W) = W^T (W stored [n, k])
 * when transposed is nonzero, W itself (stored [k, n]) otherwise. */
void loom_pack(int transposed, int n, int k, const float *w, int ldw, float *packed);
/* Panels first..<end of the same packing (each panel is written by one call only, so two threads
 * can pack halves of one matrix). */
void loom_pack_panels(int transposed, int n, int k, const float *w, int ldw, float *packed, int first, int end);

/* C[m, n0:n1] = beta * C + A[m, k] * op(W)[:, n0:n1] with A row-major (row stride lda), C row-major
 * (row stride ldc); beta is 0 or 1. n0 must be a multiple of LOOM_PANEL. */
void loom_gemm_packed(int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta,
                      float *c, int ldc);

/* The same product with a given kernel (2, 1, or 0 for the reference loop below), at most
 * loom_gemm_kernel(): lets tests hold both micro-kernels against the reference on one CPU. */
void loom_gemm_packed_with(int kernel, int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta,
                           float *c, int ldc);

/* The plain triple loop of the same product, the reference the kernel is tested against. */
void loom_gemm_reference(int m, int n0, int n1, int k, const float *a, int lda, const float *packed, float beta,
                         float *c, int ldc);

#ifdef __cplusplus
}
#endif

#endif
