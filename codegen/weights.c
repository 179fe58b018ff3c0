/* card_K.weights: each card's weights region as the runtime uploads it.
 *
 * The file is the region [0, weights_bytes) of the card's allocation byte
 * for byte (lp_card_memory in lp_partition.h): each weight entry at its
 * offset, zero padding between entries and after the last. A tensor is
 * read a bounded block at a time (WEIGHT_BLOCK bytes of its stored form)
 * from wherever it lives and converted to the deploy dtype as it goes, so a
 * model of any size is written in constant memory. A sharded card's split
 * weight is its columns [begin, end) of axis `axis`: one contiguous run per
 * index of the axes before it, read a block of whole rows at a time, or
 * run by run when a row alone is larger than the block. */
#include "lp_emit.h"
#include "lp_frontend.h"

#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#define WEIGHT_BLOCK ((uint64_t)4 << 20)

/* ---- float conversion ------------------------------------------------------ */

/* A target float format: exponent and stored mantissa bits. */
typedef struct fmt {
    int ebits, mbits;
} fmt;

static bool float_fmt(lp_dtype t, fmt *f) {
    switch (t) {
    case LP_DT_FLOAT: *f = (fmt){8, 23}; return true;
    case LP_DT_FLOAT16: *f = (fmt){5, 10}; return true;
    case LP_DT_BFLOAT16: *f = (fmt){8, 7}; return true;
    case LP_DT_DOUBLE: *f = (fmt){11, 52}; return true;
    default: return false;
    }
}

/* An element decoded: its sign, and either its value (exact: every source
 * format fits a double) or, for a NaN, its payload left-aligned in 64 bits. */
typedef struct elem {
    bool nan;
    uint64_t sign, payload;
    double value;
} elem;

static uint64_t load_bits(const uint8_t *p, int bytes) {
    uint64_t b = 0;
    for (int i = 0; i < bytes; i++) b |= (uint64_t)p[i] << (8 * i); /* little-endian, as raw_data */
    return b;
}

static void store_bits(uint8_t *p, int bytes, uint64_t b) {
    for (int i = 0; i < bytes; i++) p[i] = (uint8_t)(b >> (8 * i));
}

static elem decode(uint64_t b, fmt f) {
    uint64_t sign = b >> (f.ebits + f.mbits) & 1, emax = ((uint64_t)1 << f.ebits) - 1;
    uint64_t e = b >> f.mbits & emax, m = b & (((uint64_t)1 << f.mbits) - 1);
    elem x = {.sign = sign};
    if (f.mbits == 52) { /* double: itself */
        if (e == emax && m) x.nan = true, x.payload = m << 12;
        memcpy(&x.value, &b, sizeof x.value);
        return x;
    }
    int bias = (1 << (f.ebits - 1)) - 1;
    if (e == emax) {
        if (m) x.nan = true, x.payload = m << (64 - f.mbits);
        else x.value = sign ? -HUGE_VAL : HUGE_VAL;
        return x;
    }
    /* normal: (2^mbits + m) 2^(e - bias - mbits); subnormal: m 2^(1 - bias - mbits) */
    double v = e ? ldexp((double)(((uint64_t)1 << f.mbits) | m), (int)e - bias - f.mbits)
                 : ldexp((double)m, 1 - bias - f.mbits);
    x.value = sign ? -v : v;
    return x;
}

/* x rounded to nearest, ties to even, in format f (bits); overflow goes to
 * Inf, underflow through the subnormals to a signed zero. */
