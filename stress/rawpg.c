/*
 * rawpg.c - tally-stress rawpg: the storage baseline. Inserts vote rows
 * straight into PostgreSQL, with no tallyd in between, so a run of
 * `tally-stress votes` can be compared with what the database alone does
 * on the same cluster.
 *
 *   tally-stress rawpg --conninfo STR [--connections 4] [--batch 1000]
 *                      [--seconds 10] [--form tallyd|plain|copy]
 *                      [--order blocks|spread]
 *
 * Setup creates one session, RAWPG_PARTICIPANTS participants and enough open
 * polls that every row is a new (poll, participant) pair, as every vote of
 * `tally-stress votes` is. Then `connections` threads, one libpq connection
 * each, insert `batch` rows per transaction for `seconds`. Each transaction
 * is one autocommitted statement with synchronous_commit on, so every row
 * counted is durable, in one of three forms:
 *   tallyd  the very INSERT ... SELECT FROM unnest ... ON CONFLICT DO
 *           NOTHING RETURNING store.c's writer runs (the default);
 *   plain   the same INSERT ... SELECT FROM unnest without ON CONFLICT and
 *           without RETURNING: the cheapest INSERT of these rows;
 *   copy    COPY votes FROM STDIN, text format.
 * The best of plain and copy is the raw rate tallyd is measured against.
 * --order says which participants a batch holds: `blocks` (the default, the
 * fastest) a contiguous run of one poll's participants, so each batch
 * touches a few index pages; `spread` every (blocks per poll)-th one of the
 * poll, as a batch of votes arriving from many clients is, which touches
 * index and participant pages all over the table.
 * Prints rows/s and the statement-plus-commit latency percentiles.
 *
 * Threads: the batches are (poll, participant block) chunks handed out by
 * one atomic counter, so no thread runs dry while another has pairs left.
 * Everything else a worker touches is its own until it is joined.
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/base.h"
#include "stress/fanout_common.h"
#include "stress/hist.h"

#define RAWPG_CONNECTIONS_MAX 64
#define RAWPG_BATCH_MAX 10000
#define RAWPG_PARTICIPANTS 20000
/* Polls are sized for this rate, about twice the best measured here, so a
 * run cannot exhaust its (poll, participant) pairs before its deadline. */
#define RAWPG_ROWS_PER_S_MAX 400000
#define RAWPG_ELEM_BYTES_MAX 48 /* one array element with its separator and quotes */
#define RAWPG_ARRAYS 5

static_assert(RAWPG_BATCH_MAX <= RAWPG_PARTICIPANTS, "a batch fits one poll's participants");

#define RAWPG_UNNEST_SQL                                                                       \
    "INSERT INTO votes(session_id, poll_id, participant_id, choices, idem_key) "               \
    "SELECT s, p, pa, c::smallint[], k "                                                       \
    "FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::text[], $5::text[]) "           \
    "AS t(s, p, pa, c, k)"
/* tallyd's statement (store.c insert_votes), word for word. */
#define RAWPG_INSERT_SQL RAWPG_UNNEST_SQL " ON CONFLICT DO NOTHING RETURNING id, poll_id, participant_id, idem_key"
#define RAWPG_COPY_SQL "COPY votes(session_id, poll_id, participant_id, choices, idem_key) FROM STDIN"
#define RAWPG_COPY_ROW_MAX 128 /* one text row of COPY */

enum rawpg_form { RAWPG_TALLYD, RAWPG_PLAIN, RAWPG_COPY };
static const char *const rawpg_form_names[] = {"tallyd", "plain", "copy"};

struct rawpg_opts {
    const char *conninfo;
    unsigned connections;
    unsigned batch;
    unsigned seconds;
    enum rawpg_form form;
    bool spread; /* --order spread */
};

/* What setup created; read-only while the workers run. */
struct rawpg_plan {
    int64_t session_id;
    int64_t *polls;
    unsigned n_polls;
    int64_t *participants;
    unsigned n_participants;
    unsigned blocks_per_poll; /* participant blocks of `batch` rows in one poll */
    atomic_uint_fast64_t next_chunk;
    uint64_t chunks;
};

struct rawpg_worker {
    pthread_t tid;
    unsigned index;
    const struct rawpg_opts *o;
    struct rawpg_plan *plan;
    uint64_t deadline_ns;
    char *arr[RAWPG_ARRAYS];
    size_t arr_cap;
    struct hist hist;
    uint64_t rows, commits, conflicts;
    bool failed, exhausted;
};

