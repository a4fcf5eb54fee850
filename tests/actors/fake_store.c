/*
 * fake_store.c - the in-memory store of the actors' tests (see fake_store.h).
 */
#include "fake_store.h"

#include <pthread.h>
#include <stdio.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/base.h"

#define FAKE_FAILS_MAX 16
#define FAKE_QUEUE_MAX 65536

struct fake_session {
    int64_t id;
    char code[API_CODE_LEN + 1];
    char *title;
    char hash[STORE_HASH_HEX + 1];
    bool closed;
    int64_t seq;
    char created_at[STORE_TIME_MAX];
};

struct fake_poll {
    int64_t id, session_id;
    char *question;
    enum poll_kind kind;
    char *options[API_OPTIONS_MAX];
    uint32_t n_options, max_choices;
    int state;
};

struct fake_part {
    int64_t id, session_id;
    char hash[STORE_HASH_HEX + 1];
};

struct fake_fail {
    enum store_op_kind kind;
    enum store_status status;
    unsigned count;
    bool commit;
};

struct store {
    pthread_mutex_t mu;
    pthread_cond_t work;
    pthread_cond_t idle;
    pthread_t thread;
    bool stop, hold, refuse;

    struct store_op **queue; /* ring of FAKE_QUEUE_MAX */
    size_t q_head, q_len;
    unsigned busy; /* ops taken by the thread and not completed */
    uint64_t submitted;

    struct fake_fail fails[FAKE_FAILS_MAX];
    unsigned n_fails;

    struct fake_session *sessions;
    size_t n_sessions;
    struct fake_poll *polls;
    size_t n_polls;
    struct fake_part *parts;
    size_t n_parts;
    struct store_vote *votes;
    size_t n_votes;
    int64_t next_id;
    struct fake_event events[FAKE_EVENTS_MAX];
    size_t n_events;

    bool parking[STORE_EVENTS_PRUNE + 1]; /* ops of these kinds wait in parked */
    struct store_op **parked;
    size_t n_parked;
    uint64_t prunes;
    int64_t prune_keep_s;
};

static void *grow(void *p, size_t n, size_t size)
{
    /* Grows by one element at a time: tests hold few rows. */
    return xrealloc(p, (n + 1) * size);
}

static void fake_now(char out[STORE_TIME_MAX])
{
    struct timespec ts;
    struct tm tm;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(out, STORE_TIME_MAX, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + 19, STORE_TIME_MAX - 19, ".%03dZ", (int)(ts.tv_nsec / 1000000) % 1000);
}

static struct fake_session *fake_session(struct store *s, int64_t id)
{
    for (size_t i = 0; i < s->n_sessions; i++) {
        if (s->sessions[i].id == id)
            return &s->sessions[i];
    }
    return NULL;
}

static struct fake_poll *fake_poll(struct store *s, int64_t session_id, int64_t id)
{
    for (size_t i = 0; i < s->n_polls; i++) {
        if (s->polls[i].id == id && s->polls[i].session_id == session_id)
            return &s->polls[i];
    }
    return NULL;
}

static void fake_session_create(struct store *s, struct store_op *op)
{
    struct fake_session *fs;

    for (size_t i = 0; i < s->n_sessions; i++) {
        if (strcmp(s->sessions[i].code, op->code) == 0) {
            op->status = STORE_CONFLICT;
            return;
        }
    }
    s->sessions = grow(s->sessions, s->n_sessions, sizeof(*s->sessions));
    fs = &s->sessions[s->n_sessions++];
    memset(fs, 0, sizeof(*fs));
    fs->id = ++s->next_id;
    memcpy(fs->code, op->code, sizeof(fs->code));
    fs->title = xstrdup(op->text ? op->text : "");
    memcpy(fs->hash, op->token_hash, sizeof(fs->hash));
    fake_now(fs->created_at);
    op->id = op->session_id = fs->id;
    memcpy(op->created_at, fs->created_at, sizeof(op->created_at));
}

