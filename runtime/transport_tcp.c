/* transport_tcp.c - lp_transport.h over one TCP connection a pair of ranks. */
#define _GNU_SOURCE
#include "lp_transport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAGIC 0x5443504cu /* "LPCT" */

struct lp_transport {
    int rank, world;
    double timeout_s;
    int listener;
    int *fd; /* [world]: the connection to each peer, -1 for self */
};

typedef struct header {
    uint32_t magic, tag, step, pad;
    uint64_t bytes;
} header;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int ms_left(double deadline) {
    double left = deadline - now_s();
    return left <= 0 ? 0 : left > 1e6 ? 1000000000 : (int)(left * 1e3) + 1;
}

/* Waits until fd is ready for `events` or the deadline passes. */
static bool wait_fd(int fd, short events, double deadline) {
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int n = poll(&p, 1, ms_left(deadline));
        if (n > 0) return true;
        if (n == 0 || errno != EINTR) return false;
    }
}

/* Moves all n bytes to (out) or from fd. 1: all of them; 0: the peer
 * closed its end (reading); -1: an error or the deadline (errno ETIMEDOUT). */
static int move_all(int fd, void *buf, size_t n, double deadline, bool out) {
    char *p = buf;
    while (n) {
        if (!wait_fd(fd, out ? POLLOUT : POLLIN, deadline)) {
            errno = ETIMEDOUT;
            return -1;
        }
        ssize_t k = out ? send(fd, p, n, MSG_NOSIGNAL) : recv(fd, p, n, 0);
        if (k == 0 && !out) return 0;
        if (k < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return -1;
        }
        p += k;
        n -= (size_t)k;
    }
    return 1;
}

static int read_all(int fd, void *buf, size_t n, double deadline) { return move_all(fd, buf, n, deadline, false); }
static int write_all(int fd, const void *buf, size_t n, double deadline) {
    return move_all(fd, (void *)buf, n, deadline, true);
}

static void tune(int fd) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

static lp_status connect_to(lp_transport *t, const struct sockaddr_in *base, int peer, double deadline,
                            lp_diag *d) {
    struct sockaddr_in a = *base;
    a.sin_port = htons((uint16_t)(ntohs(base->sin_port) + peer));
    for (;;) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0) return lp_error(d, LP_ERR_INTERNAL, "rank %d: socket: %s", t->rank, strerror(errno));
        if (connect(fd, (const struct sockaddr *)&a, sizeof a) == 0) {
            tune(fd);
            uint32_t hello[2] = {(uint32_t)t->rank, (uint32_t)t->world};
            if (write_all(fd, hello, sizeof hello, deadline) != 1) {
                close(fd);
                return lp_error(d, LP_ERR_PEER, "rank %d: rank %d accepted the connection but took no "
                                "greeting", t->rank, peer);
            }
            t->fd[peer] = fd;
            return LP_OK;
        }
        close(fd);
        if (now_s() >= deadline)
            return lp_error(d, LP_ERR_PEER, "rank %d: rank %d did not listen on port %d within %.0f s "
                            "(not started, or failed before the run)", t->rank, peer,
                            ntohs(a.sin_port), t->timeout_s);
        struct timespec nap = {0, 20 * 1000 * 1000};
        nanosleep(&nap, NULL);
    }
}

