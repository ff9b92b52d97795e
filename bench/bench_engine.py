"""The real engine: cold-build figures (when this machine built it), `pulumi preview` wall time per
shipped stack and for generated topologies of 1, 3, 10 and 30 clusters, next to the program's own
evaluation time (the same program under mocks, no engine).

    eval "$(tools/engine/build.sh)"; venv/bin/python -m bench.bench_engine
"""
from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from bench.bench_program import measure
from bench.topology import as_config, topology
from tests.support.engine import make_project, policy_pack
from tests.support.mock_run import stack_config


def build_times() -> None:
    pulumi = shutil.which("pulumi") or ""
    records = glob.glob(str(Path(pulumi).parent.parent / "build-times"))
    if records:
        print("engine cold build (recorded when this machine built it):",
              ", ".join(Path(records[0]).read_text().split()))
    else:
        print(f"engine: {pulumi} (no build record: built before timings were kept, or an official CLI)")


def preview_seconds(project, stack: str, repeat: int = 2) -> float:
    best = None
    for _ in range(repeat):
        start = time.perf_counter()
        proc = project.pulumi("preview", "--stack", stack, "--policy-pack", policy_pack())
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            raise SystemExit(f"preview of {stack} failed:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        best = elapsed if best is None else min(best, elapsed)
    return best


def main() -> None:
    build_times()
    with tempfile.TemporaryDirectory() as tmp:
        project = make_project(Path(tmp))
        print(f"{'stack':<16}{'resources':>10}{'preview+policies (s)':>22}{'program eval (s)':>18}")
        rows = [(name, stack_config(name)) for name in ("standalone", "host-member", "dual-host")]
        rows += [(f"generated-{n}", as_config(topology(n))) for n in (1, 3, 10, 30)]
        for name, config in rows:
            path = os.path.join(project.dir, "stacks", f"Pulumi.{name}.yaml")
            with open(path, "w") as fh:
                # stack_config gives structured values as JSON, which YAML reads back as they were
                yaml.safe_dump({"config": {k: yaml.safe_load(v) for k, v in config.items()}}, fh)
            project.init(name)
            seconds = preview_seconds(project, name)
            evaluation, _, count = measure(config, repeat=1)
            print(f"{name:<16}{count:>10}{seconds:>22.2f}{evaluation:>18.2f}")


if __name__ == "__main__":
    main()
