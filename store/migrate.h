/*
 * migrate.h - versioned schema migrations, embedded in the binary.
 *
 * Each store/migrations/NNN_name.sql is one version, applied once, in order,
 * inside its own transaction, and recorded in schema_migrations. An advisory
 * lock makes concurrent starts of several instances safe.
 */
#ifndef TALLY_STORE_MIGRATE_H
#define TALLY_STORE_MIGRATE_H

#include <libpq-fe.h>

struct migration_src {
    int version;
    const char *name;
    const char *sql;
};

/* Generated at build time from store/migrations/. */
extern const struct migration_src migrations_src[];
extern const unsigned migrations_count;

/** Applies every pending migration on conn. Returns 0 or -EIO with the reason logged. */
int migrate_apply(PGconn *conn);

#endif
