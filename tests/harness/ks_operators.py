"""Test fixture that plays KubeSphere's controllers against real API servers (the live tier's
API-server-only clusters, or real kind clusters). Product code never imports this; it only sees the
effects, as it would on a real cluster.

Everything played mirrors upstream at the release tags kslab supports, and each behaviour names the file it
mirrors: ks-installer = kubesphere/ks-installer@<tag>, kubesphere = kubesphere/kubesphere@<tag>, for <tag>
v3.2.1 and v3.4.1. The release is the tag of the `ks-installer` Deployment's image, as on a real cluster.

ks-installer (controller/installRunner.py and roles/):
- The hook runs on an add of the `ks-installer` cc and on a change of its `.spec` (shell-operator binding with
  jqFilter `.spec`), one run at a time; a change during a run queues one more run.
- Migration step (generate_new_cluster_configuration): a spec that lacks what it reads makes the hook raise,
  so no playbook runs and no status is written, and it is retried every 5 s; a spec that needs migrating
  (v3.4.1: no `terminal`, `events` without `ruler`, ...; both: `status.core` without `version`, ...) is deleted
  and created again with only name, namespace and the `version` label (a new uid), and the run ends.
- The run, in upstream's order: ks-core/init-token (Secret kubesphere-secret: the cc's jwtSecret, or a random
  32-character one kept across runs); the ks-core chart (Cluster and Workspace CRDs, the ks-apiserver Service,
  and at v3.4.1 the ValidatingWebhookConfiguration `cluster.kubesphere.io`); status.core.status/enabledTime;
  then the component playbooks concurrently, in no fixed order (monitoring always; `multicluster` on a host,
  with the KubeFedCluster CRD; each enabled component that writes a status key, skipped when already enabled
  at the start of the run); then kubesphere-config (roles/ks-core/config); then status.core.version
  (roles/check-result); then status.clusterId once (roles/telemetry). Status is never reset.
ks-apiserver: answers GET /kapis/version once ks-core is installed, reached as the console reaches it, through
  the API server's service proxy (Service ks-apiserver, port 80; pkg/kapis/cluster/v1alpha1/handler.go).
ks-controller-manager's cluster controller (pkg/controller/cluster/cluster_controller.go, join.go, unjoin.go,
cluster_webhook.go), only on a cluster whose kubesphere-config has `multicluster.enable: true`
(cmd/controller-manager/app/controllers.go):
- the host's own Cluster (named hostClusterName, label cluster-role.kubesphere.io/host);
- per Cluster: the finalizer first; a client built from the kubeconfig bytes alone (file paths, exec and
  auth-provider users cannot work in its pod); the join (member: kube-federation-system, ServiceAccount
  `<name>-kubesphere` with a token Secret at v3.4.1 only, its ClusterRole/Binding; host: Secret
  `<name>-secret` and KubeFedCluster `<name>`); conditions Federated and Ready; at v3.4.1 status.uid (the
  member's kube-system UID) and multicluster.clusterName in the member's kubesphere-config. Status is written
  with a full Update (the CRD has no status subresource);
- delete: unjoin without member config (only the host's KubeFedCluster and Secret go; the member keeps its
  objects), then the finalizer is removed with a full Update;
- v3.4.1's validating webhook on UPDATE of clusters (failurePolicy Fail): allowed while the old object has no
  status.uid; otherwise the member is reached with the new kubeconfig and its kube-system UID must match. On a
  cluster without multicluster the path is not served (404), which the API server treats as a failure.
KubeFed on a host with multicluster (kubesphere's kubefed v0.8.1 build; kubernetes-sigs/kubefed@v0.8.1):
- cluster health (pkg/controller/kubefedcluster/clusterclient.go GetClusterHealthStatus, controller.go): every
  period (10 s upstream, pkg/apis/core/v1beta1/defaults/defaults.go; FED_HEALTH_SECONDS here so tests are short)
  each KubeFedCluster's /healthz is read with its Secret's token: Ready=True (ClusterReady) on "ok",
  Ready=False otherwise, and Offline=True (ClusterNotReachable) when it cannot be reached; a change to not ready
  only after 3 failed probes in a row (thresholdAdjustedClusterStatus, FailureThreshold 3);
- sync of FederatedUser (pkg/controller/sync, dispatch): the template is written to every Ready member with label
  kubefed.io/managed=true; the member's copy is updated whenever its resourceVersion differs from the version
  recorded at the last write (pkg/controller/util/propagatedversion.go ObjectNeedsUpdate), unless it is labelled
  kubefed.io/managed=false (pkg/controller/util/managedlabel.go IsExplicitlyUnmanaged). Two hosts holding
  different templates of one name therefore overwrite each other for ever (the seed notes' flapping).
The ks-core chart's User admin (ks-installer@<tag>:roles/ks-core/ks-core/files/ks-core/templates/account.yaml) on
every cluster, its password encrypted by the user controller with a random salt (encryptPassword), so every
cluster's admin differs. ks-controller-manager's user controller (kubesphere@v3.4.1:pkg/controller/user/
user_controller.go multiClusterSync/createFederatedUser), on a host with multicluster: each User is labelled
kubefed.io/managed=false
  (ensureNotControlledByKubefed) and gets a FederatedUser of its name whose template carries its labels and spec,
  placed by an empty clusterSelector (every member); the garbage collector removes it with its User.
kube-controller-manager (live tier only; kind clusters run the real one): namespace finalization and
foreground-deletion garbage collection.

Run in-process (`Operator(...).start()`) or as a process:
    python -m tests.harness.ks_operators --delay 2 host=/path/host.kubeconfig member=/path/member.kubeconfig
"""
from __future__ import annotations

import argparse
import base64
import copy
import datetime as dt
import hashlib
import json
import random
import secrets
import signal
import ssl
import string
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from tests.harness import ks_tenants

NS = "kubesphere-system"
KUBEFED_NS = "kube-federation-system"
FINALIZER = "finalizer.cluster.kubesphere.io"                  # cluster_types.go
HOST_LABEL = "cluster-role.kubesphere.io/host"                   # cluster_types.go
MANAGED_LABEL = "kubesphere.io/managed"
WEBHOOK_CONFIG = "cluster.kubesphere.io"                         # ks-core chart templates/webhook.yaml@v3.4.1
WEBHOOK_NAME = "validating-cluster.kubesphere.io"
WEBHOOK_PATH = "/validate-cluster-kubesphere-io-v1alpha1"
SUPPORTED = ("v3.2.1", "v3.4.1")
HOOK_RETRY_SECONDS = 5.0                                         # shell-operator retries a failed hook

# cc key -> the status key its playbook writes, per release (roles/*/tasks: `kubectl patch cc ... status`).
# openpitrix and network policy have no status writer at either tag.
_STATUS_KEY = {"devops": "devops", "logging": "logging", "auditing": "auditing", "events": "events",
               "servicemesh": "servicemesh", "gatekeeper": "gatekeeper", "kubeedge": "kubeedge",
               "edgeruntime": "edgeruntime"}


def _now() -> str:
    # `date +%Y-%m-%dT%H:%M:%S%Z` (roles/ks-core/ks-core/tasks/main.yaml)
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S") + "UTC"


def _api(kubeconfig_text: str) -> client.ApiClient:
    api = config.new_client_from_config_dict(yaml.safe_load(kubeconfig_text))
    api.configuration.retries = 0
    return api


def local_address() -> str:
    """A non-loopback address of this machine that API servers (local processes or kind nodes) can dial.
    Endpoints may not hold loopback addresses, so ks-apiserver's stand-in cannot be reached on 127.0.0.1."""
    out = subprocess.run(["ip", "-4", "route", "get", "1.1.1.1"], capture_output=True, text=True).stdout.split()
    if "src" in out:
        return out[out.index("src") + 1]
    out = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"], capture_output=True,
                         text=True).stdout.split()
    if "inet" in out:
        return out[out.index("inet") + 1].split("/")[0]
    raise RuntimeError("no non-loopback IPv4 address on this machine for the played ks-apiserver and webhook")


# --- ks-installer's migration step -------------------------------------------------------------------

class HookError(Exception):
    """The hook raised (a KeyError/TypeError in installRunner.py): no playbook runs; retried every 5 s."""


