/* spinenet detect: a RetinaNet detector over images and folders of images; the detections
 * printed, drawn into OUTDIR/<name>.det.png (.jpg for JPEG input), listed in
 * OUTDIR/<name>.det.json, and with --results gathered into one COCO results file. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "coco.h"
#include "core.h"
#include "data.h"
#include "det_train.h"
#include "draw.h"

typedef struct {
    const char *weights, *out, *results, *ann, *classes;
    int size, threads, no_draw, max_det;
    double agnostic_nms, score, nms_iou;
} opts;

static const opts k_defaults = {.threads = 1, .score = 0.3, .nms_iou = 0.5, .max_det = 100};

static const cli_image_model k_model = {"detect", SN_HEAD_RETINANET,
                                        "%s: not a detector (the RetinaNet head)"};

static const cli_flag k_flags[] = {
    FSTR("--weights", "FILE", weights, "the RetinaNet detector (a spinenet safetensors file)",
         "required"),
    FOUT("OUTDIR", "folder of <name>.det.png (.jpg for JPEG input) and .det.json (created if "
         "missing)", "."),
    FSTR("--results", "FILE", results,
         "also write every detection of the run into one COCO results file (spinenet eval "
         "--gt ANN.json --dets FILE scores it); needs --ann", "none"),
    FSTR("--ann", "ANN.json", ann,
         "COCO instances file of the images: the image ids of --results, and the category_id "
         "of each detection, found by class name",
         "none: category_id is the head's class column (the dataset's id when its ids were "
         "COCO's 1..90)"),
    CLI_RUN_SIZE_FLAG,
    FNUM("--nms-iou", "IOU", nms_iou, 0.0, 1.0,
         "per-class NMS: drop a box that overlaps a better one of its class by IoU > IOU", NULL),
    FINT("--max-detections", "N", max_det, 1, 100000, "detections kept per image, best first",
         NULL),
    FSTR("--classes", "NAMES", classes,
         "keep only these classes: names of the model's classes, separated by commas (e.g. "
         "Coat,Bag)", "all"),
    FNUM("--agnostic-nms", "IOU", agnostic_nms, 0.0, 1.0,
         "after the per-class NMS, drop a detection whose box overlaps a better one of any class "
         "by IoU > IOU (one label per object; 0: off, the official output)", "0"),
    FNUM("--score", "T", score, 0.0, 1.0,
         "lowest score printed and drawn (the .det.json lists every detection >= 0.05)", NULL),
    FSWITCH("--no-draw", no_draw, "write no pictures, only the .det.json files (and --results)",
            "off"),
    CLI_THREADS_FLAG,
};

/* An input of the run: the image's path and its output name under OUTDIR, without the
 * .det.* ending (the file name without its extension; for an image found in a folder, its path
 * below that folder). */
typedef struct {
    char *path, *name;
} input;

typedef struct {
    input *v;
    int n, cap;
} input_list;

