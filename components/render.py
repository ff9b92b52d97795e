"""Manifests and configs the lab applies, rendered from our own templates. Pure functions.

Object names, fields and per-version differences follow the facts in the README
("What kslab creates"); nothing here is copied from upstream manifests.
"""
from __future__ import annotations

import base64
import hashlib
import json

import yaml

from . import versions
from .spec import ClusterSpec

KS_NAMESPACE = "kubesphere-system"
CC_NAME = "ks-installer"
CC_API_VERSION = "installer.kubesphere.io/v1alpha1"
CC_KIND = "ClusterConfiguration"
CLUSTER_API_VERSION = "cluster.kubesphere.io/v1alpha1"
CLUSTER_KIND = "Cluster"
CLUSTER_FINALIZER = "finalizer.cluster.kubesphere.io"
KUBESPHERE_CONFIG_MAP = "kubesphere-config"
MANAGED_BY_LABEL = {"app.kubernetes.io/managed-by": "kslab"}
# Facts the policy pack reads off the registered objects (see policies/).
CLUSTER_LABEL = "kslab.io/cluster"
HOST_LABEL = "kslab.io/host"
MEMBER_LABEL = "kslab.io/member"
K8S_VERSION_ANNOTATION = "kslab.io/kubernetes-version"
JWT_SOURCE_ANNOTATION = "kslab.io/jwt-secret-source"
MULTI_HOST_ANNOTATION = "kslab.io/allow-multiple-hosts"
LOOPBACK_ANNOTATION = "kslab.io/loopback-join-reason"


def kind_config(cluster: ClusterSpec) -> dict:
    """kind.x-k8s.io/v1alpha4 config: one control-plane with the console NodePort mapped."""
    networking: dict = {}
    if cluster.pod_subnet:
        networking["podSubnet"] = cluster.pod_subnet
    if cluster.service_subnet:
        networking["serviceSubnet"] = cluster.service_subnet
    doc: dict = {
        "kind": "Cluster",
        "apiVersion": "kind.x-k8s.io/v1alpha4",
        "name": cluster.name,
        "nodes": [{
            "role": "control-plane",
            "image": cluster.node_image,
            "extraPortMappings": [{
                "containerPort": cluster.console_port,
                "hostPort": cluster.console_host_port,
                "protocol": "TCP",
            }],
        }],
    }
    if networking:
        doc["networking"] = networking
    return doc


def kind_config_yaml(cluster: ClusterSpec) -> str:
    return yaml.safe_dump(kind_config(cluster), sort_keys=False)


def installer_image(ks_version: str, registry: str = "") -> str:
    repo = versions.INSTALLER_IMAGE_REPO
    return f"{registry.rstrip('/')}/{repo}:{ks_version}" if registry else f"{repo}:{ks_version}"


def _installer_api_groups(release: versions.KubeSphereRelease) -> list[str]:
    groups = [
        "", "apps", "extensions", "batch", "rbac.authorization.k8s.io", "apiregistration.k8s.io",
        "apiextensions.k8s.io", "tenant.kubesphere.io", "certificates.k8s.io", "devops.kubesphere.io",
        "monitoring.coreos.com", "logging.kubesphere.io", "jaegertracing.io", "storage.k8s.io",
        "admissionregistration.k8s.io", "policy", "autoscaling", "networking.istio.io", "config.istio.io",
        "iam.kubesphere.io", "notification.kubesphere.io", "auditing.kubesphere.io", "events.kubesphere.io",
        "core.kubefed.io", "installer.kubesphere.io", "storage.kubesphere.io", "security.istio.io",
        "monitoring.kiali.io", "kiali.io", "networking.k8s.io", "kubeedge.kubesphere.io", "types.kubefed.io",
        "monitoring.kubesphere.io", "application.kubesphere.io", "cluster.kubesphere.io",
    ]
    # The edge group was renamed in v3.3; v3.4 adds the alerting group.
    groups = [release.edge_group if g == "kubeedge.kubesphere.io" else g for g in groups]
    if release.has_alerting_group:
        groups.append("alerting.kubesphere.io")
    return groups


