#!/usr/bin/python3
"""Through a distance (issue 16): qfetch, curl and the Python seed fetching from one local nginx
(TLS 1.3, early data on; an HTTP/1.1 and an HTTP/2 listener) behind bench/relay.py at each RTT.
For every RTT:

  cold      the seed's 9 tickers, no TLS session: qfetch with its defaults, curl --parallel
            --parallel-immediate over HTTP/1.1 and --http2, curl --http2 multiplexing, the seed
  many      200 tickers, no TLS session (issue 17): qfetch with its defaults against curl
            --parallel --parallel-max 100, from the HTTP/2 listener (curl --http2, waiting to
            multiplex) and from the HTTP/1.1 one
  warm      qfetch's defaults plus a session cache, --early-data and --tcp-fastopen: 8 runs in a
            row after one that primes the cache
  bundle    the 9 tickers trusting a CA bundle the size of the system's (its certificates plus
            the test CA): what --cacert, SSL_CERT_FILE or a distribution without a hashed
            certificate directory costs; qfetch cold and warm, curl --http2 multiplexed
  dead      the first address drops SYNs ([::1], a listener with a full accept queue), the second
            (127.0.0.1) is the relay: qfetch and curl get both through --resolve, the seed
            through a hosts file bind-mounted in its own mount namespace
  resolver  a name server that never answers: qfetch --dns-servers, curl (no c-ares in Debian's
            build) with the system resolver pointed at it in its own mount namespace; both with
            --connect-timeout 1

Wall times are fork to reap (build/bench/measure), process start included. RTT columns are
wall / the configured RTT; the targets count round trips on the wire: a median less the
contender's local cost (the intercept at RTT 0 of the line through its medians at the two
RTTs), over the RTT. Each contender's stdout comes through a FIFO, which also tells when
its prices came out: a run may print them and then linger. Contenders run interleaved, the
order rotating from round to round. build/bench/stallwatch keeps the CPUs from idling (this
virtual machine wakes an idle one late; --no-awake lets them idle) and watches the machine
meanwhile: the warm lines name the runs during which it stopped a CPU.

    bench/distance.py [--build build] [--rtts 50,150] [--runs N] [--quick]
                      [--scenarios LIST] [--markdown FILE] [--write] [--no-awake]

--markdown writes the RESULTS.md section to FILE (bench/run.py includes it); --write puts it
into bench/RESULTS.md in place of the previous one, nothing else changed. --quick: one short
round at the first RTT that checks answers, not times (make bench-quick); it leaves the curls
out, and checks that qfetch spoke HTTP/2 to the HTTP/2 listener only, once its --stats count
HTTP/2 connections. --scenarios: some of cold,many,warm,bundle,dead,resolver (by hand; --write
then refuses). Exit status: 0 when every answer was right, 1 when a contender gave a wrong answer,
2 when a tool is missing.
"""
import argparse
import contextlib
import itertools
import math
import os
import re
import select
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from decimal import Decimal

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import relay  # noqa: E402
import run as harness  # noqa: E402
from latency import TICKERS, start_nginx  # noqa: E402
from server import price_for  # noqa: E402  (tests/, on the path through latency)

RESULTS = os.path.join(HERE, "RESULTS.md")
HEADING = harness.DISTANCE_HEADING + " (issue 16)"
HOST = "localhost"  # the test certificate's name; /etc/hosts gives 127.0.0.1 only
YAHOO = "query1.finance.yahoo.com"  # also in the certificate; in no hosts file here
WARM_RUNS = 8
CONNECT_TIMEOUT = 1
# A silent name server that glibc can use: it only ever asks port 53. Any 127/8 address is
# local; this one is unlikely to be taken.
DEAD_DNS = ("127.16.53.53", 53)
CURL_WRITE_OUT = ("%{http_code} %{size_download} %{http_version} %{num_connects} "
                  "%{size_header} %{url_effective}\\n")
# Issue 17: many tickers, more than one connection's worth of HTTP/2 streams; curl's
# --parallel-max, and qfetch's default requests in flight per host over HTTP/2.
MANY = harness.gen_symbols(200)
MANY_PARALLEL = 100
TARGET_MANY_RTT = 4.0
TARGET_MANY_RATIO = 1.0
SCENARIOS = "cold,many,warm,bundle,dead,resolver"
# The system's CA bundle, which the bundle scenario's file starts with.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
TARGET_COLD_RTT = 3.1
TARGET_COLD_RATIO = 1.0
TARGET_WARM_RTT = 1.1
STALL_US = 3000  # a CPU's 1 ms nap this much late: the machine stopped it
TARGET_DEAD_S = 0.35  # + 3 RTT
TARGET_RESOLVER_S = CONNECT_TIMEOUT + 0.2
LABEL = {
    "qfetch": "qfetch", "qfetch_h1": "qfetch --http1.1", "curl_h1": "curl HTTP/1.1",
    "curl_h2": "curl --http2", "curl_mux": "curl --http2, multiplexed", "seed": "Python seed",
    "qfetch_warm": "qfetch warm", "qfetch_h1_warm": "qfetch --http1.1 warm",
    "qfetch_many_h2": "qfetch", "curl_many_h2": "curl --http2 --parallel-max %d" % MANY_PARALLEL,
    "qfetch_many_h1": "qfetch", "curl_many_h1": "curl --http1.1 --parallel-max %d"
    % MANY_PARALLEL,
    "qfetch_bundle": "qfetch", "qfetch_bundle_warm": "qfetch warm",
    "curl_bundle": "curl --http2, multiplexed",
}
CURLS = ("curl_h1", "curl_h2", "curl_mux")
log = harness.log


class Run:
    def __init__(self, rc, wall, out_at, out, err, timed_out, t0=None):
        self.rc, self.wall, self.out_at, self.out, self.err = rc, wall, out_at, out, err
        self.timed_out = timed_out
        self.t0 = t0  # CLOCK_MONOTONIC seconds at measure's fork


