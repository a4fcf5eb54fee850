/*
 * mix.c - tally-stress resume and soak: subscribers that drop and resume
 * while the presenter keeps the session moving.
 *
 *   tally-stress resume [--participants 1000] [--seconds 30] [--cycle 2]
 *                       [--drop-share 10] [--votes 0] [common options]
 *   tally-stress soak   [--participants 1000] [--minutes 5] [--cycle 5]
 *                       [--drop-share 1] [--votes 1] [common options]
 *
 * N participants join and subscribe. The presenter cycles polls: create,
 * open, wait --cycle seconds, close (three sequenced events a cycle). With
 * --votes 1 every participant votes over its WebSocket when it sees
 * poll.opened. Each second, --drop-share percent of the connected
 * participants drop (the socket is shut, as a phone losing its network)
 * and reconnect at once with since=<the last seq they saw>. At the end,
 * drops stop, every participant is given time to catch up, and each one's
 * sequence is checked: every event after its hello exactly once (gaps,
 * repeats, and participants whose last seq is not the session's last).
 * `soak` is the same mix for minutes, with votes and fewer drops.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/base.h"
#include "stress/engine.h"
#include "stress/fanout_common.h"
#include "stress/scen.h"
#include "stress/track.h"

#define MIX_CATCH_UP_S 10 /* after the last cycle: resumes finish, events arrive */
#define MIX_READY_BASE_S 30
#define MIX_VOTE_MAX 160

/* One engine thread's counters: its own, read after the engine stopped. */
struct mix_thread {
    struct hist opened, ack;
    uint64_t acked, vote_errors, opened_seen, results;
    double drop_credit; /* drops owed at the current share, fractional */
    uint64_t last_tick_ns;
    uint64_t rnd;
};

struct mix {
    struct scen_opts c;
    const char *name;
    uint32_t n;
    unsigned seconds, cycle_s, drop_pct;
    bool votes;
    struct scen_session s;
    struct scen_joins joins;
    _Atomic int64_t poll_id;  /* the open poll, 0 between */
    _Atomic uint64_t open_ns; /* when its open request went out */
    atomic_bool dropping;
    struct track_seq *seq; /* per participant */
    uint8_t *resumed;      /* per participant: has connected before */
    uint64_t *sent_ns;     /* per participant: its vote in flight, 0 when none */
    struct eng *eng;
    struct mix_thread *mt;
};

static void mix_usage(const char *name)
{
    fprintf(stderr,
            "usage: tally-stress %s [--participants N] [--seconds S | --minutes M] [--cycle S]\n"
            "                       [--drop-share PCT] [--votes 0|1] [--target HOST:PORT]\n"
            "                       [--server-pid PID] [--threads T] [--sources K]\n"
            "                       [--json FILE] [--deadline S]\n",
            name);
    exit(2);
}

static void mix_parse(int argc, char **argv, struct mix *m)
{
    bool soak = strcmp(argv[1], "soak") == 0;
    scen_opts_init(&m->c);
    m->name = soak ? "soak" : "resume";
    m->n = 1000;
    m->seconds = soak ? 300 : 30;
    m->cycle_s = soak ? 5 : 2;
    m->drop_pct = soak ? 1 : 10;
    m->votes = soak;
    const char *f, *v;
    int i = 2, more;
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (scen_opts_take(&m->c, f, v))
            continue;
        if (strcmp(f, "--participants") == 0)
            m->n = fo_parse_uint(f, v, 1, ENG_CLIENTS_MAX);
        else if (strcmp(f, "--seconds") == 0)
            m->seconds = fo_parse_uint(f, v, 1, SCEN_SECONDS_MAX);
        else if (strcmp(f, "--minutes") == 0)
            m->seconds = 60 * fo_parse_uint(f, v, 1, SCEN_SECONDS_MAX / 60);
        else if (strcmp(f, "--cycle") == 0)
            m->cycle_s = fo_parse_uint(f, v, 1, 600);
        else if (strcmp(f, "--drop-share") == 0)
            m->drop_pct = fo_parse_uint(f, v, 0, 100);
        else if (strcmp(f, "--votes") == 0)
            m->votes = fo_parse_uint(f, v, 0, 1) == 1;
        else
            mix_usage(m->name);
    }
    if (more < 0)
        mix_usage(m->name);
    if (m->votes && strcmp(m->c.proto, ENG_PROTO_SSE) == 0) {
        fprintf(stderr, "tally-stress: %s votes over the WebSocket: --proto sse needs --votes 0\n",
                m->name);
        exit(2);
    }
}

