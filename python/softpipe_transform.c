/* softpipe_transform.c — softpipe._softpipe._Transform, the feature transform of
 * <softpipe/transform.h> for Python; softpipe/transform.py wraps it as
 * softpipe.transform.Transform.
 *
 * Columns come in as (names, values) sequences built by the Python layer: a contiguous float64 or
 * int64 buffer (NumPy arrays, read in place), or a sequence of str / bytes / None for text. Text
 * is passed to C as pointers into the str objects' cached UTF-8, which stay alive because this
 * file holds a tuple of them for the whole call. The output is a caller-allocated, C-contiguous,
 * writable float32 buffer (the NumPy array the Python layer returns), filled by
 * sp_transform_apply with the GIL released: the same C code as `softpipe transform apply`, so
 * the two give identical bytes. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>

#include <math.h>
#include <string.h>

PyObject *sppy_raise(sp_status rc);
int sppy_transform_init(PyObject *m);

typedef struct {
    PyObject_HEAD sp_transform *tf;
} TransformObject;

static void transform_dealloc(TransformObject *self) {
    sp_transform_free(self->tf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyObject *transform_new(PyTypeObject *type, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"path", "json", NULL};
    PyObject *path = NULL;
    const char *json = NULL;
    Py_ssize_t json_len = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "|O&$z#", kw, PyUnicode_FSConverter, &path,
                                     &json, &json_len))
        return NULL;
    if (!path == !json) {
        Py_XDECREF(path);
        PyErr_SetString(PyExc_TypeError, "give exactly one of path and json");
        return NULL;
    }
    TransformObject *self = (TransformObject *)type->tp_alloc(type, 0);
    if (!self) {
        Py_XDECREF(path);
        return NULL;
    }
    sp_status rc;
    if (path) {
        const char *p = PyBytes_AS_STRING(path);
        Py_BEGIN_ALLOW_THREADS rc = sp_transform_load(p, &self->tf);
        Py_END_ALLOW_THREADS
    } else {
        rc = sp_transform_load_buffer("transform", json, (size_t)json_len, &self->tf);
    }
    Py_XDECREF(path);
    if (rc < 0) {
        sppy_raise(rc);
        Py_DECREF(self);
        return NULL;
    }
    return (PyObject *)self;
}

/* ---- columns */

typedef struct held_col {
    Py_buffer view;
    int has_view;
    PyObject *items; /* a tuple of the text values (keeps their UTF-8 alive) */
    const char **str;
    size_t *len;
} held_col;

typedef struct held_input {
    sp_transform_column *cols;
    held_col *held;
    Py_ssize_t n;
    PyObject *names; /* the tuple of names (keeps their UTF-8 alive) */
} held_input;

static void held_free(held_input *h) {
    for (Py_ssize_t i = 0; i < h->n && h->held; i++) {
        if (h->held[i].has_view) PyBuffer_Release(&h->held[i].view);
        Py_XDECREF(h->held[i].items);
        PyMem_Free(h->held[i].str);
        PyMem_Free(h->held[i].len);
    }
    PyMem_Free(h->held);
    PyMem_Free(h->cols);
    Py_XDECREF(h->names);
    memset(h, 0, sizeof *h);
}

