/* lpcc-run: runs a folder `lpcc MODEL -o DIR` wrote, on the GPU (--device
 * cuda) or the CPU reference path, a thin driver over lp_runtime.h.
 *
 * Exit codes: 0 ok, 1 bad compiled folder (manifest, weights, card program),
 * 2 usage (options, input files of the wrong shape or dtype), 3 --check
 * failed, 4 cannot write the outputs, 5 internal (a kernel failure, out of
 * memory). */
#define _GNU_SOURCE
#include "lp_frontend.h"
#include "lp_ref.h"
#include "lp_runtime.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

enum { EXIT_BAD_FOLDER = 1, EXIT_USAGE = 2, EXIT_CHECK = 3, EXIT_OUTPUT = 4, EXIT_INTERNAL = 5, EXIT_PEER = 6 };

static int exit_of(lp_status st) {
    switch (st) {
    case LP_OK: return 0;
    case LP_ERR_INVALID_MODEL:
    case LP_ERR_UNSUPPORTED: return EXIT_BAD_FOLDER;
    case LP_ERR_USAGE: return EXIT_USAGE;
    case LP_ERR_OUTPUT: return EXIT_OUTPUT;
    case LP_ERR_PEER: return EXIT_PEER;
    default: return EXIT_INTERNAL;
    }
}

static void usage(FILE *f) {
    fputs("usage: lpcc-run DIR [--device cpu|cuda] [--gpus LIST] [--inputs FOLDER]\n"
          "                [--outputs FOLDER] [--check REF_FOLDER] [--tolerance X] [--iters N]\n"
          "                [--warmup N] [--tokens N] [--seed N] [--no-graphs] [--no-pin]\n"
          "                [--check-nodes] [--profile] [--program MODE] [--dump-programs]\n"
          "                [--copy-cuts] [--microbatches M] [--timeout S] [--json]\n"
          "Runs the model `lpcc MODEL -o DIR` compiled, card by card, on the GPU (--device cuda,\n"
          "every card's step a CUDA graph) or on the CPU reference path (--device cpu, default).\n"
          "  --gpus LIST       card -> GPU, e.g. 0,1,0,1 (the last entry repeats); default: every\n"
          "                    card on GPU 0 (virtual cards: transfers are device copies)\n"
          "  --inputs FOLDER   input_0.pb ... (ONNX TensorProto, graph input order; the backend\n"
          "                    tests' test_data_set_N layout); default: random inputs of the\n"
          "                    compiled shapes (floats in [-1, 1), integers in [0, 10))\n"
          "  --outputs FOLDER  writes output_0.pb ...\n"
          "  --check FOLDER    compares the outputs with FOLDER/output_N.pb (relative L2 error,\n"
          "                    fails above --tolerance, default 1e-5)\n"
          "  --iters N         runs N steps after --warmup N and reports the median step time per\n"
          "                    card, transfers, latency and tokens/s (CUDA events on cuda; the\n"
          "                    host clock on cpu)\n"
          "  --tokens N        tokens a step, for tokens/s (default: the elements of the first\n"
          "                    integer input, else batch x seq of a [batch, seq, hidden] first\n"
          "                    input, else its first dim)\n"
          "  --program MODE    auto (default: as the manifest says: persistent for cards that fit\n"
          "                    L2, resident for those compiled --tier smem), library (one library\n"
          "                    kernel a node), persistent (every card that is not a shard) or\n"
          "                    resident (cuda: one kernel for the card's life, Gemm weights held in\n"
          "                    shared memory across steps where they fit, else persistent; cpu:\n"
          "                    as persistent)\n"
          "  --dump-programs   prints each card's persistent program (phases, barriers) to stderr\n"
          "  --copy-cuts       copy every cut after its sender's step; by default a persistent\n"
          "                    program writes a cut straight into the receiving card's buffer\n"
          "                    (its next step then waits for the receiver's step, so microbatches\n"
          "                    do not overlap across that cut); a line a cut says which it is\n"
          "  --microbatches M  after the timed steps, M steps back to back: their throughput (one\n"
          "                    process a rank: the ranks' cards work on different microbatches)\n"
          "  --timeout S       cpu, one process a rank: the longest wait for another rank (default 60)\n"
          "One process a rank (cpu): RANK and WORLD_SIZE (torchrun), OMPI_COMM_WORLD_RANK and\n"
          "OMPI_COMM_WORLD_SIZE (mpirun) or SLURM_PROCID and SLURM_NTASKS (srun) split the cards\n"
          "over the processes in order; they meet at MASTER_ADDR (default 127.0.0.1), ports\n"
          "MASTER_PORT + rank (default 29500); each writes and checks the outputs its cards make.\n"
          "  --no-graphs       cuda: enqueue every step's kernels instead of replaying a graph\n"
          "  --no-pin          cuda: no L2 persisting window over weights\n"
          "  --check-nodes     cuda: the first step compares every node's output with the CPU\n"
          "                    reference on the same inputs and names the nodes that differ\n"
          "  --profile         cuda: after the timed steps, one more step with events around every\n"
          "                    node; prints each node's time to stderr, longest first\n"
          "exit codes: 0 ok, 1 bad compiled folder, 2 usage or bad inputs, 3 check failed,\n"
          "            4 cannot write outputs, 5 internal, 6 another rank failed or timed out\n", f);
}

