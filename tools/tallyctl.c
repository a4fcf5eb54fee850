/*
 * tallyctl.c - the admin command line: options, the database connection,
 * migrate and verify. create (tallyctl_http.c) talks to a running tallyd;
 * export and replay (tallyctl_db.c) read the database.
 *
 *   tallyctl migrate [--database-url URL | --data-dir DIR]
 *   tallyctl verify  [--database-url URL | --data-dir DIR]
 *   tallyctl create  --title T [--url http://127.0.0.1:8080]
 *   tallyctl export  CODE [--format csv|json] [--database-url URL | --data-dir DIR]
 *   tallyctl replay  CODE [--since N] [--database-url URL | --data-dir DIR]
 *
 * migrate applies pending schema migrations to a database (tallyd also does
 * this at start). With --data-dir (default ./var and no URL) it starts the
 * embedded cluster of that directory for the duration of the command.
 *
 * verify checks the stored state against the product's invariants (each
 * session's event_log seq gap-free and equal to sessions.seq, every vote's
 * poll and participant in the vote's session, choices within the poll's
 * options, no vote on a draft poll) and prints each check with the number
 * of rows that break it. verify, export and replay with --data-dir connect
 * to the embedded cluster's socket and never start or stop it, so they are
 * safe next to a running tallyd (and need it running).
 *
 * Options are "--flag value" or "--flag=value"; TALLY_DATABASE_URL and
 * TALLY_DATA_DIR give the defaults, the flag wins. Exit status: 0 done
 * (verify: no violation), 2 bad usage with one line naming the option, 1
 * failure or violation (reason printed).
 */
#include "tools/tallyctl.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/pgembed.h"
#include "store/store.h"

#define CTL_CONNINFO_MAX 1024
#define CTL_DB_CONNECT_TIMEOUT_S "10"

static const char ctl_usage_text[] =
    "usage: tallyctl COMMAND [options]\n"
    "  migrate [--database-url URL | --data-dir DIR]  apply the schema migrations\n"
    "  verify  [--database-url URL | --data-dir DIR]  check the stored state's invariants\n"
    "  create  --title T [--url http://127.0.0.1:8080]  create a session on a running tallyd\n"
    "  export  CODE [--format csv|json] [--database-url URL | --data-dir DIR]\n"
    "          every poll of the session with its options and counts, from the votes\n"
    "  replay  CODE [--since N] [--database-url URL | --data-dir DIR]\n"
    "          the session's sequenced events, one JSON object a line\n"
    "TALLY_DATABASE_URL and TALLY_DATA_DIR give the defaults (--data-dir: ./var).\n";

static void ctl_vmsg(const struct ctl_opts *o, const char *fmt, va_list ap)
{
    fprintf(stderr, "tallyctl%s%s: ", o && o->cmd ? " " : "", o && o->cmd ? o->cmd : "");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
}

int ctl_usage_error(const struct ctl_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctl_vmsg(o, fmt, ap);
    va_end(ap);
    return CTL_EXIT_USAGE;
}

int ctl_fail(const struct ctl_opts *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    ctl_vmsg(o, fmt, ap);
    va_end(ap);
    return CTL_EXIT_FAIL;
}

/* ---- options ---- */

struct ctl_flag {
    const char *name; /* without "--" */
    size_t offset;    /* the const char * in struct ctl_opts */
};

static const struct ctl_flag ctl_flags[] = {
    {"database-url", offsetof(struct ctl_opts, database_url)},
    {"data-dir", offsetof(struct ctl_opts, data_dir)},
    {"title", offsetof(struct ctl_opts, title)},
    {"url", offsetof(struct ctl_opts, url)},
    {"format", offsetof(struct ctl_opts, format)},
    {"since", offsetof(struct ctl_opts, since)},
};

struct ctl_cmd {
    const char *name;
    int (*run)(const struct ctl_opts *o);
    const char *flags; /* the flags it takes, each between blanks */
    bool wants_code;
};

static int cmd_migrate(const struct ctl_opts *o);
static int cmd_verify(const struct ctl_opts *o);

static const struct ctl_cmd ctl_cmds[] = {
    {"migrate", cmd_migrate, " database-url data-dir ", false},
    {"verify", cmd_verify, " database-url data-dir ", false},
    {"create", ctl_create, " title url ", false},
    {"export", ctl_export, " database-url data-dir format ", true},
    {"replay", ctl_replay, " database-url data-dir since ", true},
};

