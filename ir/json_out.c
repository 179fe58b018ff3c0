/* JSON documents written as they are built (see json_out.h). */
#include "json_out.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* Flushed to the file whenever full: large, so a document takes few writes. */
#define OUT_BUFFER_BYTES (1u << 20)
#define DUMP_FLAGS (JSON_PRESERVE_ORDER | JSON_ENCODE_ANY)

typedef struct level {
    json_t *container; /* tree: the open object or array (owned by its parent) */
    bool array;
    bool row;   /* stream: written on one line */
    bool first; /* stream: nothing written into it yet */
} level;

struct lp_json_out {
    FILE *f; /* NULL when building a tree */
    char *buf;
    size_t len;
    level *stack;
    int depth, max_depth;
    json_t *root;
    bool oom, io_failed, had_root;
    int io_errno;
};

/* ---- names ----------------------------------------------------------------- */

/* Length of the valid UTF-8 sequence at p, 0 if p[0] starts none (RFC 3629:
 * no overlong forms, no surrogates, nothing above U+10FFFF). */
static size_t utf8_seq(const unsigned char *p) {
    unsigned c = p[0], cp, min;
    size_t n;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF)
        n = 2, cp = c & 0x1F, min = 0x80;
    else if ((c & 0xF0) == 0xE0)
        n = 3, cp = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4)
        n = 4, cp = c & 0x07, min = 0x10000;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80) return 0; /* also stops at the terminator */
        cp = cp << 6 | (p[i] & 0x3Fu);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return n;
}

/* Bytes of the escaped text of s (without the terminator); *valid says
 * whether s is valid UTF-8 already. */
static size_t escaped_len(const unsigned char *s, bool *valid) {
    size_t len = 0;
    *valid = true;
    while (*s) {
        size_t n = utf8_seq(s);
        if (n) {
            len += n;
            s += n;
        } else {
            len += 4;
            s++;
            *valid = false;
        }
    }
    return len;
}

static char *escape_into(const unsigned char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    char *out = malloc(len + 1), *o = out;
    if (!out) return NULL;
    while (*s) {
        size_t n = utf8_seq(s);
        if (n) {
            memcpy(o, s, n);
            o += n;
            s += n;
        } else {
            *o++ = '\\';
            *o++ = 'x';
            *o++ = hex[*s >> 4];
            *o++ = hex[*s & 15];
            s++;
        }
    }
    *o = '\0';
    return out;
}

char *lp_json_escape_name(const char *s) {
    bool valid;
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    return escape_into(u, escaped_len(u, &valid));
}

json_t *lp_json_name(const char *s) {
    bool valid;
    const unsigned char *u = (const unsigned char *)(s ? s : "");
    size_t len = escaped_len(u, &valid);
    if (valid) return json_stringn_nocheck((const char *)u, len);
    char *e = escape_into(u, len);
    json_t *j = e ? json_stringn_nocheck(e, len) : NULL;
    free(e);
    return j;
}

/* ---- the writer ------------------------------------------------------------ */

lp_json_out *lp_json_out_stream(FILE *f) {
    lp_json_out *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->f = f;
    w->buf = malloc(OUT_BUFFER_BYTES);
    if (!w->buf) {
        free(w);
        return NULL;
    }
    return w;
}

lp_json_out *lp_json_out_tree(void) { return calloc(1, sizeof(lp_json_out)); }

static void flush_buffer(lp_json_out *w) {
    if (w->len && !w->io_failed && fwrite(w->buf, 1, w->len, w->f) != w->len) {
        w->io_failed = true;
        w->io_errno = errno;
    }
    w->len = 0;
}

/* Makes room for n more bytes when n fits the buffer at all. */
static inline void reserve(lp_json_out *w, size_t n) {
    if (w->len + n > OUT_BUFFER_BYTES) flush_buffer(w);
}

