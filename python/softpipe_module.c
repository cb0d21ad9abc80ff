/* softpipe_module.c — the CPython extension softpipe._softpipe: pack(), verify() and the Dataset
 * reader, over the public C API in <softpipe.h> only (never src/ internals).
 *
 * Errors: every failing softpipe call becomes one Python exception, chosen from its sp_status by
 * raise_status() (the one table), with sp_errmsg() as the text and the status name in `.status`.
 *
 * The GIL is released around every call that can block (pack, verify, opening a dataset, copying a
 * column). Callbacks that the library makes while the GIL is released (skipped inputs, verify
 * issues) only append to a C list allocated with PyMem_Raw*; the list becomes Python objects once
 * the call has returned and the GIL is held again.
 *
 * Zero-copy payloads: ds[i] returns a read-only memoryview whose buffer lies inside the dataset's
 * read-only mapping. Its exporter is a small Payload object that holds a strong reference to the
 * Dataset, so the Dataset cannot be freed while any view is alive. Dataset.close() marks the object
 * closed at once (every later access raises ValueError), but the real unmap waits until the last
 * "pin" is gone: a pin is held by each live Payload and by each method running with the GIL
 * released. Pins are counted under the GIL, so no lock is needed.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>

#include <stdint.h>
#include <string.h>

PyMODINIT_FUNC PyInit__softpipe(void);
PyObject *sppy_raise(sp_status rc);
int sppy_loader_init(PyObject *m);    /* softpipe_loader.c */
int sppy_eval_init(PyObject *m);      /* softpipe_eval.c */
int sppy_transform_init(PyObject *m); /* softpipe_transform.c */
int sppy_tree_init(PyObject *m);      /* softpipe_tree.c */
int sppy_cache_init(PyObject *m);     /* softpipe_cache.c */

static PyObject *DataError; /* softpipe.DataError, a ValueError */

/* ------------------------------------------------------------------ errors */

static PyObject *raise_status(sp_status rc);

/* For the module's other files. */
PyObject *sppy_raise(sp_status rc) {
    return raise_status(rc);
}

static PyObject *decode_text(const char *s, size_t len) {
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "surrogateescape");
}

/* Raises the exception for `rc` with sp_errmsg() (read at once, before any other softpipe call on
 * this thread can overwrite it). Always returns NULL. */
static PyObject *raise_status(sp_status rc) {
    PyObject *exc;
    switch (rc) {
    case SP_EBADINPUT:
    case SP_ECORRUPT:
    case SP_EUNSUPPORTED:
        exc = DataError;
        break;
    case SP_EINVAL:
        exc = PyExc_ValueError;
        break;
    case SP_ENOMEM:
        exc = PyExc_MemoryError;
        break;
    case SP_ENOTFOUND:
        exc = PyExc_FileNotFoundError;
        break;
    case SP_EEXIST:
        exc = PyExc_FileExistsError;
        break;
    case SP_EIO:
        exc = PyExc_OSError;
        break;
    default:
        exc = PyExc_RuntimeError;
        break;
    }
    const char *msg = sp_errmsg();
    if (!msg || !*msg) msg = sp_status_name(rc);
    PyObject *text = PyUnicode_DecodeUTF8(msg, (Py_ssize_t)strlen(msg), "replace");
    if (!text) return NULL;
    PyObject *err = PyObject_CallOneArg(exc, text);
    Py_DECREF(text);
    if (!err) return NULL;
    PyObject *name = PyUnicode_FromString(sp_status_name(rc));
    if (!name || PyObject_SetAttrString(err, "status", name) < 0) PyErr_Clear();
    Py_XDECREF(name);
    PyErr_SetObject((PyObject *)Py_TYPE(err), err);
    Py_DECREF(err);
    return NULL;
}

/* ------------------------------------------------------------------ argument helpers */

/* O& converter: a non-negative int into uint64_t. */
static int conv_u64(PyObject *obj, void *out) {
    unsigned long long v = PyLong_AsUnsignedLongLong(obj);
    if (v == (unsigned long long)-1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_SetString(PyExc_ValueError, "size must be a non-negative integer");
        }
        return 0;
    }
    *(uint64_t *)out = (uint64_t)v;
    return 1;
}

static int check_threads(int threads) {
    if (threads < 0 || threads > 256) {
        PyErr_Format(PyExc_ValueError, "threads=%d: expected 0 (all cores) .. 256", threads);
        return -1;
    }
    return 0;
}

static char *raw_strdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = PyMem_RawMalloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* ------------------------------------------------------------------ pack */

/* (where, reason) pairs collected by on_skip while the GIL is released. */
typedef struct skip_list {
    char **where, **why;
    size_t n, cap;
    int oom;
} skip_list;

static void skip_cb(void *user, const char *where, const char *reason) {
    skip_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        char **a = PyMem_RawRealloc(l->where, cap * sizeof *a);
        if (a) l->where = a;
        char **b = PyMem_RawRealloc(l->why, cap * sizeof *b);
        if (b) l->why = b;
        if (!a || !b) {
            l->oom = 1;
            return;
        }
        l->cap = cap;
    }
    char *w = raw_strdup(where ? where : ""), *r = raw_strdup(reason ? reason : "");
    if (!w || !r) {
        PyMem_RawFree(w);
        PyMem_RawFree(r);
        l->oom = 1;
        return;
    }
    l->where[l->n] = w;
    l->why[l->n] = r;
    l->n++;
}

