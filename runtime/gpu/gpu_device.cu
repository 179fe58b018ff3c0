/* gpu_device.cu - the runtime's CUDA device: card allocations, streams,
 * literals, the compute callback over the kernel library, CUDA graphs, L2
 * pinning, event timing and the per-node check against the CPU reference
 * (lp_gpu_device.h). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gpu_kernels.h"

extern "C" {
#include "gpu_persist.h"
#include "lp_gpu_device.h"
#include "lp_ref.h"
}

#define MAX_GPUS 64

typedef struct literal_entry {
    const void *host;
    void *dev;
} literal_entry;

/* Literals (a program's small shape data) on one GPU: a pool of chunks and
 * an open-addressing map from the host bytes to their device copy. */
typedef struct literal_pool {
    unsigned char **chunks;
    int n_chunks;
    uint64_t used, chunk_bytes, total;
    literal_entry *map;
    uint64_t map_cap, map_n;
} literal_pool;

typedef struct gpu_state {
    bool open;
    cudaDeviceProp prop;
    size_t free_at_open, total;
    lp_gpu_libs *libs;
    literal_pool lit;
    uint64_t allocated;
    size_t persist_set;
} gpu_state;

/* One node's time in a profiled step. */
typedef struct node_time {
    const lp_card_node *n;
    cudaEvent_t a, b;
} node_time;

typedef struct gcard {
    int gpu;
    unsigned char *base;
    uint64_t bytes;
    cudaStream_t stream;
    cudaEvent_t ev_start, ev_end, ev_sent;
    bool warmed, warming, profiling, sent, ran;
    int step_rc;         /* what the step function last returned */
    cudaGraphExec_t exec;
    bool pinned;
    lp_gpu_persist *persist; /* the step as a persistent program, or NULL */
    const lp_persist_program *candidate; /* to time against the launch program at warm-up */
    bool resident;                       /* the candidate (or p) as the resident kernel */
    bool shared_gpu;                     /* another card of this process uses the same GPU */
    double library_us, persistent_us;    /* those timings (0: not timed) */
} gcard;

struct lp_gdev {
    lp_gdev_options o;
    int n_cards;
    gcard *cards;
    gpu_state gpus[MAX_GPUS];
    int n_present;
    lp_diag *diag;      /* the callbacks' */
    int check_failures;
    node_time *prof;    /* the profiled step's nodes */
    int n_prof, cap_prof;
};

#define GD_CHECK(d, stmt, ...)                                                            \
    do {                                                                                  \
        cudaError_t e_ = (stmt);                                                          \
        if (e_ != cudaSuccess) {                                                          \
            lp_error((d), LP_ERR_INTERNAL, "%s failed: %s (%s)", #stmt, cudaGetErrorString(e_), \
                     cudaGetErrorName(e_));                                               \
            __VA_ARGS__;                                                                  \
            return LP_ERR_INTERNAL;                                                       \
        }                                                                                 \
    } while (0)

lp_gdev_options lp_gdev_defaults(void) {
    lp_gdev_options o;
    o.graphs = true;
    o.pin_weights = true;
    o.check_nodes = false;
    o.check_tol = 1e-4;
    return o;
}

static lp_status use_card(lp_gdev *g, int card, lp_diag *d) {
    GD_CHECK(d, cudaSetDevice(g->cards[card].gpu));
    return LP_OK;
}

lp_status lp_gdev_open(int n_cards, const int *gpu_of_card, const lp_gdev_options *o, lp_gdev **out,
                       lp_diag *d) {
    *out = NULL;
    int present = 0;
    cudaError_t e = cudaGetDeviceCount(&present);
    if (e != cudaSuccess || present == 0)
        return lp_error(d, LP_ERR_USAGE, "--device cuda: no CUDA GPU is usable here (%s)",
                        e != cudaSuccess ? cudaGetErrorString(e) : "cudaGetDeviceCount found none");
    for (int c = 0; c < n_cards; c++)
        if (gpu_of_card[c] < 0 || gpu_of_card[c] >= present || gpu_of_card[c] >= MAX_GPUS)
            return lp_error(d, LP_ERR_USAGE, "card %d is mapped to GPU %d, but %d GPU%s present "
                            "(--gpus)", c, gpu_of_card[c], present, present == 1 ? " is" : "s are");
    lp_gdev *g = (lp_gdev *)calloc(1, sizeof *g);
    if (!g) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    g->o = o ? *o : lp_gdev_defaults();
    g->n_present = present;
    g->n_cards = n_cards;
    g->cards = (gcard *)calloc((size_t)n_cards + 1, sizeof *g->cards);
    if (!g->cards) {
        free(g);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    *out = g;
    for (int c = 0; c < n_cards; c++) {
        gcard *k = &g->cards[c];
        k->gpu = gpu_of_card[c];
        gpu_state *s = &g->gpus[k->gpu];
        GD_CHECK(d, cudaSetDevice(k->gpu));
        if (!s->open) {
            GD_CHECK(d, cudaFree(0)); /* the context, before anything is measured */
            GD_CHECK(d, cudaGetDeviceProperties(&s->prop, k->gpu));
            GD_CHECK(d, cudaMemGetInfo(&s->free_at_open, &s->total));
            lp_status st = lp_gpu_libs_open(&s->libs, d);
            if (st != LP_OK) return st;
            s->lit.chunk_bytes = 1u << 20;
            s->open = true;
        }
        GD_CHECK(d, cudaStreamCreateWithFlags(&k->stream, cudaStreamNonBlocking));
        GD_CHECK(d, cudaEventCreate(&k->ev_start));
        GD_CHECK(d, cudaEventCreate(&k->ev_end));
        GD_CHECK(d, cudaEventCreate(&k->ev_sent));
    }
    return LP_OK;
}

void lp_gdev_close(lp_gdev *g) {
    if (!g) return;
    for (int c = 0; c < g->n_cards; c++) {
        gcard *k = &g->cards[c];
        cudaSetDevice(k->gpu);
        if (k->stream) cudaStreamSynchronize(k->stream);
        if (k->exec) cudaGraphExecDestroy(k->exec);
        lp_gpu_persist_close(k->persist);
        if (k->base) cudaFree(k->base);
        if (k->ev_start) cudaEventDestroy(k->ev_start);
        if (k->ev_end) cudaEventDestroy(k->ev_end);
        if (k->ev_sent) cudaEventDestroy(k->ev_sent);
        if (k->stream) cudaStreamDestroy(k->stream);
    }
    for (int i = 0; i < MAX_GPUS; i++) {
        gpu_state *s = &g->gpus[i];
        if (!s->open) continue;
        cudaSetDevice(i);
        if (s->persist_set) {
            cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, 0);
            cudaCtxResetPersistingL2Cache();
        }
        for (int k = 0; k < s->lit.n_chunks; k++) cudaFree(s->lit.chunks[k]);
        free(s->lit.chunks);
        free(s->lit.map);
        lp_gpu_libs_close(s->libs);
    }
    free(g->cards);
    free(g);
}

