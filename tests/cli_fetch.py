#!/usr/bin/python3
"""qfetch integration tests: the built CLI against tests/server.py, nginx and stalled sockets.

    cli_fetch.py --build DIR [--certs CERTDIR] [--valgrind] [--filter SUBSTR] [--list]

Uses DIR/qfetch and the certificates in DIR/test/certs (`make certs`) unless --certs says.
Every test runs qfetch in a subprocess with a hard timeout and prints `ok <name>` or
`FAIL <name>: <why>` followed by the tail of qfetch's stderr, or `skip <name>: <why>` when what
it needs is absent (the Yahoo captures). The last line is `N passed, M failed, K skipped`;
exit status 1 if any failed.
Servers listen on 127.0.0.1 only and are stopped at exit, also when a test fails.
Real Yahoo captures are read in place from /work/shared/fixtures/yahoo (or $QF_FIXTURES).
"""
import argparse
import csv
import io
import json
import os
import pprint
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from server import big_body, chart_body, currency_for, price_for  # noqa: E402

PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
SERVER_PY = os.path.join(HERE, "server.py")
SEED = os.environ.get("QF_SEED", os.path.join(HERE, "..", "..", "shared", "seed", "async_http.py"))
DEFAULT_FIXTURES = os.path.join(HERE, "..", "..", "shared", "fixtures", "yahoo")
STATS_RE = re.compile(r"^qfetch: stats: conns_opened=(\d+) conns_unused=(\d+) requests_sent=(\d+) "
                      r"reused=(\d+) tls_full=(\d+) tls_resumed=(\d+) retries=(\d+) "
                      r"stale_resends=(\d+) bytes_read=(\d+) early_data=(\d+) "
                      r"rate_limited=(\d+) host_pauses=(\d+) h2_conns=(\d+) h2_streams=(\d+) "
                      r"h2_streams_max=(\d+) wall_ms=(\d+(?:\.\d+)?)$", re.M)
STATS_KEYS = ["conns_opened", "conns_unused", "requests_sent", "reused", "tls_full", "tls_resumed",
              "retries", "stale_resends", "bytes_read", "early_data", "rate_limited",
              "host_pauses", "h2_conns", "h2_streams", "h2_streams_max", "wall_ms"]
CENT = Decimal("0.01")
PROXY_VARS = ("https_proxy", "http_proxy", "all_proxy", "no_proxy")


class Cfg:
    build = qfetch = certs = fixtures = None
    valgrind = False
    tag = "%04d" % (os.getpid() % 10000)


CFG = Cfg()
LAST_RUNS = []      # qfetch runs of the current test, for failure reports
CLEANUP = []        # callables run at exit
NOTES = []          # remarks of the current test, printed after `ok name`


class Fail(Exception):
    pass


class Skip(Exception):
    """Raised by a test whose subject is absent from this machine; counted apart."""


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def settled(read, enough, timeout=5.0):
    """read() once enough(its result) holds, or its result at the timeout. For servers' logs:
    nginx and Apache write a request's line after its response has gone, so a client can be
    done, and exited, before the line is there."""
    deadline = time.monotonic() + timeout
    while True:
        got = read()
        if enough(got) or time.monotonic() > deadline:
            return got
        time.sleep(0.05)


def note(msg):
    NOTES.append(msg)


_seq = [0]


def uniq(prefix="Q"):
    """A ticker name no other test uses (and that matches no special prefix by itself)."""
    _seq[0] += 1
    return "%s%sN%d" % (prefix, CFG.tag, _seq[0])


def cents(x):
    """What the seed prints: Decimal of the binary float, quantized half-even to cents."""
    return str(Decimal(float(x)).quantize(CENT))


def cert(name):
    return os.path.join(CFG.certs, name)


# ---------------------------------------------------------------- servers

def wait_port_line(proc, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        m = re.search(rb"PORT (\d+)\n", buf)
        if m:
            return int(m.group(1))
    return None


class TestServer:
    """tests/server.py in a subprocess; stops when asked, at exit, or when our stdin pipe dies."""

    def __init__(self, *opts, certname="server", plain=False):
        self.plain = plain
        self.errf = tempfile.TemporaryFile()
        cmd = [PY, SERVER_PY, "--watch-stdin", "--port", "0"]
        if plain:
            cmd.append("--plain")
        else:
            cmd += ["--cert", cert(certname + ".pem"), "--key", cert(certname + ".key")]
        cmd += list(opts)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf)
        CLEANUP.append(self.stop)
        self.port = wait_port_line(self.proc, 10)
        if self.port is None:
            self.stop()
            self.errf.seek(0)
            raise Fail("server %s did not start: %s" % (opts, self.errf.read()[-500:]))
        self.url = "https://localhost:%d/v8/finance/chart/{}" % self.port

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (self.proc.stdin, self.proc.stdout):
            try:
                f.close()
            except OSError:
                pass

    def get(self, path):
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        if not self.plain:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            s = ctx.wrap_socket(s, server_hostname="localhost")
        try:
            s.sendall(("GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
                       % path).encode())
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    chunk = s.recv(65536)
                except (ssl.SSLError, OSError):
                    break
                if not chunk:
                    break
                data += chunk
        finally:
            s.close()
        head, _, body = data.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 200"), "server %s: %r" % (path, head[:80]))
        return json.loads(body)

    def stats(self):
        return self.get("/_stats")


_SERVERS = {}


def server(key="main"):
    """Shared servers, started on first use."""
    if key not in _SERVERS:
        if key == "main":
            opts = []
            if CFG.fixtures:
                opts = ["--fixtures", CFG.fixtures]
            _SERVERS[key] = TestServer(*opts)
        else:  # one per bad certificate
            _SERVERS[key] = TestServer(certname=key)
    return _SERVERS[key]


class fresh_server:
    """A private server for tests that count connections: with fresh_server(...) as srv."""

    def __init__(self, *opts, **kw):
        self.srv = TestServer(*opts, **kw)

    def __enter__(self):
        return self.srv

    def __exit__(self, *exc):
        self.srv.stop()


def stats_delta(before, after, key):
    return after[key] - before[key]


# ---------------------------------------------------------------- running qfetch

class Run:
    def __init__(self, cmd, rc, out, err, elapsed):
        self.cmd, self.rc, self.out, self.err, self.elapsed = cmd, rc, out, err, elapsed
        self._items = None

    def items(self):
        if self._items is None:
            try:
                # parse_float=str keeps the printed price text ("190.00") for exact comparison.
                self._items = json.loads(self.out, parse_float=str)
            except ValueError as e:
                raise Fail("stdout is not JSON (%s): %r" % (e, self.out[:300]))
            check(isinstance(self._items, list), "JSON output is not an array")
        return self._items

    def by_ticker(self):
        return {it.get("ticker"): it for it in self.items()}

    def stats(self):
        m = list(STATS_RE.finditer(self.err))
        check(len(m) == 1, "expected exactly one `qfetch: stats:` line on stderr, found %d"
              % len(m))
        vals = m[0].groups()
        return {k: (float(v) if k == "wall_ms" else int(v)) for k, v in zip(STATS_KEYS, vals)}


