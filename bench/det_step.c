/* bench/det_step.c: time one RetinaNet training step of a SpineNet detector exactly as the
 * trainer runs it (src/train/trainer.c: zero the gradients; sn_det_loss_grad = forward with
 * batch-statistics BN, focal + Huber loss over the targets of sn_det_head_targets, backward
 * through every class and box output; one SGD-momentum update), on seeded images and a seeded
 * synthetic set of ground-truth boxes per image, labelled by the project's own anchor matcher.
 * bench/det_step_torch.py times the same step in PyTorch from the weights (--save-weights) and
 * the batch with its labelled targets (--dump) this program writes; bench/train_step.sh --case
 * c|d runs both. --profile tells where the step's time goes, per kind of op, forward and
 * backward apart. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core.h"
#include "det_train.h"
#include "graph.h"
#include "model_train.h"
#include "optim.h"
#include "safetensors.h"

#define MAX_BOXES 12 /* per image: 1 .. MAX_BOXES */
#define BOX_MIN 12.0 /* box sides in pixels: BOX_MIN .. BOX_MAX */
#define BOX_MAX 200.0

typedef struct {
    const char *model, *act, *flavour, *save, *dump;
    int size, batch, threads, steps, warmup, classes, json, profile;
    double lr, wd;
    uint64_t seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_det_step [--model NAME (spinenet-mobile-49xs)] [--act ACT (variant's)]\n"
            "       [--flavour garden|tpu (garden)] [--size PX (256, a multiple of 128)]\n"
            "       [--batch N (16)] [--threads T (1)] [--steps N (10, timed)] [--warmup N (2)]\n"
            "       [--classes N (11: fashion-det's 10 and the background column)] [--lr LR (0.01)]\n"
            "       [--weight-decay WD (4e-5)] [--seed N (1)] [--profile] [--save-weights FILE]\n"
            "       [--dump FILE] [--json]\n"
            "One step = zero grads + sn_det_loss_grad (forward with batch-stat BN, focal + Huber\n"
            "loss, backward) + SGD momentum update, as in src/train/trainer.c. Images: the hash\n"
            "fill 'bench.input' (uniform, unit variance); per image 1..%d boxes of %g..%g px, class\n"
            "columns 1..classes-1, from the hash fill 'bench.boxes', labelled by sn_anchor_label.\n"
            "--save-weights: the initial weights; --dump: the images and the labelled targets\n"
            "(safetensors: images [n,P,P,3], cls_targets [n,anchors] (class columns as floats,\n"
            "0 = negative), box_targets [n,anchors,4]; the metadata has the loss parameters and\n"
            "the positives) for det_step_torch.py. --profile: after the timed steps, as many\n"
            "profiled steps, and a table of where the time goes per kind of op.\n",
            MAX_BOXES, BOX_MIN, BOX_MAX);
}

static int parse_args(int argc, char **argv, options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--profile")) { o->profile = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_det_step: %s needs a value (or is unknown)\n", a);
            return 0;
        }
        const char *v = argv[++i];
        int ok = 1, seed = 0;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--act")) o->act = v;
        else if (!strcmp(a, "--flavour")) o->flavour = v;
        else if (!strcmp(a, "--save-weights")) o->save = v;
        else if (!strcmp(a, "--dump")) o->dump = v;
        else if (!strcmp(a, "--size")) ok = parse_int(v, 128, 4096, &o->size) && o->size % 128 == 0;
        else if (!strcmp(a, "--batch")) ok = parse_int(v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--threads")) ok = parse_int(v, 0, 1024, &o->threads);
        else if (!strcmp(a, "--steps")) ok = parse_int(v, 1, 1 << 20, &o->steps);
        else if (!strcmp(a, "--warmup")) ok = parse_int(v, 0, 1 << 20, &o->warmup);
        else if (!strcmp(a, "--classes")) ok = parse_int(v, 2, 1 << 20, &o->classes);
        else if (!strcmp(a, "--lr")) ok = parse_dbl(v, 0.0, 100.0, &o->lr);
        else if (!strcmp(a, "--weight-decay")) ok = parse_dbl(v, 0.0, 1.0, &o->wd);
        else if (!strcmp(a, "--seed")) {
            ok = parse_int(v, 0, 1 << 30, &seed);
            o->seed = (uint64_t)seed;
        } else {
            fprintf(stderr, "bench_det_step: unknown option %s (see --help)\n", a);
            return 0;
        }
        if (!ok) {
            fprintf(stderr, "bench_det_step: bad value '%s' for %s%s\n", v, a,
                    !strcmp(a, "--size") ? " (a multiple of 128: the head's level 7 must tile "
                                           "the input)" : "");
            return 0;
        }
    }
    return 1;
}

