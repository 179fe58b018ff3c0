/* The lpcc driver: parse the command line, then a flat list of stage calls.
 * Exit codes are documented in README.md and lpcc_usage(). */
#define _GNU_SOURCE
#include "lpcc_cli.h"

#include "lp_analysis.h"
#include "lp_emit.h"
#include "lp_frontend.h"
#include "lp_outdir.h"
#include "lp_partition.h"
#include "lp_card_models.h"
#include "lp_codegen.h"
#include "json_out.h"

#include <errno.h>
#include <pthread.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define LPCC_VERSION "0.1.0"
#define MAX_BINDINGS 64

typedef struct binding {
    const char *name;
    int rank;
    int64_t dims[16];
} binding;

typedef struct cli {
    const char *model;
    FILE *out;             /* what the command prints: stdout, or a buffer (lpcc_invoke) */
    const void *model_bytes; /* lpcc_invoke: the model in memory, `model` its name */
    size_t model_len;
    bool force_layers;     /* lpcc_invoke: build the layers though no option asks */
    const char *out_dir;
    const char *dump;  /* NULL, "load", "graph", "layers", "plan" or "program" */
    bool json;
    lp_dtype deploy_dtype; /* --dtype; LP_DT_UNDEFINED keeps the model's */
    lp_layering layering;  /* --layers */
    int scope_depth;
    const char *layers_regex;
    bool layers_given;     /* --layers: its grouping is built (and checked) even for a summary */
    const char *workspace; /* --workspace FILE.json */
    const char *dot;       /* --dot FILE */
    bool compare;          /* --compare tp=N,pp=N */
    lp_compare_options compare_opt;
    lp_compare_result compared;
    bool partition;        /* a partition option, --dump-ir=plan or -o */
    bool no_build;         /* --no-build: card_K.cu without card_K.so */
    lp_partition_request part;
    const char *pins[MAX_BINDINGS];
    int verbosity;     /* 0 quiet, 1 normal, 2 verbose */
    int n_dims, n_shapes, n_values;
    const char *values[MAX_BINDINGS]; /* --value NAME=V,.. or NAME=FILE.pb, as given */
    binding dims[MAX_BINDINGS];
    binding shapes[MAX_BINDINGS];
} cli;

int lpcc_exit_code(lp_status s) {
    switch (s) {
    case LP_OK: return LPCC_EXIT_OK;
    case LP_ERR_INVALID_MODEL:
    case LP_ERR_UNSUPPORTED: return LPCC_EXIT_MODEL;
    case LP_ERR_USAGE: return LPCC_EXIT_USAGE;
    case LP_ERR_INFEASIBLE: return LPCC_EXIT_INFEASIBLE;
    case LP_ERR_OUTPUT: return LPCC_EXIT_OUTPUT;
    case LP_ERR_INTERNAL:
    case LP_ERR_PEER: return LPCC_EXIT_INTERNAL;
    }
    return LPCC_EXIT_INTERNAL;
}

static void usage(FILE *f) {
    fputs("usage: lpcc MODEL.onnx [-o DIR] [options]\n"
          "\n"
          "Reads an ONNX model, sizes each layer (weights + activations + buffers) and\n"
          "splits the layers into contiguous groups, one per card, that fit the cards'\n"
          "on-chip memory. Writes the plan, one ONNX sub-model per card and the program\n"
          "that runs each card (lpcc-run DIR runs them).\n"
          "\n"
          "  -o, --output DIR         write results (graph.json, ...) into DIR\n"
          "      --no-build           write card_K.cu without building card_K.so with nvcc\n"
          "      --dim NAME=VALUE     bind a symbolic dim, e.g. --dim batch=8 (repeatable)\n"
          "      --shapes IN:AxBxC,.. fix input shapes, e.g. --shapes input_ids:1x128\n"
          "      --value IN=V,..      fix an input's value at compile time, making it a\n"
          "                           constant (e.g. --value sample_rate=16000); IN=FILE.pb\n"
          "                           reads an ONNX TensorProto file (repeatable)\n"
          "      --dump-ir[=STAGE]    print the IR after STAGE: load (as read; stops\n"
          "                           there), graph (default), layers, plan, program\n"
          "      --json               dumps as one JSON object instead of text\n"
          "      --dtype T            deploy dtype of float tensors: fp16, bf16, fp32 or keep\n"
          "      --layers MODE        auto (default), node, scope:DEPTH or regex:PATTERN\n"
          "      --workspace F.json   per-op workspace bytes, e.g. {\"MatMul\": 4194304}\n"
          "      --dot FILE           write a Graphviz graph: the plan's cards when a partition\n"
          "                           option is given, else the layers\n"
          "      --cards N            use N cards (default: as many as needed)\n"
          "      --capacity SIZE,..   on-chip bytes a card holds (31MiB, 40MB; a list: cards\n"
          "                           in order), default the target's persisting-L2 size\n"
          "      --target T           h100 (default), h200 or a profile FILE.json\n"
          "      --tier smem|l2|hbm   the memory a fitting card runs from: shared memory (C =\n"
          "                           all SMs' shared memory), L2 (default) or device memory\n"
          "      --algo A             greedy (default: fewest cards), dp (balance N cards),\n"
          "                           throughput (fastest slowest stage, device memory)\n"
          "      --no-split           never shard a layer larger than a card\n"
          "      --plan FILE.json     use the cuts of a saved plan.json\n"
          "      --cut-after L,..     force a cut after these layers (names or indices)\n"
          "      --pin PATTERN=CARD   put layers whose names match PATTERN on CARD\n"
          "      --compare tp=N,pp=N  also predict a step with tensor x pipeline parallelism on\n"
          "                           tp*pp cards and with layer-wise groups on as many\n"
          "  -v, --verbose            more detail on stderr\n"
          "  -q, --quiet              errors only\n"
          "      --version            print the version\n"
          "  -h, --help               this text\n"
          "\n"
          "exit codes: 0 success, 1 invalid or unsupported model, 2 usage error,\n"
          "            3 infeasible plan, 4 cannot write output, 5 internal error\n",
          f);
}

static lp_status parse_i64(const char *s, int64_t *out) {
    if (!s || !*s) return LP_ERR_USAGE;
    errno = 0;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < 0) return LP_ERR_USAGE;
    *out = v;
    return LP_OK;
}

