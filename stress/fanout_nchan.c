/*
 * fanout_nchan.c - tally-stress fanout-nchan: the same fan-out load as
 * `tally-stress fanout`, aimed at nginx + nchan, so both servers can be
 * compared at the same N, message size and per-subscriber rate.
 *
 *   tally-stress fanout-nchan --target 127.0.0.1:PORT --subscribers N --seconds S
 *                             [--rate M] [--bytes B] [--channel NAME]
 *                             [--server-pid MASTER] [--threads T] [--json FILE]
 *
 * N WebSockets connect (no subprotocol) from 127.0.1.x to /sub/CHANNEL and
 * count as connected once their 101 checks out. The server's memory is
 * sampled before and after they connect and settle; nginx is a master and
 * its workers, so every measurement sums the master and its children
 * (found by parent pid in /proc). Then one publisher POSTs a B-byte JSON
 * message M times a second to /pub/CHANNEL, each holding its sequence number
 * and the publish time (CLOCK_MONOTONIC of this process, taken just before
 * the POST). A subscriber receiving it at time t counts one delivery with
 * latency t - publish time; sequence gaps per connection are counted too.
 *
 * Every phase has a timeout; only loopback addresses are used.
 */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base.h"
#include "stress/engine.h"
#include "stress/fanout_common.h"
#include "stress/hist.h"
#include "stress/httpc.h"
#include "stress/wsc.h"

#define NF_RATE_MAX 1000
#define NF_SECONDS_MAX 600
#define NF_BYTES_MIN 64   /* room for the type, sequence and time fields */
#define NF_BYTES_MAX 4096 /* far below the receive buffer */
#define NF_CHANNEL_MAX 64
#define NF_CONNECT_BASE_S 30 /* connect phase: this plus one second per 1000 subscribers */
#define NF_SETTLE_MS 1000    /* idle time before the second memory sample */
#define NF_DRAIN_MS 1000     /* after the last publish, as `fanout` waits after the last ack */
#define NF_PROCS_MAX 64      /* master + workers + cache helpers */

static_assert(NF_BYTES_MAX < FO_RBUF_BYTES, "a message fits in a subscriber's receive buffer");

struct nf_opts {
    char host[64];
    uint16_t port;
    unsigned subscribers, seconds, rate, bytes, threads;
    char channel[NF_CHANNEL_MAX];
    long server_pid; /* the nginx master; 0: no server measurements */
    const char *json_path;
    bool uring; /* --client uring: tally-stress's io_uring engine, as `fanout` uses */
};

struct nf_shared {
    const struct nf_opts *o;
    atomic_bool measuring; /* deliveries count only while the run lasts */
};

/* Sums over the nginx master and its children. */
struct nf_server {
    uint64_t cpu_us, rss, pss;
    unsigned procs;
};

static void nf_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress fanout-nchan --target HOST:PORT --subscribers N --seconds S\n"
            "                                 [--rate M] [--bytes B] [--channel NAME]\n"
            "                                 [--server-pid MASTER] [--threads T] [--json FILE]\n"
            "                                 [--client epoll|uring]\n");
    exit(2);
}

static void nf_parse(int argc, char **argv, struct nf_opts *o)
{
    memset(o, 0, sizeof(*o));
    snprintf(o->host, sizeof(o->host), "127.0.0.1");
    snprintf(o->channel, sizeof(o->channel), "bench");
    o->port = 8080;
    o->subscribers = 1000;
    o->seconds = 10;
    o->rate = 10;   /* tallyd sends a subscriber at most one results per 100 ms */
    o->bytes = 100; /* about a 4-option results message */
    o->threads = 2;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (strcmp(f, "--target") == 0) {
            if (fo_parse_target(v, o->host, sizeof(o->host), &o->port) < 0)
                nf_usage();
        } else if (strcmp(f, "--subscribers") == 0) {
            o->subscribers = fo_parse_uint(f, v, 1, FO_SUBSCRIBERS_MAX);
        } else if (strcmp(f, "--seconds") == 0) {
            o->seconds = fo_parse_uint(f, v, 1, NF_SECONDS_MAX);
        } else if (strcmp(f, "--rate") == 0) {
            o->rate = fo_parse_uint(f, v, 1, NF_RATE_MAX);
        } else if (strcmp(f, "--bytes") == 0) {
            o->bytes = fo_parse_uint(f, v, NF_BYTES_MIN, NF_BYTES_MAX);
        } else if (strcmp(f, "--threads") == 0) {
            o->threads = fo_parse_uint(f, v, 1, FO_THREADS_MAX);
        } else if (strcmp(f, "--server-pid") == 0) {
            o->server_pid = fo_parse_uint(f, v, 1, 1u << 30);
        } else if (strcmp(f, "--json") == 0) {
            o->json_path = v;
        } else if (strcmp(f, "--client") == 0 && (strcmp(v, "epoll") == 0 || strcmp(v, "uring") == 0)) {
            o->uring = strcmp(v, "uring") == 0;
        } else if (strcmp(f, "--channel") == 0 && strlen(v) < sizeof(o->channel) &&
                   strspn(v, "abcdefghijklmnopqrstuvwxyz0123456789-_") == strlen(v) && *v) {
            snprintf(o->channel, sizeof(o->channel), "%s", v);
        } else {
            nf_usage();
        }
    }
    if (more < 0)
        nf_usage();
}

