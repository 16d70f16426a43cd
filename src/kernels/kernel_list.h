/* The kernel registry: one row per kernel that is built once per instruction set, with its
 * documentation. Everything else about these kernels is generated from the rows: the prototypes
 * (kernels.h), their file-local declarations inside each build (kernels.h with SN_ISA_UNIT), the
 * members of the function-pointer table (kernel_table.h), each build's table (isa_unit.h) and the
 * public names that call through the active table (dispatch.c). Adding a kernel: one row here and
 * its definition in a source that isa_unit.h includes.
 *
 * Rows: SN_KERNEL(return type, name, (parameters), (arguments)), the arguments being the
 * parameters' names in order; the public name runs the build of the active instruction set
 * (sn_isa_active). SN_KERNEL_ISA_ARG rows are the same, except that the first parameter,
 * sn_isa isa, names the build to run (a build ignores it). No include guard: the includer
 * defines both macros, includes this file and undefines them. */

/* y[n][oh][ow][cout] = epilogue(conv(x[n][h][w][cin], wt)). oh/ow must equal
 * sn_window_out(h, kh, stride_h, pad.top, pad.bottom) etc. Uses up to nthreads OpenMP threads
 * (nthreads <= 0 means 1). Returns SN_ERR_OOM if its packing buffers cannot be allocated,
 * SN_ERR_INVALID_ARG for inconsistent geometry (message set). */
SN_KERNEL(sn_status, sn_conv2d_f32,
          (const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt,
           const sn_epilogue *ep, int oh, int ow, float *y, int nthreads),
          (d, n, h, w, x, wt, ep, oh, ow, y, nthreads))

/* sn_conv2d_f32 that also takes, while each output tile is in cache, the batch-norm statistics
 * of its rows for a training batch-norm that follows: part[t][0][cout] = the per-channel mean
 * and part[t][1][cout] = the sum of squared deviations from it, of the tile t of rows
 * [t*T, min((t+1)*T, rows)) of the [rows = n*oh*ow][cout] output, T = sn_conv2d_stat_tile (a
 * function of the shape alone). part holds ceil(rows / T) * 2 * cout doubles. Bit for bit what
 * sn_batchnorm_tile_stats_f32 gives on the output with the same T. No input scale
 * (SN_ERR_INVALID_ARG). */
SN_KERNEL(sn_status, sn_conv2d_stats_f32,
          (const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt,
           const sn_epilogue *ep, int oh, int ow, float *y, double *part, int nthreads),
          (d, n, h, w, x, wt, ep, oh, ow, y, part, nthreads))
SN_KERNEL(long, sn_conv2d_stat_tile, (const sn_conv_desc *d, int n, int oh, int ow),
          (d, n, oh, ow))

/* GEMM used by the convolution: C[m][n] (ldc) = A[m][k] (lda) * B[k][n] (ldb),
 * accumulate into C when accumulate != 0. Row-major. */
SN_KERNEL(void, sn_gemm_f32,
          (int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c,
           int ldc, int accumulate, int nthreads),
          (m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads))

/* The same product with op(B) (B, or B^T when trans_b; k x n) packed once and reused by many
 * row tiles (the convolutions). sn_gemm_packb_f32 returns the packed size in floats and writes
 * it when `packed` is not NULL; the layout belongs to `isa`, so pack and multiply with the same
 * one (read sn_isa_active() once). sn_gemm_packed_f32 runs on the calling thread:
 * C [m][n] (ldc) (+)= A [m][k] (lda) * op(B)[k0 .. k0+k)[n0 .. n0+n), where `ktotal` is the k
 * the panels were packed with and n0 is a multiple of SN_GEMM_N_ALIGN. With k0 a multiple of
 * SN_GEMM_KC and m <= 120 it gives the bits of sn_gemm_f32 on the same operands, so a product
 * may be summed K block by K block. An ISA this build lacks runs the portable build. */
SN_KERNEL_ISA_ARG(size_t, sn_gemm_packb_f32,
                  (sn_isa isa, int trans_b, int k, int n, const float *b, int ldb, float *packed),
                  (isa, trans_b, k, n, b, ldb, packed))
SN_KERNEL_ISA_ARG(void, sn_gemm_packed_f32,
                  (sn_isa isa, int m, int n0, int n, int k0, int k, const float *a, int lda,
                   const float *packed, int ktotal, float *c, int ldc, int accumulate),
                  (isa, m, n0, n, k0, k, a, lda, packed, ktotal, c, ldc, accumulate))

/* Inference batch-norm over the last axis: y = gamma*(x-mean)/sqrt(var+eps) + beta. */
SN_KERNEL(void, sn_batchnorm_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta,
           const float *mean, const float *var, float eps, float *y, int nthreads),
          (rows, c, x, gamma, beta, mean, var, eps, y, nthreads))

