/*
 * outcome.h - what to do with a batch whose transaction did not end cleanly.
 *
 * A storage writer that loses its connection while a batch runs must not
 * guess. Before COMMIT was sent nothing can have committed; after it was
 * sent the transaction may or may not have committed, and the writer asks
 * the database (txid_status of the transaction's id, taken at BEGIN) on a
 * fresh connection. This module is the decision table between those facts
 * and the writer's next step; it does no I/O, so it is tested on its own.
 * Pure functions; any thread.
 */
#ifndef TALLY_STORE_OUTCOME_H
#define TALLY_STORE_OUTCOME_H

#include <stdbool.h>

#define OUTCOME_ATTEMPTS_MAX 3 /* runs of one batch before its operations fail */

/** What txid_status said about the batch's transaction, or why it could not say. */
enum outcome_check {
    OUTCOME_CHECK_NONE = 0,    /* not asked (COMMIT was never sent) */
    OUTCOME_COMMITTED,         /* 'committed' */
    OUTCOME_ABORTED,           /* 'aborted' */
    OUTCOME_IN_PROGRESS,       /* 'in progress': its backend has not finished yet */
    OUTCOME_FORGOTTEN,         /* NULL: the id is too old (or unknown) to be judged */
    OUTCOME_UNREACHABLE,       /* no connection, or the check itself failed */
};

/** The writer's next step. */
enum outcome_action {
    OUTCOME_ACK = 0, /* committed: complete every op as the batch computed it */
    OUTCOME_RETRY,   /* certainly not committed: run the batch again */
    OUTCOME_RECHECK, /* not known yet: wait a little and check again */
    OUTCOME_FAIL,    /* give up: STORE_UNAVAILABLE, never an acknowledgement */
};

/** The facts about one failed run of a batch. */
struct outcome_input {
    bool commit_sent;        /* COMMIT was (or may have been) sent to the server */
    bool wrote;              /* the transaction had an id: it wrote something */
    bool reachable;          /* a fresh connection is up (for a retry) */
    enum outcome_check check;
    unsigned attempts;       /* runs of the batch so far, >= 1 */
    bool time_left;          /* the batch's resolution deadline is not past */
};

/** The next step for a batch whose run ended with its connection lost. */
enum outcome_action outcome_decide(const struct outcome_input *in);

/**
 * Maps txid_status's answer (NULL for SQL NULL) to a check. Anything else is
 * OUTCOME_UNREACHABLE: an answer we do not understand decides nothing.
 */
enum outcome_check outcome_parse(const char *txid_status);

/**
 * What a witness row says about a transaction txid_status called committed.
 * A transaction id that was handed out but never reached the write-ahead log
 * is handed out again after a crash, so "committed" may be about another
 * transaction. A row the batch wrote, in a table whose rows are never
 * updated, still carrying the id as xmin, proves it was ours.
 */
enum outcome_witness {
    OUTCOME_WITNESS_NONE = 0, /* the batch wrote no such row, or the lookup failed */
    OUTCOME_WITNESS_FOUND,    /* the row is there with our id */
    OUTCOME_WITNESS_ABSENT,   /* it is not: the committed transaction was another */
};

/** The check once the witness is known: COMMITTED stands only when proven. */
enum outcome_check outcome_refine(enum outcome_check c, enum outcome_witness w);

/** A short name for logs: "committed", "aborted", ... */
const char *outcome_check_name(enum outcome_check c);

#endif
