/*
 * fan.c - see fan.h.
 */
#include "stress/fan.h"

#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/track.h"

#define FAN_READY_BASE_S 30 /* hello wait: this plus one second per 1000 new subscribers */
#define FAN_VOTE_GRACE_S 30 /* how long voters may overrun their schedule */
#define FAN_SETTLE_MS 1000  /* idle time before the connected RSS sample */
#define FAN_RESULTS_PREFIX "{\"type\":\"results\""

/* One engine thread's counters for the current step: written by that thread only. */
struct fan_tstats {
    struct hist lat;
    struct hist from_send; /* the same from the vote going out */
    struct hist newest;    /* charged to the newest vote the message reflects instead */
    uint64_t delivered, unmatched, stale, before_ack;
    uint64_t rnd;
};

struct fan {
    const struct scen_opts *o;
    struct scen_session s;
    struct scen_joins voters;
    struct scen_joins subs;
    struct scen_voters v;
    unsigned rate, seconds;
    struct eng *eng;
    uint64_t *last; /* per subscriber: poll id << 32 | last version seen */
    _Atomic int64_t poll_id;
    atomic_bool measuring;
    struct fan_tstats *ts; /* [engine threads] */
};

static int fan_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct fan *f = ctx;
    return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s", f->s.code, f->subs.tokens[index]);
}

static void fan_on_message(void *ctx, struct eng_thread *t, uint32_t index,
                           const struct wsc_frame *fr, uint64_t now)
{
    struct fan *f = ctx;
    if (!atomic_load_explicit(&f->measuring, memory_order_acquire) ||
        fr->payload_len < sizeof(FAN_RESULTS_PREFIX) - 1 ||
        memcmp(fr->payload, FAN_RESULTS_PREFIX, sizeof(FAN_RESULTS_PREFIX) - 1) != 0)
        return;
    uint64_t poll = 0, version = 0;
    if (!track_msg_u64(fr->payload, fr->payload_len, "poll_id", &poll) ||
        !track_msg_u64(fr->payload, fr->payload_len, "version", &version) ||
        (int64_t)poll != atomic_load_explicit(&f->poll_id, memory_order_relaxed))
        return;
    struct fan_tstats *ts = &f->ts[eng_thread_id(t)];
    uint64_t last = f->last[index];
    uint64_t seen = (last >> 32) == (poll & 0xffffffffu) ? (last & 0xffffffffu) : 0;
    if (version <= seen) {
        ts->stale++;
        return;
    }
    ts->delivered++;
    __atomic_store_n(&f->last[index], (poll & 0xffffffffu) << 32 | (version & 0xffffffffu),
                     __ATOMIC_RELAXED);
    uint64_t k = track_sample_version(seen, version, track_rand(&ts->rnd));
    if (k > f->v.n) {
        ts->unmatched++; /* more votes counted than this run sent */
        return;
    }
    uint64_t sent = atomic_load_explicit(&f->v.sent_ns[k], memory_order_acquire);
    uint64_t ack = atomic_load_explicit(&f->v.ack_ns[k], memory_order_acquire);
    hist_add(&ts->from_send, sent != 0 && now > sent ? now - sent : 0);
    /* Results that beat the vote's ack to this client (the ack is not stamped yet, or is
     * stamped after this batch was read) waited nothing after the ack: they count as 0. */
    ts->before_ack += ack == 0 || ack > now;
    hist_add(&ts->lat, ack != 0 && now > ack ? now - ack : 0);
    sent = atomic_load_explicit(&f->v.sent_ns[version], memory_order_acquire);
    hist_add(&ts->newest, sent != 0 && now > sent ? now - sent : 0);
}

struct fan *fan_create(const struct scen_opts *o, uint32_t max_subs, unsigned rate,
                       unsigned seconds)
{
    struct fan *f = xcalloc(1, sizeof(*f));
    f->o = o;
    f->rate = rate;
    f->seconds = seconds;
    uint32_t n_votes = rate * seconds;
    if (scen_session_create(o, "fan-out benchmark", &f->s) < 0)
        goto err;
    scen_joins_init(&f->voters, n_votes);
    scen_joins_init(&f->subs, max_subs);
    if (scen_join(o, &f->s, &f->voters, n_votes) < 0)
        goto err;
    f->last = xcalloc(max_subs, sizeof(*f->last));
    f->v = (struct scen_voters){.o = o,
                                .tokens = (const char(*)[SCEN_TOKEN_MAX])f->voters.tokens,
                                .n = n_votes,
                                .rate = rate};
    f->v.ack_ns = xcalloc(n_votes + 1, sizeof(*f->v.ack_ns));
    f->v.sent_ns = xcalloc(n_votes + 1, sizeof(*f->v.sent_ns));
    unsigned sources = o->sources;
    if (sources < max_subs / 20000 + 1)
        sources = max_subs / 20000 + 1; /* ~28k ports per source address and destination */
    const struct eng_config cfg = {
        .host = o->host,
        .port = o->port,
        .max_clients = max_subs,
        .threads = o->threads,
        .sources = sources,
        .proto = o->proto,
        .path = fan_path,
        .on_message = fan_on_message,
        .ctx = f,
    };
    f->eng = eng_start(&cfg);
    if (f->eng == NULL)
        goto err;
    f->ts = xcalloc(eng_threads(f->eng), sizeof(*f->ts));
    for (unsigned i = 0; i < eng_threads(f->eng); i++)
        f->ts[i].rnd = 0x2545f4914f6cdd1dull + i;
    return f;
err:
    fprintf(stderr, "tally-stress: fan-out setup failed\n");
    exit(1); /* a command-line run: nothing to recover */
}

