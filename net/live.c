/*
 * live.c - WebSocket and Server-Sent Events subscribers on the network
 * threads.
 *
 * A subscription starts as an HTTP request: the handshake is checked here,
 * the session actor checks the token and answers with the first bytes to
 * send (hello, replayed events, current results) already framed; only then
 * is the 101 (or the event-stream head) sent, followed by those bytes, and
 * the connection joins its session's subscriber list on this thread.
 * Broadcasts come from the session actor through the same mailbox as that
 * answer, so every subscriber gets the replay, then exactly the live events
 * after it.
 *
 * Each subscriber has a bounded queue of shared buffers. A results or
 * presence message replaces a queued one of the same poll that has not
 * started to go out; a sequenced event never does, and a subscriber that
 * falls NET_SUB_QUEUE_MAX messages behind is closed with 1013 and resumes
 * with `since`.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "actors/actors.h"
#include "actors/wire.h"
#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"
#include "core/mbox.h"
#include "core/metrics.h"
#include "net/apireq.h"
#include "net/conn.h"
#include "net/http.h"
#include "net/pace.h"
#include "net/respond.h"
#include "net/router.h"
#include "net/sse.h"
#include "net/ws.h"

#define LIVE_WS_VOTES_MAX 8 /* votes of one WebSocket with the actors at once */
#define LIVE_SINCE_MAX 32

/* ---- the per-thread subscriber lists ------------------------------------ */

static void sub_add(struct net_thread *t, struct conn *c)
{
    TALLY_ASSERT(c->session_id > 0);
    struct conn *head = hmap_get(t->subs, (uint64_t)c->session_id);
    c->sub_prev = NULL;
    c->sub_next = head;
    if (head)
        head->sub_prev = c;
    hmap_put(t->subs, (uint64_t)c->session_id, c);
    metric_add(t->srv->m_subscribers, 1);
}

static void sub_del(struct net_thread *t, struct conn *c)
{
    if (c->sub_next)
        c->sub_next->sub_prev = c->sub_prev;
    if (c->sub_prev) {
        c->sub_prev->sub_next = c->sub_next;
    } else if (c->sub_next) {
        hmap_put(t->subs, (uint64_t)c->session_id, c->sub_next);
    } else {
        void *was = hmap_del(t->subs, (uint64_t)c->session_id);
        TALLY_ASSERT(was == c);
    }
    c->sub_prev = c->sub_next = NULL;
    metric_add(t->srv->m_subscribers, -1);
}

/* ---- starting a subscription -------------------------------------------- */

static void free_reply(struct api_req *req)
{
    api_req_free(req);
}

/* Tells the session a subscriber is gone (answered only to free the request). */
static void unsubscribe(struct net_thread *t, const char *code, int64_t session_id,
                        bool is_participant, int64_t subscriber_id)
{
    struct api_req *req = api_req_new(API_UNSUBSCRIBE);
    str_copy(req->code, sizeof(req->code), code);
    req->session_id = session_id;
    req->is_participant = is_participant;
    req->subscriber_id = subscriber_id;
    req->net_thread = t->index;
    req->on_reply = free_reply;
    actors_submit(t->srv->actors, req);
}

/* since= wins over Last-Event-ID; -1 when neither. false: malformed. */
static bool parse_since(const struct http_req *hr, int64_t *since)
{
    char v[LIVE_SINCE_MAX];
    size_t n = 0;
    *since = -1;
    int rc = apireq_query_param(hr->query, hr->query_len, "since", v, sizeof(v), &n);
    if (rc == 0)
        return sse_parse_seq(v, n, since);
    if (rc != -ENOENT)
        return false;
    if (hr->last_event_id)
        return sse_parse_seq(hr->last_event_id, strlen(hr->last_event_id), since);
    return true;
}

