/* Reading a model file: the ModelProto without its large raw_data fields,
 * which stay in the file and are read on demand (see model_read.h). */
#define _GNU_SOURCE
#include "model_read.h"
#include "onnx.pb-c.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

/* Files up to this size are read whole and compacted in place; larger ones
 * stream through a window of this size into a separate, growing copy. */
#define LP_READ_WINDOW ((size_t)4 << 20)

bool lp_pread_all(int fd, void *dst, uint64_t len, uint64_t offset) {
    uint64_t done = 0;
    while (done < len) {
        size_t want = len - done > ((size_t)1 << 30) ? ((size_t)1 << 30) : (size_t)(len - done);
        ssize_t got = pread(fd, (char *)dst + done, want, (off_t)(offset + done));
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            if (got == 0) errno = 0;
            return false;
        }
        done += (uint64_t)got;
    }
    return true;
}

/* Where the walk is in the schema: the messages whose fields it rewrites. */
enum { LV_MODEL, LV_GRAPH, LV_NODE, LV_ATTR, LV_TENSOR, LV_NONE };

typedef struct walker {
    lp_diag *d;
    uint64_t size;      /* of the file or buffer */
    /* in place: the whole input in buf, compacted towards its start */
    bool in_place;
    uint8_t *buf;
    /* streaming: input through win, output into out */
    int fd;
    uint8_t *win;
    uint64_t win_off;
    size_t win_len;
    uint8_t *out;
    size_t out_len, out_cap;
    lp_raw_range *raw;
    size_t n_raw, cap_raw;
    lp_meta_range *meta;
    size_t n_meta, cap_meta;
    uint8_t *kv;
    size_t kv_len, kv_cap;
    lp_status st;
    uint64_t nonce;
    /* field numbers, from the generated descriptors */
    uint32_t f_graph, f_node, f_init, f_attr, f_t, f_tensors, f_raw, f_meta;
} walker;

/* A mark: its key (5 bytes), length (1) and nonce and index (16). */
#define LP_MARK_LEN 22
/* Graphs and nodes from this size on are walked for metadata to leave out. */
#define LP_META_WALK_MIN 64
/* Metadata entries larger than this are unpacked as usual. */
#define LP_META_ENTRY_MAX ((uint64_t)1 << 16)

static bool fail_read(walker *w, uint64_t off) {
    if (w->st != LP_OK) return false;
    if (errno == 0)
        w->st = lp_error(w->d, LP_ERR_INVALID_MODEL,
                         "the file shrank while it was read: it ended before byte %" PRIu64
                         " of the %" PRIu64 " it had when opened", off, w->size);
    else
        w->st = lp_error(w->d, LP_ERR_INVALID_MODEL, "cannot read: %s", strerror(errno));
    return false;
}

/* n (at most 32) bytes at input offset off, n <= size - off. */
static const uint8_t *peek(walker *w, uint64_t off, size_t n) {
    if (w->in_place) return w->buf + off;
    if (off >= w->win_off && off + n <= w->win_off + w->win_len) return w->win + (off - w->win_off);
    size_t want = w->size - off < LP_READ_WINDOW ? (size_t)(w->size - off) : LP_READ_WINDOW;
    if (!lp_pread_all(w->fd, w->win, want, off)) {
        w->win_len = 0;
        fail_read(w, off + want);
        return NULL;
    }
    w->win_off = off;
    w->win_len = want;
    return w->win;
}

static uint8_t *out_reserve(walker *w, size_t n) {
    if (w->out_cap - w->out_len < n) {
        size_t cap = w->out_cap ? w->out_cap : (size_t)1 << 16;
        while (cap - w->out_len < n) cap *= 2;
        uint8_t *grown = realloc(w->out, cap);
        if (!grown) {
            if (w->st == LP_OK) w->st = lp_error(w->d, LP_ERR_INTERNAL, "out of memory reading the model");
            return NULL;
        }
        w->out = grown;
        w->out_cap = cap;
    }
    return w->out + w->out_len;
}

