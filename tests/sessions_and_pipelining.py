#!/usr/bin/python3
"""Latency features (issue 5) against tests/server.py and nginx: TLS sessions kept across runs,
0-RTT early data (accepted and refused), HTTP/1.1 pipelining, corrupt or foreign session cache
files, --repeat with --stats=json, the progress line on a terminal, TCP Fast Open.

    sessions_and_pipelining.py --build DIR [--certs DIR] [--filter SUBSTR]

Reuses cli_fetch.py's runner and helpers; prints `ok name` / `FAIL name: why` and ends with
`N passed, M failed, K skipped`.
"""
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cli_fetch as it  # noqa: E402
from cli_fetch import Fail, check, cert, uniq, price_for, chart_body, cents  # noqa: E402

del it.TESTS[:]  # only this file's tests
test = it.test


def cache_env(path):
    """Runs qfetch with its session cache at path (and nothing from $HOME)."""
    return ["--session-cache", path]


def fresh_cache():
    d = tempfile.mkdtemp(prefix="qfetch-lat-")
    it.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    return os.path.join(d, "sessions")


def stats(r):
    st = r.stats()
    check(st is not None, "no stats line")
    return st


@test
def session_resumes_across_runs():
    srv = it.TestServer()
    path = fresh_cache()
    tick = [uniq() for _ in range(4)]
    r1 = it.qf(tick, "-c", "4", *cache_env(path), srv=srv)
    it.expect_rc(r1, 0)
    s1 = stats(r1)
    # The four handshakes start together: none has a ticket yet to resume with.
    check(s1["tls_full"] >= 1 and
          s1["tls_full"] + s1["tls_resumed"] + s1["conns_unused"] == s1["conns_opened"] == 4,
          "first run: %s" % s1)
    check(os.path.isfile(path), "no cache file written")
    mode = os.stat(path).st_mode & 0o777
    check(mode == 0o600, "cache file mode %o" % mode)
    before = srv.stats()["tls_resumed"]
    r2 = it.qf(tick, "-c", "4", *cache_env(path), srv=srv)
    it.expect_rc(r2, 0)
    s2 = stats(r2)
    check(s2["tls_resumed"] >= 1 and s2["tls_full"] == 0, "second run: %s" % s2)
    after = srv.stats()["tls_resumed"]
    check(after - before == s2["tls_resumed"], "server saw %d resumed handshakes, want %d"
          % (after - before, s2["tls_resumed"]))
    for t in tick:
        it.expect_ok(r2, t)


@test
def no_session_cache_flag():
    srv = it.TestServer()
    path = fresh_cache()
    t = uniq()
    it.expect_rc(it.qf([t], *cache_env(path), srv=srv), 0)
    r = it.qf([t], "--no-session-cache", srv=srv)
    check(stats(r)["tls_resumed"] == 0, "--no-session-cache resumed")


@test
def corrupt_and_foreign_cache_files():
    srv = it.TestServer()
    t = uniq()
    cases = []
    p = fresh_cache()
    with open(p, "wb") as f:
        f.write(b"\x00\xffgarbage\n" * 100)
    os.chmod(p, 0o600)
    cases.append((p, "not a qfetch session cache"))
    p = fresh_cache()
    with open(p, "w") as f:
        f.write("qfetch-session-cache 1\nlocalhost %d 99999999999 !!!notbase64!!!\n"
                "localhost %d 99999999999 QUFBQQ==\nshort line\n" % (srv.port, srv.port))
    os.chmod(p, 0o600)
    cases.append((p, None))  # well-formed header, unusable lines: silently skipped
    good = fresh_cache()
    it.expect_rc(it.qf([t], *cache_env(good), srv=srv), 0)
    os.chmod(good, 0o644)
    cases.append((good, "0600"))
    for path, warning in cases:
        r = it.qf([t], *cache_env(path), srv=srv)
        it.expect_rc(r, 0)
        it.expect_ok(r, t)
        check(stats(r)["tls_resumed"] == 0, "%s: resumed from a bad cache" % path)
        if warning:
            check("warning" in r.err and warning in r.err,
                  "%s: no warning naming %r: %r" % (path, warning, r.err[-300:]))
    # a file owned by someone else is not trusted even when well-formed
    if os.geteuid() == 0:
        os.chmod(good, 0o600)
        os.chown(good, 65534, 65534)
        r = it.qf([t], *cache_env(good), srv=srv)
        check("another user" in r.err and stats(r)["tls_resumed"] == 0,
              "foreign owner accepted: %r" % r.err[-200:])


