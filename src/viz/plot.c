/* Training-curve plots (plot.h): a small reader for train_log.csv and a three-panel line chart
 * drawn with the rectangles and 5x7 font of draw.h. */
#define _XOPEN_SOURCE 700 /* realpath: the name of the folder "." stands for */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "draw.h"
#include "plot.h"

#define MAX_SERIES 12 /* per panel; eval columns beyond this are left out */
#define INSET 4       /* pixels between the frame and the plotted range */

static const uint8_t k_palette[][3] = {{31, 119, 180},  {255, 127, 14},  {44, 160, 44},
                                       {214, 39, 40},   {148, 103, 189}, {140, 86, 75},
                                       {227, 119, 194}, {23, 190, 207}};
static const uint8_t k_text[3] = {20, 20, 20}, k_frame[3] = {90, 90, 90},
                     k_grid[3] = {228, 228, 228}, k_faint[3] = {150, 150, 150};

void sn_plot_colour(int k, uint8_t rgb[3]) {
    const int n = (int)(sizeof k_palette / sizeof k_palette[0]);
    memcpy(rgb, k_palette[((k % n) + n) % n], 3);
}

/* ---- The log ------------------------------------------------------------------------------- */

typedef struct {
    char *text;   /* the whole file, NUL-terminated; the names point into it */
    char **names; /* [ncols] */
    double *v;    /* [nrows][ncols]; NAN where the field is empty */
    int ncols, nrows;
} csv_log;

static void log_free(csv_log *lg) {
    sn_free(lg->text);
    sn_free(lg->names);
    sn_free(lg->v);
    memset(lg, 0, sizeof *lg);
}

/* Cut the next line out of *p (NUL-terminating it, CR dropped); NULL at the end. */
static char *next_line(char **p) {
    if (!**p) return NULL;
    char *line = *p, *nl = strchr(line, '\n');
    *p = nl ? nl + 1 : line + strlen(line);
    if (nl) *nl = 0;
    size_t n = strlen(line);
    if (n && line[n - 1] == '\r') line[n - 1] = 0;
    return line;
}

static char *trim(char *s) {
    while (*s == ' ' || *s == '\t') s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t')) *--e = 0;
    return s;
}

/* Split a line at commas in place; stores at most `max` trimmed fields, returns the count. */
static int split(char *line, char **f, int max) {
    int n = 0;
    for (char *p = line;; n++) {
        char *c = strchr(p, ',');
        if (c) *c = 0;
        if (n < max) f[n] = trim(p);
        if (!c) return n + 1;
        p = c + 1;
    }
}

