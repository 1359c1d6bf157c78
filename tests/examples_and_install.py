#!/usr/bin/python3
"""qfetch examples suite: examples/*.c, the static build, the size budget, `make install` and the
man page, against tests/server.py (and a plain HTTP server in this process) on 127.0.0.1.

    examples_and_install.py --build DIR [--certs CERTDIR] [--filter SUBSTR] [--measure]

Uses DIR/examples/* (built here with `make examples` unless DIR is a sanitizer build, which must
be built beforehand) and the certificates in DIR/test/certs unless --certs says. Prints `ok name`,
`skip name: why` (the static build, size and install need a non-sanitizer build) or
`FAIL name: why`, and last `N passed, M failed, K skipped`; exit status 1 if any failed.
--measure runs no tests: it prints memprobe's figures for 1,000 idle TLS and plain keep-alive
connections and 100,000 queued requests (what bench/RESULTS.md publishes).
"""
import argparse
import http.server
import json
import os
import re
import select
import shutil
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import urllib.request
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from server import big_body, chart_body, price_for  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SERVER_PY = os.path.join(HERE, "server.py")
RUN_TIMEOUT_S = 60
MAKE_TIMEOUT_S = 600


class Cfg:
    build = certs = None
    sanitized = False


CFG = Cfg()
CLEANUP = []


class Fail(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def cents(x):
    return str(Decimal(float(x)).quantize(Decimal("0.01")))


def cert(name):
    return os.path.join(CFG.certs, name)


def exe(name):
    return os.path.join(CFG.build, "examples", name)


def run(cmd, env=None, stdin=None, timeout=RUN_TIMEOUT_S, cwd=ROOT):
    """(rc, stdout, stderr) as text; a hang is a failure, never a stuck suite."""
    try:
        p = subprocess.run(cmd, cwd=cwd, env=env, input=stdin, capture_output=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        raise Fail("%s did not finish within %d s" % (os.path.basename(cmd[0]), timeout))
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


def make(*targets, extra=()):
    cmd = ["make", "--no-print-directory", "-s", "BUILD=" + CFG.build] + list(extra) + \
        list(targets)
    rc, out, err = run(cmd, timeout=MAKE_TIMEOUT_S)
    check(rc == 0, "make %s failed (%d): %s" % (" ".join(targets), rc, (out + err)[-800:]))
    return out + err


# ---------------------------------------------------------------- servers

class TestServer:
    """tests/server.py on 127.0.0.1, stopped at exit or when our stdin pipe closes."""

    def __init__(self, *opts, plain=False):
        cmd = [PY, SERVER_PY, "--watch-stdin", "--port", "0"]
        cmd += ["--plain"] if plain else ["--cert", cert("server.pem"), "--key",
                                          cert("server.key")]
        self.errf = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd + list(opts), stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self.errf)
        CLEANUP.append(self.stop)
        self.port = None
        buf, deadline = b"", time.monotonic() + 10
        while self.port is None and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                m = re.search(rb"PORT (\d+)\n", buf)
                if m:
                    self.port = int(m.group(1))
        if self.port is None:
            self.stop()
            raise Fail("tests/server.py did not start")
        scheme = "http" if plain else "https"
        self.base = "%s://127.0.0.1:%d" % (scheme, self.port)
        self.template = self.base + "/v8/finance/chart/{}"

    def control(self, path):
        ctx = ssl.create_default_context(cafile=cert("ca.pem"))
        with urllib.request.urlopen(self.base + path, context=ctx, timeout=10) as r:
            return json.loads(r.read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


_SERVER = []


def server():
    """The shared TLS server; tests that read its counters reset them first."""
    if not _SERVER:
        _SERVER.append(TestServer())
    return _SERVER[0]


class PlainHandler(http.server.BaseHTTPRequestHandler):
    """HEAD done right (headers, no body) and a header echo, for get.c over plain HTTP."""
    protocol_version = "HTTP/1.1"
    BODY = b"plain body\n" * 1000

    def _head(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(self.BODY)))
        self.send_header("X-Echo", self.headers.get("X-Test", "-"))
        self.send_header("X-Method", self.command)
        self.end_headers()

    def do_HEAD(self):  # noqa: N802
        self._head()

    def do_GET(self):  # noqa: N802
        self._head()
        self.wfile.write(self.BODY)

    def log_message(self, *args):
        pass


def plain_server():
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), PlainHandler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    CLEANUP.append(srv.shutdown)
    return srv


