#!/usr/bin/python3
"""HTTP/2 locally (issue 17): qfetch, curl and h2load against one local nginx (1 worker, TLS
1.3, bench/run.py's bodies), no distance:

  cpu     10,000 tickers over HTTP/2: qfetch with its defaults, curl --http2 --parallel
          --parallel-max 100, and h2load -c 1 -m 100, the HTTP/2 ceiling as wrk is for HTTP/1.1
          (it parses no JSON); CPU time per request, user+sys of the client process
  bytes   200 tickers from listeners with gzip on, one HTTP/2 and one HTTP/1.1, each behind
          bench/relay.py without delay, which counts the bytes the server sent: qfetch with its
          defaults (compressed) and with --no-compressed, curl --compressed --parallel
          --parallel-max 100

Every run is fork to reap under build/bench/measure (process start included). Contenders run
interleaved, the order rotating from round to round, after one unmeasured round. Every answer
is checked: qfetch's prices; curl's status, HTTP version and body size for every URL, and the
decoded body itself when compressed; h2load's successful requests and body bytes.

    bench/http2.py [--build build] [--runs N] [--quick] [--markdown FILE] [--write]

--markdown writes the RESULTS.md section to FILE (bench/run.py includes it); --write puts it
into bench/RESULTS.md in place of the previous one, nothing else changed. --quick: one round
of each on fewer tickers that checks answers, not times (make bench-quick). Exit status: 0
when every answer was right, 1 when a contender gave a wrong answer, 2 when a tool is missing.
"""
import argparse
import os
import re
import shutil
import signal
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import distance  # noqa: E402
import relay  # noqa: E402
import run as harness  # noqa: E402
from distance import (Wrong, check_curl, check_protocol, check_qfetch, conns_text,  # noqa: E402
                      curl_cmd, med, parse_curl, qfetch_cmd, stats_of)

HEADING = harness.HTTP2_HEADING + " (issue 17)"
CPU_TICKERS = 10000
BYTES_TICKERS = 200
QUICK_TICKERS = 300
PARALLEL = distance.MANY_PARALLEL  # curl's --parallel-max, h2load's -m, qfetch's default
TARGET_CPU_CURL = 0.35
TARGET_CPU_H2LOAD = 1.15
GZIP = "gzip on; gzip_types application/json; gzip_min_length 0;"
# (attribute, listen flags, directives) of the servers bench/run.py's nginx adds
LISTENERS = (("h2_port", " http2", ""), ("gz_h2_port", " http2", GZIP),
             ("gz_h1_port", "", GZIP))
# Hop-by-hop lines are not HTTP/2's (RFC 9113 8.2.2); curl --compressed asks for its encodings.
NOT_SENT = ("connection", "keep-alive", "accept-encoding")
LABEL = {
    "qfetch": "qfetch", "curl": "curl --http2 --parallel-max %d" % PARALLEL,
    "h2load": "h2load -c 1 -m %d (no JSON)" % PARALLEL,
    "qfetch_gz": "qfetch", "qfetch_plain": "qfetch --no-compressed",
    "curl_gz": "curl --compressed --parallel-max %d" % PARALLEL,
}
log = harness.log


class Local(distance.Tools):
    """nginx with bench/run.py's bodies on its HTTP/2 and gzip listeners (LISTENERS)."""

    def start(self, n):
        harness.MEASURE = self.measure
        self.data = harness.Data(self.work, n)
        self.expected, self.size = self.data.expected, self.data.size
        self.ng = harness.Nginx(self.work, self.data, os.path.dirname(self.ca), False, LISTENERS)
        self.headers = [a for ln in harness.request_headers(self.qfetch)
                        if ln.split(":")[0].strip().lower() not in NOT_SENT
                        for a in ("-H", ln)]

    def stop(self):
        if getattr(self, "ng", None) is not None:
            self.ng.stop()

    def url(self, port):
        return "https://127.0.0.1:%d/v8/finance/chart/{}" % port

    def spawn(self, argv, env=None):
        r = harness.spawn(argv, None, self.work, env or self.env)
        if r.timed_out:
            raise Wrong("timed out: %s" % " ".join(argv[:3]))
        return r


# ---------------------------------------------------------------- cpu

