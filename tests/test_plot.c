/* Tests for the training-curve plots (plot.c): synthetic classifier and detector logs are drawn
 * and the pixels are checked where the layout says each value must be; then the CSV reader's
 * errors, the PNG file and out-of-memory failures. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "data.h"
#include "plot.h"
#include "test.h"

static const double k_pi = 3.14159265358979323846;
static char g_tmp[256];

static void tmp_path(char *dst, size_t cap, const char *name) {
    snprintf(dst, cap, "%s/%s", g_tmp, name);
}

static int write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    size_t n = strlen(text), w = fwrite(text, 1, n, f);
    return fclose(f) == 0 && w == n;
}

static int has(const char *haystack, const char *needle) {
    return strstr(haystack, needle) != NULL;
}

/* ---- The synthetic logs -------------------------------------------------------------------- */

/* Classifier: 1000 steps, loss decaying to 0.3, cosine lr from 0.1, eval every 200 steps. */
static double cls_loss(int s) { return 2.3 * exp(-s / 250.0) + 0.3; }
static double cls_lr(int s) { return 0.05 * (1 + cos(k_pi * s / 1000)); }
static double cls_top1(int i) { return 0.3 + 0.1 * i; }  /* i-th evaluation: 30 .. 70 % */
static double cls_top5(int i) { return 0.9 + 0.02 * i; } /* 90 .. 98 % */

static void write_cls_log(const char *path) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fprintf(f,
            "step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,eval_top1,eval_top5\n");
    for (int s = 1; s <= 1000; s++) {
        fprintf(f, "%d,%d,%.6g,%.6g,,,%.6g,%.6g,", s, s / 100, cls_lr(s), cls_loss(s),
                0.2 + 0.0005 * s, 300.0 + s % 7);
        if (s % 200 == 0)
            fprintf(f, "%.6g,%.6g\n", cls_top1(s / 200 - 1), cls_top5(s / 200 - 1));
        else
            fprintf(f, ",\n");
    }
    fclose(f);
}

/* Detector: steps 10 .. 2000, loss from 4 down to ~0.02 (a log axis), lr with a warmup from
 * 1e-05 and step decays, AP every 500 steps; columns in another order, CRLF line ends, a nan
 * and an inf, no final newline. */
static double det_loss(int s) { return 4.0 * exp(-s / 300.0) + 0.02; }
static double det_lr(int s) {
    return s <= 10 ? 1e-5 : s < 200 ? 0.08 * s / 200 : s < 1200 ? 0.08 : s < 1600 ? 0.008 : 0.0008;
}
static double det_ap(int i) { return 0.05 + 0.07 * i; }  /* 5 .. 26 % */
static double det_ap50(int i) { return 0.1 + 0.12 * i; } /* 10 .. 46 % */

static void write_det_log(const char *path) {
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fprintf(f, "epoch,loss_box,eval_AP50,step,lr,loss,loss_cls,train_top1,images_per_s,eval_AP");
    for (int s = 10; s <= 2000; s += 10) {
        const double l = det_loss(s);
        char ap[32] = "", ap50[32] = "", loss[32], box[32];
        if (s % 500 == 0) {
            snprintf(ap, sizeof ap, "%.6g", det_ap(s / 500 - 1));
            snprintf(ap50, sizeof ap50, "%.6g", det_ap50(s / 500 - 1));
        }
        snprintf(loss, sizeof loss, s == 700 ? "nan" : "%.6g", l);
        snprintf(box, sizeof box, s == 800 ? "inf" : "%.6g", 0.4 * l);
        fprintf(f, "\r\n%d,%s,%s,%d,%.6g,%s,%.6g,,%.6g,%s", s / 100, box, ap50, s, det_lr(s), loss,
                0.6 * l, 12.5, ap);
    }
    fclose(f);
}

/* ---- Looking at the picture ---------------------------------------------------------------- */

static int px_x(const sn_plot_panel *p, double step) {
    return (int)lround(p->x0 + (step - p->xmin) / (p->xmax - p->xmin) * (p->x1 - p->x0));
}
static int px_y(const sn_plot_panel *p, double t) {
    if (p->log_y) t = log10(t);
    return (int)lround(p->y1 - (t - p->ymin) / (p->ymax - p->ymin) * (p->y1 - p->y0));
}

