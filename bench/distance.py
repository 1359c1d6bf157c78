#!/usr/bin/python3
"""Through a distance (issue 16): qfetch, curl and the Python seed fetching from one local nginx
(TLS 1.3, early data on; an HTTP/1.1 and an HTTP/2 listener) behind bench/relay.py at each RTT.
For every RTT:

  cold      the seed's 9 tickers, no TLS session: qfetch with its defaults, curl --parallel
            --parallel-immediate over HTTP/1.1 and --http2, curl --http2 multiplexing, the seed
  warm      qfetch's defaults plus a session cache, --early-data and --tcp-fastopen: 8 runs in a
            row after one that primes the cache
  dead      the first address drops SYNs ([::1], a listener with a full accept queue), the second
            (127.0.0.1) is the relay: qfetch and curl get both through --resolve, the seed
            through a hosts file bind-mounted in its own mount namespace
  resolver  a name server that never answers: qfetch --dns-servers, curl (no c-ares in Debian's
            build) with the system resolver pointed at it in its own mount namespace; both with
            --connect-timeout 1

Wall times are fork to reap (build/bench/measure), process start included; round trips are
wall / the configured RTT. Each contender's stdout comes through a FIFO, which also tells when
its prices came out: a run may print them and then linger. Contenders run interleaved, the
order rotating from round to round.

    bench/distance.py [--build build] [--rtts 50,150] [--runs N] [--quick]
                      [--markdown FILE] [--write]

--markdown writes the RESULTS.md section to FILE (bench/run.py includes it); --write puts it
into bench/RESULTS.md in place of the previous one, nothing else changed. --quick: one short
round at the first RTT that checks answers, not times (make bench-quick). Exit status: 0 when
every answer was right, 1 when a contender gave a wrong answer, 2 when a tool is missing.
"""
import argparse
import contextlib
import itertools
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
CURL_WRITE_OUT = "%{http_code} %{size_download} %{http_version} %{url_effective}\\n"
TARGET_COLD_RTT = 3.1
TARGET_COLD_RATIO = 1.0
TARGET_WARM_RTT = 1.1
TARGET_DEAD_S = 0.35  # + 3 RTT
TARGET_RESOLVER_S = CONNECT_TIMEOUT + 0.2
LABEL = {
    "qfetch": "qfetch", "qfetch_c9": "qfetch -c 9", "curl_h1": "curl HTTP/1.1",
    "curl_h2": "curl --http2", "curl_mux": "curl --http2, multiplexed", "seed": "Python seed",
    "qfetch_warm": "qfetch warm", "qfetch_c9_warm": "qfetch -c 9 warm",
}
CURLS = ("curl_h1", "curl_h2", "curl_mux")
log = harness.log


class Run:
    def __init__(self, rc, wall, out_at, out, err, timed_out):
        self.rc, self.wall, self.out_at, self.out, self.err = rc, wall, out_at, out, err
        self.timed_out = timed_out


class Wrong(Exception):
    """A contender's answer was wrong: the figures would not mean anything."""


class Setup:
    """nginx, the relays to its two listeners, the files every contender needs."""

    def __init__(self, args, work):
        self.args, self.work = args, work
        self.build = os.path.abspath(os.path.join(harness.ROOT, args.build))
        self.qfetch = os.path.join(self.build, "qfetch")
        self.ca = os.path.join(self.build, "test", "certs", "ca.pem")
        self.measure = os.path.join(self.build, "bench", "measure")
        self.env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        self.env["XDG_CACHE_HOME"] = os.path.join(work, "cache")
        self.seed_env = dict(self.env, SSL_CERT_FILE=self.ca)
        self.expected = {t: str(Decimal(price_for(t)).quantize(Decimal("0.01")))
                         for t in TICKERS}
        self.notes = []
        self.names = itertools.count()
        self.seed = None
        if not os.path.exists(harness.SEED):
            self.notes.append("Python seed skipped: %s not found" % harness.SEED)
        elif harness.sh([harness.SYS_PY, "-c", "import httpx; print('ok')"]) != "ok":
            self.notes.append("Python seed skipped: /usr/bin/python3 cannot import httpx")
        else:
            with open(harness.SEED) as f:
                self.seed = f.read()
        self.unshare = shutil.which("unshare") and os.geteuid() == 0
        if not self.unshare:
            self.notes.append("mount namespaces need unshare(1) and root: the seed's dead-address "
                              "row and curl's dead-resolver row skipped")

    def start(self, nginx_dir):
        self.ng, port, h2_port = start_nginx(nginx_dir, os.path.dirname(self.ca), h2=True)
        root = os.path.join(nginx_dir, "root", "v8", "finance", "chart")
        self.size = {t: os.path.getsize(os.path.join(root, t)) for t in TICKERS}
        return port, h2_port

    def stop(self):
        if getattr(self, "ng", None) is not None:
            self.ng.send_signal(signal.SIGQUIT)
            self.ng.wait(10)

    def file(self, name, text):
        """A new file in the scratch directory: name plus a number never used before."""
        path = os.path.join(self.work, "%s-%d" % (name, next(self.names)))
        with open(path, "w") as f:
            f.write(text)
        return path

    def spawn(self, argv, env=None, timeout=60):
        """Runs argv under build/bench/measure (wall: fork to reap) with its stdout through a
        FIFO read here, which tells when its output came: out_at, the time of its last byte
        counted from just before measure starts (so 1-2 ms later than from its fork). A user
        sees the prices then; a process may exit later."""
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
                out_at = time.monotonic() - t0
            report = p.communicate(timeout=timeout + 10)[0]
        finally:
            os.close(fd)
            if p is not None and p.poll() is None:  # interrupted: measure's alarm kills argv
                p.send_signal(signal.SIGALRM)
                p.wait(10)
        m = re.search(r"rc=(-?\d+) wall_ns=(\d+) .* timed_out=(\d)", report)
        if not m:
            raise SystemExit("distance: measure failed: %s" % report)
        with open(err_path, "rb") as f:
            err = f.read().decode("utf-8", "replace")
        out = b"".join(chunks).decode("utf-8", "replace")
        wall = int(m.group(2)) / 1e9
        return Run(int(m.group(1)), wall, out_at or wall, out, err, m.group(3) == "1")

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


