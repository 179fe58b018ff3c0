/* card_K.cu: each card's launch program, written from the lowered program
 * (lp_lower.h). The file is host code that builds as CUDA (nvcc -c) and as
 * C++ (the CPU reference path, lpcc-run --device cpu): per step a static
 * table of its arguments (offset inside the card's allocation, bytes, dtype,
 * dims), attributes and literal shape data, and one function lp_card_step
 * that runs the steps in plan order through runtime/lp_card.h's callbacks,
 * the ONNX node name in a comment above each call. A view step (Reshape,
 * Squeeze, Unsqueeze, Flatten, Identity) whose output shares its input's
 * bytes does no work and is written as a comment. */
#include "lp_emit.h"
#include "lp_frontend.h"
#include "lp_lower.h"
#include "lp_ops.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct emit_ctx {
    const lp_layer_ir *L;
    const lp_graph *g;
    FILE *f;
    int card;
    const lp_card_program *cp;
    bool sliced_weights; /* the card holds a column slice of some weight */
    int *bias_of;        /* [n_steps]: a MatMul step fused with the bias Add at this step, or -1 */
    bool *fused_away;    /* [n_steps]: a bias Add some MatMul step does */
    bool *via_copy;      /* [n_steps]: that Add's step copies the Gemm's result into place */
    lp_diag *d;
} emit_ctx;

/* The dims a card holds of an argument: a sharded weight's slice of its
 * split axis, a split node's columns of the gathered output; -1 axis:
 * the value's own dims. */
typedef struct held_dims {
    int axis;
    int64_t size;
} held_dims;

static held_dims held_of(const emit_ctx *x, const lp_arg *a) {
    held_dims h = {-1, 0};
    const lp_card_memory *m = x->cp->memory;
    if (a->region == LP_REGION_WEIGHT && x->sliced_weights) {
        for (int k = 0; k < m->n_weights; k++)
            if (m->weights[k].value == a->value && m->weights[k].offset == a->offset &&
                m->weights[k].axis >= 0) {
                h.axis = m->weights[k].axis;
                h.size = m->weights[k].end - m->weights[k].begin;
            }
    } else if (a->region == LP_REGION_GATHER) {
        for (int s = 0; s < x->cp->n_steps; s++) {
            const lp_step *st = &x->cp->steps[s];
            if (st->kind != LP_STEP_ALL_GATHER || st->value != a->value) continue;
            const lp_value *v = &x->g->values[a->value];
            if (st->axis < 0 || st->axis >= v->shape.rank) break;
            int64_t b = 0, e = 0;
            lp_shard_range(v->shape.dims[st->axis].size, st->n_cards, st->rank, &b, &e);
            h.axis = st->axis;
            h.size = e - b;
            break;
        }
    }
    return h;
}


/* s as a C string literal. */
static void put_cstr(FILE *f, const char *s, size_t n) {
    fputc('"', f);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 32 || c > 126)
            fprintf(f, "\\%03o", c);
        else if (c == '?')
            fputs("\\?", f); /* no trigraphs */
        else
            fputc(c, f);
    }
    fputc('"', f);
}

/* s inside a comment: no comment end, no trigraph, no line breaks. */
static void put_comment_text(FILE *f, const char *s) {
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '*' && s[1] == '/')
            fputs("*\\/", f), s++;
        else if (c == '?' && s[1] == '?')
            fputs("?? ", f), s++; /* no trigraph */
        else
            fputc(c < 32 || c > 126 ? '?' : c, f);
    }
}

static void put_float(FILE *f, float x) {
    if (isnan(x)) {
        fputs("__builtin_nanf(\"\")", f);
    } else if (isinf(x)) {
        fputs(x > 0 ? "__builtin_inff()" : "-__builtin_inff()", f);
    } else {
        char b[64];
        snprintf(b, sizeof b, "%.9g", (double)x);
        fputs(b, f);
        if (!strpbrk(b, ".e")) fputs(".0", f);
        fputc('f', f);
    }
}

/* `bytes` as 8-byte words (aligned for every element type; the host is
 * little-endian), the last one zero-padded. */
