/*
 * tallyctl.c - the admin command line.
 *
 *   tallyctl migrate [--database-url URL | --data-dir DIR]
 *
 * migrate applies pending schema migrations to a database (tallyd also does
 * this at start). With --data-dir (default ./var and no URL) it starts the
 * embedded cluster of that directory for the duration of the command.
 * Exit status: 0 done, 2 bad usage, 1 failure (reason logged).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/pgembed.h"
#include "store/store.h"

#define TALLYCTL_CONNINFO_MAX 1024

static int usage(void)
{
    fprintf(stderr, "usage: tallyctl migrate [--database-url URL | --data-dir DIR]\n");
    return 2;
}

static int cmd_migrate(int argc, char **argv)
{
    const char *url = getenv("TALLY_DATABASE_URL");
    const char *dir = getenv("TALLY_DATA_DIR");
    for (int i = 2; i < argc; i++) {
        if (i + 1 >= argc)
            return usage();
        if (strcmp(argv[i], "--database-url") == 0)
            url = argv[++i];
        else if (strcmp(argv[i], "--data-dir") == 0)
            dir = argv[++i];
        else
            return usage();
    }
    char conninfo[TALLYCTL_CONNINFO_MAX];
    struct pgembed *pg = NULL;
    if (url && url[0]) {
        snprintf(conninfo, sizeof(conninfo), "%s", url);
    } else {
        pg = pgembed_start(dir && dir[0] ? dir : "./var", conninfo, sizeof(conninfo));
        if (pg == NULL)
            return 1;
    }
    int rc = store_migrate(conninfo);
    pgembed_stop(pg);
    if (rc < 0)
        return 1;
    printf("schema up to date\n");
    return 0;
}

int main(int argc, char **argv)
{
    log_init(LOG_INFO, "tallyctl");
    if (argc < 2)
        return usage();
    if (strcmp(argv[1], "migrate") == 0)
        return cmd_migrate(argc, argv);
    fprintf(stderr, "tallyctl: unknown command '%s'\n", argv[1]);
    return usage();
}