def env(**kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("QF_")}
    e.update(kw)
    return e


def quote_env(srv=None):
    return env(QF_URL=(srv or server()).template, QF_CACERT=cert("ca.pem"))


def parse_prices(out):
    """{symbol: (price, currency)} and {symbol: error} from quote/poll_host output."""
    prices, errors = {}, {}
    for line in out.splitlines():
        m = re.match(r"^(\S+)\s+error: (.*)$", line)
        if m:
            errors[m.group(1)] = m.group(2)
            continue
        f = line.split()
        if len(f) == 3 and re.match(r"^-?\d+\.\d\d$", f[1]):
            prices[f[0]] = (f[1], f[2])
    return prices, errors


# ---------------------------------------------------------------- tests

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


@test
def examples_use_public_header_only():
    for name in ("quote.c", "poll_host.c", "get.c"):
        with open(os.path.join(ROOT, "examples", name)) as f:
            incs = re.findall(r'^\s*#\s*include\s*([<"][^>"]+[>"])', f.read(), re.M)
        bad = [i for i in incs if i.startswith('"') or "/" in i and not i.startswith("<sys/")]
        check(not bad, "%s includes %s" % (name, bad))
        check("<qfetch.h>" in incs, "%s does not include <qfetch.h>" % name)


@test
def quote_prices():
    syms = ["AAPL", "MSFT", "^GSPC", "EURUSD=X", "BRK-B", "DECOY_EX1", "CHUNKED_EX1"]
    rc, out, err = run([exe("quote")] + syms, env=quote_env())
    check(rc == 0, "exit %d, stderr %r" % (rc, err[-300:]))
    prices, errors = parse_prices(out)
    check(not errors, "errors: %s" % errors)
    for s in syms:
        check(s in prices, "no line for %s in %r" % (s, out))
        check(prices[s] == (cents(price_for(s)), "USD"), "%s: %s, want %s USD" %
              (s, prices[s], cents(price_for(s))))


@test
def quote_errors_and_keepalive():
    srv = server()
    srv.control("/_reset")
    syms = ["FB"] + ["KA%02d" % i for i in range(30)]
    rc, out, err = run([exe("quote")] + syms, env=quote_env())
    check(rc == 1, "exit %d with a 404 in the batch, want 1" % rc)
    prices, errors = parse_prices(out)
    check("HTTP 404" in errors.get("FB", ""), "FB: %r" % errors.get("FB"))
    check(len(prices) == 30, "%d prices of 30" % len(prices))
    st = srv.control("/_stats")
    check(st["connections"] <= 16, "%d connections for 31 tickers (default -c 16)" %
          st["connections"])
    check(st["requests_total"] == 31, "%d requests for 31 tickers" % st["requests_total"])


@test
def quote_usage_and_config_errors():
    rc, _, err = run([exe("quote")], env=quote_env())
    check(rc == 2 and "usage" in err, "no tickers: exit %d %r" % (rc, err))
    e = quote_env()
    e["QF_CACERT"] = cert("notpem.pem")
    rc, _, err = run([exe("quote"), "AAPL"], env=e)
    check(rc == 2 and "quote:" in err, "non-PEM QF_CACERT: exit %d %r" % (rc, err))
    rc, _, err = run([exe("quote"), "BAD SYM"], env=quote_env())
    check(rc == 2 and "invalid" in err, "invalid symbol: exit %d %r" % (rc, err))


