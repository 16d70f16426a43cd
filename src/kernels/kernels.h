/* The kernels, NHWC float32: the types they share, the choice of instruction set, and their
 * prototypes. The plain C source of every op is the reference; the kernels listed in
 * kernel_list.h (which documents them) are built once per instruction set from it (isa_list.h,
 * src/kernels/isa/) and tested against the portable build. The others are declared below. */
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
    /* [n][cin] or NULL: the input's channel ci of image b is multiplied by in_scale[b][ci]
     * before the convolution (a squeeze-excitation gate), by scaling the weights per image
     * instead; groups == 1 only. */
    const float *in_scale;
} sn_epilogue;

/* Instruction sets of the kernels (isa_list.h, dispatch.c). SN_ISA_GENERIC is the portable
 * path, always built. The active one is the best that both this CPU and this build support,
 * unless the SN_ISA environment variable (generic, avx2, avx512) names another at first use, or
 * sn_isa_set chooses one. */
typedef enum {
#define SN_ISA(id, name, cpu_test) SN_ISA_##id,
#include "isa_list.h"
#undef SN_ISA
    SN_ISA_COUNT
} sn_isa;
sn_isa sn_isa_active(void);
/* SN_ERR_UNSUPPORTED (message set) when this CPU or build lacks it. Not for use while kernels
 * run on other threads. */
sn_status sn_isa_set(sn_isa isa);
int sn_isa_available(sn_isa isa);
const char *sn_isa_name(sn_isa isa);

/* The GEMM's column alignment and K block (sn_gemm_packed_f32 in kernel_list.h). */
#define SN_GEMM_N_ALIGN 64
#define SN_GEMM_KC 256

/* The kernels of kernel_list.h. Inside one build of them (a file of src/kernels/isa/, which
 * defines SN_ISA_UNIT, see isa_unit.h) they are declared static instead: every build defines the
 * same names without clashing, and calls from one kernel to another stay inside the build. */
#if defined(SN_ISA_UNIT)
#define SN_KERNEL(ret, name, params, args) static ret name params;
#else
#define SN_KERNEL(ret, name, params, args) ret name params;
#endif
#define SN_KERNEL_ISA_ARG SN_KERNEL
#include "kernel_list.h"
#undef SN_KERNEL
#undef SN_KERNEL_ISA_ARG

/* The kernels built once, portable C only: the dense layer's heavy part is the GEMM above; the
 * others are cheap. */

/* Dense: y[n][cout] = x[n][cin] * w[cin][cout] + bias[cout] (bias may be NULL). */
void sn_dense_f32(int n, int cin, int cout, const float *x, const float *w, const float *bias,
                  float *y, int nthreads);
/* Dense backward (the conventions of kernel_list.h's backward passes): dx += dy w^T,
 * dw += x^T dy, db += sum dy. */
void sn_dense_backward_f32(int n, int cin, int cout, const float *x, const float *w,
                           const float *dy, float *dx, float *dw, float *db, int nthreads);

/* Softmax cross-entropy with label smoothing s: target = (1 - s) * onehot + s / classes.
 * Returns the mean loss over n; dlogits (if non-NULL) = (softmax - target) / n (overwritten, not
 * accumulated). Labels outside [0, classes) make it return NAN. */
double sn_softmax_xent_f32(int n, int classes, const float *logits, const int32_t *labels,
                           float smoothing, float *dlogits);

/* Stochastic depth (drop path): y[i] = keep[i] ? x[i] / (1 - rate) : 0 per sample i, each sample
 * holding `per_sample` values; the backward is the same map applied to dy (accumulated). */
void sn_drop_path_f32(int n, size_t per_sample, const float *x, const uint8_t *keep, float rate,
                      float *y);
void sn_drop_path_backward_f32(int n, size_t per_sample, const float *dy, const uint8_t *keep,
                               float rate, float *dx);

#endif