static int add_input(input_list *l, const char *path, const char *name) {
    if (l->n == l->cap) {
        const int nc = l->cap ? 2 * l->cap : 64;
        input *nv = realloc(l->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        l->v = nv;
        l->cap = nc;
    }
    input *in = &l->v[l->n];
    in->path = strdup(path);
    in->name = strdup(name);
    if (!in->path || !in->name) {
        free(in->path);
        free(in->name);
        return -1;
    }
    char *slash = strrchr(in->name, '/');
    char *dot = strrchr(in->name, '.');
    if (dot && dot != in->name && (!slash || dot > slash + 1)) *dot = 0;
    l->n++;
    return 0;
}

static void input_list_free(input_list *l) {
    for (int i = 0; i < l->n; i++) {
        free(l->v[i].path);
        free(l->v[i].name);
    }
    free(l->v);
}

static int is_image_name(const char *name) {
    const char *dot = strrchr(name, '.');
    return dot && (strcasecmp(dot, ".jpg") == 0 || strcasecmp(dot, ".jpeg") == 0 ||
                   strcasecmp(dot, ".png") == 0);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The JPEG and PNG files under dir (recursively, in name order, hidden entries skipped), each
 * named by its path below root. Non-zero after the error line. */
static int add_folder(input_list *l, const char *root, const char *rel) {
    char dir[SN_PATH_MAX];
    if (snprintf(dir, sizeof dir, "%s%s%s", root, rel[0] ? "/" : "", rel) >= (int)sizeof dir)
        return die("%s: path too long", root);
    DIR *d = opendir(dir);
    if (!d) return die("%s: cannot read the folder", dir);
    char **ents = NULL;
    int n = 0, cap = 0, rc = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **ne = realloc(ents, (size_t)cap * sizeof *ne);
            if (!ne) {
                rc = die("%s", "out of memory");
                break;
            }
            ents = ne;
        }
        if (!(ents[n] = strdup(e->d_name))) {
            rc = die("%s", "out of memory");
            break;
        }
        n++;
    }
    closedir(d);
    if (rc == 0) qsort(ents, (size_t)n, sizeof *ents, cmp_str);
    for (int i = 0; rc == 0 && i < n; i++) {
        char sub[SN_PATH_MAX], path[SN_PATH_MAX];
        if (snprintf(sub, sizeof sub, "%s%s%s", rel, rel[0] ? "/" : "", ents[i]) >=
                (int)sizeof sub ||
            snprintf(path, sizeof path, "%s/%s", dir, ents[i]) >= (int)sizeof path) {
            rc = die("%s: path too long", dir);
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) continue;
        if (S_ISDIR(sb.st_mode))
            rc = add_folder(l, root, sub);
        else if (S_ISREG(sb.st_mode) && is_image_name(ents[i]) && add_input(l, path, sub))
            rc = die("%s", "out of memory");
    }
    for (int i = 0; i < n; i++) free(ents[i]);
    free(ents);
    return rc;
}
/* The output names given so far in this run, so that two images with the same file name in
 * different folders (a/x.png b/x.png) get different ones instead of the second overwriting the
 * first. */
typedef struct {
    char **v;
    int n, cap;
} name_set;

static int name_used(const name_set *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (strcmp(s->v[i], name) == 0) return 1;
    return 0;
}

/* Makes stem unique in s, as stem-2, stem-3, ... (the first keeps its plain name), and records
 * it. 1 when it had to be renamed; -1 when out of memory (or of room in stem). */
static int claim_name(name_set *s, char *stem, size_t n) {
    int renamed = 0;
    if (name_used(s, stem)) {
        char base[512];
        snprintf(base, sizeof base, "%s", stem);
        for (int k = 2; name_used(s, stem); k++)
            if (snprintf(stem, n, "%s-%d", base, k) >= (int)n) return -1;
        renamed = 1;
    }
    if (s->n == s->cap) {
        const int nc = s->cap ? 2 * s->cap : 64;
        char **nv = realloc(s->v, (size_t)nc * sizeof *nv);
        if (!nv) return -1;
        s->v = nv;
        s->cap = nc;
    }
    if (!(s->v[s->n] = strdup(stem))) return -1;
    s->n++;
    return renamed;
}

static void name_set_free(name_set *s) {
    for (int i = 0; i < s->n; i++) free(s->v[i]);
    free(s->v);
}

/* What every image of a run uses. */
typedef struct {
    const opts *o;
    sn_model *m;
    sn_det_head h;
    sn_det_params p;
    int size;
    float *canvas;
    sn_detections d;
    name_set names;
    unsigned char *keep; /* [num_classes]: 1 for the columns --classes keeps */
    int *category;       /* [num_classes]: the category id written for a column */
    const sn_coco *ann;  /* --ann, or NULL */
    sn_coco_dets results;
} run_ctx;

/* The --ann image whose file_name is the end of path (after a '/'), or -1. */
static int ann_image(const sn_coco *c, const char *path) {
    const size_t n = strlen(path);
    for (int i = 0; i < c->num_images; i++) {
        const char *f = c->images[i].file_name;
        const size_t k = strlen(f);
        if (k <= n && strcmp(path + n - k, f) == 0 && (k == n || path[n - k - 1] == '/')) return i;
    }
    return -1;
}

/* Detections of one image: printed, drawn into OUTDIR/<name>.det.png (.jpg for a JPEG), listed in
 * OUTDIR/<name>.det.json, and added to the run's results. */
