/*
 * tallyctl_db.c - tallyctl export and replay: read one session straight
 * from the database, the ground truth behind what tallyd serves.
 *
 * export counts every option from the vote rows themselves (not from any
 * cached count), inside one REPEATABLE READ READ ONLY transaction so counts
 * and totals describe the same instant while votes keep arriving. replay
 * streams event_log in seq order in single-row mode, so a long log is never
 * held in memory, and reports what the log itself shows: events already
 * pruned by the 24 h retention, and any gap (which `tallyctl verify` also
 * flags).
 */
#include "tools/tallyctl.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#define CTL_ID_MAX 24 /* a bigint as text */

/* created_at as RFC 3339 UTC with milliseconds, the API's form. */
#define CTL_CREATED_AT "to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"

static const char sql_session[] =
    "SELECT id, code, title, state, " CTL_CREATED_AT ", seq FROM sessions WHERE code = $1";

/* One row per poll option, its count taken from the votes that chose it. */
static const char sql_options[] =
    "SELECT p.id, p.question, p.kind, p.state, p.max_choices, o.idx - 1, o.opt,"
    " (SELECT count(*) FROM votes v WHERE v.poll_id = p.id AND o.idx - 1 = ANY (v.choices))"
    " FROM polls p CROSS JOIN LATERAL jsonb_array_elements_text(p.options) WITH ORDINALITY"
    " AS o(opt, idx) WHERE p.session_id = $1 ORDER BY p.id, o.idx";

/* One row per poll: the participants who voted on it (one vote each at most). */
static const char sql_totals[] =
    "SELECT p.id, count(v.id) FROM polls p LEFT JOIN votes v ON v.poll_id = p.id"
    " WHERE p.session_id = $1 GROUP BY p.id ORDER BY p.id";

static const char sql_events[] =
    "SELECT seq, type, " CTL_CREATED_AT ", payload::text FROM event_log"
    " WHERE session_id = $1 AND seq > $2 ORDER BY seq";

/* The session row of o->code: id, code, title, state, created_at, seq. */
struct ctl_session {
    char id[CTL_ID_MAX];
    long long seq;
    PGresult *row; /* owns the strings below */
    const char *code, *title, *state, *created_at;
};

static bool exec_ok(const struct ctl_opts *o, PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    bool ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        ctl_fail(o, "%s: %s", sql, PQerrorMessage(c));
    PQclear(r);
    return ok;
}

static PGresult *query(const struct ctl_opts *o, PGconn *c, const char *sql, int n,
                       const char *const *params)
{
    PGresult *r = PQexecParams(c, sql, n, NULL, params, NULL, NULL, 0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK)
        return r;
    ctl_fail(o, "query failed: %s", PQerrorMessage(c));
    PQclear(r);
    return NULL;
}

/* 0, CTL_EXIT_FAIL after printing (unknown code included). */
static int session_find(const struct ctl_opts *o, PGconn *c, struct ctl_session *s)
{
    const char *params[] = {o->code};
    memset(s, 0, sizeof(*s));
    s->row = query(o, c, sql_session, 1, params);
    if (s->row == NULL)
        return CTL_EXIT_FAIL;
    if (PQntuples(s->row) != 1) {
        PQclear(s->row);
        s->row = NULL;
        return ctl_fail(o, "no session with code %s", o->code);
    }
    snprintf(s->id, sizeof(s->id), "%s", PQgetvalue(s->row, 0, 0));
    s->code = PQgetvalue(s->row, 0, 1);
    s->title = PQgetvalue(s->row, 0, 2);
    s->state = PQgetvalue(s->row, 0, 3);
    s->created_at = PQgetvalue(s->row, 0, 4);
    s->seq = strtoll(PQgetvalue(s->row, 0, 5), NULL, 10);
    return 0;
}

/* ---- export ---- */

/* One CSV field, quoted per RFC 4180 when it holds , " CR or LF. */
static void csv_field(const char *s)
{
    if (strpbrk(s, ",\"\r\n") == NULL) {
        fputs(s, stdout);
        return;
    }
    putchar('"');
    for (; *s != '\0'; s++) {
        if (*s == '"')
            putchar('"');
        putchar(*s);
    }
    putchar('"');
}

/* The poll's leading columns: session_code,poll_id,question,kind,state, */
static void csv_poll_columns(const struct ctl_session *s, PGresult *opt, int r)
{
    printf("%s,%s,", s->code, PQgetvalue(opt, r, 0));
    csv_field(PQgetvalue(opt, r, 1));
    printf(",%s,%s,", PQgetvalue(opt, r, 2), PQgetvalue(opt, r, 3));
}

/* Rows of options (ordered by poll) then, per poll, a row with an empty
 * option_index and the option "total": the participants who voted. */
