/* Loads every model of the ONNX backend test suites found on this machine:
 * Debian's libonnx-testdata and the data shipped in the onnx Python package.
 * Each model must load, or be refused as unsupported with a reason; an
 * "invalid model" verdict on the spec's own test models is a loader bug.
 *
 * Each loaded graph is checked for consistency and, where python3 and onnx
 * are at hand, against the onnx package's own reading of the file (node,
 * constant, initializer, input and output counts).
 *
 * LPCC_ONNX_TESTDATA overrides the Debian folder, LPCC_ONNX_PACKAGE_DIR the
 * onnx package folder (otherwise asked of python3). */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "lp_frontend.h"

/* A growable list of file paths. */
typedef struct path_list {
    char **items;
    size_t n, cap;
} path_list;

static void paths_add(path_list *l, const char *path) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        char **grown = realloc(l->items, cap * sizeof *grown);
        assert_non_null(grown);
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n] = strdup(path);
    assert_non_null(l->items[l->n]);
    l->n++;
}

static void paths_free(path_list *l) {
    for (size_t i = 0; i < l->n; i++) free(l->items[i]);
    free(l->items);
    memset(l, 0, sizeof *l);
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static bool ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* Every *.onnx below dir, sorted, links not followed. */
static void find_models(const char *dir, path_list *out) {
    DIR *dh = opendir(dir);
    if (!dh) return;
    struct dirent *e;
    while ((e = readdir(dh)) != NULL) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        char *path = NULL;
        assert_true(asprintf(&path, "%s/%s", dir, e->d_name) >= 0);
        struct stat sb;
        if (lstat(path, &sb) == 0) {
            if (S_ISDIR(sb.st_mode))
                find_models(path, out);
            else if (S_ISREG(sb.st_mode) && ends_with(e->d_name, ".onnx"))
                paths_add(out, path);
        }
        free(path);
    }
    closedir(dh);
}

/* Why a model was refused, from its message; "other" when none matches. */
static const struct {
    const char *needle, *reason;
} reason_table[] = {
    {"control-flow", "control flow (If/Loop/Scan)"},
    {"operator domain", "non-default domain"},
    {"model-local function", "local function"},
    {"sparse", "sparse tensor"},
    {"strings", "string tensor"},
    {"only tensors are supported", "non-tensor value (sequence, map, optional)"},
    {"training info", "training info"},
    {"segments", "segmented tensor"},
    {"default ONNX domain", "no default-domain opset"},
};
#define N_REASONS (sizeof reason_table / sizeof reason_table[0] + 1)

static const char *refusal_reason(const char *msg) {
    for (size_t i = 0; i < N_REASONS - 1; i++)
        if (strstr(msg, reason_table[i].needle)) return reason_table[i].reason;
    return "other";
}

typedef struct reason_count {
    const char *reason;
    int count;
    char example[512];
} reason_count;

typedef struct suite_result {
    int found, loaded, refused, failed;
    reason_count reasons[N_REASONS];
    int n_reasons;
} suite_result;

static void count_refusal(suite_result *r, const char *path, const char *msg) {
    const char *reason = refusal_reason(msg);
    int i = 0;
    while (i < r->n_reasons && strcmp(r->reasons[i].reason, reason) != 0) i++;
    if (i == r->n_reasons) {
        r->reasons[i].reason = reason;
        snprintf(r->reasons[i].example, sizeof r->reasons[i].example, "%.200s: %.300s", path, msg);
        r->n_reasons++;
    }
    r->reasons[i].count++;
    r->refused++;
}

/* What a loaded graph must satisfy whatever the model: indices in range,
 * nodes in topological order, producers consistent. Returns a complaint or
 * NULL. */
static const char *graph_defect(const lp_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            if (v < -1 || v >= g->n_values) return "input index out of range";
            if (v >= 0 && g->values[v].producer >= i) return "node reads a later node's output";
        }
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (v < -1 || v >= g->n_values) return "output index out of range";
            if (v >= 0 && g->values[v].producer != i) return "output's producer is not its node";
        }
    }
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        bool has_data = v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT;
        if (has_data != (v->data.where != LP_DATA_NONE)) return "data presence does not match kind";
        if (v->data.where == LP_DATA_INLINE && v->dtype != LP_DT_STRING) {
            uint64_t bytes;
            if (lp_value_bytes(v, &bytes) && bytes != v->data.nbytes)
                return "inline bytes do not match dtype and shape";
        }
    }
    return NULL;
}

/* The onnx package's reading of each model (tests/support/onnx_counts.py),
 * sorted by path; empty when python3 or onnx is missing. */
