/* _lpcc: the lpcc pipeline in-process (lpcc_invoke) for the Python package.
 * The GIL is released while the pipeline runs; each call owns its state. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include "lp_runtime.h"
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

/* ---- the runtime (lp_runtime.h) ------------------------------------------------ */

/* A runtime and its diagnostics buffer; used by one call at a time. */
typedef struct rt_box {
    lp_rt *rt;
    int busy;
} rt_box;

static void rt_capsule_free(PyObject *cap) {
    rt_box *b = PyCapsule_GetPointer(cap, "lpcc.rt");
    if (!b) return;
    lp_rt_close(b->rt);
    free(b);
}

/* (exit_code, error, diagnostics) of a diag that wrote into a memstream. */
static PyObject *failure(lp_status st, const lp_diag *d, char *text, size_t len) {
    return Py_BuildValue("(iss#)", lpcc_exit_code(st), d->last_error, text ? text : "",
                         (Py_ssize_t)(text ? len : 0));
}

/* rt_open(dir, device, include_dir) -> (capsule or None, (exit, error, diagnostics)) */
static PyObject *py_rt_open(PyObject *self, PyObject *args) {
    const char *dir, *device, *include_dir;
    if (!PyArg_ParseTuple(args, "sss", &dir, &device, &include_dir)) return NULL;
    char *text = NULL;
    size_t len = 0;
    FILE *sink = open_memstream(&text, &len);
    if (!sink) return PyErr_NoMemory();
    lp_diag d = lp_diag_make(dir);
    d.sink = sink;
    lp_rt_options o = lp_rt_defaults();
    o.device = device;
    o.include_dir = include_dir;
    lp_rt *rt = NULL;
    lp_status st;
    Py_BEGIN_ALLOW_THREADS
    st = lp_rt_open(dir, &o, &rt, &d);
    Py_END_ALLOW_THREADS
    fclose(sink);
    PyObject *report = failure(st, &d, text, len);
    free(text);
    if (!report) {
        lp_rt_close(rt);
        return NULL;
    }
    if (st != LP_OK) return Py_BuildValue("(ON)", Py_None, report);
    rt_box *b = calloc(1, sizeof *b);
    if (!b) {
        lp_rt_close(rt);
        Py_DECREF(report);
        return PyErr_NoMemory();
    }
    b->rt = rt;
    PyObject *cap = PyCapsule_New(b, "lpcc.rt", rt_capsule_free);
    if (!cap) {
        lp_rt_close(rt);
        free(b);
        Py_DECREF(report);
        return NULL;
    }
    return Py_BuildValue("(NN)", cap, report);
}

static PyObject *io_list(const lp_rt *rt, int n, const lp_rt_io *(*get)(const lp_rt *, int)) {
    PyObject *list = PyList_New(n);
    for (int i = 0; list && i < n; i++) {
        const lp_rt_io *io = get(rt, i);
        PyObject *dims = PyTuple_New(io->rank);
        for (int k = 0; dims && k < io->rank; k++) {
            PyObject *v = PyLong_FromLongLong((long long)io->dims[k]);
            if (!v) Py_CLEAR(dims);
            else PyTuple_SET_ITEM(dims, k, v);
        }
        PyObject *item = dims ? Py_BuildValue("(siNK)", io->name, (int)io->dtype, dims,
                                              (unsigned long long)io->bytes) : NULL;
        if (!item) {
            Py_CLEAR(list);
            break;
        }
        PyList_SET_ITEM(list, i, item);
    }
    return list;
}

static rt_box *box_of(PyObject *cap) { return PyCapsule_GetPointer(cap, "lpcc.rt"); }

/* rt_io(capsule) -> (inputs, outputs), each [(name, onnx dtype, dims, bytes)] */
static PyObject *py_rt_io(PyObject *self, PyObject *cap) {
    rt_box *b = box_of(cap);
    if (!b) return NULL;
    return Py_BuildValue("(NN)", io_list(b->rt, lp_rt_n_inputs(b->rt), lp_rt_input),
                         io_list(b->rt, lp_rt_n_outputs(b->rt), lp_rt_output));
}

