/* spinenet eval: a classifier's top-1, top-5 and confusion matrix on a dataset, or the COCO
 * AP/AR of a detector run over the --gt images or of a results file. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "cli.h"
#include "coco.h"
#include "coco_eval.h"
#include "data.h"
#include "det_train.h"
#include "trainer.h"

typedef struct {
    const char *task, *data, *gt, *dets, *images, *weights, *out;
    int size, skip_bad, strict, batch, threads, json, per_class, class_agnostic;
} opts;

/* 1 for --batch means the default too (see its help). */
static const opts k_defaults = {.batch = 1, .threads = 1};

static const cli_flag k_flags[] = {
    FSTR("--task", "T", task, "classify, or detect (a detector over the --gt images)",
         "classify; detect when --gt is given"),
    FSTR("--data", "SPEC", data,
         "fashion-mnist[:DIR] (its 10 000 test images) or an image folder DIR with one subfolder "
         "per class", "required for a classifier"),
    FSTR("--gt", "ANN.json", gt, "COCO instances file: the ground truth of detection",
         "none: a classifier is evaluated"),
    FSTR("--dets", "RESULTS.json", dets,
         "a COCO results file to score against --gt, instead of running --weights", "none"),
    FSTR("--images", "DIR", images, "the folder of the --gt images, for --weights",
         "required with --gt and --weights"),
    FSTR("--weights", "FILE", weights,
         "the classifier or detector to evaluate (a spinenet safetensors file)",
         "required, except with --dets"),
    FOUT("RESULTS.json", "write the detections (a COCO results file)", "none"),
    CLI_RUN_SIZE_FLAG,
    CLI_SKIP_BAD_FLAG,
    CLI_STRICT_FLAG,
    FINT("--batch", "B", batch, 1, 65536, "images per forward pass",
         "64 for a classifier (1 also means 64), 1 for a detector"),
    CLI_THREADS_FLAG,
    FSWITCH("--per-class", per_class,
            "detection: also the twelve numbers of each class, and its ground-truth box count",
            "off"),
    FSWITCH("--class-agnostic", class_agnostic,
            "detection: also score with every class merged into one (how much of the AP is lost "
            "to naming the class wrongly rather than to placing the box)", "off"),
    FSWITCH("--json", json, "print one JSON object instead of text (see above)", "off"),
};

static json_t *stats_json(const double *stats) {
    json_t *o = json_object();
    for (int i = 0; o && i < SN_COCO_NUM_STATS; i++)
        json_object_set_new(o, sn_coco_stat_name(i), json_real(stats[i]));
    return o;
}

static void print_coco_stats(const sn_coco_eval_result *r) {
    for (int i = 0; i < SN_COCO_NUM_STATS; i++)
        printf(" %s = %.3f\n", sn_coco_stat_label(i), r->stats[i]);
}

/* Per class: its twelve numbers and its ground-truth boxes (crowd boxes left out, as COCO
 * evaluation ignores them): a table, or the array "per_class" of `root`. */
static void print_per_class(const sn_coco *gt, const sn_coco_eval_result *r, json_t *root) {
    json_t *arr = root ? json_array() : NULL;
    if (!root)
        printf("per class (AP at IoU .50:.95, 100 detections; -1: no ground truth of that size):\n"
               "  id name               boxes     AP   AP50   AP75    APs    APm    APl  AR100\n");
    for (int k = 0; k < r->num_categories; k++) {
        const int id = r->category_ids[k], c = sn_coco_find_category(gt, id);
        const char *name = c >= 0 ? gt->categories[c].name : "";
        int boxes = 0;
        for (int a = 0; a < gt->num_anns; a++)
            boxes += gt->anns[a].category_id == id && !gt->anns[a].iscrowd;
        double st[SN_COCO_NUM_STATS];
        sn_coco_category_stats(r, k, st);
        if (arr)
            json_array_append_new(arr, json_pack("{s:i, s:s, s:i, s:o}", "id", id, "name", name,
                                                 "boxes", boxes, "stats", stats_json(st)));
        else
            printf("%4d %-18.18s %6d %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f %6.3f\n", id, name, boxes,
                   st[SN_COCO_AP], st[SN_COCO_AP50], st[SN_COCO_AP75], st[SN_COCO_APS],
                   st[SN_COCO_APM], st[SN_COCO_APL], st[SN_COCO_AR100]);
    }
    if (arr) json_object_set_new(root, "per_class", arr);
}