static void rawpg_usage(void)
{
    fprintf(stderr, "usage: tally-stress rawpg --conninfo STR [--connections N] [--batch N]"
                    " [--seconds S] [--form tallyd|plain|copy] [--order blocks|spread]\n");
    exit(2);
}

static void rawpg_parse(int argc, char **argv, struct rawpg_opts *o)
{
    const char *f, *v;
    int i = 2, more;

    *o = (struct rawpg_opts){.connections = 4, .batch = 1000, .seconds = 10};
    while ((more = fo_opt_next(argc, argv, &i, &f, &v)) > 0) {
        if (strcmp(f, "--conninfo") == 0)
            o->conninfo = v;
        else if (strcmp(f, "--connections") == 0)
            o->connections = fo_parse_uint(f, v, 1, RAWPG_CONNECTIONS_MAX);
        else if (strcmp(f, "--batch") == 0)
            o->batch = fo_parse_uint(f, v, 1, RAWPG_BATCH_MAX);
        else if (strcmp(f, "--seconds") == 0)
            o->seconds = fo_parse_uint(f, v, 1, 3600);
        else if (strcmp(f, "--form") == 0 && strcmp(v, "tallyd") == 0)
            o->form = RAWPG_TALLYD;
        else if (strcmp(f, "--form") == 0 && strcmp(v, "plain") == 0)
            o->form = RAWPG_PLAIN;
        else if (strcmp(f, "--form") == 0 && strcmp(v, "copy") == 0)
            o->form = RAWPG_COPY;
        else if (strcmp(f, "--order") == 0 && strcmp(v, "blocks") == 0)
            o->spread = false;
        else if (strcmp(f, "--order") == 0 && strcmp(v, "spread") == 0)
            o->spread = true;
        else
            rawpg_usage();
    }
    if (more < 0 || o->conninfo == NULL)
        rawpg_usage();
}

/* Connects with synchronous_commit forced on: a server default of off would
 * measure acknowledgements that a crash could still take back. */
static PGconn *rawpg_connect(const char *conninfo)
{
    PGconn *c = PQconnectdb(conninfo);
    PGresult *res;

    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "tally-stress rawpg: connect: %s", PQerrorMessage(c));
        PQfinish(c);
        return NULL;
    }
    res = PQexec(c, "SET synchronous_commit = on");
    if (PQresultStatus(res) != PGRES_COMMAND_OK) {
        fprintf(stderr, "tally-stress rawpg: SET: %s", PQerrorMessage(c));
        PQclear(res);
        PQfinish(c);
        return NULL;
    }
    PQclear(res);
    return c;
}

/* Runs sql with text parameters and copies the first column (ids) of up to
 * cap rows into out. Returns the row count, or -EIO. */
static int rawpg_ids(PGconn *c, const char *sql, int n_params, const char *const *params,
                     int64_t *out, unsigned cap)
{
    PGresult *res = PQexecParams(c, sql, n_params, NULL, params, NULL, NULL, 0);
    int rows;

    if (PQresultStatus(res) != PGRES_TUPLES_OK) {
        fprintf(stderr, "tally-stress rawpg: setup: %s", PQerrorMessage(c));
        PQclear(res);
        return -EIO;
    }
    rows = PQntuples(res);
    TALLY_ASSERT(rows >= 0);
    TALLY_ASSERT((unsigned)rows <= cap);
    for (int i = 0; i < rows; i++)
        out[i] = strtoll(PQgetvalue(res, i, 0), NULL, 10);
    PQclear(res);
    return rows;
}

/* Creates the session, participants and open polls. Returns 0 or -EIO. */
/* A random join code from tallyd's alphabet (no 0/O, 1/I/L): the rows must
 * load into a real tallyd. A clash with an existing code fails the setup. */
static void rawpg_code(char code[64])
{
    static const char alphabet[] = "ABCDEFGHJKMNPQRSTUVWXYZ23456789";
    uint64_t x = fo_now_ns() ^ ((uint64_t)getpid() << 32);

    for (int i = 0; i < 6; i++) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        code[i] = alphabet[(x >> 33) % (sizeof(alphabet) - 1)];
    }
    code[6] = '\0';
}