static int mix_path(void *ctx, uint32_t index, char *out, size_t cap)
{
    const struct mix *m = ctx;
    if (m->resumed[index])
        return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s&since=%" PRIu64, m->s.code,
                        m->joins.tokens[index], m->seq[index].last);
    return snprintf(out, cap, "/api/v1/sessions/%s/ws?token=%s", m->s.code, m->joins.tokens[index]);
}

static void mix_vote(struct mix *m, struct eng_thread *t, uint32_t index, int64_t poll,
                     uint64_t now)
{
    char msg[MIX_VOTE_MAX];
    int n = snprintf(msg, sizeof(msg),
                     "{\"type\":\"vote\",\"id\":\"m%" PRId64 "-%" PRIu32 "\",\"poll_id\":%" PRId64
                     ",\"choice\":[%" PRIu32 "]}",
                     poll, index, poll, index % 4);
    if (eng_send_text(t, index, msg, (size_t)n) == 0)
        m->sent_ns[index] = now;
}

/* A sequenced event: tracked, and poll.opened of the open poll measured (and voted on). */
static void mix_sequenced(struct mix *m, struct mix_thread *mt, struct eng_thread *t,
                          uint32_t index, const struct wsc_frame *f, uint64_t seq, uint64_t now)
{
    uint64_t dups = m->seq[index].dups;
    track_seq_see(&m->seq[index], seq);
    uint64_t poll = 0;
    if (m->seq[index].dups != dups || !track_msg_is(f->payload, f->payload_len, "poll.opened") ||
        !track_msg_u64(f->payload, f->payload_len, "id", &poll) ||
        (int64_t)poll != atomic_load(&m->poll_id))
        return;
    uint64_t open = atomic_load(&m->open_ns);
    mt->opened_seen++;
    hist_add(&mt->opened, open && now > open ? now - open : 0);
    if (m->votes && m->sent_ns[index] == 0)
        mix_vote(m, t, index, (int64_t)poll, now);
}

static void mix_on_message(void *ctx, struct eng_thread *t, uint32_t index,
                           const struct wsc_frame *f, uint64_t now)
{
    struct mix *m = ctx;
    struct mix_thread *mt = &m->mt[eng_thread_id(t)];
    char type[TRACK_TYPE_MAX];
    uint64_t seq;
    if (track_msg_type(f->payload, f->payload_len, type, sizeof(type)) < 0)
        return;
    if (strcmp(type, "hello") == 0) {
        /* A resumed client keeps following from its own last seq: the replay comes next. */
        if (!m->resumed[index] && track_msg_u64(f->payload, f->payload_len, "seq", &seq))
            track_seq_init(&m->seq[index], seq);
        m->resumed[index] = 1;
    } else if (strcmp(type, "results") == 0) {
        mt->results++;
    } else if (strcmp(type, "ack") == 0 || strcmp(type, "error") == 0) {
        if (m->sent_ns[index] != 0) {
            bool ok = type[0] == 'a';
            mt->acked += ok;
            mt->vote_errors += !ok;
            if (ok)
                hist_add(&mt->ack, now - m->sent_ns[index]);
            m->sent_ns[index] = 0;
        }
    } else if (track_msg_u64(f->payload, f->payload_len, "seq", &seq)) {
        mix_sequenced(m, mt, t, index, f, seq, now);
    }
}

/* Drops drop_pct % of this thread's clients per second, picked at random. */
static void mix_on_tick(void *ctx, struct eng_thread *t, uint64_t now)
{
    struct mix *m = ctx;
    struct mix_thread *mt = &m->mt[eng_thread_id(t)];
    uint64_t dt = mt->last_tick_ns ? now - mt->last_tick_ns : 0;
    mt->last_tick_ns = now;
    if (!atomic_load(&m->dropping) || m->drop_pct == 0)
        return;
    unsigned nt = eng_threads(m->eng), id = eng_thread_id(t);
    uint32_t mine = m->n > id ? (m->n - id - 1) / nt + 1 : 0;
    mt->drop_credit += (double)mine * m->drop_pct / 100.0 * (double)dt / 1e9;
    while (mt->drop_credit >= 1.0 && mine > 0) {
        mt->drop_credit -= 1.0;
        uint32_t index = (uint32_t)(track_rand(&mt->rnd) % mine) * nt + id;
        if (m->sent_ns[index] == 0) /* a vote waiting for its ack stays connected */
            (void)eng_reconnect(t, index);
    }
}