def run_raw(args, stdin=None, timeout=30, prefix=(), env=None):
    cmd = list(prefix) + [CFG.qfetch] + list(args)
    t0 = time.monotonic()
    try:
        p = subprocess.run(cmd, input=stdin.encode() if stdin is not None else None,
                           stdin=None if stdin is not None else subprocess.DEVNULL,
                           capture_output=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as e:
        r = Run(cmd, None, (e.stdout or b"").decode(errors="replace"),
                (e.stderr or b"").decode(errors="replace"), time.monotonic() - t0)
        LAST_RUNS.append(r)
        raise Fail("qfetch did not finish within %ds" % timeout)
    r = Run(cmd, p.returncode, p.stdout.decode(errors="replace"),
            p.stderr.decode(errors="replace"), time.monotonic() - t0)
    r.out_bytes, r.err_bytes = p.stdout, p.stderr
    LAST_RUNS.append(r)
    check(r.rc is not None and r.rc >= 0, "qfetch killed by signal %s" % (-r.rc if r.rc else "?"))
    check(r.rc in (0, 1, 2), "qfetch exited with %d" % r.rc)
    return r


def qf(tickers, *opts, srv=None, fmt="json", stats=True, url=True, cacert=True, stdin=None,
       timeout=30):
    """Runs qfetch against srv (default: the shared main server); tickers go last."""
    srv = srv or server()
    args = []
    if url:
        args += ["-u", srv.url if url is True else url]
    if cacert:
        args += ["--cacert", cert("ca.pem") if cacert is True else cacert]
    if fmt:
        args += ["-f", fmt]
    if stats:
        args.append("--stats")
    args += list(opts)
    args += ["-t"] + (list(tickers) if stdin is None else ["-"])
    return run_raw(args, stdin=stdin, timeout=timeout)


def expect_rc(r, rc):
    check(r.rc == rc, "exit status %s, expected %d" % (r.rc, rc))


def expect_order(r, tickers):
    got = [it.get("ticker") for it in r.items()]
    check(got == list(tickers), "tickers/order differ: got %s, expected %s"
          % (got[:12], list(tickers)[:12]))


def expect_ok(r, sym, price=None, currency=None):
    it = r.by_ticker().get(sym)
    check(it is not None, "%s missing from output" % sym)
    check("error" not in it, "%s failed: %r" % (sym, it))
    want = cents(price_for(sym) if price is None else price)
    check(it.get("price") == want, "%s: price %r, expected %s" % (sym, it.get("price"), want))
    want_cur = currency or currency_for(sym)
    check(it.get("currency") == want_cur, "%s: currency %r, expected %r"
          % (sym, it.get("currency"), want_cur))


def expect_err(r, sym, *words, status=None):
    it = r.by_ticker().get(sym)
    check(it is not None, "%s missing from output" % sym)
    check("price" not in it and isinstance(it.get("error"), str) and it["error"],
          "%s should have failed: %r" % (sym, it))
    low = it["error"].lower()
    for w in words:
        check(w.lower() in low, "%s: error %r lacks %r" % (sym, it["error"], w))
    if status is not None:
        check(it.get("status") == status, "%s: status %r, expected %r"
              % (sym, it.get("status"), status))
    return it


def expect_all_ok(r, tickers):
    for t in tickers:
        expect_ok(r, t)


def server_count(st, sym):
    return st["requests_per_symbol"].get(sym, 0)


# ---------------------------------------------------------------- registry

TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def valgrind_test(fn):
    fn.valgrind_only = True
    TESTS.append(fn)
    return fn


# ---------------------------------------------------------------- usage errors

def usage_case(args, stdin=None):
    r = run_raw(args, stdin=stdin, timeout=15)
    expect_rc(r, 2)
    lines = [ln for ln in r.err.splitlines() if ln.strip()]
    check(len(lines) == 1, "expected one line on stderr, got %d: %r" % (len(lines), r.err[:300]))
    check(r.out == "", "usage error printed on stdout: %r" % r.out[:200])


@test
def usage_unknown_flag():
    usage_case(["--bogus-flag", "-t", "AAPL"])


@test
def usage_c_zero():
    usage_case(["-u", server().url, "--cacert", cert("ca.pem"), "-c", "0", "-t", "AAPL"])


@test
def usage_cacert_unreadable():
    usage_case(["-u", server().url, "--cacert", cert("does-not-exist.pem"), "-t", "AAPL"])


@test
def usage_cacert_notpem():
    usage_case(["-u", server().url, "--cacert", cert("notpem.pem"), "-t", "AAPL"])


@test
def output_write_error_is_exit_2():
    """stdout is closed (and checked) once the prices are out, before any wait for session
    tickets: a full disk is an error that says so, a reader that left early (| head) is not."""
    with open("/dev/full", "wb") as full:
        p = subprocess.run([CFG.qfetch, "-u", server().url, "--cacert", cert("ca.pem"), "-t",
                            "AAPL", "MSFT"], stdin=subprocess.DEVNULL, stdout=full,
                           stderr=subprocess.PIPE, timeout=30)
    err = p.stderr.decode(errors="replace")
    check(p.returncode == 2, "exit %d on a full disk, want 2: %r" % (p.returncode, err[:300]))
    check("cannot write the output: No space left on device" in err, "stderr: %r" % err[:300])
    r, w = os.pipe()
    os.close(r)
    try:
        p = subprocess.run([CFG.qfetch, "-u", server().url, "--cacert", cert("ca.pem"), "-t",
                            "AAPL", "MSFT"], stdin=subprocess.DEVNULL, stdout=w,
                           stderr=subprocess.PIPE, timeout=30)
    finally:
        os.close(w)
    err = p.stderr.decode(errors="replace")
    check(p.returncode == 0 and "cannot write" not in err,
          "exit %d with the reader gone: %r" % (p.returncode, err[:300]))


@test
def usage_template_without_braces():
    usage_case(["-u", "https://localhost:%d/v8/finance/chart/AAPL" % server().port,
                "--cacert", cert("ca.pem"), "-t", "AAPL"])


@test
def usage_no_tickers():
    usage_case(["-u", server().url, "--cacert", cert("ca.pem")])


@test
def usage_empty_stdin():
    usage_case(["-u", server().url, "--cacert", cert("ca.pem"), "-t", "-"], stdin=" \n\t\n")


@test
def usage_bad_format():
    usage_case(["-u", server().url, "--cacert", cert("ca.pem"), "-f", "xml", "-t", "AAPL"])


# ---------------------------------------------------------------- basic batches and formats

@test
def normal_batch():
    tickers = [uniq() for _ in range(10)] + [uniq() + ".DE", uniq() + ".L"]
    before = server().stats()
    r = qf(tickers)
    expect_rc(r, 0)
    expect_order(r, tickers)
    expect_all_ok(r, tickers)
    after = server().stats()
    for t in tickers:
        check(server_count(after, t) == 1, "server saw %s %d times" % (t, server_count(after, t)))
    st = r.stats()
    check(st["requests_sent"] == len(tickers), "requests_sent=%d" % st["requests_sent"])
    check(st["conns_opened"] >= 1 and st["tls_full"] >= 1, "no connection/handshake counted")
    check(st["tls_full"] + st["tls_resumed"] + st["conns_unused"] == st["conns_opened"],
          "tls_full+tls_resumed+conns_unused != conns_opened: %s" % st)
    # The answers come gzipped (about 1 KB each): bytes_read counts them as they came.
    sent = stats_delta(before, after, "bytes_sent")
    check(st["bytes_read"] >= sent > 12 * 500, "bytes_read=%d, server sent %d plaintext bytes"
          % (st["bytes_read"], sent))
    check(stats_delta(before, after, "requests_total") == len(tickers),
          "server saw %d requests" % stats_delta(before, after, "requests_total"))


@test
def json_shape():
    good, bad = uniq(), "FB"
    r = qf([good, bad, "PRICE_190", "PRICE_1.8984e2"])
    expect_rc(r, 1)
    raw_prices = re.findall(r'"price"\s*:\s*([^,}\s]+)', r.out)
    check(len(raw_prices) == 3, "expected 3 price fields in %r" % r.out[:400])
    for p in raw_prices:
        check(re.fullmatch(r"-?\d+\.\d\d", p), "price %r not printed with two decimals" % p)
    items = r.items()
    check(set(items[0]) >= {"ticker", "price", "currency"}, "success item keys %s" % items[0])
    check(set(items[1]) >= {"ticker", "error", "status"}, "error item keys %s" % items[1])
    check(isinstance(items[1]["status"], int), "status not a number: %r" % items[1]["status"])
    expect_ok(r, "PRICE_190", "190")
    expect_ok(r, "PRICE_1.8984e2", "189.84")
    expect_err(r, "FB", "HTTP 404", "No data found, symbol may be delisted", status=404)


@test
def csv_shape():
    a, b = uniq(), uniq() + ".DE"
    tickers = [a, "FB", b]
    r = qf(tickers, fmt="csv")
    expect_rc(r, 1)
    lines = r.out.splitlines()
    check(lines and lines[0] == "ticker,price,currency,status,error", "header %r" % lines[:1])
    rows = list(csv.reader(io.StringIO(r.out)))
    check(len(rows) == 4, "expected 4 CSV records, got %d" % len(rows))
    check(all(len(row) == 5 for row in rows), "rows without 5 fields: %s" % rows)
    check([row[0] for row in rows[1:]] == tickers, "order %s" % [row[0] for row in rows[1:]])
    for row, sym in ((rows[1], a), (rows[3], b)):
        check(row[1] == cents(price_for(sym)), "%s price %r" % (sym, row[1]))
        check(row[2] == currency_for(sym), "%s currency %r" % (sym, row[2]))
        check(row[3] in ("200", ""), "%s status %r" % (sym, row[3]))
        check(row[4] == "", "%s error %r" % (sym, row[4]))
    fb = rows[2]
    check(fb[1] == "" and fb[3] == "404", "FB row %s" % fb)
    check("No data found, symbol may be delisted" in fb[4], "FB error %r" % fb[4])
    # The description holds a comma, so RFC 4180 needs quotes around the field.
    check(re.search(r'^FB,.*"[^"]*No data found, symbol may be delisted[^"]*"', r.out, re.M),
          "FB error field not quoted: %r" % [ln for ln in lines if ln.startswith("FB")])


@test
def table_shape():
    tickers = [uniq(), "FB", uniq(), "PRICE_2.675"]
    r = qf(tickers, fmt="table")
    expect_rc(r, 1)
    lines = [ln for ln in r.out.splitlines() if ln.strip()]
    pos = []
    for t in tickers:
        hits = [i for i, ln in enumerate(lines) if re.search(r"(^|\s)%s(\s|$)" % re.escape(t), ln)]
        check(len(hits) == 1, "%s appears on %d lines of %r" % (t, len(hits), r.out[:400]))
        pos.append(hits[0])
        ln = lines[hits[0]]
        if t == "FB":
            check("error" in ln.lower(), "FB line lacks `error`: %r" % ln)
        else:
            want = cents(price_for(t)) if t != "PRICE_2.675" else "2.67"
            check(want in ln, "%s line lacks %s: %r" % (t, want, ln))
    check(pos == sorted(pos), "table rows out of input order")
    check(len(lines) <= len(tickers) + 2, "too many lines in table: %d" % len(lines))


def pprint_text(pairs):
    return pprint.pformat([(t, Decimal(float(p)).quantize(CENT)) for t, p in pairs]) + "\n"


@test
def python_format_wraps():
    tickers = ["VT" + uniq() for _ in range(9)]
    r = qf(tickers, fmt="python")
    expect_rc(r, 0)
    want = pprint_text([(t, price_for(t)) for t in tickers])
    check("\n" in want.rstrip("\n"), "test bug: 9 tickers should wrap")
    check(r.out == want, "python output differs:\n%s\nexpected:\n%s" % (r.out, want))


@test
def python_format_single():
    t = uniq()
    r = qf([t], fmt="python")
    expect_rc(r, 0)
    want = pprint_text([(t, price_for(t))])
    check(r.out == want, "python output %r, expected %r" % (r.out, want))


@test
def python_format_failures_on_stderr():
    a, b = uniq(), uniq()
    r = qf([a, "FB", b], fmt="python")
    expect_rc(r, 1)
    want = pprint_text([(a, price_for(a)), (b, price_for(b))])
    check(r.out == want, "python output %r, expected %r" % (r.out, want))
    check("FB" in r.err and "404" in r.err, "FB failure not reported on stderr")


@test
def python_matches_seed():
    """The seed itself (httpx) against our server must print exactly what -f python prints."""
    if not os.path.exists(SEED):
        note("seed script not found; compared with pprint only")
        return
    try:
        subprocess.run([PY, "-c", "import httpx"], check=True, capture_output=True, timeout=20)
    except (subprocess.SubprocessError, OSError):
        note("python3-httpx missing; seed not run")
        return
    srv = server()
    tickers = ["VTSAX", "VTIAX", "IJS", "VSS", "AAPL", "ORCL", "GOOG", "MSFT", "PRICE_2.675",
               "PRICE_0.125"]
    with tempfile.TemporaryDirectory() as d:
        src = open(SEED).read().replace("https://query1.finance.yahoo.com",
                                        "https://localhost:%d" % srv.port)
        path = os.path.join(d, "seed.py")
        with open(path, "w") as f:
            f.write(src)
        env = dict(os.environ, SSL_CERT_FILE=cert("ca.pem"))
        p = subprocess.run([PY, path, "-t"] + tickers, capture_output=True, timeout=30, env=env)
    check(p.returncode == 0, "seed failed: %s" % p.stderr.decode()[-300:])
    seed_out = p.stdout.decode()
    seed_pprint = seed_out[seed_out.index("[("):]
    r = qf(tickers, fmt="python")
    expect_rc(r, 0)
    check(r.out == seed_pprint, "qfetch:\n%s\nseed:\n%s" % (r.out, seed_pprint))


@test
def verbose_lines():
    tickers = [uniq(), "FB", uniq()]
    r = qf(tickers, "-v")
    for t in tickers:
        check("Making request for %s price" % t in r.err, "no `Making request for %s price`" % t)
        check(re.search(r"Received results for %s\b" % re.escape(t), r.err),
              "no `Received results for %s`" % t)


@test
def order_kept_c8():
    # Earlier tickers answer later, so completion order is the reverse of input order.
    tickers = ["SLOW_%d_%s" % ((24 - i) * 15, uniq()) for i in range(24)]
    r = qf(tickers, "-c", "8")
    expect_rc(r, 0)
    expect_order(r, tickers)
    expect_all_ok(r, tickers)
    r = qf(tickers, "-c", "8", fmt="python")
    want = pprint_text([(t, price_for(t)) for t in tickers])
    check(r.out == want, "python output order differs")


@test
def stdin_tickers():
    tickers = [uniq(), uniq(), "PRICE_2.675", uniq()]
    text = "%s  %s\n\t%s\n\n%s\n" % tuple(tickers)
    r = qf(tickers, stdin=text)
    expect_rc(r, 0)
    expect_order(r, tickers)
    for t in tickers:
        expect_ok(r, t, "2.675" if t == "PRICE_2.675" else None)


class Trickle:
    """qfetch reading its symbols from a pipe the test writes to while it runs; its stdout is
    read without blocking, so the test sees what was printed before stdin closed."""

    def __init__(self, args, timeout=60):
        self.cmd = [CFG.qfetch] + list(args)
        self.deadline = time.monotonic() + timeout
        self.errf = tempfile.TemporaryFile()
        self.out = b""
        self.eof = False
        self.t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf)
        CLEANUP.append(self.kill)
        os.set_blocking(self.proc.stdout.fileno(), False)

    def pump(self, seconds, until=None):
        """Reads stdout for up to `seconds` (never past the run's deadline), or until
        until(output) holds; returns whether it holds."""
        end = min(time.monotonic() + seconds, self.deadline)
        while not (until is not None and until(self.out)) and not self.eof:
            left = end - time.monotonic()
            if left <= 0:
                break
            r, _, _ = select.select([self.proc.stdout], [], [], left)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                self.out += chunk
                self.eof = not chunk
        return until is not None and until(self.out)

    def write(self, text):
        self.proc.stdin.write(text.encode())
        self.proc.stdin.flush()

    def finish(self):
        """Closes stdin, reads to the end; returns a Run like run_raw's."""
        self.proc.stdin.close()
        while not self.eof and time.monotonic() < self.deadline:
            self.pump(self.deadline - time.monotonic())
        try:
            rc = self.proc.wait(max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            rc = None
        self.errf.seek(0)
        r = Run(self.cmd, rc, self.out.decode(errors="replace"),
                self.errf.read().decode(errors="replace"), time.monotonic() - self.t0)
        LAST_RUNS.append(r)
        check(rc is not None, "qfetch did not finish")
        return r

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)


def trickle(args, symbols, first_row, gap_s=0.3):
    """Writes symbols one a line, one per gap_s, to qfetch's stdin; before the last one waits
    (bounded) until first_row(stdout) holds. Returns (Run, whether it held with stdin open)."""
    t = Trickle(args)
    for s in symbols[:-1]:
        t.write(s + "\n")
        t.pump(gap_s)
    early = first_row is not None and t.pump(30, first_row)
    t.write(symbols[-1] + "\n")
    return t.finish(), early


STREAM_FIRST_ROW = {
    "json": lambda sym: re.compile(r'\[\n  \{"ticker":"%s",[^\n]*\}' % re.escape(sym)),
    "csv": lambda sym: re.compile(r"ticker,price,currency,status,error\r\n%s,[^\n]*\r\n"
                                  % re.escape(sym)),
    "python": lambda sym: re.compile(r"\[\('%s', Decimal\('[0-9.]+'\)\)" % re.escape(sym)),
}


