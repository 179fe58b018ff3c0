#include "lpcc_cli.h"

int main(int argc, char **argv) { return lpcc_main(argc, argv); }
