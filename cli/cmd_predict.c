/* cmd_predict.c — `softpipe predict MODEL INPUT -o OUTPUT`: offline batch inference with a
 * tree-ensemble model (XGBoost JSON) over a .npy matrix, a CSV/JSONL table or a softpipe dataset
 * of tabular rows, writing .npy or CSV atomically.
 *
 * Rows are predicted in chunks of 64k on all cores (sp_tree_predict), with a progress bar on a
 * terminal. Features are the input's numeric columns in order (or those named by --columns), or
 * with --transform what a fitted transform makes of the input (the same C code as
 * softpipe.Transform and, later, the server: one definition for training and serving); a count
 * that differs from the model's is an error that says both. */
#include "cli.h"

#include <getopt.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static const char HELP[] =
    "usage: softpipe predict MODEL INPUT -o OUTPUT [options]\n"
    "\n"
    "Batch inference with a tree-ensemble model. MODEL is an XGBoost JSON model\n"
    "(Booster.save_model('model.json')). INPUT is a .npy matrix (rows x features, float32 or\n"
    "any numeric dtype), a CSV/JSONL file with a header, or a softpipe dataset folder; from a "
    "table\n"
    "the features are its numeric columns in order, or those given by --columns. Missing values\n"
    "(NaN, empty CSV cells) follow each split's default direction, as in XGBoost. OUTPUT is .npy\n"
    "(float32: n, or n x classes) or .csv, written atomically.\n"
    "\n"
    "options:\n"
    "  -o, --output FILE     where to write the predictions (.npy or .csv)\n"
    "      --columns LIST    comma-separated feature columns of a CSV/JSONL/dataset input\n"
    "      --transform FILE  a fitted feature transform (softpipe transform fit): the features "
    "are\n"
    "                        what it makes of the CSV/JSONL/dataset input's columns\n"
    "      --margin          raw margins instead of the objective's output\n"
    "      --threads N       worker threads (default: all cores)\n"
    "      --json            print a JSON summary on stdout\n"
    "  -h, --help            this help\n"
    "\n"
    "exit status: 0 done, 1 bad input or model, 2 usage, 3 system error\n";

/* The feature matrix: n rows x k float32 columns, row-major (owned). */
typedef struct matrix {
    float *x;
    uint64_t n;
    uint64_t k;
} matrix;

static int read_npy(const char *path, matrix *m) {
    sp_npy *npy;
    sp_status rc = sp_npy_open(path, &npy);
    if (rc < 0) return cli_fail("predict", rc);
    const sp_array *a = sp_npy_array(npy);
    if (a->ndim != 2) {
        fprintf(stderr,
                "softpipe predict: %s: expected a 2-D matrix (rows x features), got %d "
                "dimensions\n",
                path, a->ndim);
        sp_npy_close(npy);
        return CLI_BAD_DATA;
    }
    m->n = a->shape[0];
    m->k = a->shape[1];
    m->x = malloc((m->n * m->k + 1) * sizeof(float));
    if (!m->x) {
        sp_npy_close(npy);
        return CLI_SYSTEM;
    }
    for (uint64_t i = 0; i < m->n; i++)
        for (uint64_t j = 0; j < m->k; j++)
            m->x[i * m->k + j] = (float)sp_array_get_f64(a, i, j);
    sp_npy_close(npy);
    return CLI_OK;
}

static size_t split(char *s, char **out, size_t cap) {
    size_t n = 0;
    for (char *t = strtok(s, ","); t && n < cap; t = strtok(NULL, ","))
        out[n++] = t;
    return n;
}

#define SP_TRY_CLI(expr)                                                                           \
    do {                                                                                           \
        sp_status rc_ = (expr);                                                                    \
        if (rc_ < 0) return rc_;                                                                   \
    } while (0)

/* A table or a dataset seen as numeric columns, so one routine picks and reads features. */
typedef struct source {
    const char *path;
    sp_table *t;
    sp_dataset *ds;
} source;

static uint64_t src_rows(const source *s) {
    return s->t ? sp_table_n_rows(s->t) : sp_dataset_len(s->ds);
}

static size_t src_cols(const source *s) {
    return s->t ? sp_table_n_columns(s->t) : sp_dataset_n_columns(s->ds);
}

