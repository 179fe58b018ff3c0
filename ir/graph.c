/* Graph construction helpers: the value-name map, attribute lookup,
 * topological order and node-located diagnostics. */
#include "lp_ir.h"

#include <assert.h>

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Open-addressing map from value name to index; grows at half load. Each
 * slot keeps the name's hash, so probing and growing compare integers and
 * touch a name only on a likely hit. */
typedef struct lp_name_slot {
    int32_t value; /* -1: empty */
    uint32_t hash;
} lp_name_slot;

typedef struct lp_name_map {
    size_t cap;
    size_t used;
    lp_name_slot *slots;
} lp_name_map;

/* Eight bytes a step (names share long prefixes such as "/model/layers.1"),
 * each word mixed by a multiply and a shift. */
static uint32_t hash_name_n(const char *s, size_t n) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ n, w;
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        memcpy(&w, s + i, 8);
        h = (h ^ w) * 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    w = 0;
    memcpy(&w, s + i, n - i);
    h = (h ^ w) * 0xc4ceb9fe1a85ec53ull;
    h ^= h >> 29;
    return (uint32_t)(h ^ h >> 32);
}

static uint32_t hash_name(const char *s) { return hash_name_n(s, strlen(s)); }

static bool map_grow(lp_graph *g) {
    lp_name_map *m = g->names;
    size_t cap = m->cap ? m->cap * 2 : 1024;
    lp_name_slot *slots = malloc(cap * sizeof *slots);
    if (!slots) return false;
    for (size_t j = 0; j < cap; j++) slots[j].value = -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (m->slots[i].value < 0) continue;
        size_t j = m->slots[i].hash & (cap - 1);
        while (slots[j].value >= 0) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return true;
}

/* The slot holding `name`, or the empty slot where it would go. */
static size_t map_probe(const lp_graph *g, const char *name, uint32_t hash) {
    const lp_name_map *m = g->names;
    size_t j = hash & (m->cap - 1);
    for (; m->slots[j].value >= 0; j = (j + 1) & (m->cap - 1))
        if (m->slots[j].hash == hash && strcmp(g->values[m->slots[j].value].name, name) == 0)
            break;
    return j;
}

lp_graph *lp_graph_new(const char *path) {
    lp_arena *a = lp_arena_new();
    if (!a) return NULL;
    lp_graph *g = lp_arena_alloc(a, sizeof *g);
    lp_name_map *m = calloc(1, sizeof *m);
    if (!g || !m) {
        free(m);
        lp_arena_free(a);
        return NULL;
    }
    g->arena = a;
    g->names = m;
    g->path = lp_arena_strdup(a, path ? path : "<memory>");
    const char *slash = path ? strrchr(path, '/') : NULL;
    g->dir = slash ? lp_arena_strndup(a, path, (size_t)(slash - path) + (slash == path))
                   : lp_arena_strdup(a, ".");
    g->name = g->producer_name = g->producer_version = "";
    return g;
}

lp_graph *lp_graph_new_body(lp_graph *owner) {
    lp_graph *b = lp_graph_new(owner->path);
    if (!b) return NULL;
    b->depth = owner->depth + 1;
    b->next_body = owner->bodies;
    owner->bodies = b;
    return b;
}

void lp_graph_free(lp_graph *g) {
    if (!g) return;
    /* bodies nest at most LP_MAX_BODY_DEPTH deep: the recursion is bounded */
    for (lp_graph *b = g->bodies, *next; b; b = next) {
        next = b->next_body;
        lp_graph_free(b);
    }
    if (g->file && g->file->fd >= 0) close(g->file->fd);
    if (g->names) free(g->names->slots);
    free(g->names);
    free(g->values);
    lp_arena_free(g->arena);
}

int32_t lp_graph_find_value(const lp_graph *g, const char *name) {
    if (!g->names->cap) return -1;
    return g->names->slots[map_probe(g, name, hash_name(name))].value;
}

/* g->values is the one array kept outside the arena, since it grows. */
static size_t values_cap(const lp_graph *g) {
    size_t cap = 64;
    while (cap < (size_t)g->n_values) cap *= 2;
    return cap;
}

