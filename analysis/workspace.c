/* Per-op workspace ("buffer") model: scratch memory an operator's kernel
 * needs besides its inputs and outputs. A layer's buffer is the largest of
 * its nodes' (kernels run one after another and share one workspace).
 *
 * Built-in rules, each an expression of the variables below:
 *
 *   op                      bytes                    why
 *   MatMul, Gemm            min(33554432,            cuBLAS keeps a workspace for split-K
 *                               4*outnumel)          partial sums; the cuBLAS API reference
 *                                                    (cublasSetWorkspace) recommends 32 MiB
 *                                                    on Hopper (4 MiB before). Split-K needs
 *                                                    at most an fp32 copy of the output.
 *   Conv                    im2col                   cuDNN's explicit-GEMM algorithms
 *                                                    unfold the input: one column per output
 *                                                    pixel of C_in/group * prod(kernel)
 *                                                    elements; the fastest algorithm is
 *                                                    usually allowed that much.
 *   Softmax, LogSoftmax     8*rows                   fp32 running max and sum per row
 *   *Normalization          8*rows                   fp32 mean and 1/stddev per row
 *   Reduce*                 4*outnumel               fp32 accumulators
 *   anything else           0
 *
 * Attention in an unfused graph (MatMul, Softmax, MatMul) keeps its scores
 * [batch, heads, q, kv] as an ordinary activation, so the planner counts them.
 *
 * Variables: output (bytes of output 0), input (bytes of input 0), inputs
 * (all inputs), outnumel (elements of output 0), rows (outnumel divided by
 * output 0's last dim), im2col (Conv's unfolded input, bytes). Bytes are at
 * the deploy dtype.
 *
 * --workspace FILE.json overrides rules per op type; the key "default"
 * replaces the 0 of other ops. Values are a byte count or an expression
 * string: numbers, variables, + and *, min(a, b), max(a, b), parentheses:
 *     {"MatMul": 4194304, "Conv": "2*output", "Softmax": "rows*8", "default": 0}
 * Bounds: an expression has at most LP_WORKSPACE_MAX_EXPR characters and
 * LP_WORKSPACE_MAX_DEPTH levels of parentheses and min/max; numbers must fit
 * 64 bits (sums and products saturate at 2^64 - 1, which no card holds).
 */
#define _POSIX_C_SOURCE 200809L
#include "layers_internal.h"
#include "infer_internal.h"

#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

typedef struct rule {
    const char *op;
    char *expr;
} rule;

struct lp_workspace_model {
    int n;
    rule *rules; /* file rules first, so they win */
    const char *by_id[LP_OP_COUNT + 1]; /* the winning rule of each op id, or NULL */
    const char *fallback;               /* "default", or NULL */
};

/* The first rule for `op`, else NULL. */
static const char *rule_for(const lp_workspace_model *m, const char *op) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->rules[i].op, op) == 0) return m->rules[i].expr;
    return NULL;
}

static const rule builtin_rules[] = {
    {"MatMul", "min(33554432, 4*outnumel)"},
    {"Gemm", "min(33554432, 4*outnumel)"},
    {"Conv", "im2col"},
    {"Softmax", "8*rows"},
    {"LogSoftmax", "8*rows"},
    {"LayerNormalization", "8*rows"},
    {"RMSNormalization", "8*rows"},
    {"SimplifiedLayerNormalization", "8*rows"},
    {"SkipLayerNormalization", "8*rows"},
    {"GroupNormalization", "8*rows"},
    {"InstanceNormalization", "8*rows"},
    {"BatchNormalization", "8*rows"},
    {"ReduceMean", "4*outnumel"},
    {"ReduceSum", "4*outnumel"},
    {"ReduceMax", "4*outnumel"},
    {"ReduceMin", "4*outnumel"},
    {"ReduceProd", "4*outnumel"},
    {"ReduceL2", "4*outnumel"},
    {"ReduceSumSquare", "4*outnumel"},
};

/* ---- expressions: evaluated straight from the text ---------------------- */

typedef struct vars {
    uint64_t output, input, inputs, outnumel, rows, im2col;
} vars;

#define LP_WORKSPACE_MAX_EXPR 1024
#define LP_WORKSPACE_MAX_DEPTH 32

typedef struct parser {
    const char *p;
    const vars *v; /* NULL: check the syntax only */
    int depth;     /* open parentheses and min/max calls */
    bool ok;
    char err[256];
} parser;

