/* split_model MODEL.onnx OUTDIR K
 *
 * Cuts the model's node list into K contiguous chunks of about equal node
 * count and writes each as OUTDIR/card_<k>.onnx, a test driver for
 * lp_frontend_write_submodel. A chunk receives the values it reads that come
 * from a graph input or an earlier chunk, and sends the values it produces
 * that a later chunk reads or that are graph outputs. One line per card goes
 * to stdout: "card_<k>.onnx nodes FIRST..LAST receives N sends M". */
#define _GNU_SOURCE
#include "lp_frontend.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* The boundary of chunk [lo, hi) of the node list. */
typedef struct chunk_io {
    int n_in, n_out;
    int32_t *in, *out;
} chunk_io;

/* Chunk c holds nodes [c*n/k, (c+1)*n/k). */
static int chunk_first(int c, int n_nodes, int k) { return (int)((int64_t)c * n_nodes / k); }

/* The chunk of every node. */
static int *chunk_of_nodes(const lp_graph *g, int k) {
    int *chunk = malloc(((size_t)g->n_nodes + 1) * sizeof *chunk);
    if (!chunk) return NULL;
    for (int c = 0; c < k; c++)
        for (int n = chunk_first(c, g->n_nodes, k); n < chunk_first(c + 1, g->n_nodes, k); n++)
            chunk[n] = c;
    return chunk;
}

/* For each value, the last chunk that reads it (-1 if none). */
static int *last_reader(const lp_graph *g, const int *chunk) {
    int *last = malloc(((size_t)g->n_values + 1) * sizeof *last);
    if (!last) return NULL;
    for (int v = 0; v < g->n_values; v++) last[v] = -1;
    for (int n = 0; n < g->n_nodes; n++)
        for (int i = 0; i < g->nodes[n].n_inputs; i++) {
            int32_t v = g->nodes[n].inputs[i];
            if (v >= 0 && last[v] < chunk[n]) last[v] = chunk[n];
        }
    return last;
}

/* Receives: non-weight values read in [lo, hi) and made before it (graph
 * inputs have no producer). Sends: values made in it and read later or
 * leaving the graph. Both in order of first appearance. */
static void chunk_boundary(const lp_graph *g, int lo, int hi, const int *chunk, const int *last,
                           unsigned char *seen, chunk_io *io) {
    int c = chunk[lo];
    memset(seen, 0, (size_t)g->n_values + 1);
    for (int n = lo; n < hi; n++) {
        const lp_node *node = &g->nodes[n];
        for (int i = 0; i < node->n_inputs; i++) {
            int32_t v = node->inputs[i];
            if (v < 0 || seen[v]) continue;
            seen[v] = 1;
            const lp_value *val = &g->values[v];
            if (val->kind == LP_VALUE_WEIGHT || val->kind == LP_VALUE_CONSTANT) continue;
            if (val->producer < 0 || chunk[val->producer] < c) io->in[io->n_in++] = v;
        }
    }
    for (int n = lo; n < hi; n++) {
        const lp_node *node = &g->nodes[n];
        for (int i = 0; i < node->n_outputs; i++) {
            int32_t v = node->outputs[i];
            if (v >= 0 && (last[v] > c || g->values[v].is_graph_output)) io->out[io->n_out++] = v;
        }
    }
}

static int split(const lp_graph *g, const char *out_dir, int k, lp_diag *d) {
    int *chunk = chunk_of_nodes(g, k);
    int *last = chunk ? last_reader(g, chunk) : NULL;
    unsigned char *seen = malloc((size_t)g->n_values + 1);
    int32_t *in = malloc(((size_t)g->n_values + 1) * sizeof *in);
    int32_t *out = malloc(((size_t)g->n_values + 1) * sizeof *out);
    int *nodes = malloc(((size_t)g->n_nodes + 1) * sizeof *nodes);
    int rc = 0;
    if (!last || !seen || !in || !out || !nodes) {
        fprintf(stderr, "split_model: out of memory\n");
        rc = 1;
    }
    for (int c = 0; c < k && rc == 0; c++) {
        int lo = chunk_first(c, g->n_nodes, k), hi = chunk_first(c + 1, g->n_nodes, k);
        chunk_io io = {.in = in, .out = out};
        chunk_boundary(g, lo, hi, chunk, last, seen, &io);
        for (int n = lo; n < hi; n++) nodes[n - lo] = n;
        char path[4096];
        snprintf(path, sizeof path, "%s/card_%d.onnx", out_dir, c);
        if (lp_frontend_write_submodel(g, nodes, hi - lo, io.in, io.n_in, io.out, io.n_out, path,
                                       d) != LP_OK) {
            rc = 1;
            break;
        }
        printf("card_%d.onnx nodes %d..%d receives %d sends %d\n", c, lo, hi - 1, io.n_in,
               io.n_out);
    }
    free(chunk);
    free(last);
    free(seen);
    free(in);
    free(out);
    free(nodes);
    return rc;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: split_model MODEL.onnx OUTDIR K\n");
        return 2;
    }
    char *end;
    long k = strtol(argv[3], &end, 10);
    if (*end || k < 1) {
        fprintf(stderr, "split_model: K must be a positive integer, not '%s'\n", argv[3]);
        return 2;
    }
    if (mkdir(argv[2], 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "split_model: cannot create '%s': %s\n", argv[2], strerror(errno));
        return 1;
    }
    lp_diag diag = lp_diag_make(argv[1]);
    lp_graph *g = NULL;
    if (lp_frontend_load(argv[1], NULL, &g, &diag) != LP_OK) return 1;
    int rc = 0;
    if (k > g->n_nodes) {
        fprintf(stderr, "split_model: K = %ld exceeds the model's %d nodes\n", k, g->n_nodes);
        rc = 2;
    } else {
        rc = split(g, argv[2], (int)k, &diag);
    }
    lp_graph_free(g);
    return rc;
}