static void put_words(FILE *f, const char *name, const uint8_t *bytes, uint64_t n) {
    uint64_t words = n ? (n + 7) / 8 : 1;
    fprintf(f, "static const uint64_t %s[] = {", name);
    for (uint64_t w = 0; w < words; w++) {
        uint64_t x = 0;
        for (int k = 0; k < 8 && w * 8 + (uint64_t)k < n; k++)
            x |= (uint64_t)bytes[w * 8 + (uint64_t)k] << (8 * k);
        fprintf(f, "%s0x%" PRIx64 "u", w ? (w % 6 ? ", " : ",\n    ") : "", x);
    }
    fputs("};\n", f);
}

/* The dims table of a value: "0" (rank 0) or the name of a static array. */
static lp_status put_dims(emit_ctx *x, const char *name, const lp_value *v, const lp_node *n,
                          held_dims h) {
    if (v->shape.rank < 0)
        return lp_node_error(x->d, LP_ERR_UNSUPPORTED, n, "card %d: value '%s' has no known rank",
                             x->card, v->name);
    if (v->shape.rank == 0) return LP_OK;
    fprintf(x->f, "static const int64_t %s[] = {", name);
    for (int i = 0; i < v->shape.rank; i++) {
        if (v->shape.dims[i].size < 0)
            return lp_node_error(x->d, LP_ERR_UNSUPPORTED, n, "card %d: dim %d of '%s' is not "
                                 "bound to a number (bind it with --dim or --shapes)",
                                 x->card, i, v->name);
        fprintf(x->f, "%s%" PRId64, i ? ", " : "", i == h.axis ? h.size : v->shape.dims[i].size);
    }
    fputs("};\n", x->f);
    return LP_OK;
}

/* Literal bytes of a value the program carries, as table `name`. */
static lp_status put_literal(emit_ctx *x, const char *name, const lp_value *v) {
    uint64_t n = 0, numel = 0;
    if (!lp_shape_numel(&v->shape, &numel) || !lp_dtype_storage_bytes(v->dtype, numel, &n))
        return lp_error(x->d, LP_ERR_UNSUPPORTED, "card %d: literal '%s' has no known size",
                        x->card, v->name);
    if (v->known) {
        if (v->known_nbytes != n)
            return lp_error(x->d, LP_ERR_INTERNAL, "card %d: known value '%s' has %" PRIu64 " bytes, "
                            "not %" PRIu64, x->card, v->name, v->known_nbytes, n);
        put_words(x->f, name, v->known, n);
        return LP_OK;
    }
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf) return lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = lp_frontend_read_weight(x->g, v, buf, n, x->d);
    if (st == LP_OK) put_words(x->f, name, buf, n);
    free(buf);
    return st;
}

/* A value shape inference knew (lp_value.known): the program carries it. */
static bool is_known(const emit_ctx *x, int32_t v) {
    return v >= 0 && x->g->values[v].known != NULL;
}

/* An argument the program carries: a literal, or an input whose value is known. */
static bool is_literal_arg(const emit_ctx *x, const lp_arg *a, const char *dir) {
    return a->region == LP_REGION_LITERAL || (dir[0] == 'i' && is_known(x, a->value));
}

/* The argument tables of step s; fills in nothing the call needs but the
 * names "s<s>_in", "s<s>_out". */