class Stalls:
    """build/bench/stallwatch in the background: when the machine itself stopped a CPU (on
    this virtual machine, its host took the virtual CPU away for 3-100 ms now and then). A
    run that overlapped such a stall lost that time to the machine. With awake, it also keeps
    the CPUs from idling (its docstring: a halted virtual CPU here wakes up to 125 ms late)."""

    def __init__(self, path, awake=False):
        self.seen, self.prio, self.awake, self.p = [], None, 0, None
        self.span = None  # (start, end or None) of the awake spinners, for the load average
        if not os.path.exists(path):
            return
        self.p = subprocess.Popen([path] + ["--awake"] * awake + [str(STALL_US)],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        f = self.p.stdout.readline().split()  # prio fifo|normal awake 0|1
        self.prio, self.awake = f[1], int(f[3]) * (os.cpu_count() or 1)
        if self.awake:
            self.span = (time.monotonic(), None)
        threading.Thread(target=self.read, daemon=True).start()

    def load_share(self, minutes):
        """What the spinners add to the kernel's load average over that many minutes now."""
        if self.span is None:
            return 0.0
        now = time.monotonic()
        end = self.span[1] or now
        tau = minutes * 60.0
        return self.awake * (1 - math.exp(-(end - self.span[0]) / tau)) * \
            math.exp(-(now - end) / tau)

    def read(self):
        for line in self.p.stdout:
            f = line.split()
            if len(f) == 4 and f[0] == "stall":
                self.seen.append((int(f[1]), int(f[2]) / 1e9, int(f[3]) / 1e9))

    def close(self):
        if self.p is not None and self.p.poll() is None:
            self.p.stdin.close()  # its end
            self.p.wait(5)
            if self.span is not None:
                self.span = (self.span[0], time.monotonic())

    def during(self, r):
        """The longest time one CPU stood still while r ran (fork to its prices out), in
        seconds; 0 when nothing stalled or nothing watched."""
        if r.t0 is None:
            return 0.0
        a, b, per_cpu = r.t0, r.t0 + r.out_at, {}
        for cpu, s0, s1 in list(self.seen):
            if s0 < b and s1 > a:
                per_cpu[cpu] = per_cpu.get(cpu, 0.0) + min(b, s1) - max(a, s0)
        return max(per_cpu.values(), default=0.0)


class Wrong(Exception):
    """A contender's answer was wrong: the figures would not mean anything."""


class Tools:
    """What the contenders' commands need (bench/http2.py's too): the built files, an
    environment without proxies, a scratch directory for their files; expected[ticker] (the
    price qfetch prints) and size[ticker] (the body's bytes) for their checks."""

    def __init__(self, build, work):
        self.work = work
        self.build = os.path.abspath(os.path.join(harness.ROOT, build))
        self.qfetch = os.path.join(self.build, "qfetch")
        self.ca = os.path.join(self.build, "test", "certs", "ca.pem")
        self.measure = os.path.join(self.build, "bench", "measure")
        self.stalls = Stalls("")  # watching starts with the measuring (main)
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env["XDG_CACHE_HOME"] = os.path.join(work, "cache")
        self.notes = []
        self.names = itertools.count()
        self.expected, self.size = {}, {}

    def missing(self, tools):
        """The first of the built files and then of the tools that is not there, or None."""
        for need in (self.qfetch, self.ca, self.measure):
            if not os.path.exists(need):
                return "%s (make all certs bench-bin)" % need
        return next((t for t in tools if not shutil.which(t)), None)

    def file(self, name, text):
        """A new file in the scratch directory: name plus a number never used before."""
        path = os.path.join(self.work, "%s-%d" % (name, next(self.names)))
        with open(path, "w") as f:
            f.write(text)
        return path


class Setup(Tools):
    """nginx, the relays to its two listeners, the files every contender needs."""

    def __init__(self, args, work):
        super().__init__(args.build, work)
        self.args = args
        self.seed_env = dict(self.env, SSL_CERT_FILE=self.ca)
        self.expected = {t: str(Decimal(price_for(t)).quantize(Decimal("0.01")))
                         for t in TICKERS + MANY}
        self.seed = None
        if not os.path.exists(harness.SEED):
            self.notes.append("Python seed skipped: %s not found" % harness.SEED)
        elif harness.sh([harness.SYS_PY, "-c", "import httpx; print('ok')"]) != "ok":
            self.notes.append("Python seed skipped: /usr/bin/python3 cannot import httpx")
        else:
            with open(harness.SEED) as f:
                self.seed = f.read()
        self.bundle, self.bundle_certs = None, 0
        if os.path.exists(SYSTEM_BUNDLE):
            with open(SYSTEM_BUNDLE) as f, open(self.ca) as g:
                text = f.read() + g.read()
            self.bundle = self.file("bundle.pem", text)
            self.bundle_certs = text.count("-----BEGIN CERTIFICATE-----")
        else:
            self.notes.append("bundle scenario skipped: no %s" % SYSTEM_BUNDLE)
        self.unshare = shutil.which("unshare") and os.geteuid() == 0
        if not self.unshare:
            self.notes.append("mount namespaces need unshare(1) and root: the seed's dead-address "
                              "row and curl's dead-resolver row skipped")

    def start(self, nginx_dir):
        self.ng, port, h2_port = start_nginx(nginx_dir, os.path.dirname(self.ca), h2=True,
                                             tickers=TICKERS + MANY)
        root = os.path.join(nginx_dir, "root", "v8", "finance", "chart")
        self.size = {t: os.path.getsize(os.path.join(root, t)) for t in TICKERS + MANY}
        return port, h2_port

    def stop(self):
        if getattr(self, "ng", None) is not None:
            self.ng.send_signal(signal.SIGQUIT)
            self.ng.wait(10)

    def spawn(self, argv, env=None, timeout=60):
        """Runs argv under build/bench/measure (wall: fork to reap) with its stdout through a
        FIFO read here, which tells when its output came: out_at, the time of its last byte
        counted from measure's fork, as wall is (Python's own spawn of measure, 2-9 ms that
        vary with this process, is not the contender's). A user sees the prices then; a
        process may exit later."""
        env = env or self.env
        fifo = os.path.join(self.work, "stdout.fifo")
        if not os.path.exists(fifo):
            os.mkfifo(fifo)
        err_path = os.path.join(self.work, "stderr.txt")
        path = shutil.which(argv[0], path=env.get("PATH")) or argv[0]
        # Opened first, without waiting: the child's open for writing then never blocks.
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        chunks, out_at, p = [], None, None
        t0 = time.monotonic()
        try:
            p = subprocess.Popen([self.measure, str(timeout), os.devnull, fifo, err_path,
                                  path] + argv[1:], env=env, stdout=subprocess.PIPE, text=True)
            while time.monotonic() - t0 < timeout + 10:
                # A FIFO no writer ever opened polls as nothing: EOF shows once a writer came
                # and went, or measure is gone without starting one.
                if not select.select([fd], [], [], 0.05)[0]:
                    if p.poll() is not None and out_at is None:
                        break
                    continue
                data = os.read(fd, 65536)
                if not data:
                    break
                chunks.append(data)
                out_at = time.monotonic()  # CLOCK_MONOTONIC, as measure's fork_ns
            report = p.communicate(timeout=timeout + 10)[0]
        finally:
            os.close(fd)
            if p is not None and p.poll() is None:  # interrupted: measure's alarm kills argv
                p.send_signal(signal.SIGALRM)
                p.wait(10)
        m = re.search(r"rc=(-?\d+) wall_ns=(\d+) .* timed_out=(\d) fork_ns=(\d+)", report)
        if not m:
            raise SystemExit("distance: measure failed: %s" % report)
        with open(err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        out = b"".join(chunks).decode("utf-8", "replace")
        wall = int(m.group(2)) / 1e9
        t0 = int(m.group(4)) / 1e9
        out_at = wall if out_at is None else out_at - t0
        return Run(int(m.group(1)), wall, out_at, out, err, m.group(3) == "1", t0)

    def in_namespace(self, binds, argv):
        """argv in a mount namespace of its own where each (file, over) of binds is mounted
        over the system file `over`: the machine's files stay as they are."""
        script = " && ".join('mount --bind "$%d" "$%d"' % (2 * i + 1, 2 * i + 2)
                             for i in range(len(binds)))
        script += " && shift %d && exec \"$@\"" % (2 * len(binds))
        return ["unshare", "--mount", "sh", "-c", script, "sh"] + \
            [p for b in binds for p in b] + argv


# ---------------------------------------------------------------- contenders

def qfetch_cmd(s, url, tickers, *flags):
    return [s.qfetch, "-u", url, "--cacert", s.ca, "-f", "csv", "--stats"] + list(flags) + \
        ["-t"] + tickers


def curl_cmd(s, urls, *flags, outputs=None):
    """curl fetching urls, each body to /dev/null or to its path in outputs."""
    cfg = s.file("curl.cfg", "".join('url = "%s"\noutput = "%s"\n' % (u, o) for u, o in zip(
        urls, outputs or ["/dev/null"] * len(urls))))
    return ["curl", "-q", "-sS", "--no-progress-meter", "--cacert", s.ca, "-w", CURL_WRITE_OUT,
            "-K", cfg] + list(flags)


def seed_cmd(s, url, tickers):
    path = s.file("seed.py", s.seed.replace(harness.SEED_URL, url))
    return [harness.SYS_PY, path, "-t"] + tickers


def stats_of(r):
    return {k: int(v) for k, v in re.findall(r"\b([a-z][a-z0-9_]*)=(\d+)\b", r.err)}


def answered(r):
    """When qfetch's last answer came, by its own clock from its first step (--stats wall_ms),
    in seconds; the process's wall time when it does not say."""
    m = re.search(r"\bwall_ms=([\d.]+)", r.err)
    return float(m.group(1)) / 1e3 if m else r.wall


def check_qfetch(s, r, tickers):
    rows = [ln.split(",") for ln in r.out.splitlines()[1:]]
    got = {row[0]: row[1] for row in rows if len(row) >= 2}
    bad = [t for t in tickers if got.get(t) != s.expected[t]]
    if r.rc != 0 or bad:
        raise Wrong("rc %d, %d of %d prices wrong: %s" % (r.rc, len(bad), len(tickers),
                                                          r.err.strip()[-300:]))


def parse_curl(r):
    """{ticker: (status, body bytes as received, HTTP version, header bytes)} from curl's -w
    lines; r.conns: the connections curl opened."""
    found = re.findall(r"^(\d{3}) (\d+) ([\d.]+) (\d+) (\d+) \S*/([^/\s]+)$", r.out, re.M)
    r.conns = sum(int(m[3]) for m in found)
    return {m[5]: (m[0], int(m[1]), m[2], int(m[4])) for m in found}


def check_curl(s, r, tickers, version):
    """Every transfer 200 over HTTP version, with the whole body."""
    seen = {t: v[:3] for t, v in parse_curl(r).items()}
    bad = [t for t in tickers if seen.get(t) != ("200", s.size[t], version)]
    if r.rc != 0 or bad:
        raise Wrong("rc %d, %d of %d transfers wrong (want HTTP %s): %s" % (
            r.rc, len(bad), len(tickers), version, (r.out + r.err).strip()[-300:]))


def check_seed(s, r, tickers):
    pairs = re.findall(r"\('([^']*)', Decimal\('([^']*)'\)\)", r.out)
    if pairs != [(t, s.expected[t]) for t in tickers]:
        raise Wrong("rc %d, %d of %d prices: %s" % (r.rc, len(pairs), len(tickers),
                                                    r.err.strip()[-300:]))


def check_protocol(r, h2):
    """qfetch spoke HTTP/2 (h2) or HTTP/1.1 only, when its --stats count HTTP/2 connections."""
    n = stats_of(r).get("h2_conns")
    if n is not None and (n == 0 if h2 else n != 0):
        raise Wrong("%d HTTP/2 connections, want %s" % (n, "some" if h2 else "none"))


def check_attempts(r, addrs):
    """qfetch -v tried addrs, in this order."""
    tried = re.findall(r"^conn \d+: connecting to (\S+) port", r.err, re.M)
    if tried != addrs:
        raise Wrong("connection attempts %s, want %s" % (tried, addrs))


def check_unresolved(r, tickers, pattern):
    """The run failed every ticker for want of an address, each with its own error."""
    missing = len(tickers) - len(re.findall(pattern, r.out + r.err, re.M))
    if r.rc == 0 or missing:
        raise Wrong("rc %d, %d of %d tickers without a could-not-resolve error: %s" % (
            r.rc, missing, len(tickers), (r.out + r.err).strip()[-300:]))


def interleave(spawn, res, contenders, runs, warmup, where):
    """runs rounds over contenders {name: (argv, env, check)}, the order rotating from round
    to round, after one unmeasured round when warmup; res[name] gets each measured run.
    spawn(argv, env) runs one; a wrong answer raises Wrong, prefixed with where(name)."""
    names = list(contenders)
    for i in range(-1 if warmup else 0, runs):
        order = names[i % len(names):] + names[:i % len(names)]
        for name in order:
            argv, env, check = contenders[name]
            r = spawn(argv, env)
            try:
                check(r)
            except Wrong as e:
                raise Wrong("%s: %s" % (where(name), e))
            if i >= 0:
                res[name].append(r)


# ---------------------------------------------------------------- one RTT

class Distance:
    """Every scenario at one RTT: results[scenario][contender] = [Run, ...]."""

    def __init__(self, s, rtt_ms, port, h2_port):
        self.s, self.rtt_ms = s, rtt_ms
        self.rtt = rtt_ms / 1000.0
        # Relays in processes of their own: this one's spawning and reading would hold theirs
        # back (relay.spawn_relay).
        self.port, self.stop_h1 = relay.spawn_relay(port, rtt_ms)
        try:
            self.h2_port, self.stop_h2 = relay.spawn_relay(h2_port, rtt_ms)
        except BaseException:
            self.stop_h1()
            raise
        self.measured = relay.measure_rtt(rtt_ms, start=relay.spawn_relay)
        self.results = {}
        self.warm_stats = {}
        self.notes = []

    def close(self):
        self.stop_h1()
        self.stop_h2()

    def url(self, port, host=HOST):
        return "https://%s:%d/v8/finance/chart/{}" % (host, port)

    def spawn(self, argv, env=None):
        r = self.s.spawn(argv, env)
        if r.timed_out:
            raise Wrong("timed out: %s" % " ".join(argv[:3]))
        return r

    def rounds(self, scenario, contenders, runs, warmup=False):
        """runs rounds over contenders {name: (argv, env, check)}, order rotating."""
        res = self.results.setdefault(scenario, {n: [] for n in contenders})
        interleave(self.spawn, res, contenders, runs, warmup,
                   lambda name: "%d ms, %s, %s" % (self.rtt_ms, scenario, LABEL[name]))

    def cold(self, runs, quick):
        """qfetch's defaults from the HTTP/2 listener (Yahoo's edge speaks HTTP/2), and with
        --http1.1 from the HTTP/1.1 one, against curl either way."""
        s, url, url2 = self.s, self.url(self.port), self.url(self.h2_port)
        urls = [url.format(t) for t in TICKERS]
        urls2 = [url2.format(t) for t in TICKERS]
        c = {"qfetch": (qfetch_cmd(s, url2, TICKERS, "--no-session-cache"), None,
                        lambda r: check_qfetch(s, r, TICKERS))}
        if not quick:
            c["qfetch_h1"] = (qfetch_cmd(s, url, TICKERS, "--no-session-cache", "--http1.1"),
                              None, lambda r: check_qfetch(s, r, TICKERS))
            c["curl_h1"] = (curl_cmd(s, urls, "--parallel", "--parallel-immediate", "--http1.1"),
                            None, lambda r: check_curl(s, r, TICKERS, "1.1"))
            c["curl_h2"] = (curl_cmd(s, urls2, "--parallel", "--parallel-immediate", "--http2"),
                            None, lambda r: check_curl(s, r, TICKERS, "2"))
            c["curl_mux"] = (curl_cmd(s, urls2, "--parallel", "--http2"), None,
                             lambda r: check_curl(s, r, TICKERS, "2"))
            if s.seed is not None:
                c["seed"] = (seed_cmd(s, url, TICKERS), s.seed_env,
                             lambda r: check_seed(s, r, TICKERS))
        self.rounds("cold", c, runs, warmup=not quick)

    def many(self, runs, quick):
        """MANY tickers, cold, from the HTTP/2 listener and from the HTTP/1.1 one: qfetch's
        defaults, and curl --parallel --parallel-max MANY_PARALLEL (over HTTP/2 without
        --parallel-immediate: it waits for its first connection and multiplexes on it)."""
        s, c = self.s, {}
        for v, port, version in (("h2", self.h2_port, "2"), ("h1", self.port, "1.1")):
            url = self.url(port)
            c["qfetch_many_" + v] = (qfetch_cmd(s, url, MANY, "--no-session-cache"), None,
                                     lambda r, v=v: (check_qfetch(s, r, MANY),
                                                     check_protocol(r, v == "h2")))
            if not quick:
                c["curl_many_" + v] = (curl_cmd(s, [url.format(t) for t in MANY], "--parallel",
                                                "--parallel-max", str(MANY_PARALLEL),
                                                "--http" + version), None,
                                       lambda r, version=version: check_curl(s, r, MANY,
                                                                             version))
        self.rounds("many", c, runs, warmup=not quick)

    def warm(self, runs, quick):
        """runs in a row for each of qfetch's defaults (HTTP/2 listener) and --http1.1 (HTTP/1.1
        listener), each after a priming run; every run must resume every connection it opens
        and send its first request as early data, or it was not a warm run."""
        s = self.s
        res = self.results.setdefault("warm", {})
        for name, extra in (("qfetch_warm", []), ("qfetch_h1_warm", ["--http1.1"]))[:1 if quick
                                                                                     else 2]:
            url = self.url(self.port if extra else self.h2_port)
            cache = os.path.join(s.work, "sessions-%d-%s" % (self.rtt_ms, name))
            argv = qfetch_cmd(s, url, TICKERS, "--session-cache", cache, "--early-data",
                              "--tcp-fastopen", *extra)
            res[name] = []
            seen = self.warm_stats[name] = []
            for i in range(runs + 1):
                r = self.spawn(argv)
                try:
                    check_qfetch(s, r, TICKERS)
                except Wrong as e:
                    raise Wrong("%d ms, warm, %s: %s" % (self.rtt_ms, LABEL[name], e))
                if i == 0:
                    continue
                st = stats_of(r)
                seen.append("%d/%d/%d" % (st.get("tls_resumed", -1), st.get("conns_opened", -1),
                                          st.get("early_data", -1)))
                r.answered = answered(r)
                if not (st.get("tls_resumed") == st.get("conns_opened") and
                        st.get("early_data", 0) >= st.get("conns_opened", 1)):
                    self.notes.append("%s run %d of %d was not warm (resumed/opened/early "
                                      "data %s)" % (LABEL[name], i, runs, seen[-1]))
                    if quick:
                        raise Wrong("%s run %d not warm: %s" % (LABEL[name], i, seen[-1]))
                res[name].append(r)

    def bundle(self, runs, quick):
        """The 9 tickers from the HTTP/2 listener, trusting s.bundle: qfetch cold, qfetch warm
        (primed first; every run must resume), curl --http2 multiplexed."""
        s = self.s
        if s.bundle is None:
            return
        url = self.url(self.h2_port)

        def trusting(argv):
            argv = list(argv)
            argv[argv.index("--cacert") + 1] = s.bundle
            return argv

        def resumed(r):
            st = stats_of(r)
            if st.get("tls_resumed") != st.get("conns_opened"):
                raise Wrong("not resumed: %s" % st)
        warm = trusting(qfetch_cmd(s, url, TICKERS, "--session-cache",
                                   os.path.join(s.work, "sessions-bundle-%d" % self.rtt_ms),
                                   "--early-data", "--tcp-fastopen"))
        c = {"qfetch_bundle": (trusting(qfetch_cmd(s, url, TICKERS, "--no-session-cache")), None,
                               lambda r: check_qfetch(s, r, TICKERS)),
             "qfetch_bundle_warm": (warm, None, lambda r: (check_qfetch(s, r, TICKERS),
                                                           resumed(r)))}
        if not quick:
            c["curl_bundle"] = (trusting(curl_cmd(s, [url.format(t) for t in TICKERS],
                                                  "--parallel", "--http2")), None,
                                lambda r: check_curl(s, r, TICKERS, "2"))
        check_qfetch(s, self.spawn(warm), TICKERS)  # primes the session cache
        self.rounds("bundle", c, runs, warmup=not quick)

    def dead_address(self, runs, quick):
        """A [::1] listener at the relay's port whose accept queue is full: the kernel drops
        the SYNs sent to it, as a host behind broken IPv6 does."""
        s, url = self.s, self.url(self.port)
        one = TICKERS[:1]
        try:
            hole = blackhole(self.port)
        except OSError as e:
            self.notes.append("dead first address skipped: [::1]:%d: %s" % (self.port, e))
            return
        with contextlib.ExitStack() as stack:
            for sock in hole:
                stack.enter_context(sock)
            both = "%s:%d:[::1],127.0.0.1" % (HOST, self.port)
            c = {"qfetch": (qfetch_cmd(s, url, one, "--no-session-cache", "--resolve", both),
                            None, lambda r: check_qfetch(s, r, one))}
            if quick:  # and that it went the long way: -v names each attempt
                c["qfetch"] = (c["qfetch"][0] + ["-v"], None, lambda r: (
                    check_qfetch(s, r, one), check_attempts(r, ["::1", "127.0.0.1"])))
            else:
                c["curl_h1"] = (curl_cmd(s, [url.format(one[0])], "--http1.1", "--resolve",
                                         both), None, lambda r: check_curl(s, r, one, "1.1"))
                hosts = self.seed_hosts() if s.seed is not None and s.unshare else None
                if hosts:
                    argv = s.in_namespace([(hosts, "/etc/hosts")],
                                          seed_cmd(s, self.url(self.port, YAHOO), one))
                    c["seed"] = (argv, s.seed_env, lambda r: check_seed(s, r, one))
            self.rounds("dead", c, runs)

    def seed_hosts(self):
        """A hosts file giving YAHOO ::1 and 127.0.0.1, or None if the seed's resolver (glibc)
        would not try ::1 first: the row would not mean anything."""
        hosts = self.s.file("hosts", "::1 %s\n127.0.0.1 %s\n" % (YAHOO, YAHOO))
        argv = self.s.in_namespace([(hosts, "/etc/hosts")], [
            harness.SYS_PY, "-c", "import socket; print(socket.getaddrinfo(%r, %d, "
            "type=socket.SOCK_STREAM)[0][4][0])" % (YAHOO, self.port)])
        first = harness.sh(argv)
        if first != "::1":
            self.notes.append("seed's dead-address row skipped: its resolver gave %r first"
                              % first)
        return hosts if first == "::1" else None

    def dead_resolver(self, runs, quick, dns_addr):
        s = self.s
        url = self.url(self.port, YAHOO)
        c = {"qfetch": (qfetch_cmd(s, url, TICKERS, "--no-session-cache", "--dns-servers",
                                   "%s:%d" % dns_addr, "--connect-timeout",
                                   str(CONNECT_TIMEOUT)), None,
                        lambda r: check_unresolved(r, TICKERS, r"^[^,]+,.*,could not resolve"))}
        if not quick and s.unshare and dns_addr == DEAD_DNS:
            conf = s.file("resolv.conf", "nameserver %s\n" % dns_addr[0])
            argv = s.in_namespace([(conf, "/etc/resolv.conf")], curl_cmd(
                s, [url.format(t) for t in TICKERS], "--parallel", "--parallel-immediate",
                "--http1.1", "--connect-timeout", str(CONNECT_TIMEOUT)))
            c["curl_h1"] = (argv, None, lambda r: check_unresolved(
                r, TICKERS, r"^curl: \((6|28)\) (Could not resolve|Resolving timed out)"))
        self.rounds("resolver", c, runs)


def blackhole(port):
    """[::1]:port listening with its accept queue full; the sockets to close afterwards."""
    ls = socket.socket(socket.AF_INET6)
    socks = [ls]
    try:
        ls.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        ls.bind(("::1", port))
        ls.listen(0)
        for _ in range(3):  # a backlog of 0 still queues one: fill it
            c = socket.socket(socket.AF_INET6)
            socks.append(c)
            c.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                c.connect(("::1", port))
        time.sleep(0.1)
        probe = socket.socket(socket.AF_INET6)
        probe.settimeout(0.3)
        with probe, contextlib.suppress(socket.timeout):
            probe.connect(("::1", port))
            raise OSError("a connection got through: not a blackhole")
    except BaseException:
        for c in socks:
            c.close()
        raise
    return socks


def silent_dns():
    """A UDP socket that takes queries and never answers: at DEAD_DNS when it can be bound
    (glibc's resolver only asks port 53), else at any port on 127.0.0.1."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind(DEAD_DNS)
    except OSError:
        sock.bind(("127.0.0.1", 0))
    return sock


# ---------------------------------------------------------------- reporting

def med(v):
    return statistics.median(v) if v else None


def local_cost(dists, sc, name, value=lambda r: r.wall):
    """The part of a contender's median time that does not grow with the RTT (process start,
    TLS set-up and crypto on both ends, output), in seconds: where the line through its
    medians at the lowest and the highest RTT meets RTT 0. None with fewer than two RTTs.
    (time - this) / RTT counts the round trips on the wire, as the issues' tables count
    curl's (648 ms at 150 ms is "4.0 RTT" there)."""
    pts = [(d.rtt, med([value(r) for r in d.results.get(sc, {}).get(name, [])])) for d in dists]
    pts = [p for p in pts if p[1] is not None]
    if len(pts) < 2 or min(pts)[0] == max(pts)[0]:
        return None
    (r1, t1), (r2, t2) = min(pts), max(pts)
    return (t1 * r2 - t2 * r1) / (r2 - r1)


def trips(t, d, cost):
    """Round trips on the wire in t (seconds) at d's RTT; wall / RTT without a local cost."""
    return (t - (cost or 0.0)) / d.rtt


def trips_text(t, d, cost):
    """How a target line states a time: round trips, and wall / RTT beside them."""
    if cost is None:
        return "%.2f RTT (wall / RTT)" % (t / d.rtt)
    return "%.2f round trips on the wire (wall / RTT %.2f, %.0f ms of it local)" % (
        trips(t, d, cost), t / d.rtt, cost * 1e3)


TITLES = {"cold": "9 tickers, cold", "warm": "9 tickers, warm, %d runs in a row" % WARM_RUNS,
          "dead": "dead first address, 1 ticker",
          "resolver": "dead resolver, 9 tickers, --connect-timeout %d" % CONNECT_TIMEOUT}


def rtt_table(d):
    """The markdown table of one RTT; returns (lines, best curl's name, its cold median)."""
    cold = d.results.get("cold", {})
    curls = {n: med([r.wall for r in cold[n]]) for n in CURLS if cold.get(n)}
    best = min(curls, key=curls.get) if curls else None
    lines = ["", "### RTT %d ms (measured through the relay: %.1f ms)" % (d.rtt_ms, d.measured),
             "", "| scenario | contender | exit: median ms [min-max] | RTT | output done: "
             "median ms | vs best curl |", "|---|---|---|---|---|---|"]
    for sc in ("cold", "warm", "dead", "resolver"):
        for name, runs in d.results.get(sc, {}).items():
            if not runs:
                continue
            walls = [r.wall for r in runs]
            m = med(walls)
            if sc in ("cold", "warm"):
                anchor = curls.get(best)
            else:
                anchor = med([r.wall for r in d.results[sc].get("curl_h1", [])])
            ratio = "%.2fx" % (m / anchor) if anchor and not name.startswith("curl") else ""
            if sc == "cold" and name == best:
                ratio = "best"
            lines.append("| %s | %s | %.0f [%.0f-%.0f] | %s | %.0f | %s |" % (
                TITLES[sc], LABEL[name], m * 1e3, min(walls) * 1e3, max(walls) * 1e3,
                "%.2f" % (m / d.rtt) if sc != "resolver" else "-",
                med([r.out_at for r in runs]) * 1e3, ratio))
    if len(lines) == 5:  # --scenarios left them all out
        lines = lines[:2]
    return lines, best, curls.get(best)


def span_text(values):
    lo, hi = min(values), max(values)
    return "%d" % lo if lo == hi else "%d-%d" % (lo, hi)


def conns_text(runs):
    """The connections the runs opened (curl: its num_connects summed, set by check_curl;
    qfetch: --stats, with its HTTP/2 connections and the most streams one of them carried,
    when it counts them)."""
    st = [stats_of(r) for r in runs]
    if all(hasattr(r, "conns") for r in runs):
        return span_text([r.conns for r in runs])
    text = span_text([x.get("conns_opened", 0) for x in st])
    if all("h2_conns" in x for x in st) and any(x["h2_conns"] for x in st):
        text += " (HTTP/2: %s, the most streams on one: %s)" % (
            span_text([x["h2_conns"] for x in st]),
            span_text([x.get("h2_streams_max", 0) for x in st]))
    return text


def row(d, name, runs, curl, *extra):
    """A table row: contender, exit median [min-max], RTT, output done, extra columns, and
    the ratio to curl's median exit for qfetch's rows."""
    walls = [r.wall for r in runs]
    m = med(walls)
    cells = [LABEL[name], "%.0f [%.0f-%.0f]" % (m * 1e3, min(walls) * 1e3, max(walls) * 1e3),
             "%.2f" % (m / d.rtt), "%.0f" % (med([r.out_at for r in runs]) * 1e3)]
    cells += list(extra) + ["%.2fx" % (m / curl) if curl and name.startswith("qfetch") else ""]
    return "| %s |" % " | ".join(cells)


def many_table(d):
    """The markdown table of MANY tickers at one RTT, [] when not measured."""
    res = d.results.get("many", {})
    lines = []
    for v, listener in (("h2", "HTTP/2"), ("h1", "HTTP/1.1")):
        curl = med([r.wall for r in res.get("curl_many_" + v, [])])
        for name in ("qfetch_many_" + v, "curl_many_" + v):
            runs = res.get(name)
            if runs:
                lines.append("| %s %s" % (listener, row(d, name, runs, curl, conns_text(runs))))
    if not lines:
        return []
    return ["", "%d tickers, cold, from each listener (issue 17):" % len(MANY), "",
            "| listener | contender | exit: median ms [min-max] | RTT | output done: median ms "
            "| connections | vs curl |", "|---|---|---|---|---|---|---|"] + lines


def bundle_lines(d, s):
    """(table lines, INFO targets) of the bundle scenario at one RTT; empty when not run."""
    res = d.results.get("bundle", {})
    if not res.get("qfetch_bundle"):
        return [], []
    lines = ["", "9 tickers trusting a CA bundle of %d certificates (the system's and the test "
             "CA):" % s.bundle_certs, "", "| contender | exit: median ms [min-max] | RTT | "
             "output done: median ms | vs curl |", "|---|---|---|---|---|"]
    curl = med([r.wall for r in res.get("curl_bundle", [])])
    lines += [row(d, name, res[name], curl) for name in
              ("qfetch_bundle", "qfetch_bundle_warm", "curl_bundle") if res.get(name)]
    q = med([r.wall for r in res["qfetch_bundle"]])
    small = med([r.wall for r in d.results.get("cold", {}).get("qfetch", [])])
    w = med([r.out_at for r in res.get("qfetch_bundle_warm", [])])
    text = "RTT %3d ms: 9 tickers trusting a %d-certificate bundle, qfetch cold %.0f ms (%.2f " \
        "RTT)" % (d.rtt_ms, s.bundle_certs, q * 1e3, q / d.rtt)
    if small:
        text += ", %+.0f ms against the 1-certificate CA" % ((q - small) * 1e3)
    if curl:
        text += "; curl --http2 multiplexed %.0f ms: %.2fx" % (curl * 1e3, q / curl)
    if w is not None:
        text += "; qfetch warm, prices out at %.0f ms (%.2f RTT)" % (w * 1e3, w / d.rtt)
    return lines, [(None, text)]


def many_targets(d, dists):
    """[(True, False or None for INFO, text)] for MANY tickers at one RTT."""
    res, out = d.results.get("many", {}), []
    tag = "RTT %3d ms: %d tickers" % (d.rtt_ms, len(MANY))
    q = med([r.wall for r in res.get("qfetch_many_h2", [])])
    c = med([r.wall for r in res.get("curl_many_h2", [])])
    if q is not None:
        cost = local_cost(dists, "many", "qfetch_many_h2")
        loop = med([answered(r) for r in res["qfetch_many_h2"]])
        ccost = local_cost(dists, "many", "curl_many_h2")
        out.append((trips(q, d, cost) <= TARGET_MANY_RTT, "%s from the HTTP/2 listener, qfetch "
                    "%s (target <= %.1f; its last answer, by its own clock from its first step, "
                    "at %.2f RTT%s)" % (tag, trips_text(q, d, cost), TARGET_MANY_RTT,
                                        loop / d.rtt, "; %s %.2f round trips" % (
                                            LABEL["curl_many_h2"], trips(c, d, ccost))
                                        if c and ccost is not None else "")))
    if q is not None and c:
        out.append((q / c <= TARGET_MANY_RATIO, "%s from the HTTP/2 listener, qfetch / %s %.2fx "
                    "(target <= %.1fx)" % (tag, LABEL["curl_many_h2"], q / c,
                                          TARGET_MANY_RATIO)))
    q = med([r.wall for r in res.get("qfetch_many_h1", [])])
    c = med([r.wall for r in res.get("curl_many_h1", [])])
    if q is not None and c:
        out.append((None, "%s from the HTTP/1.1 listener, qfetch %.2f RTT, %s %.2f RTT: %.2fx"
                    % (tag, q / d.rtt, LABEL["curl_many_h1"], c / d.rtt, q / c)))
    return out


def rtt_targets(d, best, best_ms, dists):
    """[(True, False or None for INFO, text)] for one RTT."""
    out = []
    tag = "RTT %3d ms:" % d.rtt_ms
    cold = d.results.get("cold", {})
    q = med([r.wall for r in cold.get("qfetch", [])])
    if q is not None:
        cost = local_cost(dists, "cold", "qfetch")
        ccost = local_cost(dists, "cold", best) if best else None
        out.append((trips(q, d, cost) <= TARGET_COLD_RTT, "%s 9 tickers cold, qfetch %s (target "
                    "<= %.1f%s)" % (tag, trips_text(q, d, cost), TARGET_COLD_RTT, (
                        "; %s %.2f round trips" % (LABEL[best], trips(best_ms, d, ccost)))
                        if ccost is not None else "")))
        if best:
            out.append((q / best_ms <= TARGET_COLD_RATIO, "%s 9 tickers cold, qfetch / best "
                        "curl (%s) %.2fx (target <= %.1fx)" % (tag, LABEL[best], q / best_ms,
                                                              TARGET_COLD_RATIO)))
    if cold.get("qfetch_h1") and best:
        h1 = med([r.wall for r in cold["qfetch_h1"]])
        out.append((None, "%s 9 tickers cold, qfetch --http1.1 from the HTTP/1.1 listener %.2f "
                    "RTT, %.2fx best curl" % (tag, h1 / d.rtt, h1 / best_ms)))
    for name in ("qfetch_warm", "qfetch_h1_warm"):
        runs = d.results.get("warm", {}).get(name)
        if not runs:
            continue
        # Judged when the prices come out: after them a warm run waits up to a round trip
        # for the session ticket that keeps the next run warm (issue 16.4), then exits.
        cost = local_cost(dists, "warm", name, lambda r: r.out_at)
        exits = [r.wall / d.rtt for r in runs]
        outs = [trips(r.out_at, d, cost) for r in runs]
        answers = [r.answered / d.rtt for r in runs]
        ok = len(runs) == WARM_RUNS and max(outs) <= TARGET_WARM_RTT
        stalled = ["run %d %.0f ms" % (i + 1, t * 1e3)
                   for i, t in enumerate(d.s.stalls.during(r) for r in runs) if t > 0]
        out.append((ok if name == "qfetch_warm" else None,
                    "%s %s, each of %d runs' prices out in <= %.1f %s: %s (wall / RTT %s%s; "
                    "exit, after the ticket wait, at %s RTT; last answer, by qfetch's clock from "
                    "its first step, at %s RTT; resumed/opened/early data %s%s)" % (
                        tag, LABEL[name], len(runs), TARGET_WARM_RTT,
                        "RTT" if cost is None else "round trips on the wire",
                        " ".join("%.2f" % x for x in outs),
                        " ".join("%.2f" % (r.out_at / d.rtt) for r in runs),
                        "" if cost is None else ", %.0f ms of it local" % (cost * 1e3),
                        " ".join("%.2f" % x for x in exits),
                        " ".join("%.2f" % x for x in answers),
                        " ".join(d.warm_stats[name]),
                        "; a CPU stopped by the machine during %s" % ", ".join(stalled)
                        if stalled else "")))
    dead = d.results.get("dead", {})
    if dead.get("qfetch"):
        limit = TARGET_DEAD_S + 3 * d.rtt
        qd = med([r.wall for r in dead["qfetch"]])
        curl = med([r.wall for r in dead.get("curl_h1", [])])
        out.append((qd <= limit, "%s dead first address, qfetch's price in %.0f ms (target <= "
                    "%.0f ms = 0.35 s + 3 RTT%s)" % (tag, qd * 1e3, limit * 1e3, (
                        "; curl %.0f ms" % (curl * 1e3)) if curl else "")))
    res = d.results.get("resolver", {})
    if res.get("qfetch"):
        worst = max(r.wall for r in res["qfetch"])
        curl = med([r.wall for r in res.get("curl_h1", [])])
        out.append((worst <= TARGET_RESOLVER_S, "%s dead resolver, every qfetch run over in "
                    "%.0f ms or less (target <= %.0f ms = --connect-timeout + 0.2 s%s), each "
                    "ticker failed 'could not resolve'" % (tag, worst * 1e3,
                                                          TARGET_RESOLVER_S * 1e3, (
                                                              "; curl %.0f ms" % (curl * 1e3))
                                                          if curl else "")))
    return out


def method(s, elapsed):
    return [
        written_by("distance.py", "bench/distance.py --write", elapsed, s.load_start, s.stalls),
        "",
        "- Server: nginx, 1 worker, TLS 1.3 with early data on (`ssl_early_data on`), one "
        "HTTP/1.1 and one HTTP/2 (`listen ... ssl http2`) listener, each behind `bench/relay.py` "
        "at the RTT, each in a process of its own (its docstring has the model: a cold TLS 1.3 "
        "fetch is 3 RTT, a 0-RTT one in a Fast Open SYN 1 RTT); `net.ipv4.tcp_fastopen` set to "
        "3 for the run and put back after.",
        "- exit: fork to reap (`build/bench/measure`), process start included; RTT: that / the "
        "configured RTT; output done: when the last byte of stdout came out of a pipe, from the "
        "same fork: when a user sees the prices. "
        "`vs best curl`: exit median / the fastest curl row's cold median (dead address and "
        "resolver rows: / curl's), from the same run. Contenders interleaved, order rotating, "
        "after one unmeasured pass; %d cold rounds, %d dead-address rounds, %d dead-resolver "
        "rounds per RTT. Every answer checked (prices; curl: status, body size and HTTP version "
        "per URL; the dead resolver: a could-not-resolve error per ticker)."
        % (s.runs, s.dead_runs, s.resolver_runs),
        "- Round trips on the wire (the targets' RTT counts, as the issues count curl's): a "
        "contender's median minus its local cost, over the RTT. The local cost is the time that "
        "does not grow with the RTT (process start, OpenSSL's set-up, crypto on both ends, the "
        "relay's and the server's CPU, output): where the line through the medians at the two "
        "RTTs meets RTT 0. Warm runs are judged when their prices come out: after them a run "
        "waits up to a round trip for the ticket that keeps the next run warm (issue 16.4), "
        "with stdout already closed, so a pipe reading the prices ends then too.",
        "- qfetch: its defaults with `--no-session-cache` when cold, from the HTTP/2 listener "
        "(Yahoo's edge speaks HTTP/2: one connection, the 9 requests as its streams); warm adds "
        "`--session-cache FILE --early-data --tcp-fastopen` (one priming run, then %d in a row, "
        "each required to resume every connection with early data). `qfetch --http1.1` rows: "
        "from the HTTP/1.1 listener, up to 16 connections at once, as curl's immediate ones "
        "(without the flag qfetch, like curl's multiplexed rows, lets the first connection tell "
        "whether the server speaks HTTP/2 before opening more: 2 RTT more against an "
        "HTTP/1.1-only server on a cold run)." % WARM_RUNS,
        "- curl: `--parallel --parallel-immediate` with `--http1.1`, or `--http2` against the "
        "HTTP/2 listener; `multiplexed`: `--http2 --parallel` without `--parallel-immediate` "
        "(curl waits for the first connection and multiplexes the rest on it). Seed: "
        "../shared/seed/async_http.py through python3-httpx, URL constant replaced.",
        "- %d tickers (issue 17): qfetch's defaults (up to %d requests in flight per host over "
        "HTTP/2, `-c 16` connections over HTTP/1.1) with `--no-session-cache`, against `curl "
        "--parallel --parallel-max %d`, `--http2` (waiting to multiplex, no "
        "`--parallel-immediate`) from the HTTP/2 listener, `--http1.1` from the HTTP/1.1 one; "
        "%d rounds per RTT after an unmeasured one. Connections: qfetch's `--stats` "
        "(`conns_opened`, and `h2_conns`, `h2_streams_max` once it counts them), curl's "
        "`%%{num_connects}` summed over transfers." % (len(MANY), MANY_PARALLEL, MANY_PARALLEL,
                                                      s.runs),
        "- CA bundle: the 9 tickers from the HTTP/2 listener with `--cacert` naming %s "
        "followed by the test CA: what trusting a bundle costs (`--cacert`, `SSL_CERT_FILE`, or "
        "a distribution whose system store has no hashed directory). qfetch cold "
        "(`--no-session-cache`) and warm (a primed `--session-cache`, `--early-data`, "
        "`--tcp-fastopen`; every run resumed), curl `--parallel --http2`; %d rounds after an "
        "unmeasured one." % (SYSTEM_BUNDLE, s.runs),
        "- Dead first address: `[::1]:PORT` listening with a full accept queue (SYNs dropped), "
        "then 127.0.0.1, the relay: `--resolve %s:PORT:[::1],127.0.0.1` for qfetch and curl "
        "(curl 7.88 takes an address list, and tries the second family 200 ms in); the seed "
        "resolves %s from a hosts file listing ::1 first, bind-mounted over /etc/hosts in a "
        "mount namespace of its own (`unshare --mount`; the machine's file untouched)."
        % (HOST, YAHOO),
        "- Dead resolver: a UDP socket at %s:%d that never answers. qfetch: `--dns-servers "
        "%s:%d --connect-timeout %d`. Debian's curl has no c-ares (`--dns-servers`: \"the "
        "installed libcurl version doesn't support this\"), so curl runs on its threaded "
        "system resolver with `--connect-timeout %d`, /etc/resolv.conf replaced by `nameserver "
        "%s` in a mount namespace of its own; the namespace's unshare, sh and mount count in "
        "curl's time (a few ms). Nothing in this row crosses the relay."
        % (DEAD_DNS + DEAD_DNS + (CONNECT_TIMEOUT, CONNECT_TIMEOUT, DEAD_DNS[0])),
        "- %s: a busy CPU only adds time, to every contender and to the relay."
        % load_text(s.load_start, s.stalls),
    ] + stall_text(s.stalls)


def stall_text(st):
    """The method's lines on the machine itself: its CPUs kept awake, its stalls."""
    if st.prio is None:
        return ["- Machine: CPUs not kept awake, stalls not watched (no build/bench/stallwatch; "
                "make bench-bin)."]
    longest = max((b - a for _, a, b in st.seen), default=0.0)
    if st.prio == "fifo":
        why = ("At real-time priority no ordinary task holds such a thread back: that CPU ran "
               "nothing of this system's for that long (on this virtual machine, its host took "
               "the virtual CPU away). The naps cost about 1% of a CPU.")
    else:
        why = "At normal priority a late wake-up may also be this machine's own load."
    awake = ("- CPUs kept awake: `build/bench/stallwatch --awake` runs a spinner per CPU at "
             "SCHED_IDLE (any task that wakes takes its CPU at once), because this virtual "
             "machine wakes a halted CPU up to 125 ms late (measured 2026-12-05: a 1 ms sleeper, "
             "15 s at a time, 7 times each way, late by more than 5 ms 0-14 times, worst 3-125 "
             "ms; with the CPUs kept busy 0-1 times, worst 2-5 ms), where real hardware wakes in "
             "microseconds. The spinners count in "
             "the load average; the figures below leave their share out."
             if st.awake else
             "- CPUs not kept awake (`--no-awake`): an idle CPU of this virtual machine may wake "
             "up to 125 ms late, into any contender's time.")
    return [awake, "- Machine stalls: `build/bench/stallwatch` (one thread per CPU at %s "
            "priority, 1 ms naps) saw %d wake-ups more than %d ms late during this section%s. "
            "%s Warm target lines name the runs that overlapped one (the longest time one CPU "
            "stood still during the run); a median absorbs such a run." % (
                "real-time" if st.prio == "fifo" else "normal", len(st.seen), STALL_US // 1000,
                ", the longest %.0f ms" % (longest * 1e3) if st.seen else "", why)]


def load_now(stalls=None):
    """os.getloadavg() less what the idle-priority spinners of stalls (a Stalls keeping the
    CPUs awake) added."""
    return tuple(max(0.0, v - (stalls.load_share(m) if stalls else 0.0))
                 for v, m in zip(os.getloadavg(), (1, 5, 15)))


def load_text(start, stalls=None):
    """How loaded the machine was: start, load_now() text from the run's start."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    less = " (less the spinners' share)" if stalls and stalls.span else ""
    return "Load average %s at the start, %.2f, %.2f, %.2f at the end%s; %s while other work " \
        "shared the 2 cores" % (start, *load_now(stalls), less, "the bench ran under `nice -n %d`"
                                % nice if nice > 0 else "normal priority")


def report(dists, s, elapsed):
    """(the RESULTS.md section, the target lines)."""
    tables, targets = [], []
    for d in dists:
        lines, best, best_ms = rtt_table(d)
        blines, btargets = bundle_lines(d, s)
        tables += lines + many_table(d) + blines
        targets += rtt_targets(d, best, best_ms, dists) + many_targets(d, dists) + btargets
    lines = ["%s  %s" % ("INFO" if ok is None else "PASS" if ok else "FAIL", text)
             for ok, text in targets]
    section = [HEADING, ""] + method(s, elapsed) + tables + ["", "```"] + lines + ["```"]
    notes = s.notes + [n for d in dists for n in d.notes]
    if notes:
        section += [""] + ["- " + n for n in notes]
    return section, lines


def splice(section):
    """section in place of RESULTS.md's previous one, the one under the same heading (else
    before its charts or its hand-written tail); nothing else in the file changes."""
    with open(RESULTS) as f:
        old = f.read()
    text = "\n".join(section) + "\n\n"
    span = harness.section_span(old, section[0])
    if span is None:
        head = old[:old.index(harness.KEPT_MARK)] if harness.KEPT_MARK in old else old
        at = [head.find(m) for m in ("## Charts", "## Parser microbenchmark", "## Notes",
                                     "## Wrong answers", "Measuring took") if m in head]
        span = (min(at),) * 2 if at else (len(head),) * 2
    with open(RESULTS, "w") as f:
        f.write(old[:span[0]] + text + old[span[1]:])


def written_by(script, refresh, elapsed, load_start, stalls=None):
    """The first line of a generated section of RESULTS.md, and a warning when other work kept
    the machine busy (a 1-minute load average above half its cores, at the start or the end):
    such figures are not final."""
    line = "Written by `bench/%s` (run by `make bench`; `%s` refreshes this section alone): " \
        "qfetch %s, %s UTC, %.0f s." % (script, refresh, harness.Bench.revision(),
                                        time.strftime("%Y-%m-%d %H:%M", time.gmtime()), elapsed)
    load = max(float(load_start.split(",")[0]), load_now(stalls)[0])
    if load > (os.cpu_count() or 1) / 2:
        line += " **Measured on a loaded machine** (1-minute load average up to %.1f on %d " \
            "cores): times run long and spread; the ratios between contenders, measured " \
            "interleaved, hold better." % (load, os.cpu_count() or 1)
    return line


def publish(section, args, who):
    """section to stdout, to the --markdown file, and into RESULTS.md with --write."""
    print("\n".join(section))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(section) + "\n")
    if args.write:
        splice(section)
        log("%s: wrote its section of bench/RESULTS.md" % who)


def measure(args, s):
    rtts = [int(x) for x in args.rtts.split(",")][:1 if args.quick else None]
    s.runs = args.runs or (1 if args.quick else 7)
    s.dead_runs = 1 if args.quick else 5
    s.resolver_runs = 1 if args.quick else 3
    dns = silent_dns()
    dists = []
    with dns:
        port, h2_port = s.start(os.path.join(s.work, "nginx"))
        for rtt in rtts:
            log("distance: RTT %d ms" % rtt)
            d = Distance(s, rtt, port, h2_port)
            dists.append(d)
            want = args.scenarios.split(",")
            try:
                if "cold" in want:
                    d.cold(s.runs, args.quick)
                if "many" in want:
                    d.many(s.runs, args.quick)
                if "warm" in want:
                    d.warm(2 if args.quick else WARM_RUNS, args.quick)
                if "bundle" in want:
                    d.bundle(s.runs, args.quick)
                if "dead" in want:
                    d.dead_address(s.dead_runs, args.quick)
                if "resolver" in want:
                    d.dead_resolver(s.resolver_runs, args.quick, dns.getsockname())
            finally:
                d.close()
    return dists


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--rtts", default="50,150", help="RTTs in ms, comma-separated")
    ap.add_argument("--runs", type=int, default=0, help="cold rounds per RTT (default 7)")
    ap.add_argument("--quick", action="store_true", help="answers only, one RTT, seconds")
    ap.add_argument("--scenarios", default=SCENARIOS, help="default: " + SCENARIOS)
    ap.add_argument("--markdown", metavar="FILE", help="write the RESULTS.md section to FILE")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    ap.add_argument("--no-awake", action="store_true",
                    help="let idle CPUs halt (this VM then wakes them up to 125 ms late)")
    args = ap.parse_args()
    if args.write and args.scenarios != SCENARIOS:
        ap.error("--write wants every scenario")

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)  # unwinds: nginx stops, the sysctl goes back
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    work = tempfile.mkdtemp(prefix="qfetch-distance-")
    s = Setup(args, work)
    missing = s.missing(("curl", "nginx"))
    if missing:
        log("distance: %s missing" % missing)
        return 2
    s.load_start = "%.2f, %.2f, %.2f" % os.getloadavg()
    t0 = time.monotonic()
    try:
        with relay.fastopen_sysctl(3) as tfo:
            if not tfo:
                s.notes.append("net.ipv4.tcp_fastopen could not be set (not root): warm runs "
                               "went without Fast Open")
            s.stalls = Stalls(os.path.join(s.build, "bench", "stallwatch"), not args.no_awake)
            try:
                dists = measure(args, s)
            finally:
                s.stalls.close()
    except Wrong as e:
        log("distance: WRONG %s" % e)
        return 1
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        log("distance: every answer right (%d ms: cold, %d tickers, warm, dead first address, "
            "dead resolver)" % (dists[0].rtt_ms, len(MANY)))
        return 0
    section, _ = report(dists, s, time.monotonic() - t0)
    publish(section, args, "distance")
    return 0


if __name__ == "__main__":
    sys.exit(main())