static int rawpg_setup(PGconn *c, const struct rawpg_opts *o, struct rawpg_plan *plan)
{
    char code[64], sid[32], n_part[16], n_polls[16];
    const char *p[2];
    uint64_t rows_max = (uint64_t)RAWPG_ROWS_PER_S_MAX * o->seconds;

    plan->blocks_per_poll = RAWPG_PARTICIPANTS / o->batch;
    plan->n_participants = plan->blocks_per_poll * o->batch;
    plan->n_polls = (unsigned)((rows_max + plan->n_participants - 1) / plan->n_participants);
    plan->chunks = (uint64_t)plan->n_polls * plan->blocks_per_poll;
    plan->polls = xcalloc(plan->n_polls, sizeof(*plan->polls));
    plan->participants = xcalloc(plan->n_participants, sizeof(*plan->participants));
    atomic_init(&plan->next_chunk, 0);

    /* Rows a tallyd can load, so the recovery benchmark can use them: a join
     * code from the product's alphabet and SHA-256 hex token hashes, unique
     * per run (the code and hashes are unique columns). */
    rawpg_code(code);
    p[0] = code;
    if (rawpg_ids(c, "INSERT INTO sessions(code, title, presenter_token_hash) "
                     "VALUES ($1, 'storage baseline', encode(sha256(convert_to($1 || "
                     "clock_timestamp()::text, 'UTF8')), 'hex')) RETURNING id",
                  1, p, &plan->session_id, 1) != 1)
        return -EIO;
    snprintf(sid, sizeof(sid), "%" PRId64, plan->session_id);
    snprintf(n_part, sizeof(n_part), "%u", plan->n_participants);
    snprintf(n_polls, sizeof(n_polls), "%u", plan->n_polls);
    p[0] = sid;
    p[1] = n_part;
    if (rawpg_ids(c, "INSERT INTO participants(session_id, token_hash) "
                     "SELECT $1::bigint, encode(sha256(convert_to('rawpg-' || $1 || '-' || g "
                     "|| clock_timestamp()::text, 'UTF8')), 'hex') "
                     "FROM generate_series(1, $2::int) g "
                     "ORDER BY g RETURNING id",
                  2, p, plan->participants, plan->n_participants) != (int)plan->n_participants)
        return -EIO;
    p[1] = n_polls;
    if (rawpg_ids(c, "INSERT INTO polls(session_id, question, kind, options, max_choices, "
                     "state, opened_at) "
                     "SELECT $1, 'Which?', 'single', '[\"A\",\"B\",\"C\"]', 1, 'open', now() "
                     "FROM generate_series(1, $2::int) RETURNING id",
                  2, p, plan->polls, plan->n_polls) != (int)plan->n_polls)
        return -EIO;
    return 0;
}

/* Appends to one array under construction; the capacity was sized for
 * the widest element, so running out of room is a sizing bug. */
__attribute__((format(printf, 4, 5))) static size_t rawpg_appendf(char *buf, size_t len,
                                                                  size_t cap, const char *fmt, ...)
{
    va_list ap;
    int n;

    TALLY_ASSERT(len < cap);
    va_start(ap, fmt);
    n = vsnprintf(buf + len, cap - len, fmt, ap);
    va_end(ap);
    TALLY_ASSERT(n > 0);
    TALLY_ASSERT((size_t)n < cap - len);
    return len + (size_t)n;
}

/* Row i of chunk's batch: its participant, ascending within the batch either
 * way (store.c sorts a batch the same way). */
static int64_t rawpg_participant(const struct rawpg_worker *w, uint64_t chunk, unsigned i)
{
    const struct rawpg_plan *plan = w->plan;
    unsigned block = (unsigned)(chunk % plan->blocks_per_poll);

    if (w->o->spread)
        return plan->participants[block + i * plan->blocks_per_poll];
    return plan->participants[block * w->o->batch + i];
}

/* Fills the five text arrays with one chunk's rows, as store.c builds them:
 * one poll, participants in ascending order, choice {1}, and a key unique
 * per (participant, key) as tally-stress votes sends. */
static void rawpg_build(struct rawpg_worker *w, uint64_t chunk)
{
    const struct rawpg_plan *plan = w->plan;
    int64_t poll = plan->polls[chunk / plan->blocks_per_poll];
    size_t cap = w->arr_cap, len[RAWPG_ARRAYS];

    for (unsigned a = 0; a < RAWPG_ARRAYS; a++)
        len[a] = rawpg_appendf(w->arr[a], 0, cap, "{");
    for (unsigned i = 0; i < w->o->batch; i++) {
        int64_t pa = rawpg_participant(w, chunk, i);
        const char *sep = i ? "," : "";

        len[0] = rawpg_appendf(w->arr[0], len[0], cap, "%s%" PRId64, sep, plan->session_id);
        len[1] = rawpg_appendf(w->arr[1], len[1], cap, "%s%" PRId64, sep, poll);
        len[2] = rawpg_appendf(w->arr[2], len[2], cap, "%s%" PRId64, sep, pa);
        len[3] = rawpg_appendf(w->arr[3], len[3], cap, "%s\"{1}\"", sep);
        len[4] = rawpg_appendf(w->arr[4], len[4], cap, "%s\"k-%" PRId64 "-%" PRId64 "\"", sep,
                               poll, pa);
    }
    for (unsigned a = 0; a < RAWPG_ARRAYS; a++)
        len[a] = rawpg_appendf(w->arr[a], len[a], cap, "}");
}