def migrate(version: str, spec, status) -> list[str]:
    """Reasons the migration step would delete and recreate the cc ([] = it goes on with the run);
    HookError when it raises on what it reads.
    ks-installer@<tag>:controller/installRunner.py, generate_new_cluster_configuration."""
    if not isinstance(spec, dict):
        raise HookError("TypeError: spec is not a mapping (`\"common\" in spec`)")
    reasons = []
    v34 = version == "v3.4.1"
    for key in ("logging", "openpitrix", "networkpolicy") + (("events", "servicemesh", "kubeedge", "devops")
                                                             if v34 else ()):
        if key in spec and not isinstance(spec[key], (dict, list, str)):
            raise HookError(f"TypeError: argument of type {type(spec[key]).__name__!r} is not iterable ({key})")
    if "common" in spec:
        common = spec["common"]
        if not isinstance(common, dict):
            raise HookError("TypeError: spec.common is not a mapping")
        if v34:
            # iR@v3.4.1:497-507 sets common.es.enabled unconditionally
            if not isinstance(common.get("es"), dict):
                raise HookError("KeyError: 'es' (spec.common.es, read unconditionally by the v3.4 migration)")
            if "opensearch" in common and not isinstance(common["opensearch"], dict):
                raise HookError("TypeError: spec.common.opensearch is not a mapping")
            if "opensearchMasterReplicas" in common.get("opensearch", {}):
                raise HookError("KeyError: 'elasticsearchMasterReplicas' (iR@v3.4.1:560)")
    if "logging" in spec and "logsidecarReplicas" in spec["logging"]:
        reasons.append("logging.logsidecarReplicas")
    if v34 and "events" in spec and "ruler" not in spec["events"]:
        reasons.append("events without ruler")
    if "notification" in spec:
        reasons.append("notification")
    if "openpitrix" in spec and "store" not in spec["openpitrix"]:
        reasons.append("openpitrix without store")
    if "networkpolicy" in spec:
        reasons.append("top-level networkpolicy")
    if v34 and "terminal" not in spec:
        reasons.append("no terminal")
    if v34 and "servicemesh" in spec and "istio" not in spec["servicemesh"]:
        reasons.append("servicemesh without istio")
    if v34 and "kubeedge" in spec:
        reasons.append("kubeedge (moved to edgeruntime)")
    devops = spec.get("devops") or {}
    if v34 and devops.get("enabled") and not {"jenkinsCpuReq", "jenkinsCpuLim"} <= set(devops):
        reasons.append("devops without jenkinsCpuReq/jenkinsCpuLim")
    if isinstance(status, dict) and "core" in status:
        core = status["core"] or {}
        if "version" not in core or core["version"] != version:
            reasons.append("status.core without this release's version")
    return reasons


def required_reads(version: str, spec: dict) -> list[str]:
    """cc keys the run's playbooks read with no default (an Ansible error when missing), per
    roles/common/tasks/common-install.yaml, roles/ks-core/config/templates/kubesphere-config.yaml.j2,
    roles/ks-monitor/templates/prometheus-endpointsEtcd.yaml.j2, playbooks/multicluster.yaml,
    roles/ks-core/init-token/tasks/main.yaml. Returns the missing ones."""
    def has(path: str) -> bool:
        node = spec
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True
    needed = ["devops.enabled", "logging.enabled", "events.enabled", "auditing.enabled", "servicemesh.enabled",
              "etcd.endpointIps", "etcd.port", "multicluster.clusterRole"]
    missing = [p for p in needed if not has(p)]
    if "authentication" in spec and not has("authentication.jwtSecret"):
        missing.append("authentication.jwtSecret")
    for key in ("metrics_server", "gatekeeper"):
        if key in spec and not has(f"{key}.enabled"):
            missing.append(f"{key}.enabled")
    return missing


def preinstall_status_writes(spec: dict) -> list[str]:
    """preInstallTasks: metrics_server.yaml writes status.metricsServer (camelCase) when enabled
    (roles/metrics-server/tasks/main.yml), before ks-core."""
    return ["metricsServer"] if (spec.get("metrics_server") or {}).get("enabled") else []


def component_status_writes(version: str, spec: dict) -> list[str]:
    """The status keys the concurrent phase writes for this spec (installRunner.getResultInfo: monitoring,
    multicluster, openpitrix, network, then every top-level key with `enabled: true`, minus metrics_server)."""
    keys = ["monitoring"]
    if (spec.get("multicluster") or {}).get("clusterRole") == "host":
        keys.append("multicluster")                              # roles/ks-multicluster/tasks/main.yml
    if (spec.get("alerting") or {}).get("enabled"):
        keys.append("alerting")                                  # written inside the monitoring playbook
    for key, value in spec.items():
        if not (isinstance(value, dict) and value.get("enabled")) or key not in _STATUS_KEY:
            continue
        if key == "edgeruntime" and not (value.get("kubeedge") or {}).get("enabled"):
            continue                                             # roles/edgeruntime/tasks/main.yaml@v3.4.1
        if key == "kubeedge" and version != "v3.2.1":
            continue
        keys.append(_STATUS_KEY[key])
    return keys


def render_kubesphere_yaml(version: str, spec: dict, jwt: str) -> str:
    """The part of kubesphere-config the lab reads (roles/ks-core/config/templates/kubesphere-config.yaml.j2)."""
    mc = spec.get("multicluster") or {}
    role = mc.get("clusterRole", "none")
    oauth = {"accessTokenMaxAge": 0} if role == "member" else {}
    doc = {"authentication": {"authenticateRateLimiterMaxTries": 10, "jwtSecret": jwt,
                              "oauthOptions": {**oauth, "clients": [{"name": "kubesphere"}]}}}
    section = {}
    if version == "v3.4.1":
        section["clusterRole"] = role
        if role == "member":
            section["enable"] = False
    if role == "host":
        section.update({"enable": True, "agentImage": "kubesphere/tower:v0.2.0",
                        "proxyPublishService": "tower.kubesphere-system.svc"})
        if mc.get("hostClusterName"):
            section["hostClusterName"] = mc["hostClusterName"]
    if section:
        doc["multicluster"] = section
    return yaml.safe_dump(doc, sort_keys=False)


# --- CRDs the played installer brings (schemas reduced to what the lab touches) ------------------------

