#!/usr/bin/python3
"""qfetch benchmark harness (issue 4): qfetch against the curl CLI, a libcurl multi program, wrk
and the Python original, all fetching the same Yahoo-shaped bodies from one local nginx.

    bench/run.py [--build build] [--quick] [--runs R] [--no-callgrind] [--no-charts]
                 [--keep] [--serve SECONDS]

nginx listens on 127.0.0.1 only (TLS 1.3 with the ECDSA P-256 test certificate, plain HTTP, and
/slow/ which answers after 50 ms through the echo module). Contenders run interleaved, round-robin
per run, and every run's answers are checked. Writes a table to stdout and, unless --quick,
bench/RESULTS.md and bench/*.png, and nothing else: the README only links to RESULTS.md, so it
never goes stale. RESULTS.md from KEPT_MARK on is written by hand and carried over as it is.
--serve only starts the server, for profiling by hand. The scratch directory is under /dev/shm.
bench/distance.py then measures the seed's 9 tickers and 200 more through a simulated distance
(its own nginx behind bench/relay.py), and bench/http2.py HTTP/2's CPU per request and the bytes
gzip saves (its own nginx): their sections go into RESULTS.md; with --quick, their answers-only
rounds.
Set QF_SHARED to find ../shared (fixtures, seed) elsewhere. Exit status: 0 when every answer was right, 1 when any contender
gave a wrong answer (or failed), 2 when a required tool (qfetch, curl, nginx) is missing.
Python stdlib only.
"""
import argparse
import csv
import datetime
import io
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
# RESULTS.md from this line on is kept as it is by each run: figures measured by hand
# (callgrind, memprobe, parse_bench) for the reasons the code comments give.
KEPT_MARK = "<!-- make bench keeps everything from this line on: written by hand -->"
# The sections of RESULTS.md that bench/distance.py and bench/http2.py write: a run that does
# not measure one carries it over.
DISTANCE_HEADING = "## Through a distance"
HTTP2_HEADING = "## HTTP/2, locally"
SECTIONS = (("distance.py", DISTANCE_HEADING, "through a distance"),
            ("http2.py", HTTP2_HEADING, "HTTP/2 locally"))
SHARED = os.environ.get("QF_SHARED", os.path.join(os.path.dirname(ROOT), "shared"))
FIXTURES = os.path.join(SHARED, "fixtures", "yahoo")
SEED = os.path.join(SHARED, "seed", "async_http.py")
SEED_URL = "https://query1.finance.yahoo.com/v8/finance/chart/{}"
SEED_TICKERS = "VTSAX VTIAX IJS VSS AAPL ORCL GOOG MSFT FB".split()
SYS_PY = "/usr/bin/python3"
ECHO_MODULE = "/usr/lib/nginx/modules/ngx_http_echo_module.so"
DELAY_MS = 50
# curl's per-transfer report, on stdout; each body goes to /dev/null (output = per URL).
CURL_WRITE_OUT = "%{http_code} %{size_download} %{num_connects} %{url_effective}\\n"
RUN_TIMEOUT_S = 300
CALLGRIND_TIMEOUT_S = 900
WRK_SECONDS = 1
# The steady row: one qfetch process fetches the N symbols this many times over its K
# connections, about as long as wrk's run, so start-up weighs as little as in wrk's rate.
STEADY_REPEAT = 6
CONTENDERS = ["qfetch", "qfetch_steady", "qfetch_warm", "qfetch_shared", "curl", "libcurl", "wrk",
              "python"]
QFETCHES = ("qfetch", "qfetch_steady", "qfetch_warm", "qfetch_shared")
LABEL = {"qfetch": "qfetch", "qfetch_steady": "qfetch x%d/run" % STEADY_REPEAT,
         "qfetch_warm": "qfetch+sessions", "qfetch_shared": "qfetch (shared)", "curl": "curl CLI",
         "libcurl": "libcurl multi", "wrk": "wrk (no JSON)", "python": "Python seed"}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def lua_str(text):
    """A Lua string literal for printable ASCII text."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sh(argv, **kw):
    """Output of a short informational command ('' when it fails)."""
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=30, **kw)
        return (r.stdout + r.stderr).strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def apt_install(pkg):
    """Installs one Debian package when root; True when that worked."""
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        return False
    log("bench: installing %s" % pkg)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "install", "-y", "-q", pkg], ["apt-get", "update", "-q"],
                ["apt-get", "install", "-y", "-q", pkg]):
        try:
            r = subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               timeout=600)
        except (OSError, subprocess.SubprocessError):
            return False
        if r.returncode == 0 and cmd[1] == "install":
            return True
    return False


def fmt_ratio(v):
    return "%.3f" % v if v < 0.1 else "%.2f" % v


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def section_span(text, heading):
    """(start, end) of the "## " section of text that starts with heading, up to the next
    section, the closing "Measuring took" line or KEPT_MARK; None when there is none."""
    head = text[:text.index(KEPT_MARK)] if KEPT_MARK in text else text
    start = head.find(heading)
    if start < 0:
        return None
    ends = [i + 1 for i in (head.find("\n## ", start), head.find("\nMeasuring took", start))
            if i >= 0]
    return start, min(ends) if ends else len(head)


def die_with_parent():
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


# ---------------------------------------------------------------- bodies

def price_source():
    """tests/server.py's price_for (varied, deterministic), else a local equivalent."""
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    sys.dont_write_bytecode = True  # leave tests/ untouched
    try:
        from server import price_for, chart_body  # noqa: E402
        return price_for, chart_body
    except Exception:  # the test server is being edited elsewhere: fall back, never fail
        import hashlib

        def price_for(sym):
            h = int.from_bytes(hashlib.sha256(sym.encode()).digest()[:8], "big")
            return (1000 + h % 899000) / 1000
        return price_for, None
    finally:
        sys.path.pop(0)


def fixture_template():
    """The captured ^TNX body (2.5 KB, like the issue's reference bodies) or None."""
    path = os.path.join(FIXTURES, "^TNX-5m-1d.json")
    try:
        with open(path, "rb") as f:
            body = f.read()
    except OSError:
        return None
    if body.count(b'"regularMarketPrice":4.275,') != 1 or body.count(b'"symbol":"^TNX"') != 1:
        return None
    return body


def make_body(template, chart_body, sym, ptxt):
    if template is not None:
        b = template.replace(b'"regularMarketPrice":4.275,',
                             b'"regularMarketPrice":' + ptxt.encode() + b",")
        return b.replace(b'"symbol":"^TNX"', b'"symbol":' + json.dumps(sym).encode())
    if chart_body is not None:
        return chart_body(sym, ptxt)
    return ('{"chart":{"result":[{"meta":{"currency":"USD","symbol":%s,"regularMarketPrice":%s}}],'
            '"error":null}}' % (json.dumps(sym), ptxt)).encode()


def gen_symbols(n):
    out = []
    for i in range(n):
        a, b, c = i // 676, i // 26 % 26, i % 26
        out.append("Q" + chr(65 + a) + chr(65 + b) + chr(65 + c))
    return out


