/* detect.c: detection in the public API (sn_model_detect): the pieces `spinenet detect` composes
 * (the eval pre-processing of src/data, the model run, the detection generator of src/post over
 * the anchors of src/train's detection head, the mapping back to the image) in one call. */
#include <string.h>

#include "core.h"
#include "data.h"
#include "det_train.h"
#include "model.h"
#include "spinenet.h"

void sn_detect_params_init(sn_detect_params *p) {
    if (!p) return;
    sn_det_params d;
    sn_det_params_init(&d);
    memset(p, 0, sizeof *p);
    p->score_threshold = d.score_threshold;
    p->nms_iou = d.iou_threshold;
    p->max_detections = d.max_detections;
}

void sn_detection_list_free(sn_detection_list *list) { sn_free(list); }

/* Whether the model's current plan is an inference plan for one P x P image, so that a run of
 * detections over many images plans once. */
static int planned_for(const sn_model *m, int canvas) {
    if (!m->planned || m->graph.training) return 0;
    for (int i = 0; i < m->graph.n; i++) {
        const sn_node *nd = &m->graph.nodes[i];
        if (nd->op == SN_OP_INPUT) return nd->n == 1 && nd->h == canvas && nd->w == canvas;
    }
    return 0;
}

/* The list in one allocation: the items, then the class names they point at. */
static sn_status make_list(const sn_model *m, const sn_det_xform *xf, const sn_detections *d,
                           sn_detection_list **out) {
    size_t names = 0;
    for (int k = 0; k < d->count; k++) {
        const char *nm = sn_model_class_name(m, d->classes[k]);
        if (nm) names += strlen(nm) + 1;
    }
    const size_t head = sizeof(sn_detection_list) + (size_t)d->count * sizeof(sn_detection);
    sn_detection_list *l = sn_alloc(head + names);
    if (!l) return SN_ERR_OOM;
    l->count = d->count;
    l->items = (sn_detection *)(void *)(l + 1);
    char *pool = (char *)l + head;
    for (int k = 0; k < d->count; k++) {
        float ob[4]; /* (ymin, xmin, ymax, xmax) in the image's pixels */
        sn_det_unmap_box(xf, d->boxes + 4 * k, ob);
        sn_detection *it = &l->items[k];
        *it = (sn_detection){ob[1], ob[0], ob[3], ob[2], d->scores[k], d->classes[k], NULL};
        const char *nm = sn_model_class_name(m, d->classes[k]);
        if (nm) {
            const size_t len = strlen(nm) + 1;
            memcpy(pool, nm, len);
            it->class_name = pool;
            pool += len;
        }
    }
    *out = l;
    return SN_OK;
}

sn_status sn_model_detect(sn_model *m, const sn_image *img, const sn_detect_params *p,
                          sn_detection_list **out) {
    if (out) *out = NULL;
    if (!m || !img || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_model_detect: NULL argument");
    if (!img->pixels || img->width < 1 || img->height < 1 ||
        (img->channels != 1 && img->channels != 3))
        return sn_error(SN_ERR_INVALID_ARG, "sn_model_detect: the image must have pixels, a "
                        "positive size and 1 or 3 channels (it has %dx%d, %d channels)",
                        img->width, img->height, img->channels);
    const sn_config *c = sn_model_config(m);
    if (c->head != SN_HEAD_RETINANET)
        return sn_error(SN_ERR_INVALID_ARG, "sn_model_detect: the model has the %s head; "
                        "detection needs the RetinaNet head", sn_head_name(c->head));
    sn_detect_params defaults;
    sn_detect_params_init(&defaults);
    if (!p) p = &defaults;
    /* Written so that NaNs fail too. */
    if (p->size < 0 || p->max_detections < 1 ||
        !(p->score_threshold >= 0 && p->score_threshold < 1) ||
        !(p->nms_iou >= 0 && p->nms_iou <= 1) ||
        !(p->agnostic_nms_iou >= 0 && p->agnostic_nms_iou <= 1))
        return sn_error(SN_ERR_INVALID_ARG, "sn_detect_params: size %d (>= 0; 0: the model's), "
                        "score_threshold %g (0 <= t < 1), nms_iou %g (0..1), max_detections %d "
                        "(>= 1), agnostic_nms_iou %g (0..1; 0: off)", p->size,
                        (double)p->score_threshold, (double)p->nms_iou, p->max_detections,
                        (double)p->agnostic_nms_iou);
    sn_det_params dp;
    sn_det_params_init(&dp);
    dp.score_threshold = p->score_threshold;
    dp.iou_threshold = p->nms_iou;
    dp.max_detections = p->max_detections;

    const int size = p->size ? p->size : c->input_size, canvas = sn_det_canvas_size(size);
    sn_det_xform xf;
    sn_status st = sn_det_plan(img->height, img->width, size, 0, NULL, NULL, &xf);
    if (st != SN_OK) return st;
    if (!planned_for(m, canvas) && (st = sn_model_plan(m, 1, canvas, canvas)) != SN_OK) return st;

    sn_det_head h;
    sn_detections d = {0};
    d.capacity = dp.max_detections;
    float *input = sn_alloc(sizeof(float) * (size_t)canvas * canvas * 3);
    d.boxes = sn_alloc(sizeof(float) * 4 * (size_t)d.capacity);
    d.scores = sn_alloc(sizeof(float) * (size_t)d.capacity);
    d.classes = sn_alloc(sizeof(int32_t) * (size_t)d.capacity);
    if (!input || !d.boxes || !d.scores || !d.classes) {
        st = SN_ERR_OOM;
    } else if ((st = sn_det_head_init(&h, m, canvas, 0, 0)) == SN_OK) {
        if ((st = sn_det_render(img, &xf, canvas, input)) == SN_OK &&
            (st = sn_model_run(m, input)) == SN_OK &&
            (st = sn_det_detect(m, &h, &dp, 0, &xf, &d)) == SN_OK &&
            (p->agnostic_nms_iou <= 0 ||
             (st = sn_detections_suppress_overlaps(&d, p->agnostic_nms_iou)) == SN_OK))
            st = make_list(m, &xf, &d, out);
        sn_det_head_free(&h);
    }
    sn_free(input);
    sn_free(d.boxes);
    sn_free(d.scores);
    sn_free(d.classes);
    return st;
}
