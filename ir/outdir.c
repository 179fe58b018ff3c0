/* The output folder as one transaction (see lp_outdir.h).
 *
 * Layout while a run writes DIR:
 *   DIR/                       locked (flock on the folder itself)
 *   DIR/.lpcc-staging-XXXXXX/  0700, this run's new files
 *   DIR/.lpcc-staging-XXXXXX/.old/   during commit: files moved out of DIR
 * Every file operation is relative to the folder descriptors, so a path
 * swapped under the run cannot redirect it. */
#define _GNU_SOURCE
#include "lp_outdir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define STAGE_PREFIX ".lpcc-staging-"
#define OLD_DIR ".old"

typedef struct out_file {
    char *name;
    FILE *f; /* open until lp_outdir_close */
} out_file;

typedef struct protected_file {
    bool has_id;       /* dev/ino of the file (it exists) */
    dev_t dev;
    ino_t ino;
    char *name_in_dir; /* its name when it sits in DIR as given, else NULL */
    char *path, *what;
} protected_file;

struct lp_outdir {
    char *dir;
    lp_outdir_options opt;
    int dir_fd;   /* -1 until attached */
    int stage_fd; /* -1 until the first file */
    char *stage_name;
    out_file *files;
    int n_files, cap_files;
    protected_file *prot;
    int n_prot, cap_prot;
};

/* ---- small helpers ---------------------------------------------------------- */

static bool grow(void **items, int *cap, int n, size_t size) {
    if (n < *cap) return true;
    int c = *cap ? 2 * *cap : 8;
    void *p = realloc(*items, (size_t)c * size);
    if (!p) return false;
    *items = p;
    *cap = c;
    return true;
}

static void random_suffix(char *buf, size_t n) {
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    static unsigned counter;
    unsigned char r[16];
    if (n > sizeof r) n = sizeof r;
    if (getrandom(r, n, GRND_NONBLOCK) != (ssize_t)n) {
        unsigned x = (unsigned)getpid() * 2654435761u ^ (unsigned)time(NULL) ^ (++counter * 40503u);
        for (size_t i = 0; i < n; i++, x = x * 1103515245u + 12345u) r[i] = (unsigned char)(x >> 16);
    }
    for (size_t i = 0; i < n; i++) buf[i] = digits[r[i] % (sizeof digits - 1)];
    buf[n] = '\0';
}

/* Removes folder `name` under parent_fd and what it holds, `depth` levels
 * of subfolders at most; symbolic links are removed, never followed. */
static void remove_tree(int parent_fd, const char *name, int depth) {
    int fd = openat(parent_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return;
    DIR *dp = fdopendir(fd);
    if (!dp) {
        close(fd);
        return;
    }
    for (struct dirent *e; (e = readdir(dp));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        if (unlinkat(fd, e->d_name, 0) != 0 && depth > 0) remove_tree(fd, e->d_name, depth - 1);
    }
    closedir(dp);
    unlinkat(parent_fd, name, AT_REMOVEDIR);
}

static bool same_id(const protected_file *p, const struct stat *sb) {
    return p->has_id && p->dev == sb->st_dev && p->ino == sb->st_ino;
}

/* The protected input that DIR/name is, or NULL. */
static const protected_file *protected_as(const lp_outdir *o, const char *name) {
    struct stat sb;
    bool exists = o->n_prot && fstatat(o->dir_fd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0;
    for (int i = 0; i < o->n_prot; i++) {
        const protected_file *p = &o->prot[i];
        if ((p->name_in_dir && strcmp(p->name_in_dir, name) == 0) || (exists && same_id(p, &sb))) return p;
    }
    return NULL;
}

static lp_status protected_error(const lp_outdir *o, const protected_file *p, const char *name,
                                  lp_diag *d) {
    return lp_error(d, LP_ERR_OUTPUT, "'%s' is %s of this run and sits in the output folder '%s' as "
                    "'%s', which a run writing there replaces or removes: write to another folder (-o)",
                    p->path, p->what, o->dir, name);
}

/* ---- opening ------------------------------------------------------------------- */

/* mkdir -p, naming the component that cannot be made. */
static lp_status make_dirs(const char *dir, lp_diag *d) {
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode)) return LP_OK;
        return lp_error(d, LP_ERR_OUTPUT, "output '%s' exists and is not a folder", dir);
    }
    char *p = strdup(dir);
    if (!p) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    lp_status st = LP_OK;
    size_t n = strlen(p);
    for (size_t i = 1; st == LP_OK && i <= n; i++) {
        if (p[i] != '/' && p[i] != '\0') continue;
        if (p[i - 1] == '/') continue; /* "a//b", or a trailing slash */
        char saved = p[i];
        p[i] = '\0';
        if (mkdir(p, 0777) != 0) {
            int e = errno;
            if (e == EEXIST && stat(p, &sb) == 0 && S_ISDIR(sb.st_mode)) {
                /* made already, by the user or a concurrent run */
            } else if (e == EEXIST && i == n) {
                st = lp_error(d, LP_ERR_OUTPUT, "output '%s' exists and is not a folder", dir);
            } else if (e == EEXIST) {
                st = lp_error(d, LP_ERR_OUTPUT, "cannot create output folder '%s': '%s' is not a folder",
                              dir, p);
            } else {
                st = lp_error(d, LP_ERR_OUTPUT, "cannot create output folder '%s': cannot make '%s': %s",
                              dir, p, strerror(e));
            }
        }
        p[i] = saved;
    }
    free(p);
    return st;
}

