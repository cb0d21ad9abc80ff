/* eval_plot.c — draws the evaluation curves into one RGB PNG: three square panels side by side,
 * the ROC curve (with the dashed chance diagonal), the precision-recall curve (with the dashed
 * no-skill line at the prevalence) and the reliability diagram (with the perfect-calibration
 * diagonal and light bars for the rows per bin). It serves sp__eval_plot_png in eval_internal.h
 * and depends only on core and libpng.
 *
 * How it draws. The image lives in one RGB buffer with a white background. Text, grid lines,
 * frames and ticks are painted straight into it, opaque and pixel-aligned, so they stay crisp.
 * Curves, dashed lines, markers and bars go through a coverage layer: a float mask over the panel's
 * plot box (plus a margin) into which every shape writes max(old, coverage), after which the mask
 * is blended into the image in one colour and cleared. Taking the maximum rather than blending
 * each segment on its own keeps the joints of a thick polyline from darkening where segments
 * overlap. A segment's coverage is that of a capsule (a line with round caps): a pixel whose
 * centre lies at distance d from the segment gets clamp(r + 0.5 - d, 0, 1), which anti-aliases
 * the edge over one pixel.
 *
 * Curves may hold ten million points, far more than the plot box has pixels. The points are
 * decimated per pixel column before drawing (the "M4" reduction): of each run of consecutive
 * points that fall in the same column only the first, the highest, the lowest and the last are
 * kept, in their original order. The polyline through those covers exactly the pixels the full
 * polyline covers in that column, so the picture is unchanged while a monotone curve (the
 * contract's ROC and PR curves) draws at most four segments per column. This needs O(1) memory
 * and one pass over the input; NaN points are skipped and coordinates are clamped to [0, 1].
 *
 * Text uses a bitmap font drawn by hand for this file: printable ASCII in a 5 x 7 cell with two
 * more rows for descenders, scaled by whole numbers. When scaled, the notches between diagonal
 * neighbours are bridged (as the Scale2x pixel-art filter does), which keeps slanted strokes from
 * looking like stairs.
 *
 * The PNG is encoded in memory with libpng, whose allocations also go through sp__malloc so
 * that allocation-failure tests reach them, and is written with sp__file_commit, so a reader
 * never sees a half-written file. Nothing here keeps state between calls; it is thread-safe. */
#include "eval_internal.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before png.h, which uses FILE */
#include <string.h>

#include <png.h>

/* ---- layout, in pixels */

enum {
    IMG_W = 1500,
    IMG_H = 520,
    PANEL_W = 500,   /* each panel's share of the width */
    BOX_LEFT = 100,  /* plot box's left edge, from the panel's left edge */
    BOX_TOP = 88,    /* plot box's top edge */
    BOX_SIZE = 370,  /* plot box's side; a multiple of 5 puts the 0.2 grid on whole pixels */
    MASK_PAD = 12,   /* coverage mask's margin around the box (markers at the edge reach out) */
    GLYPH_W = 5,     /* font cell: 5 columns ... */
    GLYPH_ROWS = 9,  /* ... 7 rows above the baseline and 2 for descenders */
    GLYPH_CAP = 7,   /* rows above the baseline */
    GLYPH_ADV = 6,   /* advance: the cell plus one column of spacing */
    LABEL_SCALE = 2, /* font scale of everything but the overall title */
    LABEL_CAP = GLYPH_CAP * LABEL_SCALE, /* height of a label's capitals */
    MAX_MARKS = 1000 /* reliability bins beyond this get no markers or bars (they would merge) */
};

typedef struct rgb {
    uint8_t r, g, b;
} rgb;

static const rgb WHITE = {255, 255, 255};
static const rgb INK = {34, 34, 34};          /* titles */
static const rgb INK_SOFT = {80, 80, 80};     /* tick labels, frame */
static const rgb GRID = {232, 232, 232};      /* grid lines */
static const rgb REFERENCE = {140, 140, 140}; /* chance, no-skill and calibration lines */
static const rgb LEGEND_EDGE = {200, 200, 200};
static const rgb ROC_COLOR = {31, 119, 180}; /* blue */
static const rgb PR_COLOR = {230, 110, 10};  /* orange */
static const rgb REL_COLOR = {44, 150, 44};  /* green */

/* A panel's plot box: data (0, 0) is the centre of pixel (x, y + size), data (1, 1) the centre of
 * pixel (x + size, y), so the frame lines sit exactly on the 0 and 1 grid lines. */
typedef struct frame {
    int x, y, size;
} frame;

static double clamp01(double v) {
    return v < 0 ? 0 : v > 1 ? 1 : v;
}

static double map_x(const frame *f, double v) {
    return f->x + 0.5 + v * f->size;
}

static double map_y(const frame *f, double v) {
    return f->y + 0.5 + (1.0 - v) * f->size;
}

/* ---- the image and its coverage layer */

typedef struct canvas {
    uint8_t *px; /* IMG_W * IMG_H * 3, row-major RGB */
    int w, h;
    float *mask; /* coverage layer, mask_w * mask_h, all zero outside a commit */
    int mask_x, mask_y, mask_w, mask_h;
    int dirty_x0, dirty_y0, dirty_x1,
        dirty_y1; /* touched mask cells, inclusive; empty if x0 > x1 */
} canvas;

