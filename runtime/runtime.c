/* The runtime: a compiled folder opened, its cards allocated, weights
 * loaded and checked, card programs built and loaded, and the model run on
 * the CPU reference path (lp_runtime.h says what each step does). */
#define _GNU_SOURCE
#include "lp_runtime.h"
#include "lp_card.h"
#include "lp_ops.h"
#include "lp_persist.h"
#include "lp_ref.h"
#include "lp_transport.h"

#include <dlfcn.h>
#include <pthread.h>
#include <errno.h>
#include <ftw.h>
#include <inttypes.h>
#include <jansson.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <sys/stat.h>
#include <zlib.h>

#ifdef LP_HAVE_CUDA
#include "lp_gpu_device.h"
#endif

#ifndef LP_RUNTIME_INCLUDE_DIR
#define LP_RUNTIME_INCLUDE_DIR "."
#endif

extern char **environ;

typedef struct rt_cut {
    char *value;
    uint64_t bytes, src_offset, dst_offset;
    int from, to;
    uint8_t *inbox;  /* from another process: its bytes, once arrived this step */
    bool arrived;
    bool direct;     /* the sender's persistent program writes it into the receiver's buffer */
    char why[192];   /* else why not */
} rt_cut;

/* An all-gather of a sharded layer's output among its shard cards. */
typedef struct rt_part {
    int card;
    int64_t begin, end;
    uint64_t bytes, offset; /* the slice's bytes; the gather buffer on that card */
} rt_part;

typedef struct rt_gather {
    char *value;
    uint64_t bytes, outer, row_bytes, column_bytes;
    int n_parts;
    rt_part *parts;
} rt_gather;

/* The shard cards of one layer run at once, one thread each, and meet at
 * every all-gather; a card that fails aborts the meeting for all. */
typedef struct rt_group {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int n, waiting, finished;
    unsigned generation;
    bool aborted;
    struct lp_rt *rt;
} rt_group;

typedef struct rt_place {
    int card;
    uint64_t offset;
} rt_place;

typedef struct rt_io {
    lp_rt_io io;
    int64_t *dims;
    int n_places;
    rt_place *places;
    uint8_t *data;  /* bound input bytes, or the last run's output */
    bool bound;
} rt_io;

typedef struct rt_card {
    int card;
    uint64_t total_bytes, alignment, weights_bytes;
    unsigned char *base;
    void *so;
    lp_card_step_fn step;
    int first_layer, n_shards;
    double step_s, transfer_s;
    int rc;               /* the last step's result */
    rt_group *group;      /* while a shard group runs */
    int gpu;              /* cuda: the GPU it runs on */
    bool pinned;          /* cuda: weights in an L2 persisting window */
    bool wants_persist;   /* the manifest's "program" is "persistent" or "resident" */
    bool wants_resident;  /* the manifest's "program" is "resident" */
    lp_persist_program *persist; /* the step as a persistent program, or NULL: library kernels */
    char gpu_name[96];    /* cuda: its name, for lp_rt_card_memory */
} rt_card;

struct lp_rt {
    char *dir;
    char *manifest_path;
    char *tmp;       /* the built shared objects */
    int n_cards;
    rt_card *cards;
    int n_cuts;
    rt_cut *cuts;
    int n_gathers;
    rt_gather *gathers;
    int n_inputs, n_outputs;
    rt_io *inputs, *outputs;
    lp_diag *run_diag; /* the diag of the run in progress, for the callbacks */
    pthread_mutex_t diag_mu; /* the shard threads report through run_diag */
    double run_s, device_s;
    bool cuda;
    /* one process of several: the cards this rank runs, and the others' cuts */
    int rank, world;
    int *rank_of;            /* [n_cards], or NULL: every card is this process's */
    lp_transport *tx;
    uint32_t steps;          /* runs so far: the step counter transfers carry */
    uint8_t *staging;        /* a cut's bytes on their way between processes */
#ifdef LP_HAVE_CUDA
    lp_gdev *gdev;
    int (*gdev_compute)(lp_card_env *, unsigned char *, const lp_card_node *);
    int (*gdev_copy)(lp_card_env *, unsigned char *, uint64_t, uint64_t, uint64_t, const char *);
#endif
};

/* Whether card c runs in this process. */
static bool mine(const lp_rt *rt, int c) { return !rt->rank_of || rt->rank_of[c] == rt->rank; }

lp_rt_options lp_rt_defaults(void) {
    lp_rt_options o = {.device = "cpu", .graphs = true, .pin_weights = true, .program = "auto",
                       .rank = 0, .world = 1, .rendezvous = "127.0.0.1", .port = 29500, .timeout_s = 60};
    return o;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s", a, b);
    return s;
}

/* ---- manifest ------------------------------------------------------------ */

typedef struct mctx {
    const char *path;
    lp_diag *d;
} mctx;

static lp_status bad(const mctx *m, const char *key, const char *why) {
    return lp_error(m->d, LP_ERR_INVALID_MODEL, "%s: key '%s': %s", m->path, key, why);
}

static lp_status get_u64(const mctx *m, json_t *obj, const char *key, const char *where,
                         uint64_t *out) {
    json_t *v = json_object_get(obj, key);
    char k[256];
    snprintf(k, sizeof k, "%s%s", where, key);
    if (!json_is_integer(v) || json_integer_value(v) < 0) return bad(m, k, "missing or not a non-negative integer");
    *out = (uint64_t)json_integer_value(v);
    return LP_OK;
}

static lp_status get_int(const mctx *m, json_t *obj, const char *key, const char *where, int *out) {
    uint64_t v = 0;
    lp_status st = get_u64(m, obj, key, where, &v);
    if (st == LP_OK && v > INT32_MAX) {
        char k[256];
        snprintf(k, sizeof k, "%s%s", where, key);
        return bad(m, k, "out of range");
    }
    *out = (int)v;
    return st;
}

static lp_status parse_io(const mctx *m, lp_rt *rt, json_t *arr, const char *key, rt_io **out,
                          int *n_out) {
    if (!json_is_array(arr)) return bad(m, key, "missing or not an array");
    int n = (int)json_array_size(arr);
    rt_io *ios = calloc((size_t)n + 1, sizeof *ios);
    if (!ios) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    *out = ios;
    *n_out = n;
    for (int i = 0; i < n; i++) {
        json_t *e = json_array_get(arr, (size_t)i);
        char where[96];
        snprintf(where, sizeof where, "%s[%d].", key, i);
        rt_io *x = &ios[i];
        json_t *name = json_object_get(e, "name"), *dt = json_object_get(e, "dtype"),
               *shape = json_object_get(e, "shape"), *cards = json_object_get(e, "cards");
        char k[128];
        snprintf(k, sizeof k, "%sname", where);
        if (!json_is_string(name)) return bad(m, k, "missing or not a string");
        x->io.name = strdup(json_string_value(name));
        snprintf(k, sizeof k, "%sdtype", where);
        if (!json_is_string(dt) || !lp_dtype_from_name(json_string_value(dt), &x->io.dtype) ||
            lp_ref_dtype_size(x->io.dtype) == 0)
            return bad(m, k, "missing or not a dtype the runtime can hold");
        snprintf(k, sizeof k, "%sshape", where);
        if (!json_is_array(shape)) return bad(m, k, "missing or not an array");
        x->io.rank = (int)json_array_size(shape);
        x->dims = calloc((size_t)x->io.rank + 1, sizeof *x->dims);
        if (!x->io.name || !x->dims) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
        uint64_t numel = 1;
        for (int r = 0; r < x->io.rank; r++) {
            json_t *v = json_array_get(shape, (size_t)r);
            if (!json_is_integer(v) || json_integer_value(v) < 0)
                return bad(m, k, "a dim is not a number (compile with --dim / --shapes)");
            x->dims[r] = json_integer_value(v);
            numel *= (uint64_t)x->dims[r];
        }
        x->io.dims = x->dims;
        lp_status st = get_u64(m, e, "bytes", where, &x->io.bytes);
        if (st != LP_OK) return st;
        if (x->io.bytes != numel * lp_ref_dtype_size(x->io.dtype))
            return bad(m, k, "bytes do not match the shape and dtype");
        snprintf(k, sizeof k, "%scards", where);
        if (!json_is_array(cards) || json_array_size(cards) == 0) return bad(m, k, "missing or empty");
        x->n_places = (int)json_array_size(cards);
        x->places = calloc((size_t)x->n_places, sizeof *x->places);
        x->data = calloc(1, x->io.bytes ? x->io.bytes : 1);
        if (!x->places || !x->data) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
        for (int p = 0; p < x->n_places; p++) {
            json_t *c = json_array_get(cards, (size_t)p);
            char w2[160];
            snprintf(w2, sizeof w2, "%scards[%d].", where, p);
            uint64_t off = 0;
            if ((st = get_int(m, c, "card", w2, &x->places[p].card)) != LP_OK ||
                (st = get_u64(m, c, "offset", w2, &off)) != LP_OK)
                return st;
            x->places[p].offset = off;
            if (x->places[p].card >= rt->n_cards ||
                off + x->io.bytes > rt->cards[x->places[p].card].total_bytes)
                return bad(m, w2, "the buffer lies outside the card's allocation");
        }
    }
    return LP_OK;
}

