#!/usr/bin/python3
"""qfetch reliability suite (issue 3): fault injection, TLS refusals, bad user input, load.

    faults_and_limits.py --build DIR [--certs CERTDIR] [--load] [--filter SUBSTR] [--list]

Runs DIR/qfetch against tests/server.py (its fault-injecting specials), raw sockets and nginx.
Every test runs qfetch in a subprocess with a hard timeout, asserts real outcomes (the prices of
the untouched tickers, the named error of the broken ones, the run time, the server's counters)
and prints `ok <name>` or `FAIL <name>: <why>`; the last line is `N passed, M failed, K skipped`.
--load adds the slow tests: 100,000 tickers through nginx, peak RSS at 1k/10k/100k tickers,
valgrind on 1,000 tickers (run.py passes it for the non-sanitizer build only).
The helpers (TestServer, qf, expect_ok, expect_err, uniq, usage_case...) are cli_fetch.py's.
Servers listen on 127.0.0.1 only and are stopped at exit, also when a test fails.
"""
import argparse
import json
import os
import re
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cli_fetch as I  # noqa: E402
from cli_fetch import Fail, check, note, uniq, cert, expect_rc, expect_ok, expect_err  # noqa
from server import chart_body, price_for, record_types  # noqa: E402

PY = I.PY
SERVER_PY = I.SERVER_PY
LOAD_TIMEOUT_S = 240      # one 100,000-ticker run, or the valgrind run
RESTART_GAP_S = 0.2       # server_killed_and_restarted: SIGKILL to bind on the same port
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


def load_test(fn):
    fn.load_only = True
    TESTS.append(fn)
    return fn


class Cfg:
    load = False


CFG = Cfg()


# ---------------------------------------------------------------- running qfetch

GNU_TIME = "/usr/bin/time"


class Pending:
    """qfetch started in the background (output to temp files); finish() waits, bounded.

    measure_rss: peak RSS of qfetch alone. wait4's ru_maxrss of a child forked from this (large)
    Python process starts at Python's RSS: Linux carries the pre-exec high-water mark over
    exec. So the child is forked by GNU time (a small process) and time reports qfetch's
    ru_maxrss (%M, KiB) into a file. Without /usr/bin/time (Debian package `time`), VmHWM of
    /proc/PID/status is sampled every 2 ms once the process is qfetch (may miss the last ms)."""

    def __init__(self, args, stdin_text=None, preexec_fn=None, measure_rss=False):
        self.cmd = [I.CFG.qfetch] + list(args)
        self.rss_file = None
        prefix = []
        self.hwm_kb = 0
        self.rss_method = None
        if measure_rss and not os.access(GNU_TIME, os.X_OK):
            self.rss_method = "VmHWM sampled"
        elif measure_rss:
            self.rss_method = "GNU time"
            fd, self.rss_file = tempfile.mkstemp(prefix="qfetch-rss-")
            os.close(fd)
            I.CLEANUP.append(lambda: os.path.exists(self.rss_file) and os.unlink(self.rss_file))
            prefix = [GNU_TIME, "-f", "%M", "-o", self.rss_file]
        self.outf, self.errf = tempfile.TemporaryFile(), tempfile.TemporaryFile()
        inf = subprocess.DEVNULL
        if stdin_text is not None:
            inf = tempfile.TemporaryFile()
            inf.write(stdin_text.encode())
            inf.seek(0)
        self.t0 = time.monotonic()
        # Own session: kill() ends qfetch and GNU time together, by this process group's id.
        self.proc = subprocess.Popen(prefix + self.cmd, stdin=inf, stdout=self.outf,
                                     stderr=self.errf, preexec_fn=preexec_fn,
                                     start_new_session=True)
        I.CLEANUP.append(self.kill)
        self.maxrss_kb = None
        self.lock = threading.Lock()
        self.timed_out = False
        self.sampler = None
        if self.rss_method == "VmHWM sampled":
            self.sampler = threading.Thread(target=self._sample_hwm, daemon=True)
            self.sampler.start()

    def _sample_hwm(self):
        path = "/proc/%d/status" % self.proc.pid
        while self.proc.returncode is None:
            try:
                with open(path) as f:
                    text = f.read()
            except OSError:
                break
            if re.search(r"^Name:\s+qfetch$", text, re.M):  # after exec, not Python's fork
                m = re.search(r"^VmHWM:\s+(\d+) kB", text, re.M)
                if m:
                    self.hwm_kb = max(self.hwm_kb, int(m.group(1)))
            time.sleep(0.002)

    def _expire(self):
        """Watchdog: SIGKILL the process group unless it has been reaped already."""
        with self.lock:
            if self.proc.returncode is None:
                self.timed_out = True
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass

    def kill(self):
        if self.proc.returncode is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except OSError:
                pass
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    def finish(self, timeout):
        """Waits under a watchdog that kills qfetch after timeout."""
        watchdog = threading.Timer(timeout, self._expire)
        watchdog.start()
        try:
            _, status = os.waitpid(self.proc.pid, 0)
            with self.lock:
                rc = self.proc.returncode = os.waitstatus_to_exitcode(status)
        finally:
            watchdog.cancel()
        elapsed = time.monotonic() - self.t0
        if self.sampler is not None:
            self.sampler.join(2)
            self.maxrss_kb = self.hwm_kb or None
        if self.rss_file and not self.timed_out:
            with open(self.rss_file) as f:
                text = f.read().strip().splitlines()
            # GNU time prefixes "Command exited with non-zero status N" when rc != 0.
            check(text and text[-1].isdigit(), "no RSS figure from time: %r" % text)
            self.maxrss_kb = int(text[-1])
        self.outf.seek(0)
        self.errf.seek(0)
        r = I.Run(self.cmd, rc, self.outf.read().decode(errors="replace"),
                  self.errf.read().decode(errors="replace"), elapsed)
        I.LAST_RUNS.append(r)
        check(not self.timed_out, "qfetch did not finish within %ds (killed)" % timeout)
        check(rc >= 0, "qfetch killed by signal %d" % -rc)
        check(rc in (0, 1, 2), "qfetch exited with %d" % rc)
        return r


def qf(tickers, *opts, stats=False, **kw):
    """cli_fetch.py's qf() without --stats unless asked: a test that does not check the
    counters does not fail with the statistics printer (stats_with_nothing_connected does)."""
    return I.qf(tickers, *opts, stats=stats, **kw)


def qf_args(srv, *opts, fmt="json", stats=True):
    args = ["-u", srv.url, "--cacert", cert("ca.pem")]
    if fmt:
        args += ["-f", fmt]
    if stats:
        args.append("--stats")
    return args + list(opts)


def nofile(n):
    def limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (n, n))
    return limit


def read_stats_file(path):
    check(os.path.isfile(path), "server wrote no stats file")
    with open(path) as f:
        return json.load(f)


def events(st, kind):
    return {e["sym"]: e for e in st.get("special_events", []) if e.get("kind") == kind}


# ---------------------------------------------------------------- 2. fault injection

