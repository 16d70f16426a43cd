/* The public kernel names: each calls the build of the active instruction set (kernel_isa.h).
 * One entry per public function of the twice-built files, with the prototype of kernels.h; keep
 * the two (and the list in kernel_isa.h) in step. */
#include <stdint.h>

#include "kernels.h"

#if defined(SN_HAVE_AVX512)
#define SN_DISPATCH(call)                                                                        \
    (sn_isa_active() == SN_ISA_AVX512 ? call##_avx512                                            \
     : sn_isa_active() == SN_ISA_AVX2 ? call##_avx2                                              \
                                      : call##_generic)
#elif defined(SN_HAVE_AVX2)
#define SN_DISPATCH(call) (sn_isa_active() == SN_ISA_AVX2 ? call##_avx2 : call##_generic)
#else
#define SN_DISPATCH(call) call##_generic
#endif

float sn_act_scalar_generic(sn_act act, float v);
#if defined(SN_HAVE_AVX2)
float sn_act_scalar_avx2(sn_act act, float v);
#endif
#if defined(SN_HAVE_AVX512)
float sn_act_scalar_avx512(sn_act act, float v);
#endif
float sn_act_scalar(sn_act act, float v) {
    return SN_DISPATCH(sn_act_scalar)(act, v);
}

void sn_act_f32_generic(sn_act act, size_t count, const float *x, float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_act_f32_avx2(sn_act act, size_t count, const float *x, float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_act_f32_avx512(sn_act act, size_t count, const float *x, float *y, int nthreads);
#endif
void sn_act_f32(sn_act act, size_t count, const float *x, float *y, int nthreads) {
    SN_DISPATCH(sn_act_f32)(act, count, x, y, nthreads);
}

void sn_act_backward_f32_generic(sn_act act, size_t count, const float *x, const float *dy,
                                 float *dx, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_act_backward_f32_avx2(sn_act act, size_t count, const float *x, const float *dy, float *dx,
                              int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_act_backward_f32_avx512(sn_act act, size_t count, const float *x, const float *dy, float *dx,
                              int nthreads);
#endif
void sn_act_backward_f32(sn_act act, size_t count, const float *x, const float *dy, float *dx,
                         int nthreads) {
    SN_DISPATCH(sn_act_backward_f32)(act, count, x, dy, dx, nthreads);
}

void sn_act_grad_range_f32_generic(sn_act act, size_t count, const float *x, const float *dy,
                                   float *out);
#if defined(SN_HAVE_AVX2)
void sn_act_grad_range_f32_avx2(sn_act act, size_t count, const float *x, const float *dy,
                                float *out);
#endif
#if defined(SN_HAVE_AVX512)
void sn_act_grad_range_f32_avx512(sn_act act, size_t count, const float *x, const float *dy,
                                float *out);
#endif
void sn_act_grad_range_f32(sn_act act, size_t count, const float *x, const float *dy, float *out) {
    SN_DISPATCH(sn_act_grad_range_f32)(act, count, x, dy, out);
}

void sn_act_grad_f32_generic(sn_act act, size_t count, const float *x, const float *dy, float *out,
                             int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_act_grad_f32_avx2(sn_act act, size_t count, const float *x, const float *dy, float *out,
                          int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_act_grad_f32_avx512(sn_act act, size_t count, const float *x, const float *dy, float *out,
                          int nthreads);
#endif
void sn_act_grad_f32(sn_act act, size_t count, const float *x, const float *dy, float *out,
                     int nthreads) {
    SN_DISPATCH(sn_act_grad_f32)(act, count, x, dy, out, nthreads);
}

void sn_batchnorm_f32_generic(size_t rows, int c, const float *x, const float *gamma,
                              const float *beta, const float *mean, const float *var, float eps,
                              float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_batchnorm_f32_avx2(size_t rows, int c, const float *x, const float *gamma,
                           const float *beta, const float *mean, const float *var, float eps,
                           float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_batchnorm_f32_avx512(size_t rows, int c, const float *x, const float *gamma,
                           const float *beta, const float *mean, const float *var, float eps,
                           float *y, int nthreads);
#endif
void sn_batchnorm_f32(size_t rows, int c, const float *x, const float *gamma, const float *beta,
                      const float *mean, const float *var, float eps, float *y, int nthreads) {
    SN_DISPATCH(sn_batchnorm_f32)(rows, c, x, gamma, beta, mean, var, eps, y, nthreads);
}

void sn_batchnorm_train_f32_generic(size_t rows, int c, const float *x, const float *gamma,
                                    const float *beta, float eps, float momentum,
                                    int unbiased_running_var, float *running_mean,
                                    float *running_var, float *y, float *save_mean,
                                    float *save_invstd, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_batchnorm_train_f32_avx2(size_t rows, int c, const float *x, const float *gamma,
                                 const float *beta, float eps, float momentum,
                                 int unbiased_running_var, float *running_mean, float *running_var,
                                 float *y, float *save_mean, float *save_invstd, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_batchnorm_train_f32_avx512(size_t rows, int c, const float *x, const float *gamma,
                                 const float *beta, float eps, float momentum,
                                 int unbiased_running_var, float *running_mean, float *running_var,
                                 float *y, float *save_mean, float *save_invstd, int nthreads);
#endif
void sn_batchnorm_train_f32(size_t rows, int c, const float *x, const float *gamma,
                            const float *beta, float eps, float momentum, int unbiased_running_var,
                            float *running_mean, float *running_var, float *y, float *save_mean,
                            float *save_invstd, int nthreads) {
    SN_DISPATCH(sn_batchnorm_train_f32)
    (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean, running_var, y,
     save_mean, save_invstd, nthreads);
}

void sn_batchnorm_train_backward_f32_generic(size_t rows, int c, const float *x, const float *gamma,
                                             const float *save_mean, const float *save_invstd,
                                             const float *dy, float *dx, float *dgamma,
                                             float *dbeta, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_batchnorm_train_backward_f32_avx2(size_t rows, int c, const float *x, const float *gamma,
                                          const float *save_mean, const float *save_invstd,
                                          const float *dy, float *dx, float *dgamma, float *dbeta,
                                          int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_batchnorm_train_backward_f32_avx512(size_t rows, int c, const float *x, const float *gamma,
                                          const float *save_mean, const float *save_invstd,
                                          const float *dy, float *dx, float *dgamma, float *dbeta,
                                          int nthreads);
#endif
void sn_batchnorm_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                     const float *save_mean, const float *save_invstd,
                                     const float *dy, float *dx, float *dgamma, float *dbeta,
                                     int nthreads) {
    SN_DISPATCH(sn_batchnorm_train_backward_f32)
    (rows, c, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, nthreads);
}

void sn_batchnorm_act_train_f32_generic(size_t rows, int c, const float *x, const float *gamma,
                                        const float *beta, float eps, float momentum,
                                        int unbiased_running_var, float *running_mean,
                                        float *running_var, sn_act act, float *y, float *save_mean,
                                        float *save_invstd, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_batchnorm_act_train_f32_avx2(size_t rows, int c, const float *x, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     int unbiased_running_var, float *running_mean,
                                     float *running_var, sn_act act, float *y, float *save_mean,
                                     float *save_invstd, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_batchnorm_act_train_f32_avx512(size_t rows, int c, const float *x, const float *gamma,
                                     const float *beta, float eps, float momentum,
                                     int unbiased_running_var, float *running_mean,
                                     float *running_var, sn_act act, float *y, float *save_mean,
                                     float *save_invstd, int nthreads);
#endif
void sn_batchnorm_act_train_f32(size_t rows, int c, const float *x, const float *gamma,
                                const float *beta, float eps, float momentum,
                                int unbiased_running_var, float *running_mean, float *running_var,
                                sn_act act, float *y, float *save_mean, float *save_invstd,
                                int nthreads) {
    SN_DISPATCH(sn_batchnorm_act_train_f32)
    (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean, running_var, act,
     y, save_mean, save_invstd, nthreads);
}

void sn_batchnorm_act_train_backward_f32_generic(size_t rows, int c, const float *x,
                                                 const float *gamma, const float *beta,
                                                 const float *save_mean, const float *save_invstd,
                                                 sn_act act, const float *dy, float *dx,
                                                 float *dgamma, float *dbeta, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_batchnorm_act_train_backward_f32_avx2(size_t rows, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *save_mean, const float *save_invstd,
                                              sn_act act, const float *dy, float *dx, float *dgamma,
                                              float *dbeta, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_batchnorm_act_train_backward_f32_avx512(size_t rows, int c, const float *x,
                                              const float *gamma, const float *beta,
                                              const float *save_mean, const float *save_invstd,
                                              sn_act act, const float *dy, float *dx, float *dgamma,
                                              float *dbeta, int nthreads);
#endif
void sn_batchnorm_act_train_backward_f32(size_t rows, int c, const float *x, const float *gamma,
                                         const float *beta, const float *save_mean,
                                         const float *save_invstd, sn_act act, const float *dy,
                                         float *dx, float *dgamma, float *dbeta, int nthreads) {
    SN_DISPATCH(sn_batchnorm_act_train_backward_f32)
    (rows, c, x, gamma, beta, save_mean, save_invstd, act, dy, dx, dgamma, dbeta, nthreads);
}

sn_status sn_conv2d_f32_generic(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                                int nthreads);
#if defined(SN_HAVE_AVX2)
sn_status sn_conv2d_f32_avx2(const sn_conv_desc *d, int n, int h, int w, const float *x,
                             const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                             int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
sn_status sn_conv2d_f32_avx512(const sn_conv_desc *d, int n, int h, int w, const float *x,
                             const float *wt, const sn_epilogue *ep, int oh, int ow, float *y,
                             int nthreads);
#endif
sn_status sn_conv2d_f32(const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt,
                        const sn_epilogue *ep, int oh, int ow, float *y, int nthreads) {
    return SN_DISPATCH(sn_conv2d_f32)(d, n, h, w, x, wt, ep, oh, ow, y, nthreads);
}

sn_status sn_conv2d_backward_f32_generic(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                         const float *wt, int oh, int ow, const float *dy,
                                         float *dx, float *dw, float *db, int nthreads);
#if defined(SN_HAVE_AVX2)
sn_status sn_conv2d_backward_f32_avx2(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                      const float *wt, int oh, int ow, const float *dy, float *dx,
                                      float *dw, float *db, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
sn_status sn_conv2d_backward_f32_avx512(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                      const float *wt, int oh, int ow, const float *dy, float *dx,
                                      float *dw, float *db, int nthreads);
#endif
sn_status sn_conv2d_backward_f32(const sn_conv_desc *d, int n, int h, int w, const float *x,
                                 const float *wt, int oh, int ow, const float *dy, float *dx,
                                 float *dw, float *db, int nthreads) {
    return SN_DISPATCH(sn_conv2d_backward_f32)(d, n, h, w, x, wt, oh, ow, dy, dx, dw, db, nthreads);
}

void sn_add_f32_generic(int k, const float *const *xs, size_t count, sn_act act, float *y,
                        int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_add_f32_avx2(int k, const float *const *xs, size_t count, sn_act act, float *y,
                     int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_add_f32_avx512(int k, const float *const *xs, size_t count, sn_act act, float *y,
                     int nthreads);
#endif
void sn_add_f32(int k, const float *const *xs, size_t count, sn_act act, float *y, int nthreads) {
    SN_DISPATCH(sn_add_f32)(k, xs, count, act, y, nthreads);
}

void sn_scale_f32_generic(size_t count, const float *x, float s, float *y);
#if defined(SN_HAVE_AVX2)
void sn_scale_f32_avx2(size_t count, const float *x, float s, float *y);
#endif
#if defined(SN_HAVE_AVX512)
void sn_scale_f32_avx512(size_t count, const float *x, float s, float *y);
#endif
void sn_scale_f32(size_t count, const float *x, float s, float *y) {
    SN_DISPATCH(sn_scale_f32)(count, x, s, y);
}

void sn_mul_channel_f32_generic(int n, int hw, int c, const float *x, const float *g, float *y,
                                int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_mul_channel_f32_avx2(int n, int hw, int c, const float *x, const float *g, float *y,
                             int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_mul_channel_f32_avx512(int n, int hw, int c, const float *x, const float *g, float *y,
                             int nthreads);
#endif
void sn_mul_channel_f32(int n, int hw, int c, const float *x, const float *g, float *y,
                        int nthreads) {
    SN_DISPATCH(sn_mul_channel_f32)(n, hw, c, x, g, y, nthreads);
}

void sn_mul_channel_backward_f32_generic(int n, int hw, int c, const float *x, const float *g,
                                         const float *dy, float *dx, float *dg, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_mul_channel_backward_f32_avx2(int n, int hw, int c, const float *x, const float *g,
                                      const float *dy, float *dx, float *dg, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_mul_channel_backward_f32_avx512(int n, int hw, int c, const float *x, const float *g,
                                      const float *dy, float *dx, float *dg, int nthreads);
#endif
void sn_mul_channel_backward_f32(int n, int hw, int c, const float *x, const float *g,
                                 const float *dy, float *dx, float *dg, int nthreads) {
    SN_DISPATCH(sn_mul_channel_backward_f32)(n, hw, c, x, g, dy, dx, dg, nthreads);
}

void sn_axpy_f32_generic(size_t count, float a, const float *x, float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_axpy_f32_avx2(size_t count, float a, const float *x, float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_axpy_f32_avx512(size_t count, float a, const float *x, float *y, int nthreads);
#endif
void sn_axpy_f32(size_t count, float a, const float *x, float *y, int nthreads) {
    SN_DISPATCH(sn_axpy_f32)(count, a, x, y, nthreads);
}

void sn_gap_f32_generic(int n, int hw, int c, const float *x, float *y);
#if defined(SN_HAVE_AVX2)
void sn_gap_f32_avx2(int n, int hw, int c, const float *x, float *y);
#endif
#if defined(SN_HAVE_AVX512)
void sn_gap_f32_avx512(int n, int hw, int c, const float *x, float *y);
#endif
void sn_gap_f32(int n, int hw, int c, const float *x, float *y) {
    SN_DISPATCH(sn_gap_f32)(n, hw, c, x, y);
}

void sn_gap_backward_f32_generic(int n, int hw, int c, const float *dy, float *dx);
#if defined(SN_HAVE_AVX2)
void sn_gap_backward_f32_avx2(int n, int hw, int c, const float *dy, float *dx);
#endif
#if defined(SN_HAVE_AVX512)
void sn_gap_backward_f32_avx512(int n, int hw, int c, const float *dy, float *dx);
#endif
void sn_gap_backward_f32(int n, int hw, int c, const float *dy, float *dx) {
    SN_DISPATCH(sn_gap_backward_f32)(n, hw, c, dy, dx);
}

void sn_maxpool_f32_generic(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                            int ow, const float *x, float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_maxpool_f32_avx2(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                         const float *x, float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_maxpool_f32_avx512(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                         const float *x, float *y, int nthreads);
#endif
void sn_maxpool_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
                    const float *x, float *y, int nthreads) {
    SN_DISPATCH(sn_maxpool_f32)(n, h, w, c, k, stride, pad, oh, ow, x, y, nthreads);
}

void sn_maxpool_backward_f32_generic(int n, int h, int w, int c, int k, int stride, sn_pad pad,
                                     int oh, int ow, const float *x, const float *dy, float *dx,
                                     int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_maxpool_backward_f32_avx2(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                                  int ow, const float *x, const float *dy, float *dx, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_maxpool_backward_f32_avx512(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                                  int ow, const float *x, const float *dy, float *dx, int nthreads);
#endif
void sn_maxpool_backward_f32(int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh,
                             int ow, const float *x, const float *dy, float *dx, int nthreads) {
    SN_DISPATCH(sn_maxpool_backward_f32)(n, h, w, c, k, stride, pad, oh, ow, x, dy, dx, nthreads);
}

void sn_upsample_nearest_f32_generic(int n, int h, int w, int c, int fh, int fw, const float *x,
                                     float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_upsample_nearest_f32_avx2(int n, int h, int w, int c, int fh, int fw, const float *x,
                                  float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_upsample_nearest_f32_avx512(int n, int h, int w, int c, int fh, int fw, const float *x,
                                  float *y, int nthreads);
#endif
void sn_upsample_nearest_f32(int n, int h, int w, int c, int fh, int fw, const float *x, float *y,
                             int nthreads) {
    SN_DISPATCH(sn_upsample_nearest_f32)(n, h, w, c, fh, fw, x, y, nthreads);
}

void sn_resize_nearest_f32_generic(int n, int h, int w, int c, int oh, int ow, const float *x,
                                   float *y, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_resize_nearest_f32_avx2(int n, int h, int w, int c, int oh, int ow, const float *x,
                                float *y, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_resize_nearest_f32_avx512(int n, int h, int w, int c, int oh, int ow, const float *x,
                                float *y, int nthreads);
#endif
void sn_resize_nearest_f32(int n, int h, int w, int c, int oh, int ow, const float *x, float *y,
                           int nthreads) {
    SN_DISPATCH(sn_resize_nearest_f32)(n, h, w, c, oh, ow, x, y, nthreads);
}

void sn_upsample_nearest_backward_f32_generic(int n, int h, int w, int c, int fh, int fw,
                                              const float *dy, float *dx, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_upsample_nearest_backward_f32_avx2(int n, int h, int w, int c, int fh, int fw,
                                           const float *dy, float *dx, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_upsample_nearest_backward_f32_avx512(int n, int h, int w, int c, int fh, int fw,
                                           const float *dy, float *dx, int nthreads);
#endif
void sn_upsample_nearest_backward_f32(int n, int h, int w, int c, int fh, int fw, const float *dy,
                                      float *dx, int nthreads) {
    SN_DISPATCH(sn_upsample_nearest_backward_f32)(n, h, w, c, fh, fw, dy, dx, nthreads);
}

void sn_resize_nearest_backward_f32_generic(int n, int h, int w, int c, int oh, int ow,
                                            const float *dy, float *dx, int nthreads);
#if defined(SN_HAVE_AVX2)
void sn_resize_nearest_backward_f32_avx2(int n, int h, int w, int c, int oh, int ow,
                                         const float *dy, float *dx, int nthreads);
#endif
#if defined(SN_HAVE_AVX512)
void sn_resize_nearest_backward_f32_avx512(int n, int h, int w, int c, int oh, int ow,
                                         const float *dy, float *dx, int nthreads);
#endif
void sn_resize_nearest_backward_f32(int n, int h, int w, int c, int oh, int ow, const float *dy,
                                    float *dx, int nthreads) {
    SN_DISPATCH(sn_resize_nearest_backward_f32)(n, h, w, c, oh, ow, dy, dx, nthreads);
}
