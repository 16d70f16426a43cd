/* Learning-rate schedules at hand-computed points, and the SGD optimizer against a double
 * reference written out here (momentum forms, decay on ".weight" only, clipping), state round
 * trip and bad input. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "core.h"
#include "optim.h"
#include "test.h"

#define NEAR(a, b, tol) (fabs((double)(a) - (double)(b)) <= (tol) * fmax(1.0, fabs((double)(b))))

static void test_schedules(void) {
    sn_lr_schedule s;

    /* Garden SpineNet COCO recipe (official/vision/configs/retinanet.py). */
    sn_lr_schedule_init(&s, SN_LR_STEP, 0.32);
    s.warmup_steps = 2000;
    s.warmup_init_lr = 0.0067;
    s.n_boundaries = 2;
    s.boundaries[0] = 219450;
    s.boundaries[1] = 226380;
    s.values[0] = 0.032;
    s.values[1] = 0.0032;
    CHECK_OK(sn_lr_schedule_check(&s));
    const int64_t steps[] = {-5, 0, 1000, 1999, 2000, 219449, 219450, 226379, 226380, 1000000};
    /* 0.0067 + (0.32 - 0.0067) * step / 2000 in the warmup. */
    const double want[] = {0.0067, 0.0067, 0.16335, 0.31984335, 0.32, 0.32,
                           0.032,  0.032,  0.0032,  0.0032};
    for (int i = 0; i < (int)(sizeof steps / sizeof *steps); i++)
        CHECK(NEAR(sn_lr_at(&s, steps[i]), want[i], 1e-12), "step lr at %lld: %.10g want %.10g",
              (long long)steps[i], sn_lr_at(&s, steps[i]), want[i]);

    /* A boundary inside the warmup: the ramp aims at the value the schedule has at its end. */
    s.boundaries[0] = 10;
    s.boundaries[1] = 3000;
    CHECK(NEAR(sn_lr_at(&s, 1000), 0.0067 + (0.032 - 0.0067) * 0.5, 1e-12), "ramp target %g",
          sn_lr_at(&s, 1000));

    /* Cosine after warmup (TPU): base 1, final 0.1, warmup 100 from 0, total 1100, so T = 1000. */
    sn_lr_schedule_init(&s, SN_LR_COSINE, 1.0);
    s.warmup_steps = 100;
    s.final_lr = 0.1;
    s.total_steps = 1100;
    CHECK_OK(sn_lr_schedule_check(&s));
    CHECK(NEAR(sn_lr_at(&s, 0), 0.0, 1e-12), "cos warmup start %g", sn_lr_at(&s, 0));
    CHECK(NEAR(sn_lr_at(&s, 50), 0.5, 1e-12), "cos warmup middle %g", sn_lr_at(&s, 50));
    CHECK(NEAR(sn_lr_at(&s, 100), 1.0, 1e-12), "cos start %g", sn_lr_at(&s, 100));
    /* t = 250: 0.1 + 0.45 * (1 + cos(pi/4)) = 0.1 + 0.45 * 1.7071067811865475 */
    CHECK(NEAR(sn_lr_at(&s, 350), 0.86819805153394639, 1e-12), "cos quarter %.17g",
          sn_lr_at(&s, 350));
    CHECK(NEAR(sn_lr_at(&s, 600), 0.55, 1e-12), "cos middle %g", sn_lr_at(&s, 600));
    CHECK(NEAR(sn_lr_at(&s, 1100), 0.1, 1e-12), "cos end %g", sn_lr_at(&s, 1100));
    CHECK(NEAR(sn_lr_at(&s, 5000), 0.1, 1e-12), "cos after end %g", sn_lr_at(&s, 5000));

    /* Garden offset-0 cosine: base 1, final 0, total 1000, warmup 100 from 0. The ramp ends at
     * 0.5 * (1 + cos(0.1 pi)) = 0.97552825814757682. */
    sn_lr_schedule_init(&s, SN_LR_COSINE, 1.0);
    s.warmup_steps = 100;
    s.total_steps = 1000;
    s.cosine_from_zero = 1;
    CHECK_OK(sn_lr_schedule_check(&s));
    CHECK(NEAR(sn_lr_at(&s, 50), 0.48776412907378841, 1e-12), "garden cos warmup %.17g",
          sn_lr_at(&s, 50));
    CHECK(NEAR(sn_lr_at(&s, 100), 0.97552825814757682, 1e-12), "garden cos at warmup end %.17g",
          sn_lr_at(&s, 100));
    CHECK(NEAR(sn_lr_at(&s, 500), 0.5, 1e-12), "garden cos middle %g", sn_lr_at(&s, 500));
    CHECK(NEAR(sn_lr_at(&s, 1000), 0.0, 1e-12), "garden cos end %g", sn_lr_at(&s, 1000));

    /* Constant, with and without warmup. */
    sn_lr_schedule_init(&s, SN_LR_CONSTANT, 0.1);
    CHECK(sn_lr_at(&s, 0) == 0.1 && sn_lr_at(&s, 123456) == 0.1, "constant");
    s.warmup_steps = 10;
    CHECK(NEAR(sn_lr_at(&s, 5), 0.05, 1e-15) && sn_lr_at(&s, 10) == 0.1, "constant warmup %g",
          sn_lr_at(&s, 5));

    /* Bad schedules. */
    sn_lr_schedule_init(&s, SN_LR_STEP, 0.1);
    s.n_boundaries = 2;
    s.boundaries[0] = 100;
    s.boundaries[1] = 100;
    CHECK(sn_lr_schedule_check(&s) == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "increasing"),
          "unordered boundaries: %s", sn_last_error());
    s.n_boundaries = SN_LR_MAX_BOUNDARIES + 1;
    CHECK(sn_lr_schedule_check(&s) == SN_ERR_INVALID_ARG, "too many boundaries");
    sn_lr_schedule_init(&s, SN_LR_COSINE, 0.1);
    s.warmup_steps = 100;
    s.total_steps = 100;
    CHECK(sn_lr_schedule_check(&s) == SN_ERR_INVALID_ARG && strstr(sn_last_error(), "cosine"),
          "cosine without decay steps: %s", sn_last_error());
    s.total_steps = 200;
    s.warmup_steps = -1;
    CHECK(sn_lr_schedule_check(&s) == SN_ERR_INVALID_ARG, "negative warmup");
    CHECK(sn_lr_schedule_check(NULL) == SN_ERR_INVALID_ARG, "NULL schedule");
}