static void skip_list_free(skip_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        PyMem_RawFree(l->where[i]);
        PyMem_RawFree(l->why[i]);
    }
    PyMem_RawFree(l->where);
    PyMem_RawFree(l->why);
}

/* d[key] = value, taking over the reference to `value` (NULL: an error is already set). */
static int dict_put(PyObject *d, const char *key, PyObject *value) {
    if (!value) return -1;
    int rc = PyDict_SetItemString(d, key, value);
    Py_DECREF(value);
    return rc;
}

PyDoc_STRVAR(
    pack_doc,
    "pack(src, out, *, format='auto', threads=0, on_error='fail', shard_size=0, block_size=0,\n"
    "     schema=None, image_column=None, label_column=None, time_column=None, key_column=None,\n"
    "     restart_markers=False)\n"
    "--\n"
    "\n"
    "Packs `src` (an ImageFolder tree, a CSV or a JSONL file) into a new dataset folder `out`,\n"
    "which must not exist; the folder appears only when complete.\n"
    "\n"
    "format: 'auto' | 'imagefolder' | 'csv' | 'jsonl'. threads: reader threads, 0 = all cores\n"
    "(the output is identical for any count). on_error: 'fail' raises DataError at the first bad\n"
    "input; 'skip' packs the rest and lists each skipped input. shard_size / block_size: bytes,\n"
    "0 = default (256 MiB / 4 MiB). Tables only: schema ('name:type,...'), image_column,\n"
    "label_column, time_column, key_column. restart_markers: rewrite baseline JPEGs losslessly\n"
    "with a restart marker per MCU row, so the loader skips entropy decoding above a crop.\n"
    "\n"
    "Returns a dict: samples, skipped (list of (where, reason) tuples), payload_bytes, shards,\n"
    "classes, format. Raises DataError (bad input), FileExistsError (out exists),\n"
    "FileNotFoundError (src missing), ValueError (bad option), OSError, MemoryError.\n"
    "The GIL is released while packing.");

static PyObject *py_pack(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    static char *kwlist[] = {"src",
                             "out",
                             "format",
                             "threads",
                             "on_error",
                             "shard_size",
                             "block_size",
                             "schema",
                             "image_column",
                             "label_column",
                             "time_column",
                             "key_column",
                             "restart_markers",
                             NULL};
    PyObject *src = NULL, *out = NULL;
    int restart_markers = 0;
    const char *format = "auto", *on_error = "fail";
    int threads = 0;
    uint64_t shard_size = 0, block_size = 0;
    const char *schema = NULL, *image_col = NULL, *label_col = NULL, *time_col = NULL,
               *key_col = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&O&|$sisO&O&zzzzzp:pack", kwlist,
                                     PyUnicode_FSConverter, &src, PyUnicode_FSConverter, &out,
                                     &format, &threads, &on_error, conv_u64, &shard_size, conv_u64,
                                     &block_size, &schema, &image_col, &label_col, &time_col,
                                     &key_col, &restart_markers))
        return NULL;
    PyObject *result = NULL;
    skip_list skips;
    memset(&skips, 0, sizeof skips);
    sp_pack_opts o;
    sp_pack_opts_init(&o);
    if (!strcmp(format, "auto"))
        o.format = SP_PACK_AUTO;
    else if (!strcmp(format, "imagefolder"))
        o.format = SP_PACK_IMAGEFOLDER;
    else if (!strcmp(format, "csv"))
        o.format = SP_PACK_CSV;
    else if (!strcmp(format, "jsonl"))
        o.format = SP_PACK_JSONL;
    else {
        PyErr_Format(PyExc_ValueError,
                     "format='%s': expected 'auto', 'imagefolder', 'csv' or 'jsonl'", format);
        goto done;
    }
    if (!strcmp(on_error, "fail"))
        o.skip_errors = 0;
    else if (!strcmp(on_error, "skip"))
        o.skip_errors = 1;
    else {
        PyErr_Format(PyExc_ValueError, "on_error='%s': expected 'fail' or 'skip'", on_error);
        goto done;
    }
    if (check_threads(threads) < 0) goto done;
    o.threads = threads;
    o.shard_size = shard_size;
    o.block_size = block_size;
    o.schema = schema;
    o.image_column = image_col;
    o.label_column = label_col;
    o.time_column = time_col;
    o.key_column = key_col;
    o.restart_markers = restart_markers;
    o.on_skip = skip_cb;
    o.user = &skips;

    sp_pack_report rep;
    memset(&rep, 0, sizeof rep);
    sp_status rc;
    const char *src_s = PyBytes_AS_STRING(src), *out_s = PyBytes_AS_STRING(out);
    Py_BEGIN_ALLOW_THREADS rc = sp_pack(src_s, out_s, &o, &rep);
    Py_END_ALLOW_THREADS if (rc < 0) {
        raise_status(rc);
        goto done;
    }
    if (skips.oom) {
        PyErr_SetString(PyExc_MemoryError, "pack: out of memory while listing skipped inputs");
        goto done;
    }
    PyObject *skipped = PyList_New((Py_ssize_t)skips.n);
    if (!skipped) goto done;
    for (size_t i = 0; i < skips.n; i++) {
        PyObject *w = PyUnicode_DecodeFSDefault(skips.where[i]);
        PyObject *r = w ? decode_text(skips.why[i], strlen(skips.why[i])) : NULL;
        PyObject *t = r ? PyTuple_Pack(2, w, r) : NULL;
        Py_XDECREF(w);
        Py_XDECREF(r);
        if (!t) {
            Py_DECREF(skipped);
            goto done;
        }
        PyList_SET_ITEM(skipped, (Py_ssize_t)i, t);
    }
    /* "N" hands `skipped` over, and releases it even when building the dict fails. */
    result =
        Py_BuildValue("{s:K,s:N,s:K,s:K,s:K,s:s}", "samples", (unsigned long long)rep.samples,
                      "skipped", skipped, "payload_bytes", (unsigned long long)rep.payload_bytes,
                      "shards", (unsigned long long)rep.shards, "classes",
                      (unsigned long long)rep.classes, "format", sp_pack_format_name(rep.format));