static void blend(uint8_t *p, rgb c, float a) {
    p[0] = (uint8_t)(p[0] + (c.r - p[0]) * a + 0.5f);
    p[1] = (uint8_t)(p[1] + (c.g - p[1]) * a + 0.5f);
    p[2] = (uint8_t)(p[2] + (c.b - p[2]) * a + 0.5f);
}

/* Paints [x0, x1) x [y0, y1) opaque, clipped to the image. */
static void fill_rect(canvas *cv, int x0, int y0, int x1, int y1, rgb c) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > cv->w) x1 = cv->w;
    if (y1 > cv->h) y1 = cv->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            uint8_t *p = cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3;
            p[0] = c.r;
            p[1] = c.g;
            p[2] = c.b;
        }
}

/* Blends [x0, x1) x [y0, y1) with opacity a, clipped to the image. */
static void shade_rect(canvas *cv, int x0, int y0, int x1, int y1, rgb c, float a) {
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > cv->w) x1 = cv->w;
    if (y1 > cv->h) y1 = cv->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++)
            blend(cv->px + ((size_t)y * (size_t)cv->w + (size_t)x) * 3, c, a);
}

/* Moves the coverage layer over a panel's box; the mask must be clean. */
static void layer_place(canvas *cv, const frame *f) {
    cv->mask_x = f->x - MASK_PAD;
    cv->mask_y = f->y - MASK_PAD;
    cv->dirty_x0 = cv->dirty_y0 = 1;
    cv->dirty_x1 = cv->dirty_y1 = 0;
}

static void layer_touch(canvas *cv, int x0, int y0, int x1, int y1) {
    if (cv->dirty_x0 > cv->dirty_x1) {
        cv->dirty_x0 = x0, cv->dirty_y0 = y0, cv->dirty_x1 = x1, cv->dirty_y1 = y1;
        return;
    }
    if (x0 < cv->dirty_x0) cv->dirty_x0 = x0;
    if (y0 < cv->dirty_y0) cv->dirty_y0 = y0;
    if (x1 > cv->dirty_x1) cv->dirty_x1 = x1;
    if (y1 > cv->dirty_y1) cv->dirty_y1 = y1;
}

/* Adds a capsule of radius r around the segment a-b (image coordinates; pixel centres at +0.5)
 * to the layer. Each row visits only the pixels near the line, which makes a long slanted
 * segment cost its length times its width rather than its bounding box. */
static void layer_segment(canvas *cv, double ax, double ay, double bx, double by, double r) {
    ax -= cv->mask_x, bx -= cv->mask_x;
    ay -= cv->mask_y, by -= cv->mask_y;
    double reach = r + 0.5; /* coverage reaches zero at this distance */
    double dx = bx - ax, dy = by - ay, len2 = dx * dx + dy * dy;
    double inv_len2 = len2 > 0 ? 1.0 / len2 : 0.0;
    double box_x0 = fmin(ax, bx) - reach, box_x1 = fmax(ax, bx) + reach;
    double box_y0 = fmin(ay, by) - reach, box_y1 = fmax(ay, by) + reach;
    if (box_x1 < 0 || box_y1 < 0 || box_x0 >= cv->mask_w || box_y0 >= cv->mask_h) return;
    int y0 = box_y0 < 0 ? 0 : (int)box_y0;
    int y1 = box_y1 >= cv->mask_h ? cv->mask_h - 1 : (int)box_y1;
    /* In a row, the pixels within `reach` of the infinite line lie within reach * len / |dy| of
     * the line's crossing; a superset of the capsule's row, and much narrower when steep. */
    double half_span = fabs(dy) > 1e-9 ? reach * sqrt(len2) / fabs(dy) : INFINITY;
    int x_min = cv->mask_w, x_max = -1;
    for (int y = y0; y <= y1; y++) {
        double cy = y + 0.5, lo = box_x0, hi = box_x1;
        if (half_span < hi - lo) {
            double cross = ax + (cy - ay) * dx / dy;
            lo = fmax(lo, cross - half_span);
            hi = fmin(hi, cross + half_span);
        }
        if (hi < 0 || lo >= cv->mask_w) continue;
        int x0 = lo < 0 ? 0 : (int)lo;
        int x1 = hi >= cv->mask_w ? cv->mask_w - 1 : (int)hi;
        float *row = cv->mask + (size_t)y * (size_t)cv->mask_w;
        for (int x = x0; x <= x1; x++) {
            double cx = x + 0.5;
            double t = ((cx - ax) * dx + (cy - ay) * dy) * inv_len2;
            t = t < 0 ? 0 : t > 1 ? 1 : t;
            double ex = ax + t * dx - cx, ey = ay + t * dy - cy;
            double cover = reach - sqrt(ex * ex + ey * ey);
            if (cover <= 0) continue;
            float c = cover >= 1 ? 1.0f : (float)cover;
            if (c > row[x]) row[x] = c;
        }
        if (x0 < x_min) x_min = x0;
        if (x1 > x_max) x_max = x1;
    }
    if (x_max >= x_min) layer_touch(cv, x_min, y0, x_max, y1);
}

/* Adds a dashed segment: dashes of `on` pixels every `on + off` (round caps add r at each end). */
static void layer_dashed(canvas *cv, double ax, double ay, double bx, double by, double r,
                         double on, double off) {
    double dx = bx - ax, dy = by - ay, len = hypot(dx, dy);
    if (!(len > 0)) return;
    for (double s = 0; s < len; s += on + off) {
        double e = fmin(s + on, len);
        layer_segment(cv, ax + dx * s / len, ay + dy * s / len, ax + dx * e / len,
                      ay + dy * e / len, r);
    }
}

