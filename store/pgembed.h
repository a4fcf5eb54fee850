/*
 * pgembed.h - the private PostgreSQL cluster of the default setup.
 *
 * With no --database-url, tallyd keeps a cluster under DATA_DIR/pg, created by
 * initdb on first run, started with pg_ctl on a unix socket in DATA_DIR/run
 * (mode 0700, no TCP), and stopped on exit. When tallyd runs as root the
 * cluster runs as the unprivileged "postgres" user (initdb and postgres refuse
 * root). Binaries: /usr/lib/postgresql/<newest>/bin, else PATH.
 */
#ifndef TALLY_STORE_PGEMBED_H
#define TALLY_STORE_PGEMBED_H

#include <stddef.h>

struct pgembed;

/**
 * Initialises (first run) and starts the cluster under data_dir. Writes a
 * libpq connection string into conninfo. Returns NULL with the reason logged.
 * Recovers from a stale postmaster.pid left by a killed run.
 */
struct pgembed *pgembed_start(const char *data_dir, char *conninfo, size_t conninfo_len);
/** Stops the cluster (fast mode) and frees. NULL is a no-op. */
void pgembed_stop(struct pgembed *pg);

#endif
