/* Device profiles: the built-in H100 and H200 (from the measured figures in
 * partition/targets/h100.json, h200.json) and user profiles read from JSON. */
#include "lp_partition.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define KIB 1024ull
#define MIB (1024ull * KIB)
#define GIB (1024ull * MIB)

/* C is the persisting-L2 maximum: the part of L2 an access-policy window can
 * pin. Re-reads of up to ~44 MB run at L2 speed without pinning, but that
 * residency is not promised while other kernels stream through L2.
 * H100 figures are bench/gpu/probe_h100.json's: HBM 3.09 TB/s, L2-resident
 * re-read 7.5 TB/s (16-48 MiB), CUDA-graph launch 0.97 us, and peak_flops
 * the measured cuBLAS FP16 GEMM rate (768 TFLOP/s, not the 989 of the
 * datasheet). The H200 has the same die and clocks, so it takes the same
 * measured GEMM rate. The link figures are the H200 pair's peer copies
 * (measured on an H200 machine: 1.7-2.5 us up to 32 KiB, ~395 GB/s from
 * 64 MiB), applied to both. Shared memory: 227 KiB a block on each of the
 * 132 SMs; its re-read rate over all SMs is bench/gpu/tier_probe_h200.json's
 * (30.1 TB/s), measured on the H200 only. The H200's launch_s is the
 * cost of one node of a step of small library kernels in a CUDA graph
 * (launch, then the kernel's own memory round trips), 1.7 us, fitted to the
 * seed-structure layers of bench/gpu/persist_bench_h200.json (28 groups of
 * 1-16 layers, hidden 768-1536, 1-128 tokens: predicted/measured 0.80-1.22);
 * an empty kernel's graph launch is 0.97-1.1 us. */
static const lp_target builtin_targets[] = {
    {.name = "h100",
     .l2_bytes = 50 * MIB,
     .persist_bytes = 31 * MIB,
     .capacity = 31 * MIB,
     .dram_bytes = 79 * GIB,
     .peak_flops = 768e12,
     .hbm_bw = 3.09e12,
     .l2_bw = 7.5e12,
     .link_latency_s = 2.0e-6,
     .link_bw = 3.95e11,
     .launch_s = 0.97e-6,
     .smem_bytes = 132 * 227 * KIB,
     .sms = 132,
     .chip_bw = 7.5e12},
    {.name = "h200",
     .l2_bytes = 60 * MIB,
     .persist_bytes = 37 * MIB,
     .capacity = 37 * MIB,
     .dram_bytes = 139 * GIB,
     .peak_flops = 768e12,
     .hbm_bw = 4.5e12,
     .l2_bw = 7.1e12,
     .link_latency_s = 2.0e-6,
     .link_bw = 3.95e11,
     .launch_s = 1.7e-6,
     .smem_bytes = 132 * 227 * KIB,
     .sms = 132,
     .smem_bw = 3.01e13,
     .chip_bw = 7.1e12},
};

bool lp_target_builtin(const char *name, lp_target *out) {
    for (size_t i = 0; i < sizeof builtin_targets / sizeof builtin_targets[0]; i++)
        if (strcasecmp(name, builtin_targets[i].name) == 0) {
            *out = builtin_targets[i];
            return true;
        }
    return false;
}

static const struct unit {
    const char *name;
    uint64_t scale;
} units[] = {
    {"", 1},        {"B", 1},           {"KB", 1000},        {"KiB", KIB},
    {"MB", 1000000}, {"MiB", MIB},       {"GB", 1000000000},  {"GiB", GIB},
    {"TB", 1000000000000ull}, {"TiB", 1024 * GIB},
};

static uint64_t gcd64(uint64_t a, uint64_t b) {
    while (b) {
        uint64_t t = a % b;
        a = b;
        b = t;
    }
    return a;
}

