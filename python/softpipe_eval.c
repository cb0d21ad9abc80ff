/* softpipe_eval.c — softpipe._softpipe's evaluation functions: _eval, _delong_test and
 * poisson_weights, over <softpipe/eval.h>.
 *
 * Arrays come in through the buffer protocol (NumPy arrays, memoryviews; the Python layer in
 * softpipe/metrics.py turns torch tensors into NumPy views first), so nothing is copied: the C
 * engine reads the caller's memory through its strides while the GIL is released. Results come
 * back as plain Python objects; arrays (curves, replicates, confusion matrices) as bytes of
 * float64 that the Python layer views with numpy.frombuffer. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>

#include <string.h>

PyObject *sppy_raise(sp_status rc);
int sppy_eval_init(PyObject *m);

/* ---- buffers to sp_array */

typedef struct held {
    Py_buffer view;
    int held;
} held;

static int dtype_of(const Py_buffer *v, sp_dtype *out) {
    const char *f = v->format ? v->format : "B";
    if (*f == '<' || *f == '=' || *f == '@' || *f == '|') f++;
    if (f[0] == '\0' || f[1] != '\0') goto bad;
    switch (f[0]) {
    case '?':
        *out = SP_DTYPE_BOOL;
        return 0;
    case 'e':
        *out = SP_DTYPE_FLOAT16;
        return 0;
    case 'f':
        *out = SP_DTYPE_FLOAT32;
        return 0;
    case 'd':
        *out = SP_DTYPE_FLOAT64;
        return 0;
    case 'b':
    case 'h':
    case 'i':
    case 'l':
    case 'q':
        switch (v->itemsize) {
        case 1:
            *out = SP_DTYPE_INT8;
            return 0;
        case 2:
            *out = SP_DTYPE_INT16;
            return 0;
        case 4:
            *out = SP_DTYPE_INT32;
            return 0;
        case 8:
            *out = SP_DTYPE_INT64;
            return 0;
        }
        break;
    case 'B':
    case 'H':
    case 'I':
    case 'L':
    case 'Q':
        switch (v->itemsize) {
        case 1:
            *out = SP_DTYPE_UINT8;
            return 0;
        case 2:
            *out = SP_DTYPE_UINT16;
            return 0;
        case 4:
            *out = SP_DTYPE_UINT32;
            return 0;
        case 8:
            *out = SP_DTYPE_UINT64;
            return 0;
        }
        break;
    }
bad:
    PyErr_Format(PyExc_TypeError,
                 "unsupported array element type '%s' (use bool, integers, "
                 "float16, float32 or float64)",
                 v->format ? v->format : "?");
    return -1;
}