done:
    skip_list_free(&skips);
    Py_XDECREF(src);
    Py_XDECREF(out);
    return result;
}

/* ------------------------------------------------------------------ verify */

typedef struct vissue {
    char *shard, *key, *msg;
    int64_t sample;
} vissue;

typedef struct issue_list {
    vissue *v;
    size_t n, cap;
    int oom;
} issue_list;

static void issue_cb(void *user, const char *shard_file, int64_t sample, const char *key,
                     const char *message) {
    issue_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        vissue *v = PyMem_RawRealloc(l->v, cap * sizeof *v);
        if (!v) {
            l->oom = 1;
            return;
        }
        l->v = v;
        l->cap = cap;
    }
    vissue *is = &l->v[l->n];
    is->shard = raw_strdup(shard_file ? shard_file : "");
    is->key = key ? raw_strdup(key) : NULL;
    is->msg = raw_strdup(message ? message : "");
    is->sample = sample;
    if (!is->shard || !is->msg || (key && !is->key)) {
        PyMem_RawFree(is->shard);
        PyMem_RawFree(is->key);
        PyMem_RawFree(is->msg);
        l->oom = 1;
        return;
    }
    l->n++;
}

static void issue_list_free(issue_list *l) {
    for (size_t i = 0; i < l->n; i++) {
        PyMem_RawFree(l->v[i].shard);
        PyMem_RawFree(l->v[i].key);
        PyMem_RawFree(l->v[i].msg);
    }
    PyMem_RawFree(l->v);
}

static PyObject *issue_dict(const char *shard, int64_t sample, const char *key, const char *msg) {
    PyObject *d = PyDict_New();
    if (!d) return NULL;
    PyObject *k = key ? decode_text(key, strlen(key)) : Py_NewRef(Py_None);
    PyObject *s = sample >= 0 ? PyLong_FromLongLong(sample) : Py_NewRef(Py_None);
    if (dict_put(d, "shard", decode_text(shard, strlen(shard))) < 0 ||
        dict_put(d, "sample", s) < 0 || dict_put(d, "key", k) < 0 ||
        dict_put(d, "message", decode_text(msg, strlen(msg))) < 0) {
        Py_DECREF(d);
        return NULL;
    }
    return d;
}

PyDoc_STRVAR(
    verify_doc,
    "verify(path, *, deep=False, threads=0)\n"
    "--\n"
    "\n"
    "Checks the dataset folder at `path`: the manifest, every shard's sha256, footer, metadata "
    "hash\n"
    "and index, and every payload's CRC-32C (with deep=True also decodes every JPEG/PNG payload).\n"
    "threads: shards checked in parallel, 0 = all cores. The GIL is released while checking.\n"
    "\n"
    "Returns a dict: ok, shards, shards_bad, samples, samples_bad, bytes, issues (a list of dicts\n"
    "with shard (file name), sample (index within that shard, None for the whole shard), key\n"
    "(None when unknown) and message). Corruption is reported as ok=False, not raised; raises\n"
    "only when the dataset cannot be checked at all (FileNotFoundError, OSError, ...).");

