/* The TF1 (tpu) checkpoint names of src/models/tf_names_tpu.c.
 *
 * 1. SpineNet-49S RetinaNet, tpu flavour, 256 endpoint filters (4 x 128 head, 91 classes, 9
 *    anchors: the variant's defaults), against the variables of a real TF1 training checkpoint
 *    (tests/data/tf/spinenet-49s-tf1-names.txt, read from its index; optimizer slots left out):
 *    every model tensor names a distinct variable of the same shape, every variable but
 *    global_step is named. With ema, the trainable ones get "/ExponentialMovingAverage".
 * 2. Mobile SpineNet-49 RetinaNet (separable head), SpineNet-49S with 2 block repeats and a
 *    classifier: names unique and well-formed, and spot checks of the rules in tf_names_tpu.c
 *    (these follow the official code, no real file).
 * 3. What the TF1 code cannot make is refused with SN_ERR_UNSUPPORTED. */
#include <string.h>

#include "core.h"
#include "model.h"
#include "test.h"
#include "tf_names.h"

typedef struct {
    char name[256];
    int ndim;
    long long shape[4];
    int used;
} ref_var;

static int load_ref(const char *path, ref_var **out) {
    FILE *f = fopen(path, "r");
    if (!f) {
        perror(path);
        return -1;
    }
    int cap = 1024, n = 0;
    ref_var *v = calloc((size_t)cap, sizeof *v);
    char line[512];
    while (v && fgets(line, sizeof line, f)) {
        if (line[0] == '#' || line[0] == '\n') continue;
        char name[256], dtype[32], shape[128];
        if (sscanf(line, "%255s %31s %127s", name, dtype, shape) != 3 || n == cap) {
            fprintf(stderr, "%s: bad line: %s", path, line);
            free(v);
            v = NULL;
            break;
        }
        ref_var *r = &v[n++];
        snprintf(r->name, sizeof r->name, "%s", name);
        if (strcmp(shape, "-") != 0) {
            char *p = shape;
            while (*p && r->ndim < 4) {
                r->shape[r->ndim++] = strtoll(p, &p, 10);
                if (*p == ',') p++;
            }
        }
    }
    fclose(f);
    *out = v;
    return v ? n : -1;
}

static int well_formed(const char *s) {
    if (!*s || s[0] == '/' || s[strlen(s) - 1] == '/' || strstr(s, "//")) return 0;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
              *p == '_' || *p == '/' || *p == '-'))
            return 0;
    return 1;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Names unique and well-formed, one per parameter, in params order; returns the count. */
static int check_names(const sn_model *m, const sn_tf_names *t, const char *what) {
    CHECK(t->n == m->params.n, "%s: %d names for %d parameters", what, t->n, m->params.n);
    if (t->n != m->params.n) return 0;
    const char **s = malloc((size_t)t->n * sizeof *s);
    int bad = 0;
    for (int i = 0; i < t->n; i++) {
        if (strcmp(t->v[i].model, m->params.t[i].name) != 0 || !well_formed(t->v[i].tf)) {
            if (bad++ < 5)
                fprintf(stderr, "%s: %s -> '%s'\n", what, t->v[i].model, t->v[i].tf);
        }
        s[i] = t->v[i].tf;
    }
    CHECK(bad == 0, "%s: %d names out of order or malformed", what, bad);
    qsort(s, (size_t)t->n, sizeof *s, cmp_str);
    int dup = 0;
    for (int i = 1; i < t->n; i++)
        if (strcmp(s[i - 1], s[i]) == 0 && dup++ < 5)
            fprintf(stderr, "%s: twice: %s\n", what, s[i]);
    CHECK(dup == 0, "%s: %d duplicate names", what, dup);
    free(s);
    return t->n;
}

static const char *tf_of(const sn_tf_names *t, const char *model) {
    for (int i = 0; i < t->n; i++)
        if (strcmp(t->v[i].model, model) == 0) return t->v[i].tf;
    return "(none)";
}

#define EXPECT(t, model, want)                                                                 \
    do {                                                                                       \
        const char *got_ = tf_of(t, model);                                                    \
        CHECK(strcmp(got_, want) == 0, "%s -> %s, want %s", model, got_, want);                \
    } while (0)

