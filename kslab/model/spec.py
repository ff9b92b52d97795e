"""The lab topology: typed spec parsed from stack config, and its validation.

Pure code: no Pulumi calls. `parse_lab` either returns a fully valid LabSpec or
raises LabConfigError listing every problem (field, bad value, fix), so the
program stops before a single resource is registered.
"""
from __future__ import annotations

import difflib
import ipaddress
import os
import re
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from kslab.model import image_sources, images, versions

ROLES = ("none", "host", "member")
BACKENDS = ("kind", "existing")
JWT_MODES = ("shared", "copy")
COMPONENTS = tuple(versions.COMPONENT_MEMORY_MIB)
CONSOLE_NODE_PORT = 30880
FIRST_CONSOLE_HOST_PORT = 30880

# DNS-1123 label; kind also names the container "<name>-control-plane", and the
# name ends up in shell commands, so nothing outside this alphabet is accepted.
_DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_NAME_LEN = 40
# Config keys that may be named as secret sources for an existing cluster's kubeconfig.
_CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")

CLUSTER_FIELDS = {
    "name", "role", "backend", "nodeImage", "kubernetesVersion", "kubesphereVersion",
    "hostClusterName", "consoleHostPort", "consolePort", "podSubnet", "serviceSubnet",
    "components", "kubeconfigPath", "kubeconfigSecret", "internalServer", "consoleUrl",
    "allowLoopbackJoin", "loopbackReason", "imageCheck",
}
JOIN_FIELDS = {"member", "host"}


@dataclass(frozen=True)
class Problem:
    field: str
    value: Any
    message: str
    fix: str
    # The policy-pack policy that guards the same trap; such problems become warnings in
    # validationMode 'warn' (the pack then judges). Structural problems have none and always fail.
    policy: str | None = None

    def __str__(self) -> str:
        return f"{self.field} = {shown(self.field, self.value)}: {self.message}. Fix: {self.fix}"


# A field whose name says it may hold a secret, e.g. a kubeconfig pasted under a mistyped key.
_SECRET_FIELD = re.compile(r"(?i)(kubeconfig|secret|token|password|key|cert)")


def shown(field: str, value: Any) -> str:
    """A value as a message may show it: never that of a field that may hold a secret (other than the
    name of a config key), and never a long or multi-line one (a pasted kubeconfig or token)."""
    if isinstance(value, str) and (field.endswith(".kubeconfigSecret") or field.endswith(".kubeconfigPath")) \
            and len(value) <= 200 and "\n" not in value:
        return repr(value)
    text = repr(value)
    if _SECRET_FIELD.search(field.rsplit(".", 1)[-1]) and value not in (None, "", "(set)", "(secret)"):
        return f"({_yaml_kind(value) if not isinstance(value, str) else 'a string'}, not shown)"
    if len(text) > 120 or "\n" in str(value):
        return f"({len(str(value))} characters, not shown)"
    return text


class LabConfigError(ValueError):
    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"kslab: invalid stack config ({len(problems)} problem(s)); nothing was created:\n{lines}")


@dataclass(frozen=True)
class ClusterSpec:
    name: str
    role: str
    backend: str
    kubesphere_version: str
    kubernetes_version: str
    node_image: str | None  # kind only
    host_cluster_name: str | None  # hosts only
    console_host_port: int | None  # kind only
    console_port: int
    pod_subnet: str | None
    service_subnet: str | None
    components: dict[str, bool]
    kubeconfig_path: str | None = None  # existing only
    kubeconfig_secret: str | None = None  # existing only: name of a secret config key
    internal_server: str | None = None  # existing only: server the hosts use
    console_url: str | None = None
    allow_loopback_join: bool = False
    loopback_reason: str | None = None
    # Ask the registries for every planned image before anything is created (README "Where the images come
    # from"); off for a cluster whose nodes reach a registry this machine cannot.
    image_check: bool = True

    @property
    def is_kind(self) -> bool:
        return self.backend == "kind"

    @property
    def declared_console_url(self) -> str | None:
        """The console URL the stack file alone gives (kind: its published host port); None for an existing
        cluster without consoleUrl, whose address is known only from its kubeconfig."""
        if self.is_kind:
            return f"http://127.0.0.1:{self.console_host_port}"
        return self.console_url

    @property
    def context_name(self) -> str:
        return f"kind-{self.name}" if self.is_kind else f"kslab-{self.name}"


@dataclass(frozen=True)
class JoinSpec:
    member: str
    host: str

    @property
    def name(self) -> str:
        return f"{self.member}-to-{self.host}"


# The KubeSphere components a developer workspace can take over, and the workspace fields.
DEV_COMPONENTS = ("ks-controller-manager", "ks-apiserver")
DEV_WORKSPACE_FIELDS = {"cluster", "component", "dir", "keepFiles"}


@dataclass(frozen=True)
class DevWorkspaceSpec:
    cluster: str
    component: str
    dir: str  # relative to the project directory, or absolute
    keep_files: bool = False

    @property
    def name(self) -> str:
        return f"{self.cluster}-{self.component}-dev"


