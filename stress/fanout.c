/*
 * fanout.c - tally-stress fanout: how results fan out to many idle
 * WebSocket subscribers while votes arrive.
 *
 *   tally-stress fanout --target 127.0.0.1:PORT --subscribers N --seconds S
 *                       --rate R [--server-pid PID] [--threads T] [--json FILE]
 *
 * Setup joins N subscribers and V = R*S voters to one session with one open
 * 4-option poll, over HTTP from 127.0.0.(2+k), at most FANOUT_JOINS_PER_ADDR
 * joins per address so the per-address join limit (burst 1000) never bites.
 * Then N WebSockets connect from 127.0.1.x, spread over T epoll threads, and
 * wait for hello; the server's RSS before and after gives bytes per idle
 * connection. During the run voters post one vote each at R votes/s; the
 * k-th acknowledged vote's time is ack_ns[k]. A results message with
 * version v received at time t counts as delivered, with latency
 * t - ack_ns[v] when that ack is already recorded (votes are acknowledged in
 * about commit order, and version counts committed votes).
 *
 * Every phase has a timeout; only loopback addresses are used.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/hist.h"
#include "stress/httpc.h"
#include "stress/wsc.h"

#define FANOUT_RATE_MAX 5000
#define FANOUT_SECONDS_MAX 600
#define FANOUT_JOIN_THREADS 8
#define FANOUT_JOINS_PER_ADDR 800 /* below the server's join burst of 1000 */
#define FANOUT_JOIN_ADDRS_MAX 250 /* 127.0.0.2 .. 127.0.0.251 */
#define FANOUT_VOTERS 2
#define FANOUT_TOKEN_MAX 96
#define FANOUT_HELLO_BASE_S 30 /* hello phase: this plus one second per 1000 subscribers */
#define FANOUT_SETTLE_MS 1000  /* idle time before the second RSS sample */
#define FANOUT_VOTE_GRACE_S 10 /* how long the voters may overrun S */
#define FANOUT_DRAIN_MS 1000   /* after the last ack: coalesced results still come */

struct fanout_opts {
    char host[64];
    uint16_t port;
    unsigned subscribers;
    unsigned seconds;
    unsigned rate;
    unsigned threads;
    long server_pid; /* 0: no server measurements */
    const char *json_path;
};

/* What every thread reads; counters written by many are atomic. */
struct fanout_shared {
    const struct fanout_opts *o;
    char code[8];
    int64_t poll_id;
    char (*tokens)[FANOUT_TOKEN_MAX]; /* subscribers first, then voters */
    unsigned n_tokens;
    unsigned n_voters;
    _Atomic uint64_t *ack_ns; /* [1..n_voters]: time of the k-th acknowledged vote */
    atomic_uint acked;
    atomic_uint join_next; /* next join chunk to take */
    atomic_bool join_failed;
    atomic_bool measuring; /* results count only while the run lasts */
    uint64_t vote_t0_ns;
};

struct voter {
    pthread_t tid;
    unsigned index;
    struct fanout_shared *sh;
    uint64_t errors, other;
};

static void fanout_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress fanout --target HOST:PORT --subscribers N --seconds S --rate R\n"
            "                           [--server-pid PID] [--threads T] [--json FILE]\n");
    exit(2);
}

static void fanout_parse(int argc, char **argv, struct fanout_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    o->port = 8080;
    o->subscribers = 1000;
    o->seconds = 10;
    o->rate = 200;
    o->threads = 2;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (strcmp(f, "--target") == 0) {
            if (fo_parse_target(v, o->host, sizeof(o->host), &o->port) < 0)
                fanout_usage();
        } else if (strcmp(f, "--subscribers") == 0) {
            o->subscribers = fo_parse_uint(f, v, 1, FO_SUBSCRIBERS_MAX);
        } else if (strcmp(f, "--seconds") == 0) {
            o->seconds = fo_parse_uint(f, v, 1, FANOUT_SECONDS_MAX);
        } else if (strcmp(f, "--rate") == 0) {
            o->rate = fo_parse_uint(f, v, 1, FANOUT_RATE_MAX);
        } else if (strcmp(f, "--threads") == 0) {
            o->threads = fo_parse_uint(f, v, 1, FO_THREADS_MAX);
        } else if (strcmp(f, "--server-pid") == 0) {
            o->server_pid = fo_parse_uint(f, v, 1, 1u << 30);
        } else if (strcmp(f, "--json") == 0) {
            o->json_path = v;
        } else {
            fanout_usage();
        }
    }
    if (more < 0)
        fanout_usage();
    uint64_t people = (uint64_t)o->subscribers + (uint64_t)o->rate * o->seconds;
    if (people > (uint64_t)FANOUT_JOINS_PER_ADDR * FANOUT_JOIN_ADDRS_MAX) {
        fprintf(stderr, "tally-stress: subscribers + rate*seconds must be at most %u\n",
                (unsigned)(FANOUT_JOINS_PER_ADDR * FANOUT_JOIN_ADDRS_MAX));
        exit(2);
    }
}