/* Adds the rectangle [x0, x1) x [y0, y1) (image coordinates), partial pixels by their area. */
static void layer_rect(canvas *cv, double x0, double y0, double x1, double y1) {
    x0 -= cv->mask_x, x1 -= cv->mask_x;
    y0 -= cv->mask_y, y1 -= cv->mask_y;
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > cv->mask_w) x1 = cv->mask_w;
    if (y1 > cv->mask_h) y1 = cv->mask_h;
    if (!(x1 > x0 && y1 > y0)) return;
    int ix0 = (int)x0, iy0 = (int)y0, ix1 = (int)ceil(x1) - 1, iy1 = (int)ceil(y1) - 1;
    for (int y = iy0; y <= iy1; y++) {
        double cy = fmin(y + 1, y1) - fmax(y, y0);
        float *row = cv->mask + (size_t)y * (size_t)cv->mask_w;
        for (int x = ix0; x <= ix1; x++) {
            float c = (float)(cy * (fmin(x + 1, x1) - fmax(x, x0)));
            if (c > row[x]) row[x] = c;
        }
    }
    layer_touch(cv, ix0, iy0, ix1, iy1);
}

/* Blends the layer into the image in colour c at the given opacity and clears it. */
static void layer_commit(canvas *cv, rgb c, float opacity) {
    for (int y = cv->dirty_y0; y <= cv->dirty_y1; y++) {
        float *row = cv->mask + (size_t)y * (size_t)cv->mask_w;
        int iy = cv->mask_y + y;
        for (int x = cv->dirty_x0; x <= cv->dirty_x1; x++) {
            int ix = cv->mask_x + x;
            if (row[x] > 0 && ix >= 0 && iy >= 0 && ix < cv->w && iy < cv->h)
                blend(cv->px + ((size_t)iy * (size_t)cv->w + (size_t)ix) * 3, c, row[x] * opacity);
            row[x] = 0;
        }
    }
    cv->dirty_x0 = cv->dirty_y0 = 1;
    cv->dirty_x1 = cv->dirty_y1 = 0;
}

/* ---- curves: per-column decimation feeding a pen */

/* A pen draws a polyline into the layer one vertex at a time. */
typedef struct pen {
    canvas *cv;
    double r;
    int down;
    double x, y;
} pen;

static void pen_to(pen *p, double x, double y) {
    /* The first vertex draws a dot, so a one-point curve still shows. */
    layer_segment(p->cv, p->down ? p->x : x, p->down ? p->y : y, x, y, p->r);
    p->down = 1;
    p->x = x;
    p->y = y;
}

typedef struct vertex {
    size_t i; /* index in the input, for ordering */
    double x, y;
} vertex;

/* The points of one run in a pixel column: first, last, and the extremes in y. */
typedef struct column {
    long key;
    vertex first, last, top, bottom;
} column;

static void column_flush(pen *p, const column *c) {
    vertex v[4] = {c->first, c->top, c->bottom, c->last};
    for (int i = 1; i < 4; i++) /* insertion sort by input order */
        for (int j = i; j > 0 && v[j].i < v[j - 1].i; j--) {
            vertex t = v[j];
            v[j] = v[j - 1];
            v[j - 1] = t;
        }
    for (int i = 0; i < 4; i++)
        if (i == 0 || v[i].i != v[i - 1].i) pen_to(p, v[i].x, v[i].y);
}

/* Draws the polyline through (xs[i], ys[i]) into the layer, skipping NaN points and, when
 * weights is not NULL, points whose weight is not positive. */
static void layer_curve(canvas *cv, const frame *f, const double *xs, const double *ys,
                        const double *weights, size_t n, double r) {
    if (!xs || !ys) return;
    pen p = {cv, r, 0, 0, 0};
    column c = {0};
    int open = 0;
    for (size_t i = 0; i < n; i++) {
        double x = xs[i], y = ys[i];
        if (isnan(x) || isnan(y) || (weights && !(weights[i] > 0))) continue;
        vertex v = {i, map_x(f, clamp01(x)), map_y(f, clamp01(y))};
        long key = (long)v.x; /* v.x > 0, so this is floor() */
        if (open && key == c.key) {
            if (v.y < c.top.y) c.top = v;
            if (v.y > c.bottom.y) c.bottom = v;
            c.last = v;
            continue;
        }
        if (open) column_flush(&p, &c);
        c.key = key;
        c.first = c.last = c.top = c.bottom = v;
        open = 1;
    }
    if (open) column_flush(&p, &c);
}

/* ---- text: a 5 x 7 bitmap font (plus 2 descender rows), printable ASCII 32..126 */

