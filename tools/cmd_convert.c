/* spinenet convert: an official TensorFlow SpineNet checkpoint (TF1 TPU code or TF2 Model
 * Garden) into a spinenet weight file, every tensor accounted for (tf_convert.h). */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "core.h"
#include "tf_convert.h"

typedef struct {
    cli_model_opts m;
    const char *from, *out, *ignore;
    int check, ema;
    double bn_eps;
} opts;

static const opts k_defaults = {.m = CLI_MODEL_DEFAULTS};

static const cli_flag k_flags[] = {
    FSTR("--from", "FORMAT", from, "the checkpoint's format: tf (TensorFlow, TF1 or TF2)", "tf"),
    FOUT("OUT.safetensors", "the spinenet weight file to write", "required unless --check"),
    FSWITCH("--check", check,
            "map every tensor from PREFIX.index alone (no data is read, nothing is written); the "
            "report and the exit status say whether the checkpoint fits the model", "off"),
    CLI_MODEL_FLAGS("read off the checkpoint's names: tpu for TF1 variable names, garden for TF2 "
                    "object paths", "retinanet, classifier or none",
                    "read off the checkpoint's names", "classes of the head",
                    "read off the class predictor (91 for the COCO checkpoints)"),
    FINT("--num-classes", "N", m.classes, 1, 100000, "the same as --classes",
         "read off the class predictor"),
    FNUM("--bn-eps", "E", bn_eps, 1e-12, 1.0,
         "batch-norm epsilon the checkpoint was trained with (it is not stored in it)",
         "the flavour's: garden 1e-3; tpu 1e-4, tpu classifier 1e-5"),
    FINT("--size", "S", m.size, 64, SIZE_MAX_PX, "reference input size stored in the file",
         "the variant's: " VARIANT_SIZES),
    FSWITCH("--ema", ema,
            "take the exponential-moving-average weights (the ones the official evaluation uses "
            "when the checkpoint has them)", "off: the raw weights"),
    FSTR("--ignore", "LIST", ignore,
         "comma-separated name parts: checkpoint tensors whose name contains one are skipped on "
         "purpose (e.g. the heads of another task)", "none: every tensor must be accounted for"),
};

/* TF2 object-based checkpoints name variables by paths ending in this. */
#define TF2_SUFFIX "/.ATTRIBUTES/VARIABLE_VALUE"

static int has_name_part(const sn_tf_ckpt *c, const char *part) {
    for (int i = 0; i < c->n_entries; i++)
        if (strstr(c->entries[i].name, part)) return 1;
    return 0;
}

static int has_name_prefix(const sn_tf_ckpt *c, const char *prefix) {
    for (int i = 0; i < c->n_entries; i++)
        if (strncmp(c->entries[i].name, prefix, strlen(prefix)) == 0) return 1;
    return 0;
}

static void print_report(const sn_tf_report *r) {
    static const char *const k_kind[] = {"missing", "shape", "dtype", "unused"};
    for (int i = 0; i < r->n_problems; i++) {
        const sn_tf_problem *p = &r->problems[i];
        switch (p->kind) {
        case SN_TF_MISSING:
            printf("  %-7s %s %s: no \"%s\" in the checkpoint\n", k_kind[p->kind], p->model,
                   p->model_shape, p->tf);
            break;
        case SN_TF_SHAPE:
        case SN_TF_DTYPE:
            printf("  %-7s %s %s <- %s %s%s\n", k_kind[p->kind], p->model, p->model_shape, p->tf,
                   p->tf_shape, p->kind == SN_TF_DTYPE ? " (not a float type)" : "");
            break;
        default:
            printf("  %-7s %s %s: no model tensor takes it\n", k_kind[p->kind], p->tf, p->tf_shape);
        }
    }
}

