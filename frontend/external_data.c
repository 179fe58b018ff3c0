/* External tensor data: where the bytes are, and whether a model may point
 * there. A location must stay inside the model's folder: no absolute path,
 * no ".." component, no link that resolves outside. */
#define _GNU_SOURCE
#include "lp_frontend.h"

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
    if (t->where == LP_DATA_INLINE) {
        if (t->nbytes) memcpy(dst, t->bytes, t->nbytes);
        return LP_OK;
    }
    if (t->where != LP_DATA_EXTERNAL)
        return lp_error(d, LP_ERR_INTERNAL, "value '%s' holds no data", v->name);
    if (!t->present)
        return lp_error(d, LP_ERR_INVALID_MODEL,
                        "weight '%s' lives in external file '%s' (next to %s), which is missing",
                        v->name, t->location, g->path);
    int fd = open(t->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return lp_error(d, LP_ERR_INVALID_MODEL, "cannot open external data '%s': %s",
                        t->location, strerror(errno));
    uint64_t done = 0;
    while (done < t->nbytes) {
        size_t want = t->nbytes - done > (1u << 30) ? (1u << 30) : (size_t)(t->nbytes - done);
        ssize_t got = pread(fd, (char *)dst + done, want, (off_t)(t->offset + done));
        if (got <= 0) {
            close(fd);
            return lp_error(d, LP_ERR_INVALID_MODEL,
                            "external data '%s' ended early reading weight '%s'", t->location,
                            v->name);
        }
        done += (uint64_t)got;
    }
    close(fd);
    return LP_OK;
}