int32_t lp_graph_intern_value(lp_graph *g, const char *name) {
    size_t len = strlen(name);
    uint32_t hash = hash_name_n(name, len);
    if (g->names->cap) {
        int32_t found = g->names->slots[map_probe(g, name, hash)].value;
        if (found >= 0) return found;
    }
    if (g->n_values == INT32_MAX) return -1;
    if ((g->names->used + 1) * 2 > g->names->cap && !map_grow(g)) return -1;
    if (g->n_values == 0 || (size_t)g->n_values == values_cap(g)) {
        size_t cap = g->n_values ? values_cap(g) * 2 : 64;
        lp_value *grown = realloc(g->values, cap * sizeof *grown);
        if (!grown) return -1;
        g->values = grown;
    }
    const char *copy = lp_arena_strndup(g->arena, name, len);
    if (!copy) return -1;
    int32_t idx = g->n_values++;
    lp_value *v = &g->values[idx];
    memset(v, 0, sizeof *v);
    v->name = copy;
    v->producer = -1;
    v->shape.rank = LP_RANK_UNKNOWN;
    size_t j = map_probe(g, copy, hash);
    g->names->slots[j] = (lp_name_slot){.value = idx, .hash = hash};
    g->names->used++;
    return idx;
}

/* ---- unknown input dims as written ----------------------------------------- */

static int written_cmp(const void *a, const void *b) {
    const lp_written_dim *x = a, *y = b;
    if (x->value != y->value) return x->value < y->value ? -1 : 1;
    return (x->axis > y->axis) - (x->axis < y->axis);
}

bool lp_graph_note_written_dim(lp_graph *g, int32_t value, int axis, const char *as) {
    if (g->n_written_dims == g->cap_written_dims) {
        /* arena arrays, doubled: the old one stays in the arena until the end */
        if (g->cap_written_dims > INT32_MAX / 2) return false;
        int cap = g->cap_written_dims ? 2 * g->cap_written_dims : 16;
        lp_written_dim *grown = lp_arena_array(g->arena, (size_t)cap, sizeof *grown);
        if (!grown) return false;
        if (g->n_written_dims)
            memcpy(grown, g->written_dims, (size_t)g->n_written_dims * sizeof *grown);
        g->written_dims = grown;
        g->cap_written_dims = cap;
    }
    lp_written_dim w = {.value = value, .axis = axis, .as = as};
    if (g->n_written_dims == 0) g->written_dims_sorted = true;
    else if (written_cmp(&g->written_dims[g->n_written_dims - 1], &w) >= 0)
        g->written_dims_sorted = false;
    g->written_dims[g->n_written_dims++] = w;
    return true;
}

const char *lp_graph_dim_written(lp_graph *g, int32_t value, int axis) {
    if (g->n_written_dims == 0) return NULL;
    if (!g->written_dims_sorted) {
        qsort(g->written_dims, (size_t)g->n_written_dims, sizeof *g->written_dims, written_cmp);
        g->written_dims_sorted = true;
    }
    lp_written_dim key = {.value = value, .axis = axis};
    const lp_written_dim *w = bsearch(&key, g->written_dims, (size_t)g->n_written_dims,
                                      sizeof key, written_cmp);
    return w ? w->as : NULL;
}

const lp_attr *lp_attrs_find(const lp_attr *attrs, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (attrs[i].name && strcmp(attrs[i].name, name) == 0) return &attrs[i];
    return NULL;
}

int64_t lp_attrs_int(const lp_attr *attrs, int n, const char *name, int64_t fallback) {
    const lp_attr *a = lp_attrs_find(attrs, n, name);
    return a && a->type == LP_ATTR_INT ? a->i : fallback;
}

float lp_attrs_float(const lp_attr *attrs, int n, const char *name, float fallback) {
    const lp_attr *a = lp_attrs_find(attrs, n, name);
    if (a && a->type == LP_ATTR_FLOAT) return a->f;
    if (a && a->type == LP_ATTR_INT) return (float)a->i;
    return fallback;
}

const char *lp_attrs_string(const lp_attr *attrs, int n, const char *name, const char *fallback) {
    const lp_attr *a = lp_attrs_find(attrs, n, name);
    return a && a->type == LP_ATTR_STRING && a->s ? a->s : fallback;
}