/* ---- server measurements ---- */

/* The server's resident set in bytes, 0 when unknown. */
static uint64_t server_rss_bytes(long pid)
{
    return fo_proc_kb(pid, "status", "VmRSS:");
}

/* The server's user + system CPU time in microseconds, 0 when unknown. */
static uint64_t server_cpu_us(long pid)
{
    long ppid = 0;
    uint64_t cpu_us = 0;
    return fo_proc_stat(pid, &ppid, &cpu_us) ? cpu_us : 0;
}

/* ---- setup over HTTP ---- */

static json_t *fanout_call(struct httpc *h, const char *method, const char *path, const char *token,
                           const char *body, int *status)
{
    struct httpc_resp r;
    *status = 0;
    if (httpc_request(h, method, path, token, NULL, body, &r) < 0)
        return NULL;
    *status = r.status;
    return json_loadb(r.body, r.body_len, 0, NULL);
}

/* Creates the session and one open 4-option poll. Returns 0 or -EPROTO. */
static int setup_poll(struct fanout_shared *sh)
{
    const struct fanout_opts *o = sh->o;
    struct httpc *h = xmalloc(sizeof(*h));
    char path[128], ptok[FANOUT_TOKEN_MAX] = "";
    int st = 0, rc = -EPROTO;
    httpc_init(h, o->host, o->port, NULL);
    json_t *j =
        fanout_call(h, "POST", "/api/v1/sessions", NULL, "{\"title\":\"fan-out benchmark\"}", &st);
    const char *tok = json_string_value(json_object_get(j, "presenter_token"));
    const char *code = json_string_value(json_object_get(json_object_get(j, "session"), "code"));
    if (st != 201 || tok == NULL || code == NULL || strlen(tok) >= sizeof(ptok)) {
        fprintf(stderr, "tally-stress: create session failed (status %d)\n", st);
        goto out_free_json;
    }
    snprintf(ptok, sizeof(ptok), "%s", tok);
    snprintf(sh->code, sizeof(sh->code), "%s", code);
    json_decref(j);
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", sh->code);
    j = fanout_call(
        h, "POST", path, ptok,
        "{\"question\":\"Which?\",\"kind\":\"single\",\"options\":[\"A\",\"B\",\"C\",\"D\"]}", &st);
    sh->poll_id = json_integer_value(json_object_get(json_object_get(j, "poll"), "id"));
    if (st != 201 || sh->poll_id <= 0) {
        fprintf(stderr, "tally-stress: create poll failed (status %d)\n", st);
        goto out_free_json;
    }
    json_decref(j);
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/open", sh->poll_id);
    j = fanout_call(h, "POST", path, ptok, NULL, &st);
    if (st != 200) {
        fprintf(stderr, "tally-stress: open poll failed (status %d)\n", st);
        goto out_free_json;
    }
    rc = 0;
out_free_json:
    json_decref(j);
    httpc_close(h);
    free(h);
    return rc;
}

/* Joins participants [first, end) from one source address. Returns 0 or -EPROTO. */
static int join_chunk(struct fanout_shared *sh, struct httpc *h, unsigned first, unsigned end)
{
    char path[128];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/participants", sh->code);
    for (unsigned i = first; i < end && !atomic_load(&sh->join_failed); i++) {
        int st = 0;
        json_t *j = fanout_call(h, "POST", path, NULL, "{}", &st);
        const char *tok = json_string_value(json_object_get(j, "participant_token"));
        if (st != 201 || tok == NULL || strlen(tok) >= FANOUT_TOKEN_MAX) {
            fprintf(stderr, "tally-stress: join failed (status %d)\n", st);
            json_decref(j);
            return -EPROTO;
        }
        snprintf(sh->tokens[i], FANOUT_TOKEN_MAX, "%s", tok);
        json_decref(j);
    }
    return 0;
}