static const struct ctl_flag *flag_find(const struct ctl_cmd *c, const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof(ctl_flags) / sizeof(ctl_flags[0]); i++) {
        const struct ctl_flag *f = &ctl_flags[i];
        if (strlen(f->name) != len || strncmp(f->name, name, len) != 0)
            continue;
        const char *in = strstr(c->flags, f->name);
        return in != NULL && in[-1] == ' ' && in[len] == ' ' ? f : NULL;
    }
    return NULL;
}

/* The positional CODE: 6 ASCII letters and digits, any case. */
static int code_set(struct ctl_opts *o, const char *arg)
{
    size_t n = strlen(arg);
    bool ok = n == CTL_CODE_LEN;
    for (size_t i = 0; ok && i < n; i++)
        ok = isascii((unsigned char)arg[i]) && isalnum((unsigned char)arg[i]);
    if (!ok)
        return ctl_usage_error(o, "invalid session code '%s': expected %d letters and digits",
                               arg, CTL_CODE_LEN);
    for (size_t i = 0; i < n; i++)
        o->code[i] = (char)toupper((unsigned char)arg[i]);
    o->code[n] = '\0';
    return 0;
}

/* One "--flag value" or "--flag=value" at argv[*i]; advances *i past its value. */
static int flag_set(const struct ctl_cmd *c, struct ctl_opts *o, int argc, char **argv, int *i)
{
    const char *name = argv[*i] + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    const struct ctl_flag *f = flag_find(c, name, len);
    if (f == NULL)
        return ctl_usage_error(o, "unknown option '--%.*s'", (int)len, name);
    const char *value;
    if (eq != NULL)
        value = eq + 1;
    else if (*i + 1 < argc && strncmp(argv[*i + 1], "--", 2) != 0)
        value = argv[++*i];
    else
        return ctl_usage_error(o, "missing value for --%s", f->name);
    memcpy((char *)o + f->offset, &value, sizeof(value));
    return 0;
}

static int ctl_parse(const struct ctl_cmd *c, int argc, char **argv, struct ctl_opts *o)
{
    bool have_code = false;
    for (int i = 2; i < argc; i++) {
        int rc;
        if (strncmp(argv[i], "--", 2) == 0 && argv[i][2] != '\0')
            rc = flag_set(c, o, argc, argv, &i);
        else if (c->wants_code && !have_code)
            rc = code_set(o, argv[i]);
        else
            rc = ctl_usage_error(o, "unexpected argument '%s'", argv[i]);
        if (rc != 0)
            return rc;
        have_code |= o->code[0] != '\0';
    }
    if (c->wants_code && !have_code)
        return ctl_usage_error(o, "missing the session CODE (tallyctl %s CODE)", c->name);
    return 0;
}

/* ---- the database ---- */

/* host='DIR/run' with DIR absolute (libpq reads only an absolute host as a
 * socket directory) and quoted for conninfo. */
static int embedded_conninfo(const struct ctl_opts *o, char *out, size_t len)
{
    const char *dir = o->data_dir && o->data_dir[0] ? o->data_dir : "./var";
    char real[PATH_MAX];
    if (realpath(dir, real) == NULL)
        return ctl_fail(o, "no data directory %s (%s); give --data-dir or --database-url", dir,
                        strerror(errno));
    size_t n = (size_t)snprintf(out, len, "host='");
    for (const char *p = real; *p != '\0' && n + 2 < len; p++) {
        if (*p == '\'' || *p == '\\')
            out[n++] = '\\';
        out[n++] = *p;
    }
    int w = snprintf(out + n, len - n, "/run' user=tally dbname=postgres");
    if (w < 0 || (size_t)w >= len - n)
        return ctl_fail(o, "data directory path too long: %s", real);
    return 0;
}

PGconn *ctl_db_connect(const struct ctl_opts *o)
{
    char conninfo[CTL_CONNINFO_MAX];
    bool embedded = o->database_url == NULL || o->database_url[0] == '\0';
    if (embedded && embedded_conninfo(o, conninfo, sizeof(conninfo)) != 0)
        return NULL;
    /* dbname is expanded last, so a URL's own connect_timeout wins over ours. */
    const char *keys[] = {"connect_timeout", "application_name", "dbname", NULL};
    const char *vals[] = {CTL_DB_CONNECT_TIMEOUT_S, "tallyctl",
                          embedded ? conninfo : o->database_url, NULL};
    PGconn *c = PQconnectdbParams(keys, vals, 1);
    if (PQstatus(c) == CONNECTION_OK)
        return c;
    const char *why = PQerrorMessage(c);
    size_t wl = strlen(why);
    while (wl > 0 && (why[wl - 1] == '\n' || why[wl - 1] == ' '))
        wl--;
    if (embedded)
        ctl_fail(o, "cannot connect to the embedded database under %s (is tallyd running?): %.*s",
                 o->data_dir && o->data_dir[0] ? o->data_dir : "./var", (int)wl, why);
    else
        ctl_fail(o, "cannot connect to --database-url: %.*s", (int)wl, why);
    PQfinish(c);
    return NULL;
}

