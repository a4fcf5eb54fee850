/*
 * api.h - the requests network threads send to the actors, and the replies
 * that come back.
 *
 * A network thread parses and validates the HTTP request into a struct
 * api_req (shape only: types, sizes, ranges that need no state), then hands
 * it to actors_submit(). The actor that owns the session checks everything
 * that needs state (tokens, poll state, one vote per participant), fills the
 * reply fields and calls req->on_reply(req) exactly once, from whatever thread
 * it runs on. on_reply passes the request back to the network thread that
 * owns the connection, which writes the reply and frees the request.
 */
#ifndef TALLY_ACTORS_API_H
#define TALLY_ACTORS_API_H

#include <assert.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define API_CODE_LEN 6
#define API_TOKEN_MAX 64
#define API_IDEM_KEY_MAX 128
#define API_TITLE_MAX 200
#define API_NAME_MAX 64
#define API_QUESTION_MAX 500
#define API_OPTION_MAX 200
#define API_OPTIONS_MAX 32
#define API_CHOICES_MAX API_OPTIONS_MAX
#define API_HOST_MAX 256

enum api_op {
    API_SESSION_CREATE, /* POST /api/v1/sessions */
    API_SESSION_GET,    /* GET  /api/v1/sessions/{code} */
    API_JOIN,           /* POST /api/v1/sessions/{code}/participants */
    API_POLL_CREATE,    /* POST /api/v1/sessions/{code}/polls */
    API_POLL_OPEN,      /* POST /api/v1/polls/{id}/open */
    API_POLL_CLOSE,     /* POST /api/v1/polls/{id}/close */
    API_VOTE,           /* POST /api/v1/polls/{id}/votes */
    API_RESULTS,        /* GET  /api/v1/polls/{id}/results */
    API_SESSION_CLOSE,  /* POST /api/v1/sessions/{code}/close */
    API_EXPORT_CSV,     /* GET  /api/v1/sessions/{code}/export.csv */
    API_QR_SVG,         /* GET  /api/v1/sessions/{code}/qr.svg */
    API_SUBSCRIBE,      /* GET  /api/v1/sessions/{code}/ws and /events (see actors/stream.h) */
    API_UNSUBSCRIBE,    /* a subscriber's connection ended; answered only to free it */
    API_OP_COUNT
};

enum poll_kind { POLL_SINGLE, POLL_MULTI, POLL_RATING };

struct api_poll_spec {
    char *question; /* owned, NUL-terminated, 1..API_QUESTION_MAX bytes */
    enum poll_kind kind;
    char *options[API_OPTIONS_MAX]; /* owned, each 1..API_OPTION_MAX bytes */
    uint32_t n_options;             /* 2..API_OPTIONS_MAX */
    uint32_t max_choices;           /* 1 for single and rating; 1..n_options for multi */
};

struct api_req {
    enum api_op op;

    /* From the path. */
    char code[API_CODE_LEN + 1]; /* upper-cased join code; "" when the route has none */
    int64_t poll_id;             /* 0 when the route has none */

    /* From headers or the query string. */
    char token[API_TOKEN_MAX + 1];       /* "" when absent */
    char idem_key[API_IDEM_KEY_MAX + 1]; /* Idempotency-Key; "" when absent */
    char host[API_HOST_MAX + 1];         /* Host header, for the join link in the QR code */

    /* From the body, already checked for shape. */
    char *text; /* owned: session title (API_SESSION_CREATE) or participant name (API_JOIN); may be NULL */
    struct api_poll_spec poll; /* API_POLL_CREATE */
    uint8_t choices[API_CHOICES_MAX]; /* API_VOTE: option indexes as sent (duplicates rejected by the actor) */
    uint32_t n_choices;
    bool key_checked; /* API_VOTE: the actor already asked the store about this key */
    bool looked_up;   /* what the directory lacked was looked up in the database */
    bool caught_up;   /* the session read event_log for it before answering */
    bool token_looked_up; /* the token was looked up in the database */
    bool counted;         /* API_SESSION_GET: participants were counted in the database */

    /* API_SUBSCRIBE / API_UNSUBSCRIBE (and votes sent over a WebSocket). */
    int64_t since;       /* resume after this seq; -1 when not resuming */
    int format;          /* enum stream_fmt of the subscriber's connection */
    unsigned net_thread; /* the network thread that owns the connection */
    int64_t session_id;   /* reply of SUBSCRIBE (in for UNSUBSCRIBE) */
    bool is_participant;  /* reply of SUBSCRIBE (in for UNSUBSCRIBE) */
    int64_t subscriber_id; /* participant id, or the session id for a presenter */

    /* The reply, filled by the actor before on_reply. For an accepted
     * API_SUBSCRIBE, status is 200 and body holds the first bytes to send,
     * already framed in the connection's format (hello, replayed events,
     * current results). */
    int status;
    const char *content_type; /* static string; NULL means application/json */
    char *body;               /* owned, may be NULL */
    size_t body_len;
    uint32_t retry_after_s; /* > 0 adds a Retry-After header */

    /* Set by the network thread; the actor only calls on_reply. */
    void (*on_reply)(struct api_req *req);
    void *net_ctx;
    uint64_t net_tag;
};

/** Allocates a zeroed request. */
struct api_req *api_req_new(enum api_op op);
/** Frees the request and everything it owns. */
void api_req_free(struct api_req *req);

/**
 * Sets the reply to status with body as compact JSON (a jansson json_t *; the
 * reference is stolen) and calls req->on_reply. After this the caller must not
 * touch req.
 */
void api_reply_json(struct api_req *req, int status, void *json_body);
/** Replies {"error":{"code":code,"message":...}} with status; see api_reply_json. */
void api_reply_error(struct api_req *req, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
/** Replies with bytes already encoded (body is stolen) and a static content type. */
void api_reply_raw(struct api_req *req, int status, const char *content_type, char *body,
                   size_t body_len);

/* inline defs: shared by the actors, the network side and the store, which
 * writes the same names into polls.kind. */

static const char *const api__kind_names[] = {"single", "multi", "rating"};
static_assert(sizeof(api__kind_names) / sizeof(api__kind_names[0]) == POLL_RATING + 1,
              "one name per poll kind");

/** "single", "multi", "rating". */
static inline const char *poll_kind_name(enum poll_kind k)
{
    return (unsigned)k < 3 ? api__kind_names[k] : "unknown";
}

/** Parses a kind name; returns false when unknown. */
static inline bool poll_kind_parse(const char *s, enum poll_kind *out)
{
    for (unsigned k = 0; s != NULL && k < 3; k++) {
        if (strcmp(s, api__kind_names[k]) == 0) {
            *out = (enum poll_kind)k;
            return true;
        }
    }
    return false;
}

#endif
