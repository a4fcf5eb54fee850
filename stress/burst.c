/*
 * burst.c - tally-stress burst: a stadium's vote burst over WebSocket.
 *
 *   tally-stress burst [--target 127.0.0.1:8080] [--participants 1000] [--window 2]
 *                      [--server-pid PID] [--threads 2] [--sources 8]
 *                      [--json FILE] [--deadline S] [--second-port PORT]
 *
 * N participants join (HTTP, from 127.0.0.2 and up) and subscribe
 * (WebSocket, io_uring engine); the presenter opens a 4-option poll; each
 * participant votes over its WebSocket once it has seen `poll.opened`, at
 * its slot of an even spread over the window (participant i at
 * open + window x i / N; --window 0: all at once). Measured at the client:
 * `poll.opened` delivery (from the open request to each participant), vote
 * ack latency (vote sent to its `ack`), acks within the window and in all,
 * errors by code, missing or repeated `poll.opened`, gaps and repeats in
 * `seq`; with --server-pid, the server's CPU and RSS over the burst.
 * With --second-port, the odd participants subscribe (and so vote) on
 * another instance sharing the database at that port of the same host;
 * joins and the open go to --target.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/engine.h"
#include "stress/fanout_common.h"
#include "stress/scen.h"
#include "stress/track.h"

#define BURST_WINDOW_MAX 600
#define BURST_SETTLE_S 30 /* after the window: acks still in flight may come */
#define BURST_READY_BASE_S 30
#define BURST_VOTE_MAX 160

/* A participant's vote: waiting for both poll.opened and its slot, then sent, then answered. */
enum burst_state { B_WAITING, B_SEEN, B_DUE, B_SENT, B_ACKED };
enum burst_err { BE_POLL_NOT_OPEN, BE_ALREADY_VOTED, BE_RATE, BE_STORAGE, BE_OTHER, BE_KINDS };
static const char *const burst_err_names[BE_KINDS] = {
    "poll_not_open", "already_voted", "rate_limited", "storage_unavailable", "other",
};

/* One engine thread's counters: written by that thread only, read after the engine stops. */
struct burst_thread {
    struct hist opened, ack;
    uint64_t votes_sent, acked, acked_in_window, duplicates, results, opened_seen;
    uint64_t errors[BE_KINDS];
    uint64_t gaps, repeats;
    uint64_t last_ack_ns;
    uint32_t cursor; /* next index of this thread in the vote schedule */
};

struct burst {
    struct scen_opts c;
    uint32_t n;
    unsigned window_s;
    uint16_t port2; /* --second-port: another instance on the same database, 0: none */
    struct scen_session s;
    struct scen_joins joins;
    int64_t poll_id;
    _Atomic uint64_t open_ns; /* when the open request went out; 0 before */
    uint8_t *state;           /* per participant */
    uint64_t *sent_ns;        /* per participant: when its vote went out */
    struct track_seq *seq;    /* per participant */
    struct eng *eng;
    struct burst_thread *bt;
};

static void burst_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress burst [--target HOST:PORT] [--participants N] [--window S]\n"
            "                          [--second-port PORT] (odd participants subscribe there)\n"
            "                          [--server-pid PID] [--threads T] [--sources K]\n"
            "                          [--json FILE] [--deadline S]\n");
    exit(2);
}

static void burst_parse(int argc, char **argv, struct burst *b)
{
    scen_opts_init(&b->c);
    b->n = 1000;
    b->window_s = 2;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (scen_opts_take(&b->c, f, v))
            continue;
        if (strcmp(f, "--participants") == 0)
            b->n = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
        else if (strcmp(f, "--window") == 0)
            b->window_s = fo_parse_uint(f, v, 0, BURST_WINDOW_MAX);
        else if (strcmp(f, "--second-port") == 0)
            b->port2 = (uint16_t)fo_parse_uint(f, v, 1, 65535);
        else
            burst_usage();
    }
    if (more < 0)
        burst_usage();
    if (strcmp(b->c.proto, ENG_PROTO_SSE) == 0) {
        fprintf(stderr, "tally-stress: burst votes over the WebSocket: --proto sse cannot send\n");
        exit(2);
    }
}