static int is_rgb(const sn_image *img, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return 0;
    const uint8_t *q = img->pixels + ((size_t)y * img->width + x) * 3;
    return q[0] == rgb[0] && q[1] == rgb[1] && q[2] == rgb[2];
}
static int is_dark(const sn_image *img, int x, int y) { /* text, not frame or grid */
    const uint8_t *q = img->pixels + ((size_t)y * img->width + x) * 3;
    return q[0] < 60 && q[1] < 60 && q[2] < 60;
}

/* Pixels of colour k in the rectangle [x0, x1) x [y0, y1), and their mean y. */
static long count_rgb(const sn_image *img, int k, int x0, int y0, int x1, int y1, double *mean_y) {
    uint8_t rgb[3];
    sn_plot_colour(k, rgb);
    long n = 0;
    double sy = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            if (is_rgb(img, x, y, rgb)) n++, sy += y;
    if (mean_y) *mean_y = n ? sy / n : NAN;
    return n;
}
static long in_panel(const sn_image *img, const sn_plot_panel *p, int k) {
    return count_rgb(img, k, p->x0, p->y0, p->x1 + 1, p->y1 + 1, NULL);
}

/* Is a pixel of colour k within r pixels of (x, y)? */
static int near(const sn_image *img, int x, int y, int r, int k) {
    return count_rgb(img, k, x - r, y - r, x + r + 1, y + r + 1, NULL) > 0;
}
/* Is the (2r+1)^2 square around (x, y) all of colour k (a marker, not a 2-pixel line)? */
static int solid(const sn_image *img, int x, int y, int r, int k) {
    return count_rgb(img, k, x - r, y - r, x + r + 1, y + r + 1, NULL) == (2 * r + 1) * (2 * r + 1);
}

/* A series drawn from left to right downwards: its pixels in the left fifth of the panel lie
 * higher (smaller y) than those in the right fifth. */
static int falls(const sn_image *img, const sn_plot_panel *p, int k) {
    const int w = (p->x1 - p->x0) / 5;
    double yl, yr;
    long nl = count_rgb(img, k, p->x0, p->y0, p->x0 + w, p->y1 + 1, &yl);
    long nr = count_rgb(img, k, p->x1 - w, p->y0, p->x1 + 1, p->y1 + 1, &yr);
    return nl > 0 && nr > 0 && yl + 20 < yr;
}

/* [lo, hi] is cut into 3 .. 5 equal steps of 1, 2 or 5 x 10^k, with lo a multiple of the step. */
static int nice_range(double lo, double hi) {
    for (int n = 3; n <= 5; n++) {
        const double step = (hi - lo) / n, m = step / pow(10, floor(log10(step)));
        const double q = lo / step;
        if ((fabs(m - 1) < 1e-6 || fabs(m - 2) < 1e-6 || fabs(m - 5) < 1e-6) &&
            fabs(q - round(q)) < 1e-6)
            return 1;
    }
    return 0;
}

/* Dark (text) pixels in a rectangle: tick labels, titles. */
static long text_in(const sn_image *img, int x0, int y0, int x1, int y1) {
    long n = 0;
    for (int y = y0 < 0 ? 0 : y0; y < y1 && y < img->height; y++)
        for (int x = x0 < 0 ? 0 : x0; x < x1 && x < img->width; x++) n += is_dark(img, x, y);
    return n;
}