static void out_bytes(lp_json_out *w, const char *s, size_t n) {
    reserve(w, n);
    if (n > OUT_BUFFER_BYTES) {
        if (!w->io_failed && fwrite(s, 1, n, w->f) != n) {
            w->io_failed = true;
            w->io_errno = errno;
        }
        return;
    }
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

/* A few bytes known to fit a small reserve: no length test of their own. */
static inline void put_small(lp_json_out *w, const char *s, size_t n) {
    reserve(w, n);
    memcpy(w->buf + w->len, s, n);
    w->len += n;
}

static int dump_cb(const char *s, size_t n, void *data) {
    lp_json_out *w = data;
    out_bytes(w, s, n);
    return w->io_failed ? -1 : 0;
}

static void dump_value(lp_json_out *w, const json_t *v) {
    if (json_dump_callback(v, dump_cb, w, DUMP_FLAGS) != 0 && !w->io_failed) w->oom = true;
}

static void newline_indent(lp_json_out *w, int depth) {
    size_t n = (size_t)depth + 1;
    if (w->len + n > OUT_BUFFER_BYTES) flush_buffer(w);
    if (n > OUT_BUFFER_BYTES) {
        out_bytes(w, "\n", 1);
        for (int i = 0; i < depth; i++) out_bytes(w, " ", 1);
        return;
    }
    w->buf[w->len] = '\n';
    memset(w->buf + w->len + 1, ' ', (size_t)depth);
    w->len += n;
}

/* Bytes JSON takes inside quotes as they are (every writer, jansson's
 * included, writes them unchanged): printable ASCII but '"' and '\\'. */
static const unsigned char plain_byte[256] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    1, 1, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
    1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
};

/* Stream: a string. One pass copies plain bytes straight into the buffer
 * behind the opening quote. A string with any other byte is written by
 * jansson; one that meets the end of the buffer is written again after a
 * flush, or by jansson when it is longer than a whole buffer. */
static void out_string(lp_json_out *w, const char *s) {
    const unsigned char *u = (const unsigned char *)s;
    char *o = w->buf + w->len, *last = w->buf + OUT_BUFFER_BYTES - 1; /* the closing quote's room */
    if (o < last) {
        char *q = o + 1;
        while (q < last && plain_byte[*u]) *q++ = (char)*u++;
        if (*u == '\0') {
            *o = '"';
            *q++ = '"';
            w->len = (size_t)(q - w->buf);
            return;
        }
        if (!plain_byte[*u]) goto general;
    }
    if (w->len == 0) goto general;
    flush_buffer(w);
    out_string(w, s);
    return;
general:;
    json_t *j = lp_json_name(s);
    if (!j) {
        w->oom = true;
        return;
    }
    dump_value(w, j);
    json_decref(j);
}

/* Stream: the comma, line break, indentation and key before a value. */
static void separate(lp_json_out *w, const char *key) {
    if (w->depth == 0) {
        if (w->had_root) w->oom = true; /* a second document: a caller's bug */
        w->had_root = true;
        return;
    }
    level *l = &w->stack[w->depth - 1];
    if (l->row) {
        if (!l->first) put_small(w, ", ", 2);
    } else {
        if (!l->first) put_small(w, ",", 1);
        newline_indent(w, w->depth);
    }
    l->first = false;
    if (!l->array) {
        out_string(w, key ? key : "");
        put_small(w, ": ", 2);
    }
}

/* Tree: v (stolen) into the open container, or as the root. */
static void attach(lp_json_out *w, const char *key, json_t *v) {
    if (!v) {
        w->oom = true;
        return;
    }
    if (w->depth == 0) {
        if (w->root) w->oom = true;
        json_decref(w->root);
        w->root = v;
        return;
    }
    level *l = &w->stack[w->depth - 1];
    if (!l->container) {
        json_decref(v);
        w->oom = true;
        return;
    }
    int rc = l->array ? json_array_append_new(l->container, v)
                      : json_object_set_new(l->container, key ? key : "", v);
    if (rc != 0) w->oom = true;
}

static void begin(lp_json_out *w, const char *key, bool array, bool row) {
    if (!w) return;
    if (w->depth == w->max_depth) {
        int n = w->max_depth ? 2 * w->max_depth : 8;
        level *s = realloc(w->stack, sizeof *s * (size_t)n);
        if (!s) {
            w->oom = true;
            return;
        }
        w->stack = s;
        w->max_depth = n;
    }
    json_t *c = NULL;
    if (w->f) {
        separate(w, key);
        put_small(w, array ? "[" : "{", 1);
        /* everything inside a row is on its line */
        row = row || (w->depth > 0 && w->stack[w->depth - 1].row);
    } else {
        c = array ? json_array() : json_object();
        attach(w, key, c);
        if (w->oom) c = NULL; /* the result is dropped; what follows goes nowhere */
    }
    w->stack[w->depth++] = (level){.container = c, .array = array, .row = row, .first = true};
}

