/*
 * wsvotes.c - tally-stress wsvotes: sustained durable votes over WebSocket.
 *
 *   tally-stress wsvotes [--target 127.0.0.1:8080] [--clients 64] [--seconds 10]
 *                        [--participants-per-client M] [--polls P]
 *                        [--server-pid PID] [--threads 2] [--sources 8]
 *                        [--proto json|msgpack] [--json FILE] [--deadline S]
 *
 * The WebSocket counterpart of `tally-stress votes`: K clients each keep one
 * vote in flight and send the next as soon as the previous is answered
 * (`ack` or `error`), for S seconds. Client k has a session of its own with
 * M participants, each subscribed over its own WebSocket (io_uring engine),
 * and P open single-choice polls; it votes with participant 0..M-1 on poll
 * 0, then on poll 1, and so on (wsplan.h), so each vote is a new
 * (participant, poll) pair, and no participant votes twice within 105 ms
 * (tallyd allows 10 a second): a client that comes round to a participant
 * too early waits, which the report counts as "paced". So a client sends at
 * most 10 x M votes a second (M = 16 by default), and P (10 x S + 1 by
 * default) polls last it S seconds at that pace; one that runs out stops
 * and is counted. Every subscriber also receives `results` (at most one per
 * poll per 100 ms): a session per client keeps that to the one or two polls
 * its client is voting on, about 10 x M results messages a second per
 * session whatever the vote rate, which is why M should be no larger than
 * the rate needs (one session with thousands of subscribers drifting over
 * many polls would measure fan-out, not storage).
 *
 * Setup, not measured: sessions and joins over HTTP, every WebSocket
 * connected (hello), then the polls created and opened (so the hello stays
 * small). Measured: acks per second (every ack is a vote committed before it
 * was sent), ack latency from send to ack, refusals by code, connection
 * errors by kind, `results` messages received per second and, with
 * --server-pid, tallyd's CPU over the run. Exit 0 only when every vote sent
 * was acknowledged and no connection failed.
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
#include "stress/engine.h"
#include "stress/fanout_common.h"
#include "stress/httpc.h"
#include "stress/scen.h"
#include "stress/track.h"
#include "stress/wsplan.h"

#define WV_CLIENTS_MAX 4096
#define WV_PPC_MAX 1024
#define WV_PARTICIPANTS_MAX 64000u
#define WV_POLLS_MAX 1000 /* tallyd's polls per session */
#define WV_SETUP_THREADS 32
#define WV_READY_BASE_S 30
#define WV_DRAIN_S 10                       /* after the run: answers still in flight */
#define WV_ACK_TIMEOUT_NS 10000000000ull    /* a vote unanswered this long is given up */
#define WV_MSG_MAX 160
#define WV_DEFAULT_PPC 16 /* 160 votes/s a client under the per-participant limit */

enum wv_err {
    WE_POLL_NOT_OPEN,
    WE_ALREADY_VOTED,
    WE_RATE,
    WE_STORAGE,
    WE_INVALID,
    WE_OTHER,
    WE_KINDS
};
static const char *const wv_err_names[WE_KINDS] = {
    "poll_not_open", "already_voted", "rate_limited", "storage_unavailable", "invalid_request",
    "other",
};

/* One client's state: touched by its engine thread; in_flight also read by the main thread. */
struct wv_client {
    struct wsplan_cursor cur;
    uint32_t inflight_part;
    uint64_t sent_ns;
    uint8_t in_flight; /* atomic access */
    bool done, waiting;
};

/* One engine thread's counters: written by that thread only, read after the engine stops. */
struct wv_thread {
    struct hist ack;
    uint64_t sent, acked, duplicates, results, events, stray, paced, send_failed, unanswered;
    uint64_t out_of_polls;
    uint64_t errors[WE_KINDS];
    uint64_t last_answer_ns;
};