@dataclass(frozen=True)
class LabSpec:
    clusters: tuple[ClusterSpec, ...]
    joins: tuple[JoinSpec, ...]
    jwt_secret_mode: str
    allow_multiple_hosts: bool
    install_timeout_seconds: int
    join_timeout_seconds: int
    unjoin_timeout_seconds: int
    kind_wait: str
    registry: str
    validation_mode: str = "strict"
    namespace_override: str = ""
    zone: str = ""
    warnings: tuple[str, ...] = field(default=())
    dev_workspaces: tuple[DevWorkspaceSpec, ...] = field(default=())
    # kslab:imageSources: kind clusters pull from the lab registry, filled from these (kslab/model/image_sources.py)
    image_sources: image_sources.ImageSources | None = None

    @property
    def naming(self) -> images.Naming:
        """ks-installer's image naming inputs from kslab:registry, namespaceOverride and zone."""
        return images.Naming(self.registry, self.namespace_override, self.zone)

    def uses_lab_registry(self, cluster: ClusterSpec) -> bool:
        """A kind cluster of a lab with image sources pulls from the lab registry (on kind's network, which an
        existing cluster cannot reach)."""
        return self.image_sources is not None and cluster.is_kind

    def naming_of(self, cluster: ClusterSpec) -> images.Naming:
        """The naming inputs this cluster's cc carries."""
        if self.image_sources is not None and cluster.is_kind:
            return self.image_sources.naming
        return self.naming

    def images_of(self, cluster: ClusterSpec) -> list[images.PlannedImage]:
        return images.plan(cluster.kubesphere_version, cluster.role, cluster.kubernetes_version,
                           self.naming_of(cluster))

    def cluster(self, name: str) -> ClusterSpec:
        return next(c for c in self.clusters if c.name == name)

    def hosts_of(self, member: str) -> list[str]:
        return [j.host for j in self.joins if j.member == member]

    @property
    def multi_host_members(self) -> list[str]:
        members = [j.member for j in self.joins]
        return sorted({m for m in members if members.count(m) > 1})


# What YAML made of a value, for messages ("a list", "the number 1.2").
def _yaml_kind(value: Any) -> str:
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return f"a {type(value).__name__}"


_WRONG_TYPE = object()  # a value of the wrong YAML type; its problem is already recorded


def _as_text(problems: list[Problem], path: str, value: Any, default: Any = None, *,
             example: str = "") -> Any:
    """A string field: its value, `default` when absent, or _WRONG_TYPE (with a problem) for a list,
    mapping, number or boolean. A number is usually a version YAML read as a float (1.20 -> 1.2)."""
    if value is None:
        return default
    if isinstance(value, str):
        return value
    hint = (f"quote it: '{example}'" if example else "quote it") if isinstance(value, (int, float)) \
        else f"write one string{', e.g. ' + repr(example) if example else ''}"
    problems.append(Problem(path, value, f"must be a string, but YAML read {_yaml_kind(value)}", hint))
    return _WRONG_TYPE


def _as_bool(problems: list[Problem], path: str, value: Any, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    problems.append(Problem(path, value, "must be true or false", f"set {path} to true or false"))
    return default


def _as_int(problems: list[Problem], path: str, value: Any, default: int, lo: int, hi: int) -> int:
    if value is None:
        return default
    try:
        number = int(str(value), 10)
    except ValueError:
        number = None
    if number is None or isinstance(value, bool) or not lo <= number <= hi:
        problems.append(Problem(path, value, f"must be a whole number from {lo} to {hi}",
                                f"set {path} to a number in that range"))
        return default
    return number


def _check_name(problems: list[Problem], path: str, name: Any) -> bool:
    if name is None or name == "":
        problems.append(Problem(path, name, "is missing", "give every cluster a name such as 'host' or 'member'"))
        return False
    if not isinstance(name, str):
        problems.append(Problem(path, name, f"must be a string, but YAML read {_yaml_kind(name)}",
                                "write the name as one string, e.g. 'member'"))
        return False
    if len(name) > MAX_NAME_LEN or not _DNS1123.match(name):
        problems.append(Problem(
            path, name,
            f"is not a DNS-1123 label of at most {MAX_NAME_LEN} characters (lower-case letters, digits, '-')",
            "rename it, e.g. 'host2' or 'member-a'"))
        return False
    return True


def _check_cidr(problems: list[Problem], path: str, value: Any) -> str | None:
    if value is None:
        return None
    try:
        return str(ipaddress.ip_network(str(value), strict=True))
    except ValueError:
        problems.append(Problem(path, value, "is not a valid network CIDR", "use a form like 10.245.0.0/16"))
        return None


# An image reference or registry: alphanumeric first, so it can never be read as a command-line option.
_IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./_:@-]*$")
_REGISTRY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*(:[0-9]+)?(/[A-Za-z0-9._\-]+)*$")
# The smallest networks a one-node kind cluster can use: kube-controller-manager gives each node a /24 (IPv4)
# or /64 (IPv6) of the pod subnet (kubernetes@v1.26.13:cmd/kube-controller-manager/app/core.go,
# defaultNodeMaskCIDRIPv4/IPv6), and kubeadm gives CoreDNS the 10th address of the service subnet.
# kube-apiserver refuses a service subnet of more than 20 host bits
# (kubernetes@v1.26.13:cmd/kube-apiserver/app/options/validation.go, maxCIDRBits).
_MAX_POD_PREFIX = {4: 24, 6: 64}
# ... and the pod subnet may be at most 16 bits larger than a node's share (clusterSubnetMaxDiff,
# kubernetes@v1.26.13:pkg/controller/nodeipam/ipam/cidrset/cidr_set.go; kubeadm checks the same).
_MIN_POD_PREFIX = {4: 24 - 16, 6: 64 - 16}
_MAX_SERVICE_PREFIX = {4: 28, 6: 124}
_MAX_SERVICE_HOST_BITS = 20


