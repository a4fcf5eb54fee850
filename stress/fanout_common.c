/*
 * fanout_common.c - the clock, option, /proc and subscriber-pool helpers
 * shared by the tally-stress scenarios (see fanout_common.h).
 */
#include "stress/fanout_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "core/base.h"

#define FO_FRAME_OUT_MAX (WSC_CLIENT_HEADER_MAX + 125) /* a pong echoes <= 125 bytes */

static_assert(FO_SUB_ADDRS < 255, "subscriber addresses fit in 127.0.1.x");

uint64_t fo_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

void fo_sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

void fo_sleep_until_ns(uint64_t due_ns)
{
    /* An absolute deadline keeps a paced schedule from drifting by the time each step takes. */
    struct timespec ts = {.tv_sec = (time_t)(due_ns / 1000000000ull),
                          .tv_nsec = (long)(due_ns % 1000000000ull)};
    while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL) == EINTR)
        ;
}

double fo_ms(uint64_t ns)
{
    return (double)ns / 1e6;
}

struct fo_latency_ms fo_latency_ms(const struct hist *h)
{
    return (struct fo_latency_ms){
        .p50 = fo_ms(hist_quantile(h, 0.50)),
        .p95 = fo_ms(hist_quantile(h, 0.95)),
        .p99 = fo_ms(hist_quantile(h, 0.99)),
        .max = fo_ms(h->max),
    };
}

int fo_opt_next(int argc, char **argv, int *i, const char **flag, const char **val)
{
    TALLY_ASSERT(*i >= 2);
    if (*i >= argc)
        return 0;
    /* Every option takes a value: a flag alone at the end is a usage error. */
    if (*i + 1 >= argc)
        return -EINVAL;
    *flag = argv[*i];
    *val = argv[*i + 1];
    *i += 2;
    return 1;
}

unsigned fo_parse_uint(const char *flag, const char *v, unsigned lo, unsigned hi)
{
    char *end;
    errno = 0;
    unsigned long x = strtoul(v, &end, 10);
    if (errno || *end || x < lo || x > hi) {
        fprintf(stderr, "tally-stress: invalid %s '%s': expected %u..%u\n", flag, v, lo, hi);
        exit(2);
    }
    return (unsigned)x;
}

int fo_parse_target(const char *v, char *host, size_t cap, uint16_t *port)
{
    /* The last ':' so the port is always what follows it. */
    const char *colon = strrchr(v, ':');
    if (!colon || (size_t)(colon - v) >= cap)
        return -EINVAL;
    memcpy(host, v, (size_t)(colon - v));
    host[colon - v] = '\0';
    *port = (uint16_t)fo_parse_uint("--target port", colon + 1, 1, 65535);
    return 0;
}

bool fo_proc_stat(long pid, long *ppid, uint64_t *cpu_us)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return false;
    snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    /* The command name may hold spaces and parentheses: fields restart after the last ')'. */
    const char *p = strrchr(buf, ')');
    long pp = 0;
    unsigned long long ut = 0, st = 0;
    if (p == NULL ||
        sscanf(p + 2, "%*c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &pp, &ut, &st) != 3)
        return false;
    long hz = sysconf(_SC_CLK_TCK);
    *ppid = pp;
    *cpu_us = (ut + st) * 1000000ull / (uint64_t)(hz > 0 ? hz : 100);
    return true;
}

uint64_t fo_proc_kb(long pid, const char *file, const char *key)
{
    char path[64], line[256];
    uint64_t kb = 0;
    size_t klen = strlen(key);
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof(path), "/proc/%ld/%s", pid, file);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    while (fgets(line, sizeof(line), f))
        if (strncmp(line, key, klen) == 0)
            kb = strtoull(line + klen, NULL, 10);
    fclose(f);
    return kb * 1024;
}