/* DIGITS[.DIGITS] [UNIT], spaces around allowed; exact integer arithmetic,
 * so "1.5GiB" is 1610612736 and "0.3B" is refused rather than rounded. */
const char *lp_size_error(const char *s, uint64_t *out) {
    if (!s) return "no size given";
    while (isspace((unsigned char)*s)) s++;
    if (!*s) return "empty";
    if (*s == '-') return "a size cannot be negative";
    if (*s == '+') return "no sign allowed";
    if (!isdigit((unsigned char)*s) && *s != '.') return "does not start with a number";
    uint64_t whole = 0, frac = 0, pow10 = 1;
    bool digits = false, big = false;
    for (; isdigit((unsigned char)*s); s++) {
        unsigned dig = (unsigned)(*s - '0');
        digits = true;
        if (whole > (UINT64_MAX - dig) / 10) big = true;
        else whole = whole * 10 + dig;
    }
    if (*s == '.') {
        s++;
        int n_frac = 0;
        const char *f = s;
        for (; isdigit((unsigned char)*s); s++) digits = true;
        const char *fend = s;
        while (fend > f && fend[-1] == '0') fend--; /* trailing zeros change nothing */
        for (; f < fend; f++) {
            if (++n_frac > 19) return "more than 19 digits after the decimal point";
            frac = frac * 10 + (uint64_t)(*f - '0');
            pow10 *= 10;
        }
    }
    if (!digits) return "does not start with a number";
    if (big) return "too large (at most 2^64 - 1 bytes)";
    if ((s[0] == 'x' || s[0] == 'X') && whole == 0) return "hexadecimal is not accepted";
    while (isspace((unsigned char)*s)) s++;
    const char *unit = s, *uend = s + strlen(s);
    while (uend > unit && isspace((unsigned char)uend[-1])) uend--;
    size_t ulen = (size_t)(uend - unit);
    for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
        if (strlen(units[i].name) != ulen || strncasecmp(unit, units[i].name, ulen) != 0) continue;
        uint64_t scale = units[i].scale, bytes;
        if (whole && scale > UINT64_MAX / whole) return "too large (at most 2^64 - 1 bytes)";
        bytes = whole * scale;
        if (frac) {
            /* frac / pow10 of a unit is a whole number of bytes exactly when
             * frac is a multiple of pow10 / gcd(scale, pow10) */
            uint64_t g = gcd64(scale, pow10), step = pow10 / g;
            if (frac % step) return "not a whole number of bytes";
            uint64_t extra = frac / step, unit_part = scale / g;
            if (extra > UINT64_MAX / unit_part || bytes > UINT64_MAX - extra * unit_part)
                return "too large (at most 2^64 - 1 bytes)";
            bytes += extra * unit_part;
        }
        *out = bytes;
        return NULL;
    }
    return "unknown unit (use B, KB, KiB, MB, MiB, GB, GiB, TB or TiB)";
}

bool lp_parse_size(const char *s, uint64_t *out) {
    return lp_size_error(s, out) == NULL;
}

/* A size field: an integer of bytes or a string with a unit; NULL or why not. */
static const char *json_size(json_t *j, uint64_t *out) {
    if (json_is_integer(j)) {
        if (json_integer_value(j) < 0) return "a size cannot be negative";
        *out = (uint64_t)json_integer_value(j);
        return NULL;
    }
    if (json_is_string(j)) return lp_size_error(json_string_value(j), out);
    return "expected an integer of bytes or a string such as \"31 MiB\"";
}