@test
def cache_ignores_other_hosts_sessions():
    """A session made for one server is not offered to another (its ticket names a host whose
    certificate the session holds; another port is another cache key)."""
    a, b = it.TestServer(), it.TestServer()
    path = fresh_cache()
    t = uniq()
    it.expect_rc(it.qf([t], *cache_env(path), srv=a), 0)
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:  # relabel a's sessions as b's: b cannot decrypt them
        f.write(text.replace("localhost %d " % a.port, "localhost %d " % b.port))
    r = it.qf([t], *cache_env(path), srv=b)
    it.expect_rc(r, 0)
    check(stats(r)["tls_resumed"] == 0, "b resumed a's session")


@test
def cache_bound_to_trust():
    """A resumed session skips the certificate check, so a cached one is offered only under
    the trust that verified it. Run 1 trusts ca.pem and saves sessions; from its file, a run
    trusting ca2.pem and a run on the system store each make a full handshake and refuse the
    server's certificate. The sessions stay in the file for the runs they were made for: a
    ca.pem run after those two resumes, so they were there to be misused."""
    srv = it.TestServer()
    path = fresh_cache()
    it.expect_rc(it.qf([uniq()], *cache_env(path), srv=srv), 0)
    with open(path, "rb") as f:
        saved = f.read()
    for label, cacert in (("--cacert ca2.pem", cert("ca2.pem")), ("the system store", False)):
        with open(path, "wb") as f:
            f.write(saved)
        before = srv.stats()
        t = uniq()
        r = it.qf([t], *cache_env(path), srv=srv, cacert=cacert)
        it.expect_rc(r, 1)
        it.expect_err(r, t, "certificate", status=0)
        after = srv.stats()
        check(after["tls_resumed"] == before["tls_resumed"], "%s resumed a session" % label)
        check(after["requests_total"] == before["requests_total"],
              "%s sent a request to an unverified server" % label)
    t = uniq()
    r = it.qf([t], *cache_env(path), srv=srv)
    it.expect_rc(r, 0)
    it.expect_ok(r, t)
    check(stats(r)["tls_resumed"] >= 1 and stats(r)["tls_full"] == 0,
          "ca.pem did not resume run 1's sessions: %s" % stats(r))


@test
def cache_path_never_blocks_or_follows():
    """A FIFO at the cache path (a run once hung on it forever), a symbolic link, a directory
    writable by its group or by everyone, one owned by another user: each run completes without
    the cache (no resumption), says why, and leaves the path as it was."""
    srv = it.TestServer()
    good = fresh_cache()
    it.expect_rc(it.qf([uniq()], *cache_env(good), srv=srv), 0)
    with open(good, "rb") as f:
        saved = f.read()
    d = os.path.dirname(fresh_cache())
    fifo, link = os.path.join(d, "fifo"), os.path.join(d, "link")
    os.mkfifo(fifo, 0o600)
    os.symlink(good, link)
    cases = [(fifo, "not a regular file"), (link, "symbolic link")]
    dirs = [(0o777, "writable by others"), (0o770, "writable by others")]
    if os.geteuid() == 0:
        dirs.append((0o700, "owned by another user"))
    for mode, why in dirs:
        p = fresh_cache()
        with open(p, "wb") as f:
            f.write(saved)
        os.chmod(p, 0o600)
        os.chmod(os.path.dirname(p), mode)
        if why.startswith("owned"):
            os.chown(os.path.dirname(p), 65534, 65534)
        cases.append((p, why))
    for path, why in cases:
        listing = sorted(os.listdir(os.path.dirname(path)))
        t = uniq()
        r = it.qf([t], *cache_env(path), srv=srv, timeout=20)
        it.expect_rc(r, 0)
        it.expect_ok(r, t)
        check("warning" in r.err and why in r.err and "continuing without it" in r.err,
              "%s: no warning naming %r: %r" % (path, why, r.err[-300:]))
        check(stats(r)["tls_resumed"] == 0, "%s: the cache was used" % path)
        check(sorted(os.listdir(os.path.dirname(path))) == listing,
              "%s: its directory changed" % path)
    check(stat.S_ISFIFO(os.lstat(fifo).st_mode) and stat.S_ISLNK(os.lstat(link).st_mode) and
          os.readlink(link) == good, "the FIFO or the link was replaced")
    with open(good, "rb") as f:
        check(f.read() == saved, "the link's target was written")


