"""The image check on the full plan of each shipped stack, against a source registry played on loopback (CNCF
distribution built by tools/registry/build.sh, stand-in images pushed with crane): wall time of the check, and
the requests it made, at kslab's concurrency (8) and one at a time.

    eval "$(tools/registry/build.sh)"; venv/bin/python -m bench.bench_images
"""
from __future__ import annotations

import statistics
import tempfile
import time

from kslab.cli.stack_spec import load_spec
from kslab.model import images
from kslab.steps import registry_check
from tests.support.mock_run import ROOT
from tests.support.registry import SourceRegistry

RUNS = 5
STACKS = ("standalone", "host-member", "dual-host")


def plan_refs(stack: str, registry: str) -> list[str]:
    spec = load_spec(ROOT, stack)
    naming = images.Naming(registry)
    return list(dict.fromkeys(image.ref for c in spec.clusters
                              for image in images.plan(c.kubesphere_version, c.role, c.kubernetes_version, naming)))


def timed(refs: list[str], concurrency: int) -> tuple[float, float]:
    seconds = []
    for _ in range(RUNS):
        started = time.perf_counter()
        answers = registry_check.check(refs, concurrency=concurrency, checker=registry_check.Checker())
        seconds.append(time.perf_counter() - started)
        assert all(a.state == registry_check.FOUND for a in answers.values()), answers
    return statistics.median(seconds), max(seconds)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        source = SourceRegistry(root)
        try:
            print(f"{'stack':<12} {'clusters':>8} {'images':>6}  {'check, 8 at a time (median/max s)':>34}  "
                  f"{'one at a time (median/max s)':>29}  manifest requests per check")
            for stack in STACKS:
                refs = plan_refs(stack, source.address)
                for ref in refs:
                    source.push_stand_in(ref)
                source.mark()
                parallel = timed(refs, registry_check.CONCURRENCY)
                requests = len(source.manifest_requests()) // RUNS
                serial = timed(refs, 1)
                clusters = len(load_spec(ROOT, stack).clusters)
                print(f"{stack:<12} {clusters:>8} {len(refs):>6}  {parallel[0]:>20.3f} / {parallel[1]:.3f}"
                      f"  {serial[0]:>18.3f} / {serial[1]:.3f}  {requests} HEAD")
        finally:
            source.close()


if __name__ == "__main__":
    main()
