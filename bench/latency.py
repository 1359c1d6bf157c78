#!/usr/bin/python3
"""Cold against warm runs through a simulated distance (issue 5): the seed's 9 tickers from a
local nginx (TLS 1.3, early data on) behind bench/relay.py at RTT ms, for curl --parallel
(cold), qfetch cold (no session cache) and qfetch warm (cached sessions, --early-data,
--tcp-fastopen). Prints medians, round trips per run and the ratio against curl.

    bench/latency.py --build build [--rtt-ms 50] [--runs 5]
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import relay  # noqa: E402
from server import chart_body, price_for  # noqa: E402

TICKERS = ["VTSAX", "VTIAX", "IJS", "VSS", "AAPL", "ORCL", "GOOG", "MSFT", "FB"]


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def start_nginx(work, certs, h2=False, tickers=TICKERS):
    """nginx (TLS 1.3, early data on) serving the tickers' bodies on 127.0.0.1: (proc, port,
    h2_port), h2_port a second listener, for HTTP/2, when h2, else None."""
    root = os.path.join(work, "root", "v8", "finance", "chart")
    os.makedirs(root)
    for t in tickers:
        with open(os.path.join(root, t), "wb") as f:
            f.write(chart_body(t, repr(price_for(t))))
    port = free_port()
    h2_port = free_port() if h2 else None
    servers = "".join(f"""    server {{
        listen 127.0.0.1:{p} ssl{flag};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_early_data on;
        ssl_certificate {certs}/server.pem;
        ssl_certificate_key {certs}/server.key;
        root {work}/root;
    }}
""" for p, flag in ((port, ""), (h2_port, " http2")) if p)
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = f"""{user}daemon off;
worker_processes 1;
pid {work}/nginx.pid;
error_log {work}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    default_type application/json;
    access_log off;
    client_body_temp_path {work}/cb; proxy_temp_path {work}/pt; fastcgi_temp_path {work}/ft;
    uwsgi_temp_path {work}/ut; scgi_temp_path {work}/st;
    keepalive_requests 100000;
{servers}}}
"""
    path = os.path.join(work, "nginx.conf")
    with open(path, "w") as f:
        f.write(conf)
    proc = subprocess.Popen(["nginx", "-e", os.path.join(work, "error.log"), "-c", path,
                             "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    try:
        while time.monotonic() < deadline:
            try:
                for p in (port, h2_port or port):
                    socket.create_connection(("127.0.0.1", p), timeout=0.5).close()
                return proc, port, h2_port
            except OSError:
                time.sleep(0.05)
    except BaseException:  # a signal while waiting: no nginx left behind
        proc.terminate()  # its master stops the workers; a kill would orphan them
        proc.wait(5)
        raise
    proc.kill()
    raise SystemExit("latency bench: nginx did not start")


def timed(cmd, env=None):
    t = time.perf_counter()
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, timeout=60)
    return (time.perf_counter() - t) * 1000, p


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--rtt-ms", type=float, default=50)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)  # unwinds: nginx stops, the sysctl goes back
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    qfetch = os.path.abspath(os.path.join(a.build, "qfetch"))
    certs = os.path.abspath(os.path.join(a.build, "test", "certs"))
    ca = os.path.join(certs, "ca.pem")
    for need in (qfetch, ca):
        if not os.path.exists(need):
            raise SystemExit("latency bench: %s missing (make all certs)" % need)
    for tool in ("curl", "nginx"):
        if shutil.which(tool) is None:
            raise SystemExit("latency bench: %s missing" % tool)
    # Fast Open needs the server side enabled too (flag 2; the client's, 1, is the default).
    # The setting is the whole machine's: it goes back however the run ends, signals included.
    with relay.fastopen_sysctl(3) as tfo:
        if not tfo:
            print("latency bench: cannot set net.ipv4.tcp_fastopen (not root?): warm runs "
                  "go without Fast Open", file=sys.stderr)
        return run(a, qfetch, certs, ca)


def run(a, qfetch, certs, ca):
    work = tempfile.mkdtemp(prefix="qfetch-lat-bench-")
    ng = stop = None
    try:
        ng, port, _ = start_nginx(work, certs)
        rport, stop = relay.spawn_relay(port, a.rtt_ms)
        measured = relay.measure_rtt(a.rtt_ms, start=relay.spawn_relay)
        url = "https://localhost:%d/v8/finance/chart/{}" % rport
        cache = os.path.join(work, "sessions")
        n = str(len(TICKERS))
        q_cold = [qfetch, "-u", url, "--cacert", ca, "-c", n, "--no-session-cache",
                  "-t"] + TICKERS
        q_warm = [qfetch, "-u", url, "--cacert", ca, "-c", n, "--session-cache", cache,
                  "--early-data", "--tcp-fastopen", "-t"] + TICKERS
        cfg = os.path.join(work, "curl.cfg")
        with open(cfg, "w") as f:
            for t in TICKERS:
                f.write('url = "%s"\noutput = "/dev/null"\n' % url.format(t))
        c_cold = ["curl", "-s", "--parallel", "--parallel-max", n, "--parallel-immediate",
                  "--cacert", ca, "-K", cfg]
        timed(q_warm)  # primes the session cache and the kernel's TFO cookie
        res = {"curl cold": [], "qfetch cold": [], "qfetch warm": []}
        for _ in range(a.runs):
            for name, cmd in (("curl cold", c_cold), ("qfetch cold", q_cold),
                              ("qfetch warm", q_warm)):
                ms, p = timed(cmd)
                ok = p.returncode in (0, 1) if name != "curl cold" else p.returncode == 0
                if not ok:
                    raise SystemExit("latency bench: %s failed (%d): %s"
                                     % (name, p.returncode, p.stderr[-300:]))
                if name.startswith("qfetch") and p.stdout.count(b"USD") < len(TICKERS) - 1:
                    raise SystemExit("latency bench: %s gave wrong answers" % name)
                res[name].append(ms)
                if name == "qfetch warm":  # next warm run starts from fresh tickets again
                    pass
    finally:
        if stop:
            stop()
        if ng:
            ng.send_signal(signal.SIGQUIT)
            ng.wait(5)
        shutil.rmtree(work, ignore_errors=True)
    print("relay: configured RTT %.0f ms, measured %.1f ms (accuracy %+.1f%%)"
          % (a.rtt_ms, measured, 100 * (measured - a.rtt_ms) / a.rtt_ms))
    print("%-12s %10s %10s %10s %8s" % ("contender", "median ms", "min", "max", "RTTs"))
    med = {}
    for name, v in res.items():
        med[name] = statistics.median(v)
        print("%-12s %10.1f %10.1f %10.1f %8.2f" % (name, med[name], min(v), max(v),
                                                    med[name] / measured))
    saved = (med["qfetch cold"] - med["qfetch warm"]) / measured
    ratio = med["qfetch warm"] / med["curl cold"]
    print("warm run saves %.2f round trips over a cold one; qfetch warm / curl cold = %.2fx "
          "(target < 0.60: %s)" % (saved, ratio, "PASS" if ratio < 0.6 else "MISS"))
    print("qfetch cold / curl cold = %.2fx" % (med["qfetch cold"] / med["curl cold"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
