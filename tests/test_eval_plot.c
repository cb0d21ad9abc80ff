/* test_eval_plot.c — the evaluation plot (eval_plot.c): the PNG's size and colour type, curve
 * pixels where a known curve runs and white where none does, NaN legends and NaN points, empty
 * and 2,000,000-point curves, clamping, I/O errors naming the path, and an allocation-failure
 * sweep that must leave no partial file. The tests find the ROC plot box from the picture itself
 * (the left and top edges of a curve through (0,0), (0,1), (1,1)), so they do not hard-code the
 * layout.
 *
 * Set SP_PLOT_EXAMPLE=/some/file.png to keep the realistic example plot there for a look. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h> /* after the four headers it needs */

#include "eval/eval_internal.h"
#include "testutil.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h> /* before png.h */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <png.h>

typedef struct image {
    int w, h;
    uint8_t *px; /* RGB */
} image;

/* Reads a PNG back; asserts it is 8-bit RGB without alpha. Caller frees img->px. */
static void read_png(const char *path, image *img) {
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    assert_true(png_image_begin_read_from_file(&pi, path));
    assert_int_equal(pi.format, PNG_FORMAT_RGB); /* colour, no alpha, not colour-mapped */
    img->w = (int)pi.width;
    img->h = (int)pi.height;
    img->px = malloc(PNG_IMAGE_SIZE(pi));
    assert_non_null(img->px);
    assert_true(png_image_finish_read(&pi, NULL, img->px, 0, NULL));
}

static const uint8_t *px_at(const image *img, int x, int y) {
    assert_true(x >= 0 && y >= 0 && x < img->w && y < img->h);
    return img->px + ((size_t)y * (size_t)img->w + (size_t)x) * 3;
}

/* The ROC curve's blue (31, 119, 180) at full coverage, give or take. */
static int is_roc_blue(const uint8_t *p) {
    return p[0] < 60 && p[1] > 95 && p[1] < 145 && p[2] > 160;
}

static int is_white(const uint8_t *p) {
    return p[0] == 255 && p[1] == 255 && p[2] == 255;
}

static int is_dark(const uint8_t *p) {
    return p[0] < 128 && p[1] < 128 && p[2] < 128;
}

/* Where the ROC plot box lies: data (0,0) is at pixel (x, y + size), (1,1) at (x + size, y). */
typedef struct box {
    int x, y, size;
} box;

static int px_of(const box *b, double v) {
    return b->x + (int)floor(v * b->size + 0.5);
}

static int py_of(const box *b, double v) {
    return b->y + (int)floor((1 - v) * b->size + 0.5);
}

static sp__eval_plot empty_plot(void) {
    sp__eval_plot p;
    memset(&p, 0, sizeof p);
    p.roc_auc = p.average_precision = p.prevalence = p.ece = NAN;
    return p;
}

static const double CORNER_FPR[] = {0, 0, 1}, CORNER_TPR[] = {0, 1, 1};

/* Finds the ROC box in a plot of the corner curve (0,0) -> (0,1) -> (1,1): the curve covers the
 * box's left edge and top edge exactly. */
static box find_roc_box(const image *img) {
    box b = {-1, -1, 0};
    int mid = img->h / 2;
    for (int x = 0; x < img->w / 3 && b.x < 0; x++)
        if (is_roc_blue(px_at(img, x, mid))) b.x = x;
    assert_true(b.x > 0);
    int top = mid, bottom = mid;
    while (top > 0 && is_roc_blue(px_at(img, b.x, top - 1)))
        top--;
    while (bottom + 1 < img->h && is_roc_blue(px_at(img, b.x, bottom + 1)))
        bottom++;
    b.y = top;
    int right = b.x;
    while (right + 1 < img->w && is_roc_blue(px_at(img, right + 1, top)))
        right++;
    b.size = right - b.x;
    assert_true(b.size > 250);
    assert_true(bottom - top >= b.size - 2); /* a square box */
    assert_true(bottom - top <= b.size + 2);
    return b;
}

static void render_and_read(const char *path, const sp__eval_plot *p, image *img) {
    assert_int_equal(sp__eval_plot_png(path, p), SP_OK);
    read_png(path, img);
    assert_int_equal(img->w, 1500);
    assert_int_equal(img->h, 520);
}

