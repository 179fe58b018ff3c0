/* The linear layer IR: g->nodes cut into contiguous runs ("layers").
 *
 * Layering modes (lp_layering):
 *   auto     One layer per repeated block. A node's module path comes from the
 *            metadata torch writes (pkg.torch.onnx.name_scopes, the list of
 *            dotted module paths from the root, then the fx node name) or,
 *            without it, from a node name of the form /layers.3/attn/MatMul.
 *            The block is the shallowest path ending in a number
 *            (encoder.layer.0, h.0, model.layers.7). Nodes outside blocks
 *            form "embed" (no block before them) and "head" (no block after
 *            them); those between blocks, and nodes without any module
 *            (shape arithmetic), join the layer of their earliest consumer
 *            (else of their producer). Without any module path the graph is
 *            cut where the dataflow narrows to one value (keys_from_cuts);
 *            with module paths but no numbered block, where the fewest bytes
 *            cross (keys_from_bytes).
 *   node     One node per layer.
 *   scope:D  Module path prefix of depth D (1 = children of the root).
 *   regex:P  First capture group of a PCRE2 (Perl-syntax) regex over node
 *            names, searched with a match and depth limit so that no
 *            pattern backtracks without bound; nodes that do not match join
 *            their consumer as above. A pattern matching no node is an error.
 *
 * Node order: to make every layer contiguous, g->nodes is re-sorted
 * topologically by (layer rank, position in the old order); the result is a
 * valid topological order. Should a dependency still force a layer apart, its
 * pieces become separate layers named "key", "key#2", ... */
#define _POSIX_C_SOURCE 200809L
#include "layers_internal.h"
#include "infer_internal.h"

#include <assert.h>
#include <ctype.h>
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

/* ---- keys: layer names with a rank, interned by a small hash map ---------- */

typedef struct keymap {
    int n, cap;
    const char **name;
    int *rank;
    int hcap;
    int *slots; /* key index + 1, 0 empty */
} keymap;

static uint64_t hash_str(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static bool keymap_grow_hash(keymap *m) {
    int hcap = m->hcap ? 2 * m->hcap : 64;
    int *slots = calloc((size_t)hcap, sizeof *slots);
    if (!slots) return false;
    for (int k = 0; k < m->n; k++) {
        size_t h = hash_str(m->name[k]) & (size_t)(hcap - 1);
        while (slots[h]) h = (h + 1) & (size_t)(hcap - 1);
        slots[h] = k + 1;
    }
    free(m->slots);
    m->slots = slots;
    m->hcap = hcap;
    return true;
}

/* Index of key `name`, added with rank `rank` when new; -1 if out of memory. */
static int keymap_get(keymap *m, lp_arena *a, const char *name, int rank) {
    if (2 * (m->n + 1) > m->hcap && !keymap_grow_hash(m)) return -1;
    size_t h = hash_str(name) & (size_t)(m->hcap - 1);
    for (; m->slots[h]; h = (h + 1) & (size_t)(m->hcap - 1))
        if (strcmp(m->name[m->slots[h] - 1], name) == 0) return m->slots[h] - 1;
    if (m->n == m->cap) {
        int cap = m->cap ? 2 * m->cap : 32;
        const char **nn = realloc(m->name, (size_t)cap * sizeof *nn);
        if (!nn) return -1;
        m->name = nn;
        int *nr = realloc(m->rank, (size_t)cap * sizeof *nr);
        if (!nr) return -1;
        m->rank = nr;
        m->cap = cap;
    }
    const char *copy = lp_arena_strdup(a, name);
    if (!copy) return -1;
    m->name[m->n] = copy;
    m->rank[m->n] = rank;
    m->slots[h] = ++m->n;
    return m->n - 1;
}

static void keymap_free(keymap *m) {
    free(m->name);
    free(m->rank);
    free(m->slots);
}

/* ---- module paths ---------------------------------------------------------- */

#define NO_SCOPE (-1)

#define SCOPE_OOM (-2)

/* Module paths of one node: NUL-terminated strings back to back in buf,
 * path k at buf + at[k]; reused from node to node. */
typedef struct scope_buf {
    char *buf;
    size_t len, cap;
    size_t *at;
    int n, n_cap;
    const char **path; /* [n]: pointers into buf, set once the node is done */
    int path_cap;
} scope_buf;

static void scope_buf_free(scope_buf *s) {
    free(s->buf);
    free(s->at);
    free(s->path);
}

/* Appends `len` bytes of `p` as a new path, '/' written as '.' if `dots`. */
static bool scope_push(scope_buf *s, const char *p, size_t len, bool dots) {
    if (s->len + len + 1 > s->cap) {
        size_t cap = s->cap ? s->cap : 256;
        while (cap < s->len + len + 1) cap *= 2;
        char *nb = realloc(s->buf, cap);
        if (!nb) return false;
        s->buf = nb;
        s->cap = cap;
    }
    if (s->n == s->n_cap) {
        int cap = s->n_cap ? 2 * s->n_cap : 16;
        size_t *na = realloc(s->at, (size_t)cap * sizeof *na);
        if (!na) return false;
        s->at = na;
        s->n_cap = cap;
    }
    char *d = s->buf + s->len;
    memcpy(d, p, len);
    d[len] = '\0';
    if (dots)
        for (size_t k = 0; k < len; k++)
            if (d[k] == '/') d[k] = '.';
    s->at[s->n++] = s->len;
    s->len += len + 1;
    return true;
}

/* s->path[0..n) from the offsets; false if out of memory. */
static bool scope_finish(scope_buf *s) {
    if (s->n > s->path_cap) {
        const char **np = realloc(s->path, (size_t)s->n * sizeof *np);
        if (!np) return false;
        s->path = np;
        s->path_cap = s->n;
    }
    for (int k = 0; k < s->n; k++) s->path[k] = s->buf + s->at[k];
    return true;
}

/* Module paths of node n, shallowest first, root excluded, in s->path (valid
 * until the next call); NO_SCOPE when the node has none (shape arithmetic),
 * 0 for a node of the root module, SCOPE_OOM if out of memory. */
static int node_scopes(scope_buf *s, const lp_node *n) {
    const char *meta = lp_node_meta(n, "pkg.torch.onnx.name_scopes");
    s->len = 0;
    s->n = 0;
    if (meta) {
        /* a Python list repr: ['', 'layers.0', 'layers.0.attn', 'linear'];
         * the first item is the root, the last the fx node name */
        const char *prev = NULL;
        size_t prev_len = 0;
        int n_items = 0;
        for (const char *p = meta; *p; p++) {
            if (*p != '\'' && *p != '"') continue;
            char q = *p++;
            const char *e = strchr(p, q);
            if (!e) break;
            if (n_items == 0 && e - p >= 22 && strncmp(p, "_empty_nn_module_stack", 22) == 0)
                return NO_SCOPE;
            /* an item becomes a path once a later one shows it is not the last */
            if (n_items >= 2 && !scope_push(s, prev, prev_len, false)) return SCOPE_OOM;
            prev = p;
            prev_len = (size_t)(e - p);
            n_items++;
            p = e;
        }
        if (n_items == 0) return NO_SCOPE;
        return scope_finish(s) ? s->n : SCOPE_OOM;
    }
    /* node names as the TorchScript exporter writes them: /layers.3/attn/MatMul */
    if (!n->name || n->name[0] != '/') return NO_SCOPE;
    const char *last = strrchr(n->name, '/');
    for (const char *p = n->name + 1; p < last;) {
        const char *e = strchr(p, '/');
        /* the path so far with '/' written as '.' */
        if (!scope_push(s, n->name + 1, (size_t)(e - n->name - 1), true)) return SCOPE_OOM;
        p = e + 1;
    }
    return scope_finish(s) ? s->n : SCOPE_OOM;
}

/* True for a dotted path whose last component is a number: "h.0", "layers.12". */
static bool is_block_path(const char *path) {
    const char *dot = strrchr(path, '.');
    const char *c = dot ? dot + 1 : path;
    if (!*c) return false;
    for (; *c; c++)
        if (!isdigit((unsigned char)*c)) return false;
    return dot != NULL;
}

/* ---- consumer lists in the current node order ------------------------------ */

typedef struct edges {
    int32_t *start; /* [n_values + 1] */
    int32_t *node;  /* consumers, ascending node index */
} edges;

static bool edges_build(const lp_graph *g, edges *e) {
    size_t n_in = 0;
    for (int i = 0; i < g->n_nodes; i++) n_in += (size_t)g->nodes[i].n_inputs;
    e->start = calloc((size_t)g->n_values + 1, sizeof *e->start);
    e->node = malloc((n_in ? n_in : 1) * sizeof *e->node);
    int32_t *fill = calloc((size_t)g->n_values + 1, sizeof *fill);
    if (!e->start || !e->node || !fill) {
        free(fill);
        return false;
    }
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++)
            if (g->nodes[i].inputs[k] >= 0) e->start[g->nodes[i].inputs[k] + 1]++;
    for (int v = 0; v < g->n_values; v++) e->start[v + 1] += e->start[v];
    for (int i = 0; i < g->n_nodes; i++)
        for (int k = 0; k < g->nodes[i].n_inputs; k++) {
            int32_t v = g->nodes[i].inputs[k];
            if (v < 0) continue;
            /* a node reading v twice is listed once */
            int32_t at = e->start[v] + fill[v];
            if (fill[v] && e->node[at - 1] == i) continue;
            e->node[at] = i;
            fill[v]++;
        }
    /* compact duplicates away: shift each list's end */
    int32_t w = 0;
    for (int v = 0; v < g->n_values; v++) {
        int32_t s = e->start[v];
        e->start[v] = w;
        for (int32_t k = 0; k < fill[v]; k++) e->node[w++] = e->node[s + k];
    }
    e->start[g->n_values] = w;
    free(fill);
    return true;
}

