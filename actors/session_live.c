/*
 * session_live.c - a session's live subscribers (WebSocket and SSE): the
 * subscription reply, the sequenced events, coalesced results and presence.
 *
 * Encoded once. Every message is built and encoded in the three wire formats
 * once, into one stream_msg, and each network thread with subscribers of the
 * session gets one reference: the bytes are shared by every connection.
 *
 * Resume. The last SESSION_REPLAY_MAX sequenced messages stay in a ring. A
 * subscriber resuming from `since` inside the ring is answered at once:
 * hello, the ring's messages after since, then results. An older since asks
 * the store for the events after since; while that is pending, the session
 * goes on and its new events enter the ring. The seam: the store's rows are
 * taken up to seq0, the session's seq when the store was asked, and the ring
 * gives seq0+1 up to the seq when the store answers. Every event up to seq0
 * was committed before the actor saw it, hence before the store was asked,
 * so the rows reach seq0; rows past seq0 (committed but not yet seen by the
 * actor when the rows were read) are dropped, as the ring brings them. So
 * each event comes once, with no gap. If the rows do not reach back to since
 * (past the retention), the replay is left out: hello alone carries the
 * whole state.
 *
 * Order. The reply and every broadcast leave this actor, in order, for the
 * network thread's FIFO mailbox, which registers the subscriber when it
 * handles the reply; so a subscriber gets its reply's events, then exactly
 * the broadcasts after it. A subscription is counted (and broadcasts go to
 * its thread) from the moment it is answered.
 *
 * Coalescing. A committed vote on a poll whose last results went out at
 * least LIVE_RESULTS_MS ago is broadcast at once (a lone vote is seen
 * without waiting); otherwise it marks the poll dirty, and the session's
 * tick, armed for the moment the earliest dirty poll's window ends,
 * broadcasts one results per dirty open poll whose window has passed. So
 * every poll gets at most one results per LIVE_RESULTS_MS, and a vote waits
 * at most that long plus LIVE_TICK_MS (the tick never runs more often).
 *
 * The tick runs only while the session has subscribers, and only as often
 * as there is something to do: at the next dirty poll's window, every
 * LIVE_TICK_MS while the session is shared with other instances (their
 * counts are read from it), else every LIVE_IDLE_TICK_MS for presence: a
 * fixed 20 ms tick cost every session with an audience 50 wake-ups a
 * second, idle or not.
 *
 * Dirty is cleared before poll.closed goes out, and only an open poll is
 * ever dirty, so results never follow poll.closed nor precede poll.opened.
 * Presence (participants connected now, each counted once however many
 * connections it has) goes from the same tick, at most every
 * LIVE_PRESENCE_MS, when it changed or someone subscribed.
 *
 * Actor thread only, except session__live_spill (any thread).
 */
#include "actors/session.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/stream.h"
#include "actors/wire.h"
#include "core/actor.h"
#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

static_assert(SESSION_REPLAY_MAX >= 2, "a ring holds at least the last two events");
static_assert(LIVE_TICK_MS >= ACTOR_TICK_RESOLUTION_MS, "the runtime ticks no faster");
static_assert(LIVE_IDLE_TICK_MS < LIVE_PRESENCE_MS, "presence changes still go within a second");
static_assert(LIVE_PRESENCE_MS >= LIVE_TICK_MS, "presence goes from the results tick");
static_assert(LIVE_RESULTS_MS >= LIVE_TICK_MS, "the tick is finer than the results window");

/* A resume waiting for STORE_EVENTS_SINCE. */
struct live_pending {
    struct api_req *req;
    int64_t since;
    int64_t seq0; /* the session's seq when the store was asked */
};

static const char *const LIVE_CONTENT_TYPES[STREAM_FMT_COUNT] = {
    [STREAM_WS_JSON] = "application/octet-stream", /* WebSocket frames */
    [STREAM_WS_MSGPACK] = "application/octet-stream",
    [STREAM_SSE] = "text/event-stream",
};

static void live_on_tick(struct actor *a, void *ctx, uint64_t now_ms);

/* The live state, made on first use; NULL when there is no sink. */
static struct session_live *live_get(struct session *s)
{
    struct session_live *l = s->live;

