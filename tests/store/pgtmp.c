/*
 * pgtmp.c - see pgtmp.h.
 */
#define _XOPEN_SOURCE 700
#include "pgtmp.h"

#include <ftw.h>
#include <glob.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

bool pgtmp_have_postgres(void)
{
    glob_t g;
    bool found = glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0;

    globfree(&g);
    return found || system("command -v pg_ctl >/dev/null 2>&1") == 0;
}

int pgtmp_dir(char *root, size_t n, const char *name)
{
    if ((size_t)snprintf(root, n, "/tmp/tally-%s-XXXXXX", name) >= n || mkdtemp(root) == NULL)
        return -1;
    /* The cluster may run as "postgres", which must be able to walk in. */
    return chmod(root, 0755);
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int pgtmp_remove(const char *root)
{
    return nftw(root, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}