static lp_status parse_gather(const mctx *m, lp_rt *rt, json_t *e, const char *where,
                              const char *value, size_t n_transfers) {
    if (!rt->gathers && !(rt->gathers = calloc(n_transfers + 1, sizeof *rt->gathers)))
        return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    rt_gather *g = &rt->gathers[rt->n_gathers++];
    lp_status st;
    if ((st = get_u64(m, e, "bytes", where, &g->bytes)) != LP_OK ||
        (st = get_u64(m, e, "outer", where, &g->outer)) != LP_OK ||
        (st = get_u64(m, e, "row_bytes", where, &g->row_bytes)) != LP_OK ||
        (st = get_u64(m, e, "column_bytes", where, &g->column_bytes)) != LP_OK)
        return st;
    g->value = strdup(value);
    json_t *parts = json_object_get(e, "participants");
    char k[128];
    snprintf(k, sizeof k, "%sparticipants", where);
    if (!json_is_array(parts) || json_array_size(parts) == 0) return bad(m, k, "missing or empty");
    g->n_parts = (int)json_array_size(parts);
    g->parts = calloc((size_t)g->n_parts, sizeof *g->parts);
    if (!g->value || !g->parts) return lp_error(m->d, LP_ERR_INTERNAL, "out of memory");
    uint64_t at = 0;
    for (int i = 0; i < g->n_parts; i++) {
        json_t *p = json_array_get(parts, (size_t)i);
        char w2[160];
        snprintf(w2, sizeof w2, "%sparticipants[%d].", where, i);
        rt_part *q = &g->parts[i];
        uint64_t b = 0, en = 0;
        if ((st = get_int(m, p, "card", w2, &q->card)) != LP_OK ||
            (st = get_u64(m, p, "begin", w2, &b)) != LP_OK ||
            (st = get_u64(m, p, "end", w2, &en)) != LP_OK ||
            (st = get_u64(m, p, "bytes", w2, &q->bytes)) != LP_OK ||
            (st = get_u64(m, p, "offset", w2, &q->offset)) != LP_OK)
            return st;
        q->begin = (int64_t)b, q->end = (int64_t)en;
        at += q->bytes;
        if (q->card >= rt->n_cards || q->offset + g->bytes > rt->cards[q->card].total_bytes ||
            en < b || en * g->column_bytes > g->row_bytes ||
            (en - b) * g->column_bytes * g->outer != q->bytes)
            return bad(m, w2, "the slice does not fit the value or its card's allocation");
    }
    if (at != g->bytes) return bad(m, k, "the slices do not add up to the value");
    return LP_OK;
}

/* The card list, the cuts, the inputs and outputs. */
static lp_status parse_manifest(lp_rt *rt, json_t *root, lp_diag *d) {
    mctx m = {rt->manifest_path, d};
    json_t *fmt = json_object_get(root, "format"), *ver = json_object_get(root, "version");
    if (!json_is_string(fmt) || strcmp(json_string_value(fmt), "lpcc-manifest") != 0)
        return bad(&m, "format", "not \"lpcc-manifest\": not a folder lpcc wrote");
    if (!json_is_integer(ver)) return bad(&m, "version", "missing or not an integer");
    if (json_integer_value(ver) != 1) {
        char why[128];
        snprintf(why, sizeof why, "version %" PRId64 ", this runtime reads version 1: recompile "
                 "the model with this lpcc", (int64_t)json_integer_value(ver));
        return bad(&m, "version", why);
    }
    json_t *cards = json_object_get(root, "cards");
    if (!json_is_array(cards) || json_array_size(cards) == 0) return bad(&m, "cards", "missing or empty");
    rt->n_cards = (int)json_array_size(cards);
    rt->cards = calloc((size_t)rt->n_cards, sizeof *rt->cards);
    if (!rt->cards) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; c < rt->n_cards; c++) {
        json_t *e = json_array_get(cards, (size_t)c);
        char where[64];
        snprintf(where, sizeof where, "cards[%d].", c);
        rt_card *k = &rt->cards[c];
        int n_shards = 1;
        lp_status st;
        if ((st = get_int(&m, e, "card", where, &k->card)) != LP_OK ||
            (st = get_u64(&m, e, "total_bytes", where, &k->total_bytes)) != LP_OK ||
            (st = get_u64(&m, e, "alignment", where, &k->alignment)) != LP_OK ||
            (st = get_int(&m, e, "n_shards", where, &n_shards)) != LP_OK ||
            (st = get_int(&m, e, "first_layer", where, &k->first_layer)) != LP_OK)
            return st;
        k->n_shards = n_shards;
        if (k->card != c) return bad(&m, where, "cards are not numbered in order");
        json_t *prog = json_object_get(e, "program");
        if (prog && !json_is_string(prog)) return bad(&m, where, "\"program\" is not a string");
        const char *pv = prog ? json_string_value(prog) : "library";
        if (strcmp(pv, "library") != 0 && strcmp(pv, "persistent") != 0 && strcmp(pv, "resident") != 0) {
            char key[80];
            snprintf(key, sizeof key, "%sprogram", where);
            return bad(&m, key, "not \"library\", \"persistent\" or \"resident\"");
        }
        k->wants_resident = strcmp(pv, "resident") == 0;
        k->wants_persist = k->wants_resident || strcmp(pv, "persistent") == 0;
        json_t *w = json_object_get(json_object_get(e, "regions"), "weights");
        char k2[96];
        snprintf(k2, sizeof k2, "%sregions.weights.", where);
        if ((st = get_u64(&m, w, "bytes", k2, &k->weights_bytes)) != LP_OK) return st;
        if (k->weights_bytes > k->total_bytes) return bad(&m, k2, "larger than the allocation");
    }
    json_t *tr = json_object_get(root, "transfers");
    if (!json_is_array(tr)) return bad(&m, "transfers", "missing or not an array");
    rt->cuts = calloc(json_array_size(tr) + 1, sizeof *rt->cuts);
    if (!rt->cuts) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (size_t i = 0; i < json_array_size(tr); i++) {
        json_t *e = json_array_get(tr, i);
        char where[64];
        snprintf(where, sizeof where, "transfers[%zu].", i);
        json_t *kind = json_object_get(e, "kind"), *value = json_object_get(e, "value");
        if (!json_is_string(kind) || !json_is_string(value))
            return bad(&m, where, "kind or value missing");
        if (strcmp(json_string_value(kind), "all_gather") == 0) {
            lp_status st = parse_gather(&m, rt, e, where, json_string_value(value), json_array_size(tr));
            if (st != LP_OK) return st;
            continue;
        }
        if (strcmp(json_string_value(kind), "cut") != 0) return bad(&m, where, "unknown transfer kind");
        rt_cut *t = &rt->cuts[rt->n_cuts++];
        lp_status st;
        if ((st = get_u64(&m, e, "bytes", where, &t->bytes)) != LP_OK ||
            (st = get_int(&m, e, "from", where, &t->from)) != LP_OK ||
            (st = get_int(&m, e, "to", where, &t->to)) != LP_OK ||
            (st = get_u64(&m, e, "src_offset", where, &t->src_offset)) != LP_OK ||
            (st = get_u64(&m, e, "dst_offset", where, &t->dst_offset)) != LP_OK)
            return st;
        t->value = strdup(json_string_value(value));
        if (!t->value) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        if (t->from >= rt->n_cards || t->to >= rt->n_cards || t->from >= t->to)
            return bad(&m, where, "from and to are not earlier and later cards of the plan");
        if (t->src_offset + t->bytes > rt->cards[t->from].total_bytes ||
            t->dst_offset + t->bytes > rt->cards[t->to].total_bytes)
            return bad(&m, where, "a buffer lies outside its card's allocation");
    }
    lp_status st = parse_io(&m, rt, json_object_get(root, "inputs"), "inputs", &rt->inputs, &rt->n_inputs);
    if (st == LP_OK)
        st = parse_io(&m, rt, json_object_get(root, "outputs"), "outputs", &rt->outputs, &rt->n_outputs);
    return st;
}

/* ---- weights ------------------------------------------------------------- */

static lp_status load_weights(lp_rt *rt, int c, json_t *card, lp_diag *d) {
    rt_card *k = &rt->cards[c];
    json_t *wf = json_object_get(card, "weights_file");
    mctx m = {rt->manifest_path, d};
    char where[64];
    snprintf(where, sizeof where, "cards[%d].weights_file.", c);
    if (json_is_null(wf) || !wf) {
        if (k->weights_bytes == 0) return LP_OK;
        return lp_error(d, LP_ERR_INVALID_MODEL, "%s: card %d has no weights file (lpcc could not "
                        "read the model's external weights); recompile with them present",
                        rt->manifest_path, c);
    }
    json_t *file = json_object_get(wf, "file");
    uint64_t bytes = 0, crc = 0;
    lp_status st;
    if (!json_is_string(file)) return bad(&m, where, "file missing");
    if ((st = get_u64(&m, wf, "bytes", where, &bytes)) != LP_OK ||
        (st = get_u64(&m, wf, "crc32", where, &crc)) != LP_OK)
        return st;
    const char *name = json_string_value(file);
    if (strchr(name, '/') || strcmp(name, "..") == 0)
        return bad(&m, where, "file is not a name inside the folder");
    if (bytes != k->weights_bytes) return bad(&m, where, "bytes differ from the weights region");
    char *path = join(rt->dir, name);
    if (!path) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    FILE *f = fopen(path, "rb");
    if (!f) {
        st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: cannot open: %s", path, strerror(errno));
        free(path);
        return st;
    }
    size_t got = bytes ? fread(k->base, 1, bytes, f) : 0;
    int extra = fgetc(f);
    bool err = ferror(f);
    fclose(f);
    if (err || got != bytes || extra != EOF) {
        st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: %s (the manifest says %" PRIu64 " bytes)", path,
                      err ? "read error" : got != bytes ? "shorter than the manifest says" :
                      "longer than the manifest says", bytes);
        free(path);
        return st;
    }
    uLong sum = crc32(0L, Z_NULL, 0);
    for (uint64_t at = 0; at < bytes;) {
        uInt n = (uInt)(bytes - at > (1u << 30) ? (1u << 30) : bytes - at);
        sum = crc32(sum, k->base + at, n);
        at += n;
    }
    if ((uint64_t)sum != crc) {
        st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: checksum mismatch (crc32 %08lx, the manifest "
                      "says %08" PRIx64 "): the weights file is corrupt", path, (unsigned long)sum, crc);
        free(path);
        return st;
    }
    free(path);
    return LP_OK;
}