    if (l != NULL || s->as->sink == NULL)
        return l;
    l = xcalloc(1, sizeof(*l));
    l->subs = xcalloc(s->as->sink->threads, sizeof(*l->subs));
    l->part_conns = hmap_create(16);
    l->ring_lo = s->seq + 1; /* empty: earlier events are the store's to replay */
    l->ring_hi = s->seq;
    s->live = l;
    return l;
}

/* Takes p off the dirty list (it is on it). */
static void live_undirty(struct session_live *l, struct poll *p)
{
    TALLY_ASSERT(p->dirty && l->n_dirty > 0);
    p->dirty = false;
    for (uint32_t i = 0; i < l->n_dirty; i++) {
        if (l->dirty[i] == p) {
            l->dirty[i] = l->dirty[--l->n_dirty];
            return;
        }
    }
    TALLY_ASSERT(!"a dirty poll is on the list");
}

static const char *live_type(enum store_op_kind kind)
{
    const char *t = store_event_type(kind);

    TALLY_ASSERT(t != NULL); /* only sequenced ops reach here */
    return t;
}

/* true when a store row's type is one of the sequenced types. */
static bool live_type_known(const char type[], size_t size)
{
    static const enum store_op_kind kinds[] = {STORE_POLL_CREATE, STORE_POLL_OPEN,
                                               STORE_POLL_CLOSE, STORE_SESSION_CLOSE};

    if (memchr(type, '\0', size) == NULL)
        return false;
    for (size_t i = 0; i < ARRAY_LEN(kinds); i++) {
        if (strcmp(type, live_type(kinds[i])) == 0)
            return true;
    }
    return false;
}

/* ---- the replay ring ---- */

/* true when the ring holds every seq from..to (trivially when from > to). */
static bool live_ring_has(const struct session_live *l, int64_t from, int64_t to)
{
    int64_t lo = l->ring_hi - SESSION_REPLAY_MAX + 1;

    if (from > to)
        return true;
    if (lo < l->ring_lo)
        lo = l->ring_lo;
    return from >= lo && to <= l->ring_hi;
}

static void live_ring_clear(struct session_live *l)
{
    for (size_t i = 0; i < SESSION_REPLAY_MAX; i++) {
        stream_msg_unref(l->ring[i]);
        l->ring[i] = NULL;
    }
}

/* Keeps a reference to m, the session's newest sequenced message. */
static void live_ring_push(struct session *s, struct session_live *l, struct stream_msg *m)
{
    size_t slot = (size_t)(m->seq % SESSION_REPLAY_MAX);

    TALLY_ASSERT(m->kind == STREAM_SEQUENCED && m->seq > 0);
    if (m->seq != l->ring_hi + 1) {
        /* Only when seq moved without this actor (an acknowledgement lost
         * after commit): what the ring holds no longer runs up to m. */
        if (l->ring_hi >= l->ring_lo)
            log_warn("session %s: event %lld follows %lld; older events resume from storage",
                     s->code, (long long)m->seq, (long long)l->ring_hi);
        live_ring_clear(l);
        l->ring_lo = m->seq;
    }
    stream_msg_unref(l->ring[slot]);
    l->ring[slot] = stream_msg_ref(m);
    l->ring_hi = m->seq;
}

/* Appends the ring's messages from..to in fmt; live_ring_has() said they are there. */
static void live_ring_append(const struct session_live *l, struct buf *out, int fmt, int64_t from,
                             int64_t to)
{
    TALLY_ASSERT(live_ring_has(l, from, to));
    for (int64_t seq = from; seq <= to; seq++) {
        const struct stream_msg *m = l->ring[seq % SESSION_REPLAY_MAX];

        TALLY_ASSERT(m != NULL && m->seq == seq);
        buf_append(out, m->bytes[fmt]->data, m->bytes[fmt]->len);
    }
}

/* ---- broadcasts ---- */

/* Hands m to every network thread with subscribers; consumes the caller's reference. */
static void live_broadcast(struct session *s, struct stream_msg *m)
{
    const struct stream_sink *sink = s->as->sink;
    struct session_live *l = s->live;

    TALLY_ASSERT(sink != NULL && l != NULL);
    TALLY_ASSERT(sink->broadcast != NULL); /* filled in before traffic starts */
    for (unsigned t = 0; t < sink->threads && l->n_subs > 0; t++) {
        if (l->subs[t] > 0)
            sink->broadcast(sink->ctx, t, stream_msg_ref(m));
    }
    stream_msg_unref(m);
}