/* The tiny model: a quadratic L = sum_j 0.5 * c_j * (w_j - t_j)^2 per trainable tensor, so
 * g = c * (w - t). Tensor 3 is a BN moving statistic, which must never move. */
enum { NP = 4, MAXC = 3 };
static const char *const k_names[NP] = {"a.weight", "a.bias", "a.bn.gamma", "a.bn.mean"};
static const size_t k_counts[NP] = {3, 2, 2, 2};
static const double k_w0[NP][MAXC] = {{1.5, -2.0, 0.5}, {0.25, -0.75}, {1.0, 1.2}, {0.3, 0.4}};
static const double k_t[NP][MAXC] = {{0.0, 1.0, -1.0}, {1.0, 0.0}, {0.5, 0.5}, {0, 0}};
static const double k_c[NP][MAXC] = {{2.0, 1.0, 3.0}, {1.0, 4.0}, {0.5, 2.0}, {0, 0}};

typedef struct {
    float w[NP][MAXC], g[NP][MAXC];
    sn_opt_param p[NP];
} tiny;

static void tiny_init(tiny *m) {
    memset(m, 0, sizeof *m);
    for (int i = 0; i < NP; i++) {
        for (size_t j = 0; j < k_counts[i]; j++) m->w[i][j] = (float)k_w0[i][j];
        m->p[i].name = k_names[i];
        m->p[i].w = m->w[i];
        m->p[i].g = i == 3 ? NULL : m->g[i];
        m->p[i].count = k_counts[i];
    }
}

static void tiny_grad(tiny *m) {
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < k_counts[i]; j++)
            m->g[i][j] = (float)(k_c[i][j] * ((double)m->w[i][j] - k_t[i][j]));
}

