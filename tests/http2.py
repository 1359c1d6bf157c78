#!/usr/bin/python3
"""HTTP/2 (issue 17): the built command against a misbehaving HTTP/2 server of ours
(tests/h2server.py, on python3-h2) and against nginx's `http2` listener; the general API over
HTTP/2 through tests/h2_general.c.

    http2.py --build DIR [--certs DIR] [--filter SUBSTR] [--list]

What it checks: one connection carries a host's requests, up to the server's
SETTINGS_MAX_CONCURRENT_STREAMS and to 100 in flight (-c N: N); GOAWAY and REFUSED_STREAM are
re-sent (stale_resends, not retries); any other reset fails its ticker alone; connection errors
(a frame over the client's maximum, GOAWAY PROTOCOL_ERROR, garbage) cost at most the streams
they cut, cleanly; PINGs are acknowledged; the client's SETTINGS (ENABLE_PUSH 0) and windows (a
370 KB body in one go) and its request headers; a token bucket's 429s over h2; nginx over h2
and --http1.1, resumption with early data, gzip; the --stats counters h2_conns, h2_streams,
h2_streams_max and the -v line.

Reuses cli_fetch.py's runner and helpers; prints `ok name` / `FAIL name: why` and ends with
`N passed, M failed, K skipped`.
"""
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import cli_fetch as it  # noqa: E402
from cli_fetch import Fail, check, uniq  # noqa: E402
from h2server import H2Server, body_for, CONNECTION_HEADERS  # noqa: E402

del it.TESTS[:]  # only this file's tests
test = it.test

H2_KEYS = ("h2_conns", "h2_streams", "h2_streams_max")
QF_EPROTO, QF_ECANCELED = "-10", "-18"  # include/qfetch.h


def h2srv(**kw):
    srv = H2Server(it.CFG.certs, **kw)
    it.CLEANUP.append(srv.stop)
    return srv


def h2q(tickers, *opts, srv, timeout=30):
    """qfetch against srv: JSON output, --stats, no session cache, 5 s per attempt (loopback
    needs far less; the suite stays well inside run.py's limit when every case hangs)."""
    args = ["-u", srv.url, "--cacert", it.cert("ca.pem"), "-f", "json", "--stats",
            "--no-session-cache", "--timeout", "5"] + list(opts) + ["-t"] + list(tickers)
    return it.run_raw(args, timeout=timeout)


def stats(r):
    """Every name=value of the one `qfetch: stats:` line, whatever counters it holds."""
    lines = [ln for ln in r.err.splitlines() if ln.startswith("qfetch: stats:")]
    check(len(lines) == 1, "expected one `qfetch: stats:` line, found %d" % len(lines))
    st = {}
    for k, v in re.findall(r" (\w+)=(\d+(?:\.\d+)?)", lines[0]):
        st[k] = float(v) if "." in v else int(v)
    missing = [k for k in H2_KEYS if k not in st]
    check(not missing, "--stats lacks %s (no HTTP/2 in this build?): %s"
          % (", ".join(missing), lines[0]))
    return st


def expect_prices(r, tickers):
    it.expect_order(r, tickers)
    it.expect_all_ok(r, tickers)


def only_h2(srv, n=None):
    """The server's connections that completed a TLS handshake, all of them h2 (and n of them,
    when given); and h2 found nothing wrong in what the client sent."""
    conns = srv.tls_conns()
    bad = [c for c in conns if c.alpn != "h2"]
    check(not bad, "connections without h2: %s" % bad)
    if n is not None:
        check(len(conns) == n, "the server saw %d connections, expected %d: %s"
              % (len(conns), n, conns))
    check(not srv.errors, "h2 found protocol errors in what the client sent: %s" % srv.errors)
    return conns


def settle(srv, secs=3.0):
    """Waits (secs at most) until the server has closed every connection: qfetch may exit
    before the server's thread has read its last frames (a GOAWAY, a reset)."""
    deadline = time.monotonic() + secs
    while time.monotonic() < deadline and not all(c.closed for c in srv.tls_conns()):
        time.sleep(0.05)


