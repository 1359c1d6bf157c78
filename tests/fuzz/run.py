#!/usr/bin/python3
"""`make fuzz` driver: runs each libFuzzer target in turn (never in parallel) for a bounded
time on a fresh working copy of its corpus, and prints one line per target:

    fuzz_response: 123456 execs, cov 789, ft 1234, 0 crashes

Exit status 1 when any target crashed, leaked, timed out or did not report its statistics.

    run.py --build build --seconds 60 [--runs N] fuzz_response fuzz_args

With --runs, a target also stops after N executions (whichever comes first).

The response target also reads, without copying them into the repository, the captures in
$QF_FIXTURES or ../shared/fixtures/yahoo wrapped as HTTP responses under build/fuzz/.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.dont_write_bytecode = True  # nothing written into tests/fuzz/
sys.path.insert(0, HERE)
import corpus  # noqa: E402

# name -> (corpus and dictionary name, -max_len)
TARGETS = {"fuzz_response": ("response", 65536), "fuzz_args": ("args", 4096)}
ARTIFACT_PREFIXES = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")
# One input's allocations are small and short-lived: 8 MiB of quarantine still holds every
# freed block of an execution, and 8 frames of allocation stack name the caller. A larger
# quarantine and full stacks made fuzz_args a third slower (page faults and unwinding).
SAN_ENV = {"ASAN_OPTIONS": "abort_on_error=1:detect_leaks=1:quarantine_size_mb=8:"
                           "malloc_context_size=8",
           "UBSAN_OPTIONS": "halt_on_error=1:print_stacktrace=1"}


def fixtures_dir():
    d = os.environ.get("QF_FIXTURES") or os.path.join(ROOT, "..", "shared", "fixtures", "yahoo")
    return d if os.path.isdir(d) else None


def artifacts(d, name):
    prefixes = tuple(name + "-" + p for p in ARTIFACT_PREFIXES)
    return {f for f in os.listdir(d) if f.startswith(prefixes)}


def run_target(name, build, seconds, runs=0):
    short, max_len = TARGETS[name]
    fdir = os.path.join(build, "fuzz")
    work = os.path.join(fdir, "corpus", short)
    art = os.path.join(fdir, "artifacts")
    log = os.path.join(fdir, name + ".log")
    if os.path.isdir(work):
        shutil.rmtree(work)
    shutil.copytree(os.path.join(HERE, "corpus", short), work)
    os.makedirs(art, exist_ok=True)
    dirs = [work]
    fx = fixtures_dir() if short == "response" else None
    if fx is not None:
        fxdir = os.path.join(fdir, "fixtures-corpus")
        seeds, skipped = corpus.fixture_seeds(fx, max_len)
        corpus.write_dir(fxdir, seeds)
        dirs.append(fxdir)
        if skipped:
            print("%s: left out (over -max_len=%d): %s" % (name, max_len, ", ".join(skipped)),
                  flush=True)

    cmd = [os.path.join(fdir, name)] + dirs + [
        "-max_total_time=%d" % seconds, "-max_len=%d" % max_len, "-timeout=10",
        "-runs=%d" % (runs if runs > 0 else -1),
        "-rss_limit_mb=2048", "-print_final_stats=1",
        "-artifact_prefix=" + os.path.join(art, name + "-"),
        "-dict=" + os.path.join(HERE, short + ".dict")]
    before = artifacts(art, name)
    env = dict(os.environ, **SAN_ENV)
    with open(log, "wb") as f:
        rc = subprocess.call(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=f,
                             stderr=subprocess.STDOUT)
    text = open(log, errors="replace").read()
    new = sorted(artifacts(art, name) - before)
    execs = re.findall(r"^stat::number_of_executed_units:\s*(\d+)", text, re.M)
    cov = re.findall(r"\bcov: (\d+) ft: (\d+)", text)
    ok = rc == 0 and not new and execs and cov
    crashes = len(new) if new or rc == 0 else 1  # a failure that left no input still counts
    print("%s: %s execs, cov %s, ft %s, %d crashes" % (
        name, execs[-1] if execs else "?", cov[-1][0] if cov else "?",
        cov[-1][1] if cov else "?", crashes), flush=True)
    if not ok:
        print("%s: exit %d; log %s" % (name, rc, log), flush=True)
        for a in new:
            print("%s: artifact %s" % (name, os.path.join(art, a)), flush=True)
        tail = [l for l in text.splitlines() if l.strip()][-40:]
        print("\n".join("  | " + l for l in tail), flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", default="build")
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=0, help="stop after N executions (0: no limit)")
    ap.add_argument("targets", nargs="+", choices=sorted(TARGETS))
    a = ap.parse_args()
    build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    results = [run_target(t, build, a.seconds, a.runs) for t in a.targets]
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
