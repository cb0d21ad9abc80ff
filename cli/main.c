/* main.c — `softpipe <subcommand>`: dispatch, --help and --version. */
#include "cli.h"

#include <string.h>

static const struct {
    const char *name;
    int (*fn)(int, char **);
    const char *summary;
} commands[] = {
    {"pack", cmd_pack, "pack an ImageFolder tree, CSV or JSONL file into a dataset"},
    {"inspect", cmd_inspect, "summarize a dataset: samples, shards, columns, labels"},
    {"verify", cmd_verify, "check every checksum of a dataset"},
    {"run", cmd_run, "run what is stale in the pipeline (softpipe.yaml), restore what is cached"},
    {"status", cmd_status, "which stages are up to date, restorable or stale, and why"},
    {"gc", cmd_gc, "remove cache blobs no kept result references"},
    {"push", cmd_push, "upload cached results to a remote cache (--remote URL)"},
    {"pull", cmd_pull, "fetch cached results of the current keys from a remote cache"},
    {"eval", cmd_eval, "metrics and confidence intervals for stored predictions"},
    {"predict", cmd_predict, "batch inference with a tree-ensemble model (XGBoost JSON)"},
    {"transform", cmd_transform, "fit feature transforms (one spec for training and serving)"},
    {"bench-load", cmd_bench_load, "run the loader flat out and report images/s and telemetry"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: softpipe <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-10s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\nRun 'softpipe <command> --help' for a command's options.\n"
               "Exit codes: 0 ok, 1 bad data or failed check, 2 usage, 3 system error.\n");
}

int main(int argc, char **argv) {
    if (argc < 2) {
        usage(stderr);
        return CLI_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return CLI_OK;
    }
    if (!strcmp(argv[1], "--version")) {
        printf("softpipe %s\n", sp_version());
        return CLI_OK;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "softpipe: unknown command '%s'\n\n", argv[1]);
    usage(stderr);
    return CLI_USAGE;
}
