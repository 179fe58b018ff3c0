/* Binding symbolic dims (batch, sequence) to numbers given on the command line. */
#include "lp_ir.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

static int replace_dim(lp_graph *g, const char *name, int64_t value) {
    int count = 0;
    for (int i = 0; i < g->n_values; i++) {
        lp_shape *s = &g->values[i].shape;
        for (int k = 0; k < s->rank; k++) {
            if (s->dims[k].size < 0 && s->dims[k].sym && strcmp(s->dims[k].sym, name) == 0) {
                s->dims[k].size = value;
                count++;
            }
        }
    }
    /* control-flow bodies declare shapes in the same dims */
    for (lp_graph *b = g->bodies; b; b = b->next_body) count += replace_dim(b, name, value);
    return count;
}

/* A growing message text; `ok` turns false once out of memory. */
typedef struct text_buf {
    char *s;
    size_t len, cap;
    bool ok;
} text_buf;

static void text_add(text_buf *t, const char *fmt, ...) LP_PRINTF(2, 3);
static void text_add(text_buf *t, const char *fmt, ...) {
    if (!t->ok) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        t->ok = false;
        return;
    }
    if (t->len + (size_t)n + 1 > t->cap) {
        size_t cap = t->cap ? t->cap : 128;
        while (cap < t->len + (size_t)n + 1) cap *= 2;
        char *grown = realloc(t->s, cap);
        if (!grown) {
            t->ok = false;
            return;
        }
        t->s = grown;
        t->cap = cap;
    }
    va_start(ap, fmt);
    vsnprintf(t->s + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    t->len += (size_t)n;
}

/* "?" and -1 are not names: each marks an unknown of its own on one axis,
 * which only --shapes (fixing that input's axes) can bind. */
static lp_status refuse_unnamed(lp_graph *g, const char *name, int64_t value, lp_diag *d) {
    text_buf t = {.ok = true};
    int listed = 0;
    bool more = false;
    for (int i = 0; i < g->n_inputs && !more; i++) {
        int32_t vi = g->inputs[i];
        const lp_value *v = &g->values[vi];
        int count = 0;
        for (int k = 0; k < v->shape.rank; k++)
            if (v->shape.dims[k].size < 0 && lp_graph_dim_written(g, vi, k)) count++;
        if (count == 0) continue;
        if (listed == 8) {
            more = true; /* eight inputs say enough */
            break;
        }
        text_add(&t, "%sinput '%s' %s ", listed ? "; " : "", v->name, count == 1 ? "axis" : "axes");
        for (int k = 0, j = 0; k < v->shape.rank; k++)
            if (v->shape.dims[k].size < 0 && lp_graph_dim_written(g, vi, k))
                text_add(&t, "%s%d", j++ ? ", " : "", k);
        listed++;
    }
    lp_status st;
    if (!t.ok)
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    else
        st = lp_error(d, LP_ERR_USAGE,
                      "--dim %s=%" PRId64 ": '%s' is not a dim name: an axis written '?' or -1 is "
                      "an unknown of its own, bound only by its input's shape; give that with "
                      "--shapes INPUT:AxBx..%s%s%s",
                      name, value, name, listed ? " (unknown: " : "", listed ? t.s : "",
                      !listed ? "" : more ? "; ...)" : ")");
    free(t.s);
    return st;
}

lp_status lp_graph_bind_dim(lp_graph *g, const char *name, int64_t value, lp_diag *d) {
    if (strcmp(name, "?") == 0 || strcmp(name, "-1") == 0) return refuse_unnamed(g, name, value, d);
    if (value < 0)
        return lp_error(d, LP_ERR_USAGE, "--dim %s=%" PRId64 ": a dim must be >= 0", name, value);
    if (replace_dim(g, name, value) == 0)
        return lp_error(d, LP_ERR_USAGE,
                        "--dim %s=%" PRId64 ": no input or value of the model has a dim named '%s'",
                        name, value, name);
    return LP_OK;
}

lp_status lp_graph_bind_input_shape(lp_graph *g, const char *input, int rank,
                                    const int64_t *dims, lp_diag *d) {
    int32_t idx = lp_graph_find_value(g, input);
    if (idx < 0 || !g->values[idx].is_graph_input || g->values[idx].kind != LP_VALUE_INPUT)
        return lp_error(d, LP_ERR_USAGE, "--shapes: the model has no input named '%s'", input);
    lp_value *v = &g->values[idx];
    if (v->shape.rank >= 0 && v->shape.rank != rank)
        return lp_error(d, LP_ERR_USAGE, "--shapes: input '%s' has rank %d, the shape given has %d",
                        input, v->shape.rank, rank);
    /* check every axis before changing any, so a refused shape leaves the
     * graph as it was */
    for (int k = 0; k < rank; k++) {
        const lp_dim *dm = v->shape.rank == rank ? &v->shape.dims[k] : NULL;
        if (dims[k] < 0)
            return lp_error(d, LP_ERR_USAGE, "--shapes: input '%s' axis %d: a dim must be >= 0",
                            input, k);
        if (dm && dm->size >= 0 && dm->size != dims[k])
            return lp_error(d, LP_ERR_USAGE,
                            "--shapes: input '%s' axis %d is %" PRId64 " in the model, not %" PRId64,
                            input, k, dm->size, dims[k]);
        for (int j = 0; dm && dm->size < 0 && dm->sym && j < k; j++) {
            const lp_dim *dj = &v->shape.dims[j];
            if (dj->size < 0 && dj->sym && strcmp(dj->sym, dm->sym) == 0 && dims[j] != dims[k])
                return lp_error(d, LP_ERR_USAGE,
                                "--shapes: input '%s' axes %d and %d share the dim '%s', but are "
                                "given %" PRId64 " and %" PRId64, input, j, k, dm->sym, dims[j], dims[k]);
        }
    }
    if (v->shape.rank < 0) {
        v->shape.dims = lp_arena_array(g->arena, (size_t)(rank ? rank : 1), sizeof(lp_dim));
        if (!v->shape.dims) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        for (int k = 0; k < rank; k++) v->shape.dims[k].size = LP_DIM_UNKNOWN;
        v->shape.rank = rank;
    }
    for (int k = 0; k < rank; k++) {
        lp_dim *dm = &v->shape.dims[k];
        if (dm->size < 0 && dm->sym)
            replace_dim(g, dm->sym, dims[k]);
        dm->size = dims[k];
    }
    return LP_OK;
}

