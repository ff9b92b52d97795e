"""`pulumi up` / `destroy` on live API servers with the operator fixture's install delay fixed:
1 cluster vs the 3-cluster dual-host lab, as a ratio to the critical path, plus a no-change up and
destroy. The 3-cluster lab's critical path is one install followed by one join, so with perfect
parallelism its up takes as long as the 1-cluster up plus one join: ratio 1.0.

    eval "$(tools/engine/build.sh)"; eval "$(tools/kube/build.sh)"; venv/bin/python -m bench.bench_live
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

from tests.support.live import LiveLab

INSTALL_DELAY = 8.0  # seconds the played installer takes, per install


def timed(fn, *args, **kw) -> float:
    start = time.perf_counter()
    proc = fn(*args, **kw)
    if proc.returncode != 0:
        raise SystemExit(f"failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
    return time.perf_counter() - start


def lab_figures(stack: str) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        lab = LiveLab(Path(tmp), stack, install_delay=INSTALL_DELAY)
        try:
            figures = {"up": timed(lab.up)}
            figures["no-change up"] = timed(lab.up)
            figures["destroy"] = timed(lab.destroy)
            if lab.config.get("kslab:joins"):
                # one join alone: unjoin, then join again on the installed lab
                joins = lab.config["kslab:joins"]
                timed(lab.up)
                lab.set_config("kslab:joins", [])
                timed(lab.up)
                lab.set_config("kslab:joins", joins[:1])
                figures["one join"] = timed(lab.up)
                timed(lab.destroy)
            return figures
        finally:
            lab.close()


def main() -> None:
    print(f"install delay played by the fixture: {INSTALL_DELAY:.0f}s per cluster")
    one = lab_figures("live-standalone")
    three = lab_figures("live-dual-host")
    for name, figs in (("1 cluster (live-standalone)", one), ("3 clusters (live-dual-host)", three)):
        print(f"{name:<30}" + "  ".join(f"{k} {v:6.1f}s" for k, v in figs.items()))
    join = three["one join"] - three["no-change up"]  # the join's own share of that up
    critical = one["up"] + join
    print(f"3-cluster up / critical path (1-cluster up + one join of {join:.1f}s) = {three['up']:.1f} / "
          f"{critical:.1f} = {three['up'] / critical:.2f}  (perfect parallelism = 1.0; fully serial would be "
          f"about {(3 * one['up'] + 2 * join) / critical:.1f})")


if __name__ == "__main__":
    main()