static int fail(const char *what, sn_status st) {
    fprintf(stderr, "bench_det_step: %s failed (%s): %s\n", what, sn_status_name(st),
            sn_last_error());
    return 1;
}

/* The synthetic ground truth of image i into sample s (hash fill 'bench.boxes', per image
 * 1 + 5 * MAX_BOXES uniforms): the count, then per box its height, width, top, left and class,
 * inside the size x size canvas. */
static void synth_boxes(const float *u, int size, int classes, sn_det_sample *s) {
    s->n_boxes = 1 + (int)(u[0] * MAX_BOXES);
    if (s->n_boxes > MAX_BOXES) s->n_boxes = MAX_BOXES;
    for (int k = 0; k < s->n_boxes; k++) {
        const float *v = u + 1 + 5 * k;
        const float h = (float)(BOX_MIN + (BOX_MAX - BOX_MIN) * v[0]);
        const float w = (float)(BOX_MIN + (BOX_MAX - BOX_MIN) * v[1]);
        const float y0 = (float)((size - h) * v[2]), x0 = (float)((size - w) * v[3]);
        int cls = 1 + (int)(v[4] * (float)(classes - 1));
        if (cls > classes - 1) cls = classes - 1;
        s->boxes[k] = (sn_det_box){y0, x0, y0 + h, x0 + w, cls, 0};
    }
}

/* ---------------------------------------------------------------------------------------- */
/* The profile table: nodes' times grouped by kind ("conv 3x3", "batch-norm+act", "add", ...;
 * "head: " before the RetinaNet head's), forward and backward apart. */

#define MAX_KINDS 64

typedef struct {
    char name[48];
    double fwd, bwd; /* seconds summed over the profiled passes */
} prof_kind;

static prof_kind *kind_at(prof_kind *k, int *n, const char *name) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(k[i].name, name)) return &k[i];
    if (*n == MAX_KINDS) return &k[MAX_KINDS - 1]; /* cannot happen with the names below */
    prof_kind *p = &k[(*n)++];
    memset(p, 0, sizeof *p);
    snprintf(p->name, sizeof p->name, "%s", name);
    return p;
}

/* The kinds of node nd's two parts: its op (op) and its batch-norm / activation (norm). */
static void node_kinds(const sn_graph *g, const sn_node *nd, char *op, char *norm, size_t cap) {
    const char *where = nd->block == SN_BLOCK_HEAD ? "head: " : "";
    snprintf(norm, cap, "%s%s", where, nd->op == SN_OP_CONV && nd->p_gamma >= 0 ? "batch-norm+act"
                                                                              : "activation");
    switch (nd->op) {
    case SN_OP_CONV: {
        const sn_node *x = &g->nodes[nd->in[0]];
        const int dw = nd->conv.groups > 1 && nd->conv.groups == x->c;
        snprintf(op, cap, "%s%s %dx%d%s", where, dw ? "depthwise" : "conv", nd->conv.kh,
                 nd->conv.kw, nd->conv.stride_h > 1 ? "/2" : "");
        if (nd->p_gamma < 0 && nd->act == SN_ACT_NONE) snprintf(norm, cap, "%s", op);
        break;
    }
    case SN_OP_MAXPOOL:
    case SN_OP_UPSAMPLE:
    case SN_OP_RESIZE: snprintf(op, cap, "%sresample (%s)", where, sn_op_name(nd->op)); break;
    case SN_OP_GAP:
    case SN_OP_MUL_CHANNEL: snprintf(op, cap, "%ssqueeze-excite (gap, gate)", where); break;
    default: snprintf(op, cap, "%s%s", where, sn_op_name(nd->op)); break;
    }
}

static int cmp_kind(const void *a, const void *b) {
    const prof_kind *x = a, *y = b;
    const double tx = x->fwd + x->bwd, ty = y->fwd + y->bwd;
    return (tx < ty) - (tx > ty);
}