def installer_objects(ks_version: str, registry: str = "") -> list[dict]:
    """The ks-installer objects: CRD, namespace, RBAC and Deployment, in apply order."""
    release = versions.KUBESPHERE_RELEASES[ks_version]
    labels = {**MANAGED_BY_LABEL, "kubesphere.io/version": ks_version}
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "clusterconfigurations.installer.kubesphere.io", "labels": labels},
        "spec": {
            "group": "installer.kubesphere.io",
            "scope": "Namespaced",
            "names": {"plural": "clusterconfigurations", "singular": "clusterconfiguration",
                      "kind": CC_KIND, "shortNames": ["cc"]},
            "versions": [{
                "name": "v1alpha1", "served": True, "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                    "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                    "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                }}},
            }],
        },
    }
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KS_NAMESPACE, "labels": labels}}
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "ks-installer", "namespace": KS_NAMESPACE, "labels": labels}}
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ks-installer", "labels": labels},
        "rules": [{"apiGroups": _installer_api_groups(release), "resources": ["*"], "verbs": ["*"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "ks-installer", "labels": labels},
        "subjects": [{"kind": "ServiceAccount", "name": "ks-installer", "namespace": KS_NAMESPACE}],
        "roleRef": {"kind": "ClusterRole", "name": "ks-installer", "apiGroup": "rbac.authorization.k8s.io"},
    }
    pod_labels = {"app": release.installer_pod_label}
    deployment = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": "ks-installer", "namespace": KS_NAMESPACE, "labels": {**labels, **pod_labels},
            # Completion is the cc status, which the install waits for; the pod alone says little.
            "annotations": {"pulumi.com/skipAwait": "true"},
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": pod_labels},
            "template": {
                "metadata": {"labels": pod_labels},
                "spec": {
                    "serviceAccountName": "ks-installer",
                    "containers": [{
                        "name": "installer",
                        "image": installer_image(ks_version, registry),
                        "imagePullPolicy": "IfNotPresent",
                        "resources": {"requests": {"cpu": "20m", "memory": "100Mi"},
                                      "limits": {"cpu": "1", "memory": "1Gi"}},
                        "volumeMounts": [{"mountPath": "/etc/localtime", "name": "host-time", "readOnly": True}],
                    }],
                    "volumes": [{"hostPath": {"path": "/etc/localtime", "type": ""}, "name": "host-time"}],
                },
            },
        },
    }
    return [crd, namespace, service_account, cluster_role, binding, deployment]


def multicluster_spec(cluster: ClusterSpec) -> dict:
    spec = {"clusterRole": cluster.role}
    if cluster.role == "host" and cluster.host_cluster_name:
        spec["hostClusterName"] = cluster.host_cluster_name
    return spec


def _component_spec(cluster: ClusterSpec) -> dict:
    release = versions.KUBESPHERE_RELEASES[cluster.kubesphere_version]
    on = {name: cluster.components.get(name, False) for name in versions.COMPONENT_MEMORY_MIB}
    edge_key = release.edge_component_key
    return {
        "devops": {"enabled": on["devops"]},
        "logging": {"enabled": on["logging"]},
        "alerting": {"enabled": on["alerting"]},
        "auditing": {"enabled": on["auditing"]},
        "events": {"enabled": on["events"]},
        "servicemesh": {"enabled": on["servicemesh"]},
        "openpitrix": {"store": {"enabled": on["openpitrix"]}},
        edge_key: {"enabled": on["edgeruntime"]},
        "network": {"networkpolicy": {"enabled": on["networkPolicy"]}},
        "metrics_server": {"enabled": on["metricsServer"]},
    }