class EarlyNginx(it.Nginx):
    """nginx with TLS 1.3 early data and a log of $ssl_early_data and $pipe per request.
    OpenSSL takes early data only with stateless tickets (a shared session cache makes it
    refuse them for replay protection), and nginx 1.22's default protocols stop at TLS 1.2."""

    def __init__(self, symbols):
        super().__init__(symbols, session_cache=False,
                         log="'$request_uri $ssl_early_data $pipe $ssl_session_reused "
                             "$connection'",
                         http_extra="    ssl_early_data on;\n    ssl_protocols TLSv1.2 TLSv1.3;")

    def reconfigure(self, early):
        with open(self.conf) as f:
            conf = f.read()
        conf = conf.replace("ssl_early_data on;", "ssl_early_data %s;" % ("on" if early else "off"))
        conf = conf.replace("ssl_early_data off;", "ssl_early_data %s;" % ("on" if early else "off"))
        with open(self.conf, "w") as f:
            f.write(conf)
        self.proc.send_signal(signal.SIGHUP)
        time.sleep(0.5)

    def log(self):
        with open(os.path.join(self.dir, "access.log")) as f:
            return [ln.split() for ln in f if ln.strip()]


def early_nginx(symbols):
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    return EarlyNginx(symbols)


@test
def early_data_accepted_then_refused():
    syms = ["ED%s%d" % (it.CFG.tag, i) for i in range(3)]
    ng = early_nginx(syms)
    # nginx marks a request as early data only if it reads it before the handshake ends; on
    # bare loopback the client's Finished can beat that read. A 100 ms relay keeps it behind.
    sys.path.insert(0, os.path.join(HERE, "..", "bench"))
    import relay
    rport, stop = relay.start_relay(ng.port, 100)
    it.CLEANUP.append(stop)
    ng.url = "https://localhost:%d/v8/finance/chart/{}" % rport
    path = fresh_cache()
    # one connection: later connections of a run may already resume from its tickets
    r1 = it.qf(syms, "-c", "1", "--early-data", *cache_env(path), url=ng.url)
    it.expect_rc(r1, 0)
    check(stats(r1)["early_data"] == 0, "a cold first connection cannot send early data")
    # the cold connection left two tickets: two connections resume, each sending early data
    r2 = it.qf(syms, "-c", "2", "--early-data", *cache_env(path), url=ng.url)
    it.expect_rc(r2, 0)
    for s in syms:
        it.expect_ok(r2, s)
    s2 = stats(r2)
    check(s2["early_data"] == 2 and s2["tls_resumed"] == 2 and s2["tls_full"] == 0,
          "warm run: %s" % s2)
    def early_rows():
        return [row for row in ng.log() if row[1] == "1"]
    # nginx's $ssl_early_data is "1" only while its handshake is still incomplete: behind the
    # relay it sees both early requests, always on a resumed session.
    seen = len(it.settled(early_rows, lambda rows: len(rows) >= 2))
    check(seen == 2 and all(row[3] == "r" for row in early_rows()),
          "nginx saw no early-data request on resumed sessions: %s" % ng.log())
    # the server stops taking early data: the client re-sends normally and still succeeds
    ng.reconfigure(early=False)
    r3 = it.qf(syms, "-c", "2", "--early-data", *cache_env(path), url=ng.url)
    it.expect_rc(r3, 0)
    for s in syms:
        it.expect_ok(r3, s)
    check(stats(r3)["early_data"] == 0, "early data counted as accepted: %s" % stats(r3))
    check(len(early_rows()) == seen, "nginx logged early data while refusing it")
    # without the flag a warm run never sends early data
    ng.reconfigure(early=True)
    r4 = it.qf(syms, "-c", "2", *cache_env(path), url=ng.url)
    check(stats(r4)["early_data"] == 0 and len(early_rows()) == seen,
          "early data without --early-data")


@test
def pipelining_over_two_connections():
    syms = ["PL%s%03d" % (it.CFG.tag, i) for i in range(200)]
    ng = early_nginx(syms)
    r = it.qf(syms, "-c", "2", "--pipeline", "8", "--no-session-cache", url=ng.url, timeout=60)
    it.expect_rc(r, 0)
    for s in syms:
        it.expect_ok(r, s)
    st = stats(r)
    check(st["conns_opened"] <= 2 and st["requests_sent"] == 200, "stats %s" % st)
    log = it.settled(ng.log, lambda rows: len(rows) >= 200)[-200:]
    conns = {row[4] for row in log}
    piped = sum(1 for row in log if row[2] == "p")
    check(len(conns) <= 2, "nginx saw %d connections" % len(conns))
    check(piped >= 100, "nginx saw only %d pipelined requests of 200" % piped)
    it.note("%d of 200 requests pipelined" % piped)