static json_t *live_results_data(const struct session *s, const struct poll *p)
{
    json_t *j = session__results_json(p);

    json_object_set_new(j, "as_of", json_integer(s->seq));
    return j;
}

void *session__live_event_data(const struct session *s, const struct store_op *op)
{
    json_t *j;

    if (s->as->sink == NULL || op->seq <= 0)
        return NULL;
    if (op->kind == STORE_POLL_CREATE)
        return poll__json(op->id, &op->poll, POLL_DRAFT, NULL);
    if (op->kind == STORE_POLL_CLOSE)
        return session__close_json(op);
    /* Open and session close carry their event's JSON, built by us. */
    TALLY_ASSERT(op->text != NULL);
    j = json_loads(op->text, 0, NULL);
    TALLY_ASSERT(j != NULL);
    return j;
}

void session__live_event(struct session *s, enum store_op_kind kind, int64_t poll_id, int64_t seq,
                         void *data)
{
    struct session_live *l;
    struct stream_msg *m;
    struct poll *p;

    if (data == NULL)
        return;
    l = live_get(s);
    TALLY_ASSERT(l != NULL); /* data exists only with a sink */
    if (kind == STORE_POLL_CLOSE) {
        /* Before poll.closed leaves: no results may follow it. */
        p = session__poll(s, poll_id);
        if (p != NULL && p->dirty)
            live_undirty(l, p);
    }
    m = stream_msg_new(STREAM_SEQUENCED, s->id);
    m->seq = seq;
    m->session_closed = kind == STORE_SESSION_CLOSE;
    wire_msg_encode(live_type(kind), seq, data, m->bytes);
    json_decref(data);
    live_ring_push(s, l, m);
    live_broadcast(s, m);
}

void session__live_sequenced(struct session *s, const struct store_op *op, void *data)
{
    session__live_event(s, op->kind, op->id, op->seq, data);
}

static void live_send_results(struct session *s, struct poll *p, uint64_t now_ms)
{
    struct stream_msg *m;
    json_t *d;

    TALLY_ASSERT(p->state == POLL_OPEN); /* closing clears dirty first */
    m = stream_msg_new(STREAM_RESULTS, s->id);
    m->poll_id = p->id;
    d = live_results_data(s, p);
    wire_msg_encode("results", 0, d, m->bytes);
    json_decref(d);
    p->results_ms = now_ms;
    live_broadcast(s, m);
}

/* The period until the session's next tick is needed (see the top). */
static uint32_t live_period(const struct session *s, const struct session_live *l, uint64_t now_ms)
{
    uint64_t wait;

    if (session__shared(s))
        return LIVE_TICK_MS;
    if (l->n_dirty == 0)
        return LIVE_IDLE_TICK_MS;
    /* Never more often than LIVE_TICK_MS: with many polls dirty at spread
     * phases the tick would otherwise chase each one. */
    wait = l->dirty_due_ms > now_ms ? l->dirty_due_ms - now_ms : 0;
    if (wait < LIVE_TICK_MS)
        return LIVE_TICK_MS;
    return wait > LIVE_IDLE_TICK_MS ? LIVE_IDLE_TICK_MS : (uint32_t)wait;
}

/* Arms the tick for the next moment it is needed; the runtime takes a lock
 * to change it, so an unchanged idle or shared period is left as it is. */
static void live_arm(struct session *s, struct session_live *l, uint64_t now_ms)
{
    uint32_t ms = live_period(s, l, now_ms);

    if (ms == l->tick_ms && (ms == LIVE_IDLE_TICK_MS || ms == LIVE_TICK_MS))
        return;
    actor_set_tick(s->actor, ms, live_on_tick);
    l->tick_ms = ms;
}

void session__live_dirty(struct session *s, struct poll *p)
{
    struct session_live *l = s->live;
    uint64_t now_ms;

    if (l == NULL || l->n_subs == 0 || p->dirty || p->state != POLL_OPEN)
        return;
    now_ms = clock_now_ms();
    if (now_ms - p->results_ms >= LIVE_RESULTS_MS) {
        live_send_results(s, p, now_ms); /* the window is open: no reason to wait */
        return;
    }
    p->dirty = true;
    if (l->n_dirty == l->cap_dirty) {
        l->cap_dirty = l->cap_dirty ? 2 * l->cap_dirty : 8;
        l->dirty = xrealloc(l->dirty, l->cap_dirty * sizeof(*l->dirty));
    }
    if (l->n_dirty == 0 || p->results_ms + LIVE_RESULTS_MS < l->dirty_due_ms) {
        l->dirty_due_ms = p->results_ms + LIVE_RESULTS_MS;
        l->dirty[l->n_dirty++] = p;
        live_arm(s, l, now_ms);
        return;
    }
    l->dirty[l->n_dirty++] = p;
}