static lp_status put_args(emit_ctx *x, int s, const lp_arg *args, int n_args, const char *dir,
                          const lp_node *n) {
    char name[96];
    for (int k = 0; k < n_args; k++) {
        const lp_arg *a = &args[k];
        if (a->region == LP_REGION_NONE) continue;
        const lp_value *v = &x->g->values[a->value];
        snprintf(name, sizeof name, "s%d_%s%d_dims", s, dir, k);
        lp_status st = put_dims(x, name, v, n, held_of(x, a));
        if (st == LP_OK && is_literal_arg(x, a, dir)) {
            snprintf(name, sizeof name, "s%d_%s%d_data", s, dir, k);
            st = put_literal(x, name, v);
        }
        if (st != LP_OK) return st;
    }
    fprintf(x->f, "static const lp_card_tensor s%d_%s[] = {\n", s, dir);
    for (int k = 0; k < n_args; k++) {
        const lp_arg *a = &args[k];
        if (a->region == LP_REGION_NONE) {
            fputs("    LP_NONE_ARG,\n", x->f);
            continue;
        }
        const lp_value *v = &x->g->values[a->value];
        char dims[96];
        if (v->shape.rank > 0)
            snprintf(dims, sizeof dims, "s%d_%s%d_dims", s, dir, k);
        else
            snprintf(dims, sizeof dims, "0");
        if (is_literal_arg(x, a, dir)) {
            uint64_t numel = 0, nb = 0;
            if (!lp_shape_numel(&v->shape, &numel) || !lp_dtype_storage_bytes(v->dtype, numel, &nb))
                nb = 0;
            fprintf(x->f, "    LP_LIT(s%d_%s%d_data, %" PRIu64 "u, %d, %d, %s), /* ", s, dir, k,
                    nb, (int)v->dtype, v->shape.rank, dims);
        } else {
            fprintf(x->f, "    LP_MEM(%" PRIu64 "u, %" PRIu64 "u, %d, %d, %s), /* ", a->offset,
                    a->bytes, (int)lp_analysis_value_dtype(x->L, v), v->shape.rank, dims);
        }
        put_comment_text(x->f, v->name);
        fprintf(x->f, " (%s) */\n", lp_region_name(a->region));
    }
    if (n_args == 0) fputs("    LP_NONE_ARG,\n", x->f);
    fputs("};\n", x->f);
    return LP_OK;
}