struct mix_sum {
    struct hist opened, ack;
    uint64_t acked, vote_errors, opened_seen, results;
    uint64_t gaps, repeats, behind;
    uint64_t final_seq;
    unsigned cycles;
    uint64_t ready, failed, dropped;
    double connect_s, run_s;
    struct scen_server before, after;
};

static int mix_setup(struct mix *m, struct mix_sum *s)
{
    if (scen_session_create(&m->c, m->name, &m->s) < 0)
        return -EPROTO;
    scen_joins_init(&m->joins, m->n);
    if (scen_join(&m->c, &m->s, &m->joins, m->n) < 0)
        return -EPROTO;
    unsigned sources = m->c.sources > m->n / 20000 + 1 ? m->c.sources : m->n / 20000 + 1;
    const struct eng_config cfg = {
        .host = m->c.host,
        .port = m->c.port,
        .max_clients = m->n,
        .threads = m->c.threads,
        .sources = sources,
        .proto = m->c.proto,
        .path = mix_path,
        .on_message = mix_on_message,
        .on_tick = mix_on_tick,
        .ctx = m,
    };
    m->eng = eng_start(&cfg);
    if (m->eng == NULL)
        return -EPROTO;
    m->mt = xcalloc(eng_threads(m->eng), sizeof(*m->mt));
    for (unsigned i = 0; i < eng_threads(m->eng); i++) {
        hist_init(&m->mt[i].opened);
        hist_init(&m->mt[i].ack);
        m->mt[i].rnd = 0x9e3779b97f4a7c15ull + i;
    }
    eng_open(m->eng, m->n);
    s->connect_s = eng_wait_ready(m->eng, MIX_READY_BASE_S + m->n / 1000);
    eng_count(m->eng, &s->ready, &s->failed, &s->dropped);
    printf("%s: session %s, %" PRIu32 " participants joined in %.1f s, %" PRIu64
           " subscribed in %.1f s (%u engine threads)\n",
           m->name, m->s.code, m->n, m->joins.seconds, s->ready, s->connect_s, eng_threads(m->eng));
    fflush(stdout);
    return 0;
}

/* The presenter: create, open, wait, close, for the run's length. */
static int mix_cycles(struct mix *m, struct mix_sum *s)
{
    uint64_t end = fo_now_ns() + (uint64_t)m->seconds * 1000000000ull;
    atomic_store(&m->dropping, true);
    while (fo_now_ns() < end) {
        int64_t poll = 0;
        if (scen_poll_create(&m->c, &m->s, 4, &poll) < 0)
            return -EPROTO;
        atomic_store(&m->open_ns, fo_now_ns());
        atomic_store(&m->poll_id, poll);
        if (scen_poll_state(&m->c, &m->s, poll, true, NULL) < 0)
            return -EPROTO;
        fo_sleep_ms(m->cycle_s * 1000u);
        if (scen_poll_state(&m->c, &m->s, poll, false, NULL) < 0)
            return -EPROTO;
        s->cycles++;
    }
    atomic_store(&m->dropping, false);
    s->final_seq = 3ull * s->cycles; /* created, opened, closed */
    return 0;
}

/* Participants whose last seq is not the session's last; 0 when all caught up. */
static uint64_t mix_behind(const struct mix *m, uint64_t final_seq)
{
    uint64_t behind = 0;
    for (uint32_t i = 0; i < m->n; i++)
        behind += __atomic_load_n(&m->seq[i].last, __ATOMIC_RELAXED) != final_seq;
    return behind;
}

static void mix_sum_threads(const struct mix *m, unsigned nt, struct mix_sum *s)
{
    hist_init(&s->opened);
    hist_init(&s->ack);
    for (unsigned i = 0; i < nt; i++) {
        const struct mix_thread *mt = &m->mt[i];
        hist_merge(&s->opened, &mt->opened);
        hist_merge(&s->ack, &mt->ack);
        s->acked += mt->acked;
        s->vote_errors += mt->vote_errors;
        s->opened_seen += mt->opened_seen;
        s->results += mt->results;
    }
    for (uint32_t i = 0; i < m->n; i++) {
        s->gaps += m->seq[i].gaps;
        s->repeats += m->seq[i].dups;
    }
}

