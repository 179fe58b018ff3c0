/* lp_codegen.h - the codegen stage; not implemented yet. */
#ifndef LP_CODEGEN_H
#define LP_CODEGEN_H

#include "lp_ir.h"

/* Reports that the stage is not implemented yet. */
lp_status lp_codegen_not_implemented(lp_diag *d);

#endif