/* Common to both logs: panels stacked inside the image, labels beside and below them. */
static void check_frame(const sn_image *img, const sn_plot_layout *L) {
    for (int i = 0; i < 3; i++) {
        const sn_plot_panel *p = &L->panel[i];
        CHECK(p->x0 > 0 && p->x1 < img->width - 1 && p->y0 > 0 && p->y1 < img->height - 1 &&
                  p->x1 - p->x0 > img->width / 2 && p->y1 - p->y0 > img->height / 8,
              "panel %d at %d,%d .. %d,%d in %dx%d", i, p->x0, p->y0, p->x1, p->y1, img->width,
              img->height);
        CHECK(i == 0 || p->y0 > L->panel[i - 1].y1, "panel %d overlaps the one above", i);
        CHECK(p->xmin == L->panel[0].xmin && p->xmax == L->panel[0].xmax, "step axis not shared");
        CHECK(p->log_y ? p->ymin == floor(p->ymin) && p->ymax == floor(p->ymax) && p->ymax > p->ymin
                       : nice_range(p->ymin, p->ymax),
              "panel %d: y axis %g .. %g (log %d) not on nice ticks", i, p->ymin, p->ymax,
              p->log_y);
        CHECK(text_in(img, 0, p->y0 - 8, p->x0 - 1, p->y1 + 8) > 50, "panel %d: no y tick labels",
              i);
        CHECK(text_in(img, p->x0 + 8, p->y0 - 30, p->x0 + 60, p->y0 - 1) > 20, "panel %d: no title",
              i);
    }
    const sn_plot_panel *b = &L->panel[2];
    CHECK(nice_range(b->xmin, b->xmax), "step axis %g .. %g not on nice ticks", b->xmin, b->xmax);
    CHECK(text_in(img, b->x0, b->y1 + 2, b->x1 + 1, b->y1 + 24) > 50, "no step tick labels");
    int bands = 0, inside = 0; /* rows of text under the bottom panel: tick labels, then "step" */
    for (int y = b->y1 + 2; y < img->height; y++) {
        const int ink = text_in(img, b->x0, y, b->x1 + 1, y + 1) > 0;
        bands += ink && !inside;
        inside = ink;
    }
    CHECK(bands == 2, "%d lines of text under the bottom panel, not 2", bands);
}

/* ---- Tests --------------------------------------------------------------------------------- */

static void test_classifier(void) {
    char csv[512];
    tmp_path(csv, sizeof csv, "cls.csv");
    write_cls_log(csv);
    sn_image img = {0};
    sn_plot_layout L;
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    if (!img.pixels) return;
    CHECK(img.width == 960 && img.height == 900 && img.channels == 3, "size %dx%dx%d", img.width,
          img.height, img.channels);
    check_frame(&img, &L);
    const sn_plot_panel *pl = &L.panel[0], *pr = &L.panel[1], *pe = &L.panel[2];
    CHECK(pl->n_series == 1 && pr->n_series == 1 && pe->n_series == 2, "series %d %d %d",
          pl->n_series, pr->n_series, pe->n_series);
    CHECK(pl->xmin <= 1 && pl->xmax >= 1000 && pl->xmax - pl->xmin <= 1200, "steps %g .. %g",
          pl->xmin, pl->xmax);
    CHECK(!pl->log_y && pl->ymin <= cls_loss(1000) && pl->ymax >= cls_loss(1), "loss axis %g .. %g",
          pl->ymin, pl->ymax);
    CHECK(!pr->log_y && pr->ymin <= 0 && pr->ymax >= 0.1, "lr axis %g .. %g", pr->ymin, pr->ymax);
    CHECK(pe->ymin <= 30 && pe->ymax >= 98 && pe->ymax <= 110, "eval axis %g .. %g (percent)",
          pe->ymin, pe->ymax);

    /* Each series in its panel, in its colour; the empty loss_cls / loss_box are not drawn. */
    CHECK(in_panel(&img, pl, 0) > 500, "no loss line");
    CHECK(in_panel(&img, pl, 1) == 0 && in_panel(&img, pl, 2) == 0, "empty columns drawn");
    CHECK(in_panel(&img, pr, 0) > 500, "no lr line");
    CHECK(in_panel(&img, pe, 0) > 200 && in_panel(&img, pe, 1) > 200, "no eval lines");
    CHECK(falls(&img, pl, 0), "loss does not fall from left to right");
    CHECK(falls(&img, pr, 0), "cosine lr does not fall from left to right");
    CHECK(count_rgb(&img, 0, 0, pl->y0 - 30, img.width, pl->y0 - 6, NULL) == 0,
          "a legend for a single loss line");
    CHECK(count_rgb(&img, 1, 0, pe->y0 - 30, img.width, pe->y0 - 6, NULL) > 10, "no eval legend");

    /* Lines 2 pixels wide: the flat end of the loss curve, column by column. */
    for (int x = px_x(pl, 900); x < px_x(pl, 990); x += 7) {
        long n = count_rgb(&img, 0, x, pl->y0, x + 1, pl->y1 + 1, NULL);
        CHECK(n >= 2 && n <= 4, "loss line %ld pixels thick at x = %d", n, x);
    }
    /* The curves pass through the data. */
    const int steps[] = {1, 60, 250, 500, 750, 999};
    for (int i = 0; i < 6; i++) {
        const int s = steps[i];
        CHECK(near(&img, px_x(pl, s), px_y(pl, cls_loss(s)), 2, 0), "loss at step %d", s);
        CHECK(near(&img, px_x(pr, s), px_y(pr, cls_lr(s)), 2, 0), "lr at step %d", s);
    }
    /* Eval points: a marker at each evaluation, none anywhere else; nothing before the first
     * evaluation and nothing at 0 (empty fields are not zeros). */
    for (int i = 0; i < 5; i++) {
        const int s = 200 * (i + 1);
        CHECK(solid(&img, px_x(pe, s), px_y(pe, 100 * cls_top1(i)), 1, 0), "top1 marker %d", s);
        CHECK(solid(&img, px_x(pe, s), px_y(pe, 100 * cls_top5(i)), 1, 1), "top5 marker %d", s);
    }
    int stray = 0;
    for (int y = pe->y0 + 2; y < pe->y1 - 1; y++)
        for (int x = pe->x0 + 2; x < pe->x1 - 1; x++) {
            if (!solid(&img, x, y, 2, 0)) continue;
            int hit = 0;
            for (int i = 0; i < 5; i++)
                hit |= abs(x - px_x(pe, 200 * (i + 1))) <= 2 &&
                       abs(y - px_y(pe, 100 * cls_top1(i))) <= 2;
            stray += !hit;
        }
    CHECK(stray == 0, "%d marker-like blocks away from the evaluations", stray);
    CHECK(count_rgb(&img, 0, pe->x0, pe->y0, px_x(pe, 200) - 4, pe->y1 + 1, NULL) == 0,
          "eval line before the first evaluation");
    CHECK(count_rgb(&img, 0, pe->x0, px_y(pe, 30) + 5, pe->x1 + 1, pe->y1 + 1, NULL) == 0,
          "eval points below the lowest value (empty fields read as 0?)");
    sn_image_free(&img);
}