/* Appends input bytes [off, off + n) to the output. */
static bool copy_in(walker *w, uint64_t off, uint64_t n) {
    if (w->in_place) {
        if (w->out_len != off) memmove(w->buf + w->out_len, w->buf + off, (size_t)n);
        w->out_len += (size_t)n;
        return true;
    }
    uint8_t *dst = out_reserve(w, (size_t)n);
    if (!dst) return false;
    if (off >= w->win_off && off < w->win_off + w->win_len) {
        size_t have = (size_t)(w->win_off + w->win_len - off);
        if (have > n) have = (size_t)n;
        memcpy(dst, w->win + (off - w->win_off), have);
        dst += have, off += have, n -= have;
        w->out_len += have;
    }
    if (n && n < LP_READ_WINDOW / 2) {
        const uint8_t *p = peek(w, off, (size_t)n);
        if (!p) return false;
        memcpy(dst, p, (size_t)n);
    } else if (n && !lp_pread_all(w->fd, dst, n, off)) {
        return fail_read(w, off + n);
    }
    w->out_len += (size_t)n;
    return true;
}

static bool append(walker *w, const uint8_t *bytes, size_t n) {
    uint8_t *dst = w->in_place ? w->buf + w->out_len : out_reserve(w, n);
    if (!dst) return false;
    memcpy(dst, bytes, n);
    w->out_len += n;
    return true;
}

static uint8_t *out_at(walker *w, size_t pos) { return (w->in_place ? w->buf : w->out) + pos; }

/* Decodes a varint from p (avail bytes); its length, or 0 if malformed. */
static size_t get_varint(const uint8_t *p, size_t avail, uint64_t *v) {
    *v = 0;
    for (size_t i = 0; i < avail && i < 10; i++) {
        *v |= (uint64_t)(p[i] & 0x7f) << (7 * i);
        if (!(p[i] & 0x80)) return i + 1;
    }
    return 0;
}

static size_t put_varint(uint8_t *p, uint64_t v) {
    size_t n = 0;
    for (; v >= 0x80; v >>= 7) p[n++] = (uint8_t)(v | 0x80);
    p[n++] = (uint8_t)v;
    return n;
}

/* Writes v into exactly width bytes (a padded varint; v fits, since a
 * rewritten message only shrinks). */
static void put_varint_width(uint8_t *p, uint64_t v, size_t width) {
    for (size_t i = 0; i + 1 < width; i++, v >>= 7) p[i] = (uint8_t)((v & 0x7f) | 0x80);
    p[width - 1] = (uint8_t)(v & 0x7f);
}

/* protobuf-c unpacks nested messages recursively: a few hundred kB that
 * nest TypeProto in TypeProto would exhaust its stack. False only when
 * messages nest deeper than LP_PROTOBUF_MAX_DEPTH; anything malformed is
 * left for the unpacker to report. */
static bool has_message_fields(const ProtobufCMessageDescriptor *desc) {
    for (unsigned i = 0; i < desc->n_fields; i++)
        if (desc->fields[i].type == PROTOBUF_C_TYPE_MESSAGE) return true;
    return false;
}

/* Whether a message of n bytes at depth could nest past the limit: each
 * level costs at least two bytes (a key and a length), and a message type
 * without message fields holds no levels at all. */
static bool nesting_possible(const ProtobufCMessageDescriptor *desc, uint64_t n, int depth) {
    return (uint64_t)depth + n / 2 > LP_PROTOBUF_MAX_DEPTH && has_message_fields(desc);
}

