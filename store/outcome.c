/*
 * outcome.c - the decision table of outcome.h.
 *
 * The one rule it encodes: an operation is acknowledged only when its
 * transaction is known to have committed, and run again only when it is
 * known not to have. Everything in between waits (bounded by the caller's
 * deadline) and, when time runs out, fails without acknowledging; a client
 * retry with the same idempotency key then finds the vote if it did commit.
 */
#include "store/outcome.h"

#include <stddef.h>
#include <string.h>

#include "core/base.h"

enum outcome_action outcome_decide(const struct outcome_input *in)
{
    TALLY_ASSERT(in != NULL);
    TALLY_ASSERT(in->attempts >= 1);
    /* Without COMMIT on the wire, or without a transaction id (nothing was
     * written), the server cannot have committed anything of the batch. */
    if (!in->commit_sent || !in->wrote) {
        if (in->reachable && in->attempts < OUTCOME_ATTEMPTS_MAX)
            return OUTCOME_RETRY;
        return OUTCOME_FAIL;
    }
    switch (in->check) {
    case OUTCOME_COMMITTED:
        return OUTCOME_ACK;
    case OUTCOME_ABORTED:
        return in->reachable && in->attempts < OUTCOME_ATTEMPTS_MAX ? OUTCOME_RETRY : OUTCOME_FAIL;
    case OUTCOME_IN_PROGRESS:
    case OUTCOME_UNREACHABLE:
    case OUTCOME_CHECK_NONE:
        return in->time_left ? OUTCOME_RECHECK : OUTCOME_FAIL;
    case OUTCOME_FORGOTTEN:
        /* The server no longer knows: nothing to base an acknowledgement on. */
        return OUTCOME_FAIL;
    }
    TALLY_ASSERT(!"outcome_decide: unknown check");
    return OUTCOME_FAIL;
}

enum outcome_check outcome_parse(const char *txid_status)
{
    if (txid_status == NULL)
        return OUTCOME_FORGOTTEN;
    if (strcmp(txid_status, "committed") == 0)
        return OUTCOME_COMMITTED;
    if (strcmp(txid_status, "aborted") == 0)
        return OUTCOME_ABORTED;
    if (strcmp(txid_status, "in progress") == 0)
        return OUTCOME_IN_PROGRESS;
    return OUTCOME_UNREACHABLE;
}

enum outcome_check outcome_refine(enum outcome_check c, enum outcome_witness w)
{
    if (c != OUTCOME_COMMITTED)
        return c;
    switch (w) {
    case OUTCOME_WITNESS_FOUND:
        return OUTCOME_COMMITTED;
    case OUTCOME_WITNESS_ABSENT:
        /* Ours would have left the row: the id was reused after a crash. */
        return OUTCOME_ABORTED;
    case OUTCOME_WITNESS_NONE:
        return OUTCOME_FORGOTTEN;
    }
    TALLY_ASSERT(!"outcome_refine: unknown witness");
    return OUTCOME_FORGOTTEN;
}

const char *outcome_check_name(enum outcome_check c)
{
    static const char *const names[] = {
        [OUTCOME_CHECK_NONE] = "not checked", [OUTCOME_COMMITTED] = "committed",
        [OUTCOME_ABORTED] = "aborted",        [OUTCOME_IN_PROGRESS] = "in progress",
        [OUTCOME_FORGOTTEN] = "forgotten",    [OUTCOME_UNREACHABLE] = "unreachable",
    };

    TALLY_ASSERT((unsigned)c < ARRAY_LEN(names));
    return names[c];
}
