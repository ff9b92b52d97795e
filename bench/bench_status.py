"""`make status` on the three-cluster live lab (live-dual-host): wall time and peak memory of the command,
healthy and with the member's API server stopped (every read to it then ends at its bound), with and without
the churn sampling window.

    eval "$(tools/engine/build.sh)"; eval "$(tools/kube/build.sh)"; venv/bin/python -m bench.bench_status
"""
from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.live import LiveLab

RUNS = 3


def run_status(lab: LiveLab, sample: str) -> tuple[float, int, int]:
    """(seconds, exit code, findings) of one `status --json` in the lab's project."""
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "components.ops.status", "status", "--json", "--stack", lab.stack,
                           "--sample-seconds", sample], cwd=lab.project.dir, env=lab.project.env,
                          capture_output=True, text=True, timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"status failed: {proc.stderr[-2000:]}")
    return elapsed, proc.returncode, len(json.loads(proc.stdout)["findings"])


def series(lab: LiveLab, label: str, sample: str) -> None:
    runs = [run_status(lab, sample) for _ in range(RUNS)]
    times = [r[0] for r in runs]
    print(f"{label:<46} median {statistics.median(times):5.2f}s  max {max(times):5.2f}s  "
          f"exit {runs[-1][1]}  findings {runs[-1][2]}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LiveLab(Path(tmp), "live-dual-host", install_delay=1.0)
        try:
            if lab.up().returncode != 0:
                raise SystemExit("up failed")
            time.sleep(3)  # the played KubeFed health check has run
            print(f"make status on live-dual-host (3 clusters, 2 joins), {RUNS} runs each, "
                  "including `pulumi stack output`:")
            series(lab, "healthy, no sampling (--sample-seconds 0)", "0")
            series(lab, "healthy, default 5 s churn window", "5")
            lab.clusters["member"].stop_apiserver()
            series(lab, "member's API server stopped, no sampling", "0")
            lab.clusters["member"].start_apiserver()
            lab.destroy()
        finally:
            lab.close()
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"peak memory of the largest child process (status or pulumi): {peak:.0f} MiB")


if __name__ == "__main__":
    main()
