/* RetinaNet training and evaluation glue: anchors, targets, the loss through the head's outputs,
 * detections and COCO scoring (see det_train.h). */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "det_train.h"
#include "model.h"
#include "model_train.h"

void sn_det_head_free(sn_det_head *h) {
    if (!h) return;
    sn_free(h->anchors);
    sn_free(h->cls_targets);
    sn_free(h->box_targets);
    sn_free(h->gt);
    for (int i = 0; i < SN_DET_MAX_LEVELS; i++) {
        sn_free(h->dcls[i]);
        sn_free(h->dbox[i]);
    }
    memset(h, 0, sizeof *h);
}

sn_status sn_det_head_init(sn_det_head *h, const sn_model *m, int canvas, int max_batch,
                           int max_boxes) {
    if (!h || !m) return sn_error(SN_ERR_INVALID_ARG, "sn_det_head_init: NULL argument");
    memset(h, 0, sizeof *h);
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_RETINANET)
        return sn_error(SN_ERR_INVALID_ARG, "detection needs a model with the RetinaNet head");
    if (c->max_level - c->min_level + 1 > SN_DET_MAX_LEVELS)
        return sn_error(SN_ERR_UNSUPPORTED, "levels %d..%d: at most %d levels", c->min_level,
                        c->max_level, SN_DET_MAX_LEVELS);
    sn_status st = sn_anchor_layout_init(c->min_level, c->max_level, canvas, canvas, &h->layout);
    if (st != SN_OK) return st;
    h->canvas = canvas;
    h->num_classes = c->num_classes;
    h->num_levels = h->layout.num_levels;
    h->max_batch = max_batch;
    h->max_boxes = max_boxes > 0 ? max_boxes : 1;
    const size_t count = (size_t)h->layout.count;
    if (!(h->anchors = sn_alloc(count * 4 * sizeof(float)))) goto oom;
    if ((st = sn_anchors_generate(&h->layout, c->flavour, c->anchor_size, h->anchors)) != SN_OK) {
        sn_det_head_free(h);
        return st;
    }
    if (max_batch > 0) {
        if (!(h->cls_targets = sn_alloc((size_t)max_batch * count * sizeof(int32_t))) ||
            !(h->box_targets = sn_alloc((size_t)max_batch * count * 4 * sizeof(float))) ||
            !(h->gt = sn_alloc((size_t)h->max_boxes * sizeof(sn_gt_box))))
            goto oom;
        for (int l = 0; l < h->num_levels; l++) {
            const size_t px = (size_t)max_batch * h->layout.level_h[l] * h->layout.level_w[l] *
                              SN_ANCHORS_PER_LOCATION;
            if (!(h->dcls[l] = sn_alloc(px * (size_t)h->num_classes * sizeof(float))) ||
                !(h->dbox[l] = sn_alloc(px * 4 * sizeof(float))))
                goto oom;
        }
    }
    return SN_OK;
oom:
    sn_det_head_free(h);
    return sn_error(SN_ERR_OOM, "detection head: out of memory for a %dx%d input, batch %d", canvas,
                    canvas, max_batch);
}

sn_status sn_det_head_targets(sn_det_head *h, const sn_det_source *src, const void *extra, int n) {
    if (!h || !src || !extra || n < 1 || n > h->max_batch)
        return sn_error(SN_ERR_INVALID_ARG, "detection targets: bad batch of %d (room for %d)", n,
                        h ? h->max_batch : 0);
    const int64_t count = h->layout.count;
    h->positives = 0;
    for (int i = 0; i < n; i++) {
        const sn_det_sample *s = sn_det_batch_sample(src, extra, i);
        if (s->n_boxes > h->max_boxes)
            return sn_error(SN_ERR_INVALID_ARG, "detection targets: %d boxes, room for %d",
                            s->n_boxes, h->max_boxes);
        for (int k = 0; k < s->n_boxes; k++) {
            const sn_det_box *b = &s->boxes[k];
            h->gt[k] = (sn_gt_box){b->y0, b->x0, b->y1, b->x1, b->cls, b->crowd};
        }
        int64_t pos = 0;
        sn_status st = sn_anchor_label(&h->layout, h->anchors, h->gt, s->n_boxes, h->num_classes,
                                       h->cls_targets + (size_t)i * count,
                                       h->box_targets + (size_t)i * count * 4, &pos);
        if (st != SN_OK) {
            const char *file = src->coco->images[s->image].file_name;
            return sn_error(st, "%s: %s", file, sn_last_error());
        }
        h->positives += pos;
    }
    return SN_OK;
}