const lp_attr *lp_node_attr(const lp_node *n, const char *name) {
    return lp_attrs_find(n->attrs, n->n_attrs, name);
}

int64_t lp_node_attr_int(const lp_node *n, const char *name, int64_t fallback) {
    const lp_attr *a = lp_node_attr(n, name);
    return a && a->type == LP_ATTR_INT ? a->i : fallback;
}

float lp_node_attr_float(const lp_node *n, const char *name, float fallback) {
    const lp_attr *a = lp_node_attr(n, name);
    return a && a->type == LP_ATTR_FLOAT ? a->f : fallback;
}

const char *lp_node_attr_string(const lp_node *n, const char *name, const char *fallback) {
    const lp_attr *a = lp_node_attr(n, name);
    return a && a->type == LP_ATTR_STRING ? a->s : fallback;
}

/* The node metadata keys some stage reads: the module path torch.onnx
 * writes (layer detection, graph.json). */
static const char *const node_meta_keys[] = {"pkg.torch.onnx.name_scopes"};

bool lp_node_meta_key_read(const char *key, size_t len) {
    for (size_t i = 0; i < sizeof node_meta_keys / sizeof *node_meta_keys; i++)
        if (strlen(node_meta_keys[i]) == len && memcmp(node_meta_keys[i], key, len) == 0)
            return true;
    return false;
}

const char *lp_node_meta(const lp_node *n, const char *key) {
    assert(lp_node_meta_key_read(key, strlen(key))); /* else the loader dropped it */
    for (int i = 0; i < n->n_meta; i++)
        if (strcmp(n->meta[i].key, key) == 0) return n->meta[i].value;
    return NULL;
}

static void node_report(lp_diag *d, lp_severity sev, const lp_node *n, const char *fmt,
                        va_list ap) LP_PRINTF(4, 0);
static void node_report(lp_diag *d, lp_severity sev, const lp_node *n, const char *fmt,
                        va_list ap) {
    char msg[sizeof d->last_error];
    vsnprintf(msg, sizeof msg, fmt, ap);
    if (sev == LP_SEV_ERROR)
        lp_error(d, LP_ERR_INTERNAL, "node %d '%s' (%s): %s", (int)n->file_index, n->name,
                 n->op_type, msg);
    else
        lp_warn(d, "node %d '%s' (%s): %s", (int)n->file_index, n->name, n->op_type, msg);
}

lp_status lp_node_error(lp_diag *d, lp_status s, const lp_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    node_report(d, LP_SEV_ERROR, n, fmt, ap);
    va_end(ap);
    return s;
}

void lp_node_warn(lp_diag *d, const lp_node *n, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    node_report(d, LP_SEV_WARNING, n, fmt, ap);
    va_end(ap);
}

/* Binary min-heap of (priority << 32 | node index): ready nodes leave by
 * priority, then by their current position. */
typedef struct node_heap {
    int64_t *item;
    int n;
} node_heap;

static void heap_push(node_heap *h, int64_t x) {
    int c = h->n++;
    h->item[c] = x;
    for (; c > 0 && h->item[(c - 1) / 2] > h->item[c]; c = (c - 1) / 2) {
        int64_t t = h->item[c];
        h->item[c] = h->item[(c - 1) / 2];
        h->item[(c - 1) / 2] = t;
    }
}

static int64_t heap_pop(node_heap *h) {
    int64_t top = h->item[0];
    h->item[0] = h->item[--h->n];
    for (int c = 0;;) {
        int l = 2 * c + 1, r = l + 1, m = c;
        if (l < h->n && h->item[l] < h->item[m]) m = l;
        if (r < h->n && h->item[r] < h->item[m]) m = r;
        if (m == c) break;
        int64_t t = h->item[c];
        h->item[c] = h->item[m];
        h->item[m] = t;
        c = m;
    }
    return top;
}

/* Kahn's algorithm over producer -> consumer edges, choosing among ready
 * nodes by priority (then current position), so an already sorted graph
 * keeps its order when priority is NULL. */
