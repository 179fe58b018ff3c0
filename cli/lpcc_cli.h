/* lpcc_cli.h - the lpcc command as a library call, for export pipelines
 * that embed it:  int rc = lpcc_main(argc, argv);  */
#ifndef LPCC_CLI_H
#define LPCC_CLI_H

#include "lp_ir.h"

#include <stdbool.h>
#include <stddef.h>

enum {
    LPCC_EXIT_OK = 0,
    LPCC_EXIT_MODEL = 1,      /* invalid or unsupported model */
    LPCC_EXIT_USAGE = 2,
    LPCC_EXIT_INFEASIBLE = 3, /* no plan fits the cards */
    LPCC_EXIT_OUTPUT = 4,     /* cannot write the output folder */
    LPCC_EXIT_INTERNAL = 5,
};

int lpcc_exit_code(lp_status s);
int lpcc_main(int argc, char **argv);

/* The command in-process: what it prints is returned as strings and its
 * error as data; nothing goes to stdout or stderr. Safe to call from several
 * threads at once (each call owns its state).
 *
 *     char *argv[] = {"lpcc", "--dim", "batch=1", "--", "model.onnx", NULL};
 *     lpcc_request req = {.argc = 5, .argv = argv, .want_plan = true};
 *     lpcc_outcome o;
 *     if (lpcc_invoke(&req, &o) == 0) fwrite(o.plan_json, 1, o.plan_json_len, f);
 *     lpcc_outcome_free(&o);
 */
typedef struct lpcc_request {
    int argc;
    char **argv;             /* as the command's; argv[0] names the program; getopt permutes it */
    const void *model_bytes; /* non-NULL: the model in memory; the model operand names it (in
                              * messages, and its folder is where external data resolves) */
    size_t model_len;
    bool want_plan;          /* partition though no option asks; plan.json's bytes in plan_json */
    bool want_layers;        /* build the layers; layers.json and graph.json's bytes returned */
} lpcc_request;

typedef struct lpcc_outcome {
    int exit_code;           /* the command's (LPCC_EXIT_*) */
    lp_status status;
    char *out;               /* what the command prints on stdout (NUL-terminated) */
    size_t out_len;
    char *err;               /* what it prints on stderr: every diagnostic, in order */
    size_t err_len;
    char error[1024];        /* the error's message without the "file: error: " prefix; "" on success */
    int n_warnings;
    char *plan_json;         /* want_plan: the plan.json document; NULL without a plan */
    size_t plan_json_len;
    char *layers_json;       /* want_layers: layers.json */
    size_t layers_json_len;
    char *graph_json;        /* want_layers: graph.json */
    size_t graph_json_len;
} lpcc_outcome;

int lpcc_invoke(const lpcc_request *req, lpcc_outcome *o);
void lpcc_outcome_free(lpcc_outcome *o);

#endif
