#!/usr/bin/python3
"""`make test` driver: every cmocka binary, the integration suite and the reliability suite, for
the normal build and optionally the ASan/UBSan build. Streams each suite's output and ends with
exactly one line `N passed, M failed` summing all suites; exit status 1 if M > 0 or any suite
errored. The reliability suite's slow tests (--load: 100k tickers, RSS, valgrind) run for the
normal build only, and not with --no-valgrind (valgrind cannot run a sanitizer build).

    run.py --build build [--asan-build build/asan] [--no-valgrind] [--filter SUBSTR]
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


def cmocka_counts(text):
    """(passed, failed) from cmocka's summary lines, summed over groups; None if absent."""
    passed = [int(n) for n in re.findall(r"^\[  PASSED  \] (\d+) test", text, re.M)]
    failed = [int(n) for n in re.findall(r"^\[  FAILED  \] (\d+) test", text, re.M)]
    if not passed and not failed:
        m = re.findall(r"^(\d+) passed, (\d+) failed\s*$", text, re.M)
        if m:
            return int(m[-1][0]), int(m[-1][1])
        return None
    return sum(passed), sum(failed)


def run_unit(build, env, label, results):
    bins = sorted(b for b in glob.glob(os.path.join(build, "test", "test_*"))
                  if os.path.isfile(b) and os.access(b, os.X_OK) and "." not in os.path.basename(b))
    if not bins:
        print("run.py: no unit test binaries in %s/test" % build, flush=True)
    for b in bins:
        name = "%s %s" % (label, os.path.basename(b))
        rc, out = stream([b], env, UNIT_TIMEOUT_S)
        counts = cmocka_counts(out)
        if counts is None:
            # A crash, a hang or a binary that printed no summary counts as one failure.
            results.append((name, 0, 1, True))
            print("run.py: %s: no test counts (exit %s): 1 failure" % (name, rc), flush=True)
            continue
        p, f = counts
        errored = rc != 0 and f == 0
        if errored:
            print("run.py: %s exited %s with no failed test reported: 1 failure" % (name, rc),
                  flush=True)
            f = 1
        results.append((name, p, f, errored))


def run_integration(build, env, label, results, valgrind, certs, filt, suite="integration"):
    """integration.py (valgrind: --valgrind) or reliability.py (valgrind: --load)."""
    cmd = [PY, os.path.join(HERE, suite + ".py"), "--build", build]
    if certs:
        cmd += ["--certs", certs]
    if valgrind:
        cmd.append("--valgrind" if suite == "integration" else "--load")
    if filt:
        cmd += ["--filter", filt]
    timeout = INTEGRATION_TIMEOUT_S if suite == "integration" else RELIABILITY_TIMEOUT_S
    rc, out = stream(cmd, env, timeout)
    m = re.findall(r"^(\d+) passed, (\d+) failed\s*$", out, re.M)
    name = "%s %s" % (label, suite)
    if not m:
        results.append((name, 0, 1, True))
        print("run.py: %s: no summary line (exit %s): 1 failure" % (name, rc), flush=True)
        return
    p, f = int(m[-1][0]), int(m[-1][1])
    errored = rc not in (0, 1) or (rc == 1 and f == 0)
    if errored and f == 0:
        f = 1
    results.append((name, p, f, errored))


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
    results.append(("fuzz (%ss per target)" % secs, ok, bad, rc != 0 and not lines))


def run_bench_quick(env, results):
    """`make bench-quick`: the benchmark harness end to end on a small workload, so it cannot
    rot; one test, failed when any contender gives a wrong answer or the harness breaks."""
    rc, out = stream(["make", "--no-print-directory", "-C", ROOT, "bench-quick"], env,
                     BENCH_TIMEOUT_S)
    results.append(("bench-quick", 1 if rc == 0 else 0, 0 if rc == 0 else 1, False))


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
    ap.add_argument("--filter", default="", help="passed to integration.py and reliability.py")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    t0 = time.monotonic()
    results = []

    # The sanitizer options are inert for a build without sanitizers, so every suite gets them.
    env = dict(os.environ, QF_BUILD=build, **SAN_ENV)
    run_unit(build, env, os.path.relpath(build, ROOT), results)
    run_integration(build, env, os.path.relpath(build, ROOT), results,
                    not args.no_valgrind, None, args.filter)
    run_integration(build, env, os.path.relpath(build, ROOT), results,
                    not args.no_valgrind, None, args.filter, suite="reliability")
    for suite in ("latency", "proxy", "examples"):
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
        for suite in ("reliability", "latency", "proxy", "examples"):
            run_integration(asan, aenv, label, results, False, certs, args.filter, suite=suite)

    print("== summary (%.0f s)" % (time.monotonic() - t0))
    for name, p, f, errored in results:
        print("   %-32s %4d passed, %d failed%s" % (name, p, f, "  (suite errored)" if errored
                                                    else ""))
    passed = sum(r[1] for r in results)
    failed = sum(r[2] for r in results)
    print("%d passed, %d failed" % (passed, failed), flush=True)
    return 1 if failed or any(r[3] for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