static bool subscribe(struct net_thread *t, struct conn *c, const struct http_req *hr,
                      const struct route_match *rm, enum stream_fmt fmt)
{
    int64_t since;
    if (atomic_load(&t->srv->draining)) {
        net__conn_error(t, c, 503, "draining", "this instance is shutting down", true,
                        NET_RETRY_AFTER_S);
        return false;
    }
    if (!parse_since(hr, &since)) {
        net__conn_error(t, c, 400, "invalid_request",
                        "field 'since' must be a sequence number", false, 0);
        return false;
    }
    if (t->inflight >= NET_INFLIGHT_MAX) {
        net__conn_error(t, c, 503, "busy", "too many requests in progress", true,
                        NET_RETRY_AFTER_S);
        return false;
    }
    struct api_req *req = api_req_new(API_SUBSCRIBE);
    str_copy(req->code, sizeof(req->code), rm->code);
    apireq_token(hr, req->token);
    req->since = since;
    req->format = fmt;
    str_copy(c->code, sizeof(c->code), rm->code);
    str_copy(c->token, sizeof(c->token), req->token);
    c->waiting = true;
    net__submit(t, c, req, NET_TAG_SUBSCRIBE);
    return true;
}

static void answer_426(struct net_thread *t, struct conn *c)
{
    struct buf body = BUF_INIT, out = BUF_INIT;
    respond_error_body(&body, "upgrade_required", "a WebSocket handshake of version 13 is required");
    respond_write_ex(&out, 426, NULL, "Sec-WebSocket-Version: 13\r\nUpgrade: websocket\r\n",
                     body.data, body.len, false, 0, false);
    c->close_after_send = true;
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&body);
    buf_free(&out);
}

void live__upgrade(struct net_thread *t, struct conn *c, const struct http_req *hr,
                   const struct route_match *rm)
{
    enum ws_proto proto = WS_PROTO_JSON;
    bool echo = false;
    switch (ws_handshake_check(hr, &proto, &echo)) {
    case WS_HS_OK:
        break;
    case WS_HS_BAD:
        net__conn_error(t, c, 400, "invalid_request", "malformed WebSocket handshake", true, 0);
        return;
    case WS_HS_NOT_UPGRADE:
    case WS_HS_BAD_VERSION:
    default:
        answer_426(t, c);
        return;
    }
    struct buf answer = BUF_INIT;
    ws_handshake_answer(&answer, hr->ws_key, proto, echo);
    enum stream_fmt fmt = proto == WS_PROTO_MSGPACK ? STREAM_WS_MSGPACK : STREAM_WS_JSON;
    if (subscribe(t, c, hr, rm, fmt)) {
        c->ws_proto = (uint8_t)proto;
        c->upgrade_answer = rbuf_new(answer.data, answer.len);
    }
    buf_free(&answer);
}

void live__sse(struct net_thread *t, struct conn *c, const struct http_req *hr,
               const struct route_match *rm)
{
    subscribe(t, c, hr, rm, STREAM_SSE);
}

static void switch_mode(struct net_thread *t, struct conn *c, enum conn_mode mode)
{
    c->mode = (uint8_t)mode;
    if (c->parser) {
        http_parser_destroy(c->parser);
        c->parser = NULL;
    }
    c->last_rx_ms = t->now_ms;
    if (mode == MODE_WS) {
        c->ws = ws_parser_create();
        tlist_arm(&t->ping_timers, &c->timer, t->now_ms);
    } else {
        tlist_arm(&t->heartbeat_timers, &c->timer, t->now_ms);
    }
}

void live__on_subscribed(struct net_thread *t, struct conn *c, struct api_req *req)
{
    if (c == NULL) {
        if (req->status == 200) /* accepted, but the connection is gone */
            unsubscribe(t, req->code, req->session_id, req->is_participant, req->subscriber_id);
        api_req_free(req);
        return;
    }
    c->waiting = false;
    if (req->status != 200) {
        rbuf_unref(c->upgrade_answer);
        c->upgrade_answer = NULL;
        c->close_after_send = true;
        net__respond(t, c, req->status, req->content_type, req->body ? req->body : "",
                     req->body_len, false, req->retry_after_s);
        api_req_free(req);
        return;
    }
    if (c->upgrade_answer) {
        /* The 101 goes out before any frame: it is first in the queue. */
        net__queue(t, c, c->upgrade_answer, CHUNK_OTHER, 0);
        c->upgrade_answer = NULL;
        switch_mode(t, c, MODE_WS);
    } else {
        struct buf head = BUF_INIT;
        sse_head(&head);
        net__queue_bytes(t, c, head.data, head.len);
        buf_free(&head);
        switch_mode(t, c, MODE_SSE);
    }
    if (req->body_len > 0)
        net__queue_bytes(t, c, req->body, req->body_len);
    c->session_id = req->session_id;
    c->sub_is_participant = req->is_participant;
    c->subscriber_id = req->subscriber_id;
    /* Results held back here are older than the state this answer carries:
     * they go to the others first, never to the newcomer (version only grows). */
    live__release_session(t, c->session_id);
    sub_add(t, c);
    api_req_free(req);
    if (c->in.len > c->in_off) {
        /* Frames a client sent right behind its handshake. */
        struct buf early = c->in;
        size_t off = c->in_off;
        c->in = (struct buf)BUF_INIT;
        c->in_off = 0;
        live__on_bytes(t, c, early.data + off, early.len - off);
        buf_free(&early);
    }
}

