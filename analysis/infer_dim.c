/* Dim algebra for shape inference: numbers and symbolic monomials.
 *
 * A symbolic dim's name is read as a monomial when it is a product of
 * identifiers and at most one integer ("seq*batch", "2*seq"); any other name
 * ("((batch*seq)//batch)") is one opaque factor. Results are written in a
 * canonical form (coefficient first, factors sorted) so equal products
 * compare equal as strings. */
#include "infer_internal.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* More factors than this make a dim unknown rather than wrong. */
#define MONO_MAX_FACTORS 8

typedef struct factor {
    const char *s;
    size_t len;
} factor;

typedef struct mono {
    int64_t coef;
    int n;
    factor f[MONO_MAX_FACTORS];
} mono;

lp_dim lp_dim_num(int64_t v) {
    lp_dim d = {.size = v, .sym = NULL};
    return d;
}

lp_dim lp_dim_unknown(void) {
    lp_dim d = {.size = LP_DIM_UNKNOWN, .sym = NULL};
    return d;
}

bool lp_dim_same(lp_dim a, lp_dim b) {
    if (lp_dim_is_num(a) || lp_dim_is_num(b)) return a.size == b.size;
    return a.sym && b.sym && strcmp(a.sym, b.sym) == 0;
}

static bool is_ident(const char *s, size_t len) {
    if (!len || !(isalpha((unsigned char)s[0]) || s[0] == '_')) return false;
    for (size_t i = 1; i < len; i++)
        if (!(isalnum((unsigned char)s[i]) || s[i] == '_' || s[i] == '.')) return false;
    return true;
}

static bool parse_int(const char *s, size_t len, int64_t *v) {
    if (!len || len > 18) return false;
    int64_t x = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)s[i])) return false;
        x = x * 10 + (s[i] - '0');
    }
    *v = x;
    return true;
}

static int factor_cmp(const void *a, const void *b) {
    const factor *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->s, y->s, n);
    return c ? c : (x->len > y->len) - (x->len < y->len);
}

static bool mono_push(mono *m, const char *s, size_t len) {
    if (m->n == MONO_MAX_FACTORS) return false;
    m->f[m->n].s = s;
    m->f[m->n].len = len;
    m->n++;
    return true;
}

/* "(...)" with the first parenthesis closed by the last character. */
static bool is_group(const char *s, size_t len) {
    if (len < 2 || s[0] != '(' || s[len - 1] != ')') return false;
    int depth = 0;
    for (size_t i = 0; i < len; i++) {
        depth += s[i] == '(' ? 1 : s[i] == ')' ? -1 : 0;
        if (depth == 0 && i + 1 < len) return false;
    }
    return true;
}

/* Length of the next part of s up to a '*' outside parentheses. */
static size_t part_len(const char *s) {
    int depth = 0;
    size_t i = 0;
    for (; s[i]; i++) {
        if (s[i] == '(') depth++;
        else if (s[i] == ')') depth--;
        else if (s[i] == '*' && depth == 0) break;
    }
    return i;
}

/* Reads a dim as coef * factors; false for an unknown dim or too many
 * factors. A name is split at top-level '*' only when every part is an
 * identifier, an integer or a parenthesised group. */
static bool mono_of(lp_dim d, mono *m) {
    m->coef = 1;
    m->n = 0;
    if (lp_dim_is_num(d)) {
        m->coef = d.size;
        return true;
    }
    if (!d.sym) return false;
    const char *s = d.sym;
    bool split = true;
    int coefs = 0;
    for (const char *p = s;;) {
        size_t len = part_len(p);
        int64_t v;
        if (parse_int(p, len, &v)) coefs++;
        else if (!is_ident(p, len) && !is_group(p, len)) split = false;
        if (!p[len]) break;
        p += len + 1;
    }
    if (!split || coefs > 1) return mono_push(m, s, strlen(s));
    for (const char *p = s;;) {
        size_t len = part_len(p);
        int64_t v;
        if (parse_int(p, len, &v)) m->coef = v;
        else if (!mono_push(m, p, len)) return false;
        if (!p[len]) break;
        p += len + 1;
    }
    return true;
}

static bool needs_parens(const factor *f) { return !is_ident(f->s, f->len) && !is_group(f->s, f->len); }

static lp_dim mono_to_dim(lp_arena *a, mono *m) {
    if (m->n == 0) return lp_dim_num(m->coef);
    if (m->coef == 0) return lp_dim_num(0);
    qsort(m->f, (size_t)m->n, sizeof m->f[0], factor_cmp);
    bool alone = m->n == 1 && m->coef == 1;
    size_t len = 24;
    for (int i = 0; i < m->n; i++) len += m->f[i].len + 3;
    char *s = lp_arena_alloc(a, len);
    if (!s) return lp_dim_unknown();
    char *p = s;
    if (m->coef != 1) p += snprintf(p, 24, "%lld*", (long long)m->coef);
    for (int i = 0; i < m->n; i++) {
        bool wrap = !alone && needs_parens(&m->f[i]);
        if (wrap) *p++ = '(';
        memcpy(p, m->f[i].s, m->f[i].len);
        p += m->f[i].len;
        if (wrap) *p++ = ')';
        *p++ = i + 1 < m->n ? '*' : '\0';
    }
    lp_dim d = {.size = LP_DIM_UNKNOWN, .sym = s};
    return d;
}

