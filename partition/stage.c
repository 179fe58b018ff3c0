/* lp_partition_stage: command-line text -> options -> plan (run or loaded)
 * -> validated plan. */
#define _GNU_SOURCE
#include "lp_partition.h"

#include <errno.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

static lp_status parse_caps(const char *arg, uint64_t **caps, int *n, lp_diag *d) {
    int count = 1;
    for (const char *s = arg; *s; s++) count += *s == ',';
    *caps = malloc(sizeof(uint64_t) * (size_t)count);
    char *copy = strdup(arg);
    if (!*caps || !copy) {
        free(copy);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    *n = 0;
    lp_status st = LP_OK;
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        if (!lp_parse_size(tok, &(*caps)[*n]) || (*caps)[*n] == 0) {
            st = lp_error(d, LP_ERR_USAGE,
                          "--capacity '%s': not a size (e.g. 31MiB, 40MB, 1GiB; units B, KB, KiB, MB, "
                          "MiB, GB, GiB)", tok);
            break;
        }
        (*n)++;
    }
    free(copy);
    if (st == LP_OK && *n == 0) st = lp_error(d, LP_ERR_USAGE, "--capacity: no size given");
    return st;
}

/* A layer by index or exact name. */
static int find_layer(const lp_layer_ir *L, const char *s) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (!errno && *s && !*end) return v >= 0 && v < L->n_layers ? (int)v : -1;
    for (int i = 0; i < L->n_layers; i++)
        if (L->layers[i].name && strcmp(L->layers[i].name, s) == 0) return i;
    return -1;
}

static lp_status parse_cuts(const lp_layer_ir *L, const char *arg, int **cuts, int *n, lp_diag *d) {
    int count = 1;
    for (const char *s = arg; *s; s++) count += *s == ',';
    *cuts = malloc(sizeof(int) * (size_t)count);
    char *copy = strdup(arg);
    lp_status st = LP_OK;
    if (!*cuts || !copy) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    *n = 0;
    char *save = NULL;
    for (char *tok = st == LP_OK ? strtok_r(copy, ",", &save) : NULL; tok; tok = strtok_r(NULL, ",", &save)) {
        int l = find_layer(L, tok);
        if (l < 0) {
            st = lp_error(d, LP_ERR_USAGE, "--cut-after '%s': no such layer (index 0..%d or a name)", tok,
                          L->n_layers - 1);
            break;
        }
        (*cuts)[(*n)++] = l;
    }
    free(copy);
    return st;
}

/* --pin PATTERN=CARD: every layer whose name matches the glob goes to CARD. */
static lp_status parse_pins(const lp_layer_ir *L, const lp_partition_request *r, lp_pin **pins, int *n,
                            lp_diag *d) {
    *n = 0;
    *pins = malloc(sizeof(lp_pin) * (size_t)(L->n_layers + 1));
    if (!*pins) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; i < r->n_pins; i++) {
        const char *eq = strrchr(r->pins[i], '=');
        char *end;
        long card = eq ? strtol(eq + 1, &end, 10) : -1;
        if (!eq || eq == r->pins[i] || !eq[1] || *end || card < 0)
            return lp_error(d, LP_ERR_USAGE, "--pin '%s': expected PATTERN=CARD", r->pins[i]);
        char *pat = strndup(r->pins[i], (size_t)(eq - r->pins[i]));
        if (!pat) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        int matched = 0;
        for (int l = 0; l < L->n_layers; l++)
            if (L->layers[l].name && fnmatch(pat, L->layers[l].name, 0) == 0 && *n < L->n_layers) {
                (*pins)[(*n)++] = (lp_pin){l, (int)card};
                matched++;
            }
        free(pat);
        if (!matched) return lp_error(d, LP_ERR_USAGE, "--pin '%s': matches no layer name", r->pins[i]);
    }
    /* in layer order, as lp_partition_run expects */
    for (int i = 1; i < *n; i++)
        for (int k = i; k > 0 && (*pins)[k].layer < (*pins)[k - 1].layer; k--) {
            lp_pin t = (*pins)[k];
            (*pins)[k] = (*pins)[k - 1];
            (*pins)[k - 1] = t;
        }
    return LP_OK;
}

lp_status lp_partition_stage(const lp_layer_ir *L, const lp_partition_request *r, lp_plan **out,
                             lp_diag *d) {
    *out = NULL;
    lp_partition_options o = lp_partition_defaults();
    uint64_t *caps = NULL, *loaded_caps = NULL;
    int *cuts = NULL, *ends = NULL, *shard_counts = NULL;
    lp_pin *pins = NULL;
    lp_status st = LP_OK;
    if (r->target) st = lp_target_load(r->target, &o.target, d);
    if (st == LP_OK && r->algo && !lp_algo_from_name(r->algo, &o.algo))
        st = lp_error(d, LP_ERR_USAGE, "--algo %s: expected greedy, dp or throughput", r->algo);
    if (st == LP_OK && r->capacity) st = parse_caps(r->capacity, &caps, &o.n_caps, d);
    o.caps = caps;
    o.cards = r->cards;
    o.no_split = r->no_split;
    o.tokens = r->tokens;
    if (st == LP_OK && r->cut_after) st = parse_cuts(L, r->cut_after, &cuts, &o.n_cuts, d);
    o.cuts = cuts;
    if (st == LP_OK && r->n_pins) st = parse_pins(L, r, &pins, &o.n_pins, d);
    o.pins = pins;
    lp_footprint_source src = lp_partition_source_analysis(L);
    if (st == LP_OK && r->plan_file) {
        int n_groups = 0;
        st = lp_plan_load_ends(r->plan_file, L, &ends, &n_groups, &o, &loaded_caps, &shard_counts, d);
        if (st == LP_OK) st = lp_plan_from_ends(L, &src, &o, ends, n_groups, out, d);
    } else if (st == LP_OK) {
        st = lp_partition_run(L, &src, &o, out, d);
    }
    if (st == LP_OK) st = lp_plan_validate(*out, L, &src, d);
    if (st != LP_OK && *out) {
        lp_plan_free(*out);
        *out = NULL;
    }
    free(caps);
    free(loaded_caps);
    free(cuts);
    free(ends);
    free(shard_counts);
    free(pins);
    return st;
}
