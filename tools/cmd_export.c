/* spinenet export: a weight file written as an ONNX model for one input shape (src/models/onnx.c). */
#include <stdio.h>

#include "cli.h"
#include "onnx.h"

typedef struct {
    const char *onnx, *weights;
    int size, height, width, batch;
} opts;

static const opts k_defaults = {.batch = 1};

static const cli_flag k_flags[] = {
    FSTR("--onnx", "FILE", onnx, "where to write the ONNX model", "required"),
    FSTR("--weights", "FILE", weights, "the model (a spinenet safetensors file)", "required"),
    FINT("--size", "S", size, 1, SIZE_MAX_PX, "square input size", "the model's, stored in --weights"),
    FINT("--height", "H", height, 1, SIZE_MAX_PX, "input height (non-square input)", "--size"),
    FINT("--width", "W", width, 1, SIZE_MAX_PX, "input width (non-square input)", "--size"),
    FINT("--batch", "N", batch, 1, 65536, "images per run: the input's first dimension", NULL),
};

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (!o->onnx) return usage_error("%s", "export needs --onnx FILE (where to write the model)");
    if (!o->weights) return usage_error("%s", "export needs --weights FILE (the model to export)");
    if (need_out(o->onnx, 0, "--onnx")) return 1;
    sn_model *m = NULL;
    if (load_model(o->weights, &m)) return 1;
    const sn_config *c = sn_model_config(m);
    int h, w;
    input_dims(o->size, o->height, o->width, c->input_size, &h, &w);
    sn_onnx_info info;
    sn_status st = sn_model_export_onnx(m, o->batch, h, w, o->onnx, &info);
    if (st != SN_OK) {
        sn_model_free(m);
        return fail_flags(st); /* a size the model cannot take: 2 */
    }
    printf("wrote %s: %s %s (%s), input %dx3x%dx%d NCHW, %d ONNX nodes (opset %d), %d outputs, "
           "%.2f M parameters (batch-norm folded), %.1f MB\n",
           o->onnx, c->model, sn_head_name(c->head), sn_flavour_name(c->flavour), o->batch, h, w,
           info.nodes, SN_ONNX_OPSET, info.outputs, (double)info.params / 1e6,
           (double)info.bytes / 1e6);
    sn_model_free(m);
    return 0;
}

const cli_command cmd_export = {
    .name = "export",
    .summary = "write a model as ONNX (NCHW, batch-norm folded) for one input size",
    .usage = "spinenet export --onnx FILE --weights FILE [--size S | --height H --width W] "
             "[--batch N]",
    .about = "Writes the model of --weights as a standard ONNX file (IR version 8, opset 14) for "
             "an input of N x 3 x H x W floats named 'input', NCHW, RGB, normalised as spinenet "
             "does it: (pixel / 255 - mean) / std with ImageNet's mean (0.485, 0.456, 0.406) and "
             "std (0.229, 0.224, 0.225). Batch-norm is folded into the convolutions and the "
             "padding is the flavour's, explicit. The outputs keep spinenet's names, in NCHW: "
             "P3..P7, class.3..class.7 and box.3..box.7 (RetinaNet), logits ([N][classes], "
             "classifier). The shapes are fixed: export again for another size or batch.",
    .examples = "spinenet export --weights model.safetensors --onnx model.onnx\n"
                "spinenet export --weights models/fashion-det-detector.safetensors --size 256 "
                "--batch 4 \\\n    --onnx det.onnx",
    CLI_PARTS(CLI_POS_NONE),
};
