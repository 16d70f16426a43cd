/* Plain C forward kernels, NHWC float32. The reference implementation of every op;
 * fast ISA-specific versions (a later issue) are tested against these. */
#ifndef SN_KERNELS_H
#define SN_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "spinenet.h"

#if defined(SN_KERNEL_IMPL)
#include "kernel_isa.h"
#endif

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
    /* [n][cin] or NULL: the input's channel ci of image b is multiplied by in_scale[b][ci]
     * before the convolution (a squeeze-excitation gate), by scaling the weights per image
     * instead; groups == 1 only. */
    const float *in_scale;
} sn_epilogue;

/* y[n][oh][ow][cout] = epilogue(conv(x[n][h][w][cin], wt)). oh/ow must equal
 * sn_window_out(h, kh, stride_h, pad.top, pad.bottom) etc. Uses up to nthreads OpenMP threads
 * (nthreads <= 0 means 1). Returns SN_ERR_OOM if its packing buffers cannot be allocated,
 * SN_ERR_INVALID_ARG for inconsistent geometry (message set). */
sn_status sn_conv2d_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                        const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                        int nthreads);

/* Instruction sets of the kernels (kernel_isa.h, dispatch.c). SN_ISA_GENERIC is the portable
 * path, always built. The active one is the best that both this CPU and this build support,
 * unless the SN_ISA environment variable (generic, avx2, avx512) names another at first use, or
 * sn_isa_set chooses one. */
typedef enum { SN_ISA_GENERIC, SN_ISA_AVX2, SN_ISA_AVX512, SN_ISA_COUNT } sn_isa;
sn_isa sn_isa_active(void);
/* SN_ERR_UNSUPPORTED (message set) when this CPU or build lacks it. Not for use while kernels
 * run on other threads. */
sn_status sn_isa_set(sn_isa isa);
int sn_isa_available(sn_isa isa);
const char *sn_isa_name(sn_isa isa);

/* GEMM used by the convolution: C[m][n] (ldc) = A[m][k] (lda) * B[k][n] (ldb),
 * accumulate into C when accumulate != 0. Row-major. */
void sn_gemm_f32(int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
                 int ldc, int accumulate, int nthreads);

/* The same product with op(B) (B, or B^T when trans_b; k x n) packed once and reused by many
 * row tiles (the convolutions). sn_gemm_packb_f32 returns the packed size in floats and writes
 * it when `packed` is not NULL; the layout belongs to `isa`, so pack and multiply with the same
 * one (read sn_isa_active() once). sn_gemm_packed_f32 runs on the calling thread:
 * C [m][n] (ldc) (+)= A [m][k] (lda) * op(B)[k0 .. k0+k)[n0 .. n0+n), where `ktotal` is the k
 * the panels were packed with and n0 is a multiple of SN_GEMM_N_ALIGN. With k0 a multiple of
 * SN_GEMM_KC and m <= 120 it gives the bits of sn_gemm_f32 on the same operands, so a product
 * may be summed K block by K block. */
#define SN_GEMM_N_ALIGN 64
#define SN_GEMM_KC 256
size_t sn_gemm_packb_f32(sn_isa isa, int trans_b, int k, int n, const float *b, int ldb,
                         float *packed);
void sn_gemm_packed_f32(sn_isa isa, int m, int n0, int n, int k0, int k, const float *a,
                        int lda, const float *packed, int ktotal, float *c, int ldc,
                        int accumulate);

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

/* Global average pool: y[n][c] = mean over h*w of x[n][.][c], summed in double in pixel order
 * (the same bits for any nthreads). */
void sn_gap_f32(int n, int hw, int c, const float *x, float *y, int nthreads);
/* Dense: y[n][cout] = x[n][cin] * w[cin][cout] + bias[cout] (bias may be NULL). */
void sn_dense_f32(int n, int cin, int cout, const float *x, const float *w, const float *bias,
                  float *y, int nthreads);
/* Channel gate (squeeze-excitation): y[n][p][c] = x[n][p][c] * g[n][c]; y may alias x. */
void sn_mul_channel_f32(int n, int hw, int c, const float *x, const float *g, float *y,
                        int nthreads);


/* ------------------------------------------------------------------------------------------
 * Backward passes (training). Conventions: every gradient output is ACCUMULATED (+=) into its
 * buffer, so a tensor read by several nodes sums its gradients; the caller zeroes buffers. A
 * NULL gradient pointer skips that gradient. Each is checked against finite differences of its
 * forward in tests/test_grad_conv.c and tests/test_grad_ops.c.
 * ------------------------------------------------------------------------------------------ */

/* C (+)= op(A) * op(B) with op(X) = X or X^T (row-major storage of the un-transposed matrix):
 * op(A) is m x k, op(B) is k x n. */
void sn_gemm_ex_f32(int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
                    const float *b, int ldb, float *c, int ldc, int accumulate, int nthreads);

/* Convolution backward for dy = dL/d(conv output before any epilogue) [n][oh][ow][cout]:
 * dx [n][h][w][cin] += conv_transpose(dy, wt); dw [kh][kw][cin/groups][cout] += x^T dy;
 * db [cout] += sum of dy. Handles stride, asymmetric padding, groups and depthwise. Returns
 * SN_ERR_OOM (message set) if its work buffers cannot be allocated. */
