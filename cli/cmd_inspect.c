/* cmd_inspect.c — `softpipe inspect DATASET`: samples, shards, bytes, columns with types and
 * min/max (from the block statistics), and the label histogram (from the label column). */
#include "cli.h"

#include <getopt.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe inspect DATASET [--json]\n"
    "\n"
    "Summarizes a dataset without reading payloads: samples, shards, bytes, each column's type,\n"
    "null count and min/max, the label histogram with class names, and the pack parameters.\n"
    "\n"
    "options:\n"
    "      --json        print as JSON on stdout\n"
    "  -h, --help        this help\n";

typedef struct label_count {
    int64_t label;
    uint64_t n;
} label_count;

static int cmp_lc(const void *a, const void *b) {
    int64_t x = ((const label_count *)a)->label, y = ((const label_count *)b)->label;
    return (x > y) - (x < y);
}

int cmd_inspect(int argc, char **argv) {
    static const struct option longopts[] = {
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'}, {0, 0, 0, 0}};
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        default:
            return cli_usage_error("inspect", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("inspect", "expected one DATASET");
    const char *path = argv[optind];
    sp_dataset *ds;
    sp_status rc = sp_dataset_open(path, &ds);
    if (rc < 0) return cli_fail("inspect", rc);

    uint64_t n = sp_dataset_len(ds), file_bytes = 0;
    size_t ns = sp_dataset_n_shards(ds), nc = sp_dataset_n_columns(ds);
    for (size_t i = 0; i < ns; i++) {
        sp_shard_info si;
        sp_dataset_shard_info(ds, i, &si);
        file_bytes += si.file_bytes;
    }
    json_t *manifest = json_loads(sp_dataset_manifest(ds), 0, NULL);
    json_t *pack = json_object_get(manifest, "pack");
    json_t *classes = json_object_get(pack, "classes");

    /* label histogram */
    int64_t *labels = malloc((n ? n : 1) * sizeof *labels);
    uint8_t *nulls = malloc(n ? n : 1);
    label_count *hist = NULL;
    size_t nh = 0;
    uint64_t unlabeled = 0;
    if (!labels || !nulls) {
        free(labels);
        free(nulls);
        json_decref(manifest);
        sp_dataset_close(ds);
        fprintf(stderr, "softpipe inspect: out of memory\n");
        return CLI_SYSTEM;
    }
    sp_dataset_read_column(ds, SP_COL_LABEL, labels, n, nulls);
    label_count *tmp = malloc((n ? n : 1) * sizeof *tmp);
    size_t nt = 0;
    for (uint64_t i = 0; tmp && i < n; i++) {
        if (nulls[i])
            unlabeled++;
        else
            tmp[nt++] = (label_count){labels[i], 1};
    }
    if (tmp) {
        qsort(tmp, nt, sizeof *tmp, cmp_lc);
        hist = tmp;
        for (size_t i = 0; i < nt; i++) {
            if (nh && hist[nh - 1].label == tmp[i].label)
                hist[nh - 1].n++;
            else
                hist[nh++] = tmp[i];
        }
    }

    char hb[32];
    if (json) {
        printf("{\"dataset\": ");
        cli_json_string(stdout, path, strlen(path));
        printf(
            ", \"samples\": %llu, \"shards\": %zu, \"payload_bytes\": %llu, \"file_bytes\": %llu",
            (unsigned long long)n, ns, (unsigned long long)sp_dataset_payload_bytes(ds),
            (unsigned long long)file_bytes);
        printf(", \"columns\": [");
        for (size_t k = 0; k < nc; k++) {
            const sp_column *col = sp_dataset_column(ds, k);
            sp_column_stats st;
            sp_dataset_column_stats(ds, k, &st);
            printf("%s{\"name\": \"%s\", \"type\": \"%s\", \"nulls\": %llu", k ? ", " : "",
                   col->name, sp_type_name(col->type), (unsigned long long)st.null_count);
            if (st.has_minmax && col->type == SP_TYPE_FLOAT64)
                printf(", \"min\": %.17g, \"max\": %.17g", st.min_f, st.max_f);
            else if (st.has_minmax)
                printf(", \"min\": %lld, \"max\": %lld", (long long)st.min_i, (long long)st.max_i);
            printf("}");
        }
        printf("], \"labels\": [");
        for (size_t i = 0; i < nh; i++) {
            printf("%s{\"label\": %lld, \"count\": %llu", i ? ", " : "", (long long)hist[i].label,
                   (unsigned long long)hist[i].n);
            const char *name =
                hist[i].label >= 0
                    ? json_string_value(json_array_get(classes, (size_t)hist[i].label))
                    : NULL;
            if (name) {
                printf(", \"name\": ");
                cli_json_string(stdout, name, strlen(name));
            }
            printf("}");
        }
        printf("], \"unlabeled\": %llu, \"pack\": ", (unsigned long long)unlabeled);
        char *ptext = pack ? json_dumps(pack, JSON_COMPACT | JSON_PRESERVE_ORDER) : NULL;
        printf("%s}\n", ptext ? ptext : "null");
        free(ptext);
    } else {
        printf("dataset   %s\n", path);
        printf("samples   %llu\n", (unsigned long long)n);
        printf("shards    %zu (%s on disk)\n", ns,
               cli_human_bytes((double)file_bytes, hb, sizeof hb));
        printf("payload   %s\n",
               cli_human_bytes((double)sp_dataset_payload_bytes(ds), hb, sizeof hb));
        const char *fmt = json_string_value(json_object_get(pack, "format"));
        if (fmt) printf("source    %s\n", fmt);
        printf("\ncolumns:\n  %-20s %-8s %10s  %s\n", "name", "type", "nulls", "min .. max");
        for (size_t k = 0; k < nc; k++) {
            const sp_column *col = sp_dataset_column(ds, k);
            sp_column_stats st;
            sp_dataset_column_stats(ds, k, &st);
            printf("  %-20s %-8s %10llu  ", col->name, sp_type_name(col->type),
                   (unsigned long long)st.null_count);
            if (st.has_minmax && col->type == SP_TYPE_FLOAT64)
                printf("%g .. %g\n", st.min_f, st.max_f);
            else if (st.has_minmax)
                printf("%lld .. %lld\n", (long long)st.min_i, (long long)st.max_i);
            else
                printf("-\n");
        }
        if (nh) {
            printf("\nlabels:\n");
            for (size_t i = 0; i < nh; i++) {
                const char *name =
                    hist[i].label >= 0
                        ? json_string_value(json_array_get(classes, (size_t)hist[i].label))
                        : NULL;
                printf("  %6lld  %-24s %10llu  %5.1f%%\n", (long long)hist[i].label,
                       name ? name : "", (unsigned long long)hist[i].n,
                       100.0 * (double)hist[i].n / (double)n);
            }
        }
        if (unlabeled) printf("  unlabeled: %llu\n", (unsigned long long)unlabeled);
    }
    free(hist);
    free(labels);
    free(nulls);
    json_decref(manifest);
    sp_dataset_close(ds);
    return CLI_OK;
}