static sn_model *make(const char *variant, sn_flavour fl, sn_head head, int endpoints,
                      int repeats) {
    sn_config c;
    if (sn_config_init(&c, variant) != SN_OK) return NULL;
    c.flavour = fl;
    c.head = head;
    if (endpoints) c.endpoints_filters = endpoints;
    if (repeats) c.block_repeats = repeats;
    sn_model *m = NULL;
    sn_status st = sn_model_create_uninit(&c, &m);
    CHECK(st == SN_OK, "create %s: %s", variant, sn_last_error());
    return st == SN_OK ? m : NULL;
}

static void test_49s_real(void) {
    char dir[900], path[1000];
    t_shared_dir(dir, sizeof dir);
    snprintf(path, sizeof path, "%s/data/tf/spinenet-49s-tf1-names.txt", dir);
    ref_var *ref = NULL;
    int n_ref = load_ref(path, &ref);
    CHECK(n_ref > 0, "read %s", path);
    if (n_ref <= 0) return;
    sn_model *m = make("spinenet-49s", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 256, 0);
    if (!m) {
        free(ref);
        return;
    }
    CHECK(m->cfg.head_convs == 4 && m->cfg.head_filters == 128 && m->cfg.num_classes == 91,
          "49S defaults: head %d x %d, %d classes", m->cfg.head_convs, m->cfg.head_filters,
          m->cfg.num_classes);
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    check_names(m, &t, "49S");
    int matched = 0, missing = 0, shape_bad = 0, twice = 0;
    for (int i = 0; i < t.n; i++) {
        const sn_tensor_param *p = &m->params.t[i];
        ref_var *r = NULL;
        for (int k = 0; k < n_ref && !r; k++)
            if (strcmp(ref[k].name, t.v[i].tf) == 0) r = &ref[k];
        if (!r) {
            if (missing++ < 10)
                fprintf(stderr, "49S: %s -> %s: not in the index\n", p->name, t.v[i].tf);
            continue;
        }
        if (r->used++) twice++;
        long long want[4] = {0};
        for (int d = 0; d < p->ndim; d++) want[d] = p->shape[d];
        size_t len = strlen(r->name);
        if (p->ndim == 4 && len > 16 && strcmp(r->name + len - 16, "depthwise_kernel") == 0) {
            long long tmp = want[2]; /* [3,3,1,C] here, [3,3,C,1] in TF */
            want[2] = want[3];
            want[3] = tmp;
        }
        int same = r->ndim == p->ndim;
        for (int d = 0; same && d < p->ndim; d++) same = r->shape[d] == want[d];
        if (!same) {
            if (shape_bad++ < 10)
                fprintf(stderr, "49S: %s -> %s: shape differs\n", p->name, r->name);
            continue;
        }
        matched++;
    }
    int n_vars = 0, uncovered = 0;
    for (int k = 0; k < n_ref; k++) {
        if (strcmp(ref[k].name, "global_step") == 0) continue;
        n_vars++;
        if (!ref[k].used && uncovered++ < 10)
            fprintf(stderr, "49S: index variable %s has no model tensor\n", ref[k].name);
    }
    printf("spinenet-49s tpu retinanet (endpoints 256): %d model tensors, %d index variables "
           "(without global_step and optimizer slots); %d matched by name and shape, %d model "
           "tensors not in the index, %d of another shape, %d index variables not covered\n",
           t.n, n_vars, matched, missing, shape_bad, uncovered);
    CHECK(matched == t.n && missing == 0 && shape_bad == 0 && twice == 0,
          "49S: %d of %d matched (%d missing, %d shape, %d twice)", matched, t.n, missing,
          shape_bad, twice);
    CHECK(uncovered == 0 && n_vars == t.n, "49S: %d index variables not covered (%d vs %d)",
          uncovered, n_vars, t.n);
    EXPECT(&t, "stem.weight", "spinenet/conv2d/kernel");
    EXPECT(&t, "blocks.0.0.proj.weight", "spinenet/conv2d_1/kernel");
    EXPECT(&t, "endpoints.3.weight", "spinenet/conv2d_8/kernel");
    EXPECT(&t, "blocks.2.resample0.reduce.bn.mean",
           "spinenet/sub_policy0/resample_with_alpha_resample_0_0/batch_normalization/moving_mean");
    EXPECT(&t, "head.class.conv0.bn_l3.var", "retinanet/class_net/class-0-3/moving_variance");

    /* The moving-average shadows. */
    sn_tf_names e;
    CHECK_OK(sn_tf_names_make(m, 1, &e));
    int ema_bad = 0;
    for (int i = 0; i < e.n && i < t.n; i++) {
        const char *base = t.v[i].tf, *sh = e.v[i].tf;
        size_t bl = strlen(base);
        int stat = strstr(base, "/moving_") != NULL;
        int ok = stat ? strcmp(base, sh) == 0
                      : strncmp(base, sh, bl) == 0 &&
                            strcmp(sh + bl, "/ExponentialMovingAverage") == 0;
        if (!ok && ema_bad++ < 5) fprintf(stderr, "ema: %s -> %s\n", base, sh);
    }
    CHECK(e.n == t.n && ema_bad == 0, "ema names: %d bad", ema_bad);
    sn_tf_names_free(&e);
    sn_tf_names_free(&t);
    sn_model_free(m);
    free(ref);
}

