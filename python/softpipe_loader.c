/* softpipe_loader.c — the Python face of the loader: softpipe._Loader, and the arrays it hands
 * out. A batch's memory belongs to the loader; each array handed to Python (images, labels) holds
 * a reference to a BatchRef, and the batch goes back to the loader (sp_loader_release) only when
 * the last array — or the last DLPack consumer, e.g. a torch tensor — lets go. No copies: torch
 * and NumPy view the batch memory through DLPack (__dlpack__) or the buffer protocol. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>
#include <string.h>

PyObject *sppy_raise(sp_status rc);
int sppy_loader_init(PyObject *m);

/* ------------------------------------------------------------------ DLPack (ABI v0.x) */

typedef struct {
    int32_t device_type; /* kDLCPU = 1 */
    int32_t device_id;
} DLDevice;
typedef struct {
    uint8_t code; /* 0 int, 1 uint, 2 float */
    uint8_t bits;
    uint16_t lanes;
} DLDataType;
typedef struct {
    void *data;
    DLDevice device;
    int32_t ndim;
    DLDataType dtype;
    int64_t *shape;
    int64_t *strides; /* NULL: compact row-major */
    uint64_t byte_offset;
} DLTensor;
typedef struct DLManagedTensor {
    DLTensor dl_tensor;
    void *manager_ctx;
    void (*deleter)(struct DLManagedTensor *self);
} DLManagedTensor;

/* ------------------------------------------------------------------ loader object */

typedef struct {
    PyObject_HEAD sp_loader *ld;
    Py_ssize_t live_batches; /* BatchRefs alive */
    int closing;             /* close() asked while batches were alive */
} LoaderObject;

static void really_close(LoaderObject *self) {
    sp_loader *ld = self->ld;
    self->ld = NULL;
    if (ld) {
        Py_BEGIN_ALLOW_THREADS sp_loader_close(ld);
        Py_END_ALLOW_THREADS
    }
}

typedef struct {
    PyObject_HEAD PyObject *loader; /* keeps the loader (and its memory) alive */
    const sp_batch *batch;
} BatchRefObject;

/* An n-dimensional array view of part of a batch. */
typedef struct {
    PyObject_HEAD PyObject *ref; /* BatchRefObject */
    void *data;
    int ndim;
    Py_ssize_t shape[4], strides[4];
    int64_t shape64[4];
    char format[2];
    Py_ssize_t itemsize;
    DLDataType dl;
    Py_ssize_t exports;
} ArrayObject;

static PyTypeObject LoaderType, BatchRefType, ArrayType;

static void batchref_dealloc(PyObject *obj) {
    BatchRefObject *self = (BatchRefObject *)obj;
    LoaderObject *lo = (LoaderObject *)self->loader;
    if (lo) {
        if (lo->ld && self->batch) sp_loader_release(lo->ld, self->batch);
        if (--lo->live_batches == 0 && lo->closing) really_close(lo);
    }
    Py_XDECREF(self->loader);
    Py_TYPE(obj)->tp_free(obj);
}

static PyTypeObject BatchRefType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._BatchRef",
    .tp_basicsize = sizeof(BatchRefObject),
    .tp_dealloc = batchref_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Holds one loader batch until every array viewing it is gone.",
};

static void array_dealloc(PyObject *obj) {
    ArrayObject *self = (ArrayObject *)obj;
    Py_XDECREF(self->ref);
    Py_TYPE(obj)->tp_free(obj);
}

static int array_getbuffer(PyObject *obj, Py_buffer *view, int flags) {
    ArrayObject *self = (ArrayObject *)obj;
    if (flags & PyBUF_WRITABLE) {
        /* writable: a training step may normalize in place; the memory is the batch's own */
    }
    view->buf = self->data;
    view->obj = Py_NewRef(obj);
    view->len = self->itemsize;
    for (int i = 0; i < self->ndim; i++)
        view->len *= self->shape[i];
    view->readonly = 0;
    view->itemsize = self->itemsize;
    view->format = (flags & PyBUF_FORMAT) ? self->format : NULL;
    view->ndim = self->ndim;
    view->shape = (flags & PyBUF_ND) ? self->shape : NULL;
    view->strides = (flags & PyBUF_STRIDES) == PyBUF_STRIDES ? self->strides : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    self->exports++;
    return 0;
}

static void array_releasebuffer(PyObject *obj, Py_buffer *view) {
    (void)view;
    ((ArrayObject *)obj)->exports--;
}

static PyBufferProcs array_as_buffer = {array_getbuffer, array_releasebuffer};

