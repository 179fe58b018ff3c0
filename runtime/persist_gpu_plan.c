/* persist_gpu_plan.c - the GPU persistent kernel's layout of a program
 * (persist_gpu_plan.h). */
#include "persist_gpu_plan.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

pk_shape pk_gemm_shape(int64_t M, int64_t N, int64_t K, int64_t extra, int blocks) {
    int64_t tiles = N / 8, P = K / 32;
    int g0 = (int)((tiles + blocks - 1) / blocks);
    g0 = g0 <= 1 ? 1 : g0 == 2 ? 2 : 4; /* the unit shapes the kernel is built for */
    int64_t lda_bytes = (K + 8) * 2, mpad = (M + 15) / 16 * 16;
    /* with the prefetch, without it, then with one tile a unit */
    for (int attempt = 0; attempt < 3; attempt++) {
        int gg = attempt == 2 ? 1 : g0;
        int64_t pre = attempt == 0 ? (int64_t)gg * P * 512 : 0;
        if (pre > PK_PREFETCH) continue;
        int64_t per_row = lda_bytes + (int64_t)PK_WARPS * gg * 8 * 4;
        int64_t rows = ((int64_t)PK_SMEM - pre - extra) / per_row / 16 * 16;
        int64_t lim = gg == 1 ? 128 : 16; /* the unit shapes built: G 1 with 1-8 row tiles, G 2 and 4 with 1 */
        if (rows > mpad) rows = (mpad + 15) / 16 * 16;
        if (rows > lim) rows = lim;
        int64_t mt = 1;
        while (mt * 2 * 16 <= rows) mt *= 2; /* 1, 2, 4 or 8 row tiles */
        if (rows >= 16) return (pk_shape){gg, (int)(mt * 16), pre};
    }
    return (pk_shape){1, 0, 0};
}

int64_t pk_ln_bytes(const lp_persist_phase *g) { return g->ln ? 2 * g->k * 2 : 0; }

static bool overlaps(uint64_t a0, uint64_t a1, uint64_t b0, uint64_t b1) { return a0 < b1 && b0 < a1; }

bool pk_packable(const lp_persist_program *p, int i, int blocks) {
    const lp_persist_phase *g = &p->phases[i];
    if (g->kind != LP_PERSIST_GEMM || g->a.dtype != g->b.dtype || (g->b.dtype != 10 && g->b.dtype != 16) ||
        g->k % 32 != 0 || g->n % 8 != 0 || g->a.offset % 16 != 0 || g->b.offset % 16 != 0)
        return false;
    if (g->ln && (g->scale.dtype != g->a.dtype || g->scale.offset % 16 != 0 ||
                  (g->ln_bias.dtype && (g->ln_bias.dtype != g->a.dtype || g->ln_bias.offset % 16 != 0))))
        return false;
    if (pk_gemm_shape(g->m, g->n, g->k, pk_ln_bytes(g), blocks).mc < 16) return false;
    uint64_t w0 = g->b.offset, w1 = w0 + (uint64_t)(g->k * g->n) * 2;
    for (int j = 0; j < p->n_phases; j++) {
        const lp_persist_phase *q = &p->phases[j];
        if (q->kind == LP_PERSIST_GEMM && q->b.offset == w0 && q->k == g->k && q->n == g->n &&
            q->trans_w == g->trans_w && q->b.dtype == g->b.dtype)
            continue; /* the same weight read the same way */
        if (q->kind == LP_PERSIST_NODE) {
            const lp_card_node *n = p->nodes[q->node];
            for (int k = 0; k < n->n_inputs; k++)
                if (n->inputs[k].region == LP_CARD_MEMORY &&
                    overlaps(w0, w1, n->inputs[k].offset, n->inputs[k].offset + n->inputs[k].bytes))
                    return false;
            continue;
        }
        const lp_persist_view *vs[7] = {&q->a, &q->b, &q->bias, &q->scale, &q->epi.res, &q->out, &q->ln_bias};
        for (int k = 0; k < 7; k++) {
            if (vs[k]->rank == 0 && vs[k]->offset == 0 && vs[k]->dtype == 0) continue;
            uint64_t lo = vs[k]->offset,
                     end = lo + (uint64_t)lp_persist_view_extent(vs[k]) * (uint64_t)lp_persist_esize(vs[k]->dtype);
            if (overlaps(w0, w1, lo, end)) return false;
        }
    }
    return true;
}