static void mix_report(const struct mix *m, const struct mix_sum *s, const struct eng_stats *es)
{
    char line[256];
    uint64_t cpu = s->after.cpu_us > s->before.cpu_us ? s->after.cpu_us - s->before.cpu_us : 0;
    printf("%s: %u cycles in %.1f s (last seq %" PRIu64 "), %" PRIu64 " drops with resume\n",
           m->name, s->cycles, s->run_s, s->final_seq, es->resumes);
    scen_hist_line(&es->resume_ns, line, sizeof(line));
    printf("resume ms (drop -> hello): %s\n", line);
    scen_hist_line(&s->opened, line, sizeof(line));
    printf("poll.opened delivery ms: %s\n", line);
    if (m->votes) {
        scen_hist_line(&s->ack, line, sizeof(line));
        printf("votes: %" PRIu64 " acked, %" PRIu64 " errors; ack ms: %s\n", s->acked,
               s->vote_errors, line);
    }
    printf("events: %" PRIu64 " seq gaps, %" PRIu64 " repeats, %" PRIu64
           " participants not at the last seq; %" PRIu64 " dropped for good, %" PRIu64
           " failed to connect\n",
           s->gaps, s->repeats, s->behind, es->dropped_after_ready, es->failed_before_ready);
    scen_errors_print(es);
    if (s->before.known)
        printf("server: %.2f s CPU over %.1f s, RSS %.1f MiB at the end\n", cpu / 1e6, s->run_s,
               s->after.rss / 1048576.0);
    json_t *root = json_pack(
        "{s:s,s:I,s:i,s:i,s:i,s:i,s:I,s:f,s:I,s:I,s:o,s:o,s:o,s:I,s:I,s:I,s:I,s:I,s:I,s:I,s:I,"
        "s:o,s:f,s:I}",
        "scenario", m->name, "participants", (json_int_t)m->n, "seconds", (int)m->seconds,
        "cycle_s", (int)m->cycle_s, "drop_share_pct", (int)m->drop_pct, "cycles", (int)s->cycles,
        "final_seq", (json_int_t)s->final_seq, "run_s", s->run_s, "subscribed",
        (json_int_t)s->ready, "resumes", (json_int_t)es->resumes, "resume_ms",
        scen_hist_json(&es->resume_ns), "opened_ms", scen_hist_json(&s->opened), "ack_ms",
        scen_hist_json(&s->ack), "acked", (json_int_t)s->acked, "vote_errors",
        (json_int_t)s->vote_errors, "seq_gaps", (json_int_t)s->gaps, "seq_repeats",
        (json_int_t)s->repeats, "behind", (json_int_t)s->behind, "dropped",
        (json_int_t)es->dropped_after_ready, "connect_failed", (json_int_t)es->failed_before_ready,
        "results", (json_int_t)s->results, "errors", scen_errors_json(es), "server_cpu_s",
        cpu / 1e6, "server_rss", (json_int_t)s->after.rss);
    json_object_set_new(root, "client_cpu_s", json_real(scen_self_cpu_s()));
    scen_json_write(m->c.json_path, root);
}

/** Runs `tally-stress resume` or `tally-stress soak`; returns the process exit code. */
int mix_main(int argc, char **argv);

int mix_main(int argc, char **argv)
{
    static struct mix m;
    static struct mix_sum s;
    static struct eng_stats es;
    mix_parse(argc, argv, &m);
    scen_deadline_arm(m.c.deadline_s ? m.c.deadline_s
                                     : m.seconds + m.n / 200 + SCEN_DEADLINE_SLACK_S);
    m.seq = xcalloc(m.n, sizeof(*m.seq));
    m.resumed = xcalloc(m.n, 1);
    m.sent_ns = xcalloc(m.n, sizeof(*m.sent_ns));
    if (mix_setup(&m, &s) < 0)
        return 1;
    s.before = scen_server_sample(m.c.server_pid);
    uint64_t t0 = fo_now_ns();
    int rc = mix_cycles(&m, &s);
    uint64_t catch_up = fo_now_ns() + MIX_CATCH_UP_S * 1000000000ull;
    do
        fo_sleep_ms(100);
    while (fo_now_ns() < catch_up && mix_behind(&m, s.final_seq) > 0);
    s.run_s = (fo_now_ns() - t0) / 1e9;
    s.after = scen_server_sample(m.c.server_pid);
    s.behind = mix_behind(&m, s.final_seq);
    unsigned nt = eng_threads(m.eng);
    eng_stop(m.eng, &es);
    mix_sum_threads(&m, nt, &s);
    mix_report(&m, &s, &es);
    bool clean = rc == 0 && s.ready == m.n && s.gaps == 0 && s.repeats == 0 && s.behind == 0 &&
                 s.vote_errors == 0;
    scen_joins_free(&m.joins);
    free(m.seq);
    free(m.resumed);
    free(m.sent_ns);
    free(m.mt);
    return clean ? 0 : 1;
}
