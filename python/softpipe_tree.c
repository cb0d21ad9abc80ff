/* softpipe_tree.c — softpipe._softpipe._TreeModel: a compiled tree ensemble (softpipe/tree.h).
 *
 * predict() takes any float32 matrix exposing the buffer protocol (NumPy arrays, memoryviews; the
 * Python layer turns torch tensors into NumPy views) and reads it in place when its rows are
 * contiguous float32; other dtypes and layouts are converted once by the Python layer. The GIL is
 * released while the model predicts, so several Python threads can predict on one model. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>

#include <string.h>

PyObject *sppy_raise(sp_status rc);
int sppy_tree_init(PyObject *m);

typedef struct {
    PyObject_HEAD sp_tree_model *model;
} TreeModel;

static int tm_init(TreeModel *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"path", NULL};
    PyObject *path_obj;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O&", kwlist, PyUnicode_FSConverter, &path_obj))
        return -1;
    const char *path = PyBytes_AS_STRING(path_obj);
    sp_tree_model *m = NULL;
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = sp_tree_model_load(path, &m);
    Py_END_ALLOW_THREADS;
    Py_DECREF(path_obj);
    if (rc < 0) {
        sppy_raise(rc);
        return -1;
    }
    sp_tree_model_free(self->model);
    self->model = m;
    return 0;
}

static void tm_dealloc(TreeModel *self) {
    sp_tree_model_free(self->model);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static int check(TreeModel *self) {
    if (!self->model) {
        PyErr_SetString(PyExc_ValueError, "the model is not loaded");
        return -1;
    }
    return 0;
}

/* _predict(x, out, margin, threads): x a 2-D float32 buffer with contiguous rows, out a writable
 * float32 buffer of n_rows * num_outputs. */
static PyObject *tm_predict(TreeModel *self, PyObject *args) {
    PyObject *xo, *oo;
    int margin, threads;
    if (check(self) < 0 || !PyArg_ParseTuple(args, "OOpi", &xo, &oo, &margin, &threads))
        return NULL;
    Py_buffer xv, ov;
    if (PyObject_GetBuffer(xo, &xv, PyBUF_STRIDES | PyBUF_FORMAT) < 0) return NULL;
    if (PyObject_GetBuffer(oo, &ov, PyBUF_WRITABLE | PyBUF_C_CONTIGUOUS | PyBUF_FORMAT) < 0) {
        PyBuffer_Release(&xv);
        return NULL;
    }
    PyObject *ret = NULL;
    const char *f = xv.format ? xv.format : "B";
    if (*f == '<' || *f == '=' || *f == '@') f++;
    size_t nf = sp_tree_model_num_features(self->model);
    if (strcmp(f, "f") != 0 || xv.ndim != 2 || xv.strides[1] != 4 || xv.strides[0] % 4 ||
        xv.strides[0] < 0) {
        PyErr_SetString(PyExc_TypeError, "X must be a 2-D float32 array with contiguous rows");
        goto done;
    }
    size_t n = (size_t)xv.shape[0], cols = (size_t)xv.shape[1];
    if (cols < nf) {
        PyErr_Format(PyExc_ValueError, "X has %zu columns, the model expects %zu features", cols,
                     nf);
        goto done;
    }
    size_t no = sp_tree_model_num_outputs(self->model, margin);
    if ((size_t)ov.len < n * no * sizeof(float)) {
        PyErr_SetString(PyExc_ValueError, "output buffer too small");
        goto done;
    }
    /* rows that overlap (a broadcast row has stride 0) are made contiguous by the Python layer */
    size_t stride = n > 1 ? (size_t)xv.strides[0] / 4 : cols;
    if (stride < cols) {
        PyErr_SetString(PyExc_ValueError, "X rows overlap (stride smaller than a row); pass "
                                          "np.ascontiguousarray(X)");
        goto done;
    }
    sp_status rc;
    Py_BEGIN_ALLOW_THREADS;
    rc = sp_tree_predict(self->model, (const float *)xv.buf, n, stride, margin, threads,
                         (float *)ov.buf);
    Py_END_ALLOW_THREADS;
    if (rc < 0) {
        sppy_raise(rc);
        goto done;
    }
    ret = Py_NewRef(Py_None);
done:
    PyBuffer_Release(&xv);
    PyBuffer_Release(&ov);
    return ret;
}

static PyObject *tm_num_outputs(TreeModel *self, PyObject *arg) {
    if (check(self) < 0) return NULL;
    int margin = PyObject_IsTrue(arg);
    if (margin < 0) return NULL;
    return PyLong_FromUnsignedLong(sp_tree_model_num_outputs(self->model, margin));
}

static PyObject *tm_get_num_features(TreeModel *self, void *c) {
    (void)c;
    if (check(self) < 0) return NULL;
    return PyLong_FromUnsignedLong(sp_tree_model_num_features(self->model));
}

static PyObject *tm_get_num_classes(TreeModel *self, void *c) {
    (void)c;
    if (check(self) < 0) return NULL;
    return PyLong_FromUnsignedLong(sp_tree_model_num_classes(self->model));
}

static PyObject *tm_get_num_trees(TreeModel *self, void *c) {
    (void)c;
    if (check(self) < 0) return NULL;
    return PyLong_FromUnsignedLong(sp_tree_model_num_trees(self->model));
}

static PyObject *tm_get_objective(TreeModel *self, void *c) {
    (void)c;
    if (check(self) < 0) return NULL;
    return PyUnicode_FromString(sp_tree_model_objective(self->model));
}

static PyObject *tm_get_layout(TreeModel *self, void *c) {
    (void)c;
    if (check(self) < 0) return NULL;
    return PyUnicode_FromString(sp_tree_model_layout(self->model));
}

static PyMethodDef tm_methods[] = {
    {"_predict", (PyCFunction)tm_predict, METH_VARARGS,
     "_predict(X, out, margin, threads): X 2-D float32 with contiguous rows."},
    {"_num_outputs", (PyCFunction)tm_num_outputs, METH_O, "Values per row for margin=arg."},
    {NULL, NULL, 0, NULL}};

static PyGetSetDef tm_getset[] = {
    {"num_features", (getter)tm_get_num_features, NULL, "Features each row must have.", NULL},
    {"num_classes", (getter)tm_get_num_classes, NULL, "Classes (1 unless multiclass).", NULL},
    {"num_trees", (getter)tm_get_num_trees, NULL, "Trees in the model.", NULL},
    {"objective", (getter)tm_get_objective, NULL, "The objective, e.g. 'binary:logistic'.", NULL},
    {"layout", (getter)tm_get_layout, NULL, "The compiled layout: 'perfect' or 'general'.", NULL},
    {NULL, NULL, NULL, NULL, NULL}};

static PyTypeObject TreeModelType = {
    PyVarObject_HEAD_INIT(NULL, 0).tp_name = "softpipe._softpipe._TreeModel",
    .tp_basicsize = sizeof(TreeModel),
    .tp_dealloc = (destructor)tm_dealloc,
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "A compiled tree ensemble; use softpipe.TreeModel.",
    .tp_methods = tm_methods,
    .tp_getset = tm_getset,
    .tp_init = (initproc)tm_init,
    .tp_new = PyType_GenericNew,
};

int sppy_tree_init(PyObject *m) {
    if (PyType_Ready(&TreeModelType) < 0) return -1;
    return PyModule_AddObjectRef(m, "_TreeModel", (PyObject *)&TreeModelType);
}