/* The reference optimizer in double, written from the formulas in optim.h. Returns the norm. */
static double ref_step(double w[NP][MAXC], double v[NP][MAXC], const sn_sgd_config *c,
                       double lr) {
    double ge[NP][MAXC] = {{0}}, ss = 0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < k_counts[i]; j++) {
            ge[i][j] = k_c[i][j] * (w[i][j] - k_t[i][j]) + (i == 0 ? c->weight_decay * w[i][j] : 0);
            ss += ge[i][j] * ge[i][j];
        }
    const double norm = sqrt(ss);
    const double scale = (c->clip_norm > 0 && norm > c->clip_norm) ? c->clip_norm / norm : 1.0;
    for (int i = 0; i < 3; i++)
        for (size_t j = 0; j < k_counts[i]; j++) {
            const double g = ge[i][j] * scale;
            if (c->form == SN_MOMENTUM_KERAS) {
                v[i][j] = c->momentum * v[i][j] - lr * g;
                w[i][j] += v[i][j];
            } else {
                v[i][j] = c->momentum * v[i][j] + g;
                w[i][j] -= lr * v[i][j];
            }
        }
    return norm;
}

/* Runs 6 steps with a changing lr on both and compares; returns how many steps clipped. */
static int run_against_ref(const sn_sgd_config *c, const char *what) {
    static const double lrs[] = {0.1, 0.05, 0.2, 0.2, 0.01, 0.15};
    tiny m;
    tiny_init(&m);
    double w[NP][MAXC], v[NP][MAXC] = {{0}};
    memcpy(w, k_w0, sizeof w);
    sn_optim *o = NULL;
    CHECK_OK(sn_optim_create(c, m.p, NP, &o));
    if (!o) return -1;
    int clipped = 0;
    for (int s = 0; s < 6; s++) {
        tiny_grad(&m);
        double norm = -1;
        CHECK_OK(sn_optim_step(o, m.p, NP, lrs[s], &norm));
        const double rnorm = ref_step(w, v, c, lrs[s]);
        CHECK(NEAR(norm, rnorm, 1e-5), "%s step %d: norm %.8g ref %.8g", what, s, norm, rnorm);
        if (c->clip_norm > 0 && rnorm > c->clip_norm) clipped++;
        for (int i = 0; i < 3; i++)
            for (size_t j = 0; j < k_counts[i]; j++)
                CHECK(NEAR(m.w[i][j], w[i][j], 2e-5), "%s step %d %s[%zu]: %.8g ref %.8g", what,
                      s, k_names[i], j, m.w[i][j], w[i][j]);
    }
    for (size_t j = 0; j < k_counts[3]; j++)
        CHECK(m.w[3][j] == (float)k_w0[3][j], "%s: moving mean changed", what);
    CHECK(sn_optim_get_step(o) == 6, "%s: step counter %lld", what,
          (long long)sn_optim_get_step(o));
    const sn_opt_tensor *st = NULL;
    int nst = -1;
    CHECK_OK(sn_optim_state_tensors(o, &st, &nst));
    CHECK(nst == 3, "%s: %d state tensors (the moving mean has none)", what, nst);
    for (int i = 0; i < 3 && i < nst; i++) {
        char want[64];
        snprintf(want, sizeof want, "opt.momentum.%s", k_names[i]);
        CHECK(strcmp(st[i].name, want) == 0 && st[i].count == k_counts[i], "%s: state %d '%s'",
              what, i, st[i].name);
        for (size_t j = 0; j < st[i].count; j++)
            CHECK(NEAR(st[i].data[j], v[i][j], 2e-5), "%s: momentum %s[%zu] %.8g ref %.8g", what,
                  k_names[i], j, st[i].data[j], v[i][j]);
    }
    sn_optim_free(o);
    return clipped;
}