/* ---- card programs ------------------------------------------------------- */

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(p);
}

static lp_status run_compiler(const char *cxx, char **argv, const char *src, lp_diag *d) {
    pid_t pid;
    int rc = posix_spawnp(&pid, cxx, NULL, NULL, argv, environ);
    if (rc != 0)
        return lp_error(d, LP_ERR_INVALID_MODEL, "%s: cannot run the C++ compiler '%s': %s (set $CXX)",
                        src, cxx, strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return lp_error(d, LP_ERR_INTERNAL, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return lp_error(d, LP_ERR_INVALID_MODEL, "%s: the C++ compiler '%s' failed on the card "
                        "program (its messages are above)", src, cxx);
    return LP_OK;
}

static lp_status build_card(lp_rt *rt, int c, const lp_rt_options *o, lp_diag *d) {
    char name[64], so_name[64];
    snprintf(name, sizeof name, "card_%d.cu", c);
    snprintf(so_name, sizeof so_name, "card_%d.so", c);
    char *src = join(rt->dir, name), *so = join(rt->tmp, so_name);
    lp_status st = LP_OK;
    if (!src || !so) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st == LP_OK && access(src, R_OK) != 0)
        st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: cannot read the card program: %s (compile the "
                      "model with this lpcc)", src, strerror(errno));
    const char *cxx = o->cxx ? o->cxx : getenv("CXX") ? getenv("CXX") : "c++";
    const char *inc = o->include_dir         ? o->include_dir
                      : getenv("LPCC_RUNTIME_INCLUDE") ? getenv("LPCC_RUNTIME_INCLUDE")
                                               : LP_RUNTIME_INCLUDE_DIR;
    char *iflag = NULL;
    /* the shared object lpcc built beside the source, when it is newer */
    char *built = join(rt->dir, so_name);
    struct stat ss, bs;
    bool prebuilt = st == LP_OK && built && stat(src, &ss) == 0 && stat(built, &bs) == 0 &&
                    S_ISREG(bs.st_mode) &&
                    (bs.st_mtim.tv_sec > ss.st_mtim.tv_sec ||
                     (bs.st_mtim.tv_sec == ss.st_mtim.tv_sec && bs.st_mtim.tv_nsec >= ss.st_mtim.tv_nsec));
    if (prebuilt) {
        free(so);
        so = built;
        built = NULL;
    }
    free(built);
    if (st == LP_OK && !prebuilt) {
        size_t n = strlen(inc) + 3;
        iflag = malloc(n);
        if (!iflag) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        else snprintf(iflag, n, "-I%s", inc);
    }
    if (st == LP_OK && !prebuilt) {
        char *argv[] = {(char *)cxx, "-x", "c++", "-O1", "-shared", "-fPIC", "-w", iflag,
                        src, "-o", so, NULL};
        st = run_compiler(cxx, argv, src, d);
    }
    if (st == LP_OK) {
        rt->cards[c].so = dlopen(so, RTLD_NOW | RTLD_LOCAL);
        if (!rt->cards[c].so)
            st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: cannot load the built program: %s", src, dlerror());
    }
    if (st == LP_OK) {
        const int *abi = (const int *)dlsym(rt->cards[c].so, LP_CARD_ABI_SYMBOL);
        void *fn = dlsym(rt->cards[c].so, LP_CARD_STEP_SYMBOL);
        if (!abi || !fn)
            st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: no %s or %s: not a card program", src,
                          LP_CARD_STEP_SYMBOL, LP_CARD_ABI_SYMBOL);
        else if (*abi != LP_CARD_ABI)
            st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: card program ABI %d, this runtime runs %d: "
                          "recompile the model with this lpcc", src, *abi, LP_CARD_ABI);
        else
            memcpy(&rt->cards[c].step, &fn, sizeof fn);
    }
    free(iflag);
    free(src);
    free(so);
    return st;
}

#ifdef LP_HAVE_CUDA
/* "0,1,0,1": card c runs on GPU list[c], the last entry repeating. */
static lp_status parse_gpus(const char *list, int n_cards, int *gpu_of, lp_diag *d) {
    for (int c = 0; c < n_cards; c++) gpu_of[c] = 0;
    if (!list) return LP_OK;
    const char *p = list;
    int c = 0, last = 0;
    while (*p) {
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < 0 || v > 1023 || (*end && *end != ','))
            return lp_error(d, LP_ERR_USAGE, "--gpus '%s': not a comma-separated list of GPU "
                            "numbers", list);
        if (c < n_cards) gpu_of[c] = (int)v;
        else
            return lp_error(d, LP_ERR_USAGE, "--gpus '%s': %d entries for a model of %d card%s",
                            list, c + 1, n_cards, n_cards == 1 ? "" : "s");
        last = (int)v;
        c++;
        p = *end ? end + 1 : end;
    }
    if (c == 0) return lp_error(d, LP_ERR_USAGE, "--gpus: an empty list");
    for (; c < n_cards; c++) gpu_of[c] = last;
    return LP_OK;
}

static int gpu_compute_locked(lp_card_env *env, unsigned char *base, const lp_card_node *n);
static int gpu_copy_locked(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src,
                           uint64_t bytes, const char *value);

/* Each card's allocation on its GPU, the weights uploaded (the host copy
 * released), an L2 window over weights that fit. */
static lp_status plan_direct_cuts(lp_rt *rt, const lp_rt_options *o, lp_diag *d);

static lp_status open_cuda(lp_rt *rt, const lp_rt_options *o, lp_diag *d) {
    int *gpu_of = calloc((size_t)rt->n_cards + 1, sizeof *gpu_of);
    if (!gpu_of) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = parse_gpus(o->gpus, rt->n_cards, gpu_of, d);
    lp_gdev_options go = lp_gdev_defaults();
    go.graphs = o->graphs;
    go.pin_weights = o->pin_weights;
    go.check_nodes = o->check_nodes;
    if (st == LP_OK) st = lp_gdev_open(rt->n_cards, gpu_of, &go, &rt->gdev, d);
    for (int c = 0; st == LP_OK && c < rt->n_cards; c++) {
        rt_card *k = &rt->cards[c];
        k->gpu = gpu_of[c];
        st = lp_gdev_alloc(rt->gdev, c, k->total_bytes, d);
        if (st == LP_OK) st = lp_gdev_upload(rt->gdev, c, 0, k->base, k->weights_bytes, d);
        if (st == LP_OK) st = lp_gdev_pin(rt->gdev, c, k->weights_bytes, &k->pinned, d);
    }
    /* the programs take the receivers' addresses before they are opened */
    if (st == LP_OK) st = plan_direct_cuts(rt, o, d);
    for (int c = 0; st == LP_OK && c < rt->n_cards; c++) {
        rt_card *k = &rt->cards[c];
        bool choose = !o->program || strcmp(o->program, "auto") == 0;
        bool resident = choose ? k->wants_resident : strcmp(o->program, "resident") == 0;
        if (st == LP_OK && k->persist)
            st = resident ? lp_gdev_set_resident(rt->gdev, c, k->persist, choose, d)
                          : lp_gdev_set_persist(rt->gdev, c, k->persist, choose, d);
        free(k->base);
        k->base = NULL;
    }
    free(gpu_of);
    return st;
}
#endif

/* Cards over ranks: contiguous runs in card order (rank r gets cards
 * r * n / world .. (r + 1) * n / world - 1), a sharded layer's cards kept
 * with its first. */
static lp_status assign_ranks(lp_rt *rt, const lp_rt_options *o, lp_diag *d) {
    rt->rank = o->rank;
    rt->world = o->world > 0 ? o->world : 1;
    if (rt->world == 1 && o->rank == 0) return LP_OK;
    if (o->rank < 0 || o->rank >= rt->world)
        return lp_error(d, LP_ERR_USAGE, "rank %d: not a rank of world size %d", o->rank, rt->world);
    if (rt->cuda)
        return lp_error(d, LP_ERR_USAGE, "world size %d: one process a rank runs on the CPU path only; on "
                        "GPUs run one process with --gpus", rt->world);
    if (rt->world > rt->n_cards)
        return lp_error(d, LP_ERR_USAGE, "world size %d is more than the %d cards of %s: a rank would hold "
                        "no card", rt->world, rt->n_cards, rt->dir);
    rt->rank_of = calloc((size_t)rt->n_cards, sizeof *rt->rank_of);
    if (!rt->rank_of) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int r = 0; r < rt->world; r++)
        for (int64_t c = (int64_t)r * rt->n_cards / rt->world; c < (int64_t)(r + 1) * rt->n_cards / rt->world; c++)
            rt->rank_of[c] = r;
    for (int c = 0; c < rt->n_cards; c++) {
        const rt_card *k = &rt->cards[c];
        if (c > 0 && k->n_shards > 1 && rt->cards[c - 1].n_shards > 1 &&
            rt->cards[c - 1].first_layer == k->first_layer)
            rt->rank_of[c] = rt->rank_of[c - 1];
    }
    for (int r = 0; r < rt->world; r++) {
        bool any = false;
        for (int c = 0; c < rt->n_cards && !any; c++) any = rt->rank_of[c] == r;
        if (!any)
            return lp_error(d, LP_ERR_USAGE, "world size %d: rank %d would hold no card (a sharded layer's "
                            "cards stay in one process); use fewer ranks", rt->world, r);
    }
    return LP_OK;
}