def cluster_configuration(cluster: ClusterSpec, jwt_secret, registry: str = "", jwt_source: str = "") -> dict:
    """The `ks-installer` ClusterConfiguration. `jwt_secret` "" lets the installer pick a random one.

    `jwt_source` records where the secret comes from ("shared", "copy:<host>", "installer"), so
    equality between a member and its host can be shown before the values are known.
    """
    spec = {
        "persistence": {"storageClass": ""},
        "authentication": {"jwtSecret": jwt_secret},
        "local_registry": registry,
        "common": {"core": {"console": {"enableMultiLogin": True, "port": cluster.console_port,
                                        "type": "NodePort"}}},
        "multicluster": multicluster_spec(cluster),
        **_component_spec(cluster),
    }
    return {
        "apiVersion": CC_API_VERSION, "kind": CC_KIND,
        "metadata": {"name": CC_NAME, "namespace": KS_NAMESPACE,
                     "labels": {"version": cluster.kubesphere_version, CLUSTER_LABEL: cluster.name,
                                **MANAGED_BY_LABEL},
                     "annotations": {K8S_VERSION_ANNOTATION: cluster.kubernetes_version,
                                     JWT_SOURCE_ANNOTATION: jwt_source}},
        "spec": spec,
    }


def spec_fingerprint(obj: dict) -> str:
    """Stable short hash: a change re-runs the wait that follows an apply."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def member_cluster_object(member: str, host: str, join_kubeconfig_b64, provider: str,
                          allow_multiple_hosts: bool = False, loopback_reason: str | None = None) -> dict:
    """The `Cluster` a host needs to join a member directly through kubefed."""
    annotations = {"pulumi.com/skipAwait": "true"}  # kslab waits for Ready itself, with a clearer message
    if allow_multiple_hosts:
        annotations[MULTI_HOST_ANNOTATION] = "true"
    if loopback_reason:
        annotations[LOOPBACK_ANNOTATION] = loopback_reason
    return {
        "apiVersion": CLUSTER_API_VERSION, "kind": CLUSTER_KIND,
        "metadata": {"name": member, "labels": {**MANAGED_BY_LABEL, HOST_LABEL: host, MEMBER_LABEL: member},
                     "annotations": annotations},
        "spec": {
            "provider": provider,
            "enable": True,
            "joinFederation": True,
            "connection": {
                "type": "direct",
                "kubeconfig": join_kubeconfig_b64,
            },
        },
    }


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def jwt_secret_from_kubesphere_yaml(text: str) -> str | None:
    """authentication.jwtSecret out of the `kubesphere.yaml` key of kubesphere-config."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    value = (doc.get("authentication") or {}).get("jwtSecret")
    return str(value) if value else None


def component_status_keys(cluster: ClusterSpec) -> list[str]:
    """cc status keys of the enabled components whose `status.<key>.status` the installer sets."""
    edge = versions.KUBESPHERE_RELEASES[cluster.kubesphere_version].edge_component_key
    keys = {"devops": "devops", "logging": "logging", "alerting": "alerting", "auditing": "auditing",
            "events": "events", "servicemesh": "servicemesh", "openpitrix": "openpitrix", "edgeruntime": edge}
    return [keys[name] for name, on in sorted(cluster.components.items()) if on and name in keys]


def install_state(status: dict | None, role: str, components: list[str] = ()) -> tuple[bool, str]:
    """(done, summary) from a cc status: core enabled, multicluster enabled for a host, and each
    enabled component's own status (an installer re-run after a spec change ends with those)."""
    status = status or {}
    core = (status.get("core") or {}).get("status")
    parts = [f"core={core or 'pending'}"]
    done = core == "enabled"
    for key in (["multicluster"] if role == "host" else []) + list(components):
        state = (status.get(key) or {}).get("status")
        parts.append(f"{key}={state or 'pending'}")
        done = done and state == "enabled"
    failed = sorted(k for k, v in status.items() if isinstance(v, dict) and v.get("status") == "failed")
    if failed:
        parts.append("failed=" + ",".join(failed))
    return done, " ".join(parts)


def condition_state(conditions: list[dict] | None, wanted: str = "Ready") -> tuple[bool, str]:
    """(ready, summary) from a Cluster's status.conditions."""
    by_type = {c.get("type"): c for c in conditions or []}
    cond = by_type.get(wanted)
    ready = bool(cond) and str(cond.get("status")) == "True"
    summary = ", ".join(f"{t}={c.get('status')}" + (f" ({c.get('message')})" if c.get("message") and
                                                    str(c.get("status")) != "True" else "")
                        for t, c in by_type.items()) or "no conditions yet"
    return ready, summary