lp_dim lp_dim_mul(lp_arena *a, lp_dim x, lp_dim y) {
    if (lp_dim_is_num(x) && lp_dim_is_num(y)) {
        int64_t r;
        return __builtin_mul_overflow(x.size, y.size, &r) ? lp_dim_unknown() : lp_dim_num(r);
    }
    if ((lp_dim_is_num(x) && x.size == 0) || (lp_dim_is_num(y) && y.size == 0)) return lp_dim_num(0);
    if (lp_dim_is_num(x) && x.size == 1) return y;
    if (lp_dim_is_num(y) && y.size == 1) return x;
    mono mx, my;
    if (!mono_of(x, &mx) || !mono_of(y, &my)) return lp_dim_unknown();
    if (__builtin_mul_overflow(mx.coef, my.coef, &mx.coef)) return lp_dim_unknown();
    for (int i = 0; i < my.n; i++)
        if (!mono_push(&mx, my.f[i].s, my.f[i].len)) return lp_dim_unknown();
    return mono_to_dim(a, &mx);
}

lp_dim lp_dim_div(lp_arena *a, lp_dim x, lp_dim y) {
    if (lp_dim_is_num(y) && y.size == 1) return x;
    if (lp_dim_is_num(x) && lp_dim_is_num(y))
        return y.size != 0 && x.size % y.size == 0 ? lp_dim_num(x.size / y.size) : lp_dim_unknown();
    mono mx, my;
    if (!mono_of(x, &mx) || !mono_of(y, &my) || my.coef == 0 || mx.coef % my.coef != 0)
        return lp_dim_unknown();
    mx.coef /= my.coef;
    /* every factor of y must cancel one of x */
    for (int i = 0; i < my.n; i++) {
        int k = 0;
        while (k < mx.n && factor_cmp(&mx.f[k], &my.f[i]) != 0) k++;
        if (k == mx.n) return lp_dim_unknown();
        mx.f[k] = mx.f[--mx.n];
    }
    return mono_to_dim(a, &mx);
}

lp_dim lp_dim_add(lp_dim x, lp_dim y) {
    if (lp_dim_is_num(x) && lp_dim_is_num(y)) {
        int64_t r;
        return __builtin_add_overflow(x.size, y.size, &r) ? lp_dim_unknown() : lp_dim_num(r);
    }
    if (lp_dim_is_num(x) && x.size == 0) return y;
    if (lp_dim_is_num(y) && y.size == 0) return x;
    return lp_dim_unknown();
}

lp_dim lp_dim_sub(lp_dim x, lp_dim y) {
    if (lp_dim_is_num(x) && lp_dim_is_num(y)) {
        int64_t r;
        return __builtin_sub_overflow(x.size, y.size, &r) ? lp_dim_unknown() : lp_dim_num(r);
    }
    if (lp_dim_is_num(y) && y.size == 0) return x;
    if (!lp_dim_is_unknown(x) && lp_dim_same(x, y)) return lp_dim_num(0);
    return lp_dim_unknown();
}

/* numpy rules; a symbol against a number n > 1 can only be n (or 1, which
 * broadcasts to n), so the number is safe. Two different symbols may be
 * equal or one may be 1: unknown. */
bool lp_dim_broadcast(lp_dim x, lp_dim y, lp_dim *out) {
    if (lp_dim_is_num(x) && lp_dim_is_num(y)) {
        if (x.size != y.size && x.size != 1 && y.size != 1) return false;
        *out = x.size == 1 ? y : x;
        return true;
    }
    if (lp_dim_is_num(x)) *out = x.size == 1 ? y : x;
    else if (lp_dim_is_num(y)) *out = y.size == 1 ? x : y;
    else if (lp_dim_same(x, y)) *out = x;
    else *out = lp_dim_unknown();
    return true;
}

lp_dim lp_dim_product(lp_arena *a, const lp_dim *dims, int n) {
    lp_dim p = lp_dim_num(1);
    for (int i = 0; i < n; i++) p = lp_dim_mul(a, p, dims[i]);
    return p;
}

void lp_dim_for_each_symbol(lp_dim d, void (*fn)(const char *name, size_t len, void *ctx), void *ctx) {
    mono m;
    if (lp_dim_is_num(d) || !d.sym) return;
    if (!mono_of(d, &m)) {
        fn(d.sym, strlen(d.sym), ctx);
        return;
    }
    for (int i = 0; i < m.n; i++) fn(m.f[i].s, m.f[i].len, ctx);
}
