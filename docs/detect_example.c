/* Detect objects in the JPEG or PNG images named on the command line with a RetinaNet detector
 * (a spinenet safetensors file) and print each detection scoring 0.3 or more. */
#include <stdio.h>

#include "spinenet.h"

int main(int argc, char **argv) {
    sn_model *m = NULL;
    int failed = 0;
    if (argc < 3) {
        fprintf(stderr, "usage: %s DETECTOR.safetensors IMAGE...\n", argv[0]);
        return 2;
    }
    if (sn_model_load(argv[1], &m) != SN_OK || sn_model_set_threads(m, 2) != SN_OK) {
        fprintf(stderr, "error: %s\n", sn_last_error());
        sn_model_free(m);
        return 1;
    }
    sn_detect_params params;
    sn_detect_params_init(&params); /* the official generator: score > 0.05, NMS 0.5, 100 */
    params.agnostic_nms_iou = 0.7f; /* one label per object */
    for (int i = 2; i < argc; i++) {
        sn_image image;
        sn_detection_list *dets = NULL;
        if (sn_image_load(argv[i], &image) != SN_OK ||
            sn_model_detect(m, &image, &params, &dets) != SN_OK) {
            fprintf(stderr, "error: %s\n", sn_last_error());
            failed = 1;
        } else {
            printf("%s: %d x %d, %d detections\n", argv[i], image.width, image.height, dets->count);
            for (int k = 0; k < dets->count && dets->items[k].score >= 0.3f; k++) {
                const sn_detection *d = &dets->items[k];
                printf("  %-12s %.2f  x %.0f..%.0f y %.0f..%.0f\n",
                       d->class_name ? d->class_name : "?", d->score, d->x0, d->x1, d->y0, d->y1);
            }
        }
        sn_detection_list_free(dets);
        sn_image_free(&image);
    }
    sn_model_free(m);
    return failed;
}