static void export_csv(const struct ctl_session *s, PGresult *opt, PGresult *tot)
{
    int no = PQntuples(opt), nt = PQntuples(tot), r = 0;
    fputs("session_code,poll_id,question,kind,state,option_index,option,count\r\n", stdout);
    for (int t = 0; t < nt; t++) {
        const char *pid = PQgetvalue(tot, t, 0);
        int first = r;
        for (; r < no && strcmp(PQgetvalue(opt, r, 0), pid) == 0; r++) {
            csv_poll_columns(s, opt, r);
            printf("%s,", PQgetvalue(opt, r, 5));
            csv_field(PQgetvalue(opt, r, 6));
            printf(",%s\r\n", PQgetvalue(opt, r, 7));
        }
        if (r > first) { /* a poll always has options; the check keeps the columns honest */
            csv_poll_columns(s, opt, first);
            printf(",total,%s\r\n", PQgetvalue(tot, t, 1));
        }
    }
}

static json_t *json_text(const char *s)
{
    json_t *j = json_string(s);
    return j ? j : json_string("?"); /* the database holds UTF-8; this is a safety net */
}

static json_t *export_json_poll(PGresult *opt, int first, int end, const char *total)
{
    json_t *p = json_object(), *opts = json_array(), *counts = json_array();
    json_object_set_new(p, "id", json_integer(strtoll(PQgetvalue(opt, first, 0), NULL, 10)));
    json_object_set_new(p, "question", json_text(PQgetvalue(opt, first, 1)));
    json_object_set_new(p, "kind", json_text(PQgetvalue(opt, first, 2)));
    json_object_set_new(p, "state", json_text(PQgetvalue(opt, first, 3)));
    json_object_set_new(p, "max_choices",
                        json_integer(strtoll(PQgetvalue(opt, first, 4), NULL, 10)));
    for (int r = first; r < end; r++) {
        json_array_append_new(opts, json_text(PQgetvalue(opt, r, 6)));
        json_array_append_new(counts, json_integer(strtoll(PQgetvalue(opt, r, 7), NULL, 10)));
    }
    json_object_set_new(p, "options", opts);
    json_object_set_new(p, "counts", counts);
    json_object_set_new(p, "total", json_integer(strtoll(total, NULL, 10)));
    return p;
}