static uint64_t sat_add(uint64_t a, uint64_t b) { return a + b < a ? UINT64_MAX : a + b; }
static uint64_t sat_mul(uint64_t a, uint64_t b) {
    return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

static void skip_ws(parser *ps) {
    while (isspace((unsigned char)*ps->p)) ps->p++;
}

static bool accept(parser *ps, char c) {
    skip_ws(ps);
    if (*ps->p != c) return false;
    ps->p++;
    return true;
}

static void fail(parser *ps, const char *what) {
    if (ps->ok) snprintf(ps->err, sizeof ps->err, "%.160s at '%.20s'", what, ps->p);
    ps->ok = false;
}

static uint64_t parse_sum(parser *ps);

/* Enters one level of nesting; false (and an error) past the limit, so that
 * the recursion below never runs deeper than LP_WORKSPACE_MAX_DEPTH. */
static bool enter(parser *ps) {
    if (ps->depth >= LP_WORKSPACE_MAX_DEPTH) {
        char what[64];
        snprintf(what, sizeof what, "nested deeper than %d levels", LP_WORKSPACE_MAX_DEPTH);
        fail(ps, what);
        return false;
    }
    ps->depth++;
    return true;
}

/* factor := number | variable | min(sum, sum) | max(sum, sum) | (sum) */
static uint64_t parse_factor(parser *ps) {
    skip_ws(ps);
    if (isdigit((unsigned char)*ps->p)) {
        uint64_t x = 0;
        const char *s = ps->p;
        for (; isdigit((unsigned char)*ps->p); ps->p++) {
            unsigned digit = (unsigned)(*ps->p - '0');
            if (x > (UINT64_MAX - digit) / 10) {
                ps->p = s;
                fail(ps, "the number does not fit 64 bits");
                return 0;
            }
            x = x * 10 + digit;
        }
        return x;
    }
    if (accept(ps, '(')) {
        if (!enter(ps)) return 0;
        uint64_t x = parse_sum(ps);
        ps->depth--;
        if (ps->ok && !accept(ps, ')')) fail(ps, "expected ')'");
        return x;
    }
    const char *s = ps->p;
    while (isalnum((unsigned char)*ps->p) || *ps->p == '_') ps->p++;
    size_t len = (size_t)(ps->p - s);
#define IS(name) (len == strlen(name) && strncmp(s, name, len) == 0)
    if (IS("min") || IS("max")) {
        bool is_min = IS("min");
        if (!accept(ps, '(')) {
            fail(ps, "expected '('");
            return 0;
        }
        if (!enter(ps)) return 0;
        uint64_t a = parse_sum(ps), b = 0;
        if (ps->ok && !accept(ps, ',')) fail(ps, "expected ','");
        if (ps->ok) b = parse_sum(ps);
        if (ps->ok && !accept(ps, ')')) fail(ps, "expected ')'");
        ps->depth--;
        return is_min ? (a < b ? a : b) : (a > b ? a : b);
    }
    const vars *v = ps->v;
    static const vars none;
    if (!v) v = &none;
    if (IS("output")) return v->output;
    if (IS("input")) return v->input;
    if (IS("inputs")) return v->inputs;
    if (IS("outnumel")) return v->outnumel;
    if (IS("rows")) return v->rows;
    if (IS("im2col")) return v->im2col;
#undef IS
    ps->p = s;
    fail(ps, "expected a number, a variable (output, input, inputs, outnumel, rows, im2col), "
             "min or max");
    return 0;
}

static uint64_t parse_product(parser *ps) {
    uint64_t x = parse_factor(ps);
    while (ps->ok && accept(ps, '*')) x = sat_mul(x, parse_factor(ps));
    return x;
}

static uint64_t parse_sum(parser *ps) {
    uint64_t x = parse_product(ps);
    while (ps->ok && accept(ps, '+')) x = sat_add(x, parse_product(ps));
    return x;
}

static bool eval_expr(const char *expr, const vars *v, uint64_t *out, char err[256]) {
    parser ps = {.p = expr, .v = v, .ok = true};
    *out = parse_sum(&ps);
    skip_ws(&ps);
    if (ps.ok && *ps.p) fail(&ps, "unexpected text");
    if (!ps.ok && err) memcpy(err, ps.err, sizeof ps.err);
    return ps.ok;
}

/* ---- the model ------------------------------------------------------------ */

static lp_status add_rule(lp_workspace_model *m, const char *op, const char *expr, lp_diag *d) {
    rule *nr = realloc(m->rules, (size_t)(m->n + 1) * sizeof *nr);
    if (!nr) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    m->rules = nr;
    char *o = strdup(op), *e = strdup(expr);
    if (!o || !e) {
        free(o);
        free(e);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    m->rules[m->n++] = (rule){o, e};
    return LP_OK;
}

static lp_status load_file(lp_workspace_model *m, const char *path, lp_diag *d) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root)
        return lp_error(d, LP_ERR_USAGE, "--workspace %s:%d: %s", path, je.line, je.text);
    lp_status st = LP_OK;
    if (!json_is_object(root)) {
        st = lp_error(d, LP_ERR_USAGE, "--workspace %s: expected an object {\"OpType\": bytes, ...}",
                      path);
        goto done;
    }
    const char *op;
    json_t *val;
    json_object_foreach(root, op, val) {
        char buf[32], err[256];
        const char *expr = NULL;
        uint64_t x;
        if (json_is_integer(val) && json_integer_value(val) >= 0) {
            snprintf(buf, sizeof buf, "%lld", (long long)json_integer_value(val));
            expr = buf;
        } else if (json_is_string(val)) {
            expr = json_string_value(val);
            if (json_string_length(val) > LP_WORKSPACE_MAX_EXPR) {
                st = lp_error(d, LP_ERR_USAGE, "--workspace %s: '%s': the expression has %zu characters, "
                              "more than the %d allowed", path, op, json_string_length(val),
                              LP_WORKSPACE_MAX_EXPR);
                break;
            }
        } else {
            st = lp_error(d, LP_ERR_USAGE, "--workspace %s: '%s': expected bytes >= 0 or an "
                          "expression string", path, op);
            break;
        }
        if (!eval_expr(expr, NULL, &x, err)) {
            st = lp_error(d, LP_ERR_USAGE, "--workspace %s: '%s': \"%.80s%s\": %s", path, op, expr,
                          strlen(expr) > 80 ? "..." : "", err);
            break;
        }
        if ((st = add_rule(m, op, expr, d)) != LP_OK) break;
    }
done:
    json_decref(root);
    return st;
}

