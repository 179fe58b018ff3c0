/* The graph IR as stable text and as JSON. */
#include "lp_ir.h"

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

static json_t *json_names(const lp_graph *g, const int32_t *idx, int n) {
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(idx[i] >= 0 ? g->values[idx[i]].name : ""));
    return a;
}

static json_t *json_shape(const lp_shape *s) {
    if (s->rank < 0) return json_null();
    json_t *a = json_array();
    for (int i = 0; i < s->rank; i++) {
        const lp_dim *d = &s->dims[i];
        if (d->size >= 0)
            json_array_append_new(a, json_integer(d->size));
        else if (d->sym)
            json_array_append_new(a, json_string(d->sym));
        else
            json_array_append_new(a, json_null());
    }
    return a;
}

void *lp_graph_to_json(const lp_graph *g) {
    json_t *root = json_object();
    json_object_set_new(root, "model", json_string(g->path));
    json_object_set_new(root, "name", json_string(g->name));
    json_object_set_new(root, "ir_version", json_integer(g->ir_version));
    json_object_set_new(root, "opset", json_integer(g->opset));
    json_object_set_new(root, "producer", json_string(g->producer_name));
    json_object_set_new(root, "inputs", json_names(g, g->inputs, g->n_inputs));
    json_object_set_new(root, "outputs", json_names(g, g->outputs, g->n_outputs));

    json_t *nodes = json_array();
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(n->name));
        json_object_set_new(o, "op", json_string(n->op_type));
        json_object_set_new(o, "domain", json_string(n->domain));
        json_object_set_new(o, "file_index", json_integer(n->file_index));
        json_object_set_new(o, "inputs", json_names(g, n->inputs, n->n_inputs));
        json_object_set_new(o, "outputs", json_names(g, n->outputs, n->n_outputs));
        const char *scope = lp_node_meta(n, "pkg.torch.onnx.name_scopes");
        if (scope) json_object_set_new(o, "name_scopes", json_string(scope));
        json_array_append_new(nodes, o);
    }
    json_object_set_new(root, "nodes", nodes);

    json_t *values = json_array();
    for (int i = 0; i < g->n_values; i++) {
        const lp_value *v = &g->values[i];
        json_t *o = json_object();
        json_object_set_new(o, "name", json_string(v->name));
        json_object_set_new(o, "kind", json_string(kind_name(v->kind)));
        json_object_set_new(o, "dtype", v->dtype ? json_string(lp_dtype_name(v->dtype))
                                                 : json_null());
        json_object_set_new(o, "shape", json_shape(&v->shape));
        uint64_t bytes;
        if (v->kind == LP_VALUE_WEIGHT || v->kind == LP_VALUE_CONSTANT) {
            if (lp_value_bytes(v, &bytes)) json_object_set_new(o, "bytes", json_integer((json_int_t)bytes));
            if (v->data.where == LP_DATA_EXTERNAL) {
                json_t *ext = json_object();
                json_object_set_new(ext, "location", json_string(v->data.location));
                json_object_set_new(ext, "offset", json_integer((json_int_t)v->data.offset));
                json_object_set_new(ext, "length", json_integer((json_int_t)v->data.nbytes));
                json_object_set_new(ext, "present", json_boolean(v->data.present));
                json_object_set_new(o, "external", ext);
            }
        }
        json_array_append_new(values, o);
    }
    json_object_set_new(root, "values", values);
    return root;
}