static void test_detector(void) {
    char csv[512], png[512], tmp[600];
    tmp_path(csv, sizeof csv, "det.csv");
    tmp_path(png, sizeof png, "det.png");
    write_det_log(csv);
    sn_image img = {0}, back = {0};
    sn_plot_layout L;
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    if (!img.pixels) return;
    check_frame(&img, &L);
    const sn_plot_panel *pl = &L.panel[0], *pr = &L.panel[1], *pe = &L.panel[2];
    CHECK(pl->n_series == 3 && pr->n_series == 1 && pe->n_series == 2, "series %d %d %d",
          pl->n_series, pr->n_series, pe->n_series);
    CHECK(pl->log_y && pow(10, pl->ymin) <= 0.6 * det_loss(2000) && pow(10, pl->ymax) >= 4,
          "loss axis 10^%g .. 10^%g (log %d)", pl->ymin, pl->ymax, pl->log_y);
    /* The learning rate stays linear although it spans four decades. */
    CHECK(!pr->log_y && pr->ymin <= 1e-5 && pr->ymax >= 0.08, "lr axis %g .. %g (log %d)",
          pr->ymin, pr->ymax, pr->log_y);
    for (int k = 0; k < 3; k++) {
        CHECK(in_panel(&img, pl, k) > 300, "loss series %d not drawn", k);
        CHECK(falls(&img, pl, k), "loss series %d does not fall", k);
        CHECK(count_rgb(&img, k, 0, pl->y0 - 30, img.width, pl->y0 - 6, NULL) > 10,
              "no legend entry for loss series %d", k);
    }
    const int steps[] = {10, 100, 500, 1000, 1500, 1990};
    for (int i = 0; i < 6; i++) {
        const int s = steps[i];
        CHECK(near(&img, px_x(pl, s), px_y(pl, det_loss(s)), 2, 0), "loss at step %d", s);
        CHECK(near(&img, px_x(pl, s), px_y(pl, 0.6 * det_loss(s)), 2, 1), "loss_cls at %d", s);
        CHECK(near(&img, px_x(pl, s), px_y(pl, 0.4 * det_loss(s)), 2, 2), "loss_box at %d", s);
        CHECK(near(&img, px_x(pr, s), px_y(pr, det_lr(s)), 2, 0), "lr at step %d", s);
    }
    for (int i = 0; i < 4; i++) {
        const int s = 500 * (i + 1);
        /* Colours in header order: eval_AP50 comes first in this log. */
        CHECK(solid(&img, px_x(pe, s), px_y(pe, 100 * det_ap(i)), 1, 1), "AP marker %d", s);
        CHECK(solid(&img, px_x(pe, s), px_y(pe, 100 * det_ap50(i)), 1, 0), "AP50 marker %d", s);
    }

    /* The PNG file holds the same picture; no temporary file is left; it can be overwritten. */
    CHECK_OK(sn_plot_train_log(csv, png, NULL));
    CHECK_OK(sn_plot_train_log(csv, png, NULL));
    snprintf(tmp, sizeof tmp, "%s.tmp", png);
    CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", png, (long)getpid());
    CHECK(access(tmp, F_OK) != 0, "%s left behind", tmp);
    CHECK_OK(sn_image_load(png, &back));
    CHECK(back.pixels && back.width == img.width && back.height == img.height &&
              memcmp(back.pixels, img.pixels, (size_t)img.width * img.height * 3) == 0,
          "the PNG differs from the rendered image");
    sn_image_free(&back);
    sn_image_free(&img);

    /* Options: size and title (text on the top line only when there is a title). */
    sn_plot_options o = {.width = 640, .height = 480, .title = "a title"};
    CHECK_OK(sn_plot_render(csv, &o, &img, &L));
    CHECK(img.width == 640 && img.height == 480, "size %dx%d", img.width, img.height);
    if (img.pixels) {
        check_frame(&img, &L);
        CHECK(text_in(&img, 0, 0, img.width, L.panel[0].y0 - 14) > 20, "no title drawn");
        CHECK(near(&img, px_x(&L.panel[0], 1000), px_y(&L.panel[0], det_loss(1000)), 2, 0),
              "small figure: loss at step 1000");
    }
    sn_image_free(&img);
    o.title = "";
    CHECK_OK(sn_plot_render(csv, &o, &img, &L));
    if (img.pixels)
        CHECK(text_in(&img, 0, 0, img.width, L.panel[0].y0 - 14) == 0, "text without a title");
    sn_image_free(&img);
    o.width = 100;
    CHECK(sn_plot_render(csv, &o, &img, &L) == SN_ERR_INVALID_ARG && !img.pixels,
          "100 px wide accepted");
}