/* {"session":{...},"polls":[{...,"options":[..],"counts":[..],"total":N}]} */
static int export_json(const struct ctl_session *s, PGresult *opt, PGresult *tot)
{
    json_t *root = json_object(), *sess = json_object(), *polls = json_array();
    json_object_set_new(sess, "id", json_integer(strtoll(s->id, NULL, 10)));
    json_object_set_new(sess, "code", json_text(s->code));
    json_object_set_new(sess, "title", json_text(s->title));
    json_object_set_new(sess, "state", json_text(s->state));
    json_object_set_new(sess, "created_at", json_text(s->created_at));
    json_object_set_new(root, "session", sess);
    int no = PQntuples(opt), r = 0;
    for (int t = 0; t < PQntuples(tot); t++) {
        int first = r;
        while (r < no && strcmp(PQgetvalue(opt, r, 0), PQgetvalue(tot, t, 0)) == 0)
            r++;
        if (r > first)
            json_array_append_new(polls, export_json_poll(opt, first, r, PQgetvalue(tot, t, 1)));
    }
    json_object_set_new(root, "polls", polls);
    int rc = json_dumpf(root, stdout, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(root);
    return rc;
}

static int export_run(const struct ctl_opts *o, PGconn *c, bool json)
{
    struct ctl_session s;
    if (!exec_ok(o, c, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"))
        return CTL_EXIT_FAIL;
    int rc = session_find(o, c, &s);
    if (rc != 0)
        return rc;
    const char *params[] = {s.id};
    PGresult *opt = query(o, c, sql_options, 1, params);
    PGresult *tot = opt ? query(o, c, sql_totals, 1, params) : NULL;
    if (tot != NULL) {
        if (json)
            rc = export_json(&s, opt, tot) == 0 ? CTL_EXIT_OK : CTL_EXIT_FAIL;
        else
            export_csv(&s, opt, tot);
    } else {
        rc = CTL_EXIT_FAIL;
    }
    PQclear(opt);
    PQclear(tot);
    PQclear(s.row);
    if (fflush(stdout) != 0 || ferror(stdout))
        rc = ctl_fail(o, "cannot write the export: %s", strerror(errno));
    return rc;
}

int ctl_export(const struct ctl_opts *o)
{
    const char *fmt = o->format ? o->format : "csv";
    if (strcmp(fmt, "csv") != 0 && strcmp(fmt, "json") != 0)
        return ctl_usage_error(o, "invalid --format '%s': expected csv or json", fmt);
    PGconn *c = ctl_db_connect(o);
    if (c == NULL)
        return CTL_EXIT_FAIL;
    int rc = export_run(o, c, strcmp(fmt, "json") == 0);
    PQfinish(c);
    return rc;
}

/* ---- replay ---- */

/* {"seq":N,"type":"...","created_at":"...","data":{...}} on one line. */
static int replay_line(PGresult *r)
{
    json_t *data = json_loads(PQgetvalue(r, 0, 3), 0, NULL);
    if (data == NULL)
        return -EPROTO;
    json_t *line = json_object();
    json_object_set_new(line, "seq", json_integer(strtoll(PQgetvalue(r, 0, 0), NULL, 10)));
    json_object_set_new(line, "type", json_text(PQgetvalue(r, 0, 1)));
    json_object_set_new(line, "created_at", json_text(PQgetvalue(r, 0, 2)));
    json_object_set_new(line, "data", data);
    int rc = json_dumpf(line, stdout, JSON_COMPACT | JSON_PRESERVE_ORDER);
    putchar('\n');
    json_decref(line);
    return rc == 0 ? 0 : -EIO;
}

struct replay_state {
    long long since, last; /* last seq printed (since when none) */
    long long gap_after;   /* seq after which one was missing; -1 when none */
    long long printed;
};

/* Reads the rows one at a time; 0 or CTL_EXIT_FAIL. */
static int replay_rows(const struct ctl_opts *o, PGconn *c, struct replay_state *st)
{
    int rc = 0;
    for (PGresult *r = PQgetResult(c); r != NULL; r = PQgetResult(c)) {
        ExecStatusType t = PQresultStatus(r);
        if (t == PGRES_SINGLE_TUPLE && rc == 0) {
            long long seq = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
            if (st->printed > 0 && seq != st->last + 1 && st->gap_after < 0)
                st->gap_after = st->last;
            if (st->printed == 0 && seq > st->since + 1)
                fprintf(stderr,
                        "tallyctl replay: events %lld..%lld are no longer stored "
                        "(24 h retention)\n",
                        st->since + 1, seq - 1);
            rc = replay_line(r) == 0 ? 0 : ctl_fail(o, "event %lld: unreadable payload", seq);
            st->last = seq;
            st->printed++;
        } else if (t != PGRES_SINGLE_TUPLE && t != PGRES_TUPLES_OK && rc == 0) {
            rc = ctl_fail(o, "reading event_log: %s", PQerrorMessage(c));
        }
        PQclear(r); /* every result is drained, so the connection ends clean */
    }
    return rc;
}

/* --since: an integer >= 0; 0 when not given. */
static int since_parse(const struct ctl_opts *o, long long *out)
{
    const char *s = o->since ? o->since : "0";
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*s < '0' || *s > '9' || *end != '\0' || errno != 0)
        return ctl_usage_error(o, "invalid --since '%s': expected an integer >= 0", s);
    *out = v;
    return 0;
}

static int replay_run(const struct ctl_opts *o, PGconn *c, struct replay_state *st)
{
    struct ctl_session s;
    int rc = session_find(o, c, &s);
    if (rc != 0)
        return rc;
    char since[CTL_ID_MAX];
    snprintf(since, sizeof(since), "%lld", st->since);
    const char *params[] = {s.id, since};
    if (!PQsendQueryParams(c, sql_events, 2, NULL, params, NULL, NULL, 0) ||
        !PQsetSingleRowMode(c)) {
        PQclear(s.row);
        return ctl_fail(o, "reading event_log: %s", PQerrorMessage(c));
    }
    rc = replay_rows(o, c, st);
    if (rc == 0 && st->printed == 0)
        fprintf(stderr, "tallyctl replay: no events after seq %lld (session %s is at seq %lld)\n",
                st->since, s.code, s.seq);
    if (rc == 0 && st->gap_after >= 0)
        rc = ctl_fail(o, "event_log has a gap after seq %lld (see tallyctl verify)", st->gap_after);
    PQclear(s.row);
    return rc;
}

int ctl_replay(const struct ctl_opts *o)
{
    struct replay_state st = {.gap_after = -1};
    int rc = since_parse(o, &st.since);
    if (rc != 0)
        return rc;
    st.last = st.since;
    PGconn *c = ctl_db_connect(o);
    if (c == NULL)
        return CTL_EXIT_FAIL;
    rc = replay_run(o, c, &st);
    PQfinish(c);
    if (rc == 0 && (fflush(stdout) != 0 || ferror(stdout)))
        rc = ctl_fail(o, "cannot write the events: %s", strerror(errno));
    return rc;
}
