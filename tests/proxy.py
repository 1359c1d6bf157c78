#!/usr/bin/python3
"""Proxies (issue 16 part 3): the built command through a real squid, configured here on
127.0.0.1 with its own config, logs and pid file in a temporary folder (no system service), and
through a small misbehaving proxy of ours (403, 407, a close mid-answer, an answer slower than
the connect timeout, credentials checked). https:// targets go through CONNECT, http:// ones in
absolute form; the environment's variables as curl reads them; usage errors.

    proxy.py --build DIR [--certs DIR] [--filter SUBSTR]

Reuses cli_fetch.py's runner and helpers; prints `ok name` / `FAIL name: why` and ends with
`N passed, M failed`.
"""
import base64
import os
import pwd
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cli_fetch as it  # noqa: E402
from cli_fetch import Fail, check, uniq, price_for, chart_body  # noqa: E402

del it.TESTS[:]  # only this file's tests
test = it.test

SQUID = shutil.which("squid") or "/usr/sbin/squid"


def clean_env(**extra):
    """The test's environment: no proxy variable but the ones given."""
    env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
    env.update(extra)
    return env


def qfp(tickers, *opts, srv, env=None, timeout=40):
    """qfetch against srv with a clean proxy environment (plus env), JSON output and stats."""
    args = ["-u", srv.url, "--cacert", it.cert("ca.pem"), "-f", "json", "--stats",
            "--no-session-cache"] + list(opts) + ["-t"] + list(tickers)
    return it.run_raw(args, timeout=timeout, env=clean_env(**(env or {})))


def plain_url(srv):
    return "http://127.0.0.1:%d/v8/finance/chart/{}" % srv.port