struct wv {
    struct scen_opts c;
    struct wsplan plan;
    unsigned seconds;
    struct scen_session *sess;            /* [clients] */
    char (*tokens)[SCEN_TOKEN_MAX];       /* [clients * ppc], by (k, part) */
    int64_t *polls;                       /* [clients * polls] */
    uint64_t *last_ns;                    /* [clients * ppc], by engine index */
    struct wv_client *cl;                 /* [clients] */
    struct wv_thread *wt;                 /* [engine threads] */
    struct eng *eng;
    _Atomic uint64_t start_ns, stop_ns;   /* 0 until set */
    atomic_uint next;                     /* setup: next client to set up */
    atomic_int setup_failed;
};

static void wv_usage(void)
{
    fprintf(stderr,
            "usage: tally-stress wsvotes [--target HOST:PORT] [--clients N] [--seconds S]\n"
            "                            [--participants-per-client M] [--polls P]\n"
            "                            [--server-pid PID] [--threads T] [--sources K]\n"
            "                            [--proto json|msgpack] [--json FILE] [--deadline S]\n");
    exit(2);
}

static void wv_parse(int argc, char **argv, struct wv *w)
{
    scen_opts_init(&w->c);
    w->plan.clients = 64;
    w->seconds = 10;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (scen_opts_take(&w->c, f, v))
            continue;
        if (strcmp(f, "--clients") == 0)
            w->plan.clients = fo_parse_uint(f, v, 1, WV_CLIENTS_MAX);
        else if (strcmp(f, "--seconds") == 0)
            w->seconds = fo_parse_uint(f, v, 1, SCEN_SECONDS_MAX);
        else if (strcmp(f, "--participants-per-client") == 0)
            w->plan.ppc = fo_parse_uint(f, v, 1, WV_PPC_MAX);
        else if (strcmp(f, "--polls") == 0)
            w->plan.polls = fo_parse_uint(f, v, 1, WV_POLLS_MAX);
        else
            wv_usage();
    }
    if (more < 0)
        wv_usage();
    if (strcmp(w->c.proto, ENG_PROTO_SSE) == 0) {
        fprintf(stderr, "tally-stress: wsvotes votes over the WebSocket: --proto sse cannot send\n");
        exit(2);
    }
    if (w->plan.clients % w->c.threads != 0) { /* a client's connections share one thread */
        fprintf(stderr, "tally-stress: --clients must be a multiple of --threads (%u)\n",
                w->c.threads);
        exit(2);
    }
    if (w->plan.ppc == 0)
        w->plan.ppc = WV_DEFAULT_PPC;
    if (w->plan.polls == 0) /* a participant votes at most 10 times a second */
        w->plan.polls = 10 * w->seconds + 1 < WV_POLLS_MAX ? 10 * w->seconds + 1 : WV_POLLS_MAX;
    if ((uint64_t)w->plan.clients * w->plan.ppc > WV_PARTICIPANTS_MAX) {
        fprintf(stderr, "tally-stress: clients x participants-per-client is over %u\n",
                WV_PARTICIPANTS_MAX);
        exit(2);
    }
}

/* ---- setup over HTTP ---- */