static void test_mobile(void) {
    sn_model *m = make("spinenet-mobile-49", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 0, 0);
    if (!m) return;
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    int n = check_names(m, &t, "mobile-49");
    printf("spinenet-mobile-49 tpu retinanet: %d names, unique and well-formed\n", n);
    EXPECT(&t, "stem.weight", "spinenet_mbconv/conv2d/kernel");
    EXPECT(&t, "stem.bn.gamma", "spinenet_mbconv/batch_normalization/gamma");
    EXPECT(&t, "blocks.0.0.expand.weight", "spinenet_mbconv/conv2d_1/kernel");
    EXPECT(&t, "blocks.0.0.dw.weight", "spinenet_mbconv/depthwise_conv2d/depthwise_kernel");
    EXPECT(&t, "blocks.0.0.dw.bn.beta", "spinenet_mbconv/batch_normalization_2/beta");
    EXPECT(&t, "blocks.0.0.se_reduce.weight", "spinenet_mbconv/conv2d_2/kernel");
    EXPECT(&t, "blocks.0.0.se_reduce.bias", "spinenet_mbconv/conv2d_2/bias");
    EXPECT(&t, "blocks.0.0.se_expand.bias", "spinenet_mbconv/conv2d_3/bias");
    EXPECT(&t, "blocks.0.0.project.weight", "spinenet_mbconv/conv2d_4/kernel");
    EXPECT(&t, "blocks.0.0.project.bn.var",
           "spinenet_mbconv/batch_normalization_3/moving_variance");
    EXPECT(&t, "blocks.1.0.dw.weight", "spinenet_mbconv/depthwise_conv2d_1/depthwise_kernel");
    /* 10 backbone convs before the endpoints: stem + 2 x (expand, se x 2, project). */
    EXPECT(&t, "endpoints.3.weight", "spinenet_mbconv/conv2d_9/kernel");
    EXPECT(&t, "endpoints.7.bn.mean", "spinenet_mbconv/batch_normalization_11/moving_mean");
    /* Row 2 (level 4) from feature 1 (level 2): two halvings. */
    EXPECT(&t, "blocks.4.resample0.down1.weight",
           "spinenet_mbconv/sub_policy2/resample_with_sepconv_resample_2_0/depthwise_conv2d_1/"
           "depthwise_kernel");
    EXPECT(&t, "blocks.4.resample0.project.weight",
           "spinenet_mbconv/sub_policy2/resample_with_sepconv_resample_2_0/conv2d/kernel");
    EXPECT(&t, "blocks.4.resample0.project.bn.gamma",
           "spinenet_mbconv/sub_policy2/resample_with_sepconv_resample_2_0/"
           "batch_normalization_2/gamma");
    EXPECT(&t, "blocks.4.0.se_expand.weight",
           "spinenet_mbconv/sub_policy2/scale_permuted_block_4/conv2d_2/kernel");
    EXPECT(&t, "head.class.conv0.dw.weight", "retinanet/class_net/class-0/depthwise_kernel");
    EXPECT(&t, "head.class.conv0.weight", "retinanet/class_net/class-0/pointwise_kernel");
    EXPECT(&t, "head.box.pred.bias", "retinanet/box_net/box-predict/bias");
    EXPECT(&t, "head.box.conv3.bn_l7.beta", "retinanet/box_net/box-3-7/beta");
    sn_tf_names_free(&t);
    sn_model_free(m);

    /* Mobile-49S: this project scales filters by int(), the TF1 code by round_filters(). */
    m = make("spinenet-mobile-49s", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 0, 0);
    if (!m) return;
    sn_status st = sn_tf_names_make(m, 0, &t);
    CHECK(st == SN_ERR_UNSUPPORTED && t.n == 0 && t.v == NULL, "mobile-49s: %s",
          sn_status_name(st));
    printf("mobile-49s refused: %s\n", sn_last_error());
    sn_model_free(m);
}

