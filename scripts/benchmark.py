"""Wall time and peak memory of each pipeline run, end to end (`modelmill run NAME` in a child
process with its own temporary Prefect API and a fresh store), on the mirrored data.

    MODELMILL_DATA_MIRROR=../shared/datasets python scripts/benchmark.py [PIPELINE ...]

Prints a markdown table, ending with one `modelmill run --all` in a single process (what
`make run` does) and the same command again on unchanged data (every run skipped as unchanged);
the README's figures come from it. A run is timed once (these
machines are noisy: read differences under ~20% as noise).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main(argv: list[str]) -> int:
    from modelmill.settings import get_settings
    from modelmill.spec import available

    names = argv or list(available(get_settings()))
    exe = str(Path(sys.executable).with_name("modelmill"))
    print("| pipeline | wall time (s) | peak RSS of the run process (MiB) | exit |\n|---|---|---|---|")
    total = 0.0
    for name in names:
        home = tempfile.mkdtemp(prefix="modelmill-bench-")
        env = dict(os.environ, MODELMILL_HOME=home)
        t0 = time.perf_counter()
        proc = subprocess.Popen([exe, "run", name], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        total += wall
        print(f"| {name} | {wall:.1f} | {usage.ru_maxrss / 1024:.0f} | {os.waitstatus_to_exitcode(status)} |", flush=True)
    print(f"| sum of the above | {total:.1f} | | |")
    if not argv:  # what `make run` does: every pipeline in one process, one temporary Prefect API
        env = dict(os.environ, MODELMILL_HOME=tempfile.mkdtemp(prefix="modelmill-bench-"))
        first = None
        for label in ("`modelmill run --all`", "the same again, nothing changed (every pipeline skipped)"):
            t0 = time.perf_counter()
            proc = subprocess.Popen([exe, "run", "--all"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            _, status, usage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            ratio = f" ({wall / first:.0%} of the first)" if first else ""
            first = first or wall
            print(f"| {label} | {wall:.1f}{ratio} | {usage.ru_maxrss / 1024:.0f} | {os.waitstatus_to_exitcode(status)} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