def _crd(group: str, plural: str, kind: str, scope: str, version: str = "v1alpha1") -> dict:
    return {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}"},
            "spec": {"group": group, "scope": scope,
                     "names": {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"},
                     # No `subresources`: status is an ordinary field (ks-core crds/*clusters.yaml).
                     "versions": [{"name": version, "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                         "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}


KS_CORE_CRDS = (_crd("cluster.kubesphere.io", "clusters", "Cluster", "Cluster"),
                _crd("tenant.kubesphere.io", "workspaces", "Workspace", "Cluster"))
KUBEFED_CRD = _crd("core.kubefed.io", "kubefedclusters", "KubeFedCluster", "Namespaced", "v1beta1")
# iam CRDs the ks-core chart installs on every cluster (ks-installer@v3.4.1:roles/ks-core/ks-core/files/ks-core/
# crds), and the federated type the kubefed chart adds on a host (roles/ks-multicluster/files/kubefed/
# federatedcrds/users.iam.kubesphere.io.yaml).
USER_CRD = _crd("iam.kubesphere.io", "users", "User", "Cluster", "v1alpha2")
FEDERATED_USER_CRD = _crd("types.kubefed.io", "federatedusers", "FederatedUser", "Cluster", "v1beta1")
KUBEFED_MANAGED = "kubefed.io/managed"
FED_HEALTH_SECONDS = 2.0
FED_FAILURE_THRESHOLD = 3  # kubefed@v0.8.1 defaults.go DefaultClusterHealthCheckFailureThreshold
DEFAULT_ADMIN_PASSWORD = "P@88w0rd"  # ks-core chart, getOrDefaultPass


def _kubeconfig_unusable_in_pod(doc: dict) -> str | None:
    """ks-controller-manager builds its client from the bytes (clientcmd.RESTConfigFromKubeConfig): files the
    kubeconfig names are not in its pod, exec plugins are not in its image, no auth-provider is compiled in."""
    for item in doc.get("clusters") or []:
        if (item.get("cluster") or {}).get("certificate-authority"):
            return "certificate-authority file not found in the controller's pod"
    for item in doc.get("users") or []:
        user = item.get("user") or {}
        for key in ("client-certificate", "client-key", "tokenFile"):
            if user.get(key):
                return f"{key} file not found in the controller's pod"
        if user.get("exec"):
            return "exec plugin not found in the controller's image"
        if user.get("auth-provider"):
            return f"no Auth Provider found for name {(user['auth-provider'] or {}).get('name')!r}"
    return None


# --- small HTTPS/HTTP servers: ks-apiserver's /kapis/version and the v3.4.1 webhook --------------------

def _serving_cert(address: str, workdir: str) -> tuple[str, str, str]:
    """A CA and a serving certificate for `address` (an IP SAN): (ca_pem, cert_path, key_path)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kslab-fixture-webhook")])
    import ipaddress
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    cert_path, key_path = f"{workdir}/tls.crt", f"{workdir}/tls.key"
    with open(cert_path, "wb") as fh:
        fh.write(cert_pem)
    with open(key_path, "wb") as fh:
        fh.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                   serialization.NoEncryption()))
    return cert_pem.decode(), cert_path, key_path


class _Servers:
    """One HTTPS server for every cluster's webhook (path /<cluster>/validate-...) and one plain HTTP server
    per cluster for ks-apiserver (the API server's service proxy forwards only the path)."""

    def __init__(self, address: str):
        self.address = address
        self.workdir = tempfile.mkdtemp(prefix="kslab-fixture-")
        self.ca_pem, cert, key = _serving_cert(address, self.workdir)
        self.cert_path, self.key_path = cert, key
        self.actors: dict[str, ClusterActor] = {}
        outer = self

        class WebhookHandler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                cluster, _, path = self.path.split("?", 1)[0].lstrip("/").partition("/")  # API server adds ?timeout=
                actor = outer.actors.get(cluster)
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                if actor is None or "/" + path != WEBHOOK_PATH or not actor.multicluster_enabled():
                    # the path is registered only with multicluster enabled (cmd/controller-manager/app/server.go)
                    self.send_response(404)
                    self.end_headers()
                    return
                answer = actor.validate_cluster_update(body.get("request") or {})
                data = json.dumps({"apiVersion": body.get("apiVersion", "admission.k8s.io/v1beta1"),
                                   "kind": "AdmissionReview", "response": answer}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.webhook = ThreadingHTTPServer(("0.0.0.0", 0), WebhookHandler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.webhook.socket = ctx.wrap_socket(self.webhook.socket, server_side=True)
        self.webhook_port = self.webhook.server_address[1]
        self.apiservers: dict[str, ThreadingHTTPServer] = {}
        threading.Thread(target=self.webhook.serve_forever, daemon=True).start()

    def webhook_url(self, cluster: str) -> str:
        return f"https://{self.address}:{self.webhook_port}/{cluster}{WEBHOOK_PATH}"

    def apiserver_port(self, actor: ClusterActor) -> int:
        if actor.name not in self.apiservers:
            class VersionHandler(BaseHTTPRequestHandler):
                def log_message(self, *args):
                    pass

                def do_GET(self):
                    if self.path.rstrip("/") != "/kapis/version" or not actor.ks_apiserver_up:
                        self.send_response(503 if actor.ks_apiserver_up is False else 404)
                        self.end_headers()
                        return
                    data = json.dumps({"gitVersion": actor.version or "", "kubernetes": {}}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)

            server = ThreadingHTTPServer(("0.0.0.0", 0), VersionHandler)
            threading.Thread(target=server.serve_forever, daemon=True).start()
            self.apiservers[actor.name] = server
        return self.apiservers[actor.name].server_address[1]

    def close(self) -> None:
        for server in [self.webhook, *self.apiservers.values()]:
            server.shutdown()
            server.server_close()


# --- one cluster ------------------------------------------------------------------------------------

class _Run:
    """One run of the installer hook, as a list of (due, action) in upstream's order."""

    def __init__(self, steps: list):
        self.steps = steps


class ClusterActor:
    def __init__(self, name: str, kubeconfig_text: str, install_delay: float, log, servers: _Servers,
                 play_kube_controllers: bool, resync_seconds: float):
        self.name = name
        self.kubeconfig_text = kubeconfig_text
        self.api = _api(kubeconfig_text)
        self.core = client.CoreV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.delay = install_delay
        self.log = log
        self.servers = servers
        self.play_kube_controllers = play_kube_controllers
        self.resync_seconds = resync_seconds
        self.version: str | None = None
        # installer hook state
        self.seen: tuple[str, str] | None = None   # (cc uid, spec digest) of the last event handled
        self.queued = False
        self.run: _Run | None = None
        self.retry_at = 0.0
        self.installs = 0                           # completed runs (status.core.version written)
        self.hook_errors: list[str] = []
        self.recreated = 0
        # ks-apiserver stand-in: None until ks-core is installed; tests may set it False
        self.ks_apiserver_up: bool | None = None
        self.last_error = ""
        # controller state
        self.synced: dict[str, tuple[str, float]] = {}  # Cluster name -> (spec digest, time of last sync)
        self.health_checked = 0.0
        self.health_failures: dict[str, int] = {}  # KubeFedCluster -> failed probes in a row
        self.propagated: dict[tuple[str, str], str] = {}  # (member, user) -> resourceVersion kubefed wrote
        self.tenants = ks_tenants.Tenants(self)  # the tenant controllers (tests/harness/ks_tenants.py)

    # --- ks-installer -------------------------------------------------------------------------------
    def _installer_version(self) -> str | None:
        """The release is the installer image's tag (deploy/kubesphere-installer.yaml)."""
        try:
            deploy = self.apps.read_namespaced_deployment("ks-installer", NS, _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        image = deploy.spec.template.spec.containers[0].image
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        return tag if tag in SUPPORTED else None

    def _cc(self) -> dict | None:
        try:
            return self.custom.get_namespaced_custom_object("installer.kubesphere.io", "v1alpha1", NS,
                                                            "clusterconfigurations", "ks-installer", _request_timeout=5)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def _patch_status(self, status: dict) -> None:
        self.custom.patch_namespaced_custom_object("installer.kubesphere.io", "v1alpha1", NS, "clusterconfigurations",
                                                   "ks-installer", {"status": status}, _request_timeout=5)

    def reconcile_installer(self) -> None:
        version = self._installer_version()
        if version is None:
            return
        self.version = version
        cc = self._cc()
        if cc is not None:
            event = (cc["metadata"]["uid"], hashlib.sha256(json.dumps(cc.get("spec"), sort_keys=True).encode())
                     .hexdigest())
            if event != self.seen:  # an add (new uid) or a .spec change: the hook binding fires
                self.seen = event
                self.queued = True
        now = time.monotonic()
        if self.run is None and self.queued and now >= self.retry_at and cc is not None:
            self.queued = False
            self._start_run(cc, version)
        if self.run is not None:
            while self.run is not None and self.run.steps and self.run.steps[0][0] <= time.monotonic():
                _, action = self.run.steps.pop(0)
                try:
                    action()
                except Exception as exc:
                    # A playbook failed: the run ends there (installRunner.py exits). The fixture's own API
                    # calls can fail for passing reasons (a namespace's default ServiceAccount not made yet, an
                    # API server restarting in a fault test), so the run is tried again, as on a pod restart.
                    self.log(f"{self.name}: installer run failed ({exc.__class__.__name__}: "
                             f"{str(exc).splitlines()[0][:160]}); running again in {HOOK_RETRY_SECONDS:.0f}s")
                    self.run, self.queued, self.retry_at = None, True, time.monotonic() + HOOK_RETRY_SECONDS
            if self.run is not None and not self.run.steps:
                self.run = None

    def _start_run(self, cc: dict, version: str) -> None:
        try:
            reasons = migrate(version, cc.get("spec"), cc.get("status"))
        except HookError as exc:
            self.hook_errors.append(str(exc))
            self.log(f"{self.name}: installer hook failed ({exc}); retrying in {HOOK_RETRY_SECONDS:.0f}s")
            self.queued, self.retry_at = True, time.monotonic() + HOOK_RETRY_SECONDS
            return
        if reasons:
            self._recreate_cc(cc, version, reasons)
            return
        missing = required_reads(version, cc["spec"])
        spec, snapshot = copy.deepcopy(cc["spec"]), copy.deepcopy(cc.get("status") or {})
        start = time.monotonic()

        def at(fraction: float, action):
            return (start + self.delay * fraction, action)

        if missing:  # a playbook of preInstall fails: `exit()` (status 0), no retry, nothing more is written
            self.log(f"{self.name}: installer run failed in preInstall (undefined: {', '.join(missing)})")
            self.run = _Run([at(0.1, lambda: None)])
            return
        steps = [at(0.1, lambda key=key: self._component(key, spec)) for key in preinstall_status_writes(spec)
                 if (snapshot.get(key) or {}).get("status") != "enabled"]
        steps.append(at(0.15, lambda: self._ks_core(spec, snapshot)))
        window = [0.3 + 0.45 * random.random() for _ in component_status_writes(version, spec)]
        for fraction, key in sorted(zip(window, component_status_writes(version, spec), strict=True)):
            if ((snapshot.get(key) or {}).get("status")) != "enabled":
                steps.append(at(fraction, lambda key=key, spec=spec: self._component(key, spec)))
        steps.append(at(0.85, lambda: self._write_kubesphere_config(version, spec)))
        steps.append(at(1.0, lambda: self._result_info(version)))
        self.run = _Run(steps)
        self.log(f"{self.name}: installer run started ({version}, role "
                 f"{(spec.get('multicluster') or {}).get('clusterRole')})")

    def _recreate_cc(self, cc: dict, version: str, reasons: list[str]) -> None:
        body = {"apiVersion": cc["apiVersion"], "kind": cc["kind"],
                "metadata": {"name": "ks-installer", "namespace": NS, "labels": {"version": version}},
                "spec": cc["spec"]}
        if "clusterId" in (cc.get("status") or {}):
            body["status"] = {"clusterId": cc["status"]["clusterId"]}
        self.custom.delete_namespaced_custom_object("installer.kubesphere.io", "v1alpha1", NS, "clusterconfigurations",
                                                    "ks-installer", _request_timeout=5)
        for _ in range(50):
            if self._cc() is None:
                break
            time.sleep(0.1)
        self.custom.create_namespaced_custom_object("installer.kubesphere.io", "v1alpha1", NS, "clusterconfigurations",
                                                    body, _request_timeout=5)
        self.recreated += 1
        self.log(f"{self.name}: installer migrated the cc ({', '.join(reasons)}): deleted and created again")

    def _ks_core(self, spec: dict, snapshot: dict) -> None:
        # roles/ks-core/init-token: Secret kubesphere-secret, key `secret`
        wanted = (spec.get("authentication") or {}).get("jwtSecret") or ""
        try:
            existing = self.core.read_namespaced_secret("kubesphere-secret", NS, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            existing = None
        if existing is not None and wanted:
            self.core.delete_namespaced_secret("kubesphere-secret", NS, _request_timeout=5)
            existing = None
        if existing is None:
            value = wanted or "".join(random.choice(string.ascii_letters + string.digits) for _ in range(32))
            self.core.create_namespaced_secret(NS, client.V1Secret(
                metadata=client.V1ObjectMeta(name="kubesphere-secret"),
                string_data={"secret": value, "token": "played-admin-token"}), _request_timeout=5)
        # the ks-core chart
        for crd in KS_CORE_CRDS + (ks_tenants.user_crd(self.version or ""),) + ks_tenants.KS_CORE_TENANT_CRDS:
            self._ensure_crd(crd)
        # the chart's account.yaml: User admin (only if absent), password getOrDefaultPass, not yet encrypted
        _create(lambda: self.custom.create_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", {
            "apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "User",
            "metadata": {"name": "admin", "annotations": {"iam.kubesphere.io/uninitialized": "true"}},
            "spec": {"email": "admin@kubesphere.io", "password": DEFAULT_ADMIN_PASSWORD},
            "status": {"state": "Active"}}, _request_timeout=5))
        self._ensure_ks_apiserver_service()
        self._ensure_ks_core_workloads()
        if self.version == "v3.4.1":
            self._ensure_webhook_configuration()
        if self.ks_apiserver_up is None:
            self.ks_apiserver_up = True
        self._patch_status({"core": {"status": "enabled", "enabledTime": _now()}})

    def _component(self, key: str, spec: dict) -> None:
        if key == "multicluster":  # roles/ks-multicluster: tower and the kubefed chart
            self._ensure_namespace(KUBEFED_NS)
            self._ensure_crd(KUBEFED_CRD)
            self._ensure_crd(FEDERATED_USER_CRD)
            for crd in ks_tenants.FEDERATED_TENANT_CRDS:
                self._ensure_crd(crd)
        self._patch_status({key: {"status": "enabled", "enabledTime": _now()}})

    def _write_kubesphere_config(self, version: str, spec: dict) -> None:
        secret = self.core.read_namespaced_secret("kubesphere-secret", NS, _request_timeout=5)
        jwt = base64.b64decode(secret.data["secret"]).decode()
        body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kubesphere-config", namespace=NS),
                                  data={"kubesphere.yaml": render_kubesphere_yaml(version, spec, jwt)})
        try:
            self.core.replace_namespaced_config_map("kubesphere-config", NS, body, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            self.core.create_namespaced_config_map(NS, body, _request_timeout=5)

    def _result_info(self, version: str) -> None:
        self._patch_status({"core": {"version": version}})                  # roles/check-result
        cc = self._cc() or {}
        if "clusterId" not in (cc.get("status") or {}):                      # roles/telemetry
            self._patch_status({"clusterId": secrets.token_hex(8)})
        self.installs += 1
        self.log(f"{self.name}: installer run #{self.installs} done")

    def _ensure_crd(self, body: dict) -> None:
        ext = client.ApiextensionsV1Api(self.api)
        try:
            ext.create_custom_resource_definition(body, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise
            return
        group, plural = body["spec"]["group"], body["spec"]["names"]["plural"]
        version = body["spec"]["versions"][0]["name"]
        for _ in range(50):  # until it is served
            try:
                self.custom.list_cluster_custom_object(group, version, plural, _request_timeout=5)
                return
            except ApiException:
                time.sleep(0.1)

    def _ensure_namespace(self, name: str) -> None:
        try:
            self.core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)), _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _ensure_ks_apiserver_service(self) -> None:
        """Service ks-apiserver (port 80, ks-core chart templates/ks-apiserver.yml) in front of the played
        ks-apiserver. The API server's service proxy only dials an endpoint address that belongs to a Pod
        with that IP (pkg/registry/core/service/storage/storage.go, isValidAddress), so the stand-in gets a
        Pod object that is never scheduled and carries the fixture's address as its IP."""
        port = self.servers.apiserver_port(self)
        pod_name = "ks-apiserver-played"
        pod = client.V1Pod(
            metadata=client.V1ObjectMeta(name=pod_name, labels={"app": "ks-apiserver", "kslab.io/played": "true"}),
            spec=client.V1PodSpec(node_selector={"kslab.io/played": "never-scheduled"}, containers=[
                client.V1Container(name="ks-apiserver", image=f"kubesphere/ks-apiserver:{self.version}")]))
        service = client.V1Service(metadata=client.V1ObjectMeta(name="ks-apiserver", labels={"app": "ks-apiserver"}),
                                   spec=client.V1ServiceSpec(ports=[client.V1ServicePort(port=80, protocol="TCP")]))
        endpoints = client.V1Endpoints(
            metadata=client.V1ObjectMeta(name="ks-apiserver"),
            subsets=[client.V1EndpointSubset(
                addresses=[client.V1EndpointAddress(ip=self.servers.address, target_ref=client.V1ObjectReference(
                    kind="Pod", namespace=NS, name=pod_name))],
                ports=[client.CoreV1EndpointPort(port=port, protocol="TCP")])])
        _create(lambda: self.core.create_namespaced_pod(NS, pod, _request_timeout=5))
        live = self.core.read_namespaced_pod(pod_name, NS, _request_timeout=5)
        if not live.status or live.status.pod_ip != self.servers.address:
            live.status = client.V1PodStatus(phase="Pending", pod_ip=self.servers.address,
                                             pod_ips=[client.V1PodIP(ip=self.servers.address)])
            self.core.replace_namespaced_pod_status(pod_name, NS, live, _request_timeout=5)
        _create(lambda: self.core.create_namespaced_service(NS, service, _request_timeout=5))
        _create(lambda: self.core.create_namespaced_endpoints(NS, endpoints, _request_timeout=5))

    def _ensure_ks_core_workloads(self) -> None:
        """What the ks-core chart creates for the two components, the same at v3.2.1 and v3.4.1
        (ks-installer@<tag>:roles/ks-core/ks-core/files/ks-core/templates/): Deployment ks-controller-manager
        (selector app+tier, command controller-manager --logtostderr=true --leader-elect=true, ports 8080/8443,
        kubesphere-config at /etc/kubesphere/, the webhook cert at /tmp/k8s-webhook-server/serving-certs),
        its Service (443 -> 8443, same selector; ks-controller-manager.yaml), the Secret
        ks-controller-manager-webhook-cert (ca.crt, tls.crt, tls.key; genCA/genSignedCert in webhook.yaml),
        and Deployment ks-apiserver (ks-apiserver.yml; its Service is the stand-in above). Replicas: 1
        (custom-values-ks-core.yaml.j2 without master_num). No pod of these runs here."""
        apps = client.AppsV1Api(self.api)
        for name, command, ports, mounts in (
                ("ks-controller-manager", ["controller-manager", "--logtostderr=true", "--leader-elect=true"],
                 [8080, 8443], [("kubesphere-config", "/etc/kubesphere/"),
                                ("webhook-secret", "/tmp/k8s-webhook-server/serving-certs")]),
                ("ks-apiserver", ["ks-apiserver", "--logtostderr=true"], [9090],
                 [("kubesphere-config", "/etc/kubesphere/")])):
            labels = {"app": name, "tier": "backend"}
            volumes = [client.V1Volume(name="kubesphere-config", config_map=client.V1ConfigMapVolumeSource(
                name="kubesphere-config"))]
            if name == "ks-controller-manager":
                volumes.append(client.V1Volume(name="webhook-secret", secret=client.V1SecretVolumeSource(
                    secret_name="ks-controller-manager-webhook-cert", default_mode=420)))
            body = client.V1Deployment(
                metadata=client.V1ObjectMeta(name=name, labels={**labels, "version": self.version}),
                spec=client.V1DeploymentSpec(
                    replicas=1, selector=client.V1LabelSelector(match_labels=labels),
                    template=client.V1PodTemplateSpec(
                        metadata=client.V1ObjectMeta(labels=labels),
                        spec=client.V1PodSpec(volumes=volumes, containers=[client.V1Container(
                            name=name, image=f"kubesphere/{name}:{self.version}", command=command,
                            ports=[client.V1ContainerPort(container_port=p, protocol="TCP") for p in ports],
                            volume_mounts=[client.V1VolumeMount(name=v, mount_path=m) for v, m in mounts])]))))
            _create(lambda body=body: apps.create_namespaced_deployment(NS, body, _request_timeout=5))
        service = client.V1Service(
            metadata=client.V1ObjectMeta(name="ks-controller-manager",
                                         labels={"app": "ks-controller-manager", "tier": "backend"}),
            spec=client.V1ServiceSpec(selector={"app": "ks-controller-manager", "tier": "backend"},
                                      ports=[client.V1ServicePort(port=443, target_port=8443, protocol="TCP")]))
        _create(lambda: self.core.create_namespaced_service(NS, service, _request_timeout=5))
        ca, cert, key = self.servers.ca_pem, open(self.servers.cert_path).read(), open(self.servers.key_path).read()
        secret = client.V1Secret(metadata=client.V1ObjectMeta(name="ks-controller-manager-webhook-cert"),
                                 type="Opaque", string_data={"ca.crt": ca, "tls.crt": cert, "tls.key": key})
        _create(lambda: self.core.create_namespaced_secret(NS, secret, _request_timeout=5))

    def _ensure_webhook_configuration(self) -> None:
        admission = client.AdmissionregistrationV1Api(self.api)
        body = {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
                "metadata": {"name": WEBHOOK_CONFIG},
                "webhooks": [{"name": WEBHOOK_NAME, "admissionReviewVersions": ["v1beta1"],
                              # upstream: service ks-controller-manager:443 in kubesphere-system; the played
                              # controller runs outside the cluster, so the same handler is reached by URL
                              "clientConfig": {"url": self.servers.webhook_url(self.name),
                                               "caBundle": base64.b64encode(self.servers.ca_pem.encode()).decode()},
                              "failurePolicy": "Fail", "matchPolicy": "Exact", "sideEffects": "None",
                              "timeoutSeconds": 30,
                              "rules": [{"apiGroups": ["cluster.kubesphere.io"], "apiVersions": ["v1alpha1"],
                                         "operations": ["UPDATE"], "resources": ["clusters"], "scope": "*"}]}]}
        try:
            admission.create_validating_webhook_configuration(body, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise

    # --- ks-controller-manager ----------------------------------------------------------------------
    def kubesphere_config(self) -> dict:
        try:
            cm = self.core.read_namespaced_config_map("kubesphere-config", NS, _request_timeout=5)
        except ApiException:
            return {}
        return yaml.safe_load((cm.data or {}).get("kubesphere.yaml", "")) or {}

    def multicluster_enabled(self) -> bool:
        return (self.kubesphere_config().get("multicluster") or {}).get("enable") is True

    def validate_cluster_update(self, request: dict) -> dict:
        """kubesphere@v3.4.1:pkg/controller/cluster/cluster_webhook.go, ValidatingHandler.Handle."""
        answer = {"uid": request.get("uid"), "allowed": True}
        if request.get("operation") != "UPDATE":
            return answer
        old, new = request.get("oldObject") or {}, request.get("object") or {}
        old_uid = (old.get("status") or {}).get("uid")
        if not old_uid:
            return answer
        try:
            kubeconfig = base64.b64decode(((new.get("spec") or {}).get("connection") or {}).get("kubeconfig") or "")
            member = client.CoreV1Api(_api(kubeconfig.decode()))
            kube_system = member.read_namespace("kube-system", _request_timeout=5)
        except Exception as exc:
            return {**answer, "allowed": False, "status": {"code": 403, "message": f"{exc.__class__.__name__}: "
                                                                                   f"{str(exc)[:200]}"}}
        if kube_system.metadata.uid != old_uid:
            return {**answer, "allowed": False, "status": {"code": 403, "message":
                    "this kubeconfig corresponds to a different cluster than the previous one, you need to make sure "
                    "that kubeconfig is not from another cluster"}}
        return answer

    def _clusters(self) -> list[dict]:
        try:
            return self.custom.list_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters",
                                                          _request_timeout=5).get("items", [])
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def _update_cluster(self, obj: dict) -> bool:
        """A full Update (what the controller does); False when the API server (or the webhook) refuses it."""
        try:
            self.custom.replace_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters",
                                                      obj["metadata"]["name"], obj, _request_timeout=10)
            return True
        except ApiException as exc:
            self.log(f"{self.name}: Cluster {obj['metadata']['name']} update refused: {exc.status} "
                     f"{_message(exc)[:160]}")
            return False

    def reconcile_clusters(self) -> None:
        if self.version is None or not self.multicluster_enabled():
            return
        items = self._clusters()
        self._reconcile_host_cluster(items)
        for obj in items:
            meta = obj["metadata"]
            name = meta["name"]
            if meta.get("deletionTimestamp"):
                if FINALIZER in (meta.get("finalizers") or []):
                    self._unjoin_host_side(name)
                    obj["metadata"]["finalizers"] = [f for f in meta["finalizers"] if f != FINALIZER]
                    if self._update_cluster(obj):
                        self.log(f"{self.name}: unjoined {name}")
                continue
            digest = hashlib.sha256(json.dumps(obj.get("spec"), sort_keys=True).encode()).hexdigest()
            last = self.synced.get(name)
            # enqueued on a spec change and every resync period; a failed sync is retried (rate-limited)
            if last and last[0] == digest and time.monotonic() < last[1]:
                continue
            ok = self._sync_cluster(obj)
            self.synced[name] = (digest, time.monotonic() + (self.resync_seconds if ok else 2.0))

    def _reconcile_host_cluster(self, items: list[dict]) -> None:
        """reconcileHostCluster: the host's own entry, named multicluster.hostClusterName."""
        if any(HOST_LABEL in (o["metadata"].get("labels") or {}) for o in items):
            return
        name = (self.kubesphere_config().get("multicluster") or {}).get("hostClusterName") or "host"
        body = {"apiVersion": "cluster.kubesphere.io/v1alpha1", "kind": "Cluster",
                "metadata": {"name": name, "labels": {HOST_LABEL: "", MANAGED_LABEL: "true"},
                             "annotations": {"kubesphere.io/description": "The description was created by "
                                                                         "KubeSphere automatically."}},
                "spec": {"joinFederation": True, "enable": True, "provider": "kubesphere",
                         "connection": {"type": "direct",
                                        "kubeconfig": base64.b64encode(self.kubeconfig_text.encode()).decode()}}}
        try:
            self.custom.create_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", body,
                                                     _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise

    def _sync_cluster(self, obj: dict) -> bool:
        """syncCluster; True when it completed (False: requeued)."""
        meta, spec = obj["metadata"], obj.get("spec") or {}
        name = meta["name"]
        if FINALIZER not in (meta.get("finalizers") or []):
            obj["metadata"]["finalizers"] = (meta.get("finalizers") or []) + [FINALIZER]
            if not self._update_cluster(obj):
                return False
            obj = self.custom.get_cluster_custom_object("cluster.kubesphere.io", "v1alpha1", "clusters", name,
                                                        _request_timeout=5)
        if not spec.get("joinFederation"):
            return True
        raw = base64.b64decode(((spec.get("connection") or {}).get("kubeconfig")) or "")
        if not raw:
            return True
        doc = yaml.safe_load(raw.decode())
        problem = _kubeconfig_unusable_in_pod(doc)
        if problem:  # the rest config cannot be built: the error is returned, no status update
            self.log(f"{self.name}: cluster {name}: {problem}")
            return False
        now = _now()
        status = obj.get("status") or {}
        conditions = {c["type"]: c for c in status.get("conditions") or []}
        try:
            member_api = _api(raw.decode())
            kube_system_uid = self._join(name, member_api, doc, meta.get("labels") or {})
        except Exception as exc:  # join failure: Federated=False (and Ready=False at v3.4.1)
            conditions["Federated"] = {"type": "Federated", "status": "False", "reason": str(exc)[:200],
                                       "message": "Cluster can not join federation control plane",
                                       "lastUpdateTime": now, "lastTransitionTime": now}
            if self.version == "v3.4.1":
                conditions["Ready"] = {"type": "Ready", "status": "False",
                                       "reason": "Cluster join federation control plane failed",
                                       "message": "Cluster is Not Ready now", "lastUpdateTime": now,
                                       "lastTransitionTime": now}
            obj["status"] = {**status, "conditions": list(conditions.values())}
            self._update_cluster(obj)
            self.log(f"{self.name}: cluster {name} failed to join: {str(exc)[:160]}")
            return False
        for ctype, reason, message in (("Federated", "", "Cluster has joined federation control plane successfully"),
                                       ("Ready", "Ready", "Cluster is available now")):
            conditions[ctype] = {"type": ctype, "status": "True", "reason": reason, "message": message,
                                 "lastUpdateTime": now,
                                 "lastTransitionTime": (conditions.get(ctype) or {}).get("lastTransitionTime", now)}
        new_status = {**status, "conditions": list(conditions.values())}
        if self.version == "v3.4.1":
            new_status["uid"] = kube_system_uid
        connection = obj["spec"].setdefault("connection", {})
        endpoint_missing = not connection.get("kubernetesAPIEndpoint")
        if endpoint_missing:  # set from the kubeconfig's server when empty (syncCluster, both releases)
            connection["kubernetesAPIEndpoint"] = next(c["cluster"] for c in doc["clusters"])["server"]
        if new_status != status or endpoint_missing:
            obj["status"] = new_status
            if not self._update_cluster(obj):
                return False
            self.log(f"{self.name}: cluster {name} -> Ready")
        if self.version == "v3.4.1":
            self._set_member_cluster_name(member_api, name)
        return True

    def _join(self, name: str, member_api: client.ApiClient, doc: dict, labels: dict) -> str:
        """join.go joinClusterForNamespace: member ServiceAccount and RBAC, host Secret and KubeFedCluster."""
        member = client.CoreV1Api(member_api)
        sa_name = f"{name}-kubesphere"
        member.read_namespace("kube-system", _request_timeout=5)  # preflight: the member answers
        for body in (client.V1Namespace(metadata=client.V1ObjectMeta(name=KUBEFED_NS)),):
            _create(lambda body=body: member.create_namespace(body, _request_timeout=5))
        _create(lambda: member.create_namespaced_service_account(
            KUBEFED_NS, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=sa_name)), _request_timeout=5))
        rbac = client.RbacAuthorizationV1Api(member_api)
        role_name = f"kubefed-controller-manager:{sa_name}"
        _create(lambda: rbac.create_cluster_role({
            "metadata": {"name": role_name},
            "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
                      {"nonResourceURLs": ["*"], "verbs": ["get"]}]}, _request_timeout=5))
        _create(lambda: rbac.create_cluster_role_binding(client.V1ClusterRoleBinding(
            metadata=client.V1ObjectMeta(name=role_name),
            role_ref=client.V1RoleRef(api_group="rbac.authorization.k8s.io", kind="ClusterRole", name=role_name),
            subjects=[client.RbacV1Subject(kind="ServiceAccount", name=sa_name, namespace=KUBEFED_NS)]),
            _request_timeout=5))
        token = self._service_account_token(member, sa_name)
        host_secret = client.V1Secret(metadata=client.V1ObjectMeta(name=f"{name}-secret", namespace=KUBEFED_NS),
                                      data={"token": base64.b64encode(token).decode()})
        self._ensure_namespace(KUBEFED_NS)
        try:
            self.core.create_namespaced_secret(KUBEFED_NS, host_secret, _request_timeout=5)
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_secret(f"{name}-secret", KUBEFED_NS, host_secret, _request_timeout=5)
        # checkWorkspaces lists the member's Workspaces: it needs KubeSphere's tenant CRD there
        client.CustomObjectsApi(member_api).list_cluster_custom_object(
            "tenant.kubesphere.io", "v1alpha1", "workspaces", label_selector="kubefed.io/managed=true",
            _request_timeout=5)
        cluster = next(c["cluster"] for c in doc["clusters"])
        kubefed = {"apiVersion": "core.kubefed.io/v1beta1", "kind": "KubeFedCluster",
                   "metadata": {"name": name, "namespace": KUBEFED_NS, "labels": labels},
                   "spec": {"apiEndpoint": cluster["server"],
                            "caBundle": cluster.get("certificate-authority-data", ""),
                            "secretRef": {"name": f"{name}-secret"}}}
        if cluster.get("insecure-skip-tls-verify"):
            kubefed["spec"]["disabledTLSValidations"] = ["*"]
        _create(lambda: self.custom.create_namespaced_custom_object("core.kubefed.io", "v1beta1", KUBEFED_NS,
                                                                    "kubefedclusters", kubefed, _request_timeout=5))
        return member.read_namespace("kube-system", _request_timeout=5).metadata.uid

    def _service_account_token(self, member: client.CoreV1Api, sa_name: str) -> bytes:
        """v3.4.1 creates the token Secret itself (createServiceAccountWithSecret); v3.2.1 waits up to 30 s for
        one that kube-controller-manager makes only on Kubernetes < 1.24 (populateSecretInHostCluster)."""
        if self.version == "v3.4.1":
            sa = member.read_namespaced_service_account(sa_name, KUBEFED_NS, _request_timeout=5)
            if not sa.secrets:
                secret = member.create_namespaced_secret(KUBEFED_NS, client.V1Secret(
                    metadata=client.V1ObjectMeta(generate_name=f"{sa_name}-token-",
                                                 annotations={"kubernetes.io/service-account.name": sa_name}),
                    type="kubernetes.io/service-account-token"), _request_timeout=5)
                sa.secrets = [client.V1ObjectReference(name=secret.metadata.name)]
                member.replace_namespaced_service_account(sa_name, KUBEFED_NS, sa, _request_timeout=5)
            # The member's token controller fills data.token with a token of this ServiceAccount; where none runs
            # (the API-server-only tier) a TokenRequest gives a token of the same ServiceAccount.
            name = sa.secrets[0].name
            for _ in range(10):
                data = member.read_namespaced_secret(name, KUBEFED_NS, _request_timeout=5).data or {}
                if data.get("token"):
                    return base64.b64decode(data["token"])
                if not self.play_kube_controllers:
                    time.sleep(0.5)  # a real kube-controller-manager fills it within moments
                    continue
                break
            request = member.create_namespaced_service_account_token(
                sa_name, KUBEFED_NS, {"spec": {"expirationSeconds": 7 * 86400}}, _request_timeout=5)
            return request.status.token.encode()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            for item in member.list_namespaced_secret(KUBEFED_NS, _request_timeout=5).items:
                if item.type == "kubernetes.io/service-account-token" and \
                        (item.metadata.annotations or {}).get("kubernetes.io/service-account.name") == sa_name:
                    return base64.b64decode((item.data or {}).get("token", ""))
            time.sleep(1)
        raise RuntimeError("timed out waiting for the condition")

    def _set_member_cluster_name(self, member_api: client.ApiClient, name: str) -> None:
        """v3.4.1 setClusterNameInConfigMap: the member's kubesphere-config gets multicluster.clusterName."""
        member = client.CoreV1Api(member_api)
        try:
            cm = member.read_namespaced_config_map("kubesphere-config", NS, _request_timeout=5)
        except ApiException:
            return
        doc = yaml.safe_load((cm.data or {}).get("kubesphere.yaml", "")) or {}
        if (doc.get("multicluster") or {}).get("clusterName") == name:
            return
        doc.setdefault("multicluster", {})["clusterName"] = name
        cm.data["kubesphere.yaml"] = yaml.safe_dump(doc, sort_keys=False)
        member.replace_namespaced_config_map("kubesphere-config", NS, cm, _request_timeout=5)

    def _unjoin_host_side(self, name: str) -> None:
        """unJoinFederation(nil, name): the member is not touched (unjoin.go)."""
        for delete in (lambda: self.custom.delete_namespaced_custom_object(
                           "core.kubefed.io", "v1beta1", KUBEFED_NS, "kubefedclusters", name, _request_timeout=5),
                       lambda: self.core.delete_namespaced_secret(f"{name}-secret", KUBEFED_NS, _request_timeout=5)):
            try:
                delete()
            except ApiException as exc:
                if exc.status != 404:
                    raise

    # --- kube-controller-manager (live tier only) ------------------------------------------------------
    def finalize_namespaces(self) -> None:
        for ns in self.core.list_namespace(_request_timeout=5).items:
            if ns.metadata.deletion_timestamp and ns.spec and ns.spec.finalizers:
                ns.spec.finalizers = []
                self.core.replace_namespace_finalize(ns.metadata.name, ns, _request_timeout=5)

    def collect_garbage(self) -> None:
        """pulumi-kubernetes deletes in the foreground; with no dependents the collector just clears
        the finalizer (JSON patch for built-in kinds, merge patch for custom objects)."""
        apps, rbac = self.apps, client.RbacAuthorizationV1Api(self.api)
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
                    try:
                        if meta.get("namespace"):
                            self.custom.patch_namespaced_custom_object(group, "v1alpha1", meta["namespace"], plural,
                                                                       meta["name"], body, _request_timeout=5)
                        else:
                            self.custom.patch_cluster_custom_object(group, "v1alpha1", plural, meta["name"], body,
                                                                    _request_timeout=5)
                    except ApiException:
                        pass  # e.g. the Cluster webhook denies it: the real collector would retry too

    # --- KubeFed and the user controller on a host ---------------------------------------------------
    def _kubefed_clusters(self) -> list[dict]:
        try:
            return self.custom.list_namespaced_custom_object("core.kubefed.io", "v1beta1", KUBEFED_NS,
                                                             "kubefedclusters", _request_timeout=5)["items"]
        except ApiException as exc:
            if exc.status == 404:
                return []
            raise

    def _member_api(self, fed: dict) -> tuple[client.ApiClient, str]:
        """A client as kubefed builds it from a KubeFedCluster: apiEndpoint, caBundle (or disabled TLS
        validation) and the token of its Secret (pkg/controller/util/cluster_util.go BuildClusterConfig)."""
        spec = fed["spec"]
        secret = self.core.read_namespaced_secret(spec["secretRef"]["name"], KUBEFED_NS, _request_timeout=5)
        cluster = {"server": spec["apiEndpoint"]}
        if "*" in (spec.get("disabledTLSValidations") or []):
            cluster["insecure-skip-tls-verify"] = True
        elif spec.get("caBundle"):  # without one, the system's roots (which do not know the lab's CAs)
            cluster["certificate-authority-data"] = spec["caBundle"]
        token = base64.b64decode(secret.data["token"]).decode()
        return _api(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", "current-context": "m",
                                    "clusters": [{"name": "m", "cluster": cluster}],
                                    "users": [{"name": "m", "user": {"token": token}}],
                                    "contexts": [{"name": "m", "context": {"cluster": "m", "user": "m"}}]})), token

    def reconcile_users(self) -> None:
        """The tenant controllers on every cluster (tests/harness/ks_tenants.py), the user controller's
        encryptPassword among them: bcrypt with a random salt, so each cluster's hash of one password differs."""
        self.tenants.tick()

    def reconcile_kubefed(self) -> None:
        if self.version is None or not self.multicluster_enabled():
            return
        if time.monotonic() - self.health_checked >= FED_HEALTH_SECONDS:
            self.health_checked = time.monotonic()
            for fed in self._kubefed_clusters():
                self._check_health(fed)
        self._sync_users()

    def _check_health(self, fed: dict) -> None:
        now = _now()
        try:
            api, token = self._member_api(fed)
            response = api.call_api("GET", api.configuration.host + "/healthz",
                                    header_params={"Authorization": f"Bearer {token}"}, _request_timeout=3)
            response.read()
            text = response.data.decode() if response.status == 200 else f"HTTP {response.status}"
            conditions = [{"type": "Ready", "status": "True" if text == "ok" else "False",
                           "reason": "ClusterReady" if text == "ok" else "ClusterNotReady"}]
            if text != "ok":
                conditions.append({"type": "Offline", "status": "False", "reason": "ClusterReachable"})
        except Exception as exc:
            conditions = [{"type": "Offline", "status": "True", "reason": "ClusterNotReachable"}]
            text = f"{exc.__class__.__name__}: {str(exc).splitlines()[0][:160]}"
        name = fed["metadata"]["name"]
        # thresholdAdjustedClusterStatus (controller.go): a change to not-ready counts only after
        # FailureThreshold probes in a row; one success is enough back (SuccessThreshold 1)
        if text == "ok":
            self.health_failures[name] = 0
        else:
            self.health_failures[name] = self.health_failures.get(name, 0) + 1
            if self.health_failures[name] < FED_FAILURE_THRESHOLD and (fed.get("status") or {}).get("conditions"):
                return
        old = {c["type"]: c for c in (fed.get("status") or {}).get("conditions") or []}
        if {c["type"]: c["status"] for c in conditions} == {t: c["status"] for t, c in old.items()}:
            return
        self.log(f"{self.name}: kubefed health of {fed['metadata']['name']}: {text}")
        for c in conditions:
            c["lastProbeTime"] = now
            c["lastTransitionTime"] = (old.get(c["type"]) or {}).get("lastTransitionTime", now)
        fed["status"] = {**(fed.get("status") or {}), "conditions": conditions}
        try:
            self.custom.replace_namespaced_custom_object("core.kubefed.io", "v1beta1", KUBEFED_NS, "kubefedclusters",
                                                         fed["metadata"]["name"], fed, _request_timeout=5)
        except ApiException as exc:
            if exc.status not in (404, 409):
                raise

    def _sync_users(self) -> None:
        users = self.custom.list_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users",
                                                       _request_timeout=5)["items"]
        for user in users:  # the user controller: a FederatedUser per User
            name = user["metadata"]["name"]
            labels = user["metadata"].get("labels") or {}
            if labels.get(KUBEFED_MANAGED) == "true":
                continue  # a copy kubefed wrote here (the host is a KubeFedCluster of its own), not a source
            if labels.get(KUBEFED_MANAGED) != "false":  # ensureNotControlledByKubefed
                user["metadata"]["labels"] = {**labels, KUBEFED_MANAGED: "false"}
                self.custom.replace_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", name, user,
                                                          _request_timeout=5)
            body = {"apiVersion": "types.kubefed.io/v1beta1", "kind": "FederatedUser", "metadata": {"name": name},
                    "spec": {"template": {"metadata": {"labels": user["metadata"].get("labels") or {}},
                                          "spec": user.get("spec") or {}},
                             "placement": {"clusterSelector": {}}}}
            # createFederatedUser, or its update when the template's spec or labels differ (the encrypted password
            # reaches the FederatedUser, and so the members, on the reconcile after encryptPassword)
            self.tenants.upsert("types.kubefed.io", "v1beta1", "federatedusers", body,
                                lambda live, body: (live.get("spec") or {}).get("template") != body["spec"]["template"])
        federated = self.custom.list_cluster_custom_object("types.kubefed.io", "v1beta1", "federatedusers",
                                                           _request_timeout=5)["items"]
        names = {u["metadata"]["name"] for u in users
                 if (u["metadata"].get("labels") or {}).get(KUBEFED_MANAGED) != "true"}
        for item in [f for f in federated if f["metadata"]["name"] not in names]:
            # the User owns its FederatedUser (SetControllerReference): the garbage collector removes it, and
            # kubefed's sync controller first deletes the copies it placed (its finalizer kubefed.io/sync-controller)
            self._unpropagate_user(item["metadata"]["name"])
            self.custom.delete_cluster_custom_object("types.kubefed.io", "v1beta1", "federatedusers",
                                                     item["metadata"]["name"], _request_timeout=5)
        federated = [f for f in federated if f["metadata"]["name"] in names]
        if not federated:
            return
        for fed in self._kubefed_clusters():
            ready = {c["type"]: c["status"] for c in (fed.get("status") or {}).get("conditions") or []}
            if ready.get("Ready") != "True":
                continue
            member = fed["metadata"]["name"]
            try:
                api = client.CustomObjectsApi(self._member_api(fed)[0])
                for item in federated:
                    self._propagate(api, member, item)
            except Exception as exc:  # the member went away meanwhile: the next health check marks it
                self.log(f"{self.name}: kubefed sync to {member}: {exc.__class__.__name__}")

    def _unpropagate_user(self, name: str) -> None:
        for fed in self._kubefed_clusters():
            member = fed["metadata"]["name"]
            if (member, name) not in self.propagated:
                continue
            try:
                api = client.CustomObjectsApi(self._member_api(fed)[0])
                current = api.get_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", name,
                                                        _request_timeout=5)
                if (current["metadata"].get("labels") or {}).get(KUBEFED_MANAGED) == "true":
                    api.delete_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", name,
                                                     _request_timeout=5)
            except Exception as exc:  # gone already, or the member went away
                self.log(f"{self.name}: kubefed removal of user {name} from {member}: {exc.__class__.__name__}")
            self.propagated.pop((member, name), None)

    def _propagate(self, api: client.CustomObjectsApi, member: str, fed_user: dict) -> None:
        name = fed_user["metadata"]["name"]
        template = fed_user["spec"].get("template") or {}
        desired = {"apiVersion": "iam.kubesphere.io/v1alpha2", "kind": "User",
                   "metadata": {"name": name, "labels": {**((template.get("metadata") or {}).get("labels") or {}),
                                                         KUBEFED_MANAGED: "true"}},
                   "spec": template.get("spec") or {}}
        try:
            current = api.get_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", name,
                                                    _request_timeout=5)
        except ApiException as exc:
            if exc.status != 404:
                raise
            current = None
        if current is None:
            written = api.create_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", desired,
                                                       _request_timeout=5)
        elif (current["metadata"].get("labels") or {}).get(KUBEFED_MANAGED) == "false":
            return  # explicitly unmanaged (util.IsExplicitlyUnmanaged, dispatch/managed.go Update): left alone
        elif current["metadata"]["resourceVersion"] != self.propagated.get((member, name)):  # ObjectNeedsUpdate
            desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
            # dispatch/retain.go RetainClusterFields: the member's finalizers and annotations are its controllers'
            desired["metadata"]["finalizers"] = current["metadata"].get("finalizers") or []
            desired["metadata"]["annotations"] = current["metadata"].get("annotations") or {}
            written = api.replace_cluster_custom_object("iam.kubesphere.io", "v1alpha2", "users", name, desired,
                                                        _request_timeout=5)
        else:
            return
        self.propagated[(member, name)] = written["metadata"]["resourceVersion"]

    def tick(self) -> None:
        steps = [self.reconcile_installer, self.reconcile_clusters, self.reconcile_users, self.reconcile_kubefed]
        if self.play_kube_controllers:
            steps += [self.collect_garbage, self.finalize_namespaces]
        for step in steps:
            try:
                step()
            except Exception as exc:  # API server down (a fault test) or racing with the program: next tick
                line = f"{self.name}: {step.__name__}: {exc.__class__.__name__}: {str(exc).splitlines()[0][:200]}"
                if line != self.last_error:
                    self.last_error = line
                    self.log(line)


