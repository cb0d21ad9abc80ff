/* decode_ceiling.c — the "decode ceiling" of anchors.md ("Data in"): how fast libjpeg-turbo alone
 * decodes a set of JPEGs held in RAM, at full size (or a DCT scale), on N threads.
 *
 *     cc -O2 -o decode_ceiling bench/decode_ceiling.c -lturbojpeg -lpthread
 *     decode_ceiling DIR [--threads N] [--scale 1/2] [--fast] [--repeat R] [--limit N]
 *
 * Loads every *.jpg / *.jpeg under DIR (recursively, sorted by path: ImageFolder's order) into
 * memory first, then, R times, decodes each image with TurboJPEG's tjDecompress2 to packed RGB
 * on N threads (pthreads; each thread has its own tjhandle and output buffer, and takes images
 * t, t+N, t+2N, ...: a static interleaved partition). Only the decode loop is timed (wall clock,
 * CLOCK_MONOTONIC, from a barrier that all threads pass to the last join). Prints one JSON object
 * on stdout: per-repeat seconds, img/s, MB/s of JPEG input, megapixels/s of output, and the
 * process CPU seconds of each decode loop.
 *
 *   --threads N   decoder threads (default 2)
 *   --scale M/D   decode at a DCT scale, e.g. 1/2 (must be one TurboJPEG offers; default 1/1)
 *   --fast        TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE (default: accurate integer IDCT and
 *                 fancy upsampling, PIL's and softpipe's "accurate" defaults)
 *   --repeat R    timed passes over the whole set (default 1); one untimed pass precedes them
 *                 unless --no-warmup
 *   --limit N     only the first N images (by sorted path)
 *
 * Exit status: 0 ok, 1 an image failed to decode (reported), 2 usage, 3 system error.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <turbojpeg.h>

typedef struct img {
    char *path;
    unsigned char *data;
    unsigned long size;
} img;

static img *g_imgs;
static size_t g_n, g_cap;

static int g_threads = 2;
static int g_scale_num = 1, g_scale_den = 1;
static int g_flags = 0;
static pthread_barrier_t g_barrier;

typedef struct worker {
    int id;
    tjhandle tj;
    unsigned char *buf;
    size_t buf_size;
    uint64_t pixels;   /* output pixels decoded in this pass */
    uint64_t checksum; /* one byte per image, so the output is observably used */
    long failed;       /* images that failed to decode in this pass */
    char err[512];     /* the first failure */
    struct timespec t_start;
} worker;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double cpu_s(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6;
}

static int ends_with_jpeg(const char *name) {
    size_t n = strlen(name);
    const char *exts[] = {".jpg", ".jpeg", ".JPG", ".JPEG"};
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        size_t m = strlen(exts[i]);
        if (n > m && strcmp(name + n - m, exts[i]) == 0) return 1;
    }
    return 0;
}

static void add_path(char *path) {
    if (g_n == g_cap) {
        g_cap = g_cap ? g_cap * 2 : 1024;
        g_imgs = realloc(g_imgs, g_cap * sizeof *g_imgs);
        if (!g_imgs) {
            fprintf(stderr, "decode_ceiling: out of memory\n");
            exit(3);
        }
    }
    g_imgs[g_n].path = path;
    g_imgs[g_n].data = NULL;
    g_imgs[g_n].size = 0;
    g_n++;
}

static void walk(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "decode_ceiling: %s: %s\n", dir, strerror(errno));
        exit(3);
    }
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char *p;
        if (asprintf(&p, "%s/%s", dir, e->d_name) < 0) exit(3);
        struct stat st;
        if (stat(p, &st) != 0) {
            free(p);
            continue;
        }
        if (S_ISDIR(st.st_mode)) {
            walk(p);
            free(p);
        } else if (S_ISREG(st.st_mode) && ends_with_jpeg(e->d_name)) {
            add_path(p);
        } else {
            free(p);
        }
    }
    closedir(d);
}

static int cmp_path(const void *a, const void *b) {
    return strcmp(((const img *)a)->path, ((const img *)b)->path);
}

static void load_all(void) {
    for (size_t i = 0; i < g_n; i++) {
        FILE *f = fopen(g_imgs[i].path, "rb");
        if (!f) {
            fprintf(stderr, "decode_ceiling: %s: %s\n", g_imgs[i].path, strerror(errno));
            exit(3);
        }
        struct stat st;
        if (fstat(fileno(f), &st) != 0 || st.st_size <= 0) {
            fprintf(stderr, "decode_ceiling: %s: empty or unreadable\n", g_imgs[i].path);
            exit(3);
        }
        g_imgs[i].size = (unsigned long)st.st_size;
        g_imgs[i].data = malloc((size_t)st.st_size);
        if (!g_imgs[i].data ||
            fread(g_imgs[i].data, 1, (size_t)st.st_size, f) != (size_t)st.st_size) {
            fprintf(stderr, "decode_ceiling: %s: read failed\n", g_imgs[i].path);
            exit(3);
        }
        fclose(f);
    }
}

