"""Manifests and configs the lab applies, rendered from our own templates. Pure functions.

Object names, fields and per-version differences follow the facts in the README
("What kslab creates"); nothing here is copied from upstream manifests.
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any

import yaml

from kslab.model import cc_defaults, contract, image_sources, images, versions

# Labels and annotations the policy pack reads off the registered objects (one source: contract.py).
from kslab.model.contract import (  # noqa: F401
    CLUSTER_LABEL,
    HOST_LABEL,
    JWT_SOURCE_ANNOTATION,
    K8S_VERSION_ANNOTATION,
    LOOPBACK_ANNOTATION,
    MEMBER_LABEL,
    MEMBER_UID_ANNOTATION,
    MULTI_HOST_ANNOTATION,
)
from kslab.model.spec import ClusterSpec

KS_NAMESPACE = "kubesphere-system"
CC_NAME = "ks-installer"
CC_API_VERSION = "installer.kubesphere.io/v1alpha1"
CC_KIND = "ClusterConfiguration"
CLUSTER_API_VERSION = "cluster.kubesphere.io/v1alpha1"
CLUSTER_KIND = "Cluster"
KUBESPHERE_CONFIG_MAP = "kubesphere-config"
MANAGED_BY_LABEL = {"app.kubernetes.io/managed-by": "kslab"}


def kind_config(cluster: ClusterSpec, pulls_from_lab_registry: bool = False) -> dict[str, Any]:
    """kind.x-k8s.io/v1alpha4 config: one control-plane with the console NodePort mapped; with the lab registry,
    containerd reads per-registry host configs (kind's `containerdConfigPatches`, as its "Local Registry" guide
    uses them; kslab writes the lab registry's hosts.toml once the nodes exist)."""
    networking: dict[str, Any] = {}
    if cluster.pod_subnet:
        networking["podSubnet"] = cluster.pod_subnet
    if cluster.service_subnet:
        networking["serviceSubnet"] = cluster.service_subnet
    if any(":" in (net or "") for net in (cluster.pod_subnet, cluster.service_subnet)):
        networking["ipFamily"] = "ipv6"  # kind's default family is ipv4; mixed families are refused in spec
    doc: dict[str, Any] = {
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
    if pulls_from_lab_registry:
        doc["containerdConfigPatches"] = [image_sources.CONTAINERD_PATCH]
    return doc


def kind_config_yaml(cluster: ClusterSpec, pulls_from_lab_registry: bool = False) -> str:
    return str(yaml.safe_dump(kind_config(cluster, pulls_from_lab_registry), sort_keys=False))


UPSTREAM_NAMING = images.Naming()  # no local_registry, no namespace_override, no zone: upstream's own names


def installer_image(ks_version: str, naming: images.Naming = UPSTREAM_NAMING) -> str:
    """ks-installer's own image, named by the installer's rules like every other image of the plan."""
    return images.installer_image(ks_version, naming)


def _installer_crd(labels: dict[str, str]) -> dict[str, Any]:
    """The CustomResourceDefinition of the ks-installer's ClusterConfiguration."""
    return {
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


def installer_objects(ks_version: str, naming: images.Naming = UPSTREAM_NAMING) -> list[dict[str, Any]]:
    """The ks-installer objects: CRD, namespace, RBAC and Deployment, in apply order."""
    release = versions.KUBESPHERE_RELEASES[ks_version]
    labels = {**MANAGED_BY_LABEL, "kubesphere.io/version": ks_version}
    crd = _installer_crd(labels)
    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": KS_NAMESPACE, "labels": labels}}
    service_account = {"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "ks-installer", "namespace": KS_NAMESPACE, "labels": labels}}
    cluster_role = {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "ks-installer", "labels": labels},
        # One rule per API group, as deploy/kubesphere-installer.yaml at the tag has them.
        "rules": [{"apiGroups": [group], "resources": ["*"], "verbs": ["*"]}
                  for group in release.installer_api_groups],
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
                        "image": installer_image(ks_version, naming),
                        # Upstream says Always. kslab pins release tags, and labs often preload the
                        # image with `kind load docker-image`, which Always would defeat (kind docs,
                        # "Loading an image into your cluster"); with local_registry the tag resolves there.
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


def multicluster_spec(cluster: ClusterSpec) -> dict[str, Any]:
    spec = {"clusterRole": cluster.role}
    if cluster.role == "host" and cluster.host_cluster_name:
        spec["hostClusterName"] = cluster.host_cluster_name
    return spec


def _deep_merge(base: dict[str, Any], overlay: dict[str, Any]) -> dict[str, Any]:
    for key, value in overlay.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def _component_overlay(cluster: ClusterSpec) -> dict[str, Any]:
    """kslab's component switches as cc keys of the cluster's release."""
    release = versions.KUBESPHERE_RELEASES[cluster.kubesphere_version]
    on = {name: cluster.components.get(name, False) for name in versions.COMPONENT_MEMORY_MIB}
    overlay: dict[str, Any] = {}
    for name, path in versions.COMPONENT_CC_PATHS.items():
        *parents, leaf = path
        node = overlay
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = on[name]
    if release.edge_component_key == "edgeruntime":
        # v3.4.1 installs KubeEdge (and writes status.edgeruntime) only with edgeruntime.kubeedge.enabled
        # (ks-installer@v3.4.1:roles/edgeruntime/tasks/main.yaml).
        overlay["edgeruntime"] = {"enabled": on["edgeruntime"], "kubeedge": {"enabled": on["edgeruntime"]}}
    else:
        overlay["kubeedge"] = {"enabled": on["edgeruntime"]}
    return overlay


def cluster_configuration_spec(cluster: ClusterSpec, jwt_secret: Any,
                               naming: images.Naming = UPSTREAM_NAMING) -> dict[str, Any]:
    """`jwt_secret`: a string, or the program's secret Output, placed as it is.
    The release's full default cc spec (cc_defaults) with kslab's values laid over it.

    Every default key stays: ks-installer's playbooks get only the cc as variables, and its v3.4.1
    migration step reads (and on a missing `terminal`, deletes and recreates the cc for) keys a partial cc
    lacks (kubesphere/ks-installer@v3.4.1:controller/installRunner.py, generate_new_cluster_configuration).
    """
    spec = cc_defaults.default_spec(cluster.kubesphere_version)
    overlay = {
        "authentication": {"jwtSecret": jwt_secret},
        **naming.cc_fields(),
        "common": {"core": {"console": {"port": cluster.console_port}}},
        "multicluster": multicluster_spec(cluster),
        **_component_overlay(cluster),
    }
    if cluster.is_kind and "containerruntime" in spec.get("logging", {}):
        # v3.2.1's logging collects from `docker` by default; kind nodes run containerd.
        overlay["logging"]["containerruntime"] = "containerd"
    return _deep_merge(spec, overlay)


def cluster_configuration(cluster: ClusterSpec, jwt_secret: Any, naming: images.Naming = UPSTREAM_NAMING,
                          jwt_source: str = "") -> dict[str, Any]:
    """The `ks-installer` ClusterConfiguration. `jwt_secret` "" lets the installer pick a random one.

    `jwt_source` records where the secret comes from ("shared", "copy:<host>", "installer"), so
    equality between a member and its host can be shown before the values are known.
    """
    return {
        "apiVersion": CC_API_VERSION, "kind": CC_KIND,
        "metadata": {"name": CC_NAME, "namespace": KS_NAMESPACE,
                     "labels": {contract.CC_VERSION_LABEL: cluster.kubesphere_version, CLUSTER_LABEL: cluster.name,
                                **MANAGED_BY_LABEL},
                     "annotations": {K8S_VERSION_ANNOTATION: cluster.kubernetes_version,
                                     JWT_SOURCE_ANNOTATION: jwt_source}},
        "spec": cluster_configuration_spec(cluster, jwt_secret, naming),
    }


def spec_fingerprint(obj: dict[str, Any]) -> str:
    """Stable short hash: a change re-runs the wait that follows an apply."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


def member_cluster_object(member: str, host: str, join_kubeconfig_b64: Any, provider: str,
                          allow_multiple_hosts: bool = False, loopback_reason: str | None = None,
                          member_uid: Any = "") -> dict[str, Any]:
    """The `Cluster` a host needs to join a member directly through kubefed: `joinFederation`, a direct
    connection and a self-contained kubeconfig, which is all ks-controller-manager reads (kubesphere@<tag>:
    pkg/controller/cluster/cluster_controller.go). Never the `cluster-role.kubesphere.io/host` label: that
    marks the host's own entry, and two of them stop the controller."""
    annotations = {"pulumi.com/skipAwait": "true",  # kslab waits for Ready itself, with a clearer message
                   MEMBER_UID_ANNOTATION: member_uid}
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


def jwt_secret_of(doc: dict[str, Any]) -> str | None:
    """authentication.jwtSecret of a parsed `kubesphere.yaml`."""
    value = ((doc or {}).get("authentication") or {}).get("jwtSecret") if isinstance(doc, dict) else None
    return str(value) if value else None


def jwt_secret_from_kubesphere_yaml(text: str) -> str | None:
    """authentication.jwtSecret out of the `kubesphere.yaml` key of kubesphere-config."""
    try:
        doc = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        return None
    return jwt_secret_of(doc)


def status_keys_to_wait(cluster: ClusterSpec) -> list[str]:
    """cc status keys a run of the cluster's release writes for what kslab asked for: `multicluster` on a
    host (roles/ks-multicluster), and each enabled component that has an installer role writing one
    (versions.KubeSphereRelease.component_status_keys). Keys nobody writes are never waited for."""
    release = versions.KUBESPHERE_RELEASES[cluster.kubesphere_version]
    keys = ["multicluster"] if cluster.role == "host" else []
    keys += sorted(key for name, on in cluster.components.items()
                   if on and (key := release.component_status_keys.get(name)))
    return keys


def _kubesphere_yaml(text: str | None) -> dict[str, Any] | None:
    try:
        doc = yaml.safe_load(text or "")
    except yaml.YAMLError:
        return None
    return doc if isinstance(doc, dict) else None


def kubesphere_config_gaps(ks_version: str, cc_spec: dict[str, Any], kubesphere_yaml: str | None) -> list[str]:
    """How `kubesphere-config` (key kubesphere.yaml) still differs from what a finished run of this cc
    writes there; [] when it reflects the cc. Never includes a secret value.

    ks-installer renders the map from the cc near the end of every run, after all component playbooks
    (roles/ks-core/config/templates/kubesphere-config.yaml.j2): authentication.jwtSecret from Secret
    kubesphere-secret (the cc's value, or a random one when empty); on a host multicluster.enable: true and
    hostClusterName; at v3.4.1 multicluster.clusterRole for every role.
    """
    doc = _kubesphere_yaml(kubesphere_yaml)
    if doc is None:
        return ["kubesphere-config not written yet"]
    gaps = []
    wanted_jwt = str((cc_spec.get("authentication") or {}).get("jwtSecret") or "")
    jwt = str((doc.get("authentication") or {}).get("jwtSecret") or "")
    if not jwt:
        gaps.append("no jwtSecret in kubesphere-config yet")
    elif wanted_jwt and jwt != wanted_jwt:
        gaps.append("kubesphere-config jwtSecret differs from the cc's")
    multicluster = doc.get("multicluster") or {}
    role = (cc_spec.get("multicluster") or {}).get("clusterRole", "none")
    if role == "host":
        if multicluster.get("enable") is not True:
            gaps.append("kubesphere-config multicluster.enable is not true yet")
        name = (cc_spec.get("multicluster") or {}).get("hostClusterName")
        if name and multicluster.get("hostClusterName") != name:
            gaps.append(f"kubesphere-config multicluster.hostClusterName is not {name!r} yet")
    if versions.KUBESPHERE_RELEASES[ks_version].kubesphere_config_has_role and multicluster.get("clusterRole") != role:
        gaps.append(f"kubesphere-config multicluster.clusterRole is {multicluster.get('clusterRole')!r}, not {role!r}")
    return gaps


@dataclass(frozen=True)
class InstallState:
    done: bool
    failed: tuple[str, ...]  # status keys the installer marked failed
    summary: str


def install_state(status: dict[str, Any] | None, *, version: str, wait_keys: list[str],
                  baseline_enabled_time: str | None, config_gaps: list[str]) -> InstallState:
    """Whether the installer run that follows kslab's last cc change has finished.

    The installer never resets status (every write is a merge patch), so old values prove nothing. Facts
    used, per kubesphere/ks-installer@<tag>:controller/installRunner.py and its roles:
    - every run rewrites status.core.enabledTime when ks-core is installed, early in the run
      (roles/ks-core/ks-core/tasks/main.yaml): a value other than the one seen before kslab's change means a
      newer run started;
    - component statuses are written in the concurrent component phase (`enabled`, or `failed`);
    - kubesphere-config is applied after every component playbook (`config_gaps` empty);
    - status.core.version is written last (roles/check-result), once a first run ends.
    """
    status = status or {}
    core = status.get("core") or {}
    enabled_time = core.get("enabledTime")
    started = bool(enabled_time) and enabled_time != baseline_enabled_time
    parts = [f"run={'started' if started else 'not started'}", f"core={core.get('status') or 'pending'}",
             f"version={core.get('version') or 'pending'}"]
    done = started and core.get("status") == "enabled" and core.get("version") == version
    failed = []
    for key in wait_keys:
        state = (status.get(key) or {}).get("status")
        parts.append(f"{key}={state or 'pending'}")
        done = done and state == "enabled"
        if state == "failed":
            failed.append(key)
    if config_gaps:
        parts.append("config: " + "; ".join(config_gaps))
    return InstallState(done=done and not config_gaps and not failed, failed=tuple(failed), summary=" ".join(parts))


def condition_state(conditions: list[dict[str, Any]] | None, wanted: str = "Ready") -> tuple[bool, str]:
    """(ready, summary) from a Cluster's status.conditions."""
    by_type = {c.get("type"): c for c in conditions or []}
    cond = by_type.get(wanted)
    ready = cond is not None and str(cond.get("status")) == "True"
    summary = ", ".join(f"{t}={c.get('status')}" + (f" ({c.get('message')})" if c.get("message") and
                                                    str(c.get("status")) != "True" else "")
                        for t, c in by_type.items()) or "no conditions yet"
    return ready, summary
