/* Run under mpirun with 2 or more processes (tests/mpi_dist_test.sh): the collectives of dist.h
 * agree on every rank; grad_sync over the ranks, started from a real backward's grads_ready
 * hook, gives the plain blocking sum of the same gradients (scaled), for several bucket sizes;
 * with --bench, the all-reduce time of whole models' gradients and the part of it the backward
 * hides. Every rank checks; the ranks agree on the outcome (max of the failure flags), and rank 0
 * prints. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "dist.h"
#include "grad_sync.h"
#include "model.h"
#include "model_train.h"
#include "golden_fill.h"
#include "model_util.h"
#include "spinenet.h"
#include "test.h"

static int g_rank, g_size;

#define SAY(...)                                                                               \
    do {                                                                                       \
        if (g_rank == 0) {                                                                     \
            printf(__VA_ARGS__);                                                               \
            fflush(stdout);                                                                    \
        }                                                                                      \
    } while (0)

static void test_collectives(void) {
    enum { N = 1000 };
    float f[N];
    double d[N];
    int32_t k[N];
    for (int i = 0; i < N; i++) {
        f[i] = (float)((g_rank + 1) * (i % 7 + 1));
        d[i] = (g_rank + 1) * (i + 0.5);
        k[i] = g_rank * 10 + i - 500;
    }
    const int tri = g_size * (g_size + 1) / 2;
    CHECK_OK(sn_dist_sum_f32(f, N));
    CHECK_OK(sn_dist_sum_f64(d, N));
    CHECK_OK(sn_dist_max_i32(k, N));
    int bad_f = 0, bad_d = 0, bad_k = 0;
    for (int i = 0; i < N; i++) {
        bad_f += f[i] != (float)(tri * (i % 7 + 1));
        bad_d += d[i] != tri * (i + 0.5);
        bad_k += k[i] != (g_size - 1) * 10 + i - 500;
    }
    CHECK(!bad_f && !bad_d && !bad_k, "rank %d: sums/max wrong: %d %d %d", g_rank, bad_f, bad_d,
          bad_k);
    /* Broadcast from the last rank. */
    char msg[64];
    snprintf(msg, sizeof msg, "from rank %d", g_rank);
    CHECK_OK(sn_dist_bcast(msg, sizeof msg, g_size - 1));
    char want[64];
    snprintf(want, sizeof want, "from rank %d", g_size - 1);
    CHECK(strcmp(msg, want) == 0, "rank %d: bcast gave '%s'", g_rank, msg);
    CHECK(sn_dist_bcast(msg, sizeof msg, g_size) == SN_ERR_INVALID_ARG, "bcast from a bad root");
    CHECK_OK(sn_dist_barrier());
    /* Non-blocking: 4 M floats, tested until done, then one waited for. */
    const size_t big = (size_t)4 << 20;
    float *b = malloc(big * sizeof *b);
    for (size_t i = 0; i < big; i++) b[i] = (float)(g_rank + 1) * (float)(i & 1023);
    sn_dist_req *r = NULL;
    CHECK_OK(sn_dist_isum_f32(b, big, &r));
    long polls = 0;
    sn_status st = SN_OK;
    while (!sn_dist_test(&r, &st)) polls++;
    CHECK(st == SN_OK && r == NULL, "rank %d: test: %s", g_rank, sn_last_error());
    CHECK_OK(sn_dist_isum_f32(b, big, &r));
    CHECK_OK(sn_dist_wait(&r));
    size_t wrong = 0;
    for (size_t i = 0; i < big; i++) wrong += b[i] != (float)(g_size * tri) * (float)(i & 1023);
    CHECK(wrong == 0, "rank %d: isum: %zu wrong", g_rank, wrong);
    free(b);
    if (!t_fail)
        SAY("mpi_dist: %d ranks: sum f32/f64, max i32, bcast, barrier, isum (test: %ld polls; "
            "wait) give the expected values\n", g_size, polls);
}

/* A RetinaNet model planned for training at n x size x size, 1 thread. */
static sn_model *retinanet(const char *name, int classes, int n, int size) {
    sn_config c;
    sn_config_init(&c, name);
    c.head = SN_HEAD_RETINANET;
    if (classes) c.num_classes = classes;
    sn_model *m = NULL;
    if (sn_model_create(&c, 1, &m) != SN_OK) return NULL;
    golden_fill_params(m, 11);
    sn_model_set_threads(m, 1);
    if (sn_model_plan_train(m, n, size, size) != SN_OK) {
        sn_model_free(m);
        return NULL;
    }
    return m;
}

/* The class.L and box.L outputs and this rank's made-up loss gradients for them. */
typedef struct {
    int nodes[16];
    float *w[16];
    int n;
    float *x;
} step_data;