class WaitingServer(I.TestServer):
    """server.py started now with --wait-usr1: the interpreter is loaded, the port not bound.
    go() makes it bind (the fixed port) within milliseconds."""

    def __init__(self, port, *opts):
        self.plain = False
        self.errf = tempfile.TemporaryFile()
        cmd = [PY, SERVER_PY, "--watch-stdin", "--wait-usr1", "--port", str(port),
               "--cert", cert("server.pem"), "--key", cert("server.key")] + list(opts)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=self.errf)
        I.CLEANUP.append(self.stop)
        deadline, buf = time.monotonic() + 10, b""
        while b"WAITING\n" not in buf and time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.5)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
        check(b"WAITING\n" in buf, "standby server did not start")
        self.port = port
        self.url = "https://localhost:%d/v8/finance/chart/{}" % port

    def go(self):
        self.proc.send_signal(signal.SIGUSR1)
        port = I.wait_port_line(self.proc, 5)
        check(port == self.port, "restarted server bound %s, expected %d" % (port, self.port))


@test
def server_killed_and_restarted():
    """SIGKILL mid-batch, the same port back RESTART_GAP_S later: the rest completes through
    retries. With --retries 3 the backoff (50-100, 100-200, 200-400 ms) reaches the last attempt
    no sooner than 350 ms after the first failure, so a restart within 0.2 s always makes it; at
    0.5 s it depends on the jitter."""
    tickers = ["SLOW_250_" + uniq() for _ in range(24)]
    first = I.TestServer()
    standby = WaitingServer(first.port)
    run = Pending(qf_args(first, "-c", "4", "--retries", "3", "-t", *tickers))
    answered = 0
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and run.proc.poll() is None:
        answered = first.stats()["status_counts"].get("200", 0)
        if answered >= 8:
            break
        time.sleep(0.03)
    check(answered >= 8, "first server answered only %d requests" % answered)
    t_kill = time.monotonic()
    first.proc.kill()
    first.proc.wait(5)
    time.sleep(RESTART_GAP_S)
    standby.go()
    gap = time.monotonic() - t_kill
    r = run.finish(40)
    expect_rc(r, 0)
    I.expect_order(r, tickers)
    I.expect_all_ok(r, tickers)
    st, cs = standby.stats(), r.stats()
    served_after = set(st["requests_per_symbol"])
    check(served_after and served_after <= set(tickers), "restarted server saw %s"
          % sorted(served_after)[:5])
    check(len(served_after) <= len(tickers) - 8, "restarted server answered %d tickers, but "
          "%d were answered before the kill" % (len(served_after), answered))
    check(cs["retries"] >= 1, "no retry counted: %s" % cs)
    check(max(st["requests_per_symbol"].values()) <= 4, "a ticker was requested %d times "
          "after the restart (--retries 3)" % max(st["requests_per_symbol"].values()))
    check(gap < 0.35, "restart took %.2fs" % gap)
    check(r.elapsed < 15, "batch took %.1fs" % r.elapsed)
    note("%d answered before SIGKILL, %d after the restart (%.2fs gap), retries=%d "
         "stale_resends=%d" % (answered, len(served_after), gap, cs["retries"],
                               cs["stale_resends"]))
    standby.stop()