static int run(const void *options, const char *const *args, int n_args) {
    const opts *o = options;
    if (!cli_flag_given(offsetof(opts, m.model)))
        return usage_error("%s", "convert needs --model: the variant the checkpoint was trained "
                                 "as (spinenet-49s, -49, -96, -143, -190, spinenet-mobile-49, ...)");
    if (o->from && strcmp(o->from, "tf") != 0)
        return usage_error("--from %s: the only source format is tf (a TensorFlow checkpoint)",
                           o->from);
    if (!o->check && !o->out)
        return usage_error("%s", "convert needs -o OUT.safetensors (or --check to only map the "
                                 "names)");
    if (o->out && !o->check && need_out(o->out, 0, "-o")) return 1;
    /* Flavour and head from the names when not given: TF2 paths are the Model Garden's. */
    sn_tf_ckpt c;
    if (sn_tf_open(args[0], &c) != SN_OK) return fail_status();
    cli_model_opts mo = o->m;
    const char *said_flavour = NULL, *said_head = NULL;
    if (!mo.flavour) {
        mo.flavour = has_name_part(&c, TF2_SUFFIX) ? "garden" : "tpu";
        said_flavour = mo.flavour[0] == 'g' ? "(TF2 object paths: the Model Garden's)"
                                             : "(TF1 variable names: the TPU code's)";
    }
    if (!mo.head) {
        int garden = mo.flavour[0] == 'g';
        int det = garden ? has_name_prefix(&c, "head/") : has_name_prefix(&c, "retinanet/");
        int cls = garden ? 0 : has_name_prefix(&c, "classification_head/");
        mo.head = det ? "retinanet" : cls ? "classifier" : "none";
        said_head = det ? "(the checkpoint has RetinaNet head tensors)"
                        : cls ? "(the checkpoint has a classification layer)"
                              : "(no head tensors in the checkpoint)";
    }
    sn_tf_close(&c);
    sn_config cfg;
    int rc = get_config(&mo, &cfg);
    if (rc) return rc;
    if (o->bn_eps > 0) cfg.bn_eps = (float)o->bn_eps;
    sn_config_resolve(&cfg);
    sn_tf_convert_opts co = {.ema = o->ema, .ignore = o->ignore, .read_data = !o->check};
    if (!o->m.classes) co.infer |= SN_TF_INFER_CLASSES;
    if (!o->m.endpoints) co.infer |= SN_TF_INFER_ENDPOINTS;
    co.infer |= SN_TF_INFER_HEAD_FILTERS; /* no flag sets it */
    sn_tf_report rep;
    sn_model *m = NULL;
    double t0 = now_s();
    sn_status st = sn_tf_convert(&cfg, args[0], &co, &rep, o->check ? NULL : &m);
    printf("checkpoint: %s (%d tensors)\n", args[0], rep.n_entries);
    printf("model: %s, flavour %s %s, head %s %s", cfg.model, sn_flavour_name(cfg.flavour),
           said_flavour ? said_flavour : "", sn_head_name(cfg.head), said_head ? said_head : "");
    if (cfg.head != SN_HEAD_NONE) printf(", %d classes", cfg.num_classes);
    printf("\n  activation %s%s, batch-norm epsilon %g%s\n", sn_act_name(cfg.activation),
           o->m.act ? "" : " (not stored in a checkpoint: the TPU zoo's 350-epoch models use relu, "
                           "the 500-epoch ones swish; --act to change)",
           (double)cfg.bn_eps, o->bn_eps > 0 ? "" : " (the flavour's; --bn-eps to change)");
    if (rep.inferred[0]) printf("  read off the checkpoint's shapes: %s\n", rep.inferred);
    if (rep.n_params) {
        printf("mapped: %d of %d model tensors%s\n", rep.n_mapped, rep.n_params,
               o->ema ? " (moving averages)" : "");
        printf("skipped by rule: %d optimizer slot(s), %d optimizer/step state, %d %s", rep.n_slots,
               rep.n_state, rep.n_other_copy, o->ema ? "raw weight(s) (--ema takes the averages)"
                                                     : "moving average(s) (--ema takes them)");
        if (o->ignore) printf(", %d matched by --ignore", rep.n_ignored);
        printf("\n");
    }
    if (st != SN_OK) {
        if (rep.n_problems) {
            printf("problems (%d):\n", rep.n_problems);
            print_report(&rep);
        }
        sn_tf_report_free(&rep);
        return fail_status();
    }
    sn_tf_report_free(&rep);
    if (o->check) {
        printf("ok: the checkpoint fits the model (names and shapes; no data read)\n");
        return 0;
    }
    st = sn_model_save(m, o->out);
    sn_model_free(m);
    if (st != SN_OK) return fail_status();
    printf("wrote %s (%.1f s)\n", o->out, now_s() - t0);
    return 0;
}

const cli_command cmd_convert = {
    .name = "convert",
    .summary = "convert an official TensorFlow SpineNet checkpoint into a weight file",
    .usage = "spinenet convert --from tf PREFIX --model M [--flavour garden|tpu] [--head H] "
             "[--classes N] [--ema] [--check] -o OUT.safetensors",
    .about = "Reads a TensorFlow checkpoint of SpineNet (the TF1 TPU code's model zoo, or the TF2 "
             "Model Garden) and writes a spinenet weight file. Every model tensor is looked up "
             "under the name the official code gives it, with its shape; optimizer slots and "
             "state are skipped by rule; anything else left over, missing or of another shape "
             "is listed and the conversion fails. PREFIX is the checkpoint prefix "
             "(model.ckpt-500000 for model.ckpt-500000.index), the .index file or a folder with "
             "a \"checkpoint\" file. --check maps from the .index alone, so a checkpoint can be "
             "checked before its data is downloaded. Mask R-CNN heads are not converted (use "
             "--head none --ignore mask,rpn,frcnn for the backbone only).",
    .examples = "spinenet convert --from tf ckpt/model.ckpt --model spinenet-49s --check\n"
                "spinenet convert --from tf ckpt/model.ckpt --model spinenet-49 --flavour tpu "
                "-o spinenet49.safetensors\n"
                "spinenet convert --from tf ckpt/ --model spinenet-mobile-49 --ema -o mobile49.safetensors",
    CLI_PARTS(CLI_POS_ONE),
    .pos_missing = "convert needs the checkpoint: spinenet convert --from tf PREFIX --model M -o "
                   "OUT.safetensors (PREFIX.index and PREFIX.data-* are its files)",
};
