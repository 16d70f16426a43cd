/* The parameter fill shared with the PyTorch golden generators (tests/golden/README.md): every
 * tensor from sn_hash_fill with a range chosen by its name. */
#ifndef SN_GOLDEN_FILL_H
#define SN_GOLDEN_FILL_H

#include <math.h>
#include <string.h>

#include "core.h"
#include "spinenet.h"

static inline int gf_ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcmp(s + a - b, suffix) == 0;
}

static inline void golden_fill_params(sn_model *m, uint64_t seed) {
    for (int i = 0; i < sn_model_num_params(m); i++) {
        sn_param p;
        sn_model_param_at(m, i, &p);
        double lo = -0.1, hi = 0.1; /* bias, beta, mean */
        if (gf_ends_with(p.name, ".weight")) {
            double fan = p.ndim == 4 ? (double)(p.shape[0] * p.shape[1] * p.shape[2]) : (double)p.shape[0];
            hi = sqrt(3.0 / fan);
            lo = -hi;
        } else if (gf_ends_with(p.name, ".gamma")) {
            lo = 0.8;
            hi = 1.2;
        } else if (gf_ends_with(p.name, ".var")) {
            lo = 0.5;
            hi = 1.5;
        }
        sn_hash_fill(p.data, p.count, p.name, seed, lo, hi);
    }
}

#endif