class Closed:
    """A port nothing listens on: bound, never listening, so a connect is refused at once and
    no other process can take the port meanwhile."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        it.CLEANUP.append(self.sock.close)


# ---------------------------------------------------------------- squid

class Squid:
    """squid -N with a config of ours: CONNECT allowed to any high port (the default SSL_ports
    ACL would refuse the test servers'), nothing cached, logs in its own folder."""

    def __init__(self):
        check(os.access(SQUID, os.X_OK), "squid is not installed (.ci/deps test installs it)")
        self.dir = tempfile.mkdtemp(prefix="qfetch-squid-")
        it.CLEANUP.append(lambda: shutil.rmtree(self.dir, ignore_errors=True))
        if os.geteuid() == 0:  # squid started as root works as its cache_effective_user
            try:
                os.chown(self.dir, pwd.getpwnam("proxy").pw_uid, -1)
            except KeyError:
                os.chmod(self.dir, 0o777)
        self.log = os.path.join(self.dir, "access.log")
        self.proc = None
        for _ in range(3):  # the port is picked before squid binds it: another may take it
            if self._start():
                return
        raise Fail("squid did not start: %s" % self._cache_log()[-800:])

    def _cache_log(self):
        try:
            with open(os.path.join(self.dir, "cache.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def _start(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        self.port = s.getsockname()[1]
        s.close()
        conf = os.path.join(self.dir, "squid.conf")
        with open(conf, "w") as f:
            f.write("\n".join([
                "http_port 127.0.0.1:%d" % self.port,
                "pid_filename %s/squid.pid" % self.dir,
                "cache_log %s/cache.log" % self.dir,
                "access_log stdio:%s" % self.log,
                "buffered_logs off",
                "cache_store_log none",
                "coredump_dir %s" % self.dir,
                "netdb_filename none",
                "pinger_enable off",
                "logfile_rotate 0",
                "shutdown_lifetime 0 seconds",
                "cache_mem 8 MB",
                "cache deny all",
                "acl testclients src 127.0.0.1/32",
                "acl high_ports port 1024-65535",
                "http_access deny !high_ports",
                "http_access allow testclients",
                "http_access deny all",
                ""]))
        self.proc = subprocess.Popen([SQUID, "-N", "-f", conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        it.CLEANUP.append(self.stop)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return True
            except OSError:
                time.sleep(0.1)
        self.stop()
        return False

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def lines(self, pattern):
        try:
            with open(self.log, errors="replace") as f:
                return [l for l in f if re.search(pattern, l)]
        except OSError:
            return []

    def wait_lines(self, pattern, n, secs=10):
        """The access log's lines matching pattern once there are n (squid writes a tunnel's
        line when it closes), or what there is after secs."""
        deadline = time.monotonic() + secs
        got = self.lines(pattern)
        while len(got) < n and time.monotonic() < deadline:
            time.sleep(0.1)
            got = self.lines(pattern)
        return got


_SQUID = []


def squid():
    if not _SQUID:
        _SQUID.append(Squid())
    return _SQUID[0]


# ---------------------------------------------------------------- our misbehaving proxy

class FakeProxy:
    """A proxy of ours on 127.0.0.1. mode: "403" and "407" answer CONNECT so; "close" sends half
    a status line and closes; "slow" answers 200 after delay seconds; "tunnel" is a working
    proxy (CONNECT relayed to the target; absolute-form GETs answered with the price itself),
    which with user/password first checks Proxy-Authorization (407 when it is wrong). Each
    request head it reads is kept in heads."""

    def __init__(self, mode, user=None, password=None, delay=5.0):
        self.mode, self.delay = mode, delay
        self.auth = None
        if user is not None:
            cred = ("%s:%s" % (user, password)).encode()
            self.auth = "Basic " + base64.b64encode(cred).decode()
        self.heads, self.conns = [], 0
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.name = "127.0.0.1:%d" % self.port
        self.url = "http://" + self.name
        it.CLEANUP.append(self.stop)
        threading.Thread(target=self._accept, daemon=True).start()

    def stop(self):
        self.stopping.set()
        try:
            self.sock.close()
        except OSError:
            pass

    def _accept(self):
        while not self.stopping.is_set():
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns += 1
            threading.Thread(target=self._serve, args=(c,), daemon=True).start()

    @staticmethod
    def _read_head(c, buf):
        while b"\r\n\r\n" not in buf:
            chunk = c.recv(65536)
            if not chunk or len(buf) > 65536:
                return None, b""
            buf += chunk
        head, _, rest = buf.partition(b"\r\n\r\n")
        return head.decode("latin-1"), rest

    def _serve(self, c):
        c.settimeout(15)
        try:
            rest = b""
            while True:
                head, rest = self._read_head(c, rest)
                if head is None:
                    return
                with self.lock:
                    self.heads.append(head)
                if not self._answer(c, head, rest):
                    return
                rest = b""
        except OSError:
            pass
        finally:
            c.close()

    def _answer(self, c, head, rest):
        """Answers one request head; True when the connection carries another request."""
        line = head.split("\r\n", 1)[0]
        if self.mode == "403":
            c.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return False
        if self.mode == "407" or (self.auth is not None and self._auth(head) != self.auth):
            c.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n"
                      b"Proxy-Authenticate: Basic realm=\"qfetch-test\"\r\n"
                      b"Content-Length: 0\r\n\r\n")
            return False
        if self.mode == "close":
            c.sendall(b"HTTP/1.1 200 Conn")
            return False
        if self.mode == "slow":
            if not self.stopping.wait(self.delay):
                c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            return False
        m = re.match(r"CONNECT (\S+):(\d+) HTTP/1\.1$", line)
        if m:
            self._relay(c, m.group(1).strip("[]"), int(m.group(2)), rest)
            return False
        m = re.match(r"GET http://[^/]+/v8/finance/chart/(\S+) HTTP/1\.1$", line)
        if m:
            sym = m.group(1)
            body = chart_body(sym, repr(price_for(sym)))
            c.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                      b"Content-Length: %d\r\n\r\n" % len(body) + body)
            return True
        c.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        return False

    @staticmethod
    def _auth(head):
        m = re.search(r"^Proxy-Authorization: (.*)$", head, re.M | re.I)
        return m.group(1).strip() if m else None

    def _relay(self, c, host, port, rest):
        up = socket.create_connection((host, port), timeout=10)
        try:
            c.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            if rest:
                up.sendall(rest)
            socks = [c, up]
            while not self.stopping.is_set():
                r, _, _ = select.select(socks, [], [], 15)
                if not r:
                    return
                for s in r:
                    data = s.recv(65536)
                    if not data:
                        return
                    (up if s is c else c).sendall(data)
        finally:
            up.close()

    def connects(self):
        with self.lock:
            return [h for h in self.heads if h.startswith("CONNECT ")]


# ---------------------------------------------------------------- through squid

@test
def squid_https_connect_tunnel():
    """Prices over TLS through squid: one CONNECT per connection, kept-alive connections reused
    through their tunnels (fewer connections than tickers), the server reached only via squid."""
    sq = squid()
    with it.fresh_server() as srv:
        tick = [uniq() for _ in range(8)]
        r = qfp(tick, "--proxy", sq.url, "-c", "2", srv=srv)
        it.expect_rc(r, 0)
        it.expect_all_ok(r, tick)
        st = r.stats()
        check(1 <= st["conns_opened"] <= 2 and st["reused"] >= 6,
              "keep-alive through the tunnel: %s" % st)
        pat = r"TCP_TUNNEL/200 .* CONNECT localhost:%d " % srv.port
        lines = sq.wait_lines(pat, st["conns_opened"])
        check(len(lines) == st["conns_opened"], "squid logged %d CONNECTs for %d connections"
              % (len(lines), st["conns_opened"]))
        sc = srv.stats()["connections"]
        check(sc == st["conns_opened"],  # the stats request's own is not counted
              "the server saw %d connections, squid tunnelled %d" % (sc, st["conns_opened"]))


@test
def squid_plain_absolute_form():
    """Prices over plain HTTP through squid, which forwards absolute-form requests."""
    sq = squid()
    with it.fresh_server(plain=True) as srv:
        tick = [uniq() for _ in range(4)]
        r = qfp(tick, "--proxy", sq.url, "-c", "2", "-u", plain_url(srv), srv=srv)
        it.expect_rc(r, 0)
        it.expect_all_ok(r, tick)
        for t in tick:
            pat = r" GET http://127\.0\.0\.1:%d/v8/finance/chart/%s " % (srv.port, t)
            check(len(sq.wait_lines(pat, 1)) == 1, "squid did not forward %s" % t)


@test
def squid_pipeline_through_tunnel():
    sq = squid()
    with it.fresh_server() as srv:
        tick = [uniq() for _ in range(8)]
        r = qfp(tick, "--proxy", sq.url, "-c", "1", "--pipeline", "4", srv=srv)
        it.expect_rc(r, 0)
        it.expect_all_ok(r, tick)
        st = r.stats()
        check(st["conns_opened"] == 1 and st["requests_sent"] == 8, "stats: %s" % st)


@test
def squid_session_resumes_through_tunnel():
    sq = squid()
    d = tempfile.mkdtemp(prefix="qfetch-proxy-")
    it.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    cache = os.path.join(d, "sessions")
    with it.fresh_server() as srv:
        tick = [uniq() for _ in range(4)]
        args = ["-u", srv.url, "--cacert", it.cert("ca.pem"), "-f", "json", "--stats",
                "--session-cache", cache, "--proxy", sq.url, "-c", "2", "-t"] + tick
        r1 = it.run_raw(args, env=clean_env(), timeout=40)
        it.expect_rc(r1, 0)
        r2 = it.run_raw(args, env=clean_env(), timeout=40)
        it.expect_rc(r2, 0)
        it.expect_all_ok(r2, tick)
        s2 = r2.stats()
        check(s2["tls_resumed"] >= 1 and s2["tls_full"] == 0, "second run: %s" % s2)


@test
def squid_certificate_still_verified():
    """TLS runs end to end through the tunnel: a certificate for another name is refused."""
    sq = squid()
    srv = it.server("wronghost")
    t = uniq()
    r = qfp([t], "--proxy", sq.url, "--retries", "0", srv=srv)
    it.expect_rc(r, 1)
    it.expect_err(r, t, "certificate")


# ---------------------------------------------------------------- the environment

@test
def env_https_proxy_used():
    """HTTPS_PROXY (upper case) is honoured; no_proxy naming the target goes around it."""
    sq = squid()
    with it.fresh_server() as srv:
        tick = [uniq() for _ in range(3)]
        r = qfp(tick, srv=srv, env={"HTTPS_PROXY": sq.url})
        it.expect_rc(r, 0)
        it.expect_all_ok(r, tick)
        pat = r"CONNECT localhost:%d " % srv.port
        n = len(sq.wait_lines(pat, 1))
        check(n >= 1, "HTTPS_PROXY ignored: squid saw no CONNECT")
    dead = Closed()
    for np in ("localhost", ".localhost", "localhost:%d" % srv.port, "*"):
        with it.fresh_server() as srv2:
            t = uniq()
            envs = {"https_proxy": "http://127.0.0.1:%d" % dead.port, "no_proxy": np}
            if np.startswith("localhost:"):
                envs["no_proxy"] = "localhost:%d" % srv2.port
            r = qfp([t], srv=srv2, env=envs)
            it.expect_rc(r, 0)
            it.expect_ok(r, t)


@test
def env_proxy_dead_names_it():
    """The environment's proxy is really used: a dead one fails every ticker, naming it, and
    the batch completes."""
    dead = Closed()
    tick = [uniq() for _ in range(3)]
    r = qfp(tick, "--retries", "0", srv=it.server(),
            env={"https_proxy": "http://127.0.0.1:%d" % dead.port, "no_proxy": "example.com"})
    it.expect_rc(r, 1)
    it.expect_order(r, tick)
    for t in tick:
        it.expect_err(r, t, "connect to proxy 127.0.0.1:%d" % dead.port, "refused")


@test
def env_lower_case_wins_and_HTTP_PROXY_ignored():
    dead = Closed()
    with it.fresh_server(plain=True) as srv:
        t = uniq()
        url = ["-u", plain_url(srv)]
        # HTTP_PROXY may come from a CGI request's Proxy: header: never read.
        r = qfp([t], *url, srv=srv, env={"HTTP_PROXY": "http://127.0.0.1:%d" % dead.port})
        it.expect_rc(r, 0)
        it.expect_ok(r, t)
        fp = FakeProxy("tunnel")
        r = qfp([t], *url, srv=srv, env={"http_proxy": fp.url,
                                          "HTTP_PROXY": "http://127.0.0.1:%d" % dead.port,
                                          "ALL_PROXY": "http://127.0.0.1:%d" % dead.port})
        it.expect_rc(r, 0)
        it.expect_ok(r, t)
        check(len(fp.heads) == 1 and fp.heads[0].startswith(
            "GET http://127.0.0.1:%d/v8/finance/chart/%s HTTP/1.1\r\n" % (srv.port, t)),
            "http_proxy not asked in absolute form: %r" % fp.heads)
    with it.fresh_server() as srv:
        fp = FakeProxy("tunnel")
        r = qfp([t], srv=srv, env={"https_proxy": fp.url,
                                    "HTTPS_PROXY": "http://127.0.0.1:%d" % dead.port})
        it.expect_rc(r, 0)
        check(len(fp.connects()) == 1, "https_proxy did not win: %r" % fp.heads)
        fp2 = FakeProxy("tunnel")
        r = qfp([t], srv=srv, env={"all_proxy": fp2.url})
        it.expect_rc(r, 0)
        check(len(fp2.connects()) == 1, "all_proxy not used for https: %r" % fp2.heads)


@test
def options_override_environment():
    """--proxy "" turns the environment's proxy off; --noproxy replaces no_proxy; --proxy wins
    over https_proxy."""
    dead = Closed()
    deadurl = "http://127.0.0.1:%d" % dead.port
    with it.fresh_server() as srv:
        t = uniq()
        r = qfp([t], "--proxy", "", srv=srv, env={"https_proxy": deadurl})
        it.expect_rc(r, 0)
        it.expect_ok(r, t)
        r = qfp([t], "--noproxy", "", "--retries", "0", srv=srv,
                env={"https_proxy": deadurl, "no_proxy": "localhost"})
        it.expect_rc(r, 1)
        it.expect_err(r, t, "connect to proxy 127.0.0.1:%d" % dead.port)
        fp = FakeProxy("tunnel")
        r = qfp([t], "-x", fp.url, srv=srv, env={"https_proxy": deadurl})
        it.expect_rc(r, 0)
        check(len(fp.connects()) == 1, "--proxy did not win")
        r = qfp([t], "--proxy", deadurl, "--noproxy", "other.example,localhost", srv=srv)
        it.expect_rc(r, 0)
        it.expect_ok(r, t)


# ---------------------------------------------------------------- our proxy's refusals

def refused_batch(fp, *words, opts=()):
    """Every ticker of a batch fails with words in its message; the batch completes, in order."""
    tick = [uniq() for _ in range(4)]
    r = qfp(tick, "--proxy", fp.url, "-c", "2", *opts, srv=it.server())
    it.expect_rc(r, 1)
    it.expect_order(r, tick)
    for t in tick:
        it.expect_err(r, t, *words)
    return r


@test
def proxy_403_per_ticker():
    fp = FakeProxy("403")
    r = refused_batch(fp, "proxy %s refused CONNECT: HTTP 403" % fp.name)
    # A refusal will not change: each ticker asked once (default --retries 2).
    check(len(fp.connects()) == 4, "CONNECTs: %d, want one per ticker" % len(fp.connects()))
    srv_line = fp.connects()[0].split("\r\n")
    check(srv_line[0] == "CONNECT localhost:%d HTTP/1.1" % it.server().port and
          "Host: localhost:%d" % it.server().port in srv_line,
          "CONNECT request: %r" % srv_line)
    check(r.stats()["retries"] == 0, "403 retried: %s" % r.stats())


@test
def proxy_407_per_ticker():
    fp = FakeProxy("407")
    refused_batch(fp, "proxy %s: 407 proxy authentication required" % fp.name)
    check(all("Proxy-Authorization" not in h for h in fp.heads), "credentials sent unasked")


@test
def proxy_closes_mid_connect():
    fp = FakeProxy("close")
    refused_batch(fp, "proxy %s closed the connection during CONNECT" % fp.name,
                  opts=("--retries", "0"))


@test
def proxy_slower_than_connect_timeout():
    """The connect timeout covers the CONNECT exchange: a proxy answering after it fails the
    tickers, naming the proxy, and the run ends long before the proxy's answer."""
    fp = FakeProxy("slow", delay=20)
    r = refused_batch(fp, "proxy %s: timed out after 0.5 s waiting for the answer to CONNECT"
                      % fp.name, opts=("--retries", "0", "--connect-timeout", "0.5"))
    check(r.elapsed < 15, "took %.1f s" % r.elapsed)


@test
def proxy_connection_refused():
    dead = Closed()
    tick = [uniq() for _ in range(3)]
    r = qfp(tick, "--proxy", "127.0.0.1:%d" % dead.port, "--retries", "0", srv=it.server())
    it.expect_rc(r, 1)
    for t in tick:
        it.expect_err(r, t, "connect to proxy 127.0.0.1:%d: connection refused" % dead.port)


@test
def proxy_basic_auth():
    """Credentials in the URL, percent-decoded, reach the proxy as Basic proxy authentication:
    in CONNECT for https://, with each absolute-form request for http://."""
    user, pw = "qf user", "p@ss:w%rd"
    fp = FakeProxy("tunnel", user=user, password=pw)
    good = "http://qf%%20user:p%%40ss%%3Aw%%25rd@%s" % fp.name
    tick = [uniq() for _ in range(3)]
    r = qfp(tick, "--proxy", good, "-c", "1", srv=it.server())
    it.expect_rc(r, 0)
    it.expect_all_ok(r, tick)
    check(len(fp.connects()) == 1, "one connection, one CONNECT: %r" % fp.heads)
    with it.fresh_server(plain=True) as srv:
        r = qfp(tick, "--proxy", good, "-c", "1", "-u", plain_url(srv), srv=srv)
        it.expect_rc(r, 0)
        it.expect_all_ok(r, tick)
        gets = [h for h in fp.heads if h.startswith("GET ")]
        check(len(gets) == 3 and all("\r\nProxy-Authorization: %s" % fp.auth in h for h in gets),
              "absolute-form requests without credentials: %r" % gets)
    bad = "http://qf%%20user:wrong@%s" % fp.name
    t = uniq()
    r = qfp([t], "--proxy", bad, srv=it.server())
    it.expect_rc(r, 1)
    it.expect_err(r, t, "proxy %s: 407 proxy authentication required (credentials refused)"
                  % fp.name)
    with it.fresh_server(plain=True) as srv:
        r = qfp([t], "--proxy", bad, "-u", plain_url(srv), srv=srv)
        it.expect_rc(r, 1)
        it.expect_err(r, t, "proxy %s: 407" % fp.name)


@test
def verbose_shows_the_tunnel():
    fp = FakeProxy("tunnel")
    t = uniq()
    r = qfp([t], "--proxy", fp.url, "-v", srv=it.server())
    it.expect_rc(r, 0)
    check("proxy %s: CONNECT localhost:%d" % (fp.name, it.server().port) in r.err and
          "proxy %s: HTTP/1.1 200 Connection established" % fp.name in r.err,
          "no tunnel lines in -v output")


# ---------------------------------------------------------------- the library

@test
def library_general_requests_through_proxy():
    """qf_client_request() through a proxy (examples/get sets QF_OPT_PROXY_ENV): an https://
    URL through CONNECT, an http:// one in absolute form with the caller's headers and the
    proxy's credentials; without the flag a library ignores the environment."""
    get = os.path.join(it.CFG.build, "examples", "get")
    check(os.access(get, os.X_OK), "%s missing (make examples)" % get)
    fp = FakeProxy("tunnel", user="u", password="p w")
    proxy = "http://u:p%%20w@%s" % fp.name
    tls, t = it.server(), uniq()
    with it.fresh_server(plain=True) as plain:
        urls = ["https://localhost:%d/v8/finance/chart/%s" % (tls.port, t),
                "http://localhost:%d/v8/finance/chart/%s" % (plain.port, t)]
        p = subprocess.run([get, "-H", "X-Test: 1"] + urls, capture_output=True, timeout=30,
                           env=clean_env(QF_CACERT=it.cert("ca.pem"), https_proxy=proxy,
                                         http_proxy=proxy))
        out = p.stdout.decode(errors="replace")
        check(p.returncode == 0 and out.count("status 200") == 2, "get: %r %r"
              % (out, p.stderr[-300:]))
        check(len(fp.connects()) == 1 and fp.connects()[0].startswith(
            "CONNECT localhost:%d HTTP/1.1\r\n" % tls.port), "CONNECT: %r" % fp.heads)
        gets = [h for h in fp.heads if h.startswith("GET ")]
        check(len(gets) == 1 and gets[0].startswith("GET %s HTTP/1.1\r\n" % urls[1]) and
              "\r\nX-Test: 1" in gets[0] and "\r\nProxy-Authorization: %s" % fp.auth in gets[0],
              "absolute-form request: %r" % gets)
    # The quote example does not ask for the environment: a dead proxy there changes nothing.
    quote = os.path.join(it.CFG.build, "examples", "quote")
    dead = Closed()
    p = subprocess.run([quote, t], capture_output=True, timeout=30,
                       env=clean_env(QF_URL=tls.url, QF_CACERT=it.cert("ca.pem"),
                                     https_proxy="http://127.0.0.1:%d" % dead.port))
    check(p.returncode == 0, "quote with https_proxy set: %r %r" % (p.stdout, p.stderr))


# ---------------------------------------------------------------- usage errors

@test
def usage_errors():
    cases = [
        (["--proxy", "https://127.0.0.1:3128"], {}, "https:// proxies"),
        (["--proxy", "socks5://127.0.0.1:1080"], {}, "socks proxies are not supported"),
        (["-x", "socks5h://u:secret@127.0.0.1:1080"], {}, "socks"),
        (["--proxy", "ftp://p"], {}, "unsupported proxy scheme"),
        (["--proxy", "http://p:99999"], {}, "bad port"),
        (["--proxy", "http://p/path"], {}, "path"),
        (["--proxy", "http://a%zz@p"], {}, "percent-escape"),
        (["--noproxy", "a/b"], {}, "noproxy list: 'a/b'"),
        (["--noproxy", "host:0"], {}, "noproxy list"),
        ([], {"https_proxy": "socks5://127.0.0.1:1080"}, "https_proxy: socks"),
        ([], {"ALL_PROXY": "https://p"}, "ALL_PROXY: https://"),
        (["--proxy"], {}, "needs a value"),
    ]
    srv = it.server()
    for opts, env, words in cases:
        args = ["-u", srv.url, "--cacert", it.cert("ca.pem")] + opts + ["-t", "AAPL"]
        if opts == ["--proxy"]:
            args = ["-u", srv.url, "-t", "AAPL", "--proxy"]
        r = it.run_raw(args, env=clean_env(**env), timeout=15)
        it.expect_rc(r, 2)
        lines = r.err.strip().splitlines()
        check(len(lines) == 1 and words in lines[0], "%s %s: stderr %r" % (opts, env, r.err))
        check("secret" not in r.err, "the password was echoed")
        check(r.out == "", "output on a usage error: %r" % r.out[:100])
    # An unusable no_proxy from the environment is a warning, and the rest of it still works.
    dead = Closed()
    t = uniq()
    r = it.run_raw(["-u", srv.url, "--cacert", it.cert("ca.pem"), "-f", "json", "-t", t],
                   env=clean_env(https_proxy="http://127.0.0.1:%d" % dead.port,
                                 no_proxy="a/b,localhost"), timeout=30)
    it.expect_rc(r, 0)
    check("warning: no_proxy: 'a/b' is not" in r.err, "no warning: %r" % r.err)


if __name__ == "__main__":
    sys.exit(it.main())