static bool nesting_within_limit(const ProtobufCMessageDescriptor *desc, const uint8_t *p,
                                 const uint8_t *end, int depth) {
    if (depth > LP_PROTOBUF_MAX_DEPTH) return false;
    if (!nesting_possible(desc, (uint64_t)(end - p), depth)) return true;
    while (p < end) {
        uint64_t key, n;
        size_t k = get_varint(p, (size_t)(end - p), &key);
        if (!k) return true;
        p += k;
        switch (key & 7) {
        case PROTOBUF_C_WIRE_TYPE_VARINT:
            if (!(k = get_varint(p, (size_t)(end - p), &n))) return true;
            p += k;
            break;
        case PROTOBUF_C_WIRE_TYPE_64BIT:
            if (end - p < 8) return true;
            p += 8;
            break;
        case PROTOBUF_C_WIRE_TYPE_32BIT:
            if (end - p < 4) return true;
            p += 4;
            break;
        case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
            if (!(k = get_varint(p, (size_t)(end - p), &n)) || n > (uint64_t)(end - p - (ptrdiff_t)k))
                return true;
            p += k;
            const ProtobufCFieldDescriptor *f =
                key >> 3 <= UINT32_MAX
                    ? protobuf_c_message_descriptor_get_field(desc, (unsigned)(key >> 3))
                    : NULL;
            if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                !nesting_within_limit(f->descriptor, p, p + n, depth + 1))
                return false;
            p += n;
            break;
        }
        default:
            return true; /* groups and bad wire types: the unpacker rejects them */
        }
    }
    return true;
}

static bool too_deep(walker *w) {
    if (w->st == LP_OK)
        w->st = lp_error(w->d, LP_ERR_INVALID_MODEL,
                         "the protobuf nests messages more than %d deep; no ONNX model needs "
                         "that, and unpacking it could exhaust the stack", LP_PROTOBUF_MAX_DEPTH);
    return false;
}

/* The level a length-delimited field of `level` leads to, if rewritten. */
static int sub_level(const walker *w, int level, uint64_t num) {
    switch (level) {
    case LV_MODEL: return num == w->f_graph ? LV_GRAPH : LV_NONE;
    case LV_GRAPH: return num == w->f_node ? LV_NODE : num == w->f_init ? LV_TENSOR : LV_NONE;
    case LV_NODE: return num == w->f_attr ? LV_ATTR : LV_NONE;
    case LV_ATTR: return num == w->f_t || num == w->f_tensors ? LV_TENSOR : LV_NONE;
    default: return LV_NONE;
    }
}