/* Borrows obj's buffer as an sp_array (1-D or 2-D). */
static int get_array(PyObject *obj, const char *name, held *h, sp_array *a) {
    memset(a, 0, sizeof *a);
    if (PyObject_GetBuffer(obj, &h->view, PyBUF_RECORDS_RO) < 0) {
        PyErr_Format(PyExc_TypeError,
                     "%s: expected an array (NumPy array, torch tensor or "
                     "buffer), got %.80s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    h->held = 1;
    if (dtype_of(&h->view, &a->dtype) < 0) return -1;
    if (h->view.ndim < 1 || h->view.ndim > 2) {
        PyErr_Format(PyExc_ValueError, "%s: expected a 1-D or 2-D array, got %d dimensions", name,
                     h->view.ndim);
        return -1;
    }
    a->data = h->view.buf;
    a->ndim = h->view.ndim;
    for (int i = 0; i < a->ndim; i++) {
        a->shape[i] = (uint64_t)h->view.shape[i];
        a->strides[i] = h->view.strides ? h->view.strides[i] : 0;
    }
    if (!h->view.strides) {
        a->strides[a->ndim - 1] = h->view.itemsize;
        if (a->ndim == 2) a->strides[0] = h->view.itemsize * h->view.shape[1];
    }
    if (h->view.len == 0) a->data = h->view.buf ? h->view.buf : (void *)"";
    return 0;
}

static void release(held *h) {
    if (h->held) PyBuffer_Release(&h->view);
    h->held = 0;
}

/* ---- result arrays without copies
 *
 * A ResultRef owns one sp_eval_result; an EvalArray is a read-only float64 buffer pointing into
 * it that holds a reference to its ResultRef, so numpy.frombuffer(EvalArray) views a curve of
 * ten million points without copying it, and the result lives as long as any view does. */

typedef struct {
    PyObject_HEAD sp_eval_result *res;
} ResultRef;

static void resultref_dealloc(ResultRef *self) {
    sp_eval_result_free(self->res);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyTypeObject ResultRefType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._softpipe._EvalResult",
    .tp_basicsize = sizeof(ResultRef),
    .tp_dealloc = (destructor)resultref_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "Owns a C evaluation result while arrays view it.",
};

typedef struct {
    PyObject_HEAD PyObject *owner;
    const double *data;
    Py_ssize_t n;
} EvalArray;

static void evalarray_dealloc(EvalArray *self) {
    Py_XDECREF(self->owner);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int evalarray_getbuffer(EvalArray *self, Py_buffer *view, int flags) {
    static const char fmt[] = "d";
    if (flags & PyBUF_WRITABLE) {
        PyErr_SetString(PyExc_BufferError, "evaluation arrays are read-only");
        return -1;
    }
    view->buf = (void *)self->data;
    view->obj = Py_NewRef((PyObject *)self);
    view->len = self->n * (Py_ssize_t)sizeof(double);
    view->readonly = 1;
    view->itemsize = sizeof(double);
    view->format = (flags & PyBUF_FORMAT) ? (char *)fmt : NULL;
    view->ndim = 1;
    view->shape = (flags & PyBUF_ND) ? &self->n : NULL;
    view->strides = (flags & PyBUF_STRIDES) ? &view->itemsize : NULL;
    view->suboffsets = NULL;
    view->internal = NULL;
    return 0;
}

static PyBufferProcs evalarray_as_buffer = {(getbufferproc)evalarray_getbuffer, NULL};

static PyTypeObject EvalArrayType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._softpipe._EvalArray",
    .tp_basicsize = sizeof(EvalArray),
    .tp_dealloc = (destructor)evalarray_dealloc,
    .tp_as_buffer = &evalarray_as_buffer,
    .tp_flags = Py_TPFLAGS_DEFAULT,
    .tp_doc = "A read-only float64 buffer inside an evaluation result (use numpy.frombuffer).",
};

static PyObject *owner_ref; /* the ResultRef of the result being converted (set by py_eval) */

static PyObject *bytes_of(const double *p, size_t n) {
    if (!owner_ref || n < 4096) /* small arrays: a copy is cheaper than an object */
        return PyBytes_FromStringAndSize((const char *)p, (Py_ssize_t)(n * sizeof(double)));
    EvalArray *a = PyObject_New(EvalArray, &EvalArrayType);
    if (!a) return NULL;
    a->owner = Py_NewRef(owner_ref);
    a->data = p;
    a->n = (Py_ssize_t)n;
    return (PyObject *)a;
}

static const char *task_name(sp_eval_task t) {
    return t == SP_EVAL_BINARY       ? "binary"
           : t == SP_EVAL_MULTICLASS ? "multiclass"
           : t == SP_EVAL_REGRESSION ? "regression"
                                     : "auto";
}

/* Builds the raw result dict that softpipe.metrics.evaluate turns into the public one. */
static PyObject *result_dict(const sp_eval_result *r) {
    sp_eval_info info;
    sp_eval_result_info(r, &info);
    PyObject *d = PyDict_New(), *metrics = PyList_New(0), *curves = PyDict_New();
    PyObject *conf = PyList_New(0), *warns = PyList_New(0);
    if (!d || !metrics || !curves || !conf || !warns) goto fail;
    for (size_t i = 0; i < sp_eval_result_n_metrics(r); i++) {
        const sp_eval_metric *m = sp_eval_result_metric(r, i);
        size_t nrep = 0;
        const double *rep = sp_eval_result_replicates(r, i, &nrep);
        PyObject *reps = rep ? bytes_of(rep, nrep) : Py_NewRef(Py_None);
        PyObject *t = reps ? Py_BuildValue("(sdddN)", m->name, m->value, m->lo, m->hi, reps) : NULL;
        if (!t || PyList_Append(metrics, t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
    }
    static const char *const names[3] = {"roc", "pr", "reliability"};
    for (int c = 0; c < 3; c++) {
        sp_eval_curve cv;
        if (sp_eval_result_curve(r, names[c], &cv) != SP_OK) continue;
        size_t nt = c == 1 ? (cv.n ? cv.n - 1 : 0) : cv.n;
        PyObject *t = Py_BuildValue("(NNN)", bytes_of(cv.x, cv.n), bytes_of(cv.y, cv.n),
                                    bytes_of(cv.threshold, nt));
        if (!t || PyDict_SetItemString(curves, names[c], t) < 0) {
            Py_XDECREF(t);
            goto fail;
        }
        Py_DECREF(t);
    }
    for (size_t t = 0; t < SP_EVAL_MAX_THRESHOLDS; t++) {
        size_t k = 0;
        const double *m = sp_eval_result_confusion(r, t, &k);
        if (!m) break;
        PyObject *o = Py_BuildValue("(nN)", (Py_ssize_t)k, bytes_of(m, k * k));
        if (!o || PyList_Append(conf, o) < 0) {
            Py_XDECREF(o);
            goto fail;
        }
        Py_DECREF(o);
    }
    for (size_t i = 0; i < sp_eval_result_n_warnings(r); i++) {
        PyObject *s = PyUnicode_FromString(sp_eval_result_warning(r, i));
        if (!s || PyList_Append(warns, s) < 0) {
            Py_XDECREF(s);
            goto fail;
        }
        Py_DECREF(s);
    }
    PyObject *inf = Py_BuildValue(
        "{s:s,s:K,s:K,s:K,s:K,s:I,s:O,s:s,s:I,s:d,s:d,s:d,s:d}", "task", task_name(info.task),
        "n_rows", (unsigned long long)info.n_rows, "n_used", (unsigned long long)info.n_used,
        "n_dropped", (unsigned long long)info.n_dropped, "n_clipped",
        (unsigned long long)info.n_clipped, "n_classes", info.n_classes, "quick",
        info.quick ? Py_True : Py_False, "ci",
        info.ci == SP_EVAL_CI_BOOTSTRAP ? "bootstrap"
        : info.ci == SP_EVAL_CI_DELONG  ? "delong"
                                        : "none",
        "replicates", info.replicates, "level", info.level, "weight_total", info.weight_total,
        "weight_positive", info.weight_positive, "seconds", info.seconds);
    if (!inf || PyDict_SetItemString(d, "info", inf) < 0) {
        Py_XDECREF(inf);
        goto fail;
    }
    Py_DECREF(inf);
    if (PyDict_SetItemString(d, "metrics", metrics) < 0 ||
        PyDict_SetItemString(d, "curves", curves) < 0 ||
        PyDict_SetItemString(d, "confusion", conf) < 0 ||
        PyDict_SetItemString(d, "warnings", warns) < 0)
        goto fail;
    Py_DECREF(metrics);
    Py_DECREF(curves);
    Py_DECREF(conf);
    Py_DECREF(warns);
    return d;
fail:
    Py_XDECREF(d);
    Py_XDECREF(metrics);
    Py_XDECREF(curves);
    Py_XDECREF(conf);
    Py_XDECREF(warns);
    return NULL;
}

static PyObject *py_eval(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"y_true",     "y_score", "sample_weight", "task",     "metrics",
                             "thresholds", "ci",      "replicates",    "level",    "seed",
                             "quick",      "nan",     "n_threads",     "ece_bins", "ece_equal_mass",
                             "top_k",      "plot",    "plot_title",    "curves",   NULL};
    PyObject *y = NULL, *s = NULL, *w = Py_None, *thresholds = Py_None;
    const char *metrics = NULL, *plot = NULL, *plot_title = NULL;
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    int task = 0, ci = 0, nan = 0, n_threads = 0, equal_mass = 0, curves = 0;
    long long replicates = 1000, ece_bins = 15, top_k = 5;
    unsigned long long seed = 0;
    double level = 0.95, quick = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OO|O$izOiLdKdiiLpLzzp", kwlist, &y, &s, &w, &task,
                                     &metrics, &thresholds, &ci, &replicates, &level, &seed, &quick,
                                     &nan, &n_threads, &ece_bins, &equal_mass, &top_k, &plot,
                                     &plot_title, &curves))
        return NULL;
    if (replicates < 1 || replicates > 1000000)
        return PyErr_Format(PyExc_ValueError, "replicates: %lld is not in 1 .. 1000000",
                            replicates);
    if (ece_bins < 1 || ece_bins > 10000)
        return PyErr_Format(PyExc_ValueError, "ece_bins: %lld is not in 1 .. 10000", ece_bins);
    if (top_k < 1 || top_k > 100000)
        return PyErr_Format(PyExc_ValueError, "top_k: %lld is not in 1 .. 100000", top_k);
    if (n_threads < 0)
        return PyErr_Format(PyExc_ValueError, "n_threads: %d must be >= 0 (0 = all cores)",
                            n_threads);
    o.curves = curves || plot;
    o.task = (sp_eval_task)task;
    o.metrics = metrics;
    o.ci = (sp_eval_ci)ci;
    o.replicates = (uint32_t)replicates;
    o.level = level;
    o.seed = seed;
    o.quick = quick;
    o.nan = (sp_eval_nan)nan;
    o.n_threads = n_threads;
    o.ece_bins = (uint32_t)ece_bins;
    o.ece_equal_mass = equal_mass;
    o.top_k = (uint32_t)top_k;
    if (thresholds != Py_None) {
        PyObject *seq = PySequence_Fast(thresholds, "thresholds must be a number or a sequence");
        if (!seq) return NULL;
        Py_ssize_t n = PySequence_Fast_GET_SIZE(seq);
        if (n < 1 || n > SP_EVAL_MAX_THRESHOLDS) {
            Py_DECREF(seq);
            return PyErr_Format(PyExc_ValueError, "thresholds: give 1 to %d values, got %zd",
                                SP_EVAL_MAX_THRESHOLDS, n);
        }
        o.n_thresholds = (size_t)n;
        for (Py_ssize_t i = 0; i < n; i++) {
            o.thresholds[i] = PyFloat_AsDouble(PySequence_Fast_GET_ITEM(seq, i));
            if (PyErr_Occurred()) {
                Py_DECREF(seq);
                return NULL;
            }
        }
        Py_DECREF(seq);
    }
    held hy = {0}, hs = {0}, hw = {0};
    sp_array ay, as, aw;
    PyObject *ret = NULL;
    if (get_array(y, "y_true", &hy, &ay) < 0 || get_array(s, "y_score", &hs, &as) < 0 ||
        (w != Py_None && get_array(w, "sample_weight", &hw, &aw) < 0))
        goto done;
    sp_eval_result *res = NULL;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = sp_eval_run(&ay, &as, w != Py_None ? &aw : NULL, &o, &res);
    if (rc == SP_OK && plot) rc = sp_eval_result_plot(res, plot, plot_title);
    Py_END_ALLOW_THREADS;
    if (rc < 0) {
        sp_eval_result_free(res);
        sppy_raise(rc);
        goto done;
    }
    ResultRef *ref = PyObject_New(ResultRef, &ResultRefType);
    if (!ref) {
        sp_eval_result_free(res);
        goto done;
    }
    ref->res = res; /* freed when the last array viewing it goes */
    owner_ref = (PyObject *)ref;
    ret = result_dict(res);
    owner_ref = NULL;
    Py_DECREF(ref);
done:
    release(&hy);
    release(&hs);
    release(&hw);
    return ret;
}

static PyObject *py_delong(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"y_true", "score_a", "score_b", "n_threads", NULL};
    PyObject *y, *a, *b;
    int n_threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "OOO|$i", kwlist, &y, &a, &b, &n_threads))
        return NULL;
    held hy = {0}, ha = {0}, hb = {0};
    sp_array ay, aa, ab;
    PyObject *ret = NULL;
    if (get_array(y, "y_true", &hy, &ay) < 0 || get_array(a, "score_a", &ha, &aa) < 0 ||
        get_array(b, "score_b", &hb, &ab) < 0)
        goto done;
    sp_eval_opts o;
    sp_eval_opts_init(&o);
    o.n_threads = n_threads;
    sp_eval_delong r;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = sp_eval_delong_test(&ay, &aa, &ab, &o, &r);
    Py_END_ALLOW_THREADS;
    if (rc < 0) {
        sppy_raise(rc);
        goto done;
    }
    ret = Py_BuildValue("{s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:d,s:K,s:K}", "auc_a", r.auc_a, "auc_b",
                        r.auc_b, "var_a", r.var_a, "var_b", r.var_b, "cov", r.cov, "diff", r.diff,
                        "z", r.z, "p_value", r.p_value, "n_positive",
                        (unsigned long long)r.n_positive, "n_negative",
                        (unsigned long long)r.n_negative);
