/* fuzz_pipeline.c - libFuzzer target for every stage after the loader.
 *
 *     cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DLPCC_FUZZ=ON -DLPCC_TESTS=OFF
 *     cmake --build build-fuzz --target fuzz_pipeline
 *     bash fuzz/run.sh build-fuzz/fuzz/fuzz_pipeline 60
 *
 * An input is an ONNX model, optionally preceded by "LPFZ" and 8 option
 * bytes (dtype, layering, algorithm, card count, capacity, the values bound
 * to the model's first two symbolic dims); without the prefix the options
 * come from a hash of the input, so a plain model file is a valid seed and
 * its mutations explore the options too. The model goes through what lpcc
 * runs: load -> bind dims -> verify -> shape inference -> verify -> layers ->
 * partition (with validation) -> plan.json written and read back -> the plan
 * rebuilt and validated again, and every dump. Besides crashes, sanitizer
 * reports and leaks, the target aborts on a broken contract: a failing stage
 * that gives no reason, an internal error (exit 5) caused by a model, an IR
 * that fails verification after a stage that succeeded, or a plan that
 * fails validation when read back.
 */
#define _GNU_SOURCE
#include "lp_analysis.h"
#include "lp_frontend.h"
#include "lp_partition.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Beyond these the quadratic algorithms make one input take seconds. */
#define FUZZ_MAX_DP_LAYERS 400
#define FUZZ_MAX_NODES 20000
/* A layer sharded over n cards all-gathers n*(n-1) slices per output: above
 * this many shards a plan has 10^5 transfers and one input takes seconds. */
#define FUZZ_MAX_SHARDS 16

typedef struct fuzz_options {
    lp_dtype dtype;
    lp_layering layering;
    int scope_depth;
    const char *algo;
    int cards;
    char capacity[32];
    bool no_split;
    bool cut_first;     /* --cut-after 0 */
    int64_t bind[2];    /* values for the first two symbolic dims; -1: unbound */
} fuzz_options;

static char *scratch_dir, *model_path, *plan_path;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc;
    (void)argv;
    const char *tmp = getenv("TMPDIR");
    char *tmpl = NULL;
    if (asprintf(&tmpl, "%s/lpcc_fuzz_XXXXXX", tmp && tmp[0] ? tmp : "/tmp") < 0) abort();
    scratch_dir = mkdtemp(tmpl); /* kept for the process's life; run.sh removes TMPDIR */
    if (!scratch_dir || asprintf(&model_path, "%s/model.onnx", scratch_dir) < 0 ||
        asprintf(&plan_path, "%s/plan.json", scratch_dir) < 0) {
        fprintf(stderr, "fuzz_pipeline: cannot set up the scratch folder\n");
        abort();
    }
    return 0;
}

/* Sizes that stress the arithmetic: zero, small, and large enough that
 * element and byte counts overflow 64 bits. */
static const int64_t dim_values[] = {
    0, 1, 2, 3, 7, 16, 1000, (int64_t)1 << 20, (int64_t)1 << 31, (int64_t)1 << 40,
    (int64_t)1 << 62, INT64_MAX,
};

static uint64_t fnv1a(const uint8_t *p, size_t n, uint64_t h) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}

static void decode_options(const uint8_t o[8], fuzz_options *f) {
    static const lp_dtype dtypes[] = {LP_DT_UNDEFINED, LP_DT_FLOAT16, LP_DT_BFLOAT16, LP_DT_FLOAT};
    static const char *const algos[] = {"greedy", "dp", "throughput", "greedy"};
    const size_t n_dims = sizeof dim_values / sizeof dim_values[0];
    memset(f, 0, sizeof *f);
    f->dtype = dtypes[o[0] & 3];
    f->layering = (lp_layering)((o[0] >> 2) & 3);
    if (f->layering == LP_LAYERS_REGEX) f->layering = LP_LAYERS_SCOPE;
    f->scope_depth = 1 + (o[1] & 3);
    f->algo = algos[(o[0] >> 4) & 3];
    f->no_split = (o[0] >> 6) & 1;
    f->cut_first = (o[0] >> 7) & 1;
    f->cards = (o[1] >> 2) & 7; /* 0: as many as needed */
    /* 1 byte .. 2^45 bytes, so both "nothing fits" and "all on one card" occur */
    snprintf(f->capacity, sizeof f->capacity, "%llu", 1ull << (o[2] % 46));
    for (int k = 0; k < 2; k++)
        f->bind[k] = o[3 + k] < 32 ? -1 : dim_values[o[3 + k] % n_dims];
}

/* The first `max` distinct symbolic dim names on the graph's values. */
static int symbolic_dims(const lp_graph *g, const char **names, int max) {
    int n = 0;
    for (int i = 0; i < g->n_values && n < max; i++) {
        const lp_shape *s = &g->values[i].shape;
        for (int k = 0; k < s->rank && n < max; k++) {
            const char *sym = s->dims[k].size < 0 ? s->dims[k].sym : NULL;
            bool seen = !sym;
            for (int j = 0; j < n && !seen; j++) seen = strcmp(names[j], sym) == 0;
            if (!seen) names[n++] = sym;
        }
    }
    return n;
}

/* A stage that fails must say why, and a model must never cause an
 * internal error. */
static void check_failure(lp_status st, const lp_diag *d, const char *stage) {
    if (st == LP_OK) return;
    if (!d->last_error[0] || st == LP_ERR_INTERNAL) {
        fprintf(stderr, "fuzz_pipeline: %s returned %s: '%s'\n", stage, lp_status_name(st),
                d->last_error);
        abort();
    }
}