static void test_sgd(void) {
    sn_sgd_config c;
    sn_sgd_config_default(&c);
    CHECK(c.momentum == 0.9 && c.weight_decay == 0 && c.clip_norm == 0, "defaults");
    c.weight_decay = 0.05;

    c.clip_norm = 1e6;
    CHECK(run_against_ref(&c, "keras, no clip") == 0, "clipping should not trigger");
    c.clip_norm = 4.0; /* the first gradients have norm ~7, later ones shrink below 4 */
    int k = run_against_ref(&c, "keras, clip");
    CHECK(k >= 1 && k < 6, "clipping should trigger on some steps only: %d", k);
    c.form = SN_MOMENTUM_ACCUM;
    k = run_against_ref(&c, "accum, clip");
    CHECK(k >= 1 && k < 6, "accum clipping should trigger on some steps only: %d", k);
    c.clip_norm = 0;
    CHECK(run_against_ref(&c, "accum, no clip") == 0, "no clipping");
    c.momentum = 0;
    run_against_ref(&c, "plain sgd");

    /* Decay only on ".weight": zero gradients, lr 1, no momentum, wd 0.5: the kernel halves,
     * bias and gamma stay. */
    sn_sgd_config_default(&c);
    c.momentum = 0;
    c.weight_decay = 0.5;
    tiny m;
    tiny_init(&m);
    sn_optim *o = NULL;
    CHECK_OK(sn_optim_create(&c, m.p, NP, &o));
    CHECK_OK(sn_optim_step(o, m.p, NP, 1.0, NULL));
    for (int i = 0; i < NP; i++)
        for (size_t j = 0; j < k_counts[i]; j++) {
            const float want = (float)(i == 0 ? 0.5 * k_w0[i][j] : k_w0[i][j]);
            CHECK(m.w[i][j] == want, "decay: %s[%zu] %g want %g", k_names[i], j, m.w[i][j], want);
        }
    CHECK(sn_optim_has_decay("blocks.3.conv1.weight") && !sn_optim_has_decay("head.fc.bias") &&
              !sn_optim_has_decay("stem.bn.gamma") && !sn_optim_has_decay("weight"),
          "has_decay");
    CHECK(!sn_optim_is_trainable("stem.bn.mean") && !sn_optim_is_trainable("x.bn_l3.var") &&
              sn_optim_is_trainable("stem.bn.beta"),
          "is_trainable");
    sn_optim_free(o);

    /* Two momentum forms: the same while lr is constant, different once it changes. */
    sn_sgd_config_default(&c);
    c.form = SN_MOMENTUM_ACCUM;
    sn_optim *oa = NULL, *ok = NULL;
    tiny ma, mk;
    tiny_init(&ma);
    tiny_init(&mk);
    CHECK_OK(sn_optim_create(&c, ma.p, NP, &oa));
    c.form = SN_MOMENTUM_KERAS;
    CHECK_OK(sn_optim_create(&c, mk.p, NP, &ok));
    for (int s = 0; s < 3; s++) {
        tiny_grad(&ma);
        tiny_grad(&mk);
        CHECK_OK(sn_optim_step(oa, ma.p, NP, 0.1, NULL));
        CHECK_OK(sn_optim_step(ok, mk.p, NP, 0.1, NULL));
    }
    CHECK(t_max_abs_diff(ma.w[0], mk.w[0], 3) < 1e-6, "forms agree at constant lr: %g",
          t_max_abs_diff(ma.w[0], mk.w[0], 3));
    tiny_grad(&ma);
    tiny_grad(&mk);
    CHECK_OK(sn_optim_step(oa, ma.p, NP, 0.01, NULL));
    CHECK_OK(sn_optim_step(ok, mk.p, NP, 0.01, NULL));
    CHECK(t_max_abs_diff(ma.w[0], mk.w[0], 3) > 1e-3, "forms differ after an lr change: %g",
          t_max_abs_diff(ma.w[0], mk.w[0], 3));
    sn_optim_free(oa);
    sn_optim_free(ok);

    /* Zero lr on a fresh optimizer changes no weight and no momentum; the counter moves. */
    sn_sgd_config_default(&c);
    c.weight_decay = 0.1;
    c.clip_norm = 1.0;
    tiny_init(&m);
    tiny_grad(&m);
    CHECK_OK(sn_optim_create(&c, m.p, NP, &o));
    CHECK_OK(sn_optim_step(o, m.p, NP, 0.0, NULL));
    for (int i = 0; i < NP; i++)
        for (size_t j = 0; j < k_counts[i]; j++)
            CHECK(m.w[i][j] == (float)k_w0[i][j], "zero lr moved %s[%zu]", k_names[i], j);
    const sn_opt_tensor *st = NULL;
    int nst = 0;
    CHECK_OK(sn_optim_state_tensors(o, &st, &nst));
    for (int i = 0; i < nst; i++)
        for (size_t j = 0; j < st[i].count; j++)
            CHECK(st[i].data[j] == 0.0f, "zero lr set momentum %s", st[i].name);
    CHECK(sn_optim_get_step(o) == 1, "counter after zero-lr step");
    sn_optim_free(o);
}