/* The attribute table "s<s>_attrs" of node n; false when it has none. */
static lp_status put_attrs(emit_ctx *x, int s, const lp_node *n) {
    char name[96];
    for (int k = 0; k < n->n_attrs; k++) {
        const lp_attr *a = &n->attrs[k];
        if (a->type == LP_ATTR_INTS && a->n > 0) {
            fprintf(x->f, "static const int64_t s%d_a%d[] = {", s, k);
            for (int i = 0; i < a->n; i++) fprintf(x->f, "%s%" PRId64, i ? ", " : "", a->ints[i]);
            fputs("};\n", x->f);
        } else if (a->type == LP_ATTR_FLOATS && a->n > 0) {
            fprintf(x->f, "static const float s%d_a%d[] = {", s, k);
            for (int i = 0; i < a->n; i++) {
                if (i) fputs(", ", x->f);
                put_float(x->f, a->floats[i]);
            }
            fputs("};\n", x->f);
        } else if (a->type == LP_ATTR_TENSOR && a->tensor) {
            const lp_tensor *t = a->tensor;
            uint64_t numel = 0, nb = 0;
            if (t->shape.rank < 0 || !lp_shape_numel(&t->shape, &numel) ||
                !lp_dtype_storage_bytes(t->dtype, numel, &nb))
                return lp_node_error(x->d, LP_ERR_UNSUPPORTED, n, "card %d: tensor attribute '%s' "
                                     "has no known size", x->card, a->name);
            uint8_t *buf = malloc(nb ? nb : 1);
            if (!buf) return lp_error(x->d, LP_ERR_INTERNAL, "out of memory");
            lp_status st = lp_frontend_read_tensor(x->g, &t->data, a->name, 0, buf, nb, x->d);
            if (st == LP_OK) {
                snprintf(name, sizeof name, "s%d_a%d_data", s, k);
                put_words(x->f, name, buf, nb);
            }
            free(buf);
            if (st != LP_OK) return st;
            if (t->shape.rank > 0) {
                fprintf(x->f, "static const int64_t s%d_a%d_dims[] = {", s, k);
                for (int i = 0; i < t->shape.rank; i++)
                    fprintf(x->f, "%s%" PRId64, i ? ", " : "", t->shape.dims[i].size);
                fputs("};\n", x->f);
            }
            fprintf(x->f, "static const lp_card_tensor s%d_a%d = LP_LIT(s%d_a%d_data, %" PRIu64
                    "u, %d, %d, ", s, k, s, k, nb, (int)t->dtype, t->shape.rank);
            if (t->shape.rank > 0)
                fprintf(x->f, "s%d_a%d_dims);\n", s, k);
            else
                fputs("0);\n", x->f);
        } else if (a->type != LP_ATTR_INT && a->type != LP_ATTR_FLOAT && a->type != LP_ATTR_STRING &&
                   a->type != LP_ATTR_INTS && a->type != LP_ATTR_FLOATS) {
            return lp_node_error(x->d, LP_ERR_UNSUPPORTED, n, "card %d: attribute '%s' of %s has a "
                                 "type the card program cannot carry", x->card, a->name, n->op_type);
        }
    }
    if (n->n_attrs == 0) return LP_OK;
    fprintf(x->f, "static const lp_card_attr s%d_attrs[] = {\n", s);
    for (int k = 0; k < n->n_attrs; k++) {
        const lp_attr *a = &n->attrs[k];
        fputs("    ", x->f);
        switch (a->type) {
        case LP_ATTR_INT: {
            int64_t v = a->i;
            /* a Cast to a float type casts to the deploy dtype the program stores */
            if (lp_node_op(n) == LP_OP_Cast && strcmp(a->name, "to") == 0 && n->n_outputs > 0 &&
                n->outputs[0] >= 0)
                v = (int64_t)lp_analysis_value_dtype(x->L, &x->g->values[n->outputs[0]]);
            fputs("LP_ATTR_I(", x->f);
            put_cstr(x->f, a->name, strlen(a->name));
            fprintf(x->f, ", %" PRId64 "LL)", v);
            if (a->i == INT64_MIN) return lp_error(x->d, LP_ERR_UNSUPPORTED, "attribute out of range");
            break;
        }
        case LP_ATTR_FLOAT:
            fputs("LP_ATTR_F(", x->f);
            put_cstr(x->f, a->name, strlen(a->name));
            fputs(", ", x->f);
            put_float(x->f, a->f);
            fputc(')', x->f);
            break;
        case LP_ATTR_STRING:
            fputs("LP_ATTR_S(", x->f);
            put_cstr(x->f, a->name, strlen(a->name));
            fputs(", ", x->f);
            put_cstr(x->f, a->s ? a->s : "", a->s ? a->s_len : 0);
            fprintf(x->f, ", %zuu)", a->s ? a->s_len : (size_t)0);
            break;
        case LP_ATTR_INTS:
        case LP_ATTR_FLOATS:
            fputs(a->type == LP_ATTR_INTS ? "LP_ATTR_INTS(" : "LP_ATTR_FLOATS(", x->f);
            put_cstr(x->f, a->name, strlen(a->name));
            if (a->n > 0)
                fprintf(x->f, ", %d, s%d_a%d)", a->n, s, k);
            else
                fputs(", 0, 0)", x->f);
            break;
        default: /* TENSOR, checked above */
            fputs("LP_ATTR_T(", x->f);
            put_cstr(x->f, a->name, strlen(a->name));
            fprintf(x->f, ", &s%d_a%d)", s, k);
            break;
        }
        fputs(",\n", x->f);
    }
    fputs("};\n", x->f);
    return LP_OK;
}

/* A view step whose output is its input's bytes: no work. */
static bool is_pure_view(const lp_step *st) {
    return st->n_outputs == 1 && st->outputs[0].region == LP_REGION_VIEW;
}

/* A compute step all of whose outputs are known: nothing to run, its
 * readers take the values as literals. */
static bool is_folded(const emit_ctx *x, const lp_step *st) {
    if (st->kind != LP_STEP_COMPUTE || st->n_outputs == 0) return false;
    for (int k = 0; k < st->n_outputs; k++)
        if (st->outputs[k].region != LP_REGION_NONE && !is_known(x, st->outputs[k].value)) return false;
    return true;
}

/* No work for this step in the generated program. */
static bool is_skipped(const emit_ctx *x, const lp_step *st) {
    return is_pure_view(st) || is_folded(x, st) || x->fused_away[st - x->cp->steps];
}

/* ---- MatMul + bias Add -> one Gemm ------------------------------------------
 * y = MatMul(a, W) followed (as the next step that runs) by Add(y, b) with W
 * a 2-D weight [K, N], b a weight of N elements and y read by nothing else:
 * the program runs one Gemm(a viewed [M, K], W, b) writing the Add's output
 * viewed [M, N] (cuBLASLt's bias epilogue on the GPU). Not when a's bytes
 * overlap the Add's output (the planner may place it there, a being dead
 * after the MatMul), nor for sharded weights. */