static int burst_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct burst *b = ctx;
    return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s", b->s.code, b->joins.tokens[index]);
}

/* The main thread reads states while waiting for the answers: stores are atomic. */
static void set_state(struct burst *b, uint32_t index, enum burst_state s)
{
    __atomic_store_n(&b->state[index], (uint8_t)s, __ATOMIC_RELAXED);
}

static void burst_vote(struct burst *b, struct eng_thread *t, uint32_t index, uint64_t now)
{
    char msg[BURST_VOTE_MAX];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"vote\",\"id\":\"b%" PRId64 "-%" PRIu32 "\",\"poll_id\":%" PRId64
                     ",\"choice\":[%" PRIu32 "]}",
                     b->poll_id, index, b->poll_id, index % 4);
    b->sent_ns[index] = now;
    set_state(b, (uint32_t)index, B_SENT);
    b->bt[eng_thread_id(t)].votes_sent++;
    (void)eng_send_text(t, index, msg, (size_t)n); /* a failure is counted by the engine */
}

static enum burst_err err_kind(const uint8_t *p, size_t len)
{
    static const char *const codes[] = {"\"poll_not_open\"", "\"already_voted\"",
                                        "\"rate_limited\"", "\"storage_unavailable\""};
    for (unsigned k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
        if (memmem(p, len, codes[k], strlen(codes[k])))
            return (enum burst_err)k;
    return BE_OTHER;
}

static void on_ack(struct burst *b, struct burst_thread *bt, uint32_t index,
                   const struct wsc_frame *f, uint64_t now)
{
    if (b->state[index] != B_SENT)
        return; /* not ours: no vote of this participant is waiting */
    set_state(b, (uint32_t)index, B_ACKED);
    hist_add(&bt->ack, now - b->sent_ns[index]);
    bt->acked++;
    if (memmem(f->payload, f->payload_len, "\"duplicate\"", 11))
        bt->duplicates++;
    uint64_t open = atomic_load_explicit(&b->open_ns, memory_order_acquire);
    if (now <= open + (uint64_t)(b->window_s ? b->window_s : 2) * 1000000000ull)
        bt->acked_in_window++;
    if (now > bt->last_ack_ns)
        bt->last_ack_ns = now;
}

static void on_opened(struct burst *b, struct burst_thread *bt, struct eng_thread *t,
                      uint32_t index, const struct wsc_frame *f, uint64_t now)
{
    uint64_t poll = 0;
    if (!track_msg_u64(f->payload, f->payload_len, "id", &poll) || (int64_t)poll != b->poll_id)
        return;
    uint64_t open = atomic_load_explicit(&b->open_ns, memory_order_acquire);
    bt->opened_seen++;
    hist_add(&bt->opened, now > open && open ? now - open : 0);
    if (b->state[index] == B_DUE)
        burst_vote(b, t, index, now);
    else if (b->state[index] == B_WAITING)
        set_state(b, (uint32_t)index, B_SEEN); /* its slot has not come yet: on_tick sends it */
}

static void burst_on_message(void *ctx, struct eng_thread *t, uint32_t index,
                             const struct wsc_frame *f, uint64_t now)
{
    struct burst *b = ctx;
    struct burst_thread *bt = &b->bt[eng_thread_id(t)];
    char type[TRACK_TYPE_MAX];
    uint64_t seq;
    if (track_msg_type(f->payload, f->payload_len, type, sizeof(type)) < 0)
        return;
    if (strcmp(type, "hello") == 0) {
        if (track_msg_u64(f->payload, f->payload_len, "seq", &seq))
            track_seq_init(&b->seq[index], seq);
        return;
    }
    if (strcmp(type, "results") == 0) {
        bt->results++;
        return;
    }
    if (strcmp(type, "ack") == 0) {
        on_ack(b, bt, index, f, now);
        return;
    }
    if (strcmp(type, "error") == 0) {
        bt->errors[err_kind(f->payload, f->payload_len)]++;
        if (b->state[index] == B_SENT)
            set_state(b, (uint32_t)index, B_ACKED); /* answered: no ack will come */
        return;
    }
    if (track_msg_u64(f->payload, f->payload_len, "seq", &seq)) {
        struct track_seq before = b->seq[index];
        track_seq_see(&b->seq[index], seq);
        bt->gaps += b->seq[index].gaps - before.gaps;
        bt->repeats += b->seq[index].dups - before.dups;
        if (strcmp(type, "poll.opened") == 0 && b->seq[index].dups == before.dups)
            on_opened(b, bt, t, index, f, now);
    }
}

/* Sends the votes whose slot has come (to those who saw poll.opened; the others on arrival). */
static void burst_on_tick(void *ctx, struct eng_thread *t, uint64_t now)
{
    struct burst *b = ctx;
    uint64_t open = atomic_load_explicit(&b->open_ns, memory_order_acquire);
    if (open == 0)
        return;
    struct burst_thread *bt = &b->bt[eng_thread_id(t)];
    unsigned nt = eng_threads(b->eng), id = eng_thread_id(t);
    uint64_t window = (uint64_t)b->window_s * 1000000000ull;
    for (;;) {
        uint64_t index = (uint64_t)bt->cursor * nt + id;
        if (index >= b->n || track_spread_due(open, window, index, b->n) > now)
            break;
        bt->cursor++;
        if (b->state[index] == B_SEEN)
            burst_vote(b, t, (uint32_t)index, now);
        else if (b->state[index] == B_WAITING)
            set_state(b, (uint32_t)index, B_DUE);
    }
}

/* Sums the threads' counters (after the engine stopped). */
static void burst_sum(const struct burst *b, unsigned nt, struct burst_thread *sum)
{
    memset(sum, 0, sizeof(*sum));
    hist_init(&sum->opened);
    hist_init(&sum->ack);
    for (unsigned i = 0; i < nt; i++) {
        const struct burst_thread *bt = &b->bt[i];
        hist_merge(&sum->opened, &bt->opened);
        hist_merge(&sum->ack, &bt->ack);
        sum->votes_sent += bt->votes_sent;
        sum->acked += bt->acked;
        sum->acked_in_window += bt->acked_in_window;
        sum->duplicates += bt->duplicates;
        sum->results += bt->results;
        sum->opened_seen += bt->opened_seen;
        sum->gaps += bt->gaps;
        sum->repeats += bt->repeats;
        for (unsigned k = 0; k < BE_KINDS; k++)
            sum->errors[k] += bt->errors[k];
        if (bt->last_ack_ns > sum->last_ack_ns)
            sum->last_ack_ns = bt->last_ack_ns;
    }
}

struct burst_run {
    uint64_t ready, failed, dropped;
    double connect_s, burst_s;
    struct scen_server before, after;
    uint64_t rss_joined, rss_idle;
    uint64_t open_ns;
};

static void burst_report(const struct burst *b, const struct burst_run *r,
                         const struct burst_thread *s, const struct eng_stats *es)
{
    char line[256];
    uint64_t errs = 0;
    for (unsigned k = 0; k < BE_KINDS; k++)
        errs += s->errors[k];
    uint64_t cpu = r->after.cpu_us > r->before.cpu_us ? r->after.cpu_us - r->before.cpu_us : 0;
    double last_ack_s = s->last_ack_ns > r->open_ns ? (s->last_ack_ns - r->open_ns) / 1e9 : 0;
    printf("burst: %" PRIu32 " participants, %" PRIu64 " subscribed (%" PRIu64 " failed, %" PRIu64
           " dropped) in %.1f s\n",
           b->n, r->ready, r->failed, r->dropped, r->connect_s);
    scen_hist_line(&b->joins.lat, line, sizeof(line));
    printf("join ms: %s\n", line);
    scen_hist_line(&es->hello_ns, line, sizeof(line));
    printf("connect to hello ms: %s\n", line);
    scen_hist_line(&s->opened, line, sizeof(line));
    printf("poll.opened delivery ms (open request -> participant): %s\n", line);
    printf("votes: %" PRIu64 " sent over a %u s window, %" PRIu64 " acked (%" PRIu64
           " within the window, %" PRIu64 " duplicate), last ack %.2f s after the open; %" PRIu64
           " errors\n",
           s->votes_sent, b->window_s, s->acked, s->acked_in_window, s->duplicates, last_ack_s,
           errs);
    scen_hist_line(&s->ack, line, sizeof(line));
    printf("vote ack latency ms: %s\n", line);
    printf("events: %" PRIu64 " poll.opened of %" PRIu64 " expected, %" PRIu64 " seq gaps, %" PRIu64
           " repeats; %" PRIu64 " results messages\n",
           s->opened_seen, r->ready, s->gaps, s->repeats, s->results);
    if (r->before.known)
        printf("server: %.2f s CPU over the burst (%.0f%% of one core), RSS %.1f MiB, %.0f bytes "
               "per idle connection\n",
               cpu / 1e6, r->burst_s > 0 ? cpu / 1e4 / r->burst_s : 0, r->after.rss / 1048576.0,
               r->ready && r->rss_idle > r->rss_joined
                   ? (double)(r->rss_idle - r->rss_joined) / (double)r->ready
                   : 0.0);
    scen_errors_print(es);
    printf("tally-stress CPU: %.1f s over the whole run\n", scen_self_cpu_s());
    json_t *errors = json_object();
    for (unsigned k = 0; k < BE_KINDS; k++)
        json_object_set_new(errors, burst_err_names[k], json_integer((json_int_t)s->errors[k]));
    json_t *root = json_pack(
        "{s:s,s:I,s:i,s:I,s:I,s:I,s:f,s:o,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:f,s:o,s:o,s:I,s:I,s:I,s:I,"
        "s:f,s:I,s:I}",
        "scenario", "burst", "participants", (json_int_t)b->n, "window_s", (int)b->window_s,
        "subscribed", (json_int_t)r->ready, "connect_failed", (json_int_t)r->failed, "dropped",
        (json_int_t)r->dropped, "connect_s", r->connect_s, "join_ms", scen_hist_json(&b->joins.lat),
        "hello_ms", scen_hist_json(&es->hello_ns), "opened_ms", scen_hist_json(&s->opened),
        "ack_ms", scen_hist_json(&s->ack), "votes_sent", (json_int_t)s->votes_sent, "acked",
        (json_int_t)s->acked, "acked_in_window", (json_int_t)s->acked_in_window, "duplicates",
        (json_int_t)s->duplicates, "last_ack_s", last_ack_s, "vote_errors", errors,
        "connection_errors", scen_errors_json(es), "opened_seen", (json_int_t)s->opened_seen,
        "seq_gaps", (json_int_t)s->gaps, "seq_repeats", (json_int_t)s->repeats, "results",
        (json_int_t)s->results, "server_cpu_s", cpu / 1e6, "server_rss", (json_int_t)r->after.rss,
        "server_rss_idle", (json_int_t)r->rss_idle);
    json_object_set_new(root, "client_cpu_s", json_real(scen_self_cpu_s()));
    scen_json_write(b->c.json_path, root);
}

/* Joins, subscribes, and waits for every hello (bounded). 0 or -EPROTO. */
static int burst_setup(struct burst *b, struct burst_run *r)
{
    if (scen_session_create(&b->c, "vote burst", &b->s) < 0 ||
        scen_poll_create(&b->c, &b->s, 4, &b->poll_id) < 0)
        return -EPROTO;
    scen_joins_init(&b->joins, b->n);
    if (scen_join(&b->c, &b->s, &b->joins, b->n) < 0)
        return -EPROTO;
    printf("setup: session %s, poll %" PRId64 ", %" PRIu32 " participants joined in %.1f s\n",
           b->s.code, b->poll_id, b->n, b->joins.seconds);
    fflush(stdout);
    r->rss_joined = scen_server_sample(b->c.server_pid).rss;
    unsigned sources = b->c.sources > b->n / 20000 + 1 ? b->c.sources : b->n / 20000 + 1;
    const struct eng_config cfg = {
        .host = b->c.host,
        .port = b->c.port,
        .port2 = b->port2,
        .max_clients = b->n,
        .threads = b->c.threads,
        .sources = sources,
        .proto = b->c.proto,
        .path = burst_path,
        .on_message = burst_on_message,
        .on_tick = burst_on_tick,
        .ctx = b,
    };
    b->eng = eng_start(&cfg);
    if (b->eng == NULL)
        return -EPROTO;
    b->bt = xcalloc(eng_threads(b->eng), sizeof(*b->bt));
    for (unsigned i = 0; i < eng_threads(b->eng); i++) {
        hist_init(&b->bt[i].opened);
        hist_init(&b->bt[i].ack);
    }
    eng_open(b->eng, b->n);
    r->connect_s = eng_wait_ready(b->eng, BURST_READY_BASE_S + b->n / 1000);
    eng_count(b->eng, &r->ready, &r->failed, &r->dropped);
    fo_sleep_ms(1000);
    r->rss_idle = scen_server_sample(b->c.server_pid).rss;
    printf("subscribed: %" PRIu64 " of %" PRIu32 " in %.1f s (%u engine threads)\n", r->ready, b->n,
           r->connect_s, eng_threads(b->eng));
    fflush(stdout);
    return 0;
}

/* True when every vote sent has its answer. Reads other threads' counters: only a hint. */
static bool burst_all_answered(const struct burst *b, uint64_t ready)
{
    uint64_t answered = 0;
    for (uint32_t i = 0; i < b->n; i++)
        answered += __atomic_load_n(&b->state[i], __ATOMIC_RELAXED) == B_ACKED;
    return answered >= ready;
}

/** Runs `tally-stress burst`; returns the process exit code. */
int burst_main(int argc, char **argv);

int burst_main(int argc, char **argv)
{
    static struct burst b;
    static struct burst_run r;
    static struct burst_thread sum;
    static struct eng_stats es;
    burst_parse(argc, argv, &b);
    scen_deadline_arm(b.c.deadline_s ? b.c.deadline_s
                                     : b.window_s + b.n / 200 + SCEN_DEADLINE_SLACK_S);
    b.state = xcalloc(b.n, 1);
    b.sent_ns = xcalloc(b.n, sizeof(*b.sent_ns));
    b.seq = xcalloc(b.n, sizeof(*b.seq));
    if (burst_setup(&b, &r) < 0)
        return 1;
    r.before = scen_server_sample(b.c.server_pid);
    /* Stamped before the request: poll.opened may reach participants before its answer. */
    uint64_t sent = fo_now_ns();
    r.open_ns = sent;
    atomic_store_explicit(&b.open_ns, sent, memory_order_release);
    if (scen_poll_state(&b.c, &b.s, b.poll_id, true, NULL) < 0)
        return 1;
    uint64_t end = sent + (uint64_t)(b.window_s + BURST_SETTLE_S) * 1000000000ull;
    do
        fo_sleep_ms(50);
    while (fo_now_ns() < end && !burst_all_answered(&b, r.ready));
    fo_sleep_ms(200); /* the last results */
    r.burst_s = (fo_now_ns() - sent) / 1e9;
    r.after = scen_server_sample(b.c.server_pid);
    unsigned nt = eng_threads(b.eng);
    eng_stop(b.eng, &es);
    r.dropped = es.dropped_after_ready;
    (void)scen_poll_state(&b.c, &b.s, b.poll_id, false, NULL);
    burst_sum(&b, nt, &sum);
    burst_report(&b, &r, &sum, &es);
    bool clean = sum.acked == b.n && r.ready == b.n && sum.gaps == 0 && sum.repeats == 0;
    scen_joins_free(&b.joins);
    free(b.state);
    free(b.sent_ns);
    free(b.seq);
    free(b.bt);
    return clean ? 0 : 1;
}