static lp_status parse_dim(cli *c, const char *arg, lp_diag *d) {
    const char *eq = strchr(arg, '=');
    if (c->n_dims == MAX_BINDINGS)
        return lp_error(d, LP_ERR_USAGE, "too many --dim options (at most %d)", MAX_BINDINGS);
    binding *b = &c->dims[c->n_dims];
    if (!eq || eq == arg || parse_i64(eq + 1, &b->dims[0]) != LP_OK)
        return lp_error(d, LP_ERR_USAGE, "--dim '%s': expected NAME=VALUE with VALUE >= 0", arg);
    size_t len = (size_t)(eq - arg);
    for (int i = 0; i < c->n_dims; i++) {
        const binding *o = &c->dims[i];
        if (strlen(o->name) != len || strncmp(o->name, arg, len) != 0) continue;
        if (o->dims[0] == b->dims[0]) return LP_OK; /* the same binding again */
        return lp_error(d, LP_ERR_USAGE, "--dim %s is given twice, as %" PRId64 " and as %" PRId64,
                        o->name, o->dims[0], b->dims[0]);
    }
    b->name = strndup(arg, len);
    if (!b->name) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    b->rank = 1;
    c->n_dims++;
    return LP_OK;
}

/* "1x128" for messages. */
static void format_shape(const binding *b, char *buf, size_t size) {
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < b->rank && used < size; i++) {
        int n = snprintf(buf + used, size - used, "%s%" PRId64, i ? "x" : "", b->dims[i]);
        if (n < 0) break;
        used += (size_t)n;
    }
}

/* An input given twice: the same shape is accepted once, two shapes are an error. */
static lp_status check_shape_repeat(const cli *c, const binding *b, bool *repeat, lp_diag *d) {
    *repeat = false;
    for (int i = 0; i < c->n_shapes; i++) {
        const binding *o = &c->shapes[i];
        if (strcmp(o->name, b->name) != 0) continue;
        if (o->rank == b->rank && memcmp(o->dims, b->dims, sizeof(int64_t) * (size_t)b->rank) == 0) {
            *repeat = true;
            return LP_OK;
        }
        char x[16 * 24], y[16 * 24];
        format_shape(o, x, sizeof x);
        format_shape(b, y, sizeof y);
        return lp_error(d, LP_ERR_USAGE, "--shapes gives input '%s' twice, as %s and as %s", b->name, x, y);
    }
    return LP_OK;
}