def check_h2load(s, r, syms):
    """Every request succeeded over h2 with a 2xx, and the bodies' bytes add up."""
    done = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded", r.out)
    ok = re.search(r"status codes: (\d+) 2xx", r.out)
    body = re.search(r"traffic: .*\((\d+)\) data", r.out)
    proto = re.search(r"Application protocol: (\S+)", r.out)
    want = [len(syms), len(syms), sum(s.size[t] for t in syms), "h2"]
    got = [int(done.group(1)) if done else None, int(ok.group(1)) if ok else None,
           int(body.group(1)) if body else None, proto.group(1) if proto else None]
    if r.rc != 0 or got != want:
        raise Wrong("rc %d, succeeded, 2xx, body bytes, protocol %s, want %s: %s" % (
            r.rc, got, want, (r.out + r.err).strip()[-300:]))
    r.conns = 1  # -c 1


def cpu(s, n, runs, quick):
    """n tickers over HTTP/2: {contender: [Run]}."""
    syms = s.data.bulk[:n]
    url = s.url(s.ng.h2_port)
    urls = [url.format(t) for t in syms]
    c = {"qfetch": (qfetch_cmd(s, url, syms, "--no-session-cache"), None,
                    lambda r: (check_qfetch(s, r, syms), check_protocol(r, True))),
         "curl": (curl_cmd(s, urls, "--parallel", "--parallel-max", str(PARALLEL), "--http2",
                           *s.headers), None, lambda r: check_curl(s, r, syms, "2"))}
    if shutil.which("h2load"):
        # One URL a line, used in turn: each ticker once. Its scheme, host and port come from
        # the first line.
        listing = s.file("h2load-urls", "\n".join(urls) + "\n")
        c["h2load"] = (["h2load", "-n", str(n), "-c", "1", "-m", str(PARALLEL), "-i", listing]
                       + s.headers, None, lambda r: check_h2load(s, r, syms))
    else:
        s.notes.append("h2load skipped: not installed (Debian package nghttp2-client)")
    res = {name: [] for name in c}
    distance.interleave(s.spawn, res, c, runs, not quick,
                        lambda name: "%d tickers over HTTP/2, %s" % (n, LABEL[name]))
    return res


# ---------------------------------------------------------------- bytes

def check_decoded(s, r, syms, version, outputs):
    """curl --compressed: every transfer 200 over HTTP version, fewer bytes than the body on
    the wire, and the body itself once decoded (each output file is read and removed)."""
    seen = parse_curl(r)
    bad = []
    for t, path in zip(syms, outputs):
        with open(path, "rb") as f, open(os.path.join(s.data.root, "v8", "finance", "chart",
                                                      t), "rb") as want:
            same = f.read() == want.read()
        os.unlink(path)
        got = seen.get(t)
        if not (same and got and got[0] == "200" and got[1] < s.size[t] and got[2] == version):
            bad.append(t)
    if r.rc != 0 or bad:
        raise Wrong("rc %d, %d of %d transfers wrong or not compressed (want HTTP %s): %s" % (
            r.rc, len(bad), len(syms), version, (r.out + r.err).strip()[-300:]))


def counted(tally, check):
    """check, after taking the bytes the run's connections carried off the relay's tally
    (r.down, r.up) and clearing it for the next run through the same relay."""
    def run(r):
        if not tally.settle():
            raise Wrong("the relay still had %d connections open" % (tally.opened - tally.closed))
        r.down, r.up = tally.down, tally.up
        tally.reset()
        check(r)
    return run


def wire(s, n, runs, quick, stack):
    """n tickers from each gzip listener through a counting relay: {listener: {contender:
    [Run]}}; stack gets the relays' stops."""
    syms = s.data.bulk[:n]
    c, out = {}, {}
    for v, attr, version in (("h2", "gz_h2_port", "2"), ("h1", "gz_h1_port", "1.1")):
        tally = relay.Tally()
        port, stop = relay.start_relay(getattr(s.ng, attr), 0, tally)
        stack.append(stop)
        url = s.url(port)
        outdir = os.path.join(s.work, "curl-" + v)
        os.makedirs(outdir)
        outputs = [os.path.join(outdir, t) for t in syms]
        c["qfetch_gz " + v] = (qfetch_cmd(s, url, syms, "--no-session-cache"), None, counted(
            tally, lambda r, v=v: (check_qfetch(s, r, syms), check_protocol(r, v == "h2"))))
        c["qfetch_plain " + v] = (qfetch_cmd(s, url, syms, "--no-session-cache",
                                             "--no-compressed"), None,
                                  counted(tally, lambda r: check_qfetch(s, r, syms)))
        c["curl_gz " + v] = (curl_cmd(s, [url.format(t) for t in syms], "--parallel",
                                      "--parallel-max", str(PARALLEL), "--http" + version,
                                      "--compressed", *s.headers, outputs=outputs), None,
                             counted(tally, lambda r, version=version, outputs=outputs:
                                     check_decoded(s, r, syms, version, outputs)))
    res = {name: [] for name in c}
    distance.interleave(s.spawn, res, c, runs, not quick,
                        lambda name: "%d tickers with gzip, %s" % (n, name))
    for key, runs_ in res.items():
        name, v = key.split()
        out.setdefault(v, {})[name] = runs_
    return out