static void *join_worker(void *arg)
{
    struct fanout_shared *sh = arg;
    struct httpc *h = xmalloc(sizeof(*h));
    char src[32];
    for (;;) {
        unsigned k = atomic_fetch_add(&sh->join_next, 1);
        unsigned first = k * FANOUT_JOINS_PER_ADDR;
        if (first >= sh->n_tokens || atomic_load(&sh->join_failed))
            break;
        unsigned end = first + FANOUT_JOINS_PER_ADDR;
        end = end < sh->n_tokens ? end : sh->n_tokens;
        snprintf(src, sizeof(src), "127.0.0.%u", 2 + k);
        httpc_init(h, sh->o->host, sh->o->port, src);
        int rc = join_chunk(sh, h, first, end);
        httpc_close(h);
        if (rc < 0)
            atomic_store(&sh->join_failed, true);
    }
    free(h);
    return NULL;
}

static int join_all(struct fanout_shared *sh)
{
    pthread_t tids[FANOUT_JOIN_THREADS];
    static_assert(FANOUT_JOIN_ADDRS_MAX + 2 <= 255, "join addresses fit in 127.0.0.x");
    for (unsigned i = 0; i < FANOUT_JOIN_THREADS; i++)
        TALLY_ASSERT(pthread_create(&tids[i], NULL, join_worker, sh) == 0);
    for (unsigned i = 0; i < FANOUT_JOIN_THREADS; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&sh->join_failed) ? -EPROTO : 0;
}

/* ---- subscribers ---- */

/* The upgrade request of subscriber index: its participant token rides in the query. */
static int sub_format_upgrade(void *ctx, unsigned index, const char *key, char *out, size_t cap)
{
    const struct fanout_shared *sh = ctx;
    char path[256];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/ws?token=%s", sh->code, sh->tokens[index]);
    return wsc_request_format(out, cap, sh->o->host, sh->o->port, path, key, "tally.v1.json");
}

/* Parses the decimal after "version": in a results message; 0 when absent. */
static uint64_t results_version(const uint8_t *p, size_t len)
{
    static const char key[] = "\"version\":";
    const uint8_t *v = memmem(p, len, key, sizeof(key) - 1);
    if (v == NULL)
        return 0;
    const uint8_t *end = p + len;
    uint64_t x = 0;
    for (v += sizeof(key) - 1; v < end && *v >= '0' && *v <= '9'; v++)
        x = x * 10 + (uint64_t)(*v - '0');
    return x;
}

/* A message after hello: a results message counts as a delivery while measuring. */
static void sub_on_message(void *ctx, struct fo_sub_stats *st, uint64_t *conn_seq,
                           const struct wsc_frame *f, uint64_t now)
{
    static const char results[] = "{\"type\":\"results\"";
    const struct fanout_shared *sh = ctx;
    /* No per-connection state: the version in the message says which vote it reflects. */
    (void)conn_seq;
    if (f->opcode != WSC_OP_TEXT || /* a json subscriber gets no binary frames */
        !atomic_load_explicit(&sh->measuring, memory_order_relaxed) ||
        f->payload_len < sizeof(results) - 1 ||
        memcmp(f->payload, results, sizeof(results) - 1) != 0)
        return;
    st->delivered++;
    uint64_t v = results_version(f->payload, f->payload_len);
    uint64_t ack = 0;
    if (v >= 1 && v <= sh->n_voters)
        ack = atomic_load_explicit(&sh->ack_ns[v], memory_order_acquire);
    if (ack == 0) {
        st->unmatched++;
        return;
    }
    /* The ack may be stamped after this batch was read: that is no delay at all. */
    hist_add(&st->hist, now > ack ? now - ack : 0);
}

static struct fo_subs *subs_start(struct fanout_shared *sh)
{
    const struct fo_subs_config cfg = {
        .host = sh->o->host,
        .port = sh->o->port,
        .subscribers = sh->o->subscribers,
        .threads = sh->o->threads,
        .ready_prefix = "{\"type\":\"hello\"", /* tallyd's first message on a session socket */
        .format_upgrade = sub_format_upgrade,
        .on_message = sub_on_message,
        .ctx = sh,
    };
    return fo_subs_start(&cfg);
}

/* ---- voters ---- */