/* "a:1x128,b:1x128x768" ; a name may itself contain ':' (the last one splits). */
static lp_status parse_shapes(cli *c, const char *arg, lp_diag *d) {
    char *copy = strdup(arg);
    if (!copy) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = LP_OK;
    char *save = NULL;
    for (char *item = strtok_r(copy, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *colon = strrchr(item, ':');
        if (!colon || colon == item) {
            st = lp_error(d, LP_ERR_USAGE, "--shapes '%s': expected NAME:AxBxC", item);
            break;
        }
        if (c->n_shapes == MAX_BINDINGS) {
            st = lp_error(d, LP_ERR_USAGE, "too many --shapes entries (at most %d)", MAX_BINDINGS);
            break;
        }
        binding *b = &c->shapes[c->n_shapes];
        *colon = '\0';
        b->rank = 0;
        char *dsave = NULL;
        for (char *tok = strtok_r(colon + 1, "x", &dsave); tok; tok = strtok_r(NULL, "x", &dsave)) {
            if (b->rank == 16 || parse_i64(tok, &b->dims[b->rank]) != LP_OK) {
                /* item is cut at its ':' by now: quote the option as given */
                st = lp_error(d, LP_ERR_USAGE, "--shapes '%s': '%s' is not a dim >= 0 (at most 16 dims)",
                              arg, tok);
                break;
            }
            b->rank++;
        }
        if (st != LP_OK) break;
        b->name = strdup(item);
        if (!b->name) {
            st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
            break;
        }
        bool repeat = false;
        st = check_shape_repeat(c, b, &repeat, d);
        if (st != LP_OK || repeat) {
            free((char *)b->name);
            b->name = NULL;
            if (st != LP_OK) break;
            continue;
        }
        c->n_shapes++;
    }
    free(copy);
    return st;
}

/* --layers auto|node|scope:DEPTH|regex:PATTERN */
static lp_status parse_layers(cli *c, const char *arg, lp_diag *d) {
    int64_t depth;
    if (strcmp(arg, "auto") == 0) {
        c->layering = LP_LAYERS_AUTO;
    } else if (strcmp(arg, "node") == 0) {
        c->layering = LP_LAYERS_NODE;
    } else if (strncmp(arg, "scope:", 6) == 0 && parse_i64(arg + 6, &depth) == LP_OK && depth >= 1 &&
               depth <= 1000) {
        c->layering = LP_LAYERS_SCOPE;
        c->scope_depth = (int)depth;
    } else if (strncmp(arg, "regex:", 6) == 0 && arg[6]) {
        c->layering = LP_LAYERS_REGEX;
        c->layers_regex = arg + 6;
    } else {
        return lp_error(d, LP_ERR_USAGE,
                        "--layers %s: expected auto, node, scope:DEPTH (DEPTH >= 1) or regex:PATTERN",
                        arg);
    }
    return LP_OK;
}

/* --dtype: the float type weights and activations are deployed in. */
static lp_status parse_dtype(const char *arg, lp_dtype *out, lp_diag *d) {
    static const struct { const char *name; lp_dtype t; } names[] = {
        {"fp16", LP_DT_FLOAT16}, {"bf16", LP_DT_BFLOAT16}, {"fp32", LP_DT_FLOAT}, {"keep", LP_DT_UNDEFINED},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(arg, names[i].name) == 0) {
            *out = names[i].t;
            return LP_OK;
        }
    return lp_error(d, LP_ERR_USAGE, "--dtype %s: expected fp16, bf16, fp32 or keep", arg);
}

static void cli_free(cli *c) {
    for (int i = 0; i < c->n_dims; i++) free((char *)c->dims[i].name);
    for (int i = 0; i < c->n_shapes; i++) free((char *)c->shapes[i].name);
}

enum { OPT_DIM = 256, OPT_SHAPES, OPT_VALUE, OPT_DUMP, OPT_JSON, OPT_VERSION, OPT_DTYPE, OPT_LAYERS,
       OPT_WORKSPACE, OPT_DOT, OPT_CARDS, OPT_CAPACITY, OPT_TARGET, OPT_ALGO, OPT_NO_SPLIT,
       OPT_PLAN, OPT_CUT_AFTER, OPT_PIN, OPT_COMPARE, OPT_NO_BUILD, OPT_TIER };

static lp_status parse_args_locked(cli *c, int argc, char **argv, lp_diag *d, bool *done);

/* getopt keeps its position in globals (optind, optarg): one parse at a time,
 * so in-process callers on several threads do not share it. */
static pthread_mutex_t getopt_lock = PTHREAD_MUTEX_INITIALIZER;

static lp_status parse_args(cli *c, int argc, char **argv, lp_diag *d, bool *done) {
    if (pthread_mutex_lock(&getopt_lock) != 0) return lp_error(d, LP_ERR_INTERNAL, "cannot lock the option parser");
    lp_status st = parse_args_locked(c, argc, argv, d, done);
    pthread_mutex_unlock(&getopt_lock);
    return st;
}

static lp_status parse_args_locked(cli *c, int argc, char **argv, lp_diag *d, bool *done) {
    static const struct option longopts[] = {
        {"output", required_argument, NULL, 'o'},   {"dim", required_argument, NULL, OPT_DIM},
        {"shapes", required_argument, NULL, OPT_SHAPES}, {"value", required_argument, NULL, OPT_VALUE}, {"dump-ir", optional_argument, NULL, OPT_DUMP},
        {"json", no_argument, NULL, OPT_JSON},     {"verbose", no_argument, NULL, 'v'},
        {"quiet", no_argument, NULL, 'q'},         {"version", no_argument, NULL, OPT_VERSION},
        {"help", no_argument, NULL, 'h'},          {"dtype", required_argument, NULL, OPT_DTYPE},
        {"layers", required_argument, NULL, OPT_LAYERS}, {"workspace", required_argument, NULL, OPT_WORKSPACE},
        {"dot", required_argument, NULL, OPT_DOT},
        {"cards", required_argument, NULL, OPT_CARDS}, {"capacity", required_argument, NULL, OPT_CAPACITY},
        {"target", required_argument, NULL, OPT_TARGET}, {"algo", required_argument, NULL, OPT_ALGO},
        {"no-split", no_argument, NULL, OPT_NO_SPLIT}, {"plan", required_argument, NULL, OPT_PLAN},
        {"cut-after", required_argument, NULL, OPT_CUT_AFTER}, {"pin", required_argument, NULL, OPT_PIN},
        {"compare", required_argument, NULL, OPT_COMPARE},
        {"no-build", no_argument, NULL, OPT_NO_BUILD},
        {"tier", required_argument, NULL, OPT_TIER},
        {NULL, 0, NULL, 0},
    };
    c->verbosity = 1;
    optind = 1;
    opterr = 0;
    int ch;
    lp_status st = LP_OK;
    while (st == LP_OK && (ch = getopt_long(argc, argv, ":o:vqh", longopts, NULL)) != -1) {
        switch (ch) {
        case 'o': c->out_dir = optarg; break;
        case OPT_NO_BUILD: c->no_build = true; break;
        case OPT_DIM: st = parse_dim(c, optarg, d); break;
        case OPT_SHAPES: st = parse_shapes(c, optarg, d); break;
        case OPT_VALUE: {
            const char *eq = strchr(optarg, '=');
            if (!eq || eq == optarg || !eq[1])
                st = lp_error(d, LP_ERR_USAGE, "--value '%s': expected NAME=V[,V...] or NAME=FILE.pb", optarg);
            else if (c->n_values == MAX_BINDINGS)
                st = lp_error(d, LP_ERR_USAGE, "too many --value options (at most %d)", MAX_BINDINGS);
            else
                c->values[c->n_values++] = optarg;
            break;
        }
        case OPT_DUMP:
            c->dump = optarg ? optarg : "graph";
            if (strcmp(c->dump, "load") != 0 && strcmp(c->dump, "graph") != 0 &&
                strcmp(c->dump, "layers") != 0 && strcmp(c->dump, "plan") != 0 &&
                strcmp(c->dump, "program") != 0)
                st = lp_error(d, LP_ERR_USAGE,
                              "--dump-ir=%s: stage must be one of: load, graph, layers, plan, program", c->dump);
            c->partition |= strcmp(c->dump, "plan") == 0 || strcmp(c->dump, "program") == 0;
            break;
        case OPT_JSON: c->json = true; break;
        case OPT_DTYPE: st = parse_dtype(optarg, &c->deploy_dtype, d); break;
        case OPT_LAYERS: st = parse_layers(c, optarg, d), c->layers_given = true; break;
        case OPT_WORKSPACE: c->workspace = optarg; break;
        case OPT_DOT: c->dot = optarg; break;
        case OPT_CARDS: {
            int64_t n = 0;
            if (parse_i64(optarg, &n) != LP_OK || n < 1 || n > 1 << 20)
                st = lp_error(d, LP_ERR_USAGE, "--cards %s: expected a count >= 1", optarg);
            c->part.cards = (int)n;
            c->partition = true;
            break;
        }
        case OPT_CAPACITY: c->part.capacity = optarg, c->partition = true; break;
        case OPT_TARGET: c->part.target = optarg, c->partition = true; break;
        case OPT_TIER:
            if (strcmp(optarg, "smem") != 0 && strcmp(optarg, "l2") != 0 && strcmp(optarg, "hbm") != 0)
                st = lp_error(d, LP_ERR_USAGE, "--tier %s: expected smem, l2 or hbm", optarg);
            c->part.tier = optarg, c->partition = true;
            break;
        case OPT_ALGO: c->part.algo = optarg, c->partition = true; break;
        case OPT_NO_SPLIT: c->part.no_split = true, c->partition = true; break;
        case OPT_PLAN: c->part.plan_file = optarg, c->partition = true; break;
        case OPT_CUT_AFTER: c->part.cut_after = optarg, c->partition = true; break;
        case OPT_COMPARE:
            st = lp_compare_parse(optarg, &c->compare_opt, d);
            c->compare = c->partition = true;
            break;
        case OPT_PIN:
            if (c->part.n_pins == MAX_BINDINGS)
                st = lp_error(d, LP_ERR_USAGE, "too many --pin options (at most %d)", MAX_BINDINGS);
            else
                c->pins[c->part.n_pins++] = optarg;
            c->part.pins = c->pins;
            c->partition = true;
            break;
        case 'v': c->verbosity = 2; break;
        case 'q': c->verbosity = 0; break;
        case OPT_VERSION:
            fprintf(c->out, "lpcc %s\n", LPCC_VERSION);
            *done = true;
            return LP_OK;
        case 'h':
            usage(c->out);
            *done = true;
            return LP_OK;
        case ':': st = lp_error(d, LP_ERR_USAGE, "option '%s' needs a value", argv[optind - 1]); break;
        default: st = lp_error(d, LP_ERR_USAGE, "unknown option '%s' (see lpcc --help)", argv[optind - 1]);
        }
    }
    if (st != LP_OK) return st;
    if (optind >= argc) return lp_error(d, LP_ERR_USAGE, "no model given (see lpcc --help)");
    if (argc - optind > 1)
        return lp_error(d, LP_ERR_USAGE, "one model at a time; got '%s' and '%s'", argv[optind],
                        argv[optind + 1]);
    c->model = argv[optind];
    return LP_OK;
}

/* ---- the output folder: one transaction (lp_outdir.h) ---------------------- */

/* The files a run writes into -o DIR; one an earlier run left there and this
 * run does not write is removed when this run commits. */
static bool lpcc_output_name(const char *name) {
    return strcmp(name, "graph.json") == 0 || strcmp(name, "layers.json") == 0 ||
           strcmp(name, "plan.json") == 0 || lp_plan_is_card_file(name) ||
           lp_emit_is_output_file(name);
}

static void json_value_doc(const void *j, lp_json_out *w) { lp_json_put(w, NULL, json_incref((json_t *)j)); }

static lp_status write_json(json_t *j, FILE *f, lp_diag *d) {
    if (!j) return lp_error(d, LP_ERR_INTERNAL, "out of memory building JSON");
    lp_status st = lp_json_write(f, json_value_doc, j, "JSON", d);
    json_decref(j);
    return st;
}

/* ---- stages ---------------------------------------------------------------- */

/* plan.json: the plan plus what reproduces it (bindings and dtype). */
typedef struct plan_doc_ctx {
    const struct cli *c;
    const lp_plan *plan;
    const lp_layer_ir *L;
} plan_doc_ctx;

static void plan_doc(const void *ctx, lp_json_out *w) {
    const plan_doc_ctx *x = ctx;
    const cli *c = x->c;
    json_t *j = json_object(), *b = json_object();
    if (!j || !b) {
        json_decref(j);
        json_decref(b);
        lp_json_put(w, NULL, NULL); /* marks the document failed */
        return;
    }
    for (int i = 0; i < c->n_dims; i++) {
        char *name = lp_json_escape_name(c->dims[i].name); /* dim names are names too */
        if (!name || json_object_set_new(b, name, json_integer(c->dims[i].dims[0])) != 0) {
            free(name);
            json_decref(j);
            json_decref(b);
            lp_json_put(w, NULL, NULL);
            return;
        }
        free(name);
    }
    json_object_set_new(j, "bindings", b);
    json_object_set_new(j, "dtype", json_string(c->deploy_dtype ? lp_dtype_name(c->deploy_dtype) : "keep"));
    if (c->compare) json_object_set_new(j, "comparison", lp_compare_to_json(&c->compared));
    lp_plan_write_json(x->plan, x->L, j, w);
    json_decref(j);
}

/* One number of a --value list as `dt`, little-endian into out. */
static bool parse_number(const char *s, size_t len, lp_dtype dt, uint8_t *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf) return false;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    errno = 0;
    if (dt == LP_DT_FLOAT || dt == LP_DT_DOUBLE) {
        double v = strtod(buf, &end);
        if (errno || *end) return false;
        if (dt == LP_DT_DOUBLE) {
            memcpy(out, &v, 8);
        } else {
            float f = (float)v;
            memcpy(out, &f, 4);
        }
        return true;
    }
    if (dt == LP_DT_BOOL && (strcmp(buf, "true") == 0 || strcmp(buf, "false") == 0)) {
        out[0] = buf[0] == 't';
        return true;
    }
    bool is_unsigned = dt == LP_DT_UINT8 || dt == LP_DT_UINT16 || dt == LP_DT_UINT32 ||
                       dt == LP_DT_UINT64 || dt == LP_DT_BOOL;
    int bytes = lp_dtype_bits(dt) / 8;
    uint64_t u;
    if (is_unsigned) {
        if (buf[0] == '-') return false;
        unsigned long long v = strtoull(buf, &end, 10);
        if (errno || *end) return false;
        uint64_t max = dt == LP_DT_BOOL ? 1 : bytes == 8 ? UINT64_MAX : (UINT64_C(1) << (8 * bytes)) - 1;
        if (v > max) return false;
        u = v;
    } else {
        long long v = strtoll(buf, &end, 10);
        if (errno || *end) return false;
        int64_t lim = bytes == 8 ? INT64_MAX : (INT64_C(1) << (8 * bytes - 1)) - 1;
        if (v > lim || v < -lim - 1) return false;
        u = (uint64_t)v;
    }
    for (int b = 0; b < bytes; b++) out[b] = (uint8_t)(u >> (8 * b));
    return true;
}

