"""Every image a KubeSphere 3.x install pulls onto a cluster: the facts per release, and the plan. Pure.

Since 2025-07-31 the vendor no longer distributes KubeSphere's images (kubesphere/kubesphere#6550): nothing
under docker.io/kubesphere pulls (#6543). So kslab plans each image before anything is created, checks
that it can be found (kslab/steps/registry_check.py), and says where each one comes from.

The facts are read from kubesphere/ks-installer at each tag (`git show <tag>:<path>`):
- names and tags: roles/download/defaults/main.yml (`<key>_repo` / `<key>_tag`);
- which role or template deploys an image: the `used_by` path of each fact;
- the naming rules (`local_registry`, `namespace_override`, `zone: cn`): the same file's `base_repo`, and
  roles/kubesphere-defaults/tasks/main.yaml, which sets `namespace_override: kubesphereio` for the Aliyun
  registry or `zone: cn`. The cc reaches the playbooks as extra vars (env/cmdline: `-e @.../ks-config.json`),
  which outrank that set_fact, so a namespace_override given in the cc wins.
"""
from __future__ import annotations

from dataclasses import dataclass

from kslab.model import versions

DOWNLOAD_DEFAULTS = "roles/download/defaults/main.yml"
ALIYUN_REGISTRY = "registry.cn-beijing.aliyuncs.com"
ALIYUN_NAMESPACE = "kubesphereio"
# Where a name without a registry is pulled from (containerd and Docker both default to Docker Hub).
DEFAULT_REGISTRY = "docker.io"
# The cc key that each naming rule reads (top level of the cc's spec).
CC_LOCAL_REGISTRY = "local_registry"
CC_NAMESPACE_OVERRIDE = "namespace_override"
CC_ZONE = "zone"
# Stands for the release's own version in a fact's tags (ks_version in the download defaults).
KS_VERSION = "<ks_version>"

# roles/ks-core/config/tasks/main.yaml ("Setting kubectl image version"), the same at both tags: the first
# entry of ks_kubectl_versions, in file order, whose key the cluster's Kubernetes version is at least.
# Below every key, ks_kubectl_tag's default v1.22.0 stays.
KUBECTL_TAGS = ((1, 22, "v1.22.0"), (1, 21, "v1.21.0"), (1, 20, "v1.20.0"), (1, 19, "v1.19.1"),
                (1, 18, "v1.18.0"), (1, 17, "v1.17.0"), (1, 16, "v1.16.0"), (1, 15, "v1.0.0"))
KUBECTL_DEFAULT_TAG = "v1.22.0"
KUBECTL_RULE = "ks_kubectl_versions"


@dataclass(frozen=True)
class ImageFact:
    """One image of ks-installer's download defaults, and who deploys it."""
    key: str  # the variable stem in roles/download/defaults/main.yml, e.g. ks_apiserver
    namespace: str  # `namespace_override | default(<this>)`
    name: str
    tags: tuple[tuple[str, str], ...]  # (release, tag); KS_VERSION: the release itself; KUBECTL_RULE: by k8s
    used_by: str  # the role/template path that deploys it, at both tags
    hosts_only: bool = False  # roles/ks-multicluster runs for clusterRole host only
    min_kubernetes: tuple[int, int] | None = None  # the role's `when: kubernetes_version is version(..., '>=')`

    def tag(self, release: str, kubernetes_version: str) -> str:
        tag = dict(self.tags)[release]
        if tag == KS_VERSION:
            return release
        if tag == KUBECTL_RULE:
            return kubectl_tag(kubernetes_version)
        return tag


def _same(tag: str) -> tuple[tuple[str, str], ...]:
    return tuple((release, tag) for release in versions.KUBESPHERE_RELEASES)


def _per(v321: str, v341: str) -> tuple[tuple[str, str], ...]:
    return (("v3.2.1", v321), ("v3.4.1", v341))


