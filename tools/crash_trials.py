#!/usr/bin/env python3
"""Crash trials: zero vote loss (CONTRACT section 3, guarantee 4) under faults.

Each trial opens a fresh poll, joins P participants and sends all their votes
at once. At a random moment of that burst it either kills tallyd with SIGKILL
and starts it again on the same data directory (--mode kill), or stops the
embedded PostgreSQL in immediate mode and starts it again half a second later
while tallyd keeps running (--mode pgstop), or, for the whole burst, keeps
ending one of tallyd's storage connections every few milliseconds with
pg_terminate_backend, so that connections break before, during and after
COMMIT while the database stays up (--mode pgterm). Clients behave like phones: an
answer that never came, or a 503/429, is retried with the same
Idempotency-Key until 201, 200 or 409, or a deadline. With --transport ws
each attempt is made as a phone on the live page makes it: a WebSocket to the
session (token in the query), `hello`, then a `vote` message whose id is the
key, answered by an `ack` (accepted: as 201, duplicate: as 200) or an
`error` (its code mapped to the HTTP status the API gives it).

After the burst the votes table, the results API, the poll's final counts and
a replay of every acknowledged key are compared with what the clients were
told. A violation (an acknowledged vote lost, duplicated or altered, a key
answered 409 or with another vote, counts that disagree with the rows, a
client never answered) makes the tool exit 1.

One data directory serves all trials of a run; every wait has a timeout and
the tool kills tallyd and stops the cluster it started, whatever happens.

usage: crash_trials.py --tallyd build/bin/tallyd --trials N --mode kill|pgstop|pgterm
                       [--participants 300] [--seed S] [--transport http|ws]
"""
import argparse
import collections
import http.client
import json
import math
import os
import queue
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from tally_harness import Tally, WsClient, pg_bindir  # noqa: E402

OPTIONS = ["A", "B", "C", "D"]
WORKERS_MAX = 64            # concurrent vote senders (keep-alive connections)
REQUEST_TIMEOUT_S = 10      # one HTTP exchange
CLIENT_DEADLINE_S = 30      # a phone gives up on a vote after this long
BACKOFF_FIRST_S = 0.15      # above 1/10 s: the per-participant vote rate limit
BACKOFF_MAX_S = 1.0
RETRY_AFTER_CAP_S = 2.0
JOINS_PER_ADDRESS = 500     # well inside the join bucket (burst 1000, 200/s)
READY_TIMEOUT_S = 60
PG_STOP_PAUSE_S = 0.5
PG_CTL_TIMEOUT_S = 90
PSQL_TIMEOUT_S = 30
CALIBRATION_BURSTS = 3      # fault-free bursts that measure how long a burst lasts
PGTERM_GAP_MS = (2, 15)     # pgterm: pause between two terminations, drawn uniformly
WRITER_APP = "tallyd-writer "  # application_name of tallyd's storage connections, then the instance id
RESOLVED_LOG = "the answer to COMMIT of transaction"
BURST_ESTIMATE_MIN_S = 0.02


class Interrupted(Exception):
    pass


def on_signal(signum, frame):
    raise Interrupted("signal %d" % signum)