sn_status sn_conv2d_backward_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                 const float *wt, int oh, int ow, const float *dy, float *dx,
                                 float *dw, float *db, int nthreads);

/* dx += dy * act'(x), x being the activation's input. */
void sn_act_backward_f32(sn_act act, size_t count, const float *x, const float *dy, float *dx,
                         int nthreads);

/* out = dy * act'(x), assigned rather than accumulated; out may be dy itself. The _range form is
 * single-threaded. */
void sn_act_grad_f32(sn_act act, size_t count, const float *x, const float *dy, float *out,
                     int nthreads);
void sn_act_grad_range_f32(sn_act act, size_t count, const float *x, const float *dy, float *out);

/* Training-mode batch-norm over rows x c: batch mean and biased variance per channel,
 * y = gamma * (x - mean) * inv_std + beta with inv_std = 1/sqrt(var + eps); writes save_mean and
 * save_invstd [c] for the backward; when running_mean/var are non-NULL updates them as
 * r = momentum * r + (1 - momentum) * batch, using the unbiased variance (var * rows/(rows-1))
 * for running_var when unbiased_running_var != 0 (TF's fused kernel), the biased one otherwise. */
void sn_batchnorm_train_f32(size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, int unbiased_running_var,
                            float *running_mean, float *running_var, float *y, float *save_mean,
                            float *save_invstd, int nthreads);
/* Backward of the training-mode batch-norm (batch statistics are functions of x):
 * dx += ..., dgamma += sum dy * xhat, dbeta += sum dy. */
void sn_batchnorm_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                     const float *save_mean, const float *save_invstd,
                                     const float *dy, float *dx, float *dgamma, float *dbeta,
                                     int nthreads);

/* Fused y = act(batchnorm_train(x)), the training path's kernel: the same statistics,
 * save_mean/save_invstd and running-average update as sn_batchnorm_train_f32 (taken in one pass
 * about a shift near the mean), then y = act((x - save_mean) * mul + beta) with
 * mul = float(gamma * save_invstd), computed from the saved (rounded) statistics so that the
 * backward can recompute the activation's input exactly. Nothing but y and the statistics is
 * written. y may be NULL (statistics only). */
void sn_batchnorm_act_train_f32(size_t rows, int c, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum,
                                int unbiased_running_var, float *running_mean, float *running_var,
                                sn_act act, float *y, float *save_mean, float *save_invstd,
                                int nthreads);
/* Backward of sn_batchnorm_act_train_f32 for dy = dL/dy: dx = (assigned, not accumulated) the
 * gradient at x through the activation and the batch statistics; dgamma += sum(g * xhat),
 * dbeta += sum(g) with g = dy * act'(u). Any of dx, dgamma, dbeta may be NULL. */
void sn_batchnorm_act_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                         const float *beta, const float *save_mean,
                                         const float *save_invstd, sn_act act, const float *dy,
                                         float *dx, float *dgamma, float *dbeta, int nthreads);

/* Max-pool backward: each dy goes to the window cell that won the forward (the first maximum in
 * row-major window order; padded cells never win). */
void sn_maxpool_backward_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                             int ow, const float *x, const float *dy, float *dx, int nthreads);
/* Nearest upsample / resize backward: dx sums the dy of every output pixel that read it. */
void sn_upsample_nearest_backward_f32(int n, int h, int w, int c, int fh, int fw, const float *dy,
                                      float *dx, int nthreads);
void sn_resize_nearest_backward_f32(int n, int h, int w, int c, int oh, int ow, const float *dy,
                                    float *dx, int nthreads);
/* Global average pool backward: dx[n][p][c] += dy[n][c] / hw. */
void sn_gap_backward_f32(int n, int hw, int c, const float *dy, float *dx);
/* Dense backward: dx += dy w^T, dw += x^T dy, db += sum dy. */
void sn_dense_backward_f32(int n, int cin, int cout, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, int nthreads);
/* Channel gate backward: dx += dy * g, dg[n][c] += sum over pixels of dy * x. */
void sn_mul_channel_backward_f32(int n, int hw, int c, const float *x, const float *g,
                                 const float *dy, float *dx, float *dg, int nthreads);
/* y += a * x (the backward of add and scale). */
void sn_axpy_f32(size_t count, float a, const float *x, float *y, int nthreads);

/* Softmax cross-entropy with label smoothing s: target = (1 - s) * onehot + s / classes.
 * Returns the mean loss over n; dlogits (if non-NULL) = (softmax - target) / n (overwritten, not
 * accumulated). Labels outside [0, classes) make it return NAN. */
double sn_softmax_xent_f32(int n, int classes, const float *logits, const int32_t *labels,
                           float smoothing, float *dlogits);

/* Stochastic depth (spec §6.4): y[i] = keep[i] ? x[i] / (1 - rate) : 0 per sample i, each sample
 * holding `per_sample` values; the backward is the same map applied to dy (accumulated). */
void sn_drop_path_f32(int n, size_t per_sample, const float *x, const uint8_t *keep, float rate,
                      float *y);
void sn_drop_path_backward_f32(int n, size_t per_sample, const float *dy, const uint8_t *keep,
                               float rate, float *dx);

#endif