/* rt_run(capsule, [bytes-like per input]) -> ((exit, error, diagnostics), [bytes per output] or None) */
static PyObject *py_rt_run(PyObject *self, PyObject *args) {
    PyObject *cap, *inputs;
    if (!PyArg_ParseTuple(args, "OO!", &cap, &PyList_Type, &inputs)) return NULL;
    rt_box *b = box_of(cap);
    if (!b) return NULL;
    if (b->busy) {
        PyErr_SetString(PyExc_RuntimeError, "this lpcc.Runtime is running on another thread");
        return NULL;
    }
    int n = lp_rt_n_inputs(b->rt);
    if (PyList_GET_SIZE(inputs) != n) {
        PyErr_Format(PyExc_ValueError, "expected %d inputs", n);
        return NULL;
    }
    char *text = NULL;
    size_t len = 0;
    FILE *sink = open_memstream(&text, &len);
    if (!sink) return PyErr_NoMemory();
    lp_diag d = lp_diag_make(NULL);
    d.sink = sink;
    lp_status st = LP_OK;
    for (int i = 0; st == LP_OK && i < n; i++) {
        Py_buffer view;
        if (PyObject_GetBuffer(PyList_GET_ITEM(inputs, i), &view, PyBUF_C_CONTIGUOUS) != 0) {
            fclose(sink);
            free(text);
            return NULL;
        }
        st = lp_rt_set_input_bytes(b->rt, i, view.buf, (uint64_t)view.len, &d);
        PyBuffer_Release(&view);
    }
    b->busy = 1;
    if (st == LP_OK) {
        Py_BEGIN_ALLOW_THREADS
        st = lp_rt_run(b->rt, &d);
        Py_END_ALLOW_THREADS
    }
    b->busy = 0;
    fclose(sink);
    PyObject *report = failure(st, &d, text, len);
    free(text);
    if (!report) return NULL;
    if (st != LP_OK) return Py_BuildValue("(NO)", report, Py_None);
    int m = lp_rt_n_outputs(b->rt);
    PyObject *outs = PyList_New(m);
    for (int i = 0; outs && i < m; i++) {
        const void *data = lp_rt_output_data(b->rt, i);
        PyObject *v = data ? PyBytes_FromStringAndSize(data, (Py_ssize_t)lp_rt_output(b->rt, i)->bytes)
                           : (Py_INCREF(Py_None), Py_None);
        if (!v) Py_CLEAR(outs);
        else PyList_SET_ITEM(outs, i, v);
    }
    if (!outs) {
        Py_DECREF(report);
        return NULL;
    }
    return Py_BuildValue("(NN)", report, outs);
}

static PyMethodDef methods[] = {
    {"rt_open", py_rt_open, METH_VARARGS, "rt_open(dir, device, include_dir) -> (runtime or None, report)"},
    {"rt_io", py_rt_io, METH_O, "rt_io(runtime) -> (inputs, outputs)"},
    {"rt_run", py_rt_run, METH_VARARGS, "rt_run(runtime, inputs) -> (report, outputs or None)"},
    {"invoke", (PyCFunction)(void (*)(void))py_invoke, METH_VARARGS | METH_KEYWORDS,
     "invoke(argv, model_bytes=None, want_plan=False, want_layers=False) -> dict\n"
     "Runs the lpcc pipeline in-process, the GIL released."},
    {"main", py_main, METH_O, "main(argv) -> int: the lpcc command, on this process's stdout/stderr."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_lpcc", "lpcc's C pipeline.", -1, methods,
                                    NULL, NULL, NULL, NULL};

PyMODINIT_FUNC PyInit__lpcc(void) { return PyModule_Create(&module); }
