/* cmd_eval.c — `softpipe eval`: metrics and confidence intervals for stored predictions.
 *
 * Predictions come from .npy files (mapped, not copied), from named columns of a CSV/JSONL file,
 * or from columns of a softpipe dataset. Several score columns make an n x k matrix
 * (multiclass). The evaluation itself is sp_eval_run; this file only reads inputs, maps
 * options and prints the result as a table or JSON. */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe eval --y-true FILE.npy --y-score FILE.npy [--weights FILE.npy] [options]\n"
    "       softpipe eval --csv FILE --y-true COL --y-score COL[,COL...] [--weights COL] ...\n"
    "       softpipe eval --dataset DIR --y-true COL --y-score COL[,COL...] [--weights COL] ...\n"
    "\n"
    "Evaluates predictions: every metric from one sort of the scores, with confidence intervals.\n"
    "Binary tasks (0/1 labels, one score per row): roc_auc, average_precision, log_loss, brier,\n"
    "accuracy, precision, recall, f1 (at each --threshold; a score >= t is positive), ece,\n"
    "confusion_matrix; curves on request: roc_curve, pr_curve, reliability. Multiclass (an n x k\n"
    "score matrix, labels 0..k-1): accuracy, top_k_accuracy, log_loss, precision/recall/f1 with\n"
    "_macro/_micro/_weighted, roc_auc_ovr, roc_auc_ovr_weighted, ece. Regression: mae, mse, rmse,\n"
    "r2, mape. Definitions match scikit-learn 1.2 (see include/softpipe/eval.h).\n"
    "\n"
    "inputs:\n"
    "      --y-true X         labels: a .npy file, or a column name with --csv/--dataset\n"
    "      --y-score X        scores: a .npy file (1-D, or 2-D n x k), or column name(s)\n"
    "      --weights X        sample weights (.npy or column)\n"
    "      --csv FILE         read columns from a CSV (or .jsonl) file with a header row\n"
    "      --dataset DIR      read columns from a softpipe dataset\n"
    "options:\n"
    "      --task T           auto (default), binary, multiclass or regression\n"
    "      --metrics LIST     comma-separated metric names (default: the task's standard set)\n"
    "      --threshold T,...  decision thresholds for binary metrics (default 0.5)\n"
    "      --ci METHOD        bootstrap, delong (roc_auc) or none (the default, except with\n"
    "                         --quick, which bootstraps)\n"
    "      --replicates N     bootstrap replicates (default 1000)\n"
    "      --level L          interval level (default 0.95)\n"
    "      --seed S           bootstrap and sampling seed (default 0)\n"
    "      --quick Q          evaluate a stratified sample: a fraction in (0,1) or a row count;\n"
    "                         intervals default to bootstrap\n"
    "      --nan POLICY       error (default: NaN/inf is an error naming the row) or drop\n"
    "      --ece-bins N       calibration bins (default 15); --ece-equal-mass for equal counts\n"
    "      --top-k K          multiclass top-k accuracy (default 5)\n"
    "      --threads N        worker threads (default: all cores)\n"
    "      --plot FILE.png    draw the ROC, precision-recall and reliability curves (binary)\n"
    "      --json             print the result as JSON on stdout\n"
    "  -h, --help             this help\n"
    "\n"
    "exit status: 0 done, 1 bad input data, 2 usage, 3 system error\n";

typedef struct inputs {
    /* owned buffers and handles */
    sp_npy *npy[3];
    sp_table *table;
    sp_dataset *ds;
    void *buf[3];
    sp_array y, s, w;
    int have_w;
} inputs;

static void inputs_free(inputs *in) {
    for (int i = 0; i < 3; i++) {
        sp_npy_close(in->npy[i]);
        free(in->buf[i]);
    }
    sp_table_close(in->table);
    sp_dataset_close(in->ds);
}

/* Splits "a,b,c" into at most `cap` names (pointers into a copy the caller frees). */
static size_t split_names(char *s, char **out, size_t cap) {
    size_t n = 0;
    for (char *tok = strtok(s, ","); tok && n < cap; tok = strtok(NULL, ","))
        out[n++] = tok;
    return n;
}

static int read_npy(inputs *in, int slot, const char *path, sp_array *out) {
    sp_status rc = sp_npy_open(path, &in->npy[slot]);
    if (rc < 0) return cli_fail("eval", rc);
    *out = *sp_npy_array(in->npy[slot]);
    return CLI_OK;
}