/* Logs with little in them still give a picture; panels without data say so. */
static void test_sparse(void) {
    char csv[512];
    tmp_path(csv, sizeof csv, "sparse.csv");
    sn_image img = {0};
    sn_plot_layout L;
    CHECK(write_text(csv, "step,loss\n1,2\nnan,5\n2,1.5\n3,1.2\n"), "write");
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    CHECK(L.panel[0].n_series == 1 && L.panel[1].n_series == 0 && L.panel[2].n_series == 0,
          "series %d %d %d", L.panel[0].n_series, L.panel[1].n_series, L.panel[2].n_series);
    CHECK(L.panel[0].xmin <= 1 && L.panel[0].xmax >= 3 && L.panel[0].ymax < 5,
          "the row with a nan step was plotted");
    for (int i = 1; i < 3 && img.pixels; i++) {
        const sn_plot_panel *p = &L.panel[i];
        long ink = 0; /* the grey "no data" text: darker than the grid, lighter than labels */
        for (int y = p->y0 + 1; y < p->y1; y++)
            for (int x = p->x0 + 1; x < p->x1; x++) {
                const uint8_t *q = img.pixels + ((size_t)y * img.width + x) * 3;
                ink += q[0] < 200 && q[0] == q[1] && q[1] == q[2];
            }
        CHECK(ink > 50, "panel %d without data says nothing (%ld)", i, ink);
    }
    sn_image_free(&img);
    /* The step axis ends at the last step (6559), not at the next nice tick (8000); its ticks
     * stay nice. */
    CHECK(write_text(csv, "step,loss,lr\n1,2,0.1\n3000,1.5,0.05\n6559,1.2,0\n"), "write");
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    for (int i = 0; i < 3; i++)
        CHECK(L.panel[i].xmin == 0 && L.panel[i].xmax == 6559, "panel %d: steps %g .. %g", i,
              L.panel[i].xmin, L.panel[i].xmax);
    sn_image_free(&img);
    /* Values at the edges of what doubles hold: a picture (or an error), no hang, no UB. */
    const char *edge[] = {"step,loss\n1,1e308\n2,-1e308\n3,1\n",
                          "step,loss\n1,1\n2,1.0000000000000002\n",
                          "step,loss,lr\n1e299,1,1\n-1e299,2,1\n1e308,3,1e-300\n",
                          "step,loss\n5,1e-310\n6,1e-300\n7,1e30\n",
                          "step,loss\n0,0\n0,0\n"};
    for (int i = 0; i < 5; i++) {
        CHECK(write_text(csv, edge[i]), "write");
        CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
        CHECK(img.pixels && in_panel(&img, &L.panel[0], 0) > 0, "edge case %d: no loss drawn", i);
        sn_image_free(&img);
    }
    CHECK(write_text(csv, "step,eval_top1\n100,0.5\n"), "write");
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    if (img.pixels)
        CHECK(L.panel[2].n_series == 1 && in_panel(&img, &L.panel[2], 0) >= 9,
              "a single evaluation is not drawn");
    sn_image_free(&img);
}