def answered_once(srv, tickers):
    got = srv.answered()
    wrong = {t: got.get(t, 0) for t in tickers if got.get(t, 0) != 1}
    check(not wrong, "answered not exactly once by the server: %s" % wrong)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# ---------------------------------------------------------------- one connection, many streams

@test
def h2_one_connection_carries_the_batch():
    srv = h2srv()
    tickers = [uniq() for _ in range(40)]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    only_h2(srv, 1)
    answered_once(srv, tickers)
    st = stats(r)
    check(st["h2_conns"] == 1 and st["h2_streams"] == 40 and st["h2_streams_max"] == 40,
          "h2 counters: %s" % st)
    check(st["requests_sent"] == 40 and st["retries"] == 0 and st["stale_resends"] == 0,
          "counters: %s" % st)
    # --stats=json carries the same counters
    t = uniq()
    rj = it.run_raw(["-u", srv.url, "--cacert", it.cert("ca.pem"), "-f", "json",
                     "--stats=json", "--no-session-cache", "-t", t], timeout=30)
    it.expect_rc(rj, 0)
    objs = [ln for ln in rj.err.splitlines() if ln.startswith("{")]
    check(len(objs) == 1, "--stats=json: no JSON object on stderr: %r" % rj.err[-300:])
    js = json.loads(objs[0])
    check(all(k in js for k in H2_KEYS) and js["h2_conns"] == 1 and js["h2_streams"] == 1,
          "--stats=json: %s" % objs[0])