/* Column(s) of the CSV table as float64: one column -> 1-D, several -> n x k row-major. */
static int read_table_cols(inputs *in, int slot, const char *names, sp_array *out) {
    char *copy = strdup(names), *cols[4096];
    if (!copy) return CLI_SYSTEM;
    size_t k = split_names(copy, cols, 4096);
    uint64_t n = sp_table_n_rows(in->table);
    double *m = malloc((n ? n : 1) * (k ? k : 1) * sizeof(double));
    double *col = malloc((n ? n : 1) * sizeof(double));
    int ret = CLI_OK;
    if (!m || !col || k == 0) {
        ret = k == 0 ? cli_usage_error("eval", "no column name given") : CLI_SYSTEM;
        goto out;
    }
    for (size_t j = 0; j < k; j++) {
        int ci = sp_table_column_index(in->table, cols[j]);
        if (ci < 0) {
            fprintf(stderr, "softpipe eval: column '%s' not found (columns:", cols[j]);
            for (size_t q = 0; q < sp_table_n_columns(in->table); q++)
                fprintf(stderr, " %s", sp_table_column_name(in->table, q));
            fprintf(stderr, ")\n");
            ret = CLI_USAGE;
            goto out;
        }
        sp_status rc = sp_table_column_f64(in->table, (size_t)ci, col, n);
        if (rc < 0) {
            ret = cli_fail("eval", rc);
            goto out;
        }
        for (uint64_t i = 0; i < n; i++)
            m[i * k + j] = col[i];
    }
    in->buf[slot] = m;
    m = NULL;
    *out = k == 1 ? sp_array_1d(in->buf[slot], SP_DTYPE_FLOAT64, n)
                  : sp_array_2d(in->buf[slot], SP_DTYPE_FLOAT64, n, k);
out:
    free(m);
    free(col);
    free(copy);
    return ret;
}

/* Column(s) of a dataset: one column is read in its own type, several into float64 n x k. */
static int read_dataset_cols(inputs *in, int slot, const char *names, sp_array *out) {
    char *copy = strdup(names), *cols[4096];
    if (!copy) return CLI_SYSTEM;
    size_t k = split_names(copy, cols, 4096);
    uint64_t n = sp_dataset_len(in->ds);
    int ret = CLI_OK;
    double *m = NULL;
    if (k == 0) {
        free(copy);
        return cli_usage_error("eval", "no column name given");
    }
    for (size_t j = 0; j < k && ret == CLI_OK; j++) {
        int ci = sp_dataset_column_index(in->ds, cols[j]);
        if (ci < 0) {
            fprintf(stderr,
                    "softpipe eval: column '%s' not found in the dataset (columns:", cols[j]);
            for (size_t q = 0; q < sp_dataset_n_columns(in->ds); q++)
                fprintf(stderr, " %s", sp_dataset_column(in->ds, q)->name);
            fprintf(stderr, ")\n");
            ret = CLI_USAGE;
            break;
        }
        const sp_column *col = sp_dataset_column(in->ds, (size_t)ci);
        sp_dtype dt = col->type == SP_TYPE_INT32   ? SP_DTYPE_INT32
                      : col->type == SP_TYPE_INT64 ? SP_DTYPE_INT64
                                                   : SP_DTYPE_FLOAT64;
        if (col->type == SP_TYPE_STRING) {
            fprintf(stderr, "softpipe eval: column '%s' holds strings, not numbers\n", cols[j]);
            ret = CLI_BAD_DATA;
            break;
        }
        size_t es = dt == SP_DTYPE_INT32 ? 4 : 8;
        void *v = malloc((n ? n : 1) * es);
        if (!v) {
            ret = CLI_SYSTEM;
            break;
        }
        sp_status rc = sp_dataset_read_column(in->ds, (size_t)ci, v, n, NULL);
        if (rc < 0) {
            free(v);
            ret = cli_fail("eval", rc);
            break;
        }
        if (k == 1) {
            in->buf[slot] = v;
            *out = sp_array_1d(v, dt, n);
            break;
        }
        if (!m && !(m = malloc((n ? n : 1) * k * sizeof(double)))) {
            free(v);
            ret = CLI_SYSTEM;
            break;
        }
        for (uint64_t i = 0; i < n; i++)
            m[i * k + j] = dt == SP_DTYPE_INT32   ? ((int32_t *)v)[i]
                           : dt == SP_DTYPE_INT64 ? (double)((int64_t *)v)[i]
                                                  : ((double *)v)[i];
        free(v);
    }
    if (ret == CLI_OK && k > 1) {
        in->buf[slot] = m;
        m = NULL;
        *out = sp_array_2d(in->buf[slot], SP_DTYPE_FLOAT64, n, k);
    }
    free(m);
    free(copy);
    return ret;
}