def _create(fn) -> None:
    try:
        fn()
    except ApiException as exc:
        if exc.status != 409:
            raise


def _message(exc: ApiException) -> str:
    try:
        return json.loads(exc.body or "{}").get("message", "")
    except ValueError:
        return str(exc.reason)


class Operator:
    """Plays KubeSphere on the given clusters. With `kind_clusters`, it also follows kind: a cluster of
    those names is played from the moment `kind` has it (as a fresh install would be), played anew when it is
    recreated (new kubeconfig), and forgotten when it is deleted; kind clusters run the real
    kube-controller-manager, so that is not played on them."""

    def __init__(self, kubeconfigs: dict[str, str], install_delay: float = 1.0, interval: float = 0.3,
                 quiet: bool = True, play_kube_controllers: bool = True, resync_seconds: float = 120.0,
                 address: str | None = None, kind_clusters: tuple[str, ...] = ()):
        self.lines: list[str] = []
        self.servers = _Servers(address or local_address())
        self.install_delay, self.resync_seconds = install_delay, resync_seconds
        self.actors = [ClusterActor(n, k, install_delay, self._log, self.servers, play_kube_controllers,
                                    resync_seconds) for n, k in kubeconfigs.items()]
        for actor in self.actors:
            self.servers.actors[actor.name] = actor
        self.kind_clusters = tuple(kind_clusters)
        self._kind_seen: dict[str, str] = {}
        self._kind_checked = 0.0
        self.interval = interval
        self.quiet = quiet
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def follow_kind(self) -> None:
        """Add, replace or drop the actors of the followed kind clusters (every 2 s)."""
        if not self.kind_clusters or time.monotonic() - self._kind_checked < 2.0:
            return
        self._kind_checked = time.monotonic()
        listed = subprocess.run(["kind", "get", "clusters"], capture_output=True, text=True, timeout=60)
        present = set(listed.stdout.split()) if listed.returncode == 0 else set()
        for name in self.kind_clusters:
            if name not in present:
                if self._kind_seen.pop(name, None) is not None:
                    self.actors = [a for a in self.actors if a.name != name]
                    self.servers.actors.pop(name, None)
                    self._log(f"{name}: kind cluster gone; no longer played")
                continue
            got = subprocess.run(["kind", "get", "kubeconfig", "--name", name], capture_output=True, text=True,
                                 timeout=60)
            if got.returncode != 0 or self._kind_seen.get(name) == got.stdout:
                continue
            actor = ClusterActor(name, got.stdout, self.install_delay, self._log, self.servers, False,
                                 self.resync_seconds)
            self.actors = [a for a in self.actors if a.name != name] + [actor]
            self.servers.actors[name] = actor
            self._kind_seen[name] = got.stdout
            self._log(f"{name}: kind cluster found; playing KubeSphere's controllers on it")

    def _log(self, line: str) -> None:
        self.lines.append(line)
        if not self.quiet:
            print(f"[operator] {line}", flush=True)

    def run(self) -> None:
        while not self._stop.is_set():
            try:
                self.follow_kind()
            except (OSError, subprocess.SubprocessError) as exc:
                self._log(f"following kind: {exc}")
            for actor in list(self.actors):
                actor.tick()
            self._stop.wait(self.interval)

    def start(self) -> Operator:
        self._thread = threading.Thread(target=self.run, name="kubesphere-operator-fixture", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=10)
        self.servers.close()

    def replace_cluster(self, name: str, kubeconfig_text: str) -> None:
        """The cluster `name` was rebuilt: play its controllers on the new one (a fresh install)."""
        old = self.actor(name)
        new = ClusterActor(name, kubeconfig_text, old.delay, self._log, self.servers, old.play_kube_controllers,
                           old.resync_seconds)
        self.actors = [new if a is old else a for a in self.actors]
        self.servers.actors[name] = new

    def actor(self, name: str) -> ClusterActor:
        return next(a for a in self.actors if a.name == name)

    def installs(self, name: str) -> int:
        return self.actor(name).installs


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--delay", type=float, default=2.0, help="seconds an install takes")
    parser.add_argument("--kind", action="append", default=[], metavar="NAME",
                        help="follow the kind cluster NAME (played from when kind has it); repeatable")
    parser.add_argument("clusters", nargs="*", help="name=kubeconfig-path")
    args = parser.parse_args(argv)
    kubeconfigs = {}
    for item in args.clusters:
        name, path = item.split("=", 1)
        with open(path) as fh:
            kubeconfigs[name] = fh.read()
    op = Operator(kubeconfigs, args.delay, quiet=False, kind_clusters=tuple(args.kind))
    signal.signal(signal.SIGTERM, lambda *_: op._stop.set())
    print(f"[operator] playing KubeSphere's controllers on {', '.join([*kubeconfigs, *args.kind])} "
          f"(webhook and ks-apiserver stand-ins at {op.servers.address})", flush=True)
    op.run()
    op.servers.close()


if __name__ == "__main__":
    main(sys.argv[1:])