@test
def stdin_streamed():
    """`-t -` fetches as symbols arrive: one symbol every 300 ms through a pipe, and the first
    row is on stdout before the last symbol is written (json, csv, and python once its
    layout is known: the list outgrew one line); the table, whose column width needs every
    symbol, at the end. Every format prints what the same input given at once prints:
    duplicates fetched once and shown in each place, an error row in order."""
    syms = [uniq() for _ in range(5)]
    syms = syms[:2] + [syms[0], "FB"] + syms[2:] + [syms[1]]
    srv = server()
    for fmt in ("json", "csv", "python", "table"):
        base = ["-u", srv.url, "--cacert", cert("ca.pem"), "-f", fmt, "-c", "2"]
        before = srv.stats()
        first = STREAM_FIRST_ROW.get(fmt)
        r, early = trickle(base + ["-t", "-"], syms,
                           (lambda out, rx=first(syms[0]): rx.search(out.decode()) is not None)
                           if first else None)
        expect_rc(r, 1)
        if first is not None:
            check(early, "%s: the first row was not printed before stdin closed: %r"
                  % (fmt, r.out[:200]))
        whole = run_raw(base + ["-t"] + syms)
        check(r.out == whole.out, "%s: streamed output differs from the same symbols at once:"
              "\n%r\n%r" % (fmt, r.out, whole.out))
        check(r.err == whole.err, "%s: stderr differs: %r / %r" % (fmt, r.err, whole.err))
        after = srv.stats()
        for s in set(syms):
            n = server_count(after, s) - server_count(before, s)
            check(n == 2, "%s: %s fetched %d times in the two runs" % (fmt, s, n))


@test
def stdin_streamed_between_arguments():
    """`-t A - B`: the arguments before '-' first, stdin's symbols, then those after it."""
    a, b, c, d = uniq(), uniq(), uniq(), uniq()
    r, early = trickle(["-u", server().url, "--cacert", cert("ca.pem"), "-f", "json",
                        "-t", a, "-", d], [b, c],
                       lambda out: STREAM_FIRST_ROW["json"](a).search(out.decode()))
    expect_rc(r, 0)
    check(early, "the first argument's row was not printed before stdin closed")
    expect_order(r, [a, b, c, d])
    expect_all_ok(r, [a, b, c, d])


@test
def stdin_streamed_bad_symbol_later():
    """A streamed input cannot be checked ahead: a bad symbol that arrives after fetching began
    stops the run with the usual one-line error and exit status 2; the rows printed before it
    stay printed (docs/qfetch.1). One in the first read is refused before anything is sent
    (faults_and_limits.py, input_*)."""
    a = uniq()
    t = Trickle(["-u", server().url, "--cacert", cert("ca.pem"), "-f", "csv", "-t", "-"])
    t.write(a + "\n")
    check(t.pump(30, lambda out: STREAM_FIRST_ROW["csv"](a).search(out.decode())),
          "no row for %s before stdin closed" % a)
    t.write("A\x01B\n" + uniq() + "\n")
    r = t.finish()
    expect_rc(r, 2)
    check(r.err == "qfetch: invalid symbol 'A\\x01B': must be 1-64 bytes of UTF-8 without "
          "spaces or control characters, not only dots\n", "stderr: %r" % r.err)
    check(r.out.startswith("ticker,price,currency,status,error\r\n%s," % a), "stdout %r" % r.out)


@test
def duplicate_tickers():
    a, b = uniq(), uniq()
    tickers = [a, b, a, "FB", a]
    r = qf(tickers)
    expect_rc(r, 1)
    items = r.items()
    got = [it.get("ticker") for it in items]
    check(got == tickers, "order %s" % got)
    for i in (0, 2, 4):
        check(items[i].get("price") == cents(price_for(a)), "item %d: %r" % (i, items[i]))
    check(items[1].get("price") == cents(price_for(b)), "item 1: %r" % items[1])
    check(items[3].get("status") == 404, "item 3: %r" % items[3])


@test
def percent_encoding():
    tag = uniq("")
    cases = [  # (symbol, encoded path segment)
        ("^G" + tag, "%5EG" + tag), ("EU" + tag + "=X", "EU" + tag + "%3DX"),
        ("BRK-B" + tag, "BRK-B" + tag), ("RDS.A" + tag, "RDS.A" + tag),
        ("A&B" + tag, "A%26B" + tag), ("X/Y" + tag, "X%2FY" + tag), ("50%" + tag, "50%25" + tag),
        ("A+B" + tag, "A%2BB" + tag), ("~T_" + tag, "~T_" + tag),
    ]
    tickers = [c[0] for c in cases]
    r = qf(tickers)
    expect_rc(r, 0)
    expect_order(r, tickers)
    expect_all_ok(r, tickers)
    st = server().stats()
    for sym, enc in cases:
        check(server_count(st, sym) == 1, "server saw %r %d times" % (sym, server_count(st, sym)))
        targets = st["targets_per_symbol"].get(sym, [])
        check(targets == ["/v8/finance/chart/" + enc], "%r sent as %r, expected %r"
              % (sym, targets, "/v8/finance/chart/" + enc))


@test
def request_headers():
    a, b = uniq(), uniq()
    qf([a])
    qf([b], "--user-agent", "qfetch-test/1.0 (integration)")
    st = server().stats()
    ha, hb = st["headers_per_symbol"][a], st["headers_per_symbol"][b]
    check(ha.get("host") == "localhost:%d" % server().port, "Host %r" % ha.get("host"))
    check("Mozilla/5.0" in ha.get("user-agent", ""), "default User-Agent %r is not a browser's"
          % ha.get("user-agent"))
    check(hb.get("user-agent") == "qfetch-test/1.0 (integration)", "User-Agent %r"
          % hb.get("user-agent"))


@test
def ip_literal_url():
    t = uniq()
    srv = server()
    r = qf([t], url="https://127.0.0.1:%d/v8/finance/chart/{}" % srv.port)
    expect_rc(r, 0)
    expect_ok(r, t)


@test
def resolve_with_port_in_url():
    t = uniq()
    srv = server()
    r = qf([t], "--resolve", "query1.finance.yahoo.com:%d:127.0.0.1" % srv.port,
           url="https://query1.finance.yahoo.com:%d/v8/finance/chart/{}" % srv.port)
    expect_rc(r, 0)
    expect_ok(r, t)
    host = server().stats()["headers_per_symbol"][t].get("host")
    check(host == "query1.finance.yahoo.com:%d" % srv.port, "Host %r" % host)


@test
def absolute_host_name():
    """A trailing dot (an absolute DNS name) works: SNI goes without it (RFC 6066) and the
    certificate is checked against the name without it, while connecting (--resolve here) and
    the Host header keep the URL's name as written, as curl does."""
    t = uniq()
    srv = server()
    before = srv.stats()["sni_names"]
    r = qf([t], "--resolve", "query1.finance.yahoo.com.:%d:127.0.0.1" % srv.port,
           url="https://query1.finance.yahoo.com.:%d/v8/finance/chart/{}" % srv.port)
    expect_rc(r, 0)
    expect_ok(r, t)
    st = srv.stats()
    # (stats() itself connects with SNI localhost)
    sni = {k: v - before.get(k, 0) for k, v in st["sni_names"].items()
           if v != before.get(k, 0) and k != "localhost"}
    check(sni == {"query1.finance.yahoo.com": 1}, "server saw SNI %r" % sni)
    host = st["headers_per_symbol"][t].get("host")
    check(host == "query1.finance.yahoo.com.:%d" % srv.port, "Host %r" % host)


@test
def non_ascii_host_refused():
    """A host name that is not ASCII is a usage error naming the A-label form; nothing is
    looked up or connected (the --resolve entry would otherwise send it to a closed port)."""
    usage_case(["-u", "https://b\u00f6rse.example:9/v8/finance/chart/{}", "--resolve",
                "b\u00f6rse.example:9:127.0.0.1", "-t", "AAPL"])
    check("xn--" in LAST_RUNS[-1].err, "no word of the A-label: %r" % LAST_RUNS[-1].err)


@test
def dot_symbols_refused():
    """"." and ".." would leave the chart path (GET /v8/finance/chart/.. is /v8/finance/ to a
    server): a usage error before any request is sent."""
    srv = server()
    for dots in (".", "..", "..."):
        before = srv.stats()["requests_total"]
        usage_case(["-u", srv.url, "--cacert", cert("ca.pem"), "-t", uniq(), dots])
        check("only dots" in LAST_RUNS[-1].err, "message %r" % LAST_RUNS[-1].err)
        check(srv.stats()["requests_total"] == before, "%r: a request was sent" % dots)
    t = "." + uniq() + "."  # dots among other characters are an ordinary symbol
    r = qf([t])
    expect_rc(r, 0)
    expect_ok(r, t)


# A hostile server's text: C1 CSI (erases a screen), bidi overrides and isolates, ESC, invalid
# UTF-8 and CSV formulas (server.py HOSTILE_). Nothing of it may reach a terminal, a CSV file
# or a JSON reader as it was sent.
UNSAFE_TEXT = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e"
                         "\u2066-\u2069]")
HOSTILE_ERR = ("HTTP 404:  [2J\ufffd2J \ufffd\ufffdevil\ufffd\ufffd \ufffdx\ufffd "
               "\ufffd=cmd\ufffd")


def hostile_run(fmt):
    kinds = ["CSI", "ESC", "BAD", "EQ", "AT", "PLUS", "MINUS", "ERR"]
    tick = {k: "HOSTILE_%s_%s" % (k, uniq()) for k in kinds}
    r = qf(list(tick.values()), fmt=fmt, stats=False)
    expect_rc(r, 1)
    for name, raw in (("stdout", r.out_bytes), ("stderr", r.err_bytes)):
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise Fail("%s is not valid UTF-8: %s" % (name, e))
        bad = UNSAFE_TEXT.search(text.replace("\r\n", "\n").replace("\n", ""))
        check(bad is None, "%s holds U+%04X: %r" % (name, ord(bad.group()) if bad else 0,
                                                    text[:300]))
    return r, tick


@test
def hostile_text_json():
    r, tick = hostile_run("json")
    by = r.by_ticker()
    want = {"CSI": "\ufffd2J\ufffd", "ESC": "\ufffd2J\ufffd", "BAD": "U\ufffdS\ufffdD",
            "EQ": "=1+2", "AT": "@SUM(1)", "PLUS": "+1", "MINUS": "-1+2"}
    for k, cur in want.items():
        it = by[tick[k]]
        check(it.get("currency") == cur and it.get("price") == cents(price_for(tick[k])),
              "%s: %r, want currency %r" % (k, it, cur))
    it = by[tick["ERR"]]
    check(it.get("error") == HOSTILE_ERR and it.get("status") == 404, "ERR: %r" % it)


@test
def hostile_text_csv():
    """Besides clean text, a server's cell that starts with = + - or @ is neutralised with a
    leading ' (OWASP's CSV injection rule); our own negative prices stay numbers."""
    r, tick = hostile_run("csv")
    rows = {row["ticker"]: row for row in csv.DictReader(io.StringIO(r.out, newline=""))}
    want = {"CSI": "\ufffd2J\ufffd", "BAD": "U\ufffdS\ufffdD", "EQ": "'=1+2",
            "AT": "'@SUM(1)", "PLUS": "'+1", "MINUS": "'-1+2"}
    for k, cur in want.items():
        check(rows[tick[k]]["currency"] == cur, "%s: %r, want %r" % (k, rows[tick[k]], cur))
    check(rows[tick["ERR"]]["error"] == HOSTILE_ERR, "ERR: %r" % rows[tick["ERR"]])


@test
def hostile_text_table_and_python():
    r, tick = hostile_run("table")
    lines = {ln.split()[0]: ln for ln in r.out.splitlines() if ln.strip()}
    check(lines[tick["CSI"]].endswith("  \ufffd2J\ufffd"), "CSI: %r" % lines[tick["CSI"]])
    check(lines[tick["ERR"]].endswith("error  " + HOSTILE_ERR), "ERR: %r" % lines[tick["ERR"]])
    r, tick = hostile_run("python")  # the failure goes to stderr
    check(("qfetch: %s: %s" % (tick["ERR"], HOSTILE_ERR)) in r.err, "stderr %r" % r.err[-300:])


@test
def stats_line():
    r = qf([uniq()])
    st = r.stats()
    check(st["conns_opened"] == 1 and st["requests_sent"] == 1 and st["reused"] == 0,
          "one ticker: %s" % st)
    check(st["retries"] == 0 and st["stale_resends"] == 0, "one ticker: %s" % st)
    check(st["wall_ms"] > 0, "wall_ms %s" % st["wall_ms"])


# ---------------------------------------------------------------- prices

PRICE_TABLE = [
    "2.675", "2.665", "1.005", "0.125", "0.375", "0.625", "190", "1.8984e2", "1E2", "1.0E+3",
    "269.7", "4.275", "0.005", "0.015", "1e-7", "0", "0.0", "12345678.125", "99999.995",
    "0.994999", "1.4999999999999999", "636.38", "19.948", "1.0436", "337.8", "100.00",
    "7.5E-1", "123456789012.345",
]


@test
def price_rounding_table():
    tickers = ["PRICE_" + lit for lit in PRICE_TABLE]
    r = qf(tickers)
    expect_rc(r, 0)
    expect_order(r, tickers)
    for lit, t in zip(PRICE_TABLE, tickers):
        expect_ok(r, t, lit)


