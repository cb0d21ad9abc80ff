/* core_array.c — the dtype vocabulary and array views shared by every module that reads
 * outside arrays (sp_array in core.h), and sp__parallel, the one fan-out helper for modules
 * whose work splits into a fixed number of equal parts (sorting, bootstrap replicates). */
#include "core_internal.h"

#include <math.h>
#include <pthread.h>

size_t sp_dtype_size(sp_dtype dtype) {
    switch (dtype) {
    case SP_DTYPE_BOOL:
    case SP_DTYPE_INT8:
    case SP_DTYPE_UINT8:
        return 1;
    case SP_DTYPE_INT16:
    case SP_DTYPE_UINT16:
    case SP_DTYPE_FLOAT16:
        return 2;
    case SP_DTYPE_INT32:
    case SP_DTYPE_UINT32:
    case SP_DTYPE_FLOAT32:
        return 4;
    case SP_DTYPE_INT64:
    case SP_DTYPE_UINT64:
    case SP_DTYPE_FLOAT64:
        return 8;
    }
    return 0;
}

const char *sp_dtype_name(sp_dtype dtype) {
    switch (dtype) {
    case SP_DTYPE_BOOL:
        return "bool";
    case SP_DTYPE_INT8:
        return "int8";
    case SP_DTYPE_UINT8:
        return "uint8";
    case SP_DTYPE_INT16:
        return "int16";
    case SP_DTYPE_UINT16:
        return "uint16";
    case SP_DTYPE_INT32:
        return "int32";
    case SP_DTYPE_UINT32:
        return "uint32";
    case SP_DTYPE_INT64:
        return "int64";
    case SP_DTYPE_UINT64:
        return "uint64";
    case SP_DTYPE_FLOAT32:
        return "float32";
    case SP_DTYPE_FLOAT16:
        return "float16";
    case SP_DTYPE_FLOAT64:
        return "float64";
    }
    return "unknown";
}

sp_array sp_array_1d(const void *data, sp_dtype dtype, uint64_t n) {
    sp_array a = {0};
    a.data = data;
    a.dtype = dtype;
    a.ndim = 1;
    a.shape[0] = n;
    a.strides[0] = (int64_t)sp_dtype_size(dtype);
    return a;
}

sp_array sp_array_2d(const void *data, sp_dtype dtype, uint64_t rows, uint64_t cols) {
    sp_array a = {0};
    a.data = data;
    a.dtype = dtype;
    a.ndim = 2;
    a.shape[0] = rows;
    a.shape[1] = cols;
    a.strides[1] = (int64_t)sp_dtype_size(dtype);
    a.strides[0] = a.strides[1] * (int64_t)cols;
    return a;
}

static double half_to_double(uint16_t h) {
    int e = (h >> 10) & 0x1f, m = h & 0x3ff;
    double v = e == 0 ? ldexp(m, -24) : e == 31 ? (m ? NAN : INFINITY) : ldexp(m + 1024, e - 25);
    return (h & 0x8000) ? -v : v;
}

double sp_array_get_f64(const sp_array *a, uint64_t i, uint64_t j) {
    const char *p = (const char *)a->data + (int64_t)i * a->strides[0];
    if (a->ndim == 2) p += (int64_t)j * a->strides[1];
    switch (a->dtype) {
    case SP_DTYPE_BOOL:
    case SP_DTYPE_UINT8:
        return *(const uint8_t *)p;
    case SP_DTYPE_INT8:
        return *(const int8_t *)p;
    case SP_DTYPE_INT16:
        return *(const int16_t *)(const void *)p;
    case SP_DTYPE_UINT16:
        return *(const uint16_t *)(const void *)p;
    case SP_DTYPE_INT32:
        return *(const int32_t *)(const void *)p;
    case SP_DTYPE_UINT32:
        return *(const uint32_t *)(const void *)p;
    case SP_DTYPE_INT64:
        return (double)*(const int64_t *)(const void *)p;
    case SP_DTYPE_UINT64:
        return (double)*(const uint64_t *)(const void *)p;
    case SP_DTYPE_FLOAT16:
        return half_to_double(*(const uint16_t *)(const void *)p);
    case SP_DTYPE_FLOAT32:
        return *(const float *)(const void *)p;
    case SP_DTYPE_FLOAT64:
        return *(const double *)(const void *)p;
    }
    return NAN;
}

typedef struct par_arg {
    void (*fn)(void *ctx, int t, int n);
    void *ctx;
    int t, n;
} par_arg;

static void *par_main(void *p) {
    par_arg *a = p;
    a->fn(a->ctx, a->t, a->n);
    return NULL;
}

void sp__parallel(int n_threads, void (*fn)(void *ctx, int t, int n_threads), void *ctx) {
    enum { MAX = 256 };
    if (n_threads < 1) n_threads = 1;
    if (n_threads > MAX) n_threads = MAX;
    pthread_t tid[MAX];
    par_arg arg[MAX];
    int started[MAX] = {0};
    for (int t = 1; t < n_threads; t++) {
        arg[t] = (par_arg){fn, ctx, t, n_threads};
        started[t] = pthread_create(&tid[t], NULL, par_main, &arg[t]) == 0;
    }
    fn(ctx, 0, n_threads);
    for (int t = 1; t < n_threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            fn(ctx, t, n_threads);
    }
}