static uint64_t encode(elem x, fmt f) {
    uint64_t emax = ((uint64_t)1 << f.ebits) - 1, s = x.sign << (f.ebits + f.mbits);
    uint64_t inf = s | emax << f.mbits;
    if (x.nan) {
        uint64_t p = x.payload >> (64 - f.mbits);
        return inf | (p ? p : 1); /* the payload's top bits; never Inf */
    }
    uint64_t b;
    memcpy(&b, &x.value, sizeof b);
    int e = (int)(b >> 52 & 0x7ff);
    uint64_t m = b & (((uint64_t)1 << 52) - 1);
    if (e == 0x7ff) return inf;
    if (e == 0) return s; /* zero, or a double subnormal: below every target's half-subnormal */
    int bias = (1 << (f.ebits - 1)) - 1, eo = e - 1023 + bias;
    uint64_t sig = (uint64_t)1 << 52 | m; /* value = sig 2^(e - 1023 - 52) */
    int shift = 52 - f.mbits;
    bool normal = eo >= 1;
    if (!normal) shift += 1 - eo; /* subnormal: multiples of 2^(1 - bias - mbits) */
    if (shift >= 54) return s;    /* below half the smallest subnormal */
    uint64_t q = shift ? sig >> shift : sig;
    if (shift) {
        uint64_t rem = sig & (((uint64_t)1 << shift) - 1), half = (uint64_t)1 << (shift - 1);
        if (rem > half || (rem == half && (q & 1))) q++;
    }
    /* a carry out of the mantissa moves into the exponent, as it should */
    uint64_t out = normal ? ((uint64_t)(eo - 1) << f.mbits) + q : q;
    return out >= emax << f.mbits ? inf : s | out;
}

/* n elements of src (format sf, sb bytes each) into dst (df, db bytes). */
static void convert(const uint8_t *src, fmt sf, int sb, uint8_t *dst, fmt df, int db, uint64_t n) {
    for (uint64_t i = 0; i < n; i++)
        store_bits(dst + i * (uint64_t)db, db, encode(decode(load_bits(src + i * (uint64_t)sb, sb), sf), df));
}

/* ---- one card's file ------------------------------------------------------- */

typedef struct writer {
    const lp_graph *g;
    FILE *f;
    const char *file;
    uint64_t pos;
    uLong crc;
    uint8_t *src, *dst; /* WEIGHT_BLOCK, and its conversion (at most twice as large) */
    lp_diag *d;
} writer;

static lp_status put(writer *w, const void *buf, uint64_t n) {
    if (n && fwrite(buf, 1, (size_t)n, w->f) != n)
        return lp_error(w->d, LP_ERR_OUTPUT, "cannot write '%s'", w->file);
    for (uint64_t at = 0; at < n;) { /* crc32's length is a uInt */
        uint64_t k = n - at < ((uint64_t)1 << 30) ? n - at : (uint64_t)1 << 30;
        w->crc = crc32(w->crc, (const Bytef *)buf + at, (uInt)k);
        at += k;
    }
    w->pos += n;
    return LP_OK;
}

static lp_status pad_to(writer *w, uint64_t end) {
    static const uint8_t zeros[4096];
    lp_status st = LP_OK;
    while (st == LP_OK && w->pos < end)
        st = put(w, zeros, end - w->pos < sizeof zeros ? end - w->pos : sizeof zeros);
    return st;
}

/* How one tensor goes from its stored form to the file. */
typedef struct conv {
    const lp_value *v;
    int sb, db;     /* bytes an element takes stored and written */
    bool same;      /* written as stored */
    fmt sf, df;
} conv;

/* Elements n (sb bytes each) from src: converted, then written. */
static lp_status put_elems(writer *w, const conv *c, const uint8_t *src, uint64_t n) {
    if (c->same) return put(w, src, n * (uint64_t)c->sb);
    convert(src, c->sf, c->sb, w->dst, c->df, c->db, n);
    return put(w, w->dst, n * (uint64_t)c->db);
}

/* Stored bytes [off, off + len) of the tensor, a block at a time. */
static lp_status put_range(writer *w, const conv *c, uint64_t off, uint64_t len) {
    uint64_t block = WEIGHT_BLOCK / (uint64_t)c->sb * (uint64_t)c->sb;
    lp_status st = LP_OK;
    for (uint64_t at = 0; st == LP_OK && at < len; at += block) {
        uint64_t k = len - at < block ? len - at : block;
        st = lp_frontend_read_tensor(w->g, &c->v->data, c->v->name, off + at, w->src, k, w->d);
        if (st == LP_OK) st = put_elems(w, c, w->src, k / (uint64_t)c->sb);
    }
    return st;
}