static PyObject *py_verify(PyObject *module, PyObject *args, PyObject *kwargs) {
    (void)module;
    static char *kwlist[] = {"path", "deep", "threads", NULL};
    PyObject *path = NULL;
    int deep = 0, threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&|$pi:verify", kwlist, PyUnicode_FSConverter,
                                     &path, &deep, &threads))
        return NULL;
    PyObject *result = NULL, *issues = NULL;
    issue_list il;
    memset(&il, 0, sizeof il);
    if (check_threads(threads) < 0) goto done;
    sp_verify_opts o;
    sp_verify_opts_init(&o);
    o.deep = deep;
    o.threads = threads;
    o.on_issue = issue_cb;
    o.user = &il;
    sp_verify_report r;
    memset(&r, 0, sizeof r);
    sp_status rc;
    const char *p = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS rc = sp_dataset_verify(p, &o, &r);
    Py_END_ALLOW_THREADS if (rc < 0 && rc != SP_ECORRUPT) {
        raise_status(rc);
        goto done;
    }
    if (il.oom) {
        PyErr_SetString(PyExc_MemoryError, "verify: out of memory while listing issues");
        goto done;
    }
    issues = PyList_New(0);
    if (!issues) goto done;
    for (size_t i = 0; i < il.n; i++) {
        PyObject *d = issue_dict(il.v[i].shard, il.v[i].sample, il.v[i].key, il.v[i].msg);
        if (!d || PyList_Append(issues, d) < 0) {
            Py_XDECREF(d);
            goto done;
        }
        Py_DECREF(d);
    }
    if (rc == SP_ECORRUPT && il.n == 0) {
        /* The manifest itself is unreadable: corruption, reported as one whole-dataset issue. */
        PyObject *d = issue_dict("manifest.json", -1, NULL, sp_errmsg());
        if (!d || PyList_Append(issues, d) < 0) {
            Py_XDECREF(d);
            goto done;
        }
        Py_DECREF(d);
    }
    result = Py_BuildValue(
        "{s:O,s:K,s:K,s:K,s:K,s:K,s:O}", "ok", rc == SP_OK ? Py_True : Py_False, "shards",
        (unsigned long long)r.shards, "shards_bad", (unsigned long long)r.shards_bad, "samples",
        (unsigned long long)r.samples, "samples_bad", (unsigned long long)r.samples_bad, "bytes",
        (unsigned long long)r.bytes, "issues", issues);
done:
    Py_XDECREF(issues);
    issue_list_free(&il);
    Py_XDECREF(path);
    return result;
}

/* ------------------------------------------------------------------ Dataset */

typedef struct DatasetObject {
    PyObject_HEAD sp_dataset *ds; /* NULL once really closed */
    int closed;                   /* close() was called: every access raises ValueError */
    Py_ssize_t pins;              /* live Payload exporters + calls running without the GIL */
    uint64_t n;                   /* samples */
    Py_ssize_t n_cols;
    PyObject **names; /* n_cols interned column names */
    sp_type *types;   /* n_cols column types */
    PyObject *path;   /* str, as given */
    PyObject *weakrefs;
} DatasetObject;

static PyTypeObject DatasetType;
static PyTypeObject PayloadType;

static void ds_pin(DatasetObject *self) {
    self->pins++;
}

static void ds_unpin(DatasetObject *self) {
    if (--self->pins == 0 && self->closed && self->ds) {
        sp_dataset_close(self->ds);
        self->ds = NULL;
    }
}

static int ds_check_open(DatasetObject *self) {
    if (self->closed || !self->ds) {
        PyErr_SetString(PyExc_ValueError, "dataset is closed");
        return -1;
    }
    return 0;
}

/* The Payload exporter: owns a pin and a strong reference on its Dataset. */
typedef struct PayloadObject {
    PyObject_HEAD DatasetObject *owner;
    const uint8_t *data;
    Py_ssize_t size;
} PayloadObject;

static int payload_getbuffer(PyObject *obj, Py_buffer *view, int flags) {
    PayloadObject *p = (PayloadObject *)obj;
    return PyBuffer_FillInfo(view, obj, (void *)(uintptr_t)p->data, p->size, 1, flags);
}

static void payload_dealloc(PyObject *obj) {
    PayloadObject *p = (PayloadObject *)obj;
    DatasetObject *owner = p->owner;
    ds_unpin(owner);
    PyObject_Free(p);
    Py_DECREF(owner);
}

static Py_ssize_t payload_len(PyObject *obj) {
    return ((PayloadObject *)obj)->size;
}

static PyObject *payload_get_dataset(PyObject *obj, void *closure) {
    (void)closure;
    return Py_NewRef((PyObject *)((PayloadObject *)obj)->owner);
}

