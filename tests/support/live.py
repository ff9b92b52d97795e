"""A lab on live API servers: harness clusters + the operator fixture + the real CLI."""
from __future__ import annotations

import json
import os
import signal

import yaml
from kubernetes import client, config

from tests.harness.ks_operators import Operator
from tests.harness.live_cluster import LiveCluster, find_bin_dir
from tests.support.engine import StackLab, make_project, policy_pack
from tests.support.mock_run import ROOT

POLICY_CONFIG = "tests/stacks/policy-config.live.json"


class LiveLab(StackLab):
    def __init__(self, tmp_path, stack: str, install_delay: float = 1.0):
        self.stack = stack
        stack_file = os.path.join(ROOT, "tests", "stacks", f"Pulumi.{stack}.yaml")
        with open(stack_file) as fh:
            self.config = yaml.safe_load(fh)["config"]
        self.names = [c["name"] for c in self.config["kslab:clusters"]]
        self.harness_dir = tmp_path / "harness"
        bin_dir = find_bin_dir()
        self.clusters: dict[str, LiveCluster] = {}
        try:
            for name in self.names:
                self.clusters[name] = LiveCluster(name, self.harness_dir / name, bin_dir).start()
            self.operator = Operator({n: c.kubeconfig_path.read_text() for n, c in self.clusters.items()},
                                     install_delay=install_delay).start()
        except BaseException:
            self.close()
            raise
        self.project = make_project(tmp_path, extra_env={
            "KSLAB_HARNESS_DIR": str(self.harness_dir), "KSLAB_POLL_SECONDS": "0.3",
            "KSLAB_PROGRESS_SECONDS": "5"})
        self.project.add_stack_file(stack_file, stack)
        self.project.init(stack)

    def up(self, *extra, **kw):
        return self.pulumi("up", "--yes", "--skip-preview", "--policy-pack", policy_pack(),
                           "--policy-pack-config", POLICY_CONFIG, *extra, **kw)

    def destroy(self, *extra, **kw):
        return self.pulumi("destroy", "--yes", "--skip-preview", *extra, **kw)

    def api(self, name: str) -> client.ApiClient:
        return config.new_client_from_config_dict(yaml.safe_load(self.clusters[name].kubeconfig_path.read_text()))

    def core(self, name: str) -> client.CoreV1Api:
        return client.CoreV1Api(self.api(name))

    def custom(self, name: str) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.api(name))

    def cc(self, name: str) -> dict | None:
        try:
            return self.custom(name).get_namespaced_custom_object(
                "installer.kubesphere.io", "v1alpha1", "kubesphere-system", "clusterconfigurations", "ks-installer")
        except client.rest.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def member_clusters(self, host: str) -> list[dict]:
        try:
            return self.custom(host).list_cluster_custom_object(
                "cluster.kubesphere.io", "v1alpha1", "clusters")["items"]
        except client.rest.ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def joined(self, host: str) -> list[dict]:
        """The Cluster objects kslab made on a host (not the host's own entry, which its controller makes)."""
        return [c for c in self.member_clusters(host)
                if (c["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "kslab"]

    def lab_objects(self, name: str) -> list[str]:
        """Everything the lab creates on a cluster that is still there."""
        left = []
        ext = client.ApiextensionsV1Api(self.api(name))
        if any(c.metadata.name == "clusterconfigurations.installer.kubesphere.io"
               for c in ext.list_custom_resource_definition().items):
            left.append("crd/clusterconfigurations")
        if any(n.metadata.name == "kubesphere-system" for n in self.core(name).list_namespace().items):
            left.append("namespace/kubesphere-system")
        rbac = client.RbacAuthorizationV1Api(self.api(name))
        if any(r.metadata.name == "ks-installer" for r in rbac.list_cluster_role().items):
            left.append("clusterrole/ks-installer")
        if any(r.metadata.name == "ks-installer" for r in rbac.list_cluster_role_binding().items):
            left.append("clusterrolebinding/ks-installer")
        left += [f"cluster/{c['metadata']['name']}" for c in self.joined(name)]
        return left

    def kill_strays(self) -> list[int]:
        """Plugins and language hosts of a killed `pulumi` run live on in their own process groups;
        stop every process still running from this lab's project copy."""
        project = getattr(self, "project", None)
        return kill_project_processes(project.dir) if project is not None else []

    def state_text(self) -> str:
        return json.dumps(self.project.export(self.stack))

    def close(self) -> None:
        if getattr(self, "operator", None):
            print("fixture log (last 40 lines):\n  " + "\n  ".join(self.operator.lines[-40:]))
        self.kill_strays()
        op = getattr(self, "operator", None)
        if op:
            op.stop()
        for c in self.clusters.values():
            c.stop()


def kill_project_processes(project_dir: str) -> list[int]:
    """SIGKILL every process whose command line names the project copy (a killed run's plugins)."""
    killed = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                cmdline = fh.read().decode(errors="replace")
        except OSError:
            continue
        if project_dir in cmdline:
            try:
                os.kill(int(entry), signal.SIGKILL)
                killed.append(int(entry))
            except ProcessLookupError:
                pass
    return killed
