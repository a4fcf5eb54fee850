/*
 * server.h - the network threads: io_uring rings that accept, read, parse
 * HTTP/1.1 and write answers. They never block and never touch the database;
 * anything that needs a session goes to the actors as a message and the
 * answer comes back as a message.
 *
 * One ring per thread. A ring's direct-descriptor table is limited by the
 * process's file limit, so the server runs at least
 * ceil(max_connections / NET_FILES_PER_RING) rings, more than --threads when
 * the connection cap asks for it.
 */
#ifndef TALLY_NET_SERVER_H
#define TALLY_NET_SERVER_H

#include <stdbool.h>
#include <stdint.h>

struct config;
struct actors;
struct store;
struct net_server;

/** Readiness as /readyz reports it. */
enum net_ready { NET_READY, NET_DRAINING, NET_DB_UNAVAILABLE };

/** Creates the server; nothing is bound yet. The pointers must outlive it. */
struct net_server *net_server_create(const struct config *cfg, struct actors *as,
                                     struct store *st);
/** Binds the listen sockets and starts the threads. Returns 0 or -errno (logged). */
int net_server_start(struct net_server *srv);
struct stream_sink;

/** Rings (= network threads) a server with this configuration runs. */
unsigned net_rings_needed(const struct config *cfg);
/** Fills the sink the actors broadcast through (sink->threads must be the ring count). */
void net_server_sink(struct net_server *srv, struct stream_sink *sink);
/** Number of rings (= network threads) in use. */
unsigned net_server_rings(const struct net_server *srv);
/**
 * Starts draining: /readyz answers 503 "draining" and new sessions are
 * refused. Any thread.
 */
void net_server_drain(struct net_server *srv);
/** Requests handed to the actors and not yet answered. Any thread. */
uint64_t net_server_inflight(const struct net_server *srv);
/** Stops and joins the threads, closing every connection. */
void net_server_stop(struct net_server *srv);
void net_server_destroy(struct net_server *srv);

#endif
