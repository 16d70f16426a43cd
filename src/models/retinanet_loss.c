/* RetinaNet focal + Huber losses and their gradients over the head's per-level outputs, computed
 * per element in double and summed in fixed anchor chunks so the result is the same for any
 * number of threads. */
#include "retinanet_loss.h"

#include <math.h>
#include <string.h>

#include "core.h"

/* Anchors per work item: the unit of the partial sums (fixed, so sums never depend on threads). */
#define LOSS_CHUNK 256

void sn_retinanet_loss_defaults(sn_retinanet_loss_params *p) {
    p->alpha = 0.25;
    p->gamma = 1.5;
    p->huber_delta = 0.1;
    p->box_weight = 50.0;
}

/* Focal loss of one logit z with target `pos` (1 or 0) and its derivative, written with
 * q = +-z (the logit of the target class being right):
 *   loss = w * sigmoid(-q)^gamma * softplus(-q)
 *   dloss/dq = -w * sigmoid(-q)^gamma * (gamma * sigmoid(q) * softplus(-q) + sigmoid(-q))
 * Everything comes from e = exp(-|q|) <= 1, so nothing overflows and no log of 0 is taken for
 * any finite z; sigmoid(-q)^gamma is formed from sigmoid(-q) itself, which keeps full relative
 * precision even when it is tiny. A NaN logit gives a NaN loss and gradient. */
static inline double focal(double z, int pos, double w, double gamma, double *dz) {
    const double q = pos ? z : -z;
    const double e = exp(-fabs(q));
    const double inv = 1.0 / (1.0 + e);
    const int qpos = q >= 0;
    const double s_q = qpos ? inv : e * inv;        /* sigmoid(q) */
    const double s_nq = qpos ? e * inv : inv;       /* sigmoid(-q) */
    const double ce = (qpos ? 0.0 : -q) + log1p(e); /* softplus(-q), the cross-entropy */
    const double mod = gamma == 1.5 ? s_nq * sqrt(s_nq) : pow(s_nq, gamma);
    const double dq = -w * mod * (gamma * s_q * ce + s_nq);
    *dz = pos ? dq : -dq;
    return w * mod * ce;
}

static sn_status check_args(const sn_anchor_layout *l, int batch, int num_classes,
                            const float *const *cls_out, const float *const *box_out,
                            const int32_t *cls_targets, const float *box_targets,
                            const sn_retinanet_loss_params *p, float *const *dcls,
                            float *const *dbox, const sn_retinanet_loss_value *out) {
    if (!l || !cls_out || !box_out || !cls_targets || !box_targets || !out)
        return sn_error(SN_ERR_INVALID_ARG, "retinanet loss: NULL argument");
    if (l->num_levels < 1 || l->num_levels > SN_ANCHOR_MAX_LEVEL + 1 ||
        l->per_location != SN_ANCHORS_PER_LOCATION || l->count != l->level_start[l->num_levels])
        return sn_error(SN_ERR_INVALID_ARG, "retinanet loss: anchor layout not initialised");
    if (batch < 1 || num_classes < 1)
        return sn_error(SN_ERR_INVALID_ARG, "retinanet loss: batch %d, %d classes (need >= 1)",
                        batch, num_classes);
    for (int i = 0; i < l->num_levels; i++) {
        if (!cls_out[i] || !box_out[i] || (dcls && !dcls[i]) || (dbox && !dbox[i]))
            return sn_error(SN_ERR_INVALID_ARG, "retinanet loss: NULL tensor for level %d",
                            l->min_level + i);
    }
    if (!(p->alpha >= 0 && p->alpha <= 1) || !(p->gamma >= 0) || !isfinite(p->gamma) ||
        !(p->huber_delta > 0) || !isfinite(p->huber_delta) || !(p->box_weight >= 0) ||
        !isfinite(p->box_weight))
        return sn_error(SN_ERR_INVALID_ARG,
                        "retinanet loss: alpha %g (0..1), gamma %g (>= 0), huber delta %g (> 0), "
                        "box weight %g (>= 0)",
                        p->alpha, p->gamma, p->huber_delta, p->box_weight);
    return SN_OK;
}