lp_status lp_gdev_alloc(lp_gdev *g, int card, uint64_t bytes, lp_diag *d) {
    gcard *k = &g->cards[card];
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    cudaError_t e = cudaMalloc((void **)&k->base, bytes ? bytes : 1);
    if (e != cudaSuccess) {
        size_t fr = 0, tot = 0;
        cudaGetLastError();
        cudaMemGetInfo(&fr, &tot);
        return lp_error(d, LP_ERR_INTERNAL, "card %d: cudaMalloc of %llu bytes on GPU %d failed: %s "
                        "(%llu of %llu bytes free)", card, (unsigned long long)bytes, k->gpu,
                        cudaGetErrorString(e), (unsigned long long)fr, (unsigned long long)tot);
    }
    k->bytes = bytes;
    g->gpus[k->gpu].allocated += bytes;
    GD_CHECK(d, cudaMemsetAsync(k->base, 0, bytes ? bytes : 1, k->stream));
    return LP_OK;
}

unsigned char *lp_gdev_base(const lp_gdev *g, int card) { return g->cards[card].base; }

static bool in_card(const gcard *k, uint64_t offset, uint64_t bytes) {
    return offset <= k->bytes && bytes <= k->bytes - offset;
}

lp_status lp_gdev_upload(lp_gdev *g, int card, uint64_t offset, const void *src, uint64_t bytes,
                         lp_diag *d) {
    gcard *k = &g->cards[card];
    if (!in_card(k, offset, bytes))
        return lp_error(d, LP_ERR_INVALID_MODEL, "card %d: an upload lies outside its allocation", card);
    lp_status st = use_card(g, card, d);
    if (st != LP_OK || bytes == 0) return st;
    GD_CHECK(d, cudaMemcpyAsync(k->base + offset, src, bytes, cudaMemcpyHostToDevice, k->stream));
    GD_CHECK(d, cudaStreamSynchronize(k->stream)); /* src is pageable and may go away */
    return LP_OK;
}

lp_status lp_gdev_download(lp_gdev *g, int card, uint64_t offset, void *dst, uint64_t bytes,
                           lp_diag *d) {
    gcard *k = &g->cards[card];
    if (!in_card(k, offset, bytes))
        return lp_error(d, LP_ERR_INVALID_MODEL, "card %d: a download lies outside its allocation", card);
    lp_status st = use_card(g, card, d);
    if (st != LP_OK || bytes == 0) return st;
    GD_CHECK(d, cudaMemcpyAsync(dst, k->base + offset, bytes, cudaMemcpyDeviceToHost, k->stream));
    GD_CHECK(d, cudaStreamSynchronize(k->stream));
    return LP_OK;
}

lp_status lp_gdev_pin(lp_gdev *g, int card, uint64_t bytes, bool *pinned, lp_diag *d) {
    gcard *k = &g->cards[card];
    gpu_state *s = &g->gpus[k->gpu];
    *pinned = false;
    if (!g->o.pin_weights || bytes == 0 || s->prop.persistingL2CacheMaxSize <= 0 ||
        bytes > (uint64_t)s->prop.persistingL2CacheMaxSize ||
        bytes > (uint64_t)s->prop.accessPolicyMaxWindowSize)
        return LP_OK;
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    size_t want = (size_t)bytes > s->persist_set ? (size_t)bytes : s->persist_set;
    GD_CHECK(d, cudaDeviceSetLimit(cudaLimitPersistingL2CacheSize, want));
    size_t got = 0;
    GD_CHECK(d, cudaDeviceGetLimit(&got, cudaLimitPersistingL2CacheSize));
    s->persist_set = got;
    cudaStreamAttrValue v;
    memset(&v, 0, sizeof v);
    v.accessPolicyWindow.base_ptr = k->base;
    v.accessPolicyWindow.num_bytes = (size_t)bytes;
    /* a window larger than the set-aside makes its lines evict each other */
    double ratio = (double)got / (double)bytes;
    v.accessPolicyWindow.hitRatio = (float)(ratio < 1.0 ? ratio : 1.0);
    v.accessPolicyWindow.hitProp = cudaAccessPropertyPersisting;
    v.accessPolicyWindow.missProp = cudaAccessPropertyStreaming;
    GD_CHECK(d, cudaStreamSetAttribute(k->stream, cudaStreamAttributeAccessPolicyWindow, &v));
    k->pinned = true;
    *pinned = true;
    return LP_OK;
}

