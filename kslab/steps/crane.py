"""crane (go-containerregistry), the one program that moves images: copies from the sources, pushes from this
machine's Docker and from archives, and copies inside the lab registry (where it mounts blobs across repositories
instead of uploading them again). It runs with only PATH, HOME and the proxy settings, and a private DOCKER_CONFIG
holding exactly the credentials of the registries it talks to."""
from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess

from kslab.steps import scratch
from kslab.steps.lab_registry import RegistryError, docker, stderr_text


def crane_platform() -> str:
    """The one platform copied out of a multi-platform image: this machine's (kind nodes run on it)."""
    machine = platform.machine().lower()
    arch = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}.get(machine, machine)
    return f"linux/{arch}"


CRANE_ENV = ("PATH", "HOME", "HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy")


def crane(what: str, *args: str, docker_config: str | None = None, timeout: float = 1800) -> None:
    """Run crane with only PATH, HOME and the proxy settings (and a private DOCKER_CONFIG when the sources have
    credentials); `what` names the work in the error."""
    program = shutil.which("crane")
    if not program:
        raise RegistryError("the `crane` binary is not on PATH. Fix: run through make (tools/lab.sh builds it with "
                            "tools/registry/build.sh)")
    environment = {k: v for k, v in os.environ.items() if k in CRANE_ENV}
    if docker_config:
        environment["DOCKER_CONFIG"] = docker_config
    proc = subprocess.run([program, *args], capture_output=True, text=True, timeout=timeout, env=environment)
    if proc.returncode != 0:
        raise RegistryError(f"{what} failed: {proc.stderr.strip()[-400:]}")


def copy(source: str, destination: str, docker_config: str | None) -> None:
    """`crane copy` of one image (its platform for this machine only when the source is an index)."""
    crane(f"copying {source}", "copy", "--platform", crane_platform(), source, destination,
          docker_config=docker_config)


def write_docker_config(directory: str, credentials: dict[str, tuple[str, str]]) -> str:
    """A DOCKER_CONFIG directory (mode 700, file 600) with the sources' credentials, for crane alone; the caller
    removes it. Docker Hub's credentials go under the key every client looks up for it."""
    auths = {}
    for host, (username, password) in credentials.items():
        entry = {"auth": base64.b64encode(f"{username}:{password}".encode()).decode()}
        auths[host] = entry
        if host in ("docker.io", "index.docker.io", "registry-1.docker.io"):
            auths["https://index.docker.io/v1/"] = entry
    os.chmod(directory, 0o700)
    path = os.path.join(directory, "config.json")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({"auths": auths}, fh)
    return directory


def docker_has(image: str) -> bool:
    return docker("image", "inspect", image, timeout=60).returncode == 0


def push_from_docker(image: str, destination: str, docker_config: str | None) -> None:
    """An image of this machine's Docker (one you built) into the lab registry: `docker save`, then `crane push`."""
    with scratch.private_dir("docker") as folder:
        tarball = os.path.join(folder, "image.tar")
        saved = docker("save", "-o", tarball, image, timeout=900)
        if saved.returncode != 0:
            raise RegistryError(f"`docker save {image}` failed: {stderr_text(saved)}")
        crane(f"pushing {image} into the lab registry", "push", tarball, destination, docker_config=docker_config,
              timeout=900)