class Data:
    """Symbols, bodies on disk for nginx, and the expected answer for each symbol."""

    def __init__(self, work, nmax):
        price_for, chart_body = price_source()
        template = fixture_template()
        self.source = ("../shared/fixtures/yahoo/^TNX-5m-1d.json, symbol and price replaced"
                       if template is not None else "tests/server.py chart_body()")
        self.root = os.path.join(work, "root")
        chart = os.path.join(self.root, "v8", "finance", "chart")
        os.makedirs(chart)
        self.bulk = gen_symbols(nmax)
        self.expected = {}
        self.size = {}
        for sym in SEED_TICKERS + self.bulk:
            ptxt = repr(price_for(sym))
            body = make_body(template, chart_body, sym, ptxt)
            meta = json.loads(body)["chart"]["result"][0]["meta"]
            assert meta["regularMarketPrice"] == float(ptxt) and meta["symbol"] == sym, sym
            self.expected[sym] = str(Decimal(float(ptxt)).quantize(Decimal("0.01")))
            self.size[sym] = len(body)
            with open(os.path.join(chart, sym), "wb") as f:
                f.write(body)
        self.mean_size = sum(self.size.values()) / len(self.size)


# ---------------------------------------------------------------- nginx

class Nginx:
    """nginx serving data's bodies: TLS at tls_port, plain HTTP at http_port, and one more TLS
    server for each (attribute, listen flags, directives) of extra, at the port it puts in that
    attribute (bench/http2.py's HTTP/2 and gzip listeners)."""

    def __init__(self, work, data, certs, echo, extra=()):
        self.dir = os.path.join(work, "nginx")
        os.makedirs(self.dir)
        self.extra = extra
        for _ in range(3):
            self.tls_port, self.http_port = free_port(), free_port()
            for attr, _, _ in extra:
                setattr(self, attr, free_port())
            if self.start(data, certs, echo):
                return
        raise SystemExit("bench: nginx would not start: %s" % self.error())

    def start(self, data, certs, echo):
        d = self.dir
        user = "user root;\n" if os.geteuid() == 0 else ""
        load = "load_module %s;\n" % ECHO_MODULE if echo else ""
        slow = ("""        location /slow/ {
            rewrite ^/slow(/.*)$ $1 break;
            echo_sleep %.3f;
            echo_exec $uri;
        }
""" % (DELAY_MS / 1000)) if echo else ""
        server_common = """        root %s;
        location / { }
%s""" % (data.root, slow)
        more = "".join(f"""    server {{
        listen 127.0.0.1:{getattr(self, attr)} ssl{flags};
        server_name localhost;
        ssl_certificate {certs}/server.pem;
        ssl_certificate_key {certs}/server.key;
        {directives}
{server_common}    }}
""" for attr, flags, directives in self.extra)
        conf = f"""{load}{user}daemon off;
master_process on;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{ }}
    default_type application/json;
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    open_file_cache max=40000 inactive=600s;
    open_file_cache_valid 600s;
    ssl_protocols TLSv1.3;
    ssl_session_cache shared:bench:10m;
    server {{
        listen 127.0.0.1:{self.tls_port} ssl;
        server_name localhost;
        ssl_certificate {certs}/server.pem;
        ssl_certificate_key {certs}/server.key;
{server_common}    }}
    server {{
        listen 127.0.0.1:{self.http_port};
        server_name localhost;
{server_common}    }}
{more}}}
"""
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(conf)
        self.errf = open(os.path.join(d, "stderr.log"), "ab")
        self.proc = subprocess.Popen(["nginx", "-e", os.path.join(d, "error.log"), "-c", self.conf,
                                      "-p", d], stdin=subprocess.DEVNULL, stdout=self.errf,
                                     stderr=self.errf, preexec_fn=die_with_parent)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                for port in [self.tls_port, self.http_port] + [getattr(self, a)
                                                               for a, _, _ in self.extra]:
                    socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                return True
            except OSError:
                time.sleep(0.05)
        self.stop()
        return False

    def error(self):
        try:
            with open(os.path.join(self.dir, "error.log")) as f:
                return f.read()[-400:]
        except OSError:
            return "(no error log)"

    def stop(self):
        p = getattr(self, "proc", None)
        if p is not None and p.poll() is None:
            p.send_signal(signal.SIGQUIT)
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


# ---------------------------------------------------------------- running one process

class Run:
    def __init__(self, rc, wall, cpu, rss_kb, out, err, timed_out=False):
        self.rc, self.wall, self.cpu, self.rss_kb = rc, wall, cpu, rss_kb
        self.out, self.err, self.timed_out = out, err, timed_out


MEASURE = None  # build/bench/measure, set in Bench.find_tools()


def spawn(argv, stdin_path, work, env=None, timeout=RUN_TIMEOUT_S):
    """Runs argv under build/bench/measure (fork, exec, wait4), stdout/stderr to files.
    wall: fork to reap; cpu: user+sys; rss_kb: ru_maxrss of the command alone."""
    out_path = os.path.join(work, "out.txt")
    err_path = os.path.join(work, "err.txt")
    path = shutil.which(argv[0], path=(env or os.environ).get("PATH")) or argv[0]
    cmd = [MEASURE, str(int(timeout)), stdin_path or os.devnull, out_path, err_path, path]
    cmd += argv[1:]
    try:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout + 30)
    except subprocess.TimeoutExpired:
        return Run(-1, timeout, 0.0, 0, "", "measure did not return", True)
    m = re.search(r"rc=(-?\d+) wall_ns=(\d+) utime_us=(\d+) stime_us=(\d+) maxrss_kb=(\d+) "
                  r"timed_out=(\d)", p.stdout)
    if not m:
        raise SystemExit("bench: measure failed: %s" % (p.stdout + p.stderr).strip())
    with open(out_path, "rb") as f:
        raw = f.read()
    with open(err_path, "rb") as f:
        err = f.read().decode("utf-8", "replace")
    v = [int(x) for x in m.groups()]
    r = Run(v[0], v[1] / 1e9, (v[2] + v[3]) / 1e6, v[4], raw.decode("utf-8", "replace"), err,
            bool(v[5]))
    r.out_len = len(raw)
    return r


