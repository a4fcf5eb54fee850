/*
 * hvotes.c - see hvotes.h. Voter k runs on thread k % threads at slot
 * k / threads. A request queues its send and its receive together, so an
 * answer costs one loop turn, and every SQE a turn prepares goes out with
 * that turn's single io_uring_submit_and_wait_timeout(). Completions carry
 * (generation, slot, op) in user_data: a client that failed bumps its
 * generation, so what its old socket still had in flight is ignored.
 */
#include "stress/hvotes.h"

#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"
#include "stress/uring.h"

#define HV_REQ_MAX 1024    /* a vote request: about 300 bytes */
#define HV_RBUF_BYTES 4096 /* a vote answer: head and a short JSON body */
#define HV_TICK_MS 100     /* the longest wait, so timeouts are checked */
#define HV_SWEEP_NS 1000000000ull
#define HV_CLEN_MAX (1u << 30)
#define HV_BODY "{\"choice\":[1]}"

enum hv_op { HV_OP_CONNECT = 1, HV_OP_SEND, HV_OP_RECV };
enum hv_state { HV_CONNECTING = 1, HV_VOTING, HV_DONE };

struct hv_conn {
    const struct hvotes_voter *v;
    int fd;
    uint8_t state;
    bool send_busy;
    bool recv_busy;
    bool answered; /* the current request's answer is complete */
    bool failed;   /* the last request or connect failed: one more in a row ends the client */
    bool reopen;   /* the server said Connection: close */
    uint16_t gen;
    unsigned poll, part; /* the current (or next) vote */
    uint32_t wlen, woff, rlen;
    uint64_t t_start; /* connect or request start: latency and timeout */
    char wbuf[HV_REQ_MAX];
    char rbuf[HV_RBUF_BYTES];
};

struct hv_thread {
    pthread_t tid;
    const struct hvotes_config *cfg;
    struct sockaddr_in dst;
    unsigned id;
    struct io_uring ring;
    struct hv_conn *conns;
    unsigned n_conns, active;
    uint64_t now_ns;
    int err;
    struct hvotes_result res;
};

static uint64_t hv_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool name_is(const char *p, size_t n, const char *name)
{
    return n == strlen(name) && strncasecmp(p, name, n) == 0;
}

/* Content-Length's value: digits only, at most HV_CLEN_MAX; -1 otherwise. */
static long parse_clen(const char *p, size_t n)
{
    if (n == 0 || n > 10)
        return -1;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (!is_digit(p[i]))
            return -1;
        x = x * 10 + (uint64_t)(p[i] - '0');
    }
    return x <= HV_CLEN_MAX ? (long)x : -1;
}

/* One header line [p, p+n) without its CRLF; false when it makes the answer bad. */
static bool parse_header(const char *p, size_t n, long *clen, bool *close_)
{
    const char *colon = memchr(p, ':', n);
    if (colon == NULL)
        return false;
    size_t name_len = (size_t)(colon - p);
    const char *v = colon + 1, *v_end = p + n;
    while (v < v_end && (*v == ' ' || *v == '\t'))
        v++;
    while (v_end > v && (v_end[-1] == ' ' || v_end[-1] == '\t'))
        v_end--;
    size_t vn = (size_t)(v_end - v);
    if (name_is(p, name_len, "content-length")) {
        *clen = parse_clen(v, vn);
        return *clen >= 0;
    }
    if (name_is(p, name_len, "transfer-encoding"))
        return false; /* tallyd frames every body by Content-Length */
    if (name_is(p, name_len, "connection") && vn == 5 && strncasecmp(v, "close", 5) == 0)
        *close_ = true;
    return true;
}