static PyBufferProcs payload_as_buffer = {payload_getbuffer, NULL};
static PySequenceMethods payload_as_sequence = {.sq_length = payload_len};
static PyGetSetDef payload_getset[] = {
    {"dataset", payload_get_dataset, NULL, "The Dataset whose mapping holds these bytes.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject PayloadType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe.Payload",
    .tp_basicsize = sizeof(PayloadObject),
    .tp_dealloc = payload_dealloc,
    .tp_as_sequence = &payload_as_sequence,
    .tp_as_buffer = &payload_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "The exporter behind a payload memoryview: read-only bytes inside a dataset's\n"
              "mapping. It keeps its Dataset alive (and mapped) for as long as it exists.",
    .tp_getset = payload_getset,
};

/* A read-only memoryview over sample s's payload, without copying. */
static PyObject *make_view(DatasetObject *self, const sp_sample *s) {
    PayloadObject *p = PyObject_New(PayloadObject, &PayloadType);
    if (!p) return NULL;
    p->owner = (DatasetObject *)Py_NewRef((PyObject *)self);
    p->data = s->data;
    p->size = (Py_ssize_t)s->size;
    ds_pin(self);
    PyObject *mv = PyMemoryView_FromObject((PyObject *)p);
    Py_DECREF(p); /* the memoryview holds it now (or it is freed on failure) */
    return mv;
}

/* Python value of one cell. */
static PyObject *value_object(sp_type type, const sp_value *v) {
    if (v->is_null) Py_RETURN_NONE;
    switch (type) {
    case SP_TYPE_INT32:
    case SP_TYPE_INT64:
        return PyLong_FromLongLong(v->v.i);
    case SP_TYPE_FLOAT64:
        return PyFloat_FromDouble(v->v.f);
    case SP_TYPE_STRING:
        return decode_text(v->v.str.s, v->v.str.len);
    }
    PyErr_Format(PyExc_RuntimeError, "unknown column type %d", (int)type);
    return NULL;
}

/* Converts a Python index (negative counts from the end) into a sample number, or raises. */
static int ds_index(DatasetObject *self, PyObject *key, uint64_t *out) {
    if (ds_check_open(self) < 0) return -1;
    Py_ssize_t i;
    if (PyLong_CheckExact(key)) {
        i = PyLong_AsSsize_t(key);
        if (i == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            PyErr_SetString(PyExc_IndexError, "dataset index out of range");
            return -1;
        }
    } else if (PyIndex_Check(key)) {
        i = PyNumber_AsSsize_t(key, PyExc_IndexError);
        if (i == -1 && PyErr_Occurred()) return -1;
    } else {
        PyErr_Format(PyExc_TypeError, "dataset indices must be integers, not %.200s",
                     Py_TYPE(key)->tp_name);
        return -1;
    }
    if (i < 0) i += (Py_ssize_t)self->n;
    if (i < 0 || (uint64_t)i >= self->n) {
        PyErr_Format(PyExc_IndexError, "dataset index out of range (%llu samples)",
                     (unsigned long long)self->n);
        return -1;
    }
    *out = (uint64_t)i;
    return 0;
}

/* The dict {column name: value} of sample i (i already checked). */
static PyObject *ds_row(DatasetObject *self, uint64_t i) {
    PyObject *cols = PyDict_New();
    if (!cols) return NULL;
    for (Py_ssize_t c = 0; c < self->n_cols; c++) {
        sp_value v;
        sp_status rc = sp_dataset_value(self->ds, i, (size_t)c, &v);
        if (rc < 0) {
            Py_DECREF(cols);
            return raise_status(rc);
        }
        PyObject *o = value_object(self->types[c], &v);
        if (!o || PyDict_SetItem(cols, self->names[c], o) < 0) {
            Py_XDECREF(o);
            Py_DECREF(cols);
            return NULL;
        }
        Py_DECREF(o);
    }
    return cols;
}

/* (payload memoryview, columns dict) of sample i (i already checked). */
static PyObject *ds_get(DatasetObject *self, uint64_t i) {
    sp_sample s;
    sp_status rc = sp_dataset_sample(self->ds, i, &s);
    if (rc < 0) return raise_status(rc);
    PyObject *mv = make_view(self, &s);
    if (!mv) return NULL;
    PyObject *cols = ds_row(self, i);
    if (!cols) {
        Py_DECREF(mv);
        return NULL;
    }
    PyObject *t = PyTuple_New(2);
    if (!t) {
        Py_DECREF(mv);
        Py_DECREF(cols);
        return NULL;
    }
    PyTuple_SET_ITEM(t, 0, mv);
    PyTuple_SET_ITEM(t, 1, cols);
    return t;
}

static PyObject *ds_subscript(PyObject *obj, PyObject *key) {
    DatasetObject *self = (DatasetObject *)obj;
    uint64_t i;
    if (ds_index(self, key, &i) < 0) return NULL;
    return ds_get(self, i);
}

static PyObject *ds_sq_item(PyObject *obj, Py_ssize_t i) {
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    if (i < 0) i += (Py_ssize_t)self->n;
    if (i < 0 || (uint64_t)i >= self->n) {
        PyErr_Format(PyExc_IndexError, "dataset index out of range (%llu samples)",
                     (unsigned long long)self->n);
        return NULL;
    }
    return ds_get(self, (uint64_t)i);
}

static Py_ssize_t ds_len(PyObject *obj) {
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return -1;
    return (Py_ssize_t)self->n;
}

static void ds_free_names(DatasetObject *self) {
    if (self->names) {
        for (Py_ssize_t c = 0; c < self->n_cols; c++)
            Py_XDECREF(self->names[c]);
        PyMem_Free(self->names);
        self->names = NULL;
    }
    PyMem_Free(self->types);
    self->types = NULL;
    self->n_cols = 0;
}

static PyObject *ds_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path = NULL;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O&:Dataset", kwlist, PyUnicode_FSConverter,
                                     &path))
        return NULL;
    DatasetObject *self = (DatasetObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_DECREF(path);
        return NULL;
    }
    self->closed = 1; /* until fully opened */
    self->path = PyUnicode_DecodeFSDefault(PyBytes_AS_STRING(path));
    if (!self->path) goto fail;
    sp_dataset *ds = NULL;
    sp_status rc;
    const char *p = PyBytes_AS_STRING(path);
    Py_BEGIN_ALLOW_THREADS rc = sp_dataset_open(p, &ds);
    Py_END_ALLOW_THREADS if (rc < 0) {
        raise_status(rc);
        goto fail;
    }
    self->ds = ds;
    self->n = sp_dataset_len(ds);
    self->n_cols = (Py_ssize_t)sp_dataset_n_columns(ds);
    self->names = PyMem_Calloc((size_t)self->n_cols + 1, sizeof *self->names);
    self->types = PyMem_Calloc((size_t)self->n_cols + 1, sizeof *self->types);
    if (!self->names || !self->types) {
        PyErr_NoMemory();
        goto fail;
    }
    for (Py_ssize_t c = 0; c < self->n_cols; c++) {
        const sp_column *col = sp_dataset_column(ds, (size_t)c);
        self->types[c] = col->type;
        self->names[c] = PyUnicode_InternFromString(col->name);
        if (!self->names[c]) goto fail;
    }
    self->closed = 0;
    Py_DECREF(path);
    return (PyObject *)self;
