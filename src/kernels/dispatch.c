/* The public kernel names: each calls the build of the active instruction set (kernel_isa.h).
 * One entry per public function of the files built once per instruction set, with the prototype
 * of kernels.h; keep the two (and the list in kernel_isa.h) in step. SN_KERNEL_VOID / _RET
 * declare name_generic, name_avx2 and name_avx512 (those this build has) and define name, which
 * calls the one sn_isa_active() names. */
#include <stdint.h>

#include "kernels.h"

#if defined(SN_HAVE_AVX512)
#define SN_DISPATCH(call)                                                                          \
    (sn_isa_active() == SN_ISA_AVX512 ? call##_avx512                                              \
     : sn_isa_active() == SN_ISA_AVX2 ? call##_avx2                                                \
                                      : call##_generic)
#define SN_IF_AVX2(x) x
#define SN_IF_AVX512(x) x
#elif defined(SN_HAVE_AVX2)
#define SN_DISPATCH(call) (sn_isa_active() == SN_ISA_AVX2 ? call##_avx2 : call##_generic)
#define SN_IF_AVX2(x) x
#define SN_IF_AVX512(x)
#else
#define SN_DISPATCH(call) call##_generic
#define SN_IF_AVX2(x)
#define SN_IF_AVX512(x)
#endif

#define SN_KERNEL_DECLS(ret, name, params)                                                         \
    ret name##_generic params;                                                                     \
    SN_IF_AVX2(ret name##_avx2 params;)                                                            \
    SN_IF_AVX512(ret name##_avx512 params;)
#define SN_KERNEL_VOID(name, params, args)                                                         \
    SN_KERNEL_DECLS(void, name, params)                                                            \
    void name params { SN_DISPATCH(name) args; }
#define SN_KERNEL_RET(ret, name, params, args)                                                     \
    SN_KERNEL_DECLS(ret, name, params)                                                             \
    ret name params { return SN_DISPATCH(name) args; }

SN_KERNEL_RET(float, sn_act_scalar, (sn_act act, float v), (act, v))

SN_KERNEL_VOID(sn_act_f32, (sn_act act, size_t count, const float *x, float *y, int nthreads),
               (act, count, x, y, nthreads))

SN_KERNEL_VOID(sn_act_backward_f32,
               (sn_act act, size_t count, const float *x, const float *dy, float *dx, int nthreads),
               (act, count, x, dy, dx, nthreads))

SN_KERNEL_VOID(sn_act_grad_range_f32,
               (sn_act act, size_t count, const float *x, const float *dy, float *out),
               (act, count, x, dy, out))

SN_KERNEL_VOID(sn_act_grad_f32,
               (sn_act act, size_t count, const float *x, const float *dy, float *out,
                int nthreads),
               (act, count, x, dy, out, nthreads))

SN_KERNEL_VOID(sn_batchnorm_f32,
               (size_t rows, int c, const float *x, const float *gamma, const float *beta,
                const float *mean, const float *var, float eps, float *y, int nthreads),
               (rows, c, x, gamma, beta, mean, var, eps, y, nthreads))

SN_KERNEL_VOID(sn_batchnorm_train_f32,
               (size_t rows, int c, const float *x, const float *gamma, const float *beta,
                float eps, float momentum, int unbiased_running_var, float *running_mean,
                float *running_var, float *y, float *save_mean, float *save_invstd, int nthreads),
               (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean,
                running_var, y, save_mean, save_invstd, nthreads))

SN_KERNEL_VOID(sn_batchnorm_train_backward_f32,
               (size_t rows, int c, const float *x, const float *gamma, const float *save_mean,
                const float *save_invstd, const float *dy, float *dx, float *dgamma, float *dbeta,
                int nthreads),
               (rows, c, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, nthreads))

SN_KERNEL_VOID(sn_batchnorm_act_train_f32,
               (size_t rows, int c, const float *x, const float *gamma, const float *beta,
                float eps, float momentum, int unbiased_running_var, float *running_mean,
                float *running_var, sn_act act, float *y, float *save_mean, float *save_invstd,
                int nthreads),
               (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean,
                running_var, act, y, save_mean, save_invstd, nthreads))

SN_KERNEL_VOID(sn_batchnorm_act_train_backward_f32,
               (size_t rows, int c, const float *x, const float *gamma, const float *beta,
                const float *save_mean, const float *save_invstd, sn_act act, const float *dy,
                float *dx, float *dgamma, float *dbeta, int nthreads),
               (rows, c, x, gamma, beta, save_mean, save_invstd, act, dy, dx, dgamma, dbeta,
                nthreads))

SN_KERNEL_RET(sn_status, sn_conv2d_f32,
              (const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt,
               const sn_epilogue *ep, int oh, int ow, float *y, int nthreads),
              (d, n, h, w, x, wt, ep, oh, ow, y, nthreads))

SN_KERNEL_RET(sn_status, sn_conv2d_backward_f32,
              (const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt, int oh,
               int ow, const float *dy, float *dx, float *dw, float *db, int nthreads),
              (d, n, h, w, x, wt, oh, ow, dy, dx, dw, db, nthreads))

SN_KERNEL_VOID(sn_add_f32,
               (int k, const float *const *xs, size_t count, sn_act act, float *y, int nthreads),
               (k, xs, count, act, y, nthreads))

SN_KERNEL_VOID(sn_scale_f32, (size_t count, const float *x, float s, float *y), (count, x, s, y))

SN_KERNEL_VOID(sn_mul_channel_f32,
               (int n, int hw, int c, const float *x, const float *g, float *y, int nthreads),
               (n, hw, c, x, g, y, nthreads))

SN_KERNEL_VOID(sn_mul_channel_backward_f32,
               (int n, int hw, int c, const float *x, const float *g, const float *dy, float *dx,
                float *dg, int nthreads),
               (n, hw, c, x, g, dy, dx, dg, nthreads))

SN_KERNEL_VOID(sn_axpy_f32, (size_t count, float a, const float *x, float *y, int nthreads),
               (count, a, x, y, nthreads))

SN_KERNEL_VOID(sn_gap_f32, (int n, int hw, int c, const float *x, float *y, int nthreads),
               (n, hw, c, x, y, nthreads))

SN_KERNEL_VOID(sn_gap_backward_f32, (int n, int hw, int c, const float *dy, float *dx),
               (n, hw, c, dy, dx))

SN_KERNEL_VOID(sn_maxpool_f32,
               (int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                const float *x, float *y, int nthreads),
               (n, h, w, c, k, stride, pad, oh, ow, x, y, nthreads))

SN_KERNEL_VOID(sn_maxpool_backward_f32,
               (int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                const float *x, const float *dy, float *dx, int nthreads),
               (n, h, w, c, k, stride, pad, oh, ow, x, dy, dx, nthreads))

SN_KERNEL_VOID(sn_upsample_nearest_f32,
               (int n, int h, int w, int c, int fh, int fw, const float *x, float *y, int nthreads),
               (n, h, w, c, fh, fw, x, y, nthreads))

SN_KERNEL_VOID(sn_resize_nearest_f32,
               (int n, int h, int w, int c, int oh, int ow, const float *x, float *y, int nthreads),
               (n, h, w, c, oh, ow, x, y, nthreads))

SN_KERNEL_VOID(sn_upsample_nearest_backward_f32,
               (int n, int h, int w, int c, int fh, int fw, const float *dy, float *dx,
                int nthreads),
               (n, h, w, c, fh, fw, dy, dx, nthreads))

SN_KERNEL_VOID(sn_resize_nearest_backward_f32,
               (int n, int h, int w, int c, int oh, int ow, const float *dy, float *dx,
                int nthreads),
               (n, h, w, c, oh, ow, dy, dx, nthreads))
