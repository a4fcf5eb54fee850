/*
 * session_struct.c - the presenter's structural operations: poll create,
 * open and close, and session close.
 *
 * They go to the store one at a time, the next only when the previous has
 * completed, so the session's events (poll.created, poll.opened, poll.closed,
 * session.closed) get their seqs in the order the presenter asked for them
 * even with several writer threads. Waiting requests sit in a bounded FIFO.
 *
 * Closing a poll first stops new votes on it, then waits until its votes in
 * flight have completed, and only then builds poll.closed with the final
 * counts: every vote the database holds for the poll is in those counts, and
 * no result can change after poll.closed.
 *
 * Memory changes only when the store reports STORE_OK, and the reply is sent
 * then; the event goes to live subscribers at the same moment
 * (session_live.c). Actor thread only.
 */
#include "actors/session.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

static void struct_start(struct session *s, struct api_req *req);
static void struct_session_close_step(struct session *s);

/* Event payloads, built on the writer thread from what the op holds. */
static char *struct_ev_poll_created(const struct store_op *op)
{
    return json__text(poll__json(op->id, &op->poll, POLL_DRAFT, NULL));
}

/* poll.closed carries the counts the database gave inside the close. */
static char *struct_ev_poll_closed(const struct store_op *op)
{
    return json__text(session__close_json(op));
}

static char *struct_ev_prebuilt(const struct store_op *op)
{
    TALLY_ASSERT(op->text != NULL);
    return xstrdup(op->text);
}

/* Serves queued requests until one of them is waiting on the store. */
static void struct_pump(struct session *s)
{
    while (s->cur == NULL && s->queue_len > 0) {
        struct api_req *req = s->queue[s->queue_head];

        s->queue_head = (s->queue_head + 1) % SESSION_QUEUE_MAX;
        s->queue_len--;
        struct_start(s, req);
    }
}

/* Ends the current request: undoes a poll's closing mark and answers 503. */
static void struct_fail(struct session *s, struct store_op *op)
{
    struct api_req *req = s->cur;

    TALLY_ASSERT(req != NULL);
    if (op->kind == STORE_POLL_CLOSE) {
        struct poll *p = session__poll(s, op->id);

        if (p != NULL)
            p->closing = false;
    }
    s->cur = NULL;
    s->draining = NULL;
    store_op_free(op);
    session__reply_503(req, "storage_unavailable", "storage is unavailable; try again");
}

static void struct_send(struct session *s, struct store_op *op)
{
    TALLY_ASSERT(s->cur != NULL);
    op->session_id = s->id;
    s->struct_inflight = true;
    if (!store_submit(s->as->store, op)) {
        s->struct_inflight = false;
        struct_fail(s, op);
    }
}

static bool struct_spec_valid(struct api_poll_spec *sp, char *why, size_t why_len)
{
    size_t qlen = sp->question ? strlen(sp->question) : 0;

    if (qlen == 0 || qlen > API_QUESTION_MAX) {
        snprintf(why, why_len, "question: 1 to %d bytes", API_QUESTION_MAX);
        return false;
    }
    if ((unsigned)sp->kind > POLL_RATING) {
        snprintf(why, why_len, "kind: single, multi or rating");
        return false;
    }
    if (sp->n_options < 2 || sp->n_options > API_OPTIONS_MAX) {
        snprintf(why, why_len, "options: 2 to %d of them", API_OPTIONS_MAX);
        return false;
    }
    for (uint32_t i = 0; i < sp->n_options; i++) {
        size_t olen = sp->options[i] ? strlen(sp->options[i]) : 0;

        if (olen == 0 || olen > API_OPTION_MAX) {
            snprintf(why, why_len, "options[%u]: 1 to %d bytes", i, API_OPTION_MAX);
            return false;
        }
    }
    if (sp->kind != POLL_MULTI) {
        if (sp->max_choices > 1) {
            snprintf(why, why_len, "max_choices: a %s poll takes one choice",
                     poll_kind_name(sp->kind));
            return false;
        }
        sp->max_choices = 1;
    } else if (sp->max_choices == 0) {
        sp->max_choices = sp->n_options;
    } else if (sp->max_choices > sp->n_options) {
        snprintf(why, why_len, "max_choices: 1 to %u", sp->n_options);
        return false;
    }
    return true;
}

static void struct_poll_create(struct session *s, struct api_req *req)
{
    char why[128];
    struct store_op *op;

    if (s->closed) {
        api_reply_error(req, 409, "session_closed", "session %s is closed", s->code);
        return;
    }
    if (s->n_polls >= SESSION_POLLS_MAX) {
        api_reply_error(req, 409, "limit_reached", "a session holds at most %u polls",
                        SESSION_POLLS_MAX);
        return;
    }
    if (!struct_spec_valid(&req->poll, why, sizeof(why))) {
        api_reply_error(req, 400, "invalid_request", "%s", why);
        return;
    }
    op = session__op_new(STORE_POLL_CREATE, s->actor, 0);
    op->poll = req->poll; /* the strings move to the op */
    memset(&req->poll, 0, sizeof(req->poll));
    op->event = struct_ev_poll_created;
    s->cur = req;
    struct_send(s, op);
}

