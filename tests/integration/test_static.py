#!/usr/bin/env python3
"""End to end: pages and assets embedded in tallyd.

    test_static.py TALLYD WWW_DIR

WWW_DIR is the directory the binary embedded (net/www for a normal build).
Every file in it is fetched as /assets/<file> in identity, gzip and br, each
decoded (gzip by Python, br by the `brotli` command) and compared with the
file on disk; the page routes are checked against the page files that exist
and must answer 404 for those that do not. Also: ETag and If-None-Match
(304), HEAD on a kept-alive connection (no body on the wire), 405 with Allow,
404 for traversal and encoded slashes, and the security headers.
"""
import gzip
import http.client
import os
import re
import socket
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from tally_harness import Checks, Tally  # noqa: E402

PAGES = {"/": "index.html", "/j/ABCDEF": "join.html", "/j/ABCDE0": "join.html", "/present/K7QX2M": "present.html",
         "/screen/K7QX2M": "screen.html"}
NAME_RE = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]*$")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".css": "text/css; charset=utf-8",
                 ".js": "text/javascript; charset=utf-8", ".svg": "image/svg+xml",
                 ".png": "image/png", ".ico": "image/x-icon", ".json": "application/json",
                 ".webmanifest": "application/manifest+json",
                 ".txt": "text/plain; charset=utf-8"}

check = Checks()


def get(port, path, method="GET", headers=None, conn=None):
    own = conn is None
    if own:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request(method, path, headers=headers or {})
    r = conn.getresponse()
    body = r.read()
    if own:
        conn.close()
    return r.status, {k.lower(): v for k, v in r.getheaders()}, body


def decode(enc, body):
    if enc is None:
        return body
    if enc == "gzip":
        return gzip.decompress(body)
    if enc == "br":
        return subprocess.run(["brotli", "-d", "-c"], input=body, stdout=subprocess.PIPE,
                              check=True).stdout
    raise AssertionError("unexpected Content-Encoding " + enc)


def www_files(www):
    if not os.path.isdir(www):
        return {}
    out = {}
    for name in sorted(os.listdir(www)):
        path = os.path.join(www, name)
        if os.path.isfile(path) and NAME_RE.match(name) and len(name) <= 128:
            with open(path, "rb") as f:
                out[name] = f.read()
    return out


def check_common(h, what, page):
    check(h.get("x-content-type-options") == "nosniff", what + ": nosniff")
    check(h.get("referrer-policy") == "no-referrer", what + ": Referrer-Policy")
    check(h.get("vary") == "Accept-Encoding", what + ": Vary")
    want_cc = "no-cache" if page else "public, max-age=3600"
    check(h.get("cache-control") == want_cc, "%s: Cache-Control %r" % (what, h.get("cache-control")))
    check(re.fullmatch(r'"[0-9a-f]{16}(-gz|-br)?"', h.get("etag", "")) is not None,
          what + ": strong ETag")


def check_file(port, path, name, data, page):
    ctype = CONTENT_TYPES.get(os.path.splitext(name)[1].lower(), "application/octet-stream")
    etags = set()
    for accept, allowed in ((None, {None}), ("gzip", {None, "gzip"}), ("br", {None, "br"}),
                            ("gzip, deflate, br", {None, "br", "gzip"})):
        hdrs = {"Accept-Encoding": accept} if accept else {}
        what = "%s [%s]" % (path, accept)
        status, h, body = get(port, path, headers=hdrs)
        check(status == 200, "%s: status %d" % (what, status))
        enc = h.get("content-encoding")
        check(enc in allowed, "%s: Content-Encoding %r" % (what, enc))
        check(int(h.get("content-length", -1)) == len(body), what + ": Content-Length")
        check(decode(enc, body) == data, what + ": decoded body equals " + name)
        check(h.get("content-type") == ctype, "%s: Content-Type %r" % (what, h.get("content-type")))
        if enc is not None:
            check(len(body) < len(data), what + ": compressed form smaller")
        csp = h.get("content-security-policy", "")
        if ctype.startswith("text/html"):
            check("default-src 'self'" in csp and "frame-ancestors 'none'" in csp, what + ": CSP")
        check_common(h, what, page)
        etags.add((enc, h.get("etag")))
    # One tag per form, and the forms' tags differ.
    check(len({e for _, e in etags}) == len({enc for enc, _ in etags}), path + ": ETag per form")
    return etags


