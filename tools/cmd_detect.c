/* spinenet detect: a RetinaNet detector over images; the detections printed, drawn into
 * OUTDIR/<name>.det.png and listed in OUTDIR/<name>.det.json. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli.h"
#include "core.h"
#include "data.h"
#include "det_train.h"
#include "draw.h"

typedef struct {
    const char *weights, *out;
    int size, threads;
    double agnostic_nms, score;
} opts;

static const opts k_defaults = {.threads = 1, .score = 0.3};

static const cli_image_model k_model = {"detect", SN_HEAD_RETINANET,
                                        "%s: not a detector (the RetinaNet head)"};

static const cli_flag k_flags[] = {
    FSTR("--weights", "FILE", weights, "the RetinaNet detector (a spinenet safetensors file)",
         "required"),
    FOUT("OUTDIR", "folder of <name>.det.png and .det.json (created if missing)", "."),
    CLI_RUN_SIZE_FLAG,
    FNUM("--agnostic-nms", "IOU", agnostic_nms, 0.0, 1.0,
         "after the per-class NMS, drop a detection whose box overlaps a better one of any class "
         "by IoU > IOU (one label per object; 0: off, the official output)", "0"),
    FNUM("--score", "T", score, 0.0, 1.0,
         "lowest score printed and drawn (the .det.json lists every detection >= 0.05)", NULL),
    CLI_THREADS_FLAG,
};

/* The file name of a path without its folder and extension, for output names. */
static void stem_of(const char *path, char *out, size_t n) {
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(out, n, "%s", b);
    char *dot = strrchr(out, '.');
    if (dot && dot != out) *dot = 0;
}

/* Detections of one image: printed, drawn into OUTDIR/<name>.det.png, listed in
 * OUTDIR/<name>.det.json. */
static sn_status detect_one(sn_model *m, sn_det_head *h, const sn_det_params *p, int size,
                            float *canvas, sn_detections *d, const char *path, const opts *o) {
    sn_image img;
    sn_status st = sn_image_load(path, &img);
    if (st != SN_OK) return st;
    sn_det_xform xf;
    if ((st = sn_det_plan(img.height, img.width, size, 0, NULL, NULL, &xf)) != SN_OK ||
        (st = sn_det_render(&img, &xf, h->canvas, canvas)) != SN_OK ||
        (st = sn_model_run(m, canvas)) != SN_OK || (st = sn_det_detect(m, h, p, 0, d)) != SN_OK ||
        (o->agnostic_nms > 0 &&
         (st = sn_detections_suppress_overlaps(d, (float)o->agnostic_nms)) != SN_OK)) {
        sn_image_free(&img);
        return st;
    }
    const char *dir = o->out ? o->out : ".";
    char stem[512], png[2048], js[2048];
    stem_of(path, stem, sizeof stem);
    snprintf(png, sizeof png, "%s/%s.det.png", dir, stem);
    snprintf(js, sizeof js, "%s/%s.det.json", dir, stem);
    json_t *list = json_array();
    int shown = 0;
    const int scale = img.width >= 480 ? 2 : 1, thick = img.width >= 480 ? 3 : 2;
    printf("%s (%dx%d):\n", path, img.width, img.height);
    /* Boxes weakest first, so the strongest end up on top; then labels strongest first, each
     * moved below the labels already drawn where they would cover one. */
    for (int k = d->count - 1; k >= 0; k--) {
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        char cls[64];
        snprintf(cls, sizeof cls, "%s", name && name[0] ? name : "class");
        if (!name || !name[0]) snprintf(cls, sizeof cls, "class %d", (int)d->classes[k]);
        json_array_insert_new(list, 0, json_pack("{s:i, s:s, s:[f,f,f,f], s:f}", "class",
                                                 (int)d->classes[k], "name", cls, "bbox",
                                                 (double)ob[1], (double)ob[0],
                                                 (double)(ob[3] - ob[1]), (double)(ob[2] - ob[0]),
                                                 "score", (double)d->scores[k]));
        if (d->scores[k] < o->score) continue;
        uint8_t col[3];
        sn_draw_class_colour(d->classes[k], col);
        sn_draw_box(&img, (int)ob[1], (int)ob[0], (int)ob[3], (int)ob[2], thick, col);
    }
    int placed[128][4], n_placed = 0;
    for (int k = 0; k < d->count; k++) {
        if (d->scores[k] < o->score) continue;
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        uint8_t col[3], black[3] = {0, 0, 0};
        sn_draw_class_colour(d->classes[k], col);
        char label[96];
        snprintf(label, sizeof label, "%s %.2f", name && name[0] ? name : "class", d->scores[k]);
        sn_draw_label_avoid(&img, (int)ob[1], (int)ob[0], label, scale, col, black, placed,
                            &n_placed, 128);
        printf("  %-16s %.3f  x %.1f y %.1f w %.1f h %.1f\n", name && name[0] ? name : "?",
               d->scores[k], ob[1], ob[0], ob[3] - ob[1], ob[2] - ob[0]);
        shown++;
    }
    printf("  %d detection%s at score >= %.2f (%d in %s)\n", shown, shown == 1 ? "" : "s",
           o->score, d->count, js);
    st = sn_image_save_png(&img, png);
    sn_image_free(&img);
    json_t *root = json_pack("{s:s, s:i, s:i, s:o}", "image", path, "width", xf.orig_w, "height",
                             xf.orig_h, "detections", list);
    if (st == SN_OK && (!root || json_dump_file(root, js, JSON_INDENT(1)) != 0))
        st = sn_error(SN_ERR_IO, "%s: cannot write", js);
    json_decref(root);
    if (st == SN_OK) printf("  wrote %s\n", png);
    return st;
}

