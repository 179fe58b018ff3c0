/* lp_transport.h - moving cut values between the processes of one run.
 *
 * One process a rank (RANK / WORLD_SIZE, as torchrun, mpirun or srun set
 * them); the ranks of one host meet at a rendezvous address: rank r listens
 * on port + r, connects to every lower rank and accepts every higher one,
 * so each pair has one TCP connection. A message is a header (tag: the cut,
 * step: the run's step counter, its size) and the bytes, so a receiver can
 * take messages in the order they come and check each against the plan.
 *
 * Every wait is bounded by the timeout: a peer that never connects, never
 * sends or closes its end (it stopped or failed) is LP_ERR_PEER naming the
 * rank and the value, never a hang.
 *
 * This is the CPU path's transport (CI runs it); transfers between GPUs of
 * different processes go through it staged in host memory. */
#ifndef LP_TRANSPORT_H
#define LP_TRANSPORT_H

#include <stdint.h>

#include "lp_ir.h"

typedef struct lp_transport lp_transport;

typedef struct lp_transport_options {
    int rank, world;
    const char *host;  /* the rendezvous address (numeric IPv4), e.g. "127.0.0.1" */
    int port;          /* rank r listens on port + r */
    double timeout_s;  /* every wait: connecting, sending, receiving */
} lp_transport_options;

lp_status lp_transport_open(const lp_transport_options *o, lp_transport **out, lp_diag *d);
/* `what` names the value in errors. */
lp_status lp_transport_send(lp_transport *t, int peer, uint32_t tag, uint32_t step, const void *data,
                            uint64_t bytes, const char *what, lp_diag *d);
/* The next message from peer: its header (tag, step, size), then its bytes
 * (all `bytes` of them must be read before the next header). `what` names
 * the value the caller waits for, in errors. */
lp_status lp_transport_next(lp_transport *t, int peer, uint32_t *tag, uint32_t *step, uint64_t *bytes,
                            const char *what, lp_diag *d);
lp_status lp_transport_body(lp_transport *t, int peer, void *data, uint64_t bytes, const char *what,
                            lp_diag *d);
void lp_transport_close(lp_transport *t);

#endif
