/* lp_outdir: staging, commit (replace, remove stale outputs, refuse inputs),
 * abort, and lp_atomic_file, on real folders. */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lp_outdir.h"
#include "support/tmpdir.h"

static bool is_out(const char *name) { return strncmp(name, "out_", 4) == 0; }

static char *read_all(const char *dir, const char *name) {
    static char buf[256];
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return buf;
}

/* The folder's entries, sorted, joined by spaces. */
static const char *listing(const char *dir) {
    static char buf[1024];
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort);
    buf[0] = '\0';
    for (int i = 0; i < n; i++) {
        if (list[i]->d_name[0] != '.' || strncmp(list[i]->d_name, ".lpcc", 5) == 0) {
            if (buf[0]) strcat(buf, " ");
            strcat(buf, list[i]->d_name);
        }
        free(list[i]);
    }
    free(list);
    return buf;
}

static lp_diag quiet_diag(void) {
    lp_diag d = lp_diag_make(NULL);
    d.sink = NULL;
    return d;
}

static lp_status write_file(lp_outdir *o, const char *name, const char *text, lp_diag *d) {
    FILE *f = lp_outdir_create(o, name, d);
    if (!f) return LP_ERR_OUTPUT;
    fputs(text, f);
    return lp_outdir_close(o, f, d);
}

static void test_commit_replaces_and_removes_stale(void **state) {
    (void)state;
    char dir[64];
    tmp_make(dir, sizeof dir);
    assert_int_equal(tmp_write(dir, "out_a", "old a", 5), 0);
    assert_int_equal(tmp_write(dir, "out_stale", "old", 3), 0);
    assert_int_equal(tmp_write(dir, "user.txt", "mine", 4), 0);
    lp_diag d = quiet_diag();
    lp_outdir_options opt = {.lock = true, .is_output = is_out};
    lp_outdir *o = NULL;
    assert_int_equal(lp_outdir_open(dir, &opt, &o, &d), LP_OK);
    assert_int_equal(write_file(o, "out_a", "new a", &d), LP_OK);
    assert_int_equal(write_file(o, "out_b", "new b", &d), LP_OK);
    assert_true(lp_outdir_has(o, "out_b"));
    assert_false(lp_outdir_has(o, "out_stale"));
    /* nothing visible before the commit */
    assert_string_equal(read_all(dir, "out_a"), "old a");
    assert_null(read_all(dir, "out_b"));
    /* a name twice is refused (O_EXCL in the staging folder) */
    assert_null(lp_outdir_create(o, "out_a", &d));
    assert_null(lp_outdir_create(o, "../escape", &d));
    assert_int_equal(lp_outdir_commit(o, &d), LP_OK);
    assert_string_equal(listing(dir), "out_a out_b user.txt");
    assert_string_equal(read_all(dir, "out_a"), "new a");
    assert_string_equal(read_all(dir, "user.txt"), "mine");
    tmp_remove(dir);
}

static void test_abort_touches_nothing(void **state) {
    (void)state;
    char dir[64];
    tmp_make(dir, sizeof dir);
    assert_int_equal(tmp_write(dir, "out_a", "old a", 5), 0);
    lp_diag d = quiet_diag();
    lp_outdir_options opt = {.lock = true, .is_output = is_out};
    lp_outdir *o = NULL;
    assert_int_equal(lp_outdir_open(dir, &opt, &o, &d), LP_OK);
    assert_int_equal(write_file(o, "out_a", "new a", &d), LP_OK);
    FILE *open_file = lp_outdir_create(o, "out_c", &d); /* left open: abort closes it */
    assert_non_null(open_file);
    lp_outdir_abort(o);
    assert_string_equal(listing(dir), "out_a");
    assert_string_equal(read_all(dir, "out_a"), "old a");
    tmp_remove(dir);
}

