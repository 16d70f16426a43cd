/* spinenet classify: the top-k classes of images with a classifier; an unreadable image is
 * reported and the others still run. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "cli.h"
#include "data.h"

typedef struct {
    const char *weights;
    int size, top, threads;
} opts;

static const opts k_defaults = {.top = 5, .threads = 1};

static const cli_image_model k_model = {"classify", SN_HEAD_CLASSIFIER,
                                        "%s: not a classifier (head is not 'classifier')"};

static const cli_flag k_flags[] = {
    FSTR("--weights", "FILE", weights, "the classifier (a spinenet safetensors file)", "required"),
    CLI_RUN_SIZE_FLAG,
    FINT("--top", "K", top, 1, 100000, "classes printed per image", NULL),
    CLI_THREADS_FLAG,
};

static int run(const void *options, const char *const *files, int n_files) {
    const opts *o = options;
    if (!o->weights) return usage_error("%s", "classify needs --weights FILE (a classifier)");
    if (n_files == 0) return usage_error("%s", "classify needs at least one image file");
    cli_images im;
    if (open_images(&k_model, o->weights, files, n_files, &im)) return 1;
    sn_model *m = im.model;
    const sn_config *c = sn_model_config(m);
    int failed = im.missing;
    int s = o->size ? o->size : c->input_size;
    sn_status st;
    if ((st = sn_model_set_threads(m, o->threads)) != SN_OK ||
        (st = sn_model_plan(m, 1, s, s)) != SN_OK) {
        close_images(&im);
        return fail_flags(st); /* a --size the model cannot take: 2 */
    }
    float *x = malloc((size_t)s * s * 3 * sizeof *x);
    int *order = malloc((size_t)c->num_classes * sizeof *order);
    double *prob = malloc((size_t)c->num_classes * sizeof *prob);
    if (!x || !order || !prob) failed = die("%s", "classify: out of memory");
    for (int f = 0; f < n_files && x && order && prob; f++) {
        if (im.skip[f]) continue;
        sn_image img = {0};
        sn_aug_params aug;
        sn_aug_defaults(&aug);
        sn_output out;
        if (sn_image_load(files[f], &img) != SN_OK ||
            sn_crop_resize_normalize(&img, sn_crop_eval(img.width, img.height, &aug), s, s, x) != SN_OK ||
            sn_model_run(m, x) != SN_OK || sn_model_output(m, "logits", &out) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            sn_image_free(&img);
            failed++;
            continue;
        }
        sn_image_free(&img);
        double mx = out.data[0], sum = 0;
        for (int k = 1; k < out.c; k++) mx = out.data[k] > mx ? out.data[k] : mx;
        for (int k = 0; k < out.c; k++) sum += prob[k] = exp(out.data[k] - mx);
        for (int k = 0; k < out.c; k++) {
            prob[k] /= sum;
            order[k] = k;
        }
        int top = o->top < out.c ? o->top : out.c;
        for (int a = 0; a < top; a++) /* partial selection sort: k is small */
            for (int b = a + 1; b < out.c; b++)
                if (prob[order[b]] > prob[order[a]]) {
                    int t = order[a];
                    order[a] = order[b];
                    order[b] = t;
                }
        printf("%s:", files[f]);
        for (int a = 0; a < top; a++) {
            const char *name = sn_model_class_name(m, order[a]);
            if (name)
                printf(" %s %.4f%s", name, prob[order[a]], a + 1 < top ? "," : "");
            else
                printf(" class %d %.4f%s", order[a], prob[order[a]], a + 1 < top ? "," : "");
        }
        printf("\n");
    }
    free(x);
    free(order);
    free(prob);
    close_images(&im);
    return failed ? 1 : 0;
}

const cli_command cmd_classify = {
    .name = "classify",
    .summary = "top-k classes of images with a classifier: --weights W IMAGE...",
    .usage = "spinenet classify --weights FILE [--top K] [--size S] IMAGE...",
    .about = "The top-k classes of each image (JPEG or PNG; the whole image resized to S x S "
             "and normalised with the ImageNet mean and standard deviation, as in training's "
             "evaluation) with their probabilities. An unreadable image "
             "is reported and the others still run (the exit status is then 1).",
    .examples = "spinenet classify --weights runs/fm/best.safetensors shirt.png\n"
                "spinenet classify --weights runs/fm/best.safetensors --top 2 a.jpg b.png",
    /* At least one, which run checks after --weights (so that message comes first). */
    CLI_PARTS(CLI_POS_LIST),
};
