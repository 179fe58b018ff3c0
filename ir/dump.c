/* The graph IR as stable text and as JSON. */
#include "json_out.h"

#include <jansson.h>
#include <string.h>

static const char *kind_name(lp_value_kind k) {
    switch (k) {
    case LP_VALUE_ACTIVATION: return "activation";
    case LP_VALUE_INPUT: return "input";
    case LP_VALUE_WEIGHT: return "weight";
    case LP_VALUE_CONSTANT: return "constant";
    }
    return "?";
}

void lp_value_print_type(const lp_value *v, FILE *out) {
    fprintf(out, "%s", v->dtype ? lp_dtype_name(v->dtype) : "?");
    if (v->shape.rank < 0) {
        fputs("[?]", out);
        return;
    }
    fputc('[', out);
    for (int i = 0; i < v->shape.rank; i++) {
        const lp_dim *d = &v->shape.dims[i];
        if (i) fputs(", ", out);
        if (d->size >= 0)
            fprintf(out, "%lld", (long long)d->size);
        else
            fputs(d->sym ? d->sym : "?", out);
    }
    fputc(']', out);
}

static void print_value_line(const lp_graph *g, int32_t idx, FILE *out) {
    const lp_value *v = &g->values[idx];
    fprintf(out, "  %%%s : ", v->name);
    lp_value_print_type(v, out);
    uint64_t bytes;
    char buf[32];
    if (v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT) {
        if (lp_value_bytes(v, &bytes)) fprintf(out, "  %s", lp_format_bytes(bytes, buf));
        if (v->data.where == LP_DATA_EXTERNAL)
            fprintf(out, "  external '%s' @%llu%s", v->data.location,
                    (unsigned long long)v->data.offset, v->data.present ? "" : " (absent)");
    }
    fputc('\n', out);
}

static void print_value_list(const lp_graph *g, const int32_t *idx, int n, FILE *out) {
    fputc('(', out);
    for (int i = 0; i < n; i++)
        fprintf(out, "%s%s%s", i ? ", " : "", idx[i] >= 0 ? "%" : "",
                idx[i] >= 0 ? g->values[idx[i]].name : "<none>");
    fputc(')', out);
}

void lp_graph_dump_text(const lp_graph *g, FILE *out) {
    fprintf(out, "graph '%s' from %s: ir_version %lld, opset %lld, producer '%s %s'\n", g->name,
            g->path, (long long)g->ir_version, (long long)g->opset, g->producer_name,
            g->producer_version);
    fprintf(out, "inputs (%d):\n", g->n_inputs);
    for (int i = 0; i < g->n_inputs; i++) print_value_line(g, g->inputs[i], out);
    fprintf(out, "outputs (%d):\n", g->n_outputs);
    for (int i = 0; i < g->n_outputs; i++) print_value_line(g, g->outputs[i], out);
    int n_weights = 0;
    for (int i = 0; i < g->n_values; i++)
        n_weights += g->values[i].kind == LP_VALUE_WEIGHT || g->values[i].kind == LP_VALUE_CONSTANT;
    fprintf(out, "weights and constants (%d):\n", n_weights);
    for (int i = 0; i < g->n_values; i++)
        if (g->values[i].kind == LP_VALUE_WEIGHT || g->values[i].kind == LP_VALUE_CONSTANT)
            print_value_line(g, i, out);
    fprintf(out, "nodes (%d):\n", g->n_nodes);
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        fprintf(out, "  #%d '%s' %s%s%s ", i, n->name, n->domain[0] ? n->domain : "",
                n->domain[0] ? "." : "", n->op_type);
        print_value_list(g, n->inputs, n->n_inputs, out);
        fputs(" -> ", out);
        print_value_list(g, n->outputs, n->n_outputs, out);
        fputc('\n', out);
    }
    fprintf(out, "values (%d):\n", g->n_values);
    for (int i = 0; i < g->n_values; i++) print_value_line(g, i, out);
}

static void names(lp_json_out *w, const char *key, const lp_graph *g, const int32_t *idx, int n) {
    lp_json_begin_row_array(w, key);
    for (int i = 0; i < n; i++) lp_json_string(w, NULL, idx[i] >= 0 ? g->values[idx[i]].name : "");
    lp_json_end(w);
}

static void shape(lp_json_out *w, const lp_shape *s) {
    if (s->rank < 0) {
        lp_json_null(w, "shape");
        return;
    }
    lp_json_begin_row_array(w, "shape");
    for (int i = 0; i < s->rank; i++) {
        const lp_dim *d = &s->dims[i];
        if (d->size >= 0)
            lp_json_int(w, NULL, d->size);
        else if (d->sym)
            lp_json_string(w, NULL, d->sym);
        else
            lp_json_null(w, NULL);
    }
    lp_json_end(w);
}

static void node_json(lp_json_out *w, const lp_graph *g, int i) {
    const lp_node *n = &g->nodes[i];
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "name", n->name);
    lp_json_string(w, "op", n->op_type);
    lp_json_string(w, "domain", n->domain);
    lp_json_int(w, "file_index", n->file_index);
    names(w, "inputs", g, n->inputs, n->n_inputs);
    names(w, "outputs", g, n->outputs, n->n_outputs);
    const char *scope = lp_node_meta(n, "pkg.torch.onnx.name_scopes");
    if (scope) lp_json_string(w, "name_scopes", scope);
    lp_json_end(w);
}

static void value_json(lp_json_out *w, const lp_graph *g, int i) {
    const lp_value *v = &g->values[i];
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "name", v->name);
    lp_json_string(w, "kind", kind_name(v->kind));
    if (v->dtype)
        lp_json_string(w, "dtype", lp_dtype_name(v->dtype));
    else
        lp_json_null(w, "dtype");
    shape(w, &v->shape);
    uint64_t bytes;
    if (v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT) {
        if (lp_value_bytes(v, &bytes)) lp_json_int(w, "bytes", (int64_t)bytes);
        if (v->data.where == LP_DATA_EXTERNAL) {
            lp_json_begin_row_object(w, "external");
            lp_json_string(w, "location", v->data.location);
            lp_json_int(w, "offset", (int64_t)v->data.offset);
            lp_json_int(w, "length", (int64_t)v->data.nbytes);
            lp_json_bool(w, "present", v->data.present);
            lp_json_end(w);
        }
    }
    lp_json_end(w);
}

void lp_graph_write_json(const lp_graph *g, lp_json_out *w) {
    lp_json_begin_object(w, NULL);
    lp_json_string(w, "model", g->path);
    lp_json_string(w, "name", g->name);
    lp_json_int(w, "ir_version", g->ir_version);
    lp_json_int(w, "opset", g->opset);
    lp_json_string(w, "producer", g->producer_name);
    names(w, "inputs", g, g->inputs, g->n_inputs);
    names(w, "outputs", g, g->outputs, g->n_outputs);
    lp_json_begin_array(w, "nodes");
    for (int i = 0; i < g->n_nodes; i++) node_json(w, g, i);
    lp_json_end(w);
    lp_json_begin_array(w, "values");
    for (int i = 0; i < g->n_values; i++) value_json(w, g, i);
    lp_json_end(w);
    lp_json_end(w);
}

void *lp_graph_to_json(const lp_graph *g) {
    lp_json_out *w = lp_json_out_tree();
    lp_graph_write_json(g, w);
    return lp_json_out_take(w);
}
