/*
 * actors_load.c - rebuilds every session from the store before the network
 * starts: sessions, then polls, then participants, then the vote counts, as
 * store_load streams them.
 *
 * Runs on the caller's thread while no message has been posted to any
 * session yet; the first post hands the state over to the actor thread.
 * Rows that do not fit (unknown session or poll, bad code or hash, choice out
 * of range) are logged and skipped rather than failing the start. Counts and
 * versions are recomputed from the stored votes (version = votes counted),
 * so version only grows across restarts. Single votes are not loaded: the
 * database answers for them on demand (session_vote.c), which keeps the
 * load's cost independent of how many votes are stored.
 */
#include "actors/actors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "actors/joincode.h"
#include "actors/session.h"
#include "actors/token.h"
#include "core/base.h"
#include "core/hmap.h"
#include "core/log.h"

struct load_ctx {
    struct actors *as;
    struct session *last; /* rows come grouped, so the last session is usually the next */
    bool one;             /* load_one: the session is registered only once complete */
    int err;
    uint64_t sessions, polls, participants, votes, skipped;
};

static struct session *load_session(struct load_ctx *c, int64_t id)
{
    if (c->last != NULL && c->last->id == id)
        return c->last;
    if (id <= 0 || c->one)
        return NULL;
    pthread_rwlock_rdlock(&c->as->lock);
    c->last = hmap_get(c->as->by_id, (uint64_t)id);
    pthread_rwlock_unlock(&c->as->lock);
    return c->last;
}

static void load_on_session(void *arg, const struct store_session_row *row)
{
    struct load_ctx *c = arg;
    char code[API_CODE_LEN + 1];
    uint8_t hash[TOKEN_HASH_BYTES];
    struct session *s;

    if (c->err != 0)
        return;
    if (row->id <= 0 || !joincode_normalize(row->code, code) ||
        !token_hash_parse(row->token_hash, hash) || load_session(c, row->id) != NULL) {
        log_warn("load: session %lld is malformed or repeated; skipped", (long long)row->id);
        c->skipped++;
        return;
    }
    if (!c->one && atomic_load(&c->as->reserved) >= c->as->sessions_max) {
        log_error("load: more than %u sessions stored", c->as->sessions_max);
        c->err = -ENOSPC;
        return;
    }
    s = session__new(c->as, row->id, code, row->title, row->created_at, hash);
    s->closed = row->closed;
    session__seq_set(s, row->seq);
    if (c->one) {
        TALLY_ASSERT(c->last == NULL);
        c->last = s;
        return;
    }
    if (actors__add_session(c->as, s) < 0) {
        log_error("load: no actor for session %lld", (long long)row->id);
        session__free(s);
        c->err = -ENOSPC;
        return;
    }
    atomic_fetch_add(&c->as->reserved, 1);
    c->sessions++;
}

static bool load_poll_row_ok(const struct store_poll_row *row)
{
    if (row->id <= 0 || row->question == NULL || (unsigned)row->kind > POLL_RATING)
        return false;
    if (row->n_options < 2 || row->n_options > API_OPTIONS_MAX)
        return false;
    if (row->state < POLL_DRAFT || row->state > POLL_CLOSED)
        return false;
    for (uint32_t i = 0; i < row->n_options; i++) {
        if (row->options[i] == NULL)
            return false;
    }
    return row->max_choices >= 1 && row->max_choices <= row->n_options;
}

static void load_on_poll(void *arg, const struct store_poll_row *row)
{
    struct load_ctx *c = arg;
    struct session *s = c->err ? NULL : load_session(c, row->session_id);
    struct api_poll_spec spec;

    if (s == NULL || !load_poll_row_ok(row) || session__poll(s, row->id) != NULL) {
        log_warn("load: poll %lld is malformed or orphaned; skipped", (long long)row->id);
        c->skipped++;
        return;
    }
    memset(&spec, 0, sizeof(spec));
    spec.question = xstrdup(row->question);
    spec.kind = row->kind;
    spec.n_options = row->n_options;
    spec.max_choices = row->max_choices;
    for (uint32_t i = 0; i < row->n_options; i++)
        spec.options[i] = xstrdup(row->options[i]);
    session__add_poll(s, row->id, &spec, (enum poll_state)row->state);
    c->polls++;
}