static int run(const void *options, const char *const *files, int n_files) {
    const opts *o = options;
    if (!o->weights) return usage_error("%s", "detect needs --weights FILE (a RetinaNet detector)");
    if (n_files == 0) return usage_error("%s", "detect needs at least one image file");
    if (o->out && need_out(o->out, 1, "-o")) return 1;
    cli_images im;
    if (open_images(&k_model, o->weights, files, n_files, &im)) return 1;
    sn_model *m = im.model;
    const sn_config *c = sn_model_config(m);
    const int size = o->size ? o->size : c->input_size, canvas = sn_det_canvas_size(size);
    sn_det_head h;
    sn_det_params p;
    sn_det_params_init(&p);
    sn_detections d = {0};
    d.capacity = p.max_detections;
    float *img = malloc(sizeof(float) * (size_t)canvas * canvas * 3);
    d.boxes = malloc(sizeof(float) * 4 * (size_t)d.capacity);
    d.scores = malloc(sizeof(float) * (size_t)d.capacity);
    d.classes = malloc(sizeof(int32_t) * (size_t)d.capacity);
    int failed = im.missing;
    if (!img || !d.boxes || !d.scores || !d.classes || sn_model_set_threads(m, o->threads) != SN_OK ||
        sn_model_plan(m, 1, canvas, canvas) != SN_OK ||
        sn_det_head_init(&h, m, canvas, 0, 0) != SN_OK) {
        fail_status();
        failed = -1;
    }
    if (o->out && failed >= 0) {
        if (sn_make_dirs(o->out) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed = -1;
        }
    }
    for (int i = 0; failed >= 0 && i < n_files; i++)
        if (!im.skip[i] && detect_one(m, &h, &p, size, img, &d, files[i], o) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed++;
        }
    if (failed >= 0) sn_det_head_free(&h);
    free(img);
    free(d.boxes);
    free(d.scores);
    free(d.classes);
    close_images(&im);
    return failed != 0;
}

const cli_command cmd_detect = {
    .name = "detect",
    .summary = "boxes, classes and scores in images with a detector: --weights W IMAGE...",
    .usage = "spinenet detect --weights FILE [--score T] [-o OUTDIR] IMAGE...",
    .about = "Runs a RetinaNet detector on each image (JPEG or PNG), prints the detections "
             "scoring --score or more, draws them into OUTDIR/<name>.det.png (boxes, class "
             "names, scores) and lists every detection (score >= 0.05) in "
             "OUTDIR/<name>.det.json.",
    .examples = "spinenet detect --weights run/best.safetensors --size 256 fd/val/000001.png "
                "-o shots\n"
                "spinenet detect --weights run/best.safetensors --score 0.5 *.jpg",
    /* At least one, which run checks after --weights (so that message comes first). */
    CLI_PARTS(CLI_POS_LIST),
};