/* One keep-alive request; the parsed answer when the status is `want`, else NULL after saying why. */
static json_t *wv_call(struct httpc *h, const char *method, const char *path, const char *token,
                       const char *body, int want)
{
    struct httpc_resp r;
    if (httpc_request(h, method, path, token, NULL, body, &r) < 0) {
        fprintf(stderr, "tally-stress: %s %s: no answer\n", method, path);
        return NULL;
    }
    json_t *j = json_loadb(r.body, r.body_len, 0, NULL);
    if (r.status != want || j == NULL) {
        fprintf(stderr, "tally-stress: %s %s answered %d (expected %d)\n", method, path, r.status,
                want);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* Client k's session and its participants (joined from 127.0.0.(2 + k % 250)). 0 or -EPROTO. */
static int wv_setup_session(struct wv *w, uint32_t k, struct httpc *h, struct httpc *hj)
{
    struct scen_session *s = &w->sess[k];
    json_t *j = wv_call(h, "POST", "/api/v1/sessions", NULL, "{\"title\":\"ws votes\"}", 201);
    const char *tok = json_string_value(json_object_get(j, "presenter_token"));
    const char *code = json_string_value(json_object_get(json_object_get(j, "session"), "code"));
    int rc = tok && code && strlen(tok) < sizeof(s->presenter_token) &&
                     strlen(code) < sizeof(s->code)
                 ? 0
                 : -EPROTO;
    if (rc == 0) {
        snprintf(s->presenter_token, sizeof(s->presenter_token), "%s", tok);
        snprintf(s->code, sizeof(s->code), "%s", code);
    }
    json_decref(j);
    char path[96], src[32];
    snprintf(path, sizeof(path), "/api/v1/sessions/%s/participants", s->code);
    snprintf(src, sizeof(src), "127.0.0.%u", 2 + k % ENG_SOURCES_MAX);
    httpc_init(hj, w->c.host, w->c.port, src);
    for (uint32_t p = 0; rc == 0 && p < w->plan.ppc; p++) {
        j = wv_call(hj, "POST", path, NULL, "{}", 201);
        tok = json_string_value(json_object_get(j, "participant_token"));
        if (tok && strlen(tok) < SCEN_TOKEN_MAX)
            snprintf(w->tokens[(size_t)k * w->plan.ppc + p], SCEN_TOKEN_MAX, "%s", tok);
        else
            rc = -EPROTO;
        json_decref(j);
    }
    httpc_close(hj);
    return rc;
}

/* Client k's polls, created and opened. 0 or -EPROTO. */
static int wv_setup_polls(struct wv *w, uint32_t k, struct httpc *h)
{
    const struct scen_session *s = &w->sess[k];
    char path[96];
    for (uint32_t p = 0; p < w->plan.polls; p++) {
        snprintf(path, sizeof(path), "/api/v1/sessions/%s/polls", s->code);
        json_t *j = wv_call(h, "POST", path, s->presenter_token,
                            "{\"question\":\"Which?\",\"kind\":\"single\",\"options\":"
                            "[\"A\",\"B\",\"C\"]}",
                            201);
        int64_t id = json_integer_value(json_object_get(json_object_get(j, "poll"), "id"));
        json_decref(j);
        if (id <= 0)
            return -EPROTO;
        w->polls[(size_t)k * w->plan.polls + p] = id;
        snprintf(path, sizeof(path), "/api/v1/polls/%" PRId64 "/open", id);
        j = wv_call(h, "POST", path, s->presenter_token, NULL, 200);
        json_decref(j);
        if (j == NULL)
            return -EPROTO;
    }
    return 0;
}

struct wv_setup_arg {
    struct wv *w;
    bool polls; /* false: sessions and joins; true: polls */
};

static void *wv_setup_worker(void *arg)
{
    const struct wv_setup_arg *a = arg;
    struct wv *w = a->w;
    struct httpc *h = xmalloc(sizeof(*h)), *hj = xmalloc(sizeof(*hj));
    httpc_init(h, w->c.host, w->c.port, NULL);
    for (;;) {
        uint32_t k = atomic_fetch_add(&w->next, 1);
        if (k >= w->plan.clients || atomic_load(&w->setup_failed))
            break;
        int rc = a->polls ? wv_setup_polls(w, k, h) : wv_setup_session(w, k, h, hj);
        if (rc < 0)
            atomic_store(&w->setup_failed, 1);
    }
    httpc_close(h);
    free(h);
    free(hj);
    return NULL;
}

/* Runs one setup step for every client on WV_SETUP_THREADS threads. 0 or -EPROTO. */
static int wv_setup_step(struct wv *w, bool polls)
{
    pthread_t tids[WV_SETUP_THREADS];
    struct wv_setup_arg a = {.w = w, .polls = polls};
    atomic_store(&w->next, 0);
    for (unsigned i = 0; i < WV_SETUP_THREADS; i++)
        TALLY_ASSERT(pthread_create(&tids[i], NULL, wv_setup_worker, &a) == 0);
    for (unsigned i = 0; i < WV_SETUP_THREADS; i++)
        pthread_join(tids[i], NULL);
    return atomic_load(&w->setup_failed) ? -EPROTO : 0;
}

/* ---- the vote loop, on the engine threads ---- */

static int wv_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct wv *w = ctx;
    uint32_t k, part;
    wsplan_owner(&w->plan, index, &k, &part);
    return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s", w->sess[k].code,
                    w->tokens[(size_t)k * w->plan.ppc + part]);
}

