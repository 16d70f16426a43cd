/* Drawing on RGB8 images for `spinenet detect`: box outlines, filled rectangles and text in a
 * built-in 5x7 pixel font (upper-case letters, digits and the punctuation of class names and
 * scores; lower-case letters are drawn as capitals, other characters as a hollow box). */
#ifndef SN_DRAW_H
#define SN_DRAW_H

#include <stdint.h>

#include "data.h"

/* Outline of the box [x0, x1] x [y0, y1] (pixel coordinates, clipped to the image), `thick`
 * pixels wide, inwards. */
void sn_draw_box(sn_image *img, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]);
/* Filled rectangle [x0, x1) x [y0, y1), clipped. */
void sn_draw_fill(sn_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3]);
/* Text with its top-left corner at (x, y), each font pixel drawn as scale x scale; clipped.
 * Returns the width drawn in pixels (6 * scale per character). */
int sn_draw_text(sn_image *img, int x, int y, const char *text, int scale, const uint8_t rgb[3]);
/* Width in pixels of text at this scale. */
int sn_draw_text_width(const char *text, int scale);
/* A label (text on a filled background of colour bg) above the point (x, y), or below it when
 * there is no room above. */
void sn_draw_label(sn_image *img, int x, int y, const char *text, int scale, const uint8_t bg[3],
                   const uint8_t fg[3]);
/* The same, moved down past labels already drawn (placed[0 .. *n_placed) as x0, y0, x1, y1)
 * so that labels of boxes at the same place stay readable; the new label's rectangle is added
 * when there is room (max_placed). */
void sn_draw_label_avoid(sn_image *img, int x, int y, const char *text, int scale,
                         const uint8_t bg[3], const uint8_t fg[3], int (*placed)[4], int *n_placed,
                         int max_placed);
/* A distinct, saturated colour for class k. */
void sn_draw_class_colour(int k, uint8_t rgb[3]);

#endif