/* ---- literals ------------------------------------------------------------- */

static uint64_t ptr_hash(const void *p) {
    uint64_t x = (uint64_t)(uintptr_t)p;
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

static literal_entry *lit_find(literal_pool *lp, const void *host) {
    if (!lp->map_cap) return NULL;
    for (uint64_t i = ptr_hash(host) & (lp->map_cap - 1);; i = (i + 1) & (lp->map_cap - 1)) {
        if (lp->map[i].host == host) return &lp->map[i];
        if (!lp->map[i].host) return NULL;
    }
}

static bool lit_insert(literal_pool *lp, const void *host, void *dev) {
    if ((lp->map_n + 1) * 2 > lp->map_cap) {
        uint64_t cap = lp->map_cap ? lp->map_cap * 2 : 256;
        literal_entry *m = (literal_entry *)calloc(cap, sizeof *m);
        if (!m) return false;
        for (uint64_t i = 0; i < lp->map_cap; i++) {
            if (!lp->map[i].host) continue;
            uint64_t j = ptr_hash(lp->map[i].host) & (cap - 1);
            while (m[j].host) j = (j + 1) & (cap - 1);
            m[j] = lp->map[i];
        }
        free(lp->map);
        lp->map = m;
        lp->map_cap = cap;
    }
    uint64_t j = ptr_hash(host) & (lp->map_cap - 1);
    while (lp->map[j].host) j = (j + 1) & (lp->map_cap - 1);
    lp->map[j].host = host;
    lp->map[j].dev = dev;
    lp->map_n++;
    return true;
}

/* The device copy of a literal; made (synchronously) only during warm-up. */
static lp_status literal_dev(lp_gdev *g, gcard *k, const void *host, uint64_t bytes, void **dev,
                             lp_diag *d) {
    literal_pool *lp = &g->gpus[k->gpu].lit;
    literal_entry *e = lit_find(lp, host);
    if (e) {
        *dev = e->dev;
        return LP_OK;
    }
    if (!k->warming)
        return lp_error(d, LP_ERR_INTERNAL, "a literal first seen while the step was captured");
    uint64_t need = (bytes + 255) & ~(uint64_t)255;
    if (need == 0) need = 256;
    if (lp->n_chunks == 0 || lp->used + need > lp->chunk_bytes) {
        uint64_t size = need > lp->chunk_bytes ? need : lp->chunk_bytes;
        unsigned char **ch = (unsigned char **)realloc(lp->chunks, sizeof *ch * (size_t)(lp->n_chunks + 1));
        if (!ch) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        lp->chunks = ch;
        GD_CHECK(d, cudaMalloc((void **)&ch[lp->n_chunks], size));
        lp->n_chunks++;
        lp->used = need > lp->chunk_bytes ? size : 0;
        lp->total += size;
        if (need > lp->chunk_bytes) {
            *dev = ch[lp->n_chunks - 1];
            GD_CHECK(d, cudaMemcpy(*dev, host, bytes, cudaMemcpyHostToDevice));
            return lit_insert(lp, host, *dev) ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
        }
    }
    *dev = lp->chunks[lp->n_chunks - 1] + lp->used;
    lp->used += need;
    if (bytes) GD_CHECK(d, cudaMemcpy(*dev, host, bytes, cudaMemcpyHostToDevice));
    return lit_insert(lp, host, *dev) ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
}

/* ---- the compute callback --------------------------------------------------- */

/* The node's attributes as the IR holds them (tensors point at literals). */
typedef struct node_attrs {
    lp_attr *attrs;
    lp_tensor *tensors;
    lp_dim *dims;
} node_attrs;

static void attrs_free(node_attrs *a) {
    free(a->attrs);
    free(a->tensors);
    free(a->dims);
}

static bool attrs_make(const lp_card_node *n, node_attrs *out) {
    memset(out, 0, sizeof *out);
    int total = 0;
    for (int k = 0; k < n->n_attrs; k++)
        if (n->attrs[k].type == LP_ATTR_TENSOR && n->attrs[k].tensor) total += n->attrs[k].tensor->rank;
    out->attrs = (lp_attr *)calloc((size_t)n->n_attrs + 1, sizeof *out->attrs);
    out->tensors = (lp_tensor *)calloc((size_t)n->n_attrs + 1, sizeof *out->tensors);
    out->dims = (lp_dim *)calloc((size_t)total + 1, sizeof *out->dims);
    if (!out->attrs || !out->tensors || !out->dims) return false;
    for (int k = 0, at = 0; k < n->n_attrs; k++) {
        const lp_card_attr *a = &n->attrs[k];
        lp_attr *b = &out->attrs[k];
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
            lp_tensor *t = &out->tensors[k];
            t->dtype = (lp_dtype)a->tensor->dtype;
            t->shape.rank = a->tensor->rank;
            t->shape.dims = out->dims + at;
            for (int r = 0; r < a->tensor->rank; r++) out->dims[at + r].size = a->tensor->dims[r];
            at += a->tensor->rank;
            t->data.where = LP_DATA_INLINE;
            t->data.bytes = (const uint8_t *)a->tensor->literal;
            t->data.nbytes = a->tensor->bytes;
            b->tensor = t;
        }
    }
    return true;
}

