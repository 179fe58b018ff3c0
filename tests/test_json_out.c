/* ir/json_out: names escaped byte by byte, a streamed document equal to the
 * tree the same calls build, and write failures reported. */
#define _GNU_SOURCE
#include "support/ir_builder.h"

#include "json_out.h"
#include "lp_analysis.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void expect_escape(const char *in, const char *want) {
    char *got = lp_json_escape_name(in);
    assert_non_null(got);
    assert_string_equal(got, want);
    json_t *j = lp_json_name(in);
    assert_non_null(j);
    assert_string_equal(json_string_value(j), want);
    json_decref(j);
    free(got);
}

static void test_escape(void **state) {
    (void)state;
    expect_escape("plain", "plain");
    expect_escape(NULL, "");
    expect_escape("back\\slash \"quote\"\n", "back\\slash \"quote\"\n"); /* valid: kept */
    expect_escape("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80");
    expect_escape("a\xff", "a\\xff");
    expect_escape("\xc3(", "\\xc3(");                             /* lead byte alone */
    expect_escape("\xe2\x82", "\\xe2\\x82");                      /* truncated at the end */
    expect_escape("\xc0\xaf", "\\xc0\\xaf");                      /* overlong '/' */
    expect_escape("\xe0\x80\xaf", "\\xe0\\x80\\xaf");             /* overlong, 3 bytes */
    expect_escape("\xed\xa0\x80", "\\xed\\xa0\\x80");             /* a surrogate */
    expect_escape("\xf4\x90\x80\x80", "\\xf4\\x90\\x80\\x80");    /* above U+10FFFF */
    expect_escape("\xf4\x8f\xbf\xbf", "\xf4\x8f\xbf\xbf");        /* U+10FFFF itself */
    expect_escape("\x80z\xc3\xa9", "\\x80z\xc3\xa9");             /* stray continuation */
}

/* in -> n0 (Relu) -> n1 (Add w) -> out, with names that need every kind of
 * escaping, one layer per node. */
static lp_graph *odd_names_graph(void) {
    lp_graph *g = lp_graph_new("odd\xff.onnx");
    assert_non_null(g);
    int32_t x = ib_value(g, "in \"quoted\"", LP_VALUE_INPUT, 2, 8);
    int32_t w = ib_value(g, "w\\\xc3\xa9\xfe", LP_VALUE_WEIGHT, 2, 8);
    int32_t mid = ib_value(g, "mid\n\x01\xed\xa0\x80", LP_VALUE_ACTIVATION, 2, 8);
    int32_t out = ib_value(g, "out\xf5", LP_VALUE_ACTIVATION, 2, 8);
    g->nodes = lp_arena_array(g->arena, 2, sizeof(lp_node));
    g->n_nodes = 2;
    int n = 0;
    ib_node(g, &n, "Relu", x, -1, mid);
    ib_node(g, &n, "Add", mid, w, out);
    g->nodes[0].name = "relu\xff";
    ib_inputs(g, 1, &x);
    ib_output(g, out);
    return g;
}

/* The document doc writes, streamed into memory and parsed back. */
static json_t *streamed(lp_json_doc doc, const void *ctx) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    lp_diag d = lp_diag_make(NULL);
    assert_int_equal(lp_json_write(f, doc, ctx, "memory", &d), LP_OK);
    assert_int_equal(fclose(f), 0);
    json_error_t err;
    json_t *j = json_loadb(text, len, 0, &err);
    if (!j) fail_msg("streamed JSON does not parse: %s (line %d)", err.text, err.line);
    free(text);
    return j;
}

static void graph_doc(const void *g, lp_json_out *w) { lp_graph_write_json(g, w); }
static void layers_doc(const void *L, lp_json_out *w) { lp_layer_ir_write_json(L, w); }

static bool has_string(const json_t *j, const char *s) {
    if (json_is_string(j)) return strcmp(json_string_value(j), s) == 0;
    size_t i;
    const char *k;
    json_t *v;
    if (json_is_array(j)) json_array_foreach(j, i, v) if (has_string(v, s)) return true;
    if (json_is_object(j)) json_object_foreach((json_t *)j, k, v) if (has_string(v, s)) return true;
    return false;
}

