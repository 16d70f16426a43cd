/* COCO box evaluation: the COCOeval algorithm of pycocotools for iouType "bbox" (AP and AR at
 * IoU .50:.05:.95, 101 recall points, maxDets 1/10/100, areas all/small/medium/large). */
#ifndef SN_COCO_EVAL_H
#define SN_COCO_EVAL_H

#include <stddef.h>

#include "coco.h"

/* The twelve summary numbers, in pycocotools' order. */
enum {
    SN_COCO_AP,    /* IoU .50:.95, all areas, 100 detections */
    SN_COCO_AP50,
    SN_COCO_AP75,
    SN_COCO_APS,   /* small: area < 32^2 */
    SN_COCO_APM,   /* medium: 32^2 .. 96^2 */
    SN_COCO_APL,   /* large: > 96^2 */
    SN_COCO_AR1,   /* recall with at most 1, 10, 100 detections per image and category */
    SN_COCO_AR10,
    SN_COCO_AR100,
    SN_COCO_ARS,
    SN_COCO_ARM,
    SN_COCO_ARL,
    SN_COCO_NUM_STATS
};

#define SN_COCO_IOUS 10     /* .50, .55, ..., .95 */
#define SN_COCO_RECALLS 101 /* 0, .01, ..., 1 */
#define SN_COCO_AREAS 4     /* all, small, medium, large */
#define SN_COCO_MAXDETS 3   /* 1, 10, 100 */

typedef struct {
    double stats[SN_COCO_NUM_STATS]; /* -1 where no category has ground truth */
    int num_categories;
    int *category_ids;               /* the ground truth's categories, ascending */
    double *category_ap;             /* AP .50:.95, all areas, 100 dets; -1 without ground truth */
    /* Per category k, area a, maxDets m and IoU threshold t, at index
     * ((k * SN_COCO_AREAS + a) * SN_COCO_MAXDETS + m) * SN_COCO_IOUS + t: the precision averaged
     * over the 101 recall points, and the recall reached; -1 without ground truth. */
    double *precision, *recall;
} sn_coco_eval_result;

/* Evaluate detections against the ground truth's kept annotations (their boxes as written in
 * the file, their "area" fields and crowd flags). A detection whose image id or category id
 * the ground truth lacks, or with a non-finite box or score, is an error. Ties in score are
 * ordered as pycocotools orders them: by image id, then by position in `dets`. */
sn_status sn_coco_evaluate(const sn_coco *gt, const sn_coco_det *dets, size_t count,
                           sn_coco_eval_result *out);
void sn_coco_eval_free(sn_coco_eval_result *r);

/* The twelve numbers of the k-th category of r (r->category_ids[k]) alone: what the summary
 * computes, over that category only (-1 where it has no ground truth in that area; all -1 for
 * a k out of range). stats[SN_COCO_AP] equals r->category_ap[k]. */
void sn_coco_category_stats(const sn_coco_eval_result *r, int k, double stats[SN_COCO_NUM_STATS]);

/* The thresholds, computed as numpy.linspace computes them (the IoU comparisons and recall
 * sampling depend on their exact values). */
void sn_coco_eval_thresholds(double iou[SN_COCO_IOUS], double recall[SN_COCO_RECALLS]);

/* "AP", "AP50", ... and pycocotools' description of each number, e.g.
 * "Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]". */
const char *sn_coco_stat_name(int i);
const char *sn_coco_stat_label(int i);

#endif
