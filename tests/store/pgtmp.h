/*
 * pgtmp.h - what the store tests share to run a private PostgreSQL cluster:
 * whether PostgreSQL is installed, a scratch directory the cluster's user
 * (possibly "postgres") can walk into, removed afterwards, and queries that
 * fail the running cmocka test when the database refuses them.
 */
#ifndef TALLY_TESTS_STORE_PGTMP_H
#define TALLY_TESTS_STORE_PGTMP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <libpq-fe.h>

/** true when PostgreSQL's binaries are installed (else the test skips, 77). */
bool pgtmp_have_postgres(void);
/** Makes /tmp/tally-<name>-XXXXXX, mode 0755, into root (size n). 0 or -1. */
int pgtmp_dir(char *root, size_t n, const char *name);
/** Removes root and everything under it. 0 or -1. */
int pgtmp_remove(const char *root);

/** A connection to conninfo; fails the test when there is none. */
PGconn *pgtmp_db_open(const char *conninfo);
/** Runs sql with n text parameters; fails the test unless it succeeds. */
PGresult *pgtmp_db_q(PGconn *c, const char *sql, int n, const char *const *p);
/** The one int64 value sql returns; fails the test otherwise. */
int64_t pgtmp_db_i64(PGconn *c, const char *sql, int n, const char *const *p);

#endif
