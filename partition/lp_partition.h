/* lp_partition.h - the partition stage; not implemented yet. */
#ifndef LP_PARTITION_H
#define LP_PARTITION_H

#include "lp_ir.h"

/* Reports that the stage is not implemented yet. */
lp_status lp_partition_not_implemented(lp_diag *d);

#endif
