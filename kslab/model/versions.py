"""Version facts the lab depends on, in one place.

Sources: ks-installer release notes and docs (support table), kind release
notes (node images published per release), and ks-installer / kubesphere read at the
release tags kslab supports (v3.2.1 and v3.4.1). See README "Versions".
"""
from __future__ import annotations

import re
from dataclasses import dataclass

SUPPORTED = "supported"
EXPERIMENTAL = "experimental"  # works upstream with caveats: allowed, warned
UNSUPPORTED = "unsupported"


# kubesphere/ks-installer@<tag>:deploy/kubesphere-installer.yaml: the ks-installer ClusterRole has one
# rule per API group (resources and verbs '*'), in this order. v3.4.1 has the same list with
# kubeedge.kubesphere.io renamed in place to edgeruntime.kubesphere.io and alerting.kubesphere.io appended.
_INSTALLER_GROUPS_V3_2 = (
    "", "apps", "extensions", "batch", "rbac.authorization.k8s.io", "apiregistration.k8s.io",
    "apiextensions.k8s.io", "tenant.kubesphere.io", "certificates.k8s.io", "devops.kubesphere.io",
    "monitoring.coreos.com", "logging.kubesphere.io", "jaegertracing.io", "storage.k8s.io",
    "admissionregistration.k8s.io", "policy", "autoscaling", "networking.istio.io", "config.istio.io",
    "iam.kubesphere.io", "notification.kubesphere.io", "auditing.kubesphere.io", "events.kubesphere.io",
    "core.kubefed.io", "installer.kubesphere.io", "storage.kubesphere.io", "security.istio.io",
    "monitoring.kiali.io", "kiali.io", "networking.k8s.io", "kubeedge.kubesphere.io", "types.kubefed.io",
    "monitoring.kubesphere.io", "application.kubesphere.io",
)
_INSTALLER_GROUPS_V3_4 = tuple("edgeruntime.kubesphere.io" if g == "kubeedge.kubesphere.io" else g
                               for g in _INSTALLER_GROUPS_V3_2) + ("alerting.kubesphere.io",)

# The cc status key each optional component's installer role writes (`kubectl patch cc --type merge -p
# '{"status": {"<key>": {"status": "enabled", ...}}}'`), or None where no role writes one.
# Sources (kubesphere/ks-installer@<tag>:roles/...): ks-devops, ks-logging, ks-auditing, ks-events, ks-istio
# tasks/main.yaml; alerting in ks-monitor (thanosruler); metrics-server/tasks/main.yml writes `metricsServer`;
# no role writes `openpitrix` at either tag; network policy has no role (kubesphere-config only).
_COMMON_STATUS_KEYS = {
    "devops": "devops", "logging": "logging", "alerting": "alerting", "auditing": "auditing",
    "events": "events", "servicemesh": "servicemesh", "openpitrix": None, "networkPolicy": None,
    "metricsServer": "metricsServer",
}


@dataclass(frozen=True)
class KubeSphereRelease:
    """What kslab relies on about one KubeSphere release, read from upstream at its tag
    (kubesphere/ks-installer and kubesphere/kubesphere; citations beside each table)."""
    version: str
    # Kubernetes minors that upstream supports / marks experimental or partial.
    supported_minors: tuple[int, ...]
    experimental_minors: tuple[int, ...]
    # deploy/kubesphere-installer.yaml: the Deployment's `app` label (ks-install at v3.2.1, ks-installer at v3.4.1).
    installer_pod_label: str
    installer_api_groups: tuple[str, ...]
    # The edge component's cc key: kubeedge (v3.2.1) became edgeruntime (v3.4.1), which installs (and writes
    # status.edgeruntime) only with edgeruntime.kubeedge.enabled (roles/edgeruntime/tasks/main.yaml@v3.4.1).
    edge_component_key: str
    # kslab component name -> cc status key the installer writes for it (None: nothing is written).
    component_status_keys: dict[str, str | None]
    # roles/ks-core/config/templates/kubesphere-config.yaml.j2: v3.4.1 always writes
    # multicluster.clusterRole; v3.2.1 writes a multicluster section for hosts only.
    kubesphere_config_has_role: bool
    # v3.4.1: the ks-core chart's ValidatingWebhookConfiguration `cluster.kubesphere.io` validates every
    # UPDATE of a Cluster against the member (ks-installer@v3.4.1:roles/ks-core/ks-core/files/ks-core/
    # templates/webhook.yaml; kubesphere@v3.4.1:pkg/controller/cluster/cluster_webhook.go), and the
    # controller records the member's kube-system UID in Cluster status.uid (cluster_controller.go).
    cluster_webhook: bool
    # pkg/kapis/cluster/v1alpha1/handler.go: how the console refuses a cluster imported twice
    # ("server": same API server address at v3.2.1; "uid": same kube-system UID at v3.4.1), and whether it
    # checks the member's role in its kubesphere-config (v3.4.1 only).
    duplicate_check: str
    console_role_check: bool
    # 3.2's join waits for an auto-created SA token secret; k8s >= 1.24 never makes it (join.go@v3.2.1).
    join_needs_legacy_sa_token: bool
    # Rough memory of a default install (monitoring always on in 3.x), in MiB.
    base_memory_mib: int