static void live_flush_results(struct session *s, struct session_live *l, uint64_t now_ms)
{
    uint64_t due = UINT64_MAX;

    if (now_ms < l->dirty_due_ms)
        return;
    for (uint32_t i = 0; i < l->n_dirty;) {
        struct poll *p = l->dirty[i];

        TALLY_ASSERT(p->dirty);
        if (now_ms - p->results_ms < LIVE_RESULTS_MS) {
            if (p->results_ms + LIVE_RESULTS_MS < due)
                due = p->results_ms + LIVE_RESULTS_MS;
            i++;
            continue;
        }
        p->dirty = false;
        l->dirty[i] = l->dirty[--l->n_dirty];
        live_send_results(s, p, now_ms);
    }
    l->dirty_due_ms = due;
}

static void live_presence(struct session *s, struct session_live *l, uint64_t now_ms)
{
    uint32_t here = (uint32_t)hmap_count(l->part_conns);
    uint32_t n;
    struct stream_msg *m;
    json_t *d;

    atomic_store_explicit(&s->presence_local, here, memory_order_relaxed);
    n = here + atomic_load_explicit(&s->presence_others, memory_order_relaxed);

    if (l->presence_ms != 0 && now_ms - l->presence_ms < LIVE_PRESENCE_MS)
        return;
    if (!l->presence_due && n == l->presence_sent)
        return;
    m = stream_msg_new(STREAM_PRESENCE, s->id);
    d = json_pack("{s:I}", "participants", (json_int_t)n);
    wire_msg_encode("presence", 0, d, m->bytes);
    json_decref(d);
    l->presence_ms = now_ms;
    l->presence_sent = n;
    l->presence_due = false;
    live_broadcast(s, m);
}

/* No subscriber left: stop ticking, forget what was waiting to be said. */
static void live_idle(struct session *s, struct session_live *l)
{
    TALLY_ASSERT(l->n_subs == 0);
    atomic_store_explicit(&s->presence_local, 0, memory_order_relaxed);
    for (uint32_t i = 0; i < l->n_dirty; i++)
        l->dirty[i]->dirty = false;
    l->n_dirty = 0;
    if (l->tick_ms != 0) {
        actor_set_tick(s->actor, 0, NULL);
        l->tick_ms = 0;
    }
}

static void live_on_tick(struct actor *a, void *ctx, uint64_t now_ms)
{
    struct session *s = ctx;
    struct session_live *l = s->live;

    TALLY_ASSERT(s->actor == a);
    TALLY_ASSERT(l != NULL);
    session__live_drain_spill(s);
    if (l->n_subs == 0) {
        live_idle(s, l);
        return;
    }
    if (session__shared(s))
        session__follow_tick(s, now_ms);
    if (l->n_dirty > 0)
        live_flush_results(s, l, now_ms);
    live_presence(s, l, now_ms);
    live_arm(s, l, now_ms);
}

/* ---- subscribing ---- */

static void live_hello(const struct session *s, const struct api_req *req, struct buf *out)
{
    json_t *d = json_object();

    json_object_set_new(d, "session", session__json(s));
    json_object_set_new(d, "polls", session__polls_json(s));
    json_object_set_new(d, "seq", json_integer(s->seq));
    json_object_set_new(d, "you",
                        json_pack("{s:s,s:I}", "role",
                                  req->is_participant ? "participant" : "presenter", "id",
                                  (json_int_t)req->subscriber_id));
    wire_msg_append(out, req->format, "hello", 0, d);
    json_decref(d);
}

/* The current results of every open poll, after whatever the reply replays. */
static void live_results_append(const struct session *s, const struct api_req *req,
                                struct buf *out)
{
    for (uint32_t i = 0; i < s->n_polls; i++) {
        const struct poll *p = s->polls[i];
        json_t *d;

        if (p->state != POLL_OPEN)
            continue;
        d = live_results_data(s, p);
        wire_msg_append(out, req->format, "results", 0, d);
        json_decref(d);
    }
}

