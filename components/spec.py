"""The lab topology: typed spec parsed from stack config, and its validation.

Pure code: no Pulumi calls. `parse_lab` either returns a fully valid LabSpec or
raises LabConfigError listing every problem (field, bad value, fix), so the
program stops before a single resource is registered.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any

from . import versions

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
    "allowLoopbackJoin", "loopbackReason",
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
        return f"{self.field} = {self.value!r}: {self.message}. Fix: {self.fix}"


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

    @property
    def is_kind(self) -> bool:
        return self.backend == "kind"

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
    warnings: tuple[str, ...] = field(default=())

    def cluster(self, name: str) -> ClusterSpec:
        return next(c for c in self.clusters if c.name == name)

    def hosts_of(self, member: str) -> list[str]:
        return [j.host for j in self.joins if j.member == member]

    @property
    def multi_host_members(self) -> list[str]:
        members = [j.member for j in self.joins]
        return sorted({m for m in members if members.count(m) > 1})


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
    if not isinstance(name, str) or not name:
        problems.append(Problem(path, name, "is missing", "give every cluster a name such as 'host' or 'member'"))
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


def _parse_cluster(problems: list[Problem], index: int, raw: Any, defaults: dict[str, Any]) -> ClusterSpec | None:
    path = f"kslab:clusters[{index}]"
    if not isinstance(raw, dict):
        problems.append(Problem(path, raw, "must be a mapping with at least 'name'", "see stacks/Pulumi.standalone.yaml"))
        return None
    for unknown in sorted(set(raw) - CLUSTER_FIELDS):
        problems.append(Problem(f"{path}.{unknown}", raw[unknown], "is not a known cluster field",
                                "remove it; known fields: " + ", ".join(sorted(CLUSTER_FIELDS))))
    name = raw.get("name")
    if not _check_name(problems, f"{path}.name", name):
        name = None

    role = raw.get("role", "none")
    if role not in ROLES:
        problems.append(Problem(f"{path}.role", role, "is not a KubeSphere cluster role",
                                "use one of none, host, member", "kslab-invalid-role"))
    backend = raw.get("backend", "kind")
    if backend not in BACKENDS:
        problems.append(Problem(f"{path}.backend", backend, "is not a known backend",
                                "use 'kind' (kslab creates the cluster) or 'existing' (you give a kubeconfig)"))

    ks_version = raw.get("kubesphereVersion", defaults["kubesphereVersion"])
    if ks_version not in versions.KUBESPHERE_RELEASES:
        problems.append(Problem(f"{path}.kubesphereVersion", ks_version, "is not a KubeSphere release kslab knows",
                                "use one of " + ", ".join(versions.KUBESPHERE_RELEASES)))

    node_image = None
    k8s_version = None
    if backend == "kind":
        node_image = raw.get("nodeImage", defaults["nodeImage"])
        if not isinstance(node_image, str) or not re.match(r"^[A-Za-z0-9./_:@-]+$", node_image):
            problems.append(Problem(f"{path}.nodeImage", node_image, "is not an image reference",
                                    "use e.g. kindest/node:v1.25.16"))
            node_image = None
        else:
            k8s_version = versions.node_image_k8s_version(node_image)
            if k8s_version is None:
                problems.append(Problem(f"{path}.nodeImage", node_image,
                                        "has no exact vX.Y.Z tag, so its Kubernetes version is unknown",
                                        "pin the image, e.g. kindest/node:v1.25.16 (a @sha256 digest may follow)"))
        for kind_only_absent in ("kubeconfigPath", "kubeconfigSecret", "internalServer", "kubernetesVersion"):
            if kind_only_absent in raw:
                problems.append(Problem(f"{path}.{kind_only_absent}", raw[kind_only_absent],
                                        "only applies to backend 'existing'",
                                        "remove it, or set backend: existing"))
        if raw.get("allowLoopbackJoin"):
            problems.append(Problem(f"{path}.allowLoopbackJoin", raw["allowLoopbackJoin"],
                                    "cannot be used with the kind backend: a kind cluster's 127.0.0.1 is the "
                                    "user's machine, which the host cluster cannot reach",
                                    "remove it; kslab joins kind clusters through their container IP"))
    elif backend == "existing":
        k8s_version = raw.get("kubernetesVersion")
        if versions.parse_k8s_version(str(k8s_version or "")) is None:
            problems.append(Problem(f"{path}.kubernetesVersion", k8s_version,
                                    "is required for an existing cluster and must look like v1.26.15",
                                    "set it to the version `kubectl version` reports for that cluster"))
            k8s_version = None
        else:
            k8s_version = "v" + str(k8s_version).lstrip("v")
        sources = [k for k in ("kubeconfigPath", "kubeconfigSecret") if raw.get(k)]
        if len(sources) != 1:
            problems.append(Problem(f"{path}.kubeconfigPath", raw.get("kubeconfigPath"),
                                    "an existing cluster needs exactly one of kubeconfigPath or kubeconfigSecret",
                                    "set kubeconfigPath to a file, or kubeconfigSecret to the name of a secret config "
                                    "key (pulumi config set --secret <key> < kubeconfig)"))
        if raw.get("kubeconfigSecret") and not _CONFIG_KEY.match(str(raw["kubeconfigSecret"])):
            problems.append(Problem(f"{path}.kubeconfigSecret", raw["kubeconfigSecret"],
                                    "is not a config key name", "use a key like memberKubeconfig"))
        for kind_only in ("nodeImage", "consoleHostPort", "podSubnet", "serviceSubnet"):
            if kind_only in raw:
                problems.append(Problem(f"{path}.{kind_only}", raw[kind_only], "only applies to backend 'kind'",
                                        "remove it, or set backend: kind"))
        if raw.get("allowLoopbackJoin") and not str(raw.get("loopbackReason") or "").strip():
            problems.append(Problem(f"{path}.loopbackReason", raw.get("loopbackReason"),
                                    "is required when allowLoopbackJoin is true",
                                    "write why a host can reach this loopback address (e.g. all API servers "
                                    "run on this one machine)"))

    if ks_version in versions.KUBESPHERE_RELEASES and k8s_version:
        level = versions.support_level(ks_version, k8s_version)
        field_name = "nodeImage" if backend == "kind" else "kubernetesVersion"
        if level == versions.UNSUPPORTED:
            problems.append(Problem(
                f"{path}.{field_name}", node_image or k8s_version,
                f"Kubernetes {k8s_version} is not supported by KubeSphere {ks_version} "
                f"(supported: {versions.supported_range_text(ks_version)})",
                "pick a Kubernetes version in that range, or another kubesphereVersion", "kslab-unsupported-versions"))

    components_raw = raw.get("components", {}) or {}
    components: dict[str, bool] = {}
    if not isinstance(components_raw, dict):
        problems.append(Problem(f"{path}.components", components_raw, "must be a mapping of component: true/false",
                                "e.g. components: {devops: true}"))
        components_raw = {}
    merged = {**defaults.get("components", {}), **components_raw}
    for comp, enabled in merged.items():
        if comp not in COMPONENTS:
            problems.append(Problem(f"{path}.components.{comp}", enabled, "is not a KubeSphere 3.x optional component",
                                    "use one of " + ", ".join(COMPONENTS)))
            continue
        components[comp] = _as_bool(problems, f"{path}.components.{comp}", enabled, False)

    host_cluster_name = None
    if role == "host":
        host_cluster_name = raw.get("hostClusterName", name)
        if host_cluster_name is not None:
            _check_name(problems, f"{path}.hostClusterName", host_cluster_name)
    elif "hostClusterName" in raw:
        problems.append(Problem(f"{path}.hostClusterName", raw["hostClusterName"], "only applies to role 'host'",
                                "remove it or set role: host"))

    console_host_port = None
    if backend == "kind":
        console_host_port = _as_int(problems, f"{path}.consoleHostPort", raw.get("consoleHostPort"),
                                    FIRST_CONSOLE_HOST_PORT + index, 1024, 65535)
    console_port = _as_int(problems, f"{path}.consolePort", raw.get("consolePort"), CONSOLE_NODE_PORT, 30000, 32767)

    internal_server = raw.get("internalServer")
    if internal_server is not None and not re.match(r"^https://[A-Za-z0-9.\-\[\]:]+$", str(internal_server)):
        problems.append(Problem(f"{path}.internalServer", internal_server, "must be an https:// URL with host and port",
                                "use e.g. https://10.0.0.12:6443"))
    kubeconfig_path = raw.get("kubeconfigPath")
    if kubeconfig_path is not None and not isinstance(kubeconfig_path, str):
        problems.append(Problem(f"{path}.kubeconfigPath", kubeconfig_path, "must be a file path", "quote the path"))

    if name is None or not isinstance(role, str) or backend not in BACKENDS \
            or ks_version not in versions.KUBESPHERE_RELEASES:
        return None
    return ClusterSpec(
        name=name, role=role, backend=backend, kubesphere_version=ks_version,
        kubernetes_version=k8s_version or "", node_image=node_image, host_cluster_name=host_cluster_name,
        console_host_port=console_host_port, console_port=console_port,
        pod_subnet=_check_cidr(problems, f"{path}.podSubnet", raw.get("podSubnet")),
        service_subnet=_check_cidr(problems, f"{path}.serviceSubnet", raw.get("serviceSubnet")),
        components=components,
        kubeconfig_path=kubeconfig_path if isinstance(kubeconfig_path, str) else None,
        kubeconfig_secret=raw.get("kubeconfigSecret"),
        internal_server=internal_server, console_url=raw.get("consoleUrl"),
        allow_loopback_join=_as_bool(problems, f"{path}.allowLoopbackJoin", raw.get("allowLoopbackJoin"), False),
        loopback_reason=raw.get("loopbackReason"),
    )


def parse_lab(raw: dict[str, Any]) -> LabSpec:
    """Parse and validate the `kslab:*` config (keys without the namespace)."""
    problems: list[Problem] = []
    warnings: list[str] = []
    defaults = {
        "kubesphereVersion": raw.get("kubesphereVersion") or versions.DEFAULT_KUBESPHERE_VERSION,
        "nodeImage": raw.get("nodeImage") or versions.DEFAULT_NODE_IMAGE,
        "components": raw.get("components") or {},
    }
    clusters_raw = raw.get("clusters")
    if not isinstance(clusters_raw, list) or not clusters_raw:
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

    subnets: list[tuple[str, str, ipaddress._BaseNetwork]] = []
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
    joins_raw = raw.get("joins") or []
    joins: list[JoinSpec] = []
    if not isinstance(joins_raw, list):
        problems.append(Problem("kslab:joins", joins_raw, "must be a list of {member, host}",
                                "e.g. joins: [{member: member, host: host}]"))
        joins_raw = []
    for i, item in enumerate(joins_raw):
        path = f"kslab:joins[{i}]"
        if not isinstance(item, dict):
            problems.append(Problem(path, item, "must be a mapping {member, host}", "e.g. {member: member, host: host}"))
            continue
        for unknown in sorted(set(item) - JOIN_FIELDS):
            problems.append(Problem(f"{path}.{unknown}", item[unknown], "is not a join field", "use member and host"))
        ok = True
        for side, wanted in (("member", "member"), ("host", "host")):
            target = item.get(side)
            if target not in by_name:
                problems.append(Problem(f"{path}.{side}", target, "names no cluster of this stack",
                                        "use one of " + ", ".join(sorted(by_name)) if by_name else "add the cluster"))
                ok = False
            elif by_name[target].role != wanted:
                problems.append(Problem(f"{path}.{side}", target,
                                        f"has role '{by_name[target].role}', but a join's {side} must have role "
                                        f"'{wanted}'", f"set role: {wanted} on cluster '{target}'",
                                        "kslab-invalid-role"))
        if ok and item["member"] == item["host"]:
            problems.append(Problem(path, item, "joins a cluster to itself", "join a member to a different host"))
            ok = False
        if ok:
            join = JoinSpec(member=item["member"], host=item["host"])
            if join in joins:
                problems.append(Problem(path, item, "joins this member to this host twice (kubefed#749: the sync "
                                        "controllers fight)", "remove the duplicate join"))
                continue
            joins.append(join)

    allow_multiple_hosts = _as_bool(problems, "kslab:allowMultipleHosts", raw.get("allowMultipleHosts"), False)
    jwt_mode = raw.get("jwtSecretMode", "shared")
    if jwt_mode not in JWT_MODES:
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

    registry = raw.get("registry", "") or ""
    if registry and not re.match(r"^[A-Za-z0-9.\-:/]+$", registry):
        problems.append(Problem("kslab:registry", registry, "is not a registry host[/path]",
                                "use e.g. registry.local:5000"))
    kind_wait = str(raw.get("kindWait", "5m"))
    if not re.match(r"^\d+[smh]$", kind_wait):
        problems.append(Problem("kslab:kindWait", kind_wait, "is not a duration", "use e.g. 5m or 300s"))

    lab = LabSpec(
        clusters=tuple(clusters), joins=lab_joins,
        jwt_secret_mode=jwt_mode if jwt_mode in JWT_MODES else "shared",
        allow_multiple_hosts=allow_multiple_hosts,
        install_timeout_seconds=_as_int(problems, "kslab:installTimeoutSeconds",
                                        raw.get("installTimeoutSeconds"), 1800, 10, 7200),
        join_timeout_seconds=_as_int(problems, "kslab:joinTimeoutSeconds", raw.get("joinTimeoutSeconds"),
                                     600, 5, 3600),
        unjoin_timeout_seconds=_as_int(problems, "kslab:unjoinTimeoutSeconds", raw.get("unjoinTimeoutSeconds"),
                                       300, 5, 3600),
        kind_wait=kind_wait, registry=registry, warnings=tuple(warnings),
    )
    mode = raw.get("validationMode", "strict")
    if mode not in ("strict", "warn"):
        problems.append(Problem("kslab:validationMode", mode, "is not a validation mode",
                                "use strict (default) or warn (policy-guarded problems become warnings)"))
    if mode == "warn":
        soft = [p for p in problems if p.policy]
        problems = [p for p in problems if not p.policy]
        lab = replace(lab, warnings=lab.warnings + tuple(
            f"validationMode warn: {p} (left to policy {p.policy})" for p in soft))
    if problems:
        raise LabConfigError(problems)
    return lab