static void *work(void *arg) {
    worker *w = arg;
    w->pixels = 0;
    w->checksum = 0;
    w->failed = 0;
    w->err[0] = 0;
    pthread_barrier_wait(&g_barrier);
    if (w->id == 0) clock_gettime(CLOCK_MONOTONIC, &w->t_start);
    for (size_t i = (size_t)w->id; i < g_n; i += (size_t)g_threads) {
        const img *im = &g_imgs[i];
        int width, height, subsamp, colorspace;
        if (tjDecompressHeader3(w->tj, im->data, im->size, &width, &height, &subsamp,
                                &colorspace) != 0) {
            if (!w->failed++)
                snprintf(w->err, sizeof w->err, "%s: %s", im->path, tjGetErrorStr2(w->tj));
            continue;
        }
        int sw = (width * g_scale_num + g_scale_den - 1) / g_scale_den; /* TJSCALED */
        int sh = (height * g_scale_num + g_scale_den - 1) / g_scale_den;
        size_t need = (size_t)sw * (size_t)sh * 3;
        if (need > w->buf_size) {
            free(w->buf);
            w->buf = malloc(need);
            if (!w->buf) {
                fprintf(stderr, "decode_ceiling: out of memory\n");
                exit(3);
            }
            w->buf_size = need;
        }
        if (tjDecompress2(w->tj, im->data, im->size, w->buf, sw, 0, sh, TJPF_RGB, g_flags) != 0) {
            /* warnings (e.g. extraneous bytes) are not failures: the image was decoded */
            if (tjGetErrorCode(w->tj) == TJERR_FATAL) {
                if (!w->failed++)
                    snprintf(w->err, sizeof w->err, "%s: %s", im->path, tjGetErrorStr2(w->tj));
                continue;
            }
        }
        w->pixels += (uint64_t)sw * (uint64_t)sh;
        w->checksum += w->buf[need / 2];
    }
    return NULL;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void usage(void) {
    fprintf(stderr, "usage: decode_ceiling DIR [--threads N] [--scale M/D] [--fast] [--repeat R]\n"
                    "                          [--limit N] [--no-warmup]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *dir = NULL;
    int repeat = 1, warmup = 1;
    long limit = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--threads") && i + 1 < argc) {
            g_threads = atoi(argv[++i]);
        } else if (!strcmp(a, "--scale") && i + 1 < argc) {
            if (sscanf(argv[++i], "%d/%d", &g_scale_num, &g_scale_den) != 2) usage();
        } else if (!strcmp(a, "--fast")) {
            g_flags |= TJFLAG_FASTDCT | TJFLAG_FASTUPSAMPLE;
        } else if (!strcmp(a, "--repeat") && i + 1 < argc) {
            repeat = atoi(argv[++i]);
        } else if (!strcmp(a, "--limit") && i + 1 < argc) {
            limit = atol(argv[++i]);
        } else if (!strcmp(a, "--no-warmup")) {
            warmup = 0;
        } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage();
        } else if (a[0] == '-' || dir) {
            usage();
        } else {
            dir = a;
        }
    }
    if (!dir || g_threads < 1 || g_threads > 256 || repeat < 1 || g_scale_num < 1 ||
        g_scale_den < 1)
        usage();

    int nsf = 0, scale_ok = 0;
    tjscalingfactor *sf = tjGetScalingFactors(&nsf);
    for (int i = 0; sf && i < nsf; i++)
        if ((long)sf[i].num * g_scale_den == (long)sf[i].denom * g_scale_num) scale_ok = 1;
    if (!scale_ok) {
        fprintf(stderr, "decode_ceiling: TurboJPEG offers no scale %d/%d\n", g_scale_num,
                g_scale_den);
        return 2;
    }

    walk(dir);
    qsort(g_imgs, g_n, sizeof *g_imgs, cmp_path);
    if (limit >= 0 && (size_t)limit < g_n) {
        for (size_t i = (size_t)limit; i < g_n; i++)
            free(g_imgs[i].path);
        g_n = (size_t)limit;
    }
    if (g_n == 0) {
        fprintf(stderr, "decode_ceiling: no JPEG files under %s\n", dir);
        return 2;
    }
    double t_load = now_s();
    load_all();
    t_load = now_s() - t_load;
    uint64_t bytes = 0;
    for (size_t i = 0; i < g_n; i++)
        bytes += g_imgs[i].size;

    worker *ws = calloc((size_t)g_threads, sizeof *ws);
    pthread_t *th = calloc((size_t)g_threads, sizeof *th);
    for (int t = 0; t < g_threads; t++) {
        ws[t].id = t;
        ws[t].tj = tjInitDecompress();
        if (!ws[t].tj) {
            fprintf(stderr, "decode_ceiling: tjInitDecompress failed\n");
            return 3;
        }
    }
    pthread_barrier_init(&g_barrier, NULL, (unsigned)g_threads);

    double *secs = calloc((size_t)repeat, sizeof *secs);
    double *cpus = calloc((size_t)repeat, sizeof *cpus);
    uint64_t pixels = 0, checksum = 0;
    long failed = 0;
    char err[512] = "";
    for (int r = warmup ? -1 : 0; r < repeat; r++) {
        double c0 = cpu_s();
        for (int t = 0; t < g_threads; t++)
            if (pthread_create(&th[t], NULL, work, &ws[t]) != 0) {
                fprintf(stderr, "decode_ceiling: pthread_create failed\n");
                return 3;
            }
        for (int t = 0; t < g_threads; t++)
            pthread_join(th[t], NULL);
        double t1 = now_s(), c1 = cpu_s();
        double t0 = (double)ws[0].t_start.tv_sec + (double)ws[0].t_start.tv_nsec * 1e-9;
        pixels = 0;
        checksum = 0;
        failed = 0;
        for (int t = 0; t < g_threads; t++) {
            pixels += ws[t].pixels;
            checksum += ws[t].checksum;
            if (ws[t].failed && !failed) snprintf(err, sizeof err, "%s", ws[t].err);
            failed += ws[t].failed;
        }
        if (r >= 0) {
            secs[r] = t1 - t0;
            cpus[r] = c1 - c0;
        }
    }

    double *sorted = calloc((size_t)repeat, sizeof *sorted);
    memcpy(sorted, secs, (size_t)repeat * sizeof *secs);
    qsort(sorted, (size_t)repeat, sizeof *sorted, cmp_double);
    double med =
        repeat % 2 ? sorted[repeat / 2] : 0.5 * (sorted[repeat / 2 - 1] + sorted[repeat / 2]);

    printf("{\"images\": %zu, \"bytes\": %llu, \"threads\": %d, \"scale\": \"%d/%d\", "
           "\"fast\": %s, \"load_seconds\": %.4f, \"failed\": %ld, \"checksum\": %llu,\n"
           " \"output_pixels\": %llu,\n \"seconds\": [",
           g_n, (unsigned long long)bytes, g_threads, g_scale_num, g_scale_den,
           g_flags ? "true" : "false", t_load, failed, (unsigned long long)checksum,
           (unsigned long long)pixels);
    for (int r = 0; r < repeat; r++)
        printf("%s%.6f", r ? ", " : "", secs[r]);
    printf("],\n \"cpu_seconds\": [");
    for (int r = 0; r < repeat; r++)
        printf("%s%.6f", r ? ", " : "", cpus[r]);
    printf("],\n \"img_s\": [");
    for (int r = 0; r < repeat; r++)
        printf("%s%.2f", r ? ", " : "", (double)g_n / secs[r]);
    printf("],\n \"img_s_median\": %.2f, \"mb_s_median\": %.2f, \"mpix_s_median\": %.2f",
           (double)g_n / med, (double)bytes / med / 1e6, (double)pixels / med / 1e6);
    if (failed) {
        printf(",\n \"first_error\": \"");
        for (const char *p = err; *p; p++) {
            if (*p == '"' || *p == '\\') putchar('\\');
            if ((unsigned char)*p >= 0x20) putchar(*p);
        }
        putchar('"');
    }
    printf("}\n");
    if (failed) fprintf(stderr, "decode_ceiling: %ld images failed: %s\n", failed, err);

    for (int t = 0; t < g_threads; t++) {
        tjDestroy(ws[t].tj);
        free(ws[t].buf);
    }
    for (size_t i = 0; i < g_n; i++) {
        free(g_imgs[i].path);
        free(g_imgs[i].data);
    }
    free(g_imgs);
    free(ws);
    free(th);
    free(secs);
    free(cpus);
    free(sorted);
    return failed ? 1 : 0;
}