# ---------------------------------------------------------------- special tickers, one at a time

def around(special, n=2):
    """[normal, special, normal...]: the normal ones must stay right whatever special does."""
    normals = [uniq() for _ in range(n)]
    return [normals[0], special] + normals[1:], normals


@test
def special_chunked():
    s = "CHUNKED_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(r.stats()["conns_opened"] == 1, "chunked response broke keep-alive: %s" % r.stats())


@test
def special_drip():
    s = "DRIP_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(r.stats()["conns_opened"] == 1, "drip response broke keep-alive: %s" % r.stats())


@test
def special_http10_close_delimited():
    s = "HTTP10_" + uniq()
    tickers, normals = around(s, 3)
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(r.stats()["conns_opened"] >= 2, "reused a connection the server closed: %s" % r.stats())


@test
def special_connection_close():
    s = "CLOSE_" + uniq()
    tickers, normals = around(s, 3)
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    st = r.stats()
    check(st["conns_opened"] >= 2, "did not open a new connection after Connection: close")
    check(st["retries"] == 0 and st["stale_resends"] == 0,
          "Connection: close must not lead to reuse/retries: %s" % st)


@test
def special_delisted_404():
    d = "DELISTED_" + uniq()
    tickers, normals = around(d)
    tickers.append("FB")
    r = qf(tickers)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    for t in (d, "FB"):
        expect_err(r, t, "HTTP 404", "No data found, symbol may be delisted", status=404)
    check(server_count(server().stats(), d) == 1, "404 was retried")


@test
def special_err500_not_retried():
    s = "ERR500_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, s, "HTTP 500", status=500)
    check(server_count(server().stats(), s) == 1, "500 was retried")


@test
def special_err503_retried():
    s = "ERR503_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(server_count(server().stats(), s) == 2, "503 then 200 needs exactly 2 requests")
    check(r.stats()["retries"] == 1, "retries=%d" % r.stats()["retries"])


@test
def special_bad_json():
    bads = ["BADJSON_" + uniq(), "BADJSON_TRAIL_" + uniq(), "BADJSON_UNQ_" + uniq(),
            "BADJSON_HTML_" + uniq(), "TRUNCJSON_" + uniq()]
    normals = [uniq(), uniq()]
    tickers = [normals[0]] + bads + [normals[1]]
    r = qf(tickers)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    st = server().stats()
    for b in bads:
        expect_err(r, b, "invalid JSON", status=200)
        check(server_count(st, b) == 1, "%s requested %d times" % (b, server_count(st, b)))


@test
def special_no_price():
    bads = ["NULLPRICE_" + uniq(), "NOPRICE_" + uniq(), "STRPRICE_" + uniq()]
    normals = [uniq(), uniq()]
    r = qf([normals[0]] + bads + [normals[1]])
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    for b in bads:
        expect_err(r, b, "no price", status=200)


@test
def special_decoys():
    s = "DECOY_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)


@test
def special_truncated_body():
    s = "TRUNC_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, s, "closed")


@test
def special_reset_mid_body():
    s = "RST_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, s, "closed")


@test
def special_extra_bytes():
    # -c 1: a client that keeps using the connection would read the fake response for the
    # next ticker (price 0.01).
    s = "EXTRA_" + uniq()
    normals = [uniq() for _ in range(4)]
    tickers = [normals[0], s] + normals[1:]
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)


@test
def special_big_body():
    s = "BIG_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers, "-c", "1")
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    # The body's size follows the symbol's price (989-1,073 KB): compared with the body sent.
    size = len(big_body(s))
    check(r.stats()["bytes_read"] >= size, "bytes_read %d < the %d-byte body"
          % (r.stats()["bytes_read"], size))


@test
def special_slow():
    s = "SLOW_400_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(r.elapsed >= 0.4, "finished in %.2fs, before the server answered" % r.elapsed)


@test
def specials_mixed_batch():
    """Every non-hanging special in one batch with 20 normal tickers, -c 4."""
    ok_specials = ["CHUNKED_", "DRIP_", "HTTP10_", "CLOSE_", "DECOY_", "EXTRA_", "BIG_",
                   "SLOW_200_", "RATE_", "ERR503_"]
    ok_specials = [p + uniq() for p in ok_specials] + ["PRICE_2.675", "PRICE_1.8984e2"]
    errs = {"DELISTED_": ("HTTP 404",), "ERR500_": ("HTTP 500",), "BADJSON_": ("invalid JSON",),
            "TRUNCJSON_": ("invalid JSON",), "NULLPRICE_": ("no price",),
            "NOPRICE_": ("no price",), "STRPRICE_": ("no price",), "TRUNC_": ("closed",),
            "RST_": ("closed",), "RATEALWAYS_": ("HTTP 429",)}
    err_syms = {p + uniq(): words for p, words in errs.items()}
    normals = [uniq() for _ in range(20)]
    specials = ok_specials + list(err_syms)
    tickers = []
    for i, n in enumerate(normals):  # interleave
        tickers.append(n)
        if i < len(specials):
            tickers.append(specials[i])
    tickers += specials[len(normals):]
    r = qf(tickers, "-c", "4", "--retries", "1", timeout=40)
    expect_rc(r, 1)
    expect_order(r, tickers)
    for t in normals:
        expect_ok(r, t)
    for t in ok_specials:
        lit = t[len("PRICE_"):] if t.startswith("PRICE_") else None
        expect_ok(r, t, lit)
    for t, words in err_syms.items():
        expect_err(r, t, *words)
    check(r.elapsed < 15, "batch took %.1fs" % r.elapsed)


# ---------------------------------------------------------------- retries

@test
def retry_after_429():
    s = "RATE_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(server_count(server().stats(), s) == 2, "RATE_ needs exactly 2 requests")
    check(r.stats()["retries"] == 1, "retries=%d" % r.stats()["retries"])
    check(r.elapsed >= 0.9, "Retry-After: 1 not honoured (%.2fs)" % r.elapsed)


@test
def retries_exhausted_429():
    s = "RATEALWAYS_" + uniq()
    tickers, normals = around(s)
    r = qf(tickers, "--retries", "1")
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, s, "HTTP 429", status=429)
    check(server_count(server().stats(), s) == 2, "--retries 1: server saw %d requests"
          % server_count(server().stats(), s))
    check(r.elapsed >= 0.9, "Retry-After: 1 not honoured (%.2fs)" % r.elapsed)


@test
def retries_default_is_two():
    s = "RATEALWAYS_" + uniq()
    r = qf([s])
    expect_rc(r, 1)
    expect_err(r, s, "HTTP 429", status=429)
    n = server_count(server().stats(), s)
    check(n == 3, "default retries: server saw %d requests, expected 3" % n)
    check(r.elapsed >= 1.8, "two Retry-After: 1 waits took only %.2fs" % r.elapsed)


@test
def retries_zero_one_request():
    a, b = "RATEALWAYS_" + uniq(), "ERR503_" + uniq()
    r = qf([a, b], "--retries", "0")
    expect_rc(r, 1)
    expect_err(r, a, "HTTP 429", status=429)
    expect_err(r, b, "HTTP 503", status=503)
    st = server().stats()
    check(server_count(st, a) == 1 and server_count(st, b) == 1, "--retries 0 sent %d/%d"
          % (server_count(st, a), server_count(st, b)))
    check(r.stats()["retries"] == 0, "retries=%d" % r.stats()["retries"])


# ---------------------------------------------------------------- timeouts and connect failures

@test
def timeout_hang_and_silent():
    h, s = "HANG_" + uniq(), "SILENT_" + uniq()
    normals = [uniq() for _ in range(4)]
    tickers = [normals[0], h, normals[1], s, normals[2], normals[3]]
    r = qf(tickers, "--timeout", "1", "--retries", "0", "-c", "4")
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, h, "timed out")
    expect_err(r, s, "timed out", status=0)
    check(r.elapsed < 6, "took %.1fs" % r.elapsed)
    check(r.elapsed >= 0.9, "gave up after %.2fs, before the 1 s timeout" % r.elapsed)


@test
def timeout_is_retried():
    s = "SILENT_" + uniq()
    r = qf([s], "--timeout", "1", "--retries", "1")
    expect_rc(r, 1)
    expect_err(r, s, "timed out", status=0)
    n = server_count(server().stats(), s)
    check(n == 2, "a timed-out request should be retried once: server saw %d" % n)
    check(r.elapsed < 8, "took %.1fs" % r.elapsed)


class StallListener:
    """127.0.0.1 socket that never speaks. accept=True: accepts TCP, stays silent (TLS stalls);
    accept=False: backlog 0 filled by our own connection, so the client's SYN is dropped."""

    def __init__(self, accept):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held = []
        self.stop = threading.Event()
        if accept:
            self.sock.listen(16)
            self.sock.settimeout(0.1)
            self.thread = threading.Thread(target=self.loop, daemon=True)
            self.thread.start()
        else:
            self.thread = None
            self.sock.listen(0)
            for _ in range(2):
                c = socket.socket()
                c.setblocking(False)
                try:
                    c.connect(("127.0.0.1", self.port))
                except BlockingIOError:
                    pass
                self.held.append(c)
            time.sleep(0.1)
        CLEANUP.append(self.close)

    def loop(self):
        deadline = time.monotonic() + 120
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                c, _ = self.sock.accept()
                self.held.append(c)
            except socket.timeout:
                continue
            except OSError:
                break

    def close(self):
        self.stop.set()
        if self.thread:
            self.thread.join(2)
        for c in self.held:
            c.close()
        self.sock.close()


def connect_timeout_against(accept):
    lst = StallListener(accept=accept)
    try:
        t = uniq()
        r = qf([t], "--connect-timeout", "1", "--retries", "0",
               url="https://localhost:%d/v8/finance/chart/{}" % lst.port)
        expect_rc(r, 1)
        expect_err(r, t, "timed out", status=0)
        check(0.9 <= r.elapsed < 4, "took %.2fs" % r.elapsed)
    finally:
        lst.close()


@test
def connect_timeout_tls_stall():
    connect_timeout_against(accept=True)


@test
def connect_timeout_syn_dropped():
    connect_timeout_against(accept=False)


@test
def connection_refused():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    tickers = [uniq(), uniq()]
    r = qf(tickers, "--retries", "0", url="https://localhost:%d/v8/finance/chart/{}" % port)
    expect_rc(r, 1)
    for t in tickers:
        it = expect_err(r, t, status=0)
        check("timed out" not in it["error"], "refusal reported as a timeout: %r" % it["error"])
    check(r.elapsed < 4, "took %.1fs" % r.elapsed)


# ---------------------------------------------------------------- TLS refusals

def tls_refusal(kind, *words):
    srv = server(kind)
    tickers = [uniq() for _ in range(3)]
    before = srv.stats()
    r = qf(tickers, srv=srv, timeout=40)
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "certificate", *words, status=0)
    after = srv.stats()
    check(stats_delta(before, after, "requests_total") == 0,
          "server received %d HTTP requests over a refused certificate"
          % stats_delta(before, after, "requests_total"))
    check(after["tls_failed_with_request_bytes"] == 0, "client sent data after a failed handshake")
    check(stats_delta(before, after, "connections") >= 1, "client never connected")
    check(r.elapsed < 15, "took %.1fs" % r.elapsed)


@test
def tls_expired():
    tls_refusal("expired", "expired")


@test
def tls_not_yet_valid():
    tls_refusal("notyet", "not yet valid")


@test
def tls_wrong_host():
    tls_refusal("wronghost")


@test
def tls_self_signed():
    tls_refusal("selfsigned")


@test
def tls_untrusted_ca():
    tls_refusal("untrusted")


# ---------------------------------------------------------------- keep-alive and connection limits

@test
def keepalive_200_c4():
    tickers = [uniq() for _ in range(200)]
    with fresh_server() as srv:
        r = qf(tickers, "-c", "4", srv=srv, timeout=60)
        expect_rc(r, 0)
        expect_order(r, tickers)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(st["connections"] <= 4, "server saw %d connections" % st["connections"])
    check(st["max_concurrent_connections"] <= 4, "%d concurrent connections"
          % st["max_concurrent_connections"])
    check(sum(st["requests_per_connection"]) == 200, "server saw %d requests"
          % sum(st["requests_per_connection"]))
    check(cs["conns_opened"] <= 4, "conns_opened=%d" % cs["conns_opened"])
    check(cs["reused"] >= 196, "reused=%d" % cs["reused"])
    check(cs["requests_sent"] == 200, "requests_sent=%d" % cs["requests_sent"])
    check(cs["conns_opened"] == st["connections"], "client says %d connections, server %d"
          % (cs["conns_opened"], st["connections"]))
    check(cs["bytes_read"] >= st["bytes_sent"], "bytes_read %d < server's plaintext %d"
          % (cs["bytes_read"], st["bytes_sent"]))