/* The bytes of card c that others read after its step: what it sends. */
static lp_status live_out_of(const lp_rt *rt, int c, lp_persist_range **out, int *n, lp_diag *d) {
    int cap = rt->n_cuts + rt->n_outputs + 1;
    lp_persist_range *r = calloc((size_t)cap, sizeof *r);
    if (!r) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    int k = 0;
    for (int i = 0; i < rt->n_cuts; i++)
        if (rt->cuts[i].from == c)
            r[k++] = (lp_persist_range){rt->cuts[i].src_offset, rt->cuts[i].src_offset + rt->cuts[i].bytes};
    for (int i = 0; i < rt->n_outputs; i++)
        if (rt->outputs[i].n_places > 0 && rt->outputs[i].places[0].card == c) {
            uint64_t o = rt->outputs[i].places[0].offset;
            r[k++] = (lp_persist_range){o, o + rt->outputs[i].io.bytes};
        }
    *out = r;
    *n = k;
    return LP_OK;
}

/* Card c's step as a persistent program, when the manifest (or
 * options.program) asks for one and the card is not a shard. */
static lp_status plan_persistent(lp_rt *rt, int c, const lp_rt_options *o, lp_diag *d) {
    rt_card *k = &rt->cards[c];
    const char *mode = o->program ? o->program : "auto";
    bool want = strcmp(mode, "persistent") == 0 || strcmp(mode, "resident") == 0 ||
                (strcmp(mode, "auto") == 0 && k->wants_persist);
    if (!want || k->n_shards > 1) return LP_OK;
    lp_persist_event *ev = NULL;
    int n = 0, n_live = 0;
    lp_persist_range *live = NULL;
    lp_status st = lp_persist_record(k->step, c, &ev, &n, d);
    if (st == LP_OK) st = live_out_of(rt, c, &live, &n_live, d);
    if (st == LP_OK) st = lp_persist_plan(ev, n, k->base, k->weights_bytes, live, n_live, &k->persist, d);
    free(ev);
    free(live);
    return st;
}

static bool bytes_overlap(uint64_t a, uint64_t a_bytes, uint64_t b, uint64_t b_bytes) {
    return a < b + b_bytes && b < a + a_bytes;
}

/* Whether another cut shares bytes with cut i at its sender (at_receiver
 * false: the same bytes sent twice) or at its receiver (true: two senders
 * writing there directly would race). */
static bool cut_shares_bytes(const lp_rt *rt, int i, bool at_receiver) {
    const rt_cut *t = &rt->cuts[i];
    for (int j = 0; j < rt->n_cuts; j++) {
        const rt_cut *u = &rt->cuts[j];
        if (j == i) continue;
        if (at_receiver ? u->to == t->to && bytes_overlap(u->dst_offset, u->bytes, t->dst_offset, t->bytes)
                        : u->from == t->from && bytes_overlap(u->src_offset, u->bytes, t->src_offset, t->bytes))
            return true;
    }
    return false;
}

/* Whether cut i's bytes are also a model output's on the sending card. */
static bool sent_as_output(const lp_rt *rt, int i) {
    const rt_cut *t = &rt->cuts[i];
    for (int j = 0; j < rt->n_outputs; j++) {
        const rt_io *x = &rt->outputs[j];
        for (int p = 0; p < x->n_places; p++)
            if (x->places[p].card == t->from &&
                bytes_overlap(x->places[p].offset, x->io.bytes, t->src_offset, t->bytes))
                return true;
    }
    return false;
}

/* Which cuts the sender's persistent program writes straight into the
 * receiver's buffer (rt_cut.direct; else rt_cut.why), its phases told where. */
static lp_status plan_direct_cuts(lp_rt *rt, const lp_rt_options *o, lp_diag *d) {
    for (int i = 0; i < rt->n_cuts; i++) {
        rt_cut *t = &rt->cuts[i];
        rt_card *k = &rt->cards[t->from];
        const char *why = NULL;
        t->direct = false;
        if (o->copy_cuts) why = "copies were asked for";
        else if (!mine(rt, t->from) || !mine(rt, t->to)) why = "the cards run in different processes";
        else if (!k->persist) why = "the sending card runs library kernels";
        else if (t->bytes == 0) why = "no bytes";
        else if (cut_shares_bytes(rt, i, false) || sent_as_output(rt, i))
            why = "the same bytes leave the sending card elsewhere too";
        else if (cut_shares_bytes(rt, i, true)) why = "another cut arrives in the same bytes of the receiving card";
        if (why) {
            snprintf(t->why, sizeof t->why, "%s", why);
            continue;
        }
        uint64_t at = (uint64_t)(uintptr_t)(rt->cards[t->to].base + t->dst_offset);
#ifdef LP_HAVE_CUDA
        if (rt->cuda) {
            lp_status st = lp_gdev_cut_address(rt->gdev, t->from, t->to, t->dst_offset, t->bytes, &at, t->why,
                                               sizeof t->why, d);
            if (st != LP_OK) return st;
            if (!at) continue;
        }
#else
        (void)d;
#endif
        t->direct = lp_persist_write_cut(k->persist, t->src_offset, t->src_offset + t->bytes, at, t->why,
                                         sizeof t->why);
        if (t->direct) t->why[0] = '\0';
    }
    return LP_OK;
}