static void test_stream_equals_tree(void **state) {
    (void)state;
    lp_graph *g = odd_names_graph();
    json_t *tree = lp_graph_to_json(g), *stream = streamed(graph_doc, g);
    assert_non_null(tree);
    assert_true(json_equal(tree, stream));
    const char *names[] = {"relu\\xff", "in \"quoted\"", "w\\\xc3\xa9\\xfe", "mid\n\x01\\xed\\xa0\\x80",
                           "out\\xf5", "odd\\xff.onnx"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        if (!has_string(stream, names[i])) fail_msg("graph JSON lacks name %zu", i);
    }
    json_decref(tree);
    json_decref(stream);

    lp_layer_ir *L = ib_build_layers(g, LP_LAYERS_NODE);
    tree = lp_layer_ir_to_json(L);
    stream = streamed(layers_doc, L);
    assert_non_null(tree);
    assert_true(json_equal(tree, stream));
    assert_int_equal(json_integer_value(json_object_get(stream, "n_layers")), 2);
    assert_true(has_string(stream, "relu\\xff"));
    assert_true(has_string(stream, "out\\xf5"));
    json_decref(tree);
    json_decref(stream);
    lp_layer_ir_free(L);
    lp_graph_free(g);
}

static void many_rows(const void *ctx, lp_json_out *w) {
    int n = *(const int *)ctx;
    lp_json_begin_object(w, NULL);
    lp_json_begin_array(w, "rows");
    for (int i = 0; i < n; i++) {
        lp_json_begin_row_object(w, NULL);
        lp_json_int(w, "i", i);
        lp_json_int(w, "neg", i % 2 ? INT64_MIN : INT64_MAX - i);
        lp_json_string(w, "name", "row name long enough to fill the buffer soon");
        lp_json_end(w);
    }
    lp_json_end(w);
    lp_json_end(w);
}

/* Beyond the buffer, ints at their extremes, and empty containers. */
static void test_large_document(void **state) {
    (void)state;
    int n = 40000;
    json_t *j = streamed(many_rows, &n);
    json_t *rows = json_object_get(j, "rows");
    assert_int_equal(json_array_size(rows), (size_t)n);
    json_t *last = json_array_get(rows, (size_t)n - 1);
    assert_int_equal(json_integer_value(json_object_get(last, "i")), n - 1);
    assert_true(json_integer_value(json_object_get(json_array_get(rows, 1), "neg")) == INT64_MIN);
    json_decref(j);
    int zero = 0;
    j = streamed(many_rows, &zero);
    assert_int_equal(json_array_size(json_object_get(j, "rows")), 0);
    json_decref(j);
}

/* The streamed text of one string, as the whole document. */
static void one_string(const void *ctx, lp_json_out *w) { lp_json_string(w, NULL, ctx); }

static char *streamed_text(lp_json_doc doc, const void *ctx) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    assert_non_null(f);
    lp_diag d = lp_diag_make(NULL);
    assert_int_equal(lp_json_write(f, doc, ctx, "memory", &d), LP_OK);
    assert_int_equal(fclose(f), 0);
    return text;
}

/* Strings are copied as they are only when every byte is printable ASCII
 * other than '"' and '\': each byte that is not, at each place of a word
 * of eight and in the tail after the words, is written as jansson writes
 * it (escaped, or \xNN for bytes that are not UTF-8). */
static void test_string_bytes(void **state) {
    (void)state;
    const char *odd[] = {"\x01", "\x1f", "\x7f", "\x80", "\"", "\\", "\xc3\xa9", "\t", "~", " "};
    for (size_t k = 0; k < sizeof odd / sizeof *odd; k++)
        for (int len = 1; len <= 19; len++)
            for (int at = 0; at < len; at++) {
                char s[32];
                memset(s, 'a' + at % 26, (size_t)len);
                s[len] = '\0';
                size_t n = strlen(odd[k]);
                memcpy(s + at, odd[k], n);
                s[at + n > (size_t)len ? at + n : (size_t)len] = '\0';
                json_t *j = lp_json_name(s);
                assert_non_null(j);
                char *want = json_dumps(j, JSON_ENCODE_ANY);
                char *got = streamed_text(one_string, s);
                size_t wl = strlen(want);
                if (strncmp(got, want, wl) != 0 || strcmp(got + wl, "\n") != 0)
                    fail_msg("'%s': streamed %s, jansson %s", s, got, want);
                free(want);
                free(got);
                json_decref(j);
            }
}