/* ---- TensorProto files ---------------------------------------------------- */

static void put_varint(FILE *f, uint64_t v) {
    while (v >= 0x80) {
        fputc((int)(v & 0x7f) | 0x80, f);
        v >>= 7;
    }
    fputc((int)v, f);
}

/* A TensorProto: dims (1), data_type (2), name (8), raw_data (9). */
static lp_status write_tensor(const char *path, const lp_rt_io *io, const void *data, lp_diag *d) {
    FILE *f = fopen(path, "wb");
    if (!f) return lp_error(d, LP_ERR_OUTPUT, "%s: cannot create: %s", path, strerror(errno));
    for (int r = 0; r < io->rank; r++) {
        put_varint(f, 1 << 3 | 0);
        put_varint(f, (uint64_t)io->dims[r]);
    }
    put_varint(f, 2 << 3 | 0);
    put_varint(f, (uint64_t)io->dtype);
    size_t n = strlen(io->name);
    put_varint(f, 8 << 3 | 2);
    put_varint(f, n);
    fwrite(io->name, 1, n, f);
    put_varint(f, 9 << 3 | 2);
    put_varint(f, io->bytes);
    fwrite(data, 1, io->bytes, f);
    bool err = ferror(f) != 0;
    if (fclose(f) != 0) err = true;
    if (err) {
        remove(path);
        return lp_error(d, LP_ERR_OUTPUT, "%s: write error", path);
    }
    return LP_OK;
}

static char *pb_path(const char *dir, const char *stem, int i) {
    size_t n = strlen(dir) + strlen(stem) + 32;
    char *s = malloc(n);
    if (s) snprintf(s, n, "%s/%s_%d.pb", dir, stem, i);
    return s;
}

/* Random bytes of io's type: floats in [-1, 1), integers in [0, 10), bools 0/1. */
static void random_fill(void *p, const lp_rt_io *io, uint64_t *state) {
    size_t es = lp_ref_dtype_size(io->dtype);
    uint64_t n = es ? io->bytes / es : 0;
    for (uint64_t k = 0; k < n; k++) {
        *state = *state * 6364136223846793005ull + 1442695040888963407ull;
        uint32_t r = (uint32_t)(*state >> 33);
        double u = (double)r / 2147483648.0; /* [0, 1) */
        switch (io->dtype) {
        case LP_DT_FLOAT: ((float *)p)[k] = (float)(2 * u - 1); break;
        case LP_DT_DOUBLE: ((double *)p)[k] = 2 * u - 1; break;
        case LP_DT_FLOAT16: ((uint16_t *)p)[k] = lp_ref_f32_to_f16((float)(2 * u - 1)); break;
        case LP_DT_BFLOAT16: ((uint16_t *)p)[k] = lp_ref_f32_to_bf16((float)(2 * u - 1)); break;
        case LP_DT_INT64: ((int64_t *)p)[k] = r % 10; break;
        case LP_DT_INT32: ((int32_t *)p)[k] = (int32_t)(r % 10); break;
        case LP_DT_INT16: ((int16_t *)p)[k] = (int16_t)(r % 10); break;
        case LP_DT_INT8: ((int8_t *)p)[k] = (int8_t)(r % 10); break;
        case LP_DT_BOOL: ((uint8_t *)p)[k] = (uint8_t)(r & 1); break;
        default: ((uint8_t *)p)[k * es] = (uint8_t)(r % 10); break;
        }
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

typedef struct opts {
    const char *dir, *device, *inputs, *outputs, *check, *gpus;
    double tol;
    long iters, warmup, tokens;
    uint64_t seed;
    const char *program;
    long microbatches;
    double timeout;
    bool json, no_graphs, no_pin, check_nodes, profile, dump_programs, copy_cuts;
} opts;

static bool parse_long(const char *s, long lo, long *out) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < lo) return false;
    *out = v;
    return true;
}

