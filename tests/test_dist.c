/* The job's processes as one process (src/dist without mpirun, or built without MPI): every
 * collective is the identity; the backward's grads_ready hook comes once per node, in reverse
 * order, and a failing hook stops the backward; grad_sync alone leaves the gradients as they
 * are, scaled. The same over two processes is tests/mpi_dist_test.sh. */
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

static void test_collectives(void) {
    CHECK_OK(sn_dist_init(NULL, NULL));
    CHECK_OK(sn_dist_init(NULL, NULL)); /* idempotent */
    CHECK(sn_dist_rank() == 0 && sn_dist_size() == 1, "rank %d size %d", sn_dist_rank(),
          sn_dist_size());
    CHECK(sn_dist_library() && sn_dist_library()[0], "no library line");
    float f[5] = {1.5f, -2.0f, 0.0f, 3.25f, 1e30f};
    double d[3] = {1.0 / 3.0, -7.0, 1e300};
    int32_t k[4] = {-5, 0, 7, INT32_MAX};
    unsigned char bytes[7] = {1, 2, 3, 4, 5, 6, 7};
    const float f0[5] = {1.5f, -2.0f, 0.0f, 3.25f, 1e30f};
    const double d0[3] = {1.0 / 3.0, -7.0, 1e300};
    const int32_t k0[4] = {-5, 0, 7, INT32_MAX};
    const unsigned char b0[7] = {1, 2, 3, 4, 5, 6, 7};
    CHECK_OK(sn_dist_sum_f32(f, 5));
    CHECK_OK(sn_dist_sum_f64(d, 3));
    CHECK_OK(sn_dist_max_i32(k, 4));
    CHECK_OK(sn_dist_bcast(bytes, sizeof bytes, 0));
    CHECK_OK(sn_dist_barrier());
    CHECK_OK(sn_dist_sum_f32(f, 0));
    CHECK(memcmp(f, f0, sizeof f) == 0, "sum_f32 changed its buffer");
    CHECK(memcmp(d, d0, sizeof d) == 0, "sum_f64 changed its buffer");
    CHECK(memcmp(k, k0, sizeof k) == 0, "max_i32 changed its buffer");
    CHECK(memcmp(bytes, b0, sizeof bytes) == 0, "bcast changed its buffer");
    CHECK(sn_dist_bcast(bytes, sizeof bytes, 1) == SN_ERR_INVALID_ARG, "bcast from rank 1 of 1");
    CHECK(strstr(sn_last_error(), "rank 1") != NULL, "message: %s", sn_last_error());
    /* Non-blocking: test frees and clears the request; wait too. */
    sn_dist_req *r = NULL;
    CHECK_OK(sn_dist_isum_f32(f, 5, &r));
    CHECK(r != NULL, "no request");
    sn_status st = SN_ERR_STATE;
    CHECK(sn_dist_test(&r, &st) == 1 && r == NULL && st == SN_OK, "test: not done at once");
    CHECK(sn_dist_test(&r, &st) == 1 && st == SN_OK, "test of a finished request");
    CHECK_OK(sn_dist_isum_f32(f, 5, &r));
    CHECK_OK(sn_dist_wait(&r));
    CHECK(r == NULL, "wait left the request");
    CHECK_OK(sn_dist_wait(&r));
    CHECK(memcmp(f, f0, sizeof f) == 0, "isum changed its buffer");
    sn_dist_finalize();
    sn_dist_finalize();
    CHECK(sn_dist_size() == 1, "size after finalize");
}

typedef struct {
    int *seen;
    int n, cap;
    int fail_at; /* return an error at this node (-1: never) */
} hook_log;

static sn_status record(void *ctx, int node) {
    hook_log *h = ctx;
    if (h->n < h->cap) h->seen[h->n] = node;
    h->n++;
    if (node == h->fail_at) return sn_error(SN_ERR_IO, "hook: stop at node %d", node);
    return SN_OK;
}

static sn_model *small_classifier(int n, int size) {
    sn_config c;
    sn_config_init(&c, "spinenet-mobile-49xs");
    c.head = SN_HEAD_CLASSIFIER;
    c.num_classes = 5;
    sn_model *m = NULL;
    if (sn_model_create(&c, 1, &m) != SN_OK) return NULL;
    golden_fill_params(m, 42);
    sn_model_set_threads(m, 1);
    if (sn_model_plan_train(m, n, size, size) != SN_OK) {
        sn_model_free(m);
        return NULL;
    }
    return m;
}