# ---------------------------------------------------------------- reporting

def ms(runs, what):
    v = [getattr(r, what) * 1e3 for r in runs]
    return "%.1f [%.1f-%.1f]" % (med(v), min(v), max(v))


def cpu_table(res, n):
    q = res.get("qfetch")
    lines = ["", "### %s tickers over HTTP/2: CPU per request" % "{:,}".format(n), "",
             "| contender | wall: median ms [min-max] | CPU: median ms [min-max] | CPU us per "
             "request | connections | qfetch / x: wall, CPU |", "|---|---|---|---|---|---|"]
    for name, runs in res.items():
        ratio = ""
        if q and name != "qfetch":
            ratio = "%.2fx, %.2fx" % (med([r.wall for r in q]) / med([r.wall for r in runs]),
                                      med([r.cpu for r in q]) / med([r.cpu for r in runs]))
        lines.append("| %s | %s | %s | %.1f | %s | %s |" % (
            LABEL[name], ms(runs, "wall"), ms(runs, "cpu"), med([r.cpu for r in runs]) / n * 1e6,
            conns_text(runs), ratio))
    return lines


def cpu_targets(res, n):
    out = []
    for other, limit in (("curl", TARGET_CPU_CURL), ("h2load", TARGET_CPU_H2LOAD)):
        label = "%s tickers over HTTP/2, CPU per request, qfetch / %s" % (
            "{:,}".format(n), LABEL[other])
        if not res.get("qfetch") or not res.get(other):
            out.append("SKIP  %s: not measured" % label)
            continue
        v = med([r.cpu for r in res["qfetch"]]) / med([r.cpu for r in res[other]])
        out.append("%s  %s: %.3fx (target <= %.2fx)" % ("PASS" if v <= limit else "MISS",
                                                        label, v, limit))
    return out


def own_count(r):
    """Bytes the client itself says it read: qfetch's bytes_read (TLS records included),
    curl's body bytes as received plus its header bytes (HTTP, after TLS)."""
    st = stats_of(r)
    if "bytes_read" in st:
        return st["bytes_read"]
    return sum(v[1] + v[3] for v in parse_curl(r).values())


def wire_table(out, n):
    lines = ["", "### %d tickers with gzip on: bytes per ticker" % n, "",
             "| listener | contender | from the server, through the relay: median [min-max] "
             "| the client's own count | connections | vs curl |", "|---|---|---|---|---|---|"]
    for v, listener in (("h2", "HTTP/2"), ("h1", "HTTP/1.1")):
        res = out.get(v, {})
        curl = med([r.down for r in res.get("curl_gz", [])])
        for name, runs in res.items():
            down = [r.down / n for r in runs]
            lines.append("| %s | %s | %.0f [%.0f-%.0f] | %.0f | %s | %s |" % (
                listener, LABEL[name], med(down), min(down), max(down),
                med([own_count(r) for r in runs]) / n, conns_text(runs),
                "%.2fx" % (med(down) * n / curl) if curl and name != "curl_gz" else ""))
    return lines


def wire_info(out, n):
    lines = []
    for v, listener in (("h2", "HTTP/2"), ("h1", "HTTP/1.1")):
        res = out.get(v, {})
        per = {name: med([r.down for r in runs]) / n for name, runs in res.items() if runs}
        if "qfetch_gz" in per and "curl_gz" in per and "qfetch_plain" in per:
            lines.append("INFO  %d tickers with gzip over %s: qfetch %.0f B per ticker, %s %.0f "
                         "B: %.2fx; qfetch --no-compressed %.0f B" % (
                             n, listener, per["qfetch_gz"], LABEL["curl_gz"], per["curl_gz"],
                             per["qfetch_gz"] / per["curl_gz"], per["qfetch_plain"]))
    return lines


