/* Placeholder until shape inference and layering land. */
#include "lp_analysis.h"

lp_analysis_options lp_analysis_defaults(void) {
    lp_analysis_options o = {.deploy_dtype = LP_DT_UNDEFINED, .layering = LP_LAYERS_AUTO};
    return o;
}

lp_status lp_analysis_infer_shapes(lp_graph *g, const lp_analysis_options *opt, lp_diag *d) {
    (void)g;
    (void)opt;
    return lp_error(d, LP_ERR_UNSUPPORTED, "analysis: shape inference is not implemented yet");
}