_KS_CORE = "roles/ks-core/ks-core/files/ks-core/templates/"
_MONITOR = "roles/ks-monitor/templates/"
# With kslab's default components (everything optional off): what every role installs on every cluster
# (ks-core, common, monitoring with notification), and what a host adds (ks-multicluster).
IMAGE_FACTS: tuple[ImageFact, ...] = (
    ImageFact("ks_installer", "kubesphere", "ks-installer", _same(KS_VERSION),
              "deploy/kubesphere-installer.yaml (the Deployment kslab applies)"),
    ImageFact("ks_apiserver", "kubesphere", "ks-apiserver", _same(KS_VERSION), _KS_CORE + "ks-apiserver.yml"),
    ImageFact("ks_console", "kubesphere", "ks-console", _same(KS_VERSION), _KS_CORE + "ks-console.yml"),
    ImageFact("ks_controller_manager", "kubesphere", "ks-controller-manager", _same(KS_VERSION),
              _KS_CORE + "ks-controller-manager.yaml"),
    ImageFact("ks_kubectl", "kubesphere", "kubectl", _same(KUBECTL_RULE),
              "roles/ks-core/config/templates/kubesphere-config.yaml.j2 (kubectlImage)"),
    # v3.4.1's notification-manager post-install hook Job (roles/ks-monitor/files/notification-manager/templates/
    # hooks.yaml): the monitoring playbook never runs ks-core/config's set_fact, so the tag stays
    # ks_kubectl_tag's default v1.22.0 whatever the cluster's version (one image with ks_kubectl from 1.22 on).
    ImageFact("ks_kubectl_notification_hook", "kubesphere", "kubectl", (("v3.4.1", KUBECTL_DEFAULT_TAG),),
              "roles/ks-monitor/templates/custom-values-notification.yaml.j2 (hook.postInstall)"),
    ImageFact("defaultbackend", "mirrorgooglecontainers", "defaultbackend-amd64", _same("1.4"),
              _KS_CORE + "kubesphere-controls-system.yaml"),
    ImageFact("snapshot_controller", "csiplugin", "snapshot-controller", _same("v4.0.0"),
              "roles/common/templates/custom-values-snapshot-controller.yaml.j2", min_kubernetes=(1, 17)),
    ImageFact("prometheus_operator", "kubesphere", "prometheus-operator", _per("v0.43.2", "v0.55.1"),
              _MONITOR + "prometheus-operator-deployment.yaml.j2"),
    ImageFact("prometheus_config_reloader", "kubesphere", "prometheus-config-reloader", _per("v0.43.2", "v0.55.1"),
              _MONITOR + "prometheus-operator-deployment.yaml.j2"),
    # Also notification_manager_operator_proxy: the same repository and tag at both releases.
    ImageFact("kube_rbac_proxy", "kubesphere", "kube-rbac-proxy", _per("v0.8.0", "v0.11.0"),
              _MONITOR + "kube-state-metrics-deployment.yaml.j2"),
    ImageFact("prometheus", "prom", "prometheus", _per("v2.26.0", "v2.39.1"),
              _MONITOR + "prometheus-prometheus.yaml.j2"),
    ImageFact("node_exporter", "prom", "node-exporter", _per("v0.18.1", "v1.3.1"),
              _MONITOR + "node-exporter-daemonset.yaml.j2"),
    ImageFact("kube_state_metrics", "kubesphere", "kube-state-metrics", _per("v1.9.7", "v2.6.0"),
              _MONITOR + "kube-state-metrics-deployment.yaml.j2"),
    ImageFact("alertmanager", "prom", "alertmanager", _per("v0.21.0", "v0.23.0"),
              _MONITOR + "alertmanager-alertmanager.yaml.j2"),
    ImageFact("notification_manager_operator", "kubesphere", "notification-manager-operator",
              _per("v1.4.0", "v2.3.0"), _MONITOR + "custom-values-notification.yaml.j2"),
    ImageFact("notification_manager", "kubesphere", "notification-manager", _per("v1.4.0", "v2.3.0"),
              _MONITOR + "custom-values-notification.yaml.j2"),
    ImageFact("notification_tenant_sidecar", "kubesphere", "notification-tenant-sidecar", _same("v3.2.0"),
              _MONITOR + "custom-values-notification.yaml.j2"),
    ImageFact("kubefed", "kubesphere", "kubefed", _same("v0.8.1"),
              "roles/ks-multicluster/templates/custom-values-kubefed.yaml.j2", hosts_only=True),
    ImageFact("tower", "kubesphere", "tower", _per("v0.2.0", "v0.2.1"), "roles/ks-multicluster/templates/tower.yaml.j2",
              hosts_only=True),
)