static void edges_free(edges *e) {
    free(e->start);
    free(e->node);
}

/* ---- key assignment --------------------------------------------------------- */

#define KEY_NONE (-1)

/* Gives every node without a key the key of its lowest-ranked consumer
 * (sweeping backwards, so chains resolve), then of its highest-ranked
 * producer, else key `fallback`. */
static void join_neighbours(const lp_graph *g, const edges *e, const keymap *km, int *key,
                            int fallback) {
    for (int i = g->n_nodes - 1; i >= 0; i--) {
        if (key[i] != KEY_NONE) continue;
        const lp_node *n = &g->nodes[i];
        int best = KEY_NONE;
        for (int k = 0; k < n->n_outputs; k++) {
            int32_t v = n->outputs[k];
            if (v < 0) continue;
            for (int32_t c = e->start[v]; c < e->start[v + 1]; c++) {
                int kc = key[e->node[c]];
                if (kc != KEY_NONE && (best == KEY_NONE || km->rank[kc] < km->rank[best])) best = kc;
            }
        }
        key[i] = best;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        if (key[i] != KEY_NONE) continue;
        const lp_node *n = &g->nodes[i];
        int best = KEY_NONE;
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            if (v < 0 || g->values[v].producer < 0 || g->values[v].kind != LP_VALUE_ACTIVATION) continue;
            int kp = key[g->values[v].producer];
            if (kp != KEY_NONE && (best == KEY_NONE || km->rank[kp] > km->rank[best])) best = kp;
        }
        key[i] = best != KEY_NONE ? best : fallback;
    }
}

enum { CLS_FREE, CLS_OTHER, CLS_BLOCK };

/* auto: blocks from module paths. Returns false (keys untouched) when no node
 * lies in a block, so the caller can fall back to cutting at narrow points. */
static lp_status keys_from_blocks(lp_graph *g, const edges *e, lp_arena *a, keymap *km, int *key,
                                  bool *found, bool *scoped, lp_diag *d) {
    int n = g->n_nodes;
    *found = false;
    *scoped = false;
    unsigned char *cls = calloc((size_t)n, 1);
    unsigned char *anc = calloc((size_t)n, 1); /* a block node precedes it */
    unsigned char *desc = calloc((size_t)n, 1); /* a block node follows it */
    const char **block = calloc((size_t)n, sizeof *block);
    lp_status st = LP_OK;
    if (!cls || !anc || !desc || !block) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory while grouping %d nodes", n);
        goto done;
    }
    int n_blocks = 0;
    scope_buf sb = {0};
    for (int i = 0; i < n; i++) {
        int np = node_scopes(&sb, &g->nodes[i]);
        if (np == SCOPE_OOM) {
            scope_buf_free(&sb);
            goto oom;
        }
        cls[i] = np == NO_SCOPE ? CLS_FREE : CLS_OTHER;
        if (np != NO_SCOPE) *scoped = true;
        for (int k = 0; k < np; k++)
            if (is_block_path(sb.path[k])) {
                cls[i] = CLS_BLOCK;
                block[i] = lp_arena_strdup(a, sb.path[k]);
                n_blocks++;
                break;
            }
        if (cls[i] == CLS_BLOCK && !block[i]) {
            scope_buf_free(&sb);
            goto oom;
        }
    }
    scope_buf_free(&sb);
    if (n_blocks == 0) goto done;
    *found = true;
    for (int i = 0; i < n; i++) {
        const lp_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || g->values[v].kind != LP_VALUE_ACTIVATION || g->values[v].producer < 0) continue;
            int p = g->values[v].producer;
            if (cls[p] == CLS_BLOCK || anc[p]) anc[i] = 1;
        }
    }
    for (int i = n - 1; i >= 0; i--) {
        const lp_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            for (int32_t c = e->start[v]; c < e->start[v + 1]; c++)
                if (cls[e->node[c]] == CLS_BLOCK || desc[e->node[c]]) desc[i] = 1;
        }
    }
    /* ranks: embed 0, blocks by first appearance, head last */
    int embed = keymap_get(km, a, "embed", 0);
    if (embed < 0) goto oom;
    int rank = 1;
    for (int i = 0; i < n; i++) {
        key[i] = KEY_NONE;
        if (cls[i] == CLS_BLOCK) {
            int before = km->n;
            key[i] = keymap_get(km, a, block[i], rank);
            if (key[i] < 0) goto oom;
            if (km->n > before) rank++;
        }
    }
    int head = keymap_get(km, a, "head", rank);
    if (head < 0) goto oom;
    for (int i = 0; i < n; i++)
        if (cls[i] == CLS_OTHER && !(anc[i] && desc[i])) key[i] = anc[i] ? head : embed;
    join_neighbours(g, e, km, key, embed);
    goto done;
