/* tmpdir.h - scratch folders for tests that need files on disk.
 *
 *     char dir[64];
 *     tmp_make(dir, sizeof dir);              // "/tmp/lpcc_test_XXXXXX", created
 *     tmp_write(dir, "w.bin", bytes, n);
 *     ...
 *     tmp_remove(dir);                        // the folder and all it holds
 */
#ifndef TB_TMPDIR_H
#define TB_TMPDIR_H

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static inline void tmp_make(char *dir, size_t cap) {
    const char *base = getenv("TMPDIR");
    snprintf(dir, cap, "%s/lpcc_test_XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
}

/* Writes `len` bytes to dir/name; returns 0 on success. */
static inline int tmp_write(const char *dir, const char *name, const void *bytes, size_t len) {
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t wrote = len ? fwrite(bytes, 1, len, f) : 0;
    int rc = fclose(f);
    return wrote == len && rc == 0 ? 0 : -1;
}

static inline int tmp_remove_one(const char *path, const struct stat *sb, int flag,
                                 struct FTW *ftw) {
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* Removes the folder depth-first without following links out of it. */
static inline void tmp_remove(const char *dir) {
    nftw(dir, tmp_remove_one, 16, FTW_DEPTH | FTW_PHYS);
}

#endif