def check_conditional(port, path):
    status, h, _ = get(port, path, headers={"Accept-Encoding": "br, gzip"})
    tag = h["etag"]
    for inm in (tag, "W/" + tag, '"nope", ' + tag, "*"):
        status, h2, body = get(port, path, headers={"Accept-Encoding": "br, gzip",
                                                    "If-None-Match": inm})
        check(status == 304, "%s If-None-Match %s: status %d" % (path, inm, status))
        check(body == b"" and "content-length" not in h2, path + ": 304 has no body")
        check(h2.get("etag") == tag, path + ": 304 carries the ETag")
    status, _, body = get(port, path, headers={"Accept-Encoding": "br, gzip",
                                               "If-None-Match": '"0000000000000000"'})
    check(status == 200 and len(body) > 0, path + ": other tag gives 200")
    # The tag of another form does not match this one.
    status, _, _ = get(port, path, headers={"Accept-Encoding": "identity", "If-None-Match": tag})
    check(status == (304 if not tag.endswith(('-br"', '-gz"')) else 200),
          path + ": ETag of another form gives 200")


def check_head(port, path, size_by_enc):
    # HEAD, then GET on the same connection: a body after the HEAD would
    # be read as the start of the next response and break it.
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    status, h, body = get(port, path, method="HEAD", headers={"Accept-Encoding": "gzip"},
                          conn=conn)
    check(status == 200 and body == b"", path + ": HEAD 200 without a body")
    enc = h.get("content-encoding")
    check(int(h.get("content-length", -1)) == size_by_enc[enc], path + ": HEAD Content-Length")
    status, h, body = get(port, path, headers={"Accept-Encoding": "gzip"}, conn=conn)
    check(status == 200 and len(body) == size_by_enc[enc], path + ": GET after HEAD")
    conn.close()


def raw(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1])


def check_errors(port, present):
    for path in ("/assets/..", "/assets/../CMakeLists.txt", "/assets/..%2fstatic.c",
                 "/assets/%2e%2e%2fstatic.c", "/assets/a%2Fb", "/assets/sub/x.css",
                 "/assets/.hidden", "/assets/", "/assets/no-such-file.css", "/j/" + "A" * 65,
                 "/j/ABCDEF/", "/index.html", "/assets/" + "a" * 129):
        status, h, body = get(port, path)
        check(status == 404, "%s: status %d, want 404" % (path, status))
        check(h.get("content-type") == "application/json" and b'"not_found"' in body,
              path + ": JSON error")
    # Dot segments sent as they are (a client that does not normalise).
    check(raw(port, b"GET /assets/../static.c HTTP/1.1\r\nHost: x\r\n\r\n") == 404,
          "raw ../: 404")
    check(raw(port, b"GET /assets/./app.css HTTP/1.1\r\nHost: x\r\n\r\n") == 404, "raw ./: 404")
    for path in ["/", "/j/ABCDEF", "/assets/icon.svg"] + ["/assets/" + n for n in present[:1]]:
        for method in ("POST", "PUT", "DELETE"):
            status, h, _ = get(port, path, method=method)
            check(status == 405, "%s %s: status %d, want 405" % (method, path, status))
            check(h.get("allow") == "GET, HEAD", "%s %s: Allow" % (method, path))


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: test_static.py TALLYD WWW_DIR")
    files = www_files(sys.argv[2])
    t = Tally(sys.argv[1])
    try:
        t.start()
        port = t.port
        for name, data in files.items():
            etags = check_file(port, "/assets/" + name, name, data, page=False)
            sizes = {enc: None for enc, _ in etags}
            for enc in sizes:
                hdrs = {"Accept-Encoding": enc or "identity"}
                sizes[enc] = len(get(port, "/assets/" + name, headers=hdrs)[2])
            check_head(port, "/assets/" + name, sizes)
        for path, name in PAGES.items():
            if name in files:
                check_file(port, path, name, files[name], page=True)
                check_conditional(port, path)
            else:
                status, _, _ = get(port, path)
                check(status == 404, "%s: %s not in www, status %d" % (path, name, status))
        for name in list(files)[:2]:
            check_conditional(port, "/assets/" + name)
        check_errors(port, list(files))
    finally:
        t.cleanup()
    print("%d files in %s; pages present: %s" % (len(files), sys.argv[2],
          ", ".join(p for p, n in PAGES.items() if n in files) or "none"))
    sys.exit(check.summary())


if __name__ == "__main__":
    main()
