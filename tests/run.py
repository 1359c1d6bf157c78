#!/usr/bin/python3
"""`make test` driver: every cmocka binary and every Python suite (cli_fetch.py,
faults_and_limits.py, sessions_and_pipelining.py, examples_and_install.py) for the normal build
and optionally the ASan/UBSan build. Streams each suite's output and ends with exactly one line
`N passed, M failed, K skipped` summing all suites; exit status 1 if M > 0 or any suite errored.
faults_and_limits.py's slow tests (--load: 100k tickers, RSS, valgrind) run for the normal build
only, and not with --no-valgrind (valgrind cannot run a sanitizer build).
--unit-only (`make check`) runs the cmocka binaries alone; --fresh-check (`make test`) first
runs .ci/fresh-check, a clean clone's first `make demo`, before any other suite.

    run.py --build build [--asan-build build/asan] [--no-valgrind] [--filter SUBSTR]
           [--unit-only] [--fresh-check]
"""
import argparse
import glob
import os
import re
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
UNIT_TIMEOUT_S = 300
INTEGRATION_TIMEOUT_S = 900
RELIABILITY_TIMEOUT_S = 900
SAN_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=1",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


BENCH_TIMEOUT_S = 600
FRESH_TIMEOUT_S = 1200
# A suite's closing line: `N passed, M failed`, optionally `, K skipped`.
SUMMARY_RE = re.compile(r"^(\d+) passed, (\d+) failed(?:, (\d+) skipped)?\s*$", re.M)


