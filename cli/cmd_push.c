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
    enum { O_REMOTE = 1000, O_FILE, O_JSON };
    static const struct option longopts[] = {{"remote", required_argument, 0, O_REMOTE},
                                             {"file", required_argument, 0, O_FILE},
                                             {"json", no_argument, 0, O_JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    const char *dir = ".", *file = NULL, *remote = getenv("SOFTPIPE_REMOTE");
    int json = 0, c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hC:", longopts, NULL)) != -1) {
        switch (c) {
        case O_REMOTE:
            remote = optarg;
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
            return cli_usage_error("push", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("push", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind < argc) return cli_usage_error("push", "unexpected argument '%s'", argv[optind]);
    if (!remote || !*remote) return cli_usage_error("push", "--remote URL is required");
    sp_project *p;
    sp_status rc = sp_project_open(dir, file, &p);
    if (rc < 0) return cli_fail("push", rc);
    sp_remote_report r;
    rc = sp_project_push(p, remote, &r);
    sp_project_close(p);
    if (rc < 0) return cli_fail("push", rc);
    char b[32];
    if (json)
        printf("{\"results\": %llu, \"blobs\": %llu, \"bytes\": %llu, \"blobs_present\": %llu}\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               (unsigned long long)r.bytes, (unsigned long long)r.blobs_present);
    else
        printf("pushed %llu results, %llu blobs (%s); %llu blobs were already there\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               cli_human_bytes((double)r.bytes, b, sizeof b), (unsigned long long)r.blobs_present);
    return CLI_OK;
}
