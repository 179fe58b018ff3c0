/* Layer-wise placement against tensor x pipeline parallelism on the same
 * cards, under one cost model (the formulas are in lp_partition.h). */
#define _GNU_SOURCE
#include "lp_partition.h"
#include "partition_internal.h"

#include <errno.h>
#include <inttypes.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

lp_compare_options lp_compare_defaults(void) {
    return (lp_compare_options){.tp = 8, .pp = 2, .allreduce_latency_s = 12.5e-6};
}

lp_status lp_compare_parse(const char *s, lp_compare_options *o, lp_diag *d) {
    *o = lp_compare_defaults();
    char *copy = strdup(s), *save = NULL;
    if (!copy) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = LP_OK;
    for (char *tok = strtok_r(copy, ",", &save); tok && st == LP_OK; tok = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(tok, '='), *end = NULL;
        double v = eq ? (errno = 0, strtod(eq + 1, &end)) : -1;
        bool number = eq && end != eq + 1 && !*end && !errno && v >= 0 && v <= 1e6;
        if (number && strncmp(tok, "tp=", 3) == 0 && v >= 1 && v == floor(v))
            o->tp = (int)v;
        else if (number && strncmp(tok, "pp=", 3) == 0 && v >= 1 && v == floor(v))
            o->pp = (int)v;
        else if (number && strncmp(tok, "allreduce_us=", 13) == 0)
            o->allreduce_latency_s = v * 1e-6;
        else
            st = lp_error(d, LP_ERR_USAGE,
                          "--compare '%s': expected tp=N,pp=N[,allreduce_us=X] (N >= 1), got '%s'", s, tok);
    }
    free(copy);
    return st;
}

typedef struct fp_ctx {
    const lp_footprint_source *src;
} fp_ctx;

static uint64_t footprint_total(void *ctx, int first, int last) {
    const fp_ctx *c = ctx;
    lp_footprint fp;
    c->src->fn(c->src->ctx, first, last, &fp);
    return fp.total;
}

static double link_time(const lp_target *t, double bytes) {
    return t->link_latency_s + (t->link_bw > 0 ? bytes / t->link_bw : 0);
}

/* The throughput DP on at most tp*pp cards of capacity C; if no split fits
 * device memory, the same DP without that bound (fits_dram false). */
