/* cli.h — shared pieces of the `softpipe` command-line tool: exit codes, error printing, the
 * progress bar and small formatting helpers. The CLI sees only the public headers. */
#ifndef SP_CLI_H
#define SP_CLI_H

#include <softpipe.h>
#include <stdint.h>
#include <stdio.h>

/* Exit codes, one table for every subcommand. */
enum {
    CLI_OK = 0,
    CLI_BAD_DATA = 1, /* the data or the verdict is bad */
    CLI_USAGE = 2,
    CLI_SYSTEM = 3, /* I/O, memory */
    CLI_INTERNAL = 70
};

/* Exit code for a library status. */
int cli_exit_code(sp_status rc);
/* Prints "softpipe <cmd>: <sp_errmsg()>" to stderr and returns the exit code for rc. */
int cli_fail(const char *cmd, sp_status rc);
/* Prints a usage error with a hint to run --help; returns CLI_USAGE. */
int cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Parses "256M", "4MiB", "1G", "4096" into bytes. Returns 0 on success. */
int cli_parse_size(const char *s, uint64_t *out);
/* Parses a non-negative int. Returns 0 on success. */
int cli_parse_int(const char *s, int *out);

/* Monotonic wall seconds, and CPU seconds of the whole process (all threads). */
double cli_now(void);
double cli_cpu_seconds(void);

/* "12.3 MB" style (decimal units) into buf. */
const char *cli_human_bytes(double bytes, char *buf, size_t cap);

/* Progress bar on stderr, drawn only when stderr is a terminal. */
typedef struct cli_progress {
    int enabled;
    const char *what; /* "packing", "verifying" */
    const char *unit; /* "img", "B" */
    double start, last_draw;
} cli_progress;
void cli_progress_init(cli_progress *p, const char *what, const char *unit);
/* done/total items and bytes so far; total may be 0 when unknown. */
void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total, uint64_t bytes);
void cli_progress_end(cli_progress *p);

/* The options `softpipe push` and `pull` share: --remote URL (default $SOFTPIPE_REMOTE),
 * -C DIR, --file FILE, --json, -h. Returns -1 when the command should go on (argv[*optind..]
 * are its operands), else the exit code to return (help printed, or a usage error). */
typedef struct cli_remote_opts {
    const char *dir, *file, *remote;
    int json;
} cli_remote_opts;
int cli_parse_remote_opts(const char *cmd, const char *help, int argc, char **argv,
                          cli_remote_opts *o);

/* Writes path atomically (temp file in the same folder, fsync, rename); prints the error and
 * returns -1 on failure, 0 on success. */
int cli_write_atomic(const char *path, const void *data, size_t len);

/* Writes s as a JSON string literal (with quotes) to f. */
void cli_json_string(FILE *f, const char *s, size_t len);

int cmd_pack(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_verify(int argc, char **argv);
int cmd_bench_load(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_transform(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_status(int argc, char **argv);
int cmd_gc(int argc, char **argv);
int cmd_push(int argc, char **argv);
int cmd_pull(int argc, char **argv);

#endif