def request_headers(qfetch):
    """The header lines qfetch sends with an HTTP/1.1 quote request (all but Host), read off a
    one-shot local socket. The other contenders send the same lines, so nginx does the same
    work for every contender's requests."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(1)
    srv.settimeout(10)
    url = "http://127.0.0.1:%d/v8/finance/chart/{}" % srv.getsockname()[1]
    p = subprocess.Popen([qfetch, "-u", url, "-t", "HDRS", "--retries", "0",
                          "--no-session-cache", "-f", "csv"], stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    head = b""
    try:
        conn, _ = srv.accept()
        conn.settimeout(10)
        while b"\r\n\r\n" not in head and len(head) < 65536:
            chunk = conn.recv(4096)
            if not chunk:
                break
            head += chunk
        conn.sendall(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        conn.close()
    except OSError as e:
        log("bench: could not read qfetch's request headers: %s" % e)
    finally:
        srv.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
    lines = head.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")[1:]
    return [ln for ln in lines if ":" in ln and ln.split(":")[0].strip().lower() != "host"
            and all(32 <= ord(ch) < 127 for ch in ln)]


# ---------------------------------------------------------------- contenders

class Cell:
    """One scenario: which symbols, how many connections, which port and path."""

    def __init__(self, sid, title, short, syms, k, scheme, slow):
        self.sid, self.title, self.short = sid, title, short
        self.syms, self.k, self.scheme, self.slow = syms, k, scheme, slow
        self.n = len(syms)

    def template(self, ng):
        port = ng.tls_port if self.scheme == "https" else ng.http_port
        return "%s://127.0.0.1:%d%s/v8/finance/chart/{}" % (self.scheme, port,
                                                             "/slow" if self.slow else "")


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = os.path.abspath(os.path.join(ROOT, args.build))
        self.certs = os.path.join(self.build, "test", "certs")
        self.ca = os.path.join(self.certs, "ca.pem")
        self.notes = []
        self.wrong = []
        self.tools = {}
        self.headers = []  # qfetch's request header lines, sent by every C contender

    # -- setup
    def find_tools(self):
        global MEASURE
        MEASURE = os.path.join(self.build, "bench", "measure")
        qfetch = os.path.join(self.build, "qfetch")
        for path in (MEASURE, qfetch):
            if not os.access(path, os.X_OK):
                log("bench: %s is missing: run make bench-bin" % path)
                sys.exit(2)
        for t in ("curl", "nginx"):
            if not shutil.which(t):
                log("bench: %s is required and missing" % t)
                sys.exit(2)
        self.tools["qfetch"] = qfetch
        # qfetch can keep TLS sessions in a file across runs; curl cannot, so the comparisons
        # run it without, and scenario (a) shows a warm session file as an extra row.
        qhelp = sh([qfetch, "--help"])
        self.qfetch_flags = ["--no-session-cache"] if "--no-session-cache" in qhelp else []
        if "--session-cache" in qhelp:
            self.tools["qfetch_warm"] = qfetch
        if "--repeat" in qhelp:
            self.tools["qfetch_steady"] = qfetch
        # build/qfetch links OpenSSL's archives; scenario (a) also shows the same code linked
        # against the shared libraries, as curl is.
        shared = os.path.join(self.build, "bench", "qfetch-shared")
        if os.access(shared, os.X_OK):
            self.tools["qfetch_shared"] = shared
        self.tools["curl"] = shutil.which("curl")
        cm = os.path.join(self.build, "bench", "curl_multi")
        if os.access(cm, os.X_OK):
            self.tools["libcurl"] = cm
        else:
            self.notes.append("libcurl multi program skipped: %s not built "
                              "(needs libcurl4-openssl-dev)" % cm)
        if shutil.which("wrk"):
            self.tools["wrk"] = shutil.which("wrk")
        else:
            self.notes.append("wrk skipped: not installed (Debian package wrk)")
        if not os.path.exists(SEED):
            self.notes.append("Python original skipped: %s not found" % SEED)
        elif not os.access(SYS_PY, os.X_OK) or subprocess.run(
                [SYS_PY, "-c", "import httpx"], capture_output=True).returncode != 0:
            self.notes.append("Python original skipped: /usr/bin/python3 cannot import httpx "
                              "(Debian package python3-httpx)")
        else:
            self.tools["python"] = SYS_PY
        self.valgrind = shutil.which("valgrind")
        self.echo = os.path.exists(ECHO_MODULE)
        if not self.echo and not self.args.quick:
            self.echo = apt_install("libnginx-mod-http-echo") and os.path.exists(ECHO_MODULE)
        if not self.echo:
            self.notes.append("scenario (c) skipped: nginx echo module missing "
                              "(Debian package libnginx-mod-http-echo)")
        self.gnuplot = shutil.which("gnuplot")
        if not self.gnuplot and not self.args.quick and not self.args.no_charts:
            if apt_install("gnuplot-nox"):
                self.gnuplot = shutil.which("gnuplot")
        if not self.gnuplot and not self.args.quick and not self.args.no_charts:
            self.notes.append("charts skipped: gnuplot missing and could not be installed")

    def make_certs(self):
        if not os.path.exists(os.path.join(self.certs, "server.pem")):
            subprocess.run([os.path.join(ROOT, "tests", "gen_certs.sh"), self.certs], check=True)

    def prepare_python(self):
        with open(SEED) as f:
            src = f.read()
        if SEED_URL not in src:
            self.notes.append("Python original skipped: its URL constant was not found")
            self.tools.pop("python", None)
            return
        self.seed_copies = {}
        for cell_tmpl in {c.template(self.ng) for c in self.cells}:
            path = os.path.join(self.work, "seed_%d.py" % len(self.seed_copies))
            with open(path, "w") as f:
                f.write(src.replace(SEED_URL, cell_tmpl))
            self.seed_copies[cell_tmpl] = path

    def capture_headers(self):
        """qfetch's request header lines, which curl, libcurl and wrk send too."""
        self.headers = request_headers(self.tools["qfetch"])
        log("bench: every C contender sends qfetch's header lines: %s" % "; ".join(self.headers))
        if not self.headers:
            self.notes.append("qfetch's request headers could not be read: the other contenders "
                              "send their own defaults")

    def prepare_wrk(self):
        self.wrk_lua = os.path.join(self.work, "cycle.lua")
        hdrs = ", ".join("[%s] = %s" % (lua_str(ln.split(":", 1)[0].strip()),
                                         lua_str(ln.split(":", 1)[1].strip()))
                         for ln in self.headers)
        with open(self.wrk_lua, "w") as f:
            f.write("""-- cycles the benchmark's paths (file named after the URL), one per request,
-- with qfetch's header lines
local reqs = {}
local i = 0
local headers = {%s}
function init(args)
  for line in io.lines(args[1]) do
    reqs[#reqs + 1] = wrk.format("GET", line, headers)
  end
end
function request()
  i = i %% #reqs + 1
  return reqs[i]
end
""" % hdrs)

    def cell_files(self, cell):
        """Per cell: symbols on stdin, a curl config, a wrk path list."""
        key = (cell.sid, cell.n, cell.k, cell.scheme, cell.slow)
        if key in self.files:
            return self.files[key]
        base = os.path.join(self.work, "cell_%d" % len(self.files))
        tmpl = cell.template(self.ng)
        with open(base + ".syms", "w") as f:
            f.write("\n".join(cell.syms) + "\n")
        with open(base + ".curl", "w") as f:
            for s in cell.syms:
                f.write('url = "%s"\noutput = "/dev/null"\n' % tmpl.replace("{}", s))
        with open(base + ".paths", "w") as f:
            path_tmpl = "/" + tmpl.split("/", 3)[3]
            f.write("\n".join(path_tmpl.replace("{}", s) for s in cell.syms) + "\n")
        self.files[key] = base
        return base

    # -- commands
    def command(self, name, cell):
        """(argv, stdin path, env) for one contender on one cell."""
        base = self.cell_files(cell)
        tmpl = cell.template(self.ng)
        k = str(cell.k)
        if name in QFETCHES:
            cache = (["--session-cache", os.path.join(self.work, "sessions")]
                     if name == "qfetch_warm" else self.qfetch_flags)
            if name == "qfetch_steady":
                cache = cache + ["--repeat", str(STEADY_REPEAT)]
            return ([self.tools[name], "-t", "-", "-u", tmpl, "-c", k, "--cacert", self.ca,
                     "-f", "csv", "--stats"] + cache, base + ".syms", None)
        if name == "curl":
            hdrs = [a for ln in self.headers for a in ("-H", ln)]
            return ([self.tools["curl"], "--parallel", "--parallel-max", k, "-K", base + ".curl",
                     "--cacert", self.ca, "-sS", "--no-progress-meter", "-w", CURL_WRITE_OUT]
                    + hdrs, None, None)
        if name == "libcurl":
            return ([self.tools["libcurl"], tmpl, k, self.ca] + self.headers, base + ".syms",
                    None)
        if name == "python":
            env = dict(os.environ, SSL_CERT_FILE=self.ca)
            return ([SYS_PY, self.seed_copies[tmpl], "-t"] + cell.syms, None, env)
        if name == "wrk":
            url = tmpl.split("/v8/")[0].replace("/slow", "") + "/"
            return ([self.tools["wrk"], "-t1", "-c" + k, "-d%ds" % WRK_SECONDS, "--timeout", "10s",
                     "-s", self.wrk_lua, url, base + ".paths"], None, None)
        raise ValueError(name)

    def applies(self, name, cell):
        if name not in self.tools:
            return False
        if name == "wrk":
            return cell.sid != "a"
        if name in ("qfetch_warm", "qfetch_shared"):
            return cell.sid == "a"
        if name == "qfetch_steady":  # beside wrk where it matters: 10k, K=8 and 64
            return cell.sid in ("b", "d") and cell.n == 10000 and cell.k > 1
        if name == "python":
            # httpx ignores K (its pool allows 100): one cell per N and protocol.
            return cell.sid == "a" or cell.k == (64 if cell.sid == "c" else 8)
        return True

    # -- answers
    def check(self, name, cell, r):
        """None when every answer is right, else what was wrong. Fills r.extra."""
        r.extra = {}
        if r.timed_out:
            return "timed out after %d s" % RUN_TIMEOUT_S
        if name in QFETCHES:
            m = re.search(r"conns_opened=(\d+).*?requests_sent=(\d+)", r.err)
            if m:
                r.extra = {"conns": int(m.group(1)), "sent": int(m.group(2))}
            m = re.search(r"tls_resumed=(\d+)", r.err)
            if m and "conns" in r.extra and int(m.group(1)) > 0:
                r.extra["conns"] = "%d/%dr" % (r.extra["conns"], int(m.group(1)))
            rows = list(csv.reader(io.StringIO(r.out)))
            if not rows or rows[0][:2] != ["ticker", "price"]:
                return "no CSV header (rc %d): %s" % (r.rc, r.err.strip()[-200:])
            got = {row[0]: row[1] for row in rows[1:] if len(row) >= 2}
            return self.compare(cell, got, r.rc)
        if name == "libcurl":
            m = re.search(r"conns_opened=(\d+)", r.err)
            if m:
                r.extra = {"conns": int(m.group(1))}
            got = {}
            for ln in r.out.splitlines():
                sym, _, val = ln.partition(",")
                got[sym] = val
            return self.compare(cell, got, r.rc)
        if name == "python":
            pairs = re.findall(r"\('([^']*)', Decimal\('([^']*)'\)\)", r.out)
            if [p[0] for p in pairs] != cell.syms:
                return "rc %d, %d of %d results in order: %s" % (
                    r.rc, len(pairs), cell.n, r.err.strip()[-200:])
            return self.compare(cell, dict(pairs), r.rc)
        if name == "curl":
            if r.rc != 0:
                return "exit status %d: %s" % (r.rc, r.err.strip()[-200:])
            seen = {}
            conns = 0
            for m in re.finditer(r"(\d{3}) (\d+) (\d+) https?://\S*/([^/\s]+)$", r.out, re.M):
                seen[m.group(4)] = (m.group(1), m.group(2))
                conns += int(m.group(3))
            r.extra = {"conns": conns}
            bad = [s for s in cell.syms if seen.get(s) != ("200", str(self.data.size[s]))]
            if bad or len(seen) != cell.n:
                return "%d transfers reported, %d wrong (first: %s %s)" % (
                    len(seen), len(bad), bad[:1], seen.get(bad[0]) if bad else "")
            return None
        if name == "wrk":
            m = re.search(r"(\d+) requests in ([\d.]+)(m?s)", r.out)
            rps = re.search(r"Requests/sec:\s+([\d.]+)", r.out)
            if r.rc != 0 or not m or not rps:
                return "rc %d, no summary: %s" % (r.rc, (r.out + r.err).strip()[-200:])
            if "Non-2xx" in r.out or "Socket errors" in r.out:
                return "errors: %s" % re.findall(r"(Non-2xx.*|Socket errors.*)", r.out)
            secs = float(m.group(2)) / (1000 if m.group(3) == "ms" else 1)
            r.extra = {"requests": int(m.group(1)), "seconds": secs, "rps": float(rps.group(1))}
            return None
        return "unknown contender"

    def compare(self, cell, got, rc):
        bad = [s for s in cell.syms if got.get(s) != self.data.expected[s]]
        if bad or rc != 0:
            s = bad[0] if bad else None
            return "rc %d, %d of %d prices wrong (first: %s got %r want %r)" % (
                rc, len(bad), cell.n, s, got.get(s), self.data.expected.get(s))
        return None

    # -- measuring
    def measure_cell(self, cell, runs, python_runs):
        names = [n for n in CONTENDERS if self.applies(n, cell)]
        res = {n: [] for n in names}
        for i in range(runs):
            order = names[i % len(names):] + names[:i % len(names)]
            for name in order:
                if name == "python" and i >= python_runs:
                    continue
                argv, stdin, env = self.command(name, cell)
                r = spawn(argv, stdin, self.work, env)
                err = self.check(name, cell, r)
                if err:
                    self.wrong.append("%s, %s: %s" % (cell.title, LABEL[name], err))
                    log("bench: WRONG %s, %s: %s" % (cell.title, LABEL[name], err))
                    continue
                if name == "wrk":
                    x = r.extra
                    # The same requests at wrk's steady rate: N / (req/s); CPU per request.
                    r.wall = cell.n / x["rps"]
                    r.cpu = r.cpu / x["requests"] * cell.n
                elif name == "qfetch_steady":  # one batch's share of the run
                    r.wall /= STEADY_REPEAT
                    r.cpu /= STEADY_REPEAT
                res[name].append(r)
        out = {}
        for name, rs in res.items():
            if not rs:
                continue
            walls = [r.wall for r in rs]
            cpus = [r.cpu for r in rs]
            rss = [r.rss_kb for r in rs]
            extra = rs[-1].extra
            out[name] = {
                "runs": len(rs), "wall": statistics.median(walls), "wall_min": min(walls),
                "wall_max": max(walls), "cpu": statistics.median(cpus), "cpu_min": min(cpus),
                "cpu_max": max(cpus), "rss_kb": statistics.median(rss), "rss_min": min(rss),
                "rss_max": max(rss), "conns": extra.get("conns"),
            }
            out[name]["rps"] = cell.n / out[name]["wall"]
            out[name]["cpu_us"] = out[name]["cpu"] / cell.n * 1e6
        return out

    def callgrind(self, cell):
        """Instructions per request (whole process) for qfetch, curl and libcurl."""
        out = {}
        for name in ("qfetch", "curl", "libcurl"):
            if name not in self.tools:
                continue
            argv, stdin, env = self.command(name, cell)
            cg = os.path.join(self.work, "callgrind.out")
            r = spawn([self.valgrind, "--tool=callgrind", "--callgrind-out-file=" + cg] + argv,
                      stdin, self.work, env, timeout=CALLGRIND_TIMEOUT_S)
            err = self.check(name, cell, r)
            m = re.search(r"Collected\s*:\s*(\d+)", r.err)
            if err or not m:
                self.notes.append("callgrind %s: %s" % (LABEL[name], err or "no total"))
                continue
            out[name] = int(m.group(1)) / cell.n
            try:
                os.unlink(cg)
            except OSError:
                pass
            log("bench: callgrind %s: %.0f instructions per request" % (name, out[name]))
        return out

    def syscall_counts(self, cell):
        """System calls per request for qfetch, curl and libcurl: `perf trace -s` when it works
        (it barely slows the client), else `strace -c -f` (which does, so fewer reads meet
        EAGAIN than in a real run)."""
        tool = None
        if shutil.which("perf"):
            probe = subprocess.run(["perf", "trace", "-s", "true"], capture_output=True)
            tool = "perf" if probe.returncode == 0 else None
        if tool is None and shutil.which("strace"):
            tool = "strace"
        if tool is None:
            self.notes.append("system calls per request skipped: neither perf nor strace works")
            return None, {}
        out = {}
        for name in ("qfetch", "curl", "libcurl"):
            if name not in self.tools:
                continue
            argv, stdin, env = self.command(name, cell)
            so = os.path.join(self.work, "syscalls.txt")
            pre = (["perf", "trace", "-s", "-o", so] if tool == "perf" else
                   ["strace", "-c", "-f", "-o", so])
            r = spawn(pre + argv, stdin, self.work, env)
            if self.check(name, cell, r):
                continue
            calls = {}
            with open(so) as f:
                for ln in f:
                    # perf: "   read  2612  487  46.014 ..."; strace: "54.87 0.006 6 1030  write"
                    m = (re.match(r"\s+([a-z_0-9]+)\s+(\d+)\s+\d+\s+[\d.]+\s", ln)
                         if tool == "perf" else
                         re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)$",
                                  ln))
                    if not m:
                        continue
                    sc, n = (m.group(1), m.group(2)) if tool == "perf" else (m.group(2),
                                                                              m.group(1))
                    if sc != "total":
                        calls[sc] = calls.get(sc, 0) + int(n)
            total = sum(calls.values())
            top = sorted(calls.items(), key=lambda kv: -kv[1])[:6]
            out[name] = (total / cell.n, ", ".join("%s %.2f" % (k, v / cell.n) for k, v in top))
        return ("perf trace -s" if tool == "perf" else "strace -c -f"), out

    def parse_bench(self):
        pb = os.path.join(self.build, "bench", "parse_bench")
        if not os.access(pb, os.X_OK):
            return ""
        files = []
        for f in ("^TNX-5m-1d.json", "AAPL-1d-6mo.json"):
            p = os.path.join(FIXTURES, f)
            if os.path.exists(p):
                files.append(p)
        rec = os.path.join(FIXTURES, "TSLA-1d-max.recording.json")
        if os.path.exists(rec):
            with open(rec) as f:
                body = json.load(f)["response"]["bodyJson"]
            p = os.path.join(self.work, "TSLA-1d-max.json")
            with open(p, "w") as f:
                f.write(json.dumps(body, separators=(",", ":"), ensure_ascii=False))
            files.append(p)
        txt = sh([pb])
        if files:
            txt += "\n" + sh([pb, "-c", "-s", "16384"] + files)
        return txt

    # -- main
    def define_cells(self):
        seed = Cell("a", "(a) seed's 9 tickers, cold, TLS, K=8", "9 cold", SEED_TICKERS, 8,
                    "https", False)
        cells = [seed]
        bulk = self.data.bulk
        if self.args.quick:
            cells.append(Cell("b", "(b) 1,000 tickers, TLS, K=8", "1k K8", bulk[:1000], 8,
                              "https", False))
            return cells
        for scheme, sid in (("https", "b"), ("http", "d")):
            for n in (1000, 10000):
                for k in (1, 8, 64):
                    tag = "1k" if n == 1000 else "10k"
                    title = "(%s) %s tickers, %s, K=%d" % (sid, "{:,}".format(n),
                                                           "TLS" if sid == "b" else "plain HTTP", k)
                    short = ("%s K%d" % (tag, k)) if sid == "b" else ("http %s K%d" % (tag, k))
                    cells.append(Cell(sid, title, short, bulk[:n], k, scheme, False))
        if self.echo:
            for k in (8, 64):
                cells.append(Cell("c", "(c) 200 tickers, %d ms delay, TLS, K=%d" % (DELAY_MS, k),
                                  "slow K%d" % k, bulk[:200], k, "https", True))
        return cells

    def main(self):
        self.find_tools()
        self.make_certs()
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        self.work = tempfile.mkdtemp(prefix="qfetch-bench-", dir=base)
        os.chmod(self.work, 0o755)
        self.files = {}
        self.ng = None
        try:
            return self.run_all()
        finally:
            if self.ng is not None:
                self.ng.stop()
            if not self.args.keep:
                shutil.rmtree(self.work, ignore_errors=True)
            else:
                log("bench: kept %s" % self.work)

    def run_all(self):
        args = self.args
        nmax = 1000 if args.quick else 10000
        log("bench: generating %d bodies" % (nmax + len(SEED_TICKERS)))
        self.data = Data(self.work, nmax)
        self.ng = Nginx(self.work, self.data, self.certs, self.echo)
        if args.serve:
            return self.serve(args.serve)
        self.cells = self.define_cells()
        if "python" in self.tools:
            self.prepare_python()
        self.capture_headers()
        self.prepare_wrk()
        runs = args.runs or (2 if args.quick else 5)
        # Warm nginx's open-file cache and the page cache once, unmeasured.
        for scheme in ("https", "http"):
            warm = Cell("w", "warm-up", "warm", self.data.bulk, 64, scheme, False)
            r = spawn(self.command("qfetch", warm)[0], self.cell_files(warm) + ".syms", self.work)
            if self.check("qfetch", warm, r):
                log("bench: warm-up over %s failed: %s" % (scheme, self.check("qfetch", warm, r)))
        if "qfetch_warm" in self.tools:
            seed = self.cells[0]
            r = spawn(self.command("qfetch_warm", seed)[0], self.cell_files(seed) + ".syms",
                      self.work)
            if self.check("qfetch_warm", seed, r):
                log("bench: priming the session file failed: %s" % r.err.strip()[-200:])
        self.results = []
        self.load_start = "%.2f, %.2f, %.2f" % os.getloadavg()
        self.rev = self.revision()  # now: the charts and RESULTS.md written later dirty the tree
        t0 = time.monotonic()
        if args.only:
            self.cells = [c for c in self.cells if args.only in c.short]
        for cell in self.cells:
            # The cold 9-ticker runs last ~15 ms: more of them steady the median cheaply.
            # The 10k K=8 TLS cell carries five targets and its runs last 0.15-1 s, where a
            # noisy machine moves single runs by 30%: four times the runs. The Python original
            # (16 s a run at 10k, a few % apart) keeps the base count.
            n = runs * 4 if cell.sid == "a" and not args.quick else runs
            if cell.sid == "b" and cell.n == 10000 and cell.k == 8 and not args.quick:
                n = runs * 4
            py_runs = n if cell.sid == "a" else runs
            log("bench: %s (%d runs)" % (cell.title, n))
            self.results.append((cell, self.measure_cell(cell, n, py_runs)))
        self.elapsed = time.monotonic() - t0
        self.sections = {heading: self.section(script, heading, what)
                         for script, heading, what in SECTIONS}
        self.instr = {}
        self.syscalls = {}
        self.parse_txt = ""
        if not args.quick and not args.only:
            cg_cell = next(c for c, _ in self.results if c.sid == "b" and c.n == 1000 and c.k == 8)
            if self.valgrind and not args.no_callgrind:
                log("bench: callgrind, N=1000 K=8")
                self.instr = self.callgrind(cg_cell)
            elif not self.valgrind:
                self.notes.append("instructions per request skipped: valgrind missing")
            self.syscall_tool, self.syscalls = self.syscall_counts(cg_cell)
            self.parse_txt = self.parse_bench()
        table = self.table()
        targets = self.targets()
        print(table)
        print()
        for t in targets:
            print(t)
        for n in self.notes:
            print("note: " + n)
        if self.wrong:
            print("\nWRONG ANSWERS:")
            for w in self.wrong:
                print("  " + w)
        else:
            print("\nbench: every answer of every run was right")
        if not args.quick and not args.only:
            charts = self.charts() if self.gnuplot and not args.no_charts else []
            self.write_results(table, targets, charts)
        return 1 if self.wrong else 0

    def section(self, script, heading, what):
        """bench/distance.py (issue 16) or bench/http2.py (issue 17), each in a process of its
        own (distance.py sets a machine-wide sysctl and must put it back however it ends).
        Returns its RESULTS.md section's lines."""
        if self.args.only or (self.args.no_distance and script == "distance.py"):
            return []
        md = os.path.join(self.work, script + ".md")
        cmd = [sys.executable, os.path.join(BENCH, script), "--build", self.build]
        cmd += ["--quick"] if self.args.quick else ["--markdown", md]
        log("bench: %s (bench/%s%s)" % (what, script, " --quick" if self.args.quick else ""))
        try:
            rc = subprocess.run(cmd, stdout=subprocess.DEVNULL, timeout=1200).returncode
        except subprocess.TimeoutExpired:
            rc = -1
        if rc == 2:
            self.notes.append("%s skipped: bench/%s lacks a tool" % (what, script))
        elif rc != 0:
            self.wrong.append("%s: bench/%s exit status %d (its stderr says which answer was "
                              "wrong)" % (what, script, rc))
        if rc != 0 or self.args.quick:
            return []
        with open(md) as f:
            return f.read().rstrip("\n").split("\n")

    def serve(self, seconds):
        """Only the server, for profiling by hand: prints templates and symbol files, then waits."""
        syms = os.path.join(self.work, "symbols.txt")
        with open(syms, "w") as f:
            f.write("\n".join(self.data.bulk) + "\n")
        print("TLS    https://127.0.0.1:%d/v8/finance/chart/{}" % self.ng.tls_port)
        print("plain  http://127.0.0.1:%d/v8/finance/chart/{}" % self.ng.http_port)
        if self.echo:
            print("slow   https://127.0.0.1:%d/slow/v8/finance/chart/{}" % self.ng.tls_port)
        print("cacert %s\nsymbols %s (%d; head -n N for fewer)\nseed %s" % (
            self.ca, syms, len(self.data.bulk), " ".join(SEED_TICKERS)))
        print("serving for %d s (Ctrl-C stops)" % seconds, flush=True)
        try:
            time.sleep(seconds)
        except KeyboardInterrupt:
            pass
        return 0

    # -- reporting
    def table(self):
        lines = []
        hdr = ("%-40s %-14s %21s %21s %8s %9s %8s %6s | %-18s" %
               ("scenario", "contender", "wall ms med [min-max]", "CPU ms med [min-max]",
                "RSS MB", "req/s", "CPU us/r", "conns", "qfetch/x wall CPU RSS"))
        lines.append(hdr)
        lines.append("-" * len(hdr))
        for cell, res in self.results:
            q = res.get("qfetch")
            for name in CONTENDERS:
                if name not in res:
                    continue
                s = res[name]
                ratio = ""
                if q is not None and name != "qfetch":
                    ratio = "%s %s %s" % (fmt_ratio(q["wall"] / s["wall"]),
                                          fmt_ratio(q["cpu"] / s["cpu"]),
                                          fmt_ratio(q["rss_kb"] / s["rss_kb"]))
                lines.append("%-40s %-14s %21s %21s %8.1f %9.0f %8.1f %6s | %s" % (
                    cell.title, LABEL[name],
                    "%.1f [%.1f-%.1f]" % (s["wall"] * 1e3, s["wall_min"] * 1e3,
                                          s["wall_max"] * 1e3),
                    "%.1f [%.1f-%.1f]" % (s["cpu"] * 1e3, s["cpu_min"] * 1e3, s["cpu_max"] * 1e3),
                    s["rss_kb"] / 1024, s["rps"], s["cpu_us"],
                    "" if s["conns"] is None else s["conns"], ratio))
            lines.append("")
        if self.instr:
            q = self.instr.get("qfetch")
            lines.append("instructions per request (callgrind, whole process, N=1,000, K=8, TLS):")
            for name, v in self.instr.items():
                lines.append("  %-14s %12.0f%s" % (LABEL[name], v, "" if name == "qfetch" or not q
                                                   else "   qfetch/x %.2f" % (q / v)))
        if self.syscalls:
            lines.append("system calls per request (%s, N=1,000, K=8, TLS):" % self.syscall_tool)
            for name, (per, top) in self.syscalls.items():
                lines.append("  %-14s %6.2f   %s" % (LABEL[name], per, top))
        return "\n".join(lines).rstrip()

    def find(self, sid, n, k, slow=False):
        for cell, res in self.results:
            if cell.sid == sid and cell.n == n and cell.k == k and cell.slow == slow:
                return res
        return None

    def targets(self):
        out = []

        def ratio_target(label, res, metric, other, limit):
            if res is None or "qfetch" not in res or other not in res:
                out.append("SKIP  %s: not measured" % label)
                return
            v = res["qfetch"][metric] / res[other][metric]
            out.append("%s  %s: %sx (target <= %.2fx)" % ("PASS" if v <= limit else "MISS",
                                                        label, fmt_ratio(v), limit))

        b10 = self.find("b", 10000, 8)
        ratio_target("10k K=8 TLS wall, qfetch/curl", b10, "wall", "curl", 0.35)
        ratio_target("10k K=8 TLS wall, qfetch/libcurl", b10, "wall", "libcurl", 0.5)
        ratio_target("10k K=8 TLS wall, qfetch/wrk", b10, "wall", "wrk", 1.15)
        ratio_target("10k K=8 TLS CPU per request, qfetch/curl", b10, "cpu", "curl", 0.35)
        ratio_target("10k K=8 TLS peak RSS, qfetch/curl", b10, "rss_kb", "curl", 0.5)
        a = self.find("a", 9, 8)
        ratio_target("9 tickers cold wall, qfetch/curl", a, "wall", "curl", 0.6)
        ratio_target("9 tickers cold wall, qfetch/Python", a, "wall", "python", 0.05)
        c = self.find("c", 200, 64, slow=True)
        ratio_target("200 tickers 50 ms delay K=64 wall, qfetch/curl", c, "wall", "curl", 1.0)
        if self.instr.get("qfetch") and self.instr.get("curl"):
            v = self.instr["qfetch"] / self.instr["curl"]
            out.append("%s  instructions per request N=1k K=8, qfetch/curl: %sx (target <= "
                       "0.30x)" % ("PASS" if v <= 0.3 else "MISS", fmt_ratio(v)))
        else:
            out.append("SKIP  instructions per request: not measured")
        b1 = self.find("b", 1000, 8)
        if b1 and b10 and "qfetch" in b1 and "qfetch" in b10:
            per = (b10["qfetch"]["rss_kb"] - b1["qfetch"]["rss_kb"]) * 1024 / 9000
            out.append("%s  qfetch peak RSS growth 1k->10k tickers: %.0f B per ticker (target < "
                       "1024 B)" % ("PASS" if per < 1024 else "MISS", per))
        else:
            out.append("SKIP  peak RSS growth per ticker: not measured")
        # Not targets: where the wall against wrk goes. wrk's rate leaves out its start-up and
        # connection set-up; a batch of qfetch's 6-batch run carries a sixth of its own.
        for what, x, y in (("batch of a %d-batch run / wrk" % STEADY_REPEAT, "qfetch_steady",
                            "wrk"),
                           ("one-batch run / batch of a %d-batch run" % STEADY_REPEAT, "qfetch",
                            "qfetch_steady")):
            if b10 and x in b10 and y in b10:
                out.append("INFO  10k K=8 TLS wall, qfetch %s: %sx" % (
                    what, fmt_ratio(b10[x]["wall"] / b10[y]["wall"])))
        return out

    def charts(self):
        """PNG charts with gnuplot; returns the file names written."""
        made = []
        cells = [(c, r) for c, r in self.results if c.sid != "a"]
        names = [n for n in CONTENDERS if any(n in r for _, r in cells)]
        dat = os.path.join(self.work, "cells.dat")
        with open(dat, "w") as f:
            for c, r in cells:
                f.write('"%s" ' % c.short + " ".join(
                    "%.0f" % r[n]["rps"] if n in r else "-" for n in names) + "\n")
        dat2 = os.path.join(self.work, "cpu.dat")
        with open(dat2, "w") as f:
            for c, r in cells:
                f.write('"%s" ' % c.short + " ".join(
                    "%.2f" % r[n]["cpu_us"] if n in r else "-" for n in names) + "\n")
        dat3 = os.path.join(self.work, "rss.dat")
        rss_names = []
        with open(dat3, "w") as f:
            rows = []
            for n in (9, 1000, 10000):
                res = self.find("a", 9, 8) if n == 9 else self.find("b", n, 8)
                rows.append((n, res or {}))
            rss_names = [m for m in CONTENDERS
                         if m not in ("wrk", "qfetch_steady", "qfetch_warm", "qfetch_shared")
                         and any(m in r for _, r in rows)]
            for n, r in rows:
                f.write("%d " % n + " ".join(
                    "%.2f" % (r[m]["rss_kb"] / 1024) if m in r else "-" for m in rss_names) + "\n")
        common = ('set terminal pngcairo size 960,440 font "sans,9"\n'
                  'set datafile missing "-"\nset grid ytics\n')
        hist = ("set style data histograms\nset style histogram clustered gap 1\n"
                "set style fill solid 0.85 border -1\nset boxwidth 0.9\n"
                "set xtics rotate by 30 right nomirror\nset logscale y\n"
                "set key outside top center horizontal\n"
                "set xrange [-0.6:%.1f]\n" % (len(cells) - 0.4))
        plots = [
            ("bench_rps.png", dat, "requests per second (log scale; higher is better)",
             "req/s"),
            ("bench_cpu.png", dat2, "CPU microseconds per request, user+sys (log scale; lower "
             "is better)", "us/request"),
        ]
        for png, d, title, ylabel in plots:
            cols = ", ".join("'%s' using %d:xtic(1) title '%s'" % (d, i + 2, LABEL[n])
                             for i, n in enumerate(names))
            script = common + hist + ("set title '%s'\nset ylabel '%s'\nset output '%s'\n"
                                      "plot %s\n" % (title, ylabel, os.path.join(BENCH, png),
                                                     cols))
            if self.gnuplot_run(script):
                made.append(png)
        cols = ", ".join("'%s' using 1:%d with linespoints title '%s'" % (dat3, i + 2, LABEL[n])
                         for i, n in enumerate(rss_names))
        script = common + ("set logscale x\nset xrange [5:20000]\n"
                           "set xlabel 'tickers (K=8, TLS)'\n"
                           "set logscale y\nset ylabel 'peak RSS, MB (log scale)'\n"
                           "set title 'peak RSS against N'\n"
                           "set key top left\nset output '%s'\nplot %s\n" %
                           (os.path.join(BENCH, "bench_rss.png"), cols))
        if self.gnuplot_run(script):
            made.append("bench_rss.png")
        return made

    def gnuplot_run(self, script):
        try:
            r = subprocess.run([self.gnuplot], input=script, text=True, capture_output=True,
                               timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            self.notes.append("gnuplot failed: %s" % e)
            return False
        if r.returncode != 0:
            self.notes.append("gnuplot failed: %s" % r.stderr.strip()[-200:])
            return False
        return True

    @staticmethod
    def revision():
        git = ["git", "-C", ROOT]
        rev = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True)
        # The results themselves do not count: a section written before another's must not
        # make the next one look measured on changed code.
        dirty = subprocess.run(git + ["status", "--porcelain", "--untracked-files=no", "--",
                                      ".", ":!bench/RESULTS.md", ":!bench/*.png"],
                               capture_output=True, text=True)
        if rev.returncode != 0:
            return "unknown (not a git checkout)"
        return rev.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")

    def machine(self):
        model = ""
        try:
            with open("/proc/cpuinfo") as f:
                for ln in f:
                    if ln.startswith("model name"):
                        model = ln.split(":", 1)[1].strip()
                        break
        except OSError:
            pass
        httpx = sh([SYS_PY, "-c", "import httpx; print(httpx.__version__)"])
        rev = getattr(self, "rev", None) or self.revision()
        return [
            ("date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime(
                "%Y-%m-%d %H:%M")),
            ("qfetch", rev),
            ("CPU", "%s, %d cores (nproc)" % (model or platform.processor(), os.cpu_count())),
            ("kernel", platform.release()),
            ("load average (1, 5, 15 min) at the start", self.load_start),
            ("load average at the end", "%.2f, %.2f, %.2f" % os.getloadavg()),
            ("nginx", sh(["nginx", "-v"]).replace("nginx version: ", "")),
            ("curl", sh(["curl", "--version"]).splitlines()[0] if shutil.which("curl") else "-"),
            ("OpenSSL", sh(["openssl", "version"])),
            ("Python", sh([SYS_PY, "--version"]) + (", httpx " + httpx if httpx else "")),
            ("wrk", (sh(["wrk", "-v"]).splitlines() or ["-"])[0] if "wrk" in self.tools else "-"),
            ("valgrind", sh(["valgrind", "--version"]) if self.valgrind else "-"),
            ("compiler", sh(["cc", "--version"]).splitlines()[0]),
        ]

    def write_results(self, table, targets, charts):
        ng = self.ng
        tls = "https://127.0.0.1:%d" % ng.tls_port
        lines = ["# qfetch benchmark results", "",
                 "Written by `make bench` (bench/run.py); rerun it to refresh this file and the "
                 "charts. All numbers come from one run on the machine below, so only the ratios "
                 "(qfetch / contender, measured in the same run) are meant to travel.", "",
                 "## Machine", ""]
        lines += ["- %s: %s" % kv for kv in self.machine()]
        lines += ["", "## Method", "",
                  "- Server: nginx, 1 worker, on 127.0.0.1 (same 2 cores as the clients), TLS 1.3 "
                  "with the ECDSA P-256 test certificate (`make certs`), HTTP/1.1 keep-alive with "
                  "`keepalive_requests 1000000`, open-file cache on, access log off; a plain-HTTP "
                  "port; and `/slow/...`, which answers after %d ms (`echo_sleep` + `echo_exec` "
                  "from Debian's libnginx-mod-http-echo)." % DELAY_MS,
                  "- Bodies: %s; %d distinct bodies, mean %.0f bytes; prices vary per symbol "
                  "(tests/server.py `price_for`)." % (self.data.source, len(self.data.size),
                                                     self.data.mean_size),
                  "- Every run is checked: qfetch, libcurl multi and Python print every price, "
                  "compared with `Decimal(float).quantize(Decimal('0.01'))`; curl must exit 0 and "
                  "report (`-w`) status 200 and the exact body size for every URL; wrk must "
                  "report no non-2xx responses and no socket errors.",
                  "- curl 7.88 shows its parallel progress meter despite `-s` when fed `-K`, hence "
                  "`--no-progress-meter`.",
                  "- Contenders run interleaved: within each run every contender runs once, and "
                  "the order rotates from run to run. One unmeasured warm-up pass (qfetch over "
                  "all symbols) precedes the runs. Each cell: %d runs; scenario a: %d; the 10k "
                  "K=8 TLS cell: %d, but %d for the Python original (16 s a run); medians with "
                  "[min-max]." % (self.args.runs or 5, 4 * (self.args.runs or 5),
                                  4 * (self.args.runs or 5), self.args.runs or 5),
                  "- wall: from fork to reap in `build/bench/measure` (process start-up included); "
                  "CPU: user+sys and peak RSS from its `wait4` rusage (the client only, not nginx; "
                  "forked from that small program so the RSS a parent had before exec does not "
                  "leak into ru_maxrss); "
                  "req/s = N / median wall; CPU us/r = median CPU / N.",
                  "- wrk cannot stop after N requests: it runs %d s with a Lua script cycling the "
                  "same N paths; its wall is N / (its req/s) and its CPU is scaled to N requests "
                  "(connection set-up and process start-up are therefore not in wrk's numbers). "
                  "It parses no JSON." % WRK_SECONDS,
                  "- `qfetch x%d/run` (10k, K=8 and 64): one qfetch process fetches the N "
                  "symbols %d times over the same K connections (`--repeat %d`), a run about as "
                  "long as wrk's; its wall and CPU are divided by %d. Its start-up, TLS context and "
                  "handshakes then weigh a sixth as much as in the `qfetch` row, near wrk's rate, "
                  "which leaves them out; the INFO lines under the targets compare the three. Not "
                  "a target row: the targets use `qfetch`." % ((STEADY_REPEAT,) * 4),
                  "- Same requests: curl, the libcurl program and wrk send qfetch's own header "
                  "lines (read off a local socket at start-up; listed under Commands), so nginx "
                  "parses the same bytes for every contender. Yahoo wants a browser's User-Agent; "
                  "with only Host, as wrk sends by default, nginx served wrk about 4% faster. The "
                  "Python original sends httpx's defaults, unchanged.",
                  "- qfetch runs with `--no-session-cache`: curl keeps no TLS sessions across "
                  "processes, so every contender starts cold. The `qfetch+sessions` row in (a) "
                  "uses a session file primed before the runs (TLS 1.3 resumption).",
                  "- `build/qfetch` links OpenSSL's static libraries (glibc shared; see "
                  "docs/build.md); curl, libcurl and wrk use Debian's shared libssl3. The "
                  "`qfetch (shared)` row in (a) is the same code linked against the shared "
                  "libraries (`build/bench/qfetch-shared`), to show what the linking alone buys.",
                  "- The Python original ignores K (httpx pools up to 100 connections), so it "
                  "runs once per N and protocol, in the K=8 rows (K=64 for scenario c).",
                  "- `conns`: connections opened: qfetch `--stats`, curl's `%{num_connects}` and "
                  "the libcurl program's `CURLINFO_NUM_CONNECTS`, summed over transfers. For "
                  "qfetch `8/7r` reads: 8 connected, 7 of them resumed a TLS session.",
                  "- Instructions: `valgrind --tool=callgrind`, whole process, N=1,000, K=8, TLS; "
                  "system calls: `perf trace -s` (or `strace -c -f` without perf), same workload, "
                  "the top six per request after the total.",
                  "", "## Commands", "", "```",
                  "build/qfetch -t - -u '%s/v8/finance/chart/{}' -c K --cacert ca.pem -f csv "
                  "--stats < symbols" % tls,
                  "curl --parallel --parallel-max K -K urls.conf --cacert ca.pem -sS "
                  "--no-progress-meter -w '%s' -H HEADER..." % CURL_WRITE_OUT,
                  "    # urls.conf: url = \"https://...\" and output = \"/dev/null\" per URL",
                  "build/bench/curl_multi '%s/v8/finance/chart/{}' K ca.pem HEADER... < symbols"
                  % tls,
                  "SSL_CERT_FILE=ca.pem /usr/bin/python3 async_http.py -t SYM...   "
                  "# seed copy, URL constant replaced",
                  "wrk -t1 -cK -d%ds --timeout 10s -s cycle.lua %s/ paths.txt" % (WRK_SECONDS,
                                                                                 tls),
                  "    # HEADER...: qfetch's own request header lines (Host aside), which",
                  "    # cycle.lua also adds to every request:"] + [
                  "    #   " + ln for ln in self.headers] + [
                  "valgrind --tool=callgrind <command>",
                  "perf trace -s <command>      # or: strace -c -f <command>",
                  "```", "", "## Results", "",
                  "Ratios are qfetch / contender from the same run (below 1: qfetch is faster, "
                  "uses less CPU or memory).", "", "```", table, "```", "", "## Targets (issue 4)",
                  "", "```"] + targets + ["```", ""]
        path = os.path.join(BENCH, "RESULTS.md")
        old = ""
        if os.path.exists(path):
            with open(path) as f:
                old = f.read()
        for _, heading, _ in SECTIONS:
            span = section_span(old, heading)
            if self.sections.get(heading):
                lines += self.sections[heading] + [""]
            elif span:  # not measured this time: the last figures stay, with their own date
                lines += old[span[0]:span[1]].rstrip("\n").split("\n") + [""]
        if charts:
            lines += ["## Charts", ""]
            for png in charts:
                lines.append("![%s](%s)" % (png[:-4].replace("_", " "), png))
                lines.append("")
        if self.parse_txt:
            lines += ["## Parser microbenchmark (build/bench/parse_bench)", "",
                      "One response through `qf_http_feed` (16 KiB pieces), then `qf_json_extract` "
                      "and `qf_price_format`, repeated; MB/s counts response bytes (body bytes "
                      "for the json line).", "", "```", self.parse_txt, "```", ""]
        if self.notes:
            lines += ["## Notes", ""] + ["- " + n for n in self.notes] + [""]
        if self.wrong:
            lines += ["## Wrong answers", ""] + ["- " + w for w in self.wrong] + [""]
        lines.append("Measuring took %.0f s." % self.elapsed)
        kept = "\n" + old[old.index(KEPT_MARK):] if KEPT_MARK in old else ""
        with open(path, "w") as f:
            f.write("\n".join(lines) + "\n" + kept)
        log("bench: wrote bench/RESULTS.md%s" % (" and " + ", ".join(charts) if charts else ""))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--quick", action="store_true", help="seconds-long subset, no files written")
    ap.add_argument("--runs", type=int, default=0, help="runs per cell (default 5, quick 2)")
    ap.add_argument("--no-callgrind", action="store_true")
    ap.add_argument("--no-charts", action="store_true")
    ap.add_argument("--no-distance", action="store_true",
                    help="leave out bench/distance.py (RESULTS.md keeps its last section)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    ap.add_argument("--only", default="", metavar="TEXT",
                    help="only the cells whose short name contains TEXT (e.g. '10k K8'); "
                         "prints the table and targets, writes no files")
    ap.add_argument("--serve", type=int, default=0, metavar="SECONDS",
                    help="only start nginx with the bodies and wait (for profiling by hand)")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    sys.exit(Bench(args).main())


if __name__ == "__main__":
    main()