int pk_launch_end(const lp_persist_program *p, int i) {
    int j = i;
    while (j < p->n_phases && j - i < PK_LAUNCH_PHASES && p->phases[j].kind != LP_PERSIST_NODE) j++;
    return j;
}

/* Whether Gemms g and h read the same rows of A through the same prologue. */
static bool same_rows(const lp_persist_phase *g, const lp_persist_phase *h) {
    if (g->a.offset != h->a.offset || g->a.dtype != h->a.dtype || g->m != h->m || g->k != h->k || g->ln != h->ln)
        return false;
    return !g->ln || (g->scale.offset == h->scale.offset && g->ln_eps == h->ln_eps &&
                      g->ln_bias.dtype == h->ln_bias.dtype && g->ln_bias.offset == h->ln_bias.offset);
}

void pk_plan_gemms(const lp_persist_program *p, const lp_persist_phase *host, int blocks, pk_gemm *pl) {
    int n = p->n_phases;
    memset(pl, 0, (size_t)n * sizeof *pl);
    for (int i = 0; i < n;) {
        if (p->phases[i].kind == LP_PERSIST_NODE) {
            i++;
            continue;
        }
        int end = pk_launch_end(p, i);
        for (int k = i; k < end; k++) pl[k].head = k == i || p->phases[k].sync;
        i = end;
    }
    for (int h = 0; h < n;) {
        int e = h + 1;
        while (e < n && !pl[e].head && p->phases[e].kind != LP_PERSIST_NODE) e++;
        /* A, the partial sums and the prologue's vectors go after every prefetch slot of the interval */
        int stage = 0, rot = 0;
        for (int i = h; i < e; i++) {
            const lp_persist_phase *ph = &host[i];
            if (ph->kind != LP_PERSIST_GEMM || ph->b.weight != PK_PACKED) continue;
            pk_shape sh = pk_gemm_shape(ph->m, ph->n, ph->k, pk_ln_bytes(ph), blocks);
            pk_gemm *g = &pl[i];
            g->w = ph->b.offset;
            g->P = (int)(ph->k / 32);
            g->tiles = (int)(ph->n / 8);
            g->g = sh.g;
            g->mc = sh.mc;
            g->units = (g->tiles + sh.g - 1) / sh.g;
            g->rot = rot;
            g->pre = (int)sh.pre;
            rot += g->units;
            int need = sh.mc * (int)(ph->k + 8) * 2 + PK_WARPS * sh.g * 8 * sh.mc * 4 + (int)pk_ln_bytes(ph);
            if (need > stage) stage = need;
        }
        int slots = 0, last = -1;
        for (int i = h; i < e; i++) {
            pk_gemm *g = &pl[i];
            if (!g->mc) continue;
            if (g->pre && slots + g->pre + stage <= PK_SMEM) {
                g->pre_at = slots;
                slots += g->pre;
            } else {
                g->pre = 0;
            }
            bool same = last >= 0 && same_rows(&host[last], &host[i]) && pl[last].mc == g->mc && host[i].m <= g->mc;
            g->a_group = same ? pl[last].a_group : i;
            last = i;
        }
        for (int i = h; i < e; i++) {
            if (!pl[i].mc) continue;
            pl[i].a_at = slots;
            pl[i].red_at = slots + pl[i].mc * (int)(host[i].k + 8) * 2;
            pl[i].ln_at = pl[i].red_at + PK_WARPS * pl[i].g * 8 * pl[i].mc * 4;
        }
        h = e;
    }
}