/* Every annotation and detection put in the first category, then scored again: box placement
 * alone. (Two detections of one item under different classes now compete: the second counts
 * as a false positive, as in any class-agnostic COCO evaluation without a merging NMS.) */
static sn_status eval_class_agnostic(sn_coco *gt, sn_coco_dets *dets, sn_coco_eval_result *out) {
    if (gt->num_categories < 1) return sn_error(SN_ERR_INVALID_ARG, "no categories to merge");
    const int id = gt->categories[0].id;
    for (int a = 0; a < gt->num_anns; a++) gt->anns[a].category_id = id;
    for (size_t i = 0; i < dets->count; i++) dets->items[i].category_id = id;
    return sn_coco_evaluate(gt, dets->items, dets->count, out);
}

static void coco_load_warnings(const char *path, const sn_coco *c) {
    for (int k = 0; k < SN_COCO_WARN_KINDS; k++)
        if (c->warn_count[k])
            fprintf(stderr, "spinenet: warning: %s: %lld annotations: %s (first: id %lld)\n", path,
                    (long long)c->warn_count[k], sn_coco_warning_text(k),
                    (long long)c->warn_first_id[k]);
}

static void eval_progress(void *user, int done, int total) {
    const int *tty = user;
    if (*tty) {
        fprintf(stderr, "\r\033[Kdetecting: %d/%d images", done, total);
        if (done == total) fprintf(stderr, "\n");
    }
}

/* Detection evaluation: score a results file (--dets), or run a detector (--weights) over the
 * images of the annotation file and score what it finds (and write it with -o). */
static int eval_detect(const opts *o) {
    if (!o->gt) return usage_error("%s", "detection eval needs --gt ANNOTATIONS.json");
    if (!o->dets && !o->weights)
        return usage_error("%s", "eval --gt needs --dets RESULTS.json (a COCO results file) or --weights "
                         "FILE --images DIR (a detector to run)");
    if (o->dets && o->weights)
        return usage_error("%s", "give either --dets or --weights, not both");
    if (o->weights && !o->images)
        return usage_error("%s", "eval --weights needs --images DIR (the folder of the --gt images)");
    if (need_path(o->gt, 0, "--gt takes a COCO instances file, e.g. "
                            "fd/annotations/instances_val.json of spinenet make-dataset") ||
        (o->dets && need_path(o->dets, 0, "--dets takes a COCO results file, e.g. one written by "
                                          "spinenet eval --task detect -o")) ||
        (o->weights && need_path(o->weights, 0, TAKES_WEIGHTS)) ||
        (o->images && o->weights &&
         need_path(o->images, 1, "--images takes the folder of the --gt images")) ||
        (o->out && o->weights && need_out(o->out, 0, "-o")))
        return 1;
    sn_coco *gt = NULL;
    if (sn_coco_load(o->gt, 0, &gt) != SN_OK) return fail_status();
    coco_load_warnings(o->gt, gt);
    sn_coco_dets dets = {0};
    sn_coco_eval_result r;
    memset(&r, 0, sizeof r);
    sn_model *m = NULL;
    sn_status st = SN_OK;
    if (o->dets) {
        st = sn_coco_dets_load(o->dets, gt, &dets);
        if (st == SN_OK) st = sn_coco_evaluate(gt, dets.items, dets.count, &r);
    } else {
        int tty = isatty(STDERR_FILENO);
        if (load_model(o->weights, &m)) {
            sn_coco_free(gt);
            return 1;
        }
        if ((st = sn_model_set_threads(m, o->threads)) == SN_OK) {
            sn_det_params p;
            sn_det_params_init(&p);
            const int size = o->size ? o->size : sn_model_config(m)->input_size;
            st = sn_det_evaluate(m, gt, o->images, size, o->batch, &p, &dets, &r, eval_progress,
                                 &tty);
        }
        if (st == SN_OK && o->out) st = sn_coco_dets_save(o->out, dets.items, dets.count);
    }
    sn_coco_eval_result merged;
    memset(&merged, 0, sizeof merged);
    if (st != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    } else {
        json_t *root = o->json ? stats_json(r.stats) : NULL;
        if (!o->json) {
            printf("%s: %d images, %zu detections%s%s\n", o->gt, gt->num_images, dets.count,
                   o->out && o->weights ? ", written to " : "", o->out && o->weights ? o->out : "");
            print_coco_stats(&r);
        }
        if (o->per_class) print_per_class(gt, &r, root);
        if (o->class_agnostic) { /* last: it changes gt and dets */
            st = eval_class_agnostic(gt, &dets, &merged);
            if (st != SN_OK) {
                fprintf(stderr, "spinenet: error: class-agnostic scoring: %s\n", sn_last_error());
            } else if (root) {
                json_object_set_new(root, "class_agnostic", stats_json(merged.stats));
            } else {
                printf("every class merged into one (box placement alone):\n");
                print_coco_stats(&merged);
            }
        }
        if (root && st == SN_OK) {
            char *text = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(6));
            if (text) printf("%s\n", text);
            else st = sn_error(SN_ERR_OOM, "out of memory");
            free(text);
        }
        json_decref(root);
    }
    sn_coco_eval_free(&merged);
    sn_coco_eval_free(&r);
    sn_coco_dets_free(&dets);
    sn_model_free(m);
    sn_coco_free(gt);
    return st == SN_OK ? 0 : 1;
}