static void step_data_init(sn_model *m, step_data *d) {
    sn_graph *g = sn_model_part_graph(m, 0);
    d->n = 0;
    for (int i = 0; i < g->n && d->n < 16; i++) {
        const char *o = g->nodes[i].out_name;
        if (strncmp(o, "class.", 6) != 0 && strncmp(o, "box.", 4) != 0) continue;
        const size_t cnt = sn_node_elems(&g->nodes[i]);
        d->nodes[d->n] = i;
        d->w[d->n] = malloc(cnt * sizeof(float));
        sn_hash_fill(d->w[d->n], cnt, o, 100 + (uint64_t)g_rank, -1e-3, 1e-3);
        d->n++;
    }
    const size_t count = (size_t)g->nodes[0].n * g->nodes[0].h * g->nodes[0].w * 3;
    d->x = malloc(count * sizeof(float));
    sn_hash_fill(d->x, count, "input", 7 + (uint64_t)g_rank, -1, 1);
}

static void step_data_free(step_data *d) {
    for (int j = 0; j < d->n; j++) free(d->w[j]);
    free(d->x);
}

/* Forward and backward into grads (zeroed first); seconds of the backward in *bwd_s. */
static sn_status train_step(sn_model *m, const step_data *d, float **grads, double *bwd_s) {
    sn_graph *g = sn_model_part_graph(m, 0);
    tm_buffers_zero(m, grads);
    sn_status st = sn_graph_forward_train(g, &m->params, d->x, 0.99f, 1, 3);
    if (st != SN_OK) return st;
    const double t0 = now_s();
    st = sn_graph_backward_multi(g, &m->params, d->n, d->nodes, (const float *const *)d->w,
                                 grads);
    if (bwd_s) *bwd_s = now_s() - t0;
    return st;
}

static void test_grad_sync(void) {
    sn_model *m = retinanet("spinenet-mobile-49xs", 3, 1, 128);
    CHECK(m != NULL, "model: %s", sn_last_error());
    if (!m) return;
    step_data d;
    step_data_init(m, &d);
    const int np = sn_model_num_params(m);
    float **ref = tm_grads_new(m), **grads = tm_grads_new(m);
    /* The plain way: the local gradients, then one blocking sum per parameter. */
    CHECK_OK(train_step(m, &d, ref, NULL));
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        CHECK_OK(sn_dist_sum_f32(ref[i], p.count));
    }
    const size_t sizes[3] = {1, 64 << 10, (size_t)1 << 30};
    for (int si = 0; si < 3; si++) {
        sn_grad_sync *s = NULL;
        CHECK_OK(sn_grad_sync_create(m, grads, sizes[si], &s));
        if (!s) break;
        CHECK(sn_model_part_graph(m, 0)->grads_ready != NULL, "no hook installed");
        const float scale = si == 1 ? 1.0f : 1.0f / (float)g_size;
        sn_grad_sync_begin(s);
        CHECK_OK(train_step(m, &d, grads, NULL));
        sn_grad_sync_stats stats;
        CHECK_OK(sn_grad_sync_end(s, scale, &stats));
        double worst = 0.0;
        for (int i = 0; i < np; i++) {
            sn_param p;
            sn_model_param_at(m, i, &p);
            for (size_t e = 0; e < p.count; e++) {
                const double diff = (double)grads[i][e] - (double)(ref[i][e] * scale);
                if (diff > worst || -diff > worst) worst = diff > 0 ? diff : -diff;
            }
        }
        /* Two ranks: each element is a + b either way, so the results agree exactly. */
        CHECK(worst == 0.0, "rank %d: buckets of %zu bytes: differs from the blocking sum by %g",
              g_rank, sizes[si], worst);
        if (worst == 0.0)
            SAY("mpi_dist: grad_sync, buckets of %zu bytes: %d buckets, %.0f bytes, equal to "
                "the blocking sum (scale %g)\n", sizes[si], stats.buckets, stats.bytes, scale);
        sn_grad_sync_free(s);
        CHECK(sn_model_part_graph(m, 0)->grads_ready == NULL, "free left the hook");
    }
    tm_buffers_free(m, ref);
    tm_buffers_free(m, grads);
    step_data_free(&d);
    sn_model_free(m);
}

