/* cmd_status.c — `softpipe status [--why] [--json]`: for each stage, up to date, restorable from
 * the cache, or stale, and why. */
#include "cli.h"

#include <getopt.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe status [--why] [--json] [-C DIR] [--file FILE]\n"
    "\n"
    "Shows each stage of the pipeline as up to date, restorable (its result is in the cache) or\n"
    "stale (it must run). With --why, says what changed since the stage last ran or was\n"
    "restored here: 'param train.lr changed 0.1 -> 0.01', 'dep data/raw.csv changed (sha256\n"
    "1f3a... -> 9b2c...)', 'command changed', 'output models/m.bin was modified'. A no-op status\n"
    "costs one stat per file (a stat cache in .softpipe/statcache).\n"
    "\n"
    "options:\n"
    "      --why           the reasons, one per line under each stage\n"
    "      --json          print as JSON on stdout\n"
    "  -C DIR              the project folder (default: the current folder)\n"
    "      --file FILE     the pipeline file inside the project (default softpipe.yaml)\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 all up to date, 1 some stage is not (or the pipeline file is wrong), 2 usage,\n"
    "3 system error\n";

static const char *state_name(sp_stage_state s) {
    return s == SP_STAGE_UP_TO_DATE   ? "up to date"
           : s == SP_STAGE_RESTORABLE ? "restorable"
                                      : "stale";
}

int cmd_status(int argc, char **argv) {
    enum { O_WHY = 1000, O_JSON, O_FILE };
    static const struct option longopts[] = {{"why", no_argument, 0, O_WHY},
                                             {"json", no_argument, 0, O_JSON},
                                             {"file", required_argument, 0, O_FILE},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = ".", *file = NULL;
    int why = 0, json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hC:", longopts, NULL)) != -1) {
        switch (c) {
        case O_WHY:
            why = 1;
            break;
        case O_JSON:
            json = 1;
            break;
        case 'C':
            dir = optarg;
            break;
        case O_FILE:
            file = optarg;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("status", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("status", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc) return cli_usage_error("status", "unexpected argument '%s'", argv[optind]);
    sp_project *p;
    sp_status rc = sp_project_open(dir, file, &p);
    if (rc < 0) return cli_fail("status", rc);
    const sp_stage_status *st;
    size_t n;
    rc = sp_project_status(p, &st, &n);
    if (rc < 0) {
        sp_project_close(p);
        return cli_fail("status", rc);
    }
    int all_ok = 1;
    if (json) printf("{\"stages\": [");
    for (size_t i = 0; i < n; i++) {
        all_ok &= st[i].state == SP_STAGE_UP_TO_DATE;
        if (json) {
            printf("%s\n  {\"name\": ", i ? "," : "");
            cli_json_string(stdout, st[i].name, strlen(st[i].name));
            printf(", \"state\": \"%s\", \"key\": \"%s\", \"why\": [", state_name(st[i].state),
                   st[i].key);
            for (size_t k = 0; k < st[i].n_reasons; k++) {
                if (k) printf(", ");
                cli_json_string(stdout, st[i].reasons[k], strlen(st[i].reasons[k]));
            }
            printf("]}");
        } else {
            printf("%-20s %s\n", st[i].name, state_name(st[i].state));
            for (size_t k = 0; why && k < st[i].n_reasons; k++)
                printf("    %s\n", st[i].reasons[k]);
        }
    }
    if (json) printf("\n], \"up_to_date\": %s}\n", all_ok ? "true" : "false");
    sp_project_close(p);
    return all_ok ? CLI_OK : CLI_BAD_DATA;
}