/* Graph nodes of the outputs class.L and box.L, levels ascending. */
static sn_status head_nodes(const sn_model *m, const sn_graph *g, const sn_det_head *h, int *cls,
                            int *box) {
    const sn_config *c = sn_model_config(m);
    for (int l = 0; l < h->num_levels; l++) {
        char cn[32], bn[32];
        snprintf(cn, sizeof cn, "class.%d", c->min_level + l);
        snprintf(bn, sizeof bn, "box.%d", c->min_level + l);
        cls[l] = box[l] = -1;
        for (int i = 0; i < g->n; i++) {
            if (strcmp(g->nodes[i].out_name, cn) == 0) cls[l] = i;
            if (strcmp(g->nodes[i].out_name, bn) == 0) box[l] = i;
        }
        if (cls[l] < 0 || box[l] < 0)
            return sn_error(SN_ERR_NOT_FOUND, "the model has no outputs %s and %s", cn, bn);
    }
    return SN_OK;
}

typedef struct {
    sn_det_head *h;
    const float *images;
    uint64_t seed;
    const sn_loss_sync *sync;
    int64_t total_pos; /* positive anchors of the whole batch (every process's) */
    sn_retinanet_loss_value lv[SN_MAX_REPLICAS];
} det_job;

/* One part of the batch (all of it when the model is not split): forward, the loss of its
 * images, and the backward. The loss divides by the part's positives + 1; the gradients and
 * values are rescaled to the whole batch's positives + 1, so that the parts add up to the loss
 * (focal + Huber) over the whole batch (only batch-norm statistics differ from one graph). */
static sn_status det_part(sn_model *m, int r, float *const *grads, void *user) {
    det_job *j = user;
    sn_det_head *h = j->h;
    sn_graph *g = sn_model_part_graph(m, r);
    const int per = g->nodes[0].n;
    const size_t in_elems = (size_t)g->nodes[0].h * g->nodes[0].w * g->nodes[0].c;
    sn_status st = sn_graph_forward_train(g, &m->params, j->images + (size_t)r * per * in_elems,
                                          m->cfg.bn_momentum, 1, sn_part_seed(j->seed, r));
    if (st != SN_OK) return st;
    int cls[SN_DET_MAX_LEVELS], box[SN_DET_MAX_LEVELS];
    if ((st = head_nodes(m, g, h, cls, box)) != SN_OK) return st;
    const float *co[SN_DET_MAX_LEVELS], *bo[SN_DET_MAX_LEVELS];
    float *dc[SN_DET_MAX_LEVELS], *db[SN_DET_MAX_LEVELS];
    for (int l = 0; l < h->num_levels; l++) {
        co[l] = sn_graph_f32(g, cls[l]);
        bo[l] = sn_graph_f32(g, box[l]);
        const size_t px = (size_t)r * per * h->layout.level_h[l] * h->layout.level_w[l] *
                          SN_ANCHORS_PER_LOCATION;
        dc[l] = h->dcls[l] + px * (size_t)h->num_classes;
        db[l] = h->dbox[l] + px * 4;
    }
    const size_t count = (size_t)h->layout.count;
    sn_retinanet_loss_value *lv = &j->lv[r];
    st = sn_retinanet_loss(&h->layout, per, h->num_classes, co, bo,
                           h->cls_targets + (size_t)r * per * count,
                           h->box_targets + (size_t)r * per * count * 4, NULL, g->nthreads,
                           grads ? dc : NULL, grads ? db : NULL, lv);
    if (st != SN_OK) return st;
    if (sn_model_train_parts(m) > 1 || (j->sync && j->sync->global_positives >= 0)) {
        const double s = (double)(lv->num_positives + 1) / (double)(j->total_pos + 1);
        lv->total *= s;
        lv->cls *= s;
        lv->box *= s;
        if (grads)
            for (int l = 0; l < h->num_levels; l++) {
                const size_t px = (size_t)per * h->layout.level_h[l] * h->layout.level_w[l] *
                                  SN_ANCHORS_PER_LOCATION;
                const float fs = (float)s;
                for (size_t e = 0; e < px * (size_t)h->num_classes; e++) dc[l][e] *= fs;
                for (size_t e = 0; e < px * 4; e++) db[l][e] *= fs;
            }
    }
    if (j->sync && j->sync->before_backward &&
        (st = j->sync->before_backward(j->sync->ctx, isfinite(lv->total))) != SN_OK)
        return st;
    if (!grads || !isfinite(lv->total)) return SN_OK;
    int nodes[2 * SN_DET_MAX_LEVELS];
    const float *douts[2 * SN_DET_MAX_LEVELS];
    for (int l = 0; l < h->num_levels; l++) {
        nodes[2 * l] = cls[l];
        douts[2 * l] = dc[l];
        nodes[2 * l + 1] = box[l];
        douts[2 * l + 1] = db[l];
    }
    return sn_graph_backward_multi(g, &m->params, 2 * h->num_levels, nodes, douts, grads);
}

