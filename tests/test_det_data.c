/* Detection pre-processing: the eval geometry of the official RetinaNet input, and under random
 * scale jitter, crops and flips that the pixels and the boxes move together (a bright rectangle
 * drawn on a dark image must land exactly inside its mapped box). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "det_data.h"
#include "draw.h"
#include "test.h"

/* Normalised value of a grey level on channel 0. */
static float norm0(int v) { return ((float)v / 255.0f - sn_norm_mean[0]) / sn_norm_std[0]; }

static void make_image(sn_image *img, int w, int h, const sn_det_box *b) {
    CHECK_OK(sn_image_alloc(img, w, h, 3));
    memset(img->pixels, 0, (size_t)w * h * 3);
    for (int y = (int)b->y0; y < (int)b->y1; y++)
        for (int x = (int)b->x0; x < (int)b->x1; x++)
            for (int k = 0; k < 3; k++) img->pixels[((size_t)y * w + x) * 3 + k] = 250;
}

static void test_eval_geometry(void) {
    sn_det_xform xf;
    CHECK_OK(sn_det_plan(480, 640, 256, 0, NULL, NULL, &xf));
    CHECK(xf.scaled_h == 192 && xf.scaled_w == 256 && xf.off_y == 0 && xf.off_x == 0 &&
              xf.content_h == 192 && xf.content_w == 256 && !xf.flip,
          "eval 640x480 at 256: scaled %dx%d content %dx%d", xf.scaled_w, xf.scaled_h,
          xf.content_w, xf.content_h);
    CHECK(sn_det_canvas_size(256) == 256 && sn_det_canvas_size(300) == 384 &&
              sn_det_canvas_size(640) == 640,
          "canvas sizes");
    /* 333 x 500 at 640: scale 640/500 = 1.28, 333 * 1.28 = 426.24 -> 426. */
    CHECK_OK(sn_det_plan(333, 500, 640, 0, NULL, NULL, &xf));
    CHECK(xf.scaled_h == 426 && xf.scaled_w == 640, "333x500 at 640: %dx%d", xf.scaled_h,
          xf.scaled_w);
    /* Half to even, as tf.round: 5 * 0.5 = 2.5 -> 2 (a 5 x 10 image at size 5). */
    CHECK_OK(sn_det_plan(5, 10, 5, 0, NULL, NULL, &xf));
    CHECK(xf.scaled_h == 2 && xf.scaled_w == 5, "half to even: %dx%d", xf.scaled_h, xf.scaled_w);
    /* Round trip of a box through the eval mapping. */
    CHECK_OK(sn_det_plan(480, 640, 256, 0, NULL, NULL, &xf));
    sn_det_box b = {100.0f, 200.0f, 300.5f, 420.25f, 3, 0}, m;
    CHECK(sn_det_map_boxes(&xf, &b, 1, &m) == 1, "box kept");
    float in[4] = {m.y0, m.x0, m.y1, m.x1}, back[4];
    sn_det_unmap_box(&xf, in, back);
    CHECK(fabsf(back[0] - b.y0) < 1e-3f && fabsf(back[1] - b.x0) < 1e-3f &&
              fabsf(back[2] - b.y1) < 1e-3f && fabsf(back[3] - b.x1) < 1e-3f && m.cls == 3,
          "round trip %g %g %g %g", back[0], back[1], back[2], back[3]);
    CHECK(sn_det_plan(0, 10, 256, 0, NULL, NULL, &xf) == SN_ERR_INVALID_ARG, "empty image");
    CHECK(sn_det_plan(10, 10, 256, 1, NULL, NULL, &xf) == SN_ERR_INVALID_ARG, "train, no rng");
}

/* Pixels strictly inside the mapped box (1 px margin) are bright, pixels 2 px outside it and
 * the padding are dark, for many random geometries including flips and crops. */
