/* lp_outdir.h - the output folder as one transaction.
 *
 * Every file a run writes into its output folder is created in a private
 * staging folder inside it (".lpcc-staging-XXXXXX", mode 0700, each file
 * O_EXCL | O_NOFOLLOW) and moved into place by one commit at the end. Until
 * then the folder holds the earlier run's files exactly as they were; an
 * abort leaves them so. The folder is locked (flock) from open to commit or
 * abort, so two runs on one folder take turns.
 *
 *     lp_outdir *od = NULL;
 *     lp_outdir_options opt = {.create = true, .lock = true, .is_output = my_names};
 *     lp_status st = lp_outdir_open("out/run1", &opt, &od, &diag);
 *     if (st == LP_OK) st = lp_outdir_protect(od, "out/run1/model.onnx", "the model", &diag);
 *     FILE *f = st == LP_OK ? lp_outdir_create(od, "graph.json", &diag) : NULL;
 *     if (f) { fputs("{}\n", f); st = lp_outdir_close(od, f, &diag); } else st = LP_ERR_OUTPUT;
 *     st = st == LP_OK ? lp_outdir_commit(od, &diag) : (lp_outdir_abort(od), st);
 *
 * Commit moves the new files in (an existing one is swapped atomically where
 * the filesystem can) and moves away the files an earlier run left that
 * is_output() names and this run did not write; if any step fails every
 * move is undone. Files this run did not write and is_output() does not
 * name are never touched. Library code: errors go to the lp_diag. */
#ifndef LP_OUTDIR_H
#define LP_OUTDIR_H

#include "lp_ir.h"

typedef struct lp_outdir lp_outdir;

typedef struct lp_outdir_options {
    bool create; /* make the folder and its missing parents (mkdir -p) */
    bool lock;   /* hold an exclusive flock on the folder until commit or abort;
                    a run that has to wait says so (an lp_note) */
    /* The names of files an earlier run wrote that this run replaces: on
     * commit those this run did not write are removed. NULL: none. */
    bool (*is_output)(const char *name);
    /* Attach to the folder only when the first file is created: errors
     * then name that file (a missing folder is an error of the file). */
    bool defer;
} lp_outdir_options;

/* Opens (creating with opt->create) and locks `dir`. On failure *out is NULL
 * and the message names the path component that cannot be made. */
lp_status lp_outdir_open(const char *dir, const lp_outdir_options *opt, lp_outdir **out,
                         lp_diag *d);

/* The folder as given: what files written into it refer to each other by. */
const char *lp_outdir_path(const lp_outdir *o);

/* Marks `path` as an input of the run (`what`: "the model", "external data
 * of 'W'"): a file commit would have to replace or remove is an error now,
 * before anything is written (LP_ERR_OUTPUT), and creating it later is too. */
lp_status lp_outdir_protect(lp_outdir *o, const char *path, const char *what, lp_diag *d);

/* Creates `name` (one path component) in the staging folder and records it
 * as part of this run; NULL on error (reported). Close it with
 * lp_outdir_close before the commit. */
FILE *lp_outdir_create(lp_outdir *o, const char *name, lp_diag *d);

/* Flushes and closes a file lp_outdir_create made; a write error of any
 * earlier call on it is reported here, naming the file. */
lp_status lp_outdir_close(lp_outdir *o, FILE *f, lp_diag *d);

/* Whether this run has created `name`. */
bool lp_outdir_has(const lp_outdir *o, const char *name);

/* Where `name`, a file this run wrote and closed, lies until the commit (a
 * path another program may read, such as a compiler), malloc'd; NULL if
 * there is no such file. */
char *lp_outdir_staged_path(const lp_outdir *o, const char *name);

/* Moves this run's files into place and removes the earlier run's that
 * is_output() names and this run did not write; on failure the folder is
 * as before. Frees o either way. */
lp_status lp_outdir_commit(lp_outdir *o, lp_diag *d);

/* Removes the staging folder and frees o; nothing else is touched. NULL is
 * a no-op. */
void lp_outdir_abort(lp_outdir *o);

/* One file replaced atomically: written under a fresh temporary name beside
 * `path` (".NAME.XXXXXX", O_EXCL | O_NOFOLLOW) and renamed over it by
 * lp_atomic_commit; on any error the temporary goes and `path` is as it was.
 *
 *     lp_atomic_file af;
 *     FILE *f = lp_atomic_open(&af, "plan.dot", &diag);
 *     if (!f) return LP_ERR_OUTPUT;
 *     fputs("digraph {}\n", f);
 *     return lp_atomic_commit(&af, &diag);
 */
typedef struct lp_atomic_file {
    FILE *f;
    char *path, *tmp;
} lp_atomic_file;

FILE *lp_atomic_open(lp_atomic_file *af, const char *path, lp_diag *d);
lp_status lp_atomic_commit(lp_atomic_file *af, lp_diag *d);
void lp_atomic_abort(lp_atomic_file *af);

#endif