/* Runs the node's reference kernel on the inputs the GPU kernel read and
 * compares the outputs: relative L2 error for floats, exact for the rest. */
static lp_status check_node(lp_gdev *g, gcard *k, int card, const lp_card_node *n, int op,
                            const lp_gpu_tensor *in, const lp_gpu_tensor *out, const node_attrs *na,
                            lp_diag *d) {
    GD_CHECK(d, cudaStreamSynchronize(k->stream));
    int ni = n->n_inputs, no = n->n_outputs;
    lp_ref_tensor *rin = (lp_ref_tensor *)calloc((size_t)ni + 1, sizeof *rin);
    lp_ref_tensor *rout = (lp_ref_tensor *)calloc((size_t)no + 1, sizeof *rout);
    void **gout = (void **)calloc((size_t)no + 1, sizeof *gout);
    void **owned = (void **)calloc((size_t)ni + 1, sizeof *owned);
    lp_status st = rin && rout && gout && owned ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; st == LP_OK && i < ni; i++) {
        const lp_card_tensor *t = &n->inputs[i];
        rin[i].dtype = (lp_dtype)t->dtype;
        rin[i].rank = t->rank;
        for (int r = 0; r < t->rank; r++) rin[i].dims[r] = t->dims[r];
        if (t->region == LP_CARD_LITERAL) {
            rin[i].data = (void *)t->literal;
        } else if (t->region == LP_CARD_MEMORY) {
            owned[i] = malloc(t->bytes ? t->bytes : 1);
            if (!owned[i]) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
            else if (t->bytes) {
                cudaError_t e = cudaMemcpy(owned[i], in[i].data, t->bytes, cudaMemcpyDeviceToHost);
                if (e != cudaSuccess) st = lp_error(d, LP_ERR_INTERNAL, "cudaMemcpy: %s", cudaGetErrorString(e));
            }
            rin[i].data = owned[i];
        }
    }
    for (int i = 0; st == LP_OK && i < no; i++) {
        const lp_card_tensor *t = &n->outputs[i];
        rout[i].dtype = (lp_dtype)t->dtype;
        rout[i].rank = t->rank;
        for (int r = 0; r < t->rank; r++) rout[i].dims[r] = t->dims[r];
        if (t->region != LP_CARD_MEMORY) continue;
        rout[i].data = malloc(t->bytes ? t->bytes : 1);
        gout[i] = malloc(t->bytes ? t->bytes : 1);
        if (!rout[i].data || !gout[i]) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        else if (t->bytes) {
            cudaError_t e = cudaMemcpy(gout[i], out[i].data, t->bytes, cudaMemcpyDeviceToHost);
            if (e != cudaSuccess) st = lp_error(d, LP_ERR_INTERNAL, "cudaMemcpy: %s", cudaGetErrorString(e));
        }
    }
    if (st == LP_OK) {
        lp_diag rd = lp_diag_make(NULL);
        rd.sink = NULL;
        lp_ref_call call = {};
        call.op = op;
        call.node = n->node;
        call.opset = n->opset;
        call.n_inputs = ni;
        call.inputs = rin;
        call.n_outputs = no;
        call.outputs = rout;
        call.n_attrs = n->n_attrs;
        call.attrs = na->attrs;
        call.diag = &rd;
        if (lp_ref_run(&call) != LP_OK) {
            fprintf(stderr, "check: card %d, %s '%s': no reference to compare with (%s)\n", card,
                    n->op, n->node, rd.last_error);
        } else {
            for (int i = 0; i < no; i++) {
                const lp_card_tensor *t = &n->outputs[i];
                if (t->region != LP_CARD_MEMORY) continue;
                int64_t cnt = 1;
                for (int r = 0; r < t->rank; r++) cnt *= t->dims[r];
                lp_ref_diff df;
                lp_ref_compare(gout[i], (lp_dtype)t->dtype, rout[i].data, (lp_dtype)t->dtype, cnt, &df);
                double err = df.rel_l2;
                int64_t wrong = df.n_mismatch;
                double tol = t->dtype == LP_DT_FLOAT ? g->o.check_tol : 1e-2;
                if (wrong || err > tol) {
                    g->check_failures++;
                    fprintf(stderr, "check: card %d, %s '%s' output %d: relative L2 error %.3g "
                            "(tolerance %.1g), %lld of %lld elements differ\n", card, n->op, n->node,
                            i, err, tol, (long long)wrong, (long long)cnt);
                }
            }
        }
    }
    for (int i = 0; rin && i < ni; i++) free(owned ? owned[i] : NULL);
    for (int i = 0; rout && i < no; i++) {
        free(rout[i].data);
        free(gout ? gout[i] : NULL);
    }
    free(rin);
    free(rout);
    free(gout);
    free(owned);
    return st;
}

