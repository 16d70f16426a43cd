/* Training curves for `spinenet plot`: reads the CSV log written by `spinenet train`
 * (OUTDIR/train_log.csv) and draws one PNG with three panels sharing the step axis:
 *   0  loss, with loss_cls / loss_box as extra lines when the log has them (log scale when the
 *      values span more than two decades),
 *   1  learning rate (always a linear axis),
 *   2  the validation metrics, every eval_* column, as percentages (points joined by lines).
 *
 * The log: a header line naming the columns (found by name, any order; `step` is required),
 * then one row per logged step with the same number of comma-separated fields. An empty field
 * means "not measured"; nan / inf are accepted and left out of the plot. CRLF line ends and a
 * missing final newline are fine; a last line cut short without its newline (a run still
 * writing its log) is left out. Errors (sn_last_error) name the file and the line. */
#ifndef SN_PLOT_H
#define SN_PLOT_H

#include <stdint.h>

#include "data.h"

enum { SN_PLOT_X_STEP = 0, SN_PLOT_X_TIME = 1 };

typedef struct {
    int width, height; /* pixels; 0: 960 x 900 */
    const char *title; /* NULL: the run's name: the folder holding a train_log.csv, or the
                          CSV's file name when it has another; several logs: their names
                          joined by " vs " (or "N runs" when that is too wide) */
    int x;             /* SN_PLOT_X_STEP (0), or SN_PLOT_X_TIME: the training time of the log's
                          train_s column, in minutes (hours past two hours); a log without
                          that column is an error */
    const char *const *labels; /* NULL, or one per log (NULL entries too): the legend's names
                                  of the runs instead of their names */
} sn_plot_options;

/* Draw the log at csv_path into png_path (RGB; saved whole by sn_image_save_png).
 * opt may be NULL. */
sn_status sn_plot_train_log(const char *csv_path, const char *png_path, const sn_plot_options *opt);

/* Several logs in one figure, to compare runs: each panel draws one line per log in the log's
 * colour (sn_plot_colour(i) for the i-th log): its loss, its learning rate and its first eval_*
 * column (eval_AP of a detector, eval_top1 of a classifier); the loss panel carries the legend.
 * One log draws what sn_plot_train_log draws. At most 12 logs. */
sn_status sn_plot_train_logs(const char *const *csv_paths, int n, const char *png_path,
                             const sn_plot_options *opt);

/* Where a panel was drawn, for tests and callers that annotate the figure. A value v at step s
 * is at x = x0 + (s - xmin) / (xmax - xmin) * (x1 - x0) and
 *         y = y1 - (t - ymin) / (ymax - ymin) * (y1 - y0), rounded to nearest,
 * with t = v (x 100 in the eval panel), or log10(v) when log_y; with SN_PLOT_X_TIME, s is the
 * training time in the axis' unit (train_s / 60 or / 3600) instead of the step. */
typedef struct {
    int x0, y0, x1, y1; /* where the axis ranges map, in pixels; the frame is drawn 4 pixels
                           outside, and the lines are clipped to it */
    double xmin, xmax;  /* steps at x0 and x1 */
    double ymin, ymax;  /* values at y1 (bottom) and y0 (top), as t above */
    int log_y;
    int n_series; /* lines drawn; 0: the panel says "no data" */
} sn_plot_panel;

typedef struct {
    sn_plot_panel panel[3]; /* loss, learning rate, eval */
} sn_plot_layout;

/* The same drawing into *out (sn_image_alloc'ed, RGB; free with sn_image_free); layout may be
 * NULL. On failure *out is zeroed. */
sn_status sn_plot_render(const char *csv_path, const sn_plot_options *opt, sn_image *out,
                         sn_plot_layout *layout);

/* sn_plot_train_logs into *out. */
sn_status sn_plot_render_logs(const char *const *csv_paths, int n, const sn_plot_options *opt,
                              sn_image *out, sn_plot_layout *layout);

/* Colour of series k within its panel, in the order loss, loss_cls, loss_box / lr / the eval_*
 * columns in header order. Text, frame and grid use greys, none of these colours. */
void sn_plot_colour(int k, uint8_t rgb[3]);

#endif
