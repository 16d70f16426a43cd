/* The model object shared by the builder (spinenet.c) and the API (model.c). */
#ifndef SN_MODEL_H
#define SN_MODEL_H

#include "graph.h"
#include "spinenet.h"

typedef enum { SN_BLOCK_BOTTLENECK, SN_BLOCK_RESIDUAL, SN_BLOCK_MBCONV } sn_block_type;

typedef struct {
    int level;
    sn_block_type type;
    int parents[2];
    int is_output;
    int p2_row; /* the Model Garden level-2 output row, built only when P2 is requested */
} sn_block_spec;

struct sn_model {
    sn_config cfg;
    sn_block_spec *specs;
    int n_specs;
    char *spec_text; /* the block-spec file's text when the table came from a file */
    sn_paramtab params;
    sn_graph graph;
    int planned;
    int nthreads;
    int fold;
    int profile; /* time each node of the inference graph (sn_model_set_profile) */
    char *class_names; /* newline-separated, or NULL */
    /* Data-parallel training (sn_model_set_train_replicas, src/train/replicas.c): a training
     * plan for batch B splits it into `replicas` equal parts, each run by one thread through its
     * own graph (part 0 through `graph`, part r through rgraph[r - 1]) with the shared
     * parameters; the parts' parameter gradients are summed into the caller's in a fixed order.
     * Each part normalises its batch-norm with its own statistics (as the official multi-core
     * training does without cross-replica batch-norm); only part 0 moves the moving statistics. */
    int replicas;     /* 0 or 1: one graph, m->nthreads threads (the next training plan) */
    int parts;        /* parts of the current training plan (0 when none is split) */
    sn_graph *rgraph; /* parts - 1 graphs */
    float **rgrad;    /* (parts - 1) x num params gradient buffers, made on first use */
    int rgrad_n;      /* entries of rgrad */
    /* Synchronized batch-norm across the parts (sn_model_set_train_sync_bn): the parts' graphs
     * sum their batch-norm sums in-process (src/train/replicas.c owns the state). */
    int sync_parts;
    void *psync;
    void (*psync_free)(void *);
};

/* Family of a variant: mobile variants use mbconv blocks. */
int sn_config_is_mobile(const sn_config *cfg);
/* Check a config for consistency (levels, classes, sizes); message on error. */
sn_status sn_config_validate(const sn_config *cfg);
/* Load the block-spec table: the built-in one for the family, or cfg->block_spec_path, or the
 * given text (from a weight file's metadata) when text != NULL. */
sn_status sn_model_load_specs(sn_model *m, const char *text);
/* Parse a block-spec table from text; `origin` names it in error messages. */
sn_status sn_block_specs_parse(const char *text, const char *origin, sn_block_spec **out, int *n);

/* Build the graph for an input of n x h x w x 3. With create != 0 the parameters are added to
 * m->params (uninitialised); otherwise each one must already exist with the same shape. */
sn_status sn_build_graph(sn_model *m, int n, int h, int w, int create, sn_graph *g);
/* A model whose weights are allocated but not initialised (for callers that fill them). */
sn_status sn_model_create_uninit(const sn_config *cfg, sn_model **out);
/* A model whose parameter table has names and shapes only (every data pointer NULL): what a
 * caller that maps names needs (spinenet convert --check); never run or save it. */
sn_status sn_model_create_shapes(const sn_config *cfg, sn_model **out);
/* Fill every parameter with its initialiser (docs/architecture.md, "Initialisation"), seeded. */
void sn_params_init(sn_paramtab *pt, uint64_t seed);

/* Free the graphs and gradient buffers of a data-parallel training plan's parts 1.. (the model
 * owns them; src/train/replicas.c makes them). */
void sn_model_free_parts(sn_model *m);

#endif