static void test_inputs_are_protected(void **state) {
    (void)state;
    char dir[64], path[128];
    tmp_make(dir, sizeof dir);
    assert_int_equal(tmp_write(dir, "out_model", "model", 5), 0);
    assert_int_equal(tmp_write(dir, "weights", "w", 1), 0);
    lp_diag d = quiet_diag();
    lp_outdir_options opt = {.lock = true, .is_output = is_out};
    lp_outdir *o = NULL;
    /* an input under a name a commit replaces or removes: refused at once */
    assert_int_equal(lp_outdir_open(dir, &opt, &o, &d), LP_OK);
    snprintf(path, sizeof path, "%s/out_model", dir);
    assert_int_equal(lp_outdir_protect(o, path, "the model", &d), LP_ERR_OUTPUT);
    assert_non_null(strstr(d.last_error, "out_model"));
    lp_outdir_abort(o);
    /* under another name it stays, and creating that name is refused */
    assert_int_equal(lp_outdir_open(dir, &opt, &o, &d), LP_OK);
    snprintf(path, sizeof path, "%s/weights", dir);
    assert_int_equal(lp_outdir_protect(o, path, "the weights", &d), LP_OK);
    assert_null(lp_outdir_create(o, "weights", &d));
    assert_non_null(strstr(d.last_error, "the weights"));
    assert_int_equal(write_file(o, "out_model", "new", &d), LP_OK);
    assert_int_equal(lp_outdir_commit(o, &d), LP_OK);
    assert_string_equal(listing(dir), "out_model weights");
    assert_string_equal(read_all(dir, "weights"), "w");
    tmp_remove(dir);
}

static void test_open_makes_parents(void **state) {
    (void)state;
    char dir[64], deep[160], blocked[160];
    tmp_make(dir, sizeof dir);
    snprintf(deep, sizeof deep, "%s/a//b/c/", dir);
    lp_diag d = quiet_diag();
    lp_outdir_options opt = {.create = true, .lock = true};
    lp_outdir *o = NULL;
    assert_int_equal(lp_outdir_open(deep, &opt, &o, &d), LP_OK);
    assert_int_equal(write_file(o, "f", "x", &d), LP_OK);
    assert_int_equal(lp_outdir_commit(o, &d), LP_OK);
    snprintf(deep, sizeof deep, "%s/a/b/c", dir);
    assert_string_equal(read_all(deep, "f"), "x");
    assert_string_equal(listing(deep), "f");
    assert_int_equal(tmp_write(dir, "file", "x", 1), 0);
    snprintf(blocked, sizeof blocked, "%s/file/d", dir);
    assert_int_equal(lp_outdir_open(blocked, &opt, &o, &d), LP_ERR_OUTPUT);
    assert_null(o);
    tmp_remove(dir);
}

static void test_atomic_file(void **state) {
    (void)state;
    char dir[64], path[128];
    tmp_make(dir, sizeof dir);
    assert_int_equal(tmp_write(dir, "g.dot", "old", 3), 0);
    snprintf(path, sizeof path, "%s/g.dot", dir);
    lp_diag d = quiet_diag();
    lp_atomic_file af;
    FILE *f = lp_atomic_open(&af, path, &d);
    assert_non_null(f);
    fputs("new", f);
    assert_string_equal(read_all(dir, "g.dot"), "old");
    lp_atomic_abort(&af);
    assert_string_equal(listing(dir), "g.dot");
    assert_string_equal(read_all(dir, "g.dot"), "old");
    f = lp_atomic_open(&af, path, &d);
    assert_non_null(f);
    fputs("new", f);
    assert_int_equal(lp_atomic_commit(&af, &d), LP_OK);
    assert_string_equal(read_all(dir, "g.dot"), "new");
    assert_string_equal(listing(dir), "g.dot");
    tmp_remove(dir);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_commit_replaces_and_removes_stale),
        cmocka_unit_test(test_abort_touches_nothing),
        cmocka_unit_test(test_inputs_are_protected),
        cmocka_unit_test(test_open_makes_parents),
        cmocka_unit_test(test_atomic_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
