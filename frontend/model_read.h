/* model_read.h - the frontend's reading of a model file (internal).
 *
 * A model's large raw_data fields are most of its bytes and no stage needs
 * them all at once. lp_model_read walks the ModelProto's wire format and
 * copies the message without the raw_data of the top-level graph's
 * initializers and its nodes' tensor attributes when they hold
 * LP_DATA_INLINE_MAX bytes or more: each such field becomes a small unknown
 * field LP_RAW_MARK_FIELD (16 bytes: `nonce`, a secret of this read, then
 * the index of its range in `raw`, both little-endian), and the range
 * records where the bytes lie in the file. protobuf-c then unpacks only the
 * skeleton. A mark field the file holds itself lacks the nonce and is
 * ignored. Length prefixes of the messages around a removed field keep
 * their byte count (padded varints), and messages shorter than the
 * threshold are copied whole.
 *
 * A node's metadata_props entries are read by the walk too, when they
 * encode as the writer would encode them again (a key then a value, each
 * once, with shortest length prefixes, and no NUL byte in the key): each
 * run of consecutive such entries (22 bytes or more, the size of its mark)
 * becomes one mark field of the NodeProto (`nonce`, then the index of its
 * first item in `meta` and the item count, 32 bits each). An item is a run
 * of entries whose keys no stage reads (lp_node_meta_key_read), left in the
 * file for card models to copy verbatim, or one entry a stage reads, its
 * bytes copied into `kv`. protobuf-c never sees them.
 *
 * The same walk bounds nesting (LP_PROTOBUF_MAX_DEPTH), since protobuf-c
 * unpacks nested messages recursively, and reports a field longer than the
 * file as a truncated file. The file is read with pread, never mapped: a
 * file that shrinks while it is read is an error, not a SIGBUS.
 */
#ifndef LP_MODEL_READ_H
#define LP_MODEL_READ_H

#include "lp_ir.h"

#include <protobuf-c/protobuf-c.h>

/* Unknown field number that marks a removed raw_data (the largest valid). */
#define LP_RAW_MARK_FIELD 536870911u
#define LP_PROTOBUF_MAX_DEPTH 100

typedef struct lp_raw_range {
    uint64_t offset; /* of the bytes in the file (or buffer) */
    uint64_t len;
} lp_raw_range;

/* Node metadata_props entries taken out of the message. */
typedef struct lp_meta_range {
    uint64_t offset; /* of the first field tag: in the file, or in `kv` for a read entry */
    uint64_t len;
    uint32_t before; /* metadata_props entries of the node left to protobuf-c before it */
    bool read;       /* one entry whose key a stage reads */
} lp_meta_range;

typedef struct lp_model_bytes {
    uint8_t *msg;     /* the ModelProto without removed fields */
    size_t len;
    uint8_t *owned;   /* what lp_model_bytes_free releases (NULL when msg is the caller's) */
    lp_raw_range *raw;
    size_t n_raw;
    lp_meta_range *meta;
    size_t n_meta;
    uint8_t *kv;      /* the entries stages read */
    size_t kv_len;
    uint64_t nonce;   /* in every mark field */
} lp_model_bytes;

/* From an open file of `size` bytes. */
lp_status lp_model_read_fd(int fd, uint64_t size, lp_model_bytes *out, lp_diag *d);
/* From bytes in memory; `raw` offsets are then offsets into `bytes`. */
lp_status lp_model_read_mem(const uint8_t *bytes, size_t size, lp_model_bytes *out, lp_diag *d);
void lp_model_bytes_free(lp_model_bytes *m);

/* Reads len bytes at offset of fd; false with errno set (0 when the file
 * ended first). */
bool lp_pread_all(int fd, void *dst, uint64_t len, uint64_t offset);

#endif
