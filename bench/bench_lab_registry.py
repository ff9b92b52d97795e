"""The lab registry, on the real engine and on real kind: what each `up` fetches from the image sources, and what
a cold or a warm lab registry costs.

1. The lab-images step (`pulumi up --target`) of the 1-cluster and then the 3-cluster stack, two labs sharing one
   new lab registry, each run cold and then again (as after a destroy): images and bytes the source registry served
   (its own access log), the step's time, and the lab registry's disk use (blobs, and `du` of its volume). The
   second lab fetches only the images the first did not want: an image both want with the same digest is fetched
   from the source once per machine. Each stand-in image carries 1 MiB of its own random bytes, so no two images
   share a layer.
2. `pulumi up` of the three-cluster kind lab (kind-dual-host) with a cold lab registry, then, after `destroy`,
   with the warm one.

    eval "$(tools/engine/build.sh)"; eval "$(tools/kind/tier.sh)"; eval "$(tools/registry/build.sh)"
    venv/bin/python -m bench.bench_lab_registry
"""
from __future__ import annotations

import os
import re
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from kslab.cli.registry import stored_bytes
from kslab.cli.stack_spec import load_spec
from kslab.model import images
from kslab.model.image_sources import LabRegistry
from kslab.model.spec import parse_lab
from kslab.steps import lab_registry
from tests.support.engine import make_project
from tests.support.kind import KindLab
from tests.support.mock_run import ROOT
from tests.support.registry import (
    SourceRegistry,
    build_stand_in_program,
    free_port,
    lab_images_counts,
    remove_lab_registry,
)

PAYLOAD = 1 << 20


def upstream_paths(stack: str) -> list[str]:
    if stack.startswith("kind-"):
        with open(os.path.join(ROOT, "tests", "stacks", f"Pulumi.{stack}.yaml")) as fh:
            config = yaml.safe_load(fh)["config"]
        spec = parse_lab({k.split(":", 1)[1]: v for k, v in config.items()})
    else:
        spec = load_spec(ROOT, stack)
    return sorted({i.ref for c in spec.clusters
                   for i in images.plan(c.kubesphere_version, c.role, c.kubernetes_version, images.Naming())})


def fill(source: SourceRegistry, paths: list[str], program: str | None = None, installer: str = "") -> None:
    for path in paths:
        ref = f"{source.address}/{path}"
        if program and path == installer:
            source.push_runnable(ref, program)
        else:
            source.push_unique(ref, PAYLOAD)
    source.mark()


def served(source: SourceRegistry) -> tuple[int, int]:
    """(manifests GET, bytes of every GET) since the mark."""
    manifests = sum(1 for m, uri, _ in source.requests() if m == "GET" and "/manifests/" in uri)
    return manifests, sum(n for m, _, n in source.requests() if m == "GET")


def volume_bytes(lab: LabRegistry) -> int:
    proc = lab_registry.docker("volume", "inspect", "--format", "{{.Mountpoint}}", lab.volume)
    out = subprocess.run(["du", "-sb", proc.stdout.decode().strip()], capture_output=True, text=True)
    return int(out.stdout.split()[0]) if out.returncode == 0 else -1


def step_figures(tmp: Path, source: SourceRegistry, stack: str, lab: LabRegistry) -> None:
    (tmp / stack).mkdir()
    project = make_project(tmp / stack)
    path = Path(project.dir) / "stacks" / f"Pulumi.{stack}.yaml"
    doc = yaml.safe_load(path.read_text())
    doc["config"]["kslab:imageSources"] = [source.address]
    doc["config"]["kslab:labRegistry"] = {"name": lab.name, "hostPort": lab.host_port}
    path.write_text(yaml.safe_dump(doc))
    project.init(stack)
    targets = ["--target", f"urn:pulumi:{stack}::kslab::kslab:lab:Lab::lab",
               "--target", f"urn:pulumi:{stack}::kslab::kslab:lab:Lab$kslab:steps:LabImages::lab-images"]
    clusters = len(doc["config"]["kslab:clusters"])
    for label in ("first", "again"):
        if label == "again":  # the step runs again, as after a destroy: its resource is replaced
            targets_replace = ["--replace", targets[3]]
        else:
            targets_replace = []
        source.mark()
        proc = project.pulumi("up", "--yes", "--skip-preview", "--stack", stack, *targets, *targets_replace,
                              timeout=1800)
        # The engine stops after the step, at the first resource outside --target (a cluster): the step's
        # own summary line says whether it ran.
        out = proc.stdout + proc.stderr
        seconds = re.search(r"already there, in ([\d.]+)s", out)
        if seconds is None:
            raise SystemExit(f"{stack}: the lab-images step did not run:\n{out[-6000:]}")
        counts = lab_images_counts(out)
        manifests, fetched = served(source)
        print(f"{stack:<12} {clusters:>8} {label:<5} {counts['images']:>6} planned, {counts['fetched']:>3} "
              f"fetched, {counts['linked']:>3} linked: {manifests:>3} images {fetched / 1e6:>7.2f} MB from the source; "
              f"step {seconds.group(1)}s")
    blobs, count = stored_bytes(lab)
    print(f"{'':<12} {'':>8} lab registry: {blobs / 1e6:.2f} MB in {count} blobs; volume on disk "
          f"{volume_bytes(lab) / 1e6:.2f} MB")


def kind_figures(tmp: Path, source: SourceRegistry) -> None:
    (tmp / "kind").mkdir()
    lab = KindLab(tmp / "kind", "kind-dual-host")
    registry = LabRegistry("bench-kind-lab-registry", free_port())  # a cold one, then warm after destroy
    lab.set_config("kslab:imageSources", [source.address])
    lab.set_config("kslab:labRegistry", {"name": registry.name, "hostPort": registry.host_port})
    try:
        for label in ("cold", "warm"):
            source.mark()
            started = time.perf_counter()
            proc = lab.up()
            seconds = time.perf_counter() - started
            if proc.returncode != 0:
                raise SystemExit(f"kind-dual-host: up failed:\n{proc.stdout[-3000:]}{proc.stderr[-3000:]}")
            manifests, fetched = served(source)
            print(f"kind-dual-host (3 clusters), {label} lab registry: up {seconds:.1f}s, {manifests} images "
                  f"({fetched / 1e6:.2f} MB) from the source")
            if lab.destroy().returncode != 0:
                raise SystemExit("kind-dual-host: destroy failed")
    finally:
        lab.close()
        remove_lab_registry(registry)


def main() -> None:
    with tempfile.TemporaryDirectory() as root:
        tmp = Path(root)
        source = SourceRegistry(str(tmp / "source"))
        try:
            paths = sorted(set(upstream_paths("standalone")) | set(upstream_paths("dual-host"))
                           | set(upstream_paths("kind-dual-host")))
            installer = images.installer_image("v3.4.1", images.Naming())
            fill(source, paths, build_stand_in_program(str(tmp)), installer)
            print(f"{len(paths)} stand-in images of {PAYLOAD >> 20} MiB each in the source registry\n")
            print(f"{'stack':<12} {'clusters':>8} registry")
            shared = LabRegistry("bench-lab-registry", free_port())
            try:
                for stack in ("standalone", "dual-host"):  # two labs, one lab registry
                    step_figures(tmp, source, stack, shared)
            finally:
                remove_lab_registry(shared)
            print()
            kind_figures(tmp, source)
        finally:
            source.close()


if __name__ == "__main__":
    main()