int64_t pk_resident_gemm_work(const lp_persist_phase *g, int res_g) {
    return (int64_t)PK_WARPS * res_g * 16 * 8 * 4 + pk_ln_bytes(g) + 16 * 2 * 4;
}

/* The unit shape for a block's share of tiles: 1, 2 or 4 (more go in
 * several units of 4). */
static int resident_unit(int per_block) { return per_block <= 1 ? 1 : per_block == 2 ? 2 : 4; }

int64_t pk_resident_weight_bytes(int64_t n, int64_t k, int blocks, int *res_g) {
    int64_t tiles = n / 8, per_block = (tiles + blocks - 1) / blocks;
    *res_g = resident_unit((int)per_block);
    return per_block * (k / 32) * 512;
}

bool pk_plan_resident(const lp_persist_program *p, const lp_persist_phase *host, int blocks, int64_t budget,
                      pk_gemm *pl, pk_resident *r, char *why, size_t why_len) {
    memset(r, 0, sizeof *r);
    why[0] = 0;
    int n = p->n_phases;
    for (int i = 0; i < n; i++) {
        pl[i].res_at = pl[i].res_g = pl[i].res_copy = pl[i].res_keep = 0;
        if (p->phases[i].kind == LP_PERSIST_NODE) {
            snprintf(why, why_len, "phase %d is a library call, and the resident kernel runs the whole step "
                     "as one launch", i);
            return false;
        }
    }
    int64_t work = 0, weights = 0;
    for (int i = 0; i < n; i++) {
        const lp_persist_phase *ph = &host[i];
        if (ph->kind == LP_PERSIST_ATTENTION && work < PK_RESIDENT_ATTENTION_WORK) work = PK_RESIDENT_ATTENTION_WORK;
        if (ph->kind != LP_PERSIST_GEMM) continue;
        if (ph->b.weight != PK_PACKED) {
            r->unheld++;
            continue;
        }
        int tiles = (int)(ph->n / 8);
        pk_gemm *g = &pl[i];
        g->w = ph->b.offset;
        g->P = (int)(ph->k / 32);
        g->tiles = tiles;
        int64_t bytes = pk_resident_weight_bytes(ph->n, ph->k, blocks, &g->res_g);
        g->res_keep = i > 0 && ph->ln && !ph->sync && ph->m <= 16 && pl[i - 1].res_g && pl[i - 1].tiles == tiles &&
                      same_rows(&host[i - 1], ph);
        int64_t need = pk_resident_gemm_work(ph, g->res_g);
        if (need > work) work = need;
        r->held++;
        int same = -1;
        for (int j = 0; j < i && same < 0; j++)
            if (pl[j].res_g && pl[j].w == g->w && pl[j].P == g->P && pl[j].tiles == g->tiles &&
                host[j].trans_w == ph->trans_w)
                same = j;
        if (same >= 0) {
            g->res_at = pl[same].res_at; /* an offset into the weights region, made absolute below */
            continue;
        }
        g->res_at = (int)weights;
        g->res_copy = 1;
        weights += bytes;
        r->held_bytes += (int64_t)tiles * g->P * 512;
    }
    if (!r->held) {
        snprintf(why, why_len, "no Gemm weight the tensor cores can hold (fp16 or bf16, K a multiple of 32, N of 8, "
                 "read only by Gemms)");
        return false;
    }
    work = (work + 15) / 16 * 16;
    r->work_bytes = work;
    r->weight_bytes = weights;
    if (work + weights > budget) {
        snprintf(why, why_len, "its Gemm weights need %" PRId64 " bytes of shared memory a block and the work %" PRId64
                 ", more than the %" PRId64 " a block has", weights, work, budget);
        return false;
    }
    for (int i = 0; i < n; i++)
        if (pl[i].res_g) pl[i].res_at += (int)work;
    return true;
}