static bool value_dtype_ok(lp_dtype dt) {
    switch (dt) {
    case LP_DT_FLOAT: case LP_DT_DOUBLE: case LP_DT_BOOL: case LP_DT_INT8: case LP_DT_INT16:
    case LP_DT_INT32: case LP_DT_INT64: case LP_DT_UINT8: case LP_DT_UINT16: case LP_DT_UINT32:
    case LP_DT_UINT64: return true;
    default: return false;
    }
}

static bool ends_with(const char *s, const char *tail) {
    size_t n = strlen(s), m = strlen(tail);
    return n >= m && strcmp(s + n - m, tail) == 0;
}

/* --value NAME=V[,V...] (numbers of the input's dtype, as many as its
 * shape holds) or NAME=FILE.pb: the input becomes a constant. */
static lp_status fix_value(lp_graph *g, const char *arg, lp_diag *d) {
    const char *eq = strchr(arg, '=');
    char *name = strndup(arg, (size_t)(eq - arg));
    if (!name) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    const char *spec = eq + 1;
    int32_t idx = lp_graph_find_value(g, name);
    lp_status st = LP_OK;
    if (idx < 0 || !g->values[idx].is_graph_input || g->values[idx].kind != LP_VALUE_INPUT) {
        st = lp_error(d, LP_ERR_USAGE, "--value %s: the model has no input named '%s'", arg, name);
    } else if (ends_with(spec, ".pb")) {
        lp_tensor t;
        memset(&t, 0, sizeof t);
        st = lp_frontend_load_tensor_file(g, spec, &t, d);
        if (st == LP_OK) {
            int64_t dims[LP_MAX_RANK];
            for (int k = 0; k < t.shape.rank; k++) dims[k] = t.shape.dims[k].size;
            st = lp_graph_fix_input(g, name, t.dtype, t.shape.rank, dims, t.data.bytes, t.data.nbytes, d);
        }
    } else {
        const lp_value *v = &g->values[idx];
        uint64_t numel = 0;
        int count = 1;
        for (const char *p = spec; *p; p++) count += *p == ',';
        if (!v->dtype || !value_dtype_ok(v->dtype)) {
            st = lp_error(d, LP_ERR_USAGE, "--value %s: input '%s' is %s; give its value as an ONNX "
                          "TensorProto file (%s=FILE.pb)", arg, name,
                          v->dtype ? lp_dtype_name(v->dtype) : "of an unknown type", name);
        } else if (v->shape.rank < 0 || !lp_shape_numel(&v->shape, &numel)) {
            st = lp_error(d, LP_ERR_USAGE, "--value %s: the shape of input '%s' is not fixed; bind its "
                          "dims with --dim or --shapes first", arg, name);
        } else if ((uint64_t)count != numel) {
            st = lp_error(d, LP_ERR_USAGE, "--value %s: %d value%s given, but input '%s' holds %" PRIu64
                          " element%s (%s rank %d)", arg, count, count == 1 ? "" : "s", name, numel,
                          numel == 1 ? "" : "s", v->shape.rank == 0 ? "a scalar," : "shape of", v->shape.rank);
        }
        int bytes = lp_dtype_bits(v->dtype) / 8;
        uint8_t *buf = st == LP_OK ? malloc((size_t)count * (size_t)(bytes > 0 ? bytes : 1)) : NULL;
        if (st == LP_OK && !buf) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        const char *p = spec;
        for (int i = 0; st == LP_OK && i < count; i++) {
            size_t len = strcspn(p, ",");
            if (!parse_number(p, len, v->dtype, buf + (size_t)i * (size_t)bytes))
                st = lp_error(d, LP_ERR_USAGE, "--value %s: '%.*s' is not a %s value", arg, (int)len, p,
                              lp_dtype_name(v->dtype));
            p += len + (p[len] == ',');
        }
        if (st == LP_OK) {
            int64_t dims[LP_MAX_RANK];
            for (int k = 0; k < v->shape.rank; k++) dims[k] = v->shape.dims[k].size;
            st = lp_graph_fix_input(g, name, v->dtype, v->shape.rank, dims, buf,
                                    (uint64_t)count * (uint64_t)bytes, d);
        }
        free(buf);
    }
    free(name);
    return st;
}

