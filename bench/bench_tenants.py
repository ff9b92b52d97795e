"""The tenants' share of `pulumi up`: the demo lab (a host, two members; tests/stacks/Pulumi.live-demo.yaml on live
API servers, KubeSphere's controllers and KubeFed played) brought up with its tenants (3 users, 2 workspaces, 4
projects) and, on fresh clusters, without them; then a no-change `up` of each. Repeated `--runs` times (default 2).

    eval "$(tools/engine/build.sh)"; eval "$(tools/kube/build.sh)"; venv/bin/python -m bench.bench_tenants [--runs N]
"""
from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from bench.bench_live import timed
from tests.support.live import LiveLab

STACK = "live-demo"
INSTALL_DELAY = 2.0
TENANT_KEYS = ("kslab:users", "kslab:workspaces", "kslab:projects")


def figures(with_tenants: bool) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LiveLab(Path(tmp), STACK, install_delay=INSTALL_DELAY)
        try:
            if with_tenants:
                lab.pulumi("config", "set", "--secret", "kslab:wendyPassword", input="Wendy-Bench-2026", check=True)
            else:
                for key in TENANT_KEYS:
                    lab.set_config(key, [])
            out = {"up": timed(lab.up), "no-change up": timed(lab.up, "--expect-no-changes")}
            out["destroy"] = timed(lab.destroy)
            return out
        finally:
            lab.close()


def main() -> None:
    runs = int(sys.argv[sys.argv.index("--runs") + 1]) if "--runs" in sys.argv else 2
    results: dict[str, list[dict[str, float]]] = {"without tenants": [], "with tenants": []}
    for _ in range(runs):
        results["without tenants"].append(figures(False))
        results["with tenants"].append(figures(True))
    print(f"{STACK}: 3 clusters (host + 2 members), install played in {INSTALL_DELAY:.0f}s; median of {runs} runs")
    medians = {}
    for label, runs_of in results.items():
        medians[label] = {k: statistics.median(r[k] for r in runs_of) for k in runs_of[0]}
        print(f"  {label:<16}" + "  ".join(f"{k} {v:6.1f}s" for k, v in medians[label].items()))
    extra = medians["with tenants"]["up"] - medians["without tenants"]["up"]
    print(f"tenants' share of up: {extra:.1f}s of {medians['with tenants']['up']:.1f}s "
          f"({100 * extra / medians['with tenants']['up']:.0f}%); no-change up "
          f"{medians['with tenants']['no-change up']:.1f}s with them vs "
          f"{medians['without tenants']['no-change up']:.1f}s without")


if __name__ == "__main__":
    main()