static int text_column(const char *name, PyObject *obj, Py_ssize_t n_rows, held_col *hc,
                       sp_transform_column *col) {
    hc->items = PySequence_Tuple(obj);
    if (!hc->items) {
        PyErr_Format(PyExc_TypeError,
                     "column '%s': expected a float64/int64 array or a sequence of str, got %.80s",
                     name, Py_TYPE(obj)->tp_name);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(hc->items);
    if (n != n_rows) {
        PyErr_Format(PyExc_ValueError, "column '%s' has %zd rows, the others have %zd", name, n,
                     n_rows);
        return -1;
    }
    hc->str = PyMem_Calloc((size_t)(n ? n : 1), sizeof *hc->str);
    hc->len = PyMem_Calloc((size_t)(n ? n : 1), sizeof *hc->len);
    if (!hc->str || !hc->len) {
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t r = 0; r < n; r++) {
        PyObject *v = PyTuple_GET_ITEM(hc->items, r);
        if (v == Py_None || (PyFloat_Check(v) && isnan(PyFloat_AS_DOUBLE(v)))) continue;
        if (PyUnicode_Check(v)) {
            Py_ssize_t len;
            hc->str[r] = PyUnicode_AsUTF8AndSize(v, &len);
            if (!hc->str[r]) return -1;
            hc->len[r] = (size_t)len;
        } else if (PyBytes_Check(v)) {
            hc->str[r] = PyBytes_AS_STRING(v);
            hc->len[r] = (size_t)PyBytes_GET_SIZE(v);
        } else {
            PyErr_Format(PyExc_TypeError, "column '%s', row %zd: expected str or None, got %.80s",
                         name, r, Py_TYPE(v)->tp_name);
            return -1;
        }
    }
    col->str = hc->str;
    col->str_len = hc->len;
    return 0;
}

/* Builds the sp_transform_input for names[i] -> values[i]; n_rows is every column's length. */
static int get_input(PyObject *names, PyObject *values, Py_ssize_t n_rows, held_input *h,
                     sp_transform_input *in) {
    memset(h, 0, sizeof *h);
    h->names = PySequence_Tuple(names);
    PyObject *vals = PySequence_Fast(values, "values must be a sequence");
    if (!h->names || !vals) {
        Py_XDECREF(vals);
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(h->names);
    if (PySequence_Fast_GET_SIZE(vals) != n) {
        Py_DECREF(vals);
        PyErr_SetString(PyExc_ValueError, "names and values differ in length");
        return -1;
    }
    h->cols = PyMem_Calloc((size_t)(n ? n : 1), sizeof *h->cols);
    h->held = PyMem_Calloc((size_t)(n ? n : 1), sizeof *h->held);
    if (!h->cols || !h->held) {
        Py_DECREF(vals);
        PyErr_NoMemory();
        return -1;
    }
    h->n = n;
    int ret = 0;
    for (Py_ssize_t i = 0; i < n && ret == 0; i++) {
        PyObject *name = PyTuple_GET_ITEM(h->names, i), *v = PySequence_Fast_GET_ITEM(vals, i);
        const char *cname = PyUnicode_Check(name) ? PyUnicode_AsUTF8(name) : NULL;
        if (!cname) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "column names must be str");
            ret = -1;
            break;
        }
        sp_transform_column *col = &h->cols[i];
        held_col *hc = &h->held[i];
        col->name = cname;
        if (PyObject_CheckBuffer(v) && !PyBytes_Check(v)) {
            if (PyObject_GetBuffer(v, &hc->view, PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
                ret = -1;
                break;
            }
            hc->has_view = 1;
            const char *f = hc->view.format ? hc->view.format : "B";
            if (*f == '<' || *f == '=' || *f == '@') f++;
            Py_ssize_t len = hc->view.itemsize ? hc->view.len / hc->view.itemsize : 0;
            if (hc->view.ndim != 1 || hc->view.itemsize != 8 ||
                (strcmp(f, "d") != 0 && strcmp(f, "q") != 0 && strcmp(f, "l") != 0)) {
                PyErr_Format(PyExc_TypeError,
                             "column '%s': expected a 1-D float64 or int64 array (format '%s')",
                             cname, hc->view.format ? hc->view.format : "B");
                ret = -1;
            } else if (len != n_rows) {
                PyErr_Format(PyExc_ValueError, "column '%s' has %zd rows, the others have %zd",
                             cname, len, n_rows);
                ret = -1;
            } else if (f[0] == 'd') {
                col->f64 = hc->view.buf;
            } else {
                col->i64 = hc->view.buf;
            }
        } else {
            ret = text_column(cname, v, n_rows, hc, col);
        }
    }
    Py_DECREF(vals);
    if (ret < 0) return -1;
    in->columns = h->cols;
    in->n_columns = (size_t)n;
    in->n_rows = (uint64_t)n_rows;
    return 0;
}

static PyObject *transform_fit(TransformObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"names", "values", "n_rows", "threads", NULL};
    PyObject *names, *values;
    Py_ssize_t n_rows;
    int threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOn|i", kw, &names, &values, &n_rows, &threads))
        return NULL;
    held_input h;
    sp_transform_input in;
    if (get_input(names, values, n_rows, &h, &in) < 0) {
        held_free(&h);
        return NULL;
    }
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.n_threads = threads;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS rc = sp_transform_fit(self->tf, &in, &o);
    Py_END_ALLOW_THREADS held_free(&h);
    if (rc < 0) return sppy_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *transform_apply(TransformObject *self, PyObject *args, PyObject *kwargs) {
    static char *kw[] = {"names", "values", "n_rows", "out", "threads", NULL};
    PyObject *names, *values, *out;
    Py_ssize_t n_rows;
    int threads = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "OOnO|i", kw, &names, &values, &n_rows, &out,
                                     &threads))
        return NULL;
    Py_buffer ob;
    if (PyObject_GetBuffer(out, &ob, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0)
        return NULL;
    const char *f = ob.format ? ob.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    if (strcmp(f, "f") != 0 || ob.itemsize != 4) {
        PyBuffer_Release(&ob);
        PyErr_SetString(PyExc_TypeError, "out must be a writable C-contiguous float32 array");
        return NULL;
    }
    held_input h;
    sp_transform_input in;
    if (get_input(names, values, n_rows, &h, &in) < 0) {
        held_free(&h);
        PyBuffer_Release(&ob);
        return NULL;
    }
    sp_transform_opts o;
    sp_transform_opts_init(&o);
    o.n_threads = threads;
    sp_status rc;
    float *dst = ob.buf;
    size_t cap = (size_t)(ob.len / 4);
    Py_BEGIN_ALLOW_THREADS rc = sp_transform_apply(self->tf, &in, &o, dst, cap);
    Py_END_ALLOW_THREADS held_free(&h);
    PyBuffer_Release(&ob);
    if (rc < 0) return sppy_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *transform_to_json(TransformObject *self, PyObject *Py_UNUSED(ignored)) {
    char *json;
    size_t len;
    sp_status rc = sp_transform_to_json(self->tf, &json, &len);
    if (rc < 0) return sppy_raise(rc);
    PyObject *s = PyUnicode_DecodeUTF8(json, (Py_ssize_t)len, "surrogateescape");
    sp_free(json);
    return s;
}

static PyObject *transform_save(TransformObject *self, PyObject *arg) {
    PyObject *path;
    if (!PyUnicode_FSConverter(arg, &path)) return NULL;
    const char *p = PyBytes_AS_STRING(path);
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS rc = sp_transform_save(self->tf, p);
    Py_END_ALLOW_THREADS Py_DECREF(path);
    if (rc < 0) return sppy_raise(rc);
    Py_RETURN_NONE;
}

static PyObject *get_features(TransformObject *self, void *closure) {
    (void)closure;
    size_t n = sp_transform_n_features(self->tf);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        PyObject *s = PyUnicode_DecodeUTF8(
            sp_transform_feature_name(self->tf, i),
            (Py_ssize_t)strlen(sp_transform_feature_name(self->tf, i)), "surrogateescape");
        if (!s) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, s);
    }
    return list;
}

