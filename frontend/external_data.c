/* External tensor data: where the bytes are, and whether a model may point
 * there. A location must stay inside the model's folder: no absolute path,
 * no ".." component, no link that resolves outside. */
#define _GNU_SOURCE
#include "lp_frontend.h"
#include "model_read.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static bool has_dotdot_component(const char *p) {
    const char *s = p;
    while (*s) {
        const char *e = s;
        while (*e && *e != '/' && *e != '\\') e++;
        if (e - s == 2 && s[0] == '.' && s[1] == '.') return true;
        s = *e ? e + 1 : e;
    }
    return false;
}

lp_status lp_frontend_resolve_external(lp_arena *a, const char *dir, const char *location,
                                       const char **resolved, bool *exists, lp_diag *d) {
    *exists = false;
    *resolved = NULL;
    if (!location || !location[0])
        return lp_error(d, LP_ERR_INVALID_MODEL, "external data has an empty 'location'");
    if (location[0] == '/' || location[0] == '\\' ||
        (location[0] && location[1] == ':'))
        return lp_error(d, LP_ERR_INVALID_MODEL,
                        "external data location '%s' is an absolute path; it must be relative "
                        "to the model's folder",
                        location);
    if (has_dotdot_component(location))
        return lp_error(d, LP_ERR_INVALID_MODEL,
                        "external data location '%s' contains '..'; it must stay inside the "
                        "model's folder",
                        location);
    char *joined = lp_arena_printf(a, "%s/%s", dir, location);
    if (!joined) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    *resolved = joined;

    struct stat st;
    if (lstat(joined, &st) != 0) {
        if (errno == ENOENT || errno == ENOTDIR) return LP_OK; /* absent */
        return lp_error(d, LP_ERR_INVALID_MODEL, "external data '%s': %s", location,
                        strerror(errno));
    }
    char real_dir[PATH_MAX], real_file[PATH_MAX];
    if (!realpath(dir, real_dir))
        return lp_error(d, LP_ERR_INVALID_MODEL, "model folder '%s': %s", dir, strerror(errno));
    if (!realpath(joined, real_file)) {
        if (errno == ENOENT) /* a dangling link */
            return lp_error(d, LP_ERR_INVALID_MODEL,
                            "external data location '%s' is a link to a missing file", location);
        return lp_error(d, LP_ERR_INVALID_MODEL, "external data '%s': %s", location,
                        strerror(errno));
    }
    size_t n = strlen(real_dir);
    bool inside = strncmp(real_file, real_dir, n) == 0 &&
                  (real_file[n] == '/' || (n == 1 && real_dir[0] == '/'));
    if (!inside)
        return lp_error(d, LP_ERR_INVALID_MODEL,
                        "external data location '%s' resolves to '%s', outside the model's "
                        "folder '%s'",
                        location, real_file, real_dir);
    if (stat(real_file, &st) != 0 || !S_ISREG(st.st_mode))
        return lp_error(d, LP_ERR_INVALID_MODEL, "external data '%s' is not a regular file",
                        location);
    *resolved = lp_arena_strdup(a, real_file);
    *exists = true;
    return *resolved ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
}

/* Reads len bytes at offset of a file a tensor lives in; a short read
 * means the file is shorter than when it was loaded. */
static lp_status read_file_range(int fd, const char *file, const char *name, uint64_t offset,
                                 void *dst, uint64_t len, lp_diag *d) {
    if (lp_pread_all(fd, dst, len, offset)) return LP_OK;
    if (errno)
        return lp_error(d, LP_ERR_INVALID_MODEL, "reading tensor '%s' from '%s': %s", name, file,
                        strerror(errno));
    struct stat sb;
    uint64_t now = fstat(fd, &sb) == 0 ? (uint64_t)sb.st_size : 0;
    return lp_error(d, LP_ERR_INVALID_MODEL,
                    "'%s' shrank after it was loaded: it is %llu bytes now, shorter than its "
                    "contents say (tensor '%s' needs bytes %llu..%llu)", file,
                    (unsigned long long)now, name, (unsigned long long)offset,
                    (unsigned long long)(offset + len));
}

lp_status lp_frontend_read_tensor(const lp_graph *g, const lp_tensor_data *t, const char *name,
                                  uint64_t offset, void *dst, uint64_t len, lp_diag *d) {
    if (offset > t->nbytes || len > t->nbytes - offset)
        return lp_error(d, LP_ERR_INTERNAL, "tensor '%s': bytes %llu..%llu asked of %llu", name,
                        (unsigned long long)offset, (unsigned long long)(offset + len),
                        (unsigned long long)t->nbytes);
    if (!len) return LP_OK;
    switch (t->where) {
    case LP_DATA_INLINE:
        if (!t->bytes) break;
        memcpy(dst, t->bytes + offset, (size_t)len);
        return LP_OK;
    case LP_DATA_FILE:
        if (!t->file || t->file->fd < 0) break;
        return read_file_range(t->file->fd, t->file->path, name, t->offset + offset, dst, len, d);
    case LP_DATA_EXTERNAL: {
        if (!t->present)
            return lp_error(d, LP_ERR_INVALID_MODEL,
                            "weight '%s' lives in external file '%s' (next to %s), which is missing",
                            name, t->location, g->path);
        int fd = open(t->path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            return lp_error(d, LP_ERR_INVALID_MODEL, "cannot open external data '%s': %s",
                            t->location, strerror(errno));
        lp_status st = read_file_range(fd, t->path, name, t->offset + offset, dst, len, d);
        close(fd);
        return st;
    }
    case LP_DATA_NONE:
        break;
    }
    return lp_error(d, LP_ERR_INTERNAL, "tensor '%s' holds no data", name);
}

lp_status lp_frontend_read_weight(const lp_graph *g, const lp_value *v, void *dst,
                                  uint64_t dst_size, lp_diag *d) {
    const lp_tensor_data *t = &v->data;
    /* a string tensor's nbytes counts its characters; they are not kept */
    if (v->dtype == LP_DT_STRING)
        return lp_error(d, LP_ERR_UNSUPPORTED, "'%s' is a string tensor, which has no byte form",
                        v->name);
    if (t->nbytes > dst_size)
        return lp_error(d, LP_ERR_INTERNAL, "weight '%s' needs %llu bytes, buffer holds %llu",
                        v->name, (unsigned long long)t->nbytes, (unsigned long long)dst_size);
    if (t->where == LP_DATA_NONE)
        return lp_error(d, LP_ERR_INTERNAL, "value '%s' holds no data", v->name);
    return lp_frontend_read_tensor(g, t, v->name, 0, dst, t->nbytes, d);
}