@test
def conns_capped_by_tickers():
    tickers = [uniq() for _ in range(9)]
    with fresh_server() as srv:
        r = qf(tickers, "-c", "64", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st = srv.stats()
    check(st["connections"] <= 9, "server saw %d connections for 9 tickers" % st["connections"])
    check(r.stats()["conns_opened"] <= 9, "conns_opened=%d" % r.stats()["conns_opened"])


@test
def concurrency_parallel():
    tickers = ["SLOW_400_" + uniq() for _ in range(8)]
    with fresh_server() as srv:
        r = qf(tickers, "-c", "8", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st = srv.stats()
    check(r.elapsed < 2.0, "8 x 0.4 s with -c 8 took %.2fs (not concurrent)" % r.elapsed)
    check(st["max_concurrent_connections"] >= 4, "max %d concurrent connections"
          % st["max_concurrent_connections"])


@test
def close_after_3():
    tickers = [uniq() for _ in range(20)]
    with fresh_server("--close-after", "3") as srv:
        r = qf(tickers, "-c", "2", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(max(st["requests_per_connection"]) <= 3, "per connection %s"
          % st["requests_per_connection"])
    check(st["connections"] >= 7, "20 requests at 3 per connection need >= 7, server saw %d"
          % st["connections"])
    check(cs["retries"] == 0 and cs["stale_resends"] == 0,
          "Connection: close must not cause retries or re-sends: %s" % cs)
    check(cs["conns_opened"] == st["connections"], "client %d vs server %d connections"
          % (cs["conns_opened"], st["connections"]))
    check(cs["tls_resumed"] == st["tls_resumed"], "client tls_resumed=%d, server saw %d"
          % (cs["tls_resumed"], st["tls_resumed"]))
    if cs["tls_resumed"] == 0:
        note("no TLS session resumption across %d connections" % cs["conns_opened"])


@test
def half_close_with_the_response():
    """As Apache does at its keep-alive limit: the FIN comes right behind a response that did
    not announce a close. The connection must not be parked and handed the next request (which
    then waited for --timeout); with --retries 0 every ticker still gets its price."""
    tickers = [uniq() for _ in range(12)]
    for plain in (False, True):
        with fresh_server("--silent-close-after", "1", plain=plain) as srv:
            url = "http://127.0.0.1:%d/v8/finance/chart/{}" % srv.port if plain else True
            r = qf(tickers, "-c", "2", "--retries", "0", "--timeout", "5", srv=srv, url=url)
            expect_rc(r, 0)
            expect_all_ok(r, tickers)
            cs = r.stats()
        check(cs["retries"] == 0, "retries=%d" % cs["retries"])
        check(cs["conns_opened"] >= 12, "12 answers, each followed by a FIN, over %d connections"
              % cs["conns_opened"])


@test
def announced_close_keeps_pipelining():
    """A server that says Connection: close at every 3rd response (nginx's and Apache's
    keep-alive limits) cuts no pipeline: the requests written behind the announced last one go
    again on a new connection, and pipelining goes on. Before, the first such close turned it
    off for the rest of the run, so requests_sent stayed at the ticker count plus one."""
    tickers = [uniq() for _ in range(40)]
    with fresh_server("--close-after", "3") as srv:
        r = qf(tickers, "-c", "2", "--pipeline", "4", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(cs["retries"] == 0, "retries=%d" % cs["retries"])
    check(max(st["requests_per_connection"]) <= 3, "per connection %s"
          % st["requests_per_connection"])
    check(st["pipelined"] >= 12, "pipelining stopped after the first announced close: server saw "
          "%d pipelined requests; %s" % (st["pipelined"], cs))


@test
def unannounced_close_pauses_pipelining():
    """A server that closes every 3rd response's connection without saying so cuts the
    requests pipelined behind it: they go again, not as retries, and the host is not pipelined
    to for a while. Every ticker gets its price with --retries 0."""
    tickers = [uniq() for _ in range(30)]
    with fresh_server("--silent-close-after", "3", plain=True) as srv:
        r = qf(tickers, "-c", "2", "--pipeline", "4", "--retries", "0", srv=srv,
               url="http://127.0.0.1:%d/v8/finance/chart/{}" % srv.port)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(cs["retries"] == 0, "retries=%d" % cs["retries"])
    # The first two connections carry 4 requests each; the server reads 3 of each, 2 of them
    # pipelined. Had pipelining gone on, each later connection would add 2 more.
    check(st["pipelined"] <= 6, "pipelining went on after an unannounced cut: server saw %d "
          "pipelined requests; %s" % (st["pipelined"], cs))


@test
def idle_close_while_backing_off():
    # -c 1: the connection idles while RATE_ waits out Retry-After; the server closes it at
    # 300 ms, so the retry must notice (or re-send on a fresh connection).
    rate = "RATE_" + uniq()
    tickers = [rate] + [uniq() for _ in range(3)]
    with fresh_server("--idle-close-ms", "300") as srv:
        r = qf(tickers, "-c", "1", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(server_count(st, rate) == 2, "RATE_ requested %d times" % server_count(st, rate))
    check(cs["retries"] == 1, "retries=%d (a stale re-send is not a retry)" % cs["retries"])
    if st["idle_closes"] == 0:
        note("the client closed its idle connection before the server did")
    note("stale_resends=%d" % cs["stale_resends"])


@test
def stale_connection_resend():
    # The server drops the request that arrives on a connection idle >= 300 ms, with no response
    # byte: the client must re-send it on a fresh connection, not count it as a retry.
    rate = "RATE_" + uniq()
    tickers = [rate] + [uniq() for _ in range(3)]
    with fresh_server("--idle-close-ms", "300", "--lazy-idle-close") as srv:
        r = qf(tickers, "-c", "1", "--retries", "1", srv=srv)
        expect_rc(r, 0)
        expect_all_ok(r, tickers)
        st, cs = srv.stats(), r.stats()
    check(server_count(st, rate) == 2, "RATE_ requested %d times" % server_count(st, rate))
    check(cs["retries"] == 1, "retries=%d" % cs["retries"])
    if st["lazy_idle_closes"] == 0:
        note("client never reused an idle connection; stale re-send not exercised")
    else:
        check(cs["stale_resends"] >= st["lazy_idle_closes"],
              "server dropped %d requests on idle connections, stale_resends=%d"
              % (st["lazy_idle_closes"], cs["stale_resends"]))



# ---------------------------------------------------------------- every address, raced

class Blackhole:
    """A listener whose accept queue is full: the kernel drops further SYNs to it, as a host
    behind broken IPv6 does. family AF_INET6 binds [::1]:port (IPv6 only), AF_INET 127.0.0.1."""

    def __init__(self, port, family=socket.AF_INET6):
        host = "::1" if family == socket.AF_INET6 else "127.0.0.1"
        self.ls = socket.socket(family)
        if family == socket.AF_INET6:
            self.ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        self.ls.bind((host, port))
        self.ls.listen(0)
        self.fill = []
        for _ in range(3):  # a backlog of 0 still queues one: fill it
            c = socket.socket(family)
            c.setblocking(False)
            try:
                c.connect((host, port))
            except BlockingIOError:
                pass
            self.fill.append(c)
        time.sleep(0.1)
        CLEANUP.append(self.close)

    def close(self):
        for s in self.fill + [self.ls]:
            s.close()


def attempts_to(r, addr):
    return len(re.findall(r"^conn \d+: connecting to %s port" % re.escape(addr), r.err, re.M))


@test
def dead_first_address_races_to_the_next():
    """The host's first address drops SYNs (broken IPv6), the second is live: the connection
    starts the second address 250 ms in and keeps whichever connects, within --connect-timeout
    and --retries 0. Later connections start from the address that worked: with a server that
    closes after every 2nd answer, 9 tickers take 5 connections but only the first tries ::1
    (the others wait for it to tell whether the server speaks HTTP/2, as curl's do)."""
    tickers = [uniq() for _ in range(9)]
    with fresh_server("--silent-close-after", "2") as srv:
        hole = Blackhole(srv.port)
        r = qf(tickers, "-v", "-c", "3", "--connect-timeout", "3", "--retries", "0",
               "--resolve", "localhost:%d:[::1],127.0.0.1" % srv.port, srv=srv)
        hole.close()
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(attempts_to(r, "::1") == 1, "%d connects to ::1, expected 1 (the first race)"
          % attempts_to(r, "::1"))
    check(r.stats()["conns_opened"] >= 5, "stats %s" % r.stats())


@test
def refused_first_address_tries_the_next_at_once():
    """An address that refuses fails at once and starts the next one: -v names it."""
    tickers = [uniq() for _ in range(3)]
    srv = server()
    r = qf(tickers, "-v", "-c", "2", "--retries", "0",
           "--resolve", "localhost:%d:[::1],127.0.0.1" % srv.port, srv=srv)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(re.search(r"^conn \d+: connect ::1 port %d: Connection refused$" % srv.port, r.err,
                    re.M), "no refused line for ::1: %s" % tail(r.err))


@test
def every_address_dead_ends_at_the_connect_timeout():
    """Both addresses drop SYNs: the connect timeout bounds the whole race, and each ticker
    fails with it while the batch completes."""
    ls = socket.socket()
    ls.bind(("127.0.0.1", 0))
    port = ls.getsockname()[1]
    ls.close()
    holes = [Blackhole(port), Blackhole(port, socket.AF_INET)]
    tickers = [uniq() for _ in range(2)]
    r = qf(tickers, "-c", "2", "--connect-timeout", "1", "--retries", "0",
           "--resolve", "localhost:%d:[::1],127.0.0.1" % port,
           url="https://localhost:%d/v8/finance/chart/{}" % port, timeout=20)
    for h in holes:
        h.close()
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "timed out after 1.0 s connecting")


@test
def resolve_takes_an_address_list():
    for bad in ("localhost:443:[::1],", "localhost:443:1.2.3.4,nope", "localhost:443:" +
                ",".join(["127.0.0.1"] * 9)):
        r = run_raw(["-t", "X", "--resolve", bad])
        expect_rc(r, 2)
        check("--resolve" in r.err and r.err.count("\n") == 1, "usage error: %r" % r.err)



# ---------------------------------------------------------------- name resolution in the loop

class FakeDNS:
    """A UDP name server on 127.0.0.1 for --dns-servers: A queries for `names` get 127.0.0.1
    (after delay_s), other queries for them no data, any other name NXDOMAIN; silent drops
    every query, as a resolver that never answers."""

    def __init__(self, names=(), silent=False, delay_s=0.0):
        self.names = {n.lower() for n in names}
        self.silent, self.delay_s = silent, delay_s
        self.queries = 0
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sock.settimeout(0.2)
        self.running = True
        threading.Thread(target=self.serve, daemon=True).start()
        CLEANUP.append(self.close)

    def close(self):
        self.running = False
        self.sock.close()

    def answer(self, q):
        end = 12
        while end < len(q) and q[end] != 0:
            end += q[end] + 1
        labels, i = [], 12
        while i < end:
            labels.append(q[i + 1:i + 1 + q[i]].decode(errors="replace"))
            i += q[i] + 1
        name, qtype = ".".join(labels).lower(), int.from_bytes(q[end + 1:end + 3], "big")
        question = q[12:end + 5]
        known = name in self.names
        an = b""
        if known and qtype == 1:
            an = b"\xc0\x0c" + (1).to_bytes(2, "big") + (1).to_bytes(2, "big") + \
                (60).to_bytes(4, "big") + (4).to_bytes(2, "big") + bytes([127, 0, 0, 1])
        flags = 0x8180 if known else 0x8183
        return q[:2] + flags.to_bytes(2, "big") + (1).to_bytes(2, "big") + \
            (1 if an else 0).to_bytes(2, "big") + bytes(4) + question + an

    def serve(self):
        while self.running:
            try:
                q, peer = self.sock.recvfrom(512)
            except (socket.timeout, OSError):
                continue
            self.queries += 1
            if self.silent or len(q) < 17:
                continue
            reply = self.answer(q)
            send = lambda r=reply, p=peer: self.running and self.sock.sendto(r, p)  # noqa: E731
            if self.delay_s:
                threading.Timer(self.delay_s, send).start()
            else:
                send()


def yahoo_url(srv):
    """The default URL's host name at the test server's port: its certificate names it."""
    return "https://query1.finance.yahoo.com:%d/v8/finance/chart/{}" % srv.port


@test
def lookup_through_the_resolver():
    """The host name goes to the --dns-servers resolver (c-ares in the loop), not /etc/hosts:
    every ticker gets its price, and the lookup shows as its own phase."""
    dns = FakeDNS(["query1.finance.yahoo.com"])
    tickers = [uniq() for _ in range(4)]
    srv = server()
    r = qf(tickers, "-v", "-c", "2", "--dns-servers", "127.0.0.1:%d" % dns.port,
           url=yahoo_url(srv), srv=srv)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    check(dns.queries >= 1, "the resolver saw no query")
    check(re.search(r"^Received results for \S+ \(dns [\d.]+ ms, connect", r.err, re.M),
          "no dns phase in -v: %s" % tail(r.err))
    check(re.search(r"dns p50=[\d.]+", r.err), "no dns phase in --stats: %s" % tail(r.err))


@test
def dead_resolver_ends_at_the_connect_timeout():
    """A resolver that never answers costs --connect-timeout, not c-ares's own retries (the
    blocking lookup took 6.2 s whatever the options said): each ticker fails with it."""
    dns = FakeDNS(silent=True)
    tickers = [uniq() for _ in range(3)]
    srv = server()
    r = qf(tickers, "--connect-timeout", "1", "--timeout", "2", "--retries", "0",
           "--dns-servers", "127.0.0.1:%d" % dns.port, url=yahoo_url(srv), srv=srv)
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "could not resolve host query1.finance.yahoo.com",
                   "no answer within 1.0 s")
    check(dns.queries >= 1, "the resolver saw no query")
    check(r.elapsed < 4, "took %.1f s" % r.elapsed)


@test
def slow_resolver_leaves_the_connect_its_time():
    """An answer after 1.5 s of a 4 s connect timeout: the connections' deadlines start when
    they do, so none fails in its handshake for time the lookup used (--retries 0)."""
    dns = FakeDNS(["query1.finance.yahoo.com"], delay_s=1.5)
    tickers = [uniq() for _ in range(9)]
    srv = server()
    r = qf(tickers, "-c", "4", "--connect-timeout", "4", "--timeout", "3", "--retries", "0",
           "--dns-servers", "127.0.0.1:%d" % dns.port, url=yahoo_url(srv), srv=srv)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)


@test
def unknown_name_fails_each_ticker():
    dns = FakeDNS([])
    tickers = [uniq() for _ in range(2)]
    srv = server()
    r = qf(tickers, "--retries", "0", "--dns-servers", "127.0.0.1:%d" % dns.port,
           url=yahoo_url(srv), srv=srv)
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "could not resolve host query1.finance.yahoo.com")


@test
def dns_servers_bad_list_is_a_usage_error():
    r = run_raw(["-t", "X", "--dns-servers", "not an address"])
    expect_rc(r, 2)
    check("--dns-servers" in r.err and r.err.count("\n") == 1, "usage error: %r" % r.err)


# ---------------------------------------------------------------- compression

@test
def compressed_by_default():
    """Quotes ask for gzip and deflate unless --no-compressed; tests/server.py then codes its
    answers as Yahoo does. The prices are the same either way and the bytes read fall."""
    tickers = [uniq() for _ in range(20)]
    with fresh_server() as srv:
        plain = qf(tickers, "-c", "1", "--no-session-cache", "--no-compressed", srv=srv)
        expect_rc(plain, 0)
        expect_all_ok(plain, tickers)
        asked = [srv.stats()["headers_per_symbol"][t].get("accept-encoding") for t in tickers]
        check(asked == [None] * 20, "--no-compressed sent Accept-Encoding: %r" % asked[:3])
        for flags in ((), ("--compressed",), ("--no-compressed", "--compressed")):
            coded = qf(tickers, "-c", "1", "--no-session-cache", *flags, srv=srv)
            expect_rc(coded, 0)
            expect_order(coded, tickers)
            expect_all_ok(coded, tickers)
            asked = [srv.stats()["headers_per_symbol"][t].get("accept-encoding") for t in tickers]
            check(asked == ["gzip, deflate"] * 20, "%s: Accept-Encoding %r" % (flags, asked[:3]))
    b0, b1 = plain.stats()["bytes_read"], coded.stats()["bytes_read"]
    check(b1 < b0 * 0.75, "bytes_read %d compressed vs %d plain" % (b1, b0))
    note("bytes_read for 20 tickers on one connection: %d plain, %d compressed" % (b0, b1))


@test
def coded_answers_decoded():
    """gzip, x-gzip, zlib-wrapped and raw deflate, two gzip members in odd chunks and a gzip
    body dripped a byte at a time are all inflated, asked for or not."""
    kinds = ["GZIP_", "XGZIP_", "DEFLATE_", "RAWDEFLATE_", "GZIPCHUNKED_", "GZIPDRIP_"]
    for flags in ((), ("--no-compressed",)):
        tickers = [k + uniq() for k in kinds] + [uniq()]
        r = qf(tickers, "-c", "3", *flags)
        expect_rc(r, 0)
        expect_order(r, tickers)
        expect_all_ok(r, tickers)
        check(r.stats()["requests_sent"] == len(tickers), "retries or re-sends: %s" % r.stats())


@test
def coded_failures_per_ticker():
    """A corrupt or cut gzip stream, a decompression bomb, a body over 8 MiB once inflated and
    an unknown coding each fail their own ticker, once, without retries, with a message that
    says what happened; the batch around them completes."""
    bad = {"BADGZIP_": ("corrupt gzip body",), "TRUNCGZIP_": ("corrupt gzip body", "cut short"),
           "BOMB_": ("100:1", "decompression bomb"), "GZIPHUGE_": ("8 MiB once inflated",),
           "BROTLI_": ('unsupported content-encoding "br"',)}
    names = {k: k + uniq() for k in bad}
    good = [uniq() for _ in range(10)]
    tickers = good[:5] + list(names.values()) + good[5:]
    r = qf(tickers, "-c", "2", timeout=60)
    expect_rc(r, 1)
    expect_order(r, tickers)
    expect_all_ok(r, good)
    st = server().stats()
    for k, sym in names.items():
        expect_err(r, sym, *bad[k], status=200)
        check(server_count(st, sym) == 1, "%s requested %d times" % (sym, server_count(st, sym)))
    check(r.stats()["requests_sent"] == len(tickers), "stats %s" % r.stats())
    # The connections survived the per-response errors (their framing was sound).
    check(r.stats()["conns_opened"] <= 2, "stats %s" % r.stats())


@test
def coded_error_statuses():
    """Error answers are coded too: Yahoo's 404 JSON still names the error (a 429 is worded by
    qfetch whatever its body says, issue 17)."""
    rate, gone = "RATEALWAYS_" + uniq(), "FB"
    r = qf([rate, gone], "--retries", "0")
    expect_rc(r, 1)
    expect_err(r, rate, "rate limited by localhost (HTTP 429)", status=429)
    expect_err(r, gone, "HTTP 404", "delisted", status=404)
    check(server().stats()["headers_per_symbol"][rate].get("accept-encoding") == "gzip, deflate",
          "no Accept-Encoding sent")


# ---------------------------------------------------------------- nginx

def die_with_parent():
    """nginx has no stdin to watch: ask the kernel to SIGTERM it if this process dies."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def access_rows(path):
    """The (int, int, int, path) rows of an access log written as `N N N "PATH"` lines."""
    rows = []
    with open(path) as f:
        for ln in f:
            m = re.match(r'(\d+) (\d+) (\d+) "(.*)"', ln)
            if m:
                rows.append((int(m.group(1)), int(m.group(2)), int(m.group(3)), m.group(4)))
    return rows


class Nginx:
    """nginx on 127.0.0.1 with the test certificate. By default it serves a generated file
    per symbol; `locations` replaces the server's location blocks, `log` the access log format,
    `http_extra` adds http-level directives."""

    def __init__(self, symbols=(), locations="location / { }", workers=1, http_extra="",
                 log="'$connection $connection_requests $status \"$request_uri\"'",
                 prefix="qfetch-nginx-", session_cache=True):
        self.dir = tempfile.mkdtemp(prefix=prefix)
        CLEANUP.append(self.stop)
        root = os.path.join(self.dir, "root", "v8", "finance", "chart")
        os.makedirs(root)
        for sym in symbols:
            with open(os.path.join(root, sym), "wb") as f:
                f.write(chart_body(sym, repr(price_for(sym))))
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        conf = f"""{user}daemon off;
master_process on;
worker_processes {workers};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    types {{ }}
    default_type application/json;
    log_format qf {log};
    access_log {d}/access.log qf;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 60s;
    {"ssl_session_cache shared:qf:1m;" if session_cache else ""}
{http_extra}
    server {{
        listen 127.0.0.1:{self.port} ssl;
        server_name localhost;
        ssl_certificate {cert("server.pem")};
        ssl_certificate_key {cert("server.key")};
        root {d}/root;
        {locations}
    }}
}}
"""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.errf = open(os.path.join(d, "stderr.log"), "wb")
        self.proc = subprocess.Popen(["nginx", "-e", os.path.join(d, "error.log"), "-c", self.conf,
                                      "-p", d], stdin=subprocess.DEVNULL, stdout=self.errf,
                                     stderr=self.errf, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            self.stop()
            raise Fail("nginx did not listen on %d" % self.port)
        if self.proc.poll() is not None:
            err = open(os.path.join(d, "error.log")).read()[-500:]
            self.stop()
            raise Fail("nginx exited: %s" % err)
        self.url = "https://localhost:%d/v8/finance/chart/{}" % self.port

    def access(self):
        return access_rows(os.path.join(self.dir, "access.log"))

    def stop(self):
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGQUIT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


_NGINX = []
NGINX_SYMS = ["NG%s%03d" % (CFG.tag, i) for i in range(227)] + ["^NG" + CFG.tag]


def nginx():
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    if not _NGINX:
        _NGINX.append(Nginx(NGINX_SYMS))
    return _NGINX[0]


@test
def nginx_200_c4():
    ng = nginx()
    tickers = NGINX_SYMS[:200]
    r = qf(tickers, "-c", "4", srv=ng, timeout=60)
    expect_rc(r, 0)
    expect_order(r, tickers)
    expect_all_ok(r, tickers)
    rows = settled(lambda: [row for row in ng.access()
                            if row[3].startswith("/v8/finance/chart/NG")],
                   lambda rows: len(rows) >= 200)
    check(len(rows) == 200, "nginx logged %d requests" % len(rows))
    conns = {row[0] for row in rows}
    check(len(conns) <= 4, "nginx saw %d connections" % len(conns))
    cs = r.stats()
    check(cs["conns_opened"] <= 4 and cs["reused"] >= 196, "stats %s" % cs)


@test
def nginx_without_keepalive_resumes():
    """nginx closing every connection after its answer (keepalive_timeout 0): each connection
    still resumes on a ticket an earlier one brought, so only the first wave pays full
    handshakes. With 16 sessions kept per host, a -c 32 run made about a third of its
    handshakes full."""
    tickers = NGINX_SYMS
    ng = Nginx(tickers, locations="location / { keepalive_timeout 0; }",
               prefix="qfetch-nginx-noka-")
    r = qf(tickers, "-c", "32", "--no-session-cache", srv=ng, timeout=90)
    expect_rc(r, 0)
    expect_all_ok(r, tickers)
    cs = r.stats()
    check(cs["conns_opened"] >= len(tickers), "nginx kept connections alive: %s" % cs)
    check(cs["tls_full"] <= 2 * 32, "%d full handshakes for %d connections: %s"
          % (cs["tls_full"], cs["conns_opened"], cs))
    note("%d full, %d resumed" % (cs["tls_full"], cs["tls_resumed"]))


@test
def nginx_tls13_suite_order():
    """qfetch offers TLS 1.3's suites in browser order, AES-128-GCM first (OpenSSL's own order
    puts AES-256-GCM first): nginx, which follows the client's order, must pick it, and -v
    names it as curl -v does. A server that allows only AES-256-GCM still gets its answers,
    and the order never brings back a suite the system's OpenSSL configuration removed."""
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    syms = ["SU%s%d" % (CFG.tag, i) for i in range(3)]
    log = "'$connection $connection_requests $status \"$request_uri\" $ssl_protocol $ssl_cipher'"
    policy = os.path.join(tempfile.mkdtemp(prefix="qfetch-policy-"), "openssl.cnf")
    CLEANUP.append(lambda: shutil.rmtree(os.path.dirname(policy), ignore_errors=True))
    with open(policy, "w") as f:
        f.write("openssl_conf = qf_init\n[qf_init]\nssl_conf = qf_ssl\n[qf_ssl]\n"
                "system_default = qf_sys\n[qf_sys]\nCiphersuites = TLS_CHACHA20_POLY1305_SHA256\n")
    cases = ((None, None, "TLS_AES_128_GCM_SHA256"),
             ("TLS_AES_256_GCM_SHA384", None, "TLS_AES_256_GCM_SHA384"),
             (None, policy, "TLS_CHACHA20_POLY1305_SHA256"))
    for only, conf, want in cases:
        # This nginx's default protocols stop at TLS 1.2.
        extra = "    ssl_protocols TLSv1.2 TLSv1.3;"
        extra += "\n    ssl_conf_command Ciphersuites %s;" % only if only else ""
        ng = Nginx(syms, log=log, http_extra=extra, prefix="qfetch-nginx-suite-")
        try:
            env = dict(os.environ, OPENSSL_CONF=conf) if conf else None
            r = run_raw(["-u", ng.url, "--cacert", cert("ca.pem"), "-f", "json", "-c", "2", "-v",
                         "--no-session-cache", "-t"] + syms, env=env)
            expect_rc(r, 0)
            expect_all_ok(r, syms)
            check("TLSv1.3 " + want in r.err, "-v does not name %s: %s" % (want, r.err[-400:]))
            def read():
                with open(os.path.join(ng.dir, "access.log")) as f:
                    return [ln.split() for ln in f]
            rows = settled(read, lambda rows: len(rows) >= len(syms))
            got = sorted({tuple(row[-2:]) for row in rows})
            check(got == [("TLSv1.3", want)], "nginx negotiated %s, expected %s" % (got, want))
        finally:
            ng.stop()


