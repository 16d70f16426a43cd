/* spinenet plot: the curves of a training log (the OUTDIR/train_log.csv of spinenet train)
 * drawn into a PNG (plot.h). */
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "plot.h"

typedef struct {
    const char *out, *title;
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
};

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

/* args[0]: the log (main checks that there is exactly one). */
static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (!o->out) return usage_error("%s", "plot needs -o PNG (where to write the figure)");
    if (other_image_format(o->out))
        return usage_error("%s: plot writes PNG only; give -o a name ending in .png", o->out);
    if (need_path(args[0], 0, "plot takes a training log, e.g. the OUTDIR/train_log.csv that "
                              "spinenet train writes") ||
        need_out(o->out, 0, "-o"))
        return 1;
    sn_plot_options po = {o->width, o->height, o->title};
    if (sn_plot_train_log(args[0], o->out, &po) != SN_OK) return fail_status();
    printf("wrote %s\n", o->out);
    return 0;
}

const cli_command cmd_plot = {
    .name = "plot",
    .summary = "draw the curves of a training log (OUTDIR/train_log.csv) into a PNG",
    .usage = "spinenet plot LOG.csv -o PNG [--title T] [--width W] [--height H]",
    .about = "Draws the training log that spinenet train writes (OUTDIR/train_log.csv) as "
             "one PNG of three panels over the steps: the loss (and its parts for a "
             "detector), the learning rate and the evaluation metrics in %.",
    .examples = "spinenet plot runs/fm/train_log.csv -o curves.png\n"
                "spinenet plot run/train_log.csv -o run.png --title \"fashion-det\" --width 1280",
    CLI_PARTS(CLI_POS_ONE),
    .pos_missing = "plot needs the training log: spinenet plot LOG.csv -o PNG (LOG.csv: the "
                   "OUTDIR/train_log.csv that spinenet train writes)",
};