/* ---- messages to one WebSocket ------------------------------------------ */

static void ws_send_json(struct net_thread *t, struct conn *c, json_t *msg)
{
    struct buf out = BUF_INIT;
    if (c->ws_proto == WS_PROTO_MSGPACK) {
        struct buf mp = BUF_INIT;
        wire_json_to_msgpack(msg, &mp);
        wire_ws_frame(&out, WS_OP_BINARY, mp.data, mp.len);
        buf_free(&mp);
    } else {
        char *text = json_dumps(msg, JSON_COMPACT);
        TALLY_ASSERT(text != NULL);
        wire_ws_frame(&out, WS_OP_TEXT, text, strlen(text));
        free(text);
    }
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&out);
    json_decref(msg);
}

static void ws_error(struct net_thread *t, struct conn *c, const char *id, const char *code,
                     const char *message)
{
    json_t *data = json_pack("{s:o,s:s,s:s}", "id", id ? json_string(id) : json_null(), "code",
                             code, "message", message);
    ws_send_json(t, c, json_pack("{s:s,s:o}", "type", "error", "data", data));
}

static void ws_close(struct net_thread *t, struct conn *c, uint16_t code, const char *reason)
{
    struct buf out = BUF_INIT;
    ws_close_frame(&out, code, reason);
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&out);
    c->close_after_send = true;
}

/* Checks a vote message's fields; returns the field at fault, or NULL. */
static const char *vote_fields(json_t *j, struct api_req *req)
{
    json_t *id = json_object_get(j, "id"), *poll = json_object_get(j, "poll_id");
    json_t *choice = json_object_get(j, "choice");
    if (!json_is_string(id) || json_string_length(id) == 0 ||
        json_string_length(id) > API_IDEM_KEY_MAX)
        return "id";
    for (const char *p = json_string_value(id); *p; p++)
        if (*p < 0x21 || *p > 0x7e)
            return "id";
    if (!json_is_integer(poll) || json_integer_value(poll) <= 0)
        return "poll_id";
    size_t n = json_array_size(choice);
    if (!json_is_array(choice) || n == 0 || n > API_CHOICES_MAX)
        return "choice";
    for (size_t i = 0; i < n; i++) {
        json_t *v = json_array_get(choice, i);
        if (!json_is_integer(v) || json_integer_value(v) < 0 ||
            json_integer_value(v) >= API_OPTIONS_MAX)
            return "choice";
        req->choices[i] = (uint8_t)json_integer_value(v);
    }
    req->n_choices = (uint32_t)n;
    req->poll_id = json_integer_value(poll);
    str_copy(req->idem_key, sizeof(req->idem_key), json_string_value(id));
    return NULL;
}

