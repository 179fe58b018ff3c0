/* If nodes whose condition is known at compile time (a shape comparison
 * with the dims bound, an input fixed with --value): the selected branch is
 * inlined in place of the If, during the shape inference walk, so that
 * everything after it sees ordinary nodes.
 *
 * The branch's values get fresh names (prefixed by the If's name and the
 * branch, made unique); values it reads from the enclosing scope (captures)
 * resolve to the enclosing graph's values; the If's outputs become the
 * branch's outputs (through an Identity where the branch passes out a value
 * it does not compute). Bodies nested in the branch keep their captures
 * resolvable by having their outer names rewritten to the new names. Each If
 * is consumed when it is inlined, so the graph grows by at most the sum of
 * the bodies' sizes in the file. */
#include "infer_internal.h"

#include <stdlib.h>
#include <string.h>

bool lp_is_control_flow(const lp_node *n) {
    for (int a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].type == LP_ATTR_GRAPH || n->attrs[a].type == LP_ATTR_GRAPHS) return true;
    int id = lp_node_op(n); /* LP_OP_UNKNOWN in other domains */
    return id == LP_OP_If || id == LP_OP_Loop || id == LP_OP_Scan;
}

const char *lp_control_flow_attr(const lp_node *n) {
    bool is_if = lp_node_op(n) == LP_OP_If;
    if (is_if && lp_node_attr(n, "then_branch")) return "then_branch";
    for (int a = 0; a < n->n_attrs; a++)
        if (n->attrs[a].type == LP_ATTR_GRAPH || n->attrs[a].type == LP_ATTR_GRAPHS) return n->attrs[a].name;
    return is_if ? "then_branch" : "body";
}

typedef struct inliner {
    lp_infer *cx;
    const lp_node *at;    /* the If (a copy: g->nodes is replaced) */
    const lp_graph *b;    /* the selected branch */
    const char *prefix;   /* "<if name>/<branch>/" */
    int32_t *map;         /* [b->n_values]: value in g, or -1 */
} inliner;

#define OOM(cx) lp_error((cx)->d, LP_ERR_INTERNAL, "out of memory")

/* A name for a branch value that no value of g has yet. */
static const char *fresh_name(inliner *in, const char *name) {
    lp_graph *g = in->cx->g;
    const char *s = lp_arena_printf(g->arena, "%s%s", in->prefix, name);
    for (int k = 1; s && lp_graph_find_value(g, s) >= 0; k++)
        s = lp_arena_printf(g->arena, "%s%s_%d", in->prefix, name, k);
    return s;
}

/* The value of g that branch value i becomes: a capture's enclosing value,
 * or a new copy (dtype, declared shape, data) under a fresh name. */
static lp_status map_value(inliner *in, int32_t i, int32_t *out) {
    lp_infer *cx = in->cx;
    lp_graph *g = cx->g;
    if (i < 0) {
        *out = -1;
        return LP_OK;
    }
    if (in->map[i] >= 0) {
        *out = in->map[i];
        return LP_OK;
    }
    const lp_value *bv = &in->b->values[i];
    const char *outer = in->b->outer_names ? in->b->outer_names[i] : NULL;
    int32_t idx;
    if (outer) {
        idx = lp_graph_find_value(g, outer);
        if (idx < 0)
            return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, in->at,
                                 "its branch reads '%s', which the enclosing graph does not define", outer);
    } else {
        const char *name = fresh_name(in, bv->name);
        if (!name || (idx = lp_graph_intern_value(g, name)) < 0) return OOM(cx);
        lp_value *v = &g->values[idx];
        v->kind = bv->kind == LP_VALUE_INPUT ? LP_VALUE_ACTIVATION : bv->kind;
        v->dtype = bv->dtype;
        v->shape = bv->shape;
        v->data = bv->data;
    }
    in->map[i] = idx;
    *out = idx;
    return LP_OK;
}

