"""One `kslab:clusters[i]` entry: its fields read and checked one by one (kslab/model/fields.py), then the
ClusterSpec. Pure code; the checks across clusters are kslab/model/lab_rules.py's and spec.py's.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from typing import Any
from urllib.parse import urlsplit

from kslab.model import lab_rules, versions
from kslab.model.fields import WRONG_TYPE, Problem, as_bool, check_cidr, check_name, yaml_kind
from kslab.model.settings import CLUSTER, read
from kslab.model.types import BACKENDS, CLUSTER_FIELDS, COMPONENTS, ClusterSpec

# Config keys that may be named as secret sources for an existing cluster's kubeconfig.
_CONFIG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
# An image reference or registry: alphanumeric first, so it can never be read as a command-line option.
IMAGE_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9./_:@-]*$")
REGISTRY_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.\-]*(:[0-9]+)?(/[A-Za-z0-9._\-]+)*$")
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


def parse_cluster(problems: list[Problem], index: int, raw: Any, defaults: dict[str, Any]) -> ClusterSpec | None:
    """The ClusterSpec of `kslab:clusters[index]`, or None when it cannot be made; every problem is recorded."""
    path = f"kslab:clusters[{index}]"
    if not isinstance(raw, dict):
        problems.append(Problem(path, raw, "must be a mapping with at least 'name'",
                                "see stacks/Pulumi.standalone.yaml"))
        return None
    return _ClusterReader(problems, path, raw).read(index, defaults)


class _ClusterReader:
    """Reads one cluster entry field by field; each method checks one group of fields."""

    def __init__(self, problems: list[Problem], path: str, raw: dict[str, Any]):
        self.problems, self.path, self.raw = problems, path, raw

    def problem(self, key: str, value: Any, what: str, fix: str, policy: str | None = None) -> None:
        self.problems.append(Problem(f"{self.path}.{key}" if key else self.path, value, what, fix, policy))

    def text(self, key: str, default: Any = WRONG_TYPE) -> Any:
        """One scalar field, read as settings.CLUSTER declares it (`default`: a default the lab gives)."""
        return read(self.problems, f"{self.path}.{key}", CLUSTER[key], self.raw.get(key), default)

    def read(self, index: int, defaults: dict[str, Any]) -> ClusterSpec | None:
        raw = self.raw
        self.unknown_fields()
        name = raw.get("name")
        if not check_name(self.problems, f"{self.path}.name", name):
            name = None
        role, backend, ks_version = self.role_backend_version(defaults)
        allow_loopback = self.text("allowLoopbackJoin")
        image_check = self.text("imageCheck")
        loopback_reason = self.text("loopbackReason")
        console_url = self.text("consoleUrl")
        node_image, k8s_version = None, None
        if backend == "kind":
            node_image, k8s_version = self.kind_fields(defaults, allow_loopback, console_url)
        elif backend == "existing":
            k8s_version = self.existing_fields(allow_loopback, loopback_reason, console_url)
        kubeconfig_secret, kubeconfig_path = self.kubeconfig_fields()
        self.version_support(ks_version, k8s_version, node_image, backend)
        components = self.components(defaults)
        host_cluster_name = self.host_cluster_name(role, name)
        console_host_port = self.text("consoleHostPort", CLUSTER["consoleHostPort"].default + index) \
            if backend == "kind" else None
        console_port = self.text("consolePort")
        internal_server = self.internal_server()
        pod_subnet = check_cidr(self.problems, f"{self.path}.podSubnet", raw.get("podSubnet"))
        service_subnet = check_cidr(self.problems, f"{self.path}.serviceSubnet", raw.get("serviceSubnet"))
        _check_subnet_sizes(self.problems, self.path, pod_subnet, service_subnet)
        # A role outside ROLES still makes a spec: in validationMode 'warn' the kslab-invalid-role policy judges it.
        if name is None or not isinstance(role, str) or backend not in BACKENDS \
                or ks_version not in versions.KUBESPHERE_RELEASES:
            return None

        def given(value: Any) -> str | None:
            return value if isinstance(value, str) else None

        return ClusterSpec(
            name=name, role=role, backend=backend, kubesphere_version=ks_version,
            kubernetes_version=k8s_version or "", node_image=node_image, host_cluster_name=host_cluster_name,
            console_host_port=console_host_port, console_port=console_port,
            pod_subnet=pod_subnet, service_subnet=service_subnet, components=components,
            kubeconfig_path=given(kubeconfig_path), kubeconfig_secret=given(kubeconfig_secret),
            internal_server=given(internal_server), console_url=given(console_url),
            allow_loopback_join=allow_loopback, loopback_reason=given(loopback_reason), image_check=image_check,
        )

    def unknown_fields(self) -> None:
        for unknown in sorted(set(self.raw) - CLUSTER_FIELDS):
            close = difflib.get_close_matches(unknown, CLUSTER_FIELDS, n=1)
            self.problem(unknown, self.raw[unknown], "is not a known cluster field",
                         f"did you mean '{close[0]}'?" if close else
                         "remove it; known fields: " + ", ".join(sorted(CLUSTER_FIELDS)))

    def role_backend_version(self, defaults: dict[str, Any]) -> tuple[Any, Any, Any]:
        role = self.text("role")  # a role outside ROLES is reported, tagged with lab_rules' policy
        backend = self.text("backend")
        ks_version = self.text("kubesphereVersion", defaults["kubesphereVersion"])
        if ks_version is not WRONG_TYPE and ks_version not in versions.KUBESPHERE_RELEASES:
            self.problem("kubesphereVersion", ks_version, "is not a KubeSphere release kslab knows",
                         "use one of " + ", ".join(versions.KUBESPHERE_RELEASES))
        return role, backend, ks_version

    def kind_fields(self, defaults: dict[str, Any], allow_loopback: bool,
                    console_url: Any) -> tuple[str | None, str | None]:
        """nodeImage and the Kubernetes version its tag pins; fields only an existing cluster takes are refused."""
        node_image = self.text("nodeImage", defaults["nodeImage"])
        k8s_version = None
        if node_image is WRONG_TYPE:
            node_image = None
        elif not IMAGE_REF.match(node_image):
            self.problem("nodeImage", node_image, "is not an image reference",
                         f"use e.g. {versions.DEFAULT_NODE_IMAGE}")
            node_image = None
        else:
            k8s_version = versions.node_image_k8s_version(node_image)
            if k8s_version is None:
                self.problem("nodeImage", node_image, "has no exact vX.Y.Z tag, so its Kubernetes version is unknown",
                             f"pin the image, e.g. {versions.DEFAULT_NODE_IMAGE} (a @sha256 digest may follow)")
        for existing_only in ("kubeconfigPath", "kubeconfigSecret", "internalServer", "kubernetesVersion"):
            if existing_only in self.raw:
                self.problem(existing_only, self.raw[existing_only], "only applies to backend 'existing'",
                             "remove it, or set backend: existing")
        if allow_loopback:
            self.problem("allowLoopbackJoin", self.raw["allowLoopbackJoin"],
                         "cannot be used with the kind backend: a kind cluster's 127.0.0.1 is the user's machine, "
                         "which the host cluster cannot reach",
                         "remove it; kslab joins kind clusters through their container IP")
        if console_url not in (None, WRONG_TYPE):
            self.problem("consoleUrl", console_url,
                         "only applies to backend 'existing': a kind cluster's console is "
                         "http://127.0.0.1:<consoleHostPort>", "remove it; set consoleHostPort to choose the port")
        return node_image, k8s_version

    def existing_fields(self, allow_loopback: bool, loopback_reason: Any, console_url: Any) -> str | None:
        """kubernetesVersion (required), one kubeconfig source, the loopback reason and the console URL."""
        raw = self.raw
        k8s_version = self.text("kubernetesVersion")
        if k8s_version is WRONG_TYPE:
            k8s_version = None
        elif versions.parse_k8s_version(k8s_version or "") is None:
            self.problem("kubernetesVersion", k8s_version,
                         "is required for an existing cluster and must look like v1.26.13",
                         "set it to the version `kubectl version` reports for that cluster")
            k8s_version = None
        else:
            k8s_version = "v" + k8s_version.lstrip("v")
        if len([k for k in ("kubeconfigPath", "kubeconfigSecret") if raw.get(k) is not None]) != 1:
            self.problem("kubeconfigPath", raw.get("kubeconfigPath"),
                         "an existing cluster needs exactly one of kubeconfigPath or kubeconfigSecret",
                         "set kubeconfigPath to a file, or kubeconfigSecret to the name of a secret config key "
                         "(pulumi config set --secret <key> < kubeconfig)")
        for kind_only in ("nodeImage", "consoleHostPort", "podSubnet", "serviceSubnet"):
            if kind_only in raw:
                self.problem(kind_only, raw[kind_only], "only applies to backend 'kind'",
                             "remove it, or set backend: kind")
        if allow_loopback and loopback_reason is not WRONG_TYPE and not (loopback_reason or "").strip():
            self.problem("loopbackReason", raw.get("loopbackReason"), "is required when allowLoopbackJoin is true",
                         "write why a host can reach this loopback address (e.g. all API servers run on this one "
                         "machine)")
        if isinstance(console_url, str) and not _is_http_url(console_url):
            self.problem("consoleUrl", console_url, "must be an http:// or https:// URL with a host",
                         "use e.g. http://192.168.1.20:30880")
        return k8s_version if isinstance(k8s_version, str) else None

    def kubeconfig_fields(self) -> tuple[Any, Any]:
        kubeconfig_secret = self.text("kubeconfigSecret")
        if isinstance(kubeconfig_secret, str) and not _CONFIG_KEY.match(kubeconfig_secret):
            self.problem("kubeconfigSecret", kubeconfig_secret, "is not a config key name",
                         "use a key like memberKubeconfig")
        kubeconfig_path = self.text("kubeconfigPath")
        if kubeconfig_path == "":
            self.problem("kubeconfigPath", kubeconfig_path, "is empty", "point it at the cluster's kubeconfig file")
        return kubeconfig_secret, kubeconfig_path

    def version_support(self, ks_version: Any, k8s_version: str | None, node_image: str | None,
                        backend: Any) -> None:
        if ks_version not in versions.KUBESPHERE_RELEASES or not k8s_version:
            return
        found = lab_rules.unsupported_versions("", ks_version, k8s_version)
        if found is not None:
            field_name = "nodeImage" if backend == "kind" else "kubernetesVersion"
            self.problem(field_name, node_image or k8s_version,
                         f"Kubernetes {k8s_version} is not supported by KubeSphere {ks_version} (supported: "
                         f"{found.value})", "pick a Kubernetes version in that range, or another kubesphereVersion",
                         found.policy)

    def components(self, defaults: dict[str, Any]) -> dict[str, bool]:
        components_raw = self.raw.get("components")
        if components_raw is None:
            components_raw = {}
        components: dict[str, bool] = dict(defaults["components"])  # checked once, at kslab:components
        if not isinstance(components_raw, dict):
            self.problem("components", components_raw,
                         f"must be a mapping of component: true/false, but YAML read {yaml_kind(components_raw)}",
                         "e.g. components: {devops: true}")
            components_raw = {}
        components.update(parse_components(self.problems, f"{self.path}.components", components_raw))
        return components

    def host_cluster_name(self, role: Any, name: Any) -> str | None:
        if role == "host":
            host_cluster_name = self.raw.get("hostClusterName", name)
            if host_cluster_name is not None and not check_name(self.problems, f"{self.path}.hostClusterName",
                                                                host_cluster_name):
                return None
            return host_cluster_name if isinstance(host_cluster_name, str) else None
        if "hostClusterName" in self.raw:
            self.problem("hostClusterName", self.raw["hostClusterName"], "only applies to role 'host'",
                         "remove it or set role: host")
        return None

    def internal_server(self) -> Any:
        internal_server = self.text("internalServer")
        if isinstance(internal_server, str) and not _is_https_host_port(internal_server):
            self.problem("internalServer", internal_server, "must be an https:// URL with host and port",
                         "use e.g. https://10.0.0.12:6443")
        return internal_server


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(host)


def _is_https_host_port(url: str) -> bool:
    """https://<host>:<port>, nothing more (a kubeconfig server a host can dial)."""
    if not re.match(r"^https://[A-Za-z0-9.\-\[\]:]+$", url):
        return False
    try:
        parts = urlsplit(url)
        return bool(parts.hostname) and parts.port is not None and 0 < parts.port
    except ValueError:  # a bad IPv6 literal or a port out of range
        return False


def parse_components(problems: list[Problem], path: str, raw: dict[str, Any]) -> dict[str, bool]:
    components: dict[str, bool] = {}
    for comp, enabled in raw.items():
        if comp not in COMPONENTS:
            close = difflib.get_close_matches(str(comp), COMPONENTS, n=1)
            problems.append(Problem(f"{path}.{comp}", enabled, "is not a KubeSphere 3.x optional component",
                                    (f"did you mean '{close[0]}'? " if close else "") + "use one of "
                                    + ", ".join(COMPONENTS)))
            continue
        components[comp] = as_bool(problems, f"{path}.{comp}", enabled, False)
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