def curl_cmd(s, urls, *flags):
    cfg = s.file("curl.cfg",
                 "".join('url = "%s"\noutput = "/dev/null"\n' % u for u in urls))
    return ["curl", "-q", "-sS", "--no-progress-meter", "--cacert", s.ca, "-w", CURL_WRITE_OUT,
            "-K", cfg] + list(flags)


def seed_cmd(s, url, tickers):
    path = s.file("seed.py", s.seed.replace(harness.SEED_URL, url))
    return [harness.SYS_PY, path, "-t"] + tickers


def stats_of(r):
    return {k: int(v) for k, v in re.findall(r"\b([a-z_]+)=(\d+)\b", r.err)}


def check_qfetch(s, r, tickers):
    rows = [ln.split(",") for ln in r.out.splitlines()[1:]]
    got = {row[0]: row[1] for row in rows if len(row) >= 2}
    bad = [t for t in tickers if got.get(t) != s.expected[t]]
    if r.rc != 0 or bad:
        raise Wrong("rc %d, %d of %d prices wrong: %s" % (r.rc, len(bad), len(tickers),
                                                          r.err.strip()[-300:]))


def check_curl(s, r, tickers, version):
    seen = {m.group(4): m.groups()[:3] for m in re.finditer(
        r"^(\d{3}) (\d+) ([\d.]+) \S*/([^/\s]+)$", r.out, re.M)}
    bad = [t for t in tickers if seen.get(t) != ("200", str(s.size[t]), version)]
    if r.rc != 0 or bad:
        raise Wrong("rc %d, %d of %d transfers wrong (want HTTP %s): %s" % (
            r.rc, len(bad), len(tickers), version, (r.out + r.err).strip()[-300:]))


def check_seed(s, r, tickers):
    pairs = re.findall(r"\('([^']*)', Decimal\('([^']*)'\)\)", r.out)
    if pairs != [(t, s.expected[t]) for t in tickers]:
        raise Wrong("rc %d, %d of %d prices: %s" % (r.rc, len(pairs), len(tickers),
                                                    r.err.strip()[-300:]))


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


# ---------------------------------------------------------------- one RTT