static sn_status parse_log(const char *path, csv_log *lg) {
    memset(lg, 0, sizeof *lg);
    sn_status st = sn_read_file(path, &lg->text, NULL);
    if (st != SN_OK) return st;
    char *p = lg->text, *line, **fields = NULL;
    const size_t len = strlen(lg->text);
    const int open_end = len > 0 && lg->text[len - 1] != '\n';
    if (!strncmp(p, "\xEF\xBB\xBF", 3)) p += 3; /* a UTF-8 byte-order mark */
    int max_rows = 1, lineno = 0;
    for (const char *q = p; *q; q++) max_rows += *q == '\n';
    while ((line = next_line(&p)) != NULL && (lineno++, !*trim(line))) {}
    if (!line) {
        st = sn_error(SN_ERR_FORMAT, "%s: empty file (no header line)", path);
        goto fail;
    }
    lg->ncols = 1;
    for (const char *q = line; *q; q++) lg->ncols += *q == ',';
    if (!(lg->names = sn_alloc(sizeof(char *) * (size_t)lg->ncols)) ||
        !(fields = sn_alloc(sizeof(char *) * (size_t)lg->ncols)) ||
        !(lg->v = sn_alloc(sizeof(double) * (size_t)lg->ncols * (size_t)max_rows))) {
        st = SN_ERR_OOM;
        goto fail;
    }
    split(line, lg->names, lg->ncols);
    int step_col = -1;
    for (int c = 0; c < lg->ncols; c++)
        if (!strcmp(lg->names[c], "step")) step_col = c;
    if (step_col < 0) {
        st = sn_error(SN_ERR_FORMAT, "%s:%d: no 'step' column in the header", path, lineno);
        goto fail;
    }
    while ((line = next_line(&p)) != NULL) {
        lineno++;
        if (!*trim(line)) continue; /* blank lines (a trailing one, say) are skipped */
        const int n = split(line, fields, lg->ncols);
        /* A last line cut short without its newline is a row being written by a run still
         * in progress: left out. */
        if (n < lg->ncols && !*p && open_end) break;
        if (n != lg->ncols) {
            st = sn_error(SN_ERR_FORMAT, "%s:%d: %d fields, but the header has %d", path, lineno, n,
                          lg->ncols);
            goto fail;
        }
        double *row = lg->v + (size_t)lg->nrows * lg->ncols;
        for (int c = 0; c < n; c++) {
            char *end = NULL;
            row[c] = *fields[c] ? strtod(fields[c], &end) : NAN; /* accepts nan and inf too */
            if (*fields[c] && (end == fields[c] || *end)) {
                st = sn_error(SN_ERR_FORMAT, "%s:%d: column '%s': '%s' is not a number", path,
                              lineno, lg->names[c], fields[c]);
                goto fail;
            }
        }
        lg->nrows++;
    }
    sn_free(fields);
    return SN_OK;
fail:
    sn_free(fields);
    log_free(lg);
    return st;
}

/* ---- Axes ---------------------------------------------------------------------------------- */

typedef struct {
    double lo, hi, step; /* ticks at lo, lo + step, ..., hi */
    int log;             /* values are log10; labels show 10^t */
} axis;

/* [lo, hi] padded by `pad` of its length (but not below 0 when lo >= 0, nor above `top` when
 * hi <= top: percentages stay within 0 .. 100), then widened to multiples of the largest step
 * of 1, 2 or 5 x 10^k that leaves at most 5 intervals (4-6 ticks, mostly). */
static axis nice_axis(double lo, double hi, double pad, double top) {
    if (!(hi - lo > 1e-9 * fmax(fabs(lo), fabs(hi)))) { /* one value: a band around it */
        const double d = lo != 0 ? fabs(lo) * 0.1 : 1;
        lo -= d, hi += d;
    }
    const double r = hi - lo;
    lo = lo >= 0 && lo - pad * r < 0 ? 0 : lo - pad * r;
    hi = hi <= top && hi + pad * r > top ? top : hi + pad * r;
    const double mag = pow(10, floor(log10(r / 6)));
    static const double m[] = {1, 2, 5, 10, 20, 50, 100};
    axis a = {lo, hi, hi - lo, 0};
    for (size_t i = 0; i < sizeof m / sizeof m[0]; i++) {
        const double s = m[i] * mag, a0 = floor(lo / s + 1e-9), a1 = ceil(hi / s - 1e-9);
        if (a1 - a0 <= 5) {
            a.lo = a0 * s, a.hi = a1 * s, a.step = s;
            break;
        }
    }
    return a;
}

/* Decades around [lo, hi] (already log10), one tick per decade or per two beyond six. */
static axis log_axis(double lo, double hi) {
    axis a = {floor(lo), ceil(hi), 1, 1};
    if (a.hi <= a.lo) a.hi = a.lo + 1;
    a.step = ceil((a.hi - a.lo) / 6);
    a.hi = a.lo + a.step * ceil((a.hi - a.lo) / a.step);
    return a;
}

static void tick_label(char *buf, size_t cap, const axis *a, double t) {
    if (a->log)
        t = pow(10, t);
    else if (fabs(t) < a->step * 1e-9)
        t = 0; /* not -1.4e-17 */
    snprintf(buf, cap, "%g", t);
}