static void struct_poll_open(struct session *s, struct api_req *req)
{
    struct poll *p = session__poll(s, req->poll_id);
    struct store_op *op;
    struct poll view;

    if (p == NULL) {
        api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
        return;
    }
    if (p->state != POLL_DRAFT) {
        api_reply_error(req, 409, "poll_not_draft", "poll %lld is %s", (long long)p->id,
                        p->state == POLL_OPEN ? "already open" : "closed");
        return;
    }
    if (s->closed) {
        api_reply_error(req, 409, "session_closed", "session %s is closed", s->code);
        return;
    }
    op = session__op_new(STORE_POLL_OPEN, s->actor, 0);
    op->id = p->id;
    view = *p;
    view.state = POLL_OPEN;
    op->text = json__text(session__poll_json(&view));
    op->event = struct_ev_prebuilt;
    s->cur = req;
    struct_send(s, op);
}

/* Sends poll.closed with the final counts; no vote of p is in flight. */
static void struct_send_close(struct session *s, struct poll *p)
{
    struct store_op *op = session__op_new(STORE_POLL_CLOSE, s->actor, 0);
    struct poll view;

    TALLY_ASSERT(p->closing);
    TALLY_ASSERT(p->votes_inflight == 0);
    op->id = p->id;
    view = *p;
    view.state = POLL_CLOSED;
    op->text = json__text(session__poll_json(&view));
    op->event = struct_ev_poll_closed;
    struct_send(s, op);
}

/* Stops new votes on p and closes it once its votes in flight are done. */
static void struct_close_poll(struct session *s, struct poll *p)
{
    TALLY_ASSERT(p->state == POLL_OPEN);
    TALLY_ASSERT(s->draining == NULL);
    p->closing = true;
    if (p->votes_inflight > 0) {
        s->draining = p; /* session__struct_drained() continues */
        return;
    }
    struct_send_close(s, p);
}

void session__struct_drained(struct session *s, struct poll *p)
{
    TALLY_ASSERT(p->votes_inflight == 0);
    if (s->draining != p)
        return;
    TALLY_ASSERT(s->cur != NULL);
    s->draining = NULL;
    struct_send_close(s, p);
}

static void struct_poll_close(struct session *s, struct api_req *req)
{
    struct poll *p = session__poll(s, req->poll_id);

    if (p == NULL) {
        api_reply_error(req, 404, "not_found", "no poll %lld", (long long)req->poll_id);
        return;
    }
    if (p->state != POLL_OPEN) {
        api_reply_error(req, 409, "poll_not_open", "poll %lld is %s", (long long)p->id,
                        p->state == POLL_DRAFT ? "not open yet" : "closed");
        return;
    }
    s->cur = req;
    struct_close_poll(s, p);
}

/* Closes the first open poll, or the session itself when none is left. */
static void struct_session_close_step(struct session *s)
{
    struct store_op *op;

    TALLY_ASSERT(s->cur != NULL && s->cur->op == API_SESSION_CLOSE);
    for (uint32_t i = 0; i < s->n_polls; i++) {
        if (s->polls[i]->state == POLL_OPEN) {
            struct_close_poll(s, s->polls[i]);
            return;
        }
    }
    op = session__op_new(STORE_SESSION_CLOSE, s->actor, 0);
    op->text = json__text(session__json_closed(s));
    op->event = struct_ev_prebuilt;
    struct_send(s, op);
}

static void struct_session_close(struct session *s, struct api_req *req)
{
    json_t *j;

    if (s->closed) { /* idempotent: the presenter may retry a close */
        j = json_object();
        json_object_set_new(j, "session", session__json(s));
        api_reply_json(req, 200, j);
        return;
    }
    s->cur = req;
    struct_session_close_step(s);
}

static void struct_start(struct session *s, struct api_req *req)
{
    TALLY_ASSERT(s->cur == NULL);
    switch (req->op) {
    case API_POLL_CREATE:
        struct_poll_create(s, req);
        break;
    case API_POLL_OPEN:
        struct_poll_open(s, req);
        break;
    case API_POLL_CLOSE:
        struct_poll_close(s, req);
        break;
    case API_SESSION_CLOSE:
        struct_session_close(s, req);
        break;
    default:
        TALLY_ASSERT(!"not a structural request");
    }
}

void session__struct_submit(struct session *s, struct api_req *req)
{
    if (s->cur != NULL || s->queue_len > 0) {
        if (s->queue_len == SESSION_QUEUE_MAX) {
            session__reply_503(req, "busy", "too many changes waiting in this session");
            return;
        }
        s->queue[(s->queue_head + s->queue_len) % SESSION_QUEUE_MAX] = req;
        s->queue_len++;
        struct_pump(s);
        return;
    }
    struct_start(s, req);
}

static void struct_reply_poll(struct api_req *req, int status, const struct poll *p)
{
    json_t *j = json_object();

    json_object_set_new(j, "poll", session__poll_json(p));
    api_reply_json(req, status, j);
}

