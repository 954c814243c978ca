#ifndef LOOM_QGEMM_H
#define LOOM_QGEMM_H

/* int8 matrix products for inference: C[m, n] (+)= A[m, k] * W^T with W [n, k] quantized once per
 * output row (symmetric: w = s_w[o] * q, q in -127 ... 127) and A quantized per row at run time
 * (a = s_a[r] * q, q in -127 ... 127). The sums of products are exact in int32 (|sum| <= 127 * 127
 * * k, so k <= LOOM_QGEMM_MAX_DEPTH); each output is then ((float)sum * s_a[r]) * s_w[o], in that
 * order in every kernel, so all kernels give the same bits.
 *
 * Kernels and their layouts (panels of LOOM_QPANEL outputs, zero beyond n and beyond k):
 *   2  AVX-512 VNNI: weights in groups of 4 along k, 16 outputs x 4 int8 per group (one zmm);
 *      activations as unsigned bytes q + 128, rows padded to a multiple of 4; vpdpbusd, then
 *      128 * (sum of the output's weights) taken off.
 *   1  AVX2: weights as int16 in pairs along k, 16 outputs x 2 int16 per pair (two ymm);
 *      activations as int16, rows padded to a multiple of 2; vpmaddwd (exact: no saturation).
 *   0  reference: weights row-major int8 [n, k]; activations int8 [m, k]; a plain loop.
 */

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define LOOM_QPANEL 16
#define LOOM_QGEMM_MAX_DEPTH 131072

/* The best kernel this CPU runs: 2 (AVX-512 VNNI), 1 (AVX2), 0 (reference only). */
int loom_qgemm_kernel(void);

/* Padded depth of one activation row (elements) in a kernel's layout. */
int loom_qdepth(int kernel, int k);
/* Bytes of one quantized activation row, and of W packed, in a kernel's layout. */
size_t loom_qrow_bytes(int kernel, int k);
size_t loom_qpacked_bytes(int kernel, int n, int k);

/* Packs the int8 weights w [n, k] (row-major) for a kernel; sums[o] = the o-th row's sum. */
void loom_qpack(int kernel, int n, int k, const int8_t *w, void *packed, int32_t *sums);

/* Quantizes rows of A [m, k] (row stride lda): scales[r] = max |a[r, :]| / 127 and
 * q = round(a * 127 / max) (ties to even), written in the kernel's activation layout, rows
 * loom_qrow_bytes(kernel, k) apart. An all-zero row has scale 0; a row holding NaN or an
 * infinity has scale NaN (its outputs are NaN, as a float product's would be). */
void loom_qquantize_rows(int kernel, int m, int k, const float *a, int lda, void *q, float *scales);

/* C[m, n0:n1] = beta * C + A W^T over the quantized operands; beta is 0 or 1; n0 is a multiple of
 * LOOM_QPANEL. qa holds m rows of loom_qquantize_rows's output. */
void loom_qgemm(int kernel, int m, int n0, int n1, int k, const void *qa, const float *ascales, const void *packed,
                const int32_t *sums, const float *wscales, float beta, float *c, int ldc);

#ifdef __cplusplus
}
#endif

#endif