static int gdev_compute(lp_card_env *env, unsigned char *base, const lp_card_node *n) {
    lp_gdev *g = (lp_gdev *)env->user;
    gcard *k = &g->cards[env->card];
    lp_diag *d = g->diag;
    int op = lp_op_lookup("", n->op);
    lp_gpu_fn f = op > 0 ? lp_gpu_kernel(op) : NULL;
    if (!f) {
        lp_error(d, LP_ERR_UNSUPPORTED, "card %d, node '%s': no CUDA kernel for op %s", env->card,
                 n->node, n->op);
        return LP_ERR_UNSUPPORTED;
    }
    int ni = n->n_inputs, no = n->n_outputs;
    lp_gpu_tensor *in = (lp_gpu_tensor *)calloc((size_t)ni + 1, sizeof *in);
    lp_gpu_tensor *out = (lp_gpu_tensor *)calloc((size_t)no + 1, sizeof *out);
    node_attrs na;
    bool ok_attrs = attrs_make(n, &na);
    lp_status st = in && out && ok_attrs ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int a = 0; st == LP_OK && a < ni + no; a++) {
        const lp_card_tensor *t = a < ni ? &n->inputs[a] : &n->outputs[a - ni];
        lp_gpu_tensor *x = a < ni ? &in[a] : &out[a - ni];
        if (t->rank < 0 || t->rank > LP_MAX_RANK) {
            st = lp_error(d, LP_ERR_INVALID_MODEL, "card %d, node '%s': argument %d has rank %d",
                          env->card, n->node, a, t->rank);
            break;
        }
        x->dtype = (lp_dtype)t->dtype;
        x->rank = t->rank;
        for (int r = 0; r < t->rank; r++) x->dims[r] = t->dims[r];
        if (t->region == LP_CARD_MEMORY) {
            if (!in_card(k, t->offset, t->bytes)) {
                st = lp_error(d, LP_ERR_INVALID_MODEL, "card %d, node '%s': argument %d lies outside "
                              "the card's allocation", env->card, n->node, a);
                break;
            }
            x->data = base + t->offset;
        } else if (t->region == LP_CARD_LITERAL) {
            x->host = t->literal;
            st = literal_dev(g, k, t->literal, t->bytes, &x->data, d);
        }
    }
    if (st == LP_OK) {
        lp_gpu_call call = {};
        call.op = op;
        call.node = n->node;
        call.opset = n->opset;
        call.card = env->card;
        call.n_inputs = ni;
        call.inputs = in;
        call.n_outputs = no;
        call.outputs = out;
        call.n_attrs = n->n_attrs;
        call.attrs = na.attrs;
        call.workspace = n->workspace_bytes ? base + n->workspace_offset : NULL;
        call.workspace_bytes = (size_t)n->workspace_bytes;
        call.stream = k->stream;
        call.libs = g->gpus[k->gpu].libs;
        call.warmup = k->warming;
        call.diag = d;
        node_time *nt = NULL;
        if (k->profiling && st == LP_OK) {
            if (g->n_prof == g->cap_prof) {
                int cap = g->cap_prof ? 2 * g->cap_prof : 256;
                node_time *p = (node_time *)realloc(g->prof, sizeof *p * (size_t)cap);
                if (p) {
                    g->prof = p;
                    g->cap_prof = cap;
                }
            }
            if (g->n_prof < g->cap_prof) {
                nt = &g->prof[g->n_prof];
                nt->n = n;
                if (cudaEventCreate(&nt->a) != cudaSuccess || cudaEventCreate(&nt->b) != cudaSuccess)
                    nt = NULL;
                else
                    g->n_prof++;
            }
            if (nt) cudaEventRecordWithFlags(nt->a, k->stream, cudaEventRecordExternal);
        }
        st = f(&call);
        if (nt) cudaEventRecordWithFlags(nt->b, k->stream, cudaEventRecordExternal);
        if (st == LP_OK && k->warming && g->o.check_nodes)
            st = check_node(g, k, env->card, n, op, in, out, &na, d);
    }
    free(in);
    free(out);
    attrs_free(&na);
    return st == LP_OK ? 0 : (int)st;
}

static int gdev_copy(lp_card_env *env, unsigned char *base, uint64_t dst, uint64_t src, uint64_t bytes,
                     const char *value) {
    lp_gdev *g = (lp_gdev *)env->user;
    gcard *k = &g->cards[env->card];
    if (!in_card(k, dst, bytes) || !in_card(k, src, bytes)) {
        lp_error(g->diag, LP_ERR_INVALID_MODEL, "card %d: the copy of '%s' lies outside the card's "
                 "allocation", env->card, value);
        return LP_ERR_INVALID_MODEL;
    }
    if (bytes == 0 || dst == src) return 0;
    cudaError_t e = cudaMemcpyAsync(base + dst, base + src, bytes, cudaMemcpyDeviceToDevice, k->stream);
    if (e != cudaSuccess) {
        lp_error(g->diag, LP_ERR_INTERNAL, "card %d: cudaMemcpyAsync of '%s' failed: %s", env->card,
                 value, cudaGetErrorString(e));
        return LP_ERR_INTERNAL;
    }
    return 0;
}

void lp_gdev_env(lp_gdev *g, int card, lp_card_env *env) {
    env->abi = LP_CARD_ABI;
    env->card = card;
    env->compute = gdev_compute;
    env->copy = gdev_copy;
    env->user = g;
}

void lp_gdev_set_diag(lp_gdev *g, lp_diag *d) { g->diag = d; }

/* ---- steps ------------------------------------------------------------------ */

/* The card's step: its persistent program, or the launch program. */
static int call_step(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, lp_diag *d) {
    gcard *k = &g->cards[card];
    if (!k->persist) return step(env, k->base);
    lp_status st = lp_gpu_persist_step(k->persist, env, k->base, k->stream, d);
    return st == LP_OK ? 0 : (int)st;
}