static box reference_box(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/reference.png", dir);
    sp__eval_plot p = empty_plot();
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR, p.roc_n = 3;
    image img;
    render_and_read(path, &p, &img);
    box b = find_roc_box(&img);
    free(img.px);
    return b;
}

static void test_plot_roc_corner_curve(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-corner");
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    sp__eval_plot p = empty_plot();
    p.title = "Corner";
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR, p.roc_n = 3;
    p.roc_auc = 1.0;
    image img;
    render_and_read(path, &p, &img);
    box b = find_roc_box(&img);
    /* The whole path is curve-coloured: up the left edge, along the top. */
    for (int k = 0; k <= 20; k++) {
        double t = k / 20.0;
        assert_true(is_roc_blue(px_at(&img, b.x, py_of(&b, t))));
        assert_true(is_roc_blue(px_at(&img, px_of(&b, t), b.y)));
    }
    /* Inside, away from the curve, the diagonal, the grid and the legend: white. */
    const double inside[][2] = {{0.1, 0.5}, {0.3, 0.7}, {0.5, 0.9}, {0.7, 0.5}, {0.9, 0.7},
                                {0.3, 0.1}, {0.5, 0.3}, {0.1, 0.3}, {0.9, 0.5}};
    for (size_t k = 0; k < sizeof inside / sizeof *inside; k++)
        for (int dy = -3; dy <= 3; dy++)
            for (int dx = -3; dx <= 3; dx++)
                assert_true(is_white(
                    px_at(&img, px_of(&b, inside[k][0]) + dx, py_of(&b, inside[k][1]) + dy)));
    /* The legend with the AUC sits in the lower right: it has dark text there. */
    int dark = 0;
    for (int y = py_of(&b, 0.2); y < py_of(&b, 0.0); y++)
        for (int x = px_of(&b, 0.5); x < px_of(&b, 1.0); x++)
            dark += is_dark(px_at(&img, x, y));
    assert_true(dark > 50);
    /* The title sits above the box, with dark pixels near the image's middle. */
    dark = 0;
    for (int y = 0; y < b.y - 40; y++)
        for (int x = 600; x < 900; x++)
            dark += is_dark(px_at(&img, x, y));
    assert_true(dark > 50);
    free(img.px);
    tu_rmrf(dir);
    free(dir);
}