lp_status lp_workspace_load(const char *path, lp_workspace_model **out, lp_diag *d) {
    *out = NULL;
    lp_workspace_model *m = calloc(1, sizeof *m);
    if (!m) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = path ? load_file(m, path, d) : LP_OK;
    for (size_t i = 0; st == LP_OK && i < sizeof builtin_rules / sizeof *builtin_rules; i++)
        st = add_rule(m, builtin_rules[i].op, builtin_rules[i].expr, d);
    if (st != LP_OK) {
        lp_workspace_free(m);
        return st;
    }
    /* resolved once, so a node's rule is one array read */
    for (int id = 1; id <= LP_OP_COUNT; id++) m->by_id[id] = rule_for(m, lp_op_name(id));
    m->fallback = rule_for(m, "default");
    *out = m;
    return LP_OK;
}

void lp_workspace_free(lp_workspace_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free((char *)m->rules[i].op);
        free(m->rules[i].expr);
    }
    free(m->rules);
    free(m);
}

static uint64_t bytes_or_0(const lp_layer_ir *L, int32_t v) {
    uint64_t b;
    return v >= 0 && lp_analysis_value_bytes(L, v, &b) ? b : 0;
}

/* Conv's unfolded input: N * prod(Y spatial) columns of C_in/group * prod(k). */
static uint64_t im2col_bytes(const lp_layer_ir *L, const lp_node *n) {
    const lp_graph *g = L->g;
    if (lp_node_op(n) != LP_OP_Conv || n->n_inputs < 2 || n->n_outputs < 1) return 0;
    int32_t w = n->inputs[1], y = n->outputs[0], x = n->inputs[0];
    if (w < 0 || y < 0 || x < 0) return 0;
    const lp_shape *ws = &g->values[w].shape;
    uint64_t elems_y, per_col = 1, numel_x, bytes_x;
    if (ws->rank < 2 || !lp_shape_numel(&g->values[y].shape, &elems_y)) return 0;
    int64_t cout = g->values[y].shape.rank >= 2 ? g->values[y].shape.dims[1].size : 0;
    if (cout <= 0) return 0;
    for (int i = 1; i < ws->rank; i++) per_col = sat_mul(per_col, (uint64_t)(ws->dims[i].size > 0 ? ws->dims[i].size : 0));
    /* the element size of X at the deploy dtype */
    if (!lp_shape_numel(&g->values[x].shape, &numel_x) || numel_x == 0) return 0;
    bytes_x = bytes_or_0(L, x);
    return sat_mul(sat_mul(elems_y / (uint64_t)cout, per_col), bytes_x / numel_x);
}

uint64_t lp_workspace_node_bytes(const lp_workspace_model *m, const lp_layer_ir *L,
                                 const lp_node *n) {
    int id = lp_node_op(n);
    const char *expr = id > 0 ? m->by_id[id] : rule_for(m, n->op_type);
    if (!expr) expr = m->fallback;
    if (!expr) return 0;
    const lp_graph *g = L->g;
    vars v = {0};
    int32_t y = n->n_outputs > 0 ? n->outputs[0] : -1;
    v.output = bytes_or_0(L, y);
    v.input = n->n_inputs > 0 ? bytes_or_0(L, n->inputs[0]) : 0;
    for (int k = 0; k < n->n_inputs; k++) v.inputs = sat_add(v.inputs, bytes_or_0(L, n->inputs[k]));
    if (y >= 0 && lp_shape_numel(&g->values[y].shape, &v.outnumel)) {
        const lp_shape *s = &g->values[y].shape;
        int64_t last = s->rank > 0 ? s->dims[s->rank - 1].size : 1;
        v.rows = last > 0 ? v.outnumel / (uint64_t)last : 0;
    }
    v.im2col = im2col_bytes(L, n);
    uint64_t x = 0;
    /* rules were checked when loaded */
    return eval_expr(expr, &v, &x, NULL) ? x : 0;
}
