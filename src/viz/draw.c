/* Box outlines, fills and a 5x7 bitmap font drawn by hand for this project (see draw.h). */
#include <string.h>

#include "draw.h"

/* One glyph: 7 rows of 5 columns, '#' is ink. */
typedef struct {
    char c;
    const char *rows[7];
} glyph;

static const glyph k_font[] = {
    {' ', {".....", ".....", ".....", ".....", ".....", ".....", "....."}},
    {'A', {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'B', {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."}},
    {'C', {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."}},
    {'D', {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."}},
    {'E', {"#####", "#....", "#....", "####.", "#....", "#....", "#####"}},
    {'F', {"#####", "#....", "#....", "####.", "#....", "#....", "#...."}},
    {'G', {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"}},
    {'H', {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"}},
    {'I', {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'J', {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."}},
    {'K', {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"}},
    {'L', {"#....", "#....", "#....", "#....", "#....", "#....", "#####"}},
    {'M', {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"}},
    {'N', {"#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#", "#...#"}},
    {'O', {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'P', {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."}},
    {'Q', {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"}},
    {'R', {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"}},
    {'S', {".####", "#....", "#....", ".###.", "....#", "....#", "####."}},
    {'T', {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."}},
    {'U', {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."}},
    {'V', {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."}},
    {'W', {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."}},
    {'X', {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"}},
    {'Y', {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."}},
    {'Z', {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"}},
    {'0', {".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###."}},
    {'1', {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."}},
    {'2', {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"}},
    {'3', {"####.", "....#", "....#", ".###.", "....#", "....#", "####."}},
    {'4', {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."}},
    {'5', {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."}},
    {'6', {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."}},
    {'7', {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."}},
    {'8', {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."}},
    {'9', {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."}},
    {'.', {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."}},
    {',', {".....", ".....", ".....", ".....", ".##..", "..#..", ".#..."}},
    {'-', {".....", ".....", ".....", ".###.", ".....", ".....", "....."}},
    {'_', {".....", ".....", ".....", ".....", ".....", ".....", "#####"}},
    {':', {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."}},
    {'/', {"....#", "....#", "...#.", "..#..", ".#...", "#....", "#...."}},
    {'%', {"##..#", "##..#", "...#.", "..#..", ".#...", "#..##", "#..##"}},
    {'(', {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."}},
    {')', {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."}},
    {'\'', {"..#..", "..#..", ".#...", ".....", ".....", ".....", "....."}},
    {'+', {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."}},
    {'=', {".....", ".....", "#####", ".....", "#####", ".....", "....."}},
    {'#', {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."}},
    {'!', {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."}},
    {'?', {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."}},
    {'&', {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"}},
};

/* Drawn for characters the font lacks. */
static const glyph k_unknown = {0, {"#####", "#...#", "#...#", "#...#", "#...#", "#...#", "#####"}};

static const glyph *find_glyph(char c) {
    if (c >= 'a' && c <= 'z') c = (char)(c - 'a' + 'A');
    for (size_t i = 0; i < sizeof k_font / sizeof k_font[0]; i++)
        if (k_font[i].c == c) return &k_font[i];
    return &k_unknown;
}

static void put(sn_image *img, int x, int y, const uint8_t rgb[3]) {
    if (x < 0 || y < 0 || x >= img->width || y >= img->height) return;
    uint8_t *p = img->pixels + ((size_t)y * img->width + x) * img->channels;
    if (img->channels == 3) {
        p[0] = rgb[0];
        p[1] = rgb[1];
        p[2] = rgb[2];
    } else {
        p[0] = (uint8_t)((rgb[0] * 3 + rgb[1] * 6 + rgb[2]) / 10);
    }
}

void sn_draw_fill(sn_image *img, int x0, int y0, int x1, int y1, const uint8_t rgb[3]) {
    if (!img || !img->pixels) return;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > img->width) x1 = img->width;
    if (y1 > img->height) y1 = img->height;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) put(img, x, y, rgb);
}

void sn_draw_box(sn_image *img, int x0, int y0, int x1, int y1, int thick, const uint8_t rgb[3]) {
    if (!img || !img->pixels || x1 < x0 || y1 < y0) return;
    if (thick < 1) thick = 1;
    sn_draw_fill(img, x0, y0, x1 + 1, y0 + thick, rgb);
    sn_draw_fill(img, x0, y1 + 1 - thick, x1 + 1, y1 + 1, rgb);
    sn_draw_fill(img, x0, y0, x0 + thick, y1 + 1, rgb);
    sn_draw_fill(img, x1 + 1 - thick, y0, x1 + 1, y1 + 1, rgb);
}

int sn_draw_text_width(const char *text, int scale) {
    return text ? (int)strlen(text) * 6 * (scale < 1 ? 1 : scale) : 0;
}

int sn_draw_text(sn_image *img, int x, int y, const char *text, int scale, const uint8_t rgb[3]) {
    if (!img || !img->pixels || !text) return 0;
    if (scale < 1) scale = 1;
    int cx = x;
    for (const char *s = text; *s; s++, cx += 6 * scale) {
        const glyph *g = find_glyph(*s);
        for (int r = 0; r < 7; r++)
            for (int c = 0; c < 5; c++)
                if (g->rows[r][c] == '#')
                    sn_draw_fill(img, cx + c * scale, y + r * scale, cx + (c + 1) * scale,
                                 y + (r + 1) * scale, rgb);
    }
    return cx - x;
}

void sn_draw_label(sn_image *img, int x, int y, const char *text, int scale, const uint8_t bg[3],
                   const uint8_t fg[3]) {
    sn_draw_label_avoid(img, x, y, text, scale, bg, fg, NULL, NULL, 0);
}

static int overlaps(const int a[4], const int b[4]) {
    return a[0] < b[2] && b[0] < a[2] && a[1] < b[3] && b[1] < a[3];
}

void sn_draw_label_avoid(sn_image *img, int x, int y, const char *text, int scale,
                         const uint8_t bg[3], const uint8_t fg[3], int (*placed)[4], int *n_placed,
                         int max_placed) {
    if (!img || !text) return;
    if (scale < 1) scale = 1;
    const int w = sn_draw_text_width(text, scale) + 2 * scale, h = 9 * scale;
    int top = y - h;
    if (top < 0) top = y; /* no room above: inside the box, under its top edge */
    if (x + w > img->width) x = img->width - w;
    if (x < 0) x = 0;
    const int n = placed && n_placed ? *n_placed : 0;
    for (int moved = 1; moved && top + h <= img->height;) {
        moved = 0;
        const int r[4] = {x, top, x + w, top + h};
        for (int i = 0; i < n; i++)
            if (overlaps(r, placed[i])) {
                top = placed[i][3];
                moved = 1;
                break;
            }
    }
    sn_draw_fill(img, x, top, x + w, top + h, bg);
    sn_draw_text(img, x + scale + scale / 2, top + scale, text, scale, fg);
    if (placed && n_placed && n < max_placed) {
        placed[n][0] = x;
        placed[n][1] = top;
        placed[n][2] = x + w;
        placed[n][3] = top + h;
        (*n_placed)++;
    }
}

void sn_draw_class_colour(int k, uint8_t rgb[3]) {
    /* Hues spread by the golden angle, full saturation, bright enough for black text. */
    double h = (double)(k * 137 % 360) / 60.0;
    const int i = (int)h;
    const double f = h - i;
    const double v = 235.0, p = 40.0, q = v - (v - p) * f, t = p + (v - p) * f;
    double r, g, b;
    switch (i) {
    case 0: r = v, g = t, b = p; break;
    case 1: r = q, g = v, b = p; break;
    case 2: r = p, g = v, b = t; break;
    case 3: r = p, g = q, b = v; break;
    case 4: r = t, g = p, b = v; break;
    default: r = v, g = p, b = q; break;
    }
    rgb[0] = (uint8_t)r;
    rgb[1] = (uint8_t)g;
    rgb[2] = (uint8_t)b;
}