static lp_status put_weight(writer *w, const lp_layer_ir *L, const lp_mem_weight *e) {
    const lp_value *v = &w->g->values[e->value];
    lp_dtype out = lp_analysis_value_dtype(L, v);
    conv c = {.v = v, .sb = lp_dtype_bits(v->dtype) / 8, .db = lp_dtype_bits(out) / 8,
              .same = out == v->dtype};
    uint64_t stored = 0, numel = 0;
    if (!lp_value_bytes(v, &stored) || !lp_shape_numel(&v->shape, &numel) || v->data.nbytes != stored ||
        (v->data.where == LP_DATA_NONE && stored))
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "weight '%s': its bytes (%" PRIu64 " stored) do not "
                        "match its type %s", v->name, v->data.nbytes,
                        lp_dtype_label(v->dtype));
    if (!c.same && (!float_fmt(v->dtype, &c.sf) || !float_fmt(out, &c.df)))
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "weight '%s': cannot convert %s to the deploy "
                        "dtype %s (float, float16, bfloat16 and double can be)", v->name,
                        lp_dtype_name(v->dtype), lp_dtype_name(out));
    if (e->axis < 0) {
        uint64_t want = 0;
        if (!lp_dtype_storage_bytes(out, numel, &want) || want != e->bytes)
            return lp_error(w->d, LP_ERR_INTERNAL, "weight '%s': the memory plan holds %" PRIu64
                            " bytes, its %s form %" PRIu64, v->name, e->bytes, lp_dtype_name(out), want);
        if (c.same && (c.sb == 0 || lp_dtype_bits(v->dtype) % 8)) { /* sub-byte packing: as stored */
            c.sb = 1;
            c.db = 1;
        }
        return put_range(w, &c, 0, stored);
    }
    /* columns [begin, end) of axis e->axis */
    if (c.sb == 0 || lp_dtype_bits(v->dtype) % 8 || e->axis >= v->shape.rank || e->begin < 0 ||
        e->end < e->begin || e->end > v->shape.dims[e->axis].size)
        return lp_error(w->d, LP_ERR_UNSUPPORTED, "weight '%s': cannot cut columns %" PRId64
                        "..%" PRId64 " of axis %d", v->name, e->begin, e->end, e->axis);
    uint64_t outer = 1, inner = 1;
    for (int i = 0; i < e->axis; i++) outer *= (uint64_t)v->shape.dims[i].size;
    for (int i = e->axis + 1; i < v->shape.rank; i++) inner *= (uint64_t)v->shape.dims[i].size;
    uint64_t dim = (uint64_t)v->shape.dims[e->axis].size, cols = (uint64_t)(e->end - e->begin);
    uint64_t run = cols * inner, row = dim * inner * (uint64_t)c.sb; /* elements, bytes */
    if (outer * run * (uint64_t)c.db != e->bytes)
        return lp_error(w->d, LP_ERR_INTERNAL, "weight '%s': the memory plan holds %" PRIu64
                        " bytes of its slice, which takes %" PRIu64, v->name, e->bytes,
                        outer * run * (uint64_t)c.db);
    uint64_t skip = (uint64_t)e->begin * inner * (uint64_t)c.sb;
    lp_status st = LP_OK;
    if (row > WEIGHT_BLOCK) {
        for (uint64_t o = 0; st == LP_OK && o < outer; o++)
            st = put_range(w, &c, o * row + skip, run * (uint64_t)c.sb);
        return st;
    }
    uint64_t rows = row ? WEIGHT_BLOCK / row : outer;
    for (uint64_t o = 0; st == LP_OK && o < outer; o += rows) {
        uint64_t k = outer - o < rows ? outer - o : rows;
        st = lp_frontend_read_tensor(w->g, &v->data, v->name, o * row, w->src, k * row, w->d);
        for (uint64_t r = 0; st == LP_OK && r < k; r++)
            st = put_elems(w, &c, w->src + r * row + skip, run);
    }
    return st;
}