/* Each bad log fails with a message that names the file (and the line where there is one),
 * and writes no PNG. */
static void expect_error(const char *name, const char *text, const char *want) {
    char csv[512], png[512], msg[1024];
    tmp_path(csv, sizeof csv, name);
    tmp_path(png, sizeof png, "bad.png");
    if (text) CHECK(write_text(csv, text), "write %s", csv);
    sn_status st = sn_plot_train_log(csv, png, NULL);
    snprintf(msg, sizeof msg, "%s", sn_last_error());
    CHECK(st != SN_OK, "%s: accepted", name);
    CHECK(has(msg, csv), "%s: message does not name the file: %s", name, msg);
    CHECK(has(msg, want), "%s: message lacks '%s': %s", name, want, msg);
    CHECK(access(png, F_OK) != 0, "%s: a PNG was written", name);
}

static void test_errors(void) {
    expect_error("missing.csv", NULL, "cannot open");
    expect_error("empty.csv", "", "empty");
    expect_error("blank.csv", "\r\n  \n", "empty");
    expect_error("nostep.csv", "epoch,loss,lr\n1,2,0.1\n", "step");
    expect_error("short.csv", "step,loss,lr\n1,2,0.1\n\n2,1.5\n3,1,0.1\n", ":4:");
    expect_error("long.csv", "step,loss,lr\r\n1,2,0.1\r\n2,1.5,0.1,7\r\n", ":3:");
    expect_error("word.csv", "step,loss\n1,2\n2,abc\n", ":3:");
    expect_error("word2.csv", "step,loss\n1,2\n2,1.5x\n", "1.5x");
    expect_error("header.csv", "step,loss,lr,eval_top1\n", "no rows to plot");
    expect_error("nan.csv", "step,loss,lr\n1,nan,\n2,inf,\n", "no rows to plot");
    expect_error("other.csv", "step,images_per_s\n1,300\n", "no rows to plot");
    /* A short last line is a row still being written only without its newline. */
    expect_error("cutdone.csv", "step,loss,lr\n1,2,0.1\n2,1.5\n", ":3:");

    char csv[512], png[600];
    tmp_path(csv, sizeof csv, "ok.csv");
    CHECK(write_text(csv, "step,loss\n1,2\n2,1\n"), "write");
    tmp_path(png, sizeof png, "no/such/dir/x.png");
    CHECK(sn_plot_train_log(csv, png, NULL) == SN_ERR_IO && has(sn_last_error(), png),
          "unwritable output: %s", sn_last_error());
    sn_image img;
    sn_plot_layout L;
    CHECK(write_text(csv, "step,loss,lr\n1,2,0.1\n2,1.5,0.1\n3,1."), "write");
    CHECK_OK(sn_plot_render(csv, NULL, &img, &L));
    CHECK(L.panel[0].xmax == 2, "the row being written is left out: axis to %g", L.panel[0].xmax);
    sn_image_free(&img);
    CHECK(sn_plot_render(NULL, NULL, &img, NULL) == SN_ERR_INVALID_ARG, "NULL csv accepted");
    CHECK(sn_plot_train_log(csv, NULL, NULL) == SN_ERR_INVALID_ARG, "NULL png accepted");
}

