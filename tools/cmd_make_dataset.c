/* spinenet make-dataset: fashion-det, the built-in multi-scale detection set (COCO format), or
 * fashion-mnist, Fashion-MNIST items as an image folder of PNGs. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "fashion_det.h"

typedef struct {
    const char *out, *data, *split;
    int size, n_train, n_val, min_objects, max_objects, first, count, threads;
    uint64_t seed;
} opts;

/* -1 and 0: fashion-det's own defaults (fashion_det.h); fashion-mnist refuses any other value. */
static const opts k_defaults = {.n_train = -1, .n_val = -1, .count = 100, .threads = 1};

static const cli_flag k_flags[] = {
    FOUT("DIR", "the dataset's folder (created with its parents)", "required"),
    FINT("--size", "S", size, 1, SIZE_MAX_PX,
         "image size S; items are 12..200 px (S < 200: up to S * 200 / 256)", "256"),
    FINT("--train-images", "N", n_train, 0, 10000000, "images of the train split", "3000"),
    FINT("--val-images", "N", n_val, 0, 10000000, "images of the val split", "300"),
    FINT("--min-objects", "N", min_objects, 1, SN_FASHION_DET_MAX_OBJECTS,
         "fewest items per image", "1"),
    FINT("--max-objects", "N", max_objects, 1, SN_FASHION_DET_MAX_OBJECTS,
         "most items per image (at most 64)", "12"),
    FSTR("--data", "FMNISTDIR", data, "the folder of Fashion-MNIST's .gz files",
         SN_FASHION_DET_DEFAULT_DIR),
    FSTR("--split", "S", split, "fashion-mnist: test (its 10 000 t10k items) or train "
         "(60 000)", "test"),
    FINT("--first", "I", first, 0, 10000000, "fashion-mnist: index of the first item "
         "written", NULL),
    FINT("--count", "N", count, 0, 10000000, "fashion-mnist: items written (fewer when "
         "the split ends first)", NULL),
    FINT("--threads", "T", threads, 0, 1024,
         "threads making the images; 0: all cores; the files do not depend on it", NULL),
    FSEED(seed, "seed of the images (0 also means 1)", "1"),
};

static const char *const k_datasets[] = {"fashion-det", "fashion-mnist", NULL};

static void make_progress(void *user, int done, int total) {
    const int *tty = user;
    if (*tty)
        fprintf(stderr, "\r\033[Kfashion-det: %d/%d images", done, total);
    else if (done == total || done % 500 == 0)
        fprintf(stderr, "fashion-det: %d/%d images\n", done, total);
    if (*tty && done == total) fprintf(stderr, "\n");
}

/* make-dataset fashion-mnist --out DIR: Fashion-MNIST items as an image folder of PNGs. */
static int make_fashion_mnist(const opts *o) {
    if (o->size || o->n_train >= 0 || o->n_val >= 0 || o->min_objects || o->max_objects || o->seed)
        return usage_error("%s", "make-dataset fashion-mnist takes --out, --split, --first, --count, "
                         "--data (the others are fashion-det's; see spinenet make-dataset --help)");
    const char *split = o->split ? o->split : "test";
    if (strcmp(split, "test") != 0 && strcmp(split, "train") != 0)
        return usage_error("--split must be test or train, got '%s'", split);
    int written = 0;
    if (sn_fashion_mnist_export(o->data ? o->data : SN_FASHION_DET_DEFAULT_DIR,
                                strcmp(split, "train") == 0, o->first, o->count, o->out,
                                &written) != SN_OK)
        return fail_status();
    printf("fashion-mnist: %d %s images (items %d..%d) in %s/<class>/\n", written, split, o->first,
           o->first + written - 1, o->out);
    return 0;
}

/* make-dataset fashion-det --out DIR: the built-in multi-scale detection set (fashion_det.h).
 * args[0], the dataset's name, is one of k_datasets (main checks it). */
static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (!o->out) return usage_error("%s", "make-dataset needs --out DIR");
    if (o->data && need_path(o->data, 1, "--data takes the folder of Fashion-MNIST's .gz files; "
                                         "apt-get install dataset-fashion-mnist puts them in "
                                         SN_FASHION_DET_DEFAULT_DIR))
        return 1;
    if (strcmp(args[0], "fashion-mnist") == 0) return make_fashion_mnist(o);
    if (o->split || o->first || o->count != 100)
        return usage_error("%s", "--split, --first and --count are fashion-mnist's (see spinenet "
                         "make-dataset --help)");
    sn_fashion_det_options fo;
    sn_fashion_det_defaults(&fo);
    if (o->data) fo.fmnist_dir = o->data;
    if (o->size) fo.image_size = o->size;
    /* Items up to 200 px in a 256 px image: the same proportion in smaller images. */
    if (fo.max_size > fo.image_size) fo.max_size = fo.image_size * 200.0 / 256.0;
    if (o->n_train >= 0) fo.train_count = o->n_train;
    if (o->n_val >= 0) fo.val_count = o->n_val;
    if (o->min_objects) fo.min_objects = o->min_objects;
    if (o->max_objects) fo.max_objects = o->max_objects;
    fo.seed = o->seed ? o->seed : fo.seed;
    fo.threads = o->threads;
    int tty = isatty(STDERR_FILENO);
    fo.progress = make_progress;
    fo.user = &tty;
    sn_fashion_det_stats fs;
    double t0 = now_s();
    if (sn_fashion_det_make(o->out, &fo, &fs) != SN_OK) return fail_status();
    printf("fashion-det in %s (%.1f s): train %d images, %d objects; val %d images, %d objects\n"
           "  images: %s/train, %s/val; annotations: %s/annotations/instances_{train,val}.json\n",
           o->out, now_s() - t0, fs.images[0], fs.objects[0], fs.images[1], fs.objects[1], o->out,
           o->out, o->out);
    return 0;
}

const cli_command cmd_make_dataset = {
    .name = "make-dataset",
    .summary = "fashion-det --out DIR: the built-in multi-scale detection set; fashion-mnist "
               "--out DIR: Fashion-MNIST images as PNG files",
    .usage = "spinenet make-dataset fashion-det --out DIR [flags]\n"
             "spinenet make-dataset fashion-mnist --out DIR [--split S] [--first I] "
             "[--count N] [--data FMNISTDIR]",
    .about = "fashion-det: Fashion-MNIST items pasted at many sizes onto synthetic "
             "backgrounds, as a COCO dataset: DIR/train and DIR/val (PNG images) and "
             "DIR/annotations/instances_{train,val}.json. The same flags make byte-identical "
             "files, whatever --threads. fashion-mnist: items --first .. --first + --count - 1 "
             "of a Fashion-MNIST split as 28x28 grayscale PNGs, "
             "DIR/<class>/<split>-<index>.png (class names made file-safe: T-shirt_top, "
             "Ankle_boot), an image folder that train, eval and classify read.",
    .examples = "spinenet make-dataset fashion-det --out fd\n"
                "spinenet make-dataset fashion-det --out fd-small --train-images 800 "
                "--val-images 100 --size 128\n"
                "spinenet make-dataset fashion-mnist --out fm-test --count 10000",
    CLI_PARTS(CLI_POS_ONE),
    .pos_missing = "make-dataset needs the dataset's name: spinenet make-dataset fashion-det "
                   "--out DIR, or fashion-mnist --out DIR",
    .pos_choices = k_datasets,
};
