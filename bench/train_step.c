/* bench/train_step.c: time one training step of a SpineNet classifier exactly as the trainer runs
 * it (zero the gradients; forward with batch-statistics BN, softmax cross-entropy with label
 * smoothing and backward in sn_model_loss_grad; one SGD-momentum update), on seeded inputs.
 * bench/train_step_torch.py times the same step in PyTorch; bench/train_step.sh runs both. */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench_util.h"
#include "core.h"
#include "model_train.h"
#include "optim.h"

typedef struct {
    const char *model, *act, *flavour, *save;
    int size, batch, threads, steps, warmup, classes, json, breakdown;
    double lr, wd, smoothing;
    uint64_t seed;
} options;

static void usage(FILE *f) {
    fprintf(f,
            "usage: bench_train_step [--model NAME (spinenet-mobile-49xs)] [--act ACT (variant's)]\n"
            "       [--flavour garden|tpu (tpu)] [--size PX (64)] [--batch N (64)] [--threads T (1)]\n"
            "       [--steps N (20, timed)] [--warmup N (3)] [--classes N (10)] [--lr LR (0.01)]\n"
            "       [--weight-decay WD (4e-5)] [--smoothing S (0.1)] [--seed N (1)]\n"
            "       [--breakdown] [--save-weights FILE] [--json]\n"
            "One step = zero grads + forward (batch-stat BN) + softmax cross-entropy + backward\n"
            "+ SGD momentum update, as in src/train/trainer.c. --save-weights writes the initial\n"
            "weights (before any step) so that train_step_torch.py can check the architecture.\n");
}

static int parse_args(int argc, char **argv, options *o) {
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) { o->json = 1; continue; }
        if (!strcmp(a, "--breakdown")) { o->breakdown = 1; continue; }
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
        if (i + 1 >= argc) {
            fprintf(stderr, "bench_train_step: %s needs a value (or is unknown)\n", a);
            return 0;
        }
        const char *v = argv[++i];
        int ok = 1, seed = 0;
        if (!strcmp(a, "--model")) o->model = v;
        else if (!strcmp(a, "--act")) o->act = v;
        else if (!strcmp(a, "--flavour")) o->flavour = v;
        else if (!strcmp(a, "--save-weights")) o->save = v;
        else if (!strcmp(a, "--size")) ok = parse_int(v, 8, 4096, &o->size);
        else if (!strcmp(a, "--batch")) ok = parse_int(v, 1, 1 << 16, &o->batch);
        else if (!strcmp(a, "--threads")) ok = parse_int(v, 0, 1024, &o->threads);
        else if (!strcmp(a, "--steps")) ok = parse_int(v, 1, 1 << 20, &o->steps);
        else if (!strcmp(a, "--warmup")) ok = parse_int(v, 0, 1 << 20, &o->warmup);
        else if (!strcmp(a, "--classes")) ok = parse_int(v, 2, 1 << 20, &o->classes);
        else if (!strcmp(a, "--lr")) ok = parse_dbl(v, 0.0, 100.0, &o->lr);
        else if (!strcmp(a, "--weight-decay")) ok = parse_dbl(v, 0.0, 1.0, &o->wd);
        else if (!strcmp(a, "--smoothing")) ok = parse_dbl(v, 0.0, 0.999, &o->smoothing);
        else if (!strcmp(a, "--seed")) {
            ok = parse_int(v, 0, 1 << 30, &seed);
            o->seed = (uint64_t)seed;
        } else {
            fprintf(stderr, "bench_train_step: unknown option %s (see --help)\n", a);
            return 0;
        }
        if (!ok) {
            fprintf(stderr, "bench_train_step: bad value '%s' for %s\n", v, a);
            return 0;
        }
    }
    return 1;
}

static int fail(const char *what, sn_status st) {
    fprintf(stderr, "bench_train_step: %s failed (%s): %s\n", what, sn_status_name(st),
            sn_last_error());
    return 1;
}