static void ws_message(struct net_thread *t, struct conn *c, enum ws_opcode op,
                       const uint8_t *payload, size_t len)
{
    json_t *j = NULL;
    if (op == WS_OP_TEXT)
        j = json_loadb((const char *)payload, len, JSON_REJECT_DUPLICATES, NULL);
    else if (wire_msgpack_to_json(payload, len, &j) < 0)
        j = NULL;
    if (!json_is_object(j)) {
        ws_error(t, c, NULL, "invalid_request", "a message must be a JSON object");
        json_decref(j);
        return;
    }
    json_t *type = json_object_get(j, "type");
    json_t *id = json_object_get(j, "id");
    const char *idv = json_is_string(id) ? json_string_value(id) : NULL;
    if (!json_is_string(type) || strcmp(json_string_value(type), "vote") != 0) {
        ws_error(t, c, NULL, "invalid_request", "field 'type' must be \"vote\"");
        json_decref(j);
        return;
    }
    struct api_req *req = api_req_new(API_VOTE);
    const char *bad = vote_fields(j, req);
    if (bad) {
        char msg[64];
        snprintf(msg, sizeof(msg), "field '%s' is missing or invalid", bad);
        ws_error(t, c, strcmp(bad, "id") ? idv : NULL, "invalid_request", msg);
    } else if (c->ws_votes >= LIVE_WS_VOTES_MAX || t->inflight >= NET_INFLIGHT_MAX) {
        ws_error(t, c, idv, "busy", "too many votes in progress on this connection");
    } else {
        str_copy(req->token, sizeof(req->token), c->token);
        c->ws_votes++;
        net__submit(t, c, req, NET_TAG_WS_VOTE);
        req = NULL;
    }
    if (req)
        api_req_free(req);
    json_decref(j);
}

/*
 * The ack of an accepted or duplicate vote for a JSON WebSocket, spliced
 * from the actor's answer {"vote":{...}} (actors/session_vote.c writes it
 * in exactly that framing) without parsing it again: this is every vote's
 * way back. false when the body is not framed so; the caller then builds
 * the ack the general way.
 */
static bool ws_ack_json(struct net_thread *t, struct conn *c, const struct api_req *req)
{
    static const char head[] = "{\"vote\":";
    const size_t hl = sizeof(head) - 1;
    if (c->ws_proto == WS_PROTO_MSGPACK || req->body == NULL || req->body_len < hl + 3 ||
        memcmp(req->body, head, hl) != 0 || req->body[hl] != '{' ||
        req->body[req->body_len - 1] != '}')
        return false;
    struct buf text = BUF_INIT, out = BUF_INIT;
    buf_append_str(&text, "{\"type\":\"ack\",\"data\":{\"id\":");
    buf_append_json_str(&text, req->idem_key, strlen(req->idem_key));
    buf_append_str(&text, req->status == 201 ? ",\"status\":\"accepted\",\"vote\":"
                                             : ",\"status\":\"duplicate\",\"vote\":");
    buf_append(&text, req->body + hl, req->body_len - hl - 1);
    buf_append_str(&text, "}}");
    wire_ws_frame(&out, WS_OP_TEXT, text.data, text.len);
    net__queue_bytes(t, c, out.data, out.len);
    buf_free(&out);
    buf_free(&text);
    return true;
}

void live__on_ws_vote(struct net_thread *t, struct conn *c, struct api_req *req)
{
    TALLY_ASSERT(c->ws_votes > 0);
    c->ws_votes--;
    if (c->mode == MODE_WS && (req->status == 200 || req->status == 201) && ws_ack_json(t, c, req)) {
        api_req_free(req);
        return;
    }
    json_t *body = req->body ? json_loadb(req->body, req->body_len, 0, NULL) : NULL;
    if (c->mode == MODE_WS && (req->status == 200 || req->status == 201)) {
        json_t *data = json_pack("{s:s,s:s,s:O}", "id", req->idem_key, "status",
                                 req->status == 201 ? "accepted" : "duplicate", "vote",
                                 json_object_get(body, "vote"));
        ws_send_json(t, c, json_pack("{s:s,s:o}", "type", "ack", "data", data));
    } else if (c->mode == MODE_WS) {
        json_t *err = json_object_get(body, "error");
        const char *code = json_string_value(json_object_get(err, "code"));
        const char *msg = json_string_value(json_object_get(err, "message"));
        ws_error(t, c, req->idem_key, code ? code : "internal", msg ? msg : "vote refused");
    }
    json_decref(body);
    api_req_free(req);
}