sn_status sn_det_loss_grad(sn_model *m, sn_det_head *h, const float *images, int n, uint64_t seed,
                           sn_retinanet_loss_value *loss, float *const *grads) {
    return sn_det_loss_grad_sync(m, h, images, n, seed, NULL, loss, grads);
}

sn_status sn_det_loss_grad_sync(sn_model *m, sn_det_head *h, const float *images, int n,
                                uint64_t seed, const sn_loss_sync *sync,
                                sn_retinanet_loss_value *loss, float *const *grads) {
    if (!m || !h || !images || !loss)
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_loss_grad: NULL argument");
    if (!m->planned || !m->graph.training || sn_model_train_batch(m) != n || n > h->max_batch)
        return sn_error(SN_ERR_STATE, "sn_det_loss_grad: plan the model for training with batch "
                        "%d at %dx%d first", n, h->canvas, h->canvas);
    det_job j;
    memset(&j, 0, sizeof j);
    j.h = h;
    j.images = images;
    j.seed = seed;
    j.sync = sync;
    const int parts = sn_model_train_parts(m);
    if (sync && parts > 1)
        return sn_error(SN_ERR_INVALID_ARG, "training over processes needs a model that is not "
                        "split into replicas");
    if (sync && sync->global_positives >= 0) {
        j.total_pos = sync->global_positives;
    } else if (parts > 1) {
        /* The whole batch's positives, for the common normaliser. */
        const size_t all = (size_t)n * (size_t)h->layout.count;
        for (size_t a = 0; a < all; a++) j.total_pos += h->cls_targets[a] > 0;
    }
    sn_status st = sn_model_run_parts(m, grads, det_part, &j);
    if (st != SN_OK) return st;
    *loss = j.lv[0];
    for (int r = 1; r < parts; r++) {
        loss->total += j.lv[r].total;
        loss->cls += j.lv[r].cls;
        loss->box += j.lv[r].box;
        loss->num_positives += j.lv[r].num_positives;
    }
    return SN_OK;
}