/* Elementwise activations; y may alias x. */
SN_KERNEL(float, sn_act_scalar, (sn_act act, float v), (act, v))
SN_KERNEL(void, sn_act_f32, (sn_act act, size_t count, const float *x, float *y, int nthreads),
          (act, count, x, y, nthreads))

/* Max-pool, window k x k, stride s, explicit padding; padded cells never win (they are skipped,
 * not treated as zeros). */
SN_KERNEL(void, sn_maxpool_f32,
          (int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
           const float *x, float *y, int nthreads),
          (n, h, w, c, k, stride, pad, oh, ow, x, y, nthreads))

/* Nearest upsampling by integer factors: y[n][i][j] = x[n][i/fh][j/fw]. */
SN_KERNEL(void, sn_upsample_nearest_f32,
          (int n, int h, int w, int c, int fh, int fw, const float *x, float *y, int nthreads),
          (n, h, w, c, fh, fw, x, y, nthreads))
/* Nearest resize to oh x ow with source index floor(dst*in/out) (TF1 legacy, no half-pixel). */
SN_KERNEL(void, sn_resize_nearest_f32,
          (int n, int h, int w, int c, int oh, int ow, const float *x, float *y, int nthreads),
          (n, h, w, c, oh, ow, x, y, nthreads))

/* y = sum of k inputs (count elements each), then act; y may alias any input. */
SN_KERNEL(void, sn_add_f32,
          (int k, const float *const *xs, size_t count, sn_act act, float *y, int nthreads),
          (k, xs, count, act, y, nthreads))
/* y = x * s (elementwise scalar scale); y may alias x. */
SN_KERNEL(void, sn_scale_f32, (size_t count, const float *x, float s, float *y), (count, x, s, y))

/* Global average pool: y[n][c] = mean over h*w of x[n][.][c], summed in double in pixel order
 * (the same bits for any nthreads). */
SN_KERNEL(void, sn_gap_f32, (int n, int hw, int c, const float *x, float *y, int nthreads),
          (n, hw, c, x, y, nthreads))
/* Channel gate (squeeze-excitation): y[n][p][c] = x[n][p][c] * g[n][c]; y may alias x. */
SN_KERNEL(void, sn_mul_channel_f32,
          (int n, int hw, int c, const float *x, const float *g, float *y, int nthreads),
          (n, hw, c, x, g, y, nthreads))


/* ------------------------------------------------------------------------------------------
 * Backward passes (training). Conventions: every gradient output is ACCUMULATED (+=) into its
 * buffer, so a tensor read by several nodes sums its gradients; the caller zeroes buffers. A
 * NULL gradient pointer skips that gradient. Each is checked against finite differences of its
 * forward in tests/test_grad_conv.c and tests/test_grad_ops.c.
 * ------------------------------------------------------------------------------------------ */

/* C (+)= op(A) * op(B) with op(X) = X or X^T (row-major storage of the un-transposed matrix):
 * op(A) is m x k, op(B) is k x n. */
SN_KERNEL(void, sn_gemm_ex_f32,
          (int trans_a, int trans_b, int m, int n, int k, const float *a, int lda,
           const float *b, int ldb, float *c, int ldc, int accumulate, int nthreads),
          (trans_a, trans_b, m, n, k, a, lda, b, ldb, c, ldc, accumulate, nthreads))

/* Convolution backward for dy = dL/d(conv output before any epilogue) [n][oh][ow][cout]:
 * dx [n][h][w][cin] += conv_transpose(dy, wt); dw [kh][kw][cin/groups][cout] += x^T dy;
 * db [cout] += sum of dy. Handles stride, asymmetric padding, groups and depthwise. Returns
 * SN_ERR_OOM (message set) if its work buffers cannot be allocated. */
SN_KERNEL(sn_status, sn_conv2d_backward_f32,
          (const sn_conv_desc *d, int n, int h, int w, const float *x, const float *wt, int oh,
           int ow, const float *dy, float *dx, float *dw, float *db, int nthreads),
          (d, n, h, w, x, wt, oh, ow, dy, dx, dw, db, nthreads))

/* dx += dy * act'(x), x being the activation's input. */
SN_KERNEL(void, sn_act_backward_f32,
          (sn_act act, size_t count, const float *x, const float *dy, float *dx, int nthreads),
          (act, count, x, dy, dx, nthreads))

/* out = dy * act'(x), assigned rather than accumulated; out may be dy itself. The _range form is
 * single-threaded. */
SN_KERNEL(void, sn_act_grad_f32,
          (sn_act act, size_t count, const float *x, const float *dy, float *out, int nthreads),
          (act, count, x, dy, out, nthreads))