/* The index of the last tick; 0 for an axis that went wrong. */
static int last_tick(const axis *a) {
    const double n = (a->hi - a->lo) / a->step;
    return n >= 0 && n <= 100 ? (int)floor(n + 1e-9) : 0;
}

static int map(double v, double lo, double hi, int p0, int p1) {
    double p = p0 + (v - lo) / (hi - lo) * (p1 - p0);
    return (int)lround(p > -1e6 ? (p < 1e6 ? p : 1e6) : -1e6); /* NaN too */
}

/* ---- Drawing ------------------------------------------------------------------------------- */

/* Fill [x0, x1) x [y0, y1) clipped to the inside of the frame fr (x0, y0, x1, y1 inclusive). */
static void fill_in(sn_image *img, const int fr[4], int x0, int y0, int x1, int y1,
                    const uint8_t rgb[3]) {
    sn_draw_fill(img, x0 > fr[0] + 1 ? x0 : fr[0] + 1, y0 > fr[1] + 1 ? y0 : fr[1] + 1,
                 x1 < fr[2] ? x1 : fr[2], y1 < fr[3] ? y1 : fr[3], rgb);
}

/* A 2-pixel-wide line (Bresenham, a 2x2 brush), clipped to the plot area. */
static void draw_line(sn_image *img, const int fr[4], int xa, int ya, int xb, int yb,
                      const uint8_t rgb[3]) {
    const int dx = abs(xb - xa), sx = xa < xb ? 1 : -1, dy = -abs(yb - ya), sy = ya < yb ? 1 : -1;
    for (int err = dx + dy;;) {
        fill_in(img, fr, xa, ya, xa + 2, ya + 2, rgb);
        if (xa == xb && ya == yb) break;
        const int e2 = 2 * err;
        if (e2 >= dy) err += dy, xa += sx;
        if (e2 <= dx) err += dx, ya += sy;
    }
}

/* One line of a panel: a column of a log, drawn against the log's x column (steps, or training
 * seconds) times xscale. */
typedef struct {
    const csv_log *lg;
    int xcol, col, colour;
    double xscale;
    const char *label;
} series;

/* What one panel shows: its lines, each with its colour and legend label. */
typedef struct {
    const char *title;
    series sr[MAX_SERIES];
    int n;
    double scale; /* 100 for fractions shown as percentages */
    double top;   /* the largest value that makes sense (100 %), or INFINITY */
    int allow_log, markers, legend;
} panel_def;

/* The x of row r of a series; NAN when not plottable. */
static double xval(const series *q, int r) {
    const double x = q->lg->v[(size_t)r * q->lg->ncols + q->xcol] * q->xscale;
    return fabs(x) < 1e300 ? x : NAN;
}

/* The value drawn for row r of a series: scaled, log10 on a log axis; NAN when not plottable
 * (beyond 1e300 counts as infinite: the axis arithmetic would overflow). */
static double value(const series *q, int r, const panel_def *d, int logy) {
    const double v = q->lg->v[(size_t)r * q->lg->ncols + q->col] * d->scale;
    if (!isfinite(xval(q, r)) || !(fabs(v) < 1e300) || (logy && v <= 0)) return NAN;
    return logy ? log10(v) : v;
}

/* Add column c of lg (if present, c >= 0, and with a value to plot) to the panel as colour k. */
static void add_series(panel_def *d, const csv_log *lg, int xcol, double xscale, int c, int k,
                       const char *label) {
    if (c < 0 || xcol < 0 || d->n == MAX_SERIES) return;
    series q = {lg, xcol, c, k, xscale, label};
    for (int r = 0; r < lg->nrows; r++)
        if (isfinite(value(&q, r, d, 0))) {
            d->sr[d->n++] = q;
            return;
        }
}

static int find_col(const csv_log *lg, const char *name) {
    for (int c = 0; c < lg->ncols; c++)
        if (!strcmp(lg->names[c], name)) return c;
    return -1;
}