static bool plain_weight(const emit_ctx *x, const lp_arg *a) {
    return a->region == LP_REGION_WEIGHT && held_of(x, a).axis < 0;
}

static bool overlaps(const lp_arg *a, const lp_arg *b) {
    return a->offset < b->offset + b->bytes && b->offset < a->offset + a->bytes;
}

static void find_bias_fusions(emit_ctx *x) {
    const lp_card_program *cp = x->cp;
    const lp_graph *g = x->g;
    for (int s = 0; s < cp->n_steps; s++) {
        x->bias_of[s] = -1;
        x->fused_away[s] = false;
    }
    for (int s = 0; s < cp->n_steps; s++) {
        const lp_step *mm = &cp->steps[s];
        if (mm->kind != LP_STEP_COMPUTE || mm->kernel != LP_OP_MatMul || mm->n_inputs != 2 ||
            mm->n_outputs != 1 || mm->outputs[0].region != LP_REGION_SLOT || x->fused_away[s])
            continue;
        const lp_arg *a = &mm->inputs[0], *w = &mm->inputs[1], *y = &mm->outputs[0];
        const lp_value *av = &g->values[a->value], *wv = &g->values[w->value], *yv = &g->values[y->value];
        if (!plain_weight(x, w) || wv->shape.rank != 2 || av->shape.rank < 2 || yv->is_graph_output ||
            (a->region != LP_REGION_SLOT && a->region != LP_REGION_VIEW && a->region != LP_REGION_IN))
            continue;
        int64_t n_cols = wv->shape.dims[1].size;
        /* the next step that runs, and every reader of y on the card */
        int t = s + 1;
        while (t < cp->n_steps && cp->steps[t].kind == LP_STEP_COMPUTE && is_skipped(x, &cp->steps[t])) t++;
        if (t >= cp->n_steps) continue;
        const lp_step *add = &cp->steps[t];
        if (add->kind != LP_STEP_COMPUTE || add->kernel != LP_OP_Add || add->n_inputs != 2 ||
            add->n_outputs != 1 || add->outputs[0].region != LP_REGION_SLOT)
            continue;
        int yi = add->inputs[0].value == y->value ? 0 : add->inputs[1].value == y->value ? 1 : -1;
        if (yi < 0) continue;
        const lp_arg *b = &add->inputs[1 - yi], *z = &add->outputs[0];
        const lp_value *bv = &g->values[b->value], *zv = &g->values[z->value];
        uint64_t bn = 1;
        if (!plain_weight(x, b) || bv->dtype != wv->dtype || !lp_shape_numel(&bv->shape, &bn) ||
            (int64_t)bn != n_cols || bv->shape.rank < 1 || bv->shape.dims[bv->shape.rank - 1].size != n_cols ||
            zv->shape.rank != yv->shape.rank)
            continue;
        bool same = true;
        for (int r = 0; r < zv->shape.rank && same; r++) same = zv->shape.dims[r].size == yv->shape.dims[r].size;
        int readers = 0;
        for (int u = 0; u < cp->n_steps; u++) {
            const lp_step *q = &cp->steps[u];
            if (q->kind == LP_STEP_SEND && q->value == y->value) readers += 2;
            if (q->kind != LP_STEP_COMPUTE) continue;
            for (int k = 0; k < q->n_inputs; k++) readers += q->inputs[k].value == y->value;
        }
        if (!same || readers != 1) continue;
        x->bias_of[s] = t;
        x->fused_away[t] = true;
        /* the Add's output over a's bytes: the Gemm writes y's slot, the Add's
         * step moves it (a copy, cheaper than the Add) */
        x->via_copy[t] = overlaps(a, z);
    }
}