sn_status sn_det_detect(const sn_model *m, const sn_det_head *h, const sn_det_params *p,
                        int image, const sn_det_xform *xf, sn_detections *out) {
    if (!m || !h || !p || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_det_detect: NULL argument");
    const sn_config *c = sn_model_config(m);
    sn_det_level lv[SN_DET_MAX_LEVELS];
    for (int l = 0; l < h->num_levels; l++) {
        char cn[32], bn[32];
        snprintf(cn, sizeof cn, "class.%d", c->min_level + l);
        snprintf(bn, sizeof bn, "box.%d", c->min_level + l);
        sn_output oc, ob;
        sn_status st = sn_model_output(m, cn, &oc);
        if (st == SN_OK) st = sn_model_output(m, bn, &ob);
        if (st != SN_OK) return st;
        if (oc.h != h->layout.level_h[l] || oc.w != h->layout.level_w[l] || image >= oc.n)
            return sn_error(SN_ERR_SHAPE, "output %s is %dx%d (batch %d); the anchors expect "
                            "%dx%d: plan the model at %dx%d", cn, oc.h, oc.w, oc.n,
                            h->layout.level_h[l], h->layout.level_w[l], h->canvas, h->canvas);
        lv[l] = (sn_det_level){oc.data, ob.data, oc.h, oc.w};
    }
    const int ch = xf && xf->content_h > 0 ? xf->content_h : h->canvas;
    const int cw = xf && xf->content_w > 0 ? xf->content_w : h->canvas;
    sn_det_input in = {lv, h->num_levels, image, SN_ANCHORS_PER_LOCATION, h->num_classes,
                       h->anchors, h->layout.count, (float)ch, (float)cw};
    return sn_detect(p, &in, out);
}

sn_status sn_det_evaluate(sn_model *m, const sn_coco *gt, const char *image_dir, int size,
                          int batch, const sn_det_params *p, sn_coco_dets *dets,
                          sn_coco_eval_result *res, void (*progress)(void *, int, int),
                          void *user) {
    if (!m || !gt || !image_dir || !p || batch < 1)
        return sn_error(SN_ERR_INVALID_ARG, "sn_det_evaluate: bad arguments");
    if (gt->num_classes != sn_model_config(m)->num_classes)
        return sn_error(SN_ERR_INVALID_ARG, "the annotations have %d class columns (with the "
                        "background) but the model has %d: they must match", gt->num_classes,
                        sn_model_config(m)->num_classes);
    if (gt->num_images < 1) return sn_error(SN_ERR_INVALID_ARG, "no images to evaluate");
    const int canvas = sn_det_canvas_size(size);
    sn_det_source src;
    sn_det_head h;
    sn_status st = sn_det_source_init(&src, gt, image_dir, size, NULL);
    if (st != SN_OK) return st;
    if ((st = sn_det_head_init(&h, m, canvas, 0, 0)) != SN_OK) return st;
    sn_dataset *ds = NULL;
    sn_loader *l = NULL;
    sn_coco_dets local = {0};
    sn_coco_dets *out = dets ? dets : &local;
    sn_detections d = {0};
    d.capacity = p->max_detections;
    d.boxes = sn_alloc((size_t)d.capacity * 4 * sizeof(float));
    d.scores = sn_alloc((size_t)d.capacity * sizeof(float));
    d.classes = sn_alloc((size_t)d.capacity * sizeof(int32_t));
    if (!d.boxes || !d.scores || !d.classes) st = SN_ERR_OOM;
    if (st == SN_OK && (st = sn_dataset_new(0, NULL, &ds)) == SN_OK) {
        ds->count = gt->num_images;
        sn_loader_config lc;
        sn_loader_config_defaults(&lc);
        lc.batch_size = batch;
        lc.image_size = canvas;
        lc.train = 0;
        lc.prepare = sn_det_prepare;
        lc.prepare_user = &src;
        lc.extra_bytes = sn_det_sample_bytes(&src);
        st = sn_loader_create(ds, &lc, &l);
    }
    int planned = 0, done = 0;
    const int64_t nb = l ? sn_loader_batches_per_epoch(l) : 0;
    for (int64_t bi = 0; st == SN_OK && bi < nb; bi++) {
        sn_batch b;
        if ((st = sn_loader_next(l, &b)) != SN_OK) break;
        if (b.n != planned) {
            if ((st = sn_model_plan(m, b.n, canvas, canvas)) != SN_OK) break;
            planned = b.n;
        }
        if ((st = sn_model_run(m, b.images)) != SN_OK) break;
        for (int i = 0; i < b.n && st == SN_OK; i++) {
            const sn_det_sample *s = sn_det_batch_sample(&src, b.extra, i);
            if ((st = sn_det_detect(m, &h, p, i, &s->xf, &d)) != SN_OK) break;
            const sn_coco_image *ci = &gt->images[s->image];
            for (int k = 0; k < d.count && st == SN_OK; k++) {
                float ob[4];
                sn_det_unmap_box(&s->xf, d.boxes + 4 * k, ob);
                sn_coco_det e;
                e.image_id = ci->id;
                e.category_id = sn_coco_column_category(gt, d.classes[k]);
                e.bbox[0] = ob[1];
                e.bbox[1] = ob[0];
                e.bbox[2] = ob[3] - ob[1];
                e.bbox[3] = ob[2] - ob[0];
                e.score = d.scores[k];
                /* A column without a category (COCO's unused ids) is never a prediction. */
                if (e.category_id > 0) st = sn_coco_dets_append(out, &e);
            }
        }
        done += b.n;
        if (progress && st == SN_OK) progress(user, done, gt->num_images);
    }
    sn_loader_free(l);
    sn_dataset_free(ds);
    sn_free(d.boxes);
    sn_free(d.scores);
    sn_free(d.classes);
    sn_det_head_free(&h);
    if (st == SN_OK && res) st = sn_coco_evaluate(gt, out->items, out->count, res);
    sn_coco_dets_free(&local);
    return st;
}
