#!/usr/bin/python3
"""`make demo`: the seed's example run, against tests/server.py --demo instead of Yahoo.

    demo.py --build build

Starts the demo server on 127.0.0.1 (port 443 when it can bind it, so the default Yahoo URL is
used unchanged; otherwise an ephemeral port named in -u), runs
    qfetch -t VTSAX VTIAX IJS VSS AAPL ORCL GOOG MSFT FB \
           --resolve query1.finance.yahoo.com:PORT:127.0.0.1 --cacert CA
prints its table, stops the server. FB fails on purpose: Yahoo answers it 404 (delisted).
"""
import argparse
import os
import re
import select
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
TICKERS = ["VTSAX", "VTIAX", "IJS", "VSS", "AAPL", "ORCL", "GOOG", "MSFT", "FB"]


def start_server(certs, port):
    p = subprocess.Popen([PY, os.path.join(HERE, "server.py"), "--demo", "--watch-stdin",
                          "--cert", os.path.join(certs, "server.pem"),
                          "--key", os.path.join(certs, "server.key"), "--port", str(port)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    buf = b""
    while time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not r:
            break
        chunk = os.read(p.stdout.fileno(), 4096)
        if not chunk:
            break
        buf += chunk
        m = re.search(rb"PORT (\d+)\n", buf)
        if m:
            return p, int(m.group(1))
    stop(p)
    return None, None


def stop(p):
    if p.poll() is None:
        p.terminate()
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(5)


def main():
    ap = argparse.ArgumentParser(description="qfetch demo against the local demo server")
    ap.add_argument("--build", required=True)
    args = ap.parse_args()
    qfetch = os.path.join(args.build, "qfetch")
    certs = os.path.join(args.build, "test", "certs")
    if not os.access(qfetch, os.X_OK) or not os.path.isfile(os.path.join(certs, "ca.pem")):
        print("demo: %s or %s/ca.pem missing (make all certs)" % (qfetch, certs), file=sys.stderr)
        return 1

    srv, port = (None, None)
    if os.geteuid() == 0:
        srv, port = start_server(certs, 443)
    if srv is None:
        srv, port = start_server(certs, 0)
    if srv is None:
        print("demo: the demo server did not start", file=sys.stderr)
        return 1
    try:
        cmd = [qfetch, "-t"] + TICKERS + [
            "--resolve", "query1.finance.yahoo.com:%d:127.0.0.1" % port,
            "--cacert", os.path.join(certs, "ca.pem"),
            # the test certificate names Yahoo's host: keep its sessions out of the user's cache
            "--no-session-cache"]
        if port != 443:
            # --resolve applies only to a matching port (as curl's), so name it in the URL
            cmd += ["-u", "https://query1.finance.yahoo.com:%d/v8/finance/chart/{}" % port]
        print("$ " + " ".join(cmd[:1] + [os.path.basename(c) if c.endswith(".pem") else c
                                          for c in cmd[1:]]), flush=True)
        try:
            p = subprocess.run(cmd, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            print("demo: qfetch did not finish within 60 s", file=sys.stderr)
            return 1
        out, err = p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")
        sys.stdout.write(out)
        if err.strip():
            sys.stderr.write(err)
        print("(FB fails on purpose: Yahoo answers delisted symbols with HTTP 404.)")
        ok = all(re.search(r"^\s*%s\b.*\d+\.\d\d" % t, out, re.M) for t in TICKERS[:-1])
        if p.returncode not in (0, 1) or not ok:
            print("demo: qfetch exited %d and not every seed ticker got a price"
                  % p.returncode, file=sys.stderr)
            return 1
        return 0
    finally:
        stop(srv)


if __name__ == "__main__":
    sys.exit(main())