/* Rows top to bottom, '#' = ink. Rows left out are blank. */
static const char *const FONT[95][GLYPH_ROWS] = {
    /*   */ {NULL},
    /* ! */ {"..#..", "..#..", "..#..", "..#..", "..#..", ".....", "..#.."},
    /* " */ {".#.#.", ".#.#.", ".#.#."},
    /* # */ {".#.#.", ".#.#.", "#####", ".#.#.", "#####", ".#.#.", ".#.#."},
    /* $ */ {"..#..", ".####", "#.#..", ".###.", "..#.#", "####.", "..#.."},
    /* % */ {"##...", "##..#", "...#.", "..#..", ".#...", "#..##", "...##"},
    /* & */ {".##..", "#..#.", "#.#..", ".#...", "#.#.#", "#..#.", ".##.#"},
    /* ' */ {"..#..", "..#..", "..#.."},
    /* ( */ {"...#.", "..#..", ".#...", ".#...", ".#...", "..#..", "...#."},
    /* ) */ {".#...", "..#..", "...#.", "...#.", "...#.", "..#..", ".#..."},
    /* * */ {".....", "..#..", "#.#.#", ".###.", "#.#.#", "..#..", "....."},
    /* + */ {".....", "..#..", "..#..", "#####", "..#..", "..#..", "....."},
    /* , */ {".....", ".....", ".....", ".....", ".....", ".##..", ".##..", "..#..", ".#..."},
    /* - */ {".....", ".....", ".....", "#####", ".....", ".....", "....."},
    /* . */ {".....", ".....", ".....", ".....", ".....", ".##..", ".##.."},
    /* / */ {"....#", "...#.", "...#.", "..#..", ".#...", ".#...", "#...."},
    /* 0 */ {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
    /* 1 */ {"..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* 2 */ {".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####"},
    /* 3 */ {"#####", "...#.", "..#..", "...#.", "....#", "#...#", ".###."},
    /* 4 */ {"...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#."},
    /* 5 */ {"#####", "#....", "####.", "....#", "....#", "#...#", ".###."},
    /* 6 */ {"..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###."},
    /* 7 */ {"#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#..."},
    /* 8 */ {".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###."},
    /* 9 */ {".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##.."},
    /* : */ {".....", ".##..", ".##..", ".....", ".##..", ".##..", "....."},
    /* ; */ {".....", ".##..", ".##..", ".....", ".##..", ".##..", "..#..", ".#..."},
    /* < */ {"...#.", "..#..", ".#...", "#....", ".#...", "..#..", "...#."},
    /* = */ {".....", ".....", "#####", ".....", "#####", ".....", "....."},
    /* > */ {".#...", "..#..", "...#.", "....#", "...#.", "..#..", ".#..."},
    /* ? */ {".###.", "#...#", "....#", "...#.", "..#..", ".....", "..#.."},
    /* @ */ {".###.", "#...#", "#.###", "#.#.#", "#.###", "#....", ".####"},
    /* A */ {".###.", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
    /* B */ {"####.", "#...#", "#...#", "####.", "#...#", "#...#", "####."},
    /* C */ {".###.", "#...#", "#....", "#....", "#....", "#...#", ".###."},
    /* D */ {"####.", "#...#", "#...#", "#...#", "#...#", "#...#", "####."},
    /* E */ {"#####", "#....", "#....", "####.", "#....", "#....", "#####"},
    /* F */ {"#####", "#....", "#....", "####.", "#....", "#....", "#...."},
    /* G */ {".###.", "#...#", "#....", "#.###", "#...#", "#...#", ".####"},
    /* H */ {"#...#", "#...#", "#...#", "#####", "#...#", "#...#", "#...#"},
    /* I */ {".###.", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* J */ {"..###", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
    /* K */ {"#...#", "#..#.", "#.#..", "##...", "#.#..", "#..#.", "#...#"},
    /* L */ {"#....", "#....", "#....", "#....", "#....", "#....", "#####"},
    /* M */ {"#...#", "##.##", "#.#.#", "#.#.#", "#...#", "#...#", "#...#"},
    /* N */ {"#...#", "#...#", "##..#", "#.#.#", "#..##", "#...#", "#...#"},
    /* O */ {".###.", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
    /* P */ {"####.", "#...#", "#...#", "####.", "#....", "#....", "#...."},
    /* Q */ {".###.", "#...#", "#...#", "#...#", "#.#.#", "#..#.", ".##.#"},
    /* R */ {"####.", "#...#", "#...#", "####.", "#.#..", "#..#.", "#...#"},
    /* S */ {".####", "#....", "#....", ".###.", "....#", "....#", "####."},
    /* T */ {"#####", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
    /* U */ {"#...#", "#...#", "#...#", "#...#", "#...#", "#...#", ".###."},
    /* V */ {"#...#", "#...#", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
    /* W */ {"#...#", "#...#", "#...#", "#.#.#", "#.#.#", "#.#.#", ".#.#."},
    /* X */ {"#...#", "#...#", ".#.#.", "..#..", ".#.#.", "#...#", "#...#"},
    /* Y */ {"#...#", "#...#", ".#.#.", "..#..", "..#..", "..#..", "..#.."},
    /* Z */ {"#####", "....#", "...#.", "..#..", ".#...", "#....", "#####"},
    /* [ */ {".###.", ".#...", ".#...", ".#...", ".#...", ".#...", ".###."},
    /* \ */ {"#....", ".#...", ".#...", "..#..", "...#.", "...#.", "....#"},
    /* ] */ {".###.", "...#.", "...#.", "...#.", "...#.", "...#.", ".###."},
    /* ^ */ {"..#..", ".#.#.", "#...#"},
    /* _ */ {".....", ".....", ".....", ".....", ".....", ".....", ".....", "#####"},
    /* ` */ {".#...", "..#.."},
    /* a */ {".....", ".....", ".###.", "....#", ".####", "#...#", ".####"},
    /* b */ {"#....", "#....", "####.", "#...#", "#...#", "#...#", "####."},
    /* c */ {".....", ".....", ".###.", "#....", "#....", "#...#", ".###."},
    /* d */ {"....#", "....#", ".####", "#...#", "#...#", "#...#", ".####"},
    /* e */ {".....", ".....", ".###.", "#...#", "#####", "#....", ".###."},
    /* f */ {"..##.", ".#..#", ".#...", "###..", ".#...", ".#...", ".#..."},
    /* g */ {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
    /* h */ {"#....", "#....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
    /* i */ {"..#..", ".....", ".##..", "..#..", "..#..", "..#..", ".###."},
    /* j */ {"...#.", ".....", "..##.", "...#.", "...#.", "...#.", "...#.", "#..#.", ".##.."},
    /* k */ {"#....", "#....", "#..#.", "#.#..", "##...", "#.#..", "#..#."},
    /* l */ {".##..", "..#..", "..#..", "..#..", "..#..", "..#..", ".###."},
    /* m */ {".....", ".....", "##.#.", "#.#.#", "#.#.#", "#...#", "#...#"},
    /* n */ {".....", ".....", "#.##.", "##..#", "#...#", "#...#", "#...#"},
    /* o */ {".....", ".....", ".###.", "#...#", "#...#", "#...#", ".###."},
    /* p */ {".....", ".....", "####.", "#...#", "#...#", "#...#", "####.", "#....", "#...."},
    /* q */ {".....", ".....", ".####", "#...#", "#...#", "#...#", ".####", "....#", "....#"},
    /* r */ {".....", ".....", "#.##.", "##..#", "#....", "#....", "#...."},
    /* s */ {".....", ".....", ".####", "#....", ".###.", "....#", "####."},
    /* t */ {".#...", ".#...", "###..", ".#...", ".#...", ".#..#", "..##."},
    /* u */ {".....", ".....", "#...#", "#...#", "#...#", "#..##", ".##.#"},
    /* v */ {".....", ".....", "#...#", "#...#", "#...#", ".#.#.", "..#.."},
    /* w */ {".....", ".....", "#...#", "#...#", "#.#.#", "#.#.#", ".#.#."},
    /* x */ {".....", ".....", "#...#", ".#.#.", "..#..", ".#.#.", "#...#"},
    /* y */ {".....", ".....", "#...#", "#...#", "#...#", "#...#", ".####", "....#", ".###."},
    /* z */ {".....", ".....", "#####", "...#.", "..#..", ".#...", "#####"},
    /* { */ {"...##", "..#..", "..#..", ".#...", "..#..", "..#..", "...##"},
    /* | */ {"..#..", "..#..", "..#..", "..#..", "..#..", "..#..", "..#.."},
    /* } */ {"##...", "..#..", "..#..", "...#.", "..#..", "..#..", "##..."},
    /* ~ */ {".....", ".....", ".#...", "#.#.#", "...#."},
};

static int glyph_on(const char *const *g, int row, int col) {
    if (row < 0 || row >= GLYPH_ROWS || col < 0 || col >= GLYPH_W || !g[row]) return 0;
    return g[row][col] == '#';
}

/* Where text goes: local (u, v), u along the text and v down across it, maps to image pixel
 * (x + u, y + v) when upright, or (x + v, y - u) when it reads upwards (turned 90 degrees left,
 * as a y-axis title). */
typedef struct text_pen {
    canvas *cv;
    int x, y, upward, scale;
    rgb color;
} text_pen;

static void text_block(const text_pen *t, int u, int v, int w, int h) {
    if (t->upward)
        fill_rect(t->cv, t->x + v, t->y - u - w + 1, t->x + v + h, t->y - u + 1, t->color);
    else
        fill_rect(t->cv, t->x + u, t->y + v, t->x + u + w, t->y + v + h, t->color);
}

static void draw_glyph(const text_pen *t, int u0, char ch) {
    if (ch < 32 || ch > 126) ch = '?';
    const char *const *g = FONT[ch - 32];
    int s = t->scale;
    for (int row = 0; row < GLYPH_ROWS; row++)
        for (int col = 0; col < GLYPH_W; col++) {
            if (glyph_on(g, row, col)) {
                text_block(t, u0 + col * s, row * s, s, s);
                continue;
            }
            if (s < 2) continue;
            /* An empty cell with ink on two sides meeting at a corner (and not on the opposite
             * two) gets that corner filled as a small triangle, as Scale2x does: it smooths the
             * steps of diagonal strokes without thickening straight ones. */
            for (int dy = -1; dy <= 1; dy += 2)
                for (int dx = -1; dx <= 1; dx += 2) {
                    if (!glyph_on(g, row, col + dx) || !glyph_on(g, row + dy, col) ||
                        glyph_on(g, row, col - dx) || glyph_on(g, row - dy, col))
                        continue;
                    for (int j = 0; j < s; j++)
                        for (int i = 0; i < s; i++) {
                            double fu = (i + 0.5) / s, fv = (j + 0.5) / s;
                            double du = dx < 0 ? fu : 1 - fu, dv = dy < 0 ? fv : 1 - fv;
                            if (du + dv <= 0.5 + 1e-9)
                                text_block(t, u0 + col * s + i, row * s + j, 1, 1);
                        }
                }
        }
}

static int text_width(const char *s, int scale) {
    size_t n = strlen(s);
    return n ? (int)n * GLYPH_ADV * scale - scale : 0;
}

/* Draws s with its top-left (in text space) at (x, y); bold adds a copy one pixel along. */
static void draw_text(canvas *cv, int x, int y, int upward, int scale, int bold, rgb color,
                      const char *s) {
    for (int pass = 0; pass <= (bold ? 1 : 0); pass++) {
        text_pen t = {cv, upward ? x : x + pass, upward ? y - pass : y, upward, scale, color};
        for (int i = 0; s[i]; i++)
            draw_glyph(&t, i * GLYPH_ADV * scale, s[i]);
    }
}

/* Upright text centred on x, top at y. */
static void draw_text_centered(canvas *cv, int cx, int y, int scale, int bold, rgb color,
                               const char *s) {
    draw_text(cv, cx - text_width(s, scale) / 2, y, 0, scale, bold, color, s);
}

/* ---- axes, legends, panels */

static void draw_axes(canvas *cv, const frame *f, const char *title, const char *x_title,
                      const char *y_title) {
    int x0 = f->x, y0 = f->y, x1 = f->x + f->size, y1 = f->y + f->size;
    char label[8];
    for (int k = 0; k <= 5; k++) {
        int gx = x0 + k * f->size / 5, gy = y1 - k * f->size / 5;
        if (k > 0 && k < 5) {
            fill_rect(cv, gx, y0 + 1, gx + 1, y1, GRID);
            fill_rect(cv, x0 + 1, gy, x1, gy + 1, GRID);
        }
        fill_rect(cv, gx, y1 + 1, gx + 1, y1 + 6, INK_SOFT); /* ticks, outwards */
        fill_rect(cv, x0 - 5, gy, x0, gy + 1, INK_SOFT);
        snprintf(label, sizeof label, "%.1f", k * 0.2);
        draw_text_centered(cv, gx, y1 + 11, LABEL_SCALE, 0, INK_SOFT, label);
        draw_text(cv, x0 - 10 - text_width(label, LABEL_SCALE), gy - LABEL_CAP / 2, 0, LABEL_SCALE,
                  0, INK_SOFT, label);
    }
    fill_rect(cv, x0, y0, x1 + 1, y0 + 1, INK_SOFT);
    fill_rect(cv, x0, y1, x1 + 1, y1 + 1, INK_SOFT);
    fill_rect(cv, x0, y0, x0 + 1, y1 + 1, INK_SOFT);
    fill_rect(cv, x1, y0, x1 + 1, y1 + 1, INK_SOFT);
    draw_text_centered(cv, x0 + f->size / 2, y1 + 36, LABEL_SCALE, 0, INK, x_title);
    draw_text(cv, x0 - 78, y0 + f->size / 2 + text_width(y_title, LABEL_SCALE) / 2, 1, LABEL_SCALE,
              0, INK, y_title);
    draw_text_centered(cv, x0 + f->size / 2, y0 - 28, LABEL_SCALE, 1, INK, title);
}

typedef enum swatch { SWATCH_LINE, SWATCH_DASH, SWATCH_MARKER, SWATCH_BAR } swatch;

typedef struct legend_item {
    swatch kind;
    rgb color;
    char text[48];
} legend_item;

typedef enum corner { LOWER_RIGHT, LOWER_LEFT, UPPER_LEFT } corner;

enum { LEGEND_PAD = 9, LEGEND_ROW = 24, LEGEND_SWATCH = 28, LEGEND_GAP = 8 };

/* A marker is a filled disc inside a thin white ring; the ring sets it apart from its line. */
#define MARKER_R      4.0
#define MARKER_RING_R 5.5

static void draw_marker_at(canvas *cv, double x, double y, rgb color) {
    layer_segment(cv, x, y, x, y, MARKER_RING_R);
    layer_commit(cv, WHITE, 1.0f);
    layer_segment(cv, x, y, x, y, MARKER_R);
    layer_commit(cv, color, 1.0f);
}

/* A legend box in a corner of the plot box, one row per item; drawn last, over the curves, on a
 * nearly opaque white ground so it stays readable without hiding what lies under it. */
static void draw_legend(canvas *cv, const frame *f, corner where, const legend_item *items, int n) {
    if (n == 0) return;
    int text_w = 0;
    for (int i = 0; i < n; i++)
        if (text_width(items[i].text, LABEL_SCALE) > text_w)
            text_w = text_width(items[i].text, LABEL_SCALE);
    int w = 2 * LEGEND_PAD + LEGEND_SWATCH + LEGEND_GAP + text_w;
    int h = 2 * LEGEND_PAD + (n - 1) * LEGEND_ROW + LABEL_CAP;
    int bx = where == LOWER_RIGHT ? f->x + f->size - 10 - w : f->x + 11;
    int by = where == UPPER_LEFT ? f->y + 11 : f->y + f->size - 10 - h;
    shade_rect(cv, bx, by, bx + w, by + h, WHITE, 0.88f);
    fill_rect(cv, bx, by, bx + w, by + 1, LEGEND_EDGE);
    fill_rect(cv, bx, by + h - 1, bx + w, by + h, LEGEND_EDGE);
    fill_rect(cv, bx, by, bx + 1, by + h, LEGEND_EDGE);
    fill_rect(cv, bx + w - 1, by, bx + w, by + h, LEGEND_EDGE);
    for (int i = 0; i < n; i++) {
        int ty = by + LEGEND_PAD + i * LEGEND_ROW;
        double sx0 = bx + LEGEND_PAD + 0.5, sx1 = sx0 + LEGEND_SWATCH - 1, sy = ty + LABEL_CAP / 2;
        switch (items[i].kind) {
        case SWATCH_LINE:
        case SWATCH_MARKER:
            layer_segment(cv, sx0, sy, sx1, sy, 1.25);
            layer_commit(cv, items[i].color, 1.0f);
            if (items[i].kind == SWATCH_MARKER)
                draw_marker_at(cv, (sx0 + sx1) / 2, sy, items[i].color);
            break;
        case SWATCH_DASH:
            layer_dashed(cv, sx0 + 1, sy, sx1, sy, 0.8, 6, 5);
            layer_commit(cv, items[i].color, 1.0f);
            break;
        case SWATCH_BAR:
            layer_rect(cv, sx0 + 6, ty, sx1 - 6, ty + LABEL_CAP);
            layer_commit(cv, items[i].color, 0.28f);
            break;
        }
        draw_text(cv, bx + LEGEND_PAD + LEGEND_SWATCH + LEGEND_GAP, ty, 0, LABEL_SCALE, 0, INK,
                  items[i].text);
    }
}

/* The dashed reference line from data (x0, y0) to (x1, y1). */
static void draw_reference(canvas *cv, const frame *f, double x0, double y0, double x1, double y1) {
    layer_dashed(cv, map_x(f, x0), map_y(f, y0), map_x(f, x1), map_y(f, y1), 0.8, 6, 5);
    layer_commit(cv, REFERENCE, 1.0f);
}

static void panel_roc(canvas *cv, const frame *f, const sp__eval_plot *p) {
    draw_axes(cv, f, "ROC", "False positive rate", "True positive rate");
    layer_place(cv, f);
    draw_reference(cv, f, 0, 0, 1, 1);
    layer_curve(cv, f, p->roc_fpr, p->roc_tpr, NULL, p->roc_n, 1.25);
    layer_commit(cv, ROC_COLOR, 1.0f);
    legend_item items[1];
    int n = 0;
    if (!isnan(p->roc_auc)) {
        items[n] = (legend_item){SWATCH_LINE, ROC_COLOR, ""};
        snprintf(items[n].text, sizeof items[n].text, "AUC %.4f", p->roc_auc);
        n++;
    }
    draw_legend(cv, f, LOWER_RIGHT, items, n);
}

static void panel_pr(canvas *cv, const frame *f, const sp__eval_plot *p) {
    draw_axes(cv, f, "Precision-recall", "Recall", "Precision");
    layer_place(cv, f);
    if (!isnan(p->prevalence)) {
        double y = clamp01(p->prevalence);
        draw_reference(cv, f, 0, y, 1, y);
    }
    layer_curve(cv, f, p->pr_recall, p->pr_precision, NULL, p->pr_n, 1.25);
    layer_commit(cv, PR_COLOR, 1.0f);
    legend_item items[2];
    int n = 0;
    if (!isnan(p->average_precision)) {
        items[n] = (legend_item){SWATCH_LINE, PR_COLOR, ""};
        snprintf(items[n].text, sizeof items[n].text, "AP %.4f", p->average_precision);
        n++;
    }
    if (!isnan(p->prevalence)) {
        items[n] = (legend_item){SWATCH_DASH, REFERENCE, ""};
        snprintf(items[n].text, sizeof items[n].text, "Prevalence %.4f", p->prevalence);
        n++;
    }
    draw_legend(cv, f, LOWER_LEFT, items, n);
}

static void panel_reliability(canvas *cv, const frame *f, const sp__eval_plot *p) {
    draw_axes(cv, f, "Reliability", "Confidence", "Accuracy");
    layer_place(cv, f);
    const double *conf = p->rel_confidence, *acc = p->rel_accuracy, *count = p->rel_count;
    size_t n = conf && acc ? p->rel_n : 0;
    /* Bars show how many rows each bin holds, scaled so the fullest reaches 0.3: they tell
     * which points rest on enough rows to trust. They are centred on the bin's mean confidence
     * with the width of an equal-width bin. Too many bins would merge into a smear, and their
     * markers too, so both are left out beyond MAX_MARKS. */
    int marks = n > 0 && n <= MAX_MARKS;
    double max_count = 0;
    for (size_t i = 0; marks && count && i < n; i++)
        if (count[i] > max_count && !isnan(conf[i]) && !isnan(acc[i])) max_count = count[i];
    int bars = marks && max_count > 0 && isfinite(max_count);
    if (bars) {
        double half = 0.5 / (double)n;
        for (size_t i = 0; i < n; i++) {
            if (!(count[i] > 0) || isnan(conf[i]) || isnan(acc[i])) continue;
            double c = clamp01(conf[i]);
            layer_rect(cv, map_x(f, clamp01(c - half)) + 0.5, map_y(f, 0.3 * count[i] / max_count),
                       map_x(f, clamp01(c + half)) - 0.5, map_y(f, 0) + 0.5);
        }
        layer_commit(cv, REL_COLOR, 0.22f);
    }
    draw_reference(cv, f, 0, 0, 1, 1);
    layer_curve(cv, f, conf, acc, count, n, 1.25);
    layer_commit(cv, REL_COLOR, 1.0f);
    if (marks) {
        /* Markers skip the same bins the line skips: the empty ones. All rings go down before
         * all discs so that neighbouring markers do not cut into each other. */
        for (int pass = 0; pass < 2; pass++) {
            for (size_t i = 0; i < n; i++) {
                if (isnan(conf[i]) || isnan(acc[i]) || (count && !(count[i] > 0))) continue;
                double px = map_x(f, clamp01(conf[i])), py = map_y(f, clamp01(acc[i]));
                layer_segment(cv, px, py, px, py, pass == 0 ? MARKER_RING_R : MARKER_R);
            }
            layer_commit(cv, pass == 0 ? WHITE : REL_COLOR, 1.0f);
        }
    }
    legend_item items[2];
    int k = 0;
    if (!isnan(p->ece)) {
        items[k] = (legend_item){marks ? SWATCH_MARKER : SWATCH_LINE, REL_COLOR, ""};
        snprintf(items[k].text, sizeof items[k].text, "ECE %.4f", p->ece);
        k++;
    }
    if (bars) items[k++] = (legend_item){SWATCH_BAR, REL_COLOR, "Rows per bin"};
    draw_legend(cv, f, UPPER_LEFT, items, k);
}

/* ---- PNG encoding */

/* Shared with libpng's callbacks. It lives in the caller of the function that calls setjmp, so
 * its fields keep their values across the longjmp. */
typedef struct png_sink {
    sp__buf *out;
    int oom;
    char msg[160];
} png_sink;

static void png_write_cb(png_structp png, png_bytep data, size_t n) {
    png_sink *s = png_get_io_ptr(png);
    if (sp__buf_append(s->out, data, n) != SP_OK) {
        s->oom = 1;
        png_error(png, "out of memory");
    }
}

static void png_flush_cb(png_structp png) {
    (void)png; /* memory needs no flush; without this libpng would fflush() the io pointer */
}

static void png_error_cb(png_structp png, png_const_charp msg) {
    png_sink *s = png_get_error_ptr(png);
    snprintf(s->msg, sizeof s->msg, "%s", msg ? msg : "error");
    png_longjmp(png, 1);
}

static void png_warning_cb(png_structp png, png_const_charp msg) {
    (void)png;
    (void)msg;
}

static png_voidp png_malloc_cb(png_structp png, png_alloc_size_t n) {
    void *p = sp__malloc(n);
    if (!p) ((png_sink *)png_get_mem_ptr(png))->oom = 1;
    return p;
}

static void png_free_cb(png_structp png, png_voidp p) {
    (void)png;
    sp__free(p);
}

static sp_status encode_png(const canvas *cv, const char *path, png_sink *sink) {
    png_structp png = png_create_write_struct_2(PNG_LIBPNG_VER_STRING, sink, png_error_cb,
                                                png_warning_cb, sink, png_malloc_cb, png_free_cb);
    if (!png) return sp__fail(SP_ENOMEM, "%s: out of memory for a PNG writer", path);
    png_infop info = png_create_info_struct(png);
    if (!info) {
        png_destroy_write_struct(&png, NULL);
        return sp__fail(SP_ENOMEM, "%s: out of memory for a PNG writer", path);
    }
    if (setjmp(png_jmpbuf(png))) {
        png_destroy_write_struct(&png, &info);
        if (sink->oom) return sp__fail(SP_ENOMEM, "%s: out of memory encoding the plot", path);
        return sp__fail(SP_EIO, "%s: cannot encode the plot as PNG: %s", path, sink->msg);
    }
    png_set_write_fn(png, sink, png_write_cb, png_flush_cb);
    png_set_IHDR(png, info, (png_uint_32)cv->w, (png_uint_32)cv->h, 8, PNG_COLOR_TYPE_RGB,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    for (int y = 0; y < cv->h; y++)
        png_write_row(png, cv->px + (size_t)y * (size_t)cv->w * 3);
    png_write_end(png, NULL);
    png_destroy_write_struct(&png, &info);
    return SP_OK;
}

/* ---- entry point */

sp_status sp__eval_plot_png(const char *path, const sp__eval_plot *plot) {
    if (!path) return sp__fail(SP_EINVAL, "sp__eval_plot_png: path is NULL");
    if (!plot) return sp__fail(SP_EINVAL, "%s: sp__eval_plot_png: plot is NULL", path);
    canvas cv = {0};
    cv.w = IMG_W;
    cv.h = IMG_H;
    cv.mask_w = cv.mask_h = BOX_SIZE + 1 + 2 * MASK_PAD;
    size_t n_bytes = (size_t)IMG_W * IMG_H * 3;
    cv.px = sp__malloc(n_bytes);
    cv.mask = sp__calloc((size_t)cv.mask_w * (size_t)cv.mask_h, sizeof *cv.mask);
    if (!cv.px || !cv.mask) {
        sp__free(cv.px);
        sp__free(cv.mask);
        return sp__fail(SP_ENOMEM, "%s: out of memory for a %dx%d plot", path, IMG_W, IMG_H);
    }
    memset(cv.px, 255, n_bytes);

    if (plot->title && *plot->title) {
        int scale = text_width(plot->title, 3) <= IMG_W - 40 ? 3 : 2;
        draw_text_centered(&cv, IMG_W / 2, 16, scale, 0, INK, plot->title);
    }
    frame f = {BOX_LEFT, BOX_TOP, BOX_SIZE};
    panel_roc(&cv, &f, plot);
    f.x += PANEL_W;
    panel_pr(&cv, &f, plot);
    f.x += PANEL_W;
    panel_reliability(&cv, &f, plot);
    sp__free(cv.mask);

    sp__buf png = {0};
    png_sink sink = {&png, 0, ""};
    sp_status rc = encode_png(&cv, path, &sink);
    sp__free(cv.px);
    if (rc == SP_OK) rc = sp__file_commit(path, png.data, png.len);
    sp__buf_free(&png);
    return rc;
}