SN_KERNEL(void, sn_act_grad_range_f32,
          (sn_act act, size_t count, const float *x, const float *dy, float *out),
          (act, count, x, dy, out))

/* Training-mode batch-norm over rows x c: batch mean and biased variance per channel,
 * y = gamma * (x - mean) * inv_std + beta with inv_std = 1/sqrt(var + eps); writes save_mean and
 * save_invstd [c] for the backward; when running_mean/var are non-NULL updates them as
 * r = momentum * r + (1 - momentum) * batch, using the unbiased variance (var * rows/(rows-1))
 * for running_var when unbiased_running_var != 0 (TF's fused kernel), the biased one otherwise. */
SN_KERNEL(void, sn_batchnorm_train_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta, float eps,
           float momentum, int unbiased_running_var, float *running_mean, float *running_var,
           float *y, float *save_mean, float *save_invstd, int nthreads),
          (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean,
           running_var, y, save_mean, save_invstd, nthreads))
/* Backward of the training-mode batch-norm (batch statistics are functions of x):
 * dx += ..., dgamma += sum dy * xhat, dbeta += sum dy. */
SN_KERNEL(void, sn_batchnorm_train_backward_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *save_mean,
           const float *save_invstd, const float *dy, float *dx, float *dgamma, float *dbeta,
           int nthreads),
          (rows, c, x, gamma, save_mean, save_invstd, dy, dx, dgamma, dbeta, nthreads))

/* Fused y = act(batchnorm_train(x)), the training path's kernel: the same statistics,
 * save_mean/save_invstd and running-average update as sn_batchnorm_train_f32 (taken in one pass
 * about a shift near the mean), then y = act((x - save_mean) * mul + beta) with
 * mul = float(gamma * save_invstd), computed from the saved (rounded) statistics so that the
 * backward can recompute the activation's input exactly. Nothing but y and the statistics is
 * written. y may be NULL (statistics only). */
SN_KERNEL(void, sn_batchnorm_act_train_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta, float eps,
           float momentum, int unbiased_running_var, float *running_mean, float *running_var,
           sn_act act, float *y, float *save_mean, float *save_invstd, int nthreads),
          (rows, c, x, gamma, beta, eps, momentum, unbiased_running_var, running_mean,
           running_var, act, y, save_mean, save_invstd, nthreads))
/* Backward of sn_batchnorm_act_train_f32 for dy = dL/dy: dx = (assigned, not accumulated) the
 * gradient at x through the activation and the batch statistics; dgamma += sum(g * xhat),
 * dbeta += sum(g) with g = dy * act'(u). Any of dx, dgamma, dbeta may be NULL. */
SN_KERNEL(void, sn_batchnorm_act_train_backward_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta,
           const float *save_mean, const float *save_invstd, sn_act act, const float *dy,
           float *dx, float *dgamma, float *dbeta, int nthreads),
          (rows, c, x, gamma, beta, save_mean, save_invstd, act, dy, dx, dgamma, dbeta,
           nthreads))

/* Training batch-norm from per-tile statistics (sn_conv2d_stats_f32's): the separate pass that
 * is the fused one's reference, sn_batchnorm_tile_stats_f32, writes part[t][0][c] = the mean and
 * part[t][1][c] = the sum of squared deviations from it of rows [t*tile, min((t+1)*tile, rows))
 * of x, with the same arithmetic as the convolution; sn_batchnorm_act_train_parts_f32 merges
 * the tiles in order (Chan et al.'s pairwise update, in double), then does what
 * sn_batchnorm_act_train_f32 does with those statistics: save_mean/save_invstd, the running
 * averages, y = act((x - save_mean) * mul + beta) (y may be NULL). */
SN_KERNEL(void, sn_batchnorm_tile_stats_f32,
          (size_t rows, int c, const float *x, size_t tile, double *part, int nthreads),
          (rows, c, x, tile, part, nthreads))
SN_KERNEL(void, sn_batchnorm_act_train_parts_f32,
          (size_t rows, int c, const float *x, size_t tile, const double *part,
           const float *gamma, const float *beta, float eps, float momentum,
           int unbiased_running_var, float *running_mean, float *running_var, sn_act act,
           float *y, float *save_mean, float *save_invstd, int nthreads),
          (rows, c, x, tile, part, gamma, beta, eps, momentum, unbiased_running_var,
           running_mean, running_var, act, y, save_mean, save_invstd, nthreads))

