/* JSON documents written as they are built.
 *
 * A document is a nest of objects and arrays opened and closed here, and
 * what is put into them goes into a large buffer at once and is flushed to
 * the file whenever the buffer fills, so no tree of a whole document exists
 * and memory does not grow with its size. The same calls build a json_t
 * tree instead when the writer is made by lp_json_out_tree (the library's
 * *_to_json functions), so both hold the same keys, order and values.
 *
 * Layout of a streamed document: every member of a block object or array
 * on its own line, indented one space per level; a row on one line as
 * jansson writes a value without indentation ({"name": "a", "op": "Relu"}).
 * jansson writes every string that needs escaping and every real; the
 * writer itself writes brackets, separators, integers and the strings
 * that JSON takes verbatim (printable ASCII without '"' and '\\').
 *
 * Strings that name things (node, value, layer names, paths) go through
 * lp_json_name: bytes that are not valid UTF-8 are written as the four
 * characters \xNN (NN the byte in lowercase hex), so a name is never
 * dropped; valid UTF-8, including a literal backslash, is kept as is. */
#ifndef LP_JSON_OUT_H
#define LP_JSON_OUT_H

#include "lp_ir.h"

#include <jansson.h>
#include <stdio.h>

typedef struct lp_json_out lp_json_out;

/* A writer into f (not closed by the writer); NULL when out of memory. */
lp_json_out *lp_json_out_stream(FILE *f);
/* A writer that builds a tree; lp_json_out_take returns it. */
lp_json_out *lp_json_out_tree(void);

/* Opens an object or array as member `key` of the enclosing object, or as
 * an element (key NULL) of the enclosing array or as the document. A block
 * puts each of its members on a line of its own; a row (one element of a
 * long array, say) is written on one line, and so is all it contains. */
void lp_json_begin_object(lp_json_out *w, const char *key);
void lp_json_begin_array(lp_json_out *w, const char *key);
void lp_json_begin_row_object(lp_json_out *w, const char *key);
void lp_json_begin_row_array(lp_json_out *w, const char *key);
/* Closes the innermost open object or array. */
void lp_json_end(lp_json_out *w);

/* Members (key) or elements (key NULL) of the open object or array. */
void lp_json_int(lp_json_out *w, const char *key, int64_t v);
/* A name, escaped as lp_json_name does. */
void lp_json_string(lp_json_out *w, const char *key, const char *s);
void lp_json_bool(lp_json_out *w, const char *key, bool v);
void lp_json_null(lp_json_out *w, const char *key);
/* Any jansson value v (stolen; NULL marks the document failed, as out of
 * memory), written by jansson. */
void lp_json_put(lp_json_out *w, const char *key, json_t *v);
/* Puts every member of object `members` (borrowed) in order. */
void lp_json_put_members(lp_json_out *w, const json_t *members);

/* Streamed: ends the document with a newline, flushes and frees the
 * writer; the status says why the document is incomplete (out of memory,
 * or the write failed: `what` names the destination). */
lp_status lp_json_out_close(lp_json_out *w, const char *what, lp_diag *d);
/* Tree: the document (NULL when building failed); frees the writer. */
json_t *lp_json_out_take(lp_json_out *w);

/* Writes the document doc(ctx, w) makes into f; `what` names f in errors. */
typedef void (*lp_json_doc)(const void *ctx, lp_json_out *w);
lp_status lp_json_write(FILE *f, lp_json_doc doc, const void *ctx, const char *what, lp_diag *d);

/* A JSON string of s, never NULL but when out of memory: s as is when it is
 * valid UTF-8, else with every invalid byte written as \xNN; NULL s is "". */
json_t *lp_json_name(const char *s);
/* The text lp_json_name writes for s (malloc'd; NULL when out of memory). */
char *lp_json_escape_name(const char *s);

#endif