@test
def pipelining_falls_back_when_server_closes():
    srv = it.TestServer()
    before = srv.stats()
    tick = [uniq() for _ in range(3)] + ["CLOSE_" + uniq()] + [uniq() for _ in range(12)]
    r = it.qf(tick, "-c", "1", "--pipeline", "4", "--no-session-cache", srv=srv)
    it.expect_rc(r, 0)
    for t in tick:
        it.expect_ok(r, t)
    st = stats(r)
    check(st["conns_opened"] >= 2, "the close forced no new connection: %s" % st)
    check(st["retries"] == 0, "requeued requests counted as retries: %s" % st)
    after = srv.stats()
    check(after["requests_total"] - before["requests_total"] <= len(tick) + 4,
          "too many requests sent: %d" % (after["requests_total"] - before["requests_total"]))


@test
def repeat_and_stats_json():
    srv = it.TestServer()
    tick = [uniq() for _ in range(5)]
    r = it.run_raw(["-u", srv.url, "--cacert", cert("ca.pem"), "-c", "2", "--repeat", "4",
                    "--stats=json", "--no-session-cache", "-f", "csv", "-t"] + tick)
    it.expect_rc(r, 0)
    line = [ln for ln in r.err.splitlines() if ln.startswith("{")]
    check(len(line) == 1, "no JSON stats line: %r" % r.err[-300:])
    st = json.loads(line[0])
    check(st["requests_sent"] == 20 and st["conns_opened"] - st["conns_unused"] <= 2,
          "json %s" % st)
    lat = st["latency_ms"]
    for phase in ("total", "connect", "tls", "first_byte"):
        check(set(lat[phase]) >= {"n", "p50", "p90", "p99", "max"}, "phase %s: %s" % (phase, lat))
    check(lat["total"]["n"] == 20, "20 samples, got %s" % lat["total"])
    t = lat["total"]
    check(0 <= t["p50"] <= t["p90"] <= t["p99"] <= t["max"], "percentiles out of order %s" % t)
    check(lat["connect"]["n"] <= 2, "connect samples counted for reused connections")
    rows = r.out.strip().splitlines()
    check(len(rows) == 6, "output is one batch (header + 5 rows), got %d lines" % len(rows))


@test
def repeat_prints_the_last_round():
    """A symbol whose answer changes between --repeat rounds shows the last one: RATE_ is a 429
    (a long message) in round 1 and a price in round 2, written over the message. Duplicates
    show their symbol's outcome."""
    srv = it.TestServer()
    rate, plain = "RATE_" + uniq(), uniq()
    r = it.qf([rate, plain, rate, plain], "-c", "1", "--retries", "0", "--repeat", "2",
              "--no-session-cache", srv=srv)
    it.expect_rc(r, 0)
    items = r.items()
    check([i.get("ticker") for i in items] == [rate, plain, rate, plain],
          "rows: %r" % items)
    for i in items:
        check("error" not in i, "a row kept round 1's error: %r" % i)
    it.expect_ok(r, rate)
    it.expect_ok(r, plain)
    check(r.stats()["requests_sent"] == 4, "two symbols, two rounds: %s" % r.stats())


@test
def progress_only_on_a_terminal():
    srv = it.TestServer()
    tick = [uniq() for _ in range(250)]
    base = [it.CFG.qfetch, "-u", srv.url, "--cacert", cert("ca.pem"), "-c", "8",
            "--no-session-cache", "-f", "csv", "-t"] + tick
    # stderr to a file: no progress line
    r = it.run_raw(base[1:])
    check("done," not in r.err, "progress printed into a file: %r" % r.err[:200])
    # under a pseudo-terminal: a single updating line on stderr, gone at the end
    cmd = " ".join("'%s'" % a for a in base) + " >/dev/null"
    p = subprocess.run(["script", "-qec", cmd, "/dev/null"], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    out = p.stdout.decode(errors="replace")
    check(p.returncode == 0, "script exit %d: %r" % (p.returncode, out[-300:]))
    check(re.search(r"qfetch: \d+/250 done, \d+ req/s, 0 errors", out) is not None,
          "no progress line on a tty: %r" % out[-300:])
    check("\r" in out and "\n" not in out.strip("\r\n\x1b[K"), "progress is not one line: %r"
          % out[-300:])
    quiet = " ".join("'%s'" % a for a in base[:1] + ["--no-progress"] + base[1:]) + " >/dev/null"
    p = subprocess.run(["script", "-qec", quiet, "/dev/null"], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    check("done," not in p.stdout.decode(errors="replace"), "--no-progress ignored")


@test
def tcp_fastopen_flag():
    srv = it.TestServer()
    t = uniq()
    r = it.qf([t], "--tcp-fastopen", "--no-session-cache", srv=srv)
    it.expect_rc(r, 0)
    it.expect_ok(r, t)
    r = it.qf([t], "--tcp-fastopen", "--no-session-cache", srv=srv)
    it.expect_rc(r, 0)


if __name__ == "__main__":
    sys.exit(it.main())