/* Counts the subscription and answers 200 with body (emptied). */
static void live_accept(struct session *s, struct session_live *l, struct api_req *req,
                        struct buf *body)
{
    size_t len = 0;
    char *bytes;

    TALLY_ASSERT(req->net_thread < s->as->sink->threads);
    TALLY_ASSERT(body->len > 0); /* at least hello */
    l->subs[req->net_thread]++;
    l->n_subs++;
    if (req->is_participant) {
        uintptr_t n = (uintptr_t)hmap_get(l->part_conns, (uint64_t)req->subscriber_id);

        hmap_put(l->part_conns, (uint64_t)req->subscriber_id, (void *)(n + 1));
    }
    l->presence_due = true;
    if (l->tick_ms == 0)
        live_arm(s, l, clock_now_ms());
    bytes = buf_steal(body, &len);
    api_reply_raw(req, 200, LIVE_CONTENT_TYPES[req->format], bytes, len);
}

/* since is older than the ring: ask the store, keep the request pending. */
static void live_resume_from_store(struct session *s, struct session_live *l,
                                   struct api_req *req)
{
    struct live_pending *pend;
    struct store_op *op;

    if (l->n_pending == SESSION_PENDING_SUBS_MAX) {
        session__reply_503(req, "busy", "too many clients resuming this session; try again");
        return;
    }
    pend = xcalloc(1, sizeof(*pend));
    pend->req = req;
    pend->since = req->since;
    pend->seq0 = s->seq;
    op = session__op_new(STORE_EVENTS_SINCE, s->actor, (uintptr_t)pend);
    op->session_id = s->id;
    op->seq = req->since;
    if (!store_submit(s->as->store, op)) {
        store_op_free(op);
        free(pend);
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        return;
    }
    l->pending[l->n_pending++] = pend;
}

void session__live_subscribe(struct session *s, struct api_req *req, const struct participant *p)
{
    struct session_live *l = live_get(s);
    struct buf body = BUF_INIT;

    if (l == NULL) {
        session__reply_503(req, "unavailable", "live updates are not served here");
        return;
    }
    if ((unsigned)req->format >= STREAM_FMT_COUNT || req->net_thread >= s->as->sink->threads) {
        api_reply_error(req, 400, "invalid_request", "no such stream format or thread");
        return;
    }
    if (req->since > s->seq) {
        api_reply_error(req, 400, "invalid_request", "since is ahead of the session (seq %lld)",
                        (long long)s->seq);
        return;
    }
    req->session_id = s->id;
    req->is_participant = p != NULL;
    req->subscriber_id = p != NULL ? p->id : s->id;
    if (req->since >= 0 && !live_ring_has(l, req->since + 1, s->seq)) {
        live_resume_from_store(s, l, req);
        return;
    }
    live_hello(s, req, &body);
    if (req->since >= 0)
        live_ring_append(l, &body, req->format, req->since + 1, s->seq);
    live_results_append(s, req, &body);
    live_accept(s, l, req, &body);
}

/*
 * Appends the store's rows since+1..seq0 in fmt. false when they are not all
 * there, in order (pruned, or a row that is not an event of ours).
 */
static bool live_rows_append(const struct store_op *op, int fmt, int64_t since, int64_t seq0,
                             struct buf *out)
{
    int64_t want = since + 1;

    for (uint32_t i = 0; i < op->n_events && want <= seq0; i++) {
        const struct store_event *ev = &op->events[i];
        json_t *data;

        if (ev->seq <= since)
            continue;
        if (ev->seq != want || ev->payload == NULL || !live_type_known(ev->type, sizeof(ev->type)))
            return false;
        data = json_loads(ev->payload, 0, NULL);
        if (data == NULL)
            return false;
        wire_msg_append(out, fmt, ev->type, ev->seq, data);
        json_decref(data);
        want++;
    }
    return want == seq0 + 1;
}

static struct live_pending *live_pending_take(struct session_live *l, struct live_pending *pend)
{
    for (uint32_t i = 0; i < l->n_pending; i++) {
        if (l->pending[i] == pend) {
            l->pending[i] = l->pending[--l->n_pending];
            return pend;
        }
    }
    TALLY_ASSERT(!"events op of a resume this session does not know");
    return NULL;
}