class Lines:
    """A child's stdout read line by line with a deadline (select on the pipe)."""

    def __init__(self, proc):
        self.proc, self.buf, self.lines = proc, b"", []

    def next(self, timeout=10):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise Fail("no output line within %d s (got %r)" % (timeout, self.lines))
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    raise Fail("stdout closed; lines so far %r" % self.lines)
                self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        self.lines.append(line.decode())
        return self.lines[-1]


def poll_host(extra_env=None):
    e = quote_env()
    e.update(extra_env or {})
    errf = tempfile.TemporaryFile()
    p = subprocess.Popen([exe("poll_host")], env=e, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=errf)
    CLEANUP.append(lambda: p.poll() is None and p.kill())
    return p, errf


def send(p, text):
    p.stdin.write(text.encode())
    p.stdin.flush()


def finish(p, errf, timeout=20):
    p.stdin.close()
    try:
        p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        raise Fail("poll_host did not exit %d s after stdin closed" % timeout)
    rest = p.stdout.read().decode()
    errf.seek(0)
    return p.returncode, rest, errf.read().decode()


@test
def poll_host_interleaves_stdin_and_fetches():
    """Each line is answered while stdin stays open: the host loop runs both."""
    srv = server()
    p, errf = poll_host({"QF_TIMEOUT_MS": "400"})
    out = Lines(p)
    send(p, "PH_ONE\n")
    line = out.next()
    check(line == "PH_ONE %s USD" % cents(price_for("PH_ONE")), "first result %r" % line)
    url = "https://localhost:%d/v8/finance/chart/PH_URL" % srv.port
    send(p, "  %s  \n\n# a comment\n" % url)
    line = out.next()
    want = "%s 200 %d bytes" % (url, len(chart_body("PH_URL", repr(price_for("PH_URL")))))
    check(line == want, "URL result %r, want %r" % (line, want))
    send(p, "bad symbol\n")
    line = out.next()
    check(line.startswith("bad symbol error: "), "invalid line: %r" % line)
    # A server that never answers: only the client's deadline (its timerfd) ends the request.
    t0 = time.monotonic()
    send(p, "HANG_PH\n")
    send(p, "PH_TWO")  # no newline: EOF ends the line
    rc, rest, err = finish(p, errf)
    lines = out.lines + rest.splitlines()
    prices, errors = parse_prices("\n".join(lines))
    check(prices.get("PH_TWO") == (cents(price_for("PH_TWO")), "USD"), "PH_TWO: %r" % lines)
    check("timed out" in errors.get("HANG_PH", ""), "HANG_PH: %r" % errors.get("HANG_PH"))
    check(time.monotonic() - t0 < 15, "timeouts took %.1f s" % (time.monotonic() - t0))
    check(rc == 1, "exit %d with failures, want 1" % rc)
    m = re.search(r"poll_host: (\d+) requests, (\d+) failed, (\d+) wakeups, (\d+) steps", err)
    check(m and m.group(1) == "4" and m.group(2) == "2", "summary %r" % err)


@test
def poll_host_batch_from_pipe():
    srv = server()
    srv.control("/_reset")
    syms = ["PB%03d" % i for i in range(200)]
    p, errf = poll_host()
    send(p, "\n".join(syms) + "\n")
    rc, rest, err = finish(p, errf, timeout=60)
    prices, errors = parse_prices(rest)
    check(rc == 0 and not errors, "exit %d, errors %s, stderr %r" % (rc, list(errors)[:3], err))
    bad = [s for s in syms if prices.get(s) != (cents(price_for(s)), "USD")]
    check(not bad, "%d wrong or missing, e.g. %s" % (len(bad), bad[:3]))
    st = srv.control("/_stats")
    check(st["connections"] <= 16, "%d connections for 200 tickers" % st["connections"])