done:
    release(&hy);
    release(&ha);
    release(&hb);
    return ret;
}

static PyObject *py_poisson(PyObject *self, PyObject *args, PyObject *kw) {
    (void)self;
    static char *kwlist[] = {"seed", "replicate", "n", "first_row", NULL};
    unsigned long long seed, first = 0;
    unsigned int rep;
    Py_ssize_t n;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "KIn|K", kwlist, &seed, &rep, &n, &first))
        return NULL;
    if (n < 0) return PyErr_Format(PyExc_ValueError, "n must be >= 0");
    PyObject *b = PyBytes_FromStringAndSize(NULL, n * (Py_ssize_t)sizeof(uint32_t));
    if (!b) return NULL;
    sp_eval_poisson_weights(seed, rep, first, (size_t)n, (uint32_t *)(void *)PyBytes_AS_STRING(b));
    return b;
}

static PyMethodDef eval_methods[] = {
    {"_eval", (PyCFunction)(void (*)(void))py_eval, METH_VARARGS | METH_KEYWORDS,
     "Raw evaluation entry point; use softpipe.metrics.evaluate."},
    {"_delong_test", (PyCFunction)(void (*)(void))py_delong, METH_VARARGS | METH_KEYWORDS,
     "Raw paired DeLong test; use softpipe.metrics.delong_test."},
    {"_poisson_weights", (PyCFunction)(void (*)(void))py_poisson, METH_VARARGS | METH_KEYWORDS,
     "uint32 Poisson(1) bootstrap counts as bytes; use softpipe.metrics.poisson_weights."},
    {NULL, NULL, 0, NULL}};

int sppy_eval_init(PyObject *m) {
    if (PyType_Ready(&ResultRefType) < 0 || PyType_Ready(&EvalArrayType) < 0) return -1;
    return PyModule_AddFunctions(m, eval_methods);
}