static void test_plot_nan_legends_are_left_out(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-nan");
    box b = reference_box(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    const double recall[] = {1, 0.5, 0}, precision[] = {0.5, 0.8, 1};
    const double conf[] = {0.25, 0.75}, acc[] = {0.2, 0.8}, count[] = {10, 0};
    sp__eval_plot p = empty_plot(); /* every number NaN, title NULL */
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR, p.roc_n = 3;
    p.pr_recall = recall, p.pr_precision = precision, p.pr_n = 3;
    p.rel_confidence = conf, p.rel_accuracy = acc, p.rel_count = count, p.rel_n = 2;
    image img;
    render_and_read(path, &p, &img);
    /* No legend: the ROC box's lower right is empty but for the grid line at 0.8 and the
     * gridline at 0.2 (light grey, not dark). */
    for (int y = py_of(&b, 0.18); y < py_of(&b, 0.0) - 3; y++)
        for (int x = px_of(&b, 0.45); x < px_of(&b, 1.0) - 3; x++)
            assert_false(is_dark(px_at(&img, x, y)));
    /* No title. */
    for (int y = 0; y < b.y - 40; y++)
        for (int x = 0; x < img.w; x++)
            assert_true(is_white(px_at(&img, x, y)));
    free(img.px);
    tu_rmrf(dir);
    free(dir);
}

static void test_plot_empty_curves(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-empty");
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    sp__eval_plot p = empty_plot(); /* n = 0 and NULL arrays everywhere */
    p.title = "";
    image img;
    render_and_read(path, &p, &img);
    free(img.px);
    /* n = 0 with arrays, and the numbers shown with no curve under them. */
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR;
    p.pr_recall = CORNER_FPR, p.pr_precision = CORNER_TPR;
    p.rel_confidence = CORNER_FPR, p.rel_accuracy = CORNER_TPR, p.rel_count = NULL;
    p.roc_auc = 0.5, p.average_precision = 0.25, p.prevalence = 0.25, p.ece = 0.0;
    render_and_read(path, &p, &img);
    free(img.px);
    tu_rmrf(dir);
    free(dir);
}

static void test_plot_clamps_and_skips_nan_points(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-clamp");
    box b = reference_box(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    /* Outside [0, 1] clamps onto the corner curve; NaN points would pull it into the middle. */
    const double fpr[] = {-1, NAN, 0.5, -0.5, 0, 3, 1e300};
    const double tpr[] = {-2, 0.5, NAN, 1e9, INFINITY, 2, 1};
    sp__eval_plot p = empty_plot();
    p.roc_fpr = fpr, p.roc_tpr = tpr, p.roc_n = sizeof fpr / sizeof *fpr;
    const double conf[] = {NAN, 0.5, 0.9}, acc[] = {0.5, NAN, 0.9}, count[] = {5, 5, 5};
    p.rel_confidence = conf, p.rel_accuracy = acc, p.rel_count = count, p.rel_n = 3;
    image img;
    render_and_read(path, &p, &img);
    for (int k = 0; k <= 20; k++) {
        double t = k / 20.0;
        assert_true(is_roc_blue(px_at(&img, b.x, py_of(&b, t))));
        assert_true(is_roc_blue(px_at(&img, px_of(&b, t), b.y)));
    }
    assert_true(is_white(px_at(&img, px_of(&b, 0.5) + 3, py_of(&b, 0.5) - 40)));
    assert_true(is_white(px_at(&img, px_of(&b, 0.3), py_of(&b, 0.5))));
    free(img.px);
    tu_rmrf(dir);
    free(dir);
}

/* Counts pixels near the given colour in columns [x0, x1). */
static int count_color(const image *img, int x0, int x1, int r, int g, int bl) {
    int n = 0;
    for (int y = 0; y < img->h; y++)
        for (int x = x0; x < x1; x++) {
            const uint8_t *p = px_at(img, x, y);
            n += abs(p[0] - r) < 30 && abs(p[1] - g) < 30 && abs(p[2] - bl) < 30;
        }
    return n;
}

static void test_plot_two_million_points(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-big");
    box b = reference_box(dir);
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    size_t n = 2000000;
    double *fpr = malloc(n * sizeof *fpr), *tpr = malloc(n * sizeof *tpr);
    double *recall = malloc(n * sizeof *recall), *precision = malloc(n * sizeof *precision);
    assert_true(fpr && tpr && recall && precision);
    for (size_t i = 0; i < n; i++) {
        double t = (double)i / (double)(n - 1);
        fpr[i] = t;
        tpr[i] = sqrt(t);
        recall[i] = 1 - t;
        /* jagged at low recall, as real PR curves are: every other point dips */
        precision[i] = 0.6 + 0.3 * t + ((i & 1) && t > 0.9 ? -0.3 : 0);
    }
    sp__eval_plot p = empty_plot();
    p.title = "Two million points";
    p.roc_fpr = fpr, p.roc_tpr = tpr, p.roc_n = n, p.roc_auc = 2.0 / 3;
    p.pr_recall = recall, p.pr_precision = precision, p.pr_n = n, p.average_precision = 0.7;
    p.prevalence = 0.3;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(sp__eval_plot_png(path, &p), SP_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    printf("# 2,000,000-point ROC and PR curves: %.3f s\n", secs);
    assert_true(secs < 5.0); /* a loose bound: sanitizer builds and busy machines are slower */
    image img;
    read_png(path, &img);
    /* On the curve tpr = sqrt(fpr). */
    const double on_curve[] = {0.04, 0.25, 0.5, 0.81};
    for (size_t k = 0; k < sizeof on_curve / sizeof *on_curve; k++) {
        double x = on_curve[k];
        assert_true(is_roc_blue(px_at(&img, px_of(&b, x), py_of(&b, sqrt(x)))));
    }
    /* The PR panel: the dips between recall 0 and 0.1 fill a solid orange band there. */
    int pr_x = b.x + 500; /* the panels are equal thirds of the width */
    const uint8_t *q = px_at(&img, pr_x + (int)(0.05 * b.size), py_of(&b, 0.75));
    assert_true(q[0] > 200 && q[1] > 80 && q[1] < 150 && q[2] < 60);
    assert_true(count_color(&img, 500, 1000, 230, 110, 10) > 1000);
    free(img.px);
    free(fpr), free(tpr), free(recall), free(precision);
    tu_rmrf(dir);
    free(dir);
}

static void test_plot_missing_folder_is_eio(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-eio");
    char path[4200];
    snprintf(path, sizeof path, "%s/no/such/folder/plot.png", dir);
    sp__eval_plot p = empty_plot();
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR, p.roc_n = 3;
    assert_int_equal(sp__eval_plot_png(path, &p), SP_EIO);
    assert_non_null(strstr(sp_errmsg(), path));
    tu_rmrf(dir);
    free(dir);
}

static void test_plot_bad_arguments(void **state) {
    (void)state;
    sp__eval_plot p = empty_plot();
    assert_int_equal(sp__eval_plot_png(NULL, &p), SP_EINVAL);
    assert_int_equal(sp__eval_plot_png("x.png", NULL), SP_EINVAL);
    assert_non_null(strstr(sp_errmsg(), "x.png"));
}

/* Names in dir other than "." and "..", written to names (at most cap); returns the count. */
static int list_dir(const char *dir, char names[][256], int cap) {
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (n < cap) snprintf(names[n], 256, "%s", e->d_name);
        n++;
    }
    closedir(d);
    return n;
}

static void test_plot_allocation_failures(void **state) {
    (void)state;
    char *dir = tu_tmpdir("plot-oom");
    char path[4200];
    snprintf(path, sizeof path, "%s/plot.png", dir);
    const double conf[] = {0.1, 0.5, 0.9}, acc[] = {0.2, 0.5, 0.8}, count[] = {3, 0, 7};
    sp__eval_plot p = empty_plot();
    p.title = "Out of memory";
    p.roc_fpr = CORNER_FPR, p.roc_tpr = CORNER_TPR, p.roc_n = 3, p.roc_auc = 1;
    p.pr_recall = CORNER_TPR, p.pr_precision = CORNER_FPR, p.pr_n = 3, p.average_precision = 0.5;
    p.rel_confidence = conf, p.rel_accuracy = acc, p.rel_count = count, p.rel_n = 3, p.ece = 0.1;
    sp_status rc = SP_ENOMEM;
    uint64_t k;
    int enomem = 0;
    for (k = 1; k < 500; k++) {
        sp__malloc_fail_after(k);
        rc = sp__eval_plot_png(path, &p);
        sp__malloc_fail_after(0);
        if (rc == SP_OK) break;
        assert_int_equal(rc, SP_ENOMEM);
        enomem++;
        /* No partial output: no temporary file is left behind, and the plot itself is either
         * absent or (when only the folder fsync after the rename ran out of memory) complete. */
        char names[4][256];
        int n = list_dir(dir, names, 4);
        assert_true(n <= 1);
        if (n == 1) {
            assert_string_equal(names[0], "plot.png");
            image img;
            read_png(path, &img);
            free(img.px);
            unlink(path);
        }
    }
    assert_int_equal(rc, SP_OK);
    printf("# %d failing allocations handled before the plot was written\n", enomem);
    assert_true(enomem >= 5); /* image, mask, PNG writer, zlib, output buffer at least */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    tu_rmrf(dir);
    free(dir);
}

/* ---- a realistic example: scores from two overlapping normals, a little under-confident */

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static double uniform(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return ((double)(rng_state >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void) {
    return sqrt(-2 * log(uniform())) * cos(6.283185307179586 * uniform());
}

typedef struct scored {
    double p;
    int y;
} scored;

static int by_score_desc(const void *a, const void *b) {
    double x = ((const scored *)a)->p, y = ((const scored *)b)->p;
    return (x < y) - (x > y);
}

static void test_plot_realistic_example(void **state) {
    (void)state;
    enum { N = 20000, BINS = 10 };
    scored *s = malloc(N * sizeof *s);
    size_t n_pos = 0;
    for (int i = 0; i < N; i++) {
        s[i].y = uniform() < 0.3;
        double z = normal() + (s[i].y ? 1.0 : -1.0);
        /* The true log-odds is log(0.3/0.7) + 2z; 1.5z makes the model under-confident. */
        s[i].p = 1 / (1 + exp(-(log(0.3 / 0.7) + 1.5 * z)));
        n_pos += (size_t)s[i].y;
    }
    qsort(s, N, sizeof *s, by_score_desc);
    /* ROC and PR at every threshold, descending score; PR reversed to recall-descending order. */
    double *fpr = malloc((N + 1) * sizeof *fpr), *tpr = malloc((N + 1) * sizeof *tpr);
    double *recall = malloc((N + 1) * sizeof *recall), *prec = malloc((N + 1) * sizeof *prec);
    size_t tp = 0, fp = 0, m = 0;
    fpr[0] = tpr[0] = 0;
    double auc = 0, ap = 0;
    recall[N] = 0, prec[N] = 1;
    for (int i = 0; i < N; i++) {
        tp += (size_t)s[i].y;
        fp += (size_t)!s[i].y;
        if (i + 1 < N && s[i + 1].p == s[i].p) continue;
        m++;
        fpr[m] = (double)fp / (double)(N - n_pos);
        tpr[m] = (double)tp / (double)n_pos;
        auc += (fpr[m] - fpr[m - 1]) * (tpr[m] + tpr[m - 1]) / 2;
        ap += (tpr[m] - tpr[m - 1]) * (double)tp / (double)(tp + fp);
        recall[N - m] = tpr[m];
        prec[N - m] = (double)tp / (double)(tp + fp);
    }
    double conf[BINS] = {0}, acc[BINS] = {0}, count[BINS] = {0}, ece = 0;
    for (int i = 0; i < N; i++) {
        int k = (int)(s[i].p * BINS);
        k = k >= BINS ? BINS - 1 : k;
        conf[k] += s[i].p, acc[k] += s[i].y, count[k] += 1;
    }
    for (int k = 0; k < BINS; k++)
        if (count[k] > 0) {
            conf[k] /= count[k], acc[k] /= count[k];
            ece += count[k] / N * fabs(conf[k] - acc[k]);
        }
    sp__eval_plot p = empty_plot();
    p.title = "Validation, epoch 12 (20,000 rows)";
    p.roc_fpr = fpr, p.roc_tpr = tpr, p.roc_n = m + 1, p.roc_auc = auc;
    p.pr_recall = recall + N - m, p.pr_precision = prec + N - m, p.pr_n = m + 1;
    p.average_precision = ap, p.prevalence = (double)n_pos / N;
    p.rel_confidence = conf, p.rel_accuracy = acc, p.rel_count = count, p.rel_n = BINS;
    p.ece = ece;
    char *dir = tu_tmpdir("plot-example");
    char path[4200];
    const char *keep = getenv("SP_PLOT_EXAMPLE");
    if (keep && *keep)
        snprintf(path, sizeof path, "%s", keep);
    else
        snprintf(path, sizeof path, "%s/example.png", dir);
    image img;
    render_and_read(path, &p, &img);
    assert_true(count_color(&img, 0, 500, 31, 119, 180) > 500);
    assert_true(count_color(&img, 500, 1000, 230, 110, 10) > 500);
    assert_true(count_color(&img, 1000, 1500, 44, 150, 44) > 300);
    free(img.px);
    free(s), free(fpr), free(tpr), free(recall), free(prec);
    tu_rmrf(dir);
    free(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_plot_roc_corner_curve),
        cmocka_unit_test(test_plot_nan_legends_are_left_out),
        cmocka_unit_test(test_plot_empty_curves),
        cmocka_unit_test(test_plot_clamps_and_skips_nan_points),
        cmocka_unit_test(test_plot_two_million_points),
        cmocka_unit_test(test_plot_missing_folder_is_eio),
        cmocka_unit_test(test_plot_bad_arguments),
        cmocka_unit_test(test_plot_allocation_failures),
        cmocka_unit_test(test_plot_realistic_example),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