def get_blocks(out):
    """{url: {"status": n, "headers": {lower: value}, "body": n, "chunks": n|None, "error": s}}"""
    res, cur = {}, None
    for line in out.splitlines():
        if not line.startswith("  "):
            cur = res.setdefault(line, {"headers": {}})
            continue
        line = line[2:]
        m = re.match(r"^status (\d+) \(", line)
        if m:
            cur["status"] = int(m.group(1))
            continue
        m = re.match(r"^body (\d+) bytes(?:, streamed in (\d+) chunks)?$", line)
        if m:
            cur["body"] = int(m.group(1))
            cur["chunks"] = int(m.group(2)) if m.group(2) else None
            continue
        if line.startswith("error: "):
            cur["error"] = line[7:]
            continue
        k, _, v = line.partition(": ")
        cur["headers"][k.lower()] = v
    return res


@test
def get_buffered_concurrent():
    srv = server()
    urls = ["%s/v8/finance/chart/GET%d" % (srv.base, i) for i in range(5)]
    urls.append("https://localhost:%d/v8/finance/chart/FB" % srv.port)
    rc, out, err = run([exe("get")] + urls, env=env(QF_CACERT=cert("ca.pem")))
    check(rc == 1, "exit %d with a 404 among them, want 1 (%r)" % (rc, err))
    res = get_blocks(out)
    for i, u in enumerate(urls[:5]):
        r = res.get(u)
        n = len(chart_body("GET%d" % i, repr(price_for("GET%d" % i))))
        check(r and r.get("status") == 200 and r.get("body") == n, "%s: %r" % (u, r))
        check(r["headers"].get("content-type", "").startswith("application/json"),
              "%s: headers %r" % (u, r["headers"]))
        check(r["headers"].get("content-length") == str(n), "%s: Content-Length" % u)
    check(res.get(urls[5], {}).get("status") == 404, "FB: %r" % res.get(urls[5]))


@test
def get_streamed_equals_buffered():
    srv = server()
    url = srv.base + "/v8/finance/chart/BIG_GET"
    d = tempfile.mkdtemp()
    CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    e = env(QF_CACERT=cert("ca.pem"))
    rc1, out1, err1 = run([exe("get"), "-o", os.path.join(d, "buffered"), url], env=e)
    rc2, out2, err2 = run([exe("get"), "-s", "-p", "*", "-o", os.path.join(d, "streamed"), url],
                          env=e)
    check(rc1 == 0 and rc2 == 0, "exit %d/%d: %r %r" % (rc1, rc2, err1, err2))
    want = big_body("BIG_GET")
    for name in ("buffered", "streamed"):
        with open(os.path.join(d, name), "rb") as f:
            check(f.read() == want, "%s body differs from the server's" % name)
    s = get_blocks(out2)[url]
    check(s["body"] == len(want) and s["chunks"] and s["chunks"] > 1,
          "streamed report %r" % s)
    check(s["headers"].get("transfer-encoding") == "chunked", "-p '*' headers %r" % s["headers"])
    check(get_blocks(out1)[url]["chunks"] is None, "buffered report says streamed")
    # -o - writes the body to stdout and the report to stderr.
    rc, out, err = run([exe("get"), "-o", "-", srv.base + "/v8/finance/chart/GETSTDOUT"], env=e)
    check(rc == 0 and out.encode() == chart_body("GETSTDOUT", repr(price_for("GETSTDOUT"))),
          "-o -: exit %d, %d bytes on stdout" % (rc, len(out)))
    check("status 200" in err, "-o -: report %r" % err)


@test
def get_abort_from_on_chunk():
    srv = server()
    url = srv.base + "/v8/finance/chart/BIG_ABORT"
    rc, out, err = run([exe("get"), "-s", "-m", "50000", url], env=env(QF_CACERT=cert("ca.pem")))
    r = get_blocks(out).get(url, {})
    check(rc == 1 and "aborted" in r.get("error", ""), "exit %d, %r" % (rc, r))


