"""Starts tallyd on a private embedded PostgreSQL and talks HTTP and
WebSocket to it.

Used by the integration tests and tools/crash_trials.py; every test gets a
fresh data directory under /tmp and a free port, and the cluster is stopped
whatever happens.
"""
import base64
import glob
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.error
import urllib.request


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def pg_bindir():
    dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"))
    return dirs[-1] if dirs else None


class Checks:
    """Counts the checks of one test run; a failed one is printed and the
    run goes on, so one run reports every failure."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def __call__(self, cond, what):
        if cond:
            self.passed += 1
        else:
            self.failed += 1
            print("FAIL:", what, flush=True)

    def summary(self):
        """Prints the counts; returns the exit status (0 when all passed)."""
        print("%d passed, %d failed" % (self.passed, self.failed))
        return 1 if self.failed else 0

    def main(self, run):
        """Runs run(the tallyd path given as the first argument); an exception
        is one more failed check. Exits with the summary's status."""
        try:
            run(sys.argv[1])
        except Exception:
            traceback.print_exc()
            self(False, "the test ran to the end")
        sys.exit(self.summary())


def ws_frame(op, payload, mask=True, fin=True):
    """One WebSocket frame; a client's is masked (mask=False builds a bad one)."""
    b0 = (0x80 if fin else 0) | op
    n = len(payload)
    hdr = bytes([b0])
    mbit = 0x80 if mask else 0
    if n < 126:
        hdr += bytes([mbit | n])
    elif n < 65536:
        hdr += bytes([mbit | 126]) + n.to_bytes(2, "big")
    else:
        hdr += bytes([mbit | 127]) + n.to_bytes(8, "big")
    if not mask:
        return hdr + payload
    m = os.urandom(4)
    return hdr + m + bytes(c ^ m[i % 4] for i, c in enumerate(payload))


class WsClient:
    """A WebSocket to a session's stream (token in the query). Raises OSError
    when the upgrade is refused, the connection ends or a read times out."""

    def __init__(self, port, code, token, timeout=10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall(("GET /api/v1/sessions/%s/ws?token=%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n"
                           "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n" % (code, token, port, key)).encode())
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            self.close()
            raise OSError("upgrade refused: %s" % head.split(b"\r\n", 1)[0].decode(errors="replace"))

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self):
        data = self.sock.recv(65536)
        if not data:
            raise OSError("connection closed")
        self.buf += data

    def _take(self, n):
        while len(self.buf) < n:
            self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def frame(self):
        """The next frame from the server: (opcode, payload)."""
        b0, b1 = self._take(2)
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self._take(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self._take(8))[0]
        return b0 & 0x0F, self._take(n)

    def message(self):
        """The next text message, parsed; raises OSError on a close frame."""
        while True:
            op, payload = self.frame()
            if op == 8:
                raise OSError("closed by the server: %r" % payload[:64])
            if op == 1:
                return json.loads(payload)

    def send(self, obj):
        self.sock.sendall(ws_frame(1, json.dumps(obj).encode()))


class Response:
    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        return json.loads(self.body)


class Tally:
    def __init__(self, binary, extra_args=()):
        self.binary = binary
        self.extra_args = list(extra_args)
        self.port = free_port()
        self.data_dir = tempfile.mkdtemp(prefix="tally-it-")
        os.chmod(self.data_dir, 0o755)
        self.proc = None
        self.log_path = os.path.join(self.data_dir, "tallyd.log")

    @property
    def base(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self, timeout=60):
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [self.binary, "--listen", "127.0.0.1:%d" % self.port,
             "--data-dir", self.data_dir] + self.extra_args,
            stdout=log, stderr=log)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("tallyd exited with %s:\n%s" % (self.proc.returncode, self.log()))
            try:
                if self.request("GET", "/healthz").status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("tallyd did not become healthy:\n" + self.log())

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode(errors="replace")[-6000:]
        except OSError:
            return ""

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def terminate(self, timeout=30):
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def request(self, method, path, body=None, token=None, headers=None, raw=None, timeout=30):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(self.base + path, data=data, method=method)
        if data is not None:
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", "Bearer " + token)
        for k, v in (headers or {}).items():
            req.add_header(k, v)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as r:
                return Response(r.status, r.headers, r.read())
        except urllib.error.HTTPError as e:
            return Response(e.code, e.headers, e.read())

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        pgdir = os.path.join(self.data_dir, "pg")
        bindir = pg_bindir()
        if bindir and os.path.exists(os.path.join(pgdir, "postmaster.pid")):
            cmd = [os.path.join(bindir, "pg_ctl"), "-D", pgdir, "-m", "immediate", "-w", "stop"]
            if os.geteuid() == 0:
                cmd = ["runuser", "-u", "postgres", "--"] + cmd
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        shutil.rmtree(self.data_dir, ignore_errors=True)