static lp_status target_from_json(json_t *root, const char *path, lp_target *t, lp_diag *d) {
    if (!json_is_object(root))
        return lp_error(d, LP_ERR_USAGE, "target '%s': expected a JSON object", path);
    *t = (lp_target){0};
    const char *name = json_string_value(json_object_get(root, "name"));
    snprintf(t->name, sizeof t->name, "%s", name ? name : path);
    static const struct {
        const char *key;
        size_t off;
    } sizes[] = {
        {"l2_bytes", offsetof(lp_target, l2_bytes)},
        {"persist_bytes", offsetof(lp_target, persist_bytes)},
        {"capacity", offsetof(lp_target, capacity)},
        {"dram_bytes", offsetof(lp_target, dram_bytes)},
        {"smem_bytes", offsetof(lp_target, smem_bytes)},
    };
    static const struct {
        const char *key;
        size_t off;
    } rates[] = {
        {"peak_flops", offsetof(lp_target, peak_flops)},
        {"hbm_bw", offsetof(lp_target, hbm_bw)},
        {"l2_bw", offsetof(lp_target, l2_bw)},
        {"link_latency_s", offsetof(lp_target, link_latency_s)},
        {"link_bw", offsetof(lp_target, link_bw)},
        {"launch_s", offsetof(lp_target, launch_s)},
        {"smem_bw", offsetof(lp_target, smem_bw)},
        {"chip_bw", offsetof(lp_target, chip_bw)},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        json_t *v = json_object_get(root, sizes[i].key);
        const char *why = v ? json_size(v, (uint64_t *)((char *)t + sizes[i].off)) : NULL;
        if (why && json_is_string(v))
            return lp_error(d, LP_ERR_USAGE, "target '%s': '%s' \"%s\" is not a size: %s", path,
                            sizes[i].key, json_string_value(v), why);
        if (why) return lp_error(d, LP_ERR_USAGE, "target '%s': '%s': %s", path, sizes[i].key, why);
    }
    /* an explicit 0 is a mistake, not "use the default" */
    if (json_object_get(root, "capacity") && !t->capacity)
        return lp_error(d, LP_ERR_USAGE, "target '%s': 'capacity' is 0; a card must hold at least one "
                        "byte (leave 'capacity' out to use 'persist_bytes')", path);
    for (size_t i = 0; i < sizeof rates / sizeof rates[0]; i++) {
        json_t *v = json_object_get(root, rates[i].key);
        if (v && (!json_is_number(v) || json_number_value(v) < 0))
            return lp_error(d, LP_ERR_USAGE, "target '%s': '%s' must be a number >= 0", path,
                            rates[i].key);
        if (v) *(double *)((char *)t + rates[i].off) = json_number_value(v);
    }
    json_t *sms = json_object_get(root, "sms");
    if (sms && (!json_is_integer(sms) || json_integer_value(sms) < 0 || json_integer_value(sms) > 1000000))
        return lp_error(d, LP_ERR_USAGE, "target '%s': 'sms' must be a whole number of SMs from 0 to 1000000",
                        path);
    if (sms) t->sms = (int)json_integer_value(sms);
    if (!t->capacity) t->capacity = t->persist_bytes ? t->persist_bytes : t->l2_bytes;
    if (!t->capacity)
        return lp_error(d, LP_ERR_USAGE, "target '%s': needs 'capacity', 'persist_bytes' or 'l2_bytes'",
                        path);
    json_t *tier = json_object_get(root, "tier");
    if (tier && !json_is_string(tier))
        return lp_error(d, LP_ERR_USAGE, "target '%s': 'tier' must be \"smem\", \"l2\" or \"hbm\"", path);
    t->tier = LP_TIER_L2;
    if (tier && strcmp(json_string_value(tier), "l2") != 0) {
        /* a plan's own target: the tier's capacity and rate are already in it */
        lp_target keep = *t;
        lp_status st = lp_target_set_tier(t, json_string_value(tier), d);
        if (st != LP_OK) return st;
        t->capacity = keep.capacity;
    }
    if (!json_object_get(root, "chip_bw"))
        t->chip_bw = t->tier == LP_TIER_SMEM ? t->smem_bw : t->tier == LP_TIER_HBM ? t->hbm_bw : t->l2_bw;
    return LP_OK;
}