/* Prints (or, json, appends as "profile": {...}) the profile of `runs` profiled steps whose
 * median step was step_ms, with the parts measured outside the graph (per step, ms). */
static void print_profile(const sn_graph *g, double step_ms, double zero_ms, double fb_ms,
                          double sgd_ms, int json) {
    prof_kind k[MAX_KINDS];
    int nk = 0;
    const long runs = g->prof_train_runs > 0 ? g->prof_train_runs : 1;
    double fwd = 0.0, bwd = 0.0;
    for (int i = 0; i < g->n; i++) {
        const sn_node *nd = &g->nodes[i];
        if (nd->op == SN_OP_INPUT) continue;
        char op[48], norm[48];
        node_kinds(g, nd, op, norm, sizeof op);
        const double *t = g->prof_train + (size_t)i * SN_PROF_SLOTS;
        prof_kind *ko = kind_at(k, &nk, op);
        ko->fwd += t[SN_PROF_FWD_OP];
        ko->bwd += t[SN_PROF_BWD_OP];
        prof_kind *kn = kind_at(k, &nk, norm);
        kn->fwd += t[SN_PROF_FWD_NORM];
        kn->bwd += t[SN_PROF_BWD_NORM];
        fwd += t[SN_PROF_FWD_OP] + t[SN_PROF_FWD_NORM];
        bwd += t[SN_PROF_BWD_OP] + t[SN_PROF_BWD_NORM];
    }
    prof_kind *setup = kind_at(k, &nk, "backward setup (zero dL/dx, seed outputs)");
    setup->bwd += g->prof_bwd_setup_sec;
    bwd += g->prof_bwd_setup_sec;
    fwd = 1e3 * fwd / (double)runs;
    bwd = 1e3 * bwd / (double)runs;
    for (int i = 0; i < nk; i++) {
        k[i].fwd *= 1e3 / (double)runs;
        k[i].bwd *= 1e3 / (double)runs;
    }
    /* What sn_det_loss_grad spends outside the graph's passes: the loss and its gradients over
     * the head's outputs (and the lookup of those outputs). */
    const double loss = fb_ms - fwd - bwd;
    qsort(k, (size_t)nk, sizeof *k, cmp_kind);
    const double pct = 100.0 / step_ms;
    if (json) {
        printf(", \"profile_runs\": %ld, \"profile_step_ms\": %.4f, \"profile_forward_ms\": %.4f, "
               "\"profile_backward_ms\": %.4f, \"profile_loss_ms\": %.4f, \"profile_sgd_ms\": %.4f, "
               "\"profile_zero_ms\": %.4f, \"profile\": [",
               runs, step_ms, fwd, bwd, loss, sgd_ms, zero_ms);
        for (int i = 0; i < nk; i++)
            printf("%s{\"kind\": \"%s\", \"fwd_ms\": %.4f, \"bwd_ms\": %.4f}", i ? ", " : "",
                   k[i].name, k[i].fwd, k[i].bwd);
        printf("]");
        return;
    }
    printf("\nprofile: %ld profiled steps, mean step %.1f ms (ms per step; %% of the step)\n",
           runs, step_ms);
    printf("  %-44s %9s %6s %9s %6s %9s %6s\n", "kind", "forward", "%", "backward", "%", "total",
           "%");
    for (int i = 0; i < nk; i++) {
        if (k[i].fwd + k[i].bwd < 0.0005 * step_ms) continue; /* under 0.05 %: noise */
        printf("  %-44s %9.2f %6.1f %9.2f %6.1f %9.2f %6.1f\n", k[i].name, k[i].fwd,
               k[i].fwd * pct, k[i].bwd, k[i].bwd * pct, k[i].fwd + k[i].bwd,
               (k[i].fwd + k[i].bwd) * pct);
    }
    printf("  %-44s %9.2f %6.1f %9.2f %6.1f %9.2f %6.1f\n", "= graph passes", fwd, fwd * pct, bwd,
           bwd * pct, fwd + bwd, (fwd + bwd) * pct);
    printf("  %-44s %9s %6s %9s %6s %9.2f %6.1f\n", "loss: focal + Huber and their gradients", "",
           "", "", "", loss, loss * pct);
    printf("  %-44s %9s %6s %9s %6s %9.2f %6.1f\n", "SGD momentum update", "", "", "", "", sgd_ms,
           sgd_ms * pct);
    printf("  %-44s %9s %6s %9s %6s %9.2f %6.1f\n", "zero the parameter gradients", "", "", "", "",
           zero_ms, zero_ms * pct);
    const double rest = step_ms - (fwd + bwd + loss + sgd_ms + zero_ms);
    printf("  %-44s %9s %6s %9s %6s %9.2f %6.1f\n", "rest (between the parts)", "",
           "", "", "", rest, rest * pct);
}