/* ---- server measurements: the master and its children ---- */

static void server_add(struct nf_server *s, long pid, uint64_t cpu_us)
{
    s->cpu_us += cpu_us;
    s->rss += fo_proc_kb(pid, "status", "VmRSS:");
    /* Pss counts a shared page once across the processes that map it
     * (nchan's shared memory zone), where summed VmRSS counts it per worker. */
    s->pss += fo_proc_kb(pid, "smaps_rollup", "Pss:");
    s->procs++;
}

/* Samples the master pid and every process whose parent it is. */
static void server_sample(long master, struct nf_server *s)
{
    memset(s, 0, sizeof(*s));
    long ppid = 0;
    uint64_t cpu = 0;
    if (master <= 0 || !fo_proc_stat(master, &ppid, &cpu))
        return;
    server_add(s, master, cpu);
    DIR *d = opendir("/proc");
    if (d == NULL)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL && s->procs < NF_PROCS_MAX) {
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        long pid = strtol(e->d_name, NULL, 10);
        if (pid != master && fo_proc_stat(pid, &ppid, &cpu) && ppid == master)
            server_add(s, pid, cpu);
    }
    closedir(d);
}

/* ---- subscribers ---- */

/* The upgrade request, without a subprotocol (nchan's only one,
 * ws+meta.nchan, would prefix metadata to every message). */
static int sub_format_upgrade(void *ctx, unsigned index, const char *key, char *out, size_t cap)
{
    const struct nf_shared *sh = ctx;
    const struct nf_opts *o = sh->o;
    (void)index; /* every subscriber reads the same channel */
    return snprintf(out, cap,
                    "GET /sub/%s HTTP/1.1\r\nHost: %s:%u\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    o->channel, o->host, o->port, key);
}

/* Parses the decimal after key in the message; false when absent. */
static bool msg_field(const uint8_t *p, size_t len, const char *key, uint64_t *out)
{
    size_t klen = strlen(key);
    const uint8_t *v = memmem(p, len, key, klen);
    if (v == NULL)
        return false;
    const uint8_t *end = p + len;
    uint64_t x = 0;
    bool any = false;
    for (v += klen; v < end && *v >= '0' && *v <= '9'; v++, any = true)
        x = x * 10 + (uint64_t)(*v - '0');
    *out = x;
    return any;
}

/* One published message: checks its sequence against the connection's and
 * records its latency while measuring. */
static void sub_on_message(void *ctx, struct fo_sub_stats *st, uint64_t *next_seq,
                           const struct wsc_frame *f, uint64_t now)
{
    const struct nf_shared *sh = ctx;
    uint64_t seq = 0, sent = 0;
    if (!msg_field(f->payload, f->payload_len, "\"seq\":", &seq) ||
        !msg_field(f->payload, f->payload_len, "\"t_ns\":", &sent)) {
        st->malformed++;
        return;
    }
    /* *next_seq is the sequence number expected next; 0 before the first. */
    if (*next_seq != 0 && seq > *next_seq)
        st->gaps += seq - *next_seq;
    *next_seq = seq + 1;
    if (!atomic_load_explicit(&sh->measuring, memory_order_relaxed))
        return;
    st->delivered++;
    hist_add(&st->hist, now > sent ? now - sent : 0);
}

static struct fo_subs *subs_start(struct nf_shared *sh)
{
    const struct fo_subs_config cfg = {
        .host = sh->o->host,
        .port = sh->o->port,
        .subscribers = sh->o->subscribers,
        .threads = sh->o->threads,
        .ready_prefix = NULL, /* nchan sends nothing until a publish: open at the 101 */
        .format_upgrade = sub_format_upgrade,
        .on_message = sub_on_message,
        .ctx = sh,
    };
    return fo_subs_start(&cfg);
}

/*
 * The io_uring subscribers (--client uring): the client engine of `tally-stress
 * fanout`, so that a server compared with tallyd is read by the very client
 * tallyd's figures come from (the client's wake-ups are charged to the
 * sender on loopback, and the two clients wake differently). The engine
 * counts a client ready at a hello, which nchan does not send: this client
 * is for servers that do, like tally-floor when asked for tally.v1.json.
 */
#define NF_HELLO "{\"type\":\"hello\""

struct nf_eng {
    struct nf_shared *sh;
    struct eng *e;
    uint64_t *next_seq; /* per client: the sequence number expected next */
    struct fo_sub_stats st[ENG_THREADS_MAX];
};

static int eng_sub_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct nf_eng *ne = ctx;
    (void)index;
    return snprintf(out, cap, "/sub/%s", ne->sh->o->channel);
}