static json_t *num(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

static json_t *array_json(const double *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, num(v[i]));
    return a;
}

static const char *task_name(sp_eval_task t) {
    return t == SP_EVAL_BINARY ? "binary" : t == SP_EVAL_MULTICLASS ? "multiclass" : "regression";
}

static const char *ci_name(sp_eval_ci c) {
    return c == SP_EVAL_CI_BOOTSTRAP ? "bootstrap" : c == SP_EVAL_CI_DELONG ? "delong" : "none";
}

static void print_json(const sp_eval_result *r, const sp_eval_opts *o) {
    sp_eval_info info;
    sp_eval_result_info(r, &info);
    json_t *root = json_object(), *metrics = json_object();
    json_object_set_new(root, "task", json_string(task_name(info.task)));
    json_object_set_new(root, "n_rows", json_integer((json_int_t)info.n_rows));
    json_object_set_new(root, "n_used", json_integer((json_int_t)info.n_used));
    json_object_set_new(root, "n_dropped", json_integer((json_int_t)info.n_dropped));
    json_object_set_new(root, "n_clipped", json_integer((json_int_t)info.n_clipped));
    json_object_set_new(root, "n_classes", json_integer(info.n_classes));
    json_object_set_new(root, "quick", json_boolean(info.quick));
    json_object_set_new(root, "ci", json_string(ci_name(info.ci)));
    json_object_set_new(root, "replicates", json_integer(info.replicates));
    json_object_set_new(root, "level", json_real(info.level));
    json_object_set_new(root, "weight_total", num(info.weight_total));
    if (info.task == SP_EVAL_BINARY)
        json_object_set_new(root, "weight_positive", num(info.weight_positive));
    json_object_set_new(root, "seconds", json_real(info.seconds));
    for (size_t i = 0; i < sp_eval_result_n_metrics(r); i++) {
        const sp_eval_metric *m = sp_eval_result_metric(r, i);
        json_t *e = json_object();
        json_object_set_new(e, "value", num(m->value));
        if (!isnan(m->lo) || !isnan(m->hi)) {
            json_object_set_new(e, "lo", num(m->lo));
            json_object_set_new(e, "hi", num(m->hi));
            json_object_set_new(e, "width", num(m->hi - m->lo));
        }
        json_object_set_new(metrics, m->name, e);
    }
    json_object_set_new(root, "metrics", metrics);
    json_t *conf = json_array();
    for (size_t t = 0; t < SP_EVAL_MAX_THRESHOLDS; t++) {
        size_t k;
        const double *m = sp_eval_result_confusion(r, t, &k);
        if (!m) break;
        json_t *e = json_object(), *rows = json_array();
        if (info.task == SP_EVAL_BINARY)
            json_object_set_new(e, "threshold", json_real(o->thresholds[t]));
        for (size_t i = 0; i < k; i++)
            json_array_append_new(rows, array_json(m + i * k, k));
        json_object_set_new(e, "matrix", rows);
        json_array_append_new(conf, e);
    }
    if (json_array_size(conf))
        json_object_set_new(root, "confusion_matrix", conf);
    else
        json_decref(conf);
    static const char *const curves[3][4] = {{"roc", "fpr", "tpr", "thresholds"},
                                             {"pr", "recall", "precision", "thresholds"},
                                             {"reliability", "confidence", "accuracy", "weight"}};
    for (int c = 0; c < 3; c++) {
        sp_eval_curve cv;
        if (sp_eval_result_curve(r, curves[c][0], &cv) != SP_OK) continue;
        json_t *e = json_object();
        json_object_set_new(e, curves[c][1], array_json(cv.x, cv.n));
        json_object_set_new(e, curves[c][2], array_json(cv.y, cv.n));
        json_object_set_new(e, curves[c][3], array_json(cv.threshold, c == 1 ? cv.n - 1 : cv.n));
        char key[32];
        snprintf(key, sizeof key, "%s_curve", curves[c][0]);
        json_object_set_new(root, c == 2 ? "reliability" : key, e);
    }
    json_t *warns = json_array();
    for (size_t i = 0; i < sp_eval_result_n_warnings(r); i++)
        json_array_append_new(warns, json_string(sp_eval_result_warning(r, i)));
    json_object_set_new(root, "warnings", warns);
    json_dumpf(root, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(17));
    fputc('\n', stdout);
    json_decref(root);
}