static lp_status layerwise(const lp_layer_ir *L, lp_stage_data *s, const lp_target *t, int cards,
                           lp_compare_side *out, lp_diag *d) {
    int n = L->n_layers;
    int *ends = malloc(sizeof(int) * (size_t)n);
    if (!ends) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    uint64_t cap = t->capacity;
    lp_cards cs = {1, &cap, cards};
    lp_target unbounded = *t;
    double slowest = 0;
    int groups = lp_partition_throughput(&s->m, &cs, 0, ends, &slowest);
    bool fits_dram = groups > 0;
    if (groups == 0) {
        unbounded.dram_bytes = UINT64_MAX;
        s->m.target = &unbounded;
        groups = lp_partition_throughput(&s->m, &cs, 0, ends, &slowest);
    }
    if (groups <= 0) {
        s->m.target = t;
        free(ends);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    *out = (lp_compare_side){.cards = groups, .step_s = slowest, .on_chip = true,
                             .fits_dram = fits_dram};
    for (int g = 0, a = 0; g < groups; a = ends[g] + 1, g++) {
        double st = lp_stage_time(&s->m, &cs, g, a, ends[g]);
        out->latency_s += st;
        out->on_chip &= s->m.footprint.fn(s->m.footprint.ctx, a, ends[g]) <= cap;
        if (a > 0) {
            double c = link_time(t, (double)s->cut_bytes[a]);
            if (c > out->comm_s) out->comm_s = c;
        }
    }
    s->m.target = t;
    free(ends);
    return LP_OK;
}

static double allreduce_time(const lp_compare_options *o, const lp_target *t, double bytes) {
    if (o->tp < 2) return 0;
    double ring = 2.0 * (o->tp - 1) / o->tp * bytes;
    return o->allreduce_latency_s + (t->link_bw > 0 ? ring / t->link_bw : 0);
}

/* Stage of each layer: layers in order, balanced by work (flops + bytes),
 * as a pipeline of equal transformer blocks is split; layer i goes to
 * floor(pp * (work before i + half its own) / total work). */
static int stage_of(const lp_stage_data *s, int n, int pp, int i, double total) {
    double before = 0;
    for (int k = 0; k < i; k++) before += (double)(s->flops[k] + s->bytes[k]);
    double mid = before + 0.5 * (double)(s->flops[i] + s->bytes[i]);
    int st = total > 0 ? (int)(pp * mid / total) : i * pp / n;
    return st < pp ? st : pp - 1;
}

/* pp stages of consecutive layers, each layer split over tp cards. */
static void tensor_pipeline(const lp_layer_ir *L, const lp_stage_data *s, const lp_footprint_source *src,
                            const lp_target *t, const lp_compare_options *o, lp_compare_side *out) {
    int n = L->n_layers, pp = o->pp < n ? o->pp : n;
    double total = 0;
    for (int i = 0; i < n; i++) total += (double)(s->flops[i] + s->bytes[i]);
    *out = (lp_compare_side){.cards = o->tp * pp, .on_chip = true, .fits_dram = true};
    for (int a = 0; a < n;) {
        int b = a, stage = stage_of(s, n, pp, a, total);
        while (b + 1 < n && stage_of(s, n, pp, b + 1, total) == stage) b++;
        lp_footprint fp;
        src->fn(src->ctx, a, b, &fp);
        uint64_t per_card = fp.total / (uint64_t)o->tp;
        bool chip = per_card <= t->capacity;
        out->on_chip &= chip;
        out->fits_dram &= per_card <= t->dram_bytes;
        double bw = chip ? t->chip_bw : t->hbm_bw, time = 0, comm = 0;
        for (int i = a; i <= b; i++) {
            double compute = t->peak_flops > 0 ? (double)s->flops[i] / o->tp / t->peak_flops : 0;
            double memory = bw > 0 ? (double)s->bytes[i] / o->tp / bw : 0;
            double ar = 2 * allreduce_time(o, t, (double)L->layers[i].output_bytes);
            time += (compute > memory ? compute : memory) + (double)s->kernels[i] * t->launch_s + ar;
            comm += ar;
        }
        if (a > 0) {
            double c = link_time(t, (double)s->cut_bytes[a]);
            time += c;
            comm += c;
        }
        out->latency_s += time;
        if (time > out->step_s) out->step_s = time;
        if (comm > out->comm_s) out->comm_s = comm;
        a = b + 1;
    }
}

lp_status lp_compare_run(const lp_layer_ir *L, const lp_target *t, const lp_compare_options *o,
                         uint64_t tokens, lp_compare_result *r, lp_diag *d) {
    *r = (lp_compare_result){.tokens = tokens, .opt = *o};
    if (L->n_layers == 0) return lp_error(d, LP_ERR_UNSUPPORTED, "compare: the model has no layers");
    lp_footprint_source src = lp_partition_source_analysis(L);
    fp_ctx fc = {&src};
    lp_stage_data s;
    if (!lp_stage_data_init(&s, L, &src, (lp_range_cost){L->n_layers, footprint_total, &fc}, t))
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = layerwise(L, &s, t, o->tp * o->pp, &r->layerwise, d);
    if (st == LP_OK) tensor_pipeline(L, &s, &src, t, o, &r->tp_pp);
    lp_stage_data_free(&s);
    return st;
}

static void side_text(const char *name, const lp_compare_side *s, uint64_t tokens, FILE *out) {
    fprintf(out, "  %-11s %3d cards  step %10.4g ms  latency %10.4g ms  %10.4g tokens/s  comm %.4g ms%s%s\n",
            name, s->cards, s->step_s * 1e3, s->latency_s * 1e3,
            s->step_s > 0 ? (double)tokens / s->step_s : 0, s->comm_s * 1e3,
            s->on_chip ? "  on-chip" : "  HBM-bound", s->fits_dram ? "" : "  (exceeds device memory)");
}

void lp_compare_dump_text(const lp_compare_result *r, FILE *out) {
    fprintf(out, "comparison: %" PRIu64 " tokens a step on %d cards (layer-wise vs TP%d x PP%d, "
            "all-reduce latency %.3g us)\n", r->tokens, r->opt.tp * r->opt.pp, r->opt.tp, r->opt.pp,
            r->opt.allreduce_latency_s * 1e6);
    side_text("layer-wise", &r->layerwise, r->tokens, out);
    side_text("TP x PP", &r->tp_pp, r->tokens, out);
    if (r->tp_pp.step_s > 0 && r->layerwise.step_s > 0)
        fprintf(out, "  layer-wise throughput / TP x PP: %.3gx; latency %.3gx\n",
                r->tp_pp.step_s / r->layerwise.step_s, r->layerwise.latency_s / r->tp_pp.latency_s);
}

static json_t *side_json(const lp_compare_side *s, uint64_t tokens) {
    return json_pack("{s:i, s:f, s:f, s:f, s:f, s:b, s:b}", "cards", s->cards, "step_s", s->step_s,
                     "latency_s", s->latency_s, "tokens_per_s",
                     s->step_s > 0 ? (double)tokens / s->step_s : 0.0, "comm_s", s->comm_s, "on_chip",
                     s->on_chip, "fits_dram", s->fits_dram);
}

void *lp_compare_to_json(const lp_compare_result *r) {
    return json_pack("{s:I, s:i, s:i, s:f, s:o, s:o}", "tokens", (json_int_t)r->tokens, "tp", r->opt.tp,
                     "pp", r->opt.pp, "allreduce_latency_s", r->opt.allreduce_latency_s, "layerwise",
                     side_json(&r->layerwise, r->tokens), "tp_pp", side_json(&r->tp_pp, r->tokens));
}
