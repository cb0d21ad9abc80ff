/* ingest_restart.c — `pack --restart-markers`: a lossless JPEG transcode (coefficients in,
 * coefficients out, like jpegtran) that puts a restart marker after every MCU row. The loader
 * (src/load/load_decode.c) finds the markers by itself and starts entropy decoding at the first
 * MCU row a crop needs instead of at the top of the image. */
#include "ingest_internal.h"

#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#define RST_MEM_LIMIT (512L << 20) /* libjpeg's coefficient arrays */

typedef struct rst_err {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} rst_err;

static void rst_error_exit(j_common_ptr ci) {
    rst_err *e = (rst_err *)ci->err;
    e->pub.format_message(ci, e->msg);
    longjmp(e->jb, 1);
}

/* As the loader: warnings that mean made-up coefficients (truncation, bad Huffman codes) are
 * errors; harmless metadata warnings are not. */
static void rst_emit(j_common_ptr ci, int level) {
    rst_err *e = (rst_err *)ci->err;
    if (level >= 0) return;
    switch (e->pub.msg_code) {
    case JWRN_EXTRANEOUS_DATA:
    case JWRN_JFIF_MAJOR:
    case JWRN_ADOBE_XFORM:
    case JWRN_BOGUS_ICC:
    case JWRN_BOGUS_PROGRESSION:
        e->pub.num_warnings++;
        return;
    default:
        e->pub.format_message(ci, e->msg);
        longjmp(e->jb, 1);
    }
}

static void rst_output(j_common_ptr ci) {
    (void)ci; /* never print */
}

/* A growing memory destination (jpeg_mem_dest's buffer would dangle after an error). */
typedef struct rst_dest {
    struct jpeg_destination_mgr pub;
    uint8_t *buf;
    size_t cap, len;
} rst_dest;

static void dest_init(j_compress_ptr ci) {
    rst_dest *d = (rst_dest *)ci->dest;
    d->pub.next_output_byte = d->buf;
    d->pub.free_in_buffer = d->cap;
}

static boolean dest_empty(j_compress_ptr ci) {
    rst_dest *d = (rst_dest *)ci->dest;
    size_t used = d->cap; /* libjpeg only calls this with a full buffer */
    size_t cap = d->cap * 2;
    uint8_t *p = sp__realloc(d->buf, cap);
    if (!p) ERREXIT1(ci, JERR_OUT_OF_MEMORY, 0);
    d->buf = p;
    d->cap = cap;
    d->pub.next_output_byte = p + used;
    d->pub.free_in_buffer = cap - used;
    return TRUE;
}

static void dest_term(j_compress_ptr ci) {
    rst_dest *d = (rst_dest *)ci->dest;
    d->len = d->cap - d->pub.free_in_buffer;
}

typedef struct rst_job {
    struct jpeg_decompress_struct src;
    struct jpeg_compress_struct dst;
    rst_err err;
    int have_src, have_dst;
    rst_dest out;
} rst_job;

/* The part that may longjmp. Returns 1 when the output was written, 0 to keep the input. */
static int transcode(rst_job *j, const uint8_t *data, size_t len) {
    jpeg_create_decompress(&j->src);
    j->have_src = 1;
    j->src.mem->max_memory_to_use = RST_MEM_LIMIT;
    jpeg_mem_src(&j->src, data, (unsigned long)len);
    jpeg_save_markers(&j->src, JPEG_APP0 + 2, 0xFFFF); /* ICC profile chunks */
    jpeg_read_header(&j->src, TRUE);
    if (j->src.progressive_mode || j->src.arith_code || j->src.restart_interval != 0) return 0;
    jvirt_barray_ptr *coefs = jpeg_read_coefficients(&j->src);

    jpeg_create_compress(&j->dst);
    j->have_dst = 1;
    j->dst.mem->max_memory_to_use = RST_MEM_LIMIT;
    jpeg_copy_critical_parameters(&j->src, &j->dst);
    j->dst.optimize_coding = TRUE; /* the source's tables are not copied; keep the file small */
    j->dst.restart_interval = 0;
    j->dst.restart_in_rows = 1;
    j->out.cap = len + len / 8 + 4096;
    j->out.buf = sp__malloc(j->out.cap);
    if (!j->out.buf) ERREXIT1(&j->dst, JERR_OUT_OF_MEMORY, 0);
    j->out.pub.init_destination = dest_init;
    j->out.pub.empty_output_buffer = dest_empty;
    j->out.pub.term_destination = dest_term;
    j->dst.dest = &j->out.pub;
    jpeg_write_coefficients(&j->dst, coefs);
    for (jpeg_saved_marker_ptr m = j->src.marker_list; m; m = m->next)
        if (m->marker == JPEG_APP0 + 2 && m->data_length >= 12 &&
            !memcmp(m->data, "ICC_PROFILE", 12))
            jpeg_write_marker(&j->dst, m->marker, m->data, m->data_length);
    jpeg_finish_compress(&j->dst);
    jpeg_finish_decompress(&j->src);
    return 1;
}

sp_status sp__jpeg_add_restarts(const char *name, const uint8_t *data, size_t len, uint8_t **out,
                                size_t *out_len) {
    *out = NULL;
    *out_len = 0;
    if (len < 3 || data[0] != 0xFF || data[1] != 0xD8 || data[2] != 0xFF) return SP_OK;
    rst_job *j = sp__calloc(1, sizeof *j);
    if (!j) return sp__fail(SP_ENOMEM, "%s: out of memory for a JPEG transcode", name);
    j->src.err = jpeg_std_error(&j->err.pub);
    j->dst.err = &j->err.pub;
    j->err.pub.error_exit = rst_error_exit;
    j->err.pub.emit_message = rst_emit;
    j->err.pub.output_message = rst_output;
    sp_status rc = SP_OK;
    if (setjmp(j->err.jb)) {
        int code = j->err.pub.msg_code;
        if (code == JERR_OUT_OF_MEMORY)
            rc = sp__fail(SP_ENOMEM, "%s: out of memory adding restart markers", name);
        else if (code == JERR_NO_BACKING_STORE)
            rc = sp__fail(SP_EBADINPUT, "%s: JPEG needs more than %ld MiB to add restart markers",
                          name, RST_MEM_LIMIT >> 20);
        else
            rc = sp__fail(SP_EBADINPUT, "%s: bad JPEG (adding restart markers): %s", name,
                          j->err.msg);
    } else if (transcode(j, data, len)) {
        *out = j->out.buf;
        *out_len = j->out.len;
        j->out.buf = NULL;
    }
    if (j->have_dst) jpeg_destroy_compress(&j->dst);
    if (j->have_src) jpeg_destroy_decompress(&j->src);
    sp__free(j->out.buf);
    sp__free(j);
    return rc;
}
