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

#include "json_out.h"

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

static void name_list(lp_json_out *w, const char *key, const lp_graph *g, const int32_t *vs, int n) {
    lp_json_begin_row_array(w, key);
    for (int i = 0; i < n; i++) lp_json_string(w, NULL, g->values[vs[i]].name);
    lp_json_end(w);
}

/* Counts beyond JSON's signed 64-bit integers saturate rather than turn negative. */
static void count(lp_json_out *w, const char *key, uint64_t v) {
    lp_json_int(w, key, v > INT64_MAX ? INT64_MAX : (int64_t)v);
}

static void layer_json(lp_json_out *w, const lp_layer_ir *L, int j) {
    const lp_graph *g = L->g;
    const lp_layer *l = &L->layers[j];
    lp_json_begin_row_object(w, NULL);
    lp_json_int(w, "index", j);
    lp_json_string(w, "name", l->name);
    lp_json_int(w, "first_node", l->first_node);
    lp_json_int(w, "last_node", l->last_node);
    lp_json_begin_row_array(w, "nodes");
    for (int i = l->first_node; i <= l->last_node; i++) lp_json_string(w, NULL, g->nodes[i].name);
    lp_json_end(w);
    count(w, "weights_bytes", l->weight_bytes);
    count(w, "activation_bytes", l->activation_bytes);
    count(w, "activation_sum_bytes", l->activation_sum_bytes);
    count(w, "buffer_bytes", l->buffer_bytes);
    count(w, "input_bytes", l->input_bytes);
    count(w, "output_bytes", l->output_bytes);
    count(w, "total_bytes", l->total_bytes);
    count(w, "flops", l->flops);
    count(w, "bytes_read", l->bytes_read);
    count(w, "bytes_written", l->bytes_written);
    name_list(w, "weights", g, l->weights, l->n_weights);
    name_list(w, "inputs", g, l->inputs, l->n_inputs);
    name_list(w, "outputs", g, l->outputs, l->n_outputs);
    lp_json_end(w);
}

static void slot_json(lp_json_out *w, const lp_layer_ir *L, int i) {
    const lp_value_slot *s = &L->slots[i];
    lp_json_begin_row_object(w, NULL);
    lp_json_string(w, "value", L->g->values[s->value].name);
    count(w, "offset", s->offset);
    count(w, "bytes", s->bytes);
    lp_json_int(w, "first", s->first_node);
    lp_json_int(w, "last", s->last_node);
    lp_json_end(w);
}

void lp_layer_ir_write_json(const lp_layer_ir *L, lp_json_out *w) {
    lp_json_begin_object(w, NULL);
    if (L->deploy_dtype)
        lp_json_string(w, "deploy_dtype", lp_dtype_name(L->deploy_dtype));
    else
        lp_json_null(w, "deploy_dtype");
    lp_json_int(w, "n_layers", L->n_layers);
    lp_json_begin_array(w, "layers");
    for (int j = 0; j < L->n_layers; j++) layer_json(w, L, j);
    lp_json_end(w);
    lp_json_begin_object(w, "memory_plan");
    count(w, "arena_bytes", L->arena_bytes);
    count(w, "activation_sum_bytes", L->activation_sum_bytes);
    lp_json_int(w, "alignment", LP_MEMPLAN_ALIGN);
    lp_json_begin_array(w, "slots");
    for (int i = 0; i < L->n_slots; i++) slot_json(w, L, i);
    lp_json_end(w);
    lp_json_end(w);
    lp_json_end(w);
}

void *lp_layer_ir_to_json(const lp_layer_ir *L) {
    lp_json_out *w = lp_json_out_tree();
    lp_layer_ir_write_json(L, w);
    return lp_json_out_take(w);
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