static void warn_skipped(void *user, const char *path, const char *reason) {
    (void)user;
    (void)path; /* the reason names it */
    fprintf(stderr, "spinenet: warning: skipping %s\n", reason);
}

static void warn_empty_class(void *user, const char *dir) {
    (void)user;
    fprintf(stderr, "spinenet: warning: %s: empty class folder: counted as a class without an "
            "image (--strict refuses it)\n", dir);
}

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    int det;
    if (task_of(o->task, &det)) return 2;
    if (det || o->gt || o->dets) return eval_detect(o);
    if (o->per_class || o->class_agnostic)
        return usage_error("%s", "--per-class and --class-agnostic are for detection (--task detect "
                                 "--gt ...); a classifier's per-class view is its confusion matrix");
    if (!o->weights) return usage_error("%s", "eval needs --weights FILE (a classifier)");
    if (!o->data) return usage_error("%s", "eval needs --data fashion-mnist or --data DIR");
    if (need_path(o->weights, 0, TAKES_WEIGHTS) || need_data(o->data, 0, "--data")) return 1;
    sn_model *m = NULL;
    if (load_model_with_head(o->weights, SN_HEAD_CLASSIFIER, "%s: not a classifier", &m)) return 1;
    const sn_config *c = sn_model_config(m);
    sn_dataset *ds = NULL;
    const char *fm = fmnist_dir(o->data);
    sn_status st;
    if (fm) {
        st = sn_fashion_mnist_open(fm, 0, &ds);
    } else {
        sn_folder_options fo;
        memset(&fo, 0, sizeof fo);
        fo.skip_bad = o->skip_bad;
        /* Headers up front, as train reads them: a broken file is named before the run, and
         * --skip-bad has something to leave out (with no check it failed at load time). */
        fo.verify = SN_VERIFY_HEADER;
        fo.warn = warn_skipped;
        fo.strict = o->strict;
        fo.empty = warn_empty_class;
        sn_folder_stats fs;
        st = sn_folder_open(o->data, &fo, &ds, &fs);
    }
    int64_t *conf = NULL;
    double top1 = 0, top5 = 0;
    int k = c->num_classes;
    /* Folders come sorted by name, the model's outputs in the order it was trained with: the
     * classes are matched by name (the model's are in its metadata), not by position. */
    char **names = NULL;
    if (st == SN_OK && (names = model_class_names(m)) != NULL)
        st = sn_dataset_match_classes(ds, (const char *const *)names, k, o->data, o->weights);
    free_class_names(names, k);
    if (st == SN_OK) {
        conf = calloc((size_t)k * k, sizeof *conf);
        st = sn_trainer_evaluate(m, ds, o->size ? o->size : c->input_size, o->batch > 1 ? o->batch : 64,
                                 o->threads, NULL, &top1, &top5, conf);
    }
    if (st != SN_OK) {
        fprintf(stderr, "spinenet: error: %s\n", sn_last_error());
    } else if (o->json) {
        printf("{\"top1\": %.6f, \"top5\": %.6f, \"count\": %d, \"confusion\": [", top1, top5, ds->count);
        for (int i = 0; i < k; i++) {
            printf("%s[", i ? ", " : "");
            for (int j = 0; j < k; j++) printf("%s%lld", j ? ", " : "", (long long)conf[i * k + j]);
            printf("]");
        }
        printf("]}\n");
    } else {
        printf("%d images: top-1 %.2f%%, top-5 %.2f%%\nconfusion (rows: true class, columns: predicted)\n",
               ds->count, 100 * top1, 100 * top5);
        for (int i = 0; i < k && k <= 50; i++) {
            const char *name = sn_model_class_name(m, i);
            printf("%-14.14s", name ? name : "");
            for (int j = 0; j < k; j++) printf(" %6lld", (long long)conf[i * k + j]);
            printf("\n");
        }
    }
    free(conf);
    sn_dataset_free(ds);
    sn_model_free(m);
    return st == SN_OK ? 0 : 1;
}