/* Opens the card's program: resident when asked and it can be, else persistent. */
static lp_status open_program(gcard *k, int card, const lp_persist_program *p, lp_diag *d) {
    if (k->resident && k->shared_gpu) {
        lp_note(d, "card %d: not resident: its GPU runs other cards, and a resident kernel holds every SM for "
                "as long as it runs; it runs as the persistent program", card);
        k->resident = false;
    }
    if (k->resident) {
        char why[256];
        lp_status st = lp_gpu_persist_open_resident(p, k->base, card, &k->persist, why, sizeof why, d);
        if (st != LP_OK || k->persist) return st;
        lp_note(d, "card %d: not resident: %s; it runs as the persistent program", card, why);
    }
    return lp_gpu_persist_open(p, k->base, card, &k->persist, d);
}

static lp_status set_program(lp_gdev *g, int card, const lp_persist_program *p, bool choose, bool resident,
                             lp_diag *d) {
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    gcard *k = &g->cards[card];
    k->resident = resident;
    k->shared_gpu = false;
    for (int c = 0; c < g->n_cards; c++)
        if (c != card && g->cards[c].gpu == k->gpu) k->shared_gpu = true;
    if (choose && g->o.graphs) {
        k->candidate = p;
        return LP_OK;
    }
    return open_program(k, card, p, d);
}

lp_status lp_gdev_set_persist(lp_gdev *g, int card, const lp_persist_program *p, bool choose, lp_diag *d) {
    return set_program(g, card, p, choose, false, d);
}

lp_status lp_gdev_set_resident(lp_gdev *g, int card, const lp_persist_program *p, bool choose, lp_diag *d) {
    return set_program(g, card, p, choose, true, d);
}

const char *lp_gdev_program(const lp_gdev *g, int card, double *library_us, double *persistent_us) {
    const gcard *k = &g->cards[card];
    if (library_us) *library_us = k->library_us;
    if (persistent_us) *persistent_us = k->persistent_us;
    if (!k->persist) return "library";
    return lp_gpu_persist_resident(k->persist) ? "resident" : "persistent";
}

/* Median microseconds of `reps` replays of a captured step. */
static lp_status time_graph(gcard *k, cudaGraphExec_t exec, int reps, double *us, lp_diag *d) {
    float best[16];
    cudaEvent_t a = NULL, b = NULL;
    GD_CHECK(d, cudaEventCreate(&a));
    GD_CHECK(d, cudaEventCreate(&b), cudaEventDestroy(a));
    cudaError_t e = cudaSuccess;
    if (reps > 16) reps = 16;
    for (int r = 0; r < reps && e == cudaSuccess; r++) {
        e = cudaEventRecord(a, k->stream);
        if (e == cudaSuccess) e = cudaGraphLaunch(exec, k->stream);
        if (e == cudaSuccess) e = cudaEventRecord(b, k->stream);
        if (e == cudaSuccess) e = cudaEventSynchronize(b);
        if (e == cudaSuccess) e = cudaEventElapsedTime(&best[r], a, b);
    }
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    if (e != cudaSuccess)
        return lp_error(d, LP_ERR_INTERNAL, "timing a step failed: %s", cudaGetErrorString(e));
    for (int i = 1; i < reps; i++)
        for (int j = i; j > 0 && best[j] < best[j - 1]; j--) {
            float t = best[j];
            best[j] = best[j - 1];
            best[j - 1] = t;
        }
    *us = best[reps / 2] * 1e3;
    return LP_OK;
}

/* Warm-up of a card with a candidate persistent program: the launch
 * program captured and timed, then the persistent one (its weights packed),
 * and the faster kept; when that is the launch program the weights are put
 * back as they were. */
static lp_status choose_program(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, lp_diag *d);

static lp_status run_eager(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, lp_diag *d) {
    g->diag = d;
    int rc = call_step(g, card, step, env, d);
    g->cards[card].step_rc = rc;
    if (rc != 0) {
        lp_note(d, "card %d: its step stopped", card);
        return rc > 0 ? (lp_status)rc : LP_ERR_INTERNAL;
    }
    GD_CHECK(d, cudaGetLastError());
    return LP_OK;
}