enum hvotes_parse hvotes_parse_answer(const char *buf, size_t len, struct hvotes_answer *out)
{
    static const char proto[] = "HTTP/1.";
    if (memcmp(buf, proto, len < 7 ? len : 7) != 0)
        return HVOTES_PARSE_E_BAD;
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (end == NULL)
        return HVOTES_PARSE_AGAIN;
    size_t head = (size_t)(end - buf) + 4;
    /* "HTTP/1.x NNN" then a reason or the line's end */
    if (head < 16 || !is_digit(buf[7]) || buf[8] != ' ' || !is_digit(buf[9]) ||
        !is_digit(buf[10]) || !is_digit(buf[11]) || (buf[12] != ' ' && buf[12] != '\r'))
        return HVOTES_PARSE_E_BAD;
    long clen = 0;
    bool close_ = false;
    const char *lines_end = end + 2; /* every header line ends with CRLF, the last at end */
    const char *p = memmem(buf, head, "\r\n", 2) + 2;
    while (p < lines_end) {
        const char *eol = memmem(p, (size_t)(lines_end - p), "\r\n", 2);
        if (!parse_header(p, (size_t)(eol - p), &clen, &close_))
            return HVOTES_PARSE_E_BAD;
        p = eol + 2;
    }
    if (len < head + (size_t)clen)
        return HVOTES_PARSE_AGAIN;
    out->status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + (buf[11] - '0');
    out->len = head + (size_t)clen;
    out->close = close_;
    return HVOTES_PARSE_OK;
}

static uint64_t ud(uint16_t gen, uint32_t slot, enum hv_op op)
{
    return ((uint64_t)gen << 48) | ((uint64_t)slot << 8) | (uint64_t)op;
}

static uint32_t slot_of(const struct hv_thread *t, const struct hv_conn *c)
{
    return (uint32_t)(c - t->conns);
}

static void conn_open(struct hv_thread *t, struct hv_conn *c);
static void conn_next(struct hv_thread *t, struct hv_conn *c);

static void conn_finish(struct hv_thread *t, struct hv_conn *c)
{
    TALLY_ASSERT(c->state != HV_DONE && t->active > 0);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = HV_DONE;
    t->active--;
}

/*
 * Drops the socket. SQEs already prepared for it are submitted first, so
 * they hold the old socket and not a new one that reuses its number; the
 * shutdown completes whatever is still in flight on it.
 */
static void conn_drop(struct hv_thread *t, struct hv_conn *c)
{
    io_uring_submit(&t->ring);
    shutdown(c->fd, SHUT_RDWR);
    close(c->fd);
    c->fd = -1;
    c->gen++;
    c->send_busy = c->recv_busy = false;
}

/* A transport error: the vote in flight is lost; reconnect, or stop on a second in a row. */
static void conn_fail(struct hv_thread *t, struct hv_conn *c)
{
    t->res.errors++;
    bool voting = c->state == HV_VOTING;
    conn_drop(t, c);
    if (c->failed) {
        conn_finish(t, c);
        return;
    }
    c->failed = true;
    if (voting && ++c->part == c->v->n_tokens) {
        c->part = 0;
        c->poll++;
    }
    conn_open(t, c);
}

static void conn_open(struct hv_thread *t, struct hv_conn *c)
{
    c->state = HV_CONNECTING;
    c->t_start = t->now_ns;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        t->res.errors++;
        conn_finish(t, c);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in src = {.sin_family = AF_INET};
    /* The server's per-address limits see each client as its own address. */
    if (c->v->source[0] && inet_pton(AF_INET, c->v->source, &src.sin_addr) == 1)
        bind(c->fd, (struct sockaddr *)&src, sizeof(src));
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_connect(sqe, c->fd, (struct sockaddr *)&t->dst, sizeof(t->dst));
    io_uring_sqe_set_data64(sqe, ud(c->gen, slot_of(t, c), HV_OP_CONNECT));
}

static void queue_send(struct hv_thread *t, struct hv_conn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_send(sqe, c->fd, c->wbuf + c->woff, c->wlen - c->woff, MSG_NOSIGNAL);
    io_uring_sqe_set_data64(sqe, ud(c->gen, slot_of(t, c), HV_OP_SEND));
    c->send_busy = true;
}

static void queue_recv(struct hv_thread *t, struct hv_conn *c)
{
    struct io_uring_sqe *sqe = uring_sqe(&t->ring);
    io_uring_prep_recv(sqe, c->fd, c->rbuf + c->rlen, sizeof(c->rbuf) - c->rlen, 0);
    io_uring_sqe_set_data64(sqe, ud(c->gen, slot_of(t, c), HV_OP_RECV));
    c->recv_busy = true;
}