void lp_json_begin_object(lp_json_out *w, const char *key) { begin(w, key, false, false); }
void lp_json_begin_array(lp_json_out *w, const char *key) { begin(w, key, true, false); }
void lp_json_begin_row_object(lp_json_out *w, const char *key) { begin(w, key, false, true); }
void lp_json_begin_row_array(lp_json_out *w, const char *key) { begin(w, key, true, true); }

void lp_json_end(lp_json_out *w) {
    if (!w) return;
    if (w->depth == 0) {
        w->oom = true;
        return;
    }
    level l = w->stack[--w->depth];
    if (!w->f) return;
    if (!l.first && !l.row) newline_indent(w, w->depth);
    put_small(w, l.array ? "]" : "}", 1);
}

void lp_json_put(lp_json_out *w, const char *key, json_t *v) {
    if (!w || !v) {
        if (w) w->oom = true;
        json_decref(v);
        return;
    }
    if (!w->f) {
        attach(w, key, v);
        return;
    }
    separate(w, key);
    dump_value(w, v);
    json_decref(v);
}

void lp_json_put_members(lp_json_out *w, const json_t *members) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)members, key, v) lp_json_put(w, key, json_incref(v));
}

void lp_json_int(lp_json_out *w, const char *key, int64_t v) {
    if (!w) return;
    if (!w->f) {
        attach(w, key, json_integer((json_int_t)v));
        return;
    }
    separate(w, key);
    /* decimal digits from the end, two a step; the magnitude as unsigned so
     * INT64_MIN works */
    static const char pairs[] = "00010203040506070809101112131415161718192021222324"
                                "25262728293031323334353637383940414243444546474849"
                                "50515253545556575859606162636465666768697071727374"
                                "75767778798081828384858687888990919293949596979899";
    char digits[24], *p = digits + sizeof digits;
    uint64_t m = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    while (m >= 100) {
        unsigned r = (unsigned)(m % 100);
        m /= 100;
        p -= 2;
        memcpy(p, pairs + 2 * r, 2);
    }
    if (m >= 10) {
        p -= 2;
        memcpy(p, pairs + 2 * m, 2);
    } else {
        *--p = (char)('0' + m);
    }
    if (v < 0) *--p = '-';
    put_small(w, p, (size_t)(digits + sizeof digits - p));
}

void lp_json_string(lp_json_out *w, const char *key, const char *s) {
    if (!w) return;
    if (!w->f) {
        attach(w, key, lp_json_name(s));
        return;
    }
    separate(w, key);
    out_string(w, s ? s : "");
}

void lp_json_bool(lp_json_out *w, const char *key, bool v) {
    if (!w) return;
    if (!w->f) {
        attach(w, key, json_boolean(v));
        return;
    }
    separate(w, key);
    put_small(w, v ? "true" : "false", v ? 4 : 5);
}

void lp_json_null(lp_json_out *w, const char *key) {
    if (!w) return;
    if (!w->f) {
        attach(w, key, json_null());
        return;
    }
    separate(w, key);
    put_small(w, "null", 4);
}

lp_status lp_json_out_close(lp_json_out *w, const char *what, lp_diag *d) {
    if (!w) return lp_error(d, LP_ERR_INTERNAL, "out of memory writing %s", what);
    if (w->depth != 0 || !w->had_root) w->oom = true;
    out_bytes(w, "\n", 1);
    flush_buffer(w);
    if (!w->io_failed && (fflush(w->f) != 0 || ferror(w->f))) {
        w->io_failed = true;
        w->io_errno = errno;
    }
    lp_status st = LP_OK;
    if (w->io_failed)
        st = lp_error(d, LP_ERR_OUTPUT, "cannot write %s: %s", what,
                      w->io_errno ? strerror(w->io_errno) : "write error");
    else if (w->oom)
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory writing %s", what);
    free(w->buf);
    free(w->stack);
    free(w);
    return st;
}

json_t *lp_json_out_take(lp_json_out *w) {
    if (!w) return NULL;
    json_t *root = w->root;
    if (w->oom || w->depth != 0) {
        json_decref(root);
        root = NULL;
    }
    free(w->stack);
    free(w);
    return root;
}

lp_status lp_json_write(FILE *f, lp_json_doc doc, const void *ctx, const char *what, lp_diag *d) {
    lp_json_out *w = lp_json_out_stream(f);
    if (w) doc(ctx, w);
    return lp_json_out_close(w, what, d);
}