def _parse_cluster(problems: list[Problem], index: int, raw: Any, defaults: dict[str, Any]) -> ClusterSpec | None:
    path = f"kslab:clusters[{index}]"
    if not isinstance(raw, dict):
        problems.append(Problem(path, raw, "must be a mapping with at least 'name'",
                                "see stacks/Pulumi.standalone.yaml"))
        return None
    for unknown in sorted(set(raw) - CLUSTER_FIELDS):
        close = difflib.get_close_matches(unknown, CLUSTER_FIELDS, n=1)
        problems.append(Problem(f"{path}.{unknown}", raw[unknown], "is not a known cluster field",
                                f"did you mean '{close[0]}'?" if close else
                                "remove it; known fields: " + ", ".join(sorted(CLUSTER_FIELDS))))

    def text(key: str, default: Any = None, example: str = "") -> Any:
        return _as_text(problems, f"{path}.{key}", raw.get(key), default, example=example)

    name = raw.get("name")
    if not _check_name(problems, f"{path}.name", name):
        name = None

    role = text("role", "none", "host")
    if role is not _WRONG_TYPE and role not in ROLES:
        problems.append(Problem(f"{path}.role", role, "is not a KubeSphere cluster role",
                                "use one of none, host, member", "kslab-invalid-role"))
    backend = text("backend", "kind", "kind")
    if backend is not _WRONG_TYPE and backend not in BACKENDS:
        problems.append(Problem(f"{path}.backend", backend, "is not a known backend",
                                "use 'kind' (kslab creates the cluster) or 'existing' (you give a kubeconfig)"))

    ks_version = text("kubesphereVersion", defaults["kubesphereVersion"], versions.DEFAULT_KUBESPHERE_VERSION)
    if ks_version is not _WRONG_TYPE and ks_version not in versions.KUBESPHERE_RELEASES:
        problems.append(Problem(f"{path}.kubesphereVersion", ks_version, "is not a KubeSphere release kslab knows",
                                "use one of " + ", ".join(versions.KUBESPHERE_RELEASES)))
    allow_loopback = _as_bool(problems, f"{path}.allowLoopbackJoin", raw.get("allowLoopbackJoin"), False)
    image_check = _as_bool(problems, f"{path}.imageCheck", raw.get("imageCheck"), True)
    loopback_reason = text("loopbackReason")
    console_url = text("consoleUrl", example="https://console.example:30880")

    node_image = None
    k8s_version = None
    if backend == "kind":
        node_image = text("nodeImage", defaults["nodeImage"], versions.DEFAULT_NODE_IMAGE)
        if node_image is _WRONG_TYPE:
            node_image = None
        elif not _IMAGE_REF.match(node_image):
            problems.append(Problem(f"{path}.nodeImage", node_image, "is not an image reference",
                                    f"use e.g. {versions.DEFAULT_NODE_IMAGE}"))
            node_image = None
        else:
            k8s_version = versions.node_image_k8s_version(node_image)
            if k8s_version is None:
                problems.append(Problem(f"{path}.nodeImage", node_image,
                                        "has no exact vX.Y.Z tag, so its Kubernetes version is unknown",
                                        f"pin the image, e.g. {versions.DEFAULT_NODE_IMAGE} (a @sha256 digest "
                                        "may follow)"))
        for existing_only in ("kubeconfigPath", "kubeconfigSecret", "internalServer", "kubernetesVersion"):
            if existing_only in raw:
                problems.append(Problem(f"{path}.{existing_only}", raw[existing_only],
                                        "only applies to backend 'existing'",
                                        "remove it, or set backend: existing"))
        if allow_loopback:
            problems.append(Problem(f"{path}.allowLoopbackJoin", raw["allowLoopbackJoin"],
                                    "cannot be used with the kind backend: a kind cluster's 127.0.0.1 is the "
                                    "user's machine, which the host cluster cannot reach",
                                    "remove it; kslab joins kind clusters through their container IP"))
        if console_url not in (None, _WRONG_TYPE):
            problems.append(Problem(f"{path}.consoleUrl", console_url,
                                    "only applies to backend 'existing': a kind cluster's console is "
                                    "http://127.0.0.1:<consoleHostPort>",
                                    "remove it; set consoleHostPort to choose the port"))
    elif backend == "existing":
        k8s_version = text("kubernetesVersion", example="v1.26.13")
        if k8s_version is _WRONG_TYPE:
            k8s_version = None
        elif versions.parse_k8s_version(k8s_version or "") is None:
            problems.append(Problem(f"{path}.kubernetesVersion", k8s_version,
                                    "is required for an existing cluster and must look like v1.26.13",
                                    "set it to the version `kubectl version` reports for that cluster"))
            k8s_version = None
        else:
            k8s_version = "v" + k8s_version.lstrip("v")
        sources = [k for k in ("kubeconfigPath", "kubeconfigSecret") if raw.get(k) is not None]
        if len(sources) != 1:
            problems.append(Problem(f"{path}.kubeconfigPath", raw.get("kubeconfigPath"),
                                    "an existing cluster needs exactly one of kubeconfigPath or kubeconfigSecret",
                                    "set kubeconfigPath to a file, or kubeconfigSecret to the name of a secret config "
                                    "key (pulumi config set --secret <key> < kubeconfig)"))
        for kind_only in ("nodeImage", "consoleHostPort", "podSubnet", "serviceSubnet"):
            if kind_only in raw:
                problems.append(Problem(f"{path}.{kind_only}", raw[kind_only], "only applies to backend 'kind'",
                                        "remove it, or set backend: kind"))
        if allow_loopback and loopback_reason is not _WRONG_TYPE and not (loopback_reason or "").strip():
            problems.append(Problem(f"{path}.loopbackReason", raw.get("loopbackReason"),
                                    "is required when allowLoopbackJoin is true",
                                    "write why a host can reach this loopback address (e.g. all API servers "
                                    "run on this one machine)"))
        if isinstance(console_url, str):
            try:
                parts = urlsplit(console_url)
                host = parts.hostname
            except ValueError:
                parts, host = None, None
            if parts is None or parts.scheme not in ("http", "https") or not host:
                problems.append(Problem(f"{path}.consoleUrl", console_url,
                                        "must be an http:// or https:// URL with a host",
                                        "use e.g. http://192.168.1.20:30880"))

    kubeconfig_secret = text("kubeconfigSecret", example="memberKubeconfig")
    if isinstance(kubeconfig_secret, str) and not _CONFIG_KEY.match(kubeconfig_secret):
        problems.append(Problem(f"{path}.kubeconfigSecret", kubeconfig_secret,
                                "is not a config key name", "use a key like memberKubeconfig"))
    kubeconfig_path = text("kubeconfigPath", example="~/.kube/member.yaml")
    if kubeconfig_path == "":
        problems.append(Problem(f"{path}.kubeconfigPath", kubeconfig_path, "is empty",
                                "point it at the cluster's kubeconfig file"))

    if ks_version in versions.KUBESPHERE_RELEASES and k8s_version:
        level = versions.support_level(ks_version, k8s_version)
        field_name = "nodeImage" if backend == "kind" else "kubernetesVersion"
        if level == versions.UNSUPPORTED:
            problems.append(Problem(
                f"{path}.{field_name}", node_image or k8s_version,
                f"Kubernetes {k8s_version} is not supported by KubeSphere {ks_version} "
                f"(supported: {versions.supported_range_text(ks_version)})",
                "pick a Kubernetes version in that range, or another kubesphereVersion", "kslab-unsupported-versions"))

    components_raw = raw.get("components")
    if components_raw is None:
        components_raw = {}
    components: dict[str, bool] = dict(defaults["components"])  # checked once, at kslab:components
    if not isinstance(components_raw, dict):
        problems.append(Problem(f"{path}.components", components_raw,
                                "must be a mapping of component: true/false, but YAML read "
                                f"{_yaml_kind(components_raw)}",
                                "e.g. components: {devops: true}"))
        components_raw = {}
    components.update(_parse_components(problems, f"{path}.components", components_raw))

    host_cluster_name = None
    if role == "host":
        host_cluster_name = raw.get("hostClusterName", name)
        if host_cluster_name is not None and not _check_name(problems, f"{path}.hostClusterName", host_cluster_name):
            host_cluster_name = None
    elif "hostClusterName" in raw:
        problems.append(Problem(f"{path}.hostClusterName", raw["hostClusterName"], "only applies to role 'host'",
                                "remove it or set role: host"))

    console_host_port = None
    if backend == "kind":
        console_host_port = _as_int(problems, f"{path}.consoleHostPort", raw.get("consoleHostPort"),
                                    FIRST_CONSOLE_HOST_PORT + index, 1024, 65535)
    console_port = _as_int(problems, f"{path}.consolePort", raw.get("consolePort"), CONSOLE_NODE_PORT, 30000, 32767)

    internal_server = text("internalServer", example="https://10.0.0.12:6443")
    if isinstance(internal_server, str) and not _is_https_host_port(internal_server):
        problems.append(Problem(f"{path}.internalServer", internal_server, "must be an https:// URL with host and port",
                                "use e.g. https://10.0.0.12:6443"))

    pod_subnet = _check_cidr(problems, f"{path}.podSubnet", raw.get("podSubnet"))
    service_subnet = _check_cidr(problems, f"{path}.serviceSubnet", raw.get("serviceSubnet"))
    _check_subnet_sizes(problems, path, pod_subnet, service_subnet)

    # A role outside ROLES still makes a spec: in validationMode 'warn' the kslab-invalid-role policy judges it.
    if name is None or not isinstance(role, str) or backend not in BACKENDS \
            or ks_version not in versions.KUBESPHERE_RELEASES:
        return None
    return ClusterSpec(
        name=name, role=role, backend=backend, kubesphere_version=ks_version,
        kubernetes_version=k8s_version or "", node_image=node_image, host_cluster_name=host_cluster_name,
        console_host_port=console_host_port, console_port=console_port,
        pod_subnet=pod_subnet, service_subnet=service_subnet,
        components=components,
        kubeconfig_path=kubeconfig_path if isinstance(kubeconfig_path, str) else None,
        kubeconfig_secret=kubeconfig_secret if isinstance(kubeconfig_secret, str) else None,
        internal_server=internal_server if isinstance(internal_server, str) else None,
        console_url=console_url if isinstance(console_url, str) else None,
        allow_loopback_join=allow_loopback,
        loopback_reason=loopback_reason if isinstance(loopback_reason, str) else None,
        image_check=image_check,
    )