/* One batch by COPY: the same rows as text lines. Returns the rows the
 * server reports, or -1. */
static int rawpg_copy(struct rawpg_worker *w, PGconn *c, uint64_t chunk)
{
    const struct rawpg_plan *plan = w->plan;
    int64_t poll = plan->polls[chunk / plan->blocks_per_poll];
    size_t cap = (size_t)w->o->batch * RAWPG_COPY_ROW_MAX, len = 0;
    char *buf = w->arr[0];
    PGresult *res;
    int rows = -1;

    TALLY_ASSERT(w->arr_cap >= cap);
    for (unsigned i = 0; i < w->o->batch; i++) {
        int64_t pa = rawpg_participant(w, chunk, i);

        len = rawpg_appendf(buf, len, cap, "%" PRId64 "\t%" PRId64 "\t%" PRId64 "\t{1}\tk-%" PRId64 "-%" PRId64 "\n",
                            plan->session_id, poll, pa, poll, pa);
    }
    res = PQexec(c, RAWPG_COPY_SQL);
    if (PQresultStatus(res) == PGRES_COPY_IN && PQputCopyData(c, buf, (int)len) == 1 &&
        PQputCopyEnd(c, NULL) == 1) {
        PQclear(res);
        res = PQgetResult(c);
        if (PQresultStatus(res) == PGRES_COMMAND_OK)
            rows = atoi(PQcmdTuples(res));
    }
    if (rows < 0)
        fprintf(stderr, "tally-stress rawpg: copy: %s", PQerrorMessage(c));
    PQclear(res);
    while ((res = PQgetResult(c)) != NULL)
        PQclear(res);
    return rows;
}

/* One batch: its statement and commit. false: the server refused it. */
static bool rawpg_insert(struct rawpg_worker *w, PGconn *c, uint64_t chunk)
{
    const char *params[RAWPG_ARRAYS];
    PGresult *res;
    uint64_t t0;
    int rows;

    if (w->o->form == RAWPG_COPY) {
        t0 = fo_now_ns();
        rows = rawpg_copy(w, c, chunk);
        if (rows < 0)
            return false;
        hist_add(&w->hist, fo_now_ns() - t0);
        TALLY_ASSERT((unsigned)rows <= w->o->batch);
        w->rows += (unsigned)rows;
        w->conflicts += w->o->batch - (unsigned)rows;
        w->commits++;
        return true;
    }
    rawpg_build(w, chunk);
    for (unsigned a = 0; a < RAWPG_ARRAYS; a++)
        params[a] = w->arr[a];
    t0 = fo_now_ns();
    res = PQexecParams(c, w->o->form == RAWPG_TALLYD ? RAWPG_INSERT_SQL : RAWPG_UNNEST_SQL, RAWPG_ARRAYS,
                       NULL, params, NULL, NULL, 0);
    if (PQresultStatus(res) != (w->o->form == RAWPG_TALLYD ? PGRES_TUPLES_OK : PGRES_COMMAND_OK)) {
        fprintf(stderr, "tally-stress rawpg: insert: %s", PQerrorMessage(c));
        PQclear(res);
        return false;
    }
    hist_add(&w->hist, fo_now_ns() - t0);
    rows = w->o->form == RAWPG_TALLYD ? PQntuples(res) : atoi(PQcmdTuples(res));
    TALLY_ASSERT(rows >= 0);
    TALLY_ASSERT((unsigned)rows <= w->o->batch);
    PQclear(res);
    w->rows += (unsigned)rows;
    /* Every pair is new, so a conflict means the generator is wrong. */
    w->conflicts += w->o->batch - (unsigned)rows;
    w->commits++;
    return true;
}