static void fake_poll_create(struct store *s, struct store_op *op)
{
    struct fake_poll *p;

    s->polls = grow(s->polls, s->n_polls, sizeof(*s->polls));
    p = &s->polls[s->n_polls++];
    memset(p, 0, sizeof(*p));
    p->id = ++s->next_id;
    p->session_id = op->session_id;
    p->question = xstrdup(op->poll.question);
    p->kind = op->poll.kind;
    p->n_options = op->poll.n_options;
    p->max_choices = op->poll.max_choices;
    for (uint32_t i = 0; i < p->n_options; i++)
        p->options[i] = xstrdup(op->poll.options[i]);
    op->id = p->id;
}

static void fake_vote(struct store *s, struct store_op *op)
{
    struct store_vote *v = &op->vote;

    for (size_t i = 0; i < s->n_votes; i++) {
        if (s->votes[i].participant_id == v->participant_id &&
            strcmp(s->votes[i].idem_key, v->idem_key) == 0) {
            *v = s->votes[i];
            op->status = STORE_DUPLICATE;
            return;
        }
    }
    for (size_t i = 0; i < s->n_votes; i++) {
        if (s->votes[i].participant_id == v->participant_id && s->votes[i].poll_id == v->poll_id) {
            op->status = STORE_CONFLICT;
            return;
        }
    }
    v->id = ++s->next_id;
    fake_now(v->created_at);
    s->votes = grow(s->votes, s->n_votes, sizeof(*s->votes));
    s->votes[s->n_votes++] = *v;
    op->id = v->id;
}

static const char *fake_event_type(enum store_op_kind kind)
{
    const char *t = store_event_type(kind);

    return t ? t : "unknown";
}

/* The session's events after op->seq, ascending, as the database would give them. */
static void fake_events_since(struct store *s, struct store_op *op)
{
    size_t n = 0;

    op->events = xcalloc(s->n_events + 1, sizeof(*op->events));
    for (size_t i = 0; i < s->n_events && n < STORE_EVENTS_MAX; i++) {
        const struct fake_event *e = &s->events[i];
        struct store_event *out = &op->events[n];

        if (e->session_id != op->session_id || e->seq <= op->seq || e->payload == NULL)
            continue;
        out->seq = e->seq;
        snprintf(out->type, sizeof(out->type), "%s", fake_event_type(e->kind));
        out->payload = xstrdup(e->payload);
        n++;
    }
    op->n_events = (uint32_t)n;
}

/* The poll's committed votes, as run_poll_counts gives them. */
static void fake_counts(const struct store *s, struct store_op *op)
{
    memset(op->counts, 0, sizeof(op->counts));
    op->total = 0;
    for (size_t i = 0; i < s->n_votes; i++) {
        if (s->votes[i].poll_id != op->id)
            continue;
        for (uint32_t c = 0; c < s->votes[i].n_choices; c++)
            op->counts[s->votes[i].choices[c]]++;
        op->total++;
    }
    op->counted = true;
}

