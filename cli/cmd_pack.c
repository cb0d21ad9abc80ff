/* cmd_pack.c — `softpipe pack SRC -o OUT`. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe pack SRC -o OUT [options]\n"
    "\n"
    "Packs SRC into a new dataset folder OUT (which must not exist): an ImageFolder tree\n"
    "(SRC/<class>/**/*.jpg|jpeg|png, label = index of the class in sorted order), or a CSV or\n"
    "JSONL table. The dataset appears only when complete.\n"
    "\n"
    "options:\n"
    "  -o, --output OUT        dataset folder to create (required)\n"
    "      --format F          auto (default) | imagefolder | csv | jsonl\n"
    "      --threads N         reader threads (default: all cores); output is identical for any N\n"
    "      --on-error P        fail (default): stop at the first bad file, exit 1;\n"
    "                          skip: pack the rest and report every skipped file\n"
    "      --shard-size SIZE   maximum shard file size (default 256M)\n"
    "      --block-size SIZE   payload block size (default 4M)\n"
    "  tables only:\n"
    "      --schema S          column types, e.g. 'id:string,age:int64,ts:timestamp'\n"
    "                          (int64 | float64 | string | timestamp); others are inferred\n"
    "      --image-column C    column of image file names (relative to the table's folder)\n"
    "      --label-column C    column that becomes the label (default: a column named 'label';\n"
    "                          strings become class indices in sorted order)\n"
    "      --time-column C     ISO-8601 or epoch seconds; becomes 'timestamp' (default: a\n"
    "                          column named 'timestamp')\n"
    "      --key-column C      sample name (default: a column named 'key', else 'line N')\n"
    "      --restart-markers   rewrite baseline JPEGs losslessly with a restart marker per MCU\n"
    "                          row, so the loader skips entropy decoding above a crop\n"
    "      --json              print the report as JSON on stdout\n"
    "  -h, --help              this help\n";

typedef struct skip_list {
    int json;
    FILE *f;
    char **where, **why;
    size_t n, cap;
} skip_list;

static void on_skip(void *user, const char *where, const char *reason) {
    skip_list *s = user;
    if (!s->json) fprintf(stderr, "skipped %s: %s\n", where, reason);
    if (s->n == s->cap) {
        size_t cap = s->cap ? s->cap * 2 : 16;
        char **a = realloc(s->where, cap * sizeof *a), **b = realloc(s->why, cap * sizeof *b);
        if (a) s->where = a;
        if (b) s->why = b;
        if (!a || !b) return;
        s->cap = cap;
    }
    s->where[s->n] = strdup(where);
    s->why[s->n] = strdup(reason);
    s->n++;
}

typedef struct pack_ui {
    skip_list skips;
    cli_progress prog;
} pack_ui;

static void on_progress(void *user, uint64_t done, uint64_t total, uint64_t bytes) {
    pack_ui *ui = user;
    cli_progress_update(&ui->prog, done, total, bytes);
}

static void on_skip_ui(void *user, const char *where, const char *reason) {
    pack_ui *ui = user;
    if (ui->prog.enabled && !ui->skips.json) fprintf(stderr, "\r\033[K");
    on_skip(&ui->skips, where, reason);
}

