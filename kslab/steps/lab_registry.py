"""The lab registry: one data volume per machine, filled once from the image sources, served by two containers.

It is CNCF distribution's `registry` (the binary tools/registry/build.sh builds from its Go module, which no
container registry has to serve), imported as an image of that one static binary and its two configurations:
- the pull endpoint `<name>`, on kind's Docker network and the default bridge, in distribution's read-only
  maintenance mode (`storage.maintenance.readonly`, registry/handlers/app.go at v3.1.2: every write is refused)
  with the volume mounted read-only and delete off: every node and container may pull, nothing may push or delete;
- the push endpoint `<name>-push`, published on this machine's loopback only, with htpasswd auth whose password only
  kslab holds (a file of this user's, mode 600) and delete off: only kslab writes.
Its data lives in a Docker volume, so it survives `destroy`, new containers and a machine restart; only
`make registry ARGS=remove` deletes it. Copies are made with crane (go-containerregistry), never with registry code
of our own.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

from kslab.model.contract import STEP_ENV
from kslab.model.image_sources import (
    CONTAINERD_CERTS_DIR,
    KIND_NETWORK,
    LAB_REGISTRY_CONTAINER_PORT,
    LAB_REGISTRY_LABEL,
    LabRegistry,
)
from kslab.steps import user_state
from kslab.steps.errors import RegistryError
from kslab.steps.registry_auth import HTPASSWD, PUSH_USER, htpasswd_tar, push_password

IMAGE_REPOSITORY = "kslab.local/registry"
DATA_DIR = "/var/lib/registry"
PULL_CONFIG = "/etc/kslab-registry-pull.yml"
PUSH_CONFIG = "/etc/kslab-registry-push.yml"
# The label's value on each container (the volume's is "data"); an earlier kslab's single open container said
# "container" and is replaced by the pair, its volume kept.
PULL_ROLE, PUSH_ROLE, DATA_ROLE = "pull", "push", "data"
START_SECONDS = 30.0


def docker(*args: str, timeout: float = 120, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    """`docker ...` with the step's environment minus every step variable (the sources' credentials above all:
    the docker CLI and its plugins need none of them)."""
    environment = {k: v for k, v in os.environ.items() if k not in STEP_ENV}
    try:
        return subprocess.run(["docker", *args], input=stdin, capture_output=True, timeout=timeout, env=environment)
    except FileNotFoundError:
        raise RegistryError("the docker CLI is not installed; the lab registry runs as a Docker container. Fix: "
                            "install Docker (README 'Set-up')") from None
    except subprocess.TimeoutExpired:
        raise RegistryError(f"`docker {' '.join(args[:2])}` did not answer within {timeout:.0f}s; is the Docker "
                            "engine running?") from None


def stderr_text(proc: subprocess.CompletedProcess) -> str:
    return (proc.stderr or b"").decode(errors="replace").strip()[:300]


def registry_binary() -> tuple[str, str]:
    """The registry binary on PATH and its version (v3.1.2)."""
    path = shutil.which("registry")
    if not path:
        raise RegistryError("the `registry` binary is not on PATH. Fix: run through make (tools/lab.sh builds it "
                            "with tools/registry/build.sh), or eval \"$(tools/registry/build.sh)\"")
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                         env={k: v for k, v in os.environ.items() if k not in STEP_ENV}).stdout
    match = re.search(r"v\d+\.\d+\.\d+", out)
    if not match:
        raise RegistryError(f"{path} does not report a version ({out.strip()[:100]!r}); rebuild it with "
                            "tools/registry/build.sh")
    return path, match.group(0)


def _configs() -> dict[str, bytes]:
    """distribution's configurations (docs/content/about/configuration.md at v3.1.2; JSON is YAML). Neither
    endpoint deletes (storage.delete off, its default). The pull endpoint is read-only and purges no uploads (the
    purger would delete the push endpoint's uploads in progress); the push endpoint asks for kslab's password."""
    base: dict = {"version": 0.1, "log": {"level": "info", "formatter": "text"},
                  "http": {"addr": f":{LAB_REGISTRY_CONTAINER_PORT}"}}
    pull = {**base, "storage": {"filesystem": {"rootdirectory": DATA_DIR}, "maintenance": {
        "readonly": {"enabled": True}, "uploadpurging": {"enabled": False}}}}
    push = {**base, "storage": {"filesystem": {"rootdirectory": DATA_DIR}},
            "auth": {"htpasswd": {"realm": "kslab-lab-registry", "path": HTPASSWD}}}
    return {PULL_CONFIG: json.dumps(pull).encode(), PUSH_CONFIG: json.dumps(push).encode()}


def ensure_image() -> str:
    """The registry image, imported once from the binary and its configurations (`docker import` needs no builder
    and no base image); its tag names the binary's version and the configurations' digest."""
    path, version = registry_binary()
    configs = _configs()
    digest = hashlib.sha256(b"".join(configs[k] for k in sorted(configs))).hexdigest()[:8]
    image = f"{IMAGE_REPOSITORY}:{version}-{digest}"
    if docker("image", "inspect", image, timeout=60).returncode == 0:
        return image
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname="registry")
        for config_path, content in configs.items():
            info = tarfile.TarInfo(config_path.lstrip("/"))
            info.size = len(content)
            tar.addfile(info, io.BytesIO(content))
        for directory in ("tmp", DATA_DIR.lstrip("/"), os.path.dirname(HTPASSWD).lstrip("/")):
            info = tarfile.TarInfo(directory)
            info.type, info.mode = tarfile.DIRTYPE, 0o1777 if directory == "tmp" else 0o755
            tar.addfile(info)
    proc = docker("import", "-c", 'ENTRYPOINT ["/registry", "serve"]', "-c", f'CMD ["{PULL_CONFIG}"]',
                   "-c", f"EXPOSE {LAB_REGISTRY_CONTAINER_PORT}", "-c", f"LABEL {LAB_REGISTRY_LABEL}=image",
                   "-", image, stdin=buffer.getvalue(), timeout=300)
    if proc.returncode != 0:
        raise RegistryError(f"`docker import` of the lab registry image failed: {stderr_text(proc)}")
    return image


def container_state(lab: LabRegistry, name: str | None = None) -> dict | None:
    """`docker container inspect` of the pull endpoint (or of the container `name`), None when there is none."""
    proc = docker("container", "inspect", name or lab.name, timeout=60)
    if proc.returncode != 0:
        return None
    return json.loads(proc.stdout)[0]


def role_of(state: dict) -> str | None:
    """What a container is to kslab (PULL_ROLE, PUSH_ROLE, an earlier layout's value), None when not kslab's."""
    return ((state.get("Config") or {}).get("Labels") or {}).get(LAB_REGISTRY_LABEL)


def is_running(state: dict | None) -> bool:
    return bool(state and (state.get("State") or {}).get("Running"))


def ensure_running(lab: LabRegistry) -> str:
    """Start the lab registry (create what is missing); what was done, for the log."""
    states = {role: container_state(lab, name) for role, name in ((PULL_ROLE, lab.name),
                                                                   (PUSH_ROLE, lab.push_container))}
    for role, state in states.items():
        name = lab.name if role == PULL_ROLE else lab.push_container
        if state is not None and role_of(state) is None:
            raise RegistryError(f"a container named '{name}' exists and is not kslab's; kslab will not touch it. "
                                "Fix: set kslab:labRegistry.name to another name")
        if state is not None and role_of(state) != role:  # an earlier kslab's single container, open to all
            _remove_container(state["Id"])
            states[role] = None
    _ensure_volume(lab)
    image = ensure_image()
    done = []
    push = states[PUSH_ROLE]
    if push is not None:
        _check_port(lab, push)
    password = push_password(lab, create=push is None)
    if push is not None and (password is None or not push_login_works(lab, push, password)):
        _remove_container(push["Id"])  # a push endpoint whose password kslab no longer has: made anew
        states[PUSH_ROLE], password = None, push_password(lab, create=True)
    if password is None:
        raise RegistryError("internal: no password for the lab registry's push endpoint")
    for role, state in states.items():
        if state is None:
            _create(lab, role, image, password)
            done.append(f"{role} endpoint created")
        elif not is_running(state):
            _start(lab.name if role == PULL_ROLE else lab.push_container, lab)
            done.append(f"{role} endpoint started")
    wait_ready(lab, password)
    connect_to_kind_network(lab)
    return ", ".join(done) or "running"


def _check_port(lab: LabRegistry, push: dict) -> None:
    bound = ((push.get("HostConfig") or {}).get("PortBindings") or {}).get(
        f"{LAB_REGISTRY_CONTAINER_PORT}/tcp") or [{}]
    if str(bound[0].get("HostPort")) != str(lab.host_port):
        raise RegistryError(f"the lab registry '{lab.name}' publishes port {bound[0].get('HostPort')}, not "
                            f"{lab.host_port}. Fix: set kslab:labRegistry.hostPort: {bound[0].get('HostPort')}")


def _ensure_volume(lab: LabRegistry) -> None:
    """The data volume: created with kslab's label, or an existing one of kslab's; any other is refused."""
    found = docker("volume", "inspect", lab.volume, timeout=60)
    if found.returncode == 0:
        labels = json.loads(found.stdout)[0].get("Labels") or {}
        if labels.get(LAB_REGISTRY_LABEL) != DATA_ROLE:
            raise RegistryError(f"a Docker volume named '{lab.volume}' exists and is not kslab's lab registry data; "
                                "kslab will not use it. Fix: set kslab:labRegistry.name to another name, or remove "
                                f"the volume yourself (`docker volume rm {lab.volume}`) if it holds nothing of yours")
        return
    made = docker("volume", "create", "--label", f"{LAB_REGISTRY_LABEL}={DATA_ROLE}", lab.volume, timeout=60)
    if made.returncode != 0:
        raise RegistryError(f"`docker volume create {lab.volume}` failed: {stderr_text(made)}")


def _create(lab: LabRegistry, role: str, image: str, password: str) -> None:
    """One endpoint, created and started: the pull endpoint unpublished, read-only; the push endpoint published on
    loopback only, with kslab's htpasswd copied in before it starts (distribution reads it once, at start)."""
    if role == PULL_ROLE:
        args = ["--name", lab.name, "-v", f"{lab.volume}:{DATA_DIR}:ro", image, PULL_CONFIG]
    else:
        args = ["--name", lab.push_container, "-p", f"127.0.0.1:{lab.host_port}:{LAB_REGISTRY_CONTAINER_PORT}",
                "-v", f"{lab.volume}:{DATA_DIR}", image, PUSH_CONFIG]
    created = docker("create", "--restart", "unless-stopped", "--label", f"{LAB_REGISTRY_LABEL}={role}", *args,
                      timeout=120)
    if created.returncode != 0:
        raise RegistryError(f"`docker create` of the lab registry's {role} endpoint failed: {stderr_text(created)}")
    container = created.stdout.decode().strip()
    if role == PUSH_ROLE:
        copied = docker("cp", "-", f"{container}:/", stdin=htpasswd_tar(password), timeout=60)
        if copied.returncode != 0:
            _remove_container(container)
            raise RegistryError("cannot give the lab registry's push endpoint its password file: "
                                f"{stderr_text(copied)}")
    proc = docker("start", container, timeout=120)
    if proc.returncode != 0:
        _remove_container(container)  # the one just created, by its id
        raise RegistryError(f"starting the lab registry's {role} endpoint failed: "
                            f"{stderr_text(proc)}.{_port_hint(proc, lab)}")


def _start(name: str, lab: LabRegistry) -> None:
    proc = docker("start", name, timeout=120)
    if proc.returncode != 0:
        raise RegistryError(f"`docker start {name}` failed: {stderr_text(proc)}.{_port_hint(proc, lab)}")


def _port_hint(proc: subprocess.CompletedProcess, lab: LabRegistry) -> str:
    taken = "port is already allocated" in stderr_text(proc) or "address already in use" in stderr_text(proc)
    return f" Fix: free port {lab.host_port} or set kslab:labRegistry.hostPort" if taken else ""


def _remove_container(container: str) -> None:
    proc = docker("rm", "-f", container, timeout=60)
    if proc.returncode != 0 and "No such container" not in stderr_text(proc):
        raise RegistryError(f"`docker rm -f {container}` failed: {stderr_text(proc)}")


@contextlib.contextmanager
def machine_lock(lab: LabRegistry, log, seconds: float = 3600.0):
    """One lab at a time fills the machine's lab registry (two stacks' ups may run side by side): a flock on a file
    named after the registry, waited for with a progress line, bounded. The file is in this user's state folder
    (user_state.private_dir: mode 700, the same path whatever TMPDIR says), mode 600, and must be this user's own."""
    try:
        path = os.path.join(user_state.private_dir("locks"), f"lab-registry-{lab.name}.lock")
    except user_state.UnsafeStateDir as error:
        raise RegistryError(str(error)) from None
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    except OSError as error:
        raise RegistryError(f"cannot open the lab registry's lock {path}: {error.strerror}. Fix: remove it if it "
                            "is a link or not a file") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid():
        os.close(fd)
        raise RegistryError(f"the lab registry's lock {path} belongs to uid {info.st_uid}, not to you (uid "
                            f"{os.getuid()}): kslab will not share a lock another user can hold. Fix: remove it")
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


def _v2_status(lab: LabRegistry, password: str | None) -> int:
    """The push endpoint's answer to `GET /v2/` with kslab's password (urllib's error for no answer at all)."""
    import base64
    headers = {"Authorization": "Basic " + base64.b64encode(f"{PUSH_USER}:{password}".encode()).decode()} \
        if password else {}
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(f"http://{lab.local}/v2/", headers=headers), timeout=3) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def push_login_works(lab: LabRegistry, state: dict, password: str) -> bool:
    """Whether a running push endpoint takes kslab's password (a stopped one is judged when it has started)."""
    if not is_running(state):
        return True
    try:
        return _v2_status(lab, password) != 401
    except (urllib.error.URLError, OSError):
        return True  # not answering yet: wait_ready judges it


def wait_ready(lab: LabRegistry, password: str, seconds: float = START_SECONDS) -> None:
    """Both endpoints answer: the push endpoint `GET /v2/` with kslab's password, the pull endpoint (which this
    machine does not reach by a port) is running and says it listens."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            status = _v2_status(lab, password)
            if status == 200 and _pull_listening(lab):
                return
            error: object = f"HTTP {status}" if status != 200 else "the pull endpoint does not listen yet"
        except (urllib.error.URLError, OSError) as failure:
            error = failure
        if time.monotonic() > deadline:
            raise RegistryError(f"the lab registry did not answer at http://{lab.local}/v2/ within {seconds:.0f}s "
                                f"({error}); see `docker logs {lab.push_container}` and `docker logs {lab.name}`")
        time.sleep(0.3)


def _pull_listening(lab: LabRegistry) -> bool:
    state = container_state(lab)
    if not is_running(state):
        return False
    logs = docker("logs", lab.name, timeout=60)
    return b"listening on" in (logs.stdout or b"") + (logs.stderr or b"")


def connect_to_kind_network(lab: LabRegistry) -> None:
    """Put the registry on kind's network, where every node resolves its name (once kind made that network)."""
    if docker("network", "inspect", KIND_NETWORK, timeout=60).returncode != 0:
        return  # no kind cluster yet: the first kind-create connects it
    state = container_state(lab) or {}
    if KIND_NETWORK in ((state.get("NetworkSettings") or {}).get("Networks") or {}):
        return
    proc = docker("network", "connect", KIND_NETWORK, lab.name, timeout=60)
    if proc.returncode != 0 and "already exists" not in stderr_text(proc):
        raise RegistryError(f"`docker network connect {KIND_NETWORK} {lab.name}` failed: {stderr_text(proc)}")


def configure_nodes(lab: LabRegistry, cluster: str) -> list[str]:
    """Tell every node's containerd to pull the lab registry's names over plain HTTP (a hosts.toml, read on
    each pull: no restart). The nodes of a kind cluster carry the label io.x-k8s.kind.cluster=<name>."""
    proc = docker("ps", "-q", "--filter", f"label=io.x-k8s.kind.cluster={cluster}", timeout=60)
    nodes = proc.stdout.decode().split()
    if proc.returncode != 0 or not nodes:
        raise RegistryError(f"cannot list the nodes of kind cluster '{cluster}': {stderr_text(proc) or 'none found'}")
    directory = f"{CONTAINERD_CERTS_DIR}/{lab.in_network}"
    for node in nodes:
        reads = docker("exec", node, "grep", "-qF", CONTAINERD_CERTS_DIR, "/etc/containerd/config.toml", timeout=60)
        if reads.returncode != 0:
            raise RegistryError(f"node {node} was made without the containerd setting the lab registry needs "
                                f"(config_path = \"{CONTAINERD_CERTS_DIR}\"): a cluster made before kslab:imageSources "
                                f"was set. Fix: `kind delete cluster --name {cluster}`, then up again")
        write = docker("exec", "-i", node, "sh", "-c", f'mkdir -p "{directory}" && cat > "{directory}/hosts.toml"',
                        stdin=lab.hosts_toml().encode(), timeout=60)
        if write.returncode != 0:
            raise RegistryError(f"cannot write {directory}/hosts.toml on node {node}: {stderr_text(write)}")
    connect_to_kind_network(lab)
    return nodes
