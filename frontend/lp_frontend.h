/* lp_frontend.h - ONNX model file -> lp_graph.
 *
 *     lp_diag diag = lp_diag_make("model.onnx");
 *     lp_load_options opt = {.require_weights = false};
 *     lp_graph *g = NULL;
 *     lp_status st = lp_frontend_load("model.onnx", &opt, &g, &diag);
 *     if (st != LP_OK) return st;   // diag printed "model.onnx: error: ..."
 *     ...
 *     lp_graph_free(g);
 *
 * The file is read with pread (never mapped), without the raw_data of its
 * large initializers and constants, unpacked with protobuf-c, converted and
 * released; no protobuf type is visible past this header. Large inline
 * tensors (LP_DATA_FILE) stay in the model file, which the graph keeps open,
 * and weights stored as external data are located and checked but not read:
 * lp_frontend_read_weight() reads either when a stage needs the bytes. A
 * file that was truncated since is then a clear error, never a crash.
 */
#ifndef LP_FRONTEND_H
#define LP_FRONTEND_H

#include "lp_ir.h"
#include "lp_outdir.h"

typedef struct lp_load_options {
    /* A missing external-data file is an error rather than a warning. */
    bool require_weights;
} lp_load_options;

/* Protobuf refuses messages of 2 GiB or more; larger models need external data. */
#define LP_PROTOBUF_LIMIT ((uint64_t)2 << 30)

lp_status lp_frontend_load(const char *path, const lp_load_options *opt, lp_graph **out,
                           lp_diag *d);

/* Same, from bytes in memory; external data resolves against `path`'s folder. */
lp_status lp_frontend_load_buffer(const void *bytes, size_t len, const char *path,
                                  const lp_load_options *opt, lp_graph **out, lp_diag *d);

/* Reads an ONNX TensorProto file (as the backend tests' input_0.pb) into
 * *out, its bytes inline in g's arena. A file that cannot be read or is not
 * a tensor is a usage error (it names a command-line argument). */
lp_status lp_frontend_load_tensor_file(lp_graph *g, const char *path, lp_tensor *out, lp_diag *d);

/* Copies a weight's or constant's bytes (packed as raw_data) into dst, which
 * holds dst_size bytes; reads the model or external file on demand. */
lp_status lp_frontend_read_weight(const lp_graph *g, const lp_value *v, void *dst,
                                  uint64_t dst_size, lp_diag *d);

/* Copies bytes [offset, offset + len) of tensor data t (a value's or an
 * attribute's) into dst; `name` names the tensor in errors. */
lp_status lp_frontend_read_tensor(const lp_graph *g, const lp_tensor_data *t, const char *name,
                                  uint64_t offset, void *dst, uint64_t len, lp_diag *d);

/* Checks an external-data `location` against the model folder `dir`:
 * relative, no "..", and (when the file exists) not a link that leaves the
 * folder. On success *resolved is an arena copy of the path to open and
 * *exists says whether it is there. */
lp_status lp_frontend_resolve_external(lp_arena *a, const char *dir, const char *location,
                                       const char **resolved, bool *exists, lp_diag *d);

/* Writes the nodes `nodes` (indices into g->nodes, in execution order) as a
 * standalone ONNX model at `path`: `inputs` and `outputs` (value indices)
 * become its graph inputs and outputs, typed from g->values (symbolic dims
 * as dim_param, unknown ones empty; an unknown element type is an error);
 * the weights and constants the nodes read become initializers.
 *
 *     int nodes[] = {4, 5, 6};
 *     int32_t in[] = {x}, out[] = {y};
 *     st = lp_frontend_write_submodel(g, nodes, 3, in, 1, out, 1, "out/card_1.onnx", &diag);
 *
 * Inline bytes are written as raw_data. External data keeps its location
 * when `path` is in the model's own folder; otherwise present bytes are
 * copied into "<path>.data" next to the sub-model, and absent ones are
 * declared with their original location, offset and length (the graph is
 * complete, but the file must be supplied before it can run). The files are
 * written in a staging folder beside `path` and moved into place once both
 * are complete; on failure no file is left behind. */
lp_status lp_frontend_write_submodel(const lp_graph *g, const int *nodes, int n_nodes,
                                     const int32_t *inputs, int n_inputs, const int32_t *outputs,
                                     int n_outputs, const char *path, lp_diag *d);

/* The same, as file `name` of output folder `od` (and "<name>.data" there),
 * which lp_outdir_commit moves into place with the run's other files;
 * external data is re-referenced in place when the folder is the model's. */
lp_status lp_frontend_write_submodel_in(const lp_graph *g, const int *nodes, int n_nodes,
                                        const int32_t *inputs, int n_inputs, const int32_t *outputs,
                                        int n_outputs, lp_outdir *od, const char *name, lp_diag *d);

#endif