/* ---------------------------------------------------------------------------------------- */

/* The images and the targets as labelled, for det_step_torch.py (F32 only: the class columns are
 * small integers, exact in float). */
static sn_status dump_batch(const char *path, const options *o, const sn_det_head *h,
                            const float *images) {
    const int64_t count = h->layout.count;
    const size_t nt = (size_t)o->batch * (size_t)count;
    float *cls = malloc(nt * sizeof *cls);
    if (!cls) return sn_error(SN_ERR_OOM, "out of memory for the dump");
    for (size_t a = 0; a < nt; a++) cls[a] = (float)h->cls_targets[a];
    sn_retinanet_loss_params lp;
    sn_retinanet_loss_defaults(&lp);
    char v[8][32];
    snprintf(v[0], sizeof v[0], "%" PRId64, h->positives);
    snprintf(v[1], sizeof v[1], "%.17g", (double)h->positives + 1.0);
    snprintf(v[2], sizeof v[2], "%.17g", lp.alpha);
    snprintf(v[3], sizeof v[3], "%.17g", lp.gamma);
    snprintf(v[4], sizeof v[4], "%.17g", lp.huber_delta);
    snprintf(v[5], sizeof v[5], "%.17g", lp.box_weight);
    snprintf(v[6], sizeof v[6], "%d", h->layout.min_level);
    snprintf(v[7], sizeof v[7], "%d", h->layout.max_level);
    char *keys[] = {"num_positives", "normaliser", "alpha", "gamma", "huber_delta", "box_weight",
                    "min_level", "max_level"};
    char *vals[] = {v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]};
    sn_st_tensor t[3] = {
        {"images", 4, {o->batch, o->size, o->size, 3}, (size_t)o->batch * o->size * o->size * 3,
         (float *)images},
        {"cls_targets", 2, {o->batch, count}, nt, cls},
        {"box_targets", 3, {o->batch, count, 4}, nt * 4, h->box_targets},
    };
    sn_st_file f = {t, 3, keys, vals, 8, NULL};
    sn_status st = sn_st_write(path, &f);
    free(cls);
    return st;
}

/* A few head outputs of the last training forward, for the check: image 0's first `per` values
 * of class.L and box.L at each level, in that order. */