static int cmp_double(const void *a, const void *b) {
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* The all-reduce of a model's gradients: blocking on one buffer, and grad_sync's buckets (of 1
 * and 4 MiB) with nothing to overlap; then real steps, with the hidden fraction 1 - wait / comm.
 * Times are rank 0's: median [min .. max] of REPS (the machine may be shared: expect noise). */
static void bench(const char *name, int size, int steps) {
    enum { REPS = 9 };
    sn_model *m = retinanet(name, 0, 1, size);
    CHECK(m != NULL, "model %s: %s", name, sn_last_error());
    if (!m) return;
    const int np = sn_model_num_params(m);
    float **grads = tm_grads_new(m);
    size_t total = 0;
    for (int i = 0; i < np; i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        total += p.count;
        sn_hash_fill(grads[i], p.count, p.name, (uint64_t)g_rank, -1, 1);
    }
    float *flat = malloc(total * sizeof *flat);
    sn_hash_fill(flat, total, "flat", (uint64_t)g_rank, -1, 1);
    double t[REPS];
    for (int r = 0; r < REPS; r++) {
        sn_dist_barrier();
        const double t0 = now_s();
        CHECK_OK(sn_dist_sum_f32(flat, total));
        t[r] = now_s() - t0;
    }
    double med = median(t, REPS);
    SAY("mpi_dist: %s RetinaNet: %.2f M params, %.1f MB of gradients, %d ranks: one blocking "
        "all-reduce %.2f ms [%.2f .. %.2f]\n", name, (double)total / 1e6, (double)total * 4 / 1e6,
        g_size, 1e3 * med, 1e3 * t[0], 1e3 * t[REPS - 1]);
    step_data d;
    step_data_init(m, &d);
    for (int mib = 1; mib <= 4; mib *= 4) {
        sn_grad_sync *s = NULL;
        CHECK_OK(sn_grad_sync_create(m, grads, (size_t)mib << 20, &s));
        if (!s) break;
        sn_grad_sync_stats stats = {0};
        for (int r = 0; r < REPS; r++) {
            sn_dist_barrier();
            sn_grad_sync_begin(s);
            const double t0 = now_s();
            CHECK_OK(sn_grad_sync_end(s, 0.5f, &stats));
            t[r] = now_s() - t0;
        }
        med = median(t, REPS);
        SAY("mpi_dist: %s: grad_sync alone, %d buckets of %d MiB: %.2f ms [%.2f .. %.2f]\n",
            name, stats.buckets, mib, 1e3 * med, 1e3 * t[0], 1e3 * t[REPS - 1]);
        /* Real steps: the backward runs while the buckets are summed. */
        double bwd[16], comm[16], wait[16], hid[16];
        const int n = steps > 16 ? 16 : steps;
        for (int k = 0; k < n; k++) {
            sn_dist_barrier();
            sn_grad_sync_begin(s);
            CHECK_OK(train_step(m, &d, grads, &bwd[k]));
            CHECK_OK(sn_grad_sync_end(s, 0.5f, &stats));
            comm[k] = stats.comm_s;
            wait[k] = stats.wait_s;
            hid[k] = stats.comm_s > 0 ? 1.0 - stats.wait_s / stats.comm_s : 0.0;
        }
        const double hmed = n > 0 ? median(hid, n) : 0.0; /* sorts hid */
        if (n > 0)
            SAY("mpi_dist: %s at 1 x %d x %d, 1 thread per rank, %d MiB buckets: backward %.0f "
                "ms, all-reduce (first start to last end) %.1f ms, waited after the backward "
                "%.1f ms: hidden %.0f%% [%.0f%% .. %.0f%%] (median of %d steps)\n",
                name, size, size, mib, 1e3 * median(bwd, n), 1e3 * median(comm, n),
                1e3 * median(wait, n), 100.0 * hmed, 100.0 * hid[0],
                100.0 * hid[n - 1], n);
        sn_grad_sync_free(s);
    }
    step_data_free(&d);
    free(flat);
    tm_buffers_free(m, grads);
    sn_model_free(m);
}

int main(int argc, char **argv) {
    sn_status st = sn_dist_init(&argc, &argv);
    if (st != SN_OK) {
        fprintf(stderr, "mpi_dist: %s\n", sn_last_error());
        return 1;
    }
    g_rank = sn_dist_rank();
    g_size = sn_dist_size();
    int do_bench = argc > 1 && strcmp(argv[1], "--bench") == 0;
    if (g_size < 2) {
        fprintf(stderr, "mpi_dist: run me under mpirun -np 2 (size %d; MPI %s)\n", g_size,
                sn_dist_compiled() ? "built in" : "not built in");
        sn_dist_finalize();
        return 1;
    }
    SAY("mpi_dist: %s\n", sn_dist_library());
    test_collectives();
    test_grad_sync();
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
    /* Timings under a sanitizer mean nothing, and 49S's backward takes minutes there. */
    if (do_bench) SAY("mpi_dist: --bench skipped in a sanitizer build\n");
    do_bench = 0;
#endif
    if (do_bench) {
        bench("spinenet-mobile-49xs", 256, 5);
        bench("spinenet-49s", 256, 3);
    }
    /* The outcome, agreed: any rank's failure fails every rank. */
    int32_t failed = t_fail > 0;
    if (sn_dist_max_i32(&failed, 1) != SN_OK) failed = 1;
    printf("rank %d: %d passed, %d failed%s\n", g_rank, t_pass, t_fail,
           failed && !t_fail ? " (another rank failed)" : "");
    sn_dist_finalize();
    return failed ? 1 : 0;
}
