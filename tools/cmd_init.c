/* spinenet init: a seeded, initialised model written as safetensors, its config in the
 * metadata. */
#include <stdio.h>

#include "cli.h"

typedef struct {
    cli_model_opts m;
    const char *out;
} opts;

static const opts k_defaults = {.m = CLI_MODEL_DEFAULTS};

static const cli_flag k_flags[] = {
    FOUT("FILE", "where to write the model (safetensors)", "required"),
    CLI_BUILD_FLAGS,
    CLI_NEW_MODEL_FLAGS,
    FINT("--size", "S", m.size, 1, SIZE_MAX_PX, "square input size, stored as the model's",
         "the variant's: " VARIANT_SIZES),
    CLI_SEED_WEIGHTS_FLAG,
};

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (!o->out) return usage_error("%s", "init needs -o FILE (where to write the model)");
    if (need_out(o->out, 0, "-o")) return 1;
    sn_model *m = NULL;
    int rc = get_model(&o->m, &m);
    if (rc) return rc;
    sn_status st = sn_model_save(m, o->out);
    sn_model_free(m);
    if (st != SN_OK) return fail_status();
    printf("wrote %s\n", o->out);
    return 0;
}

const cli_command cmd_init = {
    .name = "init",
    .summary = "write a seeded, initialised model as safetensors",
    .usage = "spinenet init -o FILE [--model NAME] [model flags] [--seed N]",
    .about = "Builds the model the flags describe, initialises its weights from --seed (the "
             "same seed writes the same bytes) and writes it as safetensors with its config "
             "in the metadata.",
    .examples = "spinenet init --model spinenet-49 --seed 1 -o model.safetensors\n"
                "spinenet init --model spinenet-mobile-49xs --flavour tpu --head classifier "
                "--classes 10 \\\n    --size 64 -o c.safetensors",
    CLI_PARTS(CLI_POS_NONE),
};