static lp_status bind_shapes(const cli *c, lp_graph *g, lp_diag *d) {
    for (int i = 0; i < c->n_dims; i++) {
        lp_status st = lp_graph_bind_dim(g, c->dims[i].name, c->dims[i].dims[0], d);
        if (st != LP_OK) return st;
    }
    for (int i = 0; i < c->n_shapes; i++) {
        lp_status st = lp_graph_bind_input_shape(g, c->shapes[i].name, c->shapes[i].rank,
                                                 c->shapes[i].dims, d);
        if (st != LP_OK) return st;
    }
    for (int i = 0; i < c->n_values; i++) {
        lp_status st = fix_value(g, c->values[i], d);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

/* "ops  MatMul x128 Add x96 ...": most frequent first, ties by name. */
typedef struct op_count {
    const char *op;
    int count;
} op_count;

static int by_name(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int by_count(const void *a, const void *b) {
    const op_count *x = a, *y = b;
    return x->count != y->count ? y->count - x->count : strcmp(x->op, y->op);
}

static void print_op_histogram(const lp_graph *g, FILE *out) {
    size_t n = (size_t)g->n_nodes;
    const char **ops = malloc((n ? n : 1) * sizeof *ops);
    op_count *runs = malloc((n ? n : 1) * sizeof *runs);
    if (!ops || !runs) {
        free(ops);
        free(runs);
        return;
    }
    for (size_t i = 0; i < n; i++) ops[i] = g->nodes[i].op_type;
    qsort(ops, n, sizeof *ops, by_name);
    size_t n_runs = 0;
    for (size_t i = 0; i < n; i++) {
        if (n_runs && strcmp(runs[n_runs - 1].op, ops[i]) == 0)
            runs[n_runs - 1].count++;
        else
            runs[n_runs++] = (op_count){ops[i], 1};
    }
    qsort(runs, n_runs, sizeof *runs, by_count);
    fputs("ops     ", out);
    for (size_t i = 0; i < n_runs; i++) fprintf(out, " %s x%d", runs[i].op, runs[i].count);
    fputc('\n', out);
    free(ops);
    free(runs);
}

static void print_summary(const lp_graph *g, FILE *out) {
    uint64_t weight_bytes = 0, unsized = 0;
    int n_weights = 0, n_external = 0;
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        if (v->kind != LP_VALUE_WEIGHT) continue;
        uint64_t b;
        n_weights++;
        n_external += v->data.where == LP_DATA_EXTERNAL;
        if (lp_value_bytes(v, &b))
            weight_bytes += b;
        else
            unsized++;
    }
    char buf[32];
    fprintf(out, "model    %s\n", g->path);
    fprintf(out, "format   ONNX ir_version %" PRId64 ", opset %" PRId64 ", producer '%s %s'\n",
            g->ir_version, g->opset, g->producer_name, g->producer_version);
    fprintf(out, "graph    %d nodes, %d values\n", g->n_nodes, g->n_values);
    fprintf(out, "weights  %d tensors, %s", n_weights, lp_format_bytes(weight_bytes, buf));
    if (n_external) fprintf(out, " (%d stored externally)", n_external);
    if (unsized) fprintf(out, " (%" PRIu64 " of unknown size)", unsized);
    fputc('\n', out);
    for (int pass = 0; pass < 2; pass++) {
        int n = pass ? g->n_outputs : g->n_inputs;
        const int32_t *idx = pass ? g->outputs : g->inputs;
        for (int i = 0; i < n; i++) {
            const lp_value *v = &g->values[idx[i]];
            fprintf(out, "%s %s : ", pass ? "output  " : "input   ", v->name);
            lp_value_print_type(v, out);
            fputc('\n', out);
        }
    }
    print_op_histogram(g, out);
}

/* The partition stage; --dump-ir=plan prints its result. */
static lp_status partition_stage(cli *c, const lp_layer_ir *L, lp_plan **plan, lp_diag *d) {
    c->part.tokens = 1;
    for (int i = 0; i < c->n_dims; i++)
        if (strcmp(c->dims[i].name, "batch") == 0 || strcmp(c->dims[i].name, "seq") == 0)
            c->part.tokens *= (uint64_t)c->dims[i].dims[0];
    lp_status st = lp_partition_stage(L, &c->part, plan, d);
    if (c->compare && (st == LP_OK || st == LP_ERR_INFEASIBLE)) {
        /* the comparison stands without a plan: it is the report when none fits */
        lp_target t;
        lp_status ts = *plan ? (t = (*plan)->target, LP_OK)
                             : lp_target_load(c->part.target ? c->part.target : "h100", &t, d);
        if (ts == LP_OK && !*plan && c->part.tier) ts = lp_target_set_tier(&t, c->part.tier, d);
        if (ts == LP_OK) ts = lp_compare_run(L, &t, &c->compare_opt, c->part.tokens, &c->compared, d);
        if (ts != LP_OK) return ts;
        if (st != LP_OK) {
            if (c->json)
                write_json(lp_compare_to_json(&c->compared), c->out, d);
            else
                lp_compare_dump_text(&c->compared, c->out);
        }
    }
    if (st == LP_OK && c->dump && strcmp(c->dump, "plan") == 0) {
        if (c->json)
            st = lp_json_write(c->out, plan_doc, &(plan_doc_ctx){c, *plan, L}, "stdout", d);
        else
            lp_plan_dump_text(*plan, L, c->verbosity > 1, c->out);
        if (!c->json && c->compare) lp_compare_dump_text(&c->compared, c->out);
    }
    return st;
}

/* What one run builds; each stage fills its part. */
typedef struct run {
    cli *c;
    lp_diag *d;
    lp_analysis_options ao;
    lp_graph *g;
    lp_layer_ir *L;
    lp_plan *plan;
    lp_program *prog; /* the plan lowered: each card's ordered steps */
    lp_outdir *od; /* -o DIR, locked from the start of the run to its commit */
} run;

static bool dumping(const cli *c, const char *stage) { return c->dump && strcmp(c->dump, stage) == 0; }

static lp_status dump_json_or_text(const cli *c, lp_json_doc to_json, const void *ir,
                                   void (*to_text)(const void *, FILE *), lp_diag *d) {
    if (c->json) return lp_json_write(c->out, to_json, ir, "stdout", d);
    to_text(ir, c->out);
    return LP_OK;
}

static void graph_json(const void *g, lp_json_out *w) { lp_graph_write_json(g, w); }
static void graph_text(const void *g, FILE *f) { lp_graph_dump_text(g, f); }
static void layers_json(const void *L, lp_json_out *w) { lp_layer_ir_write_json(L, w); }
static void layers_text(const void *L, FILE *f) { lp_layer_ir_dump_text(L, f); }

/* The model and the external data files it reads: none of them may be a
 * file the commit replaces or removes. */
static lp_status protect_inputs(run *r) {
    lp_status st = lp_outdir_protect(r->od, r->g->path, "the model", r->d);
    const char *last = NULL;
    for (int i = 0; st == LP_OK && i < r->g->n_values; i++) {
        const lp_value *v = &r->g->values[i];
        const lp_tensor_data *t = &v->data;
        if (t->where != LP_DATA_EXTERNAL || !t->path || (last && strcmp(last, t->path) == 0)) continue;
        char *what = NULL;
        if (asprintf(&what, "the external data of '%s'", v->name) < 0)
            return lp_error(r->d, LP_ERR_INTERNAL, "out of memory");
        st = lp_outdir_protect(r->od, t->path, what, r->d);
        free(what);
        last = t->path;
    }
    return st;
}

/* --dump-ir=load shows the graph as read, and no later stage runs. */
static lp_status stage_load(run *r) {
    lp_load_options lo = {.require_weights = false};
    lp_status st = r->c->model_bytes
                       ? lp_frontend_load_buffer(r->c->model_bytes, r->c->model_len, r->c->model, &lo, &r->g, r->d)
                       : lp_frontend_load(r->c->model, &lo, &r->g, r->d);
    if (st == LP_OK) st = lp_graph_verify(r->g, r->d);
    if (st == LP_OK && r->od) st = protect_inputs(r);
    if (st != LP_OK || !dumping(r->c, "load")) return st;
    if (r->c->out_dir || r->c->dot || r->c->partition)
        return lp_error(r->d, LP_ERR_USAGE,
                        "--dump-ir=load stops after loading; drop -o, --dot and the partition options");
    return dump_json_or_text(r->c, graph_json, r->g, graph_text, r->d);
}

static lp_status stage_shapes(run *r) {
    lp_status st = bind_shapes(r->c, r->g, r->d);
    if (st == LP_OK) st = lp_analysis_infer_shapes(r->g, &r->ao, r->d);
    if (st == LP_OK) st = lp_graph_verify(r->g, r->d);
    if (st == LP_OK && dumping(r->c, "graph"))
        st = dump_json_or_text(r->c, graph_json, r->g, graph_text, r->d);
    return st;
}

static bool wants_layers(const cli *c) {
    return c->out_dir || c->dot || c->partition || c->layers_given || c->force_layers ||
           dumping(c, "layers");
}

static lp_status stage_layers(run *r) {
    lp_status st = lp_analysis_build_layers(r->g, &r->ao, &r->L, r->d);
    if (st == LP_OK) st = lp_graph_verify(r->g, r->d);
    if (st == LP_OK && dumping(r->c, "layers"))
        st = dump_json_or_text(r->c, layers_json, r->L, layers_text, r->d);
    return st;
}

/* The cards when a partition option asked for a plan; else the layers. */
static lp_status stage_dot(run *r) {
    return r->plan && r->c->partition ? lp_plan_write_dot(r->plan, r->L, r->c->dot, r->d)
                                      : lp_layer_ir_write_dot(r->L, r->c->dot, r->d);
}

static lp_status write_output_json(run *r, const char *name, lp_json_doc doc, const void *ctx) {
    FILE *f = lp_outdir_create(r->od, name, r->d);
    if (!f) return LP_ERR_OUTPUT;
    char what[4096];
    snprintf(what, sizeof what, "%s/%s", lp_outdir_path(r->od), name);
    lp_status st = lp_json_write(f, doc, ctx, what, r->d);
    lp_status cs = lp_outdir_close(r->od, f, r->d);
    return st != LP_OK ? st : cs;
}

static lp_status stage_write_json(run *r) {
    lp_status st = write_output_json(r, "graph.json", graph_json, r->g);
    if (st == LP_OK) st = write_output_json(r, "layers.json", layers_json, r->L);
    if (st == LP_OK && r->plan)
        st = write_output_json(r, "plan.json", plan_doc, &(plan_doc_ctx){r->c, r->plan, r->L});
    return st;
}

static lp_status stage_report(run *r) {
    if (!r->c->dump && r->c->verbosity > 0) {
        print_summary(r->g, r->c->out);
        if (r->plan) lp_plan_dump_text(r->plan, r->L, r->c->verbosity > 1, r->c->out);
        if (r->plan && r->c->compare) lp_compare_dump_text(&r->c->compared, r->c->out);
    }
    /* stdout is settled before the output folder is committed, so a run
     * that fails to print leaves the earlier result as it was */
    if (fflush(r->c->out) != 0 || ferror(r->c->out)) return lp_error(r->d, LP_ERR_OUTPUT, "cannot write to stdout");
    return LP_OK;
}

static void program_json(const void *r, lp_json_out *w) {
    lp_program_write_json(((const run *)r)->prog, ((const run *)r)->L, w);
}
static void program_text(const void *r, FILE *f) {
    lp_program_dump_text(((const run *)r)->prog, ((const run *)r)->L, f);
}

/* Lowering: each card's program from the plan and its stored memory plan,
 * checked by its verifier; --dump-ir=program prints it. */
static lp_status stage_lower(run *r) {
    lp_status st = lp_lower_run(r->plan, r->L, &r->prog, r->d);
    if (st == LP_OK) st = lp_program_verify(r->prog, r->plan, r->L, r->d);
    if (st == LP_OK && r->c->out_dir) st = lp_codegen_check_kernels(r->prog, r->L, r->d);
    if (st == LP_OK && dumping(r->c, "program"))
        st = dump_json_or_text(r->c, program_json, r, program_text, r->d);
    return st;
}

static lp_status stage_write_cards(run *r) {
    int32_t unsliceable = lp_plan_unsliceable_weight(r->plan, r->L);
    if (unsliceable >= 0) {
        const lp_value *w = &r->g->values[unsliceable];
        lp_warn(r->d, "a sharded layer splits weight '%s', whose external file '%s' is absent: its "
                "column slices cannot be cut, so no card models are written (plan.json describes "
                "the split)", w->name, w->data.location);
        return LP_OK; /* the commit removes an earlier run's card models */
    }
    const lp_graph *g = r->g;
    int n_absent = 0;
    const char *first = NULL;
    for (int i = 0; i < g->n_values; i++) {
        const lp_tensor_data *t = &g->values[i].data;
        if (t->where == LP_DATA_EXTERNAL && !t->present && n_absent++ == 0) first = t->location;
    }
    if (n_absent)
        lp_warn(r->d, "the card models declare %d external weights whose file ('%s'%s) is absent: "
                "they validate, and run once the file is placed next to them", n_absent, first,
                n_absent > 1 ? ", ..." : "");
    return lp_plan_write_submodels(r->plan, r->L, r->prog, r->od, r->d);
}

/* {dim: value} of --dim and {input: [dims]} of --shapes, as the manifest
 * records them (names escaped as lp_json_name does); NULL when out of memory. */
static json_t *bindings_json(const binding *bs, int n, bool as_shape) {
    json_t *o = json_object();
    for (int i = 0; o && i < n; i++) {
        json_t *v = as_shape ? json_array() : json_integer(bs[i].dims[0]);
        for (int k = 0; as_shape && v && k < bs[i].rank; k++)
            if (json_array_append_new(v, json_integer(bs[i].dims[k])) != 0) {
                json_decref(v);
                v = NULL;
            }
        char *name = lp_json_escape_name(bs[i].name);
        if (!v || !name || json_object_set_new(o, name, v) != 0) {
            json_decref(o);
            o = NULL;
        }
        free(name);
    }
    return o;
}

/* card_K.weights and manifest.json: what the runtime loads. A weight whose
 * external file is absent cannot be packed: no weights files then, and the
 * manifest says so (weights_file null). */
static lp_status stage_write_weights(run *r) {
    lp_card_blob *blobs = calloc((size_t)r->plan->n_cards + 1, sizeof *blobs);
    if (!blobs) return lp_error(r->d, LP_ERR_INTERNAL, "out of memory");
    int32_t absent = lp_emit_absent_weight(r->plan, r->L);
    lp_status st = LP_OK;
    if (absent >= 0) {
        const lp_value *w = &r->g->values[absent];
        lp_warn(r->d, "weight '%s' lives in external file '%s', which is absent: no card_K.weights "
                "files are written (manifest.json lists the cards without them)", w->name,
                w->data.location);
    } else {
        st = lp_emit_write_weights(r->plan, r->L, r->od, blobs, r->d);
    }
    json_t *b = bindings_json(r->c->dims, r->c->n_dims, false);
    json_t *s = bindings_json(r->c->shapes, r->c->n_shapes, true);
    if (st == LP_OK && (!b || !s)) st = lp_error(r->d, LP_ERR_INTERNAL, "out of memory");
    lp_manifest_info mi = {.lpcc_version = LPCC_VERSION, .model = r->c->model,
                           .dtype = r->c->deploy_dtype, .bindings = b, .shapes = s,
                           .blobs = absent >= 0 ? NULL : blobs};
    if (st == LP_OK) st = lp_emit_write_manifest(r->plan, r->L, &mi, r->od, r->d);
    if (st == LP_OK && r->prog)
        st = lp_emit_write_cards(r->prog, r->L, r->c->model, LPCC_VERSION, r->od, r->d);
    if (st == LP_OK && r->prog)
        st = lp_emit_build_cards(r->prog, LP_RUNTIME_INCLUDE_DIR, !r->c->no_build, r->od, r->d);
    json_decref(b);
    json_decref(s);
    free(blobs);
    return st;
}

/* One document into a malloc'd string (*text, *len); NULL when there is none. */
static lp_status capture_json(lp_json_doc doc, const void *ctx, const char *what, char **text,
                              size_t *len, lp_diag *d) {
    FILE *f = open_memstream(text, len);
    if (!f) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = lp_json_write(f, doc, ctx, what, d);
    if (fclose(f) != 0 && st == LP_OK) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st != LP_OK) {
        free(*text);
        *text = NULL;
        *len = 0;
    }
    return st;
}

/* The pipeline: a flat list of stages, each run only if the ones before it
 * succeeded and the options ask for it. Prints on `out`, reports on `err`;
 * `o` (lpcc_invoke) receives the documents the request asks for. */
static int run_pipeline(const lpcc_request *req, FILE *out, FILE *err, lpcc_outcome *o) {
    lp_diag d = lp_diag_make(NULL);
    d.sink = err;
    cli c;
    memset(&c, 0, sizeof c);
    c.out = out;
    bool done = false;
    lp_status st = parse_args(&c, req->argc, req->argv, &d, &done);
    if (st != LP_OK || done) {
        cli_free(&c);
        if (o) {
            o->status = st;
            snprintf(o->error, sizeof o->error, "%s", d.last_error);
        }
        return lpcc_exit_code(st);
    }
    c.model_bytes = req->model_bytes;
    c.model_len = req->model_len;
    c.force_layers = req->want_layers;
    c.partition |= req->want_plan;
    d.file = c.model;
    d.quiet = c.verbosity == 0;
    run r = {.c = &c, .d = &d, .ao = lp_analysis_defaults()};
    r.ao.deploy_dtype = c.deploy_dtype;
    r.ao.layering = c.layering;
    r.ao.scope_depth = c.scope_depth;
    r.ao.regex = c.layers_regex;
    r.ao.workspace_file = c.workspace;
    bool go = !dumping(&c, "load");

    /* -o DIR is made and locked before the model is read: a model inside
     * DIR is not replaced by a concurrent run while this one reads it */
    if (c.out_dir && go) {
        lp_outdir_options oo = {.create = true, .lock = true, .is_output = lpcc_output_name};
        st = lp_outdir_open(c.out_dir, &oo, &r.od, &d);
    }
    if (st == LP_OK) st = stage_load(&r);
    if (st == LP_OK && go) st = stage_shapes(&r);
    if (st == LP_OK && go && wants_layers(&c)) st = stage_layers(&r);
    if (st == LP_OK && go && (c.partition || c.out_dir)) st = partition_stage(&c, r.L, &r.plan, &d);
    if (st == LP_OK && go && r.plan && (r.od || dumping(&c, "program"))) st = stage_lower(&r);
    if (st == LP_OK && go && r.od) st = stage_write_json(&r);
    /* the cards before the report: a run that fails to write them prints no plan */
    if (st == LP_OK && go && r.od && r.plan) st = stage_write_cards(&r);
    if (st == LP_OK && go && r.od && r.plan) st = stage_write_weights(&r);
    if (st == LP_OK && go) st = stage_report(&r);
    /* the documents an in-process caller asked for: the bytes -o writes */
    if (st == LP_OK && go && o && req->want_plan && r.plan)
        st = capture_json(plan_doc, &(plan_doc_ctx){&c, r.plan, r.L}, "plan.json", &o->plan_json,
                          &o->plan_json_len, &d);
    if (st == LP_OK && go && o && req->want_layers && r.L)
        st = capture_json(layers_json, r.L, "layers.json", &o->layers_json, &o->layers_json_len, &d);
    if (st == LP_OK && go && o && req->want_layers && r.g)
        st = capture_json(graph_json, r.g, "graph.json", &o->graph_json, &o->graph_json_len, &d);
    /* last before the commit, so a failed run leaves the earlier graph too */
    if (st == LP_OK && go && c.dot) st = stage_dot(&r);
    /* the one commit: DIR holds this run's files, or the earlier run's */
    if (st == LP_OK && r.od)
        st = lp_outdir_commit(r.od, &d);
    else
        lp_outdir_abort(r.od);
    if (o) {
        o->status = st;
        snprintf(o->error, sizeof o->error, "%s", st == LP_OK ? "" : d.last_error);
        o->n_warnings = d.n_warnings;
    }

    lp_program_free(r.prog);
    lp_plan_free(r.plan);
    lp_layer_ir_free(r.L);
    lp_graph_free(r.g);
    cli_free(&c);
    return lpcc_exit_code(st);
}

int lpcc_main(int argc, char **argv) {
    lpcc_request req = {.argc = argc, .argv = argv};
    return run_pipeline(&req, stdout, stderr, NULL);
}

int lpcc_invoke(const lpcc_request *req, lpcc_outcome *o) {
    memset(o, 0, sizeof *o);
    FILE *out = open_memstream(&o->out, &o->out_len);
    FILE *err = out ? open_memstream(&o->err, &o->err_len) : NULL;
    if (!out || !err) {
        if (out) fclose(out);
        free(o->out);
        o->out = NULL;
        o->status = LP_ERR_INTERNAL;
        snprintf(o->error, sizeof o->error, "out of memory");
        return o->exit_code = LPCC_EXIT_INTERNAL;
    }
    o->exit_code = run_pipeline(req, out, err, o);
    /* a buffer that cannot be closed lost text: an internal error */
    int cs = fclose(out), ce = fclose(err);
    if ((cs != 0 || ce != 0) && o->exit_code == LPCC_EXIT_OK) {
        o->status = LP_ERR_INTERNAL;
        snprintf(o->error, sizeof o->error, "out of memory");
        o->exit_code = LPCC_EXIT_INTERNAL;
    }
    return o->exit_code;
}

void lpcc_outcome_free(lpcc_outcome *o) {
    if (!o) return;
    free(o->out);
    free(o->err);
    free(o->plan_json);
    free(o->layers_json);
    free(o->graph_json);
    memset(o, 0, sizeof *o);
}