oom:
    st = lp_error(d, LP_ERR_INTERNAL, "out of memory while grouping nodes");
done:
    free(cls);
    free(anc);
    free(desc);
    free(block);
    return st;
}

/* scope:D — the module path at depth D (or the deepest one a node has). */
static lp_status keys_from_scope(lp_graph *g, const edges *e, lp_arena *a, int depth, keymap *km,
                                 int *key, lp_diag *d) {
    scope_buf sb = {0};
    for (int i = 0; i < g->n_nodes; i++) {
        int np = node_scopes(&sb, &g->nodes[i]);
        key[i] = KEY_NONE;
        if (np == NO_SCOPE) continue;
        const char *name = np == 0 ? "root" : np > 0 ? sb.path[(np < depth ? np : depth) - 1] : NULL;
        if (!name || (key[i] = keymap_get(km, a, name, km->n)) < 0) {
            scope_buf_free(&sb);
            return lp_error(d, LP_ERR_INTERNAL, "out of memory while grouping nodes");
        }
    }
    scope_buf_free(&sb);
    if (km->n == 0 && keymap_get(km, a, "root", 0) < 0)
        return lp_error(d, LP_ERR_INTERNAL, "out of memory while grouping nodes");
    join_neighbours(g, e, km, key, 0);
    return LP_OK;
}

/* regex:P — the first capture group over node names. A hostile pattern
 * ((a*)(a*)\1\2b) backtracks exponentially; PCRE2's match limit (steps of
 * its matcher) and depth limit (backtracking depth) bound every search. */
#define LP_REGEX_MATCH_LIMIT 1000000u
#define LP_REGEX_DEPTH_LIMIT 10000u

static lp_status keys_from_regex(lp_graph *g, const edges *e, lp_arena *a, const char *pattern,
                                 keymap *km, int *key, lp_diag *d) {
    int err;
    PCRE2_SIZE off;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, 0, &err, &off, NULL);
    if (!re) {
        PCRE2_UCHAR msg[256];
        if (pcre2_get_error_message(err, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", err);
        return lp_error(d, LP_ERR_USAGE, "--layers regex:%s: %s at offset %zu", pattern, (const char *)msg,
                        (size_t)off);
    }
    lp_status st = LP_OK;
    uint32_t groups = 0;
    pcre2_match_context *mc = pcre2_match_context_create(NULL);
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    if (!mc || !md || pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups) != 0) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory while compiling --layers regex:%s", pattern);
        goto done;
    }
    if (groups < 1) {
        st = lp_error(d, LP_ERR_USAGE, "--layers regex:%s: the pattern needs a capture group "
                      "(...) naming the layer", pattern);
        goto done;
    }
    pcre2_set_match_limit(mc, LP_REGEX_MATCH_LIMIT);
    pcre2_set_depth_limit(mc, LP_REGEX_DEPTH_LIMIT);
    int matched = 0;
    for (int i = 0; i < g->n_nodes && st == LP_OK; i++) {
        key[i] = KEY_NONE;
        const lp_node *n = &g->nodes[i];
        const char *name = n->name ? n->name : "";
        int rc = pcre2_match(re, (PCRE2_SPTR)name, strlen(name), 0, 0, md, mc);
        if (rc == PCRE2_ERROR_NOMATCH) continue;
        if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT) {
            st = lp_error(d, LP_ERR_USAGE, "--layers regex:%s: matching node %d '%s' (%s) hit the regex %s "
                          "limit: the pattern backtracks too much; simplify it", pattern, n->file_index,
                          name, n->op_type, rc == PCRE2_ERROR_MATCHLIMIT ? "match" : "depth");
            break;
        }
        if (rc < 0) {
            PCRE2_UCHAR msg[256];
            if (pcre2_get_error_message(rc, msg, sizeof msg) < 0) snprintf((char *)msg, sizeof msg, "error %d", rc);
            st = lp_error(d, LP_ERR_USAGE, "--layers regex:%s: matching node %d '%s' (%s): %s", pattern,
                          n->file_index, name, n->op_type, (const char *)msg);
            break;
        }
        matched++;
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
        if (rc < 2 || ov[2] == PCRE2_UNSET) continue; /* group 1 did not take part */
        char *cap = lp_arena_strndup(a, name + ov[2], (size_t)(ov[3] - ov[2]));
        if (!cap || (key[i] = keymap_get(km, a, cap, km->n)) < 0)
            st = lp_error(d, LP_ERR_INTERNAL, "out of memory while grouping nodes");
    }
    if (st == LP_OK && km->n == 0)
        st = lp_error(d, LP_ERR_USAGE, "--layers regex:%s %s of the %d node names", pattern,
                      matched ? "captures nothing (group 1 is unset) in any" : "matches none", g->n_nodes);
    if (st == LP_OK) join_neighbours(g, e, km, key, 0);
done:
    pcre2_match_data_free(md);
    pcre2_match_context_free(mc);
    pcre2_code_free(re);
    return st;
}

/* auto without module paths: cut at the points where the dataflow narrows
 * to one value (the articulation points of the node order), as between
 * residual blocks.
 *
 * Stream values: made from a float graph input or a float weight with two
 * or more dims above 1 (a matrix, a kernel), through any nodes; integer tensors of rank 0
 * or 1 (shape data) are never stream values. Side values (attention masks,
 * rotary tables, position ids: made from integer inputs and vectors only)
 * may cross any cut. A narrow point is a position i (cut after node i)
 * that exactly one stream value crosses, made at or before i and read
 * after it. Between two adjacent narrow points lies either a link (no
 * position in between that two or more stream values cross: a chain step)
 * or a region (a branching piece: a residual block, an attention).
 *
 * Runs of narrow points joined by links whose crossing bytes are equal form
 * plateaus (conv -> relu -> relu keeps the bytes). The last point of a
 * plateau is a cut when a region lies on either side of the plateau, or
 * when both its neighbours in the chain carry more bytes (a chain of layers
 * without residual, as an inverted-residual block with a stride, is cut
 * where its activations are smallest). The graph's ends count as smaller
 * than any point, except that a plateau reaching the graph's end after a
 * region is cut at its first point when it has two or more (the final norm
 * stays with the head), and not at all when it has one (the last link joins
 * the region before it).
 *
 * Then blocks made of several such pieces (a transformer's attention and
 * MLP halves) are found as a repetition: the longest stretch of pieces of
 * period p >= 2 (pieces equal in their stream nodes' op types and weight
 * shapes) is merged p pieces at a time, and then, as with module paths,
 * the pieces before it form one layer (embed) and those after it another
 * (head). */