/* One panel inside the band [top, top + h): title, legend, grid, ticks, series, frame. */
static void draw_panel(sn_image *img, const panel_def *d, const axis *ax, int top, int h, int s,
                       sn_plot_panel *pn) {
    const int ch = 7 * s, cw = 6 * s;
    /* The frame; the axis ranges map a few pixels inside it, so that nothing sits on it. */
    const int fr[4] = {8 * cw + 4 * s, top + ch + 4 * s, img->width - 1 - 3 * cw,
                       top + h - ch - 4 * s};
    pn->x0 = fr[0] + INSET, pn->y0 = fr[1] + INSET, pn->x1 = fr[2] - INSET, pn->y1 = fr[3] - INSET;
    pn->xmin = ax->lo, pn->xmax = ax->hi, pn->n_series = d->n;
    /* The y range over every series of the panel, on a log axis past two decades. */
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < d->n; i++)
        for (int r = 0; r < d->sr[i].lg->nrows; r++) {
            const double v = value(&d->sr[i], r, d, 0);
            if (v < lo) lo = v;
            if (v > hi) hi = v;
        }
    const int logy = d->allow_log && d->n && lo > 0 && hi > 100 * lo;
    const axis ay = logy ? log_axis(log10(lo), log10(hi))
                         : nice_axis(d->n ? lo : 0, d->n ? hi : 1, 0.04, d->top);
    pn->ymin = ay.lo, pn->ymax = ay.hi, pn->log_y = logy;
    char buf[64];
    for (int i = 0; i <= last_tick(&ay); i++) {
        const double t = ay.lo + i * ay.step;
        const int y = map(t, ay.lo, ay.hi, pn->y1, pn->y0);
        sn_draw_fill(img, fr[0], y, fr[2], y + 1, k_grid);
        tick_label(buf, sizeof buf, &ay, t);
        sn_draw_text(img, fr[0] - 2 * s - sn_draw_text_width(buf, s), y - ch / 2, buf, s, k_text);
    }
    for (int i = 0; i <= last_tick(ax); i++) {
        const double t = ax->lo + i * ax->step;
        const int x = map(t, ax->lo, ax->hi, pn->x0, pn->x1);
        sn_draw_fill(img, x, fr[1], x + 1, fr[3], k_grid);
        tick_label(buf, sizeof buf, ax, t);
        sn_draw_text(img, x - sn_draw_text_width(buf, s) / 2, fr[3] + 3 * s, buf, s, k_text);
    }
    /* Lines join consecutive plottable points, across rows where the column is empty. */
    for (int pass = 0; pass < 1 + d->markers; pass++)
        for (int i = 0; i < d->n; i++) {
            uint8_t rgb[3];
            const series *q = &d->sr[i];
            sn_plot_colour(q->colour, rgb);
            int px = 0, py = 0, have = 0;
            for (int r = 0; r < q->lg->nrows; r++) {
                const double v = value(q, r, d, logy);
                if (!isfinite(v)) continue;
                const int x = map(xval(q, r), ax->lo, ax->hi, pn->x0, pn->x1);
                const int y = map(v, ay.lo, ay.hi, pn->y1, pn->y0);
                if (pass)
                    fill_in(img, fr, x - 3, y - 3, x + 4, y + 4, rgb); /* a 7x7 marker */
                else if (have)
                    draw_line(img, fr, px, py, x, y, rgb);
                else
                    fill_in(img, fr, x - 1, y - 1, x + 2, y + 2, rgb); /* seen if it is alone */
                px = x, py = y, have = 1;
            }
        }
    if (!d->n) {
        const char *msg = "no data";
        sn_draw_text(img, (pn->x0 + pn->x1 - sn_draw_text_width(msg, s)) / 2,
                     (pn->y0 + pn->y1 - ch) / 2, msg, s, k_faint);
    }
    sn_draw_box(img, fr[0], fr[1], fr[2], fr[3], 1, k_frame);
    snprintf(buf, sizeof buf, "%s%s", d->title, logy ? " (log scale)" : "");
    sn_draw_text(img, fr[0], top + s, buf, s, k_text);
    if (!d->legend || !d->n) return;
    /* Legend on the title line, right-aligned: a colour swatch, then the name, per series. */
    int w = 0;
    for (int i = 0; i < d->n; i++)
        w += 3 * cw + sn_draw_text_width(d->sr[i].label, s) + (i ? 2 * cw : 0);
    int x = fr[2] - w;
    for (int i = 0; i < d->n; i++) {
        uint8_t rgb[3];
        sn_plot_colour(d->sr[i].colour, rgb);
        sn_draw_fill(img, x, top + s + ch / 2 - s, x + 2 * cw, top + 2 * s + ch / 2, rgb);
        x += 3 * cw;
        x += sn_draw_text(img, x, top + s, d->sr[i].label, s, k_text) + 2 * cw;
    }
}

