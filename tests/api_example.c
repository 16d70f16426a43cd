/* The header's example as a program, built against the public header and the shared library
 * only: plan, run, read outputs, re-plan for another shape, and report errors. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "spinenet.h"

int main(void) {
    sn_config cfg;
    sn_model *m = NULL;
    sn_output out;
    int h = 256, w = 256;
    float *image = calloc((size_t)h * w * 3, sizeof *image);
    if (!image) return 1;
    for (int i = 0; i < h * w * 3; i++) image[i] = (float)((i * 7919) % 255) / 255.0f - 0.5f;
    if (sn_config_init(&cfg, "spinenet-mobile-49") != SN_OK ||
        sn_model_create(&cfg, 1, &m) != SN_OK || sn_model_set_threads(m, 2) != SN_OK ||
        sn_model_plan(m, 1, h, w) != SN_OK || sn_model_run(m, image) != SN_OK ||
        sn_model_output(m, "P3", &out) != SN_OK) {
        fprintf(stderr, "error: %s\n", sn_last_error());
        return 1;
    }
    int failed = 0;
    if (out.n != 1 || out.h != 32 || out.w != 32 || out.c != 48) {
        fprintf(stderr, "P3 is %dx%dx%dx%d, want 1x32x32x48\n", out.n, out.h, out.w, out.c);
        failed++;
    }
    for (int i = 0; i < sn_model_num_outputs(m); i++) {
        sn_model_output_at(m, i, &out);
        printf("%-8s %d x %d x %d x %d\n", out.name, out.n, out.h, out.w, out.c);
    }
    /* P3..P7, class.3..7 and box.3..7; the box outputs have 9*4 channels. */
    if (sn_model_num_outputs(m) != 15 || sn_model_output(m, "box.7", &out) != SN_OK || out.c != 36) {
        fprintf(stderr, "unexpected outputs\n");
        failed++;
    }
    /* An unknown output is an error with a message, not a crash. */
    if (sn_model_output(m, "P9", &out) != SN_ERR_NOT_FOUND || !strstr(sn_last_error(), "P9")) {
        fprintf(stderr, "missing output not reported: %s\n", sn_last_error());
        failed++;
    }
    /* Re-plan for batch 2 at 128x128. */
    if (sn_model_plan(m, 2, 128, 128) != SN_OK || sn_model_run(m, image) != SN_OK ||
        sn_model_output(m, "P7", &out) != SN_OK || out.n != 2 || out.h != 1) {
        fprintf(stderr, "re-plan failed: %s\n", sn_last_error());
        failed++;
    }
    sn_model_free(m);
    free(image);
    printf("%d passed, %d failed\n", 4 - failed, failed);
    return failed ? 1 : 0;
}