static bool is_shape_data(const lp_value *v);

typedef struct cut_scan {
    int n;
    unsigned char *stream; /* [n_values] */
    int32_t *count;        /* [n]: stream values crossing the cut after node i */
    int32_t *sources;      /* [n]: those of them made by sources */
    uint64_t *bytes;       /* [n]: their bytes */
    int32_t *point;        /* narrow points, ascending */
    int n_points;
    unsigned char *region; /* [n_points + 1]: piece k (before point k) branches */
    unsigned char *cut;    /* [n]: cut after node i */
} cut_scan;

/* A float weight with at least two dims above 1: a matrix or a kernel, not a
 * vector written as [1, 16, 1] (a rotary frequency table). */
static bool is_stream_weight(const lp_value *v) {
    if ((v->kind != LP_VALUE_WEIGHT && v->kind != LP_VALUE_CONSTANT) || !lp_dtype_is_float(v->dtype))
        return false;
    int wide = 0;
    for (int r = 0; r < v->shape.rank; r++)
        if (v->shape.dims[r].size > 1) wide++;
    return wide >= 2;
}

static void cut_scan_free(cut_scan *c) {
    free(c->stream);
    free(c->count);
    free(c->sources);
    free(c->bytes);
    free(c->point);
    free(c->region);
    free(c->cut);
}

/* Stream flags, crossing counts and bytes, narrow points and pieces. */
static bool cut_scan_build(const lp_graph *g, const edges *e, const uint64_t *vbytes, cut_scan *c) {
    int n = g->n_nodes;
    c->n = n;
    c->stream = calloc((size_t)g->n_values + 1, 1);
    c->count = calloc((size_t)n + 1, sizeof *c->count);
    c->sources = calloc((size_t)n + 1, sizeof *c->sources);
    c->bytes = calloc((size_t)n + 1, sizeof *c->bytes);
    c->point = malloc(((size_t)n + 1) * sizeof *c->point);
    c->region = calloc((size_t)n + 2, 1);
    c->cut = calloc((size_t)n + 1, 1);
    if (!c->stream || !c->count || !c->sources || !c->bytes || !c->point || !c->region || !c->cut) return false;
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        if (val->kind == LP_VALUE_INPUT && lp_dtype_is_float(val->dtype)) c->stream[v] = 1;
    }
    /* stream[v]: 1, or 2 when made by a source (a node whose only stream
     * inputs are weights: an embedding lookup) */
    for (int i = 0; i < n; i++) {
        const lp_node *nd = &g->nodes[i];
        bool s = false, fed = false;
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0) continue;
            if (c->stream[v]) s = fed = true;
            else if (is_stream_weight(&g->values[v])) s = true;
        }
        for (int k = 0; k < nd->n_outputs && s; k++) {
            int32_t v = nd->outputs[k];
            if (v >= 0 && !is_shape_data(&g->values[v])) c->stream[v] = fed ? 1 : 2;
        }
    }
    /* difference arrays over cut positions: value live across cuts [from, to);
     * bytes unsigned (modular) so values of up to 2^64 bytes add safely */
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        if (!c->stream[v] || !lp_value_in_arena(val) || e->start[v] == e->start[v + 1]) continue;
        int from = val->kind == LP_VALUE_INPUT ? 0 : val->producer;
        /* a source's value counts from just before its first reader (the
         * order could have made it there, so it narrows nothing before),
         * and only toward narrowness: sources joining the stream (position
         * embeddings added) make no branch */
        if (c->stream[v] == 2 && e->node[e->start[v]] - 1 > from) from = e->node[e->start[v]] - 1;
        int to = e->node[e->start[v + 1] - 1];
        if (from < 0 || to <= from) continue;
        int32_t *cnt = c->stream[v] == 2 ? c->sources : c->count;
        cnt[from]++;
        cnt[to]--;
        c->bytes[from] += vbytes[v];
        c->bytes[to] -= vbytes[v];
    }
    for (int i = 1; i < n; i++) {
        c->count[i] += c->count[i - 1];
        c->sources[i] += c->sources[i - 1];
        c->bytes[i] += c->bytes[i - 1];
    }
    /* piece k runs from point k-1 (or the start) to point k (or the end) */
    c->n_points = 0;
    bool branched = false;
    for (int i = 0; i + 1 < n; i++) {
        if (c->count[i] + c->sources[i] == 1) {
            c->region[c->n_points] = branched;
            c->point[c->n_points++] = i;
            branched = false;
        } else if (c->count[i] >= 2) {
            branched = true;
        }
    }
    c->region[c->n_points] = branched;
    return true;
}

/* Sets c->cut at the narrow points chosen by the plateau rules above. */
static void cut_scan_choose(cut_scan *c) {
    int np = c->n_points;
    for (int u = 0; u < np;) {
        /* the plateau u..w: points joined by links, with equal bytes */
        int w = u;
        while (w + 1 < np && !c->region[w + 1] && c->bytes[c->point[w + 1]] == c->bytes[c->point[u]])
            w++;
        uint64_t b = c->bytes[c->point[u]];
        bool left_region = c->region[u], right_region = c->region[w + 1];
        bool at_end = w + 1 == np;
        bool left_more = !left_region && u > 0 && c->bytes[c->point[u - 1]] > b;
        bool right_more = !right_region && !at_end && c->bytes[c->point[w + 1]] > b;
        if (left_region && at_end && !right_region) {
            c->cut[c->point[u]] = 1;
        }
        else if (left_region || right_region || (left_more && right_more))
            c->cut[c->point[w]] = 1;
        u = w + 1;
    }
}

/* Signature of nodes first..last: op types and weight shapes of the nodes
 * that make stream values. */
static uint64_t piece_signature(const lp_graph *g, const cut_scan *c, int first, int last) {
    uint64_t h = 1469598103934665603ull;
    for (int i = first; i <= last; i++) {
        const lp_node *nd = &g->nodes[i];
        bool s = false;
        for (int k = 0; k < nd->n_outputs; k++)
            if (nd->outputs[k] >= 0 && c->stream[nd->outputs[k]]) s = true;
        if (!s) continue;
        h = (h ^ hash_str(nd->op_type)) * 1099511628211ull;
        for (int k = 0; k < nd->n_inputs; k++) {
            const lp_value *v = nd->inputs[k] >= 0 ? &g->values[nd->inputs[k]] : NULL;
            if (!v || (v->kind != LP_VALUE_WEIGHT && v->kind != LP_VALUE_CONSTANT) || is_shape_data(v))
                continue;
            h = (h ^ (uint64_t)(k + 1)) * 1099511628211ull;
            for (int r = 0; r < v->shape.rank; r++)
                h = (h ^ (uint64_t)v->shape.dims[r].size) * 1099511628211ull;
        }
    }
    return h;
}

