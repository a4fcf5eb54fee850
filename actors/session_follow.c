/*
 * session_follow.c - a session that other instances change too (CONTRACT
 * section 5).
 *
 * Events. The store's follower reports that another instance committed
 * events of the session up to some seq (MSG_FOLLOW). The actor then reads
 * event_log after its own seq (an EVENTS_SINCE op tagged SESSION_FOLLOW_TAG)
 * and applies each event in seq order, exactly as if it had made the change
 * itself: the poll is added, opened or closed, the session closed, seq
 * advances, and the event goes to live subscribers with its seq. So every
 * subscriber, on every instance, gets the same gap-free run.
 *
 * Our own events. Only one structural op of the session is at the store at a
 * time (session_struct.c). While it is, a read stops before the first row
 * this instance wrote: that row is the op's, and its completion delivers it.
 * If the op comes back with a seq past events not yet read (another
 * instance's change committed between ours and our last read), the op is
 * parked, the gap is read and delivered, and only then is the op's own event
 * sent and its request answered. The database gives seqs in commit order
 * (store.c, append_event), so nothing can be out of order.
 *
 * Requests for what another instance created. The lobby looks up a code, poll
 * or token the directory lacks (actors.c). A request naming a poll that the
 * database says is this session's, but whose poll.created was not read yet,
 * waits for the next read (at most SESSION_WAITING_MAX of them).
 *
 * Counts. Votes are not in event_log. While another instance shares the
 * database (actors_set_peers), a committed vote does not change counts in
 * memory; instead every open poll's counts are read from the database while
 * the session has subscribers, SHARED_COUNTS_MS after the last read ended
 * (or twice as long as it took, if longer), and before a results request is
 * answered. The database's counts hold every instance's
 * committed votes and nothing else, and a later read never holds fewer, so
 * version (the number of votes counted) only grows. Each read starts from
 * what the poll's earlier reads settled (store_count_base), so it scans only
 * the votes since, not all of the poll's.
 *
 * Actor thread only.
 */
#include "actors/session.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "core/log.h"

static void follow_pump(struct session *s);

/* ---- applying an event another instance committed ---- */

/* A poll of a poll.created payload; NULL when it does not fit. */
static struct poll *follow_poll_created(struct session *s, json_t *d)
{
    struct api_poll_spec spec = {0};
    json_int_t id = json_integer_value(json_object_get(d, "id"));
    json_t *opts = json_object_get(d, "options");
    const char *kind = json_string_value(json_object_get(d, "kind"));
    const char *q = json_string_value(json_object_get(d, "question"));
    size_t n = json_array_size(opts);

    if (id <= 0 || q == NULL || kind == NULL || n < 2 || n > API_OPTIONS_MAX ||
        !poll_kind_parse(kind, &spec.kind))
        return NULL;
    if (session__poll(s, id) != NULL)
        return session__poll(s, id);
    for (size_t i = 0; i < n; i++) {
        if (!json_is_string(json_array_get(opts, i)))
            return NULL;
    }
    spec.question = xstrdup(q);
    spec.n_options = (uint32_t)n;
    spec.max_choices = (uint32_t)json_integer_value(json_object_get(d, "max_choices"));
    for (size_t i = 0; i < n; i++)
        spec.options[i] = xstrdup(json_string_value(json_array_get(opts, i)));
    return session__add_poll(s, id, &spec, POLL_DRAFT);
}

/* Asks for p's counts; req (or NULL) is answered with them. false: not sent. */
static bool counts_send(struct session *s, struct poll *p, struct api_req *req)
{
    struct store_op *op = session__op_new(STORE_POLL_COUNTS, s->actor, (uintptr_t)req);

    op->session_id = s->id;
    op->id = p->id;
    op->count_from_base = true;
    if (p->count_base != NULL)
        op->base = *p->count_base;
    if (!store_submit(s->as->store, op)) {
        store_op_free(op);
        return false;
    }
    if (req == NULL) {
        p->count_inflight = true;
        p->count_ms = clock_now_ms();
    }
    return true;
}

/* poll.closed: the final counts are the payload's; the total is read next. */
static void follow_poll_closed(struct session *s, struct poll *p, json_t *d)
{
    json_t *counts = json_object_get(d, "counts");

    uint64_t sum = 0;

    p->state = POLL_CLOSED;
    p->closing = false;
    for (uint32_t i = 0; i < p->n_options && i < json_array_size(counts); i++) {
        json_int_t c = json_integer_value(json_array_get(counts, i));

        p->counts[i] = c > 0 ? (uint64_t)c : 0;
        sum += p->counts[i];
    }
    /* One choice per vote: the total is the sum. A multi poll's is read. */
    if (p->kind != POLL_MULTI && sum > p->version)
        p->total = p->version = sum;
    (void)counts_send(s, p, NULL);
}

