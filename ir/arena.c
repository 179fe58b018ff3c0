/* Chunked bump allocator: allocations are never freed one by one; the whole
 * arena goes in one lp_arena_free(). */
#include "lp_ir.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#define LP_ARENA_CHUNK (64u * 1024u)
#define LP_ARENA_ALIGN 16u

typedef struct lp_chunk {
    struct lp_chunk *next;
    size_t size;
    size_t used;
    _Alignas(16) unsigned char mem[];
} lp_chunk;

struct lp_arena {
    lp_chunk *head;
    size_t total;
};

lp_arena *lp_arena_new(void) { return calloc(1, sizeof(lp_arena)); }

void lp_arena_free(lp_arena *a) {
    if (!a) return;
    lp_chunk *c = a->head;
    while (c) {
        lp_chunk *next = c->next;
        free(c);
        c = next;
    }
    free(a);
}

void *lp_arena_alloc_uninit(lp_arena *a, size_t size) {
    if (size > SIZE_MAX - LP_ARENA_ALIGN - sizeof(lp_chunk)) return NULL;
    size_t need = (size + LP_ARENA_ALIGN - 1) & ~(size_t)(LP_ARENA_ALIGN - 1);
    if (need == 0) need = LP_ARENA_ALIGN;
    lp_chunk *c = a->head;
    if (!c || c->size - c->used < need) {
        size_t chunk = need > LP_ARENA_CHUNK / 4 ? need : LP_ARENA_CHUNK;
        lp_chunk *fresh = malloc(sizeof(lp_chunk) + chunk);
        if (!fresh) return NULL;
        fresh->size = chunk;
        fresh->used = 0;
        if (c && need > LP_ARENA_CHUNK / 4) {
            /* A big block goes behind the current chunk, which keeps its free tail. */
            fresh->next = c->next;
            c->next = fresh;
        } else {
            fresh->next = c;
            a->head = fresh;
        }
        a->total += chunk;
        c = fresh;
    }
    void *p = c->mem + c->used;
    c->used += need;
    return p;
}

void *lp_arena_alloc(lp_arena *a, size_t size) {
    void *p = lp_arena_alloc_uninit(a, size);
    size_t need = (size + LP_ARENA_ALIGN - 1) & ~(size_t)(LP_ARENA_ALIGN - 1);
    if (p) memset(p, 0, need ? need : LP_ARENA_ALIGN);
    return p;
}

void *lp_arena_array(lp_arena *a, size_t count, size_t elem_size) {
    if (elem_size && count > SIZE_MAX / elem_size) return NULL;
    return lp_arena_alloc(a, count * elem_size);
}

char *lp_arena_strndup(lp_arena *a, const char *s, size_t n) {
    if (n == SIZE_MAX) return NULL;
    char *p = lp_arena_alloc_uninit(a, n + 1);
    if (!p) return NULL;
    if (n) memcpy(p, s, n);
    p[n] = '\0';
    return p;
}

char *lp_arena_strdup(lp_arena *a, const char *s) {
    return lp_arena_strndup(a, s ? s : "", s ? strlen(s) : 0);
}

char *lp_arena_printf(lp_arena *a, const char *fmt, ...) {
    va_list ap, ap2;
    va_start(ap, fmt);
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *p = n < 0 ? NULL : lp_arena_alloc(a, (size_t)n + 1);
    if (p) vsnprintf(p, (size_t)n + 1, fmt, ap2);
    va_end(ap2);
    return p;
}

size_t lp_arena_bytes(const lp_arena *a) { return a->total; }