/* ---- The figure ---------------------------------------------------------------------------- */

/* The default title: the name of the run. Every run's log is train_log.csv, so that names the
 * folder holding it (runs/fm/train_log.csv -> "fm"), as written in the path ("." and ".."
 * looked up); a log copied under a name of its own (models/fashion-det-detector.train_log.csv)
 * is named by it, and so is one at the root. buf: PATH_MAX bytes. */
static const char *run_name(const char *csv_path, char *buf) {
    const char *slash = strrchr(csv_path, '/');
    const char *file = slash ? slash + 1 : csv_path;
    size_t n = slash ? (size_t)(slash - csv_path) : 0;
    if (strcmp(file, "train_log.csv") != 0 || n >= PATH_MAX) return file;
    memcpy(buf, csv_path, n);
    buf[n] = 0;
    while (n > 0 && buf[n - 1] == '/') buf[--n] = 0;
    const char *last = strrchr(buf, '/');
    last = last ? last + 1 : buf;
    if (!slash || !strcmp(last, "") || !strcmp(last, ".") || !strcmp(last, "..")) {
        char dir[PATH_MAX];
        snprintf(dir, sizeof dir, "%s", slash ? (n ? buf : "/") : ".");
        if (!realpath(dir, buf)) return file;
        last = strrchr(buf, '/');
        last = last ? last + 1 : buf;
    }
    return *last ? last : file;
}

/* The figure of n logs: one log draws its loss parts, learning rate and every eval_* column;
 * several draw one line per log in each panel (its loss, its learning rate, its first eval_*
 * column), in the log's colour. */
