/* Shared inside partition/: the per-layer figures of the throughput model. */
#ifndef LP_PARTITION_INTERNAL_H
#define LP_PARTITION_INTERNAL_H

#include "lp_partition.h"

typedef struct lp_stage_data {
    uint64_t *flops, *bytes, *kernels, *cut_bytes;
    lp_stage_model m;
} lp_stage_data;

/* Fills per-layer flops, bytes moved, kernel launches and the bytes that
 * cross a cut before each layer; m is ready for lp_stage_time(). */
bool lp_stage_data_init(lp_stage_data *s, const lp_layer_ir *L, const lp_footprint_source *src,
                        lp_range_cost footprint, const lp_target *t);
void lp_stage_data_free(lp_stage_data *s);

#endif