fail:
    Py_DECREF(path);
    Py_DECREF(self); /* ds_dealloc closes ds */
    return NULL;
}

static void ds_dealloc(PyObject *obj) {
    DatasetObject *self = (DatasetObject *)obj;
    if (self->weakrefs) PyObject_ClearWeakRefs(obj);
    /* No pins can remain: each Payload and each running method holds a reference. */
    sp_dataset_close(self->ds);
    self->ds = NULL;
    ds_free_names(self);
    Py_CLEAR(self->path);
    Py_TYPE(obj)->tp_free(obj);
}

static PyObject *ds_repr(PyObject *obj) {
    DatasetObject *self = (DatasetObject *)obj;
    const char *tname = Py_TYPE(obj)->tp_name;
    const char *dot = strrchr(tname, '.');
    if (self->closed)
        return PyUnicode_FromFormat("<softpipe.%s %R (closed)>", dot ? dot + 1 : tname,
                                    self->path ? self->path : Py_None);
    return PyUnicode_FromFormat("<softpipe.%s %R: %llu samples, %zd columns, %zu shards>",
                                dot ? dot + 1 : tname, self->path, (unsigned long long)self->n,
                                self->n_cols, sp_dataset_n_shards(self->ds));
}

PyDoc_STRVAR(ds_sample_doc, "sample(i) -> memoryview\n"
                            "\n"
                            "The payload of sample i as a read-only memoryview into the mapping "
                            "(no copy, no column dict):\n"
                            "the fast path. Negative i counts from the end.");

static PyObject *ds_sample_m(PyObject *obj, PyObject *key) {
    DatasetObject *self = (DatasetObject *)obj;
    uint64_t i;
    if (ds_index(self, key, &i) < 0) return NULL;
    sp_sample s;
    sp_status rc = sp_dataset_sample(self->ds, i, &s);
    if (rc < 0) return raise_status(rc);
    return make_view(self, &s);
}

PyDoc_STRVAR(ds_key_doc, "key(i) -> str\n\nThe key (name) of sample i.");

static PyObject *ds_key_m(PyObject *obj, PyObject *key) {
    DatasetObject *self = (DatasetObject *)obj;
    uint64_t i;
    if (ds_index(self, key, &i) < 0) return NULL;
    sp_value v;
    sp_status rc = sp_dataset_value(self->ds, i, SP_COL_KEY, &v);
    if (rc < 0) return raise_status(rc);
    return value_object(self->types[SP_COL_KEY], &v);
}

PyDoc_STRVAR(ds_row_doc, "row(i) -> dict\n\nThe columns of sample i as {name: value}.");

static PyObject *ds_row_m(PyObject *obj, PyObject *key) {
    DatasetObject *self = (DatasetObject *)obj;
    uint64_t i;
    if (ds_index(self, key, &i) < 0) return NULL;
    return ds_row(self, i);
}

/* Column number of `name` (a str), or raises KeyError. */
static Py_ssize_t ds_col_index(DatasetObject *self, PyObject *name) {
    if (!PyUnicode_Check(name)) {
        PyErr_Format(PyExc_TypeError, "column name must be str, not %.200s",
                     Py_TYPE(name)->tp_name);
        return -1;
    }
    for (Py_ssize_t c = 0; c < self->n_cols; c++)
        if (PyUnicode_Compare(self->names[c], name) == 0) return c;
    if (PyErr_Occurred()) return -1;
    PyObject *names = PyTuple_New(self->n_cols);
    if (!names) return -1;
    for (Py_ssize_t c = 0; c < self->n_cols; c++)
        PyTuple_SET_ITEM(names, c, Py_NewRef(self->names[c]));
    PyObject *msg = PyUnicode_FromFormat("no column %R; the dataset has %R", name, names);
    Py_DECREF(names);
    if (msg) {
        PyErr_SetObject(PyExc_KeyError, msg);
        Py_DECREF(msg);
    }
    return -1;
}