/* A row array of strings: `pad` bytes of padding, then strings and numbers
 * of every length 1..40 several times over, then one longer than the
 * writer's buffer. */
typedef struct boundary_doc {
    const char *pad, *big;
} boundary_doc;

static void boundary_strings(const void *ctx, lp_json_out *w) {
    const boundary_doc *b = ctx;
    char s[48];
    lp_json_begin_row_array(w, NULL);
    lp_json_string(w, NULL, b->pad);
    for (int r = 0; r < 8; r++)
        for (int len = 1; len <= 40; len++) {
            memset(s, 'a' + len % 26, (size_t)len);
            s[len] = '\0';
            lp_json_string(w, NULL, s);
            lp_json_int(w, NULL, -1234567890123LL * len);
        }
    lp_json_string(w, NULL, b->big);
    lp_json_end(w);
}

/* Strings and numbers that meet the end of the buffer, at each offset, and
 * a string longer than the whole buffer, are written whole and in place:
 * the text equals the one put together here. */
static void test_buffer_boundary(void **state) {
    (void)state;
    size_t buf = (size_t)1 << 20, big_len = buf + 100;
    char *pad = malloc(buf + 1), *big = malloc(big_len + 1);
    assert_non_null(pad);
    assert_non_null(big);
    memset(big, 'q', big_len);
    big[big_len] = '\0';
    for (size_t pad_len = buf - 3 - 2400; pad_len <= buf - 3; pad_len += 37) {
        memset(pad, 'p', pad_len);
        pad[pad_len] = '\0';
        boundary_doc b = {pad, big};
        char *got = streamed_text(boundary_strings, &b);
        /* the expected text, put together by hand */
        char *want = malloc(pad_len + big_len + 8 * 40 * 72 + 16), *o = want;
        assert_non_null(want);
        o += sprintf(o, "[\"%s\"", pad);
        for (int r = 0; r < 8; r++)
            for (int len = 1; len <= 40; len++) {
                o += sprintf(o, ", \"");
                memset(o, 'a' + len % 26, (size_t)len);
                o += len;
                o += sprintf(o, "\", %lld", -1234567890123LL * len);
            }
        o += sprintf(o, ", \"%s\"]\n", big);
        if (strcmp(got, want) != 0) fail_msg("padding %zu: streamed text differs", pad_len);
        free(want);
        free(got);
    }
    free(pad);
    free(big);
}

static void nested(const void *ctx, lp_json_out *w) {
    int depth = *(const int *)ctx;
    for (int i = 0; i < depth; i++) lp_json_begin_array(w, NULL);
    lp_json_int(w, NULL, 7);
    for (int i = 0; i < depth; i++) lp_json_end(w);
}

/* Each line is indented by its depth. */
static void test_indent(void **state) {
    (void)state;
    int depth = 3;
    char *got = streamed_text(nested, &depth);
    assert_string_equal(got, "[\n [\n  [\n   7\n  ]\n ]\n]\n");
    free(got);
}

/* A full disk is an output error naming the destination. */
static void test_write_failure(void **state) {
    (void)state;
    FILE *f = fopen("/dev/full", "w");
    if (!f) skip();
    int n = 40000;
    lp_diag d = lp_diag_make(NULL);
    d.sink = NULL;
    assert_int_equal(lp_json_write(f, many_rows, &n, "full.json", &d), LP_ERR_OUTPUT);
    fclose(f);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escape),
        cmocka_unit_test(test_stream_equals_tree),
        cmocka_unit_test(test_large_document),
        cmocka_unit_test(test_string_bytes),
        cmocka_unit_test(test_buffer_boundary),
        cmocka_unit_test(test_indent),
        cmocka_unit_test(test_write_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