KUBESPHERE_RELEASES: dict[str, KubeSphereRelease] = {
    r.version: r
    for r in (
        KubeSphereRelease(
            "v3.2.1", (19, 20, 21), (22,), "ks-install", _INSTALLER_GROUPS_V3_2, "kubeedge",
            {**_COMMON_STATUS_KEYS, "edgeruntime": "kubeedge"},
            kubesphere_config_has_role=False, cluster_webhook=False, duplicate_check="server",
            console_role_check=False, join_needs_legacy_sa_token=True,
            base_memory_mib=2560),
        KubeSphereRelease(
            "v3.4.1", (21, 22, 23, 24, 25, 26), (), "ks-installer", _INSTALLER_GROUPS_V3_4, "edgeruntime",
            {**_COMMON_STATUS_KEYS, "edgeruntime": "edgeruntime"},
            kubesphere_config_has_role=True, cluster_webhook=True, duplicate_check="uid",
            console_role_check=True, join_needs_legacy_sa_token=False,
            base_memory_mib=3072),
    )
}

# Where each optional component's switch sits in the cc spec (ks-installer's deploy/cluster-configuration.yaml,
# identical at v3.2.1 and v3.4.1). The edge component's key differs by release: KubeSphereRelease.edge_component_key.
COMPONENT_CC_PATHS: dict[str, tuple[str, ...]] = {
    "devops": ("devops", "enabled"), "logging": ("logging", "enabled"), "alerting": ("alerting", "enabled"),
    "auditing": ("auditing", "enabled"), "events": ("events", "enabled"),
    "servicemesh": ("servicemesh", "enabled"), "openpitrix": ("openpitrix", "store", "enabled"),
    "networkPolicy": ("network", "networkpolicy", "enabled"), "metricsServer": ("metrics_server", "enabled"),
}
# Extra memory (MiB) an optional component adds to a cluster, a rough lab estimate
# (ks-installer#93: a full 3.x install wants 4-10 GB; the seed notes ran two minimal
# 3.2.1 clusters on a 4-core/8 GB laptop, which the base figures above respect).
COMPONENT_MEMORY_MIB: dict[str, int] = {
    "devops": 2048,
    "logging": 2560,
    "alerting": 256,
    "auditing": 512,
    "events": 512,
    "servicemesh": 1536,
    "openpitrix": 256,
    "edgeruntime": 512,
    "networkPolicy": 64,
    "metricsServer": 128,
}
# kind's own control-plane node (kubelet, etcd, apiserver...) before KubeSphere.
KIND_NODE_MEMORY_MIB = 512