void live__on_bytes(struct net_thread *t, struct conn *c, const char *data, size_t len)
{
    if (c->mode != MODE_WS)
        return; /* an event-stream client has nothing to say */
    c->last_rx_ms = t->now_ms;
    while (len > 0 && c->state == CONN_OPEN && !c->close_after_send) {
        size_t used = 0;
        const uint8_t *p;
        size_t n;
        enum ws_event ev = ws_parser_feed(c->ws, (const uint8_t *)data, len, &used);
        data += used;
        len -= used;
        switch (ev) {
        case WS_EV_AGAIN:
            return;
        case WS_EV_MESSAGE: {
            enum ws_opcode op = ws_parser_message(c->ws, &p, &n);
            ws_message(t, c, op, p, n);
            break;
        }
        case WS_EV_PING: {
            struct buf out = BUF_INIT;
            ws_parser_control(c->ws, &p, &n);
            wire_ws_frame(&out, WS_OP_PONG, p, n);
            net__queue_bytes(t, c, out.data, out.len);
            buf_free(&out);
            break;
        }
        case WS_EV_PONG:
            break;
        case WS_EV_CLOSE: {
            uint16_t code = ws_parser_close_code(c->ws);
            ws_close(t, c, code, ""); /* 1005: an empty close, the exact echo */
            return;
        }
        case WS_EV_ERROR:
        default:
            ws_close(t, c, ws_parser_error_code(c->ws), ws_parser_error_reason(c->ws));
            return;
        }
    }
}

/* ---- broadcasts ----------------------------------------------------------- */

static enum stream_fmt conn_fmt(const struct conn *c)
{
    if (c->mode == MODE_SSE)
        return STREAM_SSE;
    return c->ws_proto == WS_PROTO_MSGPACK ? STREAM_WS_MSGPACK : STREAM_WS_JSON;
}

/* Replaces a queued, not yet started results (same poll) or presence. */
static bool coalesce(struct conn *c, enum chunk_kind kind, int64_t poll_id, struct rbuf *rb)
{
    struct out_chunk *ch = c->out_head;
    if (ch && c->send_inflight)
        ch = ch->next; /* the head is going out: leave it */
    for (; ch; ch = ch->next) {
        if (ch->kind == kind && ch->poll_id == poll_id && ch->off == 0) {
            rbuf_unref(ch->rb);
            ch->rb = rbuf_ref(rb);
            return true;
        }
    }
    return false;
}

/* A subscriber that fell too far behind: drop what it has not started to
 * receive, tell it why, and close. It resumes with `since`. */
static void too_slow(struct net_thread *t, struct conn *c)
{
    metric_add(t->srv->m_slow_closed, 1);
    if (c->mode != MODE_WS) {
        net__conn_close(t, c);
        return;
    }
    struct out_chunk *keep = c->send_inflight ? c->out_head : NULL;
    struct out_chunk *ch = keep ? keep->next : c->out_head;
    while (ch) {
        struct out_chunk *next = ch->next;
        if (ch->kind != CHUNK_OTHER)
            c->out_msgs--;
        rbuf_unref(ch->rb);
        free(ch);
        ch = next;
    }
    if (keep)
        keep->next = NULL;
    c->out_head = c->out_tail = keep;
    ws_close(t, c, 1013, "subscriber too slow; resume with since");
}

static void deliver(struct net_thread *t, struct conn *c, const struct stream_msg *m)
{
    struct rbuf *rb = m->bytes[conn_fmt(c)];
    if (rb == NULL || c->state != CONN_OPEN || c->close_after_send)
        return;
    enum chunk_kind kind = m->kind == STREAM_SEQUENCED ? CHUNK_SEQUENCED
                           : m->kind == STREAM_RESULTS ? CHUNK_RESULTS
                                                       : CHUNK_PRESENCE;
    if (kind != CHUNK_SEQUENCED && c->out_msgs > 0 && coalesce(c, kind, m->poll_id, rb)) {
        metric_add(t->srv->m_coalesced, 1);
        return;
    }
    if (c->out_msgs >= NET_SUB_QUEUE_MAX) {
        if (kind == CHUNK_SEQUENCED)
            too_slow(t, c);
        else
            metric_add(t->srv->m_coalesced, 1); /* the next one supersedes it */
        return;
    }
    net__queue(t, c, rbuf_ref(rb), kind, m->poll_id);
}