PyDoc_STRVAR(
    ds_column_raw_doc,
    "_column(name) -> (bytearray, dtype, bytearray) | list\n"
    "\n"
    "The whole column `name`. Scalar columns: (values, NumPy dtype string, null flags, one byte "
    "per\n"
    "sample), with nulls written as 0 (NaN for float64). String columns: a list of str or None.\n"
    "Dataset.column() wraps this into NumPy arrays.");

static PyObject *ds_column_raw(PyObject *obj, PyObject *name) {
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    Py_ssize_t c = ds_col_index(self, name);
    if (c < 0) return NULL;
    sp_type t = self->types[c];
    if (t == SP_TYPE_STRING) {
        if (self->n > (uint64_t)PY_SSIZE_T_MAX) return PyErr_NoMemory();
        PyObject *list = PyList_New((Py_ssize_t)self->n);
        if (!list) return NULL;
        for (uint64_t i = 0; i < self->n; i++) {
            sp_value v;
            sp_status rc = sp_dataset_value(self->ds, i, (size_t)c, &v);
            PyObject *o = rc < 0 ? raise_status(rc) : value_object(t, &v);
            if (!o) {
                Py_DECREF(list);
                return NULL;
            }
            PyList_SET_ITEM(list, (Py_ssize_t)i, o);
        }
        return list;
    }
    size_t width = t == SP_TYPE_INT32 ? 4 : 8;
    const char *dtype = t == SP_TYPE_INT32 ? "=i4" : t == SP_TYPE_INT64 ? "=i8" : "=f8";
    if (self->n > (uint64_t)PY_SSIZE_T_MAX / 8) return PyErr_NoMemory();
    PyObject *values = PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)(self->n * width));
    PyObject *nulls = values ? PyByteArray_FromStringAndSize(NULL, (Py_ssize_t)self->n) : NULL;
    if (!nulls) {
        Py_XDECREF(values);
        return NULL;
    }
    void *dst = PyByteArray_AS_STRING(values);
    uint8_t *nl = (uint8_t *)PyByteArray_AS_STRING(nulls);
    sp_dataset *ds = self->ds;
    uint64_t n = self->n;
    sp_status rc;
    ds_pin(self);
    Py_BEGIN_ALLOW_THREADS rc = sp_dataset_read_column(ds, (size_t)c, dst, n, nl);
    Py_END_ALLOW_THREADS if (rc < 0)
        raise_status(rc); /* before unpin: closing must not overwrite the message */
    ds_unpin(self);
    if (rc < 0) {
        Py_DECREF(values);
        Py_DECREF(nulls);
        return NULL;
    }
    PyObject *res = Py_BuildValue("(NsN)", values, dtype, nulls);
    return res;
}

PyDoc_STRVAR(
    ds_close_doc,
    "close()\n"
    "\n"
    "Closes the dataset; any later access raises ValueError. Payload memoryviews that are still\n"
    "alive stay valid: the files are unmapped when the last of them is released. Idempotent.");

static PyObject *ds_close_m(PyObject *obj, PyObject *unused) {
    (void)unused;
    DatasetObject *self = (DatasetObject *)obj;
    if (!self->closed) {
        self->closed = 1;
        if (self->pins == 0 && self->ds) {
            sp_dataset_close(self->ds);
            self->ds = NULL;
        }
    }
    Py_RETURN_NONE;
}

static PyObject *ds_enter(PyObject *obj, PyObject *unused) {
    (void)unused;
    if (ds_check_open((DatasetObject *)obj) < 0) return NULL;
    return Py_NewRef(obj);
}

static PyObject *ds_exit(PyObject *obj, PyObject *args) {
    (void)args;
    PyObject *r = ds_close_m(obj, NULL);
    Py_XDECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *ds_reduce(PyObject *obj, PyObject *unused) {
    (void)unused;
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    return Py_BuildValue("(O(O))", (PyObject *)Py_TYPE(obj), self->path);
}

static PyObject *ds_get_columns(PyObject *obj, void *closure) {
    (void)closure;
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    PyObject *list = PyList_New(self->n_cols);
    if (!list) return NULL;
    for (Py_ssize_t c = 0; c < self->n_cols; c++) {
        PyObject *t = Py_BuildValue("(Os)", self->names[c], sp_type_name(self->types[c]));
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, c, t);
    }
    return list;
}

static PyObject *ds_get_payload_bytes(PyObject *obj, void *closure) {
    (void)closure;
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    return PyLong_FromUnsignedLongLong(sp_dataset_payload_bytes(self->ds));
}

static PyObject *ds_get_num_shards(PyObject *obj, void *closure) {
    (void)closure;
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    return PyLong_FromSize_t(sp_dataset_n_shards(self->ds));
}

