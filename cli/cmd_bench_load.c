/* cmd_bench_load.c — `softpipe bench-load DATASET`: runs the loader as fast as it goes, with no
 * consumer work, and reports images/s, the first batch's latency and the loader's telemetry. */
#include "cli.h"

#include <getopt.h>
#include <stdlib.h>
#include <string.h>

static const char HELP[] =
    "usage: softpipe bench-load DATASET [options]\n"
    "\n"
    "Reads DATASET through the loader (decode, crop, resize, flip, normalize, batch) and reports\n"
    "images/s, the time to the first batch, and where the time went.\n"
    "\n"
    "options:\n"
    "      --batch-size N     (256)\n"
    "      --size N           output height and width (224)\n"
    "      --crop C           random_resized (default) | center | none\n"
    "      --dtype T          float32 (default) | float16 | uint8\n"
    "      --layout L         NCHW (default) | NHWC\n"
    "      --shuffle S        global (default) | block | none\n"
    "      --threads N        worker threads (default: all cores)\n"
    "      --prefetch N       batches decoded ahead (default: threads + 1)\n"
    "      --epochs N         epochs to run (1)\n"
    "      --batches N        stop after N batches (default: whole epochs)\n"
    "      --filter EXPR      e.g. 'label in {1, 3}'\n"
    "      --decode D         accurate (default) | fast\n"
    "      --no-crop-decode   decode whole images, then crop\n"
    "      --no-dct-scale     decode at full size\n"
    "      --seed N\n"
    "      --json             print the report as JSON on stdout\n"
    "  -h, --help             this help\n";

static int pick(const char *v, const char *const *names, int n, int *out) {
    for (int i = 0; i < n; i++)
        if (!strcmp(v, names[i])) {
            *out = i;
            return 0;
        }
    return -1;
}