static sn_status detect_one(run_ctx *x, const input *in) {
    const opts *o = x->o;
    sn_model *m = x->m;
    sn_detections *d = &x->d;
    const char *path = in->path;
    int64_t image_id = 0;
    if (x->ann && o->results) {
        const int k = ann_image(x->ann, path);
        if (k < 0)
            return sn_error(SN_ERR_NOT_FOUND, "%s: not among the images of %s (--results takes "
                            "the image ids from it)", path, o->ann);
        image_id = x->ann->images[k].id;
    }
    sn_image img;
    sn_status st = sn_image_load(path, &img);
    if (st != SN_OK) return st;
    sn_det_xform xf;
    if ((st = sn_det_plan(img.height, img.width, x->size, 0, NULL, NULL, &xf)) != SN_OK ||
        (st = sn_det_render(&img, &xf, x->h.canvas, x->canvas)) != SN_OK ||
        (st = sn_model_run(m, x->canvas)) != SN_OK ||
        (st = sn_det_detect(m, &x->h, &x->p, 0, &xf, d)) != SN_OK) {
        sn_image_free(&img);
        return st;
    }
    if (x->keep) {
        /* --classes: the others left out, keeping the order. The generator kept every class's
         * survivors of its (class-aware) NMS, so the best --max-detections of the kept classes
         * are all here. */
        int n = 0;
        for (int k = 0; k < d->count && n < o->max_det; k++) {
            if (!x->keep[d->classes[k]]) continue;
            memmove(d->boxes + 4 * n, d->boxes + 4 * k, 4 * sizeof *d->boxes);
            d->scores[n] = d->scores[k];
            d->classes[n] = d->classes[k];
            n++;
        }
        d->count = n;
    }
    if (o->agnostic_nms > 0 &&
        (st = sn_detections_suppress_overlaps(d, (float)o->agnostic_nms)) != SN_OK) {
        sn_image_free(&img);
        return st;
    }
    const char *dir = o->out ? o->out : ".";
    char stem[512], first[512], pic[2048], js[2048];
    snprintf(stem, sizeof stem, "%s", in->name);
    snprintf(first, sizeof first, "%s", stem);
    const int renamed = claim_name(&x->names, stem, sizeof stem);
    if (renamed < 0) {
        sn_image_free(&img);
        return sn_error(SN_ERR_OOM, "%s: out of memory", path);
    }
    /* A JPEG photo's picture is a JPEG too (as PNG it would be several times larger). */
    const char *ext = strrchr(path, '.');
    const int jpeg = ext && (strcasecmp(ext, ".jpg") == 0 || strcasecmp(ext, ".jpeg") == 0);
    snprintf(pic, sizeof pic, "%s/%s.det.%s", dir, stem, jpeg ? "jpg" : "png");
    snprintf(js, sizeof js, "%s/%s.det.json", dir, stem);
    if (strchr(stem, '/')) { /* an image found in a subfolder: the same subfolder under OUTDIR */
        char sub[2048];
        snprintf(sub, sizeof sub, "%s", js);
        *strrchr(sub, '/') = 0;
        if ((st = sn_make_dirs(sub)) != SN_OK) {
            sn_image_free(&img);
            return st;
        }
    }
    /* Files of an earlier run are replaced, but not silently. */
    const int existed = (!o->no_draw && access(pic, F_OK) == 0) || access(js, F_OK) == 0;
    json_t *list = json_array();
    int shown = 0;
    const int scale = img.width >= 480 ? 2 : 1, thick = img.width >= 480 ? 3 : 2;
    printf("%s (%dx%d):\n", path, img.width, img.height);
    if (renamed)
        printf("  (%s/%s.det.* holds an earlier image of this run: writing %s/%s.det.*)\n", dir,
               first, dir, stem);
    /* Boxes weakest first, so the strongest end up on top; then labels strongest first, each
     * moved below the labels already drawn where they would cover one. */
    for (int k = d->count - 1; k >= 0; k--) {
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        char cls[64];
        snprintf(cls, sizeof cls, "%s", name && name[0] ? name : "class");
        if (!name || !name[0]) snprintf(cls, sizeof cls, "class %d", (int)d->classes[k]);
        const int cat = x->category[d->classes[k]];
        json_array_insert_new(list, 0, json_pack("{s:i, s:i, s:s, s:[f,f,f,f], s:f}", "class",
                                                 (int)d->classes[k], "category_id", cat, "name",
                                                 cls, "bbox", (double)ob[1], (double)ob[0],
                                                 (double)(ob[3] - ob[1]), (double)(ob[2] - ob[0]),
                                                 "score", (double)d->scores[k]));
        if (o->results && cat > 0) {
            const sn_coco_det e = {image_id, cat,
                                   {ob[1], ob[0], ob[3] - ob[1], ob[2] - ob[0]},
                                   d->scores[k]};
            if ((st = sn_coco_dets_append(&x->results, &e)) != SN_OK) break;
        }
        if (d->scores[k] < o->score || o->no_draw) continue;
        uint8_t col[3];
        sn_draw_class_colour(d->classes[k], col);
        sn_draw_box(&img, (int)ob[1], (int)ob[0], (int)ob[3], (int)ob[2], thick, col);
    }
    int placed[128][4], n_placed = 0;
    for (int k = 0; st == SN_OK && k < d->count; k++) {
        if (d->scores[k] < o->score) continue;
        float ob[4];
        sn_det_unmap_box(&xf, d->boxes + 4 * k, ob);
        const char *name = sn_model_class_name(m, d->classes[k]);
        uint8_t col[3], black[3] = {0, 0, 0};
        sn_draw_class_colour(d->classes[k], col);
        char label[96];
        snprintf(label, sizeof label, "%s %.2f", name && name[0] ? name : "class", d->scores[k]);
        if (!o->no_draw)
            sn_draw_label_avoid(&img, (int)ob[1], (int)ob[0], label, scale, col, black, placed,
                                &n_placed, 128);
        printf("  %-16s %.3f  x %.1f y %.1f w %.1f h %.1f\n", name && name[0] ? name : "?",
               d->scores[k], ob[1], ob[0], ob[3] - ob[1], ob[2] - ob[0]);
        shown++;
    }
    if (st == SN_OK)
        printf("  %d detection%s at score >= %.2f (%d in %s)\n", shown, shown == 1 ? "" : "s",
               o->score, d->count, js);
    if (st == SN_OK && !o->no_draw)
        st = jpeg ? sn_image_save_jpeg(&img, 90, pic) : sn_image_save_png(&img, pic);
    sn_image_free(&img);
    json_t *root = json_pack("{s:s, s:i, s:i, s:o}", "image", path, "width", xf.orig_w, "height",
                             xf.orig_h, "detections", list);
    /* Saved whole, like the picture: a stopped run leaves no half-written list. */
    sn_save_file out;
    if (st == SN_OK && !root)
        st = sn_error(SN_ERR_OOM, "%s: out of memory", js);
    else if (st == SN_OK && (st = sn_save_open(js, &out)) == SN_OK)
        st = sn_save_close(&out, json_dumpf(root, out.f, JSON_INDENT(1)) != 0
                                     ? sn_error(SN_ERR_IO, "%s: write error", js)
                                     : SN_OK);
    json_decref(root);
    if (st == SN_OK && o->no_draw)
        printf("  wrote %s%s\n", js, existed ? " (replacing the file there)" : "");
    else if (st == SN_OK)
        printf("  wrote %s and %s%s\n", pic, js, existed ? " (replacing the files there)" : "");
    return st;
}