def stream(cmd, env, timeout):
    """Runs cmd (cwd = repo root), echoing its merged output; returns (rc or None, text)."""
    print("== %s" % " ".join(cmd), flush=True)
    try:
        p = subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except OSError as e:
        print("run.py: cannot start %s: %s" % (cmd[0], e), flush=True)
        return None, ""
    lines = []

    def pump():
        for raw in iter(p.stdout.readline, b""):
            line = raw.decode(errors="replace")
            lines.append(line)
            sys.stdout.write(line)
            sys.stdout.flush()
    t = threading.Thread(target=pump, daemon=True)
    t.start()
    try:
        rc = p.wait(timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait(10)
        print("run.py: %s killed after %d s" % (cmd[0], timeout), flush=True)
        rc = None
    t.join(10)
    return rc, "".join(lines)


def summary_counts(text):
    """(passed, failed, skipped) from the last closing line in text; None if there is none."""
    m = SUMMARY_RE.findall(text)
    if not m:
        return None
    return int(m[-1][0]), int(m[-1][1]), int(m[-1][2] or 0)


def cmocka_counts(text):
    """(passed, failed, skipped) from cmocka's summary lines, summed over groups; None if absent.
    cmocka prints `[  SKIPPED ] N test(s), listed below:` only when a test called skip()."""
    def total(word):
        return sum(int(n) for n in re.findall(r"^\[  %s *\] (\d+) test" % word, text, re.M))
    if not re.search(r"^\[  (PASSED|FAILED)  \] \d+ test", text, re.M):
        return summary_counts(text)
    return total("PASSED"), total("FAILED"), total("SKIPPED")


def run_unit(build, env, label, results):
    bins = sorted(b for b in glob.glob(os.path.join(build, "test", "test_*"))
                  if os.path.isfile(b) and os.access(b, os.X_OK) and "." not in os.path.basename(b))
    if not bins:
        print("run.py: no unit test binaries in %s/test" % build, flush=True)
    for b in bins:
        name = "%s %s" % (label, os.path.basename(b))
        rc, out = stream([b], env, UNIT_TIMEOUT_S)
        record(name, rc, cmocka_counts(out), results)


def record(name, rc, counts, results):
    """Appends one suite's (name, passed, failed, skipped, errored). A crash, a hang or no
    summary (counts None), or a failing exit status with no failed test, is one failure."""
    if counts is None:
        results.append((name, 0, 1, 0, True))
        print("run.py: %s: no test counts (exit %s): 1 failure" % (name, rc), flush=True)
        return
    p, f, s = counts
    errored = rc is None or rc < 0 or (rc != 0 and f == 0)
    if errored and f == 0:
        print("run.py: %s exited %s with no failed test reported: 1 failure" % (name, rc),
              flush=True)
        f = 1
    results.append((name, p, f, s, errored))


def run_integration(build, env, label, results, valgrind, certs, filt, suite="cli_fetch"):
    """cli_fetch.py (valgrind: --valgrind) or faults_and_limits.py (valgrind: --load)."""
    cmd = [PY, os.path.join(HERE, suite + ".py"), "--build", build]
    if certs:
        cmd += ["--certs", certs]
    if valgrind:
        cmd.append("--valgrind" if suite == "cli_fetch" else "--load")
    if filt:
        cmd += ["--filter", filt]
    timeout = INTEGRATION_TIMEOUT_S if suite == "cli_fetch" else RELIABILITY_TIMEOUT_S
    rc, out = stream(cmd, env, timeout)
    record("%s %s" % (label, suite), rc, summary_counts(out), results)


def run_fresh_check(results):
    """.ci/fresh-check: removes the build packages (llhttp, jsmn, c-ares, nghttp2), runs a
    clean clone's first `make demo` (which installs them again). It runs before every other
    suite and alone, so no build of this run can see /usr/share/llhttp half gone."""
    rc, out = stream([os.path.join(ROOT, ".ci", "fresh-check")], dict(os.environ),
                     FRESH_TIMEOUT_S)
    record("fresh-check", rc, summary_counts(out), results)


def run_fuzz(env, results):
    """`make fuzz`: each libFuzzer target for FUZZ_SECONDS (60 unless set) under ASan+UBSan;
    one test per target, failed by any crash, leak or timeout."""
    secs = os.environ.get("FUZZ_SECONDS", "60")
    rc, out = stream(["make", "--no-print-directory", "-C", ROOT, "fuzz", "FUZZ_SECONDS=" + secs],
                     env, BENCH_TIMEOUT_S)
    lines = re.findall(r"^(fuzz_\w+): \d+ execs, .*?(\d+) crashes", out, re.M)
    ok = sum(1 for _, n in lines if n == "0")
    bad = len(lines) - ok
    if rc != 0 and bad == 0:
        bad = 1
    results.append(("fuzz (%ss per target)" % secs, ok, bad, 0, rc != 0 and not lines))


def run_bench_quick(env, results):
    """`make bench-quick`: the benchmark harness end to end on a small workload, so it cannot
    rot; one test, failed when any contender gives a wrong answer or the harness breaks."""
    rc, out = stream(["make", "--no-print-directory", "-C", ROOT, "bench-quick"], env,
                     BENCH_TIMEOUT_S)
    results.append(("bench-quick", 1 if rc == 0 else 0, 0 if rc == 0 else 1, 0, False))


def certs_for(build, fallback):
    own = os.path.join(build, "test", "certs")
    if os.path.isfile(os.path.join(own, "ca.pem")):
        return None, build
    if fallback and os.path.isfile(os.path.join(fallback, "test", "certs", "ca.pem")):
        return os.path.join(fallback, "test", "certs"), fallback
    return None, build


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--build", required=True)
    ap.add_argument("--asan-build")
    ap.add_argument("--clang-build", help="a clang build whose cmocka binaries run too")
    ap.add_argument("--no-valgrind", action="store_true")
    ap.add_argument("--filter", default="", help="passed to the Python suites")
    ap.add_argument("--unit-only", action="store_true", help="the cmocka binaries alone")
    ap.add_argument("--fresh-check", action="store_true", help="first, .ci/fresh-check")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    t0 = time.monotonic()
    results = []

    if args.fresh_check:
        run_fresh_check(results)
    # The sanitizer options are inert for a build without sanitizers, so every suite gets them.
    env = dict(os.environ, QF_BUILD=build, **SAN_ENV)
    run_unit(build, env, os.path.relpath(build, ROOT), results)
    if args.unit_only:
        return summarize(results, t0)
    run_integration(build, env, os.path.relpath(build, ROOT), results,
                    not args.no_valgrind, None, args.filter)
    run_integration(build, env, os.path.relpath(build, ROOT), results,
                    not args.no_valgrind, None, args.filter, suite="faults_and_limits")
    for suite in ("sessions_and_pipelining", "examples_and_install", "relaycheck", "tls_hello",
                  "proxy", "http2"):
        run_integration(build, env, os.path.relpath(build, ROOT), results, False, None,
                        args.filter, suite=suite)

    if args.clang_build:
        cb = os.path.abspath(args.clang_build)
        run_unit(cb, dict(env, QF_BUILD=build), os.path.relpath(cb, ROOT), results)
    if not args.no_valgrind:
        run_fuzz(env, results)
        run_bench_quick(env, results)

    if args.asan_build:
        asan = os.path.abspath(args.asan_build)
        certs, certs_build = certs_for(asan, build)
        aenv = dict(os.environ, QF_BUILD=certs_build, **SAN_ENV)
        label = os.path.relpath(asan, ROOT)
        run_unit(asan, aenv, label, results)
        run_integration(asan, aenv, label, results, False, certs, args.filter)
        for suite in ("faults_and_limits", "sessions_and_pipelining",
                      "examples_and_install", "tls_hello", "proxy", "http2"):
            run_integration(asan, aenv, label, results, False, certs, args.filter, suite=suite)

    return summarize(results, t0)


def summarize(results, t0):
    """One row per suite, then the closing line CI reads; the exit status."""
    print("== summary (%.0f s)" % (time.monotonic() - t0))
    for name, p, f, s, errored in results:
        print("   %-36s %4d passed, %d failed, %d skipped%s"
              % (name, p, f, s, "  (suite errored)" if errored else ""))
    passed, failed, skipped = (sum(r[i] for r in results) for i in (1, 2, 3))
    print("%d passed, %d failed, %d skipped" % (passed, failed, skipped), flush=True)
    return 1 if failed or any(r[4] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
