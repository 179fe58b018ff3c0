/* lp_runtime.h - the runtime stage; not implemented yet. */
#ifndef LP_RUNTIME_H
#define LP_RUNTIME_H

#include "lp_ir.h"

/* Reports that the stage is not implemented yet. */
lp_status lp_runtime_not_implemented(lp_diag *d);

#endif