static void test_state_round_trip(void) {
    sn_sgd_config c;
    sn_sgd_config_default(&c);
    c.weight_decay = 0.01;
    c.clip_norm = 2.0;
    tiny a, b;
    tiny_init(&a);
    sn_optim *oa = NULL, *ob = NULL;
    CHECK_OK(sn_optim_create(&c, a.p, NP, &oa));
    for (int s = 0; s < 3; s++) {
        tiny_grad(&a);
        CHECK_OK(sn_optim_step(oa, a.p, NP, 0.1 * (s + 1), NULL));
    }
    /* "Checkpoint": weights, momentum by name, step. */
    float saved[NP][MAXC];
    int64_t saved_step = sn_optim_get_step(oa);
    const sn_opt_tensor *st = NULL;
    int nst = 0;
    CHECK_OK(sn_optim_state_tensors(oa, &st, &nst));
    float mom[NP][MAXC];
    for (int i = 0; i < nst; i++) memcpy(mom[i], st[i].data, st[i].count * sizeof(float));
    memcpy(saved, a.w, sizeof saved);

    /* Restore into a fresh model and optimizer. */
    tiny_init(&b);
    memcpy(b.w, saved, sizeof saved);
    CHECK_OK(sn_optim_create(&c, b.p, NP, &ob));
    for (int i = 0; i < nst; i++) {
        sn_opt_tensor *t = sn_optim_state_find(ob, st[i].name);
        CHECK(t && t->count == st[i].count, "restore %s", st[i].name);
        if (t) memcpy(t->data, mom[i], t->count * sizeof(float));
    }
    CHECK_OK(sn_optim_set_step(ob, saved_step));
    CHECK(sn_optim_get_step(ob) == 3, "restored step");

    tiny_grad(&a);
    tiny_grad(&b);
    CHECK_OK(sn_optim_step(oa, a.p, NP, 0.4, NULL));
    CHECK_OK(sn_optim_step(ob, b.p, NP, 0.4, NULL));
    CHECK(memcmp(a.w, b.w, sizeof a.w) == 0, "restored optimizer: next step not bit-identical");
    const sn_opt_tensor *sb = NULL;
    int nsb = 0;
    CHECK_OK(sn_optim_state_tensors(ob, &sb, &nsb));
    int same = nsb == nst;
    for (int i = 0; same && i < nst; i++)
        same = memcmp(st[i].data, sb[i].data, st[i].count * sizeof(float)) == 0;
    CHECK(same, "restored momentum not bit-identical after a step");
    CHECK(sn_optim_get_step(oa) == 4 && sn_optim_get_step(ob) == 4, "steps after restore");

    CHECK(sn_optim_state_find(ob, "opt.momentum.a.bn.mean") == NULL &&
              strstr(sn_last_error(), "not found"),
          "no state for moving statistics: %s", sn_last_error());
    sn_optim_free(oa);
    sn_optim_free(ob);
}