@test
def get_head_and_headers_over_plain_http():
    srv = plain_server()
    url = "http://127.0.0.1:%d/file" % srv.server_address[1]
    rc, out, err = run([exe("get"), "-I", "-H", "X-Test: hello", "-p", "X-Echo", "-p",
                        "x-method", "-p", "Content-Length", url], env=env())
    r = get_blocks(out).get(url, {})
    check(rc == 0 and r.get("status") == 200, "HEAD: exit %d %r %r" % (rc, r, err))
    check(r.get("body") == 0, "HEAD body %r" % r.get("body"))
    check(r["headers"] == {"x-echo": "hello", "x-method": "HEAD",
                           "content-length": str(len(PlainHandler.BODY))},
          "HEAD headers %r" % r["headers"])
    rc, out, err = run([exe("get"), "-s", url, url], env=env())
    r = get_blocks(out).get(url, {})
    check(rc == 0 and r.get("body") == len(PlainHandler.BODY), "GET: exit %d %r" % (rc, r))
    rc, out, err = run([exe("get"), "ftp://127.0.0.1/x"], env=env())
    check(rc == 2 and "invalid" in err, "ftp URL: exit %d %r" % (rc, err))


def is_dynamic(path):
    rc, out, err = run(["ldd", path])
    return "not a dynamic executable" not in out + err


@test
def static_binary():
    if CFG.sanitized:
        raise Skip("sanitizer build")
    make("static")
    path = os.path.join(CFG.build, "qfetch-static")
    check(os.path.isfile(path), "no %s" % path)
    check(not is_dynamic(path), "ldd lists shared libraries for %s" % path)
    rc, out, _ = run(["readelf", "-lW", path])
    check(rc == 0 and "INTERP" not in out and "DYNAMIC" not in out,
          "program headers ask for a loader or dynamic section")
    rc, out, _ = run(["file", path])
    check("stripped" in out and "not stripped" not in out, "not stripped: %r" % out)
    srv = server()
    for host in ("127.0.0.1", "localhost"):  # localhost goes through glibc's NSS
        tmpl = "https://%s:%d/v8/finance/chart/{}" % (host, srv.port)
        rc, out, err = run(["env", "-i", path, "-u", tmpl, "--cacert", cert("ca.pem"),
                            "--no-session-cache", "-f", "json", "-t", "ST_A", "ST_B"])
        check(rc == 0, "%s: exit %d %r" % (host, rc, err[-300:]))
        got = {r["ticker"]: "%.2f" % r["price"] for r in json.loads(out)}
        check(got == {s: cents(price_for(s)) for s in ("ST_A", "ST_B")}, "%s: %r" % (host, got))


@test
def cli_links_openssl_statically():
    """The qfetch command carries OpenSSL's archives (glibc stays shared) and says which
    OpenSSL it is, matching the openssl command of the same packages."""
    path = os.path.join(CFG.build, "qfetch")
    rc, out, err = run(["ldd", path])
    check(rc == 0 and "libc.so" in out, "ldd: %d %r" % (rc, out + err))
    check("libssl" not in out and "libcrypto" not in out, "shared OpenSSL linked: %r" % out)
    rc, out, err = run([path, "--version"])
    m = re.match(r"qfetch (\d+\.\d+\.\d+), (OpenSSL \d+\.\d+\.\d+[^\n]*)\n$", out)
    check(rc == 0 and m is not None and err == "", "--version: %d %r %r" % (rc, out, err))
    rc, sysver, _ = run(["openssl", "version"])
    check(m.group(2) in sysver, "--version says %r, openssl says %r" % (m.group(2), sysver))
    return m.group(0).strip()


@test
def size_budget():
    if CFG.sanitized:
        raise Skip("sanitizer build")
    out = make("size")
    for key in ("qfetch-static", "engine text", "llhttp text"):
        check(key in out, "make size output lacks %r: %r" % (key, out))
    return out.strip().splitlines()[-1]