/* The fused step's tables: a Gemm named after the MatMul. */
static lp_status put_fused_gemm(emit_ctx *x, int s, const lp_step *mm, const lp_step *add) {
    const lp_graph *g = x->g;
    const lp_node *n = &g->nodes[mm->node], *na = &g->nodes[add->node];
    const lp_arg *a = &mm->inputs[0], *w = &mm->inputs[1];
    const lp_arg *z = x->via_copy[add - x->cp->steps] ? &mm->outputs[0] : &add->outputs[0];
    const lp_arg *b = add->inputs[0].value == mm->outputs[0].value ? &add->inputs[1] : &add->inputs[0];
    const lp_value *av = &g->values[a->value], *wv = &g->values[w->value], *bv = &g->values[b->value];
    int64_t m_rows = 1;
    for (int r = 0; r < av->shape.rank - 1; r++) m_rows *= av->shape.dims[r].size;
    int64_t k_dim = wv->shape.dims[0].size, n_dim = wv->shape.dims[1].size;
    fprintf(x->f, "\n/* step %d: ", s);
    put_comment_text(x->f, n->name);
    fprintf(x->f, " (MatMul) and ");
    put_comment_text(x->f, na->name);
    fprintf(x->f, " (Add of its bias), run as one Gemm */\n");
    fprintf(x->f, "static const int64_t s%d_in0_dims[] = {%" PRId64 ", %" PRId64 "};\n", s, m_rows, k_dim);
    fprintf(x->f, "static const int64_t s%d_in1_dims[] = {%" PRId64 ", %" PRId64 "};\n", s, k_dim, n_dim);
    fprintf(x->f, "static const int64_t s%d_in2_dims[] = {%" PRId64 "};\n", s, n_dim);
    fprintf(x->f, "static const int64_t s%d_out0_dims[] = {%" PRId64 ", %" PRId64 "};\n", s, m_rows, n_dim);
    const lp_arg *args[3] = {a, w, b};
    const lp_value *vals[3] = {av, wv, bv};
    fprintf(x->f, "static const lp_card_tensor s%d_in[] = {\n", s);
    for (int k = 0; k < 3; k++) {
        fprintf(x->f, "    LP_MEM(%" PRIu64 "u, %" PRIu64 "u, %d, %d, s%d_in%d_dims), /* ", args[k]->offset,
                args[k]->bytes, (int)lp_analysis_value_dtype(x->L, vals[k]), k == 2 ? 1 : 2, s, k);
        put_comment_text(x->f, vals[k]->name);
        fprintf(x->f, " (%s) */\n", lp_region_name(args[k]->region));
    }
    fprintf(x->f, "};\nstatic const lp_card_tensor s%d_out[] = {\n", s);
    fprintf(x->f, "    LP_MEM(%" PRIu64 "u, %" PRIu64 "u, %d, 2, s%d_out0_dims), /* ", z->offset, z->bytes,
            (int)lp_analysis_value_dtype(x->L, &g->values[z->value]), s);
    put_comment_text(x->f, g->values[z->value].name);
    fprintf(x->f, " (slot) */\n};\n");
    fprintf(x->f, "static const lp_card_node s%d = {", s);
    put_cstr(x->f, n->name, strlen(n->name));
    fprintf(x->f, ", \"Gemm\", %" PRId64 ", 3, 1, 0, s%d_in, s%d_out, 0, %" PRIu64 "u, %" PRIu64 "u};\n",
            g->opset, s, s, mm->workspace_offset, mm->workspace_bytes);
    return LP_OK;
}

static lp_status put_node_tables(emit_ctx *x, int s, const lp_step *st) {
    const lp_node *n = &x->g->nodes[st->node];
    if (st->kernel <= 0)
        return lp_node_error(x->d, LP_ERR_UNSUPPORTED, n, "card %d: no kernel for op %s", x->card,
                             n->op_type);
    fprintf(x->f, "\n/* step %d: ", s);
    put_comment_text(x->f, n->name);
    fprintf(x->f, " (%s) */\n", n->op_type);
    lp_status st2 = put_args(x, s, st->inputs, st->n_inputs, "in", n);
    if (st2 == LP_OK) st2 = put_args(x, s, st->outputs, st->n_outputs, "out", n);
    if (st2 == LP_OK) st2 = put_attrs(x, s, n);
    if (st2 != LP_OK) return st2;
    fprintf(x->f, "static const lp_card_node s%d = {", s);
    put_cstr(x->f, n->name, strlen(n->name));
    fputs(", ", x->f);
    put_cstr(x->f, n->op_type, strlen(n->op_type));
    fprintf(x->f, ", %" PRId64 ", %d, %d, %d, s%d_in, s%d_out, ", x->g->opset, st->n_inputs,
            st->n_outputs, n->n_attrs, s, s);
    if (n->n_attrs)
        fprintf(x->f, "s%d_attrs", s);
    else
        fputs("0", x->f);
    fprintf(x->f, ", %" PRIu64 "u, %" PRIu64 "u};\n", st->workspace_offset, st->workspace_bytes);
    return LP_OK;
}