/* Synchronized batch-norm (sn_graph.bn_reduce): the fused pair above split around the two
 * per-channel reductions, which the caller sums over every process in between.
 * Forward: sn_batchnorm_sums_f32 assigns the local sums sum[c] = sum of x, sumsq[c] = sum of
 * x^2 over the rows, in double; sn_batchnorm_stats_from_sums_f32 turns the global sums over
 * `rows` rows in all into mean = sum/rows, the biased var = sumsq/rows - mean^2 (0 if
 * negative), save_mean = float(mean), save_invstd = float(1/sqrt(var + eps)), and updates
 * running_mean/var when non-NULL as sn_batchnorm_train_f32 does (unbiased: var*rows/(rows-1));
 * sn_batchnorm_act_apply_f32 writes y = act((x - mean) * mul + beta), mul = float(gamma *
 * invstd), from the saved statistics, as sn_batchnorm_act_train_f32 does.
 * Backward, with g = dy * act'(u) and u recomputed from x and the saved statistics:
 * sn_batchnorm_act_backward_sums_f32 assigns the local sum_g[c] = sum of g and sum_gxhat[c] =
 * sum of g * xhat (xhat = (x - mean) * invstd), adds them to dbeta and dgamma (each may be NULL)
 * and, when g is non-NULL, writes g there [rows][c]; sn_batchnorm_act_backward_dx_f32 assigns
 * dx = mul * (g - sum_g/rows_total - xhat * sum_gxhat/rows_total) from the global sums and the
 * forward's row count; dy may be dx itself (in place) when act is SN_ACT_NONE. */
SN_KERNEL(void, sn_batchnorm_sums_f32,
          (size_t rows, int c, const float *x, double *sum, double *sumsq, int nthreads),
          (rows, c, x, sum, sumsq, nthreads))
SN_KERNEL(void, sn_batchnorm_stats_from_sums_f32,
          (int c, double rows, const double *sum, const double *sumsq, float eps, float momentum,
           int unbiased_running_var, float *running_mean, float *running_var, float *save_mean,
           float *save_invstd),
          (c, rows, sum, sumsq, eps, momentum, unbiased_running_var, running_mean, running_var,
           save_mean, save_invstd))
SN_KERNEL(void, sn_batchnorm_act_apply_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta,
           const float *mean, const float *invstd, sn_act act, float *y, int nthreads),
          (rows, c, x, gamma, beta, mean, invstd, act, y, nthreads))
SN_KERNEL(void, sn_batchnorm_act_backward_sums_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta,
           const float *mean, const float *invstd, sn_act act, const float *dy, double *sum_g,
           double *sum_gxhat, float *g, float *dgamma, float *dbeta, int nthreads),
          (rows, c, x, gamma, beta, mean, invstd, act, dy, sum_g, sum_gxhat, g, dgamma, dbeta,
           nthreads))
SN_KERNEL(void, sn_batchnorm_act_backward_dx_f32,
          (size_t rows, int c, const float *x, const float *gamma, const float *beta,
           const float *mean, const float *invstd, sn_act act, const float *dy,
           const double *sum_g, const double *sum_gxhat, double rows_total, float *dx,
           int nthreads),
          (rows, c, x, gamma, beta, mean, invstd, act, dy, sum_g, sum_gxhat, rows_total, dx,
           nthreads))

/* Max-pool backward: each dy goes to the window cell that won the forward (the first maximum in
 * row-major window order; padded cells never win). */
SN_KERNEL(void, sn_maxpool_backward_f32,
          (int n, int h, int w, int c, int k, int stride, sn_pad pad, int oh, int ow,
           const float *x, const float *dy, float *dx, int nthreads),
          (n, h, w, c, k, stride, pad, oh, ow, x, dy, dx, nthreads))
/* Nearest upsample / resize backward: dx sums the dy of every output pixel that read it. */
SN_KERNEL(void, sn_upsample_nearest_backward_f32,
          (int n, int h, int w, int c, int fh, int fw, const float *dy, float *dx, int nthreads),
          (n, h, w, c, fh, fw, dy, dx, nthreads))
SN_KERNEL(void, sn_resize_nearest_backward_f32,
          (int n, int h, int w, int c, int oh, int ow, const float *dy, float *dx, int nthreads),
          (n, h, w, c, oh, ow, dy, dx, nthreads))
/* Global average pool backward: dx[n][p][c] += dy[n][c] / hw. */
SN_KERNEL(void, sn_gap_backward_f32, (int n, int hw, int c, const float *dy, float *dx),
          (n, hw, c, dy, dx))
/* Channel gate backward: dx += dy * g, dg[n][c] += sum over pixels of dy * x. */
SN_KERNEL(void, sn_mul_channel_backward_f32,
          (int n, int hw, int c, const float *x, const float *g, const float *dy, float *dx,
           float *dg, int nthreads),
          (n, hw, c, x, g, dy, dx, dg, nthreads))
/* y += a * x (the backward of add and scale). */
SN_KERNEL(void, sn_axpy_f32, (size_t count, float a, const float *x, float *y, int nthreads),
          (count, a, x, y, nthreads))