@test
def install_and_pkg_config():
    if CFG.sanitized:
        raise Skip("sanitizer build")
    d = tempfile.mkdtemp(prefix="qf-prefix-")
    CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    make("install", extra=["PREFIX=" + d])
    for f in ("bin/qfetch", "include/qfetch.h", "lib/libqfetch.a", "lib/pkgconfig/qfetch.pc",
              "share/man/man1/qfetch.1"):
        check(os.path.isfile(os.path.join(d, f)), "%s not installed" % f)
    e = env(PKG_CONFIG_PATH=os.path.join(d, "lib", "pkgconfig"))
    srv = server()
    for static in (["--static"], []):
        rc, flags, err = run(["pkg-config", "--cflags", "--libs"] + static + ["qfetch"], env=e)
        check(rc == 0 and "-lqfetch" in flags, "pkg-config %s: %r %r" % (static, flags, err))
        prog = os.path.join(d, "quote")
        # The installed header, not the tree's: no -Iinclude here.
        rc, out, err = run(["cc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-o", prog,
                            os.path.join(ROOT, "examples", "quote.c")] + flags.split(), env=e)
        check(rc == 0, "cc with `pkg-config %s qfetch` failed: %s" % (static, err[-500:]))
        rc, out, err = run([prog, "PKG_A"], env=quote_env(srv))
        check(rc == 0 and parse_prices(out)[0].get("PKG_A") == (cents(price_for("PKG_A")), "USD"),
              "installed quote: exit %d %r %r" % (rc, out, err))
    rc, out, err = run([os.path.join(d, "bin", "qfetch"), "--help"])
    check(rc == 0 and "usage" in out, "installed qfetch --help: %d" % rc)
    rc, out, err = run(["man", "-l", os.path.join(d, "share/man/man1/qfetch.1")],
                       env=env(MANPAGER="cat", MANWIDTH="80", PAGER="cat"))
    check(rc == 0 and "SYNOPSIS" in out, "man -l: exit %d %r" % (rc, err[-300:]))
    make("uninstall", extra=["PREFIX=" + d])
    left = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs if f != "quote"]
    check(not left, "left after uninstall: %s" % left)


@test
def man_page_documents_every_option():
    page = os.path.join(ROOT, "docs", "qfetch.1")
    rc, out, err = run(["groff", "-man", "-Tutf8", "-ww", "-z", page])
    check(rc == 0 and not err.strip(), "groff warnings: %r" % err[-500:])
    with open(page) as f:
        text = f.read().replace("\\-", "-")
    rc, helptext, _ = run([os.path.join(CFG.build, "qfetch"), "--help"])
    opts = sorted(set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-[a-zA-Z])\b", helptext)))
    check(len(opts) >= 10, "found only %s in --help" % opts)
    missing = [o for o in opts if not re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(o), text)]
    check(not missing, "docs/qfetch.1 lacks %s" % missing)


@test
def memprobe_runs():
    rc, out, err = run([exe("memprobe"), "conns", "20"], env=quote_env())
    m = re.search(r"per_conn_rss_bytes=(-?\d+) per_conn_trimmed_rss_bytes=(-?\d+) "
                  r"per_conn_heap_bytes=(\d+)", out)
    check(rc == 0 and m, "memprobe conns: exit %d %r %r" % (rc, out, err))
    rc2, out2, err2 = run([exe("memprobe"), "queue", "20000"], env=quote_env())
    m2 = re.search(r"per_request_heap_bytes=(\d+)", out2)
    check(rc2 == 0 and m2, "memprobe queue: exit %d %r %r" % (rc2, out2, err2))
    rc3, out3, err3 = run([exe("memprobe"), "run", os.path.join(CFG.build, "qfetch"), "--help"])
    check(rc3 == 0 and re.search(r"peak_rss_kib=[1-9]\d* exit=0", out3),
          "memprobe run: %r %r" % (out3, err3))
    if CFG.sanitized:
        return "figures not checked: the sanitizer's allocator hides the heap"
    check(int(m.group(3)) > 16384, "heap per connection %s is below its read buffer" %
          m.group(3))
    # A queued quote is its packed symbol, "QUEUED0000000\0": 14 bytes, up to twice that while
    # the buffer doubles. A record per queued quote (104 bytes and more) would fail this.
    check(14 <= int(m2.group(1)) <= 28, "heap per queued request: %s" % m2.group(1))


