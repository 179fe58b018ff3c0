#include "lp_codegen.h"

lp_status lp_codegen_not_implemented(lp_diag *d) {
    return lp_error(d, LP_ERR_UNSUPPORTED, "codegen: not implemented yet");
}
