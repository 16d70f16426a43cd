/* Box decoding as the official box_ops.decode_boxes: (dy, dx, dh, dw) relative to an anchor ->
 * a clipped box. */
#include <math.h>

#include "core.h"
#include "post.h"

/* Written as comparisons rather than fminf/fmaxf so that a NaN stays NaN (torch.clamp's
 * behaviour) instead of becoming the bound. */
static float clip_to(float v, float hi) {
    if (v < 0.0f) return 0.0f;
    if (v > hi) return hi;
    return v;
}

void sn_box_decode_one(const float delta[4], const float anchor[4], float clip, float img_h,
                       float img_w, float out[4]) {
    const float dh = delta[2] > clip ? clip : delta[2];
    const float dw = delta[3] > clip ? clip : delta[3];
    const float ha = anchor[2] - anchor[0];
    const float wa = anchor[3] - anchor[1];
    const float yca = anchor[0] + 0.5f * ha;
    const float xca = anchor[1] + 0.5f * wa;
    const float yc = delta[0] * ha + yca;
    const float xc = delta[1] * wa + xca;
    const float h = expf(dh) * ha;
    const float w = expf(dw) * wa;
    const float ymin = yc - 0.5f * h;
    const float xmin = xc - 0.5f * w;
    float b[4] = {ymin, xmin, ymin + h, xmin + w};
    if (img_h > 0.0f && img_w > 0.0f) {
        b[0] = clip_to(b[0], img_h);
        b[1] = clip_to(b[1], img_w);
        b[2] = clip_to(b[2], img_h);
        b[3] = clip_to(b[3], img_w);
    }
    out[0] = b[0];
    out[1] = b[1];
    out[2] = b[2];
    out[3] = b[3];
}

sn_status sn_box_decode(const float *deltas, const float *anchors, size_t n, float img_h,
                        float img_w, float *boxes) {
    if (n == 0) return SN_OK;
    if (!deltas || !anchors || !boxes)
        return sn_error(SN_ERR_INVALID_ARG, "sn_box_decode: NULL argument");
    for (size_t i = 0; i < n; i++)
        sn_box_decode_one(deltas + 4 * i, anchors + 4 * i, SN_BOX_XFORM_CLIP, img_h, img_w,
                          boxes + 4 * i);
    return SN_OK;
}