static PyObject *ds_get_manifest_text(PyObject *obj, void *closure) {
    (void)closure;
    DatasetObject *self = (DatasetObject *)obj;
    if (ds_check_open(self) < 0) return NULL;
    const char *m = sp_dataset_manifest(self->ds);
    return decode_text(m ? m : "", m ? strlen(m) : 0);
}

static PyObject *ds_get_closed(PyObject *obj, void *closure) {
    (void)closure;
    return PyBool_FromLong(((DatasetObject *)obj)->closed);
}

static PyObject *ds_get_path(PyObject *obj, void *closure) {
    (void)closure;
    DatasetObject *self = (DatasetObject *)obj;
    return Py_NewRef(self->path ? self->path : Py_None);
}

static PyMethodDef ds_methods[] = {
    {"sample", ds_sample_m, METH_O, ds_sample_doc},
    {"key", ds_key_m, METH_O, ds_key_doc},
    {"row", ds_row_m, METH_O, ds_row_doc},
    {"_column", ds_column_raw, METH_O, ds_column_raw_doc},
    {"close", ds_close_m, METH_NOARGS, ds_close_doc},
    {"__enter__", ds_enter, METH_NOARGS, "Returns the dataset itself."},
    {"__exit__", ds_exit, METH_VARARGS, "Closes the dataset."},
    {"__reduce__", ds_reduce, METH_NOARGS, "Pickles as Dataset(path): the dataset reopens."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef ds_getset[] = {
    {"columns", ds_get_columns, NULL, "List of (name, type name) tuples, in column order.", NULL},
    {"payload_bytes", ds_get_payload_bytes, NULL, "Total payload bytes of all samples.", NULL},
    {"num_shards", ds_get_num_shards, NULL, "Number of shard files.", NULL},
    {"manifest_text", ds_get_manifest_text, NULL, "manifest.json as text.", NULL},
    {"closed", ds_get_closed, NULL, "True after close().", NULL},
    {"path", ds_get_path, NULL, "The path the dataset was opened with.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyMappingMethods ds_as_mapping = {.mp_length = ds_len, .mp_subscript = ds_subscript};
static PySequenceMethods ds_as_sequence = {.sq_length = ds_len, .sq_item = ds_sq_item};

PyDoc_STRVAR(
    ds_doc,
    "_Dataset(path)\n"
    "--\n"
    "\n"
    "A softpipe dataset folder opened read-only (every shard mapped and its index validated).\n"
    "ds[i] -> (payload, columns): payload is a read-only memoryview into the mapping (no copy),\n"
    "columns a dict {name: value}. Base class of softpipe.Dataset.");

static PyTypeObject DatasetType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._softpipe._Dataset",
    .tp_basicsize = sizeof(DatasetObject),
    .tp_dealloc = ds_dealloc,
    .tp_repr = ds_repr,
    .tp_as_sequence = &ds_as_sequence,
    .tp_as_mapping = &ds_as_mapping,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = ds_doc,
    .tp_weaklistoffset = offsetof(DatasetObject, weakrefs),
    .tp_methods = ds_methods,
    .tp_getset = ds_getset,
    .tp_new = ds_new,
};

/* ------------------------------------------------------------------ module */

PyDoc_STRVAR(version_doc, "version() -> str\n\nThe softpipe library version, 'MAJOR.MINOR.PATCH'.");

static PyObject *py_version(PyObject *module, PyObject *unused) {
    (void)module;
    (void)unused;
    return PyUnicode_FromString(sp_version());
}

static PyMethodDef module_methods[] = {
    {"pack", (PyCFunction)(void (*)(void))py_pack, METH_VARARGS | METH_KEYWORDS, pack_doc},
    {"verify", (PyCFunction)(void (*)(void))py_verify, METH_VARARGS | METH_KEYWORDS, verify_doc},
    {"version", py_version, METH_NOARGS, version_doc},
    {NULL, NULL, 0, NULL}};

static struct PyModuleDef module_def = {
    PyModuleDef_HEAD_INIT,
    .m_name = "softpipe._softpipe",
    .m_doc = "C core of the softpipe package (see softpipe for the documented API).",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__softpipe(void) {
    if (PyType_Ready(&PayloadType) < 0 || PyType_Ready(&DatasetType) < 0) return NULL;
    PyObject *m = PyModule_Create(&module_def);
    if (!m) return NULL;
    DataError = PyErr_NewExceptionWithDoc(
        "softpipe.DataError",
        "Input data or a softpipe file is malformed, corrupt or unsupported (a ValueError).\n"
        "The message names the file and record at fault; `.status` holds the sp_status name.",
        PyExc_ValueError, NULL);
    if (!DataError || PyModule_AddObjectRef(m, "DataError", DataError) < 0 ||
        PyModule_AddObjectRef(m, "_Dataset", (PyObject *)&DatasetType) < 0 ||
        PyModule_AddObjectRef(m, "Payload", (PyObject *)&PayloadType) < 0 ||
        PyModule_AddStringConstant(m, "__version__", sp_version()) < 0 || sppy_loader_init(m) < 0 ||
        sppy_eval_init(m) < 0 || sppy_transform_init(m) < 0 || sppy_tree_init(m) < 0 ||
        sppy_cache_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