const char *lp_tier_name(int tier) {
    switch (tier) {
    case LP_TIER_L2: return "l2";
    case LP_TIER_SMEM: return "smem";
    case LP_TIER_HBM: return "hbm";
    default: return NULL;
    }
}

lp_status lp_target_set_tier(lp_target *t, const char *tier, lp_diag *d) {
    if (strcmp(tier, "l2") == 0) {
        t->tier = LP_TIER_L2;
        t->chip_bw = t->l2_bw;
        return LP_OK;
    }
    if (strcmp(tier, "hbm") == 0) {
        if (!t->dram_bytes || !(t->hbm_bw > 0))
            return lp_error(d, LP_ERR_USAGE, "--tier hbm: target '%s' has no %s", t->name,
                            !t->dram_bytes ? "'dram_bytes'" : "'hbm_bw'");
        t->tier = LP_TIER_HBM;
        t->capacity = t->dram_bytes;
        t->chip_bw = t->hbm_bw;
        return LP_OK;
    }
    if (strcmp(tier, "smem") == 0) {
        if (!t->smem_bytes || !(t->smem_bw > 0))
            return lp_error(d, LP_ERR_USAGE, "--tier smem: target '%s' has no measured %s (give a "
                            "target file with it; bench/gpu/tier_probe.cu measures it)", t->name,
                            !t->smem_bytes ? "'smem_bytes'" : "shared-memory bandwidth 'smem_bw'");
        t->tier = LP_TIER_SMEM;
        t->capacity = t->smem_bytes;
        t->chip_bw = t->smem_bw;
        return LP_OK;
    }
    return lp_error(d, LP_ERR_USAGE, "--tier %s: expected smem, l2 or hbm", tier);
}

lp_status lp_target_from_json(void *json, const char *where, lp_target *out, lp_diag *d) {
    return target_from_json(json, where, out, d);
}

lp_status lp_target_load(const char *name_or_path, lp_target *out, lp_diag *d) {
    if (lp_target_builtin(name_or_path, out)) return LP_OK;
    json_error_t err;
    json_t *root = json_load_file(name_or_path, 0, &err);
    if (!root)
        return lp_error(d, LP_ERR_USAGE, "target '%s': not h100, h200 or a readable JSON file (%s, line %d)",
                        name_or_path, err.text, err.line);
    lp_status st = target_from_json(root, name_or_path, out, d);
    json_decref(root);
    return st;
}

void *lp_target_to_json(const lp_target *t) {
    json_t *j = json_object();
    if (!j) return NULL;
    json_object_set_new(j, "name", json_string(t->name));
    json_object_set_new(j, "l2_bytes", json_integer((json_int_t)t->l2_bytes));
    json_object_set_new(j, "persist_bytes", json_integer((json_int_t)t->persist_bytes));
    json_object_set_new(j, "capacity", json_integer((json_int_t)t->capacity));
    json_object_set_new(j, "dram_bytes", json_integer((json_int_t)t->dram_bytes));
    json_object_set_new(j, "peak_flops", json_real(t->peak_flops));
    json_object_set_new(j, "hbm_bw", json_real(t->hbm_bw));
    json_object_set_new(j, "l2_bw", json_real(t->l2_bw));
    json_object_set_new(j, "link_latency_s", json_real(t->link_latency_s));
    json_object_set_new(j, "link_bw", json_real(t->link_bw));
    json_object_set_new(j, "launch_s", json_real(t->launch_s));
    json_object_set_new(j, "smem_bytes", json_integer((json_int_t)t->smem_bytes));
    json_object_set_new(j, "sms", json_integer(t->sms));
    json_object_set_new(j, "smem_bw", json_real(t->smem_bw));
    json_object_set_new(j, "tier", json_string(lp_tier_name(t->tier) ? lp_tier_name(t->tier) : "l2"));
    json_object_set_new(j, "chip_bw", json_real(t->chip_bw));
    return j;
}