static enum store_op_kind follow_kind(const char *type)
{
    if (strcmp(type, "poll.created") == 0)
        return STORE_POLL_CREATE;
    if (strcmp(type, "poll.opened") == 0)
        return STORE_POLL_OPEN;
    if (strcmp(type, "poll.closed") == 0)
        return STORE_POLL_CLOSE;
    return STORE_SESSION_CLOSE;
}

/* Applies one event (e->seq == s->seq + 1) and sends it to subscribers. */
static void follow_apply(struct session *s, const struct store_event *e)
{
    enum store_op_kind kind = follow_kind(e->type);
    json_t *d = json_loads(e->payload, 0, NULL);
    json_int_t pid = json_integer_value(json_object_get(d, "id"));
    struct poll *p = kind == STORE_SESSION_CLOSE ? NULL : session__poll(s, pid);

    TALLY_ASSERT(e->seq == s->seq + 1);
    if (kind == STORE_POLL_CREATE)
        p = follow_poll_created(s, d);
    if (d == NULL || (kind != STORE_SESSION_CLOSE && p == NULL))
        log_error("session %s: event %lld (%s) from another instance does not fit; passed on as it is",
                  s->code, (long long)e->seq, e->type);
    if (kind == STORE_POLL_OPEN && p != NULL && p->state == POLL_DRAFT)
        p->state = POLL_OPEN;
    else if (kind == STORE_POLL_CLOSE && p != NULL)
        follow_poll_closed(s, p, d);
    else if (kind == STORE_SESSION_CLOSE)
        s->closed = true;
    session__seq_set(s, e->seq);
    if (d != NULL && s->as->sink != NULL)
        session__live_event(s, kind, p != NULL ? p->id : 0, e->seq, d);
    else
        json_decref(d);
}

/* ---- reading event_log ---- */

/* Completes the parked op; a gap still open is given up on (logged). */
static void follow_unpark(struct session *s)
{
    struct store_op *op = s->parked;

    s->parked = NULL;
    s->follow_tries = 0;
    if (op->seq > s->seq + 1) {
        log_error("session %s: events %lld to %lld could not be read; subscribers miss them",
                  s->code, (long long)s->seq + 1, (long long)op->seq - 1);
        session__seq_set(s, op->seq - 1);
    }
    session__struct_done(s, op);
}

/* Hands the requests the finished read covered back to the session. */
static void follow_release(struct session *s, uint32_t covered)
{
    struct api_req *reqs[SESSION_WAITING_MAX];

    TALLY_ASSERT(covered <= s->n_waiting);
    memcpy(reqs, s->waiting, covered * sizeof(reqs[0]));
    s->n_waiting -= covered;
    memmove(s->waiting, s->waiting + covered, s->n_waiting * sizeof(s->waiting[0]));
    for (uint32_t i = 0; i < covered; i++) {
        reqs[i]->caught_up = true;
        session__on_req(s, reqs[i]);
    }
}

/* No read could be made or it failed: nobody waits for one. */
static void follow_failed(struct session *s)
{
    s->follow_want = false;
    if (s->parked != NULL)
        follow_unpark(s);
    follow_release(s, s->n_waiting);
}

static void follow_pump(struct session *s)
{
    struct store_op *op;

    if (!s->follow_want || s->follow_inflight)
        return;
    op = session__op_new(STORE_EVENTS_SINCE, s->actor, SESSION_FOLLOW_TAG);
    op->session_id = s->id;
    op->seq = s->seq;
    op->id = s->n_waiting; /* the requests this read covers */
    if (!store_submit(s->as->store, op)) {
        store_op_free(op);
        follow_failed(s);
        return;
    }
    s->follow_want = false;
    s->follow_inflight = true;
}

void session__follow_hint(struct session *s, int64_t seq)
{
    if (seq <= s->seq)
        return;
    s->follow_want = true;
    follow_pump(s);
}

/* Whether e may be applied now (see the top of the file). */
static bool follow_may_apply(const struct session *s, const struct store_event *e)
{
    if (e->seq != s->seq + 1)
        return false;
    if (s->parked != NULL)
        return e->seq < s->parked->seq;
    return !(s->struct_inflight && e->own);
}