static lp_status write_card(writer *w, const lp_layer_ir *L, const lp_card_memory *m) {
    lp_status st = LP_OK;
    for (int k = 0; st == LP_OK && k < m->n_weights; k++) {
        const lp_mem_weight *e = &m->weights[k];
        if (e->value < 0 || e->value >= w->g->n_values || e->offset < w->pos ||
            e->offset + e->bytes > m->weights_bytes)
            return lp_error(w->d, LP_ERR_INTERNAL, "card %d: weight entry %d (offset %" PRIu64
                            ", %" PRIu64 " bytes) is out of order or outside the weights region",
                            m->card, k, e->offset, e->bytes);
        st = pad_to(w, e->offset);
        uint64_t start = w->pos;
        if (st == LP_OK) st = put_weight(w, L, e);
        if (st == LP_OK && w->pos != start + e->bytes)
            return lp_error(w->d, LP_ERR_INTERNAL, "weight '%s': wrote %" PRIu64 " bytes of %" PRIu64,
                            w->g->values[e->value].name, w->pos - start, e->bytes);
    }
    return st == LP_OK ? pad_to(w, m->weights_bytes) : st;
}

int32_t lp_emit_absent_weight(const lp_plan *p, const lp_layer_ir *L) {
    for (int c = 0; c < p->n_cards; c++) {
        const lp_card_memory *m = p->cards[c].memory;
        for (int k = 0; m && k < m->n_weights; k++) {
            int32_t v = m->weights[k].value;
            const lp_tensor_data *t = v >= 0 && v < L->g->n_values ? &L->g->values[v].data : NULL;
            if (t && t->where == LP_DATA_EXTERNAL && !t->present) return v;
        }
    }
    return -1;
}

lp_status lp_emit_write_weights(const lp_plan *p, const lp_layer_ir *L, lp_outdir *od,
                                lp_card_blob *blobs, lp_diag *d) {
    writer w = {.g = L->g, .d = d, .src = malloc((size_t)WEIGHT_BLOCK),
                .dst = malloc((size_t)(2 * WEIGHT_BLOCK))};
    lp_status st = w.src && w.dst ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int c = 0; st == LP_OK && c < p->n_cards; c++) {
        const lp_card_memory *m = p->cards[c].memory;
        if (!m) {
            st = lp_error(d, LP_ERR_INTERNAL, "card %d has no memory plan", c);
            break;
        }
        lp_card_blob *b = &blobs[c];
        *b = (lp_card_blob){0};
        snprintf(b->file, sizeof b->file, "card_%d.weights", p->cards[c].card);
        w.f = lp_outdir_create(od, b->file, d);
        if (!w.f) {
            st = LP_ERR_OUTPUT;
            break;
        }
        w.file = b->file;
        w.pos = 0;
        w.crc = crc32(0, Z_NULL, 0);
        st = write_card(&w, L, m);
        lp_status cs = lp_outdir_close(od, w.f, d);
        if (st == LP_OK) st = cs;
        b->written = st == LP_OK;
        b->bytes = w.pos;
        b->crc32 = (uint32_t)w.crc;
    }
    free(w.src);
    free(w.dst);
    return st;
}

bool lp_emit_is_output_file(const char *name) {
    if (strcmp(name, "manifest.json") == 0 || strcmp(name, "Makefile") == 0) return true;
    if (strncmp(name, "card_", 5) != 0) return false;
    const char *s = name + 5;
    if (*s < '0' || *s > '9') return false;
    while (*s >= '0' && *s <= '9') s++;
    return strcmp(s, ".weights") == 0 || strcmp(s, ".cu") == 0 || strcmp(s, ".so") == 0;
}