typedef struct oracle_row {
    char *path;
    int nodes, constants, initializers, inputs, outputs;
} oracle_row;

typedef struct oracle {
    oracle_row *rows;
    size_t n, cap;
} oracle;

static int cmp_row(const void *a, const void *b) {
    return strcmp(((const oracle_row *)a)->path, ((const oracle_row *)b)->path);
}

/* One python3 run for all folders: importing onnx dominates its time. */
static void oracle_read(char *const *dirs, int n_dirs, oracle *o) {
    const char *src = getenv("LPCC_SOURCE_DIR");
    if (!src || !*src || strchr(src, '\'') || n_dirs == 0) return;
    char *cmd = NULL;
    assert_true(asprintf(&cmd, "python3 '%s/tests/support/onnx_counts.py'", src) >= 0);
    for (int i = 0; i < n_dirs; i++) {
        if (strchr(dirs[i], '\'')) continue;
        char *longer = NULL;
        assert_true(asprintf(&longer, "%s '%s'", cmd, dirs[i]) >= 0);
        free(cmd);
        cmd = longer;
    }
    char *full = NULL;
    assert_true(asprintf(&full, "%s 2>/dev/null", cmd) >= 0);
    free(cmd);
    cmd = full;
    FILE *p = popen(cmd, "r");
    free(cmd);
    if (!p) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, p) > 0) {
        oracle_row row;
        char *tab = strchr(line, '\t');
        if (!tab) continue;
        *tab = '\0';
        if (sscanf(tab + 1, "%d %d %d %d %d", &row.nodes, &row.constants, &row.initializers,
                   &row.inputs, &row.outputs) != 5)
            continue;
        if (o->n == o->cap) {
            o->cap = o->cap ? o->cap * 2 : 256;
            o->rows = realloc(o->rows, o->cap * sizeof *o->rows);
            assert_non_null(o->rows);
        }
        row.path = strdup(line);
        assert_non_null(row.path);
        o->rows[o->n++] = row;
    }
    free(line);
    pclose(p);
    qsort(o->rows, o->n, sizeof *o->rows, cmp_row);
}

static void oracle_free(oracle *o) {
    for (size_t i = 0; i < o->n; i++) free(o->rows[i].path);
    free(o->rows);
    memset(o, 0, sizeof *o);
}

/* Where lpcc's graph and the onnx package's counts disagree; NULL if they
 * agree or the oracle has no row for the model. */
static const char *oracle_mismatch(const oracle *o, const char *path, const lp_graph *g,
                                   char *buf, size_t cap) {
    oracle_row key = {.path = (char *)path};
    const oracle_row *row = o->n ? bsearch(&key, o->rows, o->n, sizeof *o->rows, cmp_row) : NULL;
    if (!row) return NULL;
    int constants = 0, weights = 0;
    for (int i = 0; i < g->n_values; i++) {
        constants += g->values[i].kind == LP_VALUE_CONSTANT;
        weights += g->values[i].kind == LP_VALUE_WEIGHT;
    }
    if (row->nodes == g->n_nodes && row->constants == constants && row->initializers == weights &&
        row->inputs == g->n_inputs && row->outputs == g->n_outputs)
        return NULL;
    snprintf(buf, cap,
             "nodes/constants/initializers/inputs/outputs: lpcc %d/%d/%d/%d/%d, onnx %d/%d/%d/%d/%d",
             g->n_nodes, constants, weights, g->n_inputs, g->n_outputs, row->nodes, row->constants,
             row->initializers, row->inputs, row->outputs);
    return buf;
}

static void run_suite(const char *label, const char *dir, const oracle *o, suite_result *r,
                      int *failures) {
    path_list models = {0};
    find_models(dir, &models);
    qsort(models.items, models.n, sizeof *models.items, cmp_str);
    r->found = (int)models.n;
    char why[256];
    for (size_t i = 0; i < models.n; i++) {
        const char *path = models.items[i];
        lp_diag d = lp_diag_make(path);
        d.sink = NULL;
        lp_graph *g = NULL;
        lp_load_options opt = {.require_weights = false};
        lp_status st = lp_frontend_load(path, &opt, &g, &d);
        if (st == LP_OK) {
            const char *defect = graph_defect(g);
            if (!defect) defect = oracle_mismatch(o, path, g, why, sizeof why);
            if (defect) {
                fprintf(stderr, "  FAIL %s: %s\n", path, defect);
                r->failed++;
            } else {
                r->loaded++;
            }
        } else if (st == LP_ERR_UNSUPPORTED) {
            count_refusal(r, path, d.last_error);
        } else {
            fprintf(stderr, "  FAIL %s: %s: %s\n", path, lp_status_name(st), d.last_error);
            r->failed++;
        }
        lp_graph_free(g);
    }
    printf("%-28s %4d models: %4d loaded, %3d unsupported, %d failed\n", label, r->found,
           r->loaded, r->refused, r->failed);
    for (int i = 0; i < r->n_reasons; i++)
        printf("    %3d %-40s e.g. %s\n", r->reasons[i].count, r->reasons[i].reason,
               r->reasons[i].example);
    *failures += r->failed;
    paths_free(&models);
}

