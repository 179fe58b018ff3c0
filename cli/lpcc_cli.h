/* lpcc_cli.h - the lpcc command as a library call, for export pipelines
 * that embed it:  int rc = lpcc_main(argc, argv);  */
#ifndef LPCC_CLI_H
#define LPCC_CLI_H

#include "lp_ir.h"

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

#endif