static int parse(int argc, char **argv, opts *o, lp_diag *d) {
    static const struct option longs[] = {
        {"device", required_argument, 0, 'd'}, {"inputs", required_argument, 0, 'i'},
        {"outputs", required_argument, 0, 'o'}, {"check", required_argument, 0, 'c'},
        {"tolerance", required_argument, 0, 't'}, {"iters", required_argument, 0, 'n'},
        {"warmup", required_argument, 0, 'w'}, {"seed", required_argument, 0, 's'},
        {"json", no_argument, 0, 'j'}, {"help", no_argument, 0, 'h'},
        {"gpus", required_argument, 0, 'g'}, {"tokens", required_argument, 0, 'k'},
        {"no-graphs", no_argument, 0, 'G'}, {"no-pin", no_argument, 0, 'P'},
        {"check-nodes", no_argument, 0, 'C'}, {"profile", no_argument, 0, 'p'},
        {"program", required_argument, 0, 'm'}, {"dump-programs", no_argument, 0, 'D'},
        {"copy-cuts", no_argument, 0, 'X'},
        {"microbatches", required_argument, 0, 'M'}, {"timeout", required_argument, 0, 'T'}, {0, 0, 0, 0}};
    *o = (opts){.device = "cpu", .tol = 1e-5, .iters = 1, .warmup = 0, .program = "auto", .timeout = 60};
    int ch;
    opterr = 0;
    while ((ch = getopt_long(argc, argv, "h", longs, NULL)) != -1) {
        long v = 0;
        switch (ch) {
        case 'd': o->device = optarg; break;
        case 'i': o->inputs = optarg; break;
        case 'o': o->outputs = optarg; break;
        case 'c': o->check = optarg; break;
        case 'j': o->json = true; break;
        case 'g': o->gpus = optarg; break;
        case 'G': o->no_graphs = true; break;
        case 'P': o->no_pin = true; break;
        case 'X': o->copy_cuts = true; break;
        case 'C': o->check_nodes = true; break;
        case 'p': o->profile = true; break;
        case 'D': o->dump_programs = true; break;
        case 'M':
            if (!parse_long(optarg, 1, &o->microbatches) || o->microbatches > 1000000) {
                lp_error(d, LP_ERR_USAGE, "--microbatches '%s': not a whole number from 1 to 1000000", optarg);
                return EXIT_USAGE;
            }
            break;
        case 'T': {
            char *end;
            o->timeout = strtod(optarg, &end);
            if (end == optarg || *end || !(o->timeout > 0)) {
                lp_error(d, LP_ERR_USAGE, "--timeout '%s': not a number of seconds > 0", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'm':
            if (strcmp(optarg, "auto") && strcmp(optarg, "library") && strcmp(optarg, "persistent") &&
                strcmp(optarg, "resident")) {
                lp_error(d, LP_ERR_USAGE, "--program '%s': not auto, library, persistent or resident", optarg);
                return EXIT_USAGE;
            }
            o->program = optarg;
            break;
        case 'k':
            if (!parse_long(optarg, 1, &o->tokens)) {
                lp_error(d, LP_ERR_USAGE, "--tokens '%s': not a whole number >= 1", optarg);
                return EXIT_USAGE;
            }
            break;
        case 't': {
            char *end;
            o->tol = strtod(optarg, &end);
            if (end == optarg || *end || !(o->tol >= 0)) {
                lp_error(d, LP_ERR_USAGE, "--tolerance '%s': not a number >= 0", optarg);
                return EXIT_USAGE;
            }
            break;
        }
        case 'n':
        case 'w':
        case 's':
            if (!parse_long(optarg, ch == 'n' ? 1 : 0, &v)) {
                lp_error(d, LP_ERR_USAGE, "--%s '%s': not a whole number%s",
                         ch == 'n' ? "iters" : ch == 'w' ? "warmup" : "seed", optarg,
                         ch == 'n' ? " >= 1" : " >= 0");
                return EXIT_USAGE;
            }
            if (ch == 'n') o->iters = v;
            else if (ch == 'w') o->warmup = v;
            else o->seed = (uint64_t)v;
            break;
        case 'h': usage(stdout); return -1;
        default:
            lp_error(d, LP_ERR_USAGE, "unknown or incomplete option '%s'", argv[optind - 1]);
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    if (optind + 1 != argc) {
        lp_error(d, LP_ERR_USAGE, "give exactly one compiled folder (DIR of `lpcc MODEL -o DIR`)");
        usage(stderr);
        return EXIT_USAGE;
    }
    o->dir = argv[optind];
    bool cuda = strcmp(o->device, "cuda") == 0;
    if (!cuda && strcmp(o->device, "cpu") != 0) {
        lp_error(d, LP_ERR_USAGE, "--device %s: not a device (cpu or cuda)", o->device);
        return EXIT_USAGE;
    }
    if (!cuda && (o->gpus || o->no_graphs || o->no_pin || o->check_nodes || o->profile)) {
        lp_error(d, LP_ERR_USAGE, "--gpus, --no-graphs, --no-pin, --check-nodes and --profile need "
                 "--device cuda");
        return EXIT_USAGE;
    }
    return 0;
}

static lp_status bind_inputs(lp_rt *rt, const opts *o, lp_diag *d) {
    lp_status st = LP_OK;
    uint64_t state = o->seed * 2654435761ull + 1;
    for (int i = 0; st == LP_OK && i < lp_rt_n_inputs(rt); i++) {
        const lp_rt_io *io = lp_rt_input(rt, i);
        if (!o->inputs) {
            void *p = calloc(1, io->bytes ? io->bytes : 1);
            if (!p) return lp_error(d, LP_ERR_INTERNAL, "out of memory");
            random_fill(p, io, &state);
            st = lp_rt_set_input_bytes(rt, i, p, io->bytes, d);
            free(p);
            continue;
        }
        char *path = pb_path(o->inputs, "input", i);
        lp_graph *g = lp_graph_new(path);
        if (!path || !g) {
            free(path);
            lp_graph_free(g);
            return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        }
        lp_tensor t;
        st = lp_frontend_load_tensor_file(g, path, &t, d);
        if (st == LP_OK) {
            st = lp_rt_set_input(rt, i, &t, d);
            if (st != LP_OK) lp_note(d, "in %s", path);
        }
        lp_graph_free(g);
        free(path);
    }
    return st;
}

/* Relative L2 error of each output against REF/output_N.pb; *worst the largest. */
static lp_status check_outputs(lp_rt *rt, const opts *o, double *errs, bool *ok, lp_diag *d) {
    *ok = true;
    for (int i = 0; i < lp_rt_n_outputs(rt); i++) {
        if (!lp_rt_output_here(rt, i)) continue; /* another rank checks it */
        const lp_rt_io *io = lp_rt_output(rt, i);
        char *path = pb_path(o->check, "output", i);
        lp_graph *g = lp_graph_new(path);
        if (!path || !g) {
            free(path);
            lp_graph_free(g);
            return lp_error(d, LP_ERR_INTERNAL, "out of memory");
        }
        lp_tensor t;
        lp_status st = lp_frontend_load_tensor_file(g, path, &t, d);
        bool same = st == LP_OK && t.shape.rank == io->rank && t.data.where == LP_DATA_INLINE;
        for (int r = 0; same && r < io->rank; r++) same = t.shape.dims[r].size == io->dims[r];
        size_t es = lp_ref_dtype_size(t.dtype);
        uint64_t n = lp_ref_dtype_size(io->dtype) ? io->bytes / lp_ref_dtype_size(io->dtype) : 0;
        if (st == LP_OK && (!same || es == 0 || t.data.nbytes != n * es)) {
            st = lp_error(d, LP_ERR_USAGE, "%s: not output '%s' of the compiled shape", path, io->name);
        }
        if (st == LP_OK) {
            lp_ref_diff df;
            lp_ref_compare(lp_rt_output_data(rt, i), io->dtype, t.data.bytes, t.dtype, (int64_t)n, &df);
            errs[i] = df.rel_l2;
            if (df.n_mismatch) {
                fprintf(stderr, "lpcc-run: output %d '%s': %lld elements differ from %s in kind (NaN, "
                        "infinity, integer), the first at %lld\n", i, io->name, (long long)df.n_mismatch,
                        path, (long long)df.first_mismatch);
                *ok = false;
            }
            if (!(errs[i] <= o->tol)) *ok = false;
        }
        lp_graph_free(g);
        free(path);
        if (st != LP_OK) return st;
    }
    return LP_OK;
}

/* Tokens a step: --tokens, else the elements of the first integer input
 * (token ids), else the first dim of the first input. */
static long tokens_of(const lp_rt *rt, const opts *o) {
    if (o->tokens) return o->tokens;
    for (int i = 0; i < lp_rt_n_inputs(rt); i++) {
        const lp_rt_io *io = lp_rt_input(rt, i);
        if (io->dtype != LP_DT_INT64 && io->dtype != LP_DT_INT32) continue;
        long n = 1;
        for (int r = 0; r < io->rank; r++) n *= (long)io->dims[r];
        return n;
    }
    /* [batch, seq, hidden]: batch * seq; [batch, ...]: batch */
    const lp_rt_io *io = lp_rt_n_inputs(rt) ? lp_rt_input(rt, 0) : NULL;
    if (io && io->rank == 3) return (long)(io->dims[0] * io->dims[1]);
    return io && io->rank > 0 ? (long)io->dims[0] : 1;
}

static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') fprintf(f, "\\%c", *p);
        else if (*p < 0x20) fprintf(f, "\\u%04x", *p);
        else fputc(*p, f);
    }
    fputc('"', f);
}

static void report(lp_rt *rt, const opts *o, const double *med, const lp_rt_memory *mem,
                   const double *errs, bool ok, double pipeline_s) {
    int nc = lp_rt_n_cards(rt), no = lp_rt_n_outputs(rt);
    bool cuda = strcmp(o->device, "cuda") == 0;
    double latency = med[2 * nc], host = med[2 * nc + 1];
    long tokens = tokens_of(rt, o);
    FILE *f = stdout;
    if (o->json) {
        fprintf(f, "{\"dir\": ");
        put_json_string(f, o->dir);
        fprintf(f, ", \"device\": \"%s\", \"clock\": \"%s\", \"iters\": %ld, \"warmup\": %ld, "
                "\"graphs\": %s, \"cards\": [", o->device, cuda ? "cuda-events" : "host", o->iters,
                o->warmup, cuda && !o->no_graphs ? "true" : "false");
        for (int c = 0; c < nc; c++) {
            double lib_us = 0, per_us = 0;
            const char *prog = lp_rt_card_program(rt, c, &lib_us, &per_us);
            fprintf(f, "%s{\"card\": %d, \"here\": %s, \"program\": \"%s\", ", c ? ", " : "", c,
                    lp_rt_card_here(rt, c) ? "true" : "false", prog);
            if (lib_us > 0)
                fprintf(f, "\"warmup_library_s\": %.9g, \"warmup_persistent_s\": %.9g, ", lib_us * 1e-6,
                        per_us * 1e-6);
            fputs("\"device\": ", f);
            put_json_string(f, mem[c].device ? mem[c].device : "another rank");
            fprintf(f, ", \"gpu\": %d, \"allocated_bytes\": %" PRIu64 ", \"planned_bytes\": %" PRIu64
                    ", \"step_s\": %.9g, \"transfer_s\": %.9g", mem[c].gpu, mem[c].allocated,
                    mem[c].planned, med[c], med[nc + c]);
            if (cuda)
                fprintf(f, ", \"l2_pinned\": %s, \"gpu_allocated_bytes\": %" PRIu64
                        ", \"gpu_taken_bytes\": %" PRIu64 ", \"gpu_literal_bytes\": %" PRIu64,
                        mem[c].pinned ? "true" : "false", mem[c].gpu_allocated, mem[c].gpu_taken,
                        mem[c].literals);
            fputs("}", f);
        }
        fprintf(f, "], \"latency_s\": %.9g, \"end_to_end_s\": %.9g, \"tokens\": %ld, "
                "\"tokens_per_s\": %.6g, \"rank\": %d, ", latency, host, tokens,
                latency > 0 ? (double)tokens / latency : 0.0, lp_rt_rank(rt));
        if (o->microbatches > 0)
            fprintf(f, "\"microbatches\": %ld, \"pipeline_s\": %.9g, \"pipeline_tokens_per_s\": %.6g, ",
                    o->microbatches, pipeline_s,
                    pipeline_s > 0 ? (double)tokens * (double)o->microbatches / pipeline_s : 0.0);
        fputs("\"cuts\": [", f);
        for (int i = 0; i < lp_rt_n_cuts(rt); i++) {
            const char *value, *why;
            int from, to;
            bool direct = lp_rt_cut_direct(rt, i, &value, &from, &to, &why);
            fprintf(f, "%s{\"value\": ", i ? ", " : "");
            put_json_string(f, value);
            fprintf(f, ", \"from\": %d, \"to\": %d, \"direct\": %s, \"why\": ", from, to, direct ? "true" : "false");
            put_json_string(f, why);
            fputs("}", f);
        }
        fputs("], \"outputs\": [", f);
        for (int i = 0, first = 1; i < no; i++) {
            if (!lp_rt_output_here(rt, i)) continue;
            fprintf(f, "%s{\"name\": ", first ? "" : ", ");
            first = 0;
            put_json_string(f, lp_rt_output(rt, i)->name);
            if (o->check) fprintf(f, ", \"rel_l2\": %.6g", errs[i]);
            fputs("}", f);
        }
        fprintf(f, "]");
        if (o->check) fprintf(f, ", \"check\": \"%s\", \"tolerance\": %g", ok ? "pass" : "fail", o->tol);
        if (o->check_nodes) fprintf(f, ", \"nodes_differing\": %d", lp_rt_check_failures(rt));
        fputs("}\n", f);
        return;
    }
    if (cuda)
        fprintf(f, "%s: %d card%s on %s (CUDA%s, median of %ld after %ld warm-up)\n", o->dir, nc,
                nc == 1 ? "" : "s", mem[0].device, o->no_graphs ? ", no graphs" : " graphs",
                o->iters, o->warmup);
    else
        fprintf(f, "%s: %d card%s, CPU reference path (host clock, median of %ld)\n", o->dir, nc,
                nc == 1 ? "" : "s", o->iters);
    for (int c = 0; c < nc; c++) {
        double lib_us = 0, per_us = 0;
        if (!lp_rt_card_here(rt, c)) {
            fprintf(f, "card %d  on another rank\n", c);
            continue;
        }
        fprintf(f, "card %d  %s", c, lp_rt_card_program(rt, c, &lib_us, &per_us));
        if (lib_us > 0) fprintf(f, " (chosen at warm-up: library %.1f us, persistent %.1f us)", lib_us, per_us);
        if (cuda) fprintf(f, "  GPU %d", mem[c].gpu);
        fprintf(f, "  allocated %" PRIu64 " B (planned %" PRIu64 " B)  step %.3f ms  transfers %.3f ms",
                mem[c].allocated, mem[c].planned, med[c] * 1e3, med[nc + c] * 1e3);
        if (cuda) fprintf(f, "  weights %s", mem[c].pinned ? "pinned in L2" : "not pinned");
        fputc('\n', f);
    }
    /* device memory per GPU: each GPU once, at its first card */
    for (int c = 0; cuda && c < nc; c++) {
        bool first = true;
        for (int e = 0; e < c; e++) first = first && mem[e].gpu != mem[c].gpu;
        if (!first) continue;
        fprintf(f, "GPU %d memory: %.2f MiB taken since open, %.2f MiB of it the cards' "
                "allocations (as planned), %.2f MiB literals, the rest library handles, graphs "
                "and streams\n", mem[c].gpu, (double)mem[c].gpu_taken / 1048576.0,
                (double)mem[c].gpu_allocated / 1048576.0, (double)mem[c].literals / 1048576.0);
    }
    for (int i = 0; i < lp_rt_n_cuts(rt); i++) {
        const char *value, *why;
        int from, to;
        if (lp_rt_cut_direct(rt, i, &value, &from, &to, &why))
            fprintf(f, "cut '%s' card %d -> %d  written into card %d's buffer by card %d's program\n", value, from,
                    to, to, from);
        else
            fprintf(f, "cut '%s' card %d -> %d  copied: %s\n", value, from, to, why);
    }
    fprintf(f, "latency %.3f ms%s  end to end %.3f ms (inputs in, outputs out)  %ld tokens  %.1f "
            "tokens/s\n", latency * 1e3, cuda ? " (device)" : "", host * 1e3, tokens,
            latency > 0 ? (double)tokens / latency : 0.0);
    if (o->check_nodes)
        fprintf(f, "nodes differing from the CPU reference: %d\n", lp_rt_check_failures(rt));
    if (o->microbatches > 0)
        fprintf(f, "%ld microbatches back to back: %.3f ms, %.1f tokens/s (this rank's wall clock)\n",
                o->microbatches, pipeline_s * 1e3,
                pipeline_s > 0 ? (double)tokens * (double)o->microbatches / pipeline_s : 0.0);
    for (int i = 0; o->check && i < no; i++)
        if (lp_rt_output_here(rt, i))
            fprintf(f, "output %d '%s'  relative L2 error %.3g  %s\n", i, lp_rt_output(rt, i)->name,
                    errs[i], errs[i] <= o->tol ? "ok" : "FAIL");
}

/* The launcher's rank and world size: torchrun, mpirun or srun variables;
 * 0 of 1 when none is set. */
static lp_status launcher_ranks(lp_rt_options *ro, lp_diag *d) {
    static const char *pairs[][2] = {{"RANK", "WORLD_SIZE"},
                                     {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"},
                                     {"PMI_RANK", "PMI_SIZE"},
                                     {"SLURM_PROCID", "SLURM_NTASKS"}};
    for (size_t k = 0; k < sizeof pairs / sizeof pairs[0]; k++) {
        const char *r = getenv(pairs[k][0]), *w = getenv(pairs[k][1]);
        if (!r || !w) continue;
        long rank = 0, world = 0;
        if (!parse_long(r, 0, &rank) || !parse_long(w, 1, &world) || rank >= world || world > 65535)
            return lp_error(d, LP_ERR_USAGE, "%s=%s %s=%s: not a rank of a world size", pairs[k][0], r,
                            pairs[k][1], w);
        ro->rank = (int)rank;
        ro->world = (int)world;
        break;
    }
    const char *host = getenv("MASTER_ADDR"), *port = getenv("MASTER_PORT");
    if (host && *host) ro->rendezvous = strcmp(host, "localhost") == 0 ? "127.0.0.1" : host;
    long pv = 0;
    if (port && (!parse_long(port, 1, &pv) || pv + ro->world > 65536))
        return lp_error(d, LP_ERR_USAGE, "MASTER_PORT=%s: not a port with room for %d ranks", port, ro->world);
    if (port) ro->port = (int)pv;
    return LP_OK;
}

int main(int argc, char **argv) {
    lp_diag d = lp_diag_make("lpcc-run");
    opts o;
    int rc = parse(argc, argv, &o, &d);
    if (rc) return rc < 0 ? 0 : rc;
    lp_rt_options ro = lp_rt_defaults();
    ro.device = o.device;
    ro.gpus = o.gpus;
    ro.graphs = !o.no_graphs;
    ro.pin_weights = !o.no_pin;
    ro.check_nodes = o.check_nodes;
    ro.program = o.program;
    ro.copy_cuts = o.copy_cuts;
    ro.timeout_s = o.timeout;
    if (launcher_ranks(&ro, &d) != LP_OK) return EXIT_USAGE;
    if (ro.world > 1) {
        static char who[32];
        snprintf(who, sizeof who, "lpcc-run rank %d", ro.rank);
        d.file = who;
    }
    lp_rt *rt = NULL;
    lp_status st = lp_rt_open(o.dir, &ro, &rt, &d);
    if (st != LP_OK) return exit_of(st);
    if (o.dump_programs) lp_rt_dump_programs(rt, stderr);
    st = bind_inputs(rt, &o, &d);
    int nc = lp_rt_n_cards(rt), no = lp_rt_n_outputs(rt);
    int series = 2 * nc + 2; /* per card step, per card transfers, latency, end to end */
    long runs = o.warmup + o.iters;
    double *times = calloc((size_t)series * (size_t)o.iters, sizeof *times);
    double *errs = calloc((size_t)no + 1, sizeof *errs);
    double *med = calloc((size_t)series, sizeof *med);
    lp_rt_memory *mem = calloc((size_t)nc + 1, sizeof *mem);
    if (st == LP_OK && (!times || !errs || !med || !mem))
        st = lp_error(&d, LP_ERR_INTERNAL, "out of memory");
    for (long it = 0; st == LP_OK && it < runs; it++) {
        st = lp_rt_run(rt, &d);
        long k = it - o.warmup;
        if (st != LP_OK || k < 0) continue;
        for (int c = 0; c < nc; c++) {
            times[(size_t)c * (size_t)o.iters + (size_t)k] = lp_rt_card_seconds(rt, c);
            times[(size_t)(nc + c) * (size_t)o.iters + (size_t)k] = lp_rt_transfer_seconds(rt, c);
        }
        times[(size_t)(2 * nc) * (size_t)o.iters + (size_t)k] = lp_rt_device_seconds(rt);
        times[(size_t)(2 * nc + 1) * (size_t)o.iters + (size_t)k] = lp_rt_run_seconds(rt);
    }
    double pipeline_s = 0;
    if (st == LP_OK && o.microbatches > 0) {
        /* microbatches back to back: card (or rank) k works on microbatch t
         * while k - 1 is on t + 1 */
        st = lp_rt_run_microbatches(rt, (int)o.microbatches, &pipeline_s, &d);
    }
    for (int c = 0; st == LP_OK && c < nc; c++)
        if (lp_rt_card_here(rt, c)) st = lp_rt_card_memory(rt, c, &mem[c], &d);
    if (st == LP_OK && o.profile) st = lp_rt_profile(rt, stderr, &d);
    for (int i = 0; st == LP_OK && o.outputs && i < no; i++) {
        if (i == 0 && mkdir(o.outputs, 0777) != 0 && errno != EEXIST) {
            st = lp_error(&d, LP_ERR_OUTPUT, "%s: cannot create: %s", o.outputs, strerror(errno));
            break;
        }
        if (!lp_rt_output_here(rt, i)) continue; /* another rank's */
        char *path = pb_path(o.outputs, "output", i);
        st = path ? write_tensor(path, lp_rt_output(rt, i), lp_rt_output_data(rt, i), &d)
                  : lp_error(&d, LP_ERR_INTERNAL, "out of memory");
        free(path);
    }
    bool ok = true;
    if (st == LP_OK && o.check) st = check_outputs(rt, &o, errs, &ok, &d);
    if (st == LP_OK) {
        for (int s = 0; s < series; s++) {
            qsort(times + (size_t)s * (size_t)o.iters, (size_t)o.iters, sizeof *times, cmp_double);
            med[s] = times[(size_t)s * (size_t)o.iters + (size_t)o.iters / 2];
        }
        report(rt, &o, med, mem, errs, ok, pipeline_s);
    }
    bool nodes_ok = !o.check_nodes || lp_rt_check_failures(rt) == 0;
    free(times);
    free(errs);
    free(med);
    free(mem);
    lp_rt_close(rt);
    if (st != LP_OK) return exit_of(st);
    if (!ok) {
        fprintf(stderr, "lpcc-run: error: outputs differ from %s by more than %g (relative L2)\n",
                o.check, o.tol);
        return EXIT_CHECK;
    }
    if (!nodes_ok) {
        fprintf(stderr, "lpcc-run: error: some nodes differ from the CPU reference (above)\n");
        return EXIT_CHECK;
    }
    return 0;
}