/* The onnx package's folder: from the environment or from python3. */
static char *onnx_package_dir(void) {
    const char *env = getenv("LPCC_ONNX_PACKAGE_DIR");
    if (env && *env) return strdup(env);
    FILE *p = popen("python3 -c 'import onnx, os; print(os.path.dirname(onnx.__file__))' "
                    "2>/dev/null", "r");
    if (!p) return NULL;
    char buf[4096];
    char *line = fgets(buf, sizeof buf, p);
    pclose(p);
    if (!line) return NULL;
    buf[strcspn(buf, "\n")] = '\0';
    return buf[0] ? strdup(buf) : NULL;
}

static bool is_dir(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

typedef struct suite {
    const char *label;
    const char *sub;  /* folder below its root */
    bool debian;      /* root: Debian testdata, else the onnx package's data */
    int min_loaded;   /* a regression below this fails */
} suite;

static void test_backend_suites(void **state) {
    (void)state;
    /* minimums: the counts observed when the test was written, lowered a
     * little so a new unsupported case in the data does not break it */
    static const suite suites[] = {
        {"debian/node", "node", true, 880},                 /* 895 of 932 */
        {"debian/pytorch-converted", "pytorch-converted", true, 80}, /* 82 of 82 */
        {"debian/pytorch-operator", "pytorch-operator", true, 34},   /* 35 of 35 */
        {"debian/simple", "simple", true, 20},              /* 21 of 23 */
        {"pypi/light", "light", false, 9},                  /* 9 of 9 */
        {"pypi/simple", "simple", false, 20},               /* 21 of 23 */
        {"pypi/pytorch-converted", "pytorch-converted", false, 80},
        {"pypi/pytorch-operator", "pytorch-operator", false, 34},
    };
    const char *debian_env = getenv("LPCC_ONNX_TESTDATA");
    const char *debian_root = debian_env && *debian_env ? debian_env : "/usr/share/libonnx-testdata/data";
    char *pkg = onnx_package_dir();
    char *pypi_root = NULL;
    if (pkg) assert_true(asprintf(&pypi_root, "%s/backend/test/data", pkg) >= 0);

    size_t n_suites = sizeof suites / sizeof suites[0];
    char *dirs[sizeof suites / sizeof suites[0]];
    char *present_dirs[sizeof suites / sizeof suites[0]];
    int present = 0, failures = 0, total_loaded = 0;
    for (size_t i = 0; i < n_suites; i++) {
        const char *root = suites[i].debian ? debian_root : pypi_root;
        dirs[i] = NULL;
        if (root) assert_true(asprintf(&dirs[i], "%s/%s", root, suites[i].sub) >= 0);
        if (dirs[i] && is_dir(dirs[i])) present_dirs[present++] = dirs[i];
    }
    oracle o = {0};
    oracle_read(present_dirs, present, &o);
    printf("%zu models known to the onnx package's reading\n", o.n);
    /* with onnx importable and the script at hand, the oracle must answer */
    if (pkg && getenv("LPCC_SOURCE_DIR") && present && o.n == 0)
        fail_msg("tests/support/onnx_counts.py gave no counts");
    for (size_t i = 0; i < n_suites; i++) {
        const suite *s = &suites[i];
        if (!dirs[i] || !is_dir(dirs[i])) {
            printf("%-28s absent (%s), skipped\n", s->label, dirs[i] ? dirs[i] : "no onnx package");
            continue;
        }
        suite_result r;
        memset(&r, 0, sizeof r);
        run_suite(s->label, dirs[i], &o, &r, &failures);
        total_loaded += r.loaded;
        if (r.loaded < s->min_loaded)
            fail_msg("%s: %d models loaded, fewer than the %d expected", s->label, r.loaded,
                     s->min_loaded);
    }
    oracle_free(&o);
    for (size_t i = 0; i < n_suites; i++) free(dirs[i]);
    free(pypi_root);
    free(pkg);
    if (present == 0) fail_msg("no ONNX backend test suite found on this machine");
    printf("total: %d models loaded from %d suites\n", total_loaded, present);
    if (failures) fail_msg("%d models were rejected as invalid or loaded into a broken graph", failures);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_backend_suites),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