/* Longest repetition of period p >= 2 over the pieces' signatures: *start,
 * *period and *groups (0 when none covers two periods). */
#define LP_CUT_PERIOD_MAX 8

static void find_repetition(const uint64_t *sig, int m, int *start, int *period, int *groups) {
    *groups = 0;
    int best = 0;
    for (int p = 2; p <= LP_CUT_PERIOD_MAX && 2 * p <= m; p++) {
        for (int j0 = 0; j0 + 2 * p <= m; j0++) {
            /* a unit that repeats a shorter one belongs to a smaller period */
            bool smaller = false;
            for (int d = 1; d < p && !smaller; d++) {
                if (p % d) continue;
                bool rep = true;
                for (int k = d; k < p && rep; k++) rep = sig[j0 + k] == sig[j0 + k - d];
                smaller = rep;
            }
            if (smaller) continue;
            int t = 0;
            while (j0 + t + p < m && sig[j0 + t] == sig[j0 + t + p]) t++;
            int r = (t + p) / p;
            if (r >= 2 && r * p > best) {
                best = r * p;
                *start = j0;
                *period = p;
                *groups = r;
            }
        }
    }
}

static lp_status keys_from_cuts(lp_graph *g, const edges *e, const uint64_t *vbytes, lp_arena *a,
                                keymap *km, int *key, lp_diag *d) {
    int n = g->n_nodes;
    cut_scan c = {0};
    int *piece_end = NULL;
    uint64_t *sig = NULL;
    unsigned char *merge = NULL;
    lp_status st = LP_OK;
    if (!cut_scan_build(g, e, vbytes, &c)) goto oom;
    cut_scan_choose(&c);
    /* pieces: ends at the cuts, and at the last node */
    int m = 0;
    piece_end = malloc(((size_t)n + 1) * sizeof *piece_end);
    sig = malloc(((size_t)n + 1) * sizeof *sig);
    merge = calloc((size_t)n + 1, 1); /* merge[j]: piece j joins piece j+1 */
    if (!piece_end || !sig || !merge) goto oom;
    for (int i = 0; i < n; i++)
        if (c.cut[i] || i == n - 1) piece_end[m++] = i;
    for (int j = 0; j < m; j++) sig[j] = piece_signature(g, &c, j ? piece_end[j - 1] + 1 : 0, piece_end[j]);
    int start = 0, period = 0, groups = 0;
    find_repetition(sig, m, &start, &period, &groups);
    for (int r = 0; r < groups; r++)
        for (int k = 0; k + 1 < period; k++) merge[start + r * period + k] = 1;
    /* around repeated blocks, as with module paths: one embed before the
     * first, one head after the last */
    if (groups > 0) {
        for (int j = 0; j + 1 < start; j++) merge[j] = 1;
        for (int j = start + groups * period; j + 1 < m; j++) merge[j] = 1;
    }
    int cur = 0, j = 0;
    char name[32];
    snprintf(name, sizeof name, "part.%d", cur);
    int k = keymap_get(km, a, name, cur);
    for (int i = 0; i < n && k >= 0; i++) {
        key[i] = k;
        if (j < m && i == piece_end[j]) {
            if (!merge[j] && i + 1 < n) {
                snprintf(name, sizeof name, "part.%d", ++cur);
                k = keymap_get(km, a, name, cur);
            }
            j++;
        }
    }
    if (k < 0) goto oom;
    goto done;
oom:
    st = lp_error(d, LP_ERR_INTERNAL, "out of memory while cutting %d nodes into layers", n);
done:
    cut_scan_free(&c);
    free(piece_end);
    free(sig);
    free(merge);
    return st;
}

/* auto on a graph with module paths but no numbered block: cut after node i
 * where the bytes crossing the cut are within 1% of the smallest crossing seen over the graph (the
 * residual stream between blocks), and only once the piece since the last
 * cut reads a weight. Crossing bytes: activations made at or before i and
 * read after i, graph inputs still to be read included. */
static lp_status keys_from_bytes(lp_graph *g, const edges *e, const uint64_t *vbytes, lp_arena *a,
                                keymap *km, int *key, lp_diag *d) {
    int n = g->n_nodes;
    uint64_t *cross = calloc((size_t)n + 1, sizeof *cross);
    if (!cross) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    /* difference array over cut positions: value live across cuts [from, to);
     * unsigned (modular) so values of up to 2^64 bytes add without overflow */
    uint64_t *diff = calloc((size_t)n + 1, sizeof *diff);
    if (!diff) {
        free(cross);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        if (!lp_value_in_arena(val) || e->start[v] == e->start[v + 1]) continue;
        int from = val->kind == LP_VALUE_INPUT ? 0 : val->producer;
        int to = e->node[e->start[v + 1] - 1];
        if (from < 0 || to <= from) continue;
        diff[from] += vbytes[v];
        diff[to] -= vbytes[v];
    }
    uint64_t run = 0;
    uint64_t least = UINT64_MAX;
    for (int i = 0; i + 1 < n; i++) {
        run += diff[i];
        cross[i] = run;
        if (cross[i] < least) least = cross[i];
    }
    int cur = 0;
    char name[32];
    snprintf(name, sizeof name, "part.%d", cur);
    int k = keymap_get(km, a, name, cur);
    bool has_weight = false;
    for (int i = 0; i < n && k >= 0; i++) {
        key[i] = k;
        for (int j = 0; j < g->nodes[i].n_inputs; j++) {
            int32_t v = g->nodes[i].inputs[j];
            if (v >= 0 && g->values[v].kind == LP_VALUE_WEIGHT) has_weight = true;
        }
        if (i + 1 < n && has_weight && cross[i] <= least + least / 100) {
            snprintf(name, sizeof name, "part.%d", ++cur);
            k = keymap_get(km, a, name, cur);
            has_weight = false;
        }
    }
    free(cross);
    free(diff);
    return k < 0 ? lp_error(d, LP_ERR_INTERNAL, "out of memory") : LP_OK;
}

/* ---- reordering ------------------------------------------------------------- */

/* Topological re-sort of g->nodes by (rank of key, old index), so each
 * layer's nodes come together; permutes key[] alongside. *moved: whether
 * the order changed. When the nodes are in topological order already and
 * the ranks never fall along it, that order is the result (the sort emits
 * the least available (rank, index) each time, and node i is available
 * once 0..i-1 are out), so the sort is skipped. */