static void put_value_cstr(emit_ctx *x, int32_t v) {
    const char *name = v >= 0 ? x->g->values[v].name : "";
    put_cstr(x->f, name, strlen(name));
}

static void put_call(emit_ctx *x, int s, const lp_step *st) {
    FILE *f = x->f;
    const char *vname = st->value >= 0 ? x->g->values[st->value].name : "";
    switch (st->kind) {
    case LP_STEP_COMPUTE: {
        const lp_node *n = &x->g->nodes[st->node];
        fputs("    /* ", f);
        put_comment_text(f, n->name);
        fprintf(f, " (%s) */\n", n->op_type);
        if (is_pure_view(st))
            fprintf(f, "    /* a view: its output is its input's bytes, nothing to run */\n");
        else if (x->fused_away[s] && x->via_copy[s]) {
            const lp_arg *z = &st->outputs[0];
            int mm = 0;
            while (mm < s && x->bias_of[mm] != s) mm++;
            const lp_arg *y = &x->cp->steps[mm].outputs[0];
            fprintf(f, "    /* its bias is added by the Gemm above; the sum moves into place */\n");
            fprintf(f, "    LP_COPY(env, base, %" PRIu64 "u, %" PRIu64 "u, %" PRIu64 "u, ", z->offset, y->offset,
                    z->bytes);
            put_value_cstr(x, z->value);
            fputs(");\n", f);
        } else if (x->fused_away[s])
            fprintf(f, "    /* its bias is added by the Gemm above */\n");
        else if (is_folded(x, st))
            fprintf(f, "    /* known when the model was compiled: its readers carry the value */\n");
        else
            fprintf(f, "    LP_COMPUTE(env, base, s%d);\n", s);
        break;
    }
    case LP_STEP_RECEIVE:
    case LP_STEP_SEND: {
        bool recv = st->kind == LP_STEP_RECEIVE;
        fprintf(f, "    /* %s '", recv ? "receive" : "send");
        put_comment_text(f, vname);
        if (st->peer < 0)
            fprintf(f, "' %s the host */\n", recv ? "from" : "to");
        else
            fprintf(f, "' %s card %d */\n", recv ? "from" : "to", st->peer);
        const lp_arg *dst = recv ? &st->slot : &st->buffer, *src = recv ? &st->buffer : &st->slot;
        if (dst->offset == src->offset) {
            fputs("    /* already in place */\n", f);
            break;
        }
        fprintf(f, "    LP_COPY(env, base, %" PRIu64 "u, %" PRIu64 "u, %" PRIu64 "u, ", dst->offset,
                src->offset, src->bytes < dst->bytes ? src->bytes : dst->bytes);
        put_value_cstr(x, st->value);
        fputs(");\n", f);
        break;
    }
    case LP_STEP_ALL_GATHER:
        fputs("    /* all-gather '", f);
        put_comment_text(f, vname);
        fprintf(f, "' among cards %d..%d */\n", st->first_card, st->first_card + st->n_cards - 1);
        fputs("    LP_ALL_GATHER(env, base, ", f);
        put_value_cstr(x, st->value);
        fprintf(f, ", %d, %d, %d, %d, %" PRIu64 "u, %" PRIu64 "u, %" PRIu64 "u, %" PRIu64 "u, %" PRIu64
                "u);\n", st->first_card, st->n_cards, st->rank, st->axis, st->slice.offset,
                st->slice.bytes, st->whole.offset, st->whole.bytes, st->slot.offset);
        break;
    }
}