/* Sends client k's next vote when it may (running, a pair left, participant spaced). */
static void wv_try_send(struct wv *w, struct eng_thread *t, uint32_t k, uint64_t now)
{
    struct wv_client *c = &w->cl[k];
    struct wv_thread *wt = &w->wt[eng_thread_id(t)];
    uint64_t stop = atomic_load_explicit(&w->stop_ns, memory_order_acquire);
    if (c->in_flight || c->done)
        return;
    if (stop && now >= stop) {
        c->done = true;
        return;
    }
    if (!wsplan_has_next(&w->plan, &c->cur)) {
        c->done = true;
        wt->out_of_polls++;
        return;
    }
    uint32_t part = c->cur.part, idx = wsplan_index(&w->plan, k, part);
    if (!wsplan_spaced(w->last_ns[idx], now)) {
        wt->paced += !c->waiting;
        c->waiting = true;
        return;
    }
    c->waiting = false;
    int64_t poll = w->polls[(size_t)k * w->plan.polls + c->cur.poll];
    char msg[WV_MSG_MAX];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"vote\",\"id\":\"w%" PRIu32 "-%" PRId64 "-%" PRIu32
                     "\",\"poll_id\":%" PRId64 ",\"choice\":[%" PRIu32 "]}",
                     k, poll, part, poll, (k + part) % 3);
    w->last_ns[idx] = now;
    (void)wsplan_advance(&w->plan, &c->cur);
    if (eng_send_text(t, idx, msg, (size_t)n) < 0) {
        wt->send_failed++; /* the connection is gone: the next tick tries the next pair */
        return;
    }
    wt->sent++;
    c->inflight_part = part;
    c->sent_ns = now;
    __atomic_store_n(&c->in_flight, 1, __ATOMIC_RELAXED);
}

static enum wv_err wv_err_kind(const uint8_t *p, size_t len)
{
    static const char *const codes[] = {"\"poll_not_open\"", "\"already_voted\"",
                                        "\"rate_limited\"", "\"storage_unavailable\"",
                                        "\"invalid_request\""};
    for (unsigned k = 0; k < sizeof(codes) / sizeof(codes[0]); k++)
        if (memmem(p, len, codes[k], strlen(codes[k])))
            return (enum wv_err)k;
    return WE_OTHER;
}

/* An ack or error on participant index's connection: the answer to its client's vote. */
static void wv_on_answer(struct wv *w, struct eng_thread *t, uint32_t index,
                         const struct wsc_frame *f, uint64_t now, bool ack)
{
    struct wv_thread *wt = &w->wt[eng_thread_id(t)];
    uint32_t k, part;
    wsplan_owner(&w->plan, index, &k, &part);
    struct wv_client *c = &w->cl[k];
    if (!c->in_flight || c->inflight_part != part) {
        wt->stray++;
        return;
    }
    if (ack) {
        hist_add(&wt->ack, now - c->sent_ns);
        wt->acked++;
        if (memmem(f->payload, f->payload_len, "\"duplicate\"", 11))
            wt->duplicates++;
    } else {
        wt->errors[wv_err_kind(f->payload, f->payload_len)]++;
    }
    if (now > wt->last_answer_ns)
        wt->last_answer_ns = now;
    __atomic_store_n(&c->in_flight, 0, __ATOMIC_RELAXED);
    wv_try_send(w, t, k, now);
}

static void wv_on_message(void *ctx, struct eng_thread *t, uint32_t index,
                          const struct wsc_frame *f, uint64_t now)
{
    struct wv *w = ctx;
    struct wv_thread *wt = &w->wt[eng_thread_id(t)];
    char type[TRACK_TYPE_MAX];
    if (track_msg_type(f->payload, f->payload_len, type, sizeof(type)) < 0)
        return;
    if (strcmp(type, "ack") == 0 || strcmp(type, "error") == 0)
        wv_on_answer(w, t, index, f, now, type[0] == 'a');
    else if (strcmp(type, "results") == 0)
        wt->results += atomic_load_explicit(&w->start_ns, memory_order_relaxed) != 0;
    else
        wt->events++;
}