static void dl_deleter(DLManagedTensor *t) {
    PyGILState_STATE st = PyGILState_Ensure();
    Py_XDECREF((PyObject *)t->manager_ctx);
    PyGILState_Release(st);
    PyMem_RawFree(t);
}

static void capsule_destructor(PyObject *cap) {
    /* still named "dltensor": nobody consumed it, so we own it */
    if (PyCapsule_IsValid(cap, "dltensor")) {
        DLManagedTensor *t = PyCapsule_GetPointer(cap, "dltensor");
        if (t && t->deleter) t->deleter(t);
    }
}

static PyObject *array_dlpack(PyObject *obj, PyObject *args, PyObject *kwargs) {
    (void)args;
    (void)kwargs; /* stream: CPU memory needs no synchronization */
    ArrayObject *self = (ArrayObject *)obj;
    DLManagedTensor *t = PyMem_RawCalloc(1, sizeof *t);
    if (!t) return PyErr_NoMemory();
    t->dl_tensor.data = self->data;
    t->dl_tensor.device.device_type = 1;
    t->dl_tensor.ndim = self->ndim;
    t->dl_tensor.dtype = self->dl;
    t->dl_tensor.shape = self->shape64; /* lives as long as the array, which manager_ctx holds */
    t->dl_tensor.strides = NULL;
    t->manager_ctx = Py_NewRef(obj);
    t->deleter = dl_deleter;
    PyObject *cap = PyCapsule_New(t, "dltensor", capsule_destructor);
    if (!cap) {
        Py_DECREF(obj);
        PyMem_RawFree(t);
    }
    return cap;
}

static PyObject *array_dlpack_device(PyObject *obj, PyObject *unused) {
    (void)obj;
    (void)unused;
    return Py_BuildValue("(ii)", 1, 0);
}

static PyObject *array_get_shape(PyObject *obj, void *closure) {
    (void)closure;
    ArrayObject *self = (ArrayObject *)obj;
    PyObject *t = PyTuple_New(self->ndim);
    for (int i = 0; t && i < self->ndim; i++)
        PyTuple_SET_ITEM(t, i, PyLong_FromSsize_t(self->shape[i]));
    return t;
}

static PyObject *array_get_format(PyObject *obj, void *closure) {
    (void)closure;
    return PyUnicode_FromString(((ArrayObject *)obj)->format);
}

static PyObject *array_get_address(PyObject *obj, void *closure) {
    (void)closure;
    return PyLong_FromVoidPtr(((ArrayObject *)obj)->data);
}