# Node-image Kubernetes minors that each kind release published images for.
# kind only guarantees images built for its own release, so a pair outside this
# range is refused by the preflight (fix: install another kind or pick an image).
KIND_RELEASE_NODE_MINORS: dict[str, tuple[int, int]] = {
    "v0.11": (14, 21),
    "v0.12": (14, 23),
    "v0.13": (18, 24),
    "v0.14": (18, 24),
    "v0.15": (19, 25),
    "v0.16": (19, 25),
    "v0.17": (19, 26),
    "v0.18": (21, 26),
    "v0.19": (21, 27),
    "v0.20": (21, 27),
    "v0.21": (22, 28),
    "v0.22": (23, 29),
    "v0.23": (25, 30),
    "v0.24": (26, 31),
    "v0.25": (27, 32),
    "v0.26": (27, 32),
    "v0.27": (28, 33),
    "v0.28": (29, 34),
    "v0.29": (30, 34),
    "v0.30": (30, 34),
    "v0.31": (31, 35),
}

DEFAULT_KUBESPHERE_VERSION = "v3.4.1"
DEFAULT_NODE_IMAGE = "kindest/node:v1.25.16"

_K8S_VERSION = re.compile(r"^v?(\d+)\.(\d+)(?:\.(\d+))?$")
_IMAGE_TAG = re.compile(r":(v\d+\.\d+\.\d+)(?:@sha256:[0-9a-f]{64})?$")


def parse_k8s_version(text: str) -> tuple[int, int, int] | None:
    """'v1.25.16' -> (1, 25, 16); None when it is not a version."""
    m = _K8S_VERSION.match(text.strip())
    if not m:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def node_image_k8s_version(image: str) -> str | None:
    """The Kubernetes version a kindest/node image tag names, e.g. 'v1.19.16'."""
    m = _IMAGE_TAG.search(image)
    return m.group(1) if m else None


def image_is_pinned(image: str) -> bool:
    """An exact vX.Y.Z tag or a sha256 digest; 'latest' or a bare repo is not."""
    return bool(_IMAGE_TAG.search(image)) or "@sha256:" in image


def support_level(ks_version: str, k8s_version: str) -> str:
    release = KUBESPHERE_RELEASES.get(ks_version)
    parsed = parse_k8s_version(k8s_version)
    if release is None or parsed is None or parsed[0] != 1:
        return UNSUPPORTED
    minor = parsed[1]
    if minor in release.supported_minors:
        return SUPPORTED
    if minor in release.experimental_minors:
        return EXPERIMENTAL
    return UNSUPPORTED


def supported_range_text(ks_version: str) -> str:
    release = KUBESPHERE_RELEASES[ks_version]
    lo, hi = min(release.supported_minors), max(release.supported_minors)
    text = f"1.{lo}-1.{hi}"
    if release.experimental_minors:
        text += " (experimental: " + ", ".join(f"1.{m}" for m in release.experimental_minors) + ")"
    return text


def kind_release_key(kind_version: str) -> str | None:
    """'kind v0.20.0 go1.20.4 linux/amd64' or 'v0.20.0' -> 'v0.20'."""
    m = re.search(r"v(\d+)\.(\d+)\.\d+", kind_version)
    return f"v{m.group(1)}.{m.group(2)}" if m else None


def kind_supports_image(kind_version: str, image: str) -> bool | None:
    """True/False when known; None when the kind release is not in our table."""
    key = kind_release_key(kind_version)
    k8s = node_image_k8s_version(image)
    if key is None or k8s is None or key not in KIND_RELEASE_NODE_MINORS:
        return None
    lo, hi = KIND_RELEASE_NODE_MINORS[key]
    parsed = parse_k8s_version(k8s)
    return parsed is not None and lo <= parsed[1] <= hi


def cluster_memory_mib(ks_version: str, components: dict[str, bool], kind_node: bool,
                       base_override: dict[str, int] | None = None,
                       component_override: dict[str, int] | None = None) -> int:
    """Rough memory of one lab cluster: node + KubeSphere core + enabled components."""
    bases = {v: r.base_memory_mib for v, r in KUBESPHERE_RELEASES.items()}
    bases.update(base_override or {})
    per_component = dict(COMPONENT_MEMORY_MIB)
    per_component.update(component_override or {})
    total = bases.get(ks_version, max(bases.values()))
    total += sum(per_component.get(name, 0) for name, on in components.items() if on)
    if kind_node:
        total += KIND_NODE_MEMORY_MIB
    return total