class Distance:
    """Every scenario at one RTT: results[scenario][contender] = [Run, ...]."""

    def __init__(self, s, rtt_ms, port, h2_port):
        self.s, self.rtt_ms = s, rtt_ms
        self.rtt = rtt_ms / 1000.0
        self.port, self.stop_h1 = relay.start_relay(port, rtt_ms)
        self.h2_port, self.stop_h2 = relay.start_relay(h2_port, rtt_ms)
        self.measured = relay.measure_rtt(rtt_ms)
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
        names = list(contenders)
        res = self.results.setdefault(scenario, {n: [] for n in names})
        for i in range(-1 if warmup else 0, runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                argv, env, check = contenders[name]
                r = self.spawn(argv, env)
                try:
                    check(r)
                except Wrong as e:
                    raise Wrong("%d ms, %s, %s: %s" % (self.rtt_ms, scenario, LABEL[name], e))
                if i >= 0:
                    res[name].append(r)

    def cold(self, runs, quick):
        s, url = self.s, self.url(self.port)
        urls = [url.format(t) for t in TICKERS]
        urls2 = [self.url(self.h2_port).format(t) for t in TICKERS]
        c = {"qfetch": (qfetch_cmd(s, url, TICKERS, "--no-session-cache"), None,
                        lambda r: check_qfetch(s, r, TICKERS))}
        if not quick:
            c["qfetch_c9"] = (qfetch_cmd(s, url, TICKERS, "--no-session-cache", "-c", "9"), None,
                              lambda r: check_qfetch(s, r, TICKERS))
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

    def warm(self, runs, quick):
        """runs in a row for each of qfetch's defaults and -c 9, each after a priming run;
        every run must resume every connection it opens and send its first request as early
        data, or it was not a warm run."""
        s, url = self.s, self.url(self.port)
        res = self.results.setdefault("warm", {})
        for name, extra in (("qfetch_warm", []), ("qfetch_c9_warm", ["-c", "9"]))[:1 if quick
                                                                                  else 2]:
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
                m = re.search(r"\bwall_ms=([\d.]+)", r.err)
                r.answered = float(m.group(1)) / 1e3 if m else r.wall
                if not (st.get("tls_resumed") == st.get("conns_opened") and
                        st.get("early_data", 0) >= st.get("conns_opened", 1)):
                    self.notes.append("%s run %d of %d was not warm (resumed/opened/early "
                                      "data %s)" % (LABEL[name], i, runs, seen[-1]))
                    if quick:
                        raise Wrong("%s run %d not warm: %s" % (LABEL[name], i, seen[-1]))
                res[name].append(r)

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
    return lines, best, curls.get(best)


def rtt_targets(d, best, best_ms):
    """[(True, False or None for INFO, text)] for one RTT."""
    out = []
    tag = "RTT %3d ms:" % d.rtt_ms
    cold = d.results.get("cold", {})
    q = med([r.wall for r in cold.get("qfetch", [])])
    if q is not None:
        out.append((q / d.rtt <= TARGET_COLD_RTT, "%s 9 tickers cold, qfetch %.2f RTT (target "
                    "<= %.1f)" % (tag, q / d.rtt, TARGET_COLD_RTT)))
        if best:
            out.append((q / best_ms <= TARGET_COLD_RATIO, "%s 9 tickers cold, qfetch / best "
                        "curl (%s) %.2fx (target <= %.1fx)" % (tag, LABEL[best], q / best_ms,
                                                              TARGET_COLD_RATIO)))
    if cold.get("qfetch_c9") and best:
        c9 = med([r.wall for r in cold["qfetch_c9"]])
        out.append((None, "%s 9 tickers cold, qfetch -c 9 %.2f RTT, %.2fx best curl"
                    % (tag, c9 / d.rtt, c9 / best_ms)))
    for name in ("qfetch_warm", "qfetch_c9_warm"):
        runs = d.results.get("warm", {}).get(name)
        if not runs:
            continue
        exits = [r.wall / d.rtt for r in runs]
        outs = [r.out_at / d.rtt for r in runs]
        answers = [r.answered / d.rtt for r in runs]
        ok = len(runs) == WARM_RUNS and max(exits) <= TARGET_WARM_RTT
        out.append((ok if name == "qfetch_warm" else None,
                    "%s %s, each of %d runs <= %.1f RTT: %s (prices out at %s RTT; last "
                    "answer, by qfetch's clock from its first step, at %s RTT; resumed/opened/"
                    "early data %s)" % (tag, LABEL[name], len(runs), TARGET_WARM_RTT,
                                        " ".join("%.2f" % x for x in exits),
                                        " ".join("%.2f" % x for x in outs),
                                        " ".join("%.2f" % x for x in answers),
                                        " ".join(d.warm_stats[name]))))
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
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    return [
        "Written by `bench/distance.py` (run by `make bench`; `bench/distance.py --write` "
        "refreshes this section alone): qfetch %s, %s UTC, %.0f s." % (
            harness.Bench.revision(), time.strftime("%Y-%m-%d %H:%M", time.gmtime()), elapsed),
        "",
        "- Server: nginx, 1 worker, TLS 1.3 with early data on (`ssl_early_data on`), one "
        "HTTP/1.1 and one HTTP/2 (`listen ... ssl http2`) listener, each behind `bench/relay.py` "
        "at the RTT (its docstring has the model: a cold TLS 1.3 fetch is 3 RTT, a 0-RTT one in "
        "a Fast Open SYN 1 RTT); `net.ipv4.tcp_fastopen` set to 3 for the run and put back "
        "after.",
        "- exit: fork to reap (`build/bench/measure`), process start included; RTT: that / the "
        "configured RTT; output done: when the last byte of stdout came out of a pipe (from just "
        "before the measuring program starts, so 1-2 ms late): when a user sees the prices. "
        "`vs best curl`: exit median / the fastest curl row's cold median (dead address and "
        "resolver rows: / curl's), from the same run. Contenders interleaved, order rotating, "
        "after one unmeasured pass; %d cold rounds, %d dead-address rounds, %d dead-resolver "
        "rounds per RTT. Every answer checked (prices; curl: status, body size and HTTP version "
        "per URL; the dead resolver: a could-not-resolve error per ticker)."
        % (s.runs, s.dead_runs, s.resolver_runs),
        "- qfetch: its defaults (`-c 16`) with `--no-session-cache` when cold; warm adds "
        "`--session-cache FILE --early-data --tcp-fastopen` (one priming run, then %d in a row, "
        "each required to resume every connection with early data). `qfetch -c 9` rows: one "
        "connection per ticker, as curl opens them." % WARM_RUNS,
        "- curl: `--parallel --parallel-immediate` with `--http1.1`, or `--http2` against the "
        "HTTP/2 listener; `multiplexed`: `--http2 --parallel` without `--parallel-immediate` "
        "(curl waits for the first connection and multiplexes the rest on it). Seed: "
        "../shared/seed/async_http.py through python3-httpx, URL constant replaced.",
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
        "- Load average %s at the start, %.2f, %.2f, %.2f at the end; %s while other work "
        "shared the 2 cores: a busy CPU only adds time, to every contender and to the relay."
        % (s.load_start, *os.getloadavg(),
           "the bench ran under `nice -n %d`" % nice if nice > 0 else "normal priority"),
    ]


def report(dists, s, elapsed):
    """(the RESULTS.md section, the target lines)."""
    tables, targets = [], []
    for d in dists:
        lines, best, best_ms = rtt_table(d)
        tables += lines
        targets += rtt_targets(d, best, best_ms)
    lines = ["%s  %s" % ("INFO" if ok is None else "PASS" if ok else "FAIL", text)
             for ok, text in targets]
    section = [HEADING, ""] + method(s, elapsed) + tables + ["", "```"] + lines + ["```"]
    notes = s.notes + [n for d in dists for n in d.notes]
    if notes:
        section += [""] + ["- " + n for n in notes]
    return section, lines


def splice(section):
    """section in place of RESULTS.md's previous one (else before its charts or its hand-written
    tail); nothing else in the file changes."""
    with open(RESULTS) as f:
        old = f.read()
    text = "\n".join(section) + "\n\n"
    span = harness.section_span(old, HEADING)
    if span is None:
        head = old[:old.index(harness.KEPT_MARK)] if harness.KEPT_MARK in old else old
        at = [head.find(m) for m in ("## Charts", "## Parser microbenchmark", "## Notes",
                                     "## Wrong answers", "Measuring took") if m in head]
        span = (min(at),) * 2 if at else (len(head),) * 2
    with open(RESULTS, "w") as f:
        f.write(old[:span[0]] + text + old[span[1]:])


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
            try:
                d.cold(s.runs, args.quick)
                d.warm(2 if args.quick else WARM_RUNS, args.quick)
                d.dead_address(s.dead_runs, args.quick)
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
    ap.add_argument("--markdown", metavar="FILE", help="write the RESULTS.md section to FILE")
    ap.add_argument("--write", action="store_true", help="put the section into RESULTS.md")
    args = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)  # unwinds: nginx stops, the sysctl goes back
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    work = tempfile.mkdtemp(prefix="qfetch-distance-")
    s = Setup(args, work)
    for need in (s.qfetch, s.ca, s.measure):
        if not os.path.exists(need):
            log("distance: %s missing (make all certs bench-bin)" % need)
            return 2
    for tool in ("curl", "nginx"):
        if not shutil.which(tool):
            log("distance: %s missing" % tool)
            return 2
    s.load_start = "%.2f, %.2f, %.2f" % os.getloadavg()
    t0 = time.monotonic()
    try:
        with relay.fastopen_sysctl(3) as tfo:
            if not tfo:
                s.notes.append("net.ipv4.tcp_fastopen could not be set (not root): warm runs "
                               "went without Fast Open")
            dists = measure(args, s)
    except Wrong as e:
        log("distance: WRONG %s" % e)
        return 1
    finally:
        s.stop()
        shutil.rmtree(work, ignore_errors=True)
    if args.quick:
        log("distance: every answer right (%d ms: cold, warm, dead first address, dead "
            "resolver)" % dists[0].rtt_ms)
        return 0
    section, _ = report(dists, s, time.monotonic() - t0)
    print("\n".join(section))
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write("\n".join(section) + "\n")
    if args.write:
        splice(section)
        log("distance: wrote its section of bench/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