int main(int argc, char **argv) {
    sn_tame_openmp_spinning(argv);
    options o = {.model = "spinenet-mobile-49xs", .flavour = "tpu", .size = 64, .batch = 64,
                 .threads = 1, .steps = 20, .warmup = 3, .classes = 10, .lr = 0.01, .wd = 4e-5,
                 .smoothing = 0.1, .seed = 1};
    if (!parse_args(argc, argv, &o)) return 2;

    sn_config cfg;
    sn_status st = sn_config_init(&cfg, o.model);
    if (st != SN_OK) return fail("sn_config_init", st);
    cfg.head = SN_HEAD_CLASSIFIER;
    cfg.num_classes = o.classes;
    cfg.input_size = o.size;
    if ((st = sn_parse_flavour(o.flavour, &cfg.flavour)) != SN_OK) return fail("--flavour", st);
    if (o.act && (st = sn_parse_act(o.act, &cfg.activation)) != SN_OK) return fail("--act", st);

    sn_model *m = NULL;
    sn_optim *opt = NULL;
    float **grads = NULL;
    sn_opt_param *op = NULL;
    float *input = NULL;
    int32_t *labels = NULL;
    double *t_step = NULL, *t_zero = NULL, *t_fb = NULL, *t_sgd = NULL, *t_fwd = NULL;
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
    input = malloc(n_in * sizeof *input);
    labels = malloc((size_t)o.batch * sizeof *labels);
    t_step = calloc((size_t)total, sizeof(double));
    t_zero = calloc((size_t)total, sizeof(double));
    t_fb = calloc((size_t)total, sizeof(double));
    t_sgd = calloc((size_t)total, sizeof(double));
    t_fwd = calloc((size_t)total, sizeof(double));
    if (!grads || !op || !input || !labels || !t_step || !t_zero || !t_fb || !t_sgd || !t_fwd) {
        fprintf(stderr, "bench_train_step: out of memory\n");
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
            fprintf(stderr, "bench_train_step: out of memory\n");
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

    /* Inputs uniform with unit variance (like normalised pixels) and labels, both from the hash
     * fill of core.h so that train_step_torch.py can rebuild them bit for bit. */
    sn_hash_fill(input, n_in, "bench.input", o.seed, -sqrt(3.0), sqrt(3.0));
    {
        float *u = malloc((size_t)o.batch * sizeof *u);
        if (!u) { fprintf(stderr, "bench_train_step: out of memory\n"); goto done; }
        sn_hash_fill(u, (size_t)o.batch, "bench.labels", o.seed, 0.0, (double)o.classes);
        for (int i = 0; i < o.batch; i++) {
            int y = (int)u[i];
            labels[i] = y < o.classes ? y : o.classes - 1;
        }
        free(u);
    }

    double loss0 = NAN, norm0 = NAN, loss_last = NAN;
    float logits0[4 * 64];
    int n_logits0 = 0;
    for (int s = 0; s < total; s++) {
        double t0 = now_ms();
        for (int i = 0; i < np; i++)
            if (grads[i]) memset(grads[i], 0, op[i].count * sizeof(float));
        double t1 = now_ms(), loss = NAN, norm = NAN;
        st = sn_model_loss_grad(m, input, labels, (float)o.smoothing, (uint64_t)s, &loss, grads);
        if (st != SN_OK) { rc = fail("sn_model_loss_grad", st); goto done; }
        double t2 = now_ms();
        if ((st = sn_optim_step(opt, op, np, o.lr, &norm)) != SN_OK) { rc = fail("sn_optim_step", st); goto done; }
        double t3 = now_ms();
        if (s == 0) {
            /* The first step's loss, gradient norm and a few logits (before any update) let
             * train_step_torch.py check that it runs the same function. */
            loss0 = loss;
            norm0 = norm;
            sn_output lo;
            if ((st = sn_model_output(m, "logits", &lo)) != SN_OK) { rc = fail("sn_model_output", st); goto done; }
            int take = lo.n < 4 ? lo.n : 4, per = lo.c < 64 ? lo.c : 64;
            for (int i = 0; i < take; i++)
                for (int k = 0; k < per; k++) logits0[n_logits0++] = lo.data[(size_t)i * (size_t)lo.c + (size_t)k];
        }
        loss_last = loss;
        t_step[s] = t3 - t0;
        t_zero[s] = t1 - t0;
        t_fb[s] = t2 - t1;
        t_sgd[s] = t3 - t2;
    }
    if (o.breakdown) /* forward + loss only (grads NULL: no backward), same warmup and count */
        for (int s = 0; s < total; s++) {
            double t0 = now_ms(), loss;
            st = sn_model_loss_grad(m, input, labels, (float)o.smoothing, (uint64_t)s, &loss, NULL);
            if (st != SN_OK) { rc = fail("sn_model_loss_grad (forward only)", st); goto done; }
            t_fwd[s] = now_ms() - t0;
        }

    double min_ms = t_step[o.warmup];
    for (int s = o.warmup; s < total; s++)
        if (t_step[s] < min_ms) min_ms = t_step[s];
    double med = median(t_step + o.warmup, o.steps);
    double med_zero = median(t_zero + o.warmup, o.steps);
    double med_fb = median(t_fb + o.warmup, o.steps);
    double med_sgd = median(t_sgd + o.warmup, o.steps);
    double med_fwd = o.breakdown ? median(t_fwd + o.warmup, o.steps) : 0.0;
    double ips = (double)o.batch * 1000.0 / med;
    const sn_config *rc_cfg = sn_model_config(m);
    if (o.json) {
        printf("{\"impl\": \"c\", \"model\": \"%s\", \"flavour\": \"%s\", \"activation\": \"%s\", "
               "\"size\": %d, \"batch\": %d, \"threads\": %d, \"classes\": %d, \"steps\": %d, "
               "\"warmup\": %d, \"params\": %" PRId64 ", \"bn_eps\": %.9g, \"bn_momentum\": %.9g, "
               "\"lr\": %.9g, \"weight_decay\": %.9g, \"smoothing\": %.9g, \"seed\": %" PRIu64 ", "
               "\"loss0\": %.9g, \"grad_norm0\": %.9g, \"loss_last\": %.9g, "
               "\"median_ms\": %.4f, \"min_ms\": %.4f, \"images_per_s\": %.3f, "
               "\"zero_ms\": %.4f, \"fwd_bwd_ms\": %.4f, \"sgd_ms\": %.4f",
               rc_cfg->model, sn_flavour_name(rc_cfg->flavour), sn_act_name(rc_cfg->activation),
               o.size, o.batch, o.threads, o.classes, o.steps, o.warmup, trainable,
               (double)rc_cfg->bn_eps, (double)rc_cfg->bn_momentum, o.lr, o.wd, o.smoothing,
               o.seed, loss0, norm0, loss_last, med, min_ms, ips, med_zero, med_fb, med_sgd);
        if (o.breakdown) printf(", \"fwd_ms\": %.4f", med_fwd);
        printf(", \"logits0\": [");
        for (int i = 0; i < n_logits0; i++) printf("%s%.9g", i ? ", " : "", (double)logits0[i]);
        printf("]}\n");
    } else {
        printf("C training step: %s (%s, %s), classifier %d classes, %" PRId64 " params\n",
               rc_cfg->model, sn_flavour_name(rc_cfg->flavour), sn_act_name(rc_cfg->activation),
               o.classes, trainable);
        printf("  input %dx%d, batch %d, %d threads; %d warmup + %d timed steps\n", o.size, o.size,
               o.batch, o.threads, o.warmup, o.steps);
        printf("  step: median %.2f ms, min %.2f ms -> %.1f images/s\n", med, min_ms, ips);
        printf("  median parts: zero grads %.2f ms, forward+loss+backward %.2f ms, SGD %.2f ms\n",
               med_zero, med_fb, med_sgd);
        if (o.breakdown)
            printf("  forward+loss alone (no backward): median %.2f ms -> backward ~ %.2f ms\n",
                   med_fwd, med_fb - med_fwd);
        printf("  loss: first step %.5f, last step %.5f; first gradient norm %.5f\n", loss0,
               loss_last, norm0);
    }
    rc = 0;
done:
    if (grads)
        for (int i = 0; i < np; i++) free(grads[i]);
    free(grads);
    free(op);
    free(input);
    free(labels);
    free(t_step);
    free(t_zero);
    free(t_fb);
    free(t_sgd);
    free(t_fwd);
    sn_optim_free(opt);
    sn_model_free(m);
    return rc;
}