static PyMethodDef array_methods[] = {
    {"__dlpack__", (PyCFunction)(void (*)(void))array_dlpack, METH_VARARGS | METH_KEYWORDS,
     "DLPack capsule of this array (CPU, no copy)."},
    {"__dlpack_device__", array_dlpack_device, METH_NOARGS, "(kDLCPU, 0)"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef array_getset[] = {
    {"shape", array_get_shape, NULL, "shape tuple", NULL},
    {"format", array_get_format, NULL, "struct format of one element", NULL},
    {"address", array_get_address, NULL, "address of the first element (for tests)", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject ArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe.BatchArray",
    .tp_basicsize = sizeof(ArrayObject),
    .tp_dealloc = array_dealloc,
    .tp_as_buffer = &array_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A view of batch memory (buffer protocol and DLPack); keeps the batch alive.",
    .tp_methods = array_methods,
    .tp_getset = array_getset,
};

static PyObject *make_array(PyObject *ref, void *data, int ndim, const Py_ssize_t *shape,
                            const char *format, Py_ssize_t itemsize, DLDataType dl) {
    ArrayObject *a = PyObject_New(ArrayObject, &ArrayType);
    if (!a) return NULL;
    a->ref = Py_NewRef(ref);
    a->data = data;
    a->ndim = ndim;
    a->itemsize = itemsize;
    a->dl = dl;
    a->exports = 0;
    snprintf(a->format, sizeof a->format, "%s", format);
    Py_ssize_t stride = itemsize;
    for (int i = ndim - 1; i >= 0; i--) {
        a->shape[i] = shape[i];
        a->shape64[i] = shape[i];
        a->strides[i] = stride;
        stride *= shape[i];
    }
    return (PyObject *)a;
}

/* ------------------------------------------------------------------ _Loader */

static int parse_enum(PyObject *v, const char *what, const char *const *names, int n, int *out) {
    if (!v || v == Py_None) return 0;
    const char *s = PyUnicode_AsUTF8(v);
    if (!s) return -1;
    for (int i = 0; i < n; i++)
        if (!strcmp(s, names[i])) {
            *out = i;
            return 0;
        }
    PyErr_Format(PyExc_ValueError, "%s=%R: expected one of %s%s%s%s%s", what, v, names[0],
                 n > 1 ? ", " : "", n > 1 ? names[1] : "", n > 2 ? ", " : "",
                 n > 2 ? names[2] : "");
    return -1;
}

static int parse_pair(PyObject *v, const char *what, double *a, double *b) {
    if (!v || v == Py_None) return 0;
    if (!PyArg_ParseTuple(v, "dd", a, b)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s=%R: expected a pair of numbers", what, v);
        return -1;
    }
    return 0;
}

static int parse_triple(PyObject *v, const char *what, float out[3]) {
    if (!v || v == Py_None) return 0;
    double a, b, c;
    if (!PyArg_ParseTuple(v, "ddd", &a, &b, &c)) {
        PyErr_Clear();
        PyErr_Format(PyExc_ValueError, "%s=%R: expected three numbers", what, v);
        return -1;
    }
    out[0] = (float)a, out[1] = (float)b, out[2] = (float)c;
    return 0;
}

static PyObject *loader_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {
        "path",      "batch_size",  "size",       "crop",       "scale",    "ratio",  "flip",
        "normalize", "mean",        "std",        "dtype",      "layout",   "seed",   "shuffle",
        "drop_last", "rank",        "world_size", "threads",    "prefetch", "filter", "on_error",
        "decode",    "crop_decode", "dct_scale",  "mem_budget", NULL};
    PyObject *path = NULL, *size = NULL, *crop = NULL, *scale = NULL, *ratio = NULL, *mean = NULL,
             *std = NULL, *dtype = NULL, *layout = NULL, *shuffle = NULL, *on_error = NULL,
             *decode = NULL;
    sp_loader_opts o;
    sp_loader_opts_init(&o);
    unsigned int batch_size = 256, rank = 0, world = 1, prefetch = 0;
    double flip = 0.5;
    int normalize = 1, drop_last = 0, threads = 0, crop_decode = 1, dct_scale = 1;
    unsigned long long seed = 0, mem_budget = 0;
    const char *filter = NULL;
    if (!PyArg_ParseTupleAndKeywords(
            args, kwargs, "O&|$IOOOOdpOOOOKOpIIiIzOOppK", kw, PyUnicode_FSConverter, &path,
            &batch_size, &size, &crop, &scale, &ratio, &flip, &normalize, &mean, &std, &dtype,
            &layout, &seed, &shuffle, &drop_last, &rank, &world, &threads, &prefetch, &filter,
            &on_error, &decode, &crop_decode, &dct_scale, &mem_budget))
        return NULL;
    static const char *crops[] = {"random_resized", "center", "none"};
    static const char *dtypes[] = {"uint8", "float32", "float16"};
    static const char *layouts[] = {"NCHW", "NHWC"};
    static const char *shuffles[] = {"global", "block", "none"};
    static const char *errors[] = {"skip", "fail"};
    static const char *decodes[] = {"accurate", "fast"};
    int e_crop = 0, e_dtype = 1, e_layout = 0, e_shuffle = 0, e_err = 0, e_dec = 0;
    int rc = 0;
    if (size && size != Py_None) {
        if (PyLong_Check(size)) {
            long v = PyLong_AsLong(size);
            if (v <= 0 || v > 8192) {
                PyErr_Format(PyExc_ValueError, "size=%R: expected 1..8192", size);
                rc = -1;
            }
            o.out_h = o.out_w = (uint32_t)v;
        } else {
            int h, w;
            if (!PyArg_ParseTuple(size, "ii", &h, &w) || h <= 0 || w <= 0) {
                PyErr_Clear();
                PyErr_Format(PyExc_ValueError, "size=%R: expected an int or (height, width)", size);
                rc = -1;
            }
            o.out_h = (uint32_t)h, o.out_w = (uint32_t)w;
        }
    }
    if (rc == 0)
        rc = parse_enum(crop, "crop", crops, 3, &e_crop) ||
             parse_enum(dtype, "dtype", dtypes, 3, &e_dtype) ||
             parse_enum(layout, "layout", layouts, 2, &e_layout) ||
             parse_enum(shuffle, "shuffle", shuffles, 3, &e_shuffle) ||
             parse_enum(on_error, "on_error", errors, 2, &e_err) ||
             parse_enum(decode, "decode", decodes, 2, &e_dec) ||
             parse_pair(scale, "scale", &o.scale_min, &o.scale_max) ||
             parse_pair(ratio, "ratio", &o.ratio_min, &o.ratio_max) ||
             parse_triple(mean, "mean", o.mean) || parse_triple(std, "std", o.std);
    if (rc) {
        Py_DECREF(path);
        return NULL;
    }
    o.batch_size = batch_size;
    o.crop = (sp_crop)e_crop;
    o.flip = flip;
    o.normalize = normalize;
    o.dtype = (sp_dtype)e_dtype;
    o.layout = (sp_layout)e_layout;
    o.seed = seed;
    o.shuffle = (sp_shuffle)e_shuffle;
    o.drop_last = drop_last;
    o.rank = rank;
    o.world_size = world;
    o.threads = threads;
    o.prefetch = prefetch;
    o.filter = filter;
    o.fail_on_error = e_err;
    o.decode = (sp_decode_mode)e_dec;
    o.no_crop_decode = !crop_decode;
    o.no_dct_scale = !dct_scale;
    o.mem_budget = (size_t)mem_budget;
    LoaderObject *self = (LoaderObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(path);
        return NULL;
    }
    sp_status st;
    const char *p = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS st = sp_loader_open(p, &o, &self->ld);
    Py_END_ALLOW_THREADS Py_DECREF(path);
    if (st < 0) {
        Py_DECREF(self);
        return sppy_raise(st);
    }
    return (PyObject *)self;
}

static void loader_dealloc(PyObject *obj) {
    really_close((LoaderObject *)obj);
    Py_TYPE(obj)->tp_free(obj);
}

static int check_open(LoaderObject *self) {
    if (!self->ld || self->closing) {
        PyErr_SetString(PyExc_ValueError, "loader is closed");
        return -1;
    }
    return 0;
}

/* _next() -> (images, labels, ids) arrays, or None at the end of the epoch. */
static PyObject *loader_next_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    const sp_batch *b = NULL;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS rc = sp_loader_next(self->ld, &b);
    Py_END_ALLOW_THREADS if (rc < 0) return sppy_raise(rc);
    if (rc == SP_DONE) Py_RETURN_NONE;
    BatchRefObject *ref = PyObject_New(BatchRefObject, &BatchRefType);
    if (!ref) {
        sp_loader_release(self->ld, b);
        return NULL;
    }
    ref->loader = Py_NewRef(obj);
    ref->batch = b;
    self->live_batches++;
    Py_ssize_t shape[4];
    shape[0] = b->n;
    if (b->layout == SP_LAYOUT_NCHW)
        shape[1] = b->c, shape[2] = b->h, shape[3] = b->w;
    else
        shape[1] = b->h, shape[2] = b->w, shape[3] = b->c;
    const char *fmt = b->dtype == SP_DTYPE_UINT8 ? "B" : b->dtype == SP_DTYPE_FLOAT16 ? "e" : "f";
    Py_ssize_t isz = b->dtype == SP_DTYPE_UINT8 ? 1 : b->dtype == SP_DTYPE_FLOAT16 ? 2 : 4;
    DLDataType dl = {b->dtype == SP_DTYPE_UINT8 ? 1 : 2, (uint8_t)(isz * 8), 1};
    PyObject *images = make_array((PyObject *)ref, b->data, 4, shape, fmt, isz, dl);
    Py_ssize_t n = b->n;
    DLDataType dli = {0, 64, 1}, dlu = {1, 64, 1};
    PyObject *labels = make_array((PyObject *)ref, b->labels, 1, &n, "q", 8, dli);
    PyObject *ids = make_array((PyObject *)ref, b->ids, 1, &n, "Q", 8, dlu);
    Py_DECREF(ref);
    if (!images || !labels || !ids) {
        Py_XDECREF(images);
        Py_XDECREF(labels);
        Py_XDECREF(ids);
        return NULL;
    }
    PyObject *t = PyTuple_Pack(3, images, labels, ids);
    Py_DECREF(images);
    Py_DECREF(labels);
    Py_DECREF(ids);
    return t;
}

static PyObject *loader_len_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(sp_loader_len(self->ld));
}