/* Starts each client of this thread once the run begins; retries paced ones; gives up on lost answers. */
static void wv_on_tick(void *ctx, struct eng_thread *t, uint64_t now)
{
    struct wv *w = ctx;
    if (atomic_load_explicit(&w->start_ns, memory_order_acquire) == 0)
        return;
    struct wv_thread *wt = &w->wt[eng_thread_id(t)];
    unsigned nt = eng_threads(w->eng);
    for (uint32_t k = eng_thread_id(t); k < w->plan.clients; k += nt) {
        struct wv_client *c = &w->cl[k];
        if (c->in_flight && now - c->sent_ns > WV_ACK_TIMEOUT_NS) {
            wt->unanswered++;
            __atomic_store_n(&c->in_flight, 0, __ATOMIC_RELAXED);
        }
        wv_try_send(w, t, k, now);
    }
}

/* ---- run and report ---- */

static bool wv_any_in_flight(const struct wv *w)
{
    for (uint32_t k = 0; k < w->plan.clients; k++)
        if (__atomic_load_n(&w->cl[k].in_flight, __ATOMIC_RELAXED))
            return true;
    return false;
}

static void wv_sum(const struct wv *w, unsigned nt, struct wv_thread *s)
{
    memset(s, 0, sizeof(*s));
    hist_init(&s->ack);
    for (unsigned i = 0; i < nt; i++) {
        const struct wv_thread *t = &w->wt[i];
        hist_merge(&s->ack, &t->ack);
        s->sent += t->sent;
        s->acked += t->acked;
        s->duplicates += t->duplicates;
        s->results += t->results;
        s->events += t->events;
        s->stray += t->stray;
        s->paced += t->paced;
        s->send_failed += t->send_failed;
        s->unanswered += t->unanswered;
        s->out_of_polls += t->out_of_polls;
        for (unsigned k = 0; k < WE_KINDS; k++)
            s->errors[k] += t->errors[k];
        if (t->last_answer_ns > s->last_answer_ns)
            s->last_answer_ns = t->last_answer_ns;
    }
}

struct wv_run {
    uint64_t ready, failed, dropped;
    double setup_s, connect_s, polls_s, run_s;
    double client_cpu_s; /* this process over the run */
    struct scen_server before, after;
};

static uint64_t wv_refused(const struct wv_thread *s)
{
    uint64_t n = 0;
    for (unsigned k = 0; k < WE_KINDS; k++)
        n += s->errors[k];
    return n;
}

static void wv_print(const struct wv *w, const struct wv_run *r, const struct wv_thread *s,
                     const struct eng_stats *es)
{
    char line[256];
    double rate = r->run_s > 0 ? (double)s->acked / r->run_s : 0;
    uint64_t cpu = r->after.cpu_us > r->before.cpu_us ? r->after.cpu_us - r->before.cpu_us : 0;
    printf("wsvotes: %" PRIu32 " clients, %.1f s: %" PRIu64 " acknowledged (%.0f votes/s), %" PRIu64
           " sent, %" PRIu64 " refused, %" PRIu64 " unanswered, %" PRIu64 " duplicate\n",
           w->plan.clients, r->run_s, s->acked, rate, s->sent, wv_refused(s), s->unanswered,
           s->duplicates);
    printf("ack latency ms: p50 %.2f  p90 %.2f  p99 %.2f  p99.9 %.2f  max %.2f\n",
           hist_quantile(&s->ack, 0.50) / 1e6, hist_quantile(&s->ack, 0.90) / 1e6,
           hist_quantile(&s->ack, 0.99) / 1e6, hist_quantile(&s->ack, 0.999) / 1e6,
           s->ack.max / 1e6);
    scen_hist_line(&s->ack, line, sizeof(line));
    printf("ack latency ms (all): %s\n", line);
    printf("refused by code:");
    for (unsigned k = 0; k < WE_KINDS; k++)
        printf(" %s %" PRIu64 "%s", wv_err_names[k], s->errors[k], k + 1 < WE_KINDS ? "," : "\n");
    printf("results messages: %.0f/s received (%.2f per ack); paced %" PRIu64
           " times, %" PRIu64 " send failures, %" PRIu64 " clients out of polls, %" PRIu64
           " stray answers\n",
           r->run_s > 0 ? s->results / r->run_s : 0, s->acked ? (double)s->results / s->acked : 0,
           s->paced, s->send_failed, s->out_of_polls, s->stray);
    if (r->before.known)
        printf("server: %.2f s CPU over the run (%.0f%% of one core)\n", cpu / 1e6,
               r->run_s > 0 ? cpu / 1e4 / r->run_s : 0);
    scen_errors_print(es);
    printf("tally-stress CPU: %.1f s over the votes (%.0f%% of one core), %.1f s in all\n",
           r->client_cpu_s, r->run_s > 0 ? 100 * r->client_cpu_s / r->run_s : 0,
           scen_self_cpu_s());
}