static void print_text(const sp_eval_result *r, const sp_eval_opts *o) {
    sp_eval_info info;
    sp_eval_result_info(r, &info);
    printf("%s, %llu rows", task_name(info.task), (unsigned long long)info.n_rows);
    if (info.task == SP_EVAL_BINARY)
        printf(" (positive weight %.6g of %.6g)", info.weight_positive, info.weight_total);
    if (info.task == SP_EVAL_MULTICLASS) printf(", %u classes", info.n_classes);
    if (info.n_dropped) printf(", %llu dropped (NaN/inf)", (unsigned long long)info.n_dropped);
    if (info.quick) printf(", quick sample of %llu rows", (unsigned long long)info.n_used);
    printf(", %.3f s\n", info.seconds);
    int ci = info.ci == SP_EVAL_CI_BOOTSTRAP || info.ci == SP_EVAL_CI_DELONG;
    if (ci) {
        char head[64];
        snprintf(head, sizeof head, "%g%% interval", 100 * info.level);
        printf("%-24s %12s   %-28s %10s\n", "metric", "value", head, "width");
    } else {
        printf("%-24s %12s\n", "metric", "value");
    }
    for (size_t i = 0; i < sp_eval_result_n_metrics(r); i++) {
        const sp_eval_metric *m = sp_eval_result_metric(r, i);
        printf("%-24s %12.6f", m->name, m->value);
        if (ci && !(isnan(m->lo) && isnan(m->hi)))
            printf("   [%10.6f, %10.6f]       %10.6f", m->lo, m->hi, m->hi - m->lo);
        printf("\n");
    }
    if (ci)
        printf("(intervals: %s%s)\n", ci_name(info.ci),
               info.ci == SP_EVAL_CI_BOOTSTRAP ? ", percentile" : ", roc_auc only");
    if (info.ci == SP_EVAL_CI_BOOTSTRAP)
        printf("(%u replicates, seed %llu)\n", info.replicates, (unsigned long long)o->seed);
    if (info.n_clipped)
        printf("log_loss clipped %llu probabilities to [eps, 1 - eps]\n",
               (unsigned long long)info.n_clipped);
    for (size_t t = 0; t < SP_EVAL_MAX_THRESHOLDS; t++) {
        size_t k;
        const double *m = sp_eval_result_confusion(r, t, &k);
        if (!m) break;
        if (k > 20) {
            printf("confusion matrix: %zu x %zu (use --json to see it)\n", k, k);
            break;
        }
        if (info.task == SP_EVAL_BINARY)
            printf("confusion matrix at threshold %g (rows: true class, columns: predicted)\n",
                   o->thresholds[t]);
        else
            printf("confusion matrix (rows: true class, columns: predicted)\n");
        printf("%8s", "");
        for (size_t j = 0; j < k; j++)
            printf(" %12zu", j);
        printf("\n");
        for (size_t i = 0; i < k; i++) {
            printf("%8zu", i);
            for (size_t j = 0; j < k; j++)
                printf(" %12.10g", m[i * k + j]);
            printf("\n");
        }
    }
    for (size_t i = 0; i < sp_eval_result_n_warnings(r); i++)
        printf("warning: %s\n", sp_eval_result_warning(r, i));
}

static int parse_double(const char *s, double *out) {
    char *end;
    *out = strtod(s, &end);
    return end == s || *end || !isfinite(*out) ? -1 : 0;
}

