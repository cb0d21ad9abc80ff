/* cmd_transform.c — `softpipe transform fit` and `softpipe transform apply`: the command-line
 * face of the feature transforms in softpipe/transform.h.
 *
 * fit reads a spec and a CSV/JSONL file or a dataset folder and writes the fitted transform as
 * JSON; apply reads a fitted transform and data and writes the feature matrix as .npy (float32,
 * n_rows x n_features, NumPy's own layout) or .csv (a header of feature names, float32 values
 * printed so they read back exactly, missing as an empty field). Both report what they did, as a
 * few lines of text or, with --json, one JSON object on stdout. Outputs appear atomically: a
 * temporary file, fsync, rename. A dataset is applied in batches, so the matrix never has to fit
 * in memory; a table is in memory already and is applied whole. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

static const char HELP[] =
    "usage: softpipe transform fit SPEC DATA -o FITTED.json [--json] [--threads N]\n"
    "       softpipe transform apply FITTED.json DATA -o OUT.npy|OUT.csv [--json] [--threads N]\n"
    "\n"
    "Feature transforms, one definition for training and serving. SPEC is a JSON file listing,\n"
    "per input column, steps among fill, clip, log1p, standardize, bucketize, vocabulary and\n"
    "one_hot (see docs/transform.md). DATA is a CSV or JSONL file (.jsonl/.ndjson) or a softpipe\n"
    "dataset folder; columns are found by name.\n"
    "\n"
    "  fit     reads each column once, computes the statistics the steps need (means, standard\n"
    "          deviations, medians, quantile boundaries, vocabularies) and writes the fitted\n"
    "          transform: the spec, the statistics and the output feature names, as JSON.\n"
    "  apply   runs a fitted transform over DATA and writes the features as a float32 matrix\n"
    "          (rows x features): .npy, or .csv with the feature names as header. The same code\n"
    "          runs in `softpipe predict`, in Python (softpipe.transform) and in the server.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE   where to write (replaced if it exists)\n"
    "      --threads N     worker threads (default: all cores for large inputs)\n"
    "      --json          print the report as JSON on stdout\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 done, 1 bad data or spec, 2 usage, 3 system error\n";

typedef struct data_src {
    sp_table *table;
    sp_dataset *ds;
    uint64_t n_rows;
} data_src;

static int is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static int open_data(const char *path, data_src *d) {
    memset(d, 0, sizeof *d);
    sp_status rc;
    if (is_dir(path)) {
        rc = sp_dataset_open(path, &d->ds);
        d->n_rows = rc == SP_OK ? sp_dataset_len(d->ds) : 0;
    } else {
        rc = sp_table_read(path, &d->table);
        d->n_rows = rc == SP_OK ? sp_table_n_rows(d->table) : 0;
    }
    return rc < 0 ? cli_fail("transform", rc) : CLI_OK;
}

static void close_data(data_src *d) {
    sp_table_close(d->table);
    sp_dataset_close(d->ds);
}

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && !strcasecmp(s + n - k, suffix);
}

/* ------------------------------------------------------------------ output files */

typedef struct out_file {
    FILE *f;
    char *tmp;
    const char *path;
} out_file;

static int out_open(out_file *o, const char *path) {
    o->path = path;
    size_t n = strlen(path) + 32;
    o->tmp = malloc(n);
    if (!o->tmp) return CLI_SYSTEM;
    snprintf(o->tmp, n, "%s.tmp-%ld", path, (long)getpid());
    o->f = fopen(o->tmp, "wb");
    if (!o->f) {
        fprintf(stderr, "softpipe transform: %s: cannot create: %s\n", o->tmp, strerror(errno));
        free(o->tmp);
        o->tmp = NULL;
        return CLI_SYSTEM;
    }
    return CLI_OK;
}

static void out_abort(out_file *o) {
    if (o->f) fclose(o->f);
    if (o->tmp) unlink(o->tmp);
    free(o->tmp);
    memset(o, 0, sizeof *o);
}

/* Flushes, fsyncs and renames the temporary file into place. */
static int out_commit(out_file *o) {
    int bad = fflush(o->f) != 0 || ferror(o->f) || fsync(fileno(o->f)) != 0;
    bad |= fclose(o->f) != 0;
    o->f = NULL;
    if (bad || rename(o->tmp, o->path) != 0) {
        fprintf(stderr, "softpipe transform: %s: cannot write: %s\n", o->path, strerror(errno));
        out_abort(o);
        return CLI_SYSTEM;
    }
    free(o->tmp);
    o->tmp = NULL;
    return CLI_OK;
}