static void test_boxes_follow_pixels(void) {
    const int W = 301, H = 207, S = 128, P = sn_det_canvas_size(S);
    const sn_det_box box = {40.0f, 170.0f, 150.0f, 260.0f, 1, 0};
    sn_image img;
    make_image(&img, W, H, &box);
    float *canvas = malloc(sizeof(float) * P * P * 3);
    sn_det_aug aug;
    sn_det_aug_defaults(&aug);
    aug.scale_min = 0.5f;
    aug.scale_max = 2.5f;
    int flips = 0, crops = 0, dropped = 0, kept = 0, bad = 0;
    const float bright = norm0(200), dark = norm0(50);
    for (int seed = 0; seed < 60; seed++) {
        sn_rng r;
        sn_rng_seed(&r, 1000 + (uint64_t)seed);
        sn_det_xform xf;
        CHECK_OK(sn_det_plan(H, W, S, 1, &aug, &r, &xf));
        CHECK_OK(sn_det_render(&img, &xf, P, canvas));
        flips += xf.flip;
        crops += xf.off_x > 0 || xf.off_y > 0;
        sn_det_box m;
        if (sn_det_map_boxes(&xf, &box, 1, &m) == 0) {
            dropped++;
            /* Nothing bright may remain on the canvas. */
            for (size_t i = 0; i < (size_t)P * P; i++) bad += canvas[i * 3] > bright;
            continue;
        }
        kept++;
        for (int y = 0; y < P; y++)
            for (int x = 0; x < P; x++) {
                const float v = canvas[((size_t)y * P + x) * 3];
                const float cy = y + 0.5f, cx = x + 0.5f;
                const int inside = cy > m.y0 + 1 && cy < m.y1 - 1 && cx > m.x0 + 1 && cx < m.x1 - 1;
                const int outside = cy < m.y0 - 2 || cy > m.y1 + 2 || cx < m.x0 - 2 || cx > m.x1 + 2;
                if (y >= xf.content_h || x >= xf.content_w) {
                    bad += v != 0.0f; /* padding */
                    continue;
                }
                /* Boxes clipped by the window: their clipped edges have no margin outside. */
                if (inside) bad += v < bright;
                if (outside) bad += v > dark;
            }
    }
    printf("det aug: %d kept, %d dropped, %d flipped, %d cropped\n", kept, dropped, flips, crops);
    CHECK(bad == 0, "%d pixels disagree with their boxes", bad);
    CHECK(flips > 10 && crops > 10 && kept > 30, "too few flips/crops (%d, %d, %d)", flips, crops,
          kept);
    /* hflip 0 (train --no-flip): the same plans, never mirrored. */
    aug.hflip = 0;
    int flips_off = 0;
    for (int seed = 0; seed < 60; seed++) {
        sn_rng r;
        sn_rng_seed(&r, 1000 + (uint64_t)seed);
        sn_det_xform xf;
        CHECK_OK(sn_det_plan(H, W, S, 1, &aug, &r, &xf));
        flips_off += xf.flip;
    }
    CHECK(flips_off == 0, "hflip 0: %d of 60 plans mirrored", flips_off);
    free(canvas);
    sn_image_free(&img);
}

/* A mirrored render is the mirror of the plain one over the content width. */
static void test_flip_mirrors(void) {
    const int W = 97, H = 61, S = 128, P = sn_det_canvas_size(S);
    sn_image img;
    CHECK_OK(sn_image_alloc(&img, W, H, 3));
    for (size_t i = 0; i < (size_t)W * H * 3; i++) img.pixels[i] = (uint8_t)((i * 37) % 251);
    sn_det_xform xf;
    CHECK_OK(sn_det_plan(H, W, S, 0, NULL, NULL, &xf));
    float *a = malloc(sizeof(float) * P * P * 3), *b = malloc(sizeof(float) * P * P * 3);
    CHECK_OK(sn_det_render(&img, &xf, P, a));
    xf.flip = 1;
    CHECK_OK(sn_det_render(&img, &xf, P, b));
    int bad = 0;
    for (int y = 0; y < xf.content_h; y++)
        for (int x = 0; x < xf.content_w; x++)
            for (int k = 0; k < 3; k++)
                bad += a[((size_t)y * P + x) * 3 + k] !=
                       b[((size_t)y * P + (xf.content_w - 1 - x)) * 3 + k];
    CHECK(bad == 0, "flip: %d values differ from the mirror", bad);
    /* Boxes: x -> w - x before scaling. */
    sn_det_box box = {10.0f, 5.0f, 20.0f, 30.0f, 2, 0}, m;
    CHECK(sn_det_map_boxes(&xf, &box, 1, &m) == 1, "flipped box kept");
    CHECK(fabsf(m.x0 - (W - 30.0f) * xf.scale_x) < 1e-4f &&
              fabsf(m.x1 - (W - 5.0f) * xf.scale_x) < 1e-4f,
          "flipped box %g..%g", m.x0, m.x1);
    xf.size = 1; /* canvas check */
    CHECK(sn_det_render(&img, &xf, 0, a) == SN_ERR_SHAPE, "canvas smaller than the size");
    free(a);
    free(b);
    sn_image_free(&img);
}