/* A copy of branch node bn reading and writing g's values. */
static lp_status copy_node(inliner *in, const lp_node *bn, lp_node *out) {
    lp_graph *g = in->cx->g;
    *out = *bn;
    out->op = 0;
    out->file_index = in->at->file_index;
    out->name = bn->name[0] ? lp_arena_printf(g->arena, "%s%s", in->prefix, bn->name) : "";
    out->inputs = lp_arena_array(g->arena, (size_t)(bn->n_inputs ? bn->n_inputs : 1), sizeof(int32_t));
    out->outputs = lp_arena_array(g->arena, (size_t)(bn->n_outputs ? bn->n_outputs : 1), sizeof(int32_t));
    if (!out->name || !out->inputs || !out->outputs) return OOM(in->cx);
    lp_status st;
    for (int k = 0; k < bn->n_inputs; k++)
        if ((st = map_value(in, bn->inputs[k], &out->inputs[k])) != LP_OK) return st;
    for (int k = 0; k < bn->n_outputs; k++)
        if ((st = map_value(in, bn->outputs[k], &out->outputs[k])) != LP_OK) return st;
    /* bodies nested in this node captured names of the branch's scope */
    for (int a = 0; a < bn->n_attrs; a++) {
        lp_graph *s = bn->attrs[a].graph;
        for (int j = 0; s && j < s->n_values; j++) {
            if (!s->outer_names[j]) continue;
            int32_t local = lp_graph_find_value(in->b, s->outer_names[j]), mapped;
            if (local < 0) continue; /* resolved at load; not reached */
            if ((st = map_value(in, local, &mapped)) != LP_OK) return st;
            s->outer_names[j] = g->values[mapped].name;
        }
    }
    return LP_OK;
}

/* Replaces node `at` by the branch's nodes (and Identities for outputs the
 * branch does not compute), keeping g->nodes topological. */