def method(s, runs, elapsed):
    return [
        distance.written_by("http2.py", "make bench-http2", elapsed, s.load_start),
        "",
        "- Server: nginx, 1 worker, on 127.0.0.1, TLS 1.3 (the bench's test certificate), "
        "`keepalive_requests 1000000` (HTTP/2 connections too), HTTP/2 with nginx's default "
        "128 streams at once; bodies: %s, mean %.0f bytes. No relay for the CPU rows." % (
            s.data.source, s.data.mean_size),
        "- CPU: user+sys of the client process (threads included) from `wait4`'s rusage in "
        "`build/bench/measure`, fork to reap, process start and TLS set-up included; per "
        "request: / the tickers. %d rounds, interleaved, order rotating, after an unmeasured "
        "one; medians [min-max]. qfetch: its defaults, `--no-session-cache`, `-f csv --stats`; "
        "curl: `--http2 --parallel --parallel-max %d -K urls.conf` (bodies to /dev/null); "
        "h2load: `-n N -c 1 -m %d -i urls.txt`, each URL once, nothing parsed. curl and h2load "
        "send qfetch's request header lines (User-Agent, Accept; no Connection, not HTTP/2's)."
        % (runs, PARALLEL, PARALLEL),
        "- Bytes: nginx `%s` on a second HTTP/2 and an HTTP/1.1 listener, each behind "
        "`bench/relay.py` with no delay, which counts the bytes nginx sent through it (TLS "
        "handshakes and records, HTTP/2 frames, headers, bodies) until every connection of the "
        "run is over: the column that compares like with like. The client's own count, for "
        "reference: qfetch's `--stats` `bytes_read`, curl's `%%{size_download}` + "
        "`%%{size_header}` (HTTP bytes after TLS, headers as curl prints them). curl "
        "`--compressed` asks for deflate, gzip, br, zstd; nginx answers gzip. %d rounds."
        % (GZIP, runs),
        "- %s: CPU per request is steadier than wall time, but a busy machine still adds cache "
        "misses and migrations to every contender." % distance.load_text(s.load_start),
    ]


def report(s, res_cpu, n_cpu, res_wire, n_wire, runs, elapsed):
    targets = cpu_targets(res_cpu, n_cpu) + wire_info(res_wire, n_wire)
    section = [HEADING, ""] + method(s, runs, elapsed) + cpu_table(res_cpu, n_cpu) + \
        wire_table(res_wire, n_wire) + ["", "```"] + targets + ["```"]
    if s.notes:
        section += [""] + ["- " + n for n in s.notes]
    return section


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--runs", type=int, default=0, help="rounds (default 5)")
    ap.add_argument("--quick", action="store_true", help="answers only, seconds")
    ap.add_argument("--markdown", metavar="FILE", help="write the RESULTS.md section to FILE")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)  # unwinds: nginx and the relays stop
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    base = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    work = tempfile.mkdtemp(prefix="qfetch-http2-", dir=base)
    os.chmod(work, 0o755)  # nginx's worker may run as another user
    s = Local(args.build, work)
    missing = s.missing(("curl", "nginx"))
    if missing:
        log("http2: %s missing" % missing)
        shutil.rmtree(work, ignore_errors=True)
        return 2
    runs = args.runs or (1 if args.quick else 5)
    n_cpu = QUICK_TICKERS if args.quick else CPU_TICKERS
    stops = []
    s.load_start = "%.2f, %.2f, %.2f" % os.getloadavg()
    t0 = time.monotonic()
    try:
        s.start(max(n_cpu, BYTES_TICKERS))
        log("http2: %d tickers over HTTP/2, CPU (%d rounds)" % (n_cpu, runs))
        res_cpu = cpu(s, n_cpu, runs, args.quick)
        log("http2: %d tickers with gzip, bytes (%d rounds)" % (BYTES_TICKERS, runs))
        res_wire = wire(s, BYTES_TICKERS, runs, args.quick, stops)
    except Wrong as e:
        log("http2: WRONG %s" % e)
        return 1
    finally:
        for stop in stops:
            stop()
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        log("http2: every answer right (%d tickers over HTTP/2: %s; %d with gzip)" % (
            n_cpu, ", ".join(res_cpu), BYTES_TICKERS))
        return 0
    section = report(s, res_cpu, n_cpu, res_wire, BYTES_TICKERS, runs, time.monotonic() - t0)
    distance.publish(section, args, "http2")
    return 0


if __name__ == "__main__":
    sys.exit(main())