def _parse_dev_workspaces(problems: list[Problem], raw: Any, cluster_names: set[str]) -> tuple[DevWorkspaceSpec, ...]:
    """`kslab:devWorkspaces`: [{cluster, component, dir, keepFiles}] (README "Develop KubeSphere against the lab")."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.append(Problem("kslab:devWorkspaces", raw, f"must be a list, but YAML read {_yaml_kind(raw)}",
                                "e.g. devWorkspaces: [{cluster: host, component: ks-controller-manager, "
                                "dir: dev/host-ks-controller-manager}]"))
        return ()
    found: list[DevWorkspaceSpec] = []
    dirs: dict[str, int] = {}
    for i, item in enumerate(raw):
        path = f"kslab:devWorkspaces[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, item, "must be a mapping {cluster, component, dir}",
                                    "e.g. {cluster: host, component: ks-controller-manager, dir: dev/kcm}"))
            continue
        for unknown in sorted(set(item) - DEV_WORKSPACE_FIELDS):
            problems.append(Problem(f"{path}.{unknown}", item[unknown], "is not a workspace field",
                                    "use " + ", ".join(sorted(DEV_WORKSPACE_FIELDS))))
        cluster = _as_text(problems, f"{path}.cluster", item.get("cluster"), example="host")
        component = _as_text(problems, f"{path}.component", item.get("component"), example=DEV_COMPONENTS[0])
        directory = _as_text(problems, f"{path}.dir", item.get("dir"), example="dev/kcm")
        keep = _as_bool(problems, f"{path}.keepFiles", item.get("keepFiles"), False)
        ok = True
        if cluster is None or (isinstance(cluster, str) and cluster not in cluster_names):
            problems.append(Problem(f"{path}.cluster", cluster, "names no cluster of this stack",
                                    "use one of " + ", ".join(sorted(cluster_names)) if cluster_names
                                    else "add the cluster"))
            ok = False
        if component is None or (isinstance(component, str) and component not in DEV_COMPONENTS):
            problems.append(Problem(f"{path}.component", component, "is not a component a workspace can take over",
                                    "use one of " + ", ".join(DEV_COMPONENTS)))
            ok = False
        if isinstance(directory, str) and os.path.normpath(os.path.expanduser(directory)) in (
                ".", "..", "/", os.path.expanduser("~")):
            problems.append(Problem(f"{path}.dir", directory, "is the project, its parent, your home or the root",
                                    "name a folder of its own, e.g. dev/host-ks-controller-manager"))
            ok = False
        elif directory is None or directory == "" or (isinstance(directory, str) and "\0" in directory):
            problems.append(Problem(f"{path}.dir", directory, "must name the workspace folder",
                                    "e.g. dir: dev/host-ks-controller-manager (relative to the project)"))
            ok = False
        if not ok or _WRONG_TYPE in (cluster, component, directory):
            continue
        workspace = DevWorkspaceSpec(cluster, component, directory, keep)
        if any(w.name == workspace.name for w in found):
            problems.append(Problem(path, item, f"takes over {component} on '{cluster}' a second time",
                                    "keep one workspace per cluster and component"))
            continue
        same = os.path.normpath(directory)
        if same in dirs:
            problems.append(Problem(f"{path}.dir", directory, f"is also kslab:devWorkspaces[{dirs[same]}].dir",
                                    "give each workspace its own folder"))
            continue
        dirs[same] = i
        found.append(workspace)
    return tuple(found)


def _is_https_host_port(url: str) -> bool:
    """https://<host>:<port>, nothing more (a kubeconfig server a host can dial)."""
    if not re.match(r"^https://[A-Za-z0-9.\-\[\]:]+$", url):
        return False
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and parts.port is not None and 0 < parts.port
    except ValueError:  # a bad IPv6 literal or a port out of range
        return False