static PyObject *loader_set_epoch_m(PyObject *obj, PyObject *arg) {
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    unsigned long long e = PyLong_AsUnsignedLongLong(arg);
    if (PyErr_Occurred()) return NULL;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS rc = sp_loader_set_epoch(self->ld, e);
    Py_END_ALLOW_THREADS if (rc < 0) return sppy_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *loader_state_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    sp_loader_state st;
    sp_loader_state_get(self->ld, &st);
    return Py_BuildValue("{s:K,s:K,s:K,s:I,s:I}", "seed", (unsigned long long)st.seed, "epoch",
                         (unsigned long long)st.epoch, "batches", (unsigned long long)st.batches,
                         "rank", st.rank, "world_size", st.world_size);
}

static PyObject *loader_restore_m(PyObject *obj, PyObject *d) {
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    sp_loader_state st;
    memset(&st, 0, sizeof st);
    const char *keys[] = {"seed", "epoch", "batches", "rank", "world_size"};
    unsigned long long v[5];
    for (int i = 0; i < 5; i++) {
        PyObject *x = PyDict_Check(d) ? PyDict_GetItemString(d, keys[i]) : NULL;
        if (!x) {
            PyErr_Format(PyExc_ValueError, "state_dict is missing \"%s\"", keys[i]);
            return NULL;
        }
        v[i] = PyLong_AsUnsignedLongLong(x);
        if (PyErr_Occurred()) return NULL;
    }
    st.seed = v[0], st.epoch = v[1], st.batches = v[2];
    st.rank = (uint32_t)v[3], st.world_size = (uint32_t)v[4];
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS rc = sp_loader_state_set(self->ld, &st);
    Py_END_ALLOW_THREADS if (rc < 0) return sppy_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *loader_stats_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    LoaderObject *self = (LoaderObject *)obj;
    if (check_open(self) < 0) return NULL;
    sp_loader_stats s;
    sp_loader_stats_get(self->ld, &s);
    PyObject *skipped = PyList_New(0);
    for (size_t i = 0; skipped; i++) {
        const char *m = sp_loader_skipped(self->ld, i);
        if (!m) break;
        PyObject *u = PyUnicode_DecodeUTF8(m, (Py_ssize_t)strlen(m), "replace");
        if (!u || PyList_Append(skipped, u) < 0) {
            Py_XDECREF(u);
            Py_CLEAR(skipped);
            break;
        }
        Py_DECREF(u);
    }
    if (!skipped) return NULL;
    return Py_BuildValue(
        "{s:d,s:d,s:d,s:d,s:d,s:d,s:K,s:K,s:K,s:K,s:K,s:K,s:N,s:n,s:K,s:n}", "read_s", s.read_s,
        "decode_s", s.decode_s, "augment_s", s.augment_s, "wait_s", s.wait_s, "wall_s", s.wall_s,
        "stall_share", s.stall_share, "samples", (unsigned long long)s.samples, "batches",
        (unsigned long long)s.batches, "bytes_read", (unsigned long long)s.bytes_read,
        "blocks_total", (unsigned long long)s.blocks_total, "blocks_skipped",
        (unsigned long long)s.blocks_skipped, "samples_skipped_bad",
        (unsigned long long)s.samples_skipped_bad, "skipped", skipped, "mem_usage",
        (Py_ssize_t)sp_loader_mem_usage(self->ld), "n_samples",
        (unsigned long long)sp_loader_n_samples(self->ld), "pinned_bytes",
        (Py_ssize_t)s.pinned_bytes);
}

