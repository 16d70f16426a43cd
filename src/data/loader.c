/* Batch loader: deterministic shuffled epochs over an sn_dataset, augmented and normalised into
 * NHWC float batches by one background thread (double buffering), with resumable state. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "data.h"

/* Batches in flight: the one the caller holds and the one being prepared. */
#define NSLOTS 2

typedef struct {
    float *images;
    int32_t *labels, *indices;
    unsigned char *extra; /* [batch][extra_bytes] when a prepare hook is set */
    int n;       /* samples in the slot (a shard's slice of the batch) */
    int n_batch; /* samples of the whole batch (the cursor moves by it) */
    int64_t epoch, position;
    int last;
    int full; /* prepared and not yet released by the caller (under the mutex) */
    sn_status status;
    char err[1024];
    int skipped;        /* skip_bad: samples that failed while this batch was made */
    char skip_msg[1024];
} slot;

struct sn_loader {
    sn_dataset *ds;
    sn_loader_config cfg;
    int64_t per_epoch;
    int shard_lo, shard_n; /* this shard's slice of each batch: [lo, lo + n); n 0: all */
    int slot_cap;          /* samples a slot holds */
    /* Caller side: where the next batch handed out starts. */
    int64_t epoch, position;
    int read, held; /* next slot to hand out; slot the caller holds (-1: none) */
    /* Worker side. */
    int64_t w_epoch, w_position;
    int write;
    int32_t *order;
    int64_t order_epoch; /* epoch that `order` holds (-1: none) */
    unsigned char *bad;  /* skip_bad: per dataset index, 1 once it failed (worker side) */
    slot slots[NSLOTS];
    pthread_t thread;
    int running; /* a thread was started and not yet joined */
    int exited;  /* the worker left its loop (under the mutex) */
    atomic_int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

/* splitmix64's finaliser: a good 64-bit mixer for deriving independent seeds. */
static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Seeds for the order of an epoch and for the augmentation of one sample: functions of
 * (seed, epoch, index) only, so batches never depend on thread timing or on where a run
 * was resumed. The tags keep the two streams apart. */
static uint64_t order_seed(uint64_t seed, int64_t epoch) {
    return mix64(mix64(seed ^ 0x6F72646572ull) + (uint64_t)epoch * 0x9E3779B97F4A7C15ull);
}

static uint64_t sample_seed(uint64_t seed, int64_t epoch, int32_t index) {
    uint64_t e = mix64(mix64(seed ^ 0x6175676Dull) + (uint64_t)epoch * 0x9E3779B97F4A7C15ull);
    return mix64(e + ((uint64_t)(uint32_t)index + 1) * 0xD1B54A32D192ED03ull);
}

sn_status sn_epoch_order(uint64_t seed, int64_t epoch, int shuffle, int count, int32_t *order) {
    if (count < 0 || (count > 0 && !order) || epoch < 0)
        return sn_error(SN_ERR_INVALID_ARG, "sn_epoch_order: bad arguments");
    for (int i = 0; i < count; i++) order[i] = i;
    if (!shuffle) return SN_OK;
    sn_rng r;
    sn_rng_seed(&r, order_seed(seed, epoch));
    /* Fisher-Yates; the modulo bias of a 64-bit draw over < 2^31 items is below 2^-32. */
    for (int i = count - 1; i > 0; i--) {
        int j = (int)(sn_rng_next(&r) % (uint64_t)(i + 1));
        int32_t t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    return SN_OK;
}

void sn_loader_config_defaults(sn_loader_config *cfg) {
    if (!cfg) return;
    memset(cfg, 0, sizeof *cfg);
    cfg->batch_size = 32;
    cfg->image_size = 224;
    cfg->train = 1;
    cfg->seed = 0;
    sn_aug_defaults(&cfg->aug);
}

int64_t sn_loader_batches_per_epoch(const sn_loader *l) { return l ? l->per_epoch : 0; }

/* Size and flags of the batch starting at `pos`. */
static int batch_len(const sn_loader *l, int64_t pos, int *last) {
    int64_t count = l->ds->count, b = l->cfg.batch_size;
    int64_t n = count - pos < b ? count - pos : b;
    /* training drops the incomplete tail, so its last batch is the one before it */
    *last = l->cfg.train ? pos + 2 * b > count : pos + n >= count;
    return (int)n;
}

/* Fill one slot with the batch at the worker's cursor. Runs without the mutex: the slot is
 * the worker's alone until it is marked full. */
static void fill_slot(sn_loader *l, slot *s) {
    int S = l->cfg.image_size;
    size_t per = (size_t)S * S * 3;
    s->status = SN_OK;
    s->err[0] = 0;
    s->skipped = 0;
    s->skip_msg[0] = 0;
    s->epoch = l->w_epoch;
    s->position = l->w_position;
    if (l->order_epoch != l->w_epoch) {
        sn_epoch_order(l->cfg.seed, l->w_epoch, l->cfg.train, l->ds->count, l->order);
        l->order_epoch = l->w_epoch;
    }
    s->n_batch = batch_len(l, l->w_position, &s->last);
    /* A shard prepares its slice of the batch; the order and seeds are the whole batch's. */
    const int lo = l->shard_n ? l->shard_lo : 0;
    s->n = l->shard_n ? l->shard_n : s->n_batch;
    for (int i = 0; i < s->n && s->status == SN_OK; i++) {
        if (atomic_load(&l->stop)) {
            s->status = SN_ERR_STATE;
            break;
        }
        const int64_t count = l->ds->count;
        const int64_t gi = lo + i; /* place in the whole batch */
        int32_t idx = l->order[l->w_position + gi];
        sn_image img;
        int label = 0;
        sn_status st = SN_OK;
        /* skip_bad: a known-bad sample, or one that fails now, gives its place to the next of
         * the epoch's order (deterministic, so a resumed run makes the same batches). */
        for (int64_t k = 1; l->bad && l->bad[idx] && k < count; k++)
            idx = l->order[(l->w_position + gi + k) % count];
    retry:
        if (l->bad && l->bad[idx]) {
            st = sn_error(SN_ERR_NOT_FOUND, "every one of the %d samples failed (--skip-bad)",
                          (int)count);
        } else if (l->cfg.prepare) {
            int32_t lab = 0;
            void *extra = s->extra ? s->extra + l->cfg.extra_bytes * (size_t)i : NULL;
            st = l->cfg.prepare(l->cfg.prepare_user, idx, l->cfg.train,
                                sample_seed(l->cfg.seed, l->w_epoch, idx),
                                s->images + per * (size_t)i, extra, &lab);
            label = lab;
        } else if ((st = sn_dataset_get(l->ds, idx, &img, &label)) == SN_OK) {
            sn_crop crop;
            if (l->cfg.train) {
                sn_rng r;
                sn_rng_seed(&r, sample_seed(l->cfg.seed, l->w_epoch, idx));
                crop = sn_crop_random(&r, img.width, img.height, &l->cfg.aug);
            } else {
                crop = sn_crop_eval(img.width, img.height, &l->cfg.aug);
            }
            st = sn_crop_resize_normalize(&img, crop, S, S, s->images + per * (size_t)i);
            sn_image_free(&img);
        }
        if (st != SN_OK && l->bad && !l->bad[idx] && st != SN_ERR_OOM) {
            l->bad[idx] = 1;
            if (s->skipped++ == 0) snprintf(s->skip_msg, sizeof s->skip_msg, "%s", sn_last_error());
            for (int64_t k = 1; l->bad[idx] && k < count; k++)
                idx = l->order[(l->w_position + gi + k) % count];
            goto retry;
        }
        if (st != SN_OK) {
            s->status = st;
            /* errors are thread-local: carry the text to the caller's thread */
            snprintf(s->err, sizeof s->err, "loader: sample %d: %s", (int)idx, sn_last_error());
            break;
        }
        s->labels[i] = label;
        s->indices[i] = idx;
    }
    /* Advance the cursor, rolling into the next epoch after its last batch. */
    if (s->last) {
        l->w_epoch++;
        l->w_position = 0;
    } else {
        l->w_position += s->n_batch;
    }
}

static void *worker(void *arg) {
    sn_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!atomic_load(&l->stop) && l->slots[l->write].full) pthread_cond_wait(&l->cv, &l->mu);
        if (atomic_load(&l->stop)) break;
        slot *s = &l->slots[l->write];
        pthread_mutex_unlock(&l->mu);
        fill_slot(l, s);
        pthread_mutex_lock(&l->mu);
        if (atomic_load(&l->stop)) break; /* a batch cut short by shutdown is not published */
        s->full = 1;
        l->write = (l->write + 1) % NSLOTS;
        pthread_cond_broadcast(&l->cv);
        if (s->status != SN_OK) break; /* the caller gets the error; produce nothing more */
    }
    l->exited = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

static void stop_worker(sn_loader *l) {
    if (!l->running) return;
    pthread_mutex_lock(&l->mu);
    atomic_store(&l->stop, 1);
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    l->running = 0;
}

/* (Re)start the worker at the caller's cursor with empty slots. */
static sn_status start_worker(sn_loader *l) {
    for (int i = 0; i < NSLOTS; i++) l->slots[i].full = 0;
    l->read = l->write = 0;
    l->held = -1;
    l->w_epoch = l->epoch;
    l->w_position = l->position;
    l->exited = 0;
    atomic_store(&l->stop, 0);
    if (pthread_create(&l->thread, NULL, worker, l) != 0) {
        l->exited = 1;
        return sn_error(SN_ERR_STATE, "loader: cannot start the background thread");
    }
    l->running = 1;
    return SN_OK;
}

void sn_loader_free(sn_loader *l) {
    if (!l) return;
    stop_worker(l);
    for (int i = 0; i < NSLOTS; i++) {
        sn_free(l->slots[i].images);
        sn_free(l->slots[i].labels);
        sn_free(l->slots[i].indices);
        sn_free(l->slots[i].extra);
    }
    sn_free(l->order);
    sn_free(l->bad);
    pthread_cond_destroy(&l->cv);
    pthread_mutex_destroy(&l->mu);
    sn_free(l);
}

sn_status sn_loader_create(sn_dataset *ds, const sn_loader_config *cfg, sn_loader **out) {
    if (!ds || !cfg || !out || (!ds->get && !cfg->prepare))
        return sn_error(SN_ERR_INVALID_ARG, "sn_loader_create: bad arguments");
    *out = NULL;
    if (cfg->batch_size <= 0 || cfg->image_size <= 0 || cfg->image_size > 8192)
        return sn_error(SN_ERR_INVALID_ARG, "loader: batch size %d, image size %d",
                        cfg->batch_size, cfg->image_size);
    if (ds->count <= 0) return sn_error(SN_ERR_INVALID_ARG, "loader: empty dataset");
    if (cfg->train && ds->count < cfg->batch_size)
        return sn_error(SN_ERR_INVALID_ARG,
                        "loader: %d samples cannot fill one training batch of %d", ds->count,
                        cfg->batch_size);
    const int shards = cfg->shard_count > 1 ? cfg->shard_count : 1;
    if (shards > 1) {
        if (!cfg->train)
            return sn_error(SN_ERR_INVALID_ARG, "loader: shards (%d) are for training batches only",
                            shards);
        if (cfg->batch_size % shards != 0)
            return sn_error(SN_ERR_INVALID_ARG, "loader: the batch of %d cannot be split into %d "
                            "equal shards (the processes): use a multiple of %d", cfg->batch_size,
                            shards, shards);
        if (cfg->shard_rank < 0 || cfg->shard_rank >= shards)
            return sn_error(SN_ERR_INVALID_ARG, "loader: shard %d of %d", cfg->shard_rank, shards);
        if (cfg->skip_bad)
            return sn_error(SN_ERR_UNSUPPORTED,
                            "--skip-bad cannot be used with %d processes: an image one process "
                            "leaves out would change only its own part of the batch, so the "
                            "processes would no longer train on one batch; check the data on one "
                            "process (or remove the unreadable files) and run without --skip-bad",
                            shards);
    }
    sn_loader *l = sn_calloc(1, sizeof *l);
    if (!l) return SN_ERR_OOM;
    l->ds = ds;
    l->cfg = *cfg;
    l->order_epoch = -1;
    if (shards > 1) {
        l->shard_n = cfg->batch_size / shards;
        l->shard_lo = cfg->shard_rank * l->shard_n;
    }
    l->slot_cap = shards > 1 ? l->shard_n : cfg->batch_size;
    l->per_epoch = cfg->train ? ds->count / cfg->batch_size
                              : (ds->count + cfg->batch_size - 1) / cfg->batch_size;
    /* mutex and cv first, so that sn_loader_free can always destroy them */
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    size_t per = (size_t)cfg->image_size * cfg->image_size * 3;
    int ok = (l->order = sn_alloc(sizeof(int32_t) * (size_t)ds->count)) != NULL &&
             (!cfg->skip_bad || (l->bad = sn_calloc((size_t)ds->count, 1)) != NULL);
    for (int i = 0; ok && i < NSLOTS; i++) {
        slot *s = &l->slots[i];
        ok = (s->images = sn_alloc(sizeof(float) * per * (size_t)l->slot_cap)) &&
             (s->labels = sn_alloc(sizeof(int32_t) * (size_t)l->slot_cap)) &&
             (s->indices = sn_alloc(sizeof(int32_t) * (size_t)l->slot_cap)) &&
             (!cfg->prepare || !cfg->extra_bytes ||
              (s->extra = sn_calloc((size_t)l->slot_cap, cfg->extra_bytes)));
    }
    if (!ok) {
        sn_loader_free(l);
        return SN_ERR_OOM;
    }
    sn_status st = start_worker(l);
    if (st != SN_OK) {
        sn_loader_free(l);
        return st;
    }
    *out = l;
    return SN_OK;
}

sn_status sn_loader_next(sn_loader *l, sn_batch *out) {
    if (!l || !out) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_next: bad arguments");
    memset(out, 0, sizeof *out);
    pthread_mutex_lock(&l->mu);
    if (l->held >= 0) {
        /* The caller is done with the previous batch: its slot can be refilled. */
        l->slots[l->held].full = 0;
        l->held = -1;
        pthread_cond_broadcast(&l->cv);
    }
    while (!l->slots[l->read].full && !l->exited) pthread_cond_wait(&l->cv, &l->mu);
    if (!l->slots[l->read].full) {
        pthread_mutex_unlock(&l->mu);
        return sn_error(SN_ERR_STATE, "loader stopped after an earlier error");
    }
    slot *s = &l->slots[l->read];
    l->held = l->read;
    l->read = (l->read + 1) % NSLOTS;
    pthread_mutex_unlock(&l->mu);
    /* The slot is the caller's until the next call: read it without the lock. */
    if (s->status != SN_OK) return sn_error(s->status, "%s", s->err);
    out->images = s->images;
    out->labels = s->labels;
    out->indices = s->indices;
    out->extra = s->extra;
    out->n = s->n;
    out->epoch = s->epoch;
    out->position = s->position;
    out->last_in_epoch = s->last;
    out->skipped = s->skipped;
    out->skip_reason = s->skip_msg;
    if (s->last) {
        l->epoch = s->epoch + 1;
        l->position = 0;
    } else {
        l->position = s->position + s->n_batch;
    }
    return SN_OK;
}

void sn_loader_get_state(const sn_loader *l, sn_loader_state *st) {
    if (!l || !st) return;
    st->seed = l->cfg.seed;
    st->epoch = l->epoch;
    st->position = l->position;
}

sn_status sn_loader_set_state(sn_loader *l, const sn_loader_state *st) {
    if (!l || !st) return sn_error(SN_ERR_INVALID_ARG, "sn_loader_set_state: bad arguments");
    if (st->epoch < 0 || st->position < 0 || st->position >= l->ds->count ||
        (l->cfg.train && st->position + l->cfg.batch_size > l->ds->count))
        return sn_error(SN_ERR_INVALID_ARG, "loader state epoch %lld position %lld is out of range",
                        (long long)st->epoch, (long long)st->position);
    /* The prefetched batch belongs to the old cursor: stop, discard, restart. */
    stop_worker(l);
    l->cfg.seed = st->seed;
    l->epoch = st->epoch;
    l->position = st->position;
    l->order_epoch = -1;
    return start_worker(l);
}