/* Column c holds numbers (and, by default, is a feature: a dataset's label column is not). */
static int src_numeric(const source *s, size_t c, int by_default) {
    if (s->t) return sp_table_column_type(s->t, c) != SP_TYPE_STRING;
    const sp_column *col = sp_dataset_column(s->ds, c);
    return col->type != SP_TYPE_STRING && !(by_default && strcmp(col->name, "label") == 0);
}

static int src_index(const source *s, const char *name) {
    return s->t ? sp_table_column_index(s->t, name) : sp_dataset_column_index(s->ds, name);
}

/* Column c into feature j of the row-major matrix, through buf (n 8-byte values). */
static sp_status src_read(const source *s, size_t c, void *buf, matrix *m, size_t j) {
    const uint64_t n = m->n;
    if (s->t) {
        SP_TRY_CLI(sp_table_column_f64(s->t, c, buf, n));
        for (uint64_t i = 0; i < n; i++)
            m->x[i * m->k + j] = (float)((const double *)buf)[i];
        return SP_OK;
    }
    const sp_type type = sp_dataset_column(s->ds, c)->type;
    SP_TRY_CLI(sp_dataset_read_column(s->ds, c, buf, n, NULL)); /* int32 columns as int32 */
    for (uint64_t i = 0; i < n; i++)
        m->x[i * m->k + j] = type == SP_TYPE_INT32   ? (float)((const int32_t *)buf)[i]
                             : type == SP_TYPE_INT64 ? (float)((const int64_t *)buf)[i]
                                                     : (float)((const double *)buf)[i];
    return SP_OK;
}

/* The feature matrix: the columns named in `columns`, or every numeric column in order. */
static int read_columns(const source *s, const char *columns, matrix *m) {
    const uint64_t n = src_rows(s);
    const size_t nc = src_cols(s);
    size_t *cols = malloc((nc ? nc : 1) * sizeof *cols), k = 0;
    void *buf = malloc((n ? n : 1) * sizeof(double));
    int ret = CLI_OK;
    if (!cols || !buf) {
        ret = CLI_SYSTEM;
        goto out;
    }
    if (columns) {
        char *copy = strdup(columns), *names[4096];
        size_t nn = copy ? split(copy, names, 4096) : 0;
        for (size_t q = 0; q < nn && ret == CLI_OK && k < nc; q++) {
            int ci = src_index(s, names[q]);
            if (ci < 0 || !src_numeric(s, (size_t)ci, 0)) {
                fprintf(stderr, "softpipe predict: %s: no numeric column '%s'\n", s->path,
                        names[q]);
                ret = CLI_USAGE;
            } else {
                cols[k++] = (size_t)ci;
            }
        }
        free(copy);
        if (ret != CLI_OK) goto out;
    } else {
        for (size_t c = 0; c < nc; c++)
            if (src_numeric(s, c, 1)) cols[k++] = c;
    }
    m->n = n;
    m->k = k;
    m->x = malloc((n * k + 1) * sizeof(float));
    if (!m->x) {
        ret = CLI_SYSTEM;
        goto out;
    }
    for (size_t j = 0; j < k && ret == CLI_OK; j++) {
        sp_status rc = src_read(s, cols[j], buf, m, j);
        if (rc < 0) ret = cli_fail("predict", rc);
    }
out:
    free(cols);
    free(buf);
    return ret;
}

static int read_table(const char *path, const char *columns, matrix *m) {
    source s = {path, NULL, NULL};
    sp_status rc = sp_table_read(path, &s.t);
    if (rc < 0) return cli_fail("predict", rc);
    int ret = read_columns(&s, columns, m);
    sp_table_close(s.t);
    return ret;
}

static int read_dataset(const char *path, const char *columns, matrix *m) {
    source s = {path, NULL, NULL};
    sp_status rc = sp_dataset_open(path, &s.ds);
    if (rc < 0) return cli_fail("predict", rc);
    int ret = read_columns(&s, columns, m);
    sp_dataset_close(s.ds);
    return ret;
}

