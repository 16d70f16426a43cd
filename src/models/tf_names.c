/* tf_names.c: the scheme chosen by the flavour, and freeing (tf_names.h). The schemes are in
 * tf_names_tpu.c and tf_names_garden.c. */
#include "tf_names.h"

#include <stdlib.h>
#include <string.h>

sn_status sn_tf_names_make(const sn_model *m, int ema, sn_tf_names *out)
{
    if (!out)
        return SN_ERR_INVALID_ARG;
    memset(out, 0, sizeof *out);
    if (!m)
        return SN_ERR_INVALID_ARG;
    return m->cfg.flavour == SN_FLAVOUR_TPU ? sn_tf_names_tpu(m, ema, out)
                                             : sn_tf_names_garden(m, ema, out);
}

void sn_tf_names_free(sn_tf_names *t)
{
    if (!t)
        return;
    for (int i = 0; i < t->n; i++) {
        free(t->v[i].model);
        free(t->v[i].tf);
    }
    free(t->v);
    memset(t, 0, sizeof *t);
}