void session__follow_done(struct session *s, struct store_op *op)
{
    uint32_t covered = (uint32_t)op->id;

    TALLY_ASSERT(s->follow_inflight);
    s->follow_inflight = false;
    if (op->status != STORE_OK) {
        store_op_free(op);
        follow_failed(s);
        return;
    }
    for (uint32_t i = 0; i < op->n_events; i++) {
        if (op->events[i].seq <= s->seq)
            continue;
        if (!follow_may_apply(s, &op->events[i]))
            break;
        follow_apply(s, &op->events[i]);
    }
    store_op_free(op);
    if (s->parked != NULL && s->seq + 1 >= s->parked->seq)
        follow_unpark(s);
    else if (s->parked != NULL && ++s->follow_tries >= SESSION_FOLLOW_TRIES)
        follow_unpark(s);
    else if (s->parked != NULL)
        s->follow_want = true;
    follow_release(s, covered <= s->n_waiting ? covered : s->n_waiting);
    if (s->n_waiting > 0)
        s->follow_want = true;
    follow_pump(s);
}

bool session__follow_park(struct session *s, struct store_op *op)
{
    if (s->parked != NULL)
        return false;
    s->parked = op;
    s->follow_tries = 0;
    s->follow_want = true;
    follow_pump(s);
    return true;
}

bool session__follow_wait(struct session *s, struct api_req *req)
{
    if (s->n_waiting == SESSION_WAITING_MAX) {
        session__reply_503(req, "busy", "this session is catching up; try again");
        return true;
    }
    s->waiting[s->n_waiting++] = req;
    s->follow_want = true;
    follow_pump(s);
    return true;
}

void session__follow_free(struct session *s)
{
    for (uint32_t i = 0; i < s->n_waiting; i++)
        api_req_free(s->waiting[i]);
    s->n_waiting = 0;
    store_op_free(s->parked);
    s->parked = NULL;
}

/* ---- counts from the database ---- */

void session__follow_tick(struct session *s, uint64_t now_ms)
{
    for (uint32_t i = 0; i < s->n_polls; i++) {
        struct poll *p = s->polls[i];

        if (p->state == POLL_OPEN && !p->closing && !p->count_inflight &&
            now_ms - p->count_ms >= p->count_gap_ms)
            (void)counts_send(s, p, NULL);
    }
}

void session__follow_results(struct session *s, struct api_req *req, struct poll *p)
{
    if (!counts_send(s, p, req))
        api_reply_json(req, 200, session__results_json(p)); /* what memory holds */
}

bool session__counts_apply(struct poll *p, const struct store_op *op)
{
    if (!op->counted || op->total <= p->version)
        return false;
    for (uint32_t i = 0; i < p->n_options; i++)
        p->counts[i] = op->counts[i];
    p->total = op->total;
    p->version = op->total;
    return true;
}

void session__counts_done(struct session *s, struct store_op *op)
{
    struct api_req *req = (struct api_req *)(uintptr_t)op->tag;
    struct poll *p = session__poll(s, op->id);

    if (p != NULL && req == NULL) {
        /* The next read waits twice as long as this one took, so that a
         * poll with many votes does not keep the database counting. */
        uint64_t now_ms = clock_now_ms(), took = now_ms - p->count_ms;

        p->count_inflight = false;
        p->count_ms = now_ms;
        p->count_gap_ms = took * 2 > SHARED_COUNTS_MS ? (uint32_t)(took * 2) : SHARED_COUNTS_MS;
    }
    /* Reads in flight together started from the same base: keep the one
     * that got furthest (each is a correct base). */
    if (p != NULL && op->status == STORE_OK && op->counted && op->count_from_base) {
        if (p->count_base == NULL)
            p->count_base = xcalloc(1, sizeof(*p->count_base));
        if (op->base.id >= p->count_base->id)
            *p->count_base = op->base;
    }
    /* A close in progress counts in its own transaction. */
    if (p != NULL && op->status == STORE_OK && !p->closing && session__counts_apply(p, op) &&
        p->state == POLL_OPEN)
        session__live_dirty(s, p);
    if (req != NULL && p != NULL)
        api_reply_json(req, 200, session__results_json(p));
    else if (req != NULL)
        api_reply_error(req, 404, "not_found", "no poll %lld", (long long)op->id);
    store_op_free(op);
}