int cmd_pack(int argc, char **argv) {
    static const struct option longopts[] = {{"output", required_argument, 0, 'o'},
                                             {"format", required_argument, 0, 'f'},
                                             {"threads", required_argument, 0, 't'},
                                             {"on-error", required_argument, 0, 'e'},
                                             {"shard-size", required_argument, 0, 'S'},
                                             {"block-size", required_argument, 0, 'B'},
                                             {"schema", required_argument, 0, 's'},
                                             {"image-column", required_argument, 0, 'i'},
                                             {"label-column", required_argument, 0, 'l'},
                                             {"time-column", required_argument, 0, 'T'},
                                             {"key-column", required_argument, 0, 'k'},
                                             {"json", no_argument, 0, 'j'},
                                             {"restart-markers", no_argument, 0, 'R'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    const char *out = NULL;
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":o:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'o':
            out = optarg;
            break;
        case 'f':
            if (!strcmp(optarg, "auto"))
                o.format = SP_PACK_AUTO;
            else if (!strcmp(optarg, "imagefolder"))
                o.format = SP_PACK_IMAGEFOLDER;
            else if (!strcmp(optarg, "csv"))
                o.format = SP_PACK_CSV;
            else if (!strcmp(optarg, "jsonl"))
                o.format = SP_PACK_JSONL;
            else
                return cli_usage_error(
                    "pack", "--format '%s': expected auto, imagefolder, csv or jsonl", optarg);
            break;
        case 't':
            if (cli_parse_int(optarg, &o.threads) || o.threads > 256)
                return cli_usage_error("pack", "--threads '%s': expected a number 0..256", optarg);
            break;
        case 'e':
            if (!strcmp(optarg, "fail"))
                o.skip_errors = 0;
            else if (!strcmp(optarg, "skip"))
                o.skip_errors = 1;
            else
                return cli_usage_error("pack", "--on-error '%s': expected fail or skip", optarg);
            break;
        case 'S':
            if (cli_parse_size(optarg, &o.shard_size))
                return cli_usage_error("pack", "--shard-size '%s': expected a size like 256M",
                                       optarg);
            break;
        case 'B':
            if (cli_parse_size(optarg, &o.block_size))
                return cli_usage_error("pack", "--block-size '%s': expected a size like 4M",
                                       optarg);
            break;
        case 's':
            o.schema = optarg;
            break;
        case 'i':
            o.image_column = optarg;
            break;
        case 'l':
            o.label_column = optarg;
            break;
        case 'T':
            o.time_column = optarg;
            break;
        case 'k':
            o.key_column = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'R':
            o.restart_markers = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("pack", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("pack", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("pack", optind >= argc ? "missing SRC" : "expected one SRC, got %d",
                               argc - optind);
    if (!out) return cli_usage_error("pack", "missing -o OUT");
    const char *src = argv[optind];

    pack_ui ui;
    memset(&ui, 0, sizeof ui);
    ui.skips.json = json;
    cli_progress_init(&ui.prog, "packing", "img");
    o.on_skip = on_skip_ui;
    o.on_progress = on_progress;
    o.user = &ui;
    sp_pack_report rep;
    double t0 = cli_now();
    sp_status rc = sp_pack(src, out, &o, &rep);
    double secs = cli_now() - t0;
    cli_progress_end(&ui.prog);
    int code = rc < 0 ? cli_exit_code(rc) : CLI_OK;
    if (json) {
        printf("{\"ok\": %s, \"source\": ", rc < 0 ? "false" : "true");
        cli_json_string(stdout, src, strlen(src));
        printf(", \"output\": ");
        cli_json_string(stdout, out, strlen(out));
        if (rc < 0) {
            printf(", \"error\": ");
            cli_json_string(stdout, sp_errmsg(), strlen(sp_errmsg()));
            printf(", \"status\": \"%s\"", sp_status_name(rc));
        } else {
            printf(", \"format\": \"%s\", \"samples\": %llu, \"payload_bytes\": %llu, "
                   "\"shards\": %llu, \"classes\": %llu, \"seconds\": %.3f",
                   sp_pack_format_name(rep.format), (unsigned long long)rep.samples,
                   (unsigned long long)rep.payload_bytes, (unsigned long long)rep.shards,
                   (unsigned long long)rep.classes, secs);
        }
        printf(", \"skipped\": [");
        for (size_t i = 0; i < ui.skips.n; i++) {
            printf("%s{\"where\": ", i ? ", " : "");
            cli_json_string(stdout, ui.skips.where[i], strlen(ui.skips.where[i]));
            printf(", \"reason\": ");
            cli_json_string(stdout, ui.skips.why[i], strlen(ui.skips.why[i]));
            printf("}");
        }
        printf("]}\n");
        if (rc < 0) fprintf(stderr, "softpipe pack: %s\n", sp_errmsg());
    } else if (rc < 0) {
        cli_fail("pack", rc);
    } else {
        char hb[32];
        printf("packed %llu samples (%s) from %s %s into %s: %llu shard%s",
               (unsigned long long)rep.samples,
               cli_human_bytes((double)rep.payload_bytes, hb, sizeof hb),
               sp_pack_format_name(rep.format), src, out, (unsigned long long)rep.shards,
               rep.shards == 1 ? "" : "s");
        if (rep.classes) printf(", %llu classes", (unsigned long long)rep.classes);
        printf(", %llu skipped, %.2f s (%.0f samples/s, %s/s)\n", (unsigned long long)rep.skipped,
               secs, secs > 0 ? (double)rep.samples / secs : 0.0,
               cli_human_bytes(secs > 0 ? (double)rep.payload_bytes / secs : 0, hb, sizeof hb));
    }
    for (size_t i = 0; i < ui.skips.n; i++) {
        free(ui.skips.where[i]);
        free(ui.skips.why[i]);
    }
    free(ui.skips.where);
    free(ui.skips.why);
    return code;
}