static void eng_sub_message(void *ctx, struct eng_thread *t, uint32_t index,
                            const struct wsc_frame *f, uint64_t now)
{
    struct nf_eng *ne = ctx;
    if (f->payload_len >= sizeof(NF_HELLO) - 1 && memcmp(f->payload, NF_HELLO, sizeof(NF_HELLO) - 1) == 0)
        return;
    sub_on_message(ne->sh, &ne->st[eng_thread_id(t)], &ne->next_seq[index], f, now);
}

static bool eng_subs_start(struct nf_eng *ne, struct nf_shared *sh)
{
    const struct eng_config cfg = {
        .host = sh->o->host,
        .port = sh->o->port,
        .max_clients = sh->o->subscribers,
        .threads = sh->o->threads,
        .sources = 8,
        .proto = "tally.v1.json",
        .path = eng_sub_path,
        .on_message = eng_sub_message,
        .ctx = ne,
    };
    ne->sh = sh;
    ne->next_seq = xcalloc(sh->o->subscribers, sizeof(*ne->next_seq));
    for (unsigned i = 0; i < ENG_THREADS_MAX; i++)
        hist_init(&ne->st[i].hist);
    ne->e = eng_start(&cfg);
    if (ne->e == NULL)
        return false;
    eng_open(ne->e, sh->o->subscribers);
    return true;
}

static void eng_subs_count(const struct nf_eng *ne, unsigned *ready, unsigned *failed, unsigned *dropped)
{
    uint64_t r, f, d;
    eng_count(ne->e, &r, &f, &d);
    *ready = (unsigned)r;
    *failed = (unsigned)f;
    *dropped = (unsigned)d;
}

static void eng_subs_finish(struct nf_eng *ne, struct fo_sub_stats *total, unsigned *ready,
                            unsigned *failed, unsigned *dropped)
{
    static struct eng_stats es;
    eng_subs_count(ne, ready, failed, dropped);
    eng_stop(ne->e, &es);
    memset(total, 0, sizeof(*total));
    hist_init(&total->hist);
    for (unsigned i = 0; i < ENG_THREADS_MAX; i++) {
        total->delivered += ne->st[i].delivered;
        total->gaps += ne->st[i].gaps;
        total->malformed += ne->st[i].malformed;
        hist_merge(&total->hist, &ne->st[i].hist);
    }
    free(ne->next_seq);
}

/* ---- publisher ---- */

struct nf_result {
    unsigned opened, connect_errors, dropped, channel_subs;
    double connect_s, run_s;
    struct nf_server before, idle, run0, run1;
    uint64_t published, publish_errors, publish_other;
    struct fo_sub_stats subs; /* summed over the subscriber threads */
};

/* Writes message seq, stamped now, padded to exactly o->bytes; returns its length. */
static size_t msg_build(const struct nf_opts *o, uint64_t seq, char *out, size_t cap)
{
    TALLY_ASSERT(cap > o->bytes);
    int n = snprintf(out, cap,
                     "{\"type\":\"results\",\"seq\":%" PRIu64 ",\"t_ns\":%" PRIu64 ",\"pad\":\"",
                     seq, fo_now_ns());
    TALLY_ASSERT(n > 0 && (size_t)n + 2 <= o->bytes); /* NF_BYTES_MIN leaves room */
    memset(out + n, 'x', o->bytes - 2 - (size_t)n);
    memcpy(out + o->bytes - 2, "\"}", 3);
    return o->bytes;
}