lp_status lp_graph_check_input_dims(lp_graph *g, int32_t value, lp_diag *d) {
    const lp_value *v = &g->values[value];
    int n_unknown = 0;
    for (int k = 0; k < v->shape.rank; k++)
        if (v->shape.dims[k].size < 0 && !v->shape.dims[k].sym) n_unknown++;
    if (n_unknown == 0) return LP_OK;
    /* "axes 1 (written '?') and 2 (written '?')", then the --shapes option
     * with letters where the model has no number */
    text_buf axes = {.ok = true}, opt = {.ok = true};
    int seen = 0;
    char letter = 'A';
    for (int k = 0; k < v->shape.rank; k++) {
        const lp_dim *dm = &v->shape.dims[k];
        if (dm->size >= 0) {
            text_add(&opt, "%s%" PRId64, k ? "x" : "", dm->size);
            continue;
        }
        text_add(&opt, "%s%c", k ? "x" : "", letter);
        if (letter < 'Z') letter++;
        if (dm->sym) continue;
        const char *as = lp_graph_dim_written(g, value, k);
        seen++;
        text_add(&axes, "%s%d (%s%s)", seen == 1 ? "" : seen == n_unknown ? " and " : ", ", k,
                 as ? "written " : "", as ? as : "left empty");
    }
    lp_status st;
    if (!axes.ok || !opt.ok)
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    else
        st = lp_error(d, LP_ERR_UNSUPPORTED,
                      "input '%s' %s %s %s no size; give the input's shape with --shapes %s:%s",
                      v->name, n_unknown == 1 ? "axis" : "axes", axes.s, n_unknown == 1 ? "has" : "have",
                      v->name, opt.s);
    free(axes.s);
    free(opt.s);
    return st;
}

lp_status lp_graph_fix_input(lp_graph *g, const char *input, lp_dtype dtype, int rank,
                             const int64_t *dims, const void *bytes, uint64_t nbytes, lp_diag *d) {
    int32_t idx = lp_graph_find_value(g, input);
    if (idx < 0 || !g->values[idx].is_graph_input || g->values[idx].kind != LP_VALUE_INPUT)
        return lp_error(d, LP_ERR_USAGE, "--value: the model has no input named '%s'", input);
    lp_value *v = &g->values[idx];
    if (v->dtype && dtype != v->dtype)
        return lp_error(d, LP_ERR_USAGE, "--value %s: the input is %s, the value given is %s", input,
                        lp_dtype_name(v->dtype), lp_dtype_label(dtype));
    uint64_t numel = 1, want;
    for (int k = 0; k < rank; k++) {
        if (dims[k] < 0 || (dims[k] && numel > UINT64_MAX / (uint64_t)dims[k]))
            return lp_error(d, LP_ERR_USAGE, "--value %s: the value's dims are out of range", input);
        numel *= (uint64_t)dims[k];
    }
    if (!lp_dtype_storage_bytes(dtype, numel, &want) || want != nbytes)
        return lp_error(d, LP_ERR_USAGE, "--value %s: %" PRIu64 " bytes do not make a %s tensor of %" PRIu64
                        " elements", input, nbytes, lp_dtype_label(dtype), numel);
    /* the shape first: it checks rank and fixed dims and binds symbolic ones */
    lp_diag quiet = *d;
    quiet.sink = NULL;
    lp_status st = lp_graph_bind_input_shape(g, input, rank, dims, &quiet);
    if (st != LP_OK) {
        const char *why = strstr(quiet.last_error, ": input");
        return lp_error(d, LP_ERR_USAGE, "--value %s: %s", input,
                        why ? why + 2 : quiet.last_error);
    }
    uint8_t *copy = lp_arena_alloc(g->arena, nbytes ? nbytes : 1);
    if (!copy) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (nbytes) memcpy(copy, bytes, nbytes);
    v->kind = LP_VALUE_CONSTANT;
    v->dtype = dtype;
    v->is_graph_input = false;
    v->data = (lp_tensor_data){.where = LP_DATA_INLINE, .bytes = copy, .nbytes = nbytes};
    int n = 0;
    for (int i = 0; i < g->n_inputs; i++)
        if (g->inputs[i] != idx) g->inputs[n++] = g->inputs[i];
    g->n_inputs = n;
    return LP_OK;
}