static void check_verify(const lp_graph *g, const char *after) {
    lp_diag d = lp_diag_make(model_path);
    d.sink = stderr;
    if (lp_graph_verify(g, &d) != LP_OK) {
        fprintf(stderr, "fuzz_pipeline: IR broken after %s\n", after);
        abort();
    }
}

static void dump_json(void *j) {
    char *text = json_dumps(j, JSON_COMPACT);
    free(text);
    json_decref(j);
}

/* plan.json as lpcc writes it, read back: the same cuts must rebuild a plan
 * that validates. */
static void reload_plan(const lp_plan *plan, const lp_layer_ir *L) {
    json_t *j = lp_plan_to_json(plan, L);
    if (!j || json_dump_file(j, plan_path, JSON_COMPACT) != 0) {
        json_decref(j);
        return;
    }
    json_decref(j);
    lp_diag d = lp_diag_make(plan_path);
    d.sink = NULL;
    lp_partition_request r = {.plan_file = plan_path};
    lp_plan *again = NULL;
    lp_status st = lp_partition_stage(L, &r, &again, &d);
    if (st != LP_OK || !again || again->n_cards != plan->n_cards) {
        fprintf(stderr, "fuzz_pipeline: plan.json read back: %s '%s'\n", lp_status_name(st),
                d.last_error);
        abort();
    }
    lp_plan_free(again);
}

static void partition(const lp_layer_ir *L, const fuzz_options *f, lp_diag *d) {
    lp_partition_request r = {0};
    r.cards = f->cards;
    r.capacity = f->capacity;
    r.algo = L->n_layers > FUZZ_MAX_DP_LAYERS ? "greedy" : f->algo;
    r.no_split = f->no_split;
    uint64_t cap = 0;
    (void)lp_parse_size(f->capacity, &cap);
    for (int i = 0; i < L->n_layers && !r.no_split; i++)
        r.no_split = L->layers[i].total_bytes / FUZZ_MAX_SHARDS > cap;
    r.cut_after = f->cut_first && L->n_layers > 1 ? "0" : NULL;
    r.tokens = 1;
    lp_plan *plan = NULL;
    lp_status st = lp_partition_stage(L, &r, &plan, d);
    check_failure(st, d, "lp_partition_stage");
    if (st != LP_OK) {
        if (plan) abort(); /* a failure leaves no plan */
        return;
    }
    FILE *null = fopen("/dev/null", "w");
    if (null) {
        lp_plan_dump_text(plan, L, true, null);
        fclose(null);
    }
    dump_json(lp_plan_to_json(plan, L));
    reload_plan(plan, L);
    lp_plan_free(plan);
}

static void run_pipeline(const uint8_t *data, size_t size, const fuzz_options *f) {
    lp_diag d = lp_diag_make(model_path);
    d.sink = NULL;
    lp_load_options lo = {.require_weights = false};
    lp_graph *g = NULL;
    lp_status st = lp_frontend_load_buffer(data, size, model_path, &lo, &g, &d);
    check_failure(st, &d, "lp_frontend_load_buffer");
    if (st != LP_OK) return;
    if (g->n_nodes > FUZZ_MAX_NODES) {
        lp_graph_free(g);
        return;
    }
    check_verify(g, "load");
    const char *syms[2];
    int n_syms = symbolic_dims(g, syms, 2);
    for (int k = 0; k < n_syms && st == LP_OK; k++)
        if (f->bind[k] >= 0) st = lp_graph_bind_dim(g, syms[k], f->bind[k], &d);
    check_failure(st, &d, "lp_graph_bind_dim");
    if (st == LP_OK) check_verify(g, "binding dims");

    lp_analysis_options ao = lp_analysis_defaults();
    ao.deploy_dtype = f->dtype;
    ao.layering = f->layering;
    ao.scope_depth = f->scope_depth;
    if (st == LP_OK) {
        st = lp_analysis_infer_shapes(g, &ao, &d);
        check_failure(st, &d, "lp_analysis_infer_shapes");
    }
    if (st == LP_OK) check_verify(g, "shape inference");
    lp_layer_ir *L = NULL;
    if (st == LP_OK) {
        st = lp_analysis_build_layers(g, &ao, &L, &d);
        check_failure(st, &d, "lp_analysis_build_layers");
        if (st != LP_OK && L) abort();
    }
    if (st == LP_OK) {
        check_verify(g, "layering");
        FILE *null = fopen("/dev/null", "w");
        if (null) {
            lp_graph_dump_text(g, null);
            lp_layer_ir_dump_text(L, null);
            fclose(null);
        }
        dump_json(lp_graph_to_json(g));
        dump_json(lp_layer_ir_to_json(L));
        if (L->n_layers > 0) partition(L, f, &d);
    }
    lp_layer_ir_free(L);
    lp_graph_free(g);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t opt[8];
    if (size >= 12 && memcmp(data, "LPFZ", 4) == 0) {
        memcpy(opt, data + 4, 8);
        data += 12;
        size -= 12;
    } else {
        uint64_t h = fnv1a(data, size < 64 ? size : 64, 0xcbf29ce484222325ull);
        h = fnv1a(data + (size > 64 ? size - 64 : 0), size < 64 ? 0 : 64, h ^ size);
        memcpy(opt, &h, 8);
    }
    fuzz_options f;
    decode_options(opt, &f);
    run_pipeline(data, size, &f);
    return 0;
}
