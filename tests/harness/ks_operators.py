"""Test fixture that plays KubeSphere's operators (and the namespace controller) on API-server-only
clusters. Product code never imports this; it only sees the effects, as it would on a real cluster.

What it does, following the facts note (README "What the tests play"):
- ks-installer: on a new or changed `ks-installer` cc spec, after `install_delay` seconds, writes the
  `kubesphere-config` configmap (jwtSecret from the cc, or a random one kept across re-runs) and sets
  `status.core` (status enabled, version, enabledTime), `status.multicluster` for a host, and
  `status.<component>.status` for each enabled component.
- ks-controller-manager on a host: for each `Cluster` object, adds the finalizer, reads the member
  through the given kubeconfig, creates `kube-federation-system` and ServiceAccount `<member>-kubesphere`
  there, and sets conditions Federated/Ready=True, or Ready=False naming the error when the member is
  unreachable. On delete it removes the ServiceAccount and the finalizer, but only when the member is
  reachable (as upstream, an unreachable member blocks deletion).
- kube-controller-manager's namespace controller: finalizes namespaces being deleted; and its garbage
  collector: clears `foregroundDeletion` from objects being deleted (nothing here has dependents).

Run in-process (`Operator(...).start()`) or as a process:
    python -m tests.harness.ks_operators --delay 2 host=/path/host.kubeconfig member=/path/member.kubeconfig
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import hashlib
import json
import secrets
import signal
import sys
import threading
import time

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

NS = "kubesphere-system"
EDGE_KEYS = ("edgeruntime", "kubeedge")
COMPONENT_KEYS = ("devops", "logging", "alerting", "auditing", "events", "servicemesh") + EDGE_KEYS
FINALIZER = "finalizer.cluster.kubesphere.io"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _api(kubeconfig_text: str) -> client.ApiClient:
    api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text))
    api.configuration.retries = 0
    return api


def _enabled_components(spec: dict) -> list[str]:
    out = [k for k in COMPONENT_KEYS if k not in ("openpitrix",) and (spec.get(k) or {}).get("enabled")]
    if ((spec.get("openpitrix") or {}).get("store") or {}).get("enabled"):
        out.append("openpitrix")
    return out


class ClusterActor:
    def __init__(self, name: str, kubeconfig_text: str, install_delay: float, log):
        self.name = name
        self.api = _api(kubeconfig_text)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.delay = install_delay
        self.log = log
        self.seen_spec: str | None = None
        self.spec_seen_at = 0.0
        self.installs = 0

    # --- ks-installer ---------------------------------------------------------------------------
    def reconcile_installer(self) -> None:
        try:
            cc = self.custom.get_namespaced_custom_object(
                "installer.kubesphere.io", "v1alpha1", NS, "clusterconfigurations", "ks-installer",
                _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                self.seen_spec = None
                return
            raise
        spec = cc.get("spec") or {}
        digest = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        if digest != self.seen_spec:
            self.seen_spec, self.spec_seen_at = digest, time.monotonic()
            self.done_spec = None
        if getattr(self, "done_spec", None) == digest or time.monotonic() - self.spec_seen_at < self.delay:
            return
        role = (spec.get("multicluster") or {}).get("clusterRole", "none")
        self._ensure_cluster_crd()
        jwt = (spec.get("authentication") or {}).get("jwtSecret") or self._existing_jwt() or secrets.token_hex(16)
        self._write_kubesphere_config(jwt, role, spec)
        version = (cc.get("metadata", {}).get("labels") or {}).get("version", "")
        status = dict(cc.get("status") or {})
        status["core"] = {"status": "enabled", "enabledTime": _now(), "version": version}
        if role == "host":
            status["multicluster"] = {"status": "enabled", "enabledTime": _now()}
        for comp in _enabled_components(spec):
            status[comp] = {"status": "enabled", "enabledTime": _now()}
        self.custom.patch_namespaced_custom_object(
            "installer.kubesphere.io", "v1alpha1", NS, "clusterconfigurations", "ks-installer",
            {"status": status}, _request_timeout=5)
        self.done_spec = digest
        self.installs += 1
        self.log(f"{self.name}: installer run #{self.installs} done (role {role})")

    def _ensure_cluster_crd(self) -> None:
        """ks-core (installed by ks-installer) brings the `clusters.cluster.kubesphere.io` CRD."""
        ext = client.ApiextensionsV1Api(self.api)
        body = {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "clusters.cluster.kubesphere.io"},
            "spec": {"group": "cluster.kubesphere.io", "scope": "Cluster",
                     "names": {"plural": "clusters", "singular": "cluster", "kind": "Cluster", "listKind": "ClusterList"},
                     "versions": [{"name": "v1alpha1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]},
        }
        try:
            ext.create_custom_resource_definition(body, _request_timeout=5)
            for _ in range(50):  # wait until it is served
                try:
                    self.custom.list_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters",
                                                           _request_timeout=5)
                    break
                except ApiException:
                    time.sleep(0.1)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _existing_jwt(self) -> str | None:
        try:
            cm = self.core.read_namespaced_config_map("kubesphere-config", NS, _request_timeout=5)
        except ApiException:
            return None
        doc = yaml.safe_load((cm.data or {}).get("kubesphere.yaml", "")) or {}
        return (doc.get("authentication") or {}).get("jwtSecret")

    def _write_kubesphere_config(self, jwt: str, role: str, spec: dict) -> None:
        doc = {"authentication": {"jwtSecret": jwt, "authenticateRateLimiterMaxTries": 10},
               "multicluster": {"clusterRole": role, "enable": role == "host"}}
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kubesphere-config", namespace=NS),
                                  data={"kubesphere.yaml": yaml.safe_dump(doc)})
        try:
            self.core.replace_namespaced_config_map("kubesphere-config", NS, body, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(NS, body, _request_timeout=5)

    # --- ks-controller-manager (host side) ------------------------------------------------------
    def reconcile_clusters(self) -> None:
        try:
            items = self.custom.list_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters",
                                                           _request_timeout=5).get("items", [])
        except ApiException as exc:
            if exc.status == 404:  # no Cluster CRD on this cluster: not a host
                return
            raise
        for obj in items:
            name = obj["metadata"]["name"]
            meta = obj["metadata"]
            kubeconfig = base64.b64decode(((obj.get("spec") or {}).get("connection") or {}).get("kubeconfig") or "")
            if meta.get("deletionTimestamp"):
                if FINALIZER in (meta.get("finalizers") or []) and self._unjoin_member(name, kubeconfig):
                    self.custom.patch_cluster_custom_object(
                        "cluster.kubesphere.io", "v1alpha1", "clusters", name,
                        {"metadata": {"finalizers": [f for f in meta["finalizers"] if f != FINALIZER]}},
                        _request_timeout=5)
                    self.log(f"{self.name}: unjoined {name}")
                continue
            if FINALIZER not in (meta.get("finalizers") or []):
                self.custom.patch_cluster_custom_object(
                    "cluster.kubesphere.io", "v1alpha1", "clusters", name,
                    {"metadata": {"finalizers": (meta.get("finalizers") or []) + [FINALIZER]}}, _request_timeout=5)
            error = self._join_member(name, kubeconfig)
            now = _now()
            if error is None:
                conditions = [{"type": t, "status": "True", "lastUpdateTime": now, "lastTransitionTime": now,
                               "reason": t, "message": f"Cluster has been {t.lower()}"}
                              for t in ("Initialized", "Federated", "Ready")]
            else:
                conditions = [{"type": "Ready", "status": "False", "lastUpdateTime": now,
                               "lastTransitionTime": now, "reason": "Unreachable", "message": error}]
            old = [(c.get("type"), c.get("status")) for c in (obj.get("status") or {}).get("conditions") or []]
            if old != [(c["type"], c["status"]) for c in conditions]:
                self.custom.patch_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", name,
                                                        {"status": {"conditions": conditions}}, _request_timeout=5)
                self.log(f"{self.name}: cluster {name} -> {'Ready' if error is None else error}")

    def _member_core(self, kubeconfig: bytes) -> client.CoreV1Api:
        return client.CoreV1Api(_api(kubeconfig.decode()))

    def _join_member(self, name: str, kubeconfig: bytes) -> str | None:
        try:
            core = self._member_core(kubeconfig)
            for create, args in ((core.create_namespace,
                                  (client.V1Namespace(metadata=client.V1ObjectMeta(name="kube-federation-system")),)),
                                 (core.create_namespaced_service_account,
                                  ("kube-federation-system",
                                   client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=f"{name}-kubesphere"))))):
                try:
                    create(*args, _request_timeout=5)
                except ApiException as exc:
                    if exc.status != 409:
                        raise
            return None
        except Exception as exc:  # unreachable member or bad kubeconfig
            return f"member {name} unreachable: {exc.__class__.__name__}"

    def _unjoin_member(self, name: str, kubeconfig: bytes) -> bool:
        try:
            core = self._member_core(kubeconfig)
            try:
                core.delete_namespaced_service_account(f"{name}-kubesphere", "kube-federation-system",
                                                       _request_timeout=5)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            try:
                core.delete_namespace("kube-federation-system", _request_timeout=5)
            except ApiException as exc:
                if exc.status != 404:
                    raise
            return True
        except Exception:
            return False  # unreachable: the finalizer stays, as upstream

    # --- namespace controller -------------------------------------------------------------------
    def finalize_namespaces(self) -> None:
        for ns in self.core.list_namespace(_request_timeout=5).items:
            if ns.metadata.deletion_timestamp and ns.spec and ns.spec.finalizers:
                ns.spec.finalizers = []
                self.core.replace_namespace_finalize(ns.metadata.name, ns, _request_timeout=5)

    def collect_garbage(self) -> None:
        """pulumi-kubernetes deletes in the foreground; with no dependents the collector just clears
        the finalizer (JSON patch for built-in kinds, merge patch for custom objects)."""
        apps, rbac = client.AppsV1Api(self.api), client.RbacAuthorizationV1Api(self.api)
        typed = [
            (apps.list_deployment_for_all_namespaces, apps.patch_namespaced_deployment, True),
            (self.core.list_service_account_for_all_namespaces, self.core.patch_namespaced_service_account, True),
            (self.core.list_config_map_for_all_namespaces, self.core.patch_namespaced_config_map, True),
            (rbac.list_cluster_role, rbac.patch_cluster_role, False),
            (rbac.list_cluster_role_binding, rbac.patch_cluster_role_binding, False),
            (self.core.list_namespace, self.core.patch_namespace, False),
        ]
        for lister, patcher, namespaced in typed:
            for obj in lister(_request_timeout=5).items:
                fins = obj.metadata.finalizers or []
                if obj.metadata.deletion_timestamp and "foregroundDeletion" in fins:
                    i = fins.index("foregroundDeletion")
                    body = [{"op": "test", "path": f"/metadata/finalizers/{i}", "value": "foregroundDeletion"},
                            {"op": "remove", "path": f"/metadata/finalizers/{i}"}]
                    args = (obj.metadata.name, obj.metadata.namespace) if namespaced else (obj.metadata.name,)
                    patcher(*args, body, _request_timeout=5)
        for group, plural in (("installer.kubesphere.io", "clusterconfigurations"),
                              ("cluster.kubesphere.io", "clusters")):
            try:
                items = self.custom.list_cluster_custom_object(group, "v1alpha1", plural,
                                                               _request_timeout=5)["items"]
            except ApiException:
                continue
            for obj in items:
                meta = obj["metadata"]
                fins = meta.get("finalizers") or []
                if meta.get("deletionTimestamp") and "foregroundDeletion" in fins:
                    body = {"metadata": {"finalizers": [f for f in fins if f != "foregroundDeletion"]}}
                    if meta.get("namespace"):
                        self.custom.patch_namespaced_custom_object(group, "v1alpha1", meta["namespace"], plural,
                                                                   meta["name"], body, _request_timeout=5)
                    else:
                        self.custom.patch_cluster_custom_object(group, "v1alpha1", plural, meta["name"], body,
                                                                _request_timeout=5)

    def tick(self) -> None:
        for step in (self.reconcile_installer, self.reconcile_clusters, self.collect_garbage,
                     self.finalize_namespaces):
            try:
                step()
            except Exception:
                pass  # API server down (a fault test) or racing with the program: try again next tick


class Operator:
    def __init__(self, kubeconfigs: dict[str, str], install_delay: float = 1.0, interval: float = 0.3,
                 quiet: bool = True):
        self.lines: list[str] = []
        self.actors = [ClusterActor(n, k, install_delay, self._log) for n, k in kubeconfigs.items()]
        self.interval = interval
        self.quiet = quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _log(self, line: str) -> None:
        self.lines.append(line)
        if not self.quiet:
            print(f"[operator] {line}", flush=True)

    def run(self) -> None:
        while not self._stop.is_set():
            for actor in self.actors:
                actor.tick()
            self._stop.wait(self.interval)

    def start(self) -> "Operator":
        self._thread = threading.Thread(target=self.run, name="kubesphere-operator-fixture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)

    def installs(self, name: str) -> int:
        return next(a.installs for a in self.actors if a.name == name)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds an install takes")
    parser.add_argument("clusters", nargs="+", help="name=kubeconfig-path")
    args = parser.parse_args(argv)
    kubeconfigs = {}
    for item in args.clusters:
        name, path = item.split("=", 1)
        with open(path) as fh:
            kubeconfigs[name] = fh.read()
    op = Operator(kubeconfigs, args.delay, quiet=False)
    signal.signal(signal.SIGTERM, lambda *_: op._stop.set())
    print(f"[operator] playing KubeSphere's operators on {', '.join(kubeconfigs)}", flush=True)
    op.run()


if __name__ == "__main__":
    main(sys.argv[1:])