lp_status lp_graph_sort_by(lp_graph *g, const int32_t *priority, int32_t *order_out,
                           lp_diag *d) {
    int n = g->n_nodes;
    if (n == 0) return LP_OK;
    lp_status st = LP_OK;
    int32_t *indeg = calloc((size_t)n, sizeof *indeg);
    node_heap heap = {malloc((size_t)n * sizeof *heap.item), 0};
    int32_t *order = malloc((size_t)n * sizeof *order);
    /* consumers as CSR: for each value, the nodes reading it */
    int32_t *cstart = calloc((size_t)g->n_values + 1, sizeof *cstart);
    size_t n_edges = 0;
    for (int i = 0; i < n; i++) n_edges += (size_t)g->nodes[i].n_inputs;
    int32_t *cnode = malloc((n_edges ? n_edges : 1) * sizeof *cnode);
    int32_t *fill = calloc((size_t)g->n_values + 1, sizeof *fill);
    lp_node *sorted = lp_arena_array(g->arena, (size_t)n, sizeof *sorted);
    if (!indeg || !heap.item || !order || !cstart || !cnode || !fill || !sorted) {
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory while ordering %d nodes", n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        const lp_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || g->values[v].producer < 0) continue;
            cstart[v + 1]++;
            indeg[i]++;
        }
    }
    for (int v = 0; v < g->n_values; v++) cstart[v + 1] += cstart[v];
    for (int i = 0; i < n; i++) {
        const lp_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v < 0 || g->values[v].producer < 0) continue;
            cnode[cstart[v] + fill[v]++] = i;
        }
    }
#define PRIO(i) ((int64_t)(priority ? priority[i] : 0) << 32 | (int64_t)(i))
    int done_n = 0;
    for (int i = 0; i < n; i++)
        if (indeg[i] == 0) heap_push(&heap, PRIO(i));
    while (heap.n > 0) {
        int32_t top = (int32_t)(heap_pop(&heap) & 0xffffffff);
        order[done_n++] = top;
        const lp_node *nd = &g->nodes[top];
        for (int k = 0; k < nd->n_outputs; k++) {
            int32_t v = nd->outputs[k];
            if (v < 0) continue;
            for (int32_t e = cstart[v]; e < cstart[v + 1]; e++)
                if (--indeg[cnode[e]] == 0) heap_push(&heap, PRIO(cnode[e]));
        }
    }
#undef PRIO
    if (done_n < n) {
        int first = -1, listed = 0;
        char names[600] = "";
        size_t len = 0;
        for (int i = 0; i < n && listed < 8; i++) {
            if (indeg[i] == 0) continue;
            if (first < 0) first = i;
            int w = snprintf(names + len, sizeof names - len, "%s%d '%s'", listed ? ", " : "",
                             (int)g->nodes[i].file_index, g->nodes[i].name);
            if (w < 0 || (size_t)w >= sizeof names - len) break;
            len += (size_t)w;
            listed++;
        }
        st = lp_node_error(d, LP_ERR_INVALID_MODEL, &g->nodes[first],
                           "the graph has a cycle: %d nodes wait on each other (nodes %s%s)",
                           n - done_n, names, n - done_n > listed ? ", ..." : "");
        goto done;
    }
    for (int i = 0; i < n; i++) sorted[i] = g->nodes[order[i]];
    g->nodes = sorted;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < sorted[i].n_outputs; k++)
            if (sorted[i].outputs[k] >= 0) g->values[sorted[i].outputs[k]].producer = i;
    if (order_out) memcpy(order_out, order, (size_t)n * sizeof *order);
done:
    free(indeg);
    free(heap.item);
    free(order);
    free(cstart);
    free(cnode);
    free(fill);
    return st;
}

/* Whether every node reads only values produced before it: the stable
 * order of such a graph is the one it has. */
static bool already_sorted(const lp_graph *g) {
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *nd = &g->nodes[i];
        for (int k = 0; k < nd->n_inputs; k++) {
            int32_t v = nd->inputs[k];
            if (v >= 0 && g->values[v].producer >= i) return false;
        }
    }
    return true;
}

lp_status lp_graph_sort(lp_graph *g, lp_diag *d) {
    if (already_sorted(g)) return LP_OK; /* most files list nodes in order */
    return lp_graph_sort_by(g, NULL, NULL, d);
}