/* --classes: a mask over the model's columns. -1 after the error line (a usage error). */
static int class_mask(const sn_model *m, const char *list, unsigned char *keep) {
    const int C = sn_model_config(m)->num_classes;
    char *copy = strdup(list);
    if (!copy) return die("%s", "out of memory");
    int rc = 0;
    for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        while (isspace((unsigned char)*t)) t++;
        for (char *e = t + strlen(t); e > t && isspace((unsigned char)e[-1]);) *--e = 0;
        if (!*t) continue;
        int found = 0;
        for (int c = 1; c < C; c++) {
            const char *nm = sn_model_class_name(m, c);
            if (nm && strcasecmp(nm, t) == 0) keep[c] = 1, found = 1;
        }
        if (!found) {
            char known[1024] = "";
            for (int c = 1; c < C && strlen(known) < sizeof known - 80; c++) {
                const char *nm = sn_model_class_name(m, c);
                if (nm && nm[0] && strcmp(nm, "unused") != 0)
                    snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s",
                             known[0] ? ", " : "", nm);
            }
            fprintf(stderr, "spinenet: error: --classes: the model has no class '%s' (its "
                    "classes: %s)\n", t, known);
            rc = -1;
            break;
        }
    }
    free(copy);
    return rc;
}

/* The category id of each column: by class name in --ann, else the column itself (COCO's
 * numbering, where the columns are the ids). -1 after the error line. */
