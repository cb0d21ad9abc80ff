/* cli_util.c — exit codes, error output, size parsing and the progress bar. */
#include "cli.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int cli_exit_code(sp_status rc) {
    switch (rc) {
    case SP_OK:
    case SP_DONE:
        return CLI_OK;
    case SP_ECORRUPT:
    case SP_EBADINPUT:
    case SP_EUNSUPPORTED:
        return CLI_BAD_DATA;
    case SP_EINVAL:
    case SP_ENOTFOUND: /* a path the user gave does not exist */
    case SP_EEXIST:
        return CLI_USAGE;
    case SP_ENOMEM:
    case SP_EIO:
        return CLI_SYSTEM;
    case SP_EINTERNAL:
        return CLI_INTERNAL;
    }
    return CLI_INTERNAL;
}

int cli_fail(const char *cmd, sp_status rc) {
    fprintf(stderr, "softpipe %s: %s\n", cmd, *sp_errmsg() ? sp_errmsg() : sp_status_name(rc));
    return cli_exit_code(rc);
}

int cli_usage_error(const char *cmd, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "softpipe %s: ", cmd);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n(run 'softpipe %s --help' for usage)\n", cmd);
    return CLI_USAGE;
}

int cli_parse_size(const char *s, uint64_t *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v < 0) return -1;
    double mul = 1;
    if (*end) {
        char u = *end;
        if (u == 'k' || u == 'K')
            mul = 1024.0;
        else if (u == 'm' || u == 'M')
            mul = 1024.0 * 1024;
        else if (u == 'g' || u == 'G')
            mul = 1024.0 * 1024 * 1024;
        else if (u == 't' || u == 'T')
            mul = 1024.0 * 1024 * 1024 * 1024;
        else if (u != 'b' && u != 'B')
            return -1;
        end++;
        if (*end == 'i') end++;
        if (*end == 'B' || *end == 'b') end++;
        if (*end) return -1;
    }
    double b = v * mul;
    if (b > 1.8e19) return -1;
    *out = (uint64_t)b;
    return 0;
}

int cli_parse_int(const char *s, int *out) {
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end || v < 0 || v > 1 << 20) return -1;
    *out = (int)v;
    return 0;
}

const char *cli_human_bytes(double b, char *buf, size_t cap) {
    const char *u[] = {"B", "kB", "MB", "GB", "TB"};
    int i = 0;
    while (b >= 1000 && i < 4) {
        b /= 1000;
        i++;
    }
    snprintf(buf, cap, i ? "%.1f %s" : "%.0f %s", b, u[i]);
    return buf;
}

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double cli_cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void cli_progress_init(cli_progress *p, const char *what, const char *unit) {
    memset(p, 0, sizeof *p);
    p->enabled = isatty(2);
    p->what = what;
    p->unit = unit;
    p->start = cli_now();
}

void cli_progress_update(cli_progress *p, uint64_t done, uint64_t total, uint64_t bytes) {
    if (!p->enabled) return;
    double t = cli_now();
    if (t - p->last_draw < 0.1 && done != total) return;
    p->last_draw = t;
    double el = t - p->start;
    double rate = el > 0 ? (double)done / el : 0, bps = el > 0 ? (double)bytes / el : 0;
    char bar[31];
    int fill = total ? (int)(30.0 * (double)done / (double)total) : 0;
    for (int i = 0; i < 30; i++)
        bar[i] = i < fill ? '#' : '.';
    bar[30] = '\0';
    char hb[32];
    double eta = (rate > 0 && total > done) ? (double)(total - done) / rate : 0;
    if (strcmp(p->unit, "B") == 0)
        fprintf(stderr, "\r%s [%s] %3.0f%%  %s/s  ETA %.0fs   ", p->what, bar,
                total ? 100.0 * (double)done / (double)total : 0.0,
                cli_human_bytes(bps, hb, sizeof hb), eta);
    else
        fprintf(stderr, "\r%s [%s] %llu/%llu  %.0f %s/s  %s/s  ETA %.0fs   ", p->what, bar,
                (unsigned long long)done, (unsigned long long)total, rate, p->unit,
                cli_human_bytes(bps, hb, sizeof hb), eta);
}

void cli_progress_end(cli_progress *p) {
    if (p->enabled && p->last_draw > 0) fprintf(stderr, "\r\033[K");
}

void cli_json_string(FILE *f, const char *s, size_t len) {
    fputc('"', f);
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c == '\t')
            fputs("\\t", f);
        else if (c == '\r')
            fputs("\\r", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

int cli_write_atomic(const char *path, const void *data, size_t len) {
    size_t n = strlen(path) + 32;
    char *tmp = malloc(n);
    if (!tmp) return -1;
    snprintf(tmp, n, "%s.tmp-%ld", path, (long)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        fprintf(stderr, "softpipe: %s: cannot create: %s\n", tmp, strerror(errno));
        free(tmp);
        return -1;
    }
    const char *p = data;
    size_t left = len;
    while (left) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            fprintf(stderr, "softpipe: %s: write failed: %s\n", tmp, strerror(errno));
            close(fd);
            unlink(tmp);
            free(tmp);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    if (fsync(fd) < 0 || close(fd) < 0 || rename(tmp, path) < 0) {
        fprintf(stderr, "softpipe: %s: cannot write: %s\n", path, strerror(errno));
        unlink(tmp);
        free(tmp);
        return -1;
    }
    free(tmp);
    return 0;
}

int cli_parse_remote_opts(const char *cmd, const char *help, int argc, char **argv,
                          cli_remote_opts *o) {
    enum { O_REMOTE = 1000, O_FILE, O_JSON };
    static const struct option longopts[] = {{"remote", required_argument, 0, O_REMOTE},
                                             {"file", required_argument, 0, O_FILE},
                                             {"json", no_argument, 0, O_JSON},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    o->dir = ".";
    o->file = NULL;
    o->remote = getenv("SOFTPIPE_REMOTE");
    o->json = 0;
    int c;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":hC:", longopts, NULL)) != -1) {
        switch (c) {
        case O_REMOTE:
            o->remote = optarg;
            break;
        case 'C':
            o->dir = optarg;
            break;
        case O_FILE:
            o->file = optarg;
            break;
        case O_JSON:
            o->json = 1;
            break;
        case 'h':
            fputs(help, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error(cmd, "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error(cmd, "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (!o->remote || !*o->remote) return cli_usage_error(cmd, "--remote URL is required");
    return -1;
}
