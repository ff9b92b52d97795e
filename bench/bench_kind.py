"""Real kind: `pulumi up` of one cluster (kind-standalone) and of three (kind-dual-host: the original notes' lab,
KubeSphere v3.2.1 on Kubernetes 1.19.16 nodes) on this machine, with
each phase's time from the engine's event log (cluster create, installer objects, install wait, join), and the
ratio of the three-cluster up to its critical path (the slowest cluster's create, objects, wait and jwt read,
then the slower join). KubeSphere's controllers are played (tests/harness/ks_operators.py, install delay 2 s).

    eval "$(tools/engine/build.sh)"; eval "$(tools/kind/tier.sh)"; venv/bin/python -m bench.bench_kind [--three-only]
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

from tests.support.kind import KindLab

OBJECTS = ("customresourcedefinition", "namespace", "serviceaccount", "clusterrole", "clusterrolebinding",
           "deployment", "baseline", "cc")


def spans(event_log: str) -> dict[str, tuple[int, int]]:
    """Resource name -> (start, end) in epoch seconds, from `pulumi up --event-log`."""
    starts, out = {}, {}
    with open(event_log) as fh:
        for line in fh:
            event = json.loads(line)
            for kind in ("resourcePreEvent", "resOutputsEvent"):
                meta = (event.get(kind) or {}).get("metadata") or {}
                if not meta.get("urn"):
                    continue
                name = meta["urn"].split("::")[-1]
                if kind == "resourcePreEvent":
                    starts.setdefault(name, event["timestamp"])
                elif name in starts:
                    out[name] = (starts[name], event["timestamp"])
    return out


def phases(lab: KindLab, s: dict[str, tuple[int, int]]) -> dict:
    figures = {}
    for name in lab.names:
        objects = [s[f"{name}-kubesphere-{o}"] for o in OBJECTS if f"{name}-kubesphere-{o}" in s]
        figures[name] = {
            "create": s[f"{name}-kind"][1] - s[f"{name}-kind"][0],
            "objects": max(e for _, e in objects) - min(b for b, _ in objects),
            "wait": s[f"{name}-kubesphere-wait"][1] - s[f"{name}-kubesphere-wait"][0],
            "jwt": s[f"{name}-kubesphere-jwt"][1] - s[f"{name}-kubesphere-jwt"][0],
        }
    for join in lab.config.get("kslab:joins") or []:
        j = f"{join['member']}-to-{join['host']}"
        figures[j] = {"join": s[f"{j}-ready"][1] - s[f"{j}-check"][0]}
    return figures


def measure(stack: str) -> tuple[float, dict, float]:
    with tempfile.TemporaryDirectory() as tmp:
        lab = KindLab(Path(tmp), stack)
        try:
            log = str(Path(tmp) / "events.json")
            start = time.perf_counter()
            proc = lab.up("--event-log", log, extra_env={"PULUMI_DEBUG_COMMANDS": "true"})
            up = time.perf_counter() - start
            if proc.returncode != 0:
                raise SystemExit(f"{stack}: up failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
            figures = phases(lab, spans(log))
            start = time.perf_counter()
            if lab.destroy().returncode != 0:
                raise SystemExit(f"{stack}: destroy failed")
            return up, figures, time.perf_counter() - start
        finally:
            lab.close()


def main() -> None:
    # `--three-only`: the three-cluster lab alone (the original notes' v3.2.1 lab on 1.19.16 nodes)
    labs = (("1 cluster", "kind-standalone"), ("3 clusters", "kind-dual-host"))
    results = {}
    for label, stack in labs[1:] if "--three-only" in sys.argv[1:] else labs:
        up, figures, destroy = measure(stack)
        results[label] = (up, figures)
        print(f"{label} ({stack}): up {up:.1f}s, destroy {destroy:.1f}s")
        for name, phase in figures.items():
            print(f"  {name:<24}" + "  ".join(f"{k} {v:>4}s" for k, v in phase.items()))
    up, figures = results["3 clusters"]
    cluster_paths = [sum(p.values()) for n, p in figures.items() if "join" not in p]
    joins = [p["join"] for p in figures.values() if "join" in p]
    critical = max(cluster_paths) + max(joins)
    print(f"3-cluster up / critical path (slowest cluster {max(cluster_paths)}s + slower join {max(joins)}s) = "
          f"{up:.1f} / {critical} = {up / critical:.2f}  (1.0 = the clusters ran fully in parallel; "
          f"fully serial would be about {(sum(cluster_paths) + sum(joins)) / critical:.1f})")


if __name__ == "__main__":
    main()
