"""Preflight: what a careful user checks before creating kind clusters.

`evaluate` is pure (facts in, verdict out) so every rule is unit-tested;
`probe` gathers the facts from this machine and is used by `ops preflight`.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field

from kslab.model import versions

INOTIFY_WATCHES = 524288
INOTIFY_INSTANCES = 512


@dataclass
class Facts:
    docker_ok: bool
    docker_detail: str
    kind_version: str | None
    kubectl_version: str | None
    inotify_watches: int | None
    inotify_instances: int | None
    mem_available_mib: int | None
    # Node images present in the local Docker (kind uses a local image and never pulls it).
    local_images: frozenset[str] = frozenset()


@dataclass
class Plan:
    node_images: list[str]
    memory_estimate_mib: int


@dataclass
class Verdict:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def evaluate(facts: Facts, plan: Plan) -> Verdict:
    verdict = Verdict()
    if not facts.docker_ok:
        verdict.errors.append(
            f"Docker engine not reachable ({facts.docker_detail}). kind needs a running container engine. "
            "Fix: start Docker (e.g. `sudo systemctl start docker` or Docker Desktop) and check `docker info`.")
    if facts.kind_version is None:
        verdict.errors.append("`kind` not found on PATH. Fix: install kind (see README, 'What you need').")
    if facts.kubectl_version is None:
        verdict.errors.append("`kubectl` not found on PATH. Fix: install kubectl (see README, 'What you need').")
    if facts.kind_version:
        for image in sorted(set(plan.node_images)):
            if image in facts.local_images:
                # kind inspects the image first and pulls only when it is missing
                # (sigs.k8s.io/kind@v0.33.0: pkg/cluster/internal/providers/docker/images.go): an image built
                # here or loaded for an air-gapped lab is used as it is, whatever kind publishes.
                continue
            ok = versions.kind_supports_image(facts.kind_version, image)
            key = versions.kind_release_key(facts.kind_version)
            if ok is False and key is not None:
                lo, hi = versions.KIND_RELEASE_NODE_MINORS[key]
                verdict.errors.append(
                    f"{image} is not in the local Docker, and kind {key} publishes node images for Kubernetes "
                    f"1.{lo}-1.{hi} only. Fix: install a kind release whose images include it, change nodeImage, "
                    "or build/load the image locally (`docker image inspect` must find it).")
            elif ok is None:
                verdict.warnings.append(f"kind {facts.kind_version}: not in kslab's table of node images; "
                                        f"{image} may not run.")
    if len(plan.node_images) > 1:
        low = []
        if facts.inotify_watches is not None and facts.inotify_watches < INOTIFY_WATCHES:
            low.append(f"fs.inotify.max_user_watches={facts.inotify_watches} (< {INOTIFY_WATCHES})")
        if facts.inotify_instances is not None and facts.inotify_instances < INOTIFY_INSTANCES:
            low.append(f"fs.inotify.max_user_instances={facts.inotify_instances} (< {INOTIFY_INSTANCES})")
        if low:
            verdict.errors.append(
                f"{len(plan.node_images)} kind clusters need higher inotify limits: " + ", ".join(low)
                + f". Fix: sudo sysctl -w fs.inotify.max_user_watches={INOTIFY_WATCHES} "
                  f"fs.inotify.max_user_instances={INOTIFY_INSTANCES}")
    if facts.mem_available_mib is not None and facts.mem_available_mib < plan.memory_estimate_mib:
        verdict.warnings.append(
            f"about {plan.memory_estimate_mib} MiB needed for this lab, {facts.mem_available_mib} MiB available: "
            "installs may be OOM-killed. Consider fewer clusters or components.")
    return verdict


def _run(argv: list[str], timeout: float = 20) -> tuple[int, str]:
    if shutil.which(argv[0]) is None:
        return 127, f"{argv[0]} not found"
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"`{' '.join(argv)}` timed out after {timeout:.0f}s"
    return proc.returncode, (proc.stdout.strip() or proc.stderr.strip())


def _read_int(path: str) -> int | None:
    try:
        with open(path) as fh:
            return int(fh.read().strip())
    except (OSError, ValueError):
        return None


def _mem_available_mib() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        return None
    return None


def probe(node_images: Sequence[str] = ()) -> Facts:
    code, out = _run(["docker", "info", "--format", "{{.ServerVersion}}"])
    docker_ok = code == 0 and bool(out)
    local = frozenset(image for image in set(node_images)
                      if docker_ok and _run(["docker", "image", "inspect", "--format", "{{.Id}}", image])[0] == 0)
    kind_code, kind_out = _run(["kind", "version"])
    kubectl_code, kubectl_out = _run(["kubectl", "version", "--client", "-o", "yaml"])
    kubectl_version = None
    if kubectl_code == 0:
        kubectl_version = next((line.split(":", 1)[1].strip() for line in kubectl_out.splitlines()
                                if line.strip().startswith("gitVersion:")), kubectl_out[:40])
    return Facts(
        docker_ok=docker_ok,
        docker_detail=f"docker server {out}" if docker_ok else (out.splitlines()[-1] if out else f"exit {code}"),
        kind_version=kind_out if kind_code == 0 else None,
        kubectl_version=kubectl_version,
        inotify_watches=_read_int("/proc/sys/fs/inotify/max_user_watches"),
        inotify_instances=_read_int("/proc/sys/fs/inotify/max_user_instances"),
        mem_available_mib=_mem_available_mib() if os.path.exists("/proc/meminfo") else None,
        local_images=local,
    )