int cmd_bench_load(int argc, char **argv) {
    static const struct option longopts[] = {{"batch-size", required_argument, 0, 'b'},
                                             {"size", required_argument, 0, 's'},
                                             {"crop", required_argument, 0, 'c'},
                                             {"dtype", required_argument, 0, 'd'},
                                             {"layout", required_argument, 0, 'l'},
                                             {"shuffle", required_argument, 0, 'S'},
                                             {"threads", required_argument, 0, 't'},
                                             {"epochs", required_argument, 0, 'e'},
                                             {"batches", required_argument, 0, 'n'},
                                             {"filter", required_argument, 0, 'f'},
                                             {"decode", required_argument, 0, 'D'},
                                             {"no-crop-decode", no_argument, 0, 'C'},
                                             {"no-dct-scale", no_argument, 0, 'Z'},
                                             {"seed", required_argument, 0, 'r'},
                                             {"prefetch", required_argument, 0, 'p'},
                                             {"json", no_argument, 0, 'j'},
                                             {"help", no_argument, 0, 'h'},
                                             {0, 0, 0, 0}};
    static const char *crops[] = {"random_resized", "center", "none"};
    static const char *dtypes[] = {"uint8", "float32", "float16"};
    static const char *layouts[] = {"NCHW", "NHWC"};
    static const char *shuffles[] = {"global", "block", "none"};
    static const char *decodes[] = {"accurate", "fast"};
    sp_loader_opts o;
    sp_loader_opts_init(&o);
    int json = 0, c, epochs = 1, v, max_batches = 0;
    optind = 1;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cli_parse_int(optarg, &v) || v < 1)
                return cli_usage_error("bench-load",
                                       "--batch-size '%s': expected a positive number", optarg);
            o.batch_size = (uint32_t)v;
            break;
        case 's':
            if (cli_parse_int(optarg, &v) || v < 1 || v > 8192)
                return cli_usage_error("bench-load", "--size '%s': expected 1..8192", optarg);
            o.out_h = o.out_w = (uint32_t)v;
            break;
        case 'c':
            if (pick(optarg, crops, 3, &v))
                return cli_usage_error("bench-load", "--crop '%s'?", optarg);
            o.crop = (sp_crop)v;
            break;
        case 'd':
            if (pick(optarg, dtypes, 3, &v))
                return cli_usage_error("bench-load", "--dtype '%s'?", optarg);
            o.dtype = (sp_dtype)v;
            break;
        case 'l':
            if (pick(optarg, layouts, 2, &v))
                return cli_usage_error("bench-load", "--layout '%s'?", optarg);
            o.layout = (sp_layout)v;
            break;
        case 'S':
            if (pick(optarg, shuffles, 3, &v))
                return cli_usage_error("bench-load", "--shuffle '%s'?", optarg);
            o.shuffle = (sp_shuffle)v;
            break;
        case 'D':
            if (pick(optarg, decodes, 2, &v))
                return cli_usage_error("bench-load", "--decode '%s'?", optarg);
            o.decode = (sp_decode_mode)v;
            break;
        case 't':
            if (cli_parse_int(optarg, &o.threads) || o.threads > 256)
                return cli_usage_error("bench-load", "--threads '%s': expected 0..256", optarg);
            break;
        case 'e':
            if (cli_parse_int(optarg, &epochs) || epochs < 1)
                return cli_usage_error("bench-load", "--epochs '%s': expected a positive number",
                                       optarg);
            break;
        case 'n':
            if (cli_parse_int(optarg, &max_batches) || max_batches < 1)
                return cli_usage_error("bench-load", "--batches '%s': expected a positive number",
                                       optarg);
            break;
        case 'r':
            o.seed = strtoull(optarg, NULL, 10);
            break;
        case 'p':
            if (cli_parse_int(optarg, &v) || v < 1)
                return cli_usage_error("bench-load", "--prefetch '%s': expected a positive number",
                                       optarg);
            o.prefetch = (uint32_t)v;
            break;
        case 'f':
            o.filter = optarg;
            break;
        case 'C':
            o.no_crop_decode = 1;
            break;
        case 'Z':
            o.no_dct_scale = 1;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(HELP, stdout);
            return CLI_OK;
        case ':':
            return cli_usage_error("bench-load", "%s needs a value", argv[optind - 1]);
        default:
            return cli_usage_error("bench-load", "unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind != argc - 1) return cli_usage_error("bench-load", "expected one DATASET");
    double t0 = cli_now(), c0 = cli_cpu_seconds();
    sp_loader *ld;
    sp_status rc = sp_loader_open(argv[optind], &o, &ld);
    if (rc < 0) return cli_fail("bench-load", rc);
    cli_progress pr;
    cli_progress_init(&pr, "loading", "img");
    double first = 0;
    uint64_t images = 0, batches = 0, total = sp_loader_len(ld) * (uint64_t)epochs;
    if (max_batches && (uint64_t)max_batches < total) total = (uint64_t)max_batches;
    for (int e = 0; e < epochs && rc >= 0 && batches < total; e++) {
        if (e > 0) sp_loader_set_epoch(ld, (uint64_t)e);
        const sp_batch *b;
        while (batches < total && (rc = sp_loader_next(ld, &b)) == SP_OK) {
            if (first == 0) first = cli_now() - t0;
            images += b->n;
            batches++;
            sp_loader_release(ld, b);
            cli_progress_update(&pr, batches, total, images);
        }
    }
    cli_progress_end(&pr);
    double wall = cli_now() - t0, cpu = cli_cpu_seconds() - c0;
    if (rc < 0) {
        int code = cli_fail("bench-load", rc);
        sp_loader_close(ld);
        return code;
    }
    sp_loader_stats st;
    sp_loader_stats_get(ld, &st);
    if (json) {
        printf("{\"images\": %llu, \"batches\": %llu, \"seconds\": %.4f, \"images_per_s\": %.1f, "
               "\"first_batch_s\": %.4f, \"cpu_s\": %.3f, \"cpu_ms_per_image\": %.4f, "
               "\"read_s\": %.3f, \"decode_s\": %.3f, \"augment_s\": %.3f, \"wait_s\": %.3f, "
               "\"stall_share\": %.4f, \"bytes_read\": %llu, \"blocks_total\": %llu, "
               "\"blocks_skipped\": %llu, \"samples_skipped_bad\": %llu, \"mem_usage\": %zu, "
               "\"threads\": %d}\n",
               (unsigned long long)images, (unsigned long long)batches, wall,
               wall > 0 ? (double)images / wall : 0.0, first, cpu,
               images ? 1000.0 * cpu / (double)images : 0.0, st.read_s, st.decode_s, st.augment_s,
               st.wait_s, st.stall_share, (unsigned long long)st.bytes_read,
               (unsigned long long)st.blocks_total, (unsigned long long)st.blocks_skipped,
               (unsigned long long)st.samples_skipped_bad, sp_loader_mem_usage(ld), o.threads);
    } else {
        char hb[32];
        printf("%llu images in %llu batches, %.2f s: %.0f img/s (first batch after %.3f s)\n",
               (unsigned long long)images, (unsigned long long)batches, wall,
               wall > 0 ? (double)images / wall : 0.0, first);
        printf("cpu %.2f s (%.3f ms/image); workers: read %.2f s, decode %.2f s, augment %.2f s;"
               " consumer waited %.2f s (%.0f%% of wall)\n",
               cpu, images ? 1000.0 * cpu / (double)images : 0.0, st.read_s, st.decode_s,
               st.augment_s, st.wait_s, 100.0 * st.stall_share);
        printf("read %s; blocks skipped by filter %llu of %llu; bad samples skipped %llu\n",
               cli_human_bytes((double)st.bytes_read, hb, sizeof hb),
               (unsigned long long)st.blocks_skipped, (unsigned long long)st.blocks_total,
               (unsigned long long)st.samples_skipped_bad);
        for (size_t i = 0; i < 5; i++) {
            const char *m = sp_loader_skipped(ld, i);
            if (!m) break;
            printf("  skipped %s\n", m);
        }
    }
    sp_loader_close(ld);
    return CLI_OK;
}
