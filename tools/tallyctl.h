/*
 * tallyctl.h - what the admin command's files share: the parsed options,
 * the database connection, and one function per command.
 *
 * Exit status of every command: 0 done, 2 bad usage (one line naming the
 * option), 1 anything else (the reason printed on stderr).
 */
#ifndef TALLY_TOOLS_TALLYCTL_H
#define TALLY_TOOLS_TALLYCTL_H

#include <stdint.h>

#include <libpq-fe.h>

#define CTL_EXIT_OK 0
#define CTL_EXIT_FAIL 1
#define CTL_EXIT_USAGE 2
#define CTL_CODE_LEN 6 /* a join code */

/** Options of one command line; strings point into argv or the environment. */
struct ctl_opts {
    const char *cmd;             /* "export" */
    const char *database_url;    /* --database-url, default TALLY_DATABASE_URL */
    const char *data_dir;        /* --data-dir, default TALLY_DATA_DIR, then ./var */
    const char *title;           /* create --title */
    const char *url;             /* create --url, default http://127.0.0.1:8080 */
    const char *format;          /* export --format, csv (default) or json */
    const char *since;           /* replay --since, default 0 */
    char code[CTL_CODE_LEN + 1]; /* the positional CODE, upper-cased */
};

/** Prints "tallyctl CMD: <message>" on stderr and returns CTL_EXIT_USAGE. */
int ctl_usage_error(const struct ctl_opts *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/** Prints "tallyctl CMD: <message>" on stderr and returns CTL_EXIT_FAIL. */
int ctl_fail(const struct ctl_opts *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/**
 * Connects to the database of --database-url, or to the embedded cluster's
 * socket under --data-dir (which a running tallyd started; it is never
 * started or stopped here). Returns NULL after printing why.
 */
PGconn *ctl_db_connect(const struct ctl_opts *o);

/** tallyctl create: POST /api/v1/sessions to a running tallyd; prints code, token, links. */
int ctl_create(const struct ctl_opts *o);

/** tallyctl export CODE: every poll with its options and counts, counted from the votes. */
int ctl_export(const struct ctl_opts *o);

/** tallyctl replay CODE: the session's event_log in seq order, one JSON object a line. */
int ctl_replay(const struct ctl_opts *o);

#endif
