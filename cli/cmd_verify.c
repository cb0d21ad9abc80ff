/* cmd_verify.c — `softpipe verify DATASET`. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe verify DATASET [--deep] [--threads N] [--json]\n"
    "\n"
    "Checks the manifest, every shard's sha256, footer and metadata hash, every index entry and\n"
    "every sample's crc32c. Exit 0 when clean, 1 listing each corrupt shard and sample.\n"
    "\n"
    "options:\n"
    "      --deep        also decode every image (JPEG/PNG)\n"
    "      --threads N   shards checked in parallel (default: all cores)\n"
    "      --json        print the report as JSON on stdout\n"
    "  -h, --help        this help\n";

typedef struct issue_list {
    int json, n;
    cli_progress prog;
} issue_list;

static void on_issue(void *user, const char *shard, int64_t sample, const char *key,
                     const char *msg) {
    issue_list *l = user;
    if (l->json) {
        printf("%s{\"shard\": ", l->n ? ", " : "");
        cli_json_string(stdout, shard, strlen(shard));
        printf(", \"sample\": %lld, \"key\": ", (long long)sample);
        if (key)
            cli_json_string(stdout, key, strlen(key));
        else
            printf("null");
        printf(", \"message\": ");
        cli_json_string(stdout, msg, strlen(msg));
        printf("}");
    } else {
        if (l->prog.enabled) fprintf(stderr, "\r\033[K");
        printf("CORRUPT %s\n", msg);
    }
    l->n++;
}

static void on_progress(void *user, uint64_t done, uint64_t total) {
    issue_list *l = user;
    cli_progress_update(&l->prog, done, total, done);
}

int cmd_verify(int argc, char **argv) {
    static const struct option longopts[] = {{"deep", no_argument, 0, 'd'},
                                             {"threads", required_argument, 0, 't'},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    sp_verify_opts o;
    sp_verify_opts_init(&o);
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            o.deep = 1;
            break;
        case 't':
            if (cli_parse_int(optarg, &o.threads) || o.threads > 256)
                return cli_usage_error("verify", "--threads '%s': expected a number 0..256",
                                       optarg);
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("verify", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("verify", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("verify", "expected one DATASET");
    const char *path = argv[optind];
    issue_list l;
    memset(&l, 0, sizeof l);
    l.json = json;
    cli_progress_init(&l.prog, "verifying", "B");
    o.on_issue = on_issue;
    o.on_progress = on_progress;
    o.user = &l;
    if (json) printf("{\"issues\": [");
    double t0 = cli_now();
    sp_verify_report r;
    sp_status rc = sp_dataset_verify(path, &o, &r);
    double secs = cli_now() - t0;
    cli_progress_end(&l.prog);
    int ok = rc == SP_OK;
    if (json) {
        printf("], \"ok\": %s, \"dataset\": ", ok ? "true" : "false");
        cli_json_string(stdout, path, strlen(path));
        printf(", \"deep\": %s, \"shards\": %llu, \"shards_bad\": %llu, \"samples\": %llu, "
               "\"samples_bad\": %llu, \"bytes\": %llu, \"seconds\": %.3f",
               o.deep ? "true" : "false", (unsigned long long)r.shards,
               (unsigned long long)r.shards_bad, (unsigned long long)r.samples,
               (unsigned long long)r.samples_bad, (unsigned long long)r.bytes, secs);
        if (!ok) {
            printf(", \"error\": ");
            cli_json_string(stdout, sp_errmsg(), strlen(sp_errmsg()));
        }
        printf("}\n");
        if (!ok && rc != SP_ECORRUPT) fprintf(stderr, "softpipe verify: %s\n", sp_errmsg());
    } else if (rc < 0 && rc != SP_ECORRUPT) {
        return cli_fail("verify", rc);
    } else {
        char hb[32], hr[32];
        printf("%s: %llu samples in %llu shards, %s checked%s in %.2f s (%s/s): ", path,
               (unsigned long long)r.samples, (unsigned long long)r.shards,
               cli_human_bytes((double)r.bytes, hb, sizeof hb), o.deep ? " and decoded" : "", secs,
               cli_human_bytes(secs > 0 ? (double)r.bytes / secs : 0, hr, sizeof hr));
        if (ok)
            printf("OK\n");
        else
            printf("%llu problem%s, %llu bad shard%s, %llu bad sample%s\n",
                   (unsigned long long)r.issues, r.issues == 1 ? "" : "s",
                   (unsigned long long)r.shards_bad, r.shards_bad == 1 ? "" : "s",
                   (unsigned long long)r.samples_bad, r.samples_bad == 1 ? "" : "s");
    }
    return cli_exit_code(rc);
}