static void fake_apply(struct store *s, struct store_op *op)
{
    struct fake_session *fs = fake_session(s, op->session_id);
    struct fake_poll *p;

    op->status = STORE_OK;
    switch (op->kind) {
    case STORE_SESSION_CREATE:
        fake_session_create(s, op);
        fs = fake_session(s, op->session_id);
        break;
    case STORE_PARTICIPANT_CREATE:
        TALLY_ASSERT(fs != NULL);
        s->parts = grow(s->parts, s->n_parts, sizeof(*s->parts));
        s->parts[s->n_parts].id = op->id = ++s->next_id;
        s->parts[s->n_parts].session_id = op->session_id;
        memcpy(s->parts[s->n_parts].hash, op->token_hash, sizeof(op->token_hash));
        s->n_parts++;
        break;
    case STORE_POLL_CREATE:
        TALLY_ASSERT(fs != NULL);
        fake_poll_create(s, op);
        break;
    case STORE_POLL_OPEN:
    case STORE_POLL_CLOSE:
        p = fake_poll(s, op->session_id, op->id);
        if (p == NULL) {
            op->status = STORE_NOT_FOUND;
            break;
        }
        p->state = op->kind == STORE_POLL_OPEN ? 1 : 2;
        if (op->kind == STORE_POLL_CLOSE)
            fake_counts(s, op);
        break;
    case STORE_POLL_COUNTS:
        fake_counts(s, op);
        break;
    case STORE_PARTICIPANTS_COUNT:
        op->total = 0;
        for (size_t i = 0; i < s->n_parts; i++)
            op->total += s->parts[i].session_id == op->session_id;
        op->counted = true;
        break;
    case STORE_SESSION_CLOSE:
        TALLY_ASSERT(fs != NULL);
        fs->closed = true;
        break;
    case STORE_VOTE:
        fake_vote(s, op);
        break;
    case STORE_VOTE_LOOKUP:
        op->status = STORE_NOT_FOUND;
        for (size_t i = 0; i < s->n_votes; i++) {
            if (s->votes[i].participant_id == op->vote.participant_id &&
                strcmp(s->votes[i].idem_key, op->vote.idem_key) == 0) {
                op->vote = s->votes[i];
                op->status = STORE_OK;
                break;
            }
        }
        break;
    case STORE_EVENTS_SINCE:
        fake_events_since(s, op);
        break;
    case STORE_EVENTS_PRUNE:
        s->prunes++;
        s->prune_keep_s = op->id;
        op->n_events = 0;
        break;
    }
    if (op->status == STORE_OK && op->event != NULL) {
        TALLY_ASSERT(fs != NULL && s->n_events < FAKE_EVENTS_MAX);
        op->seq = ++fs->seq;
        s->events[s->n_events++] = (struct fake_event){
            .session_id = fs->id, .seq = op->seq, .kind = op->kind, .payload = op->event(op)};
    }
}

/* Applies a pending failure for op, if one is armed; true when it did. */
static bool fake_fail(struct store *s, struct store_op *op)
{
    for (unsigned i = 0; i < s->n_fails; i++) {
        struct fake_fail *f = &s->fails[i];

        if (f->kind != op->kind || f->count == 0)
            continue;
        f->count--;
        if (f->commit)
            fake_apply(s, op);
        op->status = f->status;
        return true;
    }
    return false;
}

