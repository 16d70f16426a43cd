/* The reference side of tests/onnx_test.sh: spinenet's own outputs for a fixed input.
 *   onnx_ref IN.safetensors OUT.safetensors BATCH HEIGHT WIDTH DIR
 * Loads IN, gives its batch-norms random statistics (gamma, beta, mean, var) and scales up
 * predictor kernels that are all tiny (RetinaNet's N(0, 1e-5) ones), so that folding and every
 * layer show in the outputs; saves that model as OUT (the file the test exports). Then runs it on
 * a seeded input and writes, in DIR: input.bin (the input, NCHW float32), outputs.txt (one line
 * per output in sn_model_output_at's order: name n c h w) and <name>.bin (each output, NCHW
 * float32, host byte order). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "spinenet.h"

static int ends_with(const char *s, const char *suffix) {
    const size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* x[n][h][w][c] -> y[n][c][h][w] */
static void to_nchw(const float *x, int n, int h, int w, int c, float *y) {
    for (int b = 0; b < n; b++)
        for (int i = 0; i < h; i++)
            for (int j = 0; j < w; j++)
                for (int k = 0; k < c; k++)
                    y[(((size_t)b * c + k) * h + i) * w + j] = x[(((size_t)b * h + i) * w + j) * c + k];
}

static int write_floats(const char *dir, const char *name, const float *x, size_t count) {
    char path[2048];
    snprintf(path, sizeof path, "%s/%s.bin", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(x, sizeof *x, count, f) != count || fclose(f) != 0) {
        fprintf(stderr, "onnx_ref: cannot write %s\n", path);
        return 1;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: onnx_ref IN.safetensors OUT.safetensors BATCH HEIGHT WIDTH DIR\n");
        return 2;
    }
    const int n = atoi(argv[3]), h = atoi(argv[4]), w = atoi(argv[5]);
    const char *dir = argv[6];
    sn_model *m = NULL;
    if (sn_model_load(argv[1], &m) != SN_OK) {
        fprintf(stderr, "onnx_ref: %s\n", sn_last_error());
        return 1;
    }
    sn_rng r;
    sn_rng_seed(&r, 2020);
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        double lo = 0, hi = 0;
        if (ends_with(p.name, ".gamma") || ends_with(p.name, ".var"))
            lo = 0.5, hi = 1.5;
        else if (ends_with(p.name, ".beta") || ends_with(p.name, ".mean"))
            lo = -0.3, hi = 0.3;
        if (hi > lo) {
            for (size_t k = 0; k < p.count; k++)
                p.data[k] = (float)(lo + (hi - lo) * sn_rng_uniform(&r));
            continue;
        }
        float mx = 0;
        for (size_t k = 0; k < p.count; k++) mx = p.data[k] > mx ? p.data[k] : -p.data[k] > mx ? -p.data[k] : mx;
        if (ends_with(p.name, ".weight") && mx > 0 && mx < 1e-3f)
            for (size_t k = 0; k < p.count; k++) p.data[k] *= 1000.0f;
    }
    int rc = 1;
    float *x = malloc((size_t)n * h * w * 3 * sizeof *x), *t = NULL;
    FILE *list = NULL;
    char path[2048];
    snprintf(path, sizeof path, "%s/outputs.txt", dir);
    if (!x) goto done;
    for (size_t k = 0; k < (size_t)n * h * w * 3; k++) x[k] = (float)(4.0 * sn_rng_uniform(&r) - 2.0);
    if (sn_model_save(m, argv[2]) != SN_OK || sn_model_plan(m, n, h, w) != SN_OK ||
        sn_model_run(m, x) != SN_OK) {
        fprintf(stderr, "onnx_ref: %s\n", sn_last_error());
        goto done;
    }
    if (!(t = malloc((size_t)n * h * w * 3 * sizeof *t))) goto done;
    to_nchw(x, n, h, w, 3, t);
    if (write_floats(dir, "input", t, (size_t)n * h * w * 3)) goto done;
    free(t);
    t = NULL;
    if (!(list = fopen(path, "w"))) {
        fprintf(stderr, "onnx_ref: cannot write %s\n", path);
        goto done;
    }
    for (int i = 0; i < sn_model_num_outputs(m); i++) {
        sn_output o;
        sn_model_output_at(m, i, &o);
        const size_t count = (size_t)o.n * o.h * o.w * o.c;
        if (!(t = malloc(count * sizeof *t))) goto done;
        to_nchw(o.data, o.n, o.h, o.w, o.c, t);
        if (write_floats(dir, o.name, t, count)) goto done;
        free(t);
        t = NULL;
        fprintf(list, "%s %d %d %d %d\n", o.name, o.n, o.c, o.h, o.w);
    }
    rc = 0;
done:
    if (list && fclose(list) != 0) rc = 1;
    free(x);
    free(t);
    sn_model_free(m);
    return rc;
}
