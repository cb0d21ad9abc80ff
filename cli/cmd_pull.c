/* cmd_pull.c — `softpipe pull [STAGE...] --remote URL`: fetches the results of the stages'
 * current keys from a remote cache into the local one, without restoring them (docs/cache.md
 * "Remotes"); `softpipe run --remote URL` fetches and restores a whole chain. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>

static const char HELP[] =
    "usage: softpipe pull [STAGE...] --remote URL [-C DIR] [--file FILE] [--json]\n"
    "\n"
    "Fetches from the remote cache at URL (http(s)://host[:port]/base) the results of the current\n"
    "keys of the stages (default: all) into the local cache; the next `softpipe run` restores\n"
    "them. Every blob is verified against its sha256 before it is stored. A stage whose deps do\n"
    "not exist yet (outputs of an upstream stage) is skipped: `softpipe run --remote URL` pulls\n"
    "and restores a whole chain. SOFTPIPE_REMOTE sets URL when --remote is not given.\n"
    "\n"
    "options:\n"
    "      --remote URL    the remote cache\n"
    "  -C DIR              the project folder (default: the current folder)\n"
    "      --file FILE     the pipeline file inside the project (default softpipe.yaml)\n"
    "      --json          print as JSON on stdout\n"
    "  -h, --help          this help\n"
    "\n"
    "exit status: 0 done, 1 a downloaded blob or record is corrupt, 2 usage, 3 the remote or the\n"
    "disk failed\n";

int cmd_pull(int argc, char **argv) {
    cli_remote_opts ro;
    int ret = cli_parse_remote_opts("pull", HELP, argc, argv, &ro);
    if (ret >= 0) return ret;
    sp_project *p;
    sp_status rc = sp_project_open(ro.dir, ro.file, &p);
    if (rc < 0) return cli_fail("pull", rc);
    sp_remote_report r;
    rc = sp_project_pull(p, ro.remote, (const char *const *)(argv + optind),
                         (size_t)(argc - optind), &r);
    sp_project_close(p);
    if (rc < 0) return cli_fail("pull", rc);
    char b[32];
    if (ro.json)
        printf("{\"results\": %llu, \"blobs\": %llu, \"bytes\": %llu, \"blobs_present\": %llu, "
               "\"skipped\": %llu}\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               (unsigned long long)r.bytes, (unsigned long long)r.blobs_present,
               (unsigned long long)r.skipped);
    else
        printf("pulled %llu results, %llu blobs (%s); %llu stages not available\n",
               (unsigned long long)r.results, (unsigned long long)r.blobs,
               cli_human_bytes((double)r.bytes, b, sizeof b), (unsigned long long)r.skipped);
    return CLI_OK;
}