/* The features a fitted transform makes of a table or dataset. */
static int read_transformed(const char *path, int is_dir, const char *tf_path, int threads,
                            matrix *m) {
    sp_transform *tf;
    sp_status rc = sp_transform_load(tf_path, &tf);
    if (rc < 0) return cli_fail("predict", rc);
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.source = path;
    o.n_threads = threads;
    size_t nf = sp_transform_n_features(tf);
    int ret = CLI_OK;
    if (is_dir) {
        sp_dataset *ds;
        rc = sp_dataset_open(path, &ds);
        if (rc < 0) {
            sp_transform_free(tf);
            return cli_fail("predict", rc);
        }
        m->n = sp_dataset_len(ds);
        m->k = nf;
        m->x = malloc((m->n * nf + 1) * sizeof(float));
        if (!m->x)
            ret = CLI_SYSTEM;
        else if ((rc = sp_transform_apply_dataset(tf, ds, 0, m->n, &o, m->x, m->n * nf)) < 0)
            ret = cli_fail("predict", rc);
        sp_dataset_close(ds);
    } else {
        sp_table *t;
        rc = sp_table_read(path, &t);
        if (rc < 0) {
            sp_transform_free(tf);
            return cli_fail("predict", rc);
        }
        m->n = sp_table_n_rows(t);
        m->k = nf;
        m->x = malloc((m->n * nf + 1) * sizeof(float));
        if (!m->x)
            ret = CLI_SYSTEM;
        else if ((rc = sp_transform_apply_table(tf, t, &o, m->x, m->n * nf)) < 0)
            ret = cli_fail("predict", rc);
        sp_table_close(t);
    }
    sp_transform_free(tf);
    return ret;
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && strcasecmp(s + a - b, suffix) == 0;
}

static int write_output(const char *path, const float *p, uint64_t n, uint32_t k) {
    if (ends_with(path, ".npy")) {
        char header[128];
        int hl = k > 1 ? snprintf(header, sizeof header,
                                  "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu, %u), }",
                                  (unsigned long long)n, k)
                       : snprintf(header, sizeof header,
                                  "{'descr': '<f4', 'fortran_order': False, 'shape': (%llu,), }",
                                  (unsigned long long)n);
        size_t total_header = 10 + (size_t)hl + 1;
        size_t pad = (64 - total_header % 64) % 64;
        size_t hlen = (size_t)hl + pad + 1, bytes = n * k * sizeof(float);
        char *buf = malloc(10 + hlen + bytes);
        if (!buf) return CLI_SYSTEM;
        memcpy(buf, "\x93NUMPY\x01\x00", 8);
        buf[8] = (char)(hlen & 0xff);
        buf[9] = (char)(hlen >> 8);
        memcpy(buf + 10, header, (size_t)hl);
        memset(buf + 10 + hl, ' ', pad);
        buf[10 + hlen - 1] = '\n';
        memcpy(buf + 10 + hlen, p, bytes);
        int r = cli_write_atomic(path, buf, 10 + hlen + bytes);
        free(buf);
        return r < 0 ? CLI_SYSTEM : CLI_OK;
    }
    /* CSV: a header row, then one row per input row */
    size_t cap = 64 + n * k * 18 + k * 16;
    char *buf = malloc(cap), *w = buf;
    if (!buf) return CLI_SYSTEM;
    if (k == 1) {
        w += sprintf(w, "prediction\n");
    } else {
        for (uint32_t j = 0; j < k; j++)
            w += sprintf(w, j ? ",p%u" : "p%u", j);
        *w++ = '\n';
    }
    for (uint64_t i = 0; i < n; i++) {
        for (uint32_t j = 0; j < k; j++)
            w += sprintf(w, j ? ",%.9g" : "%.9g", (double)p[i * k + j]);
        *w++ = '\n';
    }
    int r = cli_write_atomic(path, buf, (size_t)(w - buf));
    free(buf);
    return r < 0 ? CLI_SYSTEM : CLI_OK;
}

