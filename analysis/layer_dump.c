/* Dumps of the layer IR: an aligned text table, JSON and Graphviz.
 *
 * JSON (lpcc --dump-ir=layers --json, and DIR/layers.json):
 *   {"deploy_dtype": "float16" | null,
 *    "n_layers": N,
 *    "layers": [{"index", "name", "first_node", "last_node" (positions in the
 *                node order after layering), "nodes": [node names],
 *                "weights_bytes", "activation_bytes" (planned peak),
 *                "activation_sum_bytes" (plain sum of node outputs),
 *                "buffer_bytes", "input_bytes", "output_bytes",
 *                "total_bytes" (weights + activation + buffer + input +
 *                output), "flops", "bytes_read", "bytes_written",
 *                "weights", "inputs", "outputs": [value names]}],
 *    "memory_plan": {"arena_bytes", "activation_sum_bytes", "alignment",
 *                    "slots": [{"value", "offset", "bytes", "first",
 *                               "last"}]}}
 * Byte counts are at the deploy dtype. */
#include "lp_outdir.h"
#include "layers_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <string.h>

static const char *fmt_flops(uint64_t f, char buf[32]) {
    if (f >= 1000000000ull)
        snprintf(buf, 32, "%.2f GFLOP", (double)f / 1e9);
    else if (f >= 1000000ull)
        snprintf(buf, 32, "%.2f MFLOP", (double)f / 1e6);
    else
        snprintf(buf, 32, "%" PRIu64 " FLOP", f);
    return buf;
}

void lp_layer_ir_dump_text(const lp_layer_ir *L, FILE *out) {
    const lp_graph *g = L->g;
    char b[10][32];
    int wname = 4;
    for (int j = 0; j < L->n_layers; j++) {
        int len = (int)strlen(L->layers[j].name);
        if (len > wname) wname = len;
    }
    if (wname > 48) wname = 48;
    fprintf(out, "layers of %s: %d layers, %d nodes, deploy dtype %s\n", g->path, L->n_layers,
            g->n_nodes, L->deploy_dtype ? lp_dtype_name(L->deploy_dtype) : "as stored");
    fprintf(out, "%5s  %-*s %6s %11s %12s %12s %12s %12s %14s %12s %12s\n", "index", wname, "name",
            "nodes", "first..last", "weights", "activations", "buffers", "total", "flops",
            "bytes in", "bytes out");
    uint64_t sum_w = 0, sum_f = 0;
    for (int j = 0; j < L->n_layers; j++) {
        const lp_layer *l = &L->layers[j];
        char range[32];
        snprintf(range, sizeof range, "%d..%d", l->first_node, l->last_node);
        fprintf(out, "%5d  %-*.*s %6d %11s %12s %12s %12s %12s %14s %12s %12s\n", j, wname, wname,
                l->name, l->last_node - l->first_node + 1, range, lp_format_bytes(l->weight_bytes, b[0]),
                lp_format_bytes(l->activation_bytes, b[1]), lp_format_bytes(l->buffer_bytes, b[2]),
                lp_format_bytes(l->total_bytes, b[3]), fmt_flops(l->flops, b[4]),
                lp_format_bytes(l->input_bytes, b[5]), lp_format_bytes(l->output_bytes, b[6]));
        sum_w += l->weight_bytes;
        sum_f += l->flops;
    }
    fprintf(out, "sum of layer weights %s, %s; activation arena %s planned for the whole model "
            "(plain sum of node outputs %s)\n",
            lp_format_bytes(sum_w, b[7]), fmt_flops(sum_f, b[8]), lp_format_bytes(L->arena_bytes, b[9]),
            lp_format_bytes(L->activation_sum_bytes, b[0]));
}

static json_t *name_list(const lp_graph *g, const int32_t *vs, int n) {
    json_t *a = json_array();
    for (int i = 0; a && i < n; i++) json_array_append_new(a, json_string(g->values[vs[i]].name));
    return a;
}

#define JINT(x) json_integer((json_int_t)(x))
/* Counts beyond JSON's signed 64-bit integers saturate rather than turn negative. */
static json_t *json_count(uint64_t v) { return json_integer(v > INT64_MAX ? INT64_MAX : (json_int_t)v); }