static lp_status inline_branch(lp_infer *cx, int at, const lp_graph *b, const char *branch) {
    lp_graph *g = cx->g;
    const lp_node ifn = g->nodes[at];
    if (b->n_inputs)
        return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, &ifn, "its %s takes %d inputs; an If branch takes none",
                             branch, b->n_inputs);
    if (b->n_outputs != ifn.n_outputs)
        return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, &ifn, "its %s has %d outputs, the If has %d", branch,
                             b->n_outputs, ifn.n_outputs);
    char fallback[32];
    snprintf(fallback, sizeof fallback, "if%d", (int)ifn.file_index);
    inliner in = {.cx = cx, .at = &ifn, .b = b};
    in.prefix = lp_arena_printf(g->arena, "%s/%s/", ifn.name[0] ? ifn.name : fallback, branch);
    in.map = malloc((size_t)(b->n_values ? b->n_values : 1) * sizeof *in.map);
    bool *passed = calloc((size_t)(ifn.n_outputs ? ifn.n_outputs : 1), sizeof *passed);
    if (!in.prefix || !in.map || !passed) {
        free(in.map);
        free(passed);
        return OOM(cx);
    }
    for (int i = 0; i < b->n_values; i++) in.map[i] = -1;
    /* an output the branch computes becomes the If's output value itself, so
     * its name (a graph output's, say) stays; others pass through Identity */
    int n_ident = 0;
    for (int k = 0; k < ifn.n_outputs; k++) {
        int32_t bo = b->outputs[k], io = ifn.outputs[k];
        if (io >= 0 && b->values[bo].producer >= 0 && in.map[bo] < 0) {
            in.map[bo] = io;
            lp_value *v = &g->values[io];
            if (v->shape.rank < 0 && !v->dtype) {
                v->dtype = b->values[bo].dtype;
                v->shape = b->values[bo].shape;
            }
            passed[k] = true;
        } else if (io >= 0) {
            n_ident++;
        }
    }
    int n_new = b->n_nodes + n_ident;
    size_t total = (size_t)g->n_nodes - 1 + (size_t)n_new;
    lp_status st = LP_OK;
    /* the new nodes are built aside, then moved in: the array grows
     * geometrically, so many Ifs cost at most twice the final graph */
    lp_node *fresh = malloc((size_t)(n_new ? n_new : 1) * sizeof *fresh);
    if (!fresh || total > INT32_MAX) st = OOM(cx);
    for (int i = 0; st == LP_OK && i < b->n_nodes; i++) st = copy_node(&in, &b->nodes[i], &fresh[i]);
    for (int k = 0, j = b->n_nodes; st == LP_OK && k < ifn.n_outputs; k++) {
        if (passed[k] || ifn.outputs[k] < 0) continue;
        lp_node *id = &fresh[j++];
        *id = (lp_node){.op_type = "Identity", .domain = "", .file_index = ifn.file_index,
                        .n_inputs = 1, .n_outputs = 1};
        id->name = lp_arena_printf(g->arena, "%soutput_%d", in.prefix, k);
        id->inputs = lp_arena_alloc(g->arena, sizeof(int32_t));
        id->outputs = lp_arena_alloc(g->arena, sizeof(int32_t));
        if (!id->name || !id->inputs || !id->outputs) st = OOM(cx);
        else st = map_value(&in, b->outputs[k], &id->inputs[0]);
        if (st == LP_OK) id->outputs[0] = ifn.outputs[k];
    }
    free(in.map);
    free(passed);
    lp_node *nodes = g->nodes;
    if (st == LP_OK && total > (size_t)cx->nodes_cap) {
        size_t cap = total > (size_t)INT32_MAX / 2 ? total : total * 2;
        nodes = lp_arena_array(g->arena, cap, sizeof *nodes);
        if (!nodes) st = OOM(cx);
        else memcpy(nodes, g->nodes, (size_t)g->n_nodes * sizeof *nodes);
        cx->nodes_cap = (int)cap;
    }
    if (st != LP_OK) {
        free(fresh);
        return st;
    }
    memmove(nodes + at + n_new, nodes + at + 1, (size_t)(g->n_nodes - at - 1) * sizeof *nodes);
    memcpy(nodes + at, fresh, (size_t)n_new * sizeof *nodes);
    free(fresh);
    g->nodes = nodes;
    g->n_nodes = (int)total;
    for (int i = at; i < g->n_nodes; i++)
        for (int k = 0; k < nodes[i].n_outputs; k++)
            if (nodes[i].outputs[k] >= 0) g->values[nodes[i].outputs[k]].producer = i;
    /* captured values must be computed before the If, as ONNX requires */
    for (int i = at; i < at + n_new; i++)
        for (int k = 0; k < nodes[i].n_inputs; k++) {
            int32_t v = nodes[i].inputs[k];
            if (v >= 0 && g->values[v].producer >= i)
                return lp_node_error(cx->d, LP_ERR_INVALID_MODEL, &ifn,
                                     "its %s reads '%s', which is computed after the If", branch,
                                     g->values[v].name);
        }
    /* the known-values table grows with the new values */
    lp_sval **known = realloc(cx->known, (size_t)g->n_values * sizeof *known);
    if (!known) return OOM(cx);
    for (int i = cx->n_known; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        known[i] = v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT ? lp_fold_from_data(g->arena, v) : NULL;
    }
    cx->known = known;
    cx->n_known = g->n_values;
    return LP_OK;
}

lp_status lp_fold_if(lp_infer *cx, int at, bool *folded, char *why, size_t why_size) {
    const lp_node *n = &cx->g->nodes[at];
    *folded = false;
    if (lp_node_op(n) != LP_OP_If) { /* the default domain's If only */
        snprintf(why, why_size, "%s is not unrolled at compile time", n->op_type);
        return LP_OK;
    }
    const lp_attr *ta = lp_node_attr(n, "then_branch"), *ea = lp_node_attr(n, "else_branch");
    if (!ta || !ta->graph || !ea || !ea->graph)
        return lp_infer_bad(cx, n, "an If needs the graph attributes then_branch and else_branch");
    const lp_value *cv = lp_infer_input(cx, n, 0);
    if (!cv) return lp_infer_bad(cx, n, "an If needs its condition input");
    const lp_sval *c = lp_infer_known(cx, n, 0);
    if (!c || c->n != 1 || c->e[0].kind != LP_EL_NUM) {
        snprintf(why, why_size,
                 "its condition '%.200s' is known only at run time, so no branch can be chosen "
                 "(bind the dims it depends on with --dim or --shapes, or fix the inputs it reads "
                 "with --value NAME=V)", cv->name);
        return LP_OK;
    }
    bool then = c->e[0].v != 0;
    lp_status st = inline_branch(cx, at, then ? ta->graph : ea->graph, then ? "then_branch" : "else_branch");
    if (st == LP_OK) *folded = true;
    return st;
}