/* Opens and locks the folder; then any staging folder left there by a run
 * that was killed is removed (the lock says its run is over). */
static lp_status attach(lp_outdir *o, const char *file, lp_diag *d) {
    o->dir_fd = open(o->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (o->dir_fd < 0) {
        if (file) return lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': %s", o->dir, file, strerror(errno));
        return lp_error(d, LP_ERR_OUTPUT, "cannot open output folder '%s': %s", o->dir, strerror(errno));
    }
    if (!o->opt.lock) return LP_OK;
    if (flock(o->dir_fd, LOCK_EX | LOCK_NB) != 0) {
        if (errno != EWOULDBLOCK) {
            lp_warn(d, "cannot lock output folder '%s' (%s): another run writing there at the same "
                    "time is not kept apart", o->dir, strerror(errno));
            return LP_OK;
        }
        lp_note(d, "waiting for another run writing to '%s' to finish", o->dir);
        int rc;
        while ((rc = flock(o->dir_fd, LOCK_EX)) != 0 && errno == EINTR) {}
        if (rc != 0)
            return lp_error(d, LP_ERR_OUTPUT, "cannot lock output folder '%s': %s", o->dir, strerror(errno));
    }
    int fd = dup(o->dir_fd);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL; /* shares dir_fd's offset: */
    if (dp) rewinddir(dp);                      /* read from the start */
    if (!dp) {
        if (fd >= 0) close(fd);
        return LP_OK; /* nothing to clean is no error */
    }
    for (struct dirent *e; (e = readdir(dp));) {
        struct stat sb;
        if (strncmp(e->d_name, STAGE_PREFIX, strlen(STAGE_PREFIX)) == 0 &&
            fstatat(o->dir_fd, e->d_name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode) &&
            sb.st_uid == geteuid())
            remove_tree(o->dir_fd, e->d_name, 1);
    }
    closedir(dp);
    return LP_OK;
}

lp_status lp_outdir_open(const char *dir, const lp_outdir_options *opt, lp_outdir **out, lp_diag *d) {
    *out = NULL;
    if (!dir || !*dir) return lp_error(d, LP_ERR_USAGE, "the output folder name is empty");
    lp_outdir *o = calloc(1, sizeof *o);
    if (!o || !(o->dir = strdup(dir))) {
        free(o);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    if (opt) o->opt = *opt;
    o->dir_fd = o->stage_fd = -1;
    lp_status st = o->opt.create ? make_dirs(dir, d) : LP_OK;
    if (st == LP_OK && !o->opt.defer) st = attach(o, NULL, d);
    if (st != LP_OK) {
        lp_outdir_abort(o);
        return st;
    }
    *out = o;
    return LP_OK;
}

const char *lp_outdir_path(const lp_outdir *o) { return o->dir; }

static lp_status make_staging(lp_outdir *o, const char *file, lp_diag *d) {
    if (o->stage_fd >= 0) return LP_OK;
    if (o->dir_fd < 0) {
        lp_status st = attach(o, file, d);
        if (st != LP_OK) return st;
    }
    size_t len = strlen(STAGE_PREFIX) + 8;
    if (!(o->stage_name = malloc(len + 1))) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int tries = 0;; tries++) {
        memcpy(o->stage_name, STAGE_PREFIX, strlen(STAGE_PREFIX));
        random_suffix(o->stage_name + strlen(STAGE_PREFIX), 8);
        if (mkdirat(o->dir_fd, o->stage_name, 0700) == 0) break;
        if (errno != EEXIST || tries == 100) {
            int e = errno;
            free(o->stage_name);
            o->stage_name = NULL;
            if (file) return lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': %s", o->dir, file, strerror(e));
            return lp_error(d, LP_ERR_OUTPUT, "cannot write to output folder '%s': %s", o->dir, strerror(e));
        }
    }
    o->stage_fd = openat(o->dir_fd, o->stage_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (o->stage_fd < 0) {
        int e = errno;
        unlinkat(o->dir_fd, o->stage_name, AT_REMOVEDIR);
        free(o->stage_name);
        o->stage_name = NULL;
        return lp_error(d, LP_ERR_OUTPUT, "cannot write to output folder '%s': %s", o->dir, strerror(e));
    }
    return LP_OK;
}

/* ---- inputs ---------------------------------------------------------------------- */

lp_status lp_outdir_protect(lp_outdir *o, const char *path, const char *what, lp_diag *d) {
    if (o->dir_fd < 0) {
        lp_status st = attach(o, NULL, d);
        if (st != LP_OK) return st;
    }
    protected_file p = {0};
    struct stat sb, dsb, here;
    if (stat(path, &sb) == 0) p = (protected_file){.has_id = true, .dev = sb.st_dev, .ino = sb.st_ino};
    /* the name it has in DIR, when its folder is DIR */
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    char *parent = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!parent) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    bool in_dir = *base && stat(parent, &dsb) == 0 && fstat(o->dir_fd, &here) == 0 &&
                  dsb.st_dev == here.st_dev && dsb.st_ino == here.st_ino;
    free(parent);
    for (int i = 0; i < o->n_prot; i++) {
        const protected_file *q = &o->prot[i];
        bool same_name = in_dir ? q->name_in_dir && strcmp(q->name_in_dir, base) == 0 : !q->name_in_dir;
        if (same_name && (p.has_id ? same_id(q, &sb) : !q->has_id)) return LP_OK; /* known already */
    }
    if (!grow((void **)&o->prot, &o->cap_prot, o->n_prot, sizeof *o->prot) ||
        !(p.path = strdup(path)) || !(p.what = strdup(what)) || (in_dir && !(p.name_in_dir = strdup(base)))) {
        free(p.path);
        free(p.what);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    o->prot[o->n_prot++] = p;
    if (!o->opt.is_output) return LP_OK;
    /* a file of DIR the commit replaces or removes is that input: say so now */
    if (p.name_in_dir && o->opt.is_output(p.name_in_dir)) return protected_error(o, &p, p.name_in_dir, d);
    if (!p.has_id) return LP_OK;
    int fd = dup(o->dir_fd);
    DIR *dp = fd >= 0 ? fdopendir(fd) : NULL; /* shares dir_fd's offset: */
    if (dp) rewinddir(dp);                      /* read from the start */
    if (!dp) {
        if (fd >= 0) close(fd);
        return lp_error(d, LP_ERR_OUTPUT, "cannot read output folder '%s': %s", o->dir, strerror(errno));
    }
    lp_status st = LP_OK;
    for (struct dirent *e; st == LP_OK && (e = readdir(dp));)
        if (o->opt.is_output(e->d_name) && fstatat(o->dir_fd, e->d_name, &here, AT_SYMLINK_NOFOLLOW) == 0 &&
            same_id(&p, &here))
            st = protected_error(o, &p, e->d_name, d);
    closedir(dp);
    return st;
}

/* ---- files ------------------------------------------------------------------------ */

FILE *lp_outdir_create(lp_outdir *o, const char *name, lp_diag *d) {
    if (!*name || strchr(name, '/') || strcmp(name, ".") == 0 || strcmp(name, "..") == 0 ||
        strncmp(name, STAGE_PREFIX, strlen(STAGE_PREFIX)) == 0) {
        lp_error(d, LP_ERR_INTERNAL, "'%s' is not a file name for the output folder", name);
        return NULL;
    }
    if (make_staging(o, name, d) != LP_OK) return NULL;
    const protected_file *p = protected_as(o, name);
    if (p) {
        protected_error(o, p, name, d);
        return NULL;
    }
    struct stat sb;
    if (fstatat(o->dir_fd, name, &sb, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(sb.st_mode)) {
        lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': a folder of that name is in the way", o->dir, name);
        return NULL;
    }
    if (!grow((void **)&o->files, &o->cap_files, o->n_files, sizeof *o->files)) {
        lp_error(d, LP_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    int fd = openat(o->stage_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (fd < 0) {
        if (errno == EEXIST)
            lp_error(d, LP_ERR_INTERNAL, "'%s/%s' is written twice by one run", o->dir, name);
        else
            lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': %s", o->dir, name, strerror(errno));
        return NULL;
    }
    FILE *f = fdopen(fd, "wb");
    char *copy = strdup(name);
    if (!f || !copy) {
        if (f) fclose(f); else close(fd);
        free(copy);
        unlinkat(o->stage_fd, name, 0);
        lp_error(d, LP_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    o->files[o->n_files++] = (out_file){.name = copy, .f = f};
    return f;
}

static lp_status close_file(lp_outdir *o, out_file *of, lp_diag *d) {
    bool bad = ferror(of->f) != 0;
    int e = bad ? errno : 0; /* the failed write's, as the writer left it */
    if (fflush(of->f) != 0) bad = true, e = errno;
    if (fclose(of->f) != 0 && !bad) bad = true, e = errno;
    of->f = NULL;
    if (!bad) return LP_OK;
    return lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': %s", o->dir, of->name,
                    e ? strerror(e) : "write error");
}

lp_status lp_outdir_close(lp_outdir *o, FILE *f, lp_diag *d) {
    for (int i = o->n_files - 1; i >= 0; i--)
        if (o->files[i].f == f) return close_file(o, &o->files[i], d);
    fclose(f);
    return lp_error(d, LP_ERR_INTERNAL, "closing a file the output folder did not create");
}

bool lp_outdir_has(const lp_outdir *o, const char *name) {
    for (int i = 0; i < o->n_files; i++)
        if (strcmp(o->files[i].name, name) == 0) return true;
    return false;
}

char *lp_outdir_staged_path(const lp_outdir *o, const char *name) {
    for (int i = 0; i < o->n_files; i++) {
        if (strcmp(o->files[i].name, name) != 0 || o->files[i].f || !o->stage_name) continue;
        size_t n = strlen(o->dir) + strlen(o->stage_name) + strlen(name) + 3;
        char *p = malloc(n);
        if (p) snprintf(p, n, "%s/%s/%s", o->dir, o->stage_name, name);
        return p;
    }
    return NULL;
}

/* ---- commit and abort ---------------------------------------------------------------- */

static void outdir_free(lp_outdir *o) {
    for (int i = 0; i < o->n_files; i++) {
        if (o->files[i].f) fclose(o->files[i].f);
        free(o->files[i].name);
    }
    for (int i = 0; i < o->n_prot; i++) {
        free(o->prot[i].path);
        free(o->prot[i].what);
        free(o->prot[i].name_in_dir);
    }
    if (o->stage_fd >= 0) {
        close(o->stage_fd);
        remove_tree(o->dir_fd, o->stage_name, 1);
    }
    if (o->dir_fd >= 0) close(o->dir_fd); /* releases the lock */
    free(o->stage_name);
    free(o->files);
    free(o->prot);
    free(o->dir);
    free(o);
}

void lp_outdir_abort(lp_outdir *o) {
    if (o) outdir_free(o);
}

static int by_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* One move of the commit, kept to undo it. */
typedef enum { MOVE_STALE, MOVE_SWAPPED, MOVE_BACKED_UP, MOVE_PLACED } move_kind;
typedef struct move {
    move_kind kind;
    const char *name;
} move;

typedef struct committer {
    lp_outdir *o;
    int old_fd; /* staging/.old, made on first use */
    move *log;
    int n_log;
} committer;

static int old_folder(committer *c) {
    if (c->old_fd >= 0) return c->old_fd;
    if (mkdirat(c->o->stage_fd, OLD_DIR, 0700) != 0 && errno != EEXIST) return -1;
    c->old_fd = openat(c->o->stage_fd, OLD_DIR, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    return c->old_fd;
}

static void undo(committer *c, lp_diag *d) {
    int dir = c->o->dir_fd, stage = c->o->stage_fd;
    for (int i = c->n_log - 1; i >= 0; i--) {
        const char *n = c->log[i].name;
        int rc = 0;
        switch (c->log[i].kind) {
        case MOVE_STALE:
        case MOVE_BACKED_UP: rc = renameat(c->old_fd, n, dir, n); break;
        case MOVE_SWAPPED: rc = renameat2(stage, n, dir, n, RENAME_EXCHANGE); break;
        case MOVE_PLACED: rc = renameat(dir, n, stage, n); break;
        }
        if (rc != 0) lp_warn(d, "could not restore '%s/%s': %s", c->o->dir, n, strerror(errno));
    }
}

/* Moves the earlier file DIR/name (if any) out and this run's in. */
static int place(committer *c, const char *name, bool exists) {
    int dir = c->o->dir_fd, stage = c->o->stage_fd;
    if (exists) {
        if (renameat2(stage, name, dir, name, RENAME_EXCHANGE) == 0) {
            c->log[c->n_log++] = (move){MOVE_SWAPPED, name};
            return 0;
        }
        if (errno != EINVAL && errno != ENOSYS && errno != ENOTSUP) return -1;
        /* no atomic swap on this filesystem: back the old one up first */
        int old = old_folder(c);
        if (old < 0 || renameat(dir, name, old, name) != 0) return -1;
        c->log[c->n_log++] = (move){MOVE_BACKED_UP, name};
    }
    if (renameat(stage, name, dir, name) != 0) return -1;
    c->log[c->n_log++] = (move){MOVE_PLACED, name};
    return 0;
}

static lp_status commit_moves(committer *c, char **names, int n, lp_diag *d) {
    lp_outdir *o = c->o;
    bool *exists = calloc((size_t)n + 1, sizeof *exists);
    char **stale = NULL;
    int n_stale = 0, cap_stale = 0;
    lp_status st = exists ? LP_OK : lp_error(d, LP_ERR_INTERNAL, "out of memory");
    /* everything that can be refused is refused before the first move */
    for (int i = 0; st == LP_OK && i < n; i++) {
        struct stat sb;
        const protected_file *p = protected_as(o, names[i]);
        if (p) {
            st = protected_error(o, p, names[i], d);
        } else if (fstatat(o->dir_fd, names[i], &sb, AT_SYMLINK_NOFOLLOW) == 0) {
            exists[i] = true;
            if (S_ISDIR(sb.st_mode))
                st = lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': a folder of that name is in the way",
                              o->dir, names[i]);
        }
    }
    if (st == LP_OK && o->opt.is_output) {
        int fd = dup(o->dir_fd);
        DIR *dp = fd >= 0 ? fdopendir(fd) : NULL; /* shares dir_fd's offset: */
    if (dp) rewinddir(dp);                      /* read from the start */
        if (!dp) {
            if (fd >= 0) close(fd);
            st = lp_error(d, LP_ERR_OUTPUT, "cannot read output folder '%s': %s", o->dir, strerror(errno));
        }
        for (struct dirent *e; st == LP_OK && dp && (e = readdir(dp));) {
            char *key = e->d_name;
            struct stat sb;
            if (!o->opt.is_output(key) || bsearch(&key, names, (size_t)n, sizeof *names, by_str) ||
                fstatat(o->dir_fd, key, &sb, AT_SYMLINK_NOFOLLOW) != 0 || S_ISDIR(sb.st_mode))
                continue; /* a folder in the way is the user's and stays */
            const protected_file *p = protected_as(o, key);
            if (p)
                st = protected_error(o, p, key, d);
            else if (!grow((void **)&stale, &cap_stale, n_stale, sizeof *stale) ||
                     !(stale[n_stale] = strdup(key)))
                st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
            else
                n_stale++;
        }
        if (dp) closedir(dp);
    }
    if (st == LP_OK && !(c->log = malloc(sizeof(move) * (2 * (size_t)n + (size_t)n_stale + 1))))
        st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    for (int i = 0; st == LP_OK && i < n_stale; i++) {
        int old = old_folder(c);
        if (old < 0 || renameat(o->dir_fd, stale[i], old, stale[i]) != 0)
            st = lp_error(d, LP_ERR_OUTPUT, "cannot remove '%s/%s' of an earlier run: %s", o->dir,
                          stale[i], strerror(errno));
        else
            c->log[c->n_log++] = (move){MOVE_STALE, stale[i]};
    }
    for (int i = 0; st == LP_OK && i < n; i++)
        if (place(c, names[i], exists[i]) != 0)
            st = lp_error(d, LP_ERR_OUTPUT, "cannot write '%s/%s': %s", o->dir, names[i], strerror(errno));
    if (st != LP_OK) undo(c, d);
    else fsync(o->dir_fd); /* best effort: the new names reach the disk */
    free(c->log);
    c->log = NULL;
    for (int i = 0; i < n_stale; i++) free(stale[i]);
    free(stale);
    free(exists);
    return st;
}

lp_status lp_outdir_commit(lp_outdir *o, lp_diag *d) {
    lp_status st = LP_OK;
    for (int i = 0; i < o->n_files; i++)
        if (o->files[i].f && close_file(o, &o->files[i], d) != LP_OK) st = LP_ERR_OUTPUT;
    if (st == LP_OK && o->dir_fd < 0 && !o->n_files) { /* deferred and nothing written */
        outdir_free(o);
        return LP_OK;
    }
    if (st == LP_OK) st = make_staging(o, NULL, d);
    char **names = st == LP_OK ? malloc(sizeof(char *) * ((size_t)o->n_files + 1)) : NULL;
    if (st == LP_OK && !names) st = lp_error(d, LP_ERR_INTERNAL, "out of memory");
    if (st == LP_OK) {
        for (int i = 0; i < o->n_files; i++) names[i] = o->files[i].name;
        qsort(names, (size_t)o->n_files, sizeof *names, by_str);
        /* an interrupt in the middle would leave a mix of two runs */
        sigset_t block, saved;
        sigemptyset(&block);
        sigaddset(&block, SIGINT);
        sigaddset(&block, SIGTERM);
        sigaddset(&block, SIGHUP);
        sigaddset(&block, SIGQUIT);
        sigprocmask(SIG_BLOCK, &block, &saved);
        committer c = {.o = o, .old_fd = -1};
        st = commit_moves(&c, names, o->n_files, d);
        if (c.old_fd >= 0) close(c.old_fd);
        sigprocmask(SIG_SETMASK, &saved, NULL);
    }
    free(names);
    outdir_free(o); /* the staging folder now holds only what DIR no longer needs */
    return st;
}

/* ---- one file, atomically ---------------------------------------------------------- */

FILE *lp_atomic_open(lp_atomic_file *af, const char *path, lp_diag *d) {
    *af = (lp_atomic_file){0};
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    int dir_len = slash ? (int)(slash - path) + 1 : 0;
    if (!*base) {
        lp_error(d, LP_ERR_OUTPUT, "cannot write '%s': not a file name", path);
        return NULL;
    }
    if (!(af->path = strdup(path))) {
        lp_error(d, LP_ERR_INTERNAL, "out of memory");
        return NULL;
    }
    for (int tries = 0;; tries++) {
        char suffix[9];
        random_suffix(suffix, 8);
        free(af->tmp);
        if (asprintf(&af->tmp, "%.*s.%s.%s", dir_len, path, base, suffix) < 0) {
            af->tmp = NULL;
            lp_error(d, LP_ERR_INTERNAL, "out of memory");
            break;
        }
        int fd = open(af->tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666);
        if (fd >= 0) {
            if ((af->f = fdopen(fd, "wb"))) return af->f;
            close(fd);
            unlink(af->tmp);
            lp_error(d, LP_ERR_INTERNAL, "out of memory");
            break;
        }
        if (errno != EEXIST || tries == 100) {
            lp_error(d, LP_ERR_OUTPUT, "cannot write '%s': %s", path, strerror(errno));
            break;
        }
    }
    free(af->tmp);
    free(af->path);
    *af = (lp_atomic_file){0};
    return NULL;
}

lp_status lp_atomic_commit(lp_atomic_file *af, lp_diag *d) {
    bool bad = ferror(af->f) != 0;
    int e = bad ? errno : 0;
    if (fflush(af->f) != 0) bad = true, e = errno;
    if (fclose(af->f) != 0 && !bad) bad = true, e = errno;
    af->f = NULL;
    lp_status st = LP_OK;
    if (bad)
        st = lp_error(d, LP_ERR_OUTPUT, "cannot write '%s': %s", af->path, e ? strerror(e) : "write error");
    else if (rename(af->tmp, af->path) != 0)
        st = lp_error(d, LP_ERR_OUTPUT, "cannot write '%s': %s", af->path, strerror(errno));
    if (st != LP_OK) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    *af = (lp_atomic_file){0};
    return st;
}

void lp_atomic_abort(lp_atomic_file *af) {
    if (af->f) fclose(af->f);
    if (af->tmp) unlink(af->tmp);
    free(af->tmp);
    free(af->path);
    *af = (lp_atomic_file){0};
}
