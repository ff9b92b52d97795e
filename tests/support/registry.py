"""A source registry played on this machine's loopback: CNCF distribution's own `registry` (built by
tools/registry/build.sh from its Go module), holding stand-in images built here with crane under the names
ks-installer's plan gives them. Its access log records every request, so tests can count what was asked."""
from __future__ import annotations

import io
import json
import os
import re
import shutil
import socket
import subprocess
import tarfile
import time
import urllib.error
import urllib.request

import pytest


def require_registry_tools() -> None:
    """`make test` puts both on PATH (tools/registry/build.sh): fail loudly, never skip."""
    missing = [tool for tool in ("registry", "crane") if shutil.which(tool) is None]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not on PATH: run the tests through `make test`, which builds them "
                    "(tools/registry/build.sh)", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class SourceRegistry:
    def __init__(self, root: str, login: tuple[str, str] | None = None):
        """`login`: the registry asks for this user and password (distribution's htpasswd auth)."""
        require_registry_tools()
        self.root = root
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.makedirs(os.path.join(root, "data"), exist_ok=True)
        config = os.path.join(root, "config.yml")
        settings = {"version": 0.1, "log": {"level": "info", "formatter": "json"},
                    "storage": {"filesystem": {"rootdirectory": os.path.join(root, "data")},
                                "delete": {"enabled": True}},
                    "http": {"addr": self.address}}
        self.docker_config = os.path.join(root, "docker-config")  # crane's own login to this registry
        os.makedirs(self.docker_config, exist_ok=True)
        if login:
            import base64

            import bcrypt
            htpasswd = os.path.join(root, "htpasswd")
            with open(htpasswd, "w") as fh:
                fh.write(f"{login[0]}:{bcrypt.hashpw(login[1].encode(), bcrypt.gensalt(rounds=5)).decode()}\n")
            settings["auth"] = {"htpasswd": {"realm": "kslab-played-source", "path": htpasswd}}
            with open(os.path.join(self.docker_config, "config.json"), "w") as fh:
                json.dump({"auths": {self.address: {"auth": base64.b64encode(":".join(login).encode()).decode()}}},
                          fh)
        with open(config, "w") as fh:  # JSON is YAML: the registry's own configuration format
            json.dump(settings, fh)
        self.log_path = os.path.join(root, "registry.log")
        self._log = open(self.log_path, "w")
        self.proc = subprocess.Popen(["registry", "serve", config], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://{self.address}/v2/", timeout=2).close()
                break
            except urllib.error.HTTPError:
                break  # it answers (401: it asks for the login)
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        f"the played registry did not start: {open(self.log_path).read()[-2000:]}") from None
                time.sleep(0.2)
        self._stand_in = None
        self._mark = 0

    def mark(self) -> None:
        """Count only the requests logged from now on (e.g. after the stand-ins were pushed)."""
        with open(self.log_path) as fh:
            self._mark = len(fh.readlines())

    def _crane(self, *args: str) -> None:
        proc = subprocess.run(["crane", *args, "--insecure"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "DOCKER_CONFIG": self.docker_config})
        assert proc.returncode == 0, f"crane {' '.join(args)} failed: {proc.stderr[-2000:]}"

    def push_stand_in(self, ref: str) -> None:
        """An image of one small layer that names what it stands in for, pushed (or copied) as `ref`."""
        if self._stand_in is None:
            layer = os.path.join(self.root, "stand-in.tar")
            body = b"a stand-in built by kslab's tests; not the real image\n"
            with tarfile.open(layer, "w") as tar:
                info = tarfile.TarInfo("kslab-stand-in.txt")
                info.size = len(body)
                tar.addfile(info, io.BytesIO(body))
            self._crane("append", "-f", layer, "-t", ref)
            self._stand_in = ref
        else:
            self._crane("copy", self._stand_in, ref)

    def push_unique(self, ref: str, payload_bytes: int) -> None:
        """An image of one layer of `payload_bytes` random bytes of its own (no layer shared with another image)."""
        layer = os.path.join(self.root, "unique.tar")
        with tarfile.open(layer, "w") as tar:
            body = os.urandom(payload_bytes)
            info = tarfile.TarInfo("kslab-stand-in.bin")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        self._crane("append", "-f", layer, "-t", ref)

    def push_runnable(self, ref: str, binary: str) -> None:
        """An image whose entrypoint is `binary` (a static program built here), pushed as `ref`: a pod runs it."""
        layer = os.path.join(self.root, "runnable.tar")
        with tarfile.open(layer, "w") as tar:
            tar.add(binary, arcname="kslab-stand-in")
        self._crane("append", "-f", layer, "-t", ref)
        self._crane("mutate", ref, "--entrypoint", "/kslab-stand-in", "-t", ref)  # without -t: by digest only

    def requests(self) -> list[tuple[str, str, int]]:
        """(method, uri, bytes written) of every request the registry answered since the mark."""
        found = []
        with open(self.log_path) as fh:
            for line in fh.readlines()[self._mark:]:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if entry.get("msg", "").startswith("response completed"):
                    found.append((entry.get("http.request.method"), entry.get("http.request.uri", ""),
                                  int(entry.get("http.response.written") or 0)))
        return found

    def manifest_requests(self) -> list[tuple[str, str]]:
        """(method, path) of every manifest request the registry logged since the mark."""
        return [(method, uri) for method, uri, _ in self.requests() if "/manifests/" in uri]

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def build_stand_in_program(out_dir: str) -> str:
    """A static program that runs until it is stopped (the node image's own pause program, built for a pod)."""
    out = os.path.join(out_dir, "kslab-stand-in")
    source = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "kind", "node-image")
    proc = subprocess.run(["go", "build", "-trimpath", "-o", out, "./cmd/pause"], cwd=source, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "CGO_ENABLED": "0", "GOWORK": "off"})
    assert proc.returncode == 0, f"building the stand-in program failed: {proc.stderr[-2000:]}"
    return out


LAB_IMAGES_LINE = re.compile(r"lab registry: (\d+) images for lab (\S+): (\d+) fetched from the sources, (\d+) pushed "
                             r"from archives or Docker, (\d+) linked into the lab's own repositories, (\d+) already "
                             r"there")


def lab_images_counts(out: str) -> dict[str, object]:
    """The lab-images step's summary line of a run's output (the last one), as numbers."""
    found = LAB_IMAGES_LINE.findall(out)
    assert found, f"no lab-images summary in the output: {out[-3000:]}"
    images_, lab, fetched, pushed, linked, there = found[-1]
    return {"images": int(images_), "lab": lab, "fetched": int(fetched), "pushed": int(pushed),
            "linked": int(linked), "there": int(there)}


def lab_registry_images(lab) -> dict[str, dict[str, str]]:
    """What the lab registry holds, as `make registry ARGS=list` groups it: group -> {image: digest}."""
    from kslab.cli.registry import by_lab
    return {group: dict(items) for group, items in by_lab(lab).items()}


def remove_lab_registry(lab) -> None:
    """The lab registry's containers and volume, removed the product's way (only what carries kslab's label)."""
    from kslab.cli.registry import remove
    from kslab.steps.errors import RegistryError
    try:
        remove(lab)
    except RegistryError as error:
        print(f"lab registry left: {error}")