static PyObject *loader_close_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    LoaderObject *self = (LoaderObject *)obj;
    /* Arrays still viewing batches keep their memory: the loader is freed when the last goes. */
    if (self->live_batches == 0)
        really_close(self);
    else
        self->closing = 1;
    Py_RETURN_NONE;
}

static PyMethodDef loader_methods[] = {
    {"_next", loader_next_m, METH_NOARGS, "(images, labels, ids) or None at the epoch's end"},
    {"_len", loader_len_m, METH_NOARGS, "batches per epoch for this rank"},
    {"set_epoch", loader_set_epoch_m, METH_O, "start epoch e from its first batch"},
    {"state_dict", loader_state_m, METH_NOARGS, "the position: seed, epoch, batches consumed"},
    {"load_state_dict", loader_restore_m, METH_O, "continue from a state_dict(), O(1)"},
    {"_stats", loader_stats_m, METH_NOARGS, "telemetry"},
    {"close", loader_close_m, METH_NOARGS, "stop the workers and free the loader"},
    {NULL, NULL, 0, NULL}};

static PyTypeObject LoaderType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._Loader",
    .tp_basicsize = sizeof(LoaderObject),
    .tp_dealloc = loader_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "C core of softpipe.Loader.",
    .tp_methods = loader_methods,
    .tp_new = loader_new,
};

int sppy_loader_init(PyObject *m) {
    if (PyType_Ready(&LoaderType) < 0 || PyType_Ready(&BatchRefType) < 0 ||
        PyType_Ready(&ArrayType) < 0)
        return -1;
    if (PyModule_AddObjectRef(m, "_Loader", (PyObject *)&LoaderType) < 0 ||
        PyModule_AddObjectRef(m, "BatchArray", (PyObject *)&ArrayType) < 0)
        return -1;
    return 0;
}