static void test_repeats_and_classifier(void) {
    sn_model *m = make("spinenet-49s", SN_FLAVOUR_TPU, SN_HEAD_RETINANET, 0, 2);
    if (!m) return;
    sn_tf_names t;
    CHECK_OK(sn_tf_names_make(m, 0, &t));
    int n = check_names(m, &t, "49S x2");
    printf("spinenet-49s tpu, block_repeats 2: %d names, unique and well-formed\n", n);
    /* Repeat 1 of stem group 0 continues the numbers: proj, conv1-3 of repeat 0 are
     * conv2d_1..4. */
    EXPECT(&t, "blocks.0.1.conv1.weight", "spinenet/conv2d_5/kernel");
    EXPECT(&t, "blocks.2.1.conv3.bn.beta",
           "spinenet/sub_policy0/scale_permuted_block_2/batch_normalization_5/beta");
    sn_tf_names_free(&t);
    sn_model_free(m);

    m = make("spinenet-49s", SN_FLAVOUR_TPU, SN_HEAD_CLASSIFIER, 0, 0);
    if (!m) return;
    CHECK_OK(sn_tf_names_make(m, 1, &t));
    n = check_names(m, &t, "49S classifier");
    printf("spinenet-49s tpu classifier: %d names, unique and well-formed\n", n);
    EXPECT(&t, "head.fc.weight", "classification_head/dense/kernel/ExponentialMovingAverage");
    EXPECT(&t, "head.fc.bias", "classification_head/dense/bias/ExponentialMovingAverage");
    EXPECT(&t, "endpoints.7.bn.var", "spinenet/batch_normalization_12/moving_variance");
    sn_tf_names_free(&t);

    /* A table that is not the TF1 code's. */
    int old = m->specs[3].parents[1];
    m->specs[3].parents[1] = 3;
    sn_status st = sn_tf_names_tpu(m, 0, &t);
    CHECK(st == SN_ERR_UNSUPPORTED && t.n == 0, "other table: %s", sn_status_name(st));
    m->specs[3].parents[1] = old;
    sn_model_free(m);
}

static void test_refused(void) {
    sn_tf_names t;
    /* Levels 4..7: the level-3 output row then feeds nothing here; the TF1 code refuses an
     * output row outside min_level..max_level. */
    sn_config c;
    CHECK_OK(sn_config_init(&c, "spinenet-49s"));
    c.flavour = SN_FLAVOUR_TPU;
    c.min_level = 4;
    sn_model *m = NULL;
    CHECK_OK(sn_model_create_uninit(&c, &m));
    if (m) {
        sn_status st = sn_tf_names_make(m, 0, &t);
        CHECK(st == SN_ERR_UNSUPPORTED && t.n == 0, "min_level 4: %s", sn_status_name(st));
        sn_model_free(m);
    }
    /* A garden model through the tpu scheme directly. */
    m = make("spinenet-49s", SN_FLAVOUR_GARDEN, SN_HEAD_NONE, 0, 0);
    if (m) {
        sn_status st = sn_tf_names_tpu(m, 0, &t);
        CHECK(st == SN_ERR_UNSUPPORTED && t.n == 0, "garden via tpu: %s", sn_status_name(st));
        sn_model_free(m);
    }
    CHECK(sn_tf_names_make(NULL, 0, &t) == SN_ERR_INVALID_ARG, "NULL model");
    sn_tf_names_free(NULL);
}

int main(void) {
    test_49s_real();
    test_mobile();
    test_repeats_and_classifier();
    test_refused();
    return TEST_SUMMARY();
}