static lp_status capture(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, lp_diag *d) {
    gcard *k = &g->cards[card];
    cudaGraph_t graph = NULL;
    GD_CHECK(d, cudaStreamBeginCapture(k->stream, cudaStreamCaptureModeThreadLocal));
    g->diag = d;
    int rc = call_step(g, card, step, env, d);
    k->step_rc = rc;
    cudaError_t e = cudaStreamEndCapture(k->stream, &graph);
    if (rc != 0) {
        if (graph) cudaGraphDestroy(graph);
        lp_note(d, "card %d: its step stopped while it was captured", card);
        return rc > 0 ? (lp_status)rc : LP_ERR_INTERNAL;
    }
    if (e != cudaSuccess) {
        return lp_error(d, LP_ERR_INTERNAL, "card %d: cudaStreamEndCapture failed: %s (a kernel of the "
                        "step is not capturable)", card, cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(&k->exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: cudaGraphInstantiate failed: %s", card,
                        cudaGetErrorString(e));
    GD_CHECK(d, cudaGraphUpload(k->exec, k->stream));
    return LP_OK;
}

lp_status lp_gdev_step(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, bool eager,
                       lp_diag *d) {
    gcard *k = &g->cards[card];
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    if (!k->warmed) {
        /* warm-up, eagerly: algorithms chosen, literals uploaded, checks */
        k->warming = true;
        st = run_eager(g, card, step, env, d);
        k->warming = false;
        if (st != LP_OK) return st;
        GD_CHECK(d, cudaStreamSynchronize(k->stream));
        k->warmed = true;
        if (!eager && g->o.graphs) {
            st = capture(g, card, step, env, d);
            if (st != LP_OK) return st;
            if (k->candidate) {
                st = choose_program(g, card, step, env, d);
                if (st != LP_OK) return st;
            }
        }
    }
    GD_CHECK(d, cudaEventRecord(k->ev_start, k->stream));
    if (k->exec) {
        GD_CHECK(d, cudaGraphLaunch(k->exec, k->stream));
    } else {
        st = run_eager(g, card, step, env, d);
        if (st != LP_OK) return st;
    }
    GD_CHECK(d, cudaEventRecord(k->ev_end, k->stream));
    k->sent = false;
    k->ran = true;
    return LP_OK;
}

static lp_status choose_program(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, lp_diag *d) {
    gcard *k = &g->cards[card];
    const lp_persist_program *p = k->candidate;
    k->candidate = NULL;
    cudaGraphExec_t library = k->exec;
    lp_status st = time_graph(k, library, 9, &k->library_us, d);
    if (st == LP_OK) st = open_program(k, card, p, d);
    if (st != LP_OK) return st;
    k->exec = NULL;
    st = run_eager(g, card, step, env, d);
    if (st == LP_OK) st = capture(g, card, step, env, d);
    if (st == LP_OK) st = time_graph(k, k->exec, 9, &k->persistent_us, d);
    if (st != LP_OK) {
        cudaGraphExecDestroy(library);
        return st;
    }
    if (k->persistent_us < k->library_us) {
        cudaGraphExecDestroy(library);
        return LP_OK;
    }
    /* the launch program is faster: its weights back, its graph again */
    cudaGraphExecDestroy(k->exec);
    k->exec = library;
    st = lp_gpu_persist_unpack(k->persist, k->base, d);
    lp_gpu_persist_close(k->persist);
    k->persist = NULL;
    return st;
}

lp_status lp_gdev_copy(lp_gdev *g, int from, uint64_t src, int to, uint64_t dst, uint64_t bytes,
                       lp_diag *d) {
    gcard *a = &g->cards[from], *b = &g->cards[to];
    if (!in_card(a, src, bytes) || !in_card(b, dst, bytes))
        return lp_error(d, LP_ERR_INVALID_MODEL, "the transfer from card %d to card %d lies outside "
                        "their allocations", from, to);
    /* microbatches in flight: the receiver's previous step has taken its
     * receive buffer before these bytes overwrite it */
    lp_status st = to != from ? lp_gdev_order(g, to, from, d) : LP_OK;
    if (st == LP_OK) st = use_card(g, from, d);
    if (st != LP_OK) return st;
    if (bytes) {
        if (a->gpu == b->gpu)
            GD_CHECK(d, cudaMemcpyAsync(b->base + dst, a->base + src, bytes, cudaMemcpyDeviceToDevice,
                                        a->stream));
        else
            GD_CHECK(d, cudaMemcpyPeerAsync(b->base + dst, b->gpu, a->base + src, a->gpu, bytes, a->stream));
    }
    GD_CHECK(d, cudaEventRecord(a->ev_sent, a->stream));
    a->sent = true;
    /* the receiver's later work waits for the bytes */
    GD_CHECK(d, cudaSetDevice(b->gpu));
    GD_CHECK(d, cudaStreamWaitEvent(b->stream, a->ev_sent, 0));
    return LP_OK;
}

lp_status lp_gdev_cut_address(lp_gdev *g, int from, int to, uint64_t dst, uint64_t bytes, uint64_t *at,
                              char *why, size_t why_len, lp_diag *d) {
    gcard *a = &g->cards[from], *b = &g->cards[to];
    *at = 0;
    if (!b->base || !in_card(b, dst, bytes))
        return lp_error(d, LP_ERR_INVALID_MODEL, "the transfer from card %d to card %d lies outside "
                        "card %d's allocation", from, to, to);
    if (a->gpu != b->gpu) {
        int ok = 0;
        GD_CHECK(d, cudaDeviceCanAccessPeer(&ok, a->gpu, b->gpu));
        if (!ok) {
            snprintf(why, why_len, "GPU %d cannot write GPU %d's memory (no peer access)", a->gpu, b->gpu);
            return LP_OK;
        }
        lp_status st = use_card(g, from, d);
        if (st != LP_OK) return st;
        cudaError_t e = cudaDeviceEnablePeerAccess(b->gpu, 0);
        if (e == cudaErrorPeerAccessAlreadyEnabled) (void)cudaGetLastError();
        else GD_CHECK(d, e);
    }
    *at = (uint64_t)(uintptr_t)(b->base + dst);
    return LP_OK;
}

lp_status lp_gdev_order(lp_gdev *g, int first, int then, lp_diag *d) {
    gcard *a = &g->cards[first], *b = &g->cards[then];
    if (!a->ran) return LP_OK;
    lp_status st = use_card(g, then, d);
    if (st != LP_OK) return st;
    GD_CHECK(d, cudaStreamWaitEvent(b->stream, a->ev_end, 0));
    return LP_OK;
}

lp_status lp_gdev_sync(lp_gdev *g, int card, lp_diag *d) {
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    GD_CHECK(d, cudaStreamSynchronize(g->cards[card].stream));
    return LP_OK;
}

lp_status lp_gdev_card_times(lp_gdev *g, int card, double *step_ms, double *send_ms, lp_diag *d) {
    gcard *k = &g->cards[card];
    *step_ms = *send_ms = 0;
    if (!k->ran) return LP_OK;
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    float ms = 0;
    GD_CHECK(d, cudaEventSynchronize(k->sent ? k->ev_sent : k->ev_end));
    GD_CHECK(d, cudaEventElapsedTime(&ms, k->ev_start, k->ev_end));
    *step_ms = ms;
    if (k->sent) {
        GD_CHECK(d, cudaEventElapsedTime(&ms, k->ev_end, k->ev_sent));
        *send_ms = ms;
    }
    return LP_OK;
}

lp_status lp_gdev_span_ms(lp_gdev *g, double *ms, lp_diag *d) {
    *ms = 0;
    if (g->n_cards == 0) return LP_OK;
    gcard *first = &g->cards[0], *last = &g->cards[g->n_cards - 1];
    lp_status st = use_card(g, g->n_cards - 1, d);
    if (st != LP_OK) return st;
    cudaEvent_t end = last->sent ? last->ev_sent : last->ev_end;
    GD_CHECK(d, cudaEventSynchronize(end));
    float f = 0;
    GD_CHECK(d, cudaEventElapsedTime(&f, first->ev_start, end));
    *ms = f;
    return LP_OK;
}

lp_status lp_gdev_memory_of(lp_gdev *g, int card, lp_gdev_memory *m, lp_diag *d) {
    gcard *k = &g->cards[card];
    gpu_state *s = &g->gpus[k->gpu];
    memset(m, 0, sizeof *m);
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    size_t fr = 0, tot = 0;
    GD_CHECK(d, cudaMemGetInfo(&fr, &tot));
    m->gpu = k->gpu;
    snprintf(m->name, sizeof m->name, "%s", s->prop.name);
    m->total = tot;
    m->free_at_open = s->free_at_open;
    m->free_now = fr;
    m->allocated = s->allocated;
    m->literals = s->lit.total;
    m->graph_instantiated = k->exec != NULL;
    return LP_OK;
}

int lp_gdev_check_failures(const lp_gdev *g) { return g->check_failures; }

static int by_time_desc(const void *x, const void *y) {
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? 1 : a > b ? -1 : 0;
}

lp_status lp_gdev_profile(lp_gdev *g, int card, lp_card_step_fn step, lp_card_env *env, FILE *out,
                          lp_diag *d) {
    gcard *k = &g->cards[card];
    lp_status st = use_card(g, card, d);
    if (st != LP_OK) return st;
    if (k->persist) {
        g->diag = d;
        return lp_gpu_persist_profile(k->persist, env, k->base, k->stream, out, d);
    }
    g->n_prof = 0;
    /* the step captured with an event before and after every node, so the
     * times are the graph's, without the host's launch gaps */
    cudaGraph_t graph = NULL;
    cudaGraphExec_t exec = NULL;
    GD_CHECK(d, cudaStreamBeginCapture(k->stream, cudaStreamCaptureModeThreadLocal));
    k->profiling = true;
    g->diag = d;
    int rc = step(env, k->base);
    k->profiling = false;
    cudaError_t e = cudaStreamEndCapture(k->stream, &graph);
    if (rc != 0 || e != cudaSuccess) {
        if (graph) cudaGraphDestroy(graph);
        return rc != 0 ? (rc > 0 ? (lp_status)rc : LP_ERR_INTERNAL)
                       : lp_error(d, LP_ERR_INTERNAL, "card %d: profiling capture failed: %s", card,
                                  cudaGetErrorString(e));
    }
    e = cudaGraphInstantiate(&exec, graph, 0);
    cudaGraphDestroy(graph);
    if (e != cudaSuccess)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: cudaGraphInstantiate: %s", card, cudaGetErrorString(e));
    for (int r = 0; r < 5 && e == cudaSuccess; r++) e = cudaGraphLaunch(exec, k->stream);
    if (e == cudaSuccess) e = cudaStreamSynchronize(k->stream);
    cudaGraphExecDestroy(exec);
    if (e != cudaSuccess)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: profiled replay: %s", card, cudaGetErrorString(e));
    /* per node, then per op; sorted by time */
    double total = 0;
    double *rows = (double *)calloc((size_t)g->n_prof + 1, 2 * sizeof(double));
    if (!rows) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < g->n_prof; i++) {
        float ms = 0;
        cudaEventElapsedTime(&ms, g->prof[i].a, g->prof[i].b);
        rows[2 * i] = ms * 1e3;
        rows[2 * i + 1] = i;
        total += ms * 1e3;
    }
    qsort(rows, (size_t)g->n_prof, 2 * sizeof(double), by_time_desc);
    fprintf(out, "profile of card %d: %d kernel steps, %.1f us in kernels (a CUDA graph with "
            "events around each node)\n", card, g->n_prof, total);
    for (int i = 0; i < g->n_prof; i++) {
        const lp_card_node *n = g->prof[(int)rows[2 * i + 1]].n;
        fprintf(out, "  %8.2f us  %-20s %s\n", rows[2 * i], n->op, n->node);
    }
    for (int i = 0; i < g->n_prof; i++) {
        cudaEventDestroy(g->prof[i].a);
        cudaEventDestroy(g->prof[i].b);
    }
    free(rows);
    g->n_prof = 0;
    return LP_OK;
}

int lp_gdev_step_result(const lp_gdev *g, int card) { return g->cards[card].step_rc; }