sn_status sn_retinanet_loss(const sn_anchor_layout *layout, int batch, int num_classes,
                            const float *const *cls_out, const float *const *box_out,
                            const int32_t *cls_targets, const float *box_targets,
                            const sn_retinanet_loss_params *params, int nthreads,
                            float *const *dcls, float *const *dbox, sn_retinanet_loss_value *out) {
    sn_retinanet_loss_params defaults;
    if (!params) {
        sn_retinanet_loss_defaults(&defaults);
        params = &defaults;
    }
    sn_status st = check_args(layout, batch, num_classes, cls_out, box_out, cls_targets,
                              box_targets, params, dcls, dbox, out);
    if (st != SN_OK) return st;

    const int64_t count = layout->count;
    const int C = num_classes, nl = layout->num_levels;
    /* The divisor needs every image's positives before any gradient can be written, and a bad
     * target must be caught before anything is. */
    int64_t npos = 0;
    for (int64_t i = 0; i < (int64_t)batch * count; i++) {
        const int32_t t = cls_targets[i];
        if (t < 0 || t >= C)
            return sn_error(
                SN_ERR_INVALID_ARG,
                "retinanet loss: image %lld anchor %lld has class target %d, outside 0..%d",
                (long long)(i / count), (long long)(i % count), (int)t, C - 1);
        npos += t > 0;
    }

    /* Work items: (image, level, chunk of LOSS_CHUNK anchors of that level). */
    int64_t lvl_item[SN_ANCHOR_MAX_LEVEL + 2];
    int64_t per_image = 0;
    for (int li = 0; li < nl; li++) {
        lvl_item[li] = per_image;
        const int64_t n = layout->level_start[li + 1] - layout->level_start[li];
        per_image += (n + LOSS_CHUNK - 1) / LOSS_CHUNK;
    }
    lvl_item[nl] = per_image;
    const int64_t items = per_image * batch;
    double *part = sn_alloc((size_t)items * 2 * sizeof *part);
    if (!part) return SN_ERR_OOM;

    const double norm = (double)npos + 1.0, inv_norm = 1.0 / norm;
    const double alpha = params->alpha, gamma = params->gamma, delta = params->huber_delta;
    const double box_scale = params->box_weight * 0.25 * inv_norm;
    const int nt = sn_resolve_threads(nthreads);

#pragma omp parallel for num_threads(nt) schedule(dynamic, 4) if (nt > 1)
    for (int64_t it = 0; it < items; it++) {
        const int b = (int)(it / per_image);
        const int64_t r = it % per_image;
        int li = 0;
        while (lvl_item[li + 1] <= r) li++;
        const int64_t n_lvl = layout->level_start[li + 1] - layout->level_start[li];
        const int64_t j0 = (r - lvl_item[li]) * LOSS_CHUNK;
        const int64_t j1 = j0 + LOSS_CHUNK < n_lvl ? j0 + LOSS_CHUNK : n_lvl;
        /* Level tensors are [batch][h][w][A*C]: image b's anchors j are rows b * n_lvl + j. */
        const float *z = cls_out[li] + ((size_t)b * n_lvl + j0) * C;
        const float *d = box_out[li] + ((size_t)b * n_lvl + j0) * 4;
        float *gz = dcls ? dcls[li] + ((size_t)b * n_lvl + j0) * C : NULL;
        float *gd = dbox ? dbox[li] + ((size_t)b * n_lvl + j0) * 4 : NULL;
        const int32_t *t = cls_targets + (size_t)b * count + layout->level_start[li];
        const float *bt = box_targets + ((size_t)b * count + layout->level_start[li]) * 4;
        double cls_sum = 0.0, box_sum = 0.0;
        for (int64_t j = j0; j < j1; j++, z += C, d += 4) {
            const int tj = t[j];
            for (int c = 0; c < C; c++) {
                const int pos = tj > 0 && c == tj;
                double g;
                cls_sum += focal(z[c], pos, pos ? alpha : 1.0 - alpha, gamma, &g);
                if (gz) gz[c] = (float)(g * inv_norm);
            }
            if (gz) gz += C;
            if (tj > 0) {
                /* Keras Huber: 0.5 x^2 inside |x| <= delta, delta * (|x| - delta / 2) outside,
                 * averaged over the 4 deltas of the anchor. */
                double h = 0.0;
                for (int k = 0; k < 4; k++) {
                    const double x = (double)d[k] - bt[j * 4 + k];
                    const double ax = fabs(x);
                    double gx;
                    if (ax <= delta) {
                        h += 0.5 * x * x;
                        gx = x;
                    } else {
                        h += delta * (ax - 0.5 * delta);
                        gx = x > 0 ? delta : x < 0 ? -delta : x; /* x is NaN here */
                    }
                    if (gd) gd[k] = (float)(gx * box_scale);
                }
                box_sum += 0.25 * h;
            } else if (gd) {
                gd[0] = gd[1] = gd[2] = gd[3] = 0.0f;
            }
            if (gd) gd += 4;
        }
        part[it * 2] = cls_sum;
        part[it * 2 + 1] = box_sum;
    }

    double cls = 0.0, box = 0.0;
    for (int64_t it = 0; it < items; it++) {
        cls += part[it * 2];
        box += part[it * 2 + 1];
    }
    sn_free(part);
    out->cls = cls / norm;
    out->box = box / norm;
    out->total = out->cls + params->box_weight * out->box;
    out->num_positives = npos;
    return SN_OK;
}