static int head_sample(const sn_model *m, float *out, int cap, int per) {
    const sn_config *c = sn_model_config(m);
    int k = 0;
    for (int l = c->min_level; l <= c->max_level; l++)
        for (int t = 0; t < 2; t++) {
            char name[16];
            snprintf(name, sizeof name, "%s.%d", t ? "box" : "class", l);
            sn_output o;
            if (sn_model_output(m, name, &o) != SN_OK) return -1;
            const size_t have = (size_t)o.h * o.w * o.c;
            for (int i = 0; i < per && (size_t)i < have && k < cap; i++) out[k++] = o.data[i];
        }
    return k;
}

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    options o = {.model = "spinenet-mobile-49xs", .flavour = "garden", .size = 256, .batch = 16,
                 .threads = 1, .steps = 10, .warmup = 2, .classes = 11, .lr = 0.01, .wd = 4e-5,
                 .seed = 1};
    if (!parse_args(argc, argv, &o)) return 2;

    sn_config cfg;
    sn_status st = sn_config_init(&cfg, o.model);
    if (st != SN_OK) return fail("sn_config_init", st);
    cfg.head = SN_HEAD_RETINANET;
    cfg.num_classes = o.classes;
    cfg.input_size = o.size;
    if ((st = sn_parse_flavour(o.flavour, &cfg.flavour)) != SN_OK) return fail("--flavour", st);
    if (o.act && (st = sn_parse_act(o.act, &cfg.activation)) != SN_OK) return fail("--act", st);

    sn_model *m = NULL;
    sn_optim *opt = NULL;
    float **grads = NULL;
    sn_opt_param *op = NULL;
    float *images = NULL, *u = NULL;
    unsigned char *extra = NULL;
    sn_coco_image *cimg = NULL;
    double *t_step = NULL, *t_zero = NULL, *t_fb = NULL, *t_sgd = NULL;
    sn_det_head head;
    memset(&head, 0, sizeof head);
    int rc = 1, np = 0;
    const size_t n_in = (size_t)o.batch * (size_t)o.size * (size_t)o.size * 3;
    const int total = o.warmup + o.steps;

    if ((st = sn_model_create(&cfg, o.seed, &m)) != SN_OK) { rc = fail("sn_model_create", st); goto done; }
    if (o.save && (st = sn_model_save(m, o.save)) != SN_OK) { rc = fail("sn_model_save", st); goto done; }
    if ((st = sn_model_set_threads(m, o.threads)) != SN_OK) { rc = fail("sn_model_set_threads", st); goto done; }

    /* The parameter list and gradient buffers, built as sn_trainer_create builds them: one
     * buffer per trainable tensor, none for the BN moving statistics. */
    np = sn_model_num_params(m);
    grads = calloc((size_t)np, sizeof *grads);
    op = calloc((size_t)np, sizeof *op);
    images = malloc(n_in * sizeof *images);
    t_step = calloc((size_t)total, sizeof(double));
    t_zero = calloc((size_t)total, sizeof(double));
    t_fb = calloc((size_t)total, sizeof(double));
    t_sgd = calloc((size_t)total, sizeof(double));
    if (!grads || !op || !images || !t_step || !t_zero || !t_fb || !t_sgd) {
        fprintf(stderr, "bench_det_step: out of memory\n");
        goto done;
    }
    int64_t trainable = 0;
    for (int i = 0; i < np; i++) {
        sn_param p;
        if ((st = sn_model_param_at(m, i, &p)) != SN_OK) { rc = fail("sn_model_param_at", st); goto done; }
        op[i].name = p.name;
        op[i].w = p.data;
        op[i].count = p.count;
        if (!sn_optim_is_trainable(p.name)) continue;
        if (!(grads[i] = calloc(p.count, sizeof(float)))) {
            fprintf(stderr, "bench_det_step: out of memory\n");
            goto done;
        }
        op[i].g = grads[i];
        trainable += (int64_t)p.count;
    }
    sn_sgd_config sgd;
    sn_sgd_config_default(&sgd);
    sgd.weight_decay = o.wd;
    if ((st = sn_optim_create(&sgd, op, np, &opt)) != SN_OK) { rc = fail("sn_optim_create", st); goto done; }
    if ((st = sn_model_plan_train(m, o.batch, o.size, o.size)) != SN_OK) { rc = fail("sn_model_plan_train", st); goto done; }

    /* Images uniform with unit variance (like normalised pixels), from the hash fill of core.h;
     * the boxes are the loader's samples (sn_det_sample) of a source whose only use here is
     * sn_det_head_targets' error message (an image name), so it gets placeholder images. */
    sn_hash_fill(images, n_in, "bench.input", o.seed, -sqrt(3.0), sqrt(3.0));
    sn_coco coco;
    memset(&coco, 0, sizeof coco);
    sn_det_source src;
    memset(&src, 0, sizeof src);
    cimg = calloc((size_t)o.batch, sizeof *cimg);
    if (!cimg) { fprintf(stderr, "bench_det_step: out of memory\n"); goto done; }
    for (int i = 0; i < o.batch; i++) cimg[i].file_name = "(synthetic bench image)";
    coco.num_images = o.batch;
    coco.images = cimg;
    coco.num_classes = o.classes;
    src.coco = &coco;
    src.size = o.size;
    src.max_boxes = MAX_BOXES;
    const size_t sample_bytes = sn_det_sample_bytes(&src);
    const size_t per_image = 1 + 5 * MAX_BOXES;
    extra = calloc((size_t)o.batch, sample_bytes);
    u = malloc((size_t)o.batch * per_image * sizeof *u);
    if (!extra || !u) { fprintf(stderr, "bench_det_step: out of memory\n"); goto done; }
    sn_hash_fill(u, (size_t)o.batch * per_image, "bench.boxes", o.seed, 0.0, 1.0);
    int n_boxes = 0;
    for (int i = 0; i < o.batch; i++) {
        sn_det_sample *s = (sn_det_sample *)(void *)(extra + sample_bytes * (size_t)i);
        s->image = i;
        synth_boxes(u + per_image * (size_t)i, o.size, o.classes, s);
        n_boxes += s->n_boxes;
    }
    if ((st = sn_det_head_init(&head, m, o.size, o.batch, MAX_BOXES)) != SN_OK) { rc = fail("sn_det_head_init", st); goto done; }
    /* Labelling is the loader side of the trainer's step (it runs while the data is prepared,
     * and PyTorch gets the labelled targets): timed apart, not in the step. */
    double t_lab0 = now_ms();
    if ((st = sn_det_head_targets(&head, &src, extra, o.batch)) != SN_OK) { rc = fail("sn_det_head_targets", st); goto done; }
    const double label_ms = now_ms() - t_lab0;
    if (o.dump && (st = dump_batch(o.dump, &o, &head, images)) != SN_OK) { rc = fail("writing --dump", st); goto done; }

    sn_retinanet_loss_value lv0 = {NAN, NAN, NAN, 0}, lv_last = lv0;
    double norm0 = NAN;
    float head0[2 * 5 * 16];
    int n_head0 = 0;
    for (int s = 0; s < total; s++) {
        double t0 = now_ms();
        for (int i = 0; i < np; i++)
            if (grads[i]) memset(grads[i], 0, op[i].count * sizeof(float));
        double t1 = now_ms(), norm = NAN;
        sn_retinanet_loss_value lv;
        st = sn_det_loss_grad(m, &head, images, o.batch, (uint64_t)s, &lv, grads);
        if (st != SN_OK) { rc = fail("sn_det_loss_grad", st); goto done; }
        double t2 = now_ms();
        if ((st = sn_optim_step(opt, op, np, o.lr, &norm)) != SN_OK) { rc = fail("sn_optim_step", st); goto done; }
        double t3 = now_ms();
        if (s == 0) {
            /* The first step's loss parts, gradient norm and a few head outputs (before any
             * update) let det_step_torch.py check that it runs the same function. */
            lv0 = lv;
            norm0 = norm;
            n_head0 = head_sample(m, head0, (int)(sizeof head0 / sizeof *head0), 16);
            if (n_head0 < 0) { rc = fail("sn_model_output", SN_ERR_NOT_FOUND); goto done; }
        }
        lv_last = lv;
        t_step[s] = t3 - t0;
        t_zero[s] = t1 - t0;
        t_fb[s] = t2 - t1;
        t_sgd[s] = t3 - t2;
    }
    double min_ms = t_step[o.warmup];
    for (int s = o.warmup; s < total; s++)
        if (t_step[s] < min_ms) min_ms = t_step[s];
    const double med = median(t_step + o.warmup, o.steps);
    const double med_zero = median(t_zero + o.warmup, o.steps);
    const double med_fb = median(t_fb + o.warmup, o.steps);
    const double med_sgd = median(t_sgd + o.warmup, o.steps);
    const double ips = (double)o.batch * 1000.0 / med;

    /* --profile: the same number of steps again with the graph's training profile on (a clock
     * read per node part; nothing else changes), kept out of the timed steps above. */
    double p_step = 0, p_zero = 0, p_fb = 0, p_sgd = 0;
    sn_graph *g = sn_model_part_graph(m, 0);
    if (o.profile) {
        if (sn_model_train_parts(m) != 1) {
            fprintf(stderr, "bench_det_step: --profile needs an unsplit model\n");
            goto done;
        }
        if ((st = sn_graph_set_train_profile(g, 1)) != SN_OK) { rc = fail("sn_graph_set_train_profile", st); goto done; }
        for (int s = 0; s < o.steps; s++) {
            double t0 = now_ms();
            for (int i = 0; i < np; i++)
                if (grads[i]) memset(grads[i], 0, op[i].count * sizeof(float));
            double t1 = now_ms(), norm;
            sn_retinanet_loss_value lv;
            st = sn_det_loss_grad(m, &head, images, o.batch, (uint64_t)(total + s), &lv, grads);
            if (st != SN_OK) { rc = fail("sn_det_loss_grad", st); goto done; }
            double t2 = now_ms();
            if ((st = sn_optim_step(opt, op, np, o.lr, &norm)) != SN_OK) { rc = fail("sn_optim_step", st); goto done; }
            double t3 = now_ms();
            t_step[s] = t3 - t0;
            t_zero[s] = t1 - t0;
            t_fb[s] = t2 - t1;
            t_sgd[s] = t3 - t2;
        }
        /* Means, not medians, for the parts: the node times are sums over every profiled
         * step, so the parts beside them must be too. */
        for (int s = 0; s < o.steps; s++) {
            p_step += t_step[s] / o.steps;
            p_zero += t_zero[s] / o.steps;
            p_fb += t_fb[s] / o.steps;
            p_sgd += t_sgd[s] / o.steps;
        }
    }

    const sn_config *mc = sn_model_config(m);
    if (o.json) {
        printf("{\"impl\": \"c\", \"task\": \"detect\", \"model\": \"%s\", \"flavour\": \"%s\", "
               "\"activation\": \"%s\", \"size\": %d, \"batch\": %d, \"threads\": %d, "
               "\"classes\": %d, \"steps\": %d, \"warmup\": %d, \"params\": %" PRId64 ", "
               "\"bn_eps\": %.9g, \"bn_momentum\": %.9g, \"lr\": %.9g, \"weight_decay\": %.9g, "
               "\"seed\": %" PRIu64 ", \"anchors\": %" PRId64 ", \"boxes\": %d, "
               "\"positives\": %" PRId64 ", \"label_ms\": %.4f, "
               "\"loss0\": %.12g, \"cls_loss0\": %.12g, \"box_loss0\": %.12g, "
               "\"grad_norm0\": %.12g, \"loss_last\": %.9g, \"median_ms\": %.4f, "
               "\"min_ms\": %.4f, \"images_per_s\": %.4f, \"zero_ms\": %.4f, "
               "\"fwd_bwd_ms\": %.4f, \"sgd_ms\": %.4f",
               mc->model, sn_flavour_name(mc->flavour), sn_act_name(mc->activation), o.size,
               o.batch, o.threads, o.classes, o.steps, o.warmup, trainable, (double)mc->bn_eps,
               (double)mc->bn_momentum, o.lr, o.wd, o.seed, head.layout.count, n_boxes,
               head.positives, label_ms, lv0.total, lv0.cls, lv0.box, norm0, lv_last.total, med,
               min_ms, ips, med_zero, med_fb, med_sgd);
        printf(", \"head0_per\": 16, \"head0\": [");
        for (int i = 0; i < n_head0; i++) printf("%s%.9g", i ? ", " : "", (double)head0[i]);
        printf("]");
        if (o.profile) print_profile(g, p_step, p_zero, p_fb, p_sgd, 1);
        printf("}\n");
    } else {
        printf("C detection training step: %s (%s, %s), RetinaNet %d classes, %" PRId64
               " params\n", mc->model, sn_flavour_name(mc->flavour), sn_act_name(mc->activation),
               o.classes, trainable);
        printf("  input %dx%d, batch %d, %d threads; %d warmup + %d timed steps\n", o.size, o.size,
               o.batch, o.threads, o.warmup, o.steps);
        printf("  targets: %d boxes, %" PRId64 " anchors per image, %" PRId64
               " positive in the batch; labelling %.2f ms (not in the step)\n",
               n_boxes, head.layout.count, head.positives, label_ms);
        printf("  step: median %.2f ms, min %.2f ms -> %.2f images/s\n", med, min_ms, ips);
        printf("  median parts: zero grads %.2f ms, forward+loss+backward %.2f ms, SGD %.2f ms\n",
               med_zero, med_fb, med_sgd);
        printf("  loss: first step %.5f (focal %.5f + 50 x Huber %.6f), last step %.5f; first "
               "gradient norm %.5f\n", lv0.total, lv0.cls, lv0.box, lv_last.total, norm0);
        if (o.profile) print_profile(g, p_step, p_zero, p_fb, p_sgd, 0);
    }
    rc = 0;
done:
    if (grads)
        for (int i = 0; i < np; i++) free(grads[i]);
    free(grads);
    free(op);
    free(images);
    free(u);
    free(extra);
    free(cimg);
    free(t_step);
    free(t_zero);
    free(t_fb);
    free(t_sgd);
    sn_det_head_free(&head);
    sn_optim_free(opt);
    sn_model_free(m);
    return rc;
}