/* Boxes and labels land where asked, clipped at the borders; every printable character of a
 * class name has a glyph (lower case drawn as capitals). */
static void test_draw(void) {
    sn_image img;
    CHECK_OK(sn_image_alloc(&img, 40, 30, 3));
    memset(img.pixels, 0, 40 * 30 * 3);
    const uint8_t red[3] = {255, 0, 0}, white[3] = {255, 255, 255};
    sn_draw_box(&img, 5, 6, 20, 25, 2, red);
    const uint8_t *p = img.pixels;
    CHECK(p[(6 * 40 + 10) * 3] == 255 && p[(7 * 40 + 10) * 3] == 255 && p[(8 * 40 + 10) * 3] == 0,
          "top edge 2 px");
    CHECK(p[(15 * 40 + 5) * 3] == 255 && p[(15 * 40 + 20) * 3] == 255 && p[(15 * 40 + 21) * 3] == 0,
          "side edges at x0 and x1");
    CHECK(p[(15 * 40 + 12) * 3] == 0, "inside untouched");
    sn_draw_box(&img, -10, -10, 100, 100, 3, red); /* clipped, no crash */
    memset(img.pixels, 0, 40 * 30 * 3);
    const int w = sn_draw_text(&img, 1, 1, "Ab", 1, white);
    CHECK(w == 12 && sn_draw_text_width("Ab", 2) == 24, "text width %d", w);
    /* 'A' row 0 is .###.: columns 1..3 of the glyph. */
    CHECK(p[(1 * 40 + 1) * 3] == 0 && p[(1 * 40 + 2) * 3] == 255 && p[(1 * 40 + 4) * 3] == 255 &&
              p[(1 * 40 + 5) * 3] == 0,
          "glyph A, top row");
    int ink_lower = 0, ink_upper = 0;
    sn_image a, b;
    CHECK_OK(sn_image_alloc(&a, 60, 9, 3));
    CHECK_OK(sn_image_alloc(&b, 60, 9, 3));
    memset(a.pixels, 0, 60 * 9 * 3);
    memset(b.pixels, 0, 60 * 9 * 3);
    sn_draw_text(&a, 0, 0, "boot 0.93", 1, white);
    sn_draw_text(&b, 0, 0, "BOOT 0.93", 1, white);
    for (int i = 0; i < 60 * 9 * 3; i++) {
        ink_lower += a.pixels[i] != 0;
        ink_upper += b.pixels[i] != 0;
    }
    CHECK(ink_lower > 0 && memcmp(a.pixels, b.pixels, 60 * 9 * 3) == 0,
          "lower case is drawn as capitals (%d vs %d)", ink_lower, ink_upper);
    sn_draw_label(&img, 35, 0, "T-shirt/top 0.5", 1, red, white); /* off the right edge */
    /* Two labels of one box: the second goes below the first instead of over it. */
    int placed[4][4], np = 0;
    sn_draw_label_avoid(&img, 2, 12, "coat 0.5", 1, red, white, placed, &np, 4);
    sn_draw_label_avoid(&img, 2, 12, "shirt 0.4", 1, red, white, placed, &np, 4);
    CHECK(np == 2 && placed[0][1] == 3 && placed[1][1] == placed[0][3],
          "stacked labels: %d, rows %d..%d then %d", np, placed[0][1], placed[0][3], placed[1][1]);
    uint8_t c1[3], c2[3];
    sn_draw_class_colour(1, c1);
    sn_draw_class_colour(2, c2);
    CHECK(memcmp(c1, c2, 3) != 0, "class colours differ");
    sn_image_free(&a);
    sn_image_free(&b);
    sn_image_free(&img);
}

int main(void) {
    test_draw();
    test_eval_geometry();
    test_boxes_follow_pixels();
    test_flip_mirrors();
    return TEST_SUMMARY();
}