/* The request of vote (poll, part), as httpc_request() writes it. Its length, 0 if too long. */
static uint32_t format_vote(const struct hv_thread *t, struct hv_conn *c)
{
    const struct hvotes_config *cfg = t->cfg;
    int n = snprintf(c->wbuf, sizeof(c->wbuf),
                     "POST /api/v1/polls/%" PRId64 "/votes HTTP/1.1\r\nHost: %s:%u\r\n"
                     "Content-Length: %zu\r\nContent-Type: application/json\r\n"
                     "Authorization: Bearer %s\r\nIdempotency-Key: k-%u-%u-%u\r\n\r\n%s",
                     cfg->polls[c->poll], cfg->host, cfg->port, strlen(HV_BODY),
                     c->v->tokens[c->part], c->v->index, c->poll, c->part, HV_BODY);
    return n > 0 && (size_t)n < sizeof(c->wbuf) ? (uint32_t)n : 0;
}

/* Starts the next vote, or ends the client at the deadline or after its last pair. */
static void conn_next(struct hv_thread *t, struct hv_conn *c)
{
    if (t->now_ns >= t->cfg->deadline_ns || c->poll >= t->cfg->n_polls) {
        conn_finish(t, c);
        return;
    }
    c->state = HV_VOTING;
    c->wlen = format_vote(t, c);
    TALLY_ASSERT(c->wlen > 0);
    c->woff = c->rlen = 0;
    c->answered = false;
    c->t_start = t->now_ns;
    queue_send(t, c);
    queue_recv(t, c);
}

/* Once the answer is in and the request fully sent, the vote is over. */
static void conn_maybe_done(struct hv_thread *t, struct hv_conn *c)
{
    if (!c->answered || c->send_busy || c->woff < c->wlen)
        return;
    c->failed = false;
    if (++c->part == c->v->n_tokens) {
        c->part = 0;
        c->poll++;
    }
    if (c->reopen) {
        c->reopen = false;
        conn_drop(t, c);
        conn_open(t, c);
        return;
    }
    conn_next(t, c);
}

static void count_answer(struct hv_thread *t, struct hv_conn *c, const struct hvotes_answer *a)
{
    if (a->status == 201) {
        t->res.ok++;
        hist_add(&t->res.hist, t->now_ns - c->t_start);
    } else {
        t->res.other++;
        t->res.by_status[a->status / 100 < 6 ? a->status / 100 : 0]++;
    }
}

static void on_recv(struct hv_thread *t, struct hv_conn *c, int res)
{
    c->recv_busy = false;
    if (res <= 0) {
        conn_fail(t, c); /* EOF or error: the server dropped the connection */
        return;
    }
    c->rlen += (uint32_t)res;
    struct hvotes_answer a;
    switch (hvotes_parse_answer(c->rbuf, c->rlen, &a)) {
    case HVOTES_PARSE_OK:
        count_answer(t, c, &a);
        c->answered = true;
        c->reopen = a.close;
        conn_maybe_done(t, c);
        return;
    case HVOTES_PARSE_AGAIN:
        if (c->rlen < sizeof(c->rbuf)) {
            queue_recv(t, c);
            return;
        }
        break; /* an answer larger than any vote answer */
    case HVOTES_PARSE_E_BAD:
        break;
    }
    conn_fail(t, c);
}

static void on_send(struct hv_thread *t, struct hv_conn *c, int res)
{
    c->send_busy = false;
    if (res < 0) {
        conn_fail(t, c);
        return;
    }
    c->woff += (uint32_t)res;
    if (c->woff < c->wlen)
        queue_send(t, c); /* a partial send: the rest */
    else
        conn_maybe_done(t, c);
}

static void on_cqe(struct hv_thread *t, const struct io_uring_cqe *cqe)
{
    uint64_t data = io_uring_cqe_get_data64(cqe);
    uint16_t gen = (uint16_t)(data >> 48);
    uint32_t slot = (uint32_t)(data >> 8) & 0xffffffffu;
    TALLY_ASSERT(slot < t->n_conns);
    struct hv_conn *c = &t->conns[slot];
    if (c->gen != gen || c->state == HV_DONE)
        return; /* a dropped socket's leftover */
    switch ((enum hv_op)(data & 0xff)) {
    case HV_OP_CONNECT:
        if (cqe->res < 0)
            conn_fail(t, c);
        else
            conn_next(t, c);
        return;
    case HV_OP_SEND:
        on_send(t, c, cqe->res);
        return;
    case HV_OP_RECV:
        on_recv(t, c, cqe->res);
        return;
    }
    TALLY_ASSERT(!"bad user data");
}