/* Every allocation failing in turn: reported as out of memory, nothing leaked (ASan). */
static void test_oom(void) {
    char csv[512], png[512];
    tmp_path(csv, sizeof csv, "cls.csv");
    tmp_path(png, sizeof png, "oom.png");
    int n = 1;
    for (; n < 100; n++) {
        sn_alloc_fail_after(n);
        sn_status st = sn_plot_train_log(csv, png, NULL);
        sn_alloc_fail_after(0);
        if (st == SN_OK) break;
        CHECK(st == SN_ERR_OOM, "failure %d reported as %s: %s", n, sn_status_name(st),
              sn_last_error());
    }
    CHECK(n > 3 && n < 100, "plot succeeded after %d injected failures", n);
}

/* The same picture (size and pixels). */
static int same_image(const sn_image *a, const sn_image *b) {
    return a->pixels && b->pixels && a->width == b->width && a->height == b->height &&
           memcmp(a->pixels, b->pixels, (size_t)a->width * a->height * 3) == 0;
}

/* Without --title the figure is titled with the run's name, the folder that holds its
 * train_log.csv, not "train_log.csv" (the same for every run); "." is looked up. */
static void test_default_title(void) {
    char dir[512], csv[600], cwd[4096];
    tmp_path(dir, sizeof dir, "fm-run7");
    CHECK(mkdir(dir, 0777) == 0, "mkdir %s", dir);
    snprintf(csv, sizeof csv, "%s/train_log.csv", dir);
    write_cls_log(csv);
    sn_image def = {0}, named = {0}, file = {0}, here = {0};
    sn_plot_options o = {.title = "fm-run7"};
    CHECK_OK(sn_plot_render(csv, NULL, &def, NULL));
    CHECK_OK(sn_plot_render(csv, &o, &named, NULL));
    o.title = "train_log.csv";
    CHECK_OK(sn_plot_render(csv, &o, &file, NULL));
    CHECK(same_image(&def, &named), "the default title is not the folder's name");
    CHECK(!same_image(&def, &file), "the default title is the CSV's file name");
    if (getcwd(cwd, sizeof cwd) && chdir(dir) == 0) {
        CHECK_OK(sn_plot_render("./train_log.csv", NULL, &here, NULL));
        CHECK(same_image(&here, &named), "./train_log.csv is not titled with the folder's name");
        sn_image_free(&here);
        CHECK_OK(sn_plot_render("train_log.csv", NULL, &here, NULL));
        CHECK(same_image(&here, &named), "train_log.csv is not titled with the folder's name");
        CHECK(chdir(cwd) == 0, "chdir back");
    }
    sn_image_free(&def);
    sn_image_free(&named);
    sn_image_free(&file);
    sn_image_free(&here);
    /* a log copied under a name of its own (models/<name>.train_log.csv) is titled with it */
    snprintf(csv, sizeof csv, "%s/fm.train_log.csv", dir);
    write_cls_log(csv);
    o.title = "fm.train_log.csv";
    CHECK_OK(sn_plot_render(csv, NULL, &def, NULL));
    CHECK_OK(sn_plot_render(csv, &o, &named, NULL));
    CHECK(same_image(&def, &named), "a log with a name of its own is not titled with it");
    sn_image_free(&def);
    sn_image_free(&named);
}

/* Several logs: one colour per log in every panel, each run's AP markers where its values
 * are; --x time maps train_s (minutes under two hours, hours past them) and refuses a log
 * without it. */
static void write_timed_log(const char *path, double secs_per_step, double ap_scale) {
    FILE *f = fopen(path, "w");
    CHECK(f != NULL, "cannot write %s", path);
    if (!f) return;
    fprintf(f, "step,epoch,lr,loss,loss_cls,loss_box,train_top1,images_per_s,train_s,eval_AP,"
               "eval_AP50\n");
    for (int s = 1; s <= 400; s++) {
        fprintf(f, "%d,1,%.6g,%.6g,,,,10,%.3f,", s, 0.01 * ap_scale, 3.0 * exp(-s / 100.0) + 0.5 * ap_scale,
                s * secs_per_step);
        if (s % 100 == 0) fprintf(f, "%.6g,%.6g\n", ap_scale * s / 1000.0, 0.5);
        else fprintf(f, ",\n");
    }
    fclose(f);
}

