/* cmd_run.c — `softpipe run [STAGE...]`: brings the pipeline's stages up to date, restoring
 * what the run cache knows and running the rest in dependency order. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe run [STAGE...] [-j N] [--force] [--dry-run] [--remote URL] [-C DIR]\n"
    "                    [--file FILE]\n"
    "\n"
    "Runs the stages of the pipeline file (softpipe.yaml) that are not up to date, in dependency\n"
    "order, N at a time where the graph allows. A stage whose key (command, params, deps' "
    "content,\n"
    "env, outs) was computed before is restored from the cache instead of run. With STAGE names,\n"
    "runs those and what they depend on. A failing stage keeps its previous outputs; the stages\n"
    "after it are skipped.\n"
    "\n"
    "options:\n"
    "  -j, --jobs N        stages run in parallel (default 1)\n"
    "      --force         run the stages even if up to date or in the cache\n"
    "      --dry-run       say what would run or be restored; change nothing\n"
    "      --remote URL    also restore results from this remote cache (http(s)://host/base)\n"
    "                      and push the results of the stages that ran there\n"
    "  -C DIR              the project folder (default: the current folder)\n"
    "      --file FILE     the pipeline file inside the project (default softpipe.yaml)\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 done, 1 a stage failed or the pipeline file is wrong, 2 usage, 3 system "
    "error\n";

static void on_event(void *user, const char *stage, const char *what, const char *detail) {
    (void)user;
    if (*stage)
        printf("%-20s %-13s %s\n", stage, what, detail);
    else
        printf("%s\n", detail);
    fflush(stdout);
}

int cmd_run(int argc, char **argv) {
    enum { O_FORCE = 1000, O_DRY, O_FILE, O_REMOTE };
    static const struct option longopts[] = {{"jobs", required_argument, 0, 'j'},
                                             {"force", no_argument, 0, O_FORCE},
                                             {"dry-run", no_argument, 0, O_DRY},
                                             {"file", required_argument, 0, O_FILE},
                                             {"remote", required_argument, 0, O_REMOTE},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    sp_run_opts o;
    sp_run_opts_init(&o);
    const char *dir = ".", *file = NULL;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hj:C:", longopts, NULL)) != -1) {
        switch (c) {
        case 'j':
            if (cli_parse_int(optarg, &o.jobs) < 0 || o.jobs < 1)
                return cli_usage_error("run", "-j: '%s' is not a positive number", optarg);
            break;
        case O_FORCE:
            o.force = 1;
            break;
        case O_DRY:
            o.dry_run = 1;
            break;
        case 'C':
            dir = optarg;
            break;
        case O_FILE:
            file = optarg;
            break;
        case O_REMOTE:
            o.remote = optarg;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("run", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("run", "unknown option '%s'", argv[optind - 1]);
        }
    }
    sp_project *p;
    sp_status rc = sp_project_open(dir, file, &p);
    if (rc < 0) return cli_fail("run", rc);
    o.stages = (const char *const *)(argv + optind);
    o.n_stages = (size_t)(argc - optind);
    o.on_event = on_event;
    rc = sp_project_run(p, &o);
    sp_project_close(p);
    if (rc < 0) return cli_fail("run", rc);
    return CLI_OK;
}