static void *fake_main(void *arg)
{
    struct store *s = arg;

    pthread_mutex_lock(&s->mu);
    for (;;) {
        struct store_op *op;

        while (!s->stop && (s->hold || s->q_len == 0))
            pthread_cond_wait(&s->work, &s->mu);
        if (s->q_len == 0) /* stopping, and nothing left */
            break;
        op = s->queue[s->q_head];
        s->q_head = (s->q_head + 1) % FAKE_QUEUE_MAX;
        s->q_len--;
        if (s->parking[op->kind]) {
            s->parked = grow(s->parked, s->n_parked, sizeof(*s->parked));
            s->parked[s->n_parked++] = op;
            if (s->q_len == 0 && s->busy == 0)
                pthread_cond_broadcast(&s->idle);
            continue;
        }
        s->busy++;
        if (!fake_fail(s, op))
            fake_apply(s, op);
        pthread_mutex_unlock(&s->mu);
        op->on_done(op); /* may wait for a full mailbox: never under the lock */
        pthread_mutex_lock(&s->mu);
        s->busy--;
        if (s->q_len == 0 && s->busy == 0)
            pthread_cond_broadcast(&s->idle);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

struct store *fake_store_create(void)
{
    struct store *s = xcalloc(1, sizeof(*s));

    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->work, NULL);
    pthread_cond_init(&s->idle, NULL);
    s->queue = xcalloc(FAKE_QUEUE_MAX, sizeof(*s->queue));
    TALLY_ASSERT(pthread_create(&s->thread, NULL, fake_main, s) == 0);
    return s;
}

void fake_store_destroy(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    s->stop = true;
    s->hold = false;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
    for (size_t i = 0; i < s->n_sessions; i++)
        free(s->sessions[i].title);
    for (size_t i = 0; i < s->n_polls; i++) {
        free(s->polls[i].question);
        for (uint32_t o = 0; o < s->polls[i].n_options; o++)
            free(s->polls[i].options[o]);
    }
    for (size_t i = 0; i < s->n_events; i++)
        free(s->events[i].payload);
    TALLY_ASSERT(s->n_parked == 0); /* the tests release what they park */
    free(s->parked);
    free(s->sessions);
    free(s->polls);
    free(s->parts);
    free(s->votes);
    free(s->queue);
    pthread_cond_destroy(&s->work);
    pthread_cond_destroy(&s->idle);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

bool store_submit(struct store *s, struct store_op *op)
{
    bool ok;

    TALLY_ASSERT(op->on_done != NULL);
    pthread_mutex_lock(&s->mu);
    ok = !s->refuse && !s->stop && s->q_len < FAKE_QUEUE_MAX;
    if (ok) {
        s->queue[(s->q_head + s->q_len) % FAKE_QUEUE_MAX] = op;
        s->q_len++;
        s->submitted++;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
    return ok;
}

bool store_available(const struct store *s)
{
    struct store *m = (struct store *)s; /* the lock is not part of the value */
    bool on;

    pthread_mutex_lock(&m->mu);
    on = !m->refuse;
    pthread_mutex_unlock(&m->mu);
    return on;
}

void store_op_free(struct store_op *op)
{
    if (op == NULL)
        return;
    free(op->text);
    free(op->poll.question);
    for (uint32_t i = 0; i < API_OPTIONS_MAX; i++)
        free(op->poll.options[i]);
    for (uint32_t i = 0; i < op->n_events; i++)
        free(op->events[i].payload);
    free(op->events);
    free(op);
}

/* One instance only: whatever the directory lacks, the database lacks too. */
int store_find_session(struct store *s, const struct store_find *find, int64_t *sid, int64_t *pid)
{
    (void)s;
    (void)find;
    *sid = *pid = 0;
    return 0;
}

int store_load_session(struct store *s, int64_t sid, struct store_loader *l)
{
    (void)s;
    (void)sid;
    (void)l;
    return -ENOENT;
}

int store_load(struct store *s, struct store_loader *l)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_sessions; i++) {
        struct fake_session *fs = &s->sessions[i];
        struct store_session_row row = {fs->id,   fs->code, fs->title,     fs->closed,
                                        fs->hash, fs->seq,  fs->created_at};

        l->on_session(l->arg, &row);
    }
    for (size_t i = 0; i < s->n_polls; i++) {
        struct fake_poll *p = &s->polls[i];
        struct store_poll_row row = {
            .id = p->id,
            .session_id = p->session_id,
            .question = p->question,
            .kind = p->kind,
            .n_options = p->n_options,
            .max_choices = p->max_choices,
            .state = p->state,
        };

        for (uint32_t o = 0; o < p->n_options; o++)
            row.options[o] = p->options[o];
        l->on_poll(l->arg, &row);
    }
    for (size_t i = 0; i < s->n_parts; i++)
        l->on_participant(l->arg, s->parts[i].session_id, s->parts[i].id, s->parts[i].hash);
    /* Votes as counts, one row per vote (the loader adds them up), and the
     * highest id, as the real store's aggregate hands them over. */
    l->vote_id_max = 0;
    for (size_t i = 0; i < s->n_votes; i++) {
        struct store_vote_count row = {
            .session_id = s->votes[i].session_id,
            .poll_id = s->votes[i].poll_id,
            .n_choices = s->votes[i].n_choices,
            .votes = 1,
        };

        memcpy(row.choices, s->votes[i].choices, sizeof(row.choices));
        l->on_vote_count(l->arg, &row);
        if (s->votes[i].id > l->vote_id_max)
            l->vote_id_max = s->votes[i].id;
    }
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void fake_store_fail_next(struct store *s, enum store_op_kind kind, enum store_status status,
                          unsigned count, bool commit)
{
    pthread_mutex_lock(&s->mu);
    TALLY_ASSERT(s->n_fails < FAKE_FAILS_MAX);
    s->fails[s->n_fails++] = (struct fake_fail){kind, status, count, commit};
    pthread_mutex_unlock(&s->mu);
}

void fake_store_refuse(struct store *s, bool on)
{
    pthread_mutex_lock(&s->mu);
    s->refuse = on;
    pthread_mutex_unlock(&s->mu);
}

void fake_store_hold(struct store *s, bool on)
{
    pthread_mutex_lock(&s->mu);
    s->hold = on;
    pthread_cond_broadcast(&s->work);
    pthread_mutex_unlock(&s->mu);
}

unsigned fake_store_pending(struct store *s)
{
    unsigned n;

    pthread_mutex_lock(&s->mu);
    n = (unsigned)s->q_len + s->busy;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fake_store_wait_idle(struct store *s)
{
    pthread_mutex_lock(&s->mu);
    while (s->q_len > 0 || s->busy > 0)
        pthread_cond_wait(&s->idle, &s->mu);
    pthread_mutex_unlock(&s->mu);
}

int64_t fake_store_add_vote(struct store *s, const struct store_vote *v)
{
    int64_t id;

    pthread_mutex_lock(&s->mu);
    s->votes = grow(s->votes, s->n_votes, sizeof(*s->votes));
    s->votes[s->n_votes] = *v;
    id = s->votes[s->n_votes].id = ++s->next_id;
    fake_now(s->votes[s->n_votes].created_at);
    s->n_votes++;
    pthread_mutex_unlock(&s->mu);
    return id;
}

bool fake_store_event(struct store *s, size_t i, struct fake_event *out)
{
    bool ok;

    pthread_mutex_lock(&s->mu);
    ok = i < s->n_events;
    if (ok)
        *out = s->events[i];
    pthread_mutex_unlock(&s->mu);
    return ok;
}

size_t fake_store_events(struct store *s)
{
    size_t n;

    pthread_mutex_lock(&s->mu);
    n = s->n_events;
    pthread_mutex_unlock(&s->mu);
    return n;
}

uint64_t fake_store_submitted(struct store *s)
{
    uint64_t n;

    pthread_mutex_lock(&s->mu);
    n = s->submitted;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fake_store_park(struct store *s, enum store_op_kind kind, bool on)
{
    pthread_mutex_lock(&s->mu);
    TALLY_ASSERT((unsigned)kind < ARRAY_LEN(s->parking));
    s->parking[kind] = on;
    if (!on) {
        size_t kept = 0;

        for (size_t i = 0; i < s->n_parked; i++) {
            struct store_op *op = s->parked[i];

            if (op->kind != kind) {
                s->parked[kept++] = op;
                continue;
            }
            TALLY_ASSERT(s->q_len < FAKE_QUEUE_MAX);
            s->queue[(s->q_head + s->q_len) % FAKE_QUEUE_MAX] = op;
            s->q_len++;
        }
        s->n_parked = kept;
        pthread_cond_signal(&s->work);
    }
    pthread_mutex_unlock(&s->mu);
}

size_t fake_store_parked(struct store *s)
{
    size_t n;

    pthread_mutex_lock(&s->mu);
    n = s->n_parked;
    pthread_mutex_unlock(&s->mu);
    return n;
}

void fake_store_forget_events(struct store *s, int64_t session_id, int64_t upto_seq)
{
    pthread_mutex_lock(&s->mu);
    for (size_t i = 0; i < s->n_events; i++) {
        if (s->events[i].session_id == session_id && s->events[i].seq <= upto_seq) {
            free(s->events[i].payload);
            s->events[i].payload = NULL;
        }
    }
    pthread_mutex_unlock(&s->mu);
}

uint64_t fake_store_prunes(struct store *s, int64_t *keep_s)
{
    uint64_t n;

    pthread_mutex_lock(&s->mu);
    n = s->prunes;
    if (keep_s)
        *keep_s = s->prune_keep_s;
    pthread_mutex_unlock(&s->mu);
    return n;
}