@test
def stats_with_nothing_connected():
    """Every ticker fails before a connection exists (refused port): --stats and --stats=json
    still print their counters and exit 1 (phases without samples included)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    url = "https://localhost:%d/v8/finance/chart/{}" % port
    for flag in ("--stats", "--stats=json"):
        t = uniq()
        r = I.run_raw(["-u", url, "--cacert", cert("ca.pem"), "-f", "json", "--retries", "0",
                       flag, "-t", t], timeout=15)
        check("runtime error" not in r.err and "Sanitizer" not in r.err,
              "%s: sanitizer report: %s" % (flag, r.err[r.err.find("runtime error"):][:200]))
        expect_rc(r, 1)
        expect_err(r, t, status=0)
        check("conns_opened" in r.err, "%s printed no counters: %r" % (flag, r.err[-300:]))


@test
def reset_mid_headers_and_mid_body():
    """RST inside the header block (RSTHDR_) and inside the body (RST_): retried, then named."""
    hdr, body = "RSTHDR_" + uniq(), "RST_" + uniq()
    normals = [uniq() for _ in range(4)]
    tickers = [normals[0], hdr, normals[1], body, normals[2], normals[3]]
    with I.fresh_server() as srv:
        r = qf(tickers, "--retries", "1", "-c", "2", srv=srv)
        st = srv.stats()
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    for t in (hdr, body):
        it = expect_err(r, t, status=0 if t == hdr else None)
        low = it["error"].lower()
        check("reset" in low or "closed" in low, "%s: error %r names no reset/close"
              % (t, it["error"]))
        check(I.server_count(st, t) == 2, "%s requested %d times; a reset is retried once with "
              "--retries 1" % (t, I.server_count(st, t)))
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)


class RawListener:
    """127.0.0.1 listener in a thread: records what each accepted connection sends; reply
    (bytes or None) is sent once something arrived, then the connection is closed; with
    reply None it stays silent and open until close()."""

    def __init__(self, reply=None):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.received = []   # bytes per accepted connection
        self.held = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()
        I.CLEANUP.append(self.close)

    def loop(self):
        deadline = time.monotonic() + 60
        conns = []
        while not self.stop.is_set() and time.monotonic() < deadline:
            try:
                c, _ = self.sock.accept()
                c.setblocking(False)
                conns.append([c, bytearray(), False])
                self.received.append(b"")
            except socket.timeout:
                pass
            except OSError:
                break
            for i, (c, buf, done) in enumerate(conns):
                if done:
                    continue
                try:
                    data = c.recv(65536)
                    if not data:
                        conns[i][2] = True
                        continue
                    buf += data
                    self.received[i] = bytes(buf)
                    if self.reply is not None:
                        c.sendall(self.reply)
                        c.close()
                        conns[i][2] = True
                except BlockingIOError:
                    pass
                except OSError:
                    conns[i][2] = True
        self.held = [c for c, _, _ in conns]

    def close(self):
        self.stop.set()
        self.thread.join(2)
        for c in self.held:
            try:
                c.close()
            except OSError:
                pass
        self.sock.close()

    def url(self):
        return "https://localhost:%d/v8/finance/chart/{}" % self.port


def only_handshake_records(data):
    """True when data is TLS records of type 22 (handshake) or 21 (alert) only."""
    types = record_types(data)
    return bool(types) and all(t in (21, 22) for t in types) and b"GET " not in data


@test
def tcp_accepted_tls_never_starts():
    """Accepts TCP, never answers the ClientHello: --connect-timeout 1 ends each attempt, the
    timeout is retried, and nothing but the ClientHello is ever sent."""
    lst = RawListener(reply=None)
    try:
        t = uniq()
        r = qf([t], "--connect-timeout", "1", "--retries", "1", url=lst.url())
        expect_rc(r, 1)
        expect_err(r, t, "timed out", status=0)
        check(1.9 <= r.elapsed < 5, "two 1 s connect attempts took %.2fs" % r.elapsed)
        check(len(lst.received) == 2, "listener saw %d connections, expected 2 (one retry)"
              % len(lst.received))
        for data in lst.received:
            check(only_handshake_records(data), "client sent %r, not just a ClientHello"
                  % data[:60])
    finally:
        lst.close()


@test
def plain_http_answer_on_tls_port():
    """The server answers the ClientHello with plain HTTP: a TLS error, quickly, nothing sent."""
    lst = RawListener(reply=b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                            b"Connection: close\r\n\r\n")
    try:
        tickers = [uniq(), uniq()]
        r = qf(tickers, "--connect-timeout", "2", "--retries", "1", url=lst.url())
        expect_rc(r, 1)
        for t in tickers:
            it = expect_err(r, t, status=0)
            check("timed out" not in it["error"], "reported as a timeout: %r" % it["error"])
        check(r.elapsed < 3, "took %.1fs" % r.elapsed)
        for data in lst.received:
            check(only_handshake_records(data), "client sent %r" % data[:60])
    finally:
        lst.close()


@test
def tls_alert_mid_body():
    """Half a body, then: a real encrypted fatal alert (ALERT_), a hand-written plaintext alert
    record (ALERTRAW_), close_notify (ALERTCN_). Each ticker fails with its reason."""
    alert, raw, cn = "ALERT_" + uniq(), "ALERTRAW_" + uniq(), "ALERTCN_" + uniq()
    normals = [uniq() for _ in range(4)]
    tickers = [normals[0], alert, normals[1], raw, normals[2], cn, normals[3]]
    with I.fresh_server() as srv:
        r = qf(tickers, "--retries", "1", "-c", "2", srv=srv)
        st = srv.stats()
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, alert, "TLS", "alert", "bad record mac")
    expect_err(r, raw, "TLS")
    expect_err(r, cn, "closed")
    ev = events(st, "alert")
    check(ev.get(alert, {}).get("record_types") == [23] and ev[alert]["bytes"] > 0,
          "server did not send an encrypted alert record: %s" % ev.get(alert))
    for t in (alert, raw, cn):
        n = I.server_count(st, t)
        check(1 <= n <= 2, "%s requested %d times with --retries 1" % (t, n))
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)
    note("ALERT_ -> %r; ALERTRAW_ -> %r; ALERTCN_ -> %r" % tuple(
        r.by_ticker()[t]["error"] for t in (alert, raw, cn)))


@test
def slowloris_ended_by_timeout():
    """One byte per second: --timeout 2 (whole response, per attempt) ends it as timed out."""
    s = "SLOWLORIS_" + uniq()
    normals = [uniq(), uniq()]
    with I.fresh_server() as srv:
        r = qf([normals[0], s, normals[1]], "--timeout", "2", "--retries", "0", "-c", "2",
                 srv=srv)
        # The server notices the client's close at its next one-byte write (<= 1 s later).
        deadline = time.monotonic() + 2.5
        while True:
            st = srv.stats()
            if st["open_connections"] == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    expect_err(r, s, "timed out")
    check(1.9 <= r.elapsed < 4.5, "slowloris ended after %.2fs, expected about 2 s" % r.elapsed)
    check(I.server_count(st, s) == 1, "slowloris requested %d times" % I.server_count(st, s))
    check(st["open_connections"] == 0, "%d connections still open 2.5 s after qfetch exited"
          % st["open_connections"])


@test
def extra_bytes_in_separate_record():
    """A stray second response right after the real one, as its own TLS record (EXTRAREC_);
    -c 1, so the next ticker would read it (price 0.01) if the connection were reused.
    (cli_fetch.py special_extra_bytes covers the stray bytes inside the same record.)"""
    s = "EXTRAREC_" + uniq()
    normals = [uniq() for _ in range(3)]
    tickers = [normals[0], s, normals[1], normals[2]]
    with I.fresh_server() as srv:
        r = qf(tickers, "-c", "1", srv=srv)
        st = srv.stats()
    check(s in events(st, "extra_record"), "server did not send the stray record")
    expect_rc(r, 0)
    I.expect_all_ok(r, tickers)
    check(I.server_count(st, normals[1]) == 1, "%s requested %d times"
          % (normals[1], I.server_count(st, normals[1])))


@test
def response_before_request_complete():
    """A 40 KB User-Agent spans three TLS records; EARLY*_ answer once the request line is
    decrypted, with the rest of the request unread (then keep-alive, lingering close, RST)."""
    ua = "qfetch-reliability/" + "U" * 40000
    early, close, rst = "EARLY_" + uniq(), "EARLYCLOSE_" + uniq(), "EARLYRST_" + uniq()
    normals = [uniq() for _ in range(4)]
    tickers = [normals[0], early, normals[1], close, normals[2], rst, normals[3]]
    with I.fresh_server("--rcvbuf", "4096") as srv:
        r = qf(tickers, "-c", "1", "--retries", "0", "--user-agent", ua, srv=srv)
        st = srv.stats()
    expect_rc(r, 0)
    I.expect_order(r, tickers)
    I.expect_all_ok(r, tickers)
    ev = events(st, "early")
    for t in (early, close, rst):
        check(ev.get(t, {}).get("early"), "%s was not answered early: %s" % (t, ev.get(t)))
    check(ev[early].get("total", 0) > ev[early]["before"] + 20000,
          "EARLY_: answered after %s of %s request bytes" % (ev[early]["before"],
                                                             ev[early].get("total")))
    for t in normals:
        got = st["headers_per_symbol"].get(t, {}).get("user-agent", "")
        check(got == ua, "%s: server got a %d-byte User-Agent" % (t, len(got)))
        check(I.server_count(st, t) == 1, "%s requested %d times" % (t, I.server_count(st, t)))
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)
    note("EARLY_ answered after %d of %d request bytes" % (ev[early]["before"],
                                                          ev[early]["total"]))


@test
def emfile_ulimit_64():
    """ulimit -n 64, 1000 tickers, -c 100: fewer connections, every price right, no crash."""
    tickers = [uniq() for _ in range(1000)]
    with I.fresh_server() as srv:
        run = Pending(qf_args(srv, "-c", "100", "-t", "-"), stdin_text="\n".join(tickers),
                      preexec_fn=nofile(64))
        r = run.finish(90)
        st = srv.stats()
    expect_rc(r, 0)
    I.expect_order(r, tickers)
    I.expect_all_ok(r, tickers)
    cs = r.stats()
    check(st["max_concurrent_connections"] < 64, "%d concurrent connections under ulimit -n 64"
          % st["max_concurrent_connections"])
    check(st["requests_total"] == 1000, "server saw %d requests" % st["requests_total"])
    check(cs["retries"] == 0, "running out of fds cost retries: %s" % cs)
    note("max %d concurrent connections, conns_opened=%d, %.1fs" % (
        st["max_concurrent_connections"], cs["conns_opened"], r.elapsed))


@test
def emfile_no_fd_for_any_socket():
    """ulimit -n 5: stdio, epoll and timerfd leave no fd for a socket: each ticker fails with the
    reason, no crash, no hang. The URL has an IP literal: getaddrinfo itself needs fds (with
    too few it fails as "Name or service not known")."""
    tickers = [uniq() for _ in range(3)]
    with I.fresh_server() as srv:
        args = qf_args(srv, "--retries", "1", "-t", *tickers, stats=False)
        args[1] = srv.url.replace("localhost", "127.0.0.1")
        run = Pending(args, preexec_fn=nofile(5))
        r = run.finish(30)
        st = srv.stats()
    if r.rc == 2:  # refused up front is acceptable, if said on one line
        lines = [ln for ln in r.err.splitlines() if ln.strip()]
        check(len(lines) == 1 and r.out == "", "exit 2 but stderr %r" % r.err[:300])
        note("refused at start: %s" % lines[0])
        return
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "Too many open files")
    check(st["requests_total"] == 0, "server saw %d requests" % st["requests_total"])
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)


# ---------------------------------------------------------------- 3. TLS refusal matrix

def old_tls_refused(ver):
    path = os.path.join(tempfile.mkdtemp(prefix="qfetch-rel-"), "stats.json")
    I.CLEANUP.append(lambda: shutil.rmtree(os.path.dirname(path), ignore_errors=True))
    srv = I.TestServer("--tls-max", ver, "--stats-file", path)
    tickers = [uniq() for _ in range(3)]
    try:
        r = qf(tickers, "--retries", "1", srv=srv, timeout=30)
    finally:
        srv.stop()
    expect_rc(r, 1)
    for t in tickers:
        it = expect_err(r, t, "TLS", status=0)
        low = it["error"].lower()
        check("protocol version" in low or "unsupported protocol" in low,
              "%s: error %r does not name the protocol version" % (t, it["error"]))
    st = read_stats_file(path)
    check(st["requests_total"] == 0, "server received %d HTTP requests" % st["requests_total"])
    check(st["tls_handshakes"] == 0, "%d handshakes completed" % st["tls_handshakes"])
    check(st["tls_handshake_failures"] >= 1, "client never tried")
    check(st["tls_failed_with_request_bytes"] == 0, "client sent data after a failed handshake")
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)


@test
def tls_server_only_1_1():
    old_tls_refused("1.1")


@test
def tls_server_only_1_0():
    old_tls_refused("1.0")


@test
def tls_server_max_1_2_accepted():
    """Control for the two above: the same option with 1.2 works, and 1.2 is what was used."""
    tickers = [uniq(), uniq()]
    with I.fresh_server("--tls-max", "1.2") as srv:
        r = qf(tickers, srv=srv)
        st = srv.stats()
    expect_rc(r, 0)
    I.expect_all_ok(r, tickers)
    check(set(v for k, v in st["tls_versions"].items() if v) and
          all(k == "TLSv1.2" for k, v in st["tls_versions"].items() if v),
          "negotiated %s" % st["tls_versions"])


@test
def tls_chain_missing_intermediate():
    """Leaf signed by an intermediate, served without it: refused, no request sent.
    (cli_fetch.py tls_refusal's checks, without --stats.)"""
    tickers = [uniq() for _ in range(3)]
    with I.fresh_server(certname="chainleaf") as srv:
        r = qf(tickers, srv=srv, timeout=30)
        st = srv.stats()
    expect_rc(r, 1)
    for t in tickers:
        expect_err(r, t, "certificate", "unable to get local issuer certificate", status=0)
    check(st["requests_total"] == 0, "server received %d HTTP requests" % st["requests_total"])
    check(st["tls_failed_with_request_bytes"] == 0, "client sent data after a failed handshake")
    check(st["connections"] >= 1, "client never connected")
    check(r.elapsed < 5, "took %.1fs" % r.elapsed)


@test
def tls_chain_with_intermediate_accepted():
    """Control: the same leaf with its intermediate in the chain verifies."""
    tickers = [uniq(), uniq()]
    with I.fresh_server(certname="chainfull") as srv:
        r = qf(tickers, srv=srv)
        st = srv.stats()
    expect_rc(r, 0)
    I.expect_all_ok(r, tickers)
    check(st["requests_total"] == 2, "server saw %d requests" % st["requests_total"])


@test
def cacert_not_pem_variants():
    """--cacert: DER certificate, PEM without a certificate, empty file, a directory, a
    certificate block whose base64 is damaged after a good certificate: exit 2, though the
    certificates themselves are parsed only when a handshake needs them (test_engine.c
    test_trust_lazy). (cli_fetch.py usage_cacert_notpem and usage_cacert_unreadable cover text
    and missing.)"""
    d = tempfile.mkdtemp(prefix="qfetch-rel-")
    I.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    empty = os.path.join(d, "empty.pem")
    open(empty, "w").close()
    damaged = os.path.join(d, "damaged.pem")
    with open(cert("ca.pem")) as f, open(damaged, "w") as g:
        g.write(f.read() + "-----BEGIN CERTIFICATE-----\nMIIB*not*base64*\n"
                "-----END CERTIFICATE-----\n")
    srv = I.server()
    before = srv.stats()["requests_total"]
    for path in (cert("ca.der"), cert("keyonly.pem"), empty, d, damaged):
        try:
            I.usage_case(["-u", srv.url, "--cacert", path, "-t", uniq()])
        except Fail as e:
            raise Fail("--cacert %s: %s" % (os.path.basename(path) or path, e))
    check(srv.stats()["requests_total"] == before, "a request was sent")


@test
def session_cache_damaged():
    """A damaged --session-cache file (random bytes, a header with garbage lines, a real cache
    cut in the middle of a session, mode 0644, a symlink, a directory) never breaks a run: every
    price right, no crash; at worst a full handshake and a warning."""
    d = tempfile.mkdtemp(prefix="qfetch-rel-cache-")
    I.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    good = os.path.join(d, "good")
    with I.fresh_server() as srv:
        t = uniq()
        r = qf([t], "--session-cache", good, srv=srv)
        expect_rc(r, 0)
        check(os.path.isfile(good), "no session cache written")
        real = open(good, "rb").read()
        port = srv.port
        variants = {
            "random": os.urandom(3000),
            "garbage-lines": real.split(b"\n")[0] + b"\n" + b"\n".join([
                b"localhost %d 99999999999 !!!not-base64!!!" % port,
                b"localhost %d 99999999999 %s" % (port, b"QUFB" * 2000),
                b"localhost %d 99999999999 %s" % (port, b"A" * 30000),
                b"localhost %d -5 QUFB" % port, b"localhost", b"", b" " * 100,
                b"localhost 99999999 1 QUFB", b"\x00\xff" * 50]) + b"\n",
            "truncated": real[:len(real) * 2 // 3],
            "header-only": real.split(b"\n")[0],
            "header-cut": real[:10],  # shorter than the header: once compared unfilled bytes
        }
        paths = []
        for name, data in variants.items():
            p = os.path.join(d, name)
            with open(p, "wb") as f:
                f.write(data)
            os.chmod(p, 0o600)
            paths.append(p)
        loose = os.path.join(d, "loose")
        shutil.copy(good, loose)
        os.chmod(loose, 0o644)
        link = os.path.join(d, "link")
        os.symlink(good, link)
        paths += [loose, link, d]
        problems = []
        for p in paths:
            ts = [uniq(), uniq()]
            r = qf(ts, "--session-cache", p, srv=srv)
            try:
                expect_rc(r, 0)
                I.expect_all_ok(r, ts)
                check("runtime error" not in r.err and "Sanitizer" not in r.err, "sanitizer")
            except Fail as e:
                problems.append("%s: %s" % (os.path.basename(p) or p, e))
    check(not problems, "; ".join(problems))


# ---------------------------------------------------------------- 4. duplicates, load and soak

@test
def duplicates_fetched_once():
    """Duplicates are fetched once and reported in every position (argv and stdin)."""
    a, b = uniq(), uniq()
    tickers = [a, b, a, "FB", a, b]
    with I.fresh_server() as srv:
        r = qf(tickers, srv=srv)
        many = [a] * 50 + [b]
        r2 = qf(many, srv=srv, stdin="\n".join(many))
        st = srv.stats()
    expect_rc(r, 1)
    I.expect_order(r, tickers)
    items = r.items()
    for i, t in enumerate(tickers):
        if t == "FB":
            check(items[i].get("status") == 404, "item %d: %r" % (i, items[i]))
        else:
            check(items[i].get("price") == I.cents(price_for(t)), "item %d: %r" % (i, items[i]))
    expect_rc(r2, 0)
    I.expect_order(r2, many)
    check(all(it.get("price") == I.cents(price_for(it["ticker"])) for it in r2.items()),
          "a duplicate position lacks its price")
    counts = {t: I.server_count(st, t) for t in (a, b, "FB")}
    check(counts[a] == 2 and counts[b] == 2 and counts["FB"] == 1,
          "server requests per symbol over the two runs %s; expected a=2 b=2 FB=1 (once per run)"
          % counts)


class TemplateNginx(I.Nginx):
    """nginx answering GET /v8/finance/chart/T<d+><dd> with a Yahoo-shaped body whose price is
    <d+>.<dd> (return 200 with the regex captures): 100,000 distinct, checkable prices, no files.
    Access log: `$connection $request_uri`."""

    def __init__(self):
        body = chart_body("T@SYM@", "@PRICE@").decode()
        check(not set("'$\\") & set(body), "body template needs nginx escaping")
        body = body.replace("@SYM@", "$1$2").replace("@PRICE@", "$1.$2")
        locations = """location ~ "^/v8/finance/chart/T([1-9][0-9]*)([0-9][0-9])$" {
            return 200 '%s';
        }
        location / { return 404 '{"chart":{"result":null,"error":{"code":"Not Found"}}}'; }""" \
            % body
        super().__init__(locations=locations, workers=2, log="'$connection $request_uri'",
                         prefix="qfetch-rel-nginx-")
        # buffered access log: access() reopens it to flush
        with open(self.conf) as f:
            conf = f.read().replace("qf;\n", "qf buffer=256k;\n", 1)
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.3)

    def access(self):
        """(connection, uri) rows; reopens the log so buffered lines are flushed first."""
        os.kill(self.proc.pid, signal.SIGUSR1)  # nginx: reopen logs (flushes the buffer)
        time.sleep(0.5)
        rows = []
        with open(os.path.join(self.dir, "access.log")) as f:
            for ln in f:
                conn, _, uri = ln.rstrip("\n").partition(" ")
                rows.append((conn, uri))
        return rows

    def clear_log(self):
        open(os.path.join(self.dir, "access.log"), "w").close()


_LOAD = {}


def load_nginx():
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    if "nginx" not in _LOAD:
        _LOAD["nginx"] = TemplateNginx()
    return _LOAD["nginx"]


def load_tickers(n):
    return ["T%d" % (100000 + i) for i in range(n)]


def load_price(t):
    n = int(t[1:])
    return "%d.%02d" % (n // 100, n % 100)


def load_run(n, conns="32", prefix=None, timeout=LOAD_TIMEOUT_S):
    """n tickers from stdin through nginx; returns (Run, peak RSS KiB). Checks every price."""
    ng = load_nginx()
    tickers = load_tickers(n)
    args = ["-u", ng.url, "--cacert", cert("ca.pem"), "-f", "json", "--stats", "-c", conns,
            "-t", "-"]
    if prefix:
        r = I.run_raw(args, stdin="\n".join(tickers), timeout=timeout, prefix=prefix)
        rss = None
    else:
        run = Pending(args, stdin_text="\n".join(tickers), measure_rss=True)
        r = run.finish(timeout)
        rss = run.maxrss_kb
        check(rss, "no peak RSS measured (%s)" % run.rss_method)
        _LOAD["rss_method"] = run.rss_method
    check(r.rc == 0, "exit status %s" % r.rc)
    items = r.items()
    check(len(items) == n, "%d results for %d tickers" % (len(items), n))
    bad = [(t, it) for t, it in zip(tickers, items)
           if it.get("ticker") != t or it.get("price") != load_price(t)
           or it.get("currency") != "USD"]
    check(not bad, "%d wrong results, first: %s expected %s" % (
        len(bad), bad[:1], load_price(bad[0][0]) if bad else ""))
    return r, rss


@load_test
def load_100k_nginx_c32():
    """100,000 tickers from stdin, -c 32, nginx: every price right, each fetched once."""
    ng = load_nginx()
    ng.clear_log()
    r, rss = load_run(100000)
    _LOAD[100000] = rss
    rows = I.settled(ng.access, lambda rows: len(rows) >= 100000)
    uris = {}
    for _, uri in rows:
        uris[uri] = uris.get(uri, 0) + 1
    want = {"/v8/finance/chart/" + t for t in load_tickers(100000)}
    check(len(rows) == 100000 and set(uris) == want,
          "nginx logged %d requests for %d distinct targets" % (len(rows), len(uris)))
    conns = {c for c, _ in rows}
    check(len(conns) <= 32, "nginx saw %d connections with -c 32" % len(conns))
    cs = r.stats()
    check(cs["requests_sent"] == 100000 and cs["retries"] == 0, "stats %s" % cs)
    check(r.elapsed < 120, "took %.1fs" % r.elapsed)
    note("%.1fs (%.0f tickers/s), %d connections, peak RSS %.1f MiB" % (
        r.elapsed, 100000 / r.elapsed, cs["conns_opened"], rss / 1024))


@load_test
def load_rss_flat():
    """Peak RSS at 1k, 10k, 100k tickers (see Pending): growth below 160 bytes per ticker.
    About 80 are measured: the symbol (stdin and the engine's pending buffer), the CLI row and
    its words. A record per queued quote (128 bytes with its malloc header) would fail this."""
    rss = {}
    for n in (1000, 10000, 100000):
        if n in _LOAD and _LOAD[n]:
            rss[n] = _LOAD[n]
            continue
        _, rss[n] = load_run(n)
        _LOAD[n] = rss[n]
    per = (rss[100000] - rss[1000]) * 1024 / 99000
    per10 = (rss[10000] - rss[1000]) * 1024 / 9000
    note("%s: peak RSS 1k %.1f MiB, 10k %.1f MiB, 100k %.1f MiB; %.0f bytes/ticker "
         "(1k->100k), %.0f bytes/ticker (1k->10k)"
         % (_LOAD.get("rss_method"), rss[1000] / 1024, rss[10000] / 1024, rss[100000] / 1024,
            per, per10))
    check(per < 160, "RSS grows %.0f bytes per ticker (1k -> 100k)" % per)


@load_test
def valgrind_1000_tickers():
    """valgrind --leak-check=full on 1,000 tickers through nginx: no error, no leak."""
    if not shutil.which("valgrind"):
        raise Fail("valgrind not installed")
    r, _ = load_run(1000, conns="8", prefix=[
        "valgrind", "--error-exitcode=9", "--leak-check=full",
        "--errors-for-leak-kinds=definite,indirect", "--show-leak-kinds=definite,indirect",
        "--track-fds=no"], timeout=LOAD_TIMEOUT_S)
    m = re.search(r"ERROR SUMMARY: (\d+) errors", r.err)
    check(m and m.group(1) == "0", "valgrind: %s" % (m.group(0) if m else "no summary"))
    for kind in ("definitely lost", "indirectly lost"):
        m = re.search(r"%s: ([\d,]+) bytes" % kind, r.err)
        check(m is None or m.group(1) == "0", "valgrind: %s %s bytes"
              % (kind, m.group(1) if m else ""))
    check("All heap blocks were freed" in r.err or "definitely lost: 0 bytes" in r.err,
          "valgrind printed no leak summary")
    note("%.1fs under valgrind" % r.elapsed)


# ---------------------------------------------------------------- 5. one rate limit per host

RATE_N = 200              # tickers per limited batch, qfetch's defaults otherwise (-c 16)
RATE_RUN_TIMEOUT_S = 240  # a bound, not a target: twenty 1 s Retry-After pauses take ~20 s


def limited_batch(target, *server_opts, client_opts=()):
    """RATE_N tickers with default options against a server that limits requests per address
    (issue 17): every price, and at most `target` requests per ticker as the server counted
    them. --timeout 30: a loaded machine may slow an answer, never a count."""
    tickers = [uniq() for _ in range(RATE_N)]
    with I.fresh_server(*server_opts) as srv:
        r = qf(tickers, "--timeout", "30", *client_opts, srv=srv, stats=True,
               timeout=RATE_RUN_TIMEOUT_S)
        st = srv.stats()
    expect_rc(r, 0)
    I.expect_all_ok(r, tickers)
    cs = r.stats()
    per = st["requests_total"] / RATE_N
    note("%.2f requests per ticker (%d refused), %d host pauses, %.1fs"
         % (per, st["limited"], cs["host_pauses"], r.elapsed))
    check(per <= target, "%d requests for %d tickers: %.2f per ticker, more than %.1f"
          % (st["requests_total"], RATE_N, per, target))
    check(cs["rate_limited"] == st["limited"], "client counted %d rate-limit answers, the server "
          "sent %d" % (cs["rate_limited"], st["limited"]))
    check(cs["requests_sent"] == st["requests_total"], "client sent %d, server saw %d"
          % (cs["requests_sent"], st["requests_total"]))


@test
def rate_limit_token_bucket_retry_after():
    """20 requests/s, burst 10, 429 with Retry-After: 1 when empty: 200/200, <= 1.3 per ticker."""
    limited_batch(1.3, "--rate-limit", "20", "--burst", "10", "--limit-retry-after", "1")


@test
def rate_limit_token_bucket_no_retry_after():
    """The same bucket answering a bare 429: the host's own backoff paces it."""
    limited_batch(1.3, "--rate-limit", "20", "--burst", "10")


@test
def rate_limit_max_inflight_4():
    """429 to a request arriving while 4 are being served (each takes 20 ms): <= 1.1 per
    ticker, with the default -c."""
    limited_batch(1.1, "--max-inflight", "4", "--service-ms", "20")


@test
def rate_limit_token_bucket_pipelined():
    """--pipeline 25 puts all 200 requests in flight before the first answer, so about 190 are
    refused whatever the client does; after that a limited host gets one request per
    connection, and the refused ones keep their order: at most 2.3 requests per ticker. The
    bucket refills by the clock, so on a slow machine (ASan, both cores busy) a ticker may
    still be refused a third time: --retries 4 keeps such a ticker's price, and the average
    is what is checked."""
    limited_batch(2.3, "--rate-limit", "20", "--burst", "10",
                  client_opts=("--pipeline", "25", "--retries", "4"))


LIMIT_MSG = ("rate limited by localhost (HTTP 429) after %d attempt%s; Yahoo limits requests "
             "per address, %swait %s s")


@test
def rate_limited_error_after_retries():
    """A ticker the server always refuses with 429 ends with one plain sentence naming the host,
    the attempts and the wait (Retry-After: 1, or the host's pause without it), never the
    body's JSON error ("delisted") or text; the other tickers get their prices. Separate runs:
    in one batch, one ticker's 429s would lengthen the pause the other's message names."""
    ra, bare, js = "RATEALWAYS_" + uniq(), "RATENORA_" + uniq(), "RATEJSON_" + uniq()
    normals = [uniq() for _ in range(4)]
    any_wait = re.escape(LIMIT_MSG % (3, "s", "try -c 2 or ", "@")).replace("@", r"\d+")
    with I.fresh_server() as srv:
        r = qf(normals[:2] + [ra] + normals[2:], srv=srv, timeout=60)
        r2 = qf([bare, normals[0], js], srv=srv, timeout=60)
        r3 = qf([bare], "-c", "1", "--retries", "0", srv=srv)
        st = srv.stats()
    expect_rc(r, 1)
    for t in normals:
        expect_ok(r, t)
    it = expect_err(r, ra, status=429)
    check(it["error"] == LIMIT_MSG % (3, "s", "try -c 2 or ", "1"), "%s: %r" % (ra, it["error"]))
    check(I.server_count(st, ra) == 3, "%s requested %d times, expected 3 (--retries 2)"
          % (ra, I.server_count(st, ra)))
    expect_rc(r2, 1)
    expect_ok(r2, normals[0])
    for t in (bare, js):
        it = expect_err(r2, t, status=429)
        check(re.fullmatch(any_wait, it["error"]), "%s: %r" % (t, it["error"]))
    check(I.server_count(st, js) == 3, "%s requested %d times" % (js, I.server_count(st, js)))
    expect_rc(r3, 1)
    it = expect_err(r3, bare, status=429)
    check(it["error"] == LIMIT_MSG % (1, "", "", "1"), "-c 1 --retries 0: %r" % it["error"])


@test
def retry_after_beyond_cap_ends_ticker():
    """Retry-After: 3600 is beyond the 5 s qfetch waits: that ticker ends after one request
    with the wait named, instead of retrying early; the host is not paused for it."""
    t = "RATELONG_" + uniq()
    normals = [uniq() for _ in range(3)]
    with I.fresh_server() as srv:
        r = qf([normals[0], t] + normals[1:], "-c", "1", srv=srv, stats=True)
        st = srv.stats()
    expect_rc(r, 1)
    for n in normals:
        expect_ok(r, n)
    it = expect_err(r, t, "rate limited by localhost", "wait 3600 s", status=429)
    check(I.server_count(st, t) == 1, "requested %d times" % I.server_count(st, t))
    cs = r.stats()
    check(cs["host_pauses"] == 0 and cs["retries"] == 0, "stats %s" % cs)
    note(it["error"])


@test
def host_paused_by_429_and_503_retry_after():
    """A 429, or a 503 with Retry-After, pauses the whole host: with -c 1 the next ticker is not
    sent before the retry, which waits the server's second (the server's clock)."""
    for prefix in ("ERR503RA_", "RATE_"):
        x, a, b = prefix + uniq(), uniq(), uniq()
        with I.fresh_server() as srv:
            r = qf([x, a, b], "-c", "1", srv=srv, stats=True)
            st = srv.stats()
        expect_rc(r, 0)
        I.expect_all_ok(r, [x, a, b])
        order = [sym for sym, _ in st["arrivals"]]
        check(order == [x, x, a, b], "%s: requests in the order %s, expected the retry first"
              % (prefix, order))
        gap_ms = st["arrivals"][1][1] - st["arrivals"][0][1]
        check(gap_ms >= 950, "%s: retried after %.0f ms, Retry-After says 1 s" % (prefix, gap_ms))
        cs = r.stats()
        check(cs["host_pauses"] == 1 and cs["rate_limited"] == 1 and cs["retries"] == 1,
              "%s: stats %s" % (prefix, cs))


# ---------------------------------------------------------------- 6. bad input from the user

def refused(args, stdin=None):
    """Exit 2, exactly one line on stderr, nothing on stdout, nothing sent to the server."""
    srv = I.server()
    before = srv.stats()["requests_total"]
    I.usage_case(args, stdin=stdin)
    after = srv.stats()["requests_total"]
    check(after == before, "the server received %d requests" % (after - before))
    return I.LAST_RUNS[-1]


def base_args():
    return ["-u", I.server().url, "--cacert", cert("ca.pem")]


@test
def input_empty_ticker_lists():
    """`-t` alone, `-t` followed by an option, `-t -` with truly empty stdin.
    (cli_fetch.py: usage_no_tickers, usage_empty_stdin with whitespace only.)"""
    for args, stdin in ((["-t"], None), (["-t", "--stats"], None), (["-t", "-"], ""),
                        (["-t", "-"], "\n\n")):
        try:
            refused(base_args() + args, stdin=stdin)
        except Fail as e:
            raise Fail("%s stdin=%r: %s" % (args, stdin, e))


@test
def input_symbol_10kb():
    big = "A" * 10240
    refused(base_args() + ["-t", uniq(), big])
    refused(base_args() + ["-t", "-"], stdin=uniq() + "\n" + big + "\n")
    line = I.LAST_RUNS[-1].err.strip()
    check(len(line) < 300, "the error line is %d bytes long" % len(line))


@test
def input_symbol_length_limit():
    """64 bytes are accepted (also 64 bytes of UTF-8 that encode to 192), 65 are refused."""
    tag = uniq("")
    ok64 = (tag + "A" * 64)[:64]
    utf64 = "\u00e9" * 32
    r = qf([ok64, utf64])
    expect_rc(r, 0)
    expect_ok(r, ok64)
    expect_ok(r, utf64)
    refused(base_args() + ["-t", ok64 + "B"])


CONTROL_SYMBOLS = ["A\x01B", "\x1b[31mRED", "A\x7fB", "A\tB", "A\nB", "A\rB", "\x08X", "A\x1fB"]


@test
def input_control_chars_refused():
    """Control characters in a symbol (argv and stdin): exit 2, nothing sent, nothing on
    stdout."""
    srv = I.server()
    before = srv.stats()["requests_total"]
    problems = []
    for sym in CONTROL_SYMBOLS:
        r = I.run_raw(base_args() + ["-t", uniq(), sym], timeout=15)
        if r.rc != 2 or r.out:
            problems.append("%r: exit %s, stdout %r" % (sym, r.rc, r.out[:80]))
    for sym in ("A\x01B", "\x1bX", "A\x7fB"):
        r = I.run_raw(base_args() + ["-t", "-"], stdin=uniq() + "\n" + sym + "\n", timeout=15)
        if r.rc != 2 or r.out:
            problems.append("stdin %r: exit %s, stdout %r" % (sym, r.rc, r.out[:80]))
    check(not problems, "; ".join(problems))
    after = srv.stats()["requests_total"]
    check(after == before, "the server received %d requests" % (after - before))


@test
def input_stdin_nul_byte():
    """A NUL byte in stdin (binary input): refused on one line, never a silent truncation of
    the symbol or of the rest of the list."""
    a, b, c = uniq(), uniq(), uniq()
    srv = I.server()
    before = srv.stats()
    r = I.run_raw(base_args() + ["-f", "json", "-t", "-"], stdin="%s\n%s\x00X %s\n" % (a, b, c),
                  timeout=15)
    after = srv.stats()
    if r.rc == 2:
        check(r.out == "" and len(r.err.strip().splitlines()) == 1, "exit 2 but %r / %r"
              % (r.out[:100], r.err[:200]))
        check(after["requests_total"] == before["requests_total"], "requests were sent")
        return
    got = [it.get("ticker") for it in r.items()]
    raise Fail("not refused (exit %s): fetched %s; the server saw %d requests; %s was lost"
               % (r.rc, got, after["requests_total"] - before["requests_total"],
                  c if c not in got else "nothing"))


@test
def input_control_chars_error_is_one_clean_line():
    """The refusal is one line on stderr and does not echo raw control characters (a newline
    in the symbol must not split it, an ESC must not reach the terminal)."""
    problems = []
    for sym in CONTROL_SYMBOLS:
        r = I.run_raw(base_args() + ["-t", sym], timeout=15)
        body = r.err[:-1] if r.err.endswith("\n") else r.err
        raw = sorted({"%02x" % ord(ch) for ch in body if ord(ch) < 0x20 or ord(ch) == 0x7f})
        if r.err.count("\n") != 1 or raw:
            problems.append(repr(sym))
            example = r.err
    check(not problems, "stderr is not one line free of raw control characters for %s "
          "(e.g. %r)" % (", ".join(problems), example[:90] if problems else ""))


@test
def input_non_ascii_encoded():
    """Non-ASCII symbols are accepted, percent-encoded on the wire (UTF-8 bytes), decoded by the
    server to the same text, and printed back unchanged."""
    tag = uniq("")
    cases = [("\u00c4PFEL" + tag, "%C3%84PFEL" + tag),
             ("\u65e5\u672c" + tag, "%E6%97%A5%E6%9C%AC" + tag),
             ("\u20ac" + tag, "%E2%82%AC" + tag)]
    tickers = [c[0] for c in cases]
    r = qf(tickers)
    expect_rc(r, 0)
    I.expect_order(r, tickers)
    I.expect_all_ok(r, tickers)
    st = I.server().stats()
    for sym, enc in cases:
        check(I.server_count(st, sym) == 1, "server saw %r %d times" % (sym, I.server_count(st,
                                                                                          sym)))
        got = st["targets_per_symbol"].get(sym)
        check(got == ["/v8/finance/chart/" + enc], "%r sent as %r" % (sym, got))
    r = qf(tickers, fmt="table")
    for sym in tickers:
        check(sym in r.out, "table lacks %r" % sym)


@test
def input_invalid_utf8():
    """A symbol that is not UTF-8 (bytes ff fe): refused on one line, or fetched percent-encoded
    with output that stays valid UTF-8 (JSON requires it)."""
    sym = b"\xff\xfe" + uniq().encode()
    cmd = [I.CFG.qfetch, "-u", I.server().url, "--cacert", cert("ca.pem"), "-f", "json",
           "-t", sym]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, timeout=15)
    I.LAST_RUNS.append(I.Run([c if isinstance(c, str) else repr(c) for c in cmd], p.returncode,
                             p.stdout.decode(errors="replace"),
                             p.stderr.decode(errors="replace"), 0))
    if p.returncode == 2:
        check(p.stdout == b"" and p.stderr.count(b"\n") == 1, "exit 2 but %r / %r"
              % (p.stdout[:100], p.stderr[:200]))
        return
    check(p.returncode in (0, 1), "exit %d" % p.returncode)
    st = I.server().stats()
    enc = "/v8/finance/chart/%FF%FE" + sym[2:].decode()
    check(any(enc in ts for ts in st["targets_per_symbol"].values()), "not sent percent-encoded")
    try:
        json.loads(p.stdout.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise Fail("accepted, but the JSON output is not valid UTF-8 JSON (%s): %r"
                   % (type(e).__name__, p.stdout[:60]))


@test
def input_bad_templates():
    """Two {}, {} in the host, no scheme, unsupported scheme: exit 2.
    (cli_fetch.py usage_template_without_braces covers a template without {}.)"""
    port = I.server().port
    for tmpl in ("https://localhost:%d/v8/finance/chart/{}?again={}" % port,
                 "https://localhost:%d/{}/{}" % port, "https://{}.localhost:%d/x" % port,
                 "localhost:%d/v8/finance/chart/{}" % port, "ftp://localhost:%d/{}" % port,
                 "https://localhost:99999/{}", "https:///{}", ""):
        try:
            refused(["-u", tmpl, "--cacert", cert("ca.pem"), "-t", uniq()])
        except Fail as e:
            raise Fail("-u %r: %s" % (tmpl, e))


BAD_NUMBERS = ["-1", "1e309", "-1e309", "nan", "NaN", "inf", "-inf", "99999999999",
               "99999999999999999999999", "1x", "", " ", "--", "1,5", "one"]
FLAG_CASES = {
    "-c": BAD_NUMBERS + ["0", "10001", "2.5", "1e3", "0x10", "-0"],
    "--timeout": BAD_NUMBERS + ["0", "-0", "0.0", "86401", "1e-400"],
    "--connect-timeout": BAD_NUMBERS + ["0", "-0", "0.0", "86401", "1e-400"],
    "--retries": BAD_NUMBERS + ["101", "2.5", "1e3", "0x10"],
    "--pipeline": BAD_NUMBERS + ["0", "1001", "2.5", "1e3"],
    "--repeat": BAD_NUMBERS + ["0", "1000001", "2.5", "1e3"],
}


def numeric_flag(flag):
    problems = []
    srv = I.server()
    before = srv.stats()["requests_total"]
    for v in FLAG_CASES[flag]:
        for args in ([flag, v], ["%s=%s" % (flag, v)] if flag.startswith("--") else None):
            if args is None:
                continue
            r = I.run_raw(base_args() + args + ["-t", uniq()], timeout=15)
            lines = [ln for ln in r.err.splitlines() if ln.strip()]
            if r.rc != 2 or r.out or len(lines) != 1:
                problems.append("%s: exit %s, %d stderr lines" % (" ".join(map(repr, args)),
                                                                 r.rc, len(lines)))
    check(not problems, "; ".join(problems))
    check(srv.stats()["requests_total"] == before, "a request was sent")


@test
def input_numeric_connections():
    numeric_flag("-c")


@test
def input_numeric_timeout():
    numeric_flag("--timeout")


@test
def input_numeric_connect_timeout():
    numeric_flag("--connect-timeout")


@test
def input_numeric_retries():
    numeric_flag("--retries")


@test
def input_numeric_pipeline():
    numeric_flag("--pipeline")


@test
def input_numeric_repeat():
    numeric_flag("--repeat")


@test
def input_numeric_extremes_accepted():
    """The valid extremes still work: -c 10000, --retries 100, --timeout 86400, 0.001 s
    connect timeout refused only by the network, --retries 0."""
    t = uniq()
    for opts in (["-c", "10000"], ["--retries", "100"], ["--timeout", "86400"],
                 ["--connect-timeout", "86400"], ["--retries", "0"], ["--timeout", "1e1"]):
        r = qf([t], *opts)
        try:
            expect_rc(r, 0)
            expect_ok(r, t)
        except Fail as e:
            raise Fail("%s: %s" % (" ".join(opts), e))


# ---------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description="qfetch reliability tests")
    ap.add_argument("--build", required=True)
    ap.add_argument("--certs", help="certificate directory (default: BUILD/test/certs)")
    ap.add_argument("--load", action="store_true", help="also the slow load/soak tests")
    ap.add_argument("--filter", default="")
    ap.add_argument("--list", action="store_true")
    args = ap.parse_args()
    I.setup(args, "qfetch-rel-cache-")
    I.CFG.fixtures = None
    CFG.load = args.load
    selected = [t for t in TESTS if args.filter in t.__name__
                and (CFG.load or not getattr(t, "load_only", False))]
    if args.list:
        for t in selected:
            print(t.__name__)
        return 0
    t_all = time.monotonic()
    certs = ("ca.pem", "chainleaf.pem", "chainfull.pem", "ca.der", "keyonly.pem")
    passed, failed, skipped = I.run_selected(selected, certs=certs)
    print("# reliability suite: %.1fs" % (time.monotonic() - t_all), flush=True)
    print(I.summary_line(passed, failed, skipped), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