/* Applies a committed op; returns true when the current request is finished. */
static bool struct_apply(struct session *s, struct store_op *op)
{
    struct api_req *req = s->cur;
    struct poll *p;
    json_t *j;

    switch (op->kind) {
    case STORE_POLL_CREATE:
        p = session__add_poll(s, op->id, &op->poll, POLL_DRAFT);
        struct_reply_poll(req, 201, p);
        return true;
    case STORE_POLL_OPEN:
        p = session__poll(s, op->id);
        TALLY_ASSERT(p != NULL && p->state == POLL_DRAFT);
        p->state = POLL_OPEN;
        struct_reply_poll(req, 200, p);
        return true;
    case STORE_POLL_CLOSE:
        p = session__poll(s, op->id);
        TALLY_ASSERT(p != NULL && p->state == POLL_OPEN);
        p->state = POLL_CLOSED;
        p->closing = false;
        session__counts_apply(p, op); /* another instance's votes too */
        if (req->op == API_SESSION_CLOSE)
            return false;
        struct_reply_poll(req, 200, p);
        return true;
    case STORE_SESSION_CLOSE:
        s->closed = true;
        j = json_object();
        json_object_set_new(j, "session", session__json(s));
        api_reply_json(req, 200, j);
        return true;
    default:
        TALLY_ASSERT(!"not a structural op");
        return true;
    }
}

/*
 * Another instance changed what the op was to change (opened or closed the
 * poll, closed the session) before it committed: answer as if that change
 * had been seen here, and read it from event_log.
 */
static void struct_conflict(struct session *s, struct store_op *op)
{
    struct api_req *req = s->cur;
    struct poll *p = op->kind == STORE_SESSION_CLOSE ? NULL : session__poll(s, op->id);

    if (p != NULL)
        p->closing = false;
    s->cur = NULL;
    s->draining = NULL;
    session__follow_hint(s, INT64_MAX);
    if (req->op == API_SESSION_CLOSE && op->kind != STORE_SESSION_CLOSE) {
        session__reply_503(req, "busy", "a poll of this session changed elsewhere; try again");
    } else if (req->op == API_SESSION_CLOSE) {
        json_t *j = json_object();

        json_object_set_new(j, "session", session__json_closed(s));
        api_reply_json(req, 200, j); /* closed it is, whoever closed it */
    } else if (op->kind == STORE_POLL_OPEN) {
        api_reply_error(req, 409, "poll_not_draft", "poll %lld was opened or closed elsewhere",
                        (long long)op->id);
    } else {
        api_reply_error(req, 409, "poll_not_open", "poll %lld was closed elsewhere", (long long)op->id);
    }
    store_op_free(op);
}

void session__struct_done(struct session *s, struct store_op *op)
{
    bool finished;

    TALLY_ASSERT(s->cur != NULL);
    TALLY_ASSERT(s->draining == NULL);
    s->struct_inflight = false;
    if (op->status == STORE_CONFLICT) {
        struct_conflict(s, op);
        struct_pump(s);
        return;
    }
    /* Another instance's events came first: they go out before ours. */
    if (op->status == STORE_OK && op->seq > s->seq + 1 && session__follow_park(s, op))
        return;
    if (op->status != STORE_OK || (op->kind == STORE_POLL_CREATE && op->id <= 0)) {
        if (op->status == STORE_OK)
            log_error("session %s: the store created a poll without an id", s->code);
        struct_fail(s, op);
        struct_pump(s);
        return;
    }
    if (op->seq > s->seq)
        session__seq_set(s, op->seq);
    /* Subscribers' network threads have the event before the presenter
     * hears the answer; nothing runs in between, so the order is free. */
    session__live_sequenced(s, op, session__live_event_data(s, op));
    finished = struct_apply(s, op);
    store_op_free(op);
    if (!finished) {
        struct_session_close_step(s); /* may fail at once and free s->cur */
        struct_pump(s);
        return;
    }
    s->cur = NULL;
    struct_pump(s);
}

struct poll *session__add_poll(struct session *s, int64_t id, struct api_poll_spec *spec,
                               enum poll_state state)
{
    struct poll *p = xcalloc(1, sizeof(*p));

    TALLY_ASSERT(id > 0);
    TALLY_ASSERT(spec->n_options <= API_OPTIONS_MAX);
    p->id = id;
    p->question = spec->question;
    p->kind = spec->kind;
    memcpy(p->options, spec->options, sizeof(p->options));
    p->n_options = spec->n_options;
    p->max_choices = spec->max_choices;
    p->state = state;
    memset(spec, 0, sizeof(*spec)); /* the strings now belong to the poll */
    if (s->n_polls == s->cap_polls) {
        s->cap_polls = s->cap_polls ? s->cap_polls * 2 : 8;
        s->polls = xrealloc(s->polls, (size_t)s->cap_polls * sizeof(*s->polls));
    }
    s->polls[s->n_polls++] = p;
    hmap_put(s->poll_by_id, (uint64_t)id, p);
    if (s->actor != NULL) /* else actors__add_session registers it with the session */
        actors__add_poll(s->as, s, id);
    return p;
}