@test
def nginx_404_and_encoding():
    ng = nginx()
    missing = "NOSUCH" + uniq()
    enc = "^NG" + CFG.tag
    tickers = [NGINX_SYMS[0], missing, enc]
    r = qf(tickers, srv=ng)
    expect_rc(r, 1)
    expect_ok(r, NGINX_SYMS[0])
    expect_ok(r, enc)
    expect_err(r, missing, "HTTP 404", status=404)


@test
def nginx_gzip():
    """nginx's own gzip (chunked, as real servers stream it) against --compressed and
    --no-compressed: the same prices, and nginx's log shows which answers it compressed."""
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    syms = ["NGZ%s%03d" % (CFG.tag, i) for i in range(30)]
    ng = Nginx(syms, http_extra="gzip on; gzip_types application/json; gzip_min_length 0;",
               log="'$connection $connection_requests $status \"$request_uri\" $gzip_ratio'",
               prefix="qfetch-nginx-gzip-")
    try:
        coded = qf(syms, "-c", "2", "--no-session-cache", srv=ng)
        plain = qf(syms, "-c", "2", "--no-session-cache", "--no-compressed", srv=ng)
        def read():
            with open(os.path.join(ng.dir, "access.log")) as f:
                return [ln.split()[-1] for ln in f]
        ratios = settled(read, lambda rows: len(rows) >= 60)
    finally:
        ng.stop()
    for r in (coded, plain):
        expect_rc(r, 0)
        expect_order(r, syms)
        expect_all_ok(r, syms)
    check(len(ratios) == 60, "nginx logged %d requests" % len(ratios))
    check(all(x != "-" for x in ratios[:30]), "nginx did not compress: %r" % ratios[:30])
    check(all(x == "-" for x in ratios[30:]), "nginx compressed unasked: %r" % ratios[30:])
    b1, b0 = coded.stats()["bytes_read"], plain.stats()["bytes_read"]
    check(b1 < b0, "bytes_read %d compressed vs %d plain" % (b1, b0))
    note("nginx, 30 tickers: bytes_read %d plain, %d compressed" % (b0, b1))


