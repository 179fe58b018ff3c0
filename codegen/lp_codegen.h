/* lp_codegen.h - checks on a lowered program before its cards are written. */
#ifndef LP_CODEGEN_H
#define LP_CODEGEN_H

#include "lp_lower.h"

/* Every compute step's op has a kernel family (ops.def's emit column);
 * otherwise LP_ERR_UNSUPPORTED listing each op no program can run with its
 * node count and one node's name, in op order. */
lp_status lp_codegen_check_kernels(const lp_program *prog, const lp_layer_ir *L, lp_diag *d);

#endif