static int category_map(const sn_model *m, const sn_coco *ann, const char *ann_path, int *cat) {
    const int C = sn_model_config(m)->num_classes;
    cat[0] = 0;
    for (int c = 1; c < C; c++) {
        cat[c] = c;
        if (!ann) continue;
        const char *nm = sn_model_class_name(m, c);
        cat[c] = 0;
        if (!nm || !nm[0] || strcmp(nm, "unused") == 0) continue;
        for (int k = 0; k < ann->num_categories && !cat[c]; k++)
            if (strcmp(ann->categories[k].name, nm) == 0) cat[c] = (int)ann->categories[k].id;
        if (!cat[c]) {
            fprintf(stderr, "spinenet: error: %s has no category named '%s' (the model's class "
                    "%d): --ann takes the annotations of the data the model was trained for\n",
                    ann_path, nm, c);
            return -1;
        }
    }
    return 0;
}

static void detect_progress(int done, int total) {
    fprintf(stderr, "\r\033[Kdetect: %d/%d images", done, total);
    if (done == total) fprintf(stderr, "\n");
}

static int run(const void *options, const char *const *files, int n_files) {
    const opts *o = options;
    if (!o->weights) return usage_error("%s", "detect needs --weights FILE (a RetinaNet detector)");
    if (n_files == 0) return usage_error("%s", "detect needs at least one image file or folder");
    if (o->results && !o->ann)
        return usage_error("%s", "--results needs --ann ANN.json (the COCO instances file of the "
                                 "images, for their ids)");
    if (o->out && need_out(o->out, 1, "-o")) return 1;
    if (o->results && need_out(o->results, 0, "--results")) return 1;
    if (o->ann && need_path(o->ann, 0, "--ann takes a COCO instances file, e.g. "
                                       "fd/annotations/instances_val.json of spinenet "
                                       "make-dataset"))
        return 1;
    /* Folders become the images below them; anything else is an image (a missing one is
     * reported by open_images, and the others still run). */
    input_list inputs = {0};
    int bad = 0;
    for (int i = 0; i < n_files && !bad; i++) {
        struct stat sb;
        if (stat(files[i], &sb) == 0 && S_ISDIR(sb.st_mode)) {
            const int before = inputs.n;
            if (add_folder(&inputs, files[i], "")) bad = 1;
            else if (inputs.n == before)
                fprintf(stderr, "spinenet: warning: %s: no JPEG or PNG images in the folder\n",
                        files[i]);
        } else {
            const char *b = strrchr(files[i], '/');
            if (add_input(&inputs, files[i], b ? b + 1 : files[i])) bad = die("%s", "out of memory");
        }
    }
    if (!bad && inputs.n == 0) bad = die("%s", "detect: no images to run on");
    const char **paths = bad ? NULL : malloc((size_t)inputs.n * sizeof *paths);
    if (!bad && !paths) bad = die("%s", "out of memory");
    for (int i = 0; !bad && i < inputs.n; i++) paths[i] = inputs.v[i].path;
    cli_images im;
    if (bad || open_images(&k_model, o->weights, paths, inputs.n, &im)) {
        free(paths);
        input_list_free(&inputs);
        return 1;
    }
    run_ctx x;
    memset(&x, 0, sizeof x);
    x.o = o;
    x.m = im.model;
    const sn_config *c = sn_model_config(x.m);
    const int C = c->num_classes;
    x.size = o->size ? o->size : c->input_size;
    const int canvas = sn_det_canvas_size(x.size);
    sn_det_params_init(&x.p);
    x.p.iou_threshold = (float)o->nms_iou;
    x.p.max_detections = x.p.max_per_class = o->max_det;
    /* With --classes every class's detections come out of the generator (see detect_one). */
    if (o->classes) x.p.max_detections = (int)((int64_t)o->max_det * (C - 1) < 10000000
                                                   ? (int64_t)o->max_det * (C - 1) : 10000000);
    x.d.capacity = x.p.max_detections;
    sn_coco *ann = NULL;
    int failed = im.missing;
    x.category = calloc((size_t)C, sizeof *x.category);
    if (!x.category) failed = -1, die("%s", "out of memory");
    if (failed >= 0 && o->classes) {
        x.keep = calloc((size_t)C, 1);
        if (!x.keep) failed = -1, die("%s", "out of memory");
        else if (class_mask(x.m, o->classes, x.keep)) failed = -2;
    }
    if (failed >= 0 && o->ann) {
        if (sn_coco_load(o->ann, 0, &ann) != SN_OK) failed = -1, fail_status();
        x.ann = ann;
    }
    if (failed >= 0 && category_map(x.m, ann, o->ann, x.category)) failed = -1;
    int head = 0;
    if (failed >= 0) {
        x.canvas = malloc(sizeof(float) * (size_t)canvas * canvas * 3);
        x.d.boxes = malloc(sizeof(float) * 4 * (size_t)x.d.capacity);
        x.d.scores = malloc(sizeof(float) * (size_t)x.d.capacity);
        x.d.classes = malloc(sizeof(int32_t) * (size_t)x.d.capacity);
        if (!x.canvas || !x.d.boxes || !x.d.scores || !x.d.classes ||
            sn_model_set_threads(x.m, o->threads) != SN_OK ||
            sn_model_plan(x.m, 1, canvas, canvas) != SN_OK ||
            sn_det_head_init(&x.h, x.m, canvas, 0, 0) != SN_OK) {
            fail_status();
            failed = -1;
        } else {
            head = 1;
        }
    }
    if (o->out && failed >= 0 && sn_make_dirs(o->out) != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
        failed = -1;
    }
    const int tty = isatty(STDERR_FILENO) && inputs.n > 1;
    for (int i = 0; failed >= 0 && i < inputs.n; i++) {
        if (!im.skip[i] && detect_one(&x, &inputs.v[i]) != SN_OK) {
            fprintf(stderr, "%sspinenet: error: %s\n", tty ? "\r\033[K" : "", sn_last_error());
            failed++;
        }
        if (tty) detect_progress(i + 1, inputs.n);
    }
    if (failed >= 0 && o->results) {
        if (sn_coco_dets_save(o->results, x.results.items, x.results.count) != SN_OK) {
            fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
            failed++;
        } else {
            printf("wrote %s: %zu detections of %d images (spinenet eval --gt %s --dets %s "
                   "scores them)\n", o->results, x.results.count, inputs.n - im.missing, o->ann,
                   o->results);
        }
    }
    if (head) sn_det_head_free(&x.h);
    free(x.canvas);
    free(x.d.boxes);
    free(x.d.scores);
    free(x.d.classes);
    free(x.keep);
    free(x.category);
    sn_coco_dets_free(&x.results);
    sn_coco_free(ann);
    name_set_free(&x.names);
    close_images(&im);
    free(paths);
    input_list_free(&inputs);
    return failed == -2 ? 2 : failed != 0;
}

