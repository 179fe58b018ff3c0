/* _lpcc: the lpcc pipeline in-process (lpcc_invoke) for the Python package.
 * The GIL is released while the pipeline runs; each call owns its state. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "lpcc_cli.h"

#include <stdlib.h>
#include <string.h>

/* argv as malloc'd copies of a sequence of str; NULL with an exception set. */
static char **argv_from(PyObject *seq, int *argc) {
    PyObject *fast = PySequence_Fast(seq, "argv must be a sequence of str");
    if (!fast) return NULL;
    Py_ssize_t n = PySequence_Fast_GET_SIZE(fast);
    if (n < 1 || n > 1 << 20) {
        Py_DECREF(fast);
        PyErr_SetString(PyExc_ValueError, "argv needs the program name and at most 2^20 entries");
        return NULL;
    }
    char **argv = calloc((size_t)n + 1, sizeof *argv);
    if (!argv) {
        Py_DECREF(fast);
        PyErr_NoMemory();
        return NULL;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PySequence_Fast_GET_ITEM(fast, i);
        const char *s = PyUnicode_Check(item) ? PyUnicode_AsUTF8(item) : NULL;
        if (!s) {
            if (!PyErr_Occurred()) PyErr_SetString(PyExc_TypeError, "argv entries must be str");
        } else if (!(argv[i] = strdup(s))) {
            PyErr_NoMemory();
        }
        if (!argv[i]) {
            for (Py_ssize_t k = 0; k < i; k++) free(argv[k]);
            free(argv);
            Py_DECREF(fast);
            return NULL;
        }
    }
    Py_DECREF(fast);
    *argc = (int)n;
    return argv;
}

static void argv_free(char **argv, int argc) {
    for (int i = 0; i < argc; i++) free(argv[i]);
    free(argv);
}

static PyObject *text_or_none(const char *s, size_t len) {
    if (!s) Py_RETURN_NONE;
    return PyUnicode_DecodeUTF8(s, (Py_ssize_t)len, "replace");
}

static PyObject *bytes_or_none(const char *s, size_t len) {
    if (!s) Py_RETURN_NONE;
    return PyBytes_FromStringAndSize(s, (Py_ssize_t)len);
}

static int set_item(PyObject *d, const char *key, PyObject *v) {
    if (!v) return -1;
    int rc = PyDict_SetItemString(d, key, v);
    Py_DECREF(v);
    return rc;
}

/* invoke(argv, model_bytes=None, want_plan=False, want_layers=False) -> dict */
static PyObject *py_invoke(PyObject *self, PyObject *args, PyObject *kw) {
    static char *kwlist[] = {"argv", "model_bytes", "want_plan", "want_layers", NULL};
    PyObject *seq;
    Py_buffer model = {0};
    int want_plan = 0, want_layers = 0;
    if (!PyArg_ParseTupleAndKeywords(args, kw, "O|z*pp", kwlist, &seq, &model, &want_plan, &want_layers))
        return NULL;
    int argc = 0;
    char **argv = argv_from(seq, &argc);
    if (!argv) {
        PyBuffer_Release(&model);
        return NULL;
    }
    lpcc_request req = {.argc = argc, .argv = argv, .model_bytes = model.buf,
                        .model_len = model.buf ? (size_t)model.len : 0,
                        .want_plan = want_plan, .want_layers = want_layers};
    lpcc_outcome o;
    Py_BEGIN_ALLOW_THREADS
    lpcc_invoke(&req, &o);
    Py_END_ALLOW_THREADS
    PyBuffer_Release(&model);
    argv_free(argv, argc);

    PyObject *d = PyDict_New();
    if (!d || set_item(d, "exit_code", PyLong_FromLong(o.exit_code)) ||
        set_item(d, "status", PyUnicode_FromString(lp_status_name(o.status))) ||
        set_item(d, "out", text_or_none(o.out ? o.out : "", o.out_len)) ||
        set_item(d, "err", text_or_none(o.err ? o.err : "", o.err_len)) ||
        set_item(d, "error", PyUnicode_DecodeUTF8(o.error, (Py_ssize_t)strlen(o.error), "replace")) ||
        set_item(d, "n_warnings", PyLong_FromLong(o.n_warnings)) ||
        set_item(d, "plan_json", bytes_or_none(o.plan_json, o.plan_json_len)) ||
        set_item(d, "layers_json", bytes_or_none(o.layers_json, o.layers_json_len)) ||
        set_item(d, "graph_json", bytes_or_none(o.graph_json, o.graph_json_len))) {
        Py_XDECREF(d);
        d = NULL;
    }
    lpcc_outcome_free(&o);
    return d;
}

/* main(argv) -> int: the lpcc command itself, printing on the process's stdout and stderr. */
static PyObject *py_main(PyObject *self, PyObject *arg) {
    int argc = 0;
    char **argv = argv_from(arg, &argc);
    if (!argv) return NULL;
    /* lpcc_main's getopt permutes argv: it owns this copy */
    char **copy = malloc(((size_t)argc + 1) * sizeof *copy);
    if (!copy) {
        argv_free(argv, argc);
        return PyErr_NoMemory();
    }
    memcpy(copy, argv, ((size_t)argc + 1) * sizeof *copy);
    int rc;
    Py_BEGIN_ALLOW_THREADS
    rc = lpcc_main(argc, copy);
    fflush(stdout);
    fflush(stderr);
    Py_END_ALLOW_THREADS
    free(copy);
    argv_free(argv, argc);
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"invoke", (PyCFunction)(void (*)(void))py_invoke, METH_VARARGS | METH_KEYWORDS,
     "invoke(argv, model_bytes=None, want_plan=False, want_layers=False) -> dict\n"
     "Runs the lpcc pipeline in-process, the GIL released."},
    {"main", py_main, METH_O, "main(argv) -> int: the lpcc command, on this process's stdout/stderr."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lpcc", "lpcc's C pipeline.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lpcc(void) { return PyModule_Create(&module); }