static void test_bad_input(void) {
    sn_sgd_config c;
    sn_sgd_config_default(&c);
    tiny m;
    tiny_init(&m);
    tiny_grad(&m);
    sn_optim *o = NULL;

    CHECK(sn_optim_create(NULL, m.p, NP, &o) == SN_ERR_INVALID_ARG && !o, "NULL config");
    CHECK(sn_optim_create(&c, NULL, NP, &o) == SN_ERR_INVALID_ARG, "NULL params");
    CHECK(sn_optim_create(&c, m.p, NP, NULL) == SN_ERR_INVALID_ARG, "NULL out");
    c.momentum = -1;
    CHECK(sn_optim_create(&c, m.p, NP, &o) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "momentum"),
          "negative momentum: %s", sn_last_error());
    c.momentum = 0.9;
    m.p[1].name = "a.weight";
    CHECK(sn_optim_create(&c, m.p, NP, &o) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "twice"),
          "duplicate names: %s", sn_last_error());
    m.p[1].name = k_names[1];

    CHECK_OK(sn_optim_create(&c, m.p, NP, &o));
    m.p[0].count = 4;
    CHECK(sn_optim_step(o, m.p, NP, 0.1, NULL) == SN_ERR_SHAPE &&
              strstr(sn_last_error(), "a.weight"),
          "count mismatch: %s", sn_last_error());
    m.p[0].count = 3;
    CHECK(sn_optim_step(o, m.p, NP - 1, 0.1, NULL) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "parameters"),
          "n mismatch: %s", sn_last_error());
    CHECK(sn_optim_step(NULL, m.p, NP, 0.1, NULL) == SN_ERR_INVALID_ARG, "NULL optimizer");
    CHECK(sn_optim_step(o, NULL, NP, 0.1, NULL) == SN_ERR_INVALID_ARG, "NULL params to step");
    m.p[2].name = "a.bn.beta";
    CHECK(sn_optim_step(o, m.p, NP, 0.1, NULL) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "expected 'a.bn.gamma'"),
          "name mismatch: %s", sn_last_error());
    m.p[2].name = k_names[2];
    m.p[1].g = NULL;
    CHECK(sn_optim_step(o, m.p, NP, 0.1, NULL) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "gradient"),
          "NULL gradient: %s", sn_last_error());
    m.p[1].g = m.g[1];
    CHECK(sn_optim_step(o, m.p, NP, NAN, NULL) == SN_ERR_INVALID_ARG, "NaN lr");
    double norm = 0;
    CHECK(sn_optim_grad_norm(o, m.p, NP, NULL) == SN_ERR_INVALID_ARG, "NULL norm");
    CHECK_OK(sn_optim_grad_norm(o, m.p, NP, &norm));
    CHECK(norm > 0, "grad norm %g", norm);

    /* A NaN gradient: refused, nothing changes. */
    m.g[1][0] = NAN;
    CHECK(sn_optim_step(o, m.p, NP, 0.1, &norm) == SN_ERR_INVALID_ARG &&
              strstr(sn_last_error(), "not finite"),
          "NaN gradient: %s", sn_last_error());
    for (int i = 0; i < NP; i++)
        for (size_t j = 0; j < k_counts[i]; j++)
            CHECK(m.w[i][j] == (float)k_w0[i][j], "NaN step moved %s[%zu]", k_names[i], j);
    CHECK(sn_optim_get_step(o) == 0, "NaN step counted");

    CHECK(sn_optim_set_step(o, -1) == SN_ERR_INVALID_ARG, "negative step");
    CHECK(sn_optim_set_step(NULL, 1) == SN_ERR_INVALID_ARG, "NULL set_step");
    CHECK(sn_optim_state_tensors(o, NULL, NULL) == SN_ERR_INVALID_ARG, "NULL state out");
    CHECK(sn_optim_state_find(o, "opt.momentum.nope") == NULL, "unknown state");
    sn_optim_free(o);
    sn_optim_free(NULL);

    /* Every allocation failure in create is reported and leaks nothing (ASan builds check). */
    int created = 0;
    for (long k = 1; k < 64 && !created; k++) {
        sn_alloc_fail_after(k);
        const sn_status st = sn_optim_create(&c, m.p, NP, &o);
        sn_alloc_fail_after(0);
        if (st == SN_OK) {
            created = 1;
            sn_optim_free(o);
        } else {
            CHECK(st == SN_ERR_OOM && !o, "allocation failure %ld: %s", k, sn_status_name(st));
        }
    }
    CHECK(created, "create never succeeded under injected failures");

    /* An empty parameter list is valid (nothing to do). */
    CHECK_OK(sn_optim_create(&c, NULL, 0, &o));
    CHECK_OK(sn_optim_step(o, NULL, 0, 0.1, NULL));
    sn_optim_free(o);
}

int main(void) {
    test_schedules();
    test_sgd();
    test_state_round_trip();
    test_bad_input();
    return TEST_SUMMARY();
}