const cli_command cmd_eval = {
    .name = "eval",
    .summary = "top-1, top-5 and the confusion matrix of a classifier on a dataset, or COCO "
               "AP/AR of a detector (--task detect) or of a results file (--gt --dets)",
    .usage = "spinenet eval --weights FILE --data fashion-mnist[:DIR] | --data DIR [flags]\n"
             "spinenet eval --task detect --weights FILE --gt ANN.json --images DIR "
             "[-o RESULTS.json]\n"
             "spinenet eval --gt ANN.json --dets RESULTS.json [--json]",
    .about = "A classifier's top-1, top-5 and confusion matrix on a dataset (Fashion-MNIST: "
             "its 10 000 test images; an image folder's classes are matched to the model's by "
             "name, file-safe folder names such as T-shirt_top included, and may be a subset "
             "of them), or the twelve COCO AP/AR numbers of a detector run "
             "over the images of --gt (--task detect, implied by --gt), or of a COCO results "
             "file (--gt with --dets). --json prints {\"top1\", \"top5\", \"count\", \"confusion\"} "
             "for a classifier and {\"AP\", \"AP50\", \"AP75\", \"APs\", \"APm\", \"APl\", "
             "\"AR1\", \"AR10\", \"AR100\", \"ARs\", \"ARm\", \"ARl\"} for detection, "
             "with \"per_class\": [{\"id\", \"name\", \"boxes\", \"stats\": {the twelve}}] "
             "(--per-class) and \"class_agnostic\": {the twelve} (--class-agnostic). "
             "--per-class shows which classes are weak; --class-agnostic scores the boxes with "
             "every class merged into one, so the gap to the plain AP is what naming the class "
             "wrongly costs.",
    .examples = "spinenet eval --weights runs/fm/best.safetensors --data fashion-mnist --size 64\n"
                "spinenet eval --task detect --weights run/best.safetensors --size 256 \\\n"
                "    --gt fd/annotations/instances_val.json --images fd/val -o dets.json\n"
                "spinenet eval --gt fd/annotations/instances_val.json --dets dets.json --json\n"
                "spinenet eval --gt fd/annotations/instances_val.json --dets dets.json --per-class "
                "--class-agnostic",
    CLI_PARTS(CLI_POS_NONE),
};
