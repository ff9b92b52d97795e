"""The lab registry: one container per machine on kind's Docker network, filled once from the image sources.

It is CNCF distribution's `registry` (the binary tools/registry/build.sh builds from its Go module, which no
container registry has to serve), imported as an image of that one static binary. Its data lives in a Docker
volume, so it survives `destroy`, a new container and a machine restart; only `make registry ARGS=remove`
deletes it. Copies are made with crane (go-containerregistry), never with registry code of our own.
"""
from __future__ import annotations

import contextlib
import fcntl
import io
import json
import os
import platform
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
import urllib.error
import urllib.request

from kslab.model.image_sources import (
    CONTAINERD_CERTS_DIR,
    KIND_NETWORK,
    LAB_REGISTRY_CONTAINER_PORT,
    LAB_REGISTRY_LABEL,
    LabRegistry,
)

IMAGE_REPOSITORY = "kslab.local/registry"
DATA_DIR = "/var/lib/registry"
CONFIG_PATH = "/etc/kslab-registry.yml"
START_SECONDS = 30.0


class RegistryError(Exception):
    """Something the user can fix, with what to do."""


def _docker(*args: str, timeout: float = 120, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise RegistryError("the docker CLI is not installed; the lab registry runs as a Docker container. Fix: "
                            "install Docker (README 'Set-up')") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"`docker {' '.join(args[:2])}` did not answer within {timeout:.0f}s; is the Docker "
                            "engine running?") from None


def _text(proc: subprocess.CompletedProcess) -> str:
    return (proc.stderr or b"").decode(errors="replace").strip()[:300]


def registry_binary() -> tuple[str, str]:
    """The registry binary on PATH and its version (v3.1.2)."""
    path = shutil.which("registry")
    if not path:
        raise RegistryError("the `registry` binary is not on PATH. Fix: run through make (tools/lab.sh builds it "
                            "with tools/registry/build.sh), or eval \"$(tools/registry/build.sh)\"")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.search(r"v\d+\.\d+\.\d+", out)
    if not match:
        raise RegistryError(f"{path} does not report a version ({out.strip()[:100]!r}); rebuild it with "
                            "tools/registry/build.sh")
    return path, match.group(0)


def _config() -> bytes:
    # JSON is YAML: distribution's configuration (docs: "Configuring a registry"); delete enabled so a
    # `make registry ARGS="remove <image>"` can free a tag.
    return json.dumps({"version": 0.1, "log": {"level": "info", "formatter": "text"},
                       "storage": {"filesystem": {"rootdirectory": DATA_DIR}, "delete": {"enabled": True}},
                       "http": {"addr": f":{LAB_REGISTRY_CONTAINER_PORT}"}}).encode()


def ensure_image() -> str:
    """The registry image, imported once from the binary: `docker import` needs no builder and no base image."""
    path, version = registry_binary()
    image = f"{IMAGE_REPOSITORY}:{version}"
    if _docker("image", "inspect", image, timeout=60).returncode == 0:
        return image
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname="registry")
        config = _config()
        info = tarfile.TarInfo(CONFIG_PATH.lstrip("/"))
        info.size = len(config)
        tar.addfile(info, io.BytesIO(config))
        for directory in ("tmp", DATA_DIR.lstrip("/")):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    proc = _docker("import", "-c", f'ENTRYPOINT ["/registry", "serve", "{CONFIG_PATH}"]',
                   "-c", f"EXPOSE {LAB_REGISTRY_CONTAINER_PORT}", "-c", f"LABEL {LAB_REGISTRY_LABEL}=image",
                   "-", image, stdin=buffer.getvalue(), timeout=300)
    if proc.returncode != 0:
        raise RegistryError(f"`docker import` of the lab registry image failed: {_text(proc)}")
    return image


def container_state(lab: LabRegistry) -> dict | None:
    proc = _docker("container", "inspect", lab.name, timeout=60)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def _ours(state: dict) -> bool:
    return LAB_REGISTRY_LABEL in ((state.get("Config") or {}).get("Labels") or {})


def ensure_running(lab: LabRegistry) -> str:
    """Start the lab registry (create it the first time); what was done, for the log."""
    state = container_state(lab)
    if state is not None and not _ours(state):
        raise RegistryError(f"a container named '{lab.name}' exists and is not a kslab lab registry; kslab will not "
                            "touch it. Fix: set kslab:labRegistry.name to another name")
    if state is None:
        image = ensure_image()
        volume = _docker("volume", "create", "--label", f"{LAB_REGISTRY_LABEL}=data", lab.volume, timeout=60)
        if volume.returncode != 0:
            raise RegistryError(f"`docker volume create {lab.volume}` failed: {_text(volume)}")
        created = _docker("create", "--name", lab.name, "--restart", "unless-stopped",
                          "--label", f"{LAB_REGISTRY_LABEL}=container",
                          "-p", f"127.0.0.1:{lab.host_port}:{LAB_REGISTRY_CONTAINER_PORT}",
                          "-v", f"{lab.volume}:{DATA_DIR}", image, timeout=120)
        if created.returncode != 0:
            raise RegistryError(f"`docker create` of the lab registry failed: {_text(created)}")
        container = created.stdout.decode().strip()
        proc = _docker("start", container, timeout=120)
        if proc.returncode != 0:
            hint = (f" Fix: free port {lab.host_port} or set kslab:labRegistry.hostPort"
                    if "port is already allocated" in _text(proc) or "address already in use" in _text(proc) else "")
            _docker("rm", "-f", container, timeout=60)  # the one just created, by its id
            raise RegistryError(f"starting the lab registry failed: {_text(proc)}.{hint}")
        done = "created"
    else:
        bound = ((state.get("HostConfig") or {}).get("PortBindings") or {}).get(
            f"{LAB_REGISTRY_CONTAINER_PORT}/tcp") or [{}]
        if str(bound[0].get("HostPort")) != str(lab.host_port):
            raise RegistryError(f"the lab registry '{lab.name}' publishes port {bound[0].get('HostPort')}, not "
                                f"{lab.host_port}. Fix: set kslab:labRegistry.hostPort: {bound[0].get('HostPort')}")
        if not (state.get("State") or {}).get("Running"):
            proc = _docker("start", lab.name, timeout=120)
            if proc.returncode != 0:
                raise RegistryError(f"`docker start {lab.name}` failed: {_text(proc)}")
            done = "started"
        else:
            done = "running"
    wait_ready(lab)
    connect_to_kind_network(lab)
    return done