# ---------------------------------------------------------------- Apache

APACHE_MODULES = "/usr/lib/apache2/modules"


def apache_bin():
    """Debian installs apache2 in /usr/sbin, which a user's PATH may lack."""
    return shutil.which("apache2", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class Apache:
    """Debian's apache2 on 127.0.0.1 with a config of our own (no system service, nothing
    under /etc or /var): the event MPM and the keep-alive settings of Debian's stock
    apache2.conf and mpm_event.conf, a plain and a TLS (mod_ssl) listener, and a generated file
    per symbol under /v8/finance/chart/, as the nginx tests serve them. Its access log holds
    `REMOTE_PORT KEEPALIVE_COUNT STATUS "PATH"` lines: the port tells connections apart.
    workers: None keeps Debian's MPM numbers (2 processes of 25 threads to start with);
    N runs one process of N threads."""

    def __init__(self, symbols, max_keepalive=100, workers=None, keepalive_timeout=5,
                 prefix="qfetch-apache-"):
        self.dir = d = tempfile.mkdtemp(prefix=prefix)
        CLEANUP.append(self.stop)
        root = os.path.join(d, "root", "v8", "finance", "chart")
        os.makedirs(root)
        os.makedirs(os.path.join(d, "run"))
        for sym in symbols:
            with open(os.path.join(root, sym), "wb") as f:
                f.write(chart_body(sym, repr(price_for(sym))))
        # As root, Apache's workers switch to an unprivileged user: they must read the files.
        for dirpath, _, _ in os.walk(d):
            os.chmod(dirpath, 0o755)
        ports = []
        socks = []
        for _ in range(2):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
        for s in socks:
            s.close()
        self.plain_port, self.tls_port = ports
        user = "User www-data\nGroup www-data\n" if os.geteuid() == 0 else ""
        mods = ["mpm_event", "authz_core", "mime", "ssl", "socache_shmcb"]
        load = "".join("LoadModule %s_module %s/mod_%s.so\n" % (m, APACHE_MODULES, m)
                       for m in mods)
        # KeepAlive, KeepAliveTimeout and (workers None) the MPM's numbers are those of
        # Debian's /etc/apache2/apache2.conf and mods-available/mpm_event.conf.
        mpm = """StartServers 2
MinSpareThreads 25
MaxSpareThreads 75
ThreadLimit 64
ThreadsPerChild 25
MaxRequestWorkers 150
"""
        if workers is not None:
            mpm = f"""ServerLimit 1
StartServers 1
MinSpareThreads 1
MaxSpareThreads {workers}
ThreadLimit {workers}
ThreadsPerChild {workers}
MaxRequestWorkers {workers}
"""
        conf = f"""ServerRoot "{d}"
ServerName localhost
PidFile {d}/apache2.pid
DefaultRuntimeDir {d}/run
Mutex file:{d}/run default
ErrorLog {d}/error.log
LogLevel warn
{user}{load}
{mpm}MaxConnectionsPerChild 0
Timeout 300
KeepAlive On
MaxKeepAliveRequests {max_keepalive}
KeepAliveTimeout {keepalive_timeout}
Listen 127.0.0.1:{self.plain_port}
Listen 127.0.0.1:{self.tls_port} https
LogFormat "%{{remote}}p %k %>s \\"%U\\"" qf
CustomLog {d}/access.log qf
DocumentRoot {d}/root
<Directory />
    Require all granted
</Directory>
<Location /v8/finance/chart/>
    ForceType application/json
</Location>
SSLSessionCache shmcb:{d}/run/ssl_scache(512000)
SSLSessionCacheTimeout 300
<VirtualHost 127.0.0.1:{self.tls_port}>
    SSLEngine on
    SSLCertificateFile {cert("server.pem")}
    SSLCertificateKeyFile {cert("server.key")}
</VirtualHost>
"""
        open(os.path.join(d, "mime.types"), "w").close()  # mod_mime's TypesConfig: ForceType
        self.conf = os.path.join(d, "apache2.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.errf = open(os.path.join(d, "stderr.log"), "wb")
        # -DFOREGROUND: the parent stays our child (stopped with SIGTERM, which also ends its
        # workers); env -i: none of the APACHE_* variables Debian's envvars would set.
        self.proc = subprocess.Popen([apache_bin(), "-f", self.conf, "-DFOREGROUND"], env={},
                                     stdin=subprocess.DEVNULL, stdout=self.errf,
                                     stderr=self.errf, preexec_fn=die_with_parent)
        # Apache listens before its modules' post-config checks and writes its pid file only
        # after them: a listening port alone does not mean it is serving.
        pidfile = os.path.join(d, "apache2.pid")
        deadline = time.monotonic() + 10
        up = set()
        while time.monotonic() < deadline and self.proc.poll() is None and len(up) < 2:
            for port in ports if os.path.exists(pidfile) else ():
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                    up.add(port)
                except OSError:
                    pass
            time.sleep(0.05)
        if len(up) < 2 or self.proc.poll() is not None:
            why = "exited" if self.proc.poll() is not None else "did not listen"
            err = open(os.path.join(d, "stderr.log"), errors="replace").read()[-300:]
            if os.path.exists(os.path.join(d, "error.log")):
                err += open(os.path.join(d, "error.log"), errors="replace").read()[-300:]
            self.stop()
            raise Fail("apache2 %s: %s" % (why, err))
        self.plain_url = "http://localhost:%d/v8/finance/chart/{}" % self.plain_port
        self.tls_url = "https://localhost:%d/v8/finance/chart/{}" % self.tls_port

    def access(self):
        """(remote port, keep-alive count, status, path) rows of the access log."""
        return access_rows(os.path.join(self.dir, "access.log"))

    def clear_log(self):
        open(os.path.join(self.dir, "access.log"), "w").close()

    def open_connections(self, port):
        """Connections to port that Apache has not closed: ESTABLISHED or CLOSE_WAIT
        sockets whose local port it is (/proc/net/tcp, IPv4 loopback)."""
        n = 0
        with open("/proc/net/tcp") as f:
            for ln in f.readlines()[1:]:
                local, st = ln.split()[1], ln.split()[3]
                if int(local.split(":")[1], 16) == port and st in ("01", "08"):
                    n += 1
        return n

    def stop(self):
        if getattr(self, "proc", None) is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.dir, ignore_errors=True)


_APACHE = {}
APACHE_N = 2000
APACHE_C = 64
APACHE_SYMS = ["AP%s%04d" % (CFG.tag, i) for i in range(APACHE_N)]


def apache(max_keepalive=100, workers=2 * APACHE_C, keepalive_timeout=5):
    """One Apache per configuration, started on first use. Skips (counted) only when apache2
    is not installed and cannot be: `.ci/deps test` installs it."""
    if not apache_bin() or not os.path.exists(APACHE_MODULES + "/mod_ssl.so"):
        raise Skip("apache2 not installed (.ci/deps test installs it)")
    key = (max_keepalive, workers, keepalive_timeout)
    if key not in _APACHE:
        _APACHE[key] = Apache(APACHE_SYMS, max_keepalive=max_keepalive, workers=workers,
                              keepalive_timeout=keepalive_timeout)
    return _APACHE[key]


def apache_run(ap, tls, retries=0):
    """2,000 tickers at -c 64, by default with --retries 0: every price right and in order (a
    request sent on a connection Apache had already closed, and not re-sent, would fail its
    ticker), each symbol served once. Returns (stats, access log rows)."""
    ap.clear_log()
    opts = ["--retries", str(retries)] if retries is not None else []
    r = qf(APACHE_SYMS, "-c", str(APACHE_C), *opts, srv=ap,
           url=ap.tls_url if tls else ap.plain_url, timeout=120)
    expect_rc(r, 0)
    expect_order(r, APACHE_SYMS)
    bad = [it for it in r.items()
           if it.get("price") != cents(price_for(it["ticker"])) or it.get("currency") != "USD"]
    check(not bad, "%d of %d wrong, first %r" % (len(bad), APACHE_N, bad[:1]))
    cs = r.stats()
    check(retries != 0 or cs["retries"] == 0, "retries with --retries 0: %s" % cs)
    rows = settled(lambda: [row for row in ap.access()
                            if row[3].startswith("/v8/finance/chart/AP")],
                   lambda rows: len(rows) >= APACHE_N)
    got = {row[3].rsplit("/", 1)[1] for row in rows if row[2] == 200}
    check(got == set(APACHE_SYMS) and len(rows) == APACHE_N,
          "Apache logged %d requests for %d of the %d symbols" % (len(rows), len(got), APACHE_N))
    note("%s: %d connections, %d requests re-sent, %d retried, up to %d requests on one "
         "connection" % ("TLS" if tls else "plain", cs["conns_opened"], cs["stale_resends"],
                         cs["retries"], 1 + max(row[1] for row in rows)))
    return cs, rows


def apache_case(max_keepalive, tls):
    """apache_run against an Apache with a worker thread for every connection, and a bound on
    the connections opened.

    Why the bound holds: Apache ends a connection after the response to its request number
    MaxKeepAliveRequests + 1 (the directive counts the requests after the first; %k in the
    log), announced with Connection: close. So R requests need at least R / (M + 1)
    connections, and the limit alone never justifies more. Any other close is Apache's choice
    (the close after the run, an idle connection closed early) and costs at most one new
    connection per slot: the -c connections open at once, once more. A tenth of slack on M
    covers connections ended a few requests short of it (a request re-sent elsewhere).

    Why one process of 128 worker threads (the keep-alive settings stay Debian's): an event
    MPM process whose workers are all busy closes every idle keep-alive connection it holds.
    With Debian's numbers (processes of 25 threads, connections spread over them as they
    race to accept) that happens all the time under 64 connections, as often as the
    scheduler decides: curl --parallel-max 64 opened 91-161 connections for 2,000 requests
    here, qfetch 194-434. Issue 16's 467-570 connections for 1,000 requests were measured
    that way. No bound holds on a loaded machine; apache_busy_workers runs that case for
    correctness alone."""
    ap = apache(max_keepalive)
    cs, rows = apache_run(ap, tls)
    bound = 2 * APACHE_C + int(APACHE_N / (0.9 * max_keepalive))
    check(cs["conns_opened"] <= bound, "%d connections for %d requests (bound %d): %s"
          % (cs["conns_opened"], APACHE_N, bound, cs))
    check(max(row[1] for row in rows) <= max_keepalive,
          "Apache served more than MaxKeepAliveRequests + 1 requests on a connection")
    return cs, rows


@test
def apache_stock_keepalive_plain():
    """MaxKeepAliveRequests 100, KeepAliveTimeout 5: 2,000 tickers at -c 64 over plain HTTP."""
    apache_case(100, False)


@test
def apache_stock_keepalive_tls():
    apache_case(100, True)


@test
def apache_max_keepalive_10_plain():
    """MaxKeepAliveRequests 10: every connection ends after its 11th response, announced, so
    at least 182 connections; no request is lost where one ends."""
    cs, rows = apache_case(10, False)
    check(cs["conns_opened"] >= -(-APACHE_N // 11), "%s" % cs)
    check(any(row[1] == 10 for row in rows), "no connection reached MaxKeepAliveRequests")


@test
def apache_max_keepalive_10_tls():
    cs, rows = apache_case(10, True)
    check(cs["conns_opened"] >= -(-APACHE_N // 11), "%s" % cs)
    check(any(row[1] == 10 for row in rows), "no connection reached MaxKeepAliveRequests")


@test
def apache_idle_closed_between_batches():
    """KeepAliveTimeout 1, symbols streamed on stdin in two batches with a pause between them
    in which Apache closes every idle connection (the test waits until the kernel shows none
    left open on Apache's side). qfetch must notice each close before reusing the
    connection: with --retries 0 every price is right and no request was sent into a closed
    connection (stale_resends 0), over plain HTTP and TLS."""
    ap = apache(100, workers=2 * APACHE_C, keepalive_timeout=1)
    for tls in (False, True):
        port, url = (ap.tls_port, ap.tls_url) if tls else (ap.plain_port, ap.plain_url)
        b1, b2 = APACHE_SYMS[:64], APACHE_SYMS[64:128]
        t = Trickle(["-u", url, "--cacert", cert("ca.pem"), "-f", "csv", "--stats", "-c", "8",
                     "--retries", "0", "-t", "-"])
        t.write("\n".join(b1) + "\n")
        check(t.pump(30, lambda out: out.count(b"\r\n") == 1 + len(b1)),
              "the first batch's rows did not come: %r" % t.out[-200:])
        deadline = time.monotonic() + 15
        while ap.open_connections(port) > 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        check(ap.open_connections(port) == 0, "Apache kept its idle connections past "
              "KeepAliveTimeout 1")
        t.write("\n".join(b2) + "\n")
        r = t.finish()
        expect_rc(r, 0)
        rows = list(csv.reader(io.StringIO(r.out)))[1:]
        want = [[sym, cents(price_for(sym)), "USD", "200", ""] for sym in b1 + b2]
        check(rows == want, "%s: rows differ, first %r" % (url, [
            (g, w) for g, w in zip(rows, want) if g != w][:1]))
        cs = r.stats()
        check(cs["stale_resends"] == 0 and cs["retries"] == 0,
              "%s: a request went into a closed connection: %s" % (url, cs))
        check(8 < cs["conns_opened"] <= 16, "%s: %s" % (url, cs))


@test
def apache_busy_workers():
    """Debian's stock event MPM (StartServers 2: 50 worker threads) under 64 connections:
    Apache closes idle keep-alive connections whenever every worker is busy, some as a
    request is on its way. Every price must still be right, over plain HTTP and TLS; the
    connection count depends on the scheduler and is only reported.
    With the default retries, not --retries 0: Apache closes all its idle connections at
    once, so a request re-sent on another kept-alive connection can meet the same fate, and
    after QF_MAX_RESENDS (3) such re-sends it fails (about one run in fifteen here)."""
    ap = apache(100, workers=None)
    for tls in (False, True):
        apache_run(ap, tls, retries=None)


# ---------------------------------------------------------------- real captured Yahoo responses

def fixture_expectations():
    """(stem, kind, expected) from SOURCES.md and the folder: kind ok/err."""
    d = CFG.fixtures
    src = open(os.path.join(d, "SOURCES.md")).read()
    out = []
    for m in re.finditer(r"^\| `([^`/]+)\.json` \|.*?\| ([-0-9.eE]+) -> \**([-0-9.]+)\**",
                         src, re.M):
        name, lit, want = m.group(1), m.group(2), m.group(3)
        stem = name[:-len(".recording")] if name.endswith(".recording") else name
        out.append((stem, "ok", (lit, want)))
    m = re.search(r"`errors/(200-[^`]+)\.json`.*?`regularMarketPrice` \((\d+\.\d+)\)", src)
    if m:
        out.append((m.group(1), "ok", (m.group(2), cents(m.group(2)))))
    for f in sorted(os.listdir(os.path.join(d, "errors"))):
        stem, ext = os.path.splitext(f)
        if stem[:3].isdigit() and stem[:3] != "200":
            out.append((stem, "err", int(stem[:3])))
    return out


def fixture_body_price(stem):
    d = CFG.fixtures
    for p in (os.path.join(d, stem + ".json"), os.path.join(d, "errors", stem + ".json")):
        if os.path.exists(p):
            return json.load(open(p))["chart"]["result"][0]["meta"]
    rec = json.load(open(os.path.join(d, stem + ".recording.json")))
    return rec["response"]["bodyJson"]["chart"]["result"][0]["meta"]


@test
def yahoo_fixtures():
    if not CFG.fixtures:
        raise Skip("no fixtures folder")
    exp = fixture_expectations()
    check(len([e for e in exp if e[1] == "ok"]) >= 6, "SOURCES.md table not understood: %s" % exp)
    tickers = ["FIX_" + stem for stem, _, _ in exp]
    r = qf(tickers, "--retries", "0")
    expect_rc(r, 1)
    expect_order(r, tickers)
    for (stem, kind, want), t in zip(exp, tickers):
        if kind == "ok":
            lit, text = want
            meta = fixture_body_price(stem)
            check(float(lit) == meta["regularMarketPrice"], "SOURCES.md lists %s for %s, the body "
                  "holds %r" % (lit, stem, meta["regularMarketPrice"]))
            check(cents(meta["regularMarketPrice"]) == text,
                  "SOURCES.md says %s for %s, the body says %s"
                  % (text, stem, meta["regularMarketPrice"]))
            it = r.by_ticker()[t]
            check("error" not in it, "%s failed: %r" % (t, it))
            check(it.get("price") == text, "%s: price %r, expected %s" % (t, it.get("price"), text))
            check(it.get("currency") == meta["currency"], "%s: currency %r, expected %r"
                  % (t, it.get("currency"), meta["currency"]))
        else:
            words = ["HTTP %d" % want]
            if want == 404:
                words.append("No data found, symbol may be delisted")
            expect_err(r, t, *words, status=want)


# ---------------------------------------------------------------- valgrind

@valgrind_test
def valgrind_batch():
    if not shutil.which("valgrind"):
        raise Fail("valgrind not installed")
    tickers = [uniq(), "CHUNKED_" + uniq(), "FB", "PRICE_2.675", uniq(), "GZIPCHUNKED_" + uniq(),
               "RAWDEFLATE_" + uniq(), "BADGZIP_" + uniq()]
    srv = server()
    args = ["-u", srv.url, "--cacert", cert("ca.pem"), "-f", "json", "--stats", "-t"] + tickers
    r = run_raw(args, timeout=120,
                prefix=["valgrind", "--error-exitcode=9", "--leak-check=full",
                        "--errors-for-leak-kinds=definite,indirect", "--track-fds=no"])
    check(r.rc in (0, 1), "valgrind/qfetch exit %s" % r.rc)
    check(re.search(r"ERROR SUMMARY: 0 errors", r.err), "valgrind reported errors")
    expect_rc(r, 1)
    expect_ok(r, tickers[0])
    expect_ok(r, tickers[1])
    expect_ok(r, "PRICE_2.675", "2.675")
    expect_err(r, "FB", "HTTP 404", status=404)
    expect_ok(r, tickers[5])
    expect_ok(r, tickers[6])
    expect_err(r, tickers[7], "corrupt gzip body", status=200)


# ---------------------------------------------------------------- main

def tail(text, n=15):
    lines = text.rstrip("\n").splitlines()
    return "\n".join("    | " + ln for ln in lines[-n:])


def run_selected(selected, certs=("ca.pem",)):
    """Runs the tests in turn (each `ok`/`FAIL` line as it ends), then every CLEANUP.
    Returns (passed, failed, skipped); the caller prints summary_line() of them."""
    def on_term(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, on_term)

    passed = failed = skipped = 0
    try:
        pre = []
        if not os.access(CFG.qfetch, os.X_OK):
            pre.append("%s is not an executable (run make)" % CFG.qfetch)
        for name in certs:
            if not os.path.isfile(cert(name)):
                pre.append("%s missing (run make certs)" % cert(name))
        if pre:
            for t in selected:
                print("FAIL %s: %s" % (t.__name__, "; ".join(pre)), flush=True)
            failed = len(selected)
            selected = []
        for t in selected:
            del LAST_RUNS[:]
            del NOTES[:]
            t0 = time.monotonic()
            try:
                t()
                passed += 1
                extra = ("; " + "; ".join(NOTES)) if NOTES else ""
                print("ok %s  # %.1fs%s" % (t.__name__, time.monotonic() - t0, extra), flush=True)
            except Skip as e:
                skipped += 1
                print("skip %s: %s" % (t.__name__, e), flush=True)
                continue
            except Fail as e:
                failed += 1
                print("FAIL %s: %s" % (t.__name__, e), flush=True)
            except Exception as e:  # a bug in the test or an unexpected condition
                failed += 1
                print("FAIL %s: %s: %s" % (t.__name__, type(e).__name__, e), flush=True)
                print(tail(traceback.format_exc(), 8), flush=True)
            else:
                continue
            if LAST_RUNS:
                r = LAST_RUNS[-1]
                print("    $ %s" % " ".join(r.cmd)[:400], flush=True)
                print("    exit %s after %.2fs; stderr tail:" % (r.rc, r.elapsed), flush=True)
                if r.err.strip():
                    print(tail(r.err), flush=True)
    except KeyboardInterrupt:
        failed += 1
        print("FAIL interrupted", flush=True)
    finally:
        for fn in reversed(CLEANUP):
            try:
                fn()
            except Exception:
                pass
    return passed, failed, skipped


def summary_line(passed, failed, skipped):
    """The closing line run.py and CI read."""
    return "%d passed, %d failed, %d skipped" % (passed, failed, skipped)


def setup(args, cache_prefix):
    """Paths from --build/--certs, and a session cache of the run's own (qfetch keeps TLS
    sessions in $XDG_CACHE_HOME/qfetch: runs stay hermetic and away from $HOME)."""
    os.environ["XDG_CACHE_HOME"] = tempfile.mkdtemp(prefix=cache_prefix)
    for k in [k for k in os.environ if k.lower() in PROXY_VARS]:
        del os.environ[k]  # qfetch honours them: the tests talk to their servers directly
    CLEANUP.append(lambda: shutil.rmtree(os.environ["XDG_CACHE_HOME"], ignore_errors=True))
    CFG.build = os.path.abspath(args.build)
    CFG.qfetch = os.path.join(CFG.build, "qfetch")
    CFG.certs = os.path.abspath(args.certs or os.path.join(CFG.build, "test", "certs"))


def main():
    ap = argparse.ArgumentParser(description="qfetch integration tests")
    ap.add_argument("--build", required=True)
    ap.add_argument("--certs", help="certificate directory (default: BUILD/test/certs)")
    ap.add_argument("--valgrind", action="store_true")
    ap.add_argument("--filter", default="")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    setup(args, "qfetch-it-cache-")
    CFG.valgrind = args.valgrind
    fx = os.environ.get("QF_FIXTURES", DEFAULT_FIXTURES)
    CFG.fixtures = fx if os.path.isfile(os.path.join(fx, "SOURCES.md")) else None

    selected = [t for t in TESTS if args.filter in t.__name__
                and (CFG.valgrind or not getattr(t, "valgrind_only", False))]
    if args.list:
        for t in selected:
            print(t.__name__)
        return 0
    passed, failed, skipped = run_selected(selected)
    print(summary_line(passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
