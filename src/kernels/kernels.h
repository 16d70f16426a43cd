/* Plain C forward kernels, NHWC float32. The reference implementation of every op;
 * fast ISA-specific versions (a later issue) are tested against these. */
#ifndef SN_KERNELS_H
#define SN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

/* Explicit padding of a 2-D window op (conv or pool) along both axes. */
typedef struct {
    int top, left, bottom, right;
} sn_pad;

/* TF 'SAME' along one axis: out = ceil(in/stride), total = max((out-1)*stride + k - in, 0),
 * before = total/2, after = total - before. */
void sn_pad_same_1d(int in, int k, int stride, int *before, int *after);
/* Symmetric "fixed" padding of the TF1 code: total k-1, before (k-1)/2, after the rest. */
void sn_pad_fixed_1d(int k, int *before, int *after);
/* Output length of a window op: (in + before + after - k) / stride + 1 (floor), or 0 if the
 * padded input is shorter than the window. */
int sn_window_out(int in, int k, int stride, int before, int after);

/* Convolution geometry. Weights are HWIO: [kh][kw][cin/groups][cout]; output channel co of
 * group g = co / (cout/groups) reads input channels g*(cin/groups) .. +cin/groups. Depthwise is
 * groups == cin == cout (weights [kh][kw][1][C], byte-identical to TF's [kh][kw][C][1]). */
typedef struct {
    int kh, kw;
    int stride_h, stride_w;
    sn_pad pad;
    int groups;
    int cin, cout;
} sn_conv_desc;

/* Epilogue applied per output element, in this order:
 *   v = acc; if (scale) v *= scale[co]; if (shift) v += shift[co];
 *   if (residual) v += residual[same index]; v = act(v).
 * With scale = NULL, shift is a plain bias. Folded batch-norm uses both. */
typedef struct {
    const float *scale;    /* [cout] or NULL */
    const float *shift;    /* [cout] or NULL */
    const float *residual; /* [n][oh][ow][cout] or NULL */
    sn_act act;
} sn_epilogue;

/* y[n][oh][ow][cout] = epilogue(conv(x[n][h][w][cin], wt)). oh/ow must equal
 * sn_window_out(h, kh, stride_h, pad.top, pad.bottom) etc. Uses up to nthreads OpenMP threads
 * (nthreads <= 0 means 1). Returns SN_ERR_OOM if its packing buffers cannot be allocated,
 * SN_ERR_INVALID_ARG for inconsistent geometry (message set). */
sn_status sn_conv2d_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                        const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                        int nthreads);

/* Plain GEMM used by the convolution: C[m][n] (ldc) = A[m][k] (lda) * B[k][n] (ldb),
 * accumulate into C when accumulate != 0. Row-major. */
void sn_gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc, int accumulate, int nthreads);

/* Inference batch-norm over the last axis: y = gamma*(x-mean)/sqrt(var+eps) + beta. */
void sn_batchnorm_f32(size_t rows, int c, const float *x, const float *gamma, const float *beta,
                      const float *mean, const float *var, float eps, float *y, int nthreads);

/* Elementwise activations; y may alias x. */
float sn_act_scalar(sn_act act, float v);
void sn_act_f32(sn_act act, size_t count, const float *x, float *y, int nthreads);

/* Max-pool, window k x k, stride s, explicit padding; padded cells never win (they are skipped,
 * not treated as zeros). */
void sn_maxpool_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                    const float *x, float *y, int nthreads);

/* Nearest upsampling by integer factors: y[n][i][j] = x[n][i/fh][j/fw]. */
void sn_upsample_nearest_f32(int n, int h, int w, int c, int fh, int fw, const float *x, float *y,
                             int nthreads);
/* Nearest resize to oh x ow with source index floor(dst*in/out) (TF1 legacy, no half-pixel). */
void sn_resize_nearest_f32(int n, int h, int w, int c, int oh, int ow, const float *x, float *y,
                           int nthreads);

/* y = sum of k inputs (count elements each), then act; y may alias any input. */
void sn_add_f32(int k, const float *const *xs, size_t count, sn_act act, float *y, int nthreads);
/* y = x * s (elementwise scalar scale); y may alias x. */
void sn_scale_f32(size_t count, const float *x, float s, float *y);

/* Global average pool: y[n][c] = mean over h*w of x[n][.][c]. */
void sn_gap_f32(int n, int hw, int c, const float *x, float *y);
/* Dense: y[n][cout] = x[n][cin] * w[cin][cout] + bias[cout] (bias may be NULL). */
void sn_dense_f32(int n, int cin, int cout, const float *x, const float *w, const float *bias,
                  float *y, int nthreads);
/* Channel gate (squeeze-excitation): y[n][p][c] = x[n][p][c] * g[n][c]; y may alias x. */
void sn_mul_channel_f32(int n, int hw, int c, const float *x, const float *g, float *y,
                        int nthreads);

#endif