static void *rawpg_worker_main(void *arg)
{
    struct rawpg_worker *w = arg;
    PGconn *c = rawpg_connect(w->o->conninfo);

    if (c == NULL) {
        w->failed = true;
        return NULL;
    }
    while (fo_now_ns() < w->deadline_ns) {
        uint64_t chunk = atomic_fetch_add(&w->plan->next_chunk, 1);

        if (chunk >= w->plan->chunks) {
            w->exhausted = true;
            break;
        }
        if (!rawpg_insert(w, c, chunk)) {
            w->failed = true;
            break;
        }
    }
    PQfinish(c);
    return NULL;
}

/* Starts the workers, waits for them, and adds up what they did. Returns the
 * wall time of the run in ns. */
static uint64_t rawpg_run(const struct rawpg_opts *o, struct rawpg_plan *plan,
                          struct rawpg_worker *ws, struct hist *all)
{
    uint64_t t0 = fo_now_ns();

    for (unsigned i = 0; i < o->connections; i++) {
        struct rawpg_worker *w = &ws[i];

        w->index = i;
        w->o = o;
        w->plan = plan;
        w->deadline_ns = t0 + (uint64_t)o->seconds * 1000000000ull;
        /* Room for a batch of array elements or of COPY rows. */
        w->arr_cap = (size_t)o->batch * (RAWPG_ELEM_BYTES_MAX > RAWPG_COPY_ROW_MAX ? RAWPG_ELEM_BYTES_MAX
                                                                                 : RAWPG_COPY_ROW_MAX) + 3;
        for (unsigned a = 0; a < RAWPG_ARRAYS; a++)
            w->arr[a] = xmalloc(w->arr_cap);
        hist_init(&w->hist);
        if (pthread_create(&w->tid, NULL, rawpg_worker_main, w) != 0) {
            fprintf(stderr, "tally-stress rawpg: cannot start thread %u\n", i);
            exit(1);
        }
    }
    hist_init(all);
    for (unsigned i = 0; i < o->connections; i++) {
        pthread_join(ws[i].tid, NULL);
        hist_merge(all, &ws[i].hist);
        for (unsigned a = 0; a < RAWPG_ARRAYS; a++)
            free(ws[i].arr[a]);
    }
    return fo_now_ns() - t0;
}

static int rawpg_report(const struct rawpg_opts *o, const struct rawpg_worker *ws,
                        const struct hist *all, uint64_t ns)
{
    uint64_t rows = 0, commits = 0, conflicts = 0;
    bool failed = false, exhausted = false;
    double secs = (double)ns / 1e9;

    for (unsigned i = 0; i < o->connections; i++) {
        rows += ws[i].rows;
        commits += ws[i].commits;
        conflicts += ws[i].conflicts;
        failed |= ws[i].failed;
        exhausted |= ws[i].exhausted;
    }
    printf("rawpg: %s (%s), %u connections x batch %u, %.1f s: %" PRIu64 " rows in %" PRIu64
           " commits (%.0f rows/s, %.1f commits/s), %" PRIu64 " conflicts\n",
           rawpg_form_names[o->form], o->spread ? "spread" : "blocks", o->connections, o->batch, secs, rows, commits, (double)rows / secs,
           (double)commits / secs, conflicts);
    printf("commit latency ms: p50 %.2f  p99 %.2f  max %.2f\n", fo_ms(hist_quantile(all, 0.50)),
           fo_ms(hist_quantile(all, 0.99)), fo_ms(all->max));
    if (exhausted)
        fprintf(stderr, "tally-stress rawpg: ran out of (poll, participant) pairs early\n");
    return failed || exhausted || conflicts ? 1 : 0;
}

/* Declared in stress.c, which dispatches to it; parses argv[2..]. */
int rawpg_main(int argc, char **argv)
{
    struct rawpg_opts o;
    struct rawpg_plan plan;
    static struct rawpg_worker ws[RAWPG_CONNECTIONS_MAX];
    static struct hist all;
    PGconn *c;
    int rc = 1;

    rawpg_parse(argc, argv, &o);
    memset(&plan, 0, sizeof(plan));
    c = rawpg_connect(o.conninfo);
    if (c == NULL)
        return 1;
    if (rawpg_setup(c, &o, &plan) < 0)
        goto err_finish;
    printf("setup: session %" PRId64 ", %u polls, %u participants\n", plan.session_id,
           plan.n_polls, plan.n_participants);
    fflush(stdout); /* a benchmark reading this line starts measuring at it */
    rc = rawpg_report(&o, ws, &all, rawpg_run(&o, &plan, ws, &all));
err_finish:
    PQfinish(c);
    free(plan.polls);
    free(plan.participants);
    return rc;
}