static void wv_report(const struct wv *w, const struct wv_run *r, const struct wv_thread *s,
                      const struct eng_stats *es)
{
    wv_print(w, r, s, es);
    uint64_t cpu = r->after.cpu_us > r->before.cpu_us ? r->after.cpu_us - r->before.cpu_us : 0;
    json_t *errors = json_object();
    for (unsigned k = 0; k < WE_KINDS; k++)
        json_object_set_new(errors, wv_err_names[k], json_integer((json_int_t)s->errors[k]));
    json_t *root = json_pack(
        "{s:s,s:I,s:I,s:I,s:f,s:I,s:I,s:f,s:o,s:I,s:I,s:I,s:I,s:o,s:o,s:f,s:I,s:I,s:I,s:f,s:f}",
        "scenario", "wsvotes", "clients", (json_int_t)w->plan.clients, "participants_per_client",
        (json_int_t)w->plan.ppc, "polls_per_session", (json_int_t)w->plan.polls, "seconds",
        r->run_s, "acked", (json_int_t)s->acked, "sent", (json_int_t)s->sent, "votes_per_s",
        r->run_s > 0 ? s->acked / r->run_s : 0.0, "ack_ms", scen_hist_json(&s->ack),
        "duplicates", (json_int_t)s->duplicates, "unanswered", (json_int_t)s->unanswered,
        "send_failed", (json_int_t)s->send_failed, "paced", (json_int_t)s->paced, "vote_errors",
        errors, "connection_errors", scen_errors_json(es), "results_per_s",
        r->run_s > 0 ? s->results / r->run_s : 0.0, "subscribed", (json_int_t)r->ready,
        "connect_failed", (json_int_t)r->failed, "dropped", (json_int_t)r->dropped, "setup_s",
        r->setup_s + r->connect_s + r->polls_s, "server_cpu_s", cpu / 1e6);
    json_object_set_new(root, "errors", json_integer((json_int_t)(wv_refused(s) + s->unanswered +
                                                                  s->send_failed)));
    json_object_set_new(root, "client_cpu_s", json_real(scen_self_cpu_s()));
    json_object_set_new(root, "client_cpu_run_s", json_real(r->client_cpu_s));
    scen_json_write(w->c.json_path, root);
}

