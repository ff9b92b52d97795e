"""`make status` on the three-cluster live lab (live-dual-host): wall time and peak memory of the command,
with the member's API server up and stopped (every read to it then ends at its bound), with and without the
churn sampling window. A dual-host lab always has findings: each host's built-in admin is fought over.

    eval "$(tools/engine/build.sh)"; eval "$(tools/kube/build.sh)"; venv/bin/python -m bench.bench_status
"""
from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.support.live import LiveLab

RUNS = 3


TIME = shutil.which("time")  # GNU time (Debian package time), if present


def run_status(lab: LiveLab, sample: str) -> tuple[float, int, int, int | None]:
    """(seconds, exit code, findings, peak KiB of the largest process of the run) of one `status --json`."""
    command = [sys.executable, "-m", "kslab.cli.status", "status", "--json", "--stack", lab.stack,
               "--sample-seconds", sample]
    if TIME:  # GNU time: the peak resident size of the command (python, or the pulumi it runs if larger)
        command = [TIME, "-f", "peak-kib=%M"] + command
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=lab.project.dir, env=lab.project.env, capture_output=True, text=True,
                          timeout=300)
    elapsed = time.perf_counter() - start
    if proc.returncode not in (0, 1):
        raise SystemExit(f"status failed: {proc.stderr[-2000:]}")
    peak = next((int(line.split("=")[1]) for line in proc.stderr.splitlines() if line.startswith("peak-kib=")), None)
    return elapsed, proc.returncode, len(json.loads(proc.stdout)["findings"]), peak


def series(lab: LiveLab, label: str, sample: str) -> None:
    runs = [run_status(lab, sample) for _ in range(RUNS)]
    times = [r[0] for r in runs]
    peaks = [r[3] for r in runs if r[3]]
    memory = f"  peak {max(peaks) / 1024:4.0f} MiB" if peaks else "  (no GNU time: memory not measured)"
    print(f"{label:<46} median {statistics.median(times):5.2f}s  max {max(times):5.2f}s  "
          f"exit {runs[-1][1]}  findings {runs[-1][2]}{memory}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LiveLab(Path(tmp), "live-dual-host", install_delay=1.0)
        try:
            if lab.up().returncode != 0:
                raise SystemExit("up failed")
            time.sleep(3)  # the played KubeFed health check has run
            print(f"make status on live-dual-host (3 clusters, 2 joins), {RUNS} runs each, "
                  "including `pulumi stack output`:")
            series(lab, "all up, no sampling (--sample-seconds 0)", "0")
            series(lab, "all up, default 5 s churn window", "5")
            lab.clusters["member"].stop_apiserver()
            series(lab, "member's API server stopped, no sampling", "0")
            lab.clusters["member"].start_apiserver()
            lab.destroy()
        finally:
            lab.close()


if __name__ == "__main__":
    main()