static PyObject *get_inputs(TransformObject *self, void *closure) {
    (void)closure;
    size_t n = sp_transform_n_inputs(self->tf);
    PyObject *list = PyList_New((Py_ssize_t)n);
    for (size_t i = 0; list && i < n; i++) {
        int text = 0;
        const char *name = sp_transform_input_name(self->tf, i, &text);
        PyObject *t = Py_BuildValue("(sO)", name, text ? Py_True : Py_False);
        if (!t) {
            Py_DECREF(list);
            return NULL;
        }
        PyList_SET_ITEM(list, (Py_ssize_t)i, t);
    }
    return list;
}

static PyObject *get_fitted(TransformObject *self, void *closure) {
    (void)closure;
    return PyBool_FromLong(sp_transform_fitted(self->tf));
}

static PyObject *get_fit_rows(TransformObject *self, void *closure) {
    (void)closure;
    return PyLong_FromUnsignedLongLong(sp_transform_fit_rows(self->tf));
}

static PyObject *get_n_features(TransformObject *self, void *closure) {
    (void)closure;
    return PyLong_FromSize_t(sp_transform_n_features(self->tf));
}

static PyMethodDef transform_methods[] = {
    {"_fit", (PyCFunction)(void (*)(void))transform_fit, METH_VARARGS | METH_KEYWORDS,
     "_fit(names, values, n_rows, threads=0): fit the statistics in place"},
    {"_apply", (PyCFunction)(void (*)(void))transform_apply, METH_VARARGS | METH_KEYWORDS,
     "_apply(names, values, n_rows, out, threads=0): fill out (float32, n_rows x n_features)"},
    {"to_json", (PyCFunction)transform_to_json, METH_NOARGS, "the transform as JSON text"},
    {"save", (PyCFunction)transform_save, METH_O, "save(path): write the JSON atomically"},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef transform_getset[] = {
    {"features", (getter)get_features, NULL, "output feature names, in column order", NULL},
    {"inputs", (getter)get_inputs, NULL, "input columns: [(name, is_text), ...]", NULL},
    {"fitted", (getter)get_fitted, NULL, "whether every step has its statistics", NULL},
    {"fit_rows", (getter)get_fit_rows, NULL, "rows the statistics came from", NULL},
    {"n_features", (getter)get_n_features, NULL, "number of output features", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject TransformType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._softpipe._Transform",
    .tp_basicsize = sizeof(TransformObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "_Transform(path=None, *, json=None): a feature transform (see softpipe.transform)",
    .tp_new = transform_new,
    .tp_dealloc = (destructor)transform_dealloc,
    .tp_methods = transform_methods,
    .tp_getset = transform_getset,
};

int sppy_transform_init(PyObject *m) {
    if (PyType_Ready(&TransformType) < 0) return -1;
    return PyModule_AddObjectRef(m, "_Transform", (PyObject *)&TransformType);
}