def source_address(trial, index, per_trial):
    """127.x.y.z for join number index of a trial; joins are rate-limited per
    address, so each trial uses its own addresses."""
    n = trial * per_trial + index // JOINS_PER_ADDRESS
    return "127.0.%d.%d" % ((n // 254) % 256, 2 + n % 253)


class Client:
    """One keep-alive HTTP/1.1 connection that reconnects after any error."""

    def __init__(self, port, source=None):
        self.port = port
        self.source = source
        self.conn = None

    def close(self):
        if self.conn:
            self.conn.close()
            self.conn = None

    def request(self, method, path, body=None, token=None, headers=None):
        """(status, headers, parsed JSON or None); raises OSError or
        http.client.HTTPException when no answer arrived."""
        if self.conn is None:
            src = (self.source, 0) if self.source else None
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=REQUEST_TIMEOUT_S,
                                                   source_address=src)
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = "Bearer " + token
        h.update(headers or {})
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.conn.request(method, path, body=data, headers=h)
            r = self.conn.getresponse()
            raw = r.read()
        except BaseException:
            self.close()
            raise
        if r.getheader("Connection", "").lower() == "close":
            self.close()
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = None
        return r.status, r.headers, parsed


# A WebSocket error code as the HTTP status the same refusal gets from the API.
WS_ERROR_STATUS = {"poll_not_open": 409, "already_voted": 409, "rate_limited": 429,
                   "storage_unavailable": 503, "busy": 503, "unavailable": 503}


def ws_vote(ws, poll_id, key, choice):
    """(status, vote or error code) for one vote message on a fresh socket, as
    the live page sends it: after hello, then read until its ack or error."""
    while ws.message().get("type") != "hello":
        pass
    ws.send({"type": "vote", "id": key, "poll_id": poll_id, "choice": [choice]})
    while True:
        m = ws.message()
        d = m.get("data") or {}
        if m.get("type") == "ack" and d.get("id") == key:
            return (201 if d.get("status") == "accepted" else 200), d.get("vote")
        if m.get("type") == "error" and d.get("id") == key:
            return WS_ERROR_STATUS.get(d.get("code"), 400), d.get("code")


def ws_request(port, code, poll_id, v):
    """One attempt of v's vote over a WebSocket: (status, headers, JSON) as
    Client.request gives them, so send_vote treats both transports alike."""
    ws = WsClient(port, code, v.token, timeout=REQUEST_TIMEOUT_S)
    try:
        status, ans = ws_vote(ws, poll_id, v.key, v.choice)
    except ValueError as e:
        raise OSError("malformed message: %s" % e)
    finally:
        ws.close()
    if status in (200, 201):
        return status, {}, {"vote": ans}
    return status, {}, {"error": {"code": ans}}


def call(cl, method, path, body=None, token=None, want=(200, 201), deadline_s=30):
    """A setup request, retried while the server is not answering; raises
    RuntimeError with the answer when it is not one of want."""
    deadline = time.monotonic() + deadline_s
    while True:
        try:
            status, headers, js = cl.request(method, path, body, token)
            if status in want:
                return js
            if status not in (429, 503) or time.monotonic() > deadline:
                raise RuntimeError("%s %s: %d %s" % (method, path, status, js))
        except (OSError, http.client.HTTPException) as e:
            if time.monotonic() > deadline:
                raise RuntimeError("%s %s: %s" % (method, path, e))
        time.sleep(0.2)


class Voter:
    """A participant and everything it was told about its one vote."""

    def __init__(self, pid, token, choice):
        self.pid = pid
        self.token = token
        self.choice = choice
        self.key = str(uuid.uuid4())
        self.answers = []       # (status, vote or error code)
        self.attempts = 0
        self.conn_errors = 0
        self.final = None       # 200/201/409/other status, or None (deadline)
        self.ack_time = None    # monotonic time of the first 200/201

    @property
    def acks(self):
        return [(s, v) for s, v in self.answers if s in (200, 201)]


def send_vote(cl, poll_id, v, stats_lock, stats, deadline, ws_code=None):
    """Sends v's vote until a final answer or the deadline: over cl (HTTP),
    or over a new WebSocket to session ws_code for each attempt."""
    backoff = BACKOFF_FIRST_S
    while time.monotonic() < deadline:
        v.attempts += 1
        wait = None
        try:
            if ws_code is not None:
                status, headers, js = ws_request(cl.port, ws_code, poll_id, v)
            else:
                status, headers, js = cl.request("POST", "/api/v1/polls/%d/votes" % poll_id,
                                                 {"choice": [v.choice]}, v.token,
                                                 {"Idempotency-Key": v.key})
        except (OSError, http.client.HTTPException):
            v.conn_errors += 1
            status = None
        if status is not None:
            if status in (200, 201):
                v.answers.append((status, (js or {}).get("vote")))
                if v.ack_time is None:
                    v.ack_time = time.monotonic()
            else:
                v.answers.append((status, ((js or {}).get("error") or {}).get("code")))
            if status not in (429, 503):
                v.final = status
                return
            try:
                wait = min(float(headers.get("Retry-After", "0")), RETRY_AFTER_CAP_S)
            except ValueError:
                wait = None
            with stats_lock:
                stats[status] += 1
        pause = max(wait or 0, backoff) * random.uniform(0.7, 1.3)
        time.sleep(max(0.0, min(pause, deadline - time.monotonic())))
        backoff = min(backoff * 2, BACKOFF_MAX_S)


class Run:
    def __init__(self, args):
        self.args = args
        self.t = Tally(os.path.abspath(args.tallyd))
        self.pgdir = os.path.join(self.t.data_dir, "pg")
        self.bindir = pg_bindir()
        self.fault_error = None
        self.fault_time = None
        self.total = collections.Counter()
        self.burst_estimate = None

    # -- faults -------------------------------------------------------------

    def pg_ctl(self, *args):
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", self.pgdir] + list(args)
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--"] + cmd
        # pg.log belongs to root (tallyd opens it and hands it to pg_ctl), so
        # we do the same rather than letting pg_ctl -l open it as postgres.
        with open(os.path.join(self.t.data_dir, "pg.log"), "ab") as log:
            return subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                  cwd=self.t.data_dir, timeout=PG_CTL_TIMEOUT_S).returncode

    def pgterm(self, rng, stop):
        """Ends one random storage connection of tallyd every few ms until
        stop is set; returns how many were ended. One psql session does it
        all, so a termination costs a round trip, not a process start."""
        cmd = ["psql", "-h", os.path.join(self.t.data_dir, "run"), "-U", "tally", "-d", "postgres",
               "-At", "-q", "-v", "ON_ERROR_STOP=0"]
        p = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                             text=True)
        sent = 0
        try:
            while not stop.is_set():
                p.stdin.write("SELECT count(pg_terminate_backend(pid)) FROM (SELECT pid FROM pg_stat_activity "
                              "WHERE application_name LIKE '%s%%' ORDER BY random() LIMIT 1) t;\n" % WRITER_APP)
                p.stdin.flush()
                sent += 1
                stop.wait(rng.uniform(*PGTERM_GAP_MS) / 1000.0)
            p.stdin.close()
            out = p.stdout.read()
            p.wait(timeout=PSQL_TIMEOUT_S)
        finally:
            if p.poll() is None:
                p.kill()
                p.wait()
        ended = sum(int(x) for x in out.split() if x.isdigit())
        return sent, ended

    def fault(self):
        if self.args.mode == "kill":
            self.t.kill9()
            self.t.start(timeout=READY_TIMEOUT_S)
            return
        rc = self.pg_ctl("-m", "immediate", "-w", "-t", "60", "stop")
        if rc != 0:
            raise RuntimeError("pg_ctl stop failed with %d" % rc)
        time.sleep(PG_STOP_PAUSE_S)
        opts = "-c listen_addresses='' -c unix_socket_directories='%s'" % os.path.join(self.t.data_dir, "run")
        rc = self.pg_ctl("-o", opts, "-w", "-t", "60", "start")
        if rc != 0:
            raise RuntimeError("pg_ctl start failed with %d" % rc)

    def fault_at(self, start, delay, rng, stop):
        try:
            time.sleep(max(0.0, start + delay - time.monotonic()))
            self.fault_time = time.monotonic()
            if self.args.mode == "pgterm":
                self.terminated = self.pgterm(rng, stop)
            else:
                self.fault()
        except Exception as e:  # reported by the trial, never swallowed
            self.fault_error = e

    def wait_ready(self):
        """tallyd must come back to ready by itself after the database returns."""
        cl = Client(self.t.port)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while time.monotonic() < deadline:
                try:
                    if cl.request("GET", "/readyz")[0] == 200:
                        return True
                except (OSError, http.client.HTTPException):
                    pass
                time.sleep(0.1)
            return False
        finally:
            cl.close()

    # -- one trial ------------------------------------------------------------

    def psql(self, sql):
        cmd = ["psql", "-h", os.path.join(self.t.data_dir, "run"), "-U", "tally", "-d", "postgres",
               "-At", "-F", "|", "-c", sql]
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=PSQL_TIMEOUT_S)
        if p.returncode != 0:
            raise RuntimeError("psql failed: %s" % p.stderr.strip())
        return [line.split("|") for line in p.stdout.splitlines() if line]

    def setup(self, trial, rng):
        P = self.args.participants
        admin = Client(self.t.port)
        try:
            s = call(admin, "POST", "/api/v1/sessions", {"title": "crash trial %d" % trial}, want=(201,))
            code, ptok = s["session"]["code"], s["presenter_token"]
            poll = call(admin, "POST", "/api/v1/sessions/%s/polls" % code,
                        {"question": "trial %d?" % trial, "kind": "single", "options": OPTIONS},
                        ptok, want=(201,))["poll"]
            call(admin, "POST", "/api/v1/polls/%d/open" % poll["id"], token=ptok, want=(200,))
        finally:
            admin.close()
        per_trial = max(1, math.ceil(P / JOINS_PER_ADDRESS))
        choices = [rng.randrange(len(OPTIONS)) for _ in range(P)]
        voters = [None] * P
        jobs = queue.Queue()
        for i in range(P):
            jobs.put(i)
        errors = []

        def joiner():
            conns = {}
            try:
                while True:
                    try:
                        i = jobs.get_nowait()
                    except queue.Empty:
                        return
                    src = source_address(trial, i, per_trial)
                    cl = conns.setdefault(src, Client(self.t.port, src))
                    j = call(cl, "POST", "/api/v1/sessions/%s/participants" % code, {"name": "p%d" % i},
                             want=(201,))
                    voters[i] = Voter(j["participant_id"], j["participant_token"], choices[i])
            except Exception as e:
                errors.append(e)
            finally:
                for cl in conns.values():
                    cl.close()

        threads = [threading.Thread(target=joiner, daemon=True) for _ in range(min(8, P))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        if errors or any(v is None for v in voters):
            raise RuntimeError("joining failed: %s" % (errors[:1] or "timeout"))
        return code, ptok, poll["id"], voters

    def burst(self, code, poll_id, voters, fault_delay, rng):
        stats = collections.Counter()
        lock = threading.Lock()
        jobs = queue.Queue()
        for v in voters:
            jobs.put(v)
        start = time.monotonic()
        deadline = start + CLIENT_DEADLINE_S

        def worker():
            cl = Client(self.t.port)
            try:
                while True:
                    try:
                        v = jobs.get_nowait()
                    except queue.Empty:
                        return
                    send_vote(cl, poll_id, v, lock, stats, deadline,
                              code if self.args.transport == "ws" else None)
            finally:
                cl.close()

        self.fault_error = None
        self.fault_time = None
        self.terminated = (0, 0)
        fault_thread = None
        stop = threading.Event()
        if fault_delay is not None:
            fault_thread = threading.Thread(target=self.fault_at, args=(start, fault_delay, rng, stop),
                                            daemon=True)
            fault_thread.start()
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(WORKERS_MAX, len(voters)))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=CLIENT_DEADLINE_S + 2 * REQUEST_TIMEOUT_S)
        elapsed = time.monotonic() - start
        stop.set()
        if fault_thread:
            fault_thread.join(timeout=2 * PG_CTL_TIMEOUT_S + READY_TIMEOUT_S)
            if fault_thread.is_alive():
                raise RuntimeError("the fault did not finish in time")
        if any(th.is_alive() for th in threads):
            raise RuntimeError("vote senders still running after the deadline")
        if self.fault_error:
            raise RuntimeError("fault failed: %s" % self.fault_error)
        return elapsed, stats

    def verify(self, code, ptok, poll_id, voters):
        """Counts of each kind of violation, plus what it saw."""
        bad = collections.Counter()
        notes = []

        def violation(kind, text):
            bad[kind] += 1
            if len(notes) < 20:
                notes.append("%s: %s" % (kind, text))

        rows = self.psql("SELECT id, participant_id, choices, idem_key FROM votes WHERE poll_id = %d "
                         "ORDER BY id" % poll_id)
        by_pid = collections.defaultdict(list)
        for vid, pid, choices, key in rows:
            by_pid[int(pid)].append((int(vid), [int(c) for c in choices.strip("{}").split(",") if c], key))
        known = {v.pid: v for v in voters}
        for pid in by_pid:
            if pid not in known:
                violation("mismatched", "row for participant %d who is not in this trial" % pid)
        acked = unanswered = committed_unacked = refused = 0
        for v in voters:
            mine = by_pid.get(v.pid, [])
            if len(mine) > 1:
                violation("duplicated", "participant %d has %d rows: %s" % (v.pid, len(mine), mine))
            for status, ans in v.answers:
                if status == 409:
                    violation("mismatched", "participant %d key %s answered 409 %s" % (v.pid, v.key, ans))
                elif status not in (200, 201, 429, 503):
                    violation("mismatched", "participant %d answered %d %s" % (v.pid, status, ans))
            if v.final is None:
                unanswered += 1
                violation("unanswered", "participant %d: no final answer within %d s (answers %s)" %
                          (v.pid, CLIENT_DEADLINE_S, v.answers[-3:]))
            acks = v.acks
            if not acks:
                if v.final == 409:
                    refused += 1
                if mine:
                    committed_unacked += 1
                continue
            acked += 1
            ids = {(a or {}).get("id") for _, a in acks}
            if len(ids) != 1:
                violation("duplicated", "participant %d acknowledged with several ids %s" % (v.pid, acks))
            if sum(1 for s, _ in acks if s == 201) > 1 and len(ids) > 1:
                violation("duplicated", "participant %d got 201 twice with different ids" % v.pid)
            for _, a in acks:
                a = a or {}
                if a.get("poll_id") != poll_id or a.get("participant_id") != v.pid or a.get("choice") != [v.choice]:
                    violation("mismatched", "participant %d acknowledged %s, sent choice %d" % (v.pid, a, v.choice))
            ack_id = (acks[0][1] or {}).get("id")
            if not mine:
                violation("lost", "participant %d vote %s (key %s) acknowledged %s, no row" %
                          (v.pid, ack_id, v.key, [s for s, _ in acks]))
                continue
            vid, choices, key = mine[0]
            if vid != ack_id or choices != [v.choice] or key != v.key:
                violation("mismatched", "participant %d acknowledged id %s choice %d key %s, row %s" %
                          (v.pid, ack_id, v.choice, v.key, mine[0]))

        # The API must count exactly the rows.
        expect = [0] * len(OPTIONS)
        for pid, mine in by_pid.items():
            for _, choices, _ in mine:
                for c in choices:
                    expect[c] += 1
        admin = Client(self.t.port)
        try:
            res = call(admin, "GET", "/api/v1/polls/%d/results" % poll_id, token=ptok, want=(200,))
            if res.get("counts") != expect or res.get("total") != len(rows):
                violation("mismatched", "results %s total %s, rows give %s total %d" %
                          (res.get("counts"), res.get("total"), expect, len(rows)))
            closed = call(admin, "POST", "/api/v1/polls/%d/close" % poll_id, token=ptok, want=(200,))["poll"]
            if closed.get("counts") != expect:
                violation("mismatched", "final counts %s, rows give %s" % (closed.get("counts"), expect))
        finally:
            admin.close()

        # Every acknowledged key, sent again (with another choice, after the
        # close), must answer 200 with the original vote.
        replays = self.replay(poll_id, [v for v in voters if v.acks], violation)
        after = self.psql("SELECT count(*) FROM votes WHERE poll_id = %d" % poll_id)[0][0]
        if int(after) != len(rows):
            violation("duplicated", "replays changed the row count from %d to %s" % (len(rows), after))
        # A first acknowledgement of 200 means the commit happened but its
        # answer never arrived: the retry found the vote by its key.
        acked_by_200 = sum(1 for v in voters if v.acks and v.acks[0][0] == 200)
        return bad, notes, dict(voters=voters, acked=acked, acked_by_200=acked_by_200, rows=len(rows), committed_unacked=committed_unacked,
                                unanswered=unanswered, refused=refused, replays=replays)

    def replay(self, poll_id, voters, violation):
        jobs = queue.Queue()
        for v in voters:
            jobs.put(v)
        lock = threading.Lock()
        done = [0]

        def worker():
            cl = Client(self.t.port)
            try:
                while True:
                    try:
                        v = jobs.get_nowait()
                    except queue.Empty:
                        return
                    other = (v.choice + 1) % len(OPTIONS)
                    status, vote = None, None
                    for _ in range(5):
                        try:
                            status, headers, js = cl.request("POST", "/api/v1/polls/%d/votes" % poll_id,
                                                             {"choice": [other]}, v.token,
                                                             {"Idempotency-Key": v.key})
                        except (OSError, http.client.HTTPException) as e:
                            status, js = None, {"error": {"code": str(e)}}
                        if status not in (None, 429, 503):
                            break
                        time.sleep(0.5)
                    vote = (js or {}).get("vote")
                    with lock:
                        done[0] += 1
                        if status != 200 or vote != v.acks[0][1]:
                            violation("mismatched", "replay of participant %d key %s: %s %s, acknowledged %s" %
                                      (v.pid, v.key, status, js, v.acks[0][1]))
            finally:
                cl.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(16, max(1, len(voters))))]
        for th in threads:
            th.start()
        for th in threads:
            th.join(timeout=120)
        if any(th.is_alive() for th in threads):
            raise RuntimeError("replay did not finish in time")
        return done[0]

    def trial(self, n, rng):
        """n <= 0 is a calibration burst without a fault."""
        if self.t.proc is None or self.t.proc.poll() is not None:
            self.t.start(timeout=READY_TIMEOUT_S)
        if not self.wait_ready():
            raise RuntimeError("tallyd not ready before trial %d" % n)
        code, ptok, poll_id, voters = self.setup(n, rng)
        delay = None if n <= 0 else rng.uniform(0, self.burst_estimate)
        if delay is not None and self.args.mode == "pgterm":
            delay /= 4  # terminations run to the end of the burst: start them early
        resolved_before = self.resolved()
        elapsed, stats = self.burst(code, poll_id, voters, delay, rng)
        if self.args.mode in ("pgstop", "pgterm") and not self.wait_ready():
            raise RuntimeError("tallyd did not become ready again within %d s after PostgreSQL returned" %
                               READY_TIMEOUT_S)
        bad, notes, seen = self.verify(code, ptok, poll_id, voters)
        seen["resolved"] = self.resolved() - resolved_before
        seen["terminated"] = self.terminated
        if self.args.mode == "pgterm" and seen["acked_by_200"]:
            # The database stayed up: every lost answer to COMMIT must have
            # been resolved by tallyd, never left to the client's retry.
            bad["unresolved"] += seen["acked_by_200"]
            notes.append("unresolved: %d votes committed but first answered 503" % seen["acked_by_200"])
        retries = sum(v.attempts - 1 for v in voters)
        conn_errors = sum(v.conn_errors for v in voters)
        # How far the burst had come when the fault struck: a fault after the
        # last acknowledgement only tests durability, not votes in flight.
        seen["acked_before_fault"] = sum(1 for v in voters if v.ack_time is not None and
                                         self.fault_time is not None and v.ack_time < self.fault_time)
        return elapsed, delay, stats, bad, notes, seen, retries, conn_errors

    def resolved(self):
        """Counts of lost COMMIT answers tallyd resolved by checking, by what
        the database said, from its log (which survives restarts)."""
        c = collections.Counter()
        try:
            with open(self.t.log_path, errors="replace") as f:
                for line in f:
                    if RESOLVED_LOG in line:
                        c[line.split("the database says ", 1)[-1].split(",", 1)[0]] += 1
        except OSError:
            pass
        return c

    def run(self):
        a = self.args
        failures = 0
        t_run = time.monotonic()
        # Durations of bursts that no fault touched: the calibration bursts
        # and every trial whose fault came after its last acknowledgement.
        # Their median is the expected burst duration; a single sample is
        # at the mercy of whatever else the machine is doing.
        undisturbed = []
        for n in range(1 - CALIBRATION_BURSTS, a.trials + 1):
            rng = random.Random("%d/%d" % (a.seed, n))
            random.seed("%d/%d/jitter" % (a.seed, n))
            if n > 0:
                self.burst_estimate = max(statistics.median(undisturbed), BURST_ESTIMATE_MIN_S)
            if n == 1:
                print("expected burst duration %.0f ms (median of undisturbed bursts, updated as trials run)" %
                      (self.burst_estimate * 1000), flush=True)
            elapsed, delay, stats, bad, notes, seen, retries, conn_errors = self.trial(n, rng)
            if n <= 0:
                undisturbed.append(elapsed)
                what = "calibration, no fault"
            else:
                during = seen["acked_before_fault"] < len(seen["voters"])
                if not during:
                    undisturbed.append(elapsed)
                self.total["during"] += during
                what = "%s at %4.0f ms of ~%.0f (%d/%d acked before it)" % (
                    a.mode, delay * 1000, self.burst_estimate * 1000, seen["acked_before_fault"],
                    len(seen["voters"]))
            if a.mode == "pgterm" and n > 0:
                what = "pgterm from %4.0f ms (%d/%d acked before it), %d of %d terminations ended a connection" % (
                    delay * 1000, seen["acked_before_fault"], len(seen["voters"]), seen["terminated"][1],
                    seen["terminated"][0])
            if seen["resolved"]:
                what += ", COMMIT answers lost and resolved: %s" % ", ".join(
                    "%s %d" % kv for kv in sorted(seen["resolved"].items()))
            label = ("trial %3d/%d" % (n, a.trials) if n > 0 else
                     "calibration %d/%d" % (n + CALIBRATION_BURSTS, CALIBRATION_BURSTS))
            line = ("%s seed %d: %s, burst %5.0f ms: acked %d (%d by 200 to a retry), lost %d, duplicated %d, "
                    "mismatched %d, retries %d (conn errors %d, 503 %d, 429 %d), unanswered %d, "
                    "committed-unacked %d, replays %d" %
                    (label, a.seed, what, elapsed * 1000, seen["acked"], seen["acked_by_200"], bad["lost"],
                     bad["duplicated"], bad["mismatched"], retries, conn_errors, stats[503], stats[429],
                     seen["unanswered"], seen["committed_unacked"], seen["replays"]))
            print(line, flush=True)
            for note in notes:
                print("    " + note, flush=True)
            if n > 0:
                self.total.update(bad)
                self.total["acked"] += seen["acked"]
                self.total["retries"] += retries
                self.total["acked_by_200"] += seen["acked_by_200"]
                self.total["terminations"] += seen["terminated"][1]
                for k, v in seen["resolved"].items():
                    self.total["resolved " + k] += v
            if sum(bad.values()):
                failures += 1
                self.keep_logs(n)
        extra = ""
        if a.mode == "pgterm":
            extra += ", %d unresolved, %d connections ended" % (self.total["unresolved"], self.total["terminations"])
        resolved = sorted((k[len("resolved "):], v) for k, v in self.total.items() if k.startswith("resolved "))
        if resolved:
            extra += ", lost COMMIT answers resolved: %s" % ", ".join("%s %d" % kv for kv in resolved)
        print("%d trials: %d lost, %d duplicated, %d altered, %d unanswered "
              "(mode %s over %s, %d participants, seed %d, %d acked, %d of them by 200 to a retry, %d retries, "
              "%d faults during the burst%s, %.0f s)" %
              (a.trials, self.total["lost"], self.total["duplicated"], self.total["mismatched"],
               self.total["unanswered"], a.mode, a.transport, a.participants, a.seed, self.total["acked"],
               self.total["acked_by_200"], self.total["retries"], self.total["during"], extra,
               time.monotonic() - t_run), flush=True)
        return 1 if failures else 0

    def keep_logs(self, n):
        for name in ("tallyd.log", "pg.log"):
            src = os.path.join(self.t.data_dir, name)
            dst = "/tmp/crash_trials-%d-trial%d-%s" % (self.args.seed, n, name)
            try:
                shutil.copyfile(src, dst)
                print("    kept %s" % dst, flush=True)
            except OSError:
                pass


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tallyd", required=True)
    ap.add_argument("--trials", type=int, required=True)
    ap.add_argument("--mode", choices=("kill", "pgstop", "pgterm"), required=True)
    ap.add_argument("--participants", type=int, default=300)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--transport", choices=("http", "ws"), default="http")
    a = ap.parse_args()
    if a.trials < 1 or a.participants < 1:
        ap.error("--trials and --participants must be at least 1")
    if a.seed is None:
        a.seed = int(time.time()) % 1000000
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    run = Run(a)
    rc = 1
    try:
        rc = run.run()
    except (Exception, Interrupted) as e:
        print("crash_trials: aborted: %s" % e, flush=True)
        print(run.t.log()[-3000:], flush=True)
        run.keep_logs(-1)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        run.t.cleanup()
    return rc


if __name__ == "__main__":
    sys.exit(main())