static void vote_one(struct voter *v, struct httpc *h, const char *path, unsigned k)
{
    struct fanout_shared *sh = v->sh;
    char key[48], body[32];
    snprintf(key, sizeof(key), "fanout-%u", k);
    snprintf(body, sizeof(body), "{\"choice\":[%u]}", k % 4);
    struct httpc_resp r;
    int rc = httpc_request(h, "POST", path, sh->tokens[sh->o->subscribers + k], key, body, &r);
    if (rc < 0) {
        v->errors++;
    } else if (r.status == 201) {
        uint64_t now = fo_now_ns();
        unsigned idx = atomic_fetch_add(&sh->acked, 1) + 1;
        TALLY_ASSERT(idx <= sh->n_voters); /* each voter votes once */
        atomic_store_explicit(&sh->ack_ns[idx], now, memory_order_release);
    } else {
        v->other++;
    }
}

/* Votes k = index, index + FANOUT_VOTERS, ... each at its slot of the R/s schedule. */
static void *vote_worker(void *arg)
{
    struct voter *v = arg;
    struct fanout_shared *sh = v->sh;
    const struct fanout_opts *o = sh->o;
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96];
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/votes", sh->poll_id);
    uint64_t deadline = sh->vote_t0_ns + (o->seconds + FANOUT_VOTE_GRACE_S) * 1000000000ull;
    for (unsigned k = v->index; k < sh->n_voters; k += FANOUT_VOTERS) {
        uint64_t due = sh->vote_t0_ns + (uint64_t)k * 1000000000ull / o->rate;
        uint64_t now = fo_now_ns();
        if (now >= deadline)
            break;
        if (due > now)
            fo_sleep_until_ns(due);
        vote_one(v, h, path, k);
    }
    httpc_close(h);
    free(h);
    return NULL;
}

/* ---- the run and the report ---- */

struct fanout_result {
    unsigned hellos, connect_errors, dropped;
    double hello_s, run_s;
    uint64_t rss_before, rss_idle;
    uint64_t cpu_us;
    uint64_t acked, vote_errors, vote_other;
    struct fo_sub_stats subs; /* summed over the subscriber threads */
};

static void run_votes(struct fanout_shared *sh, struct fanout_result *res)
{
    struct voter vs[FANOUT_VOTERS];
    uint64_t cpu0 = server_cpu_us(sh->o->server_pid);
    sh->vote_t0_ns = fo_now_ns();
    atomic_store(&sh->measuring, true);
    for (unsigned i = 0; i < FANOUT_VOTERS; i++) {
        vs[i] = (struct voter){.index = i, .sh = sh};
        TALLY_ASSERT(pthread_create(&vs[i].tid, NULL, vote_worker, &vs[i]) == 0);
    }
    for (unsigned i = 0; i < FANOUT_VOTERS; i++) {
        pthread_join(vs[i].tid, NULL);
        res->vote_errors += vs[i].errors;
        res->vote_other += vs[i].other;
    }
    fo_sleep_ms(FANOUT_DRAIN_MS);
    atomic_store(&sh->measuring, false);
    res->run_s = (double)(fo_now_ns() - sh->vote_t0_ns) / 1e9;
    uint64_t cpu1 = server_cpu_us(sh->o->server_pid);
    res->cpu_us = cpu1 > cpu0 ? cpu1 - cpu0 : 0;
    res->acked = atomic_load(&sh->acked);
}

static void report_json(const struct fanout_opts *o, const struct fanout_result *r, double bpc,
                        double rate, double cpu_per_msg)
{
    const struct fo_latency_ms lat = fo_latency_ms(&r->subs.hist);
    FILE *f = fopen(o->json_path, "w");
    if (f == NULL) {
        perror(o->json_path);
        return;
    }
    fprintf(f,
            "{\"scenario\":\"fanout\",\"subscribers\":%u,\"seconds\":%u,\"rate\":%u,"
            "\"run_s\":%.3f,\"votes_acked\":%" PRIu64 ",\"vote_errors\":%" PRIu64
            ",\"vote_other\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f,"
            "\"unmatched\":%" PRIu64 ",\"latency_ms\":{\"n\":%" PRIu64 ",\"p50\":%.3f,"
            "\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"server_cpu_ms\":%.1f,"
            "\"cpu_us_per_msg\":%.3f,\"bytes_per_idle_conn\":%.0f,\"rss_before\":%" PRIu64
            ",\"rss_idle\":%" PRIu64 ",\"connect_errors\":%u,\"missing_hellos\":%u,"
            "\"dropped\":%u,\"hello_s\":%.3f}\n",
            o->subscribers, o->seconds, o->rate, r->run_s, r->acked, r->vote_errors, r->vote_other,
            r->subs.delivered, rate, r->subs.unmatched, r->subs.hist.n, lat.p50, lat.p95, lat.p99,
            lat.max, (double)r->cpu_us / 1e3, cpu_per_msg, bpc, r->rss_before, r->rss_idle,
            r->connect_errors, o->subscribers - r->hellos, r->dropped, r->hello_s);
    fclose(f);
}