int cmd_predict(int argc, char **argv) {
    enum { O_COLUMNS = 1000, O_MARGIN, O_THREADS, O_JSON, O_TRANSFORM };
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'},
                                             {"columns", required_argument, 0, O_COLUMNS},
                                             {"transform", required_argument, 0, O_TRANSFORM},
                                             {"margin", no_argument, 0, O_MARGIN},
                                             {"threads", required_argument, 0, O_THREADS},
                                             {"json", no_argument, 0, O_JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *output = NULL, *columns = NULL, *transform = NULL;
    int margin = 0, threads = 0, json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":ho:", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            output = optarg;
            break;
        case O_COLUMNS:
            columns = optarg;
            break;
        case O_TRANSFORM:
            transform = optarg;
            break;
        case O_MARGIN:
            margin = 1;
            break;
        case O_THREADS:
            if (cli_parse_int(optarg, &threads) < 0)
                return cli_usage_error("predict", "--threads: '%s' is not a number", optarg);
            break;
        case O_JSON:
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("predict", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("predict", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (argc - optind != 2) return cli_usage_error("predict", "expected MODEL and INPUT");
    if (!output) return cli_usage_error("predict", "-o OUTPUT is required (.npy or .csv)");
    if (!ends_with(output, ".npy") && !ends_with(output, ".csv"))
        return cli_usage_error("predict", "OUTPUT must end in .npy or .csv: '%s'", output);
    const char *model_path = argv[optind], *input = argv[optind + 1];
    double t0 = cli_now();
    sp_tree_model *model;
    sp_status rc = sp_tree_model_load(model_path, &model);
    if (rc < 0) return cli_fail("predict", rc);
    double t_load = cli_now() - t0;

    matrix m = {0};
    struct stat st;
    int ret;
    int is_dir = stat(input, &st) == 0 && S_ISDIR(st.st_mode);
    if (transform && columns)
        ret = cli_usage_error("predict", "--transform and --columns exclude each other");
    else if (transform && ends_with(input, ".npy"))
        ret = cli_usage_error("predict", "--transform reads named columns: give a CSV/JSONL file "
                                         "or a dataset, not .npy");
    else if (transform)
        ret = read_transformed(input, is_dir, transform, threads, &m);
    else if (is_dir)
        ret = read_dataset(input, columns, &m);
    else if (ends_with(input, ".npy"))
        ret = read_npy(input, &m);
    else
        ret = read_table(input, columns, &m);
    uint32_t nf = sp_tree_model_num_features(model);
    if (ret == CLI_OK && m.k != nf) {
        fprintf(stderr, "softpipe predict: %s: %llu feature columns, the model expects %u%s\n",
                input, (unsigned long long)m.k, nf,
                columns || transform ? "" : " (choose them with --columns a,b,c)");
        ret = CLI_BAD_DATA;
    }
    uint32_t k = sp_tree_model_num_outputs(model, margin);
    float *out = NULL;
    double t_pred = 0;
    if (ret == CLI_OK) {
        out = malloc((m.n * k + 1) * sizeof(float));
        if (!out) ret = CLI_SYSTEM;
    }
    if (ret == CLI_OK) {
        cli_progress pr;
        cli_progress_init(&pr, "predicting", "rows");
        double t1 = cli_now();
        const uint64_t chunk = 65536;
        for (uint64_t r = 0; r < m.n && ret == CLI_OK; r += chunk) {
            uint64_t nr = m.n - r < chunk ? m.n - r : chunk;
            rc = sp_tree_predict(model, m.x + r * m.k, nr, m.k, margin, threads, out + r * k);
            if (rc < 0) ret = cli_fail("predict", rc);
            cli_progress_update(&pr, r + nr, m.n, 0);
        }
        cli_progress_end(&pr);
        t_pred = cli_now() - t1;
    }
    if (ret == CLI_OK) ret = write_output(output, out, m.n, k);
    if (ret == CLI_OK) {
        if (json) {
            printf("{\"model\": ");
            cli_json_string(stdout, model_path, strlen(model_path));
            printf(", \"objective\": \"%s\", \"trees\": %u, \"layout\": \"%s\", \"rows\": %llu, "
                   "\"features\": %u, \"outputs\": %u, \"margin\": %s, \"output\": ",
                   sp_tree_model_objective(model), sp_tree_model_num_trees(model),
                   sp_tree_model_layout(model), (unsigned long long)m.n, nf, k,
                   margin ? "true" : "false");
            cli_json_string(stdout, output, strlen(output));
            printf(", \"load_seconds\": %.6f, \"predict_seconds\": %.6f, \"rows_per_second\": "
                   "%.1f}\n",
                   t_load, t_pred, t_pred > 0 ? (double)m.n / t_pred : 0.0);
        } else {
            printf("predicted %llu rows with %s (%u trees, %s) in %.3f s (%.0f rows/s); wrote %s\n",
                   (unsigned long long)m.n, sp_tree_model_objective(model),
                   sp_tree_model_num_trees(model), sp_tree_model_layout(model), t_pred,
                   t_pred > 0 ? (double)m.n / t_pred : 0.0, output);
        }
    }
    free(out);
    free(m.x);
    sp_tree_model_free(model);
    return ret;
}