int fo_fd_limit_check(unsigned subscribers)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -errno;
    rl.rlim_cur = rl.rlim_max;
    /* Best effort: the check below decides, with whatever limit we ended up with. */
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    if ((uint64_t)subscribers + FO_FD_SPARE > rl.rlim_cur) {
        fprintf(stderr, "tally-stress: %u subscribers need more than the fd limit %llu\n",
                subscribers, (unsigned long long)rl.rlim_cur);
        return -EMFILE;
    }
    return 0;
}

/* ---- the subscriber pool ---- */

enum fo_conn_state { FO_CONNECTING, FO_HANDSHAKE, FO_OPEN, FO_DEAD };

struct fo_conn {
    int fd;
    enum fo_conn_state state;
    bool ready;     /* counted in ready; a later failure counts as dropped */
    unsigned index; /* global subscriber index */
    uint64_t seq;   /* the scenario's per-connection word */
    uint32_t len;   /* bytes in rbuf */
    char key[WSC_KEY_CHARS + 1];
    uint8_t rbuf[FO_RBUF_BYTES];
};

struct fo_sub_thread {
    pthread_t tid;
    struct fo_subs *pool;
    struct fo_conn *conns;
    unsigned n_conns, next_connect, inflight;
    int ep;
    uint32_t mask_state; /* LCG state for pong masks: they need not be secret here */
    atomic_uint ready;
    atomic_uint connect_errors; /* failed before ready */
    atomic_uint dropped;        /* closed after ready */
    struct fo_sub_stats st;     /* this thread's only; read after the join */
};

struct fo_subs {
    struct fo_subs_config cfg;
    atomic_bool stop;
    struct fo_sub_thread *threads;
};

static void conn_fail(struct fo_sub_thread *t, struct fo_conn *c)
{
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    if (c->ready) {
        atomic_fetch_add(&t->dropped, 1);
    } else {
        atomic_fetch_add(&t->connect_errors, 1);
        t->inflight--;
    }
    c->state = FO_DEAD;
}

static void conn_ready(struct fo_sub_thread *t, struct fo_conn *c)
{
    TALLY_ASSERT(!c->ready);
    c->ready = true;
    t->inflight--; /* its slot goes to the next handshake */
    atomic_fetch_add(&t->ready, 1);
}