static json_t *layer_json(const lp_layer_ir *L, int j) {
    const lp_graph *g = L->g;
    const lp_layer *l = &L->layers[j];
    json_t *o = json_object();
    if (!o) return NULL;
    json_t *nodes = json_array();
    for (int i = l->first_node; nodes && i <= l->last_node; i++)
        json_array_append_new(nodes, json_string(g->nodes[i].name ? g->nodes[i].name : ""));
    json_object_set_new(o, "index", JINT(j));
    json_object_set_new(o, "name", json_string(l->name));
    json_object_set_new(o, "first_node", JINT(l->first_node));
    json_object_set_new(o, "last_node", JINT(l->last_node));
    json_object_set_new(o, "nodes", nodes);
    json_object_set_new(o, "weights_bytes", json_count(l->weight_bytes));
    json_object_set_new(o, "activation_bytes", json_count(l->activation_bytes));
    json_object_set_new(o, "activation_sum_bytes", json_count(l->activation_sum_bytes));
    json_object_set_new(o, "buffer_bytes", json_count(l->buffer_bytes));
    json_object_set_new(o, "input_bytes", json_count(l->input_bytes));
    json_object_set_new(o, "output_bytes", json_count(l->output_bytes));
    json_object_set_new(o, "total_bytes", json_count(l->total_bytes));
    json_object_set_new(o, "flops", json_count(l->flops));
    json_object_set_new(o, "bytes_read", json_count(l->bytes_read));
    json_object_set_new(o, "bytes_written", json_count(l->bytes_written));
    json_object_set_new(o, "weights", name_list(g, l->weights, l->n_weights));
    json_object_set_new(o, "inputs", name_list(g, l->inputs, l->n_inputs));
    json_object_set_new(o, "outputs", name_list(g, l->outputs, l->n_outputs));
    return o;
}

void *lp_layer_ir_to_json(const lp_layer_ir *L) {
    json_t *root = json_object(), *layers = json_array(), *plan = json_object(),
           *slots = json_array();
    if (!root || !layers || !plan || !slots) {
        json_decref(root);
        json_decref(layers);
        json_decref(plan);
        json_decref(slots);
        return NULL;
    }
    json_object_set_new(root, "deploy_dtype",
                        L->deploy_dtype ? json_string(lp_dtype_name(L->deploy_dtype)) : json_null());
    json_object_set_new(root, "n_layers", JINT(L->n_layers));
    for (int j = 0; j < L->n_layers; j++) json_array_append_new(layers, layer_json(L, j));
    json_object_set_new(root, "layers", layers);
    for (int i = 0; i < L->n_slots; i++) {
        const lp_value_slot *s = &L->slots[i];
        json_t *o = json_object();
        json_object_set_new(o, "value", json_string(L->g->values[s->value].name));
        json_object_set_new(o, "offset", json_count(s->offset));
        json_object_set_new(o, "bytes", json_count(s->bytes));
        json_object_set_new(o, "first", JINT(s->first_node));
        json_object_set_new(o, "last", JINT(s->last_node));
        json_array_append_new(slots, o);
    }
    json_object_set_new(plan, "arena_bytes", json_count(L->arena_bytes));
    json_object_set_new(plan, "activation_sum_bytes", json_count(L->activation_sum_bytes));
    json_object_set_new(plan, "alignment", JINT(LP_MEMPLAN_ALIGN));
    json_object_set_new(plan, "slots", slots);
    json_object_set_new(root, "memory_plan", plan);
    return root;
}

/* Graphviz names: everything quoted, quotes and backslashes escaped. */
static void dot_str(FILE *f, const char *s) {
    fputc('"', f);
    for (; s && *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

lp_status lp_layer_ir_write_dot(const lp_layer_ir *L, const char *path, lp_diag *d) {
    const lp_graph *g = L->g;
    /* a fresh temporary beside `path`, renamed over it when complete */
    lp_atomic_file af;
    FILE *f = lp_atomic_open(&af, path, d);
    if (!f) return LP_ERR_OUTPUT;
    char b[2][32];
    fputs("digraph layers {\n  rankdir=TB;\n  node [shape=box, fontsize=10];\n", f);
    for (int j = 0; j < L->n_layers; j++) {
        const lp_layer *l = &L->layers[j];
        fprintf(f, "  subgraph cluster_%d {\n    label=", j);
        char label[256];
        snprintf(label, sizeof label, "%d %s: weights %s, total %s", j, l->name,
                 lp_format_bytes(l->weight_bytes, b[0]), lp_format_bytes(l->total_bytes, b[1]));
        dot_str(f, label);
        fputs(";\n", f);
        for (int i = l->first_node; i <= l->last_node; i++) {
            fprintf(f, "    n%d [label=", i);
            char nl[256];
            snprintf(nl, sizeof nl, "%s\\n%s", g->nodes[i].op_type, g->nodes[i].name ? g->nodes[i].name : "");
            /* keep the \n escape: write without escaping backslashes */
            fprintf(f, "\"");
            for (const char *c = nl; *c; c++) {
                if (*c == '"') fputc('\\', f);
                fputc(*c, f);
            }
            fprintf(f, "\"];\n");
        }
        fputs("  }\n", f);
    }
    for (int i = 0; i < g->n_nodes; i++) {
        const lp_node *n = &g->nodes[i];
        for (int k = 0; k < n->n_inputs; k++) {
            int32_t v = n->inputs[k];
            if (v < 0 || g->values[v].kind != LP_VALUE_ACTIVATION || g->values[v].producer < 0) continue;
            fprintf(f, "  n%d -> n%d;\n", g->values[v].producer, i);
        }
    }
    fputs("}\n", f);
    return lp_atomic_commit(&af, d);
}