static sn_status render(const char *const *paths, int n, const sn_plot_options *opt, sn_image *out,
                        sn_plot_layout *layout) {
    if (out) memset(out, 0, sizeof *out);
    if (!paths || !out || n < 1) return sn_error(SN_ERR_INVALID_ARG, "sn_plot_render: no log");
    if (n > MAX_SERIES)
        return sn_error(SN_ERR_INVALID_ARG, "plot: %d logs; at most %d fit in one figure", n,
                        MAX_SERIES);
    for (int i = 0; i < n; i++)
        if (!paths[i]) return sn_error(SN_ERR_INVALID_ARG, "sn_plot_render: NULL path");
    const int W = opt && opt->width > 0 ? opt->width : 960;
    const int H = opt && opt->height > 0 ? opt->height : 900;
    if (W < 200 || H < 200 || W > 8192 || H > 8192)
        return sn_error(SN_ERR_INVALID_ARG, "plot size %dx%d: each side must be 200 .. 8192", W, H);
    const int by_time = opt && opt->x == SN_PLOT_X_TIME;
    csv_log lg[MAX_SERIES];
    int xcol[MAX_SERIES];
    char(*names)[PATH_MAX] = sn_alloc(sizeof *names * (size_t)n);
    if (!names) return SN_ERR_OOM;
    memset(lg, 0, sizeof lg);
    sn_status st = SN_OK;
    double tmax = 0;
    int nparsed = 0;
    for (int i = 0; i < n && st == SN_OK; i++, nparsed++) {
        if ((st = parse_log(paths[i], &lg[i])) != SN_OK) break;
        xcol[i] = find_col(&lg[i], by_time ? "train_s" : "step");
        if (xcol[i] < 0) {
            st = sn_error(SN_ERR_FORMAT, "%s: no 'train_s' column (training time), which logs "
                          "written by spinenet train since 2026-12 have; plot it against the "
                          "steps instead (--x step)", paths[i]);
            nparsed++;
            break;
        }
        for (int r = 0; by_time && r < lg[i].nrows; r++) {
            const double v = lg[i].v[(size_t)r * lg[i].ncols + xcol[i]];
            if (fabs(v) < 1e300 && v > tmax) tmax = v;
        }
    }
    /* Training time in minutes, or in hours past two of them. */
    const double xscale = !by_time ? 1 : tmax >= 7200 ? 1.0 / 3600 : 1.0 / 60;
    const char *xlabel = !by_time ? "step" : tmax >= 7200 ? "training time (h)"
                                                          : "training time (min)";
    panel_def d[3] = {
        {.title = "loss", .scale = 1, .top = INFINITY, .allow_log = 1},
        /* Linear: a schedule's shape (warm-up, cosine) reads best that way, and a log axis
         * would give most of the panel to the last steps' near-zero values. */
        {.title = "learning rate", .scale = 1, .top = INFINITY, .allow_log = 0},
        {.title = "validation (%)", .scale = 100, .top = 100, .markers = 1, .legend = 1}};
    for (int i = 0; i < n && st == SN_OK; i++) {
        const char *label = opt && opt->labels && opt->labels[i] ? opt->labels[i]
                                                                 : run_name(paths[i], names[i]);
        const csv_log *L = &lg[i];
        const int x = xcol[i];
        if (n == 1) {
            add_series(&d[0], L, x, xscale, find_col(L, "loss"), 0, "loss");
            add_series(&d[0], L, x, xscale, find_col(L, "loss_cls"), 1, "loss_cls");
            add_series(&d[0], L, x, xscale, find_col(L, "loss_box"), 2, "loss_box");
            d[0].legend = d[0].n > 1;
            add_series(&d[1], L, x, xscale, find_col(L, "lr"), 0, "lr");
            for (int c = 0, k = 0; c < L->ncols; c++)
                if (!strncmp(L->names[c], "eval_", 5))
                    add_series(&d[2], L, x, xscale, c, k++, L->names[c] + 5);
            break;
        }
        add_series(&d[0], L, x, xscale, find_col(L, "loss"), i, label);
        add_series(&d[1], L, x, xscale, find_col(L, "lr"), i, label);
        for (int c = 0; c < L->ncols; c++)
            if (!strncmp(L->names[c], "eval_", 5)) {
                add_series(&d[2], L, x, xscale, c, i, label);
                break;
            }
    }
    /* Several logs: the legend of the runs on the loss panel, and the validation panel says
     * which metric it shows when every run has the same one (eval_AP: "validation AP (%)"). */
    char vtitle[64];
    if (st == SN_OK && n > 1) {
        d[0].legend = 1;
        const char *metric = NULL;
        int same = d[2].n > 0;
        for (int i = 0; i < d[2].n; i++) {
            const char *m = d[2].sr[i].lg->names[d[2].sr[i].col] + 5;
            if (metric && strcmp(metric, m)) same = 0;
            metric = m;
        }
        d[2].legend = 0;
        if (same) {
            snprintf(vtitle, sizeof vtitle, "validation %.40s (%%)", metric);
            d[2].title = vtitle;
        }
    }
    if (st == SN_OK && d[0].n + d[1].n + d[2].n == 0)
        st = sn_error(SN_ERR_FORMAT, "%s: no rows to plot (no %s with a loss, lr or eval_* value)",
                      paths[0], by_time ? "row with a train_s" : "step");
    if (st == SN_OK && (st = sn_image_alloc(out, W, H, 3)) == SN_OK) {
        memset(out->pixels, 255, (size_t)W * H * 3);
        /* The x axis, shared: every row with an x counts, plotted or not. */
        double lo = INFINITY, hi = -INFINITY;
        for (int i = 0; i < n; i++)
            for (int r = 0; r < lg[i].nrows; r++) {
                const double v = lg[i].v[(size_t)r * lg[i].ncols + xcol[i]] * xscale;
                if (fabs(v) < 1e300 && v < lo) lo = v; /* the limit of value() */
                if (fabs(v) < 1e300 && v > hi) hi = v;
            }
        if (!(lo <= hi)) lo = 0, hi = 1;
        /* Nice ticks, but the axis ends at the last x (not at the next tick past it), so that
         * the curves reach the right edge. */
        axis ax = nice_axis(lo, hi, 0, INFINITY);
        if (hi > lo && hi < ax.hi) ax.hi = hi;
        /* Text at scale 2 on a full-size figure, 1 on a small one; a title line on top, the
         * axis label at the bottom, three equal bands between. */
        const int s = W >= 640 && H >= 600 ? 2 : 1, ch = 7 * s;
        const int head = ch + 6 * s, foot = ch + 6 * s, band = (H - head - foot) / 3;
        char title[160];
        if (opt && opt->title) {
            snprintf(title, sizeof title, "%s", opt->title);
        } else if (n == 1) {
            snprintf(title, sizeof title, "%s", run_name(paths[0], names[0]));
        } else {
            size_t len = 0;
            title[0] = 0;
            for (int i = 0; i < d[0].n && len < sizeof title; i++)
                len += (size_t)snprintf(title + len, sizeof title - len, "%s%s", i ? " vs " : "",
                                        d[0].sr[i].label);
            if (len >= sizeof title || sn_draw_text_width(title, s) > W - 8)
                snprintf(title, sizeof title, "%d runs", n);
        }
        sn_draw_text(out, (W - sn_draw_text_width(title, s)) / 2, 3 * s, title, s, k_text);
        sn_plot_layout lay;
        for (int i = 0; i < 3; i++)
            draw_panel(out, &d[i], &ax, head + i * band, band, s, &lay.panel[i]);
        const sn_plot_panel *b = &lay.panel[2];
        sn_draw_text(out, (b->x0 + b->x1 - sn_draw_text_width(xlabel, s)) / 2, H - foot + 2 * s,
                     xlabel, s, k_text);
        if (layout) *layout = lay;
    }
    for (int i = 0; i < nparsed && i < n; i++) log_free(&lg[i]);
    sn_free(names);
    return st;
}

sn_status sn_plot_render(const char *csv_path, const sn_plot_options *opt, sn_image *out,
                         sn_plot_layout *layout) {
    return render(&csv_path, 1, opt, out, layout);
}

sn_status sn_plot_render_logs(const char *const *csv_paths, int n, const sn_plot_options *opt,
                              sn_image *out, sn_plot_layout *layout) {
    return render(csv_paths, n, opt, out, layout);
}

sn_status sn_plot_train_logs(const char *const *csv_paths, int n, const char *png_path,
                             const sn_plot_options *opt) {
    if (!png_path) return sn_error(SN_ERR_INVALID_ARG, "sn_plot_train_log: NULL output path");
    sn_image img;
    sn_status st = render(csv_paths, n, opt, &img, NULL);
    if (st == SN_OK) st = sn_image_save_png(&img, png_path);
    sn_image_free(&img);
    return st;
}

sn_status sn_plot_train_log(const char *csv_path, const char *png_path,
                            const sn_plot_options *opt) {
    return sn_plot_train_logs(&csv_path, 1, png_path, opt);
}