/* Sessions, joins, WebSockets, polls. 0 or -EPROTO. */
static int wv_setup(struct wv *w, struct wv_run *r)
{
    uint64_t t0 = fo_now_ns();
    if (wv_setup_step(w, false) < 0)
        return -EPROTO;
    r->setup_s = (fo_now_ns() - t0) / 1e9;
    uint32_t n = w->plan.clients * w->plan.ppc;
    const struct eng_config cfg = {
        .host = w->c.host, .port = w->c.port, .max_clients = n, .threads = w->c.threads,
        .sources = w->c.sources, .proto = w->c.proto, .path = wv_path,
        .on_message = wv_on_message, .on_tick = wv_on_tick, .ctx = w,
    };
    w->eng = eng_start(&cfg);
    if (w->eng == NULL)
        return -EPROTO;
    w->plan.threads = eng_threads(w->eng);
    if (wsplan_check(&w->plan) < 0) {
        fprintf(stderr, "tally-stress: --clients %" PRIu32 " is not a multiple of the %" PRIu32
                " engine threads\n", w->plan.clients, w->plan.threads);
        return -EPROTO;
    }
    w->wt = xcalloc(w->plan.threads, sizeof(*w->wt));
    for (unsigned i = 0; i < w->plan.threads; i++)
        hist_init(&w->wt[i].ack);
    eng_open(w->eng, n);
    r->connect_s = eng_wait_ready(w->eng, WV_READY_BASE_S + n / 1000);
    eng_count(w->eng, &r->ready, &r->failed, &r->dropped);
    if (r->ready < n) {
        fprintf(stderr, "tally-stress: %" PRIu64 " of %" PRIu32 " WebSockets ready\n", r->ready, n);
        return -EPROTO;
    }
    t0 = fo_now_ns();
    if (wv_setup_step(w, true) < 0)
        return -EPROTO;
    r->polls_s = (fo_now_ns() - t0) / 1e9;
    printf("setup: %" PRIu32 " sessions x (%" PRIu32 " participants, %" PRIu32
           " polls); joined in %.1f s, subscribed in %.1f s, polls opened in %.1f s\n",
           w->plan.clients, w->plan.ppc, w->plan.polls, r->setup_s, r->connect_s, r->polls_s);
    fflush(stdout);
    return 0;
}

/* Runs the votes for the planned seconds, then waits (bounded) for the last answers. */
static void wv_run(struct wv *w, struct wv_run *r)
{
    fo_sleep_ms(500); /* the poll events of the setup reach every subscriber first */
    r->before = scen_server_sample(w->c.server_pid);
    double cpu0 = scen_self_cpu_s();
    uint64_t t0 = fo_now_ns();
    atomic_store_explicit(&w->start_ns, t0, memory_order_release);
    fo_sleep_until_ns(t0 + (uint64_t)w->seconds * 1000000000ull);
    atomic_store_explicit(&w->stop_ns, fo_now_ns(), memory_order_release);
    uint64_t drain_end = fo_now_ns() + (uint64_t)WV_DRAIN_S * 1000000000ull;
    while (wv_any_in_flight(w) && fo_now_ns() < drain_end)
        fo_sleep_ms(5);
    r->after = scen_server_sample(w->c.server_pid);
    r->client_cpu_s = scen_self_cpu_s() - cpu0;
}

/** Runs `tally-stress wsvotes`; returns the process exit code. */
int wsvotes_main(int argc, char **argv);

int wsvotes_main(int argc, char **argv)
{
    static struct wv w;
    static struct wv_run r;
    static struct wv_thread sum;
    static struct eng_stats es;
    wv_parse(argc, argv, &w);
    uint32_t n = w.plan.clients * w.plan.ppc;
    scen_deadline_arm(w.c.deadline_s ? w.c.deadline_s
                                     : w.seconds + n / 100 + w.plan.clients * w.plan.polls / 500 +
                                           SCEN_DEADLINE_SLACK_S);
    w.sess = xcalloc(w.plan.clients, sizeof(*w.sess));
    w.tokens = xcalloc(n, sizeof(*w.tokens));
    w.polls = xcalloc((size_t)w.plan.clients * w.plan.polls, sizeof(*w.polls));
    w.last_ns = xcalloc(n, sizeof(*w.last_ns));
    w.cl = xcalloc(w.plan.clients, sizeof(*w.cl));
    int rc = wv_setup(&w, &r);
    if (rc == 0)
        wv_run(&w, &r);
    if (w.eng) {
        unsigned nt = eng_threads(w.eng);
        eng_stop(w.eng, &es);
        r.dropped = es.dropped_after_ready;
        if (rc == 0) {
            wv_sum(&w, nt, &sum);
            uint64_t t0 = atomic_load(&w.start_ns);
            r.run_s = sum.last_answer_ns > t0 ? (sum.last_answer_ns - t0) / 1e9 : w.seconds;
            wv_report(&w, &r, &sum, &es);
        }
    }
    bool clean = rc == 0 && sum.acked > 0 && sum.acked == sum.sent && r.dropped == 0;
    free(w.sess);
    free(w.tokens);
    free(w.polls);
    free(w.last_ns);
    free(w.cl);
    free(w.wt);
    return clean ? 0 : 1;
}