/* NumPy's .npy format 1.0: magic, version, u16 header length, a dict padded with spaces to a
 * multiple of 64 bytes and ending in '\n', then the little-endian float32 elements. */
static void write_npy_header(FILE *f, uint64_t rows, size_t cols) {
    char dict[256];
    int n = snprintf(dict, sizeof dict,
                     "{'descr': '<f4', 'fortran_order': False, 'shape': (%" PRIu64 ", %zu), }",
                     rows, cols);
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    uint16_t hlen = (uint16_t)((size_t)n + pad + 1);
    fwrite("\x93NUMPY\x01\x00", 1, 8, f);
    uint8_t le[2] = {(uint8_t)(hlen & 0xFF), (uint8_t)(hlen >> 8)};
    fwrite(le, 1, 2, f);
    fwrite(dict, 1, (size_t)n, f);
    for (size_t i = 0; i < pad; i++)
        fputc(' ', f);
    fputc('\n', f);
}

static void csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"') fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

static void write_csv_header(FILE *f, const sp_transform *tf) {
    size_t nf = sp_transform_n_features(tf);
    for (size_t j = 0; j < nf; j++) {
        if (j) fputc(',', f);
        csv_field(f, sp_transform_feature_name(tf, j));
    }
    fputc('\n', f);
}

static void write_rows(FILE *f, int csv, const float *x, uint64_t rows, size_t cols) {
    if (!csv) {
        fwrite(x, sizeof *x, rows * cols, f); /* the machines are little-endian, as '<f4' says */
        return;
    }
    for (uint64_t r = 0; r < rows; r++) {
        for (size_t j = 0; j < cols; j++) {
            float v = x[r * cols + j];
            if (j) fputc(',', f);
            if (!isnan(v)) fprintf(f, "%.9g", (double)v);
        }
        fputc('\n', f);
    }
}

/* ------------------------------------------------------------------ fit */

static void print_features_json(const sp_transform *tf) {
    printf("\"features\": [");
    for (size_t j = 0; j < sp_transform_n_features(tf); j++) {
        if (j) printf(", ");
        const char *name = sp_transform_feature_name(tf, j);
        cli_json_string(stdout, name, strlen(name));
    }
    printf("]");
}

static int do_fit(const char *spec, const char *data, const char *out, int threads, int json) {
    sp_transform *tf = NULL;
    data_src d;
    double t0 = cli_now();
    sp_status rc = sp_transform_load(spec, &tf);
    if (rc < 0) return cli_fail("transform", rc);
    int ret = open_data(data, &d);
    if (ret != CLI_OK) {
        sp_transform_free(tf);
        return ret;
    }
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.source = data;
    o.n_threads = threads;
    rc = d.ds ? sp_transform_fit_dataset(tf, d.ds, &o) : sp_transform_fit_table(tf, d.table, &o);
    if (rc == SP_OK) rc = sp_transform_save(tf, out);
    if (rc < 0) {
        ret = cli_fail("transform", rc);
        goto done;
    }
    double secs = cli_now() - t0;
    size_t nf = sp_transform_n_features(tf);
    if (json) {
        printf("{\"command\": \"fit\", \"spec\": ");
        cli_json_string(stdout, spec, strlen(spec));
        printf(", \"data\": ");
        cli_json_string(stdout, data, strlen(data));
        printf(", \"output\": ");
        cli_json_string(stdout, out, strlen(out));
        printf(", \"rows\": %" PRIu64 ", \"n_features\": %zu, ", d.n_rows, nf);
        print_features_json(tf);
        printf(", \"seconds\": %.6f}\n", secs);
    } else {
        printf("fitted %s on %" PRIu64 " rows of %s in %.3f s\n", spec, d.n_rows, data, secs);
        printf("%zu input columns -> %zu features:", sp_transform_n_inputs(tf), nf);
        for (size_t j = 0; j < nf && j < 12; j++)
            printf(" %s", sp_transform_feature_name(tf, j));
        printf(nf > 12 ? " ...\n" : "\n");
        printf("wrote %s\n", out);
    }
done:
    close_data(&d);
    sp_transform_free(tf);
    return ret;
}

/* ------------------------------------------------------------------ apply */