def _parse_components(problems: list[Problem], path: str, raw: dict[str, Any]) -> dict[str, bool]:
    components: dict[str, bool] = {}
    for comp, enabled in raw.items():
        if comp not in COMPONENTS:
            close = difflib.get_close_matches(str(comp), COMPONENTS, n=1)
            problems.append(Problem(f"{path}.{comp}", enabled, "is not a KubeSphere 3.x optional component",
                                    (f"did you mean '{close[0]}'? " if close else "") + "use one of "
                                    + ", ".join(COMPONENTS)))
            continue
        components[comp] = _as_bool(problems, f"{path}.{comp}", enabled, False)
    return components


def _check_subnet_sizes(problems: list[Problem], path: str, pod: str | None, service: str | None) -> None:
    nets = {label: ipaddress.ip_network(value) for label, value in (("podSubnet", pod), ("serviceSubnet", service))
            if value}
    pod_net, service_net = nets.get("podSubnet"), nets.get("serviceSubnet")
    if pod_net and pod_net.prefixlen > _MAX_POD_PREFIX[pod_net.version]:
        problems.append(Problem(f"{path}.podSubnet", pod,
                                f"is too small: each node takes a /{_MAX_POD_PREFIX[pod_net.version]} of it",
                                f"use a /{_MAX_POD_PREFIX[pod_net.version] - 8} or larger, e.g. "
                                + ("10.245.0.0/16" if pod_net.version == 4 else "fd00:10:245::/56")))
    if pod_net and pod_net.prefixlen < _MIN_POD_PREFIX[pod_net.version]:
        problems.append(Problem(f"{path}.podSubnet", pod,
                                f"is too large: kube-controller-manager splits it into per-node "
                                f"/{_MAX_POD_PREFIX[pod_net.version]}s and allows at most 16 bits of them",
                                f"use a /{_MIN_POD_PREFIX[pod_net.version]} or smaller"))
    if service_net and service_net.prefixlen > _MAX_SERVICE_PREFIX[service_net.version]:
        problems.append(Problem(f"{path}.serviceSubnet", service,
                                "is too small: it must hold the API server's and CoreDNS's (10th) addresses",
                                f"use a /{_MAX_SERVICE_PREFIX[service_net.version]} or larger, e.g. "
                                + ("10.97.0.0/16" if service_net.version == 4 else "fd00:10:97::/112")))
    if service_net and service_net.max_prefixlen - service_net.prefixlen > _MAX_SERVICE_HOST_BITS:
        smallest = service_net.max_prefixlen - _MAX_SERVICE_HOST_BITS
        problems.append(Problem(f"{path}.serviceSubnet", service,
                                f"is too large: kube-apiserver accepts at most {_MAX_SERVICE_HOST_BITS} host bits",
                                f"use a /{smallest} or smaller"))
    if pod_net and service_net and pod_net.version != service_net.version:
        problems.append(Problem(f"{path}.serviceSubnet", service,
                                f"is IPv{service_net.version} but podSubnet {pod} is IPv{pod_net.version}; kslab has "
                                "no "
                                "dual-stack setting", "give both subnets the same address family"))


# Every top-level `kslab:*` key: the structured ones (lists, mappings, numbers, booleans) and the strings.
STRUCTURED_KEYS = ("clusters", "joins", "components", "allowMultipleHosts", "installTimeoutSeconds",
                   "joinTimeoutSeconds", "unjoinTimeoutSeconds", "devWorkspaces", "imageSources", "imageOverrides",
                   "labRegistry", "imageArchives")
STRING_KEYS = ("validationMode", "jwtSecretMode", "kubesphereVersion", "nodeImage", "registry", "kindWait",
               "namespaceOverride", "zone")
JWT_SECRET_KEY = "jwtSecret"
# kind's --wait: 0s is kind's own "do not wait"; bounded so a typo cannot wait for hours.
KIND_WAIT_SECONDS = (0, 3600)
_DURATION_UNITS = {"s": 1, "m": 60, "h": 3600}