def kubectl_tag(kubernetes_version: str) -> str:
    parsed = versions.parse_k8s_version(kubernetes_version or "")
    if parsed is None:
        return KUBECTL_DEFAULT_TAG
    for major, minor, tag in KUBECTL_TAGS:
        if parsed[:2] >= (major, minor):
            return tag
    return KUBECTL_DEFAULT_TAG


@dataclass(frozen=True)
class Naming:
    """ks-installer's naming inputs, as the cc carries them."""
    local_registry: str = ""
    namespace_override: str = ""
    zone: str = ""

    @property
    def aliyun(self) -> bool:
        return self.local_registry == ALIYUN_REGISTRY or self.zone == "cn"

    @property
    def registry(self) -> str:
        """`base_repo` without its slash: the Aliyun registry, local_registry, or "" (Docker Hub)."""
        if self.aliyun:
            return ALIYUN_REGISTRY
        return self.local_registry.rstrip("/")

    def repository(self, fact: ImageFact) -> str:
        """`<base_repo><namespace_override | default(ns)>/<name>`, as the installer renders it."""
        namespace = self.namespace_override or (ALIYUN_NAMESPACE if self.aliyun else fact.namespace)
        prefix = f"{self.registry}/" if self.registry else ""
        return f"{prefix}{namespace}/{fact.name}"

    def cc_fields(self) -> dict[str, str]:
        """The cc keys that carry these inputs: local_registry always (as before), the others only when set."""
        fields = {CC_LOCAL_REGISTRY: self.local_registry}
        if self.namespace_override:
            fields[CC_NAMESPACE_OVERRIDE] = self.namespace_override
        if self.zone:
            fields[CC_ZONE] = self.zone
        return fields


@dataclass(frozen=True)
class PlannedImage:
    key: str
    ref: str  # what the cluster's container runtime is asked for, exactly as the installer renders it
    used_by: str  # kubesphere/ks-installer@<tag>:<path>

    @property
    def canonical(self) -> str:
        """The reference with its registry spelled out (docker.io when the installer writes none)."""
        return canonical_ref(self.ref)


def canonical_ref(ref: str) -> str:
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return f"{DEFAULT_REGISTRY}/{ref}" if "/" in ref else f"{DEFAULT_REGISTRY}/library/{ref}"


def facts_for(release: str, role: str, kubernetes_version: str) -> list[ImageFact]:
    parsed = versions.parse_k8s_version(kubernetes_version or "")
    chosen = []
    for fact in IMAGE_FACTS:
        if release not in dict(fact.tags):
            continue  # not installed by this release
        if fact.hosts_only and role != "host":
            continue
        if fact.min_kubernetes and parsed is not None and parsed[:2] < fact.min_kubernetes:
            continue
        chosen.append(fact)
    return chosen


def plan(release: str, role: str, kubernetes_version: str, naming: Naming) -> list[PlannedImage]:
    """Every image a cluster of this release and role pulls with kslab's default components, in a fixed order.
    The installer's own image follows the same rules (kslab renders its Deployment with them)."""
    if release not in versions.KUBESPHERE_RELEASES:
        raise ValueError(f"no image facts for KubeSphere {release}")
    planned: dict[str, PlannedImage] = {}
    for fact in facts_for(release, role, kubernetes_version):
        ref = f"{naming.repository(fact)}:{fact.tag(release, kubernetes_version)}"
        planned.setdefault(ref, PlannedImage(fact.key, ref, f"kubesphere/ks-installer@{release}:{fact.used_by}"))
    return list(planned.values())  # one entry per image, the first role that pulls it named


def installer_image(release: str, naming: Naming) -> str:
    fact = next(f for f in IMAGE_FACTS if f.key == "ks_installer")
    return f"{naming.repository(fact)}:{fact.tag(release, '')}"
