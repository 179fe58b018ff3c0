/* Per-op workspace ("buffer") model: scratch memory an operator's kernel
 * needs besides its inputs and outputs. A layer's buffer is the largest of
 * its nodes' (kernels run one after another and share one workspace).
 *
 * Built-in rules, each an expression of the variables below (the workspace
 * column of ir/ops.def holds them; this table says why):
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

/* An expression compiled to postfix: numbers and variables push, the
 * operators pop two and push one. */
typedef enum { STEP_NUM, STEP_VAR, STEP_ADD, STEP_MUL, STEP_MIN, STEP_MAX } step_kind;

typedef struct step {
    step_kind kind;
    int var;     /* STEP_VAR: index into the vars below */
    uint64_t x;  /* STEP_NUM */
} step;

typedef struct rule {
    const char *op;
    step *prog;
    int n_prog;
    int stack; /* the deepest the evaluation stack gets */
} rule;

struct lp_workspace_model {
    int n;
    rule *rules; /* file rules first, so they win */
    const rule *by_id[LP_OP_COUNT + 1]; /* the winning rule of each op id, or NULL */
    const rule *fallback;               /* "default", or NULL */
    uint64_t *stack;                    /* room for the deepest rule's evaluation */
};

/* The first rule for `op`, else NULL. */
static const rule *rule_for(const lp_workspace_model *m, const char *op) {
    for (int i = 0; i < m->n; i++)
        if (strcmp(m->rules[i].op, op) == 0) return &m->rules[i];
    return NULL;
}

/* ---- expressions: parsed once into postfix steps ------------------------ */

enum { VAR_OUTPUT, VAR_INPUT, VAR_INPUTS, VAR_OUTNUMEL, VAR_ROWS, VAR_IM2COL, N_VARS };
typedef struct vars {
    uint64_t x[N_VARS];
} vars;

#define LP_WORKSPACE_MAX_EXPR 1024
#define LP_WORKSPACE_MAX_DEPTH 32

typedef struct parser {
    const char *p;
    int depth; /* open parentheses and min/max calls */
    bool ok;
    char err[256];
    step *prog; /* room for one step per character, which no expression exceeds */
    int n_prog;
} parser;

static void emit(parser *ps, step_kind kind, int var, uint64_t x) {
    ps->prog[ps->n_prog++] = (step){kind, var, x};
}

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

static void parse_sum(parser *ps);

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
static void parse_factor(parser *ps) {
    skip_ws(ps);
    if (isdigit((unsigned char)*ps->p)) {
        uint64_t x = 0;
        const char *s = ps->p;
        for (; isdigit((unsigned char)*ps->p); ps->p++) {
            unsigned digit = (unsigned)(*ps->p - '0');
            if (x > (UINT64_MAX - digit) / 10) {
                ps->p = s;
                fail(ps, "the number does not fit 64 bits");
                return;
            }
            x = x * 10 + digit;
        }
        emit(ps, STEP_NUM, 0, x);
        return;
    }
    if (accept(ps, '(')) {
        if (!enter(ps)) return;
        parse_sum(ps);
        ps->depth--;
        if (ps->ok && !accept(ps, ')')) fail(ps, "expected ')'");
        return;
    }
    const char *s = ps->p;
    while (isalnum((unsigned char)*ps->p) || *ps->p == '_') ps->p++;
    size_t len = (size_t)(ps->p - s);
#define IS(name) (len == strlen(name) && strncmp(s, name, len) == 0)
    if (IS("min") || IS("max")) {
        bool is_min = IS("min");
        if (!accept(ps, '(')) {
            fail(ps, "expected '('");
            return;
        }
        if (!enter(ps)) return;
        parse_sum(ps);
        if (ps->ok && !accept(ps, ',')) fail(ps, "expected ','");
        if (ps->ok) parse_sum(ps);
        if (ps->ok && !accept(ps, ')')) fail(ps, "expected ')'");
        ps->depth--;
        if (ps->ok) emit(ps, is_min ? STEP_MIN : STEP_MAX, 0, 0);
        return;
    }
    static const char *const var_names[N_VARS] = {"output", "input", "inputs", "outnumel",
                                                  "rows", "im2col"};
    for (int k = 0; k < N_VARS; k++)
        if (IS(var_names[k])) {
            emit(ps, STEP_VAR, k, 0);
            return;
        }
#undef IS
    ps->p = s;
    fail(ps, "expected a number, a variable (output, input, inputs, outnumel, rows, im2col), "
             "min or max");
}

static void parse_product(parser *ps) {
    parse_factor(ps);
    while (ps->ok && accept(ps, '*')) {
        parse_factor(ps);
        if (ps->ok) emit(ps, STEP_MUL, 0, 0);
    }
}

static void parse_sum(parser *ps) {
    parse_product(ps);
    while (ps->ok && accept(ps, '+')) {
        parse_product(ps);
        if (ps->ok) emit(ps, STEP_ADD, 0, 0);
    }
}