/* Starts one nonblocking connect from 127.0.1.x. */
static void conn_start(struct fo_sub_thread *t, struct fo_conn *c)
{
    const struct fo_subs_config *cfg = &t->pool->cfg;
    struct sockaddr_in dst = {.sin_family = AF_INET, .sin_port = htons(cfg->port)};
    struct sockaddr_in src = {.sin_family = AF_INET};
    char src_s[32];
    snprintf(src_s, sizeof(src_s), "127.0.1.%u", 1 + c->index % FO_SUB_ADDRS);
    t->inflight++;
    c->state = FO_CONNECTING;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0 || inet_pton(AF_INET, cfg->host, &dst.sin_addr) != 1 ||
        inet_pton(AF_INET, src_s, &src.sin_addr) != 1)
        goto err;
    int one = 1;
    /* The port is picked at connect time, per destination, so one source
     * address is not limited to one ephemeral range for all its sockets. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0)
        goto err;
    if (connect(c->fd, (struct sockaddr *)&dst, sizeof(dst)) < 0 && errno != EINPROGRESS)
        goto err;
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        goto err;
    return;
err:
    conn_fail(t, c);
}

/* The connect finished: send the upgrade request (small enough for any fresh socket buffer). */
static void conn_on_connected(struct fo_sub_thread *t, struct fo_conn *c)
{
    const struct fo_subs_config *cfg = &t->pool->cfg;
    int err = 0;
    socklen_t elen = sizeof(err);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0 || err != 0)
        goto err;
    char req[FO_UPGRADE_MAX];
    wsc_key_make(c->key);
    int n = cfg->format_upgrade(cfg->ctx, c->index, c->key, req, sizeof(req));
    if (n < 0 || (size_t)n >= sizeof(req) || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        goto err;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
    if (epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        goto err;
    c->state = FO_HANDSHAKE;
    return;
err:
    conn_fail(t, c);
}

static bool has_prefix(const struct wsc_frame *f, const char *prefix)
{
    size_t n = strlen(prefix);
    return f->payload_len >= n && memcmp(f->payload, prefix, n) == 0;
}

/* Handles one server frame; returns false when the connection must go. */
static bool on_frame(struct fo_sub_thread *t, struct fo_conn *c, const struct wsc_frame *f,
                     uint64_t now)
{
    const struct fo_subs_config *cfg = &t->pool->cfg;
    uint8_t out[FO_FRAME_OUT_MAX];
    switch (f->opcode) {
    case WSC_OP_TEXT:
        if (f->fin && cfg->ready_prefix && !c->ready && has_prefix(f, cfg->ready_prefix)) {
            conn_ready(t, c);
            return true;
        }
        /* fall through */
    case WSC_OP_BINARY: /* nchan picks the opcode from the message's content type */
        if (f->fin)
            cfg->on_message(cfg->ctx, &t->st, &c->seq, f, now);
        return true;
    case WSC_OP_PING: {
        t->mask_state = t->mask_state * 1664525u + 1013904223u;
        int n = wsc_frame_build(out, sizeof(out), WSC_OP_PONG, f->payload, f->payload_len,
                                t->mask_state);
        /* A pong that does not fit in the socket buffer now is skipped: the next ping retries. */
        if (n > 0)
            (void)send(c->fd, out, (size_t)n, MSG_NOSIGNAL | MSG_DONTWAIT);
        return true;
    }
    case WSC_OP_CLOSE:
        return false;
    default:
        return true; /* pong, continuation: neither server fragments or pings back */
    }
}

/* Consumes the 101 and any complete frames in c->rbuf. */
static bool conn_consume(struct fo_sub_thread *t, struct fo_conn *c, uint64_t now)
{
    size_t off = 0;
    if (c->state == FO_HANDSHAKE) {
        size_t head = 0;
        enum wsc_parse r = wsc_response_check((const char *)c->rbuf, c->len, c->key, &head);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            return c->len < sizeof(c->rbuf);
        c->state = FO_OPEN;
        if (t->pool->cfg.ready_prefix == NULL)
            conn_ready(t, c);
        off = head;
    }
    for (;;) {
        struct wsc_frame f;
        enum wsc_parse r = wsc_frame_parse(c->rbuf + off, c->len - off, &f);
        if (r == WSC_BAD)
            return false;
        if (r == WSC_AGAIN)
            break;
        if (!on_frame(t, c, &f, now))
            return false;
        off += f.frame_len;
    }
    memmove(c->rbuf, c->rbuf + off, c->len - off);
    c->len -= (uint32_t)off;
    return c->len < sizeof(c->rbuf); /* a full buffer with no complete frame never empties */
}

static void conn_on_readable(struct fo_sub_thread *t, struct fo_conn *c)
{
    for (;;) {
        ssize_t r = recv(c->fd, c->rbuf + c->len, sizeof(c->rbuf) - c->len, 0);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        if (r <= 0)
            break;
        c->len += (uint32_t)r;
        if (!conn_consume(t, c, fo_now_ns()))
            break;
    }
    conn_fail(t, c);
}

static void *sub_worker(void *arg)
{
    struct fo_sub_thread *t = arg;
    struct epoll_event evs[FO_EPOLL_BATCH];
    while (!atomic_load(&t->pool->stop)) {
        while (t->next_connect < t->n_conns && t->inflight < FO_INFLIGHT_MAX)
            conn_start(t, &t->conns[t->next_connect++]);
        int n = epoll_wait(t->ep, evs, FO_EPOLL_BATCH, FO_POLL_MS);
        for (int i = 0; i < n; i++) {
            struct fo_conn *c = evs[i].data.ptr;
            if (c->state == FO_DEAD)
                continue; /* failed earlier in this batch */
            if (c->state == FO_CONNECTING)
                conn_on_connected(t, c);
            else if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                conn_on_readable(t, c);
        }
    }
    for (unsigned i = 0; i < t->n_conns; i++)
        if (t->conns[i].fd >= 0)
            close(t->conns[i].fd);
    return NULL;
}

struct fo_subs *fo_subs_start(const struct fo_subs_config *cfg)
{
    TALLY_ASSERT(cfg->threads >= 1 && cfg->threads <= FO_THREADS_MAX);
    TALLY_ASSERT(cfg->subscribers <= FO_SUBSCRIBERS_MAX);
    TALLY_ASSERT(cfg->format_upgrade != NULL && cfg->on_message != NULL);
    struct fo_subs *s = xcalloc(1, sizeof(*s));
    s->cfg = *cfg;
    s->threads = xcalloc(cfg->threads, sizeof(*s->threads));
    for (unsigned i = 0; i < cfg->threads; i++) {
        struct fo_sub_thread *t = &s->threads[i];
        /* An even split; the 64-bit product cannot overflow. */
        unsigned first = (unsigned)((uint64_t)cfg->subscribers * i / cfg->threads);
        t->pool = s;
        t->n_conns = (unsigned)((uint64_t)cfg->subscribers * (i + 1) / cfg->threads) - first;
        t->conns = xcalloc(t->n_conns ? t->n_conns : 1, sizeof(*t->conns));
        for (unsigned k = 0; k < t->n_conns; k++) {
            t->conns[k].fd = -1;
            t->conns[k].index = first + k;
        }
        t->mask_state = 0x9e3779b9u ^ i;
        hist_init(&t->st.hist);
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        TALLY_ASSERT(t->ep >= 0);
        TALLY_ASSERT(pthread_create(&t->tid, NULL, sub_worker, t) == 0);
    }
    return s;
}

void fo_subs_count(const struct fo_subs *s, unsigned *ready, unsigned *errors, unsigned *dropped)
{
    *ready = *errors = *dropped = 0;
    for (unsigned i = 0; i < s->cfg.threads; i++) {
        *ready += atomic_load(&s->threads[i].ready);
        *errors += atomic_load(&s->threads[i].connect_errors);
        *dropped += atomic_load(&s->threads[i].dropped);
    }
}

double fo_subs_wait_ready(const struct fo_subs *s, unsigned base_s)
{
    uint64_t t0 = fo_now_ns();
    uint64_t deadline = t0 + (base_s + s->cfg.subscribers / 1000ull) * 1000000000ull;
    unsigned ready, errors, dropped;
    for (;;) {
        fo_subs_count(s, &ready, &errors, &dropped);
        if (ready + errors >= s->cfg.subscribers || fo_now_ns() >= deadline)
            break;
        fo_sleep_ms(FO_POLL_MS);
    }
    return (double)(fo_now_ns() - t0) / 1e9;
}

void fo_subs_finish(struct fo_subs *s, struct fo_sub_stats *total, unsigned *ready,
                    unsigned *errors, unsigned *dropped)
{
    atomic_store(&s->stop, true);
    memset(total, 0, sizeof(*total));
    hist_init(&total->hist);
    for (unsigned i = 0; i < s->cfg.threads; i++) {
        struct fo_sub_thread *t = &s->threads[i];
        pthread_join(t->tid, NULL);
        total->delivered += t->st.delivered;
        total->unmatched += t->st.unmatched;
        total->gaps += t->st.gaps;
        total->malformed += t->st.malformed;
        hist_merge(&total->hist, &t->st.hist);
        close(t->ep);
        free(t->conns);
    }
    fo_subs_count(s, ready, errors, dropped);
    free(s->threads);
    free(s);
}