# ---------------------------------------------------------------- driver

def cli_peak_rss_kib(args):
    """The CLI's VmHWM, measured by memprobe: a child forked from this interpreter would count
    the interpreter's pages too."""
    rc, out, err = run([exe("memprobe"), "run", os.path.join(CFG.build, "qfetch")] + args,
                       timeout=300)
    m = re.search(r"peak_rss_kib=(\d+) exit=0", out)
    if not m:
        raise Fail("qfetch %s: %r %r" % (" ".join(args[:6]), out, err[-300:]))
    return int(m.group(1))


def measure():
    tls = server()
    plain = TestServer(plain=True)
    runs = [("TLS", ["conns", "1000"], quote_env(tls)),
            ("plain HTTP", ["conns", "1000"], env(QF_URL=plain.template)),
            ("queue", ["queue", "100000"], quote_env(tls))]
    for label, args, e in runs:
        rc, out, err = run([exe("memprobe")] + args, env=e, timeout=300)
        print("== %s: memprobe %s" % (label, " ".join(args)))
        sys.stdout.write(out + err)
        if rc != 0:
            return 1
    # The same from outside: the CLI's peak RSS for 1,000 tickers over 1 vs 1,000 connections.
    syms = ["CLIMEM%04d" % i for i in range(1000)]
    base = ["-u", tls.template, "--cacert", cert("ca.pem"), "--connect-timeout", "60",
            "--timeout", "60", "--no-session-cache", "-t"] + syms
    peak = {}
    for c in (1, 1000):
        peak[c] = cli_peak_rss_kib(["-c", str(c)] + base)
    print("== qfetch CLI, 1000 tickers over TLS: VmHWM -c 1 %d KiB, -c 1000 %d KiB: "
          "%d bytes per extra connection" % (peak[1], peak[1000],
                                             (peak[1000] - peak[1]) * 1024 // 999))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--certs")
    ap.add_argument("--filter", default="")
    ap.add_argument("--measure", action="store_true")
    args = ap.parse_args()
    CFG.build = os.path.abspath(args.build)
    CFG.certs = os.path.abspath(args.certs or os.path.join(CFG.build, "test", "certs"))
    qf = os.path.join(CFG.build, "qfetch")
    if os.path.isfile(qf):
        with open(qf, "rb") as f:
            data = f.read()
        CFG.sanitized = b"__asan_init" in data or b"__ubsan_handle" in data
    passed = failed = skipped = 0
    try:
        if not CFG.sanitized:
            make("examples")
        missing = [n for n in ("quote", "poll_host", "get", "memprobe")
                   if not os.access(exe(n), os.X_OK)]
        check(not missing, "not built: %s (make examples BUILD=%s)" % (missing, args.build))
        if args.measure:
            return measure()
    except Fail as e:
        print("FAIL build: %s" % e, flush=True)
        print("0 passed, 1 failed")
        return 1
    for t in TESTS:
        if args.filter not in t.__name__:
            continue
        try:
            note = t()
            print("ok %s%s" % (t.__name__, " (%s)" % note if note else ""), flush=True)
            passed += 1
        except Skip as e:
            print("skip %s: %s" % (t.__name__, e), flush=True)
            skipped += 1
        except Fail as e:
            print("FAIL %s: %s" % (t.__name__, e), flush=True)
            failed += 1
        except Exception:  # a bug in the test itself still counts, and the suite goes on
            print("FAIL %s: %s" % (t.__name__, traceback.format_exc().strip()[-800:]),
                  flush=True)
            failed += 1
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        rc = main()
    finally:
        for fn in reversed(CLEANUP):
            try:
                fn()
            except Exception:
                pass
    sys.exit(rc)
