#include "lp_runtime.h"

lp_status lp_runtime_not_implemented(lp_diag *d) {
    return lp_error(d, LP_ERR_UNSUPPORTED, "runtime: not implemented yet");
}
