/* fuzz_load.c - libFuzzer target for the ONNX loader.
 *
 *     cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLPCC_FUZZ=ON -DLPCC_TESTS=OFF
 *     cmake --build build-fuzz --target fuzz_load
 *     bash fuzz/run.sh build-fuzz/fuzz/fuzz_load 60
 *
 * Each input is loaded as if it were "model.onnx" in a scratch folder that
 * holds a few files an external-data location may name: a present weights
 * file, a file that is too short, a folder, a link out of the folder and a
 * dangling link. The input is loaded twice, with and without
 * require_weights; a graph that loads is dumped (text and JSON) and its
 * small weights read back, so the converted IR is walked as later stages
 * would walk it.
 */
#define _GNU_SOURCE
#include "lp_frontend.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Weights larger than this are not read back (keeps each run fast). */
#define FUZZ_READ_LIMIT (1u << 20)

static char *scratch_dir, *model_path;

static int make_file(const char *dir, const char *name, off_t size) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0) return -1;
    FILE *f = fopen(p, "wb");
    int rc = f && ftruncate(fileno(f), size) == 0 ? 0 : -1;
    if (f) fclose(f);
    free(p);
    return rc;
}

static int make_link(const char *dir, const char *name, const char *target) {
    char *p = NULL;
    if (asprintf(&p, "%s/%s", dir, name) < 0) return -1;
    int rc = symlink(target, p);
    free(p);
    return rc;
}

/* The scratch folder, made once per process. Names match those the seed
 * corpus uses, so mutations reach the present-file code. */
static int setup_scratch(void) {
    const char *tmp = getenv("TMPDIR");
    char *tmpl = NULL;
    if (asprintf(&tmpl, "%s/lpcc_fuzz_XXXXXX", tmp && tmp[0] ? tmp : "/tmp") < 0) return -1;
    scratch_dir = mkdtemp(tmpl); /* kept for the process's life; run.sh removes TMPDIR */
    if (!scratch_dir) return -1;
    const char *dir = scratch_dir;
    char *sub = NULL;
    if (asprintf(&model_path, "%s/model.onnx", dir) < 0 || asprintf(&sub, "%s/sub", dir) < 0)
        return -1;
    int rc = mkdir(sub, 0700);
    free(sub);
    rc |= make_file(dir, "seed_4x256_ext.weights", 6319104);
    rc |= make_file(dir, "weights.bin", 4096);
    rc |= make_file(dir, "model.onnx.data", 1 << 16);
    rc |= make_file(dir, "short.bin", 3);
    rc |= make_link(dir, "outside.bin", "/etc/hostname");
    rc |= make_link(dir, "dangling.bin", "no_such_file");
    rc |= make_link(dir, "inside.bin", "weights.bin");
    return rc;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    if (setup_scratch() != 0) {
        fprintf(stderr, "fuzz_load: cannot set up the scratch folder\n");
        abort();
    }
    return 0;
}

/* Walks a loaded graph the way later stages do. */
static void exercise_graph(const lp_graph *g, lp_diag *d) {
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        lp_graph_dump_text(g, null);
        fclose(null);
    }
    json_t *j = lp_graph_to_json(g);
    char *text = json_dumps(j, JSON_COMPACT);
    free(text);
    json_decref(j);

    void *buf = malloc(FUZZ_READ_LIMIT);
    if (!buf) return;
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        if (v->kind != LP_VALUE_WEIGHT && v->kind != LP_VALUE_CONSTANT) continue;
        if (v->data.where == LP_DATA_NONE || v->data.nbytes > FUZZ_READ_LIMIT) continue;
        if (v->data.where == LP_DATA_INLINE && !v->data.bytes) continue; /* strings */
        (void)lp_frontend_read_weight(g, v, buf, FUZZ_READ_LIMIT, d);
    }
    free(buf);
    /* every index the graph holds points inside it */
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++)
            if (n->inputs[k] >= g->n_values) abort();
        for (int k = 0; k < n->n_outputs; k++)
            if (n->outputs[k] >= g->n_values || (n->outputs[k] >= 0 &&
                                                 g->values[n->outputs[k]].producer != i))
                abort();
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    for (int require = 0; require < 2; require++) {
        lp_diag d = lp_diag_make(model_path);
        d.sink = NULL;
        lp_load_options opt = {.require_weights = require != 0};
        lp_graph *g = NULL;
        lp_status st = lp_frontend_load_buffer(data, size, model_path, &opt, &g, &d);
        if (st == LP_OK) {
            if (!g) abort();
            exercise_graph(g, &d);
            lp_graph_free(g);
        } else if (g || !d.last_error[0]) {
            abort(); /* a failure must leave no graph and say why */
        }
    }
    return 0;
}
