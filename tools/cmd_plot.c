/* spinenet plot: the curves of a training log (the OUTDIR/train_log.csv of spinenet train)
 * drawn into a PNG (plot.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "plot.h"

typedef struct {
    const char *out, *title, *x, *labels;
    int width, height; /* 0: plot.h's */
} opts;

static const opts k_defaults = {0};

static const cli_flag k_flags[] = {
    FOUT("PNG", "the PNG to write", "required"),
    FSTR("--title", "T", title, "the title on top of the figure",
         "the run's name: the folder holding LOG.csv when it is a train_log.csv, else its file "
         "name"),
    FINT("--width", "W", width, 200, 8192, "the PNG's width in pixels", "960"),
    FINT("--height", "H", height, 200, 8192, "the PNG's height in pixels", "900"),
    FSTR("--x", "AXIS", x,
         "step, or time: the training time of the log's train_s column (minutes; hours past two), "
         "evaluation and checkpoint writing left out", "step"),
    FSTR("--labels", "A,B,...", labels,
         "the runs' names in the legend, one per log, comma-separated", "the runs' names"),
};

#define MAX_LOGS 12

/* Whether the name says another picture format than the PNG plot writes: a viewer would take
 * the PNG bytes of "curves.jpg" for a broken JPEG. A name without one of these is taken as it
 * is (/dev/stdout, "curves"). */
static int other_image_format(const char *path) {
    static const char *const k_other[] = {"jpg", "jpeg", "gif", "bmp", "webp", "tif", "tiff",
                                          "svg", "pdf", "ppm"};
    const char *base = strrchr(path, '/'), *dot = strrchr(base ? base : path, '.');
    for (size_t i = 0; dot && i < sizeof k_other / sizeof k_other[0]; i++)
        if (strcasecmp(dot + 1, k_other[i]) == 0) return 1;
    return 0;
}

/* args: the logs. */
static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (n_args < 1)
        return usage_error("%s", "plot needs the training log: spinenet plot LOG.csv -o PNG "
                                 "(LOG.csv: the OUTDIR/train_log.csv that spinenet train writes)");
    if (n_args > MAX_LOGS)
        return usage_error("%s", "plot takes at most 12 logs (one colour each)");
    if (!o->out) return usage_error("%s", "plot needs -o PNG (where to write the figure)");
    if (other_image_format(o->out))
        return usage_error("%s: plot writes PNG only; give -o a name ending in .png", o->out);
    int x = SN_PLOT_X_STEP;
    if (o->x && !strcmp(o->x, "time")) x = SN_PLOT_X_TIME;
    else if (o->x && strcmp(o->x, "step"))
        return usage_error("--x takes step or time, got '%s'", o->x);
    /* --labels: split at commas into its own copy. */
    char lbuf[1024];
    const char *labels[MAX_LOGS] = {0};
    if (o->labels) {
        if (strlen(o->labels) >= sizeof lbuf)
            return usage_error("%s", "--labels is too long (1023 characters at most)");
        snprintf(lbuf, sizeof lbuf, "%s", o->labels);
        int n = 0;
        for (char *p = lbuf, *c;; p = c + 1) {
            c = strchr(p, ',');
            if (c) *c = 0;
            if (n < MAX_LOGS) labels[n] = p;
            n++;
            if (!c) break;
        }
        if (n != n_args) {
            char msg[96];
            snprintf(msg, sizeof msg, "--labels names %d run%s, but %d log%s given", n,
                     n == 1 ? "" : "s", n_args, n_args == 1 ? " is" : "s are");
            return usage_error("%s", msg);
        }
    }
    for (int i = 0; i < n_args; i++)
        if (need_path(args[i], 0, "plot takes a training log, e.g. the OUTDIR/train_log.csv that "
                                  "spinenet train writes"))
            return 1;
    if (need_out(o->out, 0, "-o")) return 1;
    sn_plot_options po = {o->width, o->height, o->title, x, o->labels ? labels : NULL};
    if (sn_plot_train_logs(args, n_args, o->out, &po) != SN_OK) return fail_status();
    printf("wrote %s\n", o->out);
    return 0;
}

const cli_command cmd_plot = {
    .name = "plot",
    .summary = "draw the curves of a training log (OUTDIR/train_log.csv) into a PNG",
    .usage = "spinenet plot LOG.csv [LOG2.csv ...] -o PNG [--x step|time] [--labels A,B,...] "
             "[--title T] [--width W] [--height H]",
    .about = "Draws the training log that spinenet train writes (OUTDIR/train_log.csv) as "
             "one PNG of three panels over the steps: the loss (and its parts for a "
             "detector), the learning rate and the evaluation metrics in %. Several logs "
             "(at most 12) are drawn over each other to compare runs, one colour per run: "
             "each run's loss, learning rate and first evaluation metric (AP of a detector, "
             "top-1 of a classifier). --x time puts the training time on the x axis "
             "(the train_s column: evaluation and checkpoint writing left out), so that runs "
             "of different speeds compare on the same budget.",
    .examples = "spinenet plot runs/fm/train_log.csv -o curves.png\n"
                "spinenet plot run/train_log.csv -o run.png --title \"fashion-det\" --width 1280\n"
                "spinenet plot runs/a/train_log.csv runs/b/train_log.csv --x time -o a_vs_b.png",
    CLI_PARTS(CLI_POS_LIST),
};