static lp_status reorder_by_rank(lp_graph *g, const keymap *km, int *key, bool *moved, lp_diag *d) {
    int n = g->n_nodes;
    *moved = false;
    bool sorted = true;
    for (int i = 0; i < n && sorted; i++) {
        if (i > 0 && km->rank[key[i]] < km->rank[key[i - 1]]) sorted = false;
        for (int k = 0; k < g->nodes[i].n_inputs && sorted; k++) {
            int32_t v = g->nodes[i].inputs[k];
            if (v >= 0 && g->values[v].producer >= i) sorted = false;
        }
    }
    if (sorted) return LP_OK;
    int32_t *prio = malloc((size_t)n * sizeof *prio);
    int32_t *order = malloc((size_t)n * sizeof *order);
    int *newkey = malloc((size_t)n * sizeof *newkey);
    lp_status st = LP_OK;
    if (!prio || !order || !newkey) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory while ordering %d nodes", n);
        goto done;
    }
    for (int i = 0; i < n; i++) prio[i] = km->rank[key[i]];
    st = lp_graph_sort_by(g, prio, order, d);
    if (st != LP_OK) goto done;
    for (int i = 0; i < n; i++) {
        newkey[i] = key[order[i]];
        if (order[i] != i) *moved = true;
    }
    memcpy(key, newkey, (size_t)n * sizeof *key);
done:
    free(prio);
    free(order);
    free(newkey);
    return st;
}

/* ---- value sizes and the index ------------------------------------------------ */

lp_dtype lp_analysis_value_dtype(const lp_layer_ir *L, const lp_value *v) {
    return L->deploy_dtype != LP_DT_UNDEFINED && lp_dtype_is_float(v->dtype) ? L->deploy_dtype : v->dtype;
}

bool lp_analysis_value_bytes(const lp_layer_ir *L, int32_t v, uint64_t *bytes) {
    if (v < 0 || v >= L->g->n_values) return false;
    if (L->index && L->index->vbytes) {
        *bytes = L->index->vbytes[v];
        return *bytes != LP_BYTES_UNKNOWN;
    }
    const lp_value *val = &L->g->values[v];
    uint64_t numel;
    return lp_shape_numel(&val->shape, &numel) &&
           lp_dtype_storage_bytes(lp_analysis_value_dtype(L, val), numel, bytes);
}

uint32_t lp_layer_index_next_epoch(struct lp_layer_index *ix, int n_values) {
    if (++ix->epoch == 0) {
        memset(ix->stamp, 0, (size_t)n_values * sizeof *ix->stamp);
        ix->epoch = 1;
    }
    return ix->epoch;
}

/* Consumer lists and last uses in the current node order (replacing any
 * made for an earlier order). */
static bool index_edges(lp_layer_ir *L) {
    const lp_graph *g = L->g;
    struct lp_layer_index *ix = L->index;
    edges e;
    free(ix->cons_start);
    free(ix->cons);
    ix->cons_start = NULL;
    ix->cons = NULL;
    if (!edges_build(g, &e)) {
        edges_free(&e);
        return false;
    }
    ix->cons_start = e.start;
    ix->cons = e.node;
    for (int v = 0; v < g->n_values; v++)
        ix->last_use[v] = e.start[v] < e.start[v + 1] ? e.node[e.start[v + 1] - 1] : -1;
    return true;
}

static lp_status index_build(lp_layer_ir *L, lp_diag *d) {
    lp_graph *g = L->g;
    struct lp_layer_index *ix = calloc(1, sizeof *ix);
    if (!ix) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    size_t nv = (size_t)g->n_values;
    ix->last_use = malloc((nv ? nv : 1) * sizeof *ix->last_use);
    ix->vbytes = malloc((nv ? nv : 1) * sizeof *ix->vbytes);
    ix->stamp = calloc(nv ? nv : 1, sizeof *ix->stamp);
    size_t n_items = 0;
    for (int i = 0; i < g->n_nodes; i++)
        n_items += (size_t)g->nodes[i].n_inputs + (size_t)g->nodes[i].n_outputs;
    ix->items = malloc((n_items ? n_items : 1) * sizeof *ix->items);
    ix->items_cap = (int)n_items;
    /* sizes do not depend on the node order: computed here once, before
     * vbytes is published (lp_analysis_value_bytes takes the shape path) */
    L->index = NULL;
    if (ix->vbytes)
        for (int v = 0; v < g->n_values; v++) {
            uint64_t b;
            ix->vbytes[v] = lp_analysis_value_bytes(L, v, &b) ? b : LP_BYTES_UNKNOWN;
        }
    L->index = ix;
    if (!ix->last_use || !ix->vbytes || !ix->stamp || !ix->items || !index_edges(L))
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    return LP_OK;
}

/* Why a value's size is unknown: no shape, no dtype, unbound symbols, or
 * numbers whose element or byte count does not fit 64 bits. */
static const char *unknown_size_reason(const lp_value *v) {
    if (v->shape.rank < 0) return "no shape";
    if (!v->dtype) return "no dtype";
    for (int k = 0; k < v->shape.rank; k++)
        if (v->shape.dims[k].size < 0) return "symbolic dims";
    return "its byte count overflows 64 bits";
}

/* Byte counts are 64-bit: a model whose tensors add up to more than this is
 * refused, so no footprint (a sum of at most a few such totals) can wrap. */
#define LP_MODEL_BYTES_MAX ((uint64_t)1 << 60)

/* Every activation a node reads or writes needs a known size, and all
 * tensors together must stay below LP_MODEL_BYTES_MAX. */
static lp_status check_sizes(const lp_layer_ir *L, lp_diag *d) {
    const lp_graph *g = L->g;
    uint64_t sum = 0;
    for (int v = 0; v < g->n_values; v++) {
        uint64_t b = L->index->vbytes[v];
        if (b == LP_BYTES_UNKNOWN) continue;
        sum = sum + b < sum ? UINT64_MAX : sum + b;
    }
    if (sum > LP_MODEL_BYTES_MAX) {
        char buf[32];
        return lp_error(d, LP_ERR_UNSUPPORTED,
                        "the model's tensors add up to %s, beyond the 1 EiB that 64-bit byte counts "
                        "of its footprints allow (bind smaller dims)",
                        sum == UINT64_MAX ? "more than 16 EiB" : lp_format_bytes(sum, buf));
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        for (int pass = 0; pass < 2; pass++) {
            int cnt = pass ? n->n_outputs : n->n_inputs;
            const int32_t *vs = pass ? n->outputs : n->inputs;
            for (int k = 0; k < cnt; k++) {
                if (vs[k] < 0 || L->index->vbytes[vs[k]] != LP_BYTES_UNKNOWN) continue;
                const lp_value *v = &g->values[vs[k]];
                const char *why = unknown_size_reason(v);
                if (strcmp(why, "symbolic dims") != 0)
                    return lp_node_error(d, LP_ERR_UNSUPPORTED, n, "size of %s '%s' is unknown (%s)",
                                         pass ? "output" : "input", v->name, why);
                return lp_node_error(d, LP_ERR_UNSUPPORTED, n,
                                     "size of %s '%s' is unknown (%s); bind its dims with "
                                     "--dim NAME=N or --shapes",
                                     pass ? "output" : "input", v->name, why);
            }
        }
    }
    return LP_OK;
}