static int do_apply(const char *fitted, const char *data, const char *out, int threads, int json) {
    int csv = ends_with(out, ".csv");
    if (!csv && !ends_with(out, ".npy"))
        return cli_usage_error("transform", "apply writes .npy or .csv, not '%s'", out);
    sp_transform *tf = NULL;
    double t0 = cli_now();
    sp_status rc = sp_transform_load(fitted, &tf);
    if (rc < 0) return cli_fail("transform", rc);
    if (!sp_transform_fitted(tf)) {
        fprintf(stderr,
                "softpipe transform: %s is a spec, not a fitted transform; run 'softpipe "
                "transform fit %s DATA -o FITTED.json' first\n",
                fitted, fitted);
        sp_transform_free(tf);
        return CLI_USAGE;
    }
    data_src d;
    int ret = open_data(data, &d);
    if (ret != CLI_OK) {
        sp_transform_free(tf);
        return ret;
    }
    size_t nf = sp_transform_n_features(tf);
    uint64_t batch = d.ds ? 65536 : d.n_rows;
    float *x = malloc((batch ? batch : 1) * (nf ? nf : 1) * sizeof *x);
    out_file o = {0};
    if (!x) {
        fprintf(stderr, "softpipe transform: out of memory for %" PRIu64 " x %zu features\n", batch,
                nf);
        ret = CLI_SYSTEM;
        goto done;
    }
    if ((ret = out_open(&o, out)) != CLI_OK) goto done;
    if (csv)
        write_csv_header(o.f, tf);
    else
        write_npy_header(o.f, d.n_rows, nf);
    sp_transform_opts opts;
    sp_transform_opts_init(&opts);
    opts.source = data;
    opts.n_threads = threads;
    for (uint64_t first = 0; first < d.n_rows;) {
        uint64_t n = d.n_rows - first < batch ? d.n_rows - first : batch;
        rc = d.ds ? sp_transform_apply_dataset(tf, d.ds, first, n, &opts, x, n * nf)
                  : sp_transform_apply_table(tf, d.table, &opts, x, n * nf);
        if (rc < 0) {
            out_abort(&o);
            ret = cli_fail("transform", rc);
            goto done;
        }
        write_rows(o.f, csv, x, n, nf);
        first += n;
    }
    if ((ret = out_commit(&o)) != CLI_OK) goto done;
    double secs = cli_now() - t0;
    if (json) {
        printf("{\"command\": \"apply\", \"transform\": ");
        cli_json_string(stdout, fitted, strlen(fitted));
        printf(", \"data\": ");
        cli_json_string(stdout, data, strlen(data));
        printf(", \"output\": ");
        cli_json_string(stdout, out, strlen(out));
        printf(", \"format\": \"%s\", \"rows\": %" PRIu64 ", \"n_features\": %zu, ",
               csv ? "csv" : "npy", d.n_rows, nf);
        print_features_json(tf);
        printf(", \"seconds\": %.6f}\n", secs);
    } else {
        printf("applied %s to %" PRIu64 " rows of %s in %.3f s\n", fitted, d.n_rows, data, secs);
        printf("wrote %s: %" PRIu64 " x %zu float32\n", out, d.n_rows, nf);
    }
done:
    out_abort(&o);
    free(x);
    close_data(&d);
    sp_transform_free(tf);
    return ret;
}

int cmd_transform(int argc, char **argv) {
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'},
                                             {"threads", required_argument, 0, 't'},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *out = NULL;
    int threads = 0, json = 0, c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 't':
            if (cli_parse_int(optarg, &threads) != 0)
                return cli_usage_error("transform", "--threads: '%s' is not a count", optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        default:
            return cli_usage_error("transform", "unknown option");
        }
    }
    int rest = argc - optind;
    if (rest < 1) return cli_usage_error("transform", "expected 'fit' or 'apply'");
    const char *verb = argv[optind];
    int is_fit = !strcmp(verb, "fit"), is_apply = !strcmp(verb, "apply");
    if (!is_fit && !is_apply)
        return cli_usage_error("transform", "unknown subcommand '%s' (expected fit or apply)",
                               verb);
    if (rest != 3)
        return cli_usage_error("transform", "%s takes two arguments: %s and DATA", verb,
                               is_fit ? "SPEC" : "FITTED.json");
    if (!out) return cli_usage_error("transform", "missing -o FILE");
    const char *a = argv[optind + 1], *data = argv[optind + 2];
    return is_fit ? do_fit(a, data, out, threads, json) : do_apply(a, data, out, threads, json);
}