static void test_hook_and_sync(void) {
    const int n = 2, size = 128;
    sn_model *m = small_classifier(n, size);
    CHECK(m != NULL, "model: %s", sn_last_error());
    if (!m) return;
    const size_t count = (size_t)n * size * size * 3;
    float *x = malloc(count * sizeof *x);
    sn_hash_fill(x, count, "input", 3, -1, 1);
    const int32_t labels[2] = {1, 4};
    sn_graph *g = sn_model_part_graph(m, 0);
    CHECK(g->grads_ready == NULL, "a fresh plan has a hook");

    /* The hook: every node but the input, from the last (the logits) down to 0, once each. */
    hook_log h = {calloc((size_t)g->n + 1, sizeof(int)), 0, g->n + 1, -1};
    g->grads_ready = record;
    g->grads_ready_ctx = &h;
    float **plain = tm_grads_new(m);
    double loss = 0.0;
    CHECK_OK(sn_model_loss_grad(m, x, labels, 0.1f, 7, &loss, plain));
    int expect = 0;
    for (int i = g->n - 1; i >= 0; i--) expect += g->nodes[i].op != SN_OP_INPUT;
    CHECK(h.n == expect, "hook called %d times, expected %d", h.n, expect);
    int ok = 1, j = 0;
    for (int i = g->n - 1; i >= 0 && ok; i--) {
        if (g->nodes[i].op == SN_OP_INPUT) continue;
        ok = j < h.n && h.seen[j] == i;
        j++;
    }
    CHECK(ok, "hook order: call %d got node %d", j - 1, j - 1 < h.n ? h.seen[j - 1] : -1);

    /* A failing hook stops the backward with its status. */
    const int stop = g->n / 2;
    h.n = 0;
    h.fail_at = stop;
    float **scratch = tm_grads_new(m);
    CHECK(sn_model_loss_grad(m, x, labels, 0.1f, 7, &loss, scratch) == SN_ERR_IO,
          "a failing hook did not stop the backward");
    CHECK(h.n > 0 && h.seen[h.n - 1] == stop, "the backward went on after node %d", stop);
    CHECK(strstr(sn_last_error(), "hook: stop") != NULL, "message: %s", sn_last_error());
    g->grads_ready = NULL;
    g->grads_ready_ctx = NULL;

    /* One process: grad_sync installs nothing and only scales. */
    sn_grad_sync *s = NULL;
    CHECK_OK(sn_grad_sync_create(m, scratch, 1 << 16, &s));
    if (s) {
        CHECK(g->grads_ready == NULL, "one process: a hook was installed");
        tm_buffers_zero(m, scratch);
        sn_grad_sync_begin(s);
        CHECK_OK(sn_model_loss_grad(m, x, labels, 0.1f, 7, &loss, scratch));
        sn_grad_sync_stats stats;
        CHECK_OK(sn_grad_sync_end(s, 0.5f, &stats));
        CHECK(stats.buckets == 0 && stats.bytes == 0.0 && stats.comm_s == 0.0 &&
              stats.wait_s == 0.0, "one process: stats %d buckets %g bytes", stats.buckets,
              stats.bytes);
        int same = 1, nonzero = 0;
        for (int i = 0; i < sn_model_num_params(m) && same; i++) {
            sn_param p;
            sn_model_param_at(m, i, &p);
            for (size_t e = 0; e < p.count; e++) {
                same &= scratch[i][e] == 0.5f * plain[i][e];
                nonzero |= plain[i][e] != 0.0f;
            }
            if (!same) fprintf(stderr, "parameter %s differs\n", p.name);
        }
        CHECK(same && nonzero, "one process: the gradients are not the plain ones scaled");
        /* Scale 1 leaves them bit for bit. */
        sn_grad_sync_begin(s);
        tm_buffers_zero(m, scratch);
        CHECK_OK(sn_model_loss_grad(m, x, labels, 0.1f, 7, &loss, scratch));
        CHECK_OK(sn_grad_sync_end(s, 1.0f, NULL));
        for (int i = 0; i < sn_model_num_params(m) && same; i++) {
            sn_param p;
            sn_model_param_at(m, i, &p);
            same = memcmp(scratch[i], plain[i], p.count * sizeof(float)) == 0;
        }
        CHECK(same, "one process, scale 1: the gradients changed");
        sn_grad_sync_free(s);
    }
    sn_grad_sync_free(NULL);
    /* Before a training plan: refused. */
    sn_model *bare = NULL;
    sn_config c;
    sn_config_init(&c, "spinenet-mobile-49xs");
    c.head = SN_HEAD_CLASSIFIER;
    c.num_classes = 5;
    if (sn_model_create(&c, 1, &bare) == SN_OK) {
        CHECK(sn_grad_sync_create(bare, scratch, 1 << 16, &s) == SN_ERR_STATE && s == NULL,
              "grad_sync on a model not planned for training");
        sn_model_free(bare);
    }
    tm_buffers_free(m, scratch);
    tm_buffers_free(m, plain);
    free(h.seen);
    free(x);
    sn_model_free(m);
}

int main(void) {
    test_collectives();
    test_hook_and_sync();
    return TEST_SUMMARY();
}