lp_status lp_transport_open(const lp_transport_options *o, lp_transport **out, lp_diag *d) {
    *out = NULL;
    if (o->world < 1 || o->rank < 0 || o->rank >= o->world)
        return lp_error(d, LP_ERR_USAGE, "rank %d of world size %d: not a rank of the world", o->rank, o->world);
    if (o->port <= 0 || o->port + o->world > 65536)
        return lp_error(d, LP_ERR_USAGE, "rendezvous port %d: ports %d..%d are not all valid", o->port,
                        o->port, o->port + o->world - 1);
    struct sockaddr_in base = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o->port)};
    if (inet_pton(AF_INET, o->host ? o->host : "127.0.0.1", &base.sin_addr) != 1)
        return lp_error(d, LP_ERR_USAGE, "rendezvous address '%s': not a numeric IPv4 address", o->host);
    lp_transport *t = calloc(1, sizeof *t);
    if (t) t->fd = malloc((size_t)o->world * sizeof *t->fd);
    if (!t || !t->fd) {
        if (t) free(t);
        return lp_error(d, LP_ERR_INTERNAL, "out of memory");
    }
    t->rank = o->rank;
    t->world = o->world;
    t->timeout_s = o->timeout_s > 0 ? o->timeout_s : 60;
    t->listener = -1;
    for (int r = 0; r < o->world; r++) t->fd[r] = -1;
    double deadline = now_s() + t->timeout_s;
    lp_status st = LP_OK;
    /* listen for the higher ranks */
    if (o->rank < o->world - 1) {
        struct sockaddr_in me = base;
        me.sin_port = htons((uint16_t)(o->port + o->rank));
        int one = 1;
        t->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (t->listener < 0 || setsockopt(t->listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
            bind(t->listener, (const struct sockaddr *)&me, sizeof me) != 0 || listen(t->listener, o->world) != 0)
            st = lp_error(d, LP_ERR_USAGE, "rank %d: cannot listen on %s:%d: %s", o->rank,
                          o->host ? o->host : "127.0.0.1", o->port + o->rank, strerror(errno));
    }
    /* connect to the lower ones */
    for (int r = 0; st == LP_OK && r < o->rank; r++) st = connect_to(t, &base, r, deadline, d);
    for (int n = o->rank + 1; st == LP_OK && n < o->world; n++) {
        if (!wait_fd(t->listener, POLLIN, deadline)) {
            int missing = -1;
            for (int r = o->rank + 1; r < o->world && missing < 0; r++)
                if (t->fd[r] < 0) missing = r;
            st = lp_error(d, LP_ERR_PEER, "rank %d: rank %d did not connect within %.0f s (not started, "
                          "or failed before the run)", o->rank, missing, t->timeout_s);
            break;
        }
        int fd = accept4(t->listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) {
            n--;
            continue;
        }
        tune(fd);
        uint32_t hello[2];
        if (read_all(fd, hello, sizeof hello, deadline) != 1 || hello[1] != (uint32_t)o->world ||
            hello[0] <= (uint32_t)o->rank || hello[0] >= (uint32_t)o->world || t->fd[hello[0]] >= 0) {
            close(fd);
            st = lp_error(d, LP_ERR_PEER, "rank %d: a connection on port %d that is not a rank of this "
                          "run of world size %d", o->rank, o->port + o->rank, o->world);
            break;
        }
        t->fd[hello[0]] = fd;
    }
    if (st != LP_OK) {
        lp_transport_close(t);
        return st;
    }
    *out = t;
    return LP_OK;
}

lp_status lp_transport_send(lp_transport *t, int peer, uint32_t tag, uint32_t step, const void *data,
                            uint64_t bytes, const char *what, lp_diag *d) {
    if (peer < 0 || peer >= t->world || t->fd[peer] < 0)
        return lp_error(d, LP_ERR_INTERNAL, "rank %d: no connection to rank %d", t->rank, peer);
    double deadline = now_s() + t->timeout_s;
    header h = {.magic = MAGIC, .tag = tag, .step = step, .bytes = bytes};
    errno = 0;
    if (write_all(t->fd[peer], &h, sizeof h, deadline) != 1 || write_all(t->fd[peer], data, bytes, deadline) != 1)
        return lp_error(d, LP_ERR_PEER, "rank %d: sending '%s' to rank %d: %s", t->rank, what ? what : "?",
                        peer, errno == ETIMEDOUT ? "not taken within the timeout" : strerror(errno));
    return LP_OK;
}

lp_status lp_transport_next(lp_transport *t, int peer, uint32_t *tag, uint32_t *step, uint64_t *bytes,
                            const char *what, lp_diag *d) {
    if (peer < 0 || peer >= t->world || t->fd[peer] < 0)
        return lp_error(d, LP_ERR_INTERNAL, "rank %d: no connection to rank %d", t->rank, peer);
    double deadline = now_s() + t->timeout_s;
    header h;
    errno = 0;
    int k = read_all(t->fd[peer], &h, sizeof h, deadline);
    if (k == 0)
        return lp_error(d, LP_ERR_PEER, "rank %d: rank %d closed its connection before sending '%s' "
                        "(it stopped or failed)", t->rank, peer, what ? what : "?");
    if (k < 0)
        return lp_error(d, LP_ERR_PEER, "rank %d: no '%s' from rank %d within %.0f s%s%s", t->rank,
                        what ? what : "?", peer, t->timeout_s, errno == ETIMEDOUT ? "" : ": ",
                        errno == ETIMEDOUT ? "" : strerror(errno));
    if (h.magic != MAGIC)
        return lp_error(d, LP_ERR_PEER, "rank %d: rank %d sent something that is not a transfer", t->rank, peer);
    *tag = h.tag;
    *step = h.step;
    *bytes = h.bytes;
    return LP_OK;
}

lp_status lp_transport_body(lp_transport *t, int peer, void *data, uint64_t bytes, const char *what,
                            lp_diag *d) {
    double deadline = now_s() + t->timeout_s;
    errno = 0;
    if (read_all(t->fd[peer], data, bytes, deadline) != 1)
        return lp_error(d, LP_ERR_PEER, "rank %d: rank %d stopped in the middle of '%s'", t->rank, peer,
                        what ? what : "?");
    return LP_OK;
}

void lp_transport_close(lp_transport *t) {
    if (!t) return;
    for (int r = 0; t->fd && r < t->world; r++)
        if (t->fd[r] >= 0) close(t->fd[r]);
    if (t->listener >= 0) close(t->listener);
    free(t->fd);
    free(t);
}
