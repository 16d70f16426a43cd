/* schedule.c: learning-rate schedules (constant, step, cosine) with linear warmup; the semantics
 * are documented in optim.h. */
#include <math.h>
#include <string.h>

#include "core.h"
#include "optim.h"

/* M_PI is not in strict C11. */
#define SN_PI 3.14159265358979323846

void sn_lr_schedule_init(sn_lr_schedule *s, sn_lr_kind kind, double base_lr) {
    if (!s) return;
    memset(s, 0, sizeof *s);
    s->kind = kind;
    s->base_lr = base_lr;
}

/* First step of the cosine decay: after warmup unless the Garden offset-0 form is asked for. */
static int64_t cosine_start(const sn_lr_schedule *s) {
    return s->cosine_from_zero ? 0 : (s->warmup_steps > 0 ? s->warmup_steps : 0);
}

sn_status sn_lr_schedule_check(const sn_lr_schedule *s) {
    if (!s) return sn_error(SN_ERR_INVALID_ARG, "lr schedule: NULL");
    if (!isfinite(s->base_lr) || !isfinite(s->warmup_init_lr))
        return sn_error(SN_ERR_INVALID_ARG, "lr schedule: base_lr/warmup_init_lr not finite");
    if (s->warmup_steps < 0)
        return sn_error(SN_ERR_INVALID_ARG, "lr schedule: warmup_steps %lld < 0",
                        (long long)s->warmup_steps);
    switch (s->kind) {
    case SN_LR_CONSTANT:
        return SN_OK;
    case SN_LR_STEP:
        if (s->n_boundaries < 0 || s->n_boundaries > SN_LR_MAX_BOUNDARIES)
            return sn_error(SN_ERR_INVALID_ARG, "lr schedule: %d boundaries (0..%d allowed)",
                            s->n_boundaries, SN_LR_MAX_BOUNDARIES);
        for (int i = 0; i < s->n_boundaries; i++) {
            if (s->boundaries[i] < 0 || (i > 0 && s->boundaries[i] <= s->boundaries[i - 1]))
                return sn_error(SN_ERR_INVALID_ARG,
                                "lr schedule: boundaries must be >= 0 and strictly increasing "
                                "(boundary %d = %lld)", i, (long long)s->boundaries[i]);
            if (!isfinite(s->values[i]))
                return sn_error(SN_ERR_INVALID_ARG, "lr schedule: value %d not finite", i);
        }
        return SN_OK;
    case SN_LR_COSINE:
        if (!isfinite(s->final_lr))
            return sn_error(SN_ERR_INVALID_ARG, "lr schedule: final_lr not finite");
        if (s->total_steps <= cosine_start(s))
            return sn_error(SN_ERR_INVALID_ARG,
                            "lr schedule: cosine total_steps %lld must exceed its start %lld",
                            (long long)s->total_steps, (long long)cosine_start(s));
        return SN_OK;
    }
    return sn_error(SN_ERR_INVALID_ARG, "lr schedule: unknown kind %d", (int)s->kind);
}

/* The schedule without warmup. */
static double base_schedule(const sn_lr_schedule *s, int64_t step) {
    switch (s->kind) {
    case SN_LR_STEP: {
        double lr = s->base_lr;
        const int nb = s->n_boundaries < SN_LR_MAX_BOUNDARIES ? s->n_boundaries
                                                              : SN_LR_MAX_BOUNDARIES;
        /* The last boundary reached wins; boundaries are increasing so we can stop early. */
        for (int i = 0; i < nb && step >= s->boundaries[i]; i++) lr = s->values[i];
        return lr;
    }
    case SN_LR_COSINE: {
        const int64_t start = cosine_start(s);
        const double span = (double)(s->total_steps - start);
        if (span <= 0) return s->final_lr;
        double t = (double)(step - start);
        if (t < 0) t = 0;
        if (t > span) t = span; /* hold final_lr after the end instead of rising again */
        return s->final_lr + 0.5 * (s->base_lr - s->final_lr) * (1.0 + cos(SN_PI * t / span));
    }
    case SN_LR_CONSTANT:
    default:
        return s->base_lr;
    }
}

double sn_lr_at(const sn_lr_schedule *s, int64_t step) {
    if (!s) return 0.0;
    if (step < 0) step = 0;
    if (s->warmup_steps > 0 && step < s->warmup_steps) {
        /* Garden LinearWarmup: ramp towards the value the schedule has when warmup ends, so the
         * curve is continuous there whatever the schedule. */
        const double target = base_schedule(s, s->warmup_steps);
        return s->warmup_init_lr +
               (target - s->warmup_init_lr) * ((double)step / (double)s->warmup_steps);
    }
    return base_schedule(s, step);
}