/* Publishes rate*seconds messages, message k at t0 + k/rate; 201 and 202 are accepted. */
static void publish_all(const struct nf_opts *o, struct nf_result *res)
{
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96], body[NF_BYTES_MAX + 1];
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/pub/%s", o->channel);
    uint64_t n_msgs = (uint64_t)o->rate * o->seconds;
    uint64_t t0 = fo_now_ns();
    for (uint64_t k = 0; k < n_msgs; k++) {
        uint64_t due = t0 + k * 1000000000ull / o->rate;
        fo_sleep_until_ns(due);
        msg_build(o, k + 1, body, sizeof(body));
        struct httpc_resp r;
        if (httpc_request(h, "POST", path, NULL, NULL, body, &r) < 0)
            res->publish_errors++;
        else if (r.status == 201 || r.status == 202)
            res->published++;
        else
            res->publish_other++;
    }
    httpc_close(h);
    free(h);
}

/* The channel's subscriber count as nchan reports it, 0 when unknown. */
static unsigned channel_subscribers(const struct nf_opts *o)
{
    struct httpc *h = xmalloc(sizeof(*h));
    char path[96];
    uint64_t subs = 0;
    httpc_init(h, o->host, o->port, NULL);
    snprintf(path, sizeof(path), "/pub/%s", o->channel);
    struct httpc_resp r;
    if (httpc_request(h, "GET", path, NULL, NULL, NULL, &r) == 0 && r.status == 200)
        (void)msg_field((const uint8_t *)r.body, r.body_len, "subscribers: ", &subs);
    httpc_close(h);
    free(h);
    return (unsigned)subs;
}

/* ---- the run and the report ---- */

static double per_conn(uint64_t before, uint64_t after, unsigned n)
{
    return after > before && n ? (double)(after - before) / n : 0;
}

static void report_json(const struct nf_opts *o, const struct nf_result *r, double rate,
                        uint64_t cpu, double cpu_per_msg)
{
    const struct fo_latency_ms lat = fo_latency_ms(&r->subs.hist);
    FILE *f = fopen(o->json_path, "w");
    if (f == NULL) {
        perror(o->json_path);
        return;
    }
    fprintf(f,
            "{\"scenario\":\"fanout-nchan\",\"subscribers\":%u,\"seconds\":%u,\"rate\":%u,"
            "\"bytes\":%u,\"run_s\":%.3f,\"published\":%" PRIu64 ",\"publish_errors\":%" PRIu64
            ",\"publish_other\":%" PRIu64 ",\"delivered\":%" PRIu64 ",\"delivered_per_s\":%.1f,"
            "\"gaps\":%" PRIu64 ",\"malformed\":%" PRIu64 ",\"latency_ms\":{\"n\":%" PRIu64
            ",\"p50\":%.3f,\"p95\":%.3f,\"p99\":%.3f,\"max\":%.3f},\"server_cpu_ms\":%.1f,"
            "\"cpu_us_per_msg\":%.3f,\"bytes_per_idle_conn\":%.0f,"
            "\"bytes_per_idle_conn_rss_sum\":%.0f,\"pss_before\":%" PRIu64 ",\"pss_idle\":%" PRIu64
            ",\"rss_before\":%" PRIu64 ",\"rss_idle\":%" PRIu64 ",\"server_procs\":%u,"
            "\"connect_errors\":%u,\"missing\":%u,\"dropped\":%u,\"connect_s\":%.3f,"
            "\"channel_subscribers\":%u}\n",
            o->subscribers, o->seconds, o->rate, o->bytes, r->run_s, r->published,
            r->publish_errors, r->publish_other, r->subs.delivered, rate, r->subs.gaps,
            r->subs.malformed, r->subs.hist.n, lat.p50, lat.p95, lat.p99, lat.max,
            (double)cpu / 1e3, cpu_per_msg, per_conn(r->before.pss, r->idle.pss, r->opened),
            per_conn(r->before.rss, r->idle.rss, r->opened), r->before.pss, r->idle.pss,
            r->before.rss, r->idle.rss, r->idle.procs, r->connect_errors,
            o->subscribers - r->opened, r->dropped, r->connect_s, r->channel_subs);
    fclose(f);
}

