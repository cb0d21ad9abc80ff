/* cmd_push.c — `softpipe push --remote URL`: uploads the local run cache's results to a remote
 * cache (the Bazel HTTP cache protocol, docs/cache.md "Remotes"). */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: softpipe push --remote URL [-C DIR] [--file FILE] [--json]\n"
    "\n"
    "Uploads the newest complete result of every key in the local run cache to the remote cache\n"
    "at URL (http(s)://host[:port]/base): the blobs it lacks (PUT URL/cas/<sha256>, 8 at a time),\n"
    "then the records (PUT URL/ac/<key>). Transfers are retried 3 times with backoff on\n"
    "connection errors and HTTP 5xx. SOFTPIPE_REMOTE sets URL when --remote is not given.\n"
    "\n"
    "options:\n"
    "      --remote URL    the remote cache\n"
    "  -C DIR              the project folder (default: the current folder)\n"
    "      --file FILE     the pipeline file inside the project (default softpipe.yaml)\n"
    "      --json          print as JSON on stdout\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 done, 2 usage, 3 the remote or the disk failed\n";

int cmd_push(int argc, char **argv) {
    cli_remote_opts ro;
    int ret = cli_parse_remote_opts("push", HELP, argc, argv, &ro);
    if (ret >= 0) return ret;
    if (optind < argc) return cli_usage_error("push", "unexpected argument '%s'", argv[optind]);
    sp_project *p;
    sp_status rc = sp_project_open(ro.dir, ro.file, &p);
    if (rc < 0) return cli_fail("push", rc);
    sp_remote_report r;
    rc = sp_project_push(p, ro.remote, &r);
    sp_project_close(p);
    if (rc < 0) return cli_fail("push", rc);
    char b[32];
    if (ro.json)
        printf("{\"results\": %llu, \"blobs\": %llu, \"bytes\": %llu, \"blobs_present\": %llu}\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               (unsigned long long)r.bytes, (unsigned long long)r.blobs_present);
    else
        printf("pushed %llu results, %llu blobs (%s); %llu blobs were already there\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               cli_human_bytes((double)r.bytes, b, sizeof b), (unsigned long long)r.blobs_present);
    return CLI_OK;
}
