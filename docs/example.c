/* Load a model from the safetensors file named on the command line, or build Mobile
 * SpineNet-49; run it on one image and print the name and shape of every output. */
#include <stdio.h>
#include <stdlib.h>

#include "spinenet.h"

int main(int argc, char **argv) {
    static const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    sn_config cfg;
    sn_model *m = NULL;
    sn_output out;
    float *image = NULL;
    int size = 0, ok = 0;
    if (argc > 1) {
        if (sn_model_load(argv[1], &m) != SN_OK) goto done;
    } else if (sn_config_init(&cfg, "spinenet-mobile-49") != SN_OK ||
               sn_model_create(&cfg, 1, &m) != SN_OK) { /* seed 1 */
        goto done;
    }
    size = sn_model_config(m)->input_size; /* 384 for Mobile SpineNet-49 */
    if (!(image = malloc(sizeof *image * 3 * size * size))) goto done;
    for (int i = 0; i < size * size * 3; i++) /* an RGB gradient in place of a decoded photo */
        image[i] = ((float)((i / 3 + i % 3 * 85) % 256) / 255.0f - mean[i % 3]) / std[i % 3];
    if (sn_model_set_threads(m, 2) != SN_OK || sn_model_plan(m, 1, size, size) != SN_OK ||
        sn_model_run(m, image) != SN_OK)
        goto done;
    for (int i = 0; i < sn_model_num_outputs(m); i++) {
        if (sn_model_output_at(m, i, &out) != SN_OK) goto done;
        printf("%-8s %d x %d x %d x %d\n", out.name, out.n, out.h, out.w, out.c);
    }
    ok = 1;
done:
    if (!ok) fprintf(stderr, "error: %s\n", sn_last_error()[0] ? sn_last_error() : "out of memory");
    free(image);
    sn_model_free(m);
    return ok ? 0 : 1;
}