static void test_compare(void) {
    char a[300], b[300], c[300];
    tmp_path(a, sizeof a, "slow.csv");
    tmp_path(b, sizeof b, "fast.csv");
    tmp_path(c, sizeof c, "cls.csv");
    write_timed_log(a, 3.0, 1.0); /* 400 steps in 20 min, AP up to 40 % */
    write_timed_log(b, 1.5, 0.5); /* 400 steps in 10 min, AP up to 20 % */
    write_cls_log(c);
    const char *ab[2] = {a, b};
    sn_image img = {0};
    sn_plot_layout L;
    CHECK_OK(sn_plot_render_logs(ab, 2, NULL, &img, &L));
    for (int p = 0; p < 3; p++)
        CHECK(in_panel(&img, &L.panel[p], 0) > 20 && in_panel(&img, &L.panel[p], 1) > 20 &&
                  in_panel(&img, &L.panel[p], 2) == 0,
              "panel %d: one line per log, in colours 0 and 1", p);
    const sn_plot_panel *e = &L.panel[2];
    CHECK(e->xmin == 0 || e->xmin == 1, "step axis from the first step, got %g", e->xmin);
    CHECK(fabs(e->xmax - 400) < 1e-9, "step axis to 400, got %g", e->xmax);
    /* AP 40 % of the slow run and 20 % of the fast one at step 400: markers of their colours. */
    CHECK(solid(&img, px_x(e, 400), px_y(e, 40), 2, 0), "slow run's AP marker at step 400");
    CHECK(solid(&img, px_x(e, 400), px_y(e, 20), 2, 1), "fast run's AP marker at step 400");
    sn_image_free(&img);

    /* Against time: the fast run ends at 10 min, the slow at 20 (the axis' end). */
    sn_plot_options o = {.x = SN_PLOT_X_TIME};
    CHECK_OK(sn_plot_render_logs(ab, 2, &o, &img, &L));
    e = &L.panel[2];
    CHECK(fabs(e->xmax - 20) < 1e-9, "time axis to 20 min, got %g", e->xmax);
    CHECK(solid(&img, px_x(e, 20), px_y(e, 40), 2, 0), "slow run's last AP at 20 min");
    CHECK(solid(&img, px_x(e, 10), px_y(e, 20), 2, 1), "fast run's last AP at 10 min");
    CHECK(!near(&img, px_x(e, 20), px_y(e, 20), 4, 1), "no fast-run marker at 20 min");
    sn_image_free(&img);

    /* Past two hours the unit is the hour. */
    write_timed_log(a, 36.0, 1.0); /* 400 steps in 4 h */
    CHECK_OK(sn_plot_render_logs(ab, 2, &o, &img, &L));
    CHECK(fabs(L.panel[2].xmax - 4) < 1e-9, "time axis to 4 h, got %g", L.panel[2].xmax);
    sn_image_free(&img);

    /* A log without train_s cannot go on a time axis: the error names it. */
    const char *ac[2] = {a, c};
    CHECK(sn_plot_render_logs(ac, 2, &o, &img, &L) == SN_ERR_FORMAT &&
              has(sn_last_error(), "cls.csv") && has(sn_last_error(), "train_s"),
          "time axis without train_s: '%s'", sn_last_error());
    CHECK(img.pixels == NULL, "no image on error");
    /* A classifier and a detector together: each its own first metric, no metric in the title. */
    CHECK_OK(sn_plot_render_logs(ac, 2, NULL, &img, &L));
    CHECK(in_panel(&img, &L.panel[2], 0) > 0 && in_panel(&img, &L.panel[2], 1) > 0,
          "both runs' metrics drawn");
    sn_image_free(&img);
    const char *many[13] = {a, a, a, a, a, a, a, a, a, a, a, a, a};
    CHECK(sn_plot_render_logs(many, 13, NULL, &img, &L) == SN_ERR_INVALID_ARG,
          "13 logs refused");
}

int main(void) {
    double t0 = now_s();
    if (t_make_tmpdir(g_tmp, sizeof g_tmp, "sn_plot") != 0) return 1;
    test_classifier();
    test_detector();
    test_sparse();
    test_default_title();
    test_compare();
    test_errors();
    test_oom();
    t_rm_tree(g_tmp);
    printf("test_plot: %.2f s\n", now_s() - t0);
    return TEST_SUMMARY();
}