/* Parses expr into r's steps; false with a message in err on a syntax error. */
static bool compile_expr(const char *expr, rule *r, char err[256]) {
    size_t len = strlen(expr);
    parser ps = {.p = expr, .ok = true, .prog = malloc((len + 1) * sizeof *ps.prog)};
    if (!ps.prog) {
        snprintf(err, 256, "out of memory");
        return false;
    }
    parse_sum(&ps);
    skip_ws(&ps);
    if (ps.ok && *ps.p) fail(&ps, "unexpected text");
    if (!ps.ok) {
        memcpy(err, ps.err, sizeof ps.err);
        free(ps.prog);
        return false;
    }
    int depth = 0, deepest = 0;
    for (int i = 0; i < ps.n_prog; i++) {
        depth += ps.prog[i].kind <= STEP_VAR ? 1 : -1;
        if (depth > deepest) deepest = depth;
    }
    r->prog = ps.prog;
    r->n_prog = ps.n_prog;
    r->stack = deepest;
    return true;
}

static uint64_t eval_rule(const rule *r, const vars *v, uint64_t *stack) {
    int top = 0;
    for (int i = 0; i < r->n_prog; i++) {
        const step *s = &r->prog[i];
        switch (s->kind) {
        case STEP_NUM: stack[top++] = s->x; break;
        case STEP_VAR: stack[top++] = v->x[s->var]; break;
        default: {
            uint64_t b = stack[--top], a = stack[top - 1];
            stack[top - 1] = s->kind == STEP_ADD   ? sat_add(a, b)
                             : s->kind == STEP_MUL ? sat_mul(a, b)
                             : s->kind == STEP_MIN ? (a < b ? a : b)
                                                   : (a > b ? a : b);
        }
        }
    }
    return top ? stack[0] : 0;
}

/* ---- the model ------------------------------------------------------------ */

/* Adds a rule for `op`; false with the parse error in err (first byte '\0'
 * when out of memory). */
static bool add_rule(lp_workspace_model *m, const char *op, const char *expr, char err[256]) {
    err[0] = '\0';
    rule *nr = realloc(m->rules, (size_t)(m->n + 1) * sizeof *nr);
    if (!nr) return false;
    m->rules = nr;
    rule r = {.op = strdup(op)};
    if (!r.op) return false;
    if (!compile_expr(expr, &r, err)) {
        free((char *)r.op);
        return false;
    }
    m->rules[m->n++] = r;
    return true;
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
        if (!add_rule(m, op, expr, err)) {
            st = err[0] ? lp_error(d, LP_ERR_USAGE, "--workspace %s: '%s': \"%.80s%s\": %s", path,
                                   op, expr, strlen(expr) > 80 ? "..." : "", err)
                        : lp_error(d, LP_ERR_INTERNAL, "out of memory");
            break;
        }
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
    /* the built-in rules: the op table's workspace column, after the file's */
    for (int id = 1; st == LP_OK && id <= LP_OP_COUNT; id++) {
        const char *expr = lp_op_workspace_of(id);
        char err[256];
        if (expr && !add_rule(m, lp_op_name(id), expr, err))
            st = lp_error(d, LP_ERR_INTERNAL, "built-in workspace rule for %s: %s", lp_op_name(id),
                          err[0] ? err : "out of memory");
    }
    int deepest = 1;
    for (int i = 0; i < m->n; i++)
        if (m->rules[i].stack > deepest) deepest = m->rules[i].stack;
    if (st == LP_OK && !(m->stack = malloc((size_t)deepest * sizeof *m->stack)))
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st != LP_OK) {
        lp_workspace_free(m);
        return st;
    }
    /* resolved once, so a node's rule is one array read: walking the rules
     * backwards, the first rule of each name is the one left */
    for (int i = m->n - 1; i >= 0; i--) {
        const rule *r = &m->rules[i];
        int id = lp_op_lookup(NULL, r->op);
        if (id > 0) m->by_id[id] = r;
        else if (strcmp(r->op, "default") == 0) m->fallback = r;
    }
    *out = m;
    return LP_OK;
}

void lp_workspace_free(lp_workspace_model *m) {
    if (!m) return;
    for (int i = 0; i < m->n; i++) {
        free((char *)m->rules[i].op);
        free(m->rules[i].prog);
    }
    free(m->rules);
    free(m->stack);
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
    const rule *r = id > 0 ? m->by_id[id] : rule_for(m, n->op_type);
    if (!r) r = m->fallback;
    if (!r) return 0;
    const lp_graph *g = L->g;
    vars v = {{0}};
    int32_t y = n->n_outputs > 0 ? n->outputs[0] : -1;
    v.x[VAR_OUTPUT] = bytes_or_0(L, y);
    v.x[VAR_INPUT] = n->n_inputs > 0 ? bytes_or_0(L, n->inputs[0]) : 0;
    for (int k = 0; k < n->n_inputs; k++)
        v.x[VAR_INPUTS] = sat_add(v.x[VAR_INPUTS], bytes_or_0(L, n->inputs[k]));
    uint64_t outnumel;
    if (y >= 0 && lp_shape_numel(&g->values[y].shape, &outnumel)) {
        const lp_shape *s = &g->values[y].shape;
        int64_t last = s->rank > 0 ? s->dims[s->rank - 1].size : 1;
        v.x[VAR_OUTNUMEL] = outnumel;
        v.x[VAR_ROWS] = last > 0 ? outnumel / (uint64_t)last : 0;
    }
    v.x[VAR_IM2COL] = im2col_bytes(L, n);
    return eval_rule(r, &v, m->stack);
}