int fan_grow(struct fan *f, uint32_t n, struct fan_step *st)
{
    uint64_t r0, f0, d0, r1, f1, d1;
    eng_count(f->eng, &r0, &f0, &d0);
    if (scen_join(f->o, &f->s, &f->subs, n) < 0)
        return -EPROTO;
    st->rss_joined = scen_server_sample(f->o->server_pid).rss;
    eng_open(f->eng, n);
    st->connect_s = eng_wait_ready(f->eng, FAN_READY_BASE_S + n / 1000);
    fo_sleep_ms(FAN_SETTLE_MS);
    st->rss_idle = scen_server_sample(f->o->server_pid).rss;
    eng_count(f->eng, &r1, &f1, &d1);
    st->subscribers = (uint32_t)r1 - (uint32_t)d1;
    st->connect_failed = f1 - f0;
    st->dropped = d1 - d0;
    return 0;
}

/* Sums the threads' step counters into st and clears them; measuring must be off. */
static void fan_collect(struct fan *f, struct fan_step *st)
{
    hist_init(&st->lat);
    hist_init(&st->newest);
    hist_init(&st->from_send);
    for (unsigned i = 0; i < eng_threads(f->eng); i++) {
        struct fan_tstats *ts = &f->ts[i];
        hist_merge(&st->lat, &ts->lat);
        hist_merge(&st->newest, &ts->newest);
        hist_merge(&st->from_send, &ts->from_send);
        st->before_ack += ts->before_ack;
        st->delivered += ts->delivered;
        st->unmatched += ts->unmatched;
        st->stale += ts->stale;
        hist_init(&ts->lat);
        hist_init(&ts->newest);
        hist_init(&ts->from_send);
        ts->delivered = ts->unmatched = ts->stale = ts->before_ack = 0;
    }
}

/* Subscribers whose last results of poll reflect fewer than `acked` votes (measuring is off). */
static uint64_t fan_behind(const struct fan *f, int64_t poll, uint64_t acked)
{
    uint64_t behind = 0;
    for (uint32_t i = 0; i < f->subs.n; i++) {
        uint64_t last = __atomic_load_n(&f->last[i], __ATOMIC_RELAXED);
        bool same = (last >> 32) == ((uint64_t)poll & 0xffffffffu);
        behind += !same || (last & 0xffffffffu) < acked;
    }
    return behind;
}

int fan_measure(struct fan *f, struct fan_step *st)
{
    int64_t poll = 0;
    char prefix[48];
    if (scen_poll_create(f->o, &f->s, 4, &poll) < 0)
        return -EPROTO;
    memset(f->v.ack_ns, 0, (f->v.n + 1) * sizeof(*f->v.ack_ns));
    memset(f->v.sent_ns, 0, (f->v.n + 1) * sizeof(*f->v.sent_ns));
    atomic_store(&f->v.acked, 0);
    atomic_store(&f->v.sent, 0);
    atomic_store(&f->v.errors, 0);
    atomic_store(&f->v.refused, 0);
    snprintf(prefix, sizeof(prefix), "fan-%" PRId64, poll);
    f->v.key_prefix = prefix;
    f->v.poll_id = poll;
    atomic_store(&f->poll_id, poll);
    if (scen_poll_state(f->o, &f->s, poll, true, NULL) < 0)
        return -EPROTO;
    uint64_t d0, d1, x, y;
    eng_count(f->eng, &x, &y, &d0);
    st->before = scen_server_sample(f->o->server_pid);
    uint64_t t0 = fo_now_ns();
    atomic_store_explicit(&f->measuring, true, memory_order_release);
    scen_voters_run(&f->v, t0 + (uint64_t)(f->seconds + FAN_VOTE_GRACE_S) * 1000000000ull);
    fo_sleep_ms(FAN_DRAIN_MS);
    atomic_store_explicit(&f->measuring, false, memory_order_release);
    st->run_s = (double)(fo_now_ns() - t0) / 1e9;
    st->after = scen_server_sample(f->o->server_pid);
    fo_sleep_ms(FAN_QUIESCE_MS);
    fan_collect(f, st);
    st->behind = fan_behind(f, poll, atomic_load(&f->v.acked));
    /* Subscribers not connected get nothing: they are counted as connect errors already. */
    uint64_t absent = f->subs.n > st->subscribers ? f->subs.n - st->subscribers : 0;
    st->behind = st->behind > absent ? st->behind - absent : 0;
    eng_count(f->eng, &x, &y, &d1);
    st->dropped += d1 - d0;
    st->votes_planned = f->v.n;
    st->votes_acked = atomic_load(&f->v.acked);
    st->vote_errors = atomic_load(&f->v.errors);
    st->vote_refused = atomic_load(&f->v.refused);
    st->ack = f->v.lat;
    /* Closed, so the next step's poll is the only one moving. */
    return scen_poll_state(f->o, &f->s, poll, false, NULL);
}

const struct scen_joins *fan_joins(const struct fan *f)
{
    return &f->subs;
}

unsigned fan_threads(const struct fan *f)
{
    return eng_threads(f->eng);
}

void fan_destroy(struct fan *f, struct eng_stats *es)
{
    eng_stop(f->eng, es);
    scen_joins_free(&f->voters);
    scen_joins_free(&f->subs);
    free(f->v.ack_ns);
    free(f->v.sent_ns);
    free(f->last);
    free(f->ts);
    free(f);
}