static void report(const struct nf_opts *o, const struct nf_result *r)
{
    const struct fo_latency_ms lat = fo_latency_ms(&r->subs.hist);
    double rate = r->run_s > 0 ? (double)r->subs.delivered / r->run_s : 0;
    uint64_t cpu = r->run1.cpu_us > r->run0.cpu_us ? r->run1.cpu_us - r->run0.cpu_us : 0;
    double cpu_per_msg = r->subs.delivered ? (double)cpu / (double)r->subs.delivered : 0;
    printf("fanout-nchan: %u subscribers (%u open in %.1f s; nchan channel info: %u), %u connect "
           "errors, %u dropped\n",
           o->subscribers, r->opened, r->connect_s, r->channel_subs, r->connect_errors, r->dropped);
    if (o->server_pid)
        printf("server (%u processes): PSS %.1f -> %.1f MiB (%.0f bytes per idle connection), "
               "summed VmRSS %.1f -> %.1f MiB (%.0f bytes)\n",
               r->idle.procs, (double)r->before.pss / 1048576.0, (double)r->idle.pss / 1048576.0,
               per_conn(r->before.pss, r->idle.pss, r->opened), (double)r->before.rss / 1048576.0,
               (double)r->idle.rss / 1048576.0, per_conn(r->before.rss, r->idle.rss, r->opened));
    printf("published: %u/s of %u bytes for %u s: %" PRIu64 " accepted, %" PRIu64
           " transport errors, %" PRIu64 " other answers\n",
           o->rate, o->bytes, o->seconds, r->published, r->publish_errors, r->publish_other);
    printf("delivered: %" PRIu64 " messages in %.1f s (%.0f messages/s), %" PRIu64
           " sequence gaps, %" PRIu64 " malformed\n",
           r->subs.delivered, r->run_s, rate, r->subs.gaps, r->subs.malformed);
    printf("delivery latency ms (publish -> receive): p50 %.2f  p95 %.2f  p99 %.2f  max %.2f\n",
           lat.p50, lat.p95, lat.p99, lat.max);
    if (o->server_pid)
        printf("server CPU over the run: %.1f ms, %.2f us per delivered message\n",
               (double)cpu / 1e3, cpu_per_msg);
    if (o->json_path)
        report_json(o, r, rate, cpu, cpu_per_msg);
}

/* The measured run: publish for S seconds, then drain, sampling the server around it. */
static void nf_run(struct nf_shared *sh, struct nf_result *res)
{
    const struct nf_opts *o = sh->o;
    server_sample(o->server_pid, &res->run0);
    uint64_t t0 = fo_now_ns();
    atomic_store(&sh->measuring, true);
    publish_all(o, res);
    fo_sleep_ms(NF_DRAIN_MS);
    atomic_store(&sh->measuring, false);
    res->run_s = (double)(fo_now_ns() - t0) / 1e9;
    server_sample(o->server_pid, &res->run1);
}

/** Runs `tally-stress fanout-nchan`; returns the process exit code. */
int fanout_nchan_main(int argc, char **argv);

int fanout_nchan_main(int argc, char **argv)
{
    static struct nf_opts o;
    static struct nf_shared sh;
    static struct nf_result res;
    nf_parse(argc, argv, &o);
    static struct nf_eng ne;
    struct fo_subs *subs = NULL;
    sh.o = &o;
    /* The engine keeps its sockets as io_uring direct descriptors. */
    if (!o.uring && fo_fd_limit_check(o.subscribers) < 0)
        return 1;
    server_sample(o.server_pid, &res.before);
    if (o.uring) {
        if (!eng_subs_start(&ne, &sh))
            return 1;
        res.connect_s = eng_wait_ready(ne.e, NF_CONNECT_BASE_S + o.subscribers / 1000);
    } else {
        subs = subs_start(&sh);
        res.connect_s = fo_subs_wait_ready(subs, NF_CONNECT_BASE_S);
    }
    fo_sleep_ms(NF_SETTLE_MS);
    server_sample(o.server_pid, &res.idle);
    res.channel_subs = channel_subscribers(&o);
    if (o.uring)
        eng_subs_count(&ne, &res.opened, &res.connect_errors, &res.dropped);
    else
        fo_subs_count(subs, &res.opened, &res.connect_errors, &res.dropped);
    printf("connected: %u of %u subscribers open in %.1f s\n", res.opened, o.subscribers,
           res.connect_s);
    fflush(stdout);
    nf_run(&sh, &res);
    if (o.uring)
        eng_subs_finish(&ne, &res.subs, &res.opened, &res.connect_errors, &res.dropped);
    else
        fo_subs_finish(subs, &res.subs, &res.opened, &res.connect_errors, &res.dropped);
    report(&o, &res);
    bool clean = res.opened == o.subscribers && res.dropped == 0 && res.publish_errors == 0 &&
                 res.publish_other == 0 && res.subs.malformed == 0;
    return clean ? 0 : 1;
}