int cmd_eval(int argc, char **argv) {
    enum {
        O_YTRUE = 1000,
        O_YSCORE,
        O_WEIGHTS,
        O_CSV,
        O_DATASET,
        O_TASK,
        O_METRICS,
        O_THRESHOLD,
        O_CI,
        O_REPLICATES,
        O_LEVEL,
        O_SEED,
        O_QUICK,
        O_NAN,
        O_ECE_BINS,
        O_ECE_MASS,
        O_TOPK,
        O_THREADS,
        O_PLOT,
        O_JSON
    };
    static const struct option longopts[] = {{"y-true", required_argument, 0, O_YTRUE},
                                             {"y-score", required_argument, 0, O_YSCORE},
                                             {"weights", required_argument, 0, O_WEIGHTS},
                                             {"csv", required_argument, 0, O_CSV},
                                             {"dataset", required_argument, 0, O_DATASET},
                                             {"task", required_argument, 0, O_TASK},
                                             {"metrics", required_argument, 0, O_METRICS},
                                             {"threshold", required_argument, 0, O_THRESHOLD},
                                             {"ci", required_argument, 0, O_CI},
                                             {"replicates", required_argument, 0, O_REPLICATES},
                                             {"level", required_argument, 0, O_LEVEL},
                                             {"seed", required_argument, 0, O_SEED},
                                             {"quick", required_argument, 0, O_QUICK},
                                             {"nan", required_argument, 0, O_NAN},
                                             {"ece-bins", required_argument, 0, O_ECE_BINS},
                                             {"ece-equal-mass", no_argument, 0, O_ECE_MASS},
                                             {"top-k", required_argument, 0, O_TOPK},
                                             {"threads", required_argument, 0, O_THREADS},
                                             {"plot", required_argument, 0, O_PLOT},
                                             {"json", no_argument, 0, O_JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *y_true = NULL, *y_score = NULL, *weights = NULL, *csv = NULL, *dataset = NULL;
    const char *plot = NULL;
    int json = 0, c, v;
    double d;
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case O_YTRUE:
            y_true = optarg;
            break;
        case O_YSCORE:
            y_score = optarg;
            break;
        case O_WEIGHTS:
            weights = optarg;
            break;
        case O_CSV:
            csv = optarg;
            break;
        case O_DATASET:
            dataset = optarg;
            break;
        case O_TASK:
            if (strcmp(optarg, "auto") == 0)
                o.task = SP_EVAL_AUTO;
            else if (strcmp(optarg, "binary") == 0)
                o.task = SP_EVAL_BINARY;
            else if (strcmp(optarg, "multiclass") == 0)
                o.task = SP_EVAL_MULTICLASS;
            else if (strcmp(optarg, "regression") == 0)
                o.task = SP_EVAL_REGRESSION;
            else
                return cli_usage_error("eval",
                                       "--task: '%s' is not auto, binary, multiclass or "
                                       "regression",
                                       optarg);
            break;
        case O_METRICS:
            o.metrics = optarg;
            break;
        case O_THRESHOLD: {
            char *copy = strdup(optarg), *parts[SP_EVAL_MAX_THRESHOLDS + 1];
            size_t n = copy ? split_names(copy, parts, SP_EVAL_MAX_THRESHOLDS + 1) : 0;
            if (n == 0 || n > SP_EVAL_MAX_THRESHOLDS) {
                free(copy);
                return cli_usage_error("eval", "--threshold: give 1 to %d numbers",
                                       SP_EVAL_MAX_THRESHOLDS);
            }
            for (size_t i = 0; i < n; i++)
                if (parse_double(parts[i], &o.thresholds[i]) < 0) {
                    int r = cli_usage_error("eval", "--threshold: '%s' is not a number", parts[i]);
                    free(copy);
                    return r;
                }
            o.n_thresholds = n;
            free(copy);
            break;
        }
        case O_CI:
            if (strcmp(optarg, "none") == 0)
                o.ci = SP_EVAL_CI_NONE;
            else if (strcmp(optarg, "bootstrap") == 0)
                o.ci = SP_EVAL_CI_BOOTSTRAP;
            else if (strcmp(optarg, "delong") == 0)
                o.ci = SP_EVAL_CI_DELONG;
            else
                return cli_usage_error("eval", "--ci: '%s' is not none, bootstrap or delong",
                                       optarg);
            break;
        case O_REPLICATES:
            if (cli_parse_int(optarg, &v) < 0 || v < 1)
                return cli_usage_error("eval", "--replicates: '%s' is not a positive integer",
                                       optarg);
            o.replicates = (uint32_t)v;
            break;
        case O_LEVEL:
            if (parse_double(optarg, &o.level) < 0 || !(o.level > 0 && o.level < 1))
                return cli_usage_error("eval", "--level: '%s' is not in (0, 1)", optarg);
            break;
        case O_SEED: {
            char *end;
            o.seed = strtoull(optarg, &end, 10);
            if (end == optarg || *end)
                return cli_usage_error("eval", "--seed: '%s' is not an integer", optarg);
            break;
        }
        case O_QUICK:
            if (parse_double(optarg, &d) < 0 || !(d > 0))
                return cli_usage_error("eval",
                                       "--quick: '%s' is not a fraction in (0,1) or a "
                                       "row count",
                                       optarg);
            o.quick = d;
            break;
        case O_NAN:
            if (strcmp(optarg, "error") == 0)
                o.nan = SP_EVAL_NAN_ERROR;
            else if (strcmp(optarg, "drop") == 0)
                o.nan = SP_EVAL_NAN_DROP;
            else
                return cli_usage_error("eval", "--nan: '%s' is not error or drop", optarg);
            break;
        case O_ECE_BINS:
            if (cli_parse_int(optarg, &v) < 0 || v < 1)
                return cli_usage_error("eval", "--ece-bins: '%s' is not a positive integer",
                                       optarg);
            o.ece_bins = (uint32_t)v;
            break;
        case O_ECE_MASS:
            o.ece_equal_mass = 1;
            break;
        case O_TOPK:
            if (cli_parse_int(optarg, &v) < 0 || v < 1)
                return cli_usage_error("eval", "--top-k: '%s' is not a positive integer", optarg);
            o.top_k = (uint32_t)v;
            break;
        case O_THREADS:
            if (cli_parse_int(optarg, &v) < 0)
                return cli_usage_error("eval", "--threads: '%s' is not a number", optarg);
            o.n_threads = v;
            break;
        case O_PLOT:
            plot = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("eval", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("eval", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc) return cli_usage_error("eval", "unexpected argument '%s'", argv[optind]);
    if (!y_true || !y_score) return cli_usage_error("eval", "--y-true and --y-score are required");
    if (csv && dataset) return cli_usage_error("eval", "give --csv or --dataset, not both");

    o.curves = plot != NULL; /* with --plot, a binary task keeps its curves */

    inputs in;
    memset(&in, 0, sizeof in);
    int ret = CLI_OK;
    sp_status rc = SP_OK;
    if (csv) {
        rc = sp_table_read(csv, &in.table);
        if (rc < 0) ret = cli_fail("eval", rc);
        if (ret == CLI_OK) ret = read_table_cols(&in, 0, y_true, &in.y);
        if (ret == CLI_OK) ret = read_table_cols(&in, 1, y_score, &in.s);
        if (ret == CLI_OK && weights) ret = read_table_cols(&in, 2, weights, &in.w);
    } else if (dataset) {
        rc = sp_dataset_open(dataset, &in.ds);
        if (rc < 0) ret = cli_fail("eval", rc);
        if (ret == CLI_OK) ret = read_dataset_cols(&in, 0, y_true, &in.y);
        if (ret == CLI_OK) ret = read_dataset_cols(&in, 1, y_score, &in.s);
        if (ret == CLI_OK && weights) ret = read_dataset_cols(&in, 2, weights, &in.w);
    } else {
        ret = read_npy(&in, 0, y_true, &in.y);
        if (ret == CLI_OK) ret = read_npy(&in, 1, y_score, &in.s);
        if (ret == CLI_OK && weights) ret = read_npy(&in, 2, weights, &in.w);
    }
    const char *names[3] = {y_true, y_score, weights};
    if (ret == CLI_OK) {
        o.y_name = names[0];
        o.s_name = names[1];
        o.w_name = names[2] ? names[2] : "weights";
        sp_eval_result *res = NULL;
        rc = sp_eval_run(&in.y, &in.s, weights ? &in.w : NULL, &o, &res);
        if (rc == SP_OK && plot) rc = sp_eval_result_plot(res, plot, NULL);
        if (rc < 0) {
            ret = cli_fail("eval", rc);
        } else if (json) {
            print_json(res, &o);
        } else {
            print_text(res, &o);
            if (plot) printf("plot: %s\n", plot);
        }
        sp_eval_result_free(res);
    }
    inputs_free(&in);
    return ret;
}