/* ---- migrate and verify ---- */

static int cmd_migrate(const struct ctl_opts *o)
{
    char conninfo[CTL_CONNINFO_MAX];
    struct pgembed *pg = NULL;
    if (o->database_url && o->database_url[0]) {
        snprintf(conninfo, sizeof(conninfo), "%s", o->database_url);
    } else {
        pg = pgembed_start(o->data_dir && o->data_dir[0] ? o->data_dir : "./var", conninfo,
                           sizeof(conninfo));
        if (pg == NULL)
            return CTL_EXIT_FAIL;
    }
    int rc = store_migrate(conninfo);
    pgembed_stop(pg);
    if (rc < 0)
        return CTL_EXIT_FAIL;
    printf("schema up to date\n");
    return CTL_EXIT_OK;
}

struct verify_check {
    const char *what;
    const char *sql; /* counts the rows that break the invariant */
};

static const struct verify_check verify_checks[] = {
    {"event_log seq gap-free per session",
     "SELECT count(*) FROM (SELECT seq, lag(seq) OVER (PARTITION BY session_id ORDER BY seq) AS prev"
     " FROM event_log) x WHERE prev IS NOT NULL AND seq <> prev + 1"},
    {"sessions.seq equals the last event",
     "SELECT count(*) FROM sessions s JOIN (SELECT session_id, max(seq) AS m FROM event_log"
     " GROUP BY 1) e ON e.session_id = s.id WHERE s.seq <> e.m"},
    {"vote's poll in the vote's session",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE p.session_id <> v.session_id"},
    {"vote's participant in the vote's session",
     "SELECT count(*) FROM votes v JOIN participants pa ON pa.id = v.participant_id"
     " WHERE pa.session_id <> v.session_id"},
    {"choices within the poll's options",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE cardinality(v.choices) = 0"
     " OR EXISTS (SELECT 1 FROM unnest(v.choices) c WHERE c < 0 OR c >= jsonb_array_length(p.options))"},
    {"no vote on a draft poll",
     "SELECT count(*) FROM votes v JOIN polls p ON p.id = v.poll_id WHERE p.state = 'draft'"},
};

static int cmd_verify(const struct ctl_opts *o)
{
    int bad = 0;
    PGconn *c = ctl_db_connect(o);
    if (c == NULL)
        return CTL_EXIT_FAIL;
    for (size_t i = 0; i < sizeof(verify_checks) / sizeof(verify_checks[0]); i++) {
        PGresult *res = PQexec(c, verify_checks[i].sql);
        if (PQresultStatus(res) != PGRES_TUPLES_OK) {
            ctl_fail(o, "%s: %s", verify_checks[i].what, PQerrorMessage(c));
            PQclear(res);
            PQfinish(c);
            return CTL_EXIT_FAIL;
        }
        long n = strtol(PQgetvalue(res, 0, 0), NULL, 10);
        printf("%-45s %s (%ld rows break it)\n", verify_checks[i].what, n ? "FAIL" : "ok", n);
        bad += n != 0;
        PQclear(res);
    }
    PQfinish(c);
    return bad ? CTL_EXIT_FAIL : CTL_EXIT_OK;
}

int main(int argc, char **argv)
{
    log_init(LOG_INFO, "tallyctl");
    if (argc < 2) {
        fputs(ctl_usage_text, stderr);
        return CTL_EXIT_USAGE;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        fputs(ctl_usage_text, stdout);
        return CTL_EXIT_OK;
    }
    for (size_t i = 0; i < sizeof(ctl_cmds) / sizeof(ctl_cmds[0]); i++) {
        const struct ctl_cmd *c = &ctl_cmds[i];
        if (strcmp(argv[1], c->name) != 0)
            continue;
        struct ctl_opts o = {
            .cmd = c->name,
            .database_url = getenv("TALLY_DATABASE_URL"),
            .data_dir = getenv("TALLY_DATA_DIR"),
        };
        int rc = ctl_parse(c, argc, argv, &o);
        return rc != 0 ? rc : c->run(&o);
    }
    fprintf(stderr, "tallyctl: unknown command '%s'\n%s", argv[1], ctl_usage_text);
    return CTL_EXIT_USAGE;
}