void session__live_since_done(struct session *s, struct store_op *op)
{
    struct session_live *l = s->live;
    struct live_pending *pend;
    struct api_req *req;
    struct buf rows = BUF_INIT;
    struct buf body = BUF_INIT;

    TALLY_ASSERT(l != NULL);
    pend = live_pending_take(l, (struct live_pending *)(uintptr_t)op->tag);
    req = pend->req;
    if (op->status != STORE_OK) {
        session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
        goto out_free;
    }
    if (!live_ring_has(l, pend->seq0 + 1, s->seq)) { /* the ring lost the seam */
        session__reply_503(req, "busy", "the session moved on while resuming; try again");
        goto out_free;
    }
    live_hello(s, req, &body);
    if (live_rows_append(op, req->format, pend->since, pend->seq0, &rows)) {
        buf_append(&body, rows.data, rows.len);
        live_ring_append(l, &body, req->format, pend->seq0 + 1, s->seq);
    } else {
        log_info("session %s: events after %lld are no longer kept; resuming from hello",
                 s->code, (long long)pend->since);
    }
    live_results_append(s, req, &body);
    live_accept(s, l, req, &body);

out_free:
    buf_free(&rows);
    buf_free(&body);
    free(pend);
    store_op_free(op);
}

/* ---- unsubscribing ---- */

/* Drops one subscription of participant id; false when it had none. */
static bool live_part_drop(struct session_live *l, int64_t id)
{
    uint64_t k = (uint64_t)id;
    uintptr_t n = id > 0 ? (uintptr_t)hmap_get(l->part_conns, k) : 0;

    if (n == 0)
        return false;
    if (n > 1)
        hmap_put(l->part_conns, k, (void *)(n - 1));
    else
        hmap_del(l->part_conns, k);
    return true;
}

void session__live_unsubscribe(struct session *s, struct api_req *req)
{
    struct session_live *l = s->live;
    unsigned t = req->net_thread;

    /* The network side unsubscribes only what it subscribed; a mismatch is
     * its bug, logged and ignored rather than let it skew the counts. */
    if (l == NULL || t >= s->as->sink->threads || l->subs[t] == 0 ||
        (req->is_participant && !live_part_drop(l, req->subscriber_id))) {
        log_error("session %s: unsubscribe of a subscription it does not have (thread %u)",
                  s->code, t);
        api_reply_raw(req, 200, NULL, NULL, 0);
        return;
    }
    l->subs[t]--;
    l->n_subs--;
    if (l->n_subs == 0)
        live_idle(s, l);
    api_reply_raw(req, 200, NULL, NULL, 0);
}

void session__live_spill(struct session *s, struct api_req *req)
{
    struct live_spill *n = xmalloc(sizeof(*n));

    n->req = req;
    n->next = atomic_load_explicit(&s->unsub_spill, memory_order_relaxed);
    /* Release: the actor that takes the list sees the request complete. */
    while (!atomic_compare_exchange_weak_explicit(&s->unsub_spill, &n->next, n,
                                                  memory_order_release, memory_order_relaxed))
        ;
}

/* Takes the whole spilled list (acquire pairs with the pushers' release). */
static struct live_spill *live_spill_take(struct session *s)
{
    if (atomic_load_explicit(&s->unsub_spill, memory_order_relaxed) == NULL)
        return NULL;
    return atomic_exchange_explicit(&s->unsub_spill, NULL, memory_order_acquire);
}

void session__live_drain_spill(struct session *s)
{
    struct live_spill *n = live_spill_take(s);

    /* A spilled unsubscription is counted, so the session ticks until it is
     * drained, here or from the next message. */
    while (n != NULL) {
        struct live_spill *next = n->next;

        session__live_unsubscribe(s, n->req);
        free(n);
        n = next;
    }
}

void session__live_free(struct session *s)
{
    struct session_live *l = s->live;

    for (struct live_spill *n = live_spill_take(s), *next; n != NULL; n = next) {
        next = n->next;
        api_req_free(n->req);
        free(n);
    }
    if (l == NULL)
        return;
    live_ring_clear(l);
    /* Their store ops may still be in the store at shutdown: only the
     * requests are ours to free. */
    for (uint32_t i = 0; i < l->n_pending; i++) {
        api_req_free(l->pending[i]->req);
        free(l->pending[i]);
    }
    hmap_destroy(l->part_conns);
    free(l->dirty);
    free(l->subs);
    free(l);
    s->live = NULL;
}