static void report(const struct fanout_opts *o, const struct fanout_result *r)
{
    const struct fo_latency_ms lat = fo_latency_ms(&r->subs.hist);
    double rate = r->run_s > 0 ? (double)r->subs.delivered / r->run_s : 0;
    double bpc = r->rss_idle > r->rss_before && r->hellos
                     ? (double)(r->rss_idle - r->rss_before) / r->hellos
                     : 0;
    double cpu_per_msg = r->subs.delivered ? (double)r->cpu_us / (double)r->subs.delivered : 0;
    printf("fanout: %u subscribers (%u hello in %.1f s), %u connect errors, %u missing hellos, "
           "%u dropped\n",
           o->subscribers, r->hellos, r->hello_s, r->connect_errors, o->subscribers - r->hellos,
           r->dropped);
    if (o->server_pid)
        printf("server RSS: %.1f MiB before, %.1f MiB idle-connected: %.0f bytes per idle "
               "connection\n",
               (double)r->rss_before / 1048576.0, (double)r->rss_idle / 1048576.0, bpc);
    printf("votes: %u/s for %u s: %" PRIu64 " acknowledged, %" PRIu64 " transport errors, %" PRIu64
           " other answers\n",
           o->rate, o->seconds, r->acked, r->vote_errors, r->vote_other);
    printf("delivered: %" PRIu64 " results messages in %.1f s (%.0f messages/s); %" PRIu64
           " with latency, %" PRIu64 " without a recorded ack\n",
           r->subs.delivered, r->run_s, rate, r->subs.hist.n, r->subs.unmatched);
    printf("delivery latency ms (ack -> results): p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
           lat.p50, lat.p95, lat.p99, lat.max);
    if (o->server_pid)
        printf("server CPU over the run: %.1f ms, %.2f us per delivered message\n",
               (double)r->cpu_us / 1e3, cpu_per_msg);
    if (o->json_path)
        report_json(o, r, bpc, rate, cpu_per_msg);
}

static int fanout_setup(struct fanout_shared *sh)
{
    const struct fanout_opts *o = sh->o;
    sh->n_voters = o->rate * o->seconds;
    sh->n_tokens = o->subscribers + sh->n_voters;
    sh->tokens = xcalloc(sh->n_tokens, sizeof(*sh->tokens));
    sh->ack_ns = xcalloc(sh->n_voters + 1, sizeof(*sh->ack_ns));
    uint64_t t0 = fo_now_ns();
    if (setup_poll(sh) < 0 || join_all(sh) < 0)
        return -EPROTO;
    printf("setup: session %s, poll %" PRId64 ", %u participants joined in %.1f s\n", sh->code,
           sh->poll_id, sh->n_tokens, (double)(fo_now_ns() - t0) / 1e9);
    return 0;
}

/** Runs `tally-stress fanout`; returns the process exit code. */
int fanout_main(int argc, char **argv);

int fanout_main(int argc, char **argv)
{
    static struct fanout_opts o;
    static struct fanout_shared sh;
    static struct fanout_result res;
    fanout_parse(argc, argv, &o);
    sh.o = &o;
    if (fo_fd_limit_check(o.subscribers) < 0 || fanout_setup(&sh) < 0)
        return 1;
    res.rss_before = server_rss_bytes(o.server_pid);
    struct fo_subs *subs = subs_start(&sh);
    res.hello_s = fo_subs_wait_ready(subs, FANOUT_HELLO_BASE_S);
    fo_sleep_ms(FANOUT_SETTLE_MS);
    res.rss_idle = server_rss_bytes(o.server_pid);
    fo_subs_count(subs, &res.hellos, &res.connect_errors, &res.dropped);
    printf("connected: %u of %u subscribers got hello in %.1f s\n", res.hellos, o.subscribers,
           res.hello_s);
    fflush(stdout);
    run_votes(&sh, &res);
    fo_subs_finish(subs, &res.subs, &res.hellos, &res.connect_errors, &res.dropped);
    report(&o, &res);
    free(sh.tokens);
    free(sh.ack_ns);
    bool clean = res.hellos == o.subscribers && res.dropped == 0 && res.vote_errors == 0 &&
                 res.vote_other == 0;
    return clean ? 0 : 1;
}
