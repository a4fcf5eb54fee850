/*
 * pgembed.c - initialises, starts and stops the private PostgreSQL cluster.
 *
 * Layout under the absolute DATA_DIR: pg/ (the cluster), run/ (the unix
 * socket directory, mode 0700) and pg.log (the output of initdb, pg_ctl and
 * the server). The cluster uses trust authentication: acceptable only because
 * the server listens on no TCP address and its socket lives in a directory
 * that only the cluster's owner (and root) can enter.
 *
 * Tools run through posix_spawn with an argv array, never through a shell
 * command line we build, so paths with spaces are safe. pg_ctl itself passes
 * the -D path and the -o options through /bin/sh, which is why data
 * directories containing shell or libpq quoting characters are refused.
 *
 * Not thread-safe: called by main at start-up and shut-down.
 */
#include "store/pgembed.h"

#include <errno.h>
#include <fcntl.h>
#include <glob.h>
#include <limits.h>
#include <pwd.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>

#include "core/base.h"
#include "core/log.h"

#define PGEMBED_ARGV_MAX 24
#define PGEMBED_OPTS_MAX (2 * PATH_MAX)
#define PGEMBED_LOG_TAIL_BYTES 1536
#define PGEMBED_SOCKET_NAME "/.s.PGSQL.5432"
#define PGEMBED_START_TIMEOUT_S "60"
#define PGEMBED_START_ATTEMPTS 3
#define PGEMBED_RETRY_MS 500
#define PGEMBED_READY_WAIT_MS 60000
#define PGEMBED_NO_RESPONSE_WAIT_MS 5000
#define PGEMBED_POLL_MS 50
/* pg_ctl status exit codes. */
#define PGCTL_STATUS_RUNNING 0

extern char **environ;

struct pgembed {
    char dir[PATH_MAX];    /* DATA_DIR, absolute */
    char pgdata[PATH_MAX]; /* DATA_DIR/pg */
    char run[PATH_MAX];    /* DATA_DIR/run */
    char log[PATH_MAX];    /* DATA_DIR/pg.log */
    char bindir[PATH_MAX];
    char runuser[PATH_MAX]; /* "" unless we are root */
    char conninfo[PATH_MAX + 64];
    uid_t pg_uid;
    gid_t pg_gid;
};

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};

    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static bool fmt_path(char *out, size_t n, const char *a, const char *b)
{
    int len = snprintf(out, n, "%s%s", a, b);

    return len > 0 && (size_t)len < n;
}