/* A connect or request older than the timeout fails. */
static void sweep_timeouts(struct hv_thread *t)
{
    uint64_t limit = (uint64_t)HVOTES_TIMEOUT_S * 1000000000ull;
    for (unsigned i = 0; i < t->n_conns; i++) {
        struct hv_conn *c = &t->conns[i];
        if (c->state != HV_DONE && t->now_ns - c->t_start > limit)
            conn_fail(t, c);
    }
}

static void thread_loop(struct hv_thread *t)
{
    uint64_t next_sweep = t->now_ns + HV_SWEEP_NS;
    while (t->active > 0) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_nsec = HV_TICK_MS * 1000000L};
        io_uring_submit_and_wait_timeout(&t->ring, &cqe, 1, &ts, NULL);
        t->now_ns = hv_now_ns();
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&t->ring, head, cqe)
        {
            on_cqe(t, cqe);
            seen++;
        }
        io_uring_cq_advance(&t->ring, seen);
        if (t->now_ns >= next_sweep) {
            sweep_timeouts(t);
            next_sweep = t->now_ns + HV_SWEEP_NS;
        }
    }
}

/*
 * Two SQEs per client at most in a turn (send and receive), doubled for
 * the CQ. Deferred task running keeps completion work on this thread, run
 * when it waits: an answer arriving while it is busy neither interrupts it
 * nor makes tallyd's sending thread wake it. Older kernels get a plain ring.
 */
static int ring_init(struct io_uring *ring, unsigned entries)
{
    int rc =
        io_uring_queue_init(entries, ring, IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN);
    if (rc == -EINVAL)
        rc = io_uring_queue_init(entries, ring, 0);
    return rc;
}

static void *thread_main(void *arg)
{
    struct hv_thread *t = arg;
    const struct hvotes_config *cfg = t->cfg;
    t->n_conns = (cfg->n_voters - t->id + cfg->threads - 1) / cfg->threads;
    int rc = ring_init(&t->ring, t->n_conns * 2 + 8);
    if (rc < 0) {
        t->err = rc;
        return NULL;
    }
    t->conns = xcalloc(t->n_conns, sizeof(*t->conns));
    hist_init(&t->res.hist);
    t->now_ns = hv_now_ns();
    t->active = t->n_conns;
    for (unsigned i = 0; i < t->n_conns; i++) {
        t->conns[i].v = &cfg->voters[i * cfg->threads + t->id];
        t->conns[i].fd = -1;
        conn_open(t, &t->conns[i]);
    }
    thread_loop(t);
    io_uring_queue_exit(&t->ring);
    free(t->conns);
    return NULL;
}

static void result_merge(struct hvotes_result *dst, const struct hvotes_result *src)
{
    hist_merge(&dst->hist, &src->hist);
    dst->ok += src->ok;
    dst->errors += src->errors;
    dst->other += src->other;
    for (unsigned k = 0; k < 6; k++)
        dst->by_status[k] += src->by_status[k];
}

int hvotes_run(const struct hvotes_config *cfg, struct hvotes_result *out)
{
    TALLY_ASSERT(cfg->threads >= 1 && cfg->threads <= HVOTES_THREADS_MAX);
    TALLY_ASSERT(cfg->n_voters >= 1);
    memset(out, 0, sizeof(*out));
    hist_init(&out->hist);
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
    if (inet_pton(AF_INET, cfg->host, &dst.sin_addr) != 1)
        return -EINVAL;
    unsigned n = cfg->threads < cfg->n_voters ? cfg->threads : cfg->n_voters;
    struct hv_thread *ts = xcalloc(n, sizeof(*ts));
    struct hvotes_config one = *cfg;
    one.threads = n; /* no thread without a voter */
    for (unsigned i = 0; i < n; i++) {
        ts[i].cfg = &one;
        ts[i].dst = dst;
        ts[i].id = i;
        pthread_create(&ts[i].tid, NULL, thread_main, &ts[i]);
    }
    int err = 0;
    for (unsigned i = 0; i < n; i++) {
        pthread_join(ts[i].tid, NULL);
        if (ts[i].err)
            err = ts[i].err;
        result_merge(out, &ts[i].res);
    }
    free(ts);
    return err;
}