/* ---- layers from keys ------------------------------------------------------------ */

static lp_status layers_from_runs(lp_layer_ir *L, const keymap *km, const int *key, lp_diag *d) {
    lp_graph *g = L->g;
    int n = g->n_nodes, n_layers = 0;
    for (int i = 0; i < n; i++)
        if (i == 0 || key[i] != key[i - 1]) n_layers++;
    L->layers = lp_arena_array(L->arena, (size_t)(n_layers ? n_layers : 1), sizeof *L->layers);
    L->layer_of_node = lp_arena_array(L->arena, (size_t)(n ? n : 1), sizeof *L->layer_of_node);
    int *seen = calloc((size_t)(km->n ? km->n : 1), sizeof *seen);
    if (!L->layers || !L->layer_of_node || !seen) {
        free(seen);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    int j = -1;
    for (int i = 0; i < n; i++) {
        if (i == 0 || key[i] != key[i - 1]) {
            lp_layer *l = &L->layers[++j];
            int times = ++seen[key[i]];
            l->name = times == 1 ? km->name[key[i]]
                                 : lp_arena_printf(L->arena, "%s#%d", km->name[key[i]], times);
            if (!l->name) {
                free(seen);
                return lp_error(d, LP_ERR_INTERNAL, "out of memory");
            }
            l->first_node = i;
        }
        L->layers[j].last_node = i;
        L->layer_of_node[i] = j;
    }
    free(seen);
    L->n_layers = n_layers;
    return LP_OK;
}

/* Adds v to a growing list unless stamped with `mark` already. */
static bool list_add(lp_arena *a, int32_t **list, int *n, int *cap, int32_t v, uint32_t *stamp,
                     uint32_t mark) {
    if (stamp[v] == mark) return true;
    stamp[v] = mark;
    if (*n == *cap) {
        int nc = *cap ? 2 * *cap : 8;
        int32_t *nl = lp_arena_array(a, (size_t)nc, sizeof *nl);
        if (!nl) return false;
        if (*n) memcpy(nl, *list, (size_t)*n * sizeof *nl);
        *list = nl;
        *cap = nc;
    }
    (*list)[(*n)++] = v;
    return true;
}

/* Integer tensors of rank 0 or 1 are shape and index data (axes, target
 * shapes, gather indices): compile-time constants of the program, not
 * weights. Integer matrices (quantized weights) are weights. */
static bool is_shape_data(const lp_value *v) {
    return !lp_dtype_is_float(v->dtype) && v->shape.rank >= 0 && v->shape.rank <= 1;
}

/* Gathers read only the rows they pick from their data input (an embedding
 * table): as many bytes as they write. */
static bool reads_rows_only(const lp_node *n) {
    return !n->domain[0] && n->n_outputs >= 1 && lp_op_reads_of(lp_node_op(n)) == LP_READS_ROWS;
}

static uint64_t gathered_bytes(const struct lp_layer_index *ix, const lp_node *n) {
    int32_t out = n->outputs[0];
    return out >= 0 && ix->vbytes[out] != LP_BYTES_UNKNOWN ? ix->vbytes[out] : 0;
}

/* Weights, inputs and outputs of each layer, and its per-layer sums. */
static lp_status layer_lists(lp_layer_ir *L, lp_diag *d) {
    const lp_graph *g = L->g;
    struct lp_layer_index *ix = L->index;
    for (int j = 0; j < L->n_layers; j++) {
        lp_layer *l = &L->layers[j];
        int wcap = 0, icap = 0, ocap = 0;
        uint32_t mark = lp_layer_index_next_epoch(ix, g->n_values);
        for (int i = l->first_node; i <= l->last_node; i++) {
            const lp_node *n = &g->nodes[i];
            for (int k = 0; k < n->n_inputs; k++) {
                int32_t v = n->inputs[k];
                if (v < 0) continue;
                const lp_value *val = &g->values[v];
                uint64_t b = ix->vbytes[v] == LP_BYTES_UNKNOWN ? 0 : ix->vbytes[v];
                l->bytes_read += k == 0 && reads_rows_only(n) ? gathered_bytes(ix, n) : b;
                bool ok = true;
                if (val->kind == LP_VALUE_WEIGHT || val->kind == LP_VALUE_CONSTANT) {
                    if (is_shape_data(val)) continue;
                    if (ix->stamp[v] != mark) l->weight_bytes += b;
                    ok = list_add(L->arena, &l->weights, &l->n_weights, &wcap, v, ix->stamp, mark);
                } else if (val->kind == LP_VALUE_INPUT || val->producer < l->first_node) {
                    ok = list_add(L->arena, &l->inputs, &l->n_inputs, &icap, v, ix->stamp, mark);
                }
                if (!ok) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
            }
            for (int k = 0; k < n->n_outputs; k++) {
                int32_t v = n->outputs[k];
                if (v < 0) continue;
                uint64_t b = ix->vbytes[v];
                l->bytes_written += b;
                l->activation_sum_bytes += b;
                if ((g->values[v].is_graph_output || ix->last_use[v] > l->last_node) &&
                    !list_add(L->arena, &l->outputs, &l->n_outputs, &ocap, v, ix->stamp, mark))
                    return lp_error(d, LP_ERR_INTERNAL, "out of memory");
            }
            l->flops = l->flops + L->node_flops[i] < l->flops ? UINT64_MAX : l->flops + L->node_flops[i];
            if (L->node_buffer_bytes[i] > l->buffer_bytes) l->buffer_bytes = L->node_buffer_bytes[i];
        }
        L->activation_sum_bytes += l->activation_sum_bytes;
        lp_footprint fp;
        lp_analysis_range_footprint(L, j, j, &fp);
        if (fp.total == UINT64_MAX) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        l->activation_bytes = fp.activation_bytes;
        l->input_bytes = fp.received_bytes;
        l->output_bytes = fp.sent_bytes;
        assert(fp.weight_bytes == l->weight_bytes && fp.buffer_bytes == l->buffer_bytes);
        l->total_bytes = fp.total;
    }
    return LP_OK;
}

/* The whole model on one card: graph inputs live from the start, graph
 * outputs to the end. */
static lp_status plan_whole(lp_layer_ir *L, lp_diag *d) {
    const lp_graph *g = L->g;
    const struct lp_layer_index *ix = L->index;
    int n = g->n_nodes, count = 0;
    for (int v = 0; v < g->n_values; v++) {
        const lp_value *val = &g->values[v];
        if (!lp_value_in_arena(val) || ix->vbytes[v] == LP_BYTES_UNKNOWN) continue;
        if (val->kind == LP_VALUE_ACTIVATION && val->producer < 0) continue;
        count++;
    }
    L->slots = lp_arena_array(L->arena, (size_t)(count ? count : 1), sizeof *L->slots);
    lp_memplan_item *items = malloc((size_t)(count ? count : 1) * sizeof *items);
    if (!L->slots || !items) {
        free(items);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    int k = 0;
    /* graph inputs first, so they are placed first at step 0 */
    for (int pass = 0; pass < 2; pass++)
        for (int v = 0; v < g->n_values; v++) {
            const lp_value *val = &g->values[v];
            if (!lp_value_in_arena(val) || ix->vbytes[v] == LP_BYTES_UNKNOWN) continue;
            if ((val->kind == LP_VALUE_INPUT) != (pass == 0)) continue;
            if (val->kind == LP_VALUE_ACTIVATION && val->producer < 0) continue;
            int first = val->kind == LP_VALUE_INPUT ? 0 : val->producer;
            int last = val->is_graph_output ? n - 1 : ix->last_use[v] < first ? first : ix->last_use[v];
            if (n == 0) first = last = 0;
            items[k] = (lp_memplan_item){.bytes = ix->vbytes[v], .first = first, .last = last};
            L->slots[k] = (lp_value_slot){.value = v, .bytes = ix->vbytes[v], .first_node = first,
                                          .last_node = last};
            k++;
        }
    lp_status st = lp_memplan_run(items, count, n ? n : 1, LP_MEMPLAN_ALIGN, &L->arena_bytes);
    for (int i = 0; i < count && st == LP_OK; i++) L->slots[i].offset = items[i].offset;
    free(items);
    L->n_slots = count;
    return st == LP_OK ? LP_OK : lp_error(d, st, "out of memory while planning activations");
}

/* ---- entry points -------------------------------------------------------------- */

/* Keys for every node, then the node order that makes each layer one run;
 * *moved: whether that order differs from the old one. */
static lp_status assign_keys(lp_layer_ir *L, const lp_analysis_options *opt, keymap *km, int *key,
                             bool *moved, lp_diag *d) {
    lp_graph *g = L->g;
    /* the index's consumer lists are those of the current order */
    edges e = {L->index->cons_start, L->index->cons};
    lp_status st = LP_OK;
    *moved = false;
    switch (opt->layering) {
    case LP_LAYERS_NODE:
        /* named after the node; a repeated name gets "@index" to stay apart */
        for (int i = 0; i < g->n_nodes && st == LP_OK; i++) {
            const char *nm = g->nodes[i].name && g->nodes[i].name[0]
                                 ? g->nodes[i].name
                                 : lp_arena_printf(L->arena, "node.%d", i);
            int before = km->n;
            key[i] = nm ? keymap_get(km, L->arena, nm, i) : -1;
            if (key[i] >= 0 && km->n == before) {
                const char *alt = lp_arena_printf(L->arena, "%s@%d", nm, i);
                key[i] = alt ? keymap_get(km, L->arena, alt, i) : -1;
            }
            if (key[i] < 0) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        }
        break;
    case LP_LAYERS_SCOPE:
        if (opt->scope_depth < 1) {
            st = lp_error(d, LP_ERR_USAGE, "--layers scope:%d: depth must be at least 1",
                          opt->scope_depth);
            break;
        }
        st = keys_from_scope(g, &e, L->arena, opt->scope_depth, km, key, d);
        break;
    case LP_LAYERS_REGEX:
        st = keys_from_regex(g, &e, L->arena, opt->regex ? opt->regex : "", km, key, d);
        break;
    case LP_LAYERS_AUTO: {
        bool found = false, scoped = false;
        st = keys_from_blocks(g, &e, L->arena, km, key, &found, &scoped, d);
        if (st == LP_OK && !found && scoped)
            st = keys_from_bytes(g, &e, L->index->vbytes, L->arena, km, key, d);
        else if (st == LP_OK && !found) {
            st = keys_from_cuts(g, &e, L->index->vbytes, L->arena, km, key, d);
            /* no narrow point cut it (a chain of equal steps, a float input
             * read by every block): the bytes rule */
            if (st == LP_OK && km->n == 1) {
                keymap_free(km);
                *km = (keymap){0};
                st = keys_from_bytes(g, &e, L->index->vbytes, L->arena, km, key, d);
            }
        }
        break;
    }
    }
    if (st == LP_OK && opt->layering != LP_LAYERS_NODE && g->n_nodes > 0)
        st = reorder_by_rank(g, km, key, moved, d);
    return st;
}

static void index_free(struct lp_layer_index *ix) {
    if (!ix) return;
    free(ix->cons_start);
    free(ix->cons);
    free(ix->last_use);
    free(ix->vbytes);
    free(ix->stamp);
    free(ix->items);
    lp_range_cursor_free(ix->cursor);
    free(ix);
}

lp_status lp_analysis_build_layers(lp_graph *g, const lp_analysis_options *opt,
                                   lp_layer_ir **out, lp_diag *d) {
    *out = NULL;
    lp_analysis_options defaults = lp_analysis_defaults();
    if (!opt) opt = &defaults;
    lp_layer_ir *L = calloc(1, sizeof *L);
    if (!L) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    L->g = g;
    L->deploy_dtype = opt->deploy_dtype;
    L->arena = lp_arena_new();
    keymap km = {0};
    int *key = calloc((size_t)(g->n_nodes ? g->n_nodes : 1), sizeof *key);
    lp_workspace_model *ws = NULL;
    lp_status st = LP_OK;
    if (!L->arena || !key) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    if ((st = lp_workspace_load(opt->workspace_file, &ws, d)) != LP_OK) goto done;
    /* sizes first: the cut-based grouping needs them */
    if ((st = index_build(L, d)) != LP_OK) goto done;
    if ((st = check_sizes(L, d)) != LP_OK) goto done;
    bool moved;
    if ((st = assign_keys(L, opt, &km, key, &moved, d)) != LP_OK) goto done;
    /* a new order: consumers again (sizes stay) */
    if (moved && !index_edges(L)) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    if ((st = layers_from_runs(L, &km, key, d)) != LP_OK) goto done;
    size_t nn = (size_t)(g->n_nodes ? g->n_nodes : 1);
    L->node_flops = lp_arena_array(L->arena, nn, sizeof *L->node_flops);
    L->node_buffer_bytes = lp_arena_array(L->arena, nn, sizeof *L->node_buffer_bytes);
    if (!L->node_flops || !L->node_buffer_bytes) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
        goto done;
    }
    for (int i = 0; i < g->n_nodes; i++) {
        L->node_flops[i] = lp_analysis_node_flops(g, &g->nodes[i]);
        L->node_buffer_bytes[i] = lp_workspace_node_bytes(ws, L, &g->nodes[i]);
    }
    if ((st = layer_lists(L, d)) != LP_OK) goto done;
    st = plan_whole(L, d);
done:
    lp_workspace_free(ws);
    keymap_free(&km);
    free(key);
    if (st != LP_OK) {
        lp_layer_ir_free(L);
        return st;
    }
    *out = L;
    return LP_OK;
}

void lp_layer_ir_free(lp_layer_ir *L) {
    if (!L) return;
    index_free(L->index);
    lp_arena_free(L->arena);
    free(L);
}