static int mkdir_p(const char *path, mode_t mode)
{
    char tmp[PATH_MAX];
    size_t len = strlen(path);

    if (len == 0 || len >= sizeof(tmp))
        return -ENAMETOOLONG;
    memcpy(tmp, path, len + 1);
    for (char *p = tmp + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(tmp, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (mkdir(tmp, mode) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

/* pg_ctl hands -D and -o to /bin/sh inside double quotes, and libpq and the
 * server parse the socket path as a quoted list: refuse what would break. */
static bool path_is_safe(const char *p)
{
    for (; *p; p++) {
        unsigned char c = (unsigned char)*p;

        if (c < 0x20 || c == 0x7f || strchr("\"'\\$`,", c))
            return false;
    }
    return true;
}

static bool find_in_path(const char *name, char *out, size_t n)
{
    const char *path = getenv("PATH");
    char dirs[PATH_MAX * 4];
    char *save = NULL;

    if (path == NULL || strlen(path) >= sizeof(dirs))
        path = "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
    strcpy(dirs, path);
    for (char *d = strtok_r(dirs, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
        if (snprintf(out, n, "%s/%s", d, name) < (int)n && access(out, X_OK) == 0)
            return true;
    }
    return false;
}

/* The newest /usr/lib/postgresql/<v>/bin holding pg_ctl, else PATH's pg_ctl. */
static bool find_bindir(char *out, size_t n)
{
    glob_t g;
    const char *best = NULL;
    bool found = false;

    if (glob("/usr/lib/postgresql/*/bin/pg_ctl", 0, NULL, &g) == 0) {
        for (size_t i = 0; i < g.gl_pathc; i++) {
            if (access(g.gl_pathv[i], X_OK) == 0 && (!best || strverscmp(g.gl_pathv[i], best) > 0))
                best = g.gl_pathv[i];
        }
        if (best && strlen(best) < n) {
            strcpy(out, best);
            found = true;
        }
    }
    globfree(&g);
    if (!found)
        found = find_in_path("pg_ctl", out, n);
    if (found)
        *strrchr(out, '/') = '\0';
    return found;
}

static void log_tail(const struct pgembed *pg)
{
    char tail[PGEMBED_LOG_TAIL_BYTES + 1];
    int fd = open(pg->log, O_RDONLY | O_CLOEXEC);
    off_t size;
    ssize_t got;

    if (fd < 0)
        return;
    size = lseek(fd, 0, SEEK_END);
    if (size > PGEMBED_LOG_TAIL_BYTES)
        lseek(fd, size - PGEMBED_LOG_TAIL_BYTES, SEEK_SET);
    else
        lseek(fd, 0, SEEK_SET);
    got = read(fd, tail, PGEMBED_LOG_TAIL_BYTES);
    close(fd);
    if (got <= 0)
        return;
    tail[got] = '\0';
    for (char *p = tail; *p; p++) {
        if (*p == '\n')
            *p = (p[1] ? '|' : '\0');
    }
    log_error("pgembed: end of %s: %s", pg->log, tail);
}

/*
 * Runs bindir/tool with args (NULL-terminated), as the postgres user when we
 * are root, in DATA_DIR, with output appended to pg.log (or dropped when
 * quiet). Returns the exit status (>= 0) or -errno.
 */
static int run_tool(const struct pgembed *pg, const char *tool, const char *const *args, bool quiet)
{
    const char *argv[PGEMBED_ARGV_MAX];
    char exe[PATH_MAX];
    unsigned n = 0;
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t attr;
    sigset_t none, all;
    pid_t pid;
    int status, rc;

    if (!fmt_path(exe, sizeof(exe), pg->bindir, tool))
        return -ENAMETOOLONG;
    if (pg->runuser[0]) {
        argv[n++] = pg->runuser;
        argv[n++] = "-u";
        argv[n++] = "postgres";
        argv[n++] = "--";
    }
    argv[n++] = exe;
    for (; *args; args++) {
        TALLY_ASSERT(n < PGEMBED_ARGV_MAX - 1);
        argv[n++] = *args;
    }
    argv[n] = NULL;

    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (quiet) {
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    } else {
        posix_spawn_file_actions_addopen(&fa, 1, pg->log, O_WRONLY | O_APPEND | O_CREAT, 0600);
    }
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
    /* The postgres user may not be allowed into our working directory. */
    posix_spawn_file_actions_addchdir_np(&fa, pg->dir);
    /* Our threads may block or ignore signals (SIGTERM for a signalfd,
     * SIGPIPE); the tools, and the server they start, must not inherit that. */
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_init(&attr);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    rc = posix_spawn(&pid, argv[0], &fa, &attr, (char *const *)argv, environ);
    posix_spawnattr_destroy(&attr);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
        log_error("pgembed: cannot run %s: %s", argv[0], strerror(rc));
        return -rc;
    }
    while (waitpid(pid, &status, 0) < 0) {
        if (errno != EINTR)
            return -errno;
    }
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    log_error("pgembed: %s%s killed by signal %d", pg->bindir, tool, WTERMSIG(status));
    return -ECHILD;
}

/* As root the cluster belongs to "postgres": it must own pg/, run/ and pg.log
 * and be able to walk down to them. */
static int prepare_owner(struct pgembed *pg)
{
    const char *own[] = {pg->pgdata, pg->run, pg->log};
    struct passwd *pw = getpwnam("postgres");
    struct stat st;
    char walk[PATH_MAX];

    if (pw == NULL) {
        log_error("pgembed: running as root but there is no \"postgres\" user to own the cluster");
        return -ENOENT;
    }
    if (!find_in_path("runuser", pg->runuser, sizeof(pg->runuser))) {
        if (access("/usr/sbin/runuser", X_OK) != 0) {
            log_error("pgembed: running as root but runuser(1) is not installed");
            return -ENOENT;
        }
        strcpy(pg->runuser, "/usr/sbin/runuser");
    }
    pg->pg_uid = pw->pw_uid;
    pg->pg_gid = pw->pw_gid;
    /* Never take over a shared directory such as /tmp. */
    if (stat(pg->dir, &st) == 0 && !(st.st_mode & (S_IWOTH | S_ISVTX)) && strcmp(pg->dir, "/") != 0 &&
        chown(pg->dir, pg->pg_uid, pg->pg_gid) < 0) {
        log_error("pgembed: chown %s: %s", pg->dir, strerror(errno));
        return -errno;
    }
    for (size_t i = 0; i < ARRAY_LEN(own); i++) {
        if (chown(own[i], pg->pg_uid, pg->pg_gid) < 0) {
            log_error("pgembed: chown %s: %s", own[i], strerror(errno));
            return -errno;
        }
    }
    strcpy(walk, pg->dir);
    for (char *slash = strrchr(walk, '/'); slash; slash = strrchr(walk, '/')) {
        *slash = '\0';
        if (stat(walk[0] ? walk : "/", &st) < 0)
            break;
        if (!(st.st_mode & S_IXOTH) && !(st.st_uid == pg->pg_uid && (st.st_mode & S_IXUSR)) &&
            !(st.st_gid == pg->pg_gid && (st.st_mode & S_IXGRP))) {
            log_error("pgembed: the postgres user cannot reach %s: %s is closed to it "
                      "(chmod o+x it, or choose another --data-dir)",
                      pg->dir, walk[0] ? walk : "/");
            return -EACCES;
        }
    }
    return 0;
}

static int prepare_dirs(struct pgembed *pg, const char *data_dir)
{
    char real[PATH_MAX];
    int rc, fd;

    rc = mkdir_p(data_dir, 0700);
    if (rc < 0 || realpath(data_dir, real) == NULL) {
        log_error("pgembed: cannot create %s: %s", data_dir, strerror(rc < 0 ? -rc : errno));
        return rc < 0 ? rc : -errno;
    }
    if (!path_is_safe(real)) {
        log_error("pgembed: the data directory %s contains quotes, '\\', '$', '`', ',' or "
                  "control characters, which pg_ctl cannot pass on safely",
                  real);
        return -EINVAL;
    }
    if (strlen(real) + strlen("/run" PGEMBED_SOCKET_NAME) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
        log_error("pgembed: the data directory %s is too long for a unix socket path", real);
        return -ENAMETOOLONG;
    }
    strcpy(pg->dir, real);
    if (!fmt_path(pg->pgdata, sizeof(pg->pgdata), real, "/pg") ||
        !fmt_path(pg->run, sizeof(pg->run), real, "/run") ||
        !fmt_path(pg->log, sizeof(pg->log), real, "/pg.log"))
        return -ENAMETOOLONG;
    /* A socket directory left open by someone would void trust authentication. */
    if ((mkdir(pg->pgdata, 0700) < 0 && errno != EEXIST) || (mkdir(pg->run, 0700) < 0 && errno != EEXIST) ||
        chmod(pg->run, 0700) < 0 || (fd = open(pg->log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600)) < 0) {
        rc = -errno;
        log_error("pgembed: cannot prepare %s: %s", real, strerror(-rc));
        return rc;
    }
    close(fd);
    return geteuid() == 0 ? prepare_owner(pg) : 0;
}

static int init_cluster(struct pgembed *pg)
{
    const char *args[] = {"-D", pg->pgdata, "-A", "trust", "-U", "tally", "-E", "UTF8",
                          "--no-locale", NULL};
    char version[PATH_MAX];
    int rc;

    if (!fmt_path(version, sizeof(version), pg->pgdata, "/PG_VERSION"))
        return -ENAMETOOLONG;
    if (access(version, F_OK) == 0)
        return 0;
    log_info("pgembed: creating a PostgreSQL cluster in %s", pg->pgdata);
    rc = run_tool(pg, "/initdb", args, false);
    if (rc != 0) {
        log_error("pgembed: initdb failed (status %d)", rc);
        log_tail(pg);
        return -EIO;
    }
    return 0;
}

/*
 * A lock file (postmaster.pid, or the socket's .lock) whose process is gone
 * is removed by the postmaster itself. Two cases are not: the PID now belongs
 * to another program (a reboot or a new container reuses PIDs), or the killed
 * postmaster is a zombie nobody reaps (we may be PID 1 of a container).
 * Either way pg_ctl would believe the server runs and the postmaster would
 * refuse to start: remove the file.
 */
static void drop_stale_lock(const char *lockfile)
{
    char proc[64], stat[512];
    const char *open_paren, *close_paren;
    FILE *f;
    long pid = 0;
    size_t n;
    bool is_pg;

    f = fopen(lockfile, "re");
    if (f == NULL)
        return;
    if (fscanf(f, "%ld", &pid) != 1)
        pid = 0;
    fclose(f);
    snprintf(proc, sizeof(proc), "/proc/%ld/stat", pid);
    f = pid > 0 ? fopen(proc, "re") : NULL;
    if (f == NULL)
        return;
    n = fread(stat, 1, sizeof(stat) - 1, f);
    fclose(f);
    stat[n] = '\0';
    /* "PID (COMM) STATE ...": COMM may itself contain parentheses. */
    open_paren = strchr(stat, '(');
    close_paren = strrchr(stat, ')');
    if (open_paren == NULL || close_paren == NULL || close_paren < open_paren || close_paren[1] != ' ')
        return;
    n = (size_t)(close_paren - open_paren - 1);
    is_pg = (n == 8 && memcmp(open_paren + 1, "postgres", 8) == 0) ||
            (n == 10 && memcmp(open_paren + 1, "postmaster", 10) == 0);
    if (!is_pg || close_paren[2] == 'Z' || close_paren[2] == 'X') {
        log_warn("pgembed: %s names pid %ld, which is no running PostgreSQL: removing it", lockfile, pid);
        unlink(lockfile);
    }
}

/* Waits until the server accepts connections on our socket. */
static bool wait_ready(const struct pgembed *pg)
{
    for (unsigned waited = 0; waited < PGEMBED_READY_WAIT_MS; waited += PGEMBED_POLL_MS) {
        PGPing ping = PQping(pg->conninfo);

        if (ping == PQPING_OK)
            return true;
        if (ping == PQPING_NO_ATTEMPT || (ping == PQPING_NO_RESPONSE && waited >= PGEMBED_NO_RESPONSE_WAIT_MS))
            break;
        sleep_ms(PGEMBED_POLL_MS);
    }
    log_error("pgembed: the server in %s does not answer on %s", pg->pgdata, pg->run);
    return false;
}

/*
 * 1: a server runs on our data directory and answers (or is starting up);
 * 0: none runs; -EIO: one runs but never answers on our socket. A postmaster
 * killed a moment ago still counts as running while the kernel tears it
 * down, so "runs but silent" is retried for a while before it is an error.
 */
static void drop_stale_locks(const struct pgembed *pg)
{
    char path[PATH_MAX];

    if (fmt_path(path, sizeof(path), pg->pgdata, "/postmaster.pid"))
        drop_stale_lock(path);
    if (fmt_path(path, sizeof(path), pg->run, PGEMBED_SOCKET_NAME ".lock"))
        drop_stale_lock(path);
}

static int find_running(const struct pgembed *pg)
{
    const char *status_args[] = {"status", "-D", pg->pgdata, NULL};

    for (unsigned waited = 0;; waited += PGEMBED_POLL_MS) {
        drop_stale_locks(pg);
        if (run_tool(pg, "/pg_ctl", status_args, true) != PGCTL_STATUS_RUNNING)
            return 0;
        if (PQping(pg->conninfo) != PQPING_NO_RESPONSE)
            return 1;
        if (waited >= PGEMBED_NO_RESPONSE_WAIT_MS) {
            log_error("pgembed: a server runs on %s but does not answer on %s", pg->pgdata, pg->run);
            return -EIO;
        }
        sleep_ms(PGEMBED_POLL_MS);
    }
}

static int start_cluster(struct pgembed *pg)
{
    char opts[PGEMBED_OPTS_MAX];
    const char *start_args[] = {"-D", pg->pgdata, "-o", opts, "-l", pg->log, "-w",
                                "-t", PGEMBED_START_TIMEOUT_S, "start", NULL};
    int rc = find_running(pg);
    if (rc < 0)
        return rc;
    if (rc > 0) {
        log_info("pgembed: reusing the PostgreSQL server already running on %s", pg->pgdata);
        return wait_ready(pg) ? 0 : -EIO;
    }
    /* No TCP at all; the socket directory is the only way in. */
    if (snprintf(opts, sizeof(opts), "-c listen_addresses='' -c unix_socket_directories='%s'", pg->run) >=
        (int)sizeof(opts))
        return -ENAMETOOLONG;
    /* After a SIGKILL of the postmaster its children need a moment to notice
     * and detach from shared memory; until then a new postmaster refuses. */
    for (unsigned attempt = 0; attempt < PGEMBED_START_ATTEMPTS; attempt++) {
        if (attempt > 0)
            sleep_ms(PGEMBED_RETRY_MS);
        rc = run_tool(pg, "/pg_ctl", start_args, false);
        if (rc == 0)
            break;
    }
    if (rc != 0) {
        log_error("pgembed: pg_ctl start failed (status %d)", rc);
        log_tail(pg);
        return -EIO;
    }
    return wait_ready(pg) ? 0 : -EIO;
}

struct pgembed *pgembed_start(const char *data_dir, char *conninfo, size_t conninfo_len)
{
    struct pgembed *pg;
    int len;

    TALLY_ASSERT(data_dir != NULL);
    TALLY_ASSERT(conninfo != NULL && conninfo_len > 0);
    pg = xcalloc(1, sizeof(*pg));
    if (!find_bindir(pg->bindir, sizeof(pg->bindir))) {
        log_error("pgembed: no PostgreSQL binaries (pg_ctl) in /usr/lib/postgresql/*/bin or on PATH");
        goto err_free;
    }
    if (prepare_dirs(pg, data_dir) < 0)
        goto err_free;
    len = snprintf(pg->conninfo, sizeof(pg->conninfo), "host='%s' user=tally dbname=postgres", pg->run);
    TALLY_ASSERT(len > 0 && (size_t)len < sizeof(pg->conninfo));
    if ((size_t)len >= conninfo_len) {
        log_error("pgembed: connection string buffer too small (%zu bytes)", conninfo_len);
        goto err_free;
    }
    if (init_cluster(pg) < 0 || start_cluster(pg) < 0)
        goto err_free;
    memcpy(conninfo, pg->conninfo, (size_t)len + 1);
    log_info("pgembed: PostgreSQL ready on %s", pg->run);
    return pg;

err_free:
    free(pg);
    return NULL;
}

void pgembed_stop(struct pgembed *pg)
{
    const char *args[] = {"-D", pg ? pg->pgdata : "", "-m", "fast", "-w", "stop", NULL};
    int rc;

    if (pg == NULL)
        return;
    rc = run_tool(pg, "/pg_ctl", args, false);
    if (rc != 0) {
        log_warn("pgembed: pg_ctl stop failed (status %d)", rc);
        log_tail(pg);
    } else {
        log_info("pgembed: PostgreSQL stopped");
    }
    free(pg);
}