static lp_status write_card(emit_ctx *x, const lp_card_program *cp, const char *model,
                            const char *version) {
    FILE *f = x->f;
    const lp_card_memory *m = cp->memory;
    fprintf(f, "/* card_%d.cu - the launch program of card %d", cp->card, cp->card);
    if (cp->n_shards > 1) fprintf(f, " (shard %d of %d)", cp->shard, cp->n_shards);
    fputs(" of ", f);
    put_comment_text(f, model);
    fprintf(f, ", written by lpcc %s.\n", version ? version : "");
    fprintf(f, " *\n * One allocation of %" PRIu64 " bytes: weights at 0 (%" PRIu64 " bytes), "
            "boundary at %" PRIu64 " (%" PRIu64 "),\n * arena at %" PRIu64 " (%" PRIu64
            "), workspace at %" PRIu64 " (%" PRIu64 ").\n", m->total_bytes, m->weights_bytes,
            m->boundary_offset, m->boundary_bytes, m->arena_offset, m->arena_bytes,
            m->workspace_offset, m->workspace_bytes);
    fputs(" * Builds as CUDA (nvcc -c) or as C++ for the CPU reference path\n"
          " * (c++ -x c++ -shared -fPIC -I<lpcc>/runtime); see runtime/lp_card.h. */\n"
          "#include \"lp_card.h\"\n\n"
          "LP_CARD_EXPORT const int lp_card_abi = LP_CARD_ABI;\n", f);
    for (int s = 0; s < cp->n_steps; s++) {
        const lp_step *st = &cp->steps[s];
        if (st->kind != LP_STEP_COMPUTE || is_skipped(x, st)) continue;
        lp_status rc = x->bias_of[s] >= 0 ? put_fused_gemm(x, s, st, &cp->steps[x->bias_of[s]])
                                          : put_node_tables(x, s, st);
        if (rc != LP_OK) return rc;
    }
    fprintf(f, "\n/* Card %d's steps in plan order. */\n"
            "LP_CARD_EXPORT int lp_card_step(lp_card_env *env, unsigned char *base) {\n", cp->card);
    int phase = -1;
    for (int s = 0; s < cp->n_steps; s++) {
        const lp_step *st = &cp->steps[s];
        if (cp->n_phases > 1 && st->phase != phase) {
            phase = st->phase;
            fprintf(f, "    /* phase %d */\n", phase);
        }
        put_call(x, s, st);
    }
    fputs("    return 0;\n}\n", f);
    return LP_OK;
}

lp_status lp_emit_write_cards(const lp_program *prog, const lp_layer_ir *L, const char *model,
                              const char *version, lp_outdir *od, lp_diag *d) {
    for (int c = 0; c < prog->n_cards; c++) {
        const lp_card_program *cp = &prog->cards[c];
        char name[48];
        snprintf(name, sizeof name, "card_%d.cu", cp->card);
        FILE *f = lp_outdir_create(od, name, d);
        if (!f) return LP_ERR_OUTPUT;
        emit_ctx x = {.L = L, .g = L->g, .f = f, .card = cp->card, .cp = cp, .d = d};
        for (int k = 0; k < cp->memory->n_weights && !x.sliced_weights; k++)
            x.sliced_weights = cp->memory->weights[k].axis >= 0;
        x.bias_of = calloc((size_t)cp->n_steps + 1, sizeof *x.bias_of);
        x.fused_away = calloc((size_t)cp->n_steps + 1, sizeof *x.fused_away);
        x.via_copy = calloc((size_t)cp->n_steps + 1, sizeof *x.via_copy);
        lp_status st = x.bias_of && x.fused_away && x.via_copy ? LP_OK
                                                               : lp_error(d, LP_ERR_INTERNAL, "out of memory");
        if (st == LP_OK) {
            find_bias_fusions(&x);
            st = write_card(&x, cp, model ? model : "", version);
        }
        free(x.bias_of);
        free(x.fused_away);
        free(x.via_copy);
        lp_status cs = lp_outdir_close(od, f, d);
        if (st != LP_OK) return st;
        if (cs != LP_OK) return cs;
    }
    return LP_OK;
}