/* Appends a mark field: this read's nonce, then idx. */
static bool append_mark(walker *w, uint64_t idx) {
    uint8_t mark[32];
    size_t n = put_varint(mark, (uint64_t)LP_RAW_MARK_FIELD << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    n += put_varint(mark + n, 16);
    for (int i = 0; i < 8; i++) mark[n + i] = (uint8_t)(w->nonce >> (8 * i));
    for (int i = 0; i < 8; i++) mark[n + 8 + i] = (uint8_t)(idx >> (8 * i));
    return append(w, mark, n + 16);
}

static bool walk_oom(walker *w) {
    if (w->st == LP_OK) w->st = lp_error(w->d, LP_ERR_INTERNAL, "out of memory reading the model");
    return false;
}

static bool record_raw(walker *w, uint64_t off, uint64_t len) {
    if (w->n_raw == w->cap_raw) {
        size_t cap = w->cap_raw ? 2 * w->cap_raw : 64;
        lp_raw_range *grown = realloc(w->raw, cap * sizeof *grown);
        if (!grown) {
            if (w->st == LP_OK) w->st = lp_error(w->d, LP_ERR_INTERNAL, "out of memory reading the model");
            return false;
        }
        w->raw = grown;
        w->cap_raw = cap;
    }
    w->raw[w->n_raw] = (lp_raw_range){off, len};
    return append_mark(w, w->n_raw++);
}

static bool add_meta(walker *w, lp_meta_range r) {
    if (w->n_meta == w->cap_meta) {
        size_t cap = w->cap_meta ? 2 * w->cap_meta : 256;
        lp_meta_range *grown = realloc(w->meta, cap * sizeof *grown);
        if (!grown) return walk_oom(w);
        w->meta = grown;
        w->cap_meta = cap;
    }
    w->meta[w->n_meta++] = r;
    return true;
}

/* Copies the read entry [off, off + len) of the input into kv. */
static bool add_kv(walker *w, uint64_t off, uint64_t len, uint32_t before) {
    if (w->kv_cap - w->kv_len < len) {
        size_t cap = w->kv_cap ? w->kv_cap : 4096;
        while (cap - w->kv_len < len) cap *= 2;
        uint8_t *grown = realloc(w->kv, cap);
        if (!grown) return walk_oom(w);
        w->kv = grown;
        w->kv_cap = cap;
    }
    const uint8_t *p = peek(w, off, (size_t)len);
    if (!p) return false;
    memcpy(w->kv + w->kv_len, p, (size_t)len);
    w->kv_len += (size_t)len;
    return add_meta(w, (lp_meta_range){w->kv_len - len, len, before, true});
}

/* The node metadata run [off, end) as one mark with items from `first`. */
static bool append_meta_mark(walker *w, size_t first) {
    uint8_t mark[32];
    size_t n = put_varint(mark, (uint64_t)LP_RAW_MARK_FIELD << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
    n += put_varint(mark + n, 16);
    uint32_t count = (uint32_t)(w->n_meta - first);
    for (int i = 0; i < 8; i++) mark[n + i] = (uint8_t)(w->nonce >> (8 * i));
    for (int i = 0; i < 4; i++) mark[n + 8 + i] = (uint8_t)((uint32_t)first >> (8 * i));
    for (int i = 0; i < 4; i++) mark[n + 12 + i] = (uint8_t)(count >> (8 * i));
    return append(w, mark, n + 16);
}

/* The end of the NodeProto.metadata_props field at `off` (before `end`)
 * if it can be taken out: it encodes as the writer would encode it again
 * (key then value, shortest length prefixes, nothing else) and its key has
 * no NUL byte; 0 otherwise. *read says whether a stage reads its key. */
static uint64_t meta_leavable(walker *w, uint64_t off, uint64_t end, bool *read) {
    size_t avail = end - off < 16 ? (size_t)(end - off) : 16;
    if (avail < 3) return 0;
    const uint8_t *p = peek(w, off, avail);
    if (!p) return 0;
    uint64_t key, v;
    size_t kl = get_varint(p, avail, &key), vl;
    if (kl != 1 || key != ((uint64_t)w->f_meta << 3 | PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED) ||
        !(vl = get_varint(p + 1, avail - 1, &v)) || v > LP_META_ENTRY_MAX ||
        v > end - off - 1 - vl)
        return 0;
    uint8_t tmp[10];
    if (put_varint(tmp, v) != vl || !(p = peek(w, off + 1 + vl, (size_t)v))) return 0;
    const uint8_t *q = p, *stop = p + v;
    for (uint8_t tag = 0x0a; tag <= 0x12; tag += 8) { /* key (1), then value (2) */
        uint64_t n;
        size_t nl;
        if (q == stop || *q++ != tag || !(nl = get_varint(q, (size_t)(stop - q), &n)) ||
            put_varint(tmp, n) != nl || n > (uint64_t)(stop - q - (ptrdiff_t)nl))
            return 0;
        q += nl;
        if (tag == 0x0a) {
            if (memchr(q, 0, (size_t)n)) return 0;
            *read = lp_node_meta_key_read((const char *)q, (size_t)n);
        }
        q += n;
    }
    return q == stop ? off + 1 + vl + v : 0;
}

/* Copies the message [start, end) of type desc at `level` to the output,
 * rewriting as model_read.h says. Malformed input is copied as it is, for
 * the unpacker to reject. */
static bool walk(walker *w, const ProtobufCMessageDescriptor *desc, int level, uint64_t start,
                 uint64_t end, int depth) {
    if (depth > LP_PROTOBUF_MAX_DEPTH) return too_deep(w);
    uint64_t pos = start;
    uint32_t kept_meta = 0; /* metadata_props entries of a node copied so far */
    while (pos < end) {
        size_t avail = end - pos < 32 ? (size_t)(end - pos) : 32;
        const uint8_t *p = peek(w, pos, avail);
        if (!p) return false;
        uint64_t key, v;
        size_t kl = get_varint(p, avail, &key), vl;
        if (!kl) return copy_in(w, pos, end - pos);
        uint64_t num = key >> 3;
        switch (key & 7) {
        case PROTOBUF_C_WIRE_TYPE_VARINT:
            if (!(vl = get_varint(p + kl, avail - kl, &v))) return copy_in(w, pos, end - pos);
            if (!copy_in(w, pos, kl + vl)) return false;
            pos += kl + vl;
            break;
        case PROTOBUF_C_WIRE_TYPE_64BIT:
        case PROTOBUF_C_WIRE_TYPE_32BIT: {
            uint64_t n = kl + ((key & 7) == PROTOBUF_C_WIRE_TYPE_64BIT ? 8 : 4);
            if (n > end - pos) return copy_in(w, pos, end - pos);
            if (!copy_in(w, pos, n)) return false;
            pos += n;
            break;
        }
        case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED: {
            if (!(vl = get_varint(p + kl, avail - kl, &v))) return copy_in(w, pos, end - pos);
            uint64_t body = pos + kl + vl;
            if (v > w->size - body) {
                if (w->st == LP_OK)
                    w->st = lp_error(w->d, LP_ERR_INVALID_MODEL,
                                     "not an ONNX model, or a truncated one: a field at byte %" PRIu64
                                     " says it holds %" PRIu64 " bytes, but the file ends at byte %" PRIu64
                                     " (it is shorter than its contents say)", pos, v, w->size);
                return false;
            }
            if (v > end - body) return copy_in(w, pos, end - pos);
            /* a message shorter than the threshold holds nothing to remove */
            int sub = sub_level(w, level, num);
            if (v < (sub == LV_GRAPH || sub == LV_NODE ? LP_META_WALK_MIN : LP_DATA_INLINE_MAX))
                sub = LV_NONE;
            if (level == LV_NODE && num == w->f_meta) {
                /* a run of entries to take out, if it is worth its mark:
                 * items of unread entries, and each read one */
                size_t first = w->n_meta, kv_len = w->kv_len;
                uint64_t run_end = pos, next;
                bool read = false;
                while (run_end < end && (next = meta_leavable(w, run_end, end, &read))) {
                    lp_meta_range *last = w->n_meta > first ? &w->meta[w->n_meta - 1] : NULL;
                    if (read) {
                        if (!add_kv(w, run_end, next - run_end, kept_meta)) return false;
                    } else if (last && !last->read) {
                        last->len += next - run_end;
                    } else if (!add_meta(w, (lp_meta_range){run_end, next - run_end, kept_meta, false})) {
                        return false;
                    }
                    run_end = next;
                }
                if (w->st != LP_OK) return false;
                if (run_end - pos >= LP_MARK_LEN) {
                    if (!append_meta_mark(w, first)) return false;
                    pos = run_end;
                    break;
                }
                w->n_meta = first, w->kv_len = kv_len;
                if (!copy_in(w, pos, kl + vl + v)) return false;
                kept_meta++;
            } else if (level == LV_TENSOR && num == w->f_raw && v >= LP_DATA_INLINE_MAX) {
                if (!record_raw(w, body, v)) return false;
            } else if (sub != LV_NONE) {
                if (!copy_in(w, pos, kl + vl)) return false;
                size_t len_at = w->out_len - vl, before = w->out_len;
                const ProtobufCFieldDescriptor *f =
                    protobuf_c_message_descriptor_get_field(desc, (unsigned)num);
                if (!walk(w, f->descriptor, sub, body, body + v, depth + 1)) return false;
                put_varint_width(out_at(w, len_at), w->out_len - before, vl);
            } else {
                if (!copy_in(w, pos, kl + vl + v)) return false;
                const ProtobufCFieldDescriptor *f =
                    (uint64_t)depth + 1 + v / 2 > LP_PROTOBUF_MAX_DEPTH && num <= UINT32_MAX
                        ? protobuf_c_message_descriptor_get_field(desc, (unsigned)num)
                        : NULL;
                if (f && f->type == PROTOBUF_C_TYPE_MESSAGE &&
                    nesting_possible(f->descriptor, v, depth + 1)) {
                    const uint8_t *b = out_at(w, w->out_len - (size_t)v);
                    if (!nesting_within_limit(f->descriptor, b, b + v, depth + 1)) return too_deep(w);
                }
            }
            pos = body + v;
            break;
        }
        default:
            return copy_in(w, pos, end - pos);
        }
    }
    return true;
}

static uint32_t field_id(const ProtobufCMessageDescriptor *desc, const char *name) {
    const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
    return f ? f->id : 0;
}

/* A marker carries a secret of this load, so a file cannot forge one. */
static uint64_t fresh_nonce(void) {
    uint64_t v = 0;
    if (getrandom(&v, sizeof v, GRND_NONBLOCK) != (ssize_t)sizeof v) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        v = (uint64_t)ts.tv_nsec * 0x9e3779b97f4a7c15ull ^ (uint64_t)ts.tv_sec ^ (uint64_t)getpid() << 32;
    }
    return v;
}

static void walker_fields(walker *w) {
    w->nonce = fresh_nonce();
    w->f_graph = field_id(&onnx__model_proto__descriptor, "graph");
    w->f_node = field_id(&onnx__graph_proto__descriptor, "node");
    w->f_init = field_id(&onnx__graph_proto__descriptor, "initializer");
    w->f_attr = field_id(&onnx__node_proto__descriptor, "attribute");
    w->f_t = field_id(&onnx__attribute_proto__descriptor, "t");
    w->f_tensors = field_id(&onnx__attribute_proto__descriptor, "tensors");
    w->f_raw = field_id(&onnx__tensor_proto__descriptor, "raw_data");
    w->f_meta = field_id(&onnx__node_proto__descriptor, "metadata_props");
}

static lp_status finish(walker *w, bool ok, lp_model_bytes *out) {
    if (!ok) {
        free(w->in_place ? w->buf : w->out);
        free(w->raw);
        free(w->meta);
        free(w->kv);
        return w->st != LP_OK ? w->st : lp_error(w->d, LP_ERR_INTERNAL, "reading the model failed");
    }
    uint8_t *msg = w->in_place ? w->buf : w->out;
    *out = (lp_model_bytes){.msg = msg, .len = w->out_len, .owned = msg, .raw = w->raw,
                            .n_raw = w->n_raw, .meta = w->meta, .n_meta = w->n_meta,
                            .kv = w->kv, .kv_len = w->kv_len,
                            .nonce = w->nonce};
    return LP_OK;
}

lp_status lp_model_read_fd(int fd, uint64_t size, lp_model_bytes *out, lp_diag *d) {
    *out = (lp_model_bytes){0};
    walker w = {.d = d, .size = size, .fd = fd};
    walker_fields(&w);
    if (size <= LP_READ_WINDOW) {
        w.in_place = true;
        w.buf = malloc(size ? (size_t)size : 1);
        if (!w.buf) return lp_error(d, LP_ERR_INTERNAL, "out of memory reading the model");
        if (!lp_pread_all(fd, w.buf, size, 0)) {
            fail_read(&w, size);
            return finish(&w, false, out);
        }
        return finish(&w, walk(&w, &onnx__model_proto__descriptor, LV_MODEL, 0, size, 1), out);
    }
    w.win = malloc(LP_READ_WINDOW);
    /* the copy never outgrows the file; only the pages written count */
    w.out = malloc((size_t)size);
    w.out_cap = (size_t)size;
    if (!w.win || !w.out) {
        free(w.win);
        free(w.out);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory reading the model");
    }
    bool ok = walk(&w, &onnx__model_proto__descriptor, LV_MODEL, 0, size, 1);
    free(w.win);
    return finish(&w, ok, out);
}

lp_status lp_model_read_mem(const uint8_t *bytes, size_t size, lp_model_bytes *out, lp_diag *d) {
    *out = (lp_model_bytes){0};
    walker w = {.d = d, .size = size, .fd = -1, .in_place = true};
    walker_fields(&w);
    w.buf = malloc(size ? size : 1);
    if (!w.buf) return lp_error(d, LP_ERR_INTERNAL, "out of memory reading the model");
    if (size) memcpy(w.buf, bytes, size);
    return finish(&w, walk(&w, &onnx__model_proto__descriptor, LV_MODEL, 0, size, 1), out);
}

void lp_model_bytes_free(lp_model_bytes *m) {
    free(m->owned);
    free(m->raw);
    free(m->meta);
    free(m->kv);
    *m = (lp_model_bytes){0};
}
