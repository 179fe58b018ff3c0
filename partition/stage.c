/* lp_partition_stage: command-line text -> options -> plan (run or loaded)
 * -> validated plan -> its per-card memory plan, checked. */
#define _GNU_SOURCE
#include "lp_partition.h"

#include <errno.h>
#include <stdint.h>
#include <fnmatch.h>
#include <stdlib.h>
#include <string.h>

/* SIZE[,SIZE...]: every entry a size above 0; an empty entry (a stray
 * comma) is an error, not skipped. */
static lp_status parse_caps(const char *arg, uint64_t **caps, int *n, lp_diag *d) {
    size_t count = 1;
    for (const char *s = arg; *s; s++) count += *s == ',';
    *n = 0;
    if (count > (size_t)INT32_MAX)
        return lp_error(d, LP_ERR_USAGE, "--capacity: more than %d entries", INT32_MAX);
    *caps = malloc(sizeof(uint64_t) * count);
    if (!*caps) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    const char *tok = arg;
    for (size_t i = 0; i < count; i++) {
        const char *comma = strchr(tok, ',');
        size_t len = comma ? (size_t)(comma - tok) : strlen(tok);
        char *entry = strndup(tok, len);
        if (!entry) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        const char *why = NULL;
        size_t lead = strspn(entry, " \t");
        if (!entry[lead])
            why = count == 1 ? "no size given" : "empty entry (a stray comma?)";
        else if (!(why = lp_size_error(entry, &(*caps)[i])) && (*caps)[i] == 0)
            why = "a card must hold at least one byte";
        if (why) {
            lp_status st = count == 1
                ? lp_error(d, LP_ERR_USAGE, "--capacity '%s': %s (e.g. 31MiB, 40MB, 1GiB)", arg, why)
                : lp_error(d, LP_ERR_USAGE, "--capacity '%s': entry %zu '%s': %s (e.g. 31MiB, 40MB, "
                           "1GiB)", arg, i + 1, entry, why);
            free(entry);
            return st;
        }
        free(entry);
        tok = comma ? comma + 1 : tok + len;
    }
    *n = (int)count;
    return LP_OK;
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

/* --pin PATTERN=CARD: every layer whose name matches the glob goes to CARD.
 * Patterns may overlap: a layer two pins send to the same card is pinned
 * once; to two different cards is an error naming both pins. The pins come
 * out in layer order, as lp_partition_run expects. */
static lp_status parse_pins(const lp_layer_ir *L, const lp_partition_request *r, lp_pin **pins, int *n,
                            lp_diag *d) {
    int n_layers = L->n_layers;
    *n = 0;
    *pins = NULL;
    int *card_of = malloc(sizeof(int) * (size_t)(n_layers + 1)); /* -1: not pinned */
    int *pin_of = malloc(sizeof(int) * (size_t)(n_layers + 1));  /* the --pin that set it */
    lp_status st = LP_OK;
    if (!card_of || !pin_of) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int l = 0; st == LP_OK && l < n_layers; l++) card_of[l] = -1;
    for (int i = 0; st == LP_OK && i < r->n_pins; i++) {
        const char *eq = strrchr(r->pins[i], '=');
        char *end = NULL;
        errno = 0;
        long card = eq && eq[1] ? strtol(eq + 1, &end, 10) : -1;
        if (!eq || eq == r->pins[i] || !eq[1] || *end || card < 0 || errno || card > INT32_MAX) {
            st = lp_error(d, LP_ERR_USAGE, "--pin '%s': expected PATTERN=CARD (CARD a number 0..%d)",
                          r->pins[i], INT32_MAX);
            break;
        }
        char *pat = strndup(r->pins[i], (size_t)(eq - r->pins[i]));
        if (!pat) {
            st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
            break;
        }
        int matched = 0;
        for (int l = 0; l < n_layers && st == LP_OK; l++) {
            if (!L->layers[l].name || fnmatch(pat, L->layers[l].name, 0) != 0) continue;
            matched++;
            if (card_of[l] >= 0 && card_of[l] != (int)card)
                st = lp_error(d, LP_ERR_USAGE, "--pin '%s' and --pin '%s' both match layer %d '%s' "
                              "but send it to card %d and card %ld", r->pins[pin_of[l]], r->pins[i], l,
                              L->layers[l].name, card_of[l], card);
            else if (card_of[l] < 0) {
                card_of[l] = (int)card;
                pin_of[l] = i;
                (*n)++;
            }
        }
        free(pat);
        if (st == LP_OK && !matched)
            st = lp_error(d, LP_ERR_USAGE, "--pin '%s': matches no layer name", r->pins[i]);
    }
    if (st == LP_OK) {
        *pins = malloc(sizeof(lp_pin) * (size_t)(*n + 1));
        if (!*pins) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    if (st == LP_OK) {
        int k = 0;
        for (int l = 0; l < n_layers; l++)
            if (card_of[l] >= 0) (*pins)[k++] = (lp_pin){l, card_of[l]};
    } else {
        *n = 0;
    }
    free(card_of);
    free(pin_of);
    return st;
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
    if (st == LP_OK && r->tier) st = lp_target_set_tier(&o.target, r->tier, d);
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
    /* the memory stage: once, on the validated plan, kept in it */
    if (st == LP_OK) st = lp_plan_place_memory(*out, L, d);
    if (st == LP_OK) st = lp_plan_validate_memory(*out, L, &src, d);
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
