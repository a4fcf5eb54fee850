/*
 * pgtmp.h - what the store tests share to run a private PostgreSQL cluster:
 * whether PostgreSQL is installed, and a scratch directory the cluster's
 * user (possibly "postgres") can walk into, removed afterwards.
 */
#ifndef TALLY_TESTS_STORE_PGTMP_H
#define TALLY_TESTS_STORE_PGTMP_H

#include <stdbool.h>
#include <stddef.h>

/** true when PostgreSQL's binaries are installed (else the test skips, 77). */
bool pgtmp_have_postgres(void);
/** Makes /tmp/tally-<name>-XXXXXX, mode 0755, into root (size n). 0 or -1. */
int pgtmp_dir(char *root, size_t n, const char *name);
/** Removes root and everything under it. 0 or -1. */
int pgtmp_remove(const char *root);

#endif