/* Hands m to every subscriber of its session on this thread; takes m. */
static void fan_out(struct net_thread *t, struct stream_msg *m)
{
    struct conn *c = hmap_get(t->subs, (uint64_t)m->session_id);
    uint64_t n = 0;
    while (c) {
        struct conn *next = c->sub_next; /* deliver may close c and unlink it */
        deliver(t, c, m);
        c = next;
        n++;
    }
    metric_add(t->srv->m_deliveries, (int64_t)n);
    stream_msg_unref(m);
}

void live__release_session(struct net_thread *t, int64_t session_id)
{
    struct stream_msg *m;
    while ((m = pace_take_session(t->pace, session_id, t->now_ms)) != NULL)
        fan_out(t, m);
}

void live__release_held(struct net_thread *t)
{
    struct stream_msg *m;
    while ((m = pace_take_due(t->pace, t->results_hold_ms, t->now_ms)) != NULL)
        fan_out(t, m);
}

void live__on_stream(struct net_thread *t, struct stream_msg *m)
{
    /* Results give way while this thread's worker is saturated (net/pace.h). */
    if (m->kind == STREAM_RESULTS && pace_offer(t->pace, m, t->results_hold_ms, t->now_ms))
        return;
    if (m->kind == STREAM_SEQUENCED)
        live__release_session(t, m->session_id);
    fan_out(t, m);
}

void live__sink_broadcast(void *ctx, unsigned thread, struct stream_msg *m)
{
    struct net_server *srv = ctx;
    TALLY_ASSERT(thread < srv->nthreads);
    struct mbox_msg msg = {.type = NET_MSG_STREAM, .ptr = m};
    if (likely(mbox_post(srv->threads[thread].mbox, &msg)))
        return;
    /* The thread is far behind. Results and presence are superseded by the
     * next ones; a sequenced event must not be lost, so wait for room. */
    for (unsigned i = 0; m->kind == STREAM_SEQUENCED && i < 100000; i++) {
        sched_yield();
        if (mbox_post(srv->threads[thread].mbox, &msg))
            return;
    }
    if (m->kind == STREAM_SEQUENCED)
        log_error("network thread %u: mailbox full, event %lld of session %lld dropped", thread,
                  (long long)m->seq, (long long)m->session_id);
    stream_msg_unref(m);
}

/* ---- timers and endings --------------------------------------------------- */

void live__expire(struct net_thread *t)
{
    struct tlist_node *n;
    while ((n = tlist_pop_expired(&t->ping_timers, t->now_ms)) != NULL) {
        struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
        if (c->state != CONN_OPEN)
            continue;
        if (t->now_ms - c->last_rx_ms >= NET_WS_SILENCE_MS_MAX) {
            net__conn_close(t, c); /* no pong to our pings: the peer is gone */
            continue;
        }
        struct buf out = BUF_INIT;
        wire_ws_frame(&out, WS_OP_PING, NULL, 0);
        net__queue_bytes(t, c, out.data, out.len);
        buf_free(&out);
        tlist_arm(&t->ping_timers, &c->timer, t->now_ms);
    }
    while ((n = tlist_pop_expired(&t->heartbeat_timers, t->now_ms)) != NULL) {
        struct conn *c = (struct conn *)((char *)n - offsetof(struct conn, timer));
        if (c->state != CONN_OPEN)
            continue;
        struct buf out = BUF_INIT;
        sse_heartbeat(&out);
        net__queue_bytes(t, c, out.data, out.len);
        buf_free(&out);
        tlist_arm(&t->heartbeat_timers, &c->timer, t->now_ms);
    }
}

void live__on_close(struct net_thread *t, struct conn *c)
{
    if (c->ws) {
        ws_parser_destroy(c->ws);
        c->ws = NULL;
    }
    rbuf_unref(c->upgrade_answer);
    c->upgrade_answer = NULL;
    if (c->mode != MODE_HTTP && c->session_id > 0) {
        sub_del(t, c);
        unsubscribe(t, c->code, c->session_id, c->sub_is_participant, c->subscriber_id);
    }
    c->session_id = 0;
}

void live__shutdown(struct net_thread *t, struct conn *c)
{
    if (c->close_after_send)
        return;
    if (c->mode == MODE_WS) {
        ws_close(t, c, 1001, "server shutting down");
        return;
    }
    /* An event stream just ends. */
    c->close_after_send = true;
    if (c->out_head == NULL)
        net__conn_close(t, c);
}
