/* build.c - the card programs built into shared objects, and the Makefile
 * that rebuilds them (lp_emit.h: lp_emit_build_cards). */
#define _GNU_SOURCE
#include "lp_emit.h"
#include "lp_lower.h"
#include "lp_outdir.h"

#include <errno.h>
#include <ftw.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

/* nvcc: $NVCC, else on PATH, else the toolkit's usual place; NULL if none. */
static const char *find_nvcc(char *buf, size_t n) {
    const char *env = getenv("NVCC");
    if (env && *env) return env;
    const char *path = getenv("PATH");
    while (path && *path) {
        const char *end = strchr(path, ':');
        size_t len = end ? (size_t)(end - path) : strlen(path);
        if (len > 0 && len + 6 < n) {
            snprintf(buf, n, "%.*s/nvcc", (int)len, path);
            if (access(buf, X_OK) == 0) return buf;
        }
        path = end ? end + 1 : NULL;
    }
    if (access("/usr/local/cuda/bin/nvcc", X_OK) == 0) return "/usr/local/cuda/bin/nvcc";
    return NULL;
}

static lp_status run_nvcc(const char *nvcc, const char *inc, const char *src, const char *so, int card,
                          lp_diag *d) {
    char iflag[4200];
    snprintf(iflag, sizeof iflag, "-I%s", inc);
    char *argv[] = {(char *)nvcc, "-shared", "-Xcompiler", "-fPIC", "-O2", iflag, (char *)src, "-o",
                    (char *)so, NULL};
    pid_t pid;
    int rc = posix_spawnp(&pid, nvcc, NULL, NULL, argv, environ);
    if (rc != 0)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: cannot run '%s': %s (set $NVCC, or --no-build)",
                        card, nvcc, strerror(rc));
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR) return lp_error(d, LP_ERR_INTERNAL, "waitpid: %s", strerror(errno));
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return lp_error(d, LP_ERR_INTERNAL, "card %d: nvcc failed on its program card_%d.cu (its "
                        "messages are above); --no-build writes the sources only", card, card);
    return LP_OK;
}

/* Copies the built file into the output folder's transaction. */
static lp_status adopt(lp_outdir *od, const char *from, const char *name, lp_diag *d) {
    FILE *in = fopen(from, "rb");
    if (!in) return lp_error(d, LP_ERR_INTERNAL, "%s: cannot read what nvcc built: %s", from, strerror(errno));
    FILE *out = lp_outdir_create(od, name, d);
    if (!out) {
        fclose(in);
        return LP_ERR_OUTPUT;
    }
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, in)) > 0)
        if (fwrite(buf, 1, n, out) != n) break;
    bool bad = ferror(in) != 0;
    fclose(in);
    lp_status st = lp_outdir_close(od, out, d);
    if (st == LP_OK && bad) st = lp_error(d, LP_ERR_INTERNAL, "%s: read error", from);
    return st;
}

static int rm_entry(const char *p, const struct stat *sb, int type, struct FTW *ftw) {
    (void)sb, (void)type, (void)ftw;
    return remove(p);
}

static lp_status write_makefile(const lp_program *prog, const char *inc, lp_outdir *od, lp_diag *d) {
    FILE *f = lp_outdir_create(od, "Makefile", d);
    if (!f) return LP_ERR_OUTPUT;
    fputs("# Rebuilds the card programs of this folder (lpcc builds them when nvcc is present):\n"
          "#     make -C DIR                 nvcc (or NVCC=...), for lpcc-run --device cuda|cpu\n"
          "# LPCC_RUNTIME is the folder of lp_card.h (lpcc's runtime/).\n"
          "NVCC ?= nvcc\n", f);
    fprintf(f, "LPCC_RUNTIME ?= %s\nCARDS =", inc);
    for (int c = 0; c < prog->n_cards; c++) fprintf(f, " card_%d.so", prog->cards[c].card);
    fputs("\n\nall: $(CARDS)\n\n"
          "card_%.so: card_%.cu\n"
          "\t$(NVCC) -shared -Xcompiler -fPIC -O2 -I$(LPCC_RUNTIME) $< -o $@\n\n"
          ".PHONY: all\n", f);
    return lp_outdir_close(od, f, d);
}

lp_status lp_emit_build_cards(const lp_program *prog, const char *runtime_include, bool build,
                              lp_outdir *od, lp_diag *d) {
    const char *inc = getenv("LPCC_RUNTIME_INCLUDE");
    if (!inc || !*inc) inc = runtime_include;
    lp_status st = write_makefile(prog, inc, od, d);
    const char *no = getenv("LPCC_NO_BUILD");
    if (st != LP_OK || !build || (no && *no && strcmp(no, "0") != 0)) return st;
    char buf[4200];
    const char *nvcc = find_nvcc(buf, sizeof buf);
    if (!nvcc) {
        lp_note(d, "nvcc not found: the card programs are not built (lpcc-run builds them with the "
                "host compiler; `make -C DIR` builds them once nvcc is there)");
        return LP_OK;
    }
    const char *t = getenv("TMPDIR");
    char tmp[4200];
    snprintf(tmp, sizeof tmp, "%s/lpcc-build.XXXXXX", t && *t ? t : "/tmp");
    if (!mkdtemp(tmp)) return lp_error(d, LP_ERR_INTERNAL, "cannot make a temporary folder: %s", strerror(errno));
    for (int c = 0; st == LP_OK && c < prog->n_cards; c++) {
        char src_name[48], so_name[48], so_path[4300];
        snprintf(src_name, sizeof src_name, "card_%d.cu", prog->cards[c].card);
        snprintf(so_name, sizeof so_name, "card_%d.so", prog->cards[c].card);
        snprintf(so_path, sizeof so_path, "%s/%s", tmp, so_name);
        char *src = lp_outdir_staged_path(od, src_name);
        if (!src) st = lp_error(d, LP_ERR_INTERNAL, "%s was not written", src_name);
        if (st == LP_OK) st = run_nvcc(nvcc, inc, src, so_path, prog->cards[c].card, d);
        if (st == LP_OK) st = adopt(od, so_path, so_name, d);
        free(src);
    }
    nftw(tmp, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return st;
}