@contextlib.contextmanager
def machine_lock(lab: LabRegistry, log, seconds: float = 3600.0):
    """One lab at a time fills the machine's lab registry (two stacks' ups may run side by side): a flock on a file
    named after the registry, waited for with a progress line, bounded."""
    path = os.path.join(tempfile.gettempdir(), f"kslab-lab-registry-{lab.name}.lock")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as error:
        raise RegistryError(f"cannot open the lab registry's lock {path}: {error.strerror}") from None
    started = last = time.monotonic()
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                now = time.monotonic()
                if now - started > seconds:
                    raise RegistryError(f"another lab kept the lab registry busy for {seconds:.0f}s") from None
                if now - last >= 30:
                    log(f"waiting for another lab that is filling the lab registry '{lab.name}'")
                    last = now
                time.sleep(0.5)
        yield
    finally:
        os.close(fd)


def wait_ready(lab: LabRegistry, seconds: float = START_SECONDS) -> None:
    deadline = time.monotonic() + seconds
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    while True:
        try:
            opener.open(f"http://{lab.local}/v2/", timeout=3).close()
            return
        except (urllib.error.URLError, OSError) as error:
            if time.monotonic() > deadline:
                raise RegistryError(f"the lab registry did not answer at http://{lab.local}/v2/ within "
                                    f"{seconds:.0f}s ({error}); see `docker logs {lab.name}`") from None
            time.sleep(0.3)


def connect_to_kind_network(lab: LabRegistry) -> None:
    """Put the registry on kind's network, where every node resolves its name (once kind made that network)."""
    if _docker("network", "inspect", KIND_NETWORK, timeout=60).returncode != 0:
        return  # no kind cluster yet: the first kind-create connects it
    state = container_state(lab) or {}
    if KIND_NETWORK in ((state.get("NetworkSettings") or {}).get("Networks") or {}):
        return
    proc = _docker("network", "connect", KIND_NETWORK, lab.name, timeout=60)
    if proc.returncode != 0 and "already exists" not in _text(proc):
        raise RegistryError(f"`docker network connect {KIND_NETWORK} {lab.name}` failed: {_text(proc)}")


def configure_nodes(lab: LabRegistry, cluster: str) -> list[str]:
    """Tell every node's containerd to pull the lab registry's names over plain HTTP (a hosts.toml, read on
    each pull: no restart). The nodes of a kind cluster carry the label io.x-k8s.kind.cluster=<name>."""
    proc = _docker("ps", "-q", "--filter", f"label=io.x-k8s.kind.cluster={cluster}", timeout=60)
    nodes = proc.stdout.decode().split()
    if proc.returncode != 0 or not nodes:
        raise RegistryError(f"cannot list the nodes of kind cluster '{cluster}': {_text(proc) or 'none found'}")
    directory = f"{CONTAINERD_CERTS_DIR}/{lab.in_network}"
    for node in nodes:
        reads = _docker("exec", node, "grep", "-qF", CONTAINERD_CERTS_DIR, "/etc/containerd/config.toml", timeout=60)
        if reads.returncode != 0:
            raise RegistryError(f"node {node} was made without the containerd setting the lab registry needs "
                                f"(config_path = \"{CONTAINERD_CERTS_DIR}\"): a cluster made before kslab:imageSources "
                                f"was set. Fix: `kind delete cluster --name {cluster}`, then up again")
        write = _docker("exec", "-i", node, "sh", "-c", f'mkdir -p "{directory}" && cat > "{directory}/hosts.toml"',
                        stdin=lab.hosts_toml().encode(), timeout=60)
        if write.returncode != 0:
            raise RegistryError(f"cannot write {directory}/hosts.toml on node {node}: {_text(write)}")
    connect_to_kind_network(lab)
    return nodes


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
    import base64
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
    return _docker("image", "inspect", image, timeout=60).returncode == 0


def push_from_docker(image: str, destination: str) -> None:
    """An image of this machine's Docker (one you built) into the lab registry: `docker save`, then `crane push`."""
    with tempfile.TemporaryDirectory(prefix="kslab-docker-") as scratch:
        tarball = os.path.join(scratch, "image.tar")
        saved = _docker("save", "-o", tarball, image, timeout=900)
        if saved.returncode != 0:
            raise RegistryError(f"`docker save {image}` failed: {_text(saved)}")
        crane(f"pushing {image} into the lab registry", "push", tarball, destination, timeout=900)
