"""A lab on real kind clusters: the product's own kind path on this machine (Docker, kind, the node image
tools/kind/node-image builds), the real Pulumi engine, and the fixture playing KubeSphere's controllers."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile

import pytest
import yaml
from kubernetes import client, config

from kslab.model.spec import parse_lab
from tests.harness.ks_operators import Operator
from tests.support.engine import StackLab, make_project, policy_pack
from tests.support.live import kill_project_processes
from tests.support.mock_run import ROOT


def require_kind_tier(node_images: set[str]) -> None:
    """Docker, kind and the node image must be there (`make test` provides them): fail loudly, never skip."""
    problems = []
    if shutil.which("kind") is None:
        problems.append("`kind` is not on PATH (tools/kind/build.sh)")
    if subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
        problems.append(f"no Docker engine answers (DOCKER_HOST={os.environ.get('DOCKER_HOST', 'unset')}; "
                        "tools/docker/docker.sh start)")
    else:
        for image in sorted(node_images):
            if subprocess.run(["docker", "image", "inspect", image], capture_output=True).returncode != 0:
                problems.append(f"node image {image} is not built (tools/kind/node-image/build.sh)")
    if problems:
        pytest.fail("the real-kind tier cannot run: " + "; ".join(problems) + ". Run it through `make test`.",
                    pytrace=False)


def kind(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    """kind with a scratch kubeconfig, so the test never touches a kubeconfig of the user's."""
    with tempfile.TemporaryDirectory() as scratch:
        extra = ["--kubeconfig", os.path.join(scratch, "kubeconfig")] if args[:1] in (("create",), ("delete",)) \
            else []
        return subprocess.run(["kind", *args, *extra], capture_output=True, text=True, timeout=timeout)


def kind_clusters() -> set[str]:
    out = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=60)
    return set(out.stdout.split()) if out.returncode == 0 else set()


def node_containers(name: str) -> list[str]:
    out = subprocess.run(["docker", "ps", "-a", "--filter", f"label=io.x-k8s.kind.cluster={name}",
                          "--format", "{{.Names}}"], capture_output=True, text=True, timeout=60)
    return out.stdout.split()


def inspect(container: str) -> dict:
    out = subprocess.run(["docker", "inspect", container], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout)[0]


class KindLab(StackLab):
    def __init__(self, tmp_path, stack: str, state_home: str | None = None):
        """`state_home`: kslab's private state (the lab registry's push password) for labs that share one registry;
        by default under the lab's own scratch home."""
        self.stack = stack
        stack_file = os.path.join(ROOT, "tests", "stacks", f"Pulumi.{stack}.yaml")
        with open(stack_file) as fh:
            self.config = yaml.safe_load(fh)["config"]
        self.names = [c["name"] for c in self.config["kslab:clusters"]]
        default_image = self.config.get("kslab:nodeImage")
        require_kind_tier({c.get("nodeImage", default_image) for c in self.config["kslab:clusters"]})
        leftovers = kind_clusters() & set(self.names)
        assert not leftovers, f"kind clusters {sorted(leftovers)} exist before the test (a crashed run?)"
        # The user's home stays untouched: kind and kubectl of this test see a scratch HOME.
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.operator = Operator({}, install_delay=2.0, kind_clusters=tuple(self.names)).start()
        self.project = make_project(tmp_path, extra_env={
            "HOME": str(self.home), "XDG_STATE_HOME": state_home or str(self.home / ".local" / "state"),
            "KSLAB_POLL_SECONDS": "1", "KSLAB_PROGRESS_SECONDS": "15"})
        self.project.add_stack_file(stack_file, stack)
        self.project.init(stack)

    def kubesphere_version(self, name: str) -> str:
        """The release a cluster of the lab installs (its own kubesphereVersion, else the lab's)."""
        spec = parse_lab({k.split(":", 1)[1]: v for k, v in self.config.items()})
        return next(c.kubesphere_version for c in spec.clusters if c.name == name)

    def up(self, *extra, timeout: float = 1500, **kw):
        return self.pulumi("up", "--yes", "--skip-preview", "--policy-pack", policy_pack(), *extra,
                           timeout=timeout, **kw)

    def destroy(self, *extra, timeout: float = 900, **kw):
        return self.pulumi("destroy", "--yes", "--skip-preview", *extra, timeout=timeout, **kw)

    def kubeconfig(self, name: str) -> str:
        out = subprocess.run(["kind", "get", "kubeconfig", "--name", name], capture_output=True, text=True,
                             timeout=60, check=True)
        return out.stdout

    def api(self, name: str) -> client.ApiClient:
        return config.new_client_from_config_dict(yaml.safe_load(self.kubeconfig(name)))

    def core(self, name: str) -> client.CoreV1Api:
        return client.CoreV1Api(self.api(name))

    def custom(self, name: str) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api(name))

    def container_ip(self, name: str) -> str:
        return inspect(f"{name}-control-plane")["NetworkSettings"]["Networks"]["kind"]["IPAddress"]

    def joined(self, host: str) -> list[dict]:
        items = self.custom(host).list_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters")["items"]
        return [c for c in items if (c["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "kslab"]

    def state_text(self) -> str:
        return json.dumps(json.loads(self.pulumi("stack", "export", check=True).stdout))

    def close(self) -> None:
        print("fixture log (last 40 lines):\n  " + "\n  ".join(self.operator.lines[-40:]))
        kill_project_processes(self.project.dir)
        for name in self.names:  # a failed test leaves nothing behind
            if name in kind_clusters():
                kind("delete", "cluster", "--name", name)
        self.operator.stop()