lp_status lp_rt_open(const char *dir, const lp_rt_options *opt, lp_rt **out, lp_diag *d) {
    *out = NULL;
    lp_rt_options o = opt ? *opt : lp_rt_defaults();
    if (o.program && strcmp(o.program, "auto") != 0 && strcmp(o.program, "library") != 0 &&
        strcmp(o.program, "persistent") != 0 && strcmp(o.program, "resident") != 0)
        return lp_error(d, LP_ERR_USAGE, "program '%s': not auto, library, persistent or resident", o.program);
    bool cuda = o.device && strcmp(o.device, "cuda") == 0;
    if (o.device && !cuda && strcmp(o.device, "cpu") != 0)
        return lp_error(d, LP_ERR_USAGE, "device '%s': not a device (cpu or cuda)", o.device);
#ifndef LP_HAVE_CUDA
    if (cuda)
        return lp_error(d, LP_ERR_USAGE, "device cuda: this lpcc-run was built without CUDA "
                        "(the CUDA toolkit was not found when it was built); use --device cpu");
#endif
    lp_rt *rt = calloc(1, sizeof *rt);
    if (!rt) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    rt->cuda = cuda;
    pthread_mutex_init(&rt->diag_mu, NULL);
    rt->dir = strdup(dir);
    rt->manifest_path = join(dir, "manifest.json");
    if (!rt->dir || !rt->manifest_path) {
        lp_rt_close(rt);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    json_error_t je;
    json_t *root = json_load_file(rt->manifest_path, 0, &je);
    lp_status st = LP_OK;
    if (!root) {
        if (access(rt->manifest_path, F_OK) != 0)
            st = lp_error(d, LP_ERR_INVALID_MODEL, "%s: no manifest: '%s' is not a folder "
                          "`lpcc MODEL -o DIR` wrote", rt->manifest_path, dir);
        else
            st = lp_error(d, LP_ERR_INVALID_MODEL, "%s:%d: corrupt manifest: %s", rt->manifest_path,
                          je.line, je.text);
    }
    if (st == LP_OK) st = parse_manifest(rt, root, d);
    if (st == LP_OK) st = assign_ranks(rt, &o, d);
    for (int c = 0; st == LP_OK && c < rt->n_cards; c++) {
        rt_card *k = &rt->cards[c];
        if (!mine(rt, c)) continue;
        size_t align = k->alignment >= sizeof(void *) && (k->alignment & (k->alignment - 1)) == 0
                           ? (size_t)k->alignment : 64;
        /* one allocation of exactly the plan's total_bytes */
        if (posix_memalign((void **)&k->base, align, k->total_bytes ? k->total_bytes : 1) != 0) {
            k->base = NULL;
            st = lp_error(d, LP_ERR_INTERNAL, "card %d: cannot allocate %" PRIu64 " bytes", c,
                          k->total_bytes);
            break;
        }
        memset(k->base, 0, k->total_bytes);
        st = load_weights(rt, c, json_array_get(json_object_get(root, "cards"), (size_t)c), d);
    }
    json_decref(root);
    if (st == LP_OK) {
        const char *t = getenv("TMPDIR");
        char *tmpl = join(t && *t ? t : "/tmp", "lpcc-run.XXXXXX");
        if (!tmpl || !mkdtemp(tmpl)) {
            st = lp_error(d, LP_ERR_INTERNAL, "cannot make a temporary folder: %s", strerror(errno));
            free(tmpl);
        } else {
            rt->tmp = tmpl;
        }
    }
    for (int c = 0; st == LP_OK && c < rt->n_cards; c++)
        if (mine(rt, c)) st = build_card(rt, c, &o, d);
    for (int c = 0; st == LP_OK && c < rt->n_cards; c++)
        if (mine(rt, c)) st = plan_persistent(rt, c, &o, d);
    if (st == LP_OK && rt->world > 1) {
        lp_transport_options to = {.rank = rt->rank, .world = rt->world, .host = o.rendezvous,
                                   .port = o.port, .timeout_s = o.timeout_s};
        st = lp_transport_open(&to, &rt->tx, d);
    }
#ifdef LP_HAVE_CUDA
    if (st == LP_OK && cuda) st = open_cuda(rt, &o, d);
#endif
    if (st == LP_OK && !cuda) st = plan_direct_cuts(rt, &o, d);
    if (st != LP_OK) {
        lp_rt_close(rt);
        return st;
    }
    *out = rt;
    return LP_OK;
}

void lp_rt_close(lp_rt *rt) {
    if (!rt) return;
#ifdef LP_HAVE_CUDA
    lp_gdev_close(rt->gdev);
#endif
    for (int c = 0; rt->cards && c < rt->n_cards; c++) {
        if (rt->cards[c].so) dlclose(rt->cards[c].so);
        free(rt->cards[c].base);
        lp_persist_free(rt->cards[c].persist);
    }
    if (rt->tmp) {
        nftw(rt->tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
        free(rt->tmp);
    }
    for (int i = 0; i < rt->n_cuts; i++) {
        free(rt->cuts[i].value);
        free(rt->cuts[i].inbox);
    }
    lp_transport_close(rt->tx);
    free(rt->rank_of);
    for (int i = 0; i < rt->n_gathers; i++) {
        free(rt->gathers[i].value);
        free(rt->gathers[i].parts);
    }
    free(rt->gathers);
    rt_io *lists[2] = {rt->inputs, rt->outputs};
    int counts[2] = {rt->n_inputs, rt->n_outputs};
    for (int l = 0; l < 2; l++) {
        for (int i = 0; lists[l] && i < counts[l]; i++) {
            free((char *)lists[l][i].io.name);
            free(lists[l][i].dims);
            free(lists[l][i].places);
            free(lists[l][i].data);
        }
        free(lists[l]);
    }
    free(rt->cuts);
    free(rt->cards);
    free(rt->dir);
    free(rt->manifest_path);
    pthread_mutex_destroy(&rt->diag_mu);
    free(rt);
}

int lp_rt_n_cards(const lp_rt *rt) { return rt->n_cards; }
uint64_t lp_rt_card_bytes(const lp_rt *rt, int c) { return rt->cards[c].total_bytes; }
int lp_rt_n_inputs(const lp_rt *rt) { return rt->n_inputs; }
int lp_rt_n_outputs(const lp_rt *rt) { return rt->n_outputs; }
const lp_rt_io *lp_rt_input(const lp_rt *rt, int i) { return &rt->inputs[i].io; }
const lp_rt_io *lp_rt_output(const lp_rt *rt, int i) { return &rt->outputs[i].io; }
double lp_rt_card_seconds(const lp_rt *rt, int c) { return rt->cards[c].step_s; }
double lp_rt_transfer_seconds(const lp_rt *rt, int c) { return rt->cards[c].transfer_s; }
const void *lp_rt_output_data(const lp_rt *rt, int i) { return rt->outputs[i].data; }

/* ---- inputs -------------------------------------------------------------- */

lp_status lp_rt_set_input_bytes(lp_rt *rt, int i, const void *data, uint64_t bytes, lp_diag *d) {
    rt_io *x = &rt->inputs[i];
    if (bytes != x->io.bytes)
        return lp_error(d, LP_ERR_USAGE, "input '%s': %" PRIu64 " bytes given, the model takes %" PRIu64,
                        x->io.name, bytes, x->io.bytes);
    memcpy(x->data, data, bytes);
    x->bound = true;
    return LP_OK;
}

static void shape_text(char *b, size_t n, int rank, const int64_t *dims) {
    size_t at = (size_t)snprintf(b, n, "[");
    for (int r = 0; r < rank && at < n; r++)
        at += (size_t)snprintf(b + at, n - at, "%s%" PRId64, r ? ", " : "", dims[r]);
    if (at < n) snprintf(b + at, n - at, "]");
}

lp_status lp_rt_set_input(lp_rt *rt, int i, const lp_tensor *t, lp_diag *d) {
    rt_io *x = &rt->inputs[i];
    if (t->dtype != x->io.dtype)
        return lp_error(d, LP_ERR_USAGE, "input '%s' is %s, the model takes %s", x->io.name,
                        lp_dtype_name(t->dtype) ? lp_dtype_name(t->dtype) : "an unknown type",
                        lp_dtype_name(x->io.dtype));
    bool same = t->shape.rank == x->io.rank;
    for (int r = 0; same && r < x->io.rank; r++) same = t->shape.dims[r].size == x->io.dims[r];
    if (!same) {
        char want[512], got[512];
        int64_t *g = calloc((size_t)(t->shape.rank > 0 ? t->shape.rank : 1), sizeof *g);
        if (!g) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        for (int r = 0; r < t->shape.rank; r++) g[r] = t->shape.dims[r].size;
        shape_text(want, sizeof want, x->io.rank, x->io.dims);
        shape_text(got, sizeof got, t->shape.rank > 0 ? t->shape.rank : 0, g);
        free(g);
        return lp_error(d, LP_ERR_USAGE, "input '%s' has shape %s, the model was compiled for %s",
                        x->io.name, got, want);
    }
    if (t->data.where != LP_DATA_INLINE)
        return lp_error(d, LP_ERR_USAGE, "input '%s': its bytes are not inline", x->io.name);
    return lp_rt_set_input_bytes(rt, i, t->data.bytes, t->data.nbytes, d);
}

/* ---- running ------------------------------------------------------------- */

static void ref_tensor_of(const lp_card_tensor *t, unsigned char *base, lp_ref_tensor *r) {
    memset(r, 0, sizeof *r);
    r->dtype = (lp_dtype)t->dtype;
    r->rank = t->rank;
    for (int k = 0; k < t->rank && k < LP_MAX_RANK; k++) r->dims[k] = t->dims[k];
    r->data = t->region == LP_CARD_MEMORY    ? (void *)(base + t->offset)
              : t->region == LP_CARD_LITERAL ? (void *)t->literal
                                             : NULL;
}

/* An argument inside the allocation and of the bytes its type takes. */
static bool arg_ok(const lp_rt *rt, int card, const lp_card_tensor *t) {
    if (t->region == LP_CARD_NONE) return true;
    if (t->rank < 0 || t->rank > LP_MAX_RANK) return false;
    uint64_t numel = 1;
    for (int k = 0; k < t->rank; k++) {
        if (t->dims[k] < 0) return false;
        numel *= (uint64_t)t->dims[k];
    }
    if (numel * lp_ref_dtype_size((lp_dtype)t->dtype) != t->bytes) return false;
    if (t->region == LP_CARD_MEMORY)
        return t->offset <= rt->cards[card].total_bytes &&
               t->bytes <= rt->cards[card].total_bytes - t->offset;
    return t->literal != NULL;
}

static int compute_locked(lp_card_env *env, unsigned char *base, const lp_card_node *n);
static void group_abort(rt_group *g);

/* The shard cards' threads share the run's diag: one kernel at a time
 * (the reference path checks numbers, it does not race). */
static int cpu_compute(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    lp_rt *rt = env->user;
    pthread_mutex_lock(&rt->diag_mu);
    int rc = compute_locked(env, base, n);
    pthread_mutex_unlock(&rt->diag_mu);
    if (rc != 0 && rt->cards[env->card].group) group_abort(rt->cards[env->card].group);
    return rc;
}

static int compute_locked(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    lp_rt *rt = env->user;
    lp_diag *d = rt->run_diag;
    int op = lp_op_lookup("", n->op);
    if (op <= 0) {
        lp_error(d, LP_ERR_INVALID_MODEL, "card %d, node '%s': op %s has no row in this runtime's "
                 "op table", env->card, n->node, n->op);
        return LP_ERR_INVALID_MODEL;
    }
    lp_ref_tensor *in = calloc((size_t)n->n_inputs + 1, sizeof *in);
    lp_ref_tensor *outs = calloc((size_t)n->n_outputs + 1, sizeof *outs);
    lp_attr *attrs = calloc((size_t)n->n_attrs + 1, sizeof *attrs);
    lp_tensor *tensors = calloc((size_t)n->n_attrs + 1, sizeof *tensors);
    lp_dim *tdims = NULL;
    int rc = 0;
    if (!in || !outs || !attrs || !tensors) {
        lp_error(d, LP_ERR_INTERNAL, "out of memory");
        rc = LP_ERR_INTERNAL;
    }
    for (int k = 0; rc == 0 && k < n->n_inputs + n->n_outputs; k++) {
        const lp_card_tensor *t = k < n->n_inputs ? &n->inputs[k] : &n->outputs[k - n->n_inputs];
        if (!arg_ok(rt, env->card, t)) {
            lp_error(d, LP_ERR_INVALID_MODEL, "card %d, node '%s': argument %d lies outside the card's "
                     "allocation or its bytes do not match its shape", env->card, n->node, k);
            rc = LP_ERR_INVALID_MODEL;
            break;
        }
        ref_tensor_of(t, base, k < n->n_inputs ? &in[k] : &outs[k - n->n_inputs]);
    }
    int total_dims = 0;
    for (int k = 0; k < n->n_attrs; k++)
        if (n->attrs[k].type == LP_ATTR_TENSOR && n->attrs[k].tensor) total_dims += n->attrs[k].tensor->rank;
    if (rc == 0 && total_dims > 0 && !(tdims = calloc((size_t)total_dims, sizeof *tdims))) {
        lp_error(d, LP_ERR_INTERNAL, "out of memory");
        rc = LP_ERR_INTERNAL;
    }
    for (int k = 0, at = 0; rc == 0 && k < n->n_attrs; k++) {
        const lp_card_attr *a = &n->attrs[k];
        lp_attr *b = &attrs[k];
        b->name = a->name;
        b->type = (lp_attr_type)a->type;
        b->i = a->i;
        b->f = a->f;
        b->s = a->s;
        b->s_len = (size_t)a->s_len;
        b->n = a->n;
        b->ints = (int64_t *)a->ints;
        b->floats = (float *)a->floats;
        if (a->type == LP_ATTR_TENSOR && a->tensor) {
            lp_tensor *t = &tensors[k];
            t->dtype = (lp_dtype)a->tensor->dtype;
            t->shape.rank = a->tensor->rank;
            t->shape.dims = tdims ? tdims + at : NULL;
            for (int r = 0; r < a->tensor->rank; r++) tdims[at + r].size = a->tensor->dims[r];
            at += a->tensor->rank;
            t->data.where = LP_DATA_INLINE;
            t->data.bytes = a->tensor->literal;
            t->data.nbytes = a->tensor->bytes;
            b->tensor = t;
        }
    }
    if (rc == 0) {
        lp_ref_call call = {.op = op, .node = n->node, .opset = n->opset, .n_inputs = n->n_inputs,
                            .inputs = in, .n_outputs = n->n_outputs, .outputs = outs,
                            .n_attrs = n->n_attrs, .attrs = attrs,
                            .workspace = n->workspace_bytes ? base + n->workspace_offset : NULL,
                            .workspace_bytes = n->workspace_bytes, .diag = d};
        lp_status st = lp_ref_run(&call);
        if (st != LP_OK) {
            lp_note(d, "card %d, node '%s' (%s) failed", env->card, n->node, n->op);
            rc = LP_ERR_INTERNAL;
        }
    }
    free(in);
    free(outs);
    free(attrs);
    free(tensors);
    free(tdims);
    return rc;
}

static int cpu_copy(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src, uint64_t bytes,
                    const char *value) {
    lp_rt *rt = env->user;
    uint64_t total = rt->cards[env->card].total_bytes;
    if (dst > total || src > total || bytes > total - dst || bytes > total - src) {
        pthread_mutex_lock(&rt->diag_mu);
        lp_error(rt->run_diag, LP_ERR_INVALID_MODEL, "card %d: the copy of '%s' lies outside the "
                 "card's allocation", env->card, value);
        pthread_mutex_unlock(&rt->diag_mu);
        if (rt->cards[env->card].group) group_abort(rt->cards[env->card].group);
        return LP_ERR_INVALID_MODEL;
    }
    memmove(base + dst, base + src, bytes);
    return 0;
}

/* What a card whose group another card stopped returns from its step. */
#define RT_ABORTED (-1)

/* Waits until all n cards of the group arrive; false when one aborted. */
static bool group_meet(rt_group *g) {
    pthread_mutex_lock(&g->mu);
    bool ok = !g->aborted;
    if (ok) {
        unsigned gen = g->generation;
        if (g->finished > 0 && g->waiting + 1 + g->finished >= g->n) {
            /* a card left without this all-gather: the programs disagree */
            g->aborted = true;
            pthread_cond_broadcast(&g->cv);
        } else if (++g->waiting == g->n) {
            g->waiting = 0;
            g->generation++;
            pthread_cond_broadcast(&g->cv);
        } else {
            while (gen == g->generation && !g->aborted) pthread_cond_wait(&g->cv, &g->mu);
        }
        ok = !g->aborted;
    }
    pthread_mutex_unlock(&g->mu);
    return ok;
}

static void group_abort(rt_group *g) {
    pthread_mutex_lock(&g->mu);
    g->aborted = true;
    pthread_cond_broadcast(&g->cv);
    pthread_mutex_unlock(&g->mu);
}

static int gather_fail(lp_rt *rt, lp_card_env *env, const char *value, const char *why) {
    pthread_mutex_lock(&rt->diag_mu);
    lp_error(rt->run_diag, LP_ERR_INVALID_MODEL, "card %d: all-gather of '%s': %s", env->card, value, why);
    pthread_mutex_unlock(&rt->diag_mu);
    if (rt->cards[env->card].group) group_abort(rt->cards[env->card].group);
    return LP_ERR_INVALID_MODEL;
}

/* The manifest's all-gather that a card program's call names, checked
 * against the call; nonzero (the step's return) when they disagree. */
static int gather_of(lp_rt *rt, lp_card_env *env, const char *value, int first_card, int n_cards,
                     int rank, uint64_t chunk_bytes, uint64_t whole, uint64_t whole_bytes,
                     const rt_gather **out, rt_group **grp_out) {
    const rt_gather *g = NULL;
    for (int i = 0; i < rt->n_gathers && !g; i++)
        if (strcmp(rt->gathers[i].value, value) == 0 && rt->gathers[i].parts[0].card == first_card)
            g = &rt->gathers[i];
    rt_group *grp = rt->cards[env->card].group;
    if (!g) return gather_fail(rt, env, value, "not in the manifest's transfers");
    if (!grp || g->n_parts != n_cards || rank < 0 || rank >= n_cards ||
        g->parts[rank].card != env->card || whole_bytes != g->bytes ||
        g->parts[rank].offset != whole || chunk_bytes != g->parts[rank].bytes)
        return gather_fail(rt, env, value, "the card program and the manifest disagree");
    *out = g;
    *grp_out = grp;
    return 0;
}

/* Every participant wrote its slice into its chunk of its own gather
 * buffer; each then copies the others' chunks from their cards (the host
 * path's collective), and lays the whole value out along the axis. */
static int cpu_all_gather(lp_card_env *env, unsigned char *base, const char *value, int first_card,
                          int n_cards, int rank, int axis, uint64_t chunk, uint64_t chunk_bytes,
                          uint64_t whole, uint64_t whole_bytes, uint64_t dst) {
    lp_rt *rt = env->user;
    const rt_gather *g = NULL;
    rt_group *grp = NULL;
    int bad = gather_of(rt, env, value, first_card, n_cards, rank, chunk_bytes, whole, whole_bytes, &g, &grp);
    if (bad) return bad;
    uint64_t total = rt->cards[env->card].total_bytes;
    if (dst > total || g->bytes > total - dst)
        return gather_fail(rt, env, value, "the destination lies outside the card's allocation");
    if (!group_meet(grp)) return RT_ABORTED;
    for (int k = 0, at = 0; k < n_cards; at += (int)g->parts[k].bytes, k++) {
        if (k == rank) continue;
        const rt_part *q = &g->parts[k];
        memcpy(base + whole + (uint64_t)at, rt->cards[q->card].base + q->offset + (uint64_t)at, q->bytes);
    }
    /* nobody's chunk is overwritten before everyone read it */
    if (!group_meet(grp)) return RT_ABORTED;
    uint64_t at = 0;
    for (int k = 0; k < n_cards; k++) {
        const rt_part *q = &g->parts[k];
        uint64_t run = (uint64_t)(q->end - q->begin) * g->column_bytes;
        for (uint64_t o = 0; o < g->outer; o++)
            memcpy(base + dst + o * g->row_bytes + (uint64_t)q->begin * g->column_bytes,
                   base + whole + at + o * run, run);
        at += q->bytes;
    }
    (void)axis, (void)chunk;
    return 0;
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

#ifdef LP_HAVE_CUDA
/* The GPU callbacks, one at a time as on the CPU path (the shard threads
 * share the run's diag and the device's warm-up state). */
static int gpu_compute_locked(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    lp_rt *rt = env->user;
    pthread_mutex_lock(&rt->diag_mu);
    lp_card_env inner = *env;
    inner.user = rt->gdev;
    lp_gdev_set_diag(rt->gdev, rt->run_diag);
    int rc = rt->gdev_compute(&inner, base, n);
    pthread_mutex_unlock(&rt->diag_mu);
    if (rc != 0 && rt->cards[env->card].group) group_abort(rt->cards[env->card].group);
    return rc;
}

static int gpu_copy_locked(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src,
                           uint64_t bytes, const char *value) {
    lp_rt *rt = env->user;
    pthread_mutex_lock(&rt->diag_mu);
    lp_card_env inner = *env;
    inner.user = rt->gdev;
    lp_gdev_set_diag(rt->gdev, rt->run_diag);
    int rc = rt->gdev_copy(&inner, base, dst, src, bytes, value);
    pthread_mutex_unlock(&rt->diag_mu);
    if (rc != 0 && rt->cards[env->card].group) group_abort(rt->cards[env->card].group);
    return rc;
}

/* A device copy between cards under the run's lock. */
static bool gpu_move(lp_rt *rt, int from, uint64_t src, int to, uint64_t dst, uint64_t bytes) {
    pthread_mutex_lock(&rt->diag_mu);
    lp_status st = lp_gdev_copy(rt->gdev, from, src, to, dst, bytes, rt->run_diag);
    if (st == LP_OK && to != from) st = lp_gdev_sync(rt->gdev, from, rt->run_diag);
    pthread_mutex_unlock(&rt->diag_mu);
    return st == LP_OK;
}

/* The all-gather of cpu_all_gather with device copies: each card waits for
 * its own slice, the cards meet, each pulls the others' chunks, meets
 * again, then lays the value out. */
static int gpu_all_gather(lp_card_env *env, unsigned char *base, const char *value, int first_card,
                          int n_cards, int rank, int axis, uint64_t chunk, uint64_t chunk_bytes,
                          uint64_t whole, uint64_t whole_bytes, uint64_t dst) {
    lp_rt *rt = env->user;
    const rt_gather *g = NULL;
    rt_group *grp = NULL;
    int bad = gather_of(rt, env, value, first_card, n_cards, rank, chunk_bytes, whole, whole_bytes, &g, &grp);
    if (bad) return bad;
    int me = env->card;
    pthread_mutex_lock(&rt->diag_mu);
    lp_status st = lp_gdev_sync(rt->gdev, me, rt->run_diag);
    pthread_mutex_unlock(&rt->diag_mu);
    if (st != LP_OK) return gather_fail(rt, env, value, "its slice could not be computed");
    if (!group_meet(grp)) return RT_ABORTED;
    bool ok = true;
    for (int k = 0, at = 0; ok && k < n_cards; at += (int)g->parts[k].bytes, k++) {
        if (k == rank) continue;
        const rt_part *q = &g->parts[k];
        ok = gpu_move(rt, q->card, q->offset + (uint64_t)at, me, whole + (uint64_t)at, q->bytes);
    }
    if (!ok) return gather_fail(rt, env, value, "a device copy failed");
    if (!group_meet(grp)) return RT_ABORTED;
    uint64_t at = 0;
    for (int k = 0; ok && k < n_cards; k++) {
        const rt_part *q = &g->parts[k];
        uint64_t run = (uint64_t)(q->end - q->begin) * g->column_bytes;
        for (uint64_t o = 0; ok && o < g->outer; o++)
            ok = gpu_move(rt, me, whole + at + o * run, me,
                          dst + o * g->row_bytes + (uint64_t)q->begin * g->column_bytes, run);
        at += q->bytes;
    }
    if (!ok) return gather_fail(rt, env, value, "a device copy failed");
    (void)axis, (void)chunk, (void)base;
    return 0;
}
#endif

#ifdef LP_HAVE_CUDA
/* The callbacks card c's program runs with on the GPU. */
static lp_card_env gpu_env(lp_rt *rt, int c) {
    lp_card_env env;
    lp_gdev_env(rt->gdev, c, &env);
    rt->gdev_compute = env.compute;
    rt->gdev_copy = env.copy;
    env.compute = gpu_compute_locked;
    env.copy = gpu_copy_locked;
    env.all_gather = gpu_all_gather;
    env.user = rt;
    return env;
}
#endif

const char *lp_rt_card_program(const lp_rt *rt, int c, double *library_us, double *persistent_us) {
    if (library_us) *library_us = 0;
    if (persistent_us) *persistent_us = 0;
#ifdef LP_HAVE_CUDA
    if (rt->cuda && rt->cards[c].persist)
        return lp_gdev_program(rt->gdev, c, library_us, persistent_us);
#endif
    return rt->cards[c].persist ? "persistent" : "library";
}

void lp_rt_dump_programs(const lp_rt *rt, FILE *out) {
    for (int c = 0; c < rt->n_cards; c++) {
        fprintf(out, "card %d: ", c);
        if (!rt->cards[c].persist) {
            fputs("library kernels\n", out);
            continue;
        }
        lp_persist_dump(rt->cards[c].persist, out);
        if (rt->cards[c].persist->fallback[0])
            fprintf(out, "  library calls, the first: %s\n", rt->cards[c].persist->fallback);
        for (int i = 0; i < rt->n_cuts; i++) {
            const rt_cut *t = &rt->cuts[i];
            if (t->from != c) continue;
            if (t->direct)
                fprintf(out, "  cut '%s': written into card %d's buffer at %" PRIu64 "\n", t->value, t->to,
                        t->dst_offset);
            else
                fprintf(out, "  cut '%s' to card %d: copied (%s)\n", t->value, t->to, t->why);
        }
    }
}

lp_status lp_rt_profile(lp_rt *rt, FILE *out, lp_diag *d) {
#ifdef LP_HAVE_CUDA
    if (!rt->cuda) return lp_error(d, LP_ERR_USAGE, "--profile needs --device cuda");
    rt->run_diag = d;
    for (int c = 0; c < rt->n_cards; c++) {
        if (rt->cards[c].n_shards > 1) continue; /* their steps meet others' */
        lp_card_env env = gpu_env(rt, c);
        lp_status st = lp_gdev_profile(rt->gdev, c, rt->cards[c].step, &env, out, d);
        if (st != LP_OK) return st;
    }
    return LP_OK;
#else
    (void)rt, (void)out;
    return lp_error(d, LP_ERR_USAGE, "--profile needs --device cuda");
#endif
}

/* Runs card c's step and records its time and result. */
static void run_card(lp_rt *rt, int c) {
    rt_card *k = &rt->cards[c];
#ifdef LP_HAVE_CUDA
    if (rt->cuda) {
        lp_card_env env = gpu_env(rt, c);
        lp_diag *d = rt->run_diag;
        lp_gdev_set_diag(rt->gdev, d);
        lp_status st = lp_gdev_step(rt->gdev, c, k->step, &env, k->n_shards > 1, d);
        int raw = lp_gdev_step_result(rt->gdev, c);
        k->rc = st == LP_OK ? 0 : raw != 0 ? raw : (int)st;
        if (k->rc != 0 && k->group) group_abort(k->group);
        return;
    }
#endif
    lp_card_env env = {.abi = LP_CARD_ABI, .card = c, .compute = cpu_compute, .copy = cpu_copy,
                       .all_gather = cpu_all_gather, .user = rt};
    double t0 = now_s();
    if (k->persist) {
        lp_diag *d = rt->run_diag;
        lp_status st = lp_persist_run_cpu(k->persist, k->base, &env, d);
        k->rc = st == LP_OK ? 0 : (int)st;
    } else
        k->rc = k->step(&env, k->base);
    k->step_s = now_s() - t0;
    if (k->rc != 0 && k->group) group_abort(k->group);
    if (k->rc == 0 && k->group) {
        /* done: a card still waiting at an all-gather would wait for ever */
        rt_group *g = k->group;
        pthread_mutex_lock(&g->mu);
        g->finished++;
        if (g->waiting > 0 && g->waiting + g->finished >= g->n) {
            g->aborted = true;
            pthread_cond_broadcast(&g->cv);
        }
        pthread_mutex_unlock(&g->mu);
    }
}

static void *card_thread(void *arg) {
    rt_card *k = arg;
    run_card(k->group->rt, k->card);
    return NULL;
}

/* The shard cards first .. first + n - 1 of one layer, one thread each. */
static lp_status run_group(lp_rt *rt, int first, int n, lp_diag *d) {
    struct {
        rt_group g;
    } grp = {.g = {.rt = rt}};
    pthread_t *th = calloc((size_t)n, sizeof *th);
    if (!th) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    pthread_mutex_init(&grp.g.mu, NULL);
    pthread_cond_init(&grp.g.cv, NULL);
    grp.g.n = n;
    int started = 0;
    for (int c = first; c < first + n; c++) rt->cards[c].group = &grp.g;
    for (; started < n; started++)
        if (pthread_create(&th[started], NULL, card_thread, &rt->cards[first + started]) != 0) break;
    if (started < n) group_abort(&grp.g);
    for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
    for (int c = first; c < first + n; c++) rt->cards[c].group = NULL;
    pthread_cond_destroy(&grp.g.cv);
    pthread_mutex_destroy(&grp.g.mu);
    free(th);
    if (started < n) return lp_error(d, LP_ERR_INTERNAL, "cannot start the threads of cards %d..%d",
                                     first, first + n - 1);
    return LP_OK;
}

double lp_rt_run_seconds(const lp_rt *rt) { return rt->run_s; }

/* Writes bytes into card c at offset (host memory, or its GPU). */
static lp_status put_bytes(lp_rt *rt, int c, uint64_t offset, const void *src, uint64_t bytes,
                           lp_diag *d) {
#ifdef LP_HAVE_CUDA
    if (rt->cuda) return lp_gdev_upload(rt->gdev, c, offset, src, bytes, d);
#endif
    (void)d;
    memcpy(rt->cards[c].base + offset, src, bytes);
    return LP_OK;
}

static lp_status get_bytes(lp_rt *rt, int c, uint64_t offset, void *dst, uint64_t bytes, lp_diag *d) {
#ifdef LP_HAVE_CUDA
    if (rt->cuda) return lp_gdev_download(rt->gdev, c, offset, dst, bytes, d);
#endif
    (void)d;
    memcpy(dst, rt->cards[c].base + offset, bytes);
    return LP_OK;
}

/* Whether the sender's program wrote cut t into the receiver's buffer
 * (on cuda, unless the warm-up chose its launch program). */
static bool written_directly(const lp_rt *rt, const rt_cut *t) {
    if (!t->direct) return false;
#ifdef LP_HAVE_CUDA
    if (rt->cuda) return strcmp(lp_gdev_program(rt->gdev, t->from, NULL, NULL), "library") != 0;
#endif
    return true;
}

int lp_rt_n_cuts(const lp_rt *rt) { return rt->n_cuts; }

bool lp_rt_cut_direct(const lp_rt *rt, int i, const char **value, int *from, int *to, const char **why) {
    const rt_cut *t = &rt->cuts[i];
    bool direct = written_directly(rt, t);
    if (value) *value = t->value;
    if (from) *from = t->from;
    if (to) *to = t->to;
    if (why) *why = direct ? "" : t->direct ? "the warm-up chose the sending card's launch program" : t->why;
    return direct;
}

/* Before card c's step: a receiver it writes into directly has finished
 * reading its previous step's bytes. */
static lp_status before_step(lp_rt *rt, int c, lp_diag *d) {
#ifdef LP_HAVE_CUDA
    for (int i = 0; rt->cuda && i < rt->n_cuts; i++)
        if (rt->cuts[i].from == c && written_directly(rt, &rt->cuts[i])) {
            lp_status st = lp_gdev_order(rt->gdev, rt->cuts[i].to, c, d);
            if (st != LP_OK) return st;
        }
#else
    (void)rt, (void)c, (void)d;
#endif
    return LP_OK;
}

/* A cut: the sender's out buffer into the receiver's in buffer, or, when
 * the sender wrote it there, the receiver ordered after the sender. */
static lp_status move_cut(lp_rt *rt, const rt_cut *t, lp_diag *d) {
    bool direct = written_directly(rt, t);
#ifdef LP_HAVE_CUDA
    if (rt->cuda)
        return direct ? lp_gdev_order(rt->gdev, t->from, t->to, d)
                      : lp_gdev_copy(rt->gdev, t->from, t->src_offset, t->to, t->dst_offset, t->bytes, d);
#endif
    if (direct) return LP_OK;
    (void)d;
    memcpy(rt->cards[t->to].base + t->dst_offset, rt->cards[t->from].base + t->src_offset, t->bytes);
    return LP_OK;
}

/* cuda: every card's work done, its event times read. */
static lp_status finish_device(lp_rt *rt, lp_diag *d) {
#ifdef LP_HAVE_CUDA
    if (!rt->cuda) return LP_OK;
    for (int c = 0; c < rt->n_cards; c++) {
        lp_status st = lp_gdev_sync(rt->gdev, c, d);
        double step_ms = 0, send_ms = 0;
        if (st == LP_OK) st = lp_gdev_card_times(rt->gdev, c, &step_ms, &send_ms, d);
        if (st != LP_OK) return st;
        rt->cards[c].step_s = step_ms * 1e-3;
        rt->cards[c].transfer_s = send_ms * 1e-3;
    }
    double span = 0;
    lp_status st = lp_gdev_span_ms(rt->gdev, &span, d);
    rt->device_s = span * 1e-3;
    return st;
#else
    (void)rt, (void)d;
    return LP_OK;
#endif
}

double lp_rt_device_seconds(const lp_rt *rt) { return rt->cuda ? rt->device_s : rt->run_s; }

int lp_rt_check_failures(const lp_rt *rt) {
#ifdef LP_HAVE_CUDA
    if (rt->cuda) return lp_gdev_check_failures(rt->gdev);
#endif
    (void)rt;
    return 0;
}

lp_status lp_rt_card_memory(lp_rt *rt, int c, lp_rt_memory *m, lp_diag *d) {
    memset(m, 0, sizeof *m);
    m->device = "cpu";
    m->gpu = -1;
    m->planned = m->allocated = rt->cards[c].total_bytes;
#ifdef LP_HAVE_CUDA
    if (rt->cuda) {
        lp_gdev_memory g;
        lp_status st = lp_gdev_memory_of(rt->gdev, c, &g, d);
        if (st != LP_OK) return st;
        snprintf(rt->cards[c].gpu_name, sizeof rt->cards[c].gpu_name, "%s", g.name);
        m->device = rt->cards[c].gpu_name;
        m->gpu = g.gpu;
        m->gpu_allocated = g.allocated;
        m->gpu_taken = g.free_at_open > g.free_now ? g.free_at_open - g.free_now : 0;
        m->literals = g.literals;
        m->pinned = rt->cards[c].pinned;
    }
#else
    (void)d;
#endif
    return LP_OK;
}

/* Cut i from another process: messages from its rank are taken as they
 * come (cuts between two ranks need not arrive in the order they are used)
 * until cut i's is in. */
static lp_status receive_cut(lp_rt *rt, int i, lp_diag *d) {
    rt_cut *t = &rt->cuts[i];
    int peer = rt->rank_of[t->from];
    while (!t->arrived) {
        uint32_t tag = 0, step = 0;
        uint64_t bytes = 0;
        lp_status st = lp_transport_next(rt->tx, peer, &tag, &step, &bytes, t->value, d);
        if (st != LP_OK) return st;
        rt_cut *u = tag < (uint32_t)rt->n_cuts ? &rt->cuts[tag] : NULL;
        if (!u || rt->rank_of[u->from] != peer || !mine(rt, u->to) || u->bytes != bytes || u->arrived ||
            step != rt->steps)
            return lp_error(d, LP_ERR_PEER, "rank %d: rank %d sent transfer %u of step %u (%llu bytes), "
                            "which this rank does not expect now (step %u): the processes do not run the "
                            "same compiled folder", rt->rank, peer, tag, step, (unsigned long long)bytes,
                            rt->steps);
        if (!u->inbox && !(u->inbox = malloc(u->bytes ? u->bytes : 1)))
            return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        st = lp_transport_body(rt->tx, peer, u->inbox, u->bytes, u->value, d);
        if (st != LP_OK) return st;
        u->arrived = true;
    }
    t->arrived = false;
    return put_bytes(rt, t->to, t->dst_offset, t->inbox, t->bytes, d);
}

/* Cut i to a card of this process (a copy) or of another (a message). */
static lp_status send_cut(lp_rt *rt, int i, lp_diag *d) {
    rt_cut *t = &rt->cuts[i];
    if (mine(rt, t->to)) return move_cut(rt, t, d);
    return lp_transport_send(rt->tx, rt->rank_of[t->to], (uint32_t)i, rt->steps,
                             rt->cards[t->from].base + t->src_offset, t->bytes, t->value, d);
}

bool lp_rt_card_here(const lp_rt *rt, int c) { return mine(rt, c); }
bool lp_rt_output_here(const lp_rt *rt, int i) {
    return rt->outputs[i].n_places > 0 && mine(rt, rt->outputs[i].places[0].card);
}
int lp_rt_rank(const lp_rt *rt) { return rt->rank; }

/* The bound inputs into this process's cards' receive buffers. */
static lp_status put_inputs(lp_rt *rt, lp_diag *d) {
    for (int i = 0; i < rt->n_inputs; i++)
        for (int p = 0; p < rt->inputs[i].n_places; p++) {
            if (!mine(rt, rt->inputs[i].places[p].card)) continue;
            lp_status st = put_bytes(rt, rt->inputs[i].places[p].card, rt->inputs[i].places[p].offset,
                                     rt->inputs[i].data, rt->inputs[i].io.bytes, d);
            if (st != LP_OK) return st;
        }
    return LP_OK;
}

/* The outputs this process's cards made, out of their send buffers. */
static lp_status get_outputs(lp_rt *rt, lp_diag *d) {
    for (int i = 0; i < rt->n_outputs; i++) {
        const rt_place *p = &rt->outputs[i].places[0];
        if (!mine(rt, p->card)) continue;
        lp_status st = get_bytes(rt, p->card, p->offset, rt->outputs[i].data, rt->outputs[i].io.bytes, d);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

lp_status lp_rt_run_microbatches(lp_rt *rt, int m, double *seconds, lp_diag *d) {
    double t0 = now_s();
    bool overlap = false;
#ifdef LP_HAVE_CUDA
    /* one process on GPUs: every microbatch's steps and cuts enqueued, the
     * cards' streams ordered by events only, one wait at the end */
    overlap = rt->cuda && rt->steps > 0;
    for (int c = 0; overlap && c < rt->n_cards; c++) overlap = rt->cards[c].n_shards == 1;
#endif
    if (!overlap) {
        lp_status st = LP_OK;
        for (int t = 0; st == LP_OK && t < m; t++) st = lp_rt_run(rt, d);
        *seconds = now_s() - t0;
        return st;
    }
    rt->run_diag = d;
    lp_status st = put_inputs(rt, d);
    for (int t = 0; st == LP_OK && t < m; t++)
        for (int c = 0; st == LP_OK && c < rt->n_cards; c++) {
            st = before_step(rt, c, d);
            if (st != LP_OK) break;
            run_card(rt, c);
            if (rt->cards[c].rc != 0) st = rt->cards[c].rc == LP_ERR_INVALID_MODEL ? LP_ERR_INVALID_MODEL : LP_ERR_INTERNAL;
            for (int i = 0; st == LP_OK && i < rt->n_cuts; i++)
                if (rt->cuts[i].from == c) st = move_cut(rt, &rt->cuts[i], d);
        }
    if (st == LP_OK) st = finish_device(rt, d);
    *seconds = now_s() - t0;
    if (st == LP_OK) st = get_outputs(rt, d);
    rt->steps += (uint32_t)m;
    return st;
}

lp_status lp_rt_run(lp_rt *rt, lp_diag *d) {
    rt->run_diag = d;
    double t_start = now_s();
    lp_status st = put_inputs(rt, d);
    if (st != LP_OK) return st;
    for (int c = 0; c < rt->n_cards;) {
        /* a sharded layer's cards run together */
        int n = 1;
        if (rt->cards[c].n_shards > 1)
            while (c + n < rt->n_cards && rt->cards[c + n].n_shards > 1 &&
                   rt->cards[c + n].first_layer == rt->cards[c].first_layer && n < rt->cards[c].n_shards)
                n++;
        if (!mine(rt, c)) {
            c += n;
            continue;
        }
        /* what other processes send these cards */
        for (int i = 0; i < rt->n_cuts; i++)
            if (rt->cuts[i].to >= c && rt->cuts[i].to < c + n && !mine(rt, rt->cuts[i].from)) {
                st = receive_cut(rt, i, d);
                if (st != LP_OK) return st;
            }
        if (n > 1) {
            st = run_group(rt, c, n, d);
            if (st != LP_OK) return st;
        } else {
            st = before_step(rt, c, d);
            if (st != LP_OK) return st;
            run_card(rt, c);
        }
        /* a card's own error, not that of the cards it stopped */
        bool stopped = false;
        for (int k = c; k < c + n; k++) {
            int rc = rt->cards[k].rc;
            if (rc == RT_ABORTED) {
                stopped = true;
                continue;
            }
            /* a kernel's own failure is internal; a program that disagrees with
             * the manifest or its allocation is a bad folder */
            if (rc != 0) return rc == LP_ERR_INVALID_MODEL ? LP_ERR_INVALID_MODEL : LP_ERR_INTERNAL;
        }
        if (stopped) return lp_error(d, LP_ERR_INTERNAL, "cards %d..%d: a shard card finished "
                                      "while the others waited at an all-gather: their programs do "
                                      "not take part in the same all-gathers", c, c + n - 1);
        /* the cuts these cards send, into the later cards' receive buffers */
        for (int k = c; k < c + n; k++) {
            double t1 = now_s();
            for (int i = 0; i < rt->n_cuts; i++) {
                if (rt->cuts[i].from != k) continue;
                st = send_cut(rt, i, d);
                if (st != LP_OK) return st;
            }
            rt->cards[k].transfer_s = now_s() - t1;
        }
        c += n;
    }
    st = finish_device(rt, d);
    if (st == LP_OK) st = get_outputs(rt, d);
    rt->steps++;
    rt->run_s = now_s() - t_start;
    return st;
}
