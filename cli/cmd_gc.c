/* cmd_gc.c — `softpipe gc [--keep-last N] [--dry-run]`: removes cache blobs that no kept run-cache
 * result references. */
#include "cli.h"

#include <getopt.h>

static const char HELP[] =
    "usage: softpipe gc [--keep-last N] [--dry-run] [-C DIR] [--file FILE] [--json]\n"
    "\n"
    "Keeps the newest N results of every stage key in the run cache (default: all), removes the\n"
    "blobs no kept result references, and drops results whose blobs are gone.\n"
    "\n"
    "options:\n"
    "      --keep-last N   results kept per key (0 = all)\n"
    "      --dry-run       count what would be removed; remove nothing\n"
    "  -C DIR              the project folder (default: the current folder)\n"
    "      --file FILE     the pipeline file inside the project (default softpipe.yaml)\n"
    "      --json          print as JSON on stdout\n"
    "  -h, --help          this help\n";

int cmd_gc(int argc, char **argv) {
    enum { O_KEEP = 1000, O_DRY, O_FILE, O_JSON };
    static const struct option longopts[] = {{"keep-last", required_argument, 0, O_KEEP},
                                             {"dry-run", no_argument, 0, O_DRY},
                                             {"file", required_argument, 0, O_FILE},
                                             {"json", no_argument, 0, O_JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = ".", *file = NULL;
    int keep = 0, dry = 0, json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hC:", longopts, NULL)) != -1) {
        switch (c) {
        case O_KEEP:
            if (cli_parse_int(optarg, &keep) < 0)
                return cli_usage_error("gc", "--keep-last: '%s' is not a number", optarg);
            break;
        case O_DRY:
            dry = 1;
            break;
        case 'C':
            dir = optarg;
            break;
        case O_FILE:
            file = optarg;
            break;
        case O_JSON:
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("gc", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("gc", "unknown option '%s'", argv[optind - 1]);
        }
    }
    sp_project *p;
    sp_status rc = sp_project_open(dir, file, &p);
    if (rc < 0) return cli_fail("gc", rc);
    sp_gc_report r;
    rc = sp_project_gc(p, (uint32_t)keep, dry, &r);
    sp_project_close(p);
    if (rc < 0) return cli_fail("gc", rc);
    char b[32];
    if (json)
        printf("{\"dry_run\": %s, \"blobs_removed\": %llu, \"bytes_removed\": %llu, "
               "\"records_dropped\": %llu}\n",
               dry ? "true" : "false", (unsigned long long)r.blobs_removed,
               (unsigned long long)r.bytes_removed, (unsigned long long)r.records_dropped);
    else
        printf("%s %llu blobs (%s), dropped %llu run-cache results\n",
               dry ? "would remove" : "removed", (unsigned long long)r.blobs_removed,
               cli_human_bytes((double)r.bytes_removed, b, sizeof b),
               (unsigned long long)r.records_dropped);
    return CLI_OK;
}
