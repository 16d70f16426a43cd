/* Built once per instruction set: each kernel file that defines SN_KERNEL_IMPL before
 * including kernels.h gets its public functions renamed to name_generic, or name_avx2 when it is
 * compiled as src/kernels/avx2/<file>.c (with SN_KERNEL_AVX2 and the AVX2 + FMA flags), or
 * name_avx512 as src/kernels/avx512/<file>.c (SN_KERNEL_AVX512, AVX-512F flags).
 * dispatch.c defines the public names, each calling the build of the active instruction set
 * (sn_isa_active). Calls between kernels stay inside one build. Keep this list and dispatch.c
 * in step with kernels.h. */
#ifndef SN_KERNEL_ISA_H
#define SN_KERNEL_ISA_H

#if defined(SN_KERNEL_AVX512)
#define SN_KV(name) name##_avx512
#elif defined(SN_KERNEL_AVX2)
#define SN_KV(name) name##_avx2
#else
#define SN_KV(name) name##_generic
#endif

#define sn_act_scalar SN_KV(sn_act_scalar)
#define sn_act_f32 SN_KV(sn_act_f32)
#define sn_act_backward_f32 SN_KV(sn_act_backward_f32)
#define sn_act_grad_range_f32 SN_KV(sn_act_grad_range_f32)
#define sn_act_grad_f32 SN_KV(sn_act_grad_f32)
#define sn_batchnorm_f32 SN_KV(sn_batchnorm_f32)
#define sn_batchnorm_train_f32 SN_KV(sn_batchnorm_train_f32)
#define sn_batchnorm_train_backward_f32 SN_KV(sn_batchnorm_train_backward_f32)
#define sn_batchnorm_act_train_f32 SN_KV(sn_batchnorm_act_train_f32)
#define sn_batchnorm_act_train_backward_f32 SN_KV(sn_batchnorm_act_train_backward_f32)
#define sn_conv2d_f32 SN_KV(sn_conv2d_f32)
#define sn_conv2d_backward_f32 SN_KV(sn_conv2d_backward_f32)
#define sn_add_f32 SN_KV(sn_add_f32)
#define sn_scale_f32 SN_KV(sn_scale_f32)
#define sn_mul_channel_f32 SN_KV(sn_mul_channel_f32)
#define sn_mul_channel_backward_f32 SN_KV(sn_mul_channel_backward_f32)
#define sn_axpy_f32 SN_KV(sn_axpy_f32)
#define sn_gap_f32 SN_KV(sn_gap_f32)
#define sn_gap_backward_f32 SN_KV(sn_gap_backward_f32)
#define sn_maxpool_f32 SN_KV(sn_maxpool_f32)
#define sn_maxpool_backward_f32 SN_KV(sn_maxpool_backward_f32)
#define sn_upsample_nearest_f32 SN_KV(sn_upsample_nearest_f32)
#define sn_resize_nearest_f32 SN_KV(sn_resize_nearest_f32)
#define sn_upsample_nearest_backward_f32 SN_KV(sn_upsample_nearest_backward_f32)
#define sn_resize_nearest_backward_f32 SN_KV(sn_resize_nearest_backward_f32)

#endif
