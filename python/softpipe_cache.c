/* softpipe_cache.c — softpipe._softpipe._path_digest: the content digest stage keys use, for the
 * Python side of the cache (softpipe/cache.py). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <softpipe.h>

PyObject *sppy_raise(sp_status rc);
int sppy_cache_init(PyObject *m);

static PyObject *py_path_digest(PyObject *self, PyObject *arg) {
    (void)self;
    PyObject *bytes;
    if (!PyUnicode_FSConverter(arg, &bytes)) return NULL;
    char out[96];
    sp_status rc;
    const char *path = PyBytes_AS_STRING(bytes);
    Py_BEGIN_ALLOW_THREADS;
    rc = sp_path_digest(path, out);
    Py_END_ALLOW_THREADS;
    Py_DECREF(bytes);
    if (rc < 0) return sppy_raise(rc);
    return PyUnicode_FromString(out);
}

static PyMethodDef cache_methods[] = {
    {"_path_digest", py_path_digest, METH_O,
     "The content digest of a file ('sha256:...') or folder ('tree-sha256:...')."},
    {NULL, NULL, 0, NULL}};

int sppy_cache_init(PyObject *m) {
    return PyModule_AddFunctions(m, cache_methods);
}
