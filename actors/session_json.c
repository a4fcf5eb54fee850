/*
 * session_json.c - the JSON and CSV the session says about itself.
 *
 * poll__json and json__text are pure and also run on store writer threads
 * (event payloads); the session__ functions read a session and run on its
 * actor thread.
 */
#include "actors/session.h"

#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "core/buf.h"

static const char *const POLL_STATE_NAMES[] = {
    [POLL_DRAFT] = "draft",
    [POLL_OPEN] = "open",
    [POLL_CLOSED] = "closed",
};

void *json__str(const char *s)
{
    json_t *j = s ? json_string(s) : NULL;

    /* Strings come from validated requests or the database; should one not
     * be UTF-8, an empty string keeps the document valid. */
    return j ? j : json_string("");
}

char *json__text(void *j)
{
    char *text;

    TALLY_ASSERT(j != NULL);
    text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    TALLY_ASSERT(text != NULL); /* fails only without memory */
    return text;
}

void *poll__json(int64_t id, const struct api_poll_spec *spec, enum poll_state state,
                 const uint64_t *counts)
{
    json_t *options = json_array();
    json_t *cs = json_array();
    json_t *j = json_object();

    TALLY_ASSERT((unsigned)state < ARRAY_LEN(POLL_STATE_NAMES));
    TALLY_ASSERT(spec->n_options <= API_OPTIONS_MAX);
    for (uint32_t i = 0; i < spec->n_options; i++) {
        json_array_append_new(options, json__str(spec->options[i]));
        json_array_append_new(cs, json_integer(counts ? (json_int_t)counts[i] : 0));
    }
    json_object_set_new(j, "id", json_integer(id));
    json_object_set_new(j, "question", json__str(spec->question));
    json_object_set_new(j, "kind", json_string(poll_kind_name(spec->kind)));
    json_object_set_new(j, "options", options);
    json_object_set_new(j, "max_choices", json_integer(spec->max_choices));
    json_object_set_new(j, "state", json_string(POLL_STATE_NAMES[state]));
    json_object_set_new(j, "counts", cs);
    return j;
}

void *session__poll_json(const struct poll *p)
{
    struct api_poll_spec spec = {
        .question = p->question,
        .kind = p->kind,
        .n_options = p->n_options,
        .max_choices = p->max_choices,
    };

    memcpy(spec.options, p->options, sizeof(spec.options));
    return poll__json(p->id, &spec, p->state, p->counts);
}

void *session__close_json(const struct store_op *op)
{
    json_t *j = json_loads(op->text, 0, NULL);
    json_t *counts;
    size_t n;

    TALLY_ASSERT(op->kind == STORE_POLL_CLOSE && j != NULL);
    if (!op->counted)
        return j;
    n = json_array_size(json_object_get(j, "options"));
    TALLY_ASSERT(n <= API_OPTIONS_MAX);
    counts = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(counts, json_integer((json_int_t)op->counts[i]));
    json_object_set_new(j, "counts", counts);
    return j;
}

void *session__polls_json(const struct session *s)
{
    json_t *polls = json_array();

    for (uint32_t i = 0; i < s->n_polls; i++)
        json_array_append_new(polls, session__poll_json(s->polls[i]));
    return polls;
}

void *session__results_json(const struct poll *p)
{
    json_t *counts = json_array();
    json_t *j = json_object();

    TALLY_ASSERT(p->n_options <= API_OPTIONS_MAX);
    for (uint32_t i = 0; i < p->n_options; i++)
        json_array_append_new(counts, json_integer((json_int_t)p->counts[i]));
    json_object_set_new(j, "poll_id", json_integer(p->id));
    json_object_set_new(j, "counts", counts);
    json_object_set_new(j, "total", json_integer((json_int_t)p->total));
    json_object_set_new(j, "version", json_integer((json_int_t)p->version));
    return j;
}

static json_t *session_json_state(const struct session *s, bool closed)
{
    json_t *j = json_object();

    json_object_set_new(j, "id", json_integer(s->id));
    json_object_set_new(j, "code", json_string(s->code));
    json_object_set_new(j, "title", json__str(s->title));
    json_object_set_new(j, "state", json_string(closed ? "closed" : "open"));
    json_object_set_new(j, "created_at", json__str(s->created_at));
    return j;
}

void *session__json(const struct session *s)
{
    return session_json_state(s, s->closed);
}

void *session__json_closed(const struct session *s)
{
    return session_json_state(s, true);
}

/* Appends one CSV field, quoted per RFC 4180 when it holds , " CR or LF. */
static void csv_field(struct buf *b, const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        buf_append_str(b, s);
        return;
    }
    buf_append(b, "\"", 1);
    for (const char *q; (q = strchr(s, '"')) != NULL; s = q + 1) {
        buf_append(b, s, (size_t)(q - s));
        buf_append(b, "\"\"", 2);
    }
    buf_append_str(b, s);
    buf_append(b, "\"", 1);
}

char *session__csv(const struct session *s, size_t *len)
{
    struct buf b = BUF_INIT;
    char *out;

    buf_append_str(&b, "poll_id,question,kind,state,option_index,option,count\r\n");
    for (uint32_t i = 0; i < s->n_polls; i++) {
        const struct poll *p = s->polls[i];

        for (uint32_t o = 0; o < p->n_options; o++) {
            buf_printf(&b, "%lld,", (long long)p->id);
            csv_field(&b, p->question);
            buf_printf(&b, ",%s,%s,%u,", poll_kind_name(p->kind), POLL_STATE_NAMES[p->state], o);
            csv_field(&b, p->options[o]);
            buf_printf(&b, ",%llu\r\n", (unsigned long long)p->counts[o]);
        }
    }
    out = buf_steal(&b, len);
    TALLY_ASSERT(out != NULL);
    return out;
}
