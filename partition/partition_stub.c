#include "lp_partition.h"

lp_status lp_partition_not_implemented(lp_diag *d) {
    return lp_error(d, LP_ERR_UNSUPPORTED, "partition: not implemented yet");
}