@test
def h2_request_headers_and_settings():
    """The client's SETTINGS turn server push off; every request is a GET with the pseudo-headers
    of its URL, asks for gzip, names its user agent and carries no HTTP/1.1 connection header
    (h2 would call it a protocol error)."""
    srv = h2srv()
    tickers = [uniq(), "^GSPC", "BRK-B"]
    r = h2q(tickers, "--user-agent", "qfetch-h2-test/1", srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    conns = only_h2(srv)
    for c in conns:
        check(c.settings, "conn %d: no SETTINGS from the client" % c.number)
        check(c.client_setting("ENABLE_PUSH") == 0, "conn %d: ENABLE_PUSH %r in %s"
              % (c.number, c.client_setting("ENABLE_PUSH"), c.settings))
    reqs = srv.log()
    check(len(reqs) == 3, "requests: %s" % reqs)
    for q in reqs:
        h = {}
        for k, v in q["headers"]:
            check(k == k.lower(), "header name not in lower case: %r" % k)
            check(k not in CONNECTION_HEADERS, "connection-specific header %r" % k)
            h.setdefault(k, v)
        check(h.get(":method") == "GET" and h.get(":scheme") == "https", "request %s" % h)
        check(h.get(":authority") == "localhost:%d" % srv.port, ":authority %r"
              % h.get(":authority"))
        check("gzip" in h.get("accept-encoding", ""), "accept-encoding %r"
              % h.get("accept-encoding"))
        check(h.get("user-agent") == "qfetch-h2-test/1", "user-agent %r" % h.get("user-agent"))
        check("host" not in h or h["host"] == h[":authority"], "host %r" % h.get("host"))
    paths = sorted(q["path"] for q in reqs)
    want = sorted("/v8/finance/chart/" + t for t in (tickers[0], "%5EGSPC", "BRK-B"))
    check(paths == want, ":path %s, expected %s" % (paths, want))
    # --no-compressed leaves accept-encoding out; the default user agent is a browser's
    t = uniq()
    r = h2q([t], "--no-compressed", srv=srv)
    it.expect_rc(r, 0)
    h = dict(srv.log(sym=t)[0]["headers"])
    check("accept-encoding" not in h, "--no-compressed sent accept-encoding %r"
          % h.get("accept-encoding"))
    check(h.get("user-agent", "").startswith("Mozilla/"), "user-agent %r" % h.get("user-agent"))


@test
def h2_verbose_names_the_protocol():
    srv = h2srv()
    t = uniq()
    r = h2q([t], "-v", srv=srv)
    it.expect_rc(r, 0)
    check(re.search(r"conn \d+: TLSv1\.3 TLS_\w+, full handshake, h2$", r.err, re.M),
          "no `conn N: TLSv1.3 TLS_..., full handshake, h2` line in -v output")


@test
def h2_in_flight_default_100():
    """Without -c, 100 requests in flight on one connection (the server allows 128): the server
    holds its answers until 100 streams are open at once, or 5 s."""
    srv = h2srv(hold_until=100)
    tickers = [uniq() for _ in range(150)]
    r = h2q(tickers, srv=srv, timeout=45)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    only_h2(srv, 1)
    check(srv.max_open == 100, "the server saw at most %d streams open at once, expected 100"
          % srv.max_open)
    st = stats(r)
    check(st["h2_conns"] == 1 and st["h2_streams"] == 150 and st["h2_streams_max"] == 150,
          "h2 counters: %s" % st)


@test
def h2_in_flight_capped_by_c():
    """-c 4 bounds the requests in flight per host over h2 too; one connection suffices."""
    srv = h2srv(hold_until=4)
    tickers = [uniq() for _ in range(30)]
    r = h2q(tickers, "-c", "4", srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    only_h2(srv, 1)
    check(srv.max_open == 4, "at most %d streams open at once, expected exactly 4 (-c 4)"
          % srv.max_open)
    check(stats(r)["h2_conns"] == 1, "stats %s" % stats(r))


@test
def h2_max_concurrent_streams_1():
    """A server allowing one stream per connection: once the client has acknowledged that,
    it never opens a second; more connections carry the rest (at most -c of them); streams
    the server refused as excess (sent before the client read its SETTINGS; nginx refuses
    them so too) are re-sent, not retried, and every price arrives."""
    for opts, n, bound in (((), 40, 16), (("-c", "3"), 12, 3)):
        srv = h2srv(max_streams=1, delay=0.05)
        tickers = [uniq() for _ in range(n)]
        r = h2q(tickers, *opts, srv=srv)
        it.expect_rc(r, 0)
        expect_prices(r, tickers)
        conns = only_h2(srv)
        answered_once(srv, tickers)
        breaches = {c.number: c.breaches for c in conns if c.breaches}
        check(not breaches, "%s: streams opened past SETTINGS_MAX_CONCURRENT_STREAMS 1 after "
              "the client acknowledged it: %s" % (opts, breaches))
        check(len(conns) <= bound, "%s: %d connections" % (opts, len(conns)))
        st = stats(r)
        excess = sum(len(c.excess) for c in conns)
        check(st["retries"] == 0 and st["stale_resends"] >= excess,
              "%s: %d streams refused as excess; stats %s" % (opts, excess, st))
        check(st["h2_conns"] == len(conns), "stats %s" % st)
        if excess:
            it.note("%s: %d streams sent before the client read the server's SETTINGS"
                    % (" ".join(opts) or "default", excess))


# ---------------------------------------------------------------- GOAWAY and resets

@test
def h2_goaway_resent_on_a_new_connection():
    """GOAWAY(NO_ERROR) after every 5th request: the stream it names still completes, those
    above it go again on a new connection, as re-sends rather than retries."""
    srv = h2srv(goaway_after=5)
    tickers = [uniq() for _ in range(20)]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    conns = only_h2(srv)
    answered_once(srv, tickers)
    check(len(conns) >= 4, "%d connections for 20 requests, 5 each" % len(conns))
    above = srv.log(outcome="above_goaway")
    st = stats(r)
    check(st["retries"] == 0 and st["stale_resends"] >= len(above),
          "%d streams above GOAWAY's last stream; stats %s" % (len(above), st))
    # A stream the client opened as the GOAWAY came may never reach the server: >=.
    check(st["h2_conns"] == len(conns) and st["h2_streams"] >= len(srv.log()) >= 20,
          "the server saw %d connections and %d streams; stats %s"
          % (len(conns), len(srv.log()), st))


@test
def h2_refused_stream_resent():
    srv = h2srv(refuse_every=4)
    tickers = [uniq() for _ in range(24)]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    only_h2(srv)
    answered_once(srv, tickers)
    refused = srv.log(outcome="refused")
    check(len(refused) >= 6, "only %d streams refused" % len(refused))
    st = stats(r)
    check(st["retries"] == 0 and st["stale_resends"] == len(refused),
          "%d refused streams; stats %s" % (len(refused), st))
    check(st["h2_streams"] == len(srv.log()), "the server saw %d streams; stats %s"
          % (len(srv.log()), st))


@test
def h2_stream_reset_fails_its_ticker():
    """RST_STREAM INTERNAL_ERROR, before the answer or after half of it, fails that ticker with
    a message naming it; the connection and the batch carry on."""
    srv = h2srv()
    good = [uniq() for _ in range(6)]
    bad = ["RST" + uniq(), "RSTMID" + uniq()]
    tickers = good[:3] + bad[:1] + good[3:] + bad[1:]
    r = h2q(tickers, "--retries", "1", srv=srv)
    it.expect_rc(r, 1)
    it.expect_order(r, tickers)
    it.expect_all_ok(r, good)
    for t in bad:
        item = it.expect_err(r, t)
        check(item["error"].startswith("HTTP/2 stream reset by the server: INTERNAL_ERROR"),
              "%s: error %r" % (t, item["error"]))
    only_h2(srv, 1)


@test
def h2_hung_streams_time_out_alone():
    """Streams the server never answers (HANG*) end at --timeout with an error naming it, while
    the others on the same connection get their prices: one hung stream is not a dead
    connection. The run ends within its timeouts."""
    srv = h2srv()
    good = [uniq() for _ in range(6)]
    hung = ["HANG" + uniq(), "HANG" + uniq()]
    tickers = good[:3] + hung[:1] + good[3:] + hung[1:]
    t0 = time.monotonic()
    r = h2q(tickers, "--timeout", "1", "--retries", "0", srv=srv)
    took = time.monotonic() - t0
    it.expect_rc(r, 1)
    it.expect_order(r, tickers)
    it.expect_all_ok(r, good)
    for t in hung:
        item = it.expect_err(r, t)
        check(item["error"] == "timed out after 1.0 s waiting for the response",
              "%s: error %r" % (t, item["error"]))
    check(took < 10, "the run took %.1f s with --timeout 1" % took)
    check(stats(r)["conns_opened"] == 1, "stats %s" % stats(r))
    only_h2(srv, 1)


@test
def h2_silent_server_times_out():
    """A server that completes the handshake and then answers nothing: every ticker fails with
    the timeout on every attempt (a connection silent since its streams began is closed and the
    retry goes to a new one), within --timeout x attempts."""
    srv = h2srv()
    hung = ["HANG" + uniq() for _ in range(4)]
    t0 = time.monotonic()
    r = h2q(hung, "--timeout", "1", "--retries", "1", srv=srv)
    took = time.monotonic() - t0
    it.expect_rc(r, 1)
    for t in hung:
        item = it.expect_err(r, t)
        check(item["error"] == "timed out after 1.0 s waiting for the response",
              "%s: error %r" % (t, item["error"]))
    st = stats(r)
    check(st["retries"] == 4 and st["conns_opened"] == 2, "stats %s" % st)
    check(took < 12, "the run took %.1f s with --timeout 1 and one retry" % took)


def connection_fault(**mode):
    """A batch with a BOOM* ticker that breaks the first connection: every ticker ends with its
    price or a clean error, those answered in full before the fault with their price, within
    the timeouts; the fault really happened over h2."""
    srv = h2srv(**mode)
    good = [uniq() for _ in range(8)]
    boom = "BOOM" + uniq()
    tickers = good[:4] + [boom] + good[4:]
    r = h2q(tickers, "--timeout", "3", "--retries", "1", srv=srv)
    check(r.rc in (0, 1), "exit status %s" % r.rc)
    it.expect_order(r, tickers)
    items = r.by_ticker()
    for t in tickers:
        item = items[t]
        if "price" in item:
            it.expect_ok(r, t)
        else:
            err = item.get("error", "")
            check(err.startswith("HTTP/2") or err.startswith("connection closed"),
                  "%s: error %r" % (t, err))
    conns = srv.tls_conns()
    check(conns and conns[0].alpn == "h2" and conns[0].fault is not None,
          "the fault never fired: %s" % conns)
    for q in srv.log(conn=conns[0].number, outcome="answered"):
        it.expect_ok(r, q["sym"])
    check(r.elapsed < 30, "took %.1f s" % r.elapsed)
    stats(r)
    settle(srv)
    it.note("%d of %d prices; first connection ended: %s; client's GOAWAY: %s"
            % (sum("price" in items[t] for t in tickers), len(tickers), conns[0].end,
               conns[0].client_goaway))
    return srv, r


@test
def h2_frame_too_large():
    srv, _ = connection_fault(frame_too_large=True)
    c = srv.tls_conns()[0]
    check(c.client_goaway in (None, "FRAME_SIZE_ERROR"),
          "the client answered an oversized frame with GOAWAY %s" % c.client_goaway)


@test
def h2_goaway_protocol_error():
    connection_fault(conn_error="goaway")


@test
def h2_garbage_bytes():
    connection_fault(conn_error="garbage")


@test
def h2_ping_acknowledged():
    """Each response stops halfway for a PING; the client must answer every one."""
    srv = h2srv(ping=True)
    tickers = [uniq() for _ in range(4)] + ["BIG" + uniq()]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    pings = {}
    for c in only_h2(srv):
        pings.update(c.pings)
    check(len(pings) == 5 and all(pings.values()),
          "PINGs sent %d, acknowledged %d" % (len(pings), sum(pings.values())))


@test
def h2_windows_let_a_big_body_through():
    """A 370 KB body fits the windows the client advertises before its request (so it comes in
    one go), whatever tiny window the server announces; four at once on one connection
    still arrive, the client opening its windows as it reads."""
    srv = h2srv(window=16)
    big = "BIG" + uniq()
    tickers = [uniq(), big, uniq()]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    c = only_h2(srv, 1)[0]
    q = srv.log(sym=big)[0]
    check(q["body_len"] >= 370000, "body of %d bytes" % q["body_len"])
    check(q["window"] >= q["body_len"],
          "the client's windows allowed %d bytes of a %d byte body at once (its SETTINGS %s, "
          "connection WINDOW_UPDATEs %s)" % (q["window"], q["body_len"], c.settings,
                                             c.window_updates))
    bigs = ["BIG" + uniq() for _ in range(4)]
    tickers = bigs + [uniq() for _ in range(4)]
    r = h2q(tickers, srv=srv)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    check(stats(r)["bytes_read"] >= 4 * 370000, "stats %s" % stats(r))
    check(stats(r)["h2_conns"] == 1, "stats %s" % stats(r))


@test
def h2_token_bucket():
    """Issue 17's token bucket (20 requests/s, burst 10) over HTTP/2, Yahoo's protocol, 200
    tickers. At -c 16 the issue's targets hold as over HTTP/1.1: every price, at most 1.3
    requests per ticker. With the defaults the first flight is 100 streams, 90 of them beyond
    the burst: the batch still ends, each ticker priced or failed with the plain rate-limit
    sentence, none sent more than 3 times (--retries 2); its requests per ticker are noted
    (a first flight of 100 alone costs 1.45: that default is an open question of issue 17)."""
    syms = [uniq() for _ in range(200)]
    for opts in (["-c", "16"], []):
        srv = h2srv(rate=20, burst=10, retry_after=True)
        r = h2q(syms, *opts, srv=srv, timeout=200)
        only_h2(srv, 1)
        sent = {}
        for q in srv.requests:
            sent[q["sym"]] = sent.get(q["sym"], 0) + 1
        per = len(srv.requests) / len(syms)
        limited = sum(1 for q in srv.requests if q.get("limited"))
        check(max(sent.values()) <= 3, "%s: a ticker sent %d times" % (opts, max(sent.values())))
        if opts:
            it.expect_rc(r, 0)
            expect_prices(r, syms)
            check(per <= 1.3, "-c 16: %.2f requests per ticker (target <= 1.3)" % per)
        else:
            items = r.by_ticker()
            bad = [t for t in syms if t not in items or not (
                "price" in items[t] or "rate limited by localhost (HTTP 429)" in
                items[t].get("error", ""))]
            check(not bad, "neither priced nor rate limited: %s" % [items.get(t) for t in bad[:3]])
        it.note("%s: %d of %d priced, %.2f requests per ticker, %d answered 429"
                % (" ".join(opts) or "defaults", sum(1 for t in syms if "price" in
                                                     r.by_ticker().get(t, {})),
                   len(syms), per, limited))


# ---------------------------------------------------------------- not h2

@test
def plain_http_stays_http1():
    with it.fresh_server(plain=True) as srv:
        tickers = [uniq() for _ in range(5)]
        url = "http://localhost:%d/v8/finance/chart/{}" % srv.port
        r = it.run_raw(["-u", url, "-f", "json", "--stats", "-c", "2", "-t"] + tickers,
                       timeout=30)
        it.expect_rc(r, 0)
        expect_prices(r, tickers)
        st = stats(r)
        check(st["h2_conns"] == 0 and st["h2_streams"] == 0, "stats %s" % st)


# ---------------------------------------------------------------- nginx

H2_LOG = "'$connection $server_protocol $status \"$request_uri\" $sent_http_content_encoding'"


class NginxH2(it.Nginx):
    """nginx with a second listener, `ssl http2`, in the same server block (cli_fetch's own
    listen line stays HTTP/1.1 only); .port and .url are the h2 listener's. nginx 1.22's
    default protocols stop at TLS 1.2: TLS 1.3 is turned on, as it is on real servers."""

    def __init__(self, symbols, http_extra="", **kw):
        for attempt in range(3):
            port = free_port()  # picked before nginx binds it: another may take it
            try:
                super().__init__(symbols, log=H2_LOG, prefix="qfetch-nginx-h2-",
                                 locations="listen 127.0.0.1:%d ssl http2;\n        "
                                           "location / { }" % port,
                                 http_extra="    ssl_protocols TLSv1.2 TLSv1.3;\n" + http_extra,
                                 **kw)
                break
            except Fail:
                if attempt == 2:
                    raise
        self.h1_port, self.port = self.port, port
        self.url = "https://localhost:%d/v8/finance/chart/{}" % port

    def rows(self):
        """(connection, protocol, status, uri, content-encoding) per logged request."""
        out = []
        with open(os.path.join(self.dir, "access.log")) as f:
            for ln in f:
                m = re.match(r'(\d+) (\S+) (\d+) "(.*)" (\S+)$', ln.rstrip("\n"))
                if m:
                    out.append((int(m.group(1)), m.group(2), int(m.group(3)), m.group(4),
                                m.group(5)))
        return out


def nginx_h2(symbols, **kw):
    if not shutil.which("nginx"):
        raise Fail("nginx not installed")
    return NginxH2(symbols, **kw)


_NG = []
NG_SYMS = ["NH%s%03d" % (it.CFG.tag, i) for i in range(200)]


def shared_nginx():
    if not _NG:
        _NG.append(nginx_h2(NG_SYMS))
    return _NG[0]


def chart_rows(ng, since=0, want=0):
    """The chart requests nginx logged after its first since lines, once there are want."""
    return it.settled(lambda: [row for row in ng.rows()[since:]
                               if row[3].startswith("/v8/finance/chart/")],
                      lambda rows: len(rows) >= want)


@test
def nginx_h2_200_on_one_connection():
    ng = shared_nginx()
    n0 = len(ng.rows())
    r = h2q(NG_SYMS, srv=ng, timeout=45)
    it.expect_rc(r, 0)
    expect_prices(r, NG_SYMS)
    rows = chart_rows(ng, n0, 200)
    check(len(rows) == 200, "nginx logged %d requests" % len(rows))
    check({row[1] for row in rows} == {"HTTP/2.0"}, "protocols %s" % {row[1] for row in rows})
    conns = {row[0] for row in rows}
    check(len(conns) == 1, "nginx saw %d connections" % len(conns))
    st = stats(r)
    check(st["h2_conns"] == 1 and st["h2_streams"] == 200 and st["h2_streams_max"] == 200,
          "stats %s" % st)


@test
def nginx_h2_c4_one_connection():
    """-c 4 over h2: one connection still (4 streams in flight; h2_in_flight_capped_by_c counts
    them on our server, nginx's log cannot)."""
    ng = shared_nginx()
    n0 = len(ng.rows())
    tickers = NG_SYMS[:100]
    r = h2q(tickers, "-c", "4", srv=ng, timeout=45)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    rows = chart_rows(ng, n0, 100)
    check(len(rows) == 100 and len({row[0] for row in rows}) == 1,
          "%d requests over %d connections" % (len(rows), len({row[0] for row in rows})))
    check(stats(r)["h2_conns"] == 1, "stats %s" % stats(r))


@test
def nginx_http1_1_flag_on_the_h2_listener():
    """--http1.1 offers only http/1.1: nginx's h2 listener serves HTTP/1.1 then."""
    ng = shared_nginx()
    n0 = len(ng.rows())
    tickers = NG_SYMS[:40]
    r = h2q(tickers, "--http1.1", "-c", "4", "-v", srv=ng, timeout=45)
    it.expect_rc(r, 0)
    expect_prices(r, tickers)
    rows = chart_rows(ng, n0, 40)
    check(len(rows) == 40 and {row[1] for row in rows} == {"HTTP/1.1"},
          "nginx logged %s" % sorted({row[1] for row in rows}))
    check(len({row[0] for row in rows}) <= 4, "%d connections" % len({row[0] for row in rows}))
    st = stats(r)
    check(st["h2_conns"] == 0 and st["h2_streams"] == 0, "stats %s" % st)
    check(re.search(r"conn \d+: TLSv1\.3 TLS_\w+, full handshake, http/1\.1$", r.err, re.M),
          "no `conn N: TLSv1.3 ..., full handshake, http/1.1` line in -v output")


@test
def nginx_h2_resumes_with_early_data():
    """Run 1 leaves tickets in the session cache; run 2 resumes and sends its first requests as
    early data, over h2. OpenSSL takes early data only with stateless tickets, so nginx keeps
    no shared session cache (as sessions_and_pipelining.py's EarlyNginx)."""
    syms = ["NE%s%d" % (it.CFG.tag, i) for i in range(3)]
    ng = nginx_h2(syms, http_extra="    ssl_early_data on;\n", session_cache=False)
    d = tempfile.mkdtemp(prefix="qfetch-h2-cache-")
    it.CLEANUP.append(lambda: shutil.rmtree(d, ignore_errors=True))
    cache = os.path.join(d, "sessions")
    args = ["-u", ng.url, "--cacert", it.cert("ca.pem"), "-f", "json", "--stats",
            "--session-cache", cache, "--early-data", "-t"] + syms
    r1 = it.run_raw(args, timeout=30)
    it.expect_rc(r1, 0)
    expect_prices(r1, syms)
    check(stats(r1)["h2_conns"] >= 1, "run 1: %s" % stats(r1))
    r2 = it.run_raw(args, timeout=30)
    it.expect_rc(r2, 0)
    expect_prices(r2, syms)
    s2 = stats(r2)
    check(s2["tls_resumed"] >= 1 and s2["early_data"] >= 1 and s2["h2_conns"] >= 1,
          "run 2: %s" % s2)
    protos = {row[1] for row in chart_rows(ng)}
    check(protos == {"HTTP/2.0"}, "nginx logged %s" % protos)


@test
def nginx_h2_gzip():
    syms = ["NZ%s%02d" % (it.CFG.tag, i) for i in range(20)]
    ng = nginx_h2(syms, http_extra="    gzip on; gzip_types application/json; "
                                   "gzip_min_length 0;\n")
    plain = h2q(syms, "--no-compressed", srv=ng)
    it.expect_rc(plain, 0)
    expect_prices(plain, syms)
    coded = h2q(syms, srv=ng)
    it.expect_rc(coded, 0)
    expect_prices(coded, syms)
    rows = chart_rows(ng, 0, 40)
    check(len(rows) == 40 and [row[4] for row in rows[20:]] == ["gzip"] * 20 and
          [row[4] for row in rows[:20]] == ["-"] * 20 and {row[1] for row in rows} ==
          {"HTTP/2.0"}, "nginx logged %s" % (rows[:2] + rows[-2:]))
    b0, b1 = stats(plain)["bytes_read"], stats(coded)["bytes_read"]
    check(b1 < b0 * 0.75, "bytes_read %d compressed vs %d plain" % (b1, b0))
    check(stats(coded)["h2_conns"] == 1, "stats %s" % stats(coded))
    it.note("bytes_read for 20 tickers over h2: %d plain, %d gzip" % (b0, b1))


# ---------------------------------------------------------------- the general API

def general_lines(out):
    """{name: [the rest of each line starting with name]}."""
    res = {}
    for ln in out.splitlines():
        name, _, rest = ln.partition(" ")
        res.setdefault(name, []).append(rest)
    return res


def fields(rest):
    return dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)


@test
def h2_general_api():
    """tests/h2_general.c over h2: response headers with their lower-case names, HEAD (status,
    no body), a streamed 370 KB body, a reset (QF_EPROTO), a request cancelled from another's
    callback (never called back; the server sees the reset or the stream never completes), a
    body aborted from its own on_chunk; then a second round on the same connection."""
    prog = os.path.join(it.CFG.build, "test", "h2_general")
    check(os.access(prog, os.X_OK), "%s missing (make unit builds it)" % prog)
    srv = h2srv()
    try:
        p = subprocess.run([prog, srv.origin, it.cert("ca.pem")], capture_output=True,
                           timeout=30)
    except subprocess.TimeoutExpired:
        raise Fail("h2_general did not finish within 30 s")
    out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
    check(p.returncode == 0 and "AddressSanitizer" not in err and "runtime error" not in err,
          "h2_general exit %s: %s" % (p.returncode, err[-600:]))
    g = general_lines(out)
    check("done" in g, "h2_general did not finish: %r" % out[-400:])

    def one(name):
        check(len(g.get(name, [])) >= 1, "no %r line in %r" % (name, out[-600:]))
        return fields(g[name][0])

    get = one("get")
    check(get["err"] == "0" and get["status"] == "200", "get: %s" % get)
    body = body_for("GENG1")
    check(int(get["body_len"]) == len(body), "get body %s, expected %d" % (get, len(body)))
    hdrs = [h.split(" ", 1)[1] for h in g["get"] if h.startswith("header ")]
    names = [h.split(":", 1)[0] for h in hdrs]
    check(names and all(n == n.lower() for n in names) and "x-qf-h2" in names and
          "content-length: %d" % len(body) in hdrs, "get headers %s" % hdrs)
    head = one("head")
    check(head["err"] == "0" and head["status"] == "200" and head["body_len"] == "0",
          "head: %s" % head)
    stream = one("stream")
    big = len(body_for("BIGG1"))
    check(stream["err"] == "0" and stream["status"] == "200" and stream["body_null"] == "1" and
          int(stream["streamed"]) == big and int(stream["body_len"]) == big and
          int(stream["chunks"]) >= 2, "stream: %s (body %d bytes)" % (stream, big))
    rst = one("rst")
    check(rst["err"] == QF_EPROTO, "rst: %s (expected QF_EPROTO, %s)" % (rst, QF_EPROTO))
    check(any("HTTP/2 stream reset by the server: INTERNAL_ERROR" in ln for ln in g["rst"]),
          "rst message: %s" % g["rst"])
    check("hang" not in g, "the cancelled request was called back: %s" % g.get("hang"))
    check(g.get("cancel") == ["rc=0"], "qf_client_cancel from a callback: %s" % g.get("cancel"))
    check(one("slow")["err"] == "0", "slow: %s" % g["slow"])
    ab = one("abort")
    check(ab["err"] == QF_ECANCELED, "abort: %s (expected QF_ECANCELED, %s)" % (ab, QF_ECANCELED))
    again = one("again")
    check(again["err"] == "0" and again["status"] == "200", "again: %s" % again)
    rounds = fields(g["round2"][0])
    check(g["round1"][0] == "rc=0" and rounds["rc"] == "0", "rounds: %s %s"
          % (g["round1"], g["round2"]))
    settle(srv)
    conns = only_h2(srv, 1)
    hang = srv.log(sym="HANGG1")
    check(len(hang) == 1 and hang[0]["outcome"] in ("reset_by_client", "unanswered"),
          "the cancelled stream: %s" % hang)
    it.note("cancelled stream: %s; resets from the client %s"
            % (hang[0]["outcome"], conns[0].client_resets))


if __name__ == "__main__":
    sys.exit(it.main())