static void load_on_participant(void *arg, int64_t session_id, int64_t id, const char *token_hash)
{
    struct load_ctx *c = arg;
    struct session *s = c->err ? NULL : load_session(c, session_id);
    uint8_t hash[TOKEN_HASH_BYTES];

    if (s == NULL || id <= 0 || !token_hash_parse(token_hash, hash) ||
        s->n_parts >= SESSION_PARTICIPANTS_MAX) {
        log_warn("load: participant %lld is malformed or orphaned; skipped", (long long)id);
        c->skipped++;
        return;
    }
    session__add_participant(s, id, hash)->loaded = true;
    if (!c->one)
        actors__add_token(c->as, s, hash);
    atomic_fetch_add_explicit(&c->as->participants, 1, memory_order_relaxed);
    c->participants++;
}

static void load_on_vote_count(void *arg, const struct store_vote_count *row)
{
    struct load_ctx *c = arg;
    struct session *s = c->err ? NULL : load_session(c, row->session_id);

    /* session__vote_count_load checks the row against its poll and logs a misfit. */
    if (s == NULL || !session__vote_count_load(s, row)) {
        c->skipped += row->votes;
        return;
    }
    c->votes += row->votes;
}

static struct store_loader load_loader(struct load_ctx *c)
{
    return (struct store_loader){
        .arg = c,
        .on_session = load_on_session,
        .on_poll = load_on_poll,
        .on_participant = load_on_participant,
        .on_vote_count = load_on_vote_count,
    };
}

int actors_load(struct actors *as)
{
    struct load_ctx c = {.as = as};
    struct store_loader l = load_loader(&c);
    uint64_t t0 = clock_now_ms();
    int rc;

    rc = store_load(as->store, &l);
    if (rc < 0) {
        log_error("load: the store could not be read");
        return rc;
    }
    if (c.err != 0)
        return c.err;
    as->vote_id_max = l.vote_id_max;
    for (uint32_t i = 0; i < as->n_sessions; i++)
        as->sessions[i]->vote_id_max = l.vote_id_max;
    log_info("loaded %llu sessions, %llu polls, %llu participants, %llu votes in %llu ms"
             " (%llu rows skipped)",
             (unsigned long long)c.sessions, (unsigned long long)c.polls,
             (unsigned long long)c.participants, (unsigned long long)c.votes,
             (unsigned long long)(clock_now_ms() - t0), (unsigned long long)c.skipped);
    return 0;
}

int actors__load_one(struct actors *as, int64_t sid, struct session **out)
{
    struct load_ctx c = {.as = as, .one = true};
    struct store_loader l = load_loader(&c);
    int rc;

    *out = NULL;
    if (atomic_fetch_add(&as->reserved, 1) >= as->sessions_max) {
        atomic_fetch_sub(&as->reserved, 1);
        return -ENOSPC;
    }
    rc = store_load_session(as->store, sid, &l);
    if (rc == 0 && c.last == NULL)
        rc = -ENOENT;
    if (rc == 0 && c.err != 0)
        rc = c.err;
    if (rc == 0) {
        c.last->vote_id_max = l.vote_id_max;
        rc = actors__add_session(as, c.last);
    }
    if (rc < 0) {
        if (c.last != NULL)
            atomic_fetch_sub(&as->participants, c.last->n_parts);
        session__free(c.last);
        atomic_fetch_sub(&as->reserved, 1);
        return rc;
    }
    log_info("loaded session %s (%lld) that another instance created: %llu polls, %llu participants, "
             "%llu votes",
             c.last->code, (long long)sid, (unsigned long long)c.polls,
             (unsigned long long)c.participants, (unsigned long long)c.votes);
    *out = c.last;
    return 0;
}