def check_config_keys(keys: list[str], kubeconfig_secret_keys: list[str]) -> list[Problem]:
    """Unknown top-level `kslab:*` keys (a typo keeps a default silently), with the nearest valid one.
    `keys` are without the namespace; the secret keys clusters name as kubeconfigSecret are allowed."""
    known = (set(STRUCTURED_KEYS) | set(STRING_KEYS) | {JWT_SECRET_KEY, image_sources.CREDENTIALS_KEY}
             | set(kubeconfig_secret_keys))
    problems = []
    for key in sorted(set(keys) - known):
        close = difflib.get_close_matches(key, sorted(known), n=1)
        problems.append(Problem(f"kslab:{key}", "(set)", "is not a kslab setting",
                                f"did you mean kslab:{close[0]}?" if close else
                                "remove it; settings: " + ", ".join(sorted(set(STRUCTURED_KEYS) | set(STRING_KEYS)))))
    return problems


# A registry namespace (distribution's path component grammar, one component).
_NAMESPACE = re.compile(r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$")
ZONES = ("", "cn")


def _naming(problems: list[Problem], raw: dict[str, Any]) -> tuple[str, str]:
    """kslab:namespaceOverride and kslab:zone: ks-installer's own naming inputs, passed to the cc as they are."""
    namespace = _as_text(problems, "kslab:namespaceOverride", raw.get("namespaceOverride"), "", example="kubesphere")
    if namespace is _WRONG_TYPE:
        namespace = ""
    elif namespace and not _NAMESPACE.match(namespace):
        problems.append(Problem("kslab:namespaceOverride", namespace,
                                "is not one registry namespace (lower-case letters, digits, '.', '_', '-')",
                                "use e.g. kubesphereio, the namespace every image sits in on your registry"))
        namespace = ""
    zone = _as_text(problems, "kslab:zone", raw.get("zone"), "", example="cn")
    if zone is _WRONG_TYPE or zone not in ZONES:
        if zone is not _WRONG_TYPE:
            problems.append(Problem("kslab:zone", zone, "is not a zone ks-installer knows",
                                    "leave it out, or use cn (images from "
                                    "registry.cn-beijing.aliyuncs.com/kubesphereio)"))
        zone = ""
    return namespace, zone


def _kind_wait(problems: list[Problem], value: Any) -> str:
    text = _as_text(problems, "kslab:kindWait", value, "5m", example="5m")
    if text is _WRONG_TYPE:
        return "5m"
    match = re.match(r"^(\d+)([smh])$", text)
    lo, hi = KIND_WAIT_SECONDS
    if not match or not lo <= int(match.group(1)) * _DURATION_UNITS[match.group(2)] <= hi:
        problems.append(Problem("kslab:kindWait", text,
                                f"must be a duration from {lo}s to {hi // 60}m (digits, then s, m or h; 0s: do not "
                                "wait)",
                                "use e.g. 5m or 300s"))
        return "5m"
    return str(text)


def parse_lab(raw: dict[str, Any], config_keys: list[str] | None = None, *,
              jwt_secret: str | None = None) -> LabSpec:
    """Parse and validate the `kslab:*` config (keys without the namespace). `config_keys`, when given, are
    every key the stack sets (unknown ones are refused); `jwt_secret` is the decrypted kslab:jwtSecret, if set,
    checked here and never put into a message."""
    return settle(*parse_lab_problems(raw, config_keys, jwt_secret=jwt_secret))


def parse_lab_problems(raw: dict[str, Any], config_keys: list[str] | None = None, *,
                       jwt_secret: str | None = None) -> tuple[LabSpec, list[Problem]]:
    """parse_lab without the verdict: the clusters and joins that parsed, and every problem found."""
    problems: list[Problem] = []
    warnings: list[str] = []

    top_version = _as_text(problems, "kslab:kubesphereVersion", raw.get("kubesphereVersion"),
                           versions.DEFAULT_KUBESPHERE_VERSION, example=versions.DEFAULT_KUBESPHERE_VERSION)
    if top_version is not _WRONG_TYPE and top_version not in versions.KUBESPHERE_RELEASES:
        number = re.match(r"^\d+(\.\d+)*$", top_version)
        problems.append(Problem("kslab:kubesphereVersion", top_version,
                                "is not a KubeSphere release kslab knows"
                                + (" (YAML reads an unquoted 3.40 as the number 3.4)" if number else ""),
                                "use one of " + ", ".join(versions.KUBESPHERE_RELEASES)))
    top_image = _as_text(problems, "kslab:nodeImage", raw.get("nodeImage"), versions.DEFAULT_NODE_IMAGE,
                         example=versions.DEFAULT_NODE_IMAGE)
    if top_image is not _WRONG_TYPE and (not _IMAGE_REF.match(top_image)
                                         or versions.node_image_k8s_version(top_image) is None):
        problems.append(Problem("kslab:nodeImage", top_image, "is not an image reference with an exact vX.Y.Z tag",
                                f"use e.g. {versions.DEFAULT_NODE_IMAGE}"))
        top_image = _WRONG_TYPE
    top_components = raw.get("components")
    if top_components is None:
        top_components = {}
    if not isinstance(top_components, dict):
        problems.append(Problem("kslab:components", top_components,
                                "must be a mapping of component: true/false, but YAML read "
                                f"{_yaml_kind(top_components)}",
                                "e.g. components: {devops: true}"))
        top_components = {}
    defaults = {
        # A bad top-level value is reported once, above; the clusters then fall back to kslab's defaults.
        "kubesphereVersion": top_version if top_version in versions.KUBESPHERE_RELEASES
        else versions.DEFAULT_KUBESPHERE_VERSION,
        "nodeImage": top_image if top_image is not _WRONG_TYPE else versions.DEFAULT_NODE_IMAGE,
        "components": _parse_components(problems, "kslab:components", top_components),
    }
    clusters_raw = raw.get("clusters")
    if clusters_raw is not None and not isinstance(clusters_raw, list):
        problems.append(Problem("kslab:clusters", clusters_raw,
                                f"must be a list of clusters, but YAML read {_yaml_kind(clusters_raw)}",
                                "start each cluster with '- ', e.g. clusters: [{name: host, role: host}]"))
        clusters_raw = []
    elif not clusters_raw:
        problems.append(Problem("kslab:clusters", clusters_raw, "must list at least one cluster",
                                "add e.g. clusters: [{name: host, role: host}] to the stack file"))
        clusters_raw = []

    clusters: list[ClusterSpec] = []
    for i, item in enumerate(clusters_raw):
        spec = _parse_cluster(problems, i, item, defaults)
        if spec is not None:
            clusters.append(spec)

    seen: dict[str, int] = {}
    for i, item in enumerate(clusters_raw):
        name = item.get("name") if isinstance(item, dict) else None
        if isinstance(name, str):
            if name in seen:
                problems.append(Problem(f"kslab:clusters[{i}].name", name,
                                        f"duplicates kslab:clusters[{seen[name]}].name",
                                        "give every cluster its own name"))
            seen.setdefault(name, i)

    ports: dict[int, str] = {}
    for c in clusters:
        if c.console_host_port is None:
            continue
        if c.console_host_port in ports:
            problems.append(Problem(f"kslab:clusters[{c.name}].consoleHostPort", c.console_host_port,
                                    f"is also the console host port of cluster '{ports[c.console_host_port]}'",
                                    "give each kind cluster its own consoleHostPort", "kslab-duplicate-port-or-name"))
        ports.setdefault(c.console_host_port, c.name)

    subnets: list[tuple[str, str, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for c in clusters:
        for label, value in (("podSubnet", c.pod_subnet), ("serviceSubnet", c.service_subnet)):
            if value:
                net = ipaddress.ip_network(value)
                for other_name, other_label, other in subnets:
                    if net.overlaps(other):
                        problems.append(Problem(f"kslab:clusters[{c.name}].{label}", value,
                                                f"overlaps {other_label} of cluster '{other_name}' ({other})",
                                                "give each cluster distinct pod and service subnets"))
                subnets.append((c.name, label, net))

    hosts_by_hcn: dict[str, str] = {}
    for c in clusters:
        if c.role == "host" and c.host_cluster_name:
            if c.host_cluster_name in hosts_by_hcn:
                problems.append(Problem(f"kslab:clusters[{c.name}].hostClusterName", c.host_cluster_name,
                                        f"is also the hostClusterName of '{hosts_by_hcn[c.host_cluster_name]}': "
                                        "two hosts would both call themselves the same",
                                        "set a distinct hostClusterName per host (defaults to the cluster name)",
                                        "kslab-duplicate-host-cluster-name"))
            hosts_by_hcn.setdefault(c.host_cluster_name, c.name)

    by_name = {c.name: c for c in clusters}
    joins_raw = raw.get("joins")
    if joins_raw is None:
        joins_raw = []
    joins: list[JoinSpec] = []
    if not isinstance(joins_raw, list):
        problems.append(Problem("kslab:joins", joins_raw, "must be a list of {member, host}",
                                "e.g. joins: [{member: member, host: host}]"))
        joins_raw = []
    for i, item in enumerate(joins_raw):
        path = f"kslab:joins[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, item, "must be a mapping {member, host}",
                                    "e.g. {member: member, host: host}"))
            continue
        for unknown in sorted(set(item) - JOIN_FIELDS):
            problems.append(Problem(f"{path}.{unknown}", item[unknown], "is not a join field", "use member and host"))
        ok = True
        sides = {side: _as_text(problems, f"{path}.{side}", item.get(side), example=side) for side in JOIN_FIELDS}
        if any(v is _WRONG_TYPE for v in sides.values()):
            continue
        if sides["member"] is not None and sides["member"] == sides["host"]:
            problems.append(Problem(path, item, "joins a cluster to itself", "join a member to a different host"))
            continue
        for side, wanted in (("member", "member"), ("host", "host")):
            target = sides[side]
            if target is None:
                problems.append(Problem(f"{path}.{side}", target, "is missing",
                                        f"name the join's {side} cluster"))
                ok = False
            elif target not in by_name:
                problems.append(Problem(f"{path}.{side}", target, "names no cluster of this stack",
                                        "use one of " + ", ".join(sorted(by_name)) if by_name else "add the cluster"))
                ok = False
            elif by_name[target].role != wanted:
                problems.append(Problem(f"{path}.{side}", target,
                                        f"has role '{by_name[target].role}', but a join's {side} must have role "
                                        f"'{wanted}'", f"set role: {wanted} on cluster '{target}'",
                                        "kslab-invalid-role"))
        if ok:
            join = JoinSpec(member=item["member"], host=item["host"])
            if join in joins:
                problems.append(Problem(path, item, "joins this member to this host twice (kubefed#749: the sync "
                                        "controllers fight)", "remove the duplicate join"))
                continue
            joins.append(join)

    allow_multiple_hosts = _as_bool(problems, "kslab:allowMultipleHosts", raw.get("allowMultipleHosts"), False)
    jwt_mode = _as_text(problems, "kslab:jwtSecretMode", raw.get("jwtSecretMode"), "shared", example="shared")
    if jwt_mode is not _WRONG_TYPE and jwt_mode not in JWT_MODES:
        problems.append(Problem("kslab:jwtSecretMode", jwt_mode, "is not a jwtSecret mode",
                                "use 'shared' (one secret for the whole stack) or 'copy' (members copy their host's)"))
    lab_joins = tuple(joins)
    members = [j.member for j in lab_joins]
    for member in sorted({m for m in members if members.count(m) > 1}):
        hosts = [j.host for j in lab_joins if j.member == member]
        if not allow_multiple_hosts:
            problems.append(Problem("kslab:joins", f"{member} -> {', '.join(hosts)}",
                                    f"member '{member}' is joined to {len(hosts)} hosts; one member belongs to one "
                                    "host upstream (kubesphere#6466)",
                                    "join it to one host, or set kslab:allowMultipleHosts: true to run the "
                                    "dual-host experiment knowingly", "kslab-member-multiple-hosts"))
        else:
            warnings.append(
                f"EXPERIMENT: member '{member}' is joined to {len(hosts)} hosts ({', '.join(hosts)}). Unsupported "
                "upstream (kubesphere#6466): same-named users/roles flap forever on the member, a delete on one host "
                f"leaves an undeletable Federated object, and both hosts federate through the same ServiceAccount "
                f"'{member}-kubesphere' on the member; an unjoin removes only that host's KubeFedCluster, so the "
                "member keeps every host's kubefed objects (README 'Destroy').")
        if jwt_mode == "copy":
            problems.append(Problem("kslab:jwtSecretMode", jwt_mode,
                                    f"cannot copy one host's jwtSecret when member '{member}' has several hosts",
                                    "use jwtSecretMode: shared so every cluster gets the same secret",
                                    "kslab-jwt-secret-mismatch"))

    for c in clusters:
        if c.role == "member" and c.name not in members:
            warnings.append(f"cluster '{c.name}' has role member but no join: it will wait for a host that "
                            "never adds it")
        level = versions.support_level(c.kubesphere_version, c.kubernetes_version) if c.kubernetes_version else None
        if level == versions.EXPERIMENTAL:
            warnings.append(f"cluster '{c.name}': Kubernetes {c.kubernetes_version} is only experimental/partial "
                            f"for KubeSphere {c.kubesphere_version}")
        if c.allow_loopback_join:
            warnings.append(f"cluster '{c.name}': loopback join rule switched off ({c.loopback_reason})")

    registry = _as_text(problems, "kslab:registry", raw.get("registry"), "", example="registry.local:5000")
    if registry is _WRONG_TYPE:
        registry = ""
    elif registry and not _REGISTRY.match(registry.rstrip("/")):
        problems.append(Problem("kslab:registry", registry,
                                "is not a registry host[:port][/path] (no scheme, no leading '/')",
                                "use e.g. registry.local:5000 or registry.local:5000/kubesphere"))
    else:
        registry = registry.rstrip("/")  # a harmless trailing '/' (the cc and the image names get none)
    namespace_override, zone = _naming(problems, raw)
    sources, source_problems = image_sources.parse_sources(raw.get("imageSources"), raw.get("imageOverrides"),
                                                           raw.get("labRegistry"), raw.get("imageArchives"))
    problems.extend(Problem(*p) for p in source_problems)
    kind_wait = _kind_wait(problems, raw.get("kindWait"))
    if jwt_secret is not None:
        # The value is never shown: only what is wrong with it.
        if not jwt_secret.strip():
            problems.append(Problem("kslab:jwtSecret", "(secret)", "is empty",
                                    "set a real secret (pulumi config set --secret jwtSecret ...), or remove it to "
                                    "let kslab generate one"))
        if jwt_mode == "copy":
            problems.append(Problem("kslab:jwtSecret", "(secret)",
                                    "is ignored in jwtSecretMode 'copy' (each member copies its host's)",
                                    "remove kslab:jwtSecret, or use jwtSecretMode: shared to use it"))
    if config_keys is not None:
        # Every secret key a cluster entry names, even of an entry with other problems.
        named = [item.get("kubeconfigSecret") for item in clusters_raw if isinstance(item, dict)]
        problems.extend(check_config_keys(config_keys, [k for k in named if isinstance(k, str)]))

    mode = _as_text(problems, "kslab:validationMode", raw.get("validationMode"), "strict", example="strict")
    if mode is not _WRONG_TYPE and mode not in ("strict", "warn"):
        problems.append(Problem("kslab:validationMode", mode, "is not a validation mode",
                                "use strict (default) or warn (policy-guarded problems become warnings)"))
    lab = LabSpec(
        clusters=tuple(clusters), joins=lab_joins,
        jwt_secret_mode=jwt_mode if jwt_mode in JWT_MODES else "shared",
        validation_mode=mode if mode in ("strict", "warn") else "strict",
        allow_multiple_hosts=allow_multiple_hosts,
        install_timeout_seconds=_as_int(problems, "kslab:installTimeoutSeconds",
                                        raw.get("installTimeoutSeconds"), 1800, 10, 7200),
        join_timeout_seconds=_as_int(problems, "kslab:joinTimeoutSeconds", raw.get("joinTimeoutSeconds"),
                                     600, 5, 3600),
        unjoin_timeout_seconds=_as_int(problems, "kslab:unjoinTimeoutSeconds", raw.get("unjoinTimeoutSeconds"),
                                       300, 5, 3600),
        kind_wait=kind_wait, registry=registry, namespace_override=namespace_override, zone=zone,
        warnings=tuple(warnings),
        dev_workspaces=_parse_dev_workspaces(problems, raw.get("devWorkspaces"), {c.name for c in clusters}),
        image_sources=sources,
    )
    return lab, problems


def settle(lab: LabSpec, problems: list[Problem]) -> LabSpec:
    """Raise every problem at once; in validationMode 'warn' the policy-guarded ones become warnings."""
    if lab.validation_mode == "warn":
        soft = [p for p in problems if p.policy]
        problems = [p for p in problems if not p.policy]
        lab = replace(lab, warnings=lab.warnings + tuple(
            f"validationMode warn: {p} (left to policy {p.policy})" for p in soft))
    if problems:
        raise LabConfigError(problems)
    return lab