const cli_command cmd_detect = {
    .name = "detect",
    .summary = "boxes, classes and scores in images with a detector: --weights W IMAGE|DIR...",
    .usage = "spinenet detect --weights FILE [--score T] [-o OUTDIR] IMAGE|DIR...\n"
             "spinenet detect --weights FILE --ann ANN.json --results RESULTS.json [--no-draw] "
             "DIR",
    .about = "Runs a RetinaNet detector on each image (JPEG or PNG; a folder stands for the "
             "images below it, at any depth), prints the detections scoring --score or more, "
             "draws them into OUTDIR/<name>.det.png (.det.jpg for a JPEG; boxes, class names, "
             "scores; none with --no-draw) and lists every detection (score >= 0.05) in OUTDIR/<name>.det.json: "
             "class (the head's column), category_id, name, bbox [x, y, w, h] and score. An "
             "image found in a folder keeps its path below that folder under OUTDIR. Two images "
             "with the same name (a/x.png b/x.png) are written to x.det.* and x-2.det.*; files "
             "of an earlier run are replaced, and the line that says what was written says so. "
             "--results gathers the run's detections into one COCO results file (image and "
             "category ids from --ann) that spinenet eval --gt ANN.json --dets scores.",
    .examples = "spinenet detect --weights run/best.safetensors --size 256 fd/val/000001.png "
                "-o shots\n"
                "spinenet detect --weights run/best.safetensors --score 0.5 --classes Coat,Bag "
                "photos/ -o shots\n"
                "spinenet detect --weights run/best.safetensors --no-draw --ann "
                "fd/annotations/instances_val.json \\\n"
                "    --results dets.json -o dets fd/val",
    /* At least one, which run checks after --weights (so that message comes first). */
    CLI_PARTS(CLI_POS_LIST),
};
